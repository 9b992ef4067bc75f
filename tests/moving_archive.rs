//! Archives that move, through the real `compose` binary against loopback servers: a
//! mirror that publishes new indexes between serving the InRelease and the indexes (read
//! by hash when the Release offers it, else one retry and an error naming the race), an
//! archive that dropped a pinned `.deb` (fetched again from a loopback snapshot service
//! at the lock's InRelease date), and downloads through a forward proxy
//! (`http_proxy`, `https_proxy`, `no_proxy`).

mod support;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Arc;

use support::{
    assert_cache_clean, digest_of, libc6_arm64, tzdata_utc, write_keyring, write_manifest,
    IndexVariants, Proxy, Repo, Server, SuiteSpec, TestKey, TlsFront,
};

const ARCH: &str = "arm64";
const SUITE: &str = "noble-updates";
/// Where arm64 packages of Ubuntu come from; the tests send it to loopback with `--mirror`.
const PORTS: &str = "http://ports.ubuntu.com/ubuntu-ports";
const SNAPSHOT: &str = "https://snapshot.ubuntu.com";

const PACKAGES: &str = r#"
[package.libc6]
paths = ["/usr/lib/*-linux-gnu/libc.so.6"]

[package.tzdata]
paths = ["/usr/share/zoneinfo/UTC"]
"#;

/// `noble-updates` with libc6 at `libc_version` and tzdata.
fn suite(libc_version: &str) -> SuiteSpec {
    let mut libc6 = libc6_arm64(format!("libc {libc_version}").into_bytes());
    libc6.version = libc_version.to_string();
    SuiteSpec::new(SUITE, &["main"], &[ARCH])
        .package("main", libc6)
        .package("main", tzdata_utc())
}

/// A temporary directory with the keyring and a manifest whose source is `url`.
struct Client {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    manifest: PathBuf,
}

impl Client {
    fn new(key: &TestKey, url: &str, source_keys: &str) -> Client {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        write_keyring(&dir, "archive.gpg", key);
        let manifest = write_manifest(
            &dir,
            &format!(
                "[image]\nname = \"moving\"\narchitectures = [\"{ARCH}\"]\n\n[[source]]\nurl = \"{url}\"\nsuites = [\"{SUITE}\"]\nkeyring = \"archive.gpg\"\n{source_keys}\n{PACKAGES}"
            ),
        );
        Client {
            _tmp: tmp,
            dir,
            manifest,
        }
    }

    fn lock(&self) -> PathBuf {
        PathBuf::from(format!("{}.lock", self.manifest.display()))
    }

    /// `compose [sub] MANIFEST --cache <cache> --quiet …` with no proxy in the
    /// environment; `args` come after the manifest.
    fn command(&self, sub: Option<&str>, cache: &str, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_compose"));
        c.args(sub)
            .arg(&self.manifest)
            .arg("--cache")
            .arg(self.dir.join(cache))
            .arg("--quiet")
            .args(args)
            .env("COMPOSE_HTTP_TIMEOUT", "5")
            .env_remove("COMPOSE_CACHE")
            .env_remove("SOURCE_DATE_EPOCH");
        for var in ["http_proxy", "https_proxy", "all_proxy", "no_proxy"] {
            c.env_remove(var).env_remove(var.to_ascii_uppercase());
        }
        c
    }

    /// A build writing `out` with the download cache `cache`.
    fn build(&self, out: &str, cache: &str, args: &[&str]) -> Output {
        let out = self.dir.join(out);
        let out = out.to_str().unwrap();
        let mut all = vec!["--output", out];
        all.extend(args);
        self.command(None, cache, &all).output().unwrap()
    }
}

fn stderr(run: &Output) -> String {
    String::from_utf8_lossy(&run.stderr).to_string()
}

/// The one `error:` line of a failed run (exit 1, nothing on stdout).
fn one_error(run: &Output) -> String {
    let text = stderr(run);
    assert_eq!(run.status.code(), Some(1), "exit code; stderr: {text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "one error line, got: {text}");
    assert!(lines[0].starts_with("error: "), "{text}");
    assert!(run.stdout.is_empty());
    eprintln!("compose said: {}", lines[0]);
    lines[0].to_string()
}

fn mirror(from: &str, to: &str) -> String {
    format!("{from}={to}")
}

// ------------------------------------------------------- a mirror publishing mid-run

/// Two signed versions of one suite (same key): `now` is served, `next` is what the
/// mirror publishes over it; with `by_hash`, both publish by-hash copies and say
/// `Acquire-By-Hash: yes`.
struct Publishing {
    key: TestKey,
    /// `now`'s `Packages.xz` before anything is published.
    quiet_index: Vec<u8>,
    now: Arc<Repo>,
    next: Arc<Repo>,
    server: Server,
}

impl Publishing {
    fn new(by_hash: bool) -> Publishing {
        let key = TestKey::generate("compose moving archive <moving@example.invalid>");
        let now = Repo::build(&key, &[suite("2.39-0ubuntu8")], IndexVariants::ALL);
        let next = Repo::build(&key, &[suite("2.39-0ubuntu8.3")], IndexVariants::ALL);
        if by_hash {
            now.add_by_hash(SUITE);
            next.add_by_hash(SUITE);
        }
        let server = now.serve();
        let quiet_index = now.read(&format!("dists/{SUITE}/main/binary-{ARCH}/Packages.xz"));
        Publishing {
            key,
            quiet_index,
            now: Arc::new(now),
            next: Arc::new(next),
            server,
        }
    }

    fn inrelease(&self) -> String {
        format!("/dists/{SUITE}/InRelease")
    }

    /// The mirror publishes `next` right after serving the InRelease (once).
    fn publish_after_inrelease(&self) {
        let (now, next) = (Arc::clone(&self.now), Arc::clone(&self.next));
        self.server
            .after(&self.inrelease(), move || now.publish_from(&next));
    }

    fn mirror_arg(&self) -> String {
        mirror(PORTS, &self.server.url)
    }
}

/// The lock of a build on a quiet mirror, and its image digest.
fn quiet_build(p: &Publishing, client: &Client) -> (String, String) {
    let run = client.build("quiet-out", "quiet-cache", &["--mirror", &p.mirror_arg()]);
    let digest = digest_of(&run);
    let lock = std::fs::read_to_string(client.lock()).unwrap();
    std::fs::remove_file(client.lock()).unwrap();
    (lock, digest)
}

#[test]
fn a_mirror_publishing_mid_run_is_read_by_hash_and_locks_as_a_quiet_one() {
    let p = Publishing::new(true);
    let client = Client::new(&p.key, PORTS, "");
    let (quiet_lock, quiet_digest) = quiet_build(&p, &client);
    assert!(
        quiet_lock.contains(&format!(" package libc6 2.39-0ubuntu8 {ARCH} ")),
        "{quiet_lock}"
    );
    p.server.clear_requests();

    p.publish_after_inrelease();
    let run = client.build("out", "cache", &["--mirror", &p.mirror_arg()]);
    assert_eq!(digest_of(&run), quiet_digest);
    // The mirror did publish: it now serves the next InRelease and Packages.
    let index = format!("dists/{SUITE}/main/binary-{ARCH}/Packages.xz");
    assert_eq!(p.now.read(&index), p.next.read(&index));
    assert_eq!(
        p.now.read(&format!("dists/{SUITE}/InRelease")),
        p.next.read(&format!("dists/{SUITE}/InRelease"))
    );
    // The index came by the hash the first InRelease lists; the plain path was never
    // asked for.
    let asked = p.server.requests();
    let by_hash = format!(
        "/dists/{SUITE}/main/binary-{ARCH}/by-hash/SHA256/{}",
        support::sha256(&p.quiet_index)
    );
    assert!(asked.contains(&by_hash), "{by_hash} not in {asked:?}");
    assert_eq!(p.server.hits(&index), 0, "{asked:?}");
    // The lock is byte for byte the quiet mirror's: plain index URLs, the same hashes.
    let lock = std::fs::read_to_string(client.lock()).unwrap();
    assert_eq!(lock, quiet_lock);
    assert!(lock.contains(&format!("{PORTS}/{index}")), "{lock}");
    assert!(!lock.contains("by-hash"), "{lock}");
    assert_cache_clean(&client.dir.join("cache"));
}

#[test]
fn by_hash_missing_falls_back_to_the_plain_path() {
    let p = Publishing::new(true);
    let client = Client::new(&p.key, PORTS, "");
    let (quiet_lock, quiet_digest) = quiet_build(&p, &client);
    // The Release says Acquire-By-Hash, but this mirror has no by-hash directories.
    let dir = p
        .now
        .path(&format!("dists/{SUITE}/main/binary-{ARCH}/by-hash"));
    std::fs::remove_dir_all(dir).unwrap();
    p.server.clear_requests();
    let run = client.build("out", "cache", &["--mirror", &p.mirror_arg()]);
    assert_eq!(digest_of(&run), quiet_digest);
    let index = format!("dists/{SUITE}/main/binary-{ARCH}/Packages.xz");
    let log = p.server.log();
    let by_hash = log.iter().position(|s| s.path.contains("/by-hash/SHA256/"));
    let plain = log.iter().position(|s| s.path == format!("/{index}"));
    assert!(
        matches!((by_hash, plain), (Some(h), Some(p)) if h < p && log[h].status == 404),
        "{log:?}"
    );
    assert_eq!(std::fs::read_to_string(client.lock()).unwrap(), quiet_lock);
}

#[test]
fn without_by_hash_a_mirror_publishing_mid_run_is_named_as_the_cause() {
    let p = Publishing::new(false);
    let client = Client::new(&p.key, PORTS, "");
    p.publish_after_inrelease();
    let run = client.build("out", "cache", &["--mirror", &p.mirror_arg()]);
    let err = one_error(&run);
    let index = format!("dists/{SUITE}/main/binary-{ARCH}/Packages.xz");
    let inrelease = format!("{PORTS}/dists/{SUITE}/InRelease");
    for needle in [
        format!(
            "error: index main/binary-{ARCH}/Packages.xz: {}/{index} is not the file {inrelease} lists",
            p.server.url
        ),
        format!("and {inrelease} changed while compose read the suite"),
        "the mirror published new indexes mid-run and offers no by-hash copy of the old ones; run compose again once the mirror's update is complete".to_string(),
    ] {
        assert!(err.contains(&needle), "{needle}\nin: {err}");
    }
    // One retry of the index, after reading the InRelease again.
    assert_eq!(p.server.hits(&index), 2);
    assert_eq!(p.server.hits(&p.inrelease()), 2);
    assert!(!client.lock().exists());
    assert!(!client.dir.join("out").exists());
    assert_cache_clean(&client.dir.join("cache"));

    // Once the mirror is quiet again, the same command succeeds.
    let run = client.build("out", "cache", &["--mirror", &p.mirror_arg()]);
    digest_of(&run);
    let lock = std::fs::read_to_string(client.lock()).unwrap();
    assert!(
        lock.contains(&format!(" package libc6 2.39-0ubuntu8.3 {ARCH} ")),
        "{lock}"
    );
}

#[test]
fn a_plain_index_caught_mid_update_is_retried_once() {
    let p = Publishing::new(false);
    let client = Client::new(&p.key, PORTS, "");
    let (quiet_lock, quiet_digest) = quiet_build(&p, &client);
    p.server.clear_requests();
    // Right after the InRelease the mirror serves the next Packages.xz, once: the file
    // is put back as soon as that answer is ready (an rsync caught half-way).
    let index = format!("dists/{SUITE}/main/binary-{ARCH}/Packages.xz");
    let (now, next) = (Arc::clone(&p.now), Arc::clone(&p.next));
    let original = now.read(&index);
    let rel = index.clone();
    p.server
        .after(&p.inrelease(), move || now.write(&rel, &next.read(&rel)));
    let now = Arc::clone(&p.now);
    let rel = index.clone();
    p.server.after(&index, move || now.write(&rel, &original));
    let run = client.build("out", "cache", &["--mirror", &p.mirror_arg()]);
    assert_eq!(digest_of(&run), quiet_digest);
    assert_eq!(p.server.hits(&index), 2, "{:?}", p.server.requests());
    assert_eq!(p.server.hits(&p.inrelease()), 2, "the InRelease read again");
    assert_eq!(std::fs::read_to_string(client.lock()).unwrap(), quiet_lock);
}

// ------------------------------------------- a pinned .deb the archive no longer has

/// `Sat, 11 Jul 2026 10:16:37 UTC` → `20260711T101637Z`, written out by hand.
fn snapshot_timestamp(date: &str) -> String {
    let parts: Vec<&str> = date.split_whitespace().collect();
    let [_, day, month, year, time, "UTC"] = parts[..] else {
        panic!("unexpected Date {date:?}");
    };
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = months.iter().position(|m| *m == month).unwrap() + 1;
    format!(
        "{year}{month:02}{:02}T{}Z",
        day.parse::<u32>().unwrap(),
        time.replace(':', "")
    )
}

/// An archive that built an image once, then dropped libc6's `.deb` from its pool, and
/// a snapshot service on another loopback server.
struct Dropped {
    archive: Repo,
    server: Server,
    client: Client,
    /// The snapshot service's root: `snap/ubuntu-ports/<ts>/pool/…` is served.
    snap_root: tempfile::TempDir,
    snap: Server,
    /// libc6's pool path and bytes.
    filename: String,
    deb: Vec<u8>,
    /// The timestamp of the InRelease `Date` the lock recorded.
    ts: String,
    digest: String,
}

impl Dropped {
    fn new(source_keys: &str) -> Dropped {
        let key = TestKey::generate("compose snapshot test <snapshot@example.invalid>");
        let archive = Repo::build(&key, &[suite("2.39-0ubuntu8")], IndexVariants::ALL);
        let server = archive.serve();
        let client = Client::new(&key, PORTS, source_keys);
        let run = client.build(
            "first",
            "first-cache",
            &["--mirror", &mirror(PORTS, &server.url)],
        );
        let digest = digest_of(&run);
        let release = String::from_utf8(archive.read(&format!("dists/{SUITE}/Release"))).unwrap();
        let date = release
            .lines()
            .find_map(|l| l.strip_prefix("Date: "))
            .unwrap();
        let ts = snapshot_timestamp(date);
        let lock = std::fs::read_to_string(client.lock()).unwrap();
        assert!(lock.contains(date), "the lock records the Date: {lock}");
        let filename = archive.package("libc6", ARCH).filename;
        let deb = archive.read(&filename);
        archive.remove(&filename);
        let snap_root = tempfile::tempdir().unwrap();
        let snap = Server::serve_dir(snap_root.path());
        Dropped {
            archive,
            server,
            client,
            snap_root,
            snap,
            filename,
            deb,
            ts,
            digest,
        }
    }

    /// Where the snapshot service keeps libc6 (relative to its root).
    fn snap_path(&self) -> String {
        format!("snap/ubuntu-ports/{}/{}", self.ts, self.filename)
    }

    /// The snapshot service holds `bytes` as libc6.
    fn keep(&self, bytes: &[u8]) {
        let path = self.snap_root.path().join(self.snap_path());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    fn mirrors(&self) -> Vec<String> {
        vec![
            "--mirror".into(),
            mirror(PORTS, &self.server.url),
            "--mirror".into(),
            mirror(SNAPSHOT, &format!("{}/snap", self.snap.url)),
        ]
    }

    fn run(&self, sub: Option<&str>, cache: &str, extra: &[&str]) -> Output {
        let mirrors = self.mirrors();
        let mut args: Vec<&str> = mirrors.iter().map(String::as_str).collect();
        args.extend(extra);
        self.client.command(sub, cache, &args).output().unwrap()
    }

    fn note(&self) -> String {
        format!(
            "note: libc6 2.39-0ubuntu8 ({ARCH}) is gone from {PORTS}/{}; fetched from the snapshot service: {SNAPSHOT}/ubuntu-ports/{}/{} (checked against the pinned size and SHA-256)",
            self.filename, self.ts, self.filename
        )
    }
}

#[test]
fn a_pinned_deb_the_archive_dropped_comes_from_the_snapshot_service() {
    let d = Dropped::new("");
    d.keep(&d.deb);
    d.server.clear_requests();
    let out = d.client.dir.join("locked-out");
    let run = d.run(
        None,
        "cache1",
        &["--locked", "--output", out.to_str().unwrap()],
    );
    assert_eq!(digest_of(&run), d.digest);
    assert!(stderr(&run).contains(&d.note()), "{}", stderr(&run));
    assert_eq!(d.server.hits(&d.filename), 1, "the archive was asked first");
    assert_eq!(
        d.snap.requests(),
        [format!("/{}", d.snap_path())],
        "one request, at the timestamp of the locked InRelease Date"
    );

    let run = d.run(Some("verify"), "cache2", &[]);
    let stdout = String::from_utf8_lossy(&run.stdout).to_string();
    assert!(run.status.success(), "{stdout}{}", stderr(&run));
    assert!(stderr(&run).contains(&d.note()), "{}", stderr(&run));
    assert!(
        stdout.contains(&format!(
            "ok   {ARCH}: 2 packages fetched by their recorded URL except libc6 (gone from the archive; from the snapshot service), size and SHA256 checked"
        )) && stdout.ends_with("verified\n"),
        "{stdout}"
    );
    assert_cache_clean(&d.client.dir.join("cache2"));
}

#[test]
fn a_snapshot_copy_with_another_hash_is_refused() {
    let d = Dropped::new("");
    let mut other = d.deb.clone();
    let last = other.len() - 1;
    other[last] ^= 1;
    d.keep(&other);
    let never = d.client.dir.join("never");
    let run = d.run(
        None,
        "cache",
        &["--locked", "--output", never.to_str().unwrap()],
    );
    let err = one_error(&run);
    assert!(
        err.starts_with(&format!(
            "error: package libc6 2.39-0ubuntu8 ({ARCH}): SHA256 mismatch for {}/{}: expected {}, got {}",
            d.snap.url,
            d.snap_path(),
            support::sha256(&d.deb),
            support::sha256(&other)
        )),
        "{err}"
    );
    assert_cache_clean(&d.client.dir.join("cache"));
}

#[test]
fn a_deb_gone_from_both_is_one_error_naming_both() {
    let d = Dropped::new("");
    let never = d.client.dir.join("never");
    let run = d.run(None, "cache", &["--output", never.to_str().unwrap()]);
    let err = one_error(&run);
    assert_eq!(
        err,
        format!(
            "error: {}/{}: not found (HTTP 404), nor its snapshot copy at {}/{}; the archive dropped this pinned file and the snapshot service has none at the lock's date: pin what the archive has now with `compose lock`",
            d.server.url,
            d.filename,
            d.snap.url,
            d.snap_path()
        )
    );
}

#[test]
fn offline_and_snapshot_fallback_false_never_ask_the_snapshot_service() {
    let d = Dropped::new("");
    d.keep(&d.deb);
    let never = d.client.dir.join("never");
    let run = d.run(
        None,
        "empty-cache",
        &["--offline", "--output", never.to_str().unwrap()],
    );
    let err = one_error(&run);
    assert!(err.contains("--offline: package libc6"), "{err}");
    assert!(d.snap.requests().is_empty());

    let off = Dropped::new("snapshot-fallback = false");
    off.keep(&off.deb);
    let never = off.client.dir.join("never");
    let run = off.run(None, "cache", &["--output", never.to_str().unwrap()]);
    let err = one_error(&run);
    assert_eq!(
        err,
        format!(
            "error: {}/{}: not found (HTTP 404); check the source URL, suite and --mirror",
            off.server.url, off.filename
        )
    );
    assert!(off.snap.requests().is_empty());
    // The archive itself still serves the rest.
    assert!(off
        .archive
        .path(&format!("dists/{SUITE}/InRelease"))
        .exists());
}

#[test]
fn a_source_snapshot_url_names_the_service_of_another_archive() {
    let d = Dropped::new("snapshot-url = \"https://snapshots.example.org/ports\"");
    let path = d
        .snap_root
        .path()
        .join(format!("own/{}/{}", d.ts, d.filename));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, &d.deb).unwrap();
    let own = mirror(
        "https://snapshots.example.org/ports",
        &format!("{}/own", d.snap.url),
    );
    let run = d.run(
        None,
        "cache",
        &[
            "--mirror",
            &own,
            "--output",
            d.client.dir.join("o").to_str().unwrap(),
        ],
    );
    assert_eq!(digest_of(&run), d.digest);
    assert!(
        stderr(&run).contains(&format!(
            "fetched from the snapshot service: https://snapshots.example.org/ports/{}/{}",
            d.ts, d.filename
        )),
        "{}",
        stderr(&run)
    );
}

// ------------------------------------------------------------------------- proxies

fn fixture_repo() -> (TestKey, Repo) {
    let key = TestKey::generate("compose proxy test <proxy@example.invalid>");
    let repo = Repo::build(&key, &[suite("2.39-0ubuntu8")], IndexVariants::ALL);
    (key, repo)
}

#[test]
fn downloads_go_through_http_proxy_and_https_proxy_unless_no_proxy() {
    let (key, repo) = fixture_repo();
    let server = repo.serve();
    let proxy = Proxy::start();

    // http_proxy: every request, as an absolute-form request line to the proxy.
    let client = Client::new(&key, &server.url, "");
    let mut c = client.command(None, "cache-http", &["--output"]);
    c.arg(client.dir.join("out-http"))
        .env("http_proxy", &proxy.url);
    let digest = digest_of(&c.output().unwrap());
    let seen = proxy.requests();
    let libc6 = repo.package("libc6", ARCH).filename;
    for want in [
        format!("GET {}/dists/{SUITE}/InRelease HTTP/1.1", server.url),
        format!("GET {}/{libc6} HTTP/1.1", server.url),
    ] {
        assert!(seen.contains(&want), "{want} not in {seen:?}");
    }
    assert_eq!(server.hits(&libc6), 1);

    // no_proxy: the same build goes straight to the server.
    let before = proxy.requests().len();
    std::fs::remove_file(client.lock()).unwrap();
    let mut c = client.command(None, "cache-direct", &["--output"]);
    c.arg(client.dir.join("out-direct"))
        .env("http_proxy", &proxy.url)
        .env("no_proxy", "127.0.0.1");
    assert_eq!(digest_of(&c.output().unwrap()), digest);
    assert_eq!(proxy.requests().len(), before, "{:?}", proxy.requests());
    assert_eq!(server.hits(&libc6), 2);

    // https_proxy: a CONNECT tunnel to the HTTPS origin, whose certificate is checked.
    let front = TlsFront::start(&server.url);
    let tls = Client::new(&key, &front.url, "");
    let mut c = tls.command(None, "cache-https", &["--output"]);
    c.arg(tls.dir.join("out-https"))
        .env("https_proxy", &proxy.url)
        .env("SSL_CERT_FILE", &front.ca);
    let run = c.output().unwrap();
    assert_eq!(digest_of(&run), digest);
    let authority = front.url.trim_start_matches("https://");
    let tunnels: Vec<String> = proxy.requests()[before..].to_vec();
    assert!(
        !tunnels.is_empty()
            && tunnels
                .iter()
                .all(|r| *r == format!("CONNECT {authority} HTTP/1.1")),
        "{tunnels:?}"
    );
    assert_eq!(server.hits(&libc6), 3, "through the tunnel and the front");
}
