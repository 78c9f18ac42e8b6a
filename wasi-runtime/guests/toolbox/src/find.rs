//! find: walk directory trees (entries visited in byte order of names, not readdir order).

use crate::datefmt::{strftime, tm_from_epoch};
use crate::sys::{self, Kind, Meta};
use crate::util::*;

/// fnmatch(3) without FNM_PERIOD / FNM_PATHNAME: `*` and `?` match any character incl. '/'.
pub fn fnmatch(p: &[char], s: &[char], icase: bool) -> bool {
    let eq = |a: char, b: char| if icase { a.to_lowercase().eq(b.to_lowercase()) } else { a == b };
    let (mut pi, mut si) = (0usize, 0usize);
    let (mut star_p, mut star_s): (Option<usize>, usize) = (None, 0);
    while si < s.len() {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star_p = Some(pi);
                    star_s = si;
                    pi += 1;
                    continue;
                }
                '?' => {
                    pi += 1;
                    si += 1;
                    continue;
                }
                '[' => {
                    if let Some((matched, np)) = bracket(p, pi, s[si], icase) {
                        if matched {
                            pi = np;
                            si += 1;
                            continue;
                        }
                    } else if eq('[', s[si]) {
                        pi += 1;
                        si += 1;
                        continue;
                    }
                }
                '\\' if pi + 1 < p.len() => {
                    if eq(p[pi + 1], s[si]) {
                        pi += 2;
                        si += 1;
                        continue;
                    }
                }
                c => {
                    if eq(c, s[si]) {
                        pi += 1;
                        si += 1;
                        continue;
                    }
                }
            }
        }
        match star_p {
            Some(sp) => {
                pi = sp + 1;
                star_s += 1;
                si = star_s;
            }
            None => return false,
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// Match a bracket expression starting at p[i] == '['; returns (matched, index after ']').
fn bracket(p: &[char], i: usize, c: char, icase: bool) -> Option<(bool, usize)> {
    let mut j = i + 1;
    let mut neg = false;
    if j < p.len() && (p[j] == '!' || p[j] == '^') {
        neg = true;
        j += 1;
    }
    let mut matched = false;
    let mut first = true;
    let cl = if icase { c.to_ascii_lowercase() } else { c };
    while j < p.len() {
        if p[j] == ']' && !first {
            return Some((matched != neg, j + 1));
        }
        first = false;
        if p[j] == '[' && j + 1 < p.len() && p[j + 1] == ':' {
            let rest: String = p[j + 2..].iter().collect();
            if let Some(e) = rest.find(":]") {
                let name = &rest[..e];
                if class_match(name, c) {
                    matched = true;
                }
                j += 2 + name.chars().count() + 2;
                continue;
            }
        }
        let mut lo = p[j];
        if lo == '\\' && j + 1 < p.len() {
            j += 1;
            lo = p[j];
        }
        j += 1;
        if j + 1 < p.len() && p[j] == '-' && p[j + 1] != ']' {
            let mut hi = p[j + 1];
            j += 2;
            if hi == '\\' && j < p.len() {
                hi = p[j];
                j += 1;
            }
            let (l2, h2) = if icase { (lo.to_ascii_lowercase(), hi.to_ascii_lowercase()) } else { (lo, hi) };
            if (l2 <= cl && cl <= h2) || (lo <= c && c <= hi) {
                matched = true;
            }
        } else if lo == c || (icase && lo.to_ascii_lowercase() == cl) {
            matched = true;
        }
    }
    None
}

pub fn class_match(name: &str, c: char) -> bool {
    match name {
        "alpha" => c.is_ascii_alphabetic(),
        "digit" => c.is_ascii_digit(),
        "alnum" => c.is_ascii_alphanumeric(),
        "upper" => c.is_ascii_uppercase(),
        "lower" => c.is_ascii_lowercase(),
        "space" => c == ' ' || ('\t'..='\r').contains(&c),
        "blank" => c == ' ' || c == '\t',
        "punct" => c.is_ascii_punctuation(),
        "print" => (' '..='~').contains(&c),
        "graph" => ('!'..='~').contains(&c),
        "cntrl" => (c as u32) < 32 || c as u32 == 127,
        "xdigit" => c.is_ascii_hexdigit(),
        _ => false,
    }
}

#[derive(Debug, Clone, Copy)]
enum Cmp {
    Gt(f64),
    Lt(f64),
    Eq(f64),
}

impl Cmp {
    fn test(&self, v: f64) -> bool {
        match *self {
            Cmp::Gt(n) => v > n,
            Cmp::Lt(n) => v < n,
            Cmp::Eq(n) => v == n,
        }
    }
}

enum Node {
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Comma(Box<Node>, Box<Node>),
    Not(Box<Node>),
    True,
    False,
    Name(Vec<char>, bool),
    Path(Vec<char>, bool),
    Regex(crate::regex::Regex),
    Type(Vec<char>),
    XType(Vec<char>),
    Size(Cmp, u64),
    Empty,
    MTime(Cmp, f64, TimeSel),
    Newer((i64, u32)),
    Perm(u32, char),
    Access(i32),
    Links(Cmp),
    Print,
    Print0,
    Printf(String),
    Prune,
    Quit,
    Delete,
    Ls,
    Exec(Vec<String>, bool, bool), // (cmd, plus, dir)
}

#[derive(Clone, Copy)]
enum TimeSel {
    M,
    A,
    C,
}

struct Parser<'a> {
    t: &'a [String],
    i: usize,
    has_action: bool,
    maxdepth: Option<usize>,
    mindepth: usize,
    depth_first: bool,
    seen_test: Option<String>,
    now: (i64, u32),
}

fn bad_arg(pred: &str) -> ! {
    die(1, &format!("missing argument to `{}'", pred))
}

fn parse_cmp(s: &str, pred: &str) -> Cmp {
    let (k, body) = if let Some(r) = s.strip_prefix('+') {
        ('+', r)
    } else if let Some(r) = s.strip_prefix('-') {
        ('-', r)
    } else {
        ('=', s)
    };
    let v: f64 = match body.parse() {
        Ok(v) if !body.is_empty() && !body.starts_with('+') && !body.starts_with('-') => v,
        _ => die(1, &format!("invalid argument `{}' to `{}'", s, pred)),
    };
    match k {
        '+' => Cmp::Gt(v),
        '-' => Cmp::Lt(v),
        _ => Cmp::Eq(v),
    }
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<&str> {
        self.t.get(self.i).map(|s| s.as_str())
    }
    fn arg(&mut self, pred: &str) -> String {
        match self.t.get(self.i) {
            Some(a) => {
                self.i += 1;
                a.clone()
            }
            None => bad_arg(pred),
        }
    }
    fn comma(&mut self) -> Node {
        let mut n = self.or();
        while self.peek() == Some(",") {
            self.i += 1;
            let r = self.or();
            n = Node::Comma(Box::new(n), Box::new(r));
        }
        n
    }
    fn or(&mut self) -> Node {
        let mut n = self.and();
        while matches!(self.peek(), Some("-o") | Some("-or")) {
            let op = self.t[self.i].clone();
            self.i += 1;
            if self.peek().is_none() || matches!(self.peek(), Some(")") | Some("-o") | Some("-or") | Some(",")) {
                die(1, &format!("invalid expression; you have used a binary operator '{}' with nothing after it.", op));
            }
            let r = self.and();
            n = Node::Or(Box::new(n), Box::new(r));
        }
        n
    }
    fn and(&mut self) -> Node {
        let mut n = self.unary();
        loop {
            match self.peek() {
                None | Some(")") | Some("-o") | Some("-or") | Some(",") => break,
                Some("-a") | Some("-and") => {
                    self.i += 1;
                    let r = self.unary();
                    n = Node::And(Box::new(n), Box::new(r));
                }
                _ => {
                    let r = self.unary();
                    n = Node::And(Box::new(n), Box::new(r));
                }
            }
        }
        n
    }
    fn unary(&mut self) -> Node {
        match self.peek() {
            Some("!") | Some("-not") => {
                self.i += 1;
                if self.peek().is_none() {
                    die(1, "invalid expression; you have used a binary operator '!' with nothing after it.");
                }
                Node::Not(Box::new(self.unary()))
            }
            Some("(") => {
                self.i += 1;
                if self.peek() == Some(")") {
                    die(1, "invalid expression; empty parentheses are not allowed.");
                }
                let n = self.comma();
                if self.peek() != Some(")") {
                    die(1, "invalid expression; I was expecting to find a ')' somewhere but did not see one.");
                }
                self.i += 1;
                n
            }
            Some(_) => self.primary(),
            None => die(1, "invalid expression"),
        }
    }
    fn global_opt(&mut self, p: &str) {
        // GNU find 4.9 no longer warns about global options after tests
        let _ = (&self.seen_test, p);
    }
    fn primary(&mut self) -> Node {
        let p = self.t[self.i].clone();
        self.i += 1;
        let is_opt = matches!(p.as_str(), "-maxdepth" | "-mindepth" | "-depth" | "-d" | "-xdev" | "-mount" | "-noleaf" | "-ignore_readdir_race" | "-noignore_readdir_race" | "-follow" | "-nowarn" | "-warn" | "-daystart" | "-regextype");
        if !is_opt && self.seen_test.is_none() {
            self.seen_test = Some(p.clone());
        }
        match p.as_str() {
            "-maxdepth" | "-mindepth" => {
                self.global_opt(&p);
                let a = self.arg(&p);
                let v: usize = match a.parse() {
                    Ok(v) => v,
                    Err(_) => die(1, &format!("Expected a positive decimal integer argument to {}, but got {}", p, qa(&a))),
                };
                if p == "-maxdepth" {
                    self.maxdepth = Some(v);
                } else {
                    self.mindepth = v;
                }
                Node::True
            }
            "-depth" | "-d" => {
                self.depth_first = true;
                Node::True
            }
            "-xdev" | "-mount" | "-noleaf" | "-ignore_readdir_race" | "-noignore_readdir_race" | "-follow" | "-nowarn" | "-warn" | "-daystart" => Node::True,
            "-regextype" => {
                let _ = self.arg(&p);
                Node::True
            }
            "-true" => Node::True,
            "-false" => Node::False,
            "-name" | "-iname" | "-lname" | "-ilname" => {
                let a = self.arg(&p);
                if a.contains('/') && (p == "-name" || p == "-iname") && a != "/" {
                    err(&format!("warning: '{}' matches against basenames only, but the given pattern contains a directory separator ('/'), thus the expression will evaluate to false for all files.  Did you mean '-wholename'?", p));
                }
                Node::Name(a.chars().collect(), p.starts_with("-i"))
            }
            "-path" | "-ipath" | "-wholename" | "-iwholename" => {
                let a = self.arg(&p);
                Node::Path(a.chars().collect(), p.starts_with("-i"))
            }
            "-regex" | "-iregex" => {
                let a = self.arg(&p);
                let anchored = format!("^\\({}\\)$", a);
                match crate::regex::Regex::new(&anchored, crate::regex::Syntax::Basic, p == "-iregex") {
                    Ok(r) => Node::Regex(r),
                    Err(e) => die(1, &format!("Invalid regular expression {}: {}", qa(&a), e)),
                }
            }
            "-type" | "-xtype" => {
                let a = self.arg(&p);
                let mut v = Vec::new();
                for part in a.split(',') {
                    if part.len() != 1 || !"fdlpsbcD".contains(part) {
                        if part.is_empty() {
                            die(1, &format!("Arguments to {} should contain at least one letter", p));
                        }
                        die(1, &format!("Unknown argument to {}: {}", p, part));
                    }
                    v.push(part.chars().next().unwrap());
                }
                if p == "-type" {
                    Node::Type(v)
                } else {
                    Node::XType(v)
                }
            }
            "-size" => {
                let a = self.arg(&p);
                let (num, unit) = match a.chars().last() {
                    Some(c) if c.is_ascii_alphabetic() => (&a[..a.len() - 1], c),
                    _ => (&a[..], 'b'),
                };
                let mult = match unit {
                    'b' => 512,
                    'c' => 1,
                    'w' => 2,
                    'k' => 1024,
                    'M' => 1 << 20,
                    'G' => 1 << 30,
                    _ => die(1, &format!("invalid -size type `{}'", unit)),
                };
                Node::Size(parse_cmp(num, &p), mult)
            }
            "-empty" => Node::Empty,
            "-mtime" | "-atime" | "-ctime" | "-mmin" | "-amin" | "-cmin" => {
                let a = self.arg(&p);
                let sel = match &p[1..2] {
                    "m" => TimeSel::M,
                    "a" => TimeSel::A,
                    _ => TimeSel::C,
                };
                let unit = if p.ends_with("min") { 60.0 } else { 86400.0 };
                Node::MTime(parse_cmp(&a, &p), unit, sel)
            }
            "-newer" | "-anewer" | "-cnewer" => {
                let a = self.arg(&p);
                match sys::stat_s(&a) {
                    Ok(m) => Node::Newer(m.mtime),
                    Err(e) => die(1, &format!("{}: {}", qa(&a), ioerr(&e))),
                }
            }
            "-perm" => {
                let a = self.arg(&p);
                let (kind, body) = if let Some(r) = a.strip_prefix('-') {
                    ('-', r)
                } else if let Some(r) = a.strip_prefix('/') {
                    ('/', r)
                } else {
                    ('=', &a[..])
                };
                match u32::from_str_radix(body, 8) {
                    Ok(m) => Node::Perm(m, kind),
                    Err(_) => die(1, &format!("invalid mode {}", qa(&a))),
                }
            }
            "-readable" => Node::Access(4),
            "-writable" => Node::Access(2),
            "-executable" => Node::Access(1),
            "-links" => {
                let a = self.arg(&p);
                Node::Links(parse_cmp(&a, &p))
            }
            "-print" => {
                self.has_action = true;
                Node::Print
            }
            "-print0" => {
                self.has_action = true;
                Node::Print0
            }
            "-printf" => {
                self.has_action = true;
                Node::Printf(self.arg(&p))
            }
            "-ls" => {
                self.has_action = true;
                Node::Ls
            }
            "-prune" => Node::Prune,
            "-quit" => Node::Quit,
            "-delete" => {
                self.has_action = true;
                self.depth_first = true;
                Node::Delete
            }
            "-exec" | "-execdir" | "-ok" | "-okdir" => {
                self.has_action = true;
                let mut cmd = Vec::new();
                let mut plus = false;
                loop {
                    match self.t.get(self.i) {
                        None => bad_arg(&p),
                        Some(a) if a == ";" => {
                            self.i += 1;
                            break;
                        }
                        Some(a) if a == "+" && cmd.last().map(|l: &String| l == "{}").unwrap_or(false) => {
                            self.i += 1;
                            plus = true;
                            break;
                        }
                        Some(a) => {
                            cmd.push(a.clone());
                            self.i += 1;
                        }
                    }
                }
                if cmd.is_empty() {
                    bad_arg(&p);
                }
                Node::Exec(cmd, plus, p.ends_with("dir"))
            }
            _ => {
                if p.starts_with('-') {
                    die(1, &format!("unknown predicate `{}'", p));
                }
                die(1, &format!("paths must precede expression: `{}'", p))
            }
        }
    }
}

struct Walk {
    status: i32,
    quit: bool,
    pending: Vec<(Vec<String>, Vec<String>)>, // exec + batches
    now: (i64, u32),
}

struct Item<'a> {
    path: &'a str,
    start: &'a str,
    depth: usize,
    meta: &'a Meta,
}

fn type_char(k: Kind) -> char {
    match k {
        Kind::File => 'f',
        Kind::Dir => 'd',
        Kind::Symlink => 'l',
        Kind::Fifo => 'p',
        Kind::Socket => 's',
        Kind::Char => 'c',
        Kind::Block => 'b',
        Kind::Unknown => 'U',
    }
}

fn run_toolbox(cmd: &[String]) -> i32 {
    let name = basename_of(&cmd[0]).to_string();
    if !crate::COMMANDS.contains(&name.as_str()) {
        err(&format!("{}: cannot run programs other than toolbox commands in the sandbox", qa(&cmd[0])));
        return 127;
    }
    let saved = prog();
    set_prog(&name);
    let r = crate::run_cmd(&name, cmd[1..].to_vec());
    set_prog(&saved);
    r
}

fn eval(n: &Node, it: &Item, w: &mut Walk, prune: &mut bool) -> bool {
    match n {
        Node::And(a, b) => eval(a, it, w, prune) && !w.quit && eval(b, it, w, prune),
        Node::Or(a, b) => eval(a, it, w, prune) || (!w.quit && eval(b, it, w, prune)),
        Node::Comma(a, b) => {
            eval(a, it, w, prune);
            eval(b, it, w, prune)
        }
        Node::Not(a) => !eval(a, it, w, prune),
        Node::True => true,
        Node::False => false,
        Node::Name(p, ic) => {
            let base = if it.path == "/" { "/" } else { basename_of(it.path) };
            let s: Vec<char> = base.chars().collect();
            fnmatch(p, &s, *ic)
        }
        Node::Path(p, ic) => {
            let s: Vec<char> = it.path.chars().collect();
            fnmatch(p, &s, *ic)
        }
        Node::Regex(r) => r.is_match(it.path.as_bytes()),
        Node::Type(v) => v.contains(&type_char(it.meta.kind)),
        Node::XType(v) => {
            let k = if it.meta.is_symlink() { sys::stat_s(it.path).map(|m| m.kind).unwrap_or(Kind::Symlink) } else { it.meta.kind };
            v.contains(&type_char(k))
        }
        Node::Size(c, unit) => {
            let units = (it.meta.size + unit - 1) / unit;
            c.test(units as f64)
        }
        Node::Empty => match it.meta.kind {
            Kind::File => it.meta.size == 0,
            Kind::Dir => sys::dir_names(it.path).map(|n| n.is_empty()).unwrap_or(false),
            _ => false,
        },
        Node::MTime(c, unit, sel) => {
            let t = match sel {
                TimeSel::M => it.meta.mtime,
                TimeSel::A => it.meta.atime,
                TimeSel::C => it.meta.ctime,
            };
            let diff = (w.now.0 - t.0) as f64 + (w.now.1 as f64 - t.1 as f64) / 1e9;
            if *unit == 86400.0 {
                c.test((diff / unit).floor())
            } else {
                // -mmin: GNU compares the exact value, rounding up for '='
                match c {
                    Cmp::Eq(n) => (diff / unit).ceil() == *n,
                    _ => c.test((diff / unit).ceil()),
                }
            }
        }
        Node::Newer(t) => it.meta.mtime > *t,
        Node::Perm(m, k) => {
            let p = it.meta.perm;
            match k {
                '-' => p & m == *m,
                '/' => *m == 0 || p & m != 0,
                _ => p == *m,
            }
        }
        Node::Access(m) => sys::access(it.path, *m),
        Node::Links(c) => c.test(it.meta.nlink as f64),
        Node::Print => {
            outf!("{}\n", it.path);
            true
        }
        Node::Print0 => {
            outf!("{}\0", it.path);
            true
        }
        Node::Printf(f) => {
            outs(&printf_fmt(f, it));
            true
        }
        Node::Ls => {
            let m = it.meta;
            let tm = tm_from_epoch(m.mtime.0, 0);
            let six = w.now.0 - 31556952 / 2;
            let date = if m.mtime.0 > six && m.mtime.0 <= w.now.0 { strftime("%b %e %H:%M", &tm) } else { strftime("%b %e  %Y", &tm) };
            let mut line = format!("{:>9} {:>6} {} {:>3} {:<8} {:<8} {:>8} {} {}", m.ino, m.blocks512() / 2, m.mode_string(), m.nlink, "user", "user", m.size, date, it.path);
            if m.is_symlink() {
                if let Ok(t) = std::fs::read_link(it.path) {
                    line.push_str(&format!(" -> {}", t.to_string_lossy()));
                }
            }
            outf!("{}\n", line);
            true
        }
        Node::Prune => {
            *prune = true;
            true
        }
        Node::Quit => {
            w.quit = true;
            true
        }
        Node::Delete => {
            if it.path == "." {
                return true;
            }
            let r = if it.meta.is_dir() { std::fs::remove_dir(it.path) } else { std::fs::remove_file(it.path) };
            match r {
                Ok(()) => true,
                Err(e) => {
                    err(&format!("cannot delete {}: {}", qa(it.path), ioerr(&e)));
                    w.status = 1;
                    false
                }
            }
        }
        Node::Exec(cmd, plus, dir) => {
            let arg = if *dir { format!("./{}", basename_of(it.path)) } else { it.path.to_string() };
            if *plus {
                let key = cmd.clone();
                match w.pending.iter_mut().find(|(c, _)| *c == key) {
                    Some((_, v)) => v.push(arg),
                    None => w.pending.push((key, vec![arg])),
                }
                return true;
            }
            let argv: Vec<String> = cmd.iter().map(|a| a.replace("{}", &arg)).collect();
            let saved_cwd = std::env::current_dir().ok();
            if *dir {
                let d = crate::simple::dirname_of(it.path);
                let _ = std::env::set_current_dir(&d);
            }
            let r = run_toolbox(&argv);
            if let Some(c) = saved_cwd {
                let _ = std::env::set_current_dir(c);
            }
            r == 0
        }
    }
}

fn printf_fmt(f: &str, it: &Item) -> String {
    let cs: Vec<char> = f.chars().collect();
    let mut o = String::new();
    let mut i = 0;
    let m = it.meta;
    while i < cs.len() {
        let c = cs[i];
        i += 1;
        if c == '\\' && i < cs.len() {
            let e = cs[i];
            i += 1;
            match e {
                'n' => o.push('\n'),
                't' => o.push('\t'),
                'r' => o.push('\r'),
                '0' => o.push('\0'),
                'a' => o.push('\x07'),
                'b' => o.push('\x08'),
                'f' => o.push('\x0c'),
                'v' => o.push('\x0b'),
                '\\' => o.push('\\'),
                'c' => return o,
                x => {
                    o.push('\\');
                    o.push(x);
                }
            }
            continue;
        }
        if c != '%' || i >= cs.len() {
            o.push(c);
            continue;
        }
        // flags and width
        let mut left = false;
        let mut zero = false;
        while i < cs.len() && (cs[i] == '-' || cs[i] == '0' || cs[i] == '+' || cs[i] == ' ' || cs[i] == '#') {
            if cs[i] == '-' {
                left = true;
            }
            if cs[i] == '0' {
                zero = true;
            }
            i += 1;
        }
        let mut width = 0usize;
        while i < cs.len() && cs[i].is_ascii_digit() {
            width = width * 10 + cs[i].to_digit(10).unwrap() as usize;
            i += 1;
        }
        let mut prec: Option<usize> = None;
        if i < cs.len() && cs[i] == '.' {
            i += 1;
            let mut pv = 0;
            while i < cs.len() && cs[i].is_ascii_digit() {
                pv = pv * 10 + cs[i].to_digit(10).unwrap() as usize;
                i += 1;
            }
            prec = Some(pv);
        }
        if i >= cs.len() {
            break;
        }
        let d = cs[i];
        i += 1;
        let time_fmt = |t: (i64, u32), k: char| -> String {
            let tm = tm_from_epoch(t.0, t.1);
            match k {
                '@' => format!("{}.{:09}0", t.0, t.1),
                'S' => format!("{:02}.{:09}0", tm.sec, t.1),
                'T' => format!("{}.{:09}0", strftime("%H:%M:%S", &tm), t.1),
                '+' => format!("{}+{}.{:09}0", strftime("%Y-%m-%d", &tm), strftime("%H:%M:%S", &tm), t.1),
                _ => strftime(&format!("%{}", k), &tm),
            }
        };
        let (s, numeric) = match d {
            '%' => ("%".to_string(), false),
            'p' => (it.path.to_string(), false),
            'f' => (if it.path == "/" { "/".to_string() } else { basename_of(it.path).to_string() }, false),
            'h' => {
                let dn = crate::simple::dirname_of(it.path);
                (if it.path.contains('/') { dn } else { ".".to_string() }, false)
            }
            'P' => {
                let s = it.path.strip_prefix(it.start).unwrap_or(it.path);
                (s.trim_start_matches('/').to_string(), false)
            }
            'H' => (it.start.to_string(), false),
            's' => (format!("{}", m.size), true),
            'd' => (format!("{}", it.depth), true),
            'm' => (format!("{:o}", m.perm), true),
            'M' => (m.mode_string(), false),
            'n' => (format!("{}", m.nlink), true),
            'i' => (format!("{}", m.ino), true),
            'k' => (format!("{}", m.blocks512() / 2), true),
            'b' => (format!("{}", m.blocks512()), true),
            'u' | 'g' => ("user".to_string(), false),
            'U' => (format!("{}", m.uid), true),
            'G' => (format!("{}", m.gid), true),
            'y' => (type_char(m.kind).to_string(), false),
            'Y' => {
                let k = if m.is_symlink() { sys::stat_s(it.path).map(|x| type_char(x.kind)).unwrap_or('N') } else { type_char(m.kind) };
                (k.to_string(), false)
            }
            'l' => (if m.is_symlink() { std::fs::read_link(it.path).map(|t| t.to_string_lossy().into_owned()).unwrap_or_default() } else { String::new() }, false),
            't' | 'a' | 'c' => {
                let t = match d {
                    't' => m.mtime,
                    'a' => m.atime,
                    _ => m.ctime,
                };
                let tm = tm_from_epoch(t.0, t.1);
                (format!("{}.{:09}0 {}", strftime("%a %b %e %H:%M:%S", &tm), t.1, strftime("%Y", &tm)), false)
            }
            'T' | 'A' | 'C' => {
                let t = match d {
                    'T' => m.mtime,
                    'A' => m.atime,
                    _ => m.ctime,
                };
                if i < cs.len() {
                    let k = cs[i];
                    i += 1;
                    (time_fmt(t, k), false)
                } else {
                    (String::new(), false)
                }
            }
            x => (format!("%{}", x), false),
        };
        let s = match prec {
            Some(p) if !numeric => s.chars().take(p).collect(),
            _ => s,
        };
        let len = s.chars().count();
        if len < width {
            let padc = if zero && numeric && !left { '0' } else { ' ' };
            if left {
                o.push_str(&s);
                o.push_str(&" ".repeat(width - len));
            } else {
                o.push_str(&padc.to_string().repeat(width - len));
                o.push_str(&s);
            }
        } else {
            o.push_str(&s);
        }
    }
    o
}

struct Cfg<'a> {
    expr: &'a Node,
    maxdepth: Option<usize>,
    mindepth: usize,
    depth_first: bool,
    follow: bool,
}

fn visit(path: &str, start: &str, depth: usize, meta: Meta, c: &Cfg, w: &mut Walk) {
    if w.quit {
        return;
    }
    let in_range = depth >= c.mindepth && c.maxdepth.map(|m| depth <= m).unwrap_or(true);
    let mut prune = false;
    if !c.depth_first && in_range {
        let it = Item { path, start, depth, meta: &meta };
        eval(c.expr, &it, w, &mut prune);
    }
    if meta.is_dir() && !prune && !w.quit && c.maxdepth.map(|m| depth < m).unwrap_or(true) {
        match sys::dir_names(path) {
            Ok(mut names) => {
                names.sort();
                for n in names {
                    let child = join(path, &n);
                    let m = if c.follow { sys::stat_s(&child).or_else(|_| sys::lstat_s(&child)) } else { sys::lstat_s(&child) };
                    match m {
                        Ok(m) => visit(&child, start, depth + 1, m, c, w),
                        Err(e) => {
                            err(&format!("{}: {}", qa(&child), ioerr(&e)));
                            w.status = 1;
                        }
                    }
                    if w.quit {
                        return;
                    }
                }
            }
            Err(e) => {
                err(&format!("{}: {}", qa(path), ioerr(&e)));
                w.status = 1;
            }
        }
    }
    if c.depth_first && in_range && !w.quit {
        let it = Item { path, start, depth, meta: &meta };
        eval(c.expr, &it, w, &mut prune);
    }
}

pub fn main(args: Vec<String>) -> i32 {
    if args.len() == 1 && args[0] == "--help" {
        print_help("Usage: find [-H] [-L] [-P] [path...] [expression]\n\nDefault path is the current directory; default expression is -print.\nEntries within a directory are visited in byte order of their names.\n\nOperators: ( EXPR ) ! EXPR -not EXPR EXPR1 -a EXPR2 EXPR1 -and EXPR2\n           EXPR1 -o EXPR2 EXPR1 -or EXPR2 EXPR1 , EXPR2\nOptions: -depth -maxdepth LEVELS -mindepth LEVELS\nTests: -name -iname -path -ipath -wholename -regex -iregex -type -xtype -size\n       -empty -mtime -mmin -atime -amin -ctime -cmin -newer -perm -links\n       -readable -writable -executable -true -false\nActions: -print -print0 -printf FORMAT -ls -prune -quit -delete\n         -exec/-execdir COMMAND ; or {} + (toolbox commands only)\n");
    }
    if args.len() == 1 && args[0] == "--version" {
        print_version();
    }
    let mut i = 0;
    let mut follow = false;
    while i < args.len() {
        match args[i].as_str() {
            "-H" | "-P" => {}
            "-L" => follow = true,
            "--" => {
                i += 1;
                break;
            }
            a if a.starts_with("-D") || a.starts_with("-O") => {}
            _ => break,
        }
        i += 1;
    }
    let mut paths = Vec::new();
    while i < args.len() {
        let a = &args[i];
        if (a.starts_with('-') && a.len() > 1) || a == "(" || a == "!" || a == ")" || a == "," {
            break;
        }
        paths.push(a.clone());
        i += 1;
    }
    let now = sys::now();
    let mut p = Parser { t: &args[i..], i: 0, has_action: false, maxdepth: None, mindepth: 0, depth_first: false, seen_test: None, now };
    let expr = if p.t.is_empty() { Node::True } else { p.comma() };
    if p.i < p.t.len() {
        let tok = &p.t[p.i];
        if tok == ")" {
            die(1, "invalid expression; you have too many ')'");
        }
        die(1, &format!("paths must precede expression: `{}'", tok));
    }
    let _ = p.now;
    let expr = if p.has_action { expr } else { Node::And(Box::new(expr), Box::new(Node::Print)) };
    if paths.is_empty() {
        paths.push(".".into());
    }
    let cfg = Cfg { expr: &expr, maxdepth: p.maxdepth, mindepth: p.mindepth, depth_first: p.depth_first, follow };
    let mut w = Walk { status: 0, quit: false, pending: Vec::new(), now };
    for path in &paths {
        if w.quit {
            break;
        }
        let m = if follow { sys::stat_s(path).or_else(|_| sys::lstat_s(path)) } else { sys::lstat_s(path) };
        match m {
            Ok(m) => visit(path, path, 0, m, &cfg, &mut w),
            Err(e) => {
                err(&format!("{}: {}", qa(path), ioerr(&e)));
                w.status = 1;
            }
        }
    }
    let pending = std::mem::take(&mut w.pending);
    for (cmd, items) in pending {
        let mut argv = Vec::new();
        for a in &cmd {
            if a == "{}" {
                argv.extend(items.iter().cloned());
            } else {
                argv.push(a.clone());
            }
        }
        if run_toolbox(&argv) != 0 {
            w.status = 1;
        }
    }
    w.status
}
