//! test and [: evaluate conditional expressions (GNU coreutils semantics).

use crate::sys;
use crate::util::*;

fn fail(msg: &str) -> ! {
    out_flush();
    err(msg);
    std::process::exit(2)
}

fn parse_int(s: &str) -> i128 {
    let t = s.trim_start_matches(|c: char| c == ' ' || c == '\t').trim_end_matches(|c: char| c == ' ' || c == '\t');
    let body = t.strip_prefix('+').or_else(|| t.strip_prefix('-')).unwrap_or(t);
    if body.is_empty() || !body.bytes().all(|b| b.is_ascii_digit()) {
        fail(&format!("invalid integer {}", qa(s)));
    }
    match t.parse::<i128>() {
        Ok(v) => v,
        Err(_) => fail(&format!("invalid integer {}", qa(s))),
    }
}

fn is_unary(op: &str) -> bool {
    matches!(op, "-b" | "-c" | "-d" | "-e" | "-f" | "-g" | "-G" | "-h" | "-k" | "-L" | "-n" | "-N" | "-O" | "-p" | "-r" | "-s" | "-S" | "-t" | "-u" | "-w" | "-x" | "-z")
}

fn is_binary(op: &str) -> bool {
    matches!(op, "=" | "==" | "!=" | "-eq" | "-ne" | "-lt" | "-le" | "-gt" | "-ge" | "-ef" | "-nt" | "-ot")
}

fn unary(op: &str, a: &str) -> bool {
    match op {
        "-n" => !a.is_empty(),
        "-z" => a.is_empty(),
        "-t" => {
            parse_int(a);
            false
        }
        "-h" | "-L" => sys::lstat_s(a).map(|m| m.is_symlink()).unwrap_or(false),
        _ => {
            let m = match sys::stat_s(a) {
                Ok(m) => m,
                Err(_) => return false,
            };
            match op {
                "-e" => true,
                "-f" => m.kind == sys::Kind::File,
                "-d" => m.is_dir(),
                "-s" => m.size > 0,
                "-b" => m.kind == sys::Kind::Block,
                "-c" => m.kind == sys::Kind::Char,
                "-p" => m.kind == sys::Kind::Fifo,
                "-S" => m.kind == sys::Kind::Socket,
                "-g" => m.perm & 0o2000 != 0,
                "-u" => m.perm & 0o4000 != 0,
                "-k" => m.perm & 0o1000 != 0,
                "-r" => sys::access(a, 4),
                "-w" => sys::access(a, 2),
                "-x" => sys::access(a, 1),
                "-O" | "-G" => true,
                "-N" => m.mtime > m.atime,
                _ => false,
            }
        }
    }
}

fn binary(a: &str, op: &str, b: &str) -> bool {
    match op {
        "=" | "==" => a == b,
        "!=" => a != b,
        "<" => a.as_bytes() < b.as_bytes(),
        ">" => a.as_bytes() > b.as_bytes(),
        "-eq" => parse_int(a) == parse_int(b),
        "-ne" => parse_int(a) != parse_int(b),
        "-lt" => parse_int(a) < parse_int(b),
        "-le" => parse_int(a) <= parse_int(b),
        "-gt" => parse_int(a) > parse_int(b),
        "-ge" => parse_int(a) >= parse_int(b),
        "-ef" => match (sys::stat_s(a), sys::stat_s(b)) {
            (Ok(x), Ok(y)) => x.dev == y.dev && x.ino == y.ino,
            _ => false,
        },
        "-nt" => match (sys::stat_s(a), sys::stat_s(b)) {
            (Ok(x), Ok(y)) => x.mtime > y.mtime,
            (Ok(_), Err(_)) => true,
            _ => false,
        },
        "-ot" => match (sys::stat_s(a), sys::stat_s(b)) {
            (Ok(x), Ok(y)) => x.mtime < y.mtime,
            (Err(_), Ok(_)) => true,
            _ => false,
        },
        _ => false,
    }
}

struct P<'a> {
    a: &'a [String],
    i: usize,
}

impl<'a> P<'a> {
    fn get(&self, k: usize) -> Option<&str> {
        self.a.get(self.i + k).map(|s| s.as_str())
    }
    fn left(&self) -> usize {
        self.a.len() - self.i
    }
    fn or(&mut self) -> bool {
        let mut v = self.and();
        while self.get(0) == Some("-o") {
            self.i += 1;
            let r = self.and();
            v = v || r;
        }
        v
    }
    fn and(&mut self) -> bool {
        let mut v = self.term();
        while self.get(0) == Some("-a") {
            self.i += 1;
            let r = self.term();
            v = v && r;
        }
        v
    }
    fn term(&mut self) -> bool {
        let t = match self.get(0) {
            None => fail(&format!("argument expected")),
            Some(t) => t.to_string(),
        };
        if t == "!" {
            self.i += 1;
            return !self.term();
        }
        if t == "(" {
            self.i += 1;
            let v = self.or();
            if self.get(0) != Some(")") {
                match self.get(0) {
                    Some(x) => fail(&format!("')' expected, found {}", qa(x))),
                    None => fail("')' expected"),
                }
            }
            self.i += 1;
            return v;
        }
        // binary?
        if self.left() >= 3 {
            if let Some(op) = self.get(1) {
                if is_binary(op) {
                    let (a, op, b) = (t.clone(), op.to_string(), self.get(2).unwrap().to_string());
                    self.i += 3;
                    return binary(&a, &op, &b);
                }
            }
        }
        if is_unary(&t) {
            match self.get(1) {
                Some(a) => {
                    let a = a.to_string();
                    self.i += 2;
                    return unary(&t, &a);
                }
                None => fail(&format!("missing argument after {}", qa(&t))),
            }
        }
        self.i += 1;
        !t.is_empty()
    }
}

fn eval(a: &[String]) -> bool {
    match a.len() {
        0 => false,
        1 => !a[0].is_empty(),
        2 => {
            if a[0] == "!" {
                return a[1].is_empty();
            }
            let b = a[0].as_bytes();
            if b.len() == 2 && b[0] == b'-' {
                if is_unary(&a[0]) {
                    return unary(&a[0], &a[1]);
                }
                fail(&format!("{}: unary operator expected", qa(&a[0])))
            }
            fail(&format!("missing argument after {}", qa(&a[1])))
        }
        3 => {
            if is_binary(&a[1]) {
                return binary(&a[0], &a[1], &a[2]);
            }
            if a[0] == "!" {
                return !eval(&a[1..]);
            }
            if a[0] == "(" && a[2] == ")" {
                return !a[1].is_empty();
            }
            if a[1] == "-a" || a[1] == "-o" {
                let (x, y) = (!a[0].is_empty(), !a[2].is_empty());
                return if a[1] == "-a" { x && y } else { x || y };
            }
            fail(&format!("{}: binary operator expected", qa(&a[1])))
        }
        4 => {
            if a[0] == "!" {
                return !eval(&a[1..]);
            }
            if a[0] == "(" && a[3] == ")" {
                return eval(&a[1..3]);
            }
            full(a)
        }
        _ => full(a),
    }
}

fn full(a: &[String]) -> bool {
    let mut p = P { a, i: 0 };
    let v = p.or();
    if p.i < a.len() {
        fail(&format!("extra argument {}", qa(&a[p.i])));
    }
    v
}

pub fn main(args: Vec<String>, bracket: bool) -> i32 {
    let mut args = args;
    if bracket {
        if args.len() == 1 && args[0] == "--help" {
            print_help("Usage: test EXPRESSION\n  or:  test\n  or:  [ EXPRESSION ]\n  or:  [ ]\n  or:  [ OPTION\nExit with the status determined by EXPRESSION.\n\nString tests: -n STRING, -z STRING, STRING1 = STRING2, STRING1 != STRING2\nInteger tests: -eq -ne -lt -le -gt -ge\nFile tests: -e -f -d -s -r -w -x -L -h -b -c -p -S -nt -ot -ef\nOperators: ! EXPR, EXPR -a EXPR, EXPR -o EXPR, ( EXPR )\n");
        }
        if args.len() == 1 && args[0] == "--version" {
            print_version();
        }
        if args.last().map(|s| s != "]").unwrap_or(true) {
            fail("missing ']'");
        }
        args.pop();
    }
    if eval(&args) {
        0
    } else {
        1
    }
}
