//! The merged view: resolving a name through the upper directory and the layers, whiteouts and
//! opaque directories included, and listing merged directories.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fuser::FileType;
use rustix::fs::{Mode, OFlags};

use super::ViewSpec;
use super::upper::{self, Er, R, Special};
use crate::OPAQUE_MARKER;
use crate::node::{Layer, NodeId, NodeKind};

/// What a view is made of, with the upper directory opened.
#[derive(Debug)]
pub(crate) struct SpecState {
    pub(crate) spec: ViewSpec,
    /// `O_PATH` descriptor of the upper directory.
    pub(crate) upper_fd: OwnedFd,
}

impl SpecState {
    pub(crate) fn layer(&self, i: usize) -> R<&Arc<dyn Layer>> {
        self.spec.layers.get(i).ok_or(Er::EIO)
    }
}

/// A path of a view, resolved through the stack.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    /// Path relative to the view root (empty for the root).
    pub(crate) rel: PathBuf,
    /// Kind of the visible object.
    pub(crate) kind: FileType,
    /// The object exists in the upper directory.
    pub(crate) upper: bool,
    /// The upper directory carries the opaque marker.
    pub(crate) opaque: bool,
    /// Layer nodes merged into this one, top first: for a directory every visible lower
    /// directory; for a non-directory without an upper copy the one lower node.
    pub(crate) lowers: Vec<(usize, NodeId)>,
}

/// The result of looking a name up in a merged directory.
#[derive(Debug)]
pub(crate) struct Probe {
    /// The visible object, if any.
    pub(crate) node: Option<Node>,
    /// The name is visible in the layers alone (so deleting it needs a whiteout).
    pub(crate) below: bool,
    /// The upper directory holds a whiteout for the name.
    pub(crate) whiteout: bool,
}

/// Converts a layer node kind.
pub(crate) fn file_type(k: NodeKind) -> FileType {
    match k {
        NodeKind::File => FileType::RegularFile,
        NodeKind::Dir => FileType::Directory,
        NodeKind::Symlink => FileType::Symlink,
        NodeKind::CharDevice => FileType::CharDevice,
        NodeKind::BlockDevice => FileType::BlockDevice,
        NodeKind::Fifo => FileType::NamedPipe,
        NodeKind::Socket => FileType::Socket,
    }
}

fn layer_opaque(layer: &Arc<dyn Layer>, dir: NodeId) -> bool {
    layer.lookup(dir, OsStr::new(OPAQUE_MARKER)).is_some()
}

/// The view's root directory.
pub(crate) fn root(spec: &SpecState) -> R<Node> {
    let opaque = upper::exists_at(spec.upper_fd.as_fd(), OsStr::new(OPAQUE_MARKER))?;
    let mut lowers = Vec::new();
    if !opaque {
        for (i, l) in spec.spec.layers.iter().enumerate() {
            let r = l.root();
            lowers.push((i, r));
            if layer_opaque(l, r) {
                break;
            }
        }
    }
    Ok(Node {
        rel: PathBuf::new(),
        kind: FileType::Directory,
        upper: true,
        opaque,
        lowers,
    })
}

/// Looks `name` up in directory `parent`.
pub(crate) fn child(spec: &SpecState, parent: &Node, name: &OsStr) -> R<Probe> {
    if parent.kind != FileType::Directory {
        return Err(Er::ENOTDIR);
    }
    if upper::is_reserved(name) || name.is_empty() || name == "." || name == ".." {
        return Ok(Probe {
            node: None,
            below: false,
            whiteout: false,
        });
    }
    let rel = parent.rel.join(name);
    let mut upper_kind = None;
    let mut opaque = false;
    let mut whiteout = false;
    if parent.upper {
        let pd = upper::dir_fd(spec.upper_fd.as_fd(), &parent.rel)?;
        if let Some(st) = upper::lstat_at(pd.as_fd(), name)? {
            let k = upper::kind_of(st.st_mode);
            if k == FileType::Directory {
                opaque =
                    upper::lstat_at(pd.as_fd(), Path::new(name).join(OPAQUE_MARKER).as_os_str())?
                        .is_some();
            }
            upper_kind = Some(k);
        } else if upper::exists_at(pd.as_fd(), &upper::whiteout_name(name))? {
            whiteout = true;
        }
    }
    let stop_upper = whiteout
        || matches!(upper_kind, Some(k) if k != FileType::Directory)
        || (upper_kind.is_some() && opaque);
    let mut below = false;
    let mut lowers = Vec::new();
    let mut top_kind = upper_kind;
    for &(li, d) in &parent.lowers {
        let layer = spec.layer(li)?;
        if let Some(n) = layer.lookup(d, name) {
            below = true;
            if stop_upper {
                break;
            }
            let k = file_type(layer.attr(n).kind);
            match top_kind {
                None => {
                    top_kind = Some(k);
                    lowers.push((li, n));
                    if k != FileType::Directory || layer_opaque(layer, n) {
                        break;
                    }
                }
                Some(FileType::Directory) if k == FileType::Directory => {
                    lowers.push((li, n));
                    if layer_opaque(layer, n) {
                        break;
                    }
                }
                Some(_) => break,
            }
        } else if layer.lookup(d, &upper::whiteout_name(name)).is_some() {
            break;
        }
    }
    let node = top_kind.map(|kind| Node {
        rel,
        kind,
        upper: upper_kind.is_some(),
        opaque,
        lowers,
    });
    Ok(Probe {
        node,
        below,
        whiteout,
    })
}

/// The visible entries of merged directory `node`, sorted by name.
pub(crate) fn list(spec: &SpecState, node: &Node) -> R<Vec<(OsString, FileType)>> {
    if node.kind != FileType::Directory {
        return Err(Er::ENOTDIR);
    }
    let mut out = Vec::new();
    let mut seen: HashSet<OsString> = HashSet::new();
    let mut hidden: HashSet<OsString> = HashSet::new();
    if node.upper {
        let fd = upper::open(
            spec.upper_fd.as_fd(),
            &node.rel,
            OFlags::RDONLY | OFlags::DIRECTORY,
            Mode::empty(),
        )?;
        for (n, k) in upper::read_dir(fd.as_fd())? {
            match upper::classify(&n) {
                Special::Plain => {
                    let k = match k {
                        Some(k) => k,
                        None => match upper::lstat_at(fd.as_fd(), &n)? {
                            Some(st) => upper::kind_of(st.st_mode),
                            None => continue,
                        },
                    };
                    seen.insert(n.clone());
                    out.push((n, k));
                }
                Special::Whiteout(w) => {
                    hidden.insert(w.to_owned());
                }
                Special::Meta => {}
            }
        }
    }
    for &(li, d) in &node.lowers {
        let layer = spec.layer(li)?;
        let mut layer_hidden = Vec::new();
        for (n, id) in layer.children(d)? {
            match upper::classify(&n) {
                Special::Plain => {
                    if seen.contains(&n) || hidden.contains(&n) {
                        continue;
                    }
                    let k = file_type(layer.attr(id).kind);
                    seen.insert(n.clone());
                    out.push((n, k));
                }
                Special::Whiteout(w) => layer_hidden.push(w.to_owned()),
                Special::Meta => {}
            }
        }
        hidden.extend(layer_hidden);
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}
