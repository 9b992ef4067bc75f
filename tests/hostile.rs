//! Hostile input: the Trust, Index and Package cases of `docs/errors.md`, each through
//! the real `compose` binary against a signed fixture repository served on 127.0.0.1.
//! A hostile archive is modelled as a compromised one: the bad index or package is
//! listed with its true size and hashes and Release is re-signed with the archive key,
//! so only compose's own checks stand between it and the image.
//!
//! Every failing case asserts: exit code 1, exactly one `error:` line on stderr (whose
//! content is checked), nothing on stdout, nothing at `--output`, `--rootfs` or
//! `--sbom` (no temporary sibling either), no lock written, and a cache holding only
//! blobs that hash to their names. The network and local faults are in
//! `tests/faults.rs`.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use support::{
    assert_cache_clean, digest_of, libc6_arm64, rfc2822, sha256, tzdata_utc, DebSpec, Member,
    SuiteSpec, TestKey, Workspace, DEB_MTIME,
};

const ARCH: &str = "arm64";

/// The fixture: libc6 and tzdata, well-formed, and `evil`, whose `.deb` a test replaces.
fn suite() -> SuiteSpec {
    SuiteSpec::new("noble", &["main"], &[ARCH])
        .package("main", libc6_arm64(b"libc bytes".to_vec()))
        .package("main", tzdata_utc())
        .package("main", evil_spec())
}

fn evil_spec() -> DebSpec {
    DebSpec::new("evil", "1.0", ARCH, Member::Xz).file(
        "/usr/lib/evil/placeholder",
        b"harmless".to_vec(),
        0o644,
    )
}

const BODY: &str = r#"
[package.libc6]
paths = ["/usr/lib/*-linux-gnu/libc.so.6"]

[package.tzdata]
paths = ["/usr/share/zoneinfo/UTC"]
"#;

/// `[package.evil]` with these `paths`.
fn with_evil(paths: &str) -> String {
    format!("{BODY}\n[package.evil]\npaths = [{paths}]\n")
}

struct Fixture {
    ws: Workspace,
    manifest: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture::with_body(BODY)
    }

    fn with_body(body: &str) -> Fixture {
        let ws = Workspace::new(&[suite()]);
        let manifest = ws.manifest("hostile", ARCH, &["noble"], body);
        Fixture { ws, manifest }
    }

    fn dir(&self) -> &Path {
        &self.ws.dir
    }

    fn out(&self) -> PathBuf {
        self.dir().join("out")
    }

    fn rootfs(&self) -> PathBuf {
        self.dir().join("rootfs")
    }

    fn sbom(&self) -> PathBuf {
        self.dir().join("sbom.json")
    }

    fn cache(&self) -> PathBuf {
        self.dir().join("cache")
    }

    fn url_of(&self, rel: &str) -> String {
        self.ws.server.url_of(rel)
    }

    /// `compose MANIFEST --output out --rootfs rootfs --sbom sbom.json --cache cache`
    /// (`--quiet` unless `loud`), then `extra`.
    fn command(&self, loud: bool, extra: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_compose"));
        c.arg(&self.manifest)
            .arg("--output")
            .arg(self.out())
            .arg("--rootfs")
            .arg(self.rootfs())
            .arg("--sbom")
            .arg(self.sbom())
            .arg("--cache")
            .arg(self.cache())
            .args(extra)
            .env("COMPOSE_HTTP_TIMEOUT", "5")
            .env_remove("COMPOSE_CACHE")
            .env_remove("SOURCE_DATE_EPOCH");
        if !loud {
            c.arg("--quiet");
        }
        c
    }

    fn run(&self, extra: &[&str]) -> Output {
        self.command(false, extra).output().unwrap()
    }

    /// Runs, expects a clean failure (exit 1) and returns the one error line.
    fn fails(&self, extra: &[&str]) -> String {
        let run = self.run(extra);
        self.clean_failure(&run, 1)
    }

    fn clean_failure(&self, run: &Output, code: i32) -> String {
        let stderr = String::from_utf8_lossy(&run.stderr).to_string();
        assert_eq!(run.status.code(), Some(code), "exit code; stderr: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one error line, got: {stderr}");
        assert!(lines[0].starts_with("error: "), "{stderr}");
        assert!(run.stdout.is_empty(), "no digest on failure");
        self.assert_nothing_left();
        eprintln!("compose said: {}", lines[0]);
        lines[0].to_string()
    }

    /// Nothing at --output, --rootfs, --sbom, no temporary beside them, no lock, and a
    /// cache holding only what its names say.
    fn assert_nothing_left(&self) {
        for p in [self.out(), self.rootfs(), self.sbom()] {
            assert!(!p.exists(), "nothing may be at {}", p.display());
        }
        let lock = PathBuf::from(format!("{}.lock", self.manifest.display()));
        assert!(!lock.exists(), "no lock after a failed build");
        for e in std::fs::read_dir(self.dir()).unwrap() {
            let n = e.unwrap().file_name().to_string_lossy().to_string();
            assert!(!n.starts_with('.'), "temporary {n} left in the workspace");
        }
        assert_cache_clean(&self.cache());
    }

    /// Expects success and returns the digest (the last line of stdout).
    fn succeeds(&self, extra: &[&str]) -> String {
        let run = self.run(extra);
        digest_of(&run)
    }

    fn in_cache(&self, sha: &str) -> bool {
        self.cache().join("sha256").join(sha).exists()
    }

    /// No `.deb` was asked for (a failure of the trust chain or of the index).
    fn assert_no_package_fetched(&self) {
        let pool: Vec<String> = self
            .ws
            .server
            .requests()
            .into_iter()
            .filter(|p| p.starts_with("/pool/"))
            .collect();
        assert!(pool.is_empty(), "packages fetched: {pool:?}");
    }

    /// No Packages index was asked for (a failure of the Release).
    fn assert_no_index_fetched(&self) {
        let idx: Vec<String> = self
            .ws
            .server
            .requests()
            .into_iter()
            .filter(|p| p.contains("/binary-"))
            .collect();
        assert!(idx.is_empty(), "indexes fetched: {idx:?}");
        self.assert_no_package_fetched();
    }

    /// Publishes `data` (an uncompressed data.tar) as the `evil` package, listed in the
    /// signed index with its true size and hashes.
    fn publish_evil(&mut self, data: &[u8]) {
        let bytes = support::build_deb_with_data(&evil_spec(), data);
        self.ws.repo.replace_deb("evil", ARCH, &bytes);
    }
}

// ------------------------------------------------------------ hand-made data.tar

/// A data.tar written header by header, so that names the `tar` crate's builder would
/// refuse or rewrite (`..`, absolute, NUL, invalid UTF-8, devices) go in verbatim.
struct RawTar(tar::Builder<Vec<u8>>);

fn header(kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(DEB_MTIME);
    h
}

fn set_raw(slot: &mut [u8; 100], bytes: &[u8]) {
    assert!(bytes.len() <= 100, "raw names fit the 100-byte field");
    slot.fill(0);
    slot[..bytes.len()].copy_from_slice(bytes);
}

impl RawTar {
    /// `./`, `./usr/`, `./usr/lib/`, `./usr/lib/evil/` and the placeholder file, as a
    /// well-formed package starts.
    fn new() -> RawTar {
        let mut t = RawTar(tar::Builder::new(Vec::new()));
        for d in ["./", "./usr/", "./usr/lib/", "./usr/lib/evil/"] {
            t.dir(d.as_bytes());
        }
        t.file(b"./usr/lib/evil/placeholder", b"harmless", 0o644);
        t
    }

    fn append(&mut self, mut h: tar::Header, name: &[u8], link: Option<&[u8]>, data: &[u8]) {
        set_raw(&mut h.as_old_mut().name, name);
        if let Some(l) = link {
            set_raw(&mut h.as_old_mut().linkname, l);
        }
        h.set_cksum();
        self.0.append(&h, data).unwrap();
    }

    fn dir(&mut self, name: &[u8]) -> &mut Self {
        self.append(header(tar::EntryType::Directory, 0, 0o755), name, None, &[]);
        self
    }

    fn file(&mut self, name: &[u8], data: &[u8], mode: u32) -> &mut Self {
        let h = header(tar::EntryType::Regular, data.len() as u64, mode);
        self.append(h, name, None, data);
        self
    }

    fn symlink(&mut self, name: &[u8], target: &[u8]) -> &mut Self {
        let h = header(tar::EntryType::Symlink, 0, 0o777);
        self.append(h, name, Some(target), &[]);
        self
    }

    fn hardlink(&mut self, name: &[u8], target: &[u8]) -> &mut Self {
        let h = header(tar::EntryType::Link, 0, 0o644);
        self.append(h, name, Some(target), &[]);
        self
    }

    fn special(&mut self, name: &[u8], kind: tar::EntryType) -> &mut Self {
        let mut h = header(kind, 0, 0o666);
        h.set_device_major(1).unwrap();
        h.set_device_minor(3).unwrap();
        self.append(h, name, None, &[]);
        self
    }

    /// A file whose name comes from a PAX `path` record (any bytes, NUL included).
    fn pax_file(&mut self, path: &[u8], data: &[u8]) -> &mut Self {
        self.0.append_pax_extensions([("path", path)]).unwrap();
        self.file(b"./usr/lib/evil/pax-name", data, 0o644)
    }

    /// A file whose name comes from a GNU `././@LongLink` record.
    fn gnu_long_name_file(&mut self, path: &[u8], data: &[u8]) -> &mut Self {
        let mut body = path.to_vec();
        body.push(0);
        let h = header(tar::EntryType::new(b'L'), body.len() as u64, 0o644);
        self.append(h, b"././@LongLink", None, &body);
        self.file(b"./usr/lib/evil/long-name", data, 0o644)
    }

    fn bytes(&mut self) -> Vec<u8> {
        let b = std::mem::replace(&mut self.0, tar::Builder::new(Vec::new()));
        b.into_inner().unwrap()
    }
}

// ------------------------------------------------------------------------- trust

#[test]
fn an_unsigned_release_is_refused() {
    // An InRelease with the clearsign header and no signature block.
    let f = Fixture::new();
    let release = f.ws.repo.read("dists/noble/Release");
    let mut unsigned = b"-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\n".to_vec();
    unsigned.extend_from_slice(&release);
    f.ws.repo.write("dists/noble/InRelease", &unsigned);
    let e = f.fails(&[]);
    assert_eq!(
        e,
        format!(
            "error: {} carries no OpenPGP signature; refusing unsigned repository metadata",
            f.url_of("dists/noble/InRelease")
        )
    );
    f.assert_no_index_fetched();

    // The bare Release text served as InRelease.
    let f = Fixture::new();
    f.ws.repo.write("dists/noble/InRelease", &release);
    let e = f.fails(&[]);
    assert!(e.contains(&f.url_of("dists/noble/InRelease")), "{e}");
    assert!(
        e.contains("is not a well-formed clearsigned file (it must start with -----BEGIN PGP SIGNED MESSAGE-----"),
        "{e}"
    );
    f.assert_no_index_fetched();

    // No InRelease, and Release without Release.gpg.
    let f = Fixture::new();
    f.ws.repo.remove("dists/noble/InRelease");
    f.ws.repo.remove("dists/noble/Release.gpg");
    let e = f.fails(&[]);
    assert_eq!(
        e,
        format!(
            "error: {} has no signature: {} is missing and there is no InRelease; compose only uses signed repositories",
            f.url_of("dists/noble/Release"),
            f.url_of("dists/noble/Release.gpg")
        )
    );
    f.assert_no_index_fetched();

    // An empty Release.gpg.
    let f = Fixture::new();
    f.ws.repo.remove("dists/noble/InRelease");
    f.ws.repo.write("dists/noble/Release.gpg", b"");
    let e = f.fails(&[]);
    assert!(
        e.contains(&format!(
            "{} carries no OpenPGP signature",
            f.url_of("dists/noble/Release")
        )),
        "{e}"
    );
    f.assert_no_index_fetched();
}

#[test]
fn a_signature_by_a_key_not_in_the_keyring_is_refused() {
    let f = Fixture::new();
    let stranger = TestKey::generate("stranger <stranger@example.invalid>");
    f.ws.repo.resign("noble", &stranger);
    let e = f.fails(&[]);
    assert!(
        e.contains(&format!(
            "{} has no good signature by a key in the keyring (keyring holds {}; signatures seen: key ",
            f.url_of("dists/noble/InRelease"),
            f.ws.key.fingerprint()
        )),
        "{e}"
    );
    // The signer is named (by its signing key's fingerprint or key ID).
    let signer = stranger.signing_fingerprint();
    assert!(
        e.contains(&format!("{signer} not in keyring"))
            || e.contains(&format!("{} not in keyring", &signer[24..])),
        "{e}"
    );
    f.assert_no_index_fetched();

    // The same through Release + Release.gpg.
    f.ws.repo.remove("dists/noble/InRelease");
    let e = f.fails(&[]);
    assert!(
        e.contains(&format!(
            "{} has no good signature by a key in the keyring",
            f.url_of("dists/noble/Release")
        )),
        "{e}"
    );
    f.assert_no_index_fetched();
}

#[test]
fn a_signature_that_does_not_verify_is_refused() {
    // One word of the signed text changed after signing.
    let f = Fixture::new();
    let path = "dists/noble/InRelease";
    let text = String::from_utf8(f.ws.repo.read(path)).unwrap();
    let tampered = text.replacen("Suite: noble", "Suite: nobla", 1);
    assert_ne!(text, tampered);
    f.ws.repo.write(path, tampered.as_bytes());
    let e = f.fails(&[]);
    assert!(
        e.starts_with(&format!(
            "error: {} has a BAD signature by key {} (",
            f.url_of(path),
            f.ws.key.fingerprint()
        )),
        "{e}"
    );
    assert!(
        e.ends_with("): the signed text was modified or corrupted, refusing it"),
        "{e}"
    );
    f.assert_no_index_fetched();

    // Release changed under its detached signature.
    let f = Fixture::new();
    f.ws.repo.remove(path);
    let release = String::from_utf8(f.ws.repo.read("dists/noble/Release")).unwrap();
    f.ws.repo.write(
        "dists/noble/Release",
        release
            .replacen("Architectures: arm64", "Architectures: arm64 amd64", 1)
            .as_bytes(),
    );
    let e = f.fails(&[]);
    assert!(
        e.starts_with(&format!(
            "error: {} has a BAD signature by key {}",
            f.url_of("dists/noble/Release"),
            f.ws.key.fingerprint()
        )),
        "{e}"
    );
    f.assert_no_index_fetched();
}

#[test]
fn text_before_or_after_the_signed_block_is_refused() {
    let f = Fixture::new();
    let path = "dists/noble/InRelease";
    let signed = f.ws.repo.read(path);

    let mut before = b"Architectures: amd64\n".to_vec();
    before.extend_from_slice(&signed);
    f.ws.repo.write(path, &before);
    let e = f.fails(&[]);
    assert_eq!(
        e,
        format!(
            "error: {} is not a well-formed clearsigned file (it must start with -----BEGIN PGP SIGNED MESSAGE-----, found \"Architectures: amd64\"); the mirror served something other than a signed InRelease",
            f.url_of(path)
        )
    );
    f.assert_no_index_fetched();

    let mut after = signed.clone();
    after.extend_from_slice(b"Components: main universe\n");
    f.ws.repo.write(path, &after);
    let e = f.fails(&[]);
    assert_eq!(
        e,
        format!(
            "error: {} is not a well-formed clearsigned file (text follows the signature block: \"Components: main universe\\n\"); the mirror served something other than a signed InRelease",
            f.url_of(path)
        )
    );
    f.assert_no_index_fetched();
}

#[test]
fn a_sha1_signature_does_not_count() {
    use sequoia_openpgp::types::HashAlgorithm;
    let f = Fixture::new();
    let release = f.ws.repo.read("dists/noble/Release");
    let inrelease = support::clearsign_with(&[&f.ws.key], &release, HashAlgorithm::SHA1);
    assert!(String::from_utf8_lossy(&inrelease).contains("Hash: SHA1\n"));
    f.ws.repo.write("dists/noble/InRelease", &inrelease);
    let e = f.fails(&[]);
    assert!(
        e.contains(&format!(
            "{} has no good signature by a key in the keyring (keyring holds {}; signatures seen: key {} signature not acceptable: ",
            f.url_of("dists/noble/InRelease"),
            f.ws.key.fingerprint(),
            f.ws.key.fingerprint()
        )),
        "{e}"
    );
    assert!(e.contains("SHA1"), "{e}");
    f.assert_no_index_fetched();

    // A SHA-1 Release.gpg does not count either (no fallback to a weaker form).
    f.ws.repo.remove("dists/noble/InRelease");
    f.ws.repo.write(
        "dists/noble/Release.gpg",
        &support::detach_sign_with(&[&f.ws.key], &release, HashAlgorithm::SHA1),
    );
    let e = f.fails(&[]);
    assert!(
        e.contains(&format!(
            "{} has no good signature by a key in the keyring",
            f.url_of("dists/noble/Release")
        )) && e.contains("SHA1"),
        "{e}"
    );
    f.assert_no_index_fetched();
}

#[test]
fn an_expired_valid_until_is_refused_unless_allowed() {
    let f = Fixture::new();
    let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
    f.ws.repo.set_valid_until("noble", an_hour_ago);
    let e = f.fails(&[]);
    assert_eq!(
        e,
        format!(
            "error: {} expired on {} (Valid-Until); the mirror is stale or replaying old metadata; use a current mirror, or allow expired metadata explicitly (snapshot, --allow-expired)",
            f.url_of("dists/noble/InRelease"),
            rfc2822(an_hour_ago)
        )
    );
    f.assert_no_index_fetched();
    // Explicitly allowed: the build goes through.
    f.succeeds(&["--allow-expired"]);
}

#[test]
fn a_date_in_the_future_beyond_the_tolerance_is_refused() {
    let f = Fixture::new();
    let in_an_hour = SystemTime::now() + Duration::from_secs(3600);
    f.ws.repo
        .set_release_field("noble", "Date", Some(&rfc2822(in_an_hour)));
    let e = f.fails(&[]);
    assert_eq!(
        e,
        format!(
            "error: {} is dated {}, more than 600 s in the future; check this machine's clock",
            f.url_of("dists/noble/InRelease"),
            rfc2822(in_an_hour)
        )
    );
    f.assert_no_index_fetched();
    // --allow-expired is about Valid-Until, not about a Date from the future.
    f.fails(&["--allow-expired"]);

    // Within the 10-minute tolerance (clock skew): accepted.
    let in_five_minutes = SystemTime::now() + Duration::from_secs(300);
    f.ws.repo
        .set_release_field("noble", "Date", Some(&rfc2822(in_five_minutes)));
    f.succeeds(&[]);
}

#[test]
fn a_keyring_that_is_not_a_keyring_is_refused() {
    let f = Fixture::new();
    let keyring = f.dir().join("archive.gpg");
    let inrelease = f.ws.repo.read("dists/noble/InRelease");
    let cases: [(&str, Vec<u8>, &str); 4] = [
        ("empty", Vec::new(), "the file is empty"),
        ("text", b"not a keyring\n".to_vec(), ""),
        ("a clearsigned InRelease", inrelease, ""),
        (
            "random bytes",
            (0u8..=255).rev().cycle().take(600).collect(),
            "",
        ),
    ];
    for (what, bytes, reason) in cases {
        std::fs::write(&keyring, &bytes).unwrap();
        let e = f.fails(&[]);
        assert!(
            e.starts_with(&format!(
                "error: keyring {} is not an OpenPGP public keyring (",
                keyring.display()
            )),
            "{what}: {e}"
        );
        assert!(e.contains(reason), "{what}: {e}");
        assert!(
            e.ends_with("); give a binary .gpg or ASCII-armored .asc keyring"),
            "{what}: {e}"
        );
        assert!(f.ws.server.requests().is_empty(), "{what}: nothing fetched");
    }
}

// ------------------------------------------------------------------------- index

#[test]
fn a_release_without_the_architecture_or_component_is_refused() {
    let f = Fixture::new();
    let e = f.fails(&["--arch", "amd64"]);
    assert_eq!(
        e,
        format!(
            "error: {} does not list architecture \"amd64\" (Architectures: arm64); pick one of those or another source",
            f.url_of("dists/noble")
        )
    );
    f.assert_no_index_fetched();

    let body = format!(
        "[image]\nname = \"hostile\"\narchitectures = [\"{ARCH}\"]\n\n{}\n{BODY}",
        support::source_toml(
            &f.ws.server.url,
            &["noble"],
            &["main", "universe"],
            "archive.gpg"
        )
    );
    support::write_manifest(f.dir(), &body);
    let e = f.fails(&[]);
    assert_eq!(
        e,
        format!(
            "error: {} does not list component \"universe\" (Components: main); fix `components` of the source",
            f.url_of("dists/noble")
        )
    );
    f.assert_no_index_fetched();
}

#[test]
fn a_packages_hash_mismatch_names_url_expected_and_actual() {
    let f = Fixture::new();
    let rel = "dists/noble/main/binary-arm64/Packages.xz";
    let expected = sha256(&f.ws.repo.read(rel));
    let n = f.ws.repo.read(rel).len();
    f.ws.repo.flip_byte(rel, n - 1);
    let actual = sha256(&f.ws.repo.read(rel));
    let e = f.fails(&[]);
    assert!(
        e.contains(&format!(
            "SHA256 mismatch for {}: expected {expected}, got {actual}",
            f.url_of(rel)
        )),
        "{e}"
    );
    assert!(!f.in_cache(&actual), "the bad index is not cached");
    f.assert_no_package_fetched();
}

#[test]
fn a_truncated_packages_xz_is_refused() {
    // Cut on the mirror, Release unchanged: the size and hash do not match.
    let f = Fixture::new();
    let rel = "dists/noble/main/binary-arm64/Packages.xz";
    let full = f.ws.repo.read(rel);
    let cut = &full[..full.len() / 2];
    f.ws.repo.write(rel, cut);
    let e = f.fails(&[]);
    assert!(e.contains(&f.url_of(rel)), "{e}");
    assert!(
        e.contains(&format!("expected {} bytes", full.len()))
            || e.contains(&format!("lists {}", full.len())),
        "{e}"
    );
    assert!(!f.in_cache(&sha256(cut)));
    f.assert_no_package_fetched();

    // Cut and signed as such (a compromised archive): the xz stream is incomplete.
    let f = Fixture::new();
    f.ws.repo.write(rel, cut);
    f.ws.repo.rehash_release("noble");
    let e = f.fails(&[]);
    assert!(
        e.starts_with(&format!(
            "error: {}: cannot decompress (xz): the data is truncated",
            f.url_of(rel)
        )),
        "{e}"
    );
    f.assert_no_package_fetched();
}

/// Applies `edit` to the lines of `package`'s stanza.
fn edit_stanza(text: &str, package: &str, edit: impl Fn(&str) -> Option<String>) -> String {
    let head = format!("Package: {package}\n");
    text.split_inclusive("\n\n")
        .map(|st| {
            if !st.starts_with(&head) {
                return st.to_string();
            }
            st.split_inclusive('\n')
                .filter_map(&edit)
                .collect::<String>()
        })
        .collect()
}

#[test]
fn a_stanza_without_sha256_or_filename_is_refused() {
    for field in ["SHA256", "Filename"] {
        let f = Fixture::new();
        f.ws.repo.edit_packages("noble", "main", ARCH, |text| {
            edit_stanza(text, "libc6", |l| {
                (!l.starts_with(&format!("{field}:"))).then(|| l.to_string())
            })
        });
        let e = f.fails(&[]);
        assert_eq!(
            e,
            format!(
                "error: {}: package libc6 has no {field} field",
                f.url_of("dists/noble/main/binary-arm64/Packages")
            )
        );
        f.assert_no_package_fetched();
    }
}

#[test]
fn a_filename_with_dotdot_or_an_absolute_path_is_refused() {
    for (bad, reason) in [
        (
            "pool/main/l/libc6/../../../../../etc/passwd",
            "it has an empty, `.` or `..` path component",
        ),
        ("/etc/passwd", "it is an absolute path"),
    ] {
        let f = Fixture::new();
        f.ws.repo.edit_packages("noble", "main", ARCH, |text| {
            edit_stanza(text, "libc6", |l| {
                Some(if l.starts_with("Filename:") {
                    format!("Filename: {bad}\n")
                } else {
                    l.to_string()
                })
            })
        });
        let e = f.fails(&[]);
        assert_eq!(
            e,
            format!(
                "error: {}: package libc6 has an invalid Filename {bad:?}: {reason}",
                f.url_of("dists/noble/main/binary-arm64/Packages")
            )
        );
        f.assert_no_package_fetched();
    }
}

#[test]
fn duplicate_stanzas_with_different_hashes_are_refused() {
    let f = Fixture::new();
    let libc = f.ws.repo.package("libc6", ARCH);
    let other = sha256(b"another build of the same version");
    f.ws.repo.edit_packages("noble", "main", ARCH, |text| {
        let twin = libc.stanza.replace(&libc.sha256, &other);
        assert_ne!(twin, libc.stanza);
        format!("{text}{twin}\n")
    });
    let e = f.fails(&[]);
    assert_eq!(
        e,
        format!(
            "error: {}: package libc6 2.39-0ubuntu8 (arm64) appears twice with different SHA256 ({} and {other}); the index is inconsistent",
            f.url_of("dists/noble/main/binary-arm64/Packages"),
            libc.sha256
        )
    );
    f.assert_no_package_fetched();
}

// ----------------------------------------------------------------------- package

#[test]
fn a_deb_size_or_sha256_mismatch_is_refused() {
    let f = Fixture::new();
    let deb = f.ws.repo.package("libc6", ARCH);
    let mut bytes = f.ws.repo.read(&deb.filename);
    let n = bytes.len();
    bytes[n - 1] ^= 0x01;
    f.ws.repo.write(&deb.filename, &bytes);
    let e = f.fails(&[]);
    assert_eq!(
        e,
        format!(
            "error: package libc6 2.39-0ubuntu8 ({ARCH}): SHA256 mismatch for {}: expected {}, got {}; the mirror or a proxy served different bytes than the signed index lists",
            f.url_of(&deb.filename),
            deb.sha256,
            sha256(&bytes)
        )
    );
    assert!(!f.in_cache(&sha256(&bytes)), "the bad .deb is not cached");

    bytes.push(0);
    f.ws.repo.write(&deb.filename, &bytes);
    let e = f.fails(&[]);
    assert!(
        e.starts_with(&format!(
            "error: package libc6 2.39-0ubuntu8 ({ARCH}): size mismatch for {}: ",
            f.url_of(&deb.filename)
        )) && e.contains(&deb.size.to_string())
            && e.contains(&(deb.size + 1).to_string()),
        "{e}"
    );
    assert!(!f.in_cache(&sha256(&bytes)));
}

#[test]
fn a_truncated_download_is_refused() {
    let f = Fixture::new();
    let deb = f.ws.repo.package("libc6", ARCH);
    let bytes = f.ws.repo.read(&deb.filename);
    let cut = &bytes[..bytes.len() / 2];
    f.ws.repo.write(&deb.filename, cut);
    let e = f.fails(&[]);
    assert_eq!(
        e,
        format!(
            "error: package libc6 2.39-0ubuntu8 ({ARCH}): size mismatch for {}: the server announces {} bytes (Content-Length), the signed index lists {}; the mirror serves a different file",
            f.url_of(&deb.filename),
            cut.len(),
            deb.size
        )
    );
    assert!(!f.in_cache(&sha256(cut)));
}

#[test]
fn a_deb_with_a_bad_ar_magic_is_refused() {
    let mut f = Fixture::with_body(&with_evil("\"/usr/lib/evil/**\""));
    f.ws.repo.replace_deb(
        "evil",
        ARCH,
        b"<html><body>Welcome to the hotel wifi</body></html>\n",
    );
    let e = f.fails(&[]);
    assert_eq!(
        e,
        format!(
            "error: {}: not a .deb package (bad ar archive magic); check that the file or URL really is a .deb",
            f.url_of(&f.ws.repo.package("evil", ARCH).filename)
        )
    );
}

#[test]
fn an_ar_member_claiming_more_bytes_than_exist_is_refused() {
    let mut f = Fixture::with_body(&with_evil("\"/usr/lib/evil/**\""));
    let mut bytes = support::build_deb(&evil_spec());
    let pos = bytes.windows(11).position(|w| w == b"data.tar.xz").unwrap();
    bytes[pos + 48..pos + 58].copy_from_slice(b"99999999  ");
    f.ws.repo.replace_deb("evil", ARCH, &bytes);
    let e = f.fails(&[]);
    assert_eq!(
        e,
        format!(
            "error: {}: the ar member `data.tar.xz` claims more bytes than the file holds; the package is cut short or malformed",
            f.url_of(&f.ws.repo.package("evil", ARCH).filename)
        )
    );
}

#[test]
fn a_data_tar_with_dotdot_components_is_refused() {
    let url = |f: &Fixture| f.url_of(&f.ws.repo.package("evil", ARCH).filename);
    // A member name, selected or not.
    let mut f = Fixture::with_body(&with_evil("\"/usr/lib/evil/placeholder\""));
    f.publish_evil(
        &RawTar::new()
            .file(b"./usr/lib/evil/../../../../etc/shadow", b"x", 0o644)
            .bytes(),
    );
    let e = f.fails(&[]);
    assert_eq!(
        e,
        format!(
            "error: {}: refusing path \"./usr/lib/evil/../../../../etc/shadow\": it contains a `..` component",
            url(&f)
        )
    );
    // A hard link's target.
    let mut f = Fixture::with_body(&with_evil("\"/usr/lib/evil/**\""));
    f.publish_evil(
        &RawTar::new()
            .hardlink(b"./usr/lib/evil/passwd", b"../../../etc/passwd")
            .bytes(),
    );
    let e = f.fails(&[]);
    assert_eq!(
        e,
        format!(
            "error: {}: refusing path \"../../../etc/passwd\": it contains a `..` component",
            url(&f)
        )
    );
}

#[test]
fn a_data_tar_with_absolute_paths_is_refused() {
    let url = |f: &Fixture| f.url_of(&f.ws.repo.package("evil", ARCH).filename);
    let mut f = Fixture::with_body(&with_evil("\"/usr/lib/evil/**\""));
    f.publish_evil(
        &RawTar::new()
            .file(b"/etc/cron.d/evil", b"* * * * * root sh\n", 0o644)
            .bytes(),
    );
    let e = f.fails(&[]);
    assert_eq!(
        e,
        format!(
            "error: {}: refusing path \"/etc/cron.d/evil\": it is an absolute path (package members are ./-relative)",
            url(&f)
        )
    );
    let mut f = Fixture::with_body(&with_evil("\"/usr/lib/evil/**\""));
    f.publish_evil(
        &RawTar::new()
            .hardlink(b"./usr/lib/evil/shadow", b"/etc/shadow")
            .bytes(),
    );
    let e = f.fails(&[]);
    assert_eq!(
        e,
        format!(
            "error: {}: refusing path \"/etc/shadow\": it is an absolute path (package members are ./-relative)",
            url(&f)
        )
    );
}

#[test]
fn a_hard_link_to_a_path_outside_the_package_is_refused() {
    // Outside the package: a path it does not have.
    let mut f = Fixture::with_body(&with_evil("\"/usr/lib/evil/**\""));
    f.publish_evil(
        &RawTar::new()
            .hardlink(b"./usr/lib/evil/shadow", b"./etc/shadow")
            .bytes(),
    );
    let e = f.fails(&[]);
    assert_eq!(
        e,
        "error: package evil: hard link /usr/lib/evil/shadow points to /etc/shadow, which is not a regular file of the package"
    );
    // Another package's file, which is in the image.
    let mut f = Fixture::with_body(&with_evil("\"/usr/lib/evil/**\""));
    f.publish_evil(
        &RawTar::new()
            .hardlink(
                b"./usr/lib/evil/libc",
                b"./usr/lib/aarch64-linux-gnu/libc.so.6",
            )
            .bytes(),
    );
    let e = f.fails(&[]);
    assert_eq!(
        e,
        "error: package evil: hard link /usr/lib/evil/libc points to /usr/lib/aarch64-linux-gnu/libc.so.6, which is not a regular file of the package"
    );
}

#[test]
fn a_symlink_chain_cannot_make_rootfs_write_outside() {
    let mut f = Fixture::with_body(&with_evil("\"/usr/lib/evil/**\""));
    let outside = f.dir().join("outside");
    std::fs::create_dir(&outside).unwrap();
    // hop1 -> hop2 -> the outside directory, then files "under" hop1: through the
    // links on disk they would land in `outside`.
    let mut tar = RawTar::new();
    tar.symlink(b"./usr/lib/evil/hop1", b"hop2")
        .symlink(b"./usr/lib/evil/hop2", outside.to_str().unwrap().as_bytes())
        .file(b"./usr/lib/evil/hop1/planted", b"pwned", 0o644);
    f.publish_evil(&tar.bytes());
    let e = f.fails(&[]);
    assert_eq!(
        e,
        "error: package evil gives /usr/lib/evil/hop1 twice, with different types (a directory is needed here); refusing the package"
    );
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);

    // A relative chain climbing out, and a directory entry under the link as well.
    let mut f = Fixture::with_body(&with_evil("\"/usr/lib/evil/**\""));
    let mut tar = RawTar::new();
    tar.symlink(b"./usr/lib/evil/up", b"../../../../../../../../..")
        .symlink(b"./usr/lib/evil/hop", b"up/tmp")
        .dir(b"./usr/lib/evil/hop/")
        .file(b"./usr/lib/evil/hop/planted", b"pwned", 0o644);
    f.publish_evil(&tar.bytes());
    let e = f.fails(&[]);
    assert_eq!(
        e,
        "error: package evil gives /usr/lib/evil/hop twice, with different types; refusing the package"
    );
    assert!(!Path::new("/tmp/planted").exists());

    // Links alone are kept as links: written as they are, never followed.
    let mut f = Fixture::with_body(&with_evil("\"/usr/lib/evil/**\""));
    let mut tar = RawTar::new();
    tar.symlink(b"./usr/lib/evil/hop1", b"hop2")
        .symlink(b"./usr/lib/evil/hop2", outside.to_str().unwrap().as_bytes());
    f.publish_evil(&tar.bytes());
    f.succeeds(&[]);
    let hop2 = f.rootfs().join("usr/lib/evil/hop2");
    assert_eq!(std::fs::read_link(&hop2).unwrap(), outside);
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
}

#[test]
fn a_device_node_or_fifo_is_refused() {
    for (kind, name) in [
        (tar::EntryType::Char, "character device"),
        (tar::EntryType::Block, "block device"),
        (tar::EntryType::Fifo, "fifo"),
    ] {
        let mut f = Fixture::with_body(&with_evil("\"/usr/lib/evil/**\""));
        f.publish_evil(&RawTar::new().special(b"./usr/lib/evil/mem", kind).bytes());
        let e = f.fails(&[]);
        assert_eq!(
            e,
            format!("error: package evil: /usr/lib/evil/mem is a {name}; compose does not put device nodes or fifos in images, exclude it")
        );
    }
    // Not selected: it is not in the image, and the build goes on.
    let mut f = Fixture::with_body(&with_evil("\"/usr/lib/evil/placeholder\""));
    f.publish_evil(
        &RawTar::new()
            .special(b"./usr/lib/evil/mem", tar::EntryType::Char)
            .bytes(),
    );
    f.succeeds(&[]);
    assert!(!f.rootfs().join("usr/lib/evil/mem").exists());
}

#[test]
fn setuid_files_are_kept_and_listed_in_the_summary() {
    use std::os::unix::fs::PermissionsExt;
    let mut f = Fixture::with_body(&with_evil("\"/usr/lib/evil/**\""));
    f.publish_evil(
        &RawTar::new()
            .file(b"./usr/lib/evil/su-tool", b"setuid", 0o4755)
            .file(b"./usr/lib/evil/sg-tool", b"setgid", 0o2711)
            .file(b"./usr/lib/evil/plain", b"plain", 0o755)
            .bytes(),
    );
    let run = f.command(true, &[]).output().unwrap();
    digest_of(&run);
    let stderr = String::from_utf8(run.stderr).unwrap();
    eprintln!("{stderr}");
    let mut listed: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("setuid/setgid"))
        .collect();
    listed.sort();
    assert_eq!(
        listed,
        [
            "  setuid/setgid: /usr/lib/evil/sg-tool",
            "  setuid/setgid: /usr/lib/evil/su-tool"
        ],
        "{stderr}"
    );
    // Kept as packaged.
    let mode = |p: &str| {
        std::fs::metadata(f.rootfs().join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode("usr/lib/evil/su-tool"), 0o4755);
    assert_eq!(mode("usr/lib/evil/sg-tool"), 0o2711);
    assert_eq!(mode("usr/lib/evil/plain"), 0o755);
}

#[test]
fn names_with_nul_or_invalid_utf8_are_refused() {
    let url = |f: &Fixture| f.url_of(&f.ws.repo.package("evil", ARCH).filename);
    type Case = (&'static str, fn(&mut RawTar), &'static str, &'static str);
    let cases: [Case; 4] = [
        (
            "NUL in a PAX path",
            |t| {
                t.pax_file(b"./usr/lib/evil/a\0b", b"x");
            },
            "./usr/lib/evil/a\\0b",
            "it contains a NUL byte",
        ),
        (
            "invalid UTF-8 in a name",
            |t| {
                t.file(b"./usr/lib/evil/\xff\xfe", b"x", 0o644);
            },
            "./usr/lib/evil/\u{fffd}\u{fffd}",
            "it is not valid UTF-8",
        ),
        (
            "invalid UTF-8 in a GNU long name",
            |t| {
                let mut long = b"./usr/lib/evil/".to_vec();
                long.extend(std::iter::repeat_n(b'd', 120));
                long.extend(b"/\xc3\x28");
                t.gnu_long_name_file(&long, b"x");
            },
            "",
            "it is not valid UTF-8",
        ),
        (
            "invalid UTF-8 in a symlink target",
            |t| {
                t.symlink(b"./usr/lib/evil/link", b"\xff");
            },
            "\u{fffd}",
            "a symlink target is not valid UTF-8",
        ),
    ];
    for (what, add, shown, reason) in cases {
        let mut f = Fixture::with_body(&with_evil("\"/usr/lib/evil/placeholder\""));
        let mut tar = RawTar::new();
        add(&mut tar);
        f.publish_evil(&tar.bytes());
        let e = f.fails(&[]);
        assert!(
            e.starts_with(&format!("error: {}: refusing path \"{shown}", url(&f))),
            "{what}: {e}"
        );
        assert!(e.ends_with(&format!("\": {reason}")), "{what}: {e}");
    }
}

// ------------------------------------------------------------------ docs/errors.md

/// Every test the table of hostile input and faults in `docs/errors.md` names exists
/// (as a `#[test]`).
#[test]
fn the_errors_table_names_existing_tests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("docs/errors.md")).unwrap();
    let start = doc
        .find("## Hostile input and faults: what compose says")
        .expect("the table's heading");
    // Every table of the file from that heading on: (its rows without the header and
    // the separator), in order.
    let mut tables: Vec<Vec<&str>> = Vec::new();
    let mut in_table = false;
    for line in doc[start..].lines() {
        match (line.starts_with('|'), in_table) {
            (true, false) => tables.push(vec![line]),
            (true, true) => tables.last_mut().unwrap().push(line),
            _ => {}
        }
        in_table = line.starts_with('|');
    }
    let tables: Vec<Vec<&str>> = tables.into_iter().map(|t| t[2..].to_vec()).collect();
    // 8 trust, 6 index, 11 package, 6 network and 4 local cases.
    assert_eq!(tables[0].len(), 35, "one row per case of docs/errors.md");
    assert!(tables.len() > 1, "the tables after the first are read too");
    for row in tables.into_iter().flatten() {
        let cells: Vec<&str> = row.trim_matches('|').rsplitn(2, " | ").collect();
        let tests = cells[0];
        let mut named = 0;
        for name in tests.split('`').skip(1).step_by(2) {
            let name = name.trim();
            let (file, test) = name.split_once("::").expect("file::test");
            let text = std::fs::read_to_string(root.join("tests").join(format!("{file}.rs")))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(
                text.contains(&format!("#[test]\nfn {test}()")),
                "docs/errors.md names {name}, which is not a test"
            );
            named += 1;
        }
        assert!(named > 0, "a row without a test: {row}");
    }
}
