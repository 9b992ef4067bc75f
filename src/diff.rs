//! What differs between two images, per platform: the manifest digests, the config
//! fields, and for layers every path added, removed or changed (type, mode, owner,
//! mtime, size, content hash, link target), each with the package it came from when
//! the caller knows it. `compose diff A B` is [`diff`]; `compose verify REF`
//! (`crate::verify`) compares its rebuild with the published image through
//! [`compare_images`].
//!
//! Layers are read streaming (tar over the layer's compression, each blob checked
//! against its descriptor): compose's one layer per image is path-sorted, so two of them
//! are compared by a merge of two sorted streams holding one entry of each at a time.
//! An image of several layers, or a layer out of path order, is first applied into a map
//! of entry summaries (path, type, mode, owner, size, hash; no content), capped at
//! [`MAX_ENTRIES`]. It reads and never writes.

use std::collections::BTreeMap;
use std::io::{self, BufReader, Read};

use sha2::{Digest as _, Sha256};

use crate::compression::{decoder, DecodeOptions};
use crate::error::{Error, Result};
use crate::image_ref::{self, ImageRef, Opened};
use crate::oci::read::document::{layer_compression, ImageManifest};
use crate::oci::read::{self, BlobSource, Descriptor, Document, ReadError, Verified};

/// Entries of an image held as summaries when its layers cannot be merged as streams.
pub const MAX_ENTRIES: usize = 2_000_000;
/// File-level changes listed per platform before the rest are only counted.
const MAX_LISTED: usize = 500;
/// Image configs larger than this are refused.
const CONFIG_LIMIT: u64 = 16 << 20;

/// One entry of a layer, without its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Absolute path (`/usr/lib/x`).
    pub path: String,
    /// `file`, `directory`, `symlink`, `hard link`, `character device`, …
    pub kind: &'static str,
    /// Permission bits (`0o7777`).
    pub mode: u32,
    /// Numeric owner.
    pub uid: u64,
    /// Numeric group.
    pub gid: u64,
    /// Modification time.
    pub mtime: u64,
    /// Content bytes (files).
    pub size: u64,
    /// `sha256:…` of the content (files); empty otherwise.
    pub hash: String,
    /// Link target (symlinks, hard links); empty otherwise.
    pub link: String,
}

impl Entry {
    /// What differs from `other`, each as `field A → B`.
    fn changes(&self, other: &Entry) -> Vec<String> {
        let mut out = Vec::new();
        let mut field = |name: &str, a: String, b: String| {
            if a != b {
                out.push(format!("{name} {a} → {b}"));
            }
        };
        field("type", self.kind.into(), other.kind.into());
        field(
            "mode",
            format!("{:04o}", self.mode),
            format!("{:04o}", other.mode),
        );
        field(
            "owner",
            format!("{}:{}", self.uid, self.gid),
            format!("{}:{}", other.uid, other.gid),
        );
        field("mtime", self.mtime.to_string(), other.mtime.to_string());
        field("size", self.size.to_string(), other.size.to_string());
        field("content", short(&self.hash), short(&other.hash));
        field("target", self.link.clone(), other.link.clone());
        out
    }
}

fn short(hash: &str) -> String {
    match hash.strip_prefix("sha256:") {
        Some(hex) if hex.len() > 12 => format!("sha256:{}", &hex[..12]),
        _ if hash.is_empty() => "none".into(),
        _ => hash.to_string(),
    }
}

/// One path that differs between image A and image B.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileChange {
    /// Only in A.
    OnlyA(Entry),
    /// Only in B.
    OnlyB(Entry),
    /// In both, with these differences (`field A → B`).
    Changed(Entry, Entry, Vec<String>),
}

impl FileChange {
    /// The path concerned.
    pub fn path(&self) -> &str {
        match self {
            FileChange::OnlyA(e) | FileChange::OnlyB(e) | FileChange::Changed(e, _, _) => &e.path,
        }
    }
}

// ---- entry streams ----------------------------------------------------------------------

/// Why a stream of entries stopped.
enum StreamError {
    Read(ReadError),
    /// The layer of this side (0 = A, 1 = B) is not in path order.
    Unsorted(usize),
}

impl From<ReadError> for StreamError {
    fn from(e: ReadError) -> StreamError {
        StreamError::Read(e)
    }
}

type Entries<'a> = dyn Iterator<Item = std::result::Result<Entry, StreamError>> + 'a;

fn summarise<R: Read>(
    entry: io::Result<tar::Entry<'_, R>>,
    digest: &str,
) -> std::result::Result<Option<Entry>, ReadError> {
    let what = format!("layer {digest}");
    let io_err = |source| ReadError::Io {
        context: format!("cannot read layer {digest}"),
        source,
    };
    let mut entry = entry.map_err(io_err)?;
    let path =
        crate::deb::normalise_path(&entry.path_bytes(), &what).map_err(|e| ReadError::Invalid {
            what: what.clone(),
            reason: e.to_string(),
        })?;
    if path == "/" {
        return Ok(None);
    }
    let header = entry.header();
    let mode = header.mode().map_err(io_err)? & 0o7777;
    let uid = header.uid().map_err(io_err)?;
    let gid = header.gid().map_err(io_err)?;
    let mtime = header.mtime().map_err(io_err)?;
    let kind = match header.entry_type() {
        tar::EntryType::Regular | tar::EntryType::Continuous => "file",
        tar::EntryType::Directory => "directory",
        tar::EntryType::Symlink => "symlink",
        tar::EntryType::Link => "hard link",
        tar::EntryType::Char => "character device",
        tar::EntryType::Block => "block device",
        tar::EntryType::Fifo => "fifo",
        // PAX and GNU extension headers are consumed by the tar reader; anything else
        // is not an entry of the file system.
        _ => return Ok(None),
    };
    let link = entry
        .link_name_bytes()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let (size, hash) = if kind == "file" {
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut size = 0u64;
        loop {
            let n = entry.read(&mut buf).map_err(io_err)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            size += n as u64;
        }
        (size, format!("sha256:{}", hex::encode(hasher.finalize())))
    } else {
        (0, String::new())
    };
    Ok(Some(Entry {
        path,
        kind,
        mode,
        uid,
        gid,
        mtime,
        size,
        hash,
        link,
    }))
}

/// Stream the entries of `layer` to `f`, then check the whole blob.
fn with_layer<T>(
    source: &dyn BlobSource,
    layer: &Descriptor,
    side: usize,
    check_order: bool,
    f: impl FnOnce(&mut Entries<'_>) -> std::result::Result<T, StreamError>,
) -> std::result::Result<T, StreamError> {
    let digest = layer.digest.as_str();
    let Some(compression) = layer_compression(&layer.media_type) else {
        return Err(ReadError::Unsupported {
            what: format!("layer {digest}"),
            media_type: layer.media_type.clone(),
        }
        .into());
    };
    let blob = source.open_blob(digest)?;
    let mut verified = Verified::new(BufReader::with_capacity(1 << 20, blob), digest, layer.size);
    let io_err = |source| ReadError::Io {
        context: format!("cannot read layer {digest}"),
        source,
    };
    let out = {
        let mut decoded =
            decoder(&mut verified, compression, &DecodeOptions::CHECKED).map_err(io_err)?;
        let out = {
            let mut archive = tar::Archive::new(&mut decoded);
            let entries = archive.entries().map_err(io_err)?;
            let mut last: Option<String> = None;
            let mut it = entries.filter_map(move |e| match summarise(e, digest) {
                Err(e) => Some(Err(StreamError::Read(e))),
                Ok(None) => None,
                Ok(Some(entry)) => {
                    if check_order && last.as_deref().is_some_and(|l| l >= entry.path.as_str()) {
                        return Some(Err(StreamError::Unsorted(side)));
                    }
                    last = Some(entry.path.clone());
                    Some(Ok(entry))
                }
            });
            f(&mut it)?
        };
        // The rest of the stream (tar padding, compressed trailer) is part of the blob.
        io::copy(&mut decoded, &mut io::sink()).map_err(io_err)?;
        out
    };
    verified.finish()?;
    Ok(out)
}

/// The entries of every layer of `manifest` applied in order (OCI whiteouts honoured),
/// as summaries.
fn materialise(
    source: &dyn BlobSource,
    manifest: &ImageManifest,
) -> std::result::Result<BTreeMap<String, Entry>, ReadError> {
    let mut map: BTreeMap<String, Entry> = BTreeMap::new();
    for layer in &manifest.layers {
        let r = with_layer(source, layer, 0, false, |it| {
            for e in it {
                let e = e?;
                let (parent, name) = e.path.rsplit_once('/').expect("absolute path");
                if let Some(hidden) = name.strip_prefix(".wh.") {
                    let prefix = if hidden == ".wh..opq" {
                        format!("{parent}/")
                    } else {
                        map.remove(&format!("{parent}/{hidden}"));
                        format!("{parent}/{hidden}/")
                    };
                    let doomed: Vec<String> = map
                        .range(prefix.clone()..)
                        .take_while(|(p, _)| p.starts_with(&prefix))
                        .map(|(p, _)| p.clone())
                        .collect();
                    for p in doomed {
                        map.remove(&p);
                    }
                    continue;
                }
                if map.len() >= MAX_ENTRIES && !map.contains_key(&e.path) {
                    return Err(StreamError::Read(ReadError::Invalid {
                        what: format!("image of layer {}", layer.digest),
                        reason: format!("more than {MAX_ENTRIES} entries"),
                    }));
                }
                map.insert(e.path.clone(), e);
            }
            Ok(())
        });
        match r {
            Ok(()) => {}
            Err(StreamError::Read(e)) => return Err(e),
            Err(StreamError::Unsorted(_)) => unreachable!("order is not checked"),
        }
    }
    Ok(map)
}

/// One side of a comparison: an image manifest and where its blobs are.
#[derive(Clone, Copy)]
pub struct Side<'a> {
    /// Where its blobs come from.
    pub source: &'a dyn BlobSource,
    /// The image manifest.
    pub manifest: &'a ImageManifest,
}

fn with_entries<T>(
    side: Side<'_>,
    index: usize,
    as_map: bool,
    f: impl FnOnce(&mut Entries<'_>) -> std::result::Result<T, StreamError>,
) -> std::result::Result<T, StreamError> {
    match side.manifest.layers.as_slice() {
        [one] if !as_map => with_layer(side.source, one, index, true, f),
        _ => {
            let map = materialise(side.source, side.manifest)?;
            f(&mut map.into_values().map(Ok))
        }
    }
}

fn merge(
    a: &mut Entries<'_>,
    b: &mut Entries<'_>,
) -> std::result::Result<Vec<FileChange>, StreamError> {
    let mut out = Vec::new();
    let mut x = a.next().transpose()?;
    let mut y = b.next().transpose()?;
    loop {
        match (x.take(), y.take()) {
            (None, None) => return Ok(out),
            (Some(e), None) => {
                out.push(FileChange::OnlyA(e));
                x = a.next().transpose()?;
            }
            (None, Some(e)) => {
                out.push(FileChange::OnlyB(e));
                y = b.next().transpose()?;
            }
            (Some(ea), Some(eb)) => match ea.path.cmp(&eb.path) {
                std::cmp::Ordering::Less => {
                    out.push(FileChange::OnlyA(ea));
                    x = a.next().transpose()?;
                    y = Some(eb);
                }
                std::cmp::Ordering::Greater => {
                    out.push(FileChange::OnlyB(eb));
                    x = Some(ea);
                    y = b.next().transpose()?;
                }
                std::cmp::Ordering::Equal => {
                    let changes = ea.changes(&eb);
                    if !changes.is_empty() {
                        out.push(FileChange::Changed(ea, eb, changes));
                    }
                    x = a.next().transpose()?;
                    y = b.next().transpose()?;
                }
            },
        }
    }
}

/// Every path that differs between the file systems of `a` and `b`, in path order.
pub fn compare_files(a: Side<'_>, b: Side<'_>) -> std::result::Result<Vec<FileChange>, ReadError> {
    let mut as_map = [false, false];
    loop {
        let r = with_entries(a, 0, as_map[0], |ia| {
            with_entries(b, 1, as_map[1], |ib| merge(ia, ib))
        });
        match r {
            Ok(changes) => return Ok(changes),
            Err(StreamError::Read(e)) => return Err(e),
            // A foreign layer out of path order: read that side into a map and start over.
            Err(StreamError::Unsorted(side)) => as_map[side] = true,
        }
    }
}

// ---- configs ----------------------------------------------------------------------------

fn flatten(prefix: &str, v: &serde_json::Value, out: &mut BTreeMap<String, String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

/// The fields of two image configs that differ, each as `field: A → B` (absent: `none`).
pub fn compare_configs(
    a: (&dyn BlobSource, &Descriptor),
    b: (&dyn BlobSource, &Descriptor),
) -> std::result::Result<Vec<String>, ReadError> {
    let read = |(source, d): (&dyn BlobSource, &Descriptor)| -> std::result::Result<_, ReadError> {
        let bytes = image_ref::read_blob(source, d, CONFIG_LIMIT)?;
        let value: serde_json::Value =
            read::document::parse(&bytes, &format!("image config {}", d.digest))?;
        let mut flat = BTreeMap::new();
        flatten("", &value, &mut flat);
        Ok(flat)
    };
    let (fa, fb) = (read(a)?, read(b)?);
    let keys: std::collections::BTreeSet<&String> = fa.keys().chain(fb.keys()).collect();
    let none = "none".to_string();
    Ok(keys
        .into_iter()
        .filter(|k| fa.get(*k) != fb.get(*k))
        .map(|k| {
            format!(
                "config {k}: {} → {}",
                fa.get(k).unwrap_or(&none),
                fb.get(k).unwrap_or(&none)
            )
        })
        .collect())
}

// ---- images -----------------------------------------------------------------------------

/// The image manifests of an opened image, by platform (`linux/arm64/v8`).
fn platforms(image: &Opened) -> Result<BTreeMap<String, Document<ImageManifest>>> {
    let err = |e: ReadError| Error::Output(format!("{}: {e}", image.name));
    let listing = read::list(image.source.as_ref(), &image.top).map_err(err)?;
    let mut out = BTreeMap::new();
    for m in listing.images {
        let platform = match &m.descriptor.platform {
            Some(p) => p.to_string(),
            None => {
                let c: Document<read::Config> = read::read_document(
                    image.source.as_ref(),
                    &m.content.config,
                    &format!("image config {}", m.content.config.digest),
                )
                .map_err(err)?;
                let c = c.content;
                match c.variant {
                    Some(v) => format!("{}/{}/{v}", c.os, c.architecture),
                    None => format!("{}/{}", c.os, c.architecture),
                }
            }
        };
        out.insert(platform, m);
    }
    Ok(out)
}

/// The comparison of one platform.
#[derive(Debug, Clone)]
pub struct PlatformReport {
    /// `linux/amd64`.
    pub platform: String,
    /// Both images have it, with the same manifest digest.
    pub equal: bool,
    /// What was compared and found, one line each.
    pub lines: Vec<String>,
}

/// Says where a path of image A came from on `platform` (`package zlib1g 1.3-1`), when
/// known.
pub type Origins<'a> = &'a dyn Fn(&str, &str) -> Option<String>;

/// Compare images `a` and `b` (called `labels.0` and `labels.1` in messages) platform by
/// platform; `origin` attributes a path to its package.
pub fn compare_images(
    a: &Opened,
    b: &Opened,
    labels: (&str, &str),
    origin: Origins<'_>,
) -> Result<Vec<PlatformReport>> {
    let (pa, pb) = (platforms(a)?, platforms(b)?);
    let all: std::collections::BTreeSet<&String> = pa.keys().chain(pb.keys()).collect();
    let mut out = Vec::new();
    for platform in all {
        let (ma, mb) = match (pa.get(platform), pb.get(platform)) {
            (Some(ma), Some(mb)) => (ma, mb),
            (Some(_), None) | (None, Some(_)) => {
                let which = if pa.contains_key(platform) {
                    labels.0
                } else {
                    labels.1
                };
                out.push(PlatformReport {
                    platform: platform.clone(),
                    equal: false,
                    lines: vec![format!("only in {which}")],
                });
                continue;
            }
            (None, None) => unreachable!("a platform of one of them"),
        };
        let (da, db) = (&ma.descriptor.digest, &mb.descriptor.digest);
        if da == db {
            out.push(PlatformReport {
                platform: platform.clone(),
                equal: true,
                lines: vec![format!("manifest {} equal", short(da))],
            });
            continue;
        }
        let mut lines = vec![format!(
            "manifest {} ({}) ≠ {} ({})",
            short(da),
            labels.0,
            short(db),
            labels.1
        )];
        let (ca, cb) = (&ma.content.config, &mb.content.config);
        if ca.digest != cb.digest {
            let fields = compare_configs((a.source.as_ref(), ca), (b.source.as_ref(), cb))
                .map_err(|e| Error::Output(e.to_string()))?;
            lines.extend(fields);
        }
        let la: Vec<&str> = ma
            .content
            .layers
            .iter()
            .map(|l| l.digest.as_str())
            .collect();
        let lb: Vec<&str> = mb
            .content
            .layers
            .iter()
            .map(|l| l.digest.as_str())
            .collect();
        if la != lb {
            let changes = compare_files(
                Side {
                    source: a.source.as_ref(),
                    manifest: &ma.content,
                },
                Side {
                    source: b.source.as_ref(),
                    manifest: &mb.content,
                },
            )
            .map_err(|e| Error::Output(e.to_string()))?;
            if changes.is_empty() {
                lines.push(
                    "the layers differ in their tar framing only: no path, type, mode, owner, mtime, size, content or link target differs".into(),
                );
            }
            let n = changes.len();
            for c in changes.iter().take(MAX_LISTED) {
                let from = |path: &str| {
                    origin(platform, path)
                        .map(|p| format!(" ({p})"))
                        .unwrap_or_default()
                };
                lines.push(match c {
                    FileChange::OnlyA(e) => {
                        format!("{}{}: only in {}", e.path, from(&e.path), labels.0)
                    }
                    FileChange::OnlyB(e) => {
                        format!("{}{}: only in {}", e.path, from(&e.path), labels.1)
                    }
                    FileChange::Changed(e, _, fields) => {
                        format!("{}{}: {}", e.path, from(&e.path), fields.join(", "))
                    }
                });
            }
            if n > MAX_LISTED {
                lines.push(format!("… and {} more paths", n - MAX_LISTED));
            }
        }
        out.push(PlatformReport {
            platform: platform.clone(),
            equal: false,
            lines,
        });
    }
    Ok(out)
}

// ---- compose diff -----------------------------------------------------------------------

/// What `compose diff A B` found.
#[derive(Debug, Clone)]
pub struct DiffReport {
    /// The two images are the same image (the same top digest).
    pub identical: bool,
    /// What it prints, one line each.
    pub lines: Vec<String>,
}

/// `compose diff A B`: the file-level comparison per platform and, when both images
/// carry a build record, the packages whose version changed.
pub fn diff(a: &str, b: &str, insecure: bool) -> Result<DiffReport> {
    let ia = image_ref::open(a, &ImageRef::parse(a)?, insecure)?;
    let ib = image_ref::open(b, &ImageRef::parse(b)?, insecure)?;
    let mut lines = Vec::new();
    let identical = ia.top.digest == ib.top.digest;
    lines.push(format!(
        "A {a}: {}\nB {b}: {}",
        ia.top.digest, ib.top.digest
    ));
    if let (Some(ra), Some(rb)) = (image_ref::record(&ia)?, image_ref::record(&ib)?) {
        lines.extend(package_view(&ra, &rb)?);
    }
    if !identical {
        for p in compare_images(&ia, &ib, ("A", "B"), &|_, _| None)? {
            let mark = if p.equal { "equal" } else { "different" };
            lines.push(format!("{}: {mark}", p.platform));
            lines.extend(p.lines.iter().map(|l| format!("  {l}")));
        }
    }
    Ok(DiffReport { identical, lines })
}

/// The packages that differ between the locks of two build records, per architecture.
fn package_view(a: &image_ref::Record, b: &image_ref::Record) -> Result<Vec<String>> {
    let parse = |r: &image_ref::Record| -> Result<crate::lock::Lock> {
        let text = String::from_utf8_lossy(&r.lock);
        Ok(crate::lock::Lock::parse(
            &text,
            std::path::Path::new(&r.lock_name),
        )?)
    };
    let (la, lb) = (parse(a)?, parse(b)?);
    let mut lines = Vec::new();
    let archs: std::collections::BTreeSet<_> = la.archs.keys().chain(lb.archs.keys()).collect();
    for arch in archs {
        let empty = BTreeMap::new();
        let pa = la.archs.get(arch).map_or(&empty, |x| &x.packages);
        let pb = lb.archs.get(arch).map_or(&empty, |x| &x.packages);
        let names: std::collections::BTreeSet<&String> = pa.keys().chain(pb.keys()).collect();
        for name in names {
            let line = match (pa.get(name), pb.get(name)) {
                (Some(x), Some(y)) if x.version != y.version => {
                    format!("{arch}: package {name} {} → {}", x.version, y.version)
                }
                (Some(x), None) => format!("{arch}: package {name} {} only in A", x.version),
                (None, Some(y)) => format!("{arch}: package {name} {} only in B", y.version),
                _ => continue,
            };
            lines.push(line);
        }
    }
    if lines.is_empty() {
        lines.push("packages: the same versions in both build records".into());
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Blobs by digest, in memory.
    struct Blobs(BTreeMap<String, Vec<u8>>);

    impl BlobSource for Blobs {
        fn open_blob(&self, digest: &str) -> std::result::Result<Box<dyn Read + '_>, ReadError> {
            Ok(Box::new(&self.0[digest][..]))
        }
    }

    impl Blobs {
        /// A gzip'd tar layer of `(path, content)` in the order given (`None`: a
        /// directory; a name `.wh.x` is a whiteout).
        fn layer(&mut self, entries: &[(&str, Option<&str>)]) -> Descriptor {
            let mut tar = tar::Builder::new(Vec::new());
            for (path, content) in entries {
                let mut h = tar::Header::new_gnu();
                h.set_mode(0o644);
                h.set_mtime(0);
                h.set_uid(0);
                h.set_gid(0);
                match content {
                    Some(c) => {
                        h.set_entry_type(tar::EntryType::Regular);
                        h.set_size(c.len() as u64);
                        tar.append_data(&mut h, path, c.as_bytes()).unwrap();
                    }
                    None => {
                        h.set_entry_type(tar::EntryType::Directory);
                        h.set_size(0);
                        tar.append_data(&mut h, path, &[][..]).unwrap();
                    }
                }
            }
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(&tar.into_inner().unwrap()).unwrap();
            let bytes = gz.finish().unwrap();
            let digest = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
            let d = Descriptor {
                media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
                digest: digest.clone(),
                size: bytes.len() as u64,
                platform: None,
                annotations: BTreeMap::new(),
                artifact_type: None,
            };
            self.0.insert(digest, bytes);
            d
        }
    }

    fn manifest(layers: Vec<Descriptor>) -> ImageManifest {
        ImageManifest {
            media_type: None,
            config: layers[0].clone(),
            layers,
            annotations: BTreeMap::new(),
            artifact_type: None,
            subject: None,
        }
    }

    fn names(changes: &[FileChange]) -> Vec<String> {
        changes
            .iter()
            .map(|c| match c {
                FileChange::OnlyA(e) => format!("-{}", e.path),
                FileChange::OnlyB(e) => format!("+{}", e.path),
                FileChange::Changed(e, _, f) => format!("~{} {}", e.path, f.join(", ")),
            })
            .collect()
    }

    #[test]
    fn sorted_layers_merge_and_unsorted_or_layered_images_are_summarised() {
        let mut blobs = Blobs(BTreeMap::new());
        let sorted = manifest(vec![blobs.layer(&[
            ("etc", None),
            ("etc/a", Some("1")),
            ("etc/b", Some("2")),
            ("usr", None),
        ])]);
        // The same files out of order, b changed, c added, usr gone.
        let unsorted = manifest(vec![blobs.layer(&[
            ("etc/c", Some("3")),
            ("etc/b", Some("22")),
            ("etc", None),
            ("etc/a", Some("1")),
        ])]);
        // Two layers: the second removes etc/b and replaces etc/a.
        let layered = manifest(vec![
            blobs.layer(&[("etc", None), ("etc/a", Some("1")), ("etc/b", Some("2"))]),
            blobs.layer(&[("etc/.wh.b", Some("")), ("etc/a", Some("x"))]),
        ]);
        let side = |m| Side {
            source: &blobs,
            manifest: m,
        };
        assert!(compare_files(side(&sorted), side(&sorted))
            .unwrap()
            .is_empty());
        let got = names(&compare_files(side(&sorted), side(&unsorted)).unwrap());
        assert_eq!(
            got,
            [
                "~/etc/b size 1 → 2, content sha256:d4735e3a265e → sha256:785f3ec7eb32",
                "+/etc/c",
                "-/usr"
            ]
        );
        // Unsorted on the other side too.
        let got = names(&compare_files(side(&unsorted), side(&sorted)).unwrap());
        assert_eq!(got[1..], ["-/etc/c", "+/usr"]);
        let got = names(&compare_files(side(&sorted), side(&layered)).unwrap());
        assert_eq!(
            got,
            [
                "~/etc/a content sha256:6b86b273ff34 → sha256:2d711642b726",
                "-/etc/b",
                "-/usr"
            ]
        );
    }

    #[test]
    fn a_damaged_layer_is_an_error_not_a_difference() {
        let mut blobs = Blobs(BTreeMap::new());
        let mut d = blobs.layer(&[("etc", None)]);
        let good = manifest(vec![d.clone()]);
        d.size += 1;
        let bad = manifest(vec![d]);
        let side = |m| Side {
            source: &blobs,
            manifest: m,
        };
        let e = compare_files(side(&good), side(&bad)).unwrap_err();
        assert!(e.to_string().contains("the descriptor says"), "{e}");
    }
}
