use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use sha2::{Digest, Sha256};

use super::*;
use crate::rootfs::tree::{Node, NodeKind, Tree};

/// Not very compressible, not random: text-like bytes with repeats. The input of the
/// compressors' golden digests (`super::gzip`, `super::zstd`): changing it changes them.
pub(super) fn text_like(len: usize) -> Vec<u8> {
    let mut x: u32 = 12345;
    (0..len)
        .map(|i| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            if i % 7 == 0 {
                b'a' + (x >> 24) as u8 % 26
            } else {
                b"compose layer "[(i / 3) % 14]
            }
        })
        .collect()
}

fn long_name() -> String {
    // One 180-byte component: no ustar prefix/name split fits, so a PAX path is needed.
    format!("/usr/share/{}", "n".repeat(180))
}

fn long_target() -> String {
    format!("../share/{}", "t".repeat(120))
}

/// The sample tree's entries, as (path, kind, mode, uid, gid, mtime).
fn entries() -> Vec<(String, NodeKind, u32, u32, u32, u64)> {
    use NodeKind::*;
    let f = |s: &str| File(content_marker(s));
    vec![
        ("/etc".into(), Dir, 0o755, 0, 0, 0),
        (
            "/etc/passwd".into(),
            f("root:x:0:0:root:/root:/sbin/nologin\n"),
            0o644,
            0,
            0,
            1_600_000_000,
        ),
        ("/tmp".into(), Dir, 0o1777, 0, 0, 0),
        ("/home/cnb".into(), Dir, 0o700, 1002, 1001, 0),
        (
            "/usr/bin/su".into(),
            f("#!/bin/true setuid\n"),
            0o4755,
            0,
            0,
            2_000_000_000,
        ),
        (
            "/usr/bin/aa".into(),
            Hardlink("/usr/bin/su".into()),
            0o4755,
            0,
            0,
            0,
        ),
        (
            "/usr/bin/zz".into(),
            Hardlink("/usr/bin/su".into()),
            0o4755,
            0,
            0,
            0,
        ),
        (
            "/usr/lib/libx.so.1".into(),
            f("\x7fELF not really\n"),
            0o644,
            0,
            0,
            5,
        ),
        (
            "/usr/lib/libx.so".into(),
            Symlink("libx.so.1".into()),
            0o777,
            0,
            0,
            0,
        ),
        ("/bin".into(), Symlink("usr/bin".into()), 0o777, 0, 0, 0),
        (
            "/etc/localtime".into(),
            Symlink("/usr/share/zoneinfo/Etc/UTC".into()),
            0o777,
            0,
            0,
            0,
        ),
        (long_name(), f("long\n"), 0o644, 0, 0, 0),
        (
            "/usr/lib/long-link".into(),
            Symlink(long_target()),
            0o777,
            0,
            0,
            0,
        ),
        ("/usr/lib/empty".into(), f(""), 0o600, 65534, 65534, 0),
    ]
}

/// Placeholder content: the real one is spooled in `build`.
fn content_marker(text: &str) -> crate::rootfs::tree::Content {
    crate::rootfs::tree::Content {
        offset: u64::MAX,
        len: text.len() as u64,
        sha256: Sha256::digest(text.as_bytes()).into(),
    }
}

fn text_of(path: &str) -> &'static str {
    match path {
        "/etc/passwd" => "root:x:0:0:root:/root:/sbin/nologin\n",
        "/usr/bin/su" => "#!/bin/true setuid\n",
        "/usr/lib/libx.so.1" => "\x7fELF not really\n",
        "/usr/lib/empty" => "",
        _ => "long\n",
    }
}

/// Build the sample tree inserting entries in the order of `order`.
fn build(order: &[usize]) -> Tree {
    let all = entries();
    let mut tree = Tree::new().unwrap();
    for &i in order {
        let (path, kind, mode, uid, gid, mtime) = all[i].clone();
        let kind = match kind {
            NodeKind::File(_) => {
                NodeKind::File(tree.spool.append_bytes(text_of(&path).as_bytes()).unwrap())
            }
            k => k,
        };
        let node = Node {
            kind,
            mode,
            uid,
            gid,
            mtime,
            origin: "test".into(),
        };
        tree.insert(&path, node).unwrap();
    }
    tree
}

fn sample() -> Tree {
    build(&(0..entries().len()).collect::<Vec<_>>())
}

fn layer_bytes(tree: &Tree, epoch: u64) -> (Vec<u8>, LayerInfo) {
    let mut out = Vec::new();
    let info = write_layer(tree, epoch, &mut out).unwrap();
    (out, info)
}

fn sha(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[derive(Debug)]
struct TarEntry {
    path: String,
    kind: tar::EntryType,
    link: Option<String>,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    uname: Vec<u8>,
    data: Vec<u8>,
}

fn read_tar(tar_bytes: &[u8]) -> Vec<TarEntry> {
    let mut archive = tar::Archive::new(tar_bytes);
    let mut out = Vec::new();
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        let h = e.header();
        out.push(TarEntry {
            path: String::from_utf8(e.path_bytes().into_owned()).unwrap(),
            kind: h.entry_type(),
            link: e
                .link_name_bytes()
                .map(|l| String::from_utf8(l.into_owned()).unwrap()),
            mode: h.mode().unwrap(),
            uid: h.uid().unwrap(),
            gid: h.gid().unwrap(),
            mtime: h.mtime().unwrap(),
            uname: h.username_bytes().unwrap_or_default().to_vec(),
            data,
        });
    }
    out
}

#[test]
fn insertion_order_does_not_change_a_byte() {
    let n = entries().len();
    let forward: Vec<_> = (0..n).collect();
    let backward: Vec<_> = (0..n).rev().collect();
    let shuffled: Vec<_> = (0..n).map(|i| (i * 5 + 3) % n).collect();
    let (a, ia) = layer_bytes(&build(&forward), 0);
    let (b, ib) = layer_bytes(&build(&backward), 0);
    let (c, ic) = layer_bytes(&build(&shuffled), 0);
    assert_eq!(ia, ib);
    assert_eq!(ia, ic);
    assert!(a == b && b == c);
}

#[test]
fn digests_are_those_of_the_bytes() {
    let (blob, info) = layer_bytes(&sample(), 0);
    assert_eq!(info.digest, sha(&blob));
    assert_eq!(info.size, blob.len() as u64);
    assert_eq!(info.diff_id, sha(&gunzip(&blob)));
    // gzip header: no name, mtime 0, OS 255.
    assert_eq!(&blob[..4], &[0x1f, 0x8b, 8, 0]);
    assert_eq!(&blob[4..8], &[0, 0, 0, 0]);
    assert_eq!(blob[9], 255);
}

/// The digest of the sample tree's layer. It changes only when the layer format
/// (entry order, headers, PAX use, gzip level or encoder) changes: that must be a
/// conscious decision, since it changes the digest of every image ever built.
const GOLDEN_LAYER_DIGEST: &str =
    "sha256:f378346227d3f62437d44a2d606bde0b86301156ace391f392c7981cf5e11b5f";

#[test]
fn golden_digest() {
    let (_, info) = layer_bytes(&sample(), 0);
    assert_eq!(info.digest, GOLDEN_LAYER_DIGEST, "diff_id {}", info.diff_id);
}

#[test]
fn tar_contents() {
    let (blob, _) = layer_bytes(&sample(), 1_700_000_000);
    let tar_bytes = gunzip(&blob);
    assert_eq!(tar_bytes.len() % 512, 0);
    assert!(tar_bytes[tar_bytes.len() - 1024..].iter().all(|&b| b == 0));
    let entries = read_tar(&tar_bytes);
    let paths: Vec<_> = entries.iter().map(|e| e.path.as_str()).collect();
    let long = &long_name()[1..];
    let mut expected = vec![
        "bin",
        "etc/",
        "etc/localtime",
        "etc/passwd",
        "home/",
        "home/cnb/",
        "tmp/",
        "usr/",
        "usr/bin/",
        "usr/bin/aa",
        "usr/bin/su",
        "usr/bin/zz",
        "usr/lib/",
        "usr/lib/empty",
        "usr/lib/libx.so",
        "usr/lib/libx.so.1",
        "usr/lib/long-link",
        "usr/share/",
        long,
    ];
    expected.sort_by_key(|p| format!("/{}", p.trim_end_matches('/')));
    assert_eq!(paths, expected);
    let get = |p: &str| entries.iter().find(|e| e.path == p).unwrap();

    // Hard links: the first path of the group carries the content; the others link to it.
    let aa = get("usr/bin/aa");
    assert_eq!(aa.kind, tar::EntryType::Regular);
    assert_eq!(aa.data, b"#!/bin/true setuid\n");
    assert_eq!(aa.mode, 0o4755);
    for p in ["usr/bin/su", "usr/bin/zz"] {
        assert_eq!(get(p).kind, tar::EntryType::Link, "{p}");
        assert_eq!(get(p).link.as_deref(), Some("usr/bin/aa"), "{p}");
    }
    assert_eq!(get("bin").kind, tar::EntryType::Symlink);
    assert_eq!(get("bin").link.as_deref(), Some("usr/bin"));
    assert_eq!(
        get("etc/localtime").link.as_deref(),
        Some("/usr/share/zoneinfo/Etc/UTC")
    );
    assert_eq!(
        get("usr/lib/long-link").link.as_deref(),
        Some(long_target().as_str())
    );
    assert_eq!(get(long).data, b"long\n");
    assert_eq!(get("tmp/").mode, 0o1777);
    assert_eq!(get("tmp/").kind, tar::EntryType::Directory);
    let home = get("home/cnb/");
    assert_eq!((home.mode, home.uid, home.gid), (0o700, 1002, 1001));
    let empty = get("usr/lib/empty");
    assert_eq!(
        (empty.mode, empty.uid, empty.gid, empty.data.len()),
        (0o600, 65534, 65534, 0)
    );
    assert!(entries.iter().all(|e| e.uname.is_empty()));

    // PAX headers only where ustar does not suffice: exactly two here.
    let raw_types: Vec<u8> = tar_bytes
        .chunks(512)
        .filter(|b| b[257..262] == *b"ustar")
        .map(|b| b[156])
        .collect();
    assert_eq!(raw_types.iter().filter(|&&t| t == b'x').count(), 2);
}

#[test]
fn mtimes_are_clamped_to_the_epoch() {
    let (blob, _) = layer_bytes(&sample(), 1_700_000_000);
    let entries = read_tar(&gunzip(&blob));
    let get = |p: &str| entries.iter().find(|e| e.path == p).unwrap();
    assert_eq!(get("usr/lib/libx.so.1").mtime, 5);
    assert_eq!(get("etc/passwd").mtime, 1_600_000_000);
    assert_eq!(get("usr/bin/aa").mtime, 1_700_000_000, "2e9 clamped");
    let (blob, _) = layer_bytes(&sample(), 0);
    assert!(read_tar(&gunzip(&blob)).iter().all(|e| e.mtime == 0));
}

#[test]
fn dangling_hardlink_is_an_error() {
    let mut tree = sample();
    let node = Node {
        kind: NodeKind::Hardlink("/nowhere".into()),
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime: 0,
        origin: "test".into(),
    };
    tree.insert("/usr/bin/dangling", node).unwrap();
    let err = write_layer(&tree, 0, &mut Vec::new()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "hard link /usr/bin/dangling points to /nowhere, which does not exist in the image"
    );
}

fn image_config(arch: &str, variant: Option<&str>) -> ImageConfig {
    ImageConfig {
        architecture: arch.into(),
        variant: variant.map(Into::into),
        env: vec![
            "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt".into(),
            "PATH=/usr/bin".into(),
        ],
        user: Some("1002:1001".into()),
        workdir: Some("/home/cnb".into()),
        entrypoint: Some(vec![]),
        cmd: Some(vec!["/usr/bin/su".into()]),
        labels: BTreeMap::from([("io.buildpacks.stack.id".into(), "test".into())]),
    }
}

/// Write a layout of the sample tree for `arches` into `output`.
fn write_layout(output: &Path, arches: &[(&str, Option<&str>)]) -> String {
    let tree = sample();
    let mut w = LayoutWriter::create_beside(output).unwrap();
    let mut manifests = Vec::new();
    for (arch, variant) in arches {
        let layer = w.write_layer(&tree, 0).unwrap();
        let annotations = BTreeMap::from([(
            "org.opencontainers.image.title".to_string(),
            "sample".to_string(),
        )]);
        manifests.push(
            w.write_image(&image_config(arch, *variant), &layer, 0, &annotations)
                .map(|i| i.manifest)
                .unwrap(),
        );
    }
    let digest = w.finish(manifests, "sample").unwrap();
    w.commit(output).unwrap();
    digest
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn blob(layout: &Path, digest: &str) -> std::path::PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.strip_prefix("sha256:").unwrap())
}

#[test]
fn layout_single_arch() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out/sample");
    let digest = write_layout(&out, &[("amd64", None)]);
    assert_eq!(
        std::fs::read(out.join("oci-layout")).unwrap(),
        br#"{"imageLayoutVersion":"1.0.0"}"#
    );
    let index = read_json(&out.join("index.json"));
    let top = &index["manifests"][0];
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(top["digest"], digest.as_str());
    assert_eq!(top["mediaType"], MEDIA_TYPE_MANIFEST);
    assert_eq!(top["annotations"][ANNOTATION_REF_NAME], "sample");
    let manifest_bytes = std::fs::read(blob(&out, &digest)).unwrap();
    assert_eq!(sha(&manifest_bytes), digest);
    let manifest: serde_json::Value = serde_json::from_slice(&manifest_bytes).unwrap();
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(manifest["layers"][0]["mediaType"], MEDIA_TYPE_LAYER);
    let config = read_json(&blob(&out, manifest["config"]["digest"].as_str().unwrap()));
    assert_eq!(config["created"], "1970-01-01T00:00:00Z");
    assert_eq!(config["history"][0]["created_by"], "compose");
    assert_eq!(config["os"], "linux");
    assert_eq!(config["config"]["Env"][0], "PATH=/usr/bin", "env sorted");
    let layer_digest = manifest["layers"][0]["digest"].as_str().unwrap();
    let layer = std::fs::read(blob(&out, layer_digest)).unwrap();
    assert_eq!(sha(&layer), layer_digest);
    assert_eq!(
        config["rootfs"]["diff_ids"][0],
        sha(&gunzip(&layer)).as_str()
    );
    // Canonical JSON: no whitespace, sorted keys.
    let text = String::from_utf8(manifest_bytes).unwrap();
    assert!(!text.contains(' ') && !text.contains('\n'), "{text}");
    assert!(text.starts_with(r#"{"annotations":"#), "{text}");
    // No temporary directories left beside the output.
    let left: Vec<_> = std::fs::read_dir(out.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["sample"]);

    // Same input, same digest, in another directory.
    let other = dir.path().join("elsewhere");
    assert_eq!(write_layout(&other, &[("amd64", None)]), digest);
}

#[test]
fn layout_multi_arch() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("multi");
    let digest = write_layout(&out, &[("arm64", Some("v8")), ("amd64", None)]);
    let index = read_json(&out.join("index.json"));
    assert_eq!(index["manifests"][0]["mediaType"], MEDIA_TYPE_INDEX);
    assert_eq!(index["manifests"][0]["digest"], digest.as_str());
    let inner = read_json(&blob(&out, &digest));
    let platforms: Vec<_> = inner["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["platform"]["architecture"].as_str().unwrap(),
                m["platform"]["variant"].as_str(),
            )
        })
        .collect();
    assert_eq!(platforms, [("amd64", None), ("arm64", Some("v8"))]);
    // Order of the arguments does not matter.
    assert_eq!(
        write_layout(
            &dir.path().join("m2"),
            &[("amd64", None), ("arm64", Some("v8"))]
        ),
        digest
    );
}

#[test]
fn nothing_at_output_without_commit() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    {
        let mut w = LayoutWriter::create_beside(&out).unwrap();
        w.write_layer(&sample(), 0).unwrap();
        assert!(w.path().exists());
        // Then the build fails: the writer is dropped.
    }
    assert!(!out.exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "temp dir removed"
    );

    // A failing layer write too.
    let mut tree = sample();
    let node = Node {
        kind: NodeKind::Hardlink("/nowhere".into()),
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime: 0,
        origin: "test".into(),
    };
    tree.insert("/x", node).unwrap();
    {
        let mut w = LayoutWriter::create_beside(&out).unwrap();
        assert!(w.write_layer(&tree, 0).is_err());
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn commit_replaces_a_layout_but_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("img");
    write_layout(&out, &[("amd64", None)]);
    std::fs::write(out.join("stale"), "old").unwrap();
    write_layout(&out, &[("arm64", Some("v8"))]);
    assert!(!out.join("stale").exists(), "old layout replaced");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "nothing left aside"
    );

    let precious = dir.path().join("home");
    std::fs::create_dir(&precious).unwrap();
    std::fs::write(precious.join("thesis.tex"), "years of work").unwrap();
    let mut w = LayoutWriter::create_beside(&precious).unwrap();
    let layer = w.write_layer(&sample(), 0).unwrap();
    let m = w
        .write_image(&image_config("amd64", None), &layer, 0, &BTreeMap::new())
        .map(|i| i.manifest)
        .unwrap();
    w.finish(vec![m], "t").unwrap();
    let err = w.commit(&precious).unwrap_err();
    assert!(matches!(err, OciError::NotALayout { .. }), "{err}");
    assert!(precious.join("thesis.tex").exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        2,
        "temp dir removed"
    );
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn skopeo_and_umoci_accept_the_layout() {
    let dir = tempfile::tempdir().unwrap();
    let single = dir.path().join("single");
    let multi = dir.path().join("multi");
    write_layout(&single, &[("amd64", None)]);
    write_layout(&multi, &[("amd64", None), ("arm64", Some("v8"))]);

    if have("skopeo") {
        let text = run(Command::new("skopeo")
            .arg("inspect")
            .arg(format!("oci:{}:sample", single.display())));
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["Architecture"], "amd64");
        assert_eq!(v["Created"], "1970-01-01T00:00:00Z");
        assert_eq!(v["Layers"].as_array().unwrap().len(), 1);
        for (arch, variant) in [("amd64", None), ("arm64", Some("v8"))] {
            let mut cmd = Command::new("skopeo");
            cmd.args(["--override-os", "linux", "--override-arch", arch]);
            if let Some(v) = variant {
                cmd.args(["--override-variant", v]);
            }
            let text = run(cmd
                .arg("inspect")
                .arg(format!("oci:{}:sample", multi.display())));
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["Architecture"], arch);
        }
        // --raw on the multi-arch layout gives the image index.
        let raw = run(Command::new("skopeo")
            .args(["inspect", "--raw"])
            .arg(format!("oci:{}:sample", multi.display())));
        assert!(raw.contains(MEDIA_TYPE_INDEX), "{raw}");
    } else {
        eprintln!("SKIPPED: skopeo not installed");
    }

    if have("umoci") {
        let bundle = dir.path().join("bundle");
        let mut cmd = Command::new("umoci");
        cmd.arg("unpack");
        let root = std::fs::metadata("/proc/self")
            .map(|m| m.uid() == 0)
            .unwrap_or(false);
        if !root {
            cmd.arg("--rootless");
        }
        run(cmd
            .arg("--image")
            .arg(format!("{}:sample", single.display()))
            .arg(&bundle));
        let rootfs = bundle.join("rootfs");
        let meta = |p: &str| std::fs::symlink_metadata(rootfs.join(p)).unwrap();
        assert_eq!(
            std::fs::read(rootfs.join("etc/passwd")).unwrap(),
            text_of("/etc/passwd").as_bytes()
        );
        assert_eq!(
            std::fs::read_link(rootfs.join("bin")).unwrap(),
            Path::new("usr/bin")
        );
        assert_eq!(
            std::fs::read_link(rootfs.join("etc/localtime")).unwrap(),
            Path::new("/usr/share/zoneinfo/Etc/UTC")
        );
        assert_eq!(
            std::fs::read_link(rootfs.join("usr/lib/long-link")).unwrap(),
            Path::new(&long_target())
        );
        assert_eq!(
            std::fs::read(rootfs.join(&long_name()[1..])).unwrap(),
            b"long\n"
        );
        assert_eq!(meta("usr/bin/su").permissions().mode() & 0o7777, 0o4755);
        assert_eq!(
            meta("usr/bin/su").ino(),
            meta("usr/bin/aa").ino(),
            "hard link"
        );
        assert_eq!(
            meta("usr/bin/su").ino(),
            meta("usr/bin/zz").ino(),
            "hard link"
        );
        assert_eq!(meta("usr/bin/su").nlink(), 3);
        assert_eq!(meta("tmp").permissions().mode() & 0o7777, 0o1777);
        assert_eq!(meta("home/cnb").permissions().mode() & 0o7777, 0o700);
        if root {
            assert_eq!(
                (meta("home/cnb").uid(), meta("home/cnb").gid()),
                (1002, 1001)
            );
            assert_eq!(meta("usr/lib/empty").uid(), 65534);
        }
        let config = read_json(&bundle.join("config.json"));
        assert_eq!(config["process"]["cwd"], "/home/cnb");
    } else {
        eprintln!("SKIPPED: umoci not installed");
    }
}
