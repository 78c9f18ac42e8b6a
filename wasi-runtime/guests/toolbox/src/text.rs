//! cat, head, tail, wc.

use crate::util::*;
use std::io::{BufRead, BufReader, Read};

pub fn utf8_locale() -> bool {
    for v in ["LC_ALL", "LC_CTYPE", "LANG"] {
        if let Ok(s) = std::env::var(v) {
            if !s.is_empty() {
                let l = s.to_ascii_lowercase();
                return l.contains("utf-8") || l.contains("utf8");
            }
        }
    }
    false
}

// ---------------------------------------------------------------- cat

pub fn cat(args: Vec<String>) -> i32 {
    let spec = Spec {
        short: "AbeEnstTuv",
        long: &[
            l("show-all", Has::No, 'A'),
            l("number-nonblank", Has::No, 'b'),
            l("show-ends", Has::No, 'E'),
            l("number", Has::No, 'n'),
            l("squeeze-blank", Has::No, 's'),
            l("show-tabs", Has::No, 'T'),
            l("show-nonprinting", Has::No, 'v'),
        ],
        code: 1,
        help: "Usage: cat [OPTION]... [FILE]...\nConcatenate FILE(s) to standard output.\n\nWith no FILE, or when FILE is -, read standard input.\n\n  -A, --show-all           equivalent to -vET\n  -b, --number-nonblank    number nonempty output lines, overrides -n\n  -e                       equivalent to -vE\n  -E, --show-ends          display $ at end of each line\n  -n, --number             number all output lines\n  -s, --squeeze-blank      suppress repeated empty output lines\n  -t                       equivalent to -vT\n  -T, --show-tabs          display TAB characters as ^I\n  -u                       (ignored)\n  -v, --show-nonprinting   use ^ and M- notation, except for LFD and TAB\n",
        stop_at_operand: false,
    };
    let p = getopt(&args, &spec);
    let (mut nb, mut ends, mut num, mut squeeze, mut tabs, mut nonp) = (false, false, false, false, false, false);
    for (c, _) in &p.opts {
        match c {
            'A' => {
                nonp = true;
                ends = true;
                tabs = true
            }
            'b' => nb = true,
            'e' => {
                nonp = true;
                ends = true
            }
            'E' => ends = true,
            'n' => num = true,
            's' => squeeze = true,
            't' => {
                nonp = true;
                tabs = true
            }
            'T' => tabs = true,
            'v' => nonp = true,
            _ => {}
        }
    }
    if nb {
        num = false;
    }
    let plain = !(nb || ends || num || squeeze || tabs || nonp);
    let files = if p.args.is_empty() { vec!["-".to_string()] } else { p.args.clone() };
    let mut status = 0;
    let mut lineno: u64 = 0;
    let mut blank_run = 0; // consecutive empty lines seen
    let mut at_line_start = true;
    for f in &files {
        let r = match open_input(f) {
            Ok(r) => r,
            Err(e) => {
                err(&format!("{}: {}", q(f), ioerr(&e)));
                status = 1;
                continue;
            }
        };
        if plain {
            let mut r = r;
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match r.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        out(&buf[..n]);
                        if f == "-" {
                            out_flush();
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        err(&format!("{}: {}", q(f), ioerr(&e)));
                        status = 1;
                        break;
                    }
                }
            }
            continue;
        }
        let mut br = BufReader::new(r);
        let mut line = Vec::new();
        loop {
            line.clear();
            match br.read_until(b'\n', &mut line) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    err(&format!("{}: {}", q(f), ioerr(&e)));
                    status = 1;
                    break;
                }
            }
            let has_nl = line.last() == Some(&b'\n');
            let body = if has_nl { &line[..line.len() - 1] } else { &line[..] };
            let mut o: Vec<u8> = Vec::with_capacity(line.len() + 16);
            if at_line_start {
                let empty = body.is_empty() && has_nl;
                if empty {
                    blank_run += 1;
                    if squeeze && blank_run > 1 {
                        continue;
                    }
                } else {
                    blank_run = 0;
                }
                if num || (nb && !empty) {
                    lineno += 1;
                    o.extend_from_slice(format!("{:>6}\t", lineno).as_bytes());
                }
            }
            for &b in body {
                if b == b'\t' {
                    if tabs {
                        o.extend_from_slice(b"^I");
                    } else {
                        o.push(b);
                    }
                } else if nonp {
                    push_visible(&mut o, b);
                } else {
                    o.push(b);
                }
            }
            if has_nl {
                if ends {
                    o.push(b'$');
                }
                o.push(b'\n');
            }
            at_line_start = has_nl;
            out(&o);
        }
    }
    status
}

fn push_visible(o: &mut Vec<u8>, b: u8) {
    let mut c = b;
    if c >= 128 {
        o.extend_from_slice(b"M-");
        c -= 128;
    }
    if c < 32 {
        o.push(b'^');
        o.push(c + 64);
    } else if c == 127 {
        o.extend_from_slice(b"^?");
    } else {
        o.push(c);
    }
}

// ---------------------------------------------------------------- head / tail

enum Count {
    Lines(u64, bool),
    Bytes(u64, bool),
}

fn parse_count(s: &str, what: &str, allow_plus: bool) -> (u64, bool) {
    let (sign, body) = if let Some(r) = s.strip_prefix('-') {
        ('-', r)
    } else if let Some(r) = s.strip_prefix('+') {
        ('+', r)
    } else {
        (' ', s)
    };
    let n = match parse_size(body) {
        Some(n) => n,
        None => {
            if !body.is_empty() && body.bytes().all(|b| b.is_ascii_digit()) {
                u64::MAX
            } else {
                die(1, &format!("invalid number of {}: {}", what, qa(s)))
            }
        }
    };
    let _ = allow_plus;
    (n, sign == if allow_plus { '+' } else { '-' })
}

fn print_header(name: &str, first: &mut bool) {
    let shown = if name == "-" { "standard input" } else { name };
    if *first {
        outf!("==> {} <==\n", shown);
    } else {
        outf!("\n==> {} <==\n", shown);
    }
    *first = false;
}

pub fn head(args: Vec<String>) -> i32 {
    let spec = Spec {
        short: "c:n:qvz",
        long: &[l("bytes", Has::Req, 'c'), l("lines", Has::Req, 'n'), l("quiet", Has::No, 'q'), l("silent", Has::No, 'q'), l("verbose", Has::No, 'v'), l("zero-terminated", Has::No, 'z')],
        code: 1,
        help: "Usage: head [OPTION]... [FILE]...\nPrint the first 10 lines of each FILE to standard output.\nWith more than one FILE, precede each with a header giving the file name.\n\n  -c, --bytes=[-]NUM       print the first NUM bytes of each file;\n                             with the leading '-', print all but the last\n                             NUM bytes of each file\n  -n, --lines=[-]NUM       print the first NUM lines instead of the first 10;\n                             with the leading '-', print all but the last\n                             NUM lines of each file\n  -q, --quiet, --silent    never print headers giving file names\n  -v, --verbose            always print headers giving file names\n  -z, --zero-terminated    line delimiter is NUL, not newline\n",
        stop_at_operand: false,
    };
    let mut args = args;
    // obsolete -N / -Nc form as the first argument
    if !args.is_empty() && args[0].len() > 1 && args[0].starts_with('-') && args[0].as_bytes()[1].is_ascii_digit() {
        let a = args.remove(0);
        let digits: String = a[1..].chars().take_while(|c| c.is_ascii_digit()).collect();
        let rest = &a[1 + digits.len()..];
        let (opt, extra) = match rest.chars().next() {
            Some('c') => ("-c", &rest[1..]),
            Some('l') => ("-n", &rest[1..]),
            Some('b') => ("-c", &rest[1..]),
            _ => ("-n", rest),
        };
        let mut newa = vec![format!("{}{}", opt, digits)];
        if !extra.is_empty() {
            newa.push(format!("-{}", extra));
        }
        newa.extend(args);
        args = newa;
    }
    let p = getopt(&args, &spec);
    let mut count = Count::Lines(10, false);
    let mut verbose: Option<bool> = None;
    let mut delim = b'\n';
    for (c, a) in &p.opts {
        match c {
            'n' => {
                let (n, neg) = parse_count(a.as_ref().unwrap(), "lines", false);
                count = Count::Lines(n, neg)
            }
            'c' => {
                let (n, neg) = parse_count(a.as_ref().unwrap(), "bytes", false);
                count = Count::Bytes(n, neg)
            }
            'q' => verbose = Some(false),
            'v' => verbose = Some(true),
            'z' => delim = 0,
            _ => {}
        }
    }
    let files = if p.args.is_empty() { vec!["-".to_string()] } else { p.args.clone() };
    let headers = verbose.unwrap_or(files.len() > 1);
    let mut first = true;
    let mut status = 0;
    for f in &files {
        let mut r: Box<dyn Read> = if f == "-" {
            Box::new(std::io::stdin())
        } else {
            match std::fs::File::open(f) {
                Ok(h) => Box::new(h),
                Err(e) => {
                    err(&format!("cannot open {} for reading: {}", qa(f), ioerr(&e)));
                    status = 1;
                    continue;
                }
            }
        };
        if headers {
            print_header(f, &mut first);
        }
        let res = head_one(&mut r, &count, delim);
        if let Err(e) = res {
            err(&format!("error reading {}: {}", qa(f), ioerr(&e)));
            status = 1;
        }
    }
    status
}

fn head_one(r: &mut Box<dyn Read>, count: &Count, delim: u8) -> std::io::Result<()> {
    match *count {
        Count::Bytes(n, false) => {
            let mut left = n;
            let mut buf = vec![0u8; 64 * 1024];
            while left > 0 {
                let want = buf.len().min(left.min(usize::MAX as u64) as usize);
                let k = r.read(&mut buf[..want])?;
                if k == 0 {
                    break;
                }
                out(&buf[..k]);
                left -= k as u64;
            }
        }
        Count::Lines(n, false) => {
            let mut br = BufReader::new(r);
            let mut left = n;
            let mut line = Vec::new();
            while left > 0 {
                line.clear();
                if br.read_until(delim, &mut line)? == 0 {
                    break;
                }
                out(&line);
                left -= 1;
            }
        }
        Count::Bytes(n, true) => {
            let mut v = Vec::new();
            r.read_to_end(&mut v)?;
            let keep = v.len().saturating_sub(n.min(usize::MAX as u64) as usize);
            out(&v[..keep]);
        }
        Count::Lines(n, true) => {
            let mut v = Vec::new();
            r.read_to_end(&mut v)?;
            let mut ends: Vec<usize> = Vec::new(); // positions after each line
            for (i, &b) in v.iter().enumerate() {
                if b == delim {
                    ends.push(i + 1);
                }
            }
            if v.last().map(|&b| b != delim).unwrap_or(false) {
                ends.push(v.len());
            }
            let total = ends.len() as u64;
            if total > n {
                let keep_lines = (total - n) as usize;
                out(&v[..ends[keep_lines - 1]]);
            }
        }
    }
    Ok(())
}

pub fn tail(args: Vec<String>) -> i32 {
    let spec = Spec {
        short: "c:n:qvzfFs:",
        long: &[
            l("bytes", Has::Req, 'c'),
            l("lines", Has::Req, 'n'),
            l("quiet", Has::No, 'q'),
            l("silent", Has::No, 'q'),
            l("verbose", Has::No, 'v'),
            l("zero-terminated", Has::No, 'z'),
            l("follow", Has::Opt, 'f'),
            l("retry", Has::No, 'r'),
            l("sleep-interval", Has::Req, 's'),
            l("pid", Has::Req, 'p'),
        ],
        code: 1,
        help: "Usage: tail [OPTION]... [FILE]...\nPrint the last 10 lines of each FILE to standard output.\nWith more than one FILE, precede each with a header giving the file name.\n\n  -c, --bytes=[+]NUM       output the last NUM bytes; or use -c +NUM to\n                             output starting with byte NUM of each file\n  -n, --lines=[+]NUM       output the last NUM lines, instead of the last 10;\n                             or use -n +NUM to skip NUM-1 lines at the start\n  -q, --quiet, --silent    never output headers giving file names\n  -v, --verbose            always output headers giving file names\n  -z, --zero-terminated    line delimiter is NUL, not newline\n  -f, --follow             not supported in the sandbox: prints the current\n                             contents and exits (with a warning)\n",
        stop_at_operand: false,
    };
    let mut args = args;
    // obsolete usage: tail [+-]N[cl] [FILE]
    if !args.is_empty() && args.len() <= 2 && args[0].len() > 1 && (args[0].starts_with('-') || args[0].starts_with('+')) && args[0].as_bytes()[1].is_ascii_digit() {
        let a = args.remove(0);
        let sign = &a[..1];
        let digits: String = a[1..].chars().take_while(|c| c.is_ascii_digit()).collect();
        let rest = &a[1 + digits.len()..];
        let (opt, extra) = match rest.chars().next() {
            Some('c') => ("-c", &rest[1..]),
            Some('l') => ("-n", &rest[1..]),
            Some('b') => ("-c", &rest[1..]),
            _ => ("-n", rest),
        };
        let mut newa = vec![format!("{}{}{}", opt, if sign == "+" { "+" } else { "" }, digits)];
        if !extra.is_empty() {
            newa.push(format!("-{}", extra));
        }
        newa.extend(args);
        args = newa;
    }
    let p = getopt(&args, &spec);
    let mut count = Count::Lines(10, false);
    let mut verbose: Option<bool> = None;
    let mut delim = b'\n';
    let mut follow = false;
    for (c, a) in &p.opts {
        match c {
            'n' => {
                let (n, plus) = parse_count(a.as_ref().unwrap(), "lines", true);
                count = Count::Lines(n, plus)
            }
            'c' => {
                let (n, plus) = parse_count(a.as_ref().unwrap(), "bytes", true);
                count = Count::Bytes(n, plus)
            }
            'q' => verbose = Some(false),
            'v' => verbose = Some(true),
            'z' => delim = 0,
            'f' | 'F' => follow = true,
            _ => {}
        }
    }
    if follow {
        err("warning: following is not supported in the sandbox; printing the current contents");
    }
    let files = if p.args.is_empty() { vec!["-".to_string()] } else { p.args.clone() };
    let headers = verbose.unwrap_or(files.len() > 1);
    let mut first = true;
    let mut status = 0;
    for f in &files {
        let data = if f == "-" {
            let mut v = Vec::new();
            match std::io::stdin().read_to_end(&mut v) {
                Ok(_) => Ok(v),
                Err(e) => Err(e),
            }
        } else {
            match std::fs::File::open(f) {
                Ok(mut h) => {
                    if headers {
                        print_header(f, &mut first);
                    }
                    let mut v = Vec::new();
                    match h.read_to_end(&mut v) {
                        Ok(_) => Ok(v),
                        Err(e) => {
                            err(&format!("error reading {}: {}", qa(f), ioerr(&e)));
                            status = 1;
                            continue;
                        }
                    }
                }
                Err(e) => {
                    err(&format!("cannot open {} for reading: {}", qa(f), ioerr(&e)));
                    status = 1;
                    continue;
                }
            }
        };
        let v = match data {
            Ok(v) => v,
            Err(e) => {
                err(&format!("error reading 'standard input': {}", ioerr(&e)));
                status = 1;
                continue;
            }
        };
        if f == "-" && headers {
            print_header(f, &mut first);
        }
        match count {
            Count::Bytes(n, false) => {
                let start = v.len().saturating_sub(n.min(usize::MAX as u64) as usize);
                out(&v[start..]);
            }
            Count::Bytes(n, true) => {
                let start = (n.max(1) - 1).min(v.len() as u64) as usize;
                out(&v[start..]);
            }
            Count::Lines(n, false) => {
                if n == 0 {
                    continue;
                }
                // walk back n delimiters (a final unterminated line counts as a line)
                let mut idx = v.len();
                let mut seen = 0u64;
                if idx > 0 && v[idx - 1] == delim {
                    idx -= 1;
                }
                let mut start = 0;
                while idx > 0 {
                    idx -= 1;
                    if v[idx] == delim {
                        seen += 1;
                        if seen == n {
                            start = idx + 1;
                            break;
                        }
                    }
                }
                out(&v[start..]);
            }
            Count::Lines(n, true) => {
                let skip = n.max(1) - 1;
                let mut start = 0usize;
                let mut k = 0u64;
                while k < skip && start < v.len() {
                    match v[start..].iter().position(|&b| b == delim) {
                        Some(p) => start += p + 1,
                        None => start = v.len(),
                    }
                    k += 1;
                }
                out(&v[start..]);
            }
        }
    }
    status
}

// ---------------------------------------------------------------- wc

#[derive(Default, Clone, Copy)]
struct Counts {
    lines: u64,
    words: u64,
    chars: u64,
    bytes: u64,
    maxlen: u64,
}

fn wc_count(data: &[u8], utf8: bool, full: bool) -> Counts {
    let mut c = Counts { bytes: data.len() as u64, ..Default::default() };
    if !full {
        // Lines, bytes and characters only: no per-byte state machine (10x faster on big input).
        c.lines = data.iter().filter(|&&b| b == b'\n').count() as u64;
        c.chars = if utf8 {
            data.iter().filter(|&&b| (b & 0xc0) != 0x80).count() as u64
        } else {
            data.len() as u64
        };
        return c;
    }
    let mut in_word = false;
    let mut linepos: u64 = 0;
    if !utf8 {
        c.chars = data.len() as u64;
        for &b in data {
            match b {
                b'\n' => {
                    c.lines += 1;
                    c.maxlen = c.maxlen.max(linepos);
                    linepos = 0;
                    if in_word {
                        c.words += 1;
                        in_word = false;
                    }
                }
                b'\r' | b'\x0c' => {
                    c.maxlen = c.maxlen.max(linepos);
                    linepos = 0;
                    if in_word {
                        c.words += 1;
                        in_word = false;
                    }
                }
                b'\t' => {
                    linepos += 8 - linepos % 8;
                    if in_word {
                        c.words += 1;
                        in_word = false;
                    }
                }
                b' ' | b'\x0b' => {
                    if b == b' ' {
                        linepos += 1;
                    }
                    if in_word {
                        c.words += 1;
                        in_word = false;
                    }
                }
                0x21..=0x7e => {
                    linepos += 1;
                    in_word = true;
                }
                _ => {}
            }
        }
    } else {
        let s = String::from_utf8_lossy(data);
        // count chars on the raw bytes: every byte that is not a UTF-8 continuation byte
        c.chars = data.iter().filter(|&&b| (b & 0xc0) != 0x80).count() as u64;
        for ch in s.chars() {
            match ch {
                '\n' => {
                    c.lines += 1;
                    c.maxlen = c.maxlen.max(linepos);
                    linepos = 0;
                    if in_word {
                        c.words += 1;
                        in_word = false;
                    }
                }
                '\r' | '\x0c' => {
                    c.maxlen = c.maxlen.max(linepos);
                    linepos = 0;
                    if in_word {
                        c.words += 1;
                        in_word = false;
                    }
                }
                '\t' => {
                    linepos += 8 - linepos % 8;
                    if in_word {
                        c.words += 1;
                        in_word = false;
                    }
                }
                c2 if c2.is_whitespace() && !matches!(c2, '\u{a0}' | '\u{2007}' | '\u{202f}') => {
                    linepos += 1;
                    if in_word {
                        c.words += 1;
                        in_word = false;
                    }
                }
                '\u{fffd}' => {}
                c2 if c2.is_control() => {}
                c2 => {
                    linepos += if is_wide(c2) { 2 } else { 1 };
                    in_word = true;
                }
            }
        }
    }
    if in_word {
        c.words += 1;
    }
    c.maxlen = c.maxlen.max(linepos);
    c
}

fn is_wide(c: char) -> bool {
    let u = c as u32;
    (0x1100..=0x115f).contains(&u) || (0x2e80..=0xa4cf).contains(&u) || (0xac00..=0xd7a3).contains(&u) || (0xf900..=0xfaff).contains(&u) || (0xfe30..=0xfe4f).contains(&u) || (0xff00..=0xff60).contains(&u) || (0xffe0..=0xffe6).contains(&u) || (0x1f300..=0x1f64f).contains(&u) || (0x1f900..=0x1f9ff).contains(&u) || (0x20000..=0x3fffd).contains(&u)
}

/// Counts standard input in line-aligned chunks: a newline is a word and character boundary, so
/// the sums equal the count of the whole stream, which is never held in memory at once.
fn wc_stream<R: Read>(mut input: R, utf8: bool, full: bool) -> std::io::Result<Counts> {
    let mut tot = Counts::default();
    let mut add = |c: Counts| {
        tot.lines += c.lines;
        tot.words += c.words;
        tot.chars += c.chars;
        tot.bytes += c.bytes;
        tot.maxlen = tot.maxlen.max(c.maxlen);
    };
    let mut carry: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(ref e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        carry.extend_from_slice(&buf[..n]);
        if let Some(pos) = carry.iter().rposition(|&b| b == b'\n') {
            let rest = carry.split_off(pos + 1);
            add(wc_count(&carry, utf8, full));
            carry = rest;
        }
    }
    if !carry.is_empty() {
        add(wc_count(&carry, utf8, full));
    }
    Ok(tot)
}

pub fn wc(args: Vec<String>) -> i32 {
    let spec = Spec {
        short: "clLmw",
        long: &[l("bytes", Has::No, 'c'), l("chars", Has::No, 'm'), l("lines", Has::No, 'l'), l("max-line-length", Has::No, 'L'), l("words", Has::No, 'w'), l("total", Has::Req, 'T'), l("files0-from", Has::Req, '0')],
        code: 1,
        help: "Usage: wc [OPTION]... [FILE]...\nPrint newline, word, and byte counts for each FILE, and a total line if\nmore than one FILE is specified.\n\n  -c, --bytes            print the byte counts\n  -m, --chars            print the character counts\n  -l, --lines            print the newline counts\n  -L, --max-line-length  print the maximum display width\n  -w, --words            print the word counts\n      --total=WHEN       when to print a line with total counts;\n                           WHEN can be: auto, always, only, never\n",
        stop_at_operand: false,
    };
    let p = getopt(&args, &spec);
    let (mut pl, mut pw, mut pc, mut pm, mut p_big_l) = (p.has('l'), p.has('w'), p.has('c'), p.has('m'), p.has('L'));
    if !(pl || pw || pc || pm || p_big_l) {
        pl = true;
        pw = true;
        pc = true;
    }
    let mut total_mode = "auto".to_string();
    for (c, a) in &p.opts {
        if *c == 'T' {
            let v = a.clone().unwrap();
            let opts = ["auto", "always", "only", "never"];
            let m: Vec<&&str> = opts.iter().filter(|o| o.starts_with(v.as_str())).collect();
            if v.is_empty() || m.len() != 1 {
                usage_error(1, &format!("invalid argument {} for '--total'\nValid arguments are:\n  - 'auto'\n  - 'always'\n  - 'only'\n  - 'never'", qa(&v)));
            }
            total_mode = m[0].to_string();
        }
        if *c == '0' {
            die(1, "--files0-from is not supported");
        }
    }
    let _ = (&mut pw, &mut pc, &mut pm, &mut p_big_l);
    let utf8 = utf8_locale();
    // Words and the longest line need the full scan; the other counts do not.
    let full = pw || p_big_l;
    let files: Vec<String> = if p.args.is_empty() { vec!["-".into()] } else { p.args.clone() };
    let named = !p.args.is_empty();
    // width computation (GNU compute_number_width)
    let ncounts = [pl, pw, pm, pc, p_big_l].iter().filter(|x| **x).count();
    let width = if ncounts == 1 && files.len() == 1 && total_mode != "always" && total_mode != "only" {
        1
    } else {
        let mut minw = 1;
        let mut total: u64 = 0;
        for f in &files {
            if f == "-" {
                match crate::sys::stdin_meta() {
                    Some((true, n)) => total += n,
                    _ => minw = 7,
                }
                continue;
            }
            if let Ok(m) = std::fs::metadata(f) {
                if m.is_file() {
                    total += m.len();
                } else {
                    minw = 7;
                }
            }
        }
        let w = format!("{}", total).len();
        w.max(minw)
    };
    let mut tot = Counts::default();
    let mut status = 0;
    let mut nok = 0;
    let fmt_line = |c: &Counts, name: Option<&str>| -> String {
        let mut parts = Vec::new();
        if pl {
            parts.push(c.lines);
        }
        if pw {
            parts.push(c.words);
        }
        if pm {
            parts.push(c.chars);
        }
        if pc {
            parts.push(c.bytes);
        }
        if p_big_l {
            parts.push(c.maxlen);
        }
        let mut s = String::new();
        for (i, v) in parts.iter().enumerate() {
            if i > 0 {
                s.push(' ');
            }
            s.push_str(&format!("{:>w$}", v, w = width));
        }
        if let Some(n) = name {
            s.push(' ');
            s.push_str(n);
        }
        s.push('\n');
        s
    };
    for f in &files {
        let counted = if f == "-" {
            wc_stream(std::io::stdin(), utf8, full)
        } else {
            crate::util::open_input(f).and_then(|r| wc_stream(r, utf8, full))
        };
        match counted {
            Ok(c) => {
                tot.lines += c.lines;
                tot.words += c.words;
                tot.chars += c.chars;
                tot.bytes += c.bytes;
                tot.maxlen = tot.maxlen.max(c.maxlen);
                nok += 1;
                if total_mode != "only" {
                    outs(&fmt_line(&c, if named { Some(f) } else { None }));
                }
            }
            Err(e) => {
                err(&format!("{}: {}", q(f), ioerr(&e)));
                status = 1;
                if crate::util::errno(&e) == crate::util::Errno::IsDir && total_mode != "only" {
                    outs(&fmt_line(&Counts::default(), Some(f)));
                }
            }
        }
    }
    let _ = nok;
    let show_total = match total_mode.as_str() {
        "always" => true,
        "never" => false,
        "only" => true,
        _ => files.len() > 1,
    };
    if show_total {
        if total_mode == "only" {
            outs(&fmt_line(&tot, None));
        } else {
            outs(&fmt_line(&tot, Some("total")));
        }
    }
    status
}
