//! `compose`: a declarative minimal rootfs composer.
//!
//! Data flows one way: [`manifest`] → [`apt`] → [`fetch`] → [`deb`] → [`rootfs`] →
//! [`oci`], with [`build`] driving the pipeline; every single-file output (the lock, the
//! SBOM, an image archive) is replaced through [`atomic`].

pub mod apt;
pub mod atomic;
pub mod deb;
pub mod fetch;
pub mod interrupt;
pub mod lock;
pub mod manifest;
pub mod oci;
pub mod push;
pub mod retry;
pub mod rootfs;
pub mod sbom;
pub mod timings;

pub mod build;
pub mod error;

pub use error::Error;
