//! Light shell command lines on the wasm route.
//!
//! `ls -la`, `cat data.csv | head -5 | wc -l` or `cd src; python3 main.py` need no container:
//! [`plan()`] parses the line with a real POSIX/bash parser and either returns a [`Script`] the
//! executor runs command by command as WebAssembly guests and builtins, or declines with a short
//! reason (`uses command substitution`, `uses program gcc`, ...) so the caller takes the container
//! route instead.
//!
//! ```
//! use hybox_wasi_runtime::shell::{self, ShellPlan};
//! let programs = |name: &str| matches!(name, "cat" | "head" | "wc");
//! assert!(matches!(shell::plan("cat data.csv | head -5 | wc -l", &programs), ShellPlan::Run(_)));
//! assert_eq!(
//!     shell::plan("gcc main.c", &programs),
//!     ShellPlan::Decline("uses program gcc".into())
//! );
//! ```

mod exec;
mod expand;
mod fs;
pub mod parse;
pub mod plan;
pub mod programs;

pub use exec::{ShellState, is_name, run_script};
pub use parse::{BUILTINS, plan};
pub use plan::*;
