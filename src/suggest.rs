//! From a library the linkage check found missing to the `[package.X]` block that ships
//! it (docs/suggest.md): candidate packages from the verified indexes (the Debian
//! library package naming rule applied to the SONAME, `Provides`, and the library
//! packages the `Depends` of the declared packages and of the packages found name),
//! each confirmed by the file list of its verified `.deb`, then the block to add (the
//! library and its symbolic link chain, [`pattern_for`] patterns) and, level by level up
//! to [`MAX_DEPTH`], what that library needs in turn.
//!
//! It only finds and words: it reads indexes and `.deb`s through [`Repository`] (so
//! nothing unverified is read), never writes the manifest (`crate::fix` does) and never
//! changes the tree it checks against.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

use crate::apt::packages::PackageEntry;
use crate::arch::Arch;
use crate::error::Result;
use crate::manifest::Manifest;
use crate::repo::{Repository, Resolved};
use crate::rootfs::compose::ComposeError;
use crate::rootfs::linkage::{self, pattern_for, Shipped, ShippedFile};
use crate::rootfs::merged_usr::merged_usr_path;
use crate::rootfs::tree::Tree;

/// Levels of "what that library needs" followed below the names first missing.
pub const MAX_DEPTH: usize = 4;

/// Candidate `.deb`s read per level: far more than one missing name ever has.
pub const MAX_CANDIDATES: usize = 32;

/// Bytes of the libraries of one `.deb` held at once to learn what they need (each is
/// read whole: the dynamic section may be anywhere); the libraries beyond are named
/// without their needs, so a hostile package cannot make the search hold more.
const MAX_LIBRARY_BYTES: u64 = 256 << 20;

/// Symbolic links followed from a library's name to its file.
const MAX_CHAIN: usize = 8;

/// The package names the Debian library packaging rule (Debian Policy 8.1) gives a
/// SONAME, with the `t64` rename of the 64-bit `time_t` transition (Ubuntu 24.04,
/// Debian 13): `libfoo.so.1` → `libfoo1`, `libfoo1t64`; `libfoo-2.so.0` → `libfoo-2-0`;
/// `libgcc_s.so.1` → `libgcc-s1`; `libstdc++.so.6` → `libstdc++6`. Empty for a name
/// without a version after `.so`.
pub fn package_names(soname: &str) -> Vec<String> {
    let Some((stem, version)) = soname.split_once(".so.") else {
        return Vec::new();
    };
    if stem.is_empty() || version.is_empty() {
        return Vec::new();
    }
    let stem = stem.to_ascii_lowercase().replace('_', "-");
    let name = if stem.ends_with(|c: char| c.is_ascii_digit()) {
        format!("{stem}-{version}")
    } else {
        format!("{stem}{version}")
    };
    vec![name.clone(), format!("{name}t64")]
}

/// Names of a relationship field (`Depends`, `Provides`): every alternative, without
/// versions or architecture qualifiers.
fn relation_names(field: Option<&str>) -> impl Iterator<Item = &str> {
    field
        .unwrap_or("")
        .split([',', '|'])
        .filter_map(|alt| alt.split_whitespace().next())
        .map(|n| n.split(['(', ':']).next().unwrap_or(n))
        .filter(|n| !n.is_empty())
}

/// One block to add to the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// The package.
    pub package: String,
    /// Its version in the index searched.
    pub version: String,
    /// The patterns: each library and the links to its file, in chain order.
    pub patterns: Vec<String>,
    /// The missing names it ships.
    pub ships: Vec<String>,
    /// For a name of `ships` that was not first missing: `(name, the library that needs
    /// it)`.
    pub needed_by: Vec<(String, String)>,
    /// The package is declared already: the patterns go into its `paths`.
    pub declared: bool,
}

impl Block {
    /// The package's key in the manifest: bare when TOML allows it, quoted otherwise
    /// (`"libstdc++6"`).
    pub fn key(&self) -> String {
        toml_key(&self.package)
    }

    /// `ships libssl.so.3, libcrypto.so.3 (needed by libssl.so.3)`.
    pub fn why(&self) -> String {
        let names: Vec<String> = (self.ships.iter())
            .map(|name| {
                let by: Vec<&str> = (self.needed_by.iter())
                    .filter(|(n, _)| n == name)
                    .map(|(_, by)| by.as_str())
                    .collect();
                if by.is_empty() {
                    name.clone()
                } else {
                    format!("{name} (needed by {})", by.join(", "))
                }
            })
            .collect();
        format!("ships {}", names.join(", "))
    }

    /// The block as TOML lines, with a comment saying what it ships (for a declared
    /// package: the patterns to add to its `paths`).
    pub fn toml(&self) -> String {
        let patterns: Vec<String> = self.patterns.iter().map(|p| toml_string(p)).collect();
        let why = self.why();
        if self.declared {
            return format!(
                "# add to the paths of [package.{}] ({why}): {}",
                self.key(),
                patterns.join(", ")
            );
        }
        format!(
            "[package.{}]  # {why}\npaths = [{}]",
            self.key(),
            patterns.join(", ")
        )
    }
}

/// A TOML key, bare when it can be.
pub fn toml_key(name: &str) -> String {
    if !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        name.to_string()
    } else {
        toml_string(name)
    }
}

fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// What the search found for the missing names of one image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Suggestions {
    /// Blocks to add, in package name order.
    pub blocks: Vec<Block>,
    /// Missing names no candidate ships, in name order.
    pub unfound: Vec<String>,
    /// Why no search ran (`--offline`, a failed index), when it did not.
    pub skipped: Option<String>,
}

impl Suggestions {
    /// The block that ships `name`, if any.
    pub fn block_for(&self, name: &str) -> Option<&Block> {
        self.blocks
            .iter()
            .find(|b| b.ships.iter().any(|s| s == name))
    }

    /// Add what `other` found (another architecture's search): blocks of the same
    /// package merge their patterns.
    pub fn absorb(&mut self, other: Suggestions) {
        for block in other.blocks {
            match self.blocks.iter_mut().find(|b| b.package == block.package) {
                Some(mine) => {
                    for p in block.patterns {
                        if !mine.patterns.contains(&p) {
                            mine.patterns.push(p);
                        }
                    }
                    for s in block.ships {
                        if !mine.ships.contains(&s) {
                            mine.ships.push(s);
                        }
                    }
                    for pair in block.needed_by {
                        if !mine.needed_by.contains(&pair) {
                            mine.needed_by.push(pair);
                        }
                    }
                }
                None => self.blocks.push(block),
            }
        }
        self.blocks.sort_by(|a, b| a.package.cmp(&b.package));
        let mut unfound: BTreeSet<String> = self.unfound.drain(..).collect();
        unfound.extend(other.unfound);
        unfound.retain(|n| self.blocks.iter().all(|b| !b.ships.contains(n)));
        self.unfound = unfound.into_iter().collect();
        if self.skipped.is_none() {
            self.skipped = other.skipped;
        }
    }

    /// The hint of a miss of `name`: the package whose block is below, or that no
    /// candidate ships it; `None` when the search did not look for it.
    pub fn hint(&self, name: &str) -> Option<String> {
        if let Some(block) = self.block_for(name) {
            return Some(format!(
                "no declared package ships it; package {} does: add its block below",
                block.package
            ));
        }
        if self.unfound.iter().any(|n| n == name) {
            let names = package_names(basename(name));
            let named = if names.is_empty() {
                String::new()
            } else {
                format!(" ({})", names.join(", "))
            };
            return Some(format!(
                "no package of the sources ships it under the name the Debian library naming rule gives{named}, as a Provides, or among the Depends of the declared packages; find it with `apt-file search {name}` and declare it"
            ));
        }
        None
    }

    /// The lines under the one-error summary: the blocks, indented.
    pub fn lines(&self) -> String {
        let mut out = String::new();
        if let Some(why) = &self.skipped {
            out.push_str(&format!(
                "\n  the indexes were not searched for the packages that ship these names: {why}"
            ));
        }
        if self.blocks.is_empty() {
            return out;
        }
        out.push_str("\n  add to the manifest (`--fix` writes these blocks into it):");
        for block in &self.blocks {
            for line in block.toml().lines() {
                out.push_str("\n    ");
                out.push_str(line);
            }
        }
        out
    }
}

/// One candidate `.deb`'s loadable names and what each of its libraries needs that the
/// image does not have.
struct Contents {
    resolved: Resolved,
    shipped: Shipped,
    /// For each library (regular file) in a loader directory: the names it needs that
    /// the tree does not resolve.
    needs: BTreeMap<String, Vec<String>>,
}

/// The directories the dynamic loader searches on `arch`, in their canonical form.
fn loader_dirs(arch: Arch, merged_usr: bool) -> Vec<String> {
    let t = arch.triplet();
    [
        format!("/lib/{t}"),
        format!("/usr/lib/{t}"),
        "/lib".into(),
        "/usr/lib".into(),
        "/lib64".into(),
        "/usr/lib64".into(),
    ]
    .into_iter()
    .map(|d| canonical(&d, merged_usr))
    .collect()
}

fn canonical(path: &str, merged_usr: bool) -> String {
    if merged_usr {
        merged_usr_path(path).unwrap_or_else(|| path.to_string())
    } else {
        path.to_string()
    }
}

fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) => "/",
        Some(i) => &path[..i],
        None => "",
    }
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Search the manifest's indexes for `arch` for the packages that ship `missing` (names
/// a file of `tree` needs that no declared package ships: library names, or the absolute
/// path of an interpreter), confirm each by its `.deb`, and follow what those libraries
/// need.
pub async fn suggest(
    repo: &mut Repository<'_>,
    manifest: &Manifest,
    arch: Arch,
    tree: &Tree,
    declared_shipped: &Shipped,
    missing: &[String],
) -> Result<Suggestions> {
    let merged = manifest.image.merged_usr;
    let dirs = loader_dirs(arch, merged);
    let declared: BTreeSet<String> = (manifest.packages.iter())
        .filter(|p| p.applies_to(arch))
        .map(|p| p.name.clone())
        .collect();
    let mut blocks: BTreeMap<String, Block> = BTreeMap::new();
    // Patterns for packages already declared (a library of a block needs a name one of
    // them ships but the manifest does not select).
    let mut extra: BTreeMap<String, Block> = BTreeMap::new();
    let mut unfound: BTreeSet<String> = BTreeSet::new();
    let mut read: BTreeMap<String, Contents> = BTreeMap::new();
    // Index stanzas seen, by package: their Depends name more candidates.
    let mut stanzas: BTreeMap<String, PackageEntry> = BTreeMap::new();
    let mut level: BTreeSet<String> = missing.iter().cloned().collect();
    let mut seen: BTreeSet<String> = level.clone();
    // For a name found below the first level: the names that needed it.
    let mut needed_by: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for depth in 0..MAX_DEPTH {
        if level.is_empty() {
            break;
        }
        let rule: BTreeSet<String> = (level.iter())
            .flat_map(|n| package_names(basename(n)))
            .collect();
        let first = depth == 0;
        let accept = |e: &PackageEntry| {
            rule.contains(&e.name)
                || (first && declared.contains(&e.name))
                || relation_names(e.provides.as_deref()).any(|p| rule.contains(p))
        };
        let found = repo.scan(manifest, arch, &accept).await?;
        let mut candidates = Vec::new();
        for (resolved, entry) in found {
            if !declared.contains(&resolved.name) && !read.contains_key(&resolved.name) {
                candidates.push(resolved);
            }
            stanzas.insert(entry.name.clone(), entry);
        }
        // Rule names first, then providers: the order they are tried in.
        candidates.sort_by_key(|r| (!rule.contains(&r.name), r.name.clone()));
        let mut order: Vec<String> = candidates.iter().map(|r| r.name.clone()).collect();
        read_all(repo, tree, &dirs, merged, candidates, &mut read).await?;
        let mut left: BTreeSet<String> = level
            .iter()
            .filter(|n| !try_ship(n, &order, &read, &dirs, &mut blocks, &needed_by))
            .cloned()
            .collect();
        if !left.is_empty() {
            // The library packages the declared packages and those found depend on.
            let mut pool: BTreeSet<String> = BTreeSet::new();
            for name in declared.iter().chain(blocks.keys()) {
                if let Some(e) = stanzas.get(name) {
                    let deps = relation_names(e.depends.as_deref())
                        .chain(relation_names(e.pre_depends.as_deref()));
                    pool.extend(deps.filter(|d| d.starts_with("lib")).map(str::to_string));
                }
            }
            pool.retain(|n| !declared.contains(n) && !read.contains_key(n));
            if !pool.is_empty() {
                let found = repo
                    .scan(manifest, arch, &|e| pool.contains(&e.name))
                    .await?;
                let mut more = Vec::new();
                for (resolved, entry) in found {
                    stanzas.insert(entry.name.clone(), entry);
                    more.push(resolved);
                }
                order = more.iter().map(|r| r.name.clone()).collect();
                read_all(repo, tree, &dirs, merged, more, &mut read).await?;
                left.retain(|n| !try_ship(n, &order, &read, &dirs, &mut blocks, &needed_by));
            }
        }
        unfound.extend(left);
        // What the libraries of the blocks need in turn.
        let mut next = BTreeSet::new();
        for block in blocks.values() {
            let Some(contents) = read.get(&block.package) else {
                continue;
            };
            for (path, needs) in &contents.needs {
                if !block.patterns.iter().any(|p| pattern_for(path) == *p) {
                    continue;
                }
                for need in needs {
                    if blocks.values().any(|b| b.ships.contains(need)) || !seen.insert(need.clone())
                    {
                        continue;
                    }
                    needed_by
                        .entry(need.clone())
                        .or_default()
                        .insert(basename(path).to_string());
                    next.insert(need.clone());
                }
            }
        }
        // A name a declared package ships: a pattern to add to its table.
        next.retain(|need| {
            let Some(file) = ships_in(declared_shipped, need, &dirs) else {
                return true;
            };
            let block = extra.entry(file.package.clone()).or_insert_with(|| Block {
                package: file.package.clone(),
                version: String::new(),
                patterns: Vec::new(),
                ships: Vec::new(),
                needed_by: Vec::new(),
                declared: true,
            });
            for p in chain_of(declared_shipped, file) {
                if !block.patterns.contains(&p) {
                    block.patterns.push(p);
                }
            }
            block.ships.push(need.clone());
            for by in needed_by.get(need).into_iter().flatten() {
                let pair = (need.to_string(), by.clone());
                if !block.needed_by.contains(&pair) {
                    block.needed_by.push(pair);
                }
            }
            false
        });
        level = next;
    }
    blocks.extend(extra);
    Ok(Suggestions {
        blocks: blocks.into_values().collect(),
        unfound: unfound.into_iter().collect(),
        skipped: None,
    })
}

/// The first file (by loader directory order) `shipped` has under the name `name`; for an
/// absolute path (an interpreter), that path.
fn ships_in<'s>(shipped: &'s Shipped, name: &str, dirs: &[String]) -> Option<&'s ShippedFile> {
    if name.starts_with('/') {
        let want = canonical(name, shipped.merged_usr());
        return (shipped.lookup(basename(name)).iter()).find(|f| f.path == want);
    }
    let files = shipped.lookup(name);
    dirs.iter()
        .find_map(|d| files.iter().find(|f| parent(&f.path) == d))
}

/// The patterns of `file` and of the links from it to its file, in chain order.
fn chain_of(shipped: &Shipped, file: &ShippedFile) -> Vec<String> {
    let mut chain = vec![pattern_for(&file.path)];
    let mut at = file;
    for _ in 0..MAX_CHAIN {
        let Some(target) = &at.link_target else {
            break;
        };
        let Some(next) = (shipped.lookup(basename(target)).iter())
            .find(|f| &f.path == target && f.package == file.package)
        else {
            break;
        };
        let pattern = pattern_for(&next.path);
        if chain.contains(&pattern) {
            break;
        }
        chain.push(pattern);
        at = next;
    }
    chain
}

/// Is `name` shipped by one of the packages `order` names (in that order)? Then add it,
/// with the links to its file, to that package's block.
fn try_ship(
    name: &str,
    order: &[String],
    read: &BTreeMap<String, Contents>,
    dirs: &[String],
    blocks: &mut BTreeMap<String, Block>,
    needed_by: &BTreeMap<String, BTreeSet<String>>,
) -> bool {
    // A package already suggested first: one block rather than two.
    let mut tried: Vec<String> = (blocks.keys())
        .filter(|k| read.contains_key(*k))
        .cloned()
        .collect();
    tried.extend(order.iter().cloned());
    for package in tried {
        let Some(contents) = read.get(&package) else {
            continue;
        };
        let Some(file) = ships_in(&contents.shipped, name, dirs) else {
            continue;
        };
        let chain = chain_of(&contents.shipped, file);
        let block = blocks.entry(package.clone()).or_insert_with(|| Block {
            package: package.clone(),
            version: contents.resolved.version.clone(),
            patterns: Vec::new(),
            ships: Vec::new(),
            needed_by: Vec::new(),
            declared: false,
        });
        for p in chain {
            if !block.patterns.contains(&p) {
                block.patterns.push(p);
            }
        }
        block.ships.push(name.to_string());
        for by in needed_by.get(name).into_iter().flatten() {
            let pair = (name.to_string(), by.clone());
            if !block.needed_by.contains(&pair) {
                block.needed_by.push(pair);
            }
        }
        return true;
    }
    false
}

/// Fetch (verified, into the cache) and read the `.deb`s of `candidates`, at most
/// [`MAX_CANDIDATES`], into `read`.
async fn read_all(
    repo: &Repository<'_>,
    tree: &Tree,
    dirs: &[String],
    merged: bool,
    mut candidates: Vec<Resolved>,
    read: &mut BTreeMap<String, Contents>,
) -> Result<()> {
    candidates.truncate(MAX_CANDIDATES);
    if candidates.is_empty() {
        return Ok(());
    }
    let fetched = repo.fetch(&candidates, &[]).await?;
    for (resolved, (path, _)) in candidates.into_iter().zip(fetched) {
        let contents = read_contents(&path, resolved, tree, dirs, merged)?;
        read.insert(contents.resolved.name.clone(), contents);
    }
    Ok(())
}

/// The loadable names of one verified `.deb`, and what each of its libraries in a
/// loader directory needs that `tree` lacks.
fn read_contents(
    path: &std::path::Path,
    resolved: Resolved,
    tree: &Tree,
    dirs: &[String],
    merged: bool,
) -> Result<Contents> {
    let what = format!("package {} {}", resolved.name, resolved.version);
    let file = std::fs::File::open(path).map_err(|source| ComposeError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let mut shipped = Shipped::new(merged);
    let mut libraries: Vec<(String, Vec<u8>)> = Vec::new();
    let mut held = 0u64;
    crate::deb::read_deb::<_, ComposeError>(
        std::io::BufReader::new(file),
        &what,
        |entry, data| {
            shipped.record(&resolved.name, entry);
            let at = canonical(&entry.path, merged);
            let base = basename(&at);
            if matches!(entry.kind, crate::deb::EntryKind::File)
                && (base.ends_with(".so") || base.contains(".so."))
                && dirs.iter().any(|d| d == parent(&at))
                && held + entry.size <= MAX_LIBRARY_BYTES
            {
                held += entry.size;
                let mut bytes = Vec::new();
                data.take(entry.size)
                    .read_to_end(&mut bytes)
                    .map_err(|source| ComposeError::Read {
                        what: what.clone(),
                        path: at.clone(),
                        source,
                    })?;
                libraries.push((at, bytes));
            }
            Ok(())
        },
    )?;
    let mut needs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if !libraries.is_empty() {
        let report = match linkage::check(tree, &libraries, None) {
            Ok(report) => report,
            Err(failed) => failed.report,
        };
        for (name, _) in &libraries {
            let missing: Vec<String> = (report.misses.iter())
                .filter(|m| &m.file == name)
                .filter_map(|m| match &m.need {
                    linkage::Need::Library(n) => Some(n.clone()),
                    linkage::Need::Interpreter(_) => None,
                })
                .collect();
            needs.insert(name.clone(), missing);
        }
    }
    Ok(Contents {
        resolved,
        shipped,
        needs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_debian_library_naming_rule() {
        for (soname, first) in [
            ("libfoo.so.1", "libfoo1"),
            ("libfoo-2.so.0", "libfoo-2-0"),
            ("libstdc++.so.6", "libstdc++6"),
            ("libgcc_s.so.1", "libgcc-s1"),
            ("libssl.so.3", "libssl3"),
            ("libz.so.1", "libz1"),
            ("libprotobuf-lite.so.32", "libprotobuf-lite32"),
            ("libgtk-3.so.0", "libgtk-3-0"),
        ] {
            assert_eq!(
                package_names(soname),
                vec![first.to_string(), format!("{first}t64")],
                "{soname}"
            );
        }
        assert!(package_names("libfoo.so").is_empty());
        assert!(package_names("notalib").is_empty());
    }

    #[test]
    fn relation_names_drop_versions_and_qualifiers() {
        let names: Vec<&str> = relation_names(Some(
            "libc6 (>= 2.34), libgcc-s1 (>= 3.0) | libgcc1, python3:any, gcc-14-base (= 14-20240412-0ubuntu1)",
        ))
        .collect();
        assert_eq!(
            names,
            ["libc6", "libgcc-s1", "libgcc1", "python3", "gcc-14-base"]
        );
    }

    #[test]
    fn blocks_quote_keys_toml_needs_quoted() {
        let block = Block {
            package: "libstdc++6".into(),
            version: "14".into(),
            patterns: vec![
                "/usr/lib/*-linux-gnu/libstdc++.so.6".into(),
                "/usr/lib/*-linux-gnu/libstdc++.so.6.0.33".into(),
            ],
            ships: vec!["libstdc++.so.6".into()],
            needed_by: vec![],
            declared: false,
        };
        assert_eq!(
            block.toml(),
            "[package.\"libstdc++6\"]  # ships libstdc++.so.6\npaths = [\"/usr/lib/*-linux-gnu/libstdc++.so.6\", \"/usr/lib/*-linux-gnu/libstdc++.so.6.0.33\"]"
        );
        assert_eq!(toml_key("libgcc-s1"), "libgcc-s1");
    }
}
