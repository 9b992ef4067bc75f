//! The lock and the hash audit, multi-arch, offline builds, and reproducibility across
//! environments, over the hermetic fixture repository (amd64 + arm64 + `all`).

mod support;

use compose::arch::Arch;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::{DebSpec, IndexVariants, Member, Repo, Server, SuiteSpec, TestKey};

fn suite(name: &str, foo_version: &str) -> SuiteSpec {
    let mut s = SuiteSpec::new(name, &["main"], &["amd64", "arm64"]);
    for (arch, triplet) in [
        ("amd64", "x86_64-linux-gnu"),
        ("arm64", "aarch64-linux-gnu"),
    ] {
        s = s.package(
            "main",
            DebSpec::new("libfoo1", foo_version, arch, Member::Zstd)
                .file(
                    &format!("/usr/lib/{triplet}/libfoo.so.1"),
                    format!("foo {foo_version} {arch}").into_bytes(),
                    0o644,
                )
                .copyright(),
        );
    }
    s.package(
        "main",
        DebSpec::new("tzdata", "2024a-1", "all", Member::Xz)
            .file("/usr/share/zoneinfo/UTC", b"TZif".to_vec(), 0o644)
            .copyright(),
    )
}

struct Fx {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    key: TestKey,
    repo: Repo,
    server: Server,
}

const BODY: &str = r#"
[package.libfoo1]
paths = ["/usr/lib/*-linux-gnu/libfoo.so.1"]

[package.tzdata]
paths = ["/usr/share/zoneinfo/**"]
"#;

impl Fx {
    fn new() -> Fx {
        let key = TestKey::generate("compose lock test <lock@example.invalid>");
        let repo = Repo::build(&key, &[suite("noble", "1.0-1")], IndexVariants::ALL);
        let server = repo.serve();
        // Reachable by another user: one test runs compose as nobody.
        let tmp = support::reachable_tempdir().unwrap_or_else(|| tempfile::tempdir().unwrap());
        let dir = tmp.path().to_path_buf();
        support::write_keyring(&dir, "archive.gpg", &key);
        let fx = Fx {
            _tmp: tmp,
            dir,
            key,
            repo,
            server,
        };
        fx.write_manifest("");
        fx
    }

    fn manifest(&self) -> PathBuf {
        self.dir.join("compose.toml")
    }

    fn lock(&self) -> PathBuf {
        self.dir.join("compose.toml.lock")
    }

    fn write_manifest(&self, extra: &str) {
        let text = format!(
            "[image]\nname = \"multi\"\narchitectures = [\"amd64\", \"arm64\"]\n{extra}\n{}\n{BODY}",
            support::source_toml(&self.server.url, &["noble"], &["main"], "archive.gpg")
        );
        support::write_manifest(&self.dir, &text);
    }

    fn compose(&self, args: &[&str]) -> Output {
        compose_in(&self.dir, args, &[])
    }
}

fn compose_in(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_compose"));
    cmd.current_dir(cwd).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "compose failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .last()
        .unwrap_or("")
        .to_string()
}

fn failed(out: &Output, code: i32) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(code), "{stderr}");
    stderr
}

fn build_args<'a>(fx: &'a Fx, out: &'a str, cache: &'a str) -> Vec<String> {
    vec![
        fx.manifest().display().to_string(),
        "--output".into(),
        fx.dir.join(out).display().to_string(),
        "--cache".into(),
        fx.dir.join(cache).display().to_string(),
        "--quiet".into(),
    ]
}

fn run(fx: &Fx, out: &str, cache: &str, extra: &[&str]) -> Output {
    let mut args = build_args(fx, out, cache);
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    fx.compose(&refs)
}

#[test]
fn one_run_builds_both_architectures_and_skopeo_picks_arm64() {
    let fx = Fx::new();
    let digest = ok(&run(&fx, "out", "cache", &[]));
    let out = fx.dir.join("out");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"], digest.as_str());
    assert_eq!(
        index["manifests"][0]["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let blob = std::fs::read(
        out.join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:")),
    )
    .unwrap();
    let image_index: serde_json::Value = serde_json::from_slice(&blob).unwrap();
    let platforms: Vec<(String, Option<String>)> = image_index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["platform"]["architecture"].as_str().unwrap().to_string(),
                m["platform"]["variant"].as_str().map(str::to_string),
            )
        })
        .collect();
    assert_eq!(
        platforms,
        [
            ("amd64".to_string(), None),
            ("arm64".to_string(), Some("v8".to_string()))
        ]
    );
    let layout = format!("oci:{}:multi", out.display());
    match Command::new("skopeo")
        .args(["--override-arch", "arm64", "inspect", "--config", &layout])
        .output()
    {
        Ok(o) => {
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            let config: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            assert_eq!(
                (config["architecture"].as_str(), config["variant"].as_str()),
                (Some("arm64"), Some("v8"))
            );
        }
        Err(_) => eprintln!("SKIPPED skopeo check: skopeo is not installed"),
    }
}

#[test]
fn the_lock_is_written_reused_and_read_back() {
    let fx = Fx::new();
    let first = ok(&run(&fx, "out", "cache", &[]));
    let text = std::fs::read_to_string(fx.lock()).unwrap();
    let lock = compose::lock::Lock::parse(&text, &fx.lock()).unwrap();
    assert_eq!(lock.to_text(), text, "the lock round-trips");
    assert_eq!(lock.index.as_ref().unwrap().digest(), first);
    let deb = fx.repo.package("libfoo1", "arm64");
    let pinned = &lock.archs[&Arch::ARM64].packages["libfoo1"];
    assert_eq!(
        (pinned.version.as_str(), pinned.sha256.hex()),
        ("1.0-1", deb.sha256.as_str())
    );
    assert_eq!(pinned.url, fx.server.url_of(&deb.filename));
    assert!(lock.archs[&Arch::AMD64]
        .releases
        .keys()
        .any(|u| u.ends_with("/dists/noble/InRelease")));
    assert!(
        text.lines().any(|l| l.starts_with("arm64 layer sha256:")),
        "{text}"
    );

    // A rebuild with the lock needs no index: remove them all from the server.
    for rel in ["Packages", "Packages.gz", "Packages.xz"] {
        for arch in ["amd64", "arm64"] {
            fx.repo
                .remove(&format!("dists/noble/main/binary-{arch}/{rel}"));
        }
    }
    fx.repo.remove("dists/noble/InRelease");
    fx.repo.remove("dists/noble/Release");
    let second = ok(&run(&fx, "out2", "cache2", &[]));
    assert_eq!(first, second);
    assert_eq!(
        std::fs::read_to_string(fx.lock()).unwrap(),
        text,
        "an unchanged build leaves the lock alone"
    );

    // `compose lock` refreshes without building; `compose lock` with the same inputs
    // keeps the recorded outputs.
    let fy = Fx::new();
    let out = fy.compose(&[
        "lock",
        fy.manifest().to_str().unwrap(),
        "--cache",
        fy.dir.join("c").to_str().unwrap(),
        "-q",
    ]);
    assert_eq!(ok(&out), fy.lock().display().to_string());
    let l = compose::lock::Lock::load(&fy.lock()).unwrap().unwrap();
    assert!(!l.has_outputs() && l.archs[&Arch::AMD64].packages.contains_key("tzdata"));
    assert!(!fy.dir.join("out").exists());
}

#[test]
fn locked_refuses_a_changed_manifest_index_or_output() {
    let fx = Fx::new();
    let digest = ok(&run(&fx, "out", "cache", &[]));
    assert_eq!(ok(&run(&fx, "out", "cache", &["--locked"])), digest);

    // Manifest changed.
    fx.write_manifest("labels = { \"a\" = \"b\" }");
    let e = failed(&run(&fx, "out-m", "cache", &["--locked"]), 1);
    assert!(
        e.contains("changed since the lock was written") && e.contains("compose.toml.lock:"),
        "{e}"
    );
    assert!(!fx.dir.join("out-m").exists());
    fx.write_manifest("");

    // The index changed: a newer libfoo1 in a re-signed repository.
    let newer = Repo::build(&fx.key, &[suite("noble", "1.0-2")], IndexVariants::ALL);
    for rel in [
        "dists/noble/InRelease",
        "dists/noble/Release",
        "dists/noble/Release.gpg",
    ] {
        fx.repo.write(rel, &newer.read(rel));
    }
    for p in newer.packages() {
        fx.repo.write(&p.filename, &newer.read(&p.filename));
    }
    for arch in ["amd64", "arm64"] {
        for v in ["Packages", "Packages.gz", "Packages.xz"] {
            let rel = format!("dists/noble/main/binary-{arch}/{v}");
            fx.repo.write(&rel, &newer.read(&rel));
        }
    }
    let e = failed(&run(&fx, "out-i", "cache", &["--locked"]), 1);
    assert!(
        e.contains("would change the lock") && e.contains("1.0-1 → 1.0-2"),
        "{e}"
    );
    // Without --locked the lock pins the old version (the old .deb is still served).
    assert_eq!(ok(&run(&fx, "out-i", "cache", &[])), digest);

    // The output changed: another epoch gives other digests; --locked with the lock's
    // own epoch passes, and an altered output line is caught as a hand edit.
    let e = failed(
        &compose_in(
            &fx.dir,
            &build_args(&fx, "out-e", "cache")
                .iter()
                .map(String::as_str)
                .chain(["--locked"])
                .collect::<Vec<_>>(),
            &[("SOURCE_DATE_EPOCH", "1700000000")],
        ),
        1,
    );
    assert!(e.contains("epoch"), "{e}");
    let text = std::fs::read_to_string(fx.lock()).unwrap();
    let line = text
        .lines()
        .position(|l| l.starts_with("amd64 config sha256:"))
        .unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    // Flip one hex digit of the recorded config digest.
    let at = "amd64 config sha256:".len() + 5;
    let digit = if lines[line].as_bytes()[at] == b'0' {
        "1"
    } else {
        "0"
    };
    lines[line].replace_range(at..at + 1, digit);
    std::fs::write(fx.lock(), lines.join("\n") + "\n").unwrap();
    let e = failed(&run(&fx, "out-t", "cache", &["--locked"]), 1);
    assert!(
        e.contains(&format!("compose.toml.lock:{}", line + 1)) && e.contains("edited by hand"),
        "{e}"
    );
}

#[test]
fn verify_passes_then_fails_on_a_damaged_cache_blob_or_lock_line() {
    let fx = Fx::new();
    ok(&run(&fx, "out", "cache", &[]));
    let verify = |fx: &Fx| {
        fx.compose(&[
            "verify",
            fx.manifest().to_str().unwrap(),
            "--cache",
            fx.dir.join("cache").to_str().unwrap(),
            "-q",
        ])
    };
    let out = verify(&fx);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("amd64: 2 packages")
            && stdout.contains("arm64: layer")
            && stdout.ends_with("verified\n"),
        "{stdout}"
    );

    // One byte of a cached .deb.
    let deb = fx.repo.package("libfoo1", "amd64");
    let blob = fx.dir.join("cache/sha256").join(&deb.sha256);
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&blob, &bytes).unwrap();
    let e = failed(&verify(&fx), 1);
    assert!(e.contains("damaged") && e.contains(&deb.sha256), "{e}");
    std::fs::remove_file(&blob).unwrap();
    ok(&verify(&fx));

    // One lock line.
    let text = std::fs::read_to_string(fx.lock()).unwrap();
    std::fs::write(fx.lock(), text.replacen("tag multi", "tag multo", 1)).unwrap();
    let e = failed(&verify(&fx), 1);
    assert!(e.contains("edited by hand"), "{e}");
}

#[test]
fn offline_builds_from_lock_and_cache_and_names_a_missing_blob() {
    let fx = Fx::new();
    let digest = ok(&run(&fx, "out", "cache", &[]));
    drop(fx.server.url.clone());
    assert_eq!(ok(&run(&fx, "out2", "cache", &["--offline"])), digest);
    let e = failed(&run(&fx, "out3", "empty-cache", &["--offline"]), 1);
    assert!(
        e.contains("--offline") && e.contains("not in the cache") && e.contains("sha256"),
        "{e}"
    );
    std::fs::remove_file(fx.lock()).unwrap();
    let e = failed(&run(&fx, "out4", "cache", &["--offline"]), 1);
    assert!(e.contains("needs a lock"), "{e}");
}

/// The digest does not depend on cache dir, working dir, umask, TZ, LANG, wall-clock
/// time, user or host name.
#[test]
fn the_digest_is_the_same_in_another_environment() {
    let fx = Fx::new();
    let a = ok(&compose_in(
        &fx.dir,
        &build_args(&fx, "out-a", "cache-a")
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        &[("TZ", "UTC"), ("LANG", "C")],
    ));
    std::fs::remove_file(fx.lock()).unwrap();
    let other = fx.dir.join("elsewhere");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::set_permissions(&fx.dir, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    std::fs::set_permissions(&other, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let args = build_args(&fx, "out-b", "cache-b");
    // Another user (nobody) and host name where possible, another umask always. Nobody
    // runs a copy of the binary: the checkout's target/ may be out of its reach (a
    // clone under a 0700 home directory).
    let root = unsafe_euid_is_root();
    let bin = support::binary_copy(env!("CARGO_BIN_EXE_compose"), &fx.dir);
    let script = format!(
        "umask 077; exec {} {}",
        bin.display(),
        args.iter()
            .map(|a| format!("'{a}'"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let mut cmd = if root && Command::new("unshare").arg("--version").output().is_ok() {
        let mut c = Command::new("unshare");
        c.args(["--uts", "sh", "-c", &format!("hostname compose-other-host && setpriv --reuid=65534 --regid=65534 --clear-groups sh -c \"{}\"", script.replace('"', "\\\""))]);
        c
    } else {
        let mut c = Command::new("sh");
        c.args(["-c", &script]);
        c
    };
    cmd.current_dir(&other)
        .env("TZ", "Pacific/Kiritimati")
        .env("LANG", "tr_TR.UTF-8")
        .env("LC_ALL", "tr_TR.UTF-8")
        .env("HOME", &other);
    let b = ok(&cmd.output().unwrap());
    assert_eq!(a, b);
}

fn unsafe_euid_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false)
}
