//! Squashfs images: written from a directory tree with backhand, read lazily.
//!
//! # Writing ([`write_tree`])
//! The tree is walked without following symlinks, each directory's entries sorted by name, and
//! written with backhand's `FilesystemWriter` (zstd at [`WriteOptions`]). The walk uses
//! directory file descriptors (at most 64 open; directories further up are reopened when the
//! walk returns to them). backhand keeps every file's reader until `write()` and drains them
//! one after the other there, so each file is opened on its first read and closed at its end:
//! one file descriptor at a time. Files are opened relative to the source directory with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` (or one `O_NOFOLLOW` component at a time
//! where `openat2` is unavailable) and must still be regular files: a tree changed while it is
//! written (a directory swapped for a symlink, say) can make the write fail, never read
//! anything outside `src`. The same tree gives the same bytes (the superblock time is the
//! newest mtime in the tree).
//!
//! Kept: names (any bytes, non-UTF-8 included), kinds (files, directories, symlinks, character
//! and block devices, FIFOs, sockets), permission bits (`0o7777`), uid, gid and mtime of every
//! node, the root directory included (backhand's writer can set the root's mode, uid and gid
//! but not its mtime; the root header is therefore taken from a reader of an empty image whose
//! root header is patched, via `FilesystemWriter::from_fs_reader`), and device numbers.
//!
//! Lost (squashfs or backhand cannot store it):
//! - **Hard links**: backhand has no hard-link support, so every link is written as its own
//!   inode (link count 1) with its own copy of the data. backhand's content deduplication is
//!   turned off: it matches files on a 64-bit xxh64 hash and the length without comparing
//!   bytes, so a crafted collision could make one file's content replace another's.
//! - **Extended attributes** (and so ACLs and file capabilities): not written.
//! - **Times**: only the mtime, in whole seconds, clamped to 1970..2106 (squashfs stores an
//!   unsigned 32-bit time); no sub-second part, no atime, no ctime.
//! - **Symlink targets longer than 255 bytes**: backhand's reader rejects them, so
//!   [`write_tree`] refuses them ([`FsError::Invalid`]) rather than write an image it could not
//!   read back; an mksquashfs image holding one is reported [`FsError::Corrupt`].
//!
//! A block of zeros is stored as a hole (and extracted as one). backhand writes the last
//! partial block of a file larger than a block as a short block, not into a fragment (files
//! smaller than a block do share fragment blocks); mksquashfs images with tail fragments are
//! read all the same.
//!
//! # Reading ([`Image`])
//! [`Image::open`] reads the superblock and checks it against the format and the file size,
//! walks and decompresses every metadata block backhand is about to read (each must hold at
//! most 8 KiB; the inode and directory tables at most 32768 blocks each; at most 2^22 inodes,
//! 2^22 fragment blocks and 2^23 directory entries), then lets backhand's `Squashfs` parse the
//! inode, directory, fragment and id tables, and builds an index of every node from them,
//! checking every reference (see `index.rs` for why not `FilesystemReader`). backhand runs
//! under `catch_unwind`, and so does every decompression: a panic is reported as corruption.
//! No file data is read at open.
//!
//! File data is read with `pread` (no lock around the file) and decompressed with backhand's
//! decompressor into a bounded block cache (32 MiB by default, [`Image::open_with`],
//! [`Image::cache_stats`]), keyed by the block's place in the image so that a fragment block
//! shared by many small files is decompressed once; it is a sharded LRU whose locks are held
//! only to look up or insert, never during I/O or decompression. A read at any offset
//! decompresses only the blocks it touches. Every decompressed block must have exactly the
//! length the file's size implies, and a tail must lie inside its fragment block; anything else
//! is an `InvalidData` error (squashfs has no checksums: a damaged block stored uncompressed
//! cannot be detected).

mod cache;
mod extract;
mod format;
mod index;
mod write;

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, BufReader, Seek, SeekFrom, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::FileExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use backhand::Squashfs;
use backhand::compression::Compressor;

use cache::BlockCache;
pub use cache::CacheStats;
use format::{DATA_UNCOMPRESSED, SUPERBLOCK_SIZE, Superblock};
use index::{FileData, Node, NodeData};

use crate::node::{Layer, NodeAttr, NodeId, NodeKind};
use crate::{FsError, Result};

/// How images are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOptions {
    /// zstd compression level (1..=22). Default 3.
    pub compression_level: i32,
    /// Data block size in bytes: a power of two from 4 KiB to 1 MiB. Default 128 KiB.
    pub block_size: u32,
}

impl Default for WriteOptions {
    fn default() -> Self {
        Self {
            compression_level: 3,
            block_size: 128 * 1024,
        }
    }
}

impl WriteOptions {
    /// Checks the options.
    ///
    /// # Errors
    /// [`FsError::Invalid`] for a level outside 1..=22 or a block size that is not a power of
    /// two from 4 KiB to 1 MiB.
    pub fn validate(&self) -> Result<()> {
        if !(1..=22).contains(&self.compression_level) {
            return Err(FsError::Invalid(format!(
                "compression level {} is not in 1..=22",
                self.compression_level
            )));
        }
        let bs = self.block_size;
        if !bs.is_power_of_two() || !(4096..=1 << 20).contains(&bs) {
            return Err(FsError::Invalid(format!(
                "block size {bs} is not a power of two from 4 KiB to 1 MiB"
            )));
        }
        Ok(())
    }
}

/// What an image holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TreeStats {
    /// Regular files.
    pub files: u64,
    /// Directories (the root included).
    pub dirs: u64,
    /// Symlinks.
    pub symlinks: u64,
    /// Devices, FIFOs, sockets.
    pub others: u64,
    /// Sum of regular file sizes.
    pub bytes: u64,
}

/// Progress of a long operation: called now and then with the totals so far.
pub type Progress<'a> = &'a (dyn Fn(TreeStats) + Sync);

/// How often (in files) progress is reported.
const PROGRESS_EVERY: u64 = 256;

/// Default byte budget of an image's block cache.
pub const DEFAULT_CACHE_BYTES: usize = 32 << 20;

/// Writes the tree under `src` (not following symlinks) as a squashfs image to `out`.
/// Whiteout files are written like any other file; names starting `.wh..wh.` other than the
/// opaque marker (the view's temporaries) are skipped. See the [module docs](self) for what is
/// kept and what is lost. `progress` is called every 256 files written and once at the end.
/// `out` must be empty and at its start (the superblock is written last, at offset 0); it is
/// written with seeks back, so hash the finished file rather than the stream.
///
/// # Errors
/// [`FsError::Invalid`] for bad options (or a symlink target longer than 255 bytes),
/// [`FsError::Io`] when the tree cannot be read or the output written.
pub fn write_tree<W: Write + Seek>(
    src: &Path,
    out: W,
    opts: &WriteOptions,
    progress: Progress<'_>,
) -> Result<TreeStats> {
    write::write_tree(src, out, opts, progress)
}

/// An opened squashfs image. Immutable; cheap to share (`Arc`).
pub struct Image {
    path: PathBuf,
    /// The file name, used in errors.
    label: String,
    file: File,
    block_size: u32,
    compressor: Compressor,
    nodes: Vec<Node>,
    files: Vec<FileData>,
    frags: Box<[index::Frag]>,
    stats: TreeStats,
    cache: BlockCache,
}

impl std::fmt::Debug for Image {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Image")
            .field("path", &self.path)
            .field("block_size", &self.block_size)
            .field("compressor", &self.compressor)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// Why copying a file out failed.
enum CopyError {
    /// Reading the image.
    Read(io::Error),
    /// Writing the copy.
    Write(io::Error),
}

/// A piece of a file: zeros (a hole) or a range of a decompressed block.
enum Chunk {
    Zeros(usize),
    Data(Arc<[u8]>, usize, usize),
}

fn invalid_data(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

impl Image {
    /// Opens and validates an image: superblock, compressor, inode and directory tables.
    /// A truncated or corrupt image is [`FsError::Corrupt`].
    ///
    /// # Errors
    /// [`FsError::Corrupt`], or [`FsError::Io`] when the file cannot be opened.
    pub fn open(path: &Path) -> Result<Arc<Image>> {
        Self::open_with(path, DEFAULT_CACHE_BYTES)
    }

    /// As [`Image::open`], with a block cache of `cache_bytes` (0: no caching).
    ///
    /// # Errors
    /// As [`Image::open`].
    pub fn open_with(path: &Path, cache_bytes: usize) -> Result<Arc<Image>> {
        let label = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let corrupt = |reason: String| FsError::Corrupt {
            image: label.clone(),
            reason,
        };
        let file = File::open(path).map_err(|e| FsError::io("open image", path, e))?;
        let len = file
            .metadata()
            .map_err(|e| FsError::io("stat image", path, e))?
            .len();
        if len < SUPERBLOCK_SIZE {
            return Err(corrupt(format!("truncated: {len} bytes, no superblock")));
        }
        let mut raw = [0u8; SUPERBLOCK_SIZE as usize];
        file.read_exact_at(&mut raw, 0)
            .map_err(|e| FsError::io("read image", path, e))?;
        let sb = Superblock::parse(&raw);
        sb.check(len).map_err(corrupt)?;
        let compressor = sb.compressor().map_err(corrupt)?;
        let mut clone = file
            .try_clone()
            .map_err(|e| FsError::io("open image", path, e))?;
        let parsed = catch_unwind(AssertUnwindSafe(|| -> std::result::Result<_, String> {
            format::prescan(&file, &sb)?;
            // The clone shares the file position, and backhand reads from where it is.
            clone
                .seek(SeekFrom::Start(0))
                .map_err(|e| format!("I/O error: {e}"))?;
            let sq = Squashfs::from_reader(BufReader::with_capacity(64 * 1024, clone))
                .map_err(|e| format::describe(&e))?;
            index::build(&sq, &sb)
        }));
        let index = match parsed {
            Ok(Ok(index)) => index,
            Ok(Err(reason)) => return Err(corrupt(reason)),
            Err(_) => return Err(corrupt("the squashfs parser panicked".into())),
        };
        Ok(Arc::new(Image {
            path: path.to_path_buf(),
            label,
            file,
            block_size: sb.block_size,
            compressor,
            nodes: index.nodes,
            files: index.files,
            frags: index.frags,
            stats: index.stats,
            cache: BlockCache::new(cache_bytes, sb.block_size),
        }))
    }

    /// The image file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Counts of what the image holds.
    pub fn stats(&self) -> TreeStats {
        self.stats
    }

    /// The data block size of the image.
    pub fn block_size(&self) -> u32 {
        self.block_size
    }

    /// Counters of the block cache.
    pub fn cache_stats(&self) -> CacheStats {
        self.cache.stats()
    }

    /// Looks up a `/`-separated path relative to the root (`""` is the root).
    pub fn lookup_path(&self, rel: &Path) -> Option<NodeId> {
        let mut cur: u32 = 0;
        for c in rel.components() {
            match c {
                Component::RootDir | Component::CurDir => {}
                Component::ParentDir => cur = self.nodes[cur as usize].parent,
                Component::Normal(name) => cur = self.child(cur, name.as_bytes())?,
                Component::Prefix(_) => return None,
            }
        }
        Some(NodeId::from(cur))
    }

    /// The path of `node` relative to the root (`""` for the root).
    pub fn node_path(&self, node: NodeId) -> Option<PathBuf> {
        let mut cur = self.node(node)?;
        let mut parts = Vec::new();
        let mut id = u32::try_from(node).ok()?;
        while id != 0 {
            parts.push(&cur.name);
            id = cur.parent;
            cur = &self.nodes[id as usize];
        }
        let mut p = PathBuf::new();
        for name in parts.iter().rev() {
            p.push(OsStr::from_bytes(name));
        }
        Some(p)
    }

    /// Reads and decompresses every stored data block and fragment tail of every file,
    /// checking its length (directories and symlinks were checked at open). Holes are not
    /// read, so the cost is that of the stored data, whatever sizes the files claim. Used to
    /// validate an image fully: data blocks are otherwise only read when asked for.
    ///
    /// # Errors
    /// [`FsError::Corrupt`] naming a file that cannot be read.
    pub fn verify_contents(&self) -> Result<()> {
        let bs = u64::from(self.block_size);
        for (i, f) in self.files.iter().enumerate() {
            let check = || -> io::Result<()> {
                for (b, &word) in f.sizes.iter().enumerate() {
                    if word != 0 {
                        self.chunk(f, b as u64 * bs)?;
                    }
                }
                if f.frag.is_some() {
                    self.chunk(f, f.sizes.len() as u64 * bs)?;
                }
                Ok(())
            };
            let res = catch_unwind(AssertUnwindSafe(check))
                .unwrap_or_else(|_| Err(self.corrupt_io("reading panicked")));
            if let Err(e) = res {
                let node = self
                    .nodes
                    .iter()
                    .position(|n| matches!(n.data, NodeData::File(x) if x as usize == i));
                let path = node
                    .and_then(|n| self.node_path(n as NodeId))
                    .unwrap_or_default();
                return Err(FsError::Corrupt {
                    image: self.label.clone(),
                    reason: format!("{}: {e}", path.display()),
                });
            }
        }
        Ok(())
    }

    /// Writes the content of file `node` to `out` (at offset 0 on), leaving holes as holes.
    fn copy_file(&self, node: NodeId, out: &File) -> std::result::Result<(), CopyError> {
        let Some(NodeData::File(f)) = self.node(node).map(|n| &n.data) else {
            return Err(CopyError::Read(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            )));
        };
        let f = &self.files[*f as usize];
        let bs = u64::from(self.block_size);
        let blocks = f.sizes.len() as u64 + u64::from(f.frag.is_some());
        for b in 0..blocks {
            if f.sizes.get(b as usize) == Some(&0) {
                continue;
            }
            match self.chunk(f, b * bs).map_err(CopyError::Read)? {
                Chunk::Zeros(_) => {}
                Chunk::Data(data, from, to) => out
                    .write_all_at(&data[from..to], b * bs)
                    .map_err(CopyError::Write)?,
            }
        }
        out.set_len(f.size).map_err(CopyError::Write)
    }

    /// Extracts the whole image into `dest` (which must exist and be empty), restoring modes,
    /// times and (when running as root) owners. Devices are created only when running as root;
    /// directories get their mtime after their contents are written. `progress` is called every
    /// 256 files and once at the end.
    ///
    /// # Errors
    /// [`FsError::Corrupt`] or [`FsError::Io`] ([`FsError::Invalid`] if `dest` is not empty).
    pub fn extract_to(&self, dest: &Path, progress: Progress<'_>) -> Result<TreeStats> {
        extract::extract(self, dest, progress)
    }

    fn node(&self, node: NodeId) -> Option<&Node> {
        self.nodes.get(usize::try_from(node).ok()?)
    }

    fn child(&self, dir: u32, name: &[u8]) -> Option<u32> {
        let NodeData::Dir(children) = &self.nodes.get(dir as usize)?.data else {
            return None;
        };
        children
            .binary_search_by(|&c| (*self.nodes[c as usize].name).cmp(name))
            .ok()
            .map(|i| children[i])
    }

    fn corrupt_io(&self, what: &str) -> io::Error {
        invalid_data(format!("snapshot image {} is corrupt: {what}", self.label))
    }

    /// Reads `len` stored bytes at `offset` of the image.
    fn pread(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut raw = vec![0u8; len];
        self.file.read_exact_at(&mut raw, offset).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                self.corrupt_io("truncated")
            } else {
                e
            }
        })?;
        Ok(raw)
    }

    /// A decompressed block (from the cache or read now), of at most a block size.
    fn block(&self, offset: u64, word: u32) -> io::Result<Arc<[u8]>> {
        let key = (offset, word);
        if let Some(b) = self.cache.get(&key) {
            return Ok(b);
        }
        let len = (word & !DATA_UNCOMPRESSED) as usize;
        let raw = self.pread(offset, len)?;
        let data = if word & DATA_UNCOMPRESSED != 0 {
            raw
        } else {
            format::decompress(self.compressor, &raw, self.block_size as usize)
                .map_err(|e| self.corrupt_io(&e))?
        };
        let data: Arc<[u8]> = data.into();
        self.cache.insert(key, Arc::clone(&data));
        Ok(data)
    }

    /// The piece of `file` holding byte `pos` (which is below its size).
    fn chunk(&self, file: &FileData, pos: u64) -> io::Result<Chunk> {
        let bs = u64::from(self.block_size);
        let i = (pos / bs) as usize;
        let within = (pos % bs) as usize;
        if let Some(&word) = file.sizes.get(i) {
            let expect = (file.size - i as u64 * bs).min(bs) as usize;
            if word == 0 {
                return Ok(Chunk::Zeros(expect - within));
            }
            let data = self.block(file.block_offset(i), word)?;
            if data.len() != expect {
                return Err(self.corrupt_io("data block of the wrong length"));
            }
            return Ok(Chunk::Data(data, within, expect));
        }
        let Some((frag, offset)) = file.frag else {
            return Err(self.corrupt_io("file data missing"));
        };
        let f = self.frags[frag as usize];
        let data = self.block(f.start, f.word)?;
        let tail = (file.size - i as u64 * bs) as usize;
        let start = offset as usize;
        if start + tail > data.len() {
            return Err(self.corrupt_io("file tail out of its fragment block"));
        }
        Ok(Chunk::Data(data, start + within, start + tail))
    }

    fn read_file(&self, file: &FileData, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        if offset >= file.size || buf.is_empty() {
            return Ok(0);
        }
        let want = (file.size - offset).min(buf.len() as u64) as usize;
        let mut done = 0;
        while done < want {
            let n = match self.chunk(file, offset + done as u64)? {
                Chunk::Zeros(len) => {
                    let n = len.min(want - done);
                    buf[done..done + n].fill(0);
                    n
                }
                Chunk::Data(data, from, to) => {
                    let n = (to - from).min(want - done);
                    buf[done..done + n].copy_from_slice(&data[from..from + n]);
                    n
                }
            };
            done += n;
        }
        Ok(done)
    }
}

/// Metadata reported for a `NodeId` that does not exist (the trait has no error path there).
const MISSING_ATTR: NodeAttr = NodeAttr {
    kind: NodeKind::File,
    perm: 0,
    uid: 0,
    gid: 0,
    mtime: 0,
    size: 0,
    rdev: 0,
    nlink: 0,
};

fn bad_node() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, "no such node in this image")
}

impl Layer for Image {
    fn root(&self) -> NodeId {
        0
    }

    fn lookup(&self, dir: NodeId, name: &OsStr) -> Option<NodeId> {
        self.child(u32::try_from(dir).ok()?, name.as_bytes())
            .map(NodeId::from)
    }

    fn attr(&self, node: NodeId) -> NodeAttr {
        self.node(node).map_or(MISSING_ATTR, |n| n.attr)
    }

    fn children(&self, dir: NodeId) -> io::Result<Vec<(OsString, NodeId)>> {
        match &self.node(dir).ok_or_else(bad_node)?.data {
            NodeData::Dir(children) => Ok(children
                .iter()
                .map(|&c| {
                    let name = OsString::from_vec(self.nodes[c as usize].name.to_vec());
                    (name, NodeId::from(c))
                })
                .collect()),
            _ => Err(io::Error::from(io::ErrorKind::NotADirectory)),
        }
    }

    fn readlink(&self, node: NodeId) -> io::Result<PathBuf> {
        match &self.node(node).ok_or_else(bad_node)?.data {
            NodeData::Symlink(target) => Ok(PathBuf::from(OsString::from_vec(target.to_vec()))),
            _ => Err(io::Error::new(io::ErrorKind::InvalidInput, "not a symlink")),
        }
    }

    fn read_at(&self, node: NodeId, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        match &self.node(node).ok_or_else(bad_node)?.data {
            NodeData::File(f) => {
                let file = &self.files[*f as usize];
                match catch_unwind(AssertUnwindSafe(|| self.read_file(file, offset, buf))) {
                    Ok(res) => res,
                    Err(_) => Err(self.corrupt_io("reading panicked")),
                }
            }
            NodeData::Dir(_) => Err(io::Error::from(io::ErrorKind::IsADirectory)),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_is_send_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Image>();
        assert_send_sync::<Arc<Image>>();
    }

    #[test]
    fn options_are_validated() {
        assert!(WriteOptions::default().validate().is_ok());
        for (level, bs) in [(0, 4096), (23, 4096), (3, 2048), (3, 3 << 12), (3, 2 << 20)] {
            let o = WriteOptions {
                compression_level: level,
                block_size: bs,
            };
            assert!(matches!(o.validate(), Err(FsError::Invalid(_))), "{o:?}");
        }
        let o = WriteOptions {
            compression_level: 22,
            block_size: 1 << 20,
        };
        assert!(o.validate().is_ok());
    }

    #[test]
    fn device_numbers_roundtrip() {
        for (maj, min) in [(1, 3), (8, 0), (259, 65536), (4095, 0xf_ffff), (0, 0)] {
            let dev = rustix::fs::makedev(maj, min);
            let enc = index::encode_dev(dev).expect("encodable");
            assert_eq!(index::decode_dev(enc), dev);
        }
        // The kernel's new_encode_dev for 8:1 is 0x801.
        assert_eq!(index::encode_dev(rustix::fs::makedev(8, 1)), Some(0x801));
        assert_eq!(index::encode_dev(rustix::fs::makedev(4096, 0)), None);
    }
}
