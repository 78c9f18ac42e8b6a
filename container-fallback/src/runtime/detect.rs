//! What [`Runtime::detect`](super::Runtime::detect) checks: the runtime binary and its
//! version, the filesystems containers need, and how far the host lets limits go.

use std::fs;
use std::path::{Path, PathBuf};

use super::{CgroupMode, OciChoice, Result, RuntimeError, command, oci};

pub(super) fn choose(oci: &OciChoice, cgroup: CgroupMode) -> Result<(String, PathBuf)> {
    let named = |name: &str| {
        command::find(name)
            .map(|path| (name.to_owned(), path))
            .ok_or_else(|| RuntimeError::Unavailable(format!("{name} is not installed")))
    };
    match oci {
        OciChoice::Auto => {
            let order = if cgroup == CgroupMode::V2 {
                ["crun", "runc"]
            } else {
                ["runc", "crun"]
            };
            order
                .into_iter()
                .find_map(|name| named(name).ok())
                .ok_or_else(|| {
                    RuntimeError::Unavailable("no OCI runtime: install runc or crun".into())
                })
        }
        OciChoice::Runc => named("runc"),
        OciChoice::Crun => named("crun"),
        OciChoice::Path(path) => {
            if command::is_executable(path) {
                Ok((path.display().to_string(), path.clone()))
            } else {
                Err(RuntimeError::Unavailable(format!(
                    "{} is not an executable file",
                    path.display()
                )))
            }
        }
    }
}

pub(super) fn version_of(binary: &Path) -> Result<String> {
    let output = command::run(std::process::Command::new(binary).arg("--version"))
        .map_err(|e| RuntimeError::Unavailable(e.to_string()))?;
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned())
}

pub(super) fn require_filesystem(name: &str) -> Result<()> {
    let known = || {
        fs::read_to_string("/proc/filesystems")
            .is_ok_and(|t| t.lines().any(|l| l.split_whitespace().last() == Some(name)))
    };
    if known() {
        return Ok(());
    }
    let _ = command::run(command::tool("modprobe").arg(name));
    if known() {
        Ok(())
    } else {
        Err(RuntimeError::Unavailable(format!(
            "the kernel has no {name} filesystem (modprobe {name} did not help)"
        )))
    }
}

/// [`oci::NOFILE`], or the host's own hard limit when that is lower and cannot be raised
/// (runc fails to start a container whose rlimit exceeds what it may set).
pub(super) fn nofile_limit() -> u64 {
    let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .maximum
        .unwrap_or(u64::MAX);
    if hard >= oci::NOFILE || has_capability(CAP_SYS_RESOURCE) {
        oci::NOFILE
    } else {
        tracing::info!(hard, "open-files limit inside capped at the host's");
        hard
    }
}

const CAP_SYS_RESOURCE: u32 = 24;

fn has_capability(cap: u32) -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
            u64::from_str_radix(hex.trim(), 16).ok()
        })
        .is_some_and(|mask| mask & (1 << cap) != 0)
}
