//! The `snapshot` and `fs` scenarios: hybox's copy-on-write workspace layer (squashfs images
//! the server writes, FUSE views over them at `<data dir>/mnt/<sandbox>`) next to
//! squashfs-tools, the kernel's squashfs and squashfuse, on the same generated trees and the
//! same images.
//!
//! The trees are generated once, before any clock, with deterministic content (text-like lines
//! of code words, and less compressible data of 6 random bits per byte): written into the
//! sandboxes' workspaces through the server's mount, and into plain folders of the scratch dir
//! for the peers. Each case is timed from the client's action (the request sent, the process
//! spawned, the first folder or file opened) to its result (the parsed answer, the exit, the
//! last byte read or written); its check and its cleanup follow, untimed. The rounds interleave
//! the cases as the other scenarios do (hybox, peer, peer, hybox, ...), a case with a large
//! tree runs fewer times. Every mount the bench makes is undone by a guard, on errors too.
//!
//! `HYBOX_BENCH_FS_SCALE` (or the hidden `--fs-scale`) scales the trees: 0.1 makes a quick run.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use http::Method;
use indicatif::ProgressBar;
use serde_json::{Value, json};
use tokio::process::Command;

use super::cases::quiesce;
use super::hybox::{self, BenchServer};
use super::peers::which;
use super::report::{Family, Kind, Outcome};
use crate::client::Client;

/// The scenario of snapshot create, restore and fork.
pub(super) const SNAPSHOT: &str = "snapshot";
/// The scenario of file reads, stats and writes through a workspace.
pub(super) const FS: &str = "fs";

/// Runs of a case over the large tree: at most this many, after at most one warm-up.
const HEAVY_RUNS: usize = 5;
/// Content is generated in chunks of this size, each from its own seed, so that any chunk's
/// first bytes can be recomputed to check a read.
const CHUNK: usize = 64 * 1024;
/// Bytes checked at the start of each chunk read.
const CHECKED: usize = 16;
/// The read cases read with buffers of this size.
const READ_BUF: usize = 1 << 20;
/// Sandboxes one fork call makes.
const FORKS: usize = 100;
/// The file rewritten before each snapshot or restore run.
const MARKER: &str = ".bench-run";
/// Where the read cases' file is in the fs tree.
const READ_FILE: &str = "read/big.bin";
/// The targets the issue sets (mount mode): a warning says when a median misses one.
const RESTORE_TARGET_MS: f64 = 10.0;
const FORK_TARGET_MS: f64 = 100.0;

/// The sandbox whose writable layer holds the source tree (snapshot-create-src).
const SNAP_SRC: &str = "bench-snap-src";
/// The sandbox whose writable layer holds the large tree (snapshot-create-large).
const SNAP_LARGE: &str = "bench-snap-large";
/// The sandboxes restored again and again.
const RESTORE_SMALL: &str = "bench-restore-small";
const RESTORE_LARGE: &str = "bench-restore-large";
/// The sandbox forked: the source tree restored from a snapshot.
const FORK_PARENT: &str = "bench-fork";
/// The sandbox of the fs scenario, and a nearly empty one (one small file) whose snapshot
/// resets it.
const FS_SANDBOX: &str = "bench-fs";
const EMPTY_SANDBOX: &str = "bench-fs-empty";

/// Reads `--fs-scale`: a factor in (0, 4].
///
/// # Errors
/// Not a number, or out of range.
pub(super) fn parse_scale(s: &str) -> Result<f64, String> {
    let x: f64 = s
        .trim()
        .parse()
        .map_err(|e| format!("{s:?} is not a number: {e}"))?;
    if x > 0.0 && x <= 4.0 {
        Ok(x)
    } else {
        Err(format!("{x} is not in (0, 4]"))
    }
}

// ---------------------------------------------------------------------------------------------
// Content and trees

/// What a file's chunks hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fill {
    /// Lines of indented code words: compresses like source code (zstd: ~4x).
    Text,
    /// 6 random bits per byte (`0`..`o`): compresses poorly (~0.75).
    Dense,
    /// Chunks alternate: even ones text, odd ones dense.
    Mixed,
}

/// One generated file.
#[derive(Debug, Clone)]
struct FileSpec {
    rel: String,
    len: u64,
    fill: Fill,
    seed: u64,
}

/// splitmix64: small, fast, and the same everywhere.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The text's vocabulary: 64 words, one per 6 bits.
#[rustfmt::skip]
const WORDS: [&str; 64] = [
    "fn", "let", "mut", "self", "return", "if", "else", "match", "impl", "struct", "pub", "use",
    "crate", "super", "const", "static", "async", "await", "loop", "while", "for", "in", "where",
    "type", "trait", "enum", "mod", "Some", "None", "Ok", "Err", "Vec", "String", "Option",
    "Result", "value", "index", "count", "buffer", "config", "error", "handle", "request",
    "response", "client", "server", "path", "file", "data", "state", "result", "context",
    "session", "len", "new", "from", "into", "as_ref", "clone", "map", "iter", "collect",
    "unwrap_or", "=>",
];
const INDENT: &[u8] = b"            ";

/// Copies what fits of `bytes` into `out` at `pos`.
fn put(out: &mut [u8], pos: &mut usize, bytes: &[u8]) {
    let n = bytes.len().min(out.len() - *pos);
    out[*pos..*pos + n].copy_from_slice(&bytes[..n]);
    *pos += n;
}

/// Fills `out` with chunk `index` of a file (or its first `out.len()` bytes: filling a shorter
/// buffer gives a prefix of a longer one, which is what lets a reader check a chunk's start).
fn fill_chunk(fill: Fill, seed: u64, index: u64, out: &mut [u8]) {
    let mut rng = seed ^ index.wrapping_mul(0xD6E8_FEB8_6659_FD93);
    let text = match fill {
        Fill::Text => true,
        Fill::Dense => false,
        Fill::Mixed => index.is_multiple_of(2),
    };
    if !text {
        for part in out.chunks_mut(8) {
            let v = splitmix(&mut rng).to_le_bytes();
            for (b, r) in part.iter_mut().zip(v) {
                *b = b'0' + (r & 0x3f);
            }
        }
        return;
    }
    let mut pos = 0;
    while pos < out.len() {
        let v = splitmix(&mut rng);
        let indent = (v & 3) as usize * 4;
        let words = 2 + ((v >> 2) & 7) as usize;
        let end: &[u8] = match (v >> 5) & 3 {
            0 => b";",
            1 => b" {",
            2 => b",",
            _ => b"",
        };
        let mut bits = v >> 7;
        put(out, &mut pos, &INDENT[..indent]);
        for w in 0..words {
            if w > 0 {
                put(out, &mut pos, b" ");
            }
            put(out, &mut pos, WORDS[(bits & 63) as usize].as_bytes());
            bits >>= 6;
        }
        put(out, &mut pos, end);
        put(out, &mut pos, b"\n");
    }
}

/// Calls `each` with every chunk of a file's content, in order.
fn for_each_chunk(
    spec: &FileSpec,
    buf: &mut [u8],
    mut each: impl FnMut(&[u8]) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut off = 0u64;
    let mut index = 0u64;
    while off < spec.len {
        let n = (spec.len - off).min(CHUNK as u64) as usize;
        fill_chunk(spec.fill, spec.seed, index, &mut buf[..n]);
        each(&buf[..n])?;
        off += n as u64;
        index += 1;
    }
    Ok(())
}

/// A generated tree: its files, every folder they need, and what it is made of.
#[derive(Debug, Clone)]
struct Tree {
    files: Vec<FileSpec>,
    dirs: Vec<String>,
    makeup: String,
}

impl Tree {
    fn new(files: Vec<FileSpec>, makeup: String) -> Self {
        let mut dirs = BTreeSet::new();
        for f in &files {
            let mut p = Path::new(&f.rel).parent();
            while let Some(d) = p.filter(|d| !d.as_os_str().is_empty()) {
                dirs.insert(d.to_string_lossy().into_owned());
                p = d.parent();
            }
        }
        Self {
            files,
            // Sorted, so a parent comes before its children.
            dirs: dirs.into_iter().collect(),
            makeup,
        }
    }

    fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.len).sum()
    }

    /// `10,000 files in 301 folders, 159,621,120 bytes = 159.6 MB: ...`
    fn summary(&self) -> String {
        let bytes = self.bytes();
        format!(
            "{} in {}, {} bytes = {:.1} MB: {}",
            counted(self.files.len(), "file"),
            counted(self.dirs.len(), "folder"),
            thousands(bytes),
            bytes as f64 / 1e6,
            self.makeup
        )
    }

    /// The file the checks look at: the first.
    fn sample(&self) -> anyhow::Result<&FileSpec> {
        self.files.first().context("the tree has no file")
    }
}

/// `n` scaled, at least 1.
fn scaled(n: usize, scale: f64) -> usize {
    ((n as f64 * scale).round() as usize).max(1)
}

/// A random length in `lo..=hi`.
fn between(rng: &mut u64, lo: u64, hi: u64) -> u64 {
    lo + splitmix(rng) % (hi - lo + 1)
}

/// The source tree: at scale 1, 9,960 text files of 1-20 KiB in 200 folders of 100 packages
/// and 40 files of 1-1.5 MiB of dense data: 10,000 files, about 160 MB.
fn source_tree(scale: f64) -> Tree {
    let mut rng = 0x5eed_0001;
    let texts = scaled(9_960, scale);
    let blobs = scaled(40, scale);
    let mut files = Vec::with_capacity(texts + blobs);
    for i in 0..texts {
        let sub = if (i / 50) % 2 == 0 { "src" } else { "lib" };
        files.push(FileSpec {
            rel: format!("pkg-{:03}/{sub}/mod-{i:05}.rs", i / 100),
            len: between(&mut rng, 1024, 20 * 1024),
            fill: Fill::Text,
            seed: splitmix(&mut rng),
        });
    }
    for i in 0..blobs {
        files.push(FileSpec {
            rel: format!("assets/blob-{i:03}.bin"),
            len: between(&mut rng, 1 << 20, 3 << 19),
            fill: Fill::Dense,
            seed: splitmix(&mut rng),
        });
    }
    Tree::new(
        files,
        format!(
            "{} text-like files of 1-20 KiB and {} files of 1-1.5 MiB of 6-bit random data",
            thousands(texts as u64),
            thousands(blobs as u64)
        ),
    )
}

/// The large tree: at scale 1, 128 files of 8 MiB (1 GiB), half text-like, half dense.
fn large_tree(scale: f64) -> Tree {
    let mut rng = 0x5eed_0002;
    let n = scaled(128, scale);
    let files = (0..n)
        .map(|i| FileSpec {
            rel: format!("part-{:02}/blob-{i:03}.bin", i / 16),
            len: 8 << 20,
            fill: if i % 2 == 0 { Fill::Text } else { Fill::Dense },
            seed: splitmix(&mut rng),
        })
        .collect();
    Tree::new(
        files,
        format!(
            "{} files of 8 MiB, every other one text-like, the others 6-bit random data",
            thousands(n as u64)
        ),
    )
}

/// The small tree of the restore cases: 100 text files of 4-16 KiB, about 1 MB (not scaled).
fn small_tree() -> Tree {
    let mut rng = 0x5eed_0003;
    let files = (0..100)
        .map(|i| FileSpec {
            rel: format!("dir-{}/note-{i:03}.txt", i / 10),
            len: between(&mut rng, 4 * 1024, 16 * 1024),
            fill: Fill::Text,
            seed: splitmix(&mut rng),
        })
        .collect();
    Tree::new(files, "100 text-like files of 4-16 KiB".to_owned())
}

/// The read cases' file: 256 MiB at scale 1, a whole number of chunks.
fn read_file(scale: f64) -> FileSpec {
    let chunks = ((256.0 * 16.0 * scale).round() as u64).max(1);
    FileSpec {
        rel: READ_FILE.to_owned(),
        len: chunks * CHUNK as u64,
        fill: Fill::Mixed,
        seed: 0x5eed_0004,
    }
}

/// The fs scenario's image: the source tree plus the read file.
fn fs_tree(scale: f64) -> Tree {
    let src = source_tree(scale);
    let read = read_file(scale);
    let makeup = format!(
        "the source tree ({}) plus {READ_FILE} of {} bytes (64 KiB chunks alternating text-like \
         and 6-bit data)",
        src.makeup,
        thousands(read.len)
    );
    let mut files = src.files;
    files.push(read);
    Tree::new(files, makeup)
}

/// The write burst: like an `npm install`, many small files in many folders.
#[derive(Debug)]
struct Burst {
    /// Folders in creation order (parents first).
    dirs: Vec<String>,
    /// Each file and its content, generated before the clock.
    files: Vec<(String, Vec<u8>)>,
}

impl Burst {
    /// 5,000 files of 1-8 KiB in 500 folders at scale 1 (at least 10 files).
    fn new(scale: f64) -> Self {
        let mut rng = 0x5eed_0005;
        let n = ((5_000.0 * scale).round() as usize).max(10);
        let folders = (n / 10).max(1);
        let mut dirs = vec!["node_modules".to_owned()];
        dirs.extend((0..folders).map(|d| format!("node_modules/pkg-{d:03}")));
        let files = (0..n)
            .map(|i| {
                let len = between(&mut rng, 1024, 8 * 1024) as usize;
                let mut data = vec![0; len];
                fill_chunk(Fill::Text, splitmix(&mut rng), 0, &mut data);
                (
                    format!("node_modules/pkg-{:03}/file-{i:04}.js", i % folders),
                    data,
                )
            })
            .collect();
        Self { dirs, files }
    }

    fn bytes(&self) -> u64 {
        self.files.iter().map(|(_, d)| d.len() as u64).sum()
    }

    fn summary(&self) -> String {
        format!(
            "{} files of 1-8 KiB ({} bytes) in {} folders",
            thousands(self.files.len() as u64),
            thousands(self.bytes()),
            thousands(self.dirs.len() as u64)
        )
    }
}

/// `1 file`, `10,000 files`.
fn counted(n: usize, noun: &str) -> String {
    let s = if n == 1 { "" } else { "s" };
    format!("{} {noun}{s}", thousands(n as u64))
}

/// `1234567` → `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Writes a tree into each of `dests` (the same bytes, generated once).
fn write_tree(tree: &Tree, dests: &[PathBuf]) -> anyhow::Result<()> {
    for dest in dests {
        for dir in &tree.dirs {
            let path = dest.join(dir);
            std::fs::create_dir_all(&path).with_context(|| format!("create {}", path.display()))?;
        }
    }
    let mut buf = vec![0; CHUNK];
    for f in &tree.files {
        let mut outs = Vec::with_capacity(dests.len());
        for dest in dests {
            let path = dest.join(&f.rel);
            outs.push(File::create(&path).with_context(|| format!("create {}", path.display()))?);
        }
        for_each_chunk(f, &mut buf, |chunk| {
            outs.iter_mut().try_for_each(|out| out.write_all(chunk))
        })
        .with_context(|| format!("write {}", f.rel))?;
    }
    Ok(())
}

/// Reads until `buf` is full or the file ends; the bytes read.
fn read_full(f: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Reads a generated file from open to end with [`READ_BUF`] reads, checking its length and
/// each chunk's first [`CHECKED`] bytes; the time from the open to the last read.
fn read_checked(path: &Path, spec: &FileSpec) -> anyhow::Result<Duration> {
    let mut buf = vec![0; READ_BUF];
    let mut want = [0; CHECKED];
    let t0 = Instant::now();
    let mut f = File::open(path).with_context(|| format!("open {}", path.display()))?;
    let mut off = 0u64;
    loop {
        let n = read_full(&mut f, &mut buf).with_context(|| format!("read {}", path.display()))?;
        if n == 0 {
            break;
        }
        // `off` is a multiple of READ_BUF, itself of CHUNK: the chunks start at buf's.
        for (k, chunk) in buf[..n].chunks(CHUNK).enumerate() {
            let index = off / CHUNK as u64 + k as u64;
            let m = chunk.len().min(CHECKED);
            fill_chunk(spec.fill, spec.seed, index, &mut want[..m]);
            if chunk[..m] != want[..m] {
                bail!("{}: chunk {index} holds other bytes", path.display());
            }
        }
        off += n as u64;
    }
    let elapsed = t0.elapsed();
    if off != spec.len {
        bail!(
            "{}: read {off} bytes, expected {}",
            path.display(),
            spec.len
        );
    }
    Ok(elapsed)
}

/// `lstat`s every path in turn, checking each size; the time from the first to the last.
fn stat_all(paths: &[(PathBuf, u64)]) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    for (path, len) in paths {
        let meta =
            std::fs::symlink_metadata(path).with_context(|| format!("stat {}", path.display()))?;
        if meta.len() != *len {
            bail!("{}: {} bytes, expected {len}", path.display(), meta.len());
        }
    }
    Ok(t0.elapsed())
}

/// Creates `root`, the burst's folders and files (no fsync); the time from the first mkdir to
/// the last file closed.
fn write_burst(root: &Path, burst: &Burst) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    std::fs::create_dir(root).with_context(|| format!("create {}", root.display()))?;
    for dir in &burst.dirs {
        let path = root.join(dir);
        std::fs::create_dir(&path).with_context(|| format!("create {}", path.display()))?;
    }
    for (rel, data) in &burst.files {
        let path = root.join(rel);
        let mut f = File::create(&path).with_context(|| format!("create {}", path.display()))?;
        f.write_all(data)
            .with_context(|| format!("write {}", path.display()))?;
    }
    Ok(t0.elapsed())
}

/// Checks that a generated file is at `root/rel` with its size.
fn check_file(root: &Path, spec: &FileSpec) -> anyhow::Result<()> {
    let path = root.join(&spec.rel);
    let meta = std::fs::metadata(&path).with_context(|| format!("stat {}", path.display()))?;
    if meta.len() != spec.len {
        bail!(
            "{} has {} bytes, expected {}",
            path.display(),
            meta.len(),
            spec.len
        );
    }
    Ok(())
}

/// Runs blocking work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .context("a blocking task panicked")?
}

// ---------------------------------------------------------------------------------------------
// Host facts, mounts and the peers' tools

/// The host path of a sandbox's workspace: its copy-on-write view `<data>/mnt/<id>` when the
/// server mounts them (restoreMode mount), else `<data>/sandboxes/<id>/workspace`.
pub(super) fn workspace_path(data_dir: &Path, sandbox: &str) -> PathBuf {
    let view = data_dir.join("mnt").join(sandbox);
    if view.is_dir() {
        view
    } else {
        data_dir.join("sandboxes").join(sandbox).join("workspace")
    }
}

/// Whether this process runs as root (effective uid 0).
pub(super) fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|uids| uids.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// A field of /proc/self/mountinfo with its octal escapes (`\040` for a space) decoded.
fn unescape_mount_path(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        if let Some(d) = octal {
            out.push(d.iter().fold(0u8, |n, c| n.wrapping_mul(8) + (c - b'0')));
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether something is mounted at `dir` (a dead FUSE mount included: its parent is resolved,
/// never the mount itself).
fn is_mount_point(dir: &Path) -> bool {
    let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else {
        return false;
    };
    let Ok(parent) = parent.canonicalize() else {
        return false;
    };
    let want = parent.join(name);
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    info.lines().any(|l| {
        l.split(' ')
            .nth(4)
            .is_some_and(|p| Path::new(&unescape_mount_path(p)) == want)
    })
}

/// Unmounts `dir` if something is mounted there: `umount` as root, else `fusermount3 -u` or
/// `fusermount -u`; lazily when it is busy. Best effort, synchronous (it runs in `Drop`).
fn unmount(dir: &Path) {
    if !is_mount_point(dir) {
        return;
    }
    let run = |program: &Path, args: &[&OsStr]| {
        std::process::Command::new(program)
            .args(args)
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if is_root() {
        let umount = which("umount").unwrap_or_else(|| PathBuf::from("/bin/umount"));
        if !run(&umount, &[]) {
            run(&umount, &[OsStr::new("-l")]);
        }
    } else if let Some(fm) = which("fusermount3").or_else(|| which("fusermount"))
        && !run(&fm, &[OsStr::new("-u")])
    {
        run(&fm, &[OsStr::new("-u"), OsStr::new("-z")]);
    }
}

/// Unmounts its folder when dropped (if something is mounted there).
#[derive(Debug)]
pub(super) struct Unmount(pub(super) PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        unmount(&self.0);
    }
}

/// Stops the bench's server the way a user does, with SIGTERM, so it unmounts its workspaces
/// (a killed FUSE server leaves a dead mount behind); then kills whatever is left and unmounts
/// `<data_dir>/mnt` if it is still mounted.
pub(super) async fn stop_server(mut server: BenchServer, data_dir: &Path) {
    if let Ok(pid) = server.pid() {
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .stdin(Stdio::null())
            .status()
            .await;
        let started = Instant::now();
        while server.exited().is_none() && started.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    server.stop().await;
    unmount(&data_dir.join("mnt"));
}

/// Empties the page cache (dentries and inodes too): `sync`, then `echo 3 >
/// /proc/sys/vm/drop_caches`. Needs root.
async fn drop_caches() -> anyhow::Result<()> {
    let _ = Command::new("sync").stdin(Stdio::null()).status().await;
    blocking(|| {
        std::fs::write("/proc/sys/vm/drop_caches", "3").context("write /proc/sys/vm/drop_caches")
    })
    .await
}

/// A folder mounted by the bench, unmounted when dropped.
#[derive(Debug)]
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        unmount(&self.0);
    }
}

/// How a peer mounts an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mounter {
    /// `mount -t squashfs -o loop,ro`.
    Kernel,
    /// `squashfuse`.
    Squashfuse,
}

/// The peers' tools, found on PATH, each with the reason it cannot be used.
#[derive(Debug)]
struct Tools {
    root: bool,
    mksquashfs: Result<PathBuf, String>,
    unsquashfs: Result<PathBuf, String>,
    squashfuse: Result<PathBuf, String>,
    mount: Result<PathBuf, String>,
    /// `mksquashfs version 4.5.1 (2022/03/17)` or `mksquashfs`.
    mksquashfs_version: String,
    unsquashfs_version: String,
    squashfuse_version: String,
}

/// The first line a tool prints about itself that names it (`-version`, or squashfuse's
/// `--help`, which says its version on stderr), without the copyright.
async fn tool_version(program: &Path, arg: &str, fallback: &str) -> String {
    let out = Command::new(program)
        .arg(arg)
        .stdin(Stdio::null())
        .output()
        .await;
    let Ok(out) = out else {
        return fallback.to_owned();
    };
    let text = [out.stdout, out.stderr].concat();
    String::from_utf8_lossy(&text)
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with(fallback))
        .map_or_else(
            || fallback.to_owned(),
            |l| l.split(" (c)").next().unwrap_or(l).trim().to_owned(),
        )
}

impl Tools {
    async fn detect() -> Self {
        let root = is_root();
        let find = |name: &str, package: &str| {
            which(name).ok_or_else(|| {
                format!(
                    "{name} is not on PATH (apt-get install {package}, or hybox bench \
                     --install-peers as root)"
                )
            })
        };
        let mksquashfs = find("mksquashfs", "squashfs-tools");
        let unsquashfs = find("unsquashfs", "squashfs-tools");
        let mut squashfuse = find("squashfuse", "squashfuse");
        if squashfuse.is_ok() && !Path::new("/dev/fuse").exists() {
            squashfuse = Err("/dev/fuse does not exist".to_owned());
        }
        if squashfuse.is_ok()
            && !root
            && which("fusermount3").is_none()
            && which("fusermount").is_none()
        {
            squashfuse = Err("no fusermount3 or fusermount to unmount it".to_owned());
        }
        let mount = if root {
            which("mount").ok_or_else(|| "mount is not on PATH".to_owned())
        } else {
            Err("needs root (mount -o loop)".to_owned())
        };
        let mksquashfs_version = match &mksquashfs {
            Ok(p) => tool_version(p, "-version", "mksquashfs").await,
            Err(_) => String::new(),
        };
        let unsquashfs_version = match &unsquashfs {
            Ok(p) => tool_version(p, "-version", "unsquashfs").await,
            Err(_) => String::new(),
        };
        let squashfuse_version = match &squashfuse {
            Ok(p) => tool_version(p, "--help", "squashfuse").await,
            Err(_) => String::new(),
        };
        Self {
            root,
            mksquashfs,
            unsquashfs,
            squashfuse,
            mount,
            mksquashfs_version,
            unsquashfs_version,
            squashfuse_version,
        }
    }

    fn mounter(&self, m: Mounter) -> &Result<PathBuf, String> {
        match m {
            Mounter::Kernel => &self.mount,
            Mounter::Squashfuse => &self.squashfuse,
        }
    }
}

/// `--install-peers` for these scenarios: `apt-get install -y squashfs-tools squashfuse` when
/// one of their tools is missing (as root; otherwise the error says what to run).
///
/// # Errors
/// Not root, no apt-get, or the install failed.
pub(super) async fn install_peers() -> anyhow::Result<()> {
    let mut packages = Vec::new();
    if which("mksquashfs").is_none() || which("unsquashfs").is_none() {
        packages.push("squashfs-tools");
    }
    if which("squashfuse").is_none() {
        packages.push("squashfuse");
    }
    if packages.is_empty() {
        return Ok(());
    }
    let line = format!("apt-get install -y {}", packages.join(" "));
    if !is_root() {
        bail!("not root: run `sudo {line}` for the snapshot and fs scenarios' peers");
    }
    let Some(apt) = which("apt-get") else {
        bail!("no apt-get: install {} yourself", packages.join(" and "));
    };
    eprintln!("hybox bench: installing the snapshot and fs peers' tools: {line}");
    if apt_install(&apt, &packages).await {
        return Ok(());
    }
    // A machine that never ran `apt-get update` has no package lists yet.
    let _ = Command::new(&apt)
        .args(["update", "-q"])
        .stdin(Stdio::null())
        .status()
        .await;
    if apt_install(&apt, &packages).await {
        Ok(())
    } else {
        bail!("`{line}` failed")
    }
}

/// `apt-get install -y -q packages`, non-interactive; whether it succeeded.
async fn apt_install(apt: &Path, packages: &[&str]) -> bool {
    Command::new(apt)
        .args(["install", "-y", "-q"])
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success())
}

/// Free bytes of the file system holding `dir` (`df -Pk`), when it can be read.
async fn free_bytes(dir: &Path) -> Option<u64> {
    let out = Command::new("df")
        .arg("-Pk")
        .arg(dir)
        .stdin(Stdio::null())
        .output()
        .await
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let kib: u64 = text
        .lines()
        .nth(1)?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// The last lines of a log, on one line.
fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(3)..].join(" | ")
}

/// Runs a tool with no output kept but its stderr (into `log`); the time from the spawn to the
/// exit.
///
/// # Errors
/// Spawn failures and a failed exit (with the end of its stderr).
async fn run_tool(program: &Path, args: &[&OsStr], log: &Path) -> anyhow::Result<Duration> {
    let stderr = File::create(log).with_context(|| format!("create {}", log.display()))?;
    let t0 = Instant::now();
    let status = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .kill_on_drop(true)
        .status()
        .await
        .with_context(|| format!("spawn {}", program.display()))?;
    let elapsed = t0.elapsed();
    if !status.success() {
        bail!("{} exited {status}: {}", program.display(), log_tail(log));
    }
    Ok(elapsed)
}

/// Mounts `image` at `dir` (created if needed) with `how`; the time of the mounting process
/// and the guard that unmounts it. The guard exists as soon as the process has exited, so a
/// half-made mount is undone too.
async fn mount_image(
    tools: &Tools,
    how: Mounter,
    image: &Path,
    dir: &Path,
    log: &Path,
) -> anyhow::Result<(Duration, Mounted)> {
    let program = tools
        .mounter(how)
        .as_ref()
        .map_err(|why| anyhow::anyhow!("{why}"))?;
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let args: Vec<&OsStr> = match how {
        Mounter::Kernel => vec![
            OsStr::new("-t"),
            OsStr::new("squashfs"),
            OsStr::new("-o"),
            OsStr::new("loop,ro"),
            image.as_os_str(),
            dir.as_os_str(),
        ],
        Mounter::Squashfuse => vec![image.as_os_str(), dir.as_os_str()],
    };
    let run = run_tool(program, &args, log).await;
    let guard = Mounted(dir.to_path_buf());
    let elapsed = run?;
    if !is_mount_point(dir) {
        bail!(
            "{} exited but nothing is mounted at {}",
            program.display(),
            dir.display()
        );
    }
    Ok((elapsed, guard))
}

// ---------------------------------------------------------------------------------------------
// The cases

/// Which tree a snapshot case works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Size {
    /// The source tree.
    Src,
    /// The large tree.
    Large,
    /// The ~1 MB tree.
    Small,
}

/// Where the fs cases read and stat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    /// The sandbox's workspace (the server's FUSE view).
    Workspace,
    /// A peer's mount of the same image.
    Peer(Mounter),
}

/// What one run of a case does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    /// `POST .../snapshots` of a workspace whose writable layer holds the tree.
    Create(Size),
    /// `mksquashfs` of the same tree in a plain folder.
    Mksquashfs(Size),
    /// `POST .../restore` of the tree's snapshot.
    Restore(Size),
    /// `unsquashfs` of the same image into a new folder.
    Unsquashfs(Size),
    /// Mounting the same image.
    Mount(Mounter, Size),
    /// `POST .../fork {count: 100}`.
    Fork,
    /// A sequential read of the read file; cold or warm.
    Read(Via, bool),
    /// A stat of every file of the source tree; cold or warm.
    Stat(Via, bool),
    /// The write burst, through the workspace (true) or in a plain folder.
    Burst(bool),
}

impl Probe {
    /// A case over the large tree: fewer runs.
    fn heavy(self) -> bool {
        matches!(
            self,
            Self::Create(Size::Large)
                | Self::Mksquashfs(Size::Large)
                | Self::Unsquashfs(Size::Large)
        )
    }

    fn size(self) -> Option<Size> {
        match self {
            Self::Create(s)
            | Self::Mksquashfs(s)
            | Self::Restore(s)
            | Self::Unsquashfs(s)
            | Self::Mount(_, s) => Some(s),
            _ => None,
        }
    }
}

/// What a derived rate counts, per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rate {
    /// 10^6 bytes.
    Megabytes,
    /// Files stat'ed.
    Stats,
    /// Files created and written.
    Files,
}

impl Rate {
    fn unit(self) -> &'static str {
        match self {
            Self::Megabytes => "MB/s",
            Self::Stats => "stats/s",
            Self::Files => "files/s",
        }
    }
}

/// A case: what it is called, who it measures, what it is compared with, what a run does, and
/// the rate derived from its times.
#[derive(Debug, Clone, Copy)]
struct Def {
    name: &'static str,
    kind: Kind,
    scenario: &'static str,
    /// The cases compared with each other share it; empty: compared with nothing.
    family: &'static str,
    probe: Probe,
    rate: Option<(&'static str, Rate)>,
}

const fn def(
    name: &'static str,
    kind: Kind,
    scenario: &'static str,
    family: &'static str,
    probe: Probe,
    rate: Option<(&'static str, Rate)>,
) -> Def {
    Def {
        name,
        kind,
        scenario,
        family,
        probe,
        rate,
    }
}

/// Every case of both scenarios, in the order each round runs them: each hybox case next to
/// its peers.
#[rustfmt::skip]
const DEFS: &[Def] = &[
    def("snapshot-create-src", Kind::Hybox, SNAPSHOT, "create src", Probe::Create(Size::Src), Some(("snapshot-create-src-throughput", Rate::Megabytes))),
    def("mksquashfs-src", Kind::Peer, SNAPSHOT, "create src", Probe::Mksquashfs(Size::Src), Some(("mksquashfs-src-throughput", Rate::Megabytes))),
    def("snapshot-create-large", Kind::Hybox, SNAPSHOT, "create large", Probe::Create(Size::Large), Some(("snapshot-create-large-throughput", Rate::Megabytes))),
    def("mksquashfs-large", Kind::Peer, SNAPSHOT, "create large", Probe::Mksquashfs(Size::Large), Some(("mksquashfs-large-throughput", Rate::Megabytes))),
    def("restore-small", Kind::Hybox, SNAPSHOT, "restore small", Probe::Restore(Size::Small), None),
    def("unsquashfs-small", Kind::Peer, SNAPSHOT, "restore small", Probe::Unsquashfs(Size::Small), None),
    def("mount-squashfs-small", Kind::Peer, SNAPSHOT, "restore small", Probe::Mount(Mounter::Kernel, Size::Small), None),
    def("squashfuse-small", Kind::Peer, SNAPSHOT, "restore small", Probe::Mount(Mounter::Squashfuse, Size::Small), None),
    def("restore-large", Kind::Hybox, SNAPSHOT, "restore large", Probe::Restore(Size::Large), None),
    def("unsquashfs-large", Kind::Peer, SNAPSHOT, "restore large", Probe::Unsquashfs(Size::Large), None),
    def("mount-squashfs-large", Kind::Peer, SNAPSHOT, "restore large", Probe::Mount(Mounter::Kernel, Size::Large), None),
    def("squashfuse-large", Kind::Peer, SNAPSHOT, "restore large", Probe::Mount(Mounter::Squashfuse, Size::Large), None),
    def("fork-100", Kind::Hybox, SNAPSHOT, "", Probe::Fork, None),
    def("workspace-read-cold", Kind::Hybox, FS, "read cold", Probe::Read(Via::Workspace, true), Some(("workspace-read-cold-throughput", Rate::Megabytes))),
    def("kernel-squashfs-read-cold", Kind::Peer, FS, "read cold", Probe::Read(Via::Peer(Mounter::Kernel), true), Some(("kernel-squashfs-read-cold-throughput", Rate::Megabytes))),
    def("squashfuse-read-cold", Kind::Peer, FS, "read cold", Probe::Read(Via::Peer(Mounter::Squashfuse), true), Some(("squashfuse-read-cold-throughput", Rate::Megabytes))),
    def("workspace-read-warm", Kind::Hybox, FS, "read warm", Probe::Read(Via::Workspace, false), Some(("workspace-read-warm-throughput", Rate::Megabytes))),
    def("kernel-squashfs-read-warm", Kind::Peer, FS, "read warm", Probe::Read(Via::Peer(Mounter::Kernel), false), Some(("kernel-squashfs-read-warm-throughput", Rate::Megabytes))),
    def("squashfuse-read-warm", Kind::Peer, FS, "read warm", Probe::Read(Via::Peer(Mounter::Squashfuse), false), Some(("squashfuse-read-warm-throughput", Rate::Megabytes))),
    def("workspace-stat-cold", Kind::Hybox, FS, "stat cold", Probe::Stat(Via::Workspace, true), Some(("workspace-stat-cold-rate", Rate::Stats))),
    def("kernel-squashfs-stat-cold", Kind::Peer, FS, "stat cold", Probe::Stat(Via::Peer(Mounter::Kernel), true), Some(("kernel-squashfs-stat-cold-rate", Rate::Stats))),
    def("squashfuse-stat-cold", Kind::Peer, FS, "stat cold", Probe::Stat(Via::Peer(Mounter::Squashfuse), true), Some(("squashfuse-stat-cold-rate", Rate::Stats))),
    def("workspace-stat-warm", Kind::Hybox, FS, "stat warm", Probe::Stat(Via::Workspace, false), Some(("workspace-stat-warm-rate", Rate::Stats))),
    def("kernel-squashfs-stat-warm", Kind::Peer, FS, "stat warm", Probe::Stat(Via::Peer(Mounter::Kernel), false), Some(("kernel-squashfs-stat-warm-rate", Rate::Stats))),
    def("squashfuse-stat-warm", Kind::Peer, FS, "stat warm", Probe::Stat(Via::Peer(Mounter::Squashfuse), false), Some(("squashfuse-stat-warm-rate", Rate::Stats))),
    def("workspace-write-burst", Kind::Hybox, FS, "write burst", Probe::Burst(true), Some(("workspace-write-burst-rate", Rate::Files))),
    def("plain-dir-write-burst", Kind::Peer, FS, "write burst", Probe::Burst(false), Some(("plain-dir-write-burst-rate", Rate::Files))),
];

/// Every case name of these scenarios, derived ones included.
#[cfg(test)]
pub(super) fn case_names() -> impl Iterator<Item = &'static str> {
    DEFS.iter()
        .flat_map(|d| std::iter::once(d.name).chain(d.rate.map(|(name, _)| name)))
}

/// What `hybox bench` asks of these scenarios.
#[derive(Debug, Clone, Copy)]
pub(super) struct Options {
    /// Run the snapshot scenario.
    pub(super) snapshot: bool,
    /// Run the fs scenario.
    pub(super) fs: bool,
    /// Measured runs per case (the large tree's cases do at most [`HEAVY_RUNS`]).
    pub(super) runs: usize,
    /// Warm-up runs per case.
    pub(super) warmup: usize,
    /// The trees' size factor.
    pub(super) scale: f64,
}

/// What the scenarios produced.
#[derive(Debug, Default)]
pub(super) struct Done {
    /// Timed and derived cases, in the report's order.
    pub(super) outcomes: Vec<Outcome>,
    /// Failures, missed targets, caveats.
    pub(super) warnings: Vec<String>,
    /// Whether a hybox case failed.
    pub(super) failed: bool,
}

/// One image of a tree the snapshot cases use.
#[derive(Debug)]
struct Prepared {
    tree: Arc<Tree>,
    /// The snapshot restored by the restore case (and the fork parent, for the source tree).
    snap: String,
    /// The same image exported from the server, for the peers.
    image: Option<PathBuf>,
}

/// The fs scenario's state.
#[derive(Debug)]
struct FsState {
    tree: Arc<Tree>,
    read: FileSpec,
    snap: String,
    empty_snap: String,
    image: PathBuf,
    kernel: Option<Mounted>,
    squashfuse: Option<Mounted>,
    burst: Arc<Burst>,
}

impl FsState {
    /// Where a peer's mount of the image is kept.
    fn mount_slot(&mut self, how: Mounter) -> &mut Option<Mounted> {
        match how {
            Mounter::Kernel => &mut self.kernel,
            Mounter::Squashfuse => &mut self.squashfuse,
        }
    }
}

/// Everything the runs share.
#[derive(Debug)]
struct Bench {
    client: Client,
    data_dir: PathBuf,
    scratch: PathBuf,
    server_pid: u32,
    tools: Tools,
    /// The server's `workspaces.restoreMode`.
    mode: String,
    scale: f64,
    src: Option<Prepared>,
    large: Option<Prepared>,
    small: Option<Prepared>,
    /// Why the large tree's cases do not run.
    large_skip: Option<String>,
    fs: Option<FsState>,
    seq: u64,
}

/// The large tree needs its plain copy, the writable layer, the snapshot's image, one run's
/// image, mksquashfs's output, the exported image and unsquashfs's folder at once, and room
/// for the rest.
const LARGE_COPIES: u64 = 7;
const SPARE_BYTES: u64 = 2 << 30;

async fn call(
    client: &Client,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    client
        .call(method.clone(), path, body.as_ref())
        .await
        .with_context(|| format!("{method} {path}"))
}

impl Bench {
    fn ws(&self, sandbox: &str) -> PathBuf {
        workspace_path(&self.data_dir, sandbox)
    }

    fn mount_dir(&self, how: Mounter, what: &str) -> PathBuf {
        let kind = match how {
            Mounter::Kernel => "kernel",
            Mounter::Squashfuse => "squashfuse",
        };
        self.scratch.join(format!("mnt-{kind}-{what}"))
    }

    fn log(&self, name: &str) -> PathBuf {
        self.scratch.join(format!("{name}.stderr"))
    }

    async fn snapshot(&self, sandbox: &str) -> anyhow::Result<Value> {
        call(
            &self.client,
            Method::POST,
            &format!("/v1/sandboxes/{sandbox}/snapshots"),
            Some(json!({})),
        )
        .await
    }

    async fn restore(&self, sandbox: &str, snap: &str) -> anyhow::Result<Value> {
        call(
            &self.client,
            Method::POST,
            &format!("/v1/sandboxes/{sandbox}/snapshots/{snap}/restore"),
            Some(json!({})),
        )
        .await
    }

    async fn export(&self, snap: &str, dest: &Path) -> anyhow::Result<()> {
        self.client
            .download(&format!("/v1/snapshots/{snap}/export"), dest, |_, _| {})
            .await
            .with_context(|| format!("export {snap}"))?;
        Ok(())
    }

    /// Writes `tree` into the workspace of a new sandbox (and into `plain` when given) and
    /// snapshots it; the snapshot's id.
    async fn seed(
        &self,
        sandbox: &str,
        tree: &Arc<Tree>,
        plain: Option<PathBuf>,
    ) -> anyhow::Result<String> {
        hybox::create_sandbox(&self.client, sandbox).await?;
        let mut dests = vec![self.ws(sandbox)];
        dests.extend(plain);
        let t = tree.clone();
        blocking(move || write_tree(&t, &dests)).await?;
        let snap = self.snapshot(sandbox).await?;
        snap["id"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("snapshot answer without an id: {snap}"))
    }

    fn peers_need_images(&self) -> bool {
        self.tools.unsquashfs.is_ok() || self.tools.mount.is_ok() || self.tools.squashfuse.is_ok()
    }

    /// The snapshot scenario's trees, sandboxes, snapshots and images.
    async fn setup_snapshot(&mut self, bar: &ProgressBar) -> anyhow::Result<()> {
        bar.set_message("snapshot: writing the source tree");
        let src = Arc::new(source_tree(self.scale));
        let plain = self.scratch.join("plain-src");
        let snap = self.seed(SNAP_SRC, &src, Some(plain)).await?;
        // The fork parent: the tree in a read-only layer under an empty writable one.
        hybox::create_sandbox(&self.client, FORK_PARENT).await?;
        self.restore(FORK_PARENT, &snap).await?;
        self.src = Some(Prepared {
            tree: src,
            snap,
            image: None,
        });

        bar.set_message("snapshot: writing the small tree");
        let small = Arc::new(small_tree());
        let snap = self.seed(RESTORE_SMALL, &small, None).await?;
        // Every run then swaps a view like the one before it.
        self.restore(RESTORE_SMALL, &snap).await?;
        let image = if self.peers_need_images() {
            let path = self.scratch.join("small.sqfs");
            self.export(&snap, &path).await?;
            Some(path)
        } else {
            None
        };
        self.small = Some(Prepared {
            tree: small,
            snap,
            image,
        });

        let large = Arc::new(large_tree(self.scale));
        let need = large.bytes() * LARGE_COPIES + SPARE_BYTES;
        if let Some(free) = free_bytes(&self.scratch).await.filter(|f| *f < need) {
            self.large_skip = Some(format!(
                "not enough free disk for the large tree: it needs about {:.1} GB, {:.1} GB \
                 are free (a smaller HYBOX_BENCH_FS_SCALE needs less)",
                need as f64 / 1e9,
                free as f64 / 1e9
            ));
            return Ok(());
        }
        bar.set_message("snapshot: writing the large tree");
        let plain = self.scratch.join("plain-large");
        let snap = self.seed(SNAP_LARGE, &large, Some(plain)).await?;
        hybox::create_sandbox(&self.client, RESTORE_LARGE).await?;
        self.restore(RESTORE_LARGE, &snap).await?;
        let image = if self.peers_need_images() {
            bar.set_message("snapshot: exporting the large image");
            let path = self.scratch.join("large.sqfs");
            self.export(&snap, &path).await?;
            Some(path)
        } else {
            None
        };
        self.large = Some(Prepared {
            tree: large,
            snap,
            image,
        });
        Ok(())
    }

    /// The fs scenario's sandbox (the tree restored from its snapshot), its image exported and
    /// mounted by the peers.
    async fn setup_fs(&mut self, bar: &ProgressBar) -> anyhow::Result<()> {
        bar.set_message("fs: writing the tree");
        let tree = Arc::new(fs_tree(self.scale));
        let snap = self.seed(FS_SANDBOX, &tree, None).await?;
        hybox::create_sandbox(&self.client, EMPTY_SANDBOX).await?;
        // One small file: a snapshot of an empty workspace fails (SNAPSHOT_CORRUPT, "fragment
        // table pointer out of the image") on this server.
        let keep = self.ws(EMPTY_SANDBOX).join(".keep");
        std::fs::write(&keep, "x\n").with_context(|| format!("write {}", keep.display()))?;
        let empty = self.snapshot(EMPTY_SANDBOX).await?;
        let empty_snap = empty["id"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("snapshot answer without an id: {empty}"))?;
        // From now on the files come from the squashfs image, under an empty writable layer.
        self.restore(FS_SANDBOX, &snap).await?;
        bar.set_message("fs: exporting the image");
        let image = self.scratch.join("fs.sqfs");
        self.export(&snap, &image).await?;
        let read = read_file(self.scale);
        let mut fs = FsState {
            tree,
            read,
            snap,
            empty_snap,
            image,
            kernel: None,
            squashfuse: None,
            burst: Arc::new(Burst::new(self.scale)),
        };
        std::fs::create_dir_all(self.scratch.join("plain-burst"))?;
        // The peers' mounts; one that fails leaves its cases to fail their first run.
        for how in [Mounter::Kernel, Mounter::Squashfuse] {
            if self.tools.mounter(how).is_ok() {
                let dir = self.mount_dir(how, "fs");
                let log = self.log("mount-fs");
                if let Ok((_, guard)) = mount_image(&self.tools, how, &fs.image, &dir, &log).await {
                    match how {
                        Mounter::Kernel => fs.kernel = Some(guard),
                        Mounter::Squashfuse => fs.squashfuse = Some(guard),
                    }
                }
            }
        }
        self.fs = Some(fs);
        Ok(())
    }

    /// Why a case cannot run here, or `None`.
    fn unavailable(&self, probe: Probe) -> Option<String> {
        let tool = |r: &Result<PathBuf, String>| r.as_ref().err().cloned();
        if probe.size() == Some(Size::Large)
            && let Some(why) = &self.large_skip
        {
            return Some(why.clone());
        }
        match probe {
            Probe::Mksquashfs(_) => tool(&self.tools.mksquashfs),
            Probe::Unsquashfs(_) => tool(&self.tools.unsquashfs),
            Probe::Mount(how, _)
            | Probe::Read(Via::Peer(how), _)
            | Probe::Stat(Via::Peer(how), _)
                if self.tools.mounter(how).is_err() =>
            {
                tool(self.tools.mounter(how))
            }
            Probe::Read(_, true) | Probe::Stat(_, true) if !self.tools.root => Some(
                "a cold run drops the page cache (echo 3 > /proc/sys/vm/drop_caches): needs root"
                    .to_owned(),
            ),
            _ => None,
        }
    }

    fn prepared(&self, size: Size) -> anyhow::Result<&Prepared> {
        match size {
            Size::Src => self.src.as_ref(),
            Size::Large => self.large.as_ref(),
            Size::Small => self.small.as_ref(),
        }
        .context("the tree was not set up")
    }

    fn fs_state(&self) -> anyhow::Result<&FsState> {
        self.fs.as_ref().context("the fs scenario was not set up")
    }

    /// One run: its setup, then (once the server is quiet) the timed part, then its check and
    /// cleanup. The time of the timed part.
    async fn once(&mut self, probe: Probe) -> anyhow::Result<Duration> {
        self.seq += 1;
        match probe {
            Probe::Create(size) => self.create(size).await,
            Probe::Mksquashfs(size) => self.mksquashfs(size).await,
            Probe::Restore(size) => self.restore_run(size).await,
            Probe::Unsquashfs(size) => self.unsquashfs(size).await,
            Probe::Mount(how, size) => self.mount_run(how, size).await,
            Probe::Fork => self.fork().await,
            Probe::Read(via, cold) | Probe::Stat(via, cold) => {
                let read = matches!(probe, Probe::Read(..));
                self.fs_run(via, cold, read).await
            }
            Probe::Burst(workspace) => self.burst(workspace).await,
        }
    }

    /// Before every timed part: `sync`, so that no run pays for the writeback of the data an
    /// earlier one left dirty (the server fsyncs every image it writes and every new
    /// sandbox's metadata, and an fsync waits for that writeback); then waits for the server
    /// to go quiet; for a cold run, then drops the page cache.
    async fn settle(&self, cold: bool) -> anyhow::Result<()> {
        let _ = Command::new("sync").stdin(Stdio::null()).status().await;
        quiesce(self.server_pid).await;
        if cold {
            drop_caches().await?;
        }
        Ok(())
    }

    /// Rewrites the marker file in `dir`: a new image every run.
    fn mark(&self, dir: &Path) -> anyhow::Result<()> {
        let path = dir.join(MARKER);
        std::fs::write(&path, format!("run {}\n", self.seq))
            .with_context(|| format!("write {}", path.display()))
    }

    async fn create(&self, size: Size) -> anyhow::Result<Duration> {
        let p = self.prepared(size)?;
        let sandbox = if size == Size::Large {
            SNAP_LARGE
        } else {
            SNAP_SRC
        };
        self.mark(&self.ws(sandbox))?;
        self.settle(false).await?;
        let t0 = Instant::now();
        let answer = self.snapshot(sandbox).await?;
        let elapsed = t0.elapsed();
        let id = answer["id"].as_str().unwrap_or_default().to_owned();
        let files = p.tree.files.len() as u64 + 1;
        let checked = if answer["layerCount"] != 1 || answer["files"] != files {
            Err(anyhow::anyhow!(
                "expected a full image (layerCount 1, files {files}): {answer}"
            ))
        } else {
            Ok(elapsed)
        };
        if !id.is_empty() {
            call(
                &self.client,
                Method::DELETE,
                &format!("/v1/snapshots/{id}"),
                None,
            )
            .await?;
        }
        checked
    }

    async fn mksquashfs(&self, size: Size) -> anyhow::Result<Duration> {
        let program = self
            .tools
            .mksquashfs
            .as_ref()
            .map_err(|w| anyhow::anyhow!("{w}"))?;
        let plain = self.scratch.join(if size == Size::Large {
            "plain-large"
        } else {
            "plain-src"
        });
        let out = self.scratch.join("mksquashfs-out.sqfs");
        let _ = std::fs::remove_file(&out);
        self.mark(&plain)?;
        self.settle(false).await?;
        let args = [
            plain.as_os_str(),
            out.as_os_str(),
            OsStr::new("-comp"),
            OsStr::new("zstd"),
            OsStr::new("-Xcompression-level"),
            OsStr::new("3"),
            OsStr::new("-b"),
            OsStr::new("131072"),
            OsStr::new("-noappend"),
            OsStr::new("-no-progress"),
        ];
        let run = run_tool(program, &args, &self.log("mksquashfs")).await;
        // Durable, as the server's store makes every image it writes (it fsyncs the file).
        let t0 = Instant::now();
        let synced = File::open(&out).and_then(|f| f.sync_all().and_then(|()| f.metadata()));
        let fsync = t0.elapsed();
        let _ = std::fs::remove_file(&out);
        let elapsed = run?;
        let written = synced
            .with_context(|| format!("fsync {}", out.display()))?
            .len();
        if written == 0 {
            bail!("mksquashfs wrote no image");
        }
        Ok(elapsed + fsync)
    }

    async fn restore_run(&self, size: Size) -> anyhow::Result<Duration> {
        let p = self.prepared(size)?;
        let sandbox = if size == Size::Large {
            RESTORE_LARGE
        } else {
            RESTORE_SMALL
        };
        let ws = self.ws(sandbox);
        self.mark(&ws)?;
        self.settle(false).await?;
        let t0 = Instant::now();
        let answer = self.restore(sandbox, &p.snap).await?;
        let elapsed = t0.elapsed();
        if answer["restoreMode"] != self.mode.as_str() {
            bail!("restoreMode is not {:?}: {answer}", self.mode);
        }
        if ws.join(MARKER).exists() {
            bail!("{MARKER}, written after the snapshot, is still there after the restore");
        }
        check_file(&ws, p.tree.sample()?)?;
        Ok(elapsed)
    }

    async fn unsquashfs(&self, size: Size) -> anyhow::Result<Duration> {
        let program = self
            .tools
            .unsquashfs
            .as_ref()
            .map_err(|w| anyhow::anyhow!("{w}"))?;
        let p = self.prepared(size)?;
        let image = p.image.as_ref().context("the image was not exported")?;
        let dest = self.scratch.join("unsquashfs-out");
        let remove = |dest: PathBuf| {
            blocking(move || {
                if dest.exists() {
                    std::fs::remove_dir_all(&dest)?;
                }
                Ok(())
            })
        };
        remove(dest.clone()).await?;
        self.settle(false).await?;
        let args = [
            OsStr::new("-no-progress"),
            OsStr::new("-f"),
            OsStr::new("-d"),
            dest.as_os_str(),
            image.as_os_str(),
        ];
        let run = run_tool(program, &args, &self.log("unsquashfs")).await;
        let checked = run.and_then(|d| check_file(&dest, p.tree.sample()?).map(|()| d));
        remove(dest).await?;
        checked
    }

    async fn mount_run(&self, how: Mounter, size: Size) -> anyhow::Result<Duration> {
        let p = self.prepared(size)?;
        let image = p.image.as_ref().context("the image was not exported")?;
        let what = if size == Size::Large {
            "large"
        } else {
            "small"
        };
        let dir = self.mount_dir(how, what);
        self.settle(false).await?;
        let (elapsed, guard) =
            mount_image(&self.tools, how, image, &dir, &self.log("mount")).await?;
        check_file(&dir, p.tree.sample()?)?;
        drop(guard);
        Ok(elapsed)
    }

    async fn fork(&self) -> anyhow::Result<Duration> {
        let p = self.prepared(Size::Src)?;
        self.settle(false).await?;
        let t0 = Instant::now();
        let answer = call(
            &self.client,
            Method::POST,
            &format!("/v1/sandboxes/{FORK_PARENT}/fork"),
            Some(json!({ "count": FORKS })),
        )
        .await?;
        let elapsed = t0.elapsed();
        let ids: Vec<String> = answer["sandboxes"]
            .as_array()
            .map(|list| {
                list.iter()
                    .filter_map(|s| s["id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let checked = if ids.len() != FORKS {
            Err(anyhow::anyhow!(
                "{} sandboxes, expected {FORKS}: {answer}",
                ids.len()
            ))
        } else {
            p.tree
                .sample()
                .and_then(|f| check_file(&self.ws(&ids[0]), f))
                .map(|()| elapsed)
        };
        for id in &ids {
            hybox::delete_sandbox(&self.client, id).await?;
        }
        checked
    }

    /// The folder the fs cases read and stat in.
    fn fs_root(&self, via: Via) -> PathBuf {
        match via {
            Via::Workspace => self.ws(FS_SANDBOX),
            Via::Peer(how) => self.mount_dir(how, "fs"),
        }
    }

    /// Makes a cold run cold: the workspace restored afresh (an empty snapshot first, so the
    /// server lets go of the image and opens it again), a peer's image mounted again.
    async fn reattach(&mut self, via: Via) -> anyhow::Result<()> {
        let fs = self.fs_state()?;
        match via {
            Via::Workspace => {
                let (empty, snap) = (fs.empty_snap.clone(), fs.snap.clone());
                self.restore(FS_SANDBOX, &empty).await?;
                self.restore(FS_SANDBOX, &snap).await?;
            }
            Via::Peer(how) => {
                let image = fs.image.clone();
                if let Some(fs) = self.fs.as_mut() {
                    // Unmounted before mounting again.
                    *fs.mount_slot(how) = None;
                }
                let dir = self.mount_dir(how, "fs");
                let (_, guard) =
                    mount_image(&self.tools, how, &image, &dir, &self.log("mount-fs")).await?;
                if let Some(fs) = self.fs.as_mut() {
                    *fs.mount_slot(how) = Some(guard);
                }
            }
        }
        Ok(())
    }

    /// A read (`read`) or stat run through `via`.
    async fn fs_run(&mut self, via: Via, cold: bool, read: bool) -> anyhow::Result<Duration> {
        let root = self.fs_root(via);
        if let Via::Peer(how) = via {
            let fs = self.fs_state()?;
            let mounted = match how {
                Mounter::Kernel => fs.kernel.is_some(),
                Mounter::Squashfuse => fs.squashfuse.is_some(),
            };
            if !mounted && !cold {
                bail!("the image is not mounted at {}", root.display());
            }
        }
        let fs = self.fs_state()?;
        let spec = fs.read.clone();
        let paths: Arc<Vec<(PathBuf, u64)>> = Arc::new(
            fs.tree
                .files
                .iter()
                .filter(|f| f.rel != READ_FILE)
                .map(|f| (root.join(&f.rel), f.len))
                .collect(),
        );
        let pass = {
            let root = root.clone();
            move || -> anyhow::Result<Duration> {
                if read {
                    read_checked(&root.join(&spec.rel), &spec)
                } else {
                    stat_all(&paths)
                }
            }
        };
        if cold {
            self.reattach(via).await?;
        } else {
            // Warm: right after the same pass, untimed.
            let p = pass.clone();
            blocking(p).await?;
        }
        self.settle(cold).await?;
        blocking(pass).await
    }

    async fn burst(&self, workspace: bool) -> anyhow::Result<Duration> {
        let fs = self.fs_state()?;
        let parent = if workspace {
            self.ws(FS_SANDBOX)
        } else {
            self.scratch.join("plain-burst")
        };
        let root = parent.join(format!("burst-{}", self.seq));
        let burst = fs.burst.clone();
        self.settle(false).await?;
        let r = root.clone();
        let timed = blocking(move || {
            let elapsed = write_burst(&r, &burst)?;
            // Checked after the clock: the last file is there with its size.
            if let Some((rel, data)) = burst.files.last() {
                let len = std::fs::metadata(r.join(rel))?.len();
                if len != data.len() as u64 {
                    bail!("{rel} has {len} bytes, expected {}", data.len());
                }
            }
            Ok(elapsed)
        })
        .await;
        blocking(move || {
            if root.exists() {
                std::fs::remove_dir_all(&root)
                    .with_context(|| format!("remove {}", root.display()))?;
            }
            Ok(())
        })
        .await?;
        timed
    }

    /// What a case measures, from which instant to which, with the actual sizes.
    fn describe(&self, d: &Def, runs: usize, warmup: usize) -> String {
        let mut text = match d.probe {
            Probe::Create(size) => self.describe_create(size, d.kind),
            Probe::Restore(size) | Probe::Unsquashfs(size) | Probe::Mount(_, size) => {
                self.describe_restore(d.probe, size)
            }
            Probe::Fork => format!(
                "On sandbox {FORK_PARENT} of the running server, whose workspace is the source \
                 tree ({}) restored from its snapshot (a read-only layer under an empty writable \
                 one): from sending POST /v1/sandboxes/{FORK_PARENT}/fork {{\"count\": {FORKS}}} \
                 to its parsed answer listing {FORKS} new sandboxes; untimed after it, a file of \
                 the tree is checked in the first fork's workspace and the forks are deleted. \
                 Target ≤ {FORK_TARGET_MS} ms in mount mode.",
                source_tree(self.scale).summary()
            ),
            Probe::Read(via, cold) | Probe::Stat(via, cold) => self.describe_fs(d.probe, via, cold),
            Probe::Burst(workspace) => {
                let burst = Burst::new(self.scale);
                let place = if workspace {
                    format!(
                        "through the workspace of sandbox {FS_SANDBOX} ({}), into its writable \
                         layer",
                        self.place()
                    )
                } else {
                    "in a plain folder of the scratch dir, on the same disk as the server's \
                     data dir"
                        .to_owned()
                };
                format!(
                    "An npm-install-like burst by the bench process, {place}: from creating a new \
                     folder to the last file closed, its {} created and written (contents \
                     generated before the clock, no fsync); the last file's size checked after, \
                     and the folder removed, untimed.",
                    burst.summary()
                )
            }
            Probe::Mksquashfs(size) => self.describe_create(size, d.kind),
        };
        if d.probe.heavy() {
            text.push_str(&format!(
                " The large tree's cases run at most {HEAVY_RUNS} times after at most one \
                 warm-up ({runs} and {warmup} here)."
            ));
        }
        text
    }

    /// Where the workspace is, as the descriptions say it.
    fn place(&self) -> String {
        if self.mode == "mount" {
            "<data dir>/mnt/<sandbox>, the server's copy-on-write FUSE view".to_owned()
        } else {
            format!(
                "<data dir>/sandboxes/<sandbox>/workspace, a plain folder: the server runs with \
                 restoreMode {}",
                self.mode
            )
        }
    }

    fn tree_of(&self, size: Size) -> Tree {
        match size {
            Size::Src => source_tree(self.scale),
            Size::Large => large_tree(self.scale),
            Size::Small => small_tree(),
        }
    }

    fn image_size(&self, size: Size) -> String {
        self.prepared(size)
            .ok()
            .and_then(|p| p.image.as_ref())
            .and_then(|i| std::fs::metadata(i).ok())
            .map_or_else(String::new, |m| {
                format!("; its image {} bytes", thousands(m.len()))
            })
    }

    fn describe_create(&self, size: Size, kind: Kind) -> String {
        let tree = self.tree_of(size);
        let (label, sandbox, plain) = match size {
            Size::Large => ("large", SNAP_LARGE, "plain-large"),
            _ => ("source", SNAP_SRC, "plain-src"),
        };
        if kind == Kind::Hybox {
            format!(
                "On sandbox {sandbox} of the running server, whose workspace ({}) holds the \
                 {label} tree ({}) in its writable layer, written before any clock, plus a file \
                 {MARKER} rewritten before each run so that each run writes a new image of the \
                 whole tree, as a workspace's first snapshot does: from sending POST \
                 /v1/sandboxes/{sandbox}/snapshots {{}} to its parsed answer; layerCount 1 and \
                 files = every file checked. The server writes squashfs with backhand, zstd \
                 level 3, 128 KiB blocks, and fsyncs the image. The snapshot is deleted after \
                 each run, untimed. Before every run of the snapshot and fs cases the bench \
                 runs `sync`, untimed.",
                self.place(),
                tree.summary()
            )
        } else {
            format!(
                "From spawning {} `mksquashfs {plain} out.sqfs -comp zstd -Xcompression-level 3 \
                 -b 131072 -noappend -no-progress` (its default threads, one per core) on the \
                 same {label} tree ({}) and the same {MARKER} file in a plain folder of the \
                 scratch dir (the same disk), to its exit, plus an fsync of out.sqfs (the \
                 server's store fsyncs every image it writes); exit 0 and a non-empty out.sqfs \
                 checked, then removed, untimed.",
                self.tools.mksquashfs_version,
                tree.summary()
            )
        }
    }

    fn describe_restore(&self, probe: Probe, size: Size) -> String {
        let tree = self.tree_of(size);
        let label = if size == Size::Large {
            "large"
        } else {
            "small"
        };
        let what = format!(
            "the {label} tree ({}{})",
            tree.summary(),
            self.image_size(size)
        );
        let check = "then, untimed, a file of the tree is checked there (its size)";
        match probe {
            Probe::Restore(_) => {
                let sandbox = if size == Size::Large {
                    RESTORE_LARGE
                } else {
                    RESTORE_SMALL
                };
                format!(
                    "On sandbox {sandbox} of the running server (restoreMode {}), whose \
                     workspace is the snapshot of {what} with the file {MARKER} written on top \
                     before each run: from sending POST /v1/sandboxes/{sandbox}/snapshots/\
                     {{snap}}/restore {{}} to its parsed answer (restoreMode checked); {check}, \
                     and {MARKER} must be gone. Target ≤ {RESTORE_TARGET_MS} ms in mount mode.",
                    self.mode
                )
            }
            Probe::Unsquashfs(_) => format!(
                "From spawning {} `unsquashfs -no-progress -f -d <new folder> <image>` on the \
                 same image of {what} (exported by the server, GET /v1/snapshots/{{snap}}/export) \
                 to its exit; {check}; the folder is removed untimed.",
                self.tools.unsquashfs_version
            ),
            Probe::Mount(Mounter::Kernel, _) => format!(
                "From spawning `mount -t squashfs -o loop,ro <image> <dir>` (the kernel's \
                 squashfs on a new loop device) on the same image of {what} to its exit; \
                 {check}, and `umount`."
            ),
            _ => format!(
                "From spawning {} `squashfuse <image> <dir>` on the same image of {what} to its \
                 exit (it returns once mounted); {check}, and it is unmounted.",
                self.tools.squashfuse_version
            ),
        }
    }

    fn describe_fs(&self, probe: Probe, via: Via, cold: bool) -> String {
        let tree = fs_tree(self.scale);
        let spec = read_file(self.scale);
        let image = self
            .fs
            .as_ref()
            .and_then(|f| std::fs::metadata(&f.image).ok())
            .map_or_else(String::new, |m| format!(" ({} bytes)", thousands(m.len())));
        let through = match via {
            Via::Workspace => format!(
                "through the workspace of sandbox {FS_SANDBOX} ({}), its snapshot restored so \
                 that the files come from the squashfs image{image} of {} in a read-only layer",
                self.place(),
                tree.summary()
            ),
            Via::Peer(Mounter::Kernel) => format!(
                "through the kernel's squashfs mounting the same image{image} read-only on a loop \
                 device (exported by the server)"
            ),
            Via::Peer(Mounter::Squashfuse) => format!(
                "through {} mounting the same image{image} (exported by the server)",
                self.tools.squashfuse_version
            ),
        };
        let what = if matches!(probe, Probe::Read(..)) {
            format!(
                "A sequential read of {READ_FILE} ({} bytes) by the bench process {through}: \
                 from its open to the last byte, 1 MiB reads; its size and every 64 KiB chunk's \
                 first {CHECKED} bytes checked while reading.",
                thousands(spec.len)
            )
        } else {
            let n = tree.files.len() - 1;
            format!(
                "lstat of each of the source tree's {} files (paths known in advance) by the \
                 bench process {through}: from the first call to the last; every size checked.",
                thousands(n as u64)
            )
        };
        let how = if cold {
            match via {
                Via::Workspace => {
                    " Cold: before each run, untimed, the sandbox is restored to another \
                     snapshot (of one small file) and back, so the server lets go of the image and \
                     opens it again, then `sync` and \
                     `echo 3 > /proc/sys/vm/drop_caches`."
                }
                Via::Peer(_) => {
                    " Cold: before each run, untimed, the image is unmounted and mounted again, \
                     then `sync` and `echo 3 > /proc/sys/vm/drop_caches`."
                }
            }
        } else {
            " Warm: right after the same pass, untimed."
        };
        format!("{what}{how}")
    }
}

/// A case as it runs: its definition, its runs and its samples.
#[derive(Debug)]
struct Case {
    def: Def,
    runs: usize,
    warmup: usize,
    samples: Vec<f64>,
    skipped: Option<String>,
}

/// What a rate's sample measures per run: bytes (MB/s) or files.
fn rate_amount(bench_scale: f64, probe: Probe) -> f64 {
    match probe {
        Probe::Create(s) | Probe::Mksquashfs(s) => {
            let tree = match s {
                Size::Large => large_tree(bench_scale),
                Size::Small => small_tree(),
                Size::Src => source_tree(bench_scale),
            };
            tree.bytes() as f64 / 1e6
        }
        Probe::Read(..) => read_file(bench_scale).len as f64 / 1e6,
        Probe::Stat(..) => source_tree(bench_scale).files.len() as f64,
        Probe::Burst(_) => Burst::new(bench_scale).files.len() as f64,
        _ => 0.0,
    }
}

/// The rate derived from a case's times (ms): `amount` per second for each run.
fn rate_samples(amount: f64, ms: &[f64]) -> Vec<f64> {
    ms.iter().map(|&ms| amount / (ms / 1e3)).collect()
}

/// A description lives as long as the report (`Outcome` holds `&'static str`): made once per
/// case per run of the bench.
pub(super) fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// One untimed run of each peer that can run: proves it works here, or skips it with why.
async fn check_peers(bench: &mut Bench, cases: &mut [Case], bar: &ProgressBar) {
    for c in cases
        .iter_mut()
        .filter(|c| c.skipped.is_none() && c.def.kind == Kind::Peer)
    {
        bar.set_message(format!("checking {}", c.def.name));
        if let Err(e) = once_bounded(bench, c.def.probe).await {
            c.skipped = Some(format!("failed its first run: {e:#}"));
        }
    }
}

/// One run, at most [`super::RUN_LIMIT`] long.
async fn once_bounded(bench: &mut Bench, probe: Probe) -> anyhow::Result<Duration> {
    match tokio::time::timeout(super::RUN_LIMIT, bench.once(probe)).await {
        Ok(r) => r,
        Err(_) => Err(anyhow::anyhow!("no result within {:?}", super::RUN_LIMIT)),
    }
}

/// The warm-up and measured rounds of `cases`, interleaved: in each round one run of every
/// case that still has runs to do, in order. A case that fails is skipped from then on.
async fn run_rounds(
    bench: &mut Bench,
    cases: &mut [Case],
    server: &mut BenchServer,
    bar: &ProgressBar,
    done: &mut Done,
) {
    let active: usize = cases
        .iter()
        .filter(|c| c.skipped.is_none())
        .map(|c| c.runs + c.warmup)
        .sum();
    bar.inc_length(active as u64);
    let rounds = cases.iter().map(|c| c.runs + c.warmup).max().unwrap_or(0);
    for round in 0..rounds {
        for c in cases.iter_mut() {
            if c.skipped.is_some() || round >= c.runs + c.warmup {
                continue;
            }
            let phase = if round < c.warmup { "warm-up" } else { "run" };
            bar.set_message(format!("{} ({phase} {})", c.def.name, round + 1));
            match once_bounded(bench, c.def.probe).await {
                Ok(d) if round >= c.warmup => c.samples.push(d.as_secs_f64() * 1e3),
                Ok(_) => {}
                Err(e) => {
                    let mut why = format!(
                        "failed on round {}: {}",
                        round + 1,
                        super::super::describe(&e)
                    );
                    if let Some(dead) = server.exited() {
                        why = format!("{why} ({dead})");
                    }
                    bar.println(format!("hybox bench: {}: {why}", c.def.name));
                    done.warnings.push(format!("{}: {why}", c.def.name));
                    done.failed |= c.def.kind == Kind::Hybox;
                    c.skipped = Some(why);
                    c.samples.clear();
                    // The runs it will not do leave the bar too.
                    bar.set_length(
                        bar.length()
                            .unwrap_or(0)
                            .saturating_sub((c.runs + c.warmup - round - 1) as u64),
                    );
                }
            }
            bar.inc(1);
        }
    }
}

/// Runs the snapshot and fs scenarios on the bench's server.
pub(super) async fn run(
    opts: Options,
    client: &Client,
    data_dir: &Path,
    scratch: &Path,
    server: &mut BenchServer,
    bar: &ProgressBar,
) -> Done {
    let mut done = Done::default();
    let tools = Tools::detect().await;
    let health = call(client, Method::GET, "/v1/health", None)
        .await
        .unwrap_or_default();
    let mode = health["workspaces"]["restoreMode"]
        .as_str()
        .unwrap_or("unknown")
        .to_owned();
    if mode != "mount" {
        done.warnings.push(format!(
            "the server's workspaces are not copy-on-write views (restoreMode {mode}{}): restore \
             and fork copy files, and the fs cases measure a plain folder",
            health["workspaces"]["reason"]
                .as_str()
                .map_or_else(String::new, |r| format!(": {r}"))
        ));
    }
    let server_pid = match server.pid() {
        Ok(pid) => pid,
        Err(e) => {
            done.failed = true;
            done.warnings.push(format!("snapshot/fs: {e:#}"));
            return done;
        }
    };
    let mut bench = Bench {
        client: client.clone(),
        data_dir: data_dir.to_path_buf(),
        scratch: scratch.to_path_buf(),
        server_pid,
        tools,
        mode,
        scale: opts.scale,
        src: None,
        large: None,
        small: None,
        large_skip: None,
        fs: None,
        seq: 0,
    };
    let mut cases: Vec<Case> = Vec::new();
    // Each scenario set up right before its rounds, which are its own: the fs scenario's
    // setup writes hundreds of MB and its cold runs drop the page cache, neither of which may
    // fall between a snapshot case and its peer.
    for scenario in [SNAPSHOT, FS] {
        let setup = match scenario {
            SNAPSHOT if opts.snapshot => bench.setup_snapshot(bar).await,
            FS if opts.fs => bench.setup_fs(bar).await,
            _ => continue,
        };
        let setup_failed = setup.err().map(|e| {
            // Every scenario has hybox cases: they fail with it.
            done.failed = true;
            done.warnings.push(format!(
                "the {scenario} scenario's setup failed, its cases are skipped: {}",
                super::super::describe(&e)
            ));
            format!("the {scenario} scenario's setup failed (see the warnings)")
        });
        let mut group: Vec<Case> = DEFS
            .iter()
            .filter(|d| d.scenario == scenario)
            .map(|d| {
                let (runs, warmup) = if d.probe.heavy() {
                    (opts.runs.min(HEAVY_RUNS), opts.warmup.min(1))
                } else {
                    (opts.runs, opts.warmup)
                };
                Case {
                    def: *d,
                    runs,
                    warmup,
                    samples: Vec::new(),
                    skipped: setup_failed.clone().or_else(|| bench.unavailable(d.probe)),
                }
            })
            .collect();
        check_peers(&mut bench, &mut group, bar).await;
        run_rounds(&mut bench, &mut group, server, bar, &mut done).await;
        cases.append(&mut group);
    }

    for c in &cases {
        let median = super::stats::summarize(&c.samples).map(|s| s.median);
        let target = match c.def.probe {
            Probe::Restore(_) => Some(RESTORE_TARGET_MS),
            Probe::Fork => Some(FORK_TARGET_MS),
            _ => None,
        };
        if let (Some(m), Some(t), None, true) = (median, target, &c.skipped, bench.mode == "mount")
            && m > t
        {
            done.warnings.push(format!(
                "{}: median {m:.2} ms, above the {t} ms target",
                c.def.name
            ));
        }
    }

    for c in cases {
        let description = leak(bench.describe(&c.def, c.runs, c.warmup));
        let family = if c.def.family.is_empty() {
            Family::Alone
        } else {
            Family::Command(c.def.family)
        };
        let rate = c.def.rate.map(|(name, rate)| Outcome {
            name,
            kind: c.def.kind,
            family: Family::Alone,
            scenario: c.def.scenario,
            description: leak(format!(
                "{} as a rate: {} over the time of each of its runs, in {} (higher is faster), \
                 one sample per run in the same order; no ratio (the timed case's is the \
                 comparison).",
                c.def.name,
                match rate {
                    Rate::Megabytes => "its bytes (10^6 per MB)",
                    Rate::Stats => "the files stat'ed",
                    Rate::Files => "the files written",
                },
                rate.unit()
            )),
            unit: rate.unit(),
            warmup: c.warmup,
            samples: rate_samples(rate_amount(opts.scale, c.def.probe), &c.samples),
            skipped: c
                .skipped
                .as_ref()
                .map(|why| format!("{} {why}", c.def.name)),
        });
        done.outcomes.push(Outcome {
            name: c.def.name,
            kind: c.def.kind,
            family,
            scenario: c.def.scenario,
            description,
            unit: "ms",
            warmup: c.warmup,
            samples: c.samples,
            skipped: c.skipped,
        });
        done.outcomes.extend(rate);
    }
    // The peers' mounts go before the scratch dir does.
    drop(bench);
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_prefix_consistent() {
        for fill in [Fill::Text, Fill::Dense, Fill::Mixed] {
            for index in [0, 1, 7] {
                let mut whole = vec![0; CHUNK];
                fill_chunk(fill, 42, index, &mut whole);
                for n in [0, 1, 5, 16, 100, 4097] {
                    let mut part = vec![0; n];
                    fill_chunk(fill, 42, index, &mut part);
                    assert_eq!(part, whole[..n], "{fill:?} chunk {index}, {n} bytes");
                }
            }
        }
        let mut a = vec![0; 64];
        let mut b = vec![0; 64];
        fill_chunk(Fill::Text, 1, 0, &mut a);
        fill_chunk(Fill::Text, 2, 0, &mut b);
        assert_ne!(a, b, "seeds differ");
        fill_chunk(Fill::Dense, 1, 0, &mut a);
        assert!(a.iter().all(|c| (b'0'..=b'o').contains(c)));
        fill_chunk(Fill::Text, 1, 0, &mut a);
        assert!(a.is_ascii());
    }

    #[test]
    fn trees_at_scale_one() {
        let src = source_tree(1.0);
        assert_eq!(src.files.len(), 10_000);
        let mb = src.bytes() as f64 / 1e6;
        assert!((140.0..180.0).contains(&mb), "{mb} MB");
        assert!(
            src.summary().starts_with("10,000 files in 301 folders"),
            "{}",
            src.summary()
        );
        let large = large_tree(1.0);
        assert_eq!(large.bytes(), 1 << 30);
        let small = small_tree();
        let mb = small.bytes() as f64 / 1e6;
        assert!((0.8..1.3).contains(&mb), "{mb} MB");
        assert_eq!(read_file(1.0).len, 256 << 20);
        assert_eq!(fs_tree(1.0).files.len(), 10_001);
        let burst = Burst::new(1.0);
        assert_eq!(burst.files.len(), 5_000);
        assert_eq!(burst.dirs.len(), 501);
        // Small scales stay usable.
        assert_eq!(source_tree(0.01).files.len(), 101, "100 texts and a blob");
        assert_eq!(large_tree(0.001).files.len(), 1);
        assert_eq!(read_file(0.0001).len, CHUNK as u64);
        assert_eq!(Burst::new(0.0001).files.len(), 10);
        // Deterministic.
        assert_eq!(source_tree(0.1).bytes(), source_tree(0.1).bytes());
    }

    #[test]
    fn scale_parsing() {
        assert_eq!(parse_scale("0.1"), Ok(0.1));
        assert_eq!(parse_scale("1"), Ok(1.0));
        assert!(parse_scale("0").is_err());
        assert!(parse_scale("-1").is_err());
        assert!(parse_scale("5").is_err());
        assert!(parse_scale("x").is_err());
    }

    #[test]
    fn written_trees_read_back_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let tree = fs_tree(0.002);
        write_tree(&tree, &[a.clone(), b.clone()]).expect("write");
        let read = read_file(0.002);
        assert_eq!(read.len, 8 * CHUNK as u64);
        for root in [&a, &b] {
            read_checked(&root.join(READ_FILE), &read).expect("read");
            let paths: Vec<(PathBuf, u64)> = tree
                .files
                .iter()
                .map(|f| (root.join(&f.rel), f.len))
                .collect();
            stat_all(&paths).expect("stat");
            check_file(root, tree.sample().expect("sample")).expect("sample");
        }
        // A changed byte at a chunk's start, or a short file, is caught.
        let path = a.join(READ_FILE);
        let mut bytes = std::fs::read(&path).expect("read");
        bytes[3 * CHUNK + 2] ^= 1;
        std::fs::write(&path, &bytes).expect("write");
        let err = read_checked(&path, &read).expect_err("corrupt");
        assert!(err.to_string().contains("chunk 3"), "{err}");
        std::fs::write(&path, &bytes[..CHUNK]).expect("write");
        assert!(read_checked(&path, &read).is_err());
    }

    #[test]
    fn burst_writes_every_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let burst = Burst::new(0.01);
        let root = dir.path().join("burst-1");
        write_burst(&root, &burst).expect("burst");
        for (rel, data) in &burst.files {
            assert_eq!(std::fs::read(root.join(rel)).expect("read"), *data);
        }
        assert!(
            write_burst(&root, &burst).is_err(),
            "a fresh folder each run"
        );
    }

    #[test]
    fn names_are_unique_and_rates_derive() {
        let mut names: Vec<&str> = case_names().collect();
        let all = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all);
        for d in DEFS {
            assert!(d.kind == Kind::Peer || !d.family.is_empty() || d.probe == Probe::Fork);
        }
        assert_eq!(rate_samples(100.0, &[1000.0, 500.0]), [100.0, 200.0]);
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(counted(1, "folder"), "1 folder");
        assert_eq!(counted(1000, "file"), "1,000 files");
    }

    #[test]
    fn mount_points() {
        assert_eq!(unescape_mount_path("/a\\040b"), "/a b");
        assert_eq!(unescape_mount_path("/plain"), "/plain");
        assert!(is_mount_point(Path::new("/proc")));
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(!is_mount_point(dir.path()));
        // Unmounting what is not mounted does nothing.
        unmount(dir.path());
        assert!(dir.path().is_dir());
    }

    #[test]
    fn workspace_path_prefers_the_view() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(
            workspace_path(dir.path(), "s"),
            dir.path().join("sandboxes/s/workspace")
        );
        std::fs::create_dir_all(dir.path().join("mnt/s")).expect("mkdir");
        assert_eq!(workspace_path(dir.path(), "s"), dir.path().join("mnt/s"));
    }
}
