//! The copy-on-write view and its FUSE mount.
//!
//! One FUSE mount (a [`Views`] namespace) serves many views: each top-level directory of the
//! mount is one view, a stack of read-only [`Layer`]s (top first) under one writable upper
//! directory. The host makes each sandbox workspace a view named after the sandbox, so the wasm
//! route preopens `<mount>/<id>` and the container route bind-mounts it.
//!
//! # Semantics
//! Like overlayfs with AUFS-style whiteouts: a name resolves in the upper directory first, then
//! in the layers top-down; `.wh.<name>` hides `<name>` below, `.wh..wh..opq` in a directory hides
//! everything below that directory (in the upper directory and inside layers alike). Names
//! starting with `.wh.` are never shown and cannot be created (`EPERM`).
//!
//! - **Copy-up** (on open for writing, truncate, chmod/chown/utimens, link, rename) copies the
//!   file (data, permissions, owner when running as root, mtime) to a temporary name in the upper
//!   directory and renames it into place, so a crash never leaves a half-copied file visible.
//!   Parent directories are copied up first, with their layer metadata.
//! - **Deletes** of names that exist in a layer leave a whiteout (written before the upper copy
//!   is removed). `mkdir` over a hidden name makes an opaque directory.
//! - **rename** never fails with `EXDEV` inside a view. A directory with nothing in the layers
//!   is renamed in the upper directory; a directory with layer content is rebuilt at the new name
//!   (upper files hard-linked, layer files copied: the cost is a copy of every layer file below
//!   it), swapped in atomically, and the old name is whited out. `RENAME_NOREPLACE` is
//!   supported; `RENAME_EXCHANGE` returns `EINVAL`. Renames between views return `EXDEV`; renames
//!   between view names at the mount root rename views.
//! - **Inodes** are numbered globally across views. A name keeps its inode number while the
//!   kernel knows it (the table is reference counted and shrinks on `forget`); a view root keeps
//!   its inode for the life of the view, across [`Views::replace`] and [`Views::rename`].
//! - **Caching**: nodes only in layers get a one-hour entry/attribute TTL and their files open
//!   with `FOPEN_KEEP_CACHE`; nodes in the upper directory get 30 seconds. Every change goes
//!   through the view and the kernel updates its caches for the inode it changed; after a
//!   copy-up the inode's cached attributes are invalidated, and `replace`/`remove`/`rename` of
//!   views invalidate the kernel's entries. The writeback cache is off, so the upper directory
//!   always holds every completed write.
//! - **Freezing** ([`Views::freeze`]) queues every change to the view (without holding a FUSE
//!   thread) until the guard drops; reads continue.
//! - **Events**: every successful change is reported to the [`EventSink`] (after the view's
//!   locks are released): `Create` for create/mknod/mkdir/symlink/link, `Modify` for writes,
//!   truncate and attribute changes, `Delete`, `Rename`. Writes through one open file report
//!   `Modify` at once, then at most once a second, and once more at flush/close if written
//!   since.
//! - **Not supported**: `RENAME_EXCHANGE`/`RENAME_WHITEOUT` (`EINVAL`), extended attributes
//!   (`ENOSYS`), file locks are local to the kernel. Hard links inside a layer are broken by
//!   copy-up; layer directories report a link count of 1.
//!
//! Copy-up uses temporary names `.wh..wh.tmp.<pid>.<n>` in the upper directory; a crash can
//! leave one behind. They are hidden like every `.wh.` name; whoever squashes an upper
//! directory should skip `.wh..wh.*` names other than the opaque marker.
//!
//! Only host-side snapshot code may take a freeze; FUSE handlers never block on anything but
//! short internal locks and the per-view namespace lock (held while another handler copies or
//! renames in the same view), so the process serving the mount can also use it.

mod dirlayer;
mod freeze;
mod fuse;
mod merge;
mod mount;
mod ops;
mod table;
mod upper;

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use dirlayer::DirLayer;
pub use mount::{cleanup_stale_mounts, probe};

use crate::events::EventSink;
use crate::node::Layer;
use crate::{FsError, Result};
use freeze::FreezeCell;
use merge::SpecState;
use table::{ROOT, Table, ViewEntry};

/// What a view is made of.
#[derive(Debug, Clone)]
pub struct ViewSpec {
    /// The writable upper directory (created if missing). Holds copied-up and new files and
    /// whiteouts; must be on a local filesystem that is not inside the mount.
    pub upper: PathBuf,
    /// Read-only layers, top first. May be empty (then the view is just the upper dir).
    pub layers: Vec<Arc<dyn Layer>>,
    /// Refuse every change with `EROFS`.
    pub read_only: bool,
}

/// A kernel cache invalidation.
#[derive(Debug)]
pub(crate) enum Inval {
    /// The entry `name` in directory inode `parent`.
    Entry(u64, OsString),
    /// The attributes of an inode.
    Inode(u64),
}

/// A batch of invalidations for the notifier thread.
pub(crate) struct NotifyMsg {
    pub(crate) invals: Vec<Inval>,
    pub(crate) done: Option<mpsc::Sender<()>>,
}

/// The link from a [`Views`] to its live mount.
pub(crate) struct Link {
    pub(crate) tx: mpsc::Sender<NotifyMsg>,
    pub(crate) id: u64,
    /// The mount's device number, to refuse upper directories inside the mount.
    pub(crate) dev: Option<u64>,
}

/// The set of views served by one FUSE mount.
pub struct Views {
    events: Arc<dyn EventSink>,
    table: Mutex<Table>,
    files: Mutex<HashMap<u64, Arc<ops::FileH>>>,
    dirs: Mutex<HashMap<u64, Arc<ops::DirH>>>,
    next_fh: AtomicU64,
    tmp_seq: AtomicU64,
    link: Mutex<Option<Link>>,
    root_user: bool,
    /// When set, every node is reported as owned by this (uid, gid).
    owner: Option<(u32, u32)>,
}

impl std::fmt::Debug for Views {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = self.lock();
        f.debug_struct("Views")
            .field("views", &t.names.keys().collect::<Vec<_>>())
            .field("inodes", &t.inodes.len())
            .finish_non_exhaustive()
    }
}

/// A live FUSE mount of a [`Views`] namespace. Dropping it unmounts (lazily if busy).
#[derive(Debug)]
pub struct Mount {
    path: PathBuf,
    inner: Option<mount::MountInner>,
}

impl Mount {
    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Unmounts now (detaching lazily if the mount is busy; the session is then aborted so its
    /// threads stop) and waits for the session threads.
    ///
    /// # Errors
    /// [`FsError::Io`] when the mount could not even be detached.
    pub fn unmount(mut self) -> Result<()> {
        match self.inner.take() {
            Some(inner) => inner.shutdown(&self.path),
            None => Ok(()),
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take()
            && let Err(e) = inner.shutdown(&self.path)
        {
            tracing::warn!(mount = %self.path.display(), error = %e, "unmount failed");
        }
    }
}

/// Blocks every change to one view while held (reads continue). Used to take a consistent
/// snapshot of its upper directory.
#[derive(Debug)]
pub struct FreezeGuard {
    cell: Arc<FreezeCell>,
}

impl Drop for FreezeGuard {
    fn drop(&mut self) {
        self.cell.thaw();
    }
}

fn check_view_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name == "."
        || name == ".."
        || name.contains('/')
        || name.contains('\0')
        || name.len() > 255
    {
        return Err(FsError::Invalid(format!("bad view name {name:?}")));
    }
    Ok(())
}

fn open_spec(spec: ViewSpec, mount_dev: Option<u64>) -> Result<Arc<SpecState>> {
    std::fs::create_dir_all(&spec.upper)
        .map_err(|e| FsError::io("creating the upper directory", &spec.upper, e))?;
    let fd = rustix::fs::open(
        &spec.upper,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| FsError::io("opening the upper directory", &spec.upper, e.into()))?;
    if let Some(dev) = mount_dev
        && rustix::fs::fstat(&fd).is_ok_and(|st| st.st_dev == dev)
    {
        // Serving it would make the daemon call into its own mount.
        return Err(FsError::Invalid(format!(
            "upper directory {} is inside the mount",
            spec.upper.display()
        )));
    }
    Ok(Arc::new(SpecState { spec, upper_fd: fd }))
}

impl Views {
    /// An empty namespace reporting changes to `events`.
    pub fn new(events: Arc<dyn EventSink>) -> Arc<Views> {
        Self::build(events, None)
    }

    /// An empty namespace whose every node is reported as owned by `uid`/`gid`, whatever the
    /// layers or the upper directory say; a `chown` to anyone else fails with `EPERM`. This is
    /// the rootfs of a rootless container, where the one mapped user (the one running the
    /// mount, root inside) must own the image's files as root owned them.
    pub fn new_owned(events: Arc<dyn EventSink>, uid: u32, gid: u32) -> Arc<Views> {
        Self::build(events, Some((uid, gid)))
    }

    fn build(events: Arc<dyn EventSink>, owner: Option<(u32, u32)>) -> Arc<Views> {
        Arc::new(Views {
            events,
            table: Mutex::new(Table::new()),
            files: Mutex::new(HashMap::new()),
            dirs: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            tmp_seq: AtomicU64::new(0),
            link: Mutex::new(None),
            root_user: rustix::process::geteuid().is_root(),
            owner,
        })
    }

    /// Mounts the namespace at `mountpoint` (created if missing; a stale mount left there by a
    /// crash is detached first) and serves it on background threads.
    ///
    /// # Errors
    /// [`FsError::FuseUnavailable`] when FUSE cannot be mounted here.
    pub fn mount(self: &Arc<Self>, mountpoint: &Path) -> Result<Mount> {
        self.do_mount(mountpoint)
    }

    /// `a` as the kernel is told it: with the namespace's owner when it has one.
    pub(crate) fn present(&self, mut a: fuser::FileAttr) -> fuser::FileAttr {
        if let Some((uid, gid)) = self.owner {
            a.uid = uid;
            a.gid = gid;
        }
        a
    }

    /// Whether every node is reported as owned by one user.
    pub(crate) fn owned(&self) -> bool {
        self.owner.is_some()
    }

    /// Whether a `chown` to `uid`/`gid` is refused outright (an owned namespace has one owner).
    pub(crate) fn chown_refused(&self, uid: Option<u32>, gid: Option<u32>) -> bool {
        self.owner
            .is_some_and(|(ou, og)| uid.is_some_and(|u| u != ou) || gid.is_some_and(|g| g != og))
    }

    /// Adds a view as the top-level directory `name` (a single path component).
    ///
    /// # Errors
    /// [`FsError::AlreadyExists`], [`FsError::Invalid`] for a bad name, [`FsError::Io`] when
    /// the upper directory cannot be created.
    pub fn insert(&self, name: &str, spec: ViewSpec) -> Result<()> {
        check_view_name(name)?;
        let state = open_spec(spec, self.mount_dev())?;
        let mut t = self.lock();
        if t.names.contains_key(name) {
            return Err(FsError::AlreadyExists(name.to_owned()));
        }
        let vid = t.new_view_id();
        let root = t.alloc(vid, ROOT, OsString::from(name), fuser::FileType::Directory);
        if let Some(i) = t.inodes.get_mut(&root) {
            i.pinned = true;
        }
        t.views.insert(
            vid,
            ViewEntry {
                name: name.to_owned(),
                root,
                spec: state,
                epoch: 0,
                freeze: Arc::new(FreezeCell::default()),
                structural: Arc::new(Mutex::new(())),
            },
        );
        t.names.insert(name.to_owned(), vid);
        Views::touch_root(&mut t);
        Ok(())
    }

    /// Replaces what view `name` is made of (restore): the directory keeps its inode, so open
    /// handles on the view root stay valid; the kernel's cached entries below it are dropped.
    /// Returns the old spec.
    ///
    /// Open files keep reading and writing what they had open. When the view is frozen, the
    /// kernel's entries are dropped asynchronously (a change blocked by the freeze may hold
    /// the directory lock the invalidation needs).
    ///
    /// # Errors
    /// [`FsError::NotFound`].
    pub fn replace(&self, name: &str, spec: ViewSpec) -> Result<ViewSpec> {
        let state = open_spec(spec, self.mount_dev())?;
        let (old, invals, frozen) = {
            let mut t = self.lock();
            let vid = *t
                .names
                .get(name)
                .ok_or_else(|| FsError::NotFound(name.to_owned()))?;
            let (root, frozen, old) = {
                let ve = t
                    .views
                    .get_mut(&vid)
                    .ok_or_else(|| FsError::NotFound(name.to_owned()))?;
                ve.epoch += 1;
                let old = std::mem::replace(&mut ve.spec, state);
                (ve.root, ve.freeze.is_frozen(), old)
            };
            let mut invals: Vec<Inval> = t
                .index
                .keys()
                .filter(|(p, _)| *p == root)
                .map(|(_, n)| Inval::Entry(root, n.clone()))
                .collect();
            invals.push(Inval::Inode(root));
            t.detach_view_contents(vid, root);
            if let Some(i) = t.inodes.get_mut(&root) {
                i.cache = None;
            }
            (old, invals, frozen)
        };
        self.notify(invals, !frozen);
        Ok(old.spec.clone())
    }

    /// Removes view `name` from the namespace and returns its spec (the upper dir is left on
    /// disk for the caller).
    ///
    /// # Errors
    /// [`FsError::NotFound`].
    pub fn remove(&self, name: &str) -> Result<ViewSpec> {
        let spec = {
            let mut t = self.lock();
            let vid = t
                .names
                .remove(name)
                .ok_or_else(|| FsError::NotFound(name.to_owned()))?;
            let ve = t
                .views
                .remove(&vid)
                .ok_or_else(|| FsError::NotFound(name.to_owned()))?;
            t.detach_view_contents(vid, ve.root);
            if let Some(i) = t.inodes.get_mut(&ve.root) {
                i.pinned = false;
                i.stale = true;
            }
            t.detach(ve.root);
            Views::touch_root(&mut t);
            ve.spec
        };
        self.notify(
            vec![Inval::Entry(ROOT, OsString::from(name)), Inval::Inode(ROOT)],
            true,
        );
        Ok(spec.spec.clone())
    }

    /// Renames view `from` to `to` (the view keeps its inode; the kernel cache is updated).
    ///
    /// # Errors
    /// [`FsError::NotFound`], [`FsError::AlreadyExists`], [`FsError::Invalid`].
    pub fn rename(&self, from: &str, to: &str) -> Result<()> {
        self.rename_view(from, to, true, true)
    }

    /// Renames a view; `notify` is false when called from a FUSE handler (the kernel updates
    /// its own cache then, and holds the root directory's lock).
    pub(crate) fn rename_view(
        &self,
        from: &str,
        to: &str,
        noreplace: bool,
        notify: bool,
    ) -> Result<()> {
        let _ = noreplace; // Views are never replaced by a rename.
        check_view_name(to)?;
        {
            let mut t = self.lock();
            let vid = *t
                .names
                .get(from)
                .ok_or_else(|| FsError::NotFound(from.to_owned()))?;
            if from == to {
                return Ok(());
            }
            if t.names.contains_key(to) {
                return Err(FsError::AlreadyExists(to.to_owned()));
            }
            t.names.remove(from);
            t.names.insert(to.to_owned(), vid);
            let root = match t.views.get_mut(&vid) {
                Some(ve) => {
                    ve.name = to.to_owned();
                    ve.root
                }
                None => return Err(FsError::NotFound(from.to_owned())),
            };
            t.move_name(
                root,
                (ROOT, OsString::from(from)),
                (ROOT, OsString::from(to)),
            );
            Views::touch_root(&mut t);
        }
        if notify {
            self.notify(
                vec![
                    Inval::Entry(ROOT, OsString::from(from)),
                    Inval::Entry(ROOT, OsString::from(to)),
                    Inval::Inode(ROOT),
                ],
                true,
            );
        }
        Ok(())
    }

    /// The spec of view `name`.
    pub fn spec(&self, name: &str) -> Option<ViewSpec> {
        let t = self.lock();
        let vid = t.names.get(name)?;
        t.views.get(vid).map(|v| v.spec.spec.clone())
    }

    /// The names of the views, sorted.
    pub fn names(&self) -> Vec<String> {
        self.lock().names.keys().cloned().collect()
    }

    /// Blocks changes to view `name` until the guard is dropped.
    ///
    /// Changes that arrive meanwhile are queued (they do not hold FUSE threads) and run in
    /// order once the last guard of the view is dropped. Reads continue, with one kernel
    /// caveat: while a create, unlink or rename in a directory is queued, the kernel holds that
    /// directory's lock, so listing it or looking up uncached names in it through the mount
    /// waits for the thaw. The thread holding the guard must therefore read the upper directory
    /// directly (not through the mount), and must not change the view through the mount.
    ///
    /// # Errors
    /// [`FsError::NotFound`].
    pub fn freeze(&self, name: &str) -> Result<FreezeGuard> {
        let cell = {
            let t = self.lock();
            let vid = t
                .names
                .get(name)
                .ok_or_else(|| FsError::NotFound(name.to_owned()))?;
            t.views
                .get(vid)
                .map(|v| v.freeze.clone())
                .ok_or_else(|| FsError::NotFound(name.to_owned()))?
        };
        cell.freeze();
        Ok(FreezeGuard { cell })
    }

    /// How many inodes the table holds (the kernel's references plus a bounded number of
    /// entries handed out by `readdir`). For tests and monitoring.
    pub fn inode_count(&self) -> usize {
        self.lock().inodes.len()
    }

    /// Sends kernel cache invalidations through the live mount, if any; waits for them (up to
    /// ten seconds) when `wait` is set.
    pub(crate) fn notify(&self, invals: Vec<Inval>, wait: bool) {
        let tx = self
            .link
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|l| l.tx.clone());
        let Some(tx) = tx else {
            return;
        };
        if wait {
            let (dtx, drx) = mpsc::channel();
            if tx
                .send(NotifyMsg {
                    invals,
                    done: Some(dtx),
                })
                .is_ok()
                && drx.recv_timeout(Duration::from_secs(10)).is_err()
            {
                tracing::warn!("kernel cache invalidation is taking long; not waiting");
            }
        } else {
            let _ = tx.send(NotifyMsg { invals, done: None });
        }
    }

    fn mount_dev(&self) -> Option<u64> {
        self.link
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .and_then(|l| l.dev)
    }

    /// Forgets the live mount `id` (it is being unmounted).
    pub(crate) fn unlink_mount(&self, id: u64) {
        let mut l = self.link.lock().unwrap_or_else(|p| p.into_inner());
        if l.as_ref().is_some_and(|l| l.id == id) {
            *l = None;
        }
    }
}
