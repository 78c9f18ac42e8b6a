//! Which cgroup layout the host has, from the filesystem types under `/sys/fs/cgroup`.

use std::path::Path;

use super::{CgroupMode, Result, RuntimeError};

const CGROUP2_SUPER_MAGIC: i128 = 0x6367_7270;
const TMPFS_MAGIC: i128 = 0x0102_1994;

/// The layout of `/sys/fs/cgroup`: cgroup2 itself is [`CgroupMode::V2`]; a tmpfs holding a
/// cgroup2 `unified` mount is [`CgroupMode::Hybrid`]; anything else (v1 controllers in a tmpfs)
/// is [`CgroupMode::V1`].
///
/// # Errors
/// [`RuntimeError::Unavailable`] when `/sys/fs/cgroup` cannot be examined.
pub(crate) fn detect() -> Result<CgroupMode> {
    let root = Path::new("/sys/fs/cgroup");
    let kind = fs_type(root).ok_or_else(|| {
        RuntimeError::Unavailable("/sys/fs/cgroup is not mounted (no cgroups)".into())
    })?;
    Ok(classify(kind, fs_type(&root.join("unified"))))
}

fn classify(root: i128, unified: Option<i128>) -> CgroupMode {
    if root == CGROUP2_SUPER_MAGIC {
        CgroupMode::V2
    } else if root == TMPFS_MAGIC && unified == Some(CGROUP2_SUPER_MAGIC) {
        CgroupMode::Hybrid
    } else {
        CgroupMode::V1
    }
}

fn fs_type(path: &Path) -> Option<i128> {
    rustix::fs::statfs(path)
        .ok()
        .map(|st| i128::from(st.f_type))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn layouts_are_told_apart() {
        assert_eq!(classify(CGROUP2_SUPER_MAGIC, None), CgroupMode::V2);
        assert_eq!(
            classify(TMPFS_MAGIC, Some(CGROUP2_SUPER_MAGIC)),
            CgroupMode::Hybrid
        );
        assert_eq!(classify(TMPFS_MAGIC, Some(TMPFS_MAGIC)), CgroupMode::V1);
        assert_eq!(classify(TMPFS_MAGIC, None), CgroupMode::V1);
    }
}
