//! From a missing library to the package blocks to add (docs/suggest.md), on real
//! packages through the `compose` binary:
//!
//! - noble (the real `.deb`s of `../shared/data/ubuntu`, served as the loopback
//!   repository of `tests/support/noble.rs`): a manifest without libgcc-s1 and libstdc++6
//!   plus the e2e's C++ program (`tests/e2e-assets/check.cc`, compiled here) fails with
//!   one error naming both packages with their blocks; `--fix` writes them into the
//!   manifest (comments kept), the fixed manifest builds, and (as root, with runc and
//!   umoci) the program runs in the image; a binary needing `libssl.so.3` gets
//!   `libssl3t64` from `compose suggest`; a name no package ships is said so.
//! - Debian 12: `scripts/e2e-debian.sh` (step 5) has `compose suggest` name `libssl3` on
//!   its loopback mirror of the real bookworm archive (tests never reach outside hosts).
//!
//! Parts that need g++, root, runc or umoci print `SKIPPED` without them; the noble parts
//! are skipped without `../shared/data`.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::noble;

const UPSTREAM: &str = "http://archive.ubuntu.com/ubuntu";

/// The loopback noble repository, served, and a work directory.
type Noble = noble::Served;

fn noble() -> Option<Noble> {
    noble::served()
}

fn compose() -> Command {
    Command::new(env!("CARGO_BIN_EXE_compose"))
}

impl Noble {
    /// The switches that point the manifest's source at the loopback repository.
    fn source_args(&self) -> Vec<String> {
        vec![
            "--arch".into(),
            "amd64".into(),
            "--mirror".into(),
            format!("http://archive.ubuntu.com={}", self.server.url),
            "--keyring".into(),
            format!("{UPSTREAM}={}", self.keyring.display()),
            "--cache".into(),
            self.dir.join("cache").display().to_string(),
        ]
    }

    /// `compose MANIFEST` with `extra` switches, output at `out`.
    fn build(&self, manifest: &Path, extra: &[&str]) -> Output {
        compose()
            .arg(manifest)
            .args(self.source_args())
            .arg("--output")
            .arg(self.dir.join("out"))
            .args(extra)
            .output()
            .unwrap()
    }

    /// `compose suggest MANIFEST --binary FILE`.
    fn suggest(&self, manifest: &Path, binary: &Path) -> Output {
        compose()
            .arg("suggest")
            .arg(manifest)
            .arg("--binary")
            .arg(binary)
            .args(self.source_args())
            .output()
            .unwrap()
    }
}

/// A noble image for the C++ program of the e2e, without libgcc-s1 and libstdc++6: the
/// mistake the linkage check catches. `{keyring}` is the Ubuntu keyring of `keys/`
/// (the test key replaces it with `--keyring`).
const CC_MANIFEST: &str = r#"# A C++ service on noble. Its C++ runtime is not declared: the build must say which
# packages ship it.
[image]
name = "cc-app"
architectures = ["amd64"]
merged-usr = true
user = "cnb"
entrypoint = ["/usr/local/bin/check"]

[[source]]
url = "http://archive.ubuntu.com/ubuntu"
suites = ["noble", "noble-updates", "noble-security"]
components = ["main"]
keyring = "{keyring}"

[package.libc6]
paths = [
    "/usr/lib/*-linux-gnu/ld-linux-*.so.*",
    "/usr/lib*/ld-linux-*.so.*",
    "/usr/lib/*-linux-gnu/libc.so.6",
    "/usr/lib/*-linux-gnu/libm.so.6",
]

[package.zlib1g]
paths = ["/usr/lib/*-linux-gnu/libz.so.1*"]   # the program uses zlib

[package.netbase]
paths = ["/etc/services", "/etc/protocols"]

[package.ca-certificates]
paths = []

[generate]
ca-bundle = true
passwd = true

[[user]]
name = "cnb"
uid = 1002
gid = 1001
home = "/home/cnb"
shell = "/sbin/nologin"

[[group]]
name = "cnb"
gid = 1001

[[file]]
path = "/etc/nsswitch.conf"
text = "passwd: files\ngroup: files\nhosts: files dns\nservices: files\nprotocols: files\n"

[[file]]
path = "/usr/local/bin/check"
source = "check"
mode = "0755"
"#;

fn ubuntu_keyring() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("keys/ubuntu-archive-keyring.gpg")
}

fn tool(name: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

/// tests/e2e-assets/check.cc compiled with the default g++ link (dynamic libstdc++,
/// libgcc_s, libc, libz) at `to`, as scripts/e2e-debian.sh does; `None` (SKIPPED)
/// without g++ or zlib.h.
fn compile_check(to: &Path) -> Option<()> {
    if !tool("g++") || !Path::new("/usr/include/zlib.h").exists() {
        println!(
            "SKIPPED: g++ or zlib.h (zlib1g-dev) not installed; the C++ program cannot be compiled"
        );
        return None;
    }
    let cc = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e-assets/check.cc");
    let out = Command::new("g++")
        .args(["-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(to)
        .arg(&cc)
        .arg("-lz")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "g++: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(())
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const LIBGCC_BLOCK: &str = "[package.libgcc-s1]  # ships libgcc_s.so.1\n    paths = [\"/usr/lib/*-linux-gnu/libgcc_s.so.1\"]";
const LIBSTDCXX_BLOCK: &str = "[package.\"libstdc++6\"]  # ships libstdc++.so.6\n    paths = [\"/usr/lib/*-linux-gnu/libstdc++.so.6\", \"/usr/lib/*-linux-gnu/libstdc++.so.6.0.33\"]";

#[test]
fn a_cpp_program_without_its_runtime_names_both_packages_and_fix_makes_it_build_and_run() {
    let Some(n) = noble() else { return };
    if compile_check(&n.dir.join("check")).is_none() {
        return;
    }
    let manifest = n.dir.join("cc-app.toml");
    let written = CC_MANIFEST.replace("{keyring}", &ubuntu_keyring().display().to_string());
    std::fs::write(&manifest, &written).unwrap();

    // 1. The build fails with one error that names both packages and their blocks.
    let out = n.build(&manifest, &[]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.matches("error: ").count(), 1, "{stderr}");
    assert!(
        stderr.contains(
            "error: 1 ELF file would not load (amd64: 1): 2 names are missing from the image;"
        ),
        "{stderr}"
    );
    for line in [
        "\n  libstdc++.so.6 (amd64), needed by /usr/local/bin/check: no declared package ships it; package libstdc++6 does: add its block below",
        "\n  libgcc_s.so.1 (amd64), needed by /usr/local/bin/check: no declared package ships it; package libgcc-s1 does: add its block below",
        "\n  add to the manifest (`--fix` writes these blocks into it):\n    ",
    ] {
        assert!(stderr.contains(line), "no {line:?} in:\n{stderr}");
    }
    assert!(stderr.contains(LIBGCC_BLOCK), "{stderr}");
    assert!(stderr.contains(LIBSTDCXX_BLOCK), "{stderr}");
    assert!(
        !n.dir.join("out").exists(),
        "a failed build wrote its output"
    );
    assert_eq!(std::fs::read_to_string(&manifest).unwrap(), written);

    // 2. --fix writes the blocks into the manifest, says so, and the build then passes.
    let out = n.build(&manifest, &["--fix"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}: added [package.libgcc-s1], [package.\"libstdc++6\"]",
            manifest.display()
        )),
        "{stderr}"
    );
    let fixed = std::fs::read_to_string(&manifest).unwrap();
    // Everything written by hand is still there, comments and layout included.
    for line in written.lines() {
        assert!(fixed.contains(line), "lost {line:?}:\n{fixed}");
    }
    assert!(fixed.contains("[package.libgcc-s1]"), "{fixed}");
    assert!(fixed.contains("[package.\"libstdc++6\"]"), "{fixed}");
    // A plain build of the fixed manifest passes too (the lock is written).
    let out = n.build(&manifest, &[]);
    assert!(out.status.success(), "{}", text(&out).1);

    // compose check on the finished image: an image records no sources, so a binary's
    // misses are named by SONAME, and the note points to compose suggest.
    let tls = binary_needing(&n.dir, "tls-client", &["libssl.so.3", "libc.so.6"]);
    let out = compose()
        .arg("check")
        .arg(n.dir.join("out"))
        .arg("--binary")
        .arg(&tls)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!(
            "{} needs libssl.so.3, which is not in the image\n",
            tls.display()
        )),
        "{stdout}"
    );
    assert!(
        stderr.contains("note: an image does not record the sources it was built from; `compose suggest MANIFEST --binary FILE` searches the manifest's for the packages that ship what is missing and prints the blocks to add (docs/suggest.md)\n"),
        "{stderr}"
    );

    // 3. The program runs in the image.
    run_in_image(&n, &n.dir.join("out"));
}

/// Unpack the image with umoci and run its entrypoint (the C++ program) under runc as
/// the image's user, root read-only, as scripts/e2e-debian.sh does: every check but the
/// time zone (no tzdata) passes.
fn run_in_image(n: &Noble, layout: &Path) {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        println!("SKIPPED: not root (runc needs it); the fixed image's program not run");
        return;
    }
    if !tool("runc") || !tool("umoci") {
        println!("SKIPPED: runc or umoci not installed; the fixed image's program not run");
        return;
    }
    let bundle = n.dir.join("bundle");
    let out = Command::new("umoci")
        .arg("unpack")
        .arg("--image")
        .arg(format!("{}:cc-app", layout.display()))
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "umoci: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = noble::run_check_as_cnb(&bundle, "suggest");
    for want in [
        "ok   exception: caught \"thrown at depth 0\" across 3 frames, 3 destructors run",
        "ok   zlib: zlib 1.3: ",
        "ok   user: uid 1002 gid 1001 -> name 'cnb', home /home/cnb",
        "check: all checks passed",
    ] {
        assert!(
            stdout.lines().any(|l| l.starts_with(want)),
            "no line starting {want:?}:\n{stdout}"
        );
    }
}

/// A manifest with the C library only: what a binary brings its own needs to.
fn libc_only(url: &str, suites: &[&str], keyring: &Path) -> String {
    format!(
        r#"[image]
name = "base"
architectures = ["amd64"]
merged-usr = true

[[source]]
url = "{url}"
suites = [{}]
components = ["main"]
keyring = "{}"

[package.libc6]
paths = [
    "/usr/lib/*-linux-gnu/ld-linux-*.so.*",
    "/usr/lib*/ld-linux-*.so.*",
    "/usr/lib/*-linux-gnu/libc.so.6",
]
"#,
        suites
            .iter()
            .map(|s| format!("\"{s}\""))
            .collect::<Vec<_>>()
            .join(", "),
        keyring.display()
    )
}

/// An amd64 executable needing `needed` (a real ELF file, never run).
fn binary_needing(dir: &Path, name: &str, needed: &[&str]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(
        &path,
        support::elf::ElfSpec::executable("amd64", needed).build(),
    )
    .unwrap();
    path
}

#[test]
fn a_binary_needing_libssl3_gets_libssl3t64_on_noble_and_an_unknown_name_is_said_so() {
    let Some(n) = noble() else { return };
    let manifest = n.dir.join("base.toml");
    std::fs::write(
        &manifest,
        libc_only(
            UPSTREAM,
            &["noble", "noble-updates", "noble-security"],
            &ubuntu_keyring(),
        ),
    )
    .unwrap();
    let tls = binary_needing(&n.dir, "tls-client", &["libssl.so.3", "libc.so.6"]);
    let out = n.suggest(&manifest, &tls);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("amd64: {} needs libssl.so.3, which is not in the image; no declared package ships it; package libssl3t64 does: add its block below\n", tls.display())),
        "{stdout}"
    );
    // libssl.so.3 needs libcrypto.so.3, which the same package ships: one block, both
    // libraries and their links.
    assert!(
        stdout.ends_with("add to the manifest (`--fix` writes these blocks into it):\n  [package.libssl3t64]  # ships libssl.so.3, libcrypto.so.3 (needed by libssl.so.3)\n  paths = [\"/usr/lib/*-linux-gnu/libssl.so.3\", \"/usr/lib/*-linux-gnu/libcrypto.so.3\"]\n"),
        "{stdout}"
    );
    // Nothing written: no lock, no output.
    assert!(!n.dir.join("base.toml.lock").exists());

    // --fix writes the block; the binary then starts on the image as the manifest is.
    let before = std::fs::read_to_string(&manifest).unwrap();
    let out = compose()
        .arg("suggest")
        .arg(&manifest)
        .args(["--binary", &tls.display().to_string(), "--fix"])
        .args(n.source_args())
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stderr.ends_with(&format!(
            "\n{}: added [package.libssl3t64]\n",
            manifest.display()
        )),
        "{stderr}"
    );
    let after = std::fs::read_to_string(&manifest).unwrap();
    assert_eq!(
        after,
        format!("{before}\n# Added by compose --fix: ships libssl.so.3, libcrypto.so.3 (needed by libssl.so.3).\n[package.libssl3t64]\npaths = [\"/usr/lib/*-linux-gnu/libssl.so.3\", \"/usr/lib/*-linux-gnu/libcrypto.so.3\"]\n")
    );
    let out = n.suggest(&manifest, &tls);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert_eq!(
        stdout,
        "amd64: every need resolves on the image as the manifest is\n"
    );
    std::fs::write(&manifest, &before).unwrap();

    // What a library found needs in turn: libstdc++6's libstdc++.so.6.0.33 needs
    // libgcc_s.so.1 (another package) and libm.so.6 (declared libc6 ships it, not selected).
    let cxx = binary_needing(&n.dir, "cxx", &["libstdc++.so.6", "libc.so.6"]);
    let out = n.suggest(&manifest, &cxx);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert_eq!(
        stdout,
        format!("amd64: {} needs libstdc++.so.6, which is not in the image; no declared package ships it; package libstdc++6 does: add its block below\nadd to the manifest (`--fix` writes these blocks into it):\n  # add to the paths of [package.libc6] (ships libm.so.6 (needed by libstdc++.so.6.0.33)): \"/usr/lib/*-linux-gnu/libm.so.6\"\n  [package.libgcc-s1]  # ships libgcc_s.so.1 (needed by libstdc++.so.6.0.33)\n  paths = [\"/usr/lib/*-linux-gnu/libgcc_s.so.1\"]\n  [package.\"libstdc++6\"]  # ships libstdc++.so.6\n  paths = [\"/usr/lib/*-linux-gnu/libstdc++.so.6\", \"/usr/lib/*-linux-gnu/libstdc++.so.6.0.33\"]\n", cxx.display())
    );

    // No C library at all, and a name the naming rule does not give (libm.so.6 is in
    // libc6): found through the Depends of the declared zlib1g; the interpreter, an
    // absolute path, with its link.
    let zlib_only = n.dir.join("zlib-only.toml");
    std::fs::write(
        &zlib_only,
        libc_only(UPSTREAM, &["noble", "noble-updates", "noble-security"], &ubuntu_keyring())
            .replace("[package.libc6]", "[package.zlib1g]")
            .replace(
                "\"/usr/lib/*-linux-gnu/ld-linux-*.so.*\",\n    \"/usr/lib*/ld-linux-*.so.*\",\n    \"/usr/lib/*-linux-gnu/libc.so.6\",",
                "\"/usr/lib/*-linux-gnu/libz.so.1*\",",
            ),
    )
    .unwrap();
    let maths = binary_needing(&n.dir, "maths", &["libm.so.6"]);
    let out = n.suggest(&zlib_only, &maths);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert_eq!(
        stdout,
        format!("amd64: {m} needs the interpreter /lib64/ld-linux-x86-64.so.2, which is not in the image; no declared package ships it; package libc6 does: add its block below\namd64: {m} needs libm.so.6, which is not in the image; no declared package ships it; package libc6 does: add its block below\nadd to the manifest (`--fix` writes these blocks into it):\n  [package.libc6]  # ships /lib64/ld-linux-x86-64.so.2, libm.so.6, ld-linux-x86-64.so.2 (needed by libm.so.6), libc.so.6 (needed by libm.so.6)\n  paths = [\"/usr/lib64/ld-linux-x86-64.so.2\", \"/usr/lib/*-linux-gnu/ld-linux-x86-64.so.2\", \"/usr/lib/*-linux-gnu/libm.so.6\", \"/usr/lib/*-linux-gnu/libc.so.6\"]\n", m = maths.display())
    );

    // A name no package ships.
    let odd = binary_needing(&n.dir, "odd", &["libnothere.so.7", "libc.so.6"]);
    let out = n.suggest(&manifest, &odd);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains("needs libnothere.so.7, which is not in the image; no package of the sources ships it under the name the Debian library naming rule gives (libnothere7, libnothere7t64), as a Provides, or among the Depends of the declared packages; find it with `apt-file search libnothere.so.7` and declare it\n"),
        "{stdout}"
    );
    assert!(!stdout.contains("[package."), "{stdout}");

    // A binary that would start: exit 0.
    let plain = binary_needing(&n.dir, "plain", &["libc.so.6"]);
    let out = n.suggest(&manifest, &plain);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert_eq!(
        stdout,
        "amd64: every need resolves on the image as the manifest is\n"
    );
}

/// `--fix` never overwrites an edit made since the build read the manifest: the file as
/// it is now stays, and the error says why.
#[test]
fn fix_refuses_a_manifest_changed_on_disk_since_it_was_read() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = tmp.path().join("app.toml");
    let read = "[image]\nname = \"app\"\n";
    let now = "[image]\nname = \"app\"   # edited meanwhile\n";
    std::fs::write(&manifest, now).unwrap();
    let block = compose::suggest::Block {
        package: "libgcc-s1".into(),
        version: "14".into(),
        patterns: vec!["/usr/lib/*-linux-gnu/libgcc_s.so.1".into()],
        ships: vec!["libgcc_s.so.1".into()],
        needed_by: Vec::new(),
        declared: false,
    };
    let e =
        compose::fix::apply(&manifest, read.as_bytes(), std::slice::from_ref(&block)).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("--fix: {} changed on disk since this build read it; build again to have the blocks named for the file as it is now; nothing was written to it", manifest.display())
    );
    assert_eq!(e.exit_code(), 1);
    assert_eq!(std::fs::read_to_string(&manifest).unwrap(), now);
    // As read, it is written, and says so.
    let fixed = compose::fix::apply(&manifest, now.as_bytes(), &[block]).unwrap();
    assert_eq!(
        fixed.summary(&manifest),
        format!("{}: added [package.libgcc-s1]", manifest.display())
    );
}
