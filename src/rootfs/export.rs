//! `--rootfs DIR`: the image's tree as a plain directory, exactly as the layer has it
//! (the `--rootfs` option of README.md): modes with setuid/setgid/sticky, owners (when running as root),
//! symlinks, hard links (one inode), mtimes clamped to the image epoch.
//!
//! # Never outside DIR
//!
//! Nothing is written through a path string. The tree is written under one open
//! directory fd; every directory on the way to an entry is opened component by
//! component with `openat(O_DIRECTORY | O_NOFOLLOW)`, and every entry is made relative
//! to its parent's fd (`mkdirat`, `openat(O_CREAT | O_EXCL | O_NOFOLLOW)`, `symlinkat`,
//! `linkat` without `AT_SYMLINK_FOLLOW`, `fchownat`/`utimensat` with
//! `AT_SYMLINK_NOFOLLOW`, `fchown`/`fchmod`/`futimens` on fds). A symlink on disk can
//! therefore never be followed, whatever the tree holds. Before anything is written the
//! tree itself is checked: every entry's parent must be a directory of the tree (a
//! symlink there is refused with an error naming the entry and the link), every path
//! component a plain name (no `.`, `..`, empty or NUL), every hard link must resolve to
//! a regular file of the tree.
//!
//! # Atomic, and never over a user's directory
//!
//! The tree is written into a fresh temporary directory beside DIR and renamed to DIR
//! only when everything succeeded ([`stage`], [`Staged::commit`]); a failure leaves
//! nothing (the temporary directory is deleted). An existing DIR is replaced only if it
//! is an empty directory or the root filesystem a previous `compose --rootfs` wrote
//! there. The latter is recognised by a marker file beside it,
//! `.<name>.compose-rootfs`, that records DIR's device and inode numbers: the marker
//! lives outside the root filesystem so the directory stays exactly the image's
//! content, and a user's unrelated directory of the same name does not match the
//! recorded inode. Anything else at DIR is refused and left untouched.

use std::fs::{self, File};
use std::io::{self, BufReader, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags, Timespec, Timestamps, CWD};

use crate::rootfs::tree::{Node, NodeKind, Tree};
use crate::text::{quoted, shown};

/// What [`export`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportSummary {
    /// The destination, as given.
    pub dir: PathBuf,
    /// Directories created (the root not counted).
    pub dirs: usize,
    /// Regular files written.
    pub files: usize,
    /// Symbolic links made.
    pub symlinks: usize,
    /// Hard links made (besides the file each shares an inode with).
    pub hardlinks: usize,
    /// Bytes of regular-file content (each inode once).
    pub bytes: u64,
    /// Whether owners were set. Only root can give files to other users; otherwise
    /// every entry belongs to the user who ran compose.
    pub owners_set: bool,
}

/// Why `--rootfs` was refused or failed. Every refusal is found before anything is
/// written at the destination.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The destination is a non-empty directory without a matching marker.
    #[error("refusing to write the root filesystem to {}: it is not empty and is not a root filesystem compose wrote there before; remove it or choose another --rootfs directory", .dir.display())]
    NotOurs {
        /// The destination.
        dir: PathBuf,
    },
    /// The destination exists and is not a directory (a symlink to one included).
    #[error("refusing to write the root filesystem to {}: it exists and is not a directory; remove it or choose another --rootfs directory", .dir.display())]
    NotADirectory {
        /// The destination.
        dir: PathBuf,
    },
    /// The destination's last component is not a plain name (`/`, `.`, `..`).
    #[error("refusing to write the root filesystem to {}: it does not name a directory (use a path like out/rootfs)", .dir.display())]
    BadDestination {
        /// The destination.
        dir: PathBuf,
    },
    /// An entry's parent in the tree is a symbolic link.
    #[error("refusing to write {} into {}: it lies under {}, a symbolic link to `{}`, and writing through a link could reach outside the directory", shown(.path), .dir.display(), shown(.symlink), shown(.target))]
    UnderSymlink {
        /// The destination.
        dir: PathBuf,
        /// Absolute tree path of the entry.
        path: String,
        /// Absolute tree path of the link (the entry's parent).
        symlink: String,
        /// The link's target as stored.
        target: String,
    },
    /// An entry's parent is missing from the tree or is not a directory.
    #[error(
        "refusing to write {}: its parent {} is {found} in the image, not a directory",
        shown(.path),
        shown(.parent)
    )]
    NoParent {
        /// Absolute tree path of the entry.
        path: String,
        /// Absolute tree path of its parent.
        parent: String,
        /// `missing` or `a file`.
        found: &'static str,
    },
    /// A tree path is not absolute or has an empty, `.`, `..` or NUL-bearing component.
    #[error("refusing to write {}: `{}` is not a plain file name", quoted(.path), shown(.component))]
    BadPath {
        /// The tree path.
        path: String,
        /// The offending component (the whole path when it is not absolute).
        component: String,
    },
    /// A hard link does not resolve to a regular file of the tree.
    #[error("hard link {} points to {}, which {reason} in the image", shown(.path), shown(.target))]
    Hardlink {
        /// Absolute tree path of the hard link.
        path: String,
        /// Absolute tree path where resolving it stopped.
        target: String,
        /// `does not exist`, `is not a regular file` or `is part of a hard-link loop`.
        reason: &'static str,
    },
    /// A file-system operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, naming the path.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> ExportError {
    let context = context.into();
    move |source| ExportError::Io { context, source }
}

fn errno_err(context: impl Into<String>) -> impl FnOnce(rustix::io::Errno) -> ExportError {
    let context = context.into();
    move |e| ExportError::Io {
        context,
        source: e.into(),
    }
}

/// Write `tree` as a plain directory at `dir`, atomically: [`stage`], then commit.
pub fn export(tree: &Tree, dir: &Path, epoch: u64) -> Result<ExportSummary, ExportError> {
    stage(tree, dir, epoch)?.commit()?.finish()
}

/// What is at the destination now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Destination {
    Absent,
    /// An empty directory or a previous compose root filesystem: may be replaced.
    Replaceable,
}

/// Check that `dir` may be written: absent, empty, or written by compose before.
/// [`stage`] and [`Staged::commit`] check again; call this early to fail before work.
pub fn check_destination(dir: &Path) -> Result<(), ExportError> {
    destination(dir).map(|_| ())
}

fn destination(dir: &Path) -> Result<Destination, ExportError> {
    let (_, _) = split_destination(dir)?;
    let meta = match fs::symlink_metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Destination::Absent),
        Err(e) => return Err(io_err(format!("cannot inspect {}", dir.display()))(e)),
        Ok(meta) => meta,
    };
    if !meta.is_dir() {
        return Err(ExportError::NotADirectory {
            dir: dir.to_path_buf(),
        });
    }
    let empty = fs::read_dir(dir)
        .map_err(io_err(format!("cannot list {}", dir.display())))?
        .next()
        .is_none();
    if empty || marker_matches(dir, &meta) {
        Ok(Destination::Replaceable)
    } else {
        Err(ExportError::NotOurs {
            dir: dir.to_path_buf(),
        })
    }
}

/// `dir`'s parent (created if missing) and file name.
fn split_destination(dir: &Path) -> Result<(PathBuf, String), ExportError> {
    let bad = || ExportError::BadDestination {
        dir: dir.to_path_buf(),
    };
    let name = match dir.components().next_back() {
        Some(std::path::Component::Normal(n)) => n.to_string_lossy().into_owned(),
        _ => return Err(bad()),
    };
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((parent, name))
}

fn marker_path(dir: &Path) -> Option<PathBuf> {
    let (parent, name) = split_destination(dir).ok()?;
    Some(parent.join(format!(".{name}.compose-rootfs")))
}

const MARKER_HEADER: &str = "compose rootfs marker: the directory beside this file was written by `compose --rootfs` and may be replaced by it\n";

fn marker_text(meta: &fs::Metadata) -> String {
    format!("{MARKER_HEADER}dev={}\nino={}\n", meta.dev(), meta.ino())
}

fn marker_matches(dir: &Path, meta: &fs::Metadata) -> bool {
    marker_path(dir)
        .and_then(|m| fs::read_to_string(m).ok())
        .is_some_and(|text| text == marker_text(meta))
}

/// Record that `dir` (as it is now) is compose's: written beside, renamed into place.
fn write_marker(dir: &Path) -> Result<(), ExportError> {
    let marker = marker_path(dir).expect("checked destination");
    let meta =
        fs::symlink_metadata(dir).map_err(io_err(format!("cannot inspect {}", dir.display())))?;
    let parent = marker.parent().expect("marker has a parent");
    let mut tmp = tempfile::NamedTempFile::new_in(parent).map_err(io_err(format!(
        "cannot create a file in {}",
        parent.display()
    )))?;
    tmp.write_all(marker_text(&meta).as_bytes())
        .map_err(io_err(format!("cannot write {}", marker.display())))?;
    tmp.persist(&marker)
        .map_err(|e| io_err(format!("cannot write {}", marker.display()))(e.error))?;
    Ok(())
}

/// A temporary directory that is deleted (even read-only subdirectories) unless kept.
#[derive(Debug)]
struct TmpDir(Option<PathBuf>);

impl TmpDir {
    fn path(&self) -> &Path {
        self.0.as_deref().expect("not yet kept")
    }

    fn keep(mut self) -> PathBuf {
        self.0.take().expect("not yet kept")
    }
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = remove_tree(&p);
        }
    }
}

/// Delete a directory tree we wrote, making its directories writable first (a root
/// filesystem has read-only directories, which a non-root user could not empty).
/// Symlinks are removed, never followed.
fn remove_tree(path: &Path) -> io::Result<()> {
    fn open_up(path: &Path) -> io::Result<()> {
        let meta = fs::symlink_metadata(path)?;
        if meta.is_dir() {
            if meta.permissions().mode() & 0o700 != 0o700 {
                fs::set_permissions(path, fs::Permissions::from_mode(0o700))?;
            }
            for entry in fs::read_dir(path)? {
                open_up(&entry?.path())?;
            }
        }
        Ok(())
    }
    let _ = open_up(path);
    fs::remove_dir_all(path)
}

/// A root filesystem written into a temporary directory beside its destination, not
/// yet in place. Dropping it deletes it.
#[derive(Debug)]
pub struct Staged {
    dir: PathBuf,
    tmp: TmpDir,
    summary: ExportSummary,
    /// The owner's lock on the temporary directory ([`crate::temporary`]).
    lock: Option<File>,
}

/// Write `tree` into a fresh temporary directory beside `dir`. Nothing is at `dir` yet.
pub fn stage(tree: &Tree, dir: &Path, epoch: u64) -> Result<Staged, ExportError> {
    destination(dir)?;
    let plan = Plan::new(tree, dir)?;
    let (parent, name) = split_destination(dir)?;
    fs::create_dir_all(&parent).map_err(io_err(format!("cannot create {}", parent.display())))?;
    let tmp = tempfile::Builder::new()
        .prefix(&crate::temporary::prefix(&temp_prefix(&name)))
        .tempdir_in(&parent)
        .map_err(io_err(format!(
            "cannot create a temporary directory in {}",
            parent.display()
        )))?;
    let tmp = TmpDir(Some(tmp.keep()));
    let lock = crate::temporary::lock_dir(tmp.path());
    let owners = rustix::process::geteuid().is_root();
    let mut summary = write_tree(tree, &plan, tmp.path(), dir, epoch, owners)?;
    summary.dir = dir.to_path_buf();
    Ok(Staged {
        dir: dir.to_path_buf(),
        tmp,
        summary,
        lock,
    })
}

/// The start of the name of the temporary directory a root filesystem named `name` is
/// staged in, beside it: `.<name>.tmp-` (the PID and random characters follow,
/// [`crate::temporary`]).
pub fn temp_prefix(name: &str) -> String {
    format!(".{name}.tmp-")
}

/// The start of the name of the directory an old root filesystem is moved into while
/// the new one is renamed in (it holds the old one under its own name).
pub const ASIDE_PREFIX: &str = ".old-rootfs-";

impl Staged {
    /// The temporary directory holding the root filesystem (for tests and diagnostics).
    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// What was written (`dir` is the destination).
    pub fn summary(&self) -> &ExportSummary {
        &self.summary
    }

    /// Put the root filesystem at its destination: a replaceable one there is moved
    /// aside (deleted by [`Committed::finish`], put back by [`Committed::rollback`]).
    pub fn commit(self) -> Result<Committed, ExportError> {
        let state = destination(&self.dir)?;
        let (parent, name) = split_destination(&self.dir)?;
        let mut aside = None;
        if state == Destination::Replaceable {
            let old = tempfile::Builder::new()
                .prefix(&crate::temporary::prefix(ASIDE_PREFIX))
                .tempdir_in(&parent)
                .map_err(io_err(format!(
                    "cannot create a temporary directory in {}",
                    parent.display()
                )))?;
            let old = TmpDir(Some(old.keep()));
            let old_lock = crate::temporary::lock_dir(old.path());
            // Under its own name: a sweep after a crash knows where it belongs.
            let target = old.path().join(&name);
            fs::rename(&self.dir, &target).map_err(io_err(format!(
                "cannot move the old {} aside",
                self.dir.display()
            )))?;
            aside = Some((old, target, old_lock));
        }
        if let Err(e) = fs::rename(self.tmp.path(), &self.dir) {
            if let Some((_, target, _)) = &aside {
                let _ = fs::rename(target, &self.dir);
            }
            return Err(io_err(format!(
                "cannot rename the root filesystem to {}",
                self.dir.display()
            ))(e));
        }
        let tmp = self.tmp.keep();
        let committed = Committed {
            dir: self.dir,
            tmp,
            aside,
            summary: self.summary,
            _lock: self.lock,
        };
        if let Err(e) = write_marker(&committed.dir) {
            committed.rollback();
            return Err(e);
        }
        Ok(committed)
    }
}

/// A root filesystem in place, the one it replaced still kept aside.
#[derive(Debug)]
pub struct Committed {
    dir: PathBuf,
    /// Where it was staged (free again; used to move it back out on rollback).
    tmp: PathBuf,
    /// The directory holding the old root filesystem, the old one in it, and its lock.
    aside: Option<(TmpDir, PathBuf, Option<File>)>,
    summary: ExportSummary,
    _lock: Option<File>,
}

impl Committed {
    /// Delete the replaced root filesystem, if any.
    pub fn finish(mut self) -> Result<ExportSummary, ExportError> {
        if let Some((old, _, _)) = self.aside.take() {
            let old = old.keep();
            remove_tree(&old).map_err(io_err(format!("cannot delete {}", old.display())))?;
        }
        Ok(self.summary)
    }

    /// Undo the commit (another output failed): delete the new root filesystem and
    /// put back what was there.
    pub fn rollback(mut self) {
        if fs::rename(&self.dir, &self.tmp).is_ok() {
            let _ = remove_tree(&self.tmp);
        }
        match self.aside.take() {
            Some((old, target, _)) => {
                if fs::rename(&target, &self.dir).is_ok() {
                    let _ = write_marker(&self.dir);
                }
                drop(old);
            }
            None => {
                if let Some(m) = marker_path(&self.dir) {
                    let _ = fs::remove_file(m);
                }
            }
        }
    }
}

/// The tree, checked, with hard links resolved to the regular file they share.
struct Plan<'t> {
    /// Hard-link path → the `File` node's path (its inode's content and metadata).
    links: Vec<(&'t str, &'t str)>,
}

impl<'t> Plan<'t> {
    fn new(tree: &'t Tree, dir: &Path) -> Result<Plan<'t>, ExportError> {
        let mut links = Vec::new();
        for (path, node) in tree.iter() {
            if path == "/" {
                continue;
            }
            check_components(path)?;
            let parent = parent_of(path);
            match tree.get(parent) {
                Some(Node {
                    kind: NodeKind::Dir,
                    ..
                }) => {}
                Some(Node {
                    kind: NodeKind::Symlink(target),
                    ..
                }) => {
                    return Err(ExportError::UnderSymlink {
                        dir: dir.to_path_buf(),
                        path: path.clone(),
                        symlink: parent.to_string(),
                        target: target.clone(),
                    })
                }
                other => {
                    return Err(ExportError::NoParent {
                        path: path.clone(),
                        parent: parent.to_string(),
                        found: match other {
                            None => "missing",
                            Some(_) => "a file",
                        },
                    })
                }
            }
            if let NodeKind::Hardlink(first) = &node.kind {
                links.push((path.as_str(), resolve_hardlink(tree, path, first)?));
            }
        }
        Ok(Plan { links })
    }
}

/// Follow a hard link (possibly through other hard links) to its regular file.
fn resolve_hardlink<'t>(
    tree: &'t Tree,
    path: &str,
    first: &'t str,
) -> Result<&'t str, ExportError> {
    let mut target = first;
    for _ in 0..=tree.len() {
        let err = |reason| ExportError::Hardlink {
            path: path.to_string(),
            target: target.to_string(),
            reason,
        };
        match tree.get(target).map(|n| &n.kind) {
            Some(NodeKind::File(_)) => return Ok(target),
            Some(NodeKind::Hardlink(next)) => target = next,
            Some(_) => return Err(err("is not a regular file")),
            None => return Err(err("does not exist")),
        }
    }
    Err(ExportError::Hardlink {
        path: path.to_string(),
        target: first.to_string(),
        reason: "is part of a hard-link loop",
    })
}

/// Every component of an absolute tree path is a plain name.
fn check_components(path: &str) -> Result<(), ExportError> {
    let bad = |component: &str| ExportError::BadPath {
        path: path.to_string(),
        component: component.to_string(),
    };
    let Some(rest) = path.strip_prefix('/') else {
        return Err(bad(path));
    };
    for c in rest.split('/') {
        if c.is_empty() || c == "." || c == ".." || c.contains('\0') {
            return Err(bad(c));
        }
    }
    Ok(())
}

fn parent_of(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

fn name_of(path: &str) -> &str {
    &path[path.rfind('/').map_or(0, |i| i + 1)..]
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// Open directory `dir` (a tree path) below `root`, one component at a time, never
/// following a symlink (`ELOOP`/`ENOTDIR` if one is in the way).
fn open_dir(root: &OwnedFd, dir: &str) -> rustix::io::Result<OwnedFd> {
    let mut fd = rustix::io::dup(root)?;
    for c in dir.split('/').filter(|c| !c.is_empty()) {
        fd = rustix::fs::openat(&fd, c, DIR_FLAGS, Mode::empty())?;
    }
    Ok(fd)
}

/// The open directories on the way to the last entry written: the tree comes in path
/// order, so consecutive entries mostly share their parents.
struct DirStack<'a> {
    root: &'a OwnedFd,
    /// (tree path, fd), each the parent of the next.
    stack: Vec<(String, OwnedFd)>,
}

impl<'a> DirStack<'a> {
    fn open(&mut self, dir: &str) -> rustix::io::Result<BorrowedFd<'_>> {
        while let Some((p, _)) = self.stack.last() {
            let inside =
                dir == p || (dir.starts_with(p.as_str()) && dir[p.len()..].starts_with('/'));
            if inside {
                break;
            }
            self.stack.pop();
        }
        let done = self.stack.last().map_or(0, |(p, _)| p.len());
        let mut end = done;
        // `dir` is checked: one `/` before each non-empty component.
        for c in dir[done..].split('/').filter(|c| !c.is_empty()) {
            end += 1 + c.len();
            let base = self
                .stack
                .last()
                .map_or(self.root.as_fd(), |(_, fd)| fd.as_fd());
            let fd = rustix::fs::openat(base, c, DIR_FLAGS, Mode::empty())?;
            self.stack.push((dir[..end].to_string(), fd));
        }
        Ok(self
            .stack
            .last()
            .map_or(self.root.as_fd(), |(_, fd)| fd.as_fd()))
    }
}

fn timestamps(node: &Node, epoch: u64) -> Timestamps {
    let t = Timespec {
        tv_sec: node.mtime.min(epoch).min(i64::MAX as u64) as i64,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

fn owner(node: &Node) -> (Option<rustix::fs::Uid>, Option<rustix::fs::Gid>) {
    (
        Some(rustix::fs::Uid::from_raw(node.uid)),
        Some(rustix::fs::Gid::from_raw(node.gid)),
    )
}

/// Write every entry under the directory `root_path` (the staging directory): entries
/// in path order, then hard links, then directory metadata deepest first (a directory's
/// mtime and mode are set after its last child is written).
fn write_tree(
    tree: &Tree,
    plan: &Plan<'_>,
    root_path: &Path,
    dest: &Path,
    epoch: u64,
    owners: bool,
) -> Result<ExportSummary, ExportError> {
    let at = |path: &str| format!("{}{path}", dest.display());
    let root = rustix::fs::openat(CWD, root_path, DIR_FLAGS, Mode::empty())
        .map_err(errno_err(format!("cannot open {}", root_path.display())))?;
    let mut summary = ExportSummary {
        owners_set: owners,
        ..ExportSummary::default()
    };
    let mut stack = DirStack {
        root: &root,
        stack: Vec::new(),
    };
    let mut dirs: Vec<(&str, &Node)> = Vec::new();
    for (path, node) in tree.iter() {
        if path == "/" {
            dirs.push((path, node));
            continue;
        }
        let parent_path = parent_of(path);
        let name = name_of(path);
        let parent = stack.open(parent_path).map_err(errno_err(format!(
            "cannot open directory {} (without following links)",
            at(parent_path)
        )))?;
        match &node.kind {
            NodeKind::Dir => {
                rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o700))
                    .map_err(errno_err(format!("cannot create directory {}", at(path))))?;
                dirs.push((path, node));
                summary.dirs += 1;
            }
            NodeKind::File(content) => {
                let fd = rustix::fs::openat(
                    parent,
                    name,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(errno_err(format!("cannot create {}", at(path))))?;
                let mut file = File::from(fd);
                let mut data = BufReader::with_capacity(256 * 1024, tree.spool.reader(content));
                let copied = io::copy(&mut data, &mut file)
                    .map_err(io_err(format!("cannot write {}", at(path))))?;
                if copied != content.len {
                    return Err(io_err(format!("cannot write {}", at(path)))(
                        io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!("content has {copied} bytes, {} expected", content.len),
                        ),
                    ));
                }
                let meta = |e| errno_err(format!("cannot set the metadata of {}", at(path)))(e);
                // chown first: it clears setuid/setgid, which fchmod then sets.
                if owners {
                    let (u, g) = owner(node);
                    rustix::fs::fchown(&file, u, g).map_err(meta)?;
                }
                rustix::fs::fchmod(&file, Mode::from_raw_mode(node.mode & 0o7777)).map_err(meta)?;
                rustix::fs::futimens(&file, &timestamps(node, epoch)).map_err(meta)?;
                summary.files += 1;
                summary.bytes += content.len;
            }
            NodeKind::Symlink(target) => {
                rustix::fs::symlinkat(target.as_str(), parent, name)
                    .map_err(errno_err(format!("cannot create symlink {}", at(path))))?;
                let meta =
                    |e| errno_err(format!("cannot set the metadata of symlink {}", at(path)))(e);
                if owners {
                    let (u, g) = owner(node);
                    rustix::fs::chownat(parent, name, u, g, AtFlags::SYMLINK_NOFOLLOW)
                        .map_err(meta)?;
                }
                rustix::fs::utimensat(
                    parent,
                    name,
                    &timestamps(node, epoch),
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(meta)?;
                summary.symlinks += 1;
            }
            // Made below, once every regular file exists.
            NodeKind::Hardlink(_) => {}
        }
    }
    drop(stack);

    for &(path, file) in &plan.links {
        let target_dir = open_dir(&root, parent_of(file)).map_err(errno_err(format!(
            "cannot open directory {} (without following links)",
            at(parent_of(file))
        )))?;
        let link_dir = open_dir(&root, parent_of(path)).map_err(errno_err(format!(
            "cannot open directory {} (without following links)",
            at(parent_of(path))
        )))?;
        // No AT_SYMLINK_FOLLOW: a symlink is linked itself, never its target.
        rustix::fs::linkat(
            &target_dir,
            name_of(file),
            &link_dir,
            name_of(path),
            AtFlags::empty(),
        )
        .map_err(errno_err(format!(
            "cannot create hard link {} to {}",
            at(path),
            at(file)
        )))?;
        summary.hardlinks += 1;
    }

    for &(path, node) in dirs.iter().rev() {
        let fd = open_dir(&root, path).map_err(errno_err(format!(
            "cannot open directory {} (without following links)",
            at(path)
        )))?;
        let meta = |e| errno_err(format!("cannot set the metadata of directory {}", at(path)))(e);
        if owners {
            let (u, g) = owner(node);
            rustix::fs::fchown(&fd, u, g).map_err(meta)?;
        }
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(node.mode & 0o7777)).map_err(meta)?;
        rustix::fs::futimens(&fd, &timestamps(node, epoch)).map_err(meta)?;
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn node(kind: NodeKind, mode: u32, mtime: u64) -> Node {
        Node {
            kind,
            mode,
            uid: 0,
            gid: 0,
            mtime,
            origin: "test".into(),
        }
    }

    fn file(tree: &mut Tree, bytes: &[u8], mode: u32, mtime: u64) -> Node {
        let c = tree.spool.append_bytes(bytes).unwrap();
        node(NodeKind::File(c), mode, mtime)
    }

    /// Names in `parent` other than the listed ones (leftover temporaries).
    fn others(parent: &Path, keep: &[&str]) -> Vec<String> {
        fs::read_dir(parent)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !keep.contains(&n.as_str()))
            .collect()
    }

    #[test]
    fn writes_modes_links_and_clamped_times() {
        let mut t = Tree::new().unwrap();
        let epoch = 1_000_000;
        let f = file(&mut t, b"setuid tool", 0o4755, 5);
        t.insert("/usr/bin/tool", f).unwrap();
        // A hard link that sorts before the file it links to.
        t.insert(
            "/usr/bin/a-tool",
            node(NodeKind::Hardlink("/usr/bin/tool".into()), 0o4755, 5),
        )
        .unwrap();
        t.insert("/tmp", node(NodeKind::Dir, 0o1777, 2_000_000))
            .unwrap();
        let ro = file(&mut t, b"read only", 0o444, 2_000_000);
        t.insert("/etc/ro/file", ro).unwrap();
        t.replace("/etc/ro", node(NodeKind::Dir, 0o555, 7)).unwrap();
        t.insert("/bin", node(NodeKind::Symlink("usr/bin".into()), 0o777, 9))
            .unwrap();
        t.insert(
            "/etc/abs",
            node(NodeKind::Symlink("/nonexistent/x".into()), 0o777, 9),
        )
        .unwrap();

        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("rootfs");
        let summary = export(&t, &dir, epoch).unwrap();
        assert_eq!(
            (
                summary.files,
                summary.hardlinks,
                summary.symlinks,
                summary.dirs
            ),
            (2, 1, 2, 5)
        );
        assert_eq!(summary.owners_set, rustix::process::geteuid().is_root());

        let m = |p: &str| fs::symlink_metadata(dir.join(p)).unwrap();
        assert_eq!(m("usr/bin/tool").mode() & 0o7777, 0o4755);
        assert_eq!(m("usr/bin/tool").ino(), m("usr/bin/a-tool").ino());
        assert_eq!(m("usr/bin/tool").nlink(), 2);
        assert_eq!(
            fs::read(dir.join("usr/bin/a-tool")).unwrap(),
            b"setuid tool"
        );
        assert_eq!(m("tmp").mode() & 0o7777, 0o1777);
        assert!(m("tmp").is_dir());
        assert_eq!(m("etc/ro").mode() & 0o7777, 0o555);
        assert_eq!(m("etc/ro/file").mode() & 0o7777, 0o444);
        assert_eq!(
            fs::read_link(dir.join("bin")).unwrap(),
            Path::new("usr/bin")
        );
        assert_eq!(
            fs::read_link(dir.join("etc/abs")).unwrap(),
            Path::new("/nonexistent/x")
        );
        // Clamped to the epoch, and directories keep theirs after their children.
        for (p, want) in [
            ("usr/bin/tool", 5),
            ("tmp", epoch as i64),
            ("etc/ro", 7),
            ("etc/ro/file", epoch as i64),
            ("bin", 9),
            ("usr", 0),
            ("", 0),
        ] {
            assert_eq!(m(p).mtime(), want, "{p}");
        }
        assert_eq!(m("").mode() & 0o7777, 0o755);
        assert_eq!(
            others(tmp.path(), &["rootfs", ".rootfs.compose-rootfs"]),
            Vec::<String>::new()
        );

        // A second export replaces the first (read-only directories and all).
        t.remove("/etc/abs");
        let summary = export(&t, &dir, epoch).unwrap();
        assert_eq!(summary.symlinks, 1);
        assert!(!dir.join("etc/abs").exists());
        assert_eq!(
            others(tmp.path(), &["rootfs", ".rootfs.compose-rootfs"]),
            Vec::<String>::new()
        );
    }

    #[test]
    fn a_symlink_where_a_directory_should_be_is_refused_and_nothing_is_written() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        for target in [outside.to_str().unwrap(), "../outside", "../../outside"] {
            let mut t = Tree::new().unwrap();
            let f = file(&mut t, b"escaped", 0o644, 0);
            t.insert("/a/x", f).unwrap();
            // The tree refuses this on insert/replace; remove() is the way around it.
            t.remove("/a");
            t.insert("/a", node(NodeKind::Symlink(target.into()), 0o777, 0))
                .unwrap();
            let dir = tmp.path().join("rootfs");
            let err = export(&t, &dir, 0).unwrap_err();
            assert!(
                matches!(&err, ExportError::UnderSymlink { path, symlink, .. } if path == "/a/x" && symlink == "/a"),
                "{err}"
            );
            let msg = err.to_string();
            assert!(msg.contains("/a/x") && msg.contains(target), "{msg}");
            assert!(!outside.exists());
            assert!(!dir.exists());
            assert_eq!(others(tmp.path(), &[]), Vec::<String>::new());
        }
    }

    #[test]
    fn bad_components_and_hard_links_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("rootfs");
        let mut t = Tree::new().unwrap();
        t.insert("/etc/..", node(NodeKind::Dir, 0o755, 0)).unwrap();
        let err = export(&t, &dir, 0).unwrap_err();
        assert!(
            matches!(&err, ExportError::BadPath { component, .. } if component == ".."),
            "{err}"
        );

        let mut t = Tree::new().unwrap();
        t.insert(
            "/etc/link",
            node(NodeKind::Hardlink("/etc/../../x".into()), 0o644, 0),
        )
        .unwrap();
        let err = export(&t, &dir, 0).unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");

        let mut t = Tree::new().unwrap();
        t.insert(
            "/etc/s",
            node(NodeKind::Symlink("/etc/passwd".into()), 0o777, 0),
        )
        .unwrap();
        t.insert(
            "/etc/link",
            node(NodeKind::Hardlink("/etc/s".into()), 0o644, 0),
        )
        .unwrap();
        let err = export(&t, &dir, 0).unwrap_err();
        assert!(err.to_string().contains("is not a regular file"), "{err}");

        let mut t = Tree::new().unwrap();
        t.insert("/a", node(NodeKind::Hardlink("/b".into()), 0o644, 0))
            .unwrap();
        t.insert("/b", node(NodeKind::Hardlink("/a".into()), 0o644, 0))
            .unwrap();
        let err = export(&t, &dir, 0).unwrap_err();
        assert!(err.to_string().contains("loop"), "{err}");

        let mut t = Tree::new().unwrap();
        let f = file(&mut t, b"x", 0o644, 0);
        t.insert("/gone/x", f).unwrap();
        t.remove("/gone");
        let err = export(&t, &dir, 0).unwrap_err();
        assert!(
            matches!(
                err,
                ExportError::NoParent {
                    found: "missing",
                    ..
                }
            ),
            "{err}"
        );

        assert!(!dir.exists());
        assert_eq!(others(tmp.path(), &[]), Vec::<String>::new());
    }

    #[test]
    fn directories_are_opened_without_following_a_symlink_on_disk() {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir_all(tmp.path().join("root/usr")).unwrap();
        fs::create_dir(tmp.path().join("outside")).unwrap();
        std::os::unix::fs::symlink("../../outside", tmp.path().join("root/usr/lib")).unwrap();
        let root =
            rustix::fs::openat(CWD, tmp.path().join("root"), DIR_FLAGS, Mode::empty()).unwrap();
        assert!(open_dir(&root, "/usr").is_ok());
        let err = open_dir(&root, "/usr/lib").unwrap_err();
        assert!(
            err == rustix::io::Errno::LOOP || err == rustix::io::Errno::NOTDIR,
            "{err}"
        );
        let mut stack = DirStack {
            root: &root,
            stack: Vec::new(),
        };
        assert!(stack.open("/usr").is_ok());
        assert!(stack.open("/usr/lib").is_err());
    }

    #[test]
    fn an_unrelated_directory_is_never_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("rootfs");
        let t = Tree::new().unwrap();

        // Non-empty and not ours: refused, untouched.
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("precious"), b"keep me").unwrap();
        let err = export(&t, &dir, 0).unwrap_err();
        assert!(matches!(err, ExportError::NotOurs { .. }), "{err}");
        assert!(err.to_string().contains("not empty"), "{err}");
        assert_eq!(fs::read(dir.join("precious")).unwrap(), b"keep me");
        assert_eq!(others(tmp.path(), &["rootfs"]), Vec::<String>::new());

        // A file, or a symlink to a directory: refused.
        let file = tmp.path().join("file");
        fs::write(&file, b"f").unwrap();
        assert!(matches!(
            export(&t, &file, 0),
            Err(ExportError::NotADirectory { .. })
        ));
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(tmp.path().join("empty"), &link).unwrap();
        fs::create_dir(tmp.path().join("empty")).unwrap();
        assert!(matches!(
            export(&t, &link, 0),
            Err(ExportError::NotADirectory { .. })
        ));
        assert!(matches!(
            export(&t, Path::new("/"), 0),
            Err(ExportError::BadDestination { .. })
        ));

        // An empty directory is replaced.
        export(&t, &tmp.path().join("empty"), 0).unwrap();

        // Ours, then swapped by the user for a directory of their own: the stale marker
        // does not match it.
        let ours = tmp.path().join("ours");
        export(&t, &ours, 0).unwrap();
        fs::write(ours.join("added-by-user"), b"x").unwrap();
        export(&t, &ours, 0).unwrap();
        assert!(!ours.join("added-by-user").exists());
        fs::rename(&ours, tmp.path().join("moved")).unwrap();
        fs::create_dir(&ours).unwrap();
        fs::write(ours.join("mine"), b"x").unwrap();
        assert!(matches!(
            export(&t, &ours, 0),
            Err(ExportError::NotOurs { .. })
        ));
        assert!(ours.join("mine").exists());
    }

    #[test]
    fn rollback_puts_the_previous_root_filesystem_back() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("rootfs");
        let mut t = Tree::new().unwrap();
        let f = file(&mut t, b"old", 0o644, 0);
        t.insert("/old", f).unwrap();
        export(&t, &dir, 0).unwrap();

        let mut t = Tree::new().unwrap();
        let f = file(&mut t, b"new", 0o644, 0);
        t.insert("/new", f).unwrap();
        let staged = stage(&t, &dir, 0).unwrap();
        assert!(staged.path().join("new").exists());
        assert!(dir.join("old").exists());
        let committed = staged.commit().unwrap();
        assert!(dir.join("new").exists() && !dir.join("old").exists());
        committed.rollback();
        assert!(dir.join("old").exists() && !dir.join("new").exists());
        assert_eq!(
            others(tmp.path(), &["rootfs", ".rootfs.compose-rootfs"]),
            Vec::<String>::new()
        );
        // Still recognised as ours.
        export(&t, &dir, 0).unwrap();
        assert!(dir.join("new").exists());

        // Rolling back the first export leaves nothing.
        let fresh = tmp.path().join("fresh");
        stage(&t, &fresh, 0).unwrap().commit().unwrap().rollback();
        assert!(!fresh.exists());
        assert_eq!(
            others(tmp.path(), &["rootfs", ".rootfs.compose-rootfs"]),
            Vec::<String>::new()
        );
    }
}
