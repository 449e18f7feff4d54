//! Fixtures the engine's tests share across its two crates: compiled for
//! this crate's own tests, and for the engine's through the `testkit`
//! feature its dev-dependency turns on. Nothing here runs in a build.

pub mod elf;
pub mod oci;
