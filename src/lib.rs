//! `compose`: a declarative minimal rootfs composer.
//!
//! Data flows one way (docs/architecture.md): [`manifest`] → [`repo`] (over [`apt`] and
//! [`fetch`], with [`snapshot`] saying where a dropped pinned `.deb` is kept) → [`deb`] → [`rootfs`] → [`oci`] and [`output`], with [`build`] sequencing
//! the stages and [`lock`] and [`sbom`] beside them; [`check`] reads an image back
//! through [`oci::read`]. Every single-file output (the lock, the SBOM, an image archive)
//! is replaced through [`atomic`]; archive text in messages goes through [`text`]. The command line (`src/main.rs`) only parses
//! arguments and prints what these return.

#![warn(missing_docs)]

pub mod apt;
pub mod arch;
pub mod atomic;
pub mod check;
pub mod compression;
pub mod deb;
pub mod diff;
pub mod fetch;
pub mod fix;
pub mod image_ref;
pub mod interrupt;
pub mod lock;
pub mod manifest;
pub mod many;
pub mod oci;
pub mod outdated;
pub mod output;
pub mod parallel;
pub mod push;
pub mod registry;
pub mod repo;
pub mod retry;
pub mod rootfs;
pub mod sbom;
pub mod snapshot;
pub mod suggest;
pub mod summary;
pub mod temporary;
pub mod text;
pub mod timings;

pub mod build;
pub mod changelog;
pub mod error;
pub mod verify;

pub use error::Error;
