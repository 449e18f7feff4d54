//! From build to deploy, end to end: tags made from the release (templates
//! and `--tag`), the source annotations, `--image-refs`, `resolve`, `load`,
//! `tag`, the Skaffold and Tilt recipes, images with several binaries, and
//! a registry cache entry used across commits; checked with skopeo, the
//! CNCF registry, podman and PyYAML.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::registry::server::{Registry, have_tool, have_tools, skopeo};
use crate::release_oracles::oracles;
use crate::scale::{clone, git, repository, xtask};
use crate::support::{self, Fixture, HELLO_MAIN, Podman, compiled, logging_wrapper, run};
use crate::validate;

const TOOL_MAIN: &str = "fn main() { println!(\"a tool beside the server\"); }\n";

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs the CLI in `dir` with `args`, no registry credentials but the
/// test's, and `env` added.
fn cli_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let no_docker_config = tempfile::tempdir().unwrap();
    run(support::cli()
        .current_dir(dir)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("SCRATCHPACK_REGISTRY_USERNAME")
        .env_remove("SCRATCHPACK_REGISTRY_PASSWORD")
        .env("DOCKER_CONFIG", no_docker_config.path())
        .envs(env.iter().copied())
        .args(args))
}

/// `skopeo inspect --raw` of `reference` on the plain-HTTP test registry,
/// as JSON.
fn raw_manifest(reference: &str) -> serde_json::Value {
    let out = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--raw",
        &format!("docker://{reference}"),
    ]);
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The image's tags in the registry, as skopeo lists them, sorted.
fn listed_tags(reference: &str) -> Vec<String> {
    let out = skopeo(&[
        "list-tags",
        "--tls-verify=false",
        &format!("docker://{reference}"),
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut tags: Vec<String> = v["Tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    tags.sort();
    tags
}

/// A git repository of one `app` package at version 0.4.2, tagged
/// `v0.4.2`, whose origin is an HTTPS URL with credentials in it.
fn released(images_toml: &str) -> Fixture {
    let fx = Fixture::new(&[("app", HELLO_MAIN)], images_toml);
    let manifest = fx.path().join("crates/app/Cargo.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, text.replace("0.1.0", "0.4.2")).unwrap();
    git(fx.path(), &["init", "-q", "-b", "main"]);
    git(fx.path(), &["add", "-A"]);
    git(fx.path(), &["commit", "-q", "-m", "release"]);
    git(fx.path(), &["tag", "v0.4.2"]);
    git(
        fx.path(),
        &[
            "remote",
            "add",
            "origin",
            "https://ci:s3cr3t@git.example/acme/app.git",
        ],
    );
    fx
}

fn head(dir: &Path) -> String {
    let out = run(Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(dir));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// skopeo sees the tags made from templates and the source annotations on
/// the index and on every platform manifest; `--image-refs` names the
/// pushed digest; a tree with changes not committed records no revision,
/// says so, and skips the tags that name a commit.
#[test]
fn templated_tags_and_source_annotations_reach_the_registry() {
    if !have_tools() {
        return;
    }
    let registry = Registry::start();
    let fx = released(&format!(
        "[defaults]\nregistry = \"{}\"\ninsecure = true\n\
         platforms = [\"linux/amd64\", \"linux/arm64\"]\n\n\
         [images.app]\npackage = \"app\"\n\
         tags = [\"{{version}}\", \"sha-{{git.short}}\", \"{{git.tag}}\", \"{{git.branch}}\"]\n",
        registry.host()
    ));
    let commit = head(fx.path());
    let refs = fx.path().join("refs.txt");
    let out = cli_in(
        fx.path(),
        &["push", "--image-refs", refs.to_str().unwrap()],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let repo = format!("{}/app", registry.host());
    let short = &commit[..7];
    let mut want = vec![
        "0.4.2".to_owned(),
        "main".to_owned(),
        format!("sha-{short}"),
        "v0.4.2".to_owned(),
    ];
    want.sort();
    assert_eq!(listed_tags(&repo), want);
    let index = raw_manifest(&format!("{repo}:v0.4.2"));
    let annotations = &index["annotations"];
    assert_eq!(annotations["org.opencontainers.image.revision"], commit);
    assert_eq!(
        annotations["org.opencontainers.image.source"], "https://git.example/acme/app.git",
        "credentials are stripped"
    );
    assert_eq!(annotations["org.opencontainers.image.version"], "0.4.2");
    assert_eq!(
        annotations["org.opencontainers.image.created"],
        "1970-01-01T00:00:00Z"
    );
    for m in index["manifests"].as_array().unwrap() {
        let digest = m["digest"].as_str().unwrap();
        let manifest = raw_manifest(&format!("{repo}@{digest}"));
        assert_eq!(manifest["annotations"], *annotations);
    }
    // skopeo's own view of a templated tag: the repository's tags, and the
    // image the tag names.
    let inspected = skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{repo}:sha-{short}"),
    ]);
    let inspected: serde_json::Value = serde_json::from_slice(&inspected.stdout).unwrap();
    let mut repo_tags: Vec<String> = inspected["RepoTags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    repo_tags.sort();
    assert_eq!(repo_tags, want);
    let pushed = index_digest(&repo);
    assert_eq!(
        std::fs::read_to_string(&refs).unwrap(),
        format!("{repo}@{pushed}\n")
    );

    // Uncommitted changes: no revision, said once; the commit's tags are
    // skipped, one line each.
    let main = fx.path().join("crates/app/src/main.rs");
    std::fs::write(&main, format!("{HELLO_MAIN}// changed\n")).unwrap();
    let out = cli_in(fx.path(), &["images", "--message-format", "json"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("changes not committed"), "{err}");
    assert!(
        err.contains("Skipping tag `sha-{git.short}` of `app`"),
        "{err}"
    );
    let built = &support::built_images(&out)[0];
    assert_eq!(built["tags"], serde_json::json!(["0.4.2", "main"]));
    let layout = validate::layout(Path::new(built["layout"].as_str().unwrap()));
    assert_ne!(layout.top_digest, pushed);
    let index: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            Path::new(built["layout"].as_str().unwrap())
                .join("blobs/sha256")
                .join(layout.top_digest.strip_prefix("sha256:").unwrap()),
        )
        .unwrap(),
    )
    .unwrap();
    assert!(
        index["annotations"]
            .get("org.opencontainers.image.revision")
            .is_none(),
        "{index}"
    );
}

/// The digest the registry's tag `v0.4.2` points at.
fn index_digest(repo: &str) -> String {
    let out = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--raw",
        &format!("docker://{repo}:v0.4.2"),
    ]);
    crate::registry::image::sha256(&out.stdout)
}

/// A run that changes only the tags, in images.toml or with `--tag`,
/// starts no compiler and packs no layer: the layout and archive are named
/// anew.
#[test]
fn changing_only_tags_compiles_and_packs_nothing() {
    let fx = Fixture::new(
        &[("app", HELLO_MAIN)],
        "[images.app]\npackage = \"app\"\ntags = [\"latest\"]\n",
    );
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("rustc.log");
    let wrapper = logging_wrapper(logs.path(), &log);
    let json = ["images", "--message-format", "json"];
    let (first, _) = xtask(fx.path(), &wrapper, &json);
    assert!(first.status.success());
    assert!(compiled(&log).contains(&"app".to_owned()));
    let built = &support::built_images(&first)[0];
    let layer = Path::new(built["layout"].as_str().unwrap())
        .join("blobs/sha256")
        .join(
            built["platforms"][0]["layer"]
                .as_str()
                .unwrap()
                .strip_prefix("sha256:")
                .unwrap(),
        );
    let inode = |p: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
    let layer_inode = inode(&layer);

    for (toml, args) in [
        ("tags = [\"latest\", \"1.0\"]", &json[..]),
        (
            "tags = [\"latest\", \"1.0\"]",
            &["images", "--tag", "dev"][..],
        ),
    ] {
        std::fs::write(
            fx.path().join("images.toml"),
            format!("[images.app]\npackage = \"app\"\n{toml}\n"),
        )
        .unwrap();
        std::fs::remove_file(&log).ok();
        let (out, _) = xtask(fx.path(), &wrapper, args);
        assert!(out.status.success());
        assert_eq!(
            compiled(&log),
            Vec::<String>::new(),
            "rustc ran for {args:?}"
        );
        let err = stderr(&out);
        assert!(err.contains("Tagged app"), "{err}");
        assert!(!err.contains("Packed"), "{err}");
        assert_eq!(inode(&layer), layer_inode, "the layer was written again");
    }
    let archive = fx.path().join("target/images/app.tar");
    let names = Command::new("tar")
        .args(["-xOf"])
        .arg(&archive)
        .arg("manifest.json")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&names.stdout).contains("\"app:dev\""),
        "{names:?}"
    );
    validate::layout(&fx.path().join("target/images/app"));
}

/// A bad tag on the command line is a usage error naming it, before
/// anything is built.
#[test]
fn a_bad_tag_on_the_command_line_is_refused() {
    let fx = Fixture::new(&[("app", HELLO_MAIN)], "[images.app]\npackage = \"app\"\n");
    let out = fx.cli(&["images", "--tag", "v1/2"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("`v1/2` is not a tag"),
        "{}",
        stderr(&out)
    );
    assert!(!fx.path().join("target/images").exists());
}

const DEPLOYMENT: &str = r#"# The web tier, as Helm would render it.
apiVersion: apps/v1
kind: Deployment
metadata: {name: app, labels: {tier: "web"}}   # flow style kept
spec:
  template:
    spec:
      containers:
        - name: app
          image: scratchpack://app
          args: ['--peer', "scratchpack://app:canary"]
---
# scratchpack://app in a comment is left as it is.
apiVersion: v1
kind: ConfigMap
data:
  note: "plain text"
"#;

/// `resolve` pushes what the YAML names and prints it with each reference
/// pinned by digest, every other byte as it was; PyYAML reads the result
/// and skopeo pulls every reference in it.
#[test]
fn resolve_pins_every_reference_and_keeps_every_other_byte() {
    if !have_tools() {
        return;
    }
    let Some(oracles) = oracles() else { return };
    let registry = Registry::start();
    let fx = Fixture::new(
        &[("app", HELLO_MAIN)],
        "[images.app]\npackage = \"app\"\nplatforms = [\"linux/amd64\", \"linux/arm64\"]\n",
    );
    let dir = fx.path().join("deploy");
    std::fs::create_dir_all(dir.join("web")).unwrap();
    std::fs::write(dir.join("web/app.yaml"), DEPLOYMENT).unwrap();
    std::fs::write(dir.join("README.md"), "not read\n").unwrap();
    let refs = fx.path().join("refs.txt");
    let out = cli_in(
        fx.path(),
        &[
            "resolve",
            "-f",
            dir.to_str().unwrap(),
            "--registry",
            &registry.host(),
            "--insecure",
            "--image-refs",
            refs.to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let pinned = std::fs::read_to_string(&refs).unwrap();
    let pinned = pinned.trim();
    assert!(
        pinned.starts_with(&format!("{}/app@sha256:", registry.host())),
        "{pinned}"
    );
    let printed = stdout(&out);
    assert_eq!(
        printed,
        DEPLOYMENT
            .replace("image: scratchpack://app\n", &format!("image: {pinned}\n"))
            .replace("\"scratchpack://app:canary\"", &format!("\"{pinned}\""))
    );
    let resolved = fx.path().join("resolved.yaml");
    std::fs::write(&resolved, &printed).unwrap();
    let parsed = oracles.check(&[&"yaml", &resolved]);
    assert!(parsed.status.success(), "{}", stderr(&parsed));
    let docs: serde_json::Value =
        serde_json::from_str(stdout(&parsed).lines().next().unwrap()).unwrap();
    let container = &docs[0]["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], pinned);
    assert_eq!(container["args"][1], pinned);
    assert_eq!(docs[1]["data"]["note"], "plain text");
    let (_keep, copy) = crate::registry::server::copy_to_layout(pinned, None);
    let copied = validate::layout(&copy);
    assert_eq!(
        format!("{}/app@{}", registry.host(), copied.top_digest),
        pinned
    );
    // `:canary` pushed the image under that tag as well.
    assert!(listed_tags(&format!("{}/app", registry.host())).contains(&"canary".to_owned()));
}

/// A file that is not YAML, and a name images.toml lacks, are usage errors
/// naming the file (and line), with nothing printed or built.
#[test]
fn resolve_refuses_what_is_not_yaml_and_unknown_names() {
    let fx = Fixture::new(&[("app", HELLO_MAIN)], "[images.app]\npackage = \"app\"\n");
    std::fs::write(fx.path().join("bad.yaml"), "spec: [unclosed\nkind: x\n").unwrap();
    let out = fx.cli(&["resolve", "-f", "bad.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("bad.yaml:2:5: not YAML"), "{err}");
    assert!(out.stdout.is_empty());
    std::fs::write(
        fx.path().join("unknown.yaml"),
        "a: b\nimage: scratchpack://nope\n",
    )
    .unwrap();
    let out = fx.cli(&["resolve", "-f", "unknown.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("unknown.yaml:2: `scratchpack://nope` names no image"),
        "{}",
        stderr(&out)
    );
    assert!(out.stdout.is_empty());
    assert!(
        !fx.path().join("target/images").exists(),
        "nothing was built"
    );
}

/// A directory whose `podman` runs the real one on `podman`'s private store,
/// to put first on `PATH`.
fn podman_on_path(podman: &Podman) -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let cmd = podman.cmd();
    let mut script = format!("#!/bin/sh\nexec '{}'", cmd.get_program().to_string_lossy());
    for a in cmd.get_args() {
        script.push_str(&format!(" '{}'", a.to_string_lossy()));
    }
    script.push_str(" \"$@\"\n");
    let path = dir.path().join("podman");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// `PATH` with `dir` first.
fn path_with(dir: &Path) -> String {
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// The names `podman images` lists, as `repository:tag`.
fn podman_names(podman: &Podman) -> Vec<String> {
    let out = run(podman
        .cmd()
        .args(["images", "--format", "{{.Repository}}:{{.Tag}}"]));
    let mut names: Vec<String> = stdout(&out).lines().map(str::to_owned).collect();
    names.sort();
    names
}

/// `load` puts every tag of every image into podman, without a tar on
/// disk; a second `load` is a no-op; another platform is built alone;
/// under another registry's name, the archive is made in memory.
#[test]
fn load_puts_every_tag_into_podman_once() {
    let Some(podman) = Podman::new() else { return };
    let bin = podman_on_path(&podman);
    let fx = Fixture::new(
        &[("app", HELLO_MAIN), ("tool", TOOL_MAIN)],
        "[defaults]\nplatforms = [\"linux/amd64\", \"linux/arm64\"]\ntags = [\"latest\", \"1.0\"]\n\n\
         [images.app]\npackage = \"app\"\n\n[images.tool]\npackage = \"tool\"\n",
    );
    let path = path_with(bin.path());
    let out = cli_in(fx.path(), &["load"], &[("PATH", &path)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        podman_names(&podman),
        [
            "localhost/app:1.0",
            "localhost/app:latest",
            "localhost/tool:1.0",
            "localhost/tool:latest"
        ]
    );
    let (platform, _) = podman.inspect("app:latest");
    assert_eq!(platform, "linux/amd64");
    let again = cli_in(fx.path(), &["load"], &[("PATH", &path)]);
    assert!(again.status.success());
    let err = stderr(&again);
    assert_eq!(
        err.matches("Fresh app (linux/amd64) in podman").count(),
        1,
        "{err}"
    );
    assert!(!err.contains("Loaded"), "{err}");

    let arm = cli_in(
        fx.path(),
        &["load", "app", "--platform", "linux/arm64", "--tag", "arm"],
        &[("PATH", &path)],
    );
    assert!(arm.status.success(), "{}", stderr(&arm));
    let (platform, _) = podman.inspect("app:arm");
    assert_eq!(platform, "linux/arm64");
    // Only the platform loaded was built.
    let built = crate::validate::layout(&fx.path().join("target/images/app"));
    let platforms: Vec<&str> = built.images.iter().map(|i| i.platform.as_str()).collect();
    assert_eq!(platforms, ["linux/arm64"]);

    // Named for another registry: the archive is made in memory.
    let renamed = cli_in(
        fx.path(),
        &["load", "tool", "--registry", "registry.example/team"],
        &[("PATH", &path)],
    );
    assert!(renamed.status.success(), "{}", stderr(&renamed));
    let names = podman_names(&podman);
    for tag in ["latest", "1.0"] {
        let name = format!("registry.example/team/tool:{tag}");
        assert!(names.contains(&name), "no {name} in {names:?}");
    }
}

/// Without podman or docker on `PATH`, `load` says what to install and
/// builds nothing.
#[test]
fn load_without_a_runtime_names_what_to_install() {
    let fx = Fixture::new(&[("app", HELLO_MAIN)], "[images.app]\npackage = \"app\"\n");
    let empty = tempfile::tempdir().unwrap();
    let out = cli_in(
        fx.path(),
        &["load"],
        &[("PATH", empty.path().to_str().unwrap())],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("install podman"), "{}", stderr(&out));
    assert!(!fx.path().join("target/images").exists());
}

/// `tag` adds tags to a signed image in the registry without rebuilding:
/// the digest is the same, so `verify` passes on the new tag.
#[test]
fn tag_promotes_and_verify_passes_on_the_new_tag() {
    if !have_tools() {
        return;
    }
    let registry = Registry::start();
    let fx = Fixture::new(
        &[("app", HELLO_MAIN)],
        &format!(
            "[defaults]\nregistry = \"{}\"\ninsecure = true\n\
             platforms = [\"linux/amd64\", \"linux/arm64\"]\ntags = [\"rc\"]\n\n\
             [images.app]\npackage = \"app\"\n",
            registry.host()
        ),
    );
    let password = [("COSIGN_PASSWORD", "deploy-test")];
    let keys = fx.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let out = cli_in(
        fx.path(),
        &["keygen", "--out", keys.to_str().unwrap()],
        &password,
    );
    assert!(out.status.success());
    let key = keys.join("cosign.key");
    let out = cli_in(
        fx.path(),
        &["push", "--sign", "--key", key.to_str().unwrap()],
        &password,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let repo = format!("{}/app", registry.host());
    let before = raw_manifest(&format!("{repo}:rc"));
    let out = cli_in(
        fx.path(),
        &[
            "tag", "app", "--from", "rc", "--to", "1.0.0", "--to", "stable",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(raw_manifest(&format!("{repo}:stable")), before);
    let public = keys.join("cosign.pub");
    let out = cli_in(
        fx.path(),
        &[
            "verify",
            "--key",
            public.to_str().unwrap(),
            "--tag",
            "1.0.0",
            "--tag",
            "stable",
        ],
        &[],
    );
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let said = stdout(&out);
    assert!(
        said.contains(&format!("verified app: tag {repo}:stable is sha256:")),
        "{said}"
    );
    assert!(said.contains(" 0 failed"), "{said}");
    // A tag that is not in the registry is named.
    let out = cli_in(
        fx.path(),
        &["tag", "app", "--from", "nope", "--to", "x"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("has no `nope`"), "{}", stderr(&out));
}

/// A directory with `cargo`, which runs the command line under test for
/// `cargo xtask` and the real cargo for anything else, as a workspace's
/// `.cargo/config.toml` alias would.
fn cargo_xtask_on_path(dir: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    let path = dir.join("cargo");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\nif [ \"$1\" = xtask ]; then shift; exec '{}' \"$@\"; fi\nexec '{}' \"$@\"\n",
            env!("CARGO_BIN_EXE_scratchpack"),
            env!("CARGO")
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Runs `scripts/<recipe> ARGS` in `dir` with `vars`, as Skaffold or Tilt
/// would.
fn recipe(dir: &Path, path: &str, recipe: &str, args: &[&str], vars: &[(&str, &str)]) -> Output {
    run(Command::new("sh")
        .arg(support::repo_root().join("scripts").join(recipe))
        .args(args)
        .current_dir(dir)
        .env_remove("CARGO_TARGET_DIR")
        .env("PATH", path)
        .env("NO_COLOR", "1")
        .envs(vars.iter().copied()))
}

/// The Skaffold and Tilt recipes, run with the variables each tool sets:
/// Skaffold's push and local build, Tilt's local build and its push with
/// `outputs_image_ref_to`.
#[test]
fn skaffold_and_tilt_recipes_run_with_the_variables_they_set() {
    if !have_tools() {
        return;
    }
    let Some(podman) = Podman::new() else { return };
    let registry = Registry::start();
    let host = registry.host();
    let bin = podman_on_path(&podman);
    cargo_xtask_on_path(bin.path());
    let path = path_with(bin.path());
    let fx = Fixture::new(
        &[("hello", HELLO_MAIN)],
        "[defaults]\nplatforms = [\"linux/amd64\", \"linux/arm64\"]\n\n\
         [images.hello]\npackage = \"hello\"\n",
    );
    let dir = fx.path();

    let image = format!("{host}/hello:skaffold-1");
    let vars = [
        ("IMAGE", image.as_str()),
        ("PUSH_IMAGE", "true"),
        ("PLATFORMS", "linux/amd64,linux/arm64"),
        ("BUILD_CONTEXT", dir.to_str().unwrap()),
    ];
    let out = recipe(dir, &path, "skaffold-build.sh", &["hello"], &vars);
    assert!(out.status.success(), "{}", stderr(&out));
    let pushed = raw_manifest(&image);
    assert_eq!(pushed["manifests"].as_array().unwrap().len(), 2);

    let vars = [
        ("IMAGE", "hello:dev"),
        ("PUSH_IMAGE", "false"),
        ("PLATFORMS", "linux/arm64"),
    ];
    let out = recipe(dir, &path, "skaffold-build.sh", &["hello"], &vars);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(podman.inspect("hello:dev").0, "linux/arm64");

    let expected = format!("{host}/hello:tilt-2540b7769f094fdb");
    let vars = [
        ("EXPECTED_REF", expected.as_str()),
        ("EXPECTED_REGISTRY", host.as_str()),
        ("EXPECTED_IMAGE", "hello"),
        ("EXPECTED_TAG", "tilt-2540b7769f094fdb"),
    ];
    let out = recipe(dir, &path, "tilt-build.sh", &["hello"], &vars);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(podman.inspect(&expected).0, "linux/amd64");

    let ref_file = dir.join(".tilt-ref-hello");
    let out = recipe(
        dir,
        &path,
        "tilt-build.sh",
        &["hello", ref_file.to_str().unwrap()],
        &vars,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let written = std::fs::read_to_string(&ref_file).unwrap();
    let reference = written.trim();
    assert!(
        reference.starts_with(&format!("{host}/hello@sha256:")),
        "{reference}"
    );
    assert_eq!(raw_manifest(reference), raw_manifest(&expected));
}

/// An image with a second binary holds both, each proven static with its
/// crate list embedded, on every platform, and its SBOMs list both.
#[test]
fn an_image_holds_every_binary_it_lists() {
    let fx = Fixture::new(
        &[("app", HELLO_MAIN), ("tool", TOOL_MAIN)],
        "[images.app]\npackage = \"app\"\nplatforms = [\"linux/amd64\", \"linux/arm64\"]\n\
         binaries = [{ package = \"tool\", path = \"/usr/bin/tool\" }]\n\n\
         [images.app.tests.layout]\n\
         files = [{ path = \"/app\", mode = \"0755\" }, { path = \"/usr/bin/tool\", mode = \"0755\" }]\n",
    );
    let out = fx.cli(&["images", "--message-format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let built = &support::built_images(&out)[0];
    let layout = validate::layout(Path::new(built["layout"].as_str().unwrap()));
    for image in &layout.images {
        let paths: Vec<String> = validate::tar_entries(&image.layers[0])
            .into_iter()
            .map(|e| e.path)
            .collect();
        assert!(paths.contains(&"usr/bin/tool".to_owned()), "{paths:?}");
        assert!(paths.contains(&"app".to_owned()), "{paths:?}");
    }
    for p in built["platforms"].as_array().unwrap() {
        let tool = PathBuf::from(p["extra_binaries"][0].as_str().unwrap());
        let names = crate::release_auditable::embedded_names(&tool)
            .unwrap_or_else(|| panic!("no crate list in {}", tool.display()));
        assert!(names.contains(&"tool".to_owned()), "{names:?}");
        let platform = p["platform"].as_str().unwrap().replace('/', "-");
        let sbom = std::fs::read_to_string(
            fx.path()
                .join("target/images/app.release")
                .join(format!("{platform}.spdx.json")),
        )
        .unwrap();
        assert!(sbom.contains("\"name\":\"tool\"") && sbom.contains("\"name\":\"app\""));
    }
    let tested = fx.cli(&["test-images"]);
    assert!(tested.status.success(), "{}", stdout(&tested));
}

/// A cache entry made at one commit is used at the next one when the
/// image's inputs did not change: the source annotations (a revision of
/// their own) are outside the action key, and the entry is checked with
/// its own.
#[test]
fn a_cache_entry_made_at_another_commit_is_still_a_hit() {
    if !have_tool("docker-registry", "docker-registry") {
        return;
    }
    let registry = Registry::start();
    let origin = repository(&format!(
        "[defaults]\ncache = \"{}/build-cache\"\n\n[images.a]\npackage = \"a\"\n",
        registry.host()
    ));
    let logs = tempfile::tempdir().unwrap();
    let (_one, first) = clone(origin.path(), 1);
    let log = logs.path().join("first.log");
    let wrapper = logging_wrapper(logs.path(), &log);
    let (out, _) = xtask(&first, &wrapper, &["images", "--message-format", "json"]);
    assert!(out.status.success());
    assert!(stderr(&out).contains("Cached a"), "{}", stderr(&out));
    let first_image = support::built_images(&out).remove(0);

    // A commit that changes another package only.
    std::fs::write(
        origin.path().join("crates/b/src/main.rs"),
        "fn main() { println!(\"b, changed\"); }\n",
    )
    .unwrap();
    git(origin.path(), &["commit", "-q", "-am", "change b"]);
    let (_two, second) = clone(origin.path(), 2);
    let log = logs.path().join("second.log");
    let wrapper = logging_wrapper(logs.path(), &log);
    let (out, _) = xtask(&second, &wrapper, &["images", "--message-format", "json"]);
    assert!(out.status.success());
    assert!(stderr(&out).contains("Pulled a"), "{}", stderr(&out));
    assert_eq!(
        compiled(&log),
        Vec::<String>::new(),
        "rustc ran at the new commit"
    );
    let second_image = support::built_images(&out).remove(0);
    assert_eq!(
        first_image["platforms"][0]["layer"], second_image["platforms"][0]["layer"],
        "the same layer"
    );
    assert_ne!(
        first_image["digest"], second_image["digest"],
        "another revision"
    );
    let layout = PathBuf::from(second_image["layout"].as_str().unwrap());
    let validated = validate::layout(&layout);
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            layout
                .join("blobs/sha256")
                .join(validated.top_digest.strip_prefix("sha256:").unwrap()),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.revision"],
        head(&second)
    );
}
