//! Fetching: HTTP(S) over rustls, a content-addressed cache, progress.
//!
//! Files whose SHA-256 is known (Packages indexes, `.deb`s) are streamed to a temporary
//! file in the cache while being hashed, and renamed to `sha256/<hex>` only after size
//! and hash check out: nothing unverified is ever in the cache. Documents without a known
//! hash (InRelease, Release, Release.gpg) are fetched into memory with a size limit and
//! verified by the caller before use.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{url}: HTTP {status}{}", if *.status >= 500 { " (server error; retried)" } else { "" })]
    Status { url: String, status: u16 },
    #[error("{url}: {message}")]
    Network { url: String, message: String },
    #[error("{url}: not found (HTTP 404); check the source URL, suite and --mirror")]
    NotFound { url: String },
    #[error("{what}: SHA256 mismatch for {url}: expected {expected}, got {actual}; the mirror or a proxy served different bytes than the signed index lists")]
    HashMismatch {
        what: String,
        url: String,
        expected: String,
        actual: String,
    },
    #[error("{what}: size mismatch for {url}: expected {expected} bytes, got {actual}{}", if *.actual > *.expected { " or more" } else { "" })]
    SizeMismatch {
        what: String,
        url: String,
        expected: u64,
        actual: u64,
    },
    #[error("{url}: larger than the limit of {limit} bytes")]
    TooLarge { url: String, limit: u64 },
    #[error("cache {}: {source}", path.display())]
    Cache {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("HTTP client: {0}")]
    Client(String),
    #[error("--offline: {what} is not in the cache ({url}, sha256 {sha256}); run once without --offline to fetch it")]
    Offline {
        what: String,
        url: String,
        sha256: String,
    },
    #[error("cache entry {} is damaged: expected sha256 {expected} ({size} bytes), found {actual} ({len} bytes)", path.display())]
    Damaged {
        path: PathBuf,
        expected: String,
        size: u64,
        actual: String,
        len: u64,
    },
}

/// The content-addressed cache: `<root>/sha256/<hex>`, temporary files in `<root>/tmp`.
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    pub fn new(root: &Path) -> Result<Cache, FetchError> {
        for sub in ["sha256", "tmp"] {
            let dir = root.join(sub);
            std::fs::create_dir_all(&dir).map_err(|source| FetchError::Cache {
                path: dir.clone(),
                source,
            })?;
        }
        Ok(Cache {
            root: root.to_path_buf(),
        })
    }

    /// The default cache: `$XDG_CACHE_HOME/compose` (or `~/.cache/compose`).
    pub fn default_dir() -> PathBuf {
        dirs::cache_dir()
            .unwrap_or_else(std::env::temp_dir)
            .join("compose")
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

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
        let _ = std::fs::remove_file(&path);
        Ok(None)
    }

    fn temp_file(&self) -> Result<tempfile::NamedTempFile, FetchError> {
        let dir = self.root.join("tmp");
        tempfile::NamedTempFile::new_in(&dir)
            .map_err(|source| FetchError::Cache { path: dir, source })
    }

    /// Move a verified temporary file to its content address.
    fn admit(&self, tmp: tempfile::NamedTempFile, sha256: &str) -> Result<PathBuf, FetchError> {
        let path = self.blob_path(sha256);
        tmp.as_file()
            .sync_all()
            .map_err(|source| FetchError::Cache {
                path: path.clone(),
                source,
            })?;
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

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// What to fetch into the cache: a file of known size and hash.
#[derive(Debug, Clone)]
pub struct Want {
    /// For messages: the package name or index path.
    pub what: String,
    pub url: String,
    pub size: u64,
    pub sha256: String,
}

pub struct FetchOptions {
    pub cache_dir: PathBuf,
    /// `FROM=TO` URL prefix rewrites, first match wins.
    pub mirrors: Vec<(String, String)>,
    pub quiet: bool,
    /// Parallel downloads.
    pub jobs: usize,
    /// Never touch the network: everything must come from the cache.
    pub offline: bool,
    /// A damaged cache entry is an error instead of being fetched again.
    pub strict_cache: bool,
}

pub struct Fetcher {
    client: reqwest::Client,
    pub cache: Cache,
    mirrors: Vec<(String, String)>,
    progress: MultiProgress,
    jobs: usize,
    offline: bool,
    strict_cache: bool,
}

const RETRIES: u32 = 3;

impl Fetcher {
    pub fn new(opts: FetchOptions) -> Result<Fetcher, FetchError> {
        // One process-wide crypto provider for rustls; a second install is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let redirect = reqwest::redirect::Policy::custom(|attempt| {
            let downgrade = attempt.previous().iter().any(|u| u.scheme() == "https")
                && attempt.url().scheme() != "https";
            if downgrade {
                attempt.error("redirect from https to http refused")
            } else if attempt.previous().len() >= 5 {
                attempt.error("more than 5 redirects")
            } else {
                attempt.follow()
            }
        });
        let client = reqwest::Client::builder()
            .user_agent(concat!("compose/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(20))
            .read_timeout(Duration::from_secs(60))
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
        })
    }

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

    /// Send a GET, retrying connection failures and 5xx with backoff. `Ok(None)` on 404/410.
    async fn send(&self, url: &str) -> Result<Option<reqwest::Response>, FetchError> {
        let real = self.rewrite(url);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = self.client.get(&real).send().await;
            let retry = match result {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    match status {
                        200..=299 => return Ok(Some(resp)),
                        404 | 410 => return Ok(None),
                        500..=599 if attempt < RETRIES => FetchError::Status {
                            url: real.clone(),
                            status,
                        },
                        _ => return Err(FetchError::Status { url: real, status }),
                    }
                }
                Err(e) => {
                    let err = FetchError::Network {
                        url: real.clone(),
                        message: describe(&e),
                    };
                    if attempt >= RETRIES {
                        return Err(err);
                    }
                    err
                }
            };
            let _ = retry;
            tokio::time::sleep(Duration::from_millis(200 * 4u64.pow(attempt - 1))).await;
        }
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
        let Some(resp) = self.send(url).await? else {
            return Ok(None);
        };
        let real = self.rewrite(url);
        let mut out = Vec::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| FetchError::Network {
                url: real.clone(),
                message: describe(&e),
            })?;
            if (out.len() + chunk.len()) as u64 > limit {
                return Err(FetchError::TooLarge { url: real, limit });
            }
            out.extend_from_slice(&chunk);
        }
        Ok(Some(out))
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
        let Some(resp) = self.send(&want.url).await? else {
            return Ok(None);
        };
        let real = self.rewrite(&want.url);
        let mut tmp = self.cache.temp_file()?;
        let mut hasher = Sha256::new();
        let mut len = 0u64;
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| FetchError::Network {
                url: real.clone(),
                message: describe(&e),
            })?;
            len += chunk.len() as u64;
            if len > want.size {
                return Err(FetchError::SizeMismatch {
                    what: want.what.clone(),
                    url: real,
                    expected: want.size,
                    actual: len,
                });
            }
            hasher.update(&chunk);
            tmp.write_all(&chunk).map_err(|source| FetchError::Cache {
                path: tmp.path().to_path_buf(),
                source,
            })?;
            if let Some(bar) = bar {
                bar.inc(chunk.len() as u64);
            }
        }
        if len != want.size {
            return Err(FetchError::SizeMismatch {
                what: want.what.clone(),
                url: real,
                expected: want.size,
                actual: len,
            });
        }
        let actual = hex::encode(hasher.finalize());
        if actual != want.sha256 {
            return Err(FetchError::HashMismatch {
                what: want.what.clone(),
                url: real,
                expected: want.sha256.clone(),
                actual,
            });
        }
        Ok(Some(self.cache.admit(tmp, &want.sha256)?))
    }

    /// Fetch many verified files in parallel (bounded); results in the order of `wants`.
    /// A missing file is an error.
    pub async fn get_all(self: &Arc<Self>, wants: &[Want]) -> Result<Vec<PathBuf>, FetchError> {
        let total: u64 = wants.iter().map(|w| w.size).sum();
        let bar = self.progress.add(ProgressBar::new(total));
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>10} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_prefix("packages");
        let results: Vec<Result<PathBuf, FetchError>> = futures::stream::iter(wants.iter())
            .map(|w| {
                let bar = bar.clone();
                async move {
                    match self.get_verified(w, Some(&bar)).await? {
                        Some(p) => Ok(p),
                        None => Err(FetchError::NotFound {
                            url: self.rewrite(&w.url),
                        }),
                    }
                }
            })
            .buffered(self.jobs)
            .collect()
            .await;
        bar.finish_and_clear();
        results.into_iter().collect()
    }
}

/// reqwest errors print their chain poorly; collect the sources into one sentence.
fn describe(e: &reqwest::Error) -> String {
    let mut msg = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "could not connect".to_string()
    } else if e.is_redirect() {
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
