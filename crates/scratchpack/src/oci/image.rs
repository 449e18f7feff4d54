//! Image configs, manifests and indexes (image-spec `config.md`,
//! `manifest.md`, `image-index.md`), assembled from a plan and the bytes that
//! go into the layer.

use super::layer::{Entry, EntryKind, Layer, LayerError};
use super::spec::{Config, ExecConfig, History, Index, Manifest, RootFs};
use super::{
    Blob, Descriptor, MEDIA_TYPE_CONFIG, MEDIA_TYPE_INDEX, MEDIA_TYPE_MANIFEST, PlatformSpec,
};
use crate::manifest::{ImagePlan, RunConfig};
use crate::platform::Platform;

/// One platform's image: its layer, config and manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub platform: Platform,
    pub layer: Layer,
    pub config: Blob,
    pub manifest: Blob,
}

/// Everything built for one images.toml entry: one image per platform, and
/// an index over them when there are several.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSet {
    pub name: String,
    pub tags: Vec<String>,
    /// The repository loaders name the image by: `registry/repository` when
    /// images.toml gives a registry, else the image's name.
    pub repository: String,
    pub images: Vec<Image>,
    pub index: Option<Blob>,
}

/// The bytes that go into one platform's layer.
pub struct Contents<'a> {
    pub binary: &'a [u8],
    /// The data of each of the plan's `files`, in the same order.
    pub files: &'a [Vec<u8>],
}

/// Mode of the binary in the image.
const BINARY_MODE: u32 = 0o755;

impl Image {
    /// Assembles one platform's image. `epoch` (seconds, from
    /// `SOURCE_DATE_EPOCH` or 0) is the only time that appears anywhere in it.
    pub fn assemble(
        plan: &ImagePlan,
        platform: Platform,
        contents: &Contents<'_>,
        epoch: u64,
    ) -> Result<Image, LayerError> {
        let mut entries = vec![Entry {
            path: plan.binary_path.relative().to_owned(),
            mode: BINARY_MODE,
            kind: EntryKind::File(contents.binary.to_vec()),
        }];
        for (file, data) in plan.files.iter().zip(contents.files) {
            entries.push(Entry {
                path: file.dst.relative().to_owned(),
                mode: file.mode,
                kind: EntryKind::File(data.clone()),
            });
        }
        for dir in &plan.dirs {
            entries.push(Entry {
                path: dir.path.relative().to_owned(),
                mode: dir.mode,
                kind: EntryKind::Dir,
            });
        }
        let layer = Layer::build(entries, epoch)?;
        let created = rfc3339(epoch);
        let config = Blob::json(
            MEDIA_TYPE_CONFIG,
            &Config {
                architecture: platform.architecture().to_owned(),
                os: platform.os().to_owned(),
                // Absent for platforms without a variant, so their bytes
                // are as they always were.
                variant: platform.variant().map(str::to_owned),
                created: Some(created.clone()),
                config: exec_config(&plan.config),
                rootfs: RootFs {
                    kind: "layers".to_owned(),
                    diff_ids: vec![layer.diff_id.clone()],
                },
                history: vec![History {
                    created: Some(created),
                    created_by: Some("scratchpack".to_owned()),
                    comment: Some(format!("{} binary `{}`", plan.package, plan.bin)),
                }],
            },
        );
        let manifest = Blob::json(
            MEDIA_TYPE_MANIFEST,
            &Manifest {
                schema_version: 2,
                media_type: Some(MEDIA_TYPE_MANIFEST.to_owned()),
                artifact_type: None,
                config: config.descriptor(),
                layers: vec![layer.blob.descriptor()],
                subject: None,
                annotations: plan.annotations.clone(),
            },
        );
        Ok(Image {
            platform,
            layer,
            config,
            manifest,
        })
    }

    /// The manifest's descriptor with its platform, as an index lists it.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor {
            platform: Some(PlatformSpec {
                architecture: self.platform.architecture().to_owned(),
                os: self.platform.os().to_owned(),
                variant: self.platform.variant().map(str::to_owned),
            }),
            ..self.manifest.descriptor()
        }
    }
}

impl ImageSet {
    /// Groups per-platform images; several platforms get an image index.
    pub fn new(plan: &ImagePlan, images: Vec<Image>) -> ImageSet {
        let index = (images.len() > 1).then(|| {
            Blob::json(
                MEDIA_TYPE_INDEX,
                &Index {
                    schema_version: 2,
                    media_type: Some(MEDIA_TYPE_INDEX.to_owned()),
                    manifests: images.iter().map(Image::descriptor).collect(),
                    subject: None,
                    annotations: plan.annotations.clone(),
                },
            )
        });
        ImageSet {
            name: plan.name.clone(),
            tags: plan.tags.iter().map(ToString::to_string).collect(),
            repository: repository(plan),
            images,
            index,
        }
    }

    /// `repository:tag` for every tag, in order: the names loaders give it.
    pub fn references(&self) -> Vec<String> {
        self.tags
            .iter()
            .map(|t| format!("{}:{t}", self.repository))
            .collect()
    }

    /// The descriptor a reference resolves to: the index when there is one,
    /// else the single image's manifest.
    pub fn top(&self) -> Descriptor {
        match &self.index {
            Some(index) => index.descriptor(),
            None => self.images[0].descriptor(),
        }
    }

    /// Every blob, each once, in a fixed order (layers, configs, manifests,
    /// index).
    pub fn blobs(&self) -> Vec<&Blob> {
        let mut seen = std::collections::BTreeSet::new();
        let layers = self.images.iter().map(|i| &i.layer.blob);
        let configs = self.images.iter().map(|i| &i.config);
        let manifests = self.images.iter().map(|i| &i.manifest);
        layers
            .chain(configs)
            .chain(manifests)
            .chain(self.index.iter())
            .filter(|b| seen.insert(b.digest.clone()))
            .collect()
    }
}

/// The repository an image is loaded under (see [`ImageSet::repository`]).
pub fn repository(plan: &ImagePlan) -> String {
    match &plan.push {
        Some(p) => format!("{}/{}", p.registry, p.repository),
        None => plan.name.clone(),
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

/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since the Unix epoch (UTC, proleptic
/// Gregorian; Howard Hinnant's days-to-civil algorithm).
pub fn rfc3339(epoch: u64) -> String {
    let days = (epoch / 86_400) as i64;
    let secs = epoch % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn formats_epochs() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
    }
}
