//! Which programs the wasm route provides, and how a command's words become a guest run.

use crate::context::Program;
use crate::python::PythonProgram;

/// Commands the toolbox guest implements (`wasi-runtime/guests/toolbox`).
pub const TOOLBOX_COMMANDS: &[&str] = &[
    "echo", "printf", "cat", "ls", "head", "tail", "wc", "grep", "egrep", "fgrep", "sort", "uniq",
    "cut", "tr", "mkdir", "rm", "rmdir", "cp", "mv", "touch", "pwd", "env", "seq", "sleep", "true",
    "false", "basename", "dirname", "find", "test", "[", "stat", "du", "date", "which", "yes",
    "tee",
];

/// Interpreters the wasm route runs as programs.
pub const INTERPRETERS: &[&str] = &["python", "python3", "python3.15", "node", "nodejs"];

/// How a command runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stage {
    /// A toolbox command: argv as given.
    Toolbox(Vec<String>),
    /// An interpreter program.
    Program(Program),
}

/// The last path component of a command name (`/usr/bin/ls` → `ls`).
#[must_use]
pub fn command_name(word: &str) -> &str {
    word.rsplit('/').next().unwrap_or(word)
}

/// Resolves expanded words (`words[0]` the command) to a stage, or says why it cannot run.
pub(crate) fn stage(words: &[String], has_toolbox: bool) -> Result<Stage, String> {
    let Some((first, args)) = words.split_first() else {
        return Err("empty command".into());
    };
    let name = command_name(first);
    match name {
        "python" | "python3" | "python3.15" => python(args).map(Stage::Program),
        "node" | "nodejs" => node(args).map(Stage::Program),
        n if TOOLBOX_COMMANDS.contains(&n) => {
            if !has_toolbox {
                return Err(format!(
                    "uses program {n} (the toolbox guest was not built)"
                ));
            }
            let mut argv = vec![n.to_owned()];
            argv.extend(args.iter().cloned());
            Ok(Stage::Toolbox(argv))
        }
        other => Err(format!("uses program {other}")),
    }
}

/// `python3 ARGS`: `-c CODE`, `-m MODULE`, `FILE` (flags that change nothing observable here
/// are accepted).
pub(crate) fn python(args: &[String]) -> Result<Program, String> {
    let mut i = 0;
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
    Ok(Program::Python { argv, program })
}

/// `node ARGS`: `FILE` or `-e CODE`.
pub(crate) fn node(args: &[String]) -> Result<Program, String> {
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
        flag if flag.starts_with('-') => Err(format!("uses node option {flag}")),
        _ => Ok(Program::JavaScript {
            args: args.to_vec(),
        }),
    }
}

/// Whether the wasm route provides `name` (for the planner).
#[must_use]
pub fn provides(name: &str, has_toolbox: bool) -> bool {
    let name = command_name(name);
    INTERPRETERS.contains(&name) || (has_toolbox && TOOLBOX_COMMANDS.contains(&name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn words_become_stages() {
        assert_eq!(
            stage(&w(&["/bin/ls", "-l"]), true),
            Ok(Stage::Toolbox(w(&["ls", "-l"])))
        );
        assert_eq!(
            stage(&w(&["ls"]), false).expect_err("refused"),
            "uses program ls (the toolbox guest was not built)"
        );
        assert_eq!(
            stage(&w(&["gcc", "x.c"]), true).expect_err("refused"),
            "uses program gcc"
        );
        assert_eq!(
            stage(&w(&["python3", "-u", "-c", "print(1)", "a"]), true),
            Ok(Stage::Program(Program::Python {
                argv: w(&["-c", "a"]),
                program: PythonProgram::Code("print(1)".into()),
            }))
        );
        assert_eq!(
            python(&w(&["-X", "dev"])).expect_err("refused"),
            "uses python option -X"
        );
        assert_eq!(
            node(&w(&["-e", "1", "x"])),
            Ok(Program::JavaScript {
                args: w(&["-e", "1", "x"])
            })
        );
        assert!(provides("python3", false) && provides("/usr/bin/node", false));
        assert!(provides("grep", true) && !provides("grep", false) && !provides("apt-get", true));
    }
}
