//! Hermetic test fixture: a real signed apt repository (real OpenPGP signatures, real
//! `.deb` files `dpkg-deb` accepts) in a temporary directory, served over real HTTP on
//! 127.0.0.1. Include from an integration test with `mod support;`.
#![allow(dead_code, unused_imports)]

pub mod deb;
pub mod elf;
pub mod faulty;
pub mod key;
pub mod noble;
pub mod proxy;
pub mod repo;
pub mod server;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

pub use deb::{build_deb, build_deb_with_data, control_tar, data_tar, DebSpec, Member, DEB_MTIME};
pub use elf::{build_elf, default_interp, ElfSpec};
pub use faulty::{closed_port_url, Fault, Faulty};
pub use key::{clearsign_with, detach_sign_with, TestKey};
pub use proxy::{Proxy, TlsFront};
pub use repo::{IndexVariants, PublishedDeb, Repo, SuiteSpec};
pub use server::{Served, Server};

/// The Ubuntu-like libc6 of the small fixtures: `libc.so.6` for arm64 holding `bytes`,
/// zstd members, a copyright file.
pub fn libc6_arm64(bytes: Vec<u8>) -> DebSpec {
    DebSpec::new("libc6", "2.39-0ubuntu8", "arm64", Member::Zstd)
        .file("/usr/lib/aarch64-linux-gnu/libc.so.6", bytes, 0o755)
        .copyright()
}

/// The tzdata of the small fixtures: `/usr/share/zoneinfo/UTC`, gz members.
pub fn tzdata_utc() -> DebSpec {
    DebSpec::new("tzdata", "2024a-1", "all", Member::Gz)
        .file("/usr/share/zoneinfo/UTC", b"TZif utc".to_vec(), 0o644)
        .copyright()
}

/// The image digest a successful `compose` run printed as its last line of stdout
/// (the run must have succeeded, and the line must be a digest).
pub fn digest_of(run: &std::process::Output) -> String {
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let stdout = String::from_utf8(run.stdout.clone()).unwrap();
    let last = stdout.lines().last().unwrap().to_string();
    assert!(last.starts_with("sha256:"), "{stdout}");
    last
}

/// SHA-256 of `bytes`, lowercase hex.
pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// The download cache at `cache` holds nothing bad: `tmp/` is empty and every
/// `sha256/<hex>` hashes to `<hex>` (a missing cache is clean).
pub fn assert_cache_clean(cache: &Path) {
    if let Ok(rd) = std::fs::read_dir(cache.join("tmp")) {
        let left: Vec<_> = rd.map(|e| e.unwrap().file_name()).collect();
        assert!(
            left.is_empty(),
            "partial downloads left in the cache: {left:?}"
        );
    }
    if let Ok(rd) = std::fs::read_dir(cache.join("sha256")) {
        for e in rd {
            let e = e.unwrap();
            let bytes = std::fs::read(e.path()).unwrap();
            assert_eq!(
                sha256(&bytes),
                e.file_name().to_string_lossy(),
                "cache entry {} is not what its name says",
                e.path().display()
            );
        }
    }
}

/// `Sat, 11 Jul 2026 10:16:37 UTC`, the date form of Release files.
pub fn rfc2822(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .expect("time after 1970")
        .as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // civil-from-days (proleptic Gregorian), days since 1970-01-01
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const WD: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MON: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} UTC",
        WD[days.rem_euclid(7) as usize],
        day,
        MON[(month - 1) as usize],
        year,
        h,
        m,
        s
    )
}

/// Writes `toml` to `<dir>/compose.toml` and returns its path.
pub fn write_manifest(dir: impl AsRef<Path>, toml: &str) -> PathBuf {
    write_manifest_named(dir, "compose.toml", toml)
}

pub fn write_manifest_named(dir: impl AsRef<Path>, name: &str, toml: &str) -> PathBuf {
    let p = dir.as_ref().join(name);
    std::fs::create_dir_all(dir.as_ref()).unwrap();
    std::fs::write(&p, toml).unwrap();
    p
}

/// Writes the key's public keyring to `<dir>/<name>` (binary unless the name ends in
/// `.asc`) and returns its path.
pub fn write_keyring(dir: impl AsRef<Path>, name: &str, key: &TestKey) -> PathBuf {
    let p = dir.as_ref().join(name);
    std::fs::create_dir_all(dir.as_ref()).unwrap();
    let bytes = if name.ends_with(".asc") {
        key.keyring_armored()
    } else {
        key.keyring_binary()
    };
    std::fs::write(&p, bytes).unwrap();
    p
}

/// A `[[source]]` table for a manifest pointing at `url` (e.g. `server.url`), with the
/// keyring path written relative to the manifest (e.g. "archive.gpg").
pub fn source_toml(url: &str, suites: &[&str], components: &[&str], keyring: &str) -> String {
    let list = |v: &[&str]| {
        v.iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "[[source]]\nurl = {url:?}\nsuites = [{}]\ncomponents = [{}]\nkeyring = {keyring:?}\n",
        list(suites),
        list(components)
    )
}

/// A minimal HTTP/1.1 GET over std's TcpStream: (status, body). For fixture checks.
pub fn http_get(url: &str) -> (u16, Vec<u8>) {
    let rest = url.strip_prefix("http://").expect("http:// URL");
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut s = std::net::TcpStream::connect(host).expect("connect");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers");
    let head = String::from_utf8_lossy(&raw[..end]).to_string();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let mut body = raw[end + 4..].to_vec();
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    if chunked {
        body = dechunk(&body);
    }
    (status, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let i = b.windows(2).position(|w| w == b"\r\n").expect("chunk size");
        let size_text = String::from_utf8_lossy(&b[..i]).to_string();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
            .expect("chunk size hex");
        b = &b[i + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

/// A signed fixture repository served on loopback, plus a temporary directory holding its
/// keyring (`archive.gpg`) where a test writes its manifest.
pub struct Workspace {
    _tmp: tempfile::TempDir,
    pub dir: PathBuf,
    pub key: TestKey,
    pub repo: Repo,
    pub server: Server,
}

impl Workspace {
    pub fn new(suites: &[SuiteSpec]) -> Workspace {
        let key = TestKey::generate("compose fixture <fixture@example.invalid>");
        let repo = Repo::build(&key, suites, IndexVariants::ALL);
        let server = repo.serve();
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        write_keyring(&dir, "archive.gpg", &key);
        Workspace {
            _tmp: tmp,
            dir,
            key,
            repo,
            server,
        }
    }

    /// A workspace whose repository has one suite, `suite` with component main, holding
    /// `packages(arch)` for each of `archs`.
    pub fn with_packages(
        suite: &str,
        archs: &[&str],
        packages: impl Fn(&str) -> Vec<DebSpec>,
    ) -> Workspace {
        let mut spec = SuiteSpec::new(suite, &["main"], archs);
        for arch in archs {
            for p in packages(arch) {
                spec = spec.package("main", p);
            }
        }
        Workspace::new(&[spec])
    }

    /// Writes `compose.toml`: `[image]` named `name` for `arch`, one `[[source]]` of
    /// `suites`/main from this server, then `body`.
    pub fn manifest(&self, name: &str, arch: &str, suites: &[&str], body: &str) -> PathBuf {
        self.manifest_from(name, &[arch], &self.server.url, suites, body)
    }

    /// Writes `compose.toml`: `[image]` named `name` for `archs`, one `[[source]]` at
    /// `url` (`suites`/main), then `body`. With an upstream-looking `url`, build with
    /// `--mirror` [`Workspace::mirror`]: what compose records (lock, SBOM) then names
    /// `url`, and the bytes come from this server.
    pub fn manifest_from(
        &self,
        name: &str,
        archs: &[&str],
        url: &str,
        suites: &[&str],
        body: &str,
    ) -> PathBuf {
        let archs = archs
            .iter()
            .map(|a| format!("{a:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        let text = format!(
            "[image]\nname = {name:?}\narchitectures = [{archs}]\n\n{}\n{body}",
            source_toml(url, suites, &["main"], "archive.gpg")
        );
        write_manifest(&self.dir, &text)
    }

    /// The `--mirror` pair sending `upstream` to this server.
    pub fn mirror(&self, upstream: &str) -> (String, String) {
        (upstream.to_string(), self.server.url.clone())
    }

    /// `--mirror`'s argument: `upstream=<this server>`.
    pub fn mirror_arg(&self, upstream: &str) -> String {
        format!("{upstream}={}", self.server.url)
    }
}
