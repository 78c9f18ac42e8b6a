//! Tables of command lines with the exact plan expected, and of declined ones with their reason.

use super::{BUILTINS, plan};
use crate::shell::plan::{
    AndOrList, Connector, Pipeline, Redirect, Script, ShellPlan, SimpleCommand, Word, WordPart,
};

/// What the tests pretend the wasm route provides.
const PROGRAMS: &[&str] = &[
    "ls", "cat", "head", "wc", "mkdir", "env", "grep", "python3", "python", "node", "yes", "sort",
    "diff", "find",
];

fn programs(name: &str) -> bool {
    PROGRAMS.contains(&name)
}

// Word parts.
fn lit(text: &str) -> WordPart {
    WordPart::Literal {
        text: text.into(),
        quoted: false,
    }
}
fn q(text: &str) -> WordPart {
    WordPart::Literal {
        text: text.into(),
        quoted: true,
    }
}
fn var(name: &str) -> WordPart {
    WordPart::Var {
        name: name.into(),
        quoted: false,
    }
}
fn qvar(name: &str) -> WordPart {
    WordPart::Var {
        name: name.into(),
        quoted: true,
    }
}

// Words and commands.
fn w(parts: &[WordPart]) -> Word {
    Word(parts.to_vec())
}
/// A word that is one unquoted literal.
fn lw(text: &str) -> Word {
    w(&[lit(text)])
}
/// A command of plain unquoted words.
fn cmd(words: &[&str]) -> SimpleCommand {
    cmdw(words.iter().map(|text| lw(text)).collect())
}
fn cmdw(words: Vec<Word>) -> SimpleCommand {
    SimpleCommand {
        assignments: vec![],
        words,
        redirects: vec![],
    }
}
fn redirected(mut command: SimpleCommand, redirects: &[Redirect]) -> SimpleCommand {
    command.redirects.extend_from_slice(redirects);
    command
}
fn assigned(mut command: SimpleCommand, assignments: &[(&str, Word)]) -> SimpleCommand {
    let pairs = assignments
        .iter()
        .map(|(name, value)| ((*name).to_owned(), value.clone()));
    command.assignments.extend(pairs);
    command
}

// Redirections.
fn out(fd: u32, file: &str) -> Redirect {
    Redirect::Output {
        fd,
        target: lw(file),
        append: false,
    }
}
fn append(fd: u32, file: &str) -> Redirect {
    Redirect::Output {
        fd,
        target: lw(file),
        append: true,
    }
}
fn input(file: &str) -> Redirect {
    Redirect::Input {
        fd: 0,
        target: lw(file),
    }
}
fn dup(fd: u32, to: u32) -> Redirect {
    Redirect::Duplicate { fd, to }
}

// Pipelines, lists, scripts.
fn pipe(commands: Vec<SimpleCommand>) -> Pipeline {
    Pipeline {
        negated: false,
        commands,
    }
}
fn not(commands: Vec<SimpleCommand>) -> Pipeline {
    Pipeline {
        negated: true,
        commands,
    }
}
fn and_or(first: Pipeline, rest: Vec<(Connector, Pipeline)>) -> AndOrList {
    AndOrList { first, rest }
}
fn single(command: SimpleCommand) -> AndOrList {
    and_or(pipe(vec![command]), vec![])
}
/// A script of one list of one pipeline of one command.
fn one(command: SimpleCommand) -> Script {
    lists(vec![single(command)])
}
fn lists(lists: Vec<AndOrList>) -> Script {
    Script { lists }
}
/// A script of one command with these words.
fn words(words: Vec<Word>) -> Script {
    one(cmdw(words))
}
use Connector::{And, Or};

/// Runs a table, reporting every mismatch at once.
fn check(cases: Vec<(&str, ShellPlan)>) {
    let failures: Vec<String> = cases
        .into_iter()
        .filter_map(|(line, expected)| {
            let got = plan(line, &programs);
            (got != expected)
                .then(|| format!("{line:?}\n  expected {expected:?}\n  got      {got:?}"))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn runs(cases: Vec<(&str, Script)>) {
    check(
        cases
            .into_iter()
            .map(|(line, script)| (line, ShellPlan::Run(script)))
            .collect(),
    );
}

fn declines(cases: &[(&str, &str)]) {
    let cases = cases
        .iter()
        .map(|(line, reason)| (*line, ShellPlan::Decline((*reason).into())));
    check(cases.collect());
}

#[test]
fn lists_and_pipelines() {
    runs(vec![
        ("ls -la", one(cmd(&["ls", "-la"]))),
        (
            "cat data.csv | head -5 | wc -l",
            lists(vec![and_or(
                pipe(vec![
                    cmd(&["cat", "data.csv"]),
                    cmd(&["head", "-5"]),
                    cmd(&["wc", "-l"]),
                ]),
                vec![],
            )]),
        ),
        (
            "mkdir -p out && echo done > out/log.txt",
            lists(vec![and_or(
                pipe(vec![cmd(&["mkdir", "-p", "out"])]),
                vec![(
                    And,
                    pipe(vec![redirected(
                        cmd(&["echo", "done"]),
                        &[out(1, "out/log.txt")],
                    )]),
                )],
            )]),
        ),
        (
            "cd src; python3 main.py",
            lists(vec![
                single(cmd(&["cd", "src"])),
                single(cmd(&["python3", "main.py"])),
            ]),
        ),
        (
            "FOO=1 env | grep FOO",
            lists(vec![and_or(
                pipe(vec![
                    assigned(cmd(&["env"]), &[("FOO", lw("1"))]),
                    cmd(&["grep", "FOO"]),
                ]),
                vec![],
            )]),
        ),
        (
            "yes | head",
            lists(vec![and_or(
                pipe(vec![cmd(&["yes"]), cmd(&["head"])]),
                vec![],
            )]),
        ),
        (
            "ls x || echo missing && ls",
            lists(vec![and_or(
                pipe(vec![cmd(&["ls", "x"])]),
                vec![
                    (Or, pipe(vec![cmd(&["echo", "missing"])])),
                    (And, pipe(vec![cmd(&["ls"])])),
                ],
            )]),
        ),
        (
            "ls\nwc -l f",
            lists(vec![single(cmd(&["ls"])), single(cmd(&["wc", "-l", "f"]))]),
        ),
        ("\n\nls;\n\n", one(cmd(&["ls"]))),
        (
            "ls && \n wc",
            lists(vec![and_or(
                pipe(vec![cmd(&["ls"])]),
                vec![(And, pipe(vec![cmd(&["wc"])]))],
            )]),
        ),
        (
            "ls |\n wc",
            lists(vec![and_or(pipe(vec![cmd(&["ls"]), cmd(&["wc"])]), vec![])]),
        ),
        (
            "! grep -q x f",
            lists(vec![and_or(
                not(vec![cmd(&["grep", "-q", "x", "f"])]),
                vec![],
            )]),
        ),
        ("! ! ls", one(cmd(&["ls"]))),
        (
            "! ls | wc",
            lists(vec![and_or(not(vec![cmd(&["ls"]), cmd(&["wc"])]), vec![])]),
        ),
        ("ls # a comment", one(cmd(&["ls"]))),
        ("echo a \\\nb", one(cmd(&["echo", "a", "b"]))),
        (
            "python3 -c \"import sys; print(sys.argv)\" a b",
            words(vec![
                lw("python3"),
                lw("-c"),
                w(&[q("import sys; print(sys.argv)")]),
                lw("a"),
                lw("b"),
            ]),
        ),
    ]);
}

#[test]
fn redirections() {
    runs(vec![
        (
            "ls > out.txt",
            one(redirected(cmd(&["ls"]), &[out(1, "out.txt")])),
        ),
        (
            "ls >> out.txt",
            one(redirected(cmd(&["ls"]), &[append(1, "out.txt")])),
        ),
        (
            "wc -l < data.csv",
            one(redirected(cmd(&["wc", "-l"]), &[input("data.csv")])),
        ),
        ("cat 0<in", one(redirected(cmd(&["cat"]), &[input("in")]))),
        ("ls 2> err", one(redirected(cmd(&["ls"]), &[out(2, "err")]))),
        (
            "ls 2>> err",
            one(redirected(cmd(&["ls"]), &[append(2, "err")])),
        ),
        (
            "ls 1>o 2>e",
            one(redirected(cmd(&["ls"]), &[out(1, "o"), out(2, "e")])),
        ),
        ("ls >| o", one(redirected(cmd(&["ls"]), &[out(1, "o")]))),
        (
            "ls > o 2>&1",
            one(redirected(cmd(&["ls"]), &[out(1, "o"), dup(2, 1)])),
        ),
        (
            "ls 2>&1 > o",
            one(redirected(cmd(&["ls"]), &[dup(2, 1), out(1, "o")])),
        ),
        (
            "echo oops >&2",
            one(redirected(cmd(&["echo", "oops"]), &[dup(1, 2)])),
        ),
        ("cat <&0", one(redirected(cmd(&["cat"]), &[dup(0, 0)]))),
        (
            "ls &> all",
            one(redirected(cmd(&["ls"]), &[out(1, "all"), dup(2, 1)])),
        ),
        (
            "ls &>> all",
            one(redirected(cmd(&["ls"]), &[append(1, "all"), dup(2, 1)])),
        ),
        (
            "ls >& all",
            one(redirected(cmd(&["ls"]), &[out(1, "all"), dup(2, 1)])),
        ),
        (
            "ls |& grep x",
            lists(vec![and_or(
                pipe(vec![
                    redirected(cmd(&["ls"]), &[dup(2, 1)]),
                    cmd(&["grep", "x"]),
                ]),
                vec![],
            )]),
        ),
        (
            "> empty.txt",
            one(redirected(cmd(&[]), &[out(1, "empty.txt")])),
        ),
        (
            "< in > \"my out\" cat",
            one(redirected(
                cmd(&["cat"]),
                &[
                    input("in"),
                    Redirect::Output {
                        fd: 1,
                        target: w(&[q("my out")]),
                        append: false,
                    },
                ],
            )),
        ),
        (
            "ls > $DIR/o",
            one(redirected(
                cmd(&["ls"]),
                &[Redirect::Output {
                    fd: 1,
                    target: w(&[var("DIR"), lit("/o")]),
                    append: false,
                }],
            )),
        ),
    ]);
}

#[test]
fn quoting_and_expansions() {
    runs(vec![
        (
            "find . -name '*.py' -exec cat {} \\;",
            words(vec![
                lw("find"),
                lw("."),
                lw("-name"),
                w(&[q("*.py")]),
                lw("-exec"),
                lw("cat"),
                lw("{}"),
                w(&[q(";")]),
            ]),
        ),
        (
            "echo \"$HOME\"/x",
            words(vec![lw("echo"), w(&[qvar("HOME"), lit("/x")])]),
        ),
        (
            "echo \"\\n\" '\\n' \\n",
            words(vec![
                lw("echo"),
                w(&[q("\\n")]),
                w(&[q("\\n")]),
                w(&[q("n")]),
            ]),
        ),
        (
            "echo 'a b'\"c $X\"d",
            words(vec![lw("echo"), w(&[q("a bc "), qvar("X"), lit("d")])]),
        ),
        (
            "echo \"$A\"'$B'",
            words(vec![lw("echo"), w(&[qvar("A"), q("$B")])]),
        ),
        ("echo \\$X", words(vec![lw("echo"), w(&[q("$"), lit("X")])])),
        ("echo \"a|b\"", words(vec![lw("echo"), w(&[q("a|b")])])),
        (
            "echo a\\|b",
            words(vec![lw("echo"), w(&[lit("a"), q("|"), lit("b")])]),
        ),
        (
            "echo \"a\\b\" \"a\\$b\" \"a\\\"b\" a\\\\b",
            words(vec![
                lw("echo"),
                w(&[q("a\\b")]),
                w(&[q("a$b")]),
                w(&[q("a\"b")]),
                w(&[lit("a"), q("\\"), lit("b")]),
            ]),
        ),
        (
            "echo $X ${Y}",
            words(vec![lw("echo"), w(&[var("X")]), w(&[var("Y")])]),
        ),
        (
            "echo \"$X\" \"${Y}s\"",
            words(vec![lw("echo"), w(&[qvar("X")]), w(&[qvar("Y"), q("s")])]),
        ),
        (
            "echo $X_1-$Y",
            words(vec![lw("echo"), w(&[var("X_1"), lit("-"), var("Y")])]),
        ),
        (
            "echo $? \"$?\" ${?}",
            words(vec![
                lw("echo"),
                w(&[WordPart::LastStatus]),
                w(&[WordPart::LastStatus]),
                w(&[WordPart::LastStatus]),
            ]),
        ),
        (
            "ls ~ ~/src",
            words(vec![
                lw("ls"),
                w(&[WordPart::Tilde]),
                w(&[WordPart::Tilde, lit("/src")]),
            ]),
        ),
        (
            "echo \"~\" a~",
            words(vec![lw("echo"), w(&[q("~")]), lw("a~")]),
        ),
        (
            "ls *.py \"*.py\" \\*.py [ab].txt",
            words(vec![
                lw("ls"),
                lw("*.py"),
                w(&[q("*.py")]),
                w(&[q("*"), lit(".py")]),
                lw("[ab].txt"),
            ]),
        ),
        (
            "echo '' \"\" a'' x\"\"y",
            words(vec![
                lw("echo"),
                w(&[q("")]),
                w(&[q("")]),
                lw("a"),
                lw("xy"),
            ]),
        ),
        (
            "echo $X\"\"",
            words(vec![lw("echo"), w(&[var("X"), q("")])]),
        ),
        (
            "echo $ a$ \"$\"",
            words(vec![lw("echo"), lw("$"), lw("a$"), w(&[q("$")])]),
        ),
        (
            "echo {} {a} a{b,",
            words(vec![lw("echo"), lw("{}"), lw("{a}"), lw("a{b,")]),
        ),
        ("echo \"{a,b}\"", words(vec![lw("echo"), w(&[q("{a,b}")])])),
        (
            "echo $\"hi $X\"",
            words(vec![lw("echo"), w(&[q("hi "), qvar("X")])]),
        ),
        ("echo a=b", words(vec![lw("echo"), lw("a=b")])),
        ("\"ls\" -la", words(vec![w(&[q("ls")]), lw("-la")])),
        ("l's' x", words(vec![w(&[lit("l"), q("s")]), lw("x")])),
    ]);
}

#[test]
fn assignments_and_builtins() {
    runs(vec![
        ("FOO=1", one(assigned(cmd(&[]), &[("FOO", lw("1"))]))),
        ("A= ls", one(assigned(cmd(&["ls"]), &[("A", w(&[]))]))),
        (
            "A=1 B=\"x $Y\" node app.js",
            one(assigned(
                cmd(&["node", "app.js"]),
                &[("A", lw("1")), ("B", w(&[q("x "), qvar("Y")]))],
            )),
        ),
        (
            "X=~/d ls",
            one(assigned(
                cmd(&["ls"]),
                &[("X", w(&[WordPart::Tilde, lit("/d")]))],
            )),
        ),
        (
            "X={a,b} ls",
            one(assigned(cmd(&["ls"]), &[("X", lw("{a,b}"))])),
        ),
        (
            "export PATH=$HOME/bin:$PATH",
            words(vec![
                lw("export"),
                w(&[lit("PATH="), var("HOME"), lit("/bin:"), var("PATH")]),
            ]),
        ),
        (
            "unset FOO; exit 3",
            lists(vec![
                single(cmd(&["unset", "FOO"])),
                single(cmd(&["exit", "3"])),
            ]),
        ),
        (
            "cd ~/src && pwd",
            lists(vec![and_or(
                pipe(vec![cmdw(vec![
                    lw("cd"),
                    w(&[WordPart::Tilde, lit("/src")]),
                ])]),
                vec![(And, pipe(vec![cmd(&["pwd"])]))],
            )]),
        ),
        (
            ": ; true || false",
            lists(vec![
                single(cmd(&[":"])),
                and_or(
                    pipe(vec![cmd(&["true"])]),
                    vec![(Or, pipe(vec![cmd(&["false"])]))],
                ),
            ]),
        ),
        ("/usr/bin/env python3 x.py", one(cmd(&["python3", "x.py"]))),
        ("/bin/echo hi", words(vec![w(&[q("echo")]), lw("hi")])),
        ("env -u X", one(cmd(&["env", "-u", "X"]))),
        (
            "env A=1 B=\"x y\" python3 m.py",
            one(assigned(
                cmd(&["python3", "m.py"]),
                &[("A", lw("1")), ("B", w(&[q("x y")]))],
            )),
        ),
        (
            "env -- A=$X python3 m.py",
            one(assigned(
                cmd(&["python3", "m.py"]),
                &[("A", w(&[var("X")]))],
            )),
        ),
        (
            "FOO=1 env env BAR= node a.js",
            one(assigned(
                cmd(&["node", "a.js"]),
                &[("FOO", lw("1")), ("BAR", w(&[]))],
            )),
        ),
        (
            "env /usr/bin/node a.js",
            words(vec![w(&[q("node")]), lw("a.js")]),
        ),
        ("env echo hi", one(cmd(&["echo", "hi"]))),
    ]);
}

#[test]
fn builtins_need_no_programs() {
    let line = "cd /tmp && pwd && echo hi && true && : && export A=1 && unset A && false || exit 1";
    assert!(matches!(plan(line, &|_| false), ShellPlan::Run(_)));
    assert_eq!(BUILTINS.len(), 9);
    for name in BUILTINS {
        assert!(
            matches!(plan(name, &|_| false), ShellPlan::Run(_)),
            "{name}"
        );
    }
}

#[path = "parse_tests_declined.rs"]
mod declined;
