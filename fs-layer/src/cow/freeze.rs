//! Freezing a view: changes wait (without holding a FUSE worker thread) while it is frozen.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::upper::R;

/// A deferred change: called with `Ok(())` when it may run.
pub(crate) type Job = Box<dyn FnOnce(R<()>) + Send>;

/// The freeze state of one view.
#[derive(Default)]
pub(crate) struct FreezeCell {
    state: Mutex<State>,
    cv: Condvar,
}

impl std::fmt::Debug for FreezeCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.lock();
        f.debug_struct("FreezeCell")
            .field("frozen", &s.frozen)
            .field("active", &s.active)
            .field("queued", &s.queue.len())
            .finish()
    }
}

#[derive(Default)]
struct State {
    /// Live freeze guards.
    frozen: u32,
    /// Changes running right now.
    active: u32,
    /// Changes that arrived while frozen, in order.
    queue: VecDeque<Job>,
    /// A thread is running the queue.
    draining: bool,
}

/// A running change: the view cannot freeze until it is dropped.
pub(crate) struct Token {
    cell: Arc<FreezeCell>,
}

impl Drop for Token {
    fn drop(&mut self) {
        self.cell.leave();
    }
}

impl FreezeCell {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn leave(&self) {
        let mut s = self.lock();
        s.active = s.active.saturating_sub(1);
        if s.active == 0 {
            self.cv.notify_all();
        }
    }

    /// Whether a freeze guard is alive.
    pub(crate) fn is_frozen(&self) -> bool {
        self.lock().frozen > 0
    }

    /// Starts a change now unless the view is frozen.
    pub(crate) fn try_enter(self: &Arc<Self>) -> Option<Token> {
        let mut s = self.lock();
        if s.frozen > 0 {
            return None;
        }
        s.active += 1;
        Some(Token { cell: self.clone() })
    }

    /// Runs `job` now, or queues it until the view thaws.
    pub(crate) fn run_or_defer(self: &Arc<Self>, job: Job) {
        {
            let mut s = self.lock();
            if s.frozen > 0 {
                s.queue.push_back(job);
                return;
            }
            s.active += 1;
        }
        let _token = Token { cell: self.clone() };
        job(Ok(()));
    }

    /// Blocks new changes and waits for running ones to finish.
    pub(crate) fn freeze(&self) {
        let mut s = self.lock();
        s.frozen += 1;
        while s.active > 0 {
            s = self.cv.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Drops one freeze; the last one runs the queued changes on a new thread.
    pub(crate) fn thaw(self: &Arc<Self>) {
        let start = {
            let mut s = self.lock();
            s.frozen = s.frozen.saturating_sub(1);
            let start = s.frozen == 0 && !s.queue.is_empty() && !s.draining;
            if start {
                s.draining = true;
            }
            self.cv.notify_all();
            start
        };
        if start {
            let cell = self.clone();
            let spawned = std::thread::Builder::new()
                .name("hybox-thaw".into())
                .spawn(move || cell.drain());
            if spawned.is_err() {
                self.clone().drain();
            }
        }
    }

    fn drain(self: Arc<Self>) {
        loop {
            let job = {
                let mut s = self.lock();
                if s.frozen > 0 {
                    s.draining = false;
                    return;
                }
                match s.queue.pop_front() {
                    Some(j) => {
                        s.active += 1;
                        j
                    }
                    None => {
                        s.draining = false;
                        return;
                    }
                }
            };
            let _token = Token { cell: self.clone() };
            if std::panic::catch_unwind(AssertUnwindSafe(|| job(Ok(())))).is_err() {
                tracing::error!("a deferred change panicked");
            }
        }
    }
}
