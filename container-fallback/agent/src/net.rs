//! Ports inside the container: waiting for a listener, and splicing a host connection to one.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crate::Fail;
use crate::launch::thread;
use crate::proto::{Map, kind, write_frame};

/// The longest wait a request may ask for.
const MAX_WAIT: Duration = Duration::from_secs(600);

fn dial(port: u16, timeout: Duration) -> io::Result<TcpStream> {
    let v4 = SocketAddr::from(([127, 0, 0, 1], port));
    let v6 = SocketAddr::from(([0u16, 0, 0, 0, 0, 0, 0, 1], port));
    TcpStream::connect_timeout(&v4, timeout).or_else(|_| TcpStream::connect_timeout(&v6, timeout))
}

fn port_of(req: &Map) -> Result<u16, Fail> {
    let port = req.u64("port")?;
    u16::try_from(port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| Fail::Refused(format!("bad port {port}")))
}

/// `WAIT_PORT {port, timeout_ms}` → `OK {open}`.
pub fn wait_port(mut stream: UnixStream, req: &Map) -> Result<(), Fail> {
    let port = port_of(req)?;
    let timeout = Duration::from_millis(req.u64("timeout_ms")?).min(MAX_WAIT);
    let deadline = Instant::now() + timeout;
    let open = loop {
        if dial(port, Duration::from_millis(200)).is_ok() {
            break true;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break false;
        }
        std::thread::sleep(left.min(Duration::from_millis(20)));
    };
    write_frame(
        &mut stream,
        kind::OK,
        &Map::new().with("open", open).encode(),
    )?;
    Ok(())
}

fn copy_then_close(mut from: impl Read, mut to: impl Write, close: impl FnOnce()) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    close();
}

/// `CONNECT {port}` → `OK {}` then raw bytes both ways; each direction's end of stream is passed
/// on as a half-close, so request/response protocols that close their sending side still work.
pub fn connect(mut stream: UnixStream, req: &Map) -> Result<(), Fail> {
    let port = port_of(req)?;
    let tcp = dial(port, Duration::from_secs(2))
        .map_err(|e| Fail::Refused(format!("nothing accepts on port {port}: {e}")))?;
    let _ = tcp.set_nodelay(true);
    write_frame(&mut stream, kind::OK, &Map::new().encode())?;
    let (up_from, up_to) = (stream.try_clone()?, tcp.try_clone()?);
    thread("splice", move || {
        let closer = up_to.try_clone();
        copy_then_close(up_from, up_to, move || {
            if let Ok(t) = closer {
                let _ = t.shutdown(Shutdown::Write);
            }
        });
    })?;
    let closer = stream.try_clone()?;
    copy_then_close(tcp, stream, move || {
        let _ = closer.shutdown(Shutdown::Write);
    });
    Ok(())
}
