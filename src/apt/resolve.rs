//! Resolution over parsed indexes: the highest version of each wanted package across all
//! suites (dpkg's order; the first listed wins a tie), and the `Depends:` it leaves unmet.
//!
//! Pure: entries in, choices out. It never adds a package the manifest does not declare:
//! unmet dependencies are reported, not installed.

use std::collections::BTreeSet;

use super::packages::PackageEntry;
use super::version;

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
