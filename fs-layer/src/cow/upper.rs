//! Host-side helpers for the upper directory.
//!
//! Every path inside an upper directory is opened relative to an `O_PATH` descriptor of the upper
//! root with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`, so a symlink created by the
//! sandbox (or a directory swapped for one by a racing rename) can never make the daemon touch a
//! host file outside the upper directory. Final components are handled with `*at` calls that do
//! not follow symlinks.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::FileType;
use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags, Stat, Timespec, Timestamps};
use rustix::io::Errno as RxErrno;

use crate::OPAQUE_MARKER;

/// An errno as the view's operations report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Er(pub(crate) i32);

impl Er {
    pub(crate) const ENOENT: Er = Er(libc::ENOENT);
    pub(crate) const EIO: Er = Er(libc::EIO);
    pub(crate) const EPERM: Er = Er(libc::EPERM);
    pub(crate) const EEXIST: Er = Er(libc::EEXIST);
    pub(crate) const ENOTDIR: Er = Er(libc::ENOTDIR);
    pub(crate) const EISDIR: Er = Er(libc::EISDIR);
    pub(crate) const EINVAL: Er = Er(libc::EINVAL);
    pub(crate) const ENOTEMPTY: Er = Er(libc::ENOTEMPTY);
    pub(crate) const EROFS: Er = Er(libc::EROFS);
    pub(crate) const EXDEV: Er = Er(libc::EXDEV);
    pub(crate) const EBADF: Er = Er(libc::EBADF);

    pub(crate) fn errno(self) -> fuser::Errno {
        fuser::Errno::from_i32(self.0)
    }
}

impl From<RxErrno> for Er {
    fn from(e: RxErrno) -> Self {
        Er(e.raw_os_error())
    }
}

impl From<std::io::Error> for Er {
    fn from(e: std::io::Error) -> Self {
        Er(e.raw_os_error().unwrap_or(libc::EIO))
    }
}

/// Result of view operations.
pub(crate) type R<T> = std::result::Result<T, Er>;

const RESOLVE: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS);

fn rel_or_dot(rel: &Path) -> &Path {
    if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    }
}

/// Opens `rel` (relative to `root`, never leaving it, never following a symlink).
pub(crate) fn open(root: BorrowedFd<'_>, rel: &Path, flags: OFlags, mode: Mode) -> R<OwnedFd> {
    let flags = flags | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    match rustix::fs::openat2(root, rel_or_dot(rel), flags, mode, RESOLVE) {
        Ok(fd) => Ok(fd),
        // Kernels before 5.6: plain openat (intermediate components are directories we made).
        Err(RxErrno::NOSYS) => Ok(rustix::fs::openat(root, rel_or_dot(rel), flags, mode)?),
        Err(e) => Err(e.into()),
    }
}

/// An `O_PATH` descriptor of directory `rel`.
pub(crate) fn dir_fd(root: BorrowedFd<'_>, rel: &Path) -> R<OwnedFd> {
    open(root, rel, OFlags::PATH | OFlags::DIRECTORY, Mode::empty())
}

/// `lstat` of `rel`, `None` when it does not exist.
pub(crate) fn lstat(root: BorrowedFd<'_>, rel: &Path) -> R<Option<Stat>> {
    match open(root, rel, OFlags::PATH, Mode::empty()) {
        Ok(fd) => Ok(Some(rustix::fs::fstat(&fd)?)),
        Err(Er(libc::ENOENT)) | Err(Er(libc::ENOTDIR)) | Err(Er(libc::ELOOP)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// `lstat` of `name` in directory `dir`, `None` when it does not exist.
pub(crate) fn lstat_at(dir: BorrowedFd<'_>, name: &OsStr) -> R<Option<Stat>> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(RxErrno::NOENT) | Err(RxErrno::NOTDIR) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Whether `name` exists in `dir` (not following symlinks).
pub(crate) fn exists_at(dir: BorrowedFd<'_>, name: &OsStr) -> R<bool> {
    Ok(lstat_at(dir, name)?.is_some())
}

/// The whiteout name hiding `name`.
pub(crate) fn whiteout_name(name: &OsStr) -> OsString {
    let mut w = OsString::from(crate::WHITEOUT_PREFIX);
    w.push(name);
    w
}

/// Whether `name` is reserved (whiteouts, the opaque marker, temporary names).
pub(crate) fn is_reserved(name: &OsStr) -> bool {
    name.as_bytes()
        .starts_with(crate::WHITEOUT_PREFIX.as_bytes())
}

/// What a name in an upper or layer directory means.
pub(crate) enum Special<'a> {
    /// A regular entry.
    Plain,
    /// A whiteout hiding the given name.
    Whiteout(&'a OsStr),
    /// The opaque marker or one of our temporary names: ignored.
    Meta,
}

/// Classifies a directory entry name.
pub(crate) fn classify(name: &OsStr) -> Special<'_> {
    let b = name.as_bytes();
    if !b.starts_with(crate::WHITEOUT_PREFIX.as_bytes()) {
        return Special::Plain;
    }
    if b.starts_with(b".wh..wh.") || b == OPAQUE_MARKER.as_bytes() {
        return Special::Meta;
    }
    Special::Whiteout(OsStr::from_bytes(&b[crate::WHITEOUT_PREFIX.len()..]))
}

/// Creates the whiteout for `name` in `dir` (no-op if it exists).
pub(crate) fn create_whiteout(dir: BorrowedFd<'_>, name: &OsStr) -> R<()> {
    let w = whiteout_name(name);
    let fd = rustix::fs::openat(
        dir,
        w.as_os_str(),
        OFlags::CREATE | OFlags::WRONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::from_raw_mode(0o600),
    )?;
    drop(fd);
    Ok(())
}

/// Removes the whiteout for `name` in `dir` if there is one.
pub(crate) fn remove_whiteout(dir: BorrowedFd<'_>, name: &OsStr) -> R<()> {
    match rustix::fs::unlinkat(dir, whiteout_name(name).as_os_str(), AtFlags::empty()) {
        Ok(()) | Err(RxErrno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Creates the opaque marker in directory `dir`.
pub(crate) fn create_opaque(dir: BorrowedFd<'_>) -> R<()> {
    let fd = rustix::fs::openat(
        dir,
        OPAQUE_MARKER,
        OFlags::CREATE | OFlags::WRONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::from_raw_mode(0o600),
    )?;
    drop(fd);
    Ok(())
}

/// Removes `name` in `dir` and everything below it (no-op if missing).
pub(crate) fn remove_tree(dir: BorrowedFd<'_>, name: &OsStr) -> R<()> {
    let Some(st) = lstat_at(dir, name)? else {
        return Ok(());
    };
    if kind_of(st.st_mode) != FileType::Directory {
        rustix::fs::unlinkat(dir, name, AtFlags::empty())?;
        return Ok(());
    }
    let sub = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    for (child, _) in read_dir(sub.as_fd())? {
        remove_tree(sub.as_fd(), &child)?;
    }
    drop(sub);
    match rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
        Ok(()) | Err(RxErrno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// All entries of an open (readable) directory, without `.` and `..`. The kind is `None` when
/// the filesystem does not report it in `d_type`.
pub(crate) fn read_dir(dir: BorrowedFd<'_>) -> R<Vec<(OsString, Option<FileType>)>> {
    let fd = rustix::fs::openat(
        dir,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut out = Vec::new();
    let mut d = rustix::fs::Dir::new(fd)?;
    while let Some(e) = d.read() {
        let e = e?;
        let name = OsStr::from_bytes(e.file_name().to_bytes());
        if name == "." || name == ".." {
            continue;
        }
        let kind = match e.file_type() {
            rustix::fs::FileType::Unknown => None,
            k => Some(from_rx_kind(k)),
        };
        out.push((name.to_owned(), kind));
    }
    Ok(out)
}

/// Converts rustix's file type.
pub(crate) fn from_rx_kind(k: rustix::fs::FileType) -> FileType {
    match k {
        rustix::fs::FileType::Directory => FileType::Directory,
        rustix::fs::FileType::Symlink => FileType::Symlink,
        rustix::fs::FileType::Fifo => FileType::NamedPipe,
        rustix::fs::FileType::Socket => FileType::Socket,
        rustix::fs::FileType::CharacterDevice => FileType::CharDevice,
        rustix::fs::FileType::BlockDevice => FileType::BlockDevice,
        _ => FileType::RegularFile,
    }
}

/// The kind encoded in an `st_mode`.
pub(crate) fn kind_of(mode: u32) -> FileType {
    from_rx_kind(rustix::fs::FileType::from_raw_mode(mode))
}

/// `SystemTime` from seconds and nanoseconds since the epoch.
pub(crate) fn system_time(secs: i64, nsecs: i64) -> SystemTime {
    let nsecs = nsecs.clamp(0, 999_999_999) as u32;
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs.unsigned_abs(), nsecs)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + Duration::new(0, nsecs)
    }
}

/// A `Timespec` for `utimensat`.
pub(crate) fn timespec(t: SystemTime) -> Timespec {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => Timespec {
            tv_sec: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(d.subsec_nanos()) as _,
        },
        Err(e) => {
            let d = e.duration();
            let mut secs = -i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            let mut nsecs = i64::from(d.subsec_nanos());
            if nsecs > 0 {
                secs -= 1;
                nsecs = 1_000_000_000 - nsecs;
            }
            Timespec {
                tv_sec: secs,
                tv_nsec: nsecs as _,
            }
        }
    }
}

/// A timespec meaning "leave unchanged".
pub(crate) fn omit() -> Timespec {
    Timespec {
        tv_sec: 0,
        tv_nsec: rustix::fs::UTIME_OMIT,
    }
}

/// A timespec meaning "now".
pub(crate) fn now() -> Timespec {
    Timespec {
        tv_sec: 0,
        tv_nsec: rustix::fs::UTIME_NOW,
    }
}

/// Sets the times of `name` in `dir` without following a symlink.
pub(crate) fn set_times_at(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    atime: Timespec,
    mtime: Timespec,
) -> R<()> {
    let ts = Timestamps {
        last_access: atime,
        last_modification: mtime,
    };
    rustix::fs::utimensat(dir, name, &ts, AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(())
}

/// Splits a relative path into its parent and final name (`None` for the root).
pub(crate) fn split(rel: &Path) -> Option<(&Path, &OsStr)> {
    let name = rel.file_name()?;
    Some((rel.parent().unwrap_or(Path::new("")), name))
}

/// Encodes a `dev_t` as FUSE's 32-bit `new_encode_dev` form.
pub(crate) fn encode_dev(dev: u64) -> u32 {
    let major = rustix::fs::major(dev);
    let minor = rustix::fs::minor(dev);
    (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & !0xff) << 12)
}

/// Decodes FUSE's 32-bit device number into a `dev_t`.
pub(crate) fn decode_dev(dev: u32) -> u64 {
    let major = (dev & 0xfff00) >> 8;
    let minor = (dev & 0xff) | ((dev >> 12) & 0xfff00);
    rustix::fs::makedev(major, minor)
}
