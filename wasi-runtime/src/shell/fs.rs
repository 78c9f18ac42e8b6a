//! The shell's view of a sandbox's files, for what the shell itself touches (redirection
//! targets, `cd`, globbing): the guest's mounts, each opened with cap-std, so the host side of
//! the shell is confined exactly as the guests are.

use std::io;

use cap_std::ambient_authority;
use cap_std::fs::{Dir, OpenOptions};

use crate::instance::Mount;

/// The mounts of a sandbox as cap-std directories.
#[derive(Debug)]
pub(crate) struct GuestFs {
    mounts: Vec<(String, Dir, bool)>,
}

fn not_found() -> io::Error {
    io::Error::from(io::ErrorKind::NotFound)
}

/// `path` made absolute against `cwd` and normalised lexically (`.`, `..`, `//`); `..` at the
/// root stays at the root, as in a shell.
#[must_use]
pub(crate) fn absolute(cwd: &str, path: &str) -> String {
    let joined = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("{cwd}/{path}")
    };
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

impl GuestFs {
    /// Opens every mount.
    pub fn new(mounts: &[Mount]) -> io::Result<Self> {
        let mut out = Vec::with_capacity(mounts.len());
        for m in mounts {
            let dir = Dir::open_ambient_dir(&m.host, ambient_authority())?;
            out.push((m.guest.trim_end_matches('/').to_owned(), dir, m.writable));
        }
        // Longest prefix first, so `/workspace/x` is not taken by a mount at `/`.
        out.sort_by_key(|m| std::cmp::Reverse(m.0.len()));
        Ok(Self { mounts: out })
    }

    /// The mount holding absolute guest path `abs`, and the path inside it ("." for its root).
    fn locate(&self, abs: &str) -> io::Result<(&Dir, String, bool)> {
        for (prefix, dir, writable) in &self.mounts {
            if abs == prefix {
                return Ok((dir, ".".into(), *writable));
            }
            if let Some(rel) = abs
                .strip_prefix(prefix.as_str())
                .and_then(|rest| rest.strip_prefix('/'))
            {
                return Ok((dir, rel.to_owned(), *writable));
            }
        }
        Err(not_found())
    }

    /// Whether `abs` is a directory the guests can see.
    pub fn is_dir(&self, abs: &str) -> bool {
        let a = abs.trim_end_matches('/');
        let parent_of_mount = self.mounts.iter().any(|(p, _, _)| {
            p.len() > a.len() && p.starts_with(a) && p.as_bytes()[a.len()] == b'/'
        });
        if parent_of_mount {
            return true;
        }
        self.locate(abs)
            .and_then(|(dir, rel, _)| dir.metadata(&rel))
            .is_ok_and(|m| m.is_dir())
    }

    /// Opens a file for reading (a `<` redirection).
    pub fn open_read(&self, abs: &str) -> io::Result<std::fs::File> {
        let (dir, rel, _) = self.locate(abs)?;
        Ok(dir.open(&rel)?.into_std())
    }

    /// Opens a file for writing (a `>` or `>>` redirection).
    pub fn open_write(&self, abs: &str, append: bool) -> io::Result<std::fs::File> {
        let (dir, rel, writable) = self.locate(abs)?;
        if !writable {
            return Err(io::Error::from(io::ErrorKind::PermissionDenied));
        }
        let mut opts = OpenOptions::new();
        opts.write(true).create(true);
        if append {
            opts.append(true);
        } else {
            opts.truncate(true);
        }
        Ok(dir.open_with(&rel, &opts)?.into_std())
    }

    /// Names in a directory, with whether each is a directory (symlinks are not followed).
    pub fn list(&self, abs: &str) -> io::Result<Vec<(String, bool)>> {
        let mut names = Vec::new();
        match self.locate(abs) {
            Ok((dir, rel, _)) => {
                for entry in dir.read_dir(&rel)? {
                    let entry = entry?;
                    let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
                    names.push((entry.file_name().to_string_lossy().into_owned(), is_dir));
                }
            }
            // A folder above the mounts (`/`) holds just the mount points.
            Err(_) if self.is_dir(abs) => {}
            Err(e) => return Err(e),
        }
        // Mount points below this directory are entries too.
        for (prefix, _, _) in &self.mounts {
            if let Some(name) = prefix
                .strip_prefix(abs.trim_end_matches('/'))
                .and_then(|rest| rest.strip_prefix('/'))
                && !name.is_empty()
                && !name.contains('/')
            {
                names.push((name.to_owned(), true));
            }
        }
        Ok(names)
    }

    /// Whether `abs` exists (without following a final symlink).
    pub fn exists(&self, abs: &str) -> bool {
        self.is_dir(abs)
            || self
                .locate(abs)
                .and_then(|(dir, rel, _)| dir.symlink_metadata(&rel))
                .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalised_like_a_shell() {
        assert_eq!(absolute("/workspace", "a/./b/../c"), "/workspace/a/c");
        assert_eq!(absolute("/workspace/x", "/tmp//y/"), "/tmp/y");
        assert_eq!(absolute("/workspace", "../../.."), "/");
        assert_eq!(absolute("/", "."), "/");
    }

    #[test]
    fn mounts_confine_and_list() {
        let ws = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(ws.path().join("sub")).expect("mkdir");
        std::fs::write(ws.path().join("f.txt"), b"x").expect("write");
        std::os::unix::fs::symlink("/etc", ws.path().join("out")).expect("symlink");
        let fs = GuestFs::new(&[Mount {
            host: ws.path().to_path_buf(),
            guest: "/workspace".into(),
            writable: true,
        }])
        .expect("open");
        assert!(fs.is_dir("/workspace") && fs.is_dir("/workspace/sub") && fs.is_dir("/"));
        assert!(!fs.is_dir("/workspace/f.txt") && !fs.is_dir("/etc"));
        assert!(
            fs.open_read("/workspace/out/passwd").is_err(),
            "symlink out is refused"
        );
        assert!(fs.open_read("/etc/passwd").is_err());
        let mut names = fs.list("/workspace").expect("list");
        names.sort();
        assert_eq!(
            names.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
            vec!["f.txt", "out", "sub"]
        );
        assert_eq!(fs.list("/").expect("root").len(), 1);
        fs.open_write("/workspace/new.txt", false).expect("write");
        assert!(ws.path().join("new.txt").exists());
    }
}
