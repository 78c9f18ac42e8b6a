//! The one `unsafe` operation of this crate: mapping a precompiled `.cwasm` as native code.

use std::path::Path;

use wasmtime::{Engine, Module};

use crate::error::{Error, Result};

/// Loads a `.cwasm` with `mmap` (no copy, page cache shared between processes).
///
/// # Errors
/// [`Error::Engine`] when wasmtime refuses the file (other version or settings, corrupt).
#[expect(
    unsafe_code,
    reason = "wasmtime's only API to load precompiled code is unsafe"
)]
pub(crate) fn deserialize(engine: &Engine, path: &Path) -> Result<Module> {
    // SAFETY: `deserialize_file` trusts the bytes to be wasmtime's own output. The file was
    // written by `Module::serialize` of an engine with the same version and settings (both are
    // in its name) into a 0700 folder that only hybox writes and no guest can reach (guests see
    // only their preopens). wasmtime still validates the header and refuses a version or
    // settings mismatch, which the caller handles by recompiling. The file is written to a
    // temporary name and renamed, so a concurrent writer never leaves a torn file in place.
    unsafe { Module::deserialize_file(engine, path) }.map_err(Error::engine)
}
