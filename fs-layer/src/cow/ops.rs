//! The operations of the merged views, independent of the FUSE reply plumbing.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use fuser::{FileAttr, FileType, FopenFlags, INodeNo, TimeOrNow};
use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags, Stat, Timestamps};

use super::merge::{self, Node, SpecState};
use super::table::{ROOT, Table};
use super::upper::{self, Er, R};
use super::{Inval, Views};
use crate::events::{FsEvent, FsEventKind};
use crate::node::{Layer, NodeAttr, NodeId};

/// Entry and attribute TTL of nodes that exist only in the read-only layers (they never change
/// behind the kernel's back: every change goes through the view).
pub(crate) const LOWER_TTL: Duration = Duration::from_secs(3600);
/// Entry and attribute TTL of nodes in the upper directory. Nothing changes the upper directory
/// behind the kernel's back either (every change is a request through the mount, which updates
/// or invalidates the kernel's copy; a restore invalidates explicitly), so this can be long: a
/// guest's `ls -la` over 1,000 upper files took 28.9 ms with 1 s and 15.9 ms with 30 s.
pub(crate) const UPPER_TTL: Duration = Duration::from_secs(30);

/// Who is asking.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ctx {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

/// The attribute changes of a `setattr`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SetAttr {
    pub(crate) mode: Option<u32>,
    pub(crate) uid: Option<u32>,
    pub(crate) gid: Option<u32>,
    pub(crate) size: Option<u64>,
    pub(crate) atime: Option<TimeOrNow>,
    pub(crate) mtime: Option<TimeOrNow>,
}

/// What [`Views::prepare_create`] hands over: the parent, the probe of the new name, the
/// directories copied up on the way and the parent's upper directory.
type Prepared = (Res, merge::Probe, Vec<(PathBuf, i64)>, OwnedFd);

/// A created entry: its attributes and TTL, and the event to report (view, event).
type Created = (FileAttr, Duration, (u64, FsEvent));

/// An inode resolved in its view.
#[derive(Debug, Clone)]
pub(crate) struct Res {
    pub(crate) view: u64,
    pub(crate) spec: Arc<SpecState>,
    pub(crate) epoch: u64,
    pub(crate) node: Arc<Node>,
}

/// What an open file reads from and writes to.
#[derive(Debug)]
pub(crate) enum Backing {
    /// A file of the upper directory, kept open for the handle's life.
    Upper(File),
    /// A file in a layer.
    Lower {
        layer: Arc<dyn Layer>,
        node: NodeId,
        /// Set when the file has been copied up since: reads switch to the upper copy.
        copied: Arc<AtomicBool>,
        upgraded: Mutex<Option<Arc<File>>>,
    },
}

/// An open file.
#[derive(Debug)]
pub(crate) struct FileH {
    pub(crate) ino: u64,
    pub(crate) view: u64,
    pub(crate) backing: Backing,
    ev: Mutex<EvState>,
}

#[derive(Debug, Default)]
struct EvState {
    last: Option<Instant>,
    pending: bool,
}

/// An open directory: the listing snapshotted at `opendir`.
#[derive(Debug)]
pub(crate) struct DirH {
    pub(crate) ino: u64,
    pub(crate) view: u64,
    pub(crate) entries: Vec<(OsString, FileType, u64)>,
}

fn ttl_of(node: &Node) -> Duration {
    if node.upper { UPPER_TTL } else { LOWER_TTL }
}

/// Attributes from a host `stat`.
pub(crate) fn stat_attr(ino: u64, st: &Stat) -> FileAttr {
    let kind = upper::kind_of(st.st_mode);
    FileAttr {
        ino: INodeNo(ino),
        size: u64::try_from(st.st_size).unwrap_or(0),
        blocks: u64::try_from(st.st_blocks).unwrap_or(0),
        atime: upper::system_time(st.st_atime, st.st_atime_nsec as i64),
        mtime: upper::system_time(st.st_mtime, st.st_mtime_nsec as i64),
        ctime: upper::system_time(st.st_ctime, st.st_ctime_nsec as i64),
        crtime: upper::system_time(st.st_ctime, st.st_ctime_nsec as i64),
        kind,
        perm: (st.st_mode & 0o7777) as u16,
        nlink: u32::try_from(st.st_nlink).unwrap_or(u32::MAX),
        uid: st.st_uid,
        gid: st.st_gid,
        rdev: upper::encode_dev(st.st_rdev),
        blksize: 4096,
        flags: 0,
    }
}

/// Attributes of a layer node.
fn lower_attr(ino: u64, a: &NodeAttr) -> FileAttr {
    let t = upper::system_time(a.mtime, 0);
    let kind = merge::file_type(a.kind);
    let size = match kind {
        FileType::Directory => 4096,
        _ => a.size,
    };
    FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: size.div_ceil(512),
        atime: t,
        mtime: t,
        ctime: t,
        crtime: t,
        kind,
        perm: (a.perm & 0o7777) as u16,
        nlink: match kind {
            FileType::Directory => 1,
            _ => a.nlink.max(1),
        },
        uid: a.uid,
        gid: a.gid,
        rdev: upper::encode_dev(a.rdev),
        blksize: 4096,
        flags: 0,
    }
}

fn rel_string(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn join_rel(dir: &Path, name: &OsStr) -> String {
    rel_string(&dir.join(name))
}

fn event(kind: FsEventKind, path: String, old: Option<String>, is_dir: bool) -> FsEvent {
    FsEvent {
        kind,
        path,
        old_path: old,
        is_dir,
        replaced: false,
    }
}

/// Checks a name the caller wants to create.
fn check_new_name(name: &OsStr) -> R<()> {
    if name.is_empty() || name.as_bytes().contains(&b'/') {
        return Err(Er::EINVAL);
    }
    if name == "." || name == ".." {
        return Err(Er::EEXIST);
    }
    if upper::is_reserved(name) {
        return Err(Er::EPERM);
    }
    Ok(())
}

fn to_timespec(t: Option<TimeOrNow>) -> rustix::fs::Timespec {
    match t {
        None => upper::omit(),
        Some(TimeOrNow::Now) => upper::now(),
        Some(TimeOrNow::SpecificTime(t)) => upper::timespec(t),
    }
}

/// Host open flags for an open through the view.
fn host_flags(flags: i32) -> OFlags {
    let keep = libc::O_ACCMODE | libc::O_SYNC | libc::O_DSYNC | libc::O_NONBLOCK;
    OFlags::from_bits_retain((flags & keep) as u32)
}

fn read_full(f: &File, buf: &mut [u8], offset: u64) -> R<usize> {
    let mut done = 0;
    while done < buf.len() {
        match f.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(done)
}

fn read_layer_full(layer: &dyn Layer, node: NodeId, buf: &mut [u8], offset: u64) -> R<usize> {
    let mut done = 0;
    while done < buf.len() {
        match layer.read_at(node, offset + done as u64, &mut buf[done..]) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(done)
}

impl Views {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn emit(&self, view: u64, ev: FsEvent) {
        let name = self.lock().views.get(&view).map(|v| v.name.clone());
        if let Some(name) = name {
            self.events.event(&name, ev);
        }
    }

    fn tmp_name(&self) -> OsString {
        let n = self.tmp_seq.fetch_add(1, Ordering::Relaxed);
        OsString::from(format!(".wh..wh.tmp.{}.{n}", std::process::id()))
    }

    /// The structural lock of `ino`'s view.
    pub(crate) fn structural(&self, ino: u64) -> R<Arc<Mutex<()>>> {
        let t = self.lock();
        let v = t.view_of(ino).ok_or(Er::ENOENT)?;
        Ok(v.structural.clone())
    }

    fn bump(&self, view: u64) {
        if let Some(v) = self.lock().views.get_mut(&view) {
            v.epoch += 1;
        }
    }

    fn view_id(&self, ino: u64) -> R<u64> {
        let t = self.lock();
        let i = t.inodes.get(&ino).ok_or(Er::ENOENT)?;
        if i.stale || !t.views.contains_key(&i.view) {
            return Err(Er::ENOENT);
        }
        Ok(i.view)
    }

    /// Resolves `ino` through its view (not the mount root).
    pub(crate) fn resolve(&self, ino: u64) -> R<Res> {
        let (view, spec, epoch, root, base, chain, kind) = {
            let t = self.lock();
            let inode = t.inodes.get(&ino).ok_or(Er::ENOENT)?;
            if inode.stale || inode.view == 0 {
                return Err(Er::ENOENT);
            }
            let kind = inode.kind;
            let ve = t.views.get(&inode.view).ok_or(Er::ENOENT)?;
            let mut chain = Vec::new();
            let mut cur = ino;
            let base = loop {
                let i = t.inodes.get(&cur).ok_or(Er::ENOENT)?;
                if i.stale {
                    return Err(Er::ENOENT);
                }
                if let Some((g, n)) = &i.cache
                    && *g == ve.epoch
                {
                    break Some(n.clone());
                }
                if cur == ve.root {
                    break None;
                }
                if i.parent == 0 {
                    return Err(Er::ENOENT);
                }
                chain.push((cur, i.name.clone()));
                cur = i.parent;
            };
            (
                inode.view,
                ve.spec.clone(),
                ve.epoch,
                ve.root,
                base,
                chain,
                kind,
            )
        };
        let mut computed = Vec::new();
        let mut node = match base {
            Some(n) => n,
            None => {
                let n = Arc::new(merge::root(&spec)?);
                computed.push((root, n.clone()));
                n
            }
        };
        for (i, name) in chain.iter().rev() {
            let p = merge::child(&spec, &node, name)?;
            node = Arc::new(p.node.ok_or(Er::ENOENT)?);
            computed.push((*i, node.clone()));
        }
        if node.kind != kind {
            return Err(Er::ENOENT);
        }
        if !computed.is_empty() {
            let mut t = self.lock();
            if t.views.get(&view).map(|v| v.epoch) == Some(epoch) {
                for (i, n) in computed {
                    if let Some(x) = t.inodes.get_mut(&i) {
                        x.cache = Some((epoch, n));
                    }
                }
            }
        }
        Ok(Res {
            view,
            spec,
            epoch,
            node,
        })
    }

    /// [`Self::resolve`] for operations that do not hold the view's namespace lock: when an
    /// inode that is still linked fails to resolve, a rename or copy-up in its view may be
    /// half done, so wait for it and try again.
    pub(crate) fn resolve_wait(&self, ino: u64) -> R<Res> {
        match self.resolve(ino) {
            Err(Er::ENOENT) => {
                let linked = self
                    .lock()
                    .inodes
                    .get(&ino)
                    .is_some_and(|i| !i.stale && i.parent != 0);
                if !linked {
                    return Err(Er::ENOENT);
                }
                let m = self.structural(ino)?;
                drop(m.lock().unwrap_or_else(|p| p.into_inner()));
                self.resolve(ino)
            }
            r => r,
        }
    }

    /// Attributes of a resolved node, and the upper file's (dev, ino) for hard-linked files.
    fn attr_full(
        &self,
        spec: &SpecState,
        ino: u64,
        node: &Node,
    ) -> R<(FileAttr, Option<(u64, u64)>)> {
        if node.upper {
            let st = upper::lstat(spec.upper_fd.as_fd(), &node.rel)?.ok_or(Er::ENOENT)?;
            let mut a = stat_attr(ino, &st);
            if a.kind == FileType::Directory && !node.lowers.is_empty() {
                a.nlink = 1;
            }
            let host =
                (a.kind == FileType::RegularFile && a.nlink > 1).then_some((st.st_dev, st.st_ino));
            Ok((a, host))
        } else {
            let &(li, id) = node.lowers.first().ok_or(Er::EIO)?;
            Ok((lower_attr(ino, &spec.layer(li)?.attr(id)), None))
        }
    }

    fn root_attr(&self) -> FileAttr {
        let t = self.lock().root_mtime;
        FileAttr {
            ino: INodeNo(ROOT),
            size: 4096,
            blocks: 8,
            atime: t,
            mtime: t,
            ctime: t,
            crtime: t,
            kind: FileType::Directory,
            perm: 0o755,
            nlink: 2,
            uid: rustix::process::geteuid().as_raw(),
            gid: rustix::process::getegid().as_raw(),
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    /// Links `name` in `parent` to an inode (existing or new) and counts one kernel lookup
    /// when `count` is set.
    #[allow(clippy::too_many_arguments, reason = "internal helper")]
    fn bind(
        &self,
        t: &mut Table,
        res: &Res,
        parent: u64,
        name: &OsStr,
        node: Node,
        host: Option<(u64, u64)>,
        count: bool,
    ) -> u64 {
        let key = (parent, name.to_owned());
        let kind = node.kind;
        let node = Arc::new(node);
        let mut found = None;
        if let Some(&ino) = t.index.get(&key) {
            match t.inodes.get(&ino) {
                Some(i) if i.kind == kind && !i.stale => found = Some(ino),
                _ => t.unlink_name(parent, &key.1),
            }
        }
        let host_key = host.map(|(d, i)| (res.view ^ d.rotate_left(17), i));
        if let (Some(ino), Some(h)) = (found, host_key) {
            // A name the kernel never looked up, for a file another inode already stands for.
            let other = t.by_host.get(&h).copied();
            if let Some(other) = other
                && other != ino
                && t.inodes.get(&ino).is_some_and(|i| i.nlookup == 0)
                && t.inodes
                    .get(&other)
                    .is_some_and(|i| i.parent != 0 && !i.stale)
            {
                t.unlink_name(parent, &key.1);
                found = None;
            }
        }
        let ino = match found {
            Some(ino) => ino,
            None => {
                let alias = host_key
                    .and_then(|h| t.by_host.get(&h).copied())
                    .filter(|o| {
                        t.inodes.get(o).is_some_and(|i| {
                            i.parent != 0 && !i.stale && i.kind == kind && i.view == res.view
                        })
                    });
                match alias {
                    Some(o) => {
                        t.index.insert(key.clone(), o);
                        if let Some(i) = t.inodes.get_mut(&o) {
                            i.aliases.push(key);
                        }
                        o
                    }
                    None => {
                        let ino = t.alloc(res.view, parent, key.1, kind);
                        if let Some(h) = host_key {
                            t.by_host.insert(h, ino);
                            if let Some(i) = t.inodes.get_mut(&ino) {
                                i.host = Some(h);
                            }
                        }
                        ino
                    }
                }
            }
        };
        let epoch_ok = t.views.get(&res.view).map(|v| v.epoch) == Some(res.epoch);
        if let Some(i) = t.inodes.get_mut(&ino) {
            if count {
                i.nlookup += 1;
            }
            if epoch_ok && i.parent == parent && i.name == name {
                i.cache = Some((res.epoch, node));
            }
        }
        ino
    }

    // ---- lookups and attributes ----

    pub(crate) fn lookup(&self, parent: u64, name: &OsStr) -> R<(FileAttr, Duration)> {
        if parent == ROOT {
            return self.lookup_view(name);
        }
        let r = self.resolve_wait(parent)?;
        let probe = merge::child(&r.spec, &r.node, name)?;
        let node = probe.node.ok_or(Er::ENOENT)?;
        let (mut attr, host) = self.attr_full(&r.spec, 0, &node)?;
        let ttl = ttl_of(&node);
        let mut t = self.lock();
        let ino = self.bind(&mut t, &r, parent, name, node, host, true);
        attr.ino = INodeNo(ino);
        Ok((attr, ttl))
    }

    fn lookup_view(&self, name: &OsStr) -> R<(FileAttr, Duration)> {
        let name = name.to_str().ok_or(Er::ENOENT)?;
        let (root, spec) = {
            let t = self.lock();
            let vid = t.names.get(name).ok_or(Er::ENOENT)?;
            let ve = t.views.get(vid).ok_or(Er::ENOENT)?;
            (ve.root, ve.spec.clone())
        };
        let node = merge::root(&spec)?;
        let (attr, _) = self.attr_full(&spec, root, &node)?;
        let mut t = self.lock();
        let i = t.inodes.get_mut(&root).ok_or(Er::ENOENT)?;
        i.nlookup += 1;
        Ok((attr, UPPER_TTL))
    }

    pub(crate) fn forget(&self, items: &[(u64, u64)]) {
        let mut t = self.lock();
        for &(ino, n) in items {
            t.forget(ino, n);
        }
    }

    pub(crate) fn getattr(&self, ino: u64, fh: Option<u64>) -> R<(FileAttr, Duration)> {
        if ino == ROOT {
            return Ok((self.root_attr(), UPPER_TTL));
        }
        match self.resolve_wait(ino) {
            Ok(r) => {
                let (a, _) = self.attr_full(&r.spec, ino, &r.node)?;
                Ok((a, ttl_of(&r.node)))
            }
            Err(e) => {
                // Unlinked but still open: answer from an open handle.
                let h = match fh.and_then(|fh| self.file(fh).ok()) {
                    Some(h) => Some(h),
                    None => self.files_lock().values().find(|h| h.ino == ino).cloned(),
                };
                let Some(h) = h else {
                    return Err(e);
                };
                let mut a = match &h.backing {
                    Backing::Upper(f) => stat_attr(ino, &rustix::fs::fstat(f)?),
                    Backing::Lower { layer, node, .. } => lower_attr(ino, &layer.attr(*node)),
                };
                a.ino = INodeNo(ino);
                Ok((a, Duration::ZERO))
            }
        }
    }

    pub(crate) fn readlink(&self, ino: u64) -> R<Vec<u8>> {
        let r = self.resolve_wait(ino)?;
        if r.node.kind != FileType::Symlink {
            return Err(Er::EINVAL);
        }
        if r.node.upper {
            let (p, n) = upper::split(&r.node.rel).ok_or(Er::EINVAL)?;
            let pd = upper::dir_fd(r.spec.upper_fd.as_fd(), p)?;
            Ok(rustix::fs::readlinkat(pd.as_fd(), n, Vec::new())?.into_bytes())
        } else {
            let &(li, id) = r.node.lowers.first().ok_or(Er::EIO)?;
            let p = r.spec.layer(li)?.readlink(id)?;
            Ok(p.into_os_string().into_vec())
        }
    }

    pub(crate) fn statfs(&self, ino: u64) -> R<rustix::fs::StatVfs> {
        let spec = {
            let t = self.lock();
            match t.view_of(ino) {
                Some(v) => Some(v.spec.clone()),
                None => t.views.values().next().map(|v| v.spec.clone()),
            }
        };
        match spec {
            Some(s) => Ok(rustix::fs::fstatvfs(&s.upper_fd)?),
            None => Ok(rustix::fs::statvfs("/")?),
        }
    }

    pub(crate) fn access(&self, ino: u64) -> R<()> {
        if ino == ROOT {
            return Ok(());
        }
        self.resolve_wait(ino).map(|_| ())
    }

    // ---- upper directory plumbing ----

    fn own_fd(&self, fd: BorrowedFd<'_>, uid: u32, gid: u32) -> R<()> {
        if self.root_user {
            rustix::fs::fchown(
                fd,
                Some(rustix::fs::Uid::from_raw(uid)),
                Some(rustix::fs::Gid::from_raw(gid)),
            )?;
        }
        Ok(())
    }

    fn own_at(&self, dir: BorrowedFd<'_>, name: &OsStr, uid: u32, gid: u32) -> R<()> {
        if self.root_user {
            rustix::fs::chownat(
                dir,
                name,
                Some(rustix::fs::Uid::from_raw(uid)),
                Some(rustix::fs::Gid::from_raw(gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )?;
        }
        Ok(())
    }

    /// Copies layer node `(li, id)` to `name` in upper directory `dir`, atomically (a temporary
    /// name, then a rename).
    fn copy_lower(
        &self,
        spec: &SpecState,
        li: usize,
        id: NodeId,
        dir: BorrowedFd<'_>,
        name: &OsStr,
    ) -> R<()> {
        let layer = spec.layer(li)?;
        let a = layer.attr(id);
        let tmp = self.tmp_name();
        let perm = Mode::from_raw_mode(a.perm & 0o7777);
        let mtime = upper::timespec(upper::system_time(a.mtime, 0));
        let res = (|| -> R<()> {
            match merge::file_type(a.kind) {
                FileType::RegularFile => {
                    let fd = rustix::fs::openat(
                        dir,
                        tmp.as_os_str(),
                        OFlags::CREATE
                            | OFlags::EXCL
                            | OFlags::WRONLY
                            | OFlags::CLOEXEC
                            | OFlags::NOFOLLOW,
                        Mode::from_raw_mode(0o600),
                    )?;
                    let f = File::from(fd);
                    let mut buf = vec![0u8; 1 << 20];
                    let mut off = 0u64;
                    loop {
                        let n = match layer.read_at(id, off, &mut buf) {
                            Ok(n) => n,
                            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                            Err(e) => return Err(e.into()),
                        };
                        if n == 0 {
                            break;
                        }
                        f.write_all_at(&buf[..n], off)?;
                        off += n as u64;
                    }
                    self.own_fd(f.as_fd(), a.uid, a.gid)?;
                    rustix::fs::fchmod(&f, perm)?;
                    rustix::fs::futimens(
                        &f,
                        &Timestamps {
                            last_access: mtime,
                            last_modification: mtime,
                        },
                    )?;
                }
                FileType::Directory => {
                    rustix::fs::mkdirat(dir, tmp.as_os_str(), Mode::from_raw_mode(0o700))?;
                    self.own_at(dir, &tmp, a.uid, a.gid)?;
                    rustix::fs::chmodat(dir, tmp.as_os_str(), perm, AtFlags::empty())?;
                    upper::set_times_at(dir, &tmp, mtime, mtime)?;
                }
                FileType::Symlink => {
                    let target = layer.readlink(id)?;
                    rustix::fs::symlinkat(target.as_os_str(), dir, tmp.as_os_str())?;
                    self.own_at(dir, &tmp, a.uid, a.gid)?;
                    upper::set_times_at(dir, &tmp, mtime, mtime)?;
                }
                k => {
                    let ft = match k {
                        FileType::NamedPipe => rustix::fs::FileType::Fifo,
                        FileType::Socket => rustix::fs::FileType::Socket,
                        FileType::CharDevice => rustix::fs::FileType::CharacterDevice,
                        _ => rustix::fs::FileType::BlockDevice,
                    };
                    rustix::fs::mknodat(
                        dir,
                        tmp.as_os_str(),
                        ft,
                        Mode::from_raw_mode(0o600),
                        a.rdev,
                    )?;
                    self.own_at(dir, &tmp, a.uid, a.gid)?;
                    rustix::fs::chmodat(dir, tmp.as_os_str(), perm, AtFlags::empty())?;
                    upper::set_times_at(dir, &tmp, mtime, mtime)?;
                }
            }
            rustix::fs::renameat_with(dir, tmp.as_os_str(), dir, name, RenameFlags::NOREPLACE)?;
            Ok(())
        })();
        if res.is_err() {
            let _ = upper::remove_tree(dir, &tmp);
        }
        res
    }

    /// Makes sure directory `rel` exists in the upper directory, copying up the directories on
    /// the way with their layer metadata. Returns the directories created (to restore their
    /// times once the caller is done).
    fn ensure_upper_dir(&self, view: u64, spec: &SpecState, rel: &Path) -> R<Vec<(PathBuf, i64)>> {
        let mut node = merge::root(spec)?;
        let mut created = Vec::new();
        for comp in rel.components() {
            let name = comp.as_os_str();
            let mut child = merge::child(spec, &node, name)?.node.ok_or(Er::ENOENT)?;
            if child.kind != FileType::Directory {
                return Err(Er::ENOTDIR);
            }
            if !child.upper {
                let &(li, id) = child.lowers.first().ok_or(Er::EIO)?;
                let pd = upper::dir_fd(spec.upper_fd.as_fd(), &node.rel)?;
                let mtime = spec.layer(li)?.attr(id).mtime;
                self.copy_lower(spec, li, id, pd.as_fd(), name)?;
                created.push((child.rel.clone(), mtime));
                child.upper = true;
            }
            node = child;
        }
        if !created.is_empty() {
            self.bump(view);
        }
        Ok(created)
    }

    /// Restores the layer mtimes of directories created by [`Self::ensure_upper_dir`] (creating
    /// their children moved them), except the ones in `skip` (whose mtime the operation changes).
    fn restore_times(&self, spec: &SpecState, created: &[(PathBuf, i64)], skip: &[&Path]) {
        for (rel, mtime) in created.iter().rev() {
            if skip.contains(&rel.as_path()) {
                continue;
            }
            let Some((p, n)) = upper::split(rel) else {
                continue;
            };
            let t = upper::timespec(upper::system_time(*mtime, 0));
            if let Ok(pd) = upper::dir_fd(spec.upper_fd.as_fd(), p) {
                let _ = upper::set_times_at(pd.as_fd(), n, t, t);
            }
        }
    }

    /// Copies `ino` (resolved as `r`) up into the upper directory. The caller holds the view's
    /// structural lock.
    fn copy_up(&self, r: &Res, ino: u64) -> R<()> {
        if r.node.upper {
            return Ok(());
        }
        let (parent_rel, name) = upper::split(&r.node.rel).ok_or(Er::EIO)?;
        let created = self.ensure_upper_dir(r.view, &r.spec, parent_rel)?;
        let pd = upper::dir_fd(r.spec.upper_fd.as_fd(), parent_rel)?;
        let &(li, id) = r.node.lowers.first().ok_or(Er::EIO)?;
        self.copy_lower(&r.spec, li, id, pd.as_fd(), name)?;
        self.restore_times(&r.spec, &created, &[]);
        {
            let mut t = self.lock();
            if let Some(v) = t.views.get_mut(&r.view) {
                v.epoch += 1;
            }
            if let Some(i) = t.inodes.get_mut(&ino) {
                i.copied.store(true, Ordering::Release);
            }
        }
        // The kernel may hold the layer attributes with a long TTL: have it ask again.
        self.notify(vec![Inval::Inode(ino)], false);
        Ok(())
    }

    /// New nodes are owned by the caller; the group comes from a setgid parent, whose bit
    /// directories inherit.
    fn new_owner(&self, ctx: Ctx, pd: BorrowedFd<'_>, is_dir: bool) -> R<(u32, u32, u32)> {
        let st = rustix::fs::fstat(pd)?;
        if st.st_mode & libc::S_ISGID != 0 {
            Ok((ctx.uid, st.st_gid, if is_dir { libc::S_ISGID } else { 0 }))
        } else {
            Ok((ctx.uid, ctx.gid, 0))
        }
    }

    // ---- creating ----

    /// Shared prologue of the operations creating `name` in `parent`: resolves the parent,
    /// checks the name is free, makes the parent exist in the upper directory.
    fn prepare_create(&self, parent: u64, name: &OsStr) -> R<Prepared> {
        if parent == ROOT {
            return Err(Er::EPERM);
        }
        check_new_name(name)?;
        let r = self.resolve(parent)?;
        if r.node.kind != FileType::Directory {
            return Err(Er::ENOTDIR);
        }
        let probe = merge::child(&r.spec, &r.node, name)?;
        if probe.node.is_some() {
            return Err(Er::EEXIST);
        }
        let created = self.ensure_upper_dir(r.view, &r.spec, &r.node.rel)?;
        let pd = upper::dir_fd(r.spec.upper_fd.as_fd(), &r.node.rel)?;
        Ok((r, probe, created, pd))
    }

    pub(crate) fn mknod(
        &self,
        ctx: Ctx,
        parent: u64,
        name: &OsStr,
        mode: u32,
        rdev: u32,
    ) -> R<(FileAttr, Duration)> {
        self.created(self.mknod_inner(ctx, parent, name, mode, rdev))
    }

    pub(crate) fn mkdir(
        &self,
        ctx: Ctx,
        parent: u64,
        name: &OsStr,
        mode: u32,
    ) -> R<(FileAttr, Duration)> {
        self.created(self.mkdir_inner(ctx, parent, name, mode))
    }

    pub(crate) fn symlink(
        &self,
        ctx: Ctx,
        parent: u64,
        name: &OsStr,
        target: &Path,
    ) -> R<(FileAttr, Duration)> {
        self.created(self.symlink_inner(ctx, parent, name, target))
    }

    /// Shared epilogue: binds the new entry; returns the event to report.
    fn finish_create(
        &self,
        r: &Res,
        parent: u64,
        name: &OsStr,
        pd: BorrowedFd<'_>,
        created: &[(PathBuf, i64)],
    ) -> R<Created> {
        self.restore_times(&r.spec, created, &[r.node.rel.as_path()]);
        let st = upper::lstat_at(pd, name)?.ok_or(Er::ENOENT)?;
        let kind = upper::kind_of(st.st_mode);
        let opaque = kind == FileType::Directory
            && upper::exists_at(pd, Path::new(name).join(crate::OPAQUE_MARKER).as_os_str())?;
        let node = Node {
            rel: r.node.rel.join(name),
            kind,
            upper: true,
            opaque,
            lowers: Vec::new(),
        };
        let mut attr = stat_attr(0, &st);
        let ino = {
            let mut t = self.lock();
            self.bind(&mut t, r, parent, name, node, None, true)
        };
        attr.ino = INodeNo(ino);
        let ev = event(
            FsEventKind::Create,
            join_rel(&r.node.rel, name),
            None,
            kind == FileType::Directory,
        );
        Ok((attr, UPPER_TTL, (r.view, ev)))
    }

    /// Reports a creation once the locks are released.
    fn created(&self, c: R<Created>) -> R<(FileAttr, Duration)> {
        let (attr, ttl, (view, ev)) = c?;
        self.emit(view, ev);
        Ok((attr, ttl))
    }

    fn mknod_inner(&self, ctx: Ctx, parent: u64, name: &OsStr, mode: u32, rdev: u32) -> R<Created> {
        if parent == ROOT {
            return Err(Er::EPERM);
        }
        let m = self.structural(parent)?;
        let _g = m.lock().unwrap_or_else(|p| p.into_inner());
        let (r, _probe, created, pd) = self.prepare_create(parent, name)?;
        let (uid, gid, _) = self.new_owner(ctx, pd.as_fd(), false)?;
        let perm = Mode::from_raw_mode(mode & 0o7777);
        let ft = rustix::fs::FileType::from_raw_mode(mode);
        match ft {
            rustix::fs::FileType::RegularFile | rustix::fs::FileType::Unknown => {
                let fd = rustix::fs::openat(
                    pd.as_fd(),
                    name,
                    OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::WRONLY
                        | OFlags::CLOEXEC
                        | OFlags::NOFOLLOW,
                    Mode::from_raw_mode(0o600),
                )?;
                self.own_fd(fd.as_fd(), uid, gid)?;
                rustix::fs::fchmod(&fd, perm)?;
            }
            rustix::fs::FileType::Directory | rustix::fs::FileType::Symlink => {
                return Err(Er::EINVAL);
            }
            ft => {
                rustix::fs::mknodat(
                    pd.as_fd(),
                    name,
                    ft,
                    Mode::from_raw_mode(0o600),
                    upper::decode_dev(rdev),
                )?;
                self.own_at(pd.as_fd(), name, uid, gid)?;
                rustix::fs::chmodat(pd.as_fd(), name, perm, AtFlags::empty())?;
            }
        }
        upper::remove_whiteout(pd.as_fd(), name)?;
        self.finish_create(&r, parent, name, pd.as_fd(), &created)
    }

    fn mkdir_inner(&self, ctx: Ctx, parent: u64, name: &OsStr, mode: u32) -> R<Created> {
        if parent == ROOT {
            return Err(Er::EPERM);
        }
        let m = self.structural(parent)?;
        let _g = m.lock().unwrap_or_else(|p| p.into_inner());
        let (r, probe, created, pd) = self.prepare_create(parent, name)?;
        let (uid, gid, extra) = self.new_owner(ctx, pd.as_fd(), true)?;
        let perm = Mode::from_raw_mode((mode & 0o7777) | extra);
        if probe.below || probe.whiteout {
            // Something is hidden below: the new directory must not show its contents.
            let tmp = self.tmp_name();
            let res = (|| -> R<()> {
                rustix::fs::mkdirat(pd.as_fd(), tmp.as_os_str(), Mode::from_raw_mode(0o700))?;
                let sub = rustix::fs::openat(
                    pd.as_fd(),
                    tmp.as_os_str(),
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                upper::create_opaque(sub.as_fd())?;
                self.own_at(pd.as_fd(), &tmp, uid, gid)?;
                rustix::fs::chmodat(pd.as_fd(), tmp.as_os_str(), perm, AtFlags::empty())?;
                rustix::fs::renameat_with(
                    pd.as_fd(),
                    tmp.as_os_str(),
                    pd.as_fd(),
                    name,
                    RenameFlags::NOREPLACE,
                )?;
                Ok(())
            })();
            if let Err(e) = res {
                let _ = upper::remove_tree(pd.as_fd(), &tmp);
                return Err(e);
            }
            upper::remove_whiteout(pd.as_fd(), name)?;
        } else {
            rustix::fs::mkdirat(pd.as_fd(), name, Mode::from_raw_mode(0o700))?;
            self.own_at(pd.as_fd(), name, uid, gid)?;
            rustix::fs::chmodat(pd.as_fd(), name, perm, AtFlags::empty())?;
        }
        self.finish_create(&r, parent, name, pd.as_fd(), &created)
    }

    fn symlink_inner(&self, ctx: Ctx, parent: u64, name: &OsStr, target: &Path) -> R<Created> {
        if parent == ROOT {
            return Err(Er::EPERM);
        }
        let m = self.structural(parent)?;
        let _g = m.lock().unwrap_or_else(|p| p.into_inner());
        let (r, _probe, created, pd) = self.prepare_create(parent, name)?;
        let (uid, gid, _) = self.new_owner(ctx, pd.as_fd(), false)?;
        rustix::fs::symlinkat(target.as_os_str(), pd.as_fd(), name)?;
        self.own_at(pd.as_fd(), name, uid, gid)?;
        upper::remove_whiteout(pd.as_fd(), name)?;
        self.finish_create(&r, parent, name, pd.as_fd(), &created)
    }

    /// `create`: makes and opens a new regular file; an existing one is opened instead unless
    /// `O_EXCL` is given.
    #[allow(clippy::type_complexity, reason = "internal tuple")]
    pub(crate) fn create(
        &self,
        ctx: Ctx,
        parent: u64,
        name: &OsStr,
        mode: u32,
        flags: i32,
    ) -> R<(FileAttr, Duration, u64, FopenFlags)> {
        if parent == ROOT {
            return Err(Er::EPERM);
        }
        let m = self.structural(parent)?;
        let guard = m.lock().unwrap_or_else(|p| p.into_inner());
        let (r, _probe, created, pd) = match self.prepare_create(parent, name) {
            Err(Er::EEXIST) if flags & libc::O_EXCL == 0 && parent != ROOT => {
                drop(guard);
                let (attr, ttl) = self.lookup(parent, name)?;
                let (fh, ff) = match self.open(attr.ino.0, flags) {
                    Ok(x) => x,
                    Err(e) => {
                        self.forget(&[(attr.ino.0, 1)]);
                        return Err(e);
                    }
                };
                let (attr, _) = self.getattr(attr.ino.0, Some(fh))?;
                return Ok((attr, ttl, fh, ff));
            }
            x => x?,
        };
        let (uid, gid, _) = self.new_owner(ctx, pd.as_fd(), false)?;
        let acc = OFlags::from_bits_retain((flags & libc::O_ACCMODE) as u32);
        let fd = rustix::fs::openat(
            pd.as_fd(),
            name,
            OFlags::CREATE
                | OFlags::EXCL
                | OFlags::CLOEXEC
                | OFlags::NOFOLLOW
                | host_flags(flags)
                | acc,
            Mode::from_raw_mode(0o600),
        )?;
        self.own_fd(fd.as_fd(), uid, gid)?;
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode & 0o7777))?;
        upper::remove_whiteout(pd.as_fd(), name)?;
        let (attr, ttl, (view, ev)) = self.finish_create(&r, parent, name, pd.as_fd(), &created)?;
        drop(guard);
        self.emit(view, ev);
        let fh = self.add_file(attr.ino.0, r.view, Backing::Upper(File::from(fd)));
        Ok((attr, ttl, fh, FopenFlags::empty()))
    }

    pub(crate) fn link(
        &self,
        ino: u64,
        newparent: u64,
        newname: &OsStr,
    ) -> R<(FileAttr, Duration)> {
        if newparent == ROOT || ino == ROOT {
            return Err(Er::EPERM);
        }
        check_new_name(newname)?;
        if self.view_id(ino)? != self.view_id(newparent)? {
            return Err(Er::EXDEV);
        }
        let m = self.structural(ino)?;
        let g = m.lock().unwrap_or_else(|p| p.into_inner());
        let mut r = self.resolve(ino)?;
        if r.node.kind == FileType::Directory {
            return Err(Er::EPERM);
        }
        let pr = self.resolve(newparent)?;
        if pr.node.kind != FileType::Directory {
            return Err(Er::ENOTDIR);
        }
        if merge::child(&pr.spec, &pr.node, newname)?.node.is_some() {
            return Err(Er::EEXIST);
        }
        if !r.node.upper {
            self.copy_up(&r, ino)?;
            r = self.resolve(ino)?;
        }
        let created = self.ensure_upper_dir(pr.view, &pr.spec, &pr.node.rel)?;
        let (sp, sn) = upper::split(&r.node.rel).ok_or(Er::EPERM)?;
        let spd = upper::dir_fd(r.spec.upper_fd.as_fd(), sp)?;
        let dpd = upper::dir_fd(r.spec.upper_fd.as_fd(), &pr.node.rel)?;
        rustix::fs::linkat(spd.as_fd(), sn, dpd.as_fd(), newname, AtFlags::empty())?;
        upper::remove_whiteout(dpd.as_fd(), newname)?;
        self.restore_times(&r.spec, &created, &[pr.node.rel.as_path()]);
        let st = upper::lstat_at(dpd.as_fd(), newname)?.ok_or(Er::ENOENT)?;
        let mut attr = stat_attr(ino, &st);
        {
            let mut t = self.lock();
            let key = (newparent, newname.to_owned());
            if t.index.contains_key(&key) {
                t.unlink_name(newparent, &key.1);
            }
            let h = (r.view ^ st.st_dev.rotate_left(17), st.st_ino);
            t.index.insert(key.clone(), ino);
            if let Some(i) = t.inodes.get_mut(&ino) {
                i.aliases.push(key);
                i.nlookup += 1;
                if i.host.is_none() {
                    i.host = Some(h);
                }
            }
            t.by_host.insert(h, ino);
        }
        attr.ino = INodeNo(ino);
        drop(g);
        self.emit(
            r.view,
            event(
                FsEventKind::Create,
                join_rel(&pr.node.rel, newname),
                None,
                false,
            ),
        );
        Ok((attr, UPPER_TTL))
    }

    // ---- removing ----

    pub(crate) fn unlink(&self, parent: u64, name: &OsStr) -> R<()> {
        self.remove_entry(parent, name, false)
    }

    pub(crate) fn rmdir(&self, parent: u64, name: &OsStr) -> R<()> {
        self.remove_entry(parent, name, true)
    }

    fn remove_entry(&self, parent: u64, name: &OsStr, dir: bool) -> R<()> {
        if parent == ROOT {
            return Err(Er::EPERM);
        }
        let m = self.structural(parent)?;
        let g = m.lock().unwrap_or_else(|p| p.into_inner());
        let r = self.resolve(parent)?;
        if r.node.kind != FileType::Directory {
            return Err(Er::ENOTDIR);
        }
        let probe = merge::child(&r.spec, &r.node, name)?;
        let node = probe.node.ok_or(Er::ENOENT)?;
        let is_dir = node.kind == FileType::Directory;
        if dir && !is_dir {
            return Err(Er::ENOTDIR);
        }
        if !dir && is_dir {
            return Err(Er::EISDIR);
        }
        if is_dir && !merge::list(&r.spec, &node)?.is_empty() {
            return Err(Er::ENOTEMPTY);
        }
        let created = if probe.below {
            self.ensure_upper_dir(r.view, &r.spec, &r.node.rel)?
        } else {
            Vec::new()
        };
        let pd = upper::dir_fd(r.spec.upper_fd.as_fd(), &r.node.rel)?;
        // The whiteout first: a crash in between leaves the upper copy visible, never the
        // layer's version resurrected.
        if probe.below {
            upper::create_whiteout(pd.as_fd(), name)?;
        }
        if node.upper {
            if is_dir {
                upper::remove_tree(pd.as_fd(), name)?;
            } else {
                rustix::fs::unlinkat(pd.as_fd(), name, AtFlags::empty())?;
            }
        }
        self.restore_times(&r.spec, &created, &[r.node.rel.as_path()]);
        self.lock().unlink_name(parent, &name.to_owned());
        drop(g);
        self.emit(
            r.view,
            event(
                FsEventKind::Delete,
                join_rel(&r.node.rel, name),
                None,
                is_dir,
            ),
        );
        Ok(())
    }

    // ---- renaming ----

    /// Copies merged directory `src` into a new directory `name` in upper directory `dir`:
    /// upper files are hard-linked, layer files copied.
    fn build_tree(&self, spec: &SpecState, src: &Node, dir: BorrowedFd<'_>, name: &OsStr) -> R<()> {
        let (attr, _) = self.attr_full(spec, 0, src)?;
        rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o700))?;
        self.own_at(dir, name, attr.uid, attr.gid)?;
        rustix::fs::chmodat(
            dir,
            name,
            Mode::from_raw_mode(u32::from(attr.perm)),
            AtFlags::empty(),
        )?;
        let sub = rustix::fs::openat(
            dir,
            name,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let src_upper = if src.upper {
            Some(upper::dir_fd(spec.upper_fd.as_fd(), &src.rel)?)
        } else {
            None
        };
        for (cname, _) in merge::list(spec, src)? {
            let child = merge::child(spec, src, &cname)?.node.ok_or(Er::EIO)?;
            if child.kind == FileType::Directory {
                self.build_tree(spec, &child, sub.as_fd(), &cname)?;
            } else if child.upper {
                let su = src_upper.as_ref().ok_or(Er::EIO)?;
                rustix::fs::linkat(
                    su.as_fd(),
                    cname.as_os_str(),
                    sub.as_fd(),
                    cname.as_os_str(),
                    AtFlags::empty(),
                )?;
            } else {
                let &(li, id) = child.lowers.first().ok_or(Er::EIO)?;
                self.copy_lower(spec, li, id, sub.as_fd(), &cname)?;
            }
        }
        let t = upper::timespec(attr.mtime);
        upper::set_times_at(dir, name, upper::timespec(attr.atime), t)?;
        Ok(())
    }

    #[allow(clippy::too_many_lines, reason = "one operation, step by step")]
    pub(crate) fn rename_entry(
        &self,
        p1: u64,
        n1: &OsStr,
        p2: u64,
        n2: &OsStr,
        flags: u32,
    ) -> R<()> {
        let exchange = flags & libc::RENAME_EXCHANGE != 0;
        let noreplace = flags & libc::RENAME_NOREPLACE != 0;
        if exchange || flags & libc::RENAME_WHITEOUT != 0 {
            // Documented: RENAME_EXCHANGE (and RENAME_WHITEOUT) are not supported.
            return Err(Er::EINVAL);
        }
        if p1 == ROOT || p2 == ROOT {
            if p1 != p2 {
                return Err(if p2 == ROOT { Er::EPERM } else { Er::EXDEV });
            }
            let (from, to) = (
                n1.to_str().ok_or(Er::ENOENT)?,
                n2.to_str().ok_or(Er::EINVAL)?,
            );
            return match self.rename_view(from, to, noreplace, false) {
                Ok(()) => Ok(()),
                Err(crate::FsError::NotFound(_)) => Err(Er::ENOENT),
                Err(crate::FsError::AlreadyExists(_)) => Err(Er::EEXIST),
                Err(_) => Err(Er::EINVAL),
            };
        }
        check_new_name(n2).map_err(|e| if e == Er::EEXIST { Er::EINVAL } else { e })?;
        if upper::is_reserved(n1) {
            return Err(Er::ENOENT);
        }
        if self.view_id(p1)? != self.view_id(p2)? {
            // Different views have different upper directories (and maybe filesystems).
            return Err(Er::EXDEV);
        }
        let m = self.structural(p1)?;
        let g = m.lock().unwrap_or_else(|p| p.into_inner());
        let spr = self.resolve(p1)?;
        let dpr = self.resolve(p2)?;
        if spr.node.kind != FileType::Directory || dpr.node.kind != FileType::Directory {
            return Err(Er::ENOTDIR);
        }
        let spec = spr.spec.clone();
        let sp = merge::child(&spec, &spr.node, n1)?;
        let src = sp.node.ok_or(Er::ENOENT)?;
        let dp = merge::child(&spec, &dpr.node, n2)?;
        let (src_ino, dst_ino) = {
            let t = self.lock();
            (
                t.index.get(&(p1, n1.to_owned())).copied(),
                t.index.get(&(p2, n2.to_owned())).copied(),
            )
        };
        let is_dir = src.kind == FileType::Directory;
        let replaced = dp.node.is_some();
        if let Some(dst) = &dp.node {
            if src_ino.is_some() && src_ino == dst_ino {
                return Ok(());
            }
            if noreplace {
                return Err(Er::EEXIST);
            }
            if is_dir {
                if dst.kind != FileType::Directory {
                    return Err(Er::ENOTDIR);
                }
                if !merge::list(&spec, dst)?.is_empty() {
                    return Err(Er::ENOTEMPTY);
                }
            } else if dst.kind == FileType::Directory {
                return Err(Er::EISDIR);
            }
        }
        if p1 == p2 && n1 == n2 {
            return Ok(());
        }
        if is_dir {
            // Moving a directory into itself.
            let s = spr.node.rel.join(n1);
            if dpr.node.rel.starts_with(&s) {
                return Err(Er::EINVAL);
            }
        }
        let mut created = self.ensure_upper_dir(spr.view, &spec, &spr.node.rel)?;
        created.extend(self.ensure_upper_dir(spr.view, &spec, &dpr.node.rel)?);
        let sdir = upper::dir_fd(spec.upper_fd.as_fd(), &spr.node.rel)?;
        let ddir = upper::dir_fd(spec.upper_fd.as_fd(), &dpr.node.rel)?;
        let dst_upper = dp.node.as_ref().is_some_and(|d| d.upper);
        if !is_dir {
            if !src.upper {
                let &(li, id) = src.lowers.first().ok_or(Er::EIO)?;
                self.copy_lower(&spec, li, id, sdir.as_fd(), n1)?;
            }
            if sp.below {
                upper::create_whiteout(sdir.as_fd(), n1)?;
            }
            rustix::fs::renameat(sdir.as_fd(), n1, ddir.as_fd(), n2)?;
            upper::remove_whiteout(ddir.as_fd(), n2)?;
        } else {
            let mut leftover_at_src = false;
            if src.lowers.is_empty() && src.upper {
                // Nothing below: a plain rename in the upper directory.
                if dp.below && !src.opaque {
                    let sub = rustix::fs::openat(
                        sdir.as_fd(),
                        n1,
                        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    )?;
                    upper::create_opaque(sub.as_fd())?;
                }
                if dst_upper {
                    rustix::fs::renameat_with(
                        sdir.as_fd(),
                        n1,
                        ddir.as_fd(),
                        n2,
                        RenameFlags::EXCHANGE,
                    )?;
                    leftover_at_src = true;
                } else {
                    rustix::fs::renameat_with(
                        sdir.as_fd(),
                        n1,
                        ddir.as_fd(),
                        n2,
                        RenameFlags::NOREPLACE,
                    )?;
                }
            } else {
                // Layers hold part of it: copy the merged tree (hard-linking upper files) to a
                // hidden name next to the target, then swap it in. Costs a copy of every layer
                // file below the directory.
                let tmp = self.tmp_name();
                let built = self
                    .build_tree(&spec, &src, ddir.as_fd(), &tmp)
                    .and_then(|()| {
                        if dp.below {
                            let sub = rustix::fs::openat(
                                ddir.as_fd(),
                                tmp.as_os_str(),
                                OFlags::PATH
                                    | OFlags::DIRECTORY
                                    | OFlags::NOFOLLOW
                                    | OFlags::CLOEXEC,
                                Mode::empty(),
                            )?;
                            upper::create_opaque(sub.as_fd())?;
                        }
                        if dst_upper {
                            rustix::fs::renameat_with(
                                ddir.as_fd(),
                                tmp.as_os_str(),
                                ddir.as_fd(),
                                n2,
                                RenameFlags::EXCHANGE,
                            )?;
                        } else {
                            rustix::fs::renameat_with(
                                ddir.as_fd(),
                                tmp.as_os_str(),
                                ddir.as_fd(),
                                n2,
                                RenameFlags::NOREPLACE,
                            )?;
                        }
                        Ok(())
                    });
                if let Err(e) = built {
                    let _ = upper::remove_tree(ddir.as_fd(), &tmp);
                    return Err(e);
                }
                if dst_upper {
                    // The old (empty) target now sits at the temporary name.
                    let _ = upper::remove_tree(ddir.as_fd(), &tmp);
                }
                leftover_at_src = src.upper;
            }
            upper::remove_whiteout(ddir.as_fd(), n2)?;
            if sp.below {
                upper::create_whiteout(sdir.as_fd(), n1)?;
            }
            if leftover_at_src {
                upper::remove_tree(sdir.as_fd(), n1)?;
            }
        }
        self.restore_times(
            &spec,
            &created,
            &[spr.node.rel.as_path(), dpr.node.rel.as_path()],
        );
        {
            let mut t = self.lock();
            if let Some(d) = dst_ino
                && Some(d) != src_ino
            {
                t.unlink_name(p2, &n2.to_owned());
            }
            if let Some(s) = src_ino {
                t.move_name(s, (p1, n1.to_owned()), (p2, n2.to_owned()));
            }
            if let Some(v) = t.views.get_mut(&spr.view) {
                v.epoch += 1;
            }
        }
        drop(g);
        self.emit(
            spr.view,
            FsEvent {
                replaced,
                ..event(
                    FsEventKind::Rename,
                    join_rel(&dpr.node.rel, n2),
                    Some(join_rel(&spr.node.rel, n1)),
                    is_dir,
                )
            },
        );
        Ok(())
    }

    // ---- attributes ----

    pub(crate) fn setattr(
        &self,
        ino: u64,
        sa: SetAttr,
        fh: Option<u64>,
    ) -> R<(FileAttr, Duration)> {
        if ino == ROOT {
            return Err(Er::EPERM);
        }
        let handle = fh.and_then(|fh| self.file(fh).ok());
        let m = match self.structural(ino) {
            Ok(m) => m,
            Err(e) => {
                return self
                    .setattr_handle(ino, sa, handle.as_deref())
                    .map_err(|_| e);
            }
        };
        let g = m.lock().unwrap_or_else(|p| p.into_inner());
        let mut r = match self.resolve(ino) {
            Ok(r) => r,
            Err(e) => {
                drop(g);
                return self
                    .setattr_handle(ino, sa, handle.as_deref())
                    .map_err(|_| e);
            }
        };
        if !r.node.upper {
            self.copy_up(&r, ino)?;
            r = self.resolve(ino)?;
        }
        let root_fd = r.spec.upper_fd.as_fd();
        let kind = r.node.kind;
        if sa.size.is_some() {
            if kind == FileType::Directory {
                return Err(Er::EISDIR);
            }
            if kind != FileType::RegularFile {
                return Err(Er::EINVAL);
            }
        }
        let ts = Timestamps {
            last_access: to_timespec(sa.atime),
            last_modification: to_timespec(sa.mtime),
        };
        let owner = (sa.uid.is_some() || sa.gid.is_some()).then(|| {
            (
                sa.uid.map(rustix::fs::Uid::from_raw),
                sa.gid.map(rustix::fs::Gid::from_raw),
            )
        });
        match upper::split(&r.node.rel) {
            None => {
                // The view root: the upper directory itself.
                let fd = upper::open(
                    root_fd,
                    Path::new(""),
                    OFlags::RDONLY | OFlags::DIRECTORY,
                    Mode::empty(),
                )?;
                if let Some((u, g)) = owner {
                    rustix::fs::fchown(&fd, u, g)?;
                }
                if let Some(mode) = sa.mode {
                    rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode & 0o7777))?;
                }
                if sa.atime.is_some() || sa.mtime.is_some() {
                    rustix::fs::futimens(&fd, &ts)?;
                }
            }
            Some((p, n)) => {
                let pd = upper::dir_fd(root_fd, p)?;
                if let Some(size) = sa.size {
                    match handle.as_deref().map(|h| &h.backing) {
                        Some(Backing::Upper(f))
                            if handle.as_ref().is_some_and(|h| h.ino == ino) =>
                        {
                            rustix::fs::ftruncate(f, size)?;
                        }
                        _ => {
                            let fd = rustix::fs::openat(
                                pd.as_fd(),
                                n,
                                OFlags::WRONLY
                                    | OFlags::NOFOLLOW
                                    | OFlags::CLOEXEC
                                    | OFlags::NONBLOCK,
                                Mode::empty(),
                            )?;
                            rustix::fs::ftruncate(&fd, size)?;
                        }
                    }
                }
                if let Some((u, g)) = owner {
                    rustix::fs::chownat(pd.as_fd(), n, u, g, AtFlags::SYMLINK_NOFOLLOW)?;
                }
                if let Some(mode) = sa.mode
                    && kind != FileType::Symlink
                {
                    rustix::fs::chmodat(
                        pd.as_fd(),
                        n,
                        Mode::from_raw_mode(mode & 0o7777),
                        AtFlags::empty(),
                    )?;
                }
                if sa.atime.is_some() || sa.mtime.is_some() {
                    rustix::fs::utimensat(pd.as_fd(), n, &ts, AtFlags::SYMLINK_NOFOLLOW)?;
                }
            }
        }
        let (attr, _) = self.attr_full(&r.spec, ino, &r.node)?;
        drop(g);
        self.emit(
            r.view,
            event(
                FsEventKind::Modify,
                rel_string(&r.node.rel),
                None,
                kind == FileType::Directory,
            ),
        );
        Ok((attr, UPPER_TTL))
    }

    /// `setattr` of a file that is no longer linked: through its open handle.
    fn setattr_handle(&self, ino: u64, sa: SetAttr, h: Option<&FileH>) -> R<(FileAttr, Duration)> {
        let Some(FileH {
            backing: Backing::Upper(f),
            ..
        }) = h
        else {
            return Err(Er::ENOENT);
        };
        if let Some(size) = sa.size {
            rustix::fs::ftruncate(f, size)?;
        }
        if sa.uid.is_some() || sa.gid.is_some() {
            rustix::fs::fchown(
                f,
                sa.uid.map(rustix::fs::Uid::from_raw),
                sa.gid.map(rustix::fs::Gid::from_raw),
            )?;
        }
        if let Some(mode) = sa.mode {
            rustix::fs::fchmod(f, Mode::from_raw_mode(mode & 0o7777))?;
        }
        if sa.atime.is_some() || sa.mtime.is_some() {
            rustix::fs::futimens(
                f,
                &Timestamps {
                    last_access: to_timespec(sa.atime),
                    last_modification: to_timespec(sa.mtime),
                },
            )?;
        }
        Ok((stat_attr(ino, &rustix::fs::fstat(f)?), Duration::ZERO))
    }

    // ---- files ----

    pub(crate) fn files_lock(&self) -> MutexGuard<'_, std::collections::HashMap<u64, Arc<FileH>>> {
        self.files.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn file(&self, fh: u64) -> R<Arc<FileH>> {
        self.files_lock().get(&fh).cloned().ok_or(Er::EBADF)
    }

    fn add_file(&self, ino: u64, view: u64, backing: Backing) -> u64 {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        let h = Arc::new(FileH {
            ino,
            view,
            backing,
            ev: Mutex::new(EvState::default()),
        });
        self.files_lock().insert(fh, h);
        fh
    }

    /// Whether `open` with these flags changes the file (and so must copy it up).
    pub(crate) fn open_writes(flags: i32) -> bool {
        flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0
    }

    pub(crate) fn open(&self, ino: u64, flags: i32) -> R<(u64, FopenFlags)> {
        if ino == ROOT {
            return Err(Er::EISDIR);
        }
        let mut r = match self.resolve_wait(ino) {
            Ok(r) => r,
            Err(e) => return self.reopen(ino, flags).map_err(|_| e),
        };
        if r.node.kind == FileType::Directory {
            return Err(Er::EISDIR);
        }
        if Self::open_writes(flags) && !r.node.upper {
            let m = self.structural(ino)?;
            let _g = m.lock().unwrap_or_else(|p| p.into_inner());
            r = self.resolve(ino)?;
            if !r.node.upper {
                self.copy_up(&r, ino)?;
                r = self.resolve(ino)?;
            }
        }
        if r.node.upper {
            let fd = upper::open(
                r.spec.upper_fd.as_fd(),
                &r.node.rel,
                host_flags(flags),
                Mode::empty(),
            )?;
            let fh = self.add_file(ino, r.view, Backing::Upper(File::from(fd)));
            Ok((fh, FopenFlags::empty()))
        } else {
            let &(li, id) = r.node.lowers.first().ok_or(Er::EIO)?;
            let copied = self
                .lock()
                .inodes
                .get(&ino)
                .map(|i| i.copied.clone())
                .unwrap_or_default();
            let fh = self.add_file(
                ino,
                r.view,
                Backing::Lower {
                    layer: r.spec.layer(li)?.clone(),
                    node: id,
                    copied,
                    upgraded: Mutex::new(None),
                },
            );
            Ok((fh, FopenFlags::FOPEN_KEEP_CACHE))
        }
    }

    /// Opens a file that is no longer linked (`/proc/<pid>/fd/<n>`) through a handle still open
    /// on it.
    fn reopen(&self, ino: u64, flags: i32) -> R<(u64, FopenFlags)> {
        let h = self
            .files_lock()
            .values()
            .find(|h| h.ino == ino)
            .cloned()
            .ok_or(Er::ENOENT)?;
        match &h.backing {
            Backing::Upper(f) => {
                let proc = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(f));
                let fd = rustix::fs::open(
                    proc.as_str(),
                    host_flags(flags) | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                Ok((
                    self.add_file(ino, h.view, Backing::Upper(File::from(fd))),
                    FopenFlags::empty(),
                ))
            }
            Backing::Lower { layer, node, .. } => {
                if Self::open_writes(flags) {
                    return Err(Er::ENOENT);
                }
                let b = Backing::Lower {
                    layer: layer.clone(),
                    node: *node,
                    copied: Arc::default(),
                    upgraded: Mutex::new(None),
                };
                Ok((self.add_file(ino, h.view, b), FopenFlags::FOPEN_KEEP_CACHE))
            }
        }
    }

    pub(crate) fn read(&self, fh: u64, offset: u64, size: u32) -> R<Vec<u8>> {
        let h = self.file(fh)?;
        let mut buf = vec![0u8; size as usize];
        let n = match &h.backing {
            Backing::Upper(f) => read_full(f, &mut buf, offset)?,
            Backing::Lower {
                layer,
                node,
                copied,
                upgraded,
            } => {
                let up = if copied.load(Ordering::Acquire) {
                    let mut u = upgraded.lock().unwrap_or_else(|p| p.into_inner());
                    if u.is_none()
                        && let Ok(r) = self.resolve(h.ino)
                        && r.node.upper
                        && let Ok(fd) = upper::open(
                            r.spec.upper_fd.as_fd(),
                            &r.node.rel,
                            OFlags::RDONLY,
                            Mode::empty(),
                        )
                    {
                        *u = Some(Arc::new(File::from(fd)));
                    }
                    u.clone()
                } else {
                    None
                };
                match up {
                    Some(f) => read_full(&f, &mut buf, offset)?,
                    None => read_layer_full(layer.as_ref(), *node, &mut buf, offset)?,
                }
            }
        };
        buf.truncate(n);
        Ok(buf)
    }

    pub(crate) fn write(&self, fh: u64, offset: u64, data: &[u8]) -> R<u32> {
        let h = self.file(fh)?;
        let Backing::Upper(f) = &h.backing else {
            return Err(Er::EBADF);
        };
        f.write_all_at(data, offset)?;
        self.note_write(&h);
        Ok(u32::try_from(data.len()).unwrap_or(u32::MAX))
    }

    pub(crate) fn fallocate(&self, fh: u64, offset: u64, len: u64, mode: i32) -> R<()> {
        let h = self.file(fh)?;
        let Backing::Upper(f) = &h.backing else {
            return Err(Er::EBADF);
        };
        rustix::fs::fallocate(
            f,
            rustix::fs::FallocateFlags::from_bits_retain(mode as u32),
            offset,
            len,
        )?;
        self.note_write(&h);
        Ok(())
    }

    /// Reports a write: at once if the handle reported nothing for a second, else when the
    /// handle is flushed or released (so a stream of writes is not a stream of events).
    fn note_write(&self, h: &FileH) {
        let now = Instant::now();
        let emit = {
            let mut ev = h.ev.lock().unwrap_or_else(|p| p.into_inner());
            if ev
                .last
                .is_none_or(|l| now.duration_since(l) >= Duration::from_secs(1))
            {
                ev.last = Some(now);
                ev.pending = false;
                true
            } else {
                ev.pending = true;
                false
            }
        };
        if emit {
            self.emit_modify(h);
        }
    }

    fn emit_modify(&self, h: &FileH) {
        if let Some(path) = self.path_of(h.ino) {
            self.emit(h.view, event(FsEventKind::Modify, path, None, false));
        }
    }

    /// The view-relative path of a linked inode.
    fn path_of(&self, ino: u64) -> Option<String> {
        let t = self.lock();
        let i = t.inodes.get(&ino)?;
        let root = t.views.get(&i.view)?.root;
        let mut parts = Vec::new();
        let mut cur = ino;
        while cur != root {
            let i = t.inodes.get(&cur)?;
            if i.parent == 0 || i.stale {
                return None;
            }
            parts.push(i.name.clone());
            cur = i.parent;
        }
        let mut p = PathBuf::new();
        for part in parts.iter().rev() {
            p.push(part);
        }
        Some(rel_string(&p))
    }

    pub(crate) fn flush(&self, fh: u64) -> R<()> {
        let h = self.file(fh)?;
        let pending = {
            let mut ev = h.ev.lock().unwrap_or_else(|p| p.into_inner());
            std::mem::take(&mut ev.pending)
        };
        if pending {
            self.emit_modify(&h);
        }
        Ok(())
    }

    pub(crate) fn release(&self, fh: u64) {
        let h = self.files_lock().remove(&fh);
        if let Some(h) = h {
            let pending = h.ev.lock().map(|e| e.pending).unwrap_or(false);
            if pending {
                self.emit_modify(&h);
            }
        }
    }

    pub(crate) fn fsync(&self, fh: u64, datasync: bool) -> R<()> {
        let h = self.file(fh)?;
        if let Backing::Upper(f) = &h.backing {
            if datasync {
                rustix::fs::fdatasync(f)?;
            } else {
                rustix::fs::fsync(f)?;
            }
        }
        Ok(())
    }

    // ---- directories ----

    pub(crate) fn opendir(&self, ino: u64) -> R<u64> {
        let dh = if ino == ROOT {
            let t = self.lock();
            let mut entries = vec![
                (OsString::from("."), FileType::Directory, ROOT),
                (OsString::from(".."), FileType::Directory, ROOT),
            ];
            for (name, vid) in &t.names {
                if let Some(v) = t.views.get(vid) {
                    entries.push((OsString::from(name), FileType::Directory, v.root));
                }
            }
            DirH {
                ino,
                view: 0,
                entries,
            }
        } else {
            let r = self.resolve_wait(ino)?;
            if r.node.kind != FileType::Directory {
                return Err(Er::ENOTDIR);
            }
            let list = merge::list(&r.spec, &r.node)?;
            let parent = self
                .lock()
                .inodes
                .get(&ino)
                .map(|i| if i.parent == 0 { ino } else { i.parent })
                .unwrap_or(ino);
            let mut entries = Vec::with_capacity(list.len() + 2);
            entries.push((OsString::from("."), FileType::Directory, ino));
            entries.push((OsString::from(".."), FileType::Directory, parent));
            entries.extend(list.into_iter().map(|(n, k)| (n, k, 0)));
            DirH {
                ino,
                view: r.view,
                entries,
            }
        };
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.dirs_lock().insert(fh, Arc::new(dh));
        Ok(fh)
    }

    pub(crate) fn dirs_lock(&self) -> MutexGuard<'_, std::collections::HashMap<u64, Arc<DirH>>> {
        self.dirs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Entries of open directory `fh` from `offset`, with inode numbers (known ones, or new
    /// entries the kernel may look up next). `add` returns true when the reply is full.
    pub(crate) fn readdir(
        &self,
        fh: u64,
        offset: u64,
        mut add: impl FnMut(u64, u64, FileType, &OsStr) -> bool,
    ) -> R<()> {
        let dh = self.dirs_lock().get(&fh).cloned().ok_or(Er::EBADF)?;
        let mut t = self.lock();
        let attached = t
            .inodes
            .get(&dh.ino)
            .is_some_and(|i| !i.stale && (i.parent != 0 || dh.ino == ROOT));
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        for (i, (name, kind, hint)) in dh.entries.iter().enumerate().skip(start) {
            let ino = if *hint != 0 {
                *hint
            } else if let Some(&x) = t.index.get(&(dh.ino, name.clone())) {
                x
            } else if attached {
                let x = t.alloc(dh.view, dh.ino, name.clone(), *kind);
                t.note_zero_ref(x);
                x
            } else {
                u64::MAX - i as u64
            };
            if add(ino, i as u64 + 1, *kind, name) {
                break;
            }
        }
        Ok(())
    }

    pub(crate) fn releasedir(&self, fh: u64) {
        self.dirs_lock().remove(&fh);
    }

    pub(crate) fn fsyncdir(&self, ino: u64) -> R<()> {
        if ino == ROOT {
            return Ok(());
        }
        let r = self.resolve_wait(ino)?;
        if r.node.upper {
            let fd = upper::open(
                r.spec.upper_fd.as_fd(),
                &r.node.rel,
                OFlags::RDONLY | OFlags::DIRECTORY,
                Mode::empty(),
            )?;
            rustix::fs::fsync(&fd)?;
        }
        Ok(())
    }

    /// `SystemTime` now, for the root directory after view changes.
    pub(crate) fn touch_root(t: &mut Table) {
        t.root_mtime = SystemTime::now();
    }
}
