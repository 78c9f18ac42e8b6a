//! Errors for workspace file operations, each with a stable machine-readable code.
//!
//! Paths carried in errors are always guest paths (`/workspace/...`) or a sanitized echo of
//! the client's input, never host paths, so messages can be returned to clients as they are.

use std::io;

/// Result alias for workspace file operations.
pub type Result<T> = std::result::Result<T, FileError>;

/// Why a workspace file operation failed.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The path, or one of its parent directories, does not exist.
    #[error("file not found: {path}")]
    FileNotFound {
        /// Guest path that was looked up.
        path: String,
    },
    /// A non-directory was expected but the path names a directory.
    #[error("is a directory: {path}")]
    IsDirectory {
        /// Guest path that names a directory.
        path: String,
    },
    /// A directory was expected (possibly as a parent component) but something else was found.
    #[error("not a directory: {path}")]
    NotDirectory {
        /// Guest path involved.
        path: String,
    },
    /// The path, or a symlink met while resolving it, leads outside the workspace.
    #[error("path outside workspace: {path}")]
    PathOutsideWorkspace {
        /// Guest path (or sanitized input) that was refused.
        path: String,
    },
    /// The path is malformed or cannot be used for this operation.
    #[error("invalid path {path}: {reason}")]
    InvalidPath {
        /// Sanitized input or guest path.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Something already exists where a new entry was to be created.
    #[error("file exists: {path}")]
    FileExists {
        /// Guest path that already exists.
        path: String,
    },
    /// A directory could not be removed or replaced because it has entries.
    #[error("directory not empty: {path}")]
    DirectoryNotEmpty {
        /// Guest path of the directory.
        path: String,
    },
    /// The host refused access (file permissions), as opposed to a workspace escape.
    #[error("permission denied: {path}")]
    PermissionDenied {
        /// Guest path involved.
        path: String,
    },
    /// The file is larger than the caller's limit.
    #[error("file too large: {path} is at least {size} bytes, limit is {limit}")]
    FileTooLarge {
        /// Guest path of the file.
        path: String,
        /// Size seen (a lower bound if the file grew while being read).
        size: u64,
        /// The caller's limit in bytes.
        limit: u64,
    },
    /// A listing found more entries than the caller's limit.
    #[error("too many entries under {path}: more than {limit}")]
    TooManyEntries {
        /// Guest path of the listed directory.
        path: String,
        /// The caller's limit.
        limit: usize,
    },
    /// Any other I/O failure.
    #[error("i/o error on {path}")]
    Io {
        /// Guest path involved.
        path: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl FileError {
    /// Stable code for API responses; these strings are part of the wire contract.
    pub fn code(&self) -> &'static str {
        match self {
            FileError::FileNotFound { .. } => "FILE_NOT_FOUND",
            FileError::IsDirectory { .. } => "IS_DIRECTORY",
            FileError::NotDirectory { .. } => "NOT_DIRECTORY",
            FileError::PathOutsideWorkspace { .. } => "PATH_OUTSIDE_WORKSPACE",
            FileError::InvalidPath { .. } => "INVALID_PATH",
            FileError::FileExists { .. } => "FILE_EXISTS",
            FileError::DirectoryNotEmpty { .. } => "DIRECTORY_NOT_EMPTY",
            FileError::PermissionDenied { .. } => "PERMISSION_DENIED",
            FileError::FileTooLarge { .. } => "FILE_TOO_LARGE",
            FileError::TooManyEntries { .. } => "TOO_MANY_ENTRIES",
            FileError::Io { .. } => "IO_ERROR",
        }
    }

    /// Classifies an I/O error from a `cap-std` operation on `path` (a guest path).
    pub(crate) fn from_io(source: io::Error, path: impl Into<String>) -> Self {
        let path = path.into();
        if is_escape(&source) {
            return FileError::PathOutsideWorkspace { path };
        }
        match source.raw_os_error() {
            // Symlink loops (and cap-std refusing a symlink it will not follow) are
            // unresolvable links; to the client they are links we will not follow.
            Some(ELOOP) => return FileError::PathOutsideWorkspace { path },
            Some(ENAMETOOLONG) => {
                return FileError::InvalidPath {
                    path,
                    reason: "path is too long",
                };
            }
            _ => {}
        }
        match source.kind() {
            io::ErrorKind::NotFound => FileError::FileNotFound { path },
            io::ErrorKind::IsADirectory => FileError::IsDirectory { path },
            io::ErrorKind::NotADirectory => FileError::NotDirectory { path },
            io::ErrorKind::AlreadyExists => FileError::FileExists { path },
            io::ErrorKind::DirectoryNotEmpty => FileError::DirectoryNotEmpty { path },
            io::ErrorKind::PermissionDenied => FileError::PermissionDenied { path },
            _ => FileError::Io { path, source },
        }
    }
}

#[cfg(target_os = "linux")]
const ELOOP: i32 = 40;
#[cfg(target_os = "linux")]
const ENAMETOOLONG: i32 = 36;
#[cfg(not(target_os = "linux"))]
const ELOOP: i32 = 62;
#[cfg(not(target_os = "linux"))]
const ENAMETOOLONG: i32 = 63;

/// Whether `err` is cap-std refusing to let a path leave its directory.
///
/// cap-std has no dedicated error kind for this: it returns a synthetic `PermissionDenied`
/// ("a path led outside of the filesystem"), translating the kernel's `EXDEV` from
/// `openat2(RESOLVE_BENEATH)` into it. A real `EACCES` carries an OS errno, so requiring the
/// error to be synthetic keeps genuine permission problems classified as such.
fn is_escape(err: &io::Error) -> bool {
    if err.kind() != io::ErrorKind::PermissionDenied || err.raw_os_error().is_some() {
        return false;
    }
    let msg = err.to_string().to_ascii_lowercase();
    msg.contains("outside") || msg.contains("escape")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_os_errors() {
        let code = |e: io::Error| FileError::from_io(e, "/workspace/x").code();
        assert_eq!(
            code(io::Error::from_raw_os_error(ELOOP)),
            "PATH_OUTSIDE_WORKSPACE"
        );
        assert_eq!(
            code(io::Error::from_raw_os_error(ENAMETOOLONG)),
            "INVALID_PATH"
        );
        assert_eq!(code(io::ErrorKind::NotFound.into()), "FILE_NOT_FOUND");
        assert_eq!(code(io::ErrorKind::IsADirectory.into()), "IS_DIRECTORY");
        assert_eq!(code(io::ErrorKind::NotADirectory.into()), "NOT_DIRECTORY");
        assert_eq!(code(io::ErrorKind::AlreadyExists.into()), "FILE_EXISTS");
        assert_eq!(
            code(io::ErrorKind::DirectoryNotEmpty.into()),
            "DIRECTORY_NOT_EMPTY"
        );
        assert_eq!(code(io::ErrorKind::Other.into()), "IO_ERROR");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn classify_linux_errnos() {
        let code = |n| FileError::from_io(io::Error::from_raw_os_error(n), "/workspace/x").code();
        assert_eq!(code(2), "FILE_NOT_FOUND");
        assert_eq!(code(13), "PERMISSION_DENIED");
        assert_eq!(code(17), "FILE_EXISTS");
        assert_eq!(code(20), "NOT_DIRECTORY");
        assert_eq!(code(21), "IS_DIRECTORY");
        assert_eq!(code(39), "DIRECTORY_NOT_EMPTY");
    }

    #[test]
    fn escape_needs_synthetic_permission_error() {
        let escape = io::Error::new(
            io::ErrorKind::PermissionDenied,
            "a path led outside of the filesystem",
        );
        assert_eq!(
            FileError::from_io(escape, "p").code(),
            "PATH_OUTSIDE_WORKSPACE"
        );
        let other = io::Error::other("outside");
        assert_eq!(FileError::from_io(other, "p").code(), "IO_ERROR");
        let plain = io::Error::new(io::ErrorKind::PermissionDenied, "nope");
        assert_eq!(FileError::from_io(plain, "p").code(), "PERMISSION_DENIED");
    }

    #[test]
    fn messages_are_lowercase_and_keep_source() {
        let err = FileError::from_io(io::Error::other("disk on fire"), "/workspace/f");
        assert_eq!(err.to_string(), "i/o error on /workspace/f");
        let source = std::error::Error::source(&err).map(ToString::to_string);
        assert_eq!(source.as_deref(), Some("disk on fire"));
        let too_large = FileError::FileTooLarge {
            path: "/workspace/f".into(),
            size: 10,
            limit: 5,
        };
        assert!(too_large.to_string().starts_with("file too large"));
    }
}
