//! A `poll_oneoff` that a deadline can interrupt.
//!
//! wasmtime's own `poll_oneoff` sleeps inside a host call, where the epoch cannot reach, so
//! `time.sleep(3600)` would outlive any deadline. This one sleeps in slices of one tick and
//! returns early when the run must stop; the guest then traps at its next epoch check.
//! Descriptor subscriptions are answered as ready at once (as wasmtime does for files).

use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use wasmtime::{Caller, Linker};

use crate::engine::{GuestState, TICK};

const EINVAL: i32 = 28;
const ENOMEM: i32 = 48;
const EFAULT: i32 = 21;
const MAX_SUBSCRIPTIONS: usize = 4096;
const SUBSCRIPTION_SIZE: usize = 48;
const EVENT_SIZE: usize = 32;
const TAG_CLOCK: u8 = 0;
const TAG_FD_READ: u8 = 1;
const TAG_FD_WRITE: u8 = 2;
const CLOCK_REALTIME: u32 = 0;
const CLOCK_MONOTONIC: u32 = 1;
const SUBCLOCK_ABSTIME: u16 = 1;

/// One decoded subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sub {
    /// Wake after this many nanoseconds from now.
    Clock { userdata: u64, wait_ns: u64 },
    /// A descriptor; ready at once.
    Fd { userdata: u64, tag: u8 },
}

/// What to answer: events (userdata, type) and how long to wait first.
#[derive(Debug, PartialEq, Eq)]
struct Plan {
    events: Vec<(u64, u8)>,
    wait_ns: u64,
}

fn decode(raw: &[u8], now_realtime: u64, now_monotonic: u64) -> Result<Vec<Sub>, i32> {
    let mut subs = Vec::with_capacity(raw.len() / SUBSCRIPTION_SIZE);
    for chunk in raw.chunks_exact(SUBSCRIPTION_SIZE) {
        let u64_at = |o: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&chunk[o..o + 8]);
            u64::from_le_bytes(b)
        };
        let userdata = u64_at(0);
        let tag = chunk[8];
        match tag {
            TAG_CLOCK => {
                let mut id = [0u8; 4];
                id.copy_from_slice(&chunk[16..20]);
                let clock = u32::from_le_bytes(id);
                let timeout = u64_at(24);
                let flags = u16::from_le_bytes([chunk[40], chunk[41]]);
                let now = match clock {
                    CLOCK_REALTIME => now_realtime,
                    CLOCK_MONOTONIC => now_monotonic,
                    _ => return Err(EINVAL),
                };
                let wait_ns = if flags & SUBCLOCK_ABSTIME != 0 {
                    timeout.saturating_sub(now)
                } else {
                    timeout
                };
                subs.push(Sub::Clock { userdata, wait_ns });
            }
            TAG_FD_READ | TAG_FD_WRITE => subs.push(Sub::Fd { userdata, tag }),
            _ => return Err(EINVAL),
        }
    }
    Ok(subs)
}

fn plan(subs: &[Sub]) -> Plan {
    let ready: Vec<(u64, u8)> = subs
        .iter()
        .filter_map(|s| match *s {
            Sub::Fd { userdata, tag } => Some((userdata, tag)),
            Sub::Clock { .. } => None,
        })
        .collect();
    if !ready.is_empty() {
        return Plan {
            events: ready,
            wait_ns: 0,
        };
    }
    let wait_ns = subs
        .iter()
        .filter_map(|s| match *s {
            Sub::Clock { wait_ns, .. } => Some(wait_ns),
            Sub::Fd { .. } => None,
        })
        .min()
        .unwrap_or(0);
    let events = subs
        .iter()
        .filter_map(|s| match *s {
            Sub::Clock {
                userdata,
                wait_ns: w,
            } if w <= wait_ns => Some((userdata, TAG_CLOCK)),
            _ => None,
        })
        .collect();
    Plan { events, wait_ns }
}

pub(crate) fn add_to_linker(linker: &mut Linker<GuestState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "wasi_snapshot_preview1",
        "poll_oneoff",
        |mut caller: Caller<'_, GuestState>,
         in_ptr: i32,
         out_ptr: i32,
         n: i32,
         nevents_ptr: i32|
         -> wasmtime::Result<i32> {
            let n = n as u32 as usize;
            if n == 0 {
                return Ok(EINVAL);
            }
            if n > MAX_SUBSCRIPTIONS {
                return Ok(ENOMEM);
            }
            let Some(memory) = caller
                .get_export("memory")
                .and_then(wasmtime::Extern::into_memory)
            else {
                return Ok(EFAULT);
            };
            let mut raw = vec![0u8; n * SUBSCRIPTION_SIZE];
            if memory
                .read(&caller, in_ptr as u32 as usize, &mut raw)
                .is_err()
            {
                return Ok(EFAULT);
            }
            let realtime = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
            let monotonic =
                u64::try_from(caller.data().clock_origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
            let subs = match decode(&raw, realtime, monotonic) {
                Ok(s) => s,
                Err(errno) => return Ok(errno),
            };
            let plan = plan(&subs);
            if plan.wait_ns > 0 {
                let until = std::time::Instant::now() + Duration::from_nanos(plan.wait_ns);
                let run = caller.data().run.clone();
                loop {
                    let left = until.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() || run.should_stop().is_some() {
                        break;
                    }
                    thread::sleep(left.min(TICK));
                }
            }
            let mut out = Vec::with_capacity(plan.events.len() * EVENT_SIZE);
            for (userdata, kind) in &plan.events {
                let mut event = [0u8; EVENT_SIZE];
                event[0..8].copy_from_slice(&userdata.to_le_bytes());
                // error (u16) = 0 at 8..10; type at 10.
                event[10] = *kind;
                if *kind != TAG_CLOCK {
                    event[16..24].copy_from_slice(&1u64.to_le_bytes());
                }
                out.extend_from_slice(&event);
            }
            let count = u32::try_from(plan.events.len()).unwrap_or(0);
            if memory
                .write(&mut caller, out_ptr as u32 as usize, &out)
                .is_err()
                || memory
                    .write(
                        &mut caller,
                        nevents_ptr as u32 as usize,
                        &count.to_le_bytes(),
                    )
                    .is_err()
            {
                return Ok(EFAULT);
            }
            Ok(0)
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock(userdata: u64, clock_id: u32, timeout: u64, flags: u16) -> [u8; 48] {
        let mut s = [0u8; 48];
        s[0..8].copy_from_slice(&userdata.to_le_bytes());
        s[8] = TAG_CLOCK;
        s[16..20].copy_from_slice(&clock_id.to_le_bytes());
        s[24..32].copy_from_slice(&timeout.to_le_bytes());
        s[40..42].copy_from_slice(&flags.to_le_bytes());
        s
    }

    #[test]
    fn relative_and_absolute_clocks() {
        let mut raw = Vec::new();
        raw.extend_from_slice(&clock(1, CLOCK_MONOTONIC, 5_000, 0));
        raw.extend_from_slice(&clock(2, CLOCK_MONOTONIC, 10_000, SUBCLOCK_ABSTIME));
        let subs = decode(&raw, 0, 7_000).expect("decodes");
        assert_eq!(
            subs,
            vec![
                Sub::Clock {
                    userdata: 1,
                    wait_ns: 5_000
                },
                Sub::Clock {
                    userdata: 2,
                    wait_ns: 3_000
                },
            ]
        );
        let p = plan(&subs);
        assert_eq!(p.wait_ns, 3_000);
        assert_eq!(p.events, vec![(2, TAG_CLOCK)]);
    }

    #[test]
    fn descriptors_are_ready_at_once_and_bad_clock_is_einval() {
        let mut fd = [0u8; 48];
        fd[0] = 9;
        fd[8] = TAG_FD_READ;
        let mut raw = fd.to_vec();
        raw.extend_from_slice(&clock(1, CLOCK_REALTIME, 1_000_000_000, 0));
        let p = plan(&decode(&raw, 0, 0).expect("decodes"));
        assert_eq!(p.wait_ns, 0);
        assert_eq!(p.events, vec![(9, TAG_FD_READ)]);
        assert_eq!(decode(&clock(1, 7, 0, 0), 0, 0), Err(EINVAL));
    }
}
