//! hybox toolbox: one multi-call program providing the light shell commands of the
//! sandbox (ls, cat, grep, sort, ...) as a WebAssembly/WASI guest. std-only Rust,
//! buildable with rustc 1.63 for wasm32-wasi. See README.md.

#[macro_use]
mod util;
mod datefmt;
mod find;
mod fsops;
mod grep;
mod ls;
mod printf;
mod regex;
mod simple;
mod sorting;
mod stat;
mod sys;
mod test;
mod text;

/// Every command the toolbox answers to.
pub const COMMANDS: &[&str] = &[
    "[", "basename", "cat", "cp", "cut", "date", "dirname", "du", "echo", "env", "false", "find", "grep", "egrep", "fgrep",
    "head", "ls", "mkdir", "mv", "printf", "pwd", "rm", "rmdir", "seq", "sleep", "sort", "stat", "tail", "tee", "test", "touch",
    "tr", "true", "uniq", "wc", "which", "yes",
];

pub fn run_cmd(cmd: &str, args: Vec<String>) -> i32 {
    match cmd {
        "echo" => simple::echo(args),
        "printf" => printf::main(args),
        "true" => simple::true_false(args, 0),
        "false" => simple::true_false(args, 1),
        "yes" => simple::yes(args),
        "pwd" => simple::pwd(args),
        "env" => simple::env(args),
        "sleep" => simple::sleep(args),
        "basename" => simple::basename(args),
        "dirname" => simple::dirname(args),
        "which" => simple::which(args),
        "seq" => simple::seq(args),
        "tee" => simple::tee(args),
        "date" => datefmt::date(args),
        "cat" => text::cat(args),
        "head" => text::head(args),
        "tail" => text::tail(args),
        "wc" => text::wc(args),
        "sort" => sorting::sort(args),
        "uniq" => sorting::uniq(args),
        "cut" => sorting::cut(args),
        "tr" => sorting::tr(args),
        "mkdir" => fsops::mkdir(args),
        "rmdir" => fsops::rmdir(args),
        "rm" => fsops::rm(args),
        "cp" => fsops::cp(args),
        "mv" => fsops::mv(args),
        "touch" => fsops::touch(args),
        "ls" => ls::main(args),
        "find" => find::main(args),
        "test" => test::main(args, false),
        "[" => test::main(args, true),
        "stat" => stat::stat(args),
        "du" => stat::du(args),
        "grep" => grep::main(args, None),
        "egrep" => grep::main(args, Some('E')),
        "fgrep" => grep::main(args, Some('F')),
        _ => {
            util::err(&format!("unknown command '{}'; available: {}", cmd, COMMANDS.join(" ")));
            127
        }
    }
}

fn main() {
    // wasi-libc has no real working directory: take it from the host's PWD.
    if let Ok(pwd) = std::env::var("PWD") {
        if !pwd.is_empty() {
            let _ = std::env::set_current_dir(&pwd);
        }
    }
    let mut argv: Vec<String> = std::env::args().collect();
    if argv.is_empty() {
        argv.push("toolbox".into());
    }
    let mut name = util::basename_of(&argv[0]).to_string();
    if let Some(stripped) = name.strip_suffix(".wasm") {
        name = stripped.to_string();
    }
    let mut rest: Vec<String> = argv[1..].to_vec();
    if !COMMANDS.contains(&name.as_str()) {
        if rest.is_empty() || rest[0] == "--help" || rest[0] == "--list" {
            util::outs("hybox toolbox: a multi-call program. Usage: toolbox COMMAND [ARGS...]\nCommands:\n");
            for c in COMMANDS {
                outf!("  {}\n", c);
            }
            util::exit(if rest.is_empty() { 1 } else { 0 });
        }
        if rest[0] == "--version" {
            outf!("toolbox (hybox toolbox) {}\n", util::VERSION);
            util::exit(0);
        }
        name = util::basename_of(&rest[0]).to_string();
        rest.remove(0);
    }
    if !COMMANDS.contains(&name.as_str()) {
        util::set_prog("toolbox");
    } else {
        util::set_prog(&name);
    }
    let code = run_cmd(&name, rest);
    util::exit(code);
}
