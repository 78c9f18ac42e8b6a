//! Root filesystem images for the container route: built from a recipe (`images/ubuntu/`) by
//! mmdebstrap, or imported from a rootfs directory or an OCI image tarball; packed into squashfs
//! by fs-layer and stored by content hash with a manifest.
//!
//! A store directory holds `<id>.sqfs` (the squashfs; its sha256 is the id) and `<id>.json`
//! (its [`ImageManifest`]). It may be shared by several data dirs and processes: every file is
//! written to a temp file and renamed, and builds of one recipe take a lock (see `store.rs`).
//!
//! Every image gets the mountpoints the runtime needs (`/workspace`, `/.hybox`, `/proc`,
//! `/sys`, `/dev`, `/tmp`, `/run`), an empty regular `/etc/resolv.conf` and an
//! `/etc/hostname`. squashfs as fs-layer writes it keeps modes (setuid included), owners,
//! symlinks and device nodes; it drops hard links (each becomes a copy) and extended
//! attributes (file capabilities).
//!
//! ```no_run
//! use hybox_container_fallback::image::{ImageStore, Recipe, build};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = ImageStore::open(std::path::Path::new("/var/lib/hybox/images"))?;
//! let image = build(&store, &Recipe::default_recipe(), &|p| eprintln!("{p:?}"))?;
//! println!("{} at {}", image.id, store.path(&image).display());
//! # Ok(()) }
//! ```

mod build;
mod import;
mod layer;
mod recipe;
mod rootfs;
mod store;

use std::path::{Path, PathBuf};

pub use recipe::{KeyringSpec, MIRROR_ENV, RecipeSpec};
use recipe::{effective_mirror, hash_with_mirror};
pub use rootfs::{DEFAULT_PATH, MOUNTPOINTS};
pub use store::{is_id, now_rfc3339, rfc3339};

/// Errors of image operations.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// No image by that name or id.
    #[error("no image {0}")]
    NotFound(String),
    /// A recipe or input is invalid: why.
    #[error("{0}")]
    Invalid(String),
    /// A build step failed: which and its output's tail.
    #[error("{0}")]
    Build(String),
    /// I/O.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Result of image operations.
pub type Result<T> = std::result::Result<T, ImageError>;

/// Progress of a long operation, for a terminal bar or a log.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// A new phase starts ("fetching keyring", "bootstrapping", "packing"...).
    Phase(String),
    /// A line of the current tool's output.
    Line(String),
    /// Bytes or items done of a total (packing).
    Count {
        /// Done.
        done: u64,
        /// Total when known.
        total: Option<u64>,
    },
}

/// What is stored next to each image.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    /// Name (`ubuntu-24.04` for the default recipe).
    pub name: String,
    /// sha256 of the squashfs file: its id.
    pub id: String,
    /// Size of the squashfs file.
    pub size: u64,
    /// `recipe`, `rootfs` or `oci`.
    pub source: String,
    /// sha256 of the recipe it was built from (for the build cache).
    pub recipe_hash: Option<String>,
    /// RFC 3339 creation time.
    pub created_at: String,
    /// Default environment of processes (`PATH`, `HOME`...).
    pub env: Vec<(String, String)>,
    /// `PRETTY_NAME` of its os-release when it has one.
    pub os: Option<String>,
}

/// The default recipe's name.
pub const DEFAULT_IMAGE: &str = "ubuntu-24.04";

/// Images stored in one directory.
#[derive(Debug, Clone)]
pub struct ImageStore {
    dir: PathBuf,
}

impl ImageStore {
    /// The store at `dir` (created).
    ///
    /// # Errors
    /// I/O.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    /// Its directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every image, newest first.
    ///
    /// # Errors
    /// I/O.
    pub fn list(&self) -> Result<Vec<ImageManifest>> {
        self.read_all()
    }

    /// The newest image called `name`, or the image with id `name` (a unique prefix of at
    /// least 8 hex digits of an id is accepted when no image has that name).
    ///
    /// # Errors
    /// [`ImageError::NotFound`]; I/O.
    pub fn get(&self, name: &str) -> Result<ImageManifest> {
        let all = self.read_all()?;
        if let Some(m) = all.iter().find(|m| m.name == name || m.id == name) {
            return Ok(m.clone());
        }
        let is_hex = name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if name.len() >= 8 && is_hex {
            let mut hits = all.iter().filter(|m| m.id.starts_with(name));
            if let (Some(m), None) = (hits.next(), hits.next()) {
                return Ok(m.clone());
            }
        }
        Err(ImageError::NotFound(name.to_owned()))
    }

    /// The squashfs file of an image.
    #[must_use]
    pub fn path(&self, manifest: &ImageManifest) -> PathBuf {
        self.dir.join(format!("{}.sqfs", manifest.id))
    }
}

/// A recipe (`images/ubuntu/recipe.toml`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipe {
    /// The image name it makes.
    pub name: String,
    /// The recipe file's bytes (hashed for the cache).
    pub source: String,
}

impl Recipe {
    /// The default recipe, embedded at build time.
    #[must_use]
    pub fn default_recipe() -> Self {
        let source = include_str!("../../../images/ubuntu/recipe.toml");
        // A unit test parses it: the name is the recipe's.
        let name = RecipeSpec::parse(source).map_or_else(|_| DEFAULT_IMAGE.to_owned(), |s| s.name);
        Self {
            name,
            source: source.to_owned(),
        }
    }

    /// A recipe from its text.
    ///
    /// # Errors
    /// [`ImageError::Invalid`] saying what is wrong.
    pub fn parse(source: &str) -> Result<Self> {
        let spec = RecipeSpec::parse(source)?;
        Ok(Self {
            name: spec.name,
            source: source.to_owned(),
        })
    }

    /// The parsed recipe.
    ///
    /// # Errors
    /// [`ImageError::Invalid`] saying what is wrong.
    pub fn spec(&self) -> Result<RecipeSpec> {
        RecipeSpec::parse(&self.source)
    }

    /// The mirror a build uses now: `HYBOX_UBUNTU_MIRROR`, else the recipe's.
    #[must_use]
    pub fn mirror(&self) -> String {
        let own = self.spec().map(|s| s.mirror).unwrap_or_default();
        effective_mirror(&own)
    }

    /// sha256 of the recipe with `mirror` as the mirror (the build cache key).
    #[must_use]
    pub fn hash_with_mirror(&self, mirror: &str) -> String {
        hash_with_mirror(&self.source, mirror)
    }

    /// A recipe file.
    ///
    /// # Errors
    /// [`ImageError::Invalid`].
    pub fn load(path: &Path) -> Result<Self> {
        let source = std::fs::read_to_string(path)
            .map_err(|e| ImageError::Invalid(format!("{}: {e}", path.display())))?;
        Self::parse(&source).map_err(|e| ImageError::Invalid(format!("{}: {e}", path.display())))
    }

    /// sha256 of the recipe's bytes and the mirror a build uses now ([`Recipe::mirror`]).
    #[must_use]
    pub fn hash(&self) -> String {
        self.hash_with_mirror(&self.mirror())
    }
}

/// Builds `recipe` into `store`, or returns the stored image already built from the same recipe.
/// The mirror is `HYBOX_UBUNTU_MIRROR` when set, else the recipe's. Needs root, `mmdebstrap`,
/// `curl` and `dpkg-deb` (a cache hit needs none of them).
///
/// # Errors
/// [`ImageError::Invalid`] for a bad recipe, [`ImageError::Build`] with the failing step and
/// the tail of its output.
pub fn build(
    store: &ImageStore,
    recipe: &Recipe,
    progress: &dyn Fn(Progress),
) -> Result<ImageManifest> {
    build_with_mirror(store, recipe, &recipe.mirror(), progress)
}

/// [`build`] with an explicit mirror (no environment lookup).
///
/// # Errors
/// As [`build`].
pub fn build_with_mirror(
    store: &ImageStore,
    recipe: &Recipe,
    mirror: &str,
    progress: &dyn Fn(Progress),
) -> Result<ImageManifest> {
    build::build(store, recipe, mirror, progress)
}

/// Imports a root filesystem directory, or an OCI image tarball (`docker save` / `skopeo copy
/// oci-archive:`), as image `name`.
///
/// A directory that holds an OCI layout (`oci-layout` and `index.json`) is read as one; any
/// other directory is packed as it is (source `rootfs`, default `PATH`). A tarball (plain or
/// gzip) is a `docker save` archive (`manifest.json`) or an OCI layout (`index.json`): its
/// layers (tar, gzip or zstd) are applied in order into a temp tree, honouring whiteouts,
/// refusing entries that would land outside it (`..`, absolute paths, paths through symlinks);
/// `Env` comes from the image config (source `oci`). The same input gives the same id; there
/// is one manifest per id, so importing stored content under another name renames it.
///
/// # Errors
/// [`ImageError::Invalid`] for an unreadable input.
pub fn import(
    store: &ImageStore,
    input: &Path,
    name: &str,
    progress: &dyn Fn(Progress),
) -> Result<ImageManifest> {
    import::import(store, input, name, progress)
}
