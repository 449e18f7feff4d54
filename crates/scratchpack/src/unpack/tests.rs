//! The unpacker against crafted layers: hostile ones must be refused without
//! anything written outside the root, honest ones unpacked as the image spec
//! says. Headers are filled in by hand where the `tar` crate's builder would
//! refuse the hostile names.

use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::manifest::FileKind;
use crate::oci::{
    MEDIA_TYPE_INDEX, MEDIA_TYPE_LAYER_GZIP, MEDIA_TYPE_LAYER_TAR, MEDIA_TYPE_MANIFEST,
};

const LAYER: &str = "sha256:00000000000000000000000000000000000000000000000000000000000000aa";

enum E<'a> {
    Dir(&'a str, u32),
    File(&'a str, u32, &'a str),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
    Fifo(&'a str),
    Char(&'a str),
}

/// A tar with `entries`, names and link targets written into the header
/// bytes as given.
fn layer(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_ustar();
        let (name, kind, mode, data, link): (&str, tar::EntryType, u32, &str, &str) = match *e {
            E::Dir(n, m) => (n, tar::EntryType::Directory, m, "", ""),
            E::File(n, m, d) => (n, tar::EntryType::Regular, m, d, ""),
            E::Symlink(n, t) => (n, tar::EntryType::Symlink, 0o777, "", t),
            E::Hardlink(n, t) => (n, tar::EntryType::Link, 0o644, "", t),
            E::Fifo(n) => (n, tar::EntryType::Fifo, 0o644, "", ""),
            E::Char(n) => (n, tar::EntryType::Char, 0o666, "", ""),
        };
        let old = h.as_old_mut();
        old.name = [0; 100];
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        old.linkname = [0; 100];
        old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        h.set_uid(0);
        h.set_gid(0);
        h.set_cksum();
        b.append(&h, data.as_bytes()).unwrap();
    }
    b.into_inner().unwrap()
}

/// Applies `layers` in order over a fresh root.
fn apply(layers: &[Vec<u8>]) -> (tempfile::TempDir, Result<Tree, UnpackError>) {
    apply_within(layers, UnpackLimits::default())
}

/// Applies `layers` in order over a fresh root, within `limits`.
fn apply_within(
    layers: &[Vec<u8>],
    limits: UnpackLimits,
) -> (tempfile::TempDir, Result<Tree, UnpackError>) {
    let root = tempfile::tempdir().unwrap();
    let mut tree = Tree::new();
    let mut budget = Budget::new(limits);
    for bytes in layers {
        let blob = blob(MEDIA_TYPE_LAYER_TAR, bytes);
        if let Err(e) = apply_layer(&blob, root.path(), &mut tree, &mut budget) {
            return (root, Err(e));
        }
    }
    (root, Ok(tree))
}

/// A layer blob of `media_type`, named [`LAYER`] in errors.
fn blob(media_type: &str, bytes: &[u8]) -> LayerBlob {
    let d = Descriptor::new(
        media_type,
        Digest::parse(LAYER).unwrap(),
        bytes.len() as u64,
    );
    LayerBlob::new(d, bytes.to_vec()).unwrap()
}

fn refused(entries: &[E]) -> (tempfile::TempDir, String) {
    let (root, result) = apply(&[layer(entries)]);
    let err = result.expect_err("the layer must be refused");
    let text = err.to_string();
    assert!(text.contains(LAYER), "the error names the layer: {text}");
    (root, text)
}

#[test]
fn files_directories_and_links_unpack_with_their_modes() {
    let (root, tree) = apply(&[layer(&[
        E::Dir("etc/", 0o755),
        E::File("etc/greeting.txt", 0o444, "hi\n"),
        E::File("./hello", 0o4755, "binary"),
        E::Symlink("etc/link", "greeting.txt"),
        E::Symlink("abs", "/etc/greeting.txt"),
        E::Hardlink("etc/again", "etc/greeting.txt"),
        E::File("implied/deep/file", 0o600, "x"),
    ])]);
    let tree = tree.unwrap();
    let r = root.path();
    assert_eq!(
        std::fs::read_to_string(r.join("etc/greeting.txt")).unwrap(),
        "hi\n"
    );
    assert_eq!(
        std::fs::read_to_string(r.join("etc/again")).unwrap(),
        "hi\n"
    );
    assert_eq!(
        std::fs::read_link(r.join("etc/link")).unwrap(),
        Path::new("greeting.txt")
    );
    assert_eq!(
        std::fs::read_link(r.join("abs")).unwrap(),
        Path::new("/etc/greeting.txt")
    );
    // The image's mode is recorded; the host file loses its set-id bit.
    assert_eq!(tree.get("/hello").unwrap().mode, 0o4755);
    let host_mode = std::fs::metadata(r.join("hello"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(host_mode & 0o7777, 0o755);
    assert_eq!(tree.get("/etc/greeting.txt").unwrap().mode, 0o444);
    assert_eq!(tree.get("/etc/link").unwrap().kind, FileKind::Symlink);
    assert_eq!(tree.get("/implied/deep").unwrap().kind, FileKind::Dir);
    assert_eq!(tree.get("/implied/deep/file").unwrap().mode, 0o600);
}

#[test]
fn absolute_paths_are_refused() {
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("planted");
    let (_root, text) = refused(&[E::File(target.to_str().unwrap(), 0o644, "x")]);
    assert!(text.contains("absolute paths are refused"), "{text}");
    assert!(
        text.contains("planted"),
        "the error names the entry: {text}"
    );
    assert!(!target.exists());
}

#[test]
fn paths_climbing_out_with_dot_dot_are_refused() {
    // The root's parent is the shared temporary directory: the name that
    // would land there is one nothing else writes.
    let out = "climbed-out-of-an-unpacked-root";
    for name in [&format!("../{out}"), &format!("a/../../{out}"), "./a/.."] {
        let (root, text) = refused(&[E::File(name, 0o644, "x")]);
        assert!(text.contains("climbs out"), "{name}: {text}");
        assert!(!root.path().parent().unwrap().join(out).exists());
    }
    let (_root, text) = refused(&[E::Dir("d/", 0o755), E::File("d/.wh...", 0o644, "")]);
    assert!(text.contains("climbs out"), "{text}");
}

#[test]
fn symlinks_pointing_out_of_the_root_are_refused() {
    for target in ["..", "../../etc", "a/../../.."] {
        let (_root, text) = refused(&[E::Symlink("escape", target)]);
        assert!(text.contains("outside the image root"), "{target}: {text}");
    }
    // Inside the root is fine, however it gets there.
    let (_root, tree) = apply(&[layer(&[E::Symlink("d/up", "../x")])]);
    assert!(tree.is_ok());
}

#[test]
fn nothing_is_written_through_a_symlink() {
    let outside = tempfile::tempdir().unwrap();
    let abs = outside.path().to_str().unwrap().to_owned();
    // An absolute target is allowed as a link (inside the sandbox it names
    // a path of the image), but never followed while unpacking.
    let (_root, text) = refused(&[E::Symlink("link", &abs), E::File("link/pwned", 0o644, "x")]);
    assert!(text.contains("`/link` is a symlink"), "{text}");
    assert!(!outside.path().join("pwned").exists());

    // The same across layers, and for a directory entry.
    let (_root, result) = apply(&[
        layer(&[E::Symlink("etc", &abs)]),
        layer(&[E::Dir("etc/sub/", 0o755)]),
    ]);
    assert!(result.unwrap_err().to_string().contains("is a symlink"));
    assert!(!outside.path().join("sub").exists());

    // A hard link to a path behind a symlink is refused too.
    std::fs::write(outside.path().join("secret"), "s").unwrap();
    let (_root, text) = refused(&[E::Symlink("l", &abs), E::Hardlink("copy", "l/secret")]);
    assert!(text.contains("hard link target"), "{text}");
}

#[test]
fn a_file_replaced_by_a_symlink_is_not_followed_by_later_writes() {
    let outside = tempfile::tempdir().unwrap();
    let abs = outside.path().join("victim");
    std::fs::write(&abs, "original").unwrap();
    let (root, tree) = apply(&[
        layer(&[E::File("f", 0o644, "one")]),
        layer(&[E::Symlink("f", abs.to_str().unwrap())]),
        layer(&[E::File("f", 0o644, "three")]),
    ]);
    tree.unwrap();
    assert_eq!(std::fs::read_to_string(&abs).unwrap(), "original");
    assert_eq!(
        std::fs::read_to_string(root.path().join("f")).unwrap(),
        "three"
    );
}

#[test]
fn device_nodes_and_fifos_are_refused() {
    for entry in [E::Fifo("dev/fifo"), E::Char("dev/null")] {
        let (root, text) = refused(&[entry]);
        assert!(
            text.contains("device nodes and fifos are refused"),
            "{text}"
        );
        assert!(text.contains("dev/"), "the error names the entry: {text}");
        assert!(!root.path().join("dev/fifo").exists());
        assert!(!root.path().join("dev/null").exists());
    }
}

#[test]
fn whiteouts_delete_and_opaque_directories_hide_lower_layers() {
    let (root, tree) = apply(&[
        layer(&[
            E::File("gone", 0o644, "x"),
            E::Dir("dir/", 0o755),
            E::File("dir/old", 0o644, "x"),
            E::Dir("dir/sub/", 0o755),
            E::File("dir/sub/older", 0o644, "x"),
            E::Dir("tree/", 0o755),
            E::File("tree/leaf", 0o644, "x"),
        ]),
        layer(&[
            E::File(".wh.gone", 0o644, ""),
            E::File(".wh.tree", 0o644, ""),
            E::File(".wh.never-there", 0o644, ""),
            E::File("dir/new", 0o644, "kept"),
            E::File("dir/.wh..wh..opq", 0o644, ""),
        ]),
    ]);
    let tree = tree.unwrap();
    let r = root.path();
    for path in ["gone", "tree", "dir/old", "dir/sub"] {
        assert!(
            std::fs::symlink_metadata(r.join(path)).is_err(),
            "{path} survived"
        );
        assert!(
            tree.get(&format!("/{path}")).is_none(),
            "{path} still in the tree"
        );
    }
    assert!(tree.get("/tree/leaf").is_none());
    assert!(tree.get("/dir/sub/older").is_none());
    assert_eq!(std::fs::read_to_string(r.join("dir/new")).unwrap(), "kept");
    assert!(tree.get("/dir").is_some());
    assert!(!r.join(".wh.gone").exists());
    assert!(!r.join("never-there").exists());
}

#[test]
fn a_later_layer_replaces_files_and_directories() {
    let (root, tree) = apply(&[
        layer(&[
            E::Dir("a/", 0o755),
            E::File("a/b", 0o644, "x"),
            E::File("c", 0o644, "x"),
        ]),
        layer(&[E::File("a", 0o600, "now a file"), E::Dir("c/", 0o700)]),
    ]);
    let tree = tree.unwrap();
    assert_eq!(
        std::fs::read_to_string(root.path().join("a")).unwrap(),
        "now a file"
    );
    assert!(tree.get("/a/b").is_none());
    assert_eq!(tree.get("/c").unwrap().kind, FileKind::Dir);
    assert_eq!(tree.get("/c").unwrap().mode, 0o700);
}

/// Writes an OCI layout holding one image of `layer_tar`, returning its dir.
fn layout(layer_tar: &[u8], diff_id: Option<&str>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let blobs = dir.path().join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let d = Digest::of(bytes);
        std::fs::write(blobs.join(d.hex()), bytes).unwrap();
        serde_json::json!({ "digest": d.as_str(), "size": bytes.len() })
    };
    let gz = crate::oci::compress::compress(crate::oci::compress::Compression::Gzip, layer_tar);
    let mut layer_desc = put(&gz.bytes);
    layer_desc["mediaType"] = MEDIA_TYPE_LAYER_GZIP.into();
    let diff_id = diff_id.map_or_else(|| Digest::of(layer_tar).to_string(), str::to_owned);
    let config = serde_json::json!({
        "architecture": "arm64", "os": "linux",
        "config": { "User": "1:2", "Entrypoint": ["/bin"] },
        "rootfs": { "type": "layers", "diff_ids": [diff_id] },
    });
    let mut config_desc = put(&serde_json::to_vec(&config).unwrap());
    config_desc["mediaType"] = crate::oci::MEDIA_TYPE_CONFIG.into();
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": MEDIA_TYPE_MANIFEST,
        "config": config_desc, "layers": [layer_desc],
    });
    let mut manifest_desc = put(&serde_json::to_vec(&manifest).unwrap());
    manifest_desc["mediaType"] = MEDIA_TYPE_MANIFEST.into();
    manifest_desc["platform"] = serde_json::json!({ "architecture": "arm64", "os": "linux" });
    let index = serde_json::json!({ "schemaVersion": 2, "mediaType": MEDIA_TYPE_INDEX, "manifests": [manifest_desc] });
    let mut index_desc = put(&serde_json::to_vec(&index).unwrap());
    index_desc["mediaType"] = MEDIA_TYPE_INDEX.into();
    let top = serde_json::json!({ "schemaVersion": 2, "manifests": [index_desc] });
    std::fs::write(
        dir.path().join("index.json"),
        serde_json::to_vec(&top).unwrap(),
    )
    .unwrap();
    dir
}

#[test]
fn a_layout_is_read_through_its_index_and_unpacked() {
    let tar = layer(&[E::File("bin", 0o755, "#!")]);
    let dir = layout(&tar, None);
    let images = read_layout(dir.path()).unwrap();
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].platform.to_string(), "linux/arm64");
    assert_eq!(images[0].config.config.user.as_deref(), Some("1:2"));
    let unpacked = unpack(dir.path(), &images[0], &UnpackLimits::default()).unwrap();
    assert_eq!(std::fs::read(unpacked.root().join("bin")).unwrap(), b"#!");
    let root_mode = std::fs::metadata(unpacked.root())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        root_mode & 0o777,
        0o755,
        "the sandbox's outside uid must reach the root"
    );
    let root = unpacked.root().to_owned();
    drop(unpacked);
    assert!(!root.exists(), "the unpacked root is removed on drop");
}

#[test]
fn corrupt_blobs_and_wrong_diff_ids_are_refused() {
    let tar = layer(&[E::File("bin", 0o755, "#!")]);
    let dir = layout(&tar, Some(&Digest::of(b"other").to_string()));
    let images = read_layout(dir.path()).unwrap();
    let err = unpack(dir.path(), &images[0], &UnpackLimits::default()).unwrap_err();
    assert!(matches!(err, UnpackError::DiffId { .. }), "{err}");

    let dir = layout(&tar, None);
    let images = read_layout(dir.path()).unwrap();
    let layer = &images[0].layers[0];
    let path = dir
        .path()
        .join("blobs/sha256")
        .join(&layer.digest["sha256:".len()..]);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let err = unpack(dir.path(), &images[0], &UnpackLimits::default()).unwrap_err();
    assert!(
        matches!(
            err,
            UnpackError::Layout {
                source: ReadError::Mismatch { .. },
                ..
            }
        ),
        "{err}"
    );
    assert!(chain_of(&err).contains(layer.digest.as_str()), "{err}");
}

/// A tar whose first entry is a PAX header with `records`, then `name`.
fn with_pax(records: &[(&str, &[u8])], name: &str, data: &[u8]) -> Vec<u8> {
    let mut pax = Vec::new();
    for (key, value) in records {
        let body = [b" ", key.as_bytes(), b"=", value, b"\n"].concat();
        // The length counts its own digits.
        let mut len = body.len() + 1;
        while format!("{len}").len() + body.len() != len {
            len += 1;
        }
        pax.extend_from_slice(format!("{len}").as_bytes());
        pax.extend_from_slice(&body);
    }
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_path("PaxHeader").unwrap();
    h.set_entry_type(tar::EntryType::XHeader);
    h.set_size(pax.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append(&h, &pax[..]).unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_path(name).unwrap();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append(&h, data).unwrap();
    b.into_inner().unwrap()
}

#[test]
fn pax_paths_are_honoured_and_bounded() {
    let long = format!("{}/file", "d".repeat(150));
    let (root, tree) = apply(&[with_pax(&[("path", long.as_bytes())], "short", b"x")]);
    tree.unwrap();
    assert_eq!(std::fs::read(root.path().join(&long)).unwrap(), b"x");

    // A name far past PATH_MAX is refused, and the message stays short.
    let huge = "n".repeat(1 << 20);
    let (_root, result) = apply(&[with_pax(&[("path", huge.as_bytes())], "short", b"x")]);
    let text = result.unwrap_err().to_string();
    assert!(
        text.contains("max-name-bytes") || text.contains("PAX header"),
        "{}",
        &text[..text.len().min(300)]
    );
    assert!(
        text.len() < 1000,
        "the whole name was printed: {} bytes",
        text.len()
    );

    // A PAX header itself larger than its limit is refused before it is read.
    let limits = UnpackLimits {
        max_pax_bytes: 512,
        ..UnpackLimits::default()
    };
    let (_root, result) = apply_within(
        &[with_pax(&[("comment", &[b'c'; 4096])], "short", b"x")],
        limits,
    );
    let text = result.unwrap_err().to_string();
    assert!(text.contains("PAX header of"), "{text}");
}

#[test]
fn total_bytes_entries_and_depth_are_bounded() {
    let limits = UnpackLimits {
        max_bytes: 64 << 10,
        ..UnpackLimits::default()
    };
    let big = "b".repeat(128 << 10);
    let (root, result) = apply_within(&[layer(&[E::File("big", 0o644, &big)])], limits);
    let text = result.unwrap_err().to_string();
    assert!(text.contains("max-bytes"), "{text}");
    let written = std::fs::metadata(root.path().join("big")).map_or(0, |m| m.len());
    assert!(written <= 64 << 10, "{written} bytes written");

    // The byte budget is for the image, not for each layer.
    let half = "h".repeat(40 << 10);
    let (_root, result) = apply_within(
        &[
            layer(&[E::File("one", 0o644, &half)]),
            layer(&[E::File("two", 0o644, &half)]),
        ],
        limits,
    );
    assert!(result.unwrap_err().to_string().contains("max-bytes"));

    let names: Vec<String> = (0..20).map(|i| format!("f{i}")).collect();
    let files: Vec<E> = names.iter().map(|n| E::File(n, 0o644, "")).collect();
    let (_root, result) = apply_within(
        &[layer(&files)],
        UnpackLimits {
            max_entries: 10,
            ..UnpackLimits::default()
        },
    );
    assert!(result.unwrap_err().to_string().contains("max-entries"));

    let deep = ["a"; 40].join("/");
    let (_root, result) = apply_within(
        &[layer(&[E::Dir(&deep, 0o755)])],
        UnpackLimits {
            max_depth: 16,
            ..UnpackLimits::default()
        },
    );
    assert!(result.unwrap_err().to_string().contains("max-depth"));
}

#[test]
fn a_gzip_bomb_stops_at_the_byte_limit() {
    // 64 MiB of zeros compress to about 64 KiB: the unpacker must stop at its
    // limit, not inflate the whole stream.
    let mut gz = crate::oci::compress::Encoder::new(crate::oci::compress::Compression::Gzip);
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..64 {
        gz.write(&zeros);
    }
    let bomb = gz.finish().bytes;
    let root = tempfile::tempdir().unwrap();
    let mut tree = Tree::new();
    let mut budget = Budget::new(UnpackLimits {
        max_bytes: 1 << 20,
        ..UnpackLimits::default()
    });
    let bomb = blob(MEDIA_TYPE_LAYER_GZIP, &bomb);
    let err = apply_layer(&bomb, root.path(), &mut tree, &mut budget).unwrap_err();
    assert!(chain_of(&err).contains("max-bytes"), "{}", chain_of(&err));
}

/// An error and its causes on one line, as the commands print it.
fn chain_of(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(&format!(": {c}"));
        cause = c.source();
    }
    s
}

#[test]
fn host_files_are_never_group_or_world_writable() {
    let (root, tree) = apply(&[layer(&[
        E::File("open", 0o666, "x"),
        E::File("suid", 0o4777, "x"),
    ])]);
    let tree = tree.unwrap();
    for name in ["open", "suid"] {
        let mode = std::fs::metadata(root.path().join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777;
        assert_eq!(mode & 0o7022, 0, "{name} is {mode:o} on the host");
    }
    // The image's own modes are still what structure tests see.
    assert_eq!(tree.get("/open").unwrap().mode, 0o666);
    assert_eq!(tree.get("/suid").unwrap().mode, 0o4777);
}

#[test]
fn removing_a_path_visits_only_what_is_below_it() {
    let mut tree = Tree::new();
    let node = || Node {
        kind: FileKind::File,
        mode: 0o644,
        link: None,
    };
    for p in ["/a", "/a/b", "/a/b/c", "/a-b", "/a0", "/ab", "/b"] {
        tree.nodes.insert(p.to_owned(), node());
    }
    tree.remove("/a");
    let left: Vec<&str> = tree.nodes.keys().map(String::as_str).collect();
    assert_eq!(left, ["/", "/a-b", "/a0", "/ab", "/b"]);
}

#[test]
fn a_tree_deeper_than_the_open_files_limit_is_removed() {
    use rustix::fs::{Mode, OFlags, mkdirat, openat};
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let soft: u64 = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(1 << 16);
    // One level more than the descriptors a per-level removal could hold.
    let depth = soft.min(1 << 16) + 16;
    let dir = tempfile::Builder::new()
        .prefix("scratchpack-rootfs-deep-")
        .tempdir()
        .unwrap();
    let root = dir.path().to_owned();
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let mut fd = openat(rustix::fs::CWD, &root, flags, Mode::empty()).unwrap();
    for _ in 0..depth {
        mkdirat(&fd, c"d", Mode::from_raw_mode(0o755)).unwrap();
        fd = openat(&fd, c"d", flags, Mode::empty()).unwrap();
    }
    std::fs::write(
        format!(
            "/proc/self/fd/{}/leaf",
            std::os::fd::AsRawFd::as_raw_fd(&fd)
        ),
        b"x",
    )
    .unwrap();
    drop(fd);
    let unpacked = Unpacked {
        dir,
        tree: Tree::new(),
    };
    drop(unpacked);
    assert!(!root.exists(), "{} was left behind", root.display());
}

#[test]
fn images_toml_sets_only_the_limits_it_names() {
    let keys = crate::manifest::UnpackLimitKeys {
        max_entries: Some(1),
        max_depth: Some(3),
        ..Default::default()
    };
    assert_eq!(
        UnpackLimits::from_keys(&keys),
        UnpackLimits {
            max_entries: 1,
            max_depth: 3,
            ..UnpackLimits::default()
        }
    );
}
