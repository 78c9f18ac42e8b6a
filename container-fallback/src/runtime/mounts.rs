//! The mounts behind a container's root filesystem: the squashfs image loop-mounted read-only
//! once per image, an overlay with the container's writable layer on top, and their removal.
//! The only unsafe code of the runtime is here (`mount(2)`, `umount2(2)`).

use std::collections::HashSet;
use std::ffi::CString;
use std::ffi::OsString;
use std::fs;
use std::io::ErrorKind;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::command;
use super::{Result, RuntimeError};

/// The directory name an image is mounted under in `.images/`: the file stem when it is
/// already a sha256 (content-addressed images never change), else the stem plus a hash of the
/// path, size and mtime, so a file replaced in place gets a fresh mount.
pub(crate) fn image_key(image: &Path) -> Result<String> {
    let meta = fs::metadata(image)
        .map_err(|e| RuntimeError::Failed(format!("image {}: {e}", image.display())))?;
    let stem = image
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    if stem.len() == 64 && stem.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(stem.to_ascii_lowercase());
    }
    let canonical = fs::canonicalize(image)?;
    let mut hasher = Sha256::new();
    hasher.update(canonical.as_os_str().as_bytes());
    hasher.update(meta.len().to_le_bytes());
    hasher.update(meta.mtime().to_le_bytes());
    hasher.update(meta.mtime_nsec().to_le_bytes());
    let digest = hex::encode(hasher.finalize());
    let clean: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(32)
        .collect();
    Ok(format!("{clean}-{}", &digest[..16]))
}

/// Mounts `image` read-only at `<images>/<key>/` unless it already is, and returns that dir.
/// Callers serialise calls (two concurrent first mounts of one image would stack).
pub(crate) fn mount_image(images: &Path, image: &Path) -> Result<PathBuf> {
    let target = images.join(image_key(image)?);
    if is_mount_point(&target) {
        return Ok(target);
    }
    fs::create_dir_all(&target)?;
    let mut cmd = command::tool("mount");
    cmd.args(["-t", "squashfs", "-o", "loop,ro"])
        .arg(image)
        .arg(&target);
    command::run(&mut cmd)?;
    Ok(target)
}

/// Mounts an overlay of `upper` (with `work`) over the read-only `lower` at `target`.
pub(crate) fn mount_overlay(lower: &Path, upper: &Path, work: &Path, target: &Path) -> Result<()> {
    for dir in [lower, upper, work] {
        let bytes = dir.as_os_str().as_bytes();
        if bytes.iter().any(|b| matches!(b, b',' | b':' | b'\\')) {
            return Err(RuntimeError::Failed(format!(
                "overlay: path {} holds ',', ':' or '\\'",
                dir.display()
            )));
        }
    }
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    );
    let source = c"overlay";
    let fstype = c"overlay";
    let target_c = c_path(target)?;
    let data = CString::new(options.clone())
        .map_err(|_| RuntimeError::Failed("overlay options hold a NUL byte".into()))?;
    // SAFETY: every pointer is a valid NUL-terminated string that outlives the call; `data`
    // is the text options string overlayfs expects.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target_c.as_ptr(),
            fstype.as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            data.as_ptr().cast(),
        )
    };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        return Err(RuntimeError::Failed(format!(
            "mount -t overlay -o {options} overlay {}: {err}",
            target.display()
        )));
    }
    Ok(())
}

/// Unmounts everything mounted at `target`, lazily when busy (a process still holds it: it goes
/// away with that process). Nothing mounted is fine.
pub(crate) fn unmount(target: &Path) -> Result<()> {
    // Bounded: a path holds few stacked mounts.
    for _ in 0..8 {
        if !is_mount_point(target) {
            return Ok(());
        }
        match umount(target, 0) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                tracing::warn!(target = %target.display(), "busy; unmounting lazily");
                umount(target, libc::MNT_DETACH).map_err(|e| unmount_failed(target, &e))?;
            }
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return Ok(()),
            Err(e) => return Err(unmount_failed(target, &e)),
        }
    }
    Err(RuntimeError::Failed(format!(
        "umount {}: still mounted",
        target.display()
    )))
}

/// Unmounts `target` unless it is in use; `Ok(false)` when busy.
pub(crate) fn unmount_if_unused(target: &Path) -> Result<bool> {
    match umount(target, 0) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Ok(false),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(true),
        Err(e) => Err(unmount_failed(target, &e)),
    }
}

fn unmount_failed(target: &Path, err: &std::io::Error) -> RuntimeError {
    RuntimeError::Failed(format!("umount {}: {err}", target.display()))
}

fn umount(target: &Path, flags: libc::c_int) -> std::io::Result<()> {
    let target_c = c_path(target).map_err(|_| std::io::Error::from(ErrorKind::InvalidInput))?;
    // SAFETY: `target_c` is a valid NUL-terminated path that outlives the call.
    let rc = unsafe { libc::umount2(target_c.as_ptr(), flags | libc::UMOUNT_NOFOLLOW) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn c_path(path: &Path) -> Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| RuntimeError::Failed(format!("path {} holds a NUL byte", path.display())))
}

/// Mount points of this process's mount namespace (`/proc/self/mountinfo`, unescaped).
pub(crate) fn mount_points() -> Vec<PathBuf> {
    let Ok(text) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(OsString::from_vec(unescape(field))))
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> Vec<u8> {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let octal = std::str::from_utf8(&bytes[i + 1..i + 4]).unwrap_or("");
            if let Ok(value) = u8::from_str_radix(octal, 8) {
                out.push(value);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// Whether `path` is a mount point in this process's mount namespace.
pub(crate) fn is_mount_point(path: &Path) -> bool {
    let Ok(canonical) = fs::canonicalize(path) else {
        return false;
    };
    mount_points().contains(&canonical)
}

/// Removes the directory tree at `path` without following symlinks, refusing to enter anything
/// mounted (a still-mounted rootfs would otherwise be emptied through the mount). A missing
/// `path` is fine.
pub(crate) fn remove_tree(path: &Path) -> Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if !meta.is_dir() {
        fs::remove_file(path)?;
        return Ok(());
    }
    let canonical = fs::canonicalize(path)?;
    let mounted: HashSet<PathBuf> = mount_points()
        .into_iter()
        .filter(|m| m.starts_with(&canonical))
        .collect();
    if let Some(m) = mounted.iter().next() {
        return Err(RuntimeError::Failed(format!(
            "refusing to remove {}: {} is mounted",
            path.display(),
            m.display()
        )));
    }
    remove_within(&canonical, meta.dev())?;
    fs::remove_dir(&canonical)?;
    Ok(())
}

fn remove_within(dir: &Path, dev: u64) -> Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let meta = fs::symlink_metadata(&path)?;
        if meta.is_dir() {
            if meta.dev() != dev {
                return Err(RuntimeError::Failed(format!(
                    "refusing to remove {}: another filesystem",
                    path.display()
                )));
            }
            remove_within(&path, dev)?;
            fs::remove_dir(&path)?;
        } else {
            fs::remove_file(&path)?;
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_fields_are_unescaped() {
        assert_eq!(unescape(r"/a\040b\134c"), b"/a b\\c");
        assert_eq!(unescape("/plain"), b"/plain");
        assert_eq!(unescape(r"/end\04"), br"/end\04");
    }

    #[test]
    fn root_is_a_mount_point() {
        assert!(is_mount_point(Path::new("/")));
        assert!(is_mount_point(Path::new("/proc")));
    }

    #[test]
    fn sha_named_images_keep_their_name() {
        let dir = tempfile::tempdir().unwrap();
        let sha = "ab".repeat(32);
        let image = dir.path().join(format!("{sha}.squashfs"));
        fs::write(&image, b"x").unwrap();
        assert_eq!(image_key(&image).unwrap(), sha);
        let other = dir.path().join("ubuntu 24.04.squashfs");
        fs::write(&other, b"x").unwrap();
        let key = image_key(&other).unwrap();
        assert!(key.starts_with("ubuntu_24_04-"), "{key}");
        assert_eq!(key.len(), "ubuntu_24_04-".len() + 16);
    }
}
