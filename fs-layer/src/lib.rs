//! hybox's workspace layer: squashfs snapshots and the copy-on-write view both routes share.
//!
//! - [`image`]: squashfs images written and read with backhand (lazy lookup, readdir and reads
//!   at an offset with a bounded block cache), and the content-addressed [`store::Store`] that
//!   keeps them in the data dir.
//! - [`cow`]: the copy-on-write view over a stack of read-only [`Layer`]s plus one writable upper
//!   directory, served through one FUSE mount ([`cow::Views`]) whose top-level directories are the
//!   views (one per sandbox workspace, shared volume or pool slot).
//! - [`events`]: every change made through a view is reported to an [`events::EventSink`]; the
//!   host's file watching is built on it.
//!
//! # Layer format
//! An upper directory (and a layer image written from one) records deletions as AUFS-style
//! whiteouts: an empty file `.wh.<name>` hides `<name>` in the layers below, and a file
//! `.wh..wh..opq` in a directory hides everything below that directory. Such names are reserved:
//! a view refuses to create them. A full snapshot (the merged view written out) holds no whiteouts.
//!
//! This crate never depends on `host`.

pub mod cow;
pub mod error;
pub mod events;
pub mod flatten;
pub mod image;
pub mod node;
pub mod store;
pub mod temp;

pub use error::{FsError, Result};
pub use node::{Layer, NodeAttr, NodeId, NodeKind};

/// Prefix of a whiteout entry in a layer.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// Name of the marker that makes a directory opaque.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";
