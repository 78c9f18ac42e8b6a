//! Integration tests of the wasm route against the real guests (fetched and verified into the
//! cache dir named by `HYBOX_CACHE_DIR`, default `~/.cache/hybox`).

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use hybox_wasi_runtime::{
    Context, EngineOptions, GuestSpec, Language, Mount, NoTools, Program, PythonProgram, RunLimits,
    Runtime, StopReason, artifacts, run_program,
};

fn cache_dir() -> PathBuf {
    std::env::var_os("HYBOX_CACHE_DIR").map_or_else(
        || PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache/hybox"),
        PathBuf::from,
    )
}

fn runtime() -> Arc<Runtime> {
    static RT: OnceLock<Arc<Runtime>> = OnceLock::new();
    RT.get_or_init(|| {
        let cache = cache_dir();
        let files = artifacts::ensure(&cache, &|l| eprintln!("{l}")).expect("guest artifacts");
        Arc::new(
            Runtime::new(files, &cache, EngineOptions::default(), &|l| {
                eprintln!("{l}")
            })
            .expect("runtime"),
        )
    })
    .clone()
}

fn spec(workspace: &std::path::Path) -> GuestSpec {
    GuestSpec {
        cwd: "/workspace".into(),
        env: vec![("GREETING".into(), "hi".into())],
        mounts: vec![Mount {
            host: workspace.to_path_buf(),
            guest: "/workspace".into(),
            writable: true,
        }],
        memory_limit: 1 << 30,
        tools: Arc::new(NoTools),
    }
}

fn text(run: &hybox_wasi_runtime::ContextRun, i: usize) -> String {
    run.outcome.results[i]["text/plain"]
        .as_str()
        .expect("text/plain")
        .to_owned()
}

#[test]
fn python_context_keeps_state_and_returns_results() {
    let ws = tempfile::tempdir().expect("tempdir");
    let ctx = Context::start(&runtime(), Language::Python, spec(ws.path())).expect("context");
    let limits = RunLimits::default();
    let r = ctx
        .run("x = 41\nprint('hello')", &limits, None)
        .expect("run");
    assert_eq!(r.outcome.stdout.concat(), "hello\n");
    assert!(r.outcome.results.is_empty());
    let r = ctx.run("x + 1", &limits, None).expect("run");
    assert_eq!(text(&r, 0), "42");
    let r = ctx
        .run(
            "import os\nopen('out.txt','w').write(os.environ['GREETING'])\nos.getcwd()",
            &limits,
            None,
        )
        .expect("run");
    assert_eq!(text(&r, 0), "'/workspace'");
    assert_eq!(
        std::fs::read_to_string(ws.path().join("out.txt")).expect("file"),
        "hi"
    );
    let r = ctx.run("{'a': [1, 2]}", &limits, None).expect("run");
    assert_eq!(r.outcome.results[0]["application/json"], "{\"a\": [1, 2]}");
}

#[test]
fn python_errors_are_structured_and_context_survives() {
    let ws = tempfile::tempdir().expect("tempdir");
    let ctx = Context::start(&runtime(), Language::Python, spec(ws.path())).expect("context");
    let limits = RunLimits::default();
    ctx.run("y = 5", &limits, None).expect("run");
    let r = ctx
        .run("def f():\n    return 1/0\nf()", &limits, None)
        .expect("run");
    let err = r.outcome.error.clone().expect("error");
    assert_eq!(err.name, "ZeroDivisionError");
    assert_eq!(err.value, "division by zero");
    assert!(
        err.traceback.iter().any(|l| l.contains("line 2, in f")),
        "{:?}",
        err.traceback
    );
    let r = ctx.run("y", &limits, None).expect("run");
    assert_eq!(text(&r, 0), "5");
    let r = ctx.run("def (", &limits, None).expect("run");
    assert_eq!(r.outcome.error.expect("syntax error").name, "SyntaxError");
}

#[test]
fn python_infinite_loop_and_sleep_hit_the_deadline() {
    let ws = tempfile::tempdir().expect("tempdir");
    let ctx = Context::start(&runtime(), Language::Python, spec(ws.path())).expect("context");
    ctx.run("kept = 1", &RunLimits::default(), None)
        .expect("run");
    for code in [
        "print('before', flush=True)\nwhile True: pass",
        "import time\ntime.sleep(3600)",
    ] {
        let limits = RunLimits {
            timeout: Duration::from_millis(300),
            ..RunLimits::default()
        };
        let started = Instant::now();
        let r = ctx.run(code, &limits, None).expect("run");
        let took = started.elapsed();
        assert_eq!(r.outcome.stopped, Some(StopReason::Timeout), "{code}");
        assert!(took < Duration::from_secs(3), "{code}: took {took:?}");
    }
    // The poisoned instance was replaced: the context works again, with fresh state.
    let r = ctx
        .run("'kept' in globals()", &RunLimits::default(), None)
        .expect("run");
    assert!(r.restarted);
    assert_eq!(text(&r, 0), "False");
}

#[test]
fn python_output_cap_stops_the_run() {
    let ws = tempfile::tempdir().expect("tempdir");
    let ctx = Context::start(&runtime(), Language::Python, spec(ws.path())).expect("context");
    let limits = RunLimits {
        output_limit: 10_000,
        ..RunLimits::default()
    };
    let r = ctx
        .run("while True: print('x' * 100)", &limits, None)
        .expect("run");
    assert_eq!(r.outcome.stopped, Some(StopReason::OutputLimit));
    assert!(r.outcome.stdout.concat().len() <= 10_000);
}

#[test]
fn python_program_exit_codes() {
    let ws = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        ws.path().join("main.py"),
        "import sys\nprint(sys.argv[1:])\nsys.exit(3)\n",
    )
    .expect("write");
    let out = run_program(
        &runtime(),
        spec(ws.path()),
        Program::Python {
            argv: vec!["main.py".into(), "a".into()],
            program: PythonProgram::File("/workspace/main.py".into()),
        },
        RunLimits::default(),
        None,
    )
    .expect("program");
    assert_eq!(out.exit_code, Some(3));
    assert_eq!(out.stdout.concat(), "['a']\n");
    let out = run_program(
        &runtime(),
        spec(ws.path()),
        Program::Python {
            argv: vec!["-c".into()],
            program: PythonProgram::Code("raise ValueError('bad')".into()),
        },
        RunLimits::default(),
        None,
    )
    .expect("program");
    assert_eq!(out.exit_code, Some(1));
    assert!(out.stderr.concat().contains("ValueError: bad"));
}

#[test]
fn javascript_context_keeps_state() {
    let ws = tempfile::tempdir().expect("tempdir");
    let ctx = Context::start(&runtime(), Language::JavaScript, spec(ws.path())).expect("context");
    let limits = RunLimits::default();
    let r = ctx
        .run(
            "var x = 41; let y = 'persist'; function f(a) { return a * 2 }",
            &limits,
            None,
        )
        .expect("run");
    assert!(r.outcome.error.is_none(), "{:?}", r.outcome.error);
    let r = ctx
        .run(
            "console.log('log line'); x + 1 + ' ' + y + ' ' + f(21)",
            &limits,
            None,
        )
        .expect("run");
    assert_eq!(text(&r, 0), "42 persist 42");
    assert_eq!(r.outcome.stdout.concat(), "log line\n");
    let r = ctx
        .run("throw new TypeError('nope')", &limits, None)
        .expect("run");
    let err = r.outcome.error.clone().expect("error");
    assert_eq!(
        (err.name.as_str(), err.value.as_str()),
        ("TypeError", "nope")
    );
    let r = ctx.run("({a: [1, 2]})", &limits, None).expect("run");
    assert_eq!(r.outcome.results[0]["application/json"], "{\"a\":[1,2]}");
    let r = ctx.run("x", &limits, None).expect("run");
    assert_eq!(text(&r, 0), "41");
}

#[test]
fn javascript_infinite_loop_hits_the_deadline() {
    let ws = tempfile::tempdir().expect("tempdir");
    let ctx = Context::start(&runtime(), Language::JavaScript, spec(ws.path())).expect("context");
    let limits = RunLimits {
        timeout: Duration::from_millis(300),
        ..RunLimits::default()
    };
    let r = ctx.run("for(;;){}", &limits, None).expect("run");
    assert_eq!(r.outcome.stopped, Some(StopReason::Timeout));
    let r = ctx.run("1 + 1", &RunLimits::default(), None).expect("run");
    assert!(r.restarted);
    assert_eq!(text(&r, 0), "2");
}

#[test]
fn javascript_program_runs_a_file() {
    let ws = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        ws.path().join("main.js"),
        "console.log('from file', 6 * 7);\n",
    )
    .expect("write");
    let out = run_program(
        &runtime(),
        spec(ws.path()),
        Program::JavaScript {
            args: vec!["/workspace/main.js".into()],
        },
        RunLimits::default(),
        None,
    )
    .expect("program");
    assert_eq!(out.stdout.concat(), "from file 42\n");
    assert_eq!(out.exit_code, Some(0));
}
