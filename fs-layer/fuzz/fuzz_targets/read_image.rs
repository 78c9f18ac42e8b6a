//! Any bytes as a squashfs image: `Image::open` either refuses them (`Corrupt`) or gives an
//! image whose every node can be walked and read; either way nothing panics.
#![no_main]

use std::collections::VecDeque;
use std::path::PathBuf;

use hybox_fs_layer::image::Image;
use hybox_fs_layer::{FsError, Layer, NodeKind};
use libfuzzer_sys::fuzz_target;

/// Most bytes read from one file (a tiny image can declare terabytes of holes).
const MAX_READ_PER_FILE: u64 = 16 << 20;

fn temp_path() -> PathBuf {
    let thread = format!("{:?}", std::thread::current().id());
    let thread: String = thread.chars().filter(char::is_ascii_digit).collect();
    std::env::temp_dir().join(format!(
        "hybox-fuzz-read-image-{}-{thread}.sqfs",
        std::process::id()
    ))
}

fn exercise(data: &[u8]) {
    let path = temp_path();
    std::fs::write(&path, data).expect("write the input to a temp file");
    let opened = Image::open_with(&path, 1 << 20);
    let _ = std::fs::remove_file(&path);
    let img = match opened {
        Ok(img) => img,
        Err(FsError::Corrupt { .. }) => return,
        Err(e) => panic!("unexpected error for a bad image: {e}"),
    };
    let _ = img.stats();
    let mut buf = vec![0u8; 64 * 1024];
    let mut queue = VecDeque::from([img.root()]);
    while let Some(node) = queue.pop_front() {
        let attr = img.attr(node);
        match attr.kind {
            NodeKind::Dir => {
                let children = img.children(node).expect("an indexed directory lists");
                for (name, child) in children {
                    assert_eq!(img.lookup(node, &name), Some(child));
                    queue.push_back(child);
                }
            }
            NodeKind::Symlink => {
                img.readlink(node)
                    .expect("an indexed symlink has its target");
            }
            NodeKind::File => {
                let mut off = 0u64;
                while off < attr.size.min(MAX_READ_PER_FILE) {
                    match img.read_at(node, off, &mut buf) {
                        Ok(0) => panic!("short file"),
                        Ok(n) => off += n as u64,
                        Err(e) => {
                            assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
                            break;
                        }
                    }
                }
                if attr.size > 0 {
                    if let Err(e) = img.read_at(node, attr.size - 1, &mut buf[..1]) {
                        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
                    }
                }
            }
            _ => {}
        }
        if let Some(p) = img.node_path(node) {
            let _ = img.lookup_path(&p);
        }
    }
}

fuzz_target!(|data: &[u8]| exercise(data));
