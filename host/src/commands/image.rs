//! `hybox image build|ls|import|rm`: the container route's root filesystem images, in the image
//! store (`--image-dir` / `HYBOX_IMAGE_DIR`, default `<data-dir>/images`). Local: no server.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use hybox_container_fallback::image::{self, ImageManifest, ImageStore, Progress, Recipe};
use indicatif::{ProgressBar, ProgressStyle};

/// `hybox image ...`
#[derive(Debug, Args)]
pub struct ImageArgs {
    /// What to do.
    #[command(subcommand)]
    pub verb: ImageVerb,
}

/// What to do with images.
#[derive(Debug, Subcommand)]
pub enum ImageVerb {
    /// Build an image from a recipe (default: the built-in Ubuntu 24.04 one), or find it
    /// already built. Needs root, mmdebstrap, curl and dpkg-deb; takes minutes.
    Build {
        /// Recipe file (`images/ubuntu/recipe.toml` format).
        #[arg(long)]
        recipe: Option<PathBuf>,
        /// Ubuntu mirror to bootstrap from (and to keep in the image's apt sources).
        #[arg(long, env = "HYBOX_UBUNTU_MIRROR")]
        mirror: Option<String>,
    },
    /// List images, newest first.
    Ls,
    /// Import a root filesystem directory, a `docker save` tarball or an OCI image layout
    /// (tarball or directory).
    Import {
        /// The directory or tarball.
        path: PathBuf,
        /// Name of the new image.
        #[arg(long)]
        name: String,
    },
    /// Delete an image.
    Rm {
        /// Image id (or a unique prefix of at least 8 hex digits).
        id: String,
    },
}

fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    #[expect(clippy::cast_precision_loss, reason = "display only")]
    let mut x = n as f64;
    let mut u = 0;
    while x >= 1024.0 && u + 1 < UNITS.len() {
        x /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{x:.1} {}", UNITS[u])
    }
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// A spinner showing the phase and the tool's last output line, turning into a byte bar while
/// packing. Hidden with `--json`.
struct Display {
    pb: ProgressBar,
    packing: Cell<bool>,
    worked: Cell<bool>,
}

impl Display {
    fn new(quiet: bool) -> Self {
        let pb = if quiet {
            ProgressBar::hidden()
        } else {
            ProgressBar::new_spinner()
        };
        let d = Self {
            pb,
            packing: Cell::new(false),
            worked: Cell::new(false),
        };
        d.spinner_style();
        d.pb.enable_steady_tick(Duration::from_millis(100));
        d
    }

    fn spinner_style(&self) {
        self.pb.set_style(
            ProgressStyle::with_template("{spinner} {prefix} {elapsed} {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
    }

    fn bar_style(&self) {
        self.pb.set_style(
            ProgressStyle::with_template(
                "{prefix} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
    }

    fn update(&self, p: Progress) {
        self.worked.set(true);
        match p {
            Progress::Phase(phase) => {
                if self.packing.replace(false) {
                    self.spinner_style();
                }
                self.pb.println(format!("==> {phase}"));
                self.pb.set_prefix(phase);
                self.pb.set_message("");
            }
            Progress::Line(line) => {
                let line: String = line.chars().take(160).collect();
                self.pb.set_message(line);
            }
            Progress::Count { done, total } => {
                if !self.packing.replace(true) {
                    self.bar_style();
                }
                self.pb.set_length(total.unwrap_or(done).max(done));
                self.pb.set_position(done);
            }
        }
    }

    fn finish(&self) {
        self.pb.finish_and_clear();
    }
}

fn print_manifest(store: &ImageStore, m: &ImageManifest, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(m)?);
    } else {
        println!(
            "{} {} {} {}",
            m.name,
            short(&m.id),
            human(m.size),
            store.path(m).display()
        );
    }
    Ok(())
}

/// Runs `hybox image ...` against the store in `image_dir`.
///
/// # Errors
/// Image errors (a failed build says which step and quotes its output), I/O.
pub fn run(args: ImageArgs, image_dir: &Path, json: bool) -> anyhow::Result<()> {
    let store = ImageStore::open(image_dir)
        .with_context(|| format!("opening the image store {}", image_dir.display()))?;
    match args.verb {
        ImageVerb::Build { recipe, mirror } => {
            let recipe = match recipe {
                Some(path) => Recipe::load(&path)?,
                None => Recipe::default_recipe(),
            };
            let mirror = mirror.unwrap_or_else(|| recipe.mirror());
            let started = Instant::now();
            let display = Display::new(json);
            let result = image::build_with_mirror(&store, &recipe, &mirror, &|p| {
                display.update(p);
            });
            display.finish();
            let m = result.with_context(|| format!("building image {}", recipe.name))?;
            if !json {
                if display.worked.get() {
                    eprintln!(
                        "built {} in {:.0?}",
                        m.name,
                        Duration::from_secs(started.elapsed().as_secs())
                    );
                } else {
                    eprintln!("{} is already built from this recipe", m.name);
                }
            }
            print_manifest(&store, &m, json)
        }
        ImageVerb::Ls => {
            let all = store.list()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&all)?);
                return Ok(());
            }
            println!(
                "{:<24} {:<12} {:>10} {:<7} {:<20} OS",
                "NAME", "ID", "SIZE", "SOURCE", "CREATED"
            );
            for m in &all {
                println!(
                    "{:<24} {:<12} {:>10} {:<7} {:<20} {}",
                    m.name,
                    short(&m.id),
                    human(m.size),
                    m.source,
                    m.created_at,
                    m.os.as_deref().unwrap_or("-")
                );
            }
            Ok(())
        }
        ImageVerb::Import { path, name } => {
            let display = Display::new(json);
            let result = image::import(&store, &path, &name, &|p| display.update(p));
            display.finish();
            let m = result.with_context(|| format!("importing {}", path.display()))?;
            print_manifest(&store, &m, json)
        }
        ImageVerb::Rm { id } => {
            let m = store.remove(&id)?;
            if json {
                println!("{}", serde_json::json!({ "removed": m.id }));
            } else {
                println!("removed {} ({})", short(&m.id), m.name);
            }
            Ok(())
        }
    }
}
