//! The image references `compose verify` and `compose diff` take — `oci:DIR[:TAG]`,
//! `oci-archive:FILE[:TAG]`, `[docker://]REGISTRY/REPO[:TAG|@DIGEST]` — parsed, and
//! opened as an [`Opened`] image: a blob source, the descriptor of the image (its index
//! or its one manifest) and the artifacts that refer to it (its build record, its SBOM),
//! as docs/referrers.md describes them.
//!
//! It reads and never writes. Reading a registry is the registry reader's (`BlobSource`
//! plus a referrers listing); this module only names what it needs from it.

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::oci::read::archive::ArchiveSource;
use crate::oci::read::{self, BlobSource, Descriptor, ReadError};
use crate::push::Reference;

/// `artifactType` of the build record (the manifest TOML and the lock).
pub const BUILD_RECORD: &str = "application/vnd.compose.build-record.v1";
/// Media type of the record's manifest layer.
pub const RECORD_MANIFEST: &str = "application/vnd.compose.manifest.v1+toml";
/// Media type of the record's lock layer.
pub const RECORD_LOCK: &str = "application/vnd.compose.lock.v1+text";

/// An image reference as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRef {
    /// `oci:DIR[:TAG]`: an image layout directory.
    Layout {
        /// The directory.
        dir: PathBuf,
        /// The tag in its `index.json`.
        tag: Option<String>,
    },
    /// `oci-archive:FILE[:TAG]`: an image layout in one tar file.
    Archive {
        /// The tar file.
        file: PathBuf,
        /// The tag in its `index.json`.
        tag: Option<String>,
    },
    /// `[docker://]REGISTRY/REPO[:TAG|@DIGEST]`.
    Registry {
        /// Registry, repository and tag.
        reference: Reference,
        /// `sha256:…` when given with `@`.
        digest: Option<String>,
    },
}

impl ImageRef {
    /// Parse a reference; the message says what is wrong with it.
    pub fn parse(s: &str) -> Result<ImageRef> {
        if let Some(rest) = s.strip_prefix("oci:") {
            let (dir, tag) = read::parse_image_ref(rest);
            return Ok(ImageRef::Layout { dir, tag });
        }
        if let Some(rest) = s.strip_prefix("oci-archive:") {
            let (file, tag) = split_file_tag(rest);
            return Ok(ImageRef::Archive { file, tag });
        }
        let name = s.strip_prefix("docker://").unwrap_or(s);
        let (name, digest) = match name.split_once('@') {
            Some((n, d)) => {
                let hex = d.strip_prefix("sha256:").unwrap_or("");
                if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(Error::Usage(format!(
                        "`{s}`: the digest after @ is not sha256:<64 hex digits>"
                    )));
                }
                (n, Some(d.to_string()))
            }
            None => (name, None),
        };
        if !name.contains('/') {
            return Err(Error::Usage(format!(
                "`{s}` is not an image reference; give oci:DIR[:TAG], oci-archive:FILE[:TAG] or REGISTRY/REPO[:TAG|@DIGEST]"
            )));
        }
        let reference = Reference::parse(name).map_err(|e| Error::Usage(e.to_string()))?;
        Ok(ImageRef::Registry { reference, digest })
    }
}

/// `FILE` or `FILE:TAG`: the tag is split off only when the whole is not a file.
fn split_file_tag(s: &str) -> (PathBuf, Option<String>) {
    if !std::path::Path::new(s).exists() {
        if let Some((file, tag)) = s.rsplit_once(':') {
            if !tag.is_empty() && !tag.contains('/') && std::path::Path::new(file).is_file() {
                return (PathBuf::from(file), Some(tag.to_string()));
            }
        }
    }
    (PathBuf::from(s), None)
}

/// An image opened for reading.
pub struct Opened {
    /// The reference as the user wrote it, for messages.
    pub name: String,
    /// Where its blobs come from.
    pub source: Box<dyn BlobSource>,
    /// The image index, or the one image manifest, the reference names.
    pub top: Descriptor,
    /// The artifacts whose subject is `top`, with their `artifactType`.
    pub referrers: Vec<Descriptor>,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("name", &self.name)
            .field("top", &self.top)
            .field("referrers", &self.referrers)
            .finish()
    }
}

/// Open the image `reference` (written `name` by the user). `insecure` allows a
/// registry over plain HTTP.
pub fn open(name: &str, reference: &ImageRef, insecure: bool) -> Result<Opened> {
    let read_err = |e: ReadError| {
        if e.is_usage() {
            Error::Usage(e.to_string())
        } else {
            Error::Output(format!("{name}: {e}"))
        }
    };
    match reference {
        ImageRef::Layout { dir, tag } => {
            let layout = read::Layout::open(dir).map_err(read_err)?;
            let index = layout.index().map_err(read_err)?;
            let top = read::select(dir, &index, tag.as_deref())
                .map_err(read_err)?
                .clone();
            let referrers = read::referrers_in(&layout, &index, &top.digest).map_err(read_err)?;
            Ok(Opened {
                name: name.to_string(),
                source: Box::new(layout),
                top,
                referrers,
            })
        }
        ImageRef::Archive { file, tag } => {
            let archive = ArchiveSource::open(file).map_err(read_err)?;
            let index = archive.index().map_err(read_err)?;
            let top = read::select(file, &index, tag.as_deref())
                .map_err(read_err)?
                .clone();
            let referrers = read::referrers_in(&archive, &index, &top.digest).map_err(read_err)?;
            Ok(Opened {
                name: name.to_string(),
                source: Box::new(archive),
                top,
                referrers,
            })
        }
        ImageRef::Registry { reference, digest } => {
            open_registry(name, reference, digest.as_deref(), insecure)
        }
    }
}

/// A registry image: [`crate::registry::RegistryImage`] as the blob source (credentials
/// as for `--push`, timeouts from `COMPOSE_HTTP_TIMEOUT`), the descriptor the tag or
/// digest resolves to, and its referrers (the referrers API, else the `sha256-<hex>` tag).
fn open_registry(
    name: &str,
    reference: &Reference,
    digest: Option<&str>,
    insecure: bool,
) -> Result<Opened> {
    use crate::registry::{ImageRef as RegistryRef, RegistryImage};
    let timeouts = crate::fetch::Timeouts::from_env()
        .map_err(Error::Usage)?
        .unwrap_or_default()
        .with_env_min_rate()
        .map_err(Error::Usage)?;
    let wanted = RegistryRef {
        reference: reference.clone(),
        digest: digest.map(str::to_string),
    };
    let image = RegistryImage::open(&wanted, insecure, None, timeouts)?;
    let top = image.top().clone();
    let referrers = image.referrers(&top.digest)?;
    Ok(Opened {
        name: name.to_string(),
        source: Box::new(image),
        top,
        referrers,
    })
}

/// Read a small blob (a record's file) whole, checked against its descriptor; larger
/// than `limit` bytes is refused.
pub fn read_blob(
    source: &dyn BlobSource,
    descriptor: &Descriptor,
    limit: u64,
) -> std::result::Result<Vec<u8>, ReadError> {
    use std::io::Read;
    if descriptor.size > limit {
        return Err(ReadError::Invalid {
            what: format!("blob {}", descriptor.digest),
            reason: format!("{} bytes, more than the {limit} allowed", descriptor.size),
        });
    }
    let mut verified = read::Verified::new(
        source.open_blob(&descriptor.digest)?,
        &descriptor.digest,
        descriptor.size,
    );
    let mut bytes = Vec::new();
    (&mut verified)
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| ReadError::Io {
            context: format!("cannot read blob {}", descriptor.digest),
            source,
        })?;
    verified.finish()?;
    Ok(bytes)
}

/// A build record read from an image: the manifest TOML and the lock, with their file
/// names.
#[derive(Debug, Clone)]
pub struct Record {
    /// The manifest's file name (`org.opencontainers.image.title`).
    pub manifest_name: String,
    /// The manifest's bytes.
    pub manifest: Vec<u8>,
    /// The lock's file name.
    pub lock_name: String,
    /// The lock's bytes.
    pub lock: Vec<u8>,
}

/// Files of a record larger than this are refused.
const RECORD_FILE_LIMIT: u64 = 16 << 20;

/// The build record attached to `image`, if any (the first, when several are).
pub fn record(image: &Opened) -> Result<Option<Record>> {
    let err = |e: ReadError| Error::Output(format!("{}: build record: {e}", image.name));
    let Some(d) = image
        .referrers
        .iter()
        .find(|d| d.artifact_type.as_deref() == Some(BUILD_RECORD))
    else {
        return Ok(None);
    };
    let what = format!("build record {}", d.digest);
    let manifest: read::Document<read::ImageManifest> =
        read::read_document(image.source.as_ref(), d, &what).map_err(err)?;
    let layer = |media_type: &str| -> Result<(String, Vec<u8>)> {
        let l = manifest
            .content
            .layers
            .iter()
            .find(|l| l.media_type == media_type)
            .ok_or_else(|| {
                Error::Output(format!(
                    "{}: build record {} has no {media_type} layer",
                    image.name, d.digest
                ))
            })?;
        let title = l
            .annotations
            .get("org.opencontainers.image.title")
            .map(String::as_str)
            .unwrap_or("");
        let bytes = read_blob(image.source.as_ref(), l, RECORD_FILE_LIMIT).map_err(err)?;
        Ok((title.to_string(), bytes))
    };
    let (manifest_name, manifest_bytes) = layer(RECORD_MANIFEST)?;
    let (lock_name, lock) = layer(RECORD_LOCK)?;
    Ok(Some(Record {
        manifest_name,
        manifest: manifest_bytes,
        lock_name,
        lock,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().display().to_string();
        assert_eq!(
            ImageRef::parse(&format!("oci:{d}:v1")).unwrap(),
            ImageRef::Layout {
                dir: tmp.path().into(),
                tag: Some("v1".into())
            }
        );
        let f = tmp.path().join("img.tar");
        std::fs::write(&f, b"").unwrap();
        assert_eq!(
            ImageRef::parse(&format!("oci-archive:{}:v1", f.display())).unwrap(),
            ImageRef::Archive {
                file: f.clone(),
                tag: Some("v1".into())
            }
        );
        assert_eq!(
            ImageRef::parse(&format!("oci-archive:{}", f.display())).unwrap(),
            ImageRef::Archive { file: f, tag: None }
        );
        let digest = format!("sha256:{}", "a".repeat(64));
        let ImageRef::Registry {
            reference,
            digest: d,
        } = ImageRef::parse(&format!("docker://127.0.0.1:5000/team/run@{digest}")).unwrap()
        else {
            panic!("not a registry reference")
        };
        assert_eq!(
            (reference.registry.as_str(), reference.repository.as_str()),
            ("127.0.0.1:5000", "team/run")
        );
        assert_eq!(d, Some(digest));
        let e = ImageRef::parse("plain").unwrap_err();
        assert!(e.to_string().contains("oci:DIR"), "{e}");
        let e = ImageRef::parse("r.io/x@sha256:12").unwrap_err();
        assert!(e.to_string().contains("64 hex"), "{e}");
    }
}
