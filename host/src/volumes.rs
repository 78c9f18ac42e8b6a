//! Shared volumes: named workspaces of their own, mounted into several sandboxes (read-only or
//! read-write) at a path each sandbox chooses, for both routes.
//!
//! A volume is a view `@<name>` of the workspace mount (mount mode) or a plain directory
//! (extract mode); its record is `<data>/volumes/<name>.json`. Every sandbox that mounts it sees
//! the same bytes at once, because they all go through the same view.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::api::error::ApiError;
use crate::workspaces::{Layout, Workspaces};

/// A volume's persisted record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    /// Its name: `[a-z0-9-]`, 1 to 63 characters.
    pub name: String,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// Where its layers are (mount mode).
    #[serde(flatten)]
    pub layout: Layout,
}

/// A sandbox's use of a volume, as given at creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VolumeMount {
    /// The volume.
    pub name: String,
    /// Where the sandbox sees it (an absolute guest path outside `/workspace` and `/tmp`).
    pub path: String,
    /// Refuse writes through this mount.
    #[serde(default)]
    pub read_only: bool,
}

/// Checks a volume name.
///
/// # Errors
/// [`ApiError::InvalidRequest`].
pub fn check_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(ApiError::InvalidRequest(format!(
            "invalid volume name {:?}: 1-63 of [a-z0-9-], not starting or ending with '-'",
            name.chars().take(80).collect::<String>()
        )))
    }
}

/// Checks where a volume is mounted in a sandbox: absolute, normal, one to eight plain
/// components, and not on or under `/workspace` or `/tmp` (or any other reserved guest path).
///
/// # Errors
/// [`ApiError::InvalidRequest`].
pub fn check_mount_path(path: &str) -> Result<(), ApiError> {
    let bad = |why: &str| {
        Err(ApiError::InvalidRequest(format!(
            "volume path {path:?}: {why}"
        )))
    };
    let Some(rest) = path.strip_prefix('/') else {
        return bad("must be absolute");
    };
    let parts: Vec<&str> = rest.split('/').collect();
    if rest.is_empty() || parts.len() > 8 || path.len() > 256 {
        return bad("must have 1 to 8 components");
    }
    for p in &parts {
        if p.is_empty()
            || *p == "."
            || *p == ".."
            || p.bytes().any(|b| b == 0 || b.is_ascii_control())
        {
            return bad("must be normal (no empty, '.', '..' or control characters)");
        }
    }
    const RESERVED: [&str; 10] = [
        "workspace",
        "tmp",
        "proc",
        "sys",
        "dev",
        "etc",
        "usr",
        "bin",
        "lib",
        "sbin",
    ];
    if RESERVED.contains(&parts[0]) {
        return bad("is reserved (workspace, tmp and system directories)");
    }
    Ok(())
}

fn view_name(name: &str) -> String {
    format!("@{name}")
}

/// All volumes.
#[derive(Debug)]
pub struct Volumes {
    dir: PathBuf,
    complete: bool,
    all: Mutex<HashMap<String, Volume>>,
    ws: Arc<Workspaces>,
}

fn io_err(what: &str, e: impl Into<anyhow::Error>) -> ApiError {
    ApiError::Internal(e.into().context(what.to_owned()))
}

impl Volumes {
    /// Loads the volumes and brings their views up.
    ///
    /// # Errors
    /// [`ApiError::Internal`] when the folder cannot be read.
    pub fn open(data_dir: &Path, ws: Arc<Workspaces>) -> Result<Self, ApiError> {
        let dir = data_dir.join("volumes");
        std::fs::create_dir_all(&dir).map_err(|e| io_err("create volumes dir", e))?;
        let mut all = HashMap::new();
        let mut complete = true;
        for entry in std::fs::read_dir(&dir).map_err(|e| io_err("read volumes dir", e))? {
            let entry = entry.map_err(|e| io_err("read volumes dir", e))?;
            let fname = entry.file_name().to_string_lossy().into_owned();
            let Some(name) = fname.strip_suffix(".json") else {
                continue;
            };
            let loaded = std::fs::read(entry.path())
                .map_err(anyhow::Error::new)
                .and_then(|b| serde_json::from_slice::<Volume>(&b).map_err(anyhow::Error::new))
                .and_then(|mut v| {
                    let owner = dir.join(&v.name);
                    let layout = ws.attach(&view_name(&v.name), &owner, &v.layout)?;
                    if layout != v.layout {
                        v.layout = layout;
                        write_record(&dir, &v)?;
                    }
                    Ok(v)
                });
            match loaded {
                Ok(v) if v.name == name => {
                    all.insert(v.name.clone(), v);
                }
                Ok(_) => {
                    complete = false;
                    tracing::warn!(file = %fname, "volume record names another volume; skipped");
                }
                Err(e) => {
                    complete = false;
                    tracing::warn!(file = %fname, error = %e, "unreadable volume; skipped");
                }
            }
        }
        Ok(Self {
            dir,
            complete,
            all: Mutex::new(all),
            ws,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Volume>> {
        self.all
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether every volume record loaded.
    #[must_use]
    pub fn complete(&self) -> bool {
        self.complete
    }

    /// Upper directories volumes use (kept by the start-up sweep).
    #[must_use]
    pub fn uppers(&self) -> Vec<String> {
        self.lock()
            .values()
            .filter_map(|v| v.layout.upper.clone())
            .collect()
    }

    /// Gets or creates a volume; true when created. Blocking I/O.
    ///
    /// # Errors
    /// [`ApiError::InvalidRequest`] for a bad name, [`ApiError::Internal`].
    pub fn get_or_create(&self, name: &str) -> Result<(Volume, bool), ApiError> {
        check_name(name)?;
        let mut all = self.lock();
        if let Some(v) = all.get(name) {
            return Ok((v.clone(), false));
        }
        let owner = self.dir.join(name);
        let layout = self
            .ws
            .attach(&view_name(name), &owner, &Layout::default())
            .map_err(|e| io_err("create volume", e))?;
        let v = Volume {
            name: name.to_owned(),
            created_at: crate::timestamp::now(),
            layout,
        };
        write_record(&self.dir, &v).map_err(|e| io_err("write volume record", e))?;
        all.insert(name.to_owned(), v.clone());
        Ok((v, true))
    }

    /// One volume.
    ///
    /// # Errors
    /// [`ApiError::VolumeNotFound`].
    pub fn get(&self, name: &str) -> Result<Volume, ApiError> {
        self.lock()
            .get(name)
            .cloned()
            .ok_or_else(|| ApiError::VolumeNotFound(name.chars().take(80).collect()))
    }

    /// All volumes by name.
    #[must_use]
    pub fn list(&self) -> Vec<Volume> {
        let mut v: Vec<Volume> = self.lock().values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// The host directory of a volume.
    #[must_use]
    pub fn host_path(&self, name: &str) -> PathBuf {
        self.ws.path(&view_name(name), &self.dir.join(name))
    }

    /// Deletes a volume and its files. The caller checks no sandbox uses it. Blocking I/O.
    ///
    /// # Errors
    /// [`ApiError::VolumeNotFound`], [`ApiError::Internal`].
    pub fn remove(&self, name: &str) -> Result<(), ApiError> {
        let v = self
            .lock()
            .remove(name)
            .ok_or_else(|| ApiError::VolumeNotFound(name.chars().take(80).collect()))?;
        self.ws.detach(&view_name(name), &v.layout);
        let _ = std::fs::remove_dir_all(self.dir.join(name));
        std::fs::remove_file(self.dir.join(format!("{name}.json")))
            .map_err(|e| io_err("remove volume record", e))
    }
}

fn write_record(dir: &Path, v: &Volume) -> anyhow::Result<()> {
    use std::io::Write;
    let tmp = dir.join(format!(".{}.json.tmp", v.name));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&serde_json::to_vec_pretty(v)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(format!("{}.json", v.name)))?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_paths() {
        for ok in ["/data", "/mnt/shared", "/home/user/cache"] {
            assert!(check_mount_path(ok).is_ok(), "{ok}");
        }
        for bad in [
            "data",
            "/",
            "/workspace",
            "/workspace/x",
            "/tmp",
            "/tmp/x",
            "/a/../b",
            "/a//b",
            "/a/./b",
            "/proc/x",
            "/etc",
            "/a/b/c/d/e/f/g/h/i",
            "/a\u{1}",
        ] {
            assert!(check_mount_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names() {
        assert!(check_name("cache-1").is_ok());
        for bad in ["", "-a", "a-", "A", "a_b", "a/b", &"a".repeat(64)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
