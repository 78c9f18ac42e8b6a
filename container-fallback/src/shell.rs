//! How a session's shell state crosses into a container command and back.
//!
//! A session is one shell whichever route runs its commands, but the wasm route keeps its state
//! host-side (cwd, variables, which are exported, `$?`). So a container command is a fresh
//! `bash` that is handed that state, runs the command line, and reports the state it ends with
//! on fd 3 (from an `EXIT` trap, so an `exit` in the command is reported too). Functions and
//! aliases, which only bash has, are kept in a per-session file inside the container.
//! A fresh bash per command also means an `exit`, a `set -e` or a stray `exec` can never kill
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
}

/// Where the agent's state dir is inside the container; session files live under it.
pub const STATE_DIR: &str = "/.hybox/state";

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

/// The file keeping a session's functions and aliases inside the container.
#[must_use]
pub fn functions_file(session: &str) -> String {
    format!("{STATE_DIR}/session-{}.sh", hex::encode(session.as_bytes()))
}

/// The program and arguments that run `command` in a bash handed `state` for session
/// `session`; the bash reports its final state on fd 3 (parse it with [`parse_report`]).
#[must_use]
pub fn wrap(command: &str, state: &SessionState, session: &str) -> Vec<String> {
    let mut s = String::with_capacity(1024);
    let fns = functions_file(session);
    s.push_str("__hybox_fns=");
    s.push_str(&quote(&fns));
    // The session's functions and aliases first: the wrapper's own functions, saved with them,
    // are then defined again below.
    s.push_str(
        "\n[ -r \"$__hybox_fns\" ] && . \"$__hybox_fns\" 2>/dev/null\nshopt -s expand_aliases\n",
    );
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
} >&3 2>/dev/null
{ declare -f; alias -p; } > "$__hybox_fns" 2>/dev/null
exec 3>&-
exit "$__hybox_rc"
}
"#,
    );
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
    // Variables the image exports but the session does not have: the session decides.
    s.push_str("cd -- ");
    s.push_str(&quote(&state.cwd));
    s.push_str(" || exit 1\n");
    s.push_str("trap __hybox_report EXIT\n");
    s.push_str("__hybox_cmd=$1\nset --\n");
    // `$?` for the command, set without a subshell (every fork is a millisecond here).
    s.push_str(&format!(
        "__hybox_status() {{ return \"$1\"; }}\n__hybox_status {}\n",
        state.last_status.clamp(0, 255)
    ));
    s.push_str("eval \"$__hybox_cmd\"\n");
    let _ = command;
    vec![
        "/bin/bash".to_owned(),
        "--noprofile".to_owned(),
        "--norc".to_owned(),
        "-c".to_owned(),
        s,
        "bash".to_owned(),
        command.to_owned(),
    ]
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
    fn wrap_hands_state_to_bash() {
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
        };
        let argv = wrap("echo $X", &st, "default");
        assert_eq!(argv[0], "/bin/bash");
        assert_eq!(argv.last().map(String::as_str), Some("echo $X"));
        let script = &argv[4];
        assert!(script.contains(r"export X='it'\''s'"));
        assert!(script.contains("\nY='2'\n"));
        assert!(script.contains("cd -- '/workspace/a b'"));
        assert!(script.contains("__hybox_status 3\n"));
    }

    /// Runs a wrapped command in the host's bash (the same script the container runs), with
    /// the functions file under `dir`.
    fn run_bash(dir: &std::path::Path, command: &str, st: &SessionState) -> (String, Report) {
        let argv = wrap(command, st, "s1");
        let fns = functions_file("s1");
        let script = argv[4].replace(&fns, &dir.join("fns.sh").display().to_string());
        let report = dir.join("report");
        let out = std::process::Command::new("/bin/bash")
            .arg("-c")
            .arg(r#"exec 3>"$0"; exec "$@""#)
            .arg(&report)
            .args(&argv[..4])
            .arg(script)
            .args(&argv[5..])
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
