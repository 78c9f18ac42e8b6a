//! Sandbox ids: lowercase `[a-z0-9-]`, 1 to 63 characters, no leading or trailing `-` (a DNS
//! label, so an id can appear in a preview hostname).

use std::fmt;

use serde::Serialize;

use crate::api::error::ApiError;

/// A validated sandbox id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct SandboxId(String);

impl SandboxId {
    /// Validates an id.
    ///
    /// # Errors
    /// [`ApiError::InvalidSandboxId`] naming the broken rule.
    pub fn parse(id: &str) -> Result<Self, ApiError> {
        let bad = |why| ApiError::InvalidSandboxId {
            id: id.chars().take(80).collect(),
            why,
        };
        if id.is_empty() {
            return Err(bad("empty"));
        }
        if id.len() > 63 {
            return Err(bad("longer than 63 characters"));
        }
        if !id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(bad("only lowercase letters, digits and '-' are allowed"));
        }
        if id.starts_with('-') || id.ends_with('-') {
            return Err(bad("must not start or end with '-'"));
        }
        Ok(Self(id.to_owned()))
    }

    /// The id as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SandboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `len` random lowercase hex digits for names nobody guesses by accident (upper directories,
/// snapshot and fork ids). Not for secrets.
#[must_use]
pub fn random_hex(len: usize) -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut out = String::with_capacity(len + 16);
    while out.len() < len {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos(),
        );
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_the_dns_label_rules() {
        for ok in ["a", "0", "my-box", "a-b-c", &"x".repeat(63), "123"] {
            assert!(SandboxId::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "A",
            "a_b",
            "a.b",
            "a/b",
            "..",
            "é",
            " a",
            &"x".repeat(64),
            "a\0",
        ] {
            assert!(SandboxId::parse(bad).is_err(), "{bad:?}");
        }
    }
}
