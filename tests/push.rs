//! `--push` to a real registry — Debian's `docker-registry` (distribution
//! 2.8), started by the test on 127.0.0.1 with a config it writes, once without auth and
//! once with htpasswd basic auth (bcrypt file from `htpasswd -Bbn`, apache2-utils) —
//! read back by skopeo. The bearer-token flow and 5xx retries run against a small fake
//! registry with a token endpoint, in this file. Without `docker-registry` (or
//! `htpasswd`, `skopeo`) the affected test prints SKIPPED.

mod support;

use std::collections::{BTreeMap, HashMap};

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use compose::build::{build, BuildOptions, BuildResult};
use compose::push::{Credentials, PushOptions, Reference};
use sha2::Digest;
use support::{DebSpec, Member};

const ARCHS: [&str; 2] = ["amd64", "arm64"];
const UPSTREAM: &str = "http://archive.ubuntu.test/ubuntu";

// ---- the image ----------------------------------------------------------------------

fn packages(arch: &str) -> Vec<DebSpec> {
    let t = if arch == "amd64" {
        "x86_64-linux-gnu"
    } else {
        "aarch64-linux-gnu"
    };
    // Some kilobytes of incompressible bytes, so that a small chunk size gives chunks.
    let mut noise = Vec::new();
    let mut x: u32 = if arch == "amd64" { 1 } else { 2 };
    for _ in 0..6000 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        noise.push((x >> 16) as u8);
    }
    vec![
        DebSpec::new("libc6", "2.39-0ubuntu8.4", arch, Member::Zstd)
            .file(&format!("/lib/{t}/libc.so.6"), noise, 0o755)
            .copyright(),
        DebSpec::new("zlib1g", "1:1.3.dfsg-3.1ubuntu2.1", arch, Member::Gz).file(
            &format!("/usr/lib/{t}/libz.so.1.3"),
            format!("zlib {arch}").into_bytes(),
            0o644,
        ),
    ]
}

const BODY: &str = r#"
[package.libc6]
paths = ["/usr/lib/*-linux-gnu/libc.so.6"]

[package.zlib1g]
paths = ["/usr/lib/*-linux-gnu/libz.so.*"]
"#;

struct Fixture {
    ws: support::Workspace,
    dir: PathBuf,
    manifest: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let ws = support::Workspace::with_packages("noble", &ARCHS, packages);
        let manifest = ws.manifest_from("pushfix", &ARCHS, UPSTREAM, &["noble"], BODY);
        Fixture {
            dir: ws.dir.clone(),
            manifest,
            ws,
        }
    }

    fn opts(&self, out: &str, push: Option<PushOptions>) -> BuildOptions {
        BuildOptions {
            manifest: self.manifest.clone(),
            output: Some(self.dir.join(out)),
            cache: Some(self.dir.join("cache")),
            mirrors: vec![self.ws.mirror(UPSTREAM)],
            archs: ARCHS.iter().map(|s| s.to_string()).collect(),
            quiet: true,
            push,
            ..BuildOptions::default()
        }
    }

    /// `compose MANIFEST --arch amd64 --arch arm64 --output DIR ARGS…` with `envs`.
    fn cli(&self, out: &str, args: &[&str], envs: &[(&str, &str)]) -> Output {
        let mut c = Command::new(env!("CARGO_BIN_EXE_compose"));
        c.arg(&self.manifest)
            .args(["--arch", "amd64", "--arch", "arm64"])
            .arg("--cache")
            .arg(self.dir.join("cache"))
            .arg("--mirror")
            .arg(self.ws.mirror_arg(UPSTREAM))
            .arg("--output")
            .arg(self.dir.join(out))
            .args(args)
            .env_remove("COMPOSE_REGISTRY_USER")
            .env_remove("COMPOSE_REGISTRY_PASSWORD")
            .env_remove("DOCKER_CONFIG")
            // No ~/.docker/config.json of the machine running the tests.
            .env("HOME", self.dir.join("home-empty"));
        for (k, v) in envs {
            c.env(k, v);
        }
        c.output().unwrap()
    }
}

fn push_opts(reference: &str, insecure: bool) -> PushOptions {
    let mut p = PushOptions::new(Reference::parse(reference).unwrap(), insecure);
    // Tests never read the credentials of the machine they run on.
    p.credentials = Some(Credentials {
        user: String::new(),
        password: String::new(),
        from: "the test".into(),
    });
    p
}

fn anonymous(reference: &str, insecure: bool) -> PushOptions {
    let mut p = push_opts(reference, insecure);
    p.credentials = None;
    p
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

// ---- the real registry --------------------------------------------------------------

/// `docker-registry serve CONFIG` on 127.0.0.1:<free port>, killed on drop.
struct Registry {
    child: Child,
    _dir: tempfile::TempDir,
    log: PathBuf,
    /// `127.0.0.1:PORT`
    host: String,
}

impl Registry {
    /// None (after printing SKIPPED) when `docker-registry` is not installed.
    fn start(htpasswd: Option<&str>) -> Option<Registry> {
        if !Path::new("/usr/bin/docker-registry").exists() && !have("docker-registry") {
            println!("SKIPPED: docker-registry not installed (apt-get install docker-registry); --push not tested against a real registry");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let auth = match htpasswd {
            Some(line) => {
                let path = dir.path().join("htpasswd");
                std::fs::write(&path, line).unwrap();
                format!(
                    "auth:\n  htpasswd:\n    realm: compose-test\n    path: {}\n",
                    path.display()
                )
            }
            None => String::new(),
        };
        let config = format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{auth}",
            dir.path().join("data").display()
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = dir.path().join("registry.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .spawn()
            .expect("start docker-registry");
        let reg = Registry {
            child,
            _dir: dir,
            log,
            host: format!("127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if std::net::TcpStream::connect(&reg.host).is_ok() {
                let (status, _) = support::http_get(&format!("http://{}/v2/", reg.host));
                if status == 200 || status == 401 {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not answer /v2/ within 20 s: {}",
                std::fs::read_to_string(&reg.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(reg)
    }

    /// Lines of the registry's access log with `needle` (e.g. `"PUT /v2/x/blobs/uploads/`).
    fn count(&self, needle: &str) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(needle) && !l.contains("level="))
            .count()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `skopeo inspect --raw` of an image in the registry: its exact bytes.
fn skopeo_raw(image: &str, creds: Option<&str>) -> Vec<u8> {
    let mut c = Command::new("skopeo");
    c.args(["inspect", "--raw", "--tls-verify=false"]);
    if let Some(cr) = creds {
        c.args(["--creds", cr]);
    }
    let out = c.arg(format!("docker://{image}")).output().unwrap();
    assert!(
        out.status.success(),
        "skopeo inspect --raw {image}: {}",
        stderr(&out)
    );
    out.stdout
}

fn skopeo_arch(image: &str, arch: &str) -> serde_json::Value {
    let out = Command::new("skopeo")
        .args(["--override-arch", arch, "inspect", "--tls-verify=false"])
        .arg(format!("docker://{image}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo inspect {image}: {}",
        stderr(&out)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every file of a layout and its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.strip_prefix(dir).unwrap().into(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}

fn index_digest(layout: &Path) -> String {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn push_two_architectures_to_a_real_registry_and_again_uploads_nothing() {
    let Some(reg) = Registry::start(None) else {
        return;
    };
    let f = Fixture::new();
    let image = format!("{}/compose/pushfix:v1", reg.host);
    let started = Instant::now();
    let r: BuildResult = build(&f.opts("layout", Some(anonymous(&image, true)))).expect("push");
    let total = started.elapsed();
    let report = r.push.clone().expect("a push report");
    println!("{report} (build + push {:.2} s)", total.as_secs_f64());
    // Two configs and two layers, three manifests (arm64, amd64, the index).
    assert_eq!((report.pushed, report.skipped, report.manifests), (4, 0, 3));
    assert_eq!(report.scheme, "http");
    assert_eq!(report.digest, r.digest);
    // Pushing reads the layout only: its index digest is the build's.
    let layout = f.dir.join("layout");
    assert_eq!(index_digest(&layout), r.digest);
    assert_eq!(reg.count("\"PUT /v2/compose/pushfix/blobs/uploads/"), 4);
    assert_eq!(reg.count("\"PATCH /v2/compose/pushfix/blobs/uploads/"), 0);

    if have("skopeo") {
        let raw = skopeo_raw(&image, None);
        assert_eq!(
            sha256(&raw),
            r.digest,
            "the registry serves the layout's index"
        );
        let index_blob = std::fs::read(layout.join("blobs/sha256").join(&r.digest[7..])).unwrap();
        assert_eq!(raw, index_blob);
        for arch in ARCHS {
            let v = skopeo_arch(&image, arch);
            assert_eq!(v["Architecture"], arch, "{v}");
            let m = r.images.iter().find(|i| i.arch == arch).unwrap();
            // skopeo reports the digest of what the tag points to: the index.
            assert_eq!(v["Digest"], r.digest, "{v}");
            assert_eq!(v["Layers"][0], m.layer.digest, "{v}");
        }
    } else {
        println!("SKIPPED: skopeo not installed; the pushed image not read back");
    }

    // Again, through the CLI: every blob is already there, nothing is uploaded.
    let before = snapshot(&layout);
    let out = f.cli("layout", &["--push", &image, "--insecure"], &[]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    println!("{}", err.lines().last().unwrap_or_default());
    assert!(
        err.contains("0 blobs uploaded (0 bytes), 4 already in the registry, 3 manifests"),
        "{err}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().last(), Some(r.digest.as_str()));
    assert_eq!(
        reg.count("\"PUT /v2/compose/pushfix/blobs/uploads/"),
        4,
        "no blob uploaded twice"
    );
    assert_eq!(reg.count("\"POST /v2/compose/pushfix/blobs/uploads/"), 4);
    assert_eq!(
        snapshot(&layout),
        before,
        "the rebuilt layout is byte for byte the same"
    );

    // A second tag of the same image: blobs skipped, the index put under the new tag.
    let v2 = format!("{}/compose/pushfix:v2", reg.host);
    let again = build(&f.opts("layout", Some(anonymous(&v2, true)))).unwrap();
    let rep = again.push.unwrap();
    assert_eq!((rep.pushed, rep.skipped), (0, 4));
    if have("skopeo") {
        assert_eq!(sha256(&skopeo_raw(&v2, None)), r.digest);
    }

    // Plain HTTP without --insecure is refused, naming the flag; nothing is written.
    let e = build(&f.opts("refused", Some(anonymous(&image, false)))).unwrap_err();
    assert_eq!(e.exit_code(), 1);
    let msg = e.to_string();
    assert!(
        msg.contains("does not answer over HTTPS") && msg.contains("--insecure"),
        "{msg}"
    );
    assert!(!f.dir.join("refused").exists());
    let out = f.cli("refused", &["--push", &image], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("--insecure"));
    // A bad reference is a usage error before anything is built.
    let out = f.cli("bad", &["--push", "127.0.0.1:5000/UPPER:x"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn large_blobs_go_up_in_chunks() {
    let Some(reg) = Registry::start(None) else {
        return;
    };
    let f = Fixture::new();
    let image = format!("{}/compose/chunked:c", reg.host);
    let mut p = anonymous(&image, true);
    p.chunk = 1024;
    let r = build(&f.opts("layout", Some(p))).expect("chunked push");
    let rep = r.push.unwrap();
    println!("{rep}");
    // The layers (some KiB of noise) are larger than 1 KiB, the configs are not.
    let layers: Vec<u64> = r.images.iter().map(|i| i.layer.size).collect();
    assert!(layers.iter().all(|s| *s > 2048), "{layers:?}");
    assert_eq!((rep.pushed, rep.chunked), (4, 2));
    let patches: u64 = layers.iter().map(|s| s.div_ceil(1024)).sum();
    assert_eq!(
        reg.count("\"PATCH /v2/compose/chunked/blobs/uploads/") as u64,
        patches
    );
    if !have("skopeo") {
        println!("SKIPPED: skopeo not installed; chunked blobs not read back");
        return;
    }
    assert_eq!(sha256(&skopeo_raw(&image, None)), r.digest);
    // A full copy reads every blob back and checks its digest.
    let dest = f.dir.join("copied");
    let out = Command::new("skopeo")
        .args(["copy", "--all", "--src-tls-verify=false"])
        .arg(format!("docker://{image}"))
        .arg(format!("oci:{}:c", dest.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "skopeo copy: {}", stderr(&out));
}

#[test]
fn basic_auth_with_htpasswd() {
    if !have_htpasswd() {
        println!("SKIPPED: htpasswd not installed (apt-get install apache2-utils); basic auth not tested");
        return;
    }
    let line = Command::new("htpasswd")
        .args(["-Bbn", "compose", "s3cret:pw"])
        .output()
        .unwrap();
    assert!(line.status.success());
    let Some(reg) = Registry::start(Some(&String::from_utf8_lossy(&line.stdout))) else {
        return;
    };
    let f = Fixture::new();
    let image = format!("{}/team/run:1", reg.host);

    // No credentials: one clear error, exit 1, nothing written.
    let out = f.cli("none", &["--push", &image, "--insecure", "-q"], &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("requires authentication") && err.contains("COMPOSE_REGISTRY_USER"),
        "{err}"
    );
    assert!(!f.dir.join("none").exists());

    // A wrong password: one error line naming the user and where it came from.
    let out = f.cli(
        "wrong",
        &["--push", &image, "--insecure", "-q"],
        &[
            ("COMPOSE_REGISTRY_USER", "compose"),
            ("COMPOSE_REGISTRY_PASSWORD", "nope"),
        ],
    );
    let err = stderr(&out);
    println!("wrong password: {}", err.trim());
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(
        err.lines().filter(|l| l.starts_with("error:")).count(),
        1,
        "{err}"
    );
    assert!(
        err.contains("refused the credentials of user `compose` (from COMPOSE_REGISTRY_USER/COMPOSE_REGISTRY_PASSWORD)"),
        "{err}"
    );
    assert!(!f.dir.join("wrong").exists());

    // The right password from the environment.
    let out = f.cli(
        "env",
        &["--push", &image, "--insecure"],
        &[
            ("COMPOSE_REGISTRY_USER", "compose"),
            ("COMPOSE_REGISTRY_PASSWORD", "s3cret:pw"),
        ],
    );
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("4 blobs uploaded"), "{err}");
    let digest = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap()
        .to_string();

    // The right password from a temporary HOME's .docker/config.json.
    use base64::Engine as _;
    let home = f.dir.join("home");
    std::fs::create_dir_all(home.join(".docker")).unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode("compose:s3cret:pw");
    std::fs::write(
        home.join(".docker/config.json"),
        format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, reg.host),
    )
    .unwrap();
    let tagged = format!("{}/team/run:2", reg.host);
    let out = f.cli(
        "fromhome",
        &["--push", &tagged, "--insecure"],
        &[("HOME", home.to_str().unwrap())],
    );
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("0 blobs uploaded (0 bytes), 4 already in the registry"),
        "{err}"
    );
    if have("skopeo") {
        let raw = skopeo_raw(&tagged, Some("compose:s3cret:pw"));
        assert_eq!(sha256(&raw), digest);
    } else {
        println!("SKIPPED: skopeo not installed; the pushed image not read back");
    }
}

fn have_htpasswd() -> bool {
    Command::new("htpasswd").arg("-h").output().is_ok() // prints usage and exits 1, but runs
}

// ---- a fake registry with a token server: the bearer flow and retries -------------

#[derive(Default)]
struct Fake {
    blobs: Mutex<HashMap<String, Vec<u8>>>,
    uploads: Mutex<HashMap<String, Vec<u8>>>,
    manifests: Mutex<HashMap<String, (String, Vec<u8>)>>,
    next: AtomicUsize,
    /// Requests answered 500 before the real answer, per "METHOD kind".
    faults: Mutex<HashMap<String, usize>>,
    log: Mutex<Vec<String>>,
    tokens_issued: AtomicUsize,
    stop: AtomicBool,
}

const TOKEN: &str = "tok-123";

fn respond(rq: tiny_http::Request, status: u16, headers: &[(&str, String)], body: Vec<u8>) {
    let mut resp = tiny_http::Response::from_data(body).with_status_code(status);
    for (k, v) in headers {
        resp = resp.with_header(tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()).unwrap());
    }
    let _ = rq.respond(resp);
}

/// Serves `/token` (basic `compose:pw` → a token) and `/v2/…` (bearer only).
fn fake_registry() -> (Arc<Fake>, String, std::thread::JoinHandle<()>) {
    let http = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let port = http.server_addr().to_ip().unwrap().port();
    let base = format!("127.0.0.1:{port}");
    let fake = Arc::new(Fake::default());
    let f = Arc::clone(&fake);
    let realm = format!("http://{base}/token");
    let handle = std::thread::spawn(move || {
        while !f.stop.load(Ordering::SeqCst) {
            let Ok(Some(mut rq)) = http.recv_timeout(Duration::from_millis(50)) else {
                continue;
            };
            let method = rq.method().to_string();
            let url = rq.url().to_string();
            f.log.lock().unwrap().push(format!("{method} {url}"));
            let auth = rq
                .headers()
                .iter()
                .find(|h| h.field.equiv("Authorization"))
                .map(|h| h.value.to_string());
            let ct = rq
                .headers()
                .iter()
                .find(|h| h.field.equiv("Content-Type"))
                .map(|h| h.value.to_string())
                .unwrap_or_default();
            let mut body = Vec::new();
            rq.as_reader().read_to_end(&mut body).unwrap();
            let (path, query) = url.split_once('?').unwrap_or((&url, ""));
            if path == "/token" {
                use base64::Engine as _;
                let want = format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode("compose:pw")
                );
                let scope_ok = query.contains("scope=repository%3Ateam%2Fapp%3Apull%2Cpush")
                    && query.contains("service=fake");
                if auth.as_deref() == Some(want.as_str()) && scope_ok {
                    f.tokens_issued.fetch_add(1, Ordering::SeqCst);
                    respond(
                        rq,
                        200,
                        &[],
                        format!(r#"{{"token":"{TOKEN}"}}"#).into_bytes(),
                    );
                } else {
                    respond(rq, 401, &[], b"bad credentials".to_vec());
                }
                continue;
            }
            if auth.as_deref() != Some(&format!("Bearer {TOKEN}")) {
                let challenge = format!(
                    r#"Bearer realm="{realm}",service="fake",scope="repository:team/app:pull""#
                );
                respond(rq, 401, &[("WWW-Authenticate", challenge)], Vec::new());
                continue;
            }
            if path == "/v2/" {
                respond(rq, 200, &[], b"{}".to_vec());
                continue;
            }
            let Some(rest) = path.strip_prefix("/v2/team/app/") else {
                respond(rq, 404, &[], Vec::new());
                continue;
            };
            let kind = if rest.starts_with("blobs/uploads") {
                "upload"
            } else if rest.starts_with("blobs/") {
                "blob"
            } else {
                "manifest"
            };
            let key = format!("{method} {kind}");
            {
                let mut faults = f.faults.lock().unwrap();
                if let Some(n) = faults.get_mut(&key).filter(|n| **n > 0) {
                    *n -= 1;
                    drop(faults);
                    respond(rq, 500, &[], b"injected".to_vec());
                    continue;
                }
            }
            let digest_of = |q: &str| {
                q.split('&')
                    .find_map(|kv| kv.strip_prefix("digest="))
                    .map(|d| d.replace("%3A", ":"))
            };
            match (method.as_str(), kind) {
                ("HEAD", "blob") => {
                    let d = rest.trim_start_matches("blobs/");
                    let has = f.blobs.lock().unwrap().contains_key(d);
                    respond(rq, if has { 200 } else { 404 }, &[], Vec::new());
                }
                ("POST", "upload") => {
                    let id = f.next.fetch_add(1, Ordering::SeqCst).to_string();
                    f.uploads.lock().unwrap().insert(id.clone(), Vec::new());
                    // A relative Location, as the spec allows.
                    respond(
                        rq,
                        202,
                        &[(
                            "Location",
                            format!("/v2/team/app/blobs/uploads/{id}?state=x"),
                        )],
                        Vec::new(),
                    );
                }
                ("PATCH", "upload") | ("PUT", "upload") => {
                    let id = rest.trim_start_matches("blobs/uploads/").to_string();
                    let mut uploads = f.uploads.lock().unwrap();
                    let Some(data) = uploads.get_mut(&id) else {
                        respond(rq, 404, &[], Vec::new());
                        continue;
                    };
                    data.extend_from_slice(&body);
                    if method == "PATCH" {
                        let end = data.len() - 1;
                        respond(
                            rq,
                            202,
                            &[
                                ("Location", format!("/v2/team/app/blobs/uploads/{id}")),
                                ("Range", format!("0-{end}")),
                            ],
                            Vec::new(),
                        );
                        continue;
                    }
                    let data = uploads.remove(&id).unwrap();
                    let d = digest_of(query).unwrap_or_default();
                    if sha256(&data) != d {
                        respond(rq, 400, &[], b"DIGEST_INVALID".to_vec());
                        continue;
                    }
                    f.blobs.lock().unwrap().insert(d.clone(), data);
                    respond(rq, 201, &[("Docker-Content-Digest", d)], Vec::new());
                }
                ("PUT", "manifest") => {
                    let reference = rest.trim_start_matches("manifests/").to_string();
                    let d = sha256(&body);
                    f.manifests.lock().unwrap().insert(reference, (ct, body));
                    respond(rq, 201, &[("Docker-Content-Digest", d)], Vec::new());
                }
                _ => respond(rq, 405, &[], Vec::new()),
            }
        }
    });
    (fake, base, handle)
}

#[test]
fn bearer_token_flow_and_retries_on_5xx() {
    let (fake, base, handle) = fake_registry();
    let f = Fixture::new();
    // Two 500s on the first blob PUT and one on a manifest PUT: retried.
    fake.faults.lock().unwrap().insert("PUT upload".into(), 2);
    fake.faults.lock().unwrap().insert("PUT manifest".into(), 1);
    let image = format!("{base}/team/app:latest");
    let token_opts = |password: &str| {
        let mut p = push_opts(&image, true);
        p.credentials = Some(Credentials {
            user: "compose".into(),
            password: password.into(),
            from: "the test".into(),
        });
        p
    };
    let mut p = token_opts("pw");
    p.chunk = 2048;
    let t = Instant::now();
    let r = build(&f.opts("layout", Some(p))).expect("push with a bearer token");
    eprintln!("T1 {:?}", t.elapsed());
    let rep = r.push.unwrap();
    assert_eq!((rep.pushed, rep.chunked, rep.manifests), (4, 2, 3));
    assert!(fake.tokens_issued.load(Ordering::SeqCst) >= 1);
    let manifests = fake.manifests.lock().unwrap();
    let (ct, top) = &manifests["latest"];
    assert_eq!(sha256(top), r.digest);
    assert_eq!(ct, "application/vnd.oci.image.index.v1+json");
    for i in &r.images {
        let (ct, _) = &manifests[&i.manifest_digest];
        assert_eq!(ct, "application/vnd.oci.image.manifest.v1+json");
    }
    drop(manifests);
    let log = fake.log.lock().unwrap().clone();
    assert!(log.iter().any(|l| l.starts_with("PATCH ")), "{log:?}");

    // A token server refusing the password: one clear error naming the user.
    let e = build(&f.opts("bad", Some(token_opts("wrong")))).unwrap_err();
    eprintln!("T2 {:?}", t.elapsed());
    let msg = e.to_string();
    assert!(
        msg.contains("refused the credentials of user `compose`") && msg.contains("/token"),
        "{msg}"
    );

    // A registry that keeps failing: the error names the blob and gives the attempts.
    fake.faults.lock().unwrap().insert("PUT upload".into(), 100);
    fake.blobs.lock().unwrap().clear();
    let e = build(&f.opts("fail", Some(token_opts("pw")))).unwrap_err();
    let msg = e.to_string();
    println!("failing registry: {msg}");
    assert!(
        msg.contains("push of blob sha256:")
            && msg.contains("HTTP 500")
            && msg.contains("gave up after 3 attempts"),
        "{msg}"
    );
    assert!(!f.dir.join("fail").exists());
    fake.stop.store(true, Ordering::SeqCst);
    handle.join().unwrap();
}

/// A zstd image (`--compression zstd`) to the real registry and back: the registry keeps
/// the layer's media type and bytes, and skopeo, pulling it, decodes the layer to the
/// tar the config's diff_id names.
#[test]
fn a_zstd_image_goes_to_a_real_registry_and_back() {
    let Some(reg) = Registry::start(None) else {
        return;
    };
    if !have("skopeo") {
        println!("SKIPPED: skopeo not installed; the pushed zstd image not read back");
        return;
    }
    let f = Fixture::new();
    let image = format!("{}/compose/zpush:v1", reg.host);
    let out = f.cli(
        "layout",
        &["--push", &image, "--insecure", "--compression", "zstd"],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let layout = f.dir.join("layout");
    let digest = index_digest(&layout);
    assert_eq!(sha256(&skopeo_raw(&image, None)), digest);
    for arch in ARCHS {
        // Back into a layout as it is, and into a directory with the layer decoded.
        let back = f.dir.join(format!("back-{arch}"));
        let plain = f.dir.join(format!("plain-{arch}"));
        for (dest, extra) in [
            (format!("oci:{}:z", back.display()), None),
            (
                format!("dir:{}", plain.display()),
                Some("--dest-decompress"),
            ),
        ] {
            let mut c = Command::new("skopeo");
            c.args(["--override-arch", arch, "copy", "--src-tls-verify=false"]);
            c.args(extra);
            let run = c
                .arg(format!("docker://{image}"))
                .arg(&dest)
                .output()
                .unwrap();
            assert!(
                run.status.success(),
                "skopeo copy to {dest}: {}",
                stderr(&run)
            );
        }
        let blob =
            |dir: &Path, d: &str| std::fs::read(dir.join("blobs/sha256").join(&d[7..])).unwrap();
        let json = |b: Vec<u8>| serde_json::from_slice::<serde_json::Value>(&b).unwrap();
        let index = json(std::fs::read(back.join("index.json")).unwrap());
        let manifest = json(blob(
            &back,
            index["manifests"][0]["digest"].as_str().unwrap(),
        ));
        let layer = &manifest["layers"][0];
        assert_eq!(
            layer["mediaType"], "application/vnd.oci.image.layer.v1.tar+zstd",
            "{manifest}"
        );
        let layer_digest = layer["digest"].as_str().unwrap();
        assert_eq!(
            blob(&back, layer_digest),
            blob(&layout, layer_digest),
            "the registry returns the very zstd blob compose wrote"
        );
        let config = json(blob(&back, manifest["config"]["digest"].as_str().unwrap()));
        assert_eq!(config["architecture"], arch);
        let diff_id = config["rootfs"]["diff_ids"][0].as_str().unwrap();
        let tar = std::fs::read(plain.join(&diff_id[7..]))
            .expect("skopeo names the decoded layer by its SHA-256");
        assert_eq!(sha256(&tar), diff_id);
    }
}
