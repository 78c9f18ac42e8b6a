//! Snapshot records: `<data>/snapshots/<id>.json`, each naming a stack of images in the store.
//!
//! A record is written (temp file, fsync, rename, fsync of the folder) only after every image
//! it names is in the store, so a crash during a snapshot never lists a snapshot that cannot
//! be restored; images left without a record are collected by [`crate::workspaces`]'s sweep.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::api::error::ApiError;

/// One snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    /// `snap-<hex>`.
    pub id: String,
    /// The sandbox it was taken of (none for an imported snapshot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox_id: Option<String>,
    /// A label given by the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The directory it holds (`/workspace` or below).
    pub dir: String,
    /// Image ids, top first.
    pub layers: Vec<String>,
    /// Bytes stored: the sum of its images' sizes (images shared with other snapshots count in
    /// each).
    pub size: u64,
    /// Regular files in the tree.
    pub files: u64,
    /// Directories in the tree.
    pub dirs: u64,
    /// Bytes of file content in the tree.
    pub bytes: u64,
    /// When it was taken (RFC 3339).
    pub created_at: String,
    /// When the sweeper removes it (RFC 3339), if it expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// `expires_at` in seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_unix: Option<u64>,
}

impl Snapshot {
    /// Whether it has expired at `now`.
    #[must_use]
    pub fn expired(&self, now: SystemTime) -> bool {
        let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        self.expires_unix.is_some_and(|t| t <= now)
    }
}

/// Computes `expiresAt` for a TTL in seconds from now.
#[must_use]
pub fn expiry(ttl_secs: u64) -> (String, u64) {
    let at = SystemTime::now() + Duration::from_secs(ttl_secs);
    (
        crate::timestamp::rfc3339(at),
        at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs(),
    )
}

/// Whether a string is a well-formed snapshot id (checked before it touches the disk).
#[must_use]
pub fn valid_id(id: &str) -> bool {
    id.strip_prefix("snap-").is_some_and(|h| {
        !h.is_empty()
            && h.len() <= 32
            && h.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    })
}

/// All snapshot records.
#[derive(Debug)]
pub struct Snapshots {
    dir: PathBuf,
    all: Mutex<HashMap<String, Snapshot>>,
}

fn io_err(what: &str, e: std::io::Error) -> ApiError {
    ApiError::Internal(anyhow::Error::new(e).context(what.to_owned()))
}

impl Snapshots {
    /// Loads the records under `<data>/snapshots`, skipping (and logging) unreadable ones.
    ///
    /// # Errors
    /// [`ApiError::Internal`] when the folder cannot be made or read.
    pub fn open(data_dir: &Path) -> Result<Self, ApiError> {
        let dir = data_dir.join("snapshots");
        std::fs::create_dir_all(&dir).map_err(|e| io_err("create snapshots dir", e))?;
        let mut all = HashMap::new();
        for entry in std::fs::read_dir(&dir).map_err(|e| io_err("read snapshots dir", e))? {
            let entry = entry.map_err(|e| io_err("read snapshots dir", e))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            let Some(id) = name.strip_suffix(".json").filter(|id| valid_id(id)) else {
                continue;
            };
            match std::fs::read(&path)
                .map_err(anyhow::Error::new)
                .and_then(|b| serde_json::from_slice::<Snapshot>(&b).map_err(anyhow::Error::new))
            {
                Ok(s) if s.id == id => {
                    all.insert(s.id.clone(), s);
                }
                Ok(_) => {
                    tracing::warn!(file = %path.display(), "snapshot record names another id; skipped")
                }
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "unreadable snapshot record; skipped")
                }
            }
        }
        Ok(Self {
            dir,
            all: Mutex::new(all),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Snapshot>> {
        self.all
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records a snapshot durably (blocking I/O).
    ///
    /// # Errors
    /// [`ApiError::Internal`].
    pub fn insert(&self, snap: Snapshot) -> Result<(), ApiError> {
        use std::io::Write;
        let tmp = self.dir.join(format!("{}.json.tmp", snap.id));
        let bytes = serde_json::to_vec_pretty(&snap).map_err(|e| ApiError::Internal(e.into()))?;
        let mut f = std::fs::File::create(&tmp).map_err(|e| io_err("write snapshot record", e))?;
        f.write_all(&bytes)
            .and_then(|()| f.sync_all())
            .map_err(|e| io_err("write snapshot record", e))?;
        std::fs::rename(&tmp, self.dir.join(format!("{}.json", snap.id)))
            .map_err(|e| io_err("install snapshot record", e))?;
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_err("sync snapshots dir", e))?;
        self.lock().insert(snap.id.clone(), snap);
        Ok(())
    }

    /// One snapshot.
    ///
    /// # Errors
    /// [`ApiError::SnapshotNotFound`].
    pub fn get(&self, id: &str) -> Result<Snapshot, ApiError> {
        self.lock()
            .get(id)
            .cloned()
            .ok_or_else(|| ApiError::SnapshotNotFound(id.to_owned()))
    }

    /// All snapshots (of one sandbox if given), oldest first.
    #[must_use]
    pub fn list(&self, sandbox: Option<&str>) -> Vec<Snapshot> {
        let mut v: Vec<Snapshot> = self
            .lock()
            .values()
            .filter(|s| sandbox.is_none_or(|id| s.sandbox_id.as_deref() == Some(id)))
            .cloned()
            .collect();
        v.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        v
    }

    /// Removes a snapshot's record (its images go at the next collection).
    ///
    /// # Errors
    /// [`ApiError::SnapshotNotFound`], [`ApiError::Internal`].
    pub fn remove(&self, id: &str) -> Result<Snapshot, ApiError> {
        let snap = self
            .lock()
            .remove(id)
            .ok_or_else(|| ApiError::SnapshotNotFound(id.to_owned()))?;
        match std::fs::remove_file(self.dir.join(format!("{id}.json"))) {
            Ok(()) => Ok(snap),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(snap),
            Err(e) => Err(io_err("remove snapshot record", e)),
        }
    }

    /// Ids of expired snapshots.
    #[must_use]
    pub fn expired(&self, now: SystemTime) -> Vec<String> {
        self.lock()
            .values()
            .filter(|s| s.expired(now))
            .map(|s| s.id.clone())
            .collect()
    }

    /// Every image id some snapshot names.
    #[must_use]
    pub fn referenced_images(&self) -> HashSet<String> {
        self.lock()
            .values()
            .flat_map(|s| s.layers.iter().cloned())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(id: &str, sandbox: &str, expires_unix: Option<u64>) -> Snapshot {
        Snapshot {
            id: id.into(),
            sandbox_id: Some(sandbox.into()),
            name: None,
            dir: "/workspace".into(),
            layers: vec![format!("{:064x}", 1)],
            size: 10,
            files: 1,
            dirs: 1,
            bytes: 3,
            created_at: crate::timestamp::now(),
            expires_at: None,
            expires_unix,
        }
    }

    #[test]
    fn ids() {
        assert!(valid_id("snap-0123abcd"));
        assert!(!valid_id("snap-"));
        assert!(!valid_id("snap-ABC"));
        assert!(!valid_id("snap-../x"));
        assert!(!valid_id("0123"));
        assert!(!valid_id(&format!("snap-{}", "a".repeat(33))));
    }

    #[test]
    fn records_survive_reopen_and_expire() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Snapshots::open(dir.path()).expect("open");
        s.insert(snap("snap-aa", "sb", None)).expect("insert");
        s.insert(snap("snap-bb", "other", Some(1))).expect("insert");
        std::fs::write(dir.path().join("snapshots/snap-cc.json.tmp"), b"{").expect("tmp");
        std::fs::write(dir.path().join("snapshots/snap-dd.json"), b"{broken").expect("bad");
        let s = Snapshots::open(dir.path()).expect("reopen");
        assert_eq!(s.list(None).len(), 2);
        assert_eq!(s.list(Some("sb")).len(), 1);
        assert!(!dir.path().join("snapshots/snap-cc.json.tmp").exists());
        assert_eq!(s.expired(SystemTime::now()), vec!["snap-bb".to_owned()]);
        assert_eq!(s.referenced_images().len(), 1);
        s.remove("snap-aa").expect("remove");
        assert!(matches!(
            s.get("snap-aa"),
            Err(ApiError::SnapshotNotFound(_))
        ));
        assert!(
            Snapshots::open(dir.path())
                .expect("reopen")
                .get("snap-aa")
                .is_err()
        );
    }
}
