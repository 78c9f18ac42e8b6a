//! The inode table: the inodes the kernel knows, global across views.
//!
//! An inode is a (parent inode, name) link plus a lookup count. Its merged resolution (upper
//! and layer nodes) is derived from its path and cached per view generation; the generation
//! moves on every change that can move what an existing path resolves to (copy-up, rename,
//! replace). Entries go away when the kernel forgets them (and they have no children entries),
//! so the table stays bounded by what the kernel caches plus a bounded set of entries handed out
//! by `readdir` that were never looked up.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ffi::OsString;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use fuser::FileType;

use super::freeze::FreezeCell;
use super::merge::{Node, SpecState};

/// Inode number of the mount root.
pub(crate) const ROOT: u64 = 1;

/// At most this many entries created by `readdir` and never looked up are kept.
const ZERO_REF_CAP: usize = 4096;

#[derive(Debug)]
pub(crate) struct Inode {
    /// View id (0 for the mount root).
    pub(crate) view: u64,
    /// Parent inode (0 once detached: unlinked, replaced or removed).
    pub(crate) parent: u64,
    /// Name in the parent.
    pub(crate) name: OsString,
    /// Kind (fixed for the life of the inode).
    pub(crate) kind: FileType,
    /// Kernel lookup count.
    pub(crate) nlookup: u64,
    /// Table entries whose parent is this inode.
    pub(crate) children: u64,
    /// Never removed (mount root, live view roots).
    pub(crate) pinned: bool,
    /// Its view was replaced or removed: every operation fails.
    pub(crate) stale: bool,
    /// Resolution cached for a view generation.
    pub(crate) cache: Option<(u64, Arc<Node>)>,
    /// Further names (hard links) of this inode.
    pub(crate) aliases: Vec<(u64, OsString)>,
    /// (st_dev, st_ino) of the upper file for hard-linked files.
    pub(crate) host: Option<(u64, u64)>,
    /// Set when a regular file is copied up, so read handles opened on the lower file switch.
    pub(crate) copied: Arc<AtomicBool>,
}

#[derive(Debug)]
pub(crate) struct ViewEntry {
    pub(crate) name: String,
    pub(crate) root: u64,
    pub(crate) spec: Arc<SpecState>,
    pub(crate) epoch: u64,
    pub(crate) freeze: Arc<FreezeCell>,
    /// Serializes the namespace changes of the view (copy-up, create, remove, rename).
    pub(crate) structural: Arc<Mutex<()>>,
}

#[derive(Debug)]
pub(crate) struct Table {
    pub(crate) inodes: HashMap<u64, Inode>,
    pub(crate) index: HashMap<(u64, OsString), u64>,
    pub(crate) by_host: HashMap<(u64, u64), u64>,
    pub(crate) views: HashMap<u64, ViewEntry>,
    pub(crate) names: BTreeMap<String, u64>,
    pub(crate) root_mtime: SystemTime,
    next_ino: u64,
    next_view: u64,
    zero_refs: VecDeque<u64>,
}

impl Table {
    pub(crate) fn new() -> Table {
        let mut inodes = HashMap::new();
        inodes.insert(
            ROOT,
            Inode {
                view: 0,
                parent: 0,
                name: OsString::new(),
                kind: FileType::Directory,
                nlookup: 1,
                children: 0,
                pinned: true,
                stale: false,
                cache: None,
                aliases: Vec::new(),
                host: None,
                copied: Arc::default(),
            },
        );
        Table {
            inodes,
            index: HashMap::new(),
            by_host: HashMap::new(),
            views: HashMap::new(),
            names: BTreeMap::new(),
            root_mtime: SystemTime::now(),
            next_ino: ROOT + 1,
            next_view: 1,
            zero_refs: VecDeque::new(),
        }
    }

    pub(crate) fn new_view_id(&mut self) -> u64 {
        let id = self.next_view;
        self.next_view += 1;
        id
    }

    /// A new inode linked as `name` in `parent`.
    pub(crate) fn alloc(&mut self, view: u64, parent: u64, name: OsString, kind: FileType) -> u64 {
        let ino = self.next_ino;
        self.next_ino += 1;
        if let Some(p) = self.inodes.get_mut(&parent) {
            p.children += 1;
        }
        self.index.insert((parent, name.clone()), ino);
        self.inodes.insert(
            ino,
            Inode {
                view,
                parent,
                name,
                kind,
                nlookup: 0,
                children: 0,
                pinned: false,
                stale: false,
                cache: None,
                aliases: Vec::new(),
                host: None,
                copied: Arc::default(),
            },
        );
        ino
    }

    /// Remembers an entry handed out by `readdir`; drops the oldest such entries past the cap.
    pub(crate) fn note_zero_ref(&mut self, ino: u64) {
        self.zero_refs.push_back(ino);
        while self.zero_refs.len() > ZERO_REF_CAP {
            if let Some(old) = self.zero_refs.pop_front() {
                self.maybe_remove(old);
            }
        }
    }

    /// Drops one name of its inode (unlink, rmdir, rename-over). The inode is detached when it
    /// has no name left.
    pub(crate) fn unlink_name(&mut self, parent: u64, name: &OsString) {
        let key = (parent, name.clone());
        let Some(ino) = self.index.remove(&key) else {
            return;
        };
        let Some(inode) = self.inodes.get_mut(&ino) else {
            return;
        };
        if inode.parent == parent && &inode.name == name {
            if let Some((p2, n2)) = inode.aliases.pop() {
                inode.cache = None;
                inode.parent = p2;
                inode.name = n2;
                if let Some(p) = self.inodes.get_mut(&p2) {
                    p.children += 1;
                }
                if let Some(p) = self.inodes.get_mut(&parent) {
                    p.children = p.children.saturating_sub(1);
                }
                self.maybe_remove(parent);
            } else {
                self.detach(ino);
            }
        } else {
            inode.aliases.retain(|(p, n)| !(*p == parent && n == name));
        }
    }

    /// Unlinks the inode from the namespace (it stays while the kernel knows it).
    pub(crate) fn detach(&mut self, ino: u64) {
        let Some(inode) = self.inodes.get_mut(&ino) else {
            return;
        };
        let parent = std::mem::replace(&mut inode.parent, 0);
        let name = inode.name.clone();
        let aliases = std::mem::take(&mut inode.aliases);
        let host = inode.host.take();
        inode.cache = None;
        if parent != 0 {
            let key = (parent, name);
            if self.index.get(&key) == Some(&ino) {
                self.index.remove(&key);
            }
            if let Some(p) = self.inodes.get_mut(&parent) {
                p.children = p.children.saturating_sub(1);
            }
        }
        for key in aliases {
            if self.index.get(&key) == Some(&ino) {
                self.index.remove(&key);
            }
        }
        if let Some(h) = host
            && self.by_host.get(&h) == Some(&ino)
        {
            self.by_host.remove(&h);
        }
        if parent != 0 {
            self.maybe_remove(parent);
        }
        self.maybe_remove(ino);
    }

    /// Moves name `from` of inode `ino` to `to`.
    pub(crate) fn move_name(&mut self, ino: u64, from: (u64, OsString), to: (u64, OsString)) {
        if self.index.get(&from) == Some(&ino) {
            self.index.remove(&from);
        }
        self.index.insert(to.clone(), ino);
        let Some(inode) = self.inodes.get_mut(&ino) else {
            return;
        };
        if inode.parent == from.0 && inode.name == from.1 {
            inode.parent = to.0;
            inode.name = to.1;
            inode.cache = None;
            if let Some(p) = self.inodes.get_mut(&to.0) {
                p.children += 1;
            }
            if let Some(p) = self.inodes.get_mut(&from.0) {
                p.children = p.children.saturating_sub(1);
            }
            self.maybe_remove(from.0);
        } else {
            for a in inode.aliases.iter_mut() {
                if *a == from {
                    *a = to.clone();
                }
            }
        }
    }

    /// The kernel dropped `n` references.
    pub(crate) fn forget(&mut self, ino: u64, n: u64) {
        if let Some(i) = self.inodes.get_mut(&ino) {
            i.nlookup = i.nlookup.saturating_sub(n);
            self.maybe_remove(ino);
        }
    }

    /// Removes `ino` (and then its parents) when nothing needs it any more.
    pub(crate) fn maybe_remove(&mut self, ino: u64) {
        let mut cur = ino;
        loop {
            let Some(i) = self.inodes.get(&cur) else {
                return;
            };
            if i.pinned || i.nlookup > 0 || i.children > 0 {
                return;
            }
            let Some(i) = self.inodes.remove(&cur) else {
                return;
            };
            let key = (i.parent, i.name);
            if self.index.get(&key) == Some(&cur) {
                self.index.remove(&key);
            }
            for key in i.aliases {
                if self.index.get(&key) == Some(&cur) {
                    self.index.remove(&key);
                }
            }
            if let Some(h) = i.host
                && self.by_host.get(&h) == Some(&cur)
            {
                self.by_host.remove(&h);
            }
            if i.parent == 0 {
                return;
            }
            match self.inodes.get_mut(&i.parent) {
                Some(p) => p.children = p.children.saturating_sub(1),
                None => return,
            }
            cur = i.parent;
        }
    }

    /// Marks every inode of `view` (but its root) stale and detaches it.
    pub(crate) fn detach_view_contents(&mut self, view: u64, root: u64) {
        let inos: Vec<u64> = self
            .inodes
            .iter()
            .filter(|(ino, i)| i.view == view && **ino != root)
            .map(|(ino, _)| *ino)
            .collect();
        for ino in &inos {
            if let Some(i) = self.inodes.get_mut(ino) {
                i.stale = true;
            }
        }
        for ino in inos {
            self.detach(ino);
        }
    }

    /// Forgets every kernel reference (the mount went away).
    pub(crate) fn reset_refs(&mut self) {
        let inos: Vec<u64> = self.inodes.keys().copied().collect();
        for ino in &inos {
            if let Some(i) = self.inodes.get_mut(ino)
                && *ino != ROOT
            {
                i.nlookup = 0;
            }
        }
        for ino in inos {
            self.maybe_remove(ino);
        }
        self.zero_refs.clear();
    }

    /// The view root inode and view id of `ino`'s view.
    pub(crate) fn view_of(&self, ino: u64) -> Option<&ViewEntry> {
        let i = self.inodes.get(&ino)?;
        if i.stale {
            return None;
        }
        self.views.get(&i.view)
    }
}
