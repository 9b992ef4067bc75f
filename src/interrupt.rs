//! Ctrl-C (SIGINT) and SIGTERM: remove what the build has half written, then exit.
//!
//! The default action of SIGINT kills the process without unwinding, so the temporary
//! directories beside `--output` and the partial downloads in the cache would stay.
//! [`install`] (called by the binary before any other thread starts) blocks both
//! signals in every thread and waits for them in one thread of its own: there it
//! removes every path registered with [`remove_on_interrupt`] and exits with 128 + the
//! signal number (130 for SIGINT). Ordinary Rust code runs there, not a signal handler,
//! so nothing is restricted to async-signal-safe calls.
//!
//! Renames that put outputs in place run under [`critical`]: a signal arriving then
//! waits until they are done, so `--output` is the old or the new one, never neither.
//! Without [`install`] (the library in tests) registering is harmless bookkeeping.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    next: 0,
    paths: BTreeMap::new(),
});
static CRITICAL: Mutex<()> = Mutex::new(());

struct Registry {
    next: u64,
    paths: BTreeMap<u64, PathBuf>,
}

fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|p| p.into_inner())
}

/// Removes its path from the list when dropped (the path itself is left alone).
#[must_use = "the path is only removed on interrupt while this guard lives"]
#[derive(Debug)]
pub struct Cleanup(u64);

impl Drop for Cleanup {
    fn drop(&mut self) {
        registry().paths.remove(&self.0);
    }
}

/// Delete `path` (a file or a whole directory) if the process is interrupted while the
/// returned guard lives.
pub fn remove_on_interrupt(path: &Path) -> Cleanup {
    let mut r = registry();
    let id = r.next;
    r.next += 1;
    r.paths.insert(id, path.to_path_buf());
    Cleanup(id)
}

/// Hold off an interrupt while the guard lives (an output being renamed into place).
pub fn critical() -> MutexGuard<'static, ()> {
    CRITICAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Route SIGINT and SIGTERM to a cleanup thread. Call it first thing in `main`, before
/// any thread is started, so that every thread inherits the blocked mask.
pub fn install() -> std::io::Result<()> {
    // SAFETY: plain libc calls on a local, initialised sigset_t.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc));
        }
        set
    };
    std::thread::Builder::new()
        .name("interrupt".into())
        .spawn(move || {
            let mut sig: libc::c_int = 0;
            // SAFETY: `set` is initialised and lives in this closure.
            while unsafe { libc::sigwait(&set, &mut sig) } != 0 {}
            let _held = critical();
            let paths: Vec<PathBuf> = registry().paths.values().cloned().collect();
            for path in &paths {
                remove(path);
            }
            let name = if sig == libc::SIGINT {
                "interrupted (SIGINT)"
            } else {
                "terminated (SIGTERM)"
            };
            eprintln!("error: {name}; partial output and partial downloads were removed");
            std::process::exit(128 + sig);
        })?;
    Ok(())
}

/// Delete a file or directory; other threads may still be writing into it, so retry.
fn remove(path: &Path) {
    for _ in 0..10 {
        let result = match std::fs::symlink_metadata(path) {
            Err(_) => return,
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
            Ok(_) => std::fs::remove_file(path),
        };
        if result.is_ok() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
