//! A plan's image as OCI values: the entries of each platform's layer, the
//! config's run settings, annotations and history, the platform spec, and
//! the repository loaders name the set by. `oci` builds images from such
//! values and knows nothing of plans, as go-containerregistry's `pkg/v1`
//! knows nothing of ko, which assembles images from its own build settings.

use crate::manifest::{ImagePlan, RunConfig};
use crate::oci::image::{ImageMeta, rfc3339};
use crate::oci::layer::{Entry, EntryKind, Layer, LayerError};
use crate::oci::spec::ExecConfig;
use crate::oci::{Image, ImageSet, PlatformSpec};
use crate::platform::Platform;

/// The bytes that go into one platform's layer.
pub struct Contents<'a> {
    /// The binary: bytes, or a host file streamed while packing.
    pub binary: EntryKind<'a>,
    /// The data of each of the plan's `files`, in the same order.
    pub files: &'a [Vec<u8>],
}

/// Mode of the binary in the image.
const BINARY_MODE: u32 = 0o755;

/// Assembles one platform's image. `epoch` (seconds, from
/// `SOURCE_DATE_EPOCH` or 0) is the only time that appears anywhere in it.
pub fn image(
    plan: &ImagePlan,
    platform: Platform,
    contents: &Contents<'_>,
    epoch: u64,
) -> Result<Image, LayerError> {
    let mut entries = vec![Entry {
        path: plan.binary_path.relative().to_owned(),
        mode: BINARY_MODE,
        kind: contents.binary.clone(),
    }];
    for (file, data) in plan.files.iter().zip(contents.files) {
        entries.push(Entry {
            path: file.dst.relative().to_owned(),
            mode: file.mode,
            kind: EntryKind::File(data),
        });
    }
    for dir in &plan.dirs {
        entries.push(Entry {
            path: dir.path.relative().to_owned(),
            mode: dir.mode,
            kind: EntryKind::Dir,
        });
    }
    let layer = Layer::build(entries, epoch, plan.compression)?;
    let meta = ImageMeta {
        exec: exec_config(&plan.config),
        annotations: plan.annotations.clone(),
        created: rfc3339(epoch),
        comment: format!("{} binary `{}`", plan.package, plan.bin),
    };
    Ok(Image::new(oci_platform(platform), layer, &meta))
}

/// Groups the plan's per-platform images; several platforms get an index.
pub fn image_set(plan: &ImagePlan, images: Vec<Image>) -> ImageSet {
    ImageSet::new(
        plan.name.clone(),
        plan.tags.iter().map(ToString::to_string).collect(),
        repository(plan),
        images,
        &plan.annotations,
    )
}

/// The repository an image is loaded under (see [`ImageSet::repository`]).
pub fn repository(plan: &ImagePlan) -> String {
    match &plan.push {
        Some(p) => format!("{}/{}", p.registry, p.repository),
        None => plan.name.clone(),
    }
}

/// A supported platform as the image spec writes it.
pub fn oci_platform(platform: Platform) -> PlatformSpec {
    PlatformSpec {
        architecture: platform.architecture().to_owned(),
        os: platform.os().to_owned(),
        variant: platform.variant().map(str::to_owned),
    }
}

/// The config's `config` object for a plan: fields the image always sets are
/// always written (`User`, `Entrypoint`, `WorkingDir`), the rest only when
/// non-empty, as the image's bytes have always had them.
fn exec_config(c: &RunConfig) -> ExecConfig {
    let some = |v: Vec<String>| (!v.is_empty()).then_some(v);
    ExecConfig {
        user: Some(c.user.to_string()),
        exposed_ports: (!c.exposed_ports.is_empty()).then(|| {
            c.exposed_ports
                .iter()
                .map(|p| (p.as_str().to_owned(), serde_json::json!({})))
                .collect()
        }),
        env: some(c.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        entrypoint: Some(c.entrypoint.clone()),
        cmd: some(c.cmd.clone()),
        working_dir: Some(c.workdir.as_str().to_owned()),
        labels: (!c.labels.is_empty()).then(|| c.labels.clone()),
        stop_signal: c.stop_signal.clone(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::manifest::parse;
    use crate::toolchain::workspace::Workspace;

    /// The plan whose image `oci`'s tests build from values and pin byte
    /// for byte.
    fn plan() -> ImagePlan {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("motd"), "hi\n").unwrap();
        let mut packages = BTreeMap::new();
        packages.insert("hello".to_owned(), vec!["hello".to_owned()]);
        let ws = Workspace {
            root: dir.path().to_owned(),
            target_dir: dir.path().join("target"),
            packages,
            manifests: BTreeMap::new(),
            ..Workspace::default()
        };
        let text = r#"
[images.hello]
package = "hello"
platforms = ["linux/amd64", "linux/arm64"]
cmd = ["world"]
env = { B = "2", A = "1" }
labels = { "org.example.team" = "core" }
annotations = { "org.opencontainers.image.version" = "1.0" }
ports = ["8080"]
stop-signal = "SIGINT"
files = [{ src = "motd", dst = "/etc/motd/today", mode = "0444" }]
dirs = [{ path = "/tmp", mode = "1777" }]
tags = ["1.0", "latest"]
"#;
        parse(&dir.path().join("images.toml"), text, &ws)
            .unwrap()
            .images
            .remove(0)
    }

    fn assemble(plan: &ImagePlan, epoch: u64) -> ImageSet {
        let files = vec![b"hi\n".to_vec()];
        let images = plan
            .targets
            .iter()
            .map(|t| {
                let contents = Contents {
                    binary: EntryKind::File(b"\x7fELF not really"),
                    files: &files,
                };
                image(plan, t.platform, &contents, epoch).unwrap()
            })
            .collect();
        image_set(plan, images)
    }

    /// The plan gives exactly the values whose bytes `oci`'s snapshots pin.
    #[test]
    fn a_plan_assembles_to_the_pinned_image() {
        let plan = plan();
        for epoch in [0, 1_700_000_000] {
            assert_eq!(assemble(&plan, epoch), crate::oci::tests::sample_set(epoch));
        }
    }

    #[test]
    fn a_registry_names_the_repository() {
        let mut plan = plan();
        assert_eq!(repository(&plan), "hello");
        let reference =
            crate::registry::Repository::parse("registry.example:5000/acme/hello").unwrap();
        plan.push = Some(crate::manifest::PushTarget {
            registry: "registry.example:5000/acme".to_owned(),
            repository: "hello".to_owned(),
            reference,
            insecure: false,
        });
        assert_eq!(repository(&plan), "registry.example:5000/acme/hello");
    }

    #[test]
    fn every_platform_has_its_oci_form() {
        for p in Platform::ALL {
            assert_eq!(oci_platform(p).to_string(), p.to_string());
        }
    }
}
