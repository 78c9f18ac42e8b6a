//! Lexical resolution of guest paths into workspace-relative paths.
//!
//! This is the first line of defence: it turns whatever string a client sent into a
//! normalized path that is guaranteed (lexically) to stay inside the workspace. It never
//! touches the filesystem, so it cannot see symlinks; those are the job of `cap-std` at
//! operation time.

use std::fmt;
use std::path::Path;

use crate::files::error::{FileError, Result};

/// Where the workspace is mounted inside the guest; every guest path we accept or report
/// is under it.
pub const GUEST_ROOT: &str = "/workspace";

/// Longest path (input or normalized result) we accept, in bytes; mirrors Linux `PATH_MAX`.
pub const MAX_PATH_BYTES: usize = 4096;

/// Longest single path component we accept, in bytes; mirrors Linux `NAME_MAX`.
pub const MAX_COMPONENT_BYTES: usize = 255;

/// How much of a rejected input we echo back in an error message, so that a hostile
/// multi-kilobyte path does not bloat logs and responses.
const MAX_ECHO_CHARS: usize = 200;

/// A normalized path relative to the workspace root.
///
/// Only [`Workspace::resolve`](crate::files::Workspace::resolve) (and [`RelPath::root`])
/// construct one, which upholds: components are separated by a single `/`, none is empty,
/// `.` or `..`, none contains NUL or exceeds 255 bytes, and the guest path is at most 4096
/// bytes. The empty string is the workspace root.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelPath(String);

impl RelPath {
    /// The workspace root itself.
    pub fn root() -> Self {
        Self(String::new())
    }

    /// The normalized relative form, e.g. `"src/main.rs"`; `""` for the root.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path as the guest sees it, e.g. `"/workspace/src/main.rs"`.
    pub fn guest_path(&self) -> String {
        if self.0.is_empty() {
            GUEST_ROOT.to_owned()
        } else {
            format!("{GUEST_ROOT}/{}", self.0)
        }
    }

    /// Whether this is the workspace root.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The path to hand to `cap-std`: it wants `"."` rather than `""` for the root.
    pub(crate) fn fs_path(&self) -> &Path {
        if self.0.is_empty() {
            Path::new(".")
        } else {
            Path::new(&self.0)
        }
    }

    /// The last component; `""` for the root.
    pub(crate) fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or_default()
    }

    /// The containing directory; the root's parent is the root.
    pub(crate) fn parent(&self) -> RelPath {
        match self.0.rfind('/') {
            Some(idx) => RelPath(self.0[..idx].to_owned()),
            None => RelPath::root(),
        }
    }

    /// Appends one component that came from the filesystem (a directory entry name).
    pub(crate) fn join(&self, name: &str) -> RelPath {
        if self.0.is_empty() {
            RelPath(name.to_owned())
        } else {
            RelPath(format!("{}/{name}", self.0))
        }
    }

    /// Whether `self` is `other` or lies below it.
    pub(crate) fn is_within(&self, other: &RelPath) -> bool {
        other.0.is_empty()
            || self.0 == other.0
            || (self.0.starts_with(&other.0) && self.0.as_bytes().get(other.0.len()) == Some(&b'/'))
    }

    /// Rejects the root for operations that need to name an entry inside it.
    pub(crate) fn require_name(&self) -> Result<()> {
        if self.is_root() {
            return Err(FileError::InvalidPath {
                path: GUEST_ROOT.to_owned(),
                reason: "the workspace root cannot be used here",
            });
        }
        Ok(())
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.guest_path())
    }
}

/// Makes a rejected input safe to echo: control characters (NUL included) escaped, and
/// truncated.
pub(crate) fn echo(input: &str) -> String {
    let mut out: String = input
        .chars()
        .take(MAX_ECHO_CHARS)
        .flat_map(char::escape_debug)
        .collect();
    if input.chars().nth(MAX_ECHO_CHARS).is_some() {
        out.push_str("...");
    }
    out
}

fn invalid(input: &str, reason: &'static str) -> FileError {
    FileError::InvalidPath {
        path: echo(input),
        reason,
    }
}

fn outside(input: &str) -> FileError {
    FileError::PathOutsideWorkspace { path: echo(input) }
}

/// Checks the raw string limits shared by `path` and `cwd`.
fn check_raw(input: &str) -> Result<()> {
    if input.contains('\0') {
        return Err(invalid(input, "path contains a nul byte"));
    }
    if input.len() > MAX_PATH_BYTES {
        return Err(invalid(input, "path is too long"));
    }
    Ok(())
}

/// Applies the components of `rel` (already stripped of any `/workspace` prefix) onto
/// `stack`. A `..` at the workspace root is an escape even if a later component would come
/// back in: we refuse to reason about anything above the root.
fn push_components<'a>(stack: &mut Vec<&'a str>, rel: &'a str, input: &str) -> Result<()> {
    for comp in rel.split('/') {
        match comp {
            "" | "." => {}
            ".." => {
                if stack.pop().is_none() {
                    return Err(outside(input));
                }
            }
            name => {
                if name.len() > MAX_COMPONENT_BYTES {
                    return Err(invalid(input, "path component is too long"));
                }
                stack.push(name);
            }
        }
    }
    Ok(())
}

/// Splits an absolute guest path into the part below `/workspace`, or `None` if it does not
/// start with the `workspace` component (so `/workspace2` and `/etc` are both outside).
fn strip_guest_root(abs: &str) -> Option<&str> {
    let mut rest = abs;
    loop {
        rest = rest.trim_start_matches('/');
        // "/./workspace" is the same directory as "/workspace"; "/../workspace" is not
        // something we try to reason about (it fails the prefix check below).
        if let Some(after) = rest.strip_prefix('.')
            && (after.is_empty() || after.starts_with('/'))
        {
            rest = after;
            continue;
        }
        break;
    }
    let after = rest.strip_prefix("workspace")?;
    if after.is_empty() || after.starts_with('/') {
        Some(after)
    } else {
        None
    }
}

/// Resolves `path` against `cwd` into a normalized workspace-relative path, purely
/// lexically. See [`crate::files::Workspace::resolve`] for the accepted forms.
pub(crate) fn resolve(path: &str, cwd: &str) -> Result<RelPath> {
    check_raw(path)?;
    check_raw(cwd)?;
    if path.is_empty() {
        return Err(invalid(path, "path is empty"));
    }

    let mut stack: Vec<&str> = Vec::new();
    if path.starts_with('/') {
        let rest = strip_guest_root(path).ok_or_else(|| outside(path))?;
        push_components(&mut stack, rest, path)?;
    } else {
        // An empty or relative cwd is taken relative to the workspace root, which is where
        // guest processes start.
        if cwd.starts_with('/') {
            let rest = strip_guest_root(cwd).ok_or_else(|| outside(cwd))?;
            push_components(&mut stack, rest, cwd)?;
        } else {
            push_components(&mut stack, cwd, cwd)?;
        }
        push_components(&mut stack, path, path)?;
    }

    let joined = stack.join("/");
    // The input limit alone is not enough: a long cwd plus a long relative path can exceed
    // it after joining, and the kernel would then fail with a less helpful error.
    if joined.len() + GUEST_ROOT.len() + 1 > MAX_PATH_BYTES {
        return Err(invalid(path, "path is too long"));
    }
    Ok(RelPath(joined))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(path: &str, cwd: &str) -> String {
        match resolve(path, cwd) {
            Ok(p) => p.as_str().to_owned(),
            Err(e) => panic!("resolve({path:?}, {cwd:?}) failed: {e}"),
        }
    }

    fn code(path: &str, cwd: &str) -> &'static str {
        match resolve(path, cwd) {
            Ok(p) => panic!("resolve({path:?}, {cwd:?}) unexpectedly gave {p:?}"),
            Err(e) => e.code(),
        }
    }

    #[test]
    fn accepted_forms_normalize() {
        assert_eq!(ok("/workspace/a/b", "/workspace"), "a/b");
        assert_eq!(ok("a/b", "/workspace"), "a/b");
        assert_eq!(ok("./a", "/workspace"), "a");
        assert_eq!(ok("/workspace", "/workspace/x"), "");
        assert_eq!(ok("/workspace/", "/workspace"), "");
        assert_eq!(ok(".", "/workspace"), "");
        assert_eq!(ok("a/../b", "/workspace"), "b");
        assert_eq!(ok("a//b///c/", "/workspace"), "a/b/c");
        assert_eq!(ok("../x", "/workspace/src"), "x");
        assert_eq!(ok("x", "/workspace/src"), "src/x");
        assert_eq!(ok("x", ""), "x");
        assert_eq!(ok("x", "src"), "src/x");
        assert_eq!(ok("//workspace//a", "/workspace"), "a");
        assert_eq!(ok("/./workspace/a", "/workspace"), "a");
    }

    #[test]
    fn odd_names_are_literal() {
        assert_eq!(ok("%2e%2e", "/workspace"), "%2e%2e");
        assert_eq!(ok("..\\..\\etc", "/workspace"), "..\\..\\etc");
        assert_eq!(ok("~", "/workspace"), "~");
        assert_eq!(ok("...", "/workspace"), "...");
        assert_eq!(ok(".hidden", "/workspace"), ".hidden");
    }

    #[test]
    fn rejections() {
        assert_eq!(code("..", "/workspace"), "PATH_OUTSIDE_WORKSPACE");
        assert_eq!(code("a/./../..", "/workspace"), "PATH_OUTSIDE_WORKSPACE");
        assert_eq!(
            code("/workspace2/x", "/workspace"),
            "PATH_OUTSIDE_WORKSPACE"
        );
        assert_eq!(code("/workspacex", "/workspace"), "PATH_OUTSIDE_WORKSPACE");
        assert_eq!(code("/", "/workspace"), "PATH_OUTSIDE_WORKSPACE");
        assert_eq!(
            code("/../workspace", "/workspace"),
            "PATH_OUTSIDE_WORKSPACE"
        );
        assert_eq!(code("x", "/etc"), "PATH_OUTSIDE_WORKSPACE");
        assert_eq!(code("x", "/workspace/.."), "PATH_OUTSIDE_WORKSPACE");
        assert_eq!(code("", "/workspace"), "INVALID_PATH");
        assert_eq!(code("a\0b", "/workspace"), "INVALID_PATH");
        assert_eq!(code("a", "/workspace\0"), "INVALID_PATH");
        assert_eq!(code(&"a".repeat(256), "/workspace"), "INVALID_PATH");
        assert_eq!(code(&"a/".repeat(2049), "/workspace"), "INVALID_PATH");
    }

    #[test]
    fn joined_length_is_checked() {
        let half = "b/".repeat(1100);
        let cwd = format!("/workspace/{half}");
        assert_eq!(code(&half, &cwd), "INVALID_PATH");
        let max_name = "n".repeat(255);
        assert_eq!(ok(&max_name, "/workspace"), max_name);
    }

    #[test]
    fn relpath_helpers() {
        let p = resolve("a/b/c", "/workspace").expect("valid path");
        assert_eq!(p.file_name(), "c");
        assert_eq!(p.parent().as_str(), "a/b");
        assert_eq!(p.parent().parent().parent(), RelPath::root());
        assert_eq!(p.guest_path(), "/workspace/a/b/c");
        assert_eq!(RelPath::root().guest_path(), "/workspace");
        assert!(p.is_within(&p.parent()));
        assert!(!resolve("ab", "/workspace").is_ok_and(|q| q.is_within(&RelPath("a".into()))));
        assert!(p.join("d").is_within(&p));
        assert_eq!(RelPath::root().fs_path(), Path::new("."));
        assert_eq!(echo("a\0b"), "a\\0b");
        assert!(echo(&"x".repeat(1000)).ends_with("..."));
    }
}
