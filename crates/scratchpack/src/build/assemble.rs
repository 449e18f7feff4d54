//! A plan's image as OCI values: the entries of each platform's layer, the
//! config's run settings, annotations and history, the platform spec, and
//! the repository loaders name the set by. `oci` builds images from such
//! values and knows nothing of plans, as go-containerregistry's `pkg/v1`
//! knows nothing of ko, which assembles images from its own build settings.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::manifest::{ImagePlan, RunConfig};
use crate::oci::image::{ImageMeta, rfc3339};
use crate::oci::layer::{Entry, EntryKind, Layer, LayerError};
use crate::oci::spec::ExecConfig;
use crate::oci::{Image, ImageSet, PlatformSpec};
use crate::platform::Platform;

/// The bytes that go into one platform's layer.
pub struct Contents<'a> {
    /// The image's binary, then each of its `binaries` in plan order: bytes,
    /// or host files streamed while packing.
    pub binaries: Vec<EntryKind<'a>>,
    /// The data of each of the plan's `files`, in the same order.
    pub files: &'a [Vec<u8>],
}

/// Where the images of a run come from, as their annotations say it: HEAD's
/// commit (none when tracked files have changes not committed, so no image
/// names a commit it was not built from) and the origin as a URL. Outside
/// every action key: a cache entry made at another commit is as good.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Source {
    pub revision: Option<String>,
    pub url: Option<String>,
}

pub const ANNOTATION_CREATED: &str = "org.opencontainers.image.created";
pub const ANNOTATION_REVISION: &str = "org.opencontainers.image.revision";
pub const ANNOTATION_SOURCE: &str = "org.opencontainers.image.source";
pub const ANNOTATION_VERSION: &str = "org.opencontainers.image.version";

impl Source {
    /// What an image's own annotations say of its source: how a cache
    /// entry built elsewhere is reassembled as it was.
    pub fn of_annotations(annotations: &BTreeMap<String, String>) -> Source {
        Source {
            revision: annotations.get(ANNOTATION_REVISION).cloned(),
            url: annotations.get(ANNOTATION_SOURCE).cloned(),
        }
    }
}

/// The origin of a checkout as `org.opencontainers.image.source` gives it:
/// a URL with any credentials taken out (`https://user:token@host/x` is
/// `https://host/x`), an scp-like `git@host:path` as `https://host/path`
/// (the form registries link to a repository by); `None` for a local path
/// or `file:` URL, which is a path on this host and no source anyone else
/// can fetch.
pub fn source_url(origin: &str) -> Option<String> {
    let origin = origin.trim();
    if let Some((scheme, rest)) = origin.split_once("://") {
        if scheme.eq_ignore_ascii_case("file") || scheme.is_empty() {
            return None;
        }
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        return (!host.is_empty()).then(|| format!("{scheme}://{host}{path}"));
    }
    // scp-like syntax: `[user@]host:path`, where the host has no `/` (git
    // reads `./a:b` or `/a:b` as a path).
    let (before, path) = origin.split_once(':')?;
    if before.contains('/') || path.is_empty() {
        return None;
    }
    let host = before.rsplit_once('@').map_or(before, |(_, h)| h);
    (!host.is_empty()).then(|| format!("https://{host}/{}", path.trim_start_matches('/')))
}

/// The manifest's and index's annotations: those that say where the image
/// came from (unless `source-annotations = false`), under the image's own
/// `annotations`, which win.
pub fn annotations(plan: &ImagePlan, source: &Source, epoch: u64) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if plan.source_annotations {
        out.insert(ANNOTATION_CREATED.to_owned(), rfc3339(epoch));
        if !plan.version.is_empty() {
            out.insert(ANNOTATION_VERSION.to_owned(), plan.version.clone());
        }
        if let Some(r) = &source.revision {
            out.insert(ANNOTATION_REVISION.to_owned(), r.clone());
        }
        if let Some(u) = &source.url {
            out.insert(ANNOTATION_SOURCE.to_owned(), u.clone());
        }
    }
    out.extend(plan.annotations.clone());
    out
}

/// Mode of the binary in the image.
const BINARY_MODE: u32 = 0o755;

/// Assembles one platform's image. `epoch` (seconds, from
/// `SOURCE_DATE_EPOCH` or 0) is the only time that appears anywhere in it.
pub fn image(
    plan: &ImagePlan,
    platform: Platform,
    contents: &Contents<'_>,
    source: &Source,
    epoch: u64,
) -> Result<Image, LayerError> {
    let paths = std::iter::once(&plan.binary_path).chain(plan.binaries.iter().map(|b| &b.path));
    let mut entries: Vec<Entry<'_>> = paths
        .zip(&contents.binaries)
        .map(|(path, kind)| Entry {
            path: path.relative().to_owned(),
            mode: BINARY_MODE,
            kind: kind.clone(),
        })
        .collect();
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
    let mut comment = format!("{} binary `{}`", plan.package, plan.bin);
    for b in &plan.binaries {
        comment.push_str(&format!(", {} binary `{}`", b.package, b.bin));
    }
    let meta = ImageMeta {
        exec: exec_config(&plan.config),
        annotations: annotations(plan, source, epoch),
        created: rfc3339(epoch),
        comment,
    };
    Ok(Image::new(oci_platform(platform), layer, &meta))
}

/// Groups the plan's per-platform images; several platforms get an index,
/// annotated as each manifest is.
pub fn image_set(plan: &ImagePlan, images: Vec<Image>, source: &Source, epoch: u64) -> ImageSet {
    ImageSet::new(
        plan.name.clone(),
        plan.tags.iter().map(ToString::to_string).collect(),
        repository(plan),
        images,
        &annotations(plan, source, epoch),
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
        volumes: (!c.volumes.is_empty()).then(|| {
            c.volumes
                .iter()
                .map(|v| (v.as_str().to_owned(), serde_json::json!({})))
                .collect()
        }),
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
source-annotations = false
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
                    binaries: vec![EntryKind::File(b"\x7fELF not really")],
                    files: &files,
                };
                image(plan, t.platform, &contents, &Source::default(), epoch).unwrap()
            })
            .collect();
        image_set(plan, images, &Source::default(), epoch)
    }

    /// The plan gives exactly the values whose bytes `oci`'s snapshots pin.
    #[test]
    fn a_plan_assembles_to_the_pinned_image() {
        let plan = plan();
        for epoch in [0, 1_700_000_000] {
            assert_eq!(
                assemble(&plan, epoch),
                scratchpack_base::testkit::oci::sample_set(epoch)
            );
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
    fn origins_become_source_urls_without_credentials() {
        for (origin, url) in [
            (
                "https://github.com/acme/api.git",
                Some("https://github.com/acme/api.git"),
            ),
            (
                "https://user:token@host.example/x",
                Some("https://host.example/x"),
            ),
            (
                "ssh://git@host.example:2222/x.git",
                Some("ssh://host.example:2222/x.git"),
            ),
            (
                "git@github.com:acme/api.git",
                Some("https://github.com/acme/api.git"),
            ),
            ("host.example:team/x", Some("https://host.example/team/x")),
            ("/srv/git/x.git", None),
            ("./a:b", None),
            ("file:///srv/git/x", None),
            ("", None),
        ] {
            assert_eq!(source_url(origin).as_deref(), url, "{origin}");
        }
    }

    /// The source annotations go under the image's own, which win, and
    /// `source-annotations = false` leaves them out.
    #[test]
    fn source_annotations_are_under_the_image_s_own() {
        let mut plan = plan();
        let source = Source {
            revision: Some("0123456789abcdef0123456789abcdef01234567".into()),
            url: Some("https://host.example/x".into()),
        };
        assert_eq!(
            annotations(&plan, &source, 0),
            plan.annotations,
            "switched off"
        );
        plan.source_annotations = true;
        plan.version = "0.3.1".into();
        let got = annotations(&plan, &source, 1_700_000_000);
        assert_eq!(got[ANNOTATION_CREATED], "2023-11-14T22:13:20Z");
        assert_eq!(got[ANNOTATION_REVISION], source.revision.clone().unwrap());
        assert_eq!(got[ANNOTATION_SOURCE], "https://host.example/x");
        assert_eq!(got[ANNOTATION_VERSION], "1.0", "the image's own wins");
        assert_eq!(Source::of_annotations(&got), source);
        let set = assemble(&plan, 0);
        let index: serde_json::Value =
            serde_json::from_slice(&set.index.as_ref().unwrap().bytes).unwrap();
        let manifest: serde_json::Value =
            serde_json::from_slice(&set.images[0].manifest.bytes).unwrap();
        assert_eq!(index["annotations"], manifest["annotations"]);
        assert_eq!(
            manifest["annotations"][ANNOTATION_CREATED],
            "1970-01-01T00:00:00Z"
        );
    }

    #[test]
    fn every_platform_has_its_oci_form() {
        for p in Platform::ALL {
            assert_eq!(oci_platform(p).to_string(), p.to_string());
        }
    }
}
