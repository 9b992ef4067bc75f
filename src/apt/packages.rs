//! `Packages` indexes: the stanzas of the packages a build asks for, with the
//! size and SHA256 every `.deb` is checked against.

use std::collections::HashMap;

use deb822_fast::borrowed::{iter_paragraphs_borrowed, BorrowedParagraph};

use super::release::{is_safe_relative_path, is_sha256_hex};
use super::AptError;

/// The fields of one `Packages` stanza that the pipeline needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackageEntry {
    pub name: String,
    pub version: String,
    pub architecture: String,
    /// Relative to the repository root, e.g. `pool/main/z/zlib/zlib1g_….deb`.
    pub filename: String,
    pub size: u64,
    /// Lowercase hex.
    pub sha256: String,
    pub source: Option<String>,
    pub depends: Option<String>,
    pub pre_depends: Option<String>,
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
    for (n, para) in iter_paragraphs_borrowed(text).enumerate() {
        let para = para.map_err(|e| malformed(format!("stanza {}: {e}", n + 1)))?;
        let name = match para.get_field("Package").and_then(|f| f.as_single_line()) {
            Some(name) if !name.trim().is_empty() => name.trim(),
            _ => {
                return Err(malformed(format!(
                    "stanza {} has no single-line Package field",
                    n + 1
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
                    package: format!("{} {} ({})", entry.name, entry.version, entry.architecture),
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
    Ok(out)
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
