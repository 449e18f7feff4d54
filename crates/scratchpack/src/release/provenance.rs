//! SLSA v1 provenance (slsa.dev `provenance/v1`) for an image, as the
//! predicate of an in-toto Statement v1: what was built (external
//! parameters: manifest, image, platform), from what (the workspace's git
//! commit, Cargo.lock's digest, the rustc and cargo that built it, the target
//! triple) and by whom (a builder id the CI system names). Nothing in it
//! depends on the time or the machine, so two builds give the same bytes.
//! What git, rustc and cargo said is given ([`crate::toolchain`] asks them).

use serde_json::{Value, json};

use super::statement::{Statement, Subject};
use crate::oci::Digest;
use crate::toolchain::git::GitSource;
use crate::toolchain::versions::Toolchain;

pub const PREDICATE_SLSA: &str = "https://slsa.dev/provenance/v1";
/// What the external parameters mean: an image of images.toml built for one
/// platform by scratchpack.
pub const BUILD_TYPE: &str = "urn:scratchpack:build-type:image:v1";

/// Everything the provenance records about one platform's build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Build {
    /// images.toml's path relative to the workspace root.
    pub manifest_path: String,
    pub image: String,
    /// `os/architecture`.
    pub platform: String,
    pub package: String,
    pub target: String,
    pub profile: String,
    pub features: Vec<String>,
    pub default_features: bool,
    pub source: Option<GitSource>,
    pub cargo_lock: Digest,
    pub toolchain: Toolchain,
    pub builder_id: String,
}

/// The statement about `subjects` (the image's manifest and index digests).
pub fn statement(subjects: Vec<Subject>, build: &Build) -> Statement {
    Statement::new(subjects, PREDICATE_SLSA, predicate(build))
}

fn predicate(build: &Build) -> Value {
    let version = |full: &str| {
        full.split_whitespace()
            .nth(1)
            .unwrap_or("unknown")
            .to_owned()
    };
    let mut dependencies = Vec::new();
    if let Some(source) = &build.source {
        let mut dep = json!({"digest": {"gitCommit": source.commit}});
        if let Some(uri) = &source.uri {
            dep["uri"] = format!("git+{uri}@{}", source.commit).into();
        }
        dependencies.push(dep);
    }
    dependencies.push(json!({"name": "Cargo.lock", "digest": {"sha256": build.cargo_lock.hex()}}));
    dependencies.push(json!({
        "name": "rustc",
        "uri": format!("pkg:generic/rustc@{}?target={}", version(&build.toolchain.rustc), build.target),
        "annotations": {"version": build.toolchain.rustc},
    }));
    dependencies.push(json!({
        "name": "cargo",
        "uri": format!("pkg:generic/cargo@{}", version(&build.toolchain.cargo)),
        "annotations": {"version": build.toolchain.cargo},
    }));
    json!({
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": {
                "manifest": build.manifest_path,
                "image": build.image,
                "platform": build.platform,
            },
            "internalParameters": {
                "package": build.package,
                "target": build.target,
                "profile": build.profile,
                "features": build.features,
                "defaultFeatures": build.default_features,
            },
            "resolvedDependencies": dependencies,
        },
        "runDetails": {
            "builder": {"id": build.builder_id},
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::DEFAULT_BUILDER_ID;

    pub(crate) fn sample() -> Build {
        Build {
            manifest_path: "images.toml".into(),
            image: "hello".into(),
            platform: "linux/amd64".into(),
            package: "hello".into(),
            target: "x86_64-unknown-linux-musl".into(),
            profile: "release".into(),
            features: vec![],
            default_features: true,
            source: Some(GitSource {
                uri: Some("https://example.invalid/ws.git".into()),
                commit: "0123456789abcdef0123456789abcdef01234567".into(),
            }),
            cargo_lock: Digest::of(b"lock"),
            toolchain: Toolchain {
                rustc: "rustc 1.85.0 (4d91de4e4 2025-02-17)".into(),
                cargo: "cargo 1.85.0 (d73d2caf9 2024-12-31)".into(),
            },
            builder_id: DEFAULT_BUILDER_ID.into(),
        }
    }

    #[test]
    fn records_commit_lock_toolchain_and_builder() {
        let s = statement(vec![Subject::new("hello", &Digest::of(b"m"))], &sample());
        let v: Value = serde_json::from_slice(&s.to_json()).unwrap();
        let p = &v["predicate"];
        assert_eq!(v["predicateType"], PREDICATE_SLSA);
        assert_eq!(
            p["buildDefinition"]["externalParameters"]["platform"],
            "linux/amd64"
        );
        let deps = p["buildDefinition"]["resolvedDependencies"]
            .as_array()
            .unwrap();
        assert_eq!(
            deps[0]["uri"],
            "git+https://example.invalid/ws.git@0123456789abcdef0123456789abcdef01234567"
        );
        assert_eq!(deps[1]["digest"]["sha256"], Digest::of(b"lock").hex());
        assert_eq!(
            deps[2]["uri"],
            "pkg:generic/rustc@1.85.0?target=x86_64-unknown-linux-musl"
        );
        assert_eq!(p["runDetails"]["builder"]["id"], DEFAULT_BUILDER_ID);
        // The same build, the same bytes.
        assert_eq!(
            s.to_json(),
            statement(vec![Subject::new("hello", &Digest::of(b"m"))], &sample()).to_json()
        );
    }
}
