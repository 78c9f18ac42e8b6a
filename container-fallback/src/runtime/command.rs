//! The external commands the runtime drives (the OCI runtime, `mount`, `ip`, `iptables`): run
//! one, and turn its failure into [`RuntimeError::Failed`] naming the command line and its
//! stderr.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::{Result, RuntimeError};

/// How much of a failing command's stderr (or console log) goes into the error.
pub(crate) const ERROR_TAIL_BYTES: usize = 2048;

/// The command line as one string, for errors and logs.
pub(crate) fn describe(cmd: &Command) -> String {
    let mut line = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
}

/// The last [`ERROR_TAIL_BYTES`] of `bytes` as trimmed text.
pub(crate) fn tail(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(ERROR_TAIL_BYTES);
    String::from_utf8_lossy(&bytes[start..]).trim().to_owned()
}

/// Runs `cmd` (stdin from `/dev/null`) and returns its output, or
/// [`RuntimeError::Failed`] when it cannot start or exits unsuccessfully.
pub(crate) fn run(cmd: &mut Command) -> Result<Output> {
    let output = run_unchecked(cmd)?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(failed(cmd, &output))
    }
}

/// Runs `cmd` and returns its output whatever its exit status.
pub(crate) fn run_unchecked(cmd: &mut Command) -> Result<Output> {
    tracing::debug!(command = %describe(cmd), "running");
    cmd.stdin(Stdio::null())
        .output()
        .map_err(|e| RuntimeError::Failed(format!("{}: cannot run: {e}", describe(cmd))))
}

/// The error for a command that exited unsuccessfully.
pub(crate) fn failed(cmd: &Command, output: &Output) -> RuntimeError {
    let mut why = tail(&output.stderr);
    if why.is_empty() {
        why = tail(&output.stdout);
    }
    RuntimeError::Failed(format!("{}: {}: {why}", describe(cmd), output.status))
}

/// Runs `cmd` with `input` on its stdin, or [`RuntimeError::Failed`].
pub(crate) fn run_with_input(cmd: &mut Command, input: &[u8]) -> Result<Output> {
    use std::io::Write;
    tracing::debug!(command = %describe(cmd), "running");
    let line = describe(cmd);
    let cannot = |e: std::io::Error| RuntimeError::Failed(format!("{line}: cannot run: {e}"));
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(cannot)?;
    if let Some(mut stdin) = child.stdin.take() {
        // A command that exits early closes its stdin; its exit status tells why.
        let _ = stdin.write_all(input);
    }
    let output = child.wait_with_output().map_err(cannot)?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(failed(cmd, &output))
    }
}

/// Where tools are looked for besides `PATH` (a service's `PATH` often lacks the sbin dirs
/// where `runc`, `ip` and `iptables` live).
const FALLBACK_DIRS: [&str; 6] = [
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

/// The executable `name` in `PATH` or the usual system dirs.
pub(crate) fn find(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(FALLBACK_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

/// Whether `path` is an executable regular file.
pub(crate) fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A command for the system tool `name` (found as by [`find`], else left to `PATH`).
pub(crate) fn tool(name: &str) -> Command {
    Command::new(find(name).unwrap_or_else(|| PathBuf::from(name)))
}
