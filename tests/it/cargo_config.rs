//! Rust flags a workspace sets in cargo's configuration reach rustc in
//! image builds, as `cargo build` would apply them, with scratchpack's own
//! flags (path remaps, static linking) still added.

use crate::support::{Fixture, logging_wrapper, run};

/// Refuses to compile unless `--cfg x` was given.
const GUARDED_MAIN: &str = "#[cfg(not(x))]\ncompile_error!(\"built without --cfg x\");\n\
                            fn main() { println!(\"built with --cfg x\"); }\n";

/// A form of the flag: its name, the config file, and a variable instead.
type Form = (
    &'static str,
    &'static str,
    Option<(&'static str, &'static str)>,
);

#[test]
fn every_form_of_configured_rustflags_applies_with_scratchpacks_own() {
    let fx = Fixture::new(
        &[("guarded", GUARDED_MAIN)],
        "[images.guarded]\npackage = \"guarded\"\nplatforms = [\"linux/amd64\"]\n",
    );
    let config = fx.path().join(".cargo/config.toml");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    // Without the flag the crate does not compile.
    let out = fx.cli(&["images", "guarded"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("built without --cfg x"), "{stderr}");
    let logs = tempfile::tempdir().unwrap();
    // Each form in turn, alone: written in the workspace's config file, or
    // given as cargo's variable for it.
    let forms: [Form; 6] = [
        (
            "build, array",
            "[build]\nrustflags = [\"--cfg\", \"x\"]\n",
            None,
        ),
        ("build, string", "[build]\nrustflags = \"--cfg x\"\n", None),
        (
            "target.<triple>",
            "[target.x86_64-unknown-linux-musl]\nrustflags = [\"--cfg\", \"x\"]\n",
            None,
        ),
        (
            "target.'cfg(…)'",
            "[target.'cfg(all(target_env = \"musl\", target_arch = \"x86_64\"))']\n\
             rustflags = [\"--cfg\", \"x\"]\n",
            None,
        ),
        (
            "CARGO_BUILD_RUSTFLAGS",
            "",
            Some(("CARGO_BUILD_RUSTFLAGS", "--cfg x")),
        ),
        (
            "CARGO_TARGET_<T>_RUSTFLAGS",
            "",
            Some((
                "CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_RUSTFLAGS",
                "--cfg x",
            )),
        ),
    ];
    let main = fx.path().join("crates/guarded/src/main.rs");
    for (i, (form, file, var)) in forms.into_iter().enumerate() {
        std::fs::write(&config, file).unwrap();
        // Two forms give the same flags: a changed source has cargo
        // compile the binary again either way.
        std::fs::write(&main, format!("{GUARDED_MAIN}// {form}\n")).unwrap();
        let log = logs.path().join(format!("{i}.log"));
        let wrapper = logging_wrapper(logs.path(), &log);
        let mut env = vec![("RUSTC_WRAPPER", wrapper.to_str().unwrap())];
        env.extend(var);
        let out = fx.cli_env(&["images", "guarded"], &env);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{form}: {stderr}");
        let text = std::fs::read_to_string(&log).unwrap();
        let line = text
            .lines()
            .find(|l| l.contains("--crate-name guarded") && l.contains("--target"))
            .unwrap_or_else(|| panic!("{form}: rustc never compiled the binary:\n{text}"));
        assert!(line.contains("--cfg x"), "{form}: {line}");
        for own in [
            format!("--remap-path-prefix={}=/workspace", fx.path().display()),
            "-Ctarget-feature=+crt-static".to_owned(),
        ] {
            assert!(line.contains(&own), "{form}: no `{own}` in {line}");
        }
    }
    // The binary is the one the flag let compile.
    let bin = scratchpack::compile::build_dir(&fx.path().join("target"))
        .join("x86_64-unknown-linux-musl/release/guarded");
    let out = run(&mut std::process::Command::new(bin));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "built with --cfg x\n");
}
