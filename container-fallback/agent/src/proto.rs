//! The wire protocol between the host's client and the in-container agent, and the on-disk
//! format of background-process records. Compiled into both sides (std only, editions 2021 and
//! 2024), so the framing and the record format have one source of truth.
//!
//! # Frames
//! `u32` big-endian length of what follows (type byte + payload, at most [`MAX_FRAME`]), a type
//! byte ([`kind`]), the payload. A length over the limit is a protocol error that closes the
//! connection: it bounds what a peer can make the other side allocate.
//!
//! # A connection
//! 1. The client sends `HELLO` `{version}` and, without waiting, one request frame.
//! 2. The agent answers `HELLO` `{version, agent, pid}` (or `ERROR` for a version it does not
//!    speak), then `OK` `{...}` or `ERROR` `{kind, message}` for the request.
//! 3. Streaming requests go on: exec sends `STDOUT`/`STDERR` chunks then `EXIT`; follow sends
//!    `LOG_DATA` then `PROC_EXIT`; a PTY takes `PTY_INPUT`/`PTY_RESIZE` and sends `PTY_OUTPUT`
//!    then `PTY_EXIT`; after `OK` to `CONNECT` the connection is a raw byte pipe.
//! 4. `PREPARE` `{argv, env, cwd, state_fd}` starts a command ahead and parks it (a spare,
//!    answered `OK {pid}`); an `EXEC` with the same fields and a `tail` takes it (or starts one
//!    if none is live) and writes `tail` to its fd 4. The host's session wrapper uses this to
//!    have the next command's bash loaded before the command arrives.
//!
//! # Payloads
//! Raw bytes for data chunks; otherwise a [`Map`]: a self-describing encoding of named fields
//! (`u32` count, then per field a `u16`-length UTF-8 key and a tagged [`Value`]).

use std::io::{self, Read, Write};

/// Version of this protocol; both sides must speak the same one.
pub const PROTOCOL_VERSION: u64 = 1;

/// Largest frame (type byte + payload) either side accepts.
pub const MAX_FRAME: usize = 16 << 20;

/// Size of the data chunks the agent sends (output, logs, PTY).
pub const CHUNK: usize = 64 << 10;

/// Bytes of a frame header: the length and the type byte.
pub const HEADER: usize = 5;

/// Frame types. Requests and host-to-agent frames are below `0x80`, answers and agent-to-host
/// frames from `0x80`.
pub mod kind {
    /// First frame each way: the protocol version.
    pub const HELLO: u8 = 0x01;
    /// Request: who are you.
    pub const PING: u8 = 0x10;
    /// Request: run a foreground command.
    pub const EXEC: u8 = 0x11;
    /// Request: start a background process.
    pub const START: u8 = 0x12;
    /// Request: every process record.
    pub const LIST: u8 = 0x13;
    /// Request: one process record.
    pub const GET: u8 = 0x14;
    /// Request: signal a process group.
    pub const KILL: u8 = 0x15;
    /// Request: signal every running process.
    pub const KILL_ALL: u8 = 0x16;
    /// Request: the kept logs.
    pub const LOGS: u8 = 0x17;
    /// Request: follow the logs.
    pub const FOLLOW: u8 = 0x18;
    /// Request: wait until a TCP port accepts.
    pub const WAIT_PORT: u8 = 0x19;
    /// Request: splice this connection to a TCP port.
    pub const CONNECT: u8 = 0x1a;
    /// Request: open a PTY.
    pub const PTY: u8 = 0x1b;
    /// Request: start the command of a later identical `EXEC` (with a `tail`) ahead of it.
    pub const PREPARE: u8 = 0x1c;
    /// Host to agent: keyboard bytes for the PTY (raw payload).
    pub const PTY_INPUT: u8 = 0x20;
    /// Host to agent: new PTY size `{cols, rows}`.
    pub const PTY_RESIZE: u8 = 0x21;

    /// Answer: success, with fields.
    pub const OK: u8 = 0x80;
    /// Answer: failure `{kind, message}` (see [`super::error`]).
    pub const ERROR: u8 = 0x81;
    /// Exec: stdout bytes (raw payload).
    pub const STDOUT: u8 = 0x82;
    /// Exec: stderr bytes (raw payload).
    pub const STDERR: u8 = 0x83;
    /// Exec: the end `{code?, signal?, state}`.
    pub const EXIT: u8 = 0x84;
    /// Follow: a chunk `{stream, timestamp_ms, data}`.
    pub const LOG_DATA: u8 = 0x85;
    /// Follow: the process ended (a record map).
    pub const PROC_EXIT: u8 = 0x86;
    /// PTY: terminal output (raw payload).
    pub const PTY_OUTPUT: u8 = 0x87;
    /// PTY: the program ended `{code?, signal?}`.
    pub const PTY_EXIT: u8 = 0x88;
}

/// Values of the `kind` field of an `ERROR` frame.
pub mod error {
    /// No such process id.
    pub const NOT_FOUND: &str = "not_found";
    /// The process id is taken.
    pub const EXISTS: &str = "exists";
    /// Bad input or the program cannot start.
    pub const REFUSED: &str = "refused";
    /// The peer broke the protocol.
    pub const PROTOCOL: &str = "protocol";
}

/// A malformed frame, payload or record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtoError(pub String);

impl std::fmt::Display for ProtoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ProtoError {}

impl From<ProtoError> for io::Error {
    fn from(e: ProtoError) -> Self {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

fn bad(message: impl Into<String>) -> ProtoError {
    ProtoError(message.into())
}

/// The header of a frame of `kind` with `payload_len` payload bytes.
///
/// # Errors
/// The frame would exceed [`MAX_FRAME`].
pub fn header(kind: u8, payload_len: usize) -> Result<[u8; HEADER], ProtoError> {
    if payload_len + 1 > MAX_FRAME {
        return Err(bad(format!(
            "frame of {payload_len} bytes exceeds the limit"
        )));
    }
    let len = u32::try_from(payload_len + 1).map_err(|_| bad("frame too large"))?;
    let l = len.to_be_bytes();
    Ok([l[0], l[1], l[2], l[3], kind])
}

/// Type and payload length of a frame from its header.
///
/// # Errors
/// A zero or oversized length.
pub fn parse_header(h: &[u8; HEADER]) -> Result<(u8, usize), ProtoError> {
    let len = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize;
    if len == 0 || len > MAX_FRAME {
        return Err(bad(format!("bad frame length {len}")));
    }
    Ok((h[4], len - 1))
}

/// A whole frame as bytes.
///
/// # Errors
/// The frame would exceed [`MAX_FRAME`].
pub fn frame(kind: u8, payload: &[u8]) -> Result<Vec<u8>, ProtoError> {
    let h = header(kind, payload.len())?;
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(&h);
    out.extend_from_slice(payload);
    Ok(out)
}

/// Writes one frame (blocking).
///
/// # Errors
/// I/O, or an oversized payload.
pub fn write_frame(w: &mut impl Write, kind: u8, payload: &[u8]) -> io::Result<()> {
    w.write_all(&frame(kind, payload)?)
}

/// Reads one frame (blocking); `None` at a clean end of stream between frames.
///
/// # Errors
/// I/O, a stream cut inside a frame, or a bad length.
pub fn read_frame(r: &mut impl Read) -> io::Result<Option<(u8, Vec<u8>)>> {
    let mut h = [0u8; HEADER];
    let mut got = 0;
    while got < HEADER {
        match r.read(&mut h[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let (kind, len) = parse_header(&h)?;
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload)?;
    Ok(Some((kind, payload)))
}

/// A field value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A flag.
    Bool(bool),
    /// An unsigned integer.
    U64(u64),
    /// A signed integer.
    I64(i64),
    /// Bytes.
    Bytes(Vec<u8>),
    /// UTF-8 text.
    Str(String),
    /// A list.
    List(Vec<Value>),
    /// Nested fields.
    Map(Map),
}

const TAG_FALSE: u8 = b'F';
const TAG_TRUE: u8 = b'T';
const TAG_U64: u8 = b'u';
const TAG_I64: u8 = b'i';
const TAG_BYTES: u8 = b'b';
const TAG_STR: u8 = b's';
const TAG_LIST: u8 = b'l';
const TAG_MAP: u8 = b'm';

/// Nesting a decoder accepts: bounds the recursion a hostile payload can cause.
const MAX_DEPTH: usize = 8;

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}
impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Value::U64(v)
    }
}
impl From<u32> for Value {
    fn from(v: u32) -> Self {
        Value::U64(u64::from(v))
    }
}
impl From<u16> for Value {
    fn from(v: u16) -> Self {
        Value::U64(u64::from(v))
    }
}
impl From<i32> for Value {
    fn from(v: i32) -> Self {
        Value::I64(i64::from(v))
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Str(v.to_owned())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Str(v)
    }
}
impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Bytes(v)
    }
}
impl From<Map> for Value {
    fn from(v: Map) -> Self {
        Value::Map(v)
    }
}

/// Strings as a list value.
pub fn strings(items: &[String]) -> Value {
    Value::List(items.iter().map(|s| Value::Str(s.clone())).collect())
}

/// Name/value pairs (an environment) as a list of two-string lists.
pub fn pairs(items: &[(String, String)]) -> Value {
    Value::List(
        items
            .iter()
            .map(|(k, v)| Value::List(vec![Value::Str(k.clone()), Value::Str(v.clone())]))
            .collect(),
    )
}

/// Named fields, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Map(pub Vec<(String, Value)>);

impl Map {
    /// No fields.
    pub fn new() -> Self {
        Map(Vec::new())
    }

    /// Adds a field.
    #[must_use]
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.0.push((key.to_owned(), value.into()));
        self
    }

    /// Adds a field when there is a value.
    #[must_use]
    pub fn with_opt<V: Into<Value>>(self, key: &str, value: Option<V>) -> Self {
        match value {
            Some(v) => self.with(key, v),
            None => self,
        }
    }

    /// The field `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    fn need(&self, key: &str) -> Result<&Value, ProtoError> {
        self.get(key)
            .ok_or_else(|| bad(format!("missing field {key}")))
    }

    /// A text field.
    ///
    /// # Errors
    /// Missing or not text.
    pub fn str(&self, key: &str) -> Result<&str, ProtoError> {
        match self.need(key)? {
            Value::Str(s) => Ok(s),
            _ => Err(bad(format!("field {key} is not text"))),
        }
    }

    /// A text field, empty when missing.
    ///
    /// # Errors
    /// Not text.
    pub fn str_or_empty(&self, key: &str) -> Result<&str, ProtoError> {
        match self.get(key) {
            None => Ok(""),
            Some(Value::Str(s)) => Ok(s),
            Some(_) => Err(bad(format!("field {key} is not text"))),
        }
    }

    /// An unsigned field.
    ///
    /// # Errors
    /// Missing or not an unsigned integer.
    pub fn u64(&self, key: &str) -> Result<u64, ProtoError> {
        self.opt_u64(key)?
            .ok_or_else(|| bad(format!("missing field {key}")))
    }

    /// An optional unsigned field.
    ///
    /// # Errors
    /// Not an unsigned integer.
    pub fn opt_u64(&self, key: &str) -> Result<Option<u64>, ProtoError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::U64(v)) => Ok(Some(*v)),
            Some(_) => Err(bad(format!("field {key} is not an unsigned integer"))),
        }
    }

    /// An optional `i32` field.
    ///
    /// # Errors
    /// Not a signed integer in range.
    pub fn opt_i32(&self, key: &str) -> Result<Option<i32>, ProtoError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::I64(v)) => i32::try_from(*v)
                .map(Some)
                .map_err(|_| bad(format!("field {key} out of range"))),
            Some(_) => Err(bad(format!("field {key} is not a signed integer"))),
        }
    }

    /// A flag, false when missing.
    ///
    /// # Errors
    /// Not a flag.
    pub fn bool(&self, key: &str) -> Result<bool, ProtoError> {
        match self.get(key) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(bad(format!("field {key} is not a flag"))),
        }
    }

    /// A bytes field, empty when missing.
    ///
    /// # Errors
    /// Not bytes.
    pub fn bytes(&self, key: &str) -> Result<&[u8], ProtoError> {
        match self.get(key) {
            None => Ok(&[]),
            Some(Value::Bytes(b)) => Ok(b),
            Some(_) => Err(bad(format!("field {key} is not bytes"))),
        }
    }

    /// A list of strings, empty when missing.
    ///
    /// # Errors
    /// Not a list of text.
    pub fn strings(&self, key: &str) -> Result<Vec<String>, ProtoError> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::List(items)) => items
                .iter()
                .map(|v| match v {
                    Value::Str(s) => Ok(s.clone()),
                    _ => Err(bad(format!("field {key} holds a non-text item"))),
                })
                .collect(),
            Some(_) => Err(bad(format!("field {key} is not a list"))),
        }
    }

    /// Name/value pairs written by [`pairs`], empty when missing.
    ///
    /// # Errors
    /// Not a list of two-string lists.
    pub fn pairs(&self, key: &str) -> Result<Vec<(String, String)>, ProtoError> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::List(items)) => items
                .iter()
                .map(|v| match v {
                    Value::List(kv) => match kv.as_slice() {
                        [Value::Str(k), Value::Str(v)] => Ok((k.clone(), v.clone())),
                        _ => Err(bad(format!("field {key} holds a bad pair"))),
                    },
                    _ => Err(bad(format!("field {key} holds a bad pair"))),
                })
                .collect(),
            Some(_) => Err(bad(format!("field {key} is not a list"))),
        }
    }

    /// A list of maps, empty when missing.
    ///
    /// # Errors
    /// Not a list of maps.
    pub fn maps(&self, key: &str) -> Result<Vec<&Map>, ProtoError> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::List(items)) => items
                .iter()
                .map(|v| match v {
                    Value::Map(m) => Ok(m),
                    _ => Err(bad(format!("field {key} holds a non-map item"))),
                })
                .collect(),
            Some(_) => Err(bad(format!("field {key} is not a list"))),
        }
    }

    /// The encoded fields.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        encode_map(self, &mut out);
        out
    }

    /// Fields from their encoding (the whole input).
    ///
    /// # Errors
    /// Malformed input.
    pub fn decode(bytes: &[u8]) -> Result<Map, ProtoError> {
        let mut r = Reader { buf: bytes, pos: 0 };
        let map = r.map(0)?;
        if r.pos != bytes.len() {
            return Err(bad("trailing bytes after fields"));
        }
        Ok(map)
    }
}

fn put_len(n: usize, out: &mut Vec<u8>) {
    // Lengths are bounded by MAX_FRAME long before u32 overflows.
    out.extend_from_slice(&(n as u32).to_be_bytes());
}

fn encode_map(m: &Map, out: &mut Vec<u8>) {
    put_len(m.0.len(), out);
    for (k, v) in &m.0 {
        let key = &k.as_bytes()[..k.len().min(usize::from(u16::MAX))];
        out.extend_from_slice(&(key.len() as u16).to_be_bytes());
        out.extend_from_slice(key);
        encode_value(v, out);
    }
}

fn encode_value(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Bool(false) => out.push(TAG_FALSE),
        Value::Bool(true) => out.push(TAG_TRUE),
        Value::U64(n) => {
            out.push(TAG_U64);
            out.extend_from_slice(&n.to_be_bytes());
        }
        Value::I64(n) => {
            out.push(TAG_I64);
            out.extend_from_slice(&n.to_be_bytes());
        }
        Value::Bytes(b) => {
            out.push(TAG_BYTES);
            put_len(b.len(), out);
            out.extend_from_slice(b);
        }
        Value::Str(s) => {
            out.push(TAG_STR);
            put_len(s.len(), out);
            out.extend_from_slice(s.as_bytes());
        }
        Value::List(items) => {
            out.push(TAG_LIST);
            put_len(items.len(), out);
            for item in items {
                encode_value(item, out);
            }
        }
        Value::Map(m) => {
            out.push(TAG_MAP);
            encode_map(m, out);
        }
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtoError> {
        if self.buf.len() - self.pos < n {
            return Err(bad("truncated fields"));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, ProtoError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<usize, ProtoError> {
        let b = self.take(2)?;
        Ok(usize::from(u16::from_be_bytes([b[0], b[1]])))
    }

    fn u32(&mut self) -> Result<usize, ProtoError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }

    fn u64(&mut self) -> Result<[u8; 8], ProtoError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(a)
    }

    /// A count of items that each take at least one byte: never more than what is left, so a
    /// hostile count cannot make us reserve memory it did not send.
    fn count(&mut self) -> Result<usize, ProtoError> {
        let n = self.u32()?;
        if n > self.buf.len() - self.pos {
            return Err(bad("count exceeds the payload"));
        }
        Ok(n)
    }

    fn text(&mut self, n: usize) -> Result<String, ProtoError> {
        let b = self.take(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| bad("text is not UTF-8"))
    }

    fn map(&mut self, depth: usize) -> Result<Map, ProtoError> {
        if depth > MAX_DEPTH {
            return Err(bad("fields nested too deep"));
        }
        let n = self.count()?;
        let mut fields = Vec::with_capacity(n);
        for _ in 0..n {
            let klen = self.u16()?;
            let key = self.text(klen)?;
            let value = self.value(depth)?;
            fields.push((key, value));
        }
        Ok(Map(fields))
    }

    fn value(&mut self, depth: usize) -> Result<Value, ProtoError> {
        Ok(match self.u8()? {
            TAG_FALSE => Value::Bool(false),
            TAG_TRUE => Value::Bool(true),
            TAG_U64 => Value::U64(u64::from_be_bytes(self.u64()?)),
            TAG_I64 => Value::I64(i64::from_be_bytes(self.u64()?)),
            TAG_BYTES => {
                let n = self.u32()?;
                Value::Bytes(self.take(n)?.to_vec())
            }
            TAG_STR => {
                let n = self.u32()?;
                Value::Str(self.text(n)?)
            }
            TAG_LIST => {
                if depth >= MAX_DEPTH {
                    return Err(bad("fields nested too deep"));
                }
                let n = self.count()?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(depth + 1)?);
                }
                Value::List(items)
            }
            TAG_MAP => Value::Map(self.map(depth + 1)?),
            t => return Err(bad(format!("unknown value tag {t:#x}"))),
        })
    }
}

/// Directory of the process records under the state dir: `procs/<id>/`.
pub const PROCS_DIR: &str = "procs";
/// The record file in a process's directory.
pub const RECORD_FILE: &str = "record";
/// The kept stdout in a process's directory.
pub const STDOUT_FILE: &str = "stdout";
/// The kept stderr in a process's directory.
pub const STDERR_FILE: &str = "stderr";
/// Present in a process's directory once older log bytes were dropped.
pub const TRUNCATED_FILE: &str = "truncated";
/// Bytes kept per log file; past it the oldest half is dropped.
pub const LOG_CAP: u64 = 8 << 20;

const RECORD_MAGIC: &str = "hybox-proc-record 1";

/// Whether `id` is a valid process id: `[A-Za-z0-9_.-]{1,64}`, and not `.` or `..` (it names a
/// directory).
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
}

/// Where a background process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Still running.
    Running,
    /// Exited with code 0.
    Completed,
    /// Exited with another code.
    Failed,
    /// Ended by a signal.
    Killed,
    /// Was running when its agent went away.
    Lost,
}

impl Status {
    /// Its name on the wire and on disk.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::Killed => "killed",
            Status::Lost => "lost",
        }
    }

    /// From its name.
    ///
    /// # Errors
    /// An unknown name.
    pub fn parse(s: &str) -> Result<Status, ProtoError> {
        Ok(match s {
            "running" => Status::Running,
            "completed" => Status::Completed,
            "failed" => Status::Failed,
            "killed" => Status::Killed,
            "lost" => Status::Lost,
            _ => return Err(bad(format!("unknown status {s}"))),
        })
    }
}

/// A background process as the agent records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Id.
    pub id: String,
    /// Pid (and process group, and session) inside the container.
    pub pid: u32,
    /// The command for display.
    pub command: String,
    /// Working directory.
    pub cwd: String,
    /// Status.
    pub status: Status,
    /// Exit code once exited.
    pub exit_code: Option<i32>,
    /// Signal once killed.
    pub signal: Option<i32>,
    /// Start time, ms since the epoch.
    pub started_at_ms: u64,
    /// End time, ms since the epoch.
    pub ended_at_ms: Option<u64>,
    /// Start order, across agent restarts on one state dir (ties of `started_at_ms`).
    pub seq: u64,
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '%' => out.push_str("%25"),
            '\n' => out.push_str("%0A"),
            '\r' => out.push_str("%0D"),
            c => out.push(c),
        }
    }
    out
}

fn unescape(s: &str) -> Result<String, ProtoError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .ok_or_else(|| bad("bad escape in record"))?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| bad("bad escape in record"))?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad("record text is not UTF-8"))
}

fn num<T: std::str::FromStr>(key: &str, v: &str) -> Result<T, ProtoError> {
    v.parse()
        .map_err(|_| bad(format!("bad number for {key} in record")))
}

impl Record {
    /// The record file's text: a magic line, then `key=value` lines (values escape `%`, CR and
    /// LF as `%XX`; optional fields are left out).
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "{RECORD_MAGIC}\nid={}\npid={}\ncommand={}\ncwd={}\nstatus={}\nstarted_at_ms={}\nseq={}\n",
            escape(&self.id),
            self.pid,
            escape(&self.command),
            escape(&self.cwd),
            self.status.as_str(),
            self.started_at_ms,
            self.seq,
        );
        if let Some(c) = self.exit_code {
            s.push_str(&format!("exit_code={c}\n"));
        }
        if let Some(sig) = self.signal {
            s.push_str(&format!("signal={sig}\n"));
        }
        if let Some(t) = self.ended_at_ms {
            s.push_str(&format!("ended_at_ms={t}\n"));
        }
        s
    }

    /// From the record file's text.
    ///
    /// # Errors
    /// Not a record, or a bad or missing field.
    pub fn from_text(text: &str) -> Result<Record, ProtoError> {
        let mut lines = text.lines();
        if lines.next() != Some(RECORD_MAGIC) {
            return Err(bad("not a process record"));
        }
        let mut r = Record {
            id: String::new(),
            pid: 0,
            command: String::new(),
            cwd: String::new(),
            status: Status::Lost,
            exit_code: None,
            signal: None,
            started_at_ms: 0,
            ended_at_ms: None,
            seq: 0,
        };
        let mut have_id = false;
        let mut have_status = false;
        for line in lines {
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            match key {
                "id" => {
                    r.id = unescape(value)?;
                    have_id = true;
                }
                "pid" => r.pid = num(key, value)?,
                "command" => r.command = unescape(value)?,
                "cwd" => r.cwd = unescape(value)?,
                "status" => {
                    r.status = Status::parse(value)?;
                    have_status = true;
                }
                "started_at_ms" => r.started_at_ms = num(key, value)?,
                "seq" => r.seq = num(key, value)?,
                "exit_code" => r.exit_code = Some(num(key, value)?),
                "signal" => r.signal = Some(num(key, value)?),
                "ended_at_ms" => r.ended_at_ms = Some(num(key, value)?),
                // Fields of later versions are skipped, not fatal.
                _ => {}
            }
        }
        if !have_id || !have_status {
            return Err(bad("record lacks id or status"));
        }
        Ok(r)
    }

    /// The record as fields on the wire.
    pub fn to_map(&self) -> Map {
        Map::new()
            .with("id", self.id.as_str())
            .with("pid", self.pid)
            .with("command", self.command.as_str())
            .with("cwd", self.cwd.as_str())
            .with("status", self.status.as_str())
            .with_opt("exit_code", self.exit_code)
            .with_opt("signal", self.signal)
            .with("started_at_ms", self.started_at_ms)
            .with_opt("ended_at_ms", self.ended_at_ms)
            .with("seq", self.seq)
    }

    /// From fields on the wire.
    ///
    /// # Errors
    /// A bad or missing field.
    pub fn from_map(m: &Map) -> Result<Record, ProtoError> {
        Ok(Record {
            id: m.str("id")?.to_owned(),
            pid: u32::try_from(m.u64("pid")?).map_err(|_| bad("pid out of range"))?,
            command: m.str_or_empty("command")?.to_owned(),
            cwd: m.str_or_empty("cwd")?.to_owned(),
            status: Status::parse(m.str("status")?)?,
            exit_code: m.opt_i32("exit_code")?,
            signal: m.opt_i32("signal")?,
            started_at_ms: m.u64("started_at_ms")?,
            ended_at_ms: m.opt_u64("ended_at_ms")?,
            seq: m.opt_u64("seq")?.unwrap_or(0),
        })
    }
}

/// Exit code and signal from a `wait` status word.
pub fn decode_wait_status(status: i32) -> (Option<i32>, Option<i32>) {
    let sig = status & 0x7f;
    if sig == 0 {
        (Some((status >> 8) & 0xff), None)
    } else if sig != 0x7f {
        (None, Some(sig))
    } else {
        // Stopped: not an end; callers only see ends (WEXITED), so this is defensive.
        (None, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip() {
        let m = Map::new()
            .with("s", "text ü")
            .with("u", u64::MAX)
            .with("i", -5i32)
            .with("b", vec![0u8, 255])
            .with("t", true)
            .with("argv", strings(&["a".into(), String::new()]))
            .with("env", pairs(&[("K".into(), "v=1".into())]))
            .with("nested", Map::new().with("x", 1u32));
        let back = Map::decode(&m.encode()).expect("decode");
        assert_eq!(back, m);
        assert_eq!(back.strings("argv").expect("argv"), ["a", ""]);
        assert_eq!(
            back.pairs("env").expect("env"),
            [("K".to_owned(), "v=1".to_owned())]
        );
        assert_eq!(back.opt_i32("i").expect("i"), Some(-5));
        assert!(back.str("u").is_err(), "wrong type is an error");
        assert!(back.str("missing").is_err());
        assert_eq!(back.bytes("missing").expect("default"), b"");
    }

    #[test]
    fn hostile_payloads_are_rejected_cheaply() {
        // A count of 4 billion fields in 4 bytes.
        assert!(Map::decode(&[0xff, 0xff, 0xff, 0xff]).is_err());
        // A string longer than the payload.
        let mut p = vec![0, 0, 0, 1, 0, 1, b'k', TAG_STR, 0xff, 0xff, 0xff, 0xff];
        assert!(Map::decode(&p).is_err());
        p.truncate(7);
        assert!(Map::decode(&p).is_err(), "value missing");
        // Lists nested past the limit.
        let mut deep = vec![0, 0, 0, 1, 0, 1, b'k'];
        for _ in 0..100 {
            deep.extend([TAG_LIST, 0, 0, 0, 1]);
        }
        deep.push(TAG_TRUE);
        assert!(Map::decode(&deep).is_err());
        assert!(Map::decode(&[0, 0, 0, 0, 9]).is_err(), "trailing bytes");
        assert!(parse_header(&[0, 0, 0, 0, 1]).is_err());
        assert!(parse_header(&[0xff, 0, 0, 0, 1]).is_err());
        assert!(header(kind::OK, MAX_FRAME).is_err());
    }

    #[test]
    fn frames_round_trip_and_end_cleanly() {
        let mut buf = Vec::new();
        write_frame(&mut buf, kind::STDOUT, b"abc").expect("write");
        write_frame(&mut buf, kind::OK, b"").expect("write");
        let mut r = &buf[..];
        assert_eq!(
            read_frame(&mut r).expect("read"),
            Some((kind::STDOUT, b"abc".to_vec()))
        );
        assert_eq!(
            read_frame(&mut r).expect("read"),
            Some((kind::OK, Vec::new()))
        );
        assert_eq!(read_frame(&mut r).expect("read"), None);
        let mut cut = &buf[..3];
        assert!(read_frame(&mut cut).is_err());
    }

    #[test]
    fn records_round_trip_through_text_and_fields() {
        let r = Record {
            id: "web-1".into(),
            pid: 42,
            command: "echo 'a\nb' 100%\r".into(),
            cwd: "/work space".into(),
            status: Status::Failed,
            exit_code: Some(3),
            signal: None,
            started_at_ms: 1_700_000_000_000,
            ended_at_ms: Some(1_700_000_000_500),
            seq: 7,
        };
        let text = r.to_text();
        assert_eq!(
            text.lines().filter(|l| l.starts_with("command=")).count(),
            1
        );
        assert_eq!(Record::from_text(&text).expect("text"), r);
        assert_eq!(Record::from_map(&r.to_map()).expect("map"), r);
        let future = format!("{text}new_field=1\n");
        assert_eq!(Record::from_text(&future).expect("newer"), r);
        assert!(Record::from_text("id=x\nstatus=running\n").is_err());
    }

    #[test]
    fn ids_and_wait_statuses() {
        assert!(valid_id("a.B_c-9"));
        for bad in ["", ".", "..", "a/b", "a b", "ü"] {
            assert!(!valid_id(bad), "{bad:?}");
        }
        assert!(!valid_id(&"x".repeat(65)));
        assert_eq!(decode_wait_status(3 << 8), (Some(3), None));
        assert_eq!(decode_wait_status(9), (None, Some(9)));
        assert_eq!(
            decode_wait_status(0x80 | 11),
            (None, Some(11)),
            "core dumped"
        );
    }
}
