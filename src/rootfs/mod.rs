//! The image's file system: selection of package files, the virtual tree, generated
//! files and scanner metadata, the linkage check, and `--rootfs` export.

pub mod compose;
pub mod export;
pub mod generate;
pub mod linkage;
pub mod select;
pub mod tree;
