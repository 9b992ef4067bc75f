//! Test fixtures shared by the manifest's modules: a valid manifest exercising every
//! section, and helpers to parse variants of it. Test-only; the keyring it names is the
//! crate's own `Cargo.toml`, the one file read.

use std::path::{Path, PathBuf};

use super::{Manifest, ManifestError};

pub(super) const GOOD: &str = r#"
[image]
name = "noble-tiny"
architectures = ["amd64", "linux/arm64"]
user = "cnb"
workdir = "/home/cnb"
env = { SSL_CERT_FILE = "/etc/ssl/certs/ca-certificates.crt" }

[[source]]
url = "http://archive.ubuntu.com/ubuntu/"
arch-url = { arm64 = "http://ports.ubuntu.com/ubuntu-ports" }
suites = ["noble", "noble-updates"]
keyring = "Cargo.toml"

[package.libc6]
paths = ["/usr/lib/*-linux-gnu/libc.so.6"]
[package."libstdc++6"]
paths = ["/usr/lib/*-linux-gnu/libstdc++.so.6*"]
arch = ["amd64"]
[package.ca-certificates]
paths = []

[[user]]
name = "cnb"
uid = 1002
gid = 1001
home = "/home/cnb"

[[dir]]
path = "/tmp"
mode = "1777"
"#;

pub(super) fn manifest_path() -> PathBuf {
    // Anchored at the crate root so `keyring = "Cargo.toml"` resolves to a real file.
    Path::new(env!("CARGO_MANIFEST_DIR")).join("test.toml")
}

pub(super) fn parse(text: &str) -> Result<Manifest, ManifestError> {
    Manifest::parse(&manifest_path(), text)
}

pub(super) fn err(text: &str) -> ManifestError {
    parse(text).unwrap_err()
}

pub(super) fn with(extra: &str) -> String {
    format!("{GOOD}\n{extra}")
}
