//! A family of images: base manifests (`[image] include`) and several manifests built
//! in one run, over the hermetic fixture repository, through the real binary.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::{DebSpec, IndexVariants, Member, Repo, Server, SuiteSpec, TestKey};

fn lib(name: &str, soname: &str) -> DebSpec {
    DebSpec::new(name, "1.0-1", "amd64", Member::Zstd)
        .file(
            &format!("/usr/lib/x86_64-linux-gnu/{soname}"),
            format!("{name} 1.0").into_bytes(),
            0o644,
        )
        .copyright()
}

struct Fx {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    _repo: Repo,
    server: Server,
}

impl Fx {
    fn new() -> Fx {
        let key = TestKey::generate("compose family test <family@example.invalid>");
        let suites = ["noble", "noble-updates"].map(|name| {
            let mut s = SuiteSpec::new(name, &["main"], &["amd64"]);
            if name == "noble" {
                s = s
                    .package("main", lib("libfoo1", "libfoo.so.1"))
                    .package("main", lib("libbar1", "libbar.so.1"))
                    .package(
                        "main",
                        DebSpec::new("tzdata", "2024a-1", "all", Member::Xz)
                            .file("/usr/share/zoneinfo/UTC", b"TZif".to_vec(), 0o644)
                            .copyright(),
                    );
            } else {
                s = s.package("main", lib("libbaz1", "libbaz.so.1"));
            }
            s
        });
        let repo = Repo::build(&key, &suites, IndexVariants::ALL);
        let server = repo.serve();
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        std::fs::create_dir_all(dir.join("base")).unwrap();
        support::write_keyring(dir.join("base"), "archive.gpg", &key);
        let fx = Fx {
            _tmp: tmp,
            dir,
            _repo: repo,
            server,
        };
        fx.write("base/base.toml", &fx.base(""));
        fx
    }

    fn base(&self, extra: &str) -> String {
        format!(
            "# The family's base.\n[image]\narchitectures = [\"amd64\"]\nuser = \"nonroot\"\nenv = {{ TZ = \"UTC\" }}\n{extra}\n{}\n[package.tzdata]\npaths = [\"/usr/share/zoneinfo/**\"]\n\n[generate]\npasswd = true\n\n[[user]]\nname = \"nonroot\"\nuid = 65532\ngid = 65532\n\n[[dir]]\npath = \"/tmp\"\nmode = \"1777\"\n",
            support::source_toml(&self.server.url, &["noble", "noble-updates"], &["main"], "archive.gpg")
        )
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn compose(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_compose"))
            .current_dir(&self.dir)
            .args(args)
            .output()
            .unwrap()
    }

    /// Build `manifest` into `out` with the cache `cache`; stdout's last line.
    fn build(&self, manifest: &str, out: &str, extra: &[&str]) -> Output {
        let mut args = vec![
            manifest.to_string(),
            "--output".into(),
            self.dir.join(out).display().to_string(),
            "--cache".into(),
            self.dir.join("cache").display().to_string(),
            "--quiet".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.compose(&refs)
    }
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

const APP_A: &str = "[image]\ninclude = [\"base/base.toml\"]\nname = \"app-a\"\n\n[package.libfoo1]\npaths = [\"/usr/lib/*-linux-gnu/libfoo.so.1\"]\n";
const APP_B: &str = "[image]\ninclude = [\"base/base.toml\"]\nname = \"app-b\"\nenv = { TZ = \"Europe/Paris\" }\n\n[package.libbar1]\npaths = [\"/usr/lib/*-linux-gnu/libbar.so.1\"]\n";

fn sha256_hex(path: &Path) -> String {
    support::sha256(&std::fs::read(path).unwrap())
}

#[test]
fn two_images_share_a_base_and_locked_notices_a_changed_base() {
    let fx = Fx::new();
    fx.write("a.toml", APP_A);
    fx.write("b.toml", APP_B);
    let a = ok(&fx.build("a.toml", "out-a", &[]));
    ok(&fx.build("b.toml", "out-b", &[]));

    // The merged manifest describes the same image as the one file it stands for.
    let flat = fx
        .base("")
        .replacen("[image]\n", "[image]\nname = \"app-a\"\n", 1)
        + "\n[package.libfoo1]\npaths = [\"/usr/lib/*-linux-gnu/libfoo.so.1\"]\n";
    let flat = flat.replace("\"archive.gpg\"", "\"base/archive.gpg\"");
    fx.write("flat.toml", &flat);
    assert_eq!(ok(&fx.build("flat.toml", "out-flat", &[])), a);

    // The lock records the base's hash, after the manifest's.
    let lock = std::fs::read_to_string(fx.dir.join("a.toml.lock")).unwrap();
    let base_sha = sha256_hex(&fx.dir.join("base/base.toml"));
    let line = lock
        .lines()
        .position(|l| l.starts_with(&format!("include base/base.toml sha256:{base_sha} ~")))
        .unwrap_or_else(|| panic!("no include line:\n{lock}"));
    assert!(lock.lines().nth(line - 1).unwrap().starts_with("manifest "));
    assert!(!std::fs::read_to_string(fx.dir.join("flat.toml.lock"))
        .unwrap()
        .contains("\ninclude "));
    assert_eq!(ok(&fx.build("a.toml", "out-a", &["--locked"])), a);

    // Only the base changes: --locked names it and the lock's line.
    fx.write(
        "base/base.toml",
        &fx.base("labels = { \"family\" = \"x\" }"),
    );
    let e = failed(&fx.build("a.toml", "out-a2", &["--locked"]), 1);
    assert!(
        e.contains(&format!(
            "--locked: the included base/base.toml changed since the lock was written (a.toml.lock:{}: sha256:{}…",
            line + 1,
            &base_sha[..12]
        )),
        "{e}"
    );
    assert!(e.contains("run `compose lock a.toml`"), "{e}");
    assert!(!fx.dir.join("out-a2").exists());
    // Without --locked the build takes the change and the lock follows it.
    let changed = ok(&fx.build("a.toml", "out-a2", &[]));
    assert_ne!(changed, a, "the base's label is in the image");
    let lock = std::fs::read_to_string(fx.dir.join("a.toml.lock")).unwrap();
    let new_sha = sha256_hex(&fx.dir.join("base/base.toml"));
    assert!(
        lock.contains(&format!("include base/base.toml sha256:{new_sha} ~")),
        "{lock}"
    );
}

#[test]
fn conflicts_and_cycles_are_errors_at_file_line_column() {
    let fx = Fx::new();
    fx.write(
        "c.toml",
        "[image]\ninclude = [\"base/base.toml\"]\nname = \"c\"\n\n[[user]]\nname = \"nonroot\"\nuid = 1000\ngid = 1000\n",
    );
    let e = failed(&fx.build("c.toml", "out-c", &[]), 2);
    assert!(
        e.contains("c.toml:5:1: [[user]] `nonroot` is declared here and differently in "),
        "{e}"
    );
    assert!(e.contains("base/base.toml:19:1: an included"), "{e}");
    fx.write("x.toml", "[image]\nname = \"x\"\ninclude = [\"y.toml\"]\n");
    fx.write(
        "y.toml",
        "[image]\ninclude = [\"base/base.toml\", \"x.toml\"]\n",
    );
    let e = failed(&fx.build("x.toml", "out-x", &[]), 2);
    assert!(
        e.contains("y.toml:2:30: include cycle: x.toml includes "),
        "{e}"
    );
    fx.write(
        "m.toml",
        "[image]\nname = \"m\"\ninclude = [\"base/nope.toml\"]\n",
    );
    let e = failed(&fx.build("m.toml", "out-m", &[]), 2);
    assert!(
        e.contains("m.toml:3:12: cannot read the included manifest `base/nope.toml`"),
        "{e}"
    );
    assert!(fx.server.requests().is_empty(), "nothing fetched");
}

const APP_C: &str = "[image]\ninclude = [\"base/base.toml\"]\nname = \"app-c\"\n\n[package.libbaz1]\npaths = [\"/usr/lib/*-linux-gnu/libbaz.so.1\"]\n";

/// The requests for InRelease files and for Packages indexes (any form, by hash or not).
fn index_requests(server: &Server) -> (Vec<String>, Vec<String>) {
    let all = server.requests();
    let releases = all
        .iter()
        .filter(|p| p.ends_with("/InRelease"))
        .cloned()
        .collect();
    let indexes = all
        .iter()
        .filter(|p| p.contains("/binary-"))
        .cloned()
        .collect();
    (releases, indexes)
}

#[test]
fn one_run_builds_three_images_reading_each_index_once() {
    let fx = Fx::new();
    fx.write("a.toml", APP_A);
    fx.write("b.toml", APP_B);
    fx.write("c.toml", APP_C);
    // One after the other, each in its own run and cache: every run reads every index.
    let mut separate = Vec::new();
    for m in ["a", "b", "c"] {
        let cache = fx.dir.join(format!("cache-{m}"));
        let out = fx.compose(&[
            &format!("{m}.toml"),
            "--output",
            &format!("sep/{m}"),
            "--cache",
            cache.to_str().unwrap(),
            "-q",
        ]);
        separate.push(ok(&out));
    }
    let (releases, indexes) = index_requests(&fx.server);
    assert_eq!(
        (releases.len(), indexes.len()),
        (6, 6),
        "{releases:?} {indexes:?}"
    );
    for m in ["a", "b", "c"] {
        std::fs::remove_file(fx.dir.join(format!("{m}.toml.lock"))).unwrap();
    }

    // One run: each InRelease and each index once, three images, the same ones.
    fx.server.clear_requests();
    let out = fx.compose(&[
        "a.toml",
        "b.toml",
        "c.toml",
        "--output",
        "one/{name}",
        "--cache",
        "cache-one",
        "-q",
    ]);
    let stdout = ok(&out);
    let (releases, indexes) = index_requests(&fx.server);
    assert_eq!(releases.len(), 2, "{releases:?}");
    assert_eq!(indexes.len(), 2, "{indexes:?}");
    let lines: Vec<String> = String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(stdout, lines[2]);
    for ((line, m), digest) in lines.iter().zip(["a", "b", "c"]).zip(&separate) {
        assert!(
            line.starts_with(&format!("{m}.toml: {digest} one/app-{m} (amd64, ")),
            "{line}"
        );
    }
    // The locks are those of separate runs.
    let lock = std::fs::read_to_string(fx.dir.join("c.toml.lock")).unwrap();
    assert!(
        lock.contains("amd64 package libbaz1 1.0-1 amd64 noble-updates "),
        "{lock}"
    );

    // A failure does not hide the others: exit 1, a line for each.
    fx.write("b.toml", &APP_B.replace("libbar1", "libnope1"));
    let out = fx.compose(&["a.toml", "b.toml", "c.toml", "--cache", "cache-one", "-q"]);
    let stderr = failed(&out, 1);
    assert!(stderr.contains("error: b.toml: "), "{stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(
        lines[0].starts_with(&format!("a.toml: {} out/app-a ", separate[0])),
        "{stdout}"
    );
    assert!(lines[1].starts_with("b.toml: failed: "), "{stdout}");
    assert!(lines[1].contains("libnope1"), "{stdout}");
    assert!(
        lines[2].starts_with(&format!("c.toml: {} out/app-c ", separate[2])),
        "{stdout}"
    );
    assert!(fx.dir.join("out/app-c/index.json").exists());

    // A quoted glob names the same manifests; an option naming one output is refused.
    let out = fx.compose(&["*.toml", "--output", "x", "--cache", "cache-one", "-q"]);
    let stderr = failed(&out, 2);
    assert!(
        stderr.contains("--output with several manifests: put {name} in it"),
        "{stderr}"
    );
    fx.write("b.toml", APP_B);
    let out = fx.compose(&["[abc].toml", "--cache", "cache-one", "-q"]);
    assert_eq!(
        String::from_utf8(out.stdout.clone())
            .unwrap()
            .lines()
            .count(),
        3
    );
    ok(&out);
}

/// The bytes the server sent for the requests logged (each answered 200 with the file).
fn bytes_served(server: &Server, root: &Path) -> u64 {
    server
        .log()
        .iter()
        .filter(|s| s.status == 200)
        .filter_map(|s| std::fs::metadata(root.join(s.path.trim_start_matches('/'))).ok())
        .map(|m| m.len())
        .sum()
}

/// Three images of the shipped noble family (noble-tiny-grpc, noble-static and a glibc
/// image on the same noble-base.toml), from the real noble `.deb`s: one after the other
/// (each its own cache, as separate CI jobs), one after the other sharing a cache, and
/// in one run. Prints the wall time, requests and bytes of each (the README's table);
/// checks that the one run reads each InRelease and each index once and builds the same
/// images. Skipped without ../shared/data.
#[test]
fn the_noble_family_in_one_run_versus_one_after_the_other() {
    use support::noble;
    let Some(shared) = noble::shared_ubuntu() else {
        println!("SKIPPED: ../shared/data/ubuntu/debs not present");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let key = TestKey::generate("compose noble family <family@example.invalid>");
    let mirror = noble::build(&shared, &dir.join("mirror"), &key);
    let server = Server::serve_dir(&mirror.root);
    let keyring = support::write_keyring(dir, "noble-test.gpg", &key);
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests");
    std::fs::write(
        dir.join("noble-glibc.toml"),
        format!(
            "[image]\ninclude = [{:?}]\nname = \"noble-glibc\"\nuser = \"nonroot\"\n\n[package.libc6]\npaths = [\"/usr/lib/*-linux-gnu/ld-linux-*.so.*\", \"/usr/lib*/ld-linux-*.so.*\", \"/usr/lib/*-linux-gnu/libc.so.6\"]\n\n[[user]]\nname = \"nonroot\"\nuid = 65532\ngid = 65532\n",
            shipped.join("noble-base.toml")
        ),
    )
    .unwrap();
    let manifests = [
        shipped.join("noble-tiny-grpc.toml"),
        shipped.join("noble-static.toml"),
        dir.join("noble-glibc.toml"),
    ];
    let run = |manifests: &[&Path], cache: &str, output: &str| {
        let start = std::time::Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_compose"))
            .args(manifests)
            .args(["--arch", "amd64", "--exclude-package", "tzdata", "-q"])
            .arg("--mirror")
            .arg(format!("http://archive.ubuntu.com={}", server.url))
            .arg("--keyring")
            .arg(format!(
                "http://archive.ubuntu.com/ubuntu={}",
                keyring.display()
            ))
            .arg("--cache")
            .arg(dir.join(cache))
            .arg("--output")
            .arg(dir.join(output))
            .current_dir(dir)
            .output()
            .unwrap();
        let elapsed = start.elapsed().as_secs_f64();
        (ok(&out), String::from_utf8(out.stdout).unwrap(), elapsed)
    };
    let remove_locks = || {
        for m in &manifests {
            let _ = std::fs::remove_file(format!("{}.lock", m.display()));
        }
    };
    remove_locks();
    let mut report = Vec::new();
    let mut digests = Vec::new();
    for (mode, shared_cache) in [
        ("one after the other, own caches", false),
        ("one after the other, one cache", true),
    ] {
        server.clear_requests();
        let mut seconds = 0.0;
        let mut these = Vec::new();
        for (i, m) in manifests.iter().enumerate() {
            let cache = if shared_cache {
                "cache-shared".to_string()
            } else {
                format!("cache-{i}")
            };
            let (digest, _, s) = run(&[m], &cache, &format!("sep-{i}"));
            these.push(digest);
            seconds += s;
        }
        remove_locks();
        let (releases, indexes) = index_requests(&server);
        report.push(format!(
            "{mode}: {seconds:.1} s, {} requests ({} InRelease, {} Packages), {} bytes",
            server.log().len(),
            releases.len(),
            indexes.len(),
            bytes_served(&server, &mirror.root)
        ));
        digests.push(these);
    }
    server.clear_requests();
    let refs: Vec<&Path> = manifests.iter().map(PathBuf::as_path).collect();
    let (_, stdout, seconds) = run(&refs, "cache-one", "one-{name}");
    remove_locks();
    let (releases, indexes) = index_requests(&server);
    report.push(format!(
        "one run: {seconds:.1} s, {} requests ({} InRelease, {} Packages), {} bytes",
        server.log().len(),
        releases.len(),
        indexes.len(),
        bytes_served(&server, &mirror.root)
    ));
    println!("{}", report.join("\n"));
    // Each suite's InRelease and each index once; the same images.
    assert_eq!(releases.len(), noble::SUITES.len(), "{releases:?}");
    let unique: BTreeSet<&String> = indexes.iter().collect();
    assert_eq!(
        unique.len(),
        indexes.len(),
        "an index asked for twice: {indexes:?}"
    );
    assert_eq!(digests[0], digests[1]);
    let one: Vec<String> = stdout
        .lines()
        .map(|l| l.split(' ').nth(1).unwrap().to_string())
        .collect();
    assert_eq!(one, digests[0], "{stdout}");
}
