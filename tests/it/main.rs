//! End-to-end tests: real builds, checked with tools nobody here wrote.

mod cross;
mod errors;
mod examples;
mod nonroot;
mod outputs;
mod push;
mod registry;
mod reproducible;
mod run;
mod static_check;
mod support;
mod test_images;
mod validate;
