//! The typed OCI documents a reader meets: image index, image manifest, the platform part
//! of an image config, and the descriptors between them, parsed from a blob's exact bytes.
//!
//! Owns parsing and media types only. It must not fetch or verify bytes (the blob
//! sources of [`super`] do) and must never serialise these types back: the layout writer
//! (`oci::layout`) builds canonical JSON by hand, and unknown fields are dropped here.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::ReadError;
use crate::compression::Compression;
use crate::oci::{ANNOTATION_REF_NAME, MEDIA_TYPE_INDEX, MEDIA_TYPE_MANIFEST};

/// Media type of a Docker v2 image manifest (read like an OCI one).
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Media type of a Docker manifest list (read like an OCI image index).
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// An OCI image manifest (or a Docker v2 one, its twin).
pub fn is_manifest(media_type: &str) -> bool {
    matches!(media_type, MEDIA_TYPE_MANIFEST | DOCKER_MANIFEST)
}

/// An OCI image index (or a Docker manifest list, its twin).
pub fn is_index(media_type: &str) -> bool {
    matches!(media_type, MEDIA_TYPE_INDEX | DOCKER_LIST)
}

/// The compression of a layer of this media type; None for one compose cannot read.
pub fn layer_compression(media_type: &str) -> Option<Compression> {
    match media_type {
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip" => Some(Compression::Gz),
        "application/vnd.oci.image.layer.v1.tar+zstd" => Some(Compression::Zstd),
        "application/vnd.oci.image.layer.v1.tar" => Some(Compression::None),
        _ => None,
    }
}

/// An OCI content descriptor as read.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// `mediaType` of the blob it names.
    pub media_type: String,
    /// `algorithm:hex`; whether it is one a source can open is the source's to say.
    pub digest: String,
    /// Bytes of the blob.
    pub size: u64,
    /// The platform, on the entries of an index.
    #[serde(default)]
    pub platform: Option<Platform>,
    /// `artifactType`, on a descriptor of an artifact (a referrer of an image).
    #[serde(default)]
    pub artifact_type: Option<String>,
    /// Empty when absent.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    /// Its tag (`org.opencontainers.image.ref.name`), in an image layout's `index.json`.
    pub fn ref_name(&self) -> Option<&str> {
        self.annotations
            .get(ANNOTATION_REF_NAME)
            .map(String::as_str)
    }
}

/// The platform a descriptor names.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Platform {
    /// OCI architecture (`amd64`, `arm64`, …).
    pub architecture: String,
    /// `linux` when the descriptor does not say.
    #[serde(default = "linux")]
    pub os: String,
    /// OCI variant (`v8`, …), if given.
    #[serde(default)]
    pub variant: Option<String>,
}

fn linux() -> String {
    "linux".into()
}

impl fmt::Display for Platform {
    /// `linux/arm64/v8`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// An image index (and the `index.json` of a layout).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// `mediaType`, when the document states it (not checked).
    #[serde(default)]
    pub media_type: Option<String>,
    /// The manifests (or nested indexes) it lists, in document order.
    pub manifests: Vec<Descriptor>,
    /// Empty when absent.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// An image manifest.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    /// `mediaType`, when the document states it (not checked).
    #[serde(default)]
    pub media_type: Option<String>,
    /// The image config blob.
    pub config: Descriptor,
    /// The layers, bottom first.
    pub layers: Vec<Descriptor>,
    /// `artifactType`, on an artifact manifest.
    #[serde(default)]
    pub artifact_type: Option<String>,
    /// The image this manifest refers to, on a referrer.
    #[serde(default)]
    pub subject: Option<Descriptor>,
    /// Empty when absent.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// What an image config says of its platform (the rest is not read).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Config {
    /// OCI architecture; empty when absent.
    #[serde(default)]
    pub architecture: String,
    /// Operating system; empty when absent.
    #[serde(default)]
    pub os: String,
    /// OCI variant, if given.
    #[serde(default)]
    pub variant: Option<String>,
}

/// Parse a JSON document; `what` names it in the error.
pub fn parse<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, ReadError> {
    serde_json::from_slice(bytes).map_err(|e| ReadError::Invalid {
        what: what.to_string(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_platforms_and_tags() {
        let index: Index = parse(
            br#"{"schemaVersion":2,"manifests":[
                {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:aa","size":7,
                 "platform":{"architecture":"arm64","os":"linux","variant":"v8"},
                 "annotations":{"org.opencontainers.image.ref.name":"1.0"}},
                {"mediaType":"application/vnd.oci.image.index.v1+json","digest":"sha256:bb","size":9,
                 "platform":{"architecture":"amd64"},"unknown":true}]}"#,
            "index.json",
        )
        .unwrap();
        let [a, b] = &index.manifests[..] else {
            panic!("{index:?}")
        };
        assert_eq!(a.platform.as_ref().unwrap().to_string(), "linux/arm64/v8");
        assert_eq!(b.platform.as_ref().unwrap().to_string(), "linux/amd64");
        assert_eq!((a.ref_name(), b.ref_name()), (Some("1.0"), None));
        assert!(is_manifest(&a.media_type) && is_index(&b.media_type));
        let e =
            parse::<Index>(br#"{"manifests":[{"digest":"sha256:aa"}]}"#, "index.json").unwrap_err();
        assert!(
            e.to_string().starts_with("index.json: missing field"),
            "{e}"
        );
    }

    #[test]
    fn layer_media_types() {
        assert_eq!(
            layer_compression("application/vnd.oci.image.layer.v1.tar+gzip"),
            Some(Compression::Gz)
        );
        assert_eq!(
            layer_compression("application/vnd.oci.image.layer.v1.tar"),
            Some(Compression::None)
        );
        assert_eq!(
            layer_compression("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"),
            None
        );
    }
}
