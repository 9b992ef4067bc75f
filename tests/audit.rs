//! Auditing a published image from the image alone, through the real binary:
//! `compose verify oci:DIR` and `oci-archive:FILE` rebuild from the build record
//! attached to the image (written here in the form docs/referrers.md gives: an artifact
//! manifest whose `subject` is the image, listed in `index.json` with its
//! `artifactType`), from an empty cache, with the manifest and lock gone from disk;
//! an image whose file differs from what its record rebuilds is named path by path with
//! the package; an image without a record is one line; `compose diff` compares two
//! images and their package versions.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use compose::build::{build, BuildOptions};
use compose::image_ref::{BUILD_RECORD, RECORD_LOCK, RECORD_MANIFEST};
use serde_json::{json, Value};
use support::{DebSpec, Member};

const ARCHS: [&str; 2] = ["amd64", "arm64"];
const UPSTREAM: &str = "http://archive.ubuntu.test/ubuntu";
const ZLIB_OLD: &str = "1:1.3.dfsg-3.1ubuntu2.1";
const ZLIB_NEW: &str = "1:1.3.dfsg-3.1ubuntu2.2";

const BODY: &str = r#"
[package.libc6]
paths = ["/usr/lib/*-linux-gnu/libc.so.6"]

[package.zlib1g]
paths = ["/usr/lib/*-linux-gnu/libz.so.*"]
"#;

fn triplet(arch: &str) -> &'static str {
    if arch == "amd64" {
        "x86_64-linux-gnu"
    } else {
        "aarch64-linux-gnu"
    }
}

/// libc6 and zlib1g; `zlib` is zlib1g's version and the content of its one file.
fn packages(arch: &str, zlib: &str) -> Vec<DebSpec> {
    let t = triplet(arch);
    vec![
        DebSpec::new("libc6", "2.39-0ubuntu8.4", arch, Member::Zstd)
            .file(
                &format!("/lib/{t}/libc.so.6"),
                format!("libc {arch}").into_bytes(),
                0o755,
            )
            .copyright(),
        DebSpec::new("zlib1g", zlib, arch, Member::Gz).file(
            &format!("/usr/lib/{t}/libz.so.1.3"),
            format!("zlib {zlib} {arch}").into_bytes(),
            0o644,
        ),
    ]
}

/// A repository serving the packages, the manifest and lock built from it, and the image
/// in `<dir>/image` (an OCI layout tagged `t`).
struct Built {
    ws: support::Workspace,
    manifest: PathBuf,
    lock: PathBuf,
    image: PathBuf,
}

fn built(zlib: &'static str) -> Built {
    let ws = support::Workspace::with_packages("noble", &ARCHS, |a| packages(a, zlib));
    let manifest = ws.manifest_from("auditfix", &ARCHS, UPSTREAM, &["noble"], BODY);
    let image = ws.dir.join("image");
    let result = build(&BuildOptions {
        manifest: manifest.clone(),
        output: Some(image.clone()),
        tag: Some("t".into()),
        cache: Some(ws.dir.join("cache")),
        mirrors: vec![ws.mirror(UPSTREAM)],
        archs: ARCHS.iter().map(|s| s.to_string()).collect(),
        quiet: true,
        ..BuildOptions::default()
    })
    .unwrap();
    Built {
        lock: result.lock_path,
        manifest,
        image,
        ws,
    }
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", support::sha256(bytes))
}

/// Write `bytes` as a blob of the layout at `dir`; its descriptor.
fn blob(dir: &Path, media_type: &str, bytes: &[u8]) -> Value {
    let digest = sha256(bytes);
    let path = dir
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"));
    std::fs::write(path, bytes).unwrap();
    json!({"mediaType": media_type, "digest": digest, "size": bytes.len()})
}

/// Attach `manifest` and `lock` to the image tagged `t` of the layout at `dir` as its
/// build record, in the form of docs/referrers.md, in place of any record it had.
fn attach_record(dir: &Path, manifest: &Path, lock: &Path) {
    let index_path = dir.join("index.json");
    let mut index: Value = serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    let top = index["manifests"][0].clone();
    let subject =
        json!({"mediaType": top["mediaType"], "digest": top["digest"], "size": top["size"]});
    let config = blob(dir, "application/vnd.oci.empty.v1+json", b"{}");
    let layer = |media_type: &str, path: &Path| {
        let mut d = blob(dir, media_type, &std::fs::read(path).unwrap());
        d["annotations"] = json!({"org.opencontainers.image.title":
            path.file_name().unwrap().to_str().unwrap()});
        d
    };
    let layers = vec![layer(RECORD_MANIFEST, manifest), layer(RECORD_LOCK, lock)];
    let record = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": BUILD_RECORD,
        "config": config,
        "layers": layers,
        "subject": subject,
    });
    let mut d = blob(
        dir,
        "application/vnd.oci.image.manifest.v1+json",
        &serde_json::to_vec(&record).unwrap(),
    );
    d["artifactType"] = json!(BUILD_RECORD);
    let manifests = index["manifests"].as_array_mut().unwrap();
    // Re-published: the image keeps one record, the latest.
    manifests.retain(|m| m["artifactType"] != json!(BUILD_RECORD));
    manifests.push(d);
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
}

/// `compose ARGS…` with a fresh, empty cache and `--mirror` to `ws`'s server.
fn compose(ws: &support::Workspace, args: &[&str], extra: &[&str]) -> Output {
    let cache = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_compose"))
        .args(args)
        .arg("--cache")
        .arg(cache.path())
        .arg("--mirror")
        .arg(ws.mirror_arg(UPSTREAM))
        .args(extra)
        .env("SOURCE_DATE_EPOCH", "0")
        .output()
        .unwrap();
    support::assert_cache_clean(cache.path());
    out
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A copy of a layout directory as an `oci-archive` (a tar made by GNU tar, members
/// named `./…`).
fn as_archive(layout: &Path, file: &Path) {
    let st = Command::new("tar")
        .arg("-C")
        .arg(layout)
        .arg("-cf")
        .arg(file)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn an_image_with_its_record_verifies_from_the_image_alone() {
    let b = built(ZLIB_OLD);
    attach_record(&b.image, &b.manifest, &b.lock);
    // Nothing of the build is left beside the image: the record is all there is.
    std::fs::remove_file(&b.manifest).unwrap();
    std::fs::remove_file(&b.lock).unwrap();
    std::fs::remove_file(b.ws.dir.join("archive.gpg")).unwrap();
    let image = format!("oci:{}:t", b.image.display());
    let o = compose(&b.ws, &["verify", &image], &[]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("build record found: compose.toml and compose.toml.lock"),
        "{out}"
    );
    assert!(out.contains("linux/amd64: equal"), "{out}");
    assert!(out.contains("linux/arm64/v8: equal"), "{out}");
    assert!(out.contains("verified"), "{out}");
    // The same from one tar file, read in place; no tag needed (the record is not an image).
    let archive = b.ws.dir.join("image.tar");
    as_archive(&b.image, &archive);
    let image = format!("oci-archive:{}", archive.display());
    let o = compose(&b.ws, &["verify", &image], &[]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("linux/arm64/v8: equal"), "{out}");
}

#[test]
fn an_image_that_differs_from_its_record_is_named_path_by_path() {
    let a = built(ZLIB_OLD);
    let b = built(ZLIB_NEW);
    // The image under the same tag, rebuilt with one file changed, carries the record
    // of the first build.
    attach_record(&b.image, &a.manifest, &a.lock);
    attach_record(&a.image, &a.manifest, &a.lock);
    let image = format!("oci:{}:t", b.image.display());
    let o = compose(&a.ws, &["verify", &image], &[]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    for arch in ARCHS {
        let path = format!("/usr/lib/{}/libz.so.1.3", triplet(arch));
        let line = out
            .lines()
            .find(|l| l.trim_start().starts_with(&path))
            .unwrap_or_else(|| panic!("{path} not named: {out}"));
        assert!(
            line.contains(&format!("(package zlib1g {ZLIB_OLD})")),
            "{line}"
        );
        assert!(line.contains("content sha256:"), "{line}");
    }
    assert!(out.contains("linux/amd64: different"), "{out}");
    assert!(out.contains("config rootfs.diff_ids"), "{out}");
    // The libc6 file is the same on both sides, so it is not listed.
    assert!(!out.contains("libc.so.6"), "{out}");
    assert!(out.contains("verify failed"), "{out}");

    // compose diff: the package view from both records, then the same paths.
    attach_record(&b.image, &b.manifest, &b.lock);
    let o = Command::new(env!("CARGO_BIN_EXE_compose"))
        .args(["diff", &format!("oci:{}:t", a.image.display()), &image])
        .output()
        .unwrap();
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains(&format!("amd64: package zlib1g {ZLIB_OLD} → {ZLIB_NEW}")),
        "{out}"
    );
    assert!(
        out.contains("/usr/lib/aarch64-linux-gnu/libz.so.1.3: "),
        "{out}"
    );
    let o = Command::new(env!("CARGO_BIN_EXE_compose"))
        .args(["diff", &image, &image])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn an_image_without_a_record_is_one_line_unless_manifest_and_lock_are_given() {
    let b = built(ZLIB_OLD);
    let image = format!("oci:{}", b.image.display());
    let o = compose(&b.ws, &["verify", &image], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        err.trim_end(),
        format!("error: verify: {image} has no build record; give --manifest and --lock")
    );
    assert!(o.stdout.is_empty());
    let o = compose(&b.ws, &["verify", "no-such-thing"], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr).trim_end(),
        "error: `no-such-thing` is not an image reference; give oci:DIR[:TAG], oci-archive:FILE[:TAG] or REGISTRY/REPO[:TAG|@DIGEST]"
    );
    let (m, l) = (
        b.manifest.display().to_string(),
        b.lock.display().to_string(),
    );
    let o = compose(
        &b.ws,
        &["verify", &image],
        &["--manifest", &m, "--lock", &l],
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("linux/amd64: equal"), "{out}");
    // A record whose lock was written for another manifest.
    let edited = b.ws.dir.join("edited.toml");
    let text_of = std::fs::read_to_string(&b.manifest).unwrap();
    std::fs::write(&edited, format!("{text_of}\n# edited\n")).unwrap();
    attach_record(&b.image, &edited, &b.lock);
    let o = compose(&b.ws, &["verify", &image], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("does not hold together: its lock pins manifest sha256:"),
        "{err}"
    );
    // `compose verify MANIFEST` is today's audit of the lock.
    let o = compose(&b.ws, &["verify", &m], &[]);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn composes_own_oci_archive_verifies_and_a_deb_gone_is_one_line() {
    let b = built(ZLIB_OLD);
    let archive = b.ws.dir.join("run.tar");
    build(&BuildOptions {
        manifest: b.manifest.clone(),
        output: Some(archive.clone()),
        tag: Some("t".into()),
        format: compose::output::Format::OciArchive,
        cache: Some(b.ws.dir.join("cache")),
        mirrors: vec![b.ws.mirror(UPSTREAM)],
        archs: ARCHS.iter().map(|s| s.to_string()).collect(),
        quiet: true,
        ..BuildOptions::default()
    })
    .unwrap();
    let image = format!("oci-archive:{}:t", archive.display());
    let (m, l) = (
        b.manifest.display().to_string(),
        b.lock.display().to_string(),
    );
    let o = compose(
        &b.ws,
        &["verify", &image],
        &["--manifest", &m, "--lock", &l],
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("linux/arm64/v8: equal"), "{out}");
    // The archive drops a pinned .deb (and there is no snapshot service for it): the
    // audit cannot rebuild, and says which file in one line.
    let gone = b.ws.repo.package("zlib1g", "amd64").filename;
    b.ws.repo.remove(&gone);
    let o = compose(
        &b.ws,
        &["verify", &image],
        &["--manifest", &m, "--lock", &l],
    );
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: ") && err.contains(&gone), "{err}");
    assert!(err.contains("not found (HTTP 404)"), "{err}");
}

#[test]
fn an_image_skopeo_copied_verifies_with_manifest_and_lock() {
    if !Command::new("skopeo")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        println!("SKIPPED: skopeo not installed; a layout written by another tool not verified");
        return;
    }
    let b = built(ZLIB_OLD);
    // skopeo rewrites the layout and the archive its own way (its tar framing, its
    // index.json); the image digests stay.
    let archive = b.ws.dir.join("copied.tar");
    let st = Command::new("skopeo")
        .args(["copy", "--all", "--quiet"])
        .arg(format!("oci:{}:t", b.image.display()))
        .arg(format!("oci-archive:{}:copied", archive.display()))
        .status()
        .unwrap();
    assert!(st.success());
    let (m, l) = (
        b.manifest.display().to_string(),
        b.lock.display().to_string(),
    );
    let image = format!("oci-archive:{}:copied", archive.display());
    let o = compose(
        &b.ws,
        &["verify", &image],
        &["--manifest", &m, "--lock", &l],
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("linux/amd64: equal"), "{out}");
    assert!(out.contains("linux/arm64/v8: equal"), "{out}");
}
