//! Egress for containers that ask for it: a veth pair per container (host side
//! `hbx<8 hex>`, container side `eth0`), a /30 out of `10.89.0.0/16` (host `.1`, container
//! `.2`), a default route via the host, NAT to the outside and forwarding rules that keep
//! containers apart. Without it a container has only loopback in its own network namespace.
//!
//! Driven by `ip` (iproute2), `nsenter` and `iptables`.

use std::collections::HashSet;
use std::fs;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;

use sha2::{Digest, Sha256};

use super::command;
use super::{Result, RuntimeError};

/// `<root>/<id>/net`: the container's subnet, kept so it is stable across restarts.
pub(crate) const NET_FILE: &str = "net";
/// `<root>/<id>/net.up`: present while the pair's rules are installed.
const UP_FILE: &str = "net.up";
/// 10.89.0.0/16.
const POOL_BASE: u32 = u32::from_be_bytes([10, 89, 0, 0]);
/// /30s in the pool.
const POOL_SIZE: u32 = 1 << 14;

/// One container's /30.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Subnet {
    index: u32,
}

impl Subnet {
    fn base(self) -> u32 {
        POOL_BASE + self.index * 4
    }

    /// The host side's address (`.1`).
    pub(crate) fn host(self) -> Ipv4Addr {
        Ipv4Addr::from(self.base() + 1)
    }

    /// The container's address (`.2`).
    pub(crate) fn guest(self) -> Ipv4Addr {
        Ipv4Addr::from(self.base() + 2)
    }

    /// `10.89.x.y/30`.
    pub(crate) fn cidr(self) -> String {
        format!("{}/30", Ipv4Addr::from(self.base()))
    }

    fn parse(text: &str) -> Option<Self> {
        let addr: Ipv4Addr = text.trim().strip_suffix("/30")?.parse().ok()?;
        let offset = u32::from(addr).checked_sub(POOL_BASE)?;
        (offset % 4 == 0 && offset / 4 < POOL_SIZE).then_some(Self { index: offset / 4 })
    }
}

/// The host-side interface name of `id` (15 bytes at most, as the kernel requires).
pub(crate) fn host_ifname(id: &str) -> String {
    format!("hbx{}", &id_hash(id)[..8])
}

fn peer_ifname(id: &str) -> String {
    format!("hbxp{}", &id_hash(id)[..8])
}

fn id_hash(id: &str) -> String {
    hex::encode(Sha256::digest(id.as_bytes()))
}

/// The subnet of `id`: the one it had, else the lowest one no other container under `root`
/// holds and no host route covers. Callers serialise calls.
pub(crate) fn allocate(root: &Path, id: &str) -> Result<Subnet> {
    let own = root.join(id).join(NET_FILE);
    if let Some(subnet) = fs::read_to_string(&own)
        .ok()
        .and_then(|t| Subnet::parse(&t))
    {
        return Ok(subnet);
    }
    let mut used: HashSet<u32> = HashSet::new();
    for entry in fs::read_dir(root)?.filter_map(|e| e.ok()) {
        if entry.file_name() == id {
            continue;
        }
        if let Some(subnet) = fs::read_to_string(entry.path().join(NET_FILE))
            .ok()
            .and_then(|t| Subnet::parse(&t))
        {
            used.insert(subnet.index);
        }
    }
    used.extend(routed_indices());
    let index = (0..POOL_SIZE)
        .find(|i| !used.contains(i))
        .ok_or_else(|| RuntimeError::Failed("network: no free /30 left in 10.89.0.0/16".into()))?;
    let subnet = Subnet { index };
    fs::write(&own, format!("{}\n", subnet.cidr()))?;
    Ok(subnet)
}

/// Indices of pool /30s a host route already covers (another root's containers, or anything
/// else on this host using 10.89/16).
fn routed_indices() -> HashSet<u32> {
    let mut used = HashSet::new();
    let Ok(text) = fs::read_to_string("/proc/net/route") else {
        return used;
    };
    for line in text.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(dest), Some(mask)) = (fields.get(1), fields.get(7)) else {
            continue;
        };
        // The kernel prints the raw network-order word as a native integer.
        let word = |h: &str| {
            u32::from_str_radix(h, 16)
                .ok()
                .map(|v| u32::from_be_bytes(v.to_ne_bytes()))
        };
        let (Some(dest), Some(mask)) = (word(dest), word(mask)) else {
            continue;
        };
        if mask == 0 {
            continue;
        }
        let (first, last) = (dest & mask, dest | !mask);
        let (pool_first, pool_last) = (POOL_BASE, POOL_BASE + POOL_SIZE * 4 - 1);
        if last < pool_first || first > pool_last {
            continue;
        }
        let lo = (first.max(pool_first) - POOL_BASE) / 4;
        let hi = (last.min(pool_last) - POOL_BASE) / 4;
        used.extend(lo..=hi);
    }
    used
}

/// Wires the container whose init is `pid` to `subnet` and installs its NAT and forwarding rules.
pub(crate) fn setup(dir: &Path, id: &str, pid: u32, subnet: Subnet) -> Result<()> {
    let host = host_ifname(id);
    let peer = peer_ifname(id);
    if Path::new("/sys/class/net").join(&host).exists() {
        let _ = command::run(command::tool("ip").args(["link", "del", &host]));
    }
    let host_side = format!(
        "link add {host} type veth peer name {peer} netns {pid}\n\
         addr add {}/30 dev {host}\n\
         link set {host} up\n",
        subnet.host()
    );
    command::run_with_input(
        command::tool("ip").args(["-batch", "-"]),
        host_side.as_bytes(),
    )?;
    let inside = format!(
        "link set lo up\n\
         link set {peer} name eth0\n\
         addr add {}/30 dev eth0\n\
         link set eth0 up\n\
         route add default via {}\n",
        subnet.guest(),
        subnet.host()
    );
    command::run_with_input(
        command::tool("nsenter")
            .arg(format!("--net=/proc/{pid}/ns/net"))
            .args(["ip", "-batch", "-"]),
        inside.as_bytes(),
    )?;
    let forward = "/proc/sys/net/ipv4/ip_forward";
    if fs::read_to_string(forward)
        .map(|v| v.trim() != "1")
        .unwrap_or(true)
    {
        fs::write(forward, "1")?;
    }
    fs::write(dir.join(UP_FILE), b"")?;
    for rule in rules(&host, subnet) {
        rule.ensure()?;
    }
    Ok(())
}

/// Removes the container's rules and host interface, if it has them. Best effort: everything is
/// tried; the first failure is reported.
pub(crate) fn teardown(dir: &Path, id: &str) -> Result<()> {
    let up = dir.join(UP_FILE);
    if !up.exists() {
        return Ok(());
    }
    let Some(subnet) = fs::read_to_string(dir.join(NET_FILE))
        .ok()
        .and_then(|t| Subnet::parse(&t))
    else {
        fs::remove_file(&up)?;
        return Ok(());
    };
    let host = host_ifname(id);
    // The pair goes with the container's network namespace; a leftover is removed here.
    if Path::new("/sys/class/net").join(&host).exists() {
        let _ = command::run(command::tool("ip").args(["link", "del", &host]));
    }
    let mut first_error = None;
    for rule in rules(&host, subnet) {
        if let Err(e) = rule.remove() {
            first_error.get_or_insert(e);
        }
    }
    fs::remove_file(&up)?;
    first_error.map_or(Ok(()), Err)
}

/// One iptables rule.
#[derive(Debug)]
struct Rule {
    table: &'static str,
    chain: &'static str,
    /// Insert at the top (ahead of a host's own DROP rules) instead of appending.
    insert: bool,
    spec: Vec<String>,
}

fn rules(host: &str, subnet: Subnet) -> Vec<Rule> {
    let spec = |s: &[&str]| s.iter().map(|&a| a.to_owned()).collect::<Vec<_>>();
    vec![
        Rule {
            table: "nat",
            chain: "POSTROUTING",
            insert: false,
            spec: spec(&["-s", &subnet.cidr(), "!", "-o", "hbx+", "-j", "MASQUERADE"]),
        },
        // Out to the world, not to other containers.
        Rule {
            table: "filter",
            chain: "FORWARD",
            insert: true,
            spec: spec(&["-i", host, "!", "-o", "hbx+", "-j", "ACCEPT"]),
        },
        Rule {
            table: "filter",
            chain: "FORWARD",
            insert: true,
            spec: spec(&["-i", host, "-o", "hbx+", "-j", "DROP"]),
        },
        // Not to the host itself: a service on the host's addresses is not the internet. (Rules
        // are inserted at the top one after another, so the reply rule ends up above the drop.)
        Rule {
            table: "filter",
            chain: "INPUT",
            insert: true,
            spec: spec(&["-i", host, "-j", "DROP"]),
        },
        Rule {
            table: "filter",
            chain: "INPUT",
            insert: true,
            spec: spec(&[
                "-i",
                host,
                "-m",
                "conntrack",
                "--ctstate",
                "RELATED,ESTABLISHED",
                "-j",
                "ACCEPT",
            ]),
        },
        // Replies only: nothing from outside opens a connection to the container.
        Rule {
            table: "filter",
            chain: "FORWARD",
            insert: true,
            spec: spec(&[
                "-o",
                host,
                "-m",
                "conntrack",
                "--ctstate",
                "RELATED,ESTABLISHED",
                "-j",
                "ACCEPT",
            ]),
        },
    ]
}

impl Rule {
    fn command(&self, action: &str) -> Command {
        let mut cmd = command::tool("iptables");
        cmd.args(["-w", "-t", self.table, action, self.chain])
            .args(&self.spec);
        cmd
    }

    fn present(&self) -> Result<bool> {
        Ok(command::run_unchecked(&mut self.command("-C"))?
            .status
            .success())
    }

    fn ensure(&self) -> Result<()> {
        if self.present()? {
            return Ok(());
        }
        let action = if self.insert { "-I" } else { "-A" };
        command::run(&mut self.command(action)).map(drop)
    }

    fn remove(&self) -> Result<()> {
        // Bounded: a rule added twice by a race goes too.
        for _ in 0..4 {
            if !self.present()? {
                return Ok(());
            }
            command::run(&mut self.command("-D"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn subnets_are_slash_30s_of_the_pool() {
        let s = Subnet { index: 65 };
        assert_eq!(s.cidr(), "10.89.1.4/30");
        assert_eq!(s.host(), Ipv4Addr::new(10, 89, 1, 5));
        assert_eq!(s.guest(), Ipv4Addr::new(10, 89, 1, 6));
        assert_eq!(Subnet::parse("10.89.1.4/30\n"), Some(s));
        assert_eq!(Subnet::parse("10.89.1.5/30"), None);
        assert_eq!(Subnet::parse("10.90.0.0/30"), None);
    }

    #[test]
    fn interface_names_fit_the_kernel_limit() {
        let name = host_ifname("a-very-long-sandbox-id-0123456789");
        assert_eq!(name.len(), 11);
        assert!(peer_ifname("x").len() <= 15);
    }

    #[test]
    fn allocation_skips_taken_subnets_and_is_stable() {
        let root = tempfile::tempdir().unwrap();
        for id in ["a", "b"] {
            fs::create_dir(root.path().join(id)).unwrap();
        }
        let a = allocate(root.path(), "a").unwrap();
        let b = allocate(root.path(), "b").unwrap();
        assert_ne!(a, b);
        assert_eq!(allocate(root.path(), "a").unwrap(), a);
    }
}
