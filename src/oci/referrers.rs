//! Artifacts that refer to an image (OCI image-spec 1.1 `subject`): the build record
//! (the manifest TOML and the lock) and the SPDX document, each an image manifest with
//! an `artifactType`, the empty config and one layer per file, as canonical JSON so the
//! same build gives the same digests (docs/referrers.md has the formats).
//!
//! It only builds documents from bytes it is given; it must not read packages, write
//! files or speak to a registry: the layout writer (`oci::layout`) and `crate::push`
//! put them where they go.

use std::collections::BTreeMap;

use canon_json::CanonJsonSerialize;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use super::{Descriptor, OciError, MEDIA_TYPE_MANIFEST};

/// `artifactType` of the build record.
pub const BUILD_RECORD_TYPE: &str = "application/vnd.compose.build-record.v1";
/// `artifactType` (and layer media type) of the SPDX document.
pub const SPDX_TYPE: &str = "application/spdx+json";
/// Media type of the manifest TOML layer of the build record.
pub const MANIFEST_TOML_TYPE: &str = "application/vnd.compose.manifest.v1+toml";
/// Media type of the lock layer of the build record.
pub const LOCK_TYPE: &str = "application/vnd.compose.lock.v1+text";
/// The empty config of an artifact manifest.
pub const EMPTY_TYPE: &str = "application/vnd.oci.empty.v1+json";
/// The empty config's bytes: `{}`.
pub const EMPTY_BYTES: &[u8] = b"{}";
/// The empty config's digest.
pub const EMPTY_DIGEST: &str =
    "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
/// The file name of a layer.
pub const ANNOTATION_TITLE: &str = "org.opencontainers.image.title";
/// The image epoch, on the artifact manifest and its descriptor.
pub const ANNOTATION_CREATED: &str = "org.opencontainers.image.created";

/// One file an artifact carries as a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactFile {
    /// `org.opencontainers.image.title`: the file name, without directories.
    pub title: String,
    /// The layer's media type.
    pub media_type: String,
    /// The file's bytes.
    pub bytes: Vec<u8>,
}

/// An artifact manifest referring to an image, with every blob it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// Its `artifactType`.
    pub artifact_type: String,
    /// The manifest's exact bytes (canonical JSON).
    pub manifest: Vec<u8>,
    /// `sha256:<hex>` of [`Artifact::manifest`].
    pub digest: String,
    /// Its annotations (copied onto its descriptor in a referrers list).
    pub annotations: BTreeMap<String, String>,
    /// The empty config, then one blob per file: `(digest, media type, bytes)`.
    pub blobs: Vec<(String, String, Vec<u8>)>,
}

impl Artifact {
    /// The descriptor a referrers list (and a layout's `index.json`) holds for it:
    /// media type, digest, size, `artifactType` and the manifest's annotations.
    pub fn descriptor_json(&self) -> Value {
        json!({
            "mediaType": MEDIA_TYPE_MANIFEST,
            "digest": self.digest,
            "size": self.manifest.len(),
            "artifactType": self.artifact_type,
            "annotations": self.annotations,
        })
    }
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The artifact of `artifact_type` carrying `files` (in this order), referring to
/// `subject` (the image index, or the one image manifest), created at `created`
/// (RFC 3339: the image epoch).
pub fn artifact(
    artifact_type: &str,
    files: &[ArtifactFile],
    subject: &Descriptor,
    created: &str,
) -> Result<Artifact, OciError> {
    let mut blobs = vec![(
        EMPTY_DIGEST.to_string(),
        EMPTY_TYPE.to_string(),
        EMPTY_BYTES.to_vec(),
    )];
    let mut layers = Vec::new();
    for f in files {
        let digest = sha256(&f.bytes);
        layers.push(json!({
            "mediaType": f.media_type,
            "digest": digest,
            "size": f.bytes.len(),
            "annotations": { ANNOTATION_TITLE: f.title },
        }));
        blobs.push((digest, f.media_type.clone(), f.bytes.clone()));
    }
    let annotations = BTreeMap::from([(ANNOTATION_CREATED.to_string(), created.to_string())]);
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_MANIFEST,
        "artifactType": artifact_type,
        "config": {
            "mediaType": EMPTY_TYPE,
            "digest": EMPTY_DIGEST,
            "size": EMPTY_BYTES.len(),
            "data": "e30=",
        },
        "layers": layers,
        "subject": {
            "mediaType": subject.media_type,
            "digest": subject.digest,
            "size": subject.size,
        },
        "annotations": annotations,
    });
    let manifest = manifest
        .to_canon_json_vec()
        .map_err(OciError::io("cannot serialise JSON"))?;
    Ok(Artifact {
        artifact_type: artifact_type.to_string(),
        digest: sha256(&manifest),
        manifest,
        annotations,
        blobs,
    })
}

/// The build record: the manifest TOML and the lock, by file name.
pub fn build_record(
    manifest: (&str, &[u8]),
    lock: (&str, &[u8]),
    subject: &Descriptor,
    created: &str,
) -> Result<Artifact, OciError> {
    artifact(
        BUILD_RECORD_TYPE,
        &[
            ArtifactFile {
                title: manifest.0.to_string(),
                media_type: MANIFEST_TOML_TYPE.into(),
                bytes: manifest.1.to_vec(),
            },
            ArtifactFile {
                title: lock.0.to_string(),
                media_type: LOCK_TYPE.into(),
                bytes: lock.1.to_vec(),
            },
        ],
        subject,
        created,
    )
}

/// The SPDX document `<name>.spdx.json` as an artifact.
pub fn sbom(
    name: &str,
    document: &[u8],
    subject: &Descriptor,
    created: &str,
) -> Result<Artifact, OciError> {
    artifact(
        SPDX_TYPE,
        &[ArtifactFile {
            title: format!("{name}.spdx.json"),
            media_type: SPDX_TYPE.into(),
            bytes: document.to_vec(),
        }],
        subject,
        created,
    )
}

/// The order of descriptors in a referrers list compose writes: by `artifactType`, then
/// digest (descriptors without an `artifactType` first).
pub fn sort_descriptors(list: &mut [Value]) {
    let key = |v: &Value| {
        (
            v["artifactType"].as_str().unwrap_or_default().to_string(),
            v["digest"].as_str().unwrap_or_default().to_string(),
        )
    };
    list.sort_by_key(key);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject() -> Descriptor {
        Descriptor {
            media_type: crate::oci::MEDIA_TYPE_INDEX.into(),
            digest: format!("sha256:{}", "ab".repeat(32)),
            size: 123,
            platform: None,
            annotations: BTreeMap::new(),
        }
    }

    #[test]
    fn empty_config_is_what_the_spec_says() {
        assert_eq!(sha256(EMPTY_BYTES), EMPTY_DIGEST);
        use base64::Engine as _;
        assert_eq!(
            base64::engine::general_purpose::STANDARD.encode(EMPTY_BYTES),
            "e30="
        );
    }

    #[test]
    fn the_record_is_deterministic_and_canonical() {
        let created = "2024-01-01T00:00:00Z";
        let a = build_record(("x.toml", b"m"), ("x.toml.lock", b"l"), &subject(), created).unwrap();
        let b = build_record(("x.toml", b"m"), ("x.toml.lock", b"l"), &subject(), created).unwrap();
        assert_eq!(a, b);
        let v: Value = serde_json::from_slice(&a.manifest).unwrap();
        assert_eq!(v.to_canon_json_vec().unwrap(), a.manifest);
        assert_eq!(v["artifactType"], BUILD_RECORD_TYPE);
        assert_eq!(v["subject"]["digest"], subject().digest);
        assert_eq!(
            v["layers"][1]["annotations"][ANNOTATION_TITLE],
            "x.toml.lock"
        );
        assert_eq!(v["layers"][1]["mediaType"], LOCK_TYPE);
        assert_eq!(a.blobs.len(), 3);
        assert_eq!(a.descriptor_json()["size"], a.manifest.len());
    }
}
