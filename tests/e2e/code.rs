//! Code contexts, runs with rich outputs, streaming, limits, and `exec` of interpreter commands.

use std::io::BufRead;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

use hybox_tests::{Server, cli};

fn context(s: &Server, sb: &str, language: &str) -> String {
    let a = s.post(
        &format!("/v1/sandboxes/{sb}/contexts"),
        &json!({ "language": language }),
    );
    assert_eq!(a.status, 201, "{a:?}");
    assert_eq!(a.json["language"], language);
    a.json["id"].as_str().expect("context id").to_owned()
}

fn run(s: &Server, sb: &str, ctx: &str, code: &str) -> Value {
    let a = s.post(
        &format!("/v1/sandboxes/{sb}/contexts/{ctx}/run"),
        &json!({ "code": code }),
    );
    assert_eq!(a.status, 200, "{code}: {a:?}");
    assert_eq!(a.json["route"], "wasi");
    a.json
}

fn stdout(v: &Value) -> String {
    v["logs"]["stdout"]
        .as_array()
        .expect("stdout chunks")
        .iter()
        .filter_map(Value::as_str)
        .collect()
}

#[test]
fn python_context_keeps_variables_and_imports() {
    let s = Server::start();
    let sb = s.sandbox("py");
    let ctx = context(&s, &sb, "python");
    let v = run(&s, &sb, &ctx, "import math\nx = 21\nprint('set')");
    assert_eq!(stdout(&v), "set\n");
    assert!(v["error"].is_null());
    let v = run(&s, &sb, &ctx, "x * 2");
    assert_eq!(v["results"][0]["text"], "42");
    let v = run(&s, &sb, &ctx, "math.sqrt(16)");
    assert_eq!(v["results"][0]["text"], "4.0");
    assert_eq!(v["executionCount"], 3);
    let v = run(&s, &sb, &ctx, "[1, {'a': None}]");
    assert_eq!(v["results"][0]["json"], json!([1, {"a": null}]));
    // Contexts are isolated from each other.
    let other = context(&s, &sb, "python");
    let v = run(&s, &sb, &other, "'x' in globals()");
    assert_eq!(v["results"][0]["text"], "False");
    // Listed, fetched, deleted.
    let list = s.get(&format!("/v1/sandboxes/{sb}/contexts"));
    assert_eq!(list.json["count"], 2);
    assert_eq!(
        s.get(&format!("/v1/sandboxes/{sb}/contexts/{ctx}")).json["executionCount"],
        4
    );
    assert_eq!(
        s.delete(&format!("/v1/sandboxes/{sb}/contexts/{ctx}"))
            .status,
        200
    );
    let gone = s.post(
        &format!("/v1/sandboxes/{sb}/contexts/{ctx}/run"),
        &json!({"code": "1"}),
    );
    assert_eq!(
        (gone.status, gone.json["code"].as_str()),
        (404, Some("CONTEXT_NOT_FOUND"))
    );
}

#[test]
fn matplotlib_figure_comes_back_as_png_without_savefig() {
    let s = Server::start();
    let sb = s.sandbox("plot");
    let ctx = context(&s, &sb, "python");
    let v = run(
        &s,
        &sb,
        &ctx,
        "import numpy as np\nimport matplotlib.pyplot as plt\nx = np.linspace(0, 6.3, 50)\nplt.plot(x, np.sin(x))\nplt.title('sine');",
    );
    let png = v["results"]
        .as_array()
        .expect("results")
        .iter()
        .find_map(|r| r["png"].as_str())
        .expect("a png result");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(png)
        .expect("base64");
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    assert!(bytes.len() > 2000, "a real plot, {} bytes", bytes.len());
    // The figure was consumed: the next run shows no image.
    let v = run(&s, &sb, &ctx, "1");
    assert!(
        v["results"]
            .as_array()
            .expect("results")
            .iter()
            .all(|r| r["png"].is_null())
    );
}

#[test]
fn pandas_dataframe_is_html_and_text() {
    let s = Server::start();
    let sb = s.sandbox("pd");
    let ctx = context(&s, &sb, "python");
    let v = run(
        &s,
        &sb,
        &ctx,
        "import pandas as pd\npd.DataFrame({'a': [1, 2], 'b': ['x', 'y']})",
    );
    let r = &v["results"][0];
    assert!(r["html"].as_str().expect("html").contains("<table"), "{r}");
    assert!(r["text"].as_str().expect("text").contains('a'));
    assert_eq!(r["formats"], json!(["text", "html"]));
    assert_eq!(r["data"]["text/html"], r["html"]);
    // Objects with other reprs: SVG and Markdown come through under their MIME types.
    let v = run(
        &s,
        &sb,
        &ctx,
        "class S:\n    def _repr_svg_(self): return '<svg/>'\n    def _repr_markdown_(self): return '**b**'\nS()",
    );
    assert_eq!(v["results"][0]["svg"], "<svg/>");
    assert_eq!(v["results"][0]["markdown"], "**b**");
    // display() shows several outputs in one run.
    let v = run(&s, &sb, &ctx, "display(1)\ndisplay('two')");
    let texts: Vec<&str> = v["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter_map(|r| r["text"].as_str())
        .collect();
    assert_eq!(texts, vec!["1", "'two'"]);
}

#[test]
fn errors_carry_name_value_and_traceback_and_the_context_goes_on() {
    let s = Server::start();
    let sb = s.sandbox("err");
    let ctx = context(&s, &sb, "python");
    run(&s, &sb, &ctx, "keep = 'me'");
    let v = run(
        &s,
        &sb,
        &ctx,
        "def inner():\n    raise KeyError('k')\ninner()",
    );
    assert_eq!(v["error"]["name"], "KeyError");
    assert_eq!(v["error"]["value"], "'k'");
    let tb: Vec<&str> = v["error"]["traceback"]
        .as_array()
        .expect("traceback")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(tb.iter().any(|l| l.contains("in inner")), "{tb:?}");
    assert!(
        tb.last().is_some_and(|l| l.starts_with("KeyError")),
        "{tb:?}"
    );
    let v = run(&s, &sb, &ctx, "print('partial')\n1/0");
    assert_eq!(stdout(&v), "partial\n");
    assert_eq!(v["error"]["name"], "ZeroDivisionError");
    let v = run(&s, &sb, &ctx, "keep");
    assert_eq!(v["results"][0]["text"], "'me'");
    let v = run(&s, &sb, &ctx, "if True\n  pass");
    assert_eq!(v["error"]["name"], "SyntaxError");
}

#[test]
fn infinite_loop_times_out_and_the_server_stays_healthy() {
    let s = Server::start();
    let sb = s.sandbox("loop");
    let ctx = context(&s, &sb, "python");
    run(&s, &sb, &ctx, "state = 1");
    let started = Instant::now();
    let a = s.post(
        &format!("/v1/sandboxes/{sb}/contexts/{ctx}/run"),
        &json!({"code": "print('before')\nwhile True: pass", "timeoutMs": 400}),
    );
    let took = started.elapsed();
    assert_eq!(
        (a.status, a.json["code"].as_str()),
        (408, Some("TIMEOUT")),
        "{a:?}"
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
    // What was printed before the deadline is kept.
    assert_eq!(a.json["details"]["logs"]["stdout"][0], "before\n");
    // A blocking sleep is interrupted too.
    let a = s.post(
        &format!("/v1/sandboxes/{sb}/contexts/{ctx}/run"),
        &json!({"code": "import time; time.sleep(600)", "timeoutMs": 300}),
    );
    assert_eq!(a.json["code"], "TIMEOUT");
    // The context comes back, fresh, and says so; the server answers at once.
    let v = run(&s, &sb, &ctx, "'state' in globals()");
    assert_eq!(v["results"][0]["text"], "False");
    assert_eq!(v["contextRestarted"], true);
    assert_eq!(s.get("/v1/health").json["status"], "ok");
    // Bad deadlines are refused.
    let a = s.post(
        &format!("/v1/sandboxes/{sb}/contexts/{ctx}/run"),
        &json!({"code": "1", "timeoutMs": 0}),
    );
    assert_eq!(a.json["code"], "INVALID_REQUEST");
}

#[test]
fn output_cap_stops_a_flood() {
    let s = Server::start();
    let sb = s.sandbox("flood");
    let ctx = context(&s, &sb, "python");
    let started = Instant::now();
    let a = s.post(
        &format!("/v1/sandboxes/{sb}/contexts/{ctx}/run"),
        &json!({"code": "while True: print('x' * 65536)", "timeoutMs": 60000}),
    );
    assert_eq!(
        (a.status, a.json["code"].as_str()),
        (413, Some("OUTPUT_LIMIT")),
        "status {}",
        a.status
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    let kept: usize = a.json["details"]["logs"]["stdout"]
        .as_array()
        .expect("logs")
        .iter()
        .filter_map(Value::as_str)
        .map(str::len)
        .sum();
    assert!(kept <= 16 << 20, "kept {kept}");
    assert!(kept > 1 << 20, "kept {kept}");
}

#[test]
fn memory_cap_raises_memory_error_not_a_crash() {
    let s = Server::start();
    let a = s.put("/v1/sandboxes/mem", &json!({"memoryLimitMb": 128}));
    assert_eq!(a.status, 201);
    let ctx = context(&s, "mem", "python");
    let v = run(&s, "mem", &ctx, "b = bytearray(512 * 1024 * 1024)");
    assert_eq!(v["error"]["name"], "MemoryError", "{v}");
    let v = run(&s, "mem", &ctx, "len(bytearray(1024))");
    assert_eq!(v["results"][0]["text"], "1024");
}

#[test]
fn streams_events_as_they_happen() {
    let s = Server::start();
    let sb = s.sandbox("sse");
    let ctx = context(&s, &sb, "python");
    let (status, events) = s.post_sse(
        &format!("/v1/sandboxes/{sb}/contexts/{ctx}/run"),
        &json!({"code": "import time, sys\nprint('a')\ntime.sleep(0.4)\nprint('b', file=sys.stderr)\n7 * 6"}),
    );
    assert_eq!(status, 200);
    let names: Vec<&str> = events.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(names, vec!["stdout", "stderr", "result", "complete"]);
    assert_eq!(events[0].1["text"], "a\n");
    assert_eq!(events[1].1["text"], "b\n");
    assert_eq!(events[2].1["text"], "42");
    assert_eq!(events[3].1["success"], true);
    // 'a' arrived before the sleep ended, not with everything at the end.
    let gap = events[1].2.duration_since(events[0].2);
    assert!(
        gap >= Duration::from_millis(250),
        "stdout was not streamed live ({gap:?})"
    );
    let (_, events) = s.post_sse(
        &format!("/v1/sandboxes/{sb}/contexts/{ctx}/run"),
        &json!({"code": "1/0"}),
    );
    let names: Vec<&str> = events.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(names, vec!["error", "complete"]);
    assert_eq!(events[0].1["name"], "ZeroDivisionError");
    let (_, events) = s.post_sse(
        &format!("/v1/sandboxes/{sb}/contexts/{ctx}/run"),
        &json!({"code": "while True: pass", "timeoutMs": 300}),
    );
    assert_eq!(
        events
            .last()
            .map(|(n, d, _)| (n.as_str(), d["code"].clone())),
        Some(("error", json!("TIMEOUT")))
    );
}

#[test]
fn a_client_that_goes_away_cancels_its_run() {
    let s = Server::start();
    let sb = s.sandbox("gone");
    let ctx = context(&s, &sb, "python");
    let agent = hybox_tests::agent();
    let mut resp = agent
        .post(format!("{}/v1/sandboxes/{sb}/contexts/{ctx}/run", s.base))
        .header("accept", "text/event-stream")
        .send(
            json!({"code": "print('started', flush=True)\nwhile True: pass", "timeoutMs": 120000})
                .to_string(),
        )
        .expect("stream");
    let mut reader = std::io::BufReader::new(resp.body_mut().as_reader());
    let mut line = String::new();
    while !line.contains("started") {
        line.clear();
        reader.read_line(&mut line).expect("read");
    }
    drop(reader);
    drop(resp);
    // If the loop were still running, this run would wait for it (two minutes).
    let started = Instant::now();
    let v = run(&s, &sb, &ctx, "'ok'");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the abandoned run was not cancelled"
    );
    assert_eq!(v["results"][0]["text"], "'ok'");
    assert_eq!(v["contextRestarted"], true);
}

#[test]
fn javascript_and_typescript_contexts() {
    let s = Server::start();
    let sb = s.sandbox("js");
    let js = context(&s, &sb, "javascript");
    run(
        &s,
        &sb,
        &js,
        "let counter = 40; function inc(n) { return n + 1 }",
    );
    let v = run(&s, &sb, &js, "console.log('hi'); inc(counter) + 1");
    assert_eq!(v["results"][0]["text"], "42");
    assert_eq!(stdout(&v), "hi\n");
    let v = run(&s, &sb, &js, "({a: [1, 2]})");
    assert_eq!(v["results"][0]["json"], json!({"a": [1, 2]}));
    let v = run(&s, &sb, &js, "null.x");
    assert_eq!(v["error"]["name"], "TypeError");
    let a = s.post(
        &format!("/v1/sandboxes/{sb}/contexts/{js}/run"),
        &json!({"code": "for(;;){}", "timeoutMs": 300}),
    );
    assert_eq!(a.json["code"], "TIMEOUT");
    let ts = context(&s, &sb, "typescript");
    run(
        &s,
        &sb,
        &ts,
        "interface P { x: number }\nconst p: P = { x: 20 };\nenum E { A = 1, B }",
    );
    let v = run(
        &s,
        &sb,
        &ts,
        "function dbl<T extends number>(n: T): number { return n * 2 }\ndbl(p.x) + E.B",
    );
    assert_eq!(v["results"][0]["text"], "42");
    let v = run(&s, &sb, &ts, "let broken: = 1");
    assert_eq!(v["error"]["name"], "SyntaxError");
    let bad = s.post(
        &format!("/v1/sandboxes/{sb}/contexts"),
        &json!({"language": "cobol"}),
    );
    assert_eq!(
        (bad.status, bad.json["code"].as_str()),
        (400, Some("UNSUPPORTED_LANGUAGE"))
    );
}

#[test]
fn run_without_context_uses_a_default_context_per_language() {
    let s = Server::start();
    let sb = s.sandbox("def");
    let a = s.post(
        &format!("/v1/sandboxes/{sb}/run"),
        &json!({"code": "v = 6"}),
    );
    assert_eq!(a.status, 200, "{a:?}");
    let a = s.post(
        &format!("/v1/sandboxes/{sb}/run"),
        &json!({"code": "v * 7"}),
    );
    assert_eq!(a.json["results"][0]["text"], "42");
    let a = s.post(
        &format!("/v1/sandboxes/{sb}/run"),
        &json!({"code": "typeof v", "language": "javascript"}),
    );
    assert_eq!(a.json["results"][0]["text"], "undefined");
}

#[test]
fn contexts_and_exec_share_the_workspace() {
    let s = Server::start();
    let sb = s.sandbox("share");
    let py = context(&s, &sb, "python");
    run(
        &s,
        &sb,
        &py,
        "open('/workspace/from_py.txt', 'w').write('py wrote this')",
    );
    let r = s.post(
        &format!("/v1/sandboxes/{sb}/files/read"),
        &json!({"path": "from_py.txt"}),
    );
    assert_eq!(r.json["content"], "py wrote this");
    let w = s.post(
        &format!("/v1/sandboxes/{sb}/files/write"),
        &json!({"path": "src/data.json", "content": "{\"n\": 5}"}),
    );
    assert_eq!(w.status, 200);
    let v = run(
        &s,
        &sb,
        &py,
        "import json\njson.load(open('src/data.json'))['n']",
    );
    assert_eq!(v["results"][0]["text"], "5");
    // Guests see only what they were granted.
    let v = run(
        &s,
        &sb,
        &py,
        "import os\n[os.path.exists(p) for p in ['/etc', '/root', '/proc', '/home', '/workspace', '/tmp']]",
    );
    assert_eq!(
        v["results"][0]["text"],
        "[False, False, False, False, True, True]"
    );
    let v = run(&s, &sb, &py, "open('/etc/passwd').read()");
    assert!(
        v["error"]["name"] == "FileNotFoundError" || v["error"]["name"] == "PermissionError",
        "{v}"
    );
    let v = run(&s, &sb, &py, "open('/workspace/../../etc/passwd').read()");
    assert!(!v["error"].is_null());
    let v = run(&s, &sb, &py, "open('/usr/local/lib/x', 'w')");
    assert!(
        !v["error"].is_null(),
        "the interpreter's files are read-only"
    );
}

fn exec(s: &Server, sb: &str, body: Value) -> (u16, Value) {
    let a = s.post(&format!("/v1/sandboxes/{sb}/exec"), &body);
    (a.status, a.json)
}

#[test]
fn exec_runs_interpreter_commands_with_exit_codes() {
    let s = Server::start();
    let sb = s.sandbox("ex");
    let w = s.post(&format!("/v1/sandboxes/{sb}/files/write"), &json!({"path": "app/main.py", "content": "import sys, os\nprint(sys.argv[1:], os.environ.get('FOO'), os.getcwd())\nsys.exit(int(sys.argv[1]))\n"}));
    assert_eq!(w.status, 200);
    let (st, v) = exec(
        &s,
        &sb,
        json!({"command": "python3 main.py 3", "cwd": "/workspace/app", "env": {"FOO": "bar"}}),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["stdout"], "['3'] bar /workspace/app\n");
    assert_eq!(
        (v["exitCode"].as_i64(), v["success"].as_bool()),
        (Some(3), Some(false))
    );
    assert_eq!(v["route"], "wasi");
    let (_, v) = exec(
        &s,
        &sb,
        json!({"command": "FOO=inline python -c 'import os; print(os.environ[\"FOO\"])'"}),
    );
    assert_eq!(v["stdout"], "inline\n");
    assert_eq!(v["exitCode"], 0);
    let (_, v) = exec(
        &s,
        &sb,
        json!({"command": "python3 -c 'raise SystemExit(\"fatal\")'"}),
    );
    assert_eq!(
        (v["exitCode"].as_i64(), v["stderr"].as_str()),
        (Some(1), Some("fatal\n"))
    );
    let (_, v) = exec(
        &s,
        &sb,
        json!({"command": "python3 -c 'import nosuchmodule'"}),
    );
    assert_eq!(v["exitCode"], 1);
    assert!(
        v["stderr"]
            .as_str()
            .expect("stderr")
            .contains("ModuleNotFoundError")
    );
    let (_, v) = exec(&s, &sb, json!({"command": "python3 -m json.tool --help"}));
    assert_eq!(v["exitCode"], 0, "{v}");
    let w = s.post(
        &format!("/v1/sandboxes/{sb}/files/write"),
        &json!({"path": "app/main.js", "content": "console.log('js', 6 * 7)"}),
    );
    assert_eq!(w.status, 200);
    let (_, v) = exec(&s, &sb, json!({"command": "node main.js", "cwd": "app"}));
    assert_eq!(
        (v["stdout"].as_str(), v["exitCode"].as_i64()),
        (Some("js 42\n"), Some(0)),
        "{v}"
    );
    let (_, v) = exec(&s, &sb, json!({"command": "node -e 'console.log(1 + 1)'"}));
    assert_eq!(v["stdout"], "2\n");
}

/// Whether the server under test runs containers (root, runc or crun, the image built).
fn containers(s: &Server) -> bool {
    s.get("/v1/health").json["containers"]["available"] == true
}

#[test]
fn exec_declines_with_reasons_and_deadlines() {
    let s = Server::start();
    let sb = s.sandbox("decl");
    let with_containers = containers(&s);
    for (cmd, reason) in [
        ("gcc hello.c", "uses program gcc"),
        ("apt-get install -y curl", "uses program apt-get"),
        ("ls | gcc -x c -", "uses program gcc"),
        ("for f in *.py; do python3 $f; done", "uses for"),
        ("echo $(whoami)", "uses command substitution"),
        ("sleep 10 &", "runs in the background (&)"),
    ] {
        // Forced into wasm, the planner's reason is the refusal.
        let (st, v) = exec(&s, &sb, json!({"command": cmd, "runtime": "wasi"}));
        assert_eq!(
            (st, v["code"].as_str()),
            (501, Some("ROUTE_UNAVAILABLE")),
            "{cmd}"
        );
        assert_eq!(v["details"]["routeReason"], reason, "{cmd}: {v}");
        assert_eq!(
            v["message"],
            format!("runtime wasi cannot run this command: {reason}"),
            "{cmd}: {v}"
        );
        // Left to the router, it goes to the container with the same reason, or is refused
        // with it when this host has no containers.
        let (st, v) = exec(&s, &sb, json!({"command": cmd, "timeoutMs": 20_000}));
        if with_containers {
            assert_eq!(st, 200, "{cmd}: {v}");
            assert_eq!(v["route"], "container", "{cmd}: {v}");
            assert_eq!(v["routeReason"], reason, "{cmd}: {v}");
        } else {
            assert_eq!(v["code"], "ROUTE_UNAVAILABLE", "{cmd}: {v}");
            assert_eq!(v["details"]["routeReason"], reason, "{cmd}: {v}");
            assert!(
                v["message"].as_str().expect("message").starts_with(reason),
                "{cmd}: {v}"
            );
        }
    }
    let (_, v) = exec(
        &s,
        &sb,
        json!({"command": "python3 -c 1", "runtime": "container"}),
    );
    if with_containers {
        assert_eq!(
            (v["route"].as_str(), v["exitCode"].as_i64()),
            (Some("container"), Some(0)),
            "{v}"
        );
    } else {
        assert_eq!(v["code"], "ROUTE_UNAVAILABLE");
    }
    let (_, v) = exec(&s, &sb, json!({"command": "python3 -c 1", "runtime": "vm"}));
    assert_eq!(v["code"], "INVALID_REQUEST");
    let started = Instant::now();
    let (st, v) = exec(
        &s,
        &sb,
        json!({"command": "python3 -c 'while True: pass'", "timeoutMs": 300}),
    );
    assert_eq!((st, v["code"].as_str()), (408, Some("TIMEOUT")));
    assert!(started.elapsed() < Duration::from_secs(5));
    // A cwd only the container has is taken there; the wasm route refuses it.
    let (st, v) = exec(
        &s,
        &sb,
        json!({"command": "python3 -c 1", "cwd": "/etc", "runtime": "wasi"}),
    );
    assert_eq!(
        (st, v["code"].as_str()),
        (501, Some("ROUTE_UNAVAILABLE")),
        "{v}"
    );
    let (st, v) = exec(&s, &sb, json!({"command": "ls", "cwd": "../../.."}));
    assert_eq!(
        (st, v["code"].as_str()),
        (400, Some("INVALID_REQUEST")),
        "{v}"
    );
}

#[test]
fn exec_streams_start_output_and_complete() {
    let s = Server::start();
    let sb = s.sandbox("exs");
    let (status, events) = s.post_sse(
        &format!("/v1/sandboxes/{sb}/exec"),
        &json!({"command": "python3 -c 'import sys; print(1); print(2, file=sys.stderr); sys.exit(4)'"}),
    );
    assert_eq!(status, 200);
    let names: Vec<&str> = events.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(names, vec!["start", "stdout", "stderr", "complete"]);
    assert_eq!(events[1].1["data"], "1\n");
    assert_eq!(events[3].1["exitCode"], 4);
    assert_eq!(events[3].1["route"], "wasi");
}

#[test]
fn cli_exec_run_ls_rm() {
    let s = Server::start();
    let (code, out, err) = cli(
        &s,
        &[
            "exec",
            "clibox",
            "--",
            "python3",
            "-c",
            "'import sys; print(\"cli\"); sys.exit(5)'",
        ],
    );
    assert_eq!((code, out.as_str()), (5, "cli\n"), "{err}");
    let (code, out, _) = cli(&s, &["run", "clibox", "--lang", "python", "-c", "6 * 7"]);
    assert_eq!((code, out.trim()), (0, "42"));
    let dir = tempfile::tempdir().expect("tempdir");
    let images = dir.path().join("imgs");
    let (code, out, err) = cli(
        &s,
        &[
            "run",
            "clibox",
            "-c",
            "import matplotlib.pyplot as plt\nplt.plot([1, 2])",
            "--save-images",
            images.to_str().expect("utf-8 path"),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("png image saved to"), "{out}");
    let png = std::fs::read(images.join("result-1.png"))
        .or_else(|_| std::fs::read(images.join("result-0.png")))
        .expect("png saved");
    assert_eq!(&png[..4], b"\x89PNG");
    let (code, out, _) = cli(&s, &["ls", "--json"]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["sandboxes"][0]["id"], "clibox");
    let (code, _, err) = cli(&s, &["exec", "clibox", "--", "gcc", "x.c"]);
    assert_ne!(code, 0);
    if containers(&s) {
        assert!(err.contains("x.c: No such file or directory"), "{err}");
    } else {
        assert!(err.contains("ROUTE_UNAVAILABLE"), "{err}");
    }
    let (code, _, _) = cli(&s, &["rm", "clibox"]);
    assert_eq!(code, 0);
    assert_eq!(s.get("/v1/sandboxes/clibox").status, 404);
}

#[test]
fn guests_call_host_tools_and_report_progress_through_the_door() {
    let s = Server::start();
    let sb = s.sandbox("tools");
    let ctx = context(&s, &sb, "python");
    let v = run(
        &s,
        &sb,
        &ctx,
        "import hybox\nhybox.call_tool('sandbox.info')['sandboxId']",
    );
    assert_eq!(v["results"][0]["text"], "'tools'", "{v}");
    let v = run(&s, &sb, &ctx, "hybox.call_tool('no.such.tool')");
    assert_eq!(v["error"]["name"], "RuntimeError");
    assert!(
        v["error"]["value"]
            .as_str()
            .expect("value")
            .contains("no tool named no.such.tool")
    );
    let (_, events) = s.post_sse(
        &format!("/v1/sandboxes/{sb}/contexts/{ctx}/run"),
        &json!({"code": "hybox.progress(1, 2, 'half')\nhybox.progress(2, 2, 'done')"}),
    );
    let progress: Vec<&Value> = events
        .iter()
        .filter(|(n, _, _)| n == "progress")
        .map(|(_, d, _)| d)
        .collect();
    assert_eq!(progress.len(), 2);
    assert_eq!(
        progress[0],
        &json!({"done": 1, "total": 2, "message": "half"})
    );
    // A second context of the same sandbox (not from the spare pool) has the same tools.
    let other = context(&s, &sb, "python");
    let v = run(
        &s,
        &sb,
        &other,
        "import hybox\nhybox.call_tool('tools.list')",
    );
    assert_eq!(
        v["results"][0]["json"],
        json!(["sandbox.info", "tools.list"])
    );
}
