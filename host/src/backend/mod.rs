//! Backends run what the router sends them. Each adapter says plainly when it cannot take a
//! request (like youki's executors), so the caller falls back or fails explicitly.

pub mod container;
pub mod wasi;

use serde::Serialize;

/// Where a request ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Route {
    /// In wasmtime.
    Wasi,
    /// In the sandbox's container.
    Container,
}
