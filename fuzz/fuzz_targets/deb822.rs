//! deb822 parsing: `Release::parse` and `parse_packages` (keeping every stanza) over
//! arbitrary bytes.
//!
//! Invariants: every hash kept is 64 lowercase hex digits; every path kept (Release
//! SHA256 entries, Packages `Filename`) is relative with no empty, `.` or `..`
//! component and no NUL; a Release's index lookups only return listed files; a
//! Packages parse has no two entries with one (name, version, architecture), no
//! whitespace in versions, and filtering with `keep` gives exactly the filtered
//! result of keeping everything.
#![no_main]

use compose::apt::packages::parse_packages;
use compose::apt::release::{parse_date, Release};
use libfuzzer_sys::fuzz_target;

fn safe_relative(p: &str) -> bool {
    !p.is_empty()
        && !p.contains('\0')
        && p.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
}

fn sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn trimmed(s: &str) -> bool {
    s.trim() == s
}

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = Release::parse(data, "fuzz") {
        for (path, h) in &r.sha256 {
            assert!(safe_relative(path), "Release path {path:?}");
            assert!(sha256_hex(&h.sha256), "Release hash {:?}", h.sha256);
        }
        for v in [
            &r.origin,
            &r.label,
            &r.suite,
            &r.codename,
            &r.date,
            &r.valid_until,
        ]
        .into_iter()
        .flatten()
        {
            assert!(trimmed(v) && !v.contains('\n'), "field {v:?}");
        }
        for w in r.architectures.iter().chain(&r.components) {
            // Split as apt splits them: at ASCII whitespace.
            assert!(
                !w.is_empty() && !w.bytes().any(|b| b.is_ascii_whitespace()),
                "word {w:?}"
            );
        }
        for d in [&r.date, &r.valid_until].into_iter().flatten() {
            let _ = parse_date(d);
        }
        for now in [0, 1_700_000_000, i64::MAX] {
            let _ = r.check_dates(now, false, "fuzz");
        }
        for arch in r
            .architectures
            .iter()
            .map(String::as_str)
            .chain(["all", "amd64"])
        {
            for comp in r.components.iter().map(String::as_str).chain(["main"]) {
                if let Ok(found) = r.packages_indexes(comp, arch, "fuzz") {
                    for f in found {
                        let listed = r.sha256.get(&f.path).expect("an index Release lists");
                        assert_eq!((listed.size, &listed.sha256), (f.size, &f.sha256));
                    }
                }
            }
        }
    }

    let all = parse_packages(data, "fuzz", &|_| true);
    let none = parse_packages(data, "fuzz", &|_| false);
    if let Ok(all) = &all {
        let mut keys = std::collections::HashSet::new();
        for e in all {
            assert!(!e.name.is_empty() && trimmed(&e.name), "name {:?}", e.name);
            assert!(!e.version.is_empty(), "empty version");
            assert!(
                !e.version.contains(char::is_whitespace),
                "version {:?}",
                e.version
            );
            assert!(!e.architecture.is_empty() && trimmed(&e.architecture));
            assert!(safe_relative(&e.filename), "Filename {:?}", e.filename);
            assert!(sha256_hex(&e.sha256), "SHA256 {:?}", e.sha256);
            assert!(
                keys.insert((&e.name, &e.version, &e.architecture)),
                "duplicate entry {} {} {}",
                e.name,
                e.version,
                e.architecture
            );
        }
        // Keeping less never fails where keeping all succeeded, and keeps exactly
        // the matching entries.
        assert_eq!(none.as_ref().map(Vec::len).ok(), Some(0));
        if let Some(first) = all.first() {
            let one = parse_packages(data, "fuzz", &|n| n == first.name)
                .expect("a subset parses when the whole does");
            let want: Vec<_> = all
                .iter()
                .filter(|e| e.name == first.name)
                .cloned()
                .collect();
            assert_eq!(one, want);
        }
    }
});
