//! Generated files over the fixture repository: CA bundle, passwd/group and homes,
//! `[[file]]`/`[[dir]]`/`[[symlink]]` (with `{arch}` sources), scanner metadata and the
//! copyright switch.

mod support;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use compose::build::{build, BuildOptions};
use support::{DebSpec, IndexVariants, Member, Repo, SuiteSpec, TestKey};

const CERT_A: &str = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
// No final newline: the generator must add one, as update-ca-certificates does.
const CERT_B: &str = "-----BEGIN CERTIFICATE-----\nBBBB\n-----END CERTIFICATE-----";

fn repo(key: &TestKey) -> Repo {
    let suite = SuiteSpec::new("noble", &["main"], &["amd64", "arm64"])
        // Listed out of order on purpose: the bundle follows byte order of path.
        .package(
            "main",
            DebSpec::new("ca-certificates", "20240203", "all", Member::Zstd)
                .file(
                    "/usr/share/ca-certificates/mozilla/Zeta_Root.crt",
                    CERT_B.as_bytes().to_vec(),
                    0o644,
                )
                .file(
                    "/usr/share/ca-certificates/mozilla/Alpha_Root.crt",
                    CERT_A.as_bytes().to_vec(),
                    0o644,
                )
                .file(
                    "/usr/sbin/update-ca-certificates",
                    b"#!/bin/sh\n".to_vec(),
                    0o755,
                )
                .copyright(),
        )
        .package(
            "main",
            DebSpec::new("base-files", "13ubuntu10", "amd64", Member::Zstd)
                .file(
                    "/usr/lib/os-release",
                    b"ID=ubuntu\nVERSION_ID=\"24.04\"\n".to_vec(),
                    0o644,
                )
                .symlink("/etc/os-release", "../usr/lib/os-release")
                .file("/etc/lsb-release", b"DISTRIB_ID=Ubuntu\n".to_vec(), 0o644)
                .copyright(),
        )
        .package(
            "main",
            DebSpec::new("base-files", "13ubuntu10", "arm64", Member::Zstd)
                .file(
                    "/usr/lib/os-release",
                    b"ID=ubuntu\nVERSION_ID=\"24.04\"\n".to_vec(),
                    0o644,
                )
                .symlink("/etc/os-release", "../usr/lib/os-release")
                .file("/etc/lsb-release", b"DISTRIB_ID=Ubuntu\n".to_vec(), 0o644)
                .copyright(),
        );
    Repo::build(key, &[suite], IndexVariants::ALL)
}

const BODY: &str = r#"
[package.ca-certificates]
paths = []

[package.base-files]
paths = ["/etc/os-release", "/usr/lib/os-release", "/etc/lsb-release"]

[generate]
ca-bundle = true
passwd = true

[[user]]
name = "cnb"
uid = 1002
gid = 1001
home = "/home/cnb"

[[user]]
name = "svc"
uid = 2000
gid = 2000
home = "/srv/svc"
shell = "/bin/false"

[[group]]
name = "cnb"
gid = 1001
members = ["svc"]

[[dir]]
path = "/tmp"
mode = "1777"

[[dir]]
path = "/srv/svc"
mode = "0750"
uid = 2000
gid = 2000

[[file]]
path = "/etc/nsswitch.conf"
text = "passwd: files\ngroup: files\nhosts: files dns\n"

[[file]]
path = "/usr/local/bin/app"
source = "app-{arch}"
mode = "0755"
uid = 1002
gid = 1001

[[symlink]]
path = "/etc/localtime"
target = "/usr/share/zoneinfo/Etc/UTC"
"#;

type Entries = BTreeMap<String, (tar::EntryType, u32, u64, u64, Option<String>, Vec<u8>)>;

/// Entries of the image for `arch` in a layout (single or multi-arch).
fn entries(layout: &Path, arch: &str) -> Entries {
    let read = |digest: &str| {
        std::fs::read(
            layout
                .join("blobs/sha256")
                .join(digest.trim_start_matches("sha256:")),
        )
        .unwrap()
    };
    let json = |b: Vec<u8>| -> serde_json::Value { serde_json::from_slice(&b).unwrap() };
    let index = json(std::fs::read(layout.join("index.json")).unwrap());
    let mut manifest = json(read(index["manifests"][0]["digest"].as_str().unwrap()));
    if manifest["mediaType"] == "application/vnd.oci.image.index.v1+json" {
        let m = manifest["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["platform"]["architecture"] == arch)
            .unwrap();
        manifest = json(read(m["digest"].as_str().unwrap()));
    }
    let layer = read(manifest["layers"][0]["digest"].as_str().unwrap());
    let mut tar_bytes = Vec::new();
    flate2::read::MultiGzDecoder::new(&layer[..])
        .read_to_end(&mut tar_bytes)
        .unwrap();
    let mut out = BTreeMap::new();
    for e in tar::Archive::new(&tar_bytes[..]).entries().unwrap() {
        let mut e = e.unwrap();
        let path = e
            .path()
            .unwrap()
            .to_string_lossy()
            .trim_end_matches('/')
            .to_string();
        let h = e.header().clone();
        let link = e
            .link_name()
            .unwrap()
            .map(|l| l.to_string_lossy().to_string());
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        out.insert(
            path,
            (
                h.entry_type(),
                h.mode().unwrap(),
                h.uid().unwrap(),
                h.gid().unwrap(),
                link,
                data,
            ),
        );
    }
    out
}

struct Setup {
    _tmp: tempfile::TempDir,
    dir: std::path::PathBuf,
    _server: support::Server,
    _repo: Repo,
}

fn setup(body: &str) -> Setup {
    let key = TestKey::generate("compose generate test <gen@example.invalid>");
    let repo = repo(&key);
    let server = repo.serve();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    support::write_keyring(&dir, "archive.asc", &key);
    std::fs::write(dir.join("app-amd64"), b"\x7fELF amd64 app").unwrap();
    std::fs::write(dir.join("app-arm64"), b"\x7fELF arm64 app").unwrap();
    let text = format!(
        "[image]\nname = \"gen\"\narchitectures = [\"amd64\", \"arm64\"]\nuser = \"cnb\"\nworkdir = \"/home/cnb\"\n\n{}\n{body}",
        support::source_toml(&server.url, &["noble"], &["main"], "archive.asc")
    );
    support::write_manifest(&dir, &text);
    Setup {
        _tmp: tmp,
        dir,
        _server: server,
        _repo: repo,
    }
}

fn opts(s: &Setup) -> BuildOptions {
    BuildOptions {
        manifest: s.dir.join("compose.toml"),
        output: Some(s.dir.join("out")),
        cache: Some(s.dir.join("cache")),
        quiet: true,
        ..BuildOptions::default()
    }
}

#[test]
fn generated_files_are_what_maintainer_scripts_would_make() {
    let s = setup(BODY);
    let result = build(&opts(&s)).unwrap();
    assert_eq!(result.images.len(), 2);
    for arch in ["amd64", "arm64"] {
        let e = entries(&s.dir.join("out"), arch);
        // CA bundle: byte order of path, newline-terminated certificates.
        let bundle = &e["etc/ssl/certs/ca-certificates.crt"];
        assert_eq!(
            String::from_utf8(bundle.5.clone()).unwrap(),
            format!("{CERT_A}{CERT_B}\n")
        );
        assert_eq!(bundle.1, 0o644);
        assert_eq!(
            e["usr/lib/ssl/cert.pem"].4.as_deref(),
            Some("/etc/ssl/certs/ca-certificates.crt")
        );
        assert_eq!(e["usr/lib/ssl/certs"].4.as_deref(), Some("/etc/ssl/certs"));
        // paths = [] keeps the certificates themselves out of the image.
        assert!(!e.contains_key("usr/share/ca-certificates/mozilla/Alpha_Root.crt"));
        assert!(!e.contains_key("usr/sbin/update-ca-certificates"));

        // passwd / group: root, nobody, then the manifest's accounts in order.
        let passwd = String::from_utf8(e["etc/passwd"].5.clone()).unwrap();
        assert_eq!(
            passwd,
            "root:x:0:0:root:/root:/usr/sbin/nologin\n\
             nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n\
             cnb:x:1002:1001::/home/cnb:/usr/sbin/nologin\n\
             svc:x:2000:2000::/srv/svc:/bin/false\n"
        );
        let group = String::from_utf8(e["etc/group"].5.clone()).unwrap();
        assert_eq!(group, "root:x:0:\nnogroup:x:65534:\ncnb:x:1001:svc\n");
        assert_eq!(e["etc/passwd"].1, 0o644);
        // Homes: owned by the user, 0700, unless a [[dir]] says otherwise.
        let home = &e["home/cnb"];
        assert_eq!(
            (home.0, home.1, home.2, home.3),
            (tar::EntryType::Directory, 0o700, 1002, 1001)
        );
        let srv = &e["srv/svc"];
        assert_eq!((srv.1, srv.2, srv.3), (0o750, 2000, 2000));
        // [[dir]], [[file]], [[symlink]].
        assert_eq!(e["tmp"].1, 0o1777);
        assert_eq!(
            e["etc/nsswitch.conf"].5,
            b"passwd: files\ngroup: files\nhosts: files dns\n"
        );
        let app = &e["usr/local/bin/app"];
        assert_eq!(app.5, format!("\x7fELF {arch} app").as_bytes());
        assert_eq!((app.1, app.2, app.3), (0o755, 1002, 1001));
        assert_eq!(
            e["etc/localtime"].4.as_deref(),
            Some("/usr/share/zoneinfo/Etc/UTC")
        );
        // base-files as packaged: os-release link and lsb-release for Trivy.
        assert_eq!(
            e["etc/os-release"].4.as_deref(),
            Some("../usr/lib/os-release")
        );
        assert!(e.contains_key("etc/lsb-release"));
        // Scanner metadata, distroless layout, no dpkg/status.
        let status =
            String::from_utf8(e["var/lib/dpkg/status.d/ca-certificates"].5.clone()).unwrap();
        assert!(status.starts_with("Package: ca-certificates\n"), "{status}");
        assert!(e.contains_key("var/lib/dpkg/status.d/base-files.md5sums"));
        assert!(!e.contains_key("var/lib/dpkg/status"));
        assert!(e.contains_key("usr/share/doc/ca-certificates/copyright"));
    }
}

#[test]
fn copyright_false_drops_the_copyright_files() {
    let s = setup(BODY);
    let manifest = s.dir.join("compose.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text.replace(
            "workdir = \"/home/cnb\"",
            "workdir = \"/home/cnb\"\ncopyright = false",
        ),
    )
    .unwrap();
    build(&opts(&s)).unwrap();
    let e = entries(&s.dir.join("out"), "amd64");
    assert!(
        !e.keys().any(|k| k.ends_with("/copyright")),
        "{:?}",
        e.keys().collect::<Vec<_>>()
    );
}

#[test]
fn dpkg_status_false_writes_no_scanner_metadata() {
    let s = setup(&BODY.replace("passwd = true", "passwd = true\ndpkg-status = false"));
    build(&opts(&s)).unwrap();
    let e = entries(&s.dir.join("out"), "arm64");
    assert!(!e.keys().any(|k| k.starts_with("var/lib/dpkg")));
}

#[test]
fn a_missing_file_source_is_an_error_naming_the_manifest_line() {
    let s = setup(BODY);
    std::fs::remove_file(s.dir.join("app-arm64")).unwrap();
    let e = build(&opts(&s)).unwrap_err().to_string();
    assert!(
        e.contains("app-arm64") && e.contains("compose.toml:"),
        "{e}"
    );
    assert!(!s.dir.join("out").exists());
}

#[test]
fn a_ca_bundle_without_ca_certificates_is_an_error() {
    let s = setup(&BODY.replace("[package.ca-certificates]\npaths = []\n", ""));
    let e = build(&opts(&s)).unwrap_err().to_string();
    assert!(e.contains("ca-certificates"), "{e}");
}
