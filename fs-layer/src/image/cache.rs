//! A bounded cache of decompressed data and fragment blocks.
//!
//! Keyed by where the block is stored (its offset in the image and its size word), so a
//! fragment block shared by many small files is decompressed once, and so are data blocks that
//! several files share. The cache is split in shards, each an LRU list with its share of the
//! byte budget behind its own mutex; a lock is held only to look up or insert, never while
//! reading or decompressing, so readers of different blocks do not wait for each other. Two
//! threads missing the same block at once both decompress it (the second insert wins); that
//! is cheaper than making everyone wait on an in-flight table.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Where a block is stored: offset in the image and its on-disk size word.
pub(super) type Key = (u64, u32);

/// Bookkeeping charged per entry on top of its data.
const ENTRY_OVERHEAD: usize = 64;
const NIL: usize = usize::MAX;

/// Counters of a cache, for tests and diagnostics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Blocks found in the cache.
    pub hits: u64,
    /// Blocks read and decompressed.
    pub misses: u64,
    /// Blocks held now.
    pub entries: u64,
    /// Bytes held now (data plus bookkeeping).
    pub bytes: u64,
    /// The byte budget.
    pub capacity: u64,
}

#[derive(Debug)]
struct Slot {
    key: Key,
    data: Arc<[u8]>,
    prev: usize,
    next: usize,
}

/// One LRU list: a slab of slots linked most recent first.
#[derive(Debug)]
struct Lru {
    map: HashMap<Key, usize>,
    slots: Vec<Slot>,
    free: Vec<usize>,
    head: usize,
    tail: usize,
    bytes: usize,
    capacity: usize,
}

impl Lru {
    fn new(capacity: usize) -> Lru {
        Lru {
            map: HashMap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            bytes: 0,
            capacity,
        }
    }

    fn unlink(&mut self, i: usize) {
        let (prev, next) = (self.slots[i].prev, self.slots[i].next);
        if prev == NIL {
            self.head = next;
        } else {
            self.slots[prev].next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            self.slots[next].prev = prev;
        }
    }

    fn push_front(&mut self, i: usize) {
        self.slots[i].prev = NIL;
        self.slots[i].next = self.head;
        if self.head != NIL {
            self.slots[self.head].prev = i;
        }
        self.head = i;
        if self.tail == NIL {
            self.tail = i;
        }
    }

    fn get(&mut self, key: &Key) -> Option<Arc<[u8]>> {
        let i = *self.map.get(key)?;
        self.unlink(i);
        self.push_front(i);
        Some(Arc::clone(&self.slots[i].data))
    }

    fn insert(&mut self, key: Key, data: Arc<[u8]>) {
        let cost = data.len() + ENTRY_OVERHEAD;
        if cost > self.capacity {
            return;
        }
        if let Some(&i) = self.map.get(&key) {
            self.bytes -= self.slots[i].data.len() + ENTRY_OVERHEAD;
            self.slots[i].data = data;
            self.unlink(i);
            self.push_front(i);
        } else {
            let slot = Slot {
                key,
                data,
                prev: NIL,
                next: NIL,
            };
            let i = match self.free.pop() {
                Some(i) => {
                    self.slots[i] = slot;
                    i
                }
                None => {
                    self.slots.push(slot);
                    self.slots.len() - 1
                }
            };
            self.map.insert(key, i);
            self.push_front(i);
        }
        self.bytes += cost;
        while self.bytes > self.capacity && self.tail != NIL {
            let t = self.tail;
            self.unlink(t);
            let key = self.slots[t].key;
            self.map.remove(&key);
            self.bytes -= self.slots[t].data.len() + ENTRY_OVERHEAD;
            self.slots[t].data = Arc::from(&[][..]);
            self.free.push(t);
        }
    }
}

/// The sharded block cache of one image.
#[derive(Debug)]
pub(super) struct BlockCache {
    shards: Box<[Mutex<Lru>]>,
    capacity: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl BlockCache {
    /// A cache of at most `capacity` bytes for blocks of up to `block_size` bytes.
    pub(super) fn new(capacity: usize, block_size: u32) -> BlockCache {
        // Enough shards to spread lock traffic, few enough that each holds several blocks.
        let per_block = block_size as usize + ENTRY_OVERHEAD;
        let n = (capacity / (per_block * 8)).clamp(1, 16);
        let shards = (0..n).map(|_| Mutex::new(Lru::new(capacity / n))).collect();
        BlockCache {
            shards,
            capacity,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn shard(&self, key: &Key) -> MutexGuard<'_, Lru> {
        let h = (key.0 >> 9).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(key.1);
        let i = (h >> 32) as usize % self.shards.len();
        // A panic never happens while a shard is locked; if one did, the list is still whole.
        self.shards[i]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The cached block, if any.
    pub(super) fn get(&self, key: &Key) -> Option<Arc<[u8]>> {
        let found = self.shard(key).get(key);
        if found.is_some() {
            self.hits.fetch_add(1, Ordering::Relaxed);
        }
        found
    }

    /// Records a block that was just decompressed.
    pub(super) fn insert(&self, key: Key, data: Arc<[u8]>) {
        self.misses.fetch_add(1, Ordering::Relaxed);
        self.shard(&key).insert(key, data);
    }

    /// Counters and occupancy.
    pub(super) fn stats(&self) -> CacheStats {
        let mut s = CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            capacity: self.capacity as u64,
            ..CacheStats::default()
        };
        for shard in &self.shards {
            let l = shard.lock().unwrap_or_else(|p| p.into_inner());
            s.entries += l.map.len() as u64;
            s.bytes += l.bytes as u64;
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(n: usize, v: u8) -> Arc<[u8]> {
        Arc::from(vec![v; n])
    }

    #[test]
    fn lru_evicts_least_recently_used() {
        let mut l = Lru::new(3 * (100 + ENTRY_OVERHEAD));
        l.insert((1, 0), block(100, 1));
        l.insert((2, 0), block(100, 2));
        l.insert((3, 0), block(100, 3));
        assert!(l.get(&(1, 0)).is_some()); // 1 is now the most recent
        l.insert((4, 0), block(100, 4)); // evicts 2
        assert!(l.get(&(2, 0)).is_none());
        assert_eq!(l.get(&(1, 0)).expect("kept")[0], 1);
        assert_eq!(l.get(&(3, 0)).expect("kept")[0], 3);
        assert_eq!(l.get(&(4, 0)).expect("kept")[0], 4);
        assert_eq!(l.map.len(), 3);
        assert!(l.bytes <= l.capacity);
        // Replacing an entry keeps the accounting right; slots are reused.
        l.insert((4, 0), block(50, 5));
        assert_eq!(l.bytes, 2 * (100 + ENTRY_OVERHEAD) + 50 + ENTRY_OVERHEAD);
        l.insert((5, 0), block(100, 6));
        l.insert((6, 0), block(100, 7));
        assert!(l.bytes <= l.capacity);
        assert!(l.slots.len() <= 4);
        // Too big for the whole budget: not cached at all.
        l.insert((7, 0), block(10_000, 0));
        assert!(l.get(&(7, 0)).is_none());
    }

    #[test]
    fn cache_respects_capacity() {
        let c = BlockCache::new(64 * 1024, 4096);
        for i in 0..1000u64 {
            c.insert((i * 4096, 7), block(4096, i as u8));
        }
        let s = c.stats();
        assert!(s.bytes <= 64 * 1024, "{s:?}");
        assert!(s.entries > 0);
        assert!(c.get(&(999 * 4096, 7)).is_some());
        let zero = BlockCache::new(0, 4096);
        zero.insert((0, 1), block(10, 1));
        assert!(zero.get(&(0, 1)).is_none());
    }
}
