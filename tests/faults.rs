//! Network and local faults (docs/errors.md): each ends in one clear error, exit 1, nothing at
//! `--output` (no `.tmp` sibling either) and nothing unverified in the cache. The network
//! cases run against a loopback server that misbehaves on purpose
//! (`tests/support/faulty.rs`), through the `compose` binary.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use support::{
    assert_cache_clean, closed_port_url, digest_of, libc6_arm64, tzdata_utc, DebSpec, Fault,
    Faulty, IndexVariants, Member, Repo, SuiteSpec,
};

const ARCH: &str = "arm64";
/// Bytes of libbig's one file: incompressible, so the layer is larger than this.
const BIG: usize = 256 * 1024;

fn big_bytes() -> Vec<u8> {
    // xorshift64: deterministic and incompressible
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..BIG)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn repo(key: &support::TestKey) -> Repo {
    let suite = SuiteSpec::new("noble", &["main"], &[ARCH])
        .package("main", libc6_arm64(vec![0x5a; 4096]))
        .package("main", tzdata_utc())
        .package(
            "main",
            DebSpec::new("libbig1", "1.0-1", ARCH, Member::Xz)
                .file("/usr/lib/aarch64-linux-gnu/libbig.so.1", big_bytes(), 0o644)
                .copyright(),
        );
    Repo::build(key, &[suite], IndexVariants::XZ_ONLY)
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
    fn new() -> Fixture {
        let key = support::TestKey::generate("faults <faults@example.invalid>");
        let repo = repo(&key);
        let server = Faulty::serve_dir(&repo.root);
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        support::write_keyring(&dir, "archive.gpg", &key);
        let manifest = write_manifest(&dir, &server.url);
        Fixture {
            _tmp: tmp,
            dir,
            repo,
            server,
            manifest,
        }
    }

    /// The pool path of a package's `.deb`.
    fn deb(&self, name: &str) -> support::PublishedDeb {
        let arch = if name == "tzdata" { "all" } else { ARCH };
        self.repo.package(name, arch)
    }

    fn out(&self) -> PathBuf {
        self.dir.join("out")
    }

    fn cache(&self) -> PathBuf {
        self.dir.join("cache")
    }

    /// `compose MANIFEST --output out --cache cache --quiet` with a 1 s HTTP timeout.
    fn cmd(&self, out: &Path) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_compose"));
        c.arg(&self.manifest)
            .arg("--output")
            .arg(out)
            .arg("--cache")
            .arg(self.cache())
            .arg("--quiet")
            .env("COMPOSE_HTTP_TIMEOUT", "1")
            .env_remove("COMPOSE_CACHE");
        c
    }

    fn run(&self) -> Output {
        self.cmd(&self.out()).output().unwrap()
    }

    /// Run, expect a clean failure, and return the one error line.
    fn fails(&self) -> String {
        let run = self.run();
        self.clean_failure(&run)
    }

    fn clean_failure(&self, run: &Output) -> String {
        let stderr = String::from_utf8_lossy(&run.stderr).to_string();
        assert_eq!(run.status.code(), Some(1), "exit code; stderr: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one error line, got: {stderr}");
        assert!(lines[0].starts_with("error: "), "{stderr}");
        assert!(run.stdout.is_empty(), "no digest on failure");
        self.assert_nothing_left(&self.out());
        eprintln!("compose said: {}", lines[0]);
        lines[0].to_string()
    }

    /// Nothing at `out`, no temporary sibling of it, no partial download in the cache,
    /// and every cached blob is what its name says.
    fn assert_nothing_left(&self, out: &Path) {
        assert!(!out.exists(), "nothing may be at {}", out.display());
        let name = out.file_name().unwrap().to_string_lossy().to_string();
        for e in std::fs::read_dir(out.parent().unwrap()).unwrap() {
            let n = e.unwrap().file_name().to_string_lossy().to_string();
            assert!(
                !n.starts_with(&format!(".{name}.tmp")) && !n.starts_with(".old-"),
                "temporary {n} left beside {}",
                out.display()
            );
        }
        assert_cache_clean(&self.cache());
    }
}

fn write_manifest(dir: &Path, url: &str) -> PathBuf {
    let text = format!(
        "[image]\nname = \"faults\"\narchitectures = [\"{ARCH}\"]\n\n{}\n{BODY}",
        support::source_toml(url, &["noble"], &["main"], "archive.gpg")
    );
    support::write_manifest(dir, &text)
}

fn in_cache(f: &Fixture, sha: &str) -> bool {
    f.cache().join("sha256").join(sha).exists()
}

// ---------------------------------------------------------------- network

#[test]
fn connection_refused_is_retried_then_one_error_naming_the_url() {
    let f = Fixture::new();
    let closed = closed_port_url();
    write_manifest(&f.dir, &closed);
    let e = f.fails();
    assert!(
        e.contains(&format!("{closed}/dists/noble/InRelease")),
        "{e}"
    );
    assert!(
        e.contains("could not connect") && e.contains("Connection refused"),
        "{e}"
    );
    assert!(e.contains("gave up after 3 attempts"), "{e}");
}

#[test]
fn a_reset_mid_transfer_is_retried_then_fails_and_caches_nothing() {
    let f = Fixture::new();
    let deb = f.deb("libbig1");
    f.server.set(&deb.filename, Fault::Reset { after: 1000 });
    let e = f.fails();
    assert!(e.contains(&f.server.url_of(&deb.filename)), "{e}");
    assert!(e.contains("gave up after 3 attempts"), "{e}");
    assert_eq!(f.server.hits(&deb.filename), 3, "three attempts");
    assert!(!in_cache(&f, &deb.sha256));
}

#[test]
fn a_server_that_stalls_times_out() {
    let f = Fixture::new();
    let deb = f.deb("libc6");
    // Accepts and reads the request, never answers.
    f.server.set(&deb.filename, Fault::Stall { after: None });
    let started = Instant::now();
    let e = f.fails();
    assert!(e.contains(&f.server.url_of(&deb.filename)), "{e}");
    assert!(e.contains("timed out"), "{e}");
    assert!(e.contains("gave up after 3 attempts"), "{e}");
    assert_eq!(f.server.hits(&deb.filename), 3);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );

    // Headers and part of the body, then silence.
    f.server.clear(&deb.filename);
    std::fs::remove_dir_all(f.cache()).unwrap();
    let deb = f.deb("libbig1");
    f.server
        .set(&deb.filename, Fault::Stall { after: Some(500) });
    let e = f.fails();
    assert!(
        e.contains(&f.server.url_of(&deb.filename)) && e.contains("timed out"),
        "{e}"
    );
    assert!(!in_cache(&f, &deb.sha256));
}

#[test]
fn server_errors_are_retried_with_backoff_then_one_error_with_the_count() {
    let f = Fixture::new();
    let deb = f.deb("libc6");
    f.server.set(&deb.filename, Fault::Status(503));
    let started = Instant::now();
    let e = f.fails();
    assert_eq!(
        e,
        format!(
            "error: {}: HTTP 503, gave up after 3 attempts",
            f.server.url_of(&deb.filename)
        )
    );
    assert_eq!(f.server.hits(&deb.filename), 3);
    // Backoff: 200 ms then 800 ms between the attempts.
    assert!(started.elapsed() >= Duration::from_millis(1000));

    // A 4xx other than 404 is not retried.
    f.server.set(&deb.filename, Fault::Status(403));
    let before = f.server.hits(&deb.filename);
    let e = f.fails();
    assert!(e.ends_with(": HTTP 403"), "{e}");
    assert_eq!(f.server.hits(&deb.filename), before + 1);

    // A server that recovers within the attempts: the build succeeds.
    f.server.set(
        &deb.filename,
        Fault::Flaky {
            status: 502,
            times: 2,
        },
    );
    let before = f.server.hits(&deb.filename);
    digest_of(&f.run());
    assert_eq!(f.server.hits(&deb.filename), before + 3);
    assert_cache_clean(&f.cache());
}

/// `n` redirects: the `.deb` path → `/hop/1` → … → `/hop/n`, which serves the `.deb`.
fn redirect_chain(f: &Fixture, filename: &str, n: usize) {
    f.server.set(filename, Fault::Redirect("/hop/1".into()));
    for i in 1..n {
        f.server.set(
            &format!("/hop/{i}"),
            Fault::Redirect(format!("/hop/{}", i + 1)),
        );
    }
    f.server
        .set(&format!("/hop/{n}"), Fault::Alias(filename.into()));
}

#[test]
fn redirects_are_followed_up_to_five_and_loops_end_cleanly() {
    let f = Fixture::new();
    let deb = f.deb("libc6");
    // The .deb's own URL redirects, then 4 more hops: 5 redirects in all.
    redirect_chain(&f, &deb.filename, 5);
    digest_of(&f.run());
    assert!(in_cache(&f, &deb.sha256));

    let g = Fixture::new();
    let deb = g.deb("libc6");
    redirect_chain(&g, &deb.filename, 6);
    let e = g.fails();
    assert!(e.contains(&g.server.url_of(&deb.filename)), "{e}");
    assert!(e.contains("more than 5 redirects"), "{e}");
    assert_eq!(
        g.server.hits(&deb.filename),
        1,
        "a refused redirect is not retried"
    );

    let h = Fixture::new();
    let deb = h.deb("libc6");
    h.server.set(&deb.filename, Fault::Redirect("/loop".into()));
    h.server
        .set("/loop", Fault::Redirect(h.server.url_of(&deb.filename)));
    let e = h.fails();
    assert!(e.contains("redirect loop"), "{e}");
    assert!(e.contains(&h.server.url_of(&deb.filename)), "{e}");
    assert_eq!(h.server.hits(&deb.filename), 1);

    // Another scheme: refused, not retried.
    let i = Fixture::new();
    let deb = i.deb("libc6");
    i.server.set(
        &deb.filename,
        Fault::Redirect("ftp://127.0.0.1/x.deb".into()),
    );
    let e = i.fails();
    assert!(e.contains("only http and https are followed"), "{e}");
}

#[test]
fn a_body_longer_than_announced_or_than_the_index_lists() {
    // Content-Length smaller than the bytes sent (and than the index lists).
    let f = Fixture::new();
    let deb = f.deb("libbig1");
    f.server.set(&deb.filename, Fault::Announce(deb.size - 100));
    let e = f.fails();
    assert_eq!(
        e,
        format!(
            "error: package libbig1 1.0-1 ({ARCH}): size mismatch for {}: the server announces {} bytes (Content-Length), the signed index lists {}; the mirror serves a different file",
            f.server.url_of(&deb.filename),
            deb.size - 100,
            deb.size
        )
    );
    assert_eq!(f.server.hits(&deb.filename), 1, "not retried");

    // No Content-Length and more bytes than the index lists: cut off while streaming.
    f.server
        .set(&deb.filename, Fault::Unannounced(vec![0; 4096]));
    let e = f.fails();
    assert!(
        e.contains(&format!(
            "size mismatch for {}: expected {} bytes, got",
            f.server.url_of(&deb.filename),
            deb.size
        )) && e.ends_with("or more"),
        "{e}"
    );
    assert!(!in_cache(&f, &deb.sha256));

    // The right Content-Length followed by junk: the junk is not part of the body
    // (HTTP/1.1 framing); the hash-checked file is used.
    f.server.set(&deb.filename, Fault::Extra(vec![0xff; 4096]));
    digest_of(&f.run());
    assert!(in_cache(&f, &deb.sha256));
    assert_cache_clean(&f.cache());
}

#[test]
fn an_unusable_timeout_setting_is_a_usage_error() {
    let f = Fixture::new();
    let run = f
        .cmd(&f.out())
        .env("COMPOSE_HTTP_TIMEOUT", "soon")
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("COMPOSE_HTTP_TIMEOUT=`soon`"), "{stderr}");
}

// ------------------------------------------------------------------ local

#[test]
fn a_cache_path_that_is_a_file_is_one_error_naming_it() {
    let f = Fixture::new();
    std::fs::write(f.cache(), b"not a directory").unwrap();
    let run = f.run();
    let stderr = String::from_utf8_lossy(&run.stderr).to_string();
    eprintln!("compose said: {}", stderr.trim_end());
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "error: the cache directory {} is not usable: cannot create {}/sha256: ",
            f.cache().display(),
            f.cache().display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("--cache"), "{stderr}");
    assert!(!f.out().exists());
}

/// Run `cmd` as nobody (65534) when root, since root ignores directory modes.
fn as_nobody(cmd: &Command) -> Option<Command> {
    if !rustix::process::geteuid().is_root() {
        let mut c = Command::new(cmd.get_program());
        c.args(cmd.get_args());
        return Some(c);
    }
    let ok = Command::new("setpriv")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        return None;
    }
    let mut c = Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(cmd.get_program())
        .args(cmd.get_args());
    Some(c)
}

#[test]
fn a_cache_directory_that_is_not_writable_is_one_error_naming_it() {
    use std::os::unix::fs::PermissionsExt;
    let f = Fixture::new();
    // Everything but the cache is usable by nobody: a copy of the binary, the
    // manifest, the keyring and the output's parent.
    let bin = f.dir.join("compose");
    std::fs::copy(env!("CARGO_BIN_EXE_compose"), &bin).unwrap();
    for p in [&f.dir, &bin] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let outs = f.dir.join("outs");
    std::fs::create_dir(&outs).unwrap();
    std::fs::set_permissions(&outs, std::fs::Permissions::from_mode(0o777)).unwrap();
    for p in [f.manifest.clone(), f.dir.join("archive.gpg")] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let check = |cache: &Path, culprit: &Path| {
        let mut c = Command::new(&bin);
        c.arg(&f.manifest)
            .arg("--output")
            .arg(outs.join("out"))
            .arg("--cache")
            .arg(cache)
            .arg("--quiet")
            .arg("--lock")
            .arg(outs.join("lock"));
        let Some(mut c) = as_nobody(&c) else {
            eprintln!("SKIPPED: running as root without setpriv: cannot drop privileges");
            return;
        };
        let run = c.env_remove("COMPOSE_CACHE").output().unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr).to_string();
        eprintln!("compose said: {}", stderr.trim_end());
        assert_eq!(run.status.code(), Some(1), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with(&format!(
                "error: the cache directory {} is not usable: cannot create {}: Permission denied",
                cache.display(),
                culprit.display()
            )),
            "{stderr}"
        );
        assert!(!outs.join("out").exists());
    };
    // An empty read-only directory: its subdirectories cannot be made.
    let empty = f.dir.join("ro-empty");
    std::fs::create_dir(&empty).unwrap();
    std::fs::set_permissions(&empty, std::fs::Permissions::from_mode(0o555)).unwrap();
    check(&empty, &empty.join("sha256"));
    // A read-only cache that exists: the lock cannot be created.
    let full = f.dir.join("ro-full");
    for sub in ["sha256", "tmp"] {
        std::fs::create_dir_all(full.join(sub)).unwrap();
        std::fs::set_permissions(full.join(sub), std::fs::Permissions::from_mode(0o555)).unwrap();
    }
    std::fs::set_permissions(&full, std::fs::Permissions::from_mode(0o555)).unwrap();
    check(&full, &full.join("lock"));
}

#[test]
fn two_runs_sharing_one_cache_at_once_both_succeed_with_one_digest() {
    let f = Fixture::new();
    // Slow downloads so that both runs fetch the same files at the same time.
    for name in ["libc6", "libbig1"] {
        f.server.set(
            &f.deb(name).filename,
            Fault::Throttle {
                chunk: 16 * 1024,
                pause: Duration::from_millis(60),
            },
        );
    }
    let (a, b) = (f.dir.join("out-a"), f.dir.join("out-b"));
    let piped = |out: &Path| {
        f.cmd(out)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (ca, cb) = (piped(&a), piped(&b));
    let (ra, rb) = (
        ca.wait_with_output().unwrap(),
        cb.wait_with_output().unwrap(),
    );
    let (da, db) = (digest_of(&ra), digest_of(&rb));
    assert_eq!(da, db);
    // Both downloaded the big package concurrently; one verified copy is cached.
    assert_eq!(f.server.hits(&f.deb("libbig1").filename), 2);
    assert_cache_clean(&f.cache());
    assert!(in_cache(&f, &f.deb("libbig1").sha256));
    // A third run uses the cache alone.
    let c = f.cmd(&f.dir.join("out-c")).output().unwrap();
    assert_eq!(digest_of(&c), da);
    assert_eq!(f.server.hits(&f.deb("libbig1").filename), 2);
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigint_mid_download_leaves_no_output_and_a_usable_cache() {
    let f = Fixture::new();
    let deb = f.deb("libbig1");
    f.server
        .set(&deb.filename, Fault::Stall { after: Some(4096) });
    let mut child = f
        .cmd(&f.out())
        .env("COMPOSE_HTTP_TIMEOUT", "60")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Mid-download: the layout's temporary directory and the partial file exist.
    let tmp_beside = |f: &Fixture| {
        std::fs::read_dir(&f.dir).unwrap().any(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".out.tmp")
        })
    };
    wait_for("the stalled download", || {
        f.server.hits(&deb.filename) == 1
            && tmp_beside(&f)
            && std::fs::read_dir(f.cache().join("tmp"))
                .map(|mut d| d.next().is_some())
                .unwrap_or(false)
    });
    std::thread::sleep(Duration::from_millis(100));
    // SAFETY: signalling our own child by its pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let started = Instant::now();
    let status = child.wait().unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(status.code(), Some(130));
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(
        stderr.trim(),
        "error: interrupted (SIGINT); partial output and partial downloads were removed"
    );
    f.assert_nothing_left(&f.out());

    // The cache is usable: the next build succeeds.
    f.server.clear(&deb.filename);
    digest_of(&f.run());
    assert!(in_cache(&f, &deb.sha256));
}

/// Unmounts on drop.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn disk_full_while_writing_the_layer_is_one_sentence_naming_the_path() {
    let f = Fixture::new();
    let small = f.dir.join("small");
    std::fs::create_dir(&small).unwrap();
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIPPED disk-full test: mounting a 64 KiB tmpfs needs root");
        return;
    }
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&small)
        .output();
    match mounted {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            eprintln!(
                "SKIPPED disk-full test: mount -t tmpfs is not permitted here: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            );
            return;
        }
        Err(e) => {
            eprintln!("SKIPPED disk-full test: cannot run mount: {e}");
            return;
        }
    }
    let _mount = Mount(small.clone());
    // The cache is elsewhere; the layer (> 256 KiB, incompressible) goes to the tmpfs.
    let out = small.join("out");
    let run = f.cmd(&out).output().unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr).to_string();
    eprintln!("compose said: {}", stderr.trim_end());
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let prefix = format!(
        "error: cannot write the layer at {}/.out.tmp-",
        small.display()
    );
    assert!(stderr.starts_with(&prefix), "{stderr}");
    assert!(
        stderr
            .trim_end()
            .ends_with("No space left on device (os error 28)"),
        "{stderr}"
    );
    f.assert_nothing_left(&out);
    assert_eq!(
        std::fs::read_dir(&small).unwrap().count(),
        0,
        "the tmpfs is empty again"
    );
}

#[test]
fn the_redirect_policy_never_leaves_tls() {
    use compose::fetch::redirect_verdict;
    let u = |s: &str| reqwest::Url::parse(s).unwrap();
    let https = u("https://archive.example/ubuntu/pool/a.deb");
    assert!(redirect_verdict(
        std::slice::from_ref(&https),
        &u("https://mirror.example/a.deb")
    )
    .is_ok());
    let e = redirect_verdict(
        std::slice::from_ref(&https),
        &u("http://mirror.example/a.deb"),
    )
    .unwrap_err();
    assert_eq!(
        e,
        "redirect from https to http://mirror.example/a.deb refused: a download never leaves TLS"
    );
    // Also when https was an intermediate hop of a plain-http source.
    let chain = [u("http://a.example/x"), u("https://b.example/x")];
    assert!(redirect_verdict(&chain, &u("http://c.example/x")).is_err());
    // Plain http to https (an upgrade) is fine.
    assert!(redirect_verdict(&[u("http://a.example/x")], &u("https://a.example/x")).is_ok());
    let e = redirect_verdict(&[u("http://a.example/x")], &u("file:///etc/passwd")).unwrap_err();
    assert!(e.contains("only http and https"), "{e}");
}
