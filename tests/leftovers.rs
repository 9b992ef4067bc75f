//! Nothing left behind, all outputs or none, through the `compose` binary against a
//! signed fixture repository on a loopback server that can be slowed down on purpose
//! (`tests/support/faulty.rs`):
//!
//! - every destination (`--output`, `--rootfs`, `--sbom`, the lock) is checked before
//!   anything is fetched;
//! - a failure while the outputs are put in place takes back those already in place;
//! - a run killed with SIGKILL (mid-download, mid-layer) leaves temporaries that the
//!   next run removes, while a live run's temporaries are never touched;
//! - the spool in `TMPDIR` holds the selected bytes once, not twice (a small tmpfs as
//!   root; skipped otherwise), and a full `TMPDIR` is one sentence naming it.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::{
    assert_cache_clean, digest_of, libc6_arm64, tzdata_utc, DebSpec, Fault, Faulty, IndexVariants,
    Member, Repo, SuiteSpec,
};

const ARCH: &str = "arm64";

/// `n` incompressible bytes (xorshift64), so that compressing them takes real time.
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

const BODY: &str = r#"
[package.libc6]
paths = ["/usr/lib/*-linux-gnu/libc.so.6"]
[package.tzdata]
paths = ["/usr/share/zoneinfo/UTC"]
[package.libbig1]
paths = ["/usr/lib/*-linux-gnu/libbig.so.1"]
"#;

struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    repo: Repo,
    server: Faulty,
    manifest: PathBuf,
}

impl Fixture {
    /// libc6, tzdata and libbig1, whose one selected file is `big` incompressible bytes.
    fn new(big: usize) -> Fixture {
        let key = support::TestKey::generate("leftovers <leftovers@example.invalid>");
        let suite = SuiteSpec::new("noble", &["main"], &[ARCH])
            .package("main", libc6_arm64(vec![0x5a; 4096]))
            .package("main", tzdata_utc())
            .package(
                "main",
                DebSpec::new("libbig1", "1.0-1", ARCH, Member::Zstd)
                    .file(
                        "/usr/lib/aarch64-linux-gnu/libbig.so.1",
                        noise(big, 0x9E37_79B9_7F4A_7C15),
                        0o644,
                    )
                    .copyright(),
            );
        let repo = Repo::build(&key, &[suite], IndexVariants::XZ_ONLY);
        let server = Faulty::serve_dir(&repo.root);
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        support::write_keyring(&dir, "archive.gpg", &key);
        let text = format!(
            "[image]\nname = \"leftovers\"\narchitectures = [\"{ARCH}\"]\n\n{}\n{BODY}",
            support::source_toml(&server.url, &["noble"], &["main"], "archive.gpg")
        );
        let manifest = support::write_manifest(&dir, &text);
        Fixture {
            _tmp: tmp,
            dir,
            repo,
            server,
            manifest,
        }
    }

    fn out(&self) -> PathBuf {
        self.dir.join("out")
    }

    fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    fn sbom(&self) -> PathBuf {
        self.dir.join("sbom.json")
    }

    fn lock(&self) -> PathBuf {
        self.dir.join("compose.toml.lock")
    }

    fn cache(&self) -> PathBuf {
        self.dir.join("cache")
    }

    fn big_deb(&self) -> String {
        self.repo.package("libbig1", ARCH).filename
    }

    /// `compose MANIFEST --output out --cache cache --quiet`, then `extra`.
    fn cmd(&self, extra: &[&str]) -> Command {
        self.cmd_at(&self.out(), extra)
    }

    /// [`Fixture::cmd`] with another `--output`.
    fn cmd_at(&self, out: &Path, extra: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_compose"));
        c.arg(&self.manifest)
            .arg("--output")
            .arg(out)
            .arg("--cache")
            .arg(self.cache())
            .arg("--quiet")
            .args(extra)
            .env("COMPOSE_HTTP_TIMEOUT", "60")
            .env_remove("COMPOSE_CACHE")
            .env_remove("SOURCE_DATE_EPOCH");
        c
    }

    /// `--rootfs rootfs --sbom sbom.json` as well.
    fn all_outputs(&self, extra: &[&str]) -> Vec<String> {
        let mut args = vec![
            "--rootfs".to_string(),
            self.rootfs().display().to_string(),
            "--sbom".to_string(),
            self.sbom().display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }

    fn run(&self, extra: &[&str]) -> Output {
        self.cmd(extra).output().unwrap()
    }

    fn spawn(&self, extra: &[&str]) -> Child {
        self.cmd(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Names in the fixture's directory starting with `.` (temporaries).
    fn hidden(&self) -> Vec<String> {
        hidden_in(&self.dir)
    }

    /// The files in the cache's `tmp/` (partial downloads).
    fn partial_downloads(&self) -> Vec<String> {
        names(&self.cache().join("tmp"))
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn hidden_in(dir: &Path) -> Vec<String> {
    names(dir)
        .into_iter()
        .filter(|n| n.starts_with('.'))
        .collect()
}

/// The one error line of a failed run (exit `code`).
fn one_error(run: &Output, code: i32) -> String {
    let stderr = String::from_utf8_lossy(&run.stderr).to_string();
    assert_eq!(run.status.code(), Some(code), "exit code; stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one error line, got: {stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    assert!(run.stdout.is_empty(), "no digest on failure");
    eprintln!("compose said: {}", lines[0]);
    lines[0].to_string()
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn kill9(child: &mut Child) {
    // SAFETY: signalling our own child by its pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGKILL) }, 0);
    let status = child.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );
}

// -------------------------------------------------------------- before the build

#[test]
fn every_output_destination_is_checked_before_anything_is_fetched() {
    let f = Fixture::new(4096);
    let sbom_dir = f.dir.join("sbom-dir");
    std::fs::create_dir(&sbom_dir).unwrap();
    let not_a_layout = f.dir.join("photos");
    std::fs::create_dir(&not_a_layout).unwrap();
    std::fs::write(not_a_layout.join("holiday.jpg"), b"precious").unwrap();
    let a_file = f.dir.join("a-file");
    std::fs::write(&a_file, b"").unwrap();
    let d = |p: &Path| p.display().to_string();
    let cases: Vec<(Vec<String>, String)> = vec![
        (
            vec!["--sbom".into(), d(&sbom_dir)],
            format!(
                "error: refusing to write the SBOM to {}: it is a directory; give --sbom a file path",
                d(&sbom_dir)
            ),
        ),
        (
            // Read (as the lock of an earlier build) before anything else.
            vec!["--lock".into(), d(&sbom_dir)],
            format!(
                "error: {}: cannot read the lock: Is a directory (os error 21)",
                d(&sbom_dir)
            ),
        ),
        (
            vec!["--output".into(), d(&not_a_layout)],
            format!(
                "error: refusing to replace {}: it exists and is not an OCI image layout (no oci-layout file); remove it or choose another output directory",
                d(&not_a_layout)
            ),
        ),
        (
            vec!["--format".into(), "oci-archive".into(), "--output".into(), d(&sbom_dir)],
            format!(
                "error: refusing to write the archive to {}: it is a directory; give --output a file name such as image.tar",
                d(&sbom_dir)
            ),
        ),
        (
            vec!["--lock".into(), d(&a_file.join("compose.lock"))],
            format!(
                "error: {}: cannot read the lock: Not a directory (os error 20)",
                d(&a_file.join("compose.lock")),
            ),
        ),
        (
            vec!["--sbom".into(), d(&a_file.join("x/sbom.json"))],
            format!(
                "error: cannot write --sbom {}: {} is not a directory",
                d(&a_file.join("x/sbom.json")),
                d(&a_file)
            ),
        ),
        (
            vec!["--rootfs".into(), d(&not_a_layout)],
            format!(
                "error: refusing to write the root filesystem to {}: it is not empty and is not a root filesystem compose wrote there before; remove it or choose another --rootfs directory",
                d(&not_a_layout)
            ),
        ),
    ];
    for (args, expected) in cases {
        let mut out = f.out();
        let mut refs: Vec<&str> = Vec::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            if a == "--output" {
                out = PathBuf::from(it.next().unwrap());
            } else {
                refs.push(a);
            }
        }
        let run = f.cmd_at(&out, &refs).output().unwrap();
        assert_eq!(one_error(&run, 1), expected);
        assert!(
            f.server.requests().is_empty(),
            "nothing may be fetched before the outputs are checked: {:?}",
            f.server.requests()
        );
        assert!(!f.out().exists() && !f.lock().exists());
        assert_eq!(f.hidden(), Vec::<String>::new());
    }
    assert_eq!(names(&not_a_layout), ["holiday.jpg"]);
    assert!(names(&sbom_dir).is_empty());

    // Two outputs at one path: a usage error.
    let same = f.dir.join("same.json");
    let run = f.run(&["--sbom", &d(&same), "--lock", &d(&same)]);
    assert_eq!(
        one_error(&run, 2),
        format!(
            "error: --lock and --sbom name the same path {}; give each output its own",
            d(&same)
        )
    );
    assert!(f.server.requests().is_empty());
}

/// Runs `cmd` as nobody (65534) through setpriv; `None` when that is not possible.
fn as_nobody(cmd: &Command) -> Option<Command> {
    let ok = Command::new("setpriv")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !rustix::process::geteuid().is_root() || !ok {
        return None;
    }
    let mut c = Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(cmd.get_program())
        .args(cmd.get_args());
    Some(c)
}

#[test]
fn a_lock_in_a_directory_that_takes_no_files_is_refused_before_the_build() {
    use std::os::unix::fs::PermissionsExt;
    // Everything nobody needs is reachable; the lock's directory is read-only.
    let Some(tmp) = support::reachable_tempdir() else {
        eprintln!("SKIPPED: no temporary directory another user can reach");
        return;
    };
    let f = Fixture::new(4096);
    let dir = tmp.path();
    let bin = support::binary_copy(env!("CARGO_BIN_EXE_compose"), dir);
    std::fs::copy(&f.manifest, dir.join("compose.toml")).unwrap();
    std::fs::copy(f.dir.join("archive.gpg"), dir.join("archive.gpg")).unwrap();
    for p in ["compose.toml", "archive.gpg"] {
        std::fs::set_permissions(dir.join(p), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let ro = dir.join("ro");
    std::fs::create_dir(&ro).unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    let mut c = Command::new(&bin);
    c.arg(dir.join("compose.toml"))
        .args(["--output", &dir.join("out").display().to_string()])
        .args(["--cache", &dir.join("cache").display().to_string()])
        .args(["--lock", &ro.join("compose.lock").display().to_string()])
        .arg("--quiet");
    let Some(mut c) = as_nobody(&c) else {
        eprintln!("SKIPPED: needs root and setpriv to run as a user the directory refuses");
        return;
    };
    let run = c.env_remove("COMPOSE_CACHE").output().unwrap();
    assert_eq!(
        one_error(&run, 1),
        format!(
            "error: cannot write the lock {}: cannot create a file in {}: Permission denied (os error 13)",
            ro.join("compose.lock").display(),
            ro.display()
        )
    );
    assert!(f.server.requests().is_empty(), "{:?}", f.server.requests());
    assert!(!dir.join("out").exists());
}

// ---------------------------------------------------------- all outputs or none

#[test]
fn a_failure_while_committing_takes_back_the_outputs_already_in_place() {
    let f = Fixture::new(64 * 1024);
    // A first build: layout, root filesystem, SBOM and lock in place.
    let first = digest_of(
        &f.run(
            &f.all_outputs(&[])
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        ),
    );
    let index_before = std::fs::read(f.out().join("index.json")).unwrap();
    let lock_before = std::fs::read(f.lock()).unwrap();
    let rootfs_before = names(&f.rootfs().join("usr/lib/aarch64-linux-gnu"));
    std::fs::write(f.rootfs().join("usr/lib/aarch64-linux-gnu/marker"), b"old").ok();

    // A second build, with another tag (so another index and lock), slowed down: while
    // it downloads, the SBOM's path becomes a directory. Everything was checked before
    // the build; the SBOM is the third output put in place, after the root filesystem and
    // the layout, which must be taken back.
    std::fs::remove_dir_all(f.cache()).unwrap();
    f.server.set(
        &f.big_deb(),
        Fault::Throttle {
            chunk: 8 * 1024,
            pause: Duration::from_millis(100),
        },
    );
    let args = f.all_outputs(&["--tag", "second"]);
    let child = f.spawn(&args.iter().map(String::as_str).collect::<Vec<_>>());
    wait_for("the slow download", || f.server.hits(&f.big_deb()) == 2);
    std::fs::remove_file(f.sbom()).unwrap();
    std::fs::create_dir(f.sbom()).unwrap();
    std::fs::write(f.sbom().join("kept"), b"a user's file").unwrap();
    let run = child.wait_with_output().unwrap();
    let e = one_error(&run, 1);
    assert!(
        e.starts_with(&format!(
            "error: SBOM: cannot write {}: ",
            f.sbom().display()
        )),
        "{e}"
    );
    // The first build's outputs, exactly.
    assert_eq!(
        std::fs::read(f.out().join("index.json")).unwrap(),
        index_before
    );
    assert_eq!(std::fs::read(f.lock()).unwrap(), lock_before);
    assert_eq!(
        std::fs::read(f.rootfs().join("usr/lib/aarch64-linux-gnu/marker")).unwrap(),
        b"old"
    );
    assert!(rootfs_before.iter().all(|n| f
        .rootfs()
        .join("usr/lib/aarch64-linux-gnu")
        .join(n)
        .exists()));
    assert_eq!(names(&f.sbom()), ["kept"]);
    assert_eq!(f.hidden(), [".rootfs.compose-rootfs"]);
    assert_cache_clean(&f.cache());
    // And the first build's digest is what the layout holds.
    let index: serde_json::Value = serde_json::from_slice(&index_before).unwrap();
    assert_eq!(index["manifests"][0]["digest"], first.as_str());
}

// ------------------------------------------------------------- killed runs

#[test]
fn a_run_killed_mid_download_leaves_what_the_next_run_removes() {
    let f = Fixture::new(256 * 1024);
    f.server
        .set(&f.big_deb(), Fault::Stall { after: Some(4096) });
    let mut child = f.spawn(&[]);
    let pid = child.id();
    wait_for("the stalled download", || {
        f.server.hits(&f.big_deb()) == 1
            && f.partial_downloads().len() == 1
            && !f.hidden().is_empty()
    });
    kill9(&mut child);
    // What the killed run left: its layout's temporary directory and a partial download,
    // both named with its PID.
    let left = f.hidden();
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].starts_with(&format!(".out.tmp-{pid}-")), "{left:?}");
    let partial = f.partial_downloads();
    assert!(
        partial[0].starts_with(&format!(".download-{pid}-")),
        "{partial:?}"
    );

    f.server.clear(&f.big_deb());
    digest_of(&f.run(&[]));
    assert_eq!(
        f.hidden(),
        Vec::<String>::new(),
        "the dead run's temporary stays"
    );
    assert_eq!(f.partial_downloads(), Vec::<String>::new());
    assert_cache_clean(&f.cache());
}

#[test]
fn a_run_killed_mid_layer_leaves_what_the_next_run_removes() {
    // 16 MiB of noise: gzip takes long enough to be caught at it.
    let f = Fixture::new(16 << 20);
    // Fill the cache first, so that the run goes straight to composing and the layer.
    digest_of(&f.run(&[]));
    std::fs::remove_dir_all(f.out()).unwrap();
    std::fs::remove_dir_all(f.cache().join("layers")).unwrap();
    let mut child = f.spawn(&[]);
    let pid = child.id();
    let blob_being_written = |f: &Fixture| {
        f.hidden().iter().any(|t| {
            let blobs = f.dir.join(t).join("blobs/sha256");
            std::fs::read_dir(blobs).is_ok_and(|rd| {
                rd.flatten().any(|e| {
                    e.file_name().to_string_lossy().starts_with(".tmp")
                        && e.metadata().is_ok_and(|m| m.len() > 0)
                })
            })
        })
    };
    wait_for("the layer being written", || blob_being_written(&f));
    kill9(&mut child);
    let left = f.hidden();
    assert!(
        left.len() == 1 && left[0].starts_with(&format!(".out.tmp-{pid}-")),
        "{left:?}"
    );
    digest_of(&f.run(&[]));
    assert_eq!(
        f.hidden(),
        Vec::<String>::new(),
        "the dead run's layout stays"
    );
}

#[test]
fn a_live_concurrent_runs_temporaries_are_never_touched() {
    let f = Fixture::new(256 * 1024);
    // Run A downloads slowly into its own cache; run B shares A's output path and cache
    // and starts while A is mid-download.
    f.server.set(
        &f.big_deb(),
        Fault::Throttle {
            chunk: 16 * 1024,
            pause: Duration::from_millis(150),
        },
    );
    let a = f.spawn(&[]);
    let a_pid = a.id();
    wait_for("A mid-download", || {
        f.server.hits(&f.big_deb()) == 1 && f.partial_downloads().len() == 1
    });
    let a_temporaries = (f.hidden(), f.partial_downloads());
    assert!(a_temporaries.0[0].starts_with(&format!(".out.tmp-{a_pid}-")));
    let b = f.spawn(&[]);
    let b_pid = b.id();
    // B has passed its sweeps (of the cache and beside the output) once its own layout
    // directory exists.
    wait_for("B's own temporary", || {
        f.hidden()
            .iter()
            .any(|n| n.starts_with(&format!(".out.tmp-{b_pid}-")))
    });
    for t in &a_temporaries.0 {
        assert!(f.dir.join(t).exists(), "B removed A's {t}");
    }
    for t in &a_temporaries.1 {
        assert!(f.cache().join("tmp").join(t).exists(), "B removed A's {t}");
    }
    let (ra, rb) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert_eq!(digest_of(&ra), digest_of(&rb));
    assert_eq!(f.hidden(), Vec::<String>::new());
    assert_cache_clean(&f.cache());
}

// ------------------------------------------------------------------ the spool

/// Unmounts on drop.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// A tmpfs of `size` at `dir`, or why not (not root, mount refused).
fn tmpfs(dir: &Path, size: &str) -> Result<Mount, String> {
    std::fs::create_dir_all(dir).unwrap();
    if !rustix::process::geteuid().is_root() {
        return Err("mounting a tmpfs needs root".into());
    }
    match Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .output()
    {
        Ok(o) if o.status.success() => Ok(Mount(dir.to_path_buf())),
        Ok(o) => Err(format!(
            "mount -t tmpfs is not permitted here: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Err(format!("cannot run mount: {e}")),
    }
}

#[test]
fn the_spool_holds_the_selected_bytes_once() {
    // 16 MiB selected, in a 24 MiB TMPDIR: copying from the package's spool into the
    // image's needed 32 MiB.
    let f = Fixture::new(16 << 20);
    let small = f.dir.join("small-tmp");
    let _mount = match tmpfs(&small, "24m") {
        Ok(m) => m,
        Err(why) => {
            eprintln!("SKIPPED spool test: {why}");
            return;
        }
    };
    let run = f.cmd(&[]).env("TMPDIR", &small).output().unwrap();
    digest_of(&run);
    assert!(names(&small).is_empty(), "the spool is unlinked");

    // 32 MiB selected do not fit: one sentence naming the spool's directory.
    let f = Fixture::new(32 << 20);
    let run = f.cmd(&[]).env("TMPDIR", &small).output().unwrap();
    let e = one_error(&run, 1);
    assert_eq!(
        e,
        format!(
            "error: package libbig1: cannot write the spool in {} (the temporary directory, TMPDIR): No space left on device (os error 28); the selected files need room there: point TMPDIR to a file system with more space",
            small.display()
        )
    );
    assert!(!f.out().exists());
    assert_eq!(f.hidden(), Vec::<String>::new());
    assert!(names(&small).is_empty());
}
