//! The JavaScript guest: QuickJS-NG's WASI reactor.
//!
//! The reactor exports no eval, so a context is one instance running our read-eval driver
//! (`guests/js_driver.js`) inside `qjs_init_argv` on its own thread, blocked reading stdin
//! between evaluations. Protocol frames (`\0HYBOX:<json>\n`) are taken out of its stdout here;
//! everything else is the user's output.

use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};

use wasmtime::{Memory, TypedFunc};

use crate::door::{self, ToolHost};
use crate::engine::Runtime;
use crate::error::{Error, Result};
use crate::guests::JS_DRIVER;
use crate::instance::{CallEnd, GuestSpec, Launch, Live, call_end, instantiate};
use crate::output::{ChannelInput, WriteFn};
use crate::run::{RunShared, Stream};

const MARK: &[u8] = b"\0HYBOX:";

/// What the stdout splitter found.
#[derive(Debug, PartialEq, Eq)]
enum Piece {
    Text(Vec<u8>),
    Frame(Vec<u8>),
}

/// Splits a byte stream into user text and protocol frames, across arbitrary write boundaries.
#[derive(Debug, Default)]
struct FrameSplitter {
    pending: Vec<u8>,
}

impl FrameSplitter {
    fn push(&mut self, bytes: &[u8]) -> Vec<Piece> {
        self.pending.extend_from_slice(bytes);
        let mut out = Vec::new();
        loop {
            match find(&self.pending, MARK) {
                Some(at) => {
                    let Some(nl) = self.pending[at..].iter().position(|&b| b == b'\n') else {
                        if at > 0 {
                            out.push(Piece::Text(self.pending.drain(..at).collect()));
                        }
                        break;
                    };
                    if at > 0 {
                        out.push(Piece::Text(self.pending[..at].to_vec()));
                    }
                    let frame = self.pending[at + MARK.len()..at + nl].to_vec();
                    self.pending.drain(..at + nl + 1);
                    out.push(Piece::Frame(frame));
                }
                None => {
                    // Keep a tail that could be the start of a marker.
                    let keep = (1..MARK.len())
                        .rev()
                        .find(|&k| self.pending.ends_with(&MARK[..k]))
                        .unwrap_or(0);
                    let cut = self.pending.len() - keep;
                    if cut > 0 {
                        out.push(Piece::Text(self.pending.drain(..cut).collect()));
                    }
                    break;
                }
            }
        }
        out
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Signals from the guest thread to whoever drives the context.
#[derive(Debug)]
pub(crate) enum Signal {
    /// One evaluation finished.
    TurnEnd,
    /// The guest is gone: the driver returned, exited, was stopped or trapped.
    Gone(CallEnd<i32>),
}

/// A running JavaScript context.
#[derive(Debug)]
pub(crate) struct JsSession {
    stdin: Sender<Vec<u8>>,
    signals: Receiver<Signal>,
    pub run: RunShared,
}

fn stdout_writer(run: &RunShared, tools: Arc<dyn ToolHost>, signals: Sender<Signal>) -> WriteFn {
    let splitter = Mutex::new(FrameSplitter::default());
    let run = run.clone();
    Arc::new(move |bytes: &[u8]| {
        let pieces = splitter
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(bytes);
        for piece in pieces {
            match piece {
                Piece::Text(t) => run.write(Stream::Stdout, &t),
                Piece::Frame(f) if f == b"END" => {
                    let _ = signals.send(Signal::TurnEnd);
                }
                Piece::Frame(f) => {
                    // Answers cannot reach a JS guest (no import); errors are the guest's own.
                    let _ = door::dispatch(&f, &run, tools.as_ref());
                }
            }
        }
        Ok(())
    })
}

/// Writes `args` into guest memory as a C `argv` and returns (argc, argv pointer).
fn write_argv(
    live: &mut Live,
    memory: Memory,
    malloc: &TypedFunc<i32, i32>,
    args: &[String],
) -> wasmtime::Result<(i32, i32)> {
    let mut ptrs = Vec::with_capacity(args.len());
    for a in args {
        let mut bytes = a.as_bytes().to_vec();
        bytes.push(0);
        let p = malloc.call(&mut live.store, i32::try_from(bytes.len())?)?;
        if p == 0 {
            wasmtime::bail!("guest malloc failed");
        }
        memory.write(&mut live.store, p as u32 as usize, &bytes)?;
        ptrs.push(p as u32);
    }
    let table: Vec<u8> = ptrs.iter().flat_map(|p| p.to_le_bytes()).collect();
    let argv = malloc.call(&mut live.store, i32::try_from(table.len().max(4))?)?;
    if argv == 0 {
        wasmtime::bail!("guest malloc failed");
    }
    memory.write(&mut live.store, argv as u32 as usize, &table)?;
    Ok((i32::try_from(args.len())?, argv))
}

/// Calls `qjs_init_argv(argv)`: the whole life of a driver, or one program run.
fn init_argv(live: &mut Live, args: &[String]) -> wasmtime::Result<i32> {
    let memory = live
        .instance
        .get_memory(&mut live.store, "memory")
        .ok_or_else(|| wasmtime::format_err!("js guest exports no memory"))?;
    let malloc = live
        .instance
        .get_typed_func::<i32, i32>(&mut live.store, "malloc")?;
    let init = live
        .instance
        .get_typed_func::<(i32, i32), i32>(&mut live.store, "qjs_init_argv")?;
    let (argc, argv) = write_argv(live, memory, &malloc, args)?;
    init.call(&mut live.store, (argc, argv))
}

impl JsSession {
    /// Starts a context: instantiates the reactor on its own thread and enters the driver.
    pub fn start(runtime: &Arc<Runtime>, spec: &GuestSpec) -> Result<Self> {
        let run = RunShared::new();
        let (stdin_tx, stdin_rx) = channel::<Vec<u8>>();
        let (sig_tx, sig_rx) = channel::<Signal>();
        let (ready_tx, ready_rx) = channel::<Result<()>>();
        let runtime = runtime.clone();
        let spec = spec.clone();
        let thread_run = run.clone();
        std::thread::Builder::new()
            .name("hybox-js".into())
            .stack_size(crate::engine::GUEST_THREAD_STACK)
            .spawn(move || {
                let run = thread_run;
                let stop_run = run.clone();
                let stdin =
                    ChannelInput::new(stdin_rx, Arc::new(move || stop_run.should_stop().is_some()));
                let out = stdout_writer(&run, spec.tools.clone(), sig_tx.clone());
                let err_run = run.clone();
                let err: WriteFn = Arc::new(move |b: &[u8]| {
                    err_run.write(Stream::Stderr, b);
                    Ok(())
                });
                let live = instantiate(
                    &runtime,
                    &runtime.js,
                    &spec,
                    Launch {
                        args: &[],
                        extra_mounts: &[],
                        stdout: out,
                        stderr: err,
                        stdin: Some(Box::new(stdin)),
                    },
                    run.clone(),
                );
                let mut live = match live {
                    Ok(l) => {
                        let _ = ready_tx.send(Ok(()));
                        l
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let args = vec![
                    "qjs".to_owned(),
                    "--std".to_owned(),
                    "-e".to_owned(),
                    JS_DRIVER.to_owned(),
                ];
                let result = init_argv(&mut live, &args);
                let _ = sig_tx.send(Signal::Gone(call_end(result, &run)));
            })
            .map_err(|e| Error::io("spawn js guest thread", e))?;
        ready_rx
            .recv()
            .map_err(|_| Error::Engine("js guest thread died while starting".into()))??;
        let session = Self {
            stdin: stdin_tx,
            signals: sig_rx,
            run,
        };
        Ok(session)
    }

    /// Sends one evaluation and waits for its end (or the guest's death).
    pub fn eval(&self, code: &str) -> Signal {
        let mut msg = format!("{}\n", code.len()).into_bytes();
        msg.extend_from_slice(code.as_bytes());
        if self.stdin.send(msg).is_err() {
            return Signal::Gone(CallEnd::Trapped("js guest is gone".into()));
        }
        self.signals
            .recv()
            .unwrap_or(Signal::Gone(CallEnd::Trapped("js guest is gone".into())))
    }
}

/// Runs `args` as a one-shot QuickJS program on the current thread (`node file.js`).
pub(crate) fn run_program(
    runtime: &Runtime,
    spec: &GuestSpec,
    args: &[String],
    stdio: crate::instance::Stdio,
    run: &RunShared,
) -> Result<CallEnd<i32>> {
    let mut live = instantiate(
        runtime,
        &runtime.js,
        spec,
        Launch {
            args: &[],
            extra_mounts: &[],
            stdout: stdio.stdout,
            stderr: stdio.stderr,
            stdin: stdio.stdin,
        },
        run.clone(),
    )?;
    let result = init_argv(&mut live, args);
    Ok(call_end(result, run))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_split_from_text_across_writes() {
        let mut s = FrameSplitter::default();
        let mut all = s.push(b"hello\0HY");
        all.extend(s.push(b"BOX:{\"a\":1}\nworld\0HYBOX:END"));
        all.extend(s.push(b"\n"));
        assert_eq!(
            all,
            vec![
                Piece::Text(b"hello".to_vec()),
                Piece::Frame(b"{\"a\":1}".to_vec()),
                Piece::Text(b"world".to_vec()),
                Piece::Frame(b"END".to_vec()),
            ]
        );
    }

    #[test]
    fn a_lone_nul_is_text() {
        let mut s = FrameSplitter::default();
        let out = s.push(b"a\0b");
        assert_eq!(out, vec![Piece::Text(b"a\0b".to_vec())]);
    }
}
