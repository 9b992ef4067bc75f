//! `--push REGISTRY/REPO[:TAG]`: upload an OCI image layout to a registry through the
//! OCI distribution API.
//!
//! The layout is read through `oci::read` ([`read::list`]: every manifest with its exact
//! bytes, every blob once); this module speaks HTTP only. Every blob a manifest refers to
//! is checked with `HEAD` and uploaded when missing (one `PUT` for small blobs, `PATCH`
//! chunks with `Content-Range` and a final `PUT` for large ones), its digest and size
//! checked ([`BlobCheck`]) as it goes up; then each architecture's manifest is put by
//! digest and the top manifest (the index, or the one manifest) under the tag. Manifests
//! go up as the exact bytes of the layout's blobs, so the registry's digest is the
//! layout's; the `Docker-Content-Digest` the registry answers is checked against it.
//! Then the artifacts that refer to the image (the build record and the SBOM, built by
//! `oci::referrers`): their blobs, their manifests by digest, and their listing — the
//! registry's referrers API when it has one (an `OCI-Subject` answer, or an image index
//! at `GET /v2/<repo>/referrers/<digest>`), else the referrers tag `sha256-<hex>`,
//! read, added to (every other descriptor kept) and put back (docs/referrers.md).
//!
//! The session with the registry (HTTP, authentication, `--insecure`) is
//! `crate::registry`'s, opened for `pull,push`. This module must not parse OCI
//! documents itself beyond the descriptor list of a referrers index, write to the
//! layout, or run credential helpers.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use tokio::io::AsyncReadExt;

use crate::fetch::Timeouts;
use crate::oci::read::{self, BlobCheck, BlobRole, Layout};
use crate::oci::referrers::Artifact;
use crate::registry::{
    check_tag, header, open_session, retryable, transport, Failure, Req, Session, SessionOptions,
};
pub use crate::registry::{
    docker_config_auth, parse_challenges, Challenge, Credentials, Found, Reference,
    RegistryError as PushError, PASSWORD_ENV, USER_ENV,
};
use crate::retry::with_retries;

/// Blobs up to this size go up in one `PUT`; larger ones in `PATCH` chunks of this size.
pub const CHUNK: u64 = 8 << 20;
/// Blobs checked and uploaded at the same time.
const PARALLEL: usize = 4;
// ---- options and report --------------------------------------------------------------

/// What `--push`/`--insecure` ask for.
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// Where the image goes; without a tag, [`push_layout`]'s `default_tag`.
    pub reference: Reference,
    /// Allow plain HTTP when the registry does not speak HTTPS.
    pub insecure: bool,
    /// None: [`Credentials::lookup`].
    pub credentials: Option<Credentials>,
    /// Blobs larger than this are uploaded in chunks of this size (default [`CHUNK`]).
    pub chunk: u64,
}

impl PushOptions {
    /// Options for `reference`: credentials looked up, blobs chunked at [`CHUNK`].
    pub fn new(reference: Reference, insecure: bool) -> PushOptions {
        PushOptions {
            reference,
            insecure,
            credentials: None,
            chunk: CHUNK,
        }
    }
}

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushReport {
    /// `registry/repository:tag`.
    pub reference: String,
    /// The digest the tag points to (the layout's).
    pub digest: String,
    /// Blobs uploaded.
    pub pushed: usize,
    /// Bytes of the blobs uploaded.
    pub pushed_bytes: u64,
    /// Blobs the registry already had.
    pub skipped: usize,
    /// Blobs uploaded in chunks.
    pub chunked: usize,
    /// Manifests put (per architecture, and the index).
    pub manifests: usize,
    /// `https` or `http`.
    pub scheme: String,
    /// Wall time of the whole push, layout reading included.
    pub elapsed: Duration,
    /// The `artifactType` of each artifact attached to the image, in the layout's order.
    pub referrers: Vec<String>,
    /// How the registry lists them: its referrers API, or the referrers tag compose
    /// updated (`sha256-<hex>`).
    pub referrers_via: Option<String>,
    /// Blobs of those artifacts uploaded (the counts above are the image's alone).
    pub referrer_blobs: usize,
}

impl fmt::Display for PushReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pushed {}@{} over {}: {} blob{} uploaded ({} bytes{}), {} already in the registry, {} manifest{}, {:.1} s",
            self.reference,
            self.digest,
            self.scheme,
            self.pushed,
            if self.pushed == 1 { "" } else { "s" },
            self.pushed_bytes,
            if self.chunked > 0 {
                format!(", {} in chunks", self.chunked)
            } else {
                String::new()
            },
            self.skipped,
            self.manifests,
            if self.manifests == 1 { "" } else { "s" },
            self.elapsed.as_secs_f64()
        )?;
        if let Some(via) = &self.referrers_via {
            write!(
                f,
                "; attached {} ({} blob{} uploaded), listed by {via}",
                self.referrers.join(" and "),
                self.referrer_blobs,
                if self.referrer_blobs == 1 { "" } else { "s" },
            )?;
        }
        Ok(())
    }
}

// ---- what goes up ---------------------------------------------------------------------

/// A blob a manifest refers to.
#[derive(Debug, Clone)]
struct Blob {
    digest: String,
    size: u64,
    /// `layer of linux/arm64/v8`, for messages.
    what: String,
    /// A blob of an artifact referring to the image, not of the image.
    referrer: bool,
    /// Where its bytes are, when not in the layout.
    path: Option<PathBuf>,
}

/// A manifest (or index) to put: its exact bytes.
#[derive(Debug, Clone)]
struct Manifest {
    digest: String,
    media_type: String,
    bytes: Vec<u8>,
    what: String,
}

/// What the layout holds, top down.
#[derive(Debug)]
struct Image {
    blobs: Vec<Blob>,
    /// Per-architecture manifests of an index (empty for one architecture).
    manifests: Vec<Manifest>,
    /// The index, or the one manifest.
    top: Manifest,
    /// The artifacts `index.json` lists beside the image (`oci::referrers`), in its order.
    referrers: Vec<Referrer>,
}

/// An artifact referring to the image: its manifest, and its descriptor as a referrers
/// list holds it.
#[derive(Debug)]
struct Referrer {
    manifest: Manifest,
    artifact_type: String,
    descriptor: serde_json::Value,
}

/// The one image of the layout ([`read::list`]) as blobs and manifests to put.
fn read_layout(layout: &Layout) -> Result<Image, PushError> {
    let index = layout.index()?;
    // Referrers listed beside the image (`--attach-record`) go up from the build's own
    // artifacts ([`push_layout`]'s `referrers`), not from here.
    let tops: Vec<_> = index
        .manifests
        .iter()
        .filter(|d| d.artifact_type.is_none())
        .collect();
    let [top] = &tops[..] else {
        return Err(PushError::Layout {
            path: layout.dir().join("index.json"),
            message: format!(
                "{} images listed; compose pushes a layout with exactly one (and its referrers)",
                tops.len()
            ),
        });
    };
    let top = *top;
    let listing = read::list(layout, top)?;
    // An index names each image by its platform; one image is "the image".
    let is_index = listing.index.is_some();
    let name = |image: &read::Document<read::ImageManifest>| match &image.descriptor.platform {
        Some(p) if is_index => p.to_string(),
        _ => "the image".to_string(),
    };
    let blobs: Vec<Blob> = listing
        .blobs()
        .into_iter()
        .map(|b| Blob {
            digest: b.descriptor.digest.clone(),
            size: b.descriptor.size,
            what: match b.role {
                BlobRole::Config => format!("config of {}", name(b.image)),
                BlobRole::Layer => format!("layer of {}", name(b.image)),
            },
            referrer: false,
            path: None,
        })
        .collect();
    let manifest = |d: &read::Descriptor, bytes: &[u8], what: String| Manifest {
        digest: d.digest.clone(),
        media_type: d.media_type.clone(),
        bytes: bytes.to_vec(),
        what,
    };
    let (top, top_bytes) = listing.top();
    let (manifests, top_what) = match &listing.index {
        Some(_) => (
            listing
                .images
                .iter()
                .map(|m| manifest(&m.descriptor, &m.bytes, format!("manifest of {}", name(m))))
                .collect(),
            "the image index",
        ),
        None => (Vec::new(), "the image manifest"),
    };
    Ok(Image {
        blobs,
        manifests,
        top: manifest(top, top_bytes, top_what.into()),
        referrers: Vec::new(),
    })
}

impl Session {
    /// `HEAD /v2/<repo>/blobs/<digest>`: does the registry have it?
    async fn has_blob(&self, digest: &str) -> Result<bool, PushError> {
        let req = Req {
            method: Method::HEAD,
            url: self.url(&format!("blobs/{digest}")),
            headers: HeaderMap::new(),
            body: None,
            timeout: None,
            what: "HEAD blob",
        };
        with_retries(|| async {
            let resp = self
                .expect(&req, &[StatusCode::OK, StatusCode::NOT_FOUND])
                .await?;
            Ok(resp.status() == StatusCode::OK)
        })
        .await
    }

    /// The upload URL in a `202`'s `Location` (relative to the request's URL).
    fn location(&self, resp: &reqwest::Response, what: &str) -> Result<Url, Failure> {
        let Some(loc) = header(resp, "location") else {
            return Err(PushError::Status {
                what: format!("{what} (no Location header)"),
                url: resp.url().to_string(),
                status: resp.status().as_u16(),
                body: String::new(),
                attempts: 1,
            }
            .into());
        };
        resp.url().join(loc).map_err(|e| {
            PushError::Status {
                what: format!("{what} (Location {loc:?}: {e})"),
                url: resp.url().to_string(),
                status: resp.status().as_u16(),
                body: String::new(),
                attempts: 1,
            }
            .into()
        })
    }

    /// Upload one blob (a fresh upload session per attempt). Returns whether it went
    /// up in chunks.
    async fn upload(&self, layout: &Layout, blob: &Blob, chunk: u64) -> Result<bool, PushError> {
        let path = match &blob.path {
            Some(p) => p.clone(),
            None => layout.blob_path(&blob.digest)?,
        };
        with_retries(|| self.upload_once(&path, blob, chunk)).await
    }

    async fn upload_once(&self, path: &Path, blob: &Blob, chunk: u64) -> Result<bool, Failure> {
        let start = Req {
            method: Method::POST,
            url: self.url("blobs/uploads/"),
            headers: HeaderMap::new(),
            body: None,
            timeout: None,
            what: "POST blob upload",
        };
        let resp = self.expect(&start, &[StatusCode::ACCEPTED]).await?;
        let mut location = self.location(&resp, "POST blob upload")?;
        let layout_err = |message: String| PushError::Layout {
            path: path.to_path_buf(),
            message,
        };
        let mut file = tokio::fs::File::open(path)
            .await
            .map_err(|e| layout_err(e.to_string()))?;
        // The layout's rule for a blob (digest and size), applied while it goes up.
        let mut check = BlobCheck::new(&blob.digest, blob.size);
        let chunked = blob.size > chunk;
        let mut octets = HeaderMap::new();
        octets.insert(
            reqwest::header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        let mut buf = vec![0u8; chunk.min(blob.size).max(1) as usize];
        let mut offset = 0u64;
        let mut last: Vec<u8> = Vec::new();
        loop {
            let n = read_full(&mut file, &mut buf)
                .await
                .map_err(|e| layout_err(e.to_string()))?;
            if n == 0 {
                break;
            }
            check.update(&buf[..n]);
            if !chunked {
                last.extend_from_slice(&buf[..n]);
                continue;
            }
            let mut headers = octets.clone();
            let range = format!("{}-{}", offset, offset + n as u64 - 1);
            headers.insert(
                "content-range",
                HeaderValue::from_str(&range).expect("digits and a dash"),
            );
            let req = Req {
                method: Method::PATCH,
                url: location.clone(),
                headers,
                body: Some(&buf[..n]),
                timeout: None,
                what: "PATCH blob chunk",
            };
            let resp = self.expect(&req, &[StatusCode::ACCEPTED]).await?;
            location = self.location(&resp, "PATCH blob chunk")?;
            offset += n as u64;
        }
        check.finish().map_err(PushError::Read)?;
        location
            .query_pairs_mut()
            .append_pair("digest", &blob.digest);
        let req = Req {
            method: Method::PUT,
            url: location,
            headers: if chunked { HeaderMap::new() } else { octets },
            body: (!chunked).then_some(&last[..]),
            timeout: None,
            what: "PUT blob",
        };
        let resp = self.expect(&req, &[StatusCode::CREATED]).await?;
        if let Some(got) = header(&resp, "docker-content-digest") {
            if got != blob.digest {
                return Err(PushError::DigestMismatch {
                    what: format!("blob {}", blob.digest),
                    expected: blob.digest.clone(),
                    got: got.to_string(),
                }
                .into());
            }
        }
        Ok(chunked)
    }

    /// `PUT /v2/<repo>/manifests/<reference>` with the manifest's exact bytes. Returns
    /// the `OCI-Subject` the registry answered (it tracks referrers itself).
    async fn put_manifest(
        &self,
        m: &Manifest,
        reference: &str,
    ) -> Result<Option<String>, PushError> {
        let mut headers = HeaderMap::new();
        headers.insert(
            reqwest::header::CONTENT_TYPE,
            HeaderValue::from_str(&m.media_type).map_err(|_| PushError::Layout {
                path: PathBuf::from(&m.digest),
                message: format!("media type {:?} is not a header value", m.media_type),
            })?,
        );
        let req = Req {
            method: Method::PUT,
            url: self.url(&format!("manifests/{reference}")),
            headers,
            body: Some(&m.bytes),
            timeout: None,
            what: "PUT manifest",
        };
        let (got, subject) = with_retries(|| async {
            let resp = self.expect(&req, &[StatusCode::CREATED]).await?;
            Ok((
                header(&resp, "docker-content-digest").map(str::to_string),
                header(&resp, "oci-subject").map(str::to_string),
            ))
        })
        .await
        .map_err(|e| PushError::Manifest {
            digest: m.digest.clone(),
            what: m.what.clone(),
            source: Box::new(e),
        })?;
        match got {
            Some(got) if got != m.digest => Err(PushError::DigestMismatch {
                what: m.what.clone(),
                expected: m.digest.clone(),
                got,
            }),
            _ => Ok(subject),
        }
    }
}

impl Session {
    /// `GET /v2/<repo>/<path>` accepting an OCI image index (both referrers schemas
    /// answer with one).
    fn get_index(&self, path: &str, what: &'static str) -> Req<'static> {
        let mut headers = HeaderMap::new();
        headers.insert(
            reqwest::header::ACCEPT,
            HeaderValue::from_static(crate::oci::MEDIA_TYPE_INDEX),
        );
        Req {
            method: Method::GET,
            url: self.url(path),
            headers,
            body: None,
            timeout: None,
            what,
        }
    }

    /// `GET /v2/<repo>/referrers/<digest>`: does the registry answer with an image
    /// index (distribution-spec 1.1)? A `404` (or any other answer) says no.
    async fn has_referrers_api(&self, digest: &str) -> Result<bool, PushError> {
        let req = self.get_index(&format!("referrers/{digest}"), "GET referrers");
        with_retries(|| async {
            let resp = self.send(&req).await?;
            if resp.status() != StatusCode::OK {
                if retryable(resp.status()) {
                    return Err(Failure::Retry(PushError::Status {
                        what: req.what.to_string(),
                        url: req.url.to_string(),
                        status: resp.status().as_u16(),
                        body: String::new(),
                        attempts: 1,
                    }));
                }
                return Ok(false);
            }
            let is_index = header(&resp, "content-type")
                .is_some_and(|t| t.starts_with(crate::oci::MEDIA_TYPE_INDEX));
            let body = resp.bytes().await.map_err(|e| transport(&req.url, &e))?;
            let parsed: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
            Ok(is_index && parsed.is_some_and(|v| v["manifests"].is_array()))
        })
        .await
    }

    /// The referrers tag schema (distribution-spec 1.1's fallback): read the image index
    /// under `sha256-<hex>` of `subject` (none yet: an empty one), add `ours` (replacing
    /// a descriptor of the same digest, keeping every other one as it is), sort
    /// (`oci::referrers::sort_descriptors`) and put it back when it changed. Returns
    /// the tag.
    async fn update_referrers_tag(
        &self,
        subject: &str,
        ours: &[serde_json::Value],
    ) -> Result<String, PushError> {
        use canon_json::CanonJsonSerialize;
        let tag = subject.replacen(':', "-", 1);
        let req = self.get_index(&format!("manifests/{tag}"), "GET referrers tag");
        let existing: Option<Vec<u8>> = with_retries(|| async {
            let resp = self
                .expect(&req, &[StatusCode::OK, StatusCode::NOT_FOUND])
                .await?;
            if resp.status() == StatusCode::NOT_FOUND {
                return Ok(None);
            }
            let body = resp.bytes().await.map_err(|e| transport(&req.url, &e))?;
            Ok(Some(body.to_vec()))
        })
        .await?;
        let mut list: Vec<serde_json::Value> = match &existing {
            None => Vec::new(),
            Some(bytes) => {
                let v: serde_json::Value =
                    serde_json::from_slice(bytes).map_err(|e| PushError::Referrers {
                        tag: tag.clone(),
                        message: format!("it is not JSON ({e})"),
                    })?;
                if v["mediaType"] != crate::oci::MEDIA_TYPE_INDEX || !v["manifests"].is_array() {
                    return Err(PushError::Referrers {
                        tag,
                        message: "it is not an OCI image index".into(),
                    });
                }
                v["manifests"].as_array().cloned().unwrap_or_default()
            }
        };
        let mut before = list.clone();
        crate::oci::referrers::sort_descriptors(&mut before);
        for d in ours {
            list.retain(|x| x["digest"] != d["digest"]);
            list.push(d.clone());
        }
        crate::oci::referrers::sort_descriptors(&mut list);
        // Nothing to add (the same build pushed again): the tag is left as it is.
        if existing.is_some() && before == list {
            return Ok(tag);
        }
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": crate::oci::MEDIA_TYPE_INDEX,
            "manifests": list,
        });
        let bytes = index
            .to_canon_json_vec()
            .map_err(|e| PushError::Referrers {
                tag: tag.clone(),
                message: e.to_string(),
            })?;
        let m = Manifest {
            digest: format!(
                "sha256:{}",
                hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes))
            ),
            media_type: crate::oci::MEDIA_TYPE_INDEX.into(),
            bytes,
            what: format!("the referrers index {tag}"),
        };
        self.put_manifest(&m, &tag).await?;
        Ok(tag)
    }
}

/// Fill `buf` unless the file ends first; the number of bytes read.
async fn read_full(file: &mut tokio::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        let m = file.read(&mut buf[n..]).await?;
        if m == 0 {
            break;
        }
        n += m;
    }
    Ok(n)
}

/// Push the image of the OCI layout at `layout` to `opts.reference` (its tag, else
/// `default_tag`).
pub async fn push_layout(
    layout: &Path,
    opts: &PushOptions,
    timeouts: Timeouts,
    default_tag: &str,
    referrers: &[Artifact],
) -> Result<PushReport, PushError> {
    let started = Instant::now();
    let layout = Layout::open(layout)?;
    let mut image = read_layout(&layout)?;
    // The referrers' blobs, spooled to files so that they go up as the layout's do.
    let spool = tempfile::tempdir().map_err(|e| PushError::Layout {
        path: std::env::temp_dir(),
        message: format!("cannot create a temporary directory: {e}"),
    })?;
    add_referrers(&mut image, referrers, spool.path())?;
    let mut opts = opts.clone();
    let tag = opts
        .reference
        .tag
        .get_or_insert_with(|| default_tag.to_string())
        .clone();
    check_tag(&tag).map_err(|reason| PushError::BadReference {
        reference: opts.reference.to_string(),
        reason,
    })?;
    let session = open_session(
        &SessionOptions {
            reference: opts.reference.clone(),
            insecure: opts.insecure,
            credentials: opts.credentials.clone(),
        },
        timeouts,
        "pull,push",
    )
    .await?;
    push_image(&session, &layout, image, &opts, &tag, started).await
}

/// Add `artifacts` (each refers to the image) to what goes up: their blobs, written to
/// `spool`, and their manifests.
fn add_referrers(image: &mut Image, artifacts: &[Artifact], spool: &Path) -> Result<(), PushError> {
    for a in artifacts {
        for (digest, _, bytes) in &a.blobs {
            if image.blobs.iter().any(|b| &b.digest == digest) {
                continue;
            }
            let path = spool.join(digest.trim_start_matches("sha256:"));
            std::fs::write(&path, bytes).map_err(|e| PushError::Layout {
                path: path.clone(),
                message: e.to_string(),
            })?;
            image.blobs.push(Blob {
                digest: digest.clone(),
                size: bytes.len() as u64,
                what: format!("blob of the {} artifact", a.artifact_type),
                referrer: true,
                path: Some(path),
            });
        }
        image.referrers.push(Referrer {
            manifest: Manifest {
                digest: a.digest.clone(),
                media_type: crate::oci::MEDIA_TYPE_MANIFEST.into(),
                bytes: a.manifest.clone(),
                what: format!("the {} artifact", a.artifact_type),
            },
            artifact_type: a.artifact_type.clone(),
            descriptor: a.descriptor_json(),
        });
    }
    Ok(())
}

/// Upload `image` (read from `layout`) through `session`, then its referrers.
async fn push_image(
    session: &Session,
    layout: &Layout,
    image: Image,
    opts: &PushOptions,
    tag: &str,
    started: Instant,
) -> Result<PushReport, PushError> {
    let chunk = opts.chunk.max(1);
    let results: Vec<Result<Option<bool>, PushError>> = futures::stream::iter(&image.blobs)
        .map(|blob| {
            let session = &session;
            let layout = &layout;
            async move {
                let wrap = |e: PushError| PushError::Blob {
                    digest: blob.digest.clone(),
                    what: blob.what.clone(),
                    size: blob.size,
                    source: Box::new(e),
                };
                if session.has_blob(&blob.digest).await.map_err(wrap)? {
                    return Ok(None);
                }
                session
                    .upload(layout, blob, chunk)
                    .await
                    .map(Some)
                    .map_err(wrap)
            }
        })
        .buffered(PARALLEL)
        .collect()
        .await;
    let mut report = PushReport {
        reference: opts.reference.to_string(),
        digest: image.top.digest.clone(),
        pushed: 0,
        pushed_bytes: 0,
        skipped: 0,
        chunked: 0,
        manifests: 0,
        scheme: session.base.scheme().to_string(),
        elapsed: Duration::ZERO,
        referrers: Vec::new(),
        referrers_via: None,
        referrer_blobs: 0,
    };
    for (blob, r) in image.blobs.iter().zip(results) {
        let r = r?;
        if blob.referrer {
            report.referrer_blobs += usize::from(r.is_some());
            continue;
        }
        match r {
            None => report.skipped += 1,
            Some(chunked) => {
                report.pushed += 1;
                report.pushed_bytes += blob.size;
                report.chunked += usize::from(chunked);
            }
        }
    }
    for m in &image.manifests {
        session.put_manifest(m, &m.digest).await?;
        report.manifests += 1;
    }
    session.put_manifest(&image.top, tag).await?;
    report.manifests += 1;
    // The referrers, once the image they refer to is there.
    let mut tracked = false;
    for r in &image.referrers {
        tracked |= session
            .put_manifest(&r.manifest, &r.manifest.digest)
            .await?
            .is_some();
        report.referrers.push(r.artifact_type.clone());
    }
    if !image.referrers.is_empty() {
        report.referrers_via = Some(
            if tracked || session.has_referrers_api(&image.top.digest).await? {
                "the registry's referrers API".to_string()
            } else {
                let descriptors: Vec<serde_json::Value> = image
                    .referrers
                    .iter()
                    .map(|r| r.descriptor.clone())
                    .collect();
                let tag = session
                    .update_referrers_tag(&image.top.digest, &descriptors)
                    .await?;
                format!("the referrers tag {tag}")
            },
        );
    }
    report.elapsed = started.elapsed();
    Ok(report)
}
