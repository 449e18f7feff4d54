//! scratchpack: turns a workspace's binaries into minimal, reproducible
//! `FROM scratch` OCI images, declared in `images.toml`.
//!
//! The engine behind `cargo xtask images`; a workspace's own xtask calls
//! [`cli::main`] and gets every command.

#![forbid(unsafe_code)]

// The lower layers, from `scratchpack-base`, under the same names.
pub use scratchpack_base::{
    diagnostic, digest, elf, gunzip, oci, output, platform, record, registry, shell, toolchain,
};

pub mod action_cache;
pub mod build;
pub mod cli;
pub mod compile;
pub mod manifest;
pub mod partition;
pub mod release;
#[cfg(target_os = "linux")]
pub mod testing;
#[cfg(target_os = "linux")]
pub mod unpack;
