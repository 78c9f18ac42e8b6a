//! Shell command lines on the wasm route, checked against bash and GNU coreutils on this host:
//! each command runs natively (`bash -c` in a copy of the fixture) and in hybox (a sandbox
//! holding the same files), and stdout and the exit code must match. Plus sessions, env
//! precedence, streaming, timeouts, cancellation and hostile input.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use hybox_tests::Server;

/// The fixture both sides start from.
fn fixture(root: &Path) {
    let w = |p: &str, c: &str| {
        let path = root.join(p);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, c).expect("write");
    };
    w(
        "data.csv",
        "name,age,city\nalice,30,paris\nbob,25,berlin\ncarol,35,paris\ndave,40,rome\neve,22,berlin\n",
    );
    w(
        "notes.txt",
        "alpha beta\nGamma delta\n\nepsilon Alpha\nzeta\nalpha\n",
    );
    w("words.txt", "pear\napple\nfig\napple\nbanana\nfig\napple\n");
    w("nums.txt", "10\n9\n100\n-3\n42\n7\n");
    w("src/main.py", "import sys\nprint('main', sys.argv[1:])\n");
    w("src/util.py", "def f():\n    return 1\n");
    w("src/lib/deep.txt", "deep\n");
    w("docs/readme.md", "# Title\n\nSome *text*.\n");
    w("noeol.txt", "no newline at end");
    w("empty.txt", "");
    w("unicode.txt", "héllo wörld\nnaïve café\n");
    w(".hidden", "secret\n");
}

/// Runs `cmd` with bash in `dir`: (stdout, exit code).
fn native(cmd: &str, dir: &Path) -> (String, i32) {
    let out = Command::new("bash")
        .arg("-c")
        .arg(cmd)
        .current_dir(dir)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("LC_ALL", "C")
        .env("TZ", "UTC")
        .env("HOME", dir)
        .output()
        .expect("bash runs");
    let text =
        String::from_utf8_lossy(&out.stdout).replace(&dir.display().to_string(), "/workspace");
    (text, out.status.code().unwrap_or(-1))
}

fn hybox_exec(s: &Server, sb: &str, body: Value) -> Value {
    let a = s.post(&format!("/v1/sandboxes/{sb}/exec"), &body);
    assert_eq!(a.status, 200, "{body}: {a:?}");
    a.json
}

/// Command lines that read the fixture without changing it.
const READ_ONLY: &[&str] = &[
    "echo hello world",
    "echo -n no newline",
    "echo -e 'a\\tb'",
    "echo 'single $quoted' \"double $HOME_NOT_SET\" mixed\\ escape",
    "printf '%s-%d\\n' a 1 b 2",
    "printf '%5.2f|%-4s|%x\\n' 3.14159 ab 255",
    "cat data.csv",
    "cat -n words.txt",
    "cat noeol.txt",
    "cat empty.txt",
    "cat missing.txt",
    "cat data.csv notes.txt",
    "head -3 data.csv",
    "head -n 2 words.txt nums.txt",
    "head -c 10 data.csv",
    "tail -2 data.csv",
    "tail -n +3 words.txt",
    "tail -c 5 noeol.txt",
    "wc data.csv",
    "wc -l data.csv notes.txt",
    "wc -w notes.txt",
    "wc -c unicode.txt",
    "cat data.csv | wc -l",
    "grep alpha notes.txt",
    "grep -i alpha notes.txt",
    "grep -v alpha notes.txt",
    "grep -n apple words.txt",
    "grep -c apple words.txt",
    "grep -E 'ap+le|fig' words.txt",
    "grep -w fig words.txt",
    "grep -x apple words.txt",
    "grep -o 'a[a-z]' words.txt",
    "grep -r deep src",
    "grep -l alpha notes.txt words.txt",
    "grep nothing words.txt",
    "grep -q apple words.txt && echo found",
    "grep '^[a-c]' words.txt",
    "grep 'a\\(p\\)\\1' words.txt",
    "sort words.txt",
    "sort -r words.txt",
    "sort -u words.txt",
    "sort -n nums.txt",
    "sort -rn nums.txt",
    "sort -t, -k2 -n data.csv",
    "sort words.txt | uniq",
    "sort words.txt | uniq -c",
    "sort words.txt | uniq -d",
    "sort words.txt | uniq -u",
    "cut -d, -f1 data.csv",
    "cut -d, -f1,3 data.csv",
    "cut -c1-3 words.txt",
    "tr a-z A-Z < words.txt",
    "tr -d aeiou < words.txt",
    "echo 'aaabbb   ccc' | tr -s ab",
    "cat words.txt | tr '[:lower:]' '[:upper:]' | sort | uniq -c",
    "cat data.csv | head -5 | wc -l",
    "grep paris data.csv | cut -d, -f1 | sort -r",
    "seq 5",
    "seq 2 4",
    "seq 1 3 10",
    "seq -s, 1 5",
    "seq -w 8 11",
    "basename /workspace/src/main.py",
    "basename /workspace/src/main.py .py",
    "dirname /workspace/src/main.py",
    "dirname file",
    "ls",
    "ls -a",
    "ls -1 src",
    "ls -R src",
    "ls -d src docs",
    "ls nothing",
    "find src -name '*.py'",
    // GNU find prints in directory order, which is the filesystem's; sort to compare.
    "find . -type d | sort",
    "find src -type f -name deep.txt",
    "find . -maxdepth 1 -name '*.txt' | sort",
    "cat missing.txt > /dev/null 2>&1; echo quiet $?",
    "echo gone > /dev/null",
    "wc -l < /dev/null",
    "test -f data.csv && echo file",
    "test -d src && echo dir",
    "test -e nothing || echo absent",
    "[ 3 -lt 5 ] && echo less",
    "[ abc = abc ] && echo same",
    "[ -z '' ] && echo empty",
    "true && echo yes || echo no",
    "false && echo yes || echo no",
    "! false && echo negated",
    "false; echo $?",
    "grep zzz words.txt; echo status $?",
    "echo one; echo two; echo three",
    "cd src && ls && cd .. && pwd",
    "cd nowhere",
    "pwd",
    "FOO=bar env | grep FOO",
    "X=1; echo $X",
    "X='a  b'; echo $X; echo \"$X\"",
    "export A=1 B=2; env | grep -E '^(A|B)=' | sort",
    "echo *.txt",
    "echo src/*.py",
    "echo '*.txt'",
    "echo nomatch*.zzz",
    "echo .h*",
    "yes | head -3",
    "yes abc | head -n 2",
    "seq 100000 | tail -1",
    "seq 1000 | grep 7 | wc -l",
    "cat nums.txt | sort -n | head -1",
    "echo hi > /dev/null; echo after",
    "cat < words.txt | head -2",
    "echo err 1>&2",
    "cat missing.txt 2>&1",
    "cat missing.txt 2>/dev/null; echo code $?",
    "du -s --apparent-size --block-size=1 empty.txt",
    "which ls",
    "which nosuchcommand; echo $?",
    "sleep 0.1 && echo slept",
    "python3 -c 'print(6*7)'",
    "python3 src/main.py a b",
    "cat words.txt | python3 -c 'import sys; print(len(sys.stdin.read().split()))'",
    "node -e 'console.log([1,2,3].map(x => x * 2).join(\",\"))'",
    "seq 3 | python3 -c 'import sys; print(sum(map(int, sys.stdin)))' | cat",
    "exit 3",
    "echo before; exit 4; echo after",
];

/// Command lines that change the files: each runs on a fresh copy on both sides.
const WRITING: &[&str] = &[
    "mkdir -p out/a/b && echo done > out/log.txt && cat out/log.txt && ls out",
    "mkdir out && mkdir out; echo $?",
    "echo one > f.txt; echo two >> f.txt; cat f.txt",
    "touch new.txt && ls new.txt",
    "cp words.txt copy.txt && cat copy.txt | wc -l",
    "cp -r src src2 && ls src2 src2/lib",
    "mv words.txt moved.txt && ls moved.txt && cat words.txt",
    "mv notes.txt docs && ls docs",
    "rm empty.txt && ls empty.txt",
    "rm -r src && ls",
    "rm nothing; echo $?",
    "rm -f nothing; echo $?",
    "rmdir docs; echo $?",
    "seq 10 > n.txt && sort -rn n.txt | head -2",
    "sort words.txt > sorted.txt; uniq sorted.txt",
    "echo abc | tee t.txt | tr a-c x-z; cat t.txt",
    "cd src; echo in-src > here.txt; cd ..; cat src/here.txt",
];

#[test]
fn command_lines_match_bash_and_gnu_tools() {
    let s = Server::start();
    let mut failures = Vec::new();
    let mut checked = 0;
    let native_dir = tempfile::tempdir().expect("tempdir");
    fixture(native_dir.path());
    let sb = s.sandbox("diff-ro");
    fixture(&s.workspace("diff-ro"));
    let mut run_case = |cmd: &str, sb: &str, native_root: &Path| {
        let (want_out, want_code) = native(cmd, native_root);
        let answer = s.post(
            &format!("/v1/sandboxes/{sb}/exec"),
            &json!({"command": cmd, "cwd": "/workspace"}),
        );
        checked += 1;
        if answer.status != 200 {
            failures.push(format!(
                "{cmd}\n    hybox refused: {} {}",
                answer.status, answer.json
            ));
            return;
        }
        let got = answer.json;
        let got_out = got["stdout"].as_str().unwrap_or_default().to_owned();
        let got_code = got["exitCode"].as_i64().unwrap_or(-1);
        if got_out != want_out || i64::from(want_code) != got_code {
            failures.push(format!(
                "{cmd}\n    bash:  {want_code} {want_out:?}\n    hybox: {got_code} {got_out:?} stderr {:?}",
                got["stderr"]
            ));
        }
    };
    for cmd in READ_ONLY {
        run_case(cmd, &sb, native_dir.path());
    }
    for (i, cmd) in WRITING.iter().enumerate() {
        let native_copy = tempfile::tempdir().expect("tempdir");
        fixture(native_copy.path());
        let id = format!("diff-w{i}");
        let _ = s.sandbox(&id);
        fixture(&s.workspace(&id));
        run_case(cmd, &id, native_copy.path());
    }
    assert!(checked >= 100, "only {checked} command lines");
    assert!(
        failures.is_empty(),
        "{} of {checked} differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn sessions_keep_cwd_and_env_and_are_isolated() {
    let s = Server::start();
    let a = s.put(
        "/v1/sandboxes/sess",
        &json!({"env": {"LEVEL": "sandbox", "ONLY_SB": "1"}}),
    );
    assert_eq!(a.status, 201);
    let w = s.post(
        "/v1/sandboxes/sess/files/mkdir",
        &json!({"path": "a/b", "recursive": true}),
    );
    assert_eq!(w.status, 200);
    let c = s.post(
        "/v1/sandboxes/sess/sessions",
        &json!({"id": "one", "env": {"LEVEL": "session"}}),
    );
    assert_eq!(
        (c.status, c.json["cwd"].as_str()),
        (201, Some("/workspace")),
        "{c:?}"
    );
    let c = s.post(
        "/v1/sandboxes/sess/sessions",
        &json!({"id": "two", "cwd": "/workspace/a"}),
    );
    assert_eq!(c.status, 201);
    let dup = s.post("/v1/sandboxes/sess/sessions", &json!({"id": "two"}));
    assert_eq!(
        (dup.status, dup.json["code"].as_str()),
        (409, Some("SESSION_EXISTS"))
    );
    let run = |session: &str, cmd: &str| {
        hybox_exec(&s, "sess", json!({"command": cmd, "session": session}))
    };
    // cd and export in one call hold for the next call of the same session only.
    run("one", "cd a/b; export MINE=one");
    assert_eq!(run("one", "pwd")["stdout"], "/workspace/a/b\n");
    assert_eq!(run("one", "echo $MINE")["stdout"], "one\n");
    assert_eq!(run("two", "pwd")["stdout"], "/workspace/a\n");
    assert_eq!(run("two", "echo \"[$MINE]\"")["stdout"], "[]\n");
    assert_eq!(run("default", "pwd")["stdout"], "/workspace\n");
    // Env precedence: per-call > session > sandbox.
    assert_eq!(run("one", "echo $LEVEL $ONLY_SB")["stdout"], "session 1\n");
    assert_eq!(run("two", "echo $LEVEL")["stdout"], "sandbox\n");
    let v = hybox_exec(
        &s,
        "sess",
        json!({"command": "echo $LEVEL", "session": "one", "env": {"LEVEL": "call"}}),
    );
    assert_eq!(v["stdout"], "call\n");
    assert_eq!(
        run("one", "echo $LEVEL")["stdout"],
        "session\n",
        "per-call env does not stick"
    );
    // The env reaches guest programs too.
    assert_eq!(
        run(
            "one",
            "python3 -c 'import os; print(os.environ[\"LEVEL\"], os.getcwd())'"
        )["stdout"],
        "session /workspace/a/b\n"
    );
    // setEnvVars.
    let e = s.post(
        "/v1/sandboxes/sess/sessions/two/env",
        &json!({"env": {"NEW": "x", "LEVEL": null}}),
    );
    assert_eq!(e.status, 200, "{e:?}");
    assert_eq!(run("two", "echo $NEW:$LEVEL")["stdout"], "x:\n");
    // $? carries over within a session.
    run("two", "false");
    assert_eq!(run("two", "echo $?")["stdout"], "1\n");
    // Listing, fetching, deleting.
    let list = s.get("/v1/sandboxes/sess/sessions");
    let ids: Vec<&str> = list.json["sessions"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|x| x["id"].as_str())
        .collect();
    assert_eq!(ids, vec!["default", "one", "two"]);
    assert_eq!(
        s.get("/v1/sandboxes/sess/sessions/one").json["cwd"],
        "/workspace/a/b"
    );
    assert_eq!(s.delete("/v1/sandboxes/sess/sessions/one").status, 200);
    let gone = s.post(
        "/v1/sandboxes/sess/exec",
        &json!({"command": "pwd", "session": "one"}),
    );
    assert_eq!(
        (gone.status, gone.json["code"].as_str()),
        (404, Some("SESSION_NOT_FOUND"))
    );
}

#[test]
fn sessions_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = Server::start_in(dir.path(), &[]);
    let _ = s.sandbox("keep");
    hybox_exec(
        &s,
        "keep",
        json!({"command": "mkdir -p d && cd d && export K=v"}),
    );
    s.kill();
    let s2 = Server::start_in(dir.path(), &[]);
    let v = hybox_exec(&s2, "keep", json!({"command": "pwd; echo $K"}));
    assert_eq!(v["stdout"], "/workspace/d\nv\n");
}

#[test]
fn deleting_a_session_ends_its_running_command() {
    let s = Server::start();
    let _ = s.sandbox("del");
    let c = s.post("/v1/sandboxes/del/sessions", &json!({"id": "victim"}));
    assert_eq!(c.status, 201);
    let base = s.base.clone();
    let waiter = std::thread::spawn(move || {
        let agent = hybox_tests::agent();
        let started = Instant::now();
        let mut resp = agent
            .post(format!("{base}/v1/sandboxes/del/exec"))
            .send(json!({"command": "sleep 60", "session": "victim"}).to_string())
            .expect("exec");
        let body: Value =
            serde_json::from_str(&resp.body_mut().read_to_string().expect("body")).expect("json");
        (resp.status().as_u16(), body, started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(s.delete("/v1/sandboxes/del/sessions/victim").status, 200);
    let (status, body, took) = waiter.join().expect("waiter");
    assert_eq!(
        (status, body["code"].as_str()),
        (410, Some("SESSION_DESTROYED")),
        "{body}"
    );
    assert!(took < Duration::from_secs(10));
    // The server is fine afterwards.
    assert_eq!(
        hybox_exec(&s, "del", json!({"command": "echo ok"}))["stdout"],
        "ok\n"
    );
}

#[test]
fn exec_streams_as_the_guest_writes_and_can_be_cancelled_by_id() {
    let s = Server::start();
    let _ = s.sandbox("stream");
    let (status, events) = s.post_sse(
        "/v1/sandboxes/stream/exec",
        &json!({"command": "echo first; sleep 0.5; echo second >&2; echo third"}),
    );
    assert_eq!(status, 200);
    let names: Vec<&str> = events.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(
        names,
        vec!["start", "stdout", "stderr", "stdout", "complete"]
    );
    assert!(
        events[0].1["execId"]
            .as_str()
            .is_some_and(|id| id.starts_with("exec-"))
    );
    let gap = events[2].2.duration_since(events[1].2);
    assert!(
        gap >= Duration::from_millis(300),
        "output came at the end ({gap:?})"
    );
    assert_eq!(events[4].1["exitCode"], 0);
    // Cancel by id: start a long command, read its id from `start`, DELETE it.
    let agent = hybox_tests::agent();
    let mut resp = agent
        .post(format!("{}/v1/sandboxes/stream/exec", s.base))
        .header("accept", "text/event-stream")
        .send(json!({"command": "sleep 30; echo never"}).to_string())
        .expect("stream");
    let mut reader = std::io::BufReader::new(resp.body_mut().as_reader());
    let mut line = String::new();
    let exec_id = loop {
        line.clear();
        std::io::BufRead::read_line(&mut reader, &mut line).expect("read");
        if let Some(data) = line.strip_prefix("data: ") {
            let v: Value = serde_json::from_str(data).expect("json");
            break v["execId"].as_str().expect("execId").to_owned();
        }
    };
    let started = Instant::now();
    let d = s.delete(&format!("/v1/sandboxes/stream/exec/{exec_id}"));
    assert_eq!(d.status, 200, "{d:?}");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut reader, &mut rest).expect("rest of stream");
    assert!(rest.contains("CANCELLED"), "{rest}");
    assert!(!rest.contains("never"));
    assert!(started.elapsed() < Duration::from_secs(5));
    let unknown = s.delete("/v1/sandboxes/stream/exec/exec-nope");
    assert_eq!(
        (unknown.status, unknown.json["code"].as_str()),
        (404, Some("EXEC_NOT_FOUND"))
    );
}

#[test]
fn timeouts_keep_partial_output_and_leave_nothing_running() {
    let s = Server::start();
    let _ = s.sandbox("slow");
    let started = Instant::now();
    let a = s.post(
        "/v1/sandboxes/slow/exec",
        &json!({"command": "echo started; sleep 20", "timeoutMs": 400}),
    );
    assert_eq!((a.status, a.json["code"].as_str()), (408, Some("TIMEOUT")));
    assert_eq!(a.json["details"]["stdout"], "started\n");
    assert!(started.elapsed() < Duration::from_secs(5));
    let a = s.post(
        "/v1/sandboxes/slow/exec",
        &json!({"command": "yes | grep y | cat > /dev/null", "timeoutMs": 500}),
    );
    assert_eq!(a.json["code"], "TIMEOUT", "{a:?}");
    // No thread of those runs is left burning CPU: a quick command answers at once.
    let started = Instant::now();
    assert_eq!(
        hybox_exec(&s, "slow", json!({"command": "echo fast"}))["stdout"],
        "fast\n"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn hostile_command_lines_stay_inside() {
    let s = Server::start();
    let _ = s.sandbox("host");
    let _ = s.sandbox("other");
    std::fs::write(s.workspace("other").join("secret.txt"), "other's secret").expect("write");
    std::os::unix::fs::symlink("/etc", s.workspace("host").join("etc-link")).expect("symlink");
    for cmd in [
        "cat ../../etc/passwd",
        "cat /etc/passwd",
        "cat etc-link/passwd",
        "cat ../../other/workspace/secret.txt",
        "ls /",
        "cd ../..; cat etc/passwd",
        "cat < /etc/passwd",
        "echo x > ../escape.txt",
        "echo x > etc-link/hybox-test",
        "cp /etc/passwd here",
        "find / -name passwd",
        "grep -r root /etc",
    ] {
        // The wasm route's confinement is under test: the container has an /etc of its own.
        let v = hybox_exec(&s, "host", json!({"command": cmd, "runtime": "wasi"}));
        let out = format!("{}{}", v["stdout"], v["stderr"]);
        assert!(
            !out.contains("root:x:0:0"),
            "{cmd} leaked /etc/passwd: {out}"
        );
        assert!(
            !out.contains("other's secret"),
            "{cmd} leaked another sandbox"
        );
    }
    assert!(!s.data_dir.join("sandboxes/escape.txt").exists());
    assert!(!Path::new("/etc/hybox-test").exists());
    // Huge output is capped, and the server answers.
    let a = s.post(
        "/v1/sandboxes/host/exec",
        &json!({"command": "yes 0123456789abcdef", "timeoutMs": 60000}),
    );
    assert_eq!(a.json["code"], "OUTPUT_LIMIT", "status {}", a.status);
    assert_eq!(
        hybox_exec(&s, "host", json!({"command": "seq 3 | tail -1"}))["stdout"],
        "3\n"
    );
}

#[test]
fn cli_exec_with_sessions() {
    let s = Server::start();
    let (code, out, err) = hybox_tests::cli(
        &s,
        &[
            "sessions",
            "clibox",
            "create",
            "--id",
            "work",
            "-e",
            "GREETING=hello",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("work /workspace"), "{out}");
    let (code, _, err) = hybox_tests::cli(
        &s,
        &[
            "exec",
            "clibox",
            "--session",
            "work",
            "--",
            "mkdir -p sub && cd sub",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = hybox_tests::cli(
        &s,
        &[
            "exec",
            "clibox",
            "--session",
            "work",
            "--",
            "pwd; echo $GREETING; exit 7",
        ],
    );
    assert_eq!((code, out.as_str()), (7, "/workspace/sub\nhello\n"));
    let (code, out, _) = hybox_tests::cli(&s, &["exec", "clibox", "--", "pwd"]);
    assert_eq!(
        (code, out.as_str()),
        (0, "/workspace\n"),
        "the default session is separate"
    );
    let (code, _, _) = hybox_tests::cli(&s, &["sessions", "clibox", "env", "work", "GREETING=bye"]);
    assert_eq!(code, 0);
    let (_, out, _) = hybox_tests::cli(
        &s,
        &[
            "exec",
            "clibox",
            "--session",
            "work",
            "--",
            "echo $GREETING",
        ],
    );
    assert_eq!(out, "bye\n");
    let (code, out, _) = hybox_tests::cli(&s, &["sessions", "clibox", "ls"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("work") && out.contains("/workspace/sub"),
        "{out}"
    );
    let (code, _, err) = hybox_tests::cli(
        &s,
        &["exec", "clibox", "--runtime", "wasi", "--", "gcc x.c"],
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("ROUTE_UNAVAILABLE") && err.contains("uses program gcc"),
        "{err}"
    );
    let (code, _, _) = hybox_tests::cli(&s, &["sessions", "clibox", "rm", "work"]);
    assert_eq!(code, 0);
    let (code, _, err) =
        hybox_tests::cli(&s, &["exec", "clibox", "--session", "work", "--", "pwd"]);
    assert_ne!(code, 0);
    assert!(err.contains("SESSION_NOT_FOUND"), "{err}");
}

#[test]
fn bad_env_names_and_missing_cwds_are_refused_up_front() {
    let s = Server::start();
    let _ = s.sandbox("val");
    let refused = |a: hybox_tests::Answer| {
        assert_eq!(
            (a.status, a.json["code"].as_str()),
            (400, Some("INVALID_REQUEST")),
            "{a:?}"
        );
    };
    for env in [
        json!({"A=B": "1"}),
        json!({"": "1"}),
        json!({"1X": "1"}),
        json!({"X": "a\u{0}b"}),
    ] {
        refused(s.post(
            "/v1/sandboxes/val/exec",
            &json!({"command": "echo hi", "env": env}),
        ));
        refused(s.post("/v1/sandboxes/val/sessions", &json!({"env": env})));
        refused(s.post(
            "/v1/sandboxes/val/contexts",
            &json!({"language": "python", "env": env}),
        ));
        refused(s.put("/v1/sandboxes/val2", &json!({"env": env})));
        refused(s.post(
            "/v1/sandboxes/val/sessions/default/env",
            &json!({"env": env}),
        ));
    }
    refused(s.post(
        "/v1/sandboxes/val/exec",
        &json!({"command": "pwd", "cwd": "/workspace/missing"}),
    ));
    refused(s.post(
        "/v1/sandboxes/val/contexts",
        &json!({"language": "python", "cwd": "missing"}),
    ));
    refused(s.post(
        "/v1/sandboxes/val/sessions",
        &json!({"cwd": "/tmp/missing"}),
    ));
    let w = s.post("/v1/sandboxes/val/files/mkdir", &json!({"path": "there"}));
    assert_eq!(w.status, 200);
    assert_eq!(
        hybox_exec(&s, "val", json!({"command": "pwd", "cwd": "there"}))["stdout"],
        "/workspace/there\n"
    );
    let c = s.post(
        "/v1/sandboxes/val/contexts",
        &json!({"language": "javascript", "cwd": "/workspace/there"}),
    );
    assert_eq!(c.status, 201, "{c:?}");
}

#[test]
fn a_relative_call_cwd_starts_from_the_session_cwd() {
    let s = Server::start();
    let _ = s.sandbox("rel");
    hybox_exec(&s, "rel", json!({"command": "mkdir -p a/b && cd a"}));
    assert_eq!(
        hybox_exec(&s, "rel", json!({"command": "pwd", "cwd": "b"}))["stdout"],
        "/workspace/a/b\n"
    );
    assert_eq!(
        hybox_exec(&s, "rel", json!({"command": "pwd"}))["stdout"],
        "/workspace/a\n"
    );
}

#[test]
fn a_command_queued_behind_another_keeps_its_own_deadline() {
    let s = Server::start();
    let _ = s.sandbox("queue");
    let base = s.base.clone();
    let long = std::thread::spawn(move || {
        let agent = hybox_tests::agent();
        agent
            .post(format!("{base}/v1/sandboxes/queue/exec"))
            .send(json!({"command": "sleep 3; echo long"}).to_string())
            .map(|mut r| r.body_mut().read_to_string().unwrap_or_default())
    });
    std::thread::sleep(Duration::from_millis(300));
    // Same (default) session: it has to wait its turn, but not past its own deadline.
    let started = Instant::now();
    let a = s.post(
        "/v1/sandboxes/queue/exec",
        &json!({"command": "echo short", "timeoutMs": 400}),
    );
    assert_eq!(
        (a.status, a.json["code"].as_str()),
        (408, Some("TIMEOUT")),
        "{a:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // The same holds for a code context busy with another run.
    let ctx = s.post(
        "/v1/sandboxes/queue/contexts",
        &json!({"language": "python"}),
    );
    let id = ctx.json["id"].as_str().expect("context").to_owned();
    let base = s.base.clone();
    let id2 = id.clone();
    let busy = std::thread::spawn(move || {
        let agent = hybox_tests::agent();
        agent
            .post(format!("{base}/v1/sandboxes/queue/contexts/{id2}/run"))
            .send(json!({"code": "import time; time.sleep(2); 'done'"}).to_string())
            .map(|mut r| r.body_mut().read_to_string().unwrap_or_default())
    });
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let a = s.post(
        &format!("/v1/sandboxes/queue/contexts/{id}/run"),
        &json!({"code": "1", "timeoutMs": 300}),
    );
    assert_eq!(a.json["code"], "TIMEOUT", "{a:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(long.join().expect("long").expect("answer").contains("long"));
    assert!(busy.join().expect("busy").expect("answer").contains("done"));
}
