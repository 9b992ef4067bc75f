//! `[package.NAME]`: Debian package names, and the glob patterns of `paths`,
//! `optional-paths` and `exclude` (absolute, no `..`, in merged-usr form, each once per
//! package), compiled to matchers. Nothing here touches the file system.

use std::collections::{BTreeMap, BTreeSet};

use globset::{Glob, GlobBuilder};
use serde_spanned::Spanned;

use super::Cx;
use crate::manifest::schema::RawPackage;
use crate::manifest::{ManifestError, Package, Pattern};
use crate::rootfs::merged_usr::is_merged_top;

impl Cx {
    /// At least one package; sorted by name (the TOML table's order).
    pub(super) fn packages(
        &self,
        raw: &BTreeMap<Spanned<String>, RawPackage>,
        merged_usr: bool,
    ) -> Result<Vec<Package>, ManifestError> {
        let mut packages = Vec::new();
        for (name, p) in raw {
            packages.push(self.package(name, p, merged_usr)?);
        }
        if packages.is_empty() {
            return Err(self.error(
                0..0,
                "the manifest declares no packages",
                "add at least one [package.NAME] table",
            ));
        }
        Ok(packages)
    }

    fn package(
        &self,
        name: &Spanned<String>,
        p: &RawPackage,
        merged_usr: bool,
    ) -> Result<Package, ManifestError> {
        let n = name.get_ref();
        let valid = n.len() >= 2
            && n.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b))
            && n.as_bytes()[0].is_ascii_alphanumeric();
        if !valid {
            return Err(self.error(
                name.span(),
                format!("`{n}` is not a Debian package name"),
                "package names are lowercase letters, digits, `+`, `-` and `.`; quote names with `+`: [package.\"libstdc++6\"]",
            ));
        }
        let mut seen = BTreeSet::new();
        let mut pats = |list: &Vec<Spanned<String>>| -> Result<Vec<Pattern>, ManifestError> {
            let mut out = Vec::new();
            for x in list {
                if !seen.insert(x.get_ref().clone()) {
                    return Err(self.error(
                        x.span(),
                        format!("pattern `{}` is given twice for package {n}", x.get_ref()),
                        "remove the duplicate",
                    ));
                }
                out.push(self.pattern(x, merged_usr)?);
            }
            Ok(out)
        };
        let paths = pats(&p.paths)?;
        let optional_paths = pats(&p.optional_paths)?;
        let exclude = pats(&p.exclude)?;
        Ok(Package {
            name: n.clone(),
            paths,
            optional_paths,
            exclude,
            arch: self.arch_list(&p.arch)?,
            location: self.location(name.span()),
        })
    }

    fn pattern(&self, p: &Spanned<String>, merged_usr: bool) -> Result<Pattern, ManifestError> {
        let text = p.get_ref();
        if !text.starts_with('/') {
            return Err(self.error(
                p.span(),
                format!("pattern `{text}` is not an absolute path in the image"),
                format!(
                    "patterns start at the image root: `/{}`",
                    text.trim_start_matches("./")
                ),
            ));
        }
        if text.split('/').any(|c| c == "..") {
            return Err(self.error(
                p.span(),
                format!("pattern `{text}` contains `..`"),
                "write the pattern without `..` components",
            ));
        }
        if merged_usr {
            let first = text.split('/').nth(1).unwrap_or("");
            if text.split('/').count() > 2 && is_merged_top(first) {
                return Err(self.error(
                    p.span(),
                    format!("pattern `{text}` is not in merged-usr form"),
                    format!("write `/usr{text}` (the image has /{first} -> usr/{first})"),
                ));
            }
        }
        let glob: Glob = GlobBuilder::new(text)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .map_err(|e| {
                self.error(
                    p.span(),
                    format!("bad glob `{text}`: {}", e.kind()),
                    "globs: `*` and `?` stay within one path component, `**` crosses `/`, `{a,b}` alternates",
                )
            })?;
        Ok(Pattern {
            text: text.clone(),
            matcher: glob.compile_matcher(),
            location: self.location(p.span()),
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::manifest::fixtures::{err, GOOD};

    #[test]
    fn bad_glob_is_an_error_with_location() {
        let e = err(&GOOD.replace("libc.so.6\"]", "libc.so.{6\"]"));
        assert_eq!(e.line, 16, "{e}");
        assert!(e.message.contains("bad glob"), "{e}");
    }
}
