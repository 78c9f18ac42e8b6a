//! Recipes: what `build` makes, parsed from `images/<name>/recipe.toml`.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::{ImageError, Result};

/// The environment variable that overrides a recipe's mirror.
pub const MIRROR_ENV: &str = "HYBOX_UBUNTU_MIRROR";

/// A parsed recipe file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecipeSpec {
    /// The image name it makes.
    pub name: String,
    /// The release (`noble`).
    pub suite: String,
    /// mmdebstrap's variant (`minbase`).
    pub variant: String,
    /// The archive mirror.
    pub mirror: String,
    /// Archive components (`main`, `universe`).
    pub components: Vec<String>,
    /// Suites bootstrapped from and kept in the image's apt sources (the release first).
    pub suites: Vec<String>,
    /// Packages installed on top of the variant.
    pub packages: Vec<String>,
    /// The archive keyring.
    pub keyring: KeyringSpec,
    /// Default environment of processes.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// Where the archive keyring comes from, pinned by hashes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyringSpec {
    /// URL of a .deb holding it.
    pub url: String,
    /// sha256 of the .deb.
    pub sha256: String,
    /// The keyring's path inside the .deb.
    pub file: String,
    /// sha256 of that file.
    pub file_sha256: String,
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A name that is safe as one argument and one word of a sources line (package, suite,
/// component): Debian's package-name characters.
fn is_word(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'+' | b'-' | b'_'))
}

/// An http(s) URL without whitespace (it goes on a sources line).
fn check_url(what: &str, url: &str) -> Result<()> {
    let ok = (url.starts_with("http://") || url.starts_with("https://"))
        && url.len() > "https://".len()
        && !url
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control());
    if ok {
        Ok(())
    } else {
        Err(ImageError::Invalid(format!(
            "{what} {url:?} is not an http(s) URL"
        )))
    }
}

impl RecipeSpec {
    /// Parses and checks a recipe file's text.
    ///
    /// # Errors
    /// [`ImageError::Invalid`] saying what is wrong.
    pub fn parse(source: &str) -> Result<Self> {
        let spec: RecipeSpec = toml::from_str(source)
            .map_err(|e| ImageError::Invalid(format!("recipe: {}", e.message())))?;
        spec.check()?;
        Ok(spec)
    }

    fn check(&self) -> Result<()> {
        let bad = |what: &str| Err(ImageError::Invalid(format!("recipe: {what}")));
        if self.name.is_empty()
            || self.name.len() > 128
            || !self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            return bad("name must be 1..128 of [A-Za-z0-9._-]");
        }
        if !is_word(&self.suite) || !is_word(&self.variant) {
            return bad("suite and variant must be plain words");
        }
        check_url("mirror", &self.mirror)?;
        check_url("keyring url", &self.keyring.url)?;
        if self.components.is_empty() || !self.components.iter().all(|c| is_word(c)) {
            return bad("components must be a non-empty list of plain words");
        }
        if self.suites.first() != Some(&self.suite) || !self.suites.iter().all(|s| is_word(s)) {
            return bad("suites must start with the suite and hold plain words");
        }
        if let Some(p) = self.packages.iter().find(|p| !is_word(p)) {
            return bad(&format!("package {p:?} is not a package name"));
        }
        if !is_sha256(&self.keyring.sha256) || !is_sha256(&self.keyring.file_sha256) {
            return bad("keyring hashes must be 64 lowercase hex digits");
        }
        let file = std::path::Path::new(&self.keyring.file);
        if !file
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
            || self.keyring.file.is_empty()
        {
            return bad("keyring file must be a relative path without `..`");
        }
        if let Some(k) = self
            .env
            .keys()
            .find(|k| k.is_empty() || k.contains('=') || k.contains('\0'))
        {
            return bad(&format!("env name {k:?} is not valid"));
        }
        Ok(())
    }

    /// `deb` lines for mmdebstrap, one per suite.
    #[must_use]
    pub fn deb_lines(&self, mirror: &str) -> Vec<String> {
        let comps = self.components.join(" ");
        self.suites
            .iter()
            .map(|s| format!("deb {mirror} {s} {comps}"))
            .collect()
    }

    /// The image's `/etc/apt/sources.list.d/ubuntu.sources` (deb822, as Ubuntu 24.04 ships).
    #[must_use]
    pub fn deb822_sources(&self, mirror: &str, signed_by: &str) -> String {
        format!(
            "Types: deb\nURIs: {mirror}\nSuites: {}\nComponents: {}\nSigned-By: {signed_by}\n",
            self.suites.join(" "),
            self.components.join(" ")
        )
    }
}

/// The mirror to use: `HYBOX_UBUNTU_MIRROR` when set and not empty, else the recipe's.
#[must_use]
pub fn effective_mirror(recipe_mirror: &str) -> String {
    match std::env::var(MIRROR_ENV) {
        Ok(m) if !m.trim().is_empty() => m.trim().trim_end_matches('/').to_owned(),
        _ => recipe_mirror.to_owned(),
    }
}

/// sha256 over the recipe bytes and the mirror, length-prefixed so no two pairs collide.
#[must_use]
pub fn hash_with_mirror(source: &str, mirror: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"hybox-recipe-v1\0");
    h.update((source.len() as u64).to_le_bytes());
    h.update(source.as_bytes());
    h.update((mirror.len() as u64).to_le_bytes());
    h.update(mirror.as_bytes());
    hex::encode(h.finalize())
}
