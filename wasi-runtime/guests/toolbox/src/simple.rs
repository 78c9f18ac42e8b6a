//! Small commands: echo, true, false, yes, pwd, env, sleep, basename, dirname, which, seq, tee.

use crate::util::*;
use std::io::{Read, Write};

pub fn echo(args: Vec<String>) -> i32 {
    if args.len() == 1 && args[0] == "--help" {
        print_help("Usage: echo [SHORT-OPTION]... [STRING]...\nEcho the STRING(s) to standard output.\n\n  -n  do not output the trailing newline\n  -e  enable interpretation of backslash escapes\n  -E  disable interpretation of backslash escapes (default)\n");
    }
    if args.len() == 1 && args[0] == "--version" {
        print_version();
    }
    let mut newline = true;
    let mut escapes = false;
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a.len() > 1 && a.starts_with('-') && a[1..].chars().all(|c| c == 'n' || c == 'e' || c == 'E') {
            for c in a[1..].chars() {
                match c {
                    'n' => newline = false,
                    'e' => escapes = true,
                    _ => escapes = false,
                }
            }
            i += 1;
        } else {
            break;
        }
    }
    let mut buf: Vec<u8> = Vec::new();
    for (k, a) in args[i..].iter().enumerate() {
        if k > 0 {
            buf.push(b' ');
        }
        if escapes {
            if !echo_escapes(a.as_bytes(), &mut buf) {
                out(&buf);
                return 0;
            }
        } else {
            buf.extend_from_slice(a.as_bytes());
        }
    }
    if newline {
        buf.push(b'\n');
    }
    out(&buf);
    0
}

/// Interpret echo -e escapes; returns false when `\c` was seen (stop all output).
fn echo_escapes(s: &[u8], o: &mut Vec<u8>) -> bool {
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        i += 1;
        if c != b'\\' || i >= s.len() {
            o.push(c);
            continue;
        }
        let e = s[i];
        i += 1;
        match e {
            b'\\' => o.push(b'\\'),
            b'a' => o.push(7),
            b'b' => o.push(8),
            b'c' => return false,
            b'e' => o.push(27),
            b'f' => o.push(12),
            b'n' => o.push(b'\n'),
            b'r' => o.push(b'\r'),
            b't' => o.push(b'\t'),
            b'v' => o.push(11),
            b'x' => {
                let mut v: u32 = 0;
                let mut n = 0;
                while n < 2 && i < s.len() && (s[i] as char).is_ascii_hexdigit() {
                    v = v * 16 + (s[i] as char).to_digit(16).unwrap();
                    i += 1;
                    n += 1;
                }
                if n == 0 {
                    o.extend_from_slice(b"\\x");
                } else {
                    o.push(v as u8);
                }
            }
            b'0'..=b'7' => {
                let mut v: u32 = (e - b'0') as u32;
                let max = if e == b'0' { 3 } else { 2 };
                let mut n = 0;
                while n < max && i < s.len() && (b'0'..=b'7').contains(&s[i]) {
                    v = v * 8 + (s[i] - b'0') as u32;
                    i += 1;
                    n += 1;
                }
                o.push(v as u8);
            }
            _ => {
                o.push(b'\\');
                o.push(e);
            }
        }
    }
    true
}

pub fn true_false(args: Vec<String>, code: i32) -> i32 {
    if args.len() == 1 && args[0] == "--help" {
        let n = prog();
        outf!("Usage: {} [ignored command line arguments]\n  or:  {} OPTION\nExit with a status code indicating {}.\n", n, n, if code == 0 { "success" } else { "failure" });
        exit(code);
    }
    if args.len() == 1 && args[0] == "--version" {
        outf!("{} (hybox toolbox) {}\n", prog(), VERSION);
        exit(code);
    }
    code
}

pub fn yes(args: Vec<String>) -> i32 {
    let spec = Spec { short: "", long: &[], code: 1, help: "Usage: yes [STRING]...\nRepeatedly output a line with all specified STRING(s), or 'y'.\n", stop_at_operand: false };
    let p = getopt(&args, &spec);
    let line = if p.args.is_empty() { "y".to_string() } else { p.args.join(" ") };
    let mut chunk = Vec::new();
    while chunk.len() < 16 * 1024 {
        chunk.extend_from_slice(line.as_bytes());
        chunk.push(b'\n');
    }
    let stdout = std::io::stdout();
    let mut o = stdout.lock();
    loop {
        if let Err(e) = o.write_all(&chunk) {
            if e.kind() == std::io::ErrorKind::BrokenPipe || cfg!(target_os = "wasi") {
                std::process::exit(EXIT_PIPE);
            }
            die(1, &format!("standard output: {}", ioerr(&e)));
        }
    }
}

pub fn pwd(args: Vec<String>) -> i32 {
    let spec = Spec { short: "LP", long: &[l("logical", Has::No, 'L'), l("physical", Has::No, 'P')], code: 1, help: "Usage: pwd [-LP]\nPrint the full filename of the current working directory.\n", stop_at_operand: false };
    let p = getopt(&args, &spec);
    if !p.args.is_empty() {
        err("ignoring non-option arguments");
    }
    let physical = p.opts.iter().rev().find(|(c, _)| *c == 'L' || *c == 'P').map(|(c, _)| *c == 'P').unwrap_or(false);
    if !physical {
        if let Ok(pw) = std::env::var("PWD") {
            if pw.starts_with('/') && !pw.split('/').any(|c| c == "." || c == "..") {
                if let (Ok(a), Ok(b)) = (crate::sys::stat_s(&pw), crate::sys::stat_s(".")) {
                    if a.ino == b.ino && a.dev == b.dev {
                        outf!("{}\n", pw);
                        return 0;
                    }
                }
            }
        }
    }
    match std::env::current_dir() {
        Ok(d) => {
            let d = std::fs::canonicalize(&d).unwrap_or(d);
            outf!("{}\n", d.display());
            0
        }
        Err(e) => {
            err(&format!("error retrieving current directory: {}", ioerr(&e)));
            1
        }
    }
}

pub fn env(args: Vec<String>) -> i32 {
    let spec = Spec {
        short: "+iu:0C:",
        long: &[l("ignore-environment", Has::No, 'i'), l("unset", Has::Req, 'u'), l("null", Has::No, '0'), l("chdir", Has::Req, 'C')],
        code: 125,
        help: "Usage: env [OPTION]... [-] [NAME=VALUE]... [COMMAND [ARG]...]\nSet each NAME to VALUE in the environment and run COMMAND.\n\n  -i, --ignore-environment  start with an empty environment\n  -0, --null           end each output line with NUL, not newline\n  -u, --unset=NAME     remove variable from the environment\n  -C, --chdir=DIR      change working directory to DIR\n\nCOMMAND may be any toolbox command; other programs cannot be started from here.\n",
        stop_at_operand: true,
    };
    let spec_short = spec.short.trim_start_matches('+');
    let spec2 = Spec { short: spec_short, ..spec };
    let p = getopt(&args, &spec2);
    let mut args = p.args.clone();
    let mut vars: Vec<(String, String)> = std::env::vars_os().map(|(k, v)| (k.to_string_lossy().into_owned(), v.to_string_lossy().into_owned())).collect();
    let mut nul = false;
    let mut chdir: Option<String> = None;
    if !args.is_empty() && args[0] == "-" {
        vars.clear();
        args.remove(0);
    }
    for (c, a) in &p.opts {
        match c {
            'i' => vars.clear(),
            'u' => {
                let n = a.clone().unwrap();
                if n.is_empty() || n.contains('=') {
                    die(125, &format!("cannot unset {}: Invalid argument", qa(&n)));
                }
                vars.retain(|(k, _)| *k != n)
            }
            '0' => nul = true,
            'C' => chdir = a.clone(),
            _ => {}
        }
    }
    let mut k = 0;
    while k < args.len() {
        if let Some(eq) = args[k].find('=') {
            if eq > 0 {
                let (n, v) = (args[k][..eq].to_string(), args[k][eq + 1..].to_string());
                vars.retain(|(x, _)| *x != n);
                vars.push((n, v));
                k += 1;
                continue;
            }
        }
        break;
    }
    let cmd = &args[k..];
    if cmd.is_empty() {
        if chdir.is_some() {
            usage_error(125, "must specify command with --chdir (-C)");
        }
        for (n, v) in &vars {
            outf!("{}={}{}", n, v, if nul { '\0' } else { '\n' });
        }
        return 0;
    }
    if nul {
        usage_error(125, "cannot specify --null (-0) with command");
    }
    // Run a toolbox command in-process with the new environment.
    for (n, _) in std::env::vars_os() {
        std::env::remove_var(n);
    }
    for (n, v) in &vars {
        std::env::set_var(n, v);
    }
    if let Some(d) = chdir {
        if let Err(e) = std::env::set_current_dir(&d) {
            die(125, &format!("cannot change directory to {}: {}", qa(&d), ioerr(&e)));
        }
    }
    let name = basename_of(&cmd[0]).to_string();
    if !crate::COMMANDS.contains(&name.as_str()) {
        err(&format!("{}: No such file or directory", qa(&cmd[0])));
        return 127;
    }
    set_prog(&name);
    crate::run_cmd(&name, cmd[1..].to_vec())
}

pub fn sleep(args: Vec<String>) -> i32 {
    let spec = Spec { short: "", long: &[], code: 1, help: "Usage: sleep NUMBER[SUFFIX]...\nPause for NUMBER seconds. SUFFIX may be 's' (seconds, default), 'm' (minutes),\n'h' (hours) or 'd' (days). NUMBER may be fractional.\n", stop_at_operand: false };
    let mut a2 = Vec::new();
    // negative numbers are not options for sleep? GNU treats "-1" as an invalid option.
    for a in &args {
        a2.push(a.clone());
    }
    let p = getopt(&a2, &spec);
    if p.args.is_empty() {
        usage_error(1, "missing operand");
    }
    let mut total = 0f64;
    let mut bad = false;
    for a in &p.args {
        let (num, mult) = match a.chars().last() {
            Some('s') => (&a[..a.len() - 1], 1.0),
            Some('m') => (&a[..a.len() - 1], 60.0),
            Some('h') => (&a[..a.len() - 1], 3600.0),
            Some('d') => (&a[..a.len() - 1], 86400.0),
            _ => (&a[..], 1.0),
        };
        let ok_chars = !num.is_empty() && num.chars().all(|c| c.is_ascii_digit() || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-') || num.eq_ignore_ascii_case("inf") || num.eq_ignore_ascii_case("infinity");
        match num.parse::<f64>() {
            Ok(v) if ok_chars && v >= 0.0 && !v.is_nan() => total += v * mult,
            _ => {
                err(&format!("invalid time interval {}", qa(a)));
                bad = true;
            }
        }
    }
    if bad {
        let stderr = std::io::stderr();
        let _ = writeln!(stderr.lock(), "Try '{} --help' for more information.", prog());
        return 1;
    }
    out_flush();
    if total.is_finite() {
        std::thread::sleep(std::time::Duration::from_secs_f64(total.min(1e15)));
    } else {
        loop {
            std::thread::sleep(std::time::Duration::from_secs(1 << 30));
        }
    }
    0
}

pub fn basename(args: Vec<String>) -> i32 {
    let spec = Spec { short: "as:z", long: &[l("multiple", Has::No, 'a'), l("suffix", Has::Req, 's'), l("zero", Has::No, 'z')], code: 1, help: "Usage: basename NAME [SUFFIX]\n  or:  basename OPTION... NAME...\nPrint NAME with any leading directory components removed.\n\n  -a, --multiple       support multiple arguments and treat each as a NAME\n  -s, --suffix=SUFFIX  remove a trailing SUFFIX; implies -a\n  -z, --zero           end each output line with NUL, not newline\n", stop_at_operand: false };
    let p = getopt(&args, &spec);
    let mut multiple = p.has('a');
    let mut suffix: Option<String> = None;
    for (c, a) in &p.opts {
        if *c == 's' {
            suffix = a.clone();
            multiple = true;
        }
    }
    let end = if p.has('z') { "\0" } else { "\n" };
    if p.args.is_empty() {
        usage_error(1, "missing operand");
    }
    let names: Vec<String> = if multiple {
        p.args.clone()
    } else {
        if p.args.len() > 2 {
            usage_error(1, &format!("extra operand {}", qa(&p.args[2])));
        }
        if p.args.len() == 2 {
            suffix = Some(p.args[1].clone());
        }
        vec![p.args[0].clone()]
    };
    for n in names {
        let mut b = basename_of(&n).to_string();
        if let Some(s) = &suffix {
            if !s.is_empty() && b.len() > s.len() && b.ends_with(s.as_str()) && b != "/" {
                b.truncate(b.len() - s.len());
            }
        }
        outf!("{}{}", b, end);
    }
    0
}

pub fn dirname_of(p: &str) -> String {
    let b = p.as_bytes();
    if b.is_empty() {
        return ".".into();
    }
    let mut end = b.len();
    while end > 1 && b[end - 1] == b'/' {
        end -= 1;
    }
    // strip last component
    while end > 0 && b[end - 1] != b'/' {
        end -= 1;
    }
    if end == 0 {
        return ".".into();
    }
    while end > 1 && b[end - 1] == b'/' {
        end -= 1;
    }
    p[..end].to_string()
}

pub fn dirname(args: Vec<String>) -> i32 {
    let spec = Spec { short: "z", long: &[l("zero", Has::No, 'z')], code: 1, help: "Usage: dirname [OPTION] NAME...\nOutput each NAME with its last non-slash component and trailing slashes\nremoved; if NAME contains no /'s, output '.'.\n\n  -z, --zero     end each output line with NUL, not newline\n", stop_at_operand: false };
    let p = getopt(&args, &spec);
    if p.args.is_empty() {
        usage_error(1, "missing operand");
    }
    let end = if p.has('z') { "\0" } else { "\n" };
    for a in &p.args {
        outf!("{}{}", dirname_of(a), end);
    }
    0
}

/// Programs hybox provides besides the toolbox commands.
pub const OTHER_PROGRAMS: &[&str] = &["python3", "python", "node", "sh", "bash"];

pub fn which(args: Vec<String>) -> i32 {
    if args.len() == 1 && args[0] == "--help" {
        print_help("Usage: which [-as] COMMAND...\nPrint where each COMMAND lives: /usr/bin/NAME for every toolbox command and\nfor the other programs hybox provides (python3, python, node, sh, bash).\nExit status: 0 if all were found, 1 if any was not, 2 for a bad option.\n");
    }
    if args.len() == 1 && args[0] == "--version" {
        print_version();
    }
    let mut names = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a == "--" {
            names.extend(args[i + 1..].iter().cloned());
            break;
        }
        if a.starts_with('-') && a.len() > 1 {
            for c in a[1..].chars() {
                if c != 'a' && c != 's' {
                    let stderr = std::io::stderr();
                    let mut e = stderr.lock();
                    let _ = writeln!(e, "Illegal option -{}", c);
                    let _ = writeln!(e, "Usage: /usr/bin/which [-as] args");
                    return 2;
                }
            }
            i += 1;
            continue;
        }
        names.push(a.clone());
        i += 1;
    }
    let silent = args.iter().any(|a| a.starts_with('-') && a.contains('s') && a != "--");
    let mut status = 0;
    if names.is_empty() {
        return 1;
    }
    for n in names {
        let base = n.as_str();
        let found = if base.contains('/') {
            match crate::sys::stat_s(base) {
                Ok(m) if !m.is_dir() => Some(base.to_string()),
                _ => None,
            }
        } else if crate::COMMANDS.contains(&base) || OTHER_PROGRAMS.contains(&base) {
            Some(format!("/usr/bin/{}", base))
        } else {
            None
        };
        match found {
            Some(p) => {
                if !silent {
                    outf!("{}\n", p);
                }
            }
            None => status = 1,
        }
    }
    status
}

// ---------------------------------------------------------------- seq

/// A decimal number as scaled integer: value = m / 10^scale.
#[derive(Clone, Copy, Debug)]
struct Dec {
    m: i128,
    scale: u32,
}

fn parse_dec(s: &str) -> Option<(Dec, f64)> {
    let f: f64 = s.trim_start_matches('+').parse().ok().or_else(|| {
        let t = s.trim();
        if t.starts_with("0x") || t.starts_with("0X") {
            i64::from_str_radix(&t[2..], 16).ok().map(|v| v as f64)
        } else {
            None
        }
    })?;
    if s.trim().is_empty() || f.is_nan() {
        return None;
    }
    let t = s.trim_start_matches('+');
    if t.chars().all(|c| c.is_ascii_digit() || c == '.' || c == '-') && t.matches('.').count() <= 1 {
        let neg = t.starts_with('-');
        let body = t.trim_start_matches('-');
        let (ip, fp) = match body.find('.') {
            Some(p) => (&body[..p], &body[p + 1..]),
            None => (body, ""),
        };
        if fp.len() <= 18 && ip.len() <= 18 {
            let mut m: i128 = 0;
            for c in ip.chars().chain(fp.chars()) {
                m = m * 10 + (c as u8 - b'0') as i128;
            }
            if neg {
                m = -m;
            }
            return Some((Dec { m, scale: fp.len() as u32 }, f));
        }
    }
    // exponent form etc.: precision 0 if integral
    let scale = if f.fract() == 0.0 && f.abs() < 1e18 { 0 } else { 6 };
    Some((Dec { m: (f * 10f64.powi(scale as i32)).round() as i128, scale }, f))
}

fn rescale(d: Dec, s: u32) -> i128 {
    d.m * 10i128.pow(s - d.scale)
}

fn fmt_scaled(v: i128, scale: u32) -> String {
    let neg = v < 0;
    let a = v.unsigned_abs();
    let p = 10u128.pow(scale);
    let s = if scale == 0 { format!("{}", a) } else { format!("{}.{:0w$}", a / p, a % p, w = scale as usize) };
    if neg {
        format!("-{}", s)
    } else {
        s
    }
}

pub fn seq(args: Vec<String>) -> i32 {
    let spec = Spec {
        short: "s:wf:",
        long: &[l("separator", Has::Req, 's'), l("equal-width", Has::No, 'w'), l("format", Has::Req, 'f')],
        code: 1,
        help: "Usage: seq [OPTION]... LAST\n  or:  seq [OPTION]... FIRST LAST\n  or:  seq [OPTION]... FIRST INCREMENT LAST\nPrint numbers from FIRST to LAST, in steps of INCREMENT.\n\n  -f, --format=FORMAT      use printf style floating-point FORMAT\n  -s, --separator=STRING   use STRING to separate numbers (default: \\n)\n  -w, --equal-width        equalize width by padding with leading zeroes\n",
        stop_at_operand: false,
    };
    // negative numbers are operands, not options
    let mut opt_args = Vec::new();
    let mut nums = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        let is_num = a.len() > 1 && a.starts_with('-') && (a.as_bytes()[1].is_ascii_digit() || a.as_bytes()[1] == b'.');
        if is_num {
            nums.push(a.clone());
        } else if a == "-s" || a == "-f" {
            opt_args.push(a.clone());
            if i + 1 < args.len() {
                opt_args.push(args[i + 1].clone());
                i += 1;
            }
        } else {
            opt_args.push(a.clone());
        }
        i += 1;
    }
    let mut p = getopt(&opt_args, &spec);
    // restore operand order: operands that were options-looking negatives are interleaved
    let mut all = Vec::new();
    {
        let mut pi = p.args.iter();
        let mut ni = nums.iter();
        for a in &args {
            if nums.contains(a) {
                if let Some(x) = ni.next() {
                    all.push(x.clone());
                }
            } else if p.args.contains(a) {
                if let Some(x) = pi.next() {
                    all.push(x.clone());
                }
            }
        }
    }
    p.args = all;
    let mut sep = "\n".to_string();
    let mut fmt: Option<String> = None;
    for (c, a) in &p.opts {
        match c {
            's' => sep = a.clone().unwrap(),
            'f' => fmt = a.clone(),
            _ => {}
        }
    }
    let width = p.has('w');
    if p.args.is_empty() {
        usage_error(1, "missing operand");
    }
    if p.args.len() > 3 {
        usage_error(1, &format!("extra operand {}", qa(&p.args[3])));
    }
    let mut parsed = Vec::new();
    for a in &p.args {
        match parse_dec(a) {
            Some(d) => parsed.push((d, a.clone())),
            None => usage_error(1, &format!("invalid floating point argument: {}", qa(a))),
        }
    }
    let one = (Dec { m: 1, scale: 0 }, 1.0);
    let (first, incr, last) = match parsed.len() {
        1 => (one, one, parsed[0].0),
        2 => (parsed[0].0, one, parsed[1].0),
        _ => (parsed[0].0, parsed[1].0, parsed[2].0),
    };
    if incr.1 == 0.0 {
        usage_error(1, &format!("invalid Zero increment value: {}", qa(&p.args[1])));
    }
    let mut res = String::new();
    let mut emit = |s: &str, first_item: bool| {
        if !first_item {
            res.push_str(&sep);
        }
        res.push_str(s);
        if res.len() > 64 * 1024 {
            outs(&res);
            res.clear();
        }
    };
    if let Some(f) = fmt {
        let mut k = 0u64;
        loop {
            let v = first.1 + incr.1 * k as f64;
            if (incr.1 > 0.0 && v > last.1) || (incr.1 < 0.0 && v < last.1) {
                break;
            }
            let s = crate::printf::format_float_directive(&f, v);
            emit(&s, k == 0);
            k += 1;
        }
        if k > 0 {
            res.push('\n');
        }
        outs(&res);
        return 0;
    }
    let scale = first.0.scale.max(incr.0.scale).max(last.0.scale);
    let out_scale = first.0.scale.max(incr.0.scale);
    let (f, s, l) = (rescale(first.0, scale), rescale(incr.0, scale), rescale(last.0, scale));
    let div = 10i128.pow(scale - out_scale);
    let wid = if width { fmt_scaled(f / div, out_scale).len().max(fmt_scaled(l / div, out_scale).len()) } else { 0 };
    let mut v = f;
    let mut firstp = true;
    loop {
        if (s > 0 && v > l) || (s < 0 && v < l) {
            break;
        }
        let mut txt = fmt_scaled(v / div, out_scale);
        if wid > txt.len() {
            let pad = "0".repeat(wid - txt.len());
            if let Some(rest) = txt.strip_prefix('-') {
                txt = format!("-{}{}", pad, rest);
            } else {
                txt = format!("{}{}", pad, txt);
            }
        }
        emit(&txt, firstp);
        firstp = false;
        v += s;
    }
    if !firstp {
        res.push('\n');
    }
    outs(&res);
    0
}

pub fn tee(args: Vec<String>) -> i32 {
    let spec = Spec {
        short: "aip",
        long: &[l("append", Has::No, 'a'), l("ignore-interrupts", Has::No, 'i'), l("output-error", Has::Opt, 'p')],
        code: 1,
        help: "Usage: tee [OPTION]... [FILE]...\nCopy standard input to each FILE, and also to standard output.\n\n  -a, --append              append to the given FILEs, do not overwrite\n  -i, --ignore-interrupts   ignore interrupt signals\n",
        stop_at_operand: false,
    };
    let p = getopt(&args, &spec);
    let append = p.has('a');
    let mut status = 0;
    let mut files: Vec<Option<std::fs::File>> = Vec::new();
    for f in &p.args {
        if f == "-" {
            files.push(None);
            continue;
        }
        let r = std::fs::OpenOptions::new().write(true).create(true).append(append).truncate(!append).open(f);
        match r {
            Ok(h) => files.push(Some(h)),
            Err(e) => {
                err(&format!("{}: {}", q(f), ioerr(&e)));
                status = 1;
            }
        }
    }
    let mut buf = vec![0u8; 64 * 1024];
    let stdin = std::io::stdin();
    let mut inp = stdin.lock();
    let mut stdout_ok = true;
    loop {
        let n = match inp.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                err(&format!("-: {}", ioerr(&e)));
                status = 1;
                break;
            }
        };
        if stdout_ok {
            let so = std::io::stdout();
            let mut so = so.lock();
            if so.write_all(&buf[..n]).and_then(|_| so.flush()).is_err() {
                // like GNU tee with SIGPIPE: stop
                std::process::exit(EXIT_PIPE);
            }
        }
        for f in files.iter_mut() {
            if let Some(h) = f {
                if let Err(e) = h.write_all(&buf[..n]) {
                    err(&format!("write error: {}", ioerr(&e)));
                    status = 1;
                    *f = None;
                }
            }
        }
        stdout_ok = true;
    }
    status
}
