//! Shipping: `--format oci-archive|docker-archive` and `--sbom`, over the hermetic
//! fixture repository, checked by real consumers (skopeo, pyspdxtools, Syft) when they
//! are installed (`.ci/run` installs them); each prints SKIPPED clearly when absent.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use compose::build::{build, BuildOptions, BuildResult};
use compose::output::Format;
use support::{DebSpec, Member};

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
    ws: support::Workspace,
    dir: PathBuf,
    manifest: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let ws = support::Workspace::with_packages("noble", &ARCHS, packages);
        let manifest = ws.manifest_from("shipfix", &["amd64"], UPSTREAM, &["noble"], BODY);
        Fixture {
            dir: ws.dir.clone(),
            manifest,
            ws,
        }
    }

    fn opts(&self, out: &str, format: Format, archs: &[&str]) -> BuildOptions {
        BuildOptions {
            manifest: self.manifest.clone(),
            output: Some(self.dir.join(out)),
            cache: Some(self.dir.join("cache")),
            mirrors: vec![self.ws.mirror(UPSTREAM)],
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
        .arg(f.ws.mirror_arg(UPSTREAM))
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
    schema_rejects_broken_documents(&f.dir, &doc);
    syft_lists_no_more(&f.dir.join("sbom.json.layout"), &doc);
}

/// The schema check is not a no-op: documents the SPDX 2.3 schema forbids fail it, each
/// with the path of what is wrong.
fn schema_rejects_broken_documents(dir: &Path, doc: &serde_json::Value) {
    let Some(python) = jsonschema_python() else {
        println!("SKIPPED: the Python jsonschema package is not installed; negative schema cases not run");
        return;
    };
    type Breakage = fn(&mut serde_json::Value);
    let cases: [(&str, Breakage, &str); 4] = [
        (
            "no spdxVersion",
            |d| {
                d.as_object_mut().unwrap().remove("spdxVersion");
            },
            "'spdxVersion' is a required property",
        ),
        (
            "unknown top-level key",
            |d| d["imageDigest"] = serde_json::json!("sha256:00"),
            "Additional properties are not allowed",
        ),
        (
            "purpose outside the enumeration",
            |d| d["packages"][0]["primaryPackagePurpose"] = serde_json::json!("IMAGE"),
            "/packages/0/primaryPackagePurpose",
        ),
        (
            "checksum algorithm outside the enumeration",
            |d| d["files"][0]["checksums"][0]["algorithm"] = serde_json::json!("SHA-256"),
            "/files/0/checksums/0/algorithm",
        ),
    ];
    for (what, breakage, expect) in cases {
        let mut broken = doc.clone();
        breakage(&mut broken);
        let path = dir.join("broken.spdx.json");
        std::fs::write(&path, serde_json::to_vec(&broken).unwrap()).unwrap();
        let (ok, text) = jsonschema_check(&python, &path);
        assert!(!ok, "{what}: the schema accepted it:\n{text}");
        assert!(
            text.contains(expect),
            "{what}: expected {expect:?} in:\n{text}"
        );
    }
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

/// The SPDX 2.3 JSON schema, as checked in (`schemas/README.md` says where it is from).
const SCHEMA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/spdx-2.3.schema.json");

/// Validates `argv[2]` against the schema `argv[1]` with the validator class the schema's
/// `$schema` names (Draft 7 here), with format checks; prints every error by path and
/// exits 1 when there is one. The last line names the validator and the count.
const JSONSCHEMA_PY: &str = r#"
import json, sys
import jsonschema
schema = json.load(open(sys.argv[1], encoding="utf-8"))
doc = json.load(open(sys.argv[2], encoding="utf-8"))
cls = jsonschema.validators.validator_for(schema)
cls.check_schema(schema)
v = cls(schema, format_checker=cls.FORMAT_CHECKER)
errors = sorted(v.iter_errors(doc), key=lambda e: [str(p) for p in e.absolute_path])
for e in errors:
    print("/" + "/".join(str(p) for p in e.absolute_path), e.message)
from importlib.metadata import version
print("jsonschema", version("jsonschema"), cls.__name__, len(errors), "errors")
sys.exit(1 if errors else 0)
"#;

/// A Python with the `jsonschema` package (the CI venv's, else the host's), if any.
fn jsonschema_python() -> Option<PathBuf> {
    let python = tool("python3")?;
    let ok = Command::new(&python)
        .args(["-c", "import jsonschema"])
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then_some(python)
}

/// Runs the schema check of `doc` (a file); (passed, output).
fn jsonschema_check(python: &Path, doc: &Path) -> (bool, String) {
    let out = Command::new(python)
        .args(["-c", JSONSCHEMA_PY, SCHEMA])
        .arg(doc)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The document validates against the SPDX 2.3 JSON schema file of the repository
/// (Python `jsonschema`, Draft 7), and pyspdxtools (spdx-tools, the SPDX project's
/// Python validator) parses it as SPDX 2.3 JSON and checks it against the specification.
fn validate(path: &Path) {
    match jsonschema_python() {
        None => println!(
            "SKIPPED: the Python jsonschema package is not installed (.ci/run installs it \
             into the venv); SBOM not checked against {SCHEMA}"
        ),
        Some(python) => {
            let (ok, text) = jsonschema_check(&python, path);
            assert!(
                ok,
                "{} against the SPDX 2.3 schema:\n{text}",
                path.display()
            );
            assert!(text.contains("Draft7Validator 0 errors"), "{text}");
        }
    }
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

/// Syft's JSON report of the OCI layout (offline, `extra` arguments added).
fn syft_json(syft: &Path, layout: &Path, extra: &[&str]) -> serde_json::Value {
    let out = Command::new(syft)
        .arg(format!("oci-dir:{}", layout.display()))
        .args(["-o", "json", "-q"])
        .args(extra)
        .env("SYFT_CHECK_FOR_APP_UPDATE", "false")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "syft: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every package Syft finds in the image is in the SBOM with the same version.
fn syft_lists_no_more(layout: &Path, doc: &serde_json::Value) {
    let Some(syft) = tool("syft") else {
        println!("SKIPPED: syft not installed; SBOM not compared with Syft");
        return;
    };
    let v = syft_json(&syft, layout, &[]);
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

// ---- docker load --------------------------------------------------------------------

/// A Docker daemon of its own: Debian's `dockerd` (docker.io, which `.ci/run` installs)
/// with its data, exec root, socket and pid file in a temporary directory, the vfs
/// storage driver, and no bridge, iptables or masquerading, so that nothing of the
/// machine's networking or any other daemon is touched. Stopped (SIGTERM, then SIGKILL)
/// when dropped.
struct Dockerd {
    child: std::process::Child,
    dir: tempfile::TempDir,
    host: String,
}

impl Dockerd {
    /// Err(the reason) when this machine cannot run one: no `dockerd`, no
    /// `docker` client, or not root.
    fn start() -> Result<Dockerd, String> {
        let dockerd = ["/usr/sbin/dockerd", "/usr/bin/dockerd"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .ok_or("dockerd not installed (apt-get install docker.io)")?;
        if !have("docker") {
            return Err("no docker client".into());
        }
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("dockerd needs root".into());
        }
        // Short: the socket path must fit a sockaddr_un.
        let dir = tempfile::Builder::new()
            .prefix("cdk")
            .tempdir_in("/tmp")
            .unwrap();
        let d = dir.path();
        let host = format!("unix://{}/d.sock", d.display());
        let log = std::fs::File::create(d.join("dockerd.log")).unwrap();
        let child = Command::new(dockerd)
            .arg("--data-root")
            .arg(d.join("data"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("dockerd.pid"))
            .args(["-H", &host])
            .args([
                "--storage-driver=vfs",
                "--bridge=none",
                "--iptables=false",
                "--ip6tables=false",
                "--ip-masq=false",
                "--userland-proxy=false",
                "--containerd-namespace=compose-test",
                "--containerd-plugins-namespace=compose-test-plugins",
            ])
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start dockerd: {e}"))?;
        let mut daemon = Dockerd { child, dir, host };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let ok = daemon
                .docker(&["version", "--format", "{{.Server.Version}}"])
                .status
                .success();
            if ok {
                return Ok(daemon);
            }
            if let Ok(Some(status)) = daemon.child.try_wait() {
                panic!("dockerd exited with {status}:\n{}", daemon.log_tail());
            }
            assert!(
                std::time::Instant::now() < deadline,
                "dockerd did not answer within 60 s:\n{}",
                daemon.log_tail()
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    fn docker(&self, args: &[&str]) -> std::process::Output {
        Command::new("docker")
            .args(args)
            .env("DOCKER_HOST", &self.host)
            .env("DOCKER_CONFIG", self.dir.path().join("client"))
            .output()
            .unwrap()
    }

    /// `docker ARGS…`, which must succeed; its stdout.
    fn ok(&self, args: &[&str]) -> Vec<u8> {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {}: {}{}\ndockerd log:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log_tail()
        );
        out.stdout
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: signalling our own child, which has not been reaped yet.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `docker load` takes the docker archive: the image ID is the config digest, the tag is
/// the archive's, the layer's diff_id and the config (user, env, architecture) are the
/// layout's, and a container made from it holds the composed files byte for byte.
#[test]
fn docker_load_accepts_the_docker_archive() {
    let daemon = match Dockerd::start() {
        Ok(d) => d,
        Err(why) => {
            println!("SKIPPED: {why}; docker-archive not loaded by docker");
            return;
        }
    };
    let f = Fixture::new();
    let r = f.build("load.tar", Format::DockerArchive, &["amd64"]);
    let image = &r.images[0];
    let archive = f.dir.join("load.tar");
    let loaded = daemon.ok(&["load", "-i", archive.to_str().unwrap()]);
    let loaded = String::from_utf8_lossy(&loaded);
    assert!(
        loaded.contains("Loaded image: shipfix:shipfix"),
        "docker load said: {loaded}"
    );
    let inspect = daemon.ok(&["image", "inspect", "shipfix:shipfix"]);
    let v: serde_json::Value = serde_json::from_slice(&inspect).unwrap();
    let v = &v[0];
    assert_eq!(v["Id"], image.config_digest, "{v}");
    assert_eq!(v["RepoTags"], serde_json::json!(["shipfix:shipfix"]), "{v}");
    assert_eq!(v["Architecture"], "amd64");
    assert_eq!(v["Os"], "linux");
    assert_eq!(
        v["RootFS"]["Layers"],
        serde_json::json!([image.layer.diff_id]),
        "{v}"
    );
    // What docker reads of the config is what the layout's config says.
    let layout_config: serde_json::Value = {
        let tar_bytes = std::fs::read(&archive).unwrap();
        let mut config = None;
        for e in tar::Archive::new(&tar_bytes[..]).entries().unwrap() {
            let mut e = e.unwrap();
            let p = e.path().unwrap().to_string_lossy().into_owned();
            if p == format!("blobs/sha256/{}", &image.config_digest[7..]) {
                config = Some(serde_json::from_reader::<_, serde_json::Value>(&mut e).unwrap());
            }
        }
        config.expect("config blob in the archive")
    };
    assert_eq!(v["Config"]["Env"], layout_config["config"]["Env"], "{v}");
    assert_eq!(
        v["Config"]["User"].as_str().unwrap_or(""),
        layout_config["config"]["User"].as_str().unwrap_or(""),
        "{v}"
    );
    // A container (created, not started: the fixture's files are not programs) holds
    // the files of the layer.
    let id = daemon.ok(&["create", "--network", "none", "shipfix:shipfix", "/none"]);
    let id = String::from_utf8_lossy(&id).trim().to_string();
    for (path, want) in [
        ("/etc/motd", b"hello\n".to_vec()),
        (
            "/usr/lib/x86_64-linux-gnu/libstdc++.so.6.0.33",
            b"libstdc++ amd64".to_vec(),
        ),
    ] {
        let tar_bytes = daemon.ok(&["cp", &format!("{id}:{path}"), "-"]);
        let mut a = tar::Archive::new(&tar_bytes[..]);
        let mut e = a.entries().unwrap().next().expect("one entry").unwrap();
        let mut got = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut got).unwrap();
        assert_eq!(got, want, "{path} in the container");
    }
    daemon.ok(&["rm", &id]);
    daemon.ok(&["rmi", "shipfix:shipfix"]);
}

// ---- [generate] sbom: the document inside the image -----------------------------------

/// `[generate] sbom = true` puts each architecture's SPDX document at
/// `/var/lib/db/sbom/<name>.spdx.json`: valid against the schema, listing the packages and
/// every other regular file, without the image digest (it cannot know it), the same
/// bytes on every build; the `--sbom` document lists it as a file of the image.
#[test]
fn sbom_inside_the_image() {
    let f = Fixture::new();
    let manifest = f.ws.manifest_from(
        "shipfix",
        &["amd64"],
        UPSTREAM,
        &["noble"],
        &format!("{BODY}\n[generate]\nsbom = true\n"),
    );
    let build_it = |name: &str| {
        let mut o = f.opts(&format!("{name}.layout"), Format::Oci, &ARCHS);
        o.manifest = manifest.clone();
        o.rootfs = Some(f.dir.join(format!("{name}.rootfs")));
        o.sbom = Some(f.dir.join(format!("{name}.spdx.json")));
        o.archs = vec!["amd64".into()];
        build(&o).expect("build with [generate] sbom")
    };
    let a = build_it("a");
    let b = build_it("b");
    assert_eq!(
        a.digest, b.digest,
        "the image with its own SBOM is reproducible"
    );
    let inside = f.dir.join("a.rootfs/var/lib/db/sbom/shipfix.spdx.json");
    let bytes = std::fs::read(&inside).expect("the SBOM in the image");
    assert_eq!(
        bytes,
        std::fs::read(f.dir.join("b.rootfs/var/lib/db/sbom/shipfix.spdx.json")).unwrap()
    );
    let doc: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    validate(&inside);
    let image = by_id(&doc, "packages", "SPDXRef-Image");
    assert!(image.get("versionInfo").is_none(), "{image}");
    assert!(!bytes
        .windows(a.digest.len())
        .any(|w| w == a.digest.as_bytes()));
    assert!(image["comment"]
        .as_str()
        .unwrap()
        .contains("cannot name the digest"));
    let ns = doc["documentNamespace"].as_str().unwrap();
    assert!(
        ns.starts_with("https://compose.invalid/spdx/shipfix/amd64/sha256:"),
        "{ns}"
    );
    let stdcxx = by_id(&doc, "packages", "SPDXRef-Package-amd64-libstdcpp6");
    assert_eq!(stdcxx["versionInfo"], "14.2.0-4ubuntu2~24.04");
    let names: BTreeSet<&str> = doc["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["fileName"].as_str().unwrap())
        .collect();
    assert!(names.contains("./etc/motd") && names.contains("./usr/lib/os-release"));
    assert!(!names.contains("./var/lib/db/sbom/shipfix.spdx.json"));
    // The --sbom document (which has the digest) lists it among the image's files, with
    // its hash.
    let outer: serde_json::Value =
        serde_json::from_slice(&std::fs::read(f.dir.join("a.spdx.json")).unwrap()).unwrap();
    let entry = outer["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["fileName"] == "./var/lib/db/sbom/shipfix.spdx.json")
        .expect("the in-image SBOM in the --sbom document");
    use sha2::Digest;
    assert_eq!(
        entry["checksums"][1]["checksumValue"],
        hex::encode(sha2::Sha256::digest(&bytes))
    );
    assert!(outer["relationships"].as_array().unwrap().iter().any(|r| {
        r["spdxElementId"] == "SPDXRef-Image"
            && r["relationshipType"] == "CONTAINS"
            && r["relatedSpdxElement"] == entry["SPDXID"]
    }));
    // Syft, reading the image, still sees each package at its version; asked to read
    // SBOM files too (its sbom-cataloger, off for images by default), it finds the
    // document and, in it, every package with the purl its dpkg cataloger gives.
    syft_lists_no_more(&f.dir.join("a.layout"), &outer);
    let Some(syft) = tool("syft") else {
        println!("SKIPPED: syft not installed; the in-image SBOM not read by Syft");
        return;
    };
    let v = syft_json(
        &syft,
        &f.dir.join("a.layout"),
        &["--select-catalogers", "+sbom-cataloger"],
    );
    let purls = |cataloger: &str| -> BTreeSet<String> {
        v["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["foundBy"] == cataloger)
            .map(|a| a["purl"].as_str().unwrap().to_string())
            .collect()
    };
    let from_sbom = purls("sbom-cataloger");
    assert_eq!(from_sbom.len(), 4, "{from_sbom:?}");
    assert_eq!(from_sbom, purls("dpkg-db-cataloger"));
    assert!(v["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["foundBy"] == "sbom-cataloger")
        .all(|a| a["locations"][0]["path"] == "/var/lib/db/sbom/shipfix.spdx.json"));
}
