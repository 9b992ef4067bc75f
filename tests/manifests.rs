//! Every manifest shipped in manifests/ parses and validates (schema, globs, keyrings),
//! and the base manifests they include describe no image alone.

use compose::arch::Arch;
use std::collections::BTreeSet;
use std::path::Path;

use compose::manifest::Manifest;

#[test]
fn every_shipped_manifest_is_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    let bases: Vec<_> = files
        .iter()
        .filter(|p| p.to_string_lossy().ends_with("-base.toml"))
        .cloned()
        .collect();
    let mut names = Vec::new();
    let mut included = BTreeSet::new();
    for path in files.iter().filter(|p| !bases.contains(p)) {
        let m = Manifest::load(path).unwrap_or_else(|e| panic!("{e}"));
        assert!(!m.packages.is_empty(), "{}", path.display());
        names.push(m.image.name.clone());
        included.extend(m.includes.iter().map(|i| i.name.clone()));
    }
    // Each base is included, and is not an image by itself.
    assert_eq!(
        included.into_iter().collect::<Vec<_>>(),
        ["debian12-base.toml", "noble-base.toml"]
    );
    for base in &bases {
        let e = Manifest::load(base).unwrap_err();
        assert!(e.message.contains("names no image"), "{e}");
    }
    names.sort();
    assert_eq!(
        names,
        [
            "debian12-cc",
            "debian12-minimal",
            "noble-static",
            "noble-tiny-grpc"
        ],
        "a manifest was added or removed: update this list and the README"
    );
    let tiny = Manifest::load(&dir.join("noble-tiny-grpc.toml")).unwrap();
    assert_eq!(tiny.image.architectures, [Arch::AMD64, Arch::ARM64]);
    assert_eq!(
        tiny.sources[0].base_url(Arch::ARM64),
        "http://ports.ubuntu.com/ubuntu-ports"
    );
    assert_eq!(tiny.resolved_user().as_deref(), Some("1002:1001"));
    for p in [
        "libc6",
        "libgcc-s1",
        "libstdc++6",
        "zlib1g",
        "ca-certificates",
        "tzdata",
        "netbase",
        "base-files",
    ] {
        assert!(
            tiny.packages.iter().any(|x| x.name == p),
            "noble-tiny-grpc lacks {p}"
        );
    }
    let stat = Manifest::load(&dir.join("noble-static.toml")).unwrap();
    assert!(
        !stat.packages.iter().any(|p| p.name == "libc6"),
        "noble-static has no libc"
    );
}
