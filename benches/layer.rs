//! Layer write throughput on a largish real tree: the host's /usr/lib/<triplet>,
//! serialised as one deterministic gzip layer. A benchmark, not a test:
//! `cargo bench --bench layer`.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use compose::oci::{write_layer, GZIP_LEVEL};
use compose::rootfs::tree::{Node, NodeKind, Tree};

fn main() {
    let src = ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.is_dir())
        .expect("a multiarch lib directory");
    let mut tree = Tree::new().unwrap();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let path = e.path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let key = path.to_str().unwrap().to_string();
            let kind = if meta.is_dir() {
                stack.push(path.clone());
                NodeKind::Dir
            } else if meta.file_type().is_symlink() {
                NodeKind::Symlink(
                    std::fs::read_link(&path)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                )
            } else if meta.is_file() {
                let Ok(mut f) = std::fs::File::open(&path) else {
                    continue;
                };
                NodeKind::File(tree.spool.append(&mut f).unwrap())
            } else {
                continue;
            };
            let node = Node {
                kind,
                mode: meta.mode() & 0o7777,
                uid: 0,
                gid: 0,
                mtime: meta.mtime() as u64,
                origin: "host".into(),
            };
            tree.insert(&key, node).unwrap();
        }
    }
    let mut sink = std::io::sink();
    let start = std::time::Instant::now();
    let info = write_layer(&tree, 0, &mut sink).unwrap();
    let secs = start.elapsed().as_secs_f64();
    let tar_bytes: u64 = tree
        .iter()
        .map(|(_, n)| {
            if let NodeKind::File(c) = &n.kind {
                c.len
            } else {
                0
            }
        })
        .sum();
    eprintln!(
        "layer of {} entries, {:.1} MB of file data -> {:.1} MB gzip (level {GZIP_LEVEL}) in {secs:.2} s: {:.1} MB/s of input",
        tree.len(),
        tar_bytes as f64 / 1e6,
        info.size as f64 / 1e6,
        tar_bytes as f64 / 1e6 / secs
    );
}
