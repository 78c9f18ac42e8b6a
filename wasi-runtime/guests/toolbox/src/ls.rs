//! ls: list directory contents (GNU output formats; never a terminal, so one name per line
//! unless -C/-x/-m ask for columns). Owner and group are printed as "user" (WASI has no
//! owners); block counts are estimated (apparent size rounded up to 4 KiB).

use crate::datefmt::{strftime, tm_from_epoch};
use crate::sys::{self, Kind, Meta};
use crate::util::*;
use std::cmp::Ordering;

#[derive(Clone, Copy, PartialEq)]
enum Format {
    One,
    Long,
    Columns,
    Across,
    Commas,
}

#[derive(Clone, Copy, PartialEq)]
enum SortBy {
    Name,
    Time,
    Size,
    Ext,
    Version,
    None,
}

#[derive(Clone, Copy, PartialEq)]
enum TimeKind {
    M,
    C,
    A,
}

#[derive(Clone, Copy, PartialEq)]
enum Ind {
    None,
    Slash,
    Classify,
    FileType,
}

struct Cfg {
    all: bool,
    almost_all: bool,
    format: Format,
    recursive: bool,
    human: bool,
    si: bool,
    dirs_only: bool,
    sort: SortBy,
    reverse: bool,
    time: TimeKind,
    ind: Ind,
    inode: bool,
    numeric: bool,
    show_owner: bool,
    show_group: bool,
    size_blocks: bool,
    full_time: bool,
    deref: bool,
    deref_cmdline: bool,
    group_dirs: bool,
    width: usize,
    quote: bool,
    escape: bool,
    now: (i64, u32),
    block_size: u64,
}

struct Ent {
    name: String,
    path: String,
    meta: Option<Meta>,
    target: Option<String>,
    target_meta: Option<Meta>,
}

fn get_meta(path: &str, follow: bool) -> std::io::Result<Meta> {
    if follow {
        sys::stat_s(path)
    } else {
        sys::lstat_s(path)
    }
}

fn make_ent(name: String, path: String, c: &Cfg, follow: bool) -> Result<Ent, std::io::Error> {
    let meta = match get_meta(&path, follow || c.deref) {
        Ok(m) => m,
        Err(e) => {
            if follow || c.deref {
                // dangling symlink: fall back to the link itself
                match sys::lstat_s(&path) {
                    Ok(m) if m.is_symlink() => {
                        if c.deref {
                            err(&format!("cannot access {}: {}", qa(&path), ioerr(&e)));
                            return Ok(Ent { name, path, meta: None, target: None, target_meta: None });
                        }
                        m
                    }
                    _ => return Err(e),
                }
            } else {
                return Err(e);
            }
        }
    };
    let (target, target_meta) = if meta.is_symlink() {
        let t = std::fs::read_link(&path).ok().map(|t| t.to_string_lossy().into_owned());
        let tm = sys::stat_s(&path).ok();
        (t, tm)
    } else {
        (None, None)
    };
    Ok(Ent { name, path, meta: Some(meta), target, target_meta })
}

fn is_exec(m: &Meta) -> bool {
    m.kind == Kind::File && m.perm & 0o111 != 0
}

fn indicator(m: &Meta, ind: Ind) -> &'static str {
    match ind {
        Ind::None => "",
        Ind::Slash => {
            if m.is_dir() {
                "/"
            } else {
                ""
            }
        }
        Ind::Classify | Ind::FileType => match m.kind {
            Kind::Dir => "/",
            Kind::Symlink => "@",
            Kind::Fifo => "|",
            Kind::Socket => "=",
            Kind::File if ind == Ind::Classify && is_exec(m) => "*",
            _ => "",
        },
    }
}

fn quote_name(n: &str, c: &Cfg) -> String {
    if c.quote {
        let mut s = String::from("\"");
        for ch in n.chars() {
            match ch {
                '"' => s.push_str("\\\""),
                '\\' => s.push_str("\\\\"),
                '\n' => s.push_str("\\n"),
                '\t' => s.push_str("\\t"),
                c2 if (c2 as u32) < 32 => s.push_str(&format!("\\{:03o}", c2 as u32)),
                c2 => s.push(c2),
            }
        }
        s.push('"');
        return s;
    }
    if c.escape {
        let mut s = String::new();
        for ch in n.chars() {
            match ch {
                '\\' => s.push_str("\\\\"),
                '\n' => s.push_str("\\n"),
                '\t' => s.push_str("\\t"),
                ' ' => s.push_str("\\ "),
                c2 if (c2 as u32) < 32 || c2 as u32 == 127 => s.push_str(&format!("\\{:03o}", c2 as u32)),
                c2 => s.push(c2),
            }
        }
        return s;
    }
    n.to_string()
}

fn ext_of(n: &str) -> &str {
    match n.rfind('.') {
        Some(i) if i > 0 => &n[i..],
        _ => "",
    }
}

fn time_of(m: &Meta, t: TimeKind) -> (i64, u32) {
    match t {
        TimeKind::M => m.mtime,
        TimeKind::C => m.ctime,
        TimeKind::A => m.atime,
    }
}

fn sort_ents(v: &mut Vec<Ent>, c: &Cfg) {
    if c.sort == SortBy::None {
        if c.reverse {
            v.reverse();
        }
        return;
    }
    let name_cmp = |a: &Ent, b: &Ent| a.name.as_bytes().cmp(b.name.as_bytes());
    v.sort_by(|a, b| {
        let r = match (c.sort, &a.meta, &b.meta) {
            (SortBy::Time, Some(x), Some(y)) => time_of(y, c.time).cmp(&time_of(x, c.time)).then_with(|| name_cmp(a, b)),
            (SortBy::Size, Some(x), Some(y)) => y.size.cmp(&x.size).then_with(|| name_cmp(a, b)),
            (SortBy::Ext, _, _) => ext_of(&a.name).as_bytes().cmp(ext_of(&b.name).as_bytes()).then_with(|| name_cmp(a, b)),
            (SortBy::Version, _, _) => version_cmp(&a.name, &b.name),
            _ => name_cmp(a, b),
        };
        if c.reverse {
            r.reverse()
        } else {
            r
        }
    });
    if c.group_dirs {
        // stable partition: directories first
        let is_d = |e: &Ent| e.meta.as_ref().map(|m| m.is_dir() || (m.is_symlink() && e.target_meta.as_ref().map(|t| t.is_dir()).unwrap_or(false))).unwrap_or(false);
        let (d, f): (Vec<Ent>, Vec<Ent>) = v.drain(..).partition(|e| is_d(e));
        v.extend(d);
        v.extend(f);
    }
}

fn version_cmp(a: &str, b: &str) -> Ordering {
    let (ab, bb) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < ab.len() && j < bb.len() {
        if ab[i].is_ascii_digit() && bb[j].is_ascii_digit() {
            let si = i;
            while i < ab.len() && ab[i].is_ascii_digit() {
                i += 1;
            }
            let sj = j;
            while j < bb.len() && bb[j].is_ascii_digit() {
                j += 1;
            }
            let x = a[si..i].trim_start_matches('0');
            let y = b[sj..j].trim_start_matches('0');
            let o = x.len().cmp(&y.len()).then_with(|| x.cmp(y));
            if o != Ordering::Equal {
                return o;
            }
        } else {
            if ab[i] != bb[j] {
                return ab[i].cmp(&bb[j]);
            }
            i += 1;
            j += 1;
        }
    }
    (ab.len() - i).cmp(&(bb.len() - j)).then_with(|| a.cmp(b))
}

fn fmt_size(n: u64, c: &Cfg) -> String {
    if c.human {
        human_exact(n)
    } else if c.si {
        si_exact(n)
    } else {
        format!("{}", n)
    }
}

pub fn si_exact(n: u64) -> String {
    if n < 1000 {
        return format!("{}", n);
    }
    let units = ["k", "M", "G", "T", "P", "E"];
    let mut u = 0usize;
    let mut div: u128 = 1000;
    while (n as u128) >= div * 1000 && u < units.len() - 1 {
        div *= 1000;
        u += 1;
    }
    let n128 = n as u128;
    if n128 < div * 10 {
        let tenths = (n128 * 10 + div - 1) / div;
        if tenths >= 100 {
            return format!("10{}", units[u]);
        }
        format!("{}.{}{}", tenths / 10, tenths % 10, units[u])
    } else {
        let whole = (n128 + div - 1) / div;
        if whole >= 1000 && u + 1 < units.len() {
            return format!("1.0{}", units[u + 1]);
        }
        format!("{}{}", whole, units[u])
    }
}

fn blocks_str(m: &Meta, c: &Cfg) -> String {
    let bytes = m.blocks512() * 512;
    if c.human {
        human_exact(bytes)
    } else if c.si {
        si_exact(bytes)
    } else {
        format!("{}", (bytes + c.block_size - 1) / c.block_size)
    }
}

fn date_str(m: &Meta, c: &Cfg) -> String {
    let t = time_of(m, c.time);
    let tm = tm_from_epoch(t.0, t.1);
    if c.full_time {
        return strftime("%Y-%m-%d %H:%M:%S.%N +0000", &tm);
    }
    let six_months_ago = c.now.0 - 31556952 / 2;
    let recent = (six_months_ago, c.now.1) < t && t < c.now;
    if recent {
        strftime("%b %e %H:%M", &tm)
    } else {
        strftime("%b %e  %Y", &tm)
    }
}

fn name_with_frills(e: &Ent, c: &Cfg) -> String {
    let mut s = quote_name(&e.name, c);
    if let Some(m) = &e.meta {
        s.push_str(indicator(m, c.ind));
    }
    s
}

fn print_long(ents: &[Ent], c: &Cfg, extra: &[Ent]) {
    // GNU sizes the columns over every command-line operand, directories included
    let metas: Vec<&Meta> = ents.iter().chain(extra.iter()).filter_map(|e| e.meta.as_ref()).collect();
    let w_ino = metas.iter().map(|m| format!("{}", m.ino).len()).max().unwrap_or(0);
    let w_blk = metas.iter().map(|m| blocks_str(m, c).len()).max().unwrap_or(0);
    let w_nlink = metas.iter().map(|m| format!("{}", m.nlink).len()).max().unwrap_or(0);
    let owner = |m: &Meta| if c.numeric { format!("{}", m.uid) } else { "user".to_string() };
    let group = |m: &Meta| if c.numeric { format!("{}", m.gid) } else { "user".to_string() };
    let w_own = metas.iter().map(|m| owner(m).len()).max().unwrap_or(0);
    let w_grp = metas.iter().map(|m| group(m).len()).max().unwrap_or(0);
    let w_size = metas.iter().map(|m| fmt_size(m.size, c).len()).max().unwrap_or(0);
    let mut o = String::new();
    for e in ents {
        let m = match &e.meta {
            Some(m) => m,
            None => {
                // unreadable entry (dangling with -L)
                o.push_str(&format!("l????????? ? ? ? ? ? {}\n", quote_name(&e.name, c)));
                continue;
            }
        };
        if c.inode {
            o.push_str(&format!("{:>w$} ", m.ino, w = w_ino));
        }
        if c.size_blocks {
            o.push_str(&format!("{:>w$} ", blocks_str(m, c), w = w_blk));
        }
        o.push_str(&m.mode_string());
        o.push_str(&format!(" {:>w$}", m.nlink, w = w_nlink));
        if c.show_owner {
            o.push_str(&format!(" {:<w$}", owner(m), w = w_own));
        }
        if c.show_group {
            o.push_str(&format!(" {:<w$}", group(m), w = w_grp));
        }
        o.push_str(&format!(" {:>w$}", fmt_size(m.size, c), w = w_size));
        o.push(' ');
        o.push_str(&date_str(m, c));
        o.push(' ');
        o.push_str(&quote_name(&e.name, c));
        if m.is_symlink() {
            if let Some(t) = &e.target {
                o.push_str(" -> ");
                o.push_str(&quote_name(t, c));
                if let Some(tm) = &e.target_meta {
                    if c.ind != Ind::None {
                        o.push_str(indicator(tm, c.ind));
                    }
                }
            }
        } else if c.ind != Ind::None {
            o.push_str(indicator(m, c.ind));
        }
        o.push('\n');
    }
    outs(&o);
}

fn indent(o: &mut String, mut from: usize, to: usize) {
    while from < to {
        if to / 8 > (from + 1) / 8 {
            o.push('\t');
            from += 8 - from % 8;
        } else {
            o.push(' ');
            from += 1;
        }
    }
}

fn print_short(ents: &[Ent], c: &Cfg) {
    let prefixes: Vec<String> = {
        let w_ino = ents.iter().filter_map(|e| e.meta.as_ref()).map(|m| format!("{}", m.ino).len()).max().unwrap_or(0);
        let w_blk = ents.iter().filter_map(|e| e.meta.as_ref()).map(|m| blocks_str(m, c).len()).max().unwrap_or(0);
        ents.iter()
            .map(|e| {
                let mut p = String::new();
                if let Some(m) = &e.meta {
                    if c.inode {
                        p.push_str(&format!("{:>w$} ", m.ino, w = if c.format == Format::One { 0 } else { w_ino }));
                    }
                    if c.size_blocks {
                        p.push_str(&format!("{:>w$} ", blocks_str(m, c), w = if c.format == Format::Commas { 0 } else { w_blk }));
                    }
                }
                p
            })
            .collect()
    };
    let names: Vec<String> = ents.iter().zip(prefixes.iter()).map(|(e, p)| format!("{}{}", p, name_with_frills(e, c))).collect();
    let mut o = String::new();
    match c.format {
        Format::One | Format::Long => {
            for n in &names {
                o.push_str(n);
                o.push('\n');
            }
        }
        Format::Commas => {
            let mut pos = 0usize;
            for (i, n) in names.iter().enumerate() {
                let len = n.chars().count();
                if i != 0 {
                    o.push(',');
                    if c.width == 0 || pos + len + 2 < c.width {
                        pos += 2;
                        o.push(' ');
                    } else {
                        pos = 0;
                        o.push('\n');
                    }
                }
                o.push_str(n);
                pos += len;
            }
            if !names.is_empty() {
                o.push('\n');
            }
        }
        Format::Columns | Format::Across => {
            let n = names.len();
            if n == 0 {
                return;
            }
            let lens: Vec<usize> = names.iter().map(|s| s.chars().count()).collect();
            let by_cols = c.format == Format::Columns;
            let line_len = if c.width == 0 { usize::MAX } else { c.width };
            let max_idx = if c.width == 0 { n } else { (c.width / 3).max(1) };
            let max_cols = max_idx.min(n);
            let mut infos: Vec<(bool, usize, Vec<usize>)> = (0..max_cols).map(|i| (true, (i + 1) * 3, vec![3; i + 1])).collect();
            for (f, &len) in lens.iter().enumerate() {
                for i in 0..max_cols {
                    if infos[i].0 {
                        let idx = if by_cols { f / ((n + i) / (i + 1)) } else { f % (i + 1) };
                        let real = len + if idx == i { 0 } else { 2 };
                        if infos[i].2[idx] < real {
                            infos[i].1 += real - infos[i].2[idx];
                            infos[i].2[idx] = real;
                            infos[i].0 = infos[i].1 < line_len;
                        }
                    }
                }
            }
            let mut cols = 1;
            for i in (0..max_cols).rev() {
                if infos[i].0 {
                    cols = i + 1;
                    break;
                }
            }
            let colw = &infos[cols - 1].2;
            if by_cols {
                let rows = n / cols + if n % cols != 0 { 1 } else { 0 };
                for row in 0..rows {
                    let mut col = 0;
                    let mut fno = row;
                    let mut pos = 0;
                    loop {
                        o.push_str(&names[fno]);
                        let maxw = colw[col];
                        col += 1;
                        fno += rows;
                        if fno >= n {
                            break;
                        }
                        indent(&mut o, pos + lens[fno - rows], pos + maxw);
                        pos += maxw;
                    }
                    o.push('\n');
                }
            } else {
                let mut pos = 0;
                o.push_str(&names[0]);
                let mut name_len = lens[0];
                let mut maxw = colw[0];
                for f in 1..n {
                    let col = f % cols;
                    if col == 0 {
                        o.push('\n');
                        pos = 0;
                    } else {
                        indent(&mut o, pos + name_len, pos + maxw);
                        pos += maxw;
                    }
                    o.push_str(&names[f]);
                    name_len = lens[f];
                    maxw = colw[col];
                }
                o.push('\n');
            }
        }
    }
    outs(&o);
}

fn print_ents(ents: &[Ent], c: &Cfg, extra: &[Ent]) {
    if c.format == Format::Long {
        print_long(ents, c, extra)
    } else {
        print_short(ents, c)
    }
}

fn total_line(ents: &[Ent], c: &Cfg) -> String {
    let sum512: u64 = ents.iter().filter_map(|e| e.meta.as_ref()).map(|m| m.blocks512()).sum();
    let bytes = sum512 * 512;
    let s = if c.human {
        human_exact(bytes)
    } else if c.si {
        si_exact(bytes)
    } else {
        format!("{}", (bytes + c.block_size - 1) / c.block_size)
    };
    format!("total {}\n", s)
}

/// List one directory; returns exit status contribution.
fn list_dir(path: &str, c: &Cfg, header: bool, first: &mut bool) -> i32 {
    let rd = match crate::sys::dir_names(path) {
        Ok(r) => r,
        Err(e) => {
            err(&format!("cannot open directory {}: {}", qa(path), ioerr(&e)));
            return 2;
        }
    };
    let mut status = 0;
    let mut ents = Vec::new();
    if c.all {
        for n in [".", ".."] {
            match make_ent(n.to_string(), join(path, n), c, false) {
                Ok(e) => ents.push(e),
                Err(_) if n == ".." => {
                    // at the top of the sandbox ".." is not reachable: show it like "/.."
                    if let Ok(mut e) = make_ent(n.to_string(), join(path, "."), c, false) {
                        e.path = join(path, n);
                        ents.push(e);
                    }
                }
                Err(_) => {}
            }
        }
    }
    for name in rd {
        if name.starts_with('.') && !(c.all || c.almost_all) {
            continue;
        }
        match make_ent(name.clone(), join(path, &name), c, false) {
            Ok(e) => ents.push(e),
            Err(e) => {
                err(&format!("cannot access {}: {}", qa(&join(path, &name)), ioerr(&e)));
                status = 1;
                ents.push(Ent { name: name.clone(), path: join(path, &name), meta: None, target: None, target_meta: None });
            }
        }
    }
    sort_ents(&mut ents, c);
    let mut o = String::new();
    if header {
        if !*first {
            o.push('\n');
        }
        o.push_str(&quote_name(path, c));
        o.push_str(":\n");
    }
    *first = false;
    if c.format == Format::Long || c.size_blocks {
        o.push_str(&total_line(&ents, c));
    }
    outs(&o);
    print_ents(&ents, c, &[]);
    if c.recursive {
        for e in &ents {
            if e.name == "." || e.name == ".." {
                continue;
            }
            if let Some(m) = &e.meta {
                if m.is_dir() {
                    let r = list_dir(&e.path, c, true, first);
                    status = status.max(if r == 2 { 1 } else { r });
                }
            }
        }
    }
    status
}

pub fn main(args: Vec<String>) -> i32 {
    let spec = Spec {
        short: "aAbcCdfFgGhHiklLmnNopqQrRsStT:uUvw:xX1",
        long: &[
            l("all", Has::No, 'a'),
            l("almost-all", Has::No, 'A'),
            l("escape", Has::No, 'b'),
            l("directory", Has::No, 'd'),
            l("classify", Has::Opt, 'F'),
            l("file-type", Has::No, 'Y'),
            l("no-group", Has::No, 'G'),
            l("human-readable", Has::No, 'h'),

            l("dereference-command-line", Has::No, 'H'),
            l("inode", Has::No, 'i'),
            l("dereference", Has::No, 'L'),
            l("numeric-uid-gid", Has::No, 'n'),
            l("literal", Has::No, 'N'),
            l("hide-control-chars", Has::No, 'q'),
            l("quote-name", Has::No, 'Q'),
            l("reverse", Has::No, 'r'),
            l("recursive", Has::No, 'R'),
            l("size", Has::No, 's'),
            l("si", Has::No, 'J'),
            l("show-control-chars", Has::No, 'Z'),
            l("sort", Has::Req, 'W'),
            l("time", Has::Req, 'j'),
            l("width", Has::Req, 'w'),
            l("tabsize", Has::Req, 'T'),
            l("color", Has::Opt, 'K'),
            l("colour", Has::Opt, 'K'),
            l("full-time", Has::No, 'B'),
            l("group-directories-first", Has::No, 'D'),
            l("indicator-style", Has::Req, 'I'),
            l("block-size", Has::Req, 'E'),
            l("kibibytes", Has::No, 'k'),
            l("format", Has::Req, 'O'),
            l("time-style", Has::Req, 'V'),
            l("hyperlink", Has::Opt, 'y'),
            l("quoting-style", Has::Req, 'z'),
            l("hide", Has::Req, 'e'),
            l("ignore", Has::Req, 'I'),
        ],
        code: 2,
        help: "Usage: ls [OPTION]... [FILE]...\nList information about the FILEs (the current directory by default).\nEntries are sorted by name (C locale byte order) unless -t, -S, -U, -X or -v.\n\n  -a, --all                  do not ignore entries starting with .\n  -A, --almost-all           do not list implied . and ..\n  -C                         list entries by columns\n  -d, --directory            list directories themselves, not their contents\n  -F, --classify             append indicator (one of */=@|) to entries\n  -h, --human-readable       with -l and -s, print sizes like 1K 234M 2G etc.\n  -i, --inode                print the index number of each file\n  -l                         use a long listing format\n  -L, --dereference          show information for the file symlinks point to\n  -m                         fill width with a comma separated list of entries\n  -n, --numeric-uid-gid      like -l, but list numeric user and group IDs\n  -p                         append / indicator to directories\n  -r, --reverse              reverse order while sorting\n  -R, --recursive            list subdirectories recursively\n  -s, --size                 print the allocated size of each file, in blocks\n  -S                         sort by file size, largest first\n  -t                         sort by time, newest first\n  -U                         do not sort; list entries in directory order\n  -x                         list entries by lines instead of by columns\n  -1                         list one file per line (the default: output is never a terminal)\n\nOwners are shown as 'user' (WASI has no file owners); block counts are estimated.\n",
        stop_at_operand: false,
    };
    let p = getopt(&args, &spec);
    let width = std::env::var("COLUMNS").ok().and_then(|s| s.parse::<usize>().ok()).unwrap_or(80);
    let mut c = Cfg {
        all: false,
        almost_all: false,
        format: Format::One,
        recursive: false,
        human: false,
        si: false,
        dirs_only: false,
        sort: SortBy::Name,
        reverse: false,
        time: TimeKind::M,
        ind: Ind::None,
        inode: false,
        numeric: false,
        show_owner: true,
        show_group: true,
        size_blocks: false,
        full_time: false,
        deref: false,
        deref_cmdline: false,
        group_dirs: false,
        width,
        quote: false,
        escape: false,
        now: sys::now(),
        block_size: 1024,
    };
    let mut explicit_time = false;
    let mut explicit_cmdline_deref = false;
    for (o, a) in &p.opts {
        match o {
            'a' => {
                c.all = true;
                c.almost_all = false
            }
            'A' => {
                c.almost_all = true;
                c.all = false
            }
            'b' => c.escape = true,
            'c' => {
                c.time = TimeKind::C;
                explicit_time = true
            }
            'u' => {
                c.time = TimeKind::A;
                explicit_time = true
            }
            'C' => c.format = Format::Columns,
            'x' => c.format = Format::Across,
            'm' => c.format = Format::Commas,
            '1' => {
                if c.format != Format::Long {
                    c.format = Format::One
                }
            }
            'l' => c.format = Format::Long,
            'g' => {
                c.format = Format::Long;
                c.show_owner = false
            }
            'o' => {
                c.format = Format::Long;
                c.show_group = false
            }
            'n' => {
                c.format = Format::Long;
                c.numeric = true
            }
            'G' => c.show_group = false,
            'd' => c.dirs_only = true,
            'f' => {
                c.all = true;
                c.sort = SortBy::None
            }
            'F' => {
                let w = a.clone().unwrap_or_else(|| "always".into());
                match w.as_str() {
                    "always" | "yes" | "force" | "auto" | "tty" | "if-tty" => c.ind = Ind::Classify,
                    "never" | "no" | "none" => c.ind = Ind::None,
                    _ => usage_error(2, &format!("invalid argument {} for '--classify'", qa(&w))),
                }
            }
            'Y' => c.ind = Ind::FileType,
            'p' => c.ind = Ind::Slash,
            'I' => {}
            'h' => c.human = true,
            'J' => c.si = true,
            'k' => c.block_size = 1024,
            'H' => explicit_cmdline_deref = true,
            'L' => c.deref = true,
            'i' => c.inode = true,
            'N' => {
                c.quote = false;
                c.escape = false
            }
            'q' | 'Z' => {}
            'Q' => c.quote = true,
            'r' => c.reverse = true,
            'R' => c.recursive = true,
            's' => c.size_blocks = true,
            'S' => c.sort = SortBy::Size,
            't' => c.sort = SortBy::Time,
            'U' => c.sort = SortBy::None,
            'v' => c.sort = SortBy::Version,
            'X' => c.sort = SortBy::Ext,
            'W' => {
                let w = a.clone().unwrap();
                c.sort = match w.as_str() {
                    "none" => SortBy::None,
                    "time" => SortBy::Time,
                    "size" => SortBy::Size,
                    "extension" => SortBy::Ext,
                    "version" => SortBy::Version,
                    "name" => SortBy::Name,
                    _ => usage_error(2, &format!("invalid argument {} for '--sort'\nValid arguments are:\n  - 'none'\n  - 'time'\n  - 'size'\n  - 'extension'\n  - 'version'\n  - 'width'\n  - 'name'", qa(&w))),
                }
            }
            'j' => {
                let w = a.clone().unwrap();
                c.time = match w.as_str() {
                    "atime" | "access" | "use" => TimeKind::A,
                    "ctime" | "status" => TimeKind::C,
                    "mtime" | "modification" => TimeKind::M,
                    "birth" | "creation" => TimeKind::M,
                    _ => usage_error(2, &format!("invalid argument {} for '--time'", qa(&w))),
                };
                explicit_time = true;
            }
            'w' => {
                let w = a.clone().unwrap();
                match w.parse::<usize>() {
                    Ok(v) => c.width = v,
                    Err(_) => die(2, &format!("invalid line width: {}", qa(&w))),
                }
            }
            'T' => {}
            'K' => {
                let w = a.clone().unwrap_or_else(|| "always".into());
                if !["always", "yes", "force", "never", "no", "none", "auto", "tty", "if-tty"].contains(&w.as_str()) {
                    usage_error(2, &format!("invalid argument {} for '--color'", qa(&w)));
                }
            }
            'B' => {
                c.format = Format::Long;
                c.full_time = true
            }
            'D' => c.group_dirs = true,
            'E' => {
                let w = a.clone().unwrap();
                match parse_size(&w) {
                    Some(v) if v > 0 => c.block_size = v,
                    _ => die(2, &format!("invalid --block-size argument {}", qa(&w))),
                }
            }
            'O' => {
                let w = a.clone().unwrap();
                c.format = match w.as_str() {
                    "long" | "verbose" => Format::Long,
                    "single-column" => Format::One,
                    "commas" => Format::Commas,
                    "horizontal" | "across" => Format::Across,
                    "vertical" => Format::Columns,
                    _ => usage_error(2, &format!("invalid argument {} for '--format'", qa(&w))),
                }
            }
            'V' => {
                let w = a.clone().unwrap();
                if w == "full-iso" {
                    c.full_time = true;
                }
            }
            'z' => {
                let w = a.clone().unwrap();
                match w.as_str() {
                    "literal" => {
                        c.quote = false;
                        c.escape = false
                    }
                    "c" => c.quote = true,
                    "escape" => c.escape = true,
                    _ => {}
                }
            }
            _ => {}
        }
    }
    // -t with -c/-u: sort by that time; -c/-u alone with non-long: sort by that time
    if explicit_time && c.format != Format::Long && c.sort == SortBy::Name {
        c.sort = SortBy::Time;
    }
    c.deref_cmdline = explicit_cmdline_deref || !(c.dirs_only || c.ind == Ind::Classify || c.format == Format::Long);
    let operands = if p.args.is_empty() { vec![".".to_string()] } else { p.args.clone() };
    let mut status = 0;
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    for a in &operands {
        match make_ent(a.clone(), a.clone(), &c, c.deref_cmdline) {
            Ok(e) => {
                let is_dir = e.meta.as_ref().map(|m| m.is_dir()).unwrap_or(false);
                if is_dir && !c.dirs_only {
                    dirs.push(e);
                } else {
                    files.push(e);
                }
            }
            Err(e) => {
                err(&format!("cannot access {}: {}", qa(a), ioerr(&e)));
                status = 2;
            }
        }
    }
    sort_ents(&mut files, &c);
    sort_ents(&mut dirs, &c);
    let mut first = true;
    if !files.is_empty() {
        print_ents(&files, &c, &dirs);
        first = false;
    }
    let header = c.recursive || operands.len() > 1;
    for d in &dirs {
        let r = list_dir(&d.path, &c, header, &mut first);
        if r > status {
            status = r;
        }
    }
    status
}
