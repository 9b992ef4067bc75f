//! The image's file system: selection of package files, the virtual tree, generated
//! files, scanner metadata and the linkage check.

pub mod tree;
