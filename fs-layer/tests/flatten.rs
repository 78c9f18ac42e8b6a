//! Applying and counting layer stacks (what restore does without FUSE, and how snapshot
//! statistics are computed), against the tree a view would show.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use hybox_fs_layer::cow::DirLayer;
use hybox_fs_layer::flatten::{apply_stack, count_stack};
use hybox_fs_layer::node::Layer;

fn put(root: &Path, rel: &str, content: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, content).expect("write");
}

fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir") {
            let e = e.expect("entry");
            let rel = e
                .path()
                .strip_prefix(root)
                .expect("under")
                .display()
                .to_string();
            let ft = e.file_type().expect("type");
            if ft.is_dir() {
                out.insert(format!("{rel}/"), String::new());
                stack.push(e.path());
            } else if ft.is_symlink() {
                let to = std::fs::read_link(e.path()).expect("link");
                out.insert(rel, format!("-> {}", to.display()));
            } else {
                out.insert(rel, std::fs::read_to_string(e.path()).expect("read"));
            }
        }
    }
    out
}

#[test]
fn whiteouts_and_opaque_directories_apply_and_count_as_a_view_shows_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (bottom, top, dest) = (
        dir.path().join("b"),
        dir.path().join("t"),
        dir.path().join("d"),
    );
    put(&bottom, "keep.txt", "k");
    put(&bottom, "gone.txt", "g");
    put(&bottom, "old/a.txt", "a");
    put(&bottom, "old/b.txt", "b");
    put(&bottom, "merged/low.txt", "low");
    put(&bottom, "replaced", "was a file");
    std::os::unix::fs::symlink("keep.txt", bottom.join("link")).expect("symlink");
    // The top layer: deletes gone.txt, empties old/ (opaque) and adds to it, adds to merged/,
    // turns the file `replaced` into a directory, overrides keep.txt.
    put(&top, ".wh.gone.txt", "");
    put(&top, "old/.wh..wh..opq", "");
    put(&top, "old/new.txt", "n");
    put(&top, "merged/high.txt", "high");
    put(&top, "replaced/inside.txt", "i");
    put(&top, "keep.txt", "k2");
    let layers: Vec<Arc<dyn Layer>> = vec![
        Arc::new(DirLayer::new(&top).expect("top")),
        Arc::new(DirLayer::new(&bottom).expect("bottom")),
    ];
    std::fs::create_dir(&dest).expect("dest");
    put(
        &dest,
        "stale.txt",
        "restore does not clear: the caller does",
    );
    apply_stack(&layers, &dest).expect("apply");
    std::fs::remove_file(dest.join("stale.txt")).expect("stale");
    let want: BTreeMap<String, String> = [
        ("keep.txt", "k2"),
        ("old/", ""),
        ("old/new.txt", "n"),
        ("merged/", ""),
        ("merged/low.txt", "low"),
        ("merged/high.txt", "high"),
        ("replaced/", ""),
        ("replaced/inside.txt", "i"),
        ("link", "-> keep.txt"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_owned(), b.to_owned()))
    .collect();
    assert_eq!(tree(&dest), want);
    let stats = count_stack(&layers).expect("count");
    assert_eq!(
        (stats.files, stats.dirs, stats.symlinks, stats.bytes),
        (5, 4, 1, 2 + 1 + 3 + 4 + 1),
        "{stats:?}"
    );
}
