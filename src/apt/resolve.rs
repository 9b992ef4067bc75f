//! Resolution over parsed indexes: the highest version of each wanted package across all
//! suites (dpkg's order; the first listed wins a tie), and the `Depends:` it leaves unmet.
//! [`Newest`] keeps, while one index streams by, only the stanzas that can win.
//!
//! Pure: entries in, choices out. It never adds a package the manifest does not declare:
//! unmet dependencies are reported, not installed.

use std::collections::{BTreeSet, HashMap};

use super::packages::{conflict, PackageEntry};
use super::{version, AptError};

/// The stanzas of one index that [`highest`] can choose, kept as the index streams by:
/// for each (name, architecture), the highest version, the first of equal ones. Memory
/// is bounded by the packages asked for, however many stanzas (and versions) of them the
/// index holds.
///
/// A stanza with the kept one's name, version and architecture but another SHA256 is
/// [`AptError::Conflict`] (the index is inconsistent about what it would give); an
/// identical repeat is dropped. Stanzas of lower versions are dropped unexamined.
pub struct Newest<'a> {
    what: &'a str,
    /// (name, architecture) → (position of the stanza in the index, the stanza)
    kept: HashMap<(String, String), (usize, PackageEntry)>,
    offered: usize,
}

impl<'a> Newest<'a> {
    /// For the index named `what` in errors.
    pub fn new(what: &'a str) -> Newest<'a> {
        Newest {
            what,
            kept: HashMap::new(),
            offered: 0,
        }
    }

    /// The next stanza of the index.
    pub fn offer(&mut self, entry: PackageEntry) -> Result<(), AptError> {
        self.offered += 1;
        let key = (entry.name.clone(), entry.architecture.clone());
        match self.kept.get_mut(&key) {
            None => {
                self.kept.insert(key, (self.offered, entry));
            }
            Some((at, old)) => {
                if version::compare(&entry.version, &old.version).is_gt() {
                    *at = self.offered;
                    *old = entry;
                } else if entry.version == old.version && entry.sha256 != old.sha256 {
                    return Err(conflict(self.what, old, entry.sha256));
                }
            }
        }
        Ok(())
    }

    /// The kept stanzas, in the order the index gave them: [`highest`] over them (and
    /// over what other indexes kept, in source and suite order) chooses what it would
    /// have chosen over every stanza.
    pub fn into_entries(self) -> Vec<PackageEntry> {
        let mut kept: Vec<(usize, PackageEntry)> = self.kept.into_values().collect();
        kept.sort_by_key(|(at, _)| *at);
        kept.into_iter().map(|(_, e)| e).collect()
    }
}

/// The highest version of `name` among `candidates` (in source and suite order: on equal
/// versions the first wins). `entry` picks the stanza out of a candidate.
pub fn highest<'a, T>(
    candidates: &'a [T],
    name: &str,
    entry: impl Fn(&T) -> &PackageEntry,
) -> Option<&'a T> {
    candidates
        .iter()
        .filter(|c| entry(c).name == name)
        .reduce(|best, c| {
            if version::compare(&entry(c).version, &entry(best).version).is_gt() {
                c
            } else {
                best
            }
        })
}

/// `Depends:`/`Pre-Depends:` groups of `chosen` that no chosen package (or what one
/// provides) satisfies, as `(package, group)`. Versions are not compared: the linkage
/// check is the real guard, this is a hint.
pub fn unmet_depends<'a>(chosen: &[&'a PackageEntry]) -> Vec<(&'a str, &'a str)> {
    let mut have: BTreeSet<&str> = chosen.iter().map(|e| e.name.as_str()).collect();
    for e in chosen {
        for alt in e.provides.as_deref().unwrap_or("").split(',') {
            if let Some(n) = alt.split_whitespace().next() {
                have.insert(n);
            }
        }
    }
    let mut unmet = Vec::new();
    for e in chosen {
        let groups = [&e.pre_depends, &e.depends]
            .into_iter()
            .filter_map(|d| d.as_deref())
            .flat_map(|d| d.split(','));
        for group in groups {
            let names: Vec<&str> = group
                .split('|')
                .filter_map(|alt| alt.split_whitespace().next())
                .map(|n| n.split(':').next().unwrap_or(n))
                .collect();
            if !names.is_empty() && !names.iter().any(|n| have.contains(n)) {
                unmet.push((e.name.as_str(), group.trim()));
            }
        }
    }
    unmet
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(
        name: &str,
        version: &str,
        depends: Option<&str>,
        provides: Option<&str>,
    ) -> PackageEntry {
        PackageEntry {
            name: name.into(),
            version: version.into(),
            architecture: "amd64".into(),
            filename: format!("pool/{name}_{version}.deb"),
            size: 1,
            sha256: "0".repeat(64),
            source: None,
            depends: depends.map(str::to_string),
            pre_depends: None,
            provides: provides.map(str::to_string),
        }
    }

    #[test]
    fn the_highest_version_wins_and_the_first_wins_a_tie() {
        let c = [
            (entry("a", "1.0-1", None, None), "noble"),
            (entry("a", "1.0-1ubuntu0.1", None, None), "noble-updates"),
            (entry("a", "1.0-1ubuntu0.1", None, None), "noble-security"),
            (entry("a", "1.0~rc1", None, None), "noble-proposed"),
            (entry("b", "9", None, None), "noble"),
        ];
        let best = highest(&c, "a", |x| &x.0).unwrap();
        assert_eq!(
            (best.0.version.as_str(), best.1),
            ("1.0-1ubuntu0.1", "noble-updates")
        );
        assert!(highest(&c, "zz", |x| &x.0).is_none());
    }

    #[test]
    fn newest_keeps_what_highest_would_choose() {
        let mut all = entry("a", "1", None, None);
        all.architecture = "all".into();
        let mut all2 = all.clone();
        all2.version = "2".into();
        let stanzas = [
            entry("a", "1", None, None),
            all.clone(),
            entry("a", "2", None, None),
            all2.clone(),
            entry("a", "1.5", None, None),
            entry("a", "2", None, None), // an identical repeat
            entry("b", "3", None, None),
        ];
        let mut newest = Newest::new("P");
        for s in &stanzas {
            newest.offer(s.clone()).unwrap();
        }
        let kept = newest.into_entries();
        let versions: Vec<(&str, &str, &str)> = kept
            .iter()
            .map(|e| (e.name.as_str(), e.version.as_str(), e.architecture.as_str()))
            .collect();
        assert_eq!(
            versions,
            [("a", "2", "amd64"), ("a", "2", "all"), ("b", "3", "amd64")]
        );
        for name in ["a", "b"] {
            assert_eq!(
                highest(&kept, name, |e| e),
                highest(&stanzas, name, |e| e),
                "{name}"
            );
        }
        // The same name, version and architecture with another SHA256.
        let mut newest = Newest::new("P");
        newest.offer(entry("a", "2", None, None)).unwrap();
        let mut other = entry("a", "2", None, None);
        other.sha256 = "1".repeat(64);
        let err = newest.offer(other).unwrap_err();
        assert!(matches!(err, AptError::Conflict { .. }), "{err:?}");
    }

    #[test]
    fn unmet_depends_sees_alternatives_provides_and_arch_qualifiers() {
        let a = entry("a", "1", Some("b (>= 1), c | d, e:any, f"), None);
        let b = entry("b", "1", None, None);
        let d = entry("d", "1", None, Some("f (= 1)"));
        let e = entry("e", "1", None, None);
        assert!(unmet_depends(&[&a, &b, &d, &e]).is_empty());
        assert_eq!(
            unmet_depends(&[&a, &b]),
            [("a", "c | d"), ("a", "e:any"), ("a", "f")]
        );
    }
}
