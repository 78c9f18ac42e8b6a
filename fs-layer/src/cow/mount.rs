//! Mounting, unmounting, stale-mount cleanup and the FUSE probe.

use std::ffi::{CString, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fuser::{Config, INodeNo, MountOption, Notifier, SessionACL, SessionUnmounter};

use super::fuse::Fs;
use super::{Inval, Link, Mount, NotifyMsg, Views};
use crate::{FsError, Result};

/// Number of threads serving requests.
const THREADS: usize = 4;

/// State of a live mount.
pub(crate) struct MountInner {
    views: Arc<Views>,
    link_id: u64,
    unmounter: SessionUnmounter,
    session: Option<JoinHandle<std::io::Result<()>>>,
    notify: Option<JoinHandle<()>>,
    /// The fusectl connection id (the mount's anonymous device number).
    conn: Option<u64>,
}

impl std::fmt::Debug for MountInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MountInner")
            .field("conn", &self.conn)
            .finish_non_exhaustive()
    }
}

fn notify_loop(notifier: Notifier, rx: mpsc::Receiver<NotifyMsg>) {
    for msg in rx {
        for inval in msg.invals {
            let r = match &inval {
                Inval::Entry(parent, name) => notifier.inval_entry(INodeNo(*parent), name),
                Inval::Inode(ino) => notifier.inval_inode(INodeNo(*ino), -1, 0),
            };
            if let Err(e) = r {
                tracing::debug!(?inval, error = %e, "kernel cache invalidation failed");
            }
        }
        if let Some(done) = msg.done {
            let _ = done.send(());
        }
    }
}

/// Waits up to `limit` for a thread to finish.
fn wait_finished<T>(h: &JoinHandle<T>, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while !h.is_finished() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

fn cstring(p: &Path) -> std::io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL in path"))
}

/// `umount2(path, MNT_DETACH)`; without root, `fusermount3 -u -z` (which may unmount the
/// FUSE mounts of the user calling it).
fn detach(path: &Path) -> std::io::Result<()> {
    let c = cstring(path)?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call; umount2 does not
    // keep the pointer.
    let rc = unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    if rc == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() != Some(libc::EPERM) || rustix::process::geteuid().is_root() {
        return Err(err);
    }
    let out = std::process::Command::new(fusermount_bin())
        .args(["-u", "-z", "--"])
        .arg(path)
        .stdin(std::process::Stdio::null())
        .output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "fusermount3 -u: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// The setuid helper that mounts and unmounts FUSE for users other than root.
fn fusermount_bin() -> OsString {
    std::env::var_os("FUSERMOUNT_PATH").unwrap_or_else(|| "fusermount3".into())
}

/// Aborts a FUSE connection through fusectl (mounting fusectl if needed), so the session
/// threads stop even if the mount is still busy.
fn abort_connection(conn: u64) {
    let dir = Path::new("/sys/fs/fuse/connections");
    let abort = dir.join(conn.to_string()).join("abort");
    if !abort.exists()
        && dir.is_dir()
        && let (Ok(src), Ok(target), Ok(fstype)) = (
            CString::new("fusectl"),
            cstring(dir),
            CString::new("fusectl"),
        )
    {
        // SAFETY: all pointers are valid NUL-terminated strings that outlive the call; data
        // is null, which mount(2) accepts.
        let _ = unsafe {
            libc::mount(
                src.as_ptr(),
                target.as_ptr(),
                fstype.as_ptr(),
                0,
                std::ptr::null(),
            )
        };
    }
    if let Err(e) = std::fs::write(&abort, b"1") {
        tracing::warn!(conn, error = %e, "could not abort the FUSE connection");
    }
}

impl MountInner {
    pub(crate) fn shutdown(mut self, path: &Path) -> Result<()> {
        self.views.unlink_mount(self.link_id);
        let mut res = Ok(());
        if let Err(e) = self.unmounter.unmount() {
            tracing::debug!(error = %e, "unmount failed; detaching lazily");
            if let Err(e2) = detach(path) {
                res = Err(FsError::io("unmounting", path, e2));
            }
        }
        if let Some(h) = self.session.take() {
            let mut done = wait_finished(&h, Duration::from_secs(2));
            if !done && let Some(conn) = self.conn {
                abort_connection(conn);
                done = wait_finished(&h, Duration::from_secs(5));
            }
            if done {
                match h.join() {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::debug!(error = %e, "FUSE session ended with an error"),
                    Err(_) => tracing::error!("FUSE session thread panicked"),
                }
            } else {
                tracing::warn!(mount = %path.display(), "FUSE session threads did not stop; leaving them");
            }
        }
        if let Some(h) = self.notify.take()
            && wait_finished(&h, Duration::from_secs(2))
        {
            let _ = h.join();
        }
        // The kernel's references and open files died with the session.
        self.views.lock().reset_refs();
        self.views.files_lock().clear();
        self.views.dirs_lock().clear();
        res
    }
}

impl Views {
    pub(crate) fn do_mount(self: &Arc<Self>, mountpoint: &Path) -> Result<Mount> {
        probe().map_err(FsError::FuseUnavailable)?;
        if self
            .link
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
        {
            return Err(FsError::AlreadyExists(
                "this namespace is already mounted".into(),
            ));
        }
        let _ = cleanup_stale_mounts(mountpoint);
        std::fs::create_dir_all(mountpoint)
            .map_err(|e| FsError::io("creating the mount point", mountpoint, e))?;
        let path = mountpoint
            .canonicalize()
            .map_err(|e| FsError::io("resolving the mount point", mountpoint, e))?;
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName("hybox".into()),
            MountOption::Subtype("hybox".into()),
            MountOption::DefaultPermissions,
            MountOption::RW,
            MountOption::NoDev,
            MountOption::Exec,
        ];
        if rustix::process::geteuid().is_root() {
            // Containers run their programs as other users, some set-uid.
            config.mount_options.push(MountOption::Suid);
            config.acl = SessionACL::All;
        } else {
            // fusermount3 allows neither (`allow_other` needs `user_allow_other` in
            // /etc/fuse.conf); a rootless container's processes are this user anyway.
            config.acl = SessionACL::Owner;
        }
        config.n_threads = Some(THREADS);
        config.clone_fd = true;
        let fs = Fs { v: self.clone() };
        let mut session = fuser::Session::new(fs, &path, &config)
            .map_err(|e| FsError::FuseUnavailable(format!("mounting {}: {e}", path.display())))?;
        let notifier = session.notifier();
        let mut unmounter = session.unmount_callable();
        let (tx, rx) = mpsc::channel();
        let link_id = self
            .next_fh
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let notify = std::thread::Builder::new()
            .name("hybox-fuse-notify".into())
            .spawn(move || notify_loop(notifier, rx));
        let notify = match notify {
            Ok(h) => h,
            Err(e) => {
                let _ = unmounter.unmount();
                return Err(FsError::io("spawning a thread", &path, e));
            }
        };
        let dev = mount_dev(&path);
        *self.link.lock().unwrap_or_else(|p| p.into_inner()) = Some(Link {
            tx,
            id: link_id,
            dev: dev.map(|(ma, mi)| {
                rustix::fs::makedev(
                    u32::try_from(ma).unwrap_or(0),
                    u32::try_from(mi).unwrap_or(0),
                )
            }),
        });
        let session = std::thread::Builder::new()
            .name("hybox-fuse".into())
            .spawn(move || session.run());
        let session = match session {
            Ok(h) => h,
            Err(e) => {
                self.unlink_mount(link_id);
                let _ = unmounter.unmount();
                return Err(FsError::io("spawning a thread", &path, e));
            }
        };
        // The fusectl connection id is the kernel's encoding of the device number.
        let conn = dev.map(|(ma, mi)| (ma << 20) | mi);
        Ok(Mount {
            path,
            inner: Some(MountInner {
                views: self.clone(),
                link_id,
                unmounter,
                session: Some(session),
                notify: Some(notify),
                conn,
            }),
        })
    }
}

/// One line of `/proc/self/mountinfo`.
struct MountEntry {
    dev: (u64, u64),
    point: PathBuf,
    fstype: String,
}

fn unescape(field: &[u8]) -> OsString {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\'
            && i + 3 < field.len()
            && field[i + 1..i + 4]
                .iter()
                .all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (u32::from(field[i + 1] - b'0') << 6)
                | (u32::from(field[i + 2] - b'0') << 3)
                | u32::from(field[i + 3] - b'0');
            out.push(v as u8);
            i += 4;
        } else {
            out.push(field[i]);
            i += 1;
        }
    }
    OsString::from_vec(out)
}

fn mountinfo() -> std::io::Result<Vec<MountEntry>> {
    let data = std::fs::read("/proc/self/mountinfo")?;
    let mut out = Vec::new();
    for line in data.split(|b| *b == b'\n') {
        let fields: Vec<&[u8]> = line.split(|b| *b == b' ').collect();
        if fields.len() < 7 {
            continue;
        }
        let Some(sep) = fields.iter().position(|f| *f == b"-") else {
            continue;
        };
        let Some(fstype) = fields.get(sep + 1) else {
            continue;
        };
        let dev = std::str::from_utf8(fields[2])
            .ok()
            .and_then(|d| d.split_once(':'))
            .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
            .unwrap_or((0, 0));
        out.push(MountEntry {
            dev,
            point: PathBuf::from(unescape(fields[4])),
            fstype: String::from_utf8_lossy(fstype).into_owned(),
        });
    }
    Ok(out)
}

/// The device number (major, minor) of the FUSE mount at `path`.
fn mount_dev(path: &Path) -> Option<(u64, u64)> {
    let entries = mountinfo().ok()?;
    let e = entries
        .iter()
        .rev()
        .find(|e| e.point == path && e.fstype.starts_with("fuse"))?;
    Some(e.dev)
}

/// `under` made absolute and normalized without touching a (possibly dead) mount.
fn absolute(under: &Path) -> PathBuf {
    if let Ok(p) = under.canonicalize() {
        return p;
    }
    let abs = if under.is_absolute() {
        under.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(under)
    };
    let mut out = PathBuf::new();
    for c in abs.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    if let (Some(parent), Some(name)) = (out.parent(), out.file_name())
        && let Ok(p) = parent.canonicalize()
    {
        return p.join(name);
    }
    out
}

pub(crate) fn cleanup(under: &Path) -> Result<usize> {
    let under = absolute(under);
    let entries =
        mountinfo().map_err(|e| FsError::io("reading mountinfo", "/proc/self/mountinfo", e))?;
    let mut targets: Vec<PathBuf> = entries
        .into_iter()
        .filter(|e| e.fstype.starts_with("fuse") && e.fstype != "fusectl")
        .filter(|e| e.point.starts_with(&under))
        .map(|e| e.point)
        .collect();
    targets.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    targets.dedup();
    let mut n = 0;
    for t in targets {
        match detach(&t) {
            Ok(()) => n += 1,
            Err(e) => {
                tracing::warn!(mount = %t.display(), error = %e, "could not detach a stale mount")
            }
        }
    }
    Ok(n)
}

/// Detaches every FUSE mount at or below `under` (left behind by a crashed process). Returns how
/// many were detached.
///
/// # Errors
/// [`FsError::Io`] when `/proc/self/mountinfo` cannot be read.
pub fn cleanup_stale_mounts(under: &Path) -> Result<usize> {
    cleanup(under)
}

fn find_in_path(bin: &str) -> bool {
    if let Some(p) = std::env::var_os("FUSERMOUNT_PATH")
        && Path::new(&p).exists()
    {
        return true;
    }
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(bin).is_file()))
}

/// Whether this process can mount FUSE; `Err` says why not. `HYBOX_NO_FUSE=1` forces `Err`.
///
/// # Errors
/// A human-readable reason.
pub fn probe() -> std::result::Result<(), String> {
    if std::env::var_os("HYBOX_NO_FUSE").is_some_and(|v| !v.is_empty() && v != "0") {
        return Err("disabled by HYBOX_NO_FUSE".into());
    }
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
    {
        return Err(format!("cannot open /dev/fuse: {e}"));
    }
    if rustix::process::geteuid().is_root() || find_in_path("fusermount3") {
        Ok(())
    } else {
        Err("not root and no fusermount3 in PATH".into())
    }
}
