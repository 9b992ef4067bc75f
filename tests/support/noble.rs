//! A loopback Ubuntu 24.04 (noble) repository made of the real noble `.deb`s of
//! `../shared/data/ubuntu/debs`, laid out like archive.ubuntu.com: `ubuntu/dists/<suite>`
//! and `ubuntu/pool/main/…`, for building the shipped `manifests/noble-*.toml`.
//!
//! What is real and what is not:
//! - every `.deb` is the real file, served at the `Filename` of its stanza;
//! - a package's stanza is its real one from `noble-debootstrap-available` (copied there
//!   from the signed noble `main` index) where that file has it. For the `.deb`s it does
//!   not cover (libc6 2.39-0ubuntu8.3, libssl3t64 and openssl 3.0.13-0ubuntu3.2,
//!   ca-certificates, netbase, libprotobuf-lite32t64) the stanza is made as
//!   dpkg-scanpackages makes one: the `.deb`'s own control fields, then `Filename`, `Size`
//!   and the hashes computed from the file, then the `Description`;
//! - the suites follow the archive's pockets: the release-pocket versions in `noble`, the
//!   newer libc6, libssl3t64 and openssl in `noble-updates` and `noble-security` (which
//!   pocket really held each of those versions is not known here; equal versions resolve
//!   to the first suite the manifest lists, `noble-updates`);
//! - the `Release` files and their signatures are NOT Ubuntu's: no signed noble `main`
//!   index exists in `../shared/data`, so each suite's `Release` (listing the real
//!   stanzas' `Packages`) is signed with a test key, which a build must be given with
//!   `--keyring http://archive.ubuntu.com/ubuntu=FILE`.
//!
//! There is no arm64 noble `.deb` and no noble tzdata here: the repository has amd64 (and
//! `all`) packages only, and no tzdata.
//!
//! Used by `tests/noble_manifests.rs` and by `examples/noble_mirror.rs` (which
//! `scripts/noble-mirror.sh` runs, for the README's run).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use md5::Md5;
use sha2::{Digest, Sha256};

use super::key::{clearsign_with, detach_sign_with, TestKey};
use super::repo::{gzip, release_text, xz_two_streams, SuiteSpec};

/// The `.deb`s published in `noble-updates` and `noble-security` instead of `noble`.
pub const UPDATES: [&str; 3] = [
    "libc6_2.39-0ubuntu8.3_amd64.deb",
    "libssl3t64_3.0.13-0ubuntu3.2_amd64.deb",
    "openssl_3.0.13-0ubuntu3.2_amd64.deb",
];

/// The suites of the repository, in the order the shipped manifests list them.
pub const SUITES: [&str; 3] = ["noble", "noble-updates", "noble-security"];

/// `../shared/data/ubuntu`, when present.
pub fn shared_ubuntu() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/ubuntu");
    dir.join("debs").is_dir().then_some(dir)
}

/// One package as the repository publishes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoblePackage {
    /// `noble`, `noble-updates` or `noble-security`
    pub suite: String,
    pub name: String,
    /// as in the stanza (with its epoch, e.g. `1:1.3.dfsg-3.1ubuntu2`)
    pub version: String,
    /// `amd64` or `all`
    pub arch: String,
    /// `pool/main/…`, relative to the repository root (`ubuntu/`)
    pub filename: String,
    pub size: u64,
    pub sha256: String,
    /// The stanza is the real one of `noble-debootstrap-available` (else made from the
    /// `.deb`'s control, as dpkg-scanpackages does).
    pub real_stanza: bool,
}

/// The repository written by [`build`].
pub struct NobleMirror {
    /// The directory served: it holds `ubuntu/dists` and `ubuntu/pool`.
    pub root: PathBuf,
    /// Every package, per suite it is in, in suite then name order.
    pub packages: Vec<NoblePackage>,
}

/// A stanza's value of `field` (single-line fields only).
fn field<'a>(stanza: &'a str, field: &str) -> Option<&'a str> {
    let prefix = format!("{field}: ");
    stanza
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .map(str::trim)
}

/// The `control` file of a `.deb` (its control.tar.zst or .xz member), read with the
/// ar, zstd/xz and tar crates: the fixture does not use compose's own `.deb` reader.
pub fn deb_control(deb: &[u8]) -> String {
    let mut archive = ar::Archive::new(deb);
    while let Some(member) = archive.next_entry() {
        let mut member = member.expect("ar member");
        let name = String::from_utf8_lossy(member.header().identifier()).into_owned();
        if !name.starts_with("control.tar") {
            continue;
        }
        let mut packed = Vec::new();
        member.read_to_end(&mut packed).unwrap();
        let tar: Vec<u8> = match name.as_str() {
            "control.tar.zst" => zstd::decode_all(&packed[..]).unwrap(),
            "control.tar.xz" => {
                let mut out = Vec::new();
                liblzma::read::XzDecoder::new(&packed[..])
                    .read_to_end(&mut out)
                    .unwrap();
                out
            }
            other => panic!("unexpected control member {other}"),
        };
        let mut tar = tar::Archive::new(&tar[..]);
        for entry in tar.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            if path == "./control" || path == "control" {
                let mut text = String::new();
                entry.read_to_string(&mut text).unwrap();
                return text;
            }
        }
    }
    panic!("no control file in the .deb")
}

/// The stanza dpkg-scanpackages would write for `deb` at `filename`: its control
/// fields, then `Filename`, `Size`, `MD5sum`, `SHA1`, `SHA256`, then `Description`.
fn scanned_stanza(deb: &[u8], filename: &str) -> String {
    let control = deb_control(deb);
    let (head, description) = control
        .split_once("\nDescription:")
        .expect("control has a Description");
    format!(
        "{head}\nFilename: {filename}\nSize: {}\nMD5sum: {}\nSHA1: {}\nSHA256: {}\nDescription:{}",
        deb.len(),
        hex::encode(Md5::digest(deb)),
        hex::encode(sha1::Sha1::digest(deb)),
        hex::encode(Sha256::digest(deb)),
        description.trim_end_matches('\n')
    )
}

/// `pool/main/<prefix>/<source>/<file>`, as the archive places a package.
fn pool_path(control: &str, file: &str) -> String {
    let name = field(control, "Package").expect("Package");
    let source = field(control, "Source")
        .map(|s| s.split(' ').next().unwrap())
        .unwrap_or(name);
    let prefix = if source.starts_with("lib") && source.len() > 3 {
        &source[..4]
    } else {
        &source[..1]
    };
    format!("pool/main/{prefix}/{source}/{file}")
}

/// Writes the repository under `root` (which must not exist or be empty), every suite
/// signed with `key`. The `.deb`s are symbolic links to the files in `shared`
/// (`../shared/data/ubuntu`): nothing is copied.
pub fn build(shared: &Path, root: &Path, key: &TestKey) -> NobleMirror {
    build_with(shared, root, key, true)
}

/// [`build`], with the newer versions of [`UPDATES`] published (in `noble-updates` and
/// `noble-security`) or, with `updates` false, left out: the archive as it was before
/// those updates, whose `-updates` and `-security` pockets then hold nothing.
pub fn build_with(shared: &Path, root: &Path, key: &TestKey, updates: bool) -> NobleMirror {
    let available = std::fs::read_to_string(shared.join("noble-debootstrap-available"))
        .expect("noble-debootstrap-available");
    // (package, version) -> the real stanza
    let real: BTreeMap<(String, String), String> = available
        .split("\n\n")
        .map(|s| s.trim_matches('\n'))
        .filter(|s| !s.is_empty())
        .map(|s| {
            let key = (
                field(s, "Package").unwrap().to_string(),
                field(s, "Version").unwrap().to_string(),
            );
            (key, s.to_string())
        })
        .collect();
    let repo = root.join("ubuntu");
    let mut debs: Vec<PathBuf> = std::fs::read_dir(shared.join("debs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .collect();
    debs.sort();
    // suite -> stanzas by (name, version)
    let mut suites: BTreeMap<&str, BTreeMap<(String, String), String>> = BTreeMap::new();
    let mut packages = Vec::new();
    for deb in &debs {
        let file = deb.file_name().unwrap().to_string_lossy().into_owned();
        if !updates && UPDATES.contains(&file.as_str()) {
            continue;
        }
        let bytes = std::fs::read(deb).unwrap();
        let control = deb_control(&bytes);
        let name = field(&control, "Package").unwrap().to_string();
        let version = field(&control, "Version").unwrap().to_string();
        let sha256 = hex::encode(Sha256::digest(&bytes));
        let (stanza, real_stanza) = match real.get(&(name.clone(), version.clone())) {
            Some(stanza) => {
                // The real stanza must describe this very file.
                assert_eq!(field(stanza, "SHA256"), Some(sha256.as_str()), "{file}");
                assert_eq!(
                    field(stanza, "Size"),
                    Some(bytes.len().to_string().as_str())
                );
                (stanza.clone(), true)
            }
            None => (scanned_stanza(&bytes, &pool_path(&control, &file)), false),
        };
        let filename = field(&stanza, "Filename").unwrap().to_string();
        let target = repo.join(&filename);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(deb.canonicalize().unwrap(), &target).unwrap();
        let pockets: &[&'static str] = if UPDATES.contains(&file.as_str()) {
            &SUITES[1..]
        } else {
            &SUITES[..1]
        };
        for suite in pockets {
            suites
                .entry(suite)
                .or_default()
                .insert((name.clone(), version.clone()), stanza.clone());
            packages.push(NoblePackage {
                suite: suite.to_string(),
                name: name.clone(),
                version: version.clone(),
                arch: field(&stanza, "Architecture").unwrap().to_string(),
                filename: filename.clone(),
                size: bytes.len() as u64,
                sha256: sha256.clone(),
                real_stanza,
            });
        }
    }
    let now = SystemTime::now();
    for suite in SUITES {
        let text: String = suites
            .get(suite)
            .into_iter()
            .flat_map(|s| s.values())
            .map(|s| format!("{s}\n\n"))
            .collect();
        let index = "main/binary-amd64/Packages";
        let files = vec![
            (index.to_string(), text.clone().into_bytes()),
            (format!("{index}.gz"), gzip(text.as_bytes())),
            (format!("{index}.xz"), xz_two_streams(text.as_bytes())),
        ];
        let dists = repo.join("dists").join(suite);
        for (path, bytes) in &files {
            let p = dists.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, bytes).unwrap();
        }
        let spec = SuiteSpec::new(suite, &["main"], &["amd64"]);
        let release = release_text(&spec, now, None, &files);
        let hash = sequoia_openpgp::types::HashAlgorithm::SHA512;
        std::fs::write(dists.join("Release"), &release).unwrap();
        std::fs::write(
            dists.join("InRelease"),
            clearsign_with(&[key], release.as_bytes(), hash),
        )
        .unwrap();
        std::fs::write(
            dists.join("Release.gpg"),
            detach_sign_with(&[key], release.as_bytes(), hash),
        )
        .unwrap();
    }
    packages.sort_by(|a, b| (&a.suite, &a.name).cmp(&(&b.suite, &b.name)));
    NobleMirror {
        root: root.to_path_buf(),
        packages,
    }
}

/// A loopback noble repository built from `../shared/data/ubuntu`, signed with a key made
/// for the run and served on 127.0.0.1, with a work directory beside it.
pub struct Served {
    /// Holds the work directory (removed on drop).
    pub _tmp: tempfile::TempDir,
    /// The work directory (the mirror is `dir/mirror`).
    pub dir: PathBuf,
    /// What was built.
    pub mirror: NobleMirror,
    /// The server of `mirror.root`.
    pub server: super::Server,
    /// The keyring holding the run's key.
    pub keyring: PathBuf,
}

/// [`build`] a repository into a new temporary directory and serve it; `None` (saying
/// SKIPPED) when `../shared/data/ubuntu` is absent.
pub fn served() -> Option<Served> {
    let Some(shared) = shared_ubuntu() else {
        println!("SKIPPED: ../shared/data/ubuntu/debs not present; the real noble packages are not there to build from");
        return None;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let key = TestKey::generate("compose noble loopback mirror <noble@example.invalid>");
    let mirror = build(&shared, &dir.join("mirror"), &key);
    let server = super::Server::serve_dir(&mirror.root);
    let keyring = super::write_keyring(&dir, "noble-test.gpg", &key);
    Some(Served {
        _tmp: tmp,
        dir,
        mirror,
        server,
        keyring,
    })
}

/// Run the C++ check program (tests/e2e-assets/check.cc) at `/usr/local/bin/check` of
/// `bundle`'s rootfs, in that umoci bundle `bundle` under runc,
/// as the run image's users run it: as cnb (1002:1001), read-only root, no terminal,
/// `check cnb --without timezone` (there is no noble tzdata to test with). Fails the
/// test with the program's output when it fails; returns its stdout. `name` names the
/// container.
pub fn run_check_as_cnb(bundle: &Path, name: &str) -> String {
    use std::process::{Command, Stdio};
    let config_path = bundle.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config_path).unwrap()).unwrap();
    config["process"]["args"] =
        serde_json::json!(["/usr/local/bin/check", "cnb", "--without", "timezone"]);
    config["process"]["terminal"] = false.into();
    config["process"]["user"] = serde_json::json!({"uid": 1002, "gid": 1001});
    config["root"]["readonly"] = true.into();
    std::fs::write(&config_path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    let id = format!("compose-{name}-{}", std::process::id());
    let run = Command::new("timeout")
        .arg("120")
        .args(["runc", "run", "--bundle"])
        .arg(bundle)
        .arg(&id)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let _ = Command::new("runc")
        .args(["delete", "--force", &id])
        .output();
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(
        run.status.success(),
        "the program failed under runc: {stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    stdout
}
