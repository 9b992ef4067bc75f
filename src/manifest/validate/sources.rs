//! `[[source]]`: http(s) URLs, per-architecture URLs, suite and component names, the
//! keyring (which must exist: the only file system access of validation), a
//! `snapshot` timestamp, which rewrites the URLs to the snapshot service's
//! ([`snapshot_url`]), and the snapshot fallback's keys (`snapshot-url`,
//! `snapshot-fallback`). Nothing here touches the network.

use std::collections::BTreeMap;

use serde_spanned::Spanned;

use super::Cx;
use crate::arch::Arch;
use crate::manifest::schema::RawSource;
use crate::manifest::{snapshot_url, ManifestError, Source};

impl Cx {
    pub(super) fn sources(&self, raw: &[Spanned<RawSource>]) -> Result<Vec<Source>, ManifestError> {
        if raw.is_empty() {
            return Err(self.error(
                0..0,
                "the manifest has no [[source]]",
                "add a [[source]] with url, suites, components and keyring (docs/manifest.md)",
            ));
        }
        raw.iter().map(|s| self.source(s)).collect()
    }

    fn source(&self, source: &Spanned<RawSource>) -> Result<Source, ManifestError> {
        let span = source.span();
        let s = source.get_ref();
        let mut arch_url = self.source_urls(s)?;
        if s.suites.is_empty() {
            return Err(self.error(
                span.clone(),
                "the source lists no suites",
                "add suites = [\"noble\", \"noble-updates\", \"noble-security\"] or similar",
            ));
        }
        let suites = self.names(&s.suites, "suite", "`noble` or `bookworm-updates`")?;
        let mut components = self.names(&s.components, "component", "`main`")?;
        if components.is_empty() {
            components.push("main".to_string());
        }
        let keyring = self.host_path(s.keyring.span(), s.keyring.get_ref());
        if !keyring.is_file() {
            return Err(self.error(
                s.keyring.span(),
                format!("keyring `{}` not found (looked at {})", s.keyring.get_ref(), keyring.display()),
                "keyring paths are relative to the manifest file; keys/ holds the Ubuntu and Debian keyrings",
            ));
        }
        let written_url = s.url.get_ref().trim_end_matches('/').to_string();
        let mut url = written_url.clone();
        if let Some(ts) = &s.snapshot {
            self.snapshot_timestamp(ts)?;
            url = self.snapshot_urls(s, ts, &url, &mut arch_url)?;
        }
        let snapshot_fallback = s.snapshot_fallback.as_ref().is_none_or(|f| *f.get_ref());
        let snapshot_service = self.snapshot_service(s, snapshot_fallback)?;
        Ok(Source {
            url,
            written_url,
            arch_url,
            suites,
            components,
            keyring,
            snapshot: s.snapshot.as_ref().map(|t| t.get_ref().clone()),
            snapshot_url: snapshot_service,
            snapshot_fallback,
            location: self.location(span),
        })
    }

    /// `snapshot-url`: http(s), trailing `/` trimmed; pointless (an error) beside
    /// `snapshot` (the source is read from the snapshot service already) or with
    /// `snapshot-fallback = false`.
    fn snapshot_service(
        &self,
        s: &RawSource,
        fallback: bool,
    ) -> Result<Option<String>, ManifestError> {
        let Some(u) = &s.snapshot_url else {
            return Ok(None);
        };
        let v = u.get_ref();
        if !(v.starts_with("http://") || v.starts_with("https://")) {
            return Err(self.error(
                u.span(),
                format!("snapshot-url `{v}` is not http(s)"),
                "write the snapshot service's URL for this archive, without the timestamp, e.g. https://snapshot.example.org/archive/foo",
            ));
        }
        if s.snapshot.is_some() || !fallback {
            return Err(self.error(
                u.span(),
                "snapshot-url is never used here",
                if fallback {
                    "a source with `snapshot` is read from the snapshot service already: drop snapshot-url"
                } else {
                    "snapshot-fallback = false turns the snapshot service off: drop one of the two"
                },
            ));
        }
        Ok(Some(v.trim_end_matches('/').to_string()))
    }

    /// Every URL http(s); `arch-url` keyed by Debian architecture name.
    fn source_urls(&self, s: &RawSource) -> Result<BTreeMap<Arch, String>, ManifestError> {
        let mut urls = vec![&s.url];
        urls.extend(s.arch_url.values());
        for u in &urls {
            let ok = u.get_ref().starts_with("http://") || u.get_ref().starts_with("https://");
            if !ok {
                return Err(self.error(
                    u.span(),
                    format!("source URL `{}` is not http(s)", u.get_ref()),
                    "write the repository's base URL, e.g. http://archive.ubuntu.com/ubuntu",
                ));
            }
        }
        let mut arch_url = BTreeMap::new();
        for (a, u) in &s.arch_url {
            arch_url.insert(self.arch(a)?, u.get_ref().clone());
        }
        Ok(arch_url)
    }

    /// `YYYYMMDDTHHMMSSZ`.
    fn snapshot_timestamp(&self, ts: &Spanned<String>) -> Result<(), ManifestError> {
        let v = ts.get_ref();
        let ok = v.len() == 16
            && v.as_bytes()[8] == b'T'
            && v.ends_with('Z')
            && v[..8].bytes().all(|b| b.is_ascii_digit())
            && v[9..15].bytes().all(|b| b.is_ascii_digit());
        if !ok {
            return Err(self.error(
                ts.span(),
                format!("snapshot `{v}` is not a timestamp"),
                "write it as YYYYMMDDTHHMMSSZ, e.g. \"20251115T000000Z\"",
            ));
        }
        Ok(())
    }

    /// The source's URL (returned) and its `arch-url`s (rewritten in place) at the
    /// snapshot service, at `ts`.
    fn snapshot_urls(
        &self,
        s: &RawSource,
        ts: &Spanned<String>,
        url: &str,
        arch_url: &mut BTreeMap<Arch, String>,
    ) -> Result<String, ManifestError> {
        let at = |u: &str, span| {
            snapshot_url(u, ts.get_ref()).ok_or_else(|| {
                self.error(
                    span,
                    format!("no known snapshot service serves `{u}`"),
                    "snapshot works for archive/security/ports.ubuntu.com and deb/security.debian.org; for another archive give its snapshot URL as `url` and drop `snapshot`",
                )
            })
        };
        let url = at(url, s.url.span())?;
        for (a, u) in &s.arch_url {
            let mapped = at(u.get_ref(), u.span())?;
            arch_url.insert(self.arch(a)?, mapped);
        }
        Ok(url)
    }

    /// Suite or component names: non-empty, no `..`, no leading `/`, no whitespace.
    fn names(
        &self,
        list: &[Spanned<String>],
        kind: &str,
        example: &str,
    ) -> Result<Vec<String>, ManifestError> {
        let mut out = Vec::new();
        for x in list {
            let v = x.get_ref();
            if v.is_empty()
                || v.contains("..")
                || v.starts_with('/')
                || v.contains(char::is_whitespace)
            {
                return Err(self.error(
                    x.span(),
                    format!("{kind} `{v}` is not a {kind} name"),
                    format!("write a {kind} such as {example}"),
                ));
            }
            out.push(v.clone());
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use crate::arch::Arch;
    use crate::manifest::fixtures::{err, parse, GOOD};
    use crate::manifest::snapshot_url;

    #[test]
    fn snapshot_rewrites_the_source_urls() {
        let m = parse(&GOOD.replace(
            "suites = [\"noble\", \"noble-updates\"]",
            "suites = [\"noble\"]\nsnapshot = \"20251115T000000Z\"",
        ))
        .unwrap();
        let s = &m.sources[0];
        assert_eq!(
            s.base_url(Arch::AMD64),
            "https://snapshot.ubuntu.com/ubuntu/20251115T000000Z"
        );
        assert_eq!(
            s.base_url(Arch::ARM64),
            "https://snapshot.ubuntu.com/ubuntu-ports/20251115T000000Z"
        );
        assert_eq!(
            snapshot_url("http://deb.debian.org/debian-security/", "20240101T000000Z").as_deref(),
            Some("https://snapshot.debian.org/archive/debian-security/20240101T000000Z")
        );
        let e = err(&GOOD
            .replace(
                "http://archive.ubuntu.com/ubuntu/",
                "http://mirror.example/ubuntu",
            )
            .replace(
                "suites = [\"noble\", \"noble-updates\"]",
                "suites = [\"noble\"]\nsnapshot = \"20251115T000000Z\"",
            ));
        assert!(e.message.contains("no known snapshot service"), "{e}");
    }

    #[test]
    fn snapshot_fallback_keys() {
        let m = parse(GOOD).unwrap();
        assert!(m.sources[0].snapshot_fallback);
        assert_eq!(m.sources[0].snapshot_url, None);
        let with = |keys: &str| {
            GOOD.replace(
                "suites = [\"noble\", \"noble-updates\"]",
                &format!("suites = [\"noble\"]\n{keys}"),
            )
        };
        let m = parse(&with("snapshot-fallback = false")).unwrap();
        assert!(!m.sources[0].snapshot_fallback);
        let m = parse(&with("snapshot-url = \"https://snap.example/archive/x/\"")).unwrap();
        assert_eq!(
            m.sources[0].snapshot_url.as_deref(),
            Some("https://snap.example/archive/x")
        );
        for (keys, needle) in [
            ("snapshot-url = \"ftp://snap.example\"", "is not http(s)"),
            (
                "snapshot-url = \"https://snap.example\"\nsnapshot-fallback = false",
                "never used",
            ),
            (
                "snapshot-url = \"https://snap.example\"\nsnapshot = \"20251115T000000Z\"",
                "never used",
            ),
        ] {
            let e = err(&with(keys));
            assert!(e.message.contains(needle), "{keys}: {e}");
        }
        assert_eq!(
            snapshot_url("https://deb.debian.org/debian-ports", "20240101T000000Z").as_deref(),
            Some("https://snapshot.debian.org/archive/debian-ports/20240101T000000Z")
        );
        assert_eq!(
            snapshot_url("http://deb.debian.org/debian-debug", "20240101T000000Z").as_deref(),
            Some("https://snapshot.debian.org/archive/debian-debug/20240101T000000Z")
        );
    }
}
