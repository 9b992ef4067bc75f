//! OCI images (docs/architecture.md, "The image"): the output (one deterministic layer per
//! architecture ([`write_layer`]), gzip or zstd ([`Compressor`]),
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
pub mod blocks;
pub mod compressor;
pub mod gzip;
mod layer;
pub mod layer_cache;
mod layout;
pub mod read;
pub mod referrers;
pub mod zstd;

pub use compressor::Compressor;
pub use layer::{diff_id, write_layer, write_layer_as, GZIP_LEVEL};
pub use layer_cache::LayerCache;
pub use layout::{
    rfc3339, temp_prefix as layout_temp_prefix, CommittedLayout, LayoutWriter,
    ASIDE_PREFIX as LAYOUT_ASIDE_PREFIX,
};

/// Media type of a layer blob: a gzipped tar (the default compressor's,
/// [`Compressor::media_type`]).
pub const MEDIA_TYPE_LAYER: &str = compressor::MEDIA_TYPE_LAYER_GZIP;
/// Media type of an image config blob.
pub const MEDIA_TYPE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Media type of an image manifest blob.
pub const MEDIA_TYPE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Media type of an image index (a blob, and `index.json`).
pub const MEDIA_TYPE_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Annotation carrying the tag on `index.json`'s descriptor.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Why `tag` is not a tag as the OCI distribution spec allows them
/// (`[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`), or `None` when it is: the one rule for the tag
/// of a layout (`layout.rs`) and of a registry reference (`crate::registry`).
pub fn tag_problem(tag: &str) -> Option<&'static str> {
    let mut chars = tag.chars();
    match chars.next() {
        None => return Some("it is empty"),
        Some(c) if !(c.is_ascii_alphanumeric() || c == '_') => {
            return Some("it must start with a letter, digit or `_`")
        }
        _ => {}
    }
    if tag.len() > 128 {
        return Some("it is longer than 128 characters");
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')) {
        return Some("only letters, digits, `_`, `.` and `-` are allowed");
    }
    None
}

/// Why writing an image failed.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// A file-system or serialisation error.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, naming the file (e.g. `cannot write <path>`).
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A hard link of the tree does not resolve to a regular file.
    #[error("hard link {path} points to {target}, which {reason} in the image")]
    Hardlink {
        /// Absolute tree path of the hard link.
        path: String,
        /// Absolute tree path where resolving it stopped.
        target: String,
        /// `does not exist`, `is not a regular file` or `is part of a hard-link loop`.
        reason: &'static str,
    },
    /// The output exists and is neither an OCI layout nor an empty directory, so
    /// [`LayoutWriter::commit`] does not replace it.
    #[error("refusing to replace {}: it exists and is not an OCI image layout (no oci-layout file); remove it or choose another output directory", .output.display())]
    NotALayout {
        /// The output directory.
        output: PathBuf,
    },
    /// [`LayoutWriter::finish`] was given no manifest.
    #[error("no image manifest to put in the layout (no architecture was built)")]
    NoManifests,
    /// The tag is not `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
    #[error("invalid image tag {tag:?}: {reason}")]
    BadTag {
        /// The tag as given.
        tag: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
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
    /// `sha256:<hex>` of the compressed blob.
    pub digest: String,
    /// `sha256:<hex>` of the uncompressed tar.
    pub diff_id: String,
    /// Bytes of the compressed blob.
    pub size: u64,
    /// How the blob is compressed (its media type).
    pub compressor: Compressor,
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
    /// `User`: `uid:gid` for a manifest `[[user]]`, else as written; None: omitted.
    pub user: Option<String>,
    /// `WorkingDir`; None: omitted.
    pub workdir: Option<String>,
    /// `Entrypoint`, argv; None: omitted.
    pub entrypoint: Option<Vec<String>>,
    /// `Cmd`, argv; None: omitted.
    pub cmd: Option<Vec<String>>,
    /// `Labels`; omitted when empty.
    pub labels: BTreeMap<String, String>,
}

/// An OCI content descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    /// One of the `MEDIA_TYPE_*` constants.
    pub media_type: String,
    /// `sha256:<hex>` of the blob.
    pub digest: String,
    /// Bytes of the blob.
    pub size: u64,
    /// `(architecture, variant)`; the OS is always `linux`.
    pub platform: Option<(String, Option<String>)>,
    /// Descriptor annotations (the tag on `index.json`'s); omitted when empty.
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
