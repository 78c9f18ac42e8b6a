//! File operations confined to one sandbox's workspace directory on the host.
//!
//! The HTTP layer uses this to read, write and manage files in a sandbox's `/workspace`
//! (calling it from `tokio::task::spawn_blocking`, as every operation is blocking I/O).
//!
//! # Security contract
//!
//! The workspace holds untrusted content: the guest can create any file or symlink in it,
//! possibly while an operation here is running. Confinement therefore rests on two layers:
//!
//! 1. [`Workspace::resolve`] normalizes client paths lexically and rejects anything that
//!    does not name a location under `/workspace` (`..` above the root, other absolute
//!    paths, NUL bytes, overlong paths). Nothing is percent-decoded or tilde-expanded.
//! 2. Every filesystem access goes through a `cap_std::fs::Dir` for the workspace root, so
//!    the kernel (`openat2` with `RESOLVE_BENEATH`) or cap-std's manual resolver refuses any
//!    symlink that leads out, including absolute targets (even ones that would land back in
//!    the workspace on the host). Such refusals surface as
//!    [`FileError::PathOutsideWorkspace`].
//!
//! Symlinks that stay inside the workspace are followed for reading and writing. Operations
//! that act on an entry itself (delete, rename, move, stat, exists, recursive listing) never
//! follow a final symlink, and recursive listing never descends through one.
//!
//! Host paths never appear in results or errors: only guest paths (`/workspace/...`).

mod error;
mod path;

#[cfg(test)]
mod hostile_tests;
#[cfg(test)]
mod tests;

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use cap_std::fs::{Dir, File, Metadata, MetadataExt, OpenOptions, Permissions, PermissionsExt};
use serde::{Deserialize, Serialize};

pub use crate::files::error::{FileError, Result};
use crate::files::path::GUEST_ROOT;
pub use crate::files::path::RelPath;

/// Name prefix of the temporary a write goes to before it is renamed over its target.
pub const TEMP_PREFIX: &str = ".hybox-write-";

/// Contents and metadata of a file returned by [`Workspace::read`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileData {
    /// The file's contents.
    pub bytes: Vec<u8>,
    /// Size in bytes (equal to `bytes.len()`).
    pub size: u64,
    /// MIME type guessed from the extension; extensionless UTF-8 content is `text/plain`,
    /// anything else unknown `application/octet-stream`.
    pub mime: String,
    /// Last modification time, if the filesystem reports one.
    pub modified: Option<SystemTime>,
    /// Permission bits (`0o7777` mask).
    pub mode: u32,
}

/// What kind of filesystem object an [`Entry`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// Regular file.
    File,
    /// Directory.
    Directory,
    /// Symbolic link (never followed when reporting entries).
    Symlink,
    /// Anything else: FIFO, socket, device.
    Other,
}

/// One directory entry, as returned by [`Workspace::list`] and [`Workspace::stat`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// Last path component (`"workspace"` for the root). Non-UTF-8 names are converted lossily.
    pub name: String,
    /// Guest path, e.g. `"/workspace/src/main.rs"`.
    pub path: String,
    /// Kind of the entry itself (a symlink is reported as a symlink).
    pub kind: EntryKind,
    /// Size in bytes as reported by `lstat`.
    pub size: u64,
    /// Permission bits (`0o7777` mask).
    pub mode: u32,
    /// Last modification time, if the filesystem reports one.
    pub modified: Option<SystemTime>,
}

/// A sandbox workspace directory; all operations are confined to it.
#[derive(Debug)]
pub struct Workspace {
    dir: Dir,
}

/// Distinguishes temp files of concurrent writes within this process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

fn io_err(err: io::Error, p: &RelPath) -> FileError {
    FileError::from_io(err, p.guest_path())
}

fn is_not_found(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::NotFound
}

fn entry_kind(meta: &Metadata) -> EntryKind {
    let ft = meta.file_type();
    if ft.is_symlink() {
        EntryKind::Symlink
    } else if ft.is_dir() {
        EntryKind::Directory
    } else if ft.is_file() {
        EntryKind::File
    } else {
        EntryKind::Other
    }
}

fn mode_bits(meta: &Metadata) -> u32 {
    meta.permissions().mode() & 0o7777
}

fn entry_from(meta: &Metadata, p: &RelPath) -> Entry {
    let name = if p.is_root() {
        GUEST_ROOT.trim_start_matches('/')
    } else {
        p.file_name()
    };
    Entry {
        name: name.to_owned(),
        path: p.guest_path(),
        kind: entry_kind(meta),
        size: meta.len(),
        mode: mode_bits(meta),
        modified: meta.modified().ok().map(|t| t.into_std()),
    }
}

/// Guesses a MIME type from the file name, falling back to sniffing UTF-8 text for
/// extensionless files (READMEs, Makefiles, scripts).
fn guess_mime(name: &str, bytes: &[u8]) -> String {
    if let Some(mime) = mime_guess::from_path(name).first() {
        return mime.essence_str().to_owned();
    }
    let has_extension = std::path::Path::new(name).extension().is_some();
    if !has_extension && std::str::from_utf8(bytes).is_ok() {
        "text/plain".to_owned()
    } else {
        "application/octet-stream".to_owned()
    }
}

fn too_large(p: &RelPath, size: u64, limit: u64) -> FileError {
    FileError::FileTooLarge {
        path: p.guest_path(),
        size,
        limit,
    }
}

/// Refuses moving a directory below itself, which the kernel would reject with a bare
/// `EINVAL`.
fn check_not_into_itself(from: &RelPath, to: &RelPath) -> Result<()> {
    if to != from && to.is_within(from) {
        return Err(FileError::InvalidPath {
            path: to.guest_path(),
            reason: "cannot move a directory into itself",
        });
    }
    Ok(())
}

/// Checks that `meta` describes something `read` may open and return.
fn check_readable(meta: &Metadata, p: &RelPath, max_bytes: u64) -> Result<()> {
    if meta.is_dir() {
        return Err(FileError::IsDirectory {
            path: p.guest_path(),
        });
    }
    if !meta.is_file() {
        // FIFOs and devices could block forever or never end.
        return Err(FileError::InvalidPath {
            path: p.guest_path(),
            reason: "not a regular file",
        });
    }
    if meta.len() > max_bytes {
        return Err(too_large(p, meta.len(), max_bytes));
    }
    Ok(())
}

/// Writes `data` to a fresh temp file in `dir`, syncs it and renames it over `name`, so
/// readers never observe a half-written file. `perms` preserves the mode of a file being
/// replaced.
fn write_atomic(
    dir: &Dir,
    name: &str,
    data: &[u8],
    perms: Option<Permissions>,
    p: &RelPath,
) -> Result<()> {
    let (tmp_name, mut file) = create_temp(dir, p)?;
    let result = (|| {
        file.write_all(data)?;
        if let Some(perms) = perms {
            file.set_permissions(perms)?;
        }
        file.sync_all()?;
        drop(file);
        // rename(2) replaces the final component itself, so a symlink planted at `name`
        // after our check is replaced rather than followed.
        dir.rename(&tmp_name, dir, name)
    })();
    if let Err(err) = result {
        // Best effort: the original error is what the caller needs to see.
        let _ = dir.remove_file(&tmp_name);
        return Err(io_err(err, p));
    }
    Ok(())
}

/// Creates a uniquely named temp file in `dir`. `create_new` (O_EXCL) never follows a
/// symlink a guest may have planted under the name.
fn create_temp(dir: &Dir, p: &RelPath) -> Result<(String, File)> {
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    let mut attempts = 0;
    loop {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp_name = format!("{TEMP_PREFIX}{}-{n}.tmp", std::process::id());
        match dir.open_with(&tmp_name, &opts) {
            Ok(file) => return Ok((tmp_name, file)),
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists && attempts < 16 => {
                attempts += 1;
            }
            Err(err) => return Err(io_err(err, p)),
        }
    }
}

/// Traversal state of [`Workspace::list`].
struct Listing<'a> {
    top: &'a RelPath,
    recursive: bool,
    limit: usize,
    out: Vec<Entry>,
    /// Subdirectories still to visit, with the (dev, ino) seen when they were found.
    pending: Vec<(RelPath, (u64, u64))>,
}

impl Listing<'_> {
    /// Records the entries of `dir` (at `rel`) and queues its subdirectories.
    fn read_dir(&mut self, dir: &Dir, rel: &RelPath) -> Result<()> {
        for item in dir.entries().map_err(|e| io_err(e, rel))? {
            let item = item.map_err(|e| io_err(e, rel))?;
            let name = item.file_name().to_string_lossy().into_owned();
            let child = rel.join(&name);
            // DirEntry::metadata is an lstat: symlinks are reported, not followed.
            let meta = match item.metadata() {
                Ok(meta) => meta,
                Err(err) if is_not_found(&err) => continue,
                Err(err) => return Err(io_err(err, &child)),
            };
            if self.recursive && meta.is_dir() {
                self.pending.push((child.clone(), (meta.dev(), meta.ino())));
            }
            self.out.push(entry_from(&meta, &child));
            if self.out.len() > self.limit {
                return Err(FileError::TooManyEntries {
                    path: self.top.guest_path(),
                    limit: self.limit,
                });
            }
        }
        Ok(())
    }
}

impl Workspace {
    /// Opens the workspace rooted at `root`, a host directory.
    pub fn open(root: &std::path::Path) -> Result<Self> {
        let dir = Dir::open_ambient_dir(root, cap_std::ambient_authority())
            .map_err(|e| FileError::from_io(e, GUEST_ROOT))?;
        Ok(Self { dir })
    }

    /// Resolve a user path against `cwd` (a guest path like `"/workspace/src"`), returning
    /// a normalized relative path inside the workspace (`""` = root).
    ///
    /// Accepts `"/workspace/a/b"`, `"a/b"`, `"./a"`, `"/workspace"`; an empty or relative
    /// `cwd` counts from the root. Rejects absolute paths not under `/workspace`
    /// (`/workspace2` included) and any `..` that would climb above the workspace root
    /// ([`FileError::PathOutsideWorkspace`]); NUL bytes, an empty path, paths over 4096 bytes
    /// and components over 255 bytes ([`FileError::InvalidPath`]). Purely lexical: symlinks
    /// are checked when the path is used.
    pub fn resolve(&self, path: &str, cwd: &str) -> Result<RelPath> {
        path::resolve(path, cwd)
    }

    /// Opens the directory at `p` for host-side tree operations (snapshot, restore), refusing a
    /// final symlink; `create` makes it (and missing parents) first. The result is an open
    /// descriptor, so a guest renaming things meanwhile cannot redirect what it names.
    pub fn open_real_dir(&self, p: &RelPath, create: bool) -> Result<std::os::fd::OwnedFd> {
        if create {
            self.create_dirs(p)?;
        }
        let dir = if p.is_root() {
            self.dir.try_clone()
        } else {
            match self.dir.symlink_metadata(p.fs_path()) {
                // (A swap to a symlink after this check is still resolved beneath the root.)
                Ok(m) if m.is_dir() => self.dir.open_dir(p.fs_path()),
                Ok(_) => {
                    return Err(FileError::NotDirectory {
                        path: p.guest_path(),
                    });
                }
                Err(e) => Err(e),
            }
        };
        let dir = dir.map_err(|e| io_err(e, p))?;
        Ok(std::os::fd::OwnedFd::from(dir.into_std_file()))
    }

    /// Opens the directory at `p`, following symlinks that stay inside.
    fn open_dir(&self, p: &RelPath) -> Result<Dir> {
        let dir = if p.is_root() {
            self.dir.try_clone()
        } else {
            self.dir.open_dir(p.fs_path())
        };
        dir.map_err(|e| io_err(e, p))
    }

    /// Creates all missing directories of `p`. An existing non-directory in the way is
    /// reported as such rather than as "file exists".
    fn create_dirs(&self, p: &RelPath) -> Result<()> {
        if p.is_root() {
            return Ok(());
        }
        match self.dir.create_dir_all(p.fs_path()) {
            Ok(()) => Ok(()),
            // Something other than a directory is in the way; if it is a symlink leading
            // out, say so rather than "not a directory".
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                match self.dir.metadata(p.fs_path()) {
                    Err(meta_err) => Err(io_err(meta_err, p)),
                    Ok(_) => Err(FileError::NotDirectory {
                        path: p.guest_path(),
                    }),
                }
            }
            Err(err) => Err(io_err(err, p)),
        }
    }

    /// Writes `data` to `p`, replacing it atomically (temp file in the same directory,
    /// `sync_all`, rename). With `create_parents`, missing parent directories are created.
    /// A symlink at `p` is written through if it stays inside the workspace.
    pub fn write(&self, p: &RelPath, data: &[u8], create_parents: bool) -> Result<()> {
        p.require_name()?;
        if create_parents {
            self.create_dirs(&p.parent())?;
        }
        self.write_inner(p, data, true)
    }

    /// `follow` is false once a symlink has been resolved, so a guest swapping links during
    /// the write cannot make us chase them forever.
    fn write_inner(&self, p: &RelPath, data: &[u8], follow: bool) -> Result<()> {
        let parent = self.open_dir(&p.parent())?;
        let name = p.file_name();
        match parent.symlink_metadata(name) {
            Ok(meta) if meta.is_symlink() => {
                if follow {
                    self.write_through_symlink(p, data)
                } else {
                    // The link we resolved was replaced by another one meanwhile; refusing
                    // is safer than chasing links indefinitely.
                    Err(FileError::PathOutsideWorkspace {
                        path: p.guest_path(),
                    })
                }
            }
            Ok(meta) if meta.is_dir() => Err(FileError::IsDirectory {
                path: p.guest_path(),
            }),
            Ok(meta) => {
                // Keep the rwx bits of the file being replaced, but never setuid/setgid/
                // sticky: the new file is owned by the host process, and a guest must not be
                // able to get those bits onto a file it did not create.
                let perms = Permissions::from_mode(meta.permissions().mode() & 0o777);
                write_atomic(&parent, name, data, Some(perms), p)
            }
            Err(err) if is_not_found(&err) => write_atomic(&parent, name, data, None, p),
            Err(err) => Err(io_err(err, p)),
        }
    }

    /// Writes to the target of the symlink at `p`. cap-std resolves the link and refuses
    /// any target outside the workspace (absolute targets included).
    fn write_through_symlink(&self, p: &RelPath, data: &[u8]) -> Result<()> {
        match self.dir.canonicalize(p.fs_path()) {
            Ok(real) => {
                let real = real.to_str().ok_or_else(|| FileError::InvalidPath {
                    path: p.guest_path(),
                    reason: "symlink target is not valid utf-8",
                })?;
                let real = path::resolve(if real.is_empty() { "." } else { real }, "")?;
                if real.is_root() {
                    return Err(FileError::IsDirectory {
                        path: p.guest_path(),
                    });
                }
                self.write_inner(&real, data, false)
            }
            Err(err) if is_not_found(&err) => {
                // Dangling link: let cap-std create the target through it, which it does
                // only if the target lies inside. Not atomic, but there is nothing to tear.
                let mut opts = OpenOptions::new();
                opts.write(true).create(true).truncate(true);
                // A FIFO swapped in meanwhile must fail (ENXIO) rather than block.
                opts._cap_fs_ext_nonblock(true);
                let mut file = self
                    .dir
                    .open_with(p.fs_path(), &opts)
                    .map_err(|e| io_err(e, p))?;
                file.write_all(data)
                    .and_then(|()| file.sync_all())
                    .map_err(|e| io_err(e, p))
            }
            Err(err) => Err(io_err(err, p)),
        }
    }

    /// Reads the file at `p` (following symlinks that stay inside). Files larger than
    /// `max_bytes` give [`FileError::FileTooLarge`]; non-regular files are refused.
    pub fn read(&self, p: &RelPath, max_bytes: u64) -> Result<FileData> {
        // Checking before opening avoids opening FIFOs at all; the check is repeated on the
        // opened handle because the guest can swap the entry in between.
        let meta = self.dir.metadata(p.fs_path()).map_err(|e| io_err(e, p))?;
        check_readable(&meta, p, max_bytes)?;

        let mut opts = OpenOptions::new();
        opts.read(true);
        // If a FIFO is swapped in after the check, O_NONBLOCK keeps open() from blocking a
        // worker thread forever. cap-std keeps this switch hidden for cap-fs-ext, which we
        // do not depend on.
        opts._cap_fs_ext_nonblock(true);
        let file = self
            .dir
            .open_with(p.fs_path(), &opts)
            .map_err(|e| io_err(e, p))?;
        let meta = file.metadata().map_err(|e| io_err(e, p))?;
        check_readable(&meta, p, max_bytes)?;

        let capacity = usize::try_from(meta.len()).unwrap_or(0);
        let mut bytes = Vec::with_capacity(capacity);
        // One byte past the limit tells us whether the file grew beyond it after stat.
        file.take(max_bytes.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|e| io_err(e, p))?;
        let size = bytes.len() as u64;
        if size > max_bytes {
            return Err(too_large(p, size, max_bytes));
        }
        Ok(FileData {
            mime: guess_mime(p.file_name(), &bytes),
            bytes,
            size,
            modified: meta.modified().ok().map(|t| t.into_std()),
            mode: mode_bits(&meta),
        })
    }

    /// Creates the directory `p`. With `recursive`, missing parents are created and an
    /// existing directory is not an error (like `mkdir -p`).
    pub fn mkdir(&self, p: &RelPath, recursive: bool) -> Result<()> {
        if recursive {
            return self.create_dirs(p);
        }
        if p.is_root() {
            return Err(FileError::FileExists {
                path: p.guest_path(),
            });
        }
        self.dir.create_dir(p.fs_path()).map_err(|e| io_err(e, p))
    }

    /// Deletes the file, symlink (the link itself) or directory at `p`. A non-empty
    /// directory needs `recursive`; the workspace root cannot be deleted.
    pub fn delete(&self, p: &RelPath, recursive: bool) -> Result<()> {
        p.require_name()?;
        let meta = self
            .dir
            .symlink_metadata(p.fs_path())
            .map_err(|e| io_err(e, p))?;
        let result = if !meta.is_dir() {
            self.dir.remove_file(p.fs_path())
        } else if recursive {
            // cap-std's remove_dir_all lstat()s every entry and unlinks symlinks instead
            // of descending through them.
            self.dir.remove_dir_all(p.fs_path())
        } else {
            self.dir.remove_dir(p.fs_path())
        };
        result.map_err(|e| io_err(e, p))
    }

    /// Renames `from` to `to` (whose parent must exist). Like rename(2), an existing file
    /// or empty directory at `to` is replaced; symlinks are renamed, not followed.
    pub fn rename(&self, from: &RelPath, to: &RelPath) -> Result<()> {
        from.require_name()?;
        to.require_name()?;
        self.rename_checked(from, to)
    }

    /// Shared tail of rename and move: `to` is the final destination.
    fn rename_checked(&self, from: &RelPath, to: &RelPath) -> Result<()> {
        // Looking `from` up first attributes a missing source (or an escape through its
        // parents) to the right path.
        self.dir
            .symlink_metadata(from.fs_path())
            .map_err(|e| io_err(e, from))?;
        check_not_into_itself(from, to)?;
        self.dir
            .rename(from.fs_path(), &self.dir, to.fs_path())
            .map_err(|e| io_err(e, to))
    }

    /// Moves `from` to `to` like `mv`: if `to` is an existing directory (or a symlink to
    /// one inside the workspace), `from` is moved into it; otherwise missing parents of
    /// `to` are created and `from` is renamed to `to`.
    pub fn move_path(&self, from: &RelPath, to: &RelPath) -> Result<RelPath> {
        from.require_name()?;
        self.dir
            .symlink_metadata(from.fs_path())
            .map_err(|e| io_err(e, from))?;
        let (target, missing) = match self.dir.metadata(to.fs_path()) {
            Ok(meta) if meta.is_dir() => (to.join(from.file_name()), false),
            Ok(_) => (to.clone(), false),
            Err(err) if is_not_found(&err) => (to.clone(), true),
            Err(err) => return Err(io_err(err, to)),
        };
        target.require_name()?;
        // Checked before creating parents so a refused move leaves no directories behind.
        check_not_into_itself(from, &target)?;
        if missing {
            self.create_dirs(&target.parent())?;
        }
        self.rename_checked(from, &target)?;
        Ok(target)
    }

    /// Lists the directory at `p` (following a symlink at `p` itself if it stays inside).
    /// With `recursive`, descends into subdirectories but never through symlinks. Results
    /// are sorted by path; more than `limit` entries give [`FileError::TooManyEntries`].
    pub fn list(&self, p: &RelPath, recursive: bool, limit: usize) -> Result<Vec<Entry>> {
        let mut listing = Listing {
            top: p,
            recursive,
            limit,
            out: Vec::new(),
            pending: Vec::new(),
        };
        let top = self.open_dir(p)?;
        listing.read_dir(&top, p)?;
        drop(top);

        // Reopening each directory by path keeps one descriptor open at a time however deep
        // the tree; the identity check catches a directory swapped for a symlink meanwhile.
        while let Some((rel, identity)) = listing.pending.pop() {
            let dir = match self.dir.open_dir(rel.fs_path()) {
                Ok(dir) => dir,
                Err(err) if is_not_found(&err) => continue,
                Err(err) => return Err(io_err(err, &rel)),
            };
            let meta = dir.dir_metadata().map_err(|e| io_err(e, &rel))?;
            if (meta.dev(), meta.ino()) != identity {
                continue;
            }
            listing.read_dir(&dir, &rel)?;
        }
        let mut out = listing.out;
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// Whether something exists at `p`. A symlink counts as existing even if its target
    /// does not (it is not followed); an escaping parent path is still an error.
    pub fn exists(&self, p: &RelPath) -> Result<bool> {
        match self.dir.symlink_metadata(p.fs_path()) {
            Ok(_) => Ok(true),
            Err(err) if is_not_found(&err) || err.kind() == io::ErrorKind::NotADirectory => {
                Ok(false)
            }
            Err(err) => Err(io_err(err, p)),
        }
    }

    /// Metadata of the entry at `p` itself (a symlink is described, not followed).
    pub fn stat(&self, p: &RelPath) -> Result<Entry> {
        let meta = self
            .dir
            .symlink_metadata(p.fs_path())
            .map_err(|e| io_err(e, p))?;
        Ok(entry_from(&meta, p))
    }
}
