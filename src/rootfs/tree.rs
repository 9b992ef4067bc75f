//! The virtual tree: every entry of the image, keyed by absolute path, before it is
//! serialised. File contents live in a [`Spool`] (one unlinked temporary file in
//! `TMPDIR`), so the tree's memory is proportional to the number of entries, not to
//! their bytes; contents move between spools without being held twice
//! ([`Spool::move_from`]).
//!
//! Owns the rules of one path claimed twice ([`Tree::insert`], [`Tree::replace`]). It
//! knows nothing of packages or image formats, and writes nothing but its spool.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use sha2::{Digest, Sha256};

/// Where an entry came from: a package name, or a generator ("passwd", "manifest", …).
pub type Origin = String;

/// One entry of the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Directory, file, symlink or hard link, with what each points to.
    pub kind: NodeKind,
    /// Permission bits including setuid/setgid/sticky (`0o7777` mask).
    pub mode: u32,
    /// Numeric owner.
    pub uid: u32,
    /// Numeric group.
    pub gid: u32,
    /// Seconds since the Unix epoch (clamped to the image epoch when written).
    pub mtime: u64,
    /// Who put it there, for conflict messages and the SBOM.
    pub origin: Origin,
}

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKind {
    /// A directory.
    Dir,
    /// A regular file; its bytes are in the tree's [`Spool`].
    File(Content),
    /// Target exactly as packaged (relative or absolute).
    Symlink(String),
    /// Absolute path, in the tree, of the file this one is a hard link to.
    Hardlink(String),
}

/// A slice of the spool, with the SHA-256 of its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Content {
    /// Byte offset of the content in the spool file.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
    /// SHA-256 of the bytes.
    pub sha256: [u8; 32],
}

/// Append-only store of file contents backing a [`Tree`].
#[derive(Debug)]
pub struct Spool {
    file: File,
    len: u64,
    /// The directory the unlinked file lives in (`TMPDIR`, else `/tmp`), for errors.
    dir: PathBuf,
}

/// Why content could not be added to a spool: reading what was given, or writing the
/// spool itself (a full `TMPDIR`), which names the spool's directory.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// Reading the content failed.
    #[error("{0}")]
    Read(io::Error),
    /// Writing the spool failed.
    #[error("cannot write the spool in {} (the temporary directory, TMPDIR): {source}; the selected files need room there: point TMPDIR to a file system with more space", .dir.display())]
    Write {
        /// The spool's directory.
        dir: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

impl From<SpoolError> for io::Error {
    fn from(e: SpoolError) -> io::Error {
        match e {
            SpoolError::Read(e) => e,
            SpoolError::Write { ref source, .. } => io::Error::new(source.kind(), e.to_string()),
        }
    }
}

/// Bytes moved at a time by [`Spool::move_from`]: at most this much is in both spools.
const MOVE_CHUNK: u64 = 4 << 20;

impl Spool {
    /// An empty spool in a fresh unlinked temporary file; errors when none can be made.
    pub fn new() -> io::Result<Spool> {
        Ok(Spool {
            file: tempfile::tempfile()?,
            len: 0,
            dir: std::env::temp_dir(),
        })
    }

    fn write_error(&self) -> impl FnOnce(io::Error) -> SpoolError {
        let dir = self.dir.clone();
        move |source| SpoolError::Write { dir, source }
    }

    /// Copy `reader` to the end of the spool, hashing on the way.
    pub fn append(&mut self, reader: &mut dyn Read) -> io::Result<Content> {
        Ok(self.append_from(reader)?)
    }

    /// [`Spool::append`], telling a failure to read `reader` from a failure to write
    /// the spool.
    pub fn append_from(&mut self, reader: &mut dyn Read) -> Result<Content, SpoolError> {
        let offset = self.len;
        self.file
            .seek(SeekFrom::Start(offset))
            .map_err(self.write_error())?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut len = 0u64;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(SpoolError::Read(e)),
            };
            hasher.update(&buf[..n]);
            self.file.write_all(&buf[..n]).map_err(self.write_error())?;
            len += n as u64;
        }
        self.len += len;
        Ok(Content {
            offset,
            len,
            sha256: hasher.finalize().into(),
        })
    }

    /// Move `content` of another spool to the end of this one, [`MOVE_CHUNK`] bytes at
    /// a time, each chunk punched out of `other` once copied (`fallocate` with
    /// `FALLOC_FL_PUNCH_HOLE`): the two spools together hold the bytes about once, not
    /// twice. `other`'s copy is gone afterwards (where the file system cannot punch
    /// holes it stays until `other` is dropped). The hash is the one already computed.
    pub fn move_from(&mut self, other: &Spool, content: &Content) -> Result<Content, SpoolError> {
        let offset = self.len;
        let mut done = 0;
        while done < content.len {
            let n = (content.len - done).min(MOVE_CHUNK);
            let chunk = Content {
                offset: content.offset + done,
                len: n,
                sha256: content.sha256,
            };
            self.copy_range(other, &chunk, offset + done)
                .map_err(self.write_error())?;
            let _ = rustix::fs::fallocate(
                &other.file,
                rustix::fs::FallocateFlags::PUNCH_HOLE | rustix::fs::FallocateFlags::KEEP_SIZE,
                chunk.offset,
                n,
            );
            done += n;
        }
        self.len = offset + content.len;
        Ok(Content {
            offset,
            len: content.len,
            sha256: content.sha256,
        })
    }

    /// Copy the bytes of `content` of `other` to `at` in this spool (in the kernel where
    /// it can: `copy_file_range`).
    fn copy_range(&mut self, other: &Spool, content: &Content, at: u64) -> io::Result<()> {
        let mut from = content.offset;
        let mut to = at;
        let end = content.offset + content.len;
        while from < end {
            let want = (end - from).min(1 << 30) as usize;
            match rustix::fs::copy_file_range(
                &other.file,
                Some(&mut from),
                &self.file,
                Some(&mut to),
                want,
            ) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "spool shorter than recorded",
                    ))
                }
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => {}
                // Not supported here (old kernel, odd file system): copy through memory.
                Err(
                    rustix::io::Errno::NOSYS | rustix::io::Errno::XDEV | rustix::io::Errno::INVAL,
                ) if from == content.offset => {
                    let mut reader = other.reader(content);
                    self.file.seek(SeekFrom::Start(at))?;
                    io::copy(&mut reader, &mut self.file)?;
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Append what `write` writes (streamed, hashed on the way), for content made
    /// while it is spooled rather than held whole in memory.
    pub fn append_with(
        &mut self,
        write: &mut dyn FnMut(&mut dyn Write) -> io::Result<()>,
    ) -> io::Result<Content> {
        /// Hashes and counts what passes to the file.
        struct Hashing<'a> {
            file: io::BufWriter<&'a File>,
            hasher: Sha256,
            len: u64,
        }
        impl Write for Hashing<'_> {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                let n = self.file.write(buf)?;
                self.hasher.update(&buf[..n]);
                self.len += n as u64;
                Ok(n)
            }
            fn flush(&mut self) -> io::Result<()> {
                self.file.flush()
            }
        }
        let offset = self.len;
        self.file.seek(SeekFrom::Start(offset))?;
        let mut out = Hashing {
            file: io::BufWriter::with_capacity(256 << 10, &self.file),
            hasher: Sha256::new(),
            len: 0,
        };
        write(&mut out)?;
        out.flush()?;
        let Hashing { file, hasher, len } = out;
        drop(file);
        let sha256 = hasher.finalize().into();
        self.len += len;
        Ok(Content {
            offset,
            len,
            sha256,
        })
    }

    /// [`Spool::append`] of bytes in memory.
    pub fn append_bytes(&mut self, bytes: &[u8]) -> io::Result<Content> {
        self.append(&mut &bytes[..])
    }

    /// A reader over exactly the bytes of `content`.
    pub fn reader(&self, content: &Content) -> SpoolReader<'_> {
        SpoolReader {
            file: &self.file,
            start: content.offset,
            pos: content.offset,
            end: content.offset + content.len,
        }
    }

    /// The whole content in memory (for small files: generators, ELF headers).
    pub fn read_all(&self, content: &Content) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(content.len as usize);
        self.reader(content).read_to_end(&mut out)?;
        Ok(out)
    }
}

/// A reader of one [`Content`] of a spool ([`Spool::reader`]); seekable within it.
pub struct SpoolReader<'a> {
    file: &'a File,
    start: u64,
    pos: u64,
    end: u64,
}

impl Read for SpoolReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf.len().min((self.end - self.pos) as usize);
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "spool shorter than recorded",
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// Positions are relative to the start of the content (for readers that only need a
/// few ranges of a file, such as an ELF header and its dynamic section).
impl Seek for SpoolReader<'_> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let len = (self.end - self.start) as i128;
        let at = match pos {
            SeekFrom::Start(n) => n as i128,
            SeekFrom::End(d) => len + d as i128,
            SeekFrom::Current(d) => (self.pos - self.start) as i128 + d as i128,
        };
        if at < 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start of a spooled file",
            ));
        }
        // Past the end reads nothing, as for a file.
        let at = (at.min(len)) as u64;
        self.pos = self.start + at;
        Ok(at)
    }
}

/// A conflict between two entries claiming one path.
#[derive(Debug, thiserror::Error)]
#[error("{}: given by {first} and by {second} with different {what}", crate::text::shown(.path))]
pub struct Conflict {
    /// Absolute tree path claimed twice.
    pub path: String,
    /// Origin of the entry already there.
    pub first: Origin,
    /// Origin of the entry that clashed with it.
    pub second: Origin,
    /// What differs, e.g. `content` or `modes or owners`.
    pub what: &'static str,
}

/// The image's file system: absolute, normalised paths (`/usr/lib/x`, the root is `/`)
/// mapped to entries. Iteration is in byte order of the path, so a parent always
/// precedes its children.
#[derive(Debug)]
pub struct Tree {
    entries: BTreeMap<String, Node>,
    /// Directories that exist only because something was inserted beneath them (made by
    /// `ensure_parents`, not given): the first explicit directory at such a path takes
    /// its place, so the tree does not depend on whether a directory or its entries came
    /// first.
    implicit: BTreeSet<String>,
    /// The contents of the tree's files.
    pub spool: Spool,
}

impl Tree {
    /// A tree holding only the root (`/`, 0755 root, origin `image`) and an empty spool;
    /// errors when the spool cannot be created.
    pub fn new() -> io::Result<Tree> {
        let mut entries = BTreeMap::new();
        entries.insert(
            "/".to_string(),
            Node {
                kind: NodeKind::Dir,
                mode: 0o755,
                uid: 0,
                gid: 0,
                mtime: 0,
                origin: "image".into(),
            },
        );
        Ok(Tree {
            entries,
            implicit: BTreeSet::new(),
            spool: Spool::new()?,
        })
    }

    /// The entry at absolute path `path`.
    pub fn get(&self, path: &str) -> Option<&Node> {
        self.entries.get(path)
    }

    /// Whether there is an entry at `path`.
    pub fn contains(&self, path: &str) -> bool {
        self.entries.contains_key(path)
    }

    /// Every entry, the root included, in path order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Node)> {
        self.entries.iter()
    }

    /// The entries that were given (not the root, not parents made only because
    /// something was inserted beneath them), in path order.
    pub fn given(&self) -> impl Iterator<Item = (&String, &Node)> {
        self.entries
            .iter()
            .filter(|(p, _)| p.as_str() != "/" && !self.implicit.contains(p.as_str()))
    }

    /// Number of entries, the root included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries (never, while the root is there).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Remove the entry at `path` (not the entries under it); the removed node. A
    /// directory removed with entries still under it leaves them without their parent,
    /// which later insertions beneath it do not bring back ([`Tree::insert`] relies on
    /// every entry having its parents).
    pub fn remove(&mut self, path: &str) -> Option<Node> {
        self.implicit.remove(path);
        self.entries.remove(path)
    }

    /// Insert `node` at `path`, creating missing parents as `0755 root` directories.
    ///
    /// A directory given after entries beneath it (so created as such a parent) takes
    /// the given metadata. A directory given twice keeps the first one's metadata. Any other second
    /// claim on a path is a [`Conflict`] unless both are the same kind with the same
    /// content/target and metadata (several packages may ship one identical file).
    pub fn insert(&mut self, path: &str, node: Node) -> Result<(), Conflict> {
        debug_assert!(path.starts_with('/'), "tree paths are absolute: {path}");
        self.ensure_parents(path, &node.origin)?;
        match self.entries.get(path) {
            None => {
                self.entries.insert(path.to_string(), node);
                Ok(())
            }
            Some(_) if matches!(node.kind, NodeKind::Dir) && self.implicit.remove(path) => {
                self.entries.insert(path.to_string(), node);
                Ok(())
            }
            Some(old) => {
                let what = match (&old.kind, &node.kind) {
                    (NodeKind::Dir, NodeKind::Dir) => return Ok(()),
                    (NodeKind::File(a), NodeKind::File(b)) if a.sha256 != b.sha256 => "content",
                    (NodeKind::Symlink(a), NodeKind::Symlink(b)) if a != b => "link targets",
                    (NodeKind::Hardlink(a), NodeKind::Hardlink(b)) if a != b => "link targets",
                    (a, b) if std::mem::discriminant(a) != std::mem::discriminant(b) => "types",
                    _ if (old.mode, old.uid, old.gid) != (node.mode, node.uid, node.gid) => {
                        "modes or owners"
                    }
                    _ => return Ok(()),
                };
                Err(Conflict {
                    path: path.to_string(),
                    first: old.origin.clone(),
                    second: node.origin,
                    what,
                })
            }
        }
    }

    /// Insert or overwrite (for generated files that deliberately replace packaged ones).
    ///
    /// A directory that has entries under it cannot be replaced by a file or a link:
    /// its entries would then lie under a non-directory (under a symlink, a path that
    /// could lead anywhere, even outside `--rootfs`).
    pub fn replace(&mut self, path: &str, node: Node) -> Result<(), Conflict> {
        self.ensure_parents(path, &node.origin)?;
        if let Some(old) = self.entries.get(path) {
            if matches!(old.kind, NodeKind::Dir)
                && !matches!(node.kind, NodeKind::Dir)
                && self.has_children(path)
            {
                return Err(Conflict {
                    path: path.to_string(),
                    first: old.origin.clone(),
                    second: node.origin,
                    what: "types (a directory with entries in it cannot become a file or a link)",
                });
            }
        }
        self.implicit.remove(path);
        self.entries.insert(path.to_string(), node);
        Ok(())
    }

    /// Does the tree hold any entry under directory `path`?
    pub fn has_children(&self, path: &str) -> bool {
        let prefix = if path == "/" {
            "/".to_string()
        } else {
            format!("{path}/")
        };
        self.entries
            .range::<str, _>((
                std::ops::Bound::Excluded(prefix.as_str()),
                std::ops::Bound::Unbounded,
            ))
            .next()
            .is_some_and(|(p, _)| p.starts_with(&prefix))
    }

    /// Create the missing parents of `path`; every existing one must be a directory
    /// (a symlink is not: nothing is ever put in the tree under a symlink).
    ///
    /// Only the deepest parent in the tree is looked at: every entry's parents are in the
    /// tree and are directories (insert and replace keep it so), so the ones above it are
    /// too. Each insertion is then linear in the length of its path, not quadratic (a
    /// path 5,000 directories deep no longer looks up each of its 5,000 parents).
    fn ensure_parents(&mut self, path: &str, origin: &str) -> Result<(), Conflict> {
        // Ends of the missing parents in `path`, deepest first.
        let mut missing = Vec::new();
        let mut end = path.len();
        while let Some(i) = path[..end].rfind('/').filter(|&i| i > 0) {
            let parent = &path[..i];
            match self.entries.get(parent) {
                Some(Node {
                    kind: NodeKind::Dir,
                    ..
                }) => break,
                Some(other) => {
                    return Err(Conflict {
                        path: parent.to_string(),
                        first: other.origin.clone(),
                        second: origin.to_string(),
                        what: "types (a directory is needed here)",
                    })
                }
                None => {
                    missing.push(i);
                    end = i;
                }
            }
        }
        for &i in missing.iter().rev() {
            let parent = &path[..i];
            self.implicit.insert(parent.to_string());
            self.entries.insert(
                parent.to_string(),
                Node {
                    kind: NodeKind::Dir,
                    mode: 0o755,
                    uid: 0,
                    gid: 0,
                    mtime: 0,
                    origin: origin.to_string(),
                },
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(tree: &mut Tree, bytes: &[u8], origin: &str) -> Node {
        Node {
            kind: NodeKind::File(tree.spool.append_bytes(bytes).unwrap()),
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 0,
            origin: origin.into(),
        }
    }

    #[test]
    fn parents_are_created_and_sorted_first() {
        let mut t = Tree::new().unwrap();
        let n = file(&mut t, b"hello", "a");
        t.insert("/usr/lib/x/libx.so", n).unwrap();
        let paths: Vec<_> = t.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            ["/", "/usr", "/usr/lib", "/usr/lib/x", "/usr/lib/x/libx.so"]
        );
        let Some(Node {
            kind: NodeKind::File(c),
            ..
        }) = t.get("/usr/lib/x/libx.so")
        else {
            panic!("not a file")
        };
        assert_eq!(t.spool.read_all(c).unwrap(), b"hello");
    }

    /// Found by the property test `layer_bytes_do_not_depend_on_insertion_order`: a
    /// directory given after a file beneath it kept the made-up parent's 0755/mtime 0.
    #[test]
    fn a_directory_given_after_its_entries_keeps_its_metadata() {
        let dir = |mode, mtime, origin: &str| Node {
            kind: NodeKind::Dir,
            mode,
            uid: 0,
            gid: 0,
            mtime,
            origin: origin.into(),
        };
        let mut t = Tree::new().unwrap();
        let f = file(&mut t, b"x", "pkg-a");
        t.insert("/var/tmp/x", f).unwrap();
        assert_eq!(t.get("/var/tmp").unwrap().mode, 0o755);
        t.insert("/var/tmp", dir(0o1777, 5, "pkg-b")).unwrap();
        let got = t.get("/var/tmp").unwrap();
        assert_eq!(
            (got.mode, got.mtime, got.origin.as_str()),
            (0o1777, 5, "pkg-b")
        );
        // Given once, a directory keeps the first metadata, as before.
        t.insert("/var/tmp", dir(0o700, 9, "pkg-c")).unwrap();
        assert_eq!(t.get("/var/tmp").unwrap().mode, 0o1777);
        // A made-up parent still cannot become a file.
        let g = file(&mut t, b"y", "pkg-d");
        assert!(t.insert("/var", g).is_err());
    }

    #[test]
    fn identical_file_twice_is_fine_different_is_a_conflict() {
        let mut t = Tree::new().unwrap();
        let a = file(&mut t, b"same", "pkg-a");
        let b = file(&mut t, b"same", "pkg-b");
        let c = file(&mut t, b"other", "pkg-c");
        t.insert("/etc/x", a).unwrap();
        t.insert("/etc/x", b).unwrap();
        let err = t.insert("/etc/x", c).unwrap_err();
        assert_eq!(err.path, "/etc/x");
        assert_eq!(err.first, "pkg-a");
        assert_eq!(err.second, "pkg-c");
        assert!(err.to_string().contains("different content"), "{err}");
    }

    #[test]
    fn a_file_where_a_directory_is_needed_is_a_conflict() {
        let mut t = Tree::new().unwrap();
        let b = file(&mut t, b"y", "pkg-b");
        t.insert("/opt", b).unwrap();
        let c = file(&mut t, b"z", "pkg-c");
        let err = t.insert("/opt/z", c).unwrap_err();
        assert_eq!(err.path, "/opt");
    }

    fn symlink(target: &str, origin: &str) -> Node {
        Node {
            kind: NodeKind::Symlink(target.into()),
            mode: 0o777,
            uid: 0,
            gid: 0,
            mtime: 0,
            origin: origin.into(),
        }
    }

    #[test]
    fn nothing_goes_under_a_symlink_by_insert_or_replace() {
        let mut t = Tree::new().unwrap();
        t.insert("/usr/lib/x", symlink("/etc", "pkg-a")).unwrap();
        let f = file(&mut t, b"evil", "pkg-b");
        let err = t.insert("/usr/lib/x/passwd", f.clone()).unwrap_err();
        assert_eq!(err.path, "/usr/lib/x");
        assert_eq!(err.first, "pkg-a");
        assert!(err.to_string().contains("a directory is needed"), "{err}");
        let err = t.replace("/usr/lib/x/sub/passwd", f).unwrap_err();
        assert_eq!(err.path, "/usr/lib/x");
        assert!(!t.contains("/usr/lib/x/sub"));
        assert!(!t.contains("/usr/lib/x/sub/passwd"));
    }

    #[test]
    fn replace_refuses_to_turn_a_directory_with_entries_into_a_link() {
        let mut t = Tree::new().unwrap();
        let f = file(&mut t, b"tz", "tzdata");
        t.insert("/usr/share/zoneinfo/UTC", f).unwrap();
        let err = t
            .replace("/usr/share/zoneinfo", symlink("/tmp", "manifest"))
            .unwrap_err();
        assert_eq!(err.path, "/usr/share/zoneinfo");
        assert_eq!(
            (err.first.as_str(), err.second.as_str()),
            ("tzdata", "manifest")
        );
        assert!(matches!(
            t.get("/usr/share/zoneinfo").unwrap().kind,
            NodeKind::Dir
        ));
        // An empty directory may become a link; a directory may be replaced by one.
        t.insert(
            "/opt/empty",
            Node {
                kind: NodeKind::Dir,
                ..symlink("", "a")
            },
        )
        .unwrap();
        t.replace("/opt/empty", symlink("/usr", "manifest"))
            .unwrap();
        t.replace(
            "/usr/share",
            Node {
                kind: NodeKind::Dir,
                mode: 0o700,
                ..symlink("", "m")
            },
        )
        .unwrap();
        assert_eq!(t.get("/usr/share").unwrap().mode, 0o700);
        // A sibling whose name extends the directory's is not one of its entries.
        t.insert(
            "/usr/lib-x",
            Node {
                kind: NodeKind::Dir,
                ..symlink("", "a")
            },
        )
        .unwrap();
        t.insert("/usr/lib-x.d", symlink("x", "a")).unwrap();
        t.replace("/usr/lib-x", symlink("/usr", "manifest"))
            .unwrap();
        assert!(t.has_children("/usr"));
        assert!(t.has_children("/"));
        assert!(!t.has_children("/usr/lib-x"));
    }

    #[test]
    fn moving_content_frees_it_in_the_spool_it_leaves() {
        use std::os::unix::fs::MetadataExt;
        let bytes: Vec<u8> = (0..(3 * MOVE_CHUNK + 12_345) as usize)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let mut from = Spool::new().unwrap();
        from.append_bytes(b"before").unwrap();
        let c = from.append_bytes(&bytes).unwrap();
        let mut to = Spool::new().unwrap();
        to.append_bytes(b"already here").unwrap();
        let moved = to.move_from(&from, &c).unwrap();
        assert_eq!(moved.offset, 12);
        assert_eq!((moved.len, moved.sha256), (c.len, c.sha256));
        assert_eq!(to.read_all(&moved).unwrap(), bytes);
        // Where holes can be punched (tmpfs, ext4, xfs, btrfs), the bytes left `from`.
        let allocated = from.file.metadata().unwrap().blocks() * 512;
        if rustix::fs::fallocate(
            &from.file,
            rustix::fs::FallocateFlags::PUNCH_HOLE | rustix::fs::FallocateFlags::KEEP_SIZE,
            0,
            1,
        )
        .is_ok()
        {
            assert!(allocated < MOVE_CHUNK, "{allocated} bytes still allocated");
        }
    }
}
