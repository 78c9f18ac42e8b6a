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
  for __hybox_n in ${!A*} ${!B*} ${!C*} ${!D*} ${!E*} ${!F*} ${!G*} ${!H*} ${!I*} ${!J*} ${!K*} ${!L*} ${!M*} ${!N*} ${!O*} ${!P*} ${!Q*} ${!R*} ${!S*} ${!T*} ${!U*} ${!V*} ${!W*} ${!X*} ${!Y*} ${!Z*} ${!a*} ${!b*} ${!c*} ${!d*} ${!e*} ${!f*} ${!g*} ${!h*} ${!i*} ${!j*} ${!k*} ${!l*} ${!m*} ${!n*} ${!o*} ${!p*} ${!q*} ${!r*} ${!s*} ${!t*} ${!u*} ${!v*} ${!w*} ${!x*} ${!y*} ${!z*} ${!_*}; do
    case $__hybox_n in __hybox*) continue;; esac
    __hybox_a=${!__hybox_n@a}
    case $__hybox_a in *[aA]*) continue;; esac
    printf 'var\0%s\0%s\0' "$__hybox_n" "${!__hybox_n}"
    case $__hybox_a in *x*) printf 'exp\0%s\0' "$__hybox_n";; esac
  done
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
            b"var" => {
                let (Some(k), Some(v)) = (fields.next(), fields.next()) else {
                    return None;
                };
                r.vars.insert(text(k), text(v));
            }
            b"fns" => r.functions = fields.next().map(text),
            b"exp" => {
                if let Some(k) = fields.next() {
                    r.exported.insert(text(k));
                }
            }
            b"" => {}
            _ => return None,
        }
    }
    r.status?;
    Some(r)
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
        let raw = b"status\x002\x00cwd\x00/workspace/x\x00var\x00FOO\x00a\nb\x00var\x00PATH\x00/bin\x00var\x00LOCAL\x001\x00var\x00PWD\x00/w\x00exp\x00FOO\x00exp\x00PATH\x00";
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
            "cd /tmp && export A='x y' && B=2 && f() { echo \"f:$1\"; } && alias g='echo g' && false",
            &st0,
        );
        let st1 = apply_report(&st0, &r, &base);
        assert_eq!(st1.cwd, "/tmp");
        assert_eq!(st1.last_status, 1);
        assert_eq!(st1.vars.get("A").map(String::as_str), Some("x y"));
        assert!(st1.exported.contains("A") && !st1.exported.contains("B"));
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
