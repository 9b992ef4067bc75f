//! The image's file system: selection of package files, the merged-usr rules, the
//! virtual tree, generated files and scanner metadata, the linkage check and the
//! `--rootfs` export. Each submodule says what it owns; this file only lists them.

pub mod compose;
pub mod export;
pub mod generate;
pub mod linkage;
pub mod merged_usr;
pub mod select;
pub mod tree;
