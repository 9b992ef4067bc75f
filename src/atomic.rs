//! Replacing one file atomically: the new content is written to a temporary file beside
//! the target (same directory, so the same file system), synced, given the target's mode
//! (an existing file's, else `0644`) and renamed over the target; then the directory is
//! synced so the rename survives a crash. Readers see the old file or the new one, never
//! a part; on any failure the temporary file is removed and the target stays as it was.
//!
//! Used by every single-file output: the lock ([`crate::lock::Lock::write`]), the SBOM
//! ([`crate::sbom::write`]) and the image archives ([`crate::oci::archive`]).
//!
//! The temporary file is named `<prefix><pid>-<random>` and locked while it lives
//! ([`crate::temporary`]), so a run killed before the rename leaves nothing a later run
//! cannot recognise and remove. [`AtomicFile::commit_keeping_old`] keeps the replaced
//! file (a hard link beside it) until the caller knows whether every other output of
//! the build could be put in place too ([`Replaced::finish`], [`Replaced::rollback`]).
//!
//! This module owns the mechanics of the replacement only: what is written, and the
//! messages the callers show, are theirs. It touches nothing but the target's directory
//! (created if missing), the temporary file, the kept old file and the target.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The mode of a new file (an existing target keeps its own).
const NEW_FILE_MODE: u32 = 0o644;

/// The step of a replacement that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Creating the target's directory ([`AtomicError::path`] is the directory).
    CreateDir,
    /// Creating the temporary file (the path is the directory).
    CreateTemp,
    /// Writing, syncing or setting the mode of the temporary file (the path is the target).
    Write,
    /// Renaming the temporary file over the target (the path is the target).
    Rename,
    /// Syncing the directory after the rename (the path is the directory).
    SyncDir,
}

/// Why a file could not be replaced: the step, the path it concerns, the cause.
#[derive(Debug)]
pub struct AtomicError {
    /// the step that failed
    pub step: Step,
    /// the directory or the target, as [`Step`] says for each step
    pub path: PathBuf,
    /// the underlying error
    pub source: io::Error,
}

impl AtomicError {
    fn new(step: Step, path: &Path) -> impl FnOnce(io::Error) -> AtomicError {
        let path = path.to_path_buf();
        move |source| AtomicError { step, path, source }
    }

    /// What failed, naming the path, without the cause: `cannot write out/x.json`.
    pub fn context(&self) -> String {
        let path = self.path.display();
        match self.step {
            Step::CreateDir => format!("cannot create {path}"),
            Step::CreateTemp => format!("cannot create a file in {path}"),
            Step::Write => format!("cannot write {path}"),
            Step::Rename => format!("cannot rename the new file to {path}"),
            Step::SyncDir => format!("cannot sync {path}"),
        }
    }
}

impl fmt::Display for AtomicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.context(), self.source)
    }
}

impl std::error::Error for AtomicError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// A replacement in progress: write to it, then [`AtomicFile::commit`]. Dropped without
/// a commit, it removes its temporary file and leaves the target alone.
pub struct AtomicFile {
    tmp: tempfile::NamedTempFile,
    target: PathBuf,
    dir: PathBuf,
}

impl AtomicFile {
    /// Start replacing `target`: its directory is created if missing, and the temporary
    /// file (named `prefix`, the PID and random characters) is created in it. A `prefix`
    /// starting with `.` keeps the temporary file out of plain listings.
    pub fn create(target: &Path, prefix: &str) -> Result<AtomicFile, AtomicError> {
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&dir).map_err(AtomicError::new(Step::CreateDir, &dir))?;
        let tmp = tempfile::Builder::new()
            .prefix(&crate::temporary::prefix(prefix))
            .tempfile_in(&dir)
            .map_err(AtomicError::new(Step::CreateTemp, &dir))?;
        crate::temporary::lock_file(tmp.as_file());
        Ok(AtomicFile {
            tmp,
            target: target.to_path_buf(),
            dir,
        })
    }

    /// Finish: give the temporary file its mode, sync it, rename it over the target and
    /// sync the directory.
    pub fn commit(self) -> Result<(), AtomicError> {
        self.commit_keeping_old()?.finish();
        Ok(())
    }

    /// Give the temporary file its mode and sync it: everything but the rename, so that
    /// a failure here is found before any output of the build is put in place.
    pub fn prepare(&self) -> Result<(), AtomicError> {
        let mode = fs::metadata(&self.target)
            .map(|m| m.permissions().mode() & 0o7777)
            .unwrap_or(NEW_FILE_MODE);
        let file = self.tmp.as_file();
        file.set_permissions(fs::Permissions::from_mode(mode))
            .and_then(|()| file.sync_all())
            .map_err(AtomicError::new(Step::Write, &self.target))
    }

    /// [`AtomicFile::commit`], keeping the file it replaced (a hard link beside it, a
    /// copy where links are not allowed) until [`Replaced::finish`] deletes it or
    /// [`Replaced::rollback`] puts it back.
    pub fn commit_keeping_old(self) -> Result<Replaced, AtomicError> {
        self.prepare()?;
        let AtomicFile { tmp, target, dir } = self;
        let old = match fs::symlink_metadata(&target) {
            Ok(meta) if !meta.is_dir() => Some(
                tempfile::Builder::new()
                    .prefix(&crate::temporary::prefix(OLD_PREFIX))
                    .make_in(&dir, |p| {
                        fs::hard_link(&target, p).or_else(|_| fs::copy(&target, p).map(drop))
                    })
                    .map_err(AtomicError::new(Step::CreateTemp, &dir))?,
            ),
            _ => None,
        };
        tmp.persist(&target)
            .map_err(|e| AtomicError::new(Step::Rename, &target)(e.error))?;
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(AtomicError::new(Step::SyncDir, &dir))?;
        Ok(Replaced { target, dir, old })
    }

    /// The file being replaced.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// The temporary file holding the new content (to remove on an interrupt).
    pub fn temp_path(&self) -> &Path {
        self.tmp.path()
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tmp.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.tmp.write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tmp.flush()
    }
}

/// The start of the name of a replaced file kept until the build is committed
/// ([`AtomicFile::commit_keeping_old`]).
pub const OLD_PREFIX: &str = ".compose-old-";

/// A file put in place, the one it replaced (if any) still kept beside it.
pub struct Replaced {
    target: PathBuf,
    dir: PathBuf,
    /// The old file under a temporary name, deleted when dropped.
    old: Option<tempfile::NamedTempFile<()>>,
}

impl Replaced {
    /// Delete the replaced file.
    pub fn finish(self) {
        drop(self.old);
    }

    /// Undo the replacement (another output failed): the old file back at the target,
    /// or no file there when there was none.
    pub fn rollback(self) {
        match self.old {
            Some(old) => {
                let _ = old.persist(&self.target);
            }
            None => {
                let _ = fs::remove_file(&self.target);
            }
        }
        let _ = File::open(&self.dir).and_then(|d| d.sync_all());
    }
}

/// Replace `target` with `bytes` ([`AtomicFile`] in one call).
pub fn write(target: &Path, prefix: &str, bytes: &[u8]) -> Result<(), AtomicError> {
    let mut file = AtomicFile::create(target, prefix)?;
    file.write_all(bytes)
        .map_err(AtomicError::new(Step::Write, target))?;
    file.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut out: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        out.sort();
        out
    }

    #[test]
    fn writes_new_files_0644_and_creates_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/dir/x.json");
        write(&path, ".compose-test-", b"{}\n").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"{}\n");
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o644);
        assert_eq!(names(&dir.path().join("sub/dir")), ["x.json"]);
    }

    #[test]
    fn replaces_a_file_keeping_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        write(&path, ".compose-test-", b"old\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        write(&path, ".compose-test-", b"replaced\n").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "replaced\n");
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o600);
        assert_eq!(names(dir.path()), ["x.lock"]);
    }

    #[test]
    fn an_uncommitted_or_failed_replacement_leaves_the_target_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.tar");
        write(&path, ".compose-test-", b"old\n").unwrap();

        let mut file = AtomicFile::create(&path, ".compose-test-").unwrap();
        file.write_all(b"half of it").unwrap();
        assert_eq!(file.target(), path);
        drop(file);
        assert_eq!(fs::read_to_string(&path).unwrap(), "old\n");
        assert_eq!(names(dir.path()), ["x.tar"]);

        // A directory cannot be replaced by a file: the rename fails, naming the target.
        let sub = dir.path().join("d");
        fs::create_dir(&sub).unwrap();
        fs::write(sub.join("inside"), b"kept").unwrap();
        let e = write(&sub, ".compose-test-", b"new\n").unwrap_err();
        assert_eq!(e.step, Step::Rename);
        assert!(
            e.to_string().starts_with(&format!(
                "cannot rename the new file to {}: ",
                sub.display()
            )),
            "{e}"
        );
        assert_eq!(names(dir.path()), ["d", "x.tar"]);
        assert_eq!(names(&sub), ["inside"]);
    }

    #[test]
    fn a_missing_directory_that_cannot_be_created_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        fs::write(&file, b"").unwrap();
        let e = write(&file.join("x"), ".compose-test-", b"").unwrap_err();
        assert_eq!(e.step, Step::CreateDir);
        assert_eq!(e.path, file);
        assert!(
            e.to_string()
                .starts_with(&format!("cannot create {}: ", file.display())),
            "{e}"
        );
    }

    #[test]
    fn a_replacement_kept_can_be_taken_back_or_finished() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        write(&path, ".compose-test-", b"old\n").unwrap();
        // Rolled back: the old content, nothing beside it.
        let mut file = AtomicFile::create(&path, ".compose-test-").unwrap();
        file.write_all(b"new\n").unwrap();
        let replaced = file.commit_keeping_old().unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "new\n");
        assert_eq!(names(dir.path()).len(), 2, "the old one is kept beside");
        replaced.rollback();
        assert_eq!(fs::read_to_string(&path).unwrap(), "old\n");
        assert_eq!(names(dir.path()), ["x.lock"]);
        // Finished: the new content, nothing beside it.
        let mut file = AtomicFile::create(&path, ".compose-test-").unwrap();
        file.write_all(b"new\n").unwrap();
        file.commit_keeping_old().unwrap().finish();
        assert_eq!(fs::read_to_string(&path).unwrap(), "new\n");
        assert_eq!(names(dir.path()), ["x.lock"]);
        // A new file taken back: nothing there.
        let fresh = dir.path().join("y.json");
        let file = AtomicFile::create(&fresh, ".compose-test-").unwrap();
        file.commit_keeping_old().unwrap().rollback();
        assert_eq!(names(dir.path()), ["x.lock"]);
    }
}
