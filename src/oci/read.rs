//! The one reader of OCI images: typed documents ([`document`]) fed by a [`BlobSource`]
//! (an image layout directory, [`Layout`]; an `oci-archive` read in place,
//! [`archive::ArchiveSource`]), every blob checked against its
//! descriptor's SHA-256 and size as it is read ([`Verified`]). On top of it:
//!
//! - [`list`]: every manifest (exact bytes) and every blob of the image `index.json`
//!   points at, for `--push` (`crate::push`);
//! - [`Layout::select`] and [`choose`]: one image by tag and platform, and
//!   [`tree::read_tree`]: its layers back into a tree, for `compose check`
//!   (`crate::check`); [`read_image`] does all three.
//!
//! It must not write anything nor speak to a registry, and never serialises a document:
//! bytes that travel on (a manifest pushed) are the blob's own.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use sha2::{Digest as _, Sha256};

use crate::rootfs::tree::{Conflict, Tree};

pub mod archive;
pub mod document;
pub mod tree;

pub use document::{Config, Descriptor, ImageManifest, Index, Platform};

/// JSON documents larger than this are refused.
const JSON_LIMIT: u64 = 16 << 20;
/// Nested image indexes followed before giving up.
const MAX_DEPTH: usize = 4;

/// Why an image could not be read. [`ReadError::is_usage`] tells a wrong argument from a
/// damaged image.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The directory has no `oci-layout` file, its `index.json` cannot be read, or it
    /// lists no image.
    #[error("{}: not an OCI image layout ({reason}); give the directory `compose` wrote with --output", .dir.display())]
    NotALayout {
        /// The directory given.
        dir: PathBuf,
        /// Which of those it is.
        reason: String,
    },
    /// The file is not a tar holding an image layout (an `oci-archive`), or a member is
    /// missing.
    #[error("{}: not an oci-archive ({reason}); give the tar file `compose --format oci-archive` or `skopeo copy … oci-archive:FILE` wrote", .file.display())]
    NotAnArchive {
        /// The file given.
        file: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A blob (or the spool of the tree read back) cannot be opened or read.
    #[error("{context}: {source}")]
    Io {
        /// What was being read.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A document does not parse, a digest is not `sha256:<64 hex>`, a document exceeds
    /// 16 MiB, indexes nest too deep, or a layer's tar is malformed.
    #[error("{what}: {reason}")]
    Invalid {
        /// The document, digest or layer concerned.
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No entry of `index.json` carries the tag asked for.
    #[error("{}: no image tagged `{tag}` (tags: {})", .dir.display(), list_or_none(.tags))]
    NoSuchTag {
        /// The layout directory.
        dir: PathBuf,
        /// The tag asked for.
        tag: String,
        /// The tags `index.json` has, in its order.
        tags: Vec<String>,
    },
    /// `index.json` lists several images and no tag was given.
    #[error("{}: holds several images; choose one with {}:TAG (tags: {})", .dir.display(), .dir.display(), list_or_none(.tags))]
    Ambiguous {
        /// The layout directory.
        dir: PathBuf,
        /// The tags `index.json` has, in its order.
        tags: Vec<String>,
    },
    /// No image of an index (or not the one image, when asked explicitly) is for the
    /// platform wanted.
    #[error("{what}: no image for {wanted} (it has: {}); choose one with --arch", list_or_none(.available))]
    NoSuchPlatform {
        /// The index or manifest searched.
        what: String,
        /// `linux/<arch>[/<variant>]` asked for.
        wanted: String,
        /// The platforms it has, as `linux/<arch>[/<variant>]`.
        available: Vec<String>,
    },
    /// A blob's SHA-256 or size differs from its descriptor's.
    #[error("blob {digest}: {reason}; the layout is damaged or was changed after it was written")]
    Corrupt {
        /// The descriptor's digest.
        digest: String,
        /// The hash or size found.
        reason: String,
    },
    /// A descriptor's media type is not a manifest or index where one is expected, or
    /// not a layer compression compose can read.
    #[error("{what}: media type {media_type} is not supported")]
    Unsupported {
        /// The descriptor or layer.
        what: String,
        /// Its media type.
        media_type: String,
    },
    /// Applying a layer's entry to the tree read back conflicted with an entry already
    /// there.
    #[error("layer {digest}: {source}")]
    Conflict {
        /// The layer's digest.
        digest: String,
        /// The conflict.
        #[source]
        source: Conflict,
    },
}

fn list_or_none(items: &[String]) -> String {
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
                | ReadError::NotAnArchive { .. }
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

// ---- blobs -----------------------------------------------------------------------------

/// Where blobs come from, by digest. What it opens is not yet checked: [`read_document`]
/// and [`Verified`] check it against the descriptor.
pub trait BlobSource {
    /// A reader of the blob `digest`; errors when the digest is not one the source can
    /// name, or the blob cannot be opened.
    fn open_blob(&self, digest: &str) -> Result<Box<dyn Read + '_>, ReadError>;
}

/// Counts and hashes a blob's bytes as they pass, then compares them with its descriptor.
#[derive(Debug, Clone)]
pub struct BlobCheck {
    digest: String,
    size: u64,
    hasher: Sha256,
    len: u64,
}

impl BlobCheck {
    /// A check for the blob of `digest` (`sha256:<hex>`) and `size` bytes.
    pub fn new(digest: &str, size: u64) -> BlobCheck {
        BlobCheck {
            digest: digest.to_string(),
            size,
            hasher: Sha256::new(),
            len: 0,
        }
    }

    /// Count and hash the next bytes of the blob.
    pub fn update(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.len += bytes.len() as u64;
    }

    /// After the last byte: do digest and size match the descriptor's?
    pub fn finish(self) -> Result<(), ReadError> {
        let actual = format!("sha256:{}", hex::encode(self.hasher.finalize()));
        if actual != self.digest {
            return Err(ReadError::Corrupt {
                digest: self.digest,
                reason: format!("its content hashes to {actual}"),
            });
        }
        if self.len != self.size {
            return Err(ReadError::Corrupt {
                digest: self.digest,
                reason: format!("{} bytes, the descriptor says {}", self.len, self.size),
            });
        }
        Ok(())
    }
}

/// A blob's reader that checks what passes through ([`BlobCheck`]); [`Verified::finish`]
/// reads the rest and says whether it all matched.
pub struct Verified<R> {
    inner: R,
    check: BlobCheck,
}

impl<R: Read> Verified<R> {
    /// Wrap `inner`, the blob of `digest` and `size` bytes.
    pub fn new(inner: R, digest: &str, size: u64) -> Verified<R> {
        Verified {
            inner,
            check: BlobCheck::new(digest, size),
        }
    }

    /// Read to the end, then compare with the descriptor.
    pub fn finish(mut self) -> Result<(), ReadError> {
        io::copy(&mut self, &mut io::sink()).map_err(|source| ReadError::Io {
            context: format!("cannot read blob {}", self.check.digest),
            source,
        })?;
        self.check.finish()
    }
}

impl<R: Read> Read for Verified<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.check.update(&buf[..n]);
        Ok(n)
    }
}

/// A JSON document: its descriptor, its exact bytes (verified) and what they say.
#[derive(Debug, Clone)]
pub struct Document<T> {
    /// The descriptor it was read by.
    pub descriptor: Descriptor,
    /// The blob's bytes, checked against the descriptor.
    pub bytes: Vec<u8>,
    /// The bytes parsed.
    pub content: T,
}

/// Read, verify and parse the document `descriptor` names; `what` names it in errors.
pub fn read_document<T: DeserializeOwned>(
    source: &dyn BlobSource,
    descriptor: &Descriptor,
    what: &str,
) -> Result<Document<T>, ReadError> {
    let digest = &descriptor.digest;
    let mut verified = Verified::new(source.open_blob(digest)?, digest, descriptor.size);
    let mut bytes = Vec::new();
    (&mut verified)
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
    verified.finish()?;
    let content = document::parse(&bytes, what)?;
    Ok(Document {
        descriptor: descriptor.clone(),
        bytes,
        content,
    })
}

// ---- the image layout ------------------------------------------------------------------

/// An OCI image layout directory: `oci-layout`, `index.json`, `blobs/sha256/<hex>`.
#[derive(Debug, Clone)]
pub struct Layout {
    dir: PathBuf,
}

impl Layout {
    /// The layout at `dir` (it must have an `oci-layout` file).
    pub fn open(dir: &Path) -> Result<Layout, ReadError> {
        if !dir.join("oci-layout").is_file() {
            return Err(ReadError::NotALayout {
                dir: dir.to_path_buf(),
                reason: "no oci-layout file".into(),
            });
        }
        Ok(Layout {
            dir: dir.to_path_buf(),
        })
    }

    /// The layout directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `index.json`.
    pub fn index(&self) -> Result<Index, ReadError> {
        let path = self.dir.join("index.json");
        let bytes = std::fs::read(&path).map_err(|e| ReadError::NotALayout {
            dir: self.dir.clone(),
            reason: format!("cannot read index.json: {e}"),
        })?;
        document::parse(&bytes, &path.display().to_string())
    }

    /// The path of a blob; only `sha256:<64 hex>` digests (no path tricks).
    pub fn blob_path(&self, digest: &str) -> Result<PathBuf, ReadError> {
        let hex = digest
            .strip_prefix("sha256:")
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| ReadError::Invalid {
                what: format!("digest `{digest}`"),
                reason: "only sha256:<64 hex digits> digests are supported".into(),
            })?;
        Ok(self.dir.join("blobs/sha256").join(hex))
    }

    /// The entry of `index` tagged `tag`, or the only image when no tag is given
    /// (artifacts that refer to an image, such as its build record, are not images).
    pub fn select<'i>(
        &self,
        index: &'i Index,
        tag: Option<&str>,
    ) -> Result<&'i Descriptor, ReadError> {
        select(&self.dir, index, tag)
    }

    /// The artifacts `index.json` lists whose `subject` is `subject` (a digest).
    pub fn referrers(&self, subject: &str) -> Result<Vec<Descriptor>, ReadError> {
        referrers_in(self, &self.index()?, subject)
    }
}

/// The artifacts of a layout's `index` (entries with an `artifactType`) whose manifest's
/// `subject` is the digest `subject`, in index order.
pub fn referrers_in(
    source: &dyn BlobSource,
    index: &Index,
    subject: &str,
) -> Result<Vec<Descriptor>, ReadError> {
    let mut found = Vec::new();
    for d in index.manifests.iter().filter(|d| d.artifact_type.is_some()) {
        let what = format!("artifact manifest {}", d.digest);
        let m: Document<ImageManifest> = read_document(source, d, &what)?;
        if m.content.subject.as_ref().map(|s| s.digest.as_str()) == Some(subject) {
            found.push(d.clone());
        }
    }
    Ok(found)
}

/// The entry of `index` (of the layout or archive at `dir`) tagged `tag`, or the only
/// image when no tag is given.
pub fn select<'i>(
    dir: &Path,
    index: &'i Index,
    tag: Option<&str>,
) -> Result<&'i Descriptor, ReadError> {
    {
        let tags = || -> Vec<String> {
            index
                .manifests
                .iter()
                .filter_map(|d| d.ref_name().map(str::to_string))
                .collect()
        };
        match tag {
            Some(t) => index
                .manifests
                .iter()
                .find(|d| d.ref_name() == Some(t))
                .ok_or_else(|| ReadError::NoSuchTag {
                    dir: dir.to_path_buf(),
                    tag: t.to_string(),
                    tags: tags(),
                }),
            // Referrers of the image (entries with an `artifactType`) are not images.
            None => match index
                .manifests
                .iter()
                .filter(|d| d.artifact_type.is_none())
                .collect::<Vec<_>>()
                .as_slice()
            {
                [one] => Ok(one),
                [] => Err(ReadError::NotALayout {
                    dir: dir.to_path_buf(),
                    reason: "index.json lists no image".into(),
                }),
                _ => Err(ReadError::Ambiguous {
                    dir: dir.to_path_buf(),
                    tags: tags(),
                }),
            },
        }
    }
}

impl BlobSource for Layout {
    fn open_blob(&self, digest: &str) -> Result<Box<dyn Read + '_>, ReadError> {
        let path = self.blob_path(digest)?;
        let file = File::open(&path).map_err(|source| ReadError::Io {
            context: format!("cannot open blob {}", path.display()),
            source,
        })?;
        Ok(Box::new(file))
    }
}

// ---- every manifest and blob of an image (push) ----------------------------------------

/// The image one descriptor of `index.json` names: the image index and its image
/// manifests, or one image manifest.
#[derive(Debug, Clone)]
pub struct Listing {
    /// The image index, when there is one.
    pub index: Option<Document<Index>>,
    /// The image manifests: the index's, in its order, or the one.
    pub images: Vec<Document<ImageManifest>>,
}

/// What a blob is to its image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobRole {
    /// The image config.
    Config,
    /// A layer.
    Layer,
}

/// A config or layer blob of a [`Listing`].
#[derive(Debug, Clone, Copy)]
pub struct ListedBlob<'a> {
    /// Its descriptor in the image manifest.
    pub descriptor: &'a Descriptor,
    /// Config or layer.
    pub role: BlobRole,
    /// The first image of [`Listing::images`] that names it.
    pub image: &'a Document<ImageManifest>,
}

impl Listing {
    /// The document `index.json` points at (the index, or the one manifest): its
    /// descriptor and exact bytes.
    pub fn top(&self) -> (&Descriptor, &[u8]) {
        match &self.index {
            Some(i) => (&i.descriptor, &i.bytes),
            None => (&self.images[0].descriptor, &self.images[0].bytes),
        }
    }

    /// Every config and layer blob once, in the order the images name them.
    pub fn blobs(&self) -> Vec<ListedBlob<'_>> {
        let mut seen = std::collections::BTreeSet::new();
        let mut out = Vec::new();
        for image in &self.images {
            let config = std::iter::once((BlobRole::Config, &image.content.config));
            let layers = image.content.layers.iter().map(|l| (BlobRole::Layer, l));
            for (role, descriptor) in config.chain(layers) {
                if seen.insert(descriptor.digest.as_str()) {
                    out.push(ListedBlob {
                        descriptor,
                        role,
                        image,
                    });
                }
            }
        }
        out
    }
}

/// Read (and verify) the image index or image manifest `top` names and every image
/// manifest under it.
pub fn list(source: &dyn BlobSource, top: &Descriptor) -> Result<Listing, ReadError> {
    let manifest = |d: &Descriptor| -> Result<Document<ImageManifest>, ReadError> {
        if !document::is_manifest(&d.media_type) {
            return Err(ReadError::Unsupported {
                what: format!("descriptor {}", d.digest),
                media_type: d.media_type.clone(),
            });
        }
        read_document(source, d, &format!("image manifest {}", d.digest))
    };
    if !document::is_index(&top.media_type) {
        return Ok(Listing {
            index: None,
            images: vec![manifest(top)?],
        });
    }
    let index: Document<Index> =
        read_document(source, top, &format!("image index {}", top.digest))?;
    let images = index
        .content
        .manifests
        .iter()
        .map(manifest)
        .collect::<Result<_, _>>()?;
    Ok(Listing {
        index: Some(index),
        images,
    })
}

// ---- one image by platform (check) -----------------------------------------------------

/// Which image of an index to take.
#[derive(Debug, Clone, Default)]
pub struct Wanted {
    /// OCI architecture (`amd64`, `arm64`, …).
    pub architecture: String,
    /// OCI variant (`v8`, …); None matches any.
    pub variant: Option<String>,
    /// Given by the user: a mismatch is an error even with one image.
    pub explicit: bool,
}

impl Wanted {
    fn matches(&self, architecture: &str, variant: Option<&str>) -> bool {
        self.architecture == architecture
            && match (&self.variant, variant) {
                (Some(w), Some(v)) => w == v,
                _ => true,
            }
    }

    fn name(&self) -> String {
        linux_name(&self.architecture, self.variant.as_deref())
    }
}

fn linux_name(architecture: &str, variant: Option<&str>) -> String {
    match variant {
        Some(v) => format!("linux/{architecture}/{v}"),
        None => format!("linux/{architecture}"),
    }
}

/// The image manifest chosen, and its config.
#[derive(Debug, Clone)]
pub struct Chosen {
    /// The image manifest.
    pub manifest: Document<ImageManifest>,
    /// Its image config.
    pub config: Document<Config>,
}

/// Follow `top` through image indexes to the image manifest for `wanted` (the only one
/// of an index, unless `wanted` is explicit), and read its config.
pub fn choose(
    source: &dyn BlobSource,
    top: &Descriptor,
    wanted: &Wanted,
) -> Result<Chosen, ReadError> {
    let mut descriptor = top.clone();
    for _ in 0..MAX_DEPTH {
        if document::is_manifest(&descriptor.media_type) {
            return read_chosen(source, &descriptor, wanted);
        }
        if !document::is_index(&descriptor.media_type) {
            return Err(ReadError::Unsupported {
                what: format!("descriptor {}", descriptor.digest),
                media_type: descriptor.media_type.clone(),
            });
        }
        let what = format!("image index {}", descriptor.digest);
        let index: Document<Index> = read_document(source, &descriptor, &what)?;
        let list = &index.content.manifests;
        let pick = if !wanted.explicit && list.len() == 1 {
            list.first()
        } else {
            list.iter().find(|d| {
                d.platform
                    .as_ref()
                    .is_some_and(|p| wanted.matches(&p.architecture, p.variant.as_deref()))
            })
        };
        descriptor = match pick {
            Some(d) => d.clone(),
            None => {
                return Err(ReadError::NoSuchPlatform {
                    what,
                    wanted: wanted.name(),
                    available: list
                        .iter()
                        .filter_map(|d| d.platform.as_ref())
                        .map(|p| linux_name(&p.architecture, p.variant.as_deref()))
                        .collect(),
                })
            }
        };
    }
    Err(ReadError::Invalid {
        what: format!("image index {}", top.digest),
        reason: format!("image indexes nested deeper than {MAX_DEPTH}"),
    })
}

fn read_chosen(
    source: &dyn BlobSource,
    descriptor: &Descriptor,
    wanted: &Wanted,
) -> Result<Chosen, ReadError> {
    let what = format!("image manifest {}", descriptor.digest);
    let manifest: Document<ImageManifest> = read_document(source, descriptor, &what)?;
    let config_descriptor = &manifest.content.config;
    let config: Document<Config> = read_document(
        source,
        config_descriptor,
        &format!("image config {}", config_descriptor.digest),
    )?;
    let c = &config.content;
    if wanted.explicit && !wanted.matches(&c.architecture, c.variant.as_deref()) {
        return Err(ReadError::NoSuchPlatform {
            what,
            wanted: wanted.name(),
            available: vec![linux_name(&c.architecture, c.variant.as_deref())],
        });
    }
    Ok(Chosen { manifest, config })
}

/// One image read back.
#[derive(Debug)]
pub struct Image {
    /// The tree of its layers applied in order.
    pub tree: Tree,
    /// `sha256:…` of the image manifest.
    pub manifest_digest: String,
    /// OCI architecture from the image config.
    pub architecture: String,
    /// OCI variant from the image config.
    pub variant: Option<String>,
    /// Number of layers of the manifest.
    pub layers: usize,
}

/// Read the image of the layout at `dir` (tagged `tag`, for `wanted`) into a tree.
pub fn read_image(dir: &Path, tag: Option<&str>, wanted: &Wanted) -> Result<Image, ReadError> {
    let layout = Layout::open(dir)?;
    let index = layout.index()?;
    let top = layout.select(&index, tag)?;
    let Chosen { manifest, config } = choose(&layout, top, wanted)?;
    let tree = tree::read_tree(&layout, &manifest.content)?;
    Ok(Image {
        tree,
        manifest_digest: manifest.descriptor.digest,
        architecture: config.content.architecture,
        variant: config.content.variant,
        layers: manifest.content.layers.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::{ImageConfig, LayoutWriter};
    use crate::rootfs::tree::{Node, NodeKind};

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

    /// A layout of one image per architecture (the same tree), tagged `t`.
    fn write_layout(dir: &Path, tree: &Tree, archs: &[(&str, Option<&str>)]) -> String {
        let mut w = LayoutWriter::create_beside(dir).unwrap();
        let layer = w.write_layer(tree, 0).unwrap();
        let manifests = archs
            .iter()
            .map(|(arch, variant)| {
                let config = ImageConfig {
                    architecture: arch.to_string(),
                    variant: variant.map(str::to_string),
                    ..Default::default()
                };
                w.write_image(&config, &layer, 0, &Default::default())
                    .unwrap()
                    .manifest
            })
            .collect();
        let digest = w.finish(manifests, "t").unwrap();
        w.commit(dir).unwrap();
        digest
    }

    fn explicit(architecture: &str, variant: Option<&str>) -> Wanted {
        Wanted {
            architecture: architecture.into(),
            variant: variant.map(str::to_string),
            explicit: true,
        }
    }

    #[test]
    fn reads_back_what_the_writer_wrote() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("img");
        let digest = write_layout(&out, &tree_with_files(), &[("amd64", None)]);
        let image = read_image(&out, None, &Wanted::default()).unwrap();
        assert_eq!(image.manifest_digest, digest);
        assert_eq!((image.architecture.as_str(), image.layers), ("amd64", 1));
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
        read_image(&out, Some("t"), &Wanted::default()).unwrap();
        let e = read_image(&out, Some("nope"), &Wanted::default()).unwrap_err();
        assert!(e.is_usage() && e.to_string().contains("tags: t"), "{e}");
        let e = read_image(&out, None, &explicit("arm64", None)).unwrap_err();
        assert!(e.to_string().contains("linux/amd64"), "{e}");
        let e = read_image(&tmp.path().join("nowhere"), None, &Wanted::default()).unwrap_err();
        assert!(
            e.is_usage() && e.to_string().contains("no oci-layout file"),
            "{e}"
        );
    }

    #[test]
    fn chooses_the_platform_of_an_index() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("img");
        write_layout(
            &out,
            &tree_with_files(),
            &[("amd64", None), ("arm64", Some("v8"))],
        );
        let image = read_image(&out, None, &explicit("arm64", Some("v8"))).unwrap();
        assert_eq!(
            (image.architecture.as_str(), image.variant.as_deref()),
            ("arm64", Some("v8"))
        );
        // Not explicit: still the one asked for, when there are several.
        let wanted = Wanted {
            explicit: false,
            ..explicit("amd64", None)
        };
        assert_eq!(
            read_image(&out, None, &wanted).unwrap().architecture,
            "amd64"
        );
        let e = read_image(&out, None, &explicit("riscv64", None)).unwrap_err();
        assert!(e.is_usage(), "{e}");
        assert!(
            e.to_string()
                .contains("no image for linux/riscv64 (it has: linux/amd64, linux/arm64/v8)"),
            "{e}"
        );
    }

    #[test]
    fn lists_every_manifest_and_blob_with_exact_bytes() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("img");
        let top_digest = write_layout(
            &out,
            &tree_with_files(),
            &[("amd64", None), ("arm64", Some("v8"))],
        );
        let layout = Layout::open(&out).unwrap();
        let index = layout.index().unwrap();
        let listing = list(&layout, layout.select(&index, None).unwrap()).unwrap();
        let (top, bytes) = listing.top();
        assert_eq!(top.digest, top_digest);
        assert_eq!(
            bytes,
            std::fs::read(layout.blob_path(&top_digest).unwrap()).unwrap()
        );
        let platforms: Vec<String> = listing
            .images
            .iter()
            .map(|m| m.descriptor.platform.as_ref().unwrap().to_string())
            .collect();
        assert_eq!(platforms, ["linux/amd64", "linux/arm64/v8"]);
        // Two configs, one shared layer (listed once, with the first image naming it).
        let blobs = listing.blobs();
        let roles: Vec<BlobRole> = blobs.iter().map(|b| b.role).collect();
        assert_eq!(roles, [BlobRole::Config, BlobRole::Layer, BlobRole::Config]);
        assert!(std::ptr::eq(blobs[1].image, &listing.images[0]));
        // One architecture: the manifest is the top.
        let one = tmp.path().join("one");
        let digest = write_layout(&one, &tree_with_files(), &[("amd64", None)]);
        let layout = Layout::open(&one).unwrap();
        let index = layout.index().unwrap();
        let listing = list(&layout, &index.manifests[0]).unwrap();
        assert!(listing.index.is_none());
        assert_eq!(listing.top().0.digest, digest);
        assert_eq!(listing.blobs().len(), 2);
    }

    #[test]
    fn a_changed_layer_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("img");
        write_layout(&out, &tree_with_files(), &[("amd64", None)]);
        let image = read_image(&out, None, &Wanted::default()).unwrap();
        let layout = Layout::open(&out).unwrap();
        let manifest: ImageManifest = document::parse(
            &std::fs::read(layout.blob_path(&image.manifest_digest).unwrap()).unwrap(),
            "manifest",
        )
        .unwrap();
        let layer = layout.blob_path(&manifest.layers[0].digest).unwrap();
        // The same tar, validly re-compressed: only the digest can tell.
        let mut tar = Vec::new();
        flate2::read::MultiGzDecoder::new(&std::fs::read(&layer).unwrap()[..])
            .read_to_end(&mut tar)
            .unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(1));
        std::io::Write::write_all(&mut gz, &tar).unwrap();
        std::fs::write(&layer, gz.finish().unwrap()).unwrap();
        let e = read_image(&out, None, &Wanted::default()).unwrap_err();
        assert!(!e.is_usage(), "{e}");
        assert!(
            e.to_string().contains("its content hashes to sha256:"),
            "{e}"
        );
    }

    #[test]
    fn a_document_of_another_size_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("img");
        write_layout(&out, &tree_with_files(), &[("amd64", None)]);
        let layout = Layout::open(&out).unwrap();
        let mut top = layout.index().unwrap().manifests.remove(0);
        top.size += 1;
        let e = list(&layout, &top).unwrap_err();
        assert!(e.to_string().contains("the descriptor says"), "{e}");
        top.digest = "sha256:../../etc/passwd".into();
        let e = list(&layout, &top).unwrap_err();
        assert!(e.to_string().contains("only sha256:<64 hex digits>"), "{e}");
    }

    #[test]
    fn an_oci_archive_is_read_in_place() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("img");
        let digest = write_layout(
            &out,
            &tree_with_files(),
            &[("amd64", None), ("arm64", None)],
        );
        let file = tmp.path().join("img.tar");
        crate::oci::archive::write_oci_archive(&out, &file, 0).unwrap();
        let archive = archive::ArchiveSource::open(&file).unwrap();
        let index = archive.index().unwrap();
        let top = select(&file, &index, Some("t")).unwrap();
        assert_eq!(top.digest, digest);
        // Every manifest and blob, read from the tar at its offset and checked.
        let listing = list(&archive, top).unwrap();
        for b in listing.blobs() {
            let r = archive.open_blob(&b.descriptor.digest).unwrap();
            Verified::new(r, &b.descriptor.digest, b.descriptor.size)
                .finish()
                .unwrap();
        }
        let chosen = choose(&archive, top, &explicit("arm64", None)).unwrap();
        let t = tree::read_tree(&archive, &chosen.manifest.content).unwrap();
        assert!(t.get("/usr/lib/a").is_some());
        // A blob the archive lacks is a damaged image, not a wrong argument.
        let e = archive
            .open_blob(&format!("sha256:{}", "0".repeat(64)))
            .err()
            .unwrap();
        assert!(
            !e.is_usage() && e.to_string().contains("no member blobs/sha256/000"),
            "{e}"
        );
        // Not a tar, or a tar without oci-layout: a wrong argument.
        let e = archive::ArchiveSource::open(&out.join("index.json")).unwrap_err();
        assert!(
            e.is_usage() && e.to_string().contains("not an oci-archive"),
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
