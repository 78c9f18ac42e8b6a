//! [`super::write_tree`]: a directory tree into a squashfs image with backhand.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Cursor, Read, Seek, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStringExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use backhand::NodeHeader;
use backhand::compression::{CompressionOptions, Compressor, Zstd};
use backhand::{BackhandError, FilesystemCompressor, FilesystemReader, FilesystemWriter, Id};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};

use super::format::describe;
use super::index::encode_dev;
use super::{PROGRESS_EVERY, Progress, TreeStats, WriteOptions};
use crate::{FsError, Result};

/// Longest symlink target backhand's reader accepts.
const MAX_SYMLINK_TARGET: usize = 255;

/// State shared by the walk and the lazy readers backhand drains during the write.
struct Ctx<'p> {
    src: PathBuf,
    root: OwnedFd,
    /// Cleared after `openat2` turned out to be unavailable.
    openat2: AtomicBool,
    progress: Progress<'p>,
    state: Mutex<WriteState>,
}

#[derive(Default)]
struct WriteState {
    /// Totals of the walk (files and bytes are counted as they are written).
    walked: TreeStats,
    files_done: u64,
    bytes_done: u64,
    /// The first error a reader hit (backhand only passes on an `io::Error`).
    error: Option<FsError>,
}

impl Ctx<'_> {
    fn state(&self) -> std::sync::MutexGuard<'_, WriteState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn fail(&self, err: FsError) {
        let mut s = self.state();
        if s.error.is_none() {
            s.error = Some(err);
        }
    }

    fn file_done(&self, bytes: u64) {
        let report = {
            let mut s = self.state();
            s.files_done += 1;
            s.bytes_done += bytes;
            s.files_done
                .is_multiple_of(PROGRESS_EVERY)
                .then(|| s.totals())
        };
        if let Some(t) = report {
            (self.progress)(t);
        }
    }

    /// Opens `rel` (relative to the source root) for reading, refusing symlinks anywhere in
    /// the path and anything but a regular file.
    fn open_file(&self, rel: &Path) -> io::Result<File> {
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let fd = open_beneath(&self.root, rel, flags, &self.openat2)?;
        let st = rustix::fs::fstat(&fd)?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(io::Error::other("no longer a regular file"));
        }
        Ok(File::from(fd))
    }
}

/// Opens `rel` below the directory `root` without following any symlink on the way:
/// `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`, or one `O_NOFOLLOW` component at a time
/// where that is unavailable (`openat2` is then not tried again) or the path is too long.
pub(super) fn open_beneath(
    root: &OwnedFd,
    rel: &Path,
    flags: OFlags,
    openat2: &AtomicBool,
) -> io::Result<OwnedFd> {
    if rel.as_os_str().is_empty() {
        return Ok(rustix::fs::openat(root, ".", flags, Mode::empty())?);
    }
    if openat2.load(Ordering::Relaxed) {
        let resolve =
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
        match rustix::fs::openat2(root, rel, flags, Mode::empty(), resolve) {
            Ok(fd) => return Ok(fd),
            Err(rustix::io::Errno::NOSYS | rustix::io::Errno::PERM) => {
                openat2.store(false, Ordering::Relaxed);
            }
            Err(rustix::io::Errno::NAMETOOLONG) => {}
            Err(e) => return Err(e.into()),
        }
    }
    open_by_components(root, rel, flags)
}

impl WriteState {
    fn totals(&self) -> TreeStats {
        TreeStats {
            files: self.files_done,
            bytes: self.bytes_done,
            ..self.walked
        }
    }
}

/// Opens `rel` below `root` one component at a time, never following a symlink.
pub(super) fn open_by_components(root: &OwnedFd, rel: &Path, flags: OFlags) -> io::Result<OwnedFd> {
    let dir_flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut parts = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(p) => parts.push(p),
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "only plain names below the root",
                ));
            }
        }
    }
    let last = parts.pop().ok_or_else(|| io::Error::other("empty path"))?;
    let mut cur: Option<OwnedFd> = None;
    for p in parts {
        let next = match &cur {
            Some(fd) => rustix::fs::openat(fd, p, dir_flags, Mode::empty())?,
            None => rustix::fs::openat(root, p, dir_flags, Mode::empty())?,
        };
        cur = Some(next);
    }
    Ok(match &cur {
        Some(fd) => rustix::fs::openat(fd, last, flags, Mode::empty())?,
        None => rustix::fs::openat(root, last, flags, Mode::empty())?,
    })
}

/// A file's content, opened on the first read and closed at the end: backhand keeps every
/// reader until the write, and drains them one after the other.
struct LazyReader<'c, 'p> {
    ctx: &'c Ctx<'p>,
    rel: PathBuf,
    file: Option<File>,
    done: bool,
    bytes: u64,
}

impl Read for LazyReader<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done {
            return Ok(0);
        }
        let file = match &mut self.file {
            Some(f) => f,
            None => match self.ctx.open_file(&self.rel) {
                Ok(f) => self.file.insert(f),
                Err(e) => return Err(self.failed("open file", e)),
            },
        };
        match file.read(buf) {
            Ok(0) => {
                self.file = None;
                self.done = true;
                self.ctx.file_done(self.bytes);
                Ok(0)
            }
            Ok(n) => {
                self.bytes += n as u64;
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => Err(self.failed("read file", e)),
        }
    }
}

impl LazyReader<'_, '_> {
    fn failed(&self, what: &'static str, e: io::Error) -> io::Error {
        let kind = e.kind();
        self.ctx
            .fail(FsError::io(what, self.ctx.src.join(&self.rel), e));
        io::Error::new(kind, "source file unreadable")
    }
}

fn clamp_mtime(t: i64) -> u32 {
    u32::try_from(t.max(0)).unwrap_or(u32::MAX)
}

#[allow(
    clippy::useless_conversion,
    reason = "the types of the stat fields differ between targets"
)]
fn header_of(st: &rustix::fs::Stat) -> NodeHeader {
    let perm = (u32::from(st.st_mode) & 0o7777) as u16;
    NodeHeader::new(
        perm,
        u32::from(st.st_uid),
        u32::from(st.st_gid),
        clamp_mtime(i64::from(st.st_mtime)),
    )
}

/// A reader of an empty image whose root carries `root`: the only way to give the root
/// directory an mtime with backhand 0.25 (`FilesystemWriter` sets its mode, uid and gid only),
/// since [`FilesystemWriter::from_fs_reader`] takes the root header from the reader.
fn base_reader(root: NodeHeader) -> std::result::Result<FilesystemReader<'static>, BackhandError> {
    let mut fs = FilesystemWriter::default();
    fs.set_compressor(FilesystemCompressor::new(Compressor::Zstd, None)?);
    let mut buf = Cursor::new(Vec::new());
    fs.write(&mut buf)?;
    buf.set_position(0);
    let mut reader = FilesystemReader::from_reader(buf)?;
    let node = reader
        .root
        .nodes
        .first_mut()
        .ok_or(BackhandError::CorruptedOrInvalidSquashfs)?;
    node.header = root;
    for id in [root.uid, root.gid] {
        if !reader.id_table.iter().any(|i| i.num == id) {
            reader.id_table.push(Id::new(id));
        }
    }
    Ok(reader)
}

fn backhand_err(src: &Path, what: &'static str, e: &BackhandError) -> FsError {
    match e {
        BackhandError::StdIo(io) => {
            FsError::io(what, src, io::Error::new(io.kind(), io.to_string()))
        }
        other => FsError::io(what, src, io::Error::other(describe(other))),
    }
}

/// Most directory fds the walk keeps open; the directories further up are reopened (by path,
/// below the root, without following symlinks) when the walk gets back to them.
pub(super) const OPEN_DIRS: usize = 64;

/// A directory being walked: its fd (if still open), path and the names still to visit
/// (reversed).
struct Frame {
    fd: Option<OwnedFd>,
    rel: PathBuf,
    names: Vec<OsString>,
}

fn read_names(fd: &OwnedFd, path: &Path) -> Result<Vec<OsString>> {
    let err = |e: rustix::io::Errno| FsError::io("read directory", path, e.into());
    let mut dir = rustix::fs::Dir::read_from(fd).map_err(err)?;
    let mut names = Vec::new();
    while let Some(entry) = dir.read() {
        let entry = entry.map_err(err)?;
        let name = entry.file_name().to_bytes();
        // `.wh..wh.*` other than the opaque marker are the copy-on-write view's temporaries
        // (a copy-up in progress when a process died): never part of a layer.
        let view_temp = name.starts_with(b".wh..wh.") && name != crate::OPAQUE_MARKER.as_bytes();
        if name != b"." && name != b".." && !view_temp {
            names.push(OsString::from_vec(name.to_vec()));
        }
    }
    // Sorted by name, visited by popping: reverse order.
    names.sort_unstable_by(|a, b| b.cmp(a));
    Ok(names)
}

pub(super) fn write_tree<W: Write + Seek>(
    src: &Path,
    mut out: W,
    opts: &WriteOptions,
    progress: Progress<'_>,
) -> Result<TreeStats> {
    opts.validate()?;
    let dir_flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let root = rustix::fs::openat(rustix::fs::CWD, src, dir_flags, Mode::empty())
        .map_err(|e| FsError::io("open source directory", src, e.into()))?;
    let st = rustix::fs::fstat(&root).map_err(|e| FsError::io("stat", src, e.into()))?;
    let root_header = header_of(&st);
    let base = base_reader(root_header).map_err(|e| backhand_err(src, "prepare image", &e))?;
    let ctx = Ctx {
        src: src.to_path_buf(),
        root,
        openat2: AtomicBool::new(true),
        progress,
        state: Mutex::new(WriteState::default()),
    };
    let mut fs = FilesystemWriter::from_fs_reader(&base)
        .map_err(|e| backhand_err(src, "prepare image", &e))?;
    let level = u32::try_from(opts.compression_level).unwrap_or(3);
    let compressor = FilesystemCompressor::new(
        Compressor::Zstd,
        Some(CompressionOptions::Zstd(Zstd {
            compression_level: level,
        })),
    )
    .map_err(|e| backhand_err(src, "prepare image", &e))?;
    fs.set_compressor(compressor);
    fs.set_block_size(opts.block_size);
    fs.set_no_duplicate_files(false);

    let mut walked = TreeStats {
        dirs: 1,
        ..TreeStats::default()
    };
    let mut newest = root_header.mtime;
    let first = rustix::fs::openat(&ctx.root, ".", dir_flags, Mode::empty())
        .map_err(|e| FsError::io("open source directory", src, e.into()))?;
    let names = read_names(&first, src)?;
    let mut stack = vec![Frame {
        fd: Some(first),
        rel: PathBuf::new(),
        names,
    }];
    while let Some(frame) = stack.last_mut() {
        let Some(name) = frame.names.pop() else {
            stack.pop();
            continue;
        };
        let rel = frame.rel.join(&name);
        let host = src.join(&rel);
        let dir_fd = match &mut frame.fd {
            Some(fd) => fd,
            None => {
                let fd = open_beneath(
                    &ctx.root,
                    &frame.rel,
                    dir_flags | OFlags::NOFOLLOW,
                    &ctx.openat2,
                )
                .map_err(|e| FsError::io("open directory", src.join(&frame.rel), e))?;
                frame.fd.insert(fd)
            }
        };
        let st = rustix::fs::statat(&*dir_fd, &name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| FsError::io("stat", &host, e.into()))?;
        let header = header_of(&st);
        newest = newest.max(header.mtime);
        let pushed = match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => {
                let flags = dir_flags | OFlags::NOFOLLOW;
                let fd = rustix::fs::openat(&*dir_fd, &name, flags, Mode::empty())
                    .map_err(|e| FsError::io("open directory", &host, e.into()))?;
                let names = read_names(&fd, &host)?;
                walked.dirs += 1;
                let r = fs.push_dir(&rel, header);
                stack.push(Frame {
                    fd: Some(fd),
                    rel: rel.clone(),
                    names,
                });
                if let Some(old) = stack.len().checked_sub(OPEN_DIRS + 1) {
                    stack[old].fd = None;
                }
                r
            }
            FileType::RegularFile => {
                walked.files += 1;
                walked.bytes += st.st_size.max(0).unsigned_abs();
                let reader = LazyReader {
                    ctx: &ctx,
                    rel: rel.clone(),
                    file: None,
                    done: false,
                    bytes: 0,
                };
                fs.push_file(reader, &rel, header)
            }
            FileType::Symlink => {
                let target = rustix::fs::readlinkat(&*dir_fd, &name, Vec::new())
                    .map_err(|e| FsError::io("read symlink", &host, e.into()))?;
                let target = target.into_bytes();
                if target.len() > MAX_SYMLINK_TARGET {
                    return Err(FsError::Invalid(format!(
                        "symlink {} has a target longer than {MAX_SYMLINK_TARGET} bytes, which \
                         this image format does not support",
                        rel.display()
                    )));
                }
                walked.symlinks += 1;
                fs.push_symlink(OsString::from_vec(target), &rel, header)
            }
            kind @ (FileType::CharacterDevice | FileType::BlockDevice) => {
                #[allow(
                    clippy::useless_conversion,
                    reason = "the type of st_rdev differs between targets"
                )]
                let dev = encode_dev(u64::from(st.st_rdev)).ok_or_else(|| {
                    FsError::Invalid(format!("device number of {} too large", rel.display()))
                })?;
                walked.others += 1;
                if kind == FileType::CharacterDevice {
                    fs.push_char_device(dev, &rel, header)
                } else {
                    fs.push_block_device(dev, &rel, header)
                }
            }
            FileType::Fifo => {
                walked.others += 1;
                fs.push_fifo(&rel, header)
            }
            FileType::Socket => {
                walked.others += 1;
                fs.push_socket(&rel, header)
            }
            FileType::Unknown => {
                return Err(FsError::io(
                    "stat",
                    &host,
                    io::Error::other("unknown file type"),
                ));
            }
        };
        pushed.map_err(|e| {
            FsError::Invalid(format!("cannot add {}: {}", rel.display(), describe(&e)))
        })?;
    }
    ctx.state().walked = walked;
    fs.set_time(newest);

    let written = catch_unwind(AssertUnwindSafe(|| fs.write(&mut out)));
    drop(fs);
    if let Some(e) = ctx.state().error.take() {
        return Err(e);
    }
    match written {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(backhand_err(src, "write image", &e)),
        Err(_) => {
            return Err(FsError::io(
                "write image",
                src,
                io::Error::other("the squashfs writer panicked"),
            ));
        }
    }
    out.flush()
        .map_err(|e| FsError::io("write image", src, e))?;
    let totals = ctx.state().totals();
    progress(totals);
    Ok(totals)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opening_beneath_never_follows_symlinks() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let base = tmp.path();
        std::fs::create_dir_all(base.join("a/b")).expect("mkdir");
        std::fs::write(base.join("a/b/file"), b"x").expect("write");
        std::os::unix::fs::symlink("a", base.join("link")).expect("symlink");
        std::os::unix::fs::symlink("b/file", base.join("a/flink")).expect("symlink");
        std::os::unix::fs::symlink("/etc", base.join("a/abs")).expect("symlink");
        let root = rustix::fs::openat(
            rustix::fs::CWD,
            base,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .expect("open root");
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        for with_openat2 in [true, false] {
            let flag = AtomicBool::new(with_openat2);
            let open = |p: &str| open_beneath(&root, Path::new(p), flags, &flag);
            assert!(open("a/b/file").is_ok());
            assert!(open("").is_ok());
            for bad in [
                "link/b/file",
                "a/flink",
                "a/abs/passwd",
                "a/../../etc/passwd",
                "/etc",
            ] {
                assert!(open(bad).is_err(), "{bad} (openat2: {with_openat2})");
            }
            let direct = |p: &str| open_by_components(&root, Path::new(p), flags);
            assert!(direct("a/b/file").is_ok());
            for bad in [
                "link/b/file",
                "a/flink",
                "a/abs/passwd",
                "a/../b/file",
                "/etc",
                "",
            ] {
                assert!(direct(bad).is_err(), "{bad}");
            }
        }
    }
}
