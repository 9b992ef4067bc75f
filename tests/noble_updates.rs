//! `compose outdated` and `compose lock --update` on the real noble updates of
//! `../shared/data/ubuntu` (SKIPPED when it is absent): a loopback noble archive first
//! without the updates (libc6 2.39-0ubuntu8, libssl3t64 3.0.13-0ubuntu3 locked), then with
//! them (libc6 2.39-0ubuntu8.3, libssl3t64 3.0.13-0ubuntu3.2 in noble-updates and
//! noble-security). The expected entries and CVE ids below were read from the real
//! changelogs (`dpkg-deb --fsys-tarfile DEB | tar -xO ./usr/share/doc/P/changelog.Debian.gz
//! | zcat`), not computed by compose.

mod support;

use std::path::PathBuf;
use std::process::{Command, Output};

use support::noble;
use support::{Server, TestKey};

const UPSTREAM: &str = "http://archive.ubuntu.com/ubuntu";

struct Generation {
    _mirror: noble::NobleMirror,
    server: Server,
}

struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    manifest: PathBuf,
    keyring: PathBuf,
    before: Generation,
    after: Generation,
}

fn fixture() -> Option<Fixture> {
    let Some(shared) = noble::shared_ubuntu() else {
        println!("SKIPPED: ../shared/data not present");
        return None;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let key = TestKey::generate("compose noble updates <noble@example.invalid>");
    let keyring = support::write_keyring(&dir, "noble-test.gpg", &key);
    let generation = |name: &str, updates: bool| {
        let mirror = noble::build_with(&shared, &dir.join(name), &key, updates);
        let server = Server::serve_dir(&mirror.root);
        Generation {
            _mirror: mirror,
            server,
        }
    };
    let before = generation("before", false);
    let after = generation("after", true);
    let keys =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("keys/ubuntu-archive-keyring.gpg");
    let manifest = support::write_manifest(
        &dir,
        &format!(
            "[image]\nname = \"noble-updates\"\narchitectures = [\"amd64\"]\n\n\
             [[source]]\nurl = \"{UPSTREAM}\"\n\
             suites = [\"noble\", \"noble-updates\", \"noble-security\"]\n\
             components = [\"main\"]\nkeyring = {:?}\n\n\
             [package.libc6]\npaths = []\n[package.libssl3t64]\npaths = []\n",
            keys.display().to_string()
        ),
    );
    Some(Fixture {
        _tmp: tmp,
        dir,
        manifest,
        keyring,
        before,
        after,
    })
}

impl Fixture {
    fn compose(&self, generation: &Generation, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_compose"))
            .arg(args[0])
            .arg(&self.manifest)
            .args(&args[1..])
            .arg("--mirror")
            .arg(format!(
                "http://archive.ubuntu.com={}",
                generation.server.url
            ))
            .arg("--keyring")
            .arg(format!("{UPSTREAM}={}", self.keyring.display()))
            .arg("--cache")
            .arg(self.dir.join("cache"))
            .arg("--quiet")
            .output()
            .unwrap()
    }
}

fn entry(version: &str, distribution: &str, date: &str, cves: &[&str]) -> serde_json::Value {
    serde_json::json!({
        "version": version, "distribution": distribution, "urgency": "medium",
        "date": date, "cves": cves,
    })
}

#[test]
fn the_real_noble_updates_and_the_cves_they_fix() {
    let Some(f) = fixture() else { return };
    let o = f.compose(&f.before, &["lock"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lock = std::fs::read_to_string(f.dir.join("compose.toml.lock")).unwrap();
    assert!(
        lock.contains("amd64 package libc6 2.39-0ubuntu8 amd64 noble "),
        "{lock}"
    );
    assert!(
        lock.contains("amd64 package libssl3t64 3.0.13-0ubuntu3 amd64 noble "),
        "{lock}"
    );
    // Up to date against the archive it was locked from, without fetching a package.
    f.before.server.clear_requests();
    let o = f.compose(&f.before, &["outdated"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(f
        .before
        .server
        .requests()
        .iter()
        .all(|r| !r.ends_with(".deb")));

    let o = f.compose(&f.after, &["outdated", "--format", "json"]);
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let packages = &json["packages"];
    let libc6_cves = [
        "CVE-2024-33599",
        "CVE-2024-33600",
        "CVE-2024-33601",
        "CVE-2024-33602",
    ];
    assert_eq!(
        packages[0],
        serde_json::json!({
            "arch": "amd64", "name": "libc6",
            "locked": "2.39-0ubuntu8", "available": "2.39-0ubuntu8.3", "suite": "noble-updates",
            "entries": [
                entry("2.39-0ubuntu8.3", "noble", "Thu, 08 Aug 2024 16:47:42 +0200", &[]),
                entry("2.39-0ubuntu8.2", "noble-security", "Tue, 30 Apr 2024 15:02:13 -0300", &libc6_cves),
                entry("2.39-0ubuntu8.1", "noble-security", "Thu, 18 Apr 2024 09:52:32 -0400", &["CVE-2024-2961"]),
            ],
            "cves": ["CVE-2024-33599", "CVE-2024-33600", "CVE-2024-33601", "CVE-2024-33602", "CVE-2024-2961"],
            "changelog": null,
        })
    );
    assert_eq!(
        packages[1],
        serde_json::json!({
            "arch": "amd64", "name": "libssl3t64",
            "locked": "3.0.13-0ubuntu3", "available": "3.0.13-0ubuntu3.2", "suite": "noble-updates",
            "entries": [
                entry("3.0.13-0ubuntu3.2", "noble-security", "Tue, 30 Jul 2024 11:03:13 -0400",
                      &["CVE-2024-2511", "CVE-2024-4603", "CVE-2024-4741", "CVE-2024-5535"]),
                entry("3.0.13-0ubuntu3.1", "noble-security", "Tue, 14 May 2024 11:06:27 +0200", &[]),
            ],
            "cves": ["CVE-2024-2511", "CVE-2024-4603", "CVE-2024-4741", "CVE-2024-5535"],
            "changelog": null,
        })
    );
    assert_eq!(packages.as_array().unwrap().len(), 2, "{json}");

    // The text report, as the README shows it.
    let o = f.compose(&f.after, &["outdated"]);
    let text = String::from_utf8(o.stdout).unwrap();
    println!("{text}");
    assert!(
        text.contains("amd64 libc6 2.39-0ubuntu8 → 2.39-0ubuntu8.3 (noble-updates)\n"),
        "{text}"
    );

    // lock --update moves both and writes the pull-request report.
    let report = f.dir.join("report.md");
    let o = f.compose(
        &f.after,
        &["lock", "--update", "--report", report.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let md = std::fs::read_to_string(&report).unwrap();
    assert!(
        md.starts_with(
            "2 packages updated, fixes CVE-2024-33599, CVE-2024-33600, CVE-2024-33601, CVE-2024-33602, CVE-2024-2961, CVE-2024-2511, CVE-2024-4603, CVE-2024-4741, CVE-2024-5535\n"
        ),
        "{md}"
    );
    let lock = std::fs::read_to_string(f.dir.join("compose.toml.lock")).unwrap();
    assert!(
        lock.contains("amd64 package libc6 2.39-0ubuntu8.3 amd64 noble-updates "),
        "{lock}"
    );
    let o = f.compose(&f.after, &["outdated"]);
    assert_eq!(o.status.code(), Some(0));
}
