//! A loopback HTTP server that misbehaves on purpose: std `TcpListener` on 127.0.0.1:0,
//! one thread per connection, one request per connection (`Connection: close`). It
//! serves the files under a root like [`super::Server`], except for paths given a
//! [`Fault`]. Every request is logged before it is answered.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How to answer one path.
#[derive(Clone, Debug)]
pub enum Fault {
    /// An empty answer with this status (500, 503, 403…).
    Status(u16),
    /// `status` for the next `times` requests, then the file.
    Flaky { status: u16, times: usize },
    /// Headers announcing the whole file, `after` bytes of it, then a TCP reset.
    Reset { after: usize },
    /// Read the request, then send nothing (`None`) or the headers and `Some(n)` body
    /// bytes, and hang until the server is dropped (at most a minute).
    Stall { after: Option<usize> },
    /// `302 Found` to this location (absolute URL or path).
    Redirect(String),
    /// Serve the file at this other path of the root instead.
    Alias(String),
    /// `Content-Length: n`, then the whole file whatever its length.
    Announce(u64),
    /// The right `Content-Length`, then the file followed by these bytes.
    Extra(Vec<u8>),
    /// No `Content-Length` (the body ends when the connection closes): the file
    /// followed by these bytes.
    Unannounced(Vec<u8>),
    /// The file in `chunk`-byte pieces with `pause` between them.
    Throttle { chunk: usize, pause: Duration },
    /// Read the request and send nothing until the flag is set, then answer as the
    /// path's fault is at that time (the file when it is still this one; set another
    /// fault before the flag to fail instead). Unset after a minute (or when the server
    /// is dropped): `503`.
    Hold(Arc<AtomicBool>),
}

#[derive(Default)]
struct Shared {
    faults: Mutex<HashMap<String, Fault>>,
    log: Mutex<Vec<String>>,
}

pub struct Faulty {
    /// "http://127.0.0.1:PORT", no trailing slash
    pub url: String,
    pub root: PathBuf,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

/// A URL on 127.0.0.1 where nothing listens: connecting is refused.
pub fn closed_port_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("http://127.0.0.1:{port}")
}

fn key(path: &str) -> String {
    format!("/{}", path.trim_start_matches('/'))
}

impl Faulty {
    pub fn serve_dir(root: impl AsRef<Path>) -> Faulty {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared::default());
        let stop = Arc::new(AtomicBool::new(false));
        let root = root.as_ref().to_path_buf();
        let accept = {
            let (shared, stop, root) = (shared.clone(), stop.clone(), root.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((conn, _)) => {
                            let (shared, stop, root) = (shared.clone(), stop.clone(), root.clone());
                            std::thread::spawn(move || {
                                let _ = handle(conn, &root, &shared, &stop);
                            });
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(5))
                        }
                        Err(_) => break,
                    }
                }
            })
        };
        Faulty {
            url: format!("http://127.0.0.1:{port}"),
            root,
            shared,
            stop,
            accept: Some(accept),
        }
    }

    pub fn url_of(&self, rel: &str) -> String {
        format!("{}{}", self.url, key(rel))
    }

    /// Misbehave on `path` (leading "/" optional) from now on.
    pub fn set(&self, path: &str, fault: Fault) {
        self.shared.faults.lock().unwrap().insert(key(path), fault);
    }

    pub fn clear(&self, path: &str) {
        self.shared.faults.lock().unwrap().remove(&key(path));
    }

    pub fn requests(&self) -> Vec<String> {
        self.shared.log.lock().unwrap().clone()
    }

    /// How many requests asked for `path`.
    pub fn hits(&self, path: &str) -> usize {
        let want = key(path);
        self.requests().iter().filter(|p| **p == want).count()
    }
}

impl Drop for Faulty {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

/// Read up to the end of the request head; the request path.
fn read_request(conn: &mut TcpStream) -> std::io::Result<String> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head)
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    Ok(path.split('?').next().unwrap_or("/").to_string())
}

fn file(root: &Path, path: &str) -> Option<Vec<u8>> {
    let rel = path.trim_start_matches('/');
    if rel.split('/').any(|c| c == ".." || c.is_empty()) {
        return None;
    }
    std::fs::read(root.join(rel)).ok()
}

fn head(status: u16, length: Option<u64>, extra: &str) -> Vec<u8> {
    let mut h = format!("HTTP/1.1 {status} Scripted\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n{extra}");
    if let Some(n) = length {
        h.push_str(&format!("Content-Length: {n}\r\n"));
    }
    h.push_str("\r\n");
    h.into_bytes()
}

/// Close with a TCP RST instead of a FIN: SO_LINGER on, timeout 0.
fn reset(conn: TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket fd and a properly sized linger struct.
    unsafe {
        libc::setsockopt(
            conn.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    drop(conn);
}

fn hang(stop: &AtomicBool) {
    let until = Instant::now() + Duration::from_secs(60);
    while !stop.load(Ordering::SeqCst) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn handle(
    mut conn: TcpStream,
    root: &Path,
    shared: &Shared,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    conn.set_nonblocking(false)?;
    let path = read_request(&mut conn)?;
    shared.log.lock().unwrap().push(path.clone());
    let current = || {
        let mut faults = shared.faults.lock().unwrap();
        match faults.get_mut(&path) {
            Some(Fault::Flaky { status, times }) if *times > 0 => {
                *times -= 1;
                Some(Fault::Status(*status))
            }
            Some(Fault::Flaky { .. }) => None,
            other => other.cloned(),
        }
    };
    let mut fault = current();
    if let Some(Fault::Hold(flag)) = fault {
        let until = Instant::now() + Duration::from_secs(60);
        while !flag.load(Ordering::SeqCst) && !stop.load(Ordering::SeqCst) {
            if Instant::now() > until {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        fault = match current() {
            _ if !flag.load(Ordering::SeqCst) => Some(Fault::Status(503)),
            Some(Fault::Hold(_)) => None,
            other => other,
        };
    }
    let body = |p: &str| file(root, p);
    let not_found = |conn: &mut TcpStream| conn.write_all(&head(404, Some(0), ""));
    match fault {
        None => match body(&path) {
            Some(b) => {
                conn.write_all(&head(200, Some(b.len() as u64), ""))?;
                conn.write_all(&b)?;
            }
            None => not_found(&mut conn)?,
        },
        Some(Fault::Status(s)) => conn.write_all(&head(s, Some(0), ""))?,
        Some(Fault::Flaky { .. }) | Some(Fault::Hold(_)) => unreachable!("resolved above"),
        Some(Fault::Redirect(to)) => {
            conn.write_all(&head(302, Some(0), &format!("Location: {to}\r\n")))?
        }
        Some(Fault::Alias(other)) => match body(&other) {
            Some(b) => {
                conn.write_all(&head(200, Some(b.len() as u64), ""))?;
                conn.write_all(&b)?;
            }
            None => not_found(&mut conn)?,
        },
        Some(Fault::Reset { after }) => {
            let b = body(&path).expect("a file to cut");
            conn.write_all(&head(200, Some(b.len() as u64), ""))?;
            conn.write_all(&b[..after.min(b.len())])?;
            conn.flush()?;
            std::thread::sleep(Duration::from_millis(50));
            reset(conn);
            return Ok(());
        }
        Some(Fault::Stall { after }) => {
            if let Some(n) = after {
                let b = body(&path).expect("a file to stall in");
                conn.write_all(&head(200, Some(b.len() as u64), ""))?;
                conn.write_all(&b[..n.min(b.len())])?;
                conn.flush()?;
            }
            hang(stop);
        }
        Some(Fault::Announce(n)) => {
            let b = body(&path).expect("a file");
            conn.write_all(&head(200, Some(n), ""))?;
            conn.write_all(&b)?;
        }
        Some(Fault::Extra(extra)) => {
            let b = body(&path).expect("a file");
            conn.write_all(&head(200, Some(b.len() as u64), ""))?;
            conn.write_all(&b)?;
            conn.write_all(&extra)?;
        }
        Some(Fault::Unannounced(extra)) => {
            let b = body(&path).expect("a file");
            conn.write_all(&head(200, None, ""))?;
            conn.write_all(&b)?;
            conn.write_all(&extra)?;
        }
        Some(Fault::Throttle { chunk, pause }) => {
            let b = body(&path).expect("a file");
            conn.write_all(&head(200, Some(b.len() as u64), ""))?;
            for piece in b.chunks(chunk.max(1)) {
                conn.write_all(piece)?;
                conn.flush()?;
                std::thread::sleep(pause);
            }
        }
    }
    conn.flush()?;
    let _ = conn.shutdown(std::net::Shutdown::Write);
    // Let the client read everything before the socket goes away.
    let mut sink = [0u8; 256];
    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
    while matches!(conn.read(&mut sink), Ok(n) if n > 0) {}
    Ok(())
}
