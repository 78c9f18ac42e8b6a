//! The guest's stdio as wasmtime-wasi streams: stdout/stderr feed the run state (with its cap and
//! its events); stdin is a channel whose blocking read still honours the run's deadline.

use std::io;
use std::pin::Pin;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use wasmtime_wasi::cli::{IsTerminal, StdinStream, StdoutStream};
use wasmtime_wasi::p2::{InputStream, OutputStream, Pollable, StreamError, StreamResult};

/// Why a write could not be delivered.
#[derive(Debug)]
pub(crate) enum SinkError {
    /// Nobody reads any more (the next stage of a pipeline ended): the guest gets `EPIPE`.
    Broken,
    /// The destination failed (a redirection target on a full disk).
    Failed(io::Error),
    /// The run was stopped while the write waited.
    Stopped,
}

/// Where written bytes go: a closure, so the JS route can take protocol frames out first and a
/// pipeline stage can write into a pipe.
pub(crate) type WriteFn = Arc<dyn Fn(&[u8]) -> Result<(), SinkError> + Send + Sync>;

fn stream_error(e: SinkError) -> StreamError {
    match e {
        SinkError::Broken => StreamError::LastOperationFailed(wasmtime::Error::new(
            io::Error::from(io::ErrorKind::BrokenPipe),
        )),
        SinkError::Failed(e) => StreamError::LastOperationFailed(wasmtime::Error::new(e)),
        SinkError::Stopped => StreamError::Trap(wasmtime::Error::new(crate::engine::StopTrap)),
    }
}

/// A guest output stream that hands every write to a closure at once (so streams are live).
#[derive(Clone)]
pub(crate) struct OutputSink(pub WriteFn);

impl std::fmt::Debug for OutputSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OutputSink")
    }
}

impl IsTerminal for OutputSink {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for OutputSink {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for OutputSink {
    async fn ready(&mut self) {}
}

impl OutputStream for OutputSink {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        (self.0)(&bytes).map_err(stream_error)
    }
    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> StreamResult<usize> {
        // Past the cap bytes are dropped by the run state, never refused: a refused write would
        // make the guest retry or fail in ways that hide the real cause.
        Ok(1 << 20)
    }
}

impl AsyncWrite for OutputSink {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(match (self.0)(buf) {
            Ok(()) => Ok(buf.len()),
            Err(SinkError::Broken) => Err(io::Error::from(io::ErrorKind::BrokenPipe)),
            Err(SinkError::Failed(e)) => Err(e),
            Err(SinkError::Stopped) => Err(io::Error::other("run stopped")),
        })
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Says whether a blocked read must give up (the run was stopped).
pub(crate) type StopCheck = Arc<dyn Fn() -> bool + Send + Sync>;

/// Something a guest's stdin reads from: blocks until bytes arrive (`Some`), end of input
/// (`None`), or the run is stopped (`Err`), so a guest blocked in `fd_read`, which the epoch
/// alone cannot interrupt, still ends at its deadline.
pub(crate) trait ByteSource: Send + Sync + 'static {
    /// Up to `max` bytes.
    fn read_some(&self, max: usize) -> Result<Option<Vec<u8>>, ()>;
}

/// A [`ByteSource`] as a wasmtime-wasi stdin. Clones share the source.
pub(crate) struct SourceStdin<S>(pub Arc<S>);

impl<S> Clone for SourceStdin<S> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<S> std::fmt::Debug for SourceStdin<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SourceStdin")
    }
}

#[cfg(test)]
impl<S: ByteSource> SourceStdin<S> {
    /// Up to `max` bytes; see [`ByteSource::read_some`].
    pub fn read_some(&self, max: usize) -> Result<Option<Vec<u8>>, ()> {
        self.0.read_some(max)
    }
}

impl<S: ByteSource> IsTerminal for SourceStdin<S> {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl<S: ByteSource> StdinStream for SourceStdin<S> {
    fn p2_stream(&self) -> Box<dyn InputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn AsyncRead + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl<S: ByteSource> Pollable for SourceStdin<S> {
    async fn ready(&mut self) {}
}

impl<S: ByteSource> InputStream for SourceStdin<S> {
    fn read(&mut self, size: usize) -> StreamResult<Bytes> {
        match self.0.read_some(size.max(1)) {
            Ok(Some(bytes)) => Ok(Bytes::from(bytes)),
            Ok(None) => Err(StreamError::Closed),
            Err(()) => Err(StreamError::Trap(wasmtime::Error::new(
                crate::engine::StopTrap,
            ))),
        }
    }
}

impl<S: ByteSource> AsyncRead for SourceStdin<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.0.read_some(buf.remaining().max(1)) {
            Ok(Some(bytes)) => {
                buf.put_slice(&bytes);
                Poll::Ready(Ok(()))
            }
            Ok(None) => Poll::Ready(Ok(())),
            Err(()) => Poll::Ready(Err(io::Error::other("run stopped"))),
        }
    }
}

/// A guest stdin fed by a channel (the JavaScript driver's input), waiting in slices.
pub(crate) struct ChannelInput {
    inner: Mutex<ChannelInner>,
    stop: StopCheck,
}

struct ChannelInner {
    rx: Receiver<Vec<u8>>,
    pending: Vec<u8>,
}

impl ChannelInput {
    pub fn new(rx: Receiver<Vec<u8>>, stop: StopCheck) -> SourceStdin<Self> {
        SourceStdin(Arc::new(Self {
            inner: Mutex::new(ChannelInner {
                rx,
                pending: Vec::new(),
            }),
            stop,
        }))
    }
}

impl ByteSource for ChannelInput {
    fn read_some(&self, max: usize) -> Result<Option<Vec<u8>>, ()> {
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while inner.pending.is_empty() {
            match inner.rx.recv_timeout(Duration::from_millis(10)) {
                Ok(bytes) => inner.pending = bytes,
                Err(RecvTimeoutError::Timeout) => {
                    if (self.stop)() {
                        return Err(());
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return Ok(None),
            }
        }
        let n = max.min(inner.pending.len());
        let rest = inner.pending.split_off(n);
        Ok(Some(std::mem::replace(&mut inner.pending, rest)))
    }
}
