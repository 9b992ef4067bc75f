//! Fetching: HTTP(S) over rustls, a content-addressed cache, progress.
//!
//! Files whose SHA-256 is known (Packages indexes, `.deb`s) are streamed to a temporary
//! file in the cache while being hashed, and renamed to `sha256/<hex>` only after size
//! and hash check out: nothing unverified is ever in the cache. Documents without a known
//! hash (InRelease, Release, Release.gpg) are fetched into memory with a size limit and
//! verified by the caller before use.
//!
//! It owns HTTP (timeouts, the minimum transfer rate, redirects, retries, `--mirror`
//! rewrites), the cache and the progress display. It must not parse or trust what it fetches: callers say what a file
//! must be (a [`Want`]) or verify it themselves ([`crate::repo`]).

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use sha2::{Digest, Sha256};

use crate::retry;
use crate::text::shown;

/// What can go wrong fetching a file or using the download cache. URLs are the ones
/// requested (after `--mirror`), except in `Offline`.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The server answered with an HTTP status other than success or 404/410 (408, 429 and
    /// 5xx are retried first).
    #[error("{}: HTTP {status}{}", shown(.url), gave_up(*.attempts))]
    Status {
        /// the URL requested
        url: String,
        /// the HTTP status code
        status: u16,
        /// How many requests were sent (retries included).
        attempts: u32,
    },
    /// The transfer failed (connect, timeout, reset, truncated body, refused redirect).
    #[error("{}: {message}{}", shown(.url), gave_up(*.attempts))]
    Network {
        /// the URL requested
        url: String,
        /// what failed, with reqwest's chain of causes
        message: String,
        /// How many requests were sent (retries included).
        attempts: u32,
    },
    /// A transfer averaged less than the minimum rate after its grace period
    /// ([`Timeouts::min_rate`]; retried like a timeout).
    #[error("{url}: too slow: {received} bytes in {seconds} s, less than the minimum of {min_rate} bytes/s after the first {grace} s (set {MIN_RATE_ENV}, 0 for no minimum, and {TIMEOUT_ENV}){}", gave_up(*.attempts))]
    TooSlow {
        /// the URL requested
        url: String,
        /// bytes of the body received
        received: u64,
        /// seconds since the request was sent
        seconds: u64,
        /// the minimum rate, bytes per second
        min_rate: u64,
        /// the grace period, seconds (the read timeout)
        grace: u64,
        /// How many requests were sent (retries included).
        attempts: u32,
    },
    /// A file that must exist (a pinned `.deb`) is not on the server (HTTP 404 or 410).
    #[error("{}: not found (HTTP 404); check the source URL, suite and --mirror", shown(.url))]
    NotFound {
        /// the URL requested
        url: String,
    },
    /// A pinned file is gone from its URL and from the second URL it has (a snapshot
    /// service's copy), both HTTP 404 or 410.
    #[error("{url}: not found (HTTP 404), nor its snapshot copy at {or}; the archive dropped this pinned file and the snapshot service has none at the lock's date: pin what the archive has now with `compose lock`")]
    NotFoundEither {
        /// the URL requested first
        url: String,
        /// the second URL requested
        or: String,
    },
    /// A downloaded file's SHA-256 is not the one its signed index lists; it is not cached.
    #[error("{}: SHA256 mismatch for {}: expected {expected}, got {actual}; the mirror or a proxy served different bytes than the signed index lists", shown(.what), shown(.url))]
    HashMismatch {
        /// the file, for messages (a package or an index path)
        what: String,
        /// the URL requested
        url: String,
        /// the SHA-256 expected, lowercase hex
        expected: String,
        /// the SHA-256 received, lowercase hex
        actual: String,
    },
    /// A downloaded file's length is not the one its signed index lists; it is not cached.
    #[error("{}: size mismatch for {}: expected {expected} bytes, got {actual}{}", shown(.what), shown(.url), if *.actual > *.expected { " or more" } else { "" })]
    SizeMismatch {
        /// the file, for messages (a package or an index path)
        what: String,
        /// the URL requested
        url: String,
        /// bytes expected
        expected: u64,
        /// bytes received (the download stops at the first byte too many)
        actual: u64,
    },
    /// The server's `Content-Length` differs from the size the signed index lists.
    #[error("{}: size mismatch for {}: the server announces {announced} bytes (Content-Length), the signed index lists {expected}; the mirror serves a different file", shown(.what), shown(.url))]
    Announced {
        /// the file, for messages (a package or an index path)
        what: String,
        /// the URL requested
        url: String,
        /// bytes expected
        expected: u64,
        /// bytes the server announced
        announced: u64,
    },
    /// A document fetched into memory (InRelease, Release, Release.gpg) exceeds its limit.
    #[error("{}: larger than the limit of {limit} bytes", shown(.url))]
    TooLarge {
        /// the URL requested
        url: String,
        /// the limit, bytes
        limit: u64,
    },
    /// Reading a cache entry, or writing or admitting a downloaded file, failed.
    #[error("cache {}: {source}", path.display())]
    Cache {
        /// the cache file or directory
        path: PathBuf,
        /// the underlying error
        source: std::io::Error,
    },
    /// The cache directory cannot be created or written (checked once, when it is opened).
    #[error("the cache directory {} is not usable: cannot create {}: {source}; make it writable or choose another with --cache (or COMPOSE_CACHE)", root.display(), path.display())]
    CacheUnusable {
        /// the cache directory
        root: PathBuf,
        /// what could not be created in it
        path: PathBuf,
        /// the underlying error
        source: std::io::Error,
    },
    /// The HTTP client could not be built, or a blocking cache task failed.
    #[error("HTTP client: {0}")]
    Client(String),
    /// `--offline` and the file is not in the cache (or a Release file is asked for).
    #[error("--offline: {} is not in the cache ({}, sha256 {sha256}); run once without --offline to fetch it", shown(.what), shown(.url))]
    Offline {
        /// the file, for messages
        what: String,
        /// its URL, before `--mirror`
        url: String,
        /// its SHA-256, lowercase hex, or `unknown`
        sha256: String,
    },
    /// With a strict cache (an audit): a cache entry whose bytes are not what its name says.
    #[error("cache entry {} is damaged: expected sha256 {expected} ({size} bytes), found {actual} ({len} bytes)", path.display())]
    Damaged {
        /// the cache entry
        path: PathBuf,
        /// the SHA-256 its name says, lowercase hex
        expected: String,
        /// the size expected, bytes
        size: u64,
        /// the SHA-256 of its bytes, lowercase hex
        actual: String,
        /// its length, bytes
        len: u64,
    },
}

/// ", gave up after N attempts" when a request was retried.
fn gave_up(attempts: u32) -> String {
    if attempts > 1 {
        format!(", gave up after {attempts} attempts")
    } else {
        String::new()
    }
}

impl retry::Attempts for FetchError {
    /// Record how many attempts were made before this error was final.
    fn after(mut self, n: u32) -> FetchError {
        if let FetchError::Status { attempts, .. }
        | FetchError::Network { attempts, .. }
        | FetchError::TooSlow { attempts, .. } = &mut self
        {
            *attempts = n;
        }
        self
    }
}

/// The start of the names of partial downloads in `<root>/tmp` (the PID and random
/// characters follow, [`crate::temporary`]).
const DOWNLOAD_PREFIX: &str = ".download-";

/// The content-addressed cache: `<root>/sha256/<hex>`, temporary files in `<root>/tmp`.
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    /// Open (creating) the cache at `root`. It must be writable: the lock file is
    /// created here, so an unusable directory is one error up front naming it. Under the
    /// lock, the partial downloads of runs that died are removed.
    pub fn new(root: &Path) -> Result<Cache, FetchError> {
        for sub in ["sha256", "tmp"] {
            let dir = root.join(sub);
            std::fs::create_dir_all(&dir).map_err(|source| FetchError::CacheUnusable {
                root: root.to_path_buf(),
                path: dir.clone(),
                source,
            })?;
        }
        let cache = Cache {
            root: root.to_path_buf(),
        };
        // Writable? Both the lock and a temporary file must be creatable.
        let lock = cache.lock()?;
        cache.temp_file().map_err(|e| match e {
            FetchError::Cache { path, source } => FetchError::CacheUnusable {
                root: root.to_path_buf(),
                path,
                source,
            },
            other => other,
        })?;
        // Partial downloads of runs that were killed (crate::temporary).
        crate::temporary::sweep(
            &root.join("tmp"),
            &[(DOWNLOAD_PREFIX, crate::temporary::Stale::Remove)],
        );
        drop(lock);
        Ok(cache)
    }

    /// An exclusive lock on `<root>/lock` (flock; released when dropped). Held only
    /// around changes of `sha256/`: admitting a verified file and removing a damaged one,
    /// so that one `compose` never removes what another has just admitted. Downloads
    /// run unlocked in uniquely named temporary files: two runs sharing the cache
    /// may fetch the same file, and the second rename puts identical bytes in place.
    fn lock(&self) -> Result<std::fs::File, FetchError> {
        let path = self.root.join("lock");
        let unusable = |source| FetchError::CacheUnusable {
            root: self.root.clone(),
            path: path.clone(),
            source,
        };
        // A new open file description each time: flock then also excludes the other
        // tasks of this process.
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(unusable)?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| unusable(e.into()))?;
        Ok(file)
    }

    /// The default cache: `$XDG_CACHE_HOME/compose` (or `~/.cache/compose`).
    pub fn default_dir() -> PathBuf {
        dirs::cache_dir()
            .unwrap_or_else(std::env::temp_dir)
            .join("compose")
    }

    /// The cache directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob of `sha256` (lowercase hex) is or would be: `<root>/sha256/<hex>`.
    pub fn blob_path(&self, sha256: &str) -> PathBuf {
        self.root.join("sha256").join(sha256)
    }

    /// The cached file for `sha256` if present and intact. A damaged entry is an error
    /// when `strict` (an audit must report it), else removed (it will be fetched again)
    /// and reported on stderr.
    pub fn lookup(
        &self,
        sha256: &str,
        size: u64,
        strict: bool,
    ) -> Result<Option<PathBuf>, FetchError> {
        let path = self.blob_path(sha256);
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(FetchError::Cache { path, source }),
        };
        let (len, actual) = hash_reader(file).map_err(|source| FetchError::Cache {
            path: path.clone(),
            source,
        })?;
        if len == size && actual == sha256 {
            return Ok(Some(path));
        }
        self.damaged(path, sha256, size, strict, actual, len)
            .map(|()| None)
    }

    /// The cached file for `sha256` read into memory, if present and intact: one read
    /// for both the check and the use (for indexes, which are used whole). Damaged
    /// entries as for [`Cache::lookup`].
    pub fn read(
        &self,
        sha256: &str,
        size: u64,
        strict: bool,
    ) -> Result<Option<Vec<u8>>, FetchError> {
        let path = self.blob_path(sha256);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(FetchError::Cache { path, source }),
        };
        let actual = sha256_hex(&bytes);
        if bytes.len() as u64 == size && actual == sha256 {
            return Ok(Some(bytes));
        }
        let len = bytes.len() as u64;
        self.damaged(path, sha256, size, strict, actual, len)
            .map(|()| None)
    }

    /// The cached file for `sha256`, open at its start, if present and intact: hashed
    /// through the same open file the caller then reads (for indexes, which are streamed
    /// after the check; an entry is replaced only by a rename, never in place). Damaged
    /// entries as for [`Cache::lookup`].
    pub fn open(
        &self,
        sha256: &str,
        size: u64,
        strict: bool,
    ) -> Result<Option<std::fs::File>, FetchError> {
        use std::io::{Seek, SeekFrom};
        let path = self.blob_path(sha256);
        let mut file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(FetchError::Cache { path, source }),
        };
        let hashed = hash_reader(&mut file).and_then(|sum| {
            file.seek(SeekFrom::Start(0))?;
            Ok(sum)
        });
        let (len, actual) = hashed.map_err(|source| FetchError::Cache {
            path: path.clone(),
            source,
        })?;
        if len == size && actual == sha256 {
            return Ok(Some(file));
        }
        self.damaged(path, sha256, size, strict, actual, len)
            .map(|()| None)
    }

    /// A cache entry whose bytes are not what its name says: an error when `strict`,
    /// else removed (if still damaged) so that it is fetched again.
    fn damaged(
        &self,
        path: PathBuf,
        sha256: &str,
        size: u64,
        strict: bool,
        actual: String,
        len: u64,
    ) -> Result<(), FetchError> {
        if strict {
            return Err(FetchError::Damaged {
                path,
                expected: sha256.to_string(),
                size,
                actual,
                len,
            });
        }
        eprintln!(
            "warning: cache entry {} is damaged (sha256 {actual}, {len} bytes); fetching it again",
            path.display()
        );
        // Remove it only if it is still damaged: another run may have just replaced it.
        let _lock = self.lock()?;
        if let Ok(file) = std::fs::File::open(&path) {
            if hash_reader(file).is_ok_and(|(l, a)| l != size || a != sha256) {
                let _ = std::fs::remove_file(&path);
            }
        }
        Ok(())
    }

    /// A new temporary file in `tmp/`, named with this process's PID and locked while it
    /// lives ([`crate::temporary`]): a later run removes it if this one is killed.
    fn temp_file(&self) -> Result<tempfile::NamedTempFile, FetchError> {
        let dir = self.root.join("tmp");
        let tmp = tempfile::Builder::new()
            .prefix(&crate::temporary::prefix(DOWNLOAD_PREFIX))
            .tempfile_in(&dir)
            .map_err(|source| FetchError::Cache { path: dir, source })?;
        crate::temporary::lock_file(tmp.as_file());
        Ok(tmp)
    }

    /// Move a verified temporary file to its content address.
    ///
    /// Not fsynced: an entry is re-hashed before every use, so one torn by a crash is
    /// found, removed and fetched again, never used (a 50 MB index's fsync was a tenth
    /// of a cold build).
    fn admit(&self, tmp: tempfile::NamedTempFile, sha256: &str) -> Result<PathBuf, FetchError> {
        let path = self.blob_path(sha256);
        let _lock = self.lock()?;
        tmp.persist(&path).map_err(|e| FetchError::Cache {
            path: path.clone(),
            source: e.error,
        })?;
        Ok(path)
    }
}

/// SHA-256 (lowercase hex) and length of everything `r` yields.
pub fn hash_reader(mut r: impl Read) -> std::io::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut len = 0u64;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        len += n as u64;
    }
    Ok((len, hex::encode(hasher.finalize())))
}

/// SHA-256 of `bytes`, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// What to fetch into the cache: a file of known size and hash.
#[derive(Debug, Clone)]
pub struct Want {
    /// For messages: the package name or index path.
    pub what: String,
    /// Where to fetch it, before `--mirror`.
    pub url: String,
    /// Expected size, bytes.
    pub size: u64,
    /// Expected SHA-256, lowercase hex (compared as is with the computed one).
    pub sha256: String,
}

/// HTTP timeouts. `read` bounds each wait for bytes (response headers or body), and
/// `min_rate` the whole transfer: after its first `read` seconds, a download must have
/// averaged at least `min_rate` bytes per second, so a server sending a byte now and then
/// cannot hold a build forever while a slow but moving download is never cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Bound on establishing a connection.
    pub connect: Duration,
    /// Bound on each wait for bytes (response headers or the next body chunk).
    pub read: Duration,
    /// Bytes per second a transfer must average after its first `read` seconds; 0 for no
    /// minimum. A file of `n` bytes has `read + n / min_rate` seconds.
    pub min_rate: u64,
}

/// The default [`Timeouts::min_rate`]: 1 KiB/s, far below any usable mirror.
pub const DEFAULT_MIN_RATE: u64 = 1024;

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(20),
            read: Duration::from_secs(60),
            min_rate: DEFAULT_MIN_RATE,
        }
    }
}

/// The environment variable that sets [`Timeouts::min_rate`], bytes per second.
pub const MIN_RATE_ENV: &str = "COMPOSE_HTTP_MIN_RATE";

/// The environment variable that sets both timeouts, in seconds (e.g. `5` or `0.5`).
pub const TIMEOUT_ENV: &str = "COMPOSE_HTTP_TIMEOUT";

impl Timeouts {
    /// Both timeouts `d` (and the default minimum rate).
    pub fn both(d: Duration) -> Timeouts {
        Timeouts {
            connect: d,
            read: d,
            min_rate: DEFAULT_MIN_RATE,
        }
    }

    /// From `COMPOSE_HTTP_TIMEOUT` if set; an unusable value is an error sentence.
    pub fn from_env() -> Result<Option<Timeouts>, String> {
        let Ok(v) = std::env::var(TIMEOUT_ENV) else {
            return Ok(None);
        };
        match v.trim().parse::<f64>() {
            Ok(s) if s.is_finite() && s > 0.0 && s <= 86_400.0 => {
                Ok(Some(Timeouts::both(Duration::from_secs_f64(s))))
            }
            _ => Err(format!(
                "{TIMEOUT_ENV}=`{v}` is not a number of seconds between 0 and 86400, e.g. 30"
            )),
        }
    }
}

impl Timeouts {
    /// These timeouts with the minimum rate `COMPOSE_HTTP_MIN_RATE` gives, when set; an
    /// unusable value is an error sentence.
    pub fn with_env_min_rate(self) -> Result<Timeouts, String> {
        let Ok(v) = std::env::var(MIN_RATE_ENV) else {
            return Ok(self);
        };
        match v.trim().parse::<u64>() {
            Ok(min_rate) => Ok(Timeouts { min_rate, ..self }),
            Err(_) => Err(format!(
                "{MIN_RATE_ENV}=`{v}` is not a whole number of bytes per second, e.g. 1024 (0 for no minimum)"
            )),
        }
    }

    /// When a transfer that started at `start` and has received `received` bytes is
    /// too slow ([`Timeouts::min_rate`]); None without a minimum.
    fn deadline(&self, start: Instant, received: u64) -> Option<Instant> {
        if self.min_rate == 0 {
            return None;
        }
        let allowed = self.read.as_secs_f64() + received as f64 / self.min_rate as f64;
        Some(start + Duration::from_secs_f64(allowed.min(1e9)))
    }
}

/// How a [`Fetcher`] is set up.
pub struct FetchOptions {
    /// The cache's root directory (created if missing).
    pub cache_dir: PathBuf,
    /// `FROM=TO` URL prefix rewrites, first match wins.
    pub mirrors: Vec<(String, String)>,
    /// No progress bars (they are also hidden when stderr is not a terminal).
    pub quiet: bool,
    /// Parallel downloads.
    pub jobs: usize,
    /// Never touch the network: everything must come from the cache.
    pub offline: bool,
    /// A damaged cache entry is an error instead of being fetched again.
    pub strict_cache: bool,
    /// Connect and read timeouts.
    pub timeouts: Timeouts,
}

/// The HTTP client with its cache, `--mirror` rewrites and progress display; shared by
/// all downloads of a build.
pub struct Fetcher {
    client: reqwest::Client,
    /// The content-addressed cache downloads go into.
    pub cache: Cache,
    mirrors: Vec<(String, String)>,
    progress: MultiProgress,
    jobs: usize,
    offline: bool,
    strict_cache: bool,
    timeouts: Timeouts,
}

pub use crate::retry::ATTEMPTS;
/// Redirects followed per request.
pub const MAX_REDIRECTS: usize = 5;

/// The redirect policy: `previous` are the URLs requested so far in this chain (the
/// first is the original), `next` where the server sends us. Only http and https; never
/// from https to http (apt's rule: a TLS source stays TLS, whatever the source says);
/// no loops; at most [`MAX_REDIRECTS`] redirects.
pub fn redirect_verdict(previous: &[reqwest::Url], next: &reqwest::Url) -> Result<(), String> {
    if !matches!(next.scheme(), "http" | "https") {
        return Err(format!(
            "redirect to {next} refused: only http and https are followed"
        ));
    }
    if next.scheme() == "http" && previous.iter().any(|u| u.scheme() == "https") {
        return Err(format!(
            "redirect from https to {next} refused: a download never leaves TLS"
        ));
    }
    if previous.contains(next) {
        return Err(format!("redirect loop: {next} was already requested"));
    }
    if previous.len() > MAX_REDIRECTS {
        return Err(format!(
            "more than {MAX_REDIRECTS} redirects (the last to {next})"
        ));
    }
    Ok(())
}

/// How one attempt failed: worth another attempt, or final.
type Failure = retry::Failure<FetchError>;

impl From<FetchError> for Failure {
    fn from(e: FetchError) -> Failure {
        Failure::Fatal(e)
    }
}

/// A transfer error of reqwest: redirect refusals and bad requests are final, the rest
/// (connect, timeout, reset, truncated body) may pass.
fn transfer_failure(url: &str, e: &reqwest::Error) -> Failure {
    let err = FetchError::Network {
        url: url.to_string(),
        message: describe(e),
        attempts: 1,
    };
    if e.is_redirect() || e.is_builder() {
        Failure::Fatal(err)
    } else {
        Failure::Retry(err)
    }
}

impl Fetcher {
    /// Build the HTTP client (rustls, the redirect policy of [`redirect_verdict`], the
    /// timeouts) and open the cache; errors when the client cannot be built or the cache is
    /// not usable.
    pub fn new(opts: FetchOptions) -> Result<Fetcher, FetchError> {
        // One process-wide crypto provider for rustls; a second install is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let redirect = reqwest::redirect::Policy::custom(|attempt| {
            match redirect_verdict(attempt.previous(), attempt.url()) {
                Ok(()) => attempt.follow(),
                Err(why) => attempt.error(why),
            }
        });
        let client = reqwest::Client::builder()
            .user_agent(concat!("compose/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(opts.timeouts.connect)
            .read_timeout(opts.timeouts.read)
            .redirect(redirect)
            .build()
            .map_err(|e| FetchError::Client(e.to_string()))?;
        let progress = MultiProgress::new();
        if opts.quiet || !std::io::stderr().is_terminal() {
            progress.set_draw_target(ProgressDrawTarget::hidden());
        }
        Ok(Fetcher {
            client,
            cache: Cache::new(&opts.cache_dir)?,
            mirrors: opts.mirrors,
            progress,
            jobs: opts.jobs.max(1),
            offline: opts.offline,
            strict_cache: opts.strict_cache,
            timeouts: opts.timeouts,
        })
    }

    /// The progress display all bars of this fetcher are drawn in (hidden when quiet or when
    /// stderr is not a terminal).
    pub fn progress(&self) -> &MultiProgress {
        &self.progress
    }

    /// A spinner for one phase of the build (hidden with the rest of the progress).
    pub fn phase(&self, message: String) -> ProgressBar {
        let bar = self.progress.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_message(message);
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    }

    /// Apply `--mirror` rewrites.
    pub fn rewrite(&self, url: &str) -> String {
        for (from, to) in &self.mirrors {
            if let Some(rest) = url.strip_prefix(from.as_str()) {
                return format!("{to}{rest}");
            }
        }
        url.to_string()
    }

    /// One GET of the (rewritten) `real` URL. `Ok(None)` on 404/410.
    async fn send_once(&self, real: &str) -> Result<Option<reqwest::Response>, Failure> {
        let resp = self
            .client
            .get(real)
            .send()
            .await
            .map_err(|e| transfer_failure(real, &e))?;
        let status = resp.status().as_u16();
        let err = FetchError::Status {
            url: real.to_string(),
            status,
            attempts: 1,
        };
        match status {
            200..=299 => Ok(Some(resp)),
            404 | 410 => Ok(None),
            408 | 429 | 500..=599 => Err(Failure::Retry(err)),
            _ => Err(Failure::Fatal(err)),
        }
    }

    /// The next piece of a response body that started at `start` and has given
    /// `received` bytes: None at its end; a transfer failure when the body fails;
    /// [`FetchError::TooSlow`] when the piece comes after the transfer's deadline
    /// ([`Timeouts::min_rate`]). A body that stops altogether is the read timeout's.
    async fn next_chunk<T>(
        &self,
        real: &str,
        stream: &mut (impl futures::Stream<Item = reqwest::Result<T>> + Unpin),
        start: Instant,
        received: u64,
    ) -> Result<Option<T>, Failure> {
        let next = stream
            .next()
            .await
            .transpose()
            .map_err(|e| transfer_failure(real, &e))?;
        let late = self
            .timeouts
            .deadline(start, received)
            .is_some_and(|deadline| Instant::now() > deadline);
        if next.is_some() && late {
            return Err(Failure::Retry(FetchError::TooSlow {
                url: real.to_string(),
                received,
                seconds: start.elapsed().as_secs(),
                min_rate: self.timeouts.min_rate,
                grace: self.timeouts.read.as_secs(),
                attempts: 1,
            }));
        }
        Ok(next)
    }

    /// A small document (InRelease, Release, Release.gpg) into memory, unverified.
    pub async fn get(&self, url: &str, limit: u64) -> Result<Option<Vec<u8>>, FetchError> {
        if self.offline {
            return Err(FetchError::Offline {
                what: "a Release file (needs resolution: the lock does not match)".into(),
                url: url.to_string(),
                sha256: "unknown".into(),
            });
        }
        let real = self.rewrite(url);
        retry::with_retries(|| self.get_once(&real, limit)).await
    }

    async fn get_once(&self, real: &str, limit: u64) -> Result<Option<Vec<u8>>, Failure> {
        let start = Instant::now();
        let Some(resp) = self.send_once(real).await? else {
            return Ok(None);
        };
        let too_large = || FetchError::TooLarge {
            url: real.to_string(),
            limit,
        };
        if resp.content_length().is_some_and(|n| n > limit) {
            return Err(too_large().into());
        }
        let mut out = Vec::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = self
            .next_chunk(real, &mut stream, start, out.len() as u64)
            .await?
        {
            if (out.len() + chunk.len()) as u64 > limit {
                return Err(too_large().into());
            }
            out.extend_from_slice(&chunk);
        }
        Ok(Some(out))
    }

    /// The bytes of `want` if the cache holds them intact (no network).
    pub async fn cached_bytes(&self, want: &Want) -> Result<Option<Vec<u8>>, FetchError> {
        let cache = self.cache.clone();
        let (sha, size, strict) = (want.sha256.clone(), want.size, self.strict_cache);
        tokio::task::spawn_blocking(move || cache.read(&sha, size, strict))
            .await
            .map_err(|e| FetchError::Client(e.to_string()))?
    }

    /// The cached file of `want`, open and checked, if the cache holds it intact (no
    /// network): [`Cache::open`].
    pub async fn cached_file(&self, want: &Want) -> Result<Option<std::fs::File>, FetchError> {
        let cache = self.cache.clone();
        let (sha, size, strict) = (want.sha256.clone(), want.size, self.strict_cache);
        tokio::task::spawn_blocking(move || cache.open(&sha, size, strict))
            .await
            .map_err(|e| FetchError::Client(e.to_string()))?
    }

    /// A file of known size and SHA-256: from the cache, else downloaded (hashed while
    /// streaming) and admitted to the cache only if both match. `Ok(None)` on 404.
    pub async fn get_verified(
        &self,
        want: &Want,
        bar: Option<&ProgressBar>,
    ) -> Result<Option<PathBuf>, FetchError> {
        let cache = self.cache.clone();
        let (sha, size, strict) = (want.sha256.clone(), want.size, self.strict_cache);
        let cached = tokio::task::spawn_blocking(move || cache.lookup(&sha, size, strict))
            .await
            .map_err(|e| FetchError::Client(e.to_string()))??;
        if let Some(path) = cached {
            if let Some(bar) = bar {
                bar.inc(want.size);
            }
            return Ok(Some(path));
        }
        if self.offline {
            return Err(FetchError::Offline {
                what: want.what.clone(),
                url: want.url.clone(),
                sha256: want.sha256.clone(),
            });
        }
        let real = self.rewrite(&want.url);
        retry::with_retries(|| async {
            let mut counted = 0;
            let result = self.download_once(want, &real, bar, &mut counted).await;
            if let (Err(_), Some(bar)) = (&result, bar) {
                bar.dec(counted);
            }
            result
        })
        .await
    }

    async fn download_once(
        &self,
        want: &Want,
        real: &str,
        bar: Option<&ProgressBar>,
        counted: &mut u64,
    ) -> Result<Option<PathBuf>, Failure> {
        let start = Instant::now();
        let Some(resp) = self.send_once(real).await? else {
            return Ok(None);
        };
        let size_mismatch = |actual| FetchError::SizeMismatch {
            what: want.what.clone(),
            url: real.to_string(),
            expected: want.size,
            actual,
        };
        if let Some(announced) = resp.content_length().filter(|n| *n != want.size) {
            return Err(FetchError::Announced {
                what: want.what.clone(),
                url: real.to_string(),
                expected: want.size,
                announced,
            }
            .into());
        }
        let mut tmp = self.cache.temp_file()?;
        // Ctrl-C during the download: the signal handler removes the partial file.
        let _cleanup = crate::interrupt::remove_on_interrupt(tmp.path());
        let mut hasher = Sha256::new();
        let mut len = 0u64;
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = self.next_chunk(real, &mut stream, start, len).await? {
            len += chunk.len() as u64;
            if len > want.size {
                return Err(size_mismatch(len).into());
            }
            hasher.update(&chunk);
            tmp.write_all(&chunk).map_err(|source| FetchError::Cache {
                path: tmp.path().to_path_buf(),
                source,
            })?;
            if let Some(bar) = bar {
                bar.inc(chunk.len() as u64);
                *counted += chunk.len() as u64;
            }
        }
        if len != want.size {
            return Err(size_mismatch(len).into());
        }
        let actual = hex::encode(hasher.finalize());
        if actual != want.sha256 {
            return Err(FetchError::HashMismatch {
                what: want.what.clone(),
                url: real.to_string(),
                expected: want.sha256.clone(),
                actual,
            }
            .into());
        }
        Ok(Some(self.cache.admit(tmp, &want.sha256)?))
    }

    /// Many verified files fetched in parallel (bounded), each with an optional second
    /// URL: a file the server does not have (404/410) is fetched from it instead (before
    /// `--mirror` too), against the same size and SHA-256. Results in the order of
    /// `wants`, each path with whether the second URL served it; `verified(i, path,
    /// second)` is told as soon as file `i` is in the cache, verified, while the others
    /// still download. Downloads start in the order of `wants`, at most
    /// [`FetchOptions::jobs`] at once. The error is the one of the first failing file in
    /// that order: once file `i` failed, the files after it are abandoned (their partial
    /// downloads removed) and those before it run to their end, since one of them may
    /// fail too.
    pub async fn get_all_or_each(
        self: &Arc<Self>,
        wants: &[(Want, Option<String>)],
        mut verified: impl FnMut(usize, &Path, bool),
    ) -> Result<Vec<(PathBuf, bool)>, FetchError> {
        use futures::future::{AbortHandle, Abortable};
        use futures::stream::FuturesUnordered;
        let total: u64 = wants.iter().map(|(w, _)| w.size).sum();
        let bar = self.progress.add(ProgressBar::new(total));
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>10} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_prefix("packages");
        let one = |i: usize| {
            let (w, or) = &wants[i];
            let bar = bar.clone();
            async move {
                if let Some(p) = self.get_verified(w, Some(&bar)).await? {
                    return Ok((p, false));
                }
                let url = self.rewrite(&w.url);
                let Some(or) = or else {
                    return Err(FetchError::NotFound { url });
                };
                let second = Want {
                    url: or.clone(),
                    ..w.clone()
                };
                match self.get_verified(&second, Some(&bar)).await? {
                    Some(p) => Ok((p, true)),
                    None => Err(FetchError::NotFoundEither {
                        url,
                        or: self.rewrite(or),
                    }),
                }
            }
        };
        let mut found: Vec<Option<(PathBuf, bool)>> = vec![None; wants.len()];
        // The first failure in the order of `wants`, and where it is.
        let mut failed: Option<(usize, FetchError)> = None;
        let mut running = FuturesUnordered::new();
        let mut aborts: std::collections::BTreeMap<usize, AbortHandle> = Default::default();
        let mut next = 0;
        loop {
            let end = failed.as_ref().map_or(wants.len(), |(k, _)| *k);
            while running.len() < self.jobs && next < end {
                let (handle, registration) = AbortHandle::new_pair();
                let i = next;
                running.push(async move { (i, Abortable::new(one(i), registration).await) });
                aborts.insert(i, handle);
                next += 1;
            }
            let Some((i, result)) = running.next().await else {
                break;
            };
            aborts.remove(&i);
            match result {
                // Abandoned after an earlier file failed.
                Err(futures::future::Aborted) => {}
                // Done just as an earlier file failed: not wanted any more.
                Ok(Ok(_)) if failed.as_ref().is_some_and(|(k, _)| *k < i) => {}
                Ok(Ok((path, second))) => {
                    verified(i, &path, second);
                    found[i] = Some((path, second));
                }
                Ok(Err(e)) => {
                    if failed.as_ref().is_none_or(|(k, _)| i < *k) {
                        for (_, later) in aborts.split_off(&i) {
                            later.abort();
                        }
                        failed = Some((i, e));
                    }
                }
            }
        }
        bar.finish_and_clear();
        if let Some((_, e)) = failed {
            return Err(e);
        }
        Ok(found
            .into_iter()
            .map(|f| f.expect("every file is fetched when none failed"))
            .collect())
    }
}

/// reqwest errors print their chain poorly; collect the sources into one sentence.
pub(crate) fn describe(e: &reqwest::Error) -> String {
    let mut msg = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "could not connect".to_string()
    } else if e.is_redirect() {
        // The policy's own sentence (see redirect_verdict) is the first source.
        let mut src = std::error::Error::source(e);
        let mut parts = Vec::new();
        while let Some(s) = src {
            parts.push(s.to_string());
            src = s.source();
        }
        if !parts.is_empty() {
            return parts.join(": ");
        }
        "redirect refused".to_string()
    } else {
        "transfer failed".to_string()
    };
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}
