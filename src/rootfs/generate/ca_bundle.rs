//! `[generate] ca-bundle`: `/etc/ssl/certs/ca-certificates.crt` as `update-ca-certificates`
//! would have made it, from the Mozilla certificates of the `ca-certificates` package
//! (captured while that package streams), plus OpenSSL's `cert.pem` and `certs` links.
//!
//! Reads nothing but the captured certificates; never touches the host.

use std::collections::BTreeMap;

use super::{add_file, node, GenerateError};
use crate::arch::Arch;
use crate::deb::{Entry, EntryKind};
use crate::rootfs::tree::{NodeKind, Tree};

/// Where the generator reads certificates from, in the ca-certificates package.
pub const MOZILLA_CERTS: &str = "/usr/share/ca-certificates/mozilla/";
/// The bundle it writes.
pub const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// The package that ships the certificates.
pub const PACKAGE: &str = "ca-certificates";

/// Whether the bytes of `entry` of `package` go into the bundle.
pub fn captures(package: &str, entry: &Entry) -> bool {
    package == PACKAGE
        && matches!(entry.kind, EntryKind::File)
        && entry.path.starts_with(MOZILLA_CERTS)
        && entry.path.ends_with(".crt")
}

/// The bundle (certificates in byte order of their package path, as
/// `update-ca-certificates` concatenates them) and the OpenSSL links. `declared`: whether
/// the manifest declares the package for this architecture.
pub fn generate(
    tree: &mut Tree,
    arch: Arch,
    declared: bool,
    certs: &BTreeMap<String, Vec<u8>>,
) -> Result<(), GenerateError> {
    if !declared {
        return Err(GenerateError::NoCertificates {
            detail: format!("it is not declared for {arch}"),
        });
    }
    if certs.is_empty() {
        return Err(GenerateError::NoCertificates {
            detail: format!("no {MOZILLA_CERTS}*.crt was found in it"),
        });
    }
    let mut bundle = Vec::new();
    for pem in certs.values() {
        bundle.extend_from_slice(pem);
        if !pem.ends_with(b"\n") {
            bundle.push(b'\n');
        }
    }
    add_file(tree, CA_BUNDLE, &bundle, 0o644, "ca-bundle")?;
    for (path, target) in [
        ("/usr/lib/ssl/cert.pem", CA_BUNDLE),
        ("/usr/lib/ssl/certs", "/etc/ssl/certs"),
    ] {
        tree.insert(
            path,
            node(NodeKind::Symlink(target.into()), 0o777, 0, 0, "ca-bundle"),
        )?;
    }
    Ok(())
}
