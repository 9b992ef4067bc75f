//! Property tests: the version order is a total order equal to dpkg's; a tree
//! serialises to the same layer bytes whatever the insertion order; path
//! canonicalisation never yields a path outside `/`.
//!
//! Case counts are bounded so that the whole file runs in a few seconds.

use std::cmp::Ordering::{self, Equal, Greater, Less};
use std::process::Command;

use compose::apt::version::{compare, is_valid};
use compose::arch::Arch;
use compose::deb::normalise_path;
use compose::oci::write_layer;
use compose::rootfs::merged_usr::merged_usr_path;
use compose::rootfs::tree::{Node, NodeKind, Tree};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

// ---------------------------------------------------------------------------------
// Versions

/// A run of version characters, biased towards the ones that decide orderings
/// (`~`, `+`, `.`, letters, digits with leading zeros).
fn chars(alphabet: &'static str, max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(
        proptest::sample::select(alphabet.as_bytes().to_vec()),
        0..=max,
    )
    .prop_map(|b| String::from_utf8(b).unwrap())
}

/// A version dpkg accepts: `[epoch:]upstream[-revision]`.
fn version() -> impl Strategy<Value = String> {
    (
        proptest::option::of(0u32..4),
        0u32..30,
        chars("0129.+~ab", 6),
        proptest::option::of(chars("0129.+~ab", 4).prop_map(|r| format!("{r}1"))),
    )
        .prop_map(|(epoch, lead, rest, rev)| {
            let mut v = String::new();
            if let Some(e) = epoch {
                v.push_str(&format!("{e}:"));
            }
            v.push_str(&format!("{lead}{rest}"));
            if let Some(r) = rev {
                v.push('-');
                v.push_str(&r);
            }
            v
        })
}

/// Any string made of version-ish characters, valid or not.
fn any_version() -> impl Strategy<Value = String> {
    prop_oneof![version(), chars("0129.+~-:aZ~ ", 8)]
}

proptest! {
    #![proptest_config(Config { cases: 2000, ..Config::default() })]

    #[test]
    fn version_order_is_total(a in any_version(), b in any_version(), c in any_version()) {
        prop_assert_eq!(compare(&a, &a), Equal);
        prop_assert_eq!(compare(&a, &b), compare(&b, &a).reverse());
        let (ab, bc, ac) = (compare(&a, &b), compare(&b, &c), compare(&a, &c));
        if ab != Greater && bc != Greater {
            let want = if ab == Less || bc == Less { Less } else { Equal };
            prop_assert_eq!(ac, want, "{:?} {:?} {:?}", a, b, c);
        }
        if ab == Equal {
            prop_assert_eq!(ac, bc, "{:?} == {:?} but not against {:?}", a, b, c);
        }
    }

    #[test]
    fn generated_versions_are_valid(v in version()) {
        prop_assert!(is_valid(&v), "{:?}", v);
    }
}

fn dpkg_compare(a: &str, b: &str) -> Ordering {
    let holds = |op: &str| {
        let out = Command::new("dpkg")
            .args(["--compare-versions", a, op, b])
            .output()
            .expect("run dpkg");
        assert!(
            out.stderr.is_empty(),
            "dpkg warned on {a:?} {op} {b:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.status.success()
    };
    if holds("lt") {
        Less
    } else if holds("eq") {
        Equal
    } else {
        Greater
    }
}

/// 300 pairs of generated versions (a fixed seed: the same pairs every run), each also
/// compared with a mutation of itself so that near-equal pairs are common.
#[test]
fn version_order_matches_dpkg() {
    if Command::new("dpkg").arg("--version").output().is_err() {
        println!("SKIPPED: dpkg not installed");
        return;
    }
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]),
    );
    let strategy = (version(), version());
    let mut differences = Vec::new();
    for i in 0..300 {
        let (a, mut b) = strategy.new_tree(&mut runner).unwrap().current();
        if i % 3 == 0 {
            // A close neighbour: the same version with a suffix or an epoch of 0.
            b = match i % 4 {
                0 => format!("{a}~"),
                1 => format!("0:{a}"),
                2 => format!("{a}+0"),
                _ => format!("{a}.0"),
            };
            if !is_valid(&b) {
                b = a.clone();
            }
        }
        let (ours, dpkg) = (compare(&a, &b), dpkg_compare(&a, &b));
        if ours != dpkg {
            differences.push(format!("{a:?} vs {b:?}: ours {ours:?}, dpkg {dpkg:?}"));
        }
    }
    assert!(
        differences.is_empty(),
        "differences from dpkg:\n{}",
        differences.join("\n")
    );
}

// ---------------------------------------------------------------------------------
// Trees and layers

#[derive(Clone, Debug)]
enum Kind {
    Dir,
    File(Vec<u8>),
    Symlink(String),
    /// Hard link to the n-th file of the set (modulo the number of files).
    Hardlink(usize),
}

#[derive(Clone, Debug)]
struct Spec {
    path: String,
    kind: Kind,
    mode: u32,
    uid: u32,
    mtime: u64,
}

/// Paths of 1 to 4 components from a small alphabet (so that parents are shared).
fn path() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        proptest::sample::select(vec!["a", "b", "usr", "lib", "x.so"]),
        1..=4,
    )
    .prop_map(|c| format!("/{}", c.join("/")))
}

/// A set of entries that can be one tree: each path once, never an entry under a
/// non-directory.
fn entries() -> impl Strategy<Value = Vec<Spec>> {
    let kind = prop_oneof![
        2 => Just(Kind::Dir),
        4 => proptest::collection::vec(any::<u8>(), 0..64).prop_map(Kind::File),
        1 => "[a-z./]{1,12}".prop_map(Kind::Symlink),
        1 => (0usize..8).prop_map(Kind::Hardlink),
    ];
    let spec = (
        path(),
        kind,
        prop_oneof![
            Just(0o755u32),
            Just(0o644),
            Just(0o4755),
            Just(0o700),
            Just(0o1777)
        ],
        0u32..3,
        0u64..3,
    )
        .prop_map(|(path, kind, mode, uid, mtime)| Spec {
            path,
            kind,
            mode,
            uid,
            mtime,
        });
    proptest::collection::vec(spec, 1..24).prop_map(|specs| {
        let mut kept: Vec<Spec> = Vec::new();
        for s in specs {
            let clash = kept.iter().any(|k| {
                k.path == s.path
                    // a non-directory above the new path, or the new non-directory above one
                    || (!matches!(k.kind, Kind::Dir) && s.path.starts_with(&format!("{}/", k.path)))
                    || (!matches!(s.kind, Kind::Dir) && k.path.starts_with(&format!("{}/", s.path)))
            });
            if !clash {
                kept.push(s);
            }
        }
        kept
    })
}

/// Builds a tree inserting `specs` in the order of `order`; file contents go to the
/// spool in that order too, so offsets differ between orders.
fn build(specs: &[Spec], order: &[usize]) -> Tree {
    let files: Vec<&Spec> = specs
        .iter()
        .filter(|s| matches!(s.kind, Kind::File(_)))
        .collect();
    let mut tree = Tree::new().unwrap();
    for &i in order {
        let s = &specs[i];
        let kind = match &s.kind {
            Kind::Dir => NodeKind::Dir,
            Kind::File(bytes) => NodeKind::File(tree.spool.append_bytes(bytes).unwrap()),
            Kind::Symlink(t) => NodeKind::Symlink(t.clone()),
            Kind::Hardlink(n) if !files.is_empty() => {
                NodeKind::Hardlink(files[n % files.len()].path.clone())
            }
            Kind::Hardlink(_) => NodeKind::Symlink("none".into()),
        };
        let node = Node {
            kind,
            mode: s.mode,
            uid: s.uid,
            gid: s.uid,
            mtime: s.mtime,
            origin: format!("origin-{i}"),
        };
        tree.insert(&s.path, node).unwrap_or_else(|e| panic!("{e}"));
    }
    tree
}

fn layer(tree: &Tree, epoch: u64) -> (Vec<u8>, String, String) {
    let mut out = Vec::new();
    let info = write_layer(tree, epoch, &mut out).unwrap();
    (out, info.digest, info.diff_id)
}

proptest! {
    #![proptest_config(Config { cases: 200, ..Config::default() })]

    #[test]
    fn layer_bytes_do_not_depend_on_insertion_order(
        (specs, a, b) in entries().prop_flat_map(|specs| {
            let n = specs.len();
            let order: Vec<usize> = (0..n).collect();
            (Just(specs), Just(order.clone()).prop_shuffle(), Just(order).prop_shuffle())
        }),
        epoch in 0u64..3,
    ) {
        let (ta, tb) = (build(&specs, &a), build(&specs, &b));
        let (bytes_a, digest_a, diff_a) = layer(&ta, epoch);
        let (bytes_b, digest_b, diff_b) = layer(&tb, epoch);
        prop_assert_eq!(diff_a, diff_b, "orders {:?} and {:?}", a, b);
        prop_assert_eq!(digest_a, digest_b);
        prop_assert!(bytes_a == bytes_b);
    }
}

// ---------------------------------------------------------------------------------
// Paths

fn assert_inside_root(p: &str, input: &[u8]) -> Result<(), TestCaseError> {
    prop_assert!(p.starts_with('/'), "{:?} from {:?}", p, input);
    prop_assert!(!p.contains('\0'), "{:?} from {:?}", p, input);
    prop_assert!(
        p.split('/').all(|c| c != ".." && c != "."),
        "{:?} from {:?}",
        p,
        input
    );
    prop_assert!(p == "/" || !p.ends_with('/'), "{:?}", p);
    prop_assert!(!p.contains("//"), "{:?}", p);
    Ok(())
}

/// Raw tar-like paths from components that include `..`, `.`, empty (`//`), NUL,
/// invalid UTF-8 and merged-usr directories.
fn raw_path() -> impl Strategy<Value = Vec<u8>> {
    let component = prop_oneof![
        Just(b"..".to_vec()),
        Just(b".".to_vec()),
        Just(Vec::new()),
        Just(b"lib".to_vec()),
        Just(b"bin".to_vec()),
        Just(b"usr".to_vec()),
        Just(b"etc".to_vec()),
        Just(b"a\0b".to_vec()),
        Just(b"\xff".to_vec()),
        Just(b"...".to_vec()),
        "[a-z.]{1,4}".prop_map(String::into_bytes),
    ];
    (
        prop_oneof![
            Just(&b""[..]),
            Just(&b"/"[..]),
            Just(&b"./"[..]),
            Just(&b"//"[..])
        ],
        proptest::collection::vec(component, 0..6),
        any::<bool>(),
    )
        .prop_map(|(prefix, parts, slash)| {
            let mut p = prefix.to_vec();
            p.extend(parts.join(&b'/'));
            if slash {
                p.push(b'/');
            }
            p
        })
}

proptest! {
    #![proptest_config(Config { cases: 4000, ..Config::default() })]

    #[test]
    fn canonical_paths_never_leave_the_root(raw in raw_path()) {
        match normalise_path(&raw, "prop") {
            Ok(p) => {
                assert_inside_root(&p, &raw)?;
                let usr = merged_usr_path(&p);
                prop_assert!(usr.is_some(), "{:?}", p);
                assert_inside_root(&usr.unwrap(), &raw)?;
            }
            Err(_) => {
                let text = std::str::from_utf8(&raw);
                prop_assert!(
                    raw.contains(&0) || text.is_err() || text.unwrap().split('/').any(|c| c == ".."),
                    "{:?} refused", raw
                );
            }
        }
        if let Ok(text) = std::str::from_utf8(&raw) {
            if let Some(usr) = merged_usr_path(text) {
                assert_inside_root(&usr, &raw)?;
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// Packages selected each into a tree of its own (on worker threads) and merged in
// package order give the tree that reading them one after the other into one tree
// gives: the same entries, or an error in both.
//
// Paths are drawn from a small shared set (so packages collide: the same directory with
// other modes, the same file with other content, a directory where another package has
// a file, `/lib/…` and `/usr/lib/…` under merged-usr), plus hard links to files under a
// directory of the package's own. (A hard link to a path that an *earlier* package also
// ships, identically, is where the two differ on purpose: one tree makes it a copy
// because the node there belongs to the other package; the merge keeps the link.)

mod merge {
    use super::*;
    use compose::deb::{Entry, EntryKind};
    use compose::manifest::Manifest;
    use compose::rootfs::select::{self, Selector};

    const SHARED: &[&str] = &[
        "/usr",
        "/usr/lib",
        "/usr/lib/x",
        "/usr/lib/x/a",
        "/usr/lib/y",
        "/lib",
        "/lib/x",
        "/lib/x/a",
        "/lib/z",
        "/etc",
        "/etc/a",
        "/etc/a/b",
    ];

    #[derive(Debug, Clone)]
    pub enum Kind {
        Dir,
        File(u8),
        Symlink(u8),
        /// A file of the package's own directory and a hard link to it.
        Linked(u8),
    }

    #[derive(Debug, Clone)]
    pub struct Spec {
        path: usize,
        kind: Kind,
        mode: u32,
        uid: u32,
    }

    fn spec() -> impl Strategy<Value = Spec> {
        let kind = prop_oneof![
            3 => Just(Kind::Dir),
            3 => (0u8..3).prop_map(Kind::File),
            1 => (0u8..2).prop_map(Kind::Symlink),
            1 => (0u8..2).prop_map(Kind::Linked),
        ];
        (
            0..SHARED.len(),
            kind,
            prop::sample::select(vec![0o755u32, 0o644, 0o700, 0o4755]),
            0u32..2,
        )
            .prop_map(|(path, kind, mode, uid)| Spec {
                path,
                kind,
                mode,
                uid,
            })
    }

    /// Per package: does it select everything, or only some leaves (so that its
    /// directories are parents of what is selected, not selected themselves)?
    pub type Packages = Vec<(bool, Vec<Spec>)>;

    pub fn packages() -> impl Strategy<Value = Packages> {
        prop::collection::vec((any::<bool>(), prop::collection::vec(spec(), 0..7)), 1..4)
    }

    /// The data.tar entries (with contents) of package `p`.
    fn entries(p: usize, specs: &[Spec]) -> Vec<(Entry, Vec<u8>)> {
        let mut out = Vec::new();
        for (i, s) in specs.iter().enumerate() {
            let entry = |path: String, kind: EntryKind, size: u64| Entry {
                path,
                kind,
                mode: s.mode,
                uid: s.uid,
                gid: s.uid,
                mtime: 1_700_000_000 + i as u64,
                size,
            };
            let path = SHARED[s.path].to_string();
            match &s.kind {
                Kind::Dir => out.push((entry(path, EntryKind::Dir, 0), vec![])),
                Kind::File(c) => out.push((entry(path, EntryKind::File, 3), vec![*c; 3])),
                Kind::Symlink(t) => {
                    out.push((entry(path, EntryKind::Symlink(format!("t{t}")), 0), vec![]))
                }
                Kind::Linked(c) => {
                    let own = format!("/usr/share/p{p}/f{i}");
                    out.push((entry(own.clone(), EntryKind::File, 2), vec![*c; 2]));
                    out.push((
                        entry(format!("/usr/share/p{p}/l{i}"), EntryKind::Hardlink(own), 0),
                        vec![],
                    ));
                }
            }
        }
        out
    }

    fn manifest(packages: &Packages) -> (tempfile::TempDir, Manifest) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("k.gpg"), b"").unwrap();
        let mut text = String::from(
            "[image]\nname = \"m\"\nmerged-usr = true\n\n[[source]]\n\
             url = \"http://deb.debian.org/debian\"\nsuites = [\"bookworm\"]\n\
             components = [\"main\"]\nkeyring = \"k.gpg\"\n",
        );
        for (p, (all, _)) in packages.iter().enumerate() {
            let patterns = if *all {
                r#"["/**"]"#
            } else {
                r#"["/**/a", "/etc/a/b", "/usr/lib/y", "/usr/lib/z", "/usr/share/**"]"#
            };
            text.push_str(&format!(
                "\n[package.p{p}]\npaths = []\noptional-paths = {patterns}\n"
            ));
        }
        let path = dir.path().join("m.toml");
        let m = Manifest::parse(&path, &text).unwrap();
        (dir, m)
    }

    /// Every entry of `tree` with what the layer would say of it.
    type Listing = Vec<(String, String, u32, u32, u32, u64, String)>;

    fn listing(tree: &Tree) -> Listing {
        tree.iter()
            .map(|(path, n)| {
                let kind = match &n.kind {
                    NodeKind::Dir => "dir".to_string(),
                    NodeKind::File(c) => format!("file {}", hex::encode(c.sha256)),
                    NodeKind::Symlink(t) => format!("symlink {t}"),
                    NodeKind::Hardlink(t) => format!("hardlink {t}"),
                };
                let origin = n.origin.clone();
                (path.clone(), kind, n.mode, n.uid, n.gid, n.mtime, origin)
            })
            .collect()
    }

    /// Feed one package through `selector` into `tree`, with the second pass for
    /// orphaned hard links, as the pipeline does.
    fn select_into(
        selector: &mut Selector<'_>,
        tree: &mut Tree,
        entries: &[(Entry, Vec<u8>)],
    ) -> Result<(), String> {
        for (e, data) in entries {
            selector
                .entry(tree, e, &mut &data[..])
                .map_err(|e| e.to_string())?;
        }
        let orphans = selector.orphan_targets();
        for (e, data) in entries {
            if orphans.contains(&e.path) {
                selector
                    .orphan_target(tree, e, &mut &data[..])
                    .map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }

    pub fn sequential(packages: &Packages) -> Result<Listing, String> {
        let (_dir, m) = manifest(packages);
        let mut tree = Tree::new().unwrap();
        for (p, (_, specs)) in packages.iter().enumerate() {
            let mut s = Selector::new(&m.packages[p], Arch::AMD64, true, false);
            select_into(&mut s, &mut tree, &entries(p, specs))?;
            s.finish().map_err(|e| e.to_string())?;
        }
        Ok(listing(&tree))
    }

    pub fn merged(packages: &Packages) -> Result<Listing, String> {
        let (_dir, m) = manifest(packages);
        let mut parts = Vec::new();
        for (p, (_, specs)) in packages.iter().enumerate() {
            let mut part = Tree::new().unwrap();
            let mut s = Selector::new(&m.packages[p], Arch::AMD64, true, false);
            select_into(&mut s, &mut part, &entries(p, specs))?;
            parts.push((part, s.finish().map_err(|e| e.to_string())?));
        }
        let mut tree = Tree::new().unwrap();
        for (part, contribution) in parts {
            select::merge(&mut tree, part, &contribution).map_err(|e| e.to_string())?;
        }
        Ok(listing(&tree))
    }
}

proptest! {
    #![proptest_config(Config { cases: 600, ..Config::default() })]

    #[test]
    fn merging_package_trees_equals_reading_packages_in_order(packages in merge::packages()) {
        let one = merge::sequential(&packages);
        let merged = merge::merged(&packages);
        match (&one, &merged) {
            (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
            (Err(_), Err(_)) => {}
            _ => prop_assert!(false, "one tree: {:?}\nmerged: {:?}", one, merged),
        }
    }
}
