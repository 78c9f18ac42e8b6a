//! Content-addressed image store: `<dir>/<sha256>.sqfs`, written to a temp file and renamed.
//!
//! Next to each image a record `<sha256>.json` holds its size and [`TreeStats`]; an image
//! whose file size no longer matches its record is [`FsError::Corrupt`]. New images and
//! records are written to `.<random>.tmp` in the store, fsynced and renamed (the record
//! first, so an image is never visible without its record: a crash can leave a record without
//! an image, which is harmless), and the directory is fsynced. [`Store::open`] removes the
//! `*.tmp` files a crash left.
//!
//! Ids come from clients: every method checks an id is 64 lowercase hex digits before it
//! touches the filesystem ([`FsError::Invalid`] otherwise).

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use sha2::{Digest, Sha256};

use crate::image::{self, Image, Progress, TreeStats, WriteOptions};
use crate::temp::TempFile;
use crate::{FsError, Result};

/// An image in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredImage {
    /// sha256 of the image file, lowercase hex: its id.
    pub id: String,
    /// Size of the image file in bytes.
    pub size: u64,
    /// What it holds.
    pub stats: TreeStats,
}

/// The sidecar record of an image.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Record {
    size: u64,
    stats: TreeStats,
}

/// The image store of one data dir.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    /// Images open now, so that everyone shares one `Arc` (and one block cache).
    open: Mutex<HashMap<String, Weak<Image>>>,
}

/// Whether `id` is a well-formed image id: 64 lowercase hex digits.
pub fn is_valid_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn check_id(id: &str) -> Result<()> {
    if is_valid_id(id) {
        Ok(())
    } else {
        Err(FsError::Invalid(
            "image id must be 64 lowercase hex digits".into(),
        ))
    }
}

/// A temp file in the store (`.<random>.tmp`, mode 0600), removed on drop unless persisted.
struct Temp(TempFile);

impl Temp {
    fn create(dir: &Path) -> Result<Temp> {
        TempFile::create(dir, "", 0o600)
            .map(Temp)
            .map_err(|e| FsError::io("create temp file", dir, e))
    }

    fn path(&self) -> &Path {
        self.0.path()
    }

    fn file(&self) -> Result<&File> {
        self.0
            .file()
            .map_err(|e| FsError::io("use temp file", self.0.path(), e))
    }

    /// Renames the temp file to `to` (replacing it).
    fn persist(self, to: &Path) -> Result<()> {
        self.0.persist(to).map_err(|e| FsError::io("rename", to, e))
    }
}

/// sha256 of everything `r` yields, and how many bytes that was.
fn hash_reader(mut r: impl Read, path: &Path) -> Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(FsError::io("read image", path, e)),
        };
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), total))
}

fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| FsError::io("sync directory", dir, e))
}

impl Store {
    /// Opens (creating it, mode 0700) the store in `dir`, removing temp files left by a crash.
    ///
    /// # Errors
    /// [`FsError::Io`].
    pub fn open(dir: &Path) -> Result<Store> {
        fs::create_dir_all(dir).map_err(|e| FsError::io("create store directory", dir, e))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| FsError::io("set store permissions", dir, e))?;
        let entries = fs::read_dir(dir).map_err(|e| FsError::io("read store", dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| FsError::io("read store", dir, e))?;
            let name = entry.file_name();
            let is_file = entry.file_type().is_ok_and(|t| t.is_file());
            if is_file && name.as_bytes().ends_with(b".tmp") {
                let path = entry.path();
                fs::remove_file(&path).map_err(|e| FsError::io("remove leftover", &path, e))?;
            }
        }
        Ok(Store {
            dir: dir.to_path_buf(),
            open: Mutex::new(HashMap::new()),
        })
    }

    fn record_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    fn open_map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Weak<Image>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes the record of `id` and renames `temp` to `<id>.sqfs`, unless that image exists
    /// already (same content: the temp file is dropped).
    fn commit(&self, temp: Temp, id: &str, record: &Record) -> Result<StoredImage> {
        let target = self.path(id);
        let stored = StoredImage {
            id: id.to_owned(),
            size: record.size,
            stats: record.stats,
        };
        if target.exists() && self.record_path(id).exists() {
            return Ok(stored);
        }
        let rec = Temp::create(&self.dir)?;
        {
            let mut w = BufWriter::new(rec.file()?);
            serde_json::to_writer(&mut w, record)
                .map_err(|e| FsError::io("write record", rec.path(), io::Error::other(e)))?;
            w.flush()
                .map_err(|e| FsError::io("write record", rec.path(), e))?;
        }
        rec.file()?
            .sync_all()
            .map_err(|e| FsError::io("sync record", rec.path(), e))?;
        rec.persist(&self.record_path(id))?;
        if !target.exists() {
            temp.persist(&target)?;
        }
        fsync_dir(&self.dir)?;
        Ok(stored)
    }

    /// Writes the tree under `src` as an image into the store.
    ///
    /// # Errors
    /// As [`crate::image::write_tree`]; [`FsError::Corrupt`] if the written image does not
    /// read back.
    pub fn create_from_dir(
        &self,
        src: &Path,
        opts: &WriteOptions,
        progress: Progress<'_>,
    ) -> Result<StoredImage> {
        opts.validate()?;
        let temp = Temp::create(&self.dir)?;
        let stats = {
            let mut w = BufWriter::with_capacity(1 << 20, temp.file()?);
            let stats = image::write_tree(src, &mut w, opts, progress)?;
            w.flush()
                .map_err(|e| FsError::io("write image", temp.path(), e))?;
            stats
        };
        let file = temp.file()?;
        file.sync_all()
            .map_err(|e| FsError::io("sync image", temp.path(), e))?;
        // backhand seeks back to write the superblock last: hash the finished file.
        let (id, size) = hash_reader(
            File::open(temp.path()).map_err(|e| FsError::io("open image", temp.path(), e))?,
            temp.path(),
        )?;
        // Catch a writer bug before anyone relies on the image.
        let img = Image::open_with(temp.path(), 0).map_err(|e| match e {
            FsError::Corrupt { reason, .. } => FsError::Corrupt {
                image: id.clone(),
                reason: format!("written image does not read back: {reason}"),
            },
            other => other,
        })?;
        if img.stats() != stats {
            return Err(FsError::Corrupt {
                image: id,
                reason: "written image does not hold what was written".into(),
            });
        }
        drop(img);
        self.commit(temp, &id, &Record { size, stats })
    }

    /// Copies an image file from outside (e.g. `hybox snapshot import`) into the store after
    /// validating it fully (every node readable).
    ///
    /// # Errors
    /// [`FsError::Corrupt`] or [`FsError::Io`].
    pub fn import(&self, file: &Path) -> Result<StoredImage> {
        let src = File::open(file).map_err(|e| FsError::io("open image", file, e))?;
        let temp = Temp::create(&self.dir)?;
        // Copied sequentially, so hashed on the way.
        let (id, size) = {
            let mut hasher = Sha256::new();
            let mut w = BufWriter::with_capacity(1 << 20, temp.file()?);
            let mut r = src;
            let mut buf = vec![0u8; 256 * 1024];
            let mut total = 0u64;
            loop {
                let n = match r.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(FsError::io("read image", file, e)),
                };
                hasher.update(&buf[..n]);
                w.write_all(&buf[..n])
                    .map_err(|e| FsError::io("write image", temp.path(), e))?;
                total += n as u64;
            }
            w.flush()
                .map_err(|e| FsError::io("write image", temp.path(), e))?;
            (hex::encode(hasher.finalize()), total)
        };
        temp.file()?
            .sync_all()
            .map_err(|e| FsError::io("sync image", temp.path(), e))?;
        let label = file
            .file_name()
            .map_or_else(|| "image".into(), |n| n.to_string_lossy().into_owned());
        let relabel = |e: FsError| match e {
            FsError::Corrupt { reason, .. } => FsError::Corrupt {
                image: label.clone(),
                reason,
            },
            other => other,
        };
        let img = Image::open_with(temp.path(), image::DEFAULT_CACHE_BYTES).map_err(relabel)?;
        img.verify_contents().map_err(relabel)?;
        let stats = img.stats();
        drop(img);
        self.commit(temp, &id, &Record { size, stats })
    }

    /// Opens a stored image (shared: the same `Arc` while anyone holds it). Checks the file's
    /// size against the name's record and validates the structure; [`FsError::Corrupt`] if not.
    ///
    /// # Errors
    /// [`FsError::NotFound`], [`FsError::Corrupt`], [`FsError::Io`].
    pub fn open_image(&self, id: &str) -> Result<Arc<Image>> {
        check_id(id)?;
        if let Some(img) = self.open_map().get(id).and_then(Weak::upgrade) {
            return Ok(img);
        }
        // Opened without the lock, so that a slow open does not hold up the others; if two
        // threads open the same image at once, the first one recorded wins.
        self.info(id)?;
        let img = Image::open(&self.path(id)).map_err(|e| match e {
            FsError::Corrupt { reason, .. } => FsError::Corrupt {
                image: id.to_owned(),
                reason,
            },
            other => other,
        })?;
        let mut open = self.open_map();
        if let Some(first) = open.get(id).and_then(Weak::upgrade) {
            return Ok(first);
        }
        open.retain(|_, w| w.strong_count() > 0);
        open.insert(id.to_owned(), Arc::downgrade(&img));
        Ok(img)
    }

    /// Metadata of a stored image without opening it fully.
    ///
    /// # Errors
    /// [`FsError::NotFound`], [`FsError::Corrupt`].
    pub fn info(&self, id: &str) -> Result<StoredImage> {
        check_id(id)?;
        let path = self.path(id);
        let meta = match fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(FsError::NotFound(format!("image {id}")));
            }
            Err(e) => return Err(FsError::io("stat image", &path, e)),
        };
        let corrupt = |reason: String| FsError::Corrupt {
            image: id.to_owned(),
            reason,
        };
        let rec = fs::read(self.record_path(id))
            .map_err(|e| corrupt(format!("cannot read its record: {e}")))?;
        let rec: Record =
            serde_json::from_slice(&rec).map_err(|e| corrupt(format!("bad record: {e}")))?;
        if rec.size != meta.len() {
            return Err(corrupt(format!(
                "file is {} bytes, recorded {}",
                meta.len(),
                rec.size
            )));
        }
        Ok(StoredImage {
            id: id.to_owned(),
            size: rec.size,
            stats: rec.stats,
        })
    }

    /// Recomputes the sha256 of a stored image and compares it with its id.
    ///
    /// # Errors
    /// [`FsError::Corrupt`] on mismatch.
    pub fn verify(&self, id: &str) -> Result<()> {
        check_id(id)?;
        let path = self.path(id);
        let f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(FsError::NotFound(format!("image {id}")));
            }
            Err(e) => return Err(FsError::io("open image", &path, e)),
        };
        let (sha, _) = hash_reader(f, &path)?;
        if sha != id {
            return Err(FsError::Corrupt {
                image: id.to_owned(),
                reason: format!("content hash is {sha}"),
            });
        }
        Ok(())
    }

    /// The file of a stored image (for export). An invalid id gives a path in the store that
    /// never exists (use [`Store::checked_path`] to get an error instead).
    pub fn path(&self, id: &str) -> PathBuf {
        if is_valid_id(id) {
            self.dir.join(format!("{id}.sqfs"))
        } else {
            self.dir.join(".invalid-id")
        }
    }

    /// The file of a stored image, checking the id and that the image exists.
    ///
    /// # Errors
    /// [`FsError::Invalid`], [`FsError::NotFound`].
    pub fn checked_path(&self, id: &str) -> Result<PathBuf> {
        check_id(id)?;
        let p = self.path(id);
        if p.exists() {
            Ok(p)
        } else {
            Err(FsError::NotFound(format!("image {id}")))
        }
    }

    /// Ids of all stored images.
    ///
    /// # Errors
    /// [`FsError::Io`].
    pub fn list(&self) -> Result<Vec<String>> {
        let entries =
            fs::read_dir(&self.dir).map_err(|e| FsError::io("read store", &self.dir, e))?;
        let mut ids = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| FsError::io("read store", &self.dir, e))?;
            if let Some(id) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".sqfs"))
                && is_valid_id(id)
            {
                ids.push(id.to_owned());
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Removes a stored image (open `Arc`s keep working until dropped).
    ///
    /// # Errors
    /// [`FsError::NotFound`], [`FsError::Io`].
    pub fn remove(&self, id: &str) -> Result<()> {
        check_id(id)?;
        let path = self.path(id);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(FsError::NotFound(format!("image {id}")));
            }
            Err(e) => return Err(FsError::io("remove image", &path, e)),
        }
        let rec = self.record_path(id);
        match fs::remove_file(&rec) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(FsError::io("remove record", &rec, e)),
        }
        self.open_map().remove(id);
        fsync_dir(&self.dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        assert!(is_valid_id(&"a".repeat(64)));
        assert!(is_valid_id(&"0123456789abcdef".repeat(4)));
        for bad in [
            "",
            "abc",
            &"A".repeat(64),
            &"g".repeat(64),
            &"a".repeat(65),
            &format!("../{}", "a".repeat(61)),
        ] {
            assert!(!is_valid_id(bad), "{bad}");
        }
    }
}
