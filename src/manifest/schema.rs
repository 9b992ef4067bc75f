//! The manifest's schema as written in TOML: the `Raw*` structs serde reads, before any
//! check. Field names are the TOML keys (kebab-case); unknown keys are refused; values
//! that a later check may complain about keep their span ([`Spanned`]).
//!
//! Only the shape lives here: no value is checked (that is `super::validate`), and
//! nothing here touches the file system. Every key is optional at this level, so that a
//! base manifest (`[image] include`) may hold only part of an image; `super::include`
//! merges the files and `super::validate` requires what an image needs. `[generate]` is
//! read as its written switches, which `super::validate` checks against [`Generate`].

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_spanned::Spanned;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawManifest {
    #[serde(default)]
    pub(super) image: RawImage,
    #[serde(default)]
    pub(super) source: Vec<Spanned<RawSource>>,
    #[serde(default)]
    pub(super) package: BTreeMap<Spanned<String>, RawPackage>,
    /// The switches as written; a key left out takes its value from an included file,
    /// else from [`super::Generate::default`].
    #[serde(default)]
    pub(super) generate: BTreeMap<Spanned<String>, Spanned<bool>>,
    #[serde(default)]
    pub(super) user: Vec<Spanned<RawUser>>,
    #[serde(default)]
    pub(super) group: Vec<Spanned<RawGroup>>,
    #[serde(default)]
    pub(super) file: Vec<Spanned<RawFile>>,
    #[serde(default)]
    pub(super) dir: Vec<Spanned<RawDir>>,
    #[serde(default)]
    pub(super) symlink: Vec<Spanned<RawSymlink>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawImage {
    /// Base manifests merged under this one, relative to this file.
    #[serde(default)]
    pub(super) include: Vec<Spanned<String>>,
    pub(super) name: Option<Spanned<String>>,
    pub(super) architectures: Option<Vec<Spanned<String>>>,
    pub(super) merged_usr: Option<bool>,
    pub(super) user: Option<Spanned<String>>,
    pub(super) workdir: Option<Spanned<String>>,
    pub(super) entrypoint: Option<Vec<String>>,
    pub(super) cmd: Option<Vec<String>>,
    #[serde(default)]
    pub(super) env: BTreeMap<Spanned<String>, String>,
    #[serde(default)]
    pub(super) labels: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) annotations: BTreeMap<String, String>,
    pub(super) copyright: Option<bool>,
    pub(super) compression: Option<Spanned<String>>,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawSource {
    pub(super) url: Spanned<String>,
    #[serde(default)]
    pub(super) arch_url: BTreeMap<Spanned<String>, Spanned<String>>,
    pub(super) suites: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) components: Vec<Spanned<String>>,
    pub(super) keyring: Spanned<String>,
    pub(super) snapshot: Option<Spanned<String>>,
    pub(super) snapshot_url: Option<Spanned<String>>,
    pub(super) snapshot_fallback: Option<Spanned<bool>>,
}

#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawPackage {
    #[serde(default)]
    pub(super) paths: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) optional_paths: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) exclude: Vec<Spanned<String>>,
    pub(super) arch: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUser {
    pub(super) name: Spanned<String>,
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) home: Option<Spanned<String>>,
    pub(super) shell: Option<String>,
    pub(super) gecos: Option<String>,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGroup {
    pub(super) name: Spanned<String>,
    pub(super) gid: u32,
    #[serde(default)]
    pub(super) members: Vec<String>,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    pub(super) path: Spanned<String>,
    pub(super) text: Option<String>,
    pub(super) source: Option<Spanned<String>>,
    pub(super) mode: Option<Spanned<String>>,
    pub(super) uid: Option<u32>,
    pub(super) gid: Option<u32>,
    pub(super) arch: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDir {
    pub(super) path: Spanned<String>,
    pub(super) mode: Option<Spanned<String>>,
    pub(super) uid: Option<u32>,
    pub(super) gid: Option<u32>,
    pub(super) arch: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSymlink {
    pub(super) path: Spanned<String>,
    pub(super) target: Spanned<String>,
    pub(super) uid: Option<u32>,
    pub(super) gid: Option<u32>,
    pub(super) arch: Option<Vec<Spanned<String>>>,
}
