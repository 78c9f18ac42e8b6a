//! Content-addressed image store: `<dir>/<sha256>.sqfs`, written to a temp file and renamed.
//!
//! OWNER: image helper. Signatures here are the contract other modules use.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::image::{Image, Progress, TreeStats, WriteOptions};
use crate::{FsError, Result};

/// An image in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredImage {
    /// sha256 of the image file, lowercase hex: its id.
    pub id: String,
    /// Size of the image file in bytes.
    pub size: u64,
    /// What it holds.
    pub stats: TreeStats,
}

/// The image store of one data dir.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// Opens (creating it, mode 0700) the store in `dir`, removing temp files left by a crash.
    ///
    /// # Errors
    /// [`FsError::Io`].
    pub fn open(dir: &Path) -> Result<Store> {
        Ok(Store {
            dir: dir.to_path_buf(),
        })
    }

    /// Writes the tree under `src` as an image into the store.
    ///
    /// # Errors
    /// As [`crate::image::write_tree`].
    pub fn create_from_dir(
        &self,
        src: &Path,
        opts: &WriteOptions,
        progress: Progress<'_>,
    ) -> Result<StoredImage> {
        let _ = (src, opts, progress);
        Err(FsError::Invalid("not yet implemented".into()))
    }

    /// Copies an image file from outside (e.g. `hybox snapshot import`) into the store after
    /// validating it fully (every node readable).
    ///
    /// # Errors
    /// [`FsError::Corrupt`] or [`FsError::Io`].
    pub fn import(&self, file: &Path) -> Result<StoredImage> {
        let _ = file;
        Err(FsError::Invalid("not yet implemented".into()))
    }

    /// Opens a stored image (shared: the same `Arc` while anyone holds it). Checks the file's
    /// size against the name's record and validates the structure; [`FsError::Corrupt`] if not.
    ///
    /// # Errors
    /// [`FsError::NotFound`], [`FsError::Corrupt`], [`FsError::Io`].
    pub fn open_image(&self, id: &str) -> Result<Arc<Image>> {
        Err(FsError::NotFound(id.to_owned()))
    }

    /// Metadata of a stored image without opening it fully.
    ///
    /// # Errors
    /// [`FsError::NotFound`], [`FsError::Corrupt`].
    pub fn info(&self, id: &str) -> Result<StoredImage> {
        Err(FsError::NotFound(id.to_owned()))
    }

    /// Recomputes the sha256 of a stored image and compares it with its id.
    ///
    /// # Errors
    /// [`FsError::Corrupt`] on mismatch.
    pub fn verify(&self, id: &str) -> Result<()> {
        Err(FsError::NotFound(id.to_owned()))
    }

    /// The file of a stored image (for export).
    pub fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.sqfs"))
    }

    /// Ids of all stored images.
    ///
    /// # Errors
    /// [`FsError::Io`].
    pub fn list(&self) -> Result<Vec<String>> {
        Ok(Vec::new())
    }

    /// Removes a stored image (open `Arc`s keep working until dropped).
    ///
    /// # Errors
    /// [`FsError::NotFound`], [`FsError::Io`].
    pub fn remove(&self, id: &str) -> Result<()> {
        Err(FsError::NotFound(id.to_owned()))
    }
}
