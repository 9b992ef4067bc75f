//! What maintainer scripts would have made, and what the manifest adds by hand:
//! the CA bundle, passwd/group and home directories, scanner metadata
//! (`/var/lib/dpkg/status.d`), and `[[file]]`, `[[dir]]`, `[[symlink]]`.

use std::collections::BTreeMap;

use crate::manifest::{FileContent, Manifest};
use crate::rootfs::tree::{Conflict, Node, NodeKind, Tree};

/// Where the CA generator reads certificates from, in the ca-certificates package.
pub const MOZILLA_CERTS: &str = "/usr/share/ca-certificates/mozilla/";
pub const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("{location}: [[file]] {path}: cannot read source {source_path}: {source}")]
    Source {
        location: String,
        path: String,
        source_path: String,
        source: std::io::Error,
    },
    #[error("[generate] ca-bundle needs the package ca-certificates ({detail}); add [package.ca-certificates] with paths = []")]
    NoCertificates { detail: String },
    #[error("{0}")]
    Conflict(#[from] Conflict),
    #[error("writing generated content: {0}")]
    Io(#[from] std::io::Error),
}

fn node(kind: NodeKind, mode: u32, uid: u32, gid: u32, origin: &str) -> Node {
    Node {
        kind,
        mode,
        uid,
        gid,
        mtime: 0,
        origin: origin.to_string(),
    }
}

fn add_file(
    tree: &mut Tree,
    path: &str,
    bytes: &[u8],
    mode: u32,
    origin: &str,
) -> Result<(), GenerateError> {
    let content = tree.spool.append_bytes(bytes)?;
    tree.replace(path, node(NodeKind::File(content), mode, 0, 0, origin))?;
    Ok(())
}

/// `/etc/ssl/certs/ca-certificates.crt` from the mozilla certificates (byte order of
/// path, as `update-ca-certificates` concatenates them), plus the OpenSSL links.
pub fn ca_bundle(tree: &mut Tree, certs: &BTreeMap<String, Vec<u8>>) -> Result<(), GenerateError> {
    if certs.is_empty() {
        return Err(GenerateError::NoCertificates {
            detail: format!("no {MOZILLA_CERTS}*.crt was found in it"),
        });
    }
    let mut bundle = Vec::new();
    for pem in certs.values() {
        bundle.extend_from_slice(pem);
        if !pem.ends_with(b"\n") {
            bundle.push(b'\n');
        }
    }
    add_file(tree, CA_BUNDLE, &bundle, 0o644, "ca-bundle")?;
    for (path, target) in [
        ("/usr/lib/ssl/cert.pem", CA_BUNDLE),
        ("/usr/lib/ssl/certs", "/etc/ssl/certs"),
    ] {
        tree.insert(
            path,
            node(NodeKind::Symlink(target.into()), 0o777, 0, 0, "ca-bundle"),
        )?;
    }
    Ok(())
}

/// `/etc/passwd` and `/etc/group` (root, nobody, then the manifest's accounts) and the
/// users' home directories (owned by the user, 0700 unless a [[dir]] says otherwise).
pub fn passwd(tree: &mut Tree, manifest: &Manifest) -> Result<(), GenerateError> {
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

/// Distroless scanner metadata: `status.d/<pkg>` = control, `status.d/<pkg>.md5sums`.
pub fn dpkg_status(
    tree: &mut Tree,
    package: &str,
    control: &[u8],
    md5sums: Option<&[u8]>,
) -> Result<(), GenerateError> {
    let dir = "/var/lib/dpkg/status.d";
    add_file(tree, &format!("{dir}/{package}"), control, 0o644, package)?;
    if let Some(sums) = md5sums {
        add_file(
            tree,
            &format!("{dir}/{package}.md5sums"),
            sums,
            0o644,
            package,
        )?;
    }
    Ok(())
}

/// `[[dir]]`, `[[file]]` and `[[symlink]]` of the manifest for `arch`; they replace
/// whatever a package put at the same path (that is what they are for).
pub fn manifest_entries(
    tree: &mut Tree,
    manifest: &Manifest,
    arch: &str,
) -> Result<(), GenerateError> {
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
                let path = std::path::PathBuf::from(p.to_string_lossy().replace("{arch}", arch));
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
