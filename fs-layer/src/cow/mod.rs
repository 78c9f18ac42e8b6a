//! The copy-on-write view and its FUSE mount.
//!
//! One FUSE mount (a [`Views`] namespace) serves many views: each top-level directory of the
//! mount is one view, a stack of read-only [`Layer`]s (top first) under one writable upper
//! directory. The host makes each sandbox workspace a view named after the sandbox, so the wasm
//! route preopens `<mount>/<id>` and the container route bind-mounts it.
//!
//! OWNER: cow helper. Signatures here are the contract other modules use.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::events::EventSink;
use crate::node::Layer;
use crate::{FsError, Result};

/// What a view is made of.
#[derive(Debug, Clone)]
pub struct ViewSpec {
    /// The writable upper directory (created if missing). Holds copied-up and new files and
    /// whiteouts; must be on a local filesystem that is not inside the mount.
    pub upper: PathBuf,
    /// Read-only layers, top first. May be empty (then the view is just the upper dir).
    pub layers: Vec<Arc<dyn Layer>>,
    /// Refuse every change with `EROFS`.
    pub read_only: bool,
}

/// The set of views served by one FUSE mount.
#[derive(Debug)]
pub struct Views {
    events: Arc<dyn EventSink>,
}

/// A live FUSE mount of a [`Views`] namespace. Dropping it unmounts (lazily if busy).
#[derive(Debug)]
pub struct Mount {
    path: PathBuf,
}

impl Mount {
    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Blocks every change to one view while held (reads continue). Used to take a consistent
/// snapshot of its upper directory.
#[derive(Debug)]
pub struct FreezeGuard {
    _private: (),
}

impl Views {
    /// An empty namespace reporting changes to `events`.
    pub fn new(events: Arc<dyn EventSink>) -> Arc<Views> {
        Arc::new(Views { events })
    }

    /// Mounts the namespace at `mountpoint` (created if missing; a stale mount left there by a
    /// crash is detached first) and serves it on background threads.
    ///
    /// # Errors
    /// [`FsError::FuseUnavailable`] when FUSE cannot be mounted here.
    pub fn mount(self: &Arc<Self>, mountpoint: &Path) -> Result<Mount> {
        let _ = &self.events;
        Err(FsError::FuseUnavailable(format!(
            "not yet implemented ({})",
            mountpoint.display()
        )))
    }

    /// Adds a view as the top-level directory `name` (a single path component).
    ///
    /// # Errors
    /// [`FsError::AlreadyExists`], [`FsError::Invalid`] for a bad name, [`FsError::Io`] when
    /// the upper directory cannot be created.
    pub fn insert(&self, name: &str, spec: ViewSpec) -> Result<()> {
        let _ = (name, spec);
        Err(FsError::Invalid("not yet implemented".into()))
    }

    /// Replaces what view `name` is made of (restore): the directory keeps its inode, so open
    /// handles on the view root stay valid; the kernel's cached entries below it are dropped.
    /// Returns the old spec.
    ///
    /// # Errors
    /// [`FsError::NotFound`].
    pub fn replace(&self, name: &str, spec: ViewSpec) -> Result<ViewSpec> {
        let _ = (name, spec);
        Err(FsError::NotFound(name.to_owned()))
    }

    /// Removes view `name` from the namespace and returns its spec (the upper dir is left on
    /// disk for the caller).
    ///
    /// # Errors
    /// [`FsError::NotFound`].
    pub fn remove(&self, name: &str) -> Result<ViewSpec> {
        Err(FsError::NotFound(name.to_owned()))
    }

    /// Renames view `from` to `to` (the view keeps its inode; the kernel cache is updated).
    ///
    /// # Errors
    /// [`FsError::NotFound`], [`FsError::AlreadyExists`], [`FsError::Invalid`].
    pub fn rename(&self, from: &str, to: &str) -> Result<()> {
        Err(FsError::NotFound(format!("{from} -> {to}")))
    }

    /// The spec of view `name`.
    pub fn spec(&self, name: &str) -> Option<ViewSpec> {
        let _ = name;
        None
    }

    /// Blocks changes to view `name` until the guard is dropped.
    ///
    /// # Errors
    /// [`FsError::NotFound`].
    pub fn freeze(&self, name: &str) -> Result<FreezeGuard> {
        Err(FsError::NotFound(name.to_owned()))
    }
}

/// Detaches every FUSE mount at or below `under` (left behind by a crashed process). Returns how
/// many were detached.
///
/// # Errors
/// [`FsError::Io`] when `/proc/self/mountinfo` cannot be read.
pub fn cleanup_stale_mounts(under: &Path) -> Result<usize> {
    let _ = under;
    Ok(0)
}

/// Whether this process can mount FUSE; `Err` says why not.
///
/// # Errors
/// A human-readable reason.
pub fn probe() -> std::result::Result<(), String> {
    Err("not yet implemented".into())
}
