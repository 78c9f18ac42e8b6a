//! A root filesystem being made in the store: its temp directory, and the finishing touches
//! every image gets (mountpoints, an empty `resolv.conf`, no services started by apt).

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use super::store::temp_name;
use super::{ImageError, Result};

/// Directories the container runtime mounts over (a read-only image cannot get them later),
/// with their modes.
pub const MOUNTPOINTS: &[(&str, u32)] = &[
    ("workspace", 0o755),
    (".hybox", 0o755),
    ("proc", 0o555),
    ("sys", 0o555),
    ("dev", 0o755),
    ("tmp", 0o1777),
    ("run", 0o755),
];

/// The default `PATH` of images that do not say.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A temp directory in the store, removed on drop (after detaching anything still mounted
/// below it, so a removal never walks into a mounted host directory).
#[derive(Debug)]
pub struct TempTree {
    path: PathBuf,
}

impl TempTree {
    /// Creates `<dir>/.<prefix>-<random>` (mode 0700: the tree below may hold anything).
    ///
    /// # Errors
    /// I/O.
    pub fn create(dir: &Path, prefix: &str) -> Result<Self> {
        loop {
            let path = dir.join(temp_name(prefix));
            match fs::create_dir(&path) {
                Ok(()) => {
                    fs::set_permissions(&path, fs::Permissions::from_mode(0o700))?;
                    return Ok(Self { path });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Its path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Mount points at or below `dir`, deepest first (from `/proc/self/mountinfo`).
fn mounts_below(dir: &Path) -> Vec<PathBuf> {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mountinfo(p)))
        .filter(|p| p.starts_with(dir))
        .collect();
    out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    out
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            let v = b[i + 1..i + 4]
                .iter()
                .fold(0u32, |a, d| a * 8 + u32::from(d - b'0'));
            out.push(u8::try_from(v).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Drop for TempTree {
    fn drop(&mut self) {
        for m in mounts_below(&self.path) {
            let _ = Command::new("umount").arg("--lazy").arg(&m).status();
        }
        let left = mounts_below(&self.path);
        if !left.is_empty() {
            tracing::error!(dir = %self.path.display(), mounts = ?left, "not removing a temp tree with mounts below it");
            return;
        }
        if let Err(e) = fs::remove_dir_all(&self.path) {
            tracing::warn!(dir = %self.path.display(), error = %e, "could not remove temp tree");
        }
    }
}

/// `root/rel`, refusing when an existing component below `root` before the last is a
/// symlink or not a directory (the image's own symlinks must not redirect our writes).
fn inside(root: &Path, rel: &str) -> Result<PathBuf> {
    let rel = Path::new(rel);
    let mut p = root.to_path_buf();
    let comps: Vec<_> = rel.components().collect();
    for (i, c) in comps.iter().enumerate() {
        let Component::Normal(name) = c else {
            return Err(ImageError::Invalid(format!(
                "{} is not a plain relative path",
                rel.display()
            )));
        };
        p.push(name);
        if i + 1 < comps.len() {
            match fs::symlink_metadata(&p) {
                Ok(md) if md.is_dir() => {}
                Ok(_) => {
                    return Err(ImageError::Build(format!(
                        "/{} is not a directory",
                        rel.display()
                    )));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir(&p)?;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(p)
}

/// Writes a regular file at `root/rel` (replacing a file or symlink there).
///
/// # Errors
/// I/O, or a path that leaves the tree.
pub fn put_file(root: &Path, rel: &str, content: &[u8], mode: u32) -> Result<()> {
    let p = inside(root, rel)?;
    match fs::symlink_metadata(&p) {
        Ok(md) if md.is_dir() => {
            return Err(ImageError::Build(format!("/{rel} is a directory")));
        }
        Ok(_) => fs::remove_file(&p)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&p)?;
    f.write_all(content)?;
    // The umask may have taken bits off.
    fs::set_permissions(&p, fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// Removes the files (not directories) directly in `root/rel` whose names satisfy `pick`.
///
/// # Errors
/// I/O.
pub fn remove_files(root: &Path, rel: &str, pick: impl Fn(&str) -> bool) -> Result<()> {
    let dir = inside(root, rel)?;
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    for e in entries {
        let e = e?;
        let is_dir = e.file_type()?.is_dir();
        if !is_dir && pick(&e.file_name().to_string_lossy()) {
            fs::remove_file(e.path())?;
        }
    }
    Ok(())
}

/// `/etc/hostname` of images.
pub const HOSTNAME: &[u8] = b"hybox\n";

/// The mountpoints, a regular `/etc/resolv.conf` (a bind-mount target; empty when missing or
/// not a regular file) and an `/etc/hostname` when missing.
///
/// # Errors
/// I/O, or one of those paths taken by something else.
pub fn finish(root: &Path) -> Result<()> {
    // What is added takes the time of the directory it goes in, and those directories keep
    // theirs: the same input gives the same image (squashfs records the newest mtime).
    let mtime_of = |p: &Path| fs::symlink_metadata(p).map_or(0, |m| m.mtime());
    let root_t = mtime_of(root);
    for (dir, mode) in MOUNTPOINTS {
        let p = inside(root, dir)?;
        match fs::symlink_metadata(&p) {
            Ok(md) if md.is_dir() => {}
            Ok(_) => {
                return Err(ImageError::Invalid(format!(
                    "/{dir} is not a directory in the root filesystem"
                )));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&p)?;
                set_mtime(&p, root_t)?;
            }
            Err(e) => return Err(e.into()),
        }
        fs::set_permissions(&p, fs::Permissions::from_mode(*mode))?;
    }
    let etc = root.join("etc");
    let etc_t = if fs::symlink_metadata(&etc).is_ok_and(|m| m.is_dir()) {
        mtime_of(&etc)
    } else {
        root_t
    };
    // A regular file already there is kept (the runtime bind-mounts over it anyway).
    let resolv = inside(root, "etc/resolv.conf")?;
    if !fs::symlink_metadata(&resolv).is_ok_and(|m| m.is_file()) {
        put_file(root, "etc/resolv.conf", b"", 0o644)?;
        set_mtime(&resolv, etc_t)?;
    }
    let hostname = inside(root, "etc/hostname")?;
    if fs::symlink_metadata(&hostname).is_err() {
        put_file(root, "etc/hostname", HOSTNAME, 0o644)?;
        set_mtime(&hostname, etc_t)?;
    }
    set_mtime(&etc, etc_t)?;
    set_mtime(root, root_t)
}

/// Sets the mtime (and atime) of `p`, not following a symlink.
fn set_mtime(p: &Path, secs: i64) -> Result<()> {
    let t = rustix::fs::Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        p,
        &rustix::fs::Timestamps {
            last_access: t,
            last_modification: t,
        },
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(io::Error::from)?;
    Ok(())
}

/// `PRETTY_NAME` of the tree's os-release (`/etc/os-release`, else `/usr/lib/os-release`),
/// read without following symlinks out of the tree.
#[must_use]
pub fn os_pretty_name(root: &Path) -> Option<String> {
    let text = ["etc/os-release", "usr/lib/os-release"]
        .iter()
        .find_map(|rel| {
            let p = inside_readonly(root, rel)?;
            let md = fs::symlink_metadata(&p).ok()?;
            (md.is_file() && md.len() < 64 * 1024)
                .then(|| fs::read_to_string(&p).ok())
                .flatten()
        })?;
    text.lines().find_map(|l| {
        let v = l.strip_prefix("PRETTY_NAME=")?.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(v);
        (!v.is_empty()).then(|| v.to_owned())
    })
}

/// `root/rel` when every component before the last is a real directory.
fn inside_readonly(root: &Path, rel: &str) -> Option<PathBuf> {
    let mut p = root.to_path_buf();
    let comps: Vec<_> = Path::new(rel).components().collect();
    for (i, c) in comps.iter().enumerate() {
        let Component::Normal(name) = c else {
            return None;
        };
        p.push(name);
        if i + 1 < comps.len() && !fs::symlink_metadata(&p).ok()?.is_dir() {
            return None;
        }
    }
    Some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo(r"/a\040b\134c"), "/a b\\c");
        assert_eq!(unescape_mountinfo(r"/plain\04"), r"/plain\04");
    }
}
