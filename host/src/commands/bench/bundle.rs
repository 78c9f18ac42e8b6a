//! The container scenarios' peers: `runc` and `crun` on an OCI bundle equivalent to a hybox
//! container's: the same squashfs image loop-mounted read-only under an overlay with an empty
//! writable layer, `/bin/true` in new pid, ipc, uts, mount and network namespaces.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use tokio::process::Command;

use super::fs::Unmount;
use super::peers::which;

/// An OCI runtime a peer runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Oci {
    /// `runc`.
    Runc,
    /// `crun`.
    Crun,
}

impl Oci {
    const fn name(self) -> &'static str {
        match self {
            Self::Runc => "runc",
            Self::Crun => "crun",
        }
    }
}

/// A mounted bundle; unmounted (overlay, then image) when dropped.
#[derive(Debug)]
pub(super) struct Bundle {
    /// `cold/`: a bundle whose process is `/bin/true`.
    cold: PathBuf,
    /// `warm/`: the same root, its process `sleep infinity` (the container `runc exec` enters).
    warm: PathBuf,
    // Field order is drop order: the overlay goes before the image under it.
    _rootfs: Unmount,
    _lower: Unmount,
}

/// Whether the host mixes cgroup v1 controllers with a cgroup2 `unified` mount (crun 1.8
/// refuses such a host).
fn hybrid_cgroups() -> bool {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let fstype = |at: &str| {
        mounts.lines().find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(1) == Some(&at)).then(|| f.get(2).copied().unwrap_or_default().to_owned())
        })
    };
    fstype("/sys/fs/cgroup").as_deref() != Some("cgroup2")
        && fstype("/sys/fs/cgroup/unified").as_deref() == Some("cgroup2")
}

/// A runtime's path, or why its peers are skipped.
///
/// # Errors
/// The skip reason.
pub(super) fn detect(oci: Oci) -> Result<PathBuf, String> {
    which(oci.name()).ok_or_else(|| format!("{} is not installed", oci.name()))
}

/// `--install-peers` for the container scenarios: `apt-get install -y runc crun` when one is
/// missing.
///
/// # Errors
/// Not root, or apt-get failed.
pub(super) async fn install() -> anyhow::Result<()> {
    if detect(Oci::Runc).is_ok() && detect(Oci::Crun).is_ok() {
        return Ok(());
    }
    let line = "apt-get install -y runc crun";
    if !super::fs::is_root() {
        bail!("not root: run `sudo {line}` for the container scenarios' peers");
    }
    eprintln!("hybox bench: {line}");
    setup("apt-get", &["install", "-y", "runc", "crun"]).await
}

/// The note a crun peer's description carries on a hybrid host.
pub(super) fn crun_note() -> &'static str {
    if hybrid_cgroups() {
        " This host mixes cgroup v1 and v2 (hybrid), which crun 1.8 refuses: the timed command \
         is `unshare -m sh -c 'umount /sys/fs/cgroup/unified && exec crun run ...'`, the \
         unshare, sh and umount included in the time."
    } else {
        ""
    }
}

/// The `config.json` of a bundle running `args` on `rootfs`: runc spec's default mounts, no
/// terminal, root, new pid, ipc, uts, mount and network namespaces.
fn config(rootfs: &Path, args: &[&str]) -> Value {
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": { "uid": 0, "gid": 0 },
            "args": args,
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "cwd": "/",
            "noNewPrivileges": true
        },
        "root": { "path": rootfs, "readonly": false },
        "hostname": "bench",
        "mounts": [
            { "destination": "/proc", "type": "proc", "source": "proc" },
            { "destination": "/dev", "type": "tmpfs", "source": "tmpfs",
              "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] },
            { "destination": "/dev/pts", "type": "devpts", "source": "devpts",
              "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"] },
            { "destination": "/dev/shm", "type": "tmpfs", "source": "shm",
              "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] },
            { "destination": "/sys", "type": "sysfs", "source": "sysfs",
              "options": ["nosuid", "noexec", "nodev", "ro"] }
        ],
        "linux": {
            "namespaces": [
                { "type": "pid" }, { "type": "ipc" }, { "type": "uts" },
                { "type": "mount" }, { "type": "network" }
            ],
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        }
    })
}

/// Runs a setup command to success (untimed).
async fn setup(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("run {program}"))?;
    if !out.status.success() {
        bail!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Mounts `image` read-only under an overlay in `dir` and writes the two bundles' configs.
///
/// # Errors
/// Not root, or a mount failed.
pub(super) async fn prepare(image: &Path, dir: &Path) -> anyhow::Result<Bundle> {
    if !super::fs::is_root() {
        bail!("not root: the bundle's loop and overlay mounts need root");
    }
    let path = |p: &Path| p.display().to_string();
    let [lower, upper, work, rootfs, cold, warm] =
        ["lower", "upper", "work", "rootfs", "cold", "warm"].map(|n| dir.join(n));
    for d in [&lower, &upper, &work, &rootfs, &cold, &warm] {
        std::fs::create_dir_all(d).with_context(|| format!("create {}", d.display()))?;
    }
    setup(
        "mount",
        &[
            "-t",
            "squashfs",
            "-o",
            "loop,ro",
            &path(image),
            &path(&lower),
        ],
    )
    .await?;
    let lower_guard = Unmount(lower.clone());
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        path(&lower),
        path(&upper),
        path(&work)
    );
    setup(
        "mount",
        &["-t", "overlay", "overlay", "-o", &options, &path(&rootfs)],
    )
    .await?;
    let rootfs_guard = Unmount(rootfs.clone());
    for (bundle, args) in [
        (&cold, &["/bin/true"][..]),
        (&warm, &["sleep", "infinity"][..]),
    ] {
        let text = serde_json::to_string_pretty(&config(&rootfs, args))?;
        std::fs::write(bundle.join("config.json"), text)?;
    }
    Ok(Bundle {
        cold,
        warm,
        _rootfs: rootfs_guard,
        _lower: lower_guard,
    })
}

/// The command that runs `oci`'s `args`: on a hybrid host crun runs in a private mount
/// namespace with the cgroup2 `unified` mount hidden.
fn command(oci: Oci, binary: &Path, args: &[&str]) -> Command {
    if oci == Oci::Crun && hybrid_cgroups() {
        let mut c = Command::new("unshare");
        c.args([
            "-m",
            "sh",
            "-c",
            "umount /sys/fs/cgroup/unified && exec \"$0\" \"$@\"",
        ])
        .arg(binary)
        .args(args);
        c
    } else {
        let mut c = Command::new(binary);
        c.args(args);
        c
    }
}

/// Runs a command to its exit, stdio on /dev/null but stderr kept for the error: the time.
async fn timed(mut c: Command, what: &str) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    let out = c
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .await
        .with_context(|| format!("spawn {what}"))?;
    let elapsed = t0.elapsed();
    if !out.status.success() {
        bail!(
            "`{what}` exited {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(elapsed)
}

impl Bundle {
    /// One cold run: `oci run --bundle cold/ id` (`/bin/true`), spawn to exit; the runtime
    /// deletes the container as it exits.
    ///
    /// # Errors
    /// Spawn failures or a failed exit.
    pub(super) async fn run(&self, oci: Oci, binary: &Path, id: &str) -> anyhow::Result<Duration> {
        let bundle = self.cold.display().to_string();
        let c = command(oci, binary, &["run", "--bundle", &bundle, id]);
        timed(c, &format!("{} run --bundle {bundle} {id}", oci.name())).await
    }

    /// Starts the warm container `id` detached (`runc run -d`), untimed.
    ///
    /// # Errors
    /// The runtime failed (an image without `sleep`, for one).
    pub(super) async fn start_warm(&self, binary: &Path, id: &str) -> anyhow::Result<()> {
        let bundle = self.warm.display().to_string();
        // The detached container inherits runc's stdio: a pipe would stay open as long as it
        // runs, so its stderr goes to a file read back on failure.
        let log = self.warm.join("runc-run.stderr");
        let stderr =
            std::fs::File::create(&log).with_context(|| format!("create {}", log.display()))?;
        let status = command(Oci::Runc, binary, &["run", "-d", "--bundle", &bundle, id])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .status()
            .await
            .context("spawn runc run -d")?;
        if !status.success() {
            bail!(
                "`runc run -d --bundle {bundle} {id}` exited {status}: {}",
                std::fs::read_to_string(&log).unwrap_or_default().trim()
            );
        }
        Ok(())
    }

    /// One warm run: `runc exec id /bin/true`, spawn to exit.
    ///
    /// # Errors
    /// Spawn failures or a failed exit.
    pub(super) async fn exec(binary: &Path, id: &str) -> anyhow::Result<Duration> {
        let c = command(Oci::Runc, binary, &["exec", id, "/bin/true"]);
        timed(c, &format!("runc exec {id} /bin/true")).await
    }

    /// Removes the warm container (`runc delete --force`), untimed, best effort.
    pub(super) async fn delete(binary: &Path, id: &str) {
        let _ = command(Oci::Runc, binary, &["delete", "--force", id])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_runs_the_args_in_new_namespaces() {
        let c = config(Path::new("/b/rootfs"), &["/bin/true"]);
        assert_eq!(c["process"]["args"], json!(["/bin/true"]));
        assert_eq!(c["process"]["terminal"], false);
        assert_eq!(c["root"]["path"], "/b/rootfs");
        let kinds: Vec<&str> = c["linux"]["namespaces"]
            .as_array()
            .expect("namespaces")
            .iter()
            .filter_map(|n| n["type"].as_str())
            .collect();
        assert_eq!(kinds, ["pid", "ipc", "uts", "mount", "network"]);
    }
}
