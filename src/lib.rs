//! `compose`: a declarative minimal rootfs composer.
//!
//! Data flows one way (DESIGN §6): [`manifest`] → [`apt`] → [`fetch`] → [`deb`] →
//! [`rootfs`] → [`oci`], with [`build`] driving the pipeline.

pub mod apt;
pub mod arch;
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
