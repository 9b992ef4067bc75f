//! The manifest's own entries: `[[dir]]`, `[[file]]` and `[[symlink]]` for one
//! architecture. They replace whatever a package put at the same path (that is what
//! they are for).
//!
//! The only generator that reads the host: a `[[file]]`'s `source` (with `{arch}`
//! replaced by the architecture's Debian name).

use super::{node, GenerateError};
use crate::arch::Arch;
use crate::manifest::{FileContent, Manifest};
use crate::rootfs::tree::{NodeKind, Tree};

/// Add the entries that apply to `arch`: directories, then files, then symlinks.
pub fn generate(tree: &mut Tree, manifest: &Manifest, arch: Arch) -> Result<(), GenerateError> {
    for d in manifest.dirs.iter().filter(|d| d.applies_to(arch)) {
        tree.replace(
            &d.path,
            node(NodeKind::Dir, d.mode, d.uid, d.gid, "manifest"),
        )?;
    }
    for f in manifest.files.iter().filter(|f| f.applies_to(arch)) {
        let content = match &f.content {
            FileContent::Text(t) => tree.spool.append_bytes(t.as_bytes())?,
            FileContent::Source(p) => {
                let path =
                    std::path::PathBuf::from(p.to_string_lossy().replace("{arch}", arch.name()));
                let mut file =
                    std::fs::File::open(&path).map_err(|source| GenerateError::Source {
                        location: f.location.to_string(),
                        path: f.path.clone(),
                        source_path: path.display().to_string(),
                        source,
                    })?;
                tree.spool.append(&mut file)?
            }
        };
        tree.replace(
            &f.path,
            node(NodeKind::File(content), f.mode, f.uid, f.gid, "manifest"),
        )?;
    }
    for s in manifest.symlinks.iter().filter(|s| s.applies_to(arch)) {
        tree.replace(
            &s.path,
            node(
                NodeKind::Symlink(s.target.clone()),
                0o777,
                s.uid,
                s.gid,
                "manifest",
            ),
        )?;
    }
    Ok(())
}
