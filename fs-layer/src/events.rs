//! Change events emitted by the copy-on-write view.

/// What happened to a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FsEventKind {
    /// A file, directory, symlink or other node was created (including by `link`).
    Create,
    /// A file's contents or a node's metadata changed (write, truncate, chmod, utimens...).
    Modify,
    /// A node was removed.
    Delete,
    /// A node moved from `old_path` to `path`.
    Rename,
}

/// One change in a view. Paths are relative to the view root, `/`-separated, without a
/// leading slash (`"src/main.rs"`); non-UTF-8 names are converted lossily.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsEvent {
    /// What happened.
    pub kind: FsEventKind,
    /// The path it happened to (the new path for a rename).
    pub path: String,
    /// For a rename, where the node was before.
    pub old_path: Option<String>,
    /// Whether the node is a directory.
    pub is_dir: bool,
    /// For a rename, whether it replaced a node that was at `path` (an atomic save: write a
    /// temporary file, rename it over the old one).
    pub replaced: bool,
}

/// Receives the events of every view. Called on FUSE worker threads while the operation is
/// being answered, so it must be quick and must never block on filesystem access.
pub trait EventSink: Send + Sync + std::fmt::Debug {
    /// A change happened in view `view`.
    fn event(&self, view: &str, event: FsEvent);
}

/// An [`EventSink`] that drops everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoEvents;

impl EventSink for NoEvents {
    fn event(&self, _view: &str, _event: FsEvent) {}
}
