//! A static file server on 127.0.0.1:<ephemeral port> (tiny_http), for loopback mirrors:
//! a request log, per-path status overrides, and hooks that change the served files
//! after a given request (a mirror publishing while a client reads it).

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

const WORKERS: usize = 4;

/// One served request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Served {
    pub method: String,
    /// the request path as sent (query string included, not decoded)
    pub path: String,
    pub status: u16,
}

#[derive(Default)]
struct Shared {
    log: Mutex<Vec<Served>>,
    /// path -> status served instead of the file (fault injection)
    overrides: Mutex<HashMap<String, u16>>,
    /// path -> what to do once, after that path's response is ready, before it is sent
    hooks: Mutex<HashMap<String, Hook>>,
}

type Hook = Box<dyn FnOnce() + Send>;

pub struct Server {
    /// "http://127.0.0.1:PORT", no trailing slash
    pub url: String,
    pub root: PathBuf,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Server {
    /// Serves a repository's root.
    pub fn start(repo: &super::Repo) -> Server {
        Server::serve_dir(&repo.root)
    }

    /// Same as [`Server::start`].
    pub fn new(repo: &super::Repo) -> Server {
        Server::serve_dir(&repo.root)
    }

    /// Serves the files under `root` (GET and HEAD); anything else is 404.
    pub fn serve_dir(root: impl AsRef<Path>) -> Server {
        let root = root.as_ref().to_path_buf();
        let http = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind 127.0.0.1:0"));
        let port = http.server_addr().to_ip().expect("ip listener").port();
        let shared = Arc::new(Shared::default());
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..WORKERS)
            .map(|_| {
                let http = Arc::clone(&http);
                let shared = Arc::clone(&shared);
                let stop = Arc::clone(&stop);
                let root = root.clone();
                std::thread::spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        match http.recv_timeout(Duration::from_millis(50)) {
                            Ok(Some(rq)) => handle(&root, &shared, rq),
                            Ok(None) => {}
                            Err(_) => break,
                        }
                    }
                })
            })
            .collect();
        Server {
            url: format!("http://127.0.0.1:{port}"),
            root,
            shared,
            stop,
            threads,
        }
    }

    /// `url` + "/" + `rel`.
    pub fn url_of(&self, rel: &str) -> String {
        format!("{}/{}", self.url, rel.trim_start_matches('/'))
    }

    /// Paths of every request so far, in arrival order ("/dists/noble/InRelease").
    pub fn requests(&self) -> Vec<String> {
        self.log().into_iter().map(|s| s.path).collect()
    }

    /// Every request with method and status.
    pub fn log(&self) -> Vec<Served> {
        self.shared.log.lock().unwrap().clone()
    }

    /// How many requests asked for `path` (leading "/" optional).
    pub fn hits(&self, path: &str) -> usize {
        let want = format!("/{}", path.trim_start_matches('/'));
        self.requests().iter().filter(|p| **p == want).count()
    }

    pub fn clear_requests(&self) {
        self.shared.log.lock().unwrap().clear();
    }

    /// Answer `path` with `status` and an empty body from now on (e.g. 500, 403).
    pub fn set_status(&self, path: &str, status: u16) {
        let p = format!("/{}", path.trim_start_matches('/'));
        self.shared.overrides.lock().unwrap().insert(p, status);
    }

    /// Run `hook` once, right after the next request for `path` has been answered from
    /// the files as they were (its bytes are read, not yet sent): whatever `hook`
    /// changes is what every later request sees, and the client that asked for `path`
    /// only goes on once it has run. E.g. a mirror that publishes new indexes just after
    /// serving the InRelease.
    pub fn after(&self, path: &str, hook: impl FnOnce() + Send + 'static) {
        let p = format!("/{}", path.trim_start_matches('/'));
        self.shared.hooks.lock().unwrap().insert(p, Box::new(hook));
    }

    pub fn clear_status(&self, path: &str) {
        let p = format!("/{}", path.trim_start_matches('/'));
        self.shared.overrides.lock().unwrap().remove(&p);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Maps a request path to a file under root, refusing anything that leaves it.
fn resolve(root: &Path, url: &str) -> Option<PathBuf> {
    let path = url.split(['?', '#']).next().unwrap_or("");
    let decoded = String::from_utf8(percent_decode(path)?).ok()?;
    let rel = Path::new(decoded.trim_start_matches('/'));
    if rel
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return None;
    }
    let full = root.join(rel);
    full.is_file().then_some(full)
}

fn handle(root: &Path, shared: &Shared, rq: tiny_http::Request) {
    let method = rq.method().as_str().to_string();
    let path = rq.url().to_string();
    let key = path.split('?').next().unwrap_or("").to_string();
    let override_status = shared.overrides.lock().unwrap().get(&key).copied();
    let (status, response) = if let Some(code) = override_status {
        (
            code,
            tiny_http::Response::from_data(Vec::new()).with_status_code(code),
        )
    } else if method != "GET" && method != "HEAD" {
        (
            405,
            tiny_http::Response::from_data(Vec::new()).with_status_code(405),
        )
    } else {
        match resolve(root, &path).and_then(|p| std::fs::read(p).ok()) {
            Some(bytes) => {
                let ct = tiny_http::Header::from_bytes(
                    &b"Content-Type"[..],
                    &b"application/octet-stream"[..],
                )
                .unwrap();
                (200, tiny_http::Response::from_data(bytes).with_header(ct))
            }
            None => (
                404,
                tiny_http::Response::from_data(b"not found\n".to_vec()).with_status_code(404),
            ),
        }
    };
    shared.log.lock().unwrap().push(Served {
        method,
        path,
        status,
    });
    let hook = shared.hooks.lock().unwrap().remove(&key);
    if let Some(hook) = hook {
        hook();
    }
    let _ = rq.respond(response);
}
