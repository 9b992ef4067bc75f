//! `compose`: a declarative minimal rootfs composer.
//!
//! Data flows one way (docs/architecture.md): [`manifest`] → [`apt`] → [`fetch`] → [`deb`] →
//! [`rootfs`] → [`oci`], with [`build`] driving the pipeline; [`check`] reads an image
//! back through [`oci::read`]. The command line (`src/main.rs`) only parses arguments
//! and prints what these return.

pub mod apt;
pub mod arch;
pub mod check;
pub mod compression;
pub mod deb;
pub mod fetch;
pub mod interrupt;
pub mod lock;
pub mod manifest;
pub mod oci;
pub mod output;
pub mod parallel;
pub mod push;
pub mod repo;
pub mod retry;
pub mod rootfs;
pub mod sbom;
pub mod timings;

pub mod build;
pub mod error;
pub mod verify;

pub use error::Error;
