//! `deb::normalise_path` over arbitrary bytes (the path of a data.tar entry) and
//! `rootfs::merged_usr::merged_usr_path` over what it returns and over the raw text.
//!
//! A path that is accepted is absolute, has no `..`, `.` or empty component (so it
//! cannot leave `/`), no NUL, no trailing `/` (except `/` itself), keeps exactly the
//! named components of the input in order, and normalises to itself. A path that is
//! refused has a NUL, is not UTF-8, or has a `..` component.
#![no_main]

use compose::deb::normalise_path;
use compose::rootfs::merged_usr::merged_usr_path;
use libfuzzer_sys::fuzz_target;

fn assert_canonical(p: &str, input: &[u8]) {
    assert!(p.starts_with('/'), "{p:?} (from {input:?}) is not absolute");
    assert!(!p.contains('\0'), "{p:?} holds a NUL");
    if p != "/" {
        assert!(!p.ends_with('/'), "{p:?} ends with /");
        for c in p[1..].split('/') {
            assert!(
                !c.is_empty() && c != "." && c != "..",
                "{p:?} (from {input:?}) has the component {c:?}"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    match normalise_path(data, "fuzz") {
        Ok(p) => {
            assert_canonical(&p, data);
            let text = std::str::from_utf8(data).expect("accepted input is UTF-8");
            let named: Vec<&str> = text
                .split('/')
                .filter(|c| !c.is_empty() && *c != ".")
                .collect();
            let got: Vec<&str> = p.split('/').filter(|c| !c.is_empty()).collect();
            assert_eq!(named, got, "components of {text:?}");
            assert_eq!(
                normalise_path(p.as_bytes(), "fuzz").unwrap(),
                p,
                "idempotence"
            );
            let usr = merged_usr_path(&p).expect("a normalised path has a merged-usr form");
            assert_canonical(&usr, data);
            assert!(usr == p || usr == format!("/usr{p}"), "{p:?} -> {usr:?}");
        }
        Err(_) => {
            let refused = data.contains(&0)
                || match std::str::from_utf8(data) {
                    Err(_) => true,
                    Ok(t) => t.split('/').any(|c| c == ".."),
                };
            assert!(refused, "{data:?} refused without a reason");
        }
    }
    // merged_usr_path on raw text: refused, or a canonical absolute path.
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some(usr) = merged_usr_path(text) {
            assert_canonical(&usr, data);
        }
    }
});
