//! The real agent binary (built by the crate's build script), run natively on the host with
//! `--socket PATH --state DIR`, driven through `AgentClient` with real processes.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use hybox_container_fallback::agent::{
    self, AgentClient, AgentError, ExecEvent, ExecSpec, ExecStream, LogEvent, LogStream, ProcInfo,
    ProcSpec, ProcStatus, PtyEvent, PtySpec,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PATH: &str = "/usr/local/bin:/usr/bin:/bin";
const LIMIT: Duration = Duration::from_secs(30);

fn agent_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("agent-bin");
        agent::install_binary(&dir).expect("install the agent binary")
    })
}

/// A running agent on a private socket and state dir; stopped (SIGTERM) on drop.
struct Agent {
    child: Option<Child>,
    dir: Option<tempfile::TempDir>,
    client: AgentClient,
}

impl Agent {
    async fn start() -> Agent {
        Agent::start_in(tempfile::tempdir().expect("tempdir")).await
    }

    async fn start_in(dir: tempfile::TempDir) -> Agent {
        let socket = dir.path().join("agent.sock");
        let bin = agent_binary();
        let mut tries = 0;
        let child = loop {
            let spawned = Command::new(bin)
                .arg("--socket")
                .arg(&socket)
                .arg("--state")
                .arg(dir.path().join("state"))
                .env("HYBOX_TEST_LEAK", "leaked")
                .stdin(Stdio::null())
                .spawn();
            match spawned {
                // ETXTBSY: another test's fork may still hold the binary open for writing.
                Err(e) if e.raw_os_error() == Some(26) && tries < 50 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
                other => break other.expect("spawn the agent"),
            }
        };
        let client = AgentClient::new(&socket);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if client.ping().await.is_ok() {
                break;
            }
            assert!(Instant::now() < deadline, "agent did not come up");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Agent {
            child: Some(child),
            dir: Some(dir),
            client,
        }
    }

    fn state(&self) -> PathBuf {
        self.dir.as_ref().expect("dir").path().join("state")
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("child").id()
    }

    /// Stops the agent with `sig` and waits; the dir survives for a restart.
    fn stop(mut self, sig: i32) -> tempfile::TempDir {
        self.halt(sig);
        self.dir.take().expect("dir")
    }

    fn halt(&mut self, sig: i32) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), sig);
            let deadline = Instant::now() + Duration::from_secs(5);
            while child.try_wait().expect("try_wait").is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.halt(libc::SIGTERM);
    }
}

fn signal(pid: u32, sig: i32) {
    let pid = i32::try_from(pid).expect("pid");
    // SAFETY: kill has no memory-safety preconditions.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// Whether `pid` is a live (not zombie) process.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

fn wait_gone(pid: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(pid) {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

fn spec(argv: &[&str]) -> ExecSpec {
    ExecSpec {
        argv: argv.iter().map(|s| (*s).to_owned()).collect(),
        env: vec![("PATH".into(), PATH.into())],
        cwd: "/".into(),
        ..ExecSpec::default()
    }
}

fn sh(script: &str) -> ExecSpec {
    spec(&["sh", "-c", script])
}

#[derive(Debug, Default)]
struct Output {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    code: Option<i32>,
    signal: Option<i32>,
    state: Vec<u8>,
}

async fn collect(mut s: ExecStream) -> Output {
    let mut out = Output::default();
    tokio::time::timeout(LIMIT, async {
        while let Some(ev) = s.next().await.expect("exec event") {
            match ev {
                ExecEvent::Stdout(b) => out.stdout.extend(b),
                ExecEvent::Stderr(b) => out.stderr.extend(b),
                ExecEvent::Exit {
                    code,
                    signal,
                    state,
                } => {
                    out.code = code;
                    out.signal = signal;
                    out.state = state;
                }
            }
        }
    })
    .await
    .expect("exec finished in time");
    out
}

async fn run(client: &AgentClient, spec: ExecSpec) -> Output {
    collect(client.exec(spec).await.expect("exec")).await
}

fn text(b: &[u8]) -> &str {
    std::str::from_utf8(b).expect("utf-8")
}

fn proc_spec(id: &str, script: &str) -> ProcSpec {
    ProcSpec {
        id: id.into(),
        argv: vec!["sh".into(), "-c".into(), script.into()],
        command: script.into(),
        env: vec![("PATH".into(), PATH.into())],
        cwd: "/".into(),
    }
}

/// Polls until the process is no longer running.
async fn ended(client: &AgentClient, id: &str) -> ProcInfo {
    let deadline = Instant::now() + LIMIT;
    loop {
        let info = client.get_process(id).await.expect("get");
        if info.status != ProcStatus::Running {
            return info;
        }
        assert!(Instant::now() < deadline, "{id} did not end");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn ping_reports_version_and_pid() {
    let a = Agent::start().await;
    let info = a.client.ping().await.expect("ping");
    assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(info.pid, a.pid());
}

#[tokio::test]
async fn install_binary_is_static_and_idempotent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = agent::install_binary(dir.path()).expect("install");
    let meta = std::fs::metadata(&first).expect("meta");
    let modified = meta.modified().expect("mtime");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(meta.permissions().mode() & 0o777, 0o755);
    let second = agent::install_binary(dir.path()).expect("install again");
    assert_eq!(first, second);
    assert_eq!(
        std::fs::metadata(&second)
            .expect("meta")
            .modified()
            .expect("mtime"),
        modified,
        "same bytes: not rewritten"
    );
    let bytes = std::fs::read(&first).expect("read");
    assert_eq!(&bytes[..4], b"\x7fELF");
    // A static executable has no PT_INTERP program header (no dynamic loader).
    let out = Command::new("file").arg(&first).output();
    if let Ok(out) = out {
        let desc = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(desc.contains("static"), "{desc}");
    }
}

#[tokio::test]
async fn exec_echo_and_argv() {
    let a = Agent::start().await;
    let out = run(&a.client, spec(&["printf", "%s|", "a", "b c", "", "ü"])).await;
    assert_eq!(text(&out.stdout), "a|b c||ü|");
    assert_eq!(out.code, Some(0));
    assert_eq!(out.signal, None);
    let out = run(&a.client, sh("echo out; echo err >&2")).await;
    assert_eq!(text(&out.stdout), "out\n");
    assert_eq!(text(&out.stderr), "err\n");
}

#[tokio::test]
async fn exec_env_is_exactly_what_was_given() {
    let a = Agent::start().await;
    let mut s = spec(&["env"]);
    s.env.push(("FOO".into(), "bar baz".into()));
    let out = run(&a.client, s).await;
    let env = text(&out.stdout);
    assert!(env.lines().any(|l| l == "FOO=bar baz"), "{env}");
    // The agent itself has HYBOX_TEST_LEAK: a child must not inherit it.
    assert!(!env.contains("HYBOX_TEST_LEAK"), "{env}");
    assert_eq!(env.lines().count(), 2, "{env}");
}

#[tokio::test]
async fn exec_cwd_and_bad_cwd() {
    let a = Agent::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = spec(&["pwd"]);
    s.cwd = dir.path().to_string_lossy().into_owned();
    let out = run(&a.client, s).await;
    assert_eq!(text(&out.stdout).trim(), dir.path().to_string_lossy());

    let mut s = spec(&["pwd"]);
    s.cwd = "/no/such/dir".into();
    match a.client.exec(s).await {
        Err(AgentError::Refused(m)) => assert!(m.contains("/no/such/dir"), "{m}"),
        other => panic!("expected Refused, got {other:?}"),
    }
}

#[tokio::test]
async fn exec_inherits_no_stray_fds() {
    let a = Agent::start().await;
    // Another connection open meanwhile: its socket must not leak either.
    let _busy = a.client.exec(sh("sleep 5")).await.expect("exec");
    let out = run(&a.client, spec(&["ls", "/proc/self/fd"])).await;
    // 0-2, and 3 is ls's own handle on the directory.
    assert_eq!(text(&out.stdout), "0\n1\n2\n3\n");
    let mut s = spec(&["ls", "/proc/self/fd"]);
    s.state_fd = true;
    let out = run(&a.client, s).await;
    assert_eq!(text(&out.stdout), "0\n1\n2\n3\n4\n");
}

#[tokio::test]
async fn exec_stdin_bytes_and_empty_stdin() {
    let a = Agent::start().await;
    let input: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
    let mut s = spec(&["cat"]);
    s.stdin = input.clone();
    let out = run(&a.client, s).await;
    assert_eq!(out.stdout, input);
    // Empty stdin is /dev/null: cat ends at once instead of waiting.
    let out = run(&a.client, spec(&["cat"])).await;
    assert!(out.stdout.is_empty());
    assert_eq!(out.code, Some(0));
}

#[tokio::test]
async fn exec_exit_codes_and_signals() {
    let a = Agent::start().await;
    let out = run(&a.client, sh("exit 7")).await;
    assert_eq!((out.code, out.signal), (Some(7), None));
    let out = run(&a.client, sh("kill -9 $$")).await;
    assert_eq!((out.code, out.signal), (None, Some(9)));
    // The agent blocks SIGTERM in its own threads; its children must not inherit that.
    let out = run(&a.client, sh("kill -TERM $$; sleep 5")).await;
    assert_eq!((out.code, out.signal), (None, Some(15)));
    let out = run(&a.client, spec(&["grep", "SigBlk", "/proc/self/status"])).await;
    assert!(
        text(&out.stdout).ends_with("0000000000000000\n"),
        "{}",
        text(&out.stdout)
    );
    let out = run(&a.client, spec(&["false"])).await;
    assert_eq!(out.code, Some(1));
}

#[tokio::test]
async fn exec_state_fd() {
    let a = Agent::start().await;
    let mut s = sh("echo out; printf 'cwd=/tmp\\0x=1' >&3");
    s.state_fd = true;
    let out = run(&a.client, s).await;
    assert_eq!(text(&out.stdout), "out\n");
    assert_eq!(out.state, b"cwd=/tmp\0x=1");
    // Without state_fd, fd 3 is not open in the command.
    let out = run(&a.client, sh("echo x >&3")).await;
    assert_ne!(out.code, Some(0));
    assert!(out.state.is_empty());
}

#[tokio::test]
async fn exec_streams_output_before_exit() {
    let a = Agent::start().await;
    let started = Instant::now();
    let mut s = a
        .client
        .exec(sh("echo a; sleep 0.5; echo b"))
        .await
        .expect("exec");
    let first = s.next().await.expect("event");
    assert_eq!(first, Some(ExecEvent::Stdout(b"a\n".to_vec())));
    assert!(
        started.elapsed() < Duration::from_millis(400),
        "first chunk took {:?}",
        started.elapsed()
    );
    let rest = collect(s).await;
    assert_eq!(text(&rest.stdout), "b\n");
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert_eq!(rest.code, Some(0));
}

#[tokio::test]
async fn exec_large_output_intact() {
    let a = Agent::start().await;
    let out = run(&a.client, spec(&["seq", "1", "1500000"])).await;
    let mut expected = String::new();
    for i in 1..=1_500_000 {
        expected.push_str(&i.to_string());
        expected.push('\n');
    }
    assert!(expected.len() > 10_000_000);
    assert_eq!(out.stdout.len(), expected.len());
    assert!(out.stdout == expected.as_bytes(), "content differs");
}

#[tokio::test]
async fn exec_background_job_does_not_hang() {
    let a = Agent::start().await;
    let started = Instant::now();
    let out = run(&a.client, sh("sleep 100 & echo started")).await;
    assert_eq!(text(&out.stdout), "started\n");
    assert_eq!(out.code, Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn dropping_exec_kills_its_process_group() {
    let a = Agent::start().await;
    let mut s = a
        .client
        .exec(sh("sleep 100 & echo $!; wait"))
        .await
        .expect("exec");
    let shell = s.pid();
    let Some(ExecEvent::Stdout(line)) = s.next().await.expect("event") else {
        panic!("expected the sleep's pid");
    };
    let sleeper: u32 = text(&line).trim().parse().expect("pid");
    assert!(alive(shell) && alive(sleeper));
    drop(s);
    assert!(wait_gone(shell), "shell {shell} survived");
    assert!(wait_gone(sleeper), "sleep {sleeper} survived");
}

#[tokio::test]
async fn exec_program_not_found_is_refused() {
    let a = Agent::start().await;
    match a.client.exec(spec(&["no-such-program-xyz"])).await {
        Err(AgentError::Refused(m)) => assert!(m.contains("not found"), "{m}"),
        other => panic!("expected Refused, got {other:?}"),
    }
    match a.client.exec(spec(&[])).await {
        Err(AgentError::Refused(_)) => {}
        other => panic!("expected Refused, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_parallel_execs() {
    let a = Agent::start().await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let client = a.client.clone();
        tasks.push(tokio::spawn(async move {
            let out = run(&client, sh(&format!("sleep 0.2; echo job{i}"))).await;
            (i, out)
        }));
    }
    let started = Instant::now();
    for t in tasks {
        let (i, out) = t.await.expect("task");
        assert_eq!(text(&out.stdout), format!("job{i}\n"));
        assert_eq!(out.code, Some(0));
    }
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn background_processes_lifecycle() {
    let a = Agent::start().await;
    let c = &a.client;
    let info = c
        .start_process(proc_spec(
            "web",
            "echo hello; echo oops >&2; exec sleep 100",
        ))
        .await
        .expect("start");
    assert_eq!(info.id, "web");
    assert_eq!(info.status, ProcStatus::Running);
    assert!(info.pid > 0 && alive(info.pid));
    assert_eq!(info.command, "echo hello; echo oops >&2; exec sleep 100");

    match c.start_process(proc_spec("web", "true")).await {
        Err(AgentError::Exists(id)) => assert_eq!(id, "web"),
        other => panic!("expected Exists, got {other:?}"),
    }
    for bad in ["a/b", "", "..", &"x".repeat(65), "sp ace"] {
        match c.start_process(proc_spec(bad, "true")).await {
            Err(AgentError::Refused(_)) => {}
            other => panic!("expected Refused for {bad:?}, got {other:?}"),
        }
    }
    c.start_process(proc_spec("ok", "echo done"))
        .await
        .expect("start ok");
    c.start_process(proc_spec("bad", "exit 3"))
        .await
        .expect("start bad");
    let ok = ended(c, "ok").await;
    assert_eq!((ok.status, ok.exit_code), (ProcStatus::Completed, Some(0)));
    assert!(ok.ended_at_ms.is_some_and(|t| t >= ok.started_at_ms));
    let bad = ended(c, "bad").await;
    assert_eq!((bad.status, bad.exit_code), (ProcStatus::Failed, Some(3)));

    let list = c.list_processes().await.expect("list");
    let ids: Vec<&str> = list.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["web", "ok", "bad"], "oldest first");

    let deadline = Instant::now() + LIMIT;
    let logs = loop {
        let logs = c.logs("web").await.expect("logs");
        if !logs.stdout.is_empty() && !logs.stderr.is_empty() {
            break logs;
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(text(&logs.stdout), "hello\n");
    assert_eq!(text(&logs.stderr), "oops\n");
    assert!(!logs.truncated);

    let killed = c.kill_process("web", libc::SIGTERM).await.expect("kill");
    let killed = if killed.status == ProcStatus::Running {
        ended(c, "web").await
    } else {
        killed
    };
    assert_eq!(
        (killed.status, killed.signal),
        (ProcStatus::Killed, Some(15))
    );
    assert!(wait_gone(info.pid));
    // Killing an ended one is fine and says how it ended.
    let again = c
        .kill_process("web", libc::SIGKILL)
        .await
        .expect("kill again");
    assert_eq!(again.status, ProcStatus::Killed);

    for r in [
        c.get_process("nope").await.map(drop),
        c.kill_process("nope", 15).await.map(drop),
        c.logs("nope").await.map(drop),
        c.follow_logs("nope").await.map(drop),
    ] {
        assert!(matches!(r, Err(AgentError::NotFound(_))), "{r:?}");
    }
}

#[tokio::test]
async fn follow_logs_kept_then_live_then_exit() {
    let a = Agent::start().await;
    let c = &a.client;
    c.start_process(proc_spec(
        "f",
        "echo one; sleep 0.5; echo two >&2; sleep 0.3; exit 4",
    ))
    .await
    .expect("start");
    let deadline = Instant::now() + LIMIT;
    while c.logs("f").await.expect("logs").stdout.is_empty() {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut follow = c.follow_logs("f").await.expect("follow");
    let mut events = Vec::new();
    tokio::time::timeout(LIMIT, async {
        while let Some(ev) = follow.next().await.expect("event") {
            events.push(ev);
        }
    })
    .await
    .expect("follow ended");
    let data: Vec<(LogStream, String)> = events
        .iter()
        .filter_map(|e| match e {
            LogEvent::Data { stream, data, .. } => Some((*stream, text(data).to_owned())),
            LogEvent::Exit(_) => None,
        })
        .collect();
    assert_eq!(
        data,
        [
            (LogStream::Stdout, "one\n".to_owned()),
            (LogStream::Stderr, "two\n".to_owned())
        ]
    );
    match events.last() {
        Some(LogEvent::Exit(info)) => {
            assert_eq!((info.status, info.exit_code), (ProcStatus::Failed, Some(4)));
        }
        other => panic!("last event {other:?}"),
    }
    for e in &events {
        if let LogEvent::Data { timestamp_ms, .. } = e {
            assert!(*timestamp_ms > 1_600_000_000_000);
        }
    }

    // Following an ended process: the kept bytes, then its end, at once.
    let mut follow = c.follow_logs("f").await.expect("follow");
    let mut n = 0;
    let last = loop {
        match follow.next().await.expect("event") {
            Some(LogEvent::Data { .. }) => n += 1,
            Some(LogEvent::Exit(info)) => break info,
            None => panic!("ended without Exit"),
        }
    };
    assert_eq!(n, 2);
    assert_eq!(last.exit_code, Some(4));
    assert_eq!(follow.next().await.expect("after exit"), None);
}

#[tokio::test]
async fn kill_all_signals_running_ones() {
    let a = Agent::start().await;
    let c = &a.client;
    for id in ["s1", "s2", "s3"] {
        c.start_process(proc_spec(id, "sleep 100"))
            .await
            .expect("start");
    }
    c.start_process(proc_spec("done", "true"))
        .await
        .expect("start");
    ended(c, "done").await;
    assert_eq!(c.kill_all(libc::SIGKILL).await.expect("kill_all"), 3);
    for id in ["s1", "s2", "s3"] {
        let info = ended(c, id).await;
        assert_eq!((info.status, info.signal), (ProcStatus::Killed, Some(9)));
    }
    assert_eq!(c.kill_all(libc::SIGKILL).await.expect("kill_all"), 0);
}

#[tokio::test]
async fn logs_are_capped_and_marked_truncated() {
    let a = Agent::start().await;
    let c = &a.client;
    c.start_process(proc_spec(
        "big",
        "head -c 9000000 /dev/zero | tr '\\0' a; echo END",
    ))
    .await
    .expect("start");
    let info = ended(c, "big").await;
    assert_eq!(info.status, ProcStatus::Completed);
    let logs = c.logs("big").await.expect("logs");
    assert!(logs.truncated);
    assert!(logs.stdout.len() <= 8 << 20, "{}", logs.stdout.len());
    assert!(logs.stdout.len() >= 4 << 20, "{}", logs.stdout.len());
    assert!(logs.stdout.ends_with(b"aaaaEND\n"));
    assert!(
        logs.stdout[..logs.stdout.len() - 4]
            .iter()
            .all(|&b| b == b'a')
    );
    let from_disk = agent::read_logs(&a.state(), "big").expect("read_logs");
    assert_eq!(from_disk, logs);
}

#[tokio::test]
async fn records_survive_a_restart_as_lost() {
    let a = Agent::start().await;
    let c = &a.client;
    let long = c
        .start_process(proc_spec("long", "echo hi; exec sleep 100"))
        .await
        .expect("start");
    c.start_process(proc_spec("short", "echo bye"))
        .await
        .expect("start");
    ended(c, "short").await;
    let deadline = Instant::now() + LIMIT;
    while c.logs("long").await.expect("logs").stdout.is_empty() {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A crash: the agent goes without a word; its process lives on, orphaned.
    let state = a.state();
    let dir = a.stop(libc::SIGKILL);
    signal(long.pid, libc::SIGKILL);

    let records = agent::read_records(&state).expect("read_records");
    let view: Vec<(&str, ProcStatus)> = records.iter().map(|r| (r.id.as_str(), r.status)).collect();
    assert_eq!(
        view,
        [("long", ProcStatus::Lost), ("short", ProcStatus::Completed)]
    );
    let logs = agent::read_logs(&state, "long").expect("read_logs");
    assert_eq!(text(&logs.stdout), "hi\n");
    assert!(matches!(
        agent::read_logs(&state, "nope"),
        Err(AgentError::NotFound(_))
    ));
    assert!(matches!(
        agent::read_logs(&state, "../state"),
        Err(AgentError::NotFound(_))
    ));

    let b = Agent::start_in(dir).await;
    let list = b.client.list_processes().await.expect("list");
    let view: Vec<(&str, ProcStatus)> = list.iter().map(|r| (r.id.as_str(), r.status)).collect();
    assert_eq!(
        view,
        [("long", ProcStatus::Lost), ("short", ProcStatus::Completed)]
    );
    assert_eq!(
        text(&b.client.logs("short").await.expect("logs").stdout),
        "bye\n"
    );
    assert!(matches!(
        b.client.start_process(proc_spec("long", "true")).await,
        Err(AgentError::Exists(_))
    ));
    // New ones sort after the old ones.
    b.client
        .start_process(proc_spec("new", "true"))
        .await
        .expect("start");
    let list = b.client.list_processes().await.expect("list");
    assert_eq!(list.last().map(|p| p.id.as_str()), Some("new"));
}

#[tokio::test]
async fn sigterm_kills_started_groups_and_records_it() {
    let a = Agent::start().await;
    let info = a
        .client
        .start_process(proc_spec("bg", "exec sleep 100"))
        .await
        .expect("start");
    let mut run = a.client.exec(sh("echo $$; sleep 100")).await.expect("exec");
    let fg = run.pid();
    assert!(matches!(run.next().await, Ok(Some(ExecEvent::Stdout(_)))));
    let state = a.state();
    let _dir = a.stop(libc::SIGTERM);
    assert!(wait_gone(info.pid), "background process survived");
    assert!(wait_gone(fg), "foreground command survived");
    let records = agent::read_records(&state).expect("records");
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].status, ProcStatus::Killed);
}

#[tokio::test]
async fn read_records_of_an_empty_state_dir() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(agent::read_records(dir.path()).expect("records").is_empty());
    assert!(matches!(
        agent::read_logs(dir.path(), "x"),
        Err(AgentError::NotFound(_))
    ));
}

#[tokio::test]
async fn wait_port_sees_a_listener() {
    let a = Agent::start().await;
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = probe.local_addr().expect("addr").port();
    drop(probe);
    let started = Instant::now();
    assert!(
        !a.client
            .wait_port(port, Duration::from_millis(300))
            .await
            .expect("wait_port")
    );
    assert!(started.elapsed() >= Duration::from_millis(300));

    let binder = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        let l = std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind again");
        std::thread::sleep(Duration::from_secs(3));
        drop(l);
    });
    assert!(
        a.client
            .wait_port(port, Duration::from_secs(5))
            .await
            .expect("wait_port")
    );
    binder.join().expect("binder");
}

#[tokio::test]
async fn connect_splices_bytes_with_half_close() {
    let a = Agent::start().await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        let mut got = Vec::new();
        // Reads to EOF: only a half-close from the client ends this.
        s.read_to_end(&mut got).expect("read");
        s.write_all(b"echo:").expect("write");
        s.write_all(&got).expect("write");
        got.len()
    });
    let mut stream = a.client.connect(port).await.expect("connect");
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    stream.write_all(&payload).await.expect("write");
    stream.shutdown().await.expect("half-close");
    let mut back = Vec::new();
    tokio::time::timeout(LIMIT, stream.read_to_end(&mut back))
        .await
        .expect("in time")
        .expect("read");
    assert_eq!(server.join().expect("server"), payload.len());
    assert_eq!(&back[..5], b"echo:");
    assert!(back[5..] == payload[..]);

    // The server speaks first: nothing of it may be lost in the handover.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        s.write_all(b"banner\n").expect("write");
    });
    let mut stream = a.client.connect(port).await.expect("connect");
    let mut back = Vec::new();
    stream.read_to_end(&mut back).await.expect("read");
    assert_eq!(back, b"banner\n");
    server.join().expect("server");

    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let closed = probe.local_addr().expect("addr").port();
    drop(probe);
    assert!(matches!(
        a.client.connect(closed).await,
        Err(AgentError::Refused(_))
    ));
}

async fn pty_until(pty: &mut agent::Pty, seen: &mut String, needle: &str) {
    tokio::time::timeout(LIMIT, async {
        while !seen.contains(needle) {
            match pty.next().await.expect("pty event") {
                Some(PtyEvent::Output(b)) => seen.push_str(&String::from_utf8_lossy(&b)),
                other => panic!("waiting for {needle:?}, got {other:?} after {seen:?}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {needle:?} in {seen:?}"));
}

#[tokio::test]
async fn pty_runs_a_shell_with_size_and_resize() {
    let a = Agent::start().await;
    let mut pty = a
        .client
        .pty(PtySpec {
            argv: vec!["sh".into()],
            env: vec![
                ("PATH".into(), PATH.into()),
                ("TERM".into(), "dumb".into()),
                ("PS1".into(), "$ ".into()),
            ],
            cwd: "/".into(),
            cols: 80,
            rows: 24,
        })
        .await
        .expect("pty");
    let mut seen = String::new();
    pty.input(b"stty size; tty\n").await.expect("input");
    pty_until(&mut pty, &mut seen, "24 80").await;
    pty_until(&mut pty, &mut seen, "/dev/pts/").await;
    pty.resize(100, 40).await.expect("resize");
    seen.clear();
    pty.input(b"stty size\n").await.expect("input");
    pty_until(&mut pty, &mut seen, "40 100").await;
    pty.input(b"exit 3\n").await.expect("input");
    let end = tokio::time::timeout(LIMIT, async {
        loop {
            match pty.next().await.expect("event") {
                Some(PtyEvent::Output(_)) => {}
                Some(end @ PtyEvent::Exit { .. }) => break end,
                None => panic!("no exit"),
            }
        }
    })
    .await
    .expect("exit in time");
    assert_eq!(
        end,
        PtyEvent::Exit {
            code: Some(3),
            signal: None
        }
    );
    assert_eq!(pty.next().await.expect("after exit"), None);
}

#[tokio::test]
async fn dropping_a_pty_hangs_up_its_session() {
    let a = Agent::start().await;
    let mut pty = a
        .client
        .pty(PtySpec {
            argv: vec!["sleep".into(), "100".into()],
            env: vec![("PATH".into(), PATH.into())],
            cwd: "/".into(),
            cols: 80,
            rows: 24,
        })
        .await
        .expect("pty");
    let pid = pty.pid();
    assert!(alive(pid));
    pty.input(b"x").await.expect("input");
    drop(pty);
    assert!(wait_gone(pid), "pty session survived the hangup");
}

#[tokio::test]
async fn garbage_and_oversized_frames_only_close_their_connection() {
    use std::os::unix::net::UnixStream;
    let a = Agent::start().await;
    let socket = a.client.socket().to_path_buf();
    let exchange = |bytes: &[u8]| {
        let mut s = UnixStream::connect(&socket).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        s.write_all(bytes).expect("write");
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut back = Vec::new();
        let _ = s.read_to_end(&mut back);
        back
    };
    exchange(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    exchange(&[0xff, 0xff, 0xff, 0xff, 0x01, 0, 0]);
    exchange(&[0, 0, 0, 0]);
    // A HELLO of a protocol version nobody speaks: an ERROR frame, not silence.
    let back = exchange(&[0, 0, 0, 1, 0x01]);
    assert_eq!(back.get(4), Some(&0x81), "{back:?}");
    // A valid hello, then a request with a malformed body.
    let mut hello = vec![0, 0, 0, 0, 0x01];
    let body = [
        &1u32.to_be_bytes()[..],
        &7u16.to_be_bytes(),
        b"version",
        b"u",
        &1u64.to_be_bytes(),
    ]
    .concat();
    hello[..4].copy_from_slice(&u32::try_from(body.len() + 1).expect("len").to_be_bytes());
    hello.extend(&body);
    hello.extend([0, 0, 0, 3, 0x11, 0xde, 0xad]);
    let back = exchange(&hello);
    assert!(back.len() > 5, "{back:?}");
    // An idle connection holds no one up.
    let _idle = UnixStream::connect(&socket).expect("connect");
    let info = a.client.ping().await.expect("ping after garbage");
    assert_eq!(info.pid, a.pid());
    let out = run(&a.client, spec(&["echo", "still here"])).await;
    assert_eq!(text(&out.stdout), "still here\n");
}

#[tokio::test]
async fn unreachable_agent() {
    let client = AgentClient::new("/nonexistent/hybox/agent.sock");
    assert!(matches!(
        client.ping().await,
        Err(AgentError::Unreachable(_))
    ));
}

#[tokio::test]
async fn listen_fd_mode_serves_an_inherited_socket() {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("host.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).expect("bind");
    let fd = listener.as_raw_fd();
    let mut cmd = Command::new(agent_binary());
    cmd.args(["--listen-fd", "3", "--state"])
        .arg(dir.path().join("state"))
        .stdin(Stdio::null());
    // SAFETY: dup2 is async-signal-safe; `fd` is open in the parent until spawn returns.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("spawn the agent");
    drop(listener);
    let client = AgentClient::new(&socket);
    let info = client.ping().await.expect("ping over the inherited socket");
    assert_eq!(info.pid, child.id());
    let out = run(&client, spec(&["ls", "/proc/self/fd"])).await;
    assert_eq!(
        text(&out.stdout),
        "0\n1\n2\n3\n",
        "the listening fd must not leak"
    );
    signal(child.id(), libc::SIGTERM);
    let status = child.wait().expect("wait");
    assert!(status.success(), "{status:?}");
}

/// A command that reads the rest of its command line on fd 4, as the session wrapper does.
fn tail_spec(tag: &str) -> ExecSpec {
    ExecSpec {
        state_fd: true,
        ..spec(&[
            "bash",
            "-c",
            &format!("IFS= read -r -d '' cmd <&4; exec 4<&-; echo {tag} >&3; eval \"$cmd\""),
        ])
    }
}

/// Runs `spec` with `tail` on its fd 4.
async fn exec_tail(client: &AgentClient, spec: ExecSpec, tail: &[u8]) -> ExecStream {
    client
        .exec(ExecSpec {
            tail: Some(tail.to_vec()),
            ..spec
        })
        .await
        .expect("exec")
}

#[tokio::test]
async fn a_prepared_spare_runs_the_next_identical_exec() {
    let a = Agent::start().await;
    let base = tail_spec("s1");
    let spare = a.client.prepare(&base, 1).await.expect("prepare");
    assert!(alive(spare), "the spare waits for its command");
    // Preparing again keeps the one that waits; asking for two starts one more.
    assert_eq!(a.client.prepare(&base, 1).await.expect("prepare"), spare);
    let second = a.client.prepare(&base, 2).await.expect("prepare");
    assert_ne!(second, spare);
    assert_eq!(a.client.prepare(&base, 2).await.expect("prepare"), second);
    // Same fields: the spare runs it (same pid), reading the tail on fd 4 and stdin as given.
    let s = a
        .client
        .exec(ExecSpec {
            tail: Some(b"echo \"tail ran: $(cat)\"; echo err >&2; exit 3".to_vec()),
            stdin: b"input".to_vec(),
            ..base.clone()
        })
        .await
        .expect("exec");
    assert_eq!(s.pid(), spare);
    let out = collect(s).await;
    assert_eq!(text(&out.stdout), "tail ran: input\n");
    assert_eq!(text(&out.stderr), "err\n");
    assert_eq!(out.code, Some(3));
    assert_eq!(text(&out.state), "s1\n");
    // The second spare takes the next one; then none is left and one starts its own, with
    // stdin empty (end of file at once).
    let s = exec_tail(&a.client, base.clone(), b"echo second").await;
    assert_eq!(s.pid(), second);
    assert_eq!(text(&collect(s).await.stdout), "second\n");
    let s = exec_tail(&a.client, base.clone(), b"cat; echo fresh").await;
    assert_ne!(s.pid(), spare);
    let out = collect(s).await;
    assert_eq!((text(&out.stdout), out.code), ("fresh\n", Some(0)));
}

#[tokio::test]
async fn a_spare_is_taken_only_by_the_same_fields_and_only_alive() {
    let a = Agent::start().await;
    let s1 = tail_spec("one");
    let spare = a.client.prepare(&s1, 1).await.expect("prepare");
    // Other arguments: not this spare, which stays parked.
    let s = exec_tail(&a.client, tail_spec("two"), b"echo other").await;
    assert_ne!(s.pid(), spare);
    let out = collect(s).await;
    assert_eq!((text(&out.stdout), text(&out.state)), ("other\n", "two\n"));
    assert!(alive(spare));
    // Killed while parked: the exec starts a new one and still runs.
    signal(spare, libc::SIGKILL);
    assert!(wait_gone(spare));
    let s = exec_tail(&a.client, s1.clone(), b"echo after").await;
    assert_ne!(s.pid(), spare);
    let out = collect(s).await;
    assert_eq!((text(&out.stdout), out.code), ("after\n", Some(0)));
    // At most four are kept: the oldest are killed.
    let mut pids = Vec::new();
    for i in 0..6 {
        pids.push(
            a.client
                .prepare(&tail_spec(&format!("p{i}")), 1)
                .await
                .expect("prepare"),
        );
    }
    assert!(
        wait_gone(pids[0]) && wait_gone(pids[1]),
        "the oldest spares go"
    );
    assert!(pids[2..].iter().all(|&p| alive(p)));
    // A spare of a program that cannot start is refused up front.
    let bad = a
        .client
        .prepare(
            &ExecSpec {
                tail: None,
                ..spec(&["/nonexistent/program"])
            },
            1,
        )
        .await;
    assert!(matches!(bad, Err(AgentError::Refused(_))), "{bad:?}");
}

#[tokio::test]
#[ignore = "a timing probe, run by hand: cargo test --test agent probe -- --ignored --nocapture"]
async fn probe_spare_latency() {
    use hybox_container_fallback::shell::{SessionState, tail, wrapper};
    let a = Agent::start().await;
    let st = SessionState {
        cwd: "/".into(),
        ..SessionState::default()
    };
    let argv = wrapper();
    let base = ExecSpec {
        state_fd: true,
        ..spec(&argv.iter().map(String::as_str).collect::<Vec<_>>())
    };
    for round in 0..3 {
        let mut with = Vec::new();
        let mut without = Vec::new();
        for _ in 0..30 {
            a.client.prepare(&base, 1).await.expect("prepare");
            tokio::time::sleep(Duration::from_millis(20)).await;
            let t = Instant::now();
            let out = run(
                &a.client,
                ExecSpec {
                    tail: Some(tail(":", &st)),
                    ..base.clone()
                },
            )
            .await;
            with.push(t.elapsed());
            assert_eq!(out.code, Some(0));
            let t = Instant::now();
            let out = run(
                &a.client,
                ExecSpec {
                    tail: Some(tail(":", &st)),
                    env: vec![("X".into(), "no spare".into())],
                    ..base.clone()
                },
            )
            .await;
            without.push(t.elapsed());
            assert_eq!(out.code, Some(0));
        }
        with.sort();
        without.sort();
        eprintln!(
            "round {round}: spare {:?}, fresh {:?}",
            with[15], without[15]
        );
    }
}
