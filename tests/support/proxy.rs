//! A forward HTTP proxy on 127.0.0.1 (what `http_proxy`/`https_proxy` point at), and an
//! HTTPS front for a loopback server, so a client's TLS goes through the proxy's
//! `CONNECT` tunnel to a certificate it checks.
//!
//! The proxy handles what apt-style clients send: absolute-form requests
//! (`GET http://host:port/path HTTP/1.1`), forwarded to the origin, and `CONNECT
//! host:port`, tunnelled byte for byte. It logs every request line it receives.
//! [`TlsFront`] terminates TLS with a certificate for `localhost` and `127.0.0.1` signed
//! by a CA made with the `openssl` command, and passes each request on to a plain HTTP
//! server (the fixture's [`super::Server`]).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;

/// A forward proxy on 127.0.0.1:<ephemeral port>; its threads end with the process.
pub struct Proxy {
    /// `http://127.0.0.1:PORT`, the value for `http_proxy`/`https_proxy`.
    pub url: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Proxy {
    pub fn start() -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().unwrap().port();
        let log = Arc::new(Mutex::new(Vec::new()));
        let shared = Arc::clone(&log);
        thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let log = Arc::clone(&shared);
                thread::spawn(move || serve_client(client, &log));
            }
        });
        Proxy {
            url: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    /// Every request line received, in arrival order (`GET http://…/InRelease HTTP/1.1`,
    /// `CONNECT localhost:PORT HTTP/1.1`).
    pub fn requests(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

/// The request head (request line and headers, up to the blank line); `None` at EOF.
fn read_head(r: &mut impl BufRead) -> Option<Vec<String>> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        if line.is_empty() {
            return Some(lines);
        }
        lines.push(line);
    }
}

/// `host:port` and the path of an absolute-form `http://` target.
fn split_target(target: &str) -> Option<(String, String)> {
    let rest = target.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let authority = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    Some((authority, path.to_string()))
}

fn serve_client(client: TcpStream, log: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut client = client;
    while let Some(head) = read_head(&mut reader) {
        let Some(request_line) = head.first().cloned() else {
            return;
        };
        log.lock().unwrap().push(request_line.clone());
        let parts: Vec<&str> = request_line.split_whitespace().collect();
        let [method, target, _version] = parts[..] else {
            let _ = client.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n");
            return;
        };
        if method == "CONNECT" {
            let Ok(upstream) = TcpStream::connect(target) else {
                let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n");
                return;
            };
            let _ = client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
            // Whatever the client sent after the head is still in the reader's buffer.
            let buffered = reader.buffer().to_vec();
            tunnel(client, reader.into_inner(), upstream, buffered);
            return;
        }
        let Some((authority, path)) = split_target(target) else {
            let _ = client.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n");
            return;
        };
        // GET and HEAD carry no body: forward the head, the origin's answer back whole.
        let mut request = format!("{method} {path} HTTP/1.1\r\n");
        for h in &head[1..] {
            let name = h.split(':').next().unwrap_or("").to_ascii_lowercase();
            if name != "connection" && name != "proxy-connection" && name != "keep-alive" {
                request.push_str(h);
                request.push_str("\r\n");
            }
        }
        request.push_str("Connection: close\r\n\r\n");
        match forward(&authority, request.as_bytes()) {
            Some(response) => {
                if client.write_all(&response).is_err() {
                    return;
                }
            }
            None => {
                let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n");
                return;
            }
        }
    }
}

/// Send `request` to `authority` and read the answer to its end (the origin closes).
fn forward(authority: &str, request: &[u8]) -> Option<Vec<u8>> {
    let mut upstream = TcpStream::connect(authority).ok()?;
    upstream.write_all(request).ok()?;
    let mut response = Vec::new();
    upstream.read_to_end(&mut response).ok()?;
    Some(response)
}

/// Copy bytes both ways until either side closes.
fn tunnel(client: TcpStream, client_reader: TcpStream, upstream: TcpStream, buffered: Vec<u8>) {
    let mut up_write = upstream.try_clone().unwrap();
    let mut client_write = client;
    let mut up_read = upstream;
    let mut client_read = client_reader;
    let to_origin = thread::spawn(move || {
        if up_write.write_all(&buffered).is_ok() {
            let _ = std::io::copy(&mut client_read, &mut up_write);
        }
        let _ = up_write.shutdown(Shutdown::Write);
    });
    let _ = std::io::copy(&mut up_read, &mut client_write);
    let _ = client_write.shutdown(Shutdown::Both);
    let _ = to_origin.join();
}

/// HTTPS on 127.0.0.1:<ephemeral port> in front of a plain HTTP server: each request
/// read from the TLS stream is sent on to `backend`, the answer returned as it came.
pub struct TlsFront {
    /// `https://localhost:PORT`, no trailing slash.
    pub url: String,
    /// The CA certificate (PEM) that signed the front's certificate: what a client's
    /// `SSL_CERT_FILE` names to trust it.
    pub ca: PathBuf,
    _dir: tempfile::TempDir,
}

impl TlsFront {
    /// `backend`: `http://127.0.0.1:PORT` (e.g. [`super::Server::url`]).
    pub fn start(backend: &str) -> TlsFront {
        let dir = tempfile::tempdir().unwrap();
        let (ca, cert, key) = make_certificates(dir.path());
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert)
            .unwrap()
            .map(|c| c.unwrap())
            .collect();
        let key = PrivateKeyDer::from_pem_file(&key).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().unwrap().port();
        let backend = split_target(&format!("{}/", backend.trim_end_matches('/')))
            .expect("an http:// backend")
            .0;
        thread::spawn(move || {
            for tcp in listener.incoming().flatten() {
                let config = Arc::clone(&config);
                let backend = backend.clone();
                thread::spawn(move || {
                    let conn = rustls::ServerConnection::new(config).unwrap();
                    let tls = rustls::StreamOwned::new(conn, tcp);
                    serve_tls(tls, &backend);
                });
            }
        });
        TlsFront {
            url: format!("https://localhost:{port}"),
            ca,
            _dir: dir,
        }
    }
}

fn serve_tls(tls: rustls::StreamOwned<rustls::ServerConnection, TcpStream>, backend: &str) {
    let mut reader = BufReader::new(tls);
    while let Some(head) = read_head(&mut reader) {
        let mut request = String::new();
        for h in &head {
            let name = h.split(':').next().unwrap_or("").to_ascii_lowercase();
            if name != "connection" && name != "keep-alive" {
                request.push_str(h);
                request.push_str("\r\n");
            }
        }
        request.push_str("Connection: close\r\n\r\n");
        let Some(response) = forward(backend, request.as_bytes()) else {
            return;
        };
        let tls = reader.get_mut();
        if tls.write_all(&response).and_then(|()| tls.flush()).is_err() {
            return;
        }
    }
}

/// A CA and a certificate it signs for `localhost` and `127.0.0.1` (both P-256), made
/// with the `openssl` command in `dir`: (CA cert, leaf cert, leaf key), PEM files.
fn make_certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("the openssl command");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509", "-days", "2", "-subj", "/CN=compose test CA"];
    ca.extend(ec);
    ca.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
    ca.extend(["-addext", "basicConstraints=critical,CA:TRUE"]);
    ca.extend(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
    openssl(&ca);
    let mut req = vec!["req", "-subj", "/CN=localhost"];
    req.extend(ec);
    req.extend(["-keyout", "leaf.key", "-out", "leaf.csr"]);
    openssl(&req);
    std::fs::write(
        dir.join("leaf.ext"),
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "leaf.ext",
        "-out",
        "leaf.pem",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("leaf.pem"),
        dir.join("leaf.key"),
    )
}
