//! Temporaries that say whose they are, and the sweep that removes those of dead runs.
//!
//! A run killed outright (SIGKILL, the OOM killer, a power cut) cannot clean up: its
//! partial download stays in the cache's `tmp/`, its half-written layout beside
//! `--output`. So every temporary compose makes beside an output or in the cache is
//! named `<prefix><pid>-<random>` ([`prefix`]) and, while its owner works on it, holds
//! an exclusive `flock` ([`lock_file`], [`lock_dir`]), which the kernel drops when the
//! owner dies, however it dies.
//!
//! [`sweep`] removes an entry only when both say its owner is gone: no process has the
//! recorded PID, and its lock can be taken. The PID alone could be another namespace's
//! (a container sharing the cache) and the lock alone is not yet held in the instant
//! between creating a temporary and locking it; together they never remove a live
//! run's temporary. A PID reused by an unrelated process only delays the removal to a
//! later run. Names without a PID (another tool's, or an older compose's) are never
//! touched.
//!
//! This module knows nothing of what the temporaries hold: callers say where to sweep
//! and which prefixes are theirs ([`crate::fetch`] for the cache, [`crate::output`]
//! beside the outputs).

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::FlockOperation;

/// `<prefix><pid>-`: the start of a temporary's name (the random part follows).
pub fn prefix(prefix: &str) -> String {
    format!("{prefix}{}-", std::process::id())
}

/// Take the owner's lock on a temporary file through its own descriptor (released when
/// the file is closed). A file system without `flock` leaves it unlocked: the PID then
/// guards it alone.
pub fn lock_file(file: &File) {
    let _ = rustix::fs::flock(file, FlockOperation::NonBlockingLockExclusive);
}

/// Take the owner's lock on a temporary directory: the returned descriptor holds it
/// until it is dropped. `None` where directories cannot be locked (the PID guards it).
pub fn lock_dir(dir: &Path) -> Option<File> {
    let file = File::open(dir).ok()?;
    rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive).ok()?;
    Some(file)
}

/// The PID in `name` if it is `<prefix><pid>-<random>`.
fn owner(name: &str, prefix: &str) -> Option<i32> {
    let rest = name.strip_prefix(prefix)?;
    let (pid, random) = rest.split_once('-')?;
    if random.is_empty() || pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok().filter(|&p| p > 0)
}

/// Whether a process with this PID exists (in this PID namespace).
fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// Whether nobody holds the owner's lock on `path` (a file or a directory). Never
/// follows a symlink; one that cannot be opened counts as free (its PID decides).
fn unlocked(path: &Path) -> bool {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return false;
    };
    if meta.file_type().is_symlink() {
        return true;
    }
    match File::open(path) {
        Ok(f) => match rustix::fs::flock(&f, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => true,
            Err(e) => e != rustix::io::Errno::WOULDBLOCK,
        },
        Err(_) => true,
    }
}

/// What [`sweep`] does with a dead run's entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stale {
    /// A temporary: remove it.
    Remove,
    /// An old output moved aside while the new one was renamed in (a directory holding
    /// it under its own name): put it back if its place is empty, else remove it.
    Restore,
}

/// Remove (or put back, see [`Stale`]) the entries of `dir` named
/// `<prefix><pid>-<random>` for each `(prefix, what)` whose owner is gone. Returns the
/// paths dealt with. Errors are ignored: a temporary that cannot be removed now is
/// tried again by the next run.
pub fn sweep(dir: &Path, prefixes: &[(&str, Stale)]) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut done = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some((pid, what)) = prefixes
            .iter()
            .find_map(|(p, what)| owner(name, p).map(|pid| (pid, *what)))
        else {
            continue;
        };
        if pid as u32 == std::process::id() || alive(pid) {
            continue;
        }
        let path = entry.path();
        if !unlocked(&path) {
            continue;
        }
        if what == Stale::Restore {
            restore(&path, dir);
        }
        if remove(&path).is_ok() {
            done.push(path);
        }
    }
    done.sort();
    done
}

/// Put each entry of the aside directory `aside` back into `dir` where nothing has
/// its name.
fn restore(aside: &Path, dir: &Path) {
    let Ok(entries) = fs::read_dir(aside) else {
        return;
    };
    for entry in entries.flatten() {
        let back = dir.join(entry.file_name());
        if fs::symlink_metadata(&back).is_err() {
            let _ = fs::rename(entry.path(), &back);
        }
    }
}

/// Delete a file, a symlink or a whole directory tree, making directories writable
/// first (a staged root filesystem has read-only ones). Never follows a symlink.
pub fn remove(path: &Path) -> io::Result<()> {
    fn open_up(path: &Path) {
        let Ok(meta) = fs::symlink_metadata(path) else {
            return;
        };
        if meta.is_dir() {
            if meta.permissions().mode() & 0o700 != 0o700 {
                let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o700));
            }
            if let Ok(entries) = fs::read_dir(path) {
                for e in entries.flatten() {
                    open_up(&e.path());
                }
            }
        }
    }
    let meta = fs::symlink_metadata(path)?;
    if meta.is_dir() {
        open_up(path);
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// A PID that belonged to a process that has exited (and was reaped).
    fn dead_pid() -> u32 {
        let mut child = Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    }

    #[test]
    fn names_carry_the_pid() {
        let p = prefix(".out.tmp-");
        assert_eq!(p, format!(".out.tmp-{}-", std::process::id()));
        assert_eq!(owner(".out.tmp-42-abc", ".out.tmp-"), Some(42));
        assert_eq!(owner(".out.tmp-abc", ".out.tmp-"), None);
        assert_eq!(owner(".out.tmp-42-", ".out.tmp-"), None);
        assert_eq!(owner(".out.tmp-0-x", ".out.tmp-"), None);
        assert_eq!(owner(".other.tmp-42-x", ".out.tmp-"), None);
    }

    #[test]
    fn the_sweep_removes_what_dead_runs_left_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let dead = dead_pid();
        // A dead run's directory (with a read-only subdirectory) and file.
        let stale_dir = d.join(format!(".out.tmp-{dead}-aaaa"));
        fs::create_dir_all(stale_dir.join("ro/x")).unwrap();
        fs::set_permissions(stale_dir.join("ro"), fs::Permissions::from_mode(0o555)).unwrap();
        fs::write(d.join(format!(".compose-lock-{dead}-bbbb")), b"partial").unwrap();
        // Ours (a live PID), a dead PID still locked (another namespace's live run),
        // foreign names and another output's temporary.
        fs::create_dir(d.join(format!(".out.tmp-{}-cccc", std::process::id()))).unwrap();
        let held = d.join(format!(".out.tmp-{dead}-dddd"));
        fs::create_dir(&held).unwrap();
        let _lock = lock_dir(&held).expect("directories can be locked here");
        fs::write(d.join(".out.tmpXYZ"), b"").unwrap();
        fs::write(d.join(format!(".other.tmp-{dead}-eeee")), b"").unwrap();
        let swept = sweep(
            d,
            &[
                (".out.tmp-", Stale::Remove),
                (".compose-lock-", Stale::Remove),
            ],
        );
        assert_eq!(swept.len(), 2, "{swept:?}");
        // Sorted as `names` sorts: the order of the two PIDs' names depends on their digits.
        let mut kept = vec![
            format!(".other.tmp-{dead}-eeee"),
            format!(".out.tmp-{}-cccc", std::process::id()),
            format!(".out.tmp-{dead}-dddd"),
            ".out.tmpXYZ".to_string(),
        ];
        kept.sort();
        assert_eq!(names(d), kept);
    }

    #[test]
    fn a_dead_runs_old_output_is_put_back_when_its_place_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let dead = dead_pid();
        for (aside, name) in [("a", "missing"), ("b", "present")] {
            let a = d.join(format!(".old-layout-{dead}-{aside}"));
            fs::create_dir_all(a.join(name)).unwrap();
            fs::write(a.join(name).join("oci-layout"), b"old").unwrap();
        }
        fs::create_dir(d.join("present")).unwrap();
        sweep(d, &[(".old-layout-", Stale::Restore)]);
        assert_eq!(names(d), ["missing", "present"]);
        assert_eq!(fs::read(d.join("missing/oci-layout")).unwrap(), b"old");
        assert!(names(&d.join("present")).is_empty());
    }
}
