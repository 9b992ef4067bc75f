//! The `Release` file (the verified body of `InRelease`, or `Release`): its
//! dates, architectures, components and the SHA256 of every index, plus
//! decompression of the indexes it lists (through [`crate::compression`], with a limit
//! on the output).
//!
//! It must not fetch anything nor check an index against its hash: callers hand in
//! bytes they verified.

use std::collections::BTreeMap;
use std::io::Read;

use deb822_fast::borrowed::parse_borrowed;

use super::AptError;
use crate::arch::Arch;
pub use crate::compression::Compression;
use crate::compression::{decoder, DecodeOptions};

/// The variants of a `Packages` index tried, most compressed first.
const PACKAGES_VARIANTS: [Compression; 3] = [Compression::Xz, Compression::Gz, Compression::None];

/// How far in the future a `Date:` may be before the Release is refused
/// (clock skew between this machine and the archive): 10 minutes.
pub const CLOCK_SKEW_TOLERANCE_SECS: i64 = 600;

/// The fields of a `Release` file that the trust chain uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Release {
    /// `Origin`, e.g. `Ubuntu`.
    pub origin: Option<String>,
    /// `Label`, e.g. `Debian`.
    pub label: Option<String>,
    /// `Suite`, e.g. `noble-updates`.
    pub suite: Option<String>,
    /// `Codename`, e.g. `noble`.
    pub codename: Option<String>,
    /// `Date` as written; [`Release::check_dates`] reads it.
    pub date: Option<String>,
    /// `Valid-Until` as written; [`Release::check_dates`] reads it.
    pub valid_until: Option<String>,
    /// `Architectures`, as listed (Debian names).
    pub architectures: Vec<String>,
    /// `Components`, as listed (Debian's security archive writes `updates/main`).
    pub components: Vec<String>,
    /// Whether the Release says `Acquire-By-Hash: yes`: its indexes are also published
    /// under `by-hash/` ([`Release::by_hash_path`]).
    pub acquire_by_hash: bool,
    /// Path relative to `dists/<suite>/` → size and SHA256.
    pub sha256: BTreeMap<String, IndexHash>,
    /// Path relative to `dists/<suite>/` → SHA512 (lowercase hex), for the well-formed
    /// lines of a `SHA512` field. Only names `by-hash/SHA512/` paths: files are checked
    /// against their SHA256.
    pub sha512: BTreeMap<String, String>,
}

/// Size and SHA256 (lowercase hex) of a file listed in `Release`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexHash {
    /// bytes
    pub size: u64,
    /// lowercase hex
    pub sha256: String,
}

/// One variant of an index that `Release` lists, with its expected hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexFile {
    /// Relative to `dists/<suite>/`, e.g. `main/binary-arm64/Packages.xz`.
    pub path: String,
    /// bytes, as Release lists it
    pub size: u64,
    /// lowercase hex, as Release lists it
    pub sha256: String,
    /// `Xz`, `Gz` or `None`, from the path's suffix
    pub compression: Compression,
}

impl Release {
    /// Parses a Release body. `what` (its URL) names it in errors.
    pub fn parse(body: &[u8], what: &str) -> Result<Release, AptError> {
        let err = |reason: String| AptError::Release {
            what: what.to_string(),
            reason,
        };
        let text =
            std::str::from_utf8(body).map_err(|e| err(format!("it is not UTF-8 text ({e})")))?;
        let paragraphs = parse_borrowed(text).map_err(|e| err(e.to_string()))?;
        let para = match paragraphs.as_slice() {
            [] => return Err(err("it holds no fields".into())),
            [one] => one,
            _ => {
                return Err(err(format!(
                    "it holds {} stanzas, a Release file has one",
                    paragraphs.len()
                )))
            }
        };
        let single = |name: &str| -> Result<Option<String>, AptError> {
            match para.get_field(name) {
                None => Ok(None),
                Some(f) => match f.as_single_line() {
                    Some(v) => Ok(Some(v.trim().to_string())),
                    None => Err(err(format!("field {name} spans several lines"))),
                },
            }
        };
        let words = |name: &str| -> Result<Vec<String>, AptError> {
            Ok(single(name)?
                .map(|v| v.split_ascii_whitespace().map(str::to_string).collect())
                .unwrap_or_default())
        };

        let field = para.get_field("SHA256").ok_or_else(|| {
            err("it has no SHA256 field (apt refuses Release files without strong hashes)".into())
        })?;
        let mut sha256 = BTreeMap::new();
        for line in field.lines() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let parts: Vec<&str> = line.split_ascii_whitespace().collect();
            let [hash, size, path] = parts.as_slice() else {
                return Err(err(format!(
                    "SHA256 line {line:?} is not \"<sha256> <size> <path>\""
                )));
            };
            if !is_sha256_hex(hash) {
                return Err(err(format!(
                    "SHA256 line {line:?}: {hash:?} is not 64 hex digits"
                )));
            }
            let size: u64 = size.parse().map_err(|_| {
                err(format!(
                    "SHA256 line {line:?}: size {size:?} is not a number"
                ))
            })?;
            if !is_safe_relative_path(path) {
                return Err(err(format!(
                    "SHA256 line {line:?}: path {path:?} is not a plain relative path"
                )));
            }
            let entry = IndexHash {
                size,
                sha256: hash.to_ascii_lowercase(),
            };
            if let Some(prev) = sha256.get(*path) {
                if prev != &entry {
                    return Err(err(format!(
                        "SHA256 lists {path} twice with different hashes"
                    )));
                }
            }
            sha256.insert(path.to_string(), entry);
        }

        Ok(Release {
            origin: single("Origin")?,
            label: single("Label")?,
            suite: single("Suite")?,
            codename: single("Codename")?,
            date: single("Date")?,
            valid_until: single("Valid-Until")?,
            architectures: words("Architectures")?,
            components: words("Components")?,
            acquire_by_hash: single("Acquire-By-Hash")?.is_some_and(|v| v == "yes"),
            sha256,
            sha512: para
                .get_field("SHA512")
                .map(sha512_lines)
                .unwrap_or_default(),
        })
    }

    /// Where the archive keeps the listed file `path` (relative to `dists/<suite>/`)
    /// under its hash, when the Release says `Acquire-By-Hash: yes`:
    /// `<dir>/by-hash/<hash name>/<hex>` with the strongest hash listed for it (SHA512,
    /// else SHA256), as apt asks. `None` without `Acquire-By-Hash` or when `path` is not
    /// listed.
    pub fn by_hash_path(&self, path: &str) -> Option<String> {
        if !self.acquire_by_hash {
            return None;
        }
        let (name, hex) = match self.sha512.get(path) {
            Some(hex) => ("SHA512", hex.as_str()),
            None => ("SHA256", self.sha256.get(path)?.sha256.as_str()),
        };
        let dir = path.rsplit_once('/').map_or("", |(dir, _)| dir);
        Some(if dir.is_empty() {
            format!("by-hash/{name}/{hex}")
        } else {
            format!("{dir}/by-hash/{name}/{hex}")
        })
    }

    /// Checks `Date` and `Valid-Until` against `now` (unix seconds).
    ///
    /// `Valid-Until` in the past is an error unless `allow_expired` (snapshot
    /// sources, `--allow-expired`); a `Date` more than
    /// [`CLOCK_SKEW_TOLERANCE_SECS`] in the future is an error. A present but
    /// unparseable date is an error.
    pub fn check_dates(&self, now: i64, allow_expired: bool, what: &str) -> Result<(), AptError> {
        if let Some(date) = &self.date {
            let t = parse_date(date).ok_or_else(|| AptError::BadDate {
                what: what.to_string(),
                field: "Date",
                value: date.clone(),
            })?;
            if t > now.saturating_add(CLOCK_SKEW_TOLERANCE_SECS) {
                return Err(AptError::NotYetValid {
                    what: what.to_string(),
                    date: date.clone(),
                    tolerance_secs: CLOCK_SKEW_TOLERANCE_SECS,
                });
            }
        }
        if let Some(until) = &self.valid_until {
            let t = parse_date(until).ok_or_else(|| AptError::BadDate {
                what: what.to_string(),
                field: "Valid-Until",
                value: until.clone(),
            })?;
            if t < now && !allow_expired {
                return Err(AptError::Expired {
                    what: what.to_string(),
                    valid_until: until.clone(),
                });
            }
        }
        Ok(())
    }

    /// The variants of `<component>/binary-<arch>/Packages` that this Release
    /// lists with a SHA256, in the order `.xz`, `.gz`, plain.
    ///
    /// Packages of architecture `all` are listed in every `binary-<arch>`
    /// index, so ask for the target architecture, not `all`.
    pub fn packages_indexes(
        &self,
        component: &str,
        arch: Arch,
        what: &str,
    ) -> Result<Vec<IndexFile>, AptError> {
        if !self.architectures.iter().any(|a| arch == a.as_str()) {
            let mut available = self.architectures.join(" ");
            if available.is_empty() {
                available = "none listed".into();
            }
            return Err(AptError::ArchitectureMissing {
                what: what.to_string(),
                arch: arch.to_string(),
                available,
            });
        }
        // Debian's security archive lists `updates/main` while its index paths are
        // `main/…` (the `updates` prefix is a compatibility alias); apt accepts `main`.
        let listed = |c: &String| c == component || c.strip_prefix("updates/") == Some(component);
        if !self.components.iter().any(listed) {
            let available = if self.components.is_empty() {
                "none listed".to_string()
            } else {
                self.components.join(" ")
            };
            return Err(AptError::ComponentMissing {
                what: what.to_string(),
                component: component.to_string(),
                available,
            });
        }
        let base = format!("{component}/binary-{arch}/Packages");
        let found: Vec<IndexFile> = PACKAGES_VARIANTS
            .into_iter()
            .filter_map(|compression| {
                let path = format!("{base}{}", compression.suffix());
                self.sha256.get(&path).map(|h| IndexFile {
                    size: h.size,
                    sha256: h.sha256.clone(),
                    path,
                    compression,
                })
            })
            .collect();
        if found.is_empty() {
            return Err(AptError::IndexMissing {
                what: what.to_string(),
                path: base,
            });
        }
        Ok(found)
    }
}

/// The `<sha512> <size> <path>` lines of a `SHA512` field: path → lowercase hex. A
/// line of another form is left out (the hash only names a by-hash URL).
fn sha512_lines(field: &deb822_fast::borrowed::BorrowedField<'_>) -> BTreeMap<String, String> {
    field
        .lines()
        .iter()
        .filter_map(
            |line| match line.split_ascii_whitespace().collect::<Vec<_>>()[..] {
                [hash, size, path]
                    if hash.len() == 128
                        && hash.bytes().all(|b| b.is_ascii_hexdigit())
                        && size.parse::<u64>().is_ok()
                        && is_safe_relative_path(path) =>
                {
                    Some((path.to_string(), hash.to_ascii_lowercase()))
                }
                _ => None,
            },
        )
        .collect()
}

pub(crate) fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Relative, `/`-separated, no empty, `.` or `..` components, no NUL.
pub(crate) fn is_safe_relative_path(p: &str) -> bool {
    !p.is_empty()
        && !p.contains('\0')
        && p.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
}

/// Parses a Release date such as `Sat, 11 Jul 2026 10:16:37 UTC` (also with a
/// one-digit hour, ` 0:46:15`, and with a numeric zone like `+0000`) into
/// unix seconds. The weekday is optional and not cross-checked.
pub fn parse_date(s: &str) -> Option<i64> {
    let mut tokens: Vec<&str> = s.split_ascii_whitespace().collect();
    if let Some(first) = tokens.first() {
        if let Some(day) = first.strip_suffix(',') {
            const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
            if !DAYS.iter().any(|d| d.eq_ignore_ascii_case(day)) {
                return None;
            }
            tokens.remove(0);
        }
    }
    let [day, month, year, time, zone] = tokens.as_slice() else {
        return None;
    };
    let day = parse_digits(day, 1, 2)?;
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(month))? as i64 + 1;
    let year = parse_digits(year, 4, 4)?;
    let mut hms = time.split(':');
    let hour = parse_digits(hms.next()?, 1, 2)?;
    let minute = parse_digits(hms.next()?, 2, 2)?;
    let second = parse_digits(hms.next()?, 2, 2)?;
    if hms.next().is_some() || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    if day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let offset = match *zone {
        "UTC" | "GMT" | "Z" | "UT" => 0,
        z => {
            let (sign, digits) = match z.as_bytes().first()? {
                b'+' => (1, &z[1..]),
                b'-' => (-1, &z[1..]),
                _ => return None,
            };
            let v = parse_digits(digits, 4, 4)?;
            let (h, m) = (v / 100, v % 100);
            if h > 23 || m > 59 {
                return None;
            }
            sign * (h * 3600 + m * 60)
        }
    };
    let days = days_from_civil(year, month, day);
    Some(days * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

fn parse_digits(s: &str, min: usize, max: usize) -> Option<i64> {
    if s.len() < min || s.len() > max || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12; // March = 0
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Decompresses an index (every xz stream, gzip member or zstd frame of it), checking
/// the format's own checksums, up to `limit` bytes of output. `what` names the file in
/// errors.
pub fn decompress(
    bytes: &[u8],
    compression: Compression,
    limit: u64,
    what: &str,
) -> Result<Vec<u8>, AptError> {
    let failed = |e: std::io::Error| AptError::Decompress {
        what: what.to_string(),
        compression: compression.name(),
        reason: if e.kind() == std::io::ErrorKind::UnexpectedEof {
            format!("the data is truncated ({e})")
        } else {
            e.to_string()
        },
    };
    let reader = decoder(bytes, compression, &DecodeOptions::CHECKED).map_err(failed)?;
    let mut out = Vec::new();
    reader
        .take(limit.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(failed)?;
    if out.len() as u64 > limit {
        return Err(AptError::TooLarge {
            what: what.to_string(),
            limit,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const H1: &str = "1111111111111111111111111111111111111111111111111111111111111111";
    const H2: &str = "2222222222222222222222222222222222222222222222222222222222222222";
    const H3: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

    fn body() -> String {
        format!(
            "Origin: Ubuntu\n\
             Label: Ubuntu\n\
             Suite: noble\n\
             Codename: noble\n\
             Date: Thu, 25 Apr 2024 15:10:33 UTC\n\
             Valid-Until: Thu, 2 May 2024  0:46:15 UTC\n\
             Architectures: amd64 arm64\n\
             Components: main universe\n\
             Acquire-By-Hash: yes\n\
             MD5Sum:\n 00000000000000000000000000000000 1 main/binary-amd64/Release\n\
             SHA256:\n\
             \x20{H1}  1234567 main/binary-amd64/Packages\n\
             \x20{H2}   345678 main/binary-amd64/Packages.gz\n\
             \x20{H3}      100 main/binary-arm64/Packages\n"
        )
    }

    #[test]
    fn parses_a_release_body() {
        let r = Release::parse(body().as_bytes(), "R").unwrap();
        assert_eq!(r.origin.as_deref(), Some("Ubuntu"));
        assert_eq!(r.label.as_deref(), Some("Ubuntu"));
        assert_eq!(r.suite.as_deref(), Some("noble"));
        assert_eq!(r.codename.as_deref(), Some("noble"));
        assert_eq!(r.date.as_deref(), Some("Thu, 25 Apr 2024 15:10:33 UTC"));
        assert_eq!(
            r.valid_until.as_deref(),
            Some("Thu, 2 May 2024  0:46:15 UTC")
        );
        assert_eq!(r.architectures, ["amd64", "arm64"]);
        assert_eq!(r.components, ["main", "universe"]);
        assert!(r.acquire_by_hash);
        assert_eq!(r.sha256.len(), 3);
        assert_eq!(
            r.sha256["main/binary-amd64/Packages"],
            IndexHash {
                size: 1234567,
                sha256: H1.into()
            }
        );
        // Uppercase hex is normalized to lowercase.
        assert_eq!(
            r.sha256["main/binary-arm64/Packages"].sha256,
            H3.to_lowercase()
        );
        // MD5Sum entries are not taken as hashes.
        assert!(!r.sha256.contains_key("main/binary-amd64/Release"));
    }

    #[test]
    fn by_hash_paths_use_the_strongest_hash_listed() {
        let r = Release::parse(body().as_bytes(), "R").unwrap();
        assert_eq!(
            r.by_hash_path("main/binary-amd64/Packages.gz").as_deref(),
            Some(format!("main/binary-amd64/by-hash/SHA256/{H2}").as_str())
        );
        assert_eq!(r.by_hash_path("main/binary-amd64/Packages.xz"), None);
        let h512 = "C".repeat(128);
        let with_512 = format!(
            "{}SHA512:\n {h512} 345678 main/binary-amd64/Packages.gz\n {} 1 main/binary-arm64/Packages\n",
            body(),
            "z".repeat(128)
        );
        let r = Release::parse(with_512.as_bytes(), "R").unwrap();
        assert_eq!(
            r.by_hash_path("main/binary-amd64/Packages.gz").as_deref(),
            Some(format!("main/binary-amd64/by-hash/SHA512/{}", "c".repeat(128)).as_str())
        );
        // A malformed SHA512 line is left out: SHA256 names that file.
        assert_eq!(
            r.by_hash_path("main/binary-arm64/Packages").as_deref(),
            Some(format!("main/binary-arm64/by-hash/SHA256/{}", H3.to_lowercase()).as_str())
        );
        let mut plain = r.clone();
        plain.acquire_by_hash = false;
        assert_eq!(plain.by_hash_path("main/binary-amd64/Packages.gz"), None);
    }

    #[test]
    fn malformed_sha256_lines_are_errors() {
        for (bad, needle) in [
            (format!(" {H1} 12\n"), "is not \"<sha256> <size> <path>\""),
            (
                format!(" {H1} 12 a b\n"),
                "is not \"<sha256> <size> <path>\"",
            ),
            (" 1234 12 main/x\n".to_string(), "not 64 hex digits"),
            (format!(" {H1} -1 main/x\n"), "is not a number"),
            (
                format!(" {H1} 12 /etc/passwd\n"),
                "not a plain relative path",
            ),
            (
                format!(" {H1} 12 main/../../x\n"),
                "not a plain relative path",
            ),
            (format!(" {H1} 1 main/x\n {H2} 1 main/x\n"), "twice"),
        ] {
            let text = format!("Suite: x\nSHA256:\n{bad}");
            let err = Release::parse(text.as_bytes(), "http://m/Release").unwrap_err();
            let msg = err.to_string();
            assert!(
                msg.contains(needle) && msg.contains("http://m/Release"),
                "{bad:?}: {msg}"
            );
        }
        let err = Release::parse(b"Suite: x\nMD5Sum:\n 0 1 a\n", "R").unwrap_err();
        assert!(err.to_string().contains("no SHA256"), "{err}");
        let err = Release::parse(b"Suite: x\n\nSuite: y\nSHA256:\n", "R").unwrap_err();
        assert!(err.to_string().contains("2 stanzas"), "{err}");
        let err = Release::parse(b"\xff\xfe", "R").unwrap_err();
        assert!(err.to_string().contains("UTF-8"), "{err}");
    }

    #[test]
    fn packages_indexes_order_and_fallback() {
        let r = Release::parse(body().as_bytes(), "R").unwrap();
        // amd64: no .xz listed → .gz then plain.
        let idx = r.packages_indexes("main", Arch::AMD64, "R").unwrap();
        let got: Vec<(&str, Compression, u64)> = idx
            .iter()
            .map(|i| (i.path.as_str(), i.compression, i.size))
            .collect();
        assert_eq!(
            got,
            [
                ("main/binary-amd64/Packages.gz", Compression::Gz, 345678),
                ("main/binary-amd64/Packages", Compression::None, 1234567),
            ]
        );
        assert_eq!(idx[0].sha256, H2);
        // All three, xz first.
        let text = format!(
            "Architectures: amd64\nComponents: main\nSHA256:\n {H1} 1 main/binary-amd64/Packages\n {H2} 2 main/binary-amd64/Packages.xz\n {H3} 3 main/binary-amd64/Packages.gz\n"
        );
        let r2 = Release::parse(text.as_bytes(), "R").unwrap();
        let order: Vec<Compression> = r2
            .packages_indexes("main", Arch::AMD64, "R")
            .unwrap()
            .iter()
            .map(|i| i.compression)
            .collect();
        assert_eq!(order, [Compression::Xz, Compression::Gz, Compression::None]);
    }

    #[test]
    fn security_archive_updates_prefix_covers_the_component() {
        // Debian's bookworm-security Release: `Components: updates/main …`, paths `main/…`.
        let text = format!(
            "Architectures: amd64\nComponents: updates/main updates/contrib\nSHA256:\n {H1} 1 main/binary-amd64/Packages\n"
        );
        let r = Release::parse(text.as_bytes(), "R").unwrap();
        let idx = r.packages_indexes("main", Arch::AMD64, "R").unwrap();
        assert_eq!(idx[0].path, "main/binary-amd64/Packages");
        assert!(r.packages_indexes("non-free", Arch::AMD64, "R").is_err());
    }

    #[test]
    fn packages_indexes_errors() {
        let r = Release::parse(body().as_bytes(), "http://m/InRelease").unwrap();
        let err = r
            .packages_indexes(
                "main",
                Arch::parse("riscv64").unwrap(),
                "http://m/InRelease",
            )
            .unwrap_err();
        assert!(matches!(err, AptError::ArchitectureMissing { .. }));
        let msg = err.to_string();
        assert!(
            msg.contains("riscv64") && msg.contains("amd64 arm64"),
            "{msg}"
        );
        let err = r
            .packages_indexes("restricted", Arch::AMD64, "R")
            .unwrap_err();
        assert!(matches!(err, AptError::ComponentMissing { .. }));
        assert!(err.to_string().contains("main universe"), "{err}");
        // Listed arch and component, but no index for them.
        let err = r
            .packages_indexes("universe", Arch::ARM64, "R")
            .unwrap_err();
        assert!(matches!(err, AptError::IndexMissing { .. }));
        assert!(
            err.to_string().contains("universe/binary-arm64/Packages"),
            "{err}"
        );
    }

    #[test]
    fn dates() {
        assert_eq!(parse_date("Thu, 01 Jan 1970 00:00:00 UTC"), Some(0));
        assert_eq!(
            parse_date("Sat, 11 Jul 2026 10:16:37 UTC"),
            Some(1_783_764_997)
        );
        // One-digit hour, with the padding space (Debian's Valid-Until).
        assert_eq!(
            parse_date("Sat, 30 Mar 2024  0:46:15 UTC"),
            Some(1_711_759_575)
        );
        assert_eq!(
            parse_date("Sat, 30 Mar 2024 0:46:15 UTC"),
            Some(1_711_759_575)
        );
        assert_eq!(
            parse_date("Sat, 30 Mar 2024 00:46:15 +0000"),
            Some(1_711_759_575)
        );
        assert_eq!(
            parse_date("Sat, 30 Mar 2024 02:46:15 +0200"),
            Some(1_711_759_575)
        );
        assert_eq!(
            parse_date("Fri, 29 Mar 2024 23:46:15 -0100"),
            Some(1_711_759_575)
        );
        assert_eq!(parse_date("30 Mar 2024 00:46:15 GMT"), Some(1_711_759_575));
        assert_eq!(
            parse_date("Thu, 29 Feb 2024 12:00:00 UTC"),
            Some(1_709_208_000)
        );
        for bad in [
            "",
            "Sat, 11 Jul 2026",
            "Sat, 11 Jul 2026 10:16 UTC",
            "Sat, 11 Jux 2026 10:16:37 UTC",
            "Sat, 32 Jul 2026 10:16:37 UTC",
            "Thu, 29 Feb 2023 10:16:37 UTC",
            "Sat, 11 Jul 2026 24:00:00 UTC",
            "Sat, 11 Jul 2026 10:16:37 CEST",
            "Sat, 11 Jul 26 10:16:37 UTC",
            "Xyz, 11 Jul 2026 10:16:37 UTC",
            "2026-07-11T10:16:37Z",
        ] {
            assert_eq!(parse_date(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn date_checks() {
        let r = Release::parse(body().as_bytes(), "http://m/InRelease").unwrap();
        let date = parse_date("Thu, 25 Apr 2024 15:10:33 UTC").unwrap();
        let until = parse_date("Thu, 2 May 2024 0:46:15 UTC").unwrap();
        r.check_dates(date, false, "R").unwrap();
        r.check_dates(until, false, "R").unwrap();
        let err = r
            .check_dates(until + 1, false, "http://m/InRelease")
            .unwrap_err();
        assert!(matches!(err, AptError::Expired { .. }));
        assert!(err.to_string().contains("http://m/InRelease"), "{err}");
        r.check_dates(until + 1, true, "R").unwrap();
        // Clock skew: up to the tolerance is fine, beyond is an error.
        r.check_dates(date - CLOCK_SKEW_TOLERANCE_SECS, false, "R")
            .unwrap();
        let err = r
            .check_dates(date - CLOCK_SKEW_TOLERANCE_SECS - 1, false, "R")
            .unwrap_err();
        assert!(matches!(err, AptError::NotYetValid { .. }), "{err}");
        // Even allow_expired does not accept metadata from the future.
        assert!(r.check_dates(date - 3600, true, "R").is_err());
        let mut bad = r.clone();
        bad.valid_until = Some("soon".into());
        let err = bad.check_dates(date, true, "R").unwrap_err();
        assert!(matches!(
            err,
            AptError::BadDate {
                field: "Valid-Until",
                ..
            }
        ));
    }

    fn xz(data: &[u8]) -> Vec<u8> {
        let mut e = liblzma::write::XzEncoder::new(Vec::new(), 6);
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn xz_concatenated_streams_decode_fully() {
        let a: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let b = b"Package: second-stream\n".repeat(1000);
        let mut both = xz(&a);
        both.extend_from_slice(&xz(&b));
        both.extend_from_slice(&xz(b"tail"));
        let out = decompress(&both, Compression::Xz, 10 << 20, "Packages.xz").unwrap();
        assert_eq!(out.len(), a.len() + b.len() + 4);
        assert_eq!(&out[..a.len()], &a[..]);
        assert_eq!(&out[a.len()..a.len() + b.len()], &b[..]);
        assert!(out.ends_with(b"tail"));
    }

    #[test]
    fn truncated_or_corrupt_xz_is_an_error() {
        let data = b"Package: x\n".repeat(10_000);
        let full = xz(&data);
        let cut = &full[..full.len() - 10];
        let err = decompress(cut, Compression::Xz, 1 << 30, "http://m/Packages.xz").unwrap_err();
        assert!(matches!(err, AptError::Decompress { .. }), "{err:?}");
        assert!(err.to_string().contains("http://m/Packages.xz"), "{err}");
        // Half of the second stream missing.
        let mut two = full.clone();
        let second = xz(b"more data more data");
        two.extend_from_slice(&second[..second.len() / 2]);
        assert!(decompress(&two, Compression::Xz, 1 << 30, "x").is_err());
        // Garbage after the streams.
        let mut junk = full.clone();
        junk.extend_from_slice(b"not xz");
        assert!(decompress(&junk, Compression::Xz, 1 << 30, "x").is_err());
        let mut flipped = full;
        let mid = flipped.len() / 2;
        flipped[mid] ^= 0xff;
        assert!(decompress(&flipped, Compression::Xz, 1 << 30, "x").is_err());
    }

    #[test]
    fn gzip_and_plain_and_limits() {
        let data = b"Package: gz\nVersion: 1\n".repeat(5000);
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(&data).unwrap();
        let gz = e.finish().unwrap();
        assert_eq!(
            decompress(&gz, Compression::Gz, 1 << 20, "g").unwrap(),
            data
        );
        let err = decompress(
            &gz[..gz.len() - 12],
            Compression::Gz,
            1 << 20,
            "Packages.gz",
        )
        .unwrap_err();
        assert!(matches!(err, AptError::Decompress { .. }), "{err:?}");

        let limit = data.len() as u64;
        assert_eq!(
            decompress(&gz, Compression::Gz, limit, "g").unwrap().len(),
            data.len()
        );
        let err = decompress(&gz, Compression::Gz, limit - 1, "Packages.gz").unwrap_err();
        assert!(matches!(err, AptError::TooLarge { .. }), "{err:?}");
        let err = decompress(&xz(&data), Compression::Xz, 1000, "Packages.xz").unwrap_err();
        assert!(
            matches!(err, AptError::TooLarge { limit: 1000, .. }),
            "{err:?}"
        );

        assert_eq!(
            decompress(b"abc", Compression::None, 3, "p").unwrap(),
            b"abc"
        );
        assert!(decompress(b"abcd", Compression::None, 3, "p").is_err());
    }
}
