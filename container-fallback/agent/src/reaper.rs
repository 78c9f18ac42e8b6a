//! PID 1's reaping: one thread waits for every ended child and hands its status to whoever
//! started it; orphans that were reparented to us are just reaped.
//!
//! Nobody else may reap: `Child::wait` is never called. std's `Command::spawn` itself reaps a
//! child whose exec failed, so the reaper first peeks at an ended child (`WNOWAIT`), then takes
//! the registry lock (held across every spawn) and only then reaps: a child std already reaped
//! is gone by then and skipped, and a child we started is always registered before its end is
//! handed out.

use std::collections::HashMap;
use std::io;
use std::process::{Child, Command};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use crate::lock;
use crate::sys;

/// Called on the reaper thread with the wait status; must not block.
pub type OnExit = Box<dyn FnOnce(i32) + Send>;

#[derive(Default)]
struct Registry {
    waiters: HashMap<i32, OnExit>,
    /// Spawn counter: lets the reaper sleep while there are no children without missing one.
    spawned: u64,
}

/// The reaper's registry.
#[derive(Default)]
pub struct Reaper {
    registry: Mutex<Registry>,
    spawned_cv: Condvar,
}

impl Reaper {
    /// Spawns `cmd` and registers `on_exit` for it before its end can be seen.
    pub fn spawn(&self, cmd: &mut Command, on_exit: OnExit) -> io::Result<Child> {
        let mut reg = lock(&self.registry);
        let child = cmd.spawn()?;
        let pid = i32::try_from(child.id()).map_err(io::Error::other)?;
        reg.waiters.insert(pid, on_exit);
        reg.spawned += 1;
        self.spawned_cv.notify_all();
        Ok(child)
    }

    /// The reaper loop.
    pub fn run(&self) {
        loop {
            let seen = lock(&self.registry).spawned;
            match sys::peek_exited_child() {
                Ok(pid) if pid > 0 => {
                    let mut reg = lock(&self.registry);
                    if let Some(status) = sys::reap(pid) {
                        if let Some(on_exit) = reg.waiters.remove(&pid) {
                            drop(reg);
                            on_exit(status);
                        }
                    }
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.raw_os_error() == Some(10) => {
                    // ECHILD: no children; sleep until the next spawn.
                    let mut reg = lock(&self.registry);
                    while reg.spawned == seen {
                        reg = match self.spawned_cv.wait_timeout(reg, Duration::from_secs(1)) {
                            Ok((g, _)) => g,
                            Err(p) => p.into_inner().0,
                        };
                    }
                }
                Err(e) => {
                    eprintln!("hybox-agent: waitid: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }
}
