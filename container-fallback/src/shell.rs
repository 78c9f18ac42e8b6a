//! How a session's shell state crosses into a container command and back.
//!
//! A session is one shell whichever route runs its commands, but the wasm route keeps its state
//! host-side (cwd, variables, which are exported, `$?`). So a container command is a fresh
//! `bash` that is handed that state, runs the command line, and reports the state it ends with
//! on fd 3 (from an `EXIT` trap, so an `exit` in the command is reported too). Functions and
//! aliases, which only bash has, travel with the state in bash's own `declare -f; alias -p`
//! form. A fresh bash per command also means an `exit`, a `set -e` or a stray `exec` can never kill
//! the session, and a background job (`server &`) outlives its command as it would in a shell.

use std::collections::{BTreeMap, BTreeSet};

/// The state a command starts from and the state it ends with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionState {
    /// Working directory (a container path).
    pub cwd: String,
    /// Shell variables.
    pub vars: BTreeMap<String, String>,
    /// The exported ones.
    pub exported: BTreeSet<String>,
    /// `$?` before the command; after it, its exit status.
    pub last_status: i32,
    /// Functions and aliases, as `declare -f; alias -p` print them.
    pub functions: String,
}

/// Variables bash sets or manages itself: never taken back into a session.
const BASH_OWN: &[&str] = &[
    "BASH",
    "BASHOPTS",
    "BASHPID",
    "BASH_ALIASES",
    "BASH_ARGC",
    "BASH_ARGV",
    "BASH_ARGV0",
    "BASH_CMDS",
    "BASH_COMMAND",
    "BASH_EXECUTION_STRING",
    "BASH_LINENO",
    "BASH_LOADABLES_PATH",
    "BASH_REMATCH",
    "BASH_SOURCE",
    "BASH_SUBSHELL",
    "BASH_VERSINFO",
    "BASH_VERSION",
    "COLUMNS",
    "COMP_WORDBREAKS",
    "DIRSTACK",
    "EPOCHREALTIME",
    "EPOCHSECONDS",
    "EUID",
    "FUNCNAME",
    "GROUPS",
    "HISTCMD",
    "HISTFILE",
    "HISTFILESIZE",
    "HISTSIZE",
    "HOSTNAME",
    "HOSTTYPE",
    "IFS",
    "LINENO",
    "LINES",
    "MACHTYPE",
    "MAILCHECK",
    "OLDPWD",
    "OPTERR",
    "OPTIND",
    "OSTYPE",
    "PIPESTATUS",
    "PPID",
    "PS1",
    "PS2",
    "PS4",
    "PWD",
    "RANDOM",
    "SECONDS",
    "SHELL",
    "SHELLOPTS",
    "SHLVL",
    "SRANDOM",
    "UID",
    "_",
];

/// Whether `name` is a variable a session may carry (a shell identifier that is not bash's own
/// and not the wrapper's).
#[must_use]
pub fn is_session_var(name: &str) -> bool {
    let mut chars = name.chars();
    let ident = chars
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric());
    ident && !name.starts_with("__hybox") && !BASH_OWN.contains(&name)
}

/// Quotes `s` for bash (single quotes; `'` as `'\''`).
#[must_use]
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The program and arguments every container command runs: a bash that sources the command
/// and the session state it starts from on fd 4 (pass [`tail`] as the exec's `tail`), runs the
/// command, and reports the state it ends with on fd 3 (parse it with [`parse_report`]).
///
/// The arguments are the same for every command of every session, so the bash can be started
/// before the command is known: the agent keeps a spare one `PREPARE`d, and a command that
/// finds it skips bash's start (see `AgentClient::prepare`).
#[must_use]
pub fn wrapper() -> Vec<String> {
    // The state and the command first (a pipe is read in 4 KiB blocks when sourced), then the
    // wrapper's own functions, defined after the session's so those cannot replace them.
    let mut s = String::from(". /dev/fd/4 2>/dev/null\nexec 4<&-\nshopt -s expand_aliases\n");
    // The report: everything NUL-separated, so values may hold newlines.
    s.push_str(
        r#"__hybox_report() {
__hybox_rc=$?
trap - EXIT
{ printf 'status\0%s\0cwd\0%s\0' "$__hybox_rc" "$PWD"
  printf 'decl\0'; declare -p; printf '\0'
  unset -f __hybox_status __hybox_report
  printf 'fns\0'; declare -f; alias -p; printf '\0'
} >&3 2>/dev/null
exec 3>&-
exit "$__hybox_rc"
}
cd -- "$__hybox_cwd" || exit 1
trap __hybox_report EXIT
__hybox_status() { return "$1"; }
__hybox_status "$__hybox_last"
eval "$__hybox_cmd"
"#,
    );
    vec![
        "/bin/bash".to_owned(),
        "--noprofile".to_owned(),
        "--norc".to_owned(),
        "-c".to_owned(),
        s,
        "bash".to_owned(),
    ]
}

/// How many started [`wrapper`]s the host keeps waiting in a running container. One: a second
/// helps only commands sent back to back faster than a bash starts (about a millisecond here),
/// and costs every idle container another bash (docs/containers.md has both measured).
pub const SPARES: u32 = 1;

/// The exec of [`wrapper`] in an image whose environment is `env`, reading `tail` (from
/// [`tail`]) on fd 4; without a tail, the spec to `PREPARE` a spare for such execs.
#[must_use]
pub fn exec_spec(env: Vec<(String, String)>, tail: Option<Vec<u8>>) -> crate::agent::ExecSpec {
    crate::agent::ExecSpec {
        argv: wrapper(),
        env,
        cwd: "/".to_owned(),
        stdin: Vec::new(),
        state_fd: true,
        tail,
    }
}

/// What [`wrapper`] reads on fd 4: `command` and the session `state` it starts from, as a
/// script of assignments and the session's function and alias definitions.
#[must_use]
pub fn tail(command: &str, state: &SessionState) -> Vec<u8> {
    let mut s = String::with_capacity(256 + command.len() + state.functions.len());
    s.push_str("__hybox_cmd=");
    s.push_str(&quote(command));
    s.push_str("\n__hybox_cwd=");
    s.push_str(&quote(&state.cwd));
    s.push_str(&format!(
        "\n__hybox_last={}\n",
        state.last_status.clamp(0, 255)
    ));
    // Variables the image exports but the session does not have: the session decides.
    for (k, v) in &state.vars {
        if !is_session_var(k) {
            continue;
        }
        if state.exported.contains(k) {
            s.push_str("export ");
        }
        s.push_str(k);
        s.push('=');
        s.push_str(&quote(v));
        s.push('\n');
    }
    s.push_str(&state.functions);
    s.push('\n');
    s.into_bytes()
}

/// What a command's report says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Its exit status.
    pub status: Option<i32>,
    /// Its final working directory.
    pub cwd: Option<String>,
    /// Every variable it ended with.
    pub vars: BTreeMap<String, String>,
    /// The exported ones.
    pub exported: BTreeSet<String>,
    /// Its functions and aliases.
    pub functions: Option<String>,
}

/// Parses the fd-3 report of a wrapped command. `None` when there is none (the command was
/// killed before its `EXIT` trap ran): the session then keeps its state.
#[must_use]
pub fn parse_report(bytes: &[u8]) -> Option<Report> {
    if bytes.is_empty() {
        return None;
    }
    let mut fields = bytes.split(|b| *b == 0);
    let mut r = Report::default();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    while let Some(tag) = fields.next() {
        match tag {
            b"status" => r.status = fields.next().and_then(|v| text(v).parse().ok()),
            b"cwd" => r.cwd = fields.next().map(text),
            b"decl" => {
                let (vars, exported) = parse_declare(fields.next()?)?;
                r.vars = vars;
                r.exported = exported;
            }
            b"fns" => r.functions = fields.next().map(text),
            b"" => {}
            _ => return None,
        }
    }
    r.status?;
    Some(r)
}

/// Parses what `declare -p` prints: one `declare -FLAGS NAME[=VALUE]` per line, values in
/// double quotes (`\` before `"`, `\`, `$` and `` ` ``) or, when they hold control characters,
/// in `$'...'` (C escapes). Arrays, namerefs and variables without a value (declared but unset,
/// or bash's dynamic ones) are left out. Returns the variables and the exported names.
fn parse_declare(text: &[u8]) -> Option<(BTreeMap<String, String>, BTreeSet<String>)> {
    let mut vars = BTreeMap::new();
    let mut exported = BTreeSet::new();
    let mut rest = text;
    while !rest.is_empty() {
        rest = rest.strip_prefix(b"declare -")?;
        let sp = rest.iter().position(|b| *b == b' ')?;
        let flags = &rest[..sp];
        rest = &rest[sp + 1..];
        let end = rest
            .iter()
            .position(|b| matches!(b, b'=' | b'\n'))
            .unwrap_or(rest.len());
        let name = String::from_utf8_lossy(&rest[..end]).into_owned();
        rest = &rest[end..];
        let value = match rest.first() {
            Some(b'=') => {
                let (value, after) = declare_value(&rest[1..])?;
                rest = after;
                Some(value)
            }
            _ => None,
        };
        rest = rest.strip_prefix(b"\n").unwrap_or(rest);
        let skipped = flags.iter().any(|f| matches!(f, b'a' | b'A' | b'n'));
        if let (Some(value), false) = (value, skipped) {
            if flags.contains(&b'x') {
                exported.insert(name.clone());
            }
            vars.insert(name, String::from_utf8_lossy(&value).into_owned());
        }
    }
    Some((vars, exported))
}

/// One quoted value of `declare -p` and what follows it; `None` when it is not one.
fn declare_value(s: &[u8]) -> Option<(Vec<u8>, &[u8])> {
    let mut out = Vec::new();
    if let Some(body) = s.strip_prefix(b"\"") {
        let mut i = 0;
        while i < body.len() {
            match body[i] {
                b'"' => return Some((out, &body[i + 1..])),
                b'\\' if matches!(body.get(i + 1), Some(b'"' | b'\\' | b'$' | b'`')) => {
                    out.push(body[i + 1]);
                    i += 2;
                }
                c => {
                    out.push(c);
                    i += 1;
                }
            }
        }
        return None;
    }
    if let Some(body) = s.strip_prefix(b"$'") {
        let mut i = 0;
        while i < body.len() {
            match body[i] {
                b'\'' => return Some((out, &body[i + 1..])),
                b'\\' => {
                    let (bytes, used) = c_escape(&body[i + 1..])?;
                    out.extend(bytes);
                    i += 1 + used;
                }
                c => {
                    out.push(c);
                    i += 1;
                }
            }
        }
        return None;
    }
    // An array or anything else unquoted: up to the end of the line.
    let end = s.iter().position(|b| *b == b'\n').unwrap_or(s.len());
    Some((s[..end].to_vec(), &s[end..]))
}

/// The bytes of the C escape `s` starts with (after its backslash), and how many bytes it took.
fn c_escape(s: &[u8]) -> Option<(Vec<u8>, usize)> {
    let c = *s.first()?;
    let simple = match c {
        b'a' => Some(7),
        b'b' => Some(8),
        b'e' | b'E' => Some(27),
        b'f' => Some(12),
        b'n' => Some(b'\n'),
        b'r' => Some(b'\r'),
        b't' => Some(b'\t'),
        b'v' => Some(11),
        b'\\' | b'\'' | b'"' | b'?' => Some(c),
        _ => None,
    };
    if let Some(b) = simple {
        return Some((vec![b], 1));
    }
    let digits = |radix: u32, max: usize, from: usize| -> (u32, usize) {
        let mut v = 0u32;
        let mut n = 0;
        while n < max {
            match s.get(from + n).and_then(|d| char::from(*d).to_digit(radix)) {
                Some(d) => {
                    v = v * radix + d;
                    n += 1;
                }
                None => break,
            }
        }
        (v, n)
    };
    match c {
        b'0'..=b'7' => {
            let (v, n) = digits(8, 3, 0);
            Some((vec![(v & 0xff) as u8], n))
        }
        b'x' => {
            let (v, n) = digits(16, 2, 1);
            (n > 0).then(|| (vec![(v & 0xff) as u8], 1 + n))
        }
        b'u' | b'U' => {
            let (v, n) = digits(16, if c == b'u' { 4 } else { 8 }, 1);
            let ch = char::from_u32(v).filter(|_| n > 0)?;
            Some((ch.to_string().into_bytes(), 1 + n))
        }
        b'c' => s.get(1).map(|x| (vec![x & 0x1f], 2)),
        // Not an escape bash writes: kept as it is.
        _ => Some((vec![b'\\', c], 1)),
    }
}

/// The session state after a command that started from `before` and reported `report`, with
/// `base` the environment the container gives every process (the image's): variables the
/// command did not touch that only come from `base` stay out of the session.
#[must_use]
pub fn apply_report(
    before: &SessionState,
    report: &Report,
    base: &[(String, String)],
) -> SessionState {
    let mut after = SessionState {
        cwd: report.cwd.clone().unwrap_or_else(|| before.cwd.clone()),
        vars: BTreeMap::new(),
        exported: BTreeSet::new(),
        last_status: report.status.unwrap_or(before.last_status),
        functions: report
            .functions
            .clone()
            .unwrap_or_else(|| before.functions.clone()),
    };
    for (k, v) in &report.vars {
        if !is_session_var(k) {
            continue;
        }
        let from_base = base.iter().any(|(bk, bv)| bk == k && bv == v);
        if from_base && !before.vars.contains_key(k) {
            continue;
        }
        after.vars.insert(k.clone(), v.clone());
        if report.exported.contains(k) {
            after.exported.insert(k.clone());
        }
    }
    after
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_every_byte_but_nul() {
        assert_eq!(quote("a'b"), r"'a'\''b'");
        assert_eq!(quote(""), "''");
    }

    #[test]
    fn session_vars_exclude_bash_and_wrapper_names() {
        assert!(is_session_var("FOO"));
        assert!(is_session_var("_x1"));
        assert!(!is_session_var("PWD"));
        assert!(!is_session_var("__hybox_cmd"));
        assert!(!is_session_var("1A"));
        assert!(!is_session_var("A-B"));
    }

    #[test]
    fn report_round_trip_and_base_filter() {
        let raw = b"status\x002\x00cwd\x00/workspace/x\x00decl\x00declare -x FOO=$'a\\nb'\ndeclare -x PATH=\"/bin\"\ndeclare -- LOCAL=\"1\"\ndeclare -x PWD=\"/w\"\n\x00";
        let r = parse_report(raw).expect("parses");
        assert_eq!(r.status, Some(2));
        assert_eq!(r.cwd.as_deref(), Some("/workspace/x"));
        let before = SessionState {
            cwd: "/workspace".into(),
            ..SessionState::default()
        };
        let after = apply_report(&before, &r, &[("PATH".into(), "/bin".into())]);
        assert_eq!(after.last_status, 2);
        assert_eq!(after.cwd, "/workspace/x");
        assert_eq!(after.vars.get("FOO").map(String::as_str), Some("a\nb"));
        assert!(after.exported.contains("FOO"));
        assert_eq!(after.vars.get("LOCAL").map(String::as_str), Some("1"));
        assert!(!after.exported.contains("LOCAL"));
        assert!(!after.vars.contains_key("PATH"), "image env stays out");
        assert!(!after.vars.contains_key("PWD"));
        assert_eq!(parse_report(b""), None);
        assert_eq!(parse_report(b"bogus\0"), None);
    }

    #[test]
    fn declare_p_is_read_back_exactly() {
        // What bash 5.2 prints for these (see the real-bash test below for the round trip).
        let text = concat!(
            "declare -- A=\"x y\"\n",
            "declare -- B=$'a\\nb\\tc'\n",
            "declare -- C=\"q\\\"uo\\$te\\\\back\\`t\"\n",
            "declare -- D=\"h\u{e9}llo\"\n",
            "declare -- E=$'\\001ctl\\x7f\\u00e9\\''\n",
            "declare -x F=\"1\"\n",
            "declare -i G=\"5\"\n",
            "declare -a H=([0]=\"1\" [1]=\"2\")\n",
            "declare -A I=([k]=\"v\" )\n",
            "declare -- J\n",
            "declare -x OLDPWD\n",
            "declare -- K=\"\"\n",
            "declare -n R=\"A\"\n",
            "declare -ir UID=\"0\"\n",
        );
        let (vars, exported) = parse_declare(text.as_bytes()).expect("parses");
        let get = |k: &str| vars.get(k).map(String::as_str);
        assert_eq!(get("A"), Some("x y"));
        assert_eq!(get("B"), Some("a\nb\tc"));
        assert_eq!(get("C"), Some("q\"uo$te\\back`t"));
        assert_eq!(get("D"), Some("h\u{e9}llo"));
        assert_eq!(get("E"), Some("\u{1}ctl\u{7f}\u{e9}'"));
        assert_eq!(get("G"), Some("5"));
        assert_eq!(get("K"), Some(""));
        assert_eq!(get("UID"), Some("0"));
        for absent in ["H", "I", "J", "OLDPWD", "R"] {
            assert_eq!(get(absent), None, "{absent}");
        }
        assert_eq!(exported, ["F".to_owned()].into_iter().collect());
        assert_eq!(parse_declare(b"declare -- X=\"open\n"), None);
        assert_eq!(parse_declare(b"nonsense\n"), None);
    }

    #[test]
    fn the_tail_hands_state_to_a_fixed_wrapper() {
        let st = SessionState {
            cwd: "/workspace/a b".into(),
            vars: [
                ("X".to_owned(), "it's".to_owned()),
                ("Y".to_owned(), "2".to_owned()),
            ]
            .into_iter()
            .collect(),
            exported: ["X".to_owned()].into_iter().collect(),
            last_status: 3,
            functions: "f () \n{ \n    echo f\n}\n".into(),
        };
        let argv = wrapper();
        assert_eq!(argv[0], "/bin/bash");
        assert_eq!(argv.len(), 6);
        assert!(argv[4].starts_with(". /dev/fd/4"));
        let tail = String::from_utf8(tail("echo 'hi'", &st)).expect("utf-8");
        assert!(tail.starts_with(r"__hybox_cmd='echo '\''hi'\'''"), "{tail}");
        assert!(tail.contains(r"export X='it'\''s'"));
        assert!(tail.contains("\nY='2'\n"));
        assert!(tail.contains("__hybox_cwd='/workspace/a b'\n"));
        assert!(tail.contains("__hybox_last=3\n"));
        assert!(tail.contains("f () \n{"));
    }

    /// Runs a command through the wrapper in the host's bash (the script the container runs).
    fn run_bash(dir: &std::path::Path, command: &str, st: &SessionState) -> (String, Report) {
        let argv = wrapper();
        let report = dir.join("report");
        let tail_file = dir.join("tail");
        std::fs::write(&tail_file, tail(command, st)).expect("tail");
        let out = std::process::Command::new("/bin/bash")
            .arg("-c")
            .arg(r#"exec 3>"$0" 4<"$1"; shift; exec "$@""#)
            .arg(&report)
            .arg(&tail_file)
            .args(&argv)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .output()
            .expect("bash runs");
        let bytes = std::fs::read(&report).expect("report written");
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            parse_report(&bytes).expect("report parses"),
        )
    }

    #[test]
    fn state_persists_across_real_bash_runs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = [("PATH".to_owned(), "/usr/bin:/bin".to_owned())];
        let st0 = SessionState {
            cwd: "/".into(),
            ..SessionState::default()
        };
        let (_, r) = run_bash(
            dir.path(),
            "cd /tmp && export A='x y' && B=2 && f() { echo \"f:$1\"; } && alias g='echo g' && N=$'l1\\nl2\\t\\001' && Q=\"\\\"\\$\\`\\\\'\" && U='h\u{e9}' && declare -a ARR=(1 2) && false",
            &st0,
        );
        let st1 = apply_report(&st0, &r, &base);
        assert_eq!(st1.cwd, "/tmp");
        assert_eq!(st1.last_status, 1);
        assert_eq!(st1.vars.get("A").map(String::as_str), Some("x y"));
        assert!(st1.exported.contains("A") && !st1.exported.contains("B"));
        assert_eq!(st1.vars.get("N").map(String::as_str), Some("l1\nl2\t\u{1}"));
        assert_eq!(st1.vars.get("Q").map(String::as_str), Some("\"$`\\'"));
        assert_eq!(st1.vars.get("U").map(String::as_str), Some("h\u{e9}"));
        assert!(!st1.vars.contains_key("ARR"));
        assert!(!st1.vars.contains_key("PATH"));
        assert!(st1.functions.contains("f ()"), "{}", st1.functions);
        assert!(st1.functions.contains("alias g='echo g'"));
        assert!(!st1.functions.contains("__hybox"), "{}", st1.functions);
        let (out, r) = run_bash(
            dir.path(),
            "echo \"$? $A $B $(pwd)\"; f 1; g; env | grep -c '^B=' ; exit 7",
            &st1,
        );
        assert_eq!(out, "1 x y 2 /tmp\nf:1\ng\n0\n");
        let st2 = apply_report(&st1, &r, &base);
        assert_eq!(st2.last_status, 7);
        assert_eq!(st2.vars, st1.vars);
        let (_, r) = run_bash(dir.path(), "unset A; cd /nonexistent-dir", &st2);
        let st3 = apply_report(&st2, &r, &base);
        assert!(!st3.vars.contains_key("A"));
        assert_eq!(st3.cwd, "/tmp");
        assert_eq!(st3.last_status, 1);
    }
}
