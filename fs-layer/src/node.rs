//! The read-only layer interface the copy-on-write view stacks.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

/// A node (inode) inside one layer. Only meaningful to the layer that returned it.
pub type NodeId = u64;

/// What kind of object a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeKind {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink,
    /// Character device.
    CharDevice,
    /// Block device.
    BlockDevice,
    /// Named pipe.
    Fifo,
    /// Unix socket.
    Socket,
}

/// Metadata of a node in a read-only layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeAttr {
    /// Kind of object.
    pub kind: NodeKind,
    /// Permission bits, including setuid/setgid/sticky (`0o7777` mask).
    pub perm: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time, seconds since the epoch (squashfs keeps whole seconds).
    pub mtime: i64,
    /// Size in bytes: file length, symlink target length, 0 for others (directories report
    /// whatever the layer knows; callers must not rely on it).
    pub size: u64,
    /// Device number for character and block devices (Linux `makedev` encoding), else 0.
    pub rdev: u64,
    /// Link count as stored in the layer.
    pub nlink: u32,
}

/// A read-only tree: a squashfs image ([`crate::image::Image`]) or, in tests, a plain directory.
///
/// Implementations are immutable after opening and safe to share between threads. Every method
/// may be called with any `NodeId` the same layer returned; a corrupt image yields an
/// `io::Error` (kind `InvalidData`), never garbage and never a panic.
pub trait Layer: Send + Sync + std::fmt::Debug {
    /// The root directory.
    fn root(&self) -> NodeId;
    /// The child `name` of directory `dir`, if any. Whiteout names are returned like any other
    /// name: interpreting them is the view's job.
    fn lookup(&self, dir: NodeId, name: &OsStr) -> Option<NodeId>;
    /// Metadata of `node`.
    fn attr(&self, node: NodeId) -> NodeAttr;
    /// The entries of directory `dir`, sorted by name (without `.` and `..`).
    fn children(&self, dir: NodeId) -> std::io::Result<Vec<(OsString, NodeId)>>;
    /// The target of symlink `node`.
    fn readlink(&self, node: NodeId) -> std::io::Result<PathBuf>;
    /// Reads up to `buf.len()` bytes of file `node` at `offset`; returns how many were read
    /// (0 at or past the end).
    fn read_at(&self, node: NodeId, offset: u64, buf: &mut [u8]) -> std::io::Result<usize>;
}
