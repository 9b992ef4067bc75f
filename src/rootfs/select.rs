//! Selection: which entries of a package's data.tar go into the image.
//!
//! Paths are canonicalised to merged-usr form first (`/lib/x` of a Debian package is
//! `/usr/lib/x` in the image), then matched against the package's `paths` and
//! `optional-paths` and filtered by `exclude`. A required pattern that matches nothing
//! is an error naming the package and the pattern. A directory a pattern selected only
//! as the container of entries `exclude` then dropped does not stay behind empty
//! ([`Selector::drop_emptied_dirs`]).
//!
//! A [`Selector`] sees one package's entries as `crate::deb::read_deb` streams them and
//! puts what it selects into a tree; [`merge`] joins a package's tree into the image's.
//! It never opens a `.deb` itself nor writes outside the trees' spools.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
#[cfg(test)]
use std::path::Path;

use crate::arch::Arch;
use crate::deb::{Entry, EntryKind};
use crate::manifest::Package;
use crate::rootfs::merged_usr::{is_merged_top, merged_usr_path};
use crate::rootfs::tree::{Node, NodeKind, Tree};

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
    #[error("package {package}: hard link {path} points to {target}, which is not a regular file of the package")]
    HardlinkTarget {
        /// The package name.
        package: String,
        /// Canonical image path of the link.
        path: String,
        /// Its target as written in the data.tar.
        target: String,
    },
    /// A selected entry is a device node, fifo or sparse file.
    #[error("package {package}: {path} is a {kind}; compose does not put device nodes or fifos in images, exclude it")]
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
    /// A file's content could not be spooled.
    #[error("package {package}: reading {path}: {source}")]
    Io {
        /// The package name.
        package: String,
        /// Canonical image path of the file.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Two packages giving one path name both; one package giving it twice (a hostile
/// data.tar: an entry under its own symlink) names that package once.
fn conflict_message(c: &crate::rootfs::tree::Conflict) -> String {
    if c.first == c.second {
        format!(
            "package {} gives {} twice, with different {}; refusing the package",
            c.first, c.path, c.what
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
    /// Directories a pattern selected, with the patterns that did (indices into `paths`,
    /// then `optional-paths`).
    selected_dirs: BTreeMap<String, Vec<usize>>,
    /// For every directory above an entry that a pattern matched and `exclude` dropped:
    /// the patterns that matched such entries.
    excluded_below: HashMap<String, BTreeSet<usize>>,
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
            selected_dirs: BTreeMap::new(),
            excluded_below: HashMap::new(),
        }
    }

    fn canonical(&self, path: &str) -> String {
        if self.merged_usr {
            merged_usr_path(path).unwrap_or_else(|| path.to_string())
        } else {
            path.to_string()
        }
    }

    /// The patterns matching `path`: indices into `paths`, then `optional-paths`.
    fn matching(&self, path: &str) -> Vec<usize> {
        let required = self.package.paths.len();
        let optional = self.package.optional_paths.iter().enumerate();
        (self.package.paths.iter().enumerate())
            .chain(optional.map(|(i, p)| (required + i, p)))
            .filter(|(_, p)| p.matcher.is_match(path))
            .map(|(i, _)| i)
            .collect()
    }

    /// Is `path` (canonical) selected? Marks the required patterns it satisfies, and
    /// remembers a selected directory and what `exclude` dropped beneath which one.
    fn select(&mut self, path: &str, is_dir: bool) -> bool {
        if self.keep_copyright && path == self.copyright {
            return true;
        }
        let matching = self.matching(path);
        if matching.is_empty() {
            return false;
        }
        if self
            .package
            .exclude
            .iter()
            .any(|p| p.matcher.is_match(path))
        {
            let mut end = path.len();
            while let Some(i) = path[..end].rfind('/').filter(|i| *i > 0) {
                end = i;
                (self.excluded_below.entry(path[..end].to_string()))
                    .or_default()
                    .extend(matching.iter().copied());
            }
            return false;
        }
        for &i in &matching {
            if let Some(m) = self.matched.get_mut(i) {
                *m = true;
            }
        }
        if is_dir {
            self.selected_dirs.insert(path.to_string(), matching);
        }
        true
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
        if !self.select(&path, matches!(entry.kind, EntryKind::Dir)) {
            return Ok(());
        }
        let kind = match &entry.kind {
            EntryKind::Dir => {
                self.contribution.parent_dirs.remove(&path);
                NodeKind::Dir
            }
            EntryKind::File => {
                let content = tree.spool.append(data).map_err(|source| SelectError::Io {
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
        let content = tree.spool.append(data).map_err(|source| SelectError::Io {
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

    /// After the last entry (and the second pass): remove from the package's `tree` each
    /// directory that is empty only because `exclude` dropped what a pattern matched
    /// beneath it, when every pattern that selected the directory also matched such a
    /// dropped entry (`/usr/share/zoneinfo/**` with `exclude` `/usr/share/zoneinfo/right/**`
    /// leaves no empty `right`; a pattern naming the directory itself keeps it). Parent
    /// directories left empty by such a removal go too. Deepest first, so a directory
    /// whose subdirectories all go is empty in turn.
    pub fn drop_emptied_dirs(&mut self, tree: &mut Tree) {
        if self.excluded_below.is_empty() {
            return;
        }
        let emptied: Vec<String> = (self.selected_dirs.iter().rev())
            .filter(|(dir, by)| {
                self.excluded_below
                    .get(dir.as_str())
                    .is_some_and(|below| by.iter().all(|i| below.contains(i)))
            })
            .map(|(dir, _)| dir.clone())
            .collect();
        for dir in emptied {
            if tree.has_children(&dir) || !self.owns_dir(tree, &dir) {
                continue;
            }
            tree.remove(&dir);
            // Parents made only to hold it (not selected themselves) go when empty.
            let mut end = dir.len();
            while let Some(i) = dir[..end].rfind('/').filter(|i| *i > 0) {
                end = i;
                let parent = &dir[..end];
                if self.selected_dirs.contains_key(parent)
                    || tree.has_children(parent)
                    || !self.owns_dir(tree, parent)
                {
                    break;
                }
                tree.remove(parent);
                self.contribution.parent_dirs.remove(parent);
            }
        }
    }

    /// Whether `path` in `tree` is a directory this package put there.
    fn owns_dir(&self, tree: &Tree, path: &str) -> bool {
        tree.get(path)
            .is_some_and(|n| matches!(n.kind, NodeKind::Dir) && n.origin == self.package.name)
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
/// same conflicts). File contents are copied from the package's spool.
pub fn merge(tree: &mut Tree, part: &Tree, contribution: &Contribution) -> Result<(), SelectError> {
    for (path, node) in part.given() {
        if contribution.parent_dirs.contains(path) && tree.contains(path) {
            continue;
        }
        let kind = match &node.kind {
            NodeKind::File(content) => NodeKind::File(
                tree.spool
                    .copy_from(&part.spool, content)
                    .map_err(|source| SelectError::Io {
                        package: node.origin.clone(),
                        path: path.clone(),
                        source,
                    })?,
            ),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Manifest;

    /// A manifest whose one package, `tzdata`, has `body` as its table; the keyring it
    /// names is the crate's own `Cargo.toml` (validation only checks that it exists).
    fn package(body: &str) -> Manifest {
        let text = format!(
            "[image]\nname = \"t\"\n\n[[source]]\nurl = \"http://archive.ubuntu.com/ubuntu\"\nsuites = [\"noble\"]\nkeyring = \"Cargo.toml\"\n\n[package.tzdata]\n{body}\n"
        );
        Manifest::parse(&Path::new(env!("CARGO_MANIFEST_DIR")).join("t.toml"), &text).unwrap()
    }

    fn entry(path: &str, kind: EntryKind) -> Entry {
        Entry {
            path: path.to_string(),
            kind,
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: 7,
            size: 0,
        }
    }

    /// tzdata's layout: zoneinfo with Etc/UTC, right/ with a subdirectory, and a sibling.
    const ENTRIES: &[(&str, bool)] = &[
        ("/usr", true),
        ("/usr/share", true),
        ("/usr/share/zoneinfo", true),
        ("/usr/share/zoneinfo/Etc", true),
        ("/usr/share/zoneinfo/Etc/UTC", false),
        ("/usr/share/zoneinfo/right", true),
        ("/usr/share/zoneinfo/right/Etc", true),
        ("/usr/share/zoneinfo/right/Etc/UTC", false),
        ("/usr/share/zoneinfo/right/UTC", false),
        ("/usr/share/zoneinfo/zone.tab", false),
    ];

    /// The paths of the package's tree after selecting [`ENTRIES`] with `body`.
    fn select(body: &str) -> Vec<String> {
        let m = package(body);
        let mut tree = Tree::new().unwrap();
        let mut s = Selector::new(&m.packages[0], Arch::AMD64, true, false);
        for (path, dir) in ENTRIES {
            let kind = if *dir {
                EntryKind::Dir
            } else {
                EntryKind::File
            };
            s.entry(&mut tree, &entry(path, kind), &mut &b"TZif"[..])
                .unwrap();
        }
        s.drop_emptied_dirs(&mut tree);
        s.finish().unwrap();
        tree.iter().map(|(p, _)| p.clone()).collect()
    }

    #[test]
    fn a_directory_emptied_by_exclude_goes_too() {
        let kept = select(
            "paths = [\"/usr/share/zoneinfo/**\"]\nexclude = [\"/usr/share/zoneinfo/right/**\"]",
        );
        assert_eq!(
            kept,
            [
                "/",
                "/usr",
                "/usr/share",
                "/usr/share/zoneinfo",
                "/usr/share/zoneinfo/Etc",
                "/usr/share/zoneinfo/Etc/UTC",
                "/usr/share/zoneinfo/zone.tab",
            ]
        );
        // Excluding only the files: the subdirectory right/Etc and right/ go as well.
        let kept = select(
            "paths = [\"/usr/share/zoneinfo/**\"]\nexclude = [\"/usr/share/zoneinfo/right/**/*UTC\"]",
        );
        assert!(!kept.iter().any(|p| p.contains("right")), "{kept:?}");
    }

    #[test]
    fn a_directory_another_pattern_selects_stays() {
        // Named by a pattern of its own: kept, empty.
        let kept = select(
            "paths = [\"/usr/share/zoneinfo/**\", \"/usr/share/zoneinfo/right\"]\nexclude = [\"/usr/share/zoneinfo/right/**\"]",
        );
        assert!(
            kept.contains(&"/usr/share/zoneinfo/right".to_string()),
            "{kept:?}"
        );
        assert!(
            !kept.contains(&"/usr/share/zoneinfo/right/Etc".to_string()),
            "{kept:?}"
        );
        // Something selected is still in it: kept with it.
        let kept = select(
            "paths = [\"/usr/share/zoneinfo/**\"]\nexclude = [\"/usr/share/zoneinfo/right/Etc/**\", \"/usr/share/zoneinfo/right/Etc\"]",
        );
        assert!(
            kept.contains(&"/usr/share/zoneinfo/right/UTC".to_string()),
            "{kept:?}"
        );
        assert!(
            !kept.contains(&"/usr/share/zoneinfo/right/Etc".to_string()),
            "{kept:?}"
        );
        // An empty directory without exclude is selected as before.
        let m = package("paths = [\"/var/cache/**\"]");
        let mut tree = Tree::new().unwrap();
        let mut s = Selector::new(&m.packages[0], Arch::AMD64, true, false);
        s.entry(
            &mut tree,
            &entry("/var/cache/x", EntryKind::Dir),
            &mut &b""[..],
        )
        .unwrap();
        s.drop_emptied_dirs(&mut tree);
        assert!(tree.contains("/var/cache/x"));
    }

    #[test]
    fn parents_made_for_an_emptied_directory_go_with_it() {
        // `right/**` selects right/Etc but not right itself (a parent made for it).
        let kept = select(
            "paths = [\"/usr/share/zoneinfo/right/**\", \"/usr/share/zoneinfo/Etc/UTC\"]\nexclude = [\"/usr/share/zoneinfo/right/**/*UTC\", \"/usr/share/zoneinfo/right/UTC\"]",
        );
        assert_eq!(
            kept,
            [
                "/",
                "/usr",
                "/usr/share",
                "/usr/share/zoneinfo",
                "/usr/share/zoneinfo/Etc",
                "/usr/share/zoneinfo/Etc/UTC",
            ]
        );
    }
}
