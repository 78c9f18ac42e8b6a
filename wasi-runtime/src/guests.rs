//! The guest-side sources hybox injects: the Python shim and the JavaScript driver.

/// Installed by the first turn of every Python instance.
pub const PYTHON_SHIM: &str = include_str!("guests/python_shim.py");
/// Evaluated by `qjs_init_argv` in every JavaScript context.
pub const JS_DRIVER: &str = include_str!("guests/js_driver.js");
