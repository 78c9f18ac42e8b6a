//! The OCI runtime driver against the real runc (and crun where installed), real loop, squashfs
//! and overlay mounts, and a busybox root filesystem built here. Needs root; skipped (with a
//! printed reason) otherwise.
//!
//! The "agent" is a shell script: it runs the commands the test drops into its state dir
//! (`cmd` → `out`, then `done`), which is how these tests look inside a container.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sha2::Digest;

use hybox_container_fallback::runtime::{
    CgroupMode, Container, ContainerSpec, Limits, OciChoice, Runtime, RuntimeConfig,
};

/// The agent: runs `cmd` files from its state dir.
const AGENT: &str = r#"#!/bin/sh
S=/.hybox/state
while :; do
  if [ -f $S/cmd ]; then
    sh $S/cmd > $S/out 2>&1
    rm -f $S/cmd
    echo done > $S/done
  fi
  usleep 10000
done
"#;

/// Docker's default capability set as a mask.
const DOCKER_CAPS: &str = "00000000a80425fb";

struct Fixture {
    image: PathBuf,
    agent: PathBuf,
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

macro_rules! require_root {
    () => {
        if !is_root() {
            eprintln!("skipped: needs root (loop, overlay and runc)");
            return;
        }
    };
}

/// A busybox rootfs packed by mksquashfs, and the agent script; built once into a fixed dir
/// under the temp dir (kept for the next run; a concurrent build loses the rename race).
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = std::env::temp_dir().join("hybox-runtime-test-fixture-v1");
        if !dir.join("agent.sh").exists() {
            let building = build_fixture().keep();
            if fs::rename(&building, &dir).is_err() {
                let _ = fs::remove_dir_all(&building);
            }
        }
        Fixture {
            image: dir.join("busybox.squashfs"),
            agent: dir.join("agent.sh"),
        }
    })
}

fn build_fixture() -> tempfile::TempDir {
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("busybox-static is installed (apt-get install busybox-static)");
    let dir = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
    let tree = dir.path().join("tree");
    for d in [
        "bin",
        "dev",
        "proc",
        "sys",
        "tmp",
        "etc",
        "root",
        "workspace",
    ] {
        fs::create_dir_all(tree.join(d)).unwrap();
    }
    fs::copy(&busybox, tree.join("bin/busybox")).unwrap();
    let list = Command::new(&busybox).arg("--list").output().unwrap();
    for applet in String::from_utf8(list.stdout).unwrap().lines() {
        if applet != "busybox" {
            std::os::unix::fs::symlink("busybox", tree.join("bin").join(applet)).unwrap();
        }
    }
    fs::write(tree.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    fs::write(tree.join("etc/group"), "root:x:0:\ntty:x:5:\n").unwrap();
    let image = dir.path().join("busybox.squashfs");
    let status = Command::new("mksquashfs")
        .arg(&tree)
        .arg(&image)
        .args(["-noappend", "-quiet", "-no-progress", "-all-root"])
        .status()
        .unwrap();
    assert!(status.success(), "mksquashfs failed");
    let agent = dir.path().join("agent.sh");
    fs::write(&agent, AGENT).unwrap();
    fs::set_permissions(&agent, fs::Permissions::from_mode(0o755)).unwrap();
    fs::remove_dir_all(&tree).unwrap();
    dir
}

/// A runtime on its own root, cleaned (containers stopped, images unmounted) when dropped.
struct Setup {
    runtime: Runtime,
    root: tempfile::TempDir,
    host: tempfile::TempDir,
}

impl Setup {
    fn new() -> Self {
        Self::with(OciChoice::Auto)
    }

    fn with(oci: OciChoice) -> Self {
        let root = tempfile::tempdir().unwrap();
        let runtime = Runtime::detect(config(root.path(), oci)).unwrap();
        Self {
            runtime,
            root,
            host: tempfile::tempdir().unwrap(),
        }
    }

    fn spec(&self, id: &str) -> ContainerSpec {
        let workspace = self.host.path().join(id).join("workspace");
        let tmp = self.host.path().join(id).join("tmp");
        fs::create_dir_all(&workspace).unwrap();
        fs::create_dir_all(&tmp).unwrap();
        ContainerSpec {
            id: id.into(),
            image: fixture().image.clone(),
            workspace,
            tmp,
            mounts: Vec::new(),
            limits: Limits {
                memory_bytes: 64 << 20,
                pids: 32,
                cpus: 1.0,
            },
            network: false,
            hostname: format!("box-{id}"),
        }
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        self.runtime.cleanup_all();
    }
}

fn config(root: &Path, oci: OciChoice) -> RuntimeConfig {
    RuntimeConfig {
        root: root.to_path_buf(),
        oci,
        agent_binary: fixture().agent.clone(),
    }
}

/// Runs `script` inside through the agent script; its output.
fn exec(container: &Container, script: &str) -> String {
    let s = &container.state_dir;
    let _ = fs::remove_file(s.join("done"));
    let _ = fs::remove_file(s.join("out"));
    fs::write(s.join("cmd.tmp"), script).unwrap();
    fs::rename(s.join("cmd.tmp"), s.join("cmd")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !s.join("done").exists() {
        assert!(Instant::now() < deadline, "agent did not run {script:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
    fs::read_to_string(s.join("out")).unwrap()
}

fn mounts_under(root: &Path) -> Vec<String> {
    let root = fs::canonicalize(root).unwrap();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
        .filter(|m| Path::new(m).starts_with(&root))
        .collect()
}

fn alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !matches!(
            s.rsplit_once(')')
                .map(|(_, r)| r.trim_start().as_bytes()[0]),
            Some(b'Z' | b'X')
        )
    })
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[test]
fn detect_reports_runtime_and_cgroup_mode() {
    require_root!();
    let setup = Setup::new();
    let info = setup.runtime.info();
    let hybrid = Path::new("/sys/fs/cgroup/unified/cgroup.controllers").exists()
        && Path::new("/sys/fs/cgroup/memory").is_dir();
    if hybrid {
        assert_eq!(info.cgroup, CgroupMode::Hybrid);
        assert_eq!(info.name, "runc", "runc is preferred on hybrid hosts");
    }
    assert!(info.version.contains("version"), "{info:?}");
    assert!(info.binary.is_absolute());
    println!("detected: {info:?}");
}

#[test]
fn container_is_isolated_and_limited() {
    require_root!();
    let setup = Setup::new();
    let spec = setup.spec("iso");
    let c = setup.runtime.start(&spec).unwrap();
    assert_eq!(setup.runtime.running("iso").unwrap(), Some(c.pid));
    assert!(alive(c.pid));

    assert_eq!(exec(&c, "hostname").trim(), "box-iso");
    assert!(exec(&c, "id").starts_with("uid=0(root)"));
    let netdev = exec(&c, "cat /proc/net/dev");
    let ifaces: Vec<&str> = netdev
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .collect();
    assert_eq!(ifaces, ["lo"], "{netdev}");
    // IFF_UP | IFF_LOOPBACK (and RUNNING is not in flags): loopback is up.
    let flags = exec(&c, "cat /sys/class/net/lo/flags");
    let flags = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).unwrap();
    assert_eq!(flags & 1, 1, "lo is down");

    // Limits, seen from the host and from inside.
    let mem = fs::read_to_string("/sys/fs/cgroup/memory/hybox/iso/memory.limit_in_bytes");
    if let Ok(mem) = mem {
        assert_eq!(mem.trim(), (64u64 << 20).to_string());
        let pids = fs::read_to_string("/sys/fs/cgroup/pids/hybox/iso/pids.max").unwrap();
        assert_eq!(pids.trim(), "32");
        let inside = exec(&c, "cat /sys/fs/cgroup/memory/memory.limit_in_bytes");
        assert_eq!(inside.trim(), (64u64 << 20).to_string());
        let quota = fs::read_to_string("/sys/fs/cgroup/cpu/hybox/iso/cpu.cfs_quota_us").unwrap();
        assert_eq!(quota.trim(), "100000");
    } else {
        let mem = fs::read_to_string("/sys/fs/cgroup/hybox/iso/memory.max").unwrap();
        assert_eq!(mem.trim(), (64u64 << 20).to_string());
    }

    // Capabilities: Docker's default set, nothing administrative.
    let status = exec(&c, "grep -E '^Cap(Eff|Bnd)' /proc/self/status");
    for line in status.lines() {
        assert!(line.ends_with(DOCKER_CAPS), "{line}");
    }

    // Only the container's processes are visible.
    let ps = exec(&c, "ps -o pid,comm");
    assert!(ps.lines().count() <= 6, "{ps}");
    assert!(ps.lines().any(|l| l.trim().starts_with("1 ")), "{ps}");

    // The agent has the listening socket as fd 3; its host path does not exist inside.
    let fd3 = exec(&c, "readlink /proc/1/fd/3");
    assert!(fd3.starts_with("socket:"), "{fd3}");
    let unix = exec(&c, "cat /proc/net/unix");
    let host_path = c.agent_socket.to_string_lossy().into_owned();
    assert!(!unix.contains(&host_path), "{unix}");
    assert!(!unix.contains("agent.sock"), "{unix}");
    UnixStream::connect(&c.agent_socket).expect("the agent socket is connectable on the host");
    assert!(exec(&c, "ls /.hybox").contains("agent"));

    // Masked paths.
    for path in ["/proc/keys", "/proc/timer_list", "/proc/kcore"] {
        if Path::new(path).exists() {
            let mask = exec(&c, &format!("readlink -f {path}; wc -c < {path}"));
            assert!(mask.ends_with("\n0\n"), "{path}: {mask}");
        }
    }

    // Pids: forking past the limit fails (the shells and the agent hold a few). Last: the agent
    // script itself cannot fork any more afterwards.
    let forks = exec(
        &c,
        "p=''; i=0; while [ $i -lt 40 ]; do sleep 100 & p=\"$p $!\"; i=$((i+1)); done; kill $p; echo end",
    );
    assert!(forks.to_lowercase().contains("fork"), "{forks}");
    if let Ok(current) = fs::read_to_string("/sys/fs/cgroup/pids/hybox/iso/pids.current") {
        assert!(current.trim().parse::<u64>().unwrap() <= 32, "{current}");
    }

    setup.runtime.stop("iso").unwrap();
    assert_eq!(setup.runtime.running("iso").unwrap(), None);
    assert!(!alive(c.pid));
    assert!(!Path::new("/sys/fs/cgroup/memory/hybox/iso").exists());
}

#[test]
fn workspace_tmp_and_writable_layer_persist() {
    require_root!();
    let setup = Setup::new();
    let spec = setup.spec("persist");
    fs::write(spec.workspace.join("from-host.txt"), "hello").unwrap();
    fs::write(spec.tmp.join("tmp-from-host"), "t").unwrap();
    let c = setup.runtime.start(&spec).unwrap();

    assert_eq!(exec(&c, "cat /workspace/from-host.txt"), "hello");
    assert_eq!(exec(&c, "cat /tmp/tmp-from-host"), "t");
    exec(
        &c,
        "echo inside > /workspace/from-container.txt; echo t2 > /tmp/t2; echo layer > /etc/marker",
    );
    assert_eq!(
        fs::read_to_string(spec.workspace.join("from-container.txt")).unwrap(),
        "inside\n"
    );
    assert_eq!(fs::read_to_string(spec.tmp.join("t2")).unwrap(), "t2\n");

    setup.runtime.stop("persist").unwrap();
    setup.runtime.stop("persist").unwrap();
    assert_eq!(setup.runtime.running("persist").unwrap(), None);
    let dir = setup.root.path().join("persist");
    assert_eq!(
        fs::read_to_string(dir.join("upper/etc/marker")).unwrap(),
        "layer\n"
    );
    assert!(!dir.join("agent.sock").exists());
    assert!(!hybox_container_fallback::runtime::is_mount_point(
        &dir.join("rootfs")
    ));

    let c2 = setup.runtime.start(&spec).unwrap();
    assert_ne!(c2.pid, c.pid);
    assert_eq!(exec(&c2, "cat /etc/marker"), "layer\n");
    assert_eq!(exec(&c2, "cat /workspace/from-container.txt"), "inside\n");
    setup.runtime.stop("persist").unwrap();
}

#[test]
fn destroy_leaves_nothing() {
    require_root!();
    let setup = Setup::new();
    let spec = setup.spec("gone");
    let c = setup.runtime.start(&spec).unwrap();
    exec(&c, "echo x > /root/file");
    assert_eq!(setup.runtime.list().unwrap(), ["gone"]);
    setup.runtime.destroy("gone").unwrap();
    assert!(!setup.root.path().join("gone").exists());
    assert_eq!(setup.runtime.list().unwrap(), Vec::<String>::new());
    assert!(!alive(c.pid));
    assert!(!setup.root.path().join(".runc/gone").exists());
    setup.runtime.destroy("gone").unwrap();
    setup.runtime.unmount_images();
    assert_eq!(mounts_under(setup.root.path()), Vec::<String>::new());
    // The workspace is the host's, and stays.
    assert!(spec.workspace.is_dir());
}

#[test]
fn network_gives_eth0_with_nat_but_not_the_host() {
    require_root!();
    let setup = Setup::new();
    let mut spec = setup.spec("net");
    spec.network = true;
    let t = Instant::now();
    let c = setup.runtime.start(&spec).unwrap();
    let start = t.elapsed();

    let addr = exec(&c, "ip -4 -o addr show dev eth0");
    let cidr = addr
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .unwrap_or_else(|| panic!("no inet in {addr}"))
        .to_owned();
    assert!(
        cidr.starts_with("10.89.") && cidr.ends_with("/30"),
        "{cidr}"
    );
    let guest: std::net::Ipv4Addr = cidr.trim_end_matches("/30").parse().unwrap();
    assert_eq!(guest.octets()[3] % 4, 2);
    let host = std::net::Ipv4Addr::from(u32::from(guest) - 1);
    let saved = fs::read_to_string(setup.root.path().join("net/net")).unwrap();
    assert_eq!(
        saved.trim(),
        format!("{}/30", std::net::Ipv4Addr::from(u32::from(guest) - 2))
    );
    assert!(exec(&c, "ip route").contains(&format!("default via {host}")));
    assert!(
        exec(&c, "cat /etc/resolv.conf").len()
            == fs::read_to_string("/etc/resolv.conf").unwrap().len()
    );

    // The pair carries traffic: the host reaches a listener in the container (replies come
    // back in)...
    let _bg = exec(
        &c,
        "(echo hello-from-container | nc -l -p 7000 >/dev/null 2>&1 &) ; sleep 0.2; echo started",
    );
    let mut got = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.is_empty() && Instant::now() < deadline {
        if let Ok(mut stream) = std::net::TcpStream::connect_timeout(
            &std::net::SocketAddr::from((guest, 7000)),
            Duration::from_secs(2),
        ) {
            let _ = stream.write_all(b"hi\n");
            let _ = stream.read_to_string(&mut got);
        } else {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    assert_eq!(got.trim(), "hello-from-container");
    // ...but the container cannot open connections to the host itself (only egress through
    // NAT): a listener on the host side of the pair is not reached.
    let listener = TcpListener::bind((host, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let body = exec(&c, &format!("echo hi | nc -w 2 {host} {port}; echo rc=$?"));
    assert!(body.contains("rc=1"), "the host was reachable: {body}");
    listener.set_nonblocking(true).unwrap();
    assert!(listener.accept().is_err(), "a connection reached the host");

    let nat = Command::new("iptables")
        .args(["-w", "-t", "nat", "-S", "POSTROUTING"])
        .output()
        .unwrap();
    let subnet = saved.trim().to_owned();
    assert!(String::from_utf8_lossy(&nat.stdout).contains(&subnet));

    let t = Instant::now();
    setup.runtime.stop("net").unwrap();
    println!(
        "with network: start {start:?} (first on this root: image mount included), stop {:?}",
        t.elapsed()
    );
    let nat = Command::new("iptables")
        .args(["-w", "-t", "nat", "-S", "POSTROUTING"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&nat.stdout).contains(&subnet));
    let forward = Command::new("iptables")
        .args(["-w", "-S", "FORWARD"])
        .output()
        .unwrap();
    let ifname = format!("hbx{}", &hex::encode(sha2::Sha256::digest(b"net"))[..8]);
    assert!(
        !String::from_utf8_lossy(&forward.stdout).contains(&ifname),
        "forward rules left"
    );
    let input = Command::new("iptables")
        .args(["-w", "-S", "INPUT"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&input.stdout).contains(&ifname),
        "input rules left"
    );
    assert!(!Path::new("/sys/class/net").join(&ifname).exists());

    // The same subnet on the next start.
    let c2 = setup.runtime.start(&spec).unwrap();
    assert!(exec(&c2, "ip -4 -o addr show dev eth0").contains(&cidr));
    setup.runtime.stop("net").unwrap();
}

#[test]
fn stale_container_from_an_earlier_runtime_is_replaced() {
    require_root!();
    let setup = Setup::new();
    let spec = setup.spec("stale");
    let first = setup.runtime.start(&spec).unwrap();
    // A new host process: a fresh runtime on the same root.
    let again = Runtime::detect(config(setup.root.path(), OciChoice::Auto)).unwrap();
    assert_eq!(again.running("stale").unwrap(), Some(first.pid));
    assert_eq!(again.list().unwrap(), ["stale"]);
    let second = again.start(&spec).unwrap();
    assert_ne!(first.pid, second.pid);
    assert!(!alive(first.pid));
    assert_eq!(again.running("stale").unwrap(), Some(second.pid));
    assert_eq!(exec(&second, "echo ok"), "ok\n");
    again.cleanup_all();
    assert_eq!(again.running("stale").unwrap(), None);
    assert_eq!(mounts_under(setup.root.path()), Vec::<String>::new());
}

#[test]
fn bad_input_is_refused() {
    require_root!();
    let setup = Setup::new();
    assert!(setup.runtime.start(&setup.spec("Bad_Id")).is_err());
    assert!(setup.runtime.stop("../x").is_err());
    let mut spec = setup.spec("nosrc");
    spec.workspace = PathBuf::from("/nonexistent/ws");
    assert!(setup.runtime.start(&spec).is_err());
    let mut spec = setup.spec("noimage");
    spec.image = PathBuf::from("/nonexistent.squashfs");
    let err = setup.runtime.start(&spec).unwrap_err().to_string();
    assert!(err.contains("nonexistent"), "{err}");
    assert_eq!(mounts_under(setup.root.path()).len(), 0);
    // A runtime failure names the command and carries the runtime's message.
    let mut spec = setup.spec("badmount");
    spec.mounts
        .push(hybox_container_fallback::runtime::BindMount {
            source: setup.host.path().to_path_buf(),
            destination: "/proc/not-allowed".into(),
            readonly: true,
        });
    let err = setup.runtime.start(&spec).unwrap_err().to_string();
    println!("runtime failure: {err}");
    assert!(err.contains("run --detach"), "{err}");
    assert_eq!(setup.runtime.running("badmount").unwrap(), None);
    assert!(!hybox_container_fallback::runtime::is_mount_point(
        &setup.root.path().join("badmount/rootfs")
    ));
}

#[test]
fn crun_with_the_hybrid_workaround() {
    require_root!();
    if !Path::new("/usr/bin/crun").exists() {
        eprintln!("skipped: crun is not installed");
        return;
    }
    let setup = Setup::with(OciChoice::Crun);
    assert_eq!(setup.runtime.info().name, "crun");
    let spec = setup.spec("crun");
    let t = Instant::now();
    let c = setup.runtime.start(&spec).unwrap();
    println!(
        "crun (hybrid workaround) start, image mount included: {:?}",
        t.elapsed()
    );
    assert_eq!(setup.runtime.running("crun").unwrap(), Some(c.pid));
    assert_eq!(exec(&c, "hostname").trim(), "box-crun");
    if let Ok(mem) = fs::read_to_string("/sys/fs/cgroup/memory/hybox/crun/memory.limit_in_bytes") {
        assert_eq!(mem.trim(), (64u64 << 20).to_string());
    }
    let t = Instant::now();
    setup.runtime.destroy("crun").unwrap();
    println!("crun destroy: {:?}", t.elapsed());
    assert_eq!(setup.runtime.running("crun").unwrap(), None);
}

#[test]
fn cold_start_and_stop_times() {
    require_root!();
    let setup = Setup::new();
    // The image mount happens once per image; the first start pays it.
    let warm = setup.spec("warm");
    setup.runtime.start(&warm).unwrap();
    setup.runtime.destroy("warm").unwrap();
    let (mut starts, mut stops, mut destroys) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..10 {
        let id = format!("cold{i}");
        let spec = setup.spec(&id);
        let t = Instant::now();
        let c = setup.runtime.start(&spec).unwrap();
        starts.push(t.elapsed());
        assert!(c.pid > 0);
        let t = Instant::now();
        setup.runtime.stop(&id).unwrap();
        stops.push(t.elapsed());
        let t = Instant::now();
        setup.runtime.destroy(&id).unwrap();
        destroys.push(t.elapsed());
    }
    println!(
        "runtime {}: start (fresh dir, image mounted) median {:?} (min {:?}, max {:?}); stop median {:?}; destroy of a stopped one median {:?}",
        setup.runtime.info().name,
        median(starts.clone()),
        starts.iter().min().unwrap(),
        starts.iter().max().unwrap(),
        median(stops),
        median(destroys)
    );
}
