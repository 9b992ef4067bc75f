//! The apt trust chain against real, unmodified archive files from
//! `../shared/data` (see its PROVENANCE.md). Skipped, with a message, when the
//! directory is absent.

use std::path::{Path, PathBuf};

use compose::apt::{verify_clearsigned, verify_detached, AptError, Compression, Keyring, Release};
use compose::arch::Arch;
use sequoia_openpgp as openpgp;

const UBUNTU_2018_KEY: &str = "F6ECB3762474EDA9D21B7022871920D1991BC93C";
const DEBIAN_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";
const UBUNTU_KEYRING: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/data/keys/ubuntu-archive-keyring.gpg"
);

fn data_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    if dir.is_dir() {
        Some(dir)
    } else {
        println!("SKIPPED: ../shared/data not present");
        None
    }
}

fn read(path: impl AsRef<Path>) -> Vec<u8> {
    let path = path.as_ref();
    std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn ubuntu_keyring() -> Keyring {
    Keyring::from_bytes(&read(UBUNTU_KEYRING), UBUNTU_KEYRING).unwrap()
}

/// The Debian keyring of this host, or None (with a message) when absent.
fn debian_keyring() -> Option<Keyring> {
    if !Path::new(DEBIAN_KEYRING).exists() {
        println!("SKIPPED (Debian part): {DEBIAN_KEYRING} not present");
        return None;
    }
    Some(Keyring::from_bytes(&read(DEBIAN_KEYRING), DEBIAN_KEYRING).unwrap())
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn ubuntu_noble_inrelease_verifies_and_lists_arm64_packages() {
    let Some(dir) = data_dir() else { return };
    let keyring = ubuntu_keyring();
    assert_eq!(keyring.fingerprints().len(), 3);
    assert!(keyring
        .fingerprints()
        .contains(&UBUNTU_2018_KEY.to_string()));

    let what = "http://archive.ubuntu.com/ubuntu/dists/noble/InRelease";
    let data = read(dir.join("ubuntu/noble-InRelease"));
    let verified = verify_clearsigned(&data, &keyring, what).unwrap();
    assert_eq!(verified.signers, vec![UBUNTU_2018_KEY.to_string()]);
    assert!(verified.body.starts_with(b"Origin: Ubuntu\n"));
    // The body is the signed text only: no armor, no Hash: header.
    assert!(!verified.body.windows(5).any(|w| w == b"-----"));
    assert!(!verified.body.starts_with(b"Hash:"));

    let release = Release::parse(&verified.body, what).unwrap();
    assert_eq!(release.origin.as_deref(), Some("Ubuntu"));
    assert_eq!(release.suite.as_deref(), Some("noble"));
    assert_eq!(release.codename.as_deref(), Some("noble"));
    assert_eq!(release.valid_until, None);
    assert!(release.architectures.contains(&"arm64".to_string()));
    assert!(release.components.contains(&"main".to_string()));
    assert!(release.acquire_by_hash);
    // No Valid-Until: an old release pocket is still acceptable today.
    release.check_dates(now(), false, what).unwrap();

    let indexes = release.packages_indexes("main", Arch::ARM64, what).unwrap();
    assert_eq!(indexes[0].path, "main/binary-arm64/Packages.xz");
    assert_eq!(indexes[0].compression, Compression::Xz);
    assert_eq!(indexes[0].sha256.len(), 64);
    assert!(indexes[0].size > 0);
    let order: Vec<Compression> = indexes.iter().map(|i| i.compression).collect();
    assert_eq!(
        order,
        vec![Compression::Xz, Compression::Gz, Compression::None]
    );
    // Ubuntu lists MD5Sum, SHA1 and SHA256: the by-hash copy is named by SHA256.
    assert!(release.sha512.is_empty());
    assert_eq!(
        release.by_hash_path(&indexes[0].path),
        Some(format!(
            "main/binary-arm64/by-hash/SHA256/{}",
            indexes[0].sha256
        ))
    );
}

#[test]
fn one_changed_byte_in_signed_text_is_a_bad_signature() {
    let Some(dir) = data_dir() else { return };
    let keyring = ubuntu_keyring();
    let mut data = read(dir.join("ubuntu/noble-InRelease"));
    // Change one byte of the signed text: "Origin: Ubuntu" -> "Origin: Ubunte".
    let pos = data
        .windows(14)
        .position(|w| w == b"Origin: Ubuntu")
        .unwrap()
        + 13;
    data[pos] = b'e';
    let err = verify_clearsigned(&data, &keyring, "noble-InRelease").unwrap_err();
    assert!(matches!(err, AptError::BadSignature { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("BAD signature"), "{msg}");
    assert!(msg.contains(UBUNTU_2018_KEY), "{msg}");
    assert!(msg.contains("noble-InRelease"), "{msg}");
}

#[test]
fn text_outside_the_signed_block_is_refused() {
    let Some(dir) = data_dir() else { return };
    let keyring = ubuntu_keyring();
    let data = read(dir.join("ubuntu/noble-InRelease"));

    let mut appended = data.clone();
    appended.extend_from_slice(b"\nPackage: evil\n");
    let err = verify_clearsigned(&appended, &keyring, "appended").unwrap_err();
    assert!(matches!(err, AptError::Framing { .. }), "{err:?}");
    assert!(err.to_string().contains("follows the signature"), "{err}");

    let mut prepended = b"Origin: Evil\n\n".to_vec();
    prepended.extend_from_slice(&data);
    let err = verify_clearsigned(&prepended, &keyring, "prepended").unwrap_err();
    assert!(matches!(err, AptError::Framing { .. }), "{err:?}");

    // A second signed message after the first one is text after the block too.
    let mut twice = data.clone();
    twice.extend_from_slice(&data);
    let err = verify_clearsigned(&twice, &keyring, "twice").unwrap_err();
    assert!(matches!(err, AptError::Framing { .. }), "{err:?}");

    // Whitespace around the block is fine.
    let mut padded = b"\n  \n".to_vec();
    padded.extend_from_slice(&data);
    padded.extend_from_slice(b"\n\n");
    let v = verify_clearsigned(&padded, &keyring, "padded").unwrap();
    assert_eq!(v.signers, vec![UBUNTU_2018_KEY.to_string()]);
}

#[test]
fn armored_keyring_works_like_the_binary_one() {
    let Some(dir) = data_dir() else { return };
    use openpgp::serialize::Serialize;
    let binary = ubuntu_keyring();
    let mut armored = Vec::new();
    {
        let mut w =
            openpgp::armor::Writer::new(&mut armored, openpgp::armor::Kind::PublicKey).unwrap();
        for cert in binary.certs() {
            cert.serialize(&mut w).unwrap();
        }
        w.finalize().unwrap();
    }
    assert!(armored.starts_with(b"-----BEGIN PGP PUBLIC KEY BLOCK-----"));
    let keyring = Keyring::from_bytes(&armored, "ubuntu-archive-keyring.asc").unwrap();
    assert_eq!(keyring.fingerprints(), binary.fingerprints());
    let data = read(dir.join("ubuntu/noble-InRelease"));
    let v = verify_clearsigned(&data, &keyring, "noble-InRelease").unwrap();
    assert_eq!(v.signers, vec![UBUNTU_2018_KEY.to_string()]);
}

#[test]
fn a_file_that_is_not_a_keyring_is_refused() {
    let Some(dir) = data_dir() else { return };
    // A real file of the data set that is not a keyring: a clearsigned InRelease.
    let err = Keyring::from_bytes(&read(dir.join("PROVENANCE.md")), "PROVENANCE.md").unwrap_err();
    assert!(matches!(err, AptError::Keyring { .. }), "{err:?}");
    assert!(err.to_string().contains("PROVENANCE.md"), "{err}");
    let err = Keyring::from_bytes(b"", "empty.gpg").unwrap_err();
    assert!(err.to_string().contains("empty.gpg"), "{err}");
    // A .deb is binary but not OpenPGP.
    let deb = dir.join("keys/ubuntu-keyring_2023.11.28.1-0.2_all.deb");
    let err = Keyring::from_bytes(&read(deb), "ubuntu-keyring.deb").unwrap_err();
    assert!(matches!(err, AptError::Keyring { .. }), "{err:?}");
}

#[test]
fn ubuntu_inrelease_with_the_debian_keyring_has_no_trusted_signature() {
    let Some(dir) = data_dir() else { return };
    let Some(debian) = debian_keyring() else {
        return;
    };
    let data = read(dir.join("ubuntu/noble-InRelease"));
    let err = verify_clearsigned(&data, &debian, "noble-InRelease").unwrap_err();
    assert!(
        matches!(err, AptError::NoTrustedSignature { .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("no good signature by a key in the keyring"),
        "{msg}"
    );
    // It names the key that did sign, so the user knows which keyring is needed.
    assert!(msg.contains("871920D1991BC93C"), "{msg}");
}

#[test]
fn debian_bookworm_inrelease_verifies() {
    let Some(dir) = data_dir() else { return };
    let Some(debian) = debian_keyring() else {
        return;
    };
    let what = "http://deb.debian.org/debian/dists/bookworm/InRelease";
    let data = read(dir.join("debian/bookworm-InRelease"));
    let v = verify_clearsigned(&data, &debian, what).unwrap();
    println!("bookworm signers: {:?}", v.signers);
    assert!(!v.signers.is_empty());
    assert!(v.signers.iter().all(|s| debian.fingerprints().contains(s)));
    let release = Release::parse(&v.body, what).unwrap();
    assert_eq!(release.codename.as_deref(), Some("bookworm"));
    assert!(release.valid_until.is_none());
    let idx = release.packages_indexes("main", Arch::AMD64, what).unwrap();
    assert_eq!(idx[0].path, "main/binary-amd64/Packages.xz");
    // Debian lists `all` as an architecture of its own.
    assert!(release.architectures.contains(&"all".to_string()));
    let err = release
        .packages_indexes("main", Arch::parse("riscv64").unwrap(), what)
        .unwrap_err();
    assert!(matches!(err, AptError::ArchitectureMissing { .. }), "{err}");
    let err = release
        .packages_indexes("universe", Arch::AMD64, what)
        .unwrap_err();
    assert!(matches!(err, AptError::ComponentMissing { .. }), "{err}");
}

#[test]
fn debian_sid_detached_signature_verifies_and_is_expired() {
    let Some(dir) = data_dir() else { return };
    let Some(debian) = debian_keyring() else {
        return;
    };
    let what = "http://deb.debian.org/debian/dists/sid/Release";
    let data = read(dir.join("debian/sid-20240324-Release"));
    let sig = read(dir.join("debian/sid-20240324-Release.gpg"));
    let v = verify_detached(&data, &sig, &debian, what).unwrap();
    println!("sid signers: {:?}", v.signers);
    assert!(!v.signers.is_empty());
    assert_eq!(v.body, data);

    let release = Release::parse(&v.body, what).unwrap();
    assert_eq!(release.suite.as_deref(), Some("unstable"));
    let err = release.check_dates(now(), false, what).unwrap_err();
    assert!(matches!(err, AptError::Expired { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("Valid-Until") && msg.contains(what), "{msg}");
    release.check_dates(now(), true, what).unwrap();
    // On its own Date, it was valid.
    let date = compose::apt::parse_date(release.date.as_deref().unwrap()).unwrap();
    release.check_dates(date, false, what).unwrap();

    // One changed byte of Release → bad signature.
    let mut tampered = data.clone();
    let pos = tampered.iter().position(|&b| b == b'\n').unwrap() - 1;
    tampered[pos] ^= 0x01;
    let err = verify_detached(&tampered, &sig, &debian, what).unwrap_err();
    assert!(matches!(err, AptError::BadSignature { .. }), "{err:?}");

    // The Debian Release with the Ubuntu keyring: nothing trusted.
    let err = verify_detached(&data, &sig, &ubuntu_keyring(), what).unwrap_err();
    assert!(
        matches!(err, AptError::NoTrustedSignature { .. }),
        "{err:?}"
    );

    // An empty signature file.
    let err = verify_detached(&data, b"", &debian, what).unwrap_err();
    assert!(matches!(err, AptError::NoSignature { .. }), "{err:?}");
}

/// Debian 11.1 (Oct 2021) was signed by the buster (10) archive key, now only in
/// debian-archive-removed-keys.gpg, and by the bullseye archive and release
/// keys, still in the keyring. As with gpgv, the buster signature is an
/// unknown-key signature and is ignored; the two others are good.
#[test]
fn debian_bullseye_11_1_inrelease() {
    let Some(dir) = data_dir() else { return };
    let Some(debian) = debian_keyring() else {
        return;
    };
    let what = "bullseye-11.1-InRelease";
    let data = read(dir.join("debian/bullseye-11.1-InRelease"));
    let v = verify_clearsigned(&data, &debian, what).unwrap();
    assert_eq!(
        v.signers,
        vec![
            // Debian Archive Automatic Signing Key (11/bullseye)
            "1F89983E0081FDE018F3CC9673A4F27B8DD47936".to_string(),
            // Debian Stable Release Key (11/bullseye)
            "A4285295FC7B1A81600062A9605C66F00D6C9793".to_string(),
        ]
    );
    let release = Release::parse(&v.body, what).unwrap();
    assert_eq!(release.codename.as_deref(), Some("bullseye"));

    // With only the removed keys, the buster signature is the good one.
    let removed = "/usr/share/keyrings/debian-archive-removed-keys.gpg";
    if Path::new(removed).exists() {
        let removed = Keyring::from_bytes(&read(removed), removed).unwrap();
        let v = verify_clearsigned(&data, &removed, what).unwrap();
        // Debian Archive Automatic Signing Key (10/buster)
        assert_eq!(v.signers, vec!["80D15823B7FD1561F9F7BCDDDC30D7C23CBBABEE"]);
    }
}

/// The body is byte for byte what gpgv says was signed, except for the line
/// break before the signature, which the signature does not cover (RFC 9580
/// §7.1) and gpgv prints anyway.
#[test]
fn verified_body_equals_gpgv_output() {
    let Some(dir) = data_dir() else { return };
    let src = dir.join("ubuntu/noble-InRelease");
    let out = std::env::temp_dir().join(format!("apt-body-{}.txt", std::process::id()));
    let status = std::process::Command::new("gpgv")
        .arg("--keyring")
        .arg(UBUNTU_KEYRING)
        .arg("--output")
        .arg(&out)
        .arg(&src)
        .stderr(std::process::Stdio::null())
        .status();
    match status {
        Ok(s) if s.success() => {}
        other => {
            println!("SKIPPED: gpgv not usable here ({other:?})");
            return;
        }
    }
    let expected = read(&out);
    let _ = std::fs::remove_file(&out);
    let v = verify_clearsigned(&read(&src), &ubuntu_keyring(), "noble").unwrap();
    assert_eq!(v.body.len() + 1, expected.len());
    assert!(expected.starts_with(&v.body));
    assert_eq!(&expected[v.body.len()..], b"\n");
}

#[test]
fn inrelease_without_signature_is_refused() {
    let Some(dir) = data_dir() else { return };
    let keyring = ubuntu_keyring();
    let data = read(dir.join("ubuntu/noble-InRelease"));
    let text = String::from_utf8(data).unwrap();
    let cut = text.find("-----BEGIN PGP SIGNATURE-----").unwrap();
    let unsigned = &text[..cut];
    let err = verify_clearsigned(unsigned.as_bytes(), &keyring, "cut").unwrap_err();
    assert!(matches!(err, AptError::NoSignature { .. }), "{err:?}");
    // The plain Release body (no armor at all).
    let body = &text[text.find("Origin:").unwrap()..cut];
    let err = verify_clearsigned(body.as_bytes(), &keyring, "plain").unwrap_err();
    assert!(matches!(err, AptError::Framing { .. }), "{err:?}");
}
