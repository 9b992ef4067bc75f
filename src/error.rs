//! The library's error: one clear sentence per failure, and the exit code it maps to
//! (0 success, 1 build or verify failure, 2 usage or manifest error).

use crate::fetch::FetchError;
use crate::lock::LockError;
use crate::manifest::ManifestError;
use crate::oci::OciError;
use crate::push::PushError;
use crate::repo::RepoError;
use crate::rootfs::compose::ComposeError;
use crate::rootfs::export::ExportError;
use crate::rootfs::linkage::LinkageError;
use crate::sbom::SbomError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Oci(#[from] OciError),
    #[error(transparent)]
    Export(#[from] ExportError),
    #[error(transparent)]
    Linkage(#[from] LinkageError),
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error(transparent)]
    Compose(#[from] ComposeError),
    /// A local operation of the build itself failed (a temporary directory, the runtime).
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A value compose made itself did not have the form it must (a bug).
    #[error("internal: {0}")]
    Internal(String),
    /// The lock is missing, stale, or does not match (`--locked`, `--offline`, verify).
    #[error("{0}")]
    Lock(String),
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
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Manifest(_) | Error::Usage(_) => 2,
            Error::Push(e) if e.is_usage() => 2,
            _ => 1,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
