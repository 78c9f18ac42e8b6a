//! One run of guest code: its limits, what it printed, what it displayed, and why it stopped.
//!
//! A run's state is shared between the thread that drives the guest, the output streams the
//! guest writes to, the door and the epoch callback; all of them go through [`RunShared`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;

/// Default deadline of a run when the caller gives none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default cap on what one run may print, per stream.
pub const DEFAULT_OUTPUT_LIMIT: u64 = 16 << 20;

/// A token a caller keeps to cancel a run from another thread.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A fresh, un-cancelled token.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
    /// Asks the run to stop at its next check (at most one epoch tick later).
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    /// Whether [`Self::cancel`] was called.
    #[must_use]
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// What a caller asks of one run.
#[derive(Debug, Clone)]
pub struct RunLimits {
    /// Wall-clock deadline.
    pub timeout: Duration,
    /// Cap per output stream, in bytes; past it the run is stopped with `OUTPUT_LIMIT`.
    pub output_limit: u64,
    /// Cancels the run when set.
    pub cancel: CancelToken,
}

impl Default for RunLimits {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_TIMEOUT,
            output_limit: DEFAULT_OUTPUT_LIMIT,
            cancel: CancelToken::new(),
        }
    }
}

/// A rich output: MIME type → data (text as is, binary types base64).
pub type MimeBundle = serde_json::Map<String, serde_json::Value>;

/// A structured error raised by user code (not a failure of the sandbox).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CodeError {
    /// The exception's class name (`ZeroDivisionError`, `TypeError`).
    pub name: String,
    /// Its message.
    pub value: String,
    /// The traceback, one line per entry.
    pub traceback: Vec<String>,
}

/// Something a run produced, in the order it happened.
#[derive(Debug, Clone)]
pub enum Event {
    /// Bytes the guest wrote to stdout (decoded as UTF-8, lossily at invalid bytes).
    Stdout(String),
    /// Bytes the guest wrote to stderr.
    Stderr(String),
    /// A rich result: the value of a final expression or an explicit display.
    Result(MimeBundle),
    /// An error raised by user code.
    Error(CodeError),
    /// Progress reported by the guest through the door.
    Progress {
        /// Units done.
        done: u64,
        /// Units in all, when known.
        total: Option<u64>,
        /// What is being done.
        message: String,
    },
}

/// Why a run was stopped by the sandbox rather than ending by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The deadline passed.
    Timeout,
    /// The caller cancelled.
    Cancelled,
    /// An output stream passed its cap.
    OutputLimit,
}

/// How a run ended, with everything it produced.
#[derive(Debug, Clone, Default)]
pub struct RunOutcome {
    /// Rich results in order.
    pub results: Vec<MimeBundle>,
    /// stdout, in the chunks the guest wrote.
    pub stdout: Vec<String>,
    /// stderr, in the chunks the guest wrote.
    pub stderr: Vec<String>,
    /// The user-code error, if any.
    pub error: Option<CodeError>,
    /// Exit status, for program runs (`python3 file.py`, `node file.js`).
    pub exit_code: Option<i32>,
    /// Set when the sandbox stopped the run (the guest instance is then discarded).
    pub stopped: Option<StopReason>,
    /// Set when the guest trapped for another reason (the instance is discarded).
    pub trap: Option<String>,
    /// Whether a memory grow was refused during the run.
    pub memory_limit_hit: bool,
    /// Wall time of the run.
    pub duration: Duration,
}

/// Receives events as they happen.
pub type EventSink = Box<dyn FnMut(Event) + Send>;

/// The state of the current run, behind one lock.
pub(crate) struct RunState {
    pub active: bool,
    pub started: Instant,
    pub deadline: Option<Instant>,
    pub cancel: CancelToken,
    pub output_limit: u64,
    pub stop: Option<StopReason>,
    pub sink: Option<EventSink>,
    pub outcome: RunOutcome,
    out_bytes: u64,
    err_bytes: u64,
    out_carry: Vec<u8>,
    err_carry: Vec<u8>,
}

impl std::fmt::Debug for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunState")
            .field("active", &self.active)
            .field("stop", &self.stop)
            .finish_non_exhaustive()
    }
}

/// The run state shared by everything that touches a guest.
#[derive(Debug, Clone)]
pub(crate) struct RunShared(Arc<Mutex<RunState>>);

/// Which output stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

impl RunShared {
    pub fn new() -> Self {
        Self(Arc::new(Mutex::new(RunState {
            active: false,
            started: Instant::now(),
            deadline: None,
            cancel: CancelToken::new(),
            output_limit: DEFAULT_OUTPUT_LIMIT,
            stop: None,
            sink: None,
            outcome: RunOutcome::default(),
            out_bytes: 0,
            err_bytes: 0,
            out_carry: Vec::new(),
            err_carry: Vec::new(),
        })))
    }

    pub fn lock(&self) -> MutexGuard<'_, RunState> {
        // A panic while holding this lock is a bug in hybox; the state is still plain data.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts a run: resets the outcome and arms the limits.
    pub fn begin(&self, limits: &RunLimits, sink: Option<EventSink>) {
        let mut s = self.lock();
        let now = Instant::now();
        s.active = true;
        s.started = now;
        s.deadline = Some(now + limits.timeout);
        s.cancel = limits.cancel.clone();
        s.output_limit = limits.output_limit;
        s.stop = None;
        s.sink = sink;
        s.outcome = RunOutcome::default();
        s.out_bytes = 0;
        s.err_bytes = 0;
        s.out_carry.clear();
        s.err_carry.clear();
    }

    /// Ends a run and hands back its outcome.
    pub fn finish(&self) -> RunOutcome {
        let mut s = self.lock();
        for stream in [Stream::Stdout, Stream::Stderr] {
            let carry = std::mem::take(match stream {
                Stream::Stdout => &mut s.out_carry,
                Stream::Stderr => &mut s.err_carry,
            });
            if !carry.is_empty() {
                let text = String::from_utf8_lossy(&carry).into_owned();
                s.emit_text(stream, text);
            }
        }
        s.active = false;
        s.deadline = None;
        s.sink = None;
        s.outcome.stopped = s.outcome.stopped.or(s.stop);
        s.outcome.duration = s.started.elapsed();
        std::mem::take(&mut s.outcome)
    }

    /// Whether the guest must be stopped now, and why. Called from the epoch callback and from
    /// host calls that wait.
    pub fn should_stop(&self) -> Option<StopReason> {
        let mut s = self.lock();
        if s.stop.is_none() && s.active {
            if s.cancel.is_cancelled() {
                s.stop = Some(StopReason::Cancelled);
            } else if s.deadline.is_some_and(|d| Instant::now() >= d) {
                s.stop = Some(StopReason::Timeout);
            }
        }
        s.stop
    }

    /// Records bytes the guest wrote.
    pub fn write(&self, stream: Stream, bytes: &[u8]) {
        let mut s = self.lock();
        if s.stop.is_some() {
            return;
        }
        let limit = s.output_limit;
        let used = match stream {
            Stream::Stdout => &mut s.out_bytes,
            Stream::Stderr => &mut s.err_bytes,
        };
        let room = limit.saturating_sub(*used);
        let take = usize::try_from(room).map_or(bytes.len(), |r| r.min(bytes.len()));
        *used += take as u64;
        let over = take < bytes.len();
        let carry = match stream {
            Stream::Stdout => &mut s.out_carry,
            Stream::Stderr => &mut s.err_carry,
        };
        carry.extend_from_slice(&bytes[..take]);
        let text = take_utf8(carry);
        if !text.is_empty() {
            s.emit_text(stream, text);
        }
        if over {
            s.stop = Some(StopReason::OutputLimit);
        }
    }

    /// Records a rich result.
    pub fn result(&self, bundle: MimeBundle) {
        let mut s = self.lock();
        s.outcome.results.push(bundle.clone());
        if let Some(sink) = s.sink.as_mut() {
            sink(Event::Result(bundle));
        }
    }

    /// Records a user-code error.
    pub fn error(&self, error: CodeError) {
        let mut s = self.lock();
        s.outcome.error = Some(error.clone());
        if let Some(sink) = s.sink.as_mut() {
            sink(Event::Error(error));
        }
    }

    /// Forwards progress.
    pub fn progress(&self, done: u64, total: Option<u64>, message: String) {
        let mut s = self.lock();
        if let Some(sink) = s.sink.as_mut() {
            sink(Event::Progress {
                done,
                total,
                message,
            });
        }
    }
}

impl RunState {
    fn emit_text(&mut self, stream: Stream, text: String) {
        match stream {
            Stream::Stdout => self.outcome.stdout.push(text.clone()),
            Stream::Stderr => self.outcome.stderr.push(text.clone()),
        }
        if let Some(sink) = self.sink.as_mut() {
            sink(match stream {
                Stream::Stdout => Event::Stdout(text),
                Stream::Stderr => Event::Stderr(text),
            });
        }
    }
}

/// Takes the longest valid UTF-8 prefix out of `buf`, leaving an incomplete trailing sequence
/// (at most 3 bytes) for the next write; invalid bytes are replaced, not kept.
fn take_utf8(buf: &mut Vec<u8>) -> String {
    match std::str::from_utf8(buf) {
        Ok(s) => {
            let out = s.to_owned();
            buf.clear();
            out
        }
        Err(e) if e.error_len().is_none() && buf.len() - e.valid_up_to() < 4 => {
            let tail = buf.split_off(e.valid_up_to());
            let out = String::from_utf8_lossy(buf).into_owned();
            *buf = tail;
            out
        }
        Err(_) => {
            let out = String::from_utf8_lossy(buf).into_owned();
            buf.clear();
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_split_across_writes_is_joined() {
        let shared = RunShared::new();
        shared.begin(&RunLimits::default(), None);
        let snow = "☃".as_bytes();
        shared.write(Stream::Stdout, &[b'a', snow[0]]);
        shared.write(Stream::Stdout, &snow[1..]);
        let out = shared.finish();
        assert_eq!(out.stdout.concat(), "a☃");
    }

    #[test]
    fn output_limit_truncates_and_stops() {
        let shared = RunShared::new();
        let limits = RunLimits {
            output_limit: 4,
            ..RunLimits::default()
        };
        shared.begin(&limits, None);
        shared.write(Stream::Stdout, b"abcdef");
        assert_eq!(shared.should_stop(), Some(StopReason::OutputLimit));
        let out = shared.finish();
        assert_eq!(out.stdout.concat(), "abcd");
        assert_eq!(out.stopped, Some(StopReason::OutputLimit));
    }

    #[test]
    fn cancel_and_deadline_stop_the_run() {
        let shared = RunShared::new();
        let limits = RunLimits::default();
        shared.begin(&limits, None);
        assert_eq!(shared.should_stop(), None);
        limits.cancel.cancel();
        assert_eq!(shared.should_stop(), Some(StopReason::Cancelled));
        shared.finish();
        shared.begin(
            &RunLimits {
                timeout: Duration::ZERO,
                ..RunLimits::default()
            },
            None,
        );
        assert_eq!(shared.should_stop(), Some(StopReason::Timeout));
    }

    #[test]
    fn events_arrive_in_order() {
        let shared = RunShared::new();
        let (tx, rx) = std::sync::mpsc::channel();
        shared.begin(
            &RunLimits::default(),
            Some(Box::new(move |e| {
                let _ = tx.send(format!("{e:?}"));
            })),
        );
        shared.write(Stream::Stdout, b"x");
        shared.result(MimeBundle::new());
        shared.write(Stream::Stderr, b"y");
        shared.finish();
        let got: Vec<String> = rx.try_iter().collect();
        assert_eq!(got.len(), 3);
        assert!(got[0].starts_with("Stdout"));
        assert!(got[1].starts_with("Result"));
        assert!(got[2].starts_with("Stderr"));
    }
}
