//! The fs layer's hot paths: squashfs lookup and read at an offset (the image index and its
//! bounded block cache, no FUSE), and the copy-on-write view through its real FUSE mount:
//! `stat` of a lower file and a copy-up (first write to a file that exists only in a lower
//! layer). Trees, images and the mount are made outside the timing.

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use hybox_fs_layer::cow::{self, ViewSpec, Views};
use hybox_fs_layer::events::NoEvents;
use hybox_fs_layer::image::{Image, WriteOptions, write_tree};
use hybox_fs_layer::node::Layer;

const FILES: usize = 2000;

fn tree(root: &Path) {
    for d in 0..20 {
        let dir = root.join(format!("d{d:02}"));
        std::fs::create_dir_all(&dir).expect("mkdir");
        for f in 0..FILES / 20 {
            std::fs::write(
                dir.join(format!("f{f:03}.txt")),
                format!("file {d} {f}\n").repeat(20),
            )
            .expect("write");
        }
    }
    let mut big = std::fs::File::create(root.join("big.bin")).expect("big");
    let block: Vec<u8> = (0..1 << 20)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for _ in 0..16 {
        big.write_all(&block).expect("write big");
    }
}

fn image(dir: &Path) -> Arc<Image> {
    let src = dir.join("src");
    std::fs::create_dir_all(&src).expect("src");
    tree(&src);
    let img = dir.join("img.sqfs");
    let out = std::fs::File::create(&img).expect("create image");
    write_tree(&src, out, &WriteOptions::default(), &|_| {}).expect("write image");
    Image::open(&img).expect("open image")
}

fn squashfs(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let img = image(dir.path());
    let mut g = c.benchmark_group("squashfs");
    g.bench_function("lookup_path d10/f050.txt", |b| {
        b.iter(|| img.lookup_path(Path::new("d10/f050.txt")).expect("found"));
    });
    let big = img.lookup_path(Path::new("big.bin")).expect("big");
    let mut buf = vec![0u8; 128 << 10];
    let mut off = 0u64;
    g.bench_function("read_at 128 KiB (sequential, cached blocks)", |b| {
        b.iter(|| {
            let n = img.read_at(big, off, &mut buf).expect("read");
            off = (off + n as u64) % (16 << 20);
            n
        });
    });
    g.finish();
}

fn cow_view(c: &mut Criterion) {
    if let Err(why) = cow::probe() {
        eprintln!("fs_layer: FUSE unavailable ({why}); the copy-on-write benches are skipped");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let img = image(dir.path());
    let views = Views::new(Arc::new(NoEvents));
    let mount = views.mount(&dir.path().join("mnt")).expect("mount");
    let mut n = 0u64;
    let view = |n: u64| {
        let name = format!("v{n}");
        views
            .insert(
                &name,
                ViewSpec {
                    upper: dir.path().join(format!("upper{n}")),
                    layers: vec![img.clone() as Arc<dyn Layer>],
                    read_only: false,
                },
            )
            .expect("insert view");
        mount.path().join(name)
    };
    let root = view(0);
    let mut g = c.benchmark_group("cow");
    g.bench_function("stat lower file", |b| {
        b.iter(|| std::fs::metadata(root.join("d05/f010.txt")).expect("stat"));
    });
    // Each batch gets a fresh view, so every write is a first write (a copy-up).
    g.bench_function("copy-up on first write (2 KiB lower file)", |b| {
        b.iter_batched(
            || {
                n += 1;
                view(n)
            },
            |root| {
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(root.join("d07/f020.txt"))
                    .expect("open");
                f.write_at(b"x", 0).expect("write");
            },
            BatchSize::PerIteration,
        );
    });
    g.finish();
    drop(mount);
}

criterion_group!(benches, squashfs, cow_view);
criterion_main!(benches);
