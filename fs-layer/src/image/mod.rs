//! Squashfs images: written from a directory tree with backhand, read lazily.
//!
//! OWNER: image helper. Signatures here are the contract other modules use.

use std::ffi::{OsStr, OsString};
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::node::{Layer, NodeAttr, NodeId};
use crate::{FsError, Result};

/// How images are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOptions {
    /// zstd compression level (1..=22). Default 3.
    pub compression_level: i32,
    /// Data block size in bytes: a power of two from 4 KiB to 1 MiB. Default 128 KiB.
    pub block_size: u32,
}

impl Default for WriteOptions {
    fn default() -> Self {
        Self {
            compression_level: 3,
            block_size: 128 * 1024,
        }
    }
}

/// What an image holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TreeStats {
    /// Regular files.
    pub files: u64,
    /// Directories (the root included).
    pub dirs: u64,
    /// Symlinks.
    pub symlinks: u64,
    /// Devices, FIFOs, sockets.
    pub others: u64,
    /// Sum of regular file sizes.
    pub bytes: u64,
}

/// Progress of a long operation: called now and then with the totals so far.
pub type Progress<'a> = &'a (dyn Fn(TreeStats) + Sync);

/// Writes the tree under `src` (not following symlinks) as a squashfs image to `out`.
/// Whiteout files are written like any other file.
///
/// # Errors
/// [`FsError::Invalid`] for bad options, [`FsError::Io`] when the tree cannot be read or the
/// output written.
pub fn write_tree<W: Write + Seek>(
    src: &Path,
    out: W,
    opts: &WriteOptions,
    progress: Progress<'_>,
) -> Result<TreeStats> {
    let _ = (src, out, opts, progress);
    Err(FsError::Invalid("not yet implemented".into()))
}

/// An opened squashfs image. Immutable; cheap to share (`Arc`).
#[derive(Debug)]
pub struct Image {
    path: PathBuf,
}

impl Image {
    /// Opens and validates an image: superblock, compressor, inode and directory tables.
    /// A truncated or corrupt image is [`FsError::Corrupt`].
    ///
    /// # Errors
    /// [`FsError::Corrupt`], or [`FsError::Io`] when the file cannot be opened.
    pub fn open(path: &Path) -> Result<Arc<Image>> {
        Err(FsError::NotFound(path.display().to_string()))
    }

    /// The image file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Counts of what the image holds.
    pub fn stats(&self) -> TreeStats {
        TreeStats::default()
    }

    /// Looks up a `/`-separated path relative to the root (`""` is the root).
    pub fn lookup_path(&self, rel: &Path) -> Option<NodeId> {
        let _ = rel;
        None
    }

    /// Extracts the whole image into `dest` (which must exist and be empty), restoring modes,
    /// times and (when running as root) owners.
    ///
    /// # Errors
    /// [`FsError::Corrupt`] or [`FsError::Io`].
    pub fn extract_to(&self, dest: &Path, progress: Progress<'_>) -> Result<TreeStats> {
        let _ = (dest, progress);
        Err(FsError::Invalid("not yet implemented".into()))
    }
}

impl Layer for Image {
    fn root(&self) -> NodeId {
        0
    }
    fn lookup(&self, _dir: NodeId, _name: &OsStr) -> Option<NodeId> {
        None
    }
    fn attr(&self, _node: NodeId) -> NodeAttr {
        unimplemented!()
    }
    fn children(&self, _dir: NodeId) -> std::io::Result<Vec<(OsString, NodeId)>> {
        Ok(Vec::new())
    }
    fn readlink(&self, _node: NodeId) -> std::io::Result<PathBuf> {
        Err(std::io::Error::other("not yet implemented"))
    }
    fn read_at(&self, _node: NodeId, _offset: u64, _buf: &mut [u8]) -> std::io::Result<usize> {
        Err(std::io::Error::other("not yet implemented"))
    }
}
