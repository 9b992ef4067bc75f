//! The library's error: one clear sentence per failure, and the exit code it maps to
//! (0 success, 1 build or verify failure, 2 usage or manifest error).
//!
//! Each stage's own error converts into [`Error`] with `?`. Nothing here prints or exits:
//! `src/main.rs` prints the message and exits with [`Error::exit_code`].

use crate::fetch::FetchError;
use crate::lock::LockError;
use crate::manifest::ManifestError;
use crate::oci::OciError;
use crate::push::PushError;
use crate::repo::RepoError;
use crate::rootfs::compose::ComposeError;
use crate::rootfs::export::ExportError;
use crate::rootfs::linkage::ImageLinkageError;
use crate::sbom::SbomError;

/// Every way a compose command can fail; [`Error::exit_code`] maps each to the process exit status.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The manifest could not be read, parsed or validated (exit 2).
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The command line or the environment asks for something impossible, e.g. an unknown
    /// `--arch`, too many architectures for one output, a bad `COMPOSE_HTTP_TIMEOUT`
    /// (exit 2); printed as is.
    #[error("{0}")]
    Usage(String),
    /// A download failed or did not match its expected size or digest.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// Writing the OCI image failed.
    #[error(transparent)]
    Oci(#[from] OciError),
    /// Writing the root filesystem to the `--rootfs` directory failed or was refused.
    #[error(transparent)]
    Export(#[from] ExportError),
    /// The linkage check found ELF files whose interpreter or library is missing, on one
    /// or more architectures (all of them reported together).
    #[error(transparent)]
    Linkage(#[from] ImageLinkageError),
    /// Getting the packages from the repositories (indices, resolution, `.deb` downloads) failed.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// Composing an architecture's root filesystem from its `.deb`s failed.
    #[error(transparent)]
    Compose(#[from] ComposeError),
    /// A local operation of the build itself failed (a temporary directory, the runtime).
    #[error("{context}: {source}")]
    Io {
        /// what was being done, e.g. "cannot start the async runtime"
        context: String,
        /// the underlying error
        #[source]
        source: std::io::Error,
    },
    /// A value compose made itself did not have the form it must (a bug).
    #[error("internal: {0}")]
    Internal(String),
    /// The lock is missing, stale, or does not match (`--locked`, `--offline`, verify).
    #[error("{0}")]
    Lock(String),
    /// The lock file could not be read, parsed or written.
    #[error(transparent)]
    LockFile(#[from] LockError),
    /// `--sbom`.
    #[error(transparent)]
    Sbom(#[from] SbomError),
    /// `--push` (a bad reference is a usage error).
    #[error(transparent)]
    Push(#[from] PushError),
}

impl Error {
    /// The process exit status for this error: 2 for a manifest or usage error (including a
    /// bad `--push` reference), 1 for everything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Manifest(_) | Error::Usage(_) => 2,
            Error::Push(e) if e.is_usage() => 2,
            _ => 1,
        }
    }
}

/// The library's result type; the error defaults to [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
