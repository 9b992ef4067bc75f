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
//! Authentication: anonymous; HTTP basic; bearer tokens (a `401` with
//! `WWW-Authenticate: Bearer realm=…,service=…,scope=…` → `GET realm` with the basic
//! credentials, if any → the token). Credentials come from `COMPOSE_REGISTRY_USER` and
//! `COMPOSE_REGISTRY_PASSWORD`, else from `auths.<registry>.auth` in
//! `$DOCKER_CONFIG/config.json` (default `~/.docker/config.json`).
//!
//! The session (HTTP, authentication, `--insecure`) is also what `crate::registry` reads
//! through ([`open_session`]). It must not parse OCI documents itself beyond the
//! descriptor list of a referrers index, write to the layout, or run credential helpers.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use tokio::io::AsyncReadExt;

use crate::fetch::Timeouts;
use crate::oci::read::{self, BlobCheck, BlobRole, Layout, ReadError};
use crate::oci::referrers::Artifact;
use crate::retry::{self, with_retries};

/// The user name for the registry (with [`PASSWORD_ENV`]).
pub const USER_ENV: &str = "COMPOSE_REGISTRY_USER";
/// The password or token for the registry (with [`USER_ENV`]).
pub const PASSWORD_ENV: &str = "COMPOSE_REGISTRY_PASSWORD";
/// Blobs up to this size go up in one `PUT`; larger ones in `PATCH` chunks of this size.
pub const CHUNK: u64 = 8 << 20;
/// Blobs checked and uploaded at the same time.
const PARALLEL: usize = 4;
const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_HOST: &str = "registry-1.docker.io";
const DOCKER_HUB_AUTH_KEY: &str = "https://index.docker.io/v1/";

/// Why a `--push` failed. [`PushError::BadReference`] is a usage error
/// ([`PushError::is_usage`]); the rest are failures. `attempts` counts the tries made
/// before giving up (set by [`retry::Attempts`]; 1 when the error was not retried).
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The `--push` value (or the tag it gets) does not parse as `REGISTRY/REPOSITORY[:TAG]`.
    #[error("--push {reference}: {reason}; expected REGISTRY/REPOSITORY[:TAG], e.g. 127.0.0.1:5000/team/run-image:1.0")]
    BadReference {
        /// The reference as given.
        reference: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The layout's `index.json` lists other than one manifest, a blob file cannot be
    /// read, or a manifest's media type is not a header value.
    #[error("--push: cannot read the layout {}: {message}", path.display())]
    Layout {
        /// The file concerned (for a manifest whose media type is not a header value,
        /// its digest).
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The layout cannot be opened or listed by [`read`], or a blob did not match its
    /// digest or size as it went up.
    #[error("--push: cannot read the layout: {0}")]
    Read(#[from] ReadError),
    /// A request got no HTTP answer (connection, TLS, timeout, redirect refused).
    #[error("{url}: {message}{}", gave_up(*.attempts))]
    Transport {
        /// The URL requested.
        url: String,
        /// The transfer error with its causes.
        message: String,
        /// Tries made.
        attempts: u32,
    },
    /// The registry answered with an unexpected HTTP status (or a `202` without a usable
    /// `Location`).
    #[error("{url}: {what} answered HTTP {status}{}{}", detail(.body), gave_up(*.attempts))]
    Status {
        /// The request, e.g. `PUT blob`.
        what: String,
        /// The URL requested.
        url: String,
        /// The HTTP status code.
        status: u16,
        /// The answer's body (the message shows its first 300 characters).
        body: String,
        /// Tries made.
        attempts: u32,
    },
    /// HTTPS failed and `--insecure` was not given.
    #[error("registry {registry} does not answer over HTTPS ({message}); if it is a plain-HTTP registry (a local one on 127.0.0.1, say), pass --insecure")]
    NoTls {
        /// The registry as written in the reference.
        registry: String,
        /// The last transport error.
        message: String,
    },
    /// The registry answered `401` and there are no credentials to offer.
    #[error("registry {registry} requires authentication; set {USER_ENV} and {PASSWORD_ENV}, or log in with `docker login {registry}` (credentials stored in ~/.docker/config.json under auths.{registry}.auth){}", hint(.helper))]
    AuthRequired {
        /// The registry as written in the reference.
        registry: String,
        /// `docker-credential-<name>` that the Docker config names for this registry;
        /// compose does not run it.
        helper: Option<String>,
    },
    /// The registry or its token server refused the credentials offered.
    #[error(
        "registry {registry} refused the credentials of user `{user}` (from {from}): {message}"
    )]
    Unauthorized {
        /// The registry as written in the reference.
        registry: String,
        /// The user name offered.
        user: String,
        /// Where the credentials came from ([`Credentials::from`]).
        from: String,
        /// The refusal: HTTP status and body.
        message: String,
    },
    /// The bearer-token flow failed (bad realm, HTTP error, no token in the answer).
    #[error("registry {registry}: token from {realm}: {message}")]
    Token {
        /// The registry as written in the reference.
        registry: String,
        /// The challenge's `realm` URL (empty if it had none).
        realm: String,
        /// What went wrong.
        message: String,
    },
    /// A `401` challenged with neither `Bearer` nor `Basic`.
    #[error(
        "registry {registry} asks for an authentication scheme compose does not speak: {challenge}"
    )]
    Scheme {
        /// The registry as written in the reference.
        registry: String,
        /// The first challenge's scheme, or a note that the `401` had none.
        challenge: String,
    },
    /// The credentials cannot be read: the Docker config is unreadable or malformed, or
    /// only one of [`USER_ENV`] and [`PASSWORD_ENV`] is set.
    #[error("{}: {message}", path.display())]
    Credentials {
        /// The Docker config file (`environment` for the variables).
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The registry's `Docker-Content-Digest` differs from the layout's digest.
    #[error("{what}: the registry stored it as {got}, the layout has {expected}")]
    DigestMismatch {
        /// The blob or manifest, for the message.
        what: String,
        /// The layout's `sha256:<hex>`.
        expected: String,
        /// The digest the registry answered.
        got: String,
    },
    /// Checking or uploading one blob failed.
    #[error("push of blob {digest} ({what}, {size} bytes) failed: {source}")]
    Blob {
        /// The blob's `sha256:<hex>`.
        digest: String,
        /// Its role, e.g. `layer of linux/arm64/v8`.
        what: String,
        /// Its size in bytes.
        size: u64,
        /// Why.
        #[source]
        source: Box<PushError>,
    },
    /// Putting one manifest (or the index) failed.
    #[error("push of manifest {digest} ({what}) failed: {source}")]
    Manifest {
        /// The manifest's `sha256:<hex>`.
        digest: String,
        /// Which one, e.g. `the image index`.
        what: String,
        /// Why.
        #[source]
        source: Box<PushError>,
    },
    /// An image reference to read does not parse.
    #[error("{reference}: {reason}; expected [docker://]REGISTRY/REPOSITORY[:TAG|@DIGEST], e.g. 127.0.0.1:5000/team/run-image:1.0")]
    BadImage {
        /// The reference as given.
        reference: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The registry has no manifest under the tag or digest asked for.
    #[error("{image}: the registry has no such image (HTTP 404)")]
    NoSuchImage {
        /// The reference read.
        image: String,
    },
    /// The referrers tag (`sha256-<hex>`) holds something compose cannot add to.
    #[error("the referrers tag {tag} cannot be updated: {message}; it must hold an OCI image index of the image's referrers")]
    Referrers {
        /// The tag.
        tag: String,
        /// What is wrong with what it holds.
        message: String,
    },
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Client(String),
}

impl PushError {
    /// A bad `--push` reference is a usage error (exit 2); the rest are failures.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            PushError::BadReference { .. } | PushError::BadImage { .. }
        )
    }
}

impl retry::Attempts for PushError {
    fn after(mut self, n: u32) -> PushError {
        if let PushError::Status { attempts, .. } | PushError::Transport { attempts, .. } =
            &mut self
        {
            *attempts = n;
        }
        self
    }
}

fn gave_up(attempts: u32) -> String {
    if attempts > 1 {
        format!(", gave up after {attempts} attempts")
    } else {
        String::new()
    }
}

fn detail(body: &str) -> String {
    let body = body.trim();
    if body.is_empty() {
        String::new()
    } else {
        let short: String = body.chars().take(300).collect();
        format!(": {short}")
    }
}

fn hint(helper: &Option<String>) -> String {
    match helper {
        Some(h) => format!(
            "; note: ~/.docker/config.json keeps credentials in the helper `{h}`, which compose does not run: use {USER_ENV}/{PASSWORD_ENV}"
        ),
        None => String::new(),
    }
}

// ---- the reference -------------------------------------------------------------------

/// `REGISTRY/REPOSITORY[:TAG]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// As written (`127.0.0.1:5000`, `ghcr.io`); `docker.io` when none was.
    pub registry: String,
    /// `team/run-image` (`library/x` on Docker Hub for a one-part name).
    pub repository: String,
    /// None: the build's tag.
    pub tag: Option<String>,
}

impl Reference {
    /// Parse `--push`'s value; the message says what is wrong with it.
    pub fn parse(s: &str) -> Result<Reference, PushError> {
        let bad = |reason: &str| PushError::BadReference {
            reference: s.to_string(),
            reason: reason.to_string(),
        };
        if s.contains("://") {
            return Err(bad(
                "no URL scheme: give the registry host (plain HTTP needs --insecure)",
            ));
        }
        if s.contains('@') {
            return Err(bad("a digest cannot be pushed to; give a tag"));
        }
        let (name, tag) = match s.rfind(':') {
            Some(i) if !s[i..].contains('/') => (&s[..i], Some(&s[i + 1..])),
            _ => (s, None),
        };
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), rest.to_string())
            }
            _ if name.contains('/') => (DOCKER_HUB.to_string(), name.to_string()),
            _ => (DOCKER_HUB.to_string(), format!("library/{name}")),
        };
        if registry.is_empty() || registry.contains(|c: char| c.is_whitespace()) {
            return Err(bad("empty registry host"));
        }
        if let Some((_, port)) = registry.rsplit_once(':') {
            if port.parse::<u16>().is_err() {
                return Err(bad("the registry port is not a number"));
            }
        }
        check_repository(&repository).map_err(|r| bad(&r))?;
        if let Some(t) = tag {
            check_tag(t).map_err(|r| bad(&r))?;
        }
        Ok(Reference {
            registry,
            repository,
            tag: tag.map(str::to_string),
        })
    }

    /// The host the API is spoken to.
    fn host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_HOST
        } else {
            &self.registry
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        Ok(())
    }
}

/// The distribution spec's repository grammar:
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`.
fn check_repository(repo: &str) -> Result<(), String> {
    if repo.is_empty() {
        return Err("no repository name".into());
    }
    if repo.len() > 255 {
        return Err("the repository name is longer than 255 characters".into());
    }
    for part in repo.split('/') {
        let ok = !part.is_empty()
            && part.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && part.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && part.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')
            })
            && !part.contains("..")
            && !part.contains("___")
            && !["._", "_.", ".-", "-.", "_-", "-_"]
                .iter()
                .any(|p| part.contains(p));
        if !ok {
            return Err(format!(
                "repository component `{part}` is not lowercase letters and digits separated by `.`, `_`, `__` or `-`"
            ));
        }
    }
    Ok(())
}

/// `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
fn check_tag(tag: &str) -> Result<(), String> {
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && !tag.starts_with(['.', '-'])
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "tag `{tag}` is not 1 to 128 of A-Z a-z 0-9 _ . - (not starting with . or -)"
        ))
    }
}

// ---- credentials ---------------------------------------------------------------------

/// A user name and password (or token) for HTTP basic and token requests.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub user: String,
    /// The password or token; hidden from `Debug`.
    pub password: String,
    /// Where they came from, for messages.
    pub from: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<hidden>")
            .field("from", &self.from)
            .finish()
    }
}

/// What [`Credentials::lookup`] found.
#[derive(Debug, Clone, Default)]
pub struct Found {
    /// None: no credentials for the registry (the push goes anonymous).
    pub credentials: Option<Credentials>,
    /// A `credsStore`/`credHelpers` entry that may hold the credentials instead.
    pub helper: Option<String>,
}

impl Credentials {
    /// `COMPOSE_REGISTRY_USER` + `COMPOSE_REGISTRY_PASSWORD` if set (both or neither),
    /// else the registry's `auth` in the Docker client config.
    pub fn lookup(registry: &str) -> Result<Found, PushError> {
        let user = std::env::var(USER_ENV).ok();
        let password = std::env::var(PASSWORD_ENV).ok();
        match (user, password) {
            (Some(user), Some(password)) => {
                return Ok(Found {
                    credentials: Some(Credentials {
                        user,
                        password,
                        from: format!("{USER_ENV}/{PASSWORD_ENV}"),
                    }),
                    helper: None,
                })
            }
            (Some(_), None) | (None, Some(_)) => {
                return Err(PushError::Credentials {
                    path: PathBuf::from("environment"),
                    message: format!("set both {USER_ENV} and {PASSWORD_ENV}, or neither"),
                })
            }
            (None, None) => {}
        }
        let dir = match std::env::var_os("DOCKER_CONFIG") {
            Some(d) => PathBuf::from(d),
            None => match dirs::home_dir() {
                Some(h) => h.join(".docker"),
                None => return Ok(Found::default()),
            },
        };
        let path = dir.join("config.json");
        match std::fs::read(&path) {
            Ok(bytes) => docker_config_auth(&path, &bytes, registry),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Found::default()),
            Err(e) => Err(PushError::Credentials {
                path,
                message: e.to_string(),
            }),
        }
    }
}

/// `auths.<registry>.auth` (base64 of `user:password`) of a Docker client config. Keys
/// may carry a scheme and a path (`https://host/v1/`); Docker Hub's is
/// `https://index.docker.io/v1/`.
pub fn docker_config_auth(path: &Path, bytes: &[u8], registry: &str) -> Result<Found, PushError> {
    use base64::Engine as _;
    let bad = |message: String| PushError::Credentials {
        path: path.to_path_buf(),
        message,
    };
    let v: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| bad(format!("not JSON: {e}")))?;
    let want = if registry == DOCKER_HUB {
        host_of(DOCKER_HUB_AUTH_KEY)
    } else {
        registry
    };
    let helper = v["credHelpers"][registry]
        .as_str()
        .or_else(|| v["credsStore"].as_str())
        .map(|h| format!("docker-credential-{h}"));
    let entry = v["auths"]
        .as_object()
        .and_then(|auths| auths.iter().find(|(k, _)| host_of(k) == want))
        .map(|(_, e)| e);
    let Some(auth) = entry
        .and_then(|e| e["auth"].as_str())
        .filter(|a| !a.is_empty())
    else {
        return Ok(Found {
            credentials: None,
            helper,
        });
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .map_err(|e| bad(format!("auths.{want}.auth is not base64: {e}")))?;
    let text = String::from_utf8(decoded)
        .map_err(|_| bad(format!("auths.{want}.auth is not UTF-8 user:password")))?;
    let (user, password) = text
        .split_once(':')
        .ok_or_else(|| bad(format!("auths.{want}.auth is not user:password")))?;
    Ok(Found {
        credentials: Some(Credentials {
            user: user.to_string(),
            password: password.to_string(),
            from: format!("{}", path.display()),
        }),
        helper: None,
    })
}

/// `https://host:port/path` → `host:port`.
fn host_of(key: &str) -> &str {
    let rest = key.split_once("://").map_or(key, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest)
}

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

// ---- the registry session ------------------------------------------------------------

/// How one attempt failed: worth another attempt, or final.
type Failure = retry::Failure<PushError>;

impl From<PushError> for Failure {
    fn from(e: PushError) -> Failure {
        Failure::Fatal(e)
    }
}

fn retryable(status: StatusCode) -> bool {
    retry::retryable_status(status.as_u16())
}

/// A `WWW-Authenticate` challenge: the scheme and its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// As written, e.g. `Bearer` (compared case-insensitively).
    pub scheme: String,
    /// `(name, value)` in header order; names lowercased, values unquoted and unescaped.
    pub params: Vec<(String, String)>,
}

impl Challenge {
    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Parse `Bearer realm="https://auth",service="reg",scope="a:b:pull,push"` (quoted
/// values may hold commas; several challenges may share the header).
pub fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut out: Vec<Challenge> = Vec::new();
    let mut rest = header.trim();
    while !rest.is_empty() {
        rest = rest.trim_start_matches([',', ' ', '\t']);
        // A token followed by `=` is a parameter of the current challenge; else a scheme.
        let end = rest
            .find(|c: char| c == '=' || c == ',' || c.is_whitespace())
            .unwrap_or(rest.len());
        let token = &rest[..end];
        let after = rest[end..].trim_start();
        if token.is_empty() {
            break;
        }
        if let (Some(value_part), Some(current)) = (after.strip_prefix('='), out.last_mut()) {
            let value_part = value_part.trim_start();
            let (value, remaining) = if let Some(q) = value_part.strip_prefix('"') {
                let mut value = String::new();
                let mut chars = q.char_indices();
                let mut close = q.len();
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some((_, n)) = chars.next() {
                                value.push(n);
                            }
                        }
                        '"' => {
                            close = i + 1;
                            break;
                        }
                        c => value.push(c),
                    }
                }
                (value, &q[close.min(q.len())..])
            } else {
                let e = value_part.find(',').unwrap_or(value_part.len());
                (value_part[..e].trim().to_string(), &value_part[e..])
            };
            current.params.push((token.to_ascii_lowercase(), value));
            rest = remaining;
        } else {
            out.push(Challenge {
                scheme: token.to_string(),
                params: Vec::new(),
            });
            rest = after;
        }
    }
    out
}

#[derive(Debug, Clone)]
enum Auth {
    Anonymous,
    Header(HeaderValue),
}

pub(crate) struct Session {
    client: reqwest::Client,
    /// `scheme://host/`.
    base: Url,
    reference: Reference,
    credentials: Option<Credentials>,
    helper: Option<String>,
    auth: Mutex<Auth>,
    /// The token scope's actions: `pull,push`, or `pull` for a reader.
    actions: &'static str,
}

/// A transfer error of reqwest, with its causes in one sentence.
fn transport(url: &Url, e: &reqwest::Error) -> Failure {
    let err = PushError::Transport {
        url: url.to_string(),
        message: crate::fetch::describe(e),
        attempts: 1,
    };
    if e.is_redirect() || e.is_builder() {
        Failure::Fatal(err)
    } else {
        Failure::Retry(err)
    }
}

fn header<'a>(resp: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

/// A request to send (possibly twice: again after a `401` was answered).
struct Req<'a> {
    method: Method,
    url: Url,
    headers: HeaderMap,
    body: Option<&'a [u8]>,
    what: &'a str,
    /// A bound on the whole request (the HTTPS probe of `--insecure`).
    timeout: Option<Duration>,
}

impl Session {
    fn url(&self, path: &str) -> Url {
        self.base
            .join(&format!("v2/{}/{path}", self.reference.repository))
            .expect("a registry path is a valid URL")
    }

    fn scope(&self) -> String {
        format!("repository:{}:{}", self.reference.repository, self.actions)
    }

    /// Send `req` with the current authorisation; a `401` is answered once (a new token
    /// for the scope asked, or the basic credentials) and the request sent again.
    async fn send(&self, req: &Req<'_>) -> Result<reqwest::Response, Failure> {
        let mut answered = false;
        loop {
            let mut b = self
                .client
                .request(req.method.clone(), req.url.clone())
                .headers(req.headers.clone());
            if let Auth::Header(h) = &*self.auth.lock().expect("auth lock") {
                b = b.header(reqwest::header::AUTHORIZATION, h.clone());
            }
            if let Some(t) = req.timeout {
                b = b.timeout(t);
            }
            if let Some(body) = req.body {
                b = b.body(body.to_vec());
            } else if matches!(req.method, Method::PUT | Method::POST | Method::PATCH) {
                b = b.header(reqwest::header::CONTENT_LENGTH, "0");
            }
            let resp = b.send().await.map_err(|e| transport(&req.url, &e))?;
            if resp.status() != StatusCode::UNAUTHORIZED {
                return Ok(resp);
            }
            if answered {
                return Err(self.refused(resp).await.into());
            }
            self.answer(&resp).await?;
            answered = true;
        }
    }

    /// The error for a `401` that authentication did not cure.
    async fn refused(&self, resp: reqwest::Response) -> PushError {
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        match &self.credentials {
            Some(c) => PushError::Unauthorized {
                registry: self.reference.registry.clone(),
                user: c.user.clone(),
                from: c.from.clone(),
                message: format!("HTTP {status}{}", detail(&body)),
            },
            None => PushError::AuthRequired {
                registry: self.reference.registry.clone(),
                helper: self.helper.clone(),
            },
        }
    }

    /// Answer a `401`'s challenge: set the authorisation for the next request.
    async fn answer(&self, resp: &reqwest::Response) -> Result<(), Failure> {
        let challenges: Vec<Challenge> = resp
            .headers()
            .get_all(reqwest::header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(parse_challenges)
            .collect();
        let registry = self.reference.registry.clone();
        if let Some(bearer) = challenges
            .iter()
            .find(|c| c.scheme.eq_ignore_ascii_case("bearer"))
        {
            let token = self.token(bearer).await?;
            let value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                PushError::Token {
                    registry: registry.clone(),
                    realm: bearer.param("realm").unwrap_or_default().to_string(),
                    message: "the token is not a valid header value".into(),
                }
            })?;
            *self.auth.lock().expect("auth lock") = Auth::Header(value);
            return Ok(());
        }
        if challenges
            .iter()
            .any(|c| c.scheme.eq_ignore_ascii_case("basic"))
        {
            let Some(c) = &self.credentials else {
                return Err(PushError::AuthRequired {
                    registry,
                    helper: self.helper.clone(),
                }
                .into());
            };
            *self.auth.lock().expect("auth lock") = Auth::Header(basic(c));
            return Ok(());
        }
        Err(PushError::Scheme {
            registry,
            challenge: challenges
                .first()
                .map(|c| c.scheme.clone())
                .unwrap_or_else(|| "a 401 without WWW-Authenticate".into()),
        }
        .into())
    }

    /// The token flow: `GET realm?service=…&scope=…` (with the basic credentials, when
    /// there are any) → `{"token": …}` or `{"access_token": …}`.
    async fn token(&self, challenge: &Challenge) -> Result<String, Failure> {
        let registry = self.reference.registry.clone();
        let realm = challenge.param("realm").unwrap_or_default().to_string();
        let fail = |message: String| PushError::Token {
            registry: registry.clone(),
            realm: realm.clone(),
            message,
        };
        let mut url =
            Url::parse(&realm).map_err(|e| fail(format!("the realm is not a URL: {e}")))?;
        if url.scheme() == "http" && self.base.scheme() == "https" {
            return Err(fail(
                "refusing to send credentials to a plain-HTTP realm of an HTTPS registry".into(),
            )
            .into());
        }
        {
            let mut q = url.query_pairs_mut();
            if let Some(service) = challenge.param("service") {
                q.append_pair("service", service);
            }
            let ours = self.scope();
            q.append_pair("scope", &ours);
            if let Some(scope) = challenge.param("scope").filter(|s| *s != ours) {
                for s in scope.split(' ') {
                    q.append_pair("scope", s);
                }
            }
        }
        let mut b = self.client.get(url.clone());
        if let Some(c) = &self.credentials {
            b = b.header(reqwest::header::AUTHORIZATION, basic(c));
        }
        let resp = b.send().await.map_err(|e| transport(&url, &e))?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| transport(&url, &e))?;
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            let text = String::from_utf8_lossy(&body).into_owned();
            return Err(match &self.credentials {
                Some(c) => PushError::Unauthorized {
                    registry,
                    user: c.user.clone(),
                    from: c.from.clone(),
                    message: format!(
                        "the token server {realm} answered HTTP {}{}",
                        status.as_u16(),
                        detail(&text)
                    ),
                },
                None => PushError::AuthRequired {
                    registry,
                    helper: self.helper.clone(),
                },
            }
            .into());
        }
        if !status.is_success() {
            let e = fail(format!("HTTP {}", status.as_u16()));
            return Err(if retryable(status) {
                Failure::Retry(e)
            } else {
                Failure::Fatal(e)
            });
        }
        let v: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| fail(format!("the answer is not JSON: {e}")))?;
        v["token"]
            .as_str()
            .or_else(|| v["access_token"].as_str())
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .ok_or_else(|| fail("the answer holds no token".into()).into())
    }

    /// Send and expect one of `ok`; 5xx/408/429 may be retried, the rest are final.
    async fn expect(&self, req: &Req<'_>, ok: &[StatusCode]) -> Result<reqwest::Response, Failure> {
        let resp = self.send(req).await?;
        let status = resp.status();
        if ok.contains(&status) {
            return Ok(resp);
        }
        let body = resp.text().await.unwrap_or_default();
        let err = PushError::Status {
            what: req.what.to_string(),
            url: req.url.to_string(),
            status: status.as_u16(),
            body,
            attempts: 1,
        };
        Err(if retryable(status) {
            Failure::Retry(err)
        } else {
            Failure::Fatal(err)
        })
    }

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
    /// `GET /v2/<repo>/<path>` accepting `accept`, retried as every request; answers
    /// with a status in `ok` are returned, others are errors.
    pub(crate) async fn get(
        &self,
        path: &str,
        accept: &str,
        what: &'static str,
        ok: &[StatusCode],
    ) -> Result<reqwest::Response, PushError> {
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(accept) {
            headers.insert(reqwest::header::ACCEPT, v);
        }
        let req = Req {
            method: Method::GET,
            url: self.url(path),
            headers,
            body: None,
            timeout: None,
            what,
        };
        with_retries(|| self.expect(&req, ok)).await
    }

    /// The registry as written in the reference.
    pub(crate) fn reference(&self) -> &Reference {
        &self.reference
    }

    /// `GET /v2/<repo>/referrers/<digest>`: does the registry answer with an image
    /// index (distribution-spec 1.1)? A `404` (or any other answer) says no.
    async fn has_referrers_api(&self, digest: &str) -> Result<bool, PushError> {
        let mut headers = HeaderMap::new();
        headers.insert(
            reqwest::header::ACCEPT,
            HeaderValue::from_static(crate::oci::MEDIA_TYPE_INDEX),
        );
        let req = Req {
            method: Method::GET,
            url: self.url(&format!("referrers/{digest}")),
            headers,
            body: None,
            timeout: None,
            what: "GET referrers",
        };
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
        let mut headers = HeaderMap::new();
        headers.insert(
            reqwest::header::ACCEPT,
            HeaderValue::from_static(crate::oci::MEDIA_TYPE_INDEX),
        );
        let req = Req {
            method: Method::GET,
            url: self.url(&format!("manifests/{tag}")),
            headers,
            body: None,
            timeout: None,
            what: "GET referrers tag",
        };
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
        let before = list.clone();
        for d in ours {
            list.retain(|x| x["digest"] != d["digest"]);
            list.push(d.clone());
        }
        crate::oci::referrers::sort_descriptors(&mut list);
        if existing.is_some() && {
            let mut sorted = before;
            crate::oci::referrers::sort_descriptors(&mut sorted);
            sorted == list
        } {
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

fn basic(c: &Credentials) -> HeaderValue {
    use base64::Engine as _;
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", c.user, c.password));
    let mut v = HeaderValue::from_str(&format!("Basic {encoded}")).expect("base64 is ASCII");
    v.set_sensitive(true);
    v
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

fn client(timeouts: Timeouts) -> Result<reqwest::Client, PushError> {
    // One process-wide crypto provider for rustls; a second install is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let redirect =
        reqwest::redirect::Policy::custom(|attempt| {
            match crate::fetch::redirect_verdict(attempt.previous(), attempt.url()) {
                Ok(()) => attempt.follow(),
                Err(why) => attempt.error(why),
            }
        });
    reqwest::Client::builder()
        .user_agent(concat!("compose/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(timeouts.connect)
        .read_timeout(timeouts.read)
        .redirect(redirect)
        .build()
        .map_err(|e| PushError::Client(e.to_string()))
}

/// How long `--insecure` waits for an HTTPS answer before it tries plain HTTP. A
/// plain-HTTP server usually fails the handshake at once; some never answer it.
const INSECURE_PROBE: Duration = Duration::from_secs(3);

/// `GET /v2/` over `scheme` (within `probe`, if given): a transport error, or the
/// session (authenticated when the registry asked for it).
async fn connect(
    client: &reqwest::Client,
    scheme: &str,
    opts: &PushOptions,
    found: &Found,
    probe: Option<Duration>,
    actions: &'static str,
) -> Result<Session, Failure> {
    let base = Url::parse(&format!("{scheme}://{}/", opts.reference.host())).map_err(|e| {
        PushError::BadReference {
            reference: opts.reference.to_string(),
            reason: format!("not a host name: {e}"),
        }
    })?;
    let session = Session {
        client: client.clone(),
        base: base.clone(),
        reference: opts.reference.clone(),
        credentials: found.credentials.clone(),
        helper: found.helper.clone(),
        auth: Mutex::new(Auth::Anonymous),
        actions,
    };
    let ping = Req {
        method: Method::GET,
        url: base.join("v2/").expect("valid"),
        headers: HeaderMap::new(),
        body: None,
        timeout: probe,
        what: "GET /v2/ (API version check)",
    };
    session.expect(&ping, &[StatusCode::OK]).await?;
    Ok(session)
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
    let session = open_session(&opts, timeouts, "pull,push").await?;
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

/// A session with `opts.reference`'s registry for `actions` (`pull` or `pull,push`):
/// HTTPS, or plain HTTP with `--insecure` when HTTPS does not answer; credentials as
/// given, else [`Credentials::lookup`].
pub(crate) async fn open_session(
    opts: &PushOptions,
    timeouts: Timeouts,
    actions: &'static str,
) -> Result<Session, PushError> {
    let found = match &opts.credentials {
        Some(c) => Found {
            credentials: Some(c.clone()),
            helper: None,
        },
        None => Credentials::lookup(&opts.reference.registry)?,
    };
    let client = client(timeouts)?;
    let opts = &opts.clone();
    let found = &found;
    let client = &client;
    let connect = |scheme: &'static str, probe: Option<Duration>| {
        connect(client, scheme, opts, found, probe, actions)
    };
    // HTTPS first; plain HTTP only with --insecure, when HTTPS does not answer.
    // One HTTPS attempt decides: a plain-HTTP server fails the TLS handshake at once.
    let probe = opts.insecure.then_some(INSECURE_PROBE);
    let first = match connect("https", probe).await {
        Ok(s) => Ok(s),
        Err(Failure::Fatal(e)) => return Err(e),
        Err(Failure::Retry(e)) => Err(e),
    };
    let session = match first {
        Ok(s) => s,
        Err(PushError::Transport { .. }) if opts.insecure => {
            with_retries(|| connect("http", None)).await?
        }
        Err(PushError::Transport { .. }) => match with_retries(|| connect("https", None)).await {
            Ok(s) => s,
            Err(PushError::Transport { message, .. }) => {
                return Err(PushError::NoTls {
                    registry: opts.reference.registry.clone(),
                    message,
                })
            }
            Err(e) => return Err(e),
        },
        // A 5xx on the first attempt: the usual retries.
        Err(_) => with_retries(|| connect("https", None)).await?,
    };
    Ok(session)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        let r = Reference::parse("127.0.0.1:5000/team/run:1.0").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("127.0.0.1:5000", "team/run", Some("1.0"))
        );
        let r = Reference::parse("localhost/x").unwrap();
        assert_eq!((r.registry.as_str(), r.tag), ("localhost", None));
        let r = Reference::parse("ubuntu:noble").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("docker.io", "library/ubuntu")
        );
        assert_eq!(r.host(), "registry-1.docker.io");
        let r = Reference::parse("ghcr.io/a/b").unwrap();
        assert_eq!(r.to_string(), "ghcr.io/a/b");
        for bad in [
            "http://127.0.0.1:5000/x:1",
            "127.0.0.1:5000/X:1",
            "127.0.0.1:5000/x:-1",
            "127.0.0.1:5000/x@sha256:00",
            "127.0.0.1:5000/",
            "127.0.0.1:port/x",
            "127.0.0.1:5000/a//b",
            "127.0.0.1:5000/a-:t",
        ] {
            let e = Reference::parse(bad).unwrap_err();
            assert!(e.is_usage(), "{bad}: {e}");
        }
    }

    #[test]
    fn challenges() {
        let c = parse_challenges(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "Bearer");
        assert_eq!(c[0].param("realm"), Some("https://auth.example/token"));
        assert_eq!(c[0].param("scope"), Some("repository:a/b:pull,push"));
        let c = parse_challenges(r#"Basic realm="basic-realm", Bearer realm="x\"y""#);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].param("realm"), Some("basic-realm"));
        assert_eq!(c[1].scheme, "Bearer");
        assert_eq!(c[1].param("realm"), Some("x\"y"));
        let c = parse_challenges("Basic");
        assert_eq!((c.len(), c[0].params.len()), (1, 0));
    }

    #[test]
    fn docker_config() {
        let path = Path::new("config.json");
        // "user:pa:ss" — a password may contain a colon.
        let cfg = br#"{"auths":{"https://127.0.0.1:5000/v2/":{"auth":"dXNlcjpwYTpzcw=="},
            "https://index.docker.io/v1/":{"auth":"aHViOnNlY3JldA=="}},"credsStore":"desktop"}"#;
        let f = docker_config_auth(path, cfg, "127.0.0.1:5000").unwrap();
        let c = f.credentials.unwrap();
        assert_eq!((c.user.as_str(), c.password.as_str()), ("user", "pa:ss"));
        assert!(!format!("{c:?}").contains("pa:ss"));
        let hub = docker_config_auth(path, cfg, "docker.io").unwrap();
        assert_eq!(hub.credentials.unwrap().user, "hub");
        let none = docker_config_auth(path, cfg, "ghcr.io").unwrap();
        assert!(none.credentials.is_none());
        assert_eq!(none.helper.as_deref(), Some("docker-credential-desktop"));
        assert!(docker_config_auth(path, b"{", "x").is_err());
        assert!(docker_config_auth(path, br#"{"auths":{"x":{"auth":"!!"}}}"#, "x").is_err());
    }
}
