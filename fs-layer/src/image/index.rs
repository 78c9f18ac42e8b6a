//! The in-memory index of an image: every node, its attributes and where its data lies.
//!
//! Built from the tables backhand's [`Squashfs`] parsed (inodes, directory table, id and
//! fragment tables). The directory tree is walked here, iteratively and with every reference
//! checked, instead of by `Squashfs::into_filesystem_reader`: that one recurses once per
//! directory level (a hostile image nested deep enough overflows the stack, which aborts the
//! process and cannot be caught), stores a full path per node (memory quadratic in the depth)
//! and drops inode numbers, so hard links could not be told apart from copies.

use std::collections::{HashMap, HashSet, VecDeque};

use backhand::v4::inode::{Inode, InodeId, InodeInner};
use backhand::{DataSize, Squashfs};

use super::TreeStats;
use super::format::{DATA_UNCOMPRESSED, MAX_INODES, METADATA_SIZE, SUPERBLOCK_SIZE, Superblock};
use crate::node::{NodeAttr, NodeKind};

/// No fragment.
const NO_FRAGMENT: u32 = u32::MAX;
/// A block offset is recorded every this many blocks; the others are summed from there.
pub(super) const CHECKPOINT: usize = 64;
/// Most nodes (directory entries, hard links included) an index may hold.
const MAX_NODES: usize = 2 * MAX_INODES as usize;

/// One node of the tree. `NodeId` is its index; the root is 0.
#[derive(Debug)]
pub(super) struct Node {
    /// Name in its parent (empty for the root).
    pub name: Box<[u8]>,
    /// The parent directory (the root is its own parent).
    pub parent: u32,
    pub attr: NodeAttr,
    pub data: NodeData,
}

#[derive(Debug)]
pub(super) enum NodeData {
    /// Children sorted by name.
    Dir(Box<[u32]>),
    /// Index into [`Index::files`] (shared by the hard links of one inode).
    File(u32),
    /// Target.
    Symlink(Box<[u8]>),
    /// Device, FIFO or socket.
    Special,
}

/// Where a regular file's data lies.
#[derive(Debug)]
pub(super) struct FileData {
    /// Length in bytes.
    pub size: u64,
    /// Size words of the whole blocks: stored length, with [`DATA_UNCOMPRESSED`]; 0 is a hole.
    pub sizes: Box<[u32]>,
    /// Offset in the image of block `i * CHECKPOINT`.
    pub checkpoints: Box<[u64]>,
    /// The tail: fragment index and offset in that fragment block.
    pub frag: Option<(u32, u32)>,
}

impl FileData {
    /// Offset in the image of whole block `i`.
    pub(super) fn block_offset(&self, i: usize) -> u64 {
        let base = i / CHECKPOINT * CHECKPOINT;
        let before: u64 = self.sizes[base..i]
            .iter()
            .map(|w| u64::from(w & !DATA_UNCOMPRESSED))
            .sum();
        self.checkpoints[i / CHECKPOINT] + before
    }
}

/// A fragment block: offset and size word.
#[derive(Debug, Clone, Copy)]
pub(super) struct Frag {
    pub start: u64,
    pub word: u32,
}

/// The index of one image.
#[derive(Debug)]
pub(super) struct Index {
    pub nodes: Vec<Node>,
    pub files: Vec<FileData>,
    pub frags: Box<[Frag]>,
    pub stats: TreeStats,
}

fn word(ds: &DataSize) -> u32 {
    ds.size()
        | if ds.uncompressed() {
            DATA_UNCOMPRESSED
        } else {
            0
        }
}

/// The basic type (1..=7) of an inode type.
fn base_type(id: InodeId) -> u16 {
    let n = id as u16;
    if n > 7 { n - 7 } else { n }
}

/// A directory entry: name, inode number and basic inode type (1..=7).
type Entry<'s> = (&'s [u8], u32, u16);

/// What is needed to find a directory's listing.
#[derive(Debug, Clone, Copy)]
struct Listing {
    block_index: u32,
    block_offset: u16,
    file_size: u32,
}

struct Builder<'a, 'b> {
    sb: &'a Superblock,
    sq: &'a Squashfs<'b>,
    ids: &'a [backhand::Id],
    frag_ok: Vec<bool>,
    /// File inode number -> index in `files`.
    file_of_inode: HashMap<u32, u32>,
    index: Index,
}

/// Builds the index, checking every reference.
pub(super) fn build(sq: &Squashfs<'_>, sb: &Superblock) -> Result<Index, String> {
    let id_count = usize::from(sb.id_count);
    if sq.id.len() < id_count {
        return Err("uid/gid table shorter than declared".into());
    }
    let frag_count = sb.frag_count as usize;
    let frags: Box<[Frag]> = match &sq.fragments {
        _ if frag_count == 0 => Box::default(),
        Some(f) if f.len() >= frag_count => f[..frag_count]
            .iter()
            .map(|f| Frag {
                start: f.start,
                word: word(&f.size),
            })
            .collect(),
        _ => return Err("fragment table shorter than declared".into()),
    };
    let mut b = Builder {
        sb,
        sq,
        ids: &sq.id[..id_count],
        frag_ok: vec![false; frags.len()],
        file_of_inode: HashMap::new(),
        index: Index {
            nodes: Vec::new(),
            files: Vec::new(),
            frags,
            stats: TreeStats::default(),
        },
    };
    b.walk()?;
    Ok(b.index)
}

impl<'a> Builder<'a, '_> {
    fn walk(&mut self) -> Result<(), String> {
        let sq: &'a Squashfs<'_> = self.sq;
        let root = &sq.root_inode;
        let Some(root_listing) = listing_of(root) else {
            return Err("root inode is not a directory".into());
        };
        let (attr, data) = self.node_of(root)?;
        self.index.nodes.push(Node {
            name: Box::default(),
            parent: 0,
            attr,
            data,
        });
        self.index.stats.dirs += 1;
        let mut visited = HashSet::new();
        visited.insert(root.header.inode_number);
        let mut queue = VecDeque::from([(0u32, root_listing)]);
        while let Some((dir, listing)) = queue.pop_front() {
            let mut entries = entries(sq, listing)?;
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            if entries.windows(2).any(|w| w[0].0 == w[1].0) {
                return Err("duplicate name in a directory".into());
            }
            if self.index.nodes.len() + entries.len() > MAX_NODES {
                return Err("too many directory entries".into());
            }
            let mut children = Vec::with_capacity(entries.len());
            for (name, number, typ) in entries {
                let inode = sq
                    .inodes
                    .get(&number)
                    .ok_or_else(|| format!("directory entry refers to missing inode {number}"))?;
                if base_type(inode.id) != typ {
                    return Err(format!(
                        "directory entry type disagrees with inode {number}"
                    ));
                }
                let id = u32::try_from(self.index.nodes.len())
                    .map_err(|_| "too many directory entries".to_string())?;
                let (attr, data) = self.node_of(inode)?;
                match attr.kind {
                    NodeKind::Dir => {
                        if !visited.insert(number) {
                            return Err("a directory is linked twice (loop or hard link)".into());
                        }
                        let l = listing_of(inode).ok_or("directory inode expected")?;
                        queue.push_back((id, l));
                        self.index.stats.dirs += 1;
                    }
                    NodeKind::File => {
                        self.index.stats.files += 1;
                        self.index.stats.bytes += attr.size;
                    }
                    NodeKind::Symlink => self.index.stats.symlinks += 1,
                    _ => self.index.stats.others += 1,
                }
                self.index.nodes.push(Node {
                    name: name.into(),
                    parent: dir,
                    attr,
                    data,
                });
                children.push(id);
            }
            self.index.nodes[dir as usize].data = NodeData::Dir(children.into());
        }
        Ok(())
    }
}

/// The entries of a directory listing: (name, inode number, basic type).
fn entries<'s>(sq: &'s Squashfs<'_>, l: Listing) -> Result<Vec<Entry<'s>>, String> {
    // `file_size` counts 3 bytes for the implicit `.` and `..`.
    if l.file_size <= 3 {
        return Ok(Vec::new());
    }
    let (map, bytes) = &sq.dir_blocks;
    if usize::from(l.block_offset) >= METADATA_SIZE {
        return Err("directory listing offset out of its block".into());
    }
    let start = map
        .get(&u64::from(l.block_index))
        .ok_or("directory listing in a block that does not exist")?;
    let start = usize::try_from(*start)
        .ok()
        .and_then(|s| s.checked_add(usize::from(l.block_offset)));
    let len = (l.file_size - 3) as usize;
    let data = start
        .and_then(|s| bytes.get(s..s.checked_add(len)?))
        .ok_or("directory listing past the end of the directory table")?;
    parse_listing(data)
}

impl Builder<'_, '_> {
    fn node_of(&mut self, inode: &Inode) -> Result<(NodeAttr, NodeData), String> {
        let h = &inode.header;
        let uid = self
            .ids
            .get(usize::from(h.uid))
            .ok_or("uid index out of the id table")?;
        let gid = self
            .ids
            .get(usize::from(h.gid))
            .ok_or("gid index out of the id table")?;
        let attr = |kind, size, rdev, nlink| NodeAttr {
            kind,
            perm: u32::from(h.permissions) & 0o7777,
            uid: uid.num,
            gid: gid.num,
            mtime: i64::from(h.mtime),
            size,
            rdev,
            nlink,
        };
        Ok(match &inode.inner {
            InodeInner::BasicDirectory(d) => (
                attr(NodeKind::Dir, u64::from(d.file_size), 0, d.link_count),
                NodeData::Dir(Box::default()),
            ),
            InodeInner::ExtendedDirectory(d) => (
                attr(NodeKind::Dir, u64::from(d.file_size), 0, d.link_count),
                NodeData::Dir(Box::default()),
            ),
            InodeInner::BasicFile(f) => {
                let file = self.file(
                    h.inode_number,
                    u64::from(f.blocks_start),
                    f.frag_index,
                    f.block_offset,
                    u64::from(f.file_size),
                    &f.block_sizes,
                )?;
                (
                    attr(NodeKind::File, u64::from(f.file_size), 0, 1),
                    NodeData::File(file),
                )
            }
            InodeInner::ExtendedFile(f) => {
                let file = self.file(
                    h.inode_number,
                    f.blocks_start,
                    f.frag_index,
                    f.block_offset,
                    f.file_size,
                    &f.block_sizes,
                )?;
                (
                    attr(NodeKind::File, f.file_size, 0, f.link_count),
                    NodeData::File(file),
                )
            }
            InodeInner::BasicSymlink(s) => (
                attr(
                    NodeKind::Symlink,
                    s.target_path.len() as u64,
                    0,
                    s.link_count,
                ),
                NodeData::Symlink(s.target_path.clone().into()),
            ),
            InodeInner::ExtendedSymlink(s) => (
                attr(
                    NodeKind::Symlink,
                    s.target_path.len() as u64,
                    0,
                    s.link_count,
                ),
                NodeData::Symlink(s.target_path.clone().into()),
            ),
            InodeInner::BasicBlockDevice(d) => (
                attr(
                    NodeKind::BlockDevice,
                    0,
                    decode_dev(d.device_number),
                    d.link_count,
                ),
                NodeData::Special,
            ),
            InodeInner::ExtendedBlockDevice(d) => (
                attr(
                    NodeKind::BlockDevice,
                    0,
                    decode_dev(d.device_number),
                    d.link_count,
                ),
                NodeData::Special,
            ),
            InodeInner::BasicCharacterDevice(d) => (
                attr(
                    NodeKind::CharDevice,
                    0,
                    decode_dev(d.device_number),
                    d.link_count,
                ),
                NodeData::Special,
            ),
            InodeInner::ExtendedCharacterDevice(d) => (
                attr(
                    NodeKind::CharDevice,
                    0,
                    decode_dev(d.device_number),
                    d.link_count,
                ),
                NodeData::Special,
            ),
            InodeInner::BasicNamedPipe(i) => {
                (attr(NodeKind::Fifo, 0, 0, i.link_count), NodeData::Special)
            }
            InodeInner::ExtendedNamedPipe(i) => {
                (attr(NodeKind::Fifo, 0, 0, i.link_count), NodeData::Special)
            }
            InodeInner::BasicSocket(i) => (
                attr(NodeKind::Socket, 0, 0, i.link_count),
                NodeData::Special,
            ),
            InodeInner::ExtendedSocket(i) => (
                attr(NodeKind::Socket, 0, 0, i.link_count),
                NodeData::Special,
            ),
        })
    }

    /// Checks a file's block list and fragment reference; files of one inode share the result.
    fn file(
        &mut self,
        inode_number: u32,
        blocks_start: u64,
        frag_index: u32,
        frag_offset: u32,
        size: u64,
        block_sizes: &[DataSize],
    ) -> Result<u32, String> {
        if let Some(&i) = self.file_of_inode.get(&inode_number) {
            return Ok(i);
        }
        let bs = u64::from(self.sb.block_size);
        let data_end = self.sb.inode_table;
        let has_frag = frag_index != NO_FRAGMENT;
        let whole = if has_frag {
            size / bs
        } else {
            size.div_ceil(bs)
        };
        if block_sizes.len() as u64 != whole {
            return Err("file block list does not match its size".into());
        }
        let tail = if has_frag { size - whole * bs } else { 0 };
        let frag = if has_frag && tail > 0 {
            let f = *self
                .index
                .frags
                .get(frag_index as usize)
                .ok_or("fragment index out of the fragment table")?;
            if !self.frag_ok[frag_index as usize] {
                let len = u64::from(f.word & !DATA_UNCOMPRESSED);
                if len == 0
                    || len > bs
                    || f.start < SUPERBLOCK_SIZE
                    || f.start.checked_add(len).is_none_or(|end| end > data_end)
                {
                    return Err("fragment block out of the data area".into());
                }
                self.frag_ok[frag_index as usize] = true;
            }
            if u64::from(frag_offset) + tail > bs {
                return Err("file tail out of its fragment block".into());
            }
            Some((frag_index, frag_offset))
        } else {
            None
        };
        let mut sizes = Vec::with_capacity(block_sizes.len());
        let mut checkpoints = Vec::with_capacity(block_sizes.len().div_ceil(CHECKPOINT));
        let mut pos = blocks_start;
        let mut stored = false;
        for (i, ds) in block_sizes.iter().enumerate() {
            if i % CHECKPOINT == 0 {
                checkpoints.push(pos);
            }
            let len = u64::from(ds.size());
            if len > bs {
                return Err("data block larger than the block size".into());
            }
            stored |= len != 0;
            pos = pos.checked_add(len).ok_or("data block offset overflows")?;
            sizes.push(if len == 0 { 0 } else { word(ds) });
        }
        if stored && (blocks_start < SUPERBLOCK_SIZE || pos > data_end) {
            return Err("file data out of the data area".into());
        }
        let i = u32::try_from(self.index.files.len()).map_err(|_| "too many files".to_string())?;
        self.index.files.push(FileData {
            size,
            sizes: sizes.into(),
            checkpoints: checkpoints.into(),
            frag,
        });
        self.file_of_inode.insert(inode_number, i);
        Ok(i)
    }
}

fn listing_of(inode: &Inode) -> Option<Listing> {
    match &inode.inner {
        InodeInner::BasicDirectory(d) => Some(Listing {
            block_index: d.block_index,
            block_offset: d.block_offset,
            file_size: u32::from(d.file_size),
        }),
        InodeInner::ExtendedDirectory(d) => Some(Listing {
            block_index: d.block_index,
            block_offset: d.block_offset,
            file_size: d.file_size,
        }),
        _ => None,
    }
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Parses a directory listing: headers of up to 256 entries each.
fn parse_listing(data: &[u8]) -> Result<Vec<Entry<'_>>, String> {
    let bad = |what: &str| format!("malformed directory listing: {what}");
    let mut out = Vec::new();
    let mut p = 0;
    while p < data.len() {
        if data.len() - p < 12 {
            return Err(bad("truncated header"));
        }
        let count = le32(data, p) as usize + 1;
        let base = i64::from(le32(data, p + 8));
        p += 12;
        if count > 256 {
            return Err(bad("more than 256 entries under one header"));
        }
        for _ in 0..count {
            if data.len() - p < 8 {
                return Err(bad("truncated entry"));
            }
            let delta = i64::from(le16(data, p + 2) as i16);
            let typ = le16(data, p + 4);
            let name_len = usize::from(le16(data, p + 6)) + 1;
            p += 8;
            if data.len() - p < name_len {
                return Err(bad("truncated name"));
            }
            let name = &data[p..p + name_len];
            p += name_len;
            if name == b"." || name == b".." || name.iter().any(|&c| c == b'/' || c == 0) {
                return Err(bad("invalid name"));
            }
            let number = u32::try_from(base + delta)
                .ok()
                .filter(|&n| n != 0)
                .ok_or_else(|| bad("inode number out of range"))?;
            if !(1..=7).contains(&typ) {
                return Err(bad("unknown entry type"));
            }
            out.push((name, number, typ));
        }
    }
    Ok(out)
}

/// Decodes the kernel's 32-bit device encoding into a Linux `makedev` value.
pub(super) fn decode_dev(n: u32) -> u64 {
    let major = (n >> 8) & 0xfff;
    let minor = (n & 0xff) | ((n >> 12) & 0xfff00);
    rustix::fs::makedev(major, minor)
}

/// Encodes a Linux device number the way the kernel's squashfs reads it.
pub(super) fn encode_dev(rdev: u64) -> Option<u32> {
    let (major, minor) = (rustix::fs::major(rdev), rustix::fs::minor(rdev));
    if major > 0xfff || minor > 0xf_ffff {
        return None;
    }
    Some((minor & 0xff) | (major << 8) | ((minor & !0xff) << 12))
}
