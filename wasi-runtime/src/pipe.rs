//! An in-memory pipe between two guests of a pipeline: bounded (a fast writer waits for a slow
//! reader), with end-of-file when the writer is gone and `EPIPE` when the reader is gone (so
//! `yes | head -1` ends), and waits that give up when the run is stopped.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::output::{ByteSource, SinkError, SourceStdin, StopCheck, WriteFn};

/// How much a pipe holds before its writer waits (Linux's default pipe size).
pub(crate) const CAPACITY: usize = 64 * 1024;
/// How often a waiting side looks at the run's stop flag.
const WAIT_SLICE: Duration = Duration::from_millis(10);

/// Written chunks in order (whole writes, not bytes: a 10 MB stream is a few hundred memcpys,
/// not ten million pushes) and their total length.
#[derive(Debug, Default)]
struct State {
    chunks: VecDeque<Vec<u8>>,
    len: usize,
    writers: usize,
    reader_gone: bool,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The write end. Clones share it; the pipe sees end-of-file when the last clone is dropped.
#[derive(Debug)]
pub(crate) struct PipeWriter {
    shared: Arc<Shared>,
}

impl Clone for PipeWriter {
    fn clone(&self) -> Self {
        self.shared.lock().writers += 1;
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for PipeWriter {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        st.writers = st.writers.saturating_sub(1);
        drop(st);
        self.shared.changed.notify_all();
    }
}

/// The read end, usable as a guest's stdin.
pub(crate) type PipeReader = SourceStdin<ReaderInner>;

/// The state behind a [`PipeReader`]; the pipe sees its reader gone when the last clone drops.
pub(crate) struct ReaderInner {
    shared: Arc<Shared>,
    stop: StopCheck,
}

impl Drop for ReaderInner {
    fn drop(&mut self) {
        self.shared.lock().reader_gone = true;
        self.shared.changed.notify_all();
    }
}

/// A new pipe; both ends give up waiting when `stop` says so.
pub(crate) fn pipe(stop: StopCheck) -> (PipeWriter, PipeReader) {
    let shared = Arc::new(Shared::default());
    shared.lock().writers = 1;
    (
        PipeWriter {
            shared: shared.clone(),
        },
        SourceStdin(Arc::new(ReaderInner { shared, stop })),
    )
}

impl PipeWriter {
    /// Writes all of `bytes`, waiting while the pipe is full.
    pub fn write(&self, mut bytes: &[u8], stop: &StopCheck) -> Result<(), SinkError> {
        let shared = &self.shared;
        let mut st = shared.lock();
        while !bytes.is_empty() {
            if st.reader_gone {
                return Err(SinkError::Broken);
            }
            let room = CAPACITY.saturating_sub(st.len);
            if room == 0 {
                let (next, _) = shared
                    .changed
                    .wait_timeout(st, WAIT_SLICE)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                st = next;
                if stop() {
                    return Err(SinkError::Stopped);
                }
                continue;
            }
            let n = room.min(bytes.len());
            st.chunks.push_back(bytes[..n].to_vec());
            st.len += n;
            bytes = &bytes[n..];
            shared.changed.notify_all();
        }
        Ok(())
    }

    /// This writer as a guest output stream.
    pub fn into_write_fn(self, stop: StopCheck) -> WriteFn {
        Arc::new(move |b: &[u8]| self.write(b, &stop))
    }
}

impl ByteSource for ReaderInner {
    fn read_some(&self, max: usize) -> Result<Option<Vec<u8>>, ()> {
        let shared = &self.shared;
        let mut st = shared.lock();
        loop {
            if let Some(mut out) = st.chunks.pop_front() {
                // One chunk as is when it fits; more are joined up to `max`.
                if out.len() > max {
                    let rest = out.split_off(max);
                    st.chunks.push_front(rest);
                }
                while let Some(next) = st.chunks.front_mut() {
                    let room = max - out.len();
                    if room == 0 {
                        break;
                    }
                    if next.len() <= room {
                        out.extend_from_slice(next);
                        st.chunks.pop_front();
                    } else {
                        out.extend_from_slice(&next[..room]);
                        next.drain(..room);
                    }
                }
                st.len -= out.len();
                drop(st);
                shared.changed.notify_all();
                return Ok(Some(out));
            }
            if st.writers == 0 {
                return Ok(None);
            }
            let (next, _) = shared
                .changed
                .wait_timeout(st, WAIT_SLICE)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            st = next;
            if (self.stop)() {
                return Err(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn never() -> StopCheck {
        Arc::new(|| false)
    }

    #[test]
    fn bytes_flow_then_eof_when_writers_are_gone() {
        let (w, r) = pipe(never());
        let w2 = w.clone();
        w.write(b"ab", &never()).expect("write");
        drop(w);
        w2.write(b"c", &never()).expect("write");
        assert_eq!(r.read_some(10).expect("read"), Some(b"abc".to_vec()));
        drop(w2);
        assert_eq!(r.read_some(10).expect("read"), None);
    }

    #[test]
    fn a_full_pipe_waits_for_its_reader() {
        let (w, r) = pipe(never());
        let writer = std::thread::spawn(move || {
            let data = vec![7u8; CAPACITY * 3];
            w.write(&data, &never()).expect("write all");
        });
        let mut got = 0;
        while let Some(chunk) = r.read_some(4096).expect("read") {
            got += chunk.len();
        }
        writer.join().expect("writer");
        assert_eq!(got, CAPACITY * 3);
    }

    #[test]
    fn writer_gets_broken_pipe_when_reader_leaves() {
        let (w, r) = pipe(never());
        drop(r);
        assert!(matches!(w.write(b"x", &never()), Err(SinkError::Broken)));
    }

    #[test]
    fn waits_give_up_when_stopped() {
        let stop: StopCheck = Arc::new(|| true);
        let (w, r) = pipe(stop.clone());
        assert!(r.read_some(1).is_err(), "reader stops waiting");
        w.write(&vec![0u8; CAPACITY], &stop).expect("fits");
        assert!(matches!(w.write(b"x", &stop), Err(SinkError::Stopped)));
        drop(r);
    }
}
