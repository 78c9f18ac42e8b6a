//! What the numbers were measured on: cores, memory, kernel, CPU model.

use serde::{Deserialize, Serialize};

/// The machine a run was measured on.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Machine {
    /// Cores this process may use (`nproc`).
    pub cores: usize,
    /// `MemTotal` of /proc/meminfo, in KiB.
    #[serde(rename = "memTotalKiB")]
    pub mem_total_kib: Option<u64>,
    /// Kernel release (`uname -r`).
    pub kernel: Option<String>,
    /// The first `model name` of /proc/cpuinfo.
    pub cpu_model: Option<String>,
    /// /proc/loadavg's 1, 5 and 15 minute load averages when the bench started: other work
    /// on the cores makes every number noisier.
    pub load_average: Option<[f64; 3]>,
    /// `linux`, `macos`, ...
    pub os: String,
    /// `x86_64`, `aarch64`, ...
    pub arch: String,
}

impl Machine {
    /// Reads the machine's facts; a fact that cannot be read is `None`, never an error.
    #[must_use]
    pub fn detect() -> Self {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        Self {
            cores: std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
            mem_total_kib: kib_field(&meminfo, "MemTotal"),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .ok()
                .map(|s| s.trim().to_owned()),
            cpu_model: colon_field(&cpuinfo, "model name"),
            load_average: std::fs::read_to_string("/proc/loadavg")
                .ok()
                .and_then(|s| parse_loadavg(&s)),
            os: std::env::consts::OS.to_owned(),
            arch: std::env::consts::ARCH.to_owned(),
        }
    }

    /// One line for the terminal: `2 cores, 23.5 GiB, AMD EPYC ..., Linux 6.1.0`.
    #[must_use]
    pub fn line(&self) -> String {
        let mem = self.mem_total_kib.map_or_else(
            || "memory unknown".to_owned(),
            |k| format!("{:.1} GiB", k as f64 / (1024.0 * 1024.0)),
        );
        let load = self.load_average.map_or_else(String::new, |[one, ..]| {
            format!("; load average {one:.2} at start")
        });
        format!(
            "{} cores, {mem}, {}, {} {} ({}){load}",
            self.cores,
            self.cpu_model.as_deref().unwrap_or("CPU unknown"),
            self.os,
            self.kernel.as_deref().unwrap_or("kernel unknown"),
            self.arch,
        )
    }
}

/// The value after `name:` on the first line that starts with `name`.
fn colon_field(text: &str, name: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == name).then(|| v.trim().to_owned())
    })
}

/// A `/proc/meminfo`-style `Name:   12345 kB` field, in KiB.
fn kib_field(text: &str, name: &str) -> Option<u64> {
    colon_field(text, name)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `0.52 0.58 0.59 1/123 4567` → the three averages.
fn parse_loadavg(text: &str) -> Option<[f64; 3]> {
    let mut it = text.split_whitespace().map(str::parse::<f64>);
    Some([it.next()?.ok()?, it.next()?.ok()?, it.next()?.ok()?])
}

/// The resident set of a process (`VmRSS` of /proc/PID/status), in KiB.
///
/// # Errors
/// When the process is gone or the field is missing.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    kib_field(&status, "VmRSS").ok_or_else(|| anyhow::anyhow!("no VmRSS in /proc/{pid}/status"))
}

/// The proportional set of a process (`Pss` of /proc/PID/smaps_rollup: each shared page
/// divided among the processes mapping it), in KiB.
///
/// # Errors
/// When the process is gone, or the kernel has no smaps_rollup (before 4.14).
pub fn pss_kib(pid: u32) -> anyhow::Result<u64> {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))?;
    kib_field(&rollup, "Pss").ok_or_else(|| anyhow::anyhow!("no Pss in /proc/{pid}/smaps_rollup"))
}

/// CPU time a process has used (user + system, `/proc/PID/stat` fields 14 and 15), in clock
/// ticks.
///
/// # Errors
/// When the process is gone or the line does not parse.
pub fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_cpu_ticks(&stat).ok_or_else(|| anyhow::anyhow!("unexpected /proc/{pid}/stat: {stat}"))
}

/// The command name (field 2) may hold spaces and parentheses: count fields after its last `)`.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_fields() {
        let meminfo = "MemTotal:       24683656 kB\nMemFree:        24075912 kB\n";
        assert_eq!(kib_field(meminfo, "MemTotal"), Some(24_683_656));
        assert_eq!(kib_field(meminfo, "Swap"), None);
        let cpuinfo = "processor\t: 0\nmodel name\t: Some CPU @ 2.0GHz\nmodel name\t: Other\n";
        assert_eq!(
            colon_field(cpuinfo, "model name").as_deref(),
            Some("Some CPU @ 2.0GHz")
        );
    }

    #[test]
    fn load_averages() {
        assert_eq!(
            parse_loadavg("0.52 1.58 2.00 1/123 4567\n"),
            Some([0.52, 1.58, 2.0])
        );
        assert_eq!(parse_loadavg("garbage"), None);
    }

    #[test]
    fn cpu_ticks_after_the_command_name() {
        let stat = "42 (a) b) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 5 1000 10";
        assert_eq!(parse_cpu_ticks(stat), Some(10));
        assert_eq!(parse_cpu_ticks("garbage"), None);
        assert!(cpu_ticks(std::process::id()).is_ok());
    }

    #[test]
    fn own_rss_is_readable() {
        assert!(rss_kib(std::process::id()).expect("own status") > 0);
        if std::path::Path::new("/proc/self/smaps_rollup").exists() {
            assert!(pss_kib(std::process::id()).expect("own smaps_rollup") > 0);
        }
    }
}
