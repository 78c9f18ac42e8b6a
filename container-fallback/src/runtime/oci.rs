//! The bundle's `config.json` (OCI runtime spec 1.0), written here rather than by `runc spec`
//! so every field is ours: runc's defaults for masking and devices, Docker's default
//! capabilities, our mounts, namespaces and limits.

use std::path::Path;

use serde_json::{Value, json};

use super::ContainerSpec;

/// Where the agent binary and its state dir appear inside.
pub(crate) const AGENT_PATH: &str = "/.hybox/agent";
/// The agent's state dir inside.
pub(crate) const STATE_PATH: &str = "/.hybox/state";

/// Docker's default capability set: enough for package managers and servers, none of the
/// administrative ones (SYS_ADMIN, NET_ADMIN, SYS_PTRACE, SYS_MODULE...).
const CAPABILITIES: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Hidden from the container (as in `runc spec`): kernel memory, keys, timers, firmware.
const MASKED_PATHS: [&str; 10] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
];

/// Read-only inside (as in `runc spec`): the kernel's knobs.
const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The CFS period the CPU quota is a share of.
const CPU_PERIOD_US: u64 = 100_000;

/// What a container's config takes from the host.
#[derive(Debug)]
pub(crate) struct Host<'a> {
    /// The mounted root filesystem (overlay).
    pub(crate) rootfs: &'a Path,
    /// The agent state dir.
    pub(crate) state: &'a Path,
    /// The agent binary.
    pub(crate) agent: &'a Path,
    /// The host's resolver config, bound in when the container has network.
    pub(crate) resolv_conf: &'a Path,
    /// The open-files limit inside: [`NOFILE`] unless the host cannot grant that much.
    pub(crate) nofile: u64,
    /// Set for a rootless container.
    pub(crate) rootless: Option<UserNs<'a>>,
}

/// A rootless container's user namespace and where its limits come from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct UserNs<'a> {
    /// The host user root inside maps to (the only one mapped).
    pub(crate) uid: u32,
    /// Its group.
    pub(crate) gid: u32,
    /// The delegated cgroup the container goes under; `None`: rlimits instead of cgroups.
    pub(crate) cgroup_parent: Option<&'a str>,
}

/// The open-files limit containers get where the host allows it.
pub(crate) const NOFILE: u64 = 65536;

/// The `config.json` of `spec`'s container.
pub(crate) fn config(spec: &ContainerSpec, paths: &Host<'_>) -> Value {
    let caps: Vec<&str> = CAPABILITIES.to_vec();
    let mut config = json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": { "uid": 0, "gid": 0 },
            "args": [AGENT_PATH, "--listen-fd", "3", "--state", STATE_PATH],
            "env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "HOME=/root",
            ],
            "cwd": "/",
            "capabilities": {
                "bounding": caps,
                "effective": caps,
                "permitted": caps,
            },
            "rlimits": [{ "type": "RLIMIT_NOFILE", "hard": paths.nofile, "soft": paths.nofile }],
            "noNewPrivileges": false,
        },
        "root": { "path": paths.rootfs, "readonly": false },
        "hostname": spec.hostname,
        "mounts": mounts(spec, paths),
        "linux": {
            "namespaces": [
                { "type": "pid" },
                { "type": "ipc" },
                { "type": "uts" },
                { "type": "mount" },
                { "type": "network" },
            ],
            "cgroupsPath": format!("/hybox/{}", spec.id),
            "resources": resources(spec),
            "maskedPaths": MASKED_PATHS,
            "readonlyPaths": READONLY_PATHS,
        },
    });
    if let Some(user) = paths.rootless {
        rootless(&mut config, spec, &user);
    }
    config
}

/// A user namespace mapping root inside to `user` (one id: every other id is unmapped), and
/// the container's limits in the delegated cgroup or, without one, as rlimits.
fn rootless(config: &mut Value, spec: &ContainerSpec, user: &UserNs<'_>) {
    let linux = &mut config["linux"];
    if let Some(ns) = linux["namespaces"].as_array_mut() {
        ns.insert(0, json!({ "type": "user" }));
    }
    linux["uidMappings"] = json!([{ "containerID": 0, "hostID": user.uid, "size": 1 }]);
    linux["gidMappings"] = json!([{ "containerID": 0, "hostID": user.gid, "size": 1 }]);
    match user.cgroup_parent {
        Some(parent) => {
            linux["cgroupsPath"] = json!(format!("/{parent}/{}", spec.id));
            // A user namespace cannot use device cgroup rules (nor make device nodes).
            if let Some(r) = linux["resources"].as_object_mut() {
                r.remove("devices");
            }
        }
        None => {
            if let Some(l) = linux.as_object_mut() {
                l.remove("cgroupsPath");
                l.remove("resources");
            }
            let limits = &spec.limits;
            let rlimits = &mut config["process"]["rlimits"];
            if let Some(list) = rlimits.as_array_mut() {
                if limits.pids > 0 {
                    list.push(
                        json!({ "type": "RLIMIT_NPROC", "hard": limits.pids, "soft": limits.pids }),
                    );
                }
                if limits.memory_bytes > 0 {
                    list.push(json!({ "type": "RLIMIT_AS", "hard": limits.memory_bytes, "soft": limits.memory_bytes }));
                }
            }
        }
    }
    // devpts cannot be given gid 5 (tty): it is not mapped.
    if let Some(mounts) = config["mounts"].as_array_mut() {
        for m in mounts.iter_mut().filter(|m| m["type"] == "devpts") {
            if let Some(opts) = m["options"].as_array_mut() {
                opts.retain(|o| o != "gid=5");
            }
        }
    }
}

fn mounts(spec: &ContainerSpec, paths: &Host<'_>) -> Vec<Value> {
    let mut mounts = vec![
        json!({ "destination": "/proc", "type": "proc", "source": "proc" }),
        json!({
            "destination": "/dev", "type": "tmpfs", "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        }),
        json!({
            "destination": "/dev/pts", "type": "devpts", "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        }),
        json!({
            "destination": "/dev/shm", "type": "tmpfs", "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        }),
        json!({
            "destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
            "options": ["nosuid", "noexec", "nodev"],
        }),
        json!({
            "destination": "/sys", "type": "sysfs", "source": "sysfs",
            "options": ["nosuid", "noexec", "nodev", "ro"],
        }),
        json!({
            "destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
            "options": ["nosuid", "noexec", "nodev", "relatime", "ro"],
        }),
        bind("/workspace", &spec.workspace, false, true),
        bind("/tmp", &spec.tmp, false, true),
        bind(AGENT_PATH, paths.agent, true, false),
        bind(STATE_PATH, paths.state, false, true),
    ];
    mounts.extend(
        spec.mounts
            .iter()
            .map(|m| bind(&m.destination, &m.source, m.readonly, true)),
    );
    if spec.network {
        mounts.push(bind("/etc/resolv.conf", paths.resolv_conf, true, false));
    }
    mounts
}

/// A bind mount; `recursive` takes the source's submounts along. Never setuid or device files
/// from the host side.
fn bind(destination: &str, source: &Path, readonly: bool, recursive: bool) -> Value {
    let options = [
        if recursive { "rbind" } else { "bind" },
        if readonly { "ro" } else { "rw" },
        "nosuid",
        "nodev",
    ];
    json!({ "destination": destination, "type": "bind", "source": source, "options": options })
}

fn resources(spec: &ContainerSpec) -> Value {
    let limits = &spec.limits;
    let mut resources = json!({
        "devices": [{ "allow": false, "access": "rwm" }],
    });
    if limits.memory_bytes > 0 {
        resources["memory"] = json!({ "limit": limits.memory_bytes, "swap": limits.memory_bytes });
    }
    if limits.pids > 0 {
        resources["pids"] = json!({ "limit": limits.pids });
    }
    if limits.cpus > 0.0 {
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "cpus is positive and small; a fraction of a microsecond does not matter"
        )]
        let quota = (limits.cpus * CPU_PERIOD_US as f64).round() as u64;
        resources["cpu"] = json!({ "period": CPU_PERIOD_US, "quota": quota.max(1000) });
    }
    resources
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::runtime::{BindMount, Limits};

    fn spec(network: bool) -> ContainerSpec {
        ContainerSpec {
            id: "abc".into(),
            image: PathBuf::from("/img.squashfs"),
            workspace: PathBuf::from("/ws"),
            tmp: PathBuf::from("/t"),
            mounts: vec![BindMount {
                source: PathBuf::from("/vol"),
                destination: "/data".into(),
                readonly: true,
            }],
            limits: Limits {
                memory_bytes: 256 << 20,
                pids: 64,
                cpus: 1.5,
            },
            network,
            hostname: "box".into(),
        }
    }

    fn config_of(network: bool) -> Value {
        config(
            &spec(network),
            &Host {
                rootfs: Path::new("/r/abc/rootfs"),
                state: Path::new("/r/abc/state"),
                agent: Path::new("/usr/lib/hybox/agent"),
                resolv_conf: Path::new("/etc/resolv.conf"),
                nofile: NOFILE,
                rootless: None,
            },
        )
    }

    fn rootless_config(cgroup_parent: Option<&str>) -> Value {
        config(
            &spec(false),
            &Host {
                rootfs: Path::new("/r/.rootfs/abc"),
                state: Path::new("/r/abc/state"),
                agent: Path::new("/usr/lib/hybox/agent"),
                resolv_conf: Path::new("/etc/resolv.conf"),
                nofile: NOFILE,
                rootless: Some(UserNs {
                    uid: 1001,
                    gid: 1002,
                    cgroup_parent,
                }),
            },
        )
    }

    #[test]
    fn rootless_maps_root_to_the_user_and_limits_by_delegated_cgroup() {
        let c = rootless_config(Some("hybox-1001"));
        assert_eq!(c["linux"]["namespaces"][0]["type"], "user");
        assert_eq!(c["linux"]["uidMappings"][0]["hostID"], 1001);
        assert_eq!(c["linux"]["uidMappings"][0]["size"], 1);
        assert_eq!(c["linux"]["gidMappings"][0]["hostID"], 1002);
        assert_eq!(c["linux"]["cgroupsPath"], "/hybox-1001/abc");
        assert_eq!(c["linux"]["resources"]["pids"]["limit"], 64);
        assert!(c["linux"]["resources"].get("devices").is_none());
        let devpts = c["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["type"] == "devpts")
            .unwrap();
        assert!(
            !devpts["options"]
                .as_array()
                .unwrap()
                .iter()
                .any(|o| o == "gid=5")
        );
        assert_eq!(c["process"]["rlimits"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn rootless_without_delegation_limits_by_rlimits() {
        let c = rootless_config(None);
        assert!(c["linux"].get("cgroupsPath").is_none());
        assert!(c["linux"].get("resources").is_none());
        let rl = c["process"]["rlimits"].as_array().unwrap();
        let get = |t: &str| rl.iter().find(|r| r["type"] == t).unwrap()["hard"].clone();
        assert_eq!(get("RLIMIT_NPROC"), 64);
        assert_eq!(get("RLIMIT_AS"), 256u64 << 20);
    }

    fn destinations(config: &Value) -> Vec<String> {
        config["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["destination"].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn process_runs_the_agent_with_docker_capabilities() {
        let c = config_of(false);
        assert_eq!(c["process"]["args"][0], AGENT_PATH);
        assert_eq!(c["process"]["args"][2], "3");
        let bounding = c["process"]["capabilities"]["bounding"].as_array().unwrap();
        assert_eq!(bounding.len(), 14);
        assert!(!bounding.iter().any(|c| c == "CAP_SYS_ADMIN"));
        assert!(c["process"]["capabilities"].get("inheritable").is_none());
        assert!(c["process"]["capabilities"].get("ambient").is_none());
        assert_eq!(c["root"]["path"], "/r/abc/rootfs");
        assert_eq!(c["hostname"], "box");
    }

    #[test]
    fn limits_and_cgroup_path() {
        let c = config_of(false);
        let r = &c["linux"]["resources"];
        assert_eq!(r["memory"]["limit"], 256u64 << 20);
        assert_eq!(r["memory"]["swap"], 256u64 << 20);
        assert_eq!(r["pids"]["limit"], 64);
        assert_eq!(r["cpu"]["quota"], 150_000);
        assert_eq!(r["cpu"]["period"], 100_000);
        assert_eq!(c["linux"]["cgroupsPath"], "/hybox/abc");
        let masked = c["linux"]["maskedPaths"].as_array().unwrap();
        assert!(masked.iter().any(|p| p == "/proc/kcore"));
        let ns: Vec<&str> = c["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert_eq!(ns, ["pid", "ipc", "uts", "mount", "network"]);
    }

    #[test]
    fn mounts_and_resolv_conf_only_with_network() {
        let off = destinations(&config_of(false));
        for d in [
            "/proc",
            "/dev",
            "/sys/fs/cgroup",
            "/workspace",
            "/tmp",
            AGENT_PATH,
            STATE_PATH,
            "/data",
        ] {
            assert!(off.iter().any(|m| m == d), "{d} missing");
        }
        assert!(!off.iter().any(|m| m == "/etc/resolv.conf"));
        let on = destinations(&config_of(true));
        assert!(on.iter().any(|m| m == "/etc/resolv.conf"));
        let c = config_of(false);
        let data = c["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/data")
            .unwrap();
        assert!(
            data["options"]
                .as_array()
                .unwrap()
                .iter()
                .any(|o| o == "ro")
        );
    }
}
