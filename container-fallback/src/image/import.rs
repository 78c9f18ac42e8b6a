//! Importing a root filesystem directory or an OCI image (a `docker save` archive, or an OCI
//! image layout as a tarball or a directory).
//!
//! The archive's own files (manifests, configs, layer blobs) are found through an index of the
//! outer tar (offset and size of each member), so layers are read in place, never copied out.
//! Blobs named `blobs/sha256/<hex>` are checked against their digest as they are read; JSON
//! documents are read with a size cap.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::layer::{self, Tree, clean_path};
use super::rootfs::{self, DEFAULT_PATH, TempTree};
use super::{ImageError, ImageManifest, ImageStore, Progress, Result};

/// Cap on a JSON document of an image (index, manifest, config).
const JSON_CAP: u64 = 16 << 20;

/// Nesting of OCI indexes followed.
const MAX_INDEX_DEPTH: usize = 4;

fn invalid(input: &Path, what: impl std::fmt::Display) -> ImageError {
    ImageError::Invalid(format!("{}: {what}", input.display()))
}

/// Where the image's members come from.
enum Source {
    /// An OCI layout directory.
    Dir(PathBuf),
    /// A tar file, indexed: member path → (offset, size), and symlink members → their target.
    Tar {
        file: File,
        members: HashMap<PathBuf, (u64, u64)>,
        links: HashMap<PathBuf, PathBuf>,
    },
}

impl Source {
    fn index_tar(file: File) -> Result<Source> {
        let mut members = HashMap::new();
        let mut links = HashMap::new();
        let mut archive = tar::Archive::new(&file);
        let bad = |e: io::Error| ImageError::Invalid(format!("image archive: {e}"));
        for entry in archive.entries().map_err(bad)? {
            let entry = entry.map_err(bad)?;
            let rel = clean_path(&entry.path_bytes())?;
            match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    members.insert(rel, (entry.raw_file_position(), entry.size()));
                }
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    // docker save links a layer shared by two images to its first copy.
                    let target = entry.link_name_bytes().unwrap_or_default();
                    let base = if entry.header().entry_type() == tar::EntryType::Symlink {
                        rel.parent().map(Path::to_path_buf).unwrap_or_default()
                    } else {
                        PathBuf::new()
                    };
                    if let Some(t) = join_lexically(&base, &target) {
                        links.insert(rel, t);
                    }
                }
                _ => {}
            }
        }
        Ok(Source::Tar {
            file,
            members,
            links,
        })
    }

    /// Opens member `rel` (plain names) with its size.
    fn open(&self, rel: &Path) -> Result<(Box<dyn Read + '_>, u64)> {
        match self {
            Source::Dir(root) => {
                let p = no_symlink_path(root, rel)
                    .ok_or_else(|| ImageError::Invalid(format!("{} is missing", rel.display())))?;
                let f = fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&p)
                    .map_err(|e| ImageError::Invalid(format!("{}: {e}", rel.display())))?;
                let size = f.metadata()?.len();
                Ok((Box::new(BufReader::with_capacity(1 << 20, f)), size))
            }
            Source::Tar {
                file,
                members,
                links,
            } => {
                let mut rel = rel.to_path_buf();
                for _ in 0..8 {
                    match links.get(&rel) {
                        Some(t) => rel = t.clone(),
                        None => break,
                    }
                }
                let &(off, size) = members.get(&rel).ok_or_else(|| {
                    ImageError::Invalid(format!("{} is not in the archive", rel.display()))
                })?;
                let mut f = file.try_clone()?;
                f.seek(SeekFrom::Start(off))?;
                Ok((
                    Box::new(BufReader::with_capacity(1 << 20, f.take(size))),
                    size,
                ))
            }
        }
    }

    fn exists(&self, rel: &str) -> bool {
        match self {
            Source::Dir(root) => no_symlink_path(root, Path::new(rel)).is_some_and(|p| p.is_file()),
            Source::Tar { members, .. } => members.contains_key(Path::new(rel)),
        }
    }

    /// A JSON member, checked against `digest` when given.
    fn json(&self, rel: &Path, digest: Option<&str>) -> Result<serde_json::Value> {
        let (r, size) = self.open(rel)?;
        if size > JSON_CAP {
            return Err(ImageError::Invalid(format!(
                "{} is larger than {JSON_CAP} bytes",
                rel.display()
            )));
        }
        let mut bytes = Vec::new();
        let mut r = Verified::new(r.take(JSON_CAP), digest);
        r.read_to_end(&mut bytes)?;
        r.check(rel)?;
        serde_json::from_slice(&bytes)
            .map_err(|e| ImageError::Invalid(format!("{}: {e}", rel.display())))
    }
}

/// `root/rel` if no component of it is a symlink.
fn no_symlink_path(root: &Path, rel: &Path) -> Option<PathBuf> {
    let mut p = root.to_path_buf();
    for c in rel.components() {
        let std::path::Component::Normal(n) = c else {
            return None;
        };
        p.push(n);
        if fs::symlink_metadata(&p).ok()?.file_type().is_symlink() {
            return None;
        }
    }
    Some(p)
}

/// `base/target` normalised lexically; `None` when it climbs out or is absolute.
fn join_lexically(base: &Path, target: &[u8]) -> Option<PathBuf> {
    if target.first() == Some(&b'/') {
        return None;
    }
    let mut out = base.to_path_buf();
    for part in target.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                if !out.pop() {
                    return None;
                }
            }
            n => out.push(std::ffi::OsStr::from_bytes(n)),
        }
    }
    Some(out)
}

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;

/// A reader that hashes what passes through, to check a `sha256:` digest at the end.
struct Verified<R> {
    inner: R,
    hasher: Option<(Sha256, String)>,
}

impl<R: Read> Verified<R> {
    fn new(inner: R, digest: Option<&str>) -> Self {
        let hasher = digest
            .and_then(|d| d.strip_prefix("sha256:"))
            .map(|hex| (Sha256::new(), hex.to_owned()));
        Self { inner, hasher }
    }

    /// Reads what is left and compares the digest.
    fn check(mut self, what: &Path) -> Result<()> {
        io::copy(&mut self, &mut io::sink())?;
        if let Some((h, want)) = self.hasher {
            let got = hex::encode(h.finalize());
            if got != want {
                return Err(ImageError::Invalid(format!(
                    "{} does not match its digest sha256:{want}",
                    what.display()
                )));
            }
        }
        Ok(())
    }
}

impl<R: Read> Read for Verified<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some((h, _)) = &mut self.hasher {
            h.update(&buf[..n]);
        }
        Ok(n)
    }
}

/// Counts bytes read and reports them now and then.
struct Counted<'a, R> {
    inner: R,
    done: u64,
    total: u64,
    last: u64,
    progress: &'a dyn Fn(Progress),
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        if self.done - self.last >= 4 << 20 || (n == 0 && self.done != self.last) {
            self.last = self.done;
            (self.progress)(Progress::Count {
                done: self.done,
                total: Some(self.total),
            });
        }
        Ok(n)
    }
}

/// A layer blob to apply.
struct LayerRef {
    path: PathBuf,
    digest: Option<String>,
}

/// The image's layers and config, from `manifest.json` (docker save) or `index.json` (OCI).
struct Plan {
    layers: Vec<LayerRef>,
    config: Option<serde_json::Value>,
}

/// `blobs/<alg>/<hex>` for a digest.
fn blob_path(digest: &str) -> Result<PathBuf> {
    let (alg, hex) = digest
        .split_once(':')
        .ok_or_else(|| ImageError::Invalid(format!("digest {digest:?} has no algorithm")))?;
    let plain = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric());
    if !plain(alg) || !plain(hex) {
        return Err(ImageError::Invalid(format!(
            "digest {digest:?} is malformed"
        )));
    }
    Ok(PathBuf::from(format!("blobs/{alg}/{hex}")))
}

/// The digest a docker-save path implies (`blobs/sha256/<hex>`), for checking.
fn digest_of_path(p: &Path) -> Option<String> {
    let s = p.to_str()?;
    let hex = s.strip_prefix("blobs/sha256/")?;
    super::is_id(hex).then(|| format!("sha256:{hex}"))
}

fn str_field<'v>(v: &'v serde_json::Value, key: &str) -> Option<&'v str> {
    v.get(key).and_then(serde_json::Value::as_str)
}

fn plan(src: &Source) -> Result<Plan> {
    if src.exists("manifest.json") {
        let m = src.json(Path::new("manifest.json"), None)?;
        let first = m
            .as_array()
            .and_then(|a| a.first())
            .ok_or_else(|| ImageError::Invalid("manifest.json lists no image".into()))?;
        let config = match str_field(first, "Config") {
            Some(c) => {
                let p = clean_path(c.as_bytes())?;
                let d = digest_of_path(&p);
                Some(src.json(&p, d.as_deref())?)
            }
            None => None,
        };
        let layers = first
            .get("Layers")
            .and_then(serde_json::Value::as_array)
            .ok_or_else(|| ImageError::Invalid("manifest.json: no Layers".into()))?
            .iter()
            .map(|l| {
                let s = l.as_str().ok_or_else(|| {
                    ImageError::Invalid("manifest.json: a layer is not a path".into())
                })?;
                let path = clean_path(s.as_bytes())?;
                let digest = digest_of_path(&path);
                Ok(LayerRef { path, digest })
            })
            .collect::<Result<_>>()?;
        return Ok(Plan { layers, config });
    }
    if !src.exists("index.json") {
        return Err(ImageError::Invalid(
            "neither manifest.json (docker save) nor index.json (OCI layout) found".into(),
        ));
    }
    let mut doc = src.json(Path::new("index.json"), None)?;
    for _ in 0..=MAX_INDEX_DEPTH {
        if let Some(list) = doc.get("manifests").and_then(serde_json::Value::as_array) {
            let pick = pick_manifest(list)?;
            let digest = str_field(pick, "digest")
                .ok_or_else(|| ImageError::Invalid("index entry without digest".into()))?
                .to_owned();
            doc = src.json(&blob_path(&digest)?, Some(&digest))?;
            continue;
        }
        let config = match doc.get("config").and_then(|c| str_field(c, "digest")) {
            Some(d) => Some(src.json(&blob_path(d)?, Some(d))?),
            None => None,
        };
        let layers = doc
            .get("layers")
            .and_then(serde_json::Value::as_array)
            .ok_or_else(|| ImageError::Invalid("image manifest has no layers".into()))?
            .iter()
            .map(|l| {
                let d = str_field(l, "digest")
                    .ok_or_else(|| ImageError::Invalid("layer without digest".into()))?;
                Ok(LayerRef {
                    path: blob_path(d)?,
                    digest: Some(d.to_owned()),
                })
            })
            .collect::<Result<_>>()?;
        return Ok(Plan { layers, config });
    }
    Err(ImageError::Invalid("OCI indexes nest too deep".into()))
}

/// The manifest for this machine's platform, else the first.
fn pick_manifest(list: &[serde_json::Value]) -> Result<&serde_json::Value> {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    };
    list.iter()
        .find(|m| {
            m.get("platform").is_some_and(|p| {
                str_field(p, "os") == Some("linux") && str_field(p, "architecture") == Some(arch)
            })
        })
        .or_else(|| list.first())
        .ok_or_else(|| ImageError::Invalid("index.json lists no manifest".into()))
}

/// `Env` of an image config, with a default `PATH` when it has none.
fn env_of(config: Option<&serde_json::Value>) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = config
        .and_then(|c| c.get("config"))
        .and_then(|c| c.get("Env"))
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(serde_json::Value::as_str)
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.insert(0, ("PATH".into(), DEFAULT_PATH.into()));
    }
    env
}

/// Applies one layer blob (tar, gzip or zstd, by its magic bytes).
fn apply_layer(
    tree: &mut Tree,
    src: &Source,
    l: &LayerRef,
    progress: &dyn Fn(Progress),
) -> Result<u64> {
    let (r, size) = src.open(&l.path)?;
    let counted = Counted {
        inner: r,
        done: 0,
        total: size,
        last: 0,
        progress,
    };
    let mut verified = Verified::new(counted, l.digest.as_deref());
    let n = {
        let mut buf = BufReader::with_capacity(1 << 16, &mut verified);
        let magic = buf
            .fill_buf()?
            .get(..4)
            .map(<[u8]>::to_vec)
            .unwrap_or_default();
        if magic.starts_with(&[0x1f, 0x8b]) {
            layer::apply_tar(tree, flate2::bufread::MultiGzDecoder::new(buf))?
        } else if magic == [0x28, 0xb5, 0x2f, 0xfd] {
            let dec = zstd::stream::read::Decoder::with_buffer(buf)
                .map_err(|e| ImageError::Invalid(format!("{}: {e}", l.path.display())))?;
            layer::apply_tar(tree, dec)?
        } else {
            layer::apply_tar(tree, buf)?
        }
    };
    verified.check(&l.path)?;
    Ok(n)
}

/// Whether `name` is a usable image name.
fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !super::is_id(name)
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ImageError::Invalid(format!(
            "image name {name:?} must be 1..128 of [A-Za-z0-9._-] and not an id"
        )))
    }
}

pub(super) fn import(
    store: &ImageStore,
    input: &Path,
    name: &str,
    progress: &dyn Fn(Progress),
) -> Result<ImageManifest> {
    check_name(name)?;
    let md = fs::metadata(input).map_err(|e| invalid(input, e))?;
    let work = TempTree::create(store.dir(), "import")?;
    let root = work.path().join("rootfs");
    fs::create_dir(&root)?;
    let mut tree = Tree::new(&root);
    let is_layout_dir =
        md.is_dir() && input.join("oci-layout").is_file() && input.join("index.json").is_file();
    let (source, env) = if md.is_dir() && !is_layout_dir {
        progress(Progress::Phase(format!("copying {}", input.display())));
        layer::copy_dir(&mut tree, input)?;
        ("rootfs", vec![("PATH".to_owned(), DEFAULT_PATH.to_owned())])
    } else {
        let src = if md.is_dir() {
            Source::Dir(input.to_owned())
        } else if md.is_file() {
            progress(Progress::Phase(format!("reading {}", input.display())));
            open_archive(input, work.path())?
        } else {
            return Err(invalid(input, "neither a directory nor a file"));
        };
        let plan = plan(&src).map_err(|e| invalid(input, e))?;
        let count = plan.layers.len();
        for (i, l) in plan.layers.iter().enumerate() {
            progress(Progress::Phase(format!(
                "applying layer {} of {count}",
                i + 1
            )));
            apply_layer(&mut tree, &src, l, progress).map_err(|e| match e {
                ImageError::Invalid(m) => invalid(input, m),
                other => other,
            })?;
        }
        ("oci", env_of(plan.config.as_ref()))
    };
    let skipped = tree.finish()?;
    if skipped > 0 {
        tracing::info!(skipped, "device nodes not imported (not root)");
    }
    rootfs::finish(&root).map_err(|e| invalid(input, e))?;
    let manifest = ImageManifest {
        name: name.to_owned(),
        id: String::new(),
        size: 0,
        source: source.to_owned(),
        recipe_hash: None,
        created_at: String::new(),
        env,
        os: rootfs::os_pretty_name(&root),
    };
    store.pack(&root, manifest, progress)
}

/// Opens a tarball, decompressing a gzip one into `work` first (members must be seekable).
fn open_archive(input: &Path, work: &Path) -> Result<Source> {
    let mut f = File::open(input).map_err(|e| invalid(input, e))?;
    let mut magic = [0u8; 2];
    let n = f.read(&mut magic)?;
    f.seek(SeekFrom::Start(0))?;
    if n == 2 && magic == [0x1f, 0x8b] {
        let plain = work.join("archive.tar");
        let mut out = File::create(&plain)?;
        io::copy(
            &mut flate2::read::MultiGzDecoder::new(BufReader::new(f)),
            &mut out,
        )
        .map_err(|e| invalid(input, e))?;
        drop(out);
        f = File::open(&plain)?;
    }
    Source::index_tar(f).map_err(|e| invalid(input, e))
}
