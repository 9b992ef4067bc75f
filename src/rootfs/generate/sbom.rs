//! `[generate] sbom = true`: each architecture's SPDX document inside its image, at
//! `/var/lib/db/sbom/<image name>.spdx.json` (mode 0644 root), added last so it
//! describes every other file. The document itself is made by [`crate::sbom`].

use super::GenerateError;
use crate::arch::Arch;
use crate::repo::Resolved;
use crate::rootfs::tree::{Node, NodeKind, Tree};
use crate::sbom::{self, SbomError};

/// Add the document of `tree` (its packages and every regular file) to it.
pub fn generate(
    tree: &mut Tree,
    name: &str,
    tag: &str,
    arch: Arch,
    packages: &[Resolved],
    epoch: u64,
) -> Result<(), GenerateError> {
    let path = sbom::in_image_path(name);
    let doc = sbom::in_image_document(tree, name, tag, arch, packages, epoch)?;
    let content = tree
        .spool
        .append_with(&mut |w| doc.write_to(w))
        .map_err(sbom::io_err(format!(
            "[generate] sbom: writing {path} to the spool"
        )))?;
    let node = Node {
        kind: NodeKind::File(content),
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime: 0,
        origin: "sbom".into(),
    };
    tree.insert(&path, node)
        .map_err(|e| SbomError::Tree(format!("[generate] sbom: {e}")))?;
    Ok(())
}
