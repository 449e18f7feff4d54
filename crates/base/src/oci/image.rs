//! Image configs, manifests and indexes (image-spec `config.md`,
//! `manifest.md`, `image-index.md`), made from OCI values: a platform, a
//! layer, how a runtime starts the image and what it says about itself.
//! What a plan asks for becomes these values in `build::assemble`.

use std::collections::BTreeMap;

use super::layer::Layer;
use super::spec::{Config, ExecConfig, History, Index, Manifest, RootFs};
use super::{
    Blob, Descriptor, MEDIA_TYPE_CONFIG, MEDIA_TYPE_INDEX, MEDIA_TYPE_MANIFEST, PlatformSpec,
};

/// One platform's image: its layer, config and manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub platform: PlatformSpec,
    pub layer: Layer,
    pub config: Blob,
    pub manifest: Blob,
}

/// What an image says about itself besides its platform and layer: how a
/// runtime starts it, its annotations, and its one history entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageMeta {
    pub exec: ExecConfig,
    /// The manifest's annotations (and the index's, in an [`ImageSet`]).
    pub annotations: BTreeMap<String, String>,
    /// `created` of the config and of its history entry, RFC 3339: the only
    /// time anywhere in the image.
    pub created: String,
    /// The history entry's comment: what the layer holds.
    pub comment: String,
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

impl Image {
    /// One platform's image of `layer`: its config and the manifest over both.
    pub fn new(platform: PlatformSpec, layer: Layer, meta: &ImageMeta) -> Image {
        let config = Blob::json(
            MEDIA_TYPE_CONFIG,
            &Config {
                architecture: platform.architecture.clone(),
                os: platform.os.clone(),
                // Absent for platforms without a variant, so their bytes
                // are as they always were.
                variant: platform.variant.clone(),
                created: Some(meta.created.clone()),
                config: meta.exec.clone(),
                rootfs: RootFs {
                    kind: "layers".to_owned(),
                    diff_ids: vec![layer.diff_id.clone()],
                },
                history: vec![History {
                    created: Some(meta.created.clone()),
                    created_by: Some("scratchpack".to_owned()),
                    comment: Some(meta.comment.clone()),
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
                annotations: meta.annotations.clone(),
            },
        );
        Image {
            platform,
            layer,
            config,
            manifest,
        }
    }

    /// The manifest's descriptor with its platform, as an index lists it.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor {
            platform: Some(self.platform.clone()),
            ..self.manifest.descriptor()
        }
    }
}

impl ImageSet {
    /// Groups per-platform images; several platforms get an image index,
    /// annotated with `annotations`.
    pub fn new(
        name: String,
        tags: Vec<String>,
        repository: String,
        images: Vec<Image>,
        annotations: &BTreeMap<String, String>,
    ) -> ImageSet {
        let index = (images.len() > 1).then(|| {
            Blob::json(
                MEDIA_TYPE_INDEX,
                &Index {
                    schema_version: 2,
                    media_type: Some(MEDIA_TYPE_INDEX.to_owned()),
                    manifests: images.iter().map(Image::descriptor).collect(),
                    subject: None,
                    annotations: annotations.clone(),
                },
            )
        });
        ImageSet {
            name,
            tags,
            repository,
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
