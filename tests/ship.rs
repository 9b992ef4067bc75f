//! Issue 7 (ship): `--format oci-archive|docker-archive` and `--sbom`, over the hermetic
//! fixture repository, checked by real consumers (skopeo, pyspdxtools, Syft) when they
//! are installed (`.ci/run` installs them); each prints SKIPPED clearly when absent.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use compose::build::{build, BuildOptions, BuildResult};
use compose::oci::Format;
use support::{DebSpec, IndexVariants, Member, Repo, Server, SuiteSpec, TestKey};

const ARCHS: [&str; 2] = ["amd64", "arm64"];
/// The manifest's source URL, mirrored to the loopback server: the SBOM records the
/// URL before `--mirror` (and SPDX wants a download location with a host name).
const UPSTREAM: &str = "http://archive.ubuntu.test/ubuntu";

fn triplet(arch: &str) -> &'static str {
    match arch {
        "amd64" => "x86_64-linux-gnu",
        _ => "aarch64-linux-gnu",
    }
}

fn packages(arch: &str) -> Vec<DebSpec> {
    let t = triplet(arch);
    vec![
        DebSpec::new("libc6", "2.39-0ubuntu8.4", arch, Member::Zstd)
            .file(&format!("/lib/{t}/libc.so.6"), format!("libc {arch}").into_bytes(), 0o755)
            .copyright(),
        DebSpec::new("libstdc++6", "14.2.0-4ubuntu2~24.04", arch, Member::Xz)
            .file(
                &format!("/usr/lib/{t}/libstdc++.so.6.0.33"),
                format!("libstdc++ {arch}").into_bytes(),
                0o644,
            )
            .symlink(&format!("/usr/lib/{t}/libstdc++.so.6"), "libstdc++.so.6.0.33")
            .copyright(),
        DebSpec::new("zlib1g", "1:1.3.dfsg-3.1ubuntu2.1", arch, Member::Gz)
            .file(&format!("/usr/lib/{t}/libz.so.1.3"), format!("zlib {arch}").into_bytes(), 0o644)
            .file(
                "/usr/share/doc/zlib1g/copyright",
                b"This is zlib; see the upstream README.\n".to_vec(),
                0o644,
            ),
        DebSpec::new("base-files", "13ubuntu10.1", arch, Member::Zstd)
            .file(
                "/usr/lib/os-release",
                b"PRETTY_NAME=\"Ubuntu 24.04.1 LTS\"\nNAME=\"Ubuntu\"\nVERSION_ID=\"24.04\"\nID=ubuntu\nID_LIKE=debian\nVERSION_CODENAME=noble\n".to_vec(),
                0o644,
            )
            .copyright(),
    ]
}

const BODY: &str = r#"
[package.libc6]
paths = ["/usr/lib/*-linux-gnu/libc.so.6"]

[package."libstdc++6"]
paths = ["/usr/lib/*-linux-gnu/libstdc++.so.6*"]

[package.zlib1g]
paths = ["/usr/lib/*-linux-gnu/libz.so.*"]

[package.base-files]
paths = ["/usr/lib/os-release"]

[[file]]
path = "/etc/motd"
text = "hello\n"
"#;

struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    _repo: Repo,
    _server: Server,
    server_url: String,
    manifest: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let key = TestKey::generate("compose ship fixture <ship@example.invalid>");
        let mut noble = SuiteSpec::new("noble", &["main"], &ARCHS);
        for arch in ARCHS {
            for p in packages(arch) {
                noble = noble.package("main", p);
            }
        }
        let repo = Repo::build(&key, &[noble], IndexVariants::ALL);
        let server = repo.serve();
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        support::write_keyring(&dir, "archive.gpg", &key);
        let text = format!(
            "[image]\nname = \"shipfix\"\narchitectures = [\"amd64\"]\n\n{}\n{BODY}",
            support::source_toml(UPSTREAM, &["noble"], &["main"], "archive.gpg")
        );
        let manifest = support::write_manifest(&dir, &text);
        Fixture {
            _tmp: tmp,
            dir,
            _repo: repo,
            server_url: server.url.clone(),
            _server: server,
            manifest,
        }
    }

    fn opts(&self, out: &str, format: Format, archs: &[&str]) -> BuildOptions {
        BuildOptions {
            manifest: self.manifest.clone(),
            output: Some(self.dir.join(out)),
            cache: Some(self.dir.join("cache")),
            mirrors: vec![(UPSTREAM.to_string(), self.server_url.clone())],
            archs: archs.iter().map(|s| s.to_string()).collect(),
            quiet: true,
            format,
            ..BuildOptions::default()
        }
    }

    fn build(&self, out: &str, format: Format, archs: &[&str]) -> BuildResult {
        build(&self.opts(out, format, archs)).expect("build")
    }
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn skopeo_inspect(reference: &str) -> serde_json::Value {
    let out = Command::new("skopeo")
        .args(["inspect", "--raw", reference])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo inspect --raw {reference}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out2 = Command::new("skopeo")
        .args(["inspect", reference])
        .output()
        .unwrap();
    assert!(
        out2.status.success(),
        "skopeo inspect {reference}: {}",
        String::from_utf8_lossy(&out2.stderr)
    );
    serde_json::from_slice(&out2.stdout).unwrap()
}

#[test]
fn oci_archive_is_deterministic_and_skopeo_reads_it() {
    let f = Fixture::new();
    let a = f.build("a/image.tar", Format::OciArchive, &ARCHS);
    let b = f.build("b/image.tar", Format::OciArchive, &ARCHS);
    assert_eq!(a.digest, b.digest);
    let layout = f.build("layout", Format::Oci, &ARCHS);
    assert_eq!(a.digest, layout.digest);
    let bytes = std::fs::read(f.dir.join("a/image.tar")).unwrap();
    assert_eq!(bytes, std::fs::read(f.dir.join("b/image.tar")).unwrap());
    // The archive holds exactly the layout's files.
    let mut names = BTreeSet::new();
    for e in tar::Archive::new(&bytes[..]).entries().unwrap() {
        let e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        if !name.ends_with('/') {
            let on_disk = std::fs::read(f.dir.join("layout").join(&name)).unwrap();
            assert_eq!(e.header().size().unwrap(), on_disk.len() as u64, "{name}");
        }
        names.insert(name);
    }
    assert!(names.contains("index.json") && names.contains("oci-layout"));
    // Nothing but the archive is left beside it.
    let left: Vec<_> = std::fs::read_dir(f.dir.join("a"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["image.tar"]);
    if !have("skopeo") {
        println!("SKIPPED: skopeo not installed; oci-archive not checked by skopeo");
        return;
    }
    let path = f.dir.join("a/image.tar");
    for arch in ARCHS {
        let out = Command::new("skopeo")
            .args(["--override-arch", arch, "inspect"])
            .arg(format!("oci-archive:{}:shipfix", path.display()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["Architecture"], arch);
    }
    let raw = Command::new("skopeo")
        .arg("inspect")
        .arg("--raw")
        .arg(format!("oci-archive:{}:shipfix", path.display()))
        .output()
        .unwrap();
    assert!(raw.status.success());
    use sha2::Digest;
    assert_eq!(
        format!("sha256:{}", hex::encode(sha2::Sha256::digest(&raw.stdout))),
        a.digest
    );
}

#[test]
fn docker_archive_is_deterministic_and_skopeo_reads_it() {
    let f = Fixture::new();
    let a = f.build("d1.tar", Format::DockerArchive, &["arm64"]);
    f.build("d2.tar", Format::DockerArchive, &["arm64"]);
    let bytes = std::fs::read(f.dir.join("d1.tar")).unwrap();
    assert_eq!(bytes, std::fs::read(f.dir.join("d2.tar")).unwrap());
    let mut manifest = None;
    for e in tar::Archive::new(&bytes[..]).entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().to_str() == Some("manifest.json") {
            manifest = Some(serde_json::from_reader::<_, serde_json::Value>(&mut e).unwrap());
        }
    }
    let manifest = manifest.expect("manifest.json");
    assert_eq!(manifest[0]["RepoTags"][0], "shipfix:shipfix");
    let image = &a.images[0];
    assert_eq!(
        manifest[0]["Config"],
        format!("blobs/sha256/{}", &image.config_digest[7..])
    );
    if !have("skopeo") {
        println!("SKIPPED: skopeo not installed; docker-archive not checked by skopeo");
        return;
    }
    let path = f.dir.join("d1.tar");
    let v = skopeo_inspect(&format!("docker-archive:{}", path.display()));
    assert_eq!(v["Architecture"], "arm64");
    // containers/image names docker-archive layers by their uncompressed digest.
    assert_eq!(v["Layers"][0], image.layer.diff_id, "{v}");
    // A full copy makes containers/image read the layer and check its diff_id.
    let dest = f.dir.join("copied");
    let out = Command::new("skopeo")
        .arg("copy")
        .arg(format!("docker-archive:{}", path.display()))
        .arg(format!("oci:{}:x", dest.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo copy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn docker_archive_with_two_architectures_is_a_usage_error() {
    let f = Fixture::new();
    let e = build(&f.opts("d.tar", Format::DockerArchive, &ARCHS)).unwrap_err();
    assert_eq!(e.exit_code(), 2, "{e}");
    assert!(e.to_string().contains("one architecture"), "{e}");
    assert!(!f.dir.join("d.tar").exists());
    // The CLI says the same with exit code 2.
    let out = Command::new(env!("CARGO_BIN_EXE_compose"))
        .arg(&f.manifest)
        .args([
            "--arch",
            "amd64",
            "--arch",
            "arm64",
            "--format",
            "docker-archive",
            "-q",
        ])
        .arg("--cache")
        .arg(f.dir.join("cache"))
        .arg("--mirror")
        .arg(format!("{UPSTREAM}={}", f.server_url))
        .arg("--output")
        .arg(f.dir.join("d.tar"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bad = Command::new(env!("CARGO_BIN_EXE_compose"))
        .arg(&f.manifest)
        .args(["--format", "zip"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

fn sbom_build(
    f: &Fixture,
    name: &str,
    archs: &[&str],
) -> (BuildResult, serde_json::Value, PathBuf) {
    let path = f.dir.join(name);
    let mut o = f.opts(&format!("{name}.layout"), Format::Oci, archs);
    o.sbom = Some(path.clone());
    let r = build(&o).expect("build with --sbom");
    let doc = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    (r, doc, path)
}

fn by_id<'a>(doc: &'a serde_json::Value, key: &str, id: &str) -> &'a serde_json::Value {
    doc[key]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["SPDXID"] == id)
        .unwrap_or_else(|| panic!("{id} not in {key}"))
}

#[test]
fn sbom_lists_packages_files_and_relationships() {
    let f = Fixture::new();
    let (r, doc, path) = sbom_build(&f, "sbom.json", &["amd64"]);
    let (_, _, path2) = sbom_build(&f, "sbom2.json", &["amd64"]);
    assert_eq!(
        std::fs::read(&path).unwrap(),
        std::fs::read(&path2).unwrap()
    );
    assert_eq!(doc["spdxVersion"], "SPDX-2.3");
    assert_eq!(doc["dataLicense"], "CC0-1.0");
    assert_eq!(doc["creationInfo"]["created"], "1970-01-01T00:00:00Z");
    assert_eq!(
        doc["documentNamespace"],
        format!("https://compose.invalid/spdx/shipfix/{}", r.digest)
    );
    let image = by_id(&doc, "packages", "SPDXRef-Image");
    assert_eq!(image["versionInfo"], r.digest);
    assert_eq!(image["primaryPackagePurpose"], "CONTAINER");
    let stdcxx = by_id(&doc, "packages", "SPDXRef-Package-amd64-libstdcpp6");
    let resolved = r.images[0]
        .packages
        .iter()
        .find(|p| p.name == "libstdc++6")
        .unwrap();
    assert_eq!(stdcxx["downloadLocation"], resolved.url);
    assert_eq!(stdcxx["checksums"][0]["checksumValue"], resolved.sha256);
    assert_eq!(
        stdcxx["externalRefs"][0]["referenceLocator"],
        "pkg:deb/ubuntu/libstdc%2B%2B6@14.2.0-4ubuntu2~24.04?arch=amd64&distro=ubuntu-24.04"
    );
    assert_eq!(stdcxx["licenseDeclared"], "Apache-2.0");
    let zlib = by_id(&doc, "packages", "SPDXRef-Package-amd64-zlib1g");
    assert_eq!(zlib["licenseDeclared"], "NOASSERTION", "not DEP-5");
    assert_eq!(
        zlib["externalRefs"][0]["referenceLocator"],
        "pkg:deb/ubuntu/zlib1g@1:1.3.dfsg-3.1ubuntu2.1?arch=amd64&distro=ubuntu-24.04"
    );
    // Every regular file, with both hashes, contained by its package or the image.
    let files = doc["files"].as_array().unwrap();
    let file = |name: &str| {
        files
            .iter()
            .find(|f| f["fileName"] == name)
            .unwrap_or_else(|| panic!("{name} not in the SBOM"))
    };
    let so = file("./usr/lib/x86_64-linux-gnu/libstdc++.so.6.0.33");
    use sha1::Digest as _;
    assert_eq!(
        so["checksums"][0],
        serde_json::json!({"algorithm": "SHA1", "checksumValue": hex::encode(sha1::Sha1::digest(b"libstdc++ amd64"))})
    );
    let motd = file("./etc/motd");
    let rels = doc["relationships"].as_array().unwrap();
    let has = |a: &serde_json::Value, t: &str, b: &serde_json::Value| {
        rels.iter().any(|r| {
            r["spdxElementId"] == *a && r["relationshipType"] == t && r["relatedSpdxElement"] == *b
        })
    };
    let doc_id = serde_json::json!("SPDXRef-DOCUMENT");
    assert!(has(&doc_id, "DESCRIBES", &image["SPDXID"]));
    assert!(has(&image["SPDXID"], "CONTAINS", &stdcxx["SPDXID"]));
    assert!(has(&stdcxx["SPDXID"], "CONTAINS", &so["SPDXID"]));
    assert!(has(&image["SPDXID"], "CONTAINS", &motd["SPDXID"]));
    // The dpkg metadata and the copyright files are there too.
    file("./var/lib/dpkg/status.d/libstdc++6");
    file("./usr/share/doc/libstdc++6/copyright");
    validate(&path);
    syft_lists_no_more(&f.dir.join("sbom.json.layout"), &doc);
}

#[test]
fn sbom_of_two_architectures_has_arch_qualified_ids() {
    let f = Fixture::new();
    let (r, doc, path) = sbom_build(&f, "multi.json", &ARCHS);
    assert_eq!(r.images.len(), 2);
    for arch in ARCHS {
        let p = by_id(&doc, "packages", &format!("SPDXRef-Package-{arch}-libc6"));
        assert!(p["externalRefs"][0]["referenceLocator"]
            .as_str()
            .unwrap()
            .contains(&format!("arch={arch}")));
    }
    assert!(doc["files"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["fileName"] == "./usr/lib/aarch64-linux-gnu/libc.so.6"));
    validate(&path);
    // Failing builds write no SBOM.
    let mut o = f.opts("fail.layout", Format::DockerArchive, &ARCHS);
    o.sbom = Some(f.dir.join("fail.json"));
    assert!(build(&o).is_err());
    assert!(!f.dir.join("fail.json").exists());
}

fn tool(name: &str) -> Option<PathBuf> {
    let venv = std::env::var("SYFT_VENV").unwrap_or_else(|_| "/opt/compose-ci/syft-venv".into());
    let in_venv = Path::new(&venv).join("bin").join(name);
    if in_venv.is_file() {
        return Some(in_venv);
    }
    have(name).then(|| PathBuf::from(name))
}

/// pyspdxtools (spdx-tools, the SPDX project's Python validator) parses the document
/// as SPDX 2.3 JSON and checks it against the specification.
fn validate(path: &Path) {
    let Some(pyspdx) = tool("pyspdxtools") else {
        println!("SKIPPED: pyspdxtools not installed (pip install spdx-tools); SBOM not validated");
        return;
    };
    let out = Command::new(&pyspdx).arg("-i").arg(path).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "pyspdxtools -i {}: {text}",
        path.display()
    );
    assert!(!text.contains("Validation"), "pyspdxtools: {text}");
}

/// Every package Syft finds in the image is in the SBOM with the same version.
fn syft_lists_no_more(layout: &Path, doc: &serde_json::Value) {
    let Some(syft) = tool("syft") else {
        println!("SKIPPED: syft not installed; SBOM not compared with Syft");
        return;
    };
    let out = Command::new(&syft)
        .arg(format!("oci-dir:{}", layout.display()))
        .args(["-o", "json", "-q"])
        .env("SYFT_CHECK_FOR_APP_UPDATE", "false")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "syft: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let syft: BTreeSet<(String, String)> = v["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["name"].as_str().unwrap().to_string(),
                a["version"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let ours: BTreeSet<(String, String)> = doc["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["SPDXID"] != "SPDXRef-Image")
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["versionInfo"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(!syft.is_empty(), "syft found no package");
    let missing: Vec<_> = syft.difference(&ours).collect();
    assert!(
        missing.is_empty(),
        "Syft lists packages the SBOM lacks: {missing:?}"
    );
}
