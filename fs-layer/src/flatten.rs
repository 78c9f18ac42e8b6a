//! Applying layers to a plain directory: what restore does where FUSE is unavailable
//! (`restoreMode: "extract"`), and how a stack of incremental layers becomes one tree.
//!
//! Layers are applied bottom-up: entries overwrite what is there, a whiteout `.wh.<name>`
//! removes `<name>`, and an opaque marker empties the directory before its own entries land.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use std::sync::Arc;

use crate::image::TreeStats;
use crate::node::{Layer, NodeId, NodeKind};
use crate::{FsError, OPAQUE_MARKER, Result, WHITEOUT_PREFIX};

/// Empties directory `dir` (keeping `dir` itself).
///
/// # Errors
/// [`FsError::Io`].
pub fn clear_dir(dir: &Path) -> Result<()> {
    let fd = open_dir_path(dir)?;
    clear_fd(&fd).map_err(|e| FsError::io("empty directory", dir, e))
}

fn open_dir_path(dir: &Path) -> Result<OwnedFd> {
    rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| FsError::io("open directory", dir, e.into()))
}

fn open_subdir(dir: &OwnedFd, name: &OsStr) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

fn names(dir: &OwnedFd) -> io::Result<Vec<OsString>> {
    let mut out = Vec::new();
    for entry in rustix::fs::Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            out.push(OsStr::from_bytes(name).to_owned());
        }
    }
    Ok(out)
}

fn clear_fd(dir: &OwnedFd) -> io::Result<()> {
    for name in names(dir)? {
        remove_at(dir, &name)?;
    }
    Ok(())
}

/// Removes `name` in `dir` whatever it is, never following a symlink.
fn remove_at(dir: &OwnedFd, name: &OsStr) -> io::Result<()> {
    let st = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(rustix::io::Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
        clear_fd(&open_subdir(dir, name)?)?;
        rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)?;
    } else {
        rustix::fs::unlinkat(dir, name, AtFlags::empty())?;
    }
    Ok(())
}

/// Applies a stack of layers (top first, as views hold them) to `dest`, bottom layer first.
/// Returns the counts of what the last pass wrote.
///
/// `dest` is resolved once; everything below it is reached through directory descriptors
/// opened without following symlinks, so a guest changing the tree meanwhile cannot redirect a
/// write outside it.
///
/// # Errors
/// [`FsError::Corrupt`] when a layer cannot be read, [`FsError::Io`] when `dest` cannot be
/// written.
pub fn apply_stack(layers: &[Arc<dyn Layer>], dest: &Path) -> Result<TreeStats> {
    let mut stats = TreeStats::default();
    for layer in layers.iter().rev() {
        stats = apply_layer(layer.as_ref(), dest)?;
    }
    Ok(stats)
}

/// Applies one layer to `dest` (see [`apply_stack`]).
///
/// # Errors
/// As [`apply_stack`].
pub fn apply_layer(layer: &dyn Layer, dest: &Path) -> Result<TreeStats> {
    let mut stats = TreeStats::default();
    let root = layer.root();
    let fd = open_dir_path(dest)?;
    apply_dir(layer, root, &fd, &mut stats).map_err(|e| match e {
        Applied::Layer(e) => corrupt(&e),
        Applied::Dest(e) => FsError::io("apply layer", dest, e),
    })?;
    set_meta_fd(layer, root, &fd).map_err(|e| FsError::io("set metadata", dest, e))?;
    Ok(stats)
}

fn corrupt(e: &io::Error) -> FsError {
    FsError::Corrupt {
        image: "layer".into(),
        reason: e.to_string(),
    }
}

/// Which side failed: reading the layer or writing the destination.
enum Applied {
    Layer(io::Error),
    Dest(io::Error),
}

impl From<io::Error> for Applied {
    fn from(e: io::Error) -> Self {
        Applied::Dest(e)
    }
}

impl From<rustix::io::Errno> for Applied {
    fn from(e: rustix::io::Errno) -> Self {
        Applied::Dest(e.into())
    }
}

fn apply_dir(
    layer: &dyn Layer,
    node: NodeId,
    dest: &OwnedFd,
    stats: &mut TreeStats,
) -> std::result::Result<(), Applied> {
    stats.dirs += 1;
    let children = layer.children(node).map_err(Applied::Layer)?;
    if children.iter().any(|(n, _)| n == OPAQUE_MARKER) {
        clear_fd(dest)?;
    }
    for (name, child) in &children {
        if name == OPAQUE_MARKER {
            continue;
        }
        if let Some(hidden) = name.as_bytes().strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            remove_at(dest, OsStr::from_bytes(hidden))?;
            continue;
        }
        let name = name.as_os_str();
        let attr = layer.attr(*child);
        let existing = rustix::fs::statat(dest, name, AtFlags::SYMLINK_NOFOLLOW).ok();
        let keep_dir = attr.kind == NodeKind::Dir
            && existing
                .is_some_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory);
        if existing.is_some() && !keep_dir {
            remove_at(dest, name)?;
        }
        let perm = Mode::from_raw_mode(attr.perm & 0o7777);
        match attr.kind {
            NodeKind::Dir => {
                if !keep_dir {
                    rustix::fs::mkdirat(dest, name, Mode::from_raw_mode(0o700))?;
                }
                let sub = open_subdir(dest, name)?;
                apply_dir(layer, *child, &sub, stats)?;
                set_meta_fd(layer, *child, &sub)?;
                continue;
            }
            NodeKind::File => {
                let fd = rustix::fs::openat(
                    dest,
                    name,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )?;
                let mut file = std::fs::File::from(fd);
                copy_file(layer, *child, &mut file)?;
                stats.files += 1;
                stats.bytes += attr.size;
                set_meta_fd(layer, *child, &OwnedFd::from(file))?;
                continue;
            }
            NodeKind::Symlink => {
                let to = layer.readlink(*child).map_err(Applied::Layer)?;
                rustix::fs::symlinkat(&to, dest, name)?;
                stats.symlinks += 1;
            }
            NodeKind::Fifo => {
                rustix::fs::mknodat(dest, name, FileType::Fifo, perm, 0)?;
                stats.others += 1;
            }
            // Devices and sockets are not recreated in a workspace.
            NodeKind::CharDevice | NodeKind::BlockDevice | NodeKind::Socket => {
                stats.others += 1;
                continue;
            }
        }
        // Symlinks and FIFOs: owner and times without following anything.
        if rustix::process::geteuid().is_root() {
            rustix::fs::chownat(
                dest,
                name,
                Some(rustix::process::Uid::from_raw(attr.uid)),
                Some(rustix::process::Gid::from_raw(attr.gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )?;
        }
        rustix::fs::utimensat(dest, name, &times(attr.mtime), AtFlags::SYMLINK_NOFOLLOW)?;
    }
    Ok(())
}

fn times(mtime: i64) -> rustix::fs::Timestamps {
    let t = rustix::fs::Timespec {
        tv_sec: mtime,
        tv_nsec: 0,
    };
    rustix::fs::Timestamps {
        last_access: t,
        last_modification: t,
    }
}

fn copy_file(
    layer: &dyn Layer,
    node: NodeId,
    out: &mut std::fs::File,
) -> std::result::Result<(), Applied> {
    use std::io::Write;
    let mut buf = vec![0u8; 256 * 1024];
    let mut off = 0u64;
    loop {
        let n = layer.read_at(node, off, &mut buf).map_err(Applied::Layer)?;
        if n == 0 {
            return Ok(());
        }
        out.write_all(&buf[..n])?;
        off += n as u64;
    }
}

/// Owner, mode and times of a directory or file we hold open.
fn set_meta_fd(layer: &dyn Layer, node: NodeId, fd: &OwnedFd) -> io::Result<()> {
    let attr = layer.attr(node);
    if rustix::process::geteuid().is_root() {
        rustix::fs::fchown(
            fd,
            Some(rustix::process::Uid::from_raw(attr.uid)),
            Some(rustix::process::Gid::from_raw(attr.gid)),
        )?;
    }
    rustix::fs::fchmod(fd, Mode::from_raw_mode(attr.perm & 0o7777))?;
    rustix::fs::futimens(fd, &times(attr.mtime))?;
    Ok(())
}

/// Counts what a merged tree holds, walking it without reading file data (used on a mounted
/// view, where this is one readdir per directory and one stat per file).
///
/// # Errors
/// [`FsError::Io`].
pub fn count_tree(root: &Path) -> Result<TreeStats> {
    let mut stats = TreeStats {
        dirs: 1,
        ..TreeStats::default()
    };
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).map_err(|e| FsError::io("read dir", &dir, e))? {
            let entry = entry.map_err(|e| FsError::io("read dir", &dir, e))?;
            let ft = entry
                .file_type()
                .map_err(|e| FsError::io("stat", entry.path(), e))?;
            if ft.is_dir() {
                stats.dirs += 1;
                stack.push(entry.path());
            } else if ft.is_file() {
                stats.files += 1;
                stats.bytes += entry.metadata().map_or(0, |m| m.len());
            } else if ft.is_symlink() {
                stats.symlinks += 1;
            } else {
                stats.others += 1;
            }
        }
    }
    Ok(stats)
}

/// Counts what the merged tree of a layer stack (top first) holds, applying whiteouts and
/// opaque directories as a view does, from the layers' indexes alone (no file data read, no
/// mount involved).
///
/// # Errors
/// [`FsError::Corrupt`] when a layer cannot be read.
pub fn count_stack(layers: &[Arc<dyn Layer>]) -> Result<TreeStats> {
    let mut stats = TreeStats::default();
    let stack: Vec<(&dyn Layer, NodeId)> = layers.iter().map(|l| (l.as_ref(), l.root())).collect();
    if !stack.is_empty() {
        count_merged(&stack, &mut stats).map_err(|e| corrupt(&e))?;
    }
    Ok(stats)
}

/// One merged directory: `stack` holds the same directory in each layer that contributes,
/// top first.
fn count_merged(stack: &[(&dyn Layer, NodeId)], stats: &mut TreeStats) -> io::Result<()> {
    stats.dirs += 1;
    let mut lists = Vec::with_capacity(stack.len());
    for &(layer, dir) in stack {
        let kids = layer.children(dir)?;
        let opaque = kids.iter().any(|(n, _)| n == OPAQUE_MARKER);
        lists.push((layer, kids));
        if opaque {
            break; // nothing below this layer shows through
        }
    }
    // Names decided by an upper layer (present, or whited out) hide lower ones.
    let mut decided = std::collections::HashSet::<OsString>::new();
    for (i, (layer, kids)) in lists.iter().enumerate() {
        let mut here = Vec::new();
        for (name, node) in kids {
            if name == OPAQUE_MARKER {
                continue;
            }
            if let Some(hidden) = name.as_bytes().strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
                here.push(OsStr::from_bytes(hidden).to_owned());
                continue;
            }
            if decided.contains(name) {
                continue;
            }
            here.push(name.clone());
            let attr = layer.attr(*node);
            match attr.kind {
                NodeKind::Dir => {
                    let mut sub = vec![(*layer, *node)];
                    for (lower, lkids) in &lists[i + 1..] {
                        let wh = {
                            let mut w = OsString::from(WHITEOUT_PREFIX);
                            w.push(name);
                            w
                        };
                        if lkids.iter().any(|(n, _)| *n == wh) {
                            break;
                        }
                        match lkids.iter().find(|(n, _)| n == name) {
                            Some((_, id)) if lower.attr(*id).kind == NodeKind::Dir => {
                                sub.push((*lower, *id));
                            }
                            Some(_) => break,
                            None => {}
                        }
                    }
                    count_merged(&sub, stats)?;
                }
                NodeKind::File => {
                    stats.files += 1;
                    stats.bytes += attr.size;
                }
                NodeKind::Symlink => stats.symlinks += 1,
                _ => stats.others += 1,
            }
        }
        decided.extend(here);
    }
    Ok(())
}
