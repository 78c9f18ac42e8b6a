//! Word expansion, run just before a command runs: parameters (`$VAR`, `${VAR}`, `$?`), a
//! leading `~`, field splitting of unquoted expansions, and pathname expansion (globbing)
//! against the sandbox's files. Unmatched globs stay as written, as in bash.

use std::collections::BTreeMap;

use super::fs::{GuestFs, absolute};
use super::plan::{Word, WordPart};

/// What expansion reads.
#[derive(Debug)]
pub(crate) struct Scope<'a> {
    /// Shell variables (exported or not).
    pub vars: &'a BTreeMap<String, String>,
    /// `$?`.
    pub last_status: i32,
    /// The working directory (for relative globs).
    pub cwd: &'a str,
}

impl Scope<'_> {
    fn get(&self, name: &str) -> String {
        self.vars.get(name).cloned().unwrap_or_default()
    }
}

/// A field being built: its text and, per byte, whether a glob character there is active.
#[derive(Debug, Default)]
struct Field {
    text: String,
    active: Vec<bool>,
    /// Quoted content makes an empty field survive (`""`).
    keep: bool,
}

impl Field {
    fn push(&mut self, s: &str, glob_active: bool) {
        self.text.push_str(s);
        self.active
            .extend(std::iter::repeat_n(glob_active, s.len()));
    }
    fn has_glob(&self) -> bool {
        self.text
            .bytes()
            .zip(&self.active)
            .any(|(b, &a)| a && matches!(b, b'*' | b'?' | b'['))
    }
}

/// Expands a word into fields (zero or more arguments).
pub(crate) fn fields(word: &Word, scope: &Scope<'_>, fs: &GuestFs) -> Vec<String> {
    let mut done: Vec<Field> = Vec::new();
    let mut cur = Field::default();
    for (i, part) in word.0.iter().enumerate() {
        match part {
            WordPart::Literal { text, quoted } => {
                cur.push(text, !quoted);
                cur.keep |= *quoted || !text.is_empty();
            }
            WordPart::Tilde if i == 0 => {
                let home = scope.vars.get("HOME").map_or("/workspace", String::as_str);
                cur.push(home, false);
                cur.keep = true;
            }
            WordPart::Tilde => cur.push("~", false),
            WordPart::LastStatus => {
                cur.push(&scope.last_status.to_string(), false);
                cur.keep = true;
            }
            WordPart::Var { name, quoted: true } => {
                cur.push(&scope.get(name), false);
                cur.keep = true;
            }
            WordPart::Var {
                name,
                quoted: false,
            } => {
                // Unquoted: split on IFS whitespace; each piece is glob-active.
                let value = scope.get(name);
                let starts_with_space = value.starts_with(char::is_whitespace);
                let ends_with_space = value.ends_with(char::is_whitespace);
                let pieces: Vec<&str> = value.split_whitespace().collect();
                if pieces.is_empty() {
                    if !value.is_empty() && (cur.keep || !cur.text.is_empty()) {
                        done.push(std::mem::take(&mut cur));
                    }
                    continue;
                }
                if starts_with_space && (cur.keep || !cur.text.is_empty()) {
                    done.push(std::mem::take(&mut cur));
                }
                for (j, piece) in pieces.iter().enumerate() {
                    if j > 0 {
                        done.push(std::mem::take(&mut cur));
                    }
                    cur.push(piece, true);
                    cur.keep = true;
                }
                if ends_with_space {
                    done.push(std::mem::take(&mut cur));
                }
            }
        }
    }
    if cur.keep || !cur.text.is_empty() {
        done.push(cur);
    }
    let mut out = Vec::new();
    for field in done {
        if field.has_glob() {
            let mut matches = glob(&field, scope.cwd, fs);
            if !matches.is_empty() {
                matches.sort();
                out.extend(matches);
                continue;
            }
        }
        out.push(field.text);
    }
    out
}

/// Expands a word into exactly one string (assignments, redirection targets): no field
/// splitting, no globbing.
pub(crate) fn single(word: &Word, scope: &Scope<'_>) -> String {
    let mut s = String::new();
    for (i, part) in word.0.iter().enumerate() {
        match part {
            WordPart::Literal { text, .. } => s.push_str(text),
            WordPart::Var { name, .. } => s.push_str(&scope.get(name)),
            WordPart::LastStatus => s.push_str(&scope.last_status.to_string()),
            WordPart::Tilde if i == 0 => {
                s.push_str(scope.vars.get("HOME").map_or("/workspace", String::as_str));
            }
            WordPart::Tilde => s.push('~'),
        }
    }
    s
}

/// A pattern character: literal or active.
#[derive(Debug, Clone, Copy)]
struct Pc {
    c: char,
    active: bool,
}

fn glob(field: &Field, cwd: &str, fs: &GuestFs) -> Vec<String> {
    // Rebuild per-char activity from per-byte flags.
    let mut chars = Vec::new();
    for (idx, c) in field.text.char_indices() {
        chars.push(Pc {
            c,
            active: field.active.get(idx).copied().unwrap_or(false),
        });
    }
    let absolute_pattern = field.text.starts_with('/');
    let components: Vec<Vec<Pc>> = chars
        .split(|p| p.c == '/')
        .filter(|c| !c.is_empty())
        .map(<[Pc]>::to_vec)
        .collect();
    // (guest path to look in, text to show so far)
    let mut frontier: Vec<(String, String)> = vec![(
        if absolute_pattern {
            "/".into()
        } else {
            cwd.to_owned()
        },
        if absolute_pattern {
            "/".into()
        } else {
            String::new()
        },
    )];
    for (i, comp) in components.iter().enumerate() {
        let last = i + 1 == components.len();
        let mut next = Vec::new();
        let is_pattern = comp
            .iter()
            .any(|p| p.active && matches!(p.c, '*' | '?' | '['));
        for (dir, shown) in &frontier {
            let join = |name: &str| {
                let s = if shown.is_empty() || shown.ends_with('/') {
                    format!("{shown}{name}")
                } else {
                    format!("{shown}/{name}")
                };
                (absolute(dir, name), s)
            };
            if is_pattern {
                let Ok(entries) = fs.list(dir) else { continue };
                let dot_ok = comp.first().is_some_and(|p| p.c == '.');
                for (name, is_dir) in entries {
                    if name.starts_with('.') && !dot_ok {
                        continue;
                    }
                    if (last || is_dir) && matches(comp, &name.chars().collect::<Vec<_>>()) {
                        next.push(join(&name));
                    }
                }
            } else {
                let name: String = comp.iter().map(|p| p.c).collect();
                let (abs, s) = join(&name);
                if fs.exists(&abs) {
                    next.push((abs, s));
                }
            }
        }
        frontier = next;
    }
    frontier.into_iter().map(|(_, shown)| shown).collect()
}

/// fnmatch for one path component: `*`, `?`, `[...]` (with `!`/`^` and ranges) when active.
fn matches(pat: &[Pc], name: &[char]) -> bool {
    let (mut p, mut n) = (0, 0);
    let (mut star_p, mut star_n) = (None, 0);
    while n < name.len() {
        if p < pat.len() {
            let pc = pat[p];
            if pc.active && pc.c == '*' {
                star_p = Some(p);
                star_n = n;
                p += 1;
                continue;
            }
            if pc.active && pc.c == '?' {
                p += 1;
                n += 1;
                continue;
            }
            if pc.active && pc.c == '[' {
                if let Some((ok, len)) = bracket(&pat[p..], name[n]) {
                    if ok {
                        p += len;
                        n += 1;
                        continue;
                    }
                } else if name[n] == '[' {
                    p += 1;
                    n += 1;
                    continue;
                }
            } else if pc.c == name[n] {
                p += 1;
                n += 1;
                continue;
            }
        }
        match star_p {
            Some(sp) => {
                p = sp + 1;
                star_n += 1;
                n = star_n;
            }
            None => return false,
        }
    }
    pat[p..].iter().all(|pc| pc.active && pc.c == '*')
}

/// Matches `c` against the bracket expression at the start of `pat`: (matched, pattern length),
/// or `None` when the bracket is not closed (then `[` is literal).
fn bracket(pat: &[Pc], c: char) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = pat.get(i).is_some_and(|p| p.c == '!' || p.c == '^');
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while i < pat.len() {
        let pc = pat[i].c;
        if pc == ']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if pat.get(i + 1).is_some_and(|p| p.c == '-') && pat.get(i + 2).is_some_and(|p| p.c != ']')
        {
            let hi = pat[i + 2].c;
            if pc <= c && c <= hi {
                matched = true;
            }
            i += 3;
        } else {
            if pc == c {
                matched = true;
            }
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pat(s: &str) -> Vec<Pc> {
        s.chars().map(|c| Pc { c, active: true }).collect()
    }

    #[test]
    fn fnmatch_basics() {
        let m = |p: &str, n: &str| matches(&pat(p), &n.chars().collect::<Vec<_>>());
        assert!(m("*.py", "main.py") && !m("*.py", "main.pyc"));
        assert!(m("a?c", "abc") && !m("a?c", "ac"));
        assert!(m("[a-c]x", "bx") && !m("[!a-c]x", "bx") && m("[!a-c]x", "dx"));
        assert!(m("*", "") && m("a*b*c", "aXXbYc") && !m("a*b*c", "aXXbY"));
        assert!(m("[]]", "]") && m("[x", "[x"));
    }

    #[test]
    fn quoted_glob_characters_are_literal() {
        let q = vec![Pc {
            c: '*',
            active: false,
        }];
        assert!(!matches(&q, &['a']));
        assert!(matches(&q, &['*']));
    }
}
