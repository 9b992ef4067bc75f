//! What a finished build prints for people: per architecture the packages, entries, ELF
//! files linked and the layer; the lock; what `--rootfs` wrote; where the image is.
//!
//! Formats a [`BuildResult`]; computes nothing and writes nothing itself.

use crate::build::BuildResult;

/// The human summary printed on stderr after a build.
pub fn summary(result: &BuildResult) -> String {
    let mut out = String::new();
    for image in &result.images {
        out.push_str(&format!(
            "{}: {} packages, {} entries ({} ELF files linked), layer {} ({} bytes)\n",
            image.arch,
            image.packages.len(),
            image.entries,
            image.elf_files,
            image.layer.digest,
            image.layer.size
        ));
        for p in &image.packages {
            out.push_str(&format!(
                "  {} {} ({}, {})\n",
                p.name, p.version, p.architecture, p.suite
            ));
        }
        for f in &image.setid {
            out.push_str(&format!("  setuid/setgid: {f}\n"));
        }
    }
    out.push_str(&format!(
        "{} {}\n",
        if result.from_lock {
            "packages pinned by"
        } else {
            "lock"
        },
        result.lock_path.display()
    ));
    out.push_str(&format!(
        "wrote {} tagged {}\n",
        result.output.display(),
        result.tag
    ));
    if let Some(r) = &result.rootfs {
        out.push_str(&format!(
            "wrote root filesystem {} ({} directories, {} files, {} symlinks, {} hard links, {} bytes)\n",
            r.dir.display(),
            r.dirs,
            r.files,
            r.symlinks,
            r.hardlinks,
            r.bytes
        ));
    }
    out
}
