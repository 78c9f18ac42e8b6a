//! [`DirLayer`]: a read-only [`Layer`] over a plain host directory.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use crate::node::{Layer, NodeAttr, NodeId, NodeKind};

/// A read-only layer over a host directory (for tests and for plain-directory lowers).
///
/// The directory must not change while the layer is in use (layers are immutable). Node ids are
/// interned paths; whiteout names in the directory are returned like any other name, so a
/// directory that was an upper directory can be stacked as a layer as is.
#[derive(Debug)]
pub struct DirLayer {
    root: PathBuf,
    nodes: RwLock<Nodes>,
    /// The last file read, so sequential reads do not reopen it for every block.
    last_file: Mutex<Option<(NodeId, Arc<File>)>>,
}

#[derive(Debug, Default)]
struct Nodes {
    paths: Vec<PathBuf>,
    ids: HashMap<PathBuf, NodeId>,
}

impl DirLayer {
    /// A layer over directory `root`.
    ///
    /// # Errors
    /// When `root` is not a readable directory.
    pub fn new(root: impl Into<PathBuf>) -> std::io::Result<DirLayer> {
        let root = root.into();
        let md = std::fs::metadata(&root)?;
        if !md.is_dir() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotADirectory,
                format!("{} is not a directory", root.display()),
            ));
        }
        let nodes = Nodes {
            paths: vec![PathBuf::new()],
            ids: HashMap::from([(PathBuf::new(), 0)]),
        };
        Ok(DirLayer {
            root,
            nodes: RwLock::new(nodes),
            last_file: Mutex::new(None),
        })
    }

    /// The directory this layer reads.
    pub fn path(&self) -> &Path {
        &self.root
    }

    fn rel(&self, node: NodeId) -> Option<PathBuf> {
        let nodes = self.nodes.read().unwrap_or_else(|p| p.into_inner());
        usize::try_from(node)
            .ok()
            .and_then(|i| nodes.paths.get(i).cloned())
    }

    fn host(&self, node: NodeId) -> std::io::Result<PathBuf> {
        self.rel(node)
            .map(|r| self.root.join(r))
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "unknown node"))
    }

    fn intern(&self, rel: PathBuf) -> NodeId {
        {
            let nodes = self.nodes.read().unwrap_or_else(|p| p.into_inner());
            if let Some(id) = nodes.ids.get(&rel) {
                return *id;
            }
        }
        let mut nodes = self.nodes.write().unwrap_or_else(|p| p.into_inner());
        if let Some(id) = nodes.ids.get(&rel) {
            return *id;
        }
        let id = nodes.paths.len() as NodeId;
        nodes.paths.push(rel.clone());
        nodes.ids.insert(rel, id);
        id
    }

    fn file(&self, node: NodeId) -> std::io::Result<Arc<File>> {
        let mut last = self.last_file.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((id, f)) = last.as_ref()
            && *id == node
        {
            return Ok(f.clone());
        }
        let f = Arc::new(File::open(self.host(node)?)?);
        *last = Some((node, f.clone()));
        Ok(f)
    }
}

fn kind_of(ft: std::fs::FileType) -> NodeKind {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_dir() {
        NodeKind::Dir
    } else if ft.is_symlink() {
        NodeKind::Symlink
    } else if ft.is_fifo() {
        NodeKind::Fifo
    } else if ft.is_socket() {
        NodeKind::Socket
    } else if ft.is_char_device() {
        NodeKind::CharDevice
    } else if ft.is_block_device() {
        NodeKind::BlockDevice
    } else {
        NodeKind::File
    }
}

impl Layer for DirLayer {
    fn root(&self) -> NodeId {
        0
    }

    fn lookup(&self, dir: NodeId, name: &OsStr) -> Option<NodeId> {
        if name.is_empty()
            || name == "."
            || name == ".."
            || Path::new(name).components().count() != 1
        {
            return None;
        }
        let rel = self.rel(dir)?.join(name);
        std::fs::symlink_metadata(self.root.join(&rel)).ok()?;
        Some(self.intern(rel))
    }

    fn attr(&self, node: NodeId) -> NodeAttr {
        match self.host(node).and_then(std::fs::symlink_metadata) {
            Ok(md) => NodeAttr {
                kind: kind_of(md.file_type()),
                perm: md.mode() & 0o7777,
                uid: md.uid(),
                gid: md.gid(),
                mtime: md.mtime(),
                size: if md.is_dir() { 0 } else { md.size() },
                rdev: md.rdev(),
                nlink: u32::try_from(md.nlink()).unwrap_or(u32::MAX),
            },
            Err(_) => NodeAttr {
                kind: NodeKind::File,
                perm: 0,
                uid: 0,
                gid: 0,
                mtime: 0,
                size: 0,
                rdev: 0,
                nlink: 1,
            },
        }
    }

    fn children(&self, dir: NodeId) -> std::io::Result<Vec<(OsString, NodeId)>> {
        let rel = self
            .rel(dir)
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "unknown node"))?;
        let mut names: Vec<OsString> = std::fs::read_dir(self.root.join(&rel))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<_>>()?;
        names.sort();
        Ok(names
            .into_iter()
            .map(|n| {
                let id = self.intern(rel.join(&n));
                (n, id)
            })
            .collect())
    }

    fn readlink(&self, node: NodeId) -> std::io::Result<PathBuf> {
        std::fs::read_link(self.host(node)?)
    }

    fn read_at(&self, node: NodeId, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        let f = self.file(node)?;
        f.read_at(buf, offset)
    }
}
