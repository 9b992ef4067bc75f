//! `[generate] dpkg-status` (on by default): distroless scanner metadata,
//! `/var/lib/dpkg/status.d/<pkg>` (the package's control file) and `<pkg>.md5sums`.
//!
//! The control file is written as the package ships it, so that scanners read every
//! field they know; it is only given here after `crate::rootfs::compose` has checked
//! that it is one strict paragraph whose `Package`, `Version` and `Architecture` are
//! the package's verified pin (the signed index's stanza, or the lock made from it).
//!
//! Runs once per package, in package order, as each is merged into the tree.

use super::{add_file, GenerateError};
use crate::rootfs::tree::Tree;

/// Where scanners (Syft, Trivy, Grype) look for one file per package.
pub const STATUS_D: &str = "/var/lib/dpkg/status.d";

/// `status.d/<package>` = `control`, and `status.d/<package>.md5sums` when it has one.
pub fn generate(
    tree: &mut Tree,
    package: &str,
    control: &[u8],
    md5sums: Option<&[u8]>,
) -> Result<(), GenerateError> {
    add_file(
        tree,
        &format!("{STATUS_D}/{package}"),
        control,
        0o644,
        package,
    )?;
    if let Some(sums) = md5sums {
        add_file(
            tree,
            &format!("{STATUS_D}/{package}.md5sums"),
            sums,
            0o644,
            package,
        )?;
    }
    Ok(())
}
