//! Debian changelogs: the entries of `/usr/share/doc/<pkg>/changelog.Debian.gz` newer than
//! a given version, each with its version, distribution, urgency, date and the CVE ids it
//! names — what `compose outdated` reports an update fixes.
//!
//! The text comes from an archive and is not trusted: the decompressed size, the number of
//! entries and the length of a line are capped, reading stops at the first entry that is not
//! newer than the version asked for, and every value handed out is printable (control
//! characters escaped) and short. Nothing here touches the network; [`from_deb`] reads one
//! cached, already verified `.deb` and writes nothing.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use crate::apt::version;
use crate::deb::{self, DebError, EntryKind};

/// Decompressed bytes of a changelog read at most (glibc's, the largest in an image, is
/// about 1 MB; only its newest entries are read).
pub const MAX_TEXT: u64 = 16 << 20;
/// Compressed bytes of a changelog taken out of a `.deb` at most.
pub const MAX_COMPRESSED: u64 = 4 << 20;
/// Entries read at most.
pub const MAX_ENTRIES: usize = 2000;
/// A longer line is refused (changelog lines are short; a hostile one is not).
const MAX_LINE: usize = 64 << 10;

/// One changelog entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The version it describes, e.g. `2.39-0ubuntu8.2`.
    pub version: String,
    /// The distributions of its header, space-separated, e.g. `noble-security`.
    pub distribution: String,
    /// `low`, `medium`, `high`, `emergency` or `critical` (as written; empty if none).
    pub urgency: String,
    /// The date of its trailer line (RFC 2822, as written; empty if none).
    pub date: String,
    /// Every `CVE-YYYY-NNNN…` id its text names, in order of first mention, once each.
    pub cves: Vec<String>,
}

/// Why a changelog could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChangelogError {
    /// Not gzip, or a damaged gzip stream.
    #[error("not a readable gzip file ({0})")]
    NotGzip(String),
    /// More than [`MAX_TEXT`] bytes before the version asked for was reached.
    #[error("larger than {} MiB before reaching version {version}", MAX_TEXT >> 20)]
    TooLarge {
        /// the version the reading stopped at
        version: String,
    },
    /// More than [`MAX_ENTRIES`] entries newer than the version asked for.
    #[error("more than {MAX_ENTRIES} entries newer than {version}")]
    TooManyEntries {
        /// the version asked for
        version: String,
    },
    /// A line longer than any real changelog has.
    #[error("line {line} is longer than {} KiB", MAX_LINE >> 10)]
    LongLine {
        /// 1-based line number
        line: usize,
    },
    /// No entry header at all.
    #[error("no entry header (`package (version) distribution; urgency=…`) in it")]
    NoEntries,
}

/// Printable and short, as messages show archive text ([`crate::text::shown`]): control
/// and direction characters escaped, at most [`crate::text::SHOWN_CHARS`] characters.
pub fn clean(s: &str) -> String {
    crate::text::shown(s).to_string()
}

/// `pkg (version) dist1 dist2; urgency=medium` → (version, distributions, urgency).
fn header(line: &str) -> Option<(String, String, String)> {
    if line.starts_with(char::is_whitespace) || line.is_empty() {
        return None;
    }
    let open = line.find(" (")?;
    let close = open + line[open..].find(')')?;
    let name = &line[..open];
    let valid_name = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    let version = line[open + 2..close].trim();
    if !valid_name || !version::is_valid(version) {
        return None;
    }
    let rest = &line[close + 1..];
    let (dists, params) = rest.split_once(';').unwrap_or((rest, ""));
    let urgency = params
        .split(',')
        .filter_map(|p| p.trim().split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("urgency"))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default();
    Some((
        version.to_string(),
        dists.split_whitespace().collect::<Vec<_>>().join(" "),
        urgency,
    ))
}

/// ` -- Name <mail>  Date` → the date.
fn trailer(line: &str) -> Option<&str> {
    let rest = line.strip_prefix(" -- ")?;
    let at = rest.find(">  ")?;
    Some(rest[at + 3..].trim())
}

/// Append the CVE ids of `text` to `cves` (each once, in order). A line break after
/// `CVE-` (as text wrapping leaves it) is skipped.
fn find_cves(text: &str, cves: &mut Vec<String>) {
    let b = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("CVE-") {
        let start = i + at;
        let mut j = start + 4;
        while j < b.len() && b[j].is_ascii_whitespace() {
            j += 1;
        }
        let year = j;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        let year_ok = j - year == 4 && j < b.len() && b[j] == b'-';
        let mut id = None;
        if year_ok {
            let num = j + 1;
            let mut k = num;
            while k < b.len() && b[k].is_ascii_digit() {
                k += 1;
            }
            // A longer digit run is not an id (it is something else that looks like one).
            if (4..=7).contains(&(k - num)) {
                id = Some(format!("CVE-{}-{}", &text[year..j], &text[num..k]));
                j = k;
            }
        }
        if let Some(id) = id {
            if !cves.contains(&id) {
                cves.push(id);
            }
        }
        i = j.max(start + 4);
    }
}

/// The entries of a decompressed changelog newer than `since` (dpkg order), newest first;
/// all of them when `since` is `None`. Reading stops at the first entry that is not newer.
pub fn entries_newer(text: impl Read, since: Option<&str>) -> Result<Vec<Entry>, ChangelogError> {
    let mut reader = BufReader::new(text.take(MAX_TEXT + 1));
    let mut out: Vec<Entry> = Vec::new();
    let mut current: Option<(Entry, String)> = None;
    let mut seen_header = false;
    let mut read: u64 = 0;
    let mut line = Vec::new();
    let mut n = 0;
    let finish = |cur: Option<(Entry, String)>, out: &mut Vec<Entry>| {
        if let Some((e, _)) = cur {
            out.push(e);
        }
    };
    loop {
        line.clear();
        let got = reader
            .by_ref()
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(|e| ChangelogError::NotGzip(clean(&e.to_string())))?;
        if got == 0 {
            break;
        }
        n += 1;
        read += got as u64;
        if read > MAX_TEXT {
            return Err(ChangelogError::TooLarge {
                version: clean(since.unwrap_or("-")),
            });
        }
        if line.len() > MAX_LINE && !line.ends_with(b"\n") {
            return Err(ChangelogError::LongLine { line: n });
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\n', '\r']);
        if let Some((v, dist, urgency)) = header(text) {
            seen_header = true;
            finish(current.take(), &mut out);
            if since.is_some_and(|s| version::compare(&v, s) != std::cmp::Ordering::Greater) {
                return Ok(out);
            }
            if out.len() >= MAX_ENTRIES {
                return Err(ChangelogError::TooManyEntries {
                    version: clean(since.unwrap_or("-")),
                });
            }
            current = Some((
                Entry {
                    version: clean(&v),
                    distribution: clean(&dist),
                    urgency: clean(&urgency),
                    date: String::new(),
                    cves: Vec::new(),
                },
                String::new(),
            ));
        } else if let Some((entry, carry)) = current.as_mut() {
            match trailer(text) {
                Some(date) => entry.date = clean(date),
                None => {
                    // Scan line by line (nothing accumulates); an id wrapped after `CVE-`
                    // is joined with the next line.
                    let joined = format!("{carry}{}", text.trim_start());
                    find_cves(&joined, &mut entry.cves);
                    *carry = if joined.trim_end().ends_with("CVE-") {
                        "CVE-".to_string()
                    } else {
                        String::new()
                    };
                }
            }
        }
    }
    if !seen_header {
        return Err(ChangelogError::NoEntries);
    }
    finish(current.take(), &mut out);
    Ok(out)
}

/// The entries of a gzip-compressed changelog newer than `since`.
pub fn entries_newer_gz(gz: &[u8], since: Option<&str>) -> Result<Vec<Entry>, ChangelogError> {
    if !gz.starts_with(&[0x1f, 0x8b]) {
        return Err(ChangelogError::NotGzip("no gzip magic".into()));
    }
    entries_newer(flate2::read::MultiGzDecoder::new(gz), since)
}

/// Why a `.deb` could not be searched for its changelog.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The package itself is unreadable.
    #[error(transparent)]
    Deb(#[from] DebError),
    /// The cached `.deb` could not be opened.
    #[error("cannot open cached {}: {source}", .path.display())]
    Open {
        /// the cache path
        path: std::path::PathBuf,
        /// the underlying error
        source: std::io::Error,
    },
    /// Reading the changelog's bytes out of the data archive failed.
    #[error("{what}: reading {file}: {source}")]
    Read {
        /// the package, usually its URL
        what: String,
        /// the changelog's path in the package
        file: String,
        /// the underlying error
        source: std::io::Error,
    },
}

/// What a `.deb` has to say about its own changelog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// `/usr/share/doc/<pkg>/changelog.Debian.gz`, compressed, as packaged.
    Changelog(Vec<u8>),
    /// `/usr/share/doc/<pkg>` is a symbolic link to another package's doc directory
    /// (binary packages of one source often share it: libgcc-s1 → gcc-14-base); the name
    /// of that directory.
    LinkedTo(String),
    /// Neither: the package has no changelog of its own.
    Missing,
    /// The changelog is larger than [`MAX_COMPRESSED`].
    TooLarge,
}

/// Look for the changelog of `package` in its verified `.deb` at `path` (`what` names the
/// `.deb` in errors): `changelog.Debian.gz`, or `changelog.gz` for a native package
/// (Debian policy 12.7), which has no Debian changelog of its own.
pub fn from_deb(path: &Path, what: &str, package: &str) -> Result<Found, ReadError> {
    let doc = format!("/usr/share/doc/{package}");
    let debian = format!("{doc}/changelog.Debian.gz");
    let native = format!("{doc}/changelog.gz");
    let mut from_debian = false;
    let f = std::fs::File::open(path).map_err(|source| ReadError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let mut found = Found::Missing;
    deb::read_deb(
        BufReader::with_capacity(256 * 1024, f),
        what,
        |entry, data| -> Result<(), ReadError> {
            match &entry.kind {
                EntryKind::File
                    if entry.path == debian || (entry.path == native && !from_debian) =>
                {
                    from_debian = entry.path == debian;
                    let file = &entry.path;
                    let mut bytes = Vec::new();
                    data.take(MAX_COMPRESSED + 1)
                        .read_to_end(&mut bytes)
                        .map_err(|source| ReadError::Read {
                            what: what.to_string(),
                            file: file.clone(),
                            source,
                        })?;
                    found = if bytes.len() as u64 > MAX_COMPRESSED {
                        Found::TooLarge
                    } else {
                        Found::Changelog(bytes)
                    };
                }
                EntryKind::Symlink(target) if entry.path == doc && found == Found::Missing => {
                    let name = target
                        .trim_end_matches('/')
                        .rsplit('/')
                        .next()
                        .unwrap_or("");
                    found = Found::LinkedTo(name.to_string());
                }
                _ => {}
            }
            Ok(())
        },
    )?;
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GLIBC: &str = "glibc (2.39-0ubuntu8.3) noble; urgency=medium

  * Fix framepointer flags for s390x and ppc64el
    (LP: #2064538, LP: #2064539)

 -- Simon Chopin <schopin@ubuntu.com>  Thu, 08 Aug 2024 16:47:42 +0200

glibc (2.39-0ubuntu8.2) noble-security; urgency=medium

  * SECURITY UPDATE: Memory corruption
    - debian/patches/CVE-2024-33601_33602.patch: CVE-2024-33601, CVE-
      2024-33602: nscd: netgroup: Use two buffers in addgetnetgrentX.
    - CVE-2024-33601

 -- Paulo Flabiano Smorigo <pfsmorigo@canonical.com>  Tue, 30 Apr 2024 15:02:13 -0300

glibc (2.39-0ubuntu8) noble; urgency=medium

  * No-change rebuild for CVE-2024-3094

 -- Steve Langasek <steve.langasek@ubuntu.com>  Sat, 30 Mar 2024 07:42:05 +0000
";

    #[test]
    fn entries_newer_than_a_version_with_their_cves() {
        let e = entries_newer(GLIBC.as_bytes(), Some("2.39-0ubuntu8")).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].version, "2.39-0ubuntu8.3");
        assert_eq!(e[0].distribution, "noble");
        assert_eq!(e[0].urgency, "medium");
        assert_eq!(e[0].date, "Thu, 08 Aug 2024 16:47:42 +0200");
        assert!(e[0].cves.is_empty());
        assert_eq!(e[1].distribution, "noble-security");
        // Wrapped after `CVE-`, and named twice: once each, in order.
        assert_eq!(e[1].cves, ["CVE-2024-33601", "CVE-2024-33602"]);
        let all = entries_newer(GLIBC.as_bytes(), None).unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[2].cves, ["CVE-2024-3094"]);
        assert!(entries_newer(GLIBC.as_bytes(), Some("2.39-0ubuntu8.3"))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn hostile_text_is_bounded_and_escaped() {
        let evil = "x\x1b[2J (1.0) evil\x07; urgency=high\n  * CVE-2024-1234\n";
        // Not a header (the name is not a package name): no entries at all.
        assert_eq!(
            entries_newer(evil.as_bytes(), None),
            Err(ChangelogError::NoEntries)
        );
        let evil = "x (1.0) evil\x07\x1b[31m; urgency=high\x1b\n -- A <a@b>  \x1b]0;t\x07\n";
        let e = entries_newer(evil.as_bytes(), None).unwrap();
        assert_eq!(e[0].distribution, "evil\\u{7}\\u{1b}[31m");
        assert!(!e[0].date.contains('\x1b'), "{:?}", e[0].date);
        let long = format!("x (1.0) {}; urgency=low\n", "d".repeat(1000));
        let e = entries_newer(long.as_bytes(), None).unwrap();
        assert_eq!(
            e[0].distribution,
            format!("{}… (1000 bytes)", "d".repeat(crate::text::SHOWN_CHARS))
        );
        let huge_line = format!("x (1.0) a; urgency=low\n  {}\n", "y".repeat(MAX_LINE + 10));
        assert_eq!(
            entries_newer(huge_line.as_bytes(), None),
            Err(ChangelogError::LongLine { line: 2 })
        );
        assert!(matches!(
            entries_newer_gz(b"plain text", None),
            Err(ChangelogError::NotGzip(_))
        ));
    }

    #[test]
    fn cve_ids_and_look_alikes() {
        let mut c = Vec::new();
        find_cves(
            "CVE-2024-1 CVE-2024-12345 CVE-20241-1234 CVE-2024-123456789 CVE-1999-0001, CVE-2024-12345",
            &mut c,
        );
        assert_eq!(c, ["CVE-2024-12345", "CVE-1999-0001"]);
    }
}
