//! The registry client shared by `--push` (`crate::push`, the upload sequence) and the
//! readers of published images (`compose verify REF`, `compose diff`):
//!
//! - the session: HTTPS, or plain HTTP with `--insecure` when HTTPS does not answer
//!   (`open_session`); authentication anonymous, HTTP basic, or bearer tokens (a `401`
//!   with `WWW-Authenticate: Bearer realm=…,service=…,scope=…` → `GET realm` with the
//!   basic credentials, if any → the token, for `pull` or `pull,push`); credentials from
//!   `COMPOSE_REGISTRY_USER` and `COMPOSE_REGISTRY_PASSWORD`, else `auths.<registry>.auth`
//!   in `$DOCKER_CONFIG/config.json` (default `~/.docker/config.json`); retries as
//!   `crate::retry` says; the one error type of registry work ([`RegistryError`]);
//! - reading an image: `[docker://]REGISTRY/REPOSITORY[:TAG|@DIGEST]` ([`ImageRef`])
//!   resolved to its top descriptor, its manifests and blobs served as a [`BlobSource`]
//!   (so `oci::read` reads a registry image exactly like a layout, every byte checked
//!   against its digest there), and the image's referrers listed (distribution-spec
//!   1.1's referrers API, else the referrers tag `sha256-<hex>`) ([`RegistryImage`]).
//!
//! It must not upload (that is `crate::push`'s), run credential helpers, or parse
//! documents beyond finding a list of descriptors: the typed documents are `oci::read`'s.
//! [`RegistryImage`] runs its own single-threaded runtime: call it from outside any
//! tokio runtime (as `oci::read` and the commands do).

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use sha2::{Digest as _, Sha256};

use crate::retry::{self, with_retries};

use crate::fetch::Timeouts;
use crate::oci::read::{document, BlobSource, Descriptor, ReadError};
use crate::oci::MEDIA_TYPE_INDEX;

// ---- errors, references, credentials ---------------------------------------------

/// The user name for the registry (with [`PASSWORD_ENV`]).
pub const USER_ENV: &str = "COMPOSE_REGISTRY_USER";
/// The password or token for the registry (with [`USER_ENV`]).
pub const PASSWORD_ENV: &str = "COMPOSE_REGISTRY_PASSWORD";
const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_HOST: &str = "registry-1.docker.io";
const DOCKER_HUB_AUTH_KEY: &str = "https://index.docker.io/v1/";

/// Why a `--push`, or reading an image from a registry, failed (`crate::push` names it
/// `PushError`). [`RegistryError::BadReference`] and [`RegistryError::BadImage`] are
/// usage errors ([`RegistryError::is_usage`]); the rest are failures. `attempts` counts the tries made
/// before giving up (set by [`retry::Attempts`]; 1 when the error was not retried).
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
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
    /// The layout cannot be opened or listed by `oci::read`, or a blob did not match its
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
        source: Box<RegistryError>,
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
        source: Box<RegistryError>,
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

impl RegistryError {
    /// A bad `--push` reference is a usage error (exit 2); the rest are failures.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            RegistryError::BadReference { .. } | RegistryError::BadImage { .. }
        )
    }
}

impl retry::Attempts for RegistryError {
    fn after(mut self, n: u32) -> RegistryError {
        if let RegistryError::Status { attempts, .. } | RegistryError::Transport { attempts, .. } =
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
    pub fn parse(s: &str) -> Result<Reference, RegistryError> {
        let bad = |reason: &str| RegistryError::BadReference {
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

/// A tag the OCI distribution spec allows ([`crate::oci::tag_problem`]); the reason as a
/// phrase naming the tag when not.
pub(crate) fn check_tag(tag: &str) -> Result<(), String> {
    match crate::oci::tag_problem(tag) {
        None => Ok(()),
        Some(reason) => Err(format!("tag `{}`: {reason}", crate::text::shown(tag))),
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
    pub fn lookup(registry: &str) -> Result<Found, RegistryError> {
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
                return Err(RegistryError::Credentials {
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
            Err(e) => Err(RegistryError::Credentials {
                path,
                message: e.to_string(),
            }),
        }
    }
}

/// `auths.<registry>.auth` (base64 of `user:password`) of a Docker client config. Keys
/// may carry a scheme and a path (`https://host/v1/`); Docker Hub's is
/// `https://index.docker.io/v1/`.
pub fn docker_config_auth(
    path: &Path,
    bytes: &[u8],
    registry: &str,
) -> Result<Found, RegistryError> {
    use base64::Engine as _;
    let bad = |message: String| RegistryError::Credentials {
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

// ---- the registry session ------------------------------------------------------------

/// How one attempt failed: worth another attempt, or final.
pub(crate) type Failure = retry::Failure<RegistryError>;

impl From<RegistryError> for Failure {
    fn from(e: RegistryError) -> Failure {
        Failure::Fatal(e)
    }
}

pub(crate) fn retryable(status: StatusCode) -> bool {
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
    pub(crate) base: Url,
    reference: Reference,
    credentials: Option<Credentials>,
    helper: Option<String>,
    auth: Mutex<Auth>,
    /// The token scope's actions: `pull,push`, or `pull` for a reader.
    actions: &'static str,
}

/// A transfer error of reqwest, with its causes in one sentence.
pub(crate) fn transport(url: &Url, e: &reqwest::Error) -> Failure {
    let err = RegistryError::Transport {
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

pub(crate) fn header<'a>(resp: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

/// A request to send (possibly twice: again after a `401` was answered).
pub(crate) struct Req<'a> {
    pub(crate) method: Method,
    pub(crate) url: Url,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Option<&'a [u8]>,
    pub(crate) what: &'a str,
    /// A bound on the whole request (the HTTPS probe of `--insecure`).
    pub(crate) timeout: Option<Duration>,
}

impl Session {
    pub(crate) fn url(&self, path: &str) -> Url {
        self.base
            .join(&format!("v2/{}/{path}", self.reference.repository))
            .expect("a registry path is a valid URL")
    }

    fn scope(&self) -> String {
        format!("repository:{}:{}", self.reference.repository, self.actions)
    }

    /// Send `req` with the current authorisation; a `401` is answered once (a new token
    /// for the scope asked, or the basic credentials) and the request sent again.
    pub(crate) async fn send(&self, req: &Req<'_>) -> Result<reqwest::Response, Failure> {
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
    async fn refused(&self, resp: reqwest::Response) -> RegistryError {
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        match &self.credentials {
            Some(c) => RegistryError::Unauthorized {
                registry: self.reference.registry.clone(),
                user: c.user.clone(),
                from: c.from.clone(),
                message: format!("HTTP {status}{}", detail(&body)),
            },
            None => RegistryError::AuthRequired {
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
                RegistryError::Token {
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
                return Err(RegistryError::AuthRequired {
                    registry,
                    helper: self.helper.clone(),
                }
                .into());
            };
            *self.auth.lock().expect("auth lock") = Auth::Header(basic(c));
            return Ok(());
        }
        Err(RegistryError::Scheme {
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
        let fail = |message: String| RegistryError::Token {
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
                Some(c) => RegistryError::Unauthorized {
                    registry,
                    user: c.user.clone(),
                    from: c.from.clone(),
                    message: format!(
                        "the token server {realm} answered HTTP {}{}",
                        status.as_u16(),
                        detail(&text)
                    ),
                },
                None => RegistryError::AuthRequired {
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

    /// `GET /v2/<repo>/<path>` accepting `accept`, retried as every request; answers
    /// with a status in `ok` are returned, others are errors.
    pub(crate) async fn get(
        &self,
        path: &str,
        accept: &str,
        what: &'static str,
        ok: &[StatusCode],
    ) -> Result<reqwest::Response, RegistryError> {
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

    /// Send and expect one of `ok`; 5xx/408/429 may be retried, the rest are final.
    pub(crate) async fn expect(
        &self,
        req: &Req<'_>,
        ok: &[StatusCode],
    ) -> Result<reqwest::Response, Failure> {
        let resp = self.send(req).await?;
        let status = resp.status();
        if ok.contains(&status) {
            return Ok(resp);
        }
        let body = resp.text().await.unwrap_or_default();
        let err = RegistryError::Status {
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
}

fn basic(c: &Credentials) -> HeaderValue {
    use base64::Engine as _;
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", c.user, c.password));
    let mut v = HeaderValue::from_str(&format!("Basic {encoded}")).expect("base64 is ASCII");
    v.set_sensitive(true);
    v
}

fn client(timeouts: Timeouts) -> Result<reqwest::Client, RegistryError> {
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
        .map_err(|e| RegistryError::Client(e.to_string()))
}

/// How long `--insecure` waits for an HTTPS answer before it tries plain HTTP. A
/// plain-HTTP server usually fails the handshake at once; some never answer it.
const INSECURE_PROBE: Duration = Duration::from_secs(3);

/// `GET /v2/` over `scheme` (within `probe`, if given): a transport error, or the
/// session (authenticated when the registry asked for it).
async fn connect(
    client: &reqwest::Client,
    scheme: &str,
    opts: &SessionOptions,
    found: &Found,
    probe: Option<Duration>,
    actions: &'static str,
) -> Result<Session, Failure> {
    let base = Url::parse(&format!("{scheme}://{}/", opts.reference.host())).map_err(|e| {
        RegistryError::BadReference {
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

/// What a session needs: where, whether plain HTTP may be tried, and credentials.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// The registry and repository (the tag is not used here).
    pub reference: Reference,
    /// Allow plain HTTP when the registry does not speak HTTPS.
    pub insecure: bool,
    /// None: [`Credentials::lookup`].
    pub credentials: Option<Credentials>,
}

/// A session with `opts.reference`'s registry for `actions` (`pull` or `pull,push`):
/// HTTPS, or plain HTTP with `--insecure` when HTTPS does not answer; credentials as
/// given, else [`Credentials::lookup`].
pub(crate) async fn open_session(
    opts: &SessionOptions,
    timeouts: Timeouts,
    actions: &'static str,
) -> Result<Session, RegistryError> {
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
        Err(RegistryError::Transport { .. }) if opts.insecure => {
            with_retries(|| connect("http", None)).await?
        }
        Err(RegistryError::Transport { .. }) => match with_retries(|| connect("https", None)).await
        {
            Ok(s) => s,
            Err(RegistryError::Transport { message, .. }) => {
                return Err(RegistryError::NoTls {
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

// ---- reading an image --------------------------------------------------------------

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
    pub fn parse(s: &str) -> Result<ImageRef, RegistryError> {
        let bare = s.strip_prefix("docker://").unwrap_or(s);
        let bad = |reason: String| RegistryError::BadImage {
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
            RegistryError::BadReference { reason, .. } => bad(reason),
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
    ) -> Result<RegistryImage, RegistryError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| RegistryError::Client(e.to_string()))?;
        let opts = SessionOptions {
            reference: image.reference.clone(),
            insecure,
            credentials,
        };
        let session = runtime.block_on(open_session(&opts, timeouts, "pull"))?;
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
            .ok_or_else(|| RegistryError::NoSuchImage {
                image: image_name(image),
            })?;
        if let Some(d) = &image.digest {
            if &top.digest != d {
                return Err(RegistryError::DigestMismatch {
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
    pub fn manifest(
        &self,
        reference: &str,
    ) -> Result<Option<(Descriptor, Vec<u8>)>, RegistryError> {
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
            let bytes = resp.bytes().await.map_err(|e| RegistryError::Transport {
                url,
                message: crate::fetch::describe(&e),
                attempts: 1,
            })?;
            Ok::<_, RegistryError>(Some((media_type, bytes.to_vec())))
        })?;
        let Some((mut media_type, bytes)) = got else {
            return Ok(None);
        };
        if bytes.len() > MANIFEST_LIMIT {
            return Err(RegistryError::Layout {
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
            return Err(RegistryError::DigestMismatch {
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
    pub fn referrers(&self, digest: &str) -> Result<Vec<Descriptor>, RegistryError> {
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
            let bytes = resp.bytes().await.map_err(|e| RegistryError::Transport {
                url,
                message: crate::fetch::describe(&e),
                attempts: 1,
            })?;
            Ok::<_, RegistryError>(Some(bytes.to_vec()))
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
            Some((_, bytes)) => listed(&bytes, &tag).ok_or_else(|| RegistryError::Referrers {
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
        let io_err = |e: RegistryError| ReadError::Io {
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

    /// A pushed tag follows the same rule as a layout's (`crate::oci::tag_problem`),
    /// and the reason says which part of it is wrong.
    #[test]
    fn push_tags_follow_the_layout_rule() {
        assert!(Reference::parse("127.0.0.1:5000/team/app:v1.2_3").is_ok());
        for (tag, reason) in [
            ("-x", "it must start with a letter, digit or `_`"),
            ("a+b", "only letters, digits, `_`, `.` and `-` are allowed"),
        ] {
            let e = Reference::parse(&format!("127.0.0.1:5000/team/app:{tag}")).unwrap_err();
            assert!(
                e.to_string().contains(&format!("tag `{tag}`: {reason}")),
                "{e}"
            );
        }
        let long = "a".repeat(129);
        let e = Reference::parse(&format!("127.0.0.1:5000/team/app:{long}")).unwrap_err();
        assert!(e.to_string().contains("longer than 128 characters"), "{e}");
    }

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
