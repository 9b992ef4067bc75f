//! Debian version ordering, as `dpkg --compare-versions` (a port of the
//! algorithm of dpkg's `lib/dpkg/version.c`, written from its description in
//! deb-version(7)).
//!
//! A version is `[epoch:]upstream[-revision]`: the epoch is the part before
//! the first `:`, the revision the part after the last `-`. Epochs compare
//! numerically, upstream and revision with `verrevcmp`: alternating runs of
//! non-digits (compared character by character, `~` before everything, even
//! the end of the string, then letters, then other characters) and digits
//! (compared numerically; here without any integer conversion, so that runs
//! of any length work).

use std::cmp::Ordering;

struct Parts<'a> {
    epoch: &'a str,
    upstream: &'a str,
    revision: &'a str,
}

fn split(v: &str) -> Parts<'_> {
    let v = v.trim();
    let (epoch, rest) = match v.split_once(':') {
        Some((e, r)) => (e, r),
        None => ("", v),
    };
    let (upstream, revision) = match rest.rsplit_once('-') {
        Some((u, r)) => (u, r),
        None => (rest, ""),
    };
    Parts {
        epoch,
        upstream,
        revision,
    }
}

/// Compares two Debian versions the way dpkg does.
pub fn compare(a: &str, b: &str) -> Ordering {
    let (a, b) = (split(a), split(b));
    compare_digits(a.epoch.as_bytes(), b.epoch.as_bytes())
        .then_with(|| verrevcmp(a.upstream.as_bytes(), b.upstream.as_bytes()))
        .then_with(|| verrevcmp(a.revision.as_bytes(), b.revision.as_bytes()))
}

/// Whether dpkg would accept `v` without error or warning: a non-negative
/// decimal epoch that fits in 31 bits (if any), a non-empty upstream version
/// starting with a digit and made of `[A-Za-z0-9.+~:-]` (`:` only with an
/// epoch, `-` only with a revision), and a non-empty revision (if any) made
/// of `[A-Za-z0-9.+~]`.
pub fn is_valid(v: &str) -> bool {
    if v.is_empty() || v.chars().any(char::is_whitespace) {
        return false;
    }
    let has_epoch = v.contains(':');
    let p = split(v);
    if has_epoch {
        if p.epoch.is_empty() || !p.epoch.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
        if p.epoch.parse::<i32>().is_err() {
            return false;
        }
    }
    let has_revision = v.contains('-');
    if has_revision && p.revision.is_empty() {
        return false;
    }
    let upstream_ok = p
        .upstream
        .as_bytes()
        .first()
        .is_some_and(u8::is_ascii_digit)
        && p.upstream
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".+~-:".contains(&b));
    let revision_ok = p
        .revision
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b".+~".contains(&b));
    upstream_ok && revision_ok
}

/// Sort weight of a character in a non-digit run; the end of the string and
/// a digit weigh 0.
fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(b'~') => -1,
        Some(c) => i32::from(c) + 256,
    }
}

/// Compares two runs of decimal digits by value, any length.
fn compare_digits(a: &[u8], b: &[u8]) -> Ordering {
    let strip = |s: &[u8]| -> usize { s.iter().take_while(|&&c| c == b'0').count() };
    let (a, b) = (&a[strip(a)..], &b[strip(b)..]);
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

fn verrevcmp(a: &[u8], b: &[u8]) -> Ordering {
    let (mut i, mut j) = (0, 0);
    let non_digit = |s: &[u8], k: usize| k < s.len() && !s[k].is_ascii_digit();
    while i < a.len() || j < b.len() {
        while non_digit(a, i) || non_digit(b, j) {
            let (ac, bc) = (order(a.get(i).copied()), order(b.get(j).copied()));
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        let start_a = i;
        while i < a.len() && a[i].is_ascii_digit() {
            i += 1;
        }
        let start_b = j;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        let ord = compare_digits(&a[start_a..i], &b[start_b..j]);
        if ord != Ordering::Equal {
            return ord;
        }
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use Ordering::{Equal, Greater, Less};

    #[test]
    fn edge_cases_agree_with_dpkg() {
        // Each triple was checked with `dpkg --compare-versions` on Debian 12.
        for (a, want, b) in [
            ("1.0~rc1", Less, "1.0"),
            ("1.0", Less, "1.0+b1"),
            ("1.0", Equal, "1.0-0"),
            ("1:1.0", Greater, "2.0"),
            ("0:1.0", Equal, "1.0"),
            ("00001:1", Equal, "1:1"),
            ("1.0a", Greater, "1.0"),
            ("1.0~", Less, "1.0"),
            ("1.0~~", Less, "1.0~"),
            ("1.0~~a", Greater, "1.0~~"),
            ("1.0+", Greater, "1.0a"),
            ("1.0.", Greater, "1.0"),
            ("1.01", Equal, "1.1"),
            ("1.0-1", Less, "1.0.1"),
            ("2.36-9+deb12u4", Less, "2.36-9+deb12u10"),
            ("1.0-1ubuntu1", Greater, "1.0-1"),
            ("1.0-1~bpo1", Less, "1.0-1"),
            ("1.2-3-4", Greater, "1.2-3.4"),
            ("1.0-Z", Less, "1.0-a"),
            // Digit runs far beyond u64, compared by value.
            ("1.00000000000000000000000001", Less, "1.2"),
            (
                "1.123456789012345678901234567890",
                Greater,
                "1.123456789012345678901234567889",
            ),
            (
                "99999999999999999999999:1",
                Greater,
                "9999999999999999999999:9",
            ),
        ] {
            assert_eq!(compare(a, b), want, "{a} vs {b}");
            assert_eq!(compare(b, a), want.reverse(), "{b} vs {a}");
            assert_eq!(compare(a, a), Equal);
        }
    }

    #[test]
    fn validity() {
        for v in [
            "1.0",
            "1:1.0-1",
            "2.36-9+deb12u4",
            "1.0~rc1-0ubuntu1",
            "0.0.0+git20200101.abc-1~bpo11+1",
            "1:1.0:2",
            "1.2-3-4",
        ] {
            assert!(is_valid(v), "{v}");
        }
        for v in [
            "",
            "a1.0",
            "1.0 1",
            ":1.0",
            "a:1.0",
            "1.0-",
            "1:",
            "1.0_1",
            "99999999999:1.0",
            "1.0-a:b",
            "1.0:1",
            "1.0-1_2",
        ] {
            assert!(!is_valid(v), "{v:?}");
        }
    }

    /// Sorts every distinct version of the host's real bookworm Packages with
    /// `compare` and checks each adjacent pair with `dpkg --compare-versions`
    /// (`lt`, or `eq` where `compare` says equal): if dpkg agrees on all
    /// neighbours, the whole order is dpkg's.
    #[test]
    fn agrees_with_dpkg_on_every_real_version() {
        let Some(text) = crate::apt::test_support::host_packages() else {
            return;
        };
        if std::process::Command::new("dpkg")
            .arg("--version")
            .output()
            .is_err()
        {
            println!("SKIPPED: dpkg is not installed");
            return;
        }
        let entries = crate::apt::parse_packages(&text, "bookworm Packages", &|_| true).unwrap();
        let versions: BTreeSet<&str> = entries.iter().map(|e| e.version.as_str()).collect();
        let invalid: Vec<&&str> = versions.iter().filter(|v| !is_valid(v)).collect();
        assert!(
            invalid.is_empty(),
            "real versions judged invalid: {invalid:?}"
        );
        let mut sorted: Vec<&str> = versions.into_iter().collect();
        sorted.sort_by(|a, b| compare(a, b));
        let pairs: Vec<(&str, &str, &str)> = sorted
            .windows(2)
            .map(|w| {
                let op = if compare(w[0], w[1]) == Equal {
                    "eq"
                } else {
                    "lt"
                };
                (w[0], op, w[1])
            })
            .collect();

        let start = std::time::Instant::now();
        let threads = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .max(2);
        let chunk = pairs.len().div_ceil(threads);
        let disagreements: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = pairs
                .chunks(chunk)
                .map(|part| {
                    s.spawn(move || {
                        let mut bad = Vec::new();
                        for (a, op, b) in part {
                            let ok = std::process::Command::new("dpkg")
                                .args(["--compare-versions", a, op, b])
                                .status()
                                .expect("running dpkg")
                                .success();
                            if !ok {
                                bad.push(format!("dpkg does not say {a} {op} {b}"));
                            }
                        }
                        bad
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        println!(
            "{} distinct versions, {} adjacent pairs checked with dpkg in {:?} on {threads} threads",
            sorted.len(),
            pairs.len(),
            start.elapsed()
        );
        assert!(disagreements.is_empty(), "{disagreements:#?}");
    }
}
