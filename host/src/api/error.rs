//! The API's one error type and its one mapping to HTTP: an exhaustive `match` with no
//! catch-all arm, so a new variant forces a decision about its status and code.

use http::StatusCode;
use serde_json::{Value, json};

use crate::files::FileError;
use hybox_wasi_runtime::Error as WasmError;

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request body or query is malformed or has unknown fields.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The body is larger than the server accepts.
    #[error("request body exceeds {limit} bytes")]
    PayloadTooLarge {
        /// The cap.
        limit: u64,
    },
    /// A bearer token is required and was missing or wrong.
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// No route matches the path.
    #[error("no route for {0}")]
    RouteNotFound(String),
    /// The route exists but not with this method.
    #[error("method {0} not allowed here")]
    MethodNotAllowed(String),
    /// A sandbox id breaks the id rules.
    #[error("invalid sandbox id {id:?}: {why}")]
    InvalidSandboxId {
        /// The id as given.
        id: String,
        /// Which rule it breaks.
        why: &'static str,
    },
    /// No sandbox has this id.
    #[error("sandbox {0} not found")]
    SandboxNotFound(String),
    /// A sandbox with this id already exists (fork or create-only calls).
    #[error("sandbox {0} already exists")]
    SandboxExists(String),
    /// No snapshot has this id.
    #[error("snapshot {0} not found")]
    SnapshotNotFound(String),
    /// No volume has this name.
    #[error("volume {0} not found")]
    VolumeNotFound(String),
    /// The volume is mounted by a sandbox.
    #[error("volume {name} is mounted by sandbox {sandbox}")]
    VolumeInUse {
        /// The volume.
        name: String,
        /// One sandbox using it.
        sandbox: String,
    },
    /// A snapshot image is truncated or corrupt.
    #[error("snapshot is corrupt: {0}")]
    SnapshotCorrupt(String),
    /// The feature needs what this server lacks (e.g. file watching without FUSE).
    #[error("{0}")]
    Unsupported(String),
    /// No session has this id in the sandbox.
    #[error("session {0} not found")]
    SessionNotFound(String),
    /// A session with this id already exists.
    #[error("session {0} already exists")]
    SessionExists(String),
    /// The session was deleted while the command ran.
    #[error("session {0} was destroyed while the command ran")]
    SessionDestroyed(String),
    /// No running command has this exec id.
    #[error("no running command with exec id {0}")]
    ExecNotFound(String),
    /// No code context has this id in the sandbox.
    #[error("context {0} not found")]
    ContextNotFound(String),
    /// The language is not one hybox runs.
    #[error("unsupported language {0:?} (python, javascript, typescript)")]
    UnsupportedLanguage(String),
    /// The command cannot run on any available route.
    #[error("{message}")]
    RouteUnavailable {
        /// Why the wasm route declined, in the planner's words (`uses program gcc`).
        route_reason: String,
        /// The whole explanation.
        message: String,
    },
    /// A file operation failed.
    #[error(transparent)]
    File(#[from] FileError),
    /// The run passed its deadline; what it produced so far is in `details`.
    #[error("execution timed out after {timeout_ms} ms")]
    Timeout {
        /// The deadline that was hit.
        timeout_ms: u64,
        /// Partial output.
        details: Value,
    },
    /// The run was cancelled (client gone or explicit cancel).
    #[error("execution was cancelled")]
    Cancelled {
        /// Partial output.
        details: Value,
    },
    /// The run printed more than the output cap.
    #[error("output exceeded {limit} bytes")]
    OutputLimit {
        /// The cap.
        limit: u64,
        /// Partial output.
        details: Value,
    },
    /// The guest hit its memory cap and could not go on.
    #[error("the guest exceeded its memory limit")]
    MemoryLimit {
        /// Partial output.
        details: Value,
    },
    /// The sandbox's container could not be started (image build, runtime, agent): why.
    #[error("the container is not ready: {0}")]
    ContainerNotReady(String),
    /// No background process has this id.
    #[error("process {0} not found")]
    ProcessNotFound(String),
    /// A background process with this id exists.
    #[error("process id {0} is already in use")]
    ProcessExists(String),
    /// The port cannot be exposed (out of range or reserved): why.
    #[error("{0}")]
    PortReserved(String),
    /// The port is exposed already (with another token).
    #[error("port {0} is already exposed")]
    PortAlreadyExposed(u16),
    /// The port is not exposed.
    #[error("port {0} is not exposed")]
    PortNotExposed(u16),
    /// Nothing in the container accepts connections on the previewed port.
    #[error("nothing listens on port {port} in the sandbox: {why}")]
    PortNotListening {
        /// The port.
        port: u16,
        /// What the connection attempt said.
        why: String,
    },
    /// A preview request for a port that is not exposed, or with a wrong token.
    #[error("invalid or missing preview token, or the port is not exposed")]
    InvalidToken,
    /// The wasm route is not ready (guest artifacts missing or still loading failed).
    #[error("the wasm route is unavailable: {0}")]
    RuntimeUnavailable(String),
    /// The wasm engine failed.
    #[error("wasm route error")]
    Wasm(#[source] WasmError),
    /// Anything else: a bug or an environment failure. Logged with its chain; clients get
    /// only the code.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    /// Stable code and HTTP status, decided in one place.
    #[must_use]
    pub fn code_and_status(&self) -> (&'static str, StatusCode) {
        match self {
            Self::InvalidRequest(_) => ("INVALID_REQUEST", StatusCode::BAD_REQUEST),
            Self::PayloadTooLarge { .. } => ("PAYLOAD_TOO_LARGE", StatusCode::PAYLOAD_TOO_LARGE),
            Self::Unauthorized => ("UNAUTHORIZED", StatusCode::UNAUTHORIZED),
            Self::RouteNotFound(_) => ("NOT_FOUND", StatusCode::NOT_FOUND),
            Self::MethodNotAllowed(_) => ("METHOD_NOT_ALLOWED", StatusCode::METHOD_NOT_ALLOWED),
            Self::InvalidSandboxId { .. } => ("INVALID_SANDBOX_ID", StatusCode::BAD_REQUEST),
            Self::SandboxNotFound(_) => ("SANDBOX_NOT_FOUND", StatusCode::NOT_FOUND),
            Self::SandboxExists(_) => ("SANDBOX_EXISTS", StatusCode::CONFLICT),
            Self::SnapshotNotFound(_) => ("SNAPSHOT_NOT_FOUND", StatusCode::NOT_FOUND),
            Self::VolumeNotFound(_) => ("VOLUME_NOT_FOUND", StatusCode::NOT_FOUND),
            Self::VolumeInUse { .. } => ("VOLUME_IN_USE", StatusCode::CONFLICT),
            Self::SnapshotCorrupt(_) => ("SNAPSHOT_CORRUPT", StatusCode::UNPROCESSABLE_ENTITY),
            Self::Unsupported(_) => ("UNSUPPORTED", StatusCode::NOT_IMPLEMENTED),
            Self::ContextNotFound(_) => ("CONTEXT_NOT_FOUND", StatusCode::NOT_FOUND),
            Self::SessionNotFound(_) => ("SESSION_NOT_FOUND", StatusCode::NOT_FOUND),
            Self::SessionExists(_) => ("SESSION_EXISTS", StatusCode::CONFLICT),
            Self::SessionDestroyed(_) => ("SESSION_DESTROYED", StatusCode::GONE),
            Self::ExecNotFound(_) => ("EXEC_NOT_FOUND", StatusCode::NOT_FOUND),
            Self::UnsupportedLanguage(_) => ("UNSUPPORTED_LANGUAGE", StatusCode::BAD_REQUEST),
            Self::RouteUnavailable { .. } => ("ROUTE_UNAVAILABLE", StatusCode::NOT_IMPLEMENTED),
            Self::File(e) => (e.code(), file_status(e)),
            Self::Timeout { .. } => ("TIMEOUT", StatusCode::REQUEST_TIMEOUT),
            Self::Cancelled { .. } => ("CANCELLED", StatusCode::CONFLICT),
            Self::OutputLimit { .. } => ("OUTPUT_LIMIT", StatusCode::PAYLOAD_TOO_LARGE),
            Self::MemoryLimit { .. } => ("MEMORY_LIMIT", StatusCode::INSUFFICIENT_STORAGE),
            Self::RuntimeUnavailable(_) => ("RUNTIME_UNAVAILABLE", StatusCode::SERVICE_UNAVAILABLE),
            Self::ContainerNotReady(_) => ("CONTAINER_NOT_READY", StatusCode::SERVICE_UNAVAILABLE),
            Self::ProcessNotFound(_) => ("PROCESS_NOT_FOUND", StatusCode::NOT_FOUND),
            Self::ProcessExists(_) => ("PROCESS_EXISTS", StatusCode::CONFLICT),
            Self::PortReserved(_) => ("PORT_RESERVED", StatusCode::BAD_REQUEST),
            Self::PortAlreadyExposed(_) => ("PORT_ALREADY_EXPOSED", StatusCode::CONFLICT),
            Self::PortNotExposed(_) => ("PORT_NOT_EXPOSED", StatusCode::NOT_FOUND),
            Self::InvalidToken => ("INVALID_TOKEN", StatusCode::NOT_FOUND),
            Self::PortNotListening { .. } => ("PORT_NOT_LISTENING", StatusCode::BAD_GATEWAY),
            Self::Wasm(e) => (e.code(), wasm_status(e)),
            Self::Internal(_) => ("INTERNAL", StatusCode::INTERNAL_SERVER_ERROR),
        }
    }

    /// The JSON body: `{code, message, details}`. A 5xx carries a generic message; the full
    /// chain is logged by the caller.
    #[must_use]
    pub fn body(&self) -> Value {
        let (code, status) = self.code_and_status();
        let message = if status.is_server_error()
            && !matches!(self, Self::Wasm(WasmError::Capacity(_)))
            && !matches!(
                self,
                Self::RouteUnavailable { .. }
                    | Self::Unsupported(_)
                    | Self::RuntimeUnavailable(_)
                    | Self::ContainerNotReady(_)
                    | Self::PortNotListening { .. }
                    | Self::MemoryLimit { .. }
            ) {
            "internal error; see the server log".to_owned()
        } else {
            self.to_string()
        };
        let details = match self {
            Self::Timeout { details, .. }
            | Self::Cancelled { details }
            | Self::OutputLimit { details, .. }
            | Self::MemoryLimit { details } => details.clone(),
            Self::RouteUnavailable { route_reason, .. } => json!({ "routeReason": route_reason }),
            Self::File(FileError::FileTooLarge { size, limit, .. }) => {
                json!({ "size": size, "limit": limit })
            }
            _ => Value::Null,
        };
        json!({ "code": code, "message": message, "details": details })
    }
}

fn file_status(e: &FileError) -> StatusCode {
    match e {
        FileError::FileNotFound { .. } => StatusCode::NOT_FOUND,
        FileError::IsDirectory { .. }
        | FileError::NotDirectory { .. }
        | FileError::FileExists { .. }
        | FileError::DirectoryNotEmpty { .. } => StatusCode::CONFLICT,
        FileError::PathOutsideWorkspace { .. } | FileError::PermissionDenied { .. } => {
            StatusCode::FORBIDDEN
        }
        FileError::InvalidPath { .. } => StatusCode::BAD_REQUEST,
        FileError::FileTooLarge { .. } | FileError::TooManyEntries { .. } => {
            StatusCode::PAYLOAD_TOO_LARGE
        }
        FileError::Io { .. } => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn wasm_status(e: &WasmError) -> StatusCode {
    match e {
        WasmError::ArtifactUnavailable { .. }
        | WasmError::ArtifactChecksum { .. }
        | WasmError::Manifest(_) => StatusCode::SERVICE_UNAVAILABLE,
        WasmError::Timeout { .. } => StatusCode::REQUEST_TIMEOUT,
        WasmError::Cancelled => StatusCode::CONFLICT,
        WasmError::MemoryLimit { .. } => StatusCode::INSUFFICIENT_STORAGE,
        WasmError::OutputLimit { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        WasmError::ContextGone => StatusCode::GONE,
        WasmError::Capacity(_) => StatusCode::SERVICE_UNAVAILABLE,
        WasmError::Engine(_)
        | WasmError::Trap(_)
        | WasmError::Protocol(_)
        | WasmError::Io { .. } => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<hybox_fs_layer::FsError> for ApiError {
    fn from(e: hybox_fs_layer::FsError) -> Self {
        use hybox_fs_layer::FsError;
        match e {
            FsError::Corrupt { image, reason } => {
                Self::SnapshotCorrupt(format!("image {image}: {reason}"))
            }
            FsError::Invalid(m) => Self::InvalidRequest(m),
            FsError::NotFound(what) => Self::SnapshotNotFound(what),
            e @ (FsError::AlreadyExists(_) | FsError::FuseUnavailable(_) | FsError::Io { .. }) => {
                Self::Internal(e.into())
            }
        }
    }
}

impl From<WasmError> for ApiError {
    fn from(e: WasmError) -> Self {
        Self::Wasm(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every variant has a code and a status; codes are SCREAMING_SNAKE and statuses are
    /// errors. The table lists one instance of each variant.
    #[test]
    fn every_variant_maps_to_a_code_and_an_error_status() {
        let io = || std::io::Error::other("x");
        let cases: Vec<(ApiError, &str, u16)> = vec![
            (ApiError::InvalidRequest("x".into()), "INVALID_REQUEST", 400),
            (
                ApiError::PayloadTooLarge { limit: 1 },
                "PAYLOAD_TOO_LARGE",
                413,
            ),
            (ApiError::Unauthorized, "UNAUTHORIZED", 401),
            (ApiError::RouteNotFound("/x".into()), "NOT_FOUND", 404),
            (
                ApiError::MethodNotAllowed("GET".into()),
                "METHOD_NOT_ALLOWED",
                405,
            ),
            (
                ApiError::InvalidSandboxId {
                    id: "A".into(),
                    why: "x",
                },
                "INVALID_SANDBOX_ID",
                400,
            ),
            (
                ApiError::SandboxNotFound("a".into()),
                "SANDBOX_NOT_FOUND",
                404,
            ),
            (
                ApiError::ContextNotFound("c".into()),
                "CONTEXT_NOT_FOUND",
                404,
            ),
            (ApiError::SandboxExists("a".into()), "SANDBOX_EXISTS", 409),
            (
                ApiError::SnapshotNotFound("s".into()),
                "SNAPSHOT_NOT_FOUND",
                404,
            ),
            (
                ApiError::SnapshotCorrupt("s".into()),
                "SNAPSHOT_CORRUPT",
                422,
            ),
            (ApiError::Unsupported("x".into()), "UNSUPPORTED", 501),
            (
                ApiError::VolumeNotFound("v".into()),
                "VOLUME_NOT_FOUND",
                404,
            ),
            (
                ApiError::VolumeInUse {
                    name: "v".into(),
                    sandbox: "s".into(),
                },
                "VOLUME_IN_USE",
                409,
            ),
            (
                ApiError::UnsupportedLanguage("r".into()),
                "UNSUPPORTED_LANGUAGE",
                400,
            ),
            (
                ApiError::RouteUnavailable {
                    route_reason: "x".into(),
                    message: "y".into(),
                },
                "ROUTE_UNAVAILABLE",
                501,
            ),
            (
                ApiError::File(FileError::FileNotFound {
                    path: "/workspace/a".into(),
                }),
                "FILE_NOT_FOUND",
                404,
            ),
            (
                ApiError::Timeout {
                    timeout_ms: 1,
                    details: Value::Null,
                },
                "TIMEOUT",
                408,
            ),
            (
                ApiError::Cancelled {
                    details: Value::Null,
                },
                "CANCELLED",
                409,
            ),
            (
                ApiError::OutputLimit {
                    limit: 1,
                    details: Value::Null,
                },
                "OUTPUT_LIMIT",
                413,
            ),
            (
                ApiError::MemoryLimit {
                    details: Value::Null,
                },
                "MEMORY_LIMIT",
                507,
            ),
            (
                ApiError::RuntimeUnavailable("x".into()),
                "RUNTIME_UNAVAILABLE",
                503,
            ),
            (
                ApiError::Wasm(WasmError::Trap("x".into())),
                "GUEST_TRAP",
                500,
            ),
            (
                ApiError::Wasm(WasmError::Io {
                    what: "x".into(),
                    source: io(),
                }),
                "IO_ERROR",
                500,
            ),
            (
                ApiError::Wasm(WasmError::Capacity("x".into())),
                "CAPACITY_EXHAUSTED",
                503,
            ),
            (
                ApiError::ContainerNotReady("x".into()),
                "CONTAINER_NOT_READY",
                503,
            ),
            (
                ApiError::ProcessNotFound("p".into()),
                "PROCESS_NOT_FOUND",
                404,
            ),
            (ApiError::ProcessExists("p".into()), "PROCESS_EXISTS", 409),
            (ApiError::PortReserved("x".into()), "PORT_RESERVED", 400),
            (
                ApiError::PortAlreadyExposed(8080),
                "PORT_ALREADY_EXPOSED",
                409,
            ),
            (ApiError::PortNotExposed(8080), "PORT_NOT_EXPOSED", 404),
            (ApiError::InvalidToken, "INVALID_TOKEN", 404),
            (
                ApiError::PortNotListening {
                    port: 8080,
                    why: "refused".into(),
                },
                "PORT_NOT_LISTENING",
                502,
            ),
            (ApiError::Internal(anyhow::anyhow!("boom")), "INTERNAL", 500),
        ];
        for (err, code, status) in cases {
            let (c, s) = err.code_and_status();
            assert_eq!((c, s.as_u16()), (code, status), "{err:?}");
            let body = err.body();
            assert_eq!(body["code"], code);
            if s.is_server_error() && code == "INTERNAL" {
                assert!(
                    !body["message"]
                        .as_str()
                        .unwrap_or_default()
                        .contains("boom")
                );
            }
        }
    }
}
