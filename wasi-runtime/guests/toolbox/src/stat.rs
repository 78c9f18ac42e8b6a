//! stat and du.

use crate::datefmt::{strftime, tm_from_epoch};
use crate::sys::{self, Kind, Meta};
use crate::util::*;

fn file_type(m: &Meta) -> &'static str {
    match m.kind {
        Kind::File => {
            if m.size == 0 {
                "regular empty file"
            } else {
                "regular file"
            }
        }
        Kind::Dir => "directory",
        Kind::Symlink => "symbolic link",
        Kind::Fifo => "fifo",
        Kind::Socket => "socket",
        Kind::Char => "character special file",
        Kind::Block => "block special file",
        Kind::Unknown => "weird file",
    }
}

fn human_time(t: (i64, u32)) -> String {
    let tm = tm_from_epoch(t.0, t.1);
    format!("{}.{:09} +0000", strftime("%Y-%m-%d %H:%M:%S", &tm), t.1)
}

fn major(dev: u64) -> u64 {
    ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff)
}

fn minor(dev: u64) -> u64 {
    (dev & 0xff) | ((dev >> 12) & !0xff)
}

fn fmt_directive(c: char, name: &str, m: &Meta, btime: Option<(i64, u32)>, flags: &str, width: Option<usize>, prec: Option<usize>) -> String {
    let (s, numeric): (String, bool) = match c {
        'n' => (name.to_string(), false),
        'N' => {
            let mut s = qa(name);
            if m.is_symlink() {
                if let Ok(t) = std::fs::read_link(name) {
                    s.push_str(" -> ");
                    s.push_str(&qa(&t.to_string_lossy()));
                }
            }
            (s, false)
        }
        's' => (format!("{}", m.size), true),
        'b' => (format!("{}", m.blocks512()), true),
        'B' => ("512".into(), true),
        'o' => ("4096".into(), true),
        'F' => (file_type(m).into(), false),
        'a' => {
            if flags.contains('#') {
                (format!("{:#o}", m.perm).replace("0o", "0"), true)
            } else {
                (format!("{:o}", m.perm), true)
            }
        }
        'A' => (m.mode_string(), false),
        'f' => (format!("{:x}", m.raw_mode()), false),
        'h' => (format!("{}", m.nlink), true),
        'i' => (format!("{}", m.ino), true),
        'u' => (format!("{}", m.uid), true),
        'g' => (format!("{}", m.gid), true),
        'U' | 'G' => ("user".into(), false),
        'd' => (format!("{}", m.dev), true),
        'D' => (format!("{:x}", m.dev), false),
        'H' => (format!("{}", major(m.dev)), true),
        'L' => (format!("{}", minor(m.dev)), true),
        't' | 'T' => ("0".into(), false),
        'r' => ("0".into(), true),
        'R' => ("0".into(), false),
        'm' => ("/".into(), false),
        'C' => ("?".into(), false),
        'x' => (human_time(m.atime), false),
        'y' => (human_time(m.mtime), false),
        'z' => (human_time(m.ctime), false),
        'w' => (btime.map(human_time).unwrap_or_else(|| "-".into()), false),
        'X' | 'Y' | 'Z' | 'W' => {
            let t = match c {
                'X' => Some(m.atime),
                'Y' => Some(m.mtime),
                'Z' => Some(m.ctime),
                _ => btime,
            };
            match t {
                Some(t) => match prec {
                    Some(p) => {
                        let frac = format!("{:09}", t.1);
                        let p = p.min(9);
                        if p == 0 {
                            (format!("{}", t.0), true)
                        } else {
                            (format!("{}.{}", t.0, &frac[..p]), true)
                        }
                    }
                    None => (format!("{}", t.0), true),
                },
                None => ("0".into(), true),
            }
        }
        _ => (format!("?"), false),
    };
    let w = width.unwrap_or(0);
    let len = s.chars().count();
    if len >= w {
        return s;
    }
    if flags.contains('-') {
        format!("{}{}", s, " ".repeat(w - len))
    } else if flags.contains('0') && numeric {
        format!("{}{}", "0".repeat(w - len), s)
    } else {
        format!("{}{}", " ".repeat(w - len), s)
    }
}

fn expand(fmt: &str, name: &str, m: &Meta, btime: Option<(i64, u32)>, escapes: bool) -> String {
    let cs: Vec<char> = fmt.chars().collect();
    let mut o = String::new();
    let mut i = 0;
    while i < cs.len() {
        let c = cs[i];
        i += 1;
        if escapes && c == '\\' && i < cs.len() {
            let e = cs[i];
            i += 1;
            match e {
                'n' => o.push('\n'),
                't' => o.push('\t'),
                'r' => o.push('\r'),
                'a' => o.push('\x07'),
                'b' => o.push('\x08'),
                'f' => o.push('\x0c'),
                'v' => o.push('\x0b'),
                'e' => o.push('\x1b'),
                '\\' => o.push('\\'),
                '"' => o.push('"'),
                '0'..='7' => {
                    let mut v = e.to_digit(8).unwrap();
                    let mut n = 1;
                    while n < 3 && i < cs.len() && cs[i].is_digit(8) {
                        v = v * 8 + cs[i].to_digit(8).unwrap();
                        i += 1;
                        n += 1;
                    }
                    o.push(char::from_u32(v).unwrap_or('?'));
                }
                x => {
                    o.push('\\');
                    o.push(x);
                }
            }
            continue;
        }
        if c != '%' {
            o.push(c);
            continue;
        }
        if i >= cs.len() {
            o.push('%');
            break;
        }
        let mut flags = String::new();
        while i < cs.len() && "-+ #0'".contains(cs[i]) {
            flags.push(cs[i]);
            i += 1;
        }
        let mut width = None;
        while i < cs.len() && cs[i].is_ascii_digit() {
            width = Some(width.unwrap_or(0) * 10 + cs[i].to_digit(10).unwrap() as usize);
            i += 1;
        }
        let mut prec = None;
        if i < cs.len() && cs[i] == '.' {
            i += 1;
            let mut p = 0;
            while i < cs.len() && cs[i].is_ascii_digit() {
                p = p * 10 + cs[i].to_digit(10).unwrap() as usize;
                i += 1;
            }
            prec = Some(p);
        }
        if i >= cs.len() {
            break;
        }
        let d = cs[i];
        i += 1;
        if d == '%' {
            o.push('%');
            continue;
        }
        if (d == 'H' || d == 'L') && i < cs.len() && (cs[i] == 'd' || cs[i] == 'r') {
            let rdev = cs[i] == 'r';
            i += 1;
            if rdev {
                o.push_str(&fmt_directive('r', name, m, btime, &flags, width, prec));
                continue;
            }
        }
        if !"nNsbBoFaAfhiugUGdDHLtTrRmCxyzwXYZW".contains(d) {
            o.push('?');
            continue;
        }
        o.push_str(&fmt_directive(d, name, m, btime, &flags, width, prec));
    }
    o
}

pub fn stat(args: Vec<String>) -> i32 {
    let spec = Spec {
        short: "c:fLt",
        long: &[l("format", Has::Req, 'c'), l("printf", Has::Req, 'p'), l("dereference", Has::No, 'L'), l("terse", Has::No, 't'), l("file-system", Has::No, 'f'), l("cached", Has::Req, 'C')],
        code: 1,
        help: "Usage: stat [OPTION]... FILE...\nDisplay file status.\n\n  -L, --dereference     follow links\n  -c  --format=FORMAT   use the specified FORMAT instead of the default;\n                          output a newline after each use of FORMAT\n      --printf=FORMAT   like --format, but interpret backslash escapes,\n                          and do not output a mandatory trailing newline\n  -t, --terse           print the information in terse form\n\nFORMAT sequences: %a %A %b %B %d %D %f %F %g %G %h %i %m %n %N %o %s %u %U\n  %w %W %x %X %y %Y %z %Z (owners print as 'user'; WASI has no owners)\n",
        stop_at_operand: false,
    };
    let p = getopt(&args, &spec);
    let mut fmt: Option<(String, bool)> = None;
    let mut deref = false;
    let mut terse = false;
    for (c, a) in &p.opts {
        match c {
            'c' => fmt = Some((format!("{}\n", a.clone().unwrap()), false)),
            'p' => fmt = Some((a.clone().unwrap(), true)),
            'L' => deref = true,
            't' => terse = true,
            'f' => die(1, "--file-system is not supported in the sandbox"),
            _ => {}
        }
    }
    if p.args.is_empty() {
        usage_error(1, "missing operand");
    }
    let mut status = 0;
    for f in &p.args {
        let m = if deref { sys::stat_s(f) } else { sys::lstat_s(f) };
        let m = match m {
            Ok(m) => m,
            Err(e) => {
                err(&format!("cannot statx {}: {}", qa(f), ioerr(&e)));
                status = 1;
                continue;
            }
        };
        let btime = sys::btime(f, deref);
        let s = match &fmt {
            Some((f2, esc)) => expand(f2, f, &m, btime, *esc),
            None if terse => expand("%n %s %b %f %u %g %D %i %h %t %T %X %Y %Z %W %o\n", f, &m, btime, false),
            None => {
                let dev_line = if m.kind == Kind::Char || m.kind == Kind::Block { "Device: %Hd,%Ld\tInode: %-11i Links: %-5h Device type: %t,%T\n" } else { "Device: %Hd,%Ld\tInode: %-11i Links: %h\n" };
                let f2 = format!("  File: %N\n  Size: %-10s\tBlocks: %-10b IO Block: %-6o %F\n{}Access: (%04a/%10.10A)  Uid: (%5u/%8U)   Gid: (%5g/%8G)\nAccess: %x\nModify: %y\nChange: %z\n Birth: %w\n", dev_line);
                let f2 = f2.replace("%N", if m.is_symlink() { "%N" } else { "%n" });
                expand(&f2, f, &m, btime, false)
            }
        };
        outs(&s);
    }
    status
}

// ---------------------------------------------------------------- du

struct Du {
    all: bool,
    summarize: bool,
    max_depth: Option<usize>,
    apparent: bool,
    block: u64,
    human: bool,
    si: bool,
    deref: bool,
    separate: bool,
    seen: std::collections::HashSet<(u64, u64)>,
    status: i32,
    nul: bool,
    inodes: bool,
}

impl Du {
    fn fmt(&self, bytes: u64) -> String {
        if self.inodes {
            return format!("{}", bytes);
        }
        if self.human {
            return human_exact(bytes);
        }
        if self.si {
            return crate::ls::si_exact(bytes);
        }
        format!("{}", (bytes + self.block - 1) / self.block)
    }

    fn line(&self, bytes: u64, path: &str) {
        outf!("{}\t{}{}", self.fmt(bytes), path, if self.nul { '\0' } else { '\n' });
    }

    fn size_of(&self, m: &Meta) -> u64 {
        if self.inodes {
            1
        } else if self.apparent {
            if m.kind == Kind::File || m.kind == Kind::Symlink || m.kind == Kind::Dir {
                m.size
            } else {
                0
            }
        } else {
            m.blocks512() * 512
        }
    }

    /// Returns total bytes of `path`.
    fn walk(&mut self, path: &str, depth: usize, top: bool) -> u64 {
        let m = if self.deref || top { sys::stat_s(path).or_else(|_| sys::lstat_s(path)) } else { sys::lstat_s(path) };
        let m = match m {
            Ok(m) => m,
            Err(e) => {
                err(&format!("cannot access {}: {}", qa(path), ioerr(&e)));
                self.status = 1;
                return 0;
            }
        };
        if m.nlink > 1 && !m.is_dir() && m.ino != 0 {
            if !self.seen.insert((m.dev, m.ino)) {
                return 0;
            }
        }
        let own = self.size_of(&m);
        let mut total = own;
        let show_depth = self.max_depth.map(|d| depth <= d).unwrap_or(true);
        if m.is_dir() {
            let mut sub_total = 0;
            match sys::dir_names(path) {
                Ok(mut names) => {
                    names.sort();
                    for n in names {
                        let child = join(path, &n);
                        let t = self.walk(&child, depth + 1, false);
                        sub_total += t;
                    }
                }
                Err(e) => {
                    err(&format!("cannot read directory {}: {}", qa(path), ioerr(&e)));
                    self.status = 1;
                }
            }
            total += sub_total;
            let shown = if self.separate { own + self.files_only_placeholder(sub_total) } else { total };
            if (!self.summarize || top) && show_depth {
                self.line(shown, path);
            }
        } else if (self.all && show_depth && !self.summarize) || top {
            self.line(total, path);
        }
        total
    }

    fn files_only_placeholder(&self, _sub: u64) -> u64 {
        // -S (separate-dirs) approximated: subdirectories are not included
        0
    }
}

pub fn du(args: Vec<String>) -> i32 {
    let spec = Spec {
        short: "0abB:cd:hHkLlmsSxX:",
        long: &[
            l("null", Has::No, '0'),
            l("all", Has::No, 'a'),
            l("apparent-size", Has::No, 'A'),
            l("block-size", Has::Req, 'B'),
            l("bytes", Has::No, 'b'),
            l("total", Has::No, 'c'),
            l("max-depth", Has::Req, 'd'),
            l("human-readable", Has::No, 'h'),
            l("inodes", Has::No, 'I'),
            l("si", Has::No, 'J'),
            l("dereference", Has::No, 'L'),
            l("count-links", Has::No, 'l'),
            l("separate-dirs", Has::No, 'S'),
            l("summarize", Has::No, 's'),
            l("one-file-system", Has::No, 'x'),
            l("exclude", Has::Req, 'E'),
            l("time", Has::Opt, 'T'),
        ],
        code: 1,
        help: "Usage: du [OPTION]... [FILE]...\nSummarize disk usage of the set of FILEs, recursively for directories.\nDisk usage is estimated as each file's size rounded up to 4 KiB\n(WASI cannot report allocated blocks); --apparent-size is exact.\n\n  -0, --null            end each output line with NUL, not newline\n  -a, --all             write counts for all files, not just directories\n      --apparent-size   print apparent sizes rather than disk usage\n  -B, --block-size=SIZE  scale sizes by SIZE before printing them\n  -b, --bytes           equivalent to '--apparent-size --block-size=1'\n  -c, --total           produce a grand total\n  -d, --max-depth=N     print the total for a directory only if it is N or\n                          fewer levels below the command line argument\n  -h, --human-readable  print sizes in human readable format (e.g., 1K 234M 2G)\n      --inodes          list inode usage information instead of block usage\n  -k                    like --block-size=1K\n  -m                    like --block-size=1M\n  -L, --dereference     dereference all symbolic links\n  -s, --summarize       display only a total for each argument\n",
        stop_at_operand: false,
    };
    let p = getopt(&args, &spec);
    let mut d = Du { all: false, summarize: false, max_depth: None, apparent: false, block: 1024, human: false, si: false, deref: false, separate: false, seen: Default::default(), status: 0, nul: false, inodes: false };
    let mut total = false;
    for (c, a) in &p.opts {
        match c {
            '0' => d.nul = true,
            'a' => d.all = true,
            'A' => d.apparent = true,
            'B' => {
                let s = a.clone().unwrap();
                match parse_size(&s).or_else(|| parse_size(&format!("1{}", s))) {
                    Some(v) if v > 0 => d.block = v,
                    _ => die(1, &format!("invalid --block-size argument {}", qa(&s))),
                }
                d.human = false;
            }
            'b' => {
                d.apparent = true;
                d.block = 1;
                d.human = false
            }
            'c' => total = true,
            'd' => {
                let s = a.clone().unwrap();
                match s.parse::<usize>() {
                    Ok(v) => d.max_depth = Some(v),
                    Err(_) => die(1, &format!("invalid maximum depth {}", qa(&s))),
                }
            }
            'h' => d.human = true,
            'J' => d.si = true,
            'I' => d.inodes = true,
            'k' => {
                d.block = 1024;
                d.human = false
            }
            'm' => {
                d.block = 1 << 20;
                d.human = false
            }
            'L' => d.deref = true,
            's' => d.summarize = true,
            'S' => d.separate = true,
            'E' | 'x' | 'l' | 'H' | 'T' | 'X' => {}
            _ => {}
        }
    }
    if d.summarize && d.all {
        usage_error(1, "cannot both summarize and show all entries");
    }
    if d.summarize && d.max_depth.map(|x| x > 0).unwrap_or(false) {
        err(&format!("warning: summarizing conflicts with --max-depth={}", d.max_depth.unwrap()));
        usage_error(1, "warning: summarizing is the same as using --max-depth=0");
    }
    let files = if p.args.is_empty() { vec![".".to_string()] } else { p.args.clone() };
    let mut grand = 0;
    for f in &files {
        grand += d.walk(f, 0, true);
    }
    if total {
        d.line(grand, "total");
    }
    d.status
}
