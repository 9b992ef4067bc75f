//! The layer: the whole tree as one deterministic tar, compressed ([`Compressor`]),
//! hashed while written.
//!
//! Owns the layer's tar format ([`write_layer`]) and its `diff_id`. It reads the tree and
//! writes only to the writer it is given: no files of its own, and it never changes the
//! tree.

use std::collections::HashMap;
use std::io::{self, BufReader, Read, Write};

use sha2::{Digest, Sha256};

use super::compressor::GZIP_DEFAULT_LEVEL;
use super::{Compressor, LayerInfo, OciError};
use crate::rootfs::tree::{Node, NodeKind, Tree};

/// gzip level of a layer unless `--compression` or `[image] compression` says otherwise
/// ([`GZIP_DEFAULT_LEVEL`]). Part of the digest: changing it changes every image.
pub const GZIP_LEVEL: u32 = GZIP_DEFAULT_LEVEL;

/// Largest value of an 8-byte octal ustar field (mode, uid, gid) plus one.
const OCTAL8_LIMIT: u64 = 1 << 21;
/// Largest value of a 12-byte octal ustar field (size, mtime) plus one.
const OCTAL12_LIMIT: u64 = 1 << 33;

/// Serialise `tree` as one deterministic tar, gzip it and write it to `out`, hashing
/// the tar and the gzip stream on the way (one pass, nothing held whole in memory).
///
/// Entries come in the tree's order (byte order of path); paths have no leading `/`,
/// directories end in `/`, the root is omitted. Owners are numeric with empty names;
/// mtimes are clamped to `epoch`. Headers are ustar; a PAX extended header precedes an
/// entry only when a field does not fit ustar. Hard links are tar `Link` entries to a
/// relative path; the first path of a hard-link group (in archive order) carries the
/// content, so a link never precedes its target, as tar requires.
pub fn write_layer(tree: &Tree, epoch: u64, out: &mut dyn Write) -> Result<LayerInfo, OciError> {
    write_layer_as(tree, epoch, Compressor::default(), out)
}

/// [`write_layer`] with `compressor` (deterministic on any number of cores:
/// src/oci/gzip.rs, src/oci/zstd.rs).
pub fn write_layer_as(
    tree: &Tree,
    epoch: u64,
    compressor: Compressor,
    out: &mut dyn Write,
) -> Result<LayerInfo, OciError> {
    let blob = HashingWriter::new(out);
    let gz = compressor
        .writer(blob)
        .map_err(OciError::io("cannot start the layer's compressor"))?;
    let mut tar = HashingWriter::new(gz);
    write_tar(tree, epoch, &mut tar)?;
    let (gz, diff_id, _) = tar.finish();
    let blob = gz
        .finish()
        .map_err(OciError::io("cannot write the layer"))?;
    let (out, digest, size) = blob.finish();
    out.flush()
        .map_err(OciError::io("cannot write the layer"))?;
    Ok(LayerInfo {
        digest: format!("sha256:{}", hex::encode(digest)),
        diff_id: format!("sha256:{}", hex::encode(diff_id)),
        size,
        compressor,
    })
}

/// The layer's `diff_id` (`sha256:…` of its uncompressed tar) without compressing it:
/// what a cached layer is looked up by.
pub fn diff_id(tree: &Tree, epoch: u64) -> Result<String, OciError> {
    let mut tar = HashingWriter::new(io::sink());
    write_tar(tree, epoch, &mut tar)?;
    let (_, diff_id, _) = tar.finish();
    Ok(format!("sha256:{}", hex::encode(diff_id)))
}

/// The tar stream of `tree` (see [`write_layer`]), end-of-archive blocks included.
fn write_tar(tree: &Tree, epoch: u64, tar: &mut dyn Write) -> Result<(), OciError> {
    let links = HardlinkPlan::new(tree)?;
    for (path, node) in tree.iter() {
        if path == "/" {
            continue;
        }
        let name = &path[1..];
        if let Some(primary) = links.link_to.get(path.as_str()) {
            let entry = Entry::new(name, tar::EntryType::Link, node, epoch).link(&primary[1..]);
            entry.write(tar, &mut io::empty())?;
            continue;
        }
        match &node.kind {
            NodeKind::Dir => {
                let dir = format!("{name}/");
                Entry::new(&dir, tar::EntryType::Directory, node, epoch)
                    .write(tar, &mut io::empty())?;
            }
            NodeKind::Symlink(target) => {
                Entry::new(name, tar::EntryType::Symlink, node, epoch)
                    .link(target)
                    .write(tar, &mut io::empty())?;
            }
            NodeKind::File(_) | NodeKind::Hardlink(_) => {
                // A hard link first in its group carries the file's content and
                // metadata (they share one inode).
                let file = match &node.kind {
                    NodeKind::Hardlink(_) => links.content_of[path.as_str()],
                    _ => node,
                };
                let NodeKind::File(content) = &file.kind else {
                    unreachable!("hard-link plans resolve to files")
                };
                let mut data = BufReader::with_capacity(256 * 1024, tree.spool.reader(content));
                let mut entry = Entry::new(name, tar::EntryType::Regular, file, epoch);
                entry.size = content.len;
                entry.write(tar, &mut data).map_err(|e| match e {
                    OciError::Io { source, .. } => OciError::Io {
                        context: format!("cannot write {path} into the layer"),
                        source,
                    },
                    e => e,
                })?;
            }
        }
    }
    // End of archive: two zero blocks.
    tar.write_all(&[0u8; 1024])
        .map_err(OciError::io("cannot write the layer"))?;
    Ok(())
}

/// Which paths become `Link` entries, and to what.
struct HardlinkPlan<'t> {
    /// Path → the first path (archive order) of its hard-link group.
    link_to: HashMap<&'t str, String>,
    /// A `Hardlink` node first in its group → the file node whose content it carries.
    content_of: HashMap<&'t str, &'t Node>,
}

impl<'t> HardlinkPlan<'t> {
    fn new(tree: &'t Tree) -> Result<HardlinkPlan<'t>, OciError> {
        // Group the hard links by the path of the regular file they resolve to.
        let mut groups: HashMap<&'t str, Vec<&'t str>> = HashMap::new();
        for (path, node) in tree.iter() {
            let NodeKind::Hardlink(first) = &node.kind else {
                continue;
            };
            let mut target: &'t str = first;
            let mut steps = 0;
            loop {
                steps += 1;
                let err = |reason| OciError::Hardlink {
                    path: path.clone(),
                    target: target.to_string(),
                    reason,
                };
                match tree.get(target).map(|n| &n.kind) {
                    Some(NodeKind::File(_)) => break,
                    Some(NodeKind::Hardlink(_)) if steps > tree.len() => {
                        return Err(err("is part of a hard-link loop"))
                    }
                    Some(NodeKind::Hardlink(next)) => target = next,
                    Some(_) => return Err(err("is not a regular file")),
                    None => return Err(err("does not exist")),
                }
            }
            groups.entry(target).or_default().push(path);
        }
        let mut plan = HardlinkPlan {
            link_to: HashMap::new(),
            content_of: HashMap::new(),
        };
        for (file, mut members) in groups {
            members.push(file);
            members.sort_unstable();
            let primary = members[0];
            for &m in &members[1..] {
                plan.link_to.insert(m, primary.to_string());
            }
            if primary != file {
                let node = tree.get(file).expect("resolved above");
                plan.content_of.insert(primary, node);
            }
        }
        Ok(plan)
    }
}

/// One tar entry about to be written.
struct Entry<'a> {
    path: &'a str,
    kind: tar::EntryType,
    link: Option<&'a str>,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    size: u64,
}

impl<'a> Entry<'a> {
    fn new(path: &'a str, kind: tar::EntryType, node: &Node, epoch: u64) -> Entry<'a> {
        Entry {
            path,
            kind,
            link: None,
            mode: node.mode & 0o7777,
            uid: node.uid.into(),
            gid: node.gid.into(),
            mtime: node.mtime.min(epoch),
            size: 0,
        }
    }

    fn link(mut self, target: &'a str) -> Entry<'a> {
        self.link = Some(target);
        self
    }

    /// Write the (PAX header and) ustar header, the data and its padding.
    fn write(&self, out: &mut dyn Write, data: &mut dyn Read) -> Result<(), OciError> {
        let err = || OciError::io(format!("cannot write /{} into the layer", self.path));
        let mut pax: Vec<(&str, String)> = Vec::new();
        let mut header = tar::Header::new_ustar();
        let ustar = header.as_ustar_mut().expect("ustar header");

        match split_ustar(self.path.as_bytes()) {
            Some((prefix, name)) => {
                ustar.prefix[..prefix.len()].copy_from_slice(prefix);
                ustar.name[..name.len()].copy_from_slice(name);
            }
            None => {
                pax.push(("path", self.path.to_string()));
                let short = truncate(self.path, 100);
                ustar.name[..short.len()].copy_from_slice(short.as_bytes());
            }
        }
        if let Some(link) = self.link {
            if link.len() > 100 {
                pax.push(("linkpath", link.to_string()));
            }
            let short = truncate(link, 100);
            ustar.linkname[..short.len()].copy_from_slice(short.as_bytes());
        }
        header.set_entry_type(self.kind);
        header.set_mode(self.mode);
        let mut field = |key: &'static str, value: u64, limit: u64| {
            if value < limit {
                value
            } else {
                pax.push((key, value.to_string()));
                0
            }
        };
        let uid = field("uid", self.uid, OCTAL8_LIMIT);
        let gid = field("gid", self.gid, OCTAL8_LIMIT);
        let size = field("size", self.size, OCTAL12_LIMIT);
        let mtime = field("mtime", self.mtime, OCTAL12_LIMIT);
        header.set_uid(uid);
        header.set_gid(gid);
        header.set_size(size);
        header.set_mtime(mtime);
        header.set_cksum();

        if !pax.is_empty() {
            write_pax(out, self.path, &pax, mtime).map_err(err())?;
        }
        out.write_all(header.as_bytes()).map_err(err())?;
        if self.size > 0 {
            let copied = io::copy(&mut data.take(self.size), out).map_err(err())?;
            if copied != self.size {
                return Err(err()(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("content has {copied} bytes, {} expected", self.size),
                )));
            }
            pad(out, self.size).map_err(err())?;
        }
        Ok(())
    }
}

/// Split a path into ustar `prefix` (≤ 155 bytes) and `name` (1..=100 bytes) at a
/// `/`, taking the longest prefix that fits; `None` if no split fits.
fn split_ustar(path: &[u8]) -> Option<(&[u8], &[u8])> {
    if path.len() <= 100 {
        return Some((&[], path));
    }
    // The slash can be at most at index 155; the name after it must be non-empty
    // (a directory's trailing slash cannot be the split point).
    let search = &path[..path.len().min(156).min(path.len() - 1)];
    let mut candidates = search.iter().enumerate().filter(|(_, &b)| b == b'/').rev();
    candidates.find_map(|(i, _)| {
        let name = &path[i + 1..];
        (name.len() <= 100 && !name.is_empty()).then(|| (&path[..i], name))
    })
}

/// At most `max` bytes of `s`, cut on a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A PAX extended header (`x`) for the next entry, with records in the given order.
fn write_pax(
    out: &mut dyn Write,
    path: &str,
    records: &[(&str, String)],
    mtime: u64,
) -> io::Result<()> {
    let mut body = Vec::new();
    for (key, value) in records {
        // "<len> <key>=<value>\n", where <len> counts itself.
        let rest = key.len() + value.len() + 3; // ' ', '=', '\n'
        let mut len = rest + 1;
        while len != rest + len.to_string().len() {
            len = rest + len.to_string().len();
        }
        body.extend_from_slice(format!("{len} {key}={value}\n").as_bytes());
    }
    let base = path.trim_end_matches('/').rsplit('/').next().unwrap_or("");
    let name = format!("PaxHeaders/{}", truncate(base, 89));
    let mut header = tar::Header::new_ustar();
    let ustar = header.as_ustar_mut().expect("ustar header");
    ustar.name[..name.len()].copy_from_slice(name.as_bytes());
    header.set_entry_type(tar::EntryType::XHeader);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(mtime);
    header.set_size(body.len() as u64);
    header.set_cksum();
    out.write_all(header.as_bytes())?;
    out.write_all(&body)?;
    pad(out, body.len() as u64)
}

/// Zero bytes up to the next 512-byte block.
fn pad(out: &mut dyn Write, len: u64) -> io::Result<()> {
    let rem = (len % 512) as usize;
    if rem != 0 {
        out.write_all(&[0u8; 512][..512 - rem])?;
    }
    Ok(())
}

/// A writer that hashes and counts what goes through it.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> HashingWriter<W> {
    fn new(inner: W) -> HashingWriter<W> {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    fn finish(self) -> (W, [u8; 32], u64) {
        (self.inner, self.hasher.finalize().into(), self.count)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ustar_split() {
        assert_eq!(
            split_ustar(b"usr/lib/x"),
            Some((&b""[..], &b"usr/lib/x"[..]))
        );
        let long = format!("{}/{}", "a".repeat(120), "b".repeat(50));
        let (p, n) = split_ustar(long.as_bytes()).unwrap();
        assert_eq!((p.len(), n.len()), (120, 50));
        let dir = format!("{}/", "a".repeat(120));
        assert_eq!(split_ustar(dir.as_bytes()), None);
        let deep = format!("{}/{}/", "a".repeat(120), "b".repeat(10));
        let (p, n) = split_ustar(deep.as_bytes()).unwrap();
        assert_eq!(
            (p.len(), n),
            (120, format!("{}/", "b".repeat(10)).as_bytes())
        );
        assert_eq!(
            split_ustar(format!("{}/x", "a".repeat(156)).as_bytes()),
            None
        );
        assert_eq!(
            split_ustar(format!("x/{}", "a".repeat(101)).as_bytes()),
            None
        );
    }

    #[test]
    fn pax_record_lengths_count_themselves() {
        let pax = |value: &str| {
            let mut out = Vec::new();
            write_pax(&mut out, "p", &[("path", value.to_string())], 0).unwrap();
            let len = u64::from_str_radix(std::str::from_utf8(&out[124..135]).unwrap(), 8).unwrap();
            String::from_utf8(out[512..512 + len as usize].to_vec()).unwrap()
        };
        // "99 path=<90 bytes>\n" is 99 bytes; with 91 bytes, 100 is impossible: 101.
        assert_eq!(
            pax(&"v".repeat(90)),
            format!("99 path={}\n", "v".repeat(90))
        );
        assert_eq!(
            pax(&"v".repeat(91)),
            format!("101 path={}\n", "v".repeat(91))
        );
        assert_eq!(pax("\u{e9}"), "11 path=\u{e9}\n"); // é is two bytes
    }
}
