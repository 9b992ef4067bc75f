//! One architecture's root filesystem from its verified `.deb`s: each package's
//! data.tar streamed through its selector into a tree of its own (packages on all cores),
//! merged in package order into one tree as they come, then the generators and the
//! merged-usr links.
//!
//! Reads only `.deb`s already in the cache (verified by [`crate::repo`]); never fetches,
//! never writes outside the trees' unlinked spool files.

use std::path::{Path, PathBuf};

use crate::arch::Arch;
use crate::deb::{self, DebError};
use crate::manifest::Manifest;
use crate::parallel::ordered_parallel;
use crate::repo::Resolved;
use crate::rootfs::generate::{Captured, GenerateError, Generators};
use crate::rootfs::linkage::Shipped;
use crate::rootfs::merged_usr;
use crate::rootfs::select::{self, SelectError, Selector};
use crate::rootfs::tree::Tree;

/// Why one architecture's tree could not be composed.
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    /// A tree's spool (temporary file) could not be created.
    #[error("cannot create the spool: {0}")]
    Spool(std::io::Error),
    /// A cached `.deb` could not be opened.
    #[error("cannot open cached {}: {source}", .path.display())]
    Open {
        /// The `.deb` in the cache.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An entry a generator captures could not be read from its data.tar.
    #[error("{what}: reading {path}: {source}")]
    Read {
        /// The package's URL.
        what: String,
        /// The entry's path in the data.tar.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A `.deb` could not be read.
    #[error(transparent)]
    Deb(#[from] DebError),
    /// Selection, merging or the merged-usr links failed.
    #[error(transparent)]
    Select(#[from] SelectError),
    /// A generator failed.
    #[error(transparent)]
    Generate(#[from] GenerateError),
}

/// The composed tree of one architecture.
pub struct Composed {
    /// The image's file system, generated files and merged-usr links included.
    pub tree: Tree,
    /// Setuid/setgid files, for the build summary.
    pub setid: Vec<String>,
    /// Every file of every package, selected or not: what a linkage miss can suggest.
    pub shipped: Shipped,
}

/// One package's data.tar streamed through its selector into a tree of its own.
struct PackagePart {
    tree: Tree,
    contribution: select::Contribution,
    shipped: Shipped,
    captured: Captured,
    control: deb::Control,
}

/// Select one package's files (from its cached, verified .deb) into its own tree.
fn select_package(
    manifest: &Manifest,
    generators: &Generators,
    arch: Arch,
    resolved: &Resolved,
    path: &Path,
) -> Result<PackagePart, ComposeError> {
    let name = &resolved.name;
    let spec = manifest
        .packages
        .iter()
        .find(|p| &p.name == name)
        .expect("resolved packages come from the manifest");
    let mut tree = Tree::new().map_err(ComposeError::Spool)?;
    let mut captured = Captured::default();
    let mut shipped = Shipped::new(manifest.image.merged_usr);
    let open = || {
        std::fs::File::open(path)
            .map(|f| std::io::BufReader::with_capacity(256 * 1024, f))
            .map_err(|source| ComposeError::Open {
                path: path.to_path_buf(),
                source,
            })
    };
    let what = resolved.url.clone();
    let mut selector = Selector::new(
        spec,
        arch,
        manifest.image.merged_usr,
        manifest.image.copyright,
    );
    let control = deb::read_deb(open()?, &what, |entry, data| -> Result<(), ComposeError> {
        shipped.record(name, entry);
        if generators.captures(name, entry) {
            let mut bytes = Vec::new();
            data.read_to_end(&mut bytes)
                .map_err(|source| ComposeError::Read {
                    what: what.clone(),
                    path: entry.path.clone(),
                    source,
                })?;
            selector.entry(&mut tree, entry, &mut &bytes[..])?;
            captured.keep(entry, bytes);
        } else {
            selector.entry(&mut tree, entry, data)?;
        }
        Ok(())
    })?;
    // Selected hard links whose target was not selected: a second pass copies it.
    let orphans = selector.orphan_targets();
    if !orphans.is_empty() {
        deb::read_deb(open()?, &what, |entry, data| -> Result<(), ComposeError> {
            if orphans.contains(&entry.path) {
                selector.orphan_target(&mut tree, entry, data)?;
            }
            Ok(())
        })?;
    }
    selector.drop_emptied_dirs(&mut tree);
    Ok(PackagePart {
        tree,
        contribution: selector.finish()?,
        shipped,
        captured,
        control,
    })
}

/// The tree of `packages` (with their cached `.deb`s at `debs`, in the same order) for
/// `arch`: packages read on all cores and merged here in package order, so the first
/// failure in package order is the one reported, whichever thread saw it; then the
/// generators, the merged-usr links, and last the embedded SBOM.
pub fn compose_tree(
    manifest: &Manifest,
    generators: &Generators,
    arch: Arch,
    packages: &[Resolved],
    debs: &[PathBuf],
) -> Result<Composed, ComposeError> {
    let mut tree = Tree::new().map_err(ComposeError::Spool)?;
    let mut captured = Captured::default();
    let mut setid = Vec::new();
    let mut shipped = Shipped::new(manifest.image.merged_usr);
    ordered_parallel(
        packages.len(),
        |i| select_package(manifest, generators, arch, &packages[i], &debs[i]),
        |i, part| -> Result<(), ComposeError> {
            let part = part?;
            select::merge(&mut tree, &part.tree, &part.contribution)?;
            drop(part.tree);
            shipped.absorb(part.shipped);
            captured.absorb(part.captured);
            setid.extend(part.contribution.setid);
            generators.after_package(&mut tree, &packages[i], &part.control)?;
            Ok(())
        },
    )?;
    generators.after_packages(&mut tree, packages, &captured)?;
    if manifest.image.merged_usr {
        merged_usr::add_links(&mut tree, arch).map_err(SelectError::from)?;
    }
    generators.last(&mut tree, packages)?;
    Ok(Composed {
        tree,
        setid,
        shipped,
    })
}
