//! Errors of the fs layer, each with a stable code.

use std::path::PathBuf;

/// Result of fs-layer operations.
pub type Result<T> = std::result::Result<T, FsError>;

/// What went wrong in the fs layer.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// An image is truncated, corrupt, or not a squashfs image we can read. Never garbage data.
    #[error("snapshot image {image} is corrupt: {reason}")]
    Corrupt {
        /// The image (its id or file name; never a host path for client-facing use).
        image: String,
        /// What was found wrong.
        reason: String,
    },
    /// An image, view or path does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// A view or image with that name already exists.
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// Bad options (compression level, block size, view name...).
    #[error("invalid: {0}")]
    Invalid(String),
    /// FUSE cannot be used here (no `/dev/fuse`, no privilege to mount).
    #[error("FUSE unavailable: {0}")]
    FuseUnavailable(String),
    /// An I/O error on a host path.
    #[error("{what} ({path}): {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The host path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl FsError {
    /// The stable error code clients see.
    pub fn code(&self) -> &'static str {
        match self {
            FsError::Corrupt { .. } => "SNAPSHOT_CORRUPT",
            FsError::NotFound(_) => "NOT_FOUND",
            FsError::AlreadyExists(_) => "ALREADY_EXISTS",
            FsError::Invalid(_) => "INVALID_ARGUMENT",
            FsError::FuseUnavailable(_) => "FUSE_UNAVAILABLE",
            FsError::Io { .. } => "INTERNAL",
        }
    }

    /// Wraps an I/O error with what was being done and on which path.
    pub fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        FsError::Io {
            what,
            path: path.into(),
            source,
        }
    }
}
