//! Declined command lines with their exact reason, and robustness against hostile input.

use super::{declines, programs};
use crate::shell::parse::plan;
use crate::shell::plan::ShellPlan;

#[test]
fn declined_constructs() {
    declines(&[
        ("echo $(ls)", "uses command substitution"),
        ("echo `ls`", "uses command substitution"),
        ("echo \"today: $(date)\"", "uses command substitution"),
        ("echo $((1+2))", "uses arithmetic expansion"),
        ("diff <(ls a) <(ls b)", "uses process substitution"),
        ("ls > >(cat)", "uses process substitution"),
        ("(cd src && ls)", "uses a subshell"),
        ("if true; then ls; fi", "uses if"),
        ("for f in *; do cat $f; done", "uses for"),
        ("for ((i=0;i<3;i++)); do echo $i; done", "uses for"),
        ("while true; do ls; done", "uses while"),
        ("until false; do ls; done", "uses until"),
        ("case x in x) ls;; esac", "uses case"),
        ("{ ls; }", "uses a brace group { }"),
        ("((x++))", "uses an arithmetic command (( ))"),
        ("[[ -f x ]] && ls", "uses [[ ]]"),
        ("f() { ls; }", "uses a function definition"),
        ("function f { ls; }", "uses a function definition"),
        ("ls &", "runs in the background (&)"),
        ("ls & wc", "runs in the background (&)"),
        ("time ls", "uses time"),
        ("cat <<EOF\nhi\nEOF", "uses a here-document"),
        ("cat <<EOF", "uses a here-document"),
        ("cat <<< hi", "uses a here-string"),
        ("echo {a,b}", "uses brace expansion"),
        ("touch x{1..3}", "uses brace expansion"),
        ("echo {1..99999999999999999999}", "uses brace expansion"),
        ("echo $'a\\tb'", "uses $'...' quoting"),
        ("echo ~root/x", "uses tilde expansion ~root"),
    ]);
}

#[test]
fn declined_variables() {
    declines(&[
        ("echo ${X:-x}", "uses parameter expansion ${X:-x}"),
        ("echo ${#X}", "uses parameter expansion ${#X}"),
        ("echo \"a${X/a/b}\"", "uses parameter expansion ${X/a/b}"),
        ("echo ${!X}", "uses parameter expansion ${!X}"),
        ("echo ${A[1]}", "uses an array"),
        ("A=(x y)", "uses an array"),
        ("A[1]=x ls", "uses an array"),
        ("A+=x", "uses an append assignment (+=)"),
        ("echo $1", "uses special variable $1"),
        ("echo ${10}", "uses special variable $10"),
        ("echo \"$@\"", "uses special variable $@"),
        ("echo $*", "uses special variable $*"),
        ("echo $#", "uses special variable $#"),
        ("echo $$", "uses special variable $$"),
        ("echo $!", "uses special variable $!"),
        ("echo $0", "uses special variable $0"),
        ("echo $-", "uses special variable $-"),
        ("echo $_", "uses special variable $_"),
    ]);
}

#[test]
fn declined_redirections() {
    declines(&[
        ("ls <> f", "uses redirection <>"),
        ("ls 3> f", "uses file descriptor 3"),
        ("ls 2>&3", "uses file descriptor 3"),
        ("cat 1< f", "uses redirection 1<"),
        ("ls 0> f", "uses redirection 0>"),
        ("ls >&-", "closes a file descriptor"),
        ("ls 2>&out", "uses an unsupported >& redirection"),
        ("cat <&in", "uses an unsupported <& redirection"),
        ("ls 99999999999>f", "uses a file descriptor out of range"),
    ]);
}

#[test]
fn declined_programs() {
    declines(&[
        ("gcc main.c", "uses program gcc"),
        ("sudo apt-get install x", "uses program sudo"),
        ("ls | gcc x", "uses program gcc"),
        ("ls && make && gcc", "uses program make"),
        ("A=1 make", "uses program make"),
        ("./script.sh", "uses program ./script.sh"),
        ("bin/tool", "uses program bin/tool"),
        ("/usr/bin/gcc -v", "uses program gcc"),
        ("/usr/bin/cd /", "uses program cd"),
        (
            "/opt/venv/bin/python x.py",
            "uses program /opt/venv/bin/python",
        ),
        ("$CMD -x", "program name from an expansion"),
        ("\"$CMD\"", "program name from an expansion"),
        ("~/bin/tool", "program name from an expansion"),
        ("l* -la", "program name from an expansion"),
        ("\"\" x", "empty program name"),
        ("env gcc x", "uses program gcc"),
        ("env A=1 cd /", "uses program cd"),
        ("env $CMD", "program name from an expansion"),
        ("env -i python3 x.py", "uses env options with a program"),
        ("env -S 'python3 -u' x.py", "uses env option -S"),
        ("env A=1 -u B", "uses program -u"),
        ("FOO=1 env make", "uses program make"),
    ]);
}

#[test]
fn declined_syntax() {
    declines(&[
        ("", "empty command"),
        ("   \n\t", "empty command"),
        ("# only a comment", "empty command"),
        ("echo 'open", "unbalanced quotes"),
        ("echo \"open", "unbalanced quotes"),
        ("echo `open", "unbalanced quotes"),
        (
            "echo $(ls",
            "syntax error: unterminated command substitution",
        ),
        ("echo \\", "syntax error: unterminated escape sequence"),
        ("ls |", "syntax error: unexpected end of input"),
        ("ls;;ls", "syntax error: unexpected `;;`"),
        (";", "syntax error: unexpected `;`"),
        ("ls )", "syntax error: unexpected `)`"),
    ]);
}

#[test]
fn deep_nesting_is_declined_not_overflowed() {
    let braces = format!("{}ls;{}", "{ ".repeat(500), "}; ".repeat(500));
    let substitutions = format!("echo {}x{}", "$(".repeat(5000), ")".repeat(5000));
    let ifs = "if ".repeat(5000);
    for line in [braces, substitutions, ifs] {
        assert_eq!(
            plan(&line, &programs),
            ShellPlan::Decline("nesting too deep".into())
        );
    }
}

/// Random lines made of shell punctuation must plan or decline, never panic or overflow.
#[test]
fn never_panics() {
    const ALPHABET: &[&str] = &[
        "ls", " ", "'", "\"", "\\", "$", "(", ")", "{", "}", "`", "|", "&", ";", ">", "<", "2",
        "~", "*", "=", "!", "#", "\n", "a", "${", "$(", "[", "]", "if", "-", ",", "..",
    ];
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..3000 {
        let mut line = String::new();
        for _ in 0..(seed % 24) {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let index = usize::try_from(seed >> 33).unwrap_or(0) % ALPHABET.len();
            line.push_str(ALPHABET[index]);
        }
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        match plan(&line, &programs) {
            ShellPlan::Run(script) => assert!(!script.lists.is_empty(), "{line:?}"),
            ShellPlan::Decline(reason) => {
                assert!(
                    !reason.is_empty() && reason.len() < 100,
                    "{line:?}: {reason}"
                );
                assert!(!reason.contains("parser failed"), "{line:?}: {reason}");
            }
        }
    }
}
