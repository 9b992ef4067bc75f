//! `--format oci-archive` and `--format docker-archive`: a finished OCI image layout
//! packed into one tar file, with deterministic bytes, written atomically.
//!
//! Both archives are plain ustar (every name here is shorter than 100 bytes, so no PAX
//! header is ever needed): entries sorted by path, directories `0755`, files `0644`,
//! owners `0:0` with empty names, every mtime the image epoch, two zero blocks at the end.
//!
//! It reads the finished layout and writes only the archive (replaced through
//! [`crate::atomic`], staged first by [`stage_oci_archive`] and [`stage_docker_archive`]
//! so that the output stage can commit it together with the other outputs); it must not change the layout, and parses none of its documents
//! (the docker archive's digests come from the caller).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use canon_json::CanonJsonSerialize;
use serde_json::json;

use super::OciError;
use crate::atomic::{AtomicError, AtomicFile, Step};

/// One member of an archive: a directory, or a file from disk or memory.
enum Member {
    Dir,
    Disk(PathBuf),
    Bytes(Vec<u8>),
}

/// Pack the OCI image layout at `layout` (`oci-layout`, `index.json`, `blobs/sha256/*`)
/// into one tar at `output`.
pub fn write_oci_archive(layout: &Path, output: &Path, epoch: u64) -> Result<(), OciError> {
    stage_oci_archive(layout, output, epoch)?
        .commit()
        .map_err(replace_err)
}

/// [`write_oci_archive`] up to the rename: the archive is complete in a temporary file
/// beside `output`, which the caller commits (or drops, leaving `output` as it was).
pub fn stage_oci_archive(layout: &Path, output: &Path, epoch: u64) -> Result<AtomicFile, OciError> {
    let mut members = BTreeMap::new();
    members.insert("blobs/".to_string(), Member::Dir);
    members.insert("blobs/sha256/".to_string(), Member::Dir);
    for name in ["oci-layout", "index.json"] {
        members.insert(name.to_string(), Member::Disk(layout.join(name)));
    }
    let blobs = layout.join("blobs/sha256");
    let read =
        fs::read_dir(&blobs).map_err(OciError::io(format!("cannot read {}", blobs.display())))?;
    for entry in read {
        let entry = entry.map_err(OciError::io(format!("cannot read {}", blobs.display())))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        members.insert(format!("blobs/sha256/{name}"), Member::Disk(entry.path()));
    }
    stage_tar(output, &members, epoch)
}

/// What a docker archive holds of the one image.
#[derive(Debug, Clone)]
pub struct DockerImage<'a> {
    /// `sha256:…` of the config blob in the layout.
    pub config_digest: &'a str,
    /// `sha256:…` of the gzip layer blob in the layout.
    pub layer_digest: &'a str,
    /// `name` of `name:tag` (Docker references are lowercase).
    pub name: &'a str,
    /// `tag` of `name:tag`.
    pub tag: &'a str,
}

/// The `manifest.json` and `repositories` of a docker archive, as bytes.
///
/// The blobs keep the paths they have in an OCI layout (`blobs/sha256/<hex>`), as
/// `docker save` writes them since Docker 25; the layer stays gzip-compressed (`docker
/// load` and containers/image decompress it, and its uncompressed digest is the config's
/// `diff_id`). `repositories` maps the name and tag to the layer's hex digest (the v1
/// "top layer ID" slot; `docker load` reads `manifest.json` and ignores it).
pub fn docker_metadata(image: &DockerImage) -> Result<(Vec<u8>, Vec<u8>), OciError> {
    let hex = |d: &str| d.strip_prefix("sha256:").unwrap_or(d).to_string();
    let manifest = json!([{
        "Config": format!("blobs/sha256/{}", hex(image.config_digest)),
        "RepoTags": [format!("{}:{}", image.name, image.tag)],
        "Layers": [format!("blobs/sha256/{}", hex(image.layer_digest))],
    }]);
    let repositories = json!({ image.name: { image.tag: hex(image.layer_digest) } });
    let ser = |v: &serde_json::Value| {
        v.to_canon_json_vec()
            .map_err(OciError::io("cannot serialise JSON"))
    };
    Ok((ser(&manifest)?, ser(&repositories)?))
}

/// Write a docker archive of the one image in the layout at `layout`.
pub fn write_docker_archive(
    layout: &Path,
    output: &Path,
    image: &DockerImage,
    epoch: u64,
) -> Result<(), OciError> {
    stage_docker_archive(layout, output, image, epoch)?
        .commit()
        .map_err(replace_err)
}

/// [`write_docker_archive`] up to the rename (see [`stage_oci_archive`]).
pub fn stage_docker_archive(
    layout: &Path,
    output: &Path,
    image: &DockerImage,
    epoch: u64,
) -> Result<AtomicFile, OciError> {
    let (manifest, repositories) = docker_metadata(image)?;
    let blob = |d: &str| {
        Member::Disk(
            layout
                .join("blobs/sha256")
                .join(d.strip_prefix("sha256:").unwrap_or(d)),
        )
    };
    let mut members = BTreeMap::new();
    members.insert("blobs/".to_string(), Member::Dir);
    members.insert("blobs/sha256/".to_string(), Member::Dir);
    let hex = |d: &str| d.strip_prefix("sha256:").unwrap_or(d).to_string();
    members.insert(
        format!("blobs/sha256/{}", hex(image.config_digest)),
        blob(image.config_digest),
    );
    members.insert(
        format!("blobs/sha256/{}", hex(image.layer_digest)),
        blob(image.layer_digest),
    );
    members.insert("manifest.json".to_string(), Member::Bytes(manifest));
    members.insert("repositories".to_string(), Member::Bytes(repositories));
    stage_tar(output, &members, epoch)
}

/// Write `members` (in key order) as a tar into a temporary file beside `output`,
/// synced and ready to be renamed over `output` ([`AtomicFile`]). A directory at
/// `output` is refused.
fn stage_tar(
    output: &Path,
    members: &BTreeMap<String, Member>,
    epoch: u64,
) -> Result<AtomicFile, OciError> {
    if output.is_dir() {
        return Err(OciError::io(format!(
            "cannot write the archive {}",
            output.display()
        ))(io::Error::other(
            "it is a directory; give --output a file name such as image.tar",
        )));
    }
    let file = AtomicFile::create(output, ".compose-archive-").map_err(replace_err)?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    write_tar(&mut out, members, epoch)?;
    let file = out
        .into_inner()
        .map_err(|e| OciError::io("cannot write the archive")(e.into_error()))?;
    file.prepare().map_err(replace_err)?;
    Ok(file)
}

/// A failed step of replacing the archive file, in the archive's words.
pub fn replace_err(e: AtomicError) -> OciError {
    let context = match e.step {
        Step::Rename => format!("cannot rename the archive to {}", e.path.display()),
        _ => e.context(),
    };
    OciError::io(context)(e.source)
}

fn write_tar(
    out: &mut dyn Write,
    members: &BTreeMap<String, Member>,
    epoch: u64,
) -> Result<(), OciError> {
    for (name, member) in members {
        let err = || OciError::io(format!("cannot add {name} to the archive"));
        let mut header = tar::Header::new_ustar();
        let ustar = header.as_ustar_mut().expect("ustar header");
        assert!(name.len() <= 100, "archive member names are short");
        ustar.name[..name.len()].copy_from_slice(name.as_bytes());
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(epoch);
        let mut data: Box<dyn Read> = match member {
            Member::Dir => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                Box::new(io::empty())
            }
            Member::Disk(path) => {
                let file = File::open(path).map_err(err())?;
                let len = file.metadata().map_err(err())?.len();
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(0o644);
                header.set_size(len);
                Box::new(file.take(len))
            }
            Member::Bytes(bytes) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(0o644);
                header.set_size(bytes.len() as u64);
                Box::new(&bytes[..])
            }
        };
        header.set_cksum();
        let size = header.size().map_err(err())?;
        out.write_all(header.as_bytes()).map_err(err())?;
        let copied = io::copy(&mut data, out).map_err(err())?;
        if copied != size {
            return Err(err()(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{copied} bytes, {size} expected"),
            )));
        }
        let rem = (size % 512) as usize;
        if rem != 0 {
            out.write_all(&[0u8; 512][..512 - rem]).map_err(err())?;
        }
    }
    out.write_all(&[0u8; 1024])
        .map_err(OciError::io("cannot end the archive"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    /// A fixed layout: the archive's bytes are pinned by a golden hash.
    fn layout(dir: &Path) {
        fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        fs::write(dir.join("index.json"), b"{}").unwrap();
        fs::write(dir.join("blobs/sha256").join("c".repeat(64)), b"config").unwrap();
        fs::write(
            dir.join("blobs/sha256").join("a".repeat(64)),
            vec![7u8; 1000],
        )
        .unwrap();
    }

    fn entries(bytes: &[u8]) -> Vec<(String, u32, u64, u64, u64)> {
        let mut a = tar::Archive::new(bytes);
        a.entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    h.mode().unwrap(),
                    h.uid().unwrap(),
                    h.mtime().unwrap(),
                    h.size().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn oci_archive_is_sorted_fixed_and_golden() {
        let tmp = tempfile::tempdir().unwrap();
        layout(&tmp.path().join("l"));
        let out = tmp.path().join("a/image.tar");
        write_oci_archive(&tmp.path().join("l"), &out, 1_700_000_000).unwrap();
        let bytes = fs::read(&out).unwrap();
        let names: Vec<_> = entries(&bytes).into_iter().map(|e| e.0).collect();
        assert_eq!(
            names,
            [
                "blobs/".to_string(),
                "blobs/sha256/".into(),
                format!("blobs/sha256/{}", "a".repeat(64)),
                format!("blobs/sha256/{}", "c".repeat(64)),
                "index.json".into(),
                "oci-layout".into(),
            ]
        );
        for (name, mode, uid, mtime, _) in entries(&bytes) {
            assert_eq!(mode, if name.ends_with('/') { 0o755 } else { 0o644 });
            assert_eq!((uid, mtime), (0, 1_700_000_000));
        }
        assert_eq!(bytes.len() % 512, 0);
        // Rewriting replaces the file with the same bytes.
        write_oci_archive(&tmp.path().join("l"), &out, 1_700_000_000).unwrap();
        assert_eq!(fs::read(&out).unwrap(), bytes);
        assert_eq!(
            hex::encode(Sha256::digest(&bytes)),
            "69ab343da5bc8b08024622a87822c63e500ecfb4d883ca9de71ec2c141ebe3e7",
            "the oci-archive bytes changed"
        );
        // A directory at the output is refused.
        assert!(write_oci_archive(&tmp.path().join("l"), tmp.path(), 0).is_err());
    }

    #[test]
    fn docker_archive_is_golden() {
        let tmp = tempfile::tempdir().unwrap();
        layout(&tmp.path().join("l"));
        let out = tmp.path().join("d.tar");
        let (c, l) = (
            format!("sha256:{}", "c".repeat(64)),
            format!("sha256:{}", "a".repeat(64)),
        );
        let image = DockerImage {
            config_digest: &c,
            layer_digest: &l,
            name: "fixture",
            tag: "v1",
        };
        write_docker_archive(&tmp.path().join("l"), &out, &image, 0).unwrap();
        let bytes = fs::read(&out).unwrap();
        let names: Vec<_> = entries(&bytes).into_iter().map(|e| e.0).collect();
        assert_eq!(
            names,
            [
                "blobs/".to_string(),
                "blobs/sha256/".into(),
                format!("blobs/sha256/{}", "a".repeat(64)),
                format!("blobs/sha256/{}", "c".repeat(64)),
                "manifest.json".into(),
                "repositories".into(),
            ]
        );
        let (manifest, repositories) = docker_metadata(&image).unwrap();
        let m: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
        assert_eq!(m[0]["RepoTags"][0], "fixture:v1");
        assert_eq!(m[0]["Config"], format!("blobs/sha256/{}", "c".repeat(64)));
        let r: serde_json::Value = serde_json::from_slice(&repositories).unwrap();
        assert_eq!(r["fixture"]["v1"], "a".repeat(64));
        assert_eq!(
            hex::encode(Sha256::digest(&bytes)),
            "2fbb89b2de5b89e210b6019bb95eca9f5b4d5b8ce02b76fbb7f05027eeb8c097",
            "the docker-archive bytes changed"
        );
    }
}
