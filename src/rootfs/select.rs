//! Selection: which entries of a package's data.tar go into the image.
//!
//! Paths are canonicalised to merged-usr form first (`/lib/x` of a Debian package is
//! `/usr/lib/x` in the image), then matched against the package's `paths` and
//! `optional-paths` and filtered by `exclude`. A required pattern that matches nothing
//! is an error naming the package and the pattern.
//!
//! A [`Selector`] sees one package's entries as `crate::deb::read_deb` streams them and
//! puts what it selects into a tree; [`merge`] joins a package's tree into the image's.
//! It never opens a `.deb` itself nor writes outside the trees' spools.

use std::collections::{BTreeSet, HashMap};
use std::io::Read;

use crate::arch::Arch;
use crate::deb::{Entry, EntryKind};
use crate::manifest::Package;
use crate::rootfs::merged_usr::{is_merged_top, merged_usr_path};
use crate::rootfs::tree::{Node, NodeKind, SpoolError, Tree};
use crate::text::shown;

/// What a package contributed.
#[derive(Debug, Default, Clone)]
pub struct Contribution {
    /// Regular files selected.
    pub files: u64,
    /// Bytes of those files.
    pub bytes: u64,
    /// Setuid/setgid files, listed in the build summary.
    pub setid: Vec<String>,
    /// Directories the selector made only as parents of selected entries (with the
    /// package's own metadata for them): when the package's tree is merged into the
    /// image's, an earlier package's entry at such a path is kept, as if the packages
    /// had been read one after the other into one tree.
    pub parent_dirs: BTreeSet<String>,
}

/// Why a package's entries could not be selected or merged.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    /// A pattern of the package's `paths` matched no entry.
    #[error("package {package}: pattern `{pattern}` ({location}) matched no file for {arch}; check the path with `dpkg-deb -c` on the package, or move it to optional-paths")]
    Unmatched {
        /// The package name.
        package: String,
        /// The pattern as written.
        pattern: String,
        /// `file:line:column` of the pattern in the manifest.
        location: String,
        /// The architecture being built.
        arch: Arch,
    },
    /// A selected hard link's target is not a regular file of the package's data.tar.
    #[error("package {package}: hard link {} points to {}, which is not a regular file of the package", shown(.path), shown(.target))]
    HardlinkTarget {
        /// The package name.
        package: String,
        /// Canonical image path of the link.
        path: String,
        /// Its target as written in the data.tar.
        target: String,
    },
    /// A selected entry is a device node, fifo or sparse file.
    #[error("package {package}: {} is a {kind}; compose does not put device nodes or fifos in images, exclude it", shown(.path))]
    Special {
        /// The package name.
        package: String,
        /// Canonical image path of the entry.
        path: String,
        /// What it is, e.g. `character device`.
        kind: &'static str,
    },
    /// Two entries claim one path ([`Tree::insert`]'s rules).
    #[error("{}", conflict_message(.0))]
    Conflict(#[from] crate::rootfs::tree::Conflict),
    /// A selected file could not be added to the spool: reading it from the package
    /// failed, or writing the spool did (the error then names the spool's directory).
    #[error("package {package}: {}", spool_message(.path, .source))]
    Spool {
        /// The package name.
        package: String,
        /// Canonical image path of the file.
        path: String,
        /// What failed.
        source: SpoolError,
    },
}

/// Reading a selected file failed (naming it), or writing the spool did (naming the
/// spool, not the file: the file is fine, the temporary directory is full).
fn spool_message(path: &str, e: &SpoolError) -> String {
    match e {
        SpoolError::Read(e) => format!("reading {}: {e}", shown(path)),
        SpoolError::Write { .. } => e.to_string(),
    }
}

/// Two packages giving one path name both; one package giving it twice (a hostile
/// data.tar: an entry under its own symlink) names that package once.
fn conflict_message(c: &crate::rootfs::tree::Conflict) -> String {
    if c.first == c.second {
        format!(
            "package {} gives {} twice, with different {}; refusing the package",
            c.first,
            shown(&c.path),
            c.what
        )
    } else {
        format!("two packages give one path: {c}")
    }
}

#[derive(Debug, Clone, Copy)]
struct DirMeta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: u64,
}

/// Selection state for one package while its data.tar streams by.
pub struct Selector<'a> {
    package: &'a Package,
    arch: Arch,
    merged_usr: bool,
    copyright: String,
    keep_copyright: bool,
    matched: Vec<bool>,
    dirs: HashMap<String, DirMeta>,
    contribution: Contribution,
    /// Selected hard links whose target was not selected: (canonical path, the link's
    /// entry). Their content is taken from the target in a second pass.
    orphans: Vec<(String, Entry)>,
}

impl<'a> Selector<'a> {
    /// A selector for `package` built for `arch`; `merged_usr` canonicalises paths to
    /// merged-usr form, `keep_copyright` also selects `/usr/share/doc/<package>/copyright`.
    pub fn new(package: &'a Package, arch: Arch, merged_usr: bool, keep_copyright: bool) -> Self {
        Selector {
            package,
            arch,
            merged_usr,
            copyright: format!("/usr/share/doc/{}/copyright", package.name),
            keep_copyright,
            matched: vec![false; package.paths.len()],
            dirs: HashMap::new(),
            contribution: Contribution::default(),
            orphans: Vec::new(),
        }
    }

    fn canonical(&self, path: &str) -> String {
        if self.merged_usr {
            merged_usr_path(path).unwrap_or_else(|| path.to_string())
        } else {
            path.to_string()
        }
    }

    /// Is `path` (canonical) selected? Marks the required patterns it satisfies.
    fn select(&mut self, path: &str) -> bool {
        if self.keep_copyright && path == self.copyright {
            return true;
        }
        if self
            .package
            .exclude
            .iter()
            .any(|p| p.matcher.is_match(path))
        {
            return false;
        }
        let mut hit = false;
        for (i, p) in self.package.paths.iter().enumerate() {
            if p.matcher.is_match(path) {
                self.matched[i] = true;
                hit = true;
            }
        }
        hit || self
            .package
            .optional_paths
            .iter()
            .any(|p| p.matcher.is_match(path))
    }

    /// Offer one entry of the package's data.tar.
    pub fn entry(
        &mut self,
        tree: &mut Tree,
        entry: &Entry,
        data: &mut dyn Read,
    ) -> Result<(), SelectError> {
        if entry.path == "/" {
            return Ok(());
        }
        // The merged-usr top-level links are the image's own (added once, for all).
        if self.merged_usr {
            let rest = &entry.path[1..];
            if is_merged_top(rest) && !matches!(entry.kind, EntryKind::Dir | EntryKind::File) {
                return Ok(());
            }
        }
        let path = self.canonical(&entry.path);
        if let EntryKind::Dir = entry.kind {
            self.dirs.insert(
                path.clone(),
                DirMeta {
                    mode: entry.mode,
                    uid: entry.uid,
                    gid: entry.gid,
                    mtime: entry.mtime,
                },
            );
        }
        if !self.select(&path) {
            return Ok(());
        }
        let kind = match &entry.kind {
            EntryKind::Dir => {
                self.contribution.parent_dirs.remove(&path);
                NodeKind::Dir
            }
            EntryKind::File => {
                let content =
                    tree.spool
                        .append_from(data)
                        .map_err(|source| SelectError::Spool {
                            package: self.package.name.clone(),
                            path: path.clone(),
                            source,
                        })?;
                self.contribution.files += 1;
                self.contribution.bytes += content.len;
                if entry.mode & 0o6000 != 0 {
                    self.contribution.setid.push(path.clone());
                }
                NodeKind::File(content)
            }
            EntryKind::Symlink(target) => NodeKind::Symlink(target.clone()),
            EntryKind::Hardlink(target) => {
                let canonical_target = self.canonical(target);
                match tree.get(&canonical_target) {
                    Some(Node {
                        kind: NodeKind::File(_),
                        origin,
                        ..
                    }) if origin == &self.package.name => NodeKind::Hardlink(canonical_target),
                    // The target is not selected: this path becomes a copy of it (second pass).
                    _ => {
                        self.orphans.push((path, entry.clone()));
                        return Ok(());
                    }
                }
            }
            EntryKind::Other(kind) => {
                return Err(SelectError::Special {
                    package: self.package.name.clone(),
                    path,
                    kind,
                })
            }
        };
        self.insert_parents(tree, &path)?;
        tree.insert(
            &path,
            Node {
                kind,
                mode: entry.mode & 0o7777,
                uid: entry.uid,
                gid: entry.gid,
                mtime: entry.mtime,
                origin: self.package.name.clone(),
            },
        )?;
        Ok(())
    }

    /// Give missing parents the package's own directory metadata where it has one.
    fn insert_parents(&mut self, tree: &mut Tree, path: &str) -> Result<(), SelectError> {
        let mut end = 0;
        while let Some(i) = path[end + 1..].find('/') {
            end += 1 + i;
            let parent = &path[..end];
            if tree.contains(parent) {
                continue;
            }
            if let Some(m) = self.dirs.get(parent) {
                tree.insert(
                    parent,
                    Node {
                        kind: NodeKind::Dir,
                        mode: m.mode & 0o7777,
                        uid: m.uid,
                        gid: m.gid,
                        mtime: m.mtime,
                        origin: self.package.name.clone(),
                    },
                )?;
                self.contribution.parent_dirs.insert(parent.to_string());
            }
        }
        Ok(())
    }

    /// Package paths (as in the data.tar) whose content a second pass must supply:
    /// targets of selected hard links that were not selected themselves.
    pub fn orphan_targets(&self) -> std::collections::BTreeSet<String> {
        self.orphans
            .iter()
            .filter_map(|(_, e)| match &e.kind {
                EntryKind::Hardlink(t) => Some(t.clone()),
                _ => None,
            })
            .collect()
    }

    /// Second pass over the data.tar: `entry` is a hard-link target that was not
    /// selected. The first selected link to it gets its content as a regular file (with
    /// the link's own path and metadata); further links become hard links to that one.
    pub fn orphan_target(
        &mut self,
        tree: &mut Tree,
        entry: &Entry,
        data: &mut dyn Read,
    ) -> Result<(), SelectError> {
        if !matches!(entry.kind, EntryKind::File) {
            return Ok(());
        }
        let links: Vec<(String, Entry)> = self
            .orphans
            .iter()
            .filter(|(_, e)| matches!(&e.kind, EntryKind::Hardlink(t) if t == &entry.path))
            .cloned()
            .collect();
        let Some(((first, first_entry), rest)) = links.split_first() else {
            return Ok(());
        };
        let content = tree
            .spool
            .append_from(data)
            .map_err(|source| SelectError::Spool {
                package: self.package.name.clone(),
                path: first.clone(),
                source,
            })?;
        self.contribution.files += 1;
        self.contribution.bytes += content.len;
        // A hard link shares its target's inode: the target's mode and owners.
        let node = |kind| Node {
            kind,
            mode: entry.mode & 0o7777,
            uid: entry.uid,
            gid: entry.gid,
            mtime: first_entry.mtime.max(entry.mtime),
            origin: self.package.name.clone(),
        };
        if entry.mode & 0o6000 != 0 {
            self.contribution.setid.push(first.clone());
        }
        self.insert_parents(tree, first)?;
        tree.insert(first, node(NodeKind::File(content)))?;
        for (path, _) in rest {
            self.insert_parents(tree, path)?;
            tree.insert(path, node(NodeKind::Hardlink(first.clone())))?;
        }
        self.orphans
            .retain(|(p, _)| p != first && !rest.iter().any(|(r, _)| r == p));
        Ok(())
    }

    /// After the last entry: every required pattern must have matched.
    pub fn finish(self) -> Result<Contribution, SelectError> {
        if let Some((path, entry)) = self.orphans.first() {
            let target = match &entry.kind {
                EntryKind::Hardlink(t) => t.clone(),
                _ => String::new(),
            };
            return Err(SelectError::HardlinkTarget {
                package: self.package.name.clone(),
                path: path.clone(),
                target,
            });
        }
        if let Some(i) = self.matched.iter().position(|m| !m) {
            let p = &self.package.paths[i];
            return Err(SelectError::Unmatched {
                package: self.package.name.clone(),
                pattern: p.text.clone(),
                location: p.location.to_string(),
                arch: self.arch,
            });
        }
        Ok(self.contribution)
    }
}

/// Merge one package's tree (selected on its own, possibly on another thread) into
/// the image's `tree`. Packages are merged in the order they would have been read, and
/// the result is the tree reading them one after the other would give: a directory the
/// package's selector made only as a parent does not displace an entry an earlier
/// package put there; every other entry is inserted with [`Tree::insert`]'s rules (the
/// same conflicts). File contents are moved out of the package's spool
/// ([`crate::rootfs::tree::Spool::move_from`]), so `TMPDIR` holds the selected bytes
/// about once; a file identical to one already at its path is not moved at all.
pub fn merge(tree: &mut Tree, part: Tree, contribution: &Contribution) -> Result<(), SelectError> {
    for (path, node) in part.given() {
        if contribution.parent_dirs.contains(path) && tree.contains(path) {
            continue;
        }
        let kind = match &node.kind {
            NodeKind::File(content) => match tree.get(path) {
                // The same bytes are there already: Tree::insert keeps them (or reports
                // a difference of modes or owners).
                Some(Node {
                    kind: NodeKind::File(there),
                    ..
                }) if there.sha256 == content.sha256 => NodeKind::File(*there),
                _ => NodeKind::File(tree.spool.move_from(&part.spool, content).map_err(
                    |source| SelectError::Spool {
                        package: node.origin.clone(),
                        path: path.clone(),
                        source,
                    },
                )?),
            },
            other => other.clone(),
        };
        tree.insert(
            path,
            Node {
                kind,
                ..node.clone()
            },
        )?;
    }
    Ok(())
}
