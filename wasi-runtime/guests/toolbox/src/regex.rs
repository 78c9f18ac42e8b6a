//! A small POSIX regular-expression engine: BRE and ERE syntax (with the GNU extensions
//! \| \+ \? \< \> \b \B \w \W \s \S and back-references), bracket expressions with
//! [:classes:], case folding, and leftmost-longest matching. Patterns compile to a
//! little instruction program run by a memoised backtracking search (linear in
//! program size × text length without back-references).

use std::collections::HashSet;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Syntax {
    Basic,
    Extended,
    /// ERE plus the common Perl escapes (\d \D \w \s \t \n, (?:...)); lazy quantifiers
    /// are treated as greedy and lookaround is rejected.
    Perl,
}

#[derive(Clone, Debug)]
enum Ast {
    Empty,
    Char(u32),
    Any,
    Set(usize),
    Bol,
    Eol,
    WordB,
    NotWordB,
    WordStart,
    WordEnd,
    BufStart,
    BufEnd,
    NotWordBefore,
    NotWordAfter,
    Group(Box<Ast>, usize),
    Backref(usize),
    Concat(Vec<Ast>),
    Alt(Vec<Ast>),
    Repeat(Box<Ast>, u32, Option<u32>),
}

#[derive(Clone, Debug)]
struct CharSet {
    neg: bool,
    ranges: Vec<(u32, u32)>,
    classes: Vec<String>,
}

#[derive(Clone, Debug)]
enum Inst {
    Char(u32),
    Any,
    Set(usize),
    Bol,
    Eol,
    WordB,
    NotWordB,
    WordStart,
    WordEnd,
    BufStart,
    BufEnd,
    NotWordBefore,
    NotWordAfter,
    Save(usize),
    Backref(usize),
    Split(usize, usize),
    Jmp(usize),
    Match,
}

#[derive(Clone, Debug)]
pub struct Regex {
    prog: Vec<Inst>,
    sets: Vec<CharSet>,
    icase: bool,
    utf8: bool,
    has_backrefs: bool,
    ngroups: usize,
    /// literal first char (for fast skipping), if the pattern must start with it
    first: Option<u32>,
}

fn utf8_locale() -> bool {
    crate::text::utf8_locale()
}

/// Decode the character at `pos`: (value, length). In byte mode each byte is a character.
#[inline]
fn decode(t: &[u8], pos: usize, utf8: bool) -> Option<(u32, usize)> {
    if pos >= t.len() {
        return None;
    }
    let b = t[pos];
    if !utf8 || b < 0x80 {
        return Some((b as u32, 1));
    }
    let (n, init) = if b & 0xe0 == 0xc0 {
        (2, (b & 0x1f) as u32)
    } else if b & 0xf0 == 0xe0 {
        (3, (b & 0x0f) as u32)
    } else if b & 0xf8 == 0xf0 {
        (4, (b & 0x07) as u32)
    } else {
        return Some((0xDC00 + b as u32, 1)); // invalid byte: never equals a real char
    };
    if pos + n > t.len() {
        return Some((0xDC00 + b as u32, 1));
    }
    let mut v = init;
    for k in 1..n {
        let c = t[pos + k];
        if c & 0xc0 != 0x80 {
            return Some((0xDC00 + b as u32, 1));
        }
        v = (v << 6) | (c & 0x3f) as u32;
    }
    Some((v, n))
}

fn prev_char(t: &[u8], pos: usize, utf8: bool) -> Option<u32> {
    if pos == 0 {
        return None;
    }
    if !utf8 {
        return Some(t[pos - 1] as u32);
    }
    let mut s = pos - 1;
    while s > 0 && pos - s < 4 && t[s] & 0xc0 == 0x80 {
        s -= 1;
    }
    match decode(t, s, true) {
        Some((c, n)) if s + n == pos => Some(c),
        _ => Some(0xDC00 + t[pos - 1] as u32),
    }
}

fn fold(c: u32, utf8: bool) -> u32 {
    if c < 128 {
        return (c as u8).to_ascii_lowercase() as u32;
    }
    if utf8 {
        if let Some(ch) = char::from_u32(c) {
            if let Some(l) = ch.to_lowercase().next() {
                return l as u32;
            }
        }
    }
    c
}

fn is_word(c: Option<u32>, utf8: bool) -> bool {
    match c {
        None => false,
        Some(c) => {
            if c < 128 {
                let b = c as u8;
                b.is_ascii_alphanumeric() || b == b'_'
            } else if utf8 {
                char::from_u32(c).map(|ch| ch.is_alphanumeric()).unwrap_or(false)
            } else {
                false
            }
        }
    }
}

pub fn class_has(name: &str, c: u32, utf8: bool) -> bool {
    if c >= 128 {
        if !utf8 {
            return false;
        }
        let ch = match char::from_u32(c) {
            Some(ch) => ch,
            None => return false,
        };
        return match name {
            "alpha" => ch.is_alphabetic(),
            "alnum" => ch.is_alphanumeric(),
            "upper" => ch.is_uppercase(),
            "lower" => ch.is_lowercase(),
            "space" => ch.is_whitespace(),
            "digit" | "xdigit" | "blank" | "cntrl" => false,
            "punct" => !ch.is_alphanumeric() && !ch.is_whitespace() && !ch.is_control(),
            "print" | "graph" => !ch.is_control() && !(name == "graph" && ch.is_whitespace()),
            _ => false,
        };
    }
    crate::find::class_match(name, c as u8 as char)
}

impl CharSet {
    fn has(&self, c: u32, icase: bool, utf8: bool) -> bool {
        let test = |c: u32| self.ranges.iter().any(|&(a, b)| a <= c && c <= b) || self.classes.iter().any(|n| class_has(n, c, utf8));
        let mut r = test(c);
        if !r && icase {
            let l = fold(c, utf8);
            let u = if c < 128 {
                (c as u8).to_ascii_uppercase() as u32
            } else {
                char::from_u32(c).and_then(|ch| ch.to_uppercase().next()).map(|x| x as u32).unwrap_or(c)
            };
            r = test(l) || test(u);
        }
        r != self.neg
    }
}

struct Parser<'a> {
    p: Vec<u32>,
    i: usize,
    syn: Syntax,
    sets: &'a mut Vec<CharSet>,
    ngroups: usize,
    has_backrefs: bool,
    utf8: bool,
    perl: bool,
}

type PResult<T> = Result<T, String>;

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u32> {
        self.p.get(self.i).copied()
    }
    fn peek2(&self) -> Option<u32> {
        self.p.get(self.i + 1).copied()
    }
    fn is(&self, c: char) -> bool {
        self.peek() == Some(c as u32)
    }
    fn is_esc(&self, c: char) -> bool {
        self.peek() == Some('\\' as u32) && self.peek2() == Some(c as u32)
    }

    fn at_alt(&self) -> bool {
        match self.syn {
            Syntax::Basic => self.is_esc('|'),
            Syntax::Extended | Syntax::Perl => self.is('|'),
        }
    }
    fn at_close(&self) -> bool {
        match self.syn {
            Syntax::Basic => self.is_esc(')'),
            Syntax::Extended | Syntax::Perl => self.is(')'),
        }
    }

    fn parse_alt(&mut self, depth: usize) -> PResult<Ast> {
        let mut alts = vec![self.parse_concat(depth)?];
        while self.at_alt() {
            self.i += if self.syn == Syntax::Basic { 2 } else { 1 };
            alts.push(self.parse_concat(depth)?);
        }
        if alts.len() == 1 {
            Ok(alts.pop().unwrap())
        } else {
            Ok(Ast::Alt(alts))
        }
    }

    fn parse_concat(&mut self, depth: usize) -> PResult<Ast> {
        let mut items: Vec<Ast> = Vec::new();
        let start = self.i;
        loop {
            if self.peek().is_none() || self.at_alt() {
                break;
            }
            if self.at_close() {
                if depth > 0 {
                    break;
                }
                if self.syn == Syntax::Extended {
                    // unmatched ) is literal in ERE (GNU)
                    self.i += 1;
                    items.push(Ast::Char(')' as u32));
                    continue;
                }
                return Err("Unmatched ) or \\)".into());
            }
            let at_start = self.i == start;
            let atom = self.parse_atom(at_start, depth)?;
            let atom = self.parse_postfix(atom)?;
            items.push(atom);
        }
        Ok(match items.len() {
            0 => Ast::Empty,
            1 => items.pop().unwrap(),
            _ => Ast::Concat(items),
        })
    }

    fn parse_interval(&mut self) -> PResult<Option<(u32, Option<u32>)>> {
        // positioned after '{' (ERE) or '\{' (BRE)
        let save = self.i;
        let num = |s: &mut Self| -> Option<u32> {
            let st = s.i;
            let mut v: u32 = 0;
            while let Some(c) = s.peek() {
                if (b'0' as u32..=b'9' as u32).contains(&c) {
                    v = v.saturating_mul(10).saturating_add(c - b'0' as u32);
                    s.i += 1;
                } else {
                    break;
                }
            }
            if s.i == st {
                None
            } else {
                Some(v)
            }
        };
        let lo = num(self);
        let mut hi = lo;
        if self.is(',') {
            self.i += 1;
            hi = num(self);
        }
        let closed = match self.syn {
            Syntax::Basic => {
                if self.is_esc('}') {
                    self.i += 2;
                    true
                } else {
                    false
                }
            }
            Syntax::Extended | Syntax::Perl => {
                if self.is('}') {
                    self.i += 1;
                    true
                } else {
                    false
                }
            }
        };
        if !closed || (lo.is_none() && hi.is_none() && self.syn == Syntax::Extended && false) {
            if self.syn == Syntax::Extended {
                self.i = save;
                return Ok(None);
            }
            return Err("Unmatched \\{".into());
        }
        let lo = lo.unwrap_or(0);
        if let Some(h) = hi {
            if h < lo {
                return Err("Invalid content of \\{\\}".into());
            }
        }
        if lo > 32767 || hi.map(|h| h > 32767).unwrap_or(false) {
            return Err("Regular expression too big".into());
        }
        Ok(Some((lo, hi)))
    }

    fn parse_postfix(&mut self, mut atom: Ast) -> PResult<Ast> {
        loop {
            let (lo, hi) = if self.is('*') {
                self.i += 1;
                (0, None)
            } else if self.syn == Syntax::Extended && self.is('+') || self.syn == Syntax::Basic && self.is_esc('+') {
                self.i += if self.syn == Syntax::Basic { 2 } else { 1 };
                (1, None)
            } else if self.syn == Syntax::Extended && self.is('?') || self.syn == Syntax::Basic && self.is_esc('?') {
                self.i += if self.syn == Syntax::Basic { 2 } else { 1 };
                (0, Some(1))
            } else if self.syn == Syntax::Extended && self.is('{') {
                self.i += 1;
                match self.parse_interval()? {
                    Some(x) => x,
                    None => {
                        self.i -= 1;
                        break;
                    }
                }
            } else if self.syn == Syntax::Basic && self.is_esc('{') {
                self.i += 2;
                self.parse_interval()?.unwrap()
            } else {
                break;
            };
            if self.perl && (self.is('?') || self.is('+')) {
                self.i += 1; // lazy / possessive: treated as greedy
            }
            atom = match atom {
                // anchors can't be repeated meaningfully; keep as is
                Ast::Bol | Ast::Eol if self.syn != Syntax::Basic => atom,
                a => Ast::Repeat(Box::new(a), lo, hi),
            };
        }
        Ok(atom)
    }

    fn parse_bracket(&mut self) -> PResult<Ast> {
        // positioned after '['
        let mut set = CharSet { neg: false, ranges: Vec::new(), classes: Vec::new() };
        if self.is('^') {
            set.neg = true;
            self.i += 1;
        }
        let mut first = true;
        loop {
            let c = match self.peek() {
                None => return Err("Unmatched [, [^, [:, [., or [=".into()),
                Some(c) => c,
            };
            if c == ']' as u32 && !first {
                self.i += 1;
                break;
            }
            first = false;
            let lo: u32;
            if c == '[' as u32 && matches!(self.peek2(), Some(x) if x == ':' as u32 || x == '.' as u32 || x == '=' as u32) {
                let kind = self.peek2().unwrap();
                let st = self.i + 2;
                let mut j = st;
                while j + 1 < self.p.len() && !(self.p[j] == kind && self.p[j + 1] == ']' as u32) {
                    j += 1;
                }
                if j + 1 >= self.p.len() {
                    return Err("Unmatched [, [^, [:, [., or [=".into());
                }
                let name: String = self.p[st..j].iter().filter_map(|&c| char::from_u32(c)).collect();
                self.i = j + 2;
                if kind == ':' as u32 {
                    let valid = ["alpha", "upper", "lower", "digit", "xdigit", "space", "print", "punct", "graph", "cntrl", "blank", "alnum"];
                    if !valid.contains(&name.as_str()) {
                        return Err("Invalid character class name".into());
                    }
                    set.classes.push(name);
                    continue;
                }
                let chars: Vec<u32> = self.p[st..j].to_vec();
                if chars.len() != 1 {
                    return Err("Invalid collation character".into());
                }
                lo = chars[0];
            } else {
                lo = c;
                self.i += 1;
            }
            // range?
            if self.is('-') && self.peek2().map(|x| x != ']' as u32).unwrap_or(false) {
                self.i += 1;
                let mut hi = self.peek().unwrap();
                if hi == '[' as u32 && matches!(self.peek2(), Some(x) if x == '.' as u32 || x == '=' as u32) {
                    let kind = self.peek2().unwrap();
                    let st = self.i + 2;
                    let mut j = st;
                    while j + 1 < self.p.len() && !(self.p[j] == kind && self.p[j + 1] == ']' as u32) {
                        j += 1;
                    }
                    if j + 1 >= self.p.len() || j - st != 1 {
                        return Err("Invalid range end".into());
                    }
                    hi = self.p[st];
                    self.i = j + 2;
                } else {
                    self.i += 1;
                }
                if hi < lo {
                    return Err("Invalid range end".into());
                }
                set.ranges.push((lo, hi));
            } else {
                set.ranges.push((lo, lo));
            }
        }
        self.sets.push(set);
        Ok(Ast::Set(self.sets.len() - 1))
    }

    fn class_escape(&mut self, name: &str, neg: bool) -> Ast {
        let set = match name {
            "w" => CharSet { neg, ranges: vec![('_' as u32, '_' as u32)], classes: vec!["alnum".into()] },
            _ => CharSet { neg, ranges: vec![], classes: vec!["space".into()] },
        };
        self.sets.push(set);
        Ast::Set(self.sets.len() - 1)
    }

    fn parse_atom(&mut self, at_start: bool, depth: usize) -> PResult<Ast> {
        let c = self.peek().unwrap();
        let ch = char::from_u32(c).unwrap_or('\u{fffd}');
        match self.syn {
            Syntax::Basic => {
                if ch == '^' && at_start {
                    self.i += 1;
                    return Ok(Ast::Bol);
                }
                if ch == '$' {
                    // anchor only at the end of the pattern or before \) or \|
                    let nxt = self.i + 1;
                    let end = nxt >= self.p.len() || (self.p[nxt] == '\\' as u32 && nxt + 1 < self.p.len() && (self.p[nxt + 1] == ')' as u32 || self.p[nxt + 1] == '|' as u32));
                    self.i += 1;
                    return Ok(if end { Ast::Eol } else { Ast::Char(c) });
                }
                if ch == '*' && at_start {
                    self.i += 1;
                    return Ok(Ast::Char(c));
                }
            }
            Syntax::Extended | Syntax::Perl => {
                if ch == '^' {
                    self.i += 1;
                    return Ok(Ast::Bol);
                }
                if ch == '$' {
                    self.i += 1;
                    return Ok(Ast::Eol);
                }
                if ch == '(' && self.perl && self.peek2() == Some('?' as u32) {
                    if self.p.get(self.i + 2) != Some(&(':' as u32)) {
                        return Err("lookaround and other (?...) groups are not supported".into());
                    }
                    self.i += 3;
                    let inner = if self.is(')') { Ast::Empty } else { self.parse_alt(depth + 1)? };
                    if !self.is(')') {
                        return Err("Unmatched ( or \\(".into());
                    }
                    self.i += 1;
                    return Ok(inner);
                }
                if ch == '(' {
                    self.i += 1;
                    self.ngroups += 1;
                    let n = self.ngroups;
                    let inner = if self.is(')') { Ast::Empty } else { self.parse_alt(depth + 1)? };
                    if !self.is(')') {
                        return Err("Unmatched ( or \\(".into());
                    }
                    self.i += 1;
                    return Ok(Ast::Group(Box::new(inner), n));
                }
                if (ch == '*' || ch == '+' || ch == '?') && at_start {
                    self.i += 1;
                    return Ok(Ast::Char(c));
                }
                if ch == '{' && at_start {
                    self.i += 1;
                    return Ok(Ast::Char(c));
                }
            }
        }
        if ch == '.' {
            self.i += 1;
            return Ok(Ast::Any);
        }
        if ch == '[' {
            self.i += 1;
            return self.parse_bracket();
        }
        if ch == '\\' {
            let n = match self.peek2() {
                None => return Err("Trailing backslash".into()),
                Some(n) => n,
            };
            self.i += 2;
            let nc = char::from_u32(n).unwrap_or('\u{fffd}');
            if self.syn == Syntax::Basic && nc == '(' {
                self.ngroups += 1;
                let g = self.ngroups;
                let inner = if self.is_esc(')') { Ast::Empty } else { self.parse_alt(depth + 1)? };
                if !self.is_esc(')') {
                    return Err("Unmatched ( or \\(".into());
                }
                self.i += 2;
                return Ok(Ast::Group(Box::new(inner), g));
            }
            if self.syn == Syntax::Basic && nc == '{' && at_start {
                return Ok(Ast::Char('{' as u32));
            }
            if self.perl {
                match nc {
                    'd' | 'D' => {
                        self.sets.push(CharSet { neg: nc == 'D', ranges: vec![('0' as u32, '9' as u32)], classes: vec![] });
                        return Ok(Ast::Set(self.sets.len() - 1));
                    }
                    't' => return Ok(Ast::Char(9)),
                    'n' => return Ok(Ast::Char(10)),
                    'r' => return Ok(Ast::Char(13)),
                    _ => {}
                }
            }
            return Ok(match nc {
                '1'..='9' => {
                    let k = nc as usize - '0' as usize;
                    if k > self.ngroups {
                        return Err("Invalid back reference".into());
                    }
                    self.has_backrefs = true;
                    Ast::Backref(k)
                }
                '<' => Ast::WordStart,
                '>' => Ast::WordEnd,
                'b' => Ast::WordB,
                'B' => Ast::NotWordB,
                '`' => Ast::BufStart,
                '\'' => Ast::BufEnd,
                'w' => self.class_escape("w", false),
                'W' => self.class_escape("w", true),
                's' => self.class_escape("s", false),
                'S' => self.class_escape("s", true),
                _ => Ast::Char(n),
            });
        }
        self.i += 1;
        let _ = self.utf8;
        Ok(Ast::Char(c))
    }
}

struct Compiler {
    prog: Vec<Inst>,
}

impl Compiler {
    fn emit(&mut self, i: Inst) -> usize {
        self.prog.push(i);
        self.prog.len() - 1
    }
    fn c(&mut self, a: &Ast) -> Result<(), String> {
        if self.prog.len() > 2_000_000 {
            return Err("Regular expression too big".into());
        }
        match a {
            Ast::Empty => {}
            Ast::Char(c) => {
                self.emit(Inst::Char(*c));
            }
            Ast::Any => {
                self.emit(Inst::Any);
            }
            Ast::Set(s) => {
                self.emit(Inst::Set(*s));
            }
            Ast::Bol => {
                self.emit(Inst::Bol);
            }
            Ast::Eol => {
                self.emit(Inst::Eol);
            }
            Ast::WordB => {
                self.emit(Inst::WordB);
            }
            Ast::NotWordB => {
                self.emit(Inst::NotWordB);
            }
            Ast::WordStart => {
                self.emit(Inst::WordStart);
            }
            Ast::WordEnd => {
                self.emit(Inst::WordEnd);
            }
            Ast::BufStart => {
                self.emit(Inst::BufStart);
            }
            Ast::BufEnd => {
                self.emit(Inst::BufEnd);
            }
            Ast::NotWordBefore => {
                self.emit(Inst::NotWordBefore);
            }
            Ast::NotWordAfter => {
                self.emit(Inst::NotWordAfter);
            }
            Ast::Backref(n) => {
                self.emit(Inst::Backref(*n));
            }
            Ast::Group(inner, n) => {
                self.emit(Inst::Save(2 * n));
                self.c(inner)?;
                self.emit(Inst::Save(2 * n + 1));
            }
            Ast::Concat(v) => {
                for x in v {
                    self.c(x)?;
                }
            }
            Ast::Alt(v) => {
                let mut jumps = Vec::new();
                for (k, x) in v.iter().enumerate() {
                    if k + 1 < v.len() {
                        let split = self.emit(Inst::Split(0, 0));
                        self.c(x)?;
                        jumps.push(self.emit(Inst::Jmp(0)));
                        let next = self.prog.len();
                        self.prog[split] = Inst::Split(split + 1, next);
                    } else {
                        self.c(x)?;
                    }
                }
                let end = self.prog.len();
                for j in jumps {
                    self.prog[j] = Inst::Jmp(end);
                }
            }
            Ast::Repeat(x, lo, hi) => {
                for _ in 0..*lo {
                    self.c(x)?;
                }
                match hi {
                    None => {
                        let split = self.emit(Inst::Split(0, 0));
                        self.c(x)?;
                        self.emit(Inst::Jmp(split));
                        let end = self.prog.len();
                        self.prog[split] = Inst::Split(split + 1, end);
                    }
                    Some(h) => {
                        let mut splits = Vec::new();
                        for _ in *lo..*h {
                            splits.push(self.emit(Inst::Split(0, 0)));
                            self.c(x)?;
                        }
                        let end = self.prog.len();
                        for s in splits {
                            self.prog[s] = Inst::Split(s + 1, end);
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

impl Regex {
    pub fn new(pat: &str, syn: Syntax, icase: bool) -> Result<Regex, String> {
        Regex::new_multi(&[pat.to_string()], syn, icase, false, false)
    }

    /// Compile one or more patterns (alternatives), optionally wrapped for -w / -x.
    pub fn new_multi(pats: &[String], syn: Syntax, icase: bool, word: bool, line: bool) -> Result<Regex, String> {
        let utf8 = utf8_locale();
        let mut sets = Vec::new();
        let mut alts = Vec::new();
        let mut ngroups = 0;
        let mut has_backrefs = false;
        for p in pats {
            let chars: Vec<u32> = if utf8 { p.chars().map(|c| c as u32).collect() } else { p.bytes().map(|b| b as u32).collect() };
            let perl = syn == Syntax::Perl;
            let syn = if perl { Syntax::Extended } else { syn };
            let mut ps = Parser { p: chars, i: 0, syn, sets: &mut sets, ngroups: 0, has_backrefs: false, utf8, perl };
            let ast = ps.parse_alt(0)?;
            if ps.i < ps.p.len() {
                return Err(if syn == Syntax::Basic { "Unmatched ) or \\)".into() } else { "Unmatched ) or \\)".into() });
            }
            ngroups = ngroups.max(ps.ngroups);
            has_backrefs |= ps.has_backrefs;
            alts.push(ast);
        }
        let mut ast = if alts.len() == 1 { alts.pop().unwrap() } else { Ast::Alt(alts) };
        if line {
            ast = Ast::Concat(vec![Ast::Bol, ast, Ast::Eol]);
        } else if word {
            ast = Ast::Concat(vec![Ast::NotWordBefore, ast, Ast::NotWordAfter]);
        }
        let first = match &ast {
            Ast::Char(c) if !icase => Some(*c),
            Ast::Concat(v) if !icase => match v.first() {
                Some(Ast::Char(c)) => Some(*c),
                _ => None,
            },
            _ => None,
        };
        let mut comp = Compiler { prog: Vec::new() };
        comp.c(&ast)?;
        comp.emit(Inst::Match);
        Ok(Regex { prog: comp.prog, sets, icase, utf8, has_backrefs, ngroups, first })
    }

    pub fn is_match(&self, text: &[u8]) -> bool {
        self.find_at(text, 0).is_some()
    }

    /// Leftmost-longest match starting at or after `from`: (start, end).
    pub fn find_at(&self, text: &[u8], from: usize) -> Option<(usize, usize)> {
        let n = text.len();
        let plen = self.prog.len();
        let use_memo = !self.has_backrefs && (plen as u64) * (n as u64 + 1) <= 256 * 1024 * 1024;
        let mut visited: Vec<u64> = if use_memo { vec![0u64; (plen * (n + 1) + 63) / 64] } else { Vec::new() };
        let mut s = from;
        // literal first byte/char: skip quickly
        while s <= n {
            if let Some(fc) = self.first {
                if !self.utf8 || fc < 128 {
                    match text[s.min(n)..].iter().position(|&b| b as u32 == fc) {
                        Some(p) => s += p,
                        None => return None,
                    }
                }
            }
            let r = if use_memo { self.run_memo(text, s, &mut visited) } else { self.run_caps(text, s) };
            if let Some(e) = r {
                return Some((s, e));
            }
            if s >= n {
                break;
            }
            // advance by one character
            s += if self.utf8 { decode(text, s, true).map(|x| x.1).unwrap_or(1) } else { 1 };
        }
        None
    }

    #[inline]
    fn step(&self, inst: &Inst, text: &[u8], pos: usize) -> Option<usize> {
        // returns new position for consuming instructions / assertions (None = fail)
        let utf8 = self.utf8;
        match inst {
            Inst::Char(c) => {
                let (t, l) = decode(text, pos, utf8)?;
                if t == *c || (self.icase && fold(t, utf8) == fold(*c, utf8)) {
                    Some(pos + l)
                } else {
                    None
                }
            }
            Inst::Any => {
                let (t, l) = decode(text, pos, utf8)?;
                if t == '\n' as u32 || (utf8 && (0xDC80..=0xDCFF).contains(&t)) {
                    None
                } else {
                    Some(pos + l)
                }
            }
            Inst::Set(k) => {
                let (t, l) = decode(text, pos, utf8)?;
                if utf8 && (0xDC80..=0xDCFF).contains(&t) {
                    return None;
                }
                if self.sets[*k].has(t, self.icase, utf8) {
                    Some(pos + l)
                } else {
                    None
                }
            }
            Inst::Bol => {
                if pos == 0 {
                    Some(pos)
                } else {
                    None
                }
            }
            Inst::Eol => {
                if pos == text.len() {
                    Some(pos)
                } else {
                    None
                }
            }
            Inst::BufStart => {
                if pos == 0 {
                    Some(pos)
                } else {
                    None
                }
            }
            Inst::BufEnd => {
                if pos == text.len() {
                    Some(pos)
                } else {
                    None
                }
            }
            Inst::WordB | Inst::NotWordB | Inst::WordStart | Inst::WordEnd | Inst::NotWordBefore | Inst::NotWordAfter => {
                let a = is_word(prev_char(text, pos, utf8), utf8);
                let b = is_word(decode(text, pos, utf8).map(|x| x.0), utf8);
                let ok = match inst {
                    Inst::WordB => a != b,
                    Inst::NotWordB => a == b,
                    Inst::WordStart => !a && b,
                    Inst::WordEnd => a && !b,
                    Inst::NotWordBefore => !a,
                    _ => !b,
                };
                if ok {
                    Some(pos)
                } else {
                    None
                }
            }
            _ => Some(pos),
        }
    }

    fn run_memo(&self, text: &[u8], start: usize, visited: &mut [u64]) -> Option<usize> {
        let n1 = text.len() + 1;
        let mut best: Option<usize> = None;
        let mut stack: Vec<(usize, usize)> = vec![(0, start)];
        while let Some((mut pc, mut pos)) = stack.pop() {
            loop {
                let key = pc * n1 + pos;
                if visited[key / 64] & (1 << (key % 64)) != 0 {
                    break;
                }
                visited[key / 64] |= 1 << (key % 64);
                match &self.prog[pc] {
                    Inst::Match => {
                        if best.map(|b| pos > b).unwrap_or(true) {
                            best = Some(pos);
                        }
                        break;
                    }
                    Inst::Split(a, b) => {
                        stack.push((*b, pos));
                        pc = *a;
                    }
                    Inst::Jmp(a) => pc = *a,
                    Inst::Save(_) => pc += 1,
                    Inst::Backref(_) => break,
                    inst => match self.step(inst, text, pos) {
                        Some(np) => {
                            pos = np;
                            pc += 1;
                        }
                        None => break,
                    },
                }
            }
        }
        best
    }

    fn run_caps(&self, text: &[u8], start: usize) -> Option<usize> {
        let mut best: Option<usize> = None;
        let ncap = 2 * (self.ngroups + 1);
        let mut seen: HashSet<(usize, usize, Vec<usize>)> = HashSet::new();
        let mut stack: Vec<(usize, usize, Vec<usize>)> = vec![(0, start, vec![usize::MAX; ncap])];
        let mut steps: u64 = 0;
        while let Some((mut pc, mut pos, mut caps)) = stack.pop() {
            loop {
                steps += 1;
                if steps > 50_000_000 {
                    return best;
                }
                if let Inst::Split(..) = self.prog[pc] {
                    if !seen.insert((pc, pos, caps.clone())) {
                        break;
                    }
                }
                match &self.prog[pc] {
                    Inst::Match => {
                        if best.map(|b| pos > b).unwrap_or(true) {
                            best = Some(pos);
                        }
                        break;
                    }
                    Inst::Split(a, b) => {
                        stack.push((*b, pos, caps.clone()));
                        pc = *a;
                    }
                    Inst::Jmp(a) => pc = *a,
                    Inst::Save(k) => {
                        caps[*k] = pos;
                        pc += 1;
                    }
                    Inst::Backref(k) => {
                        let (s, e) = (caps[2 * k], caps[2 * k + 1]);
                        if s == usize::MAX || e == usize::MAX || e < s {
                            break;
                        }
                        let len = e - s;
                        if pos + len > text.len() {
                            break;
                        }
                        let a = &text[s..e];
                        let b = &text[pos..pos + len];
                        let eq = if self.icase { a.eq_ignore_ascii_case(b) } else { a == b };
                        if !eq {
                            break;
                        }
                        pos += len;
                        pc += 1;
                    }
                    inst => match self.step(inst, text, pos) {
                        Some(np) => {
                            pos = np;
                            pc += 1;
                        }
                        None => break,
                    },
                }
            }
        }
        best
    }
}
