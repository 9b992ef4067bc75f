//! Selection overlapped with downloads, through the `compose` binary against a signed
//! fixture repository on a loopback server that holds one `.deb` back on purpose
//! (`tests/support/faulty.rs`, `Fault::Hold`): a package is selected while a later
//! package's `.deb` is still on its way, and the build is the one it is without the
//! wait; a download failing meanwhile is reported as it is without the overlap and
//! leaves nothing behind. What the tests watch is what a user sees with
//! `COMPOSE_TIMINGS=1`: a `selected <package>` line before `fetched <last package>`.
//! No timing is asserted: the held `.deb` is released only once the selection of an
//! earlier package has been seen, so without the overlap the run could not go on.

mod support;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use support::{
    assert_cache_clean, digest_of, libc6_arm64, tzdata_utc, DebSpec, Fault, Faulty, IndexVariants,
    Member, Repo, SuiteSpec,
};

const ARCH: &str = "arm64";

/// libc6 and tzdata first, zlib1g last: the packages are taken in name order.
const BODY: &str = r#"
[package.libc6]
paths = ["/usr/lib/*-linux-gnu/libc.so.6"]
[package.tzdata]
paths = ["/usr/share/zoneinfo/UTC"]
[package.zlib1g]
paths = ["/usr/lib/*-linux-gnu/libz.so.1"]
"#;

struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    repo: Repo,
    server: Faulty,
}

impl Fixture {
    /// The repository of [`BODY`]'s three packages, and `compose.toml` selecting from
    /// them with `body` (default [`BODY`]).
    fn new(body: &str) -> Fixture {
        let key = support::TestKey::generate("overlap <overlap@example.invalid>");
        let suite = SuiteSpec::new("noble", &["main"], &[ARCH])
            .package("main", libc6_arm64(vec![0x5a; 64 * 1024]))
            .package("main", tzdata_utc())
            .package(
                "main",
                DebSpec::new("zlib1g", "1.3-1", ARCH, Member::Xz)
                    .file(
                        "/usr/lib/aarch64-linux-gnu/libz.so.1",
                        vec![0x7a; 4096],
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
            "[image]\nname = \"overlap\"\narchitectures = [\"{ARCH}\"]\n\n{}\n{body}",
            support::source_toml(&server.url, &["noble"], &["main"], "archive.gpg")
        );
        support::write_manifest(&dir, &text);
        std::fs::create_dir(dir.join("tmp")).unwrap();
        Fixture {
            _tmp: tmp,
            dir,
            repo,
            server,
        }
    }

    /// The last package's `.deb`, as the server names it.
    fn last_deb(&self) -> String {
        self.repo.package("zlib1g", ARCH).filename
    }

    /// `compose compose.toml --output out-NAME --cache cache-NAME` with timings on and
    /// `TMPDIR` (the spool) in the fixture: each run starts from an empty cache.
    fn cmd(&self, name: &str) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_compose"));
        c.arg(self.dir.join("compose.toml"))
            .arg("--output")
            .arg(self.dir.join(format!("out-{name}")))
            .arg("--cache")
            .arg(self.cache(name))
            .arg("--quiet")
            .env("COMPOSE_TIMINGS", "1")
            .env("COMPOSE_HTTP_TIMEOUT", "60")
            .env("TMPDIR", self.dir.join("tmp"))
            .env_remove("COMPOSE_CACHE")
            .env_remove("SOURCE_DATE_EPOCH");
        c
    }

    fn cache(&self, name: &str) -> PathBuf {
        self.dir.join(format!("cache-{name}"))
    }

    /// The error of a run (`plain`) where the last `.deb` is missing from the start, and
    /// of one (`held`) where the server holds it back until stderr shows `line`, then
    /// answers 404: the same failure before and during selection.
    fn missing_and_missing_once(&self, line: &str) -> (String, String) {
        self.server.set(&self.last_deb(), Fault::Status(404));
        let plain = the_error(&self.cmd("plain").output().unwrap());
        assert!(plain.contains("not found (HTTP 404)"), "{plain}");
        let release = Arc::new(AtomicBool::new(false));
        self.server
            .set(&self.last_deb(), Fault::Hold(release.clone()));
        let mut run = Watched::spawn(self.cmd("held"));
        run.wait_for_line(line);
        self.server.set(&self.last_deb(), Fault::Status(404));
        release.store(true, Ordering::SeqCst);
        (plain, the_error(&run.finish()))
    }

    /// Nothing left behind by the run `name`: no partial download, no temporary beside
    /// its output, an empty `TMPDIR`.
    fn assert_nothing_left(&self, name: &str) {
        assert_cache_clean(&self.cache(name));
        let hidden: Vec<String> = std::fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(hidden.is_empty(), "temporaries left: {hidden:?}");
        let spool: Vec<_> = std::fs::read_dir(self.dir.join("tmp")).unwrap().collect();
        assert!(spool.is_empty(), "TMPDIR not empty: {spool:?}");
    }
}

/// A `compose` run whose stderr is read line by line as it is written.
struct Watched {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Watched {
    fn spawn(mut cmd: Command) -> Watched {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                if tx.send(line.unwrap()).is_err() {
                    return;
                }
            }
        });
        Watched {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Read stderr until a line ends with `what` (the run is killed if none does
    /// within a minute, or if stderr ends first).
    fn wait_for_line(&mut self, what: &str) {
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = line.ends_with(what);
                    self.seen.push(line);
                    if found {
                        return;
                    }
                }
                Err(why) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    panic!(
                        "no line {what:?} ({why:?}); stderr so far:\n{}",
                        self.seen.join("\n")
                    );
                }
            }
        }
    }

    /// The run's end: its output, stderr whole.
    fn finish(mut self) -> Output {
        let mut out = self.child.wait_with_output().unwrap();
        self.seen.extend(self.lines.iter());
        out.stderr = self.seen.join("\n").into_bytes();
        out
    }
}

/// The position of the first line of `stderr` ending with `what`.
fn line_of(stderr: &str, what: &str) -> usize {
    stderr
        .lines()
        .position(|l| l.ends_with(what))
        .unwrap_or_else(|| panic!("no line {what:?} in:\n{stderr}"))
}

/// The one `error:` line of a failed run (exit 1).
fn the_error(run: &Output) -> String {
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(run.stdout.is_empty(), "no digest on failure");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.starts_with("timing "))
        .collect();
    assert_eq!(errors.len(), 1, "one error line, got: {stderr}");
    assert!(errors[0].starts_with("error: "), "{stderr}");
    errors[0].to_string()
}

#[test]
fn a_package_is_selected_while_a_later_deb_still_downloads() {
    let f = Fixture::new(BODY);
    let plain = f.cmd("plain").output().unwrap();
    let digest = digest_of(&plain);

    let release = Arc::new(AtomicBool::new(false));
    f.server.set(&f.last_deb(), Fault::Hold(release.clone()));
    let before = f.server.hits(&f.last_deb());
    let mut run = Watched::spawn(f.cmd("held"));
    // libc6's selection ends while zlib1g's .deb is held by the server.
    run.wait_for_line(&format!("{ARCH}: selected libc6"));
    assert_eq!(
        f.server.hits(&f.last_deb()),
        before + 1,
        "zlib1g is being fetched"
    );
    assert!(!release.load(Ordering::SeqCst));
    release.store(true, Ordering::SeqCst);
    let held = run.finish();
    let stderr = String::from_utf8_lossy(&held.stderr).to_string();
    assert_eq!(
        digest_of(&held),
        digest,
        "the same image as without the wait"
    );
    let selected = line_of(&stderr, &format!("{ARCH}: selected libc6"));
    let fetched = line_of(&stderr, &format!("{ARCH}: fetched zlib1g"));
    assert!(selected < fetched, "{stderr}");
    // The marks of the phases are still there, in their order.
    let all_fetched = line_of(&stderr, &format!("{ARCH}: packages fetched and verified"));
    let files_selected = stderr
        .lines()
        .position(|l| l.contains(&format!("{ARCH}: files selected (")))
        .unwrap_or_else(|| panic!("no files selected line in:\n{stderr}"));
    assert!(
        fetched < all_fetched && all_fetched < files_selected,
        "{stderr}"
    );
    assert!(
        line_of(&stderr, &format!("{ARCH}: selected zlib1g")) < files_selected,
        "{stderr}"
    );
    f.assert_nothing_left("held");
}

#[test]
fn a_download_failing_while_packages_are_selected_is_the_error_as_before() {
    let f = Fixture::new(BODY);
    let (plain, held) = f.missing_and_missing_once(&format!("{ARCH}: selected tzdata"));
    assert_eq!(held, plain);
    assert!(!f.dir.join("out-held").exists());
    f.assert_nothing_left("held");
}

#[test]
fn a_download_failure_outranks_a_selection_failure_before_it() {
    // libc6's selection fails (its required path is not in the package) while
    // zlib1g's .deb is on its way; the download then fails: that is the error, as when
    // every package was fetched before any was selected.
    let body = BODY.replace("libc.so.6\"]", "libc.so.7\"]");
    let f = Fixture::new(&body);
    let (plain, held) = f.missing_and_missing_once(&format!("{ARCH}: selected libc6"));
    assert_eq!(held, plain);
    f.assert_nothing_left("held");

    // With the .deb there, the selection's failure is the error.
    f.server.clear(&f.last_deb());
    let fetched = the_error(&f.cmd("fetched").output().unwrap());
    assert!(fetched.contains("libc.so.7"), "{fetched}");
}
