//! `[generate] passwd`: `/etc/passwd` and `/etc/group` (root, nobody, then the manifest's
//! `[[user]]`/`[[group]]`) and the users' home directories.
//!
//! Reads only the manifest; never touches the host's accounts.

use super::{add_file, node, GenerateError};
use crate::manifest::Manifest;
use crate::rootfs::tree::{NodeKind, Tree};

/// The two files, and each home directory (owned by its user, 0700 unless a `[[dir]]`
/// says otherwise).
pub fn generate(tree: &mut Tree, manifest: &Manifest) -> Result<(), GenerateError> {
    let mut passwd = String::from(
        "root:x:0:0:root:/root:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
    );
    for u in &manifest.users {
        passwd.push_str(&format!(
            "{}:x:{}:{}:{}:{}:{}\n",
            u.name,
            u.uid,
            u.gid,
            u.gecos.as_deref().unwrap_or(""),
            u.home.as_deref().unwrap_or("/nonexistent"),
            u.shell.as_deref().unwrap_or("/usr/sbin/nologin"),
        ));
    }
    let mut group = String::from("root:x:0:\nnogroup:x:65534:\n");
    for g in &manifest.groups {
        group.push_str(&format!("{}:x:{}:{}\n", g.name, g.gid, g.members.join(",")));
    }
    add_file(tree, "/etc/passwd", passwd.as_bytes(), 0o644, "passwd")?;
    add_file(tree, "/etc/group", group.as_bytes(), 0o644, "passwd")?;
    for u in &manifest.users {
        if let Some(home) = &u.home {
            if home != "/nonexistent" {
                tree.replace(home, node(NodeKind::Dir, 0o700, u.uid, u.gid, "passwd"))?;
            }
        }
    }
    Ok(())
}
