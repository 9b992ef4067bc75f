//! The apt trust chain over bytes (docs/architecture.md, "The trust chain"): OpenPGP verification of
//! `InRelease` / `Release`+`Release.gpg`, the `Release` file, `Packages`
//! indexes, a package's own `control` file and Debian version ordering.
//!
//! Nothing here touches the network or the file system: callers hand in the
//! bytes they fetched and a `what` (usually the URL) that errors name.

pub mod control;
pub mod packages;
pub mod release;
pub mod resolve;
pub mod signature;
pub mod version;

#[cfg(test)]
pub(crate) mod test_support {
    /// The real Debian bookworm main/amd64 index of this host (apt stores it
    /// lz4-compressed), or None with the reason.
    pub fn host_packages() -> Option<Vec<u8>> {
        let dir = std::path::Path::new("/var/lib/apt/lists");
        let file = std::fs::read_dir(dir).ok().and_then(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path())).find(|p| {
                p.to_string_lossy()
                    .ends_with("_dists_bookworm_main_binary-amd64_Packages.lz4")
            })
        });
        let Some(file) = file else {
            println!("SKIPPED: no *bookworm_main_binary-amd64_Packages.lz4 in /var/lib/apt/lists");
            return None;
        };
        match std::process::Command::new("lz4")
            .arg("-dc")
            .arg(&file)
            .output()
        {
            Ok(out) if out.status.success() => Some(out.stdout),
            Ok(out) => panic!("lz4 -dc {} failed: {:?}", file.display(), out.status),
            Err(e) => {
                println!(
                    "SKIPPED: lz4 is not installed ({e}); cannot read {}",
                    file.display()
                );
                None
            }
        }
    }
}

pub use packages::{parse_packages, PackageEntry};
pub use release::{
    decompress, decompress_into, parse_date, Compression, IndexFile, IndexHash, Release,
    CLOCK_SKEW_TOLERANCE_SECS,
};
pub use signature::{verify_clearsigned, verify_detached, Keyring, Verified};

use crate::text::{quoted, shown};

/// Everything that can go wrong while checking apt metadata.
///
/// Each message is one sentence naming the file (`what`, usually its URL),
/// the package or key involved, what was expected and what was found. Values read from
/// the archive are shown through [`crate::text`] (escaped, capped).
#[derive(Debug, thiserror::Error)]
pub enum AptError {
    /// A keyring file is empty, not OpenPGP, or holds no certificate.
    #[error("keyring {origin} is not an OpenPGP public keyring ({reason}); give a binary .gpg or ASCII-armored .asc keyring")]
    Keyring {
        /// the keyring named in errors (its host path)
        origin: String,
        /// the parser's error, on one line
        reason: String,
    },

    /// An `InRelease` is not one clearsigned block surrounded by nothing but whitespace.
    #[error("{what} is not a well-formed clearsigned file ({reason}); the mirror served something other than a signed InRelease")]
    Framing {
        /// the file, usually its URL
        what: String,
        /// what is wrong with the framing
        reason: String,
    },

    /// A keyring key made a signature that does not verify: fails the file even when another
    /// signature is good (as gpgv and apt do).
    #[error("{what} has a BAD signature by key {key} ({reason}): the signed text was modified or corrupted, refusing it")]
    BadSignature {
        /// the file, usually its URL
        what: String,
        /// the signing certificate's primary fingerprint, uppercase hex
        key: String,
        /// the verifier's error, on one line
        reason: String,
    },

    /// A detached signature is empty, or the file holds no signature at all.
    #[error("{what} carries no OpenPGP signature; refusing unsigned repository metadata")]
    NoSignature {
        /// the file, usually its URL
        what: String,
    },

    /// No good signature by a keyring key that is usable now: signatures by unknown keys,
    /// SHA-1 or expired signatures and expired or revoked keys do not count.
    #[error("{what} has no good signature by a key in the keyring (keyring holds {keyring}; signatures seen: {seen}); check that the source uses the right keyring")]
    NoTrustedSignature {
        /// the file, usually its URL
        what: String,
        /// the keyring's primary fingerprints, uppercase hex, comma-separated
        keyring: String,
        /// why each signature seen did not count, `; `-separated
        seen: String,
    },

    /// The signature could not be checked at all (unparseable, or an unexpected message
    /// structure).
    #[error("{what}: signature could not be checked: {reason}")]
    Signature {
        /// the file, usually its URL
        what: String,
        /// the verifier's error, on one line
        reason: String,
    },

    /// A Release file is malformed: not UTF-8, not one deb822 stanza, a field on several
    /// lines, or its `SHA256` field missing or malformed.
    #[error("{what}: malformed Release file: {}", shown(.reason))]
    Release {
        /// the Release file, usually its URL
        what: String,
        /// what is malformed
        reason: String,
    },

    /// A Release `Date` or `Valid-Until` that [`parse_date`] cannot read.
    #[error("{what}: {field} date {} cannot be parsed (expected e.g. \"Sat, 11 Jul 2026 10:16:37 UTC\")", quoted(.value))]
    BadDate {
        /// the Release file, usually its URL
        what: String,
        /// `Date` or `Valid-Until`
        field: &'static str,
        /// the date as written
        value: String,
    },

    /// The Release's `Valid-Until` has passed and expired metadata is not allowed.
    #[error("{what} expired on {} (Valid-Until); the mirror is stale or replaying old metadata; use a current mirror, or allow expired metadata explicitly (snapshot, --allow-expired)", shown(.valid_until))]
    Expired {
        /// the Release file, usually its URL
        what: String,
        /// the `Valid-Until` date as written
        valid_until: String,
    },

    /// The Release's `Date` is more than [`CLOCK_SKEW_TOLERANCE_SECS`] in the future.
    #[error("{what} is dated {}, more than {tolerance_secs} s in the future; check this machine's clock", shown(.date))]
    NotYetValid {
        /// the Release file, usually its URL
        what: String,
        /// the `Date` as written
        date: String,
        /// the tolerance, seconds
        tolerance_secs: i64,
    },

    /// The Release does not list the architecture asked for.
    #[error("{what} does not list architecture {arch:?} (Architectures: {}); pick one of those or another source", shown(.available))]
    ArchitectureMissing {
        /// the Release file, usually its URL
        what: String,
        /// the Debian architecture asked for
        arch: String,
        /// the Release's `Architectures`, space-separated, or "none listed"
        available: String,
    },

    /// The Release does not list the component asked for.
    #[error("{what} does not list component {component:?} (Components: {}); fix `components` of the source", shown(.available))]
    ComponentMissing {
        /// the Release file, usually its URL
        what: String,
        /// the component asked for
        component: String,
        /// the Release's `Components`, space-separated, or "none listed"
        available: String,
    },

    /// The Release lists no SHA256 for any variant (`.xz`, `.gz`, plain) of a `Packages`
    /// index.
    #[error("{what} lists no SHA256 for {path}{{.xz,.gz,}}; this repository cannot be used for that component/architecture")]
    IndexMissing {
        /// the Release file, usually its URL
        what: String,
        /// the index without suffix, relative to `dists/<suite>/`, e.g.
        /// `main/binary-amd64/Packages`
        path: String,
    },

    /// An index could not be decompressed: corrupt, truncated, or failing the format's own
    /// checksum.
    #[error("{what}: cannot decompress ({compression}): {reason}")]
    Decompress {
        /// the index, usually its URL
        what: String,
        /// the compression's name, e.g. `xz`
        compression: &'static str,
        /// the decoder's error
        reason: String,
    },

    /// An index decompresses to more than the limit.
    #[error("{what}: decompressed data exceeds the limit of {limit} bytes; refusing it")]
    TooLarge {
        /// the index, usually its URL
        what: String,
        /// the limit, bytes of decompressed output
        limit: u64,
    },

    /// A `Packages` index is not UTF-8 or not deb822, or a stanza has no single-line
    /// `Package`.
    #[error("{what}: malformed Packages index: {}", shown(.reason))]
    Packages {
        /// the index, usually its URL
        what: String,
        /// what is malformed
        reason: String,
    },

    /// A kept `Packages` stanza lacks a required field, or has it empty.
    #[error("{what}: package {} has no {field} field", shown(.package))]
    MissingField {
        /// the index, usually its URL
        what: String,
        /// the package's name
        package: String,
        /// the field, e.g. `SHA256`
        field: &'static str,
    },

    /// A kept `Packages` stanza has a required field with an unusable value.
    #[error("{what}: package {} has an invalid {field} {}: {reason}", shown(.package), quoted(.value))]
    BadField {
        /// the index, usually its URL
        what: String,
        /// the package's name
        package: String,
        /// the field, e.g. `Filename`
        field: &'static str,
        /// the value as written
        value: String,
        /// why it is refused
        reason: &'static str,
    },

    /// One package (name, version, architecture) appears twice in an index with different
    /// SHA256 (an identical repeat is fine).
    #[error("{what}: package {} appears twice with different SHA256 ({first} and {second}); the index is inconsistent", shown(.package))]
    Conflict {
        /// the index, usually its URL
        what: String,
        /// `name version (arch)`
        package: String,
        /// the first SHA-256 seen, lowercase hex
        first: String,
        /// the second SHA-256 seen, lowercase hex
        second: String,
    },
}
