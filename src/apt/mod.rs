//! The apt trust chain over bytes (README "What it guarantees"): OpenPGP verification of
//! `InRelease` / `Release`+`Release.gpg`, the `Release` file, `Packages`
//! indexes and Debian version ordering.
//!
//! Nothing here touches the network or the file system: callers hand in the
//! bytes they fetched and a `what` (usually the URL) that errors name.

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
    decompress, parse_date, Compression, IndexFile, IndexHash, Release, CLOCK_SKEW_TOLERANCE_SECS,
};
pub use signature::{verify_clearsigned, verify_detached, Keyring, Verified};

/// Everything that can go wrong while checking apt metadata.
///
/// Each message is one sentence naming the file (`what`, usually its URL),
/// the package or key involved, what was expected and what was found.
#[derive(Debug, thiserror::Error)]
pub enum AptError {
    #[error("keyring {origin} is not an OpenPGP public keyring ({reason}); give a binary .gpg or ASCII-armored .asc keyring")]
    Keyring { origin: String, reason: String },

    #[error("{what} is not a well-formed clearsigned file ({reason}); the mirror served something other than a signed InRelease")]
    Framing { what: String, reason: String },

    #[error("{what} has a BAD signature by key {key} ({reason}): the signed text was modified or corrupted, refusing it")]
    BadSignature {
        what: String,
        key: String,
        reason: String,
    },

    #[error("{what} carries no OpenPGP signature; refusing unsigned repository metadata")]
    NoSignature { what: String },

    #[error("{what} has no good signature by a key in the keyring (keyring holds {keyring}; signatures seen: {seen}); check that the source uses the right keyring")]
    NoTrustedSignature {
        what: String,
        keyring: String,
        seen: String,
    },

    #[error("{what}: signature could not be checked: {reason}")]
    Signature { what: String, reason: String },

    #[error("{what}: malformed Release file: {reason}")]
    Release { what: String, reason: String },

    #[error("{what}: {field} date {value:?} cannot be parsed (expected e.g. \"Sat, 11 Jul 2026 10:16:37 UTC\")")]
    BadDate {
        what: String,
        field: &'static str,
        value: String,
    },

    #[error("{what} expired on {valid_until} (Valid-Until); the mirror is stale or replaying old metadata; use a current mirror, or allow expired metadata explicitly (snapshot, --allow-expired)")]
    Expired { what: String, valid_until: String },

    #[error("{what} is dated {date}, more than {tolerance_secs} s in the future; check this machine's clock")]
    NotYetValid {
        what: String,
        date: String,
        tolerance_secs: i64,
    },

    #[error("{what} does not list architecture {arch:?} (Architectures: {available}); pick one of those or another source")]
    ArchitectureMissing {
        what: String,
        arch: String,
        available: String,
    },

    #[error("{what} does not list component {component:?} (Components: {available}); fix `components` of the source")]
    ComponentMissing {
        what: String,
        component: String,
        available: String,
    },

    #[error("{what} lists no SHA256 for {path}{{.xz,.gz,}}; this repository cannot be used for that component/architecture")]
    IndexMissing { what: String, path: String },

    #[error("{what}: cannot decompress ({compression}): {reason}")]
    Decompress {
        what: String,
        compression: &'static str,
        reason: String,
    },

    #[error("{what}: decompressed data exceeds the limit of {limit} bytes; refusing it")]
    TooLarge { what: String, limit: u64 },

    #[error("{what}: malformed Packages index: {reason}")]
    Packages { what: String, reason: String },

    #[error("{what}: package {package} has no {field} field")]
    MissingField {
        what: String,
        package: String,
        field: &'static str,
    },

    #[error("{what}: package {package} has an invalid {field} {value:?}: {reason}")]
    BadField {
        what: String,
        package: String,
        field: &'static str,
        value: String,
        reason: &'static str,
    },

    /// `package` reads `name version (arch)`.
    #[error("{what}: package {package} appears twice with different SHA256 ({first} and {second}); the index is inconsistent")]
    Conflict {
        what: String,
        package: String,
        first: String,
        second: String,
    },
}
