//! Building a recipe: fetch and check the pinned keyring, bootstrap with mmdebstrap into a temp
//! directory in the store, finish the tree, pack it.
//!
//! Needs root: mmdebstrap's `unshare` mode would leave a tree owned by subordinate uids that
//! this process can neither read in full (`/etc/shadow`) nor pack with the right owners, so a
//! build as another user stops with a [`ImageError::Build`] saying so (import a prebuilt image
//! instead). Tools: `mmdebstrap`, `curl`, `dpkg-deb`.

use std::collections::VecDeque;
use std::fs;
use std::io::{self, BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

use super::recipe::{RecipeSpec, hash_with_mirror};
use super::rootfs::{self, TempTree};
use super::store::Lock;
use super::{ImageError, ImageManifest, ImageStore, Progress, Recipe, Result};

/// Lines of a failing tool's output quoted in its error.
const TAIL_LINES: usize = 25;

/// Where the image's apt sources point their `Signed-By`.
const IMAGE_KEYRING: &str = "/usr/share/keyrings/ubuntu-archive-keyring.gpg";

/// Runs `cmd` as build step `step`, streaming its output (stdout and stderr merged) as
/// [`Progress::Line`]s.
fn run_step(step: &str, mut cmd: Command, progress: &dyn Fn(Progress)) -> Result<()> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let (reader, writer) = io::pipe()?;
    cmd.stdin(Stdio::null())
        .stdout(writer.try_clone()?)
        .stderr(writer);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(ImageError::Build(format!(
                "{step}: `{program}` is not installed (apt-get install {})",
                package_of(&program)
            )));
        }
        Err(e) => return Err(ImageError::Build(format!("{step}: run {program}: {e}"))),
    };
    // The command holds the pipe's write ends: drop them so the read sees EOF at exit.
    drop(cmd);
    let mut tail = VecDeque::with_capacity(TAIL_LINES);
    let mut r = BufReader::new(reader);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match r.read_until(b'\n', &mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ImageError::Build(format!("{step}: read output: {e}"))),
        }
        // Progress meters redraw with `\r`: keep the last state of the line.
        let text = String::from_utf8_lossy(&buf);
        let line = text
            .trim_end_matches(['\n', '\r'])
            .rsplit('\r')
            .next()
            .unwrap_or_default()
            .trim_end()
            .to_owned();
        if line.is_empty() {
            continue;
        }
        tracing::debug!(step, line = %line, "build output");
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line.clone());
        progress(Progress::Line(line));
    }
    let status = child
        .wait()
        .map_err(|e| ImageError::Build(format!("{step}: wait for {program}: {e}")))?;
    if status.success() {
        return Ok(());
    }
    let tail: Vec<_> = tail.into_iter().collect();
    Err(ImageError::Build(format!(
        "{step} failed ({program} {status}):\n{}",
        tail.join("\n")
    )))
}

fn package_of(program: &str) -> &str {
    match program {
        "dpkg-deb" => "dpkg",
        p => p,
    }
}

fn sha256_file(path: &Path) -> Result<String> {
    let mut f = fs::File::open(path)?;
    let mut h = Sha256::new();
    io::copy(&mut f, &mut h)?;
    Ok(hex::encode(h.finalize()))
}

/// Downloads and checks the recipe's keyring; returns the keyring file's path.
fn fetch_keyring(
    spec: &RecipeSpec,
    work: &Path,
    progress: &dyn Fn(Progress),
) -> Result<std::path::PathBuf> {
    progress(Progress::Phase("fetching the archive keyring".into()));
    let deb = work.join("keyring.deb");
    let mut curl = Command::new("curl");
    curl.args(["-fsSL", "--retry", "3", "--max-time", "300", "-o"])
        .arg(&deb)
        .arg(&spec.keyring.url);
    run_step("fetching the keyring", curl, progress)?;
    let got = sha256_file(&deb)?;
    if got != spec.keyring.sha256 {
        return Err(ImageError::Build(format!(
            "fetching the keyring: {} has sha256 {got}, the recipe pins {}",
            spec.keyring.url, spec.keyring.sha256
        )));
    }
    let dir = work.join("keyring");
    let mut x = Command::new("dpkg-deb");
    x.arg("-x").arg(&deb).arg(&dir);
    run_step("unpacking the keyring", x, progress)?;
    let file = dir.join(&spec.keyring.file);
    let md = fs::symlink_metadata(&file).map_err(|e| {
        ImageError::Build(format!("unpacking the keyring: {}: {e}", spec.keyring.file))
    })?;
    if !md.is_file() {
        return Err(ImageError::Build(format!(
            "unpacking the keyring: {} is not a regular file",
            spec.keyring.file
        )));
    }
    let got = sha256_file(&file)?;
    if got != spec.keyring.file_sha256 {
        return Err(ImageError::Build(format!(
            "unpacking the keyring: {} has sha256 {got}, the recipe pins {}",
            spec.keyring.file, spec.keyring.file_sha256
        )));
    }
    Ok(file)
}

/// Trims what only the build needed and adds what containers need.
fn post_process(spec: &RecipeSpec, root: &Path, mirror: &str, keyring: &Path) -> Result<()> {
    // apt's binary caches and downloaded lists are rebuilt by the first `apt-get update`.
    rootfs::remove_files(root, "var/cache/apt", |n| n.ends_with(".bin"))?;
    rootfs::remove_files(root, "var/cache/apt/archives", |n| n.ends_with(".deb"))?;
    rootfs::remove_files(root, "var/lib/apt/lists", |n| n != "lock")?;
    // The keyring the sources name: the ubuntu-keyring package's when installed, else ours.
    let image_keyring = root.join(IMAGE_KEYRING.trim_start_matches('/'));
    if !fs::symlink_metadata(&image_keyring).is_ok_and(|m| m.is_file()) {
        rootfs::put_file(
            root,
            IMAGE_KEYRING.trim_start_matches('/'),
            &fs::read(keyring)?,
            0o644,
        )?;
    }
    rootfs::put_file(
        root,
        "etc/apt/sources.list",
        b"# Ubuntu sources are in /etc/apt/sources.list.d/ubuntu.sources\n",
        0o644,
    )?;
    rootfs::put_file(
        root,
        "etc/apt/sources.list.d/ubuntu.sources",
        spec.deb822_sources(mirror, IMAGE_KEYRING).as_bytes(),
        0o644,
    )?;
    // mmdebstrap copied the build host's: neither belongs in an image.
    rootfs::put_file(root, "etc/resolv.conf", b"", 0o644)?;
    rootfs::put_file(root, "etc/hostname", rootfs::HOSTNAME, 0o644)?;
    // Containers run no init: apt must not try to start the services it installs.
    rootfs::put_file(
        root,
        "usr/sbin/policy-rc.d",
        b"#!/bin/sh\nexit 101\n",
        0o755,
    )?;
    rootfs::finish(root)
}

/// Builds `recipe` with `mirror` (see [`super::build`]).
pub(super) fn build(
    store: &ImageStore,
    recipe: &Recipe,
    mirror: &str,
    progress: &dyn Fn(Progress),
) -> Result<ImageManifest> {
    let spec = RecipeSpec::parse(&recipe.source)?;
    let hash = hash_with_mirror(&recipe.source, mirror);
    if let Some(m) = store.find_recipe(&hash)? {
        tracing::debug!(id = %m.id, "image build cache hit");
        return Ok(m);
    }
    let _lock = Lock::acquire(store.dir(), &hash[..32], progress)?;
    // Someone may have built it while we waited.
    if let Some(m) = store.find_recipe(&hash)? {
        return Ok(m);
    }
    if !rustix::process::geteuid().is_root() {
        return Err(ImageError::Build(
            "building an image needs root (mmdebstrap --mode=root); run the build as root, or \
             import a prebuilt image"
                .into(),
        ));
    }
    let started = std::time::Instant::now();
    // 0700 like every temp tree. apt warns that it downloads as root rather than as `_apt`
    // (which could not reach a store under /root anyway): the downloads are still verified.
    let work = TempTree::create(store.dir(), "build")?;
    let keyring = fetch_keyring(&spec, work.path(), progress)?;
    progress(Progress::Phase(format!(
        "bootstrapping {} {} with mmdebstrap",
        spec.suite, spec.variant
    )));
    let root = work.path().join("rootfs");
    let mut mm = Command::new("mmdebstrap");
    mm.arg("--mode=root")
        .arg(format!("--variant={}", spec.variant))
        .arg(format!("--components={}", spec.components.join(",")))
        .arg(format!("--keyring={}", keyring.display()))
        .env("LC_ALL", "C.UTF-8");
    if !spec.packages.is_empty() {
        mm.arg(format!("--include={}", spec.packages.join(",")));
    }
    mm.arg(&spec.suite).arg(&root).args(spec.deb_lines(mirror));
    run_step("bootstrapping", mm, progress)?;
    progress(Progress::Phase("finishing the root filesystem".into()));
    post_process(&spec, &root, mirror, &keyring)
        .map_err(|e| ImageError::Build(format!("finishing the root filesystem: {e}")))?;
    let manifest = ImageManifest {
        name: spec.name.clone(),
        id: String::new(),
        size: 0,
        source: "recipe".into(),
        recipe_hash: Some(hash),
        created_at: String::new(),
        env: spec.env.clone().into_iter().collect(),
        os: rootfs::os_pretty_name(&root),
    };
    let m = store.pack(&root, manifest, progress)?;
    tracing::info!(id = %m.id, secs = started.elapsed().as_secs(), "image built");
    Ok(m)
}
