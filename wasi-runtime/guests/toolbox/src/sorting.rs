//! sort, uniq, cut, tr (byte-oriented, C locale collation).

use crate::util::*;
use std::cmp::Ordering;

// ---------------------------------------------------------------- sort

#[derive(Clone, Default, Debug)]
struct KeyOpts {
    numeric: bool,
    general: bool,
    human: bool,
    month: bool,
    version: bool,
    reverse: bool,
    fold: bool,
    dict: bool,
    nonprint: bool,
    skip_start_blanks: bool,
    skip_end_blanks: bool,
}

impl KeyOpts {
    fn any(&self) -> bool {
        self.numeric || self.general || self.human || self.month || self.version || self.reverse || self.fold || self.dict || self.nonprint || self.skip_start_blanks || self.skip_end_blanks
    }
}

#[derive(Clone, Debug)]
struct Key {
    sword: usize,
    schar: usize,
    eword: Option<usize>, // 0-based; None = end of line
    echar: usize,
    o: KeyOpts,
}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn apply_opt_letter(o: &mut KeyOpts, c: char, end: bool) -> bool {
    match c {
        'b' => {
            if end {
                o.skip_end_blanks = true
            } else {
                o.skip_start_blanks = true
            }
        }
        'd' => o.dict = true,
        'f' => o.fold = true,
        'g' => o.general = true,
        'h' => o.human = true,
        'i' => o.nonprint = true,
        'M' => o.month = true,
        'n' => o.numeric = true,
        'r' => o.reverse = true,
        'V' => o.version = true,
        _ => return false,
    }
    true
}

fn parse_key(s: &str) -> Key {
    let bad = |why: &str| -> ! { die(2, &format!("{}: invalid field specification {}", why, qa(s))) };
    let b = s.as_bytes();
    let mut i = 0;
    let num = |i: &mut usize| -> Option<usize> {
        let st = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        if *i == st {
            None
        } else {
            Some(s[st..*i].parse().unwrap_or(usize::MAX))
        }
    };
    let mut o = KeyOpts::default();
    let f = match num(&mut i) {
        Some(f) => f,
        None => die(2, &format!("invalid number at field start: invalid count at start of {}", qa(s))),
    };
    if f == 0 {
        bad("field number is zero");
    }
    let mut schar = 0;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let c = num(&mut i).unwrap_or_else(|| die(2, &format!("invalid number after '.': invalid count at start of {}", qa(&s[i..]))));
        if c == 0 {
            bad("character offset is zero");
        }
        schar = c - 1;
    }
    while i < b.len() && b[i] != b',' {
        if !apply_opt_letter(&mut o, b[i] as char, false) {
            die(2, &format!("stray character in field spec: invalid field specification {}", qa(s)));
        }
        i += 1;
    }
    let mut eword = None;
    let mut echar = 0;
    if i < b.len() && b[i] == b',' {
        i += 1;
        let e = match num(&mut i) {
            Some(e) => e,
            None => die(2, &format!("invalid number after ',': invalid count at start of {}", qa(&s[i..]))),
        };
        if e == 0 {
            bad("field number is zero");
        }
        eword = Some(e - 1);
        if i < b.len() && b[i] == b'.' {
            i += 1;
            echar = num(&mut i).unwrap_or(0);
        }
        while i < b.len() {
            if !apply_opt_letter(&mut o, b[i] as char, true) {
                die(2, &format!("stray character in field spec: invalid field specification {}", qa(s)));
            }
            i += 1;
        }
    }
    Key { sword: f - 1, schar, eword, echar, o }
}

fn begfield(line: &[u8], k: &Key, tab: Option<u8>, skipsb: bool) -> usize {
    let lim = line.len();
    let mut p = 0;
    let mut sword = k.sword;
    match tab {
        Some(t) => {
            while p < lim && sword > 0 {
                sword -= 1;
                while p < lim && line[p] != t {
                    p += 1;
                }
                if p < lim {
                    p += 1;
                }
            }
        }
        None => {
            while p < lim && sword > 0 {
                sword -= 1;
                while p < lim && is_blank(line[p]) {
                    p += 1;
                }
                while p < lim && !is_blank(line[p]) {
                    p += 1;
                }
            }
        }
    }
    if skipsb {
        while p < lim && is_blank(line[p]) {
            p += 1;
        }
    }
    (p + k.schar).min(lim)
}

fn limfield(line: &[u8], k: &Key, tab: Option<u8>, skipeb: bool) -> usize {
    let lim = line.len();
    let mut eword = match k.eword {
        None => return lim,
        Some(e) => e,
    };
    let echar = k.echar;
    if echar == 0 {
        eword += 1;
    }
    let mut p = 0;
    match tab {
        Some(t) => {
            while p < lim && eword > 0 {
                eword -= 1;
                while p < lim && line[p] != t {
                    p += 1;
                }
                if p < lim && (eword > 0 || echar > 0) {
                    p += 1;
                }
            }
        }
        None => {
            while p < lim && eword > 0 {
                eword -= 1;
                while p < lim && is_blank(line[p]) {
                    p += 1;
                }
                while p < lim && !is_blank(line[p]) {
                    p += 1;
                }
            }
        }
    }
    if echar != 0 {
        if skipeb {
            while p < lim && is_blank(line[p]) {
                p += 1;
            }
        }
        p = (p + echar).min(lim);
    }
    p
}

/// Compare two decimal numbers given as text (leading blanks allowed), GNU numcompare style.
fn num_key(s: &[u8]) -> (bool, Vec<u8>, Vec<u8>) {
    let mut i = 0;
    while i < s.len() && is_blank(s[i]) {
        i += 1;
    }
    let mut neg = false;
    if i < s.len() && s[i] == b'-' {
        neg = true;
        i += 1;
    }
    let st = i;
    while i < s.len() && s[i].is_ascii_digit() {
        i += 1;
    }
    let mut int: Vec<u8> = s[st..i].to_vec();
    while int.first() == Some(&b'0') {
        int.remove(0);
    }
    let mut frac = Vec::new();
    if i < s.len() && s[i] == b'.' {
        i += 1;
        let fs = i;
        while i < s.len() && s[i].is_ascii_digit() {
            i += 1;
        }
        frac = s[fs..i].to_vec();
        while frac.last() == Some(&b'0') {
            frac.pop();
        }
    }
    if int.is_empty() && frac.is_empty() {
        neg = false;
    }
    (neg, int, frac)
}

fn cmp_num(a: &[u8], b: &[u8]) -> Ordering {
    let (na, ia, fa) = num_key(a);
    let (nb, ib, fb) = num_key(b);
    if na != nb {
        return if na { Ordering::Less } else { Ordering::Greater };
    }
    let mag = ia.len().cmp(&ib.len()).then_with(|| ia.cmp(&ib)).then_with(|| fa.cmp(&fb));
    if na {
        mag.reverse()
    } else {
        mag
    }
}

fn human_key(s: &[u8]) -> (i32, &[u8]) {
    // returns (sign*suffix rank, numeric part)
    let mut i = 0;
    while i < s.len() && is_blank(s[i]) {
        i += 1;
    }
    let st = i;
    if i < s.len() && s[i] == b'-' {
        i += 1;
    }
    while i < s.len() && (s[i].is_ascii_digit() || s[i] == b'.') {
        i += 1;
    }
    let rank = if i < s.len() {
        match s[i] {
            b'k' | b'K' => 1,
            b'M' => 2,
            b'G' => 3,
            b'T' => 4,
            b'P' => 5,
            b'E' => 6,
            b'Z' => 7,
            b'Y' => 8,
            b'R' => 9,
            b'Q' => 10,
            _ => 0,
        }
    } else {
        0
    };
    let (neg, int, frac) = num_key(&s[st..i]);
    let zero = int.is_empty() && frac.is_empty();
    let sign = if zero { 0 } else if neg { -1 } else { 1 };
    (sign * (rank + 1), &s[st..i])
}

fn cmp_human(a: &[u8], b: &[u8]) -> Ordering {
    let (ra, na) = human_key(a);
    let (rb, nb) = human_key(b);
    ra.cmp(&rb).then_with(|| cmp_num(na, nb))
}

fn general_val(s: &[u8]) -> Option<f64> {
    let t = String::from_utf8_lossy(s);
    let t = t.trim_start();
    // longest prefix that parses
    let mut best = None;
    let tb = t.as_bytes();
    let mut end = tb.len();
    while end > 0 {
        if let Ok(v) = t[..end].parse::<f64>() {
            if !t[..end].ends_with(|c: char| c.is_whitespace()) {
                best = Some(v);
                break;
            }
        }
        end -= 1;
        while end > 0 && !t.is_char_boundary(end) {
            end -= 1;
        }
    }
    best
}

fn cmp_general(a: &[u8], b: &[u8]) -> Ordering {
    let va = general_val(a);
    let vb = general_val(b);
    match (va, vb) {
        (None, None) => Ordering::Equal,
        (None, _) => Ordering::Less,
        (_, None) => Ordering::Greater,
        (Some(x), Some(y)) => {
            if x.is_nan() || y.is_nan() {
                return x.is_nan().cmp(&y.is_nan()).reverse();
            }
            x.partial_cmp(&y).unwrap()
        }
    }
}

fn month_rank(s: &[u8]) -> u32 {
    let mut i = 0;
    while i < s.len() && is_blank(s[i]) {
        i += 1;
    }
    if s.len() < i + 3 {
        return 0;
    }
    let m = s[i..i + 3].to_ascii_uppercase();
    let ms = [b"JAN", b"FEB", b"MAR", b"APR", b"MAY", b"JUN", b"JUL", b"AUG", b"SEP", b"OCT", b"NOV", b"DEC"];
    for (k, x) in ms.iter().enumerate() {
        if &m[..] == &x[..] {
            return k as u32 + 1;
        }
    }
    0
}

/// Version compare (simplified filevercmp: digit runs compared numerically).
fn cmp_version(a: &[u8], b: &[u8]) -> Ordering {
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let (si, sj) = (i, j);
        while i < a.len() && !a[i].is_ascii_digit() {
            i += 1;
        }
        while j < b.len() && !b[j].is_ascii_digit() {
            j += 1;
        }
        let o = verrev_cmp(&a[si..i], &b[sj..j]);
        if o != Ordering::Equal {
            return o;
        }
        let (si, sj) = (i, j);
        while i < a.len() && a[i].is_ascii_digit() {
            i += 1;
        }
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        let o = cmp_num(&a[si..i], &b[sj..j]);
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

fn verrev_cmp(a: &[u8], b: &[u8]) -> Ordering {
    let order = |c: Option<&u8>| -> i32 {
        match c {
            None => 0,
            Some(&b'~') => -1,
            Some(&c) if c.is_ascii_alphabetic() => c as i32,
            Some(&c) => c as i32 + 256,
        }
    };
    let n = a.len().max(b.len());
    for k in 0..n {
        let (x, y) = (order(a.get(k)), order(b.get(k)));
        if x != y {
            return x.cmp(&y);
        }
    }
    Ordering::Equal
}

fn cmp_text(a: &[u8], b: &[u8], o: &KeyOpts) -> Ordering {
    if !(o.fold || o.dict || o.nonprint) {
        return a.cmp(b);
    }
    let keep = |c: &u8| -> bool {
        if o.dict && !(c.is_ascii_alphanumeric() || is_blank(*c)) {
            return false;
        }
        if o.nonprint && !(0x20..0x7f).contains(c) {
            return false;
        }
        true
    };
    let tr = |c: u8| if o.fold { c.to_ascii_uppercase() } else { c };
    let ia = a.iter().filter(|c| keep(c)).map(|&c| tr(c));
    let ib = b.iter().filter(|c| keep(c)).map(|&c| tr(c));
    ia.cmp(ib)
}

fn cmp_key(a: &[u8], b: &[u8], o: &KeyOpts) -> Ordering {
    let r = if o.numeric {
        cmp_num(a, b)
    } else if o.general {
        cmp_general(a, b)
    } else if o.human {
        cmp_human(a, b)
    } else if o.month {
        month_rank(a).cmp(&month_rank(b))
    } else if o.version {
        cmp_version(a, b)
    } else {
        cmp_text(a, b, o)
    };
    if o.reverse {
        r.reverse()
    } else {
        r
    }
}

struct SortCfg {
    keys: Vec<Key>,
    global: KeyOpts,
    tab: Option<u8>,
    stable: bool,
    unique: bool,
}

fn compare(a: &[u8], b: &[u8], c: &SortCfg) -> Ordering {
    if c.keys.is_empty() {
        let r = cmp_key(a, b, &c.global);
        if r != Ordering::Equal || c.stable || c.unique {
            return r;
        }
        // last resort: bytes
        let r = a.cmp(b);
        return if c.global.reverse { r.reverse() } else { r };
    }
    for k in &c.keys {
        let o = if k.o.any() { &k.o } else { &c.global };
        let sb = if k.o.any() { k.o.skip_start_blanks } else { c.global.skip_start_blanks };
        let eb = if k.o.any() { k.o.skip_end_blanks } else { c.global.skip_end_blanks };
        let (sa, ea) = (begfield(a, k, c.tab, sb), limfield(a, k, c.tab, eb));
        let (sbb, ebb) = (begfield(b, k, c.tab, sb), limfield(b, k, c.tab, eb));
        let ka = if sa < ea { &a[sa..ea] } else { &a[0..0] };
        let kb = if sbb < ebb { &b[sbb..ebb] } else { &b[0..0] };
        let r = cmp_key(ka, kb, o);
        if r != Ordering::Equal {
            return r;
        }
    }
    if c.stable || c.unique {
        return Ordering::Equal;
    }
    let r = a.cmp(b);
    if c.global.reverse {
        r.reverse()
    } else {
        r
    }
}

pub fn sort(args: Vec<String>) -> i32 {
    let spec = Spec {
        short: "bcCdfghik:MmnRro:sS:t:T:uVz",
        long: &[
            l("ignore-leading-blanks", Has::No, 'b'),
            l("check", Has::Opt, 'c'),
            l("dictionary-order", Has::No, 'd'),
            l("ignore-case", Has::No, 'f'),
            l("general-numeric-sort", Has::No, 'g'),
            l("human-numeric-sort", Has::No, 'h'),
            l("ignore-nonprinting", Has::No, 'i'),
            l("key", Has::Req, 'k'),
            l("month-sort", Has::No, 'M'),
            l("merge", Has::No, 'm'),
            l("numeric-sort", Has::No, 'n'),
            l("output", Has::Req, 'o'),
            l("reverse", Has::No, 'r'),
            l("stable", Has::No, 's'),
            l("buffer-size", Has::Req, 'S'),
            l("field-separator", Has::Req, 't'),
            l("temporary-directory", Has::Req, 'T'),
            l("unique", Has::No, 'u'),
            l("version-sort", Has::No, 'V'),
            l("zero-terminated", Has::No, 'z'),
            l("parallel", Has::Req, 'P'),
            l("sort", Has::Req, 'w'),
        ],
        code: 2,
        help: "Usage: sort [OPTION]... [FILE]...\nWrite sorted concatenation of all FILE(s) to standard output (C locale byte order).\n\n  -b, --ignore-leading-blanks  ignore leading blanks\n  -d, --dictionary-order      consider only blanks and alphanumeric characters\n  -f, --ignore-case           fold lower case to upper case characters\n  -g, --general-numeric-sort  compare according to general numerical value\n  -i, --ignore-nonprinting    consider only printable characters\n  -M, --month-sort            compare (unknown) < 'JAN' < ... < 'DEC'\n  -h, --human-numeric-sort    compare human readable numbers (e.g., 2K 1G)\n  -n, --numeric-sort          compare according to string numerical value\n  -r, --reverse               reverse the result of comparisons\n  -V, --version-sort          natural sort of (version) numbers within text\n  -c, --check                 check for sorted input; do not sort\n  -C                          like -c, but do not report first bad line\n  -k, --key=KEYDEF            sort via a key; KEYDEF gives location and type\n  -m, --merge                 merge already sorted files; do not sort\n  -o, --output=FILE           write result to FILE instead of standard output\n  -s, --stable                stabilize sort by disabling last-resort comparison\n  -t, --field-separator=SEP   use SEP instead of non-blank to blank transition\n  -u, --unique                output only the first of an equal run\n  -z, --zero-terminated       line delimiter is NUL, not newline\n\nKEYDEF is F[.C][OPTS][,F[.C][OPTS]] for start and stop position.\n",
        stop_at_operand: false,
    };
    let p = getopt(&args, &spec);
    let mut g = KeyOpts::default();
    let mut keys = Vec::new();
    let mut tab: Option<u8> = None;
    let mut check: Option<bool> = None; // Some(quiet)
    let mut output: Option<String> = None;
    let mut delim = b'\n';
    let (mut stable, mut unique) = (false, false);
    for (c, a) in &p.opts {
        match c {
            'k' => keys.push(parse_key(a.as_ref().unwrap())),
            't' => {
                let s = a.clone().unwrap();
                let b = s.as_bytes();
                if b.is_empty() {
                    die(2, "empty tab");
                }
                if b.len() > 1 && s != "\\0" {
                    die(2, &format!("multi-character tab {}", qa(&s)));
                }
                let t = if s == "\\0" { 0 } else { b[0] };
                if tab.is_some() && tab != Some(t) {
                    die(2, "incompatible tabs");
                }
                tab = Some(t);
            }
            'c' => {
                match a.as_deref() {
                    None | Some("diagnose-first") => check = Some(false),
                    Some("quiet") | Some("silent") => check = Some(true),
                    Some(x) => usage_error(2, &format!("invalid argument {} for '--check'", qa(x))),
                }
            }
            'C' => check = Some(true),
            'o' => output = a.clone(),
            's' => stable = true,
            'u' => unique = true,
            'z' => delim = 0,
            'm' | 'S' | 'T' | 'P' => {}
            'R' => die(2, "--random-sort is not supported"),
            'w' => {
                let v = a.clone().unwrap();
                let letter = match v.as_str() {
                    "general-numeric" => 'g',
                    "human-numeric" => 'h',
                    "month" => 'M',
                    "numeric" => 'n',
                    "version" => 'V',
                    _ => usage_error(2, &format!("invalid argument {} for '--sort'", qa(&v))),
                };
                apply_opt_letter(&mut g, letter, false);
            }
            x => {
                if *x == 'b' {
                    g.skip_start_blanks = true;
                    g.skip_end_blanks = true;
                } else {
                    apply_opt_letter(&mut g, *x, false);
                }
            }
        }
    }
    let kinds = [g.numeric, g.general, g.human, g.month, g.version].iter().filter(|x| **x).count();
    if kinds > 1 {
        let mut letters = String::new();
        for (f, c) in [(g.general, 'g'), (g.human, 'h'), (g.month, 'M'), (g.numeric, 'n'), (g.version, 'V')] {
            if f {
                letters.push(c);
            }
        }
        die(2, &format!("options '-{}' are incompatible", letters));
    }
    let cfg = SortCfg { keys, global: g, tab, stable, unique };
    let files = if p.args.is_empty() { vec!["-".to_string()] } else { p.args.clone() };
    if check.is_some() && files.len() > 1 {
        usage_error(2, &format!("extra operand {} not allowed with -c", qa(&files[1])));
    }
    let mut data: Vec<Vec<u8>> = Vec::new();
    for f in &files {
        match read_all(f) {
            Ok(d) => data.push(d),
            Err(e) => {
                let name = if f == "-" { "-" } else { f.as_str() };
                die(2, &format!("cannot read: {}: {}", q(name), ioerr(&e)));
            }
        }
    }
    let mut lines: Vec<&[u8]> = Vec::new();
    for d in &data {
        lines.extend(split_lines(d, delim));
    }
    if let Some(quiet) = check {
        for i in 1..lines.len() {
            let o = compare(lines[i - 1], lines[i], &cfg);
            if o == Ordering::Greater || (unique && o == Ordering::Equal) {
                if !quiet {
                    let stderr = std::io::stderr();
                    use std::io::Write;
                    let mut e = stderr.lock();
                    let _ = write!(e, "{}: {}:{}: disorder: ", prog(), files[0], i + 1);
                    let _ = e.write_all(lines[i]);
                    let _ = e.write_all(b"\n");
                }
                return 1;
            }
        }
        return 0;
    }
    lines.sort_by(|a, b| compare(a, b, &cfg));
    if unique {
        lines.dedup_by(|b, a| compare(a, b, &cfg) == Ordering::Equal);
    }
    let mut buf = Vec::new();
    for l in &lines {
        buf.extend_from_slice(l);
        buf.push(delim);
    }
    match output {
        Some(o) if o != "-" => {
            if let Err(e) = std::fs::write(&o, &buf) {
                die(2, &format!("open failed: {}: {}", q(&o), ioerr(&e)));
            }
        }
        _ => out(&buf),
    }
    0
}

// ---------------------------------------------------------------- uniq

pub fn uniq(args: Vec<String>) -> i32 {
    let spec = Spec {
        short: "cdDf:is:uw:z",
        long: &[
            l("count", Has::No, 'c'),
            l("repeated", Has::No, 'd'),
            l("all-repeated", Has::Opt, 'D'),
            l("skip-fields", Has::Req, 'f'),
            l("ignore-case", Has::No, 'i'),
            l("skip-chars", Has::Req, 's'),
            l("unique", Has::No, 'u'),
            l("check-chars", Has::Req, 'w'),
            l("zero-terminated", Has::No, 'z'),
            l("group", Has::Opt, 'G'),
        ],
        code: 1,
        help: "Usage: uniq [OPTION]... [INPUT [OUTPUT]]\nFilter adjacent matching lines from INPUT (or standard input),\nwriting to OUTPUT (or standard output).\n\n  -c, --count           prefix lines by the number of occurrences\n  -d, --repeated        only print duplicate lines, one for each group\n  -D                    print all duplicate lines\n  -f, --skip-fields=N   avoid comparing the first N fields\n  -i, --ignore-case     ignore differences in case when comparing\n  -s, --skip-chars=N    avoid comparing the first N characters\n  -u, --unique          only print unique lines\n  -w, --check-chars=N   compare no more than N characters in lines\n  -z, --zero-terminated line delimiter is NUL, not newline\n",
        stop_at_operand: false,
    };
    let p = getopt(&args, &spec);
    let (mut count, mut rep, mut allrep, mut uniq_only, mut icase) = (false, false, false, false, false);
    let (mut skipf, mut skipc, mut checkc) = (0usize, 0usize, usize::MAX);
    let mut delim = b'\n';
    let num = |a: &Option<String>, what: &str| -> usize {
        let s = a.clone().unwrap();
        match s.parse::<u64>() {
            Ok(v) => v.min(usize::MAX as u64) as usize,
            Err(_) => {
                if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                    usize::MAX
                } else {
                    die(1, &format!("{}: {}", qa(&s), what))
                }
            }
        }
    };
    for (c, a) in &p.opts {
        match c {
            'c' => count = true,
            'd' => rep = true,
            'D' => allrep = true,
            'u' => uniq_only = true,
            'i' => icase = true,
            'f' => skipf = num(a, "invalid number of fields to skip"),
            's' => skipc = num(a, "invalid number of bytes to skip"),
            'w' => checkc = num(a, "invalid number of bytes to compare"),
            'z' => delim = 0,
            'G' => die(1, "--group is not supported"),
            _ => {}
        }
    }
    if count && allrep {
        usage_error(1, "printing all duplicated lines and repeat counts is meaningless");
    }
    if p.args.len() > 2 {
        usage_error(1, &format!("extra operand {}", qa(&p.args[2])));
    }
    let input = p.args.get(0).cloned().unwrap_or_else(|| "-".into());
    let data = match read_all(&input) {
        Ok(d) => d,
        Err(e) => die(1, &format!("{}: {}", q(&input), ioerr(&e))),
    };
    let lines = split_lines(&data, delim);
    let key = |l: &[u8]| -> Vec<u8> {
        let mut i = 0;
        for _ in 0..skipf {
            while i < l.len() && is_blank(l[i]) {
                i += 1;
            }
            while i < l.len() && !is_blank(l[i]) {
                i += 1;
            }
        }
        i = (i.saturating_add(skipc)).min(l.len());
        let end = i.saturating_add(checkc).min(l.len());
        let k = &l[i..end];
        if icase {
            k.to_ascii_lowercase()
        } else {
            k.to_vec()
        }
    };
    let mut o = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let k = key(lines[i]);
        let mut j = i + 1;
        while j < lines.len() && key(lines[j]) == k {
            j += 1;
        }
        let n = j - i;
        let show = if rep || allrep { n > 1 } else { true } && !(uniq_only && n > 1);
        let show = if uniq_only && (rep || allrep) { false } else { show };
        if show {
            if allrep {
                for l in &lines[i..j] {
                    o.extend_from_slice(l);
                    o.push(delim);
                }
            } else {
                if count {
                    o.extend_from_slice(format!("{:>7} ", n).as_bytes());
                }
                o.extend_from_slice(lines[i]);
                o.push(delim);
            }
        }
        i = j;
    }
    match p.args.get(1) {
        Some(f) if f != "-" => {
            if let Err(e) = std::fs::write(f, &o) {
                die(1, &format!("{}: {}", q(f), ioerr(&e)));
            }
        }
        _ => out(&o),
    }
    0
}

// ---------------------------------------------------------------- cut

fn parse_list(s: &str, what: &str) -> Vec<(usize, usize)> {
    let mut v = Vec::new();
    for part in s.split(|c| c == ',' || c == ' ') {
        if part.is_empty() {
            die(1, &format!("{} are numbered from 1\nTry 'cut --help' for more information.", what));
        }
        let (a, b) = match part.find('-') {
            Some(i) => {
                let a = &part[..i];
                let b = &part[i + 1..];
                if a.is_empty() && b.is_empty() {
                    usage_error(1, "invalid range with no endpoint: -");
                }
                let av = if a.is_empty() { 1 } else { num_or_die(a, part, what) };
                let bv = if b.is_empty() { usize::MAX } else { num_or_die(b, part, what) };
                if av > bv {
                    usage_error(1, "invalid decreasing range");
                }
                (av, bv)
            }
            None => {
                let n = num_or_die(part, part, what);
                (n, n)
            }
        };
        if a == 0 {
            usage_error(1, &format!("{} are numbered from 1", what));
        }
        v.push((a, b));
    }
    v.sort();
    // merge
    let mut m: Vec<(usize, usize)> = Vec::new();
    for r in v {
        if let Some(last) = m.last_mut() {
            if r.0 <= last.1.saturating_add(1) {
                last.1 = last.1.max(r.1);
                continue;
            }
        }
        m.push(r);
    }
    m
}

fn num_or_die(s: &str, whole: &str, _what: &str) -> usize {
    match s.parse::<usize>() {
        Ok(n) => n,
        Err(_) => {
            if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                usize::MAX - 1
            } else {
                usage_error(1, &format!("invalid field value {}", qa(whole)))
            }
        }
    }
}

fn in_list(list: &[(usize, usize)], n: usize) -> bool {
    list.iter().any(|&(a, b)| n >= a && n <= b)
}

pub fn cut(args: Vec<String>) -> i32 {
    let spec = Spec {
        short: "b:c:d:f:nsz",
        long: &[
            l("bytes", Has::Req, 'b'),
            l("characters", Has::Req, 'c'),
            l("delimiter", Has::Req, 'd'),
            l("fields", Has::Req, 'f'),
            l("only-delimited", Has::No, 's'),
            l("zero-terminated", Has::No, 'z'),
            l("complement", Has::No, 'C'),
            l("output-delimiter", Has::Req, 'O'),
        ],
        code: 1,
        help: "Usage: cut OPTION... [FILE]...\nPrint selected parts of lines from each FILE to standard output.\n\n  -b, --bytes=LIST        select only these bytes\n  -c, --characters=LIST   select only these characters (bytes)\n  -d, --delimiter=DELIM   use DELIM instead of TAB for field delimiter\n  -f, --fields=LIST       select only these fields\n  -n                      (ignored)\n      --complement        complement the set of selected bytes, characters\n                            or fields\n  -s, --only-delimited    do not print lines not containing delimiters\n      --output-delimiter=STRING  use STRING as the output delimiter\n  -z, --zero-terminated   line delimiter is NUL, not newline\n\nEach LIST is made up of one range, or many ranges separated by commas:\n  N, N-, N-M, -M\n",
        stop_at_operand: false,
    };
    let p = getopt(&args, &spec);
    let mut mode: Option<(char, String)> = None;
    let mut delim: Option<u8> = None;
    let mut only_delim = false;
    let mut complement = false;
    let mut odelim: Option<String> = None;
    let mut eol = b'\n';
    for (c, a) in &p.opts {
        match c {
            'b' | 'c' | 'f' => {
                if mode.is_some() {
                    usage_error(1, "only one type of list may be specified");
                }
                mode = Some((*c, a.clone().unwrap()));
            }
            'd' => {
                let s = a.clone().unwrap();
                if s.len() > 1 {
                    usage_error(1, "the delimiter must be a single character");
                }
                delim = Some(if s.is_empty() { 0 } else { s.as_bytes()[0] });
            }
            's' => only_delim = true,
            'z' => eol = 0,
            'C' => complement = true,
            'O' => odelim = a.clone(),
            _ => {}
        }
    }
    let (m, list) = match mode {
        Some(m) => m,
        None => usage_error(1, "you must specify a list of bytes, characters, or fields"),
    };
    if m != 'f' && delim.is_some() {
        usage_error(1, "an input delimiter may be specified only when operating on fields");
    }
    if m != 'f' && only_delim {
        usage_error(1, "suppressing non-delimited lines makes sense\n\tonly when operating on fields");
    }
    let what = if m == 'f' { "fields" } else { "byte/character positions" };
    let ranges = parse_list(&list, what);
    let files = if p.args.is_empty() { vec!["-".to_string()] } else { p.args.clone() };
    let d = delim.unwrap_or(b'\t');
    let od: Vec<u8> = match &odelim {
        Some(s) => s.as_bytes().to_vec(),
        None => {
            if m == 'f' {
                vec![d]
            } else {
                Vec::new()
            }
        }
    };
    let mut status = 0;
    let sel = |n: usize| in_list(&ranges, n) != complement;
    for f in &files {
        let data = match read_all(f) {
            Ok(x) => x,
            Err(e) => {
                err(&format!("{}: {}", q(f), ioerr(&e)));
                status = 1;
                continue;
            }
        };
        let mut o = Vec::new();
        for line in split_lines(&data, eol) {
            if m == 'f' {
                if !line.contains(&d) {
                    if !only_delim {
                        o.extend_from_slice(line);
                        o.push(eol);
                    }
                    continue;
                }
                let mut first = true;
                for (i, field) in line.split(|&b| b == d).enumerate() {
                    if sel(i + 1) {
                        if !first {
                            o.extend_from_slice(&od);
                        }
                        o.extend_from_slice(field);
                        first = false;
                    }
                }
                o.push(eol);
            } else {
                let mut prev_sel = false;
                let mut any = false;
                for (i, &b) in line.iter().enumerate() {
                    let s = sel(i + 1);
                    if s {
                        if odelim.is_some() && any && !prev_sel {
                            o.extend_from_slice(&od);
                        }
                        o.push(b);
                        any = true;
                    }
                    prev_sel = s;
                }
                o.push(eol);
            }
        }
        out(&o);
    }
    status
}

// ---------------------------------------------------------------- tr

fn tr_unescape(s: &[u8], i: &mut usize) -> u8 {
    // s[*i] is the char after backslash
    let c = s[*i];
    *i += 1;
    match c {
        b'a' => 7,
        b'b' => 8,
        b'f' => 12,
        b'n' => b'\n',
        b'r' => b'\r',
        b't' => b'\t',
        b'v' => 11,
        b'0'..=b'7' => {
            let mut v = (c - b'0') as u32;
            let mut n = 1;
            while n < 3 && *i < s.len() && (b'0'..=b'7').contains(&s[*i]) {
                let nv = v * 8 + (s[*i] - b'0') as u32;
                if nv > 255 {
                    break;
                }
                v = nv;
                *i += 1;
                n += 1;
            }
            v as u8
        }
        other => other,
    }
}

#[derive(Debug, Clone)]
enum TrItem {
    Byte(u8),
    Class(String),
    Repeat(u8, Option<usize>),
}

fn class_bytes(name: &str) -> Option<Vec<u8>> {
    let f: fn(u8) -> bool = match name {
        "alnum" => |c| c.is_ascii_alphanumeric(),
        "alpha" => |c| c.is_ascii_alphabetic(),
        "blank" => |c| c == b' ' || c == b'\t',
        "cntrl" => |c| c < 32 || c == 127,
        "digit" => |c| c.is_ascii_digit(),
        "graph" => |c| (33..127).contains(&c),
        "lower" => |c| c.is_ascii_lowercase(),
        "print" => |c| (32..127).contains(&c),
        "punct" => |c| c.is_ascii_punctuation(),
        "space" => |c| c == b' ' || (9..=13).contains(&c),
        "upper" => |c| c.is_ascii_uppercase(),
        "xdigit" => |c| c.is_ascii_hexdigit(),
        _ => return None,
    };
    Some((0u8..=255).filter(|&c| f(c)).collect())
}

fn tr_parse(s: &str) -> Vec<TrItem> {
    let b = s.as_bytes();
    let mut items = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'[' && i + 1 < b.len() && b[i + 1] == b':' {
            if let Some(end) = s[i + 2..].find(":]") {
                let name = &s[i + 2..i + 2 + end];
                if class_bytes(name).is_some() {
                    items.push(TrItem::Class(name.to_string()));
                    i += 2 + end + 2;
                    continue;
                } else {
                    die(1, &format!("invalid character class {}", qa(name)));
                }
            }
        }
        if b[i] == b'[' && i + 1 < b.len() && b[i + 1] == b'=' {
            if let Some(end) = s[i + 2..].find("=]") {
                let inner = &b[i + 2..i + 2 + end];
                let c = if inner.len() == 1 {
                    inner[0]
                } else if inner.len() == 2 && inner[0] == b'\\' {
                    let mut k = 1;
                    tr_unescape(inner, &mut k)
                } else {
                    die(1, &format!("{}: equivalence class operand must be a single character", String::from_utf8_lossy(inner)));
                };
                items.push(TrItem::Byte(c));
                i += 2 + end + 2;
                continue;
            }
        }
        if b[i] == b'[' && i + 2 < b.len() {
            // [c*n] / [c*]
            let mut k = i + 1;
            let c = if b[k] == b'\\' && k + 1 < b.len() {
                k += 1;
                tr_unescape(b, &mut k)
            } else {
                k += 1;
                b[k - 1]
            };
            if k < b.len() && b[k] == b'*' {
                if let Some(end) = s[k + 1..].find(']') {
                    let n = &s[k + 1..k + 1 + end];
                    let count = if n.is_empty() {
                        None
                    } else {
                        let v = if n.starts_with('0') { usize::from_str_radix(n, 8) } else { n.parse::<usize>() };
                        match v {
                            Ok(0) => None,
                            Ok(v) => Some(v),
                            Err(_) => die(1, &format!("invalid repeat count {} in [c*n] construct", qa(n))),
                        }
                    };
                    items.push(TrItem::Repeat(c, count));
                    i = k + 1 + end + 1;
                    continue;
                }
            }
        }
        let c = if b[i] == b'\\' && i + 1 < b.len() {
            i += 1;
            tr_unescape(b, &mut i)
        } else {
            i += 1;
            b[i - 1]
        };
        // range?
        if i + 1 < b.len() && b[i] == b'-' {
            let mut k = i + 1;
            let e = if b[k] == b'\\' && k + 1 < b.len() {
                k += 1;
                tr_unescape(b, &mut k)
            } else {
                k += 1;
                b[k - 1]
            };
            if e < c {
                die(1, &format!("range-endpoints of '{}-{}' are in reverse collating sequence order", c as char, e as char));
            }
            for x in c..=e {
                items.push(TrItem::Byte(x));
            }
            i = k;
            continue;
        }
        items.push(TrItem::Byte(c));
    }
    items
}

fn tr_expand(items: &[TrItem], fill_to: Option<usize>) -> Vec<u8> {
    let mut v = Vec::new();
    let fixed: usize = items
        .iter()
        .map(|it| match it {
            TrItem::Byte(_) => 1,
            TrItem::Class(n) => class_bytes(n).unwrap().len(),
            TrItem::Repeat(_, Some(n)) => *n,
            TrItem::Repeat(_, None) => 0,
        })
        .sum();
    for it in items {
        match it {
            TrItem::Byte(c) => v.push(*c),
            TrItem::Class(n) => v.extend(class_bytes(n).unwrap()),
            TrItem::Repeat(c, Some(n)) => v.extend(std::iter::repeat(*c).take(*n)),
            TrItem::Repeat(c, None) => {
                let n = fill_to.map(|t| t.saturating_sub(fixed)).unwrap_or(0);
                v.extend(std::iter::repeat(*c).take(n));
            }
        }
    }
    v
}

pub fn tr(args: Vec<String>) -> i32 {
    let spec = Spec {
        short: "cCdst",
        long: &[l("complement", Has::No, 'c'), l("delete", Has::No, 'd'), l("squeeze-repeats", Has::No, 's'), l("truncate-set1", Has::No, 't')],
        code: 1,
        help: "Usage: tr [OPTION]... STRING1 [STRING2]\nTranslate, squeeze, and/or delete characters from standard input,\nwriting to standard output.\n\n  -c, -C, --complement    use the complement of STRING1\n  -d, --delete            delete characters in STRING1, do not translate\n  -s, --squeeze-repeats   replace each sequence of a repeated character\n                            that is listed in the last specified STRING,\n                            with a single occurrence of that character\n  -t, --truncate-set1     first truncate STRING1 to length of STRING2\n\nSTRINGs use: CHAR1-CHAR2, [CHAR*], [CHAR*REPEAT], [:CLASS:], [=CHAR=],\n\\NNN, \\\\, \\a, \\b, \\f, \\n, \\r, \\t, \\v\n",
        stop_at_operand: false,
    };
    let p = getopt(&args, &spec);
    let comp = p.has('c') || p.has('C');
    let del = p.has('d');
    let sq = p.has('s');
    let trunc = p.has('t');
    let n = p.args.len();
    if n == 0 {
        usage_error(1, "missing operand");
    }
    let translating = !del && n >= 2;
    if del && sq && n < 2 {
        usage_error(1, &format!("missing operand after {}\nTwo strings must be given when both deleting and squeezing repeats.", qa(&p.args[0])));
    }
    if !del && !sq && n < 2 {
        usage_error(1, &format!("missing operand after {}\nTwo strings must be given when translating.", qa(&p.args[0])));
    }
    let max = if del && !sq { 1 } else if !del && sq && n == 1 { 1 } else { 2 };
    if n > max {
        if del && !sq {
            usage_error(1, &format!("extra operand {}\nOnly one string may be given when deleting without squeezing repeats.", qa(&p.args[max])));
        }
        usage_error(1, &format!("extra operand {}", qa(&p.args[max])));
    }
    let s1_items = tr_parse(&p.args[0]);
    let mut set1 = tr_expand(&s1_items, None);
    if comp {
        let mut inset = [false; 256];
        for &c in &set1 {
            inset[c as usize] = true;
        }
        set1 = (0u8..=255).filter(|&c| !inset[c as usize]).collect();
    }
    let set2: Vec<u8> = if n >= 2 {
        let items = tr_parse(&p.args[1]);
        let mut s2 = tr_expand(&items, Some(set1.len()));
        if translating {
            if s2.is_empty() && !set1.is_empty() {
                die(1, "when not truncating set1, string2 must be non-empty");
            }
            if trunc {
                set1.truncate(s2.len());
            } else if s2.len() < set1.len() {
                let last = *s2.last().unwrap();
                s2.resize(set1.len(), last);
            }
        }
        s2
    } else {
        Vec::new()
    };
    let mut map: [u8; 256] = [0; 256];
    for (i, m) in map.iter_mut().enumerate() {
        *m = i as u8;
    }
    let mut in1 = [false; 256];
    for &c in &set1 {
        in1[c as usize] = true;
    }
    if translating {
        for (i, &c) in set1.iter().enumerate() {
            map[c as usize] = set2[i];
        }
    }
    let squeeze_set: Vec<u8> = if sq { if n >= 2 { set2.clone() } else { set1.clone() } } else { Vec::new() };
    let mut insq = [false; 256];
    for &c in &squeeze_set {
        insq[c as usize] = true;
    }
    let stdin = std::io::stdin();
    use std::io::Read;
    let mut inp = stdin.lock();
    let mut buf = vec![0u8; 64 * 1024];
    let mut last: Option<u8> = None;
    loop {
        let k = match inp.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => die(1, &format!("read error: {}", ioerr(&e))),
        };
        let mut o = Vec::with_capacity(k);
        for &b in &buf[..k] {
            if del && in1[b as usize] {
                continue;
            }
            let c = if translating { map[b as usize] } else { b };
            if sq && insq[c as usize] && last == Some(c) {
                continue;
            }
            last = Some(c);
            o.push(c);
        }
        out(&o);
    }
    0
}
