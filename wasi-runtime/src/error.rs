//! The wasm route's errors. Each variant has a stable code the host maps to HTTP in one place.

use std::path::PathBuf;

/// Everything that can go wrong on the wasm route.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A guest artifact is not in the cache and could not be fetched.
    #[error("guest artifact {what} is unavailable: {why}")]
    ArtifactUnavailable {
        /// Which artifact (wheel or file).
        what: String,
        /// Why it could not be had.
        why: String,
    },
    /// A fetched or cached artifact does not match its pinned sha256.
    #[error("checksum mismatch for {path}: expected {expected}, got {actual}")]
    ArtifactChecksum {
        /// The file that was checked.
        path: PathBuf,
        /// The pinned sum.
        expected: String,
        /// The sum found.
        actual: String,
    },
    /// The artifacts manifest itself is malformed.
    #[error("guest manifest is invalid: {0}")]
    Manifest(String),
    /// wasmtime refused a configuration, module or instantiation.
    #[error("wasm engine error: {0}")]
    Engine(String),
    /// Every slot of the instance pool is taken by live guests.
    #[error("all guest slots are in use ({0}); delete idle contexts or raise the limit")]
    Capacity(String),
    /// The run passed its deadline and was stopped.
    #[error("execution timed out after {elapsed_ms} ms")]
    Timeout {
        /// How long it ran.
        elapsed_ms: u64,
    },
    /// The run was cancelled by its caller.
    #[error("execution was cancelled")]
    Cancelled,
    /// The guest tried to grow its memory past the cap.
    #[error("guest exceeded its memory limit of {limit} bytes")]
    MemoryLimit {
        /// The cap in bytes.
        limit: u64,
    },
    /// The guest wrote more than the output cap.
    #[error("guest output exceeded the limit of {limit} bytes")]
    OutputLimit {
        /// The cap in bytes.
        limit: u64,
    },
    /// The guest trapped (a crash of the interpreter, not an error in user code).
    #[error("guest trapped: {0}")]
    Trap(String),
    /// The context's guest is gone (it exited or was shut down).
    #[error("the context is no longer running")]
    ContextGone,
    /// A guest asked for something the route cannot give, or broke the protocol.
    #[error("guest protocol error: {0}")]
    Protocol(String),
    /// Local I/O failed (cache dir, pipes).
    #[error("i/o error on {what}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The stable code of this error.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::ArtifactUnavailable { .. } => "GUEST_UNAVAILABLE",
            Self::ArtifactChecksum { .. } => "GUEST_CHECKSUM",
            Self::Manifest(_) => "GUEST_MANIFEST",
            Self::Engine(_) => "ENGINE_ERROR",
            Self::Capacity(_) => "CAPACITY_EXHAUSTED",
            Self::Timeout { .. } => "TIMEOUT",
            Self::Cancelled => "CANCELLED",
            Self::MemoryLimit { .. } => "MEMORY_LIMIT",
            Self::OutputLimit { .. } => "OUTPUT_LIMIT",
            Self::Trap(_) => "GUEST_TRAP",
            Self::ContextGone => "CONTEXT_GONE",
            Self::Protocol(_) => "GUEST_PROTOCOL",
            Self::Io { .. } => "IO_ERROR",
        }
    }

    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }

    pub(crate) fn engine(e: impl std::fmt::Display) -> Self {
        Self::Engine(format!("{e:#}"))
    }
}

/// The wasm route's result type.
pub type Result<T> = std::result::Result<T, Error>;
