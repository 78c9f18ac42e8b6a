//! Containers without root: a user namespace mapping the container's root to the user running
//! hybox, and the image served as the rootfs by fs-layer's FUSE view instead of a loop mount
//! and an overlay (neither of which a user may mount).
//!
//! - **Rootfs**: one FUSE mount at `<root>/.rootfs/`, a [`Views`] namespace whose every node is
//!   owned by this user (root inside); each container is one view: the image's squashfs as its
//!   read-only layer, `<root>/<id>/upper-view/` as its writable layer (kept across stops, like
//!   the overlay's `upper/` of a privileged container).
//! - **Limits**: cgroup limits where the host delegated a cgroup to this user (see
//!   [`delegated_parent`]); otherwise per-container rlimits: `RLIMIT_NPROC` (counted per user
//!   namespace, so it bounds the container's own processes) and `RLIMIT_AS` per process.
//! - **Network**: loopback only. NAT egress needs a veth pair in the host's namespace, which
//!   needs root.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hybox_fs_layer::cow::{Mount, ViewSpec, Views};
use hybox_fs_layer::events::NoEvents;
use hybox_fs_layer::image::Image;

use super::{CgroupMode, Result, RuntimeError};

/// The cgroup controllers whose limits a container gets.
const CONTROLLERS: [&str; 3] = ["memory", "pids", "cpu"];

/// What a rootless runtime has.
#[derive(Debug)]
pub(crate) struct Rootless {
    /// The user running hybox (root inside the container).
    pub(crate) uid: u32,
    /// Its group.
    pub(crate) gid: u32,
    /// The delegated cgroup containers go under (`/<parent>/<id>`), if any.
    pub(crate) cgroup_parent: Option<String>,
    views: Arc<Views>,
    /// Taken (and unmounted) on drop.
    mount: Option<Mount>,
}

impl Rootless {
    /// Checks what rootless containers need (user namespaces, FUSE) and mounts the rootfs
    /// namespace at `<root>/.rootfs`.
    pub(crate) fn open(root: &Path, cgroup: CgroupMode) -> Result<Self> {
        let max_ns = fs::read_to_string("/proc/sys/user/max_user_namespaces")
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
            .unwrap_or(0);
        if max_ns == 0 {
            return Err(RuntimeError::Unavailable(
                "not root, and user namespaces are disabled (user.max_user_namespaces = 0)".into(),
            ));
        }
        hybox_fs_layer::cow::probe().map_err(|why| {
            RuntimeError::Unavailable(format!(
                "not root, and the rootfs needs a FUSE mount: {why}"
            ))
        })?;
        let uid = rustix::process::geteuid().as_raw();
        let gid = rustix::process::getegid().as_raw();
        let cgroup_parent = delegated_parent(cgroup, uid);
        let views = Views::new_owned(Arc::new(NoEvents), uid, gid);
        let at = root.join(".rootfs");
        let mount = views.mount(&at).map_err(|e| {
            RuntimeError::Unavailable(format!(
                "mounting the rootfs views at {}: {e}",
                at.display()
            ))
        })?;
        tracing::info!(
            uid,
            cgroup_parent = cgroup_parent.as_deref().unwrap_or("none: rlimits only"),
            rootfs = %at.display(),
            "rootless containers"
        );
        Ok(Self {
            uid,
            gid,
            cgroup_parent,
            views,
            mount: Some(mount),
        })
    }

    /// The rootfs of container `id`: the image under `upper` as the view `id`.
    pub(crate) fn attach(&self, id: &str, image: &Path, upper: &Path) -> Result<PathBuf> {
        let Some(mount) = self.mount.as_ref() else {
            return Err(RuntimeError::Failed("the rootfs mount is gone".into()));
        };
        if self.views.spec(id).is_some() {
            let _ = self.views.remove(id);
        }
        let layer = Image::open(image)
            .map_err(|e| RuntimeError::Failed(format!("image {}: {e}", image.display())))?;
        self.views
            .insert(
                id,
                ViewSpec {
                    upper: upper.to_path_buf(),
                    layers: vec![layer],
                    read_only: false,
                },
            )
            .map_err(|e| RuntimeError::Failed(format!("rootfs view of {id}: {e}")))?;
        Ok(mount.path().join(id))
    }

    /// Removes the view of `id` (after its container died); absent is fine.
    pub(crate) fn detach(&self, id: &str) {
        if self.views.spec(id).is_some()
            && let Err(e) = self.views.remove(id)
        {
            tracing::warn!(id, error = %e, "cannot remove the rootfs view");
        }
    }
}

impl Drop for Rootless {
    fn drop(&mut self) {
        if let Some(m) = self.mount.take()
            && let Err(e) = m.unmount()
        {
            tracing::warn!(error = %e, "unmounting the rootfs views failed");
        }
    }
}

/// The cgroup the host delegated to `uid`, if any: `$HYBOX_CGROUP_PARENT` or `hybox-<uid>`,
/// taken when this user may create cgroups in it for every limited controller (on cgroup v2,
/// also when those controllers are enabled for its children). `scripts/delegate-cgroups.sh`
/// makes one.
pub(crate) fn delegated_parent(cgroup: CgroupMode, uid: u32) -> Option<String> {
    let name = std::env::var("HYBOX_CGROUP_PARENT")
        .ok()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| format!("hybox-{uid}"));
    let name = name.trim_matches('/').to_owned();
    if name.is_empty()
        || name
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        tracing::warn!(name, "ignoring a malformed cgroup parent");
        return None;
    }
    let base = Path::new("/sys/fs/cgroup");
    let writable = |dir: &Path| rustix::fs::access(dir, rustix::fs::Access::WRITE_OK).is_ok();
    let ok = match cgroup {
        CgroupMode::V2 => {
            let dir = base.join(&name);
            let enabled =
                fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
            writable(&dir)
                && CONTROLLERS
                    .iter()
                    .all(|c| enabled.split_whitespace().any(|e| e == *c))
        }
        CgroupMode::V1 | CgroupMode::Hybrid => CONTROLLERS
            .iter()
            .all(|c| writable(&base.join(c).join(&name))),
    };
    ok.then_some(name)
}
