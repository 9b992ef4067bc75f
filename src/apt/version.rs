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
