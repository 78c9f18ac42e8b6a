//! End-to-end tests: one binary, one module per area, each test against a real `hybox serve`.

mod code;
mod containers;
mod files;
mod openapi;
mod rootless;
mod sandboxes;
mod shell;
mod snapshots;
