//! Writing nodes into a temp tree from untrusted descriptions: image layers (tar, with OCI
//! whiteouts) and copies of a directory.
//!
//! The threat is an archive that writes outside the tree: every path is made of plain names
//! (an absolute path or a `..` is refused), and every existing directory on the way must be a
//! real directory, not a symlink (refused: an entry "through" a symlink the archive planted
//! could land anywhere). Nothing else writes into the tree while it is built (it lives in a
//! 0700 temp directory), so checking with `lstat` before each write is enough. Files are
//! created with `O_NOFOLLOW | O_CREAT | O_EXCL`; ownership, modes and times are set by path
//! only after the path was checked, with `AT_SYMLINK_NOFOLLOW` where the call has it.
//!
//! Directory modes and times are applied once at the end ([`Tree::finish`]), deepest first, so a
//! read-only directory does not block its own children and child writes do not change a
//! directory's time after it was set.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, CWD, FileType, Gid, Mode, Timespec, Timestamps, Uid};

use super::{ImageError, Result};

/// Owner, mode and time of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// Permission bits (`0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
}

/// What a node is.
pub enum Kind<'a> {
    /// A directory.
    Dir,
    /// A regular file with its content.
    File(&'a mut dyn Read),
    /// A symlink to this target.
    Symlink(&'a OsStr),
    /// A hard link to another node of the tree (a relative path).
    HardLink(&'a Path),
    /// A character device.
    Char(u32, u32),
    /// A block device.
    Block(u32, u32),
    /// A FIFO.
    Fifo,
}

/// Metadata of directories an archive implies without an entry (the root included).
const IMPLIED_DIR: Meta = Meta {
    mode: 0o755,
    uid: 0,
    gid: 0,
    mtime: 0,
};

/// A tree being written.
#[derive(Debug)]
pub struct Tree {
    root: PathBuf,
    /// Directories' final metadata, applied by [`Tree::finish`].
    dirs: HashMap<PathBuf, Meta>,
    /// Paths written by the current layer, and their ancestors (kept by an opaque marker).
    this_layer: HashSet<PathBuf>,
    /// Whether ownership can be set (root).
    chown: bool,
    /// Device nodes that could not be made (not root).
    pub skipped_devices: u64,
}

/// A relative path of plain names from an archive's bytes (`./` and empty parts dropped).
///
/// # Errors
/// [`ImageError::Invalid`] for an absolute path or a `..`.
pub fn clean_path(raw: &[u8]) -> Result<PathBuf> {
    if raw.first() == Some(&b'/') {
        return Err(ImageError::Invalid(format!(
            "archive entry {:?} has an absolute path",
            String::from_utf8_lossy(raw)
        )));
    }
    let mut out = PathBuf::new();
    for part in raw.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                return Err(ImageError::Invalid(format!(
                    "archive entry {:?} has a `..`",
                    String::from_utf8_lossy(raw)
                )));
            }
            name => out.push(OsStr::from_bytes(name)),
        }
    }
    Ok(out)
}

fn remove_any(p: &Path) -> io::Result<()> {
    match fs::symlink_metadata(p) {
        Ok(md) if md.is_dir() => fs::remove_dir_all(p),
        Ok(_) => fs::remove_file(p),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn timestamps(mtime: i64) -> Timestamps {
    let t = Timespec {
        tv_sec: mtime,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

impl Tree {
    /// A tree written into the (empty, private) directory `root`.
    #[must_use]
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_owned(),
            dirs: HashMap::from([(PathBuf::new(), IMPLIED_DIR)]),
            this_layer: HashSet::new(),
            chown: rustix::process::geteuid().is_root(),
            skipped_devices: 0,
        }
    }

    /// Starts a new layer (for opaque markers).
    pub fn next_layer(&mut self) {
        self.this_layer.clear();
    }

    /// `root/rel` after checking (and creating, when `create`) every parent as a real
    /// directory. `rel` must be plain names ([`clean_path`]).
    fn parent_checked(&mut self, rel: &Path, create: bool) -> Result<PathBuf> {
        let mut p = self.root.clone();
        let mut r = PathBuf::new();
        let comps: Vec<_> = rel.components().collect();
        for (i, c) in comps.iter().enumerate() {
            let Component::Normal(name) = c else {
                return Err(ImageError::Invalid(format!(
                    "{} is not a plain relative path",
                    rel.display()
                )));
            };
            p.push(name);
            r.push(name);
            if i + 1 == comps.len() {
                break;
            }
            match fs::symlink_metadata(&p) {
                Ok(md) if md.is_dir() => {}
                Ok(md) if md.file_type().is_symlink() => {
                    return Err(ImageError::Invalid(format!(
                        "archive entry {} goes through the symlink {}",
                        rel.display(),
                        r.display()
                    )));
                }
                Ok(_) => {
                    return Err(ImageError::Invalid(format!(
                        "archive entry {} goes through the non-directory {}",
                        rel.display(),
                        r.display()
                    )));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                    fs::create_dir(&p)?;
                    // A directory the archive implies without an entry: root's, 0755, and a
                    // fixed time so the same archive gives the same image.
                    self.dirs.insert(r.clone(), IMPLIED_DIR);
                }
                Err(e) => return Err(e.into()),
            }
            if create {
                self.this_layer.insert(r.clone());
            }
        }
        Ok(p)
    }

    /// Applies a whiteout entry at `rel` when its name is one; returns whether it was.
    ///
    /// # Errors
    /// As [`Tree::put`].
    pub fn whiteout(&mut self, rel: &Path) -> Result<bool> {
        let Some(name) = rel.file_name().map(OsStr::as_bytes) else {
            return Ok(false);
        };
        let Some(target) = name.strip_prefix(b".wh.") else {
            return Ok(false);
        };
        let parent_rel = rel.parent().unwrap_or(Path::new(""));
        if target == b".wh..opq" {
            // Opaque: what lower layers put in this directory is gone.
            let dir = if parent_rel.as_os_str().is_empty() {
                self.root.clone()
            } else {
                let d = self.parent_checked(&parent_rel.join("x"), true)?;
                d.parent().map(Path::to_path_buf).unwrap_or_default()
            };
            match fs::symlink_metadata(&dir) {
                Ok(md) if md.is_dir() => {}
                _ => return Ok(true),
            }
            for e in fs::read_dir(&dir)? {
                let e = e?;
                let child = parent_rel.join(e.file_name());
                if !self.this_layer.contains(&child) {
                    remove_any(&e.path())?;
                }
            }
        } else if target.starts_with(b".wh.") {
            // AUFS internals (`.wh..wh.plnk`...): nothing to apply.
        } else {
            let victim = parent_rel.join(OsStr::from_bytes(target));
            let p = self.parent_checked(&victim, false);
            match p {
                Ok(p) => remove_any(&p)?,
                // Nothing to hide below a missing directory.
                Err(ImageError::Io(e)) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Writes a node at `rel` (plain names), replacing what is there, except that a directory
    /// on a directory merges.
    ///
    /// # Errors
    /// [`ImageError::Invalid`] for a path through a symlink or a hard link out of the tree;
    /// I/O.
    pub fn put(&mut self, rel: &Path, kind: Kind<'_>, meta: Meta) -> Result<()> {
        if rel.as_os_str().is_empty() {
            // The root itself: only its metadata.
            if matches!(kind, Kind::Dir) {
                self.dirs.insert(PathBuf::new(), meta);
            }
            return Ok(());
        }
        let p = self.parent_checked(rel, true)?;
        self.this_layer.insert(rel.to_owned());
        let existing = fs::symlink_metadata(&p).ok();
        if let Some(md) = &existing
            && !(md.is_dir() && matches!(kind, Kind::Dir))
        {
            remove_any(&p)?;
        }
        let is_symlink = matches!(kind, Kind::Symlink(_));
        match kind {
            Kind::Dir => {
                if existing.is_none_or(|m| !m.is_dir()) {
                    fs::create_dir(&p)?;
                }
                // Writable for us until `finish`.
                fs::set_permissions(&p, fs::Permissions::from_mode(0o700))?;
                self.dirs.insert(rel.to_owned(), meta);
                return Ok(());
            }
            Kind::File(data) => {
                let mut f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&p)?;
                io::copy(data, &mut f)?;
            }
            Kind::Symlink(target) => std::os::unix::fs::symlink(target, &p)?,
            Kind::HardLink(target) => {
                let t = clean_path(target.as_os_str().as_bytes())?;
                let tp = self.parent_checked(&t, false)?;
                match fs::symlink_metadata(&tp) {
                    Ok(md) if !md.is_dir() => {}
                    _ => {
                        return Err(ImageError::Invalid(format!(
                            "hard link {} to {}: no such file in the tree",
                            rel.display(),
                            t.display()
                        )));
                    }
                }
                // linkat without AT_SYMLINK_FOLLOW: a symlink target is linked, not followed.
                fs::hard_link(&tp, &p)?;
                // A hard link shares its target's metadata: nothing more to set.
                return Ok(());
            }
            Kind::Char(maj, min) | Kind::Block(maj, min) => {
                let ft = if matches!(kind, Kind::Char(..)) {
                    FileType::CharacterDevice
                } else {
                    FileType::BlockDevice
                };
                let made = rustix::fs::mknodat(
                    CWD,
                    &p,
                    ft,
                    Mode::from_raw_mode(0o600),
                    rustix::fs::makedev(maj, min),
                );
                if made.is_err() {
                    // Not root: the container gets its own /dev anyway.
                    self.skipped_devices += 1;
                    return Ok(());
                }
            }
            Kind::Fifo => {
                rustix::fs::mknodat(CWD, &p, FileType::Fifo, Mode::from_raw_mode(0o600), 0)
                    .map_err(io::Error::from)?;
            }
        }
        self.set_meta(&p, meta, is_symlink)
    }

    /// Owner, then mode (a chown clears setuid bits), then time.
    fn set_meta(&self, p: &Path, meta: Meta, symlink: bool) -> Result<()> {
        if self.chown {
            rustix::fs::chownat(
                CWD,
                p,
                Some(Uid::from_raw(meta.uid)),
                Some(Gid::from_raw(meta.gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(io::Error::from)?;
        }
        if !symlink {
            fs::set_permissions(p, fs::Permissions::from_mode(meta.mode & 0o7777))?;
        }
        rustix::fs::utimensat(CWD, p, &timestamps(meta.mtime), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(io::Error::from)?;
        Ok(())
    }

    /// Applies directories' metadata, deepest first; directories a later layer removed or
    /// replaced are skipped.
    ///
    /// # Errors
    /// I/O.
    pub fn finish(mut self) -> Result<u64> {
        let mut dirs: Vec<_> = std::mem::take(&mut self.dirs).into_iter().collect();
        dirs.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
        for (rel, meta) in dirs {
            let p = if rel.as_os_str().is_empty() {
                self.root.clone()
            } else {
                match self.parent_checked(&rel, false) {
                    Ok(p) => p,
                    Err(_) => continue,
                }
            };
            if fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir()) {
                self.set_meta(&p, meta, false)?;
            }
        }
        Ok(self.skipped_devices)
    }
}

fn meta_of(h: &tar::Header) -> Result<Meta> {
    let bad = |e: io::Error| ImageError::Invalid(format!("archive header: {e}"));
    Ok(Meta {
        mode: h.mode().map_err(bad)? & 0o7777,
        uid: u32::try_from(h.uid().map_err(bad)?).unwrap_or(65534),
        gid: u32::try_from(h.gid().map_err(bad)?).unwrap_or(65534),
        mtime: i64::try_from(h.mtime().map_err(bad)?).unwrap_or(0),
    })
}

/// Applies one layer (an uncompressed tar stream) to `tree`; returns how many entries.
///
/// # Errors
/// [`ImageError::Invalid`] for a malformed or hostile archive; I/O.
pub fn apply_tar(tree: &mut Tree, layer: impl Read) -> Result<u64> {
    tree.next_layer();
    let mut archive = tar::Archive::new(layer);
    let bad = |e: io::Error| ImageError::Invalid(format!("layer archive: {e}"));
    let mut n = 0u64;
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let rel = clean_path(&entry.path_bytes())?;
        n += 1;
        if tree.whiteout(&rel)? {
            continue;
        }
        let meta = meta_of(entry.header())?;
        let et = entry.header().entry_type();
        let link = entry
            .link_name_bytes()
            .map(|l| l.into_owned())
            .unwrap_or_default();
        let dev = |h: &tar::Header| -> Result<(u32, u32)> {
            Ok((
                h.device_major().map_err(bad)?.unwrap_or(0),
                h.device_minor().map_err(bad)?.unwrap_or(0),
            ))
        };
        let kind = match et {
            tar::EntryType::Directory => Kind::Dir,
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                Kind::File(&mut entry)
            }
            tar::EntryType::Symlink => Kind::Symlink(OsStr::from_bytes(&link)),
            tar::EntryType::Link => Kind::HardLink(Path::new(OsStr::from_bytes(&link))),
            tar::EntryType::Char => {
                let (a, b) = dev(entry.header())?;
                Kind::Char(a, b)
            }
            tar::EntryType::Block => {
                let (a, b) = dev(entry.header())?;
                Kind::Block(a, b)
            }
            tar::EntryType::Fifo => Kind::Fifo,
            other => {
                tracing::debug!(path = %rel.display(), kind = ?other, "skipping archive entry");
                continue;
            }
        };
        tree.put(&rel, kind, meta)?;
    }
    Ok(n)
}

/// Copies the tree under `src` (not following symlinks) into `tree`; returns how many nodes.
///
/// # Errors
/// I/O.
pub fn copy_dir(tree: &mut Tree, src: &Path) -> Result<u64> {
    tree.next_layer();
    let mut n = 0u64;
    let md = fs::symlink_metadata(src)?;
    tree.put(Path::new(""), Kind::Dir, meta_from(&md))?;
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let mut entries: Vec<_> = fs::read_dir(src.join(&rel))?.collect::<io::Result<_>>()?;
        entries.sort_by_key(fs::DirEntry::file_name);
        for e in entries {
            let r = rel.join(e.file_name());
            let p = e.path();
            let md = fs::symlink_metadata(&p)?;
            let meta = meta_from(&md);
            let ft = md.file_type();
            n += 1;
            use std::os::unix::fs::FileTypeExt;
            if ft.is_dir() {
                tree.put(&r, Kind::Dir, meta)?;
                stack.push(r);
            } else if ft.is_file() {
                let mut f = OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&p)?;
                tree.put(&r, Kind::File(&mut f), meta)?;
            } else if ft.is_symlink() {
                let t = fs::read_link(&p)?;
                tree.put(&r, Kind::Symlink(t.as_os_str()), meta)?;
            } else if ft.is_char_device() || ft.is_block_device() {
                let dev = md.rdev();
                let (maj, min) = (rustix::fs::major(dev), rustix::fs::minor(dev));
                let k = if ft.is_char_device() {
                    Kind::Char(maj, min)
                } else {
                    Kind::Block(maj, min)
                };
                tree.put(&r, k, meta)?;
            } else if ft.is_fifo() {
                tree.put(&r, Kind::Fifo, meta)?;
            }
            // Sockets are runtime state, not image content.
        }
    }
    Ok(n)
}

fn meta_from(md: &fs::Metadata) -> Meta {
    Meta {
        mode: md.mode() & 0o7777,
        uid: md.uid(),
        gid: md.gid(),
        mtime: md.mtime(),
    }
}
