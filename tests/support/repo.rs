//! A signed apt repository in a temporary directory, laid out like archive.ubuntu.com.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use md5::Md5;
use sha2::{Digest, Sha256, Sha512};

use super::deb::{build_deb, DebSpec};
use super::key::{clearsign_with, detach_sign_with, TestKey};
use super::rfc2822;

/// One suite (`dists/<suite>`) of the repository.
#[derive(Clone, Debug)]
pub struct SuiteSpec {
    /// e.g. "noble" or "noble-updates"
    pub suite: String,
    pub components: Vec<String>,
    pub archs: Vec<String>,
    /// (component, package); `Architecture: all` packages appear in every
    /// `binary-<arch>/Packages` of their component.
    pub packages: Vec<(String, DebSpec)>,
}

impl SuiteSpec {
    pub fn new(suite: &str, components: &[&str], archs: &[&str]) -> Self {
        SuiteSpec {
            suite: suite.to_string(),
            components: components.iter().map(|s| s.to_string()).collect(),
            archs: archs.iter().map(|s| s.to_string()).collect(),
            packages: Vec::new(),
        }
    }

    pub fn package(mut self, component: &str, deb: DebSpec) -> Self {
        self.packages.push((component.to_string(), deb));
        self
    }
}

/// Which `Packages` variants to publish (and list in Release).
#[derive(Clone, Copy, Debug)]
pub struct IndexVariants {
    pub plain: bool,
    pub gz: bool,
    /// two concatenated xz streams, as Ubuntu publishes
    pub xz: bool,
}

impl IndexVariants {
    pub const ALL: IndexVariants = IndexVariants {
        plain: true,
        gz: true,
        xz: true,
    };
    pub const XZ_ONLY: IndexVariants = IndexVariants {
        plain: false,
        gz: false,
        xz: true,
    };
    pub const GZ_ONLY: IndexVariants = IndexVariants {
        plain: false,
        gz: true,
        xz: false,
    };
    pub const PLAIN_ONLY: IndexVariants = IndexVariants {
        plain: true,
        gz: false,
        xz: false,
    };
}

/// A package as published: the facts of its Packages stanza.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishedDeb {
    pub suite: String,
    pub component: String,
    pub name: String,
    pub version: String,
    /// `Architecture:` of the package ("all" included)
    pub arch: String,
    /// `Filename:` relative to the repository root (pool/main/libf/libfoo/...)
    pub filename: String,
    pub size: u64,
    pub sha256: String,
    pub sha512: String,
    pub md5sum: String,
    /// the stanza text as it appears in Packages (ends with "\n", no blank line)
    pub stanza: String,
}

/// (name, version, arch) -> Packages stanza, in index order.
type Stanzas = BTreeMap<(String, String, String), String>;

pub struct Repo {
    pub root: PathBuf,
    _dir: tempfile::TempDir,
    key: TestKey,
    published: Vec<PublishedDeb>,
}

/// pool directory of a source package: `lib` names use four letters (`libf/libfoo`).
pub fn pool_prefix(name: &str) -> String {
    if name.starts_with("lib") && name.len() > 3 {
        name[..4].to_string()
    } else {
        name[..1].to_string()
    }
}

fn hex_md5(b: &[u8]) -> String {
    hex::encode(Md5::digest(b))
}
fn hex_sha256(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}
fn hex_sha512(b: &[u8]) -> String {
    hex::encode(Sha512::digest(b))
}

/// Packages stanza: control fields, then Filename/Size/MD5sum/SHA256/SHA512, then the
/// Description (the order archive.ubuntu.com uses).
fn stanza(spec: &DebSpec, filename: &str, deb: &[u8]) -> String {
    let control = spec.control_text();
    let (head, desc) = control
        .split_once("Description:")
        .expect("control has Description");
    format!(
        "{head}Filename: {filename}\nSize: {}\nMD5sum: {}\nSHA256: {}\nSHA512: {}\nDescription:{desc}",
        deb.len(),
        hex_md5(deb),
        hex_sha256(deb),
        hex_sha512(deb)
    )
}

/// Splits Packages text at the stanza boundary nearest the middle.
fn split_stanzas(text: &str) -> (&str, &str) {
    let mid = text.len() / 2;
    let mut best: usize = 0;
    let mut pos = 0;
    while let Some(i) = text[pos..].find("\n\n") {
        let cut = pos + i + 2;
        if best == 0 || cut.abs_diff(mid) < best.abs_diff(mid) {
            best = cut;
        }
        pos = cut;
    }
    if best == 0 {
        best = text.len();
    }
    text.split_at(best)
}

fn xz(data: &[u8]) -> Vec<u8> {
    let mut e = liblzma::write::XzEncoder::new(Vec::new(), 6);
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// `Packages.xz` as Ubuntu publishes it: two xz streams, concatenated.
pub fn xz_two_streams(text: &[u8]) -> Vec<u8> {
    let s = std::str::from_utf8(text).expect("Packages is UTF-8");
    let (a, b) = split_stanzas(s);
    let mut out = xz(a.as_bytes());
    out.extend(xz(b.as_bytes()));
    out
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::new(9));
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// Release text for `suite`, listing `files` (path relative to dists/<suite>, bytes).
pub fn release_text(
    spec: &SuiteSpec,
    date: SystemTime,
    valid_until: Option<SystemTime>,
    files: &[(String, Vec<u8>)],
) -> String {
    let codename = spec.suite.split('-').next().unwrap_or(&spec.suite);
    let mut s = String::new();
    s.push_str("Origin: Compose-Test\nLabel: Compose-Test\n");
    s.push_str(&format!("Suite: {}\n", spec.suite));
    s.push_str("Version: 24.04\n");
    s.push_str(&format!("Codename: {codename}\n"));
    s.push_str(&format!("Date: {}\n", rfc2822(date)));
    if let Some(v) = valid_until {
        s.push_str(&format!("Valid-Until: {}\n", rfc2822(v)));
    }
    s.push_str(&format!("Architectures: {}\n", spec.archs.join(" ")));
    s.push_str(&format!("Components: {}\n", spec.components.join(" ")));
    s.push_str(&format!(
        "Description: compose test repository {}\n",
        spec.suite
    ));
    s.push_str("MD5Sum:\n");
    for (p, b) in files {
        s.push_str(&format!(" {} {:>16} {p}\n", hex_md5(b), b.len()));
    }
    s.push_str("SHA256:\n");
    for (p, b) in files {
        s.push_str(&format!(" {} {:>16} {p}\n", hex_sha256(b), b.len()));
    }
    s
}

impl Repo {
    pub fn build(key: &TestKey, suites: &[SuiteSpec], variants: IndexVariants) -> Repo {
        let dir = tempfile::Builder::new()
            .prefix("compose-fixture-repo-")
            .tempdir()
            .expect("tempdir");
        let root = dir.path().to_path_buf();
        let mut repo = Repo {
            root,
            _dir: dir,
            key: TestKey {
                cert: key.cert.clone(),
            },
            published: Vec::new(),
        };
        let mut pool: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let now = SystemTime::now();
        for spec in suites {
            assert!(!spec.archs.is_empty(), "suite {} has no archs", spec.suite);
            // (component, arch) -> stanzas sorted by (name, version, arch)
            let mut indexes: BTreeMap<(String, String), Stanzas> = BTreeMap::new();
            for comp in &spec.components {
                for arch in &spec.archs {
                    indexes.insert((comp.clone(), arch.clone()), BTreeMap::new());
                }
            }
            for (comp, deb) in &spec.packages {
                assert!(
                    spec.components.contains(comp),
                    "{}: component {comp} not in suite {}",
                    deb.name,
                    spec.suite
                );
                let bytes = build_deb(deb);
                let filename = format!(
                    "pool/{comp}/{}/{}/{}",
                    pool_prefix(&deb.name),
                    deb.name,
                    deb.file_name()
                );
                if let Some(prev) = pool.get(&filename) {
                    assert!(
                        prev == &bytes,
                        "{filename}: two different packages with the same file name"
                    );
                } else {
                    pool.insert(filename.clone(), bytes.clone());
                    repo.write(&filename, &bytes);
                }
                let st = stanza(deb, &filename, &bytes);
                let targets: Vec<String> = if deb.arch == "all" {
                    spec.archs.clone()
                } else {
                    assert!(
                        spec.archs.contains(&deb.arch),
                        "{}: arch {} not in suite {}",
                        deb.name,
                        deb.arch,
                        spec.suite
                    );
                    vec![deb.arch.clone()]
                };
                for a in targets {
                    indexes.get_mut(&(comp.clone(), a)).unwrap().insert(
                        (deb.name.clone(), deb.version.clone(), deb.arch.clone()),
                        st.clone(),
                    );
                }
                repo.published.push(PublishedDeb {
                    suite: spec.suite.clone(),
                    component: comp.clone(),
                    name: deb.name.clone(),
                    version: deb.version.clone(),
                    arch: deb.arch.clone(),
                    filename: filename.clone(),
                    size: bytes.len() as u64,
                    sha256: hex_sha256(&bytes),
                    sha512: hex_sha512(&bytes),
                    md5sum: hex_md5(&bytes),
                    stanza: st,
                });
            }
            let mut files: Vec<(String, Vec<u8>)> = Vec::new();
            for ((comp, arch), stanzas) in &indexes {
                // every stanza is followed by a blank line, as apt-ftparchive writes them
                let text: String = stanzas.values().map(|s| format!("{s}\n")).collect();
                let base = format!("{comp}/binary-{arch}/Packages");
                if variants.plain {
                    files.push((base.clone(), text.clone().into_bytes()));
                }
                if variants.gz {
                    files.push((format!("{base}.gz"), gzip(text.as_bytes())));
                }
                if variants.xz {
                    files.push((format!("{base}.xz"), xz_two_streams(text.as_bytes())));
                }
            }
            files.sort_by(|a, b| a.0.cmp(&b.0));
            for (p, b) in &files {
                repo.write(&format!("dists/{}/{p}", spec.suite), b);
            }
            let release = release_text(spec, now, None, &files);
            repo.write(&format!("dists/{}/Release", spec.suite), release.as_bytes());
            repo.resign(&spec.suite, key);
        }
        repo
    }

    /// Absolute path of a repository-relative path.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel.trim_start_matches('/'))
    }

    pub fn read(&self, rel: &str) -> Vec<u8> {
        std::fs::read(self.path(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
    }

    /// Writes (or overwrites) a file, creating parent directories.
    pub fn write(&self, rel: &str, bytes: &[u8]) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
    }

    /// Flips (xor 0x01) the byte at `offset`; offsets past the end panic.
    pub fn flip_byte(&self, rel: &str, offset: usize) {
        let mut b = self.read(rel);
        assert!(offset < b.len(), "{rel}: offset {offset} >= {}", b.len());
        b[offset] ^= 0x01;
        self.write(rel, &b);
    }

    /// Removes a file (a listed index that is not served, as Ubuntu does for plain
    /// `Packages`: `repo.remove("dists/noble/main/binary-amd64/Packages")`).
    pub fn remove(&self, rel: &str) {
        std::fs::remove_file(self.path(rel)).unwrap_or_else(|e| panic!("remove {rel}: {e}"));
    }

    /// Re-signs `dists/<suite>/Release` as it is now on disk: writes InRelease
    /// (clearsigned, SHA512) and Release.gpg (detached, armored) with `key`.
    pub fn resign(&self, suite: &str, key: &TestKey) {
        self.resign_with(suite, &[key]);
    }

    /// Like [`Repo::resign`] with one signature per key (archives sign with several).
    pub fn resign_with(&self, suite: &str, keys: &[&TestKey]) {
        let release = self.read(&format!("dists/{suite}/Release"));
        let hash = sequoia_openpgp::types::HashAlgorithm::SHA512;
        self.write(
            &format!("dists/{suite}/InRelease"),
            &clearsign_with(keys, &release, hash),
        );
        self.write(
            &format!("dists/{suite}/Release.gpg"),
            &detach_sign_with(keys, &release, hash),
        );
    }

    /// The key the repository was built with.
    pub fn key(&self) -> &TestKey {
        &self.key
    }

    /// Sets (`Some`) or removes (`None`) a single-line field of `dists/<suite>/Release`
    /// (inserted after `Date:` when absent) and re-signs with the build key.
    pub fn set_release_field(&self, suite: &str, field: &str, value: Option<&str>) {
        let rel = format!("dists/{suite}/Release");
        let text = String::from_utf8(self.read(&rel)).unwrap();
        let prefix = format!("{field}:");
        let present = text.lines().any(|l| l.starts_with(&prefix));
        let mut out = String::new();
        for line in text.lines() {
            if line.starts_with(&prefix) {
                if let Some(v) = value {
                    out.push_str(&format!("{field}: {v}\n"));
                }
                continue;
            }
            out.push_str(line);
            out.push('\n');
            if line.starts_with("Date:") && !present {
                if let Some(v) = value {
                    out.push_str(&format!("{field}: {v}\n"));
                }
            }
        }
        self.write(&rel, out.as_bytes());
        self.resign(suite, &self.key);
    }

    /// Sets `Valid-Until` (e.g. an hour ago, to test expiry) and re-signs.
    pub fn set_valid_until(&self, suite: &str, when: SystemTime) {
        self.set_release_field(suite, "Valid-Until", Some(&rfc2822(when)));
    }

    /// Recomputes the MD5Sum/SHA256 lists of Release from the index files now on disk
    /// (files that were listed and removed stay listed with their old hash) and
    /// re-signs with the build key: a consistent chain above an edited Packages file.
    pub fn rehash_release(&self, suite: &str) {
        let rel = format!("dists/{suite}/Release");
        let text = String::from_utf8(self.read(&rel)).unwrap();
        let mut out = String::new();
        let mut section = "";
        for line in text.lines() {
            if !line.starts_with(' ') {
                section = if line == "MD5Sum:" {
                    "md5"
                } else if line == "SHA256:" {
                    "sha256"
                } else {
                    ""
                };
                out.push_str(line);
                out.push('\n');
                continue;
            }
            let parts: Vec<&str> = line.split_whitespace().collect();
            let path = parts[2];
            let file = self.path(&format!("dists/{suite}/{path}"));
            match std::fs::read(&file) {
                Ok(b) if !section.is_empty() => {
                    let h = if section == "md5" {
                        hex_md5(&b)
                    } else {
                        hex_sha256(&b)
                    };
                    out.push_str(&format!(" {h} {:>16} {path}\n", b.len()));
                }
                _ => {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        self.write(&rel, out.as_bytes());
        self.resign(suite, &self.key);
    }

    /// Publishes every index file that `dists/<suite>/Release` lists and that is on disk
    /// also under its SHA256 (`<dir>/by-hash/SHA256/<hex>`, as Ubuntu and Debian do), and
    /// says `Acquire-By-Hash: yes` in Release (re-signed). Copies already there stay:
    /// after a [`Repo::publish_from`], the by-hash copies of both versions are served.
    pub fn add_by_hash(&self, suite: &str) {
        let rel = format!("dists/{suite}/Release");
        let text = String::from_utf8(self.read(&rel)).unwrap();
        let listed = text
            .lines()
            .skip_while(|l| *l != "SHA256:")
            .skip(1)
            .take_while(|l| l.starts_with(' '));
        for line in listed {
            let path = line.split_whitespace().nth(2).unwrap();
            let file = format!("dists/{suite}/{path}");
            let Ok(bytes) = std::fs::read(self.path(&file)) else {
                continue;
            };
            let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
            self.write(
                &format!("dists/{suite}/{dir}/by-hash/SHA256/{}", hex_sha256(&bytes)),
                &bytes,
            );
        }
        self.set_release_field(suite, "Acquire-By-Hash", Some("yes"));
    }

    /// Publishes `newer` over this repository, as a mirror sync does: every file of
    /// `newer` (pool, indexes, by-hash copies, Release, InRelease, Release.gpg) is
    /// written here, each by a rename; files only this repository has (older pool
    /// files, older by-hash copies) stay.
    pub fn publish_from(&self, newer: &Repo) {
        let mut files = Vec::new();
        find_files(&newer.root, &mut files);
        files.sort();
        for file in files {
            let rel = file.strip_prefix(&newer.root).unwrap();
            let to = self.root.join(rel);
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            let tmp = to.with_extension("publishing");
            std::fs::copy(&file, &tmp).unwrap();
            std::fs::rename(&tmp, &to).unwrap();
        }
    }

    /// The text of `base` (`dists/<suite>/<comp>/binary-<arch>/Packages`), decoded from
    /// whichever variant is on disk (plain, `.gz`, `.xz`).
    pub fn packages_text(&self, base: &str) -> String {
        use std::io::Read;
        let mut text = String::new();
        if self.path(base).exists() {
            text = String::from_utf8(self.read(base)).unwrap();
        } else if self.path(&format!("{base}.gz")).exists() {
            flate2::read::MultiGzDecoder::new(&self.read(&format!("{base}.gz"))[..])
                .read_to_string(&mut text)
                .unwrap();
        } else {
            liblzma::read::XzDecoder::new_multi_decoder(&self.read(&format!("{base}.xz"))[..])
                .read_to_string(&mut text)
                .unwrap();
        }
        text
    }

    /// Writes `text` as every variant of `base` that is on disk (Release is not touched).
    fn write_packages(&self, base: &str, text: &str) {
        if self.path(base).exists() {
            self.write(base, text.as_bytes());
        }
        let gz = format!("{base}.gz");
        if self.path(&gz).exists() {
            self.write(&gz, &gzip(text.as_bytes()));
        }
        let xz = format!("{base}.xz");
        if self.path(&xz).exists() {
            self.write(&xz, &xz_two_streams(text.as_bytes()));
        }
    }

    /// Rewrites `dists/<suite>/<component>/binary-<arch>/Packages` (every variant on
    /// disk) as `edit` makes its text, then rehashes and re-signs Release: a consistent,
    /// signed chain above a hostile index (a compromised archive).
    pub fn edit_packages(
        &self,
        suite: &str,
        component: &str,
        arch: &str,
        edit: impl FnOnce(&str) -> String,
    ) {
        let base = format!("dists/{suite}/{component}/binary-{arch}/Packages");
        let text = self.packages_text(&base);
        self.write_packages(&base, &edit(&text));
        self.rehash_release(suite);
    }

    /// Replaces the published `.deb` of `name` for `arch` with `bytes`, updates its
    /// Size and hashes in every index that lists it and re-signs: the signed chain then
    /// vouches for these bytes (a hostile package from a compromised archive).
    pub fn replace_deb(&mut self, name: &str, arch: &str, bytes: &[u8]) {
        let filename = self.package(name, arch).filename;
        self.write(&filename, bytes);
        let (size, md5, sha256, sha512) = (
            bytes.len() as u64,
            hex_md5(bytes),
            hex_sha256(bytes),
            hex_sha512(bytes),
        );
        let listed = format!("Filename: {filename}");
        let mut bases = Vec::new();
        find_indexes(&self.path("dists"), &mut bases);
        let mut suites = std::collections::BTreeSet::new();
        for base in bases {
            let rel = base
                .strip_prefix(&self.root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let text = self.packages_text(&rel);
            if !text.lines().any(|l| l == listed) {
                continue;
            }
            let stanzas: Vec<String> = text
                .split_inclusive("\n\n")
                .map(|st| {
                    if !st.lines().any(|l| l == listed) {
                        return st.to_string();
                    }
                    st.split_inclusive('\n')
                        .map(|l| match l.split_once(": ") {
                            Some(("Size", _)) => format!("Size: {size}\n"),
                            Some(("MD5sum", _)) => format!("MD5sum: {md5}\n"),
                            Some(("SHA256", _)) => format!("SHA256: {sha256}\n"),
                            Some(("SHA512", _)) => format!("SHA512: {sha512}\n"),
                            _ => l.to_string(),
                        })
                        .collect()
                })
                .collect();
            self.write_packages(&rel, &stanzas.concat());
            // dists/<suite>/<comp>/binary-<arch>/Packages
            suites.insert(rel.split('/').nth(1).unwrap().to_string());
        }
        for suite in suites {
            self.rehash_release(&suite);
        }
        for p in self.published.iter_mut().filter(|p| p.filename == filename) {
            p.size = size;
            p.md5sum = md5.clone();
            p.sha256 = sha256.clone();
            p.sha512 = sha512.clone();
        }
    }

    /// Every published package (one entry per suite it is in).
    pub fn packages(&self) -> &[PublishedDeb] {
        &self.published
    }

    /// The package `name` as seen from `binary-<arch>` (an `all` package matches any
    /// arch). Panics when absent or when several suites/versions match.
    pub fn package(&self, name: &str, arch: &str) -> PublishedDeb {
        let hits: Vec<&PublishedDeb> = self
            .published
            .iter()
            .filter(|p| p.name == name && (p.arch == arch || p.arch == "all" || arch == "all"))
            .collect();
        match hits.as_slice() {
            [one] => (*one).clone(),
            [] => panic!("fixture repository has no package {name} for {arch}"),
            many if many.iter().all(|p| p.filename == many[0].filename) => many[0].clone(),
            _ => panic!("{name}/{arch} is in several suites or versions: use package_in"),
        }
    }

    /// The package `name` for `arch` in one suite.
    pub fn package_in(&self, suite: &str, name: &str, arch: &str) -> PublishedDeb {
        self.published
            .iter()
            .find(|p| p.suite == suite && p.name == name && (p.arch == arch || p.arch == "all"))
            .cloned()
            .unwrap_or_else(|| panic!("no package {name}/{arch} in suite {suite}"))
    }

    /// `dists/<suite>` as a path, for convenience.
    pub fn dists(&self, suite: &str) -> PathBuf {
        self.path(&format!("dists/{suite}"))
    }

    /// Starts an HTTP server on 127.0.0.1 serving this repository.
    pub fn serve(&self) -> super::server::Server {
        super::server::Server::serve_dir(&self.root)
    }
}

/// Every file under `dir`, recursively.
fn find_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            find_files(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Every `Packages` index under `dir` (the path without a compression suffix, once).
fn find_indexes(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            find_indexes(&p, out);
            continue;
        }
        let name = p.file_name().unwrap().to_string_lossy();
        if ["Packages", "Packages.gz", "Packages.xz"].contains(&name.as_ref()) {
            let base = p.with_file_name("Packages");
            if !out.contains(&base) {
                out.push(base);
            }
        }
    }
}

impl AsRef<Path> for Repo {
    fn as_ref(&self) -> &Path {
        &self.root
    }
}
