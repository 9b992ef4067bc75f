//! `--keyring URL=FILE` and `--exclude-package NAME` through the `compose` binary, over
//! the hermetic fixture repository served as a mirror of an upstream URL: a mirror that
//! re-signs (its key is not the manifest's keyring), and a declared package left out for
//! one build, recorded in the lock so that `--locked` and `compose verify` stay honest.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::{DebSpec, Member, TestKey, Workspace};

/// What the manifest names; the loopback server stands in for it with `--mirror`.
const UPSTREAM: &str = "http://archive.ubuntu.test/ubuntu";

const BODY: &str = r#"
[package.libc6]
paths = ["/usr/lib/*-linux-gnu/libc.so.6"]

[package.tzdata]
paths = ["/usr/share/zoneinfo/**"]
exclude = ["/usr/share/zoneinfo/right/**"]
"#;

fn packages(_arch: &str) -> Vec<DebSpec> {
    vec![
        support::libc6_arm64(b"libc arm64".to_vec()),
        DebSpec::new("tzdata", "2024a-1", "all", Member::Gz)
            .file("/usr/share/zoneinfo/UTC", b"TZif utc".to_vec(), 0o644)
            .file(
                "/usr/share/zoneinfo/right/UTC",
                b"TZif right".to_vec(),
                0o644,
            )
            .copyright(),
    ]
}

struct Fx {
    ws: Workspace,
    manifest: PathBuf,
    /// The key the manifest's own keyring holds: not the one the mirror signs with.
    _upstream: TestKey,
}

impl Fx {
    /// A manifest whose keyring (`upstream.gpg`) is not the mirror's key (`archive.gpg`).
    fn new() -> Fx {
        let ws = Workspace::with_packages("noble", &["arm64"], packages);
        let upstream = TestKey::generate("upstream archive <upstream@example.invalid>");
        support::write_keyring(&ws.dir, "upstream.gpg", &upstream);
        let text = format!(
            "[image]\nname = \"over\"\narchitectures = [\"arm64\"]\n\n{}\n{BODY}",
            support::source_toml(UPSTREAM, &["noble"], &["main"], "upstream.gpg")
        );
        let manifest = support::write_manifest(&ws.dir, &text);
        Fx {
            ws,
            manifest,
            _upstream: upstream,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.ws.dir.join(name)
    }

    fn lock(&self) -> String {
        std::fs::read_to_string(self.path("compose.toml.lock")).unwrap()
    }

    /// `compose [verify] MANIFEST --mirror … --cache … ARGS`, output to `out` for builds.
    fn run(&self, verify: bool, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_compose"));
        if verify {
            cmd.arg("verify");
        }
        cmd.arg(&self.manifest)
            .arg("--mirror")
            .arg(self.ws.mirror_arg(UPSTREAM))
            .arg("--cache")
            .arg(self.path("cache"));
        if !verify {
            cmd.arg("--output").arg(self.path("out"));
        }
        cmd.args(args).output().unwrap()
    }

    fn keyring_arg(&self) -> String {
        format!("{UPSTREAM}={}", self.path("archive.gpg").display())
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn succeeded(out: &Output) -> String {
    assert!(out.status.success(), "{}", stderr(out));
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    stdout.lines().last().unwrap().to_string()
}

/// The one `error:` line of a run that exited with `code`.
fn error(out: &Output, code: i32) -> String {
    let text = stderr(out);
    assert_eq!(out.status.code(), Some(code), "{text}");
    let errors: Vec<&str> = text.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "{text}");
    errors[0]["error: ".len()..].to_string()
}

/// The kind of each fact line of a lock (`tag`, `arm64 package`, …).
fn line_kinds(lock: &str) -> Vec<String> {
    lock.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let words: Vec<&str> = l.split(' ').collect();
            if words[0] == "arm64" {
                format!("arm64 {}", words[1])
            } else {
                words[0].to_string()
            }
        })
        .collect()
}

#[test]
fn a_keyring_override_verifies_a_re_signing_mirror_and_the_lock_records_what_it_did() {
    let fx = Fx::new();
    // The manifest's keyring does not hold the mirror's key: refused, as it must be.
    let e = error(&fx.run(false, &[]), 1);
    assert!(
        e.starts_with(&format!(
            "{UPSTREAM}/dists/noble/InRelease has no good signature by a key in the keyring"
        )),
        "{e}"
    );
    assert!(!fx.path("out").exists());

    // Given the mirror's keyring for that source, the build verifies and succeeds.
    let keyring = fx.keyring_arg();
    let digest = succeeded(&fx.run(false, &["--keyring", &keyring]));
    assert!(digest.starts_with("sha256:"), "{digest}");
    // The lock records what it always records (the layers' compression among it): the
    // URLs as the manifest writes them, no keyring and no new kind of line.
    let lock = fx.lock();
    assert_eq!(
        line_kinds(&lock),
        [
            "format",
            "manifest",
            "tool",
            "epoch",
            "tag",
            "index",
            "compression",
            "arm64 release",
            "arm64 packages",
            "arm64 package",
            "arm64 package",
            "arm64 layer",
            "arm64 config",
            "arm64 manifest",
            "checksum"
        ]
    );
    assert!(
        lock.contains(&format!(
            "arm64 release {UPSTREAM}/dists/noble/InRelease sha256:"
        )),
        "{lock}"
    );
    assert!(
        !lock.contains("gpg") && !lock.contains("127.0.0.1"),
        "{lock}"
    );
    // --locked (which resolves again) needs the override too, and passes with it.
    succeeded(&fx.run(false, &["--locked", "--keyring", &keyring]));
    let e = error(&fx.run(false, &["--locked"]), 1);
    assert!(
        e.contains("has no good signature by a key in the keyring"),
        "{e}"
    );
}

#[test]
fn a_keyring_override_for_no_source_is_a_usage_error() {
    let fx = Fx::new();
    let file = fx.path("archive.gpg");
    // The mirror's URL is not how the manifest names the source.
    let arg = format!("{}={}", fx.ws.server.url, file.display());
    let e = error(&fx.run(false, &["--keyring", &arg]), 2);
    assert_eq!(
        e,
        format!(
            "--keyring {}=…: {} has no [[source]] with url = \"{}\" (its sources: {UPSTREAM}); write the URL as the manifest does, before --mirror",
            fx.ws.server.url,
            fx.manifest.display(),
            fx.ws.server.url
        )
    );
    let arg = format!("{UPSTREAM}={}", fx.path("missing.gpg").display());
    let e = error(&fx.run(false, &["--keyring", &arg]), 2);
    assert_eq!(
        e,
        format!(
            "--keyring {UPSTREAM}={}: no such file; give the path of a binary .gpg or armored .asc keyring",
            fx.path("missing.gpg").display()
        )
    );
    let e = error(&fx.run(false, &["--keyring", "no-equals-sign"]), 2);
    assert!(e.contains("`no-equals-sign` is not URL=FILE"), "{e}");
    assert!(!fx.path("out").exists() && !fx.path("compose.toml.lock").exists());
}

/// The layer's paths of the single-architecture layout at `out`.
fn layer_paths(out: &Path) -> Vec<String> {
    let blob = |digest: &str| out.join("blobs/sha256").join(&digest["sha256:".len()..]);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    let layer =
        std::fs::File::open(blob(manifest["layers"][0]["digest"].as_str().unwrap())).unwrap();
    let mut tar = tar::Archive::new(flate2::read::MultiGzDecoder::new(layer));
    tar.entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn an_excluded_package_is_left_out_and_the_lock_holds_the_switch_to_it() {
    let fx = Fx::new();
    let keyring = fx.keyring_arg();
    // Without the switch: tzdata is in, and the directory its exclude emptied is not.
    succeeded(&fx.run(false, &["--keyring", &keyring]));
    let paths = layer_paths(&fx.path("out"));
    assert!(
        paths.iter().any(|p| p == "usr/share/zoneinfo/UTC"),
        "{paths:?}"
    );
    assert!(
        !paths.iter().any(|p| p.contains("zoneinfo/right")),
        "{paths:?}"
    );
    let full_lock = fx.lock();

    let run = fx.run(
        false,
        &["--keyring", &keyring, "--exclude-package", "tzdata"],
    );
    let digest = succeeded(&run);
    assert!(
        stderr(&run).contains(
            "note: left out of this build by --exclude-package: tzdata (the lock records it)"
        ),
        "{}",
        stderr(&run)
    );
    let paths = layer_paths(&fx.path("out"));
    assert!(
        !paths
            .iter()
            .any(|p| p.contains("zoneinfo") || p.contains("tzdata")),
        "{paths:?}"
    );
    let lock = fx.lock();
    // The manifest's hash as usual (the file did not change), one line for the switch,
    // and no tzdata package line.
    let manifest_line = |l: &str| {
        l.lines()
            .find(|x| x.starts_with("manifest "))
            .unwrap()
            .to_string()
    };
    assert_eq!(manifest_line(&lock), manifest_line(&full_lock));
    assert!(
        lock.lines()
            .any(|l| l.starts_with("exclude-package tzdata ~")),
        "{lock}"
    );
    assert!(!lock.contains("arm64 package tzdata "), "{lock}");

    // --locked and verify must be given the same switch.
    let e = error(&fx.run(false, &["--keyring", &keyring, "--locked"]), 1);
    assert_eq!(
        e,
        format!(
            "--locked: the lock {} was written with --exclude-package tzdata, this build has no --exclude-package; give the same switches, or run `compose lock {}` with these to accept the change",
            fx.path("compose.toml.lock").display(),
            fx.manifest.display()
        )
    );
    let again = fx.run(
        false,
        &[
            "--keyring",
            &keyring,
            "--locked",
            "--exclude-package",
            "tzdata",
        ],
    );
    assert_eq!(succeeded(&again), digest);
    let e = error(&fx.run(true, &[]), 1);
    assert_eq!(
        e,
        format!(
            "verify: the lock {} was written with --exclude-package tzdata, this run has no --exclude-package; give verify the same switches as the build",
            fx.path("compose.toml.lock").display()
        )
    );
    let verified = fx.run(true, &["--exclude-package", "tzdata"]);
    assert_eq!(succeeded(&verified), "verified");
    assert_eq!(fx.lock(), lock, "verify never rewrites the lock");

    // A build without the switch does not match the lock: it resolves again and records
    // tzdata again.
    succeeded(&fx.run(false, &["--keyring", &keyring]));
    assert_eq!(fx.lock(), full_lock);
}

#[test]
fn excluding_an_undeclared_package_is_a_usage_error() {
    let fx = Fx::new();
    let e = error(&fx.run(false, &["--exclude-package", "tzdata-legacy"]), 2);
    assert_eq!(
        e,
        format!(
            "--exclude-package tzdata-legacy: {} declares no [package.tzdata-legacy]; name a declared package",
            fx.manifest.display()
        )
    );
    assert!(!fx.path("out").exists() && !fx.path("compose.toml.lock").exists());
}
