//! `Packages` indexes: the stanzas of the packages a build asks for, with the
//! size and SHA256 every `.deb` is checked against; a whole text ([`parse_packages`]) or
//! an index as it streams ([`Stanzas`]).
//!
//! Parsing only: it must not fetch, decompress (see [`super::decompress_into`]) or choose
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

/// Longest stanza that is buffered to be parsed: far above any real one (the longest of
/// Debian bookworm's main index, `librust-winapi-dev`'s, is 76 KB). A stanza of a package
/// not kept is never buffered, whatever its length ([`Stanzas`]).
pub const STANZA_LIMIT: usize = 16 << 20;

/// An unfinished stanza this long is looked at before more of it is buffered: when it is
/// a package not kept, the rest streams by unbuffered.
const LOOK_AT: usize = 64 << 10;

/// Parses a `Packages` index, keeping only the stanzas whose `Package` passes
/// `keep`; the other stanzas are skipped without copying their fields.
///
/// Errors (naming `what`): text that is not deb822 or not UTF-8; a kept stanza missing
/// `Version`, `Architecture`, `Filename`, `Size` or `SHA256`; a `Filename`
/// that is absolute or has empty, `.` or `..` components or a NUL; a `SHA256`
/// that is not 64 hex digits; a stanza longer than [`STANZA_LIMIT`] that is kept (or
/// does not start with its `Package`); the same (name, version, architecture) twice
/// with different SHA256 (an identical repeat is kept once).
///
/// The whole text and every kept stanza are in memory: an index as it streams is read
/// with [`Stanzas`].
pub fn parse_packages(
    text: &[u8],
    what: &str,
    keep: &dyn Fn(&str) -> bool,
) -> Result<Vec<PackageEntry>, AptError> {
    let mut out: Vec<PackageEntry> = Vec::new();
    // (name, version, arch) -> index in `out`
    let mut seen: HashMap<(String, String, String), usize> = HashMap::new();
    let mut collect = |entry: PackageEntry| -> Result<(), AptError> {
        let key = (
            entry.name.clone(),
            entry.version.clone(),
            entry.architecture.clone(),
        );
        match seen.get(&key) {
            Some(&i) if out[i].sha256 != entry.sha256 => Err(conflict(what, &out[i], entry.sha256)),
            Some(_) => Ok(()),
            None => {
                seen.insert(key, out.len());
                out.push(entry);
                Ok(())
            }
        }
    };
    let mut stanzas = Stanzas::new(what, keep);
    stanzas.feed(text, &mut collect)?;
    stanzas.finish(&mut collect)?;
    Ok(out)
}

/// [`AptError::Conflict`]: `first` and a stanza of the same name, version and
/// architecture with SHA256 `second`.
pub(crate) fn conflict(what: &str, first: &PackageEntry, second: String) -> AptError {
    AptError::Conflict {
        what: what.to_string(),
        package: format!("{} {} ({})", first.name, first.version, first.architecture),
        first: first.sha256.clone(),
        second,
    }
}

/// A `Packages` index cut into stanzas as it streams: [`Stanzas::feed`] it the text in
/// pieces of any size, then [`Stanzas::finish`]; each kept stanza is handed on as a
/// [`PackageEntry`] (with the checks of [`parse_packages`], but no deduplication: the
/// caller collects).
///
/// Memory is bounded by the longest kept stanza, not by the index: a stanza ends at an
/// empty line and nowhere else, so the text is cut at every "\n\n". A piece that starts
/// with the archive's own `Package: <name>` line names its package there (its first
/// `Package` field); when the name is not kept, the piece is skipped without being
/// parsed (most of a 50 MB index is never tokenised), and one too long to buffer is let
/// by as it streams, only checked to be UTF-8. Any other piece goes through the deb822
/// parser whole, up to [`STANZA_LIMIT`] bytes.
pub struct Stanzas<'a> {
    what: &'a str,
    keep: &'a dyn Fn(&str) -> bool,
    /// The unfinished piece: what was fed after the last cut.
    buf: Vec<u8>,
    /// Offset in the index of the first byte not yet handed to a piece or skipped.
    offset: u64,
    /// Pieces seen so far (stanzas, for messages).
    n: usize,
    /// Inside a stanza not kept that was too long to buffer.
    skipping: Option<Skip>,
}

/// The state of a stanza being let by.
struct Skip {
    /// The last byte let by was a newline (a cut may straddle two feeds).
    newline: bool,
    /// The UTF-8 check of what was let by.
    utf8: Utf8Check,
}

impl<'a> Stanzas<'a> {
    /// Cut an index named `what` in errors, keeping the packages `keep` accepts.
    pub fn new(what: &'a str, keep: &'a dyn Fn(&str) -> bool) -> Stanzas<'a> {
        Stanzas {
            what,
            keep,
            buf: Vec::new(),
            offset: 0,
            n: 0,
            skipping: None,
        }
    }

    fn malformed(&self, reason: String) -> AptError {
        AptError::Packages {
            what: self.what.to_string(),
            reason,
        }
    }

    fn not_utf8(&self, at: u64) -> AptError {
        self.malformed(format!(
            "it is not UTF-8 text (invalid byte at offset {at})"
        ))
    }

    /// The next bytes of the index; `out` gets each kept stanza completed by them.
    pub fn feed(
        &mut self,
        mut bytes: &[u8],
        out: &mut dyn FnMut(PackageEntry) -> Result<(), AptError>,
    ) -> Result<(), AptError> {
        let finder = memchr::memmem::Finder::new(b"\n\n");
        while !bytes.is_empty() {
            // The end of the current piece: a cut straddling the previous feed, or the
            // first "\n\n" of these bytes.
            let newline_before = match &self.skipping {
                Some(skip) => skip.newline,
                None => self.buf.last() == Some(&b'\n'),
            };
            let end = if newline_before && bytes[0] == b'\n' {
                Some(1)
            } else {
                finder.find(bytes).map(|i| i + 2)
            };
            let take = end.unwrap_or(bytes.len());
            let (now, rest) = bytes.split_at(take);
            bytes = rest;
            if let Some(mut skip) = self.skipping.take() {
                let checked = skip.utf8.check(now, self.offset);
                checked.map_err(|at| self.not_utf8(at))?;
                skip.newline = now.last() == Some(&b'\n');
                self.offset += now.len() as u64;
                match end {
                    Some(_) => skip.utf8.end(self.offset).map_err(|at| self.not_utf8(at))?,
                    None => self.skipping = Some(skip),
                }
                continue;
            }
            if end.is_none() {
                self.buf.extend_from_slice(now);
                self.unfinished()?;
                continue;
            }
            if self.buf.is_empty() {
                self.piece(now, out)?;
            } else {
                let mut piece = std::mem::take(&mut self.buf);
                piece.extend_from_slice(now);
                self.piece(&piece, out)?;
                piece.clear();
                self.buf = piece;
            }
        }
        Ok(())
    }

    /// After the last [`Stanzas::feed`]: the last stanza, when the index does not end
    /// with an empty line.
    pub fn finish(
        mut self,
        out: &mut dyn FnMut(PackageEntry) -> Result<(), AptError>,
    ) -> Result<(), AptError> {
        if let Some(skip) = self.skipping.take() {
            return skip.utf8.end(self.offset).map_err(|at| self.not_utf8(at));
        }
        let piece = std::mem::take(&mut self.buf);
        if !piece.is_empty() {
            self.piece(&piece, out)?;
        }
        Ok(())
    }

    /// The unfinished piece grew: let it by when it is long and names a package not
    /// kept; refuse it beyond [`STANZA_LIMIT`].
    fn unfinished(&mut self) -> Result<(), AptError> {
        if self.buf.len() < LOOK_AT {
            return Ok(());
        }
        if self.skippable(&self.buf, false) == Some(true) {
            let mut utf8 = Utf8Check::default();
            utf8.check(&self.buf, self.offset)
                .map_err(|at| self.not_utf8(at))?;
            self.n += 1;
            self.offset += self.buf.len() as u64;
            self.skipping = Some(Skip {
                newline: self.buf.last() == Some(&b'\n'),
                utf8,
            });
            self.buf = Vec::new();
            return Ok(());
        }
        if self.buf.len() > STANZA_LIMIT {
            return Err(self.malformed(format!(
                "stanza {} is longer than {STANZA_LIMIT} bytes (no empty line ends it); refusing it",
                self.n + 1
            )));
        }
        Ok(())
    }

    /// Does `piece` start with the `Package: <name>` line of a package not kept? None
    /// when the piece is not `complete` and its first line (and the byte after it, which
    /// says whether the field goes on) is not all there yet.
    fn skippable(&self, piece: &[u8], complete: bool) -> Option<bool> {
        let Some(rest) = piece.strip_prefix(b"Package: ") else {
            return Some(false);
        };
        let eol = memchr::memchr(b'\n', rest);
        let line = &rest[..eol.unwrap_or(rest.len())];
        let after = eol.map(|i| rest.get(i + 1));
        let continued = match after {
            Some(Some(&b)) => b == b' ' || b == b'\t',
            _ if complete => false,
            _ => return None,
        };
        let Ok(name) = std::str::from_utf8(line) else {
            return Some(false);
        };
        Some(!continued && !name.trim().is_empty() && !(self.keep)(name.trim()))
    }

    /// One whole piece: at most one stanza, after any blank or comment lines before it.
    fn piece(
        &mut self,
        piece: &[u8],
        out: &mut dyn FnMut(PackageEntry) -> Result<(), AptError>,
    ) -> Result<(), AptError> {
        let text = std::str::from_utf8(piece)
            .map_err(|e| self.not_utf8(self.offset + e.valid_up_to() as u64))?;
        self.offset += piece.len() as u64;
        if self.skippable(piece, true) == Some(true) {
            self.n += 1;
            return Ok(());
        }
        for para in iter_paragraphs_borrowed(text) {
            self.n += 1;
            let n = self.n;
            let para = para.map_err(|e| self.malformed(format!("stanza {n}: {e}")))?;
            let name = match para.get_field("Package").and_then(|f| f.as_single_line()) {
                Some(name) if !name.trim().is_empty() => name.trim(),
                _ => {
                    return Err(
                        self.malformed(format!("stanza {n} has no single-line Package field"))
                    )
                }
            };
            if !(self.keep)(name) {
                continue;
            }
            out(entry_from(&para, name, self.what)?)?;
        }
        Ok(())
    }
}

/// UTF-8 checked across pieces cut anywhere: a sequence cut at the end of one piece is
/// completed by the next.
#[derive(Default)]
struct Utf8Check {
    /// The start of a sequence the last piece ended in, and its length.
    carry: [u8; 4],
    len: usize,
}

impl Utf8Check {
    /// Check `data`, which starts at offset `at` of the index; the offset of the first
    /// invalid byte on error.
    fn check(&mut self, mut data: &[u8], mut at: u64) -> Result<(), u64> {
        if self.len > 0 {
            let start = at - self.len as u64;
            let width = match self.carry[0] {
                0xC0..=0xDF => 2,
                0xE0..=0xEF => 3,
                _ => 4,
            };
            let need = (width - self.len).min(data.len());
            self.carry[self.len..self.len + need].copy_from_slice(&data[..need]);
            self.len += need;
            data = &data[need..];
            at += need as u64;
            match std::str::from_utf8(&self.carry[..self.len]) {
                Ok(_) => self.len = 0,
                Err(e) if e.error_len().is_none() && data.is_empty() => return Ok(()),
                Err(_) => return Err(start),
            }
        }
        match std::str::from_utf8(data) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_none() => {
                let tail = &data[e.valid_up_to()..];
                self.carry[..tail.len()].copy_from_slice(tail);
                self.len = tail.len();
                Ok(())
            }
            Err(e) => Err(at + e.valid_up_to() as u64),
        }
    }

    /// The text ends at offset `at`: no sequence may be left open.
    fn end(self, at: u64) -> Result<(), u64> {
        if self.len > 0 {
            Err(at - self.len as u64)
        } else {
            Ok(())
        }
    }
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

    /// `text` fed to [`Stanzas`] in pieces of `size` bytes: the entries, or the error.
    fn streamed(
        text: &[u8],
        size: usize,
        keep: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<PackageEntry>, AptError> {
        let mut out = Vec::new();
        let mut collect = |e: PackageEntry| {
            out.push(e);
            Ok(())
        };
        let mut stanzas = Stanzas::new("P", keep);
        for piece in text.chunks(size.max(1)) {
            stanzas.feed(piece, &mut collect)?;
        }
        stanzas.finish(&mut collect)?;
        Ok(out)
    }

    #[test]
    fn pieces_of_any_size_give_the_same_stanzas() {
        let keep = |n: &str| n != "skipped";
        let good = [
            stanza("libc6", "2.39", "pool/libc6.deb", SUM),
            "# a comment line before a stanza\n".to_string()
                + &stanza("zlib1g", "1:1.3", "pool/z.deb", SUM),
            stanza("skipped", "1", "pool/s.deb", SUM),
            stanza("tzdata", "2024a", "pool/t.deb", SUM)
                .trim_end()
                .to_string(),
        ]
        .join("\n");
        // The fourth stanza has a multi-line Package field: not skipped, an error.
        let bad = good.replacen("Package: skipped\n", "Package: skipped\n more\n", 1);
        for text in [good, bad] {
            let whole = parse_packages(text.as_bytes(), "P", &keep);
            for size in [1, 2, 3, 7, 64, 1000, text.len()] {
                let got = streamed(text.as_bytes(), size, &keep);
                match (&whole, &got) {
                    (Ok(a), Ok(b)) => assert_eq!(a, b, "pieces of {size}"),
                    (a, b) => assert_eq!(format!("{a:?}"), format!("{b:?}"), "pieces of {size}"),
                }
            }
            match whole {
                Ok(entries) => assert_eq!(entries.len(), 3),
                Err(e) => assert!(
                    e.to_string()
                        .contains("stanza 3 has no single-line Package field"),
                    "{e}"
                ),
            }
        }
    }

    #[test]
    fn a_long_stanza_not_kept_streams_by_and_a_kept_one_has_a_limit() {
        let filler = "Description: x\n".to_string() + &" padding line\n".repeat(LOOK_AT / 7);
        let big = format!("Package: big\n{filler}");
        let text = format!(
            "{big}\n{}\n{big}",
            stanza("libc6", "2.39", "pool/libc6.deb", SUM)
        );
        assert!(text.len() > 2 * LOOK_AT);
        for size in [1000, 4096, 1 << 20] {
            let got = streamed(text.as_bytes(), size, &|n| n == "libc6").unwrap();
            assert_eq!(got.len(), 1, "pieces of {size}");
            assert_eq!(got[0].name, "libc6");
        }
        // Not kept: nothing is buffered, whatever its length (the limit is not reached).
        let mut stanzas = Stanzas::new("P", &|n| n == "libc6");
        let mut none = |_: PackageEntry| -> Result<(), AptError> { panic!("nothing is kept") };
        stanzas
            .feed(b"Package: huge\nDescription: x\n", &mut none)
            .unwrap();
        let line = b" the same line of a description that never ends\n".repeat(1 << 10);
        for _ in 0..(2 * STANZA_LIMIT / line.len()) {
            stanzas.feed(&line, &mut none).unwrap();
            assert!(stanzas.buf.len() <= LOOK_AT + line.len());
        }
        stanzas.finish(&mut none).unwrap();
        // Kept, or not starting with its Package field: refused beyond the limit.
        for head in ["Package: libc6\n", "Version: 1\nPackage: other\n"] {
            let mut stanzas = Stanzas::new("http://m/Packages", &|n| n == "libc6");
            let mut none = |_: PackageEntry| Ok(());
            stanzas.feed(head.as_bytes(), &mut none).unwrap();
            let err = (0..)
                .find_map(|_| stanzas.feed(&line, &mut none).err())
                .unwrap();
            assert_eq!(
                err.to_string(),
                format!("http://m/Packages: malformed Packages index: stanza 1 is longer than {STANZA_LIMIT} bytes (no empty line ends it); refusing it")
            );
        }
    }

    #[test]
    fn invalid_utf8_is_found_at_its_offset_in_pieces_of_any_size() {
        let head = "Package: big\nDescription: x\n".to_string() + &" é line\n".repeat(LOOK_AT / 8);
        for (bad_at, bytes) in [
            // A lone continuation byte in a stanza that is let by.
            (head.len() + 4, {
                let mut b = head.clone().into_bytes();
                b.extend_from_slice(b" ok \x80 bad\n\n");
                b
            }),
            // A sequence cut by the end of the text.
            (head.len() + 1, {
                let mut b = head.clone().into_bytes();
                b.extend_from_slice(b" \xc3");
                b
            }),
            // A two-byte sequence whose second byte is a newline.
            (head.len() + 1, {
                let mut b = head.clone().into_bytes();
                b.extend_from_slice(b" \xc3\n\n");
                b
            }),
        ] {
            for size in [1, 2, 3, 1000, 1 << 20] {
                let err = streamed(&bytes, size, &|_| false).unwrap_err();
                assert_eq!(
                    err.to_string(),
                    format!("P: malformed Packages index: it is not UTF-8 text (invalid byte at offset {bad_at})"),
                    "pieces of {size}"
                );
            }
        }
        // Valid multi-byte text cut anywhere is fine.
        assert!(streamed(head.as_bytes(), 1, &|_| false).unwrap().is_empty());
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
