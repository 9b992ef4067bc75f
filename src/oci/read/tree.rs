//! The tree read-back: the layers of one image manifest applied in order into a
//! [`Tree`] (for `compose check`), with OCI whiteouts (`.wh.<name>`, `.wh..wh..opq`).
//! Each layer is decoded by [`crate::compression`] while its SHA-256 and size are
//! checked against its descriptor.
//!
//! Device nodes and fifos are skipped: they take no part in linkage. It must not
//! choose the image (see [`super::choose`]) nor open blobs other than through a
//! [`BlobSource`].

use std::io::{self, BufReader, Read};

use super::document::{layer_compression, ImageManifest};
use super::{BlobSource, ReadError, Verified};
use crate::compression::{decoder, DecodeOptions};
use crate::deb::normalise_path;
use crate::rootfs::tree::{Node, NodeKind, Tree};

/// The tree of the layers of `manifest`, each verified.
pub fn read_tree(source: &dyn BlobSource, manifest: &ImageManifest) -> Result<Tree, ReadError> {
    let mut tree = Tree::new().map_err(|source| ReadError::Io {
        context: "cannot create the spool".into(),
        source,
    })?;
    for layer in &manifest.layers {
        read_layer(
            source,
            &layer.digest,
            layer.size,
            &layer.media_type,
            &mut tree,
        )?;
    }
    Ok(tree)
}

fn read_layer(
    source: &dyn BlobSource,
    digest: &str,
    size: u64,
    media_type: &str,
    tree: &mut Tree,
) -> Result<(), ReadError> {
    let blob = source.open_blob(digest)?;
    let mut verified = Verified::new(BufReader::with_capacity(1 << 20, blob), digest, size);
    let io_err = |source| ReadError::Io {
        context: format!("cannot read layer {digest}"),
        source,
    };
    {
        let Some(compression) = layer_compression(media_type) else {
            return Err(ReadError::Unsupported {
                what: format!("layer {digest}"),
                media_type: media_type.to_string(),
            });
        };
        let mut decoded =
            decoder(&mut verified, compression, &DecodeOptions::CHECKED).map_err(io_err)?;
        let mut archive = tar::Archive::new(&mut decoded);
        apply_layer(&mut archive, digest, tree)?;
        // The rest of the stream (tar padding, compressed trailer) is part of the blob.
        io::copy(&mut decoded, &mut io::sink()).map_err(io_err)?;
    }
    verified.finish()
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
