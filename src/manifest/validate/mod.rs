//! Validation: the [`RawManifest`] serde read becomes a [`Manifest`], or the first
//! problem becomes a [`ManifestError`] pointing at the manifest (`file:line:column`)
//! with a one-line hint.
//!
//! [`Cx::validate`] checks the sections in a fixed order, one function each — `[image]`
//! ([`image`]), `[[source]]` ([`sources`]), `[package.NAME]` ([`packages`]),
//! `[[group]]`/`[[user]]` ([`accounts`]), `[[file]]`/`[[dir]]`/`[[symlink]]`
//! ([`entries`]) — so that a manifest with several problems always reports the same one.
//! This module holds the context and the checks more than one section uses (image
//! paths, architectures, host paths).
//!
//! Nothing here touches the network; the file system only to check that a source's
//! keyring exists.

mod accounts;
mod entries;
mod image;
mod packages;
mod sources;

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde_spanned::Spanned;

use super::schema::RawManifest;
use super::{Location, Manifest, ManifestError};
use crate::arch::Arch;
use crate::rootfs::merged_usr::merged_usr_path;

/// The manifest being validated: its file and text, for turning spans into
/// `line:column` and for resolving host paths.
pub(super) struct Cx<'a> {
    pub(super) path: &'a Path,
    pub(super) text: &'a str,
    /// Byte offsets where the lines of `text` start, in order (the first is 0).
    line_starts: Vec<usize>,
}

impl<'a> Cx<'a> {
    /// The context of `text`, read from `path`.
    pub(super) fn new(path: &'a Path, text: &'a str) -> Cx<'a> {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Cx {
            path,
            text,
            line_starts,
        }
    }

    /// Check every section, in order, and assemble the manifest.
    pub(super) fn validate(&self, raw: RawManifest) -> Result<Manifest, ManifestError> {
        let RawManifest {
            image,
            source,
            package,
            generate,
            user,
            group,
            file,
            dir,
            symlink,
        } = raw;
        let merged_usr = image.merged_usr;
        let image_user = image.user.clone();
        let image = self.image(image)?;
        let sources = self.sources(&source)?;
        let packages = self.packages(&package, merged_usr)?;
        let (groups, users) = self.accounts(&group, &user, image_user.as_ref(), merged_usr)?;
        let entries = self.entries(&file, &dir, &symlink, merged_usr)?;
        Ok(Manifest {
            path: self.path.to_path_buf(),
            text: self.text.to_string(),
            image,
            sources,
            packages,
            generate,
            users,
            groups,
            files: entries.files,
            dirs: entries.dirs,
            symlinks: entries.symlinks,
        })
    }

    /// `file:line:column` of the start of `span`: a binary search of the line starts,
    /// so that locating every entry of a long manifest stays n·log n.
    pub(super) fn location(&self, span: Range<usize>) -> Location {
        let start = span.start.min(self.text.len());
        // The last line starting at or before `start`.
        let line = self.line_starts.partition_point(|&s| s <= start);
        let line_start = self.line_starts[line - 1];
        let column = self.text[line_start..start].chars().count() + 1;
        Location {
            file: self.path.to_path_buf(),
            line,
            column,
        }
    }

    pub(super) fn error(
        &self,
        span: Range<usize>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> ManifestError {
        let Location { file, line, column } = self.location(span);
        ManifestError {
            file,
            line,
            column,
            message: message.into(),
            hint: hint.into(),
        }
    }

    /// A host path written in the manifest, resolved against the manifest's directory.
    fn host_path(&self, rel: &str) -> PathBuf {
        let base = self.path.parent().unwrap_or(Path::new(""));
        base.join(rel)
    }

    /// An `arch = [...]` list, each name as Debian's; `None` when not given.
    fn arch_list(
        &self,
        list: &Option<Vec<Spanned<String>>>,
    ) -> Result<Option<Vec<Arch>>, ManifestError> {
        let Some(list) = list else { return Ok(None) };
        let mut out = Vec::new();
        for a in list {
            out.push(self.arch(a)?);
        }
        Ok(Some(out))
    }

    /// An architecture, Debian's name or an OCI platform (`linux/arm64`).
    fn arch(&self, a: &Spanned<String>) -> Result<Arch, ManifestError> {
        Arch::parse(a.get_ref()).ok_or_else(|| {
            self.error(
                a.span(),
                format!("unknown architecture `{}`", a.get_ref()),
                format!("use a Debian architecture name: {}", Arch::known()),
            )
        })
    }

    /// An absolute, normalised image path in merged-usr form.
    fn image_path(
        &self,
        p: &Spanned<String>,
        merged_usr: bool,
        what: &str,
    ) -> Result<String, ManifestError> {
        let s = p.get_ref();
        if !s.starts_with('/') {
            return Err(self.error(
                p.span(),
                format!("{what} `{s}` is not an absolute path in the image"),
                format!(
                    "write it from the image root: `/{}`",
                    s.trim_start_matches("./")
                ),
            ));
        }
        if s.contains('\0') {
            return Err(self.error(p.span(), format!("{what} contains a NUL byte"), "remove it"));
        }
        let mut parts = Vec::new();
        for c in s.split('/') {
            match c {
                "" | "." => {}
                ".." => {
                    return Err(self.error(
                        p.span(),
                        format!("{what} `{s}` contains `..`"),
                        "write the path without `..` components",
                    ))
                }
                c => parts.push(c),
            }
        }
        let norm = format!("/{}", parts.join("/"));
        if merged_usr {
            if let Some(usr) = merged_usr_path(&norm) {
                if usr != norm && parts.len() > 1 {
                    return Err(self.error(
                        p.span(),
                        format!("{what} `{s}` is not in merged-usr form"),
                        format!(
                            "write `{usr}` (the image has /{} -> usr/{})",
                            parts[0], parts[0]
                        ),
                    ));
                }
            }
        }
        Ok(norm)
    }
}

#[cfg(test)]
mod tests {
    use crate::manifest::fixtures::{err, with, GOOD};

    #[test]
    fn relative_and_non_merged_paths_are_refused() {
        let e = err(&GOOD.replace(
            "\"/usr/lib/*-linux-gnu/libc.so.6\"",
            "\"usr/lib/libc.so.6\"",
        ));
        assert!(e.message.contains("not an absolute path"), "{e}");
        assert!(e.hint.contains("/usr/lib/libc.so.6"), "{e}");
        let e = err(&GOOD.replace("\"/usr/lib/*-linux-gnu/libc.so.6\"", "\"/lib/*/libc.so.6\""));
        assert!(e.message.contains("merged-usr"), "{e}");
        assert!(e.hint.contains("/usr/lib/*/libc.so.6"), "{e}");
        let e = err(&GOOD.replace("workdir = \"/home/cnb\"", "workdir = \"home\""));
        assert_eq!(e.line, 6, "{e}");
        let e = err(&with("[[file]]\npath = \"/etc/../x\"\ntext = \"\"\n"));
        assert!(e.message.contains("`..`"), "{e}");
    }

    #[test]
    fn duplicates_are_refused() {
        let e = err(&with("[[dir]]\npath = \"/tmp\"\n"));
        assert!(e.message.contains("declared twice"), "{e}");
        let e = err(&with("[[user]]\nname = \"cnb\"\nuid = 1\ngid = 1\n"));
        assert!(e.message.contains("defined twice"), "{e}");
        let e = err(&with("[package.libc6]\npaths = []\n"));
        assert!(e.message.contains("duplicate"), "{e}");
    }

    #[test]
    fn values_are_checked() {
        let e = err(&GOOD.replace("\"linux/arm64\"", "\"sparc\""));
        assert!(e.message.contains("unknown architecture"), "{e}");
        assert_eq!((e.line, e.column), (4, 27), "{e}");
        let e = err(&GOOD.replace("mode = \"1777\"", "mode = \"999\""));
        assert!(e.message.contains("not an octal"), "{e}");
        let e = err(&GOOD.replace("user = \"cnb\"", "user = \"nobody-here\""));
        assert!(e.message.contains("neither a [[user]]"), "{e}");
        let e = err(&GOOD.replace("keyring = \"Cargo.toml\"", "keyring = \"nope.gpg\""));
        assert!(e.message.contains("not found"), "{e}");
        let e = err(&with("[[file]]\npath = \"/x\"\n"));
        assert!(e.message.contains("exactly one of"), "{e}");
        let e = err(&GOOD.replace(
            "suites = [\"noble\", \"noble-updates\"]",
            "suites = [\"noble\"]\nsnapshot = \"2025\"",
        ));
        assert!(e.message.contains("not a timestamp"), "{e}");
        let e = err(&GOOD.replace("[package.libc6]", "[package.Libc6]"));
        assert!(e.message.contains("not a Debian package name"), "{e}");
    }
}
