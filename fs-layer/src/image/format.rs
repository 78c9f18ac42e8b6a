//! The squashfs 4.0 superblock and metadata blocks, checked before backhand parses an image.
//!
//! backhand trusts the image in ways a hostile one can exploit: a gzip metadata block may
//! inflate to 4 MiB (the format allows 8 KiB), table sizes come straight from the superblock,
//! and a lookup table is read block after block for as long as the superblock says. Everything
//! it will read is therefore walked here first, with fixed limits, so that what backhand then
//! allocates is bounded by what this module has already accepted.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::panic::{AssertUnwindSafe, catch_unwind};

use backhand::BackhandError;
use backhand::compression::{CompressionAction, Compressor, DefaultCompressor};

/// Size of the superblock at the start of an image.
pub(super) const SUPERBLOCK_SIZE: u64 = 96;
/// Marks an absent optional table.
pub(super) const NOT_SET: u64 = u64::MAX;
/// Largest uncompressed metadata block.
pub(super) const METADATA_SIZE: usize = 8192;
/// A data block or fragment stored without compression has this bit in its size word.
pub(super) const DATA_UNCOMPRESSED: u32 = 1 << 24;
/// Most inodes an image may declare (and nodes, hard links included, the index may hold is
/// twice that).
pub(super) const MAX_INODES: u32 = 1 << 22;
/// Most fragment blocks an image may declare.
pub(super) const MAX_FRAGMENTS: u32 = 1 << 22;
/// Most metadata blocks in the inode table and in the directory table (256 MiB each once
/// decompressed).
pub(super) const MAX_TABLE_BLOCKS: u64 = 32 * 1024;

const FLAG_EXPORT_TABLE: u16 = 0x0080;
const FLAG_COMPRESSOR_OPTIONS: u16 = 0x0400;
const METADATA_UNCOMPRESSED: u16 = 1 << 15;

/// The fields of a squashfs 4.0 superblock (little endian).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Superblock {
    pub magic: [u8; 4],
    pub inode_count: u32,
    pub mod_time: u32,
    pub block_size: u32,
    pub frag_count: u32,
    pub compressor: u16,
    pub block_log: u16,
    pub flags: u16,
    pub id_count: u16,
    pub version_major: u16,
    pub version_minor: u16,
    pub root_inode: u64,
    pub bytes_used: u64,
    pub id_table: u64,
    pub xattr_table: u64,
    pub inode_table: u64,
    pub dir_table: u64,
    pub frag_table: u64,
    pub export_table: u64,
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn le64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

impl Superblock {
    /// Decodes the 96 bytes at the start of an image.
    pub(super) fn parse(b: &[u8; SUPERBLOCK_SIZE as usize]) -> Superblock {
        Superblock {
            magic: [b[0], b[1], b[2], b[3]],
            inode_count: le32(b, 4),
            mod_time: le32(b, 8),
            block_size: le32(b, 12),
            frag_count: le32(b, 16),
            compressor: le16(b, 20),
            block_log: le16(b, 22),
            flags: le16(b, 24),
            id_count: le16(b, 26),
            version_major: le16(b, 28),
            version_minor: le16(b, 30),
            root_inode: le64(b, 32),
            bytes_used: le64(b, 40),
            id_table: le64(b, 48),
            xattr_table: le64(b, 56),
            inode_table: le64(b, 64),
            dir_table: le64(b, 72),
            frag_table: le64(b, 80),
            export_table: le64(b, 88),
        }
    }

    /// The data compressor, if it is one this build reads.
    pub(super) fn compressor(&self) -> Result<Compressor, String> {
        match self.compressor {
            1 => Ok(Compressor::Gzip),
            5 => Ok(Compressor::Lz4),
            6 => Ok(Compressor::Zstd),
            2 => Err("unsupported compressor lzma".into()),
            3 => Err("unsupported compressor lzo".into()),
            4 => Err("unsupported compressor xz".into()),
            other => Err(format!("unknown compressor id {other}")),
        }
    }

    /// Whether the image has an NFS export table backhand will read.
    pub(super) fn has_export_table(&self) -> bool {
        self.flags & FLAG_EXPORT_TABLE != 0 && self.export_table != NOT_SET
    }

    /// Whether backhand will read a fragment table.
    pub(super) fn has_fragment_table(&self) -> bool {
        self.frag_count != 0 && self.frag_table != NOT_SET
    }

    /// Checks every field against the format and against the size of the file.
    pub(super) fn check(&self, file_len: u64) -> Result<(), String> {
        if &self.magic == b"sqsh" {
            return Err("big-endian squashfs images are not supported".into());
        }
        if &self.magic != b"hsqs" {
            return Err("not a squashfs image (bad magic)".into());
        }
        if (self.version_major, self.version_minor) != (4, 0) {
            return Err(format!(
                "unsupported squashfs version {}.{}",
                self.version_major, self.version_minor
            ));
        }
        let bs = self.block_size;
        if !bs.is_power_of_two() || !(4096..=1 << 20).contains(&bs) {
            return Err(format!("invalid block size {bs}"));
        }
        if u32::from(self.block_log) != bs.ilog2() {
            return Err("block_log does not match block size".into());
        }
        self.compressor()?;
        if self.bytes_used < SUPERBLOCK_SIZE || self.bytes_used > file_len {
            return Err(format!(
                "superblock says {} bytes used but the file has {file_len}",
                self.bytes_used
            ));
        }
        let used = self.bytes_used;
        if self.inode_table < SUPERBLOCK_SIZE
            || self.inode_table >= self.dir_table
            || self.dir_table >= used
        {
            return Err("inode and directory tables out of order or out of the image".into());
        }
        if self.inode_count == 0 || self.inode_count > MAX_INODES {
            return Err(format!("unsupported inode count {}", self.inode_count));
        }
        if self.id_count == 0 {
            return Err("empty uid/gid table".into());
        }
        // Each index holds one 8-byte pointer per metadata block of its table.
        let id_blocks = (u64::from(self.id_count) * 4).div_ceil(METADATA_SIZE as u64);
        table_index_in(self.id_table, id_blocks, self.dir_table, used, "uid/gid")?;
        if self.frag_count > MAX_FRAGMENTS {
            return Err(format!("unsupported fragment count {}", self.frag_count));
        }
        if self.has_fragment_table() {
            let blocks = (u64::from(self.frag_count) * 16).div_ceil(METADATA_SIZE as u64);
            table_index_in(self.frag_table, blocks, self.dir_table, used, "fragment")?;
        } else if self.frag_count != 0 {
            return Err("fragments declared without a fragment table".into());
        }
        if self.has_export_table() {
            let blocks = (u64::from(self.inode_count) * 8).div_ceil(METADATA_SIZE as u64);
            table_index_in(self.export_table, blocks, self.dir_table, used, "export")?;
        }
        if self.xattr_table != NOT_SET && self.xattr_table > used {
            return Err("xattr table out of the image".into());
        }
        let root_block = self.root_inode >> 16;
        let root_offset = self.root_inode & 0xffff;
        if root_block >= self.dir_table - self.inode_table || root_offset >= METADATA_SIZE as u64 {
            return Err("root inode reference out of the inode table".into());
        }
        Ok(())
    }

    /// Metadata blocks hold no more than 8 KiB, and the smallest inode takes 20 bytes: an inode
    /// count the inode table cannot hold is a lie.
    pub(super) fn check_inode_table_blocks(&self, blocks: u64) -> Result<(), String> {
        if u64::from(self.inode_count) * 20 > blocks * METADATA_SIZE as u64 {
            return Err(format!(
                "{} inodes cannot fit in {blocks} metadata blocks",
                self.inode_count
            ));
        }
        Ok(())
    }
}

fn table_index_in(at: u64, blocks: u64, after: u64, used: u64, what: &str) -> Result<(), String> {
    let end = blocks.checked_mul(8).and_then(|n| at.checked_add(n));
    match end {
        Some(end) if at >= after && end <= used => Ok(()),
        _ => Err(format!("{what} table out of the image")),
    }
}

/// Describes a backhand error (its `Display` is empty without the `error-strings` feature).
pub(super) fn describe(e: &BackhandError) -> String {
    match e {
        BackhandError::StdIo(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            "truncated (unexpected end of file)".into()
        }
        BackhandError::StdIo(e) => format!("I/O error: {e}"),
        BackhandError::Deku(e) => format!("malformed structure: {e}"),
        BackhandError::StringUtf8(_) | BackhandError::StrUtf8(_) => "invalid UTF-8".into(),
        BackhandError::UnsupportedCompression(_) => "unsupported compression".into(),
        BackhandError::MissingCompressor => "missing compressor".into(),
        BackhandError::FileNotFound => "entry not found".into(),
        BackhandError::Unreachable => "unexpected state".into(),
        BackhandError::UnexpectedInode => "unexpected inode".into(),
        BackhandError::UnsupportedInode => "unsupported inode".into(),
        BackhandError::CorruptedOrInvalidSquashfs => "corrupted or invalid squashfs".into(),
        BackhandError::InvalidCompressionOption => "invalid compression options".into(),
        BackhandError::InvalidFilePath => "invalid file path".into(),
        BackhandError::UndefineFileName => "file without a name".into(),
        BackhandError::DuplicatedFileName => "duplicated file name".into(),
        BackhandError::TryReserveError(_) => "allocation refused".into(),
        BackhandError::InvalidIdTable => "invalid uid/gid table".into(),
        BackhandError::UnsupportedSquashfsVersion(a, b) => {
            format!("unsupported squashfs version {a}.{b}")
        }
        BackhandError::NumericConversion(_) => "numeric conversion failed".into(),
        BackhandError::SystemTime(_) => "system time error".into(),
        BackhandError::MutexPoisoned => "mutex poisoned".into(),
        BackhandError::IdNotFoundInTable => "uid/gid not in the id table".into(),
        BackhandError::InternalState(_) => "internal state error".into(),
        BackhandError::CompressionInit(_) => "compression failed".into(),
    }
}

/// Decompresses one block with backhand's decompressor, refusing more than `max` bytes out.
/// A panic inside the decompressor is an error too.
pub(super) fn decompress(
    compressor: Compressor,
    raw: &[u8],
    max: usize,
) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(max);
    let res = catch_unwind(AssertUnwindSafe(|| {
        DefaultCompressor.decompress(raw, &mut out, compressor)
    }));
    match res {
        Ok(Ok(())) if out.len() <= max => Ok(out),
        Ok(Ok(())) => Err(format!("block decompresses to more than {max} bytes")),
        Ok(Err(e)) => Err(format!("cannot decompress block: {}", describe(&e))),
        Err(_) => Err("decompressor panicked".into()),
    }
}

/// Where a walk over metadata blocks stops.
#[derive(Debug, Clone, Copy)]
pub(super) enum Stop {
    /// At this offset, which must be hit exactly.
    At(u64),
    /// After this many blocks.
    Count(u64),
}

/// Walks consecutive metadata blocks from `start` the way backhand will read them, decompressing
/// each and checking it holds at most 8 KiB. Returns the number of blocks.
pub(super) fn scan_metadata(
    reader: &mut BufReader<File>,
    compressor: Compressor,
    start: u64,
    stop: Stop,
    limit: u64,
    end_of_image: u64,
    what: &str,
) -> Result<u64, String> {
    let io_err = |e: io::Error| format!("{what} table: {}", io_reason(&e));
    reader.seek(SeekFrom::Start(start)).map_err(io_err)?;
    let mut pos = start;
    let mut blocks = 0u64;
    let mut raw = Vec::with_capacity(METADATA_SIZE);
    loop {
        match stop {
            Stop::At(end) if pos == end => break,
            Stop::At(end) if pos > end => {
                return Err(format!("{what} table overruns the next table"));
            }
            Stop::Count(n) if blocks == n => break,
            _ => {}
        }
        if blocks >= limit {
            return Err(format!("{what} table is too large"));
        }
        let mut hdr = [0u8; 2];
        reader.read_exact(&mut hdr).map_err(io_err)?;
        let hdr = u16::from_le_bytes(hdr);
        let len = usize::from(hdr & !METADATA_UNCOMPRESSED);
        if len == 0 || len > METADATA_SIZE {
            return Err(format!("{what} table: bad metadata block length {len}"));
        }
        if pos + 2 + len as u64 > end_of_image {
            return Err(format!(
                "{what} table: metadata block past the end of the image"
            ));
        }
        raw.resize(len, 0);
        reader.read_exact(&mut raw).map_err(io_err)?;
        if hdr & METADATA_UNCOMPRESSED == 0 {
            decompress(compressor, &raw, METADATA_SIZE)
                .map_err(|e| format!("{what} table: {e}"))?;
        }
        pos += 2 + len as u64;
        blocks += 1;
    }
    Ok(blocks)
}

/// Reads a little-endian u64 at `at`.
pub(super) fn read_u64_at(reader: &mut BufReader<File>, at: u64) -> Result<u64, String> {
    let mut b = [0u8; 8];
    reader
        .seek(SeekFrom::Start(at))
        .and_then(|_| reader.read_exact(&mut b))
        .map_err(|e| io_reason(&e))?;
    Ok(u64::from_le_bytes(b))
}

fn io_reason(e: &io::Error) -> String {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        "truncated (unexpected end of file)".into()
    } else {
        format!("I/O error: {e}")
    }
}

/// Checks, before backhand reads them, every metadata block backhand will read: compressor
/// options, inode table, directory table and the fragment, export and id tables.
pub(super) fn prescan(file: &File, sb: &Superblock) -> Result<(), String> {
    let compressor = sb.compressor()?;
    let clone = file.try_clone().map_err(|e| io_reason(&e))?;
    let mut r = BufReader::with_capacity(64 * 1024, clone);
    let used = sb.bytes_used;
    if sb.flags & FLAG_COMPRESSOR_OPTIONS != 0 {
        scan_metadata(
            &mut r,
            compressor,
            SUPERBLOCK_SIZE,
            Stop::Count(1),
            1,
            used,
            "options",
        )?;
    }
    let inode_blocks = scan_metadata(
        &mut r,
        compressor,
        sb.inode_table,
        Stop::At(sb.dir_table),
        MAX_TABLE_BLOCKS,
        used,
        "inode",
    )?;
    sb.check_inode_table_blocks(inode_blocks)?;

    // backhand reads a lookup table from its first block on, as many blocks as
    // `ceil(size / 8 KiB)` with `size` in its own units; mirror that.
    let mut first_table = None;
    if sb.has_fragment_table() {
        let ptr = read_u64_at(&mut r, sb.frag_table)?;
        let blocks = (u64::from(sb.frag_count) * 16).div_ceil(METADATA_SIZE as u64);
        check_table_start(ptr, sb, "fragment")?;
        scan_metadata(
            &mut r,
            compressor,
            ptr,
            Stop::Count(blocks),
            blocks,
            used,
            "fragment",
        )?;
        first_table = Some(ptr);
    }
    if sb.has_export_table() {
        let ptr = read_u64_at(&mut r, sb.export_table)?;
        let blocks = u64::from(sb.inode_count)
            .div_ceil(1024)
            .div_ceil(METADATA_SIZE as u64);
        check_table_start(ptr, sb, "export")?;
        scan_metadata(
            &mut r,
            compressor,
            ptr,
            Stop::Count(blocks),
            blocks,
            used,
            "export",
        )?;
        first_table = first_table.or(Some(ptr));
    }
    let id_ptr = read_u64_at(&mut r, sb.id_table)?;
    check_table_start(id_ptr, sb, "uid/gid")?;
    let id_blocks = u64::from(sb.id_count).div_ceil(METADATA_SIZE as u64);
    scan_metadata(
        &mut r,
        compressor,
        id_ptr,
        Stop::Count(id_blocks),
        id_blocks,
        used,
        "uid/gid",
    )?;
    let dir_end = first_table.unwrap_or(id_ptr);
    scan_metadata(
        &mut r,
        compressor,
        sb.dir_table,
        Stop::At(dir_end),
        MAX_TABLE_BLOCKS,
        used,
        "directory",
    )?;
    Ok(())
}

fn check_table_start(ptr: u64, sb: &Superblock, what: &str) -> Result<(), String> {
    // (An empty directory table is empty: the next table may start where it does.)
    if ptr < sb.dir_table || ptr >= sb.bytes_used {
        return Err(format!("{what} table pointer out of the image"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Superblock {
        Superblock {
            magic: *b"hsqs",
            inode_count: 3,
            mod_time: 0,
            block_size: 131072,
            frag_count: 1,
            compressor: 6,
            block_log: 17,
            flags: 0,
            id_count: 1,
            version_major: 4,
            version_minor: 0,
            root_inode: 0x20,
            bytes_used: 4000,
            id_table: 3900,
            xattr_table: NOT_SET,
            inode_table: 1000,
            dir_table: 2000,
            frag_table: 3000,
            export_table: NOT_SET,
        }
    }

    #[test]
    fn superblock_checks() {
        let ok = sample();
        ok.check(4096).expect("valid");
        let cases: Vec<(Superblock, &str)> = vec![
            (
                Superblock {
                    magic: *b"nope",
                    ..ok
                },
                "magic",
            ),
            (
                Superblock {
                    version_major: 3,
                    ..ok
                },
                "version",
            ),
            (
                Superblock {
                    block_size: 3000,
                    ..ok
                },
                "block size",
            ),
            (
                Superblock {
                    block_log: 16,
                    ..ok
                },
                "block_log",
            ),
            (
                Superblock {
                    compressor: 4,
                    ..ok
                },
                "xz",
            ),
            (
                Superblock {
                    bytes_used: 5000,
                    ..ok
                },
                "bytes used",
            ),
            (
                Superblock {
                    inode_table: 2500,
                    ..ok
                },
                "order",
            ),
            (
                Superblock {
                    inode_count: MAX_INODES + 1,
                    ..ok
                },
                "inode count",
            ),
            (Superblock { id_count: 0, ..ok }, "uid/gid"),
            (
                Superblock {
                    frag_table: NOT_SET,
                    ..ok
                },
                "fragments",
            ),
            (
                Superblock {
                    frag_count: MAX_FRAGMENTS + 1,
                    ..ok
                },
                "fragment count",
            ),
            (
                Superblock {
                    id_table: 3999,
                    ..ok
                },
                "uid/gid table",
            ),
            (
                Superblock {
                    root_inode: 5000 << 16,
                    ..ok
                },
                "root",
            ),
        ];
        for (sb, what) in cases {
            assert!(sb.check(4096).is_err(), "{what} accepted");
        }
        assert!(ok.check_inode_table_blocks(1).is_ok());
        let many = Superblock {
            inode_count: 500,
            ..ok
        };
        assert!(many.check_inode_table_blocks(1).is_err());
    }

    #[test]
    fn parse_roundtrip_of_fields() {
        let mut b = [0u8; 96];
        b[..4].copy_from_slice(b"hsqs");
        b[4..8].copy_from_slice(&7u32.to_le_bytes());
        b[12..16].copy_from_slice(&4096u32.to_le_bytes());
        b[20..22].copy_from_slice(&6u16.to_le_bytes());
        b[88..96].copy_from_slice(&u64::MAX.to_le_bytes());
        let sb = Superblock::parse(&b);
        assert_eq!(sb.inode_count, 7);
        assert_eq!(sb.block_size, 4096);
        assert_eq!(sb.compressor().expect("zstd"), Compressor::Zstd);
        assert_eq!(sb.export_table, NOT_SET);
    }

    #[test]
    fn decompress_bounds_output() {
        let raw = vec![7u8; 10_000];
        let packed = DefaultCompressor
            .compress(
                &raw,
                backhand::FilesystemCompressor::new(Compressor::Zstd, None).expect("zstd"),
                131072,
            )
            .expect("compress");
        assert_eq!(
            decompress(Compressor::Zstd, &packed, 10_000).expect("fits"),
            raw
        );
        assert!(decompress(Compressor::Zstd, &packed, 8192).is_err());
        assert!(decompress(Compressor::Zstd, b"garbage", 8192).is_err());
        assert!(decompress(Compressor::Gzip, b"garbage", 8192).is_err());
        assert!(decompress(Compressor::Lz4, &[0xff; 16], 8192).is_err());
    }
}
