//! The lock: `<manifest>.lock` beside the manifest — for `manifests/x.toml` it is
//! `manifests/x.toml.lock` ([`lock_path`]; the whole file name gets `.lock` appended, so
//! `x.toml` and `x.yaml` never share a lock and the manifest is always "this file's name
//! without `.lock`").
//!
//! It pins every input of a build and records its outputs: the manifest's SHA256 (which
//! ties lock and manifest together), the tool version, the epoch and the tag, the
//! declared packages left out with `--exclude-package` (if any); per
//! architecture, per suite the InRelease (or Release) URL as written in the manifest
//! (before `--mirror`) with its SHA256 and `Date`, each `Packages` index used (URL,
//! size, SHA256), each package (name, version, architecture, suite, URL, size, SHA256);
//! and the resulting digests (layer diff_id, digest and size, config, image manifest),
//! plus what `index.json` points to and how the layers were compressed
//! (`compression`). Outputs are optional (all of an architecture's or none): `compose
//! lock` resolves without building.
//!
//! This module owns the lock's types and its file: [`Lock::load`] and [`Lock::write`]
//! are the only functions here that touch the file system, and nothing here touches the
//! network. The text format, its checks and its errors are in `format`; the
//! comparison of a recorded lock with a fresh one (`--locked`, `compose verify`) is in
//! `compare`.

mod compare;
mod format;

use crate::arch::Arch;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use sha2::Digest;

pub use compare::Change;
pub use format::{LockError, LockErrorKind, FORMAT, HEADER};

/// `compose <version>`: what the `tool` line records for this build of compose.
pub fn tool_version() -> String {
    format!("compose {}", env!("CARGO_PKG_VERSION"))
}

/// The lock of a manifest: `x.toml` → `x.toml.lock`, beside it.
pub fn lock_path(manifest: &Path) -> PathBuf {
    let mut name = manifest
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".lock");
    manifest.with_file_name(name)
}

/// The manifest a lock belongs to: `x.toml.lock` → `x.toml` (`None` without `.lock`).
pub fn manifest_path(lock: &Path) -> Option<PathBuf> {
    let name = lock.file_name()?.to_str()?;
    let stem = name.strip_suffix(".lock").filter(|s| !s.is_empty())?;
    Some(lock.with_file_name(stem))
}

/// A SHA256: 64 lowercase hex digits, written `sha256:<hex>`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sha256(String);

impl Sha256 {
    /// From bare hex, as in `Packages` and `Release` (`SHA256:` fields).
    pub fn from_hex(hex: &str) -> Result<Sha256, String> {
        if hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(Sha256(hex.to_string()))
        } else {
            Err(format!(
                "malformed hash `{hex}`: must be 64 lowercase hex digits"
            ))
        }
    }

    /// From an OCI digest, `sha256:<hex>`.
    pub fn from_digest(digest: &str) -> Result<Sha256, String> {
        match digest.strip_prefix("sha256:") {
            Some(hex) => Sha256::from_hex(hex).map_err(|_| {
                format!("malformed hash `{digest}`: must be sha256: and 64 lowercase hex digits")
            }),
            None => Err(format!(
                "malformed hash `{digest}`: must be sha256: and 64 lowercase hex digits"
            )),
        }
    }

    /// The SHA256 of `bytes`.
    pub fn of(bytes: &[u8]) -> Sha256 {
        Sha256(hex::encode(sha2::Sha256::digest(bytes)))
    }

    /// The bare hex.
    pub fn hex(&self) -> &str {
        &self.0
    }

    /// `sha256:<hex>`.
    pub fn digest(&self) -> String {
        format!("sha256:{}", self.0)
    }

    /// `sha256:` and the first 12 hex digits, for messages.
    pub fn short(&self) -> String {
        format!("sha256:{}…", &self.0[..12])
    }
}

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.0)
    }
}

impl fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.0)
    }
}

/// A lock: the pinned inputs of a build and its outputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lock {
    /// SHA256 of the manifest file's bytes.
    pub manifest: Sha256,
    /// SHA256 of each file the manifest includes (`[image] include`), by its name
    /// ([`crate::manifest::Included::name`]): a changed base changes the lock.
    pub includes: BTreeMap<String, Sha256>,
    /// `compose <version>` ([`tool_version`]).
    pub tool: String,
    /// `SOURCE_DATE_EPOCH` of the build.
    pub epoch: u64,
    /// The image tag (`org.opencontainers.image.ref.name`).
    pub tag: String,
    /// Declared packages this build left out (`--exclude-package`), by name. Empty for
    /// an ordinary build, which then writes no such line. A build, `--locked` or
    /// `compose verify` matches the lock only when given the same set.
    pub excluded: BTreeSet<String>,
    /// What `index.json` points to; `None` when nothing was built. Present exactly when
    /// every architecture has its [`Outputs`].
    pub index: Option<Sha256>,
    /// How the layers were compressed (`compression gzip:6`, written with the outputs).
    /// `None` in a lock without outputs, and in one written before compose recorded it,
    /// whose layers are gzip at level 6 ([`Lock::layer_compressor`]).
    pub compression: Option<crate::oci::Compressor>,
    /// By Debian architecture name.
    pub archs: BTreeMap<Arch, ArchLock>,
}

/// One architecture's inputs and outputs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchLock {
    /// By InRelease (or Release) URL, as in the manifest (before `--mirror`).
    pub releases: BTreeMap<String, ReleaseLock>,
    /// By `Packages` index URL (the variant fetched, e.g. `…/Packages.xz`).
    pub indexes: BTreeMap<String, IndexLock>,
    /// By package name.
    pub packages: BTreeMap<String, PackageLock>,
    /// `None` when nothing was built.
    pub outputs: Option<Outputs>,
}

/// An InRelease (or Release) file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseLock {
    /// SHA256 of the file as fetched: InRelease with its signature, or Release alone.
    pub sha256: Sha256,
    /// Its `Date` field, verbatim.
    pub date: Option<String>,
}

/// A `Packages` index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexLock {
    /// bytes of the variant fetched
    pub size: u64,
    /// SHA256 of the variant fetched (compressed, as Release lists it)
    pub sha256: Sha256,
}

/// A package (its name is the key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageLock {
    /// The package's `Version`.
    pub version: String,
    /// The package's `Architecture`: the architecture or `all`.
    pub arch: String,
    /// The suite it was resolved from.
    pub suite: String,
    /// Its URL before `--mirror`.
    pub url: String,
    /// bytes of the `.deb`
    pub size: u64,
    /// SHA256 of the `.deb`
    pub sha256: Sha256,
}

impl PackageLock {
    /// From a `Packages` stanza: `sha256` is its bare hex `SHA256` field. A value holding
    /// a control character ([`crate::text::first_unsafe`]) is refused: the lock is
    /// reviewed in a terminal and a diff.
    pub fn new(
        version: &str,
        arch: &str,
        suite: &str,
        url: &str,
        size: u64,
        sha256: &str,
    ) -> Result<PackageLock, String> {
        for (field, value) in [
            ("Version", version),
            ("Architecture", arch),
            ("suite", suite),
            ("URL", url),
        ] {
            if let Some(c) = crate::text::first_unsafe(value) {
                return Err(format!(
                    "its {field} {} holds the control character {}; refusing to record it in the lock",
                    crate::text::quoted(value),
                    c.escape_default()
                ));
            }
        }
        Ok(PackageLock {
            version: version.into(),
            arch: arch.into(),
            suite: suite.into(),
            url: url.into(),
            size,
            sha256: Sha256::from_hex(sha256)?,
        })
    }
}

/// What one architecture's build produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outputs {
    /// SHA256 of the uncompressed layer tar.
    pub layer_diff_id: Sha256,
    /// SHA256 of the gzip layer blob.
    pub layer_digest: Sha256,
    /// Bytes of the gzip layer blob.
    pub layer_size: u64,
    /// The image config's digest.
    pub config: Sha256,
    /// The image manifest's digest.
    pub manifest: Sha256,
}

impl Outputs {
    /// From the layer written and the config and manifest digests (`sha256:<hex>`).
    pub fn new(
        layer: &crate::oci::LayerInfo,
        config: &str,
        manifest: &str,
    ) -> Result<Outputs, String> {
        Ok(Outputs {
            layer_diff_id: Sha256::from_digest(&layer.diff_id)?,
            layer_digest: Sha256::from_digest(&layer.digest)?,
            layer_size: layer.size,
            config: Sha256::from_digest(config)?,
            manifest: Sha256::from_digest(manifest)?,
        })
    }
}

/// A fact of a lock, to find its line ([`Lock::line_of`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fact {
    /// The `format` line.
    Format,
    /// The `manifest` line.
    Manifest,
    /// An `include` line for a file the manifest includes.
    Include {
        /// the included file's name, from the manifest's directory
        name: String,
    },
    /// The `tool` line.
    Tool,
    /// The `epoch` line.
    Epoch,
    /// The `tag` line.
    Tag,
    /// An `exclude-package` line for a package left out of the build.
    ExcludedPackage {
        /// the package's name
        name: String,
    },
    /// The `index` line.
    Index,
    /// The `compression` line.
    Compression,
    /// An architecture's `release` line for an InRelease (or Release) URL.
    Release {
        /// the architecture
        arch: Arch,
        /// the InRelease (or Release) URL, before `--mirror`
        url: String,
    },
    /// An architecture's `packages` line for a `Packages` index URL.
    Packages {
        /// the architecture
        arch: Arch,
        /// the index URL, before `--mirror`
        url: String,
    },
    /// An architecture's `package` line for a package.
    Package {
        /// the architecture
        arch: Arch,
        /// the package's name
        name: String,
    },
    /// An architecture's `layer` line.
    Layer {
        /// the architecture
        arch: Arch,
    },
    /// An architecture's `config` line.
    Config {
        /// the architecture
        arch: Arch,
    },
    /// An architecture's `manifest` line (the image manifest).
    ImageManifest {
        /// the architecture
        arch: Arch,
    },
}

impl fmt::Display for Fact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fact::Format => f.write_str("format"),
            Fact::Manifest => f.write_str("manifest"),
            Fact::Include { name } => write!(f, "include {name}"),
            Fact::Tool => f.write_str("tool"),
            Fact::Epoch => f.write_str("epoch"),
            Fact::Tag => f.write_str("tag"),
            Fact::ExcludedPackage { name } => write!(f, "exclude-package {name}"),
            Fact::Index => f.write_str("index"),
            Fact::Compression => f.write_str("compression"),
            Fact::Release { arch, url } => write!(f, "{arch} release {url}"),
            Fact::Packages { arch, url } => write!(f, "{arch} packages {url}"),
            Fact::Package { arch, name } => write!(f, "{arch} package {name}"),
            Fact::Layer { arch } => write!(f, "{arch} layer"),
            Fact::Config { arch } => write!(f, "{arch} config"),
            Fact::ImageManifest { arch } => write!(f, "{arch} manifest"),
        }
    }
}

impl Lock {
    /// A lock with no architectures yet, for this version of compose.
    pub fn new(manifest: Sha256, epoch: u64, tag: impl Into<String>) -> Lock {
        Lock {
            manifest,
            includes: BTreeMap::new(),
            tool: tool_version(),
            epoch,
            tag: tag.into(),
            excluded: BTreeSet::new(),
            index: None,
            compression: None,
            archs: BTreeMap::new(),
        }
    }

    /// Whether output digests are recorded (the lock comes from a build, not from
    /// `compose lock` alone).
    pub fn has_outputs(&self) -> bool {
        self.index.is_some()
    }

    /// How the recorded layers were compressed: the `compression` line (a lock of
    /// format 1 without one means miniz gzip at level 6, which its parser fills in).
    /// `None` without outputs.
    pub fn layer_compressor(&self) -> Option<crate::oci::Compressor> {
        self.has_outputs()
            .then(|| self.compression.unwrap_or_default())
    }

    /// Read `path`; `Ok(None)` if it does not exist.
    pub fn load(path: &Path) -> Result<Option<Lock>, LockError> {
        match std::fs::read(path) {
            Ok(bytes) => {
                let text = String::from_utf8(bytes).map_err(|e| {
                    LockError::new(
                        path,
                        None,
                        LockErrorKind::Malformed(format!("not UTF-8 text ({e})")),
                    )
                })?;
                Lock::parse(&text, path).map(Some)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(LockError::new(
                path,
                None,
                LockErrorKind::Io {
                    action: "cannot read the lock",
                    source: e,
                },
            )),
        }
    }

    /// Write the lock to `path` atomically, after checking that it reads back as it is
    /// (no value with whitespace or a control character, no malformed field).
    pub fn write(&self, path: &Path) -> Result<(), LockError> {
        self.stage(path)?.commit()
    }

    /// [`Lock::write`] up to the rename: the checked text is in a temporary file beside
    /// `path`; [`StagedLock::commit`] puts it in place, dropping it leaves `path` as it was.
    pub fn stage(&self, path: &Path) -> Result<StagedLock, LockError> {
        let text = self.to_text();
        if let Some((line, c)) = text
            .lines()
            .find_map(|l| crate::text::first_unsafe(l).map(|c| (l, c)))
        {
            return Err(LockError::new(
                path,
                None,
                LockErrorKind::Unrecordable(format!(
                    "`{}` holds the control character {}",
                    crate::text::shown(line),
                    c.escape_default()
                )),
            ));
        }
        match Lock::parse(&text, path) {
            Ok(back) if back == *self => {}
            Ok(_) => return Err(LockError::new(
                path,
                None,
                LockErrorKind::Unrecordable(
                    "a value does not read back as written (whitespace in a name, URL or date?)"
                        .into(),
                ),
            )),
            Err(e) => {
                let at = e
                    .line
                    .and_then(|l| text.lines().nth(l - 1))
                    .map(|l| format!("`{l}`: "))
                    .unwrap_or_default();
                let why = match e.kind {
                    LockErrorKind::Malformed(m) => m,
                    LockErrorKind::UnknownKind(k) => format!("unknown line kind `{k}`"),
                    other => LockError::new(path, None, other).to_string(),
                };
                return Err(LockError::new(
                    path,
                    None,
                    LockErrorKind::Unrecordable(format!("{at}{why}")),
                ));
            }
        }
        let io = |e: crate::atomic::AtomicError| {
            LockError::new(
                path,
                None,
                LockErrorKind::Io {
                    action: "cannot write the lock",
                    source: e.source,
                },
            )
        };
        let mut file = crate::atomic::AtomicFile::create(path, ".compose-lock-").map_err(io)?;
        std::io::Write::write_all(&mut file, text.as_bytes()).map_err(|source| {
            io(crate::atomic::AtomicError {
                step: crate::atomic::Step::Write,
                path: path.to_path_buf(),
                source,
            })
        })?;
        Ok(StagedLock {
            file,
            path: path.to_path_buf(),
        })
    }
}

/// A lock written to a temporary file beside its path, not yet in place
/// ([`Lock::stage`]). Dropping it removes the temporary file.
pub struct StagedLock {
    file: crate::atomic::AtomicFile,
    path: PathBuf,
}

impl StagedLock {
    /// Rename the lock into place.
    pub fn commit(self) -> Result<(), LockError> {
        self.commit_keeping_old()
            .map(crate::atomic::Replaced::finish)
    }

    /// [`StagedLock::commit`], keeping the lock it replaced until the caller finishes or
    /// rolls back ([`crate::atomic::Replaced`]).
    pub fn commit_keeping_old(self) -> Result<crate::atomic::Replaced, LockError> {
        let path = self.path;
        self.file.commit_keeping_old().map_err(|e| {
            LockError::new(
                &path,
                None,
                LockErrorKind::Io {
                    action: "cannot write the lock",
                    source: e.source,
                },
            )
        })
    }

    /// Where the lock goes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The temporary file holding it (to remove on an interrupt).
    pub fn temp_path(&self) -> &Path {
        self.file.temp_path()
    }
}

#[cfg(test)]
mod fixtures;

#[cfg(test)]
mod tests {
    use super::fixtures::{h, sample};
    use super::*;

    #[test]
    fn paths_and_atomic_writes() {
        assert_eq!(
            lock_path(Path::new("manifests/noble-tiny-grpc.toml")),
            Path::new("manifests/noble-tiny-grpc.toml.lock")
        );
        assert_eq!(lock_path(Path::new("x.toml")), Path::new("x.toml.lock"));
        assert_eq!(
            manifest_path(Path::new("manifests/x.toml.lock")).as_deref(),
            Some(Path::new("manifests/x.toml"))
        );
        assert_eq!(manifest_path(Path::new("x.toml")), None);
        assert_eq!(manifest_path(Path::new(".lock")), None);

        let dir = tempfile::tempdir().unwrap();
        let path = lock_path(&dir.path().join("x.toml"));
        assert!(Lock::load(&path).unwrap().is_none());
        let lock = sample();
        lock.write(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), lock.to_text());
        assert_eq!(Lock::load(&path).unwrap(), Some(lock.clone()));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
        // Nothing but the lock is left in the directory.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

        // A value that would not read back is refused, and the old lock stays.
        let mut bad = lock.clone();
        bad.archs
            .get_mut(&Arch::AMD64)
            .unwrap()
            .packages
            .get_mut("libc6")
            .unwrap()
            .version = "2.39 beta".into();
        let e = bad.write(&path).unwrap_err();
        assert!(matches!(e.kind, LockErrorKind::Unrecordable(_)), "{e}");
        assert!(
            e.to_string()
                .contains("cannot record this build in the lock"),
            "{e}"
        );
        let mut dash = lock.clone();
        dash.archs
            .get_mut(&Arch::AMD64)
            .unwrap()
            .releases
            .values_mut()
            .next()
            .unwrap()
            .date = Some("-".into());
        assert!(dash.write(&path).is_err());
        assert_eq!(Lock::load(&path).unwrap(), Some(lock));

        assert!(
            e.to_string()
                .contains("`amd64 package libc6 2.39 beta amd64 noble "),
            "{e}"
        );
        crate::atomic::write(&path, ".compose-lock-", b"replaced\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "replaced\n");
    }

    #[test]
    fn constructors() {
        let hex = "ab".repeat(32);
        let p = PackageLock::new("1.0", "all", "noble", "http://x/a.deb", 3, &hex).unwrap();
        assert_eq!(p.sha256.hex(), hex);
        assert!(PackageLock::new("1.0", "all", "noble", "http://x/a.deb", 3, "abc").is_err());
        let layer = crate::oci::LayerInfo {
            digest: h('1').digest(),
            diff_id: h('2').digest(),
            size: 7,
            compressor: crate::oci::Compressor::default(),
        };
        let o = Outputs::new(&layer, &h('3').digest(), &h('4').digest()).unwrap();
        assert_eq!(
            (o.layer_digest, o.layer_diff_id, o.layer_size),
            (h('1'), h('2'), 7)
        );
        assert!(Outputs::new(&layer, "sha256:xyz", &h('4').digest()).is_err());
    }

    #[test]
    fn sha256_constructors() {
        let hex = "ab".repeat(32);
        let a = Sha256::from_hex(&hex).unwrap();
        assert_eq!(Sha256::from_digest(&format!("sha256:{hex}")).unwrap(), a);
        assert_eq!(a.digest(), format!("sha256:{hex}"));
        assert_eq!(a.to_string(), a.digest());
        assert_eq!(a.hex(), hex);
        assert!(Sha256::from_hex(&hex.to_uppercase()).is_err());
        assert!(Sha256::from_digest(&hex).is_err());
        assert_eq!(
            Sha256::of(b"").hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            tool_version(),
            format!("compose {}", env!("CARGO_PKG_VERSION"))
        );
    }
}
