//! scratchpack: turns a workspace's binaries into minimal, reproducible
//! `FROM scratch` OCI images, declared in `images.toml`.
//!
//! The engine behind `cargo xtask images`; a workspace's own xtask calls
//! [`cli::main`] and gets every command.

#![forbid(unsafe_code)]

pub mod action_cache;
pub mod build;
pub mod cli;
pub mod compile;
pub mod diagnostic;
pub mod digest;
pub mod elf;
pub mod gunzip;
pub mod manifest;
pub mod oci;
pub mod output;
pub mod partition;
pub mod platform;
pub mod record;
pub mod registry;
pub mod release;
pub mod shell;
#[cfg(target_os = "linux")]
pub mod testing;
pub mod toolchain;
#[cfg(target_os = "linux")]
pub mod unpack;
