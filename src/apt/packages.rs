//! `Packages` indexes: the stanzas of the packages a build asks for, with the
//! size and SHA256 every `.deb` is checked against.
//!
//! Parsing only: it must not fetch, decompress (see [`super::decompress`]) or choose
//! between versions (that is [`super::resolve`]).

use std::collections::HashMap;

use deb822_fast::borrowed::{iter_paragraphs_borrowed, BorrowedParagraph};

use super::release::{is_safe_relative_path, is_sha256_hex};
use super::AptError;

/// The fields of one `Packages` stanza that the pipeline needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackageEntry {
    /// `Package`: the binary package name.
    pub name: String,
    /// `Version`, without whitespace.
    pub version: String,
    /// `Architecture` as written: a Debian architecture or `all`.
    pub architecture: String,
    /// Relative to the repository root, e.g. `pool/main/z/zlib/zlib1g_….deb`.
    pub filename: String,
    /// `Size` of the `.deb`, bytes.
    pub size: u64,
    /// Lowercase hex.
    pub sha256: String,
    /// `Source`, when given (`name` or `name (version)`).
    pub source: Option<String>,
    /// `Depends`, continuation lines joined with spaces.
    pub depends: Option<String>,
    /// `Pre-Depends`, continuation lines joined with spaces.
    pub pre_depends: Option<String>,
    /// `Provides`, continuation lines joined with spaces.
    pub provides: Option<String>,
}

/// Parses a `Packages` index, keeping only the stanzas whose `Package` passes
/// `keep`; the other stanzas are skipped without copying their fields.
///
/// Errors (naming `what`): text that is not deb822; a kept stanza missing
/// `Version`, `Architecture`, `Filename`, `Size` or `SHA256`; a `Filename`
/// that is absolute or has empty, `.` or `..` components or a NUL; a `SHA256`
/// that is not 64 hex digits; the same (name, version, architecture) twice
/// with different SHA256 (an identical repeat is kept once).
pub fn parse_packages(
    text: &[u8],
    what: &str,
    keep: &dyn Fn(&str) -> bool,
) -> Result<Vec<PackageEntry>, AptError> {
    let malformed = |reason: String| AptError::Packages {
        what: what.to_string(),
        reason,
    };
    let text = std::str::from_utf8(text).map_err(|e| {
        malformed(format!(
            "it is not UTF-8 text (invalid byte at offset {})",
            e.valid_up_to()
        ))
    })?;
    let mut out: Vec<PackageEntry> = Vec::new();
    // (name, version, arch) -> index in `out`
    let mut seen: HashMap<(String, String, String), usize> = HashMap::new();
    // A stanza ends at an empty line and nowhere else, so the text is cut at every
    // "\n\n" first. A piece that starts with the archive's own `Package: <name>` line
    // names its package there (that is its first Package field); when the name is not
    // kept, the piece is skipped without being parsed: most of a 50 MB index is never
    // tokenised. Any other piece goes through the deb822 parser whole.
    let mut n = 0usize;
    for piece in stanza_pieces(text) {
        if let Some(rest) = piece.strip_prefix("Package: ") {
            let first_line = rest.split('\n').next().unwrap_or("");
            let continued = rest[first_line.len()..].starts_with("\n ")
                || rest[first_line.len()..].starts_with("\n\t");
            if !continued && !first_line.trim().is_empty() && !keep(first_line.trim()) {
                n += 1;
                continue;
            }
        }
        for para in iter_paragraphs_borrowed(piece) {
            n += 1;
            let para = para.map_err(|e| malformed(format!("stanza {n}: {e}")))?;
            let name = match para.get_field("Package").and_then(|f| f.as_single_line()) {
                Some(name) if !name.trim().is_empty() => name.trim(),
                _ => {
                    return Err(malformed(format!(
                        "stanza {n} has no single-line Package field"
                    )))
                }
            };
            if !keep(name) {
                continue;
            }
            let entry = entry_from(&para, name, what)?;
            let key = (
                entry.name.clone(),
                entry.version.clone(),
                entry.architecture.clone(),
            );
            match seen.get(&key) {
                Some(&i) if out[i].sha256 != entry.sha256 => {
                    return Err(AptError::Conflict {
                        what: what.to_string(),
                        package: format!(
                            "{} {} ({})",
                            entry.name, entry.version, entry.architecture
                        ),
                        first: out[i].sha256.clone(),
                        second: entry.sha256,
                    });
                }
                Some(_) => {}
                None => {
                    seen.insert(key, out.len());
                    out.push(entry);
                }
            }
        }
    }
    Ok(out)
}

/// `text` cut after every empty line ("\n\n"): each piece holds at most one stanza
/// (after any blank or comment lines before it).
fn stanza_pieces(text: &str) -> impl Iterator<Item = &str> {
    let mut start = 0;
    let mut cuts = memchr::memmem::find_iter(text.as_bytes(), b"\n\n");
    std::iter::from_fn(move || {
        if start >= text.len() {
            return None;
        }
        let end = cuts.next().map_or(text.len(), |i| i + 2);
        let piece = &text[start..end];
        start = end;
        Some(piece)
    })
}

fn entry_from(
    para: &BorrowedParagraph<'_>,
    name: &str,
    what: &str,
) -> Result<PackageEntry, AptError> {
    let required = |field: &'static str| -> Result<&str, AptError> {
        let missing = || AptError::MissingField {
            what: what.to_string(),
            package: name.to_string(),
            field,
        };
        let f = para.get_field(field).ok_or_else(missing)?;
        let v = f.as_single_line().ok_or_else(|| AptError::BadField {
            what: what.to_string(),
            package: name.to_string(),
            field,
            value: f.join(),
            reason: "it spans several lines",
        })?;
        let v = v.trim();
        if v.is_empty() {
            return Err(missing());
        }
        Ok(v)
    };
    let bad = |field: &'static str, value: &str, reason: &'static str| AptError::BadField {
        what: what.to_string(),
        package: name.to_string(),
        field,
        value: value.to_string(),
        reason,
    };
    let optional = |field: &str| -> Option<String> {
        para.get_field(field).map(|f| {
            let lines = f.lines();
            if lines.len() == 1 {
                lines[0].trim().to_string()
            } else {
                lines
                    .iter()
                    .map(|l| l.trim())
                    .filter(|l| !l.is_empty())
                    .collect::<Vec<_>>()
                    .join(" ")
            }
        })
    };

    let version = required("Version")?;
    if version.chars().any(char::is_whitespace) {
        return Err(bad("Version", version, "it contains whitespace"));
    }
    let architecture = required("Architecture")?;
    let filename = required("Filename")?;
    if filename.starts_with('/') {
        return Err(bad("Filename", filename, "it is an absolute path"));
    }
    if filename.contains('\0') {
        return Err(bad("Filename", filename, "it contains a NUL byte"));
    }
    if !is_safe_relative_path(filename) {
        return Err(bad(
            "Filename",
            filename,
            "it has an empty, `.` or `..` path component",
        ));
    }
    let size_text = required("Size")?;
    let size: u64 = size_text
        .parse()
        .map_err(|_| bad("Size", size_text, "it is not a decimal number of bytes"))?;
    let sha256 = required("SHA256")?;
    if !is_sha256_hex(sha256) {
        return Err(bad("SHA256", sha256, "it is not 64 hexadecimal digits"));
    }
    Ok(PackageEntry {
        name: name.to_string(),
        version: version.to_string(),
        architecture: architecture.to_string(),
        filename: filename.to_string(),
        size,
        sha256: sha256.to_ascii_lowercase(),
        source: optional("Source"),
        depends: optional("Depends"),
        pre_depends: optional("Pre-Depends"),
        provides: optional("Provides"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUM: &str = "3f4a7b1e4c8d0b2e5a6f7c8d9e0a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2";

    fn stanza(name: &str, version: &str, filename: &str, sha: &str) -> String {
        format!(
            "Package: {name}\nSource: {name}-src (1.0)\nVersion: {version}\nArchitecture: amd64\n\
             Pre-Depends: libc6 (>= 2.34)\nDepends: libgcc-s1,\n zlib1g (>= 1:1.2)\nProvides: virt\n\
             Filename: {filename}\nSize: 4242\nSHA256: {sha}\nDescription: short\n long\n"
        )
    }

    #[test]
    fn keeps_only_selected_stanzas() {
        let text = [
            stanza("libc6", "2.39-0ubuntu8", "pool/main/g/glibc/libc6.deb", SUM),
            stanza(
                "zlib1g",
                "1:1.3",
                "pool/main/z/zlib/zlib1g.deb",
                &SUM.to_uppercase(),
            ),
            "Package: skipped\nVersion: 1\n".to_string(), // incomplete but not kept
        ]
        .join("\n");
        let got = parse_packages(text.as_bytes(), "P", &|n| n != "skipped").unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[0],
            PackageEntry {
                name: "libc6".into(),
                version: "2.39-0ubuntu8".into(),
                architecture: "amd64".into(),
                filename: "pool/main/g/glibc/libc6.deb".into(),
                size: 4242,
                sha256: SUM.into(),
                source: Some("libc6-src (1.0)".into()),
                depends: Some("libgcc-s1, zlib1g (>= 1:1.2)".into()),
                pre_depends: Some("libc6 (>= 2.34)".into()),
                provides: Some("virt".into()),
            }
        );
        assert_eq!(got[1].version, "1:1.3");
        assert_eq!(got[1].sha256, SUM, "SHA256 is normalized to lowercase");
        assert!(parse_packages(text.as_bytes(), "P", &|_| false)
            .unwrap()
            .is_empty());
    }

    fn err_of(text: &str) -> AptError {
        parse_packages(text.as_bytes(), "http://m/Packages.xz", &|_| true).unwrap_err()
    }

    #[test]
    fn missing_fields_are_errors() {
        let full = stanza("p", "1.0", "pool/p.deb", SUM);
        for field in ["Version", "Architecture", "Filename", "Size", "SHA256"] {
            let text: String = full
                .lines()
                .filter(|l| !l.starts_with(&format!("{field}:")))
                .map(|l| format!("{l}\n"))
                .collect();
            let err = err_of(&text);
            assert!(
                matches!(&err, AptError::MissingField { field: f, package, .. } if *f == field && package == "p"),
                "{field}: {err:?}"
            );
            let msg = err.to_string();
            assert!(
                msg.contains("http://m/Packages.xz") && msg.contains(field),
                "{msg}"
            );
        }
        let err = err_of("Version: 1\nSize: 3\n");
        assert!(matches!(err, AptError::Packages { .. }), "{err:?}");
    }

    #[test]
    fn unsafe_filenames_are_errors() {
        for bad in [
            "/pool/main/p.deb",
            "pool/../../etc/passwd",
            "..",
            "pool//p.deb",
            "pool/p.deb/",
            "pool/./p.deb",
            "pool/p\0.deb",
        ] {
            let err = err_of(&stanza("p", "1", bad, SUM));
            assert!(
                matches!(
                    &err,
                    AptError::BadField {
                        field: "Filename",
                        ..
                    }
                ),
                "{bad:?}: {err:?}"
            );
        }
    }

    #[test]
    fn bad_hashes_and_sizes_are_errors() {
        for bad in [&SUM[..63], &format!("{SUM}0"), &SUM.replace('3', "g"), ""] {
            let err = err_of(&stanza("p", "1", "pool/p.deb", bad));
            assert!(
                matches!(
                    &err,
                    AptError::BadField {
                        field: "SHA256",
                        ..
                    } | AptError::MissingField {
                        field: "SHA256",
                        ..
                    }
                ),
                "{bad:?}: {err:?}"
            );
        }
        let text = stanza("p", "1", "pool/p.deb", SUM).replace("Size: 4242", "Size: -1");
        assert!(matches!(
            err_of(&text),
            AptError::BadField { field: "Size", .. }
        ));
        let text = stanza("p", "1", "pool/p.deb", SUM).replace("Size: 4242", "Size: 12kB");
        assert!(matches!(
            err_of(&text),
            AptError::BadField { field: "Size", .. }
        ));
    }

    #[test]
    fn duplicates() {
        let other = SUM.replace('3', "4");
        let a = stanza("p", "1", "pool/p.deb", SUM);
        // Identical repeat: kept once.
        let same = format!("{a}\n{a}");
        let got = parse_packages(same.as_bytes(), "P", &|_| true).unwrap();
        assert_eq!(got.len(), 1);
        // Other version: both kept.
        let two = format!("{a}\n{}", stanza("p", "2", "pool/p2.deb", &other));
        assert_eq!(
            parse_packages(two.as_bytes(), "P", &|_| true)
                .unwrap()
                .len(),
            2
        );
        // Same (name, version, arch), different hash: error naming both.
        let clash = format!("{a}\n{}", stanza("p", "1", "pool/p.deb", &other));
        let err = err_of(&clash);
        assert!(matches!(err, AptError::Conflict { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains(SUM) && msg.contains(&other) && msg.contains("p 1 (amd64)"),
            "{msg}"
        );
    }

    #[test]
    fn malformed_text_is_an_error() {
        let err = err_of("Package: p\nthis line has no colon\n");
        assert!(matches!(err, AptError::Packages { .. }), "{err:?}");
        let err = parse_packages(b"Package: p\n\xff", "P", &|_| true).unwrap_err();
        assert!(err.to_string().contains("UTF-8"), "{err}");
    }

    #[test]
    fn real_bookworm_packages_index() {
        let Some(text) = crate::apt::test_support::host_packages() else {
            return;
        };
        let stanzas = text
            .split(|&b| b == b'\n')
            .filter(|l| l.starts_with(b"Package: "))
            .count();
        let start = std::time::Instant::now();
        let wanted = ["libc6", "libstdc++6", "zlib1g", "tzdata", "ca-certificates"];
        let kept = parse_packages(&text, "bookworm Packages", &|n| wanted.contains(&n)).unwrap();
        let selective = start.elapsed();
        let start = std::time::Instant::now();
        let all = parse_packages(&text, "bookworm Packages", &|_| true).unwrap();
        let everything = start.elapsed();
        println!(
            "{} MB, {stanzas} stanzas: selective parse {selective:?}, full parse {everything:?}",
            text.len() >> 20
        );
        assert_eq!(all.len(), stanzas);
        let mut names: Vec<&str> = kept.iter().map(|e| e.name.as_str()).collect();
        names.sort();
        names.dedup();
        let mut expected = wanted.to_vec();
        expected.sort();
        assert_eq!(names, expected);
        let libc = kept.iter().find(|e| e.name == "libc6").unwrap();
        assert!(
            libc.filename.starts_with("pool/main/g/glibc/libc6_2.36-"),
            "{libc:?}"
        );
        assert!(libc.version.starts_with("2.36-"));
        assert_eq!(libc.architecture, "amd64");
        let tz = kept.iter().find(|e| e.name == "tzdata").unwrap();
        assert_eq!(tz.architecture, "all");
        assert!(all.iter().all(|e| e.sha256.len() == 64 && e.size > 0));
    }
}
