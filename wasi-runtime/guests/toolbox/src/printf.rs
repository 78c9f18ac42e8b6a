//! printf: format and print data (GNU coreutils semantics, C locale).

use crate::util::*;

struct State {
    status: i32,
}

/// Parse an integer argument the way strtoimax/strtoumax do (plus 'c char constants).
fn parse_int(st: &mut State, s: &str, unsigned: bool) -> (i128, bool) {
    let b = s.as_bytes();
    if !b.is_empty() && (b[0] == b'\'' || b[0] == b'"') {
        if b.len() == 1 {
            return (0, true);
        }
        // one character (a UTF-8 sequence counts as its first byte in the C locale)
        let v = b[1] as i128;
        if b.len() > 2 {
            // GNU warns "characters following character constant have been ignored"
            err(&format!("warning: {}: character(s) following character constant have been ignored", &s[2..]));
        }
        return (v, true);
    }
    let mut i = 0;
    while i < b.len() && (b[i] == b' ' || b[i] == b'\t' || b[i] == b'\n') {
        i += 1;
    }
    let mut neg = false;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        neg = b[i] == b'-';
        i += 1;
    }
    let mut base = 10;
    if i + 1 < b.len() && b[i] == b'0' && (b[i + 1] == b'x' || b[i + 1] == b'X') && i + 2 < b.len() && (b[i + 2] as char).is_ascii_hexdigit() {
        base = 16;
        i += 2;
    } else if i < b.len() && b[i] == b'0' {
        base = 8;
    }
    let start = i;
    let mut v: i128 = 0;
    let mut overflow = false;
    while i < b.len() {
        let d = match (b[i] as char).to_digit(base) {
            Some(d) => d as i128,
            None => break,
        };
        v = v * base as i128 + d;
        if v > u64::MAX as i128 * 2 {
            overflow = true;
            v = u64::MAX as i128 * 2;
        }
        i += 1;
    }
    if i == start {
        err(&format!("{}: expected a numeric value", qa(s)));
        st.status = 1;
        return (0, false);
    }
    if neg {
        v = -v;
    }
    let (lo, hi) = if unsigned { (-(u64::MAX as i128), u64::MAX as i128) } else { (i64::MIN as i128, i64::MAX as i128) };
    if overflow || v > hi || v < lo {
        err(&format!("{}: Numerical result out of range", qa(s)));
        st.status = 1;
        v = if v > hi { hi } else { lo };
    } else if i < b.len() {
        err(&format!("{}: value not completely converted", qa(s)));
        st.status = 1;
    }
    if unsigned && v < 0 {
        v += u64::MAX as i128 + 1;
    }
    (v, true)
}

/// Longest prefix of s that parses as a float (strtold-like).
fn parse_float(st: &mut State, s: &str) -> f64 {
    let b = s.as_bytes();
    if !b.is_empty() && (b[0] == b'\'' || b[0] == b'"') {
        return if b.len() > 1 { b[1] as f64 } else { 0.0 };
    }
    let t = s.trim_start();
    let tl = t.to_ascii_lowercase();
    let (sign, body) = if tl.starts_with('-') { (-1.0, &tl[1..]) } else if tl.starts_with('+') { (1.0, &tl[1..]) } else { (1.0, &tl[..]) };
    for (word, val) in [("infinity", f64::INFINITY), ("inf", f64::INFINITY), ("nan", f64::NAN)] {
        if body.starts_with(word) {
            if body.len() > word.len() {
                err(&format!("{}: value not completely converted", qa(s)));
                st.status = 1;
            }
            return sign * val;
        }
    }
    if body.starts_with("0x") {
        let (v, _) = parse_int(&mut State { status: 0 }, t, false);
        return v as f64;
    }
    // find longest valid decimal prefix
    let tb = t.as_bytes();
    let mut end = 0;
    let mut best: Option<f64> = None;
    let mut i = 0;
    if i < tb.len() && (tb[i] == b'+' || tb[i] == b'-') {
        i += 1;
    }
    let mut seen_digit = false;
    while i < tb.len() && tb[i].is_ascii_digit() {
        i += 1;
        seen_digit = true;
    }
    if i < tb.len() && tb[i] == b'.' {
        i += 1;
        while i < tb.len() && tb[i].is_ascii_digit() {
            i += 1;
            seen_digit = true;
        }
    }
    if seen_digit {
        end = i;
        if i < tb.len() && (tb[i] == b'e' || tb[i] == b'E') {
            let mut j = i + 1;
            if j < tb.len() && (tb[j] == b'+' || tb[j] == b'-') {
                j += 1;
            }
            let ds = j;
            while j < tb.len() && tb[j].is_ascii_digit() {
                j += 1;
            }
            if j > ds {
                end = j;
            }
        }
        best = t[..end].parse::<f64>().ok();
    }
    match best {
        None => {
            err(&format!("{}: expected a numeric value", qa(s)));
            st.status = 1;
            0.0
        }
        Some(v) => {
            if end < t.len() {
                err(&format!("{}: value not completely converted", qa(s)));
                st.status = 1;
            }
            v
        }
    }
}

#[derive(Default, Clone)]
struct Flags {
    minus: bool,
    plus: bool,
    space: bool,
    hash: bool,
    zero: bool,
}

fn pad(body: String, sign: &str, prefix: &str, width: usize, f: &Flags, zero_ok: bool) -> String {
    let len = sign.len() + prefix.len() + body.chars().count();
    if len >= width {
        return format!("{}{}{}", sign, prefix, body);
    }
    let n = width - len;
    if f.minus {
        format!("{}{}{}{}", sign, prefix, body, " ".repeat(n))
    } else if f.zero && zero_ok {
        format!("{}{}{}{}", sign, prefix, "0".repeat(n), body)
    } else {
        format!("{}{}{}{}", " ".repeat(n), sign, prefix, body)
    }
}

pub fn fmt_e(v: f64, prec: usize, upper: bool) -> String {
    let s = format!("{:.*e}", prec, v);
    let (m, e) = s.split_at(s.find('e').unwrap());
    let ev: i32 = e[1..].parse().unwrap();
    let r = format!("{}e{}{:02}", m, if ev < 0 { '-' } else { '+' }, ev.abs());
    if upper {
        r.to_uppercase()
    } else {
        r
    }
}

pub fn fmt_g(v: f64, prec: usize, alt: bool, upper: bool) -> String {
    let p = if prec == 0 { 1 } else { prec };
    let x: i32 = if v == 0.0 {
        0
    } else {
        let s = format!("{:.*e}", p - 1, v);
        s[s.find('e').unwrap() + 1..].parse().unwrap()
    };
    let mut s = if (p as i32) > x && x >= -4 { format!("{:.*}", (p as i32 - 1 - x) as usize, v) } else { fmt_e(v, p - 1, upper) };
    if !alt {
        let (mant, exp) = match s.find(|c| c == 'e' || c == 'E') {
            Some(i) => (s[..i].to_string(), s[i..].to_string()),
            None => (s.clone(), String::new()),
        };
        let mant = if mant.contains('.') { mant.trim_end_matches('0').trim_end_matches('.').to_string() } else { mant };
        s = format!("{}{}", mant, exp);
    } else if !s.contains('.') {
        // '#' keeps the decimal point
        match s.find(|c| c == 'e' || c == 'E') {
            Some(i) => s.insert(i, '.'),
            None => s.push('.'),
        }
    }
    s
}

fn format_float(conv: char, v: f64, f: &Flags, width: usize, prec: Option<usize>) -> String {
    let upper = conv.is_ascii_uppercase();
    let neg = v.is_sign_negative() && !(v.is_nan() && false);
    let sign = if neg { "-" } else if f.plus { "+" } else if f.space { " " } else { "" };
    let a = v.abs();
    if !a.is_finite() {
        let mut body = if a.is_nan() { "nan".to_string() } else { "inf".to_string() };
        if upper {
            body = body.to_uppercase();
        }
        return pad(body, sign, "", width, f, false);
    }
    let p = prec.unwrap_or(6);
    let mut body = match conv.to_ascii_lowercase() {
        'f' => format!("{:.*}", p, a),
        'e' => fmt_e(a, p, upper),
        'g' => fmt_g(a, p, f.hash, upper),
        _ => fmt_hex_float(a, prec, upper),
    };
    if f.hash && conv.to_ascii_lowercase() != 'g' && !body.contains('.') {
        match body.find(|c| c == 'e' || c == 'E' || c == 'p' || c == 'P') {
            Some(i) => body.insert(i, '.'),
            None => body.push('.'),
        }
    }
    pad(body, sign, "", width, f, true)
}

/// %a for a double (glibc prints long double as 0x8p-3; we print the double form 0x1p+0).
fn fmt_hex_float(a: f64, prec: Option<usize>, upper: bool) -> String {
    let s = if a == 0.0 {
        format!("0x0{}p+0", prec.filter(|p| *p > 0).map(|p| format!(".{}", "0".repeat(p))).unwrap_or_default())
    } else {
        let bits = a.to_bits();
        let mut exp = ((bits >> 52) & 0x7ff) as i64;
        let mut mant = bits & ((1u64 << 52) - 1);
        let lead = if exp == 0 {
            exp = -1022;
            0
        } else {
            exp -= 1023;
            1
        };
        let mut hex = format!("{:013x}", mant);
        match prec {
            Some(p) if p < 13 => {
                // round to p hex digits
                let shift = (13 - p) * 4;
                let round = (mant >> (shift - 1)) & 1;
                mant = (mant >> shift) + round;
                hex = if p == 0 { String::new() } else { format!("{:0w$x}", mant, w = p) };
            }
            Some(p) => {
                hex = format!("{}{}", hex, "0".repeat(p - 13));
            }
            None => {
                hex = hex.trim_end_matches('0').to_string();
            }
        }
        format!("0x{}{}{}p{:+}", lead, if hex.is_empty() { "" } else { "." }, hex, exp)
    };
    if upper {
        s.to_uppercase()
    } else {
        s
    }
}

fn format_int(conv: char, v: i128, f: &Flags, width: usize, prec: Option<usize>) -> String {
    let neg = v < 0;
    let a = v.unsigned_abs();
    let mut digits = match conv {
        'o' => format!("{:o}", a),
        'x' => format!("{:x}", a),
        'X' => format!("{:X}", a),
        _ => format!("{}", a),
    };
    if let Some(p) = prec {
        if p == 0 && a == 0 {
            digits.clear();
        }
        while digits.len() < p {
            digits.insert(0, '0');
        }
    }
    let signed = conv == 'd' || conv == 'i';
    let sign = if neg { "-" } else if signed && f.plus { "+" } else if signed && f.space { " " } else { "" };
    let mut prefix = "";
    if f.hash {
        match conv {
            'o' if !digits.starts_with('0') => prefix = "0",
            'x' if a != 0 => prefix = "0x",
            'X' if a != 0 => prefix = "0X",
            _ => {}
        }
    }
    pad(digits, sign, prefix, width, f, prec.is_none())
}

fn shell_quote(s: &str) -> String {
    if s.is_empty() {
        return "''".into();
    }
    let safe = s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./,:+@%=".contains(&b));
    if safe && !s.starts_with('~') {
        return s.to_string();
    }
    shell_escape(s)
}

/// Process backslash escapes of the format string (or a %b argument when `b_mode`).
/// Returns (bytes, stop) where stop means `\c` was seen.
fn escape(s: &[u8], i: &mut usize, o: &mut Vec<u8>, b_mode: bool) -> bool {
    // s[*i] == '\\'
    *i += 1;
    if *i >= s.len() {
        o.push(b'\\');
        return false;
    }
    let c = s[*i];
    *i += 1;
    match c {
        b'\\' => o.push(b'\\'),
        b'"' if !b_mode => o.push(b'"'),
        b'a' => o.push(7),
        b'b' => o.push(8),
        b'c' => return true,
        b'e' => o.push(27),
        b'f' => o.push(12),
        b'n' => o.push(b'\n'),
        b'r' => o.push(b'\r'),
        b't' => o.push(b'\t'),
        b'v' => o.push(11),
        b'x' => {
            let mut v = 0u32;
            let mut n = 0;
            while n < 2 && *i < s.len() && (s[*i] as char).is_ascii_hexdigit() {
                v = v * 16 + (s[*i] as char).to_digit(16).unwrap();
                *i += 1;
                n += 1;
            }
            if n == 0 {
                if b_mode {
                    o.extend_from_slice(b"\\x");
                } else {
                    die(1, "missing hexadecimal number in escape");
                }
            } else {
                o.push(v as u8);
            }
        }
        b'0'..=b'7' => {
            let mut v = 0u32;
            let mut n = 0;
            let max;
            if b_mode && c == b'0' {
                max = 3;
            } else {
                v = (c - b'0') as u32;
                max = 2;
            }
            while n < max && *i < s.len() && (b'0'..=b'7').contains(&s[*i]) {
                v = v * 8 + (s[*i] - b'0') as u32;
                *i += 1;
                n += 1;
            }
            o.push(v as u8);
        }
        b'u' | b'U' => {
            let want = if c == b'u' { 4 } else { 8 };
            let mut v = 0u32;
            let mut n = 0;
            while n < want && *i < s.len() && (s[*i] as char).is_ascii_hexdigit() {
                v = v * 16 + (s[*i] as char).to_digit(16).unwrap();
                *i += 1;
                n += 1;
            }
            if n < want {
                die(1, "missing hexadecimal number in escape");
            }
            match char::from_u32(v) {
                Some(_) if v >= 0x80 && !crate::text::utf8_locale() => {
                    // not representable in the C locale: GNU prints the escape itself
                    let s = if c == b'u' { format!("\\u{:04X}", v) } else { format!("\\U{:08X}", v) };
                    o.extend_from_slice(s.as_bytes());
                }
                Some(ch) => {
                    let mut b = [0u8; 4];
                    o.extend_from_slice(ch.encode_utf8(&mut b).as_bytes());
                }
                None => die(1, &format!("invalid universal character name \\{}{:0w$X}", c as char, v, w = want)),
            }
        }
        _ => {
            o.push(b'\\');
            o.push(c);
        }
    }
    false
}

/// Run the format once over `args`; returns (args consumed, stop).
fn run_format(st: &mut State, fmt: &[u8], args: &[String], o: &mut Vec<u8>) -> (usize, bool) {
    let mut ai = 0;
    let next = |ai: &mut usize| -> Option<String> {
        if *ai < args.len() {
            *ai += 1;
            Some(args[*ai - 1].clone())
        } else {
            None
        }
    };
    let mut i = 0;
    while i < fmt.len() {
        let c = fmt[i];
        if c == b'\\' {
            if escape(fmt, &mut i, o, false) {
                return (ai, true);
            }
            continue;
        }
        if c != b'%' {
            o.push(c);
            i += 1;
            continue;
        }
        let start = i;
        i += 1;
        if i < fmt.len() && fmt[i] == b'%' {
            o.push(b'%');
            i += 1;
            continue;
        }
        let mut f = Flags::default();
        while i < fmt.len() {
            match fmt[i] {
                b'-' => f.minus = true,
                b'+' => f.plus = true,
                b' ' => f.space = true,
                b'#' => f.hash = true,
                b'0' => f.zero = true,
                b'\'' => {}
                _ => break,
            }
            i += 1;
        }
        let mut width = 0usize;
        if i < fmt.len() && fmt[i] == b'*' {
            i += 1;
            let w = next(&mut ai).map(|a| parse_int(st, &a, false).0).unwrap_or(0);
            if w < 0 {
                f.minus = true;
            }
            width = w.unsigned_abs() as usize;
        } else {
            while i < fmt.len() && fmt[i].is_ascii_digit() {
                width = width * 10 + (fmt[i] - b'0') as usize;
                i += 1;
            }
        }
        let mut prec: Option<usize> = None;
        if i < fmt.len() && fmt[i] == b'.' {
            i += 1;
            if i < fmt.len() && fmt[i] == b'*' {
                i += 1;
                let p = next(&mut ai).map(|a| parse_int(st, &a, false).0).unwrap_or(0);
                prec = if p < 0 { None } else { Some(p as usize) };
            } else {
                let mut p = 0usize;
                while i < fmt.len() && fmt[i].is_ascii_digit() {
                    p = p * 10 + (fmt[i] - b'0') as usize;
                    i += 1;
                }
                prec = Some(p);
            }
        }
        while i < fmt.len() && b"hlLjzt".contains(&fmt[i]) {
            i += 1;
        }
        if i >= fmt.len() {
            out(o);
            die(1, &format!("{}: invalid conversion specification", String::from_utf8_lossy(&fmt[start..])));
        }
        let conv = fmt[i] as char;
        i += 1;
        let spec_text = String::from_utf8_lossy(&fmt[start..i]).to_string();
        match conv {
            'd' | 'i' | 'o' | 'u' | 'x' | 'X' => {
                let a = next(&mut ai);
                let v = match a {
                    Some(a) => parse_int(st, &a, conv != 'd' && conv != 'i').0,
                    None => 0,
                };
                o.extend_from_slice(format_int(conv, v, &f, width, prec).as_bytes());
            }
            'f' | 'F' | 'e' | 'E' | 'g' | 'G' | 'a' | 'A' => {
                let v = match next(&mut ai) {
                    Some(a) => parse_float(st, &a),
                    None => 0.0,
                };
                o.extend_from_slice(format_float(conv, v, &f, width, prec).as_bytes());
            }
            'c' => {
                let a = next(&mut ai).unwrap_or_default();
                let body: Vec<u8> = if a.is_empty() { vec![0] } else { vec![a.as_bytes()[0]] };
                let s = pad_bytes(&body, width, f.minus);
                o.extend_from_slice(&s);
            }
            's' => {
                let a = next(&mut ai).unwrap_or_default();
                let mut b = a.as_bytes().to_vec();
                if let Some(p) = prec {
                    b.truncate(p);
                }
                o.extend_from_slice(&pad_bytes(&b, width, f.minus));
            }
            'b' => {
                let a = next(&mut ai).unwrap_or_default();
                let ab = a.as_bytes();
                let mut b = Vec::new();
                let mut j = 0;
                let mut stop = false;
                while j < ab.len() {
                    if ab[j] == b'\\' {
                        if escape(ab, &mut j, &mut b, true) {
                            stop = true;
                            break;
                        }
                    } else {
                        b.push(ab[j]);
                        j += 1;
                    }
                }
                if let Some(p) = prec {
                    b.truncate(p);
                }
                o.extend_from_slice(&pad_bytes(&b, width, f.minus));
                if stop {
                    return (ai, true);
                }
            }
            'q' => {
                if prec.is_some() {
                    out(o);
                    die(1, &format!("{}: invalid conversion specification", spec_text));
                }
                let a = next(&mut ai).unwrap_or_default();
                let b = shell_quote(&a);
                o.extend_from_slice(&pad_bytes(b.as_bytes(), width, f.minus));
            }
            _ => {
                out(o);
                die(1, &format!("{}: invalid conversion specification", spec_text))
            }
        }
    }
    (ai, false)
}

fn pad_bytes(b: &[u8], width: usize, left: bool) -> Vec<u8> {
    if b.len() >= width {
        return b.to_vec();
    }
    let mut v = Vec::new();
    if left {
        v.extend_from_slice(b);
        v.resize(width, b' ');
    } else {
        v.resize(width - b.len(), b' ');
        v.extend_from_slice(b);
    }
    v
}

/// Format one floating value with a user format containing one directive (seq -f).
pub fn format_float_directive(fmt: &str, v: f64) -> String {
    let mut st = State { status: 0 };
    let mut o = Vec::new();
    let arg = if v == v.trunc() && v.abs() < 1e17 { format!("{}", v as i64) } else { format!("{:e}", v) };
    run_format(&mut st, fmt.as_bytes(), &[arg], &mut o);
    String::from_utf8_lossy(&o).into_owned()
}

pub fn main(args: Vec<String>) -> i32 {
    if args.len() == 1 && args[0] == "--help" {
        print_help("Usage: printf FORMAT [ARGUMENT]...\n  or:  printf OPTION\nPrint ARGUMENT(s) according to FORMAT.\n\nFORMAT controls the output as in C printf. Interpreted sequences are:\n  \\\" \\\\ \\a \\b \\c \\e \\f \\n \\r \\t \\v \\NNN \\xHH \\uHHHH \\UHHHHHHHH %%\n  %b  ARGUMENT as a string with '\\' escapes interpreted\n  %q  ARGUMENT printed in a format that can be reused as shell input\nand all C format specifications ending with one of diouxXfeEgGcs.\n");
    }
    if args.len() == 1 && args[0] == "--version" {
        print_version();
    }
    let mut args = args;
    if !args.is_empty() && args[0] == "--" {
        args.remove(0);
    }
    if args.is_empty() {
        usage_error(1, "missing operand");
    }
    let fmt = args[0].clone();
    let rest = &args[1..];
    let mut st = State { status: 0 };
    let mut pos = 0;
    loop {
        let mut o = Vec::new();
        let (used, stop) = run_format(&mut st, fmt.as_bytes(), &rest[pos..], &mut o);
        out(&o);
        if stop {
            break;
        }
        pos += used;
        if used == 0 && pos < rest.len() {
            err(&format!("warning: ignoring excess arguments, starting with {}", qa(&rest[pos])));
            break;
        }
        if pos >= rest.len() {
            break;
        }
    }
    st.status
}
