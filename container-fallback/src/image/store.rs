//! The store's files: `<id>.sqfs` and its manifest `<id>.json`, written atomically so that a
//! store directory can be shared by several processes (CI points every test server at one).
//!
//! Every new file is written as a dot-named temp file in the store, fsynced and renamed; the
//! image before its manifest, so a manifest never names a missing image (a crash can leave an
//! image without a manifest: invisible, and rebuilt or re-imported to the same id). Builds of
//! one recipe serialise on an `flock`ed lock file, so a second build waits and then finds the
//! first one's image. Temp files and directories of a process that died stay behind (another
//! process may still be writing its own): they start with `.` and are safe to delete when no
//! build or import runs.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{SystemTime, UNIX_EPOCH};

use hybox_fs_layer::image::{Image, TreeStats, WriteOptions, write_tree};
use hybox_fs_layer::temp::TempFile;
use rustix::fs::FlockOperation;
use sha2::{Digest, Sha256};

use super::{ImageError, ImageManifest, ImageStore, Progress, Result};

/// Whether `id` is an image id: 64 lowercase hex digits.
#[must_use]
pub fn is_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A fresh random name: `.<prefix>-<32 hex>`.
pub(super) fn temp_name(prefix: &str) -> String {
    format!(".{prefix}-{}", hybox_fs_layer::temp::random_hex())
}

/// A store temp file `.<prefix>-<random>.tmp` (mode 0644: images are read by the runtime).
fn temp_file(dir: &Path, prefix: &str) -> Result<TempFile> {
    Ok(TempFile::create(dir, &format!("{prefix}-"), 0o644)?)
}

fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)?.sync_all()?;
    Ok(())
}

/// Writes `bytes` to `to` atomically (temp file, fsync, rename, fsync of the directory).
fn write_atomic(dir: &Path, to: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_file(dir, "manifest")?;
    {
        let mut f = tmp.file()?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    tmp.persist(to)?;
    fsync_dir(dir)
}

/// An exclusive `flock` held until drop.
#[derive(Debug)]
pub(super) struct Lock {
    _file: File,
}

impl Lock {
    /// Locks `<dir>/.lock-<key>`, saying so through `progress` when it has to wait.
    pub(super) fn acquire(dir: &Path, key: &str, progress: &dyn Fn(Progress)) -> Result<Lock> {
        // Lock files are never removed: removing one would let two processes lock two
        // different files of the same name.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(dir.join(format!(".lock-{key}")))?;
        match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                progress(Progress::Phase(
                    "waiting for another build of this recipe".into(),
                ));
                rustix::fs::flock(&file, FlockOperation::LockExclusive).map_err(io::Error::from)?;
            }
            Err(e) => return Err(io::Error::from(e).into()),
        }
        Ok(Lock { _file: file })
    }
}

/// Now as RFC 3339 UTC with seconds (`2024-05-01T12:00:00Z`); sorts as text.
#[must_use]
pub fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    rfc3339(secs)
}

/// `secs` since the epoch as RFC 3339 UTC.
#[must_use]
pub fn rfc3339(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2);
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Sum of regular file sizes under `root` (not following symlinks), for a progress total.
fn tree_bytes(root: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(md) = e.metadata() else { continue };
            if md.is_dir() {
                stack.push(e.path());
            } else if md.is_file() {
                total += md.len();
            }
        }
    }
    total
}

fn hash_file(path: &Path) -> Result<(String, u64)> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => {
                h.update(&buf[..k]);
                n += k as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok((hex::encode(h.finalize()), n))
}

impl ImageStore {
    fn manifest_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// Reads every manifest whose image file exists with its recorded size.
    pub(super) fn read_all(&self) -> Result<Vec<ImageManifest>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            if !is_id(id) {
                continue;
            }
            let bytes = match fs::read(entry.path()) {
                Ok(b) => b,
                // Removed since the listing.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            };
            let m: ImageManifest = match serde_json::from_slice(&bytes) {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(id, error = %e, "skipping unreadable image manifest");
                    continue;
                }
            };
            if m.id != id {
                tracing::warn!(id, "skipping image manifest that names another id");
                continue;
            }
            match fs::metadata(self.path(&m)) {
                Ok(md) if md.len() == m.size => out.push(m),
                _ => tracing::warn!(id, "skipping image whose squashfs is missing or resized"),
            }
        }
        out.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// Removes an image and its manifest.
    ///
    /// # Errors
    /// [`ImageError::NotFound`] for an unknown id; I/O.
    pub fn remove(&self, id: &str) -> Result<ImageManifest> {
        let m = self.get(id)?;
        if m.id != id && !m.id.starts_with(id) {
            // `get` matched a name: removal wants the id, so a name never deletes by surprise.
            return Err(ImageError::NotFound(id.to_owned()));
        }
        // Manifest first: the image disappears from listings before its file does.
        match fs::remove_file(self.manifest_path(&m.id)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        match fs::remove_file(self.path(&m)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        fsync_dir(&self.dir)?;
        Ok(m)
    }

    /// The newest image built from recipe hash `hash`.
    pub(super) fn find_recipe(&self, hash: &str) -> Result<Option<ImageManifest>> {
        Ok(self
            .read_all()?
            .into_iter()
            .find(|m| m.recipe_hash.as_deref() == Some(hash)))
    }

    /// Writes a manifest (atomically).
    ///
    /// # Errors
    /// [`ImageError::Invalid`] for a bad id; I/O.
    pub fn write_manifest(&self, m: &ImageManifest) -> Result<()> {
        if !is_id(&m.id) {
            return Err(ImageError::Invalid(format!(
                "{:?} is not an image id",
                m.id
            )));
        }
        let bytes = serde_json::to_vec_pretty(m).map_err(io::Error::other)?;
        write_atomic(&self.dir, &self.manifest_path(&m.id), &bytes)
    }

    /// Packs the tree `rootfs` into the store and writes its manifest; `id`, `size` and
    /// `created_at` of `manifest` are filled in here.
    pub(super) fn pack(
        &self,
        rootfs: &Path,
        mut manifest: ImageManifest,
        progress: &dyn Fn(Progress),
    ) -> Result<ImageManifest> {
        progress(Progress::Phase("packing squashfs".into()));
        let total = tree_bytes(rootfs);
        progress(Progress::Count {
            done: 0,
            total: Some(total),
        });
        let tmp = temp_file(&self.dir, "image")?;
        let opts = WriteOptions::default();
        let (tx, rx) = mpsc::channel::<TreeStats>();
        // fs-layer's progress callback must be `Sync`, ours need not be: the write runs on a
        // scoped thread and its progress comes back here over a channel.
        let written = std::thread::scope(|s| {
            let file = tmp.file()?;
            let worker = s.spawn(move || {
                let cb = move |t: TreeStats| {
                    let _ = tx.send(t);
                };
                let mut w = BufWriter::with_capacity(1 << 20, file);
                let stats = write_tree(rootfs, &mut w, &opts, &cb)?;
                w.flush()?;
                Ok::<_, PackError>(stats)
            });
            for t in rx {
                progress(Progress::Count {
                    done: t.bytes,
                    total: Some(total.max(t.bytes)),
                });
            }
            worker
                .join()
                .map_err(|_| ImageError::Build("packing: the writer panicked".into()))?
                .map_err(ImageError::from)
        })?;
        tmp.file()?.sync_all()?;
        let (id, size) = hash_file(tmp.path())?;
        // Catch a writer bug before anyone mounts the image.
        let img = Image::open_with(tmp.path(), 0)
            .map_err(|e| ImageError::Build(format!("packing: image does not read back: {e}")))?;
        if img.stats() != written {
            return Err(ImageError::Build(
                "packing: image reads back with other contents".into(),
            ));
        }
        drop(img);
        manifest.id = id;
        manifest.size = size;
        manifest.created_at = now_rfc3339();
        let target = self.path(&manifest);
        // Same id, same bytes: an existing file is as good as ours.
        if fs::metadata(&target).is_ok_and(|m| m.len() == size) {
            drop(tmp);
        } else {
            tmp.persist(&target)?;
            fsync_dir(&self.dir)?;
        }
        self.write_manifest(&manifest)?;
        tracing::info!(
            id = %manifest.id,
            name = %manifest.name,
            size,
            files = written.files,
            bytes = written.bytes,
            "image stored"
        );
        Ok(manifest)
    }
}

/// A failure of the packing thread.
#[derive(Debug)]
enum PackError {
    Fs(hybox_fs_layer::FsError),
    Io(io::Error),
}

impl From<hybox_fs_layer::FsError> for PackError {
    fn from(e: hybox_fs_layer::FsError) -> Self {
        Self::Fs(e)
    }
}

impl From<io::Error> for PackError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

impl From<PackError> for ImageError {
    fn from(e: PackError) -> Self {
        match e {
            PackError::Fs(e) => ImageError::Build(format!("packing: {e}")),
            PackError::Io(e) => ImageError::Build(format!("packing: {e}")),
        }
    }
}
