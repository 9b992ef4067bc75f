//! `deb::read_deb` over arbitrary bytes (ar framing, member order, decompression,
//! control and data tar archives).
//!
//! Invariants, whatever the bytes: no panic; every entry handed to the callback has a
//! canonical absolute path (no `..`, `.` or empty component, no NUL), a hard-link
//! target of the same form, permission bits only (`mode & !0o7777 == 0`), size 0
//! unless it is a file; a file's reader yields exactly `size` bytes or an error
//! (never a silently short file). Entries are read in full or left unread
//! alternately, so both the reading and the skipping paths run.
#![no_main]

use std::io::{self, Cursor};

use compose::deb::{read_deb, DebError, EntryKind};
use libfuzzer_sys::fuzz_target;

#[derive(Debug)]
#[allow(dead_code)]
enum Failure {
    Deb(DebError),
    Io(io::Error),
}

impl From<DebError> for Failure {
    fn from(e: DebError) -> Failure {
        Failure::Deb(e)
    }
}

fn assert_canonical(p: &str) {
    assert!(p.starts_with('/'), "path {p:?} is not absolute");
    assert!(!p.contains('\0'), "path {p:?} holds a NUL");
    if p != "/" {
        for c in p[1..].split('/') {
            assert!(!c.is_empty() && c != "." && c != "..", "path {p:?}");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut n = 0usize;
    let result = read_deb(
        Cursor::new(data),
        "fuzz",
        |entry, reader| -> Result<(), Failure> {
            n += 1;
            assert_canonical(&entry.path);
            assert_eq!(entry.mode & !0o7777, 0, "mode {:o}", entry.mode);
            match &entry.kind {
                EntryKind::File => {}
                EntryKind::Hardlink(target) => {
                    assert_canonical(target);
                    assert_eq!(entry.size, 0);
                }
                EntryKind::Symlink(target) => {
                    assert!(
                        !target.is_empty() && !target.contains('\0'),
                        "target {target:?}"
                    );
                    assert_eq!(entry.size, 0);
                }
                _ => assert_eq!(entry.size, 0),
            }
            if n % 2 == 1 {
                let got = io::copy(reader, &mut io::sink()).map_err(Failure::Io)?;
                assert_eq!(
                    got, entry.size,
                    "{}: read {got} of {} bytes",
                    entry.path, entry.size
                );
            }
            Ok(())
        },
    );
    if let Ok(control) = result {
        // No entry is silently dropped into a success that holds no control file.
        let _ = control.control.len();
    }
});
