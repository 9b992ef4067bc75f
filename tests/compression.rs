//! Layer compression as a choice (`--compression`, `[image] compression`), through the
//! compose binary over the hermetic fixture repository: zstd layers hold the very tar
//! the gzip ones hold, with golden digests; the same bytes on one core as on all; the
//! lock records the compressor, `--locked` and `compose verify` compare like with like;
//! the layer cache keeps each compressor apart; `--format docker-archive` refuses zstd;
//! real consumers read zstd images: `compose check`, skopeo (the decompressed layer
//! checked against its diff_id), and containerd's `ctr`, which unpacks the image
//! (checking the diff_id) and runs it under runc. Without skopeo, or without root,
//! containerd, runc and a C compiler, the affected test prints SKIPPED.

mod support;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use sha2::Digest;
use support::{DebSpec, Member};

const UPSTREAM: &str = "http://archive.ubuntu.test/ubuntu";
const ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
const GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

fn packages(arch: &str) -> Vec<DebSpec> {
    // Some hundreds of kilobytes of text-like bytes: more than one gzip block.
    let mut text = Vec::new();
    let mut x: u32 = 7;
    for i in 0..1_500_000u32 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        text.push(if i % 5 == 0 {
            b'a' + (x >> 24) as u8 % 26
        } else {
            b"zstd layer "[(i as usize / 2) % 11]
        });
    }
    vec![
        DebSpec::new("libc6", "2.39-0ubuntu8.4", arch, Member::Zstd)
            .file(
                "/lib/x86_64-linux-gnu/libc.so.6",
                b"libc bytes".to_vec(),
                0o755,
            )
            .copyright(),
        DebSpec::new("tzdata", "2024a-3ubuntu1.1", arch, Member::Xz).file(
            "/usr/share/zoneinfo/big",
            text,
            0o644,
        ),
    ]
}

const BODY: &str = r#"
[package.libc6]
paths = ["/usr/lib/*-linux-gnu/libc.so.6"]

[package.tzdata]
paths = ["/usr/share/zoneinfo/big"]
"#;

struct Fixture {
    ws: support::Workspace,
    dir: PathBuf,
    manifest: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture::with_image_keys("")
    }

    /// `keys`: more lines of `[image]`.
    fn with_image_keys(keys: &str) -> Fixture {
        let ws = support::Workspace::with_packages("noble", &["amd64"], packages);
        let manifest = ws.manifest_from("zfix", &["amd64"], UPSTREAM, &["noble"], BODY);
        if !keys.is_empty() {
            let text = std::fs::read_to_string(&manifest).unwrap();
            let text = text.replacen("[image]\n", &format!("[image]\n{keys}\n"), 1);
            std::fs::write(&manifest, text).unwrap();
        }
        Fixture {
            dir: ws.dir.clone(),
            manifest,
            ws,
        }
    }

    /// `compose MANIFEST --output DIR/out --cache DIR/cache --mirror … ARGS`.
    fn compose(&self, out: &str, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_compose"))
            .arg(&self.manifest)
            .arg("--output")
            .arg(self.dir.join(out))
            .arg("--cache")
            .arg(self.dir.join("cache"))
            .args(["--mirror", &self.ws.mirror_arg(UPSTREAM), "--quiet"])
            .args(args)
            .output()
            .unwrap()
    }

    /// [`Fixture::compose`], which must succeed; the digest it prints.
    fn build(&self, out: &str, args: &[&str]) -> String {
        let run = self.compose(out, args);
        assert!(run.status.success(), "compose {args:?}: {}", stderr(&run));
        support::digest_of(&run)
    }

    /// `compose verify MANIFEST`, which must find the rebuild equal to the lock.
    fn verify(&self) {
        let run = Command::new(env!("CARGO_BIN_EXE_compose"))
            .arg("verify")
            .arg(&self.manifest)
            .arg("--cache")
            .arg(self.dir.join("cache"))
            .args(["--mirror", &self.ws.mirror_arg(UPSTREAM)])
            .output()
            .unwrap();
        assert!(run.status.success(), "verify: {}", stderr(&run));
    }

    fn lock_text(&self) -> String {
        std::fs::read_to_string(compose::lock::lock_path(&self.manifest)).unwrap()
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn blob(layout: &Path, digest: &str) -> Vec<u8> {
    std::fs::read(layout.join("blobs/sha256").join(&digest["sha256:".len()..])).unwrap()
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// The layer's media type, the layer blob, and the config's diff_id of a one-image layout.
fn layer_of(layout: &Path) -> (String, Vec<u8>, String) {
    let index = json(&layout.join("index.json"));
    let manifest: serde_json::Value = serde_json::from_slice(&blob(
        layout,
        index["manifests"][0]["digest"].as_str().unwrap(),
    ))
    .unwrap();
    let layer = &manifest["layers"][0];
    let config: serde_json::Value = serde_json::from_slice(&blob(
        layout,
        manifest["config"]["digest"].as_str().unwrap(),
    ))
    .unwrap();
    (
        layer["mediaType"].as_str().unwrap().to_string(),
        blob(layout, layer["digest"].as_str().unwrap()),
        config["rootfs"]["diff_ids"][0]
            .as_str()
            .unwrap()
            .to_string(),
    )
}

fn unzstd(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    zstd::stream::read::Decoder::new(bytes)
        .unwrap()
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// Any change of output bytes must be a conscious update of these values.
#[test]
fn zstd_layers_hold_the_gzip_layers_tar_with_golden_digests() {
    let f = Fixture::new();
    let gzip = f.build("gzip", &[]);
    let zstd = f.build("zstd", &["--compression", "zstd"]);
    let zstd9 = f.build("zstd9", &["--compression", "zstd:9"]);
    assert_eq!(
        [gzip.as_str(), zstd.as_str(), zstd9.as_str()],
        [
            "sha256:e85d4c31e22eaa697297f4636fb46a3d6217b5ca5ca259219e8674f148439d17",
            "sha256:0c373553bc001d3a97deda17222ceaaa06fba1bd0a4bdacdadd049d3f84b1e1c",
            "sha256:a780a48029841f9fa97d7e2ce97cc6e1d3b2d8026e29c02f1e4fd0c800d32d26",
        ]
    );
    let (gz_type, gz_blob, gz_diff_id) = layer_of(&f.dir.join("gzip"));
    assert_eq!(gz_type, GZIP);
    let tar = gunzip(&gz_blob);
    assert_eq!(sha256(&tar), gz_diff_id);
    for out in ["zstd", "zstd9"] {
        let (media_type, z_blob, diff_id) = layer_of(&f.dir.join(out));
        assert_eq!(media_type, ZSTD);
        assert_eq!(&z_blob[..4], [0x28, 0xb5, 0x2f, 0xfd], "a zstd frame");
        assert_eq!(diff_id, gz_diff_id, "{out}: the same tar");
        assert!(unzstd(&z_blob) == tar, "{out}: the same tar");
        assert!(z_blob.len() < gz_blob.len(), "{out}: smaller than gzip");
    }
    // The same bytes on one core (one worker each for the layer) as on all of them.
    if Command::new("taskset").arg("--version").output().is_ok() {
        let run = Command::new("taskset")
            .args(["-c", "0", env!("CARGO_BIN_EXE_compose")])
            .arg(&f.manifest)
            .arg("--output")
            .arg(f.dir.join("one-core"))
            .arg("--cache")
            .arg(f.dir.join("cache-one-core"))
            .args(["--mirror", &f.ws.mirror_arg(UPSTREAM), "--quiet"])
            .args(["--compression", "zstd"])
            .output()
            .unwrap();
        assert!(run.status.success(), "{}", stderr(&run));
        assert_eq!(support::digest_of(&run), zstd);
    } else {
        eprintln!("SKIPPED the one-core build: taskset is not installed (util-linux)");
    }
}

#[test]
fn the_manifest_chooses_the_lock_records_and_verify_and_locked_compare_like_with_like() {
    let f = Fixture::with_image_keys("compression = \"zstd:9\"");
    let digest = f.build("out", &[]);
    assert_eq!(layer_of(&f.dir.join("out")).0, ZSTD);
    let lock = f.lock_text();
    assert!(lock.contains("\ncompression zstd:9 ~"), "{lock}");
    // --compression overrides the manifest; with --locked, that is a different output.
    let run = f.compose("other", &["--locked", "--compression", "gzip"]);
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    let e = stderr(&run);
    assert!(
        e.contains("layer compression differs (zstd:9 → gzip:6)"),
        "{e}"
    );
    assert!(!f.dir.join("other").exists());
    // The same switches: the same bytes.
    assert_eq!(f.build("again", &["--locked"]), digest);
    // verify rebuilds with the recorded compressor.
    f.verify();
}

/// `text` with each fact line's content mapped by `edit` (`None` drops the line), its
/// `~CHECK` and the final checksum recomputed as compose writes them
/// (`compose::lock` documents the format).
fn relock(text: &str, edit: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::new();
    for line in text.lines() {
        if line.starts_with('#') {
            out.push_str(line);
        } else if line.starts_with("checksum ") {
            break;
        } else {
            let (content, _) = line.rsplit_once(" ~").unwrap();
            let Some(content) = edit(content) else {
                continue;
            };
            let check = &hex::encode(sha2::Sha256::digest(content.as_bytes()))[..8];
            out.push_str(&format!("{content} ~{check}"));
        }
        out.push('\n');
    }
    let sum = hex::encode(sha2::Sha256::digest(out.as_bytes()));
    out + &format!("checksum sha256:{sum}\n")
}

/// A lock of format 1 was written when compose's gzip was miniz_oxide's single member:
/// it says `gzip` (or nothing, before the `compression` line) and means that. `--locked`
/// and `compose verify` rebuild its images to the bytes it recorded, while a new lock
/// gets libdeflate's gzip.
#[test]
fn a_format_1_lock_rebuilds_its_images_with_miniz_gzip() {
    let f = Fixture::new();
    let old = f.build("old", &["--compression", "gzip-miniz"]);
    // The digest compose's gzip gave this fixture before libdeflate.
    assert_eq!(
        old,
        "sha256:d41792da58b03df4ad028a558a5cebd10a966970cf01c1f912d93e9a70b3377a"
    );
    let path = compose::lock::lock_path(&f.manifest);
    let text = f.lock_text();
    assert!(text.contains("\ncompression gzip-miniz:6 ~"), "{text}");
    for compression in [None, Some("compression gzip:6")] {
        // As the compose before format 2 wrote it: with or without the line.
        let format_1 = relock(&text, |l| match l {
            "format 2" => Some("format 1".into()),
            l if l.starts_with("compression ") => compression.map(String::from),
            l => Some(l.to_string()),
        });
        std::fs::write(&path, &format_1).unwrap();
        assert_eq!(f.build("again", &["--locked"]), old, "{compression:?}");
        assert_eq!(
            f.build("again", &["--locked", "--compression", "gzip:6"]),
            old,
            "gzip at the lock's level means the lock's gzip"
        );
        assert_eq!(f.lock_text(), format_1, "--locked leaves the lock as it is");
        f.verify();
        let run = f.compose("z", &["--locked", "--compression", "zstd"]);
        assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
        assert!(
            stderr(&run).contains("layer compression differs (gzip-miniz:6 → zstd:3)"),
            "{}",
            stderr(&run)
        );
    }
    // Without --locked, the lock is written anew: this format, libdeflate's gzip.
    let new = f.build("new", &[]);
    assert_ne!(new, old);
    let text = f.lock_text();
    assert!(
        text.contains("\nformat 2 ~") && text.contains("\ncompression gzip:6 ~"),
        "{text}"
    );
}

/// A lock of a format this compose does not read (a later compose's) is refused before
/// any work, naming the formats it reads: its lines may mean other bytes.
#[test]
fn a_lock_of_a_later_format_is_refused() {
    let f = Fixture::new();
    f.build("out", &[]);
    let path = compose::lock::lock_path(&f.manifest);
    let later = relock(&f.lock_text(), |l| match l {
        "format 2" => Some("format 3".into()),
        l => Some(l.to_string()),
    });
    std::fs::write(&path, &later).unwrap();
    let run = f.compose("again", &["--locked"]);
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    let e = stderr(&run);
    assert!(
        e.contains("compose.toml.lock:3: lock format 3 is not supported by compose ")
            && e.contains(
                "(it reads formats 1 to 2); use the compose that wrote it, or refresh the lock"
            ),
        "{e}"
    );
    assert!(!f.dir.join("again").exists());
    assert_eq!(f.lock_text(), later);
}

#[test]
fn bad_compressions_and_zstd_in_a_docker_archive_are_usage_errors() {
    let f = Fixture::new();
    let run = f.compose("out", &["--compression", "lz4"]);
    assert_eq!(run.status.code(), Some(2));
    assert!(
        stderr(&run).contains("`lz4` is not a layer compression"),
        "{}",
        stderr(&run)
    );
    let run = f.compose(
        "out.tar",
        &["--format", "docker-archive", "--compression", "zstd"],
    );
    assert_eq!(run.status.code(), Some(2));
    assert_eq!(
        stderr(&run).trim_end(),
        "error: --format docker-archive holds gzip layers only: Docker before 23 cannot load a zstd layer (zstd:3 asked for); use --format oci or oci-archive, or --compression gzip"
    );
    assert!(!f.dir.join("out.tar").exists());
    let g = Fixture::with_image_keys("compression = \"zstd:30\"");
    let run = g.compose("out", &[]);
    assert_eq!(run.status.code(), Some(2));
    let e = stderr(&run);
    assert!(
        e.contains("compose.toml:2:")
            && e.contains("the zstd level must be a whole number from 1 to 19"),
        "{e}"
    );
}

#[test]
fn each_compressor_keeps_its_own_layer_cache() {
    let f = Fixture::new();
    let zstd = f.build("z1", &["--compression", "zstd"]);
    let gzip = f.build("g1", &[]);
    let layers = f.dir.join("cache/layers");
    let mut dirs: Vec<String> = std::fs::read_dir(&layers)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    dirs.sort();
    assert_eq!(
        dirs,
        [
            "gzip6-members1024k-libdeflate1.26",
            "zstd3-job4096k-libzstd10507"
        ]
    );
    for d in &dirs {
        assert_eq!(std::fs::read_dir(layers.join(d)).unwrap().count(), 1, "{d}");
    }
    // Warm rebuilds take each layer from its own directory: the same digests.
    assert_eq!(f.build("z2", &["--compression", "zstd"]), zstd);
    assert_eq!(f.build("g2", &[]), gzip);
    // A damaged zstd entry is noticed and replaced.
    let entry = std::fs::read_dir(layers.join("zstd3-job4096k-libzstd10507"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&entry).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0xff;
    std::fs::write(&entry, bytes).unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_compose"))
        .arg(&f.manifest)
        .arg("--output")
        .arg(f.dir.join("z3"))
        .arg("--cache")
        .arg(f.dir.join("cache"))
        .args(["--mirror", &f.ws.mirror_arg(UPSTREAM)])
        .args(["--compression", "zstd"])
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(stderr(&run).contains("is damaged"), "{}", stderr(&run));
    assert_eq!(support::digest_of(&run), zstd);
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn compose_check_and_skopeo_read_zstd_images() {
    let f = Fixture::new();
    f.build("out", &["--compression", "zstd"]);
    let layout = f.dir.join("out");
    let check = Command::new(env!("CARGO_BIN_EXE_compose"))
        .arg("check")
        .arg(&layout)
        .output()
        .unwrap();
    assert!(check.status.success(), "compose check: {}", stderr(&check));
    f.build(
        "out.tar",
        &["--compression", "zstd", "--format", "oci-archive"],
    );
    if !have("skopeo") {
        eprintln!("SKIPPED skopeo: it is not installed (apt-get install skopeo)");
        return;
    }
    let (_, _, diff_id) = layer_of(&layout);
    for source in [
        format!("oci:{}:zfix", layout.display()),
        format!("oci-archive:{}", f.dir.join("out.tar").display()),
    ] {
        let dest = f.dir.join("copied");
        let _ = std::fs::remove_dir_all(&dest);
        // --dest-decompress: skopeo decodes the zstd layer; its SHA-256 must be the diff_id.
        let run = Command::new("skopeo")
            .args(["copy", "--dest-decompress", &source])
            .arg(format!("dir:{}", dest.display()))
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "skopeo copy {source}: {}",
            stderr(&run)
        );
        let decompressed = std::fs::read(dest.join(&diff_id["sha256:".len()..]))
            .expect("skopeo names the decompressed layer by its SHA-256");
        assert_eq!(sha256(&decompressed), diff_id);
        // And a plain copy into another layout keeps the zstd blob as it is.
        let copy = f.dir.join("copy-layout");
        let _ = std::fs::remove_dir_all(&copy);
        let run = Command::new("skopeo")
            .args(["copy", &source])
            .arg(format!("oci:{}:zfix", copy.display()))
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "skopeo copy {source}: {}",
            stderr(&run)
        );
        assert_eq!(layer_of(&copy).0, ZSTD);
    }
}

/// A private containerd (its own root, state and socket under a temporary directory),
/// stopped and removed when dropped.
struct Containerd {
    child: std::process::Child,
    dir: tempfile::TempDir,
}

impl Containerd {
    fn start() -> Option<Containerd> {
        let dir = tempfile::tempdir().ok()?;
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                "version = 2\nroot = \"{0}/root\"\nstate = \"{0}/state\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n[grpc]\naddress = \"{0}/sock\"\n",
                dir.path().display()
            ),
        )
        .ok()?;
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("log")).ok()?)
            .spawn()
            .ok()?;
        let c = Containerd { child, dir };
        for _ in 0..100 {
            if c.ctr(&["version"]).status.success() {
                return Some(c);
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        eprintln!(
            "containerd did not start: {}",
            std::fs::read_to_string(c.dir.path().join("log")).unwrap_or_default()
        );
        None
    }

    fn ctr(&self, args: &[&str]) -> Output {
        Command::new("ctr")
            .arg("--address")
            .arg(self.dir.path().join("sock"))
            .args(["--namespace", "compose-test"])
            .args(args)
            .output()
            .unwrap()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A static executable printing a line, built with the host's C compiler.
fn static_hello(dir: &Path) -> Option<Vec<u8>> {
    let src = dir.join("hello.c");
    std::fs::write(
        &src,
        "#include <stdio.h>\nint main(void) { puts(\"hello from a zstd layer\"); return 0; }\n",
    )
    .ok()?;
    let bin = dir.join("hello");
    let ok = Command::new("cc")
        .args(["-static", "-O2", "-o"])
        .arg(&bin)
        .arg(&src)
        .status()
        .is_ok_and(|s| s.success());
    ok.then(|| std::fs::read(&bin).ok()).flatten()
}

#[test]
fn containerd_unpacks_a_zstd_image_and_runs_it_under_runc() {
    if !rustix::process::geteuid().is_root() || !have("runc") || !have("ctr") {
        eprintln!("SKIPPED containerd run: needs root, runc and containerd (apt-get install containerd runc)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let Some(hello) = static_hello(tmp.path()) else {
        eprintln!("SKIPPED containerd run: no C compiler with static libc (apt-get install gcc libc6-dev)");
        return;
    };
    let ws = support::Workspace::with_packages("noble", &["amd64"], |arch| {
        vec![DebSpec::new("hello", "1.0-1", arch, Member::Zstd).file(
            "/usr/bin/hello",
            hello.clone(),
            0o755,
        )]
    });
    let manifest = ws.manifest_from(
        "zrun",
        &["amd64"],
        UPSTREAM,
        &["noble"],
        "[package.hello]\npaths = [\"/usr/bin/hello\"]\n",
    );
    let archive = ws.dir.join("zrun.tar");
    let run = Command::new(env!("CARGO_BIN_EXE_compose"))
        .arg(&manifest)
        .arg("--output")
        .arg(&archive)
        .arg("--cache")
        .arg(ws.dir.join("cache"))
        .args(["--mirror", &ws.mirror_arg(UPSTREAM), "--quiet"])
        .args(["--format", "oci-archive", "--compression", "zstd"])
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", stderr(&run));
    let Some(containerd) = Containerd::start() else {
        eprintln!("SKIPPED containerd run: containerd did not start");
        return;
    };
    let archive = archive.to_str().unwrap();
    let import = containerd.ctr(&[
        "images",
        "import",
        "--snapshotter",
        "native",
        "--base-name",
        "compose.test/zrun",
        archive,
    ]);
    assert!(import.status.success(), "ctr import: {}", stderr(&import));
    let images = containerd.ctr(&["images", "list", "--quiet"]);
    let name = String::from_utf8_lossy(&images.stdout)
        .lines()
        .next()
        .expect("ctr lists the imported image")
        .to_string();
    let run = containerd.ctr(&[
        "run",
        "--rm",
        "--snapshotter",
        "native",
        "--runc-binary",
        "runc",
        &name,
        "zrun-1",
        "/usr/bin/hello",
    ]);
    assert!(run.status.success(), "ctr run: {}", stderr(&run));
    assert_eq!(
        String::from_utf8_lossy(&run.stdout).trim_end(),
        "hello from a zstd layer"
    );
}
