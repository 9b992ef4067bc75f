//! The manifest's schema as written in TOML: the `Raw*` structs serde reads, before any
//! check. Field names are the TOML keys (kebab-case); unknown keys are refused; values
//! that a later check may complain about keep their span ([`Spanned`]).
//!
//! Only the shape lives here: no value is checked (that is `super::validate`), and
//! nothing here touches the file system. `[generate]` is read straight into
//! [`Generate`], whose fields are the switches.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_spanned::Spanned;

use super::Generate;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawManifest {
    pub(super) image: RawImage,
    #[serde(default)]
    pub(super) source: Vec<Spanned<RawSource>>,
    #[serde(default)]
    pub(super) package: BTreeMap<Spanned<String>, RawPackage>,
    #[serde(default)]
    pub(super) generate: Generate,
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawImage {
    pub(super) name: Spanned<String>,
    #[serde(default)]
    pub(super) architectures: Vec<Spanned<String>>,
    #[serde(default = "yes")]
    pub(super) merged_usr: bool,
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
    #[serde(default = "yes")]
    pub(super) copyright: bool,
    pub(super) compression: Option<Spanned<String>>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
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

#[derive(Debug, Default, Deserialize)]
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUser {
    pub(super) name: Spanned<String>,
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) home: Option<Spanned<String>>,
    pub(super) shell: Option<String>,
    pub(super) gecos: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGroup {
    pub(super) name: Spanned<String>,
    pub(super) gid: u32,
    #[serde(default)]
    pub(super) members: Vec<String>,
}

#[derive(Debug, Deserialize)]
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDir {
    pub(super) path: Spanned<String>,
    pub(super) mode: Option<Spanned<String>>,
    pub(super) uid: Option<u32>,
    pub(super) gid: Option<u32>,
    pub(super) arch: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSymlink {
    pub(super) path: Spanned<String>,
    pub(super) target: Spanned<String>,
    pub(super) uid: Option<u32>,
    pub(super) gid: Option<u32>,
    pub(super) arch: Option<Vec<Spanned<String>>>,
}
