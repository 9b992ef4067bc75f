//! `compose outdated` and the update report of `compose lock --update`: what a rebuild would
//! change against the lock, per architecture and package, and — from the changelog of each
//! newer verified `.deb` — every entry newer than the locked version with the CVE ids it
//! names. No vulnerability database: the signed archive is the only source.
//!
//! [`compare`] is the comparison of a lock with a fresh resolution (pure); [`Report`] is the
//! result with its text, JSON and Markdown forms; [`outdated`] runs the whole check. Nothing
//! is written here except verified `.deb`s entering the download cache.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use canon_json::CanonJsonSerialize;
use serde_json::{json, Value};

use crate::apt::{parse_date, version};
use crate::arch::Arch;
use crate::build::{self, BuildOptions, Plan};
use crate::changelog::{self, Entry, Found};
use crate::error::{Error, Result};
use crate::lock::{Lock, PackageLock};
use crate::manifest::{Manifest, Package};
use crate::repo::{Repository, Resolved};

/// One package whose resolution moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// The architecture it is resolved for.
    pub arch: Arch,
    /// The package name.
    pub name: String,
    /// The version the lock pins; `None` when the package is new (it appeared).
    pub locked: Option<String>,
    /// The version the signed indexes offer now; `None` when it disappeared.
    pub available: Option<String>,
    /// The suite (pocket) the available version comes from, e.g. `noble-security`.
    pub suite: Option<String>,
    /// Changelog entries newer than the locked version, newest first.
    pub entries: Vec<Entry>,
    /// Every CVE id those entries name, once each, in order.
    pub cves: Vec<String>,
    /// Where the changelog came from when not from the package's own `.deb`, or why there
    /// is none (`changelog not in this package …`, `changelog unreadable: …`).
    pub changelog: Option<String>,
}

impl Update {
    /// The available version is older than the locked one (the archive went back).
    pub fn is_downgrade(&self) -> bool {
        match (&self.locked, &self.available) {
            (Some(l), Some(a)) => version::compare(a, l) == std::cmp::Ordering::Less,
            _ => false,
        }
    }
}

/// The report of `compose outdated`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The manifest, as given.
    pub manifest: PathBuf,
    /// The lock compared with.
    pub lock: PathBuf,
    /// The newest `Date` of the Release files the resolution used (RFC 3339, UTC).
    pub checked_at: Option<String>,
    /// The packages that moved, by architecture and name.
    pub packages: Vec<Update>,
}

/// A package of the lock and of the fresh resolution, for [`compare`].
fn moved(locked: Option<&PackageLock>, fresh: Option<&Resolved>) -> bool {
    match (locked, fresh) {
        (Some(l), Some(f)) => l.version != f.version || l.sha256.hex() != f.sha256,
        (None, None) => false,
        _ => true,
    }
}

/// The packages whose pin differs between `lock` and the fresh resolution of `arch`
/// (`fresh`: the packages offered now; `missing`: declared ones no index offers), without
/// changelogs yet.
pub fn compare(lock: &Lock, arch: Arch, fresh: &[Resolved], missing: &[String]) -> Vec<Update> {
    let locked: BTreeMap<&str, &PackageLock> = lock
        .archs
        .get(&arch)
        .map(|a| a.packages.iter().map(|(n, p)| (n.as_str(), p)).collect())
        .unwrap_or_default();
    let now: BTreeMap<&str, &Resolved> = fresh.iter().map(|r| (r.name.as_str(), r)).collect();
    let names: BTreeSet<&str> = locked
        .keys()
        .chain(now.keys())
        .copied()
        .chain(missing.iter().map(String::as_str))
        .collect();
    names
        .into_iter()
        .filter(|n| moved(locked.get(n).copied(), now.get(n).copied()))
        .map(|n| Update {
            arch,
            name: n.to_string(),
            locked: locked.get(n).map(|p| p.version.clone()),
            available: now.get(n).map(|r| r.version.clone()),
            suite: now.get(n).map(|r| r.suite.clone()),
            entries: Vec::new(),
            cves: Vec::new(),
            changelog: None,
        })
        .collect()
}

impl Report {
    /// Whether anything moved (the exit code 3 of `compose outdated`).
    pub fn has_updates(&self) -> bool {
        !self.packages.is_empty()
    }

    /// Every CVE id the updates fix, once each, in report order.
    pub fn cves(&self) -> Vec<String> {
        let mut all: Vec<String> = Vec::new();
        for p in &self.packages {
            for c in &p.cves {
                if !all.contains(c) {
                    all.push(c.clone());
                }
            }
        }
        all
    }

    /// The JSON form (documented in docs/outdated.md): canonical, sorted, one object.
    pub fn json(&self) -> Vec<u8> {
        let packages: Vec<Value> = self
            .packages
            .iter()
            .map(|p| {
                json!({
                    "arch": p.arch.name(),
                    "name": p.name,
                    "locked": p.locked,
                    "available": p.available,
                    "suite": p.suite,
                    "entries": p.entries.iter().map(|e| json!({
                        "version": e.version,
                        "distribution": e.distribution,
                        "urgency": e.urgency,
                        "date": e.date,
                        "cves": e.cves,
                    })).collect::<Vec<_>>(),
                    "cves": p.cves,
                    "changelog": p.changelog,
                })
            })
            .collect();
        let doc = json!({
            "manifest": self.manifest.display().to_string(),
            "lock": self.lock.display().to_string(),
            "checked_at": self.checked_at,
            "packages": packages,
        });
        let mut bytes = doc.to_canon_json_vec().expect("a JSON value serialises");
        bytes.push(b'\n');
        bytes
    }

    fn change(p: &Update) -> String {
        match (&p.locked, &p.available) {
            (Some(l), Some(a)) if p.is_downgrade() => format!("{l} → {a} (a downgrade)"),
            (Some(l), Some(a)) if l == a => format!("{l} (same version, rebuilt: other bytes)"),
            (Some(l), Some(a)) => format!("{l} → {a}"),
            (None, Some(a)) => format!("new, {a}"),
            (Some(l), None) => format!("{l} → no longer offered by any index"),
            (None, None) => String::new(),
        }
    }

    /// The text form `compose outdated` prints.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for p in &self.packages {
            out.push_str(&format!("{} {} {}", p.arch, p.name, Report::change(p)));
            if let Some(s) = &p.suite {
                out.push_str(&format!(" ({s})"));
            }
            out.push('\n');
            for e in &p.entries {
                out.push_str(&format!(
                    "  {} {} urgency={} {}{}\n",
                    e.version,
                    e.distribution,
                    e.urgency,
                    e.date,
                    listed(": ", &e.cves)
                ));
            }
            if let Some(note) = &p.changelog {
                out.push_str(&format!("  {note}\n"));
            }
        }
        let cves = self.cves();
        out.push_str(&match self.packages.len() {
            0 => "up to date: every package is at the version the lock pins".to_string(),
            n => format!(
                "{n} package{} can be updated{}",
                if n == 1 { "" } else { "s" },
                listed(", fixing ", &cves)
            ),
        });
        if let Some(at) = &self.checked_at {
            out.push_str(&format!(" (archive metadata of {at})"));
        }
        out.push('\n');
        out
    }

    /// A Markdown report for a pull request body: a title line, then one section per
    /// package.
    pub fn markdown(&self) -> String {
        let cves = self.cves();
        let n = self.packages.len();
        let mut out = format!(
            "{n} package{} updated{}\n\n",
            if n == 1 { "" } else { "s" },
            listed(", fixes ", &cves)
        );
        out.push_str(&format!(
            "`compose lock --update` of `{}`",
            self.manifest.display()
        ));
        if let Some(at) = &self.checked_at {
            out.push_str(&format!(", against the signed archive metadata of {at}"));
        }
        out.push_str(".\n");
        for p in &self.packages {
            out.push_str(&format!(
                "\n### {} ({}): {}\n\n",
                p.name,
                p.arch,
                Report::change(p)
            ));
            if let Some(s) = &p.suite {
                out.push_str(&format!("From `{s}`.\n\n"));
            }
            for e in &p.entries {
                out.push_str(&format!(
                    "- {} ({}, urgency {}, {}){}\n",
                    e.version,
                    e.distribution,
                    e.urgency,
                    e.date,
                    listed(": ", &e.cves)
                ));
            }
            if let Some(note) = &p.changelog {
                out.push_str(&format!("- {note}\n"));
            }
        }
        out
    }
}

/// `prefix` and the CVE ids joined by commas; nothing when there are none.
fn listed(prefix: &str, cves: &[String]) -> String {
    if cves.is_empty() {
        String::new()
    } else {
        format!("{prefix}{}", cves.join(", "))
    }
}

/// The newest of the Release `Date`s of a lock, as RFC 3339.
pub fn checked_at(lock: &Lock) -> Option<String> {
    lock.archs
        .values()
        .flat_map(|a| a.releases.values())
        .filter_map(|r| parse_date(r.date.as_deref()?))
        .max()
        .map(|t| crate::oci::rfc3339(t.max(0) as u64))
}

/// A manifest declaring only `names` (no paths), to resolve packages a changelog lives in.
fn manifest_of(manifest: &Manifest, names: &[String]) -> Manifest {
    let mut m = manifest.clone();
    let location = m.packages[0].location.clone();
    m.packages = names
        .iter()
        .map(|n| Package {
            name: n.clone(),
            paths: Vec::new(),
            optional_paths: Vec::new(),
            exclude: Vec::new(),
            arch: None,
            location: location.clone(),
        })
        .collect();
    m
}

/// Fill in the changelog entries of each update that has a newer version: from its own
/// verified `.deb`, or from the package its doc directory links to (same version).
pub(crate) fn read_changelogs(
    plan: &Plan,
    repo: &mut Repository,
    fresh: &BTreeMap<Arch, Vec<Resolved>>,
    updates: &mut [Update],
) -> Result<()> {
    let wanted: Vec<Resolved> = updates
        .iter()
        .filter(|u| u.available.is_some() && !u.is_downgrade() && u.locked != u.available)
        .filter_map(|u| fresh[&u.arch].iter().find(|r| r.name == u.name).cloned())
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    // Current versions: the archive has them, no snapshot copy is needed.
    let paths = plan
        .runtime
        .block_on(repo.fetch(&wanted, &vec![None; wanted.len()]))?;
    for (r, (path, _)) in wanted.iter().zip(paths) {
        let u = updates
            .iter_mut()
            .find(|u| u.name == r.name && u.available.as_deref() == Some(&r.version))
            .expect("every fetched package is an update");
        let found = changelog::from_deb(&path, &r.url, &r.name);
        let (gz, note) = match found {
            Ok(Found::Changelog(gz)) => (Some(gz), None),
            Ok(Found::LinkedTo(other)) => linked(plan, repo, u.arch, r, &other)?,
            Ok(Found::Missing) => (None, Some("changelog not in this package".to_string())),
            Ok(Found::TooLarge) => (
                None,
                Some(format!(
                    "changelog unreadable: larger than {} MiB compressed",
                    changelog::MAX_COMPRESSED >> 20
                )),
            ),
            Err(e) => (None, Some(format!("changelog unreadable: {e}"))),
        };
        u.changelog = note;
        if let Some(gz) = gz {
            match changelog::entries_newer_gz(&gz, u.locked.as_deref()) {
                Ok(entries) => {
                    for e in &entries {
                        for c in &e.cves {
                            if !u.cves.contains(c) {
                                u.cves.push(c.clone());
                            }
                        }
                    }
                    u.entries = entries;
                }
                Err(e) => u.changelog = Some(format!("changelog unreadable: {e}")),
            }
        }
    }
    Ok(())
}

/// The changelog of `r` from the package `other` its doc directory links to, when that
/// package has the same version (binary packages of one source build).
fn linked(
    plan: &Plan,
    repo: &mut Repository,
    arch: Arch,
    r: &Resolved,
    other: &str,
) -> Result<(Option<Vec<u8>>, Option<String>)> {
    let what = format!(
        "/usr/share/doc/{} links to {}",
        r.name,
        changelog::clean(other)
    );
    let valid = !other.is_empty()
        && other
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b));
    if !valid {
        return Ok((
            None,
            Some(format!("changelog not in this package ({what})")),
        ));
    }
    let m = manifest_of(&plan.manifest, &[other.to_string()]);
    let resolution = plan.runtime.block_on(repo.resolve(&m, arch))?;
    let Some(owner) = resolution.packages.into_iter().next() else {
        return Ok((
            None,
            Some(format!(
                "changelog not in this package ({what}, which no index offers)"
            )),
        ));
    };
    if owner.version != r.version {
        return Ok((
            None,
            Some(format!(
                "changelog not in this package ({what}, whose version {} is not {})",
                owner.version, r.version
            )),
        ));
    }
    let path = plan
        .runtime
        .block_on(repo.fetch(std::slice::from_ref(&owner), &[None]))?
        .remove(0)
        .0;
    Ok(match changelog::from_deb(&path, &owner.url, other) {
        Ok(Found::Changelog(gz)) => (
            Some(gz),
            Some(format!(
                "changelog read from {} {} ({what})",
                owner.name, owner.version
            )),
        ),
        Ok(_) => (
            None,
            Some(format!(
                "changelog not in this package ({what}, which has none either)"
            )),
        ),
        Err(e) => (None, Some(format!("changelog unreadable: {e}"))),
    })
}

/// `compose outdated`: verify the sources' current signed metadata as a build does,
/// resolve, and compare with the lock.
pub fn outdated(opts: &BuildOptions) -> Result<Report> {
    let plan = build::plan(opts)?;
    let Some(lock) = plan.existing.clone() else {
        return Err(Error::Lock(format!(
            "outdated: there is no lock at {}; run `compose lock {}` first",
            plan.lock_path.display(),
            opts.manifest.display()
        )));
    };
    let archs: Vec<Arch> = if opts.archs.is_empty() {
        lock.archs.keys().copied().collect()
    } else {
        plan.archs.clone()
    };
    let mut repo = Repository::new(&plan.fetcher, opts.allow_expired).tolerate_missing();
    let mut fresh_lock = lock.clone();
    let mut fresh = BTreeMap::new();
    let mut updates = Vec::new();
    for &arch in &archs {
        let resolution = plan.runtime.block_on(repo.resolve(&plan.manifest, arch))?;
        updates.extend(compare(
            &lock,
            arch,
            &resolution.packages,
            &resolution.missing,
        ));
        fresh_lock.archs.insert(arch, resolution.lock);
        fresh.insert(arch, resolution.packages);
    }
    read_changelogs(&plan, &mut repo, &fresh, &mut updates)?;
    Ok(Report {
        manifest: opts.manifest.clone(),
        lock: plan.lock_path.clone(),
        checked_at: checked_at(&fresh_lock),
        packages: updates,
    })
}

/// For a `--locked` failure: the CVE ids the newer versions of the moved packages fix,
/// one line per package (`  libc6 2.39-0ubuntu8.3 fixes CVE-…`), or a line saying why
/// their changelogs could not be read; empty when none names a CVE.
pub(crate) fn fixes(
    plan: &Plan,
    opts: &BuildOptions,
    lock: &Lock,
    fresh: &BTreeMap<Arch, Vec<Resolved>>,
) -> String {
    let mut updates: Vec<Update> = fresh
        .iter()
        .flat_map(|(&arch, packages)| compare(lock, arch, packages, &[]))
        .collect();
    let mut repo = Repository::new(&plan.fetcher, opts.allow_expired);
    if let Err(e) = read_changelogs(plan, &mut repo, fresh, &mut updates) {
        return format!("(the changelogs of the newer versions could not be read: {e})\n");
    }
    updates
        .iter()
        .filter(|u| !u.cves.is_empty())
        .map(|u| {
            format!(
                "  {} {} ({}) fixes {}\n",
                u.name,
                u.available.as_deref().unwrap_or("-"),
                u.arch,
                u.cves.join(", ")
            )
        })
        .collect()
}

/// `compose lock --update [PACKAGE]...`: move the lock to the current resolution — every
/// package, or only `only` (the others keep their pins) — and report what moved. Outputs
/// recorded by an earlier build are kept when nothing moved.
/// With `report`, the Markdown report is written there (atomically) after the lock.
pub fn update(opts: &BuildOptions, only: &[String], report: Option<&Path>) -> Result<Report> {
    let plan = build::plan(opts)?;
    let (mut fresh, packages) = plan.resolve_all(opts)?;
    let old = plan.existing.clone();
    if let Some(old) = &old {
        for name in only {
            let known = old.archs.values().any(|a| a.packages.contains_key(name))
                || packages.values().flatten().any(|r| &r.name == name);
            if !known {
                return Err(Error::Usage(format!(
                    "lock --update {}: the manifest declares no such package",
                    changelog::clean(name)
                )));
            }
        }
        if !only.is_empty() {
            for (arch, a) in fresh.archs.iter_mut() {
                let Some(o) = old.archs.get(arch) else {
                    continue;
                };
                for (name, pin) in a.packages.iter_mut() {
                    if !only.contains(name) {
                        if let Some(kept) = o.packages.get(name) {
                            *pin = kept.clone();
                        }
                    }
                }
            }
        }
    }
    let mut updates: Vec<Update> = match &old {
        Some(old) => packages
            .iter()
            .flat_map(|(&arch, ps)| compare(old, arch, ps, &[]))
            .filter(|u| only.is_empty() || only.contains(&u.name))
            .collect(),
        None => Vec::new(),
    };
    let mut repo = Repository::new(&plan.fetcher, opts.allow_expired);
    read_changelogs(&plan, &mut repo, &packages, &mut updates)?;
    if let Some(old) = &old {
        if old.diff_inputs(&fresh).is_empty() && old.epoch == fresh.epoch && old.tag == fresh.tag {
            fresh = old.clone();
            fresh.tool = crate::lock::tool_version();
        }
    }
    fresh.write(&plan.lock_path)?;
    let result = Report {
        manifest: opts.manifest.clone(),
        lock: plan.lock_path.clone(),
        checked_at: checked_at(&fresh),
        packages: updates,
    };
    if let Some(path) = report {
        crate::atomic::write(path, ".report", result.markdown().as_bytes()).map_err(|e| {
            Error::Io {
                context: e.context(),
                source: e.source,
            }
        })?;
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lock::{ArchLock, Sha256};

    fn pin(version: &str, sha: char) -> PackageLock {
        PackageLock {
            version: version.into(),
            arch: "amd64".into(),
            suite: "noble".into(),
            url: format!("http://a/pool/x_{version}.deb"),
            size: 1,
            sha256: Sha256::from_hex(&sha.to_string().repeat(64)).unwrap(),
        }
    }

    fn resolved(name: &str, version: &str, sha: char) -> Resolved {
        Resolved {
            name: name.into(),
            version: version.into(),
            architecture: "amd64".into(),
            suite: "noble-updates".into(),
            url: format!("http://a/pool/{name}_{version}.deb"),
            size: 1,
            sha256: sha.to_string().repeat(64),
        }
    }

    #[test]
    fn moved_appeared_disappeared_and_rebuilt() {
        let mut lock = Lock::new(Sha256::of(b"m"), 0, "t");
        let mut a = ArchLock::default();
        a.packages.insert("libc6".into(), pin("2.39-0ubuntu8", 'a'));
        a.packages.insert("zlib1g".into(), pin("1:1.3", 'b'));
        a.packages.insert("gone".into(), pin("1", 'c'));
        a.packages.insert("same".into(), pin("1", 'd'));
        lock.archs.insert(Arch::AMD64, a);
        let fresh = [
            resolved("libc6", "2.39-0ubuntu8.3", 'e'),
            resolved("zlib1g", "1:1.3", 'f'),
            resolved("same", "1", 'd'),
            resolved("new", "2", '1'),
        ];
        let u = compare(&lock, Arch::AMD64, &fresh, &["gone".to_string()]);
        let names: Vec<_> = u.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["gone", "libc6", "new", "zlib1g"]);
        assert_eq!(u[0].available, None);
        assert_eq!(u[1].available.as_deref(), Some("2.39-0ubuntu8.3"));
        assert_eq!(u[1].suite.as_deref(), Some("noble-updates"));
        assert_eq!(u[2].locked, None);
        assert_eq!(u[3].locked, u[3].available);
        let report = Report {
            manifest: "m.toml".into(),
            lock: "m.toml.lock".into(),
            checked_at: None,
            packages: u,
        };
        let text = report.text();
        assert!(
            text.contains("amd64 gone 1 → no longer offered by any index"),
            "{text}"
        );
        assert!(text.contains("amd64 new new, 2 (noble-updates)"), "{text}");
        assert!(text.contains("rebuilt: other bytes"), "{text}");
        assert!(text.ends_with("4 packages can be updated\n"), "{text}");
    }

    #[test]
    fn a_downgrade_is_named() {
        let u = Update {
            arch: Arch::AMD64,
            name: "x".into(),
            locked: Some("2".into()),
            available: Some("1".into()),
            suite: None,
            entries: vec![],
            cves: vec![],
            changelog: None,
        };
        assert!(u.is_downgrade());
        assert_eq!(Report::change(&u), "2 → 1 (a downgrade)");
    }
}
