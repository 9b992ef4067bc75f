//! The linkage check in the pipeline and `compose check`, over the hermetic fixture: a
//! signed apt repository of packages holding (synthetic) ELF files.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use compose::build::{build, BuildOptions};
use support::{DebSpec, ElfSpec, Member};

const ARCH: &str = "arm64";
const T: &str = "aarch64-linux-gnu";

fn packages() -> Vec<DebSpec> {
    packages_for(ARCH)
}

/// libc6 (loader and libc), libgcc-s1 and hello (which needs both) for `arch`.
fn packages_for(arch: &str) -> Vec<DebSpec> {
    let (t, loader, link) = match arch {
        "arm64" => (T, "ld-linux-aarch64.so.1", "/lib/ld-linux-aarch64.so.1"),
        _ => (
            "x86_64-linux-gnu",
            "ld-linux-x86-64.so.2",
            "/lib64/ld-linux-x86-64.so.2",
        ),
    };
    let link_target = if arch == "arm64" {
        format!("{t}/{loader}")
    } else {
        format!("/lib/{t}/{loader}")
    };
    vec![
        // Debian's unmerged layout: the loader and libc under /lib.
        DebSpec::new("libc6", "2.36-9", arch, Member::Xz)
            .file(
                &format!("/lib/{t}/{loader}"),
                ElfSpec::library(arch, loader, &[]).build(),
                0o755,
            )
            .symlink(link, &link_target)
            .file(
                &format!("/lib/{t}/libc.so.6"),
                ElfSpec::library(arch, "libc.so.6", &[loader]).build(),
                0o755,
            )
            .copyright(),
        DebSpec::new("libgcc-s1", "12.2.0-14", arch, Member::Xz)
            .file(
                &format!("/lib/{t}/libgcc_s.so.1"),
                ElfSpec::library(arch, "libgcc_s.so.1", &["libc.so.6"]).build(),
                0o644,
            )
            .depends("gcc-12-base (= 12.2.0-14), libc6 (>= 2.35)")
            .copyright(),
        DebSpec::new("hello", "1.0-1", arch, Member::Gz)
            .file(
                "/usr/bin/hello",
                ElfSpec::executable(arch, &["libgcc_s.so.1", "libc.so.6"]).build(),
                0o755,
            )
            .copyright(),
    ]
}

const WITH_LIBGCC: &str = r#"
[package.libc6]
paths = ["/usr/lib/*-linux-gnu/libc.so.6", "/usr/lib/*-linux-gnu/ld-linux-*.so.*", "/usr/lib/ld-linux-*.so.*"]

[package.libgcc-s1]
paths = ["/usr/lib/*-linux-gnu/libgcc_s.so.1"]

[package.hello]
paths = ["/usr/bin/hello"]
"#;

struct Fixture {
    ws: support::Workspace,
    dir: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let ws = support::Workspace::with_packages("bookworm", &[ARCH], |_| packages());
        let dir = ws.dir.clone();
        Fixture { ws, dir }
    }

    fn manifest(&self, body: &str) -> PathBuf {
        self.ws.manifest("linked", ARCH, &["bookworm"], body)
    }

    fn build(&self, body: &str) -> Result<compose::build::BuildResult, compose::Error> {
        build(&BuildOptions {
            manifest: self.manifest(body),
            output: Some(self.dir.join("out")),
            cache: Some(self.dir.join("cache")),
            quiet: true,
            ..BuildOptions::default()
        })
    }
}

#[test]
fn a_complete_image_builds_and_counts_its_elf_files() {
    let f = Fixture::new();
    let result = f.build(WITH_LIBGCC).unwrap();
    assert_eq!(result.images[0].elf_files, 4);
    let summary = compose::summary::summary(&result);
    assert!(summary.contains("(4 ELF files linked)"), "{summary}");
}

#[test]
fn an_unselected_library_fails_the_build_naming_soname_and_pattern() {
    let f = Fixture::new();
    // libgcc-s1 declared, but its library not selected.
    let body = WITH_LIBGCC.replace(
        "[package.libgcc-s1]\npaths = [\"/usr/lib/*-linux-gnu/libgcc_s.so.1\"]",
        "[package.libgcc-s1]\npaths = []",
    );
    assert_ne!(body, WITH_LIBGCC);
    let e = f.build(&body).unwrap_err();
    assert_eq!(e.exit_code(), 1);
    assert!(matches!(e, compose::Error::Linkage(_)), "{e:?}");
    assert_eq!(
        e.to_string(),
        "1 ELF file would not load (arm64: 1): 1 name is missing from the image; do what each line below says, then build again\n  libgcc_s.so.1 (arm64), needed by /usr/bin/hello: add `/usr/lib/*-linux-gnu/libgcc_s.so.1` to package libgcc-s1"
    );
    assert!(
        !f.dir.join("out").exists(),
        "nothing may be left at --output"
    );
    // Nor any temporary layout beside it.
    let left: Vec<_> = std::fs::read_dir(&f.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "cache" && n != "archive.gpg" && n != "compose.toml")
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn an_undeclared_library_package_fails_the_build() {
    let f = Fixture::new();
    let body = WITH_LIBGCC.replace(
        "[package.libgcc-s1]\npaths = [\"/usr/lib/*-linux-gnu/libgcc_s.so.1\"]\n",
        "",
    );
    let e = f.build(&body).unwrap_err().to_string();
    assert!(
        // The fixture's index has libgcc-s1: its .deb's file list confirms it ships the
        // name, and the error gives the block to add (crate::suggest).
        e.ends_with("\n  libgcc_s.so.1 (arm64), needed by /usr/bin/hello: no declared package ships it; package libgcc-s1 does: add its block below\n  add to the manifest (`--fix` writes these blocks into it):\n    [package.libgcc-s1]  # ships libgcc_s.so.1\n    paths = [\"/usr/lib/*-linux-gnu/libgcc_s.so.1\"]"),
        "{e}"
    );
    assert!(!f.dir.join("out").exists());
}

#[test]
fn a_missing_interpreter_names_the_loader_link_and_its_target() {
    let f = Fixture::new();
    let body = WITH_LIBGCC.replace(
        ", \"/usr/lib/*-linux-gnu/ld-linux-*.so.*\", \"/usr/lib/ld-linux-*.so.*\"",
        "",
    );
    let e = f.build(&body).unwrap_err().to_string();
    assert!(
        e.starts_with(
            "2 ELF files would not load (arm64: 2): 2 names are missing from the image; "
        ),
        "{e}"
    );
    assert!(
        e.contains("\n  the interpreter /lib/ld-linux-aarch64.so.1 (arm64), needed by /usr/bin/hello: add `/usr/lib/ld-linux-aarch64.so.1` and its target `/usr/lib/*-linux-gnu/ld-linux-aarch64.so.1` to package libc6"),
        "{e}"
    );
    assert!(
        e.contains(
            "\n  ld-linux-aarch64.so.1 (arm64), needed by /usr/lib/aarch64-linux-gnu/libc.so.6: "
        ),
        "{e}"
    );
}

#[test]
fn every_architectures_misses_are_one_error_and_each_warning_is_printed_once() {
    let ws = support::Workspace::with_packages("bookworm", &["amd64", "arm64"], packages_for);
    // libgcc-s1 declared without its library: hello misses it on both architectures.
    let body = r#"
[package.libc6]
paths = ["/usr/lib/*-linux-gnu/libc.so.6", "/usr/lib/*-linux-gnu/ld-linux-*.so.*", "/usr/lib*/ld-linux-*.so.*"]

[package.libgcc-s1]
paths = []

[package.hello]
paths = ["/usr/bin/hello"]
"#;
    let manifest = ws.manifest_from(
        "linked",
        &["amd64", "arm64"],
        &ws.server.url,
        &["bookworm"],
        body,
    );
    let run = Command::new(env!("CARGO_BIN_EXE_compose"))
        .arg(&manifest)
        .arg("--output")
        .arg(ws.dir.join("out"))
        .arg("--cache")
        .arg(ws.dir.join("cache"))
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1));
    let stderr = String::from_utf8(run.stderr).unwrap();
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    // gcc-12-base is not declared: one warning for both architectures.
    assert_eq!(
        lines
            .iter()
            .copied()
            .filter(|l| l.starts_with("warning:"))
            .collect::<Vec<_>>(),
        ["warning: libgcc-s1 depends on gcc-12-base (= 12.2.0-14), which the manifest does not declare (amd64, arm64)"],
        "{stderr}"
    );
    let error: Vec<&str> = lines
        .iter()
        .copied()
        .skip_while(|l| !l.starts_with("error:"))
        .collect();
    assert_eq!(
        error,
        [
            "error: 2 ELF files would not load (amd64: 1, arm64: 1): 1 name is missing from the image; do what each line below says, then build again",
            "  libgcc_s.so.1 (amd64, arm64), needed by /usr/bin/hello: add `/usr/lib/*-linux-gnu/libgcc_s.so.1` to package libgcc-s1",
        ],
        "{stderr}"
    );
    assert!(!ws.dir.join("out").exists());
    assert!(!ws.dir.join("compose.toml.lock").exists());
}

fn compose_check(layout: &Path, binaries: &[&Path]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_compose"));
    cmd.arg("check").arg(layout);
    for b in binaries {
        cmd.arg("--binary").arg(b);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn compose_check_tells_whether_a_binary_runs_on_the_image() {
    let f = Fixture::new();
    f.build(WITH_LIBGCC).unwrap();
    let out = f.dir.join("out");

    let (code, stdout, stderr) = compose_check(&out, &[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(
        stdout.lines().last(),
        Some("ok: 4 ELF files in the image resolve")
    );

    let good = f.dir.join("app");
    std::fs::write(&good, ElfSpec::executable(ARCH, &["libc.so.6"]).build()).unwrap();
    let tagged = format!("{}:linked", out.display());
    let (code, stdout, stderr) = compose_check(Path::new(&tagged), &[&good]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[0],
        format!(
            "{}: ok (aarch64): /lib/ld-linux-aarch64.so.1 → /usr/lib/{T}/ld-linux-aarch64.so.1, libc.so.6 → /usr/lib/{T}/libc.so.6",
            good.display()
        )
    );
    assert_eq!(
        lines.last(),
        Some(&"ok: 1 binary and 4 ELF files in the image resolve")
    );

    let bad = f.dir.join("needs-zlib");
    std::fs::write(
        &bad,
        ElfSpec::executable(ARCH, &["libz.so.1", "libc.so.6"]).build(),
    )
    .unwrap();
    let (code, stdout, _) = compose_check(&out, &[&good, &bad]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains(&format!(
            "{} needs libz.so.1, which is not in the image\n",
            bad.display()
        )),
        "{stdout}"
    );
    assert_eq!(
        stdout.lines().last(),
        Some("FAILED: 1 unresolved in 1 file")
    );

    // Usage errors: 2.
    let (code, _, stderr) = compose_check(&f.dir.join("nowhere"), &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("not an OCI image layout"), "{stderr}");
    let (code, _, stderr) = compose_check(Path::new(&format!("{}:nope", out.display())), &[]);
    assert_eq!(code, 2, "{stderr}");
    let (code, _, _) = compose_check(&out, &[&f.dir.join("no-such-binary")]);
    assert_eq!(code, 2);
}
