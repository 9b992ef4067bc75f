//! `Manifest::parse` over arbitrary UTF-8 text, with a fixed manifest path.
//!
//! An error points into the text (line ≥ 1 and at most one past the last line,
//! column ≥ 1), names the given file and says something. A manifest that parses keeps
//! its text verbatim, has at least one source, packages sorted by name and unique,
//! known architectures, and every image path it will write (files, dirs, symlinks,
//! workdir) absolute and canonical: no `..`, `.` or empty component.
#![no_main]

use std::path::Path;

use compose::manifest::{oci_platform, Manifest};
use libfuzzer_sys::fuzz_target;

fn assert_canonical(p: &str) {
    assert!(p.starts_with('/'), "image path {p:?} is not absolute");
    assert!(!p.contains('\0'), "image path {p:?} holds a NUL");
    if p != "/" {
        for c in p[1..].split('/') {
            assert!(!c.is_empty() && c != "." && c != "..", "image path {p:?}");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/fuzz/compose.toml");
    match Manifest::parse(path, text) {
        Err(e) => {
            assert_eq!(e.file, path);
            let lines = text.split('\n').count();
            assert!(
                e.line >= 1 && e.line <= lines + 1,
                "line {} of {lines}",
                e.line
            );
            assert!(e.column >= 1, "column {}", e.column);
            assert!(!e.message.is_empty());
            let _ = e.to_string();
        }
        Ok(m) => {
            assert_eq!(m.text, text);
            assert_eq!(m.path, path);
            assert!(!m.sources.is_empty(), "a manifest with no source parsed");
            for w in m.packages.windows(2) {
                assert!(
                    w[0].name < w[1].name,
                    "packages {} {}",
                    w[0].name,
                    w[1].name
                );
            }
            for a in &m.image.architectures {
                assert!(oci_platform(a).is_some(), "architecture {a:?}");
            }
            for f in &m.files {
                assert_canonical(&f.path);
                assert!(f.mode <= 0o7777);
            }
            for d in &m.dirs {
                assert_canonical(&d.path);
                assert!(d.mode <= 0o7777);
            }
            for s in &m.symlinks {
                assert_canonical(&s.path);
            }
            if let Some(w) = &m.image.workdir {
                assert_canonical(w);
            }
            for p in &m.packages {
                for pat in p.paths.iter().chain(&p.optional_paths).chain(&p.exclude) {
                    assert!(pat.text.starts_with('/'), "pattern {:?}", pat.text);
                    assert!(
                        !pat.text.split('/').any(|c| c == ".."),
                        "pattern {:?}",
                        pat.text
                    );
                }
            }
        }
    }
});
