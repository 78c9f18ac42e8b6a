//! hybox's host: the HTTP API (`hybox serve`), sandboxes and their lifecycle, the router that
//! sends each request to the wasm route or the container route, and the CLI verbs.
//!
//! Secure defaults: the API listens on loopback; listening anywhere else requires a bearer
//! token. Every file operation is confined to the sandbox's workspace (cap-std), every run has
//! a deadline, a memory cap and an output cap, and errors carry stable codes.
#![forbid(unsafe_code)]

pub mod api;
pub mod backend;
pub mod client;
pub mod commands;
pub mod files;
pub mod proxy;
pub mod router;
pub mod sandbox;
pub mod server;
pub mod snapshots;
pub mod timestamp;
pub mod typescript;
pub mod volumes;
pub mod watch;
pub mod workspaces;
