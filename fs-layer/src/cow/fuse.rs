//! The `fuser::Filesystem` implementation: request decoding, freeze gating and replies.

use std::ffi::OsStr;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use fuser::{
    AccessFlags, BsdFileFlags, Errno, FileHandle, Filesystem, FopenFlags, Generation, INodeNo,
    InitFlags, KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr,
    Request, TimeOrNow, WriteFlags,
};

use super::Views;
use super::freeze::Job;
use super::ops::{Ctx, SetAttr};
use super::table::ROOT;
use super::upper::{Er, R};

/// The filesystem served by the session.
pub(crate) struct Fs {
    pub(crate) v: Arc<Views>,
}

fn ctx(req: &Request) -> Ctx {
    Ctx {
        uid: req.uid(),
        gid: req.gid(),
    }
}

fn entry(v: &Views, reply: ReplyEntry, r: R<(fuser::FileAttr, std::time::Duration)>) {
    match r {
        Ok((a, ttl)) => reply.entry(&ttl, &v.present(a), Generation(0)),
        Err(e) => reply.error(e.errno()),
    }
}

fn empty(reply: ReplyEmpty, r: R<()>) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e.errno()),
    }
}

impl Views {
    /// Runs a change to `ino`'s view now, or when the view thaws; refuses it on a read-only
    /// view.
    pub(crate) fn mutate(&self, ino: u64, job: Job) {
        if ino == ROOT {
            job(Ok(()));
            return;
        }
        let cell = {
            let t = self.lock();
            match t.view_of(ino) {
                None => Err(Er::ENOENT),
                Some(v) if v.spec.spec.read_only => Err(Er::EROFS),
                Some(v) => Ok(v.freeze.clone()),
            }
        };
        match cell {
            Ok(cell) => cell.run_or_defer(job),
            Err(e) => job(Err(e)),
        }
    }

    /// The freeze cell of an open file's view.
    fn handle_cell(&self, fh: u64) -> Option<Arc<super::freeze::FreezeCell>> {
        let view = self.file(fh).ok()?.view;
        self.lock().views.get(&view).map(|v| v.freeze.clone())
    }
}

impl std::fmt::Debug for Fs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fs").finish_non_exhaustive()
    }
}

#[allow(clippy::too_many_arguments, reason = "the fuser trait's signatures")]
impl Filesystem for Fs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.add_capabilities(InitFlags::FUSE_PARALLEL_DIROPS);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        entry(&self.v, reply, self.v.lookup(parent.0, name));
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.v.forget(&[(ino.0, nlookup)]);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.v.getattr(ino.0, fh.map(|f| f.0)) {
            Ok((a, ttl)) => reply.attr(&ttl, &self.v.present(a)),
            Err(e) => reply.error(e.errno()),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        if self.v.chown_refused(uid, gid) {
            reply.error(Er::EPERM.errno());
            return;
        }
        // In an owned namespace a chown to the owner changes nothing anyone can see.
        let (uid, gid) = if self.v.owned() {
            (None, None)
        } else {
            (uid, gid)
        };
        let sa = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime,
            mtime,
        };
        if sa.mode.is_none()
            && sa.uid.is_none()
            && sa.gid.is_none()
            && sa.size.is_none()
            && sa.atime.is_none()
            && sa.mtime.is_none()
        {
            // Nothing to change (e.g. only ctime): answer without copying up.
            match self.v.getattr(ino.0, fh.map(|f| f.0)) {
                Ok((a, ttl)) => reply.attr(&ttl, &self.v.present(a)),
                Err(e) => reply.error(e.errno()),
            }
            return;
        }
        let v = self.v.clone();
        self.v.mutate(
            ino.0,
            Box::new(
                move |gate| match gate.and_then(|()| v.setattr(ino.0, sa, fh.map(|f| f.0))) {
                    Ok((a, ttl)) => reply.attr(&ttl, &v.present(a)),
                    Err(e) => reply.error(e.errno()),
                },
            ),
        );
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.v.readlink(ino.0) {
            Ok(d) => reply.data(&d),
            Err(e) => reply.error(e.errno()),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let (c, name, v) = (ctx(req), name.to_owned(), self.v.clone());
        self.v.mutate(
            parent.0,
            Box::new(move |gate| {
                entry(
                    &v,
                    reply,
                    gate.and_then(|()| v.mknod(c, parent.0, &name, mode, rdev)),
                );
            }),
        );
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let (c, name, v) = (ctx(req), name.to_owned(), self.v.clone());
        self.v.mutate(
            parent.0,
            Box::new(move |gate| {
                entry(
                    &v,
                    reply,
                    gate.and_then(|()| v.mkdir(c, parent.0, &name, mode)),
                )
            }),
        );
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let (name, v) = (name.to_owned(), self.v.clone());
        self.v.mutate(
            parent.0,
            Box::new(move |gate| empty(reply, gate.and_then(|()| v.unlink(parent.0, &name)))),
        );
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let (name, v) = (name.to_owned(), self.v.clone());
        self.v.mutate(
            parent.0,
            Box::new(move |gate| empty(reply, gate.and_then(|()| v.rmdir(parent.0, &name)))),
        );
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let (c, name, target, v) = (
            ctx(req),
            link_name.to_owned(),
            target.to_owned(),
            self.v.clone(),
        );
        self.v.mutate(
            parent.0,
            Box::new(move |gate| {
                entry(
                    &v,
                    reply,
                    gate.and_then(|()| v.symlink(c, parent.0, &name, &target)),
                );
            }),
        );
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let (name, newname, v) = (name.to_owned(), newname.to_owned(), self.v.clone());
        self.v.mutate(
            parent.0,
            Box::new(move |gate| {
                empty(
                    reply,
                    gate.and_then(|()| {
                        v.rename_entry(parent.0, &name, newparent.0, &newname, flags.bits())
                    }),
                );
            }),
        );
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let (newname, v) = (newname.to_owned(), self.v.clone());
        self.v.mutate(
            newparent.0,
            Box::new(move |gate| {
                entry(
                    &v,
                    reply,
                    gate.and_then(|()| v.link(ino.0, newparent.0, &newname)),
                )
            }),
        );
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let flags = flags.0;
        if !Views::open_writes(flags) {
            match self.v.open(ino.0, flags) {
                Ok((fh, ff)) => reply.opened(FileHandle(fh), ff),
                Err(e) => reply.error(e.errno()),
            }
            return;
        }
        let v = self.v.clone();
        self.v.mutate(
            ino.0,
            Box::new(move |gate| match gate.and_then(|()| v.open(ino.0, flags)) {
                Ok((fh, ff)) => reply.opened(FileHandle(fh), ff),
                Err(e) => reply.error(e.errno()),
            }),
        );
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.v.read(fh.0, offset, size) {
            Ok(d) => reply.data(&d),
            Err(e) => reply.error(e.errno()),
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let Some(cell) = self.v.handle_cell(fh.0) else {
            // The view is gone; the open file still works.
            match self.v.write(fh.0, offset, data) {
                Ok(n) => reply.written(n),
                Err(e) => reply.error(e.errno()),
            }
            return;
        };
        if let Some(_token) = cell.try_enter() {
            match self.v.write(fh.0, offset, data) {
                Ok(n) => reply.written(n),
                Err(e) => reply.error(e.errno()),
            }
            return;
        }
        let (data, v) = (data.to_vec(), self.v.clone());
        cell.run_or_defer(Box::new(move |gate| {
            match gate.and_then(|()| v.write(fh.0, offset, &data)) {
                Ok(n) => reply.written(n),
                Err(e) => reply.error(e.errno()),
            }
        }));
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        empty(reply, self.v.flush(fh.0));
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.v.release(fh.0);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        empty(reply, self.v.fsync(fh.0, datasync));
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.v.opendir(ino.0) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(e.errno()),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let r = self.v.readdir(fh.0, offset, |ino, off, kind, name| {
            reply.add(INodeNo(ino), off, kind, name)
        });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e.errno()),
        }
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.v.releasedir(fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        empty(reply, self.v.fsyncdir(ino.0));
    }

    fn statfs(&self, _req: &Request, ino: INodeNo, reply: ReplyStatfs) {
        match self.v.statfs(ino.0) {
            Ok(s) => reply.statfs(
                s.f_blocks,
                s.f_bfree,
                s.f_bavail,
                s.f_files,
                s.f_ffree,
                u32::try_from(s.f_bsize).unwrap_or(4096),
                u32::try_from(s.f_namemax).unwrap_or(255),
                u32::try_from(s.f_frsize).unwrap_or(4096),
            ),
            Err(e) => reply.error(e.errno()),
        }
    }

    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::ENOSYS);
    }

    fn getxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _size: u32,
        reply: ReplyXattr,
    ) {
        reply.error(Errno::ENOSYS);
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, _size: u32, reply: ReplyXattr) {
        reply.error(Errno::ENOSYS);
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::ENOSYS);
    }

    /// No file here is a device: every ioctl (a program asking whether a file is a terminal,
    /// `TCGETS`, is the common one) is "not a typewriter", answered quietly.
    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: fuser::FileHandle,
        _flags: fuser::IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: fuser::ReplyIoctl,
    ) {
        reply.error(Errno::ENOTTY);
    }

    /// Regular files and directories are always ready: `ENOSYS` tells the kernel so (it then
    /// stops asking), quietly (fuser's default logs a warning per call).
    fn poll(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _ph: fuser::PollNotifier,
        _events: fuser::PollEvents,
        _flags: fuser::PollFlags,
        reply: fuser::ReplyPoll,
    ) {
        reply.error(Errno::ENOSYS);
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        empty(reply, self.v.access(ino.0));
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let (c, name, v) = (ctx(req), name.to_owned(), self.v.clone());
        self.v.mutate(
            parent.0,
            Box::new(move |gate| {
                match gate.and_then(|()| v.create(c, parent.0, &name, mode, flags)) {
                    Ok((a, ttl, fh, ff)) => {
                        reply.created(&ttl, &v.present(a), Generation(0), FileHandle(fh), ff)
                    }
                    Err(e) => reply.error(e.errno()),
                }
            }),
        );
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let v = self.v.clone();
        let job: Job = Box::new(move |gate| {
            empty(
                reply,
                gate.and_then(|()| v.fallocate(fh.0, offset, length, mode)),
            )
        });
        match self.v.handle_cell(fh.0) {
            Some(cell) => cell.run_or_defer(job),
            None => job(Ok(())),
        }
    }
}
