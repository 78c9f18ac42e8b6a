//! Sandbox workspaces on the fs layer: one FUSE mount (`<data>/mnt`) whose top-level
//! directories are the copy-on-write views of every sandbox, pool slot and shared volume, or,
//! where FUSE is unavailable, plain directories (`restoreMode: "extract"`).
//!
//! On disk: `<data>/images/` (content-addressed squashfs images), `<data>/uppers/<uid>/` (the
//! writable layer of each view; its name is recorded in the owner's metadata, so renaming a
//! view never moves it), `<data>/mnt/` (the mount point).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use hybox_fs_layer::cow::{self, Mount, ViewSpec, Views};
use hybox_fs_layer::image::{TreeStats, WriteOptions};
use hybox_fs_layer::node::Layer;
use hybox_fs_layer::store::{Store, StoredImage};
use hybox_fs_layer::{FsError, flatten};

use crate::watch::WatchHub;

/// Incremental snapshots stack their layers; past this depth a snapshot writes the merged
/// view as one image instead (compaction), so reads never walk a deep stack.
pub const MAX_LAYERS: usize = 8;

/// How workspaces are provided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FsModeChoice {
    /// FUSE views when this process can mount FUSE, else plain directories.
    Auto,
    /// FUSE views, or refuse to start.
    Mount,
    /// Plain directories; restore extracts.
    Extract,
}

/// The mode in effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsMode {
    /// Each workspace is a copy-on-write view in the FUSE mount; restore and fork are O(1).
    Mount,
    /// Each workspace is a plain directory; restore extracts the snapshot into it.
    Extract,
}

impl FsMode {
    /// The API's name for it (`restoreMode`).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            FsMode::Mount => "mount",
            FsMode::Extract => "extract",
        }
    }
}

/// Where a workspace's writable layer and read-only layers are, as recorded in metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Layout {
    /// Name of the upper directory under `<data>/uppers` (mount mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upper: Option<String>,
    /// Image ids of the read-only layers, top first (mount mode).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<String>,
}

/// The fs layer as the host uses it.
#[derive(Debug)]
pub struct Workspaces {
    mode: FsMode,
    why_extract: Option<String>,
    /// The image store.
    pub store: Store,
    views: Option<Arc<Views>>,
    mount: Mutex<Option<Mount>>,
    mnt: PathBuf,
    uppers: PathBuf,
    /// Change events of every view.
    pub hub: Arc<WatchHub>,
    /// Image garbage collection takes this for writing; anything between writing an image and
    /// recording a reference to it holds it for reading.
    pub gc: tokio::sync::RwLock<()>,
    closed: std::sync::atomic::AtomicBool,
    write_options: WriteOptions,
}

fn fs_err(e: FsError) -> anyhow::Error {
    anyhow::Error::new(e)
}

impl Workspaces {
    /// Opens the image store and, in mount mode, mounts the views (detaching a mount left by a
    /// crashed run first).
    ///
    /// # Errors
    /// When the data dir cannot be used, or `--fs-mode mount` was asked and FUSE cannot be
    /// mounted.
    pub fn open(data_dir: &Path, choice: FsModeChoice) -> anyhow::Result<Self> {
        let store = Store::open(&data_dir.join("images")).map_err(fs_err)?;
        let uppers = data_dir.join("uppers");
        std::fs::create_dir_all(&uppers)
            .with_context(|| format!("creating {}", uppers.display()))?;
        let mnt = data_dir.join("mnt");
        let hub = Arc::new(WatchHub::new());
        let (mut mode, mut why_extract) = match choice {
            FsModeChoice::Extract => (FsMode::Extract, Some("--fs-mode extract".to_owned())),
            FsModeChoice::Mount | FsModeChoice::Auto => match cow::probe() {
                Ok(()) => (FsMode::Mount, None),
                Err(why) if choice == FsModeChoice::Auto => (FsMode::Extract, Some(why)),
                Err(why) => anyhow::bail!("--fs-mode mount: FUSE is unavailable: {why}"),
            },
        };
        let mut views = None;
        let mut mount = None;
        if mode == FsMode::Mount {
            let v = Views::new(hub.clone());
            match v.mount(&mnt) {
                Ok(m) => {
                    mount = Some(m);
                    views = Some(v);
                }
                Err(e) if choice == FsModeChoice::Auto => {
                    mode = FsMode::Extract;
                    why_extract = Some(e.to_string());
                }
                Err(e) => return Err(fs_err(e)).context("--fs-mode mount"),
            }
        } else {
            // A mount left by a crashed run in mount mode would make the data dir unusable.
            let _ = cow::cleanup_stale_mounts(&mnt);
        }
        match (&mode, &why_extract) {
            (FsMode::Mount, _) => {
                tracing::info!(mount = %mnt.display(), "workspaces are copy-on-write views (restoreMode mount)")
            }
            (FsMode::Extract, Some(why)) => {
                tracing::warn!(reason = %why, "FUSE unavailable: workspaces are plain directories; snapshots still work, restore extracts them (restoreMode extract); file watching is off")
            }
            (FsMode::Extract, None) => {}
        }
        Ok(Self {
            mode,
            why_extract,
            store,
            views,
            mount: Mutex::new(mount),
            mnt,
            uppers,
            hub,
            gc: tokio::sync::RwLock::new(()),
            closed: std::sync::atomic::AtomicBool::new(false),
            write_options: WriteOptions::default(),
        })
    }

    /// The mode in effect.
    #[must_use]
    pub fn mode(&self) -> FsMode {
        self.mode
    }

    /// Sets how snapshot images are written (zstd level, block size).
    ///
    /// # Errors
    /// Options out of range.
    pub fn set_write_options(&mut self, opts: WriteOptions) -> anyhow::Result<()> {
        opts.validate().map_err(fs_err)?;
        self.write_options = opts;
        Ok(())
    }

    /// Whether [`Self::shutdown`] ran.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.closed.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Why the mode is `extract`, if it is.
    #[must_use]
    pub fn why_extract(&self) -> Option<&str> {
        self.why_extract.as_deref()
    }

    /// Unmounts (at shutdown). Workspaces are unusable afterwards.
    pub fn shutdown(&self) {
        self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
        let taken = self
            .mount
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(m) = taken {
            let path = m.path().to_path_buf();
            drop(m);
            tracing::info!(mount = %path.display(), "workspaces unmounted");
        }
    }

    /// The host path of a workspace: the view in mount mode, `<sandbox dir>/workspace` else.
    #[must_use]
    pub fn path(&self, name: &str, owner_dir: &Path) -> PathBuf {
        match self.mode {
            FsMode::Mount => self.mnt.join(name),
            FsMode::Extract => owner_dir.join("workspace"),
        }
    }

    /// The host path of an upper directory.
    #[must_use]
    pub fn upper_path(&self, upper: &str) -> PathBuf {
        self.uppers.join(upper)
    }

    fn new_upper(&self) -> anyhow::Result<String> {
        let name = crate::sandbox::random_hex(12);
        let path = self.uppers.join(&name);
        std::fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(name)
    }

    fn open_layers(&self, ids: &[String]) -> Result<Vec<Arc<dyn Layer>>, FsError> {
        ids.iter()
            .map(|id| self.store.open_image(id).map(|i| i as Arc<dyn Layer>))
            .collect()
    }

    /// Writes a stack of layers as one image (for export, or to flatten a deep stack).
    ///
    /// # Errors
    /// When an image is missing or corrupt or cannot be written.
    pub fn compact(
        &self,
        layers: &[String],
        progress: hybox_fs_layer::image::Progress<'_>,
    ) -> anyhow::Result<StoredImage> {
        if let [one] = layers {
            return self.store.info(one).map_err(fs_err);
        }
        let stack = self.open_layers(layers).map_err(fs_err)?;
        let tmp = tempfile::Builder::new()
            .prefix(".compact-")
            .tempdir_in(&self.uppers)?;
        flatten::apply_stack(&stack, tmp.path()).map_err(fs_err)?;
        self.store
            .create_from_dir(tmp.path(), &self.write_options, progress)
            .map_err(fs_err)
    }

    /// Brings up the workspace of `name` (owned by `owner_dir`) at start or creation, from
    /// `layout` (converting a workspace left by a run in the other mode), and returns the
    /// layout now in effect.
    ///
    /// # Errors
    /// When a layer image is missing or corrupt, or folders cannot be made.
    pub fn attach(&self, name: &str, owner_dir: &Path, layout: &Layout) -> anyhow::Result<Layout> {
        let plain = owner_dir.join("workspace");
        match self.mode {
            FsMode::Mount => {
                let views = self.views()?;
                let mut layout = layout.clone();
                if layout.upper.is_none() {
                    let upper = self.new_upper()?;
                    if plain.is_dir() {
                        // A workspace of an extract-mode run becomes this view's upper layer.
                        let dest = self.uppers.join(&upper);
                        std::fs::remove_dir(&dest)?;
                        std::fs::rename(&plain, &dest).context("adopting a plain workspace")?;
                    }
                    layout.upper = Some(upper);
                }
                let upper = layout.upper.clone().unwrap_or_default();
                let spec = ViewSpec {
                    upper: self.uppers.join(&upper),
                    layers: self.open_layers(&layout.layers).map_err(fs_err)?,
                    read_only: false,
                };
                views.insert(name, spec).map_err(fs_err)?;
                Ok(layout)
            }
            FsMode::Extract => {
                std::fs::create_dir_all(&plain)
                    .with_context(|| format!("creating {}", plain.display()))?;
                if layout.upper.is_some() || !layout.layers.is_empty() {
                    // A view of a mount-mode run: flatten it into the plain directory.
                    let mut stack = self.open_layers(&layout.layers).map_err(fs_err)?;
                    if let Some(up) = &layout.upper {
                        let dir = self.uppers.join(up);
                        if dir.is_dir() {
                            stack.insert(0, Arc::new(cow::DirLayer::new(&dir)?));
                        }
                    }
                    flatten::apply_stack(&stack, &plain).map_err(fs_err)?;
                    if let Some(up) = &layout.upper {
                        let _ = std::fs::remove_dir_all(self.uppers.join(up));
                    }
                }
                Ok(Layout::default())
            }
        }
    }

    fn views(&self) -> anyhow::Result<&Arc<Views>> {
        self.views
            .as_ref()
            .context("workspace views are not mounted")
    }

    /// A pool slot's workspace: a view `.slot-<n>` (mount mode) or `<slot>/workspace`.
    ///
    /// # Errors
    /// When it cannot be made.
    pub fn slot(&self, n: u64, slot_dir: &Path) -> anyhow::Result<(PathBuf, Layout)> {
        let name = format!(".slot-{n}");
        let layout = self.attach(&name, slot_dir, &Layout::default())?;
        Ok((self.path(&name, slot_dir), layout))
    }

    /// Gives a pool slot's view to a sandbox (mount mode; a no-op otherwise).
    ///
    /// # Errors
    /// When the view cannot be renamed.
    pub fn adopt_slot(&self, n: u64, name: &str) -> anyhow::Result<()> {
        if self.mode == FsMode::Mount {
            self.views()?
                .rename(&format!(".slot-{n}"), name)
                .map_err(fs_err)?;
        }
        Ok(())
    }

    /// Drops a workspace: its view and its upper layer (images are collected separately).
    pub fn detach(&self, name: &str, layout: &Layout) {
        if let Some(views) = &self.views {
            let _ = views.remove(name);
        }
        self.hub.forget(name);
        if let Some(up) = &layout.upper {
            let _ = std::fs::remove_dir_all(self.uppers.join(up));
        }
    }

    /// Removes upper directories nobody references (slots of an earlier run, interrupted
    /// deletes).
    pub fn sweep_uppers(&self, referenced: &std::collections::HashSet<String>) {
        let Ok(entries) = std::fs::read_dir(&self.uppers) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !referenced.contains(&name) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }

    /// Writes a snapshot of workspace `name`, or of its subdirectory `sub` (a host path that
    /// names an open descriptor, `/proc/self/fd/N`) and returns its layer stack (top first), what the tree holds and the
    /// bytes stored. In mount mode a whole-workspace snapshot writes only the upper layer
    /// (changes since the layers below) while the view is frozen; past [`MAX_LAYERS`] it
    /// writes the merged view instead.
    ///
    /// # Errors
    /// When an image cannot be written.
    pub fn snapshot(
        &self,
        name: &str,
        owner_dir: &Path,
        layout: &Layout,
        sub: Option<&Path>,
        progress: hybox_fs_layer::image::Progress<'_>,
    ) -> anyhow::Result<(Vec<String>, TreeStats, u64)> {
        let opts = self.write_options;
        let root = self.path(name, owner_dir);
        let mut layers: Vec<String>;
        match (&self.views, sub) {
            (Some(views), None) => {
                let upper = self
                    .uppers
                    .join(layout.upper.as_deref().unwrap_or_default());
                {
                    // Frozen, the upper directory is stable; nothing under the guard may go
                    // through the mount (a change queued by the freeze keeps its directory
                    // locked in the kernel until the thaw).
                    let _frozen = views.freeze(name).map_err(fs_err)?;
                    let empty = std::fs::read_dir(&upper)
                        .map(|mut d| d.next().is_none())
                        .unwrap_or(true);
                    layers = layout.layers.clone();
                    if !empty || layers.is_empty() {
                        let img = self
                            .store
                            .create_from_dir(&upper, &opts, progress)
                            .map_err(fs_err)?;
                        layers.insert(0, img.id);
                    }
                }
                if layers.len() > MAX_LAYERS {
                    layers = vec![self.compact(&layers, progress)?.id];
                }
            }
            _ => {
                // A plain directory, or a subdirectory read through the mount: a running guest's
                // concurrent writes may or may not be in it, as with any copy of a live tree.
                let src = sub.unwrap_or(&root);
                let img: StoredImage = self
                    .store
                    .create_from_dir(src, &opts, progress)
                    .map_err(fs_err)?;
                layers = vec![img.id];
            }
        }
        let stats = if layers.len() == 1 {
            self.store.info(&layers[0]).map_err(fs_err)?.stats
        } else {
            flatten::count_stack(&self.open_layers(&layers).map_err(fs_err)?).map_err(fs_err)?
        };
        let mut size = 0;
        for id in &layers {
            size += self.store.info(id).map_err(fs_err)?.size;
        }
        Ok((layers, stats, size))
    }

    /// Restores a snapshot's layer stack into workspace `name`, or into its subdirectory `sub`
    /// (as for [`Self::snapshot`]). For the
    /// whole workspace in mount mode this swaps the view onto the layers with an empty upper
    /// (nothing is copied) and returns the new layout; otherwise the directory is emptied and
    /// the layers are extracted into it.
    ///
    /// # Errors
    /// When an image is missing or corrupt, or the tree cannot be written.
    pub fn restore(
        &self,
        name: &str,
        owner_dir: &Path,
        layers: &[String],
        sub: Option<&Path>,
    ) -> Result<(FsMode, Option<Layout>), FsError> {
        let stack = self.open_layers(layers)?;
        if self.mode == FsMode::Mount && sub.is_none() {
            let views = self
                .views
                .as_ref()
                .ok_or_else(|| FsError::Invalid("views not mounted".into()))?;
            let upper = self.new_upper().map_err(|e| {
                FsError::io(
                    "create upper",
                    &self.uppers,
                    std::io::Error::other(e.to_string()),
                )
            })?;
            let old = views.replace(
                name,
                ViewSpec {
                    upper: self.uppers.join(&upper),
                    layers: stack,
                    read_only: false,
                },
            )?;
            // The old upper is unreachable now; remove it off the request's path.
            std::thread::spawn(move || {
                let _ = std::fs::remove_dir_all(&old.upper);
            });
            return Ok((
                FsMode::Mount,
                Some(Layout {
                    upper: Some(upper),
                    layers: layers.to_vec(),
                }),
            ));
        }
        let root = self.path(name, owner_dir);
        let dest = sub.unwrap_or(&root);
        // Through the mount when there is one, so the writes are seen (and watched) like any.
        flatten::clear_dir(dest)?;
        flatten::apply_stack(&stack, dest)?;
        Ok((FsMode::Extract, None))
    }
}
