//! An `oci-archive` (one tar file holding an image layout) read in place as a
//! [`BlobSource`]: one pass over the tar headers notes where each member's bytes start
//! (seeking over the content), and a blob is then read from the file at that offset.
//!
//! Nothing is extracted to disk and no member is held in memory; it must not write
//! anything. Blob bytes are checked by the callers ([`super::Verified`]), like a
//! layout's.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::document::{self, Index};
use super::{BlobSource, ReadError};

/// Members of an archive indexed before giving up: an image layout has a few per image.
const MAX_MEMBERS: usize = 100_000;
/// `index.json` larger than this is refused.
const INDEX_LIMIT: u64 = 16 << 20;

/// An `oci-archive` file, its members indexed by path.
#[derive(Debug)]
pub struct ArchiveSource {
    path: PathBuf,
    /// Member path (without a leading `./`) → (offset of its content, size).
    members: BTreeMap<String, (u64, u64)>,
}

impl ArchiveSource {
    /// Index the members of the archive at `path`; it must hold an `oci-layout` file.
    pub fn open(path: &Path) -> Result<ArchiveSource, ReadError> {
        let not_archive = |reason: String| ReadError::NotAnArchive {
            file: path.to_path_buf(),
            reason,
        };
        let file = File::open(path).map_err(|e| not_archive(format!("cannot open it: {e}")))?;
        let mut archive = tar::Archive::new(file);
        let mut members = BTreeMap::new();
        let entries = archive
            .entries_with_seek()
            .map_err(|e| not_archive(format!("not a tar file: {e}")))?;
        for entry in entries {
            let entry = entry.map_err(|e| not_archive(format!("not a tar file: {e}")))?;
            if entry.header().entry_type() != tar::EntryType::Regular {
                continue;
            }
            let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let name = name.trim_start_matches("./").to_string();
            if members.len() >= MAX_MEMBERS {
                return Err(not_archive(format!("more than {MAX_MEMBERS} members")));
            }
            members.insert(name, (entry.raw_file_position(), entry.size()));
        }
        if !members.contains_key("oci-layout") {
            return Err(not_archive("no oci-layout member".into()));
        }
        Ok(ArchiveSource {
            path: path.to_path_buf(),
            members,
        })
    }

    /// The archive file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its `index.json`.
    pub fn index(&self) -> Result<Index, ReadError> {
        let mut bytes = Vec::new();
        self.member("index.json")?
            .take(INDEX_LIMIT + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| ReadError::NotAnArchive {
                file: self.path.clone(),
                reason: format!("cannot read index.json: {e}"),
            })?;
        if bytes.len() as u64 > INDEX_LIMIT {
            return Err(ReadError::Invalid {
                what: format!("{}: index.json", self.path.display()),
                reason: format!("larger than {INDEX_LIMIT} bytes"),
            });
        }
        document::parse(&bytes, &format!("{}: index.json", self.path.display()))
    }

    fn member(&self, name: &str) -> Result<std::io::Take<File>, ReadError> {
        let &(offset, size) = self.members.get(name).ok_or_else(|| match name {
            "index.json" => ReadError::NotAnArchive {
                file: self.path.clone(),
                reason: "no index.json member".into(),
            },
            // A blob an index names but the archive lacks: a damaged image.
            _ => ReadError::Io {
                context: format!("{}: no member {name}", self.path.display()),
                source: std::io::ErrorKind::NotFound.into(),
            },
        })?;
        let io = |source| ReadError::Io {
            context: format!("cannot read {name} of {}", self.path.display()),
            source,
        };
        let mut file = File::open(&self.path).map_err(io)?;
        file.seek(SeekFrom::Start(offset)).map_err(io)?;
        Ok(file.take(size))
    }
}

impl BlobSource for ArchiveSource {
    fn open_blob(&self, digest: &str) -> Result<Box<dyn Read + '_>, ReadError> {
        let hex = digest
            .strip_prefix("sha256:")
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| ReadError::Invalid {
                what: format!("digest `{digest}`"),
                reason: "only sha256:<64 hex digits> digests are supported".into(),
            })?;
        Ok(Box::new(self.member(&format!("blobs/sha256/{hex}"))?))
    }
}
