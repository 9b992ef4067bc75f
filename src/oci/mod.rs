//! OCI images (docs/architecture.md, "The image"): the output (one deterministic layer per architecture ([`write_layer`]),
//! image config, manifest and index as canonical JSON, written as an OCI image layout
//! that appears at its destination atomically ([`LayoutWriter`]), or as an archive),
//! and the one reader of images ([`read`]).
//!
//! The writers never parse an image and the reader never writes one: each side keeps
//! to its submodules.

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;

pub mod archive;
pub mod gzip;
mod layer;
pub mod layer_cache;
mod layout;
pub mod read;

pub use layer::{diff_id, write_layer, GZIP_LEVEL};
pub use layer_cache::LayerCache;
pub use layout::{rfc3339, LayoutWriter};

pub const MEDIA_TYPE_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const MEDIA_TYPE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_TYPE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_TYPE_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("hard link {path} points to {target}, which {reason} in the image")]
    Hardlink {
        path: String,
        target: String,
        reason: &'static str,
    },
    #[error("refusing to replace {}: it exists and is not an OCI image layout (no oci-layout file); remove it or choose another output directory", .output.display())]
    NotALayout { output: PathBuf },
    #[error("no image manifest to put in the layout (no architecture was built)")]
    NoManifests,
    #[error("invalid image tag {tag:?}: {reason}")]
    BadTag { tag: String, reason: &'static str },
}

impl OciError {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(io::Error) -> OciError {
        let context = context.into();
        move |source| OciError::Io { context, source }
    }
}

/// The result of writing one layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerInfo {
    /// `sha256:<hex>` of the gzip blob.
    pub digest: String,
    /// `sha256:<hex>` of the uncompressed tar.
    pub diff_id: String,
    /// Bytes of the gzip blob.
    pub size: u64,
}

/// What goes into the image config's `config` object (and its platform).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfig {
    /// Go/OCI architecture name: `amd64`, `arm64`, …
    pub architecture: String,
    /// `v8` for arm64.
    pub variant: Option<String>,
    /// `KEY=VALUE`; written sorted.
    pub env: Vec<String>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub labels: BTreeMap<String, String>,
}

/// An OCI content descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    /// `(architecture, variant)`; the OS is always `linux`.
    pub platform: Option<(String, Option<String>)>,
    pub annotations: BTreeMap<String, String>,
}

/// What [`LayoutWriter::write_image`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenImage {
    /// The image manifest, with its platform.
    pub manifest: Descriptor,
    /// The image config.
    pub config: Descriptor,
}

#[cfg(test)]
mod tests;
