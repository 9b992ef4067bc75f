//! The merged-usr rules: which top-level directories a merged-usr image turns into
//! symlinks into `/usr` ([`MERGED_TOP`]), and the `/usr` form of an image path
//! ([`merged_usr_path`]). Package selection, the linkage check and the manifest's path
//! checks all ask here, so the rules exist once; [`add_links`] puts the top-level links
//! into a composed tree.
//!
//! String rules on absolute image paths and one tree insertion: nothing here touches
//! the file system.

use crate::arch::Arch;
use crate::rootfs::tree::{Node, NodeKind, Tree};

/// Top-level directories that merged-usr turns into symlinks into `/usr`.
pub const MERGED_TOP: &[&str] = &["bin", "sbin", "lib", "lib32", "lib64", "libx32"];

/// Whether `component`, a top-level directory name, is one of [`MERGED_TOP`].
pub fn is_merged_top(component: &str) -> bool {
    MERGED_TOP.contains(&component)
}

/// The merged-usr form of an absolute, normalised path: `/lib/x` → `/usr/lib/x`,
/// `/bin` → `/usr/bin`. Paths outside the merged directories are returned unchanged.
///
/// `None` for anything that is not absolute and normalised (a relative path, an empty,
/// `.` or `..` component, a trailing `/`, a NUL): the result is never a path that could
/// leave `/`, whatever the input.
pub fn merged_usr_path(path: &str) -> Option<String> {
    let rest = path.strip_prefix('/')?;
    let normalised = path == "/"
        || (!rest.contains('\0') && rest.split('/').all(|c| !matches!(c, "" | "." | "..")));
    if !normalised {
        return None;
    }
    let first = rest.split('/').next().unwrap_or("");
    if is_merged_top(first) {
        Some(format!("/usr/{rest}"))
    } else {
        Some(path.to_string())
    }
}

/// Add the merged-usr top-level symlinks (`/bin -> usr/bin`, …) for the directories the
/// image has under `/usr`; `/lib64` always where the architecture's ELF interpreter
/// lives there ([`Arch::loader_in_lib64`]: amd64).
pub fn add_links(tree: &mut Tree, arch: Arch) -> Result<(), crate::rootfs::tree::Conflict> {
    for top in MERGED_TOP {
        let usr = format!("/usr/{top}");
        let wanted = tree.contains(&usr)
            || matches!(*top, "bin" | "sbin" | "lib")
            || (*top == "lib64" && arch.loader_in_lib64());
        if !wanted {
            continue;
        }
        tree.insert(
            &format!("/{top}"),
            Node {
                kind: NodeKind::Symlink(format!("usr/{top}")),
                mode: 0o777,
                uid: 0,
                gid: 0,
                mtime: 0,
                origin: "merged-usr".into(),
            },
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_usr_paths() {
        assert_eq!(
            merged_usr_path("/lib/x86_64-linux-gnu/libc.so.6").unwrap(),
            "/usr/lib/x86_64-linux-gnu/libc.so.6"
        );
        assert_eq!(
            merged_usr_path("/lib64/ld-linux-x86-64.so.2").unwrap(),
            "/usr/lib64/ld-linux-x86-64.so.2"
        );
        assert_eq!(merged_usr_path("/bin").unwrap(), "/usr/bin");
        assert_eq!(merged_usr_path("/").unwrap(), "/");
        assert_eq!(merged_usr_path("/etc/passwd").unwrap(), "/etc/passwd");
    }

    /// Found by the `tar_paths` fuzz target (fuzz/regressions/tar_paths-merged-usr-dotdot):
    /// a path that was not normalised came back unchanged, `..` and all.
    #[test]
    fn merged_usr_path_refuses_unnormalised_paths() {
        for p in [
            "/u.sr/../.ha$ow",
            "/lib/../../etc/shadow",
            "/usr/..",
            "/lib//x",
            "/lib/./x",
            "/lib/",
            "/x\0y",
            "lib/x",
            "",
        ] {
            assert_eq!(merged_usr_path(p), None, "{p:?}");
        }
        assert_eq!(merged_usr_path("/usr/lib/x").unwrap(), "/usr/lib/x");
        assert_eq!(merged_usr_path("/library/x").unwrap(), "/library/x");
        assert_eq!(merged_usr_path("/etc/passwd").unwrap(), "/etc/passwd");
    }
}
