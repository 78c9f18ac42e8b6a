//! Root filesystem images for the container route: built from a recipe (`images/ubuntu/`) by
//! mmdebstrap, or imported from a rootfs directory or an OCI image tarball; packed into squashfs
//! by fs-layer and stored by content hash with a manifest.
//!
//! CONTRACT (host code is written against these signatures; keep them).

use std::path::{Path, PathBuf};

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
        Ok(Vec::new())
    }

    /// The newest image called `name`, or the image with id `name`.
    ///
    /// # Errors
    /// [`ImageError::NotFound`].
    pub fn get(&self, name: &str) -> Result<ImageManifest> {
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
        Self {
            name: DEFAULT_IMAGE.to_owned(),
            source: String::new(),
        }
    }

    /// A recipe file.
    ///
    /// # Errors
    /// [`ImageError::Invalid`].
    pub fn load(path: &Path) -> Result<Self> {
        Err(ImageError::Invalid(format!(
            "{}: not implemented",
            path.display()
        )))
    }

    /// sha256 of the recipe.
    #[must_use]
    pub fn hash(&self) -> String {
        String::new()
    }
}

/// Builds `recipe` into `store`, or returns the stored image already built from the same recipe.
///
/// # Errors
/// [`ImageError::Build`] with the failing step.
pub fn build(
    store: &ImageStore,
    recipe: &Recipe,
    progress: &dyn Fn(Progress),
) -> Result<ImageManifest> {
    let _ = (store, progress);
    Err(ImageError::Build(format!(
        "{}: not implemented",
        recipe.name
    )))
}

/// Imports a root filesystem directory, or an OCI image tarball (`docker save` / `skopeo copy
/// oci-archive:`), as image `name`.
///
/// # Errors
/// [`ImageError::Invalid`] for an unreadable input.
pub fn import(
    store: &ImageStore,
    input: &Path,
    name: &str,
    progress: &dyn Fn(Progress),
) -> Result<ImageManifest> {
    let _ = (store, progress, name);
    Err(ImageError::Invalid(format!(
        "{}: not implemented",
        input.display()
    )))
}
