//! End-to-end tests: real builds, checked with tools nobody here wrote.

mod c_toolchain;
mod cargo_config;
mod compression;
mod cross;
mod errors;
mod examples;
mod generated_code;
mod hostile_registry;
mod nonroot;
mod os_files;
mod outputs;
mod push;
mod registry;
mod release;
mod release_auditable;
mod release_oracles;
mod release_publish;
mod release_sbom;
mod reproducible;
mod run;
mod rust_std;
mod scale;
mod static_check;
mod support;
mod test_images;
mod validate;
