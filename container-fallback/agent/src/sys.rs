//! The few libc calls std does not wrap, declared by hand (the agent has no crate
//! dependencies), with safe wrappers. Constants are Linux's (x86_64 and aarch64 agree on all).

use std::ffi::CStr;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::raw::{c_char, c_int, c_ulong};

pub const SIGHUP: i32 = 1;
pub const SIGINT: i32 = 2;
pub const SIGKILL: i32 = 9;
pub const SIGTERM: i32 = 15;

const P_ALL: c_int = 0;
const WEXITED: c_int = 4;
const WNOHANG: c_int = 1;
const WNOWAIT: c_int = 0x0100_0000;
const SIG_BLOCK: c_int = 0;
const SIG_SETMASK: c_int = 2;
const F_GETFD: c_int = 1;
const F_SETFD: c_int = 2;
const FD_CLOEXEC: c_int = 1;
const O_RDWR: c_int = 2;
const O_NOCTTY: c_int = 0o400;
const O_CLOEXEC: c_int = 0o2_000_000;
const PR_SET_CHILD_SUBREAPER: c_int = 36;
const TIOCSCTTY: c_ulong = 0x540e;
const TIOCSWINSZ: c_ulong = 0x5414;

/// `siginfo_t`: 128 bytes; `si_pid` is at byte 16 on 64-bit Linux.
#[repr(C, align(8))]
struct SigInfo([u8; 128]);

/// `sigset_t` of glibc: 1024 bits.
#[repr(C)]
pub struct SigSet([u64; 16]);

#[repr(C)]
struct WinSize {
    ws_row: u16,
    ws_col: u16,
    ws_xpixel: u16,
    ws_ypixel: u16,
}

extern "C" {
    fn waitid(idtype: c_int, id: u32, infop: *mut SigInfo, options: c_int) -> c_int;
    fn waitpid(pid: i32, status: *mut c_int, options: c_int) -> i32;
    fn setsid() -> i32;
    fn kill(pid: i32, sig: c_int) -> c_int;
    fn getpid() -> i32;
    fn ioctl(fd: c_int, request: c_ulong, ...) -> c_int;
    fn fcntl(fd: c_int, cmd: c_int, ...) -> c_int;
    fn dup2(old: c_int, new: c_int) -> c_int;
    fn pipe2(fds: *mut c_int, flags: c_int) -> c_int;
    fn posix_openpt(flags: c_int) -> c_int;
    fn grantpt(fd: c_int) -> c_int;
    fn unlockpt(fd: c_int) -> c_int;
    fn ptsname_r(fd: c_int, buf: *mut c_char, len: usize) -> c_int;
    fn prctl(option: c_int, arg2: c_ulong, ...) -> c_int;
    fn close_range(first: u32, last: u32, flags: c_int) -> c_int;
    fn sigemptyset(set: *mut SigSet) -> c_int;
    fn sigaddset(set: *mut SigSet, sig: c_int) -> c_int;
    fn pthread_sigmask(how: c_int, set: *const SigSet, old: *mut SigSet) -> c_int;
    fn sigwait(set: *const SigSet, sig: *mut c_int) -> c_int;
}

fn check(r: c_int) -> io::Result<c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Our pid.
pub fn pid() -> i32 {
    // SAFETY: getpid has no preconditions.
    unsafe { getpid() }
}

/// Blocks until some child has ended, without reaping it; its pid.
pub fn peek_exited_child() -> io::Result<i32> {
    let mut info = SigInfo([0; 128]);
    // SAFETY: `info` is a valid, writable siginfo_t-sized buffer.
    check(unsafe { waitid(P_ALL, 0, &mut info, WEXITED | WNOWAIT) })?;
    Ok(i32::from_ne_bytes([
        info.0[16], info.0[17], info.0[18], info.0[19],
    ]))
}

/// Reaps `pid` if it is an ended child of ours; its wait status.
pub fn reap(pid: i32) -> Option<i32> {
    let mut status: c_int = 0;
    // SAFETY: `status` is a valid out-pointer.
    let r = unsafe { waitpid(pid, &mut status, WNOHANG) };
    (r == pid).then_some(status)
}

/// Sends `sig` to `pid` (negative: a process group).
pub fn signal(pid: i32, sig: i32) -> io::Result<()> {
    // SAFETY: kill has no memory-safety preconditions.
    check(unsafe { kill(pid, sig) }).map(drop)
}

/// Whether the process group `pgid` still has members.
pub fn group_alive(pgid: i32) -> bool {
    // Signal 0 only checks; EPERM still means it exists.
    match signal(-pgid, 0) {
        Ok(()) => true,
        Err(e) => e.raw_os_error() != Some(3),
    }
}

/// Marks `fd` close-on-exec.
pub fn set_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl F_GETFD/F_SETFD on an fd number touches no memory.
    let flags = check(unsafe { fcntl(fd, F_GETFD) })?;
    // SAFETY: as above.
    check(unsafe { fcntl(fd, F_SETFD, flags | FD_CLOEXEC) }).map(drop)
}

/// Marks every descriptor from 3 up close-on-exec: whatever our parent leaked to us (a
/// jobserver pipe, a shell's descriptors) must not reach the commands we run.
pub fn cloexec_inherited() {
    const CLOSE_RANGE_CLOEXEC: c_int = 1 << 2;
    // SAFETY: close_range with CLOEXEC only changes descriptor flags.
    if unsafe { close_range(3, u32::MAX, CLOSE_RANGE_CLOEXEC) } == 0 {
        return;
    }
    // Kernels before 5.11: one by one.
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        let fds: Vec<RawFd> = dir
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        for fd in fds.into_iter().filter(|&fd| fd > 2) {
            let _ = set_cloexec(fd);
        }
    }
}

/// A close-on-exec pipe: (read end, write end).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds: [c_int; 2] = [-1, -1];
    // SAFETY: `fds` has room for the two descriptors.
    check(unsafe { pipe2(fds.as_mut_ptr(), O_CLOEXEC) })?;
    // SAFETY: pipe2 succeeded, so both are fresh descriptors we own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Subreaper: orphans of our descendants come to us (as they come to PID 1), so the reaper sees
/// the same world whether or not the agent is init.
pub fn become_subreaper() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    check(unsafe { prctl(PR_SET_CHILD_SUBREAPER, 1) }).map(drop)
}

fn sigset(signals: &[i32]) -> SigSet {
    let mut set = SigSet([0; 16]);
    // SAFETY: `set` is a valid sigset_t.
    unsafe { sigemptyset(&mut set) };
    for &s in signals {
        // SAFETY: as above; the signal numbers are valid.
        unsafe { sigaddset(&mut set, s) };
    }
    set
}

/// Blocks `signals` in this thread (and the threads it starts later).
pub fn block_signals(signals: &[i32]) -> io::Result<()> {
    let set = sigset(signals);
    // SAFETY: `set` is initialised; a null old set is allowed.
    let r = unsafe { pthread_sigmask(SIG_BLOCK, &set, std::ptr::null_mut()) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    Ok(())
}

/// Waits for one of `signals` (which must be blocked); which one.
pub fn wait_signal(signals: &[i32]) -> io::Result<i32> {
    let set = sigset(signals);
    let mut sig: c_int = 0;
    // SAFETY: both pointers are valid.
    let r = unsafe { sigwait(&set, &mut sig) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    Ok(sig)
}

/// In a child between fork and exec: no signal blocked (the agent blocks SIGTERM/SIGINT in all
/// its threads and a mask survives exec). Async-signal-safe.
pub fn child_unblock_signals() -> io::Result<()> {
    let set = sigset(&[]);
    // SAFETY: `set` is initialised; a null old set is allowed.
    let r = unsafe { pthread_sigmask(SIG_SETMASK, &set, std::ptr::null_mut()) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    Ok(())
}

/// In a child between fork and exec: the new session's leader. Async-signal-safe.
pub fn child_setsid() -> io::Result<()> {
    // SAFETY: setsid has no preconditions.
    check(unsafe { setsid() }).map(drop)
}

/// In a child between fork and exec: `fd` as the controlling terminal. Async-signal-safe.
pub fn child_set_ctty(fd: RawFd) -> io::Result<()> {
    // SAFETY: TIOCSCTTY takes an integer argument.
    check(unsafe { ioctl(fd, TIOCSCTTY, 0 as c_int) }).map(drop)
}

/// In a child between fork and exec: `from` duplicated onto `to`, inherited across exec.
/// Async-signal-safe.
pub fn child_dup_to(from: RawFd, to: RawFd) -> io::Result<()> {
    if from == to {
        // dup2 would do nothing and leave close-on-exec set.
        // SAFETY: fcntl on an fd number touches no memory.
        return check(unsafe { fcntl(to, F_SETFD, 0) }).map(drop);
    }
    // SAFETY: dup2 on fd numbers touches no memory.
    check(unsafe { dup2(from, to) }).map(drop)
}

/// Sets the window size of the terminal `fd`. Async-signal-safe.
pub fn set_winsize(fd: RawFd, cols: u16, rows: u16) -> io::Result<()> {
    let ws = WinSize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: `ws` is a valid struct winsize for the duration of the call.
    check(unsafe { ioctl(fd, TIOCSWINSZ, &ws as *const WinSize) }).map(drop)
}

/// A new PTY: the master (close-on-exec) and the slave's path.
pub fn open_pty() -> io::Result<(OwnedFd, String)> {
    // SAFETY: posix_openpt with flags only.
    let fd = check(unsafe { posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC) })?;
    // SAFETY: posix_openpt returned a fresh descriptor we own.
    let master = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: `fd` is an open PTY master.
    check(unsafe { grantpt(fd) })?;
    // SAFETY: as above.
    check(unsafe { unlockpt(fd) })?;
    let mut buf = [0 as c_char; 128];
    // SAFETY: `buf` is writable for its length.
    let r = unsafe { ptsname_r(fd, buf.as_mut_ptr(), buf.len()) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    // SAFETY: ptsname_r succeeded, so `buf` holds a NUL-terminated string.
    let name = unsafe { CStr::from_ptr(buf.as_ptr()) };
    Ok((master, name.to_string_lossy().into_owned()))
}

/// Flags to open a PTY slave without it becoming our controlling terminal.
pub const OPEN_NOCTTY: i32 = O_NOCTTY;
