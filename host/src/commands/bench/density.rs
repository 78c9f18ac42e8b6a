//! The `density` scenario: how many idle Python contexts, idle JavaScript contexts and idle
//! containers fit on the bench's server within a memory budget, and what each one costs.
//!
//! Each kind of item is created one after another, each in a fresh sandbox, until the memory
//! the server (and, for containers, their cgroups) grew by since the first passes the budget,
//! a cap on the count is reached, or a creation fails. Untimed: the outcomes are a count and
//! MiB per item, not milliseconds.

use std::time::Duration;

use indicatif::ProgressBar;

use super::hybox;
use super::machine;
use super::report::{Family, Kind, Outcome};
use crate::client::Client;

/// The scenario's name.
pub(super) const DENSITY: &str = "density";

/// `--density-cap`'s default: at most this many items of each kind.
pub(super) const DEFAULT_CAP: usize = 500;

/// Parses a `--memory-budget`: a number with an optional unit, `512MiB`, `2GiB`, `1.5G`,
/// `800MB`. `K`, `M`, `G`, `T` (alone or with `iB`) are powers of 1024; `KB`, `MB`, `GB`, `TB`
/// powers of 1000; no unit (or `B`) is bytes. At least 1 MiB.
///
/// # Errors
/// Text that is not such a size.
pub(super) fn parse_budget(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a size like 512MiB or 2GiB"))?;
    let factor: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024.0 * 1024.0,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {s:?} (B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)"
            ));
        }
    };
    let bytes = (value * factor).round();
    if !bytes.is_finite() || bytes < (1u64 << 20) as f64 || bytes > u64::MAX as f64 {
        return Err(format!("{s:?}: the budget must be at least 1 MiB"));
    }
    Ok(bytes as u64)
}

/// What the scenario is asked for.
#[derive(Debug, Clone, Copy)]
pub(super) struct Options {
    /// The memory the items may take, in bytes.
    pub(super) budget: u64,
    /// The most items of one kind.
    pub(super) cap: usize,
}

/// A kind of idle item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Item {
    /// A Python context in its own sandbox.
    Python,
    /// A JavaScript context in its own sandbox.
    JavaScript,
    /// A container (`exec` of `/bin/true` with `runtime: "container"`) in its own sandbox.
    Container,
}

impl Item {
    const ALL: [Self; 3] = [Self::Python, Self::JavaScript, Self::Container];

    /// The case with the MiB per item.
    const fn memory_case(self) -> &'static str {
        match self {
            Self::Python => "python-context-memory",
            Self::JavaScript => "js-context-memory",
            Self::Container => "container-memory",
        }
    }

    /// The case with how many fit.
    const fn count_case(self) -> &'static str {
        match self {
            Self::Python => "python-context-density",
            Self::JavaScript => "js-context-density",
            Self::Container => "container-density",
        }
    }

    /// The count case's unit.
    const fn unit(self) -> &'static str {
        match self {
            Self::Container => "containers",
            Self::Python | Self::JavaScript => "contexts",
        }
    }

    /// What one item is, for descriptions.
    const fn what(self) -> &'static str {
        match self {
            Self::Python => "idle Python context (POST .../contexts {\"language\": \"python\"})",
            Self::JavaScript => {
                "idle JavaScript context (POST .../contexts {\"language\": \"javascript\"})"
            }
            Self::Container => {
                "idle container (POST .../exec {\"command\": \"/bin/true\", \"runtime\": \
                 \"container\"}, exitCode 0 and route \"container\" checked; the container \
                 stays up afterwards)"
            }
        }
    }

    fn sandbox(self, i: usize) -> String {
        let tag = match self {
            Self::Python => "py",
            Self::JavaScript => "js",
            Self::Container => "ctr",
        };
        format!("bench-density-{tag}-{i}")
    }

    /// Creates the item in the new sandbox `id`.
    async fn create(self, client: &Client, id: &str) -> anyhow::Result<()> {
        hybox::create_sandbox(client, id).await?;
        match self {
            Self::Python => hybox::create_context(client, id, "python").await.map(drop),
            Self::JavaScript => hybox::create_context(client, id, "javascript")
                .await
                .map(drop),
            Self::Container => hybox::container_true(client, id).await.map(drop),
        }
    }
}

/// The case names this scenario reports, for the uniqueness test.
#[cfg(test)]
pub(super) fn case_names() -> impl Iterator<Item = &'static str> {
    Item::ALL
        .into_iter()
        .flat_map(|i| [i.memory_case(), i.count_case()])
}

/// How the server's memory is read: PSS when the kernel offers `smaps_rollup` (shared pages
/// split among the processes mapping them, so a page mapped twice counts once), else VmRSS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Metric {
    Pss,
    Rss,
}

impl Metric {
    fn detect(pid: u32) -> Self {
        if machine::pss_kib(pid).is_ok() {
            Self::Pss
        } else {
            Self::Rss
        }
    }

    fn read(self, pid: u32) -> anyhow::Result<u64> {
        match self {
            Self::Pss => machine::pss_kib(pid),
            Self::Rss => machine::rss_kib(pid),
        }
    }

    const fn describe(self) -> &'static str {
        match self {
            Self::Pss => "PSS (Pss of /proc/PID/smaps_rollup)",
            Self::Rss => "VmRSS (/proc/PID/status; this kernel has no smaps_rollup)",
        }
    }
}

/// The memory a container's cgroup uses, in bytes: cgroup v1's
/// `/sys/fs/cgroup/memory/hybox/<id>/memory.usage_in_bytes`, or v2's
/// `/sys/fs/cgroup/hybox/<id>/memory.current` (`/sys/fs/cgroup/unified/...` on a hybrid host);
/// `None` when none of them exists.
fn cgroup_bytes(id: &str) -> Option<u64> {
    [
        format!("/sys/fs/cgroup/memory/hybox/{id}/memory.usage_in_bytes"),
        format!("/sys/fs/cgroup/hybox/{id}/memory.current"),
        format!("/sys/fs/cgroup/unified/hybox/{id}/memory.current"),
    ]
    .iter()
    .find_map(|p| std::fs::read_to_string(p).ok()?.trim().parse().ok())
}

/// The server's memory plus the cgroups of `ids` (KiB), and how many cgroups were found.
fn reading(metric: Metric, pid: u32, ids: &[String]) -> anyhow::Result<(u64, usize)> {
    let server = metric.read(pid)?;
    let groups: Vec<u64> = ids.iter().filter_map(|id| cgroup_bytes(id)).collect();
    Ok((server + groups.iter().sum::<u64>() / 1024, groups.len()))
}

/// A reading once it stops moving: work a creation starts in the background (a spare context
/// replacing the one taken, the allocator giving pages back) belongs to the item that caused
/// it. Polls every 50 ms until three readings agree within 256 KiB, at most 5 s.
async fn settled(metric: Metric, pid: u32, ids: &[String]) -> anyhow::Result<(u64, usize)> {
    let started = std::time::Instant::now();
    let mut last = reading(metric, pid, ids)?;
    let mut steady = 0;
    while steady < 2 && started.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = reading(metric, pid, ids)?;
        steady = if now.0.abs_diff(last.0) <= 256 {
            steady + 1
        } else {
            0
        };
        last = now;
    }
    Ok(last)
}

/// One kind's fill: the growth per item (MiB) of those that fit, and why it stopped.
#[derive(Debug)]
struct Fill {
    samples: Vec<f64>,
    stop: String,
    cgroups: usize,
}

/// Why a kind was skipped rather than measured.
#[derive(Debug)]
enum Stop {
    /// The server cannot make this kind here (its first creation answered so): the reason.
    Unavailable(String),
    /// Something failed: the bench's own setup, or the first item.
    Failed(anyhow::Error),
}

async fn fill(
    item: Item,
    client: &Client,
    pid: u32,
    o: Options,
    bar: &ProgressBar,
    created: &mut Vec<String>,
) -> Result<Fill, Stop> {
    let metric = Metric::detect(pid);
    super::cases::quiesce(pid).await;
    let (baseline, _) = settled(metric, pid, &[]).await.map_err(Stop::Failed)?;
    let budget_kib = o.budget / 1024;
    let mut prev = baseline;
    let mut samples = Vec::new();
    let mut cgroups = 0;
    let stop = loop {
        let n = samples.len();
        if n >= o.cap {
            break format!("stopped at the cap of {} (--density-cap)", o.cap);
        }
        bar.set_message(format!("{} ({n} so far)", item.count_case()));
        let id = item.sandbox(n);
        created.push(id.clone());
        if let Err(e) = item.create(client, &id).await {
            if n == 0 {
                return Err(match hybox::unavailable(&e) {
                    Some(why) => Stop::Unavailable(why),
                    None => Stop::Failed(e),
                });
            }
            break format!(
                "stopped when creating item {} failed: {}",
                n + 1,
                super::super::describe(&e)
            );
        }
        let (now, groups) = settled(metric, pid, created).await.map_err(Stop::Failed)?;
        cgroups = groups;
        let growth = now.saturating_sub(baseline);
        if growth > budget_kib {
            break format!(
                "stopped when item {} took the growth to {:.1} MiB, past the budget",
                n + 1,
                growth as f64 / 1024.0
            );
        }
        // Memory can shrink (the allocator returns pages): a negative step is a real sample.
        samples.push((now as f64 - prev as f64) / 1024.0);
        prev = now;
    };
    Ok(Fill {
        samples,
        stop: format!("{stop}; memory read as {}", metric.describe()),
        cgroups,
    })
}

/// What the scenario produced.
#[derive(Debug, Default)]
pub(super) struct Done {
    /// Two outcomes per kind: MiB per item, and the count.
    pub(super) outcomes: Vec<Outcome>,
    /// Failures and stop reasons a reader must know.
    pub(super) warnings: Vec<String>,
    /// Whether a hybox part failed (not merely skipped).
    pub(super) failed: bool,
}

fn outcome(name: &'static str, unit: &'static str, description: &'static str) -> Outcome {
    Outcome {
        name,
        kind: Kind::Hybox,
        family: Family::Alone,
        scenario: DENSITY,
        description,
        unit,
        warmup: 0,
        samples: Vec::new(),
        skipped: None,
    }
}

/// Runs the scenario on the bench's warm server (`pid`), kind after kind, deleting each kind's
/// sandboxes before the next.
pub(super) async fn run(client: &Client, pid: u32, o: Options, bar: &ProgressBar) -> Done {
    let mut done = Done::default();
    let budget_mib = o.budget as f64 / (1024.0 * 1024.0);
    for item in Item::ALL {
        let mut created = Vec::new();
        let result = fill(item, client, pid, o, bar, &mut created).await;
        bar.set_message(format!(
            "{}: deleting {} sandboxes",
            item.count_case(),
            created.len()
        ));
        for id in &created {
            // Best effort: a sandbox that failed to be created may not exist.
            let _ = hybox::delete_sandbox(client, id).await;
        }
        let memory_name = item.memory_case();
        let count_name = item.count_case();
        match result {
            Ok(f) => {
                let count = f.samples.len();
                let total: f64 = f.samples.iter().sum();
                let cgroup_note = match (item, f.cgroups) {
                    (Item::Container, 0) => {
                        " No container cgroup was found (hybox/<sandbox id> under \
                         /sys/fs/cgroup/memory or /sys/fs/cgroup): the figure is the \
                         server's alone."
                    }
                    (Item::Container, _) => {
                        " Plus the containers' cgroups (memory.usage_in_bytes of \
                         /sys/fs/cgroup/memory/hybox/<id>, or memory.current of \
                         /sys/fs/cgroup/hybox/<id>), summed."
                    }
                    _ => "",
                };
                let head = format!(
                    "On the bench's warm server, one {} after another, each in a new \
                     sandbox, until the growth passes the budget of {budget_mib:.0} MiB \
                     (--memory-budget) or {} items (--density-cap) or a creation fails; \
                     each reading taken once the memory has settled (three readings 50 ms \
                     apart within 256 KiB, at most 5 s).{cgroup_note} This run: {count} fit, \
                     {total:.1} MiB in all; {}.",
                    item.what(),
                    o.cap,
                    f.stop
                );
                let mut memory = outcome(
                    memory_name,
                    "MiB",
                    super::fs::leak(format!(
                        "Memory per item: each sample is the growth across one creation, so \
                         the median is the typical item and the mean the total over the \
                         count. {head}"
                    )),
                );
                let mut counted = outcome(
                    count_name,
                    item.unit(),
                    super::fs::leak(format!("How many fit (one sample). {head}")),
                );
                if count == 0 {
                    let why = format!("not one item fit: {}", f.stop);
                    memory.skipped = Some(why.clone());
                    counted.skipped = Some(why);
                } else {
                    memory.samples = f.samples;
                    counted.samples = vec![count as f64];
                }
                eprintln!(
                    "hybox bench: {count_name}: {count} {} ({total:.1} MiB); {}",
                    item.unit(),
                    f.stop
                );
                done.outcomes.push(memory);
                done.outcomes.push(counted);
            }
            Err(stop) => {
                let why = match stop {
                    Stop::Unavailable(why) => format!("the server cannot make one: {why}"),
                    Stop::Failed(e) => {
                        done.failed = true;
                        let why = format!("failed: {}", super::super::describe(&e));
                        done.warnings.push(format!("{count_name}: {why}"));
                        why
                    }
                };
                for (name, unit) in [(memory_name, "MiB"), (count_name, item.unit())] {
                    done.outcomes.push(Outcome {
                        skipped: Some(why.clone()),
                        ..outcome(name, unit, item.what())
                    });
                }
            }
        }
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_parse_with_units() {
        assert_eq!(parse_budget("1GiB"), Ok(1 << 30));
        assert_eq!(parse_budget("256MiB"), Ok(256 << 20));
        assert_eq!(parse_budget("2g"), Ok(2 << 30));
        assert_eq!(parse_budget("1.5 GiB"), Ok(3 << 29));
        assert_eq!(parse_budget("800MB"), Ok(800_000_000));
        assert_eq!(parse_budget("1048576"), Ok(1 << 20));
        assert!(parse_budget("12").is_err(), "below 1 MiB");
        assert!(parse_budget("lots").is_err());
        assert!(parse_budget("2 parsecs").is_err());
        assert!(parse_budget("").is_err());
    }

    #[test]
    fn every_item_has_its_own_cases() {
        let names: Vec<&str> = case_names().collect();
        assert_eq!(names.len(), 6);
        assert!(names.contains(&"python-context-memory"));
        assert_eq!(Item::Container.sandbox(3), "bench-density-ctr-3");
    }
}
