//! Background processes: own session, logs kept on disk under a cap, a record file per process
//! that outlives the agent (`<state>/procs/<id>/{record,stdout,stderr,truncated}`), and
//! followers that get new chunks live.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::exec::{LINGER, watch_host};
use crate::launch::{Launch, pump};
use crate::proto::{
    CHUNK, LOG_CAP, Map, PROCS_DIR, RECORD_FILE, Record, STDERR_FILE, STDOUT_FILE, Status,
    TRUNCATED_FILE, Value, decode_wait_status, kind, valid_id, write_frame,
};
use crate::{Agent, Fail, lock, now_ms, sys};

const STDOUT: u8 = 1;
const STDERR: u8 = 2;

enum Follow {
    Data(u8, Vec<u8>, u64),
    Exit(Record),
    HostGone,
}

struct LogFile {
    path: PathBuf,
    file: Option<File>,
    len: u64,
}

impl LogFile {
    fn new(path: PathBuf) -> LogFile {
        let len = fs::metadata(&path).map_or(0, |m| m.len());
        LogFile {
            path,
            file: None,
            len,
        }
    }

    /// Appends; past the cap keeps the newest half. Whether older bytes were dropped.
    fn append(&mut self, data: &[u8]) -> io::Result<bool> {
        if self.file.is_none() {
            self.file = Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)?,
            );
        }
        if let Some(f) = self.file.as_mut() {
            f.write_all(data)?;
        }
        self.len += data.len() as u64;
        if self.len <= LOG_CAP {
            return Ok(false);
        }
        let keep = LOG_CAP / 2;
        let mut tail = Vec::with_capacity(keep as usize);
        let mut f = File::open(&self.path)?;
        f.seek(SeekFrom::Start(self.len - keep))?;
        f.take(keep).read_to_end(&mut tail)?;
        let tmp = self.path.with_extension("tmp");
        fs::write(&tmp, &tail)?;
        fs::rename(&tmp, &self.path)?;
        self.file = None;
        self.len = tail.len() as u64;
        Ok(true)
    }
}

struct Inner {
    record: Record,
    stdout: LogFile,
    stderr: LogFile,
    followers: Vec<Sender<Follow>>,
    open_pipes: u8,
}

struct Proc {
    dir: PathBuf,
    inner: Mutex<Inner>,
    changed: Condvar,
}

impl Proc {
    fn append(&self, stream: u8, data: Vec<u8>) {
        let mut inner = lock(&self.inner);
        let log = if stream == STDOUT {
            &mut inner.stdout
        } else {
            &mut inner.stderr
        };
        match log.append(&data) {
            Ok(true) => {
                let _ = File::create(self.dir.join(TRUNCATED_FILE));
            }
            Ok(false) => {}
            Err(e) => eprintln!("hybox-agent: log of {}: {e}", self.dir.display()),
        }
        let ts = now_ms();
        inner
            .followers
            .retain(|f| f.send(Follow::Data(stream, data.clone(), ts)).is_ok());
    }

    fn pipe_closed(&self) {
        let mut inner = lock(&self.inner);
        inner.open_pipes = inner.open_pipes.saturating_sub(1);
        self.changed.notify_all();
    }

    /// The end: waits briefly for the pipes to drain, then records and tells the followers.
    fn finish(&self, status: i32) {
        let deadline = Instant::now() + LINGER;
        let mut inner = lock(&self.inner);
        while inner.open_pipes > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            inner = match self.changed.wait_timeout(inner, left) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
        let (code, signal) = decode_wait_status(status);
        let r = &mut inner.record;
        r.exit_code = code;
        r.signal = signal;
        r.status = match (code, signal) {
            (Some(0), _) => Status::Completed,
            (Some(_), _) => Status::Failed,
            _ => Status::Killed,
        };
        r.ended_at_ms = Some(now_ms());
        if let Err(e) = write_record(&self.dir, r) {
            eprintln!("hybox-agent: record of {}: {e}", r.id);
        }
        let record = r.clone();
        for f in inner.followers.drain(..) {
            let _ = f.send(Follow::Exit(record.clone()));
        }
        self.changed.notify_all();
    }

    fn record(&self) -> Record {
        lock(&self.inner).record.clone()
    }
}

/// Where the exit callback of a starting process finds it.
enum Slot {
    Starting,
    Started(Arc<Proc>),
    Exited(i32),
}

/// The reaper must not block: the end's bookkeeping (which waits for the pipes) runs on its
/// own thread.
fn finish_later(proc: Arc<Proc>, status: i32) {
    let p = proc.clone();
    if crate::launch::thread("finish", move || p.finish(status)).is_err() {
        proc.finish(status);
    }
}

fn write_record(dir: &Path, r: &Record) -> io::Result<()> {
    let tmp = dir.join("record.tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(r.to_text().as_bytes())?;
        f.sync_all()?;
    }
    fs::rename(&tmp, dir.join(RECORD_FILE))
}

/// The background processes of this agent and of earlier ones on the same state dir.
pub struct Procs {
    root: PathBuf,
    procs: Mutex<HashMap<String, Arc<Proc>>>,
    next_seq: Mutex<u64>,
}

impl Procs {
    /// Loads the records under `state`; those still running belong to an earlier life: lost.
    pub fn load(state: &Path) -> io::Result<Procs> {
        let root = state.join(PROCS_DIR);
        fs::create_dir_all(&root)?;
        let mut procs = HashMap::new();
        let mut next_seq = 0;
        for entry in fs::read_dir(&root)? {
            let dir = entry?.path();
            let Ok(text) = fs::read_to_string(dir.join(RECORD_FILE)) else {
                continue;
            };
            let mut record = match Record::from_text(&text) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("hybox-agent: {}: {e}", dir.display());
                    continue;
                }
            };
            if record.status == Status::Running {
                record.status = Status::Lost;
                write_record(&dir, &record)?;
            }
            next_seq = next_seq.max(record.seq + 1);
            let proc = Proc {
                inner: Mutex::new(Inner {
                    stdout: LogFile::new(dir.join(STDOUT_FILE)),
                    stderr: LogFile::new(dir.join(STDERR_FILE)),
                    record: record.clone(),
                    followers: Vec::new(),
                    open_pipes: 0,
                }),
                dir,
                changed: Condvar::new(),
            };
            procs.insert(record.id, Arc::new(proc));
        }
        Ok(Procs {
            root,
            procs: Mutex::new(procs),
            next_seq: Mutex::new(next_seq),
        })
    }

    fn find(&self, id: &str) -> Result<Arc<Proc>, Fail> {
        lock(&self.procs)
            .get(id)
            .cloned()
            .ok_or_else(|| Fail::NotFound(id.to_owned()))
    }

    fn sorted(&self) -> Vec<Record> {
        let procs: Vec<Arc<Proc>> = lock(&self.procs).values().cloned().collect();
        let mut records: Vec<Record> = procs.iter().map(|p| p.record()).collect();
        records.sort_by_key(|r| (r.started_at_ms, r.seq));
        records
    }

    /// Whether any process is still running.
    pub fn any_running(&self) -> bool {
        self.sorted().iter().any(|r| r.status == Status::Running)
    }

    fn start(&self, agent: &'static Agent, req: &Map) -> Result<Record, Fail> {
        let id = req.str("id")?.to_owned();
        if !valid_id(&id) {
            return Err(Fail::Refused(format!(
                "bad process id {id:?}: want [A-Za-z0-9_.-]{{1,64}}"
            )));
        }
        let launch = Launch::from_map(req)?;
        let command = req.str_or_empty("command")?;
        let command = if command.is_empty() {
            launch.argv.join(" ")
        } else {
            command.to_owned()
        };
        // Held until the process is in the map: ids stay unique under concurrent starts.
        let mut procs = lock(&self.procs);
        if procs.contains_key(&id) {
            return Err(Fail::Exists(id));
        }
        let mut cmd = launch.command()?;
        let dir = self.root.join(&id);
        if dir.exists() {
            // Debris without a readable record: not a process we know.
            fs::remove_dir_all(&dir)?;
        }
        fs::create_dir_all(&dir)?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: sigprocmask and setsid are async-signal-safe and touch no shared memory.
        unsafe {
            cmd.pre_exec(|| {
                sys::child_unblock_signals()?;
                sys::child_setsid()
            });
        }
        let slot = Arc::new(Mutex::new(Slot::Starting));
        let on_exit_slot = slot.clone();
        let spawned = agent.spawn(
            &mut cmd,
            Box::new(move |status| {
                let mut slot = lock(&on_exit_slot);
                match std::mem::replace(&mut *slot, Slot::Exited(status)) {
                    Slot::Started(proc) => finish_later(proc, status),
                    Slot::Starting | Slot::Exited(_) => {}
                }
            }),
        );
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                let _ = fs::remove_dir_all(&dir);
                return Err(Fail::Refused(format!("{}: {e}", launch.argv[0])));
            }
        };
        let mut seq = lock(&self.next_seq);
        let record = Record {
            id: id.clone(),
            pid: child.id(),
            command,
            cwd: launch.cwd.clone(),
            status: Status::Running,
            exit_code: None,
            signal: None,
            started_at_ms: now_ms(),
            ended_at_ms: None,
            seq: *seq,
        };
        *seq += 1;
        drop(seq);
        write_record(&dir, &record)?;
        let proc = Arc::new(Proc {
            inner: Mutex::new(Inner {
                stdout: LogFile::new(dir.join(STDOUT_FILE)),
                stderr: LogFile::new(dir.join(STDERR_FILE)),
                record: record.clone(),
                followers: Vec::new(),
                open_pipes: 2,
            }),
            dir,
            changed: Condvar::new(),
        });
        for (pipe, stream) in [
            (
                child
                    .stdout
                    .take()
                    .map(|p| Box::new(p) as Box<dyn Read + Send>),
                STDOUT,
            ),
            (
                child
                    .stderr
                    .take()
                    .map(|p| Box::new(p) as Box<dyn Read + Send>),
                STDERR,
            ),
        ] {
            let Some(pipe) = pipe else { continue };
            let (tx, rx) = mpsc::channel::<Option<Vec<u8>>>();
            pump(pipe, tx, Some, None)?;
            let p = proc.clone();
            crate::launch::thread("log", move || {
                while let Ok(Some(chunk)) = rx.recv() {
                    p.append(stream, chunk);
                }
                p.pipe_closed();
            })?;
        }
        procs.insert(id, proc.clone());
        drop(procs);
        // Hand the process to the exit callback; it may have ended already.
        let mut s = lock(&slot);
        if let Slot::Exited(status) = *s {
            finish_later(proc, status);
        } else {
            *s = Slot::Started(proc);
        }
        drop(s);
        Ok(record)
    }

    fn kill(&self, id: &str, signal: i32) -> Result<Record, Fail> {
        let proc = self.find(id)?;
        let mut inner = lock(&proc.inner);
        if inner.record.status != Status::Running {
            return Ok(inner.record.clone());
        }
        let pid = inner.record.pid as i32;
        if sys::signal(-pid, signal).is_err() {
            let _ = sys::signal(pid, signal);
        }
        if matches!(signal, 1 | 2 | 3 | 9 | 15) {
            // Give a terminating signal a moment to land, so the answer says how it ended.
            let deadline = Instant::now() + Duration::from_millis(500);
            while inner.record.status == Status::Running {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                inner = match proc.changed.wait_timeout(inner, left) {
                    Ok((g, _)) => g,
                    Err(p) => p.into_inner().0,
                };
            }
        }
        Ok(inner.record.clone())
    }

    fn kill_all(&self, signal: i32) -> usize {
        let procs: Vec<Arc<Proc>> = lock(&self.procs).values().cloned().collect();
        let mut n = 0;
        for p in procs {
            let r = p.record();
            if r.status == Status::Running && sys::signal(-(r.pid as i32), signal).is_ok() {
                n += 1;
            }
        }
        n
    }

    fn logs(&self, id: &str) -> Result<Map, Fail> {
        let proc = self.find(id)?;
        let _inner = lock(&proc.inner);
        let stdout = fs::read(proc.dir.join(STDOUT_FILE)).unwrap_or_default();
        let stderr = fs::read(proc.dir.join(STDERR_FILE)).unwrap_or_default();
        let truncated = proc.dir.join(TRUNCATED_FILE).exists();
        Ok(Map::new()
            .with("stdout", stdout)
            .with("stderr", stderr)
            .with("truncated", truncated))
    }

    fn follow(&self, mut stream: UnixStream, id: &str) -> Result<(), Fail> {
        let proc = self.find(id)?;
        let (tx, rx) = mpsc::channel();
        let (stdout, stderr, ended) = {
            let mut inner = lock(&proc.inner);
            let stdout = fs::read(proc.dir.join(STDOUT_FILE)).unwrap_or_default();
            let stderr = fs::read(proc.dir.join(STDERR_FILE)).unwrap_or_default();
            let ended = (inner.record.status != Status::Running).then(|| inner.record.clone());
            if ended.is_none() {
                inner.followers.push(tx.clone());
            }
            (stdout, stderr, ended)
        };
        watch_host(stream.try_clone()?, tx, Follow::HostGone)?;
        write_frame(&mut stream, kind::OK, &Map::new().encode())?;
        let ts = now_ms();
        for (stream_id, kept) in [(STDOUT, stdout), (STDERR, stderr)] {
            for chunk in kept.chunks(CHUNK) {
                send_data(&mut stream, stream_id, chunk.to_vec(), ts)?;
            }
        }
        if let Some(r) = ended {
            write_frame(&mut stream, kind::PROC_EXIT, &r.to_map().encode())?;
            let _ = stream.shutdown(Shutdown::Both);
            return Ok(());
        }
        while let Ok(ev) = rx.recv() {
            match ev {
                Follow::Data(s, data, ts) => send_data(&mut stream, s, data, ts)?,
                Follow::Exit(r) => {
                    write_frame(&mut stream, kind::PROC_EXIT, &r.to_map().encode())?;
                    let _ = stream.shutdown(Shutdown::Both);
                    return Ok(());
                }
                Follow::HostGone => return Ok(()),
            }
        }
        Ok(())
    }
}

fn send_data(stream: &mut UnixStream, s: u8, data: Vec<u8>, ts: u64) -> io::Result<()> {
    let name = if s == STDOUT { "stdout" } else { "stderr" };
    let m = Map::new()
        .with("stream", name)
        .with("timestamp_ms", ts)
        .with("data", data);
    write_frame(stream, kind::LOG_DATA, &m.encode())
}

fn reply(stream: &mut UnixStream, m: Map) -> Result<(), Fail> {
    write_frame(stream, kind::OK, &m.encode())?;
    Ok(())
}

fn signal_of(req: &Map) -> Result<i32, Fail> {
    let s = req.opt_i32("signal")?.unwrap_or(sys::SIGTERM);
    if !(0..=64).contains(&s) {
        return Err(Fail::Refused(format!("bad signal {s}")));
    }
    Ok(s)
}

/// Serves the process requests.
pub fn procs_request(
    agent: &'static Agent,
    mut stream: UnixStream,
    request: u8,
    req: &Map,
) -> Result<(), Fail> {
    let procs = &agent.procs;
    match request {
        kind::START => {
            let r = procs.start(agent, req)?;
            reply(&mut stream, r.to_map())
        }
        kind::LIST => {
            let list = procs
                .sorted()
                .iter()
                .map(|r| Value::Map(r.to_map()))
                .collect();
            reply(&mut stream, Map::new().with("procs", Value::List(list)))
        }
        kind::GET => {
            let r = procs.find(req.str("id")?)?.record();
            reply(&mut stream, r.to_map())
        }
        kind::KILL => {
            let r = procs.kill(req.str("id")?, signal_of(req)?)?;
            reply(&mut stream, r.to_map())
        }
        kind::KILL_ALL => {
            let n = procs.kill_all(signal_of(req)?);
            reply(&mut stream, Map::new().with("count", n as u64))
        }
        kind::LOGS => {
            let m = procs.logs(req.str("id")?)?;
            reply(&mut stream, m)
        }
        kind::FOLLOW => procs.follow(stream, req.str("id")?),
        _ => Err(Fail::Protocol(format!("unknown request {request:#x}"))),
    }
}
