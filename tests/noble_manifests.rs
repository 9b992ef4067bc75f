//! The shipped `manifests/noble-tiny-grpc.toml` and `manifests/noble-static.toml`, the
//! files themselves (never an edited copy), built by the `compose` binary from a loopback
//! repository of the real Ubuntu 24.04 `.deb`s of `../shared/data/ubuntu/debs`
//! (`tests/support/noble.rs` says what in it is real: the packages and their stanzas; and
//! what is not: the Release signatures, by a test key).
//!
//! The command line does what the manifests cannot be edited to do: `--mirror` points
//! `http://archive.ubuntu.com` at the loopback server, `--keyring` gives the test key for
//! that source, and `--exclude-package tzdata` leaves out tzdata, of which no noble `.deb`
//! is available here. `--arch amd64`: there is no arm64 noble `.deb` here either.
//!
//! Checked: every declared pattern matches a path of the image; the image's file list is
//! the one written below; libc6 2.39-0ubuntu8.3 (noble-updates) wins over 2.39-0ubuntu8
//! (noble) and the lock records the real `.deb`s' sizes and SHA-256 (written here from
//! `sha256sum`); `/etc/lsb-release` is there (Trivy reads it); Syft sees `ubuntu 24.04`
//! and every package at its exact version; and the C++ program of the e2e
//! (`tests/e2e-assets/check.cc`: threads, exceptions across frames, zlib, the CA bundle,
//! getpwuid, getservbyname), compiled here, runs under runc as `cnb` (1002:1001) on the
//! image's glibc 2.39 and libstdc++ 14. Parts that need root, runc, umoci, g++ or Syft
//! print `SKIPPED` without them; all of it is skipped without `../shared/data`.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::noble;

const UPSTREAM: &str = "http://archive.ubuntu.com/ubuntu";

/// The loopback noble repository, served, and a work directory.
type Noble = noble::Served;

fn noble() -> Option<Noble> {
    noble::served()
}

/// A shipped manifest, by name: `manifests/<name>.toml` of this checkout.
fn shipped(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("manifests")
        .join(format!("{name}.toml"))
}

impl Noble {
    /// `compose manifests/<name>.toml --arch amd64 --mirror … --keyring …
    /// --exclude-package tzdata`, with output, lock and cache in the work directory.
    fn compose(&self, name: &str) -> Output {
        let out = Command::new(env!("CARGO_BIN_EXE_compose"))
            .arg(shipped(name))
            .args(["--arch", "amd64", "--mirror"])
            .arg(format!("http://archive.ubuntu.com={}", self.server.url))
            .arg("--keyring")
            .arg(format!("{UPSTREAM}={}", self.keyring.display()))
            .args(["--exclude-package", "tzdata", "--output"])
            .arg(self.dir.join(name))
            .arg("--lock")
            .arg(self.dir.join(format!("{name}.lock")))
            .arg("--cache")
            .arg(self.dir.join("cache"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "compose {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// The lock's lines without their ` ~CHECK`.
    fn lock_lines(&self, name: &str) -> Vec<String> {
        std::fs::read_to_string(self.dir.join(format!("{name}.lock")))
            .unwrap()
            .lines()
            .map(|l| l.rsplit_once(" ~").map_or(l, |(text, _)| text).to_string())
            .collect()
    }
}

/// `TYPE MODE UID:GID /PATH[ -> TARGET]` for each entry of the one layer of the
/// single-image layout at `layout`, in layer order, and the layer's compressed size.
fn layer_listing(layout: &Path) -> (Vec<String>, u64) {
    let blob = |digest: &str| layout.join("blobs/sha256").join(&digest["sha256:".len()..]);
    let json = |path: PathBuf| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    };
    let index = json(layout.join("index.json"));
    let manifest = json(blob(index["manifests"][0]["digest"].as_str().unwrap()));
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    let size = layers[0]["size"].as_u64().unwrap();
    let file = std::fs::File::open(blob(layers[0]["digest"].as_str().unwrap())).unwrap();
    let mut tar = tar::Archive::new(flate2::read::MultiGzDecoder::new(file));
    let listing = tar
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let h = e.header();
            let kind = match h.entry_type() {
                tar::EntryType::Directory => "dir",
                tar::EntryType::Symlink => "symlink",
                tar::EntryType::Link => "hardlink",
                tar::EntryType::Regular => "file",
                other => panic!("unexpected entry type {other:?}"),
            };
            let path = e.path().unwrap().to_string_lossy().into_owned();
            let mut line = format!(
                "{kind} {:04o} {}:{} /{}",
                h.mode().unwrap(),
                h.uid().unwrap(),
                h.gid().unwrap(),
                path.trim_end_matches('/')
            );
            if let Some(target) = e.link_name().unwrap() {
                line.push_str(&format!(" -> {}", target.to_string_lossy()));
            }
            line
        })
        .collect();
    (listing, size)
}

/// Every `paths` pattern of every package of the shipped manifest `name` (but tzdata,
/// left out) matches at least one path of `listing`, with the manifest's glob rules
/// (`*` within a component, `**` across).
fn assert_every_pattern_matches(name: &str, listing: &[String]) {
    // The manifest as compose reads it: with the noble-base.toml it includes.
    let manifest = compose::manifest::Manifest::load(&shipped(name)).unwrap();
    let paths: Vec<&str> = listing
        .iter()
        .map(|l| l.split(' ').nth(3).unwrap())
        .collect();
    let mut checked = 0;
    for package in &manifest.packages {
        if package.name == "tzdata" {
            continue;
        }
        for pattern in &package.paths {
            assert!(
                paths.iter().any(|p| pattern.matcher.is_match(p)),
                "{name}: pattern {} of package {} ({}) matches nothing in the image",
                pattern.text,
                package.name,
                pattern.location
            );
            checked += 1;
        }
    }
    assert!(checked > 0);
}

fn tool(name: &str) -> Option<PathBuf> {
    let venv = std::env::var("SYFT_VENV").unwrap_or_else(|_| "/opt/compose-ci/syft-venv".into());
    let in_venv = Path::new(&venv).join("bin").join(name);
    if in_venv.is_file() {
        return Some(in_venv);
    }
    Command::new(name)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
        .then(|| PathBuf::from(name))
}

/// Syft sees Ubuntu 24.04 and exactly `packages` (name, version).
fn assert_syft_sees(layout: &Path, packages: &[(&str, &str)]) {
    let Some(syft) = tool("syft") else {
        println!("SKIPPED: syft not installed; the image not read by Syft");
        return;
    };
    let out = Command::new(syft)
        .arg(format!("oci-dir:{}", layout.display()))
        .args(["-o", "json", "-q"])
        .env("SYFT_CHECK_FOR_APP_UPDATE", "false")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "syft: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["distro"]["id"], "ubuntu", "{}", v["distro"]);
    assert_eq!(v["distro"]["versionID"], "24.04", "{}", v["distro"]);
    let seen: BTreeSet<(String, String, String)> = v["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["name"].as_str().unwrap().to_string(),
                a["version"].as_str().unwrap().to_string(),
                a["type"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want: BTreeSet<(String, String, String)> = packages
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string(), "deb".to_string()))
        .collect();
    assert_eq!(seen, want);
}

/// The packages of the noble-tiny-grpc image: (name, version), and the lock's line for
/// each, its size and SHA-256 those of the real `.deb` (`sha256sum`, `stat -c %s`).
const TINY_PACKAGES: [(&str, &str, &str); 7] = [
    ("base-files", "13ubuntu10", "amd64 package base-files 13ubuntu10 amd64 noble http://archive.ubuntu.com/ubuntu/pool/main/b/base-files/base-files_13ubuntu10_amd64.deb 73634 sha256:cd06729c776397bb74779773f4dece372a1a3f795e5992804022bffab0278ffb"),
    ("ca-certificates", "20240203", "amd64 package ca-certificates 20240203 all noble http://archive.ubuntu.com/ubuntu/pool/main/c/ca-certificates/ca-certificates_20240203_all.deb 159378 sha256:641de77d8f142cfd62a1a6f964ba67b20754d3337c480efb529d086075a06c9a"),
    ("libc6", "2.39-0ubuntu8.3", "amd64 package libc6 2.39-0ubuntu8.3 amd64 noble-updates http://archive.ubuntu.com/ubuntu/pool/main/g/glibc/libc6_2.39-0ubuntu8.3_amd64.deb 3265056 sha256:84cd7925cb7773471f09810cbebcd796f2fd33a07cb761a64116eeb7b9096a2f"),
    ("libgcc-s1", "14-20240412-0ubuntu1", "amd64 package libgcc-s1 14-20240412-0ubuntu1 amd64 noble http://archive.ubuntu.com/ubuntu/pool/main/g/gcc-14/libgcc-s1_14-20240412-0ubuntu1_amd64.deb 78484 sha256:a39efdcaa2245f026dc3254ce14fcff255fc430a17064632b6ba7c5da974a912"),
    ("libstdc++6", "14-20240412-0ubuntu1", "amd64 package libstdc++6 14-20240412-0ubuntu1 amd64 noble http://archive.ubuntu.com/ubuntu/pool/main/g/gcc-14/libstdc++6_14-20240412-0ubuntu1_amd64.deb 795158 sha256:4863e880d6ee538e4734c430c5579c1ac933b88a42c25bc9980d0f148c54b21e"),
    ("netbase", "6.4", "amd64 package netbase 6.4 all noble http://archive.ubuntu.com/ubuntu/pool/main/n/netbase/netbase_6.4_all.deb 13112 sha256:8cdbc9c3dca01e660759bf9d840f72e45ac72faf5d19ca1faecacaf6a60c1a87"),
    ("zlib1g", "1:1.3.dfsg-3.1ubuntu2", "amd64 package zlib1g 1:1.3.dfsg-3.1ubuntu2 amd64 noble http://archive.ubuntu.com/ubuntu/pool/main/z/zlib/zlib1g_1.3.dfsg-3.1ubuntu2_amd64.deb 62784 sha256:0b93d16d7498f092fa3070fbbad28cdbc6b3d640f1a7681b96fc37f20d1219f1"),
];

/// The image of noble-tiny-grpc (amd64, without tzdata), entry by entry.
const TINY_FILES: &[&str] = &[
    "symlink 0777 0:0 /bin -> usr/bin",
    "dir 0755 0:0 /etc",
    "file 0644 0:0 /etc/group",
    // Dangling here: tzdata, which holds its target, is left out of this build.
    "symlink 0777 0:0 /etc/localtime -> /usr/share/zoneinfo/Etc/UTC",
    "file 0644 0:0 /etc/lsb-release",
    "file 0644 0:0 /etc/nsswitch.conf",
    "symlink 0777 0:0 /etc/os-release -> ../usr/lib/os-release",
    "file 0644 0:0 /etc/passwd",
    "file 0644 0:0 /etc/protocols",
    "file 0644 0:0 /etc/services",
    "dir 0755 0:0 /etc/ssl",
    "dir 0755 0:0 /etc/ssl/certs",
    "file 0644 0:0 /etc/ssl/certs/ca-certificates.crt",
    "dir 0755 0:0 /home",
    "dir 0700 1002:1001 /home/cnb",
    "symlink 0777 0:0 /lib -> usr/lib",
    "symlink 0777 0:0 /lib64 -> usr/lib64",
    "symlink 0777 0:0 /sbin -> usr/sbin",
    "dir 1777 0:0 /tmp",
    "dir 0755 0:0 /usr",
    "dir 0755 0:0 /usr/lib",
    "file 0644 0:0 /usr/lib/os-release",
    "dir 0755 0:0 /usr/lib/ssl",
    "symlink 0777 0:0 /usr/lib/ssl/cert.pem -> /etc/ssl/certs/ca-certificates.crt",
    "symlink 0777 0:0 /usr/lib/ssl/certs -> /etc/ssl/certs",
    "dir 0755 0:0 /usr/lib/x86_64-linux-gnu",
    "file 0755 0:0 /usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
    "file 0755 0:0 /usr/lib/x86_64-linux-gnu/libc.so.6",
    "file 0644 0:0 /usr/lib/x86_64-linux-gnu/libdl.so.2",
    "file 0644 0:0 /usr/lib/x86_64-linux-gnu/libgcc_s.so.1",
    "file 0644 0:0 /usr/lib/x86_64-linux-gnu/libm.so.6",
    "file 0644 0:0 /usr/lib/x86_64-linux-gnu/libpthread.so.0",
    "file 0644 0:0 /usr/lib/x86_64-linux-gnu/libresolv.so.2",
    "file 0644 0:0 /usr/lib/x86_64-linux-gnu/librt.so.1",
    "symlink 0777 0:0 /usr/lib/x86_64-linux-gnu/libstdc++.so.6 -> libstdc++.so.6.0.33",
    "file 0644 0:0 /usr/lib/x86_64-linux-gnu/libstdc++.so.6.0.33",
    "symlink 0777 0:0 /usr/lib/x86_64-linux-gnu/libz.so.1 -> libz.so.1.3",
    "file 0644 0:0 /usr/lib/x86_64-linux-gnu/libz.so.1.3",
    "dir 0755 0:0 /usr/lib64",
    "symlink 0777 0:0 /usr/lib64/ld-linux-x86-64.so.2 -> ../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
    "dir 0755 0:0 /usr/share",
    "dir 0755 0:0 /usr/share/doc",
    "dir 0755 0:0 /usr/share/doc/base-files",
    "file 0644 0:0 /usr/share/doc/base-files/copyright",
    "dir 0755 0:0 /usr/share/doc/ca-certificates",
    "file 0644 0:0 /usr/share/doc/ca-certificates/copyright",
    "dir 0755 0:0 /usr/share/doc/libc6",
    "file 0644 0:0 /usr/share/doc/libc6/copyright",
    // No libgcc-s1 or libstdc++6 copyright: in noble both packages' doc directories are
    // symbolic links to gcc-14-base's, a package the manifest does not declare.
    "dir 0755 0:0 /usr/share/doc/netbase",
    "file 0644 0:0 /usr/share/doc/netbase/copyright",
    "dir 0755 0:0 /usr/share/doc/zlib1g",
    "file 0644 0:0 /usr/share/doc/zlib1g/copyright",
    "dir 0755 0:0 /var",
    "dir 0755 0:0 /var/lib",
    "dir 0755 0:0 /var/lib/dpkg",
    "dir 0755 0:0 /var/lib/dpkg/status.d",
    "file 0644 0:0 /var/lib/dpkg/status.d/base-files",
    "file 0644 0:0 /var/lib/dpkg/status.d/base-files.md5sums",
    "file 0644 0:0 /var/lib/dpkg/status.d/ca-certificates",
    "file 0644 0:0 /var/lib/dpkg/status.d/ca-certificates.md5sums",
    "file 0644 0:0 /var/lib/dpkg/status.d/libc6",
    "file 0644 0:0 /var/lib/dpkg/status.d/libc6.md5sums",
    "file 0644 0:0 /var/lib/dpkg/status.d/libgcc-s1",
    "file 0644 0:0 /var/lib/dpkg/status.d/libgcc-s1.md5sums",
    "file 0644 0:0 /var/lib/dpkg/status.d/libstdc++6",
    "file 0644 0:0 /var/lib/dpkg/status.d/libstdc++6.md5sums",
    "file 0644 0:0 /var/lib/dpkg/status.d/netbase",
    "file 0644 0:0 /var/lib/dpkg/status.d/netbase.md5sums",
    "file 0644 0:0 /var/lib/dpkg/status.d/zlib1g",
    "file 0644 0:0 /var/lib/dpkg/status.d/zlib1g.md5sums",
];

/// The image of noble-static (amd64, without tzdata), entry by entry.
const STATIC_FILES: &[&str] = &[
    "symlink 0777 0:0 /bin -> usr/bin",
    "dir 0755 0:0 /etc",
    "file 0644 0:0 /etc/group",
    "symlink 0777 0:0 /etc/localtime -> /usr/share/zoneinfo/Etc/UTC",
    "file 0644 0:0 /etc/lsb-release",
    "file 0644 0:0 /etc/nsswitch.conf",
    "symlink 0777 0:0 /etc/os-release -> ../usr/lib/os-release",
    "file 0644 0:0 /etc/passwd",
    "file 0644 0:0 /etc/protocols",
    "file 0644 0:0 /etc/services",
    "dir 0755 0:0 /etc/ssl",
    "dir 0755 0:0 /etc/ssl/certs",
    "file 0644 0:0 /etc/ssl/certs/ca-certificates.crt",
    "dir 0755 0:0 /home",
    "dir 0700 65532:65532 /home/nonroot",
    "symlink 0777 0:0 /lib -> usr/lib",
    "symlink 0777 0:0 /lib64 -> usr/lib64",
    "symlink 0777 0:0 /sbin -> usr/sbin",
    "dir 1777 0:0 /tmp",
    "dir 0755 0:0 /usr",
    "dir 0755 0:0 /usr/lib",
    "file 0644 0:0 /usr/lib/os-release",
    "dir 0755 0:0 /usr/lib/ssl",
    "symlink 0777 0:0 /usr/lib/ssl/cert.pem -> /etc/ssl/certs/ca-certificates.crt",
    "symlink 0777 0:0 /usr/lib/ssl/certs -> /etc/ssl/certs",
    "dir 0755 0:0 /usr/share",
    "dir 0755 0:0 /usr/share/doc",
    "dir 0755 0:0 /usr/share/doc/base-files",
    "file 0644 0:0 /usr/share/doc/base-files/copyright",
    "dir 0755 0:0 /usr/share/doc/ca-certificates",
    "file 0644 0:0 /usr/share/doc/ca-certificates/copyright",
    "dir 0755 0:0 /usr/share/doc/netbase",
    "file 0644 0:0 /usr/share/doc/netbase/copyright",
    "dir 0755 0:0 /var",
    "dir 0755 0:0 /var/lib",
    "dir 0755 0:0 /var/lib/dpkg",
    "dir 0755 0:0 /var/lib/dpkg/status.d",
    "file 0644 0:0 /var/lib/dpkg/status.d/base-files",
    "file 0644 0:0 /var/lib/dpkg/status.d/base-files.md5sums",
    "file 0644 0:0 /var/lib/dpkg/status.d/ca-certificates",
    "file 0644 0:0 /var/lib/dpkg/status.d/ca-certificates.md5sums",
    "file 0644 0:0 /var/lib/dpkg/status.d/netbase",
    "file 0644 0:0 /var/lib/dpkg/status.d/netbase.md5sums",
];

#[test]
fn noble_tiny_grpc_builds_from_real_noble_packages() {
    let Some(n) = noble() else {
        return;
    };
    // The repository holds both libc6 builds: 8 in noble, 8.3 in noble-updates.
    let libc6: Vec<(&str, &str)> = (n.mirror.packages.iter())
        .filter(|p| p.name == "libc6")
        .map(|p| (p.suite.as_str(), p.version.as_str()))
        .collect();
    assert_eq!(
        libc6,
        [
            ("noble", "2.39-0ubuntu8"),
            ("noble-security", "2.39-0ubuntu8.3"),
            ("noble-updates", "2.39-0ubuntu8.3")
        ]
    );
    let run = n.compose("noble-tiny-grpc");
    let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
    assert!(
        stderr.contains("  libc6 2.39-0ubuntu8.3 (amd64, noble-updates)\n"),
        "{stderr}"
    );
    // The undeclared Depends, each named once (gcc-14-base is the copyright's package).
    assert!(
        stderr.contains("warning: libgcc-s1 depends on gcc-14-base (= 14-20240412-0ubuntu1), which the manifest does not declare (amd64)\n"),
        "{stderr}"
    );

    // The lock: tzdata left out, every package at the real .deb's size and SHA-256.
    let lock = n.lock_lines("noble-tiny-grpc");
    assert!(lock.contains(&"exclude-package tzdata".to_string()));
    let packages: Vec<&String> = lock
        .iter()
        .filter(|l| l.starts_with("amd64 package "))
        .collect();
    assert_eq!(
        packages,
        TINY_PACKAGES
            .iter()
            .map(|(_, _, line)| line)
            .collect::<Vec<_>>()
    );
    for suite in noble::SUITES {
        let release = format!("amd64 release {UPSTREAM}/dists/{suite}/InRelease sha256:");
        assert!(lock.iter().any(|l| l.starts_with(&release)), "{lock:?}");
    }

    let layout = n.dir.join("noble-tiny-grpc");
    let (listing, layer_size) = layer_listing(&layout);
    assert_eq!(listing, TINY_FILES);
    assert_every_pattern_matches("noble-tiny-grpc", &listing);
    let versions: Vec<(&str, &str)> = TINY_PACKAGES.iter().map(|(n, v, _)| (*n, *v)).collect();
    assert_syft_sees(&layout, &versions);
    run_check_program(&n, &layout, layer_size);
}

#[test]
fn noble_static_builds_from_real_noble_packages() {
    let Some(n) = noble() else {
        return;
    };
    let run = n.compose("noble-static");
    let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
    assert!(stderr.contains("(0 ELF files linked)"), "{stderr}");
    let lock = n.lock_lines("noble-static");
    let packages: Vec<&String> = lock
        .iter()
        .filter(|l| l.starts_with("amd64 package "))
        .collect();
    let want: Vec<&&str> = TINY_PACKAGES
        .iter()
        .filter(|(name, _, _)| ["base-files", "ca-certificates", "netbase"].contains(name))
        .map(|(_, _, line)| line)
        .collect();
    assert_eq!(packages, want);
    let layout = n.dir.join("noble-static");
    let (listing, _) = layer_listing(&layout);
    assert_eq!(listing, STATIC_FILES);
    assert_every_pattern_matches("noble-static", &listing);
    assert_syft_sees(
        &layout,
        &[
            ("base-files", "13ubuntu10"),
            ("ca-certificates", "20240203"),
            ("netbase", "6.4"),
        ],
    );
}

/// Why the runc run cannot happen here, if it cannot.
fn runc_missing() -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root (runc needs it)".into());
    }
    for t in ["runc", "umoci", "g++"] {
        if tool(t).is_none() {
            return Some(format!("{t} not installed (.ci/run installs it)"));
        }
    }
    if !Path::new("/usr/include/zlib.h").exists() {
        return Some("zlib.h not installed (apt-get install zlib1g-dev)".into());
    }
    None
}

/// Compile tests/e2e-assets/check.cc (the default g++ link: dynamic libstdc++, libgcc_s,
/// libc, libz), unpack the image with umoci, put the program at /usr/local/bin/check of
/// the bundle's rootfs (a test artifact, so not in the shipped manifest), and run it
/// under runc as the image's user, as scripts/e2e-debian.sh does (terminal off, root
/// read-only): every check but the time zone (no tzdata) must pass.
fn run_check_program(n: &Noble, layout: &Path, layer_size: u64) {
    if let Some(why) = runc_missing() {
        println!("SKIPPED: {why}; the C++ program not run on the noble image");
        return;
    }
    let program = n.dir.join("check");
    let cc = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e-assets/check.cc");
    let out = Command::new("g++")
        .args(["-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&program)
        .arg(&cc)
        .arg("-lz")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "g++: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let bundle = n.dir.join("bundle");
    let out = Command::new("umoci")
        .arg("unpack")
        .arg("--image")
        .arg(format!("{}:noble-tiny-grpc", layout.display()))
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "umoci: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rootfs = bundle.join("rootfs");
    // The sizes for the README: `du -sb` of the unpacked rootfs, the gzip layer.
    let du = Command::new("du").arg("-sb").arg(&rootfs).output().unwrap();
    let du = String::from_utf8_lossy(&du.stdout);
    println!(
        "noble-tiny-grpc amd64 (without tzdata): rootfs {} bytes (du -sb), compressed layer {layer_size} bytes",
        du.split_whitespace().next().unwrap_or("?")
    );
    let bin = rootfs.join("usr/local/bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(&program, bin.join("check")).unwrap();

    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
    // umoci resolved the image's user through the image's own /etc/passwd.
    assert_eq!(config["process"]["user"]["uid"], 1002);
    assert_eq!(config["process"]["user"]["gid"], 1001);
    let stdout = noble::run_check_as_cnb(&bundle, "noble");
    println!("{stdout}");
    for want in [
        "ok   thread: ",
        "ok   exception: caught \"thrown at depth 0\" across 3 frames, 3 destructors run",
        "ok   zlib: zlib 1.3: ",
        "ok   ca-bundle: /etc/ssl/certs/ca-certificates.crt: ",
        "skip timezone: not run (--without timezone)",
        "ok   user: uid 1002 gid 1001 -> name 'cnb', home /home/cnb",
        "ok   services: getservbyname(\"https\", \"tcp\") = 443",
        "check: all checks passed",
    ] {
        assert!(
            stdout.lines().any(|l| l.starts_with(want)),
            "no line starting {want:?}:\n{stdout}"
        );
    }
}
