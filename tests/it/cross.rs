//! Cross-compiling for a foreign platform: pure-Rust crates link with
//! rust-lld alone; a crate that compiles C code gets a clear error naming the
//! C cross compiler it needs.

use crate::support::{Fixture, HELLO_MAIN};

#[test]
fn a_crate_with_c_code_names_the_cross_compiler_it_needs() {
    let fx = Fixture::new(
        &[("native", HELLO_MAIN)],
        "[images.native]\npackage = \"native\"\nplatforms = [\"linux/arm64\"]\n",
    );
    let krate = fx.path().join("crates/native");
    // cc pinned to the version this workspace locks, whose message about a
    // missing compiler the assertion below reads.
    std::fs::write(
        krate.join("Cargo.toml"),
        "[package]\nname = \"native\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n\
         [build-dependencies]\ncc = \"=1.11.1\"\n",
    )
    .unwrap();
    std::fs::write(
        krate.join("build.rs"),
        "fn main() { cc::Build::new().file(\"add.c\").compile(\"add\"); }\n",
    )
    .unwrap();
    std::fs::write(
        krate.join("add.c"),
        "int add(int a, int b) { return a + b; }\n",
    )
    .unwrap();

    let out = crate::support::run(
        crate::support::cli()
            .current_dir(fx.path())
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("CC_aarch64_unknown_linux_musl")
            .env_remove("CC")
            .args(["images"]),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("needs the C cross compiler `aarch64-linux-musl-gcc`"),
        "{stderr}"
    );
    assert!(stderr.contains("CC_aarch64_unknown_linux_musl"), "{stderr}");
    assert!(!fx.path().join("target/images/native").exists());
}
