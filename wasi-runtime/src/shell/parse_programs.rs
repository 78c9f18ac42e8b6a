//! The planner's second pass: every program of a planned script, in order, must be a builtin or
//! one the wasm route provides.

use super::{BUILTINS, Planned, shorten};
use crate::shell::plan::{Script, SimpleCommand, Word, WordPart};

/// The builtins that change the session: `/usr/bin/cd` or `env cd` must not reach them.
const SESSION_BUILTINS: &[&str] = &["cd", "export", "unset", "exit"];

/// Folders whose programs are named by their basename: `/usr/bin/env python3` means `env`.
/// Any other path (`./build.sh`, `/opt/venv/bin/python`) is a program the route does not have.
const BIN_DIRS: &[&str] = &[
    "/bin/",
    "/usr/bin/",
    "/usr/local/bin/",
    "/sbin/",
    "/usr/sbin/",
    "/usr/local/sbin/",
];

const FROM_EXPANSION: &str = "program name from an expansion";

/// The second pass: every program, in order, must be a builtin or one `programs` provides.
pub(super) fn check_programs(script: &mut Script, programs: &dyn Fn(&str) -> bool) -> Planned<()> {
    for list in &mut script.lists {
        let pipelines =
            std::iter::once(&mut list.first).chain(list.rest.iter_mut().map(|r| &mut r.1));
        for pipeline in pipelines {
            for command in &mut pipeline.commands {
                check_command(command, programs)?;
            }
        }
    }
    Ok(())
}

/// Checks the program of one command. A program named by a path in a bin folder is rewritten to
/// its basename, the name the executor knows it by; `env A=1 prog args` is rewritten to
/// `A=1 prog args`, which means the same, because the toolbox's `env` cannot start programs.
fn check_command(command: &mut SimpleCommand, programs: &dyn Fn(&str) -> bool) -> Planned<()> {
    // What `env` runs is a program: it cannot reach the builtins that change the session.
    let mut session = true;
    while let Some(first) = command.words.first_mut() {
        let written = program_name(first)?;
        let name = resolve(&written, session, programs)?;
        if name != written {
            *first = Word(vec![WordPart::Literal {
                text: name.clone(),
                quoted: true,
            }]);
        }
        if name != "env" {
            break;
        }
        let at = match env_program(&command.words[1..]) {
            EnvRun::Nothing => break,
            EnvRun::Program { at, options: false } => at,
            EnvRun::Program { options: true, .. } => {
                return Err("uses env options with a program".into());
            }
            EnvRun::UnknownOption(option) => {
                return Err(format!("uses env option {}", shorten(&option)));
            }
        };
        let mut before = command.words.split_off(1);
        let program = before.split_off(at);
        for word in before {
            let (text, _) = leading_text(&word);
            if text != "--" {
                command.assignments.push(split_assignment(word)?);
            }
        }
        command.words = program;
        session = false;
    }
    Ok(())
}
/// The command name, if it is plain text: `"ls"` is `ls`, `$CMD`, `~/bin/x` and `l*` are not.
fn program_name(word: &Word) -> Planned<String> {
    let mut name = String::new();
    for part in &word.0 {
        match part {
            WordPart::Literal { text, quoted } => {
                // `[` alone is the test command: an unclosed bracket is no pattern.
                if !quoted && text != "[" && text.contains(['*', '?', '[']) {
                    return Err(FROM_EXPANSION.into());
                }
                name.push_str(text);
            }
            _ => return Err(FROM_EXPANSION.into()),
        }
    }
    if name.is_empty() {
        return Err("empty program name".into());
    }
    Ok(name)
}

/// The name to run `name` as: itself, or the basename of a path in a bin folder. `session` is
/// whether the builtins that change the session may be meant.
fn resolve(name: &str, session: bool, programs: &dyn Fn(&str) -> bool) -> Planned<String> {
    let declined = |name: &str| Err(format!("uses program {}", shorten(name)));
    let builtin =
        |name: &str| BUILTINS.contains(&name) && (session || !SESSION_BUILTINS.contains(&name));
    if !name.contains('/') {
        if builtin(name) || programs(name) {
            return Ok(name.to_owned());
        }
        return declined(name);
    }
    let base = BIN_DIRS
        .iter()
        .find_map(|dir| name.strip_prefix(dir))
        .filter(|base| !base.is_empty() && !base.contains('/'));
    let Some(base) = base else {
        // `./build.sh`, `/opt/venv/bin/python`: not a program the route has.
        return declined(name);
    };
    // `/usr/bin/cd` is a program, not the shell's `cd`.
    if (!SESSION_BUILTINS.contains(&base) && builtin(base)) || programs(base) {
        return Ok(base.to_owned());
    }
    declined(base)
}

/// What `env`'s arguments ask for.
enum EnvRun {
    /// No program: `env` prints the environment (`env | grep FOO`).
    Nothing,
    /// The program is argument `at`; `options` if options such as `-i` come before it.
    Program { at: usize, options: bool },
    /// An option this reading does not know, so where the program is is unknown.
    UnknownOption(String),
}

/// Reads `env`'s arguments as GNU env does: options, then `NAME=value`s, then the program.
fn env_program(args: &[Word]) -> EnvRun {
    let mut options = false;
    // After `--` or the first assignment, a word starting with `-` is the program.
    let mut operands = false;
    let mut i = 0;
    while let Some(word) = args.get(i) {
        let (text, all_literal) = leading_text(word);
        if is_env_assignment(&text) {
            operands = true;
        } else if !all_literal || operands || !text.starts_with('-') {
            // An expansion is the program too, and `program_name` declines it.
            return EnvRun::Program { at: i, options };
        } else {
            match text.as_str() {
                "--" => operands = true,
                "-u" | "--unset" | "-C" | "--chdir" => {
                    options = true;
                    i += 1;
                }
                "-i" | "-" | "--ignore-environment" | "-0" | "--null" | "-v" | "--debug" => {
                    options = true;
                }
                _ if ["--unset=", "--chdir=", "-u", "-C"]
                    .iter()
                    .any(|p| text.starts_with(p)) =>
                {
                    options = true;
                }
                _ => return EnvRun::UnknownOption(text),
            }
        }
        i += 1;
    }
    EnvRun::Nothing
}

/// `NAME=value` as an argument of `env`, split into the assignment it stands for.
fn split_assignment(word: Word) -> Planned<(String, Word)> {
    let mut name = String::new();
    let mut parts = word.0.into_iter();
    for part in parts.by_ref() {
        let WordPart::Literal { text, quoted } = part else {
            break;
        };
        if let Some((before, value)) = text.split_once('=') {
            name.push_str(before);
            let mut value_parts = Vec::new();
            if !value.is_empty() {
                value_parts.push(WordPart::Literal {
                    text: value.to_owned(),
                    quoted,
                });
            }
            value_parts.extend(parts);
            return Ok((name, Word(value_parts)));
        }
        name.push_str(&text);
    }
    Err("syntax error: bad env assignment".into())
}

/// The text of the word's leading literal parts, quoted or not (env sees it after quote
/// removal), and whether that is the whole word.
fn leading_text(word: &Word) -> (String, bool) {
    let mut text = String::new();
    for part in &word.0 {
        match part {
            WordPart::Literal { text: more, .. } => text.push_str(more),
            _ => return (text, false),
        }
    }
    (text, true)
}

fn is_env_assignment(text: &str) -> bool {
    text.split_once('=').is_some_and(|(name, _)| {
        name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}
