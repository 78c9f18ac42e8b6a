//! [`super::Image::extract_to`]: an image written out as a directory tree.
//!
//! Everything is created relative to directory file descriptors with `O_NOFOLLOW`, so a
//! symlink the image creates is never followed while extracting.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};
use rustix::process::{Gid, Uid};

use super::index::NodeData;
use super::write::{OPEN_DIRS, open_beneath};
use super::{CopyError, Image, PROGRESS_EVERY, Progress, TreeStats};
use crate::node::{NodeAttr, NodeId, NodeKind};
use crate::{FsError, Result};

fn times(attr: &NodeAttr) -> Timestamps {
    let t = Timespec {
        tv_sec: attr.mtime,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

fn owner(attr: &NodeAttr) -> (Option<Uid>, Option<Gid>) {
    // -1 means "leave unchanged" to chown, so it cannot be restored.
    let uid = (attr.uid != u32::MAX).then(|| Uid::from_raw_unchecked(attr.uid));
    let gid = (attr.gid != u32::MAX).then(|| Gid::from_raw_unchecked(attr.gid));
    (uid, gid)
}

/// Sets owner (as root), mode and times of an open file or directory.
fn set_attrs_fd(fd: &OwnedFd, attr: &NodeAttr, as_root: bool) -> rustix::io::Result<()> {
    if as_root {
        let (uid, gid) = owner(attr);
        rustix::fs::fchown(fd, uid, gid)?;
    }
    // After chown, which clears the set-id bits.
    rustix::fs::fchmod(fd, Mode::from_raw_mode(attr.perm))?;
    rustix::fs::futimens(fd, &times(attr))
}

struct Frame {
    node: u32,
    /// Closed for directories more than [`OPEN_DIRS`] levels up; reopened when needed.
    fd: Option<OwnedFd>,
    next: usize,
    /// Relative to the destination.
    rel: PathBuf,
}

pub(super) fn extract(img: &Image, dest: &Path, progress: Progress<'_>) -> Result<TreeStats> {
    let dir_flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let io = |what: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |e: rustix::io::Errno| FsError::io(what, path, e.into())
    };
    let root = rustix::fs::openat(rustix::fs::CWD, dest, dir_flags, Mode::empty())
        .map_err(io("open destination", dest))?;
    {
        let mut dir = rustix::fs::Dir::read_from(&root).map_err(io("read directory", dest))?;
        while let Some(entry) = dir.read() {
            let entry = entry.map_err(io("read directory", dest))?;
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." {
                return Err(FsError::Invalid(format!(
                    "extraction destination {} is not empty",
                    dest.display()
                )));
            }
        }
    }
    let as_root = rustix::process::geteuid().is_root();
    let mut stats = TreeStats {
        dirs: 1,
        ..TreeStats::default()
    };
    let openat2 = AtomicBool::new(true);
    let reopen = |rel: &Path| {
        open_beneath(&root, rel, dir_flags | OFlags::NOFOLLOW, &openat2)
            .map_err(|e| FsError::io("open directory", dest.join(rel), e))
    };
    let mut stack = vec![Frame {
        node: 0,
        fd: None,
        next: 0,
        rel: PathBuf::new(),
    }];
    while let Some(top) = stack.last_mut() {
        let dir = &img.nodes[top.node as usize];
        let NodeData::Dir(children) = &dir.data else {
            return Err(FsError::Corrupt {
                image: img.label.clone(),
                reason: "directory expected".into(),
            });
        };
        let dir_fd = match top.fd.take() {
            Some(fd) => fd,
            None => reopen(&top.rel)?,
        };
        let dir_fd = &*top.fd.insert(dir_fd);
        let Some(&child) = children.get(top.next) else {
            set_attrs_fd(dir_fd, &dir.attr, as_root)
                .map_err(io("set attributes", &dest.join(&top.rel)))?;
            stack.pop();
            continue;
        };
        top.next += 1;
        let node = &img.nodes[child as usize];
        let name = OsStr::from_bytes(&node.name);
        let rel_child = top.rel.join(name);
        let host = dest.join(&rel_child);
        let attr = &node.attr;
        let mode = Mode::from_raw_mode(attr.perm);
        match (&node.data, attr.kind) {
            (NodeData::Dir(_), _) => {
                rustix::fs::mkdirat(dir_fd, name, Mode::RWXU)
                    .map_err(io("create directory", &host))?;
                let fd =
                    rustix::fs::openat(dir_fd, name, dir_flags | OFlags::NOFOLLOW, Mode::empty())
                        .map_err(io("open directory", &host))?;
                stats.dirs += 1;
                stack.push(Frame {
                    node: child,
                    fd: Some(fd),
                    next: 0,
                    rel: rel_child,
                });
                if let Some(old) = stack.len().checked_sub(OPEN_DIRS + 1) {
                    stack[old].fd = None;
                }
            }
            (NodeData::File(_), _) => {
                let flags = OFlags::WRONLY
                    | OFlags::CREATE
                    | OFlags::EXCL
                    | OFlags::NOFOLLOW
                    | OFlags::CLOEXEC;
                let fd = rustix::fs::openat(dir_fd, name, flags, Mode::RUSR | Mode::WUSR)
                    .map_err(io("create file", &host))?;
                let out = File::from(fd);
                let copied = catch_unwind(AssertUnwindSafe(|| {
                    img.copy_file(NodeId::from(child), &out)
                }))
                .unwrap_or_else(|_| Err(CopyError::Read(io::Error::other("reading panicked"))));
                match copied {
                    Ok(()) => {}
                    Err(CopyError::Read(e)) => return Err(read_error(img, &host, dest, e)),
                    Err(CopyError::Write(e)) => return Err(FsError::io("write file", &host, e)),
                }
                let fd = OwnedFd::from(out);
                set_attrs_fd(&fd, attr, as_root).map_err(io("set attributes", &host))?;
                stats.files += 1;
                stats.bytes += attr.size;
                if stats.files.is_multiple_of(PROGRESS_EVERY) {
                    progress(stats);
                }
            }
            (NodeData::Symlink(target), _) => {
                rustix::fs::symlinkat(OsStr::from_bytes(target), dir_fd, name)
                    .map_err(io("create symlink", &host))?;
                if as_root {
                    let (uid, gid) = owner(attr);
                    rustix::fs::chownat(dir_fd, name, uid, gid, AtFlags::SYMLINK_NOFOLLOW)
                        .map_err(io("set owner", &host))?;
                }
                rustix::fs::utimensat(dir_fd, name, &times(attr), AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(io("set times", &host))?;
                stats.symlinks += 1;
            }
            (NodeData::Special, kind) => {
                let ft = match kind {
                    NodeKind::Fifo => FileType::Fifo,
                    NodeKind::Socket => FileType::Socket,
                    NodeKind::CharDevice if as_root => FileType::CharacterDevice,
                    NodeKind::BlockDevice if as_root => FileType::BlockDevice,
                    _ => {
                        tracing::debug!(path = %host.display(), "device not extracted (not root)");
                        continue;
                    }
                };
                rustix::fs::mknodat(dir_fd, name, ft, Mode::RUSR | Mode::WUSR, attr.rdev)
                    .map_err(io("create node", &host))?;
                if as_root {
                    let (uid, gid) = owner(attr);
                    rustix::fs::chownat(dir_fd, name, uid, gid, AtFlags::SYMLINK_NOFOLLOW)
                        .map_err(io("set owner", &host))?;
                }
                rustix::fs::chmodat(dir_fd, name, mode, AtFlags::empty())
                    .map_err(io("set mode", &host))?;
                rustix::fs::utimensat(dir_fd, name, &times(attr), AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(io("set times", &host))?;
                stats.others += 1;
            }
        }
    }
    progress(stats);
    Ok(stats)
}

fn rel(host: &Path, dest: &Path) -> String {
    host.strip_prefix(dest)
        .unwrap_or(host)
        .display()
        .to_string()
}

fn read_error(img: &Image, host: &Path, dest: &Path, e: io::Error) -> FsError {
    if e.kind() == io::ErrorKind::InvalidData {
        FsError::Corrupt {
            image: img.label.clone(),
            reason: format!("{}: {e}", rel(host, dest)),
        }
    } else {
        FsError::io("read image", img.path(), e)
    }
}
