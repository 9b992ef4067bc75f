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

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde_spanned::Spanned;

use super::schema::RawManifest;
use super::{Generate, Included, Location, Manifest, ManifestError};
use crate::arch::Arch;
use crate::rootfs::merged_usr::merged_usr_path;

/// One file of a manifest: the manifest itself first, then each file it includes
/// (`[image] include`), each once.
pub(super) struct ManifestFile {
    /// The file as given, or as reached from the including file.
    pub(super) path: PathBuf,
    /// How the lock names an included file: its path from the manifest's directory,
    /// `/`-separated and without `.` or `a/..` (empty for the manifest itself).
    pub(super) name: String,
    pub(super) text: String,
    /// Where the file starts in the spans of the merged raw manifest: every file is
    /// parsed at its own offset (`super::include`), so a span names its file.
    pub(super) base: usize,
    /// Byte offsets where the lines of `text` start, in order (the first is 0).
    line_starts: Vec<usize>,
}

/// The manifest being validated: its files, for turning spans into
/// `file:line:column` and for resolving host paths.
pub(super) struct Cx {
    /// In span order; the manifest itself is the first, at offset 0.
    pub(super) files: Vec<ManifestFile>,
}

impl Cx {
    /// The context of `text`, read from `path`.
    pub(super) fn new(path: &Path, text: &str) -> Cx {
        let mut cx = Cx { files: Vec::new() };
        cx.add(path.to_path_buf(), String::new(), text.to_string());
        cx
    }

    /// Add a file after the others; its index.
    pub(super) fn add(&mut self, path: PathBuf, name: String, text: String) -> usize {
        let base = self.files.last().map_or(0, |f| f.base + f.text.len() + 1);
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        self.files.push(ManifestFile {
            path,
            name,
            text,
            base,
            line_starts,
        });
        self.files.len() - 1
    }

    /// The file a span offset falls in.
    fn file_at(&self, offset: usize) -> &ManifestFile {
        let i = self.files.partition_point(|f| f.base <= offset);
        &self.files[i.saturating_sub(1)]
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
        let merged_usr = image.merged_usr.unwrap_or(true);
        let image_user = image.user.clone();
        let image = self.image(image)?;
        let sources = self.sources(&source)?;
        let packages = self.packages(&package, merged_usr)?;
        let generate = self.generate(&generate)?;
        let (groups, users) = self.accounts(&group, &user, image_user.as_ref(), merged_usr)?;
        let entries = self.entries(&file, &dir, &symlink, merged_usr)?;
        let root = &self.files[0];
        Ok(Manifest {
            path: root.path.clone(),
            text: root.text.clone(),
            includes: self.files[1..]
                .iter()
                .map(|f| Included {
                    name: f.name.clone(),
                    path: f.path.clone(),
                    text: f.text.clone(),
                })
                .collect(),
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

    /// `[generate]`: each written switch must be one of [`Generate`]'s (checked one by
    /// one, so that an unknown key is named at its place); the others keep their default.
    fn generate(
        &self,
        raw: &BTreeMap<Spanned<String>, Spanned<bool>>,
    ) -> Result<Generate, ManifestError> {
        let read = |table: toml::Table, span: Range<usize>| {
            toml::Value::Table(table)
                .try_into::<Generate>()
                .map_err(|e| {
                    let message = e.message().trim().to_string();
                    let hint = super::toml_hint(&message);
                    self.error(span, message, hint)
                })
        };
        let mut all = toml::Table::new();
        for (key, value) in raw {
            let one = toml::Table::from_iter([(
                key.get_ref().clone(),
                toml::Value::Boolean(*value.get_ref()),
            )]);
            read(one, key.span())?;
            all.insert(
                key.get_ref().clone(),
                toml::Value::Boolean(*value.get_ref()),
            );
        }
        read(all, 0..0)
    }

    /// `file:line:column` of the start of `span`: a binary search of the files and of
    /// the line starts, so that locating every entry of a long manifest stays n·log n.
    pub(super) fn location(&self, span: Range<usize>) -> Location {
        let f = self.file_at(span.start);
        let start = (span.start - f.base).min(f.text.len());
        // The last line starting at or before `start`.
        let line = f.line_starts.partition_point(|&s| s <= start);
        let line_start = f.line_starts[line - 1];
        let column = f.text[line_start..start].chars().count() + 1;
        Location {
            file: f.path.clone(),
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

    /// A host path written in the manifest (at `span`), resolved against the directory
    /// of the file it is written in.
    fn host_path(&self, span: Range<usize>, rel: &str) -> PathBuf {
        let base = self
            .file_at(span.start)
            .path
            .parent()
            .unwrap_or(Path::new(""));
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
