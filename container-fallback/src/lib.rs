//! The container route: everything the wasm guests cannot do runs in a full Ubuntu 24.04
//! container of the same sandbox.
//!
//! - [`image`]: the root filesystem as a squashfs image (built from a recipe by mmdebstrap, or
//!   imported from a directory or an OCI image tarball), content-addressed with a manifest.
//! - [`runtime`]: a real OCI runtime (runc or crun) drives one container per sandbox: the image
//!   read-only under a private writable layer, `/workspace` bind-mounted from the sandbox's
//!   workspace, its own namespaces, cgroup limits, no network unless asked.
//! - [`agent`]: our small static supervisor inside the container (PID 1), and the host's client
//!   for it over a unix socket: commands, background processes and their logs, PTYs, ports.
//! - [`shell`]: how a session's state (cwd, variables, functions) crosses into a container
//!   command and back, so a session is one shell whichever route runs its commands.
//!
//! Nothing here depends on the host crate.

pub mod agent;
pub mod image;
pub mod runtime;
pub mod shell;
