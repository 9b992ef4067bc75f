//! `compose outdated` and `compose lock --update` through the `compose` binary, against
//! signed loopback repositories that first offer the locked versions, then newer ones
//! whose `.deb`s carry changelogs. The real noble updates (libc6, libssl3t64) are in
//! tests/noble_updates.rs.

mod support;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output};

use support::{DebSpec, IndexVariants, Member, Repo, Server, SuiteSpec, TestKey};

const UPSTREAM: &str = "http://archive.example/ubuntu";

/// A changelog.Debian.gz of `entries` (version, distribution, body lines), newest first.
fn changelog(source: &str, entries: &[(&str, &str, &[&str])]) -> Vec<u8> {
    let mut text = String::new();
    for (v, dist, body) in entries {
        text.push_str(&format!("{source} ({v}) {dist}; urgency=medium\n\n"));
        for line in *body {
            text.push_str(&format!("  {line}\n"));
        }
        text.push_str("\n -- Maint <m@example.invalid>  Mon, 01 Jan 2024 00:00:00 +0000\n\n");
    }
    gzip(text.as_bytes())
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(9));
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn libfoo(version: &str, changelog: Option<Vec<u8>>) -> DebSpec {
    let mut d = DebSpec::new("libfoo1", version, "amd64", Member::Zstd).file(
        "/usr/lib/x86_64-linux-gnu/libfoo.so.1",
        b"foo".to_vec(),
        0o644,
    );
    if let Some(c) = changelog {
        d = d.file("/usr/share/doc/libfoo1/changelog.Debian.gz", c, 0o644);
    }
    d
}

fn libbar(version: &str) -> DebSpec {
    DebSpec::new("libbar1", version, "amd64", Member::Zstd).file(
        "/usr/lib/x86_64-linux-gnu/libbar.so.1",
        b"bar".to_vec(),
        0o644,
    )
}

/// One generation of the archive: `noble` and `noble-security`.
struct Archive {
    _repo: Repo,
    server: Server,
}

impl Archive {
    fn new(key: &TestKey, noble: Vec<DebSpec>, security: Vec<DebSpec>) -> Archive {
        let suite = |name: &str, debs: Vec<DebSpec>| {
            debs.into_iter()
                .fold(SuiteSpec::new(name, &["main"], &["amd64"]), |s, d| {
                    s.package("main", d)
                })
        };
        let suites = [suite("noble", noble), suite("noble-security", security)];
        let repo = Repo::build(key, &suites, IndexVariants::XZ_ONLY);
        let server = repo.serve();
        Archive {
            _repo: repo,
            server,
        }
    }
}

struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    key: TestKey,
    manifest: PathBuf,
}

impl Fixture {
    fn new(packages: &[&str]) -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let key = TestKey::generate("compose outdated <o@example.invalid>");
        support::write_keyring(&dir, "archive.gpg", &key);
        let mut body = String::new();
        for p in packages {
            body.push_str(&format!("[package.{p}]\npaths = []\n"));
        }
        let manifest = support::write_manifest(
            &dir,
            &format!(
                "[image]\nname = \"o\"\narchitectures = [\"amd64\"]\n\n{}\n{body}",
                support::source_toml(
                    UPSTREAM,
                    &["noble", "noble-security"],
                    &["main"],
                    "archive.gpg"
                )
            ),
        );
        Fixture {
            _tmp: tmp,
            dir,
            key,
            manifest,
        }
    }

    /// `compose SUBCOMMAND MANIFEST ARGS… --mirror … --cache … --quiet`.
    fn compose(&self, archive: &Archive, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_compose"))
            .arg(args[0])
            .arg(&self.manifest)
            .args(&args[1..])
            .arg("--mirror")
            .arg(format!("{UPSTREAM}={}", archive.server.url))
            .arg("--cache")
            .arg(self.dir.join("cache"))
            .arg("--quiet")
            .output()
            .unwrap()
    }

    fn lock_text(&self) -> String {
        std::fs::read_to_string(self.lock_path()).unwrap()
    }

    fn lock_path(&self) -> PathBuf {
        let mut p = self.manifest.clone().into_os_string();
        p.push(".lock");
        p.into()
    }
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

/// The archive of the lock: libfoo1 1.0, libbar1 1.0.
fn locked(f: &Fixture) -> Archive {
    let a = Archive::new(&f.key, vec![libfoo("1.0", None), libbar("1.0")], vec![]);
    let o = f.compose(&a, &["lock"]);
    assert!(o.status.success(), "{}", err(&o));
    a
}

#[test]
fn up_to_date_exits_0_and_fetches_no_package() {
    let f = Fixture::new(&["libfoo1", "libbar1"]);
    // Without a lock there is nothing to compare with: one line, exit 1.
    let none = Archive::new(&f.key, vec![libfoo("1.0", None), libbar("1.0")], vec![]);
    let o = f.compose(&none, &["outdated"]);
    assert_eq!(code(&o), 1, "{}", err(&o));
    assert!(
        err(&o).contains("outdated: there is no lock at ")
            && err(&o).contains("run `compose lock "),
        "{}",
        err(&o)
    );
    assert_eq!(err(&o).lines().count(), 1, "{}", err(&o));
    let a = locked(&f);
    a.server.clear_requests();
    let o = f.compose(&a, &["outdated"]);
    assert_eq!(code(&o), 0, "{}{}", out(&o), err(&o));
    assert!(out(&o).starts_with("up to date"), "{}", out(&o));
    let requests = a.server.requests();
    assert!(
        requests.iter().all(|r| !r.ends_with(".deb")),
        "{requests:?}"
    );
    assert!(
        requests.iter().any(|r| r.ends_with("/InRelease")),
        "{requests:?}"
    );
}

const FOO_CHANGELOG: &[(&str, &str, &[&str])] = &[
    (
        "1.2",
        "noble-security",
        &[
            "* SECURITY UPDATE: overflow",
            "  - CVE-2024-1111",
            "  - CVE-2024-2222",
        ],
    ),
    ("1.1", "noble-security", &["* Fix a crash (no CVE)"]),
    (
        "1.0.1",
        "noble-security",
        &["* SECURITY UPDATE: CVE-2023-9999 and again CVE-2024-1111"],
    ),
    (
        "1.0",
        "noble",
        &["* Initial upload; closes CVE-2020-0001 (older than the lock)"],
    ),
];

#[test]
fn updates_with_cves_exit_3_with_the_exact_json() {
    let f = Fixture::new(&["libfoo1", "libbar1"]);
    let _a = locked(&f);
    let b = Archive::new(
        &f.key,
        vec![libfoo("1.0", None), libbar("1.0")],
        vec![libfoo("1.2", Some(changelog("foo", FOO_CHANGELOG)))],
    );
    let o = f.compose(&b, &["outdated", "--format", "json"]);
    assert_eq!(code(&o), 3, "{}{}", out(&o), err(&o));
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let checked_at = json["checked_at"].as_str().unwrap().to_string();
    assert!(checked_at.ends_with('Z'), "{checked_at}");
    let expected = serde_json::json!({
        "manifest": f.manifest.display().to_string(),
        "lock": f.lock_path().display().to_string(),
        "checked_at": checked_at,
        "packages": [{
            "arch": "amd64",
            "name": "libfoo1",
            "locked": "1.0",
            "available": "1.2",
            "suite": "noble-security",
            "entries": [
                {"version": "1.2", "distribution": "noble-security", "urgency": "medium",
                 "date": "Mon, 01 Jan 2024 00:00:00 +0000", "cves": ["CVE-2024-1111", "CVE-2024-2222"]},
                {"version": "1.1", "distribution": "noble-security", "urgency": "medium",
                 "date": "Mon, 01 Jan 2024 00:00:00 +0000", "cves": []},
                {"version": "1.0.1", "distribution": "noble-security", "urgency": "medium",
                 "date": "Mon, 01 Jan 2024 00:00:00 +0000", "cves": ["CVE-2023-9999", "CVE-2024-1111"]},
            ],
            "cves": ["CVE-2024-1111", "CVE-2024-2222", "CVE-2023-9999"],
            "changelog": null,
        }],
    });
    assert_eq!(json, expected);
    // Canonical: the same bytes as the value re-serialised with sorted keys, one line.
    let text = String::from_utf8(o.stdout.clone()).unwrap();
    assert_eq!(text.lines().count(), 1);
    assert!(text.find("\"arch\"").unwrap() < text.find("\"available\"").unwrap());
    // The same in text: the entry without a CVE is listed too.
    let o = f.compose(&b, &["outdated"]);
    assert_eq!(code(&o), 3);
    let t = out(&o);
    assert!(
        t.contains("amd64 libfoo1 1.0 → 1.2 (noble-security)"),
        "{t}"
    );
    assert!(
        t.contains("  1.1 noble-security urgency=medium Mon, 01 Jan 2024 00:00:00 +0000\n"),
        "{t}"
    );
    assert!(
        t.contains("1 package can be updated, fixing CVE-2024-1111, CVE-2024-2222, CVE-2023-9999"),
        "{t}"
    );
    // Nothing was written but verified blobs in the cache: the lock is as it was.
    assert!(f.lock_text().contains("libfoo1 1.0 "), "{}", f.lock_text());
    assert!(!f.dir.join("out").exists());
}

#[test]
fn lock_update_moves_the_lock_writes_the_report_and_locked_names_the_cves() {
    let f = Fixture::new(&["libfoo1", "libbar1"]);
    let _a = locked(&f);
    let b = Archive::new(
        &f.key,
        vec![libfoo("1.0", None), libbar("1.0")],
        vec![
            libfoo("1.2", Some(changelog("foo", FOO_CHANGELOG))),
            libbar("1.1"),
        ],
    );
    // A build against the lock: --locked fails naming both packages and libfoo1's CVEs.
    let o = Command::new(env!("CARGO_BIN_EXE_compose"))
        .arg(&f.manifest)
        .args(["--locked", "--quiet", "--output"])
        .arg(f.dir.join("out"))
        .arg("--mirror")
        .arg(format!("{UPSTREAM}={}", b.server.url))
        .arg("--cache")
        .arg(f.dir.join("cache"))
        .output()
        .unwrap();
    assert_eq!(code(&o), 1, "{}", err(&o));
    let e = err(&o);
    assert!(e.contains("libfoo1") && e.contains("libbar1"), "{e}");
    assert!(
        e.contains("libfoo1 1.2 (amd64) fixes CVE-2024-1111, CVE-2024-2222, CVE-2023-9999"),
        "{e}"
    );
    // Only libfoo1 moves; libbar1 keeps its pin.
    let report = f.dir.join("report.md");
    let o = f.compose(
        &b,
        &[
            "lock",
            "--update",
            "libfoo1",
            "--report",
            report.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", err(&o));
    let lock = f.lock_text();
    assert!(lock.contains("libfoo1 1.2 "), "{lock}");
    assert!(lock.contains("libbar1 1.0 "), "{lock}");
    let md = std::fs::read_to_string(&report).unwrap();
    assert!(
        md.starts_with("1 package updated, fixes CVE-2024-1111, CVE-2024-2222, CVE-2023-9999\n"),
        "{md}"
    );
    assert!(md.contains("### libfoo1 (amd64): 1.0 → 1.2"), "{md}");
    assert!(out(&o).contains("amd64 libfoo1 1.0 → 1.2"), "{}", out(&o));
    // Then everything: libbar1 moves too (no changelog in its package: said so).
    let o = f.compose(&b, &["lock", "--update"]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(out(&o).contains("amd64 libbar1 1.0 → 1.1"), "{}", out(&o));
    assert!(
        out(&o).contains("changelog not in this package"),
        "{}",
        out(&o)
    );
    assert!(f.lock_text().contains("libbar1 1.1 "));
    let o = f.compose(&b, &["outdated"]);
    assert_eq!(code(&o), 0, "{}", out(&o));
    // A package the manifest does not declare is a usage error.
    let o = f.compose(&b, &["lock", "--update", "libnope"]);
    assert_eq!(code(&o), 2, "{}", err(&o));
}

#[test]
fn a_changelog_in_the_package_the_doc_directory_links_to() {
    let f = Fixture::new(&["libfoo1"]);
    let a = Archive::new(&f.key, vec![libfoo("1.0", None)], vec![]);
    assert!(f.compose(&a, &["lock"]).status.success());
    let linked = |v: &str| {
        DebSpec::new("libfoo1", v, "amd64", Member::Zstd)
            .file(
                "/usr/lib/x86_64-linux-gnu/libfoo.so.1",
                b"foo".to_vec(),
                0o644,
            )
            .symlink("/usr/share/doc/libfoo1", "foo-base")
    };
    let base = |v: &str| {
        DebSpec::new("foo-base", v, "amd64", Member::Zstd).file(
            "/usr/share/doc/foo-base/changelog.Debian.gz",
            changelog("foo", FOO_CHANGELOG),
            0o644,
        )
    };
    let b = Archive::new(&f.key, vec![], vec![linked("1.2"), base("1.2")]);
    let o = f.compose(&b, &["outdated"]);
    assert_eq!(code(&o), 3, "{}", err(&o));
    let t = out(&o);
    assert!(
        t.contains("changelog read from foo-base 1.2 (/usr/share/doc/libfoo1 links to foo-base)"),
        "{t}"
    );
    assert!(t.contains("CVE-2024-2222"), "{t}");
    // The linked package at another version does not count: said so, no CVEs invented.
    let c = Archive::new(&f.key, vec![], vec![linked("1.2"), base("1.1")]);
    let o = f.compose(&c, &["outdated"]);
    let t = out(&o);
    assert!(
        t.contains("changelog not in this package (/usr/share/doc/libfoo1 links to foo-base, whose version 1.1 is not 1.2)"),
        "{t}"
    );
    assert!(!t.contains("CVE-"), "{t}");
}

#[test]
fn a_downgrade_and_a_removal_are_reported() {
    let f = Fixture::new(&["libfoo1", "libbar1"]);
    let a = Archive::new(
        &f.key,
        vec![libfoo("1.0", None)],
        vec![libfoo("1.2", None), libbar("1.0")],
    );
    assert!(f.compose(&a, &["lock"]).status.success());
    // The security pocket is withdrawn: libfoo1 goes back to 1.0, libbar1 is gone.
    let b = Archive::new(&f.key, vec![libfoo("1.0", None)], vec![]);
    let o = f.compose(&b, &["outdated", "--format", "json"]);
    assert_eq!(code(&o), 3, "{}", err(&o));
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let p = json["packages"].as_array().unwrap();
    assert_eq!(p.len(), 2, "{json}");
    assert_eq!(
        (p[0]["name"].as_str(), p[0]["available"].as_str()),
        (Some("libbar1"), None)
    );
    assert_eq!(
        (
            p[1]["name"].as_str(),
            p[1]["locked"].as_str(),
            p[1]["available"].as_str()
        ),
        (Some("libfoo1"), Some("1.2"), Some("1.0"))
    );
    assert_eq!(p[1]["entries"], serde_json::json!([]));
    let t = out(&f.compose(&b, &["outdated"]));
    assert!(t.contains("amd64 libfoo1 1.2 → 1.0 (a downgrade)"), "{t}");
    assert!(
        t.contains("amd64 libbar1 1.0 → no longer offered by any index"),
        "{t}"
    );
}

#[test]
fn a_hostile_changelog_is_bounded_and_escaped() {
    let f = Fixture::new(&["libfoo1"]);
    let a = Archive::new(&f.key, vec![libfoo("1.0", None)], vec![]);
    assert!(f.compose(&a, &["lock"]).status.success());
    let check = |changelog_bytes: Vec<u8>, expect: &str| {
        let b = Archive::new(&f.key, vec![], vec![libfoo("1.2", Some(changelog_bytes))]);
        let o = f.compose(&b, &["outdated"]);
        assert_eq!(code(&o), 3, "{}", err(&o));
        let t = out(&o);
        assert!(t.contains(expect), "{t}");
        assert!(!t.bytes().any(|b| b == 0x1b || b == 0x07), "{t:?}");
        t
    };
    // Not gzip.
    check(
        b"glibc (1.2) noble; urgency=high\n".to_vec(),
        "changelog unreadable: not a readable gzip file",
    );
    // Terminal escapes in every field: escaped, never raw.
    let evil = gzip(
        b"foo (1.2) noble\x1b[2J\x07; urgency=high\x1b]0;pwned\x07\n\n  * CVE-2024-3333 \x1b[31mred\n\n -- M <m@x>  \x1b[1mMon\n\n",
    );
    let t = check(
        evil,
        "noble\\u{1b}[2J\\u{7} urgency=high\\u{1b}]0;pwned\\u{7}",
    );
    assert!(t.contains("CVE-2024-3333"), "{t}");
    // Huge: 20 MiB of text after one header, compressed to a small file. The reading stops
    // at the cap with one line; memory stays bounded (the cap is 16 MiB of text).
    let mut big = b"foo (1.2) noble; urgency=low\n\n".to_vec();
    big.extend(std::iter::repeat_n(b"  * a line\n".as_slice(), 2 << 20).flatten());
    check(
        gzip(&big),
        "changelog unreadable: larger than 16 MiB before reaching version 1.0",
    );
}

/// The compose binary exits 2 on a bad `--format`.
#[test]
fn a_bad_format_is_a_usage_error() {
    let o = Command::new(env!("CARGO_BIN_EXE_compose"))
        .args(["outdated", "m.toml", "--format", "yaml"])
        .output()
        .unwrap();
    assert_eq!(code(&o), 2);
}

/// A native package has `changelog.gz` and no `changelog.Debian.gz`: its entries are read
/// from there; when a package has both, the Debian changelog is the one read.
#[test]
fn a_native_package_changelog_is_read() {
    let f = Fixture::new(&["libfoo1"]);
    let a = Archive::new(&f.key, vec![libfoo("1.0", None)], vec![]);
    assert!(f.compose(&a, &["lock"]).status.success());
    let entry = |cve: &str| {
        gzip(
            format!(
                "foo (1.2) noble-security; urgency=high\n\n  * {cve}\n\n -- M <m@x>  Mon, 01 Jan 2024 00:00:00 +0000\n\n"
            )
            .as_bytes(),
        )
    };
    let native = libfoo("1.2", None).file(
        "/usr/share/doc/libfoo1/changelog.gz",
        entry("CVE-2024-1111"),
        0o644,
    );
    let b = Archive::new(&f.key, vec![], vec![native]);
    let o = f.compose(&b, &["outdated"]);
    assert_eq!(code(&o), 3, "{}", err(&o));
    assert!(out(&o).contains(": CVE-2024-1111"), "{}", out(&o));
    let both = libfoo("1.2", Some(entry("CVE-2024-2222"))).file(
        "/usr/share/doc/libfoo1/changelog.gz",
        entry("CVE-2024-1111"),
        0o644,
    );
    let c = Archive::new(&f.key, vec![], vec![both]);
    let o = f.compose(&c, &["outdated"]);
    assert_eq!(code(&o), 3, "{}", err(&o));
    let t = out(&o);
    assert!(
        t.contains(": CVE-2024-2222") && !t.contains("CVE-2024-1111"),
        "{t}"
    );
}
