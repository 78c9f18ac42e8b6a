//! Table test of hostile paths and symlinks: each case asserts the exact error code and
//! that nothing outside the workspace changed (and, when refused, nothing inside either).
//!
//! Mutating cases only ever aim at the temp dir's `sentinel/` (via relative or absolute
//! links); links to `/` and `/etc/passwd` are used with read-only operations, so a
//! regression cannot damage the machine running the tests.

use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;

use crate::files::tests::Fixture;
use crate::files::{EntryKind, Result};

#[derive(Debug, Clone, Copy)]
enum Op {
    Read,
    Write,
    WriteParents,
    Mkdir,
    MkdirAll,
    Delete,
    DeleteAll,
    Rename(&'static str),
    Move(&'static str),
    List,
    ListAll,
    Stat,
    Exists,
}

struct Case {
    name: &'static str,
    op: Op,
    path: String,
    cwd: &'static str,
    expect: &'static str,
    check: Option<fn(&Fixture)>,
}

fn case(name: &'static str, op: Op, path: impl Into<String>, expect: &'static str) -> Case {
    Case {
        name,
        op,
        path: path.into(),
        cwd: "/workspace",
        expect,
        check: None,
    }
}

impl Case {
    fn cwd(mut self, cwd: &'static str) -> Self {
        self.cwd = cwd;
        self
    }

    fn check(mut self, check: fn(&Fixture)) -> Self {
        self.check = Some(check);
        self
    }
}

const OUT: &str = "PATH_OUTSIDE_WORKSPACE";
const INVALID: &str = "INVALID_PATH";
const OK: &str = "OK";

/// The hostile layout every case starts from.
fn hostile_fixture() -> Fixture {
    let fx = Fixture::new();
    let sentinel = fx.sentinel();
    fx.file("file.txt", b"hello");
    fx.file("dir/inner.txt", b"inner");
    fx.link("to_root", "/");
    fx.link("to_parent", "..");
    fx.link("to_sentinel_rel", "../sentinel");
    fx.link("to_sentinel_abs", &sentinel);
    fx.link("to_secret_rel", "../sentinel/secret.txt");
    fx.link("to_secret_abs", sentinel.join("secret.txt"));
    fx.link("dangling_out", "../sentinel/created_rel.txt");
    fx.link("dangling_out_abs", sentinel.join("created_abs.txt"));
    fx.link("dangling_tmp", "../created_in_tmp");
    fx.link("hop1", "hop2");
    fx.link("hop2", "../sentinel");
    fx.link("dir/up", "../../sentinel");
    fx.link("abs_inside", fx.host("file.txt"));
    fx.link("abs_inside_dir", fx.host("dir"));
    fx.link("passwd", "/etc/passwd");
    fx.link("loop_a", "loop_b");
    fx.link("loop_b", "loop_a");
    fx
}

fn run(fx: &Fixture, c: &Case) -> Result<()> {
    let p = fx.ws.resolve(&c.path, c.cwd)?;
    match c.op {
        Op::Read => fx.ws.read(&p, 1 << 20).map(drop),
        Op::Write => fx.ws.write(&p, b"pwned", false),
        Op::WriteParents => fx.ws.write(&p, b"pwned", true),
        Op::Mkdir => fx.ws.mkdir(&p, false),
        Op::MkdirAll => fx.ws.mkdir(&p, true),
        Op::Delete => fx.ws.delete(&p, false),
        Op::DeleteAll => fx.ws.delete(&p, true),
        Op::Rename(to) => fx.ws.rename(&p, &fx.ws.resolve(to, c.cwd)?),
        Op::Move(to) => fx.ws.move_path(&p, &fx.ws.resolve(to, c.cwd)?).map(drop),
        Op::List => fx.ws.list(&p, false, 1000).map(drop),
        Op::ListAll => fx.ws.list(&p, true, 1000).map(drop),
        Op::Stat => fx.ws.stat(&p).map(drop),
        Op::Exists => fx.ws.exists(&p).map(drop),
    }
}

fn is_file_with(path: &Path, data: &[u8]) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.is_file()) && fs::read(path).is_ok_and(|d| d == data)
}

fn is_link(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.is_symlink())
}

fn resolution_cases() -> Vec<Case> {
    vec![
        case("dotdot", Op::Read, "..", OUT),
        case("dotdot twice", Op::Read, "../..", OUT),
        case(
            "climb from guest root",
            Op::Read,
            "/workspace/../etc/passwd",
            OUT,
        ),
        case("other absolute", Op::Read, "/etc/passwd", OUT),
        case("double slash", Op::List, "//etc", OUT),
        case(
            "climb after descending",
            Op::Write,
            "/workspace/a/../../b",
            OUT,
        ),
        case("dot then climb", Op::WriteParents, "a/./../..", OUT),
        case("nul inside", Op::Write, "a\0b", INVALID),
        case("only nul", Op::Read, "\0", INVALID),
        case("nul component", Op::WriteParents, "dir/\0/x", INVALID),
        case("host root", Op::Read, "/", OUT),
        case("prefix trick dir", Op::Write, "/workspace2/x", OUT),
        case("prefix trick name", Op::Write, "/workspacex", OUT),
        case("empty path", Op::Mkdir, "", INVALID),
        case("component too long", Op::Write, "a".repeat(256), INVALID),
        case(
            "path too long",
            Op::WriteParents,
            "a/".repeat(2500),
            INVALID,
        ),
        case(
            "relative into sentinel",
            Op::Write,
            "../sentinel/secret.txt",
            OUT,
        ),
        case("guest root parent", Op::List, "/workspace/..", OUT),
        case("climb through dir", Op::ListAll, "dir/../../sentinel", OUT),
        case("climb from cwd", Op::Write, "../../sentinel/x", OUT).cwd("/workspace/dir"),
        case("cwd outside", Op::Write, "x", OUT).cwd("/tmp"),
        case("cwd climbs", Op::Write, "x", OUT).cwd("/workspace/../sentinel"),
        case(
            "deep absolute climb",
            Op::Read,
            "/workspace/dir/../../sentinel/secret.txt",
            OUT,
        ),
        case("root parent first", Op::Write, "/../workspace/x", OUT),
        case("climb back in on host", Op::Write, "../ws/escaped", OUT),
        case("rename to parent", Op::Rename("../x"), "file.txt", OUT),
        case("rename to absolute", Op::Rename("/tmp/x"), "file.txt", OUT),
        case("move to parent", Op::Move("../x"), "file.txt", OUT),
        case("rename root", Op::Rename("x"), "/workspace", INVALID),
        case("move root", Op::Move("dir"), "/workspace", INVALID),
        case("delete root", Op::Delete, "/workspace", INVALID),
        case("delete root recursive dot", Op::DeleteAll, ".", INVALID),
        case("delete root via dotdot", Op::DeleteAll, "dir/..", INVALID),
        case("write root", Op::Write, "/workspace/", INVALID),
    ]
}

fn literal_name_cases() -> Vec<Case> {
    vec![
        case("percent dots", Op::Write, "%2e%2e", OK)
            .check(|fx| assert!(is_file_with(&fx.host("%2e%2e"), b"pwned"))),
        case(
            "percent dots nested",
            Op::WriteParents,
            "%2e%2e/%2e%2e/x",
            OK,
        )
        .check(|fx| assert!(is_file_with(&fx.host("%2e%2e/%2e%2e/x"), b"pwned"))),
        case("percent slash", Op::Write, "..%2f..%2fsentinel", OK)
            .check(|fx| assert!(is_file_with(&fx.host("..%2f..%2fsentinel"), b"pwned"))),
        case("backslashes", Op::Write, "..\\..\\sentinel\\secret.txt", OK).check(|fx| {
            assert!(is_file_with(
                &fx.host("..\\..\\sentinel\\secret.txt"),
                b"pwned"
            ));
        }),
        case("tilde", Op::Write, "~", OK)
            .check(|fx| assert!(is_file_with(&fx.host("~"), b"pwned"))),
        case("tilde dir", Op::WriteParents, "~/x", OK)
            .check(|fx| assert!(is_file_with(&fx.host("~/x"), b"pwned"))),
        case("three dots", Op::Write, "...", OK)
            .check(|fx| assert!(is_file_with(&fx.host("..."), b"pwned"))),
        case("max component", Op::Write, "a".repeat(255), OK)
            .check(|fx| assert!(is_file_with(&fx.host(&"a".repeat(255)), b"pwned"))),
        case("mkdir percent dots", Op::Mkdir, "%2e%2e", OK)
            .check(|fx| assert!(fx.host("%2e%2e").is_dir())),
    ]
}

fn symlink_read_cases() -> Vec<Case> {
    vec![
        case(
            "link to root as parent",
            Op::Read,
            "to_root/etc/passwd",
            OUT,
        ),
        case("list link to root", Op::List, "to_root", OUT),
        case("read link to passwd", Op::Read, "passwd", OUT),
        case(
            "link to dotdot as parent",
            Op::Read,
            "to_parent/sentinel/secret.txt",
            OUT,
        ),
        case("list link to dotdot", Op::List, "to_parent", OUT),
        case("read relative file link", Op::Read, "to_secret_rel", OUT),
        case("read absolute file link", Op::Read, "to_secret_abs", OUT),
        case("two hop chain", Op::Read, "hop1/secret.txt", OUT),
        case("list two hop chain", Op::List, "hop1", OUT),
        case("nested dir link up", Op::Read, "dir/up/secret.txt", OUT),
        case("absolute link inside", Op::Read, "abs_inside", OUT),
        case(
            "list absolute dir link inside",
            Op::List,
            "abs_inside_dir",
            OUT,
        ),
        case("symlink loop", Op::Read, "loop_a", OUT),
        case(
            "stat through link",
            Op::Stat,
            "to_sentinel_rel/secret.txt",
            OUT,
        ),
        case("exists through root link", Op::Exists, "to_root/etc", OUT),
        case("exists through chain", Op::Exists, "hop1/secret.txt", OUT),
        case("list absolute link", Op::List, "to_sentinel_abs", OUT),
        case("list nested up link", Op::List, "dir/up", OUT),
        case(
            "list recursive via link",
            Op::ListAll,
            "to_sentinel_rel",
            OUT,
        ),
        case("stat link itself", Op::Stat, "passwd", OK).check(|fx| {
            let st = fx.ws.stat(&fx.p("passwd")).expect("stat link");
            assert_eq!(
                (st.kind, st.size),
                (EntryKind::Symlink, "/etc/passwd".len() as u64)
            );
        }),
        case("list root recursive", Op::ListAll, ".", OK).check(|fx| {
            let all = fx.ws.list(&fx.p("."), true, 1000).expect("list");
            assert!(all.iter().all(|e| e.path.starts_with("/workspace/")));
            assert!(
                !all.iter()
                    .any(|e| e.name == "secret.txt" || e.name == "deep.txt")
            );
            let kind = |n: &str| all.iter().find(|e| e.name == n).map(|e| e.kind);
            assert_eq!(kind("to_root"), Some(EntryKind::Symlink));
            assert_eq!(kind("up"), Some(EntryKind::Symlink));
            assert_eq!(all.len(), 20, "{all:#?}");
        }),
    ]
}

fn symlink_write_cases() -> Vec<Case> {
    vec![
        case("write relative file link", Op::Write, "to_secret_rel", OUT),
        case("write absolute file link", Op::Write, "to_secret_abs", OUT),
        case(
            "write dangling relative out",
            Op::Write,
            "dangling_out",
            OUT,
        ),
        case(
            "write dangling absolute out",
            Op::Write,
            "dangling_out_abs",
            OUT,
        ),
        case("write dangling into tmp", Op::Write, "dangling_tmp", OUT),
        case(
            "write via dir link",
            Op::Write,
            "to_sentinel_rel/secret.txt",
            OUT,
        ),
        case(
            "write new via abs dir link",
            Op::Write,
            "to_sentinel_abs/pwned.txt",
            OUT,
        ),
        case(
            "write parents via link",
            Op::WriteParents,
            "to_sentinel_rel/newdir/x",
            OUT,
        ),
        case("write via chain", Op::Write, "hop1/pwned", OUT),
        case("write absolute link inside", Op::Write, "abs_inside", OUT),
        case("write link to root", Op::Write, "to_root", OUT),
        case("write symlink loop", Op::Write, "loop_a", OUT),
        case(
            "write parents via nested up",
            Op::WriteParents,
            "dir/up/new/x",
            OUT,
        ),
        case("mkdir via link", Op::Mkdir, "to_sentinel_rel/newdir", OUT),
        case(
            "mkdir -p via link",
            Op::MkdirAll,
            "to_sentinel_rel/a/b",
            OUT,
        ),
        case("mkdir via dotdot link", Op::Mkdir, "to_parent/x", OUT),
        case("mkdir -p on abs link", Op::MkdirAll, "to_sentinel_abs", OUT),
        case(
            "mkdir on abs link",
            Op::Mkdir,
            "to_sentinel_abs",
            "FILE_EXISTS",
        ),
        case("mkdir -p via chain", Op::MkdirAll, "hop1/x", OUT),
    ]
}

fn symlink_mutation_cases() -> Vec<Case> {
    vec![
        case(
            "delete via link",
            Op::Delete,
            "to_sentinel_rel/secret.txt",
            OUT,
        ),
        case(
            "delete -r via link",
            Op::DeleteAll,
            "to_sentinel_rel/sub",
            OUT,
        ),
        case("delete via nested up", Op::Delete, "dir/up/secret.txt", OUT),
        case(
            "delete -r link itself",
            Op::DeleteAll,
            "to_sentinel_rel",
            OK,
        )
        .check(|fx| assert!(fs::symlink_metadata(fx.host("to_sentinel_rel")).is_err())),
        case(
            "delete -r abs link itself",
            Op::DeleteAll,
            "to_sentinel_abs",
            OK,
        )
        .check(|fx| assert!(fs::symlink_metadata(fx.host("to_sentinel_abs")).is_err())),
        case("delete -r chain link itself", Op::DeleteAll, "hop1", OK)
            .check(|fx| assert!(!is_link(&fx.host("hop1")) && is_link(&fx.host("hop2")))),
        case("delete abs file link", Op::Delete, "to_secret_abs", OK)
            .check(|fx| assert!(fs::symlink_metadata(fx.host("to_secret_abs")).is_err())),
        case(
            "rename into link",
            Op::Rename("to_sentinel_rel/x"),
            "file.txt",
            OUT,
        ),
        case(
            "rename out of link",
            Op::Rename("stolen"),
            "to_sentinel_rel/secret.txt",
            OUT,
        ),
        case("rename into chain", Op::Rename("hop1/dir"), "dir", OUT),
        case(
            "rename link itself",
            Op::Rename("renamed"),
            "to_secret_rel",
            OK,
        )
        .check(|fx| {
            let target = fs::read_link(fx.host("renamed")).expect("renamed link");
            assert_eq!(target, Path::new("../sentinel/secret.txt"));
        }),
        case(
            "rename over abs link",
            Op::Rename("to_sentinel_abs"),
            "file.txt",
            OK,
        )
        .check(|fx| assert!(is_file_with(&fx.host("to_sentinel_abs"), b"hello"))),
        case(
            "move into rel link",
            Op::Move("to_sentinel_rel"),
            "file.txt",
            OUT,
        ),
        case(
            "move into abs link",
            Op::Move("to_sentinel_abs"),
            "file.txt",
            OUT,
        ),
        case(
            "move under link",
            Op::Move("to_sentinel_rel/new/x"),
            "file.txt",
            OUT,
        ),
        case("move into chain", Op::Move("hop1"), "dir", OUT),
        case(
            "move out of link",
            Op::Move("."),
            "to_sentinel_rel/secret.txt",
            OUT,
        ),
        case(
            "move onto dangling out",
            Op::Move("dangling_out"),
            "file.txt",
            OUT,
        ),
        case(
            "move into abs inside",
            Op::Move("abs_inside_dir"),
            "file.txt",
            OUT,
        ),
    ]
}

#[test]
fn hostile_paths_are_confined() {
    let cases: Vec<Case> = [
        resolution_cases(),
        literal_name_cases(),
        symlink_read_cases(),
        symlink_write_cases(),
        symlink_mutation_cases(),
    ]
    .into_iter()
    .flatten()
    .collect();
    assert!(cases.len() >= 60, "only {} cases", cases.len());

    let mut failures = Vec::new();
    for c in &cases {
        let fx = hostile_fixture();
        let outside_before = fx.snapshot_outside();
        let all_before = fx.snapshot_all();
        let got = match run(&fx, c) {
            Ok(()) => OK,
            Err(e) => e.code(),
        };
        if got != c.expect {
            failures.push(format!(
                "{}: {:?} {:?}: got {got}, want {}",
                c.name, c.op, c.path, c.expect
            ));
        }
        if fx.snapshot_outside() != outside_before {
            failures.push(format!(
                "{}: changed something outside the workspace",
                c.name
            ));
        }
        if got != OK && fx.snapshot_all() != all_before {
            failures.push(format!("{}: refused but changed the workspace", c.name));
        }
        if let Some(check) = c.check
            && panic::catch_unwind(AssertUnwindSafe(|| check(&fx))).is_err()
        {
            failures.push(format!("{}: post-condition check failed", c.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
