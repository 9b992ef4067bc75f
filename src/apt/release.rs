//! The `Release` file (the verified body of `InRelease`, or `Release`): its
//! dates, architectures, components and the SHA256 of every index, plus
//! decompression of the indexes it lists.

use std::collections::BTreeMap;
use std::io::Read;

use deb822_fast::borrowed::parse_borrowed;

use super::AptError;

/// How far in the future a `Date:` may be before the Release is refused
/// (clock skew between this machine and the archive): 10 minutes.
pub const CLOCK_SKEW_TOLERANCE_SECS: i64 = 600;

/// The fields of a `Release` file that the trust chain uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Release {
    pub origin: Option<String>,
    pub label: Option<String>,
    pub suite: Option<String>,
    pub codename: Option<String>,
    pub date: Option<String>,
    pub valid_until: Option<String>,
    pub architectures: Vec<String>,
    pub components: Vec<String>,
    pub acquire_by_hash: bool,
    /// Path relative to `dists/<suite>/` → size and SHA256.
    pub sha256: BTreeMap<String, IndexHash>,
}

/// Size and SHA256 (lowercase hex) of a file listed in `Release`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexHash {
    pub size: u64,
    pub sha256: String,
}

/// Compression of an index file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    Xz,
    Gz,
    None,
}

impl Compression {
    fn name(self) -> &'static str {
        match self {
            Compression::Xz => "xz",
            Compression::Gz => "gzip",
            Compression::None => "uncompressed",
        }
    }
}

/// One variant of an index that `Release` lists, with its expected hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexFile {
    /// Relative to `dists/<suite>/`, e.g. `main/binary-arm64/Packages.xz`.
    pub path: String,
    pub size: u64,
    pub sha256: String,
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
        arch: &str,
        what: &str,
    ) -> Result<Vec<IndexFile>, AptError> {
        if !self.architectures.iter().any(|a| a == arch) {
            let mut available = self.architectures.join(" ");
            if available.is_empty() {
                available = "none listed".into();
            }
            if arch == "all" {
                available.push_str("; `all` packages are in each binary-<arch> index");
            }
            return Err(AptError::ArchitectureMissing {
                what: what.to_string(),
                arch: arch.to_string(),
                available,
            });
        }
        if !self.components.iter().any(|c| c == component) {
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
        let found: Vec<IndexFile> = [
            (".xz", Compression::Xz),
            (".gz", Compression::Gz),
            ("", Compression::None),
        ]
        .into_iter()
        .filter_map(|(suffix, compression)| {
            let path = format!("{base}{suffix}");
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

/// Decompresses an index (all concatenated xz streams or gzip members), up to
/// `limit` bytes of output. `what` names the file in errors.
pub fn decompress(
    bytes: &[u8],
    compression: Compression,
    limit: u64,
    what: &str,
) -> Result<Vec<u8>, AptError> {
    let too_large = || AptError::TooLarge {
        what: what.to_string(),
        limit,
    };
    let reader: Box<dyn Read + '_> = match compression {
        Compression::None => {
            if bytes.len() as u64 > limit {
                return Err(too_large());
            }
            return Ok(bytes.to_vec());
        }
        Compression::Xz => Box::new(liblzma::read::XzDecoder::new_multi_decoder(bytes)),
        Compression::Gz => Box::new(flate2::read::MultiGzDecoder::new(bytes)),
    };
    let mut out = Vec::new();
    reader
        .take(limit.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| AptError::Decompress {
            what: what.to_string(),
            compression: compression.name(),
            reason: if e.kind() == std::io::ErrorKind::UnexpectedEof {
                format!("the data is truncated ({e})")
            } else {
                e.to_string()
            },
        })?;
    if out.len() as u64 > limit {
        return Err(too_large());
    }
    Ok(out)
}
