//! Linkage check over trees of ELF files: synthetic ones (tests/support/elf.rs) and the
//! host's real binaries and libraries.

mod support;

use compose::deb::{Entry, EntryKind};
use compose::rootfs::linkage::{check, Need, Shipped};
use compose::rootfs::tree::{Node, NodeKind, Tree};
use support::ElfSpec;

const X86: &str = "x86_64-linux-gnu";
const ARM: &str = "aarch64-linux-gnu";

fn node(kind: NodeKind, mode: u32) -> Node {
    Node {
        kind,
        mode,
        uid: 0,
        gid: 0,
        mtime: 0,
        origin: "test".into(),
    }
}

fn file(tree: &mut Tree, path: &str, bytes: &[u8]) {
    let c = tree.spool.append_bytes(bytes).unwrap();
    tree.insert(path, node(NodeKind::File(c), 0o755)).unwrap();
}

fn elf(tree: &mut Tree, path: &str, spec: ElfSpec) {
    file(tree, path, &spec.build());
}

fn symlink(tree: &mut Tree, path: &str, target: &str) {
    tree.insert(path, node(NodeKind::Symlink(target.into()), 0o777))
        .unwrap();
}

/// A merged-usr amd64 base: /lib → usr/lib, /lib64 → usr/lib64, the loader at
/// /usr/lib/<triplet> with the absolute /usr/lib64 link Debian ships, libc.
fn amd64_base() -> Tree {
    let mut t = Tree::new().unwrap();
    t.insert("/usr/lib", node(NodeKind::Dir, 0o755)).unwrap();
    t.insert("/usr/lib64", node(NodeKind::Dir, 0o755)).unwrap();
    symlink(&mut t, "/lib", "usr/lib");
    symlink(&mut t, "/lib64", "usr/lib64");
    symlink(&mut t, "/bin", "usr/bin");
    elf(
        &mut t,
        &format!("/usr/lib/{X86}/ld-linux-x86-64.so.2"),
        ElfSpec::library("amd64", "ld-linux-x86-64.so.2", &[]),
    );
    symlink(
        &mut t,
        "/usr/lib64/ld-linux-x86-64.so.2",
        &format!("/lib/{X86}/ld-linux-x86-64.so.2"),
    );
    elf(
        &mut t,
        &format!("/usr/lib/{X86}/libc.so.6"),
        ElfSpec::library("amd64", "libc.so.6", &["ld-linux-x86-64.so.2"]),
    );
    t
}

#[test]
fn resolves_via_multiarch_dir_and_the_loader_symlinks() {
    let mut t = amd64_base();
    elf(
        &mut t,
        &format!("/usr/lib/{X86}/libz.so.1.3"),
        ElfSpec::library("amd64", "libz.so.1", &["libc.so.6"]),
    );
    symlink(&mut t, &format!("/usr/lib/{X86}/libz.so.1"), "libz.so.1.3");
    // The interpreter /lib64/ld-linux-x86-64.so.2: /lib64 → usr/lib64, then the
    // absolute link → /lib/x86_64-linux-gnu/… which resolves through /lib → usr/lib.
    elf(
        &mut t,
        "/usr/bin/app",
        ElfSpec::executable("amd64", &["libz.so.1", "libc.so.6", "linux-vdso.so.1"]),
    );
    let report = check(&t, &[], None).unwrap();
    assert_eq!(report.elf_files, 4);
    assert_eq!(report.dynamic, 3, "the loader itself is static");
    assert!(report.misses.is_empty());
    // app: interpreter + 2 libraries; libz: libc; libc: the loader.
    assert_eq!(report.resolved, 3 + 1 + 1);
}

#[test]
fn resolves_via_runpath_with_origin() {
    let mut t = amd64_base();
    elf(
        &mut t,
        "/opt/app/lib/libapp.so.2",
        ElfSpec::library("amd64", "libapp.so.2", &["libc.so.6"]),
    );
    let mut exe = ElfSpec::executable("amd64", &["libapp.so.2"]);
    exe.runpath = Some("/nonexistent:$ORIGIN/../lib".into());
    elf(&mut t, "/opt/app/bin/app", exe.clone());
    check(&t, &[], None).unwrap();

    // Without the RUNPATH the library is not found; the hint says where it is.
    exe.runpath = None;
    elf(&mut t, "/opt/app/bin/other", exe);
    let e = check(&t, &[], None).unwrap_err();
    assert_eq!(e.report.misses.len(), 1, "{e}");
    let msg = e.to_string();
    assert!(
        msg.starts_with("/opt/app/bin/other needs libapp.so.2, which is not in the image"),
        "{msg}"
    );
    assert!(
        msg.contains("/opt/app/lib/libapp.so.2 is in the image but not where the loader looks"),
        "{msg}"
    );
}

#[test]
fn rpath_is_used_only_without_runpath() {
    let mut t = amd64_base();
    elf(
        &mut t,
        "/opt/r/libr.so.1",
        ElfSpec::library("amd64", "libr.so.1", &[]),
    );
    let mut exe = ElfSpec::executable("amd64", &["libr.so.1"]);
    exe.rpath = Some("/opt/r".into());
    elf(&mut t, "/usr/bin/r", exe.clone());
    check(&t, &[], None).unwrap();
    // With a DT_RUNPATH as well, the loader ignores DT_RPATH.
    exe.runpath = Some("/opt/elsewhere".into());
    elf(&mut t, "/usr/bin/r2", exe);
    let e = check(&t, &[], None).unwrap_err();
    assert_eq!(e.report.misses.len(), 1, "{e}");
    assert_eq!(e.report.misses[0].file, "/usr/bin/r2");
}

#[test]
fn a_missing_soname_names_file_soname_and_the_package_pattern() {
    let mut t = amd64_base();
    let stdcxx = format!("/usr/lib/{X86}/libstdc++.so.6.0.30");
    elf(
        &mut t,
        &stdcxx,
        ElfSpec::library("amd64", "libstdc++.so.6", &["libc.so.6", "libgcc_s.so.1"]),
    );
    // What the declared packages ship (Debian unmerged paths, canonicalised).
    let mut shipped = Shipped::new(true);
    let entry = |path: &str, kind: EntryKind| Entry {
        path: path.into(),
        kind,
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime: 0,
        size: 0,
    };
    shipped.record(
        "libgcc-s1",
        &entry(&format!("/lib/{X86}/libgcc_s.so.1"), EntryKind::File),
    );
    shipped.record(
        "libgcc-s1",
        &entry("/usr/share/doc/libgcc-s1", EntryKind::Dir),
    );
    let e = check(&t, &[], Some(&shipped)).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("{stdcxx} needs libgcc_s.so.1, which is not in the image; add `/usr/lib/*-linux-gnu/libgcc_s.so.1` to package libgcc-s1")
    );
    let m = &e.report.misses[0];
    assert_eq!(m.file, stdcxx);
    assert_eq!(m.need, Need::Library("libgcc_s.so.1".into()));

    // Not shipped by anything declared: say so.
    let e = check(&t, &[], Some(&Shipped::new(true))).unwrap_err();
    assert!(
        e.to_string().contains("no declared package ships it"),
        "{e}"
    );
}

#[test]
fn a_shipped_symlink_names_its_target_too() {
    let mut t = amd64_base();
    elf(
        &mut t,
        "/usr/bin/app",
        ElfSpec::executable("amd64", &["libz.so.1"]),
    );
    let mut shipped = Shipped::new(true);
    let e = |path: &str, kind: EntryKind| Entry {
        path: path.into(),
        kind,
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime: 0,
        size: 0,
    };
    shipped.record(
        "zlib1g",
        &e(
            &format!("/lib/{X86}/libz.so.1"),
            EntryKind::Symlink("libz.so.1.3".into()),
        ),
    );
    shipped.record(
        "zlib1g",
        &e(&format!("/lib/{X86}/libz.so.1.3"), EntryKind::File),
    );
    let msg = check(&t, &[], Some(&shipped)).unwrap_err().to_string();
    assert!(
        msg.ends_with("add `/usr/lib/*-linux-gnu/libz.so.1` and its target `/usr/lib/*-linux-gnu/libz.so.1.3` to package zlib1g"),
        "{msg}"
    );
}

#[test]
fn a_missing_interpreter_is_a_miss() {
    let mut t = Tree::new().unwrap();
    symlink(&mut t, "/lib", "usr/lib");
    elf(
        &mut t,
        &format!("/usr/lib/{X86}/libc.so.6"),
        ElfSpec::library("amd64", "libc.so.6", &[]),
    );
    elf(
        &mut t,
        "/usr/bin/app",
        ElfSpec::executable("amd64", &["libc.so.6"]),
    );
    let e = check(&t, &[], None).unwrap_err();
    assert_eq!(e.report.misses.len(), 1);
    assert_eq!(
        e.to_string(),
        "/usr/bin/app needs the interpreter /lib64/ld-linux-x86-64.so.2, which is not in the image"
    );
}

#[test]
fn a_library_of_another_machine_does_not_count() {
    let mut t = amd64_base();
    // An aarch64 libfoo in the amd64 multiarch directory: the loader skips it.
    elf(
        &mut t,
        &format!("/usr/lib/{X86}/libfoo.so.1"),
        ElfSpec::library("arm64", "libfoo.so.1", &[]),
    );
    elf(
        &mut t,
        "/usr/bin/app",
        ElfSpec::executable("amd64", &["libfoo.so.1"]),
    );
    let e = check(&t, &[], None).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("/usr/bin/app needs libfoo.so.1, which is not in the image"),
        "{msg}"
    );
    assert!(msg.contains("is for aarch64, not x86_64"), "{msg}");

    // A later search directory with the right one satisfies it.
    elf(
        &mut t,
        "/usr/lib/libfoo.so.1",
        ElfSpec::library("amd64", "libfoo.so.1", &[]),
    );
    check(&t, &[], None).unwrap();
}

#[test]
fn arm64_uses_its_own_triplet_and_loader() {
    let mut t = Tree::new().unwrap();
    symlink(&mut t, "/lib", "usr/lib");
    elf(
        &mut t,
        &format!("/usr/lib/{ARM}/ld-linux-aarch64.so.1"),
        ElfSpec::library("arm64", "ld-linux-aarch64.so.1", &[]),
    );
    symlink(
        &mut t,
        "/usr/lib/ld-linux-aarch64.so.1",
        &format!("{ARM}/ld-linux-aarch64.so.1"),
    );
    elf(
        &mut t,
        &format!("/usr/lib/{ARM}/libc.so.6"),
        ElfSpec::library("arm64", "libc.so.6", &[]),
    );
    elf(
        &mut t,
        "/usr/bin/app",
        ElfSpec::executable("arm64", &["libc.so.6"]),
    );
    check(&t, &[], None).unwrap();
    // The same executable for amd64 as an extra binary does not run here.
    let extra = vec![(
        "./app-amd64".to_string(),
        ElfSpec::executable("amd64", &["libc.so.6"]).build(),
    )];
    let e = check(&t, &extra, None).unwrap_err();
    assert_eq!(e.report.misses.len(), 2, "{e}");
    assert!(
        e.to_string()
            .contains("./app-amd64 needs the interpreter /lib64/ld-linux-x86-64.so.2"),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("libc.so.6 is for aarch64, not x86_64"),
        "{e}"
    );
    assert_eq!(e.report.extras[0].misses, 2);
}

#[test]
fn a_symlink_loop_is_a_clean_miss() {
    let mut t = amd64_base();
    symlink(
        &mut t,
        &format!("/usr/lib/{X86}/libloop.so.1"),
        "libloop.so.2",
    );
    symlink(
        &mut t,
        &format!("/usr/lib/{X86}/libloop.so.2"),
        "./libloop.so.1",
    );
    // A directory loop as well: /usr/lib/x → /usr/lib/x/../x
    symlink(&mut t, "/usr/lib/cycle", "/usr/lib/cycle/sub");
    let mut exe = ElfSpec::executable("amd64", &["libloop.so.1"]);
    exe.runpath = Some("/usr/lib/cycle".into());
    elf(&mut t, "/usr/bin/app", exe);
    let e = check(&t, &[], None).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("/usr/bin/app needs libloop.so.1"), "{msg}");
    assert!(msg.contains("is a loop of symbolic links"), "{msg}");
}

#[test]
fn hard_links_count_as_files_and_non_elf_and_static_files_are_ignored() {
    let mut t = amd64_base();
    elf(
        &mut t,
        &format!("/usr/lib/{X86}/libbar.so.1.0"),
        ElfSpec::library("amd64", "libbar.so.1", &[]),
    );
    t.insert(
        &format!("/usr/lib/{X86}/libbar.so.1"),
        node(
            NodeKind::Hardlink(format!("/usr/lib/{X86}/libbar.so.1.0")),
            0o644,
        ),
    )
    .unwrap();
    elf(
        &mut t,
        "/usr/bin/app",
        ElfSpec::executable("amd64", &["libbar.so.1"]),
    );
    file(&mut t, "/etc/motd", b"\x7fELF but not really, just text");
    file(&mut t, "/usr/bin/script", b"#!/bin/sh\necho hi\n");
    // Static: no interpreter, no needs.
    elf(
        &mut t,
        "/usr/bin/static",
        ElfSpec {
            arch: "amd64".into(),
            ..Default::default()
        },
    );
    let r = check(&t, &[], None).unwrap();
    // loader, libc, libbar (+ its hard link), app, static
    assert_eq!(r.elf_files, 6);
    assert_eq!(r.unreadable.len(), 0, "{:?}", r.unreadable);
}

#[test]
fn an_extra_non_elf_or_static_binary_is_reported_not_failed() {
    let t = amd64_base();
    let extras = vec![
        ("notes.txt".to_string(), b"hello".to_vec()),
        (
            "static".to_string(),
            ElfSpec {
                arch: "amd64".into(),
                ..Default::default()
            }
            .build(),
        ),
    ];
    let r = check(&t, &extras, None).unwrap();
    assert!(!r.extras[0].is_elf);
    assert!(r.extras[1].is_elf && r.extras[1].is_static);
}

// ---- the host's real ELF files -------------------------------------------------------

/// The host's real file at `path` (through symlinks), into the tree at the same path.
fn host_file(t: &mut Tree, path: &str) -> bool {
    match std::fs::read(path) {
        Ok(bytes) => {
            file(t, path, &bytes);
            true
        }
        Err(_) => false,
    }
}

#[test]
fn the_hosts_real_binaries_resolve_and_fail_without_libgcc_s() {
    if std::env::consts::ARCH != "x86_64" {
        eprintln!("SKIPPED: the host-file test uses x86_64 paths");
        return;
    }
    let lib = format!("/usr/lib/{X86}");
    let names = [
        "ld-linux-x86-64.so.2",
        "libc.so.6",
        "libm.so.6",
        "libstdc++.so.6",
        "libgcc_s.so.1",
        "libselinux.so.1",
        "libpcre2-8.so.0",
    ];
    let mut t = Tree::new().unwrap();
    t.insert("/usr/lib64", node(NodeKind::Dir, 0o755)).unwrap();
    symlink(&mut t, "/lib", "usr/lib");
    symlink(&mut t, "/lib64", "usr/lib64");
    symlink(
        &mut t,
        "/usr/lib64/ld-linux-x86-64.so.2",
        &format!("/lib/{X86}/ld-linux-x86-64.so.2"),
    );
    for n in names {
        if !host_file(&mut t, &format!("{lib}/{n}")) {
            eprintln!("SKIPPED: the host has no {lib}/{n}");
            return;
        }
    }
    assert!(host_file(&mut t, "/usr/bin/ls"));
    let r = check(&t, &[], None).unwrap();
    assert_eq!(r.elf_files, names.len() + 1);
    assert!(r.resolved >= 10, "{r:?}");

    // libstdc++ needs libgcc_s: take it away.
    t.remove(&format!("{lib}/libgcc_s.so.1"));
    let mut shipped = Shipped::new(true);
    shipped.record(
        "libgcc-s1",
        &Entry {
            path: format!("/lib/{X86}/libgcc_s.so.1"),
            kind: EntryKind::File,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 0,
            size: 0,
        },
    );
    let e = check(&t, &[], Some(&shipped)).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("{lib}/libstdc++.so.6 needs libgcc_s.so.1, which is not in the image; add `/usr/lib/*-linux-gnu/libgcc_s.so.1` to package libgcc-s1")
    );
}
