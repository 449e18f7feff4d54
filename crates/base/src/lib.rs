//! The lower layers of scratchpack, the engine behind `cargo xtask images`:
//! OCI images as values, the registry protocol that sends and reads them,
//! and the toolchain, every program the engine runs (cargo, rustc, git, the
//! C compilers) with the environment they read. Nothing here knows
//! `images.toml` or a build plan.
//!
//! A workspace uses these through the `scratchpack` crate, which re-exports
//! every module under the same name; this crate is apart so that it
//! compiles while the layers above it are still being read.

#![forbid(unsafe_code)]

pub mod diagnostic;
pub mod digest;
pub mod elf;
pub mod gunzip;
pub mod oci;
pub mod output;
pub mod platform;
pub mod record;
pub mod registry;
pub mod shell;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod toolchain;
