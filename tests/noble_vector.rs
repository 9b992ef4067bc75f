//! The real Ubuntu Noble InRelease (from ../shared/data) served on a loopback server with
//! no Packages files: the signature verifies with keys/ubuntu-archive-keyring.gpg, and
//! the build stops at the missing index of the requested architecture; one changed byte
//! makes it a signature error instead.

mod support;

use std::path::{Path, PathBuf};

use compose::build::{build, BuildOptions};

fn shared_inrelease() -> Option<Vec<u8>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/ubuntu/noble-InRelease");
    match std::fs::read(&path) {
        Ok(bytes) => Some(bytes),
        Err(_) => {
            eprintln!(
                "SKIPPED: ../shared/data not present ({} missing)",
                path.display()
            );
            None
        }
    }
}

fn compose_against(inrelease: &[u8], arch: &str) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("mirror");
    let dists = root.join("ubuntu/dists/noble");
    std::fs::create_dir_all(&dists).unwrap();
    std::fs::write(dists.join("InRelease"), inrelease).unwrap();
    let server = support::Server::serve_dir(&root);
    let keyring: PathBuf =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("keys/ubuntu-archive-keyring.gpg");
    let manifest = support::write_manifest(
        tmp.path(),
        &format!(
            "[image]\nname = \"noble\"\n\n[[source]]\nurl = \"http://archive.ubuntu.com/ubuntu\"\nsuites = [\"noble\"]\nkeyring = {:?}\n\n[package.libc6]\npaths = [\"/usr/lib/*-linux-gnu/libc.so.6\"]\n",
            keyring.display().to_string()
        ),
    );
    let err = build(&BuildOptions {
        manifest,
        archs: vec![arch.into()],
        output: Some(tmp.path().join("out")),
        cache: Some(tmp.path().join("cache")),
        mirrors: vec![("http://archive.ubuntu.com".into(), server.url.clone())],
        quiet: true,
        ..BuildOptions::default()
    })
    .expect_err("there are no Packages files to build from");
    assert!(!tmp.path().join("out").exists());
    assert!(
        server.hits("/ubuntu/dists/noble/InRelease") >= 1,
        "{:?}",
        server.requests()
    );
    err.to_string()
}

#[test]
fn real_noble_inrelease_verifies_and_the_missing_index_is_the_error() {
    let Some(inrelease) = shared_inrelease() else {
        return;
    };
    let e = compose_against(&inrelease, "arm64");
    assert!(
        e.contains("no Packages index for main/binary-arm64") && e.contains("Packages.xz"),
        "expected the missing index, got: {e}"
    );
    assert!(!e.to_lowercase().contains("signature"), "{e}");
}

#[test]
fn one_changed_byte_of_the_real_noble_inrelease_is_a_signature_error() {
    let Some(mut inrelease) = shared_inrelease() else {
        return;
    };
    let text = String::from_utf8(inrelease.clone()).unwrap();
    let at = text.find("Codename: noble").unwrap() + "Codename: ".len();
    inrelease[at] = b'm';
    let e = compose_against(&inrelease, "amd64");
    assert!(e.to_lowercase().contains("signature"), "{e}");
    assert!(!e.contains("no Packages index"), "{e}");
}
