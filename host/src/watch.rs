//! File watching: the change events of every workspace view, kept in a bounded log per view so
//! a client that reconnects can ask what changed since its last event.
//!
//! Events come from the copy-on-write layer itself (every write of either route passes through
//! it), so nothing is missed the way inotify can miss events on overflow. A cursor is
//! `<epoch>-<seq>`: `epoch` changes each time the server starts, `seq` counts the view's
//! events. A cursor from another epoch, or one older than the log keeps, cannot be answered
//! exactly; the stream then says `reset` and the client rescans.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use hybox_fs_layer::events::{EventSink, FsEvent, FsEventKind};
use tokio::sync::broadcast;

/// Events kept per view for reconnecting clients.
const LOG_CAPACITY: usize = 4096;
/// Events buffered per live subscriber before it counts as lagging (and replays from the log).
const CHANNEL_CAPACITY: usize = 1024;

/// One event with its sequence number in its view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Numbered {
    /// Position in the view's log, from 1.
    pub seq: u64,
    /// What happened.
    pub event: FsEvent,
}

#[derive(Debug)]
struct ViewLog {
    next: u64,
    log: VecDeque<Numbered>,
    tx: broadcast::Sender<Numbered>,
}

impl ViewLog {
    fn new() -> Self {
        Self {
            next: 1,
            log: VecDeque::new(),
            tx: broadcast::channel(CHANNEL_CAPACITY).0,
        }
    }
}

/// The event log of all views; the fs layer's [`EventSink`].
#[derive(Debug)]
pub struct WatchHub {
    epoch: String,
    views: Mutex<HashMap<String, ViewLog>>,
}

/// What a new subscriber gets: the events it missed, whether it missed more than the log
/// holds, and the live feed.
#[derive(Debug)]
pub struct Subscription {
    /// Events after the client's cursor still in the log, oldest first.
    pub replay: Vec<Numbered>,
    /// The cursor could not be answered exactly (other epoch, or older than the log).
    pub reset: bool,
    /// The cursor of the newest event so far (what a client with nothing to replay holds).
    pub cursor: u64,
    /// Live events from now on.
    pub live: broadcast::Receiver<Numbered>,
}

impl Default for WatchHub {
    fn default() -> Self {
        Self::new()
    }
}

impl WatchHub {
    /// An empty hub with a fresh epoch.
    #[must_use]
    pub fn new() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Self {
            epoch: format!("{:x}", nanos ^ u128::from(std::process::id())),
            views: Mutex::new(HashMap::new()),
        }
    }

    /// This server run's epoch (the first half of every cursor).
    #[must_use]
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// Formats a cursor.
    #[must_use]
    pub fn cursor(&self, seq: u64) -> String {
        format!("{}-{seq}", self.epoch)
    }

    /// Subscribes to view `view`, replaying what came after `cursor` (a string from
    /// [`Self::cursor`]); `None` means "from now on".
    pub fn subscribe(&self, view: &str, cursor: Option<&str>) -> Subscription {
        let mut views = self
            .views
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let log = views.entry(view.to_owned()).or_insert_with(ViewLog::new);
        let newest = log.next - 1;
        let live = log.tx.subscribe();
        let Some(cursor) = cursor else {
            return Subscription {
                replay: Vec::new(),
                reset: false,
                cursor: newest,
                live,
            };
        };
        let since = cursor
            .rsplit_once('-')
            .filter(|(epoch, _)| *epoch == self.epoch)
            .and_then(|(_, seq)| seq.parse::<u64>().ok())
            .filter(|seq| *seq <= newest);
        let oldest_kept = log.log.front().map_or(log.next, |n| n.seq);
        match since {
            Some(seq) if seq + 1 >= oldest_kept => Subscription {
                replay: log.log.iter().filter(|n| n.seq > seq).cloned().collect(),
                reset: false,
                cursor: newest,
                live,
            },
            _ => Subscription {
                replay: Vec::new(),
                reset: true,
                cursor: newest,
                live,
            },
        }
    }

    /// The logged events of `view` after `seq` (for a subscriber that lagged), or `None` when
    /// some have already left the log.
    pub fn since(&self, view: &str, seq: u64) -> Option<Vec<Numbered>> {
        let views = self
            .views
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let log = views.get(view)?;
        let oldest_kept = log.log.front().map_or(log.next, |n| n.seq);
        (seq + 1 >= oldest_kept).then(|| log.log.iter().filter(|n| n.seq > seq).cloned().collect())
    }

    /// Forgets a view (its sandbox was deleted). Live subscribers see their stream end.
    pub fn forget(&self, view: &str) {
        self.views
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(view);
    }

    /// Records that a view's whole tree was replaced (restore): watchers get a `reset`. It is
    /// logged as a directory `modify` of the root (path `""`), which no filesystem operation
    /// produces.
    pub fn restored(&self, view: &str) {
        self.event(
            view,
            FsEvent {
                kind: FsEventKind::Modify,
                path: String::new(),
                old_path: None,
                is_dir: true,
                replaced: false,
            },
        );
    }

    /// Moves a view's log to a new name (a pool slot adopted by a sandbox).
    pub fn rename(&self, from: &str, to: &str) {
        let mut views = self
            .views
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(log) = views.remove(from) {
            views.insert(to.to_owned(), log);
        }
    }
}

impl EventSink for WatchHub {
    fn event(&self, view: &str, event: FsEvent) {
        // Pool slots are nobody's workspace yet: nobody can watch them.
        if view.starts_with('.') {
            return;
        }
        let mut views = self
            .views
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let log = views.entry(view.to_owned()).or_insert_with(ViewLog::new);
        let numbered = Numbered {
            seq: log.next,
            event,
        };
        log.next += 1;
        if log.log.len() == LOG_CAPACITY {
            log.log.pop_front();
        }
        log.log.push_back(numbered.clone());
        let _ = log.tx.send(numbered); // no receivers is fine
    }
}

/// The wire name of an event kind.
#[must_use]
pub fn kind_name(kind: FsEventKind) -> &'static str {
    match kind {
        FsEventKind::Create => "create",
        FsEventKind::Modify => "modify",
        FsEventKind::Delete => "delete",
        FsEventKind::Rename => "rename",
    }
}

/// Which events a watcher wants.
#[derive(Debug, Clone)]
pub struct Filter {
    /// The watched path relative to the workspace root (`""` for the whole workspace).
    pub dir: String,
    /// Whether events below direct children of `dir` count.
    pub recursive: bool,
    /// Glob patterns an event's path must match (any of them), if not empty.
    pub include: Vec<String>,
    /// Glob patterns an event's path must not match.
    pub exclude: Vec<String>,
}

impl Filter {
    /// Whether `event` passes (for a rename, either of its paths).
    #[must_use]
    pub fn matches(&self, event: &FsEvent) -> bool {
        std::iter::once(event.path.as_str())
            .chain(event.old_path.as_deref())
            .any(|p| self.matches_path(p))
    }

    fn matches_path(&self, path: &str) -> bool {
        let rel = if self.dir.is_empty() {
            path
        } else if path == self.dir {
            ""
        } else if let Some(rest) = path
            .strip_prefix(self.dir.as_str())
            .and_then(|r| r.strip_prefix('/'))
        {
            rest
        } else {
            return false;
        };
        if rel.is_empty() {
            return true; // the watched path itself (a watched file, or the directory going away)
        }
        if !self.recursive && rel.contains('/') {
            return false;
        }
        let hit = |pats: &[String]| pats.iter().any(|p| pattern_matches(p, rel));
        (self.include.is_empty() || hit(&self.include)) && !hit(&self.exclude)
    }
}

/// Glob match of a pattern against a path relative to the watched directory. A pattern without
/// `/` matches any path component (`*.py`, `node_modules`: everything at or under such a
/// component); one with `/` matches the whole relative path, with `**` spanning directories.
#[must_use]
pub fn pattern_matches(pattern: &str, rel: &str) -> bool {
    if pattern.contains('/') {
        let pat: Vec<&str> = pattern.trim_start_matches('/').split('/').collect();
        let path: Vec<&str> = rel.split('/').collect();
        // A directory pattern also covers what is below it.
        (0..=path.len()).any(|n| segments_match(&pat, &path[..n]))
    } else {
        rel.split('/')
            .any(|c| glob(pattern.as_bytes(), c.as_bytes()))
    }
}

fn segments_match(pat: &[&str], path: &[&str]) -> bool {
    match pat.split_first() {
        None => path.is_empty(),
        Some((&"**", rest)) => (0..=path.len()).any(|i| segments_match(rest, &path[i..])),
        Some((p, rest)) => path.split_first().is_some_and(|(c, tail)| {
            glob(p.as_bytes(), c.as_bytes()) && segments_match(rest, tail)
        }),
    }
}

/// `*` and `?` within one component, `[...]` not supported (matched literally).
fn glob(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, si));
                pi += 1;
            }
            Some(&c) if c == b'?' || c == s[si] => {
                pi += 1;
                si += 1;
            }
            _ => match star {
                Some((sp, ss)) => {
                    pi = sp + 1;
                    si = ss + 1;
                    star = Some((sp, ss + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: FsEventKind, path: &str) -> FsEvent {
        FsEvent {
            kind,
            path: path.into(),
            old_path: None,
            is_dir: false,
            replaced: false,
        }
    }

    #[test]
    fn globs() {
        assert!(pattern_matches("*.py", "a/b/c.py"));
        assert!(!pattern_matches("*.py", "a/b/c.pyc"));
        assert!(pattern_matches("node_modules", "node_modules/x/y.js"));
        assert!(pattern_matches("src/**/*.rs", "src/a/b/main.rs"));
        assert!(pattern_matches("src/**/*.rs", "src/main.rs"));
        assert!(!pattern_matches("src/*.rs", "src/a/main.rs"));
        assert!(pattern_matches("build", "build"));
        assert!(pattern_matches("b?ild", "x/build/y"));
        assert!(!pattern_matches("", "x"));
    }

    #[test]
    fn filters() {
        let f = Filter {
            dir: "src".into(),
            recursive: false,
            include: vec!["*.rs".into()],
            exclude: vec![],
        };
        assert!(f.matches(&ev(FsEventKind::Modify, "src/main.rs")));
        assert!(!f.matches(&ev(FsEventKind::Modify, "src/a/main.rs")));
        assert!(!f.matches(&ev(FsEventKind::Modify, "srcx/main.rs")));
        assert!(f.matches(&ev(FsEventKind::Delete, "src")));
        let mut r = ev(FsEventKind::Rename, "other/x.rs");
        r.old_path = Some("src/x.rs".into());
        assert!(f.matches(&r));
        let g = Filter {
            dir: String::new(),
            recursive: true,
            include: vec![],
            exclude: vec!["node_modules".into()],
        };
        assert!(g.matches(&ev(FsEventKind::Create, "a/b.txt")));
        assert!(!g.matches(&ev(FsEventKind::Create, "node_modules/a/b.txt")));
    }

    #[test]
    fn cursors_replay_and_reset() {
        let hub = WatchHub::new();
        let first = hub.subscribe("sb", None);
        assert_eq!(first.cursor, 0);
        for i in 0..10 {
            hub.event("sb", ev(FsEventKind::Create, &format!("f{i}")));
        }
        hub.event(".slot-1", ev(FsEventKind::Create, "ignored"));
        let s = hub.subscribe("sb", Some(&hub.cursor(7)));
        assert!(!s.reset);
        assert_eq!(s.cursor, 10);
        assert_eq!(
            s.replay
                .iter()
                .map(|n| n.event.path.as_str())
                .collect::<Vec<_>>(),
            ["f7", "f8", "f9"]
        );
        assert!(hub.subscribe("sb", Some("otherepoch-3")).reset);
        assert!(hub.subscribe("sb", Some(&hub.cursor(11))).reset);
        assert!(hub.subscribe("sb", Some("garbage")).reset);
        assert!(hub.subscribe("sb", Some(&hub.cursor(10))).replay.is_empty());
        for i in 0..LOG_CAPACITY {
            hub.event("sb", ev(FsEventKind::Modify, &format!("g{i}")));
        }
        assert!(hub.subscribe("sb", Some(&hub.cursor(5))).reset);
        assert!(hub.since("sb", 5).is_none());
        let tail = hub.since("sb", 10 + LOG_CAPACITY as u64 - 2).expect("kept");
        assert_eq!(tail.len(), 2);
        hub.rename("sb", "sb2");
        assert!(hub.since("sb", 0).is_none());
        assert!(hub.since("sb2", 10 + LOG_CAPACITY as u64 - 1).is_some());
    }
}
