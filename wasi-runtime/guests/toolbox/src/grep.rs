//! grep: print lines that match patterns (BRE by default, -E ERE, -F fixed, -P Perl subset).

use crate::regex::{Regex, Syntax};
use crate::util::*;

struct G {
    re: Regex,
    invert: bool,
    count: bool,
    files_with: bool,
    files_without: bool,
    only: bool,
    quiet: bool,
    no_msgs: bool,
    with_name: bool,
    line_no: bool,
    byte_off: bool,
    max: Option<u64>,
    /// Lines and bytes of a stream already searched (stdin is searched in chunks).
    line_base: u64,
    byte_base: usize,
    after: usize,
    before: usize,
    eol: u8,
    null_after_name: bool,
    binary_mode: Binary,
    label: String,
    initial_tab: bool,
    // state
    any_selected: bool,
    error: bool,
    printed_sep_needed: bool,
}

#[derive(PartialEq, Clone, Copy)]
enum Binary {
    Binary,
    Text,
    WithoutMatch,
}

fn escape_fixed(p: &str) -> String {
    let mut o = String::new();
    for c in p.chars() {
        if ".[]\\*^$".contains(c) {
            o.push('\\');
        }
        o.push(c);
    }
    o
}

impl G {
    fn prefix(&self, name: &str, lineno: u64, off: usize, sep: char) -> String {
        let (lineno, off) = (lineno + self.line_base, off + self.byte_base);
        let mut s = String::new();
        if self.with_name {
            s.push_str(name);
            if self.null_after_name {
                s.push('\0');
            } else {
                s.push(sep);
            }
        }
        if self.line_no {
            if self.initial_tab {
                s.push_str(&format!("{:>4}{}", lineno, sep));
            } else {
                s.push_str(&format!("{}{}", lineno, sep));
            }
        }
        if self.byte_off {
            if self.initial_tab {
                s.push_str(&format!("{:>9}{}", off, sep));
            } else {
                s.push_str(&format!("{}{}", off, sep));
            }
        }
        if self.initial_tab && !s.is_empty() {
            s.push('\t');
        }
        s
    }

    fn matches(&self, line: &[u8]) -> bool {
        self.re.is_match(line) != self.invert
    }

    /// Search one buffer; returns number of selected lines.
    fn search(&mut self, data: &[u8], name: &str) -> u64 {
        let binary = self.binary_mode != Binary::Text && data.contains(&0) && self.eol != 0;
        if binary && self.binary_mode == Binary::WithoutMatch {
            return 0;
        }
        let mut lines: Vec<(usize, usize)> = Vec::new(); // (start, end) excluding eol
        let mut st = 0;
        for (i, &b) in data.iter().enumerate() {
            if b == self.eol {
                lines.push((st, i));
                st = i + 1;
            }
        }
        if st < data.len() {
            lines.push((st, data.len()));
        }
        let mut count: u64 = 0;
        let mut last_printed: Option<usize> = None;
        let mut after_left = 0usize;
        let out_lines = !(self.count || self.files_with || self.files_without || self.quiet);
        let mut o: Vec<u8> = Vec::new();
        let mut binary_matched = false;
        for (idx, &(s, e)) in lines.iter().enumerate() {
            if let Some(m) = self.max {
                if count >= m {
                    // trailing context after the last match still prints
                    if after_left > 0 && out_lines && !binary {
                        if !self.matches(&data[s..e]) || true {
                            o.extend_from_slice(self.prefix(name, idx as u64 + 1, s, '-').as_bytes());
                            o.extend_from_slice(&data[s..e]);
                            o.push(self.eol);
                            last_printed = Some(idx);
                            after_left -= 1;
                            continue;
                        }
                    }
                    break;
                }
            }
            let line = &data[s..e];
            let sel = self.matches(line);
            if sel {
                count += 1;
                self.any_selected = true;
                if self.quiet {
                    return count;
                }
                if !out_lines {
                    if self.files_with {
                        break;
                    }
                    continue;
                }
                if binary {
                    binary_matched = true;
                    break;
                }
                // before context
                let bstart = idx.saturating_sub(self.before);
                let from = match last_printed {
                    Some(lp) => (lp + 1).max(bstart),
                    None => bstart,
                };
                if (self.before > 0 || self.after > 0) && self.printed_sep_needed {
                    let gap = match last_printed {
                        Some(lp) => from > lp + 1,
                        None => true,
                    };
                    if gap {
                        o.extend_from_slice(b"--\n");
                    }
                }
                for k in from..idx {
                    let (cs, ce) = lines[k];
                    o.extend_from_slice(self.prefix(name, k as u64 + 1, cs, '-').as_bytes());
                    o.extend_from_slice(&data[cs..ce]);
                    o.push(self.eol);
                }
                if self.only {
                    if !self.invert {
                        let mut pos = 0;
                        while pos <= line.len() {
                            match self.re.find_at(line, pos) {
                                Some((ms, me)) => {
                                    if me > ms {
                                        o.extend_from_slice(self.prefix(name, idx as u64 + 1, s + ms, ':').as_bytes());
                                        o.extend_from_slice(&line[ms..me]);
                                        o.push(self.eol);
                                        pos = me;
                                    } else {
                                        pos = ms + 1;
                                    }
                                }
                                None => break,
                            }
                        }
                    }
                } else {
                    o.extend_from_slice(self.prefix(name, idx as u64 + 1, s, ':').as_bytes());
                    o.extend_from_slice(line);
                    o.push(self.eol);
                }
                last_printed = Some(idx);
                self.printed_sep_needed = true;
                after_left = self.after;
            } else if after_left > 0 && out_lines && !binary {
                o.extend_from_slice(self.prefix(name, idx as u64 + 1, s, '-').as_bytes());
                o.extend_from_slice(line);
                o.push(self.eol);
                last_printed = Some(idx);
                after_left -= 1;
            }
            if o.len() > 64 * 1024 {
                out(&o);
                o.clear();
            }
        }
        out(&o);
        if binary_matched && !self.quiet {
            out_flush();
            err(&format!("{}: binary file matches", name));
        }
        count
    }

    fn report(&mut self, name: &str, count: u64) {
        if self.quiet {
            return;
        }
        let term = if self.null_after_name { "\0" } else { "\n" };
        if self.count {
            if self.with_name {
                outf!("{}{}{}\n", name, if self.null_after_name { "\0" } else { ":" }, count);
            } else {
                outf!("{}\n", count);
            }
        }
        if self.files_with && count > 0 {
            outf!("{}{}", name, term);
        }
        if self.files_without && count == 0 {
            outf!("{}{}", name, term);
        }
    }
}

struct Walk {
    recursive: bool,
    deref_all: bool,
    include: Vec<Vec<char>>,
    exclude: Vec<Vec<char>>,
    exclude_dir: Vec<Vec<char>>,
    dirs_skip: bool,
}

fn glob_any(globs: &[Vec<char>], name: &str) -> bool {
    let s: Vec<char> = name.chars().collect();
    globs.iter().any(|g| crate::find::fnmatch(g, &s, false))
}

/// Searches standard input chunk by chunk (no context lines); returns the selected count.
fn grep_stream(g: &mut G, name: &str) -> u64 {
    use std::io::Read;
    let limit = g.max;
    let mut total: u64 = 0;
    let mut carry: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut stdin = std::io::stdin();
    let search = |g: &mut G, chunk: &[u8], total: &mut u64| -> bool {
        let found = g.search(chunk, name);
        *total += found;
        g.line_base += chunk.iter().filter(|&&b| b == g.eol).count() as u64;
        g.byte_base += chunk.len();
        if let Some(m) = limit {
            if *total >= m {
                return false;
            }
            g.max = Some(m - *total);
        }
        !((g.quiet || g.files_with) && g.any_selected)
    };
    loop {
        let n = match stdin.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(ref e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                if !g.no_msgs {
                    err(&format!("(standard input): {}", ioerr(&e)));
                }
                g.error = true;
                break;
            }
        };
        carry.extend_from_slice(&buf[..n]);
        if let Some(pos) = carry.iter().rposition(|&b| b == g.eol) {
            let rest = carry.split_off(pos + 1);
            let chunk = std::mem::replace(&mut carry, rest);
            if !search(g, &chunk, &mut total) {
                carry.clear();
                break;
            }
        }
    }
    if !carry.is_empty() {
        search(g, &carry, &mut total);
    }
    g.max = limit;
    g.line_base = 0;
    g.byte_base = 0;
    total
}

fn grep_path(g: &mut G, w: &Walk, path: &str, display: &str, top: bool) {
    let base = basename_of(path);
    let meta = if top || w.deref_all { crate::sys::stat_s(path) } else { crate::sys::lstat_s(path) };
    let meta = match meta {
        Ok(m) => m,
        Err(e) => {
            if !g.no_msgs {
                err(&format!("{}: {}", display, ioerr(&e)));
            }
            g.error = true;
            return;
        }
    };
    if meta.is_dir() {
        if !w.recursive {
            if w.dirs_skip {
                return;
            }
            if !g.no_msgs {
                err(&format!("{}: Is a directory", display));
            }
            g.error = true;
            return;
        }
        if !top && !w.exclude_dir.is_empty() && glob_any(&w.exclude_dir, base) {
            return;
        }
        if top && !w.exclude_dir.is_empty() && path != "." && glob_any(&w.exclude_dir, base) {
            return;
        }
        let names = match crate::sys::dir_names(path) {
            Ok(r) => r,
            Err(e) => {
                if !g.no_msgs {
                    err(&format!("{}: {}", display, ioerr(&e)));
                }
                g.error = true;
                return;
            }
        };
        let mut names = names;
        names.sort();
        for n in names {
            let child = join(path, &n);
            let disp = if display.is_empty() { n.clone() } else { join(display, &n) };
            grep_path(g, w, &child, &disp, false);
            if g.quiet && g.any_selected {
                return;
            }
        }
        return;
    }
    if meta.is_symlink() {
        return; // -r: symlinks below the top are skipped
    }
    if !top || w.recursive {
        if !w.include.is_empty() && !glob_any(&w.include, base) {
            return;
        }
        if !w.exclude.is_empty() && glob_any(&w.exclude, base) {
            return;
        }
    }
    match std::fs::read(path) {
        Ok(d) => {
            let c = g.search(&d, display);
            g.report(display, c);
        }
        Err(e) => {
            if !g.no_msgs {
                err(&format!("{}: {}", display, ioerr(&e)));
            }
            g.error = true;
        }
    }
}

pub fn main(args: Vec<String>, forced: Option<char>) -> i32 {
    let spec = Spec {
        short: "0123456789A:B:C:D:EFGHIJLPTUVZabcd:e:f:hiLlm:noqRrsuvwxyz",
        long: &[
            l("extended-regexp", Has::No, 'E'),
            l("fixed-strings", Has::No, 'F'),
            l("basic-regexp", Has::No, 'G'),
            l("perl-regexp", Has::No, 'P'),
            l("regexp", Has::Req, 'e'),
            l("file", Has::Req, 'f'),
            l("ignore-case", Has::No, 'i'),
            l("no-ignore-case", Has::No, '\u{10}'),
            l("word-regexp", Has::No, 'w'),
            l("line-regexp", Has::No, 'x'),
            l("null-data", Has::No, 'z'),
            l("no-messages", Has::No, 's'),
            l("invert-match", Has::No, 'v'),
            l("max-count", Has::Req, 'm'),
            l("byte-offset", Has::No, 'b'),
            l("line-number", Has::No, 'n'),
            l("no-line-number", Has::No, '\u{11}'),
            l("line-buffered", Has::No, '\u{12}'),
            l("with-filename", Has::No, 'H'),
            l("no-filename", Has::No, 'h'),
            l("label", Has::Req, '\u{13}'),
            l("only-matching", Has::No, 'o'),
            l("quiet", Has::No, 'q'),
            l("silent", Has::No, 'q'),
            l("binary-files", Has::Req, '\u{14}'),
            l("text", Has::No, 'a'),
            l("directories", Has::Req, 'd'),
            l("devices", Has::Req, 'D'),
            l("recursive", Has::No, 'r'),
            l("dereference-recursive", Has::No, 'R'),
            l("include", Has::Req, '\u{15}'),
            l("exclude", Has::Req, '\u{16}'),
            l("exclude-from", Has::Req, '\u{17}'),
            l("exclude-dir", Has::Req, '\u{18}'),
            l("files-without-match", Has::No, 'L'),
            l("files-with-matches", Has::No, 'l'),
            l("count", Has::No, 'c'),
            l("initial-tab", Has::No, 'T'),
            l("null", Has::No, 'Z'),
            l("before-context", Has::Req, 'B'),
            l("after-context", Has::Req, 'A'),
            l("context", Has::Req, 'C'),
            l("color", Has::Opt, '\u{19}'),
            l("colour", Has::Opt, '\u{19}'),
            l("binary", Has::No, 'U'),
        ],
        code: 2,
        help: "Usage: grep [OPTION]... PATTERNS [FILE]...\nSearch for PATTERNS in each FILE.\n\n  -E, --extended-regexp     PATTERNS are extended regular expressions\n  -F, --fixed-strings       PATTERNS are strings\n  -G, --basic-regexp        PATTERNS are basic regular expressions\n  -P, --perl-regexp         a Perl subset: ERE plus \\d \\D \\w \\s (?:...)\n  -e, --regexp=PATTERNS     use PATTERNS for matching\n  -f, --file=FILE           take PATTERNS from FILE\n  -i, --ignore-case         ignore case distinctions in patterns and data\n  -w, --word-regexp         match only whole words\n  -x, --line-regexp         match only whole lines\n  -z, --null-data           a data line ends in 0 byte, not newline\n  -s, --no-messages         suppress error messages\n  -v, --invert-match        select non-matching lines\n  -m, --max-count=NUM       stop after NUM selected lines\n  -b, --byte-offset         print the byte offset with output lines\n  -n, --line-number         print line number with output lines\n  -H, --with-filename       print file name with output lines\n  -h, --no-filename         suppress the file name prefix on output\n      --label=LABEL         use LABEL as the standard input file name prefix\n  -o, --only-matching       show only nonempty parts of lines that match\n  -q, --quiet, --silent     suppress all normal output\n  -a, --text                equivalent to --binary-files=text\n  -r, --recursive           search directories recursively\n  -R, --dereference-recursive  likewise, but follow all symlinks\n      --include=GLOB        search only files that match GLOB\n      --exclude=GLOB        skip files that match GLOB\n      --exclude-dir=GLOB    skip directories that match GLOB\n  -L, --files-without-match  print only names of FILEs with no selected lines\n  -l, --files-with-matches  print only names of FILEs with selected lines\n  -c, --count               print only a count of selected lines per FILE\n  -Z, --null                print 0 byte after FILE name\n  -B, --before-context=NUM  print NUM lines of leading context\n  -A, --after-context=NUM   print NUM lines of trailing context\n  -C, --context=NUM         print NUM lines of output context\n  -NUM                      same as --context=NUM\n\nExit status is 0 if any line is selected, 1 otherwise;\nif any error occurs and -q is not given, the exit status is 2.\n",
        stop_at_operand: false,
    };
    let p = getopt(&args, &spec);
    let mut syntax = match forced {
        Some('E') => Syntax::Extended,
        Some('F') => Syntax::Basic,
        _ => Syntax::Basic,
    };
    let mut fixed = forced == Some('F');
    let mut patterns: Vec<String> = Vec::new();
    let mut have_pat = false;
    let (mut icase, mut word, mut linex, mut invert, mut count, mut fw, mut fwo, mut only, mut quiet, mut nomsg) = (false, false, false, false, false, false, false, false, false, false);
    let (mut with_name, mut lineno, mut boff, mut null, mut tab) = (None::<bool>, false, false, false, false);
    let mut max = None;
    let (mut after, mut before) = (None::<usize>, None::<usize>);
    let mut ctx_digits = String::new();
    let mut ctx: Option<usize> = None;
    let mut eol = b'\n';
    let mut binary = Binary::Binary;
    let mut label = "(standard input)".to_string();
    let mut w = Walk { recursive: false, deref_all: false, include: vec![], exclude: vec![], exclude_dir: vec![], dirs_skip: false };
    let mut last_was_digit = false;
    let num_arg = |a: &Option<String>, what: &str| -> usize {
        let s = a.clone().unwrap();
        match s.parse::<u64>() {
            Ok(v) => v.min(usize::MAX as u64) as usize,
            Err(_) => die(2, &format!("{}: invalid context length argument", s).replace("{}", what)),
        }
    };
    for (c, a) in &p.opts {
        let is_digit = c.is_ascii_digit();
        if is_digit {
            if !last_was_digit {
                ctx_digits.clear();
            }
            ctx_digits.push(*c);
            ctx = Some(ctx_digits.parse().unwrap_or(usize::MAX));
        }
        last_was_digit = is_digit;
        match c {
            'E' => {
                syntax = Syntax::Extended;
                fixed = false
            }
            'F' => fixed = true,
            'G' => {
                syntax = Syntax::Basic;
                fixed = false
            }
            'P' => {
                syntax = Syntax::Perl;
                fixed = false
            }
            'e' => {
                have_pat = true;
                patterns.extend(a.clone().unwrap().split('\n').map(|s| s.to_string()));
            }
            'f' => {
                have_pat = true;
                let f = a.clone().unwrap();
                match read_all(&f) {
                    Ok(d) => {
                        let s = String::from_utf8_lossy(&d).into_owned();
                        for line in split_lines(s.as_bytes(), b'\n') {
                            patterns.push(String::from_utf8_lossy(line).into_owned());
                        }
                    }
                    Err(e) => die(2, &format!("{}: {}", f, ioerr(&e))),
                }
            }
            'i' | 'y' => icase = true,
            '\u{10}' => icase = false,
            'w' => word = true,
            'x' => linex = true,
            'z' => eol = 0,
            's' => nomsg = true,
            'v' => invert = true,
            'm' => {
                let s = a.clone().unwrap();
                max = match s.parse::<i64>() {
                    Ok(v) if v < 0 => None,
                    Ok(v) => Some(v as u64),
                    Err(_) => die(2, &format!("invalid max count")),
                };
            }
            'b' => boff = true,
            'n' => lineno = true,
            '\u{11}' => lineno = false,
            'H' => with_name = Some(true),
            'h' => with_name = Some(false),
            '\u{13}' => label = a.clone().unwrap(),
            'o' => only = true,
            'q' => quiet = true,
            '\u{14}' => {
                binary = match a.as_deref() {
                    Some("binary") => Binary::Binary,
                    Some("text") => Binary::Text,
                    Some("without-match") => Binary::WithoutMatch,
                    _ => die(2, "unknown binary-files type"),
                }
            }
            'a' => binary = Binary::Text,
            'I' => binary = Binary::WithoutMatch,
            'd' => match a.as_deref() {
                Some("recurse") => w.recursive = true,
                Some("skip") => w.dirs_skip = true,
                Some("read") => {}
                _ => die(2, "invalid argument for --directories"),
            },
            'D' => {}
            'r' => w.recursive = true,
            'R' => {
                w.recursive = true;
                w.deref_all = true
            }
            '\u{15}' => w.include.push(a.clone().unwrap().chars().collect()),
            '\u{16}' => w.exclude.push(a.clone().unwrap().chars().collect()),
            '\u{17}' => {
                let f = a.clone().unwrap();
                if let Ok(d) = read_all(&f) {
                    for line in split_lines(&d, b'\n') {
                        w.exclude.push(String::from_utf8_lossy(line).chars().collect());
                    }
                }
            }
            '\u{18}' => w.exclude_dir.push(a.clone().unwrap().trim_end_matches('/').chars().collect()),
            'L' => {
                fwo = true;
                fw = false
            }
            'l' => {
                fw = true;
                fwo = false
            }
            'c' => count = true,
            'T' => tab = true,
            'Z' => null = true,
            'A' => after = Some(num_arg(a, "")),
            'B' => before = Some(num_arg(a, "")),
            'C' => ctx = Some(num_arg(a, "")),
            'U' | '\u{12}' | '\u{19}' | 'u' => {}
            'V' => print_version(),
            'J' => {}
            _ => {}
        }
    }
    let mut operands = p.args.clone();
    if !have_pat {
        if operands.is_empty() {
            let stderr = std::io::stderr();
            use std::io::Write;
            let _ = writeln!(stderr.lock(), "Usage: grep [OPTION]... PATTERNS [FILE]...\nTry 'grep --help' for more information.");
            return 2;
        }
        patterns.extend(operands.remove(0).split('\n').map(|s| s.to_string()));
    }
    let pats: Vec<String> = if fixed { patterns.iter().map(|p| escape_fixed(p)).collect() } else { patterns.clone() };
    let syn = if fixed { Syntax::Basic } else { syntax };
    let re = if pats.is_empty() {
        // no patterns at all (e.g. empty -f file): matches nothing
        Regex::new_multi(&["\\(x\\)\\1y\\`".to_string()], Syntax::Basic, false, false, false).unwrap()
    } else {
        match Regex::new_multi(&pats, syn, icase, word, linex) {
            Ok(r) => r,
            Err(e) => die(2, &e),
        }
    };
    let after = after.or(ctx).unwrap_or(0);
    let before = before.or(ctx).unwrap_or(0);
    if w.recursive && operands.is_empty() {
        // search the working directory, naming files relative to it
    }
    let recursive_default = w.recursive && operands.is_empty();
    let files: Vec<String> = if operands.is_empty() { if w.recursive { vec![".".into()] } else { vec!["-".into()] } } else { operands.clone() };
    let multi = files.len() > 1 || w.recursive;
    let mut g = G {
        re,
        invert,
        count,
        files_with: fw,
        files_without: fwo,
        only,
        quiet,
        no_msgs: nomsg,
        with_name: with_name.unwrap_or(multi),
        line_no: lineno,
        byte_off: boff,
        max,
        line_base: 0,
        byte_base: 0,
        after,
        before,
        eol,
        null_after_name: null,
        binary_mode: binary,
        label,
        initial_tab: tab,
        any_selected: false,
        error: false,
        printed_sep_needed: false,
    };
    for f in &files {
        if g.quiet && g.any_selected {
            break;
        }
        if f == "-" && g.before == 0 && g.after == 0 {
            // Without context lines, standard input is searched in line-aligned chunks, so an
            // endless producer (`yes | grep y | head`) streams instead of filling memory.
            let name = g.label.clone();
            let c = grep_stream(&mut g, &name);
            g.report(&name, c);
            continue;
        }
        if f == "-" {
            let mut d = Vec::new();
            use std::io::Read;
            if let Err(e) = std::io::stdin().read_to_end(&mut d) {
                if !g.no_msgs {
                    err(&format!("(standard input): {}", ioerr(&e)));
                }
                g.error = true;
                continue;
            }
            let name = g.label.clone();
            let c = g.search(&d, &name);
            g.report(&name, c);
            continue;
        }
        let display = if recursive_default { String::new() } else { f.clone() };
        if recursive_default {
            grep_path(&mut g, &w, ".", &display, true);
        } else {
            grep_path(&mut g, &w, f, &display, true);
        }
    }
    if g.error && !(g.quiet && g.any_selected) {
        return 2;
    }
    if g.any_selected {
        0
    } else {
        1
    }
}
