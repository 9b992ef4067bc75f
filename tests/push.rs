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
use compose::oci::read::{self, BlobSource};
use compose::push::{Credentials, PushOptions, Reference};
use compose::registry::{ImageRef, RegistryImage};
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

fn file_name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

fn rep_referrers(r: &compose::push::PushReport) -> Vec<&str> {
    r.referrers.iter().map(String::as_str).collect()
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
    // The image's four blobs, then the build record's three (the empty config, the
    // manifest, the lock).
    assert_eq!(
        rep_referrers(&report),
        ["application/vnd.compose.build-record.v1"]
    );
    assert_eq!(report.referrer_blobs, 3);
    assert_eq!(reg.count("\"PUT /v2/compose/pushfix/blobs/uploads/"), 7);
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
        7,
        "no blob uploaded twice (the image's four, the build record's three)"
    );
    assert_eq!(reg.count("\"POST /v2/compose/pushfix/blobs/uploads/"), 7);
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
    // And the build record's blobs larger than 1 KiB: the empty config (2 bytes), the
    // manifest and the lock, as they are beside each other.
    let record = [
        2,
        std::fs::metadata(&f.manifest).unwrap().len(),
        std::fs::metadata(f.manifest.with_extension("toml.lock"))
            .unwrap()
            .len(),
    ];
    let patches: u64 = layers
        .iter()
        .chain(record.iter())
        .filter(|s| **s > 1024)
        .map(|s| s.div_ceil(1024))
        .sum();
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
    /// Serve `GET /v2/<repo>/referrers/<digest>` and answer `OCI-Subject` (the
    /// distribution-spec 1.1 referrers API); else `404` there, as distribution 2.8 does.
    referrers_api: AtomicBool,
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
                // A push asks for pull and push; a reader for pull only.
                let scope_ok = (query.contains("scope=repository%3Ateam%2Fapp%3Apull%2Cpush")
                    || query.contains("scope=repository%3Ateam%2Fapp%3Apull&")
                    || query.ends_with("scope=repository%3Ateam%2Fapp%3Apull"))
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
            } else if rest.starts_with("referrers/") {
                "referrers"
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
                    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                    let mut headers = vec![("Docker-Content-Digest", d.clone())];
                    if let (Some(subject), true) = (
                        v["subject"]["digest"].as_str(),
                        f.referrers_api.load(Ordering::SeqCst),
                    ) {
                        headers.push(("OCI-Subject", subject.to_string()));
                    }
                    let mut manifests = f.manifests.lock().unwrap();
                    manifests.insert(d.clone(), (ct.clone(), body.clone()));
                    manifests.insert(reference, (ct, body));
                    drop(manifests);
                    respond(rq, 201, &headers, Vec::new());
                }
                ("GET", "manifest") => {
                    let reference = rest.trim_start_matches("manifests/");
                    let found = f.manifests.lock().unwrap().get(reference).cloned();
                    match found {
                        Some((ct, body)) => {
                            let d = sha256(&body);
                            respond(
                                rq,
                                200,
                                &[("Content-Type", ct), ("Docker-Content-Digest", d)],
                                body,
                            )
                        }
                        None => respond(rq, 404, &[], b"MANIFEST_UNKNOWN".to_vec()),
                    }
                }
                ("GET", "blob") => {
                    let d = rest.trim_start_matches("blobs/");
                    match f.blobs.lock().unwrap().get(d).cloned() {
                        Some(b) => respond(rq, 200, &[], b),
                        None => respond(rq, 404, &[], Vec::new()),
                    }
                }
                ("GET", "referrers") if f.referrers_api.load(Ordering::SeqCst) => {
                    let subject = rest.trim_start_matches("referrers/");
                    let mut list: Vec<serde_json::Value> = Vec::new();
                    let manifests = f.manifests.lock().unwrap();
                    for (key, (ct, body)) in manifests.iter() {
                        let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
                        if *key == sha256(body) && v["subject"]["digest"] == subject {
                            list.push(serde_json::json!({
                                "mediaType": ct,
                                "digest": key,
                                "size": body.len(),
                                "artifactType": v["artifactType"],
                                "annotations": v["annotations"],
                            }));
                        }
                    }
                    drop(manifests);
                    let index = serde_json::json!({
                        "schemaVersion": 2,
                        "mediaType": "application/vnd.oci.image.index.v1+json",
                        "manifests": list,
                    });
                    respond(
                        rq,
                        200,
                        &[(
                            "Content-Type",
                            "application/vnd.oci.image.index.v1+json".to_string(),
                        )],
                        serde_json::to_vec(&index).unwrap(),
                    );
                }
                ("GET", "referrers") => respond(rq, 404, &[], b"NOT_FOUND".to_vec()),
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

// ---- the build record and the SBOM travel with the image (referrers) ---------------

const RECORD: &str = "application/vnd.compose.build-record.v1";
const SPDX: &str = "application/spdx+json";
const SIGNATURE: &str = "application/vnd.example.signature.v1";

/// The Python of the PyPI `oras` client (in the venv `.ci/run` installs), if any.
fn oras_python() -> Option<PathBuf> {
    let venv = std::env::var_os("SYFT_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/compose-ci/syft-venv"));
    let py = venv.join("bin/python");
    let ok = Command::new(&py)
        .args(["-c", "import oras.provider"])
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then_some(py)
}

/// With the `oras` client: push a fake signature artifact referring to `subject` and
/// list it under the referrers tag, as a signing tool that knows only the fallback
/// does. Returns the signature manifest's digest.
fn push_signature(py: &Path, dir: &Path, repo: &str, subject: &read::Descriptor) -> String {
    let script = r#"
import hashlib, json, os, sys
import oras.oci, oras.provider
repo, digest, size, media_type, workdir = sys.argv[1:]
os.chdir(workdir)
with open("signature.sig", "w") as f:
    f.write("not really a signature\n")
r = oras.provider.Registry(insecure=True)
r.push(target=repo + ":signature", files=["signature.sig"], disable_path_validation=True,
       subject=oras.oci.Subject(mediaType=media_type, digest=digest, size=int(size)))
host, name = repo.split("/", 1)
got = r.do_request("http://%s/v2/%s/manifests/signature" % (host, name), "GET",
                   headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
raw = got.content
m = json.loads(raw)
sig = "sha256:" + hashlib.sha256(raw).hexdigest()
index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
         "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "digest": sig, "size": len(raw),
                        "artifactType": "application/vnd.example.signature.v1"}]}
put = r.do_request("http://%s/v2/%s/manifests/%s" % (host, name, digest.replace(":", "-")), "PUT",
                   headers={"Content-Type": "application/vnd.oci.image.index.v1+json"},
                   data=json.dumps(index).encode())
assert put.status_code == 201, (put.status_code, put.text)
print(sig)
"#;
    let out = Command::new(py)
        .args(["-c", script, repo, &subject.digest])
        .arg(subject.size.to_string())
        .arg(&subject.media_type)
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "oras push of a signature: {}",
        stderr(&out)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The referrers the image has, read back through `compose::registry` (the reader
/// `compose verify` uses), with the build record's two files.
fn read_record(image: &RegistryImage) -> (Vec<read::Descriptor>, Vec<(String, Vec<u8>)>) {
    let referrers = image.referrers(&image.top().digest).expect("referrers");
    let record = referrers
        .iter()
        .find(|d| d.artifact_type.as_deref() == Some(RECORD))
        .expect("the build record is listed");
    let m: read::Document<read::ImageManifest> =
        read::read_document(image, record, "the build record").unwrap();
    assert_eq!(
        m.content.subject.as_ref().unwrap().digest,
        image.top().digest
    );
    let files = m
        .content
        .layers
        .iter()
        .map(|l| {
            let mut v = read::Verified::new(image.open_blob(&l.digest).unwrap(), &l.digest, l.size);
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut v, &mut bytes).unwrap();
            v.finish().unwrap();
            (
                l.annotations["org.opencontainers.image.title"].clone(),
                bytes,
            )
        })
        .collect();
    (referrers, files)
}

#[test]
fn the_build_record_and_sbom_travel_with_the_image_through_the_referrers_tag() {
    let Some(reg) = Registry::start(None) else {
        return;
    };
    let f = Fixture::new();
    let repo = format!("{}/compose/recorded", reg.host);
    // A build is reproducible: the image's digest is known before it is pushed.
    let plain = build(&f.opts("plain", None)).expect("build");
    let index_bytes =
        std::fs::read(f.dir.join("plain/blobs/sha256").join(&plain.digest[7..])).unwrap();
    let subject = read::Descriptor {
        media_type: "application/vnd.oci.image.index.v1+json".into(),
        digest: plain.digest.clone(),
        size: index_bytes.len() as u64,
        platform: None,
        artifact_type: None,
        annotations: BTreeMap::new(),
    };
    let tag = format!("sha256-{}", &plain.digest[7..]);
    let py = oras_python();
    if py.is_none() {
        println!("SKIPPED (in part): the PyPI oras client is not installed (pip install oras in the venv of .ci/run); no signature pushed first, the record not pulled by oras");
    }
    // An unrelated referrer already there: a signature a signing tool listed under the
    // referrers tag before compose pushes.
    let signature = py
        .as_deref()
        .map(|py| push_signature(py, &f.dir, &repo, &subject));

    let sbom = f.dir.join("image.spdx.json");
    let out = f.cli(
        "layout",
        &[
            "--push",
            &format!("{repo}:v1"),
            "--insecure",
            "--sbom",
            sbom.to_str().unwrap(),
            "--attach-record",
        ],
        &[],
    );
    assert_eq!(
        support::digest_of(&out),
        plain.digest,
        "the attachments change no image digest"
    );
    let err = stderr(&out);
    assert!(
        err.contains(&format!("listed by the referrers tag {tag}")),
        "{err}"
    );
    let layout = f.dir.join("layout");
    assert_eq!(index_digest(&layout), plain.digest);

    // The layout lists the same two artifacts its push attached, after the tagged image.
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let listed = index["manifests"].as_array().unwrap();
    assert_eq!(listed.len(), 3, "{index}");
    assert_eq!(
        listed[0]["annotations"]["org.opencontainers.image.ref.name"],
        "pushfix"
    );
    assert_eq!(listed[0]["digest"], plain.digest.as_str());
    let types: Vec<&str> = listed[1..]
        .iter()
        .map(|d| d["artifactType"].as_str().unwrap())
        .collect();
    assert_eq!(types, [SPDX, RECORD]);
    // Readers of the layout still find the one image: compose check without a tag, and
    // skopeo by the tag.
    let check = Command::new(env!("CARGO_BIN_EXE_compose"))
        .arg("check")
        .arg(&layout)
        .args(["--arch", "amd64"])
        .output()
        .unwrap();
    assert!(check.status.success(), "compose check: {}", stderr(&check));
    if have("skopeo") {
        let out = Command::new("skopeo")
            .args(["inspect", "--raw"])
            .arg(format!("oci:{}:pushfix", layout.display()))
            .output()
            .unwrap();
        assert!(out.status.success(), "skopeo: {}", stderr(&out));
        assert_eq!(sha256(&out.stdout), plain.digest);
    }

    // skopeo reads the referrers tag: the signature kept, the record and the SBOM added,
    // sorted by artifactType.
    if have("skopeo") {
        let raw = skopeo_raw(&format!("{repo}:{tag}"), None);
        let v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        assert_eq!(v["mediaType"], "application/vnd.oci.image.index.v1+json");
        let got: Vec<(String, String)> = v["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["artifactType"].as_str().unwrap().to_string(),
                    d["digest"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let mut want: Vec<(String, String)> = listed[1..]
            .iter()
            .map(|d| {
                (
                    d["artifactType"].as_str().unwrap().to_string(),
                    d["digest"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        if let Some(sig) = &signature {
            want.push((SIGNATURE.into(), sig.clone()));
        }
        want.sort();
        assert_eq!(got, want, "{v}");
        // The record's manifest as skopeo reads it is the layout's blob.
        let record_digest = &listed[2]["digest"].as_str().unwrap().to_string();
        let record = skopeo_raw(&format!("{repo}@{record_digest}"), None);
        assert_eq!(&sha256(&record), record_digest);
    } else {
        println!("SKIPPED (in part): skopeo not installed; the referrers tag not read back");
    }

    // compose's own reader: the referrers through the tag, the files byte for byte.
    let image = RegistryImage::open(
        &ImageRef::parse(&format!("docker://{repo}:v1")).unwrap(),
        true,
        None,
        compose::fetch::Timeouts::default(),
    )
    .expect("open the pushed image");
    assert_eq!(image.top().digest, plain.digest);
    let (referrers, files) = read_record(&image);
    assert_eq!(referrers.len(), 2 + usize::from(signature.is_some()));
    let lock = f.manifest.with_extension("toml.lock");
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap();
    let (manifest_name, lock_name) = (file_name(&f.manifest), file_name(&lock));
    let files: Vec<(String, String)> = files.iter().map(|(n, b)| (n.clone(), text(b))).collect();
    assert_eq!(
        files,
        [
            (
                manifest_name.clone(),
                std::fs::read_to_string(&f.manifest).unwrap()
            ),
            (lock_name.clone(), std::fs::read_to_string(&lock).unwrap()),
        ]
    );
    // The image itself reads like a layout's.
    let listing = read::list(&image, image.top()).unwrap();
    assert_eq!(listing.images.len(), 2);

    // An auditor with only the published image: `compose verify REGISTRY/REPO:TAG` from an
    // empty cache, in a directory without the manifest or the lock, finds the record and
    // rebuilds the same image.
    let audit = f.dir.join("audit");
    std::fs::create_dir_all(&audit).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_compose"))
        .current_dir(&audit)
        .args(["verify", &format!("{repo}:v1"), "--insecure"])
        .arg("--cache")
        .arg(audit.join("cache"))
        .arg("--mirror")
        .arg(f.ws.mirror_arg(UPSTREAM))
        .env("HOME", f.dir.join("home-empty"))
        .env_remove("DOCKER_CONFIG")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "compose verify of the registry image: {said}{}",
        stderr(&out)
    );
    assert!(
        said.contains("linux/amd64: equal") && said.contains("linux/arm64/v8: equal"),
        "{said}"
    );

    // oras (which lists no referrers without the API) pulls the record by its digest.
    if let Some(py) = &py {
        let record = &listed[2]["digest"];
        let pulled = f.dir.join("pulled");
        let out = Command::new(py)
            .args([
                "-c",
                "import sys, oras.provider; print(oras.provider.Registry(insecure=True).pull(target=sys.argv[1], outdir=sys.argv[2]))",
                &format!("{repo}@{}", record.as_str().unwrap()),
                pulled.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "oras pull: {}", stderr(&out));
        assert_eq!(
            std::fs::read_to_string(pulled.join(&lock_name)).unwrap(),
            std::fs::read_to_string(&lock).unwrap()
        );
        assert_eq!(
            std::fs::read_to_string(pulled.join(&manifest_name)).unwrap(),
            std::fs::read_to_string(&f.manifest).unwrap()
        );
    }

    // Pushing again (with no SBOM this time): the referrers tag keeps everything it
    // listed, the SBOM of the first push and the signature included.
    let before = have("skopeo").then(|| skopeo_raw(&format!("{repo}:{tag}"), None));
    let out = f.cli(
        "again",
        &["--push", &format!("{repo}:v2"), "--insecure"],
        &[],
    );
    assert_eq!(support::digest_of(&out), plain.digest);
    // Without --attach-record the layout is as a build without a push writes it.
    assert_eq!(
        snapshot(&f.dir.join("again")),
        snapshot(&f.dir.join("plain"))
    );
    if let Some(before) = before {
        assert_eq!(skopeo_raw(&format!("{repo}:{tag}"), None), before);
    }
    let (referrers, _) = read_record(&image);
    assert_eq!(referrers.len(), 2 + usize::from(signature.is_some()));
}

#[test]
fn a_registry_with_the_referrers_api_tracks_the_subject_itself() {
    let (fake, base, handle) = fake_registry();
    fake.referrers_api.store(true, Ordering::SeqCst);
    let f = Fixture::new();
    let image = format!("{base}/team/app:latest");
    let creds = Credentials {
        user: "compose".into(),
        password: "pw".into(),
        from: "the test".into(),
    };
    let mut p = push_opts(&image, true);
    p.credentials = Some(creds.clone());
    let mut opts = f.opts("layout", Some(p));
    opts.sbom = Some(f.dir.join("image.spdx.json"));
    let r = build(&opts).expect("push");
    let rep = r.push.unwrap();
    println!("{rep}");
    assert_eq!(rep_referrers(&rep), [RECORD, SPDX]);
    assert_eq!(
        rep.referrers_via.as_deref(),
        Some("the registry's referrers API")
    );
    // No referrers tag: the registry lists them.
    assert!(!fake
        .manifests
        .lock()
        .unwrap()
        .keys()
        .any(|k| k.starts_with("sha256-")));

    let reader = RegistryImage::open(
        &ImageRef::parse(&format!("{base}/team/app@{}", r.digest)).unwrap(),
        true,
        Some(creds),
        compose::fetch::Timeouts::default(),
    )
    .expect("open by digest");
    let (referrers, files) = read_record(&reader);
    let mut types: Vec<&str> = referrers
        .iter()
        .filter_map(|d| d.artifact_type.as_deref())
        .collect();
    types.sort();
    assert_eq!(types, [SPDX, RECORD]);
    assert_eq!(files[0].0, file_name(&f.manifest));
    assert!(files[0].1 == std::fs::read(&f.manifest).unwrap());
    // The SBOM is the document --sbom wrote.
    let sbom = referrers
        .iter()
        .find(|d| d.artifact_type.as_deref() == Some(SPDX))
        .unwrap();
    let m: read::Document<read::ImageManifest> =
        read::read_document(&reader, sbom, "the SBOM").unwrap();
    assert_eq!(
        m.content.layers[0].annotations["org.opencontainers.image.title"], "pushfix.spdx.json",
        "named after the image"
    );
    let mut v = read::Verified::new(
        reader.open_blob(&m.content.layers[0].digest).unwrap(),
        &m.content.layers[0].digest,
        m.content.layers[0].size,
    );
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut v, &mut bytes).unwrap();
    v.finish().unwrap();
    assert!(bytes == std::fs::read(f.dir.join("image.spdx.json")).unwrap());
    fake.stop.store(true, Ordering::SeqCst);
    handle.join().unwrap();
}

#[test]
fn a_referrers_tag_that_is_not_an_index_is_refused_and_a_missing_image_named() {
    let (fake, base, handle) = fake_registry();
    let f = Fixture::new();
    let plain = build(&f.opts("plain", None)).expect("build");
    let tag = format!("sha256-{}", &plain.digest[7..]);
    // Something else under the referrers tag: an image manifest, not an index.
    fake.manifests.lock().unwrap().insert(
        tag.clone(),
        (
            "application/vnd.oci.image.manifest.v1+json".into(),
            br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#
                .to_vec(),
        ),
    );
    let creds = Credentials {
        user: "compose".into(),
        password: "pw".into(),
        from: "the test".into(),
    };
    let mut p = push_opts(&format!("{base}/team/app:v1"), true);
    p.credentials = Some(creds.clone());
    let e = build(&f.opts("layout", Some(p))).unwrap_err().to_string();
    assert_eq!(
        e,
        format!("the referrers tag {tag} cannot be updated: it is not an OCI image index; it must hold an OCI image index of the image's referrers")
    );
    assert!(
        !f.dir.join("layout").exists(),
        "a failed push writes nothing"
    );

    // The reader: no such tag, and a reference that does not parse.
    let missing = format!("{base}/team/app:nope");
    let e = RegistryImage::open(
        &ImageRef::parse(&missing).unwrap(),
        true,
        Some(creds),
        compose::fetch::Timeouts::default(),
    )
    .err()
    .expect("no such image")
    .to_string();
    assert_eq!(
        e,
        format!("{missing}: the registry has no such image (HTTP 404)")
    );
    let e = ImageRef::parse("127.0.0.1:5000/app@sha256:00").unwrap_err();
    assert!(e.is_usage());
    assert_eq!(
        e.to_string(),
        "127.0.0.1:5000/app@sha256:00: `sha256:00` is not a sha256:<64 lowercase hex> digest; expected [docker://]REGISTRY/REPOSITORY[:TAG|@DIGEST], e.g. 127.0.0.1:5000/team/run-image:1.0"
    );
    fake.stop.store(true, Ordering::SeqCst);
    handle.join().unwrap();
}

#[test]
fn attach_record_puts_the_record_in_the_layout_and_the_oci_archive() {
    let f = Fixture::new();
    let plain = build(&f.opts("plain", None)).expect("build");
    let sbom = f.dir.join("image.spdx.json");
    let mut opts = f.opts("recorded", None);
    opts.attach_record = true;
    opts.sbom = Some(sbom.clone());
    let r = build(&opts).expect("build with --attach-record");
    assert_eq!(r.digest, plain.digest, "the image's digest does not change");
    let layout = f.dir.join("recorded");
    // Every blob of the plain layout is there, unchanged; index.json lists the image first.
    let (with, without) = (snapshot(&layout), snapshot(&f.dir.join("plain")));
    for (path, bytes) in &without {
        if path != Path::new("index.json") {
            assert!(with.get(path) == Some(bytes), "{} changed", path.display());
        }
    }
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let plain_index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(f.dir.join("plain/index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0], plain_index["manifests"][0]);
    // The referrers, read back through the one reader of layouts.
    let reader = read::Layout::open(&layout).unwrap();
    let listed = reader.index().unwrap().manifests;
    assert_eq!(listed.len(), 3);
    let mut titles = Vec::new();
    for d in &listed[1..] {
        let m: read::Document<read::ImageManifest> =
            read::read_document(&reader, d, "artifact").unwrap();
        assert_eq!(m.content.subject.as_ref().unwrap().digest, r.digest);
        assert_eq!(m.content.artifact_type, d.artifact_type);
        assert_eq!(
            d.annotations["org.opencontainers.image.created"],
            "1970-01-01T00:00:00Z"
        );
        for l in &m.content.layers {
            let mut v =
                read::Verified::new(reader.open_blob(&l.digest).unwrap(), &l.digest, l.size);
            std::io::copy(&mut v, &mut std::io::sink()).unwrap();
            v.finish().unwrap();
            titles.push(l.annotations["org.opencontainers.image.title"].clone());
        }
    }
    let lock = f.manifest.with_extension("toml.lock");
    assert_eq!(
        titles,
        [
            "pushfix.spdx.json".to_string(),
            file_name(&f.manifest),
            file_name(&lock)
        ]
    );
    // The same build gives the same record: a second layout is byte-identical.
    let mut again = f.opts("recorded-again", None);
    again.attach_record = true;
    again.sbom = Some(f.dir.join("again.spdx.json"));
    build(&again).unwrap();
    assert_eq!(snapshot(&f.dir.join("recorded-again")), with);

    // An oci-archive carries the same: its index.json is the layout's.
    let mut archive = f.opts("image.tar", None);
    archive.format = compose::output::Format::OciArchive;
    archive.attach_record = true;
    archive.sbom = Some(f.dir.join("archive.spdx.json"));
    let a = build(&archive).unwrap();
    assert_eq!(a.digest, plain.digest);
    let out = Command::new("tar")
        .arg("-xOf")
        .arg(f.dir.join("image.tar"))
        .arg("index.json")
        .output()
        .unwrap();
    assert!(out.status.success(), "tar: {}", stderr(&out));
    assert_eq!(
        out.stdout,
        std::fs::read(layout.join("index.json")).unwrap()
    );
    if have("skopeo") {
        let out = Command::new("skopeo")
            .args(["inspect", "--raw"])
            .arg(format!(
                "oci-archive:{}:pushfix",
                f.dir.join("image.tar").display()
            ))
            .output()
            .unwrap();
        assert!(out.status.success(), "skopeo: {}", stderr(&out));
        assert_eq!(sha256(&out.stdout), plain.digest);
    }
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
