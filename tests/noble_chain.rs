//! The real noble trust chain, as far as it exists in `../shared/data/ubuntu`, served on
//! loopback as archive.ubuntu.com lays it out and locked by the `compose` binary
//! (`compose lock`: a lock needs no `.deb`) with the real keyring of `keys/`:
//!
//! - noble's real InRelease (25 Apr 2024, the 2018 key) → its real
//!   `restricted/binary-amd64/Packages`, size and SHA-256 as the signed text lists them →
//!   a package resolved from it;
//! - noble-updates' real InRelease (6 Jun 2026) → its real
//!   `multiverse/binary-amd64/Packages` → the highest of six versions of a package;
//! - noble's real `Release` + `Release.gpg` (the same publication, no InRelease served).
//!
//! Every value the lock must hold is written here from the real files (`sha256sum`,
//! `stat -c %s`, the `Date` fields, the indexes' stanzas), not computed by the code under
//! test; and one changed byte in any of the real files is refused. Without
//! `../shared/data` each test prints `SKIPPED` and passes.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use support::Server;

/// `../shared/data/ubuntu`, or `None` after printing why the test is skipped.
fn shared() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/ubuntu");
    if dir.join("noble-indexes").is_dir() {
        Some(dir)
    } else {
        println!(
            "SKIPPED: ../shared/data not present ({} missing)",
            dir.join("noble-indexes").display()
        );
        None
    }
}

fn read(shared: &Path, name: &str) -> Vec<u8> {
    std::fs::read(shared.join(name)).unwrap()
}

const KEYRING: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/keys/ubuntu-archive-keyring.gpg"
);

const RESTRICTED: &str = "noble-indexes/noble_restricted_binary-amd64_Packages";
const MULTIVERSE: &str = "noble-indexes/noble-updates_multiverse_binary-amd64_Packages";

/// The lock's facts of the real chain, from the real files: `sha256sum noble-InRelease`
/// and its `Date`; the index's size and SHA-256 (also the line noble-InRelease lists for
/// `restricted/binary-amd64/Packages`); the `nvidia-utils-535` stanza of that index.
const NOBLE_LINES: [&str; 3] = [
    "amd64 release http://archive.ubuntu.com/ubuntu/dists/noble/InRelease sha256:cdb2f31d809f589719a53c6ad15f255b27569c4059542ada282aaa21b8e164b0 Thu, 25 Apr 2024 15:10:33 UTC",
    "amd64 packages http://archive.ubuntu.com/ubuntu/dists/noble/restricted/binary-amd64/Packages 669193 sha256:f5620712a54076429190adbc8b3974250606ffb624c9b877bc240d8f2476118e",
    "amd64 package nvidia-utils-535 535.171.04-0ubuntu2 amd64 noble http://archive.ubuntu.com/ubuntu/pool/restricted/n/nvidia-graphics-drivers-535/nvidia-utils-535_535.171.04-0ubuntu2_amd64.deb 405200 sha256:ee9ba25e07b3a519a8ff2df442a231baedb9b873c23b8b51b0f9ff5c5cbcb83a",
];

/// The same for noble-updates: `sha256sum noble-updates-InRelease` and its `Date`, the
/// multiverse index, and the highest of the six `libnvidia-common-550-server` stanzas
/// (550.90.07 … 550.163.01-0ubuntu0.24.04.1, 550.163.01-0ubuntu0.24.04.2).
const UPDATES_LINES: [&str; 3] = [
    "amd64 release http://archive.ubuntu.com/ubuntu/dists/noble-updates/InRelease sha256:7aeeb6473daf1725cb17a8d2d978c5d7ed11ca74e7d24b4277baed97bc80f8ce Sat, 06 Jun 2026 19:00:51 UTC",
    "amd64 packages http://archive.ubuntu.com/ubuntu/dists/noble-updates/multiverse/binary-amd64/Packages 329868 sha256:79ea561e178cd675adc2156eb3cfe4c9b69967b9222a61514135ea265705f8ae",
    "amd64 package libnvidia-common-550-server 550.163.01-0ubuntu0.24.04.2 all noble-updates http://archive.ubuntu.com/ubuntu/pool/multiverse/n/nvidia-graphics-drivers-550-server/libnvidia-common-550-server_550.163.01-0ubuntu0.24.04.2_all.deb 11010 sha256:87c277da74f31325281358ca5c66b4c52819899cdb3cb1264c30c442653f0ce4",
];

/// A loopback mirror holding `files` (paths under `ubuntu/dists/`), a manifest whose
/// sources are `sources` (suite, component) of http://archive.ubuntu.com/ubuntu with the
/// real Ubuntu keyring, and the result of `compose lock` of it for amd64.
struct Locked {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    server: Server,
    out: Output,
}

impl Locked {
    fn run(files: &[(&str, Vec<u8>)], sources: &[(&str, &str)], packages: &[&str]) -> Locked {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        for (path, bytes) in files {
            let p = dir.join("mirror/ubuntu/dists").join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, bytes).unwrap();
        }
        let server = Server::serve_dir(dir.join("mirror"));
        let mut manifest = String::from("[image]\nname = \"noble-chain\"\n");
        for (suite, component) in sources {
            manifest.push_str(&format!(
                "\n[[source]]\nurl = \"http://archive.ubuntu.com/ubuntu\"\nsuites = [\"{suite}\"]\ncomponents = [\"{component}\"]\nkeyring = \"{KEYRING}\"\n"
            ));
        }
        for p in packages {
            manifest.push_str(&format!("\n[package.{p}]\npaths = []\n"));
        }
        let path = support::write_manifest_named(&dir, "noble-chain.toml", &manifest);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_compose"))
            .arg("lock")
            .arg(&path)
            .args(["--arch", "amd64", "--mirror"])
            .arg(format!("http://archive.ubuntu.com={}", server.url))
            .arg("--cache")
            .arg(dir.join("cache"))
            .output()
            .unwrap();
        Locked {
            _tmp: tmp,
            dir,
            server,
            out,
        }
    }

    /// The lock's `amd64` lines without their ` ~CHECK`.
    fn amd64_lines(&self) -> Vec<String> {
        assert!(
            self.out.status.success(),
            "compose lock: {}",
            String::from_utf8_lossy(&self.out.stderr)
        );
        std::fs::read_to_string(self.dir.join("noble-chain.toml.lock"))
            .unwrap()
            .lines()
            .filter(|l| l.starts_with("amd64 "))
            .map(|l| l.rsplit_once(" ~").unwrap().0.to_string())
            .collect()
    }

    /// The one `error:` line of a failed run (exit 1), and no lock written.
    fn error(&self) -> String {
        let stderr = String::from_utf8_lossy(&self.out.stderr).into_owned();
        assert_eq!(self.out.status.code(), Some(1), "{stderr}");
        assert!(!self.dir.join("noble-chain.toml.lock").exists());
        let errors: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("error: "))
            .collect();
        assert_eq!(errors.len(), 1, "{stderr}");
        errors[0].to_string()
    }
}

/// The files of a mirror with noble (InRelease, restricted) and noble-updates
/// (InRelease, multiverse), each real.
fn chain_files(shared: &Path) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("noble/InRelease", read(shared, "noble-InRelease")),
        (
            "noble/restricted/binary-amd64/Packages",
            read(shared, RESTRICTED),
        ),
        (
            "noble-updates/InRelease",
            read(shared, "noble-updates-InRelease"),
        ),
        (
            "noble-updates/multiverse/binary-amd64/Packages",
            read(shared, MULTIVERSE),
        ),
    ]
}

const CHAIN_SOURCES: [(&str, &str); 2] = [("noble", "restricted"), ("noble-updates", "multiverse")];
const CHAIN_PACKAGES: [&str; 2] = ["nvidia-utils-535", "libnvidia-common-550-server"];

#[test]
fn the_real_noble_and_noble_updates_chains_lock_real_packages() {
    let Some(shared) = shared() else {
        return;
    };
    let locked = Locked::run(&chain_files(&shared), &CHAIN_SOURCES, &CHAIN_PACKAGES);
    let mut want: Vec<&str> = NOBLE_LINES[..2]
        .iter()
        .chain(&UPDATES_LINES[..2])
        .copied()
        .collect();
    // The lock's order: releases, then indexes, then packages, each by URL or name.
    want.sort_by_key(|l| (!l.starts_with("amd64 release"), l.to_string()));
    want.push(UPDATES_LINES[2]);
    want.push(NOBLE_LINES[2]);
    assert_eq!(locked.amd64_lines(), want);
    // Only the plain index forms are on this mirror: compose asked for the `.xz` and
    // `.gz` the signed text lists first, then took the plain one, and fetched no .deb.
    let requests = locked.server.requests();
    assert!(
        requests.iter().all(|r| !r.ends_with(".deb")),
        "{requests:?}"
    );
    assert!(
        requests.contains(&"/ubuntu/dists/noble/restricted/binary-amd64/Packages.xz".to_string()),
        "{requests:?}"
    );
}

#[test]
fn one_changed_byte_of_a_real_inrelease_or_index_is_refused() {
    let Some(shared) = shared() else {
        return;
    };
    // (file, offset of the byte to change, what the error must say)
    const BAD: &str = "has a BAD signature by key F6ECB3762474EDA9D21B7022871920D1991BC93C";
    let cases: [(usize, usize, String); 4] = [
        (0, 200, format!("http://archive.ubuntu.com/ubuntu/dists/noble/InRelease {BAD}")),
        (1, 334_567, "/ubuntu/dists/noble/restricted/binary-amd64/Packages: expected f5620712a54076429190adbc8b3974250606ffb624c9b877bc240d8f2476118e, got ".into()),
        (2, 200, format!("http://archive.ubuntu.com/ubuntu/dists/noble-updates/InRelease {BAD}")),
        (3, 164_934, "/ubuntu/dists/noble-updates/multiverse/binary-amd64/Packages: expected 79ea561e178cd675adc2156eb3cfe4c9b69967b9222a61514135ea265705f8ae, got ".into()),
    ];
    for (file, offset, says) in cases {
        let mut files = chain_files(&shared);
        files[file].1[offset] ^= 0x01;
        let locked = Locked::run(&files, &CHAIN_SOURCES, &CHAIN_PACKAGES);
        let e = locked.error();
        println!("{} with byte {offset} changed: {e}", files[file].0);
        assert!(e.contains(&says), "{}: {e}", files[file].0);
    }
}

/// noble's real Release + Release.gpg and its restricted index, without InRelease.
fn detached_files(shared: &Path) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("noble/Release", read(shared, "noble-Release")),
        ("noble/Release.gpg", read(shared, "noble-Release.gpg")),
        (
            "noble/restricted/binary-amd64/Packages",
            read(shared, RESTRICTED),
        ),
    ]
}

#[test]
fn the_real_release_and_release_gpg_pair_verifies_and_one_changed_byte_in_either_is_refused() {
    let Some(shared) = shared() else {
        return;
    };
    let sources = [("noble", "restricted")];
    let packages = ["nvidia-utils-535"];
    let locked = Locked::run(&detached_files(&shared), &sources, &packages);
    // `sha256sum noble-Release` and its Date; the same index and package as through
    // InRelease.
    assert_eq!(
        locked.amd64_lines(),
        [
            "amd64 release http://archive.ubuntu.com/ubuntu/dists/noble/Release sha256:58716ccd6ce78bf798b0f643bb4d0ebc71b5688cc8871aff81c2363ba9fa5755 Thu, 25 Apr 2024 15:10:33 UTC",
            NOBLE_LINES[1],
            NOBLE_LINES[2],
        ]
    );
    assert!(locked.server.hits("/ubuntu/dists/noble/InRelease") == 1);

    let mut files = detached_files(&shared);
    files[0].1[2000] ^= 0x01;
    let e = Locked::run(&files, &sources, &packages).error();
    assert!(
        e.contains(
            "http://archive.ubuntu.com/ubuntu/dists/noble/Release has a BAD signature by key "
        ),
        "{e}"
    );
    let mut files = detached_files(&shared);
    files[1].1[300] ^= 0x01;
    let e = Locked::run(&files, &sources, &packages).error();
    println!("noble/Release.gpg with byte 300 changed: {e}");
    assert!(
        e.contains("http://archive.ubuntu.com/ubuntu/dists/noble/Release has a BAD signature by key F6ECB3762474EDA9D21B7022871920D1991BC93C"),
        "{e}"
    );
}
