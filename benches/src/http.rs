//! A real `hybox serve` on loopback and a minimal keep-alive HTTP/1.1 client for it.
//!
//! The client is hand-written on a [`TcpStream`] (one request written at once, the answer read
//! by `Content-Length` or chunks) so that what a bench times is the server, not a client
//! library's pooling or its own threads.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The `hybox` binary: `HYBOX_BIN`, else the one next to the bench binary
/// (`target/<profile>/hybox`, built by `cargo build --release --bins`). `None` when neither
/// exists.
#[must_use]
pub fn hybox_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("HYBOX_BIN") {
        return Some(PathBuf::from(p));
    }
    // The bench binary lives in target/<profile>/deps.
    let exe = std::env::current_exe().ok()?;
    let bin = exe.parent()?.parent()?.join("hybox");
    bin.exists().then_some(bin)
}

/// A running `hybox serve` (127.0.0.1, port 0, a fresh data dir, the shared guest cache),
/// killed on drop.
#[derive(Debug)]
pub struct Server {
    child: Child,
    /// `127.0.0.1:PORT`
    pub addr: String,
    _data_dir: tempfile::TempDir,
}

impl Server {
    /// Starts `bin serve` and waits until `GET /v1/health` says the wasm route is ready.
    ///
    /// # Panics
    /// When the server cannot be started or its wasm route fails to load.
    #[must_use]
    pub fn start(bin: &Path) -> Self {
        let data_dir = tempfile::tempdir().expect("data dir");
        let mut child = Command::new(bin)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir.path())
            .env("HYBOX_CACHE_DIR", crate::cache_dir())
            .env("HYBOX_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn hybox serve");
        let stdout = child.stdout.take().expect("server stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the readiness line");
        let addr = line
            .trim()
            .strip_prefix("hybox listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        let server = Self {
            child,
            addr,
            _data_dir: data_dir,
        };
        let mut conn = server.connect();
        let started = Instant::now();
        loop {
            let health = conn.request("GET", "/v1/health", None);
            match health.json()["wasi"].as_str() {
                Some("ready") => break,
                Some("failed") => panic!("the wasm route failed to load: {}", health.text()),
                _ => {}
            }
            assert!(
                started.elapsed() < Duration::from_secs(900),
                "server not ready"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// A new keep-alive connection.
    ///
    /// # Panics
    /// When the server does not accept it.
    #[must_use]
    pub fn connect(&self) -> Connection {
        let stream = TcpStream::connect(&self.addr).expect("connect to the server");
        stream.set_nodelay(true).expect("TCP_NODELAY");
        stream
            .set_read_timeout(Some(Duration::from_secs(120)))
            .expect("read timeout");
        Connection {
            writer: stream.try_clone().expect("clone the stream"),
            reader: BufReader::new(stream),
            host: self.addr.clone(),
            request: Vec::with_capacity(512),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One keep-alive HTTP/1.1 connection.
#[derive(Debug)]
pub struct Connection {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
    host: String,
    request: Vec<u8>,
}

/// An HTTP answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// Body.
    pub body: Vec<u8>,
}

impl Answer {
    /// The body as JSON (`Null` when it is not JSON).
    #[must_use]
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The body as text, for messages.
    #[must_use]
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Connection {
    /// Sends `method path` with an optional JSON body and reads the whole answer.
    ///
    /// # Panics
    /// When the connection fails or the answer is not HTTP/1.1 as expected.
    pub fn request(&mut self, method: &str, path: &str, json: Option<&str>) -> Answer {
        self.request.clear();
        let body = json.unwrap_or("");
        write!(
            self.request,
            "{method} {path} HTTP/1.1\r\nhost: {}\r\ncontent-length: {}\r\n",
            self.host,
            body.len()
        )
        .expect("format the request");
        if json.is_some() {
            self.request
                .extend_from_slice(b"content-type: application/json\r\n");
        }
        self.request.extend_from_slice(b"\r\n");
        self.request.extend_from_slice(body.as_bytes());
        self.writer
            .write_all(&self.request)
            .expect("send the request");
        self.read_answer()
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).expect("read a line");
        assert!(n > 0, "the server closed the connection");
        line.truncate(line.trim_end_matches(['\r', '\n']).len());
        line
    }

    fn read_answer(&mut self) -> Answer {
        let status_line = self.line();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let mut length = None;
        let mut chunked = false;
        loop {
            let header = self.line();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':').expect("a header");
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(value.parse::<usize>().expect("content-length"));
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.eq_ignore_ascii_case("chunked");
            } else if name.eq_ignore_ascii_case("connection") {
                assert!(
                    !value.eq_ignore_ascii_case("close"),
                    "the server closes the connection"
                );
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                let size = self.line();
                let size = usize::from_str_radix(size.split(';').next().unwrap_or(""), 16)
                    .expect("chunk size");
                if size == 0 {
                    // Trailers, then the empty line.
                    while !self.line().is_empty() {}
                    break;
                }
                let start = body.len();
                body.resize(start + size, 0);
                self.reader
                    .read_exact(&mut body[start..])
                    .expect("read a chunk");
                let end = self.line();
                assert!(end.is_empty(), "chunk not followed by CRLF");
            }
        } else {
            body.resize(length.unwrap_or(0), 0);
            self.reader.read_exact(&mut body).expect("read the body");
        }
        Answer { status, body }
    }
}
