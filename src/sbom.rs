//! `--sbom FILE`: an SPDX 2.3 JSON document of the image.
//!
//! The image is one package (`SPDXRef-Image`, version = the digest `index.json` points
//! to, purpose `CONTAINER`); each Debian package of each architecture is a package with
//! its URL, the SHA256 of its `.deb`, a `pkg:deb` purl and the licence its DEP-5
//! copyright file declares for `Files: *`; each regular file of each architecture's tree
//! is a file with SHA1 and SHA256, contained by the package it came from (or by the image
//! when a generator made it). Deterministic: creation time = the image epoch, namespace
//! from the name and digest, everything sorted, canonical JSON. The same module makes the
//! document embedded in each architecture's tree ([`in_image_document`], for
//! `crate::rootfs::generate`). A [`Document`] is written as it is serialised, piece by
//! piece, so its memory is what [`SbomArch`] holds (a path and two hashes per file), not
//! a JSON tree of every file.
//!
//! It reads only what [`SbomArch::collect`] takes from a tree and the resolved packages:
//! never the host or the network. [`write()`] replaces the file through [`crate::atomic`].

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Write};
use std::path::Path;

use canon_json::CanonJsonSerialize;
use serde_json::{json, Value};
use sha1::{Digest, Sha1};
use sha2::Sha256;

use crate::arch::Arch;
use crate::oci::rfc3339;
use crate::repo::Resolved;
use crate::rootfs::tree::{NodeKind, Tree};

/// Why an SBOM could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SbomError {
    /// Reading or writing the spool, or serialising or writing the document, failed.
    #[error("SBOM: {context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The embedded document could not be added to the tree (a conflict at its path).
    #[error("{0}")]
    Tree(String),
}

pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> SbomError {
    let context = context.into();
    move |source| SbomError::Io { context, source }
}

/// One regular file of an architecture's tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SbomFile {
    /// Absolute image path.
    pub path: String,
    /// SHA-256 of the content.
    pub sha256: [u8; 32],
    /// SHA-1 of the content (SPDX requires it).
    pub sha1: [u8; 20],
    /// The package name, or a generator's name.
    pub origin: String,
}

/// What the SBOM needs of one architecture, collected before its tree is dropped.
#[derive(Debug, Clone)]
pub struct SbomArch {
    /// The architecture.
    pub arch: Arch,
    /// Its packages, in the order given.
    pub packages: Vec<Resolved>,
    /// Every regular file of its tree, sorted by path.
    pub files: Vec<SbomFile>,
    /// `ID` and `VERSION_ID` of the image's os-release, when it has one.
    pub os_release: Option<(String, Option<String>)>,
    /// Package name → the `License:` of its DEP-5 copyright's `Files: *` paragraph.
    pub licenses: BTreeMap<String, String>,
}

impl SbomArch {
    /// Hash every regular file of `tree` with SHA1 (SPDX requires it; the tree already
    /// has SHA256) and read os-release and the packages' copyright files.
    pub fn collect(arch: Arch, packages: &[Resolved], tree: &Tree) -> Result<SbomArch, SbomError> {
        let mut files = Vec::new();
        for (path, node) in tree.iter() {
            if let NodeKind::File(content) = &node.kind {
                let mut sha1 = Sha1::new();
                let mut reader = tree.spool.reader(content);
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = reader
                        .read(&mut buf)
                        .map_err(io_err(format!("reading {path} from the spool")))?;
                    if n == 0 {
                        break;
                    }
                    sha1.update(&buf[..n]);
                }
                files.push(SbomFile {
                    path: path.clone(),
                    sha256: content.sha256,
                    sha1: sha1.finalize().into(),
                    origin: node.origin.clone(),
                });
            }
        }
        let text = |path: &str| -> Option<String> {
            match &tree.get(path)?.kind {
                NodeKind::File(c) => tree
                    .spool
                    .read_all(c)
                    .ok()
                    .map(|b| String::from_utf8_lossy(&b).into_owned()),
                _ => None,
            }
        };
        let os_release = ["/etc/os-release", "/usr/lib/os-release"]
            .iter()
            .find_map(|p| text(p))
            .and_then(|t| parse_os_release(&t));
        let licenses = packages
            .iter()
            .filter_map(|p| {
                let t = text(&format!("/usr/share/doc/{}/copyright", p.name))?;
                Some((p.name.clone(), dep5_license(&t)?))
            })
            .collect();
        Ok(SbomArch {
            arch,
            packages: packages.to_vec(),
            files,
            os_release,
            licenses,
        })
    }
}

/// `ID` and `VERSION_ID` (unquoted) of an os-release file.
pub fn parse_os_release(text: &str) -> Option<(String, Option<String>)> {
    let mut id = None;
    let mut version = None;
    for line in text.lines() {
        if let Some((k, v)) = line.split_once('=') {
            let v = v.trim().trim_matches('"').trim_matches('\'').to_string();
            match k.trim() {
                "ID" if !v.is_empty() => id = Some(v),
                "VERSION_ID" if !v.is_empty() => version = Some(v),
                _ => {}
            }
        }
    }
    Some((id?, version))
}

/// The `License:` short name of the `Files: *` paragraph of a machine-readable (DEP-5)
/// copyright file; `None` when the file is not DEP-5 or has no such paragraph.
pub fn dep5_license(text: &str) -> Option<String> {
    let mut paragraphs = text.split("\n\n").map(str::trim).filter(|p| !p.is_empty());
    let header = paragraphs.next()?;
    let format = field(header, "Format")?;
    if !format.contains("copyright-format") {
        return None;
    }
    paragraphs
        .filter(|p| field(p, "Files").is_some_and(|f| f.split_whitespace().eq(["*"])))
        .find_map(|p| field(p, "License"))
        .filter(|l| !l.is_empty())
}

/// The first line of a deb822 field.
fn field(paragraph: &str, name: &str) -> Option<String> {
    paragraph.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (!l.starts_with([' ', '\t']) && k.eq_ignore_ascii_case(name)).then(|| v.trim().to_string())
    })
}

/// A DEP-5 licence name as an SPDX identifier, when it has a known one.
fn spdx_id(name: &str) -> Option<&'static str> {
    Some(match name.to_ascii_lowercase().as_str() {
        "gpl-1" => "GPL-1.0-only",
        "gpl-1+" => "GPL-1.0-or-later",
        "gpl-2" => "GPL-2.0-only",
        "gpl-2+" => "GPL-2.0-or-later",
        "gpl-3" => "GPL-3.0-only",
        "gpl-3+" => "GPL-3.0-or-later",
        "lgpl-2" => "LGPL-2.0-only",
        "lgpl-2+" => "LGPL-2.0-or-later",
        "lgpl-2.1" => "LGPL-2.1-only",
        "lgpl-2.1+" => "LGPL-2.1-or-later",
        "lgpl-3" => "LGPL-3.0-only",
        "lgpl-3+" => "LGPL-3.0-or-later",
        "agpl-3" => "AGPL-3.0-only",
        "agpl-3+" => "AGPL-3.0-or-later",
        "apache-2.0" | "apache-2" => "Apache-2.0",
        "expat" | "mit" => "MIT",
        "bsd-2-clause" => "BSD-2-Clause",
        "bsd-3-clause" => "BSD-3-Clause",
        "bsd-4-clause" => "BSD-4-Clause",
        "isc" => "ISC",
        "zlib" => "Zlib",
        "mpl-1.1" => "MPL-1.1",
        "mpl-2.0" => "MPL-2.0",
        "cc0-1.0" | "cc0" => "CC0-1.0",
        "artistic-2.0" => "Artistic-2.0",
        "curl" => "curl",
        "openssl" => "OpenSSL",
        "unicode-dfs-2016" => "Unicode-DFS-2016",
        _ => return None,
    })
}

/// `[A-Za-z0-9.-]` as SPDX identifiers allow; anything else becomes `-`.
fn ident(s: &str) -> String {
    let out: String = s
        .chars()
        .map(|c| match c {
            '+' => 'p',
            c if c.is_ascii_alphanumeric() || c == '.' || c == '-' => c,
            _ => '-',
        })
        .collect();
    if out.is_empty() {
        "x".into()
    } else {
        out
    }
}

/// A DEP-5 licence expression (`GPL-2+ or Artistic`, `LGPL-2.1+ and MIT`) as an SPDX
/// licence expression; names without an SPDX identifier become `LicenseRef-…`, which
/// are collected into `refs` (id → DEP-5 name).
fn license_expression(dep5: &str, refs: &mut BTreeMap<String, String>) -> String {
    let words: Vec<&str> = dep5
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|w| !w.is_empty())
        .collect();
    let mut out: Vec<String> = Vec::new();
    let mut expect_name = true;
    for w in &words {
        let lw = w.to_ascii_lowercase();
        if !expect_name && (lw == "or" || lw == "and") {
            out.push(lw.to_ascii_uppercase());
            expect_name = true;
        } else if expect_name {
            out.push(match spdx_id(w) {
                Some(id) => id.to_string(),
                None => {
                    let id = format!("LicenseRef-{}", ident(w));
                    refs.insert(id.clone(), w.to_string());
                    id
                }
            });
            expect_name = false;
        } else {
            // `with … exception` or anything else not an expression: one reference.
            let id = format!("LicenseRef-{}", ident(dep5));
            refs.insert(id.clone(), dep5.to_string());
            return id;
        }
    }
    if out.is_empty() || expect_name {
        let id = format!("LicenseRef-{}", ident(dep5));
        refs.insert(id.clone(), dep5.to_string());
        return id;
    }
    out.join(" ")
}

/// Percent-encode a purl component (RFC 3986 unreserved characters stay, and `:`).
fn purl_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b':') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The distribution of an architecture: (purl namespace, `distro` qualifier).
fn distro(arch: &SbomArch) -> (String, Option<String>) {
    if let Some((id, version)) = &arch.os_release {
        let id = id.to_ascii_lowercase();
        let q = version.as_ref().map(|v| format!("{id}-{v}"));
        return (id, q);
    }
    let ubuntu = arch.packages.iter().any(|p| p.url.contains("ubuntu"));
    (if ubuntu { "ubuntu" } else { "debian" }.to_string(), None)
}

/// `pkg:deb/<distro>/<name>@<version>?arch=<arch>&distro=<distro>-<version_id>`.
pub fn purl(namespace: &str, p: &Resolved, distro: Option<&str>) -> String {
    let mut s = format!(
        "pkg:deb/{}/{}@{}?arch={}",
        purl_encode(namespace),
        purl_encode(&p.name),
        purl_encode(&p.version),
        purl_encode(&p.architecture)
    );
    if let Some(d) = distro {
        s.push_str(&format!("&distro={}", purl_encode(d)));
    }
    s
}

/// The image the document describes.
#[derive(Debug, Clone, Copy)]
pub struct SbomImage<'a> {
    /// The image name from the manifest.
    pub name: &'a str,
    /// The image tag.
    pub tag: &'a str,
    /// What `index.json` points to, `sha256:…`.
    pub digest: &'a str,
    /// Seconds since the Unix epoch: the document's creation time.
    pub epoch: u64,
    /// One entry per architecture built.
    pub archs: &'a [SbomArch],
}

/// The SPDX package verification code of files with these SHA-1 sums: the SHA-1 of their
/// lowercase hex sums, sorted, concatenated.
fn verification_code(mut sums: Vec<[u8; 20]>) -> String {
    // Sorting the raw sums sorts their hex forms (fixed length, digits before letters).
    sums.sort_unstable();
    let mut code = Sha1::new();
    for sum in &sums {
        code.update(hex::encode(sum).as_bytes());
    }
    hex::encode(code.finalize())
}

/// The SPDX 2.3 document of an image, ready to be written: [`write()`] puts it at a
/// path, [`Document::write_to`] streams it anywhere. Its bytes are canonical JSON
/// (RFC 8785) and a final newline, written piece by piece: each file, package and
/// relationship is made and serialised on its own, so a document of 200,000 files
/// costs a few bytes per file beyond what [`SbomArch`] holds, not a JSON tree of
/// everything.
pub struct Document<'a> {
    archs: std::borrow::Cow<'a, [SbomArch]>,
    /// Seconds since the Unix epoch: the creation time.
    epoch: u64,
    /// The document's `name`.
    name: String,
    /// `documentNamespace`.
    namespace: String,
    /// The packages (the image's among them), sorted by `SPDXID`: one per package.
    packages: Vec<Value>,
    /// `LicenseRef-…` id → the DEP-5 name.
    refs: BTreeMap<String, String>,
    /// Package ids in order.
    package_ids: Vec<String>,
    /// The files of each architecture, the architectures in the order of their file ids.
    files: Vec<ArchFiles>,
}

/// The files of one architecture in a [`Document`].
struct ArchFiles {
    /// `SPDXRef-File-<arch>-`.
    prefix: String,
    /// Index in [`Document::archs`].
    arch: usize,
    /// Indexes into the architecture's files, in the order of their ids (`…-1`, `…-10`,
    /// `…-100`, `…-11`, …: the ids compare as text).
    order: Vec<u32>,
    /// The same indexes grouped by container (in the order of
    /// [`Document::package_ids`], the image's last), each group in id order.
    grouped: Vec<u32>,
    /// For each file (by index): the index of its package in
    /// [`Document::package_ids`], or [`IMAGE`].
    container: Vec<u32>,
}

impl ArchFiles {
    /// The files of container `c` (a package's index, or [`IMAGE`]), in id order.
    fn of(&self, c: u32) -> &[u32] {
        let start = self
            .grouped
            .partition_point(|&i| self.container[i as usize] < c);
        let end = self
            .grouped
            .partition_point(|&i| self.container[i as usize] <= c);
        &self.grouped[start..end]
    }
}

/// The container of a file a generator made: the image package.
const IMAGE: u32 = u32::MAX;

/// 1-based numbers `1..=n` in the order of their decimal forms as text.
fn text_order(n: usize) -> Vec<u32> {
    let mut order: Vec<u32> = (0..n as u32).collect();
    // A number's digits padded with zeros to 10 places, then its length: text order (a
    // prefix first).
    let key = |i: &u32| {
        let n = u64::from(*i) + 1;
        let mut len = 1;
        while n >= 10u64.pow(len) {
            len += 1;
        }
        (n * 10u64.pow(10 - len), len)
    };
    order.sort_unstable_by_key(key);
    order
}

/// The SPDX 2.3 document of the image.
pub fn document<'a>(image: &SbomImage<'a>) -> Result<Document<'a>, SbomError> {
    Document::new(
        image,
        std::borrow::Cow::Borrowed(image.archs),
        Some(image.digest),
        None,
    )
}

/// Where `[generate] sbom = true` puts the document of an architecture's root
/// filesystem in the image: apko's directory for SPDX documents (`/var/lib/db/sbom`),
/// named after the image; Syft's SBOM cataloger and other scanners find `*.spdx.json`.
pub fn in_image_path(name: &str) -> String {
    format!("/var/lib/db/sbom/{name}.spdx.json")
}

/// `[generate] sbom = true`: the SPDX 2.3 document of one architecture's tree (its
/// packages and every regular file), to put at [`in_image_path`]
/// (`crate::rootfs::generate` adds it as the tree's last file, through
/// [`Document::write_to`]). A document inside the image cannot name the digest of the
/// image that holds it (nor list itself): its image package has no version, checksum or
/// `pkg:oci` purl, and says so; its namespace ends with the SHA-256 of the rest of the
/// document, so it stays deterministic.
pub fn in_image_document(
    tree: &Tree,
    name: &str,
    tag: &str,
    arch: Arch,
    packages: &[Resolved],
    epoch: u64,
) -> Result<Document<'static>, SbomError> {
    let path = in_image_path(name);
    let archs = vec![SbomArch::collect(arch, packages, tree)?];
    let image = SbomImage {
        name,
        tag,
        digest: "",
        epoch,
        archs: &[],
    };
    let comment = format!(
        "the root filesystem of {name}:{tag} for {arch}, described from inside it ({path}): a document in the image cannot name the digest of the image that holds it, nor list itself; compose --sbom writes the document that names the digest"
    );
    let mut doc = Document::new(&image, std::borrow::Cow::Owned(archs), None, Some(comment))?;
    doc.name = format!("{name}:{tag} {arch} root filesystem");
    let mut hash = HashWriter(Sha256::new());
    doc.write_to(&mut hash)
        .map_err(io_err("cannot serialise the SBOM"))?;
    doc.namespace = format!(
        "https://compose.invalid/spdx/{}/{}/sha256:{}",
        purl_encode(name),
        purl_encode(arch.name()),
        hex::encode(hash.0.finalize())
    );
    Ok(doc)
}

/// A writer that only hashes.
struct HashWriter(Sha256);

impl Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `value` as canonical JSON.
fn canon(w: &mut dyn Write, value: &Value) -> io::Result<()> {
    value.to_canon_json_writer(w)
}

impl<'a> Document<'a> {
    /// Everything but the files, relationships and namespace text made up front: the
    /// packages, licence references, ids and the order of the files. `digest` None for
    /// a document inside the image (no image digest; the caller sets the namespace),
    /// with `image_comment` on its image package.
    fn new(
        image: &SbomImage,
        archs: std::borrow::Cow<'a, [SbomArch]>,
        digest: Option<&str>,
        image_comment: Option<String>,
    ) -> Result<Document<'a>, SbomError> {
        let noassertion = "NOASSERTION";
        let mut packages: Vec<Value> = Vec::new();
        let mut refs: BTreeMap<String, String> = BTreeMap::new();
        let mut image_sums: Vec<[u8; 20]> = Vec::new();
        let mut used_ids = BTreeSet::new();
        // (id, arch index, package name) of every package.
        let mut ids: Vec<(String, usize, String)> = Vec::new();
        let mut files = Vec::new();
        for (a, arch) in archs.iter().enumerate() {
            let (namespace, distro_q) = distro(arch);
            let mut package_ids = BTreeMap::new();
            for p in &arch.packages {
                let base = format!(
                    "SPDXRef-Package-{}-{}",
                    ident(arch.arch.name()),
                    ident(&p.name)
                );
                let mut id = base.clone();
                let mut n = 2;
                while !used_ids.insert(id.clone()) {
                    id = format!("{base}-{n}");
                    n += 1;
                }
                package_ids.insert(p.name.clone(), id.clone());
                ids.push((id, a, p.name.clone()));
            }
            // Each package's files' SHA-1 sums, for its verification code.
            let mut sums: BTreeMap<&str, Vec<[u8; 20]>> = BTreeMap::new();
            for f in &arch.files {
                match package_ids.get(&f.origin) {
                    Some(_) => sums.entry(f.origin.as_str()).or_default().push(f.sha1),
                    None => image_sums.push(f.sha1),
                }
            }
            for p in &arch.packages {
                let id = &package_ids[&p.name];
                let declared = match arch.licenses.get(&p.name) {
                    Some(l) => license_expression(l, &mut refs),
                    None => noassertion.to_string(),
                };
                let contained = sums.remove(p.name.as_str());
                let mut pkg = json!({
                    "SPDXID": id,
                    "name": p.name,
                    "versionInfo": p.version,
                    "supplier": noassertion,
                    "originator": noassertion,
                    "downloadLocation": p.url,
                    "filesAnalyzed": contained.is_some(),
                    "checksums": [{ "algorithm": "SHA256", "checksumValue": p.sha256 }],
                    "externalRefs": [{
                        "referenceCategory": "PACKAGE-MANAGER",
                        "referenceType": "purl",
                        "referenceLocator": purl(&namespace, p, distro_q.as_deref()),
                    }],
                    "licenseConcluded": noassertion,
                    "licenseDeclared": declared,
                    "copyrightText": noassertion,
                    "comment": format!("architecture {} of the image, from suite {}", arch.arch, p.suite),
                });
                if let Some(sums) = contained {
                    pkg["packageVerificationCode"] =
                        json!({ "packageVerificationCodeValue": verification_code(sums) });
                }
                packages.push(pkg);
            }
            files.push((a, package_ids));
        }
        let image_id = "SPDXRef-Image";
        let mut image_pkg = json!({
            "SPDXID": image_id,
            "name": image.name,
            "supplier": noassertion,
            "downloadLocation": noassertion,
            "primaryPackagePurpose": "CONTAINER",
            "filesAnalyzed": !image_sums.is_empty(),
            "licenseConcluded": noassertion,
            "licenseDeclared": noassertion,
            "copyrightText": noassertion,
        });
        if let Some(digest) = digest {
            let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
            image_pkg["versionInfo"] = json!(digest);
            image_pkg["checksums"] = json!([{ "algorithm": "SHA256", "checksumValue": hex }]);
            image_pkg["externalRefs"] = json!([{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": format!("pkg:oci/{}@{}?tag={}", purl_encode(image.name), purl_encode(digest), purl_encode(image.tag)),
            }]);
        }
        if !image_sums.is_empty() {
            image_pkg["packageVerificationCode"] =
                json!({ "packageVerificationCodeValue": verification_code(image_sums) });
        }
        if let Some(comment) = image_comment {
            image_pkg["comment"] = json!(comment);
        }
        packages.push(image_pkg);
        packages.sort_by(|a, b| a["SPDXID"].as_str().cmp(&b["SPDXID"].as_str()));
        ids.sort();
        let position: BTreeMap<(usize, &str), u32> = ids
            .iter()
            .enumerate()
            .map(|(i, (_, a, name))| ((*a, name.as_str()), i as u32))
            .collect();
        let mut files: Vec<ArchFiles> = files
            .into_iter()
            .map(|(a, _)| {
                let arch = &archs[a];
                let order = text_order(arch.files.len());
                let container: Vec<u32> = arch
                    .files
                    .iter()
                    .map(|f| {
                        position
                            .get(&(a, f.origin.as_str()))
                            .copied()
                            .unwrap_or(IMAGE)
                    })
                    .collect();
                let mut grouped = order.clone();
                // Stable: each group stays in id order.
                grouped.sort_by_key(|&i| container[i as usize]);
                ArchFiles {
                    prefix: format!("SPDXRef-File-{}-", ident(arch.arch.name())),
                    arch: a,
                    order,
                    grouped,
                    container,
                }
            })
            .collect();
        files.sort_by(|a, b| a.prefix.cmp(&b.prefix));
        let namespace = match digest {
            Some(d) => format!(
                "https://compose.invalid/spdx/{}/{}",
                purl_encode(image.name),
                d
            ),
            None => String::new(),
        };
        Ok(Document {
            epoch: image.epoch,
            name: format!("{}:{}", image.name, image.tag),
            namespace,
            packages,
            refs,
            package_ids: ids.into_iter().map(|(id, _, _)| id).collect(),
            files,
            archs,
        })
    }

    /// Write the document: canonical JSON and a final newline. The members of the
    /// top-level object are written in canonical order by hand, each value through the
    /// canonical serialiser.
    pub fn write_to(&self, w: &mut dyn Write) -> io::Result<()> {
        let created = json!({
            "created": rfc3339(self.epoch),
            "creators": [format!("Tool: compose-{}", env!("CARGO_PKG_VERSION"))],
        });
        w.write_all(b"{\"SPDXID\":\"SPDXRef-DOCUMENT\",\"creationInfo\":")?;
        canon(w, &created)?;
        w.write_all(b",\"dataLicense\":\"CC0-1.0\",\"documentNamespace\":")?;
        canon(w, &json!(self.namespace))?;
        w.write_all(b",\"files\":[")?;
        let mut first = true;
        for arch in &self.files {
            let files = &self.archs[arch.arch].files;
            for &i in &arch.order {
                let f = &files[i as usize];
                if !std::mem::take(&mut first) {
                    w.write_all(b",")?;
                }
                canon(
                    w,
                    &json!({
                        "SPDXID": format!("{}{}", arch.prefix, i + 1),
                        "fileName": format!(".{}", f.path),
                        "checksums": [
                            { "algorithm": "SHA1", "checksumValue": hex::encode(f.sha1) },
                            { "algorithm": "SHA256", "checksumValue": hex::encode(f.sha256) },
                        ],
                        "licenseConcluded": "NOASSERTION",
                        "copyrightText": "NOASSERTION",
                    }),
                )?;
            }
        }
        w.write_all(b"]")?;
        if !self.refs.is_empty() {
            w.write_all(b",\"hasExtractedLicensingInfos\":")?;
            let infos: Vec<Value> = self
                .refs
                .iter()
                .map(|(id, name)| {
                    json!({
                        "licenseId": id,
                        "name": name,
                        "extractedText": format!("{name}: the licence named so in the package's machine-readable /usr/share/doc/<package>/copyright"),
                    })
                })
                .collect();
            canon(w, &Value::Array(infos))?;
        }
        w.write_all(b",\"name\":")?;
        canon(w, &json!(self.name))?;
        w.write_all(b",\"packages\":[")?;
        for (i, p) in self.packages.iter().enumerate() {
            if i > 0 {
                w.write_all(b",")?;
            }
            canon(w, p)?;
        }
        w.write_all(b"],\"relationships\":[")?;
        self.write_relationships(w)?;
        w.write_all(b"],\"spdxVersion\":\"SPDX-2.3\"}\n")
    }

    /// Every relationship, in the order of (element, type, related element) as text:
    /// the document describes the image; the image contains the files no package gave
    /// (their ids sort before the packages'), then each package; each package contains
    /// its files.
    fn write_relationships(&self, w: &mut dyn Write) -> io::Result<()> {
        let one = |w: &mut dyn Write, a: &str, t: &str, b: &str, first: bool| -> io::Result<()> {
            if !first {
                w.write_all(b",")?;
            }
            canon(
                w,
                &json!({ "spdxElementId": a, "relationshipType": t, "relatedSpdxElement": b }),
            )
        };
        one(w, "SPDXRef-DOCUMENT", "DESCRIBES", "SPDXRef-Image", true)?;
        for arch in &self.files {
            for &i in arch.of(IMAGE) {
                let id = format!("{}{}", arch.prefix, i + 1);
                one(w, "SPDXRef-Image", "CONTAINS", &id, false)?;
            }
        }
        for id in &self.package_ids {
            one(w, "SPDXRef-Image", "CONTAINS", id, false)?;
        }
        for (p, id) in self.package_ids.iter().enumerate() {
            for arch in &self.files {
                for &i in arch.of(p as u32) {
                    let file = format!("{}{}", arch.prefix, i + 1);
                    one(w, id, "CONTAINS", &file, false)?;
                }
            }
        }
        Ok(())
    }
}

/// Write `doc` (canonical JSON and a final newline) to `path`, atomically.
pub fn write(path: &Path, doc: &Document) -> Result<(), SbomError> {
    stage(path, doc)?
        .commit()
        .map_err(|e| io_err(format!("cannot write {}", path.display()))(e.source))
}

/// [`write`] up to the rename: the document is written as it is serialised, complete
/// and synced in a temporary file beside `path`, which the caller commits (or drops,
/// leaving `path` as it was).
pub fn stage(path: &Path, doc: &Document) -> Result<crate::atomic::AtomicFile, SbomError> {
    let err = |e: crate::atomic::AtomicError| {
        io_err(format!("cannot write {}", path.display()))(e.source)
    };
    let mut file = crate::atomic::AtomicFile::create(path, ".compose-sbom-").map_err(err)?;
    {
        let mut out = io::BufWriter::with_capacity(256 << 10, &mut file);
        doc.write_to(&mut out)
            .and_then(|()| out.flush())
            .map_err(io_err(format!("cannot write {}", path.display())))?;
    }
    file.prepare().map_err(err)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The document as it was made before it was streamed: a JSON tree of everything,
    // serialised at once. The streamed bytes must be the same.

    fn reference_verification_code(files: &[&SbomFile]) -> String {
        let mut sums: Vec<String> = files.iter().map(|f| hex::encode(f.sha1)).collect();
        sums.sort();
        hex::encode(Sha1::digest(sums.concat().as_bytes()))
    }

    fn reference_serialise(doc: &Value) -> Result<Vec<u8>, SbomError> {
        let mut bytes = doc
            .to_canon_json_vec()
            .map_err(io_err("cannot serialise the SBOM"))?;
        bytes.push(b'\n');
        Ok(bytes)
    }

    /// The document; `digest` None for one inside the image (no image digest, and a
    /// namespace the caller sets).
    fn reference_document(image: &SbomImage, digest: Option<&str>) -> Result<Value, SbomError> {
        let noassertion = "NOASSERTION";
        let mut packages: Vec<Value> = Vec::new();
        let mut files: Vec<Value> = Vec::new();
        let mut relationships: BTreeSet<(String, String, String)> = BTreeSet::new();
        let mut refs: BTreeMap<String, String> = BTreeMap::new();
        let image_id = "SPDXRef-Image".to_string();
        relationships.insert((
            "SPDXRef-DOCUMENT".into(),
            "DESCRIBES".into(),
            image_id.clone(),
        ));
        let mut image_files: Vec<&SbomFile> = Vec::new();
        let mut used_ids = BTreeSet::new();
        for arch in image.archs {
            let (namespace, distro_q) = distro(arch);
            let mut package_ids = BTreeMap::new();
            for p in &arch.packages {
                let base = format!(
                    "SPDXRef-Package-{}-{}",
                    ident(arch.arch.name()),
                    ident(&p.name)
                );
                let mut id = base.clone();
                let mut n = 2;
                while !used_ids.insert(id.clone()) {
                    id = format!("{base}-{n}");
                    n += 1;
                }
                package_ids.insert(p.name.clone(), id);
            }
            let mut by_package: BTreeMap<&str, Vec<&SbomFile>> = BTreeMap::new();
            for (i, f) in arch.files.iter().enumerate() {
                let id = format!("SPDXRef-File-{}-{}", ident(arch.arch.name()), i + 1);
                files.push(json!({
                    "SPDXID": id,
                    "fileName": format!(".{}", f.path),
                    "checksums": [
                        { "algorithm": "SHA1", "checksumValue": hex::encode(f.sha1) },
                        { "algorithm": "SHA256", "checksumValue": hex::encode(f.sha256) },
                    ],
                    "licenseConcluded": noassertion,
                    "copyrightText": noassertion,
                }));
                match package_ids.get(&f.origin) {
                    Some(pid) => {
                        relationships.insert((pid.clone(), "CONTAINS".into(), id));
                        by_package.entry(f.origin.as_str()).or_default().push(f);
                    }
                    None => {
                        relationships.insert((image_id.clone(), "CONTAINS".into(), id));
                        image_files.push(f);
                    }
                }
            }
            for p in &arch.packages {
                let id = &package_ids[&p.name];
                relationships.insert((image_id.clone(), "CONTAINS".into(), id.clone()));
                let declared = match arch.licenses.get(&p.name) {
                    Some(l) => license_expression(l, &mut refs),
                    None => noassertion.to_string(),
                };
                let contained = by_package.get(p.name.as_str());
                let mut pkg = json!({
                    "SPDXID": id,
                    "name": p.name,
                    "versionInfo": p.version,
                    "supplier": noassertion,
                    "originator": noassertion,
                    "downloadLocation": p.url,
                    "filesAnalyzed": contained.is_some(),
                    "checksums": [{ "algorithm": "SHA256", "checksumValue": p.sha256 }],
                    "externalRefs": [{
                        "referenceCategory": "PACKAGE-MANAGER",
                        "referenceType": "purl",
                        "referenceLocator": purl(&namespace, p, distro_q.as_deref()),
                    }],
                    "licenseConcluded": noassertion,
                    "licenseDeclared": declared,
                    "copyrightText": noassertion,
                    "comment": format!("architecture {} of the image, from suite {}", arch.arch, p.suite),
                });
                if let Some(files) = contained {
                    pkg["packageVerificationCode"] = json!({ "packageVerificationCodeValue": reference_verification_code(files) });
                }
                packages.push(pkg);
            }
        }
        let mut image_pkg = json!({
            "SPDXID": image_id,
            "name": image.name,
            "supplier": noassertion,
            "downloadLocation": noassertion,
            "primaryPackagePurpose": "CONTAINER",
            "filesAnalyzed": !image_files.is_empty(),
            "licenseConcluded": noassertion,
            "licenseDeclared": noassertion,
            "copyrightText": noassertion,
        });
        if let Some(digest) = digest {
            let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
            image_pkg["versionInfo"] = json!(digest);
            image_pkg["checksums"] = json!([{ "algorithm": "SHA256", "checksumValue": hex }]);
            image_pkg["externalRefs"] = json!([{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": format!("pkg:oci/{}@{}?tag={}", purl_encode(image.name), purl_encode(digest), purl_encode(image.tag)),
            }]);
        }
        if !image_files.is_empty() {
            image_pkg["packageVerificationCode"] = json!({ "packageVerificationCodeValue": reference_verification_code(&image_files) });
        }
        packages.push(image_pkg);
        packages.sort_by(|a, b| a["SPDXID"].as_str().cmp(&b["SPDXID"].as_str()));
        files.sort_by(|a, b| a["SPDXID"].as_str().cmp(&b["SPDXID"].as_str()));
        let mut doc = json!({
            "spdxVersion": "SPDX-2.3",
            "dataLicense": "CC0-1.0",
            "SPDXID": "SPDXRef-DOCUMENT",
            "name": format!("{}:{}", image.name, image.tag),
            "documentNamespace": match digest {
                Some(d) => format!("https://compose.invalid/spdx/{}/{}", purl_encode(image.name), d),
                None => String::new(),
            },
            "creationInfo": {
                "created": rfc3339(image.epoch),
                "creators": [format!("Tool: compose-{}", env!("CARGO_PKG_VERSION"))],
            },
            "packages": packages,
            "files": files,
            "relationships": relationships.iter().map(|(a, t, b)| json!({
                "spdxElementId": a,
                "relationshipType": t,
                "relatedSpdxElement": b,
            })).collect::<Vec<_>>(),
        });
        if !refs.is_empty() {
            doc["hasExtractedLicensingInfos"] = refs
                .iter()
                .map(|(id, name)| {
                    json!({
                        "licenseId": id,
                        "name": name,
                        "extractedText": format!("{name}: the licence named so in the package's machine-readable /usr/share/doc/<package>/copyright"),
                    })
                })
                .collect();
        }
        Ok(doc)
    }

    fn reference_in_image(
        tree: &Tree,
        name: &str,
        tag: &str,
        arch: Arch,
        packages: &[Resolved],
        epoch: u64,
    ) -> Result<Vec<u8>, SbomError> {
        let path = in_image_path(name);
        let archs = [SbomArch::collect(arch, packages, tree)?];
        let image = SbomImage {
            name,
            tag,
            digest: "",
            epoch,
            archs: &archs,
        };
        let mut doc = reference_document(&image, None)?;
        let image_pkg = doc["packages"]
            .as_array_mut()
            .and_then(|ps| ps.iter_mut().find(|p| p["SPDXID"] == "SPDXRef-Image"))
            .expect("the image package");
        image_pkg["comment"] = json!(format!(
            "the root filesystem of {name}:{tag} for {arch}, described from inside it ({path}): a document in the image cannot name the digest of the image that holds it, nor list itself; compose --sbom writes the document that names the digest"
        ));
        doc["name"] = json!(format!("{name}:{tag} {arch} root filesystem"));
        let bytes = reference_serialise(&doc)?;
        let namespace = format!(
            "https://compose.invalid/spdx/{}/{}/sha256:{}",
            purl_encode(name),
            purl_encode(arch.name()),
            hex::encode(Sha256::digest(&bytes))
        );
        doc["documentNamespace"] = json!(namespace);
        reference_serialise(&doc)
    }

    #[test]
    fn dep5_and_expressions() {
        let text = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\nUpstream-Name: x\n\nFiles: debian/*\nLicense: MIT\n\nFiles: *\nCopyright: someone\nLicense: GPL-2+ or Artistic\n Long text.\n";
        assert_eq!(dep5_license(text).as_deref(), Some("GPL-2+ or Artistic"));
        assert_eq!(dep5_license("This is free software.\n"), None);
        let mut refs = BTreeMap::new();
        assert_eq!(
            license_expression("GPL-2+ or Artistic", &mut refs),
            "GPL-2.0-or-later OR LicenseRef-Artistic"
        );
        assert_eq!(
            license_expression("LGPL-2.1+ and Expat", &mut refs),
            "LGPL-2.1-or-later AND MIT"
        );
        assert_eq!(
            license_expression("GPL-3+ with GCC-exception", &mut refs),
            "LicenseRef-GPL-3p-with-GCC-exception"
        );
        assert_eq!(refs.len(), 2);
    }

    #[test]
    fn purls_and_os_release() {
        let p = Resolved {
            name: "libstdc++6".into(),
            version: "1:14.2.0-4ubuntu2~24.04".into(),
            architecture: "amd64".into(),
            suite: "noble-updates".into(),
            url: "http://archive.ubuntu.com/ubuntu/pool/x.deb".into(),
            size: 1,
            sha256: "00".into(),
        };
        assert_eq!(
            purl("ubuntu", &p, Some("ubuntu-24.04")),
            "pkg:deb/ubuntu/libstdc%2B%2B6@1:14.2.0-4ubuntu2~24.04?arch=amd64&distro=ubuntu-24.04"
        );
        assert_eq!(
            parse_os_release("NAME=\"Ubuntu\"\nID=ubuntu\nVERSION_ID=\"24.04\"\n"),
            Some(("ubuntu".into(), Some("24.04".into())))
        );
        assert_eq!(parse_os_release("NAME=x\n"), None);
    }

    fn package(name: &str, arch: &str) -> Resolved {
        Resolved {
            name: name.into(),
            version: "1.0-1".into(),
            architecture: arch.into(),
            suite: "noble".into(),
            url: format!("http://archive.example/pool/{name}_{arch}.deb"),
            size: 10,
            sha256: "ab".repeat(32),
        }
    }

    /// An architecture of `files` files, given in turn to `origins` (package names or
    /// generators), with licences that need references.
    fn arch(arch: Arch, names: &[&str], origins: &[&str], files: usize) -> SbomArch {
        let packages: Vec<Resolved> = names.iter().map(|n| package(n, arch.name())).collect();
        let files = (0..files)
            .map(|i| SbomFile {
                path: format!("/usr/lib/f{i:05}"),
                sha256: Sha256::digest(i.to_le_bytes()).into(),
                sha1: Sha1::digest(i.to_le_bytes()).into(),
                origin: origins[i % origins.len()].to_string(),
            })
            .collect();
        let licenses = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let l = [
                    "GPL-2+ or Artistic",
                    "MIT",
                    "GPL-3+ with GCC-exception",
                    "Custom-1",
                ][i % 4];
                (n.to_string(), l.to_string())
            })
            .collect();
        SbomArch {
            arch,
            packages,
            files,
            os_release: (arch == Arch::AMD64).then(|| ("ubuntu".into(), Some("24.04".into()))),
            licenses,
        }
    }

    #[test]
    fn the_streamed_document_is_the_reference_byte_for_byte() {
        let cases: Vec<Vec<SbomArch>> = vec![
            vec![arch(
                Arch::AMD64,
                &["libc6", "zlib1g", "tzdata"],
                &["libc6", "passwd", "zlib1g"],
                25,
            )],
            vec![
                arch(
                    Arch::AMD64,
                    &["a_b", "a-b", "libc6"],
                    &["a_b", "a-b", "manifest"],
                    1200,
                ),
                arch(Arch::ARM64, &["libc6", "a_b"], &["libc6", "a_b"], 11),
            ],
            vec![arch(Arch::ARM64, &["libc6"], &["libc6"], 0)],
            vec![arch(Arch::ARM64, &[], &["passwd"], 3)],
        ];
        let digest = format!("sha256:{}", "cd".repeat(32));
        for archs in &cases {
            let image = SbomImage {
                name: "img+x",
                tag: "v1",
                digest: &digest,
                epoch: 1_700_000_000,
                archs,
            };
            let mut streamed = Vec::new();
            document(&image).unwrap().write_to(&mut streamed).unwrap();
            let reference =
                reference_serialise(&reference_document(&image, Some(&digest)).unwrap()).unwrap();
            assert_eq!(
                String::from_utf8(streamed).unwrap(),
                String::from_utf8(reference).unwrap()
            );
        }
    }

    #[test]
    fn the_streamed_document_inside_the_image_is_the_reference_byte_for_byte() {
        let mut tree = Tree::new().unwrap();
        for (path, origin, bytes) in [
            ("/usr/lib/libc.so.6", "libc6", &b"libc"[..]),
            ("/etc/passwd", "passwd", b"root:x:0:0::/:/sbin/nologin\n"),
            (
                "/usr/share/doc/libc6/copyright",
                "libc6",
                b"Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\nFiles: *\nLicense: LGPL-2.1+\n",
            ),
            ("/etc/os-release", "base-files", b"ID=ubuntu\nVERSION_ID=\"24.04\"\n"),
        ] {
            let content = tree.spool.append_bytes(bytes).unwrap();
            let node = crate::rootfs::tree::Node {
                kind: NodeKind::File(content),
                mode: 0o644,
                uid: 0,
                gid: 0,
                mtime: 0,
                origin: origin.into(),
            };
            tree.insert(path, node).unwrap();
        }
        let packages = [package("libc6", "amd64"), package("base-files", "amd64")];
        let doc = in_image_document(&tree, "img", "v1", Arch::AMD64, &packages, 7).unwrap();
        let mut streamed = Vec::new();
        doc.write_to(&mut streamed).unwrap();
        let reference = reference_in_image(&tree, "img", "v1", Arch::AMD64, &packages, 7).unwrap();
        assert_eq!(
            String::from_utf8(streamed).unwrap(),
            String::from_utf8(reference).unwrap()
        );
        // Through the spool, as `[generate] sbom` adds it.
        let content = tree.spool.append_with(&mut |w| doc.write_to(w)).unwrap();
        assert_eq!(
            content.sha256,
            <[u8; 32]>::from(Sha256::digest(tree.spool.read_all(&content).unwrap()))
        );
    }
}
