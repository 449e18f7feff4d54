//! Snapshots of the exact bytes that ship, so any change to them shows up in
//! review, and the layer rules checked on real tar output.

use std::collections::BTreeMap;
use std::io::Read;

use super::*;
use crate::testkit::oci::sample_set;

fn text(blob: &Blob) -> String {
    String::from_utf8(blob.bytes.clone()).unwrap()
}

#[test]
fn config_manifest_and_index_bytes() {
    let set = sample_set(0);
    insta::assert_snapshot!("config_amd64", text(&set.images[0].config));
    insta::assert_snapshot!("manifest_amd64", text(&set.images[0].manifest));
    insta::assert_snapshot!("index", text(set.index.as_ref().unwrap()));
    let meta = layout::LayoutMeta::new(&set);
    insta::assert_snapshot!(
        "layout_index_json",
        String::from_utf8(meta.index_json().to_vec()).unwrap()
    );
}

fn tar_listing(layer: &Layer) -> Vec<(String, u32, u64, u64, u64, u64)> {
    let mut gz = crate::gunzip::GzDecoder::new(layer.blob.bytes.as_slice());
    let mut tar_bytes = Vec::new();
    gz.read_to_end(&mut tar_bytes).unwrap();
    assert_eq!(Digest::of(&tar_bytes), layer.diff_id);
    assert_eq!(tar_bytes.len() as u64, layer.tar_size);
    let mut archive = ::tar::Archive::new(tar_bytes.as_slice());
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let h = e.header();
            (
                e.path().unwrap().to_string_lossy().into_owned(),
                h.mode().unwrap(),
                h.uid().unwrap(),
                h.gid().unwrap(),
                h.mtime().unwrap(),
                h.size().unwrap(),
            )
        })
        .collect()
}

#[test]
fn layer_holds_exactly_the_declared_entries_and_parents() {
    let set = sample_set(0);
    let listing = tar_listing(&set.images[0].layer);
    let names: Vec<&str> = listing.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(
        names,
        ["etc/", "etc/motd/", "etc/motd/today", "hello", "tmp/"]
    );
    let modes: Vec<u32> = listing.iter().map(|e| e.1).collect();
    assert_eq!(modes, [0o755, 0o755, 0o444, 0o755, 0o1777]);
    assert!(listing.iter().all(|e| e.2 == 0 && e.3 == 0 && e.4 == 0));
}

#[test]
fn gzip_header_is_pinned() {
    let set = sample_set(0);
    let gz = &set.images[0].layer.blob.bytes;
    // magic, deflate, no flags (no name/comment), mtime 0, no level hint, OS 255.
    assert_eq!(&gz[..10], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);
}

#[test]
fn same_inputs_same_bytes() {
    assert_eq!(sample_set(0), sample_set(0));
}

#[test]
fn epoch_changes_only_created_and_mtimes() {
    let a = sample_set(0);
    let b = sample_set(1_700_000_000);
    let la = tar_listing(&a.images[0].layer);
    let lb = tar_listing(&b.images[0].layer);
    assert!(lb.iter().all(|e| e.4 == 1_700_000_000));
    let strip_mtime = |l: &[(String, u32, u64, u64, u64, u64)]| {
        l.iter()
            .map(|e| (e.0.clone(), e.1, e.2, e.3, e.5))
            .collect::<Vec<_>>()
    };
    assert_eq!(strip_mtime(&la), strip_mtime(&lb));
    let mut ca: serde_json::Value = serde_json::from_slice(&a.images[0].config.bytes).unwrap();
    let cb: serde_json::Value = serde_json::from_slice(&b.images[0].config.bytes).unwrap();
    assert_eq!(cb["created"], "2023-11-14T22:13:20Z");
    ca["created"] = cb["created"].clone();
    ca["history"][0]["created"] = cb["created"].clone();
    ca["rootfs"] = cb["rootfs"].clone();
    assert_eq!(ca, cb);
}

#[test]
fn archive_is_one_platform_as_a_layout_plus_docker_manifest() {
    let set = sample_set(0);
    let tar = archive::archive(&set, 0);
    let mut archive = ::tar::Archive::new(tar.as_slice());
    let mut names = Vec::new();
    let mut files = BTreeMap::new();
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        e.read_to_end(&mut bytes).unwrap();
        files.insert(name.clone(), bytes);
        names.push(name);
    }
    // Only the first platform's blobs: the one image every loader loads.
    let first = &set.images[0];
    assert_eq!(first.platform.to_string(), "linux/amd64");
    for blob in set.blobs() {
        let path = format!("blobs/sha256/{}", blob.digest.hex());
        let wanted = [&first.layer.blob, &first.config, &first.manifest]
            .iter()
            .any(|b| b.digest == blob.digest);
        assert_eq!(names.contains(&path), wanted, "{path}");
    }
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "entries are byte-sorted");
    insta::assert_snapshot!(
        "archive_manifest_json",
        String::from_utf8(files["manifest.json"].clone()).unwrap()
    );
    insta::assert_snapshot!(
        "archive_index_json",
        String::from_utf8(files["index.json"].clone()).unwrap()
    );
    let docker: serde_json::Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    assert_eq!(
        docker[0]["RepoTags"],
        serde_json::json!(["hello:1.0", "hello:latest"])
    );
    assert_eq!(
        docker[0]["Config"],
        format!("blobs/sha256/{}", first.config.digest.hex())
    );
    // index.json names the same manifest once per tag, by full reference.
    let index: Index = serde_json::from_slice(&files["index.json"]).unwrap();
    let refs: Vec<_> = index
        .manifests
        .iter()
        .map(|d| d.ref_name().unwrap())
        .collect();
    assert_eq!(refs, ["hello:1.0", "hello:latest"]);
    assert!(
        index
            .manifests
            .iter()
            .all(|d| d.digest == first.manifest.digest)
    );
}

#[test]
fn repository_and_registry_name_the_archive() {
    let mut set = sample_set(0);
    set.repository = "registry.example:5000/acme/hello".to_owned();
    assert_eq!(
        set.references(),
        [
            "registry.example:5000/acme/hello:1.0",
            "registry.example:5000/acme/hello:latest"
        ]
    );
}

#[test]
fn platforms_read_as_they_are_written() {
    for text in ["linux/amd64", "linux/arm/v7"] {
        let platform: PlatformSpec = text.parse().unwrap();
        assert_eq!(platform.to_string(), text);
    }
    let arm: PlatformSpec = "linux/arm/v7".parse().unwrap();
    assert_eq!(
        (
            arm.os.as_str(),
            arm.architecture.as_str(),
            arm.variant.as_deref()
        ),
        ("linux", "arm", Some("v7"))
    );
    for bad in [
        "",
        "linux",
        "linux/",
        "/amd64",
        "linux//v7",
        "linux/arm/v7/x",
    ] {
        let e = bad.parse::<PlatformSpec>().unwrap_err();
        assert!(e.to_string().contains("OS/ARCH"), "{bad}: {e}");
    }
}

/// Writes the set's layout under `dir` and its archive beside it.
fn write_out(set: &ImageSet, dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let meta = layout::LayoutMeta::new(set);
    let root = dir.join("hello");
    for f in layout::layout_files(set, &meta) {
        let path = root.join(&f.path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, f.bytes).unwrap();
    }
    let tar = dir.join("hello.tar");
    std::fs::write(&tar, archive::archive(set, 0)).unwrap();
    (root, tar)
}

/// One reader: the set in memory, its layout on disk and its archive resolve
/// to the same images, each verified.
#[test]
fn memory_layout_and_archive_read_alike() {
    let set = sample_set(0);
    let meta = layout::LayoutMeta::new(&set);
    let dir = tempfile::tempdir().unwrap();
    let (root, tar) = write_out(&set, dir.path());
    let memory = layout::InMemory {
        set: &set,
        meta: &meta,
    };
    let on_disk = LayoutDir::open(&root).unwrap();
    on_disk.check_marker().unwrap();
    let (_, index) = source::index(&on_disk).unwrap();
    let refs: Vec<_> = index
        .manifests
        .iter()
        .map(|d| d.ref_name().unwrap())
        .collect();
    assert_eq!(refs, ["1.0", "latest"], "every tag is addressable");
    for (tag, src) in [("1.0", &memory as &dyn Source), ("latest", &on_disk)] {
        let (_, index) = source::index(src).unwrap();
        let top = source::select(&index, Some(tag)).unwrap();
        let resolved = source::resolve(src, top).unwrap();
        assert_eq!(resolved.top.descriptor.digest, set.top().digest);
        assert_eq!(resolved.top.bytes, set.index.as_ref().unwrap().bytes);
        let platforms: Vec<_> = resolved
            .images
            .iter()
            .map(|i| i.platform.to_string())
            .collect();
        assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);
        for (r, built) in resolved.images.iter().zip(&set.images) {
            assert_eq!(r.manifest_digest, built.manifest.digest);
            assert_eq!(
                r.config.rootfs.diff_ids,
                std::slice::from_ref(&built.layer.diff_id)
            );
            // What was read parses back to exactly the bytes written.
            assert_eq!(canonical_json(&r.config), built.config.bytes);
            assert_eq!(canonical_json(&r.manifest), built.manifest.bytes);
        }
        // Both platforms got the same bytes here, so they share one layer.
        assert_eq!(resolved.blobs().len(), 3, "one layer and two configs");
    }
    // Without a name, the one image all tags name.
    let (_, index) = source::index(&on_disk).unwrap();
    assert_eq!(
        source::select(&index, None).unwrap().digest,
        set.top().digest
    );
    assert_eq!(source::resolve_all(&on_disk).unwrap().len(), 2);

    let archive = archive::ArchiveFile::open(&tar).unwrap();
    let images = source::resolve_all(&archive).unwrap();
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].platform.to_string(), "linux/amd64");
    let docker = archive.docker_manifest().unwrap();
    assert_eq!(
        docker[0].config,
        error::blob_path(&images[0].manifest.config.digest)
    );
    for d in images[0].layers() {
        archive.blob(d, u64::MAX).unwrap();
    }
}

mod hostile {
    //! Layouts written by someone else: each case is refused, quickly, and
    //! nothing outside the layout is read.

    use std::os::unix::fs::symlink;
    use std::path::Path;

    use super::*;

    fn layout() -> (tempfile::TempDir, ImageSet) {
        let set = sample_set(0);
        let dir = tempfile::tempdir().unwrap();
        write_out(&set, dir.path());
        (dir, set)
    }

    fn blob(dir: &Path, digest: &Digest) -> std::path::PathBuf {
        dir.join("hello/blobs/sha256").join(digest.hex())
    }

    fn resolve(dir: &Path) -> Result<Vec<ResolvedImage>, ReadError> {
        let layout = LayoutDir::open(&dir.join("hello"))?;
        source::resolve_all(&layout)
    }

    #[test]
    fn an_index_json_that_is_a_fifo_is_refused_without_waiting() {
        let (dir, _) = layout();
        let index = dir.path().join("hello/index.json");
        std::fs::remove_file(&index).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &index,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let e = resolve(dir.path()).unwrap_err();
        assert!(
            matches!(&e, ReadError::NotRegular { path, kind } if path == "index.json" && *kind == "a FIFO"),
            "{e}"
        );
    }

    #[test]
    fn an_index_json_linked_to_dev_zero_is_not_followed() {
        let (dir, _) = layout();
        let index = dir.path().join("hello/index.json");
        std::fs::remove_file(&index).unwrap();
        symlink("/dev/zero", &index).unwrap();
        let e = resolve(dir.path()).unwrap_err();
        assert!(
            matches!(&e, ReadError::Symlink(p) if p == "index.json"),
            "{e}"
        );
    }

    #[test]
    fn a_layer_linked_to_a_host_file_is_not_read() {
        let (dir, set) = layout();
        let layer = &set.images[0].layer.blob;
        let path = blob(dir.path(), &layer.digest);
        std::fs::remove_file(&path).unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, b"host secret").unwrap();
        symlink(&secret, &path).unwrap();
        let layout = LayoutDir::open(&dir.path().join("hello")).unwrap();
        let e = layout.blob(&layer.descriptor(), u64::MAX).unwrap_err();
        assert!(matches!(&e, ReadError::Symlink(_)), "{e}");
        let e = layout.blob_file(&layer.descriptor()).unwrap_err();
        assert!(matches!(&e, ReadError::Symlink(_)), "{e}");
        assert!(layout.blob_size(&layer.digest).is_err());
        // Nothing about the host file (its size or hash) is in the message.
        assert!(!e.to_string().contains("11"), "{e}");
    }

    #[test]
    fn linked_directories_in_the_layout_are_not_followed() {
        let (dir, set) = layout();
        let blobs = dir.path().join("hello/blobs");
        std::fs::rename(&blobs, dir.path().join("elsewhere")).unwrap();
        symlink(dir.path().join("elsewhere"), &blobs).unwrap();
        let e = resolve(dir.path()).unwrap_err();
        assert!(matches!(&e, ReadError::Symlink(p) if p == "blobs"), "{e}");
        drop(set);
        // The layout itself, named by the caller, must not be a link either.
        let (dir, _) = layout();
        symlink(dir.path().join("hello"), dir.path().join("link")).unwrap();
        let e = LayoutDir::open(&dir.path().join("link")).err().unwrap();
        assert!(matches!(&e, ReadError::Symlink(_)), "{e}");
    }

    #[test]
    fn oversized_documents_are_refused_before_reading() {
        let (dir, set) = layout();
        // A sparse 1 TiB index.json: refused by its size, not read.
        let index = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.path().join("hello/index.json"))
            .unwrap();
        index.set_len(1 << 40).unwrap();
        let e = resolve(dir.path()).unwrap_err();
        assert!(
            matches!(&e, ReadError::TooLarge { path, .. } if path == "index.json"),
            "{e}"
        );

        // A descriptor claiming a huge manifest is refused by its size.
        let layout = LayoutDir::open(&dir.path().join("hello")).unwrap();
        let mut d = set.images[0].manifest.descriptor();
        d.size = 8 << 30;
        let e = layout.blob(&d, error::MAX_JSON).unwrap_err();
        assert!(matches!(&e, ReadError::TooLarge { .. }), "{e}");

        // A blob whose file is larger than its descriptor: refused by the
        // file's size, before a byte is read.
        let layer = &set.images[0].layer.blob;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(blob(dir.path(), &layer.digest))
            .unwrap();
        f.set_len(1 << 40).unwrap();
        let e = layout
            .blob(&layer.descriptor(), error::MAX_BLOB_IN_MEMORY)
            .unwrap_err();
        assert!(
            matches!(
                &e,
                ReadError::TooLarge { .. } | ReadError::Mismatch { actual: None, .. }
            ),
            "{e}"
        );
        let e = layout.blob_file(&layer.descriptor()).unwrap_err();
        assert!(
            matches!(
                &e,
                ReadError::TooLarge { .. } | ReadError::Mismatch { actual: None, .. }
            ),
            "{e}"
        );
    }

    #[test]
    fn a_device_as_a_blob_is_refused() {
        let (dir, set) = layout();
        let config = &set.images[0].config;
        let path = blob(dir.path(), &config.digest);
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        let layout = LayoutDir::open(&dir.path().join("hello")).unwrap();
        let e = layout
            .blob(&config.descriptor(), error::MAX_JSON)
            .unwrap_err();
        assert!(matches!(&e, ReadError::NotRegular { .. }), "{e}");
    }

    #[test]
    fn a_corrupt_blob_is_refused_with_its_digest() {
        let (dir, set) = layout();
        let manifest = &set.images[1].manifest;
        let path = blob(dir.path(), &manifest.digest);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[0] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        let e = resolve(dir.path()).unwrap_err();
        assert!(
            matches!(&e, ReadError::Mismatch { digest, actual: Some(_), .. } if *digest == manifest.digest),
            "{e}"
        );
    }

    #[test]
    fn a_digest_that_is_not_sha256_is_a_parse_error() {
        let (dir, _) = layout();
        let index = dir.path().join("hello/index.json");
        let text = std::fs::read_to_string(&index).unwrap();
        let text = text.replacen("sha256:", "sha256:../../", 1);
        std::fs::write(&index, text).unwrap();
        let e = resolve(dir.path()).unwrap_err();
        assert!(matches!(&e, ReadError::Json { .. }), "{e}");
    }
}

/// Walks over documents a registry could serve: each listed digest is read
/// once, and the limits hold before anything past them is read.
mod bounded_walks {
    use std::cell::RefCell;

    use super::*;
    use crate::oci::source::{WalkLimits, resolve_within};

    /// Documents by digest, counting every read.
    #[derive(Default)]
    struct Counting {
        docs: BTreeMap<Digest, Vec<u8>>,
        reads: RefCell<Vec<Digest>>,
    }

    impl Counting {
        fn put(&mut self, media_type: &str, bytes: Vec<u8>) -> Descriptor {
            let d = Descriptor::new(media_type, Digest::of(&bytes), bytes.len() as u64);
            self.docs.insert(d.digest.clone(), bytes);
            d
        }

        fn index(&mut self, children: &[Descriptor], pad: &str) -> Descriptor {
            let index = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": MEDIA_TYPE_INDEX,
                "manifests": children,
                "annotations": {"pad": pad},
            });
            self.put(MEDIA_TYPE_INDEX, canonical_json(&index))
        }

        fn image(&mut self, n: u32) -> Descriptor {
            let config = self.put(
                MEDIA_TYPE_CONFIG,
                format!(r#"{{"architecture":"amd64","os":"linux","n":{n}}}"#).into_bytes(),
            );
            let manifest = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": MEDIA_TYPE_MANIFEST,
                "config": config,
                "layers": [],
            });
            self.put(MEDIA_TYPE_MANIFEST, canonical_json(&manifest))
        }

        fn reads_of(&self, d: &Descriptor) -> usize {
            self.reads
                .borrow()
                .iter()
                .filter(|r| **r == d.digest)
                .count()
        }
    }

    impl Source for Counting {
        fn index_bytes(&self) -> Result<Vec<u8>, ReadError> {
            Err(ReadError::Missing("index.json".to_owned()))
        }

        fn blob(&self, d: &Descriptor, limit: u64) -> Result<Vec<u8>, ReadError> {
            assert!(d.size <= limit, "the walk asked for more than its limit");
            self.reads.borrow_mut().push(d.digest.clone());
            Ok(self.docs[&d.digest].clone())
        }
    }

    #[test]
    fn a_document_listed_many_times_is_read_once() {
        let mut src = Counting::default();
        let image = src.image(1);
        let big = src.index(std::slice::from_ref(&image), &"x".repeat(1 << 20));
        let top = src.index(&vec![big.clone(); 250], "");
        let resolved = resolve_within(&src, &top, WalkLimits::default()).unwrap();
        assert_eq!(src.reads_of(&big), 1, "the listed index was read again");
        assert_eq!(src.reads_of(&image), 1);
        assert_eq!(resolved.images.len(), 1);
        assert_eq!(
            resolved.children.len(),
            2,
            "the index and the image, once each"
        );
        // Configs shared by several manifests are read once too.
        assert_eq!(src.reads.borrow().len(), 4, "top, index, manifest, config");
    }

    #[test]
    fn too_many_documents_are_refused_before_any_is_read() {
        let mut src = Counting::default();
        let images: Vec<Descriptor> = (0..1500).map(|n| src.image(n)).collect();
        let top = src.index(&images, "");
        let e = resolve_within(&src, &top, WalkLimits::default()).unwrap_err();
        assert!(matches!(e, ReadError::TooManyDocuments(1000)), "{e}");
        assert_eq!(src.reads.borrow().len(), 1, "only the top was read");
        // The same within a larger limit reads each document once.
        let limits = WalkLimits {
            documents: 5000,
            ..WalkLimits::default()
        };
        src.reads.borrow_mut().clear();
        let resolved = resolve_within(&src, &top, limits).unwrap();
        assert_eq!(resolved.images.len(), 1500);
        assert_eq!(src.reads.borrow().len(), 1 + 1500 * 2);
    }

    #[test]
    fn nested_indexes_are_bounded_by_the_documents_they_add_up_to() {
        let mut src = Counting::default();
        let leaves: Vec<Descriptor> = (0..40).map(|n| src.image(n)).collect();
        let mids: Vec<Descriptor> = (0..40)
            .map(|n| src.index(&leaves, &n.to_string()))
            .collect();
        let top = src.index(&mids, "");
        let limits = WalkLimits {
            documents: 100,
            ..WalkLimits::default()
        };
        let e = resolve_within(&src, &top, limits).unwrap_err();
        assert!(matches!(e, ReadError::TooManyDocuments(100)), "{e}");
        assert!(
            src.reads.borrow().len() <= 101,
            "{}",
            src.reads.borrow().len()
        );
        // Every leaf is shared: with room, each is read once.
        src.reads.borrow_mut().clear();
        let resolved = resolve_within(&src, &top, WalkLimits::default()).unwrap();
        assert_eq!(resolved.images.len(), 40);
        assert_eq!(src.reads.borrow().len(), 1 + 40 + 40 * 2);
    }

    #[test]
    fn documents_are_bounded_in_bytes_before_they_are_read() {
        let mut src = Counting::default();
        let image = src.image(1);
        let fat: Vec<Descriptor> = (0..4)
            .map(|n| {
                src.index(
                    std::slice::from_ref(&image),
                    &format!("{n}{}", "x".repeat(1 << 20)),
                )
            })
            .collect();
        let top = src.index(&fat, "");
        let limits = WalkLimits {
            bytes: 3 << 20,
            ..WalkLimits::default()
        };
        let e = resolve_within(&src, &top, limits).unwrap_err();
        assert!(matches!(e, ReadError::TooManyBytes(_)), "{e}");
        assert_eq!(src.reads.borrow().len(), 1, "only the top was read");
    }
}
