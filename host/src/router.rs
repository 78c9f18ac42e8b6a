//! The router decides, once per request and before anything runs, which route takes it, and
//! says why when it declines the wasm route.
//!
//! For `exec` this version accepts interpreter programs (`python3 -c`, `python3 file.py`,
//! `python3 -m mod`, `node file.js`, `node -e`), optionally preceded by `NAME=value`
//! assignments. Shell syntax (pipes, redirections, `&&`, substitutions) and other programs are
//! declined with a reason; the shell planner and the container route take those later.

use hybox_wasi_runtime::{Program, PythonProgram};

/// The router's decision for a command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Run on the wasm route.
    Wasi {
        /// Assignments before the program (`FOO=1 python3 ...`).
        env: Vec<(String, String)>,
        /// What to run; file paths are still relative to the session's cwd.
        program: Program,
    },
    /// The wasm route cannot run it.
    Decline(String),
}

/// The explicit `runtime` option of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeChoice {
    /// Wasm when it can, else the container.
    #[default]
    Auto,
    /// Wasm or an error.
    Wasi,
    /// The container.
    Container,
}

/// The first shell metacharacter outside quotes, if any: its presence means a real shell is
/// needed, which this planner does not provide.
fn shell_syntax(command: &str) -> Option<String> {
    let mut chars = command.chars().peekable();
    let (mut single, mut double) = (false, false);
    while let Some(c) = chars.next() {
        match c {
            '\\' if !single => {
                chars.next();
            }
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '$' | '`' if !single => {
                return Some(match chars.peek() {
                    Some('(') => "uses command substitution".into(),
                    _ if c == '`' => "uses command substitution".into(),
                    _ => "uses variable expansion".into(),
                });
            }
            '|' | '&' | ';' | '<' | '>' | '(' | ')' | '\n' if !single && !double => {
                return Some(format!("uses shell operator '{c}'"));
            }
            '*' | '?' | '[' | '~' if !single && !double => {
                return Some(format!("uses glob or tilde '{c}'"));
            }
            _ => {}
        }
    }
    None
}

fn is_assignment(word: &str) -> Option<(String, String)> {
    let (name, value) = word.split_once('=')?;
    let mut bytes = name.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
    (first_ok && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        .then(|| (name.to_owned(), value.to_owned()))
}

/// Plans a command line.
#[must_use]
pub fn plan(command: &str) -> Plan {
    if command.trim().is_empty() {
        return Plan::Decline("empty command".into());
    }
    if let Some(reason) = shell_syntax(command) {
        return Plan::Decline(reason);
    }
    let Some(words) = shlex::split(command) else {
        return Plan::Decline("unbalanced quotes".into());
    };
    let mut env = Vec::new();
    let mut rest = words.as_slice();
    while let Some((first, tail)) = rest.split_first() {
        match is_assignment(first) {
            Some(kv) => {
                env.push(kv);
                rest = tail;
            }
            None => break,
        }
    }
    let Some((program, args)) = rest.split_first() else {
        return Plan::Decline("only variable assignments (a shell builtin)".into());
    };
    let name = program.rsplit('/').next().unwrap_or(program);
    let planned = match name {
        "python" | "python3" | "python3.15" => plan_python(program, args),
        "node" | "nodejs" | "qjs" => plan_node(args),
        other => Err(format!("uses program {other}")),
    };
    match planned {
        Ok(program) => Plan::Wasi { env, program },
        Err(reason) => Plan::Decline(reason),
    }
}

fn plan_python(argv0: &str, args: &[String]) -> Result<Program, String> {
    let mut i = 0;
    // Flags that change nothing observable in this interpreter are accepted and ignored.
    while let Some(flag) = args.get(i) {
        match flag.as_str() {
            "-u" | "-B" | "-E" | "-s" | "-S" | "-I" | "-q" => i += 1,
            _ => break,
        }
    }
    let rest = &args[i..];
    let Some(first) = rest.first() else {
        return Err("python without a program (interactive mode needs a terminal)".into());
    };
    let (program, argv) = match first.as_str() {
        "-c" => {
            let code = rest.get(1).ok_or("python -c needs an argument")?;
            let mut argv = vec!["-c".to_owned()];
            argv.extend(rest[2..].iter().cloned());
            (PythonProgram::Code(code.clone()), argv)
        }
        "-m" => {
            let module = rest.get(1).ok_or("python -m needs a module")?;
            let mut argv = vec![module.clone()];
            argv.extend(rest[2..].iter().cloned());
            (PythonProgram::Module(module.clone()), argv)
        }
        "-" => return Err("python reading a program from stdin".into()),
        flag if flag.starts_with('-') => return Err(format!("uses python option {flag}")),
        file => (PythonProgram::File(file.to_owned()), rest.to_vec()),
    };
    let _ = argv0;
    Ok(Program::Python { argv, program })
}

fn plan_node(args: &[String]) -> Result<Program, String> {
    let Some(first) = args.first() else {
        return Err("node without a program (interactive mode needs a terminal)".into());
    };
    match first.as_str() {
        "-e" | "--eval" => {
            let code = args.get(1).ok_or("node -e needs an argument")?;
            let mut v = vec!["-e".to_owned(), code.clone()];
            v.extend(args[2..].iter().cloned());
            Ok(Program::JavaScript { args: v })
        }
        "-p" | "--print" => Err("uses node option -p".into()),
        flag if flag.starts_with('-') => Err(format!("uses node option {flag}")),
        _ => Ok(Program::JavaScript {
            args: args.to_vec(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decline(cmd: &str) -> String {
        match plan(cmd) {
            Plan::Decline(r) => r,
            other => panic!("{cmd}: expected a decline, got {other:?}"),
        }
    }

    #[test]
    fn interpreter_programs_run_in_wasm() {
        let cases: &[(&str, Program)] = &[
            (
                "python3 -c 'print(1)'",
                Program::Python {
                    argv: vec!["-c".into()],
                    program: PythonProgram::Code("print(1)".into()),
                },
            ),
            (
                "python main.py a 'b c'",
                Program::Python {
                    argv: vec!["main.py".into(), "a".into(), "b c".into()],
                    program: PythonProgram::File("main.py".into()),
                },
            ),
            (
                "python3 -u -m json.tool x.json",
                Program::Python {
                    argv: vec!["json.tool".into(), "x.json".into()],
                    program: PythonProgram::Module("json.tool".into()),
                },
            ),
            (
                "node app.js --port 1",
                Program::JavaScript {
                    args: vec!["app.js".into(), "--port".into(), "1".into()],
                },
            ),
            (
                "node -e \"console.log(1 + 1)\"",
                Program::JavaScript {
                    args: vec!["-e".into(), "console.log(1 + 1)".into()],
                },
            ),
        ];
        for (cmd, want) in cases {
            match plan(cmd) {
                Plan::Wasi { program, env } => {
                    assert_eq!(&program, want, "{cmd}");
                    assert!(env.is_empty());
                }
                other => panic!("{cmd}: {other:?}"),
            }
        }
        match plan("FOO=1 BAR=x python3 -c 'import os'") {
            Plan::Wasi { env, .. } => assert_eq!(
                env,
                vec![("FOO".into(), "1".into()), ("BAR".into(), "x".into())]
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn declines_say_why() {
        assert_eq!(decline("gcc hello.c"), "uses program gcc");
        assert_eq!(decline("apt-get install x"), "uses program apt-get");
        assert_eq!(decline("ls | wc -l"), "uses shell operator '|'");
        assert_eq!(decline("python3 a.py > out"), "uses shell operator '>'");
        assert_eq!(
            decline("python3 a.py && echo ok"),
            "uses shell operator '&'"
        );
        assert_eq!(decline("echo $(id)"), "uses command substitution");
        assert_eq!(decline("echo $HOME"), "uses variable expansion");
        assert_eq!(decline("python3 'unterminated"), "unbalanced quotes");
        assert_eq!(decline("   "), "empty command");
        assert_eq!(
            decline("python3"),
            "python without a program (interactive mode needs a terminal)"
        );
        assert_eq!(decline("python3 -X dev a.py"), "uses python option -X");
        assert_eq!(
            decline("FOO=1"),
            "only variable assignments (a shell builtin)"
        );
        assert_eq!(decline("ls *.py"), "uses glob or tilde '*'");
    }

    #[test]
    fn quoted_metacharacters_are_plain_text() {
        assert!(matches!(
            plan("python3 -c 'print(\"a|b; c > d\")'"),
            Plan::Wasi { .. }
        ));
        assert!(matches!(
            plan("python3 -c 'x = \"$HOME\"'"),
            Plan::Wasi { .. }
        ));
    }
}
