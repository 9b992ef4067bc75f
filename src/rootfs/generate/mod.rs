//! What maintainer scripts would have made, and what the manifest adds by hand: one file
//! per generator, run by [`Generators`] in one fixed sequence.
//!
//! - while packages stream: [`Generators::captures`] says which entries' bytes a
//!   generator keeps (today the Mozilla certificates for [`ca_bundle`]);
//! - after each package is merged, in package order: [`dpkg_status`];
//! - after all packages: [`ca_bundle`], [`passwd`], then the manifest's [`entries`];
//! - last, when the tree is otherwise complete: the embedded SPDX document ([`sbom`]).
//!
//! A new generator is a file here and a line in that sequence (and its switch in
//! `[generate]`, `crate::manifest::Generate`). Generators only add to the tree; they
//! never fetch, and only `[[file]] source` reads the host.

use std::collections::BTreeMap;

use crate::arch::Arch;
use crate::deb::{Control, Entry};
use crate::manifest::Manifest;
use crate::repo::Resolved;
use crate::rootfs::tree::{Conflict, Node, NodeKind, Tree};
use crate::sbom::SbomError;

pub mod ca_bundle;
pub mod dpkg_status;
pub mod entries;
pub mod passwd;
pub mod sbom;

pub use ca_bundle::{CA_BUNDLE, MOZILLA_CERTS};

/// Why a generator failed.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// A manifest `[[file]]`'s `source` on the host cannot be opened.
    #[error("{location}: [[file]] {path}: cannot read source {source_path}: {source}")]
    Source {
        /// `file:line:column` of the entry in the manifest.
        location: String,
        /// The image path of the file.
        path: String,
        /// The host path, `{arch}` replaced.
        source_path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// `[generate] ca-bundle` is on but `ca-certificates` is not declared for the
    /// architecture, or shipped no Mozilla certificate.
    #[error("[generate] ca-bundle needs the package ca-certificates ({detail}); add [package.ca-certificates] with paths = []")]
    NoCertificates {
        /// Which of the two.
        detail: String,
    },
    /// A generated entry conflicts with one in the tree.
    #[error("{0}")]
    Conflict(#[from] Conflict),
    /// Generated or host content could not be written to the spool.
    #[error("writing generated content: {0}")]
    Io(#[from] std::io::Error),
    /// The embedded SBOM could not be made.
    #[error(transparent)]
    Sbom(#[from] SbomError),
}

fn node(kind: NodeKind, mode: u32, uid: u32, gid: u32, origin: &str) -> Node {
    Node {
        kind,
        mode,
        uid,
        gid,
        mtime: 0,
        origin: origin.to_string(),
    }
}

fn add_file(
    tree: &mut Tree,
    path: &str,
    bytes: &[u8],
    mode: u32,
    origin: &str,
) -> Result<(), GenerateError> {
    let content = tree.spool.append_bytes(bytes)?;
    tree.replace(path, node(NodeKind::File(content), mode, 0, 0, origin))?;
    Ok(())
}

/// What the generators kept of the packages while they streamed (merged in package
/// order, like the packages themselves).
#[derive(Debug, Default)]
pub struct Captured {
    /// The Mozilla certificates (PEM by package path), from ca-certificates only.
    certs: BTreeMap<String, Vec<u8>>,
}

impl Captured {
    /// Keep the bytes of `entry` (one that [`Generators::captures`] asked for).
    pub fn keep(&mut self, entry: &Entry, bytes: Vec<u8>) {
        self.certs.insert(entry.path.clone(), bytes);
    }

    /// Add what a later package's generators kept.
    pub fn absorb(&mut self, other: Captured) {
        self.certs.extend(other.certs);
    }
}

/// The generators of one architecture's tree, as the manifest switches them on.
pub struct Generators<'a> {
    manifest: &'a Manifest,
    arch: Arch,
    /// The image tag and epoch, which the embedded SBOM names.
    tag: &'a str,
    epoch: u64,
}

impl<'a> Generators<'a> {
    /// The generators for `arch`; `tag` and `epoch` (seconds since the Unix epoch) are
    /// what the embedded SBOM names.
    pub fn new(manifest: &'a Manifest, arch: Arch, tag: &'a str, epoch: u64) -> Self {
        Generators {
            manifest,
            arch,
            tag,
            epoch,
        }
    }

    /// Whether a generator needs the bytes of `entry` of `package` (read once into
    /// memory; the selector gets the same bytes).
    pub fn captures(&self, package: &str, entry: &Entry) -> bool {
        self.manifest.generate.ca_bundle && ca_bundle::captures(package, entry)
    }

    /// After `package` has been merged into `tree` (in package order).
    pub fn after_package(
        &self,
        tree: &mut Tree,
        package: &Resolved,
        control: &Control,
    ) -> Result<(), GenerateError> {
        if self.manifest.generate.dpkg_status {
            dpkg_status::generate(
                tree,
                &package.name,
                &control.control,
                control.md5sums.as_deref(),
            )?;
        }
        Ok(())
    }

    /// After every package: the CA bundle, the accounts, the manifest's entries.
    pub fn after_packages(
        &self,
        tree: &mut Tree,
        packages: &[Resolved],
        captured: &Captured,
    ) -> Result<(), GenerateError> {
        let m = self.manifest;
        if m.generate.ca_bundle {
            let declared = packages.iter().any(|p| p.name == ca_bundle::PACKAGE);
            ca_bundle::generate(tree, self.arch, declared, &captured.certs)?;
        }
        if m.generate.passwd {
            passwd::generate(tree, m)?;
        }
        entries::generate(tree, m, self.arch)?;
        Ok(())
    }

    /// Last, when nothing else will change the tree: the embedded SBOM.
    pub fn last(&self, tree: &mut Tree, packages: &[Resolved]) -> Result<(), GenerateError> {
        if self.manifest.generate.sbom {
            sbom::generate(
                tree,
                &self.manifest.image.name,
                self.tag,
                self.arch,
                packages,
                self.epoch,
            )?;
        }
        Ok(())
    }
}
