//! `[[file]]`, `[[dir]]` and `[[symlink]]`: image paths (absolute, normalised, in
//! merged-usr form), each declared once per architecture list; file content (inline
//! `text` or a host `source`, not read here), octal modes and symlink targets. Nothing
//! here touches the file system.

use std::collections::BTreeMap;
use std::ops::Range;

use serde_spanned::Spanned;

use super::Cx;
use crate::arch::Arch;
use crate::manifest::schema::{RawDir, RawFile, RawSymlink};
use crate::manifest::{DirSpec, FileContent, FileSpec, Location, ManifestError, SymlinkSpec};

/// The validated entries.
pub(super) struct Entries {
    pub(super) files: Vec<FileSpec>,
    pub(super) dirs: Vec<DirSpec>,
    pub(super) symlinks: Vec<SymlinkSpec>,
}

/// The paths declared so far, with their `arch` list, and where.
#[derive(Default)]
struct Claims(BTreeMap<(String, Option<Vec<Arch>>), Location>);

impl Claims {
    /// Refuse a path declared before with the same `arch` list.
    fn claim(
        &mut self,
        cx: &Cx,
        path: &str,
        arch: &Option<Vec<Arch>>,
        span: Range<usize>,
    ) -> Result<(), ManifestError> {
        let key = (path.to_string(), arch.clone());
        if let Some(first) = self.0.get(&key) {
            return Err(cx.error(
                span,
                format!("`{path}` is declared twice (first at {first})"),
                "declare each path once, or give the two different `arch` lists",
            ));
        }
        self.0.insert(key, cx.location(span));
        Ok(())
    }
}

impl Cx {
    /// The files, then the dirs, then the symlinks.
    pub(super) fn entries(
        &self,
        files: &[Spanned<RawFile>],
        dirs: &[Spanned<RawDir>],
        symlinks: &[Spanned<RawSymlink>],
        merged_usr: bool,
    ) -> Result<Entries, ManifestError> {
        let mut claims = Claims::default();
        let files = files
            .iter()
            .map(|f| self.file(f, merged_usr, &mut claims))
            .collect::<Result<_, _>>()?;
        let dirs = dirs
            .iter()
            .map(|d| self.dir(d.get_ref(), merged_usr, &mut claims))
            .collect::<Result<_, _>>()?;
        let symlinks = symlinks
            .iter()
            .map(|s| self.symlink(s.get_ref(), merged_usr, &mut claims))
            .collect::<Result<_, _>>()?;
        Ok(Entries {
            files,
            dirs,
            symlinks,
        })
    }

    fn file(
        &self,
        f: &Spanned<RawFile>,
        merged_usr: bool,
        claims: &mut Claims,
    ) -> Result<FileSpec, ManifestError> {
        let span = f.span();
        let fr = f.get_ref();
        let path = self.image_path(&fr.path, merged_usr, "file path")?;
        let arch = self.arch_list(&fr.arch)?;
        claims.claim(self, &path, &arch, fr.path.span())?;
        let content = match (&fr.text, &fr.source) {
            (Some(t), None) => FileContent::Text(t.clone()),
            (None, Some(s)) => FileContent::Source(self.host_path(s.span(), s.get_ref())),
            _ => {
                return Err(self.error(
                    span,
                    format!("[[file]] `{path}` needs exactly one of `text` and `source`"),
                    "text = \"…\" for inline content, source = \"host/path\" (relative to the manifest) for a host file",
                ))
            }
        };
        Ok(FileSpec {
            path,
            content,
            mode: self.mode(&fr.mode, 0o644)?,
            uid: fr.uid.unwrap_or(0),
            gid: fr.gid.unwrap_or(0),
            arch,
            location: self.location(span),
        })
    }

    fn dir(
        &self,
        dr: &RawDir,
        merged_usr: bool,
        claims: &mut Claims,
    ) -> Result<DirSpec, ManifestError> {
        let path = self.image_path(&dr.path, merged_usr, "dir path")?;
        let arch = self.arch_list(&dr.arch)?;
        claims.claim(self, &path, &arch, dr.path.span())?;
        Ok(DirSpec {
            path,
            mode: self.mode(&dr.mode, 0o755)?,
            uid: dr.uid.unwrap_or(0),
            gid: dr.gid.unwrap_or(0),
            arch,
        })
    }

    fn symlink(
        &self,
        sr: &RawSymlink,
        merged_usr: bool,
        claims: &mut Claims,
    ) -> Result<SymlinkSpec, ManifestError> {
        let path = self.image_path(&sr.path, merged_usr, "symlink path")?;
        let arch = self.arch_list(&sr.arch)?;
        claims.claim(self, &path, &arch, sr.path.span())?;
        let target = sr.target.get_ref();
        if target.is_empty() || target.contains('\0') {
            return Err(self.error(
                sr.target.span(),
                "symlink target is empty or contains NUL",
                "give the path the link points to",
            ));
        }
        Ok(SymlinkSpec {
            path,
            target: target.clone(),
            uid: sr.uid.unwrap_or(0),
            gid: sr.gid.unwrap_or(0),
            arch,
        })
    }

    /// An octal permission string (`"0644"`, `"0o755"`, `"1777"`), or `default`.
    fn mode(&self, m: &Option<Spanned<String>>, default: u32) -> Result<u32, ManifestError> {
        let Some(m) = m else { return Ok(default) };
        let s = m.get_ref();
        let digits = s.strip_prefix("0o").unwrap_or(s);
        match u32::from_str_radix(digits, 8) {
            Ok(v) if v <= 0o7777 && !digits.is_empty() => Ok(v),
            _ => Err(self.error(
                m.span(),
                format!("mode `{s}` is not an octal permission"),
                "write it as an octal string, e.g. mode = \"0644\" or \"1777\"",
            )),
        }
    }
}
