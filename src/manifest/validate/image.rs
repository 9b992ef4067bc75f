//! `[image]`: the tag, the architectures, the working directory, the environment and
//! the layer compression are checked here; the rest of the table is taken as written. (`user` is checked with
//! the accounts, which it may name.) Nothing here touches the file system.

use std::collections::BTreeMap;

use serde_spanned::Spanned;

use super::Cx;
use crate::manifest::schema::RawImage;
use crate::manifest::{Image, ManifestError};

impl Cx {
    pub(super) fn image(&self, raw: RawImage) -> Result<Image, ManifestError> {
        let merged_usr = raw.merged_usr.unwrap_or(true);
        let Some(raw_name) = &raw.name else {
            return Err(self.error(
                0..0,
                "the manifest names no image: [image] has no `name` (nor has a file it includes)",
                "add name = \"my-image\" under [image]",
            ));
        };
        let name = raw_name.get_ref();
        let valid_tag = !name.is_empty()
            && name.len() <= 128
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            && !name.starts_with(['.', '-']);
        if !valid_tag {
            return Err(self.error(
                raw_name.span(),
                format!("image name `{name}` is not usable as a tag"),
                "use letters, digits, `.`, `_` and `-` (at most 128, not starting with `.` or `-`)",
            ));
        }
        let mut architectures = Vec::new();
        for a in raw.architectures.iter().flatten() {
            let a2 = self.arch(a)?;
            if architectures.contains(&a2) {
                return Err(self.error(
                    a.span(),
                    format!("architecture `{a2}` is listed twice"),
                    "list each architecture once",
                ));
            }
            architectures.push(a2);
        }
        let workdir = match &raw.workdir {
            Some(w) => Some(self.image_path(w, merged_usr, "workdir")?),
            None => None,
        };
        let env = self.env(raw.env)?;
        let compression = match &raw.compression {
            Some(c) => Some(crate::oci::Compressor::parse(c.get_ref()).map_err(|e| {
                self.error(
                    c.span(),
                    e,
                    "write compression = \"gzip\", \"zstd\" or one with a level, e.g. \"zstd:9\"",
                )
            })?),
            None => None,
        };
        Ok(Image {
            name: name.clone(),
            architectures,
            merged_usr,
            user: raw.user.map(Spanned::into_inner),
            workdir,
            entrypoint: raw.entrypoint,
            cmd: raw.cmd,
            env,
            labels: raw.labels,
            annotations: raw.annotations,
            copyright: raw.copyright.unwrap_or(true),
            compression,
        })
    }

    fn env(
        &self,
        raw: BTreeMap<Spanned<String>, String>,
    ) -> Result<BTreeMap<String, String>, ManifestError> {
        let mut env = BTreeMap::new();
        for (k, v) in raw {
            if k.get_ref().is_empty() || k.get_ref().contains('=') {
                return Err(self.error(
                    k.span(),
                    format!("environment variable name `{}` is not valid", k.get_ref()),
                    "names may not be empty or contain `=`",
                ));
            }
            env.insert(k.into_inner(), v);
        }
        Ok(env)
    }
}
