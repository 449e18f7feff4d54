//! The image set `oci`'s snapshots pin.

use std::collections::BTreeMap;

use crate::oci::{Compression, Entry, EntryKind, Image, ImageSet, Layer, image, spec};

/// An image set for two platforms with every kind of entry and every config
/// field the engine writes; `build::assemble`'s tests check a plan gives
/// exactly this.
pub fn sample_set(epoch: u64) -> ImageSet {
    let meta = image::ImageMeta {
        exec: spec::ExecConfig {
            user: Some("65532:65532".to_owned()),
            exposed_ports: Some(BTreeMap::from([(
                "8080/tcp".to_owned(),
                serde_json::json!({}),
            )])),
            env: Some(vec!["A=1".to_owned(), "B=2".to_owned()]),
            entrypoint: Some(vec!["/hello".to_owned()]),
            cmd: Some(vec!["world".to_owned()]),
            volumes: None,
            working_dir: Some("/".to_owned()),
            labels: Some(BTreeMap::from([(
                "org.example.team".to_owned(),
                "core".to_owned(),
            )])),
            stop_signal: Some("SIGINT".to_owned()),
        },
        annotations: BTreeMap::from([(
            "org.opencontainers.image.version".to_owned(),
            "1.0".to_owned(),
        )]),
        created: image::rfc3339(epoch),
        comment: "hello binary `hello`".to_owned(),
    };
    let images = ["linux/amd64", "linux/arm64"]
        .into_iter()
        .map(|platform| {
            let entries = vec![
                Entry {
                    path: "hello".to_owned(),
                    mode: 0o755,
                    kind: EntryKind::File(b"\x7fELF not really"),
                },
                Entry {
                    path: "etc/motd/today".to_owned(),
                    mode: 0o444,
                    kind: EntryKind::File(b"hi\n"),
                },
                Entry {
                    path: "tmp".to_owned(),
                    mode: 0o1777,
                    kind: EntryKind::Dir,
                },
            ];
            let layer = Layer::build(entries, epoch, Compression::Gzip).unwrap();
            Image::new(platform.parse().unwrap(), layer, &meta)
        })
        .collect();
    ImageSet::new(
        "hello".to_owned(),
        vec!["1.0".to_owned(), "latest".to_owned()],
        "hello".to_owned(),
        images,
        &meta.annotations,
    )
}
