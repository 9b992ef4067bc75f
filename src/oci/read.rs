//! Reading an OCI image layout back into a [`Tree`] (for `compose check`):
//! `index.json` → (image index →) image manifest → layer blobs → tar entries, each blob's
//! SHA-256 and size checked against its descriptor while it is read.
//!
//! Layers are applied in order with OCI whiteouts (`.wh.<name>`, `.wh..wh..opq`).
//! Device nodes and fifos are skipped: they take no part in linkage.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::deb::normalise_path;
use crate::rootfs::tree::{Conflict, Node, NodeKind, Tree};

use super::{ANNOTATION_REF_NAME, MEDIA_TYPE_INDEX, MEDIA_TYPE_MANIFEST};

const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// JSON documents larger than this are refused.
const JSON_LIMIT: u64 = 16 << 20;
/// Nested image indexes followed before giving up.
const MAX_DEPTH: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{}: not an OCI image layout ({reason}); give the directory `compose` wrote with --output", .dir.display())]
    NotALayout { dir: PathBuf, reason: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("{what}: {reason}")]
    Invalid { what: String, reason: String },
    #[error("{}: no image tagged `{tag}` (tags: {})", .dir.display(), list(.tags))]
    NoSuchTag {
        dir: PathBuf,
        tag: String,
        tags: Vec<String>,
    },
    #[error("{}: holds several images; choose one with {}:TAG (tags: {})", .dir.display(), .dir.display(), list(.tags))]
    Ambiguous { dir: PathBuf, tags: Vec<String> },
    #[error("{what}: no image for {wanted} (it has: {}); choose one with --arch", list(.available))]
    NoSuchPlatform {
        what: String,
        wanted: String,
        available: Vec<String>,
    },
    #[error("blob {digest}: {reason}; the layout is damaged or was changed after it was written")]
    Corrupt { digest: String, reason: String },
    #[error("{what}: media type {media_type} is not supported")]
    Unsupported { what: String, media_type: String },
    #[error("layer {digest}: {source}")]
    Conflict {
        digest: String,
        #[source]
        source: Conflict,
    },
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

impl ReadError {
    /// The user pointed at the wrong thing (exit code 2), rather than a damaged image.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            ReadError::NotALayout { .. }
                | ReadError::NoSuchTag { .. }
                | ReadError::Ambiguous { .. }
                | ReadError::NoSuchPlatform { .. }
        )
    }
}

/// `DIR` or `DIR:TAG`: the tag is split off only when `DIR` exists and the whole does not.
pub fn parse_image_ref(s: &str) -> (PathBuf, Option<String>) {
    if !Path::new(s).exists() {
        if let Some((dir, tag)) = s.rsplit_once(':') {
            if !tag.is_empty() && !tag.contains('/') && Path::new(dir).is_dir() {
                return (PathBuf::from(dir), Some(tag.to_string()));
            }
        }
    }
    (PathBuf::from(s), None)
}

/// Which image of an index to take.
#[derive(Debug, Clone, Default)]
pub struct Platform {
    /// OCI architecture (`amd64`, `arm64`, …).
    pub architecture: String,
    pub variant: Option<String>,
    /// Given by the user: a mismatch is an error even with one image.
    pub explicit: bool,
}

/// One image read back.
#[derive(Debug)]
pub struct Image {
    pub tree: Tree,
    /// `sha256:…` of the image manifest.
    pub manifest_digest: String,
    /// OCI architecture and variant from the image config.
    pub architecture: String,
    pub variant: Option<String>,
    pub layers: usize,
}

/// A descriptor as found in an index.
#[derive(Debug, Clone)]
struct Desc {
    media_type: String,
    digest: String,
    size: u64,
    platform: Option<(String, Option<String>)>,
    tag: Option<String>,
}

fn descriptors(index: &Value, what: &str) -> Result<Vec<Desc>, ReadError> {
    let invalid = |reason: &str| ReadError::Invalid {
        what: what.to_string(),
        reason: reason.to_string(),
    };
    let list = index["manifests"]
        .as_array()
        .ok_or_else(|| invalid("no `manifests` array"))?;
    list.iter()
        .map(|d| {
            Ok(Desc {
                media_type: d["mediaType"].as_str().unwrap_or("").to_string(),
                digest: d["digest"]
                    .as_str()
                    .ok_or_else(|| invalid("a descriptor without `digest`"))?
                    .to_string(),
                size: d["size"]
                    .as_u64()
                    .ok_or_else(|| invalid("a descriptor without `size`"))?,
                platform: d["platform"]["architecture"].as_str().map(|a| {
                    (
                        a.to_string(),
                        d["platform"]["variant"].as_str().map(str::to_string),
                    )
                }),
                tag: d["annotations"][ANNOTATION_REF_NAME]
                    .as_str()
                    .map(str::to_string),
            })
        })
        .collect()
}

fn platform_name(arch: &str, variant: Option<&str>) -> String {
    match variant {
        Some(v) => format!("linux/{arch}/{v}"),
        None => format!("linux/{arch}"),
    }
}

fn matches(wanted: &Platform, arch: &str, variant: Option<&str>) -> bool {
    wanted.architecture == arch
        && match (&wanted.variant, variant) {
            (Some(w), Some(v)) => w == v,
            _ => true,
        }
}

/// Read the image of the layout at `dir` (tagged `tag`, for `platform`) into a tree.
pub fn read_image(dir: &Path, tag: Option<&str>, platform: &Platform) -> Result<Image, ReadError> {
    let not_layout = |reason: String| ReadError::NotALayout {
        dir: dir.to_path_buf(),
        reason,
    };
    if !dir.join("oci-layout").is_file() {
        return Err(not_layout("no oci-layout file".into()));
    }
    let index_path = dir.join("index.json");
    let index_bytes = std::fs::read(&index_path)
        .map_err(|e| not_layout(format!("cannot read index.json: {e}")))?;
    let what = index_path.display().to_string();
    let index: Value = serde_json::from_slice(&index_bytes).map_err(|e| ReadError::Invalid {
        what: what.clone(),
        reason: e.to_string(),
    })?;
    let top = descriptors(&index, &what)?;
    let tags: Vec<String> = top.iter().filter_map(|d| d.tag.clone()).collect();
    let chosen = match tag {
        Some(t) => top
            .iter()
            .find(|d| d.tag.as_deref() == Some(t))
            .ok_or_else(|| ReadError::NoSuchTag {
                dir: dir.to_path_buf(),
                tag: t.to_string(),
                tags: tags.clone(),
            })?,
        None => match top.as_slice() {
            [one] => one,
            [] => return Err(not_layout("index.json lists no image".into())),
            _ => {
                return Err(ReadError::Ambiguous {
                    dir: dir.to_path_buf(),
                    tags,
                })
            }
        },
    };
    let mut desc = chosen.clone();
    for _ in 0..MAX_DEPTH {
        match desc.media_type.as_str() {
            MEDIA_TYPE_MANIFEST | DOCKER_MANIFEST => return read_manifest(dir, &desc, platform),
            MEDIA_TYPE_INDEX | DOCKER_LIST => {
                let bytes = read_blob(dir, &desc.digest, desc.size)?;
                let what = format!("image index {}", desc.digest);
                let index: Value =
                    serde_json::from_slice(&bytes).map_err(|e| ReadError::Invalid {
                        what: what.clone(),
                        reason: e.to_string(),
                    })?;
                let list = descriptors(&index, &what)?;
                let available: Vec<String> = list
                    .iter()
                    .filter_map(|d| d.platform.as_ref())
                    .map(|(a, v)| platform_name(a, v.as_deref()))
                    .collect();
                let pick = if !platform.explicit && list.len() == 1 {
                    list.first()
                } else {
                    list.iter().find(|d| {
                        d.platform
                            .as_ref()
                            .is_some_and(|(a, v)| matches(platform, a, v.as_deref()))
                    })
                };
                desc = pick
                    .ok_or_else(|| ReadError::NoSuchPlatform {
                        what,
                        wanted: platform_name(&platform.architecture, platform.variant.as_deref()),
                        available,
                    })?
                    .clone();
            }
            other => {
                return Err(ReadError::Unsupported {
                    what: format!("descriptor {}", desc.digest),
                    media_type: other.to_string(),
                })
            }
        }
    }
    Err(ReadError::Invalid {
        what,
        reason: format!("image indexes nested deeper than {MAX_DEPTH}"),
    })
}

fn read_manifest(dir: &Path, desc: &Desc, platform: &Platform) -> Result<Image, ReadError> {
    let what = format!("image manifest {}", desc.digest);
    let parse = |bytes: &[u8], what: &str| -> Result<Value, ReadError> {
        serde_json::from_slice(bytes).map_err(|e| ReadError::Invalid {
            what: what.to_string(),
            reason: e.to_string(),
        })
    };
    let manifest = parse(&read_blob(dir, &desc.digest, desc.size)?, &what)?;
    let config_digest = manifest["config"]["digest"].as_str().unwrap_or("");
    let config_size = manifest["config"]["size"].as_u64().unwrap_or(0);
    let config = parse(
        &read_blob(dir, config_digest, config_size)?,
        &format!("image config {config_digest}"),
    )?;
    let architecture = config["architecture"].as_str().unwrap_or("").to_string();
    let variant = config["variant"].as_str().map(str::to_string);
    if platform.explicit && !matches(platform, &architecture, variant.as_deref()) {
        return Err(ReadError::NoSuchPlatform {
            what,
            wanted: platform_name(&platform.architecture, platform.variant.as_deref()),
            available: vec![platform_name(&architecture, variant.as_deref())],
        });
    }
    let layers = manifest["layers"]
        .as_array()
        .ok_or_else(|| ReadError::Invalid {
            what: what.clone(),
            reason: "no `layers` array".into(),
        })?;
    let mut tree = Tree::new().map_err(|source| ReadError::Io {
        context: "cannot create the spool".into(),
        source,
    })?;
    for layer in layers {
        let digest = layer["digest"].as_str().unwrap_or("").to_string();
        let size = layer["size"].as_u64().unwrap_or(0);
        let media_type = layer["mediaType"].as_str().unwrap_or("");
        read_layer(dir, &digest, size, media_type, &mut tree)?;
    }
    Ok(Image {
        tree,
        manifest_digest: desc.digest.clone(),
        architecture,
        variant,
        layers: layers.len(),
    })
}

/// The path of a blob; only `sha256:<64 hex>` digests (no path tricks).
fn blob_path(dir: &Path, digest: &str) -> Result<PathBuf, ReadError> {
    let hex = digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| ReadError::Invalid {
            what: format!("digest `{digest}`"),
            reason: "only sha256:<64 hex digits> digests are supported".into(),
        })?;
    Ok(dir.join("blobs/sha256").join(hex))
}

fn open_blob(dir: &Path, digest: &str) -> Result<File, ReadError> {
    let path = blob_path(dir, digest)?;
    File::open(&path).map_err(|source| ReadError::Io {
        context: format!("cannot open blob {}", path.display()),
        source,
    })
}

/// A whole (JSON) blob, verified.
fn read_blob(dir: &Path, digest: &str, size: u64) -> Result<Vec<u8>, ReadError> {
    let file = open_blob(dir, digest)?;
    let mut bytes = Vec::new();
    let mut hashing = Hashing::new(file);
    (&mut hashing)
        .take(JSON_LIMIT + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| ReadError::Io {
            context: format!("cannot read blob {digest}"),
            source,
        })?;
    if bytes.len() as u64 > JSON_LIMIT {
        return Err(ReadError::Invalid {
            what: format!("blob {digest}"),
            reason: format!("larger than {JSON_LIMIT} bytes"),
        });
    }
    hashing.verify(digest, size)?;
    Ok(bytes)
}

/// A reader that hashes and counts what passes through.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    len: u64,
}

impl<R: Read> Hashing<R> {
    fn new(inner: R) -> Hashing<R> {
        Hashing {
            inner,
            hasher: Sha256::new(),
            len: 0,
        }
    }

    /// Read to the end, then compare with the descriptor.
    fn verify(mut self, digest: &str, size: u64) -> Result<(), ReadError> {
        io::copy(&mut self, &mut io::sink()).map_err(|source| ReadError::Io {
            context: format!("cannot read blob {digest}"),
            source,
        })?;
        let actual = format!("sha256:{}", hex::encode(self.hasher.finalize()));
        if actual != digest {
            return Err(ReadError::Corrupt {
                digest: digest.to_string(),
                reason: format!("its content hashes to {actual}"),
            });
        }
        if self.len != size {
            return Err(ReadError::Corrupt {
                digest: digest.to_string(),
                reason: format!("{} bytes, the descriptor says {size}", self.len),
            });
        }
        Ok(())
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

fn read_layer(
    dir: &Path,
    digest: &str,
    size: u64,
    media_type: &str,
    tree: &mut Tree,
) -> Result<(), ReadError> {
    let file = open_blob(dir, digest)?;
    let mut hashing = Hashing::new(BufReader::with_capacity(1 << 20, file));
    let io_err = |source| ReadError::Io {
        context: format!("cannot read layer {digest}"),
        source,
    };
    {
        let mut decoded: Box<dyn Read + '_> = match media_type {
            "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip" => {
                Box::new(flate2::read::MultiGzDecoder::new(&mut hashing))
            }
            "application/vnd.oci.image.layer.v1.tar+zstd" => {
                Box::new(zstd::stream::read::Decoder::new(&mut hashing).map_err(io_err)?)
            }
            "application/vnd.oci.image.layer.v1.tar" => Box::new(&mut hashing),
            other => {
                return Err(ReadError::Unsupported {
                    what: format!("layer {digest}"),
                    media_type: other.to_string(),
                })
            }
        };
        let mut archive = tar::Archive::new(&mut decoded);
        apply_layer(&mut archive, digest, tree)?;
        // The rest of the stream (tar padding, compressed trailer) is part of the blob.
        io::copy(&mut decoded, &mut io::sink()).map_err(io_err)?;
    }
    hashing.verify(digest, size)
}

fn apply_layer<R: Read>(
    archive: &mut tar::Archive<R>,
    digest: &str,
    tree: &mut Tree,
) -> Result<(), ReadError> {
    let what = format!("layer {digest}");
    let io_err = |source| ReadError::Io {
        context: format!("cannot read layer {digest}"),
        source,
    };
    let invalid = |reason: String| ReadError::Invalid {
        what: what.clone(),
        reason,
    };
    for entry in archive.entries().map_err(io_err)? {
        let mut entry = entry.map_err(io_err)?;
        let path =
            normalise_path(&entry.path_bytes(), &what).map_err(|e| invalid(e.to_string()))?;
        if path == "/" {
            continue;
        }
        let (parent, name) = path.rsplit_once('/').expect("absolute path");
        if let Some(hidden) = name.strip_prefix(".wh.") {
            if hidden == ".wh..opq" {
                remove_under(tree, parent, false);
            } else {
                remove_under(tree, &format!("{parent}/{hidden}"), true);
            }
            continue;
        }
        let header = entry.header();
        let field = |r: io::Result<u64>| r.map_err(io_err);
        let mode = field(header.mode().map(u64::from))? as u32 & 0o7777;
        let uid = field(header.uid())? as u32;
        let gid = field(header.gid())? as u32;
        let mtime = field(header.mtime())?;
        let link = entry
            .link_name_bytes()
            .map(|b| String::from_utf8_lossy(&b).into_owned());
        let kind = match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                NodeKind::File(tree.spool.append(&mut entry).map_err(io_err)?)
            }
            tar::EntryType::Directory => NodeKind::Dir,
            tar::EntryType::Symlink => NodeKind::Symlink(
                link.ok_or_else(|| invalid(format!("symbolic link {path} without a target")))?,
            ),
            tar::EntryType::Link => {
                let raw =
                    link.ok_or_else(|| invalid(format!("hard link {path} without a target")))?;
                let target =
                    normalise_path(raw.as_bytes(), &what).map_err(|e| invalid(e.to_string()))?;
                let target = match tree.get(&target).map(|n| &n.kind) {
                    Some(NodeKind::File(_)) => target,
                    Some(NodeKind::Hardlink(t)) => t.clone(),
                    _ => {
                        return Err(invalid(format!(
                            "hard link {path} points to {target}, which is not a file before it"
                        )))
                    }
                };
                NodeKind::Hardlink(target)
            }
            // Devices, fifos, global PAX headers: nothing the linkage check looks at.
            _ => continue,
        };
        if !matches!(kind, NodeKind::Dir)
            && matches!(tree.get(&path).map(|n| &n.kind), Some(NodeKind::Dir))
        {
            remove_under(tree, &path, false);
        }
        tree.replace(
            &path,
            Node {
                kind,
                mode,
                uid,
                gid,
                mtime,
                origin: "image".into(),
            },
        )
        .map_err(|source| ReadError::Conflict {
            digest: digest.to_string(),
            source,
        })?;
    }
    Ok(())
}

/// Remove everything below `path` (and `path` itself when `itself`).
fn remove_under(tree: &mut Tree, path: &str, itself: bool) {
    let prefix = format!("{}/", path.trim_end_matches('/'));
    let doomed: Vec<String> = tree
        .iter()
        .map(|(p, _)| p)
        .filter(|p| p.starts_with(&prefix) || (itself && p.as_str() == path))
        .cloned()
        .collect();
    for p in doomed {
        tree.remove(&p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::{ImageConfig, LayoutWriter};

    fn tree_with_files() -> Tree {
        let mut t = Tree::new().unwrap();
        let node = |kind| Node {
            kind,
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: 0,
            origin: "t".into(),
        };
        let c = t.spool.append_bytes(b"payload").unwrap();
        t.insert("/usr/lib/a", node(NodeKind::File(c))).unwrap();
        t.insert("/usr/lib/b", node(NodeKind::Hardlink("/usr/lib/a".into())))
            .unwrap();
        t.insert("/lib", node(NodeKind::Symlink("usr/lib".into())))
            .unwrap();
        t
    }

    fn write_layout(dir: &Path, tree: &Tree, arch: &str) -> String {
        let mut w = LayoutWriter::create_beside(dir).unwrap();
        let layer = w.write_layer(tree, 0).unwrap();
        let config = ImageConfig {
            architecture: arch.into(),
            ..Default::default()
        };
        let desc = w
            .write_image(&config, &layer, 0, &Default::default())
            .unwrap();
        let digest = w.finish(vec![desc.manifest], "t").unwrap();
        w.commit(dir).unwrap();
        digest
    }

    #[test]
    fn reads_back_what_the_writer_wrote() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("img");
        let digest = write_layout(&out, &tree_with_files(), "amd64");
        let image = read_image(&out, None, &Platform::default()).unwrap();
        assert_eq!(image.manifest_digest, digest);
        assert_eq!(image.architecture, "amd64");
        let t = &image.tree;
        let Some(NodeKind::File(c)) = t.get("/usr/lib/a").map(|n| &n.kind) else {
            panic!("a is not a file: {:?}", t.get("/usr/lib/a"))
        };
        assert_eq!(t.spool.read_all(c).unwrap(), b"payload");
        assert_eq!(
            t.get("/usr/lib/b").map(|n| &n.kind),
            Some(&NodeKind::Hardlink("/usr/lib/a".into()))
        );
        assert_eq!(
            t.get("/lib").map(|n| &n.kind),
            Some(&NodeKind::Symlink("usr/lib".into()))
        );
        // Tags and platforms.
        read_image(&out, Some("t"), &Platform::default()).unwrap();
        let e = read_image(&out, Some("nope"), &Platform::default()).unwrap_err();
        assert!(e.is_usage() && e.to_string().contains("tags: t"), "{e}");
        let arm = Platform {
            architecture: "arm64".into(),
            variant: None,
            explicit: true,
        };
        let e = read_image(&out, None, &arm).unwrap_err();
        assert!(e.to_string().contains("linux/amd64"), "{e}");
    }

    #[test]
    fn a_changed_layer_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("img");
        write_layout(&out, &tree_with_files(), "amd64");
        let image = read_image(&out, None, &Platform::default()).unwrap();
        let manifest: Value = serde_json::from_slice(
            &std::fs::read(blob_path(&out, &image.manifest_digest).unwrap()).unwrap(),
        )
        .unwrap();
        let layer = blob_path(&out, manifest["layers"][0]["digest"].as_str().unwrap()).unwrap();
        // The same tar, validly re-compressed: only the digest can tell.
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(&std::fs::read(&layer).unwrap()[..])
            .read_to_end(&mut tar)
            .unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(1));
        std::io::Write::write_all(&mut gz, &tar).unwrap();
        std::fs::write(&layer, gz.finish().unwrap()).unwrap();
        let e = read_image(&out, None, &Platform::default()).unwrap_err();
        assert!(!e.is_usage(), "{e}");
        assert!(
            e.to_string().contains("its content hashes to sha256:"),
            "{e}"
        );
    }

    #[test]
    fn image_refs() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().display().to_string();
        assert_eq!(parse_image_ref(&d), (PathBuf::from(&d), None));
        assert_eq!(
            parse_image_ref(&format!("{d}:latest")),
            (PathBuf::from(&d), Some("latest".into()))
        );
        assert_eq!(
            parse_image_ref("/no/such:dir"),
            (PathBuf::from("/no/such:dir"), None)
        );
    }
}
