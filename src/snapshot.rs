//! The snapshot fallback: where a snapshot service keeps a pinned `.deb` that its archive
//! no longer serves.
//!
//! Ubuntu and Debian remove superseded `-updates` and `-security` packages from the
//! pool, so a lock written last month can pin a file that is gone; snapshot.ubuntu.com
//! and snapshot.debian.org keep every file the archive published, addressed by time.
//! A pinned package's copy is looked for in the archive as it was at the `Date` of the
//! InRelease (or Release) the lock recorded for the package's suite:
//! `<snapshot service>/<YYYYMMDDTHHMMSSZ>/<path below the source URL>`, with the
//! service of [`crate::manifest::snapshot_url`] or the source's `snapshot-url`.
//!
//! This module only says where ([`package_urls`]); it fetches nothing and prints
//! nothing. The download, checked against the pinned size and SHA-256 like any other,
//! is [`crate::repo::Repository::fetch`]'s, and only after a 404/410 at the recorded URL.

use crate::apt::release::parse_date;
use crate::arch::Arch;
use crate::lock::ArchLock;
use crate::manifest::{snapshot_url, Manifest};
use crate::repo::Resolved;

/// The snapshot timestamp of a Release `Date` (`Sat, 06 Jun 2026 19:00:51 UTC` →
/// `20260606T190051Z`); `None` when the date does not parse or is before 1970.
pub fn timestamp(date: &str) -> Option<String> {
    let secs = u64::try_from(parse_date(date)?).ok()?;
    Some(crate::oci::rfc3339(secs).replace(['-', ':'], ""))
}

/// For each of `packages` (pinned for `arch`), the URL of its copy at the snapshot
/// service, before `--mirror`: `None` when its source turned the fallback off
/// (`snapshot-fallback = false`), has no known snapshot service, or the lock has no
/// `Date` for its suite.
pub fn package_urls(
    manifest: &Manifest,
    arch: Arch,
    lock: &ArchLock,
    packages: &[Resolved],
) -> Vec<Option<String>> {
    packages
        .iter()
        .map(|p| package_url(manifest, arch, lock, p))
        .collect()
}

fn package_url(manifest: &Manifest, arch: Arch, lock: &ArchLock, p: &Resolved) -> Option<String> {
    manifest
        .sources
        .iter()
        .filter(|s| s.snapshot_fallback && s.suites.contains(&p.suite))
        .find_map(|source| {
            let base = source.base_url(arch);
            let path = p.url.strip_prefix(base)?.strip_prefix('/')?;
            let dists = format!("{base}/dists/{}", p.suite);
            let release = lock
                .releases
                .get(&format!("{dists}/InRelease"))
                .or_else(|| lock.releases.get(&format!("{dists}/Release")))?;
            let ts = timestamp(release.date.as_deref()?)?;
            let service = match &source.snapshot_url {
                Some(own) if base == source.url => format!("{own}/{ts}"),
                _ => snapshot_url(base, &ts)?,
            };
            Some(format!("{service}/{path}"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lock::{ReleaseLock, Sha256};

    #[test]
    fn timestamps_of_release_dates() {
        assert_eq!(
            timestamp("Sat, 06 Jun 2026 19:00:51 UTC").as_deref(),
            Some("20260606T190051Z")
        );
        assert_eq!(
            timestamp("Thu, 2 May 2024  0:46:15 UTC").as_deref(),
            Some("20240502T004615Z")
        );
        assert_eq!(
            timestamp("Sat, 30 Mar 2024 02:46:15 +0200").as_deref(),
            Some("20240330T004615Z")
        );
        assert_eq!(timestamp("soon"), None);
        assert_eq!(timestamp("Wed, 31 Dec 1969 23:59:59 UTC"), None);
    }

    fn manifest(extra: &str) -> Manifest {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("k.gpg"), b"").unwrap();
        let text = format!(
            "[image]\nname = \"t\"\n\n[[source]]\nurl = \"http://archive.ubuntu.com/ubuntu/\"\narch-url = {{ arm64 = \"http://ports.ubuntu.com/ubuntu-ports\" }}\nsuites = [\"noble\", \"noble-updates\"]\nkeyring = \"k.gpg\"\n{extra}\n[package.libc6]\n"
        );
        Manifest::parse(&dir.path().join("compose.toml"), &text).unwrap()
    }

    fn lock(base: &str, date: Option<&str>) -> ArchLock {
        let mut lock = ArchLock::default();
        lock.releases.insert(
            format!("{base}/dists/noble-updates/InRelease"),
            ReleaseLock {
                sha256: Sha256::of(b"x"),
                date: date.map(str::to_string),
            },
        );
        lock
    }

    fn libc6(base: &str) -> Resolved {
        Resolved {
            name: "libc6".into(),
            version: "2.39-0ubuntu8.3".into(),
            architecture: "amd64".into(),
            suite: "noble-updates".into(),
            url: format!("{base}/pool/main/g/glibc/libc6_2.39-0ubuntu8.3_amd64.deb"),
            size: 1,
            sha256: "0".repeat(64),
        }
    }

    #[test]
    fn urls_at_the_snapshot_service_at_the_locked_date() {
        let date = Some("Sat, 06 Jun 2026 19:00:51 UTC");
        let ubuntu = "http://archive.ubuntu.com/ubuntu";
        let m = manifest("");
        assert_eq!(
            package_urls(&m, Arch::AMD64, &lock(ubuntu, date), &[libc6(ubuntu)]),
            [Some(
                "https://snapshot.ubuntu.com/ubuntu/20260606T190051Z/pool/main/g/glibc/libc6_2.39-0ubuntu8.3_amd64.deb".to_string()
            )]
        );
        let ports = "http://ports.ubuntu.com/ubuntu-ports";
        let got = package_urls(&m, Arch::ARM64, &lock(ports, date), &[libc6(ports)]);
        assert!(
            got[0].as_deref().unwrap().starts_with(
                "https://snapshot.ubuntu.com/ubuntu-ports/20260606T190051Z/pool/main/g/glibc/"
            ),
            "{got:?}"
        );
        // No Date recorded, another suite, or the fallback turned off: no URL.
        assert_eq!(
            package_urls(&m, Arch::AMD64, &lock(ubuntu, None), &[libc6(ubuntu)]),
            [None]
        );
        let mut other_suite = libc6(ubuntu);
        other_suite.suite = "noble".into();
        assert_eq!(
            package_urls(&m, Arch::AMD64, &lock(ubuntu, date), &[other_suite]),
            [None]
        );
        let off = manifest("snapshot-fallback = false");
        assert_eq!(
            package_urls(&off, Arch::AMD64, &lock(ubuntu, date), &[libc6(ubuntu)]),
            [None]
        );
        // A source's own snapshot service covers its `url`, not its `arch-url`s.
        let own = manifest("snapshot-url = \"https://snap.example/ubuntu\"");
        assert_eq!(
            package_urls(&own, Arch::AMD64, &lock(ubuntu, date), &[libc6(ubuntu)])[0]
                .as_deref(),
            Some(
                "https://snap.example/ubuntu/20260606T190051Z/pool/main/g/glibc/libc6_2.39-0ubuntu8.3_amd64.deb"
            )
        );
        let got = package_urls(&own, Arch::ARM64, &lock(ports, date), &[libc6(ports)]);
        assert!(
            got[0]
                .as_deref()
                .unwrap()
                .starts_with("https://snapshot.ubuntu.com/ubuntu-ports/"),
            "{got:?}"
        );
    }
}
