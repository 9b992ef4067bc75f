//! `compose check IMAGE [--binary FILE]... [--arch ARCH]`: read one image of a layout
//! back ([`crate::oci::read`]) and run the linkage check ([`crate::rootfs::linkage`]) on
//! it and on the given native binaries; the outcome as a [`CheckReport`] with its exit
//! status (0 all resolve, 1 misses or a damaged image, 2 usage), and [`CheckReport::print`]
//! for the lines the command prints.
//!
//! It must not parse command-line arguments (`src/main.rs` does) nor write anything but
//! those lines to stdout and stderr.

use crate::arch::Arch;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::oci::read::{parse_image_ref, read_image, ReadError, Wanted};
use crate::rootfs::linkage::{self, Report};
use crate::text::{for_terminal, shown};

/// Why a check could not run (nothing was checked).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// A `--binary` file could not be read (exit 2).
    #[error("--binary {}: {source}", .path.display())]
    Binary {
        /// the file as given
        path: PathBuf,
        /// the underlying error
        #[source]
        source: std::io::Error,
    },
    /// `--arch` names no architecture compose knows (exit 2).
    #[error("--arch {arch}: unknown architecture; use a Debian name such as amd64 or arm64 (or linux/arm64)")]
    UnknownArch {
        /// the value given
        arch: String,
    },
    /// The image could not be read: a usage error (not a layout, no such tag or platform;
    /// exit 2) or a damaged image (exit 1).
    #[error(transparent)]
    Read(#[from] ReadError),
}

impl CheckError {
    /// 2 for a usage error (a binary that cannot be read, an unknown architecture, not a
    /// layout, no such tag or platform), 1 for a damaged image.
    pub fn exit_code(&self) -> u8 {
        match self {
            CheckError::Binary { .. } | CheckError::UnknownArch { .. } => 2,
            CheckError::Read(e) if e.is_usage() => 2,
            CheckError::Read(_) => 1,
        }
    }
}

/// The outcome of a check that ran.
#[derive(Debug, Clone)]
pub struct CheckReport {
    /// `sha256:…` of the image manifest checked.
    pub manifest_digest: String,
    /// OCI architecture of the image config, e.g. `arm64`.
    pub architecture: String,
    /// The OCI variant of the image config, e.g. `v8`, when it has one.
    pub variant: Option<String>,
    /// The linkage check's findings (misses, resolved needs, unreadable files).
    pub linkage: Report,
    /// At least one need did not resolve.
    pub failed: bool,
    /// The linkage check alone (not reading the image).
    pub elapsed: Duration,
}

impl CheckReport {
    /// 0 when everything resolves, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        u8::from(self.failed)
    }

    /// The lines of `compose check`: warnings and the summary on stderr, results and the
    /// verdict on stdout.
    pub fn print(&self) {
        let report = &self.linkage;
        for (path, reason) in &report.unreadable {
            eprintln!(
                "warning: {}: not checked, unreadable ELF: {}",
                shown(path),
                shown(reason)
            );
        }
        for x in &report.extras {
            if !x.is_elf {
                println!("{}: not an ELF file, nothing to check", x.name);
            } else if x.is_static {
                println!(
                    "{}: statically linked ({}), needs nothing from the image",
                    x.name, x.machine
                );
            } else if x.misses == 0 {
                let libs: Vec<String> = x
                    .resolved
                    .iter()
                    .map(|(need, found)| format!("{} → {}", shown(need), shown(found)))
                    .collect();
                println!("{}: ok ({}): {}", x.name, x.machine, libs.join(", "));
            }
        }
        for m in &report.misses {
            println!("{}", for_terminal(&m.to_string()));
        }
        let arch_name = match &self.variant {
            Some(v) => format!("{}/{v}", self.architecture),
            None => self.architecture.clone(),
        };
        eprintln!(
            "checked {} (linux/{arch_name}): {} ELF files, {} dynamically linked, {} needs resolved in {:.1} ms",
            self.manifest_digest,
            report.elf_files,
            report.dynamic,
            report.resolved,
            self.elapsed.as_secs_f64() * 1000.0
        );
        if self.failed {
            let files: BTreeSet<&str> = report.misses.iter().map(|m| m.file.as_str()).collect();
            if (report.extras.iter()).any(|x| x.misses > 0) {
                // A layout records no package sources: the manifest that built it does.
                eprintln!(
                    "note: an image does not record the sources it was built from; `compose suggest MANIFEST --binary FILE` searches the manifest's for the packages that ship what is missing and prints the blocks to add (docs/suggest.md)"
                );
            }
            println!(
                "FAILED: {} unresolved in {} file{}",
                report.misses.len(),
                files.len(),
                if files.len() == 1 { "" } else { "s" }
            );
            return;
        }
        let n = report.extras.len();
        println!(
            "ok: {}{} ELF files in the image resolve",
            if n == 0 {
                String::new()
            } else {
                format!("{n} binar{} and ", if n == 1 { "y" } else { "ies" })
            },
            report.elf_files
        );
    }
}

/// Check the image `image` (`DIR` or `DIR:TAG`) and the native `binaries` against it.
/// Which image of a multi-arch layout: `arch` (Debian name, or `linux/arm64` style), else
/// the first binary's architecture, else the host's.
pub fn check(
    image: &str,
    binaries: &[PathBuf],
    arch: Option<&str>,
) -> Result<CheckReport, CheckError> {
    let extras = binaries
        .iter()
        .map(|b| read_binary(b))
        .collect::<Result<Vec<_>, _>>()?;
    let target = match arch {
        Some(a) => Some(Arch::parse(a).ok_or_else(|| CheckError::UnknownArch {
            arch: a.to_string(),
        })?),
        None => extras
            .iter()
            .find_map(|(_, bytes)| linkage::elf_arch(bytes))
            .or_else(Arch::host),
    };
    let wanted = Wanted {
        architecture: target
            .map_or(std::env::consts::ARCH, Arch::oci_architecture)
            .to_string(),
        variant: target.and_then(Arch::oci_variant).map(str::to_string),
        explicit: arch.is_some(),
    };
    let (dir, tag) = parse_image_ref(image);
    let img = read_image(&dir, tag.as_deref(), &wanted)?;
    let started = Instant::now();
    let (report, failed) = match linkage::check(&img.tree, &extras, None) {
        Ok(r) => (r, false),
        Err(e) => (e.report, true),
    };
    Ok(CheckReport {
        manifest_digest: img.manifest_digest,
        architecture: img.architecture,
        variant: img.variant,
        linkage: report,
        failed,
        elapsed: started.elapsed(),
    })
}

/// `(name for messages, bytes)` of a `--binary`.
fn read_binary(path: &Path) -> Result<(String, Vec<u8>), CheckError> {
    std::fs::read(path)
        .map(|bytes| (path.display().to_string(), bytes))
        .map_err(|source| CheckError::Binary {
            path: path.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::{ImageConfig, LayoutWriter};
    use crate::rootfs::tree::{Node, NodeKind, Tree};

    /// A layout of one arm64 image holding one file that is not ELF.
    fn layout(dir: &Path) {
        let mut tree = Tree::new().unwrap();
        let content = tree.spool.append_bytes(b"#!/bin/sh\n").unwrap();
        let node = Node {
            kind: NodeKind::File(content),
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: 0,
            origin: "t".into(),
        };
        tree.insert("/usr/bin/script", node).unwrap();
        let mut w = LayoutWriter::create_beside(dir).unwrap();
        let layer = w.write_layer(&tree, 0).unwrap();
        let config = ImageConfig {
            architecture: "arm64".into(),
            variant: Some("v8".into()),
            ..Default::default()
        };
        let image = w
            .write_image(&config, &layer, 0, &Default::default())
            .unwrap();
        w.finish(vec![image.manifest], "t").unwrap();
        w.commit(dir).unwrap();
    }

    #[test]
    fn reports_and_exit_codes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("img");
        layout(&dir);
        let image = dir.display().to_string();
        let script = tmp.path().join("script");
        std::fs::write(&script, b"#!/bin/sh\n").unwrap();
        // Not explicit: the only image, whatever the host.
        let report = check(&format!("{image}:t"), &[script], None).unwrap();
        assert_eq!((report.exit_code(), report.linkage.elf_files), (0, 0));
        assert_eq!(
            (report.architecture.as_str(), report.variant.as_deref()),
            ("arm64", Some("v8"))
        );
        assert!(!report.linkage.extras[0].is_elf);
        let report = check(&image, &[], Some("linux/arm64")).unwrap();
        assert_eq!(report.exit_code(), 0);

        let usage = |r: Result<CheckReport, CheckError>| {
            let e = r.unwrap_err();
            assert_eq!(e.exit_code(), 2, "{e}");
            e.to_string()
        };
        let e = usage(check(&image, &[tmp.path().join("none")], None));
        assert!(e.starts_with("--binary "), "{e}");
        let e = usage(check(&image, &[], Some("vax")));
        assert!(e.starts_with("--arch vax: unknown architecture"), "{e}");
        let e = usage(check(&image, &[], Some("amd64")));
        assert!(e.contains("no image for linux/amd64"), "{e}");
        let e = usage(check(&format!("{image}:nope"), &[], None));
        assert!(e.contains("no image tagged `nope`"), "{e}");
    }
}
