//! One architecture's root filesystem from its verified `.deb`s: each package's
//! data.tar streamed through its selector into a tree of its own (packages on all cores,
//! each as soon as its `.deb` arrives), merged in package order into one tree as they
//! come, then the generators and the merged-usr links.
//!
//! Reads only `.deb`s already in the cache (verified by [`crate::repo`]), handed over
//! one by one by the caller; never fetches and knows nothing of how they came, never
//! writes outside the trees' unlinked spool files.

use std::path::{Path, PathBuf};

use crate::arch::Arch;
use crate::deb::{self, DebError};
use crate::manifest::Manifest;
use crate::parallel::ordered_parallel_as_ready;
use crate::repo::Resolved;
use crate::rootfs::generate::{Captured, GenerateError, Generators};
use crate::rootfs::linkage::Shipped;
use crate::rootfs::merged_usr;
use crate::rootfs::select::{self, SelectError, Selector};
use crate::rootfs::tree::Tree;
use crate::text::shown;

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
    #[error("{what}: reading {}: {source}", shown(.path))]
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
    /// A `.deb`'s control file cannot be read strictly ([`crate::apt::control`]).
    #[error("{what}: its control file cannot be trusted: {}; refusing the package", shown(.reason))]
    Control {
        /// The package's URL.
        what: String,
        /// Why, one phrase.
        reason: String,
    },
    /// A `.deb`'s control file names another package, version or architecture than
    /// its verified pin (the signed index's stanza, or the lock made from it).
    #[error("{what}: its control file says {}, its signed index entry says {}; the .deb is not the package the index lists, refusing it", shown(.control), shown(.pinned))]
    Identity {
        /// The package's URL.
        what: String,
        /// `package version (architecture)` as the control file says.
        control: String,
        /// `package version (architecture)` as the pin says.
        pinned: String,
    },
    /// The caller's `.deb`s stopped coming before this package's (its download failed:
    /// the caller reports that failure instead).
    #[error(
        "{what}: its verified .deb never came; the download of it or of another package failed"
    )]
    NotArrived {
        /// The package's URL.
        what: String,
    },
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
    check_identity(&control.control, resolved, &what)?;
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

/// The `.deb` must be the package its pin names: its control file's `Package`,
/// `Version` and `Architecture` are the pin's (which came from the signed index, directly
/// or through the lock). The control file then goes to `status.d` as it is
/// ([`crate::rootfs::generate::dpkg_status`]): what scanners read is what was verified.
fn check_identity(control: &[u8], pin: &Resolved, what: &str) -> Result<(), ComposeError> {
    let id = crate::apt::control::identity(control).map_err(|reason| ComposeError::Control {
        what: what.to_string(),
        reason,
    })?;
    if (&id.package, &id.version, &id.architecture) == (&pin.name, &pin.version, &pin.architecture)
    {
        return Ok(());
    }
    Err(ComposeError::Identity {
        what: what.to_string(),
        control: format!("{} {} ({})", id.package, id.version, id.architecture),
        pinned: format!("{} {} ({})", pin.name, pin.version, pin.architecture),
    })
}

/// The tree of `packages` for `arch`, from their cached, verified `.deb`s as `debs`
/// yields them: `(i, path)` for `packages[i]`, in any order, as each becomes available
/// (it may block between them). Each package is selected on a free core as soon as its
/// `.deb` is there, and merged here in package order, so the tree and the first failure
/// reported (in package order, whichever thread saw it) depend neither on the order of
/// arrival nor on the threads; then the generators, the merged-usr links, and last the
/// embedded SBOM. When `debs` ends before yielding every package (a download failed),
/// the work stops and [`ComposeError::NotArrived`] names the first package missing
/// (unless a merge failed first): the caller reports the download's failure. Returns
/// once `debs` has ended.
pub fn compose_tree(
    manifest: &Manifest,
    generators: &Generators,
    arch: Arch,
    packages: &[Resolved],
    debs: impl Iterator<Item = (usize, PathBuf)> + Send,
) -> Result<Composed, ComposeError> {
    let mut tree = Tree::new().map_err(ComposeError::Spool)?;
    let mut captured = Captured::default();
    let mut setid = Vec::new();
    let mut shipped = Shipped::new(manifest.image.merged_usr);
    ordered_parallel_as_ready(
        packages.len(),
        debs,
        |i, deb| {
            let part = select_package(manifest, generators, arch, &packages[i], &deb);
            crate::timings::mark(format_args!("{arch}: selected {}", packages[i].name));
            part
        },
        |i, part| -> Result<(), ComposeError> {
            let part = part?;
            select::merge(&mut tree, part.tree, &part.contribution)?;
            shipped.absorb(part.shipped);
            captured.absorb(part.captured);
            setid.extend(part.contribution.setid);
            generators.after_package(&mut tree, &packages[i], &part.control)?;
            Ok(())
        },
        |i| ComposeError::NotArrived {
            what: packages[i].url.clone(),
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
