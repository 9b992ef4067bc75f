//! Reading an image from a registry: `[docker://]REGISTRY/REPOSITORY[:TAG|@DIGEST]`
//! resolved to its top descriptor, its manifests and blobs served as a
//! [`BlobSource`] (so `oci::read` reads a registry image exactly like a layout, every
//! byte checked against its digest there), and the image's referrers listed
//! (distribution-spec 1.1's referrers API, else the referrers tag `sha256-<hex>`).
//!
//! The HTTP session, its authentication (basic, bearer tokens, the Docker config) and
//! `--insecure` are `crate::push`'s, opened here for `pull` only. It must not write to
//! a registry nor parse documents beyond finding a list of descriptors: the typed
//! documents are `oci::read`'s.
//!
//! [`RegistryImage`] runs its own single-threaded runtime: call it from outside any
//! tokio runtime (as `oci::read` and the commands do).

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::sync::Mutex;

use reqwest::StatusCode;
use sha2::{Digest as _, Sha256};

use crate::fetch::Timeouts;
use crate::oci::read::{document, BlobSource, Descriptor, ReadError};
use crate::oci::MEDIA_TYPE_INDEX;
use crate::push::{Credentials, PushError, PushOptions, Reference, Session};

/// What a manifest request accepts: OCI and Docker manifests and indexes.
const MANIFEST_TYPES: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";
/// Manifests larger than this are refused (as `oci::read` refuses documents).
const MANIFEST_LIMIT: usize = 16 << 20;

/// `[docker://]REGISTRY/REPOSITORY[:TAG|@DIGEST]`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// Registry, repository and tag (`latest` when neither a tag nor a digest is given).
    pub reference: Reference,
    /// `sha256:<hex>`, when the image is named by digest.
    pub digest: Option<String>,
}

impl ImageRef {
    /// Parse an image reference; the error says what is wrong with it.
    pub fn parse(s: &str) -> Result<ImageRef, PushError> {
        let bare = s.strip_prefix("docker://").unwrap_or(s);
        let bad = |reason: String| PushError::BadImage {
            reference: s.to_string(),
            reason,
        };
        let (name, digest) = match bare.split_once('@') {
            Some((name, d)) => {
                let ok = d.strip_prefix("sha256:").is_some_and(|h| {
                    h.len() == 64
                        && h.bytes()
                            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
                });
                if !ok {
                    return Err(bad(format!(
                        "`{d}` is not a sha256:<64 lowercase hex> digest"
                    )));
                }
                (name, Some(d.to_string()))
            }
            None => (bare, None),
        };
        let mut reference = Reference::parse(name).map_err(|e| match e {
            PushError::BadReference { reason, .. } => bad(reason),
            e => e,
        })?;
        if reference.tag.is_none() && digest.is_none() {
            reference.tag = Some("latest".into());
        }
        Ok(ImageRef { reference, digest })
    }
}

/// An image in a registry, read through one session.
pub struct RegistryImage {
    runtime: tokio::runtime::Runtime,
    session: Session,
    /// The descriptor the reference names (index or manifest), as the registry serves it.
    top: Descriptor,
    /// Manifests fetched so far, by digest (served to [`BlobSource::open_blob`]).
    manifests: Mutex<BTreeMap<String, Vec<u8>>>,
}

impl RegistryImage {
    /// Open `image` (credentials as for `--push`: `credentials`, else the environment
    /// or the Docker config; plain HTTP only with `insecure`) and fetch its top manifest.
    /// A digest in the reference is checked against the bytes served.
    pub fn open(
        image: &ImageRef,
        insecure: bool,
        credentials: Option<Credentials>,
        timeouts: Timeouts,
    ) -> Result<RegistryImage, PushError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| PushError::Client(e.to_string()))?;
        let mut opts = PushOptions::new(image.reference.clone(), insecure);
        opts.credentials = credentials;
        let session = runtime.block_on(crate::push::open_session(&opts, timeouts, "pull"))?;
        let mut me = RegistryImage {
            runtime,
            session,
            top: Descriptor {
                media_type: String::new(),
                digest: String::new(),
                size: 0,
                platform: None,
                artifact_type: None,
                annotations: BTreeMap::new(),
            },
            manifests: Mutex::new(BTreeMap::new()),
        };
        let wanted = image
            .digest
            .clone()
            .or_else(|| image.reference.tag.clone())
            .unwrap_or_else(|| "latest".into());
        let (top, _) = me
            .manifest(&wanted)?
            .ok_or_else(|| PushError::NoSuchImage {
                image: image_name(image),
            })?;
        if let Some(d) = &image.digest {
            if &top.digest != d {
                return Err(PushError::DigestMismatch {
                    what: format!("the manifest {}", image_name(image)),
                    expected: d.clone(),
                    got: top.digest,
                });
            }
        }
        me.top = top;
        Ok(me)
    }

    /// The image the reference names: its media type (index or manifest), digest and
    /// size, computed from the bytes the registry served.
    pub fn top(&self) -> &Descriptor {
        &self.top
    }

    /// `GET /v2/<repo>/manifests/<reference>` (a tag or a digest): its descriptor and
    /// bytes, kept for [`BlobSource::open_blob`]; None when the registry has none.
    pub fn manifest(&self, reference: &str) -> Result<Option<(Descriptor, Vec<u8>)>, PushError> {
        let got = self.runtime.block_on(async {
            let resp = self
                .session
                .get(
                    &format!("manifests/{reference}"),
                    MANIFEST_TYPES,
                    "GET manifest",
                    &[StatusCode::OK, StatusCode::NOT_FOUND],
                )
                .await?;
            if resp.status() == StatusCode::NOT_FOUND {
                return Ok(None);
            }
            let media_type = resp
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(|t| t.split(';').next().unwrap_or(t).trim().to_string())
                .unwrap_or_default();
            let url = resp.url().to_string();
            let bytes = resp.bytes().await.map_err(|e| PushError::Transport {
                url,
                message: crate::fetch::describe(&e),
                attempts: 1,
            })?;
            Ok::<_, PushError>(Some((media_type, bytes.to_vec())))
        })?;
        let Some((mut media_type, bytes)) = got else {
            return Ok(None);
        };
        if bytes.len() > MANIFEST_LIMIT {
            return Err(PushError::Layout {
                path: reference.into(),
                message: format!("the manifest is larger than {MANIFEST_LIMIT} bytes"),
            });
        }
        // A registry that does not say: the document's own mediaType.
        if media_type.is_empty() || media_type == "application/json" {
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            media_type = v["mediaType"].as_str().unwrap_or_default().to_string();
        }
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
        if reference.starts_with("sha256:") && reference != digest {
            return Err(PushError::DigestMismatch {
                what: format!("the manifest {reference}"),
                expected: reference.to_string(),
                got: digest,
            });
        }
        let descriptor = Descriptor {
            media_type,
            digest: digest.clone(),
            size: bytes.len() as u64,
            platform: None,
            artifact_type: None,
            annotations: BTreeMap::new(),
        };
        self.manifests
            .lock()
            .expect("manifests lock")
            .insert(digest, bytes.clone());
        Ok(Some((descriptor, bytes)))
    }

    /// The referrers of `digest` (an image in this repository): the registry's
    /// referrers API when it answers with an image index, else the image index under
    /// the referrers tag `sha256-<hex>` (none: an empty list). The descriptors as listed,
    /// `artifactType` and annotations included; filter them by `artifactType`.
    pub fn referrers(&self, digest: &str) -> Result<Vec<Descriptor>, PushError> {
        let api = self.runtime.block_on(async {
            let resp = self
                .session
                .get(
                    &format!("referrers/{digest}"),
                    MEDIA_TYPE_INDEX,
                    "GET referrers",
                    &[
                        StatusCode::OK,
                        StatusCode::NOT_FOUND,
                        StatusCode::BAD_REQUEST,
                        StatusCode::METHOD_NOT_ALLOWED,
                    ],
                )
                .await?;
            if resp.status() != StatusCode::OK {
                return Ok(None);
            }
            let url = resp.url().to_string();
            let bytes = resp.bytes().await.map_err(|e| PushError::Transport {
                url,
                message: crate::fetch::describe(&e),
                attempts: 1,
            })?;
            Ok::<_, PushError>(Some(bytes.to_vec()))
        })?;
        let listed = |bytes: &[u8], what: &str| -> Option<Vec<Descriptor>> {
            document::parse::<document::Index>(bytes, what)
                .ok()
                .map(|i| i.manifests)
        };
        if let Some(list) = api.as_deref().and_then(|b| listed(b, "referrers")) {
            return Ok(list);
        }
        let tag = digest.replacen(':', "-", 1);
        match self.manifest(&tag)? {
            None => Ok(Vec::new()),
            Some((_, bytes)) => listed(&bytes, &tag).ok_or_else(|| PushError::Referrers {
                tag,
                message: "it is not an OCI image index".into(),
            }),
        }
    }

    /// The registry and repository, for messages.
    pub fn name(&self) -> String {
        let r = self.session.reference();
        format!("{}/{}", r.registry, r.repository)
    }
}

fn image_name(image: &ImageRef) -> String {
    let mut s = format!(
        "{}/{}",
        image.reference.registry, image.reference.repository
    );
    match (&image.digest, &image.reference.tag) {
        (Some(d), _) => s.push_str(&format!("@{d}")),
        (None, Some(t)) => s.push_str(&format!(":{t}")),
        (None, None) => {}
    }
    s
}

impl BlobSource for RegistryImage {
    /// A manifest fetched earlier comes from memory; anything else is
    /// `GET /v2/<repo>/blobs/<digest>`, streamed (and, on a `404`, asked for as a
    /// manifest). The caller checks the bytes against the descriptor.
    fn open_blob(&self, digest: &str) -> Result<Box<dyn Read + '_>, ReadError> {
        let io_err = |e: PushError| ReadError::Io {
            context: format!("cannot fetch blob {digest} from {}", self.name()),
            source: io::Error::other(e.to_string()),
        };
        if !digest
            .strip_prefix("sha256:")
            .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(ReadError::Invalid {
                what: format!("digest `{digest}`"),
                reason: "only sha256:<64 hex digits> digests are supported".into(),
            });
        }
        if let Some(bytes) = self.manifests.lock().expect("manifests lock").get(digest) {
            return Ok(Box::new(io::Cursor::new(bytes.clone())));
        }
        let resp = self
            .runtime
            .block_on(self.session.get(
                &format!("blobs/{digest}"),
                "*/*",
                "GET blob",
                &[StatusCode::OK, StatusCode::NOT_FOUND],
            ))
            .map_err(io_err)?;
        if resp.status() == StatusCode::NOT_FOUND {
            drop(resp);
            return match self.manifest(digest).map_err(io_err)? {
                Some((_, bytes)) => Ok(Box::new(io::Cursor::new(bytes))),
                None => Err(ReadError::Io {
                    context: format!("cannot fetch blob {digest} from {}", self.name()),
                    source: io::Error::new(
                        io::ErrorKind::NotFound,
                        "the registry has no such blob",
                    ),
                }),
            };
        }
        Ok(Box::new(Body {
            runtime: &self.runtime,
            resp,
            chunk: Vec::new(),
            at: 0,
        }))
    }
}

/// A response body read chunk by chunk.
struct Body<'a> {
    runtime: &'a tokio::runtime::Runtime,
    resp: reqwest::Response,
    chunk: Vec<u8>,
    /// Bytes of `chunk` already read.
    at: usize,
}

impl Read for Body<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.chunk.len() {
            match self.runtime.block_on(self.resp.chunk()) {
                Ok(Some(c)) => {
                    self.chunk = c.to_vec();
                    self.at = 0;
                }
                Ok(None) => return Ok(0),
                Err(e) => return Err(io::Error::other(crate::fetch::describe(&e))),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references() {
        let r = ImageRef::parse("docker://127.0.0.1:5000/team/app:1.0").unwrap();
        assert_eq!(r.reference.tag.as_deref(), Some("1.0"));
        assert_eq!(r.digest, None);
        let d = format!("sha256:{}", "a".repeat(64));
        let r = ImageRef::parse(&format!("127.0.0.1:5000/team/app@{d}")).unwrap();
        assert_eq!((r.reference.tag, r.digest), (None, Some(d)));
        let r = ImageRef::parse("ghcr.io/a/b").unwrap();
        assert_eq!(r.reference.tag.as_deref(), Some("latest"));
        for bad in [
            "127.0.0.1:5000/x@sha256:00",
            "127.0.0.1:5000/X:1",
            "http://h/x",
        ] {
            let e = ImageRef::parse(bad).unwrap_err();
            assert!(e.is_usage(), "{bad}: {e}");
        }
    }
}
