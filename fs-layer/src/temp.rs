//! Temp files made in the directory of their destination and renamed over it, so a reader sees
//! the old content or the new, never half of it. Shared by the snapshot store and the container
//! image store.

use std::fs::{self, File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// 32 random hex digits, different on every call: for temp names nobody guesses by accident
/// (not for secrets).
#[must_use]
pub fn random_hex() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    // `RandomState` is seeded from the OS once per process and then per instance.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    let a = h.finish();
    h.write_u64(a);
    format!("{a:016x}{:016x}", h.finish())
}

/// A temp file `<dir>/.<prefix><random>.tmp`, removed on drop unless persisted.
#[derive(Debug)]
pub struct TempFile {
    path: PathBuf,
    file: Option<File>,
}

impl TempFile {
    /// Creates a new temp file in `dir` with permission bits `mode`.
    ///
    /// # Errors
    /// I/O.
    pub fn create(dir: &Path, prefix: &str, mode: u32) -> io::Result<Self> {
        loop {
            let path = dir.join(format!(".{prefix}{}.tmp", random_hex()));
            match OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(&path)
            {
                Ok(file) => {
                    return Ok(Self {
                        path,
                        file: Some(file),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Its path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open file.
    ///
    /// # Errors
    /// Never while it is not persisted (the error exists for the type's sake).
    pub fn file(&self) -> io::Result<&File> {
        self.file
            .as_ref()
            .ok_or_else(|| io::Error::other("temp file closed"))
    }

    /// Renames it to `to`, replacing what is there.
    ///
    /// # Errors
    /// The rename failed (the temp file is then removed).
    pub fn persist(mut self, to: &Path) -> io::Result<()> {
        self.file = None;
        fs::rename(&self.path, to)?;
        self.path = PathBuf::new();
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        self.file = None;
        if !self.path.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_differ_and_unpersisted_files_go() {
        assert_ne!(random_hex(), random_hex());
        assert_eq!(random_hex().len(), 32);
        let dir = tempfile::tempdir().expect("tempdir");
        let t = TempFile::create(dir.path(), "x-", 0o600).expect("create");
        let p = t.path().to_owned();
        let name = p.file_name().expect("name").to_string_lossy().into_owned();
        assert!(name.starts_with(".x-") && name.ends_with(".tmp"), "{name}");
        drop(t);
        assert!(!p.exists());
        let t = TempFile::create(dir.path(), "", 0o600).expect("create");
        t.persist(&dir.path().join("final")).expect("persist");
        assert!(dir.path().join("final").exists());
        assert_eq!(fs::read_dir(dir.path()).expect("read").count(), 1);
    }
}
