//! End to end over the hermetic fixture: a signed apt repository built by the test,
//! served on 127.0.0.1, composed into an OCI layout and read back.

mod support;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use compose::build::{build, BuildOptions};
use support::{sha256, DebSpec, IndexVariants, Member, Repo, Server, SuiteSpec, TestKey};

const ARCH: &str = "arm64";
const TRIPLET: &str = "aarch64-linux-gnu";

fn packages_noble() -> Vec<DebSpec> {
    vec![
        // Debian-style unmerged path: /lib/<triplet>/libc.so.6 must land in /usr/lib.
        DebSpec::new("libc6", "2.39-0ubuntu8", ARCH, Member::Zstd)
            .file(
                &format!("/lib/{TRIPLET}/libc.so.6"),
                b"libc bytes".to_vec(),
                0o755,
            )
            .file(
                "/usr/share/doc/libc6/changelog.Debian.gz",
                b"changes".to_vec(),
                0o644,
            )
            .copyright(),
        DebSpec::new("libfoo1", "1.0-1", ARCH, Member::Xz)
            .file(
                &format!("/usr/lib/{TRIPLET}/libfoo.so.1.0.0"),
                b"foo 1.0-1".to_vec(),
                0o644,
            )
            .symlink(
                &format!("/usr/lib/{TRIPLET}/libfoo.so.1"),
                "libfoo.so.1.0.0",
            )
            .copyright(),
        DebSpec::new("tzdata", "2024a-1", "all", Member::Gz)
            .file("/usr/share/zoneinfo/UTC", b"TZif utc".to_vec(), 0o644)
            .file(
                "/usr/share/zoneinfo/Europe/Paris",
                b"TZif paris".to_vec(),
                0o644,
            )
            .file(
                "/usr/share/zoneinfo/right/UTC",
                b"TZif right".to_vec(),
                0o644,
            )
            .copyright(),
    ]
}

fn packages_updates() -> Vec<DebSpec> {
    vec![
        DebSpec::new("libfoo1", "1.0-1ubuntu0.1", ARCH, Member::Zstd)
            .file(
                &format!("/usr/lib/{TRIPLET}/libfoo.so.1.0.0"),
                b"foo 1.0-1ubuntu0.1".to_vec(),
                0o644,
            )
            .symlink(
                &format!("/usr/lib/{TRIPLET}/libfoo.so.1"),
                "libfoo.so.1.0.0",
            )
            .hardlink(
                &format!("/usr/lib/{TRIPLET}/libfoo-alt.so.1"),
                &format!("/usr/lib/{TRIPLET}/libfoo.so.1.0.0"),
            )
            .copyright(),
    ]
}

fn repo_with(key: &TestKey, variants: IndexVariants) -> Repo {
    let mut noble = SuiteSpec::new("noble", &["main"], &[ARCH]);
    for p in packages_noble() {
        noble = noble.package("main", p);
    }
    let mut updates = SuiteSpec::new("noble-updates", &["main"], &[ARCH]);
    for p in packages_updates() {
        updates = updates.package("main", p);
    }
    Repo::build(key, &[noble, updates], variants)
}

const MANIFEST_BODY: &str = r#"
[package.libc6]
paths = ["/usr/lib/*-linux-gnu/libc.so.6"]

[package.libfoo1]
paths = ["/usr/lib/*-linux-gnu/libfoo.so.*", "/usr/lib/*-linux-gnu/libfoo-alt.so.1"]

[package.tzdata]
paths = ["/usr/share/zoneinfo/**"]
exclude = ["/usr/share/zoneinfo/right/**"]
"#;

struct Fixture {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    key: TestKey,
    repo: Repo,
    server: Server,
    manifest: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture::with_variants(IndexVariants::ALL)
    }

    fn with_variants(variants: IndexVariants) -> Fixture {
        let key = TestKey::generate("compose fixture <fixture@example.invalid>");
        let repo = repo_with(&key, variants);
        let server = repo.serve();
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        support::write_keyring(&dir, "archive.gpg", &key);
        let manifest = Fixture::write(&dir, &server.url, MANIFEST_BODY);
        Fixture {
            _dir: tmp,
            dir,
            key,
            repo,
            server,
            manifest,
        }
    }

    fn write(dir: &Path, url: &str, body: &str) -> PathBuf {
        let text = format!(
            "[image]\nname = \"fixture\"\narchitectures = [\"{ARCH}\"]\nenv = {{ LANG = \"C.UTF-8\" }}\nlabels = {{ \"org.example.b\" = \"2\", \"org.example.a\" = \"1\" }}\n\n{}\n{body}",
            support::source_toml(url, &["noble", "noble-updates"], &["main"], "archive.gpg")
        );
        support::write_manifest(dir, &text)
    }

    fn opts(&self, out: &str, cache: &str) -> BuildOptions {
        BuildOptions {
            manifest: self.manifest.clone(),
            output: Some(self.dir.join(out)),
            cache: Some(self.dir.join(cache)),
            quiet: true,
            ..BuildOptions::default()
        }
    }

    fn build(&self) -> Result<compose::build::BuildResult, compose::Error> {
        build(&self.opts("out", "cache"))
    }

    fn error(&self) -> String {
        let e = self.build().expect_err("the build must fail");
        assert!(
            !self.dir.join("out").exists(),
            "nothing may be left at --output after: {e}"
        );
        e.to_string()
    }
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn blob(layout: &Path, digest: &str) -> Vec<u8> {
    let hex = digest.strip_prefix("sha256:").unwrap();
    let bytes = std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap();
    assert_eq!(sha256(&bytes), hex, "blob {digest} does not match its name");
    bytes
}

#[derive(Debug)]
struct TarEntry {
    kind: tar::EntryType,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    link: Option<String>,
    data: Vec<u8>,
}

/// Read the single image of a layout: (manifest, config, layer entries by path).
fn read_image(
    layout: &Path,
) -> (
    serde_json::Value,
    serde_json::Value,
    BTreeMap<String, TarEntry>,
) {
    let index = json(&layout.join("index.json"));
    let desc = &index["manifests"][0];
    assert_eq!(
        desc["annotations"]["org.opencontainers.image.ref.name"],
        "fixture"
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&blob(layout, desc["digest"].as_str().unwrap())).unwrap();
    let config: serde_json::Value = serde_json::from_slice(&blob(
        layout,
        manifest["config"]["digest"].as_str().unwrap(),
    ))
    .unwrap();
    let layer = blob(layout, manifest["layers"][0]["digest"].as_str().unwrap());
    let mut tar_bytes = Vec::new();
    flate2::read::MultiGzDecoder::new(&layer[..])
        .read_to_end(&mut tar_bytes)
        .unwrap();
    assert_eq!(
        config["rootfs"]["diff_ids"][0],
        format!("sha256:{}", sha256(&tar_bytes))
    );
    let mut entries = BTreeMap::new();
    let mut archive = tar::Archive::new(&tar_bytes[..]);
    let mut order = Vec::new();
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e
            .path()
            .unwrap()
            .to_string_lossy()
            .trim_end_matches('/')
            .to_string();
        let h = e.header().clone();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        order.push(path.clone());
        entries.insert(
            path,
            TarEntry {
                kind: h.entry_type(),
                mode: h.mode().unwrap(),
                uid: h.uid().unwrap(),
                gid: h.gid().unwrap(),
                mtime: h.mtime().unwrap(),
                link: e
                    .link_name()
                    .unwrap()
                    .map(|l| l.to_string_lossy().to_string()),
                data,
            },
        );
    }
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted, "layer entries must be sorted by path");
    (manifest, config, entries)
}

#[test]
fn composes_the_fixture_into_a_verified_layout() {
    let f = Fixture::new();
    let result = f.build().unwrap();
    let out = f.dir.join("out");
    let index = json(&out.join("index.json"));
    assert_eq!(index["manifests"][0]["digest"], result.digest.as_str());
    assert_eq!(
        std::fs::read_to_string(out.join("oci-layout")).unwrap(),
        r#"{"imageLayoutVersion":"1.0.0"}"#
    );
    let (manifest, config, entries) = read_image(&out);
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(config["architecture"], "arm64");
    assert_eq!(config["variant"], "v8");
    assert_eq!(config["os"], "linux");
    assert_eq!(config["created"], "1970-01-01T00:00:00Z");
    let env: Vec<&str> = config["config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(env[0], "LANG=C.UTF-8");
    assert!(env[1].starts_with("PATH=/usr/local/sbin:"), "{env:?}");
    assert_eq!(config["config"]["Labels"]["org.example.a"], "1");

    // Highest version across suites: libfoo1 from noble-updates.
    let libfoo = result.images[0]
        .packages
        .iter()
        .find(|p| p.name == "libfoo1")
        .unwrap();
    assert_eq!(libfoo.version, "1.0-1ubuntu0.1");
    assert_eq!(libfoo.suite, "noble-updates");
    let lib = format!("usr/lib/{TRIPLET}");
    let link = &entries[&format!("{lib}/libfoo.so.1")];
    assert_eq!(
        (link.kind, link.link.as_deref()),
        (tar::EntryType::Symlink, Some("libfoo.so.1.0.0"))
    );
    // A hard-link pair as sorted GNU tar packs it: the name that sorts first holds the
    // data, the other links to it; the layer keeps that.
    let data = &entries[&format!("{lib}/libfoo-alt.so.1")];
    assert_eq!(
        (data.kind, data.data.as_slice()),
        (tar::EntryType::Regular, &b"foo 1.0-1ubuntu0.1"[..])
    );
    let hard = &entries[&format!("{lib}/libfoo.so.1.0.0")];
    assert_eq!(hard.kind, tar::EntryType::Link);
    assert_eq!(
        hard.link.as_deref(),
        Some(format!("{lib}/libfoo-alt.so.1").as_str())
    );

    // Merged-usr: /lib/<triplet>/libc.so.6 of the package is /usr/lib/… in the image.
    let libc = &entries[&format!("{lib}/libc.so.6")];
    assert_eq!(
        (libc.data.as_slice(), libc.mode),
        (&b"libc bytes"[..], 0o755)
    );
    assert!(!entries.contains_key(&format!("lib/{TRIPLET}/libc.so.6")));
    for top in ["bin", "sbin", "lib"] {
        let e = &entries[top];
        assert_eq!(
            (e.kind, e.link.as_deref()),
            (tar::EntryType::Symlink, Some(format!("usr/{top}").as_str()))
        );
    }

    // Selection: excluded and unselected files are absent, copyright kept.
    assert!(entries.contains_key("usr/share/zoneinfo/Europe/Paris"));
    assert!(!entries.contains_key("usr/share/zoneinfo/right/UTC"));
    // The directory that held only excluded entries goes too.
    assert!(!entries.contains_key("usr/share/zoneinfo/right"));
    assert!(!entries.contains_key("usr/share/doc/libc6/changelog.Debian.gz"));
    for p in ["libc6", "libfoo1", "tzdata"] {
        assert!(
            entries.contains_key(&format!("usr/share/doc/{p}/copyright")),
            "{p} copyright"
        );
    }
    // Scanner metadata: the control file verbatim.
    let status = String::from_utf8(entries["var/lib/dpkg/status.d/libfoo1"].data.clone()).unwrap();
    assert!(
        status.contains("Package: libfoo1\n") && status.contains("Version: 1.0-1ubuntu0.1\n"),
        "{status}"
    );
    assert!(entries.contains_key("var/lib/dpkg/status.d/libfoo1.md5sums"));

    // Deterministic metadata: numeric owners, clamped mtimes.
    for (path, e) in &entries {
        assert_eq!((e.uid, e.gid), (0, 0), "{path}");
        assert_eq!(e.mtime, 0, "{path}: mtime must be clamped to the epoch");
    }
}

#[test]
fn the_same_digest_twice_and_from_an_empty_cache() {
    let f = Fixture::new();
    let first = build(&f.opts("out1", "cache1")).unwrap();
    let second = build(&f.opts("out2", "cache1")).unwrap();
    let third = build(&f.opts("out3", "cache2")).unwrap();
    assert_eq!(first.digest, second.digest);
    assert_eq!(first.digest, third.digest);
    // The second build re-used the cache: no .deb was downloaded again.
    let deb = f.repo.package("libc6", ARCH);
    assert_eq!(
        f.server.hits(&format!("/{}", deb.filename)),
        2,
        "one download per cache"
    );
    // Rebuilding over an existing output replaces it.
    let again = build(&f.opts("out1", "cache1")).unwrap();
    assert_eq!(again.digest, first.digest);
}

/// Any change in output bytes must be a conscious update of this value.
#[test]
fn golden_digest() {
    let f = Fixture::new();
    let result = f.build().unwrap();
    assert_eq!(
        result.digest,
        // Changed when gzip layers became one libdeflate member per block
        // (docs/compression.md); the miniz gzip of before still gives the old digest.
        "sha256:a6d6e170b405bcd981ef41d49ec44b86e40c1d124cd51a063e25031beb397989"
    );
    let mut opts = f.opts("miniz", "cache-miniz");
    opts.compression = Some(compose::oci::Compressor::GzipMiniz(6));
    assert_eq!(
        build(&opts).unwrap().digest,
        // Changed when the empty usr/share/zoneinfo/right left by `exclude` went away.
        "sha256:20b057bf9796b0f29d3067210aec6b8b9d79fec12d47bd91e951ef999274387d"
    );
}

#[test]
fn source_date_epoch_sets_created_and_clamps_mtimes() {
    let f = Fixture::new();
    let mut opts = f.opts("out", "cache");
    opts.epoch = 1_700_000_000;
    build(&opts).unwrap();
    let (_, config, entries) = read_image(&f.dir.join("out"));
    assert_eq!(config["created"], "2023-11-14T22:13:20Z");
    // Package files carry the fixture's mtime (2024-04-20), later than the epoch: clamped.
    assert_eq!(entries["usr/share/zoneinfo/UTC"].mtime, 1_700_000_000);
}

#[test]
fn release_gpg_is_used_when_there_is_no_inrelease() {
    let f = Fixture::new();
    f.repo.remove("dists/noble/InRelease");
    f.repo.remove("dists/noble-updates/InRelease");
    let result = f.build().unwrap();
    assert_eq!(result.digest, Fixture::new().build().unwrap().digest);
    assert_eq!(f.server.hits("/dists/noble/Release.gpg"), 1);
}

#[test]
fn a_missing_index_variant_falls_back_to_the_next() {
    let f = Fixture::new();
    let index = "dists/noble/main/binary-arm64/Packages";
    f.repo.remove(&format!("{index}.xz"));
    f.build().unwrap();
    assert_eq!(f.server.hits(&format!("/{index}.xz")), 1);
    assert_eq!(f.server.hits(&format!("/{index}.gz")), 1);
    assert_eq!(f.server.hits(&format!("/{index}")), 0);

    let g = Fixture::new();
    g.repo.remove(&format!("{index}.xz"));
    g.repo.remove(&format!("{index}.gz"));
    g.build().unwrap();
    assert_eq!(
        g.server.hits(&format!("/{index}")),
        1,
        "plain Packages is the last resort"
    );
}

#[test]
fn an_index_listed_nowhere_is_an_error() {
    let f = Fixture::with_variants(IndexVariants::XZ_ONLY);
    f.repo.remove("dists/noble/main/binary-arm64/Packages.xz");
    let e = f.error();
    assert!(e.contains("no Packages index for main/binary-arm64"), "{e}");
}

#[test]
fn a_signature_by_an_unknown_key_only_is_refused() {
    let f = Fixture::new();
    let stranger = TestKey::generate("stranger <stranger@example.invalid>");
    f.repo.resign("noble", &stranger);
    let e = f.error();
    assert!(e.contains("dists/noble/InRelease"), "{e}");
    assert!(e.to_lowercase().contains("signature"), "{e}");
}

#[test]
fn a_second_signature_by_an_unknown_key_is_ignored() {
    let f = Fixture::new();
    let stranger = TestKey::generate("stranger <stranger@example.invalid>");
    f.repo.resign_with("noble", &[&stranger, &f.key]);
    f.build().unwrap();
}

#[test]
fn tampered_inrelease_text_is_refused_naming_the_signature() {
    let f = Fixture::new();
    let path = "dists/noble/InRelease";
    let text = String::from_utf8(f.repo.read(path)).unwrap();
    let tampered = text.replacen("Suite: noble", "Suite: nobla", 1);
    assert_ne!(text, tampered);
    f.repo.write(path, tampered.as_bytes());
    let e = f.error();
    assert!(e.to_lowercase().contains("signature"), "{e}");
    assert!(e.contains(path), "{e}");
}

#[test]
fn a_packages_hash_mismatch_names_url_expected_and_actual() {
    let f = Fixture::with_variants(IndexVariants::GZ_ONLY);
    let rel = "dists/noble/main/binary-arm64/Packages.gz";
    let expected = sha256(&f.repo.read(rel));
    let mut bytes = f.repo.read(rel);
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    let actual = sha256(&bytes);
    f.repo.write(rel, &bytes);
    let e = f.error();
    assert!(e.contains(&f.server.url_of(rel)), "{e}");
    assert!(e.contains(&expected) && e.contains(&actual), "{e}");
}

#[test]
fn a_deb_hash_or_size_mismatch_names_url_expected_and_actual() {
    let f = Fixture::new();
    let deb = f.repo.package("libc6", ARCH);
    let mut bytes = f.repo.read(&deb.filename);
    let n = bytes.len();
    bytes[n - 1] ^= 0x01;
    f.repo.write(&deb.filename, &bytes);
    let e = f.error();
    assert!(e.contains(&f.server.url_of(&deb.filename)), "{e}");
    assert!(
        e.contains(&deb.sha256) && e.contains(&sha256(&bytes)),
        "{e}"
    );
    // Nothing unverified entered the cache.
    assert!(!f.dir.join("cache/sha256").join(sha256(&bytes)).exists());

    bytes.push(0);
    f.repo.write(&deb.filename, &bytes);
    let e = f.error();
    assert!(
        e.contains("size mismatch") && e.contains(&deb.size.to_string()),
        "{e}"
    );
}

#[test]
fn a_missing_package_file_is_a_404_error() {
    let f = Fixture::new();
    let deb = f.repo.package("tzdata", "all");
    f.repo.remove(&deb.filename);
    let e = f.error();
    assert!(
        e.contains("404") && e.contains(&f.server.url_of(&deb.filename)),
        "{e}"
    );
}

#[test]
fn a_required_pattern_that_matches_nothing_names_package_and_pattern() {
    let f = Fixture::new();
    Fixture::write(
        &f.dir,
        &f.server.url,
        &MANIFEST_BODY.replace(
            "libc.so.6\"]",
            "libc.so.6\", \"/usr/lib/*-linux-gnu/libcrypt.so.1\"]",
        ),
    );
    let e = f.error();
    assert!(
        e.contains("libc6") && e.contains("/usr/lib/*-linux-gnu/libcrypt.so.1"),
        "{e}"
    );
}

#[test]
fn an_undeclared_package_is_an_error() {
    let f = Fixture::new();
    Fixture::write(
        &f.dir,
        &f.server.url,
        &format!("{MANIFEST_BODY}\n[package.libbar2]\npaths = []\n"),
    );
    let e = f.error();
    assert!(
        e.contains("libbar2") && e.contains("not in any index"),
        "{e}"
    );
}

fn compose_cmd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_compose"))
}

#[test]
fn cli_prints_the_digest_last_and_exits_2_on_manifest_errors() {
    let f = Fixture::new();
    let out = f.dir.join("cli-out");
    let run = compose_cmd()
        .arg(&f.manifest)
        .args([
            "--output",
            out.to_str().unwrap(),
            "--cache",
            f.dir.join("cache").to_str().unwrap(),
            "--quiet",
        ])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let stdout = String::from_utf8(run.stdout).unwrap();
    let last = stdout.lines().last().unwrap();
    assert!(last.starts_with("sha256:") && last.len() == 71, "{stdout}");
    assert_eq!(
        json(&out.join("index.json"))["manifests"][0]["digest"],
        last
    );

    let bad =
        support::write_manifest_named(&f.dir, "bad.toml", "[image]\nname = \"x\"\nnmae = 1\n");
    let run = compose_cmd().arg(&bad).output().unwrap();
    assert_eq!(run.status.code(), Some(2));
    let stderr = String::from_utf8(run.stderr).unwrap();
    assert!(
        stderr.contains("bad.toml:3:1:") && stderr.contains("unknown field `nmae`"),
        "{stderr}"
    );
    assert!(stderr.contains("hint:"), "{stderr}");

    let run = compose_cmd()
        .arg(&f.manifest)
        .args(["--arch", "sparc"])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(2));
    let run = compose_cmd()
        .arg(&f.manifest)
        .args(["--mirror", "nonsense"])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(2));
}

/// Real consumers: skopeo and umoci (installed by .ci/run) accept the layout.
#[test]
fn skopeo_and_umoci_accept_the_layout() {
    let f = Fixture::new();
    f.build().unwrap();
    let out = f.dir.join("out");
    let layout = format!("{}:fixture", out.display());
    match Command::new("skopeo")
        .args(["inspect", "--raw", &format!("oci:{layout}")])
        .output()
    {
        Ok(run) => {
            assert!(
                run.status.success(),
                "skopeo: {}",
                String::from_utf8_lossy(&run.stderr)
            );
            let raw: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
            assert_eq!(raw["schemaVersion"], 2);
            let run = Command::new("skopeo")
                .args(["inspect", &format!("oci:{layout}")])
                .output()
                .unwrap();
            assert!(
                run.status.success(),
                "skopeo: {}",
                String::from_utf8_lossy(&run.stderr)
            );
            let info: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
            assert_eq!(info["Architecture"], "arm64");
        }
        Err(_) => {
            eprintln!("SKIPPED skopeo check: skopeo is not installed (apt-get install skopeo)")
        }
    }
    let bundle = f.dir.join("bundle");
    match Command::new("umoci")
        .args(["unpack", "--rootless", "--image", &layout])
        .arg(&bundle)
        .output()
    {
        Ok(run) => {
            assert!(
                run.status.success(),
                "umoci: {}",
                String::from_utf8_lossy(&run.stderr)
            );
            let rootfs = bundle.join("rootfs");
            let libc = rootfs.join(format!("usr/lib/{TRIPLET}/libc.so.6"));
            assert_eq!(std::fs::read(&libc).unwrap(), b"libc bytes");
            assert_eq!(
                std::fs::read_link(rootfs.join("lib")).unwrap(),
                Path::new("usr/lib")
            );
            assert_eq!(
                std::fs::read(rootfs.join(format!("lib/{TRIPLET}/libfoo.so.1"))).unwrap(),
                b"foo 1.0-1ubuntu0.1"
            );
        }
        Err(_) => eprintln!("SKIPPED umoci check: umoci is not installed (apt-get install umoci)"),
    }
}

#[test]
fn a_hard_link_whose_target_is_not_selected_becomes_a_copy_of_it() {
    let f = Fixture::new();
    // libfoo.so.1.0.0 is a hard link to libfoo-alt.so.1 in the package (the name that
    // sorts first holds the data); select only the link.
    Fixture::write(
        &f.dir,
        &f.server.url,
        &MANIFEST_BODY.replace(
            "[\"/usr/lib/*-linux-gnu/libfoo.so.*\", \"/usr/lib/*-linux-gnu/libfoo-alt.so.1\"]",
            "[\"/usr/lib/*-linux-gnu/libfoo.so.1.0.0\"]",
        ),
    );
    f.build().unwrap();
    let (_, _, entries) = read_image(&f.dir.join("out"));
    let lib = format!("usr/lib/{TRIPLET}");
    let file = &entries[&format!("{lib}/libfoo.so.1.0.0")];
    assert_eq!(
        (file.kind, file.data.as_slice()),
        (tar::EntryType::Regular, &b"foo 1.0-1ubuntu0.1"[..])
    );
    assert!(!entries.contains_key(&format!("{lib}/libfoo-alt.so.1")));
}

/// The layer cache: a rebuild takes the compressed layer from `<cache>/layers/` by its diff_id,
/// but only after checking that it decompresses to exactly the tar of the tree being
/// built; a damaged entry is never used (it is compressed again and replaced), and the
/// hash audit (`compose verify`) always compresses.
#[test]
fn layers_are_cached_by_diff_id_and_checked_before_use() {
    use std::io::Write;
    let f = Fixture::new();
    let first = build(&f.opts("out1", "cache")).unwrap();
    let layer = first.images[0].layer.clone();
    let formats: Vec<PathBuf> = std::fs::read_dir(f.dir.join("cache/layers"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(formats.len(), 1, "{formats:?}");
    let entry = formats[0].join(layer.diff_id.strip_prefix("sha256:").unwrap());
    let original = std::fs::read(&entry).unwrap();
    assert_eq!(format!("sha256:{}", sha256(&original)), layer.digest);

    // Another valid gzip of the same tar passes the check, so it is what a rebuild
    // uses: this is how the test sees that the cache is read at all.
    let mut tar = Vec::new();
    flate2::read::MultiGzDecoder::new(&original[..])
        .read_to_end(&mut tar)
        .unwrap();
    let mut other = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(1));
    other.write_all(&tar).unwrap();
    let other = other.finish().unwrap();
    assert_ne!(other, original);
    std::fs::write(&entry, &other).unwrap();
    let reused = build(&f.opts("out2", "cache")).unwrap();
    assert_eq!(reused.images[0].layer.diff_id, layer.diff_id);
    assert_eq!(
        reused.images[0].layer.digest,
        format!("sha256:{}", sha256(&other))
    );
    // The audit never reads the cache: the layer is compressed again, as first built.
    let mut audit = f.opts("out3", "cache");
    audit.audit = true;
    assert_eq!(build(&audit).unwrap().digest, first.digest);

    // Damaged entries: not gzip; gzip of another tar; the right gzip with bytes after it.
    let mut wrong = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    wrong.write_all(&tar[..tar.len() - 1024]).unwrap();
    let mut trailing = original.clone();
    trailing.extend_from_slice(b"junk");
    for damaged in [b"not gzip".to_vec(), wrong.finish().unwrap(), trailing] {
        std::fs::write(&entry, &damaged).unwrap();
        let rebuilt = build(&f.opts("out4", "cache")).unwrap();
        assert_eq!(
            rebuilt.digest, first.digest,
            "a damaged cached layer was used"
        );
        assert_eq!(
            std::fs::read(&entry).unwrap(),
            original,
            "the damaged entry is replaced by the layer compressed again"
        );
    }
}

/// A warm rebuild asks the server for the InRelease files only. Here the
/// Release lists `.xz`, `.gz` and plain indexes but the mirror serves only the plain ones
/// (as a mirror of /var/lib/apt/lists does): the first build finds them after two 404s
/// per index, the second takes them from the cache without asking for any form again.
#[test]
fn a_warm_rebuild_requests_nothing_but_the_inrelease_files() {
    let f = Fixture::new();
    let indexes: Vec<String> = f
        .server
        .requests()
        .into_iter()
        .filter(|p| p.contains("/Packages"))
        .collect();
    assert!(indexes.is_empty(), "{indexes:?}");
    for suite in ["noble", "noble-updates"] {
        let dir = format!("dists/{suite}/main/binary-{ARCH}");
        f.repo.remove(&format!("{dir}/Packages.xz"));
        f.repo.remove(&format!("{dir}/Packages.gz"));
    }
    // A lock of its own each time: both builds resolve from the indexes.
    let fresh = |out: &str, lock: &str| BuildOptions {
        lock: Some(f.dir.join(lock)),
        ..f.opts(out, "cache")
    };
    let first = build(&fresh("out1", "lock1")).unwrap();
    let misses = f.server.log().iter().filter(|s| s.status == 404).count();
    assert!(
        misses >= 2,
        "the first build looked for the .xz and .gz forms"
    );
    f.server.clear_requests();
    let again = build(&fresh("out2", "lock2")).unwrap();
    assert_eq!(again.digest, first.digest);
    let asked = f.server.requests();
    assert!(
        !asked.is_empty() && asked.iter().all(|p| p.ends_with("/InRelease")),
        "a warm rebuild asked for {asked:?}"
    );
}
