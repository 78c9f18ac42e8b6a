//! Shared plumbing: program name, diagnostics, buffered stdout with broken-pipe handling,
//! a GNU-style getopt_long, and small helpers used by several commands.

use std::cell::RefCell;
use std::io::{self, BufWriter, Read, Write};

/// Exit status used when stdout turns out to be a closed pipe (`yes | head`).
/// A native build mirrors a shell's report of SIGPIPE (128+13). wasmtime refuses
/// `proc_exit` codes >= 126 (it traps instead), so the wasm build uses 125.
#[cfg(target_os = "wasi")]
pub const EXIT_PIPE: i32 = 125;
#[cfg(not(target_os = "wasi"))]
pub const EXIT_PIPE: i32 = 141;

pub const VERSION: &str = "0.1";

thread_local! {
    static PROG: RefCell<String> = RefCell::new(String::from("toolbox"));
}

pub fn set_prog(name: &str) {
    PROG.with(|p| *p.borrow_mut() = name.to_string());
}

pub fn prog() -> String {
    PROG.with(|p| p.borrow().clone())
}

/// Print `PROG: msg` on stderr.
pub fn err(msg: &str) {
    let stderr = io::stderr();
    let mut e = stderr.lock();
    let _ = writeln!(e, "{}: {}", prog(), msg);
}

/// Flush stdout and exit.
pub fn exit(code: i32) -> ! {
    out_flush();
    std::process::exit(code)
}

/// Print a message and exit with `code`.
pub fn die(code: i32, msg: &str) -> ! {
    out_flush();
    err(msg);
    std::process::exit(code)
}

/// The C library's text for an I/O error, without Rust's " (os error N)" suffix.
pub fn ioerr(e: &io::Error) -> String {
    if let Some(code) = e.raw_os_error() {
        // wasi-libc's strerror uses musl's wording; align the few that differ from glibc.
        #[cfg(target_os = "wasi")]
        {
            match code {
                32 => return "Too many levels of symbolic links".into(),
                58 => return "Operation not supported".into(),
                76 => return "Permission denied".into(), // ENOTCAPABLE: outside the sandbox
                _ => {}
            }
        }
        let s = e.to_string();
        let suffix = format!(" (os error {})", code);
        if let Some(stripped) = s.strip_suffix(&suffix) {
            return stripped.to_string();
        }
        return s;
    }
    if is_outside_sandbox(e) {
        return "No such file or directory".into();
    }
    match e.kind() {
        io::ErrorKind::NotFound => "No such file or directory".into(),
        io::ErrorKind::PermissionDenied => "Permission denied".into(),
        io::ErrorKind::AlreadyExists => "File exists".into(),
        io::ErrorKind::InvalidData => "Invalid or incomplete multibyte or wide character".into(),
        _ => e.to_string(),
    }
}

/// errno-like classification that works for both targets.
#[derive(PartialEq, Eq, Clone, Copy, Debug)]
pub enum Errno {
    NoEnt,
    NotDir,
    IsDir,
    NotEmpty,
    Exist,
    Acces,
    Loop,
    XDev,
    Other,
}

/// Rust's WASI std reports a path outside every preopened directory with a custom error;
/// to the guest such a path simply does not exist.
pub fn is_outside_sandbox(e: &io::Error) -> bool {
    e.raw_os_error().is_none() && e.to_string().starts_with("failed to find a pre-opened file descriptor")
}

pub fn errno(e: &io::Error) -> Errno {
    if is_outside_sandbox(e) {
        return Errno::NoEnt;
    }
    match e.kind() {
        io::ErrorKind::NotFound => return Errno::NoEnt,
        io::ErrorKind::AlreadyExists => return Errno::Exist,
        io::ErrorKind::PermissionDenied => return Errno::Acces,
        _ => {}
    }
    let c = match e.raw_os_error() {
        Some(c) => c,
        None => return Errno::Other,
    };
    #[cfg(target_os = "wasi")]
    let t = [(44, Errno::NoEnt), (54, Errno::NotDir), (31, Errno::IsDir), (55, Errno::NotEmpty), (20, Errno::Exist), (2, Errno::Acces), (76, Errno::Acces), (32, Errno::Loop), (75, Errno::XDev)];
    #[cfg(not(target_os = "wasi"))]
    let t = [(2, Errno::NoEnt), (20, Errno::NotDir), (21, Errno::IsDir), (39, Errno::NotEmpty), (17, Errno::Exist), (13, Errno::Acces), (1, Errno::Acces), (40, Errno::Loop), (18, Errno::XDev)];
    for (n, k) in t.iter() {
        if *n == c {
            return *k;
        }
    }
    Errno::Other
}

/// An io::Error carrying a given errno class (for messages like "Is a directory").
pub fn mkerr(k: Errno) -> io::Error {
    #[cfg(target_os = "wasi")]
    let c = match k {
        Errno::NoEnt => 44,
        Errno::NotDir => 54,
        Errno::IsDir => 31,
        Errno::NotEmpty => 55,
        Errno::Exist => 20,
        Errno::Acces => 2,
        Errno::Loop => 32,
        Errno::XDev => 75,
        Errno::Other => 29,
    };
    #[cfg(not(target_os = "wasi"))]
    let c = match k {
        Errno::NoEnt => 2,
        Errno::NotDir => 20,
        Errno::IsDir => 21,
        Errno::NotEmpty => 39,
        Errno::Exist => 17,
        Errno::Acces => 13,
        Errno::Loop => 40,
        Errno::XDev => 18,
        Errno::Other => 5,
    };
    io::Error::from_raw_os_error(c)
}

/// GNU's quoting of a file name in diagnostics (`quote`, LC_ALL=C / shell-escape style).
pub fn q(s: &str) -> String {
    let needs = s.is_empty()
        || s.bytes().any(|b| !(b.is_ascii_alphanumeric() || b"-_./,:+@%^=".contains(&b)));
    if !needs {
        return s.to_string();
    }
    if !s.contains('\'') && !s.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return format!("'{}'", s);
    }
    shell_escape(s)
}

/// GNU "shell-escape-always" style used for names with quotes / control characters.
pub fn shell_escape(s: &str) -> String {
    let mut o = String::new();
    let mut in_q = false;
    let ctl = |c: char| (c as u32) < 0x20 || c as u32 == 0x7f;
    if !s.chars().any(ctl) && s.contains('\'') && !s.contains('"') && !s.contains('$') && !s.contains('`') && !s.contains('\\') {
        return format!("\"{}\"", s);
    }
    for c in s.chars() {
        if ctl(c) {
            if in_q {
                o.push('\'');
                in_q = false;
            }
            let esc = match c {
                '\n' => "n".to_string(),
                '\t' => "t".to_string(),
                '\r' => "r".to_string(),
                '\x07' => "a".to_string(),
                '\x08' => "b".to_string(),
                '\x0b' => "v".to_string(),
                '\x0c' => "f".to_string(),
                _ => format!("{:03o}", c as u32),
            };
            o.push_str("$'\\");
            o.push_str(&esc);
            o.push('\'');
        } else if c == '\'' {
            if in_q {
                o.push('\'');
                in_q = false;
            }
            o.push_str("\\'");
        } else {
            if !in_q {
                o.push('\'');
                in_q = true;
            }
            o.push(c);
        }
    }
    if in_q {
        o.push('\'');
    }
    o
}

// ---------------------------------------------------------------- stdout

thread_local! {
    static OUT: RefCell<Option<BufWriter<io::Stdout>>> = RefCell::new(None);
}

fn write_failed(e: &io::Error) -> ! {
    let pipe = e.kind() == io::ErrorKind::BrokenPipe || cfg!(target_os = "wasi");
    if pipe {
        std::process::exit(EXIT_PIPE);
    }
    err(&format!("write error: {}", ioerr(e)));
    std::process::exit(1);
}

/// Write bytes to (buffered) stdout; a closed pipe ends the program quietly.
pub fn out(b: &[u8]) {
    OUT.with(|o| {
        let mut o = o.borrow_mut();
        let w = o.get_or_insert_with(|| BufWriter::with_capacity(32 * 1024, io::stdout()));
        if let Err(e) = w.write_all(b) {
            write_failed(&e);
        }
    })
}

pub fn outs(s: &str) {
    out(s.as_bytes())
}

pub fn out_flush() {
    OUT.with(|o| {
        if let Some(w) = o.borrow_mut().as_mut() {
            if let Err(e) = w.flush() {
                write_failed(&e);
            }
        }
    })
}

#[macro_export]
macro_rules! outf {
    ($($a:tt)*) => { $crate::util::outs(&format!($($a)*)) };
}

// ---------------------------------------------------------------- input

/// Open a named input ("-" is stdin).
pub fn open_input(name: &str) -> io::Result<Box<dyn Read>> {
    if name == "-" {
        Ok(Box::new(io::stdin()))
    } else {
        let f = std::fs::File::open(name)?;
        if f.metadata().map(|m| m.is_dir()).unwrap_or(false) {
            return Err(mkerr(Errno::IsDir));
        }
        Ok(Box::new(f))
    }
}

pub fn read_all(name: &str) -> io::Result<Vec<u8>> {
    let mut r = open_input(name)?;
    let mut v = Vec::new();
    r.read_to_end(&mut v)?;
    Ok(v)
}

/// Split into lines (without terminators); reports whether the last line was terminated.
pub fn split_lines(data: &[u8], delim: u8) -> Vec<&[u8]> {
    let mut v: Vec<&[u8]> = data.split(|&b| b == delim).collect();
    if data.is_empty() || data.last() == Some(&delim) {
        v.pop();
    }
    v
}

// ---------------------------------------------------------------- getopt

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Has {
    No,
    Req,
    Opt,
}

pub struct Long {
    pub name: &'static str,
    pub has: Has,
    pub id: char,
}

pub const fn l(name: &'static str, has: Has, id: char) -> Long {
    Long { name, has, id }
}

pub struct Spec<'a> {
    /// getopt short string: "ab:c::"
    pub short: &'a str,
    pub long: &'a [Long],
    /// exit status for usage errors
    pub code: i32,
    pub help: &'a str,
    /// stop at first operand (POSIX mode / commands with their own syntax)
    pub stop_at_operand: bool,
}

pub struct Parsed {
    pub opts: Vec<(char, Option<String>)>,
    pub args: Vec<String>,
}

impl Parsed {
    pub fn has(&self, c: char) -> bool {
        self.opts.iter().any(|(o, _)| *o == c)
    }
}

pub fn usage_error(code: i32, msg: &str) -> ! {
    out_flush();
    err(msg);
    let stderr = io::stderr();
    let p = prog();
    if p == "grep" || p == "egrep" || p == "fgrep" {
        let _ = writeln!(stderr.lock(), "Usage: {} [OPTION]... PATTERNS [FILE]...", p);
    }
    let _ = writeln!(stderr.lock(), "Try '{} --help' for more information.", p);
    std::process::exit(code)
}

pub fn print_help(help: &str) -> ! {
    outs(&help.replace("{P}", &prog()));
    if !help.ends_with('\n') {
        outs("\n");
    }
    exit(0)
}

pub fn print_version() -> ! {
    outf!("{} (hybox toolbox) {}\n", prog(), VERSION);
    exit(0)
}

pub fn getopt(args: &[String], spec: &Spec) -> Parsed {
    let mut opts = Vec::new();
    let mut operands = Vec::new();
    let sh: Vec<char> = spec.short.chars().collect();
    let short_has = |c: char| -> Option<Has> {
        let mut i = 0;
        while i < sh.len() {
            if sh[i] == c && c != ':' {
                if i + 2 < sh.len() + 1 && sh.get(i + 1) == Some(&':') {
                    if sh.get(i + 2) == Some(&':') {
                        return Some(Has::Opt);
                    }
                    return Some(Has::Req);
                }
                return Some(Has::No);
            }
            i += 1;
        }
        None
    };
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if a == "--" {
            operands.extend(args[i..].iter().cloned());
            break;
        }
        if a.starts_with("--") {
            let body = &a[2..];
            let (name, val) = match body.find('=') {
                Some(p) => (&body[..p], Some(body[p + 1..].to_string())),
                None => (body, None),
            };
            let builtin = [l("help", Has::No, '\u{1}'), l("version", Has::No, '\u{2}')];
            let all: Vec<&Long> = spec.long.iter().chain(builtin.iter()).collect();
            let exact: Vec<&&Long> = all.iter().filter(|o| o.name == name).collect();
            let cands: Vec<&&Long> = if !exact.is_empty() {
                exact
            } else {
                all.iter().filter(|o| o.name.starts_with(name)).collect()
            };
            if cands.is_empty() {
                usage_error(spec.code, &format!("unrecognized option '{}'", a));
            }
            if cands.len() > 1 && cands.iter().any(|c| c.id != cands[0].id || c.has != cands[0].has) {
                let mut m = format!("option '{}' is ambiguous; possibilities:", a.split('=').next().unwrap());
                for c in &cands {
                    m.push_str(&format!(" '--{}'", c.name));
                }
                usage_error(spec.code, &m);
            }
            let o = cands[0];
            let arg = match o.has {
                Has::No => {
                    if val.is_some() {
                        usage_error(spec.code, &format!("option '--{}' doesn't allow an argument", o.name));
                    }
                    None
                }
                Has::Opt => val,
                Has::Req => {
                    if val.is_some() {
                        val
                    } else if i < args.len() {
                        i += 1;
                        Some(args[i - 1].clone())
                    } else {
                        usage_error(spec.code, &format!("option '--{}' requires an argument", o.name));
                    }
                }
            };
            if o.id == '\u{1}' {
                print_help(spec.help);
            }
            if o.id == '\u{2}' {
                print_version();
            }
            opts.push((o.id, arg));
            continue;
        }
        if a.starts_with('-') && a.len() > 1 {
            let cs: Vec<char> = a[1..].chars().collect();
            let mut j = 0;
            while j < cs.len() {
                let c = cs[j];
                j += 1;
                match short_has(c) {
                    None => usage_error(spec.code, &format!("invalid option -- '{}'", c)),
                    Some(Has::No) => opts.push((c, None)),
                    Some(Has::Opt) => {
                        let rest: String = cs[j..].iter().collect();
                        opts.push((c, if rest.is_empty() { None } else { Some(rest) }));
                        break;
                    }
                    Some(Has::Req) => {
                        let rest: String = cs[j..].iter().collect();
                        if !rest.is_empty() {
                            opts.push((c, Some(rest)));
                        } else if i < args.len() {
                            opts.push((c, Some(args[i].clone())));
                            i += 1;
                        } else {
                            usage_error(spec.code, &format!("option requires an argument -- '{}'", c));
                        }
                        break;
                    }
                }
            }
            continue;
        }
        operands.push(a.clone());
        if spec.stop_at_operand {
            operands.extend(args[i..].iter().cloned());
            break;
        }
    }
    Parsed { opts, args: operands }
}

// ---------------------------------------------------------------- numbers

/// Parse a size with optional multiplier suffix (head/tail/du style): K=1024, KB=1000, b=512...
pub fn parse_size(s: &str) -> Option<u64> {
    let digits_end = s.bytes().position(|b| !b.is_ascii_digit()).unwrap_or(s.len());
    if digits_end == 0 {
        return None;
    }
    let n: u64 = s[..digits_end].parse().ok()?;
    let suf = &s[digits_end..];
    let mult: u64 = match suf {
        "" => 1,
        "b" => 512,
        "c" => 1,
        "w" => 2,
        "kB" | "KB" => 1000,
        "K" | "k" | "KiB" | "kiB" => 1024,
        "MB" => 1000_000,
        "M" | "MiB" => 1 << 20,
        "GB" => 1000_000_000,
        "G" | "GiB" => 1 << 30,
        "TB" => 1000_000_000_000,
        "T" | "TiB" => 1 << 40,
        "PB" => 1000_000_000_000_000,
        "P" | "PiB" => 1 << 50,
        "EB" => 1000_000_000_000_000_000,
        "E" | "EiB" => 1 << 60,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// Exact ceiling-based human formatting using integer arithmetic (avoids float error).
pub fn human_exact(n: u64) -> String {
    if n < 1024 {
        return format!("{}", n);
    }
    let units = ["K", "M", "G", "T", "P", "E"];
    let mut u = 0usize;
    let mut div: u128 = 1024;
    while (n as u128) >= div * 1024 && u < units.len() - 1 {
        div *= 1024;
        u += 1;
    }
    let n128 = n as u128;
    // value = n / div, in [1, 1024)
    if n128 < div * 10 {
        // one decimal, rounded up
        let tenths = (n128 * 10 + div - 1) / div; // ceil(n*10/div)
        if tenths >= 100 {
            return format!("10{}", units[u]);
        }
        format!("{}.{}{}", tenths / 10, tenths % 10, units[u])
    } else {
        let whole = (n128 + div - 1) / div;
        if whole >= 1024 && u + 1 < units.len() {
            return format!("1.0{}", units[u + 1]);
        }
        format!("{}{}", whole, units[u])
    }
}

pub fn basename_of(p: &str) -> &str {
    let t = p.trim_end_matches('/');
    if t.is_empty() {
        return if p.is_empty() { "" } else { "/" };
    }
    match t.rfind('/') {
        Some(i) => &t[i + 1..],
        None => t,
    }
}

/// Join a directory and a name the way GNU tools print it.
pub fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{}{}", dir, name)
    } else {
        format!("{}/{}", dir, name)
    }
}

/// Always-quoted form (GNU `quoteaf`): 'name'.
pub fn qa(s: &str) -> String {
    let x = q(s);
    if x.starts_with('\'') || x.starts_with('"') || x.starts_with('$') || x.starts_with('\\') {
        x
    } else {
        format!("'{}'", s)
    }
}
