//! Unpacking an image's layers, read from its OCI layout through
//! [`crate::oci::LayoutDir`] (which treats the layout as hostile), into a
//! private root directory for the sandbox (image tests and `run`), applying
//! changesets and whiteouts as image-spec `layer.md` says, and refusing
//! every entry that could reach outside that root.
//!
//! The unpacker writes each file itself rather than letting the `tar` crate
//! do it: it checks every parent of every path is a real directory (never a
//! symlink), so no entry can write through a link planted by an earlier one.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::fs::{File, Permissions};
use std::io::{ErrorKind, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::manifest::FileKind;
use crate::oci::error::MAX_BLOB_IN_MEMORY;
use crate::oci::{
    Config, Descriptor, Digest, LayerBlob, LayerTar, LayoutDir, PlatformSpec, ReadError,
};

/// Host mode of every directory the unpacker creates: the unpacking user must
/// be able to add entries, and the sandbox's outside uid (which is not the
/// owner when the caller is root) must be able to traverse it. The image's
/// own mode is kept in the [`Tree`] for structure tests.
const HOST_DIR_MODE: u32 = 0o755;

/// A layout or layer that could not be read or unpacked.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("reading the image layout {path}")]
    Layout {
        path: PathBuf,
        #[source]
        source: ReadError,
    },
    #[error("the image lists {layers} layers but its config has {diff_ids} diff_ids")]
    LayerCount { layers: usize, diff_ids: usize },
    #[error("layer {layer} unpacks to {actual}, but the config's diff_id is {expected}")]
    DiffId {
        layer: Digest,
        expected: Digest,
        actual: String,
    },
    #[error("reading layer {layer}")]
    Layer {
        layer: String,
        #[source]
        source: std::io::Error,
    },
    #[error("layer {layer}, entry `{path}`: {problem}")]
    Entry {
        layer: String,
        path: String,
        problem: EntryProblem,
    },
    #[error("creating a directory to unpack into")]
    TempDir(#[source] std::io::Error),
}

/// Why one layer entry was refused.
#[derive(Debug, thiserror::Error)]
pub enum EntryProblem {
    #[error("absolute paths are refused; layer paths are relative to the root")]
    Absolute,
    #[error("the path climbs out of the root with `..`")]
    Climbs,
    #[error("the path is not UTF-8")]
    NotUtf8,
    #[error("the symlink points to `{0}`, outside the image root")]
    SymlinkEscape(String),
    #[error("`{0}` is a symlink; the unpacker never writes through one")]
    ThroughSymlink(String),
    #[error("`{0}` is not a directory")]
    ParentNotDir(String),
    #[error("device nodes and fifos are refused in test images")]
    Device,
    #[error("the hard link target `{0}` is not a regular file unpacked before it")]
    HardlinkTarget(String),
    #[error("entries of type {0:?} are not supported")]
    Unsupported(tar::EntryType),
    #[error("{0}")]
    Limit(String),
    #[error("{0}")]
    Io(#[source] std::io::Error),
}

/// One platform's image as the layout holds it.
#[derive(Debug, Clone)]
pub struct PlatformImage {
    pub platform: PlatformSpec,
    pub manifest: Digest,
    pub config: Config,
    layers: Vec<Descriptor>,
}

/// Every platform image the layout at `dir` holds, following `index.json`
/// through any image index, each once however many tags name it. The layout
/// is read as hostile input by [`LayoutDir`]: every document is bounded and
/// checked against its digest.
pub fn read_layout(dir: &Path) -> Result<Vec<PlatformImage>, UnpackError> {
    let layout = open(dir)?;
    let images = crate::oci::source::resolve_all(&layout).map_err(layout_error(dir))?;
    Ok(images
        .into_iter()
        .map(|i| PlatformImage {
            platform: i.platform,
            manifest: i.manifest_digest,
            layers: i.manifest.layers,
            config: i.config,
        })
        .collect())
}

fn open(dir: &Path) -> Result<LayoutDir, UnpackError> {
    LayoutDir::open(dir).map_err(layout_error(dir))
}

fn layout_error(dir: &Path) -> impl FnOnce(ReadError) -> UnpackError + '_ {
    move |source| UnpackError::Layout {
        path: dir.to_owned(),
        source,
    }
}

/// What an unpacked path is, as the layer's tar header said: the mode is the
/// image's (set-id bits included), not the host file's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: FileKind,
    pub mode: u32,
    /// The target, for a symlink.
    pub link: Option<String>,
}

/// Every path of an unpacked image (`/`-rooted) and what it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tree {
    pub nodes: BTreeMap<String, Node>,
}

impl Tree {
    fn new() -> Tree {
        let mut nodes = BTreeMap::new();
        nodes.insert(
            "/".to_owned(),
            Node {
                kind: FileKind::Dir,
                mode: HOST_DIR_MODE,
                link: None,
            },
        );
        Tree { nodes }
    }

    pub fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.get(path)
    }

    /// The entry `path` names as a process inside the image finds it, and
    /// its resolved path: symlinks among the parents are followed (a relative
    /// target from its directory, an absolute one from the image's root, and
    /// `..` stops at the root), the last component too when `follow_last`.
    /// At most 40 links are followed, as Linux allows.
    pub fn lookup(&self, path: &str, follow_last: bool) -> Option<(String, &Node)> {
        fn parts(p: &str) -> VecDeque<String> {
            p.split('/')
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect()
        }
        let mut pending = parts(path);
        let mut resolved: Vec<String> = Vec::new();
        let mut links = 0;
        while let Some(part) = pending.pop_front() {
            match part.as_str() {
                "." => continue,
                ".." => {
                    resolved.pop();
                    continue;
                }
                _ => resolved.push(part),
            }
            let here = format!("/{}", resolved.join("/"));
            let node = self.nodes.get(&here)?;
            if node.kind == FileKind::Symlink && (follow_last || !pending.is_empty()) {
                links += 1;
                if links > 40 {
                    return None;
                }
                let target = node.link.as_deref()?;
                resolved.pop();
                if target.starts_with('/') {
                    resolved.clear();
                }
                let mut next = parts(target);
                next.extend(pending);
                pending = next;
            }
        }
        let here = format!("/{}", resolved.join("/"));
        let node = self.nodes.get(&here)?;
        Some((here, node))
    }

    /// Forgets `path` and everything under it. Descendants sort between
    /// `path/` and `path0` (`0` follows `/`), so only they are visited: a
    /// layer of many files unpacks in time linear in its entries.
    fn remove(&mut self, path: &str) {
        self.nodes.remove(path);
        let below: Vec<String> = self
            .nodes
            .range(format!("{path}/")..format!("{path}0"))
            .map(|(p, _)| p.clone())
            .collect();
        for p in below {
            self.nodes.remove(&p);
        }
    }
}

/// Bounds on what unpacking one image may cost, whatever its layers say.
/// A layer is untrusted input: a few megabytes of gzip can expand to
/// gigabytes, a PAX header can name a path of any length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct UnpackLimits {
    /// Uncompressed bytes of all layers together (tar headers included).
    pub max_bytes: u64,
    /// Entries of all layers together.
    pub max_entries: u64,
    /// Components of any one path.
    pub max_depth: usize,
    /// Bytes of any one path or link target (Linux's `PATH_MAX` is 4096).
    pub max_name_bytes: usize,
    /// Bytes of any one PAX extended header.
    pub max_pax_bytes: u64,
}

impl Default for UnpackLimits {
    fn default() -> UnpackLimits {
        UnpackLimits {
            max_bytes: 2 << 30,
            max_entries: 100_000,
            max_depth: 64,
            max_name_bytes: 4096,
            max_pax_bytes: 64 << 10,
        }
    }
}

/// What the layers of one image have used of its [`UnpackLimits`] so far.
#[derive(Debug)]
struct Budget {
    limits: UnpackLimits,
    bytes: u64,
    entries: u64,
}

impl Budget {
    fn new(limits: UnpackLimits) -> Budget {
        Budget {
            limits,
            bytes: 0,
            entries: 0,
        }
    }
}

/// An image unpacked into a private temporary directory, removed on drop.
#[derive(Debug)]
pub struct Unpacked {
    dir: tempfile::TempDir,
    pub tree: Tree,
}

impl Drop for Unpacked {
    fn drop(&mut self) {
        // Before the temporary directory's own removal, which holds a
        // descriptor per level and so fails on a tree deeper than the
        // open-files limit. What is left (nothing) it removes itself.
        let _ = remove_tree(self.dir.path());
    }
}

/// Removes the directory `root` and everything in it, never following a
/// symlink, with at most three descriptors open however deep the tree is:
/// it descends one directory at a time by name and climbs back with `..`.
pub fn remove_tree(root: &Path) -> std::io::Result<()> {
    use rustix::fs::{AtFlags, Dir, Mode, OFlags, openat, unlinkat};
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut dir = openat(rustix::fs::CWD, root, flags, Mode::empty())?;
    // The names of the directories descended into, outermost first.
    let mut path: Vec<std::ffi::CString> = Vec::new();
    loop {
        let mut subdir = None;
        for entry in Dir::read_from(&dir)? {
            let entry = entry?;
            let name = entry.file_name();
            if name == c"." || name == c".." {
                continue;
            }
            if entry.file_type() == rustix::fs::FileType::Directory {
                subdir.get_or_insert_with(|| name.to_owned());
            } else {
                unlinkat(&dir, name, AtFlags::empty())?;
            }
        }
        match subdir {
            Some(name) => {
                dir = openat(&dir, &name, flags, Mode::empty())?;
                path.push(name);
            }
            None => {
                let Some(name) = path.pop() else { break };
                dir = openat(&dir, c"..", flags, Mode::empty())?;
                unlinkat(&dir, &name, AtFlags::REMOVEDIR)?;
            }
        }
    }
    drop(dir);
    std::fs::remove_dir(root)
}

impl Unpacked {
    /// The root directory to hand to the sandbox.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }
}

/// Unpacks every layer of `image` (read from the layout at `layout`), in
/// order, into a new temporary directory, within `limits`.
pub fn unpack(
    layout: &Path,
    image: &PlatformImage,
    limits: &UnpackLimits,
) -> Result<Unpacked, UnpackError> {
    let dir = tempfile::Builder::new()
        .prefix("scratchpack-rootfs-")
        .tempdir()
        .map_err(UnpackError::TempDir)?;
    std::fs::set_permissions(dir.path(), Permissions::from_mode(HOST_DIR_MODE))
        .map_err(UnpackError::TempDir)?;
    let diff_ids = &image.config.rootfs.diff_ids;
    if diff_ids.len() != image.layers.len() {
        return Err(UnpackError::LayerCount {
            layers: image.layers.len(),
            diff_ids: diff_ids.len(),
        });
    }
    let mut tree = Tree::new();
    let mut budget = Budget::new(*limits);
    let source = open(layout)?;
    for (layer, diff_id) in image.layers.iter().zip(diff_ids) {
        let blob =
            LayerBlob::read(&source, layer, MAX_BLOB_IN_MEMORY).map_err(layout_error(layout))?;
        let actual = apply_layer(&blob, dir.path(), &mut tree, &mut budget)?;
        if actual != *diff_id {
            return Err(UnpackError::DiffId {
                layer: layer.digest.clone(),
                expected: diff_id.clone(),
                actual: actual.to_string(),
            });
        }
    }
    Ok(Unpacked { dir, tree })
}

/// A name for error messages: never more than a line, however long the
/// layer made it.
fn shown(name: &[u8]) -> String {
    const SHOWN: usize = 200;
    if name.len() <= SHOWN {
        return String::from_utf8_lossy(name).into_owned();
    }
    format!(
        "{}… ({} bytes)",
        String::from_utf8_lossy(&name[..SHOWN]),
        name.len()
    )
}

/// A path and a link target a PAX header gives the entry after it.
type PaxNames = (Option<Vec<u8>>, Option<Vec<u8>>);

/// The `path` and `linkpath` records of a PAX extended header (POSIX
/// `pax` "extended header"): `"%d %s=%s\n"`, the length counting the whole
/// record. Other keys are ignored, except `size`, which the unpacker does not
/// honour and so refuses.
fn pax_records(data: &[u8]) -> Result<PaxNames, EntryProblem> {
    let bad = || EntryProblem::Limit("malformed PAX extended header".to_owned());
    let (mut path, mut link) = (None, None);
    let mut rest = data;
    while !rest.is_empty() {
        let space = rest.iter().position(|b| *b == b' ').ok_or_else(bad)?;
        let len: usize = std::str::from_utf8(&rest[..space])
            .ok()
            .and_then(|n| n.parse().ok())
            .ok_or_else(bad)?;
        if len <= space + 1 || len > rest.len() || rest[len - 1] != b'\n' {
            return Err(bad());
        }
        let record = &rest[space + 1..len - 1];
        let eq = record.iter().position(|b| *b == b'=').ok_or_else(bad)?;
        let (key, value) = (&record[..eq], &record[eq + 1..]);
        match key {
            b"path" => path = Some(value.to_vec()),
            b"linkpath" => link = Some(value.to_vec()),
            b"size" => {
                return Err(EntryProblem::Limit(
                    "PAX `size` records are not supported".to_owned(),
                ));
            }
            _ => {}
        }
        rest = &rest[len..];
    }
    Ok((path, link))
}

/// Reads the whole of a metadata entry (a PAX header or a GNU long name),
/// refusing one larger than `limit` before reading any of it.
fn read_meta<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    limit: u64,
    what: &str,
) -> Result<Vec<u8>, EntryProblem> {
    let size = entry.header().entry_size().map_err(EntryProblem::Io)?;
    if size > limit {
        return Err(EntryProblem::Limit(format!(
            "{what} of {size} bytes is over the unpack limit of {limit} bytes"
        )));
    }
    let mut data = Vec::with_capacity(size as usize);
    entry.read_to_end(&mut data).map_err(EntryProblem::Io)?;
    Ok(data)
}

/// Drops the NULs a GNU long name or link name ends with.
fn trim_nul(mut name: Vec<u8>) -> Vec<u8> {
    while name.last() == Some(&0) {
        name.pop();
    }
    name
}

/// Unpacks `blob` over `root` within what is left of the budget's bytes,
/// and gives its diff_id.
fn apply_layer(
    blob: &LayerBlob,
    root: &Path,
    tree: &mut Tree,
    budget: &mut Budget,
) -> Result<Digest, UnpackError> {
    let layer = blob.descriptor.digest.as_str();
    let mut tar = blob.tar(
        budget.limits.max_bytes.saturating_sub(budget.bytes),
        |limit| {
            format!(
                "the image's layers unpack to more than {limit} bytes, the unpack limit `max-bytes`"
            )
        },
    );
    unpack_layer(&mut tar, layer, root, tree, budget)?;
    // The diff_id covers the whole tar, padding after the last entry included.
    let (diff_id, size) = tar.finish().map_err(|source| UnpackError::Layer {
        layer: layer.to_owned(),
        source,
    })?;
    budget.bytes += size;
    Ok(diff_id)
}

/// Unpacks one layer's tar over `root`, recording what each path is in
/// `tree`. `layer` names the layer in errors. Metadata entries (PAX headers,
/// GNU long names) are read here, each bounded, rather than by the `tar`
/// crate, which would read them whole whatever their size.
fn unpack_layer(
    tar: &mut LayerTar<'_>,
    layer: &str,
    root: &Path,
    tree: &mut Tree,
    budget: &mut Budget,
) -> Result<(), UnpackError> {
    let layer_err = |source| UnpackError::Layer {
        layer: layer.to_owned(),
        source,
    };
    let limits = budget.limits;
    let mut archive = tar::Archive::new(tar);
    // Paths this layer added: an opaque whiteout hides lower layers only.
    let mut added: HashSet<String> = HashSet::new();
    // Names a PAX header or GNU long-name entry gives the entry after it.
    let mut next_path: Option<Vec<u8>> = None;
    let mut next_link: Option<Vec<u8>> = None;
    for entry in archive.entries().map_err(layer_err)?.raw(true) {
        let mut entry = entry.map_err(layer_err)?;
        budget.entries += 1;
        let header_name = entry.path_bytes().into_owned();
        let meta_err = |problem| UnpackError::Entry {
            layer: layer.to_owned(),
            path: shown(&header_name),
            problem,
        };
        if budget.entries > limits.max_entries {
            return Err(meta_err(EntryProblem::Limit(format!(
                "the image has more than {} entries, the unpack limit `max-entries`",
                limits.max_entries
            ))));
        }
        let kind = entry.header().entry_type();
        let name_limit = limits.max_name_bytes as u64 + 1;
        match kind {
            tar::EntryType::XHeader => {
                let data = read_meta(&mut entry, limits.max_pax_bytes, "a PAX header")
                    .map_err(meta_err)?;
                let (path, link) = pax_records(&data).map_err(meta_err)?;
                next_path = path.or(next_path);
                next_link = link.or(next_link);
                continue;
            }
            tar::EntryType::XGlobalHeader => {
                read_meta(&mut entry, limits.max_pax_bytes, "a PAX global header")
                    .map_err(meta_err)?;
                continue;
            }
            tar::EntryType::GNULongName => {
                next_path = Some(trim_nul(
                    read_meta(&mut entry, name_limit, "a long name").map_err(meta_err)?,
                ));
                continue;
            }
            tar::EntryType::GNULongLink => {
                next_link = Some(trim_nul(
                    read_meta(&mut entry, name_limit, "a long link name").map_err(meta_err)?,
                ));
                continue;
            }
            _ => {}
        }
        let path_bytes = next_path.take().unwrap_or(header_name);
        let link_bytes = match next_link.take() {
            Some(link) => Some(link),
            None => entry.link_name_bytes().map(|l| l.into_owned()),
        };
        let raw = shown(&path_bytes);
        let err = |problem| UnpackError::Entry {
            layer: layer.to_owned(),
            path: raw.clone(),
            problem,
        };
        for name in std::iter::once(&path_bytes).chain(link_bytes.as_ref()) {
            if name.len() > limits.max_name_bytes {
                return Err(err(EntryProblem::Limit(format!(
                    "a name of {} bytes is over the unpack limit `max-name-bytes` of {}",
                    name.len(),
                    limits.max_name_bytes
                ))));
            }
        }
        let Ok(raw) = String::from_utf8(path_bytes) else {
            return Err(err(EntryProblem::NotUtf8));
        };
        let parts = entry_path(&raw).map_err(err)?;
        if parts.len() > limits.max_depth {
            return Err(err(EntryProblem::Limit(format!(
                "{} levels deep, over the unpack limit `max-depth` of {}",
                parts.len(),
                limits.max_depth
            ))));
        }
        let mode = entry
            .header()
            .mode()
            .map_err(|e| err(EntryProblem::Io(e)))?
            & 0o7777;
        let Some((name, parents)) = parts.split_last() else {
            // `./` itself: the root's mode.
            if kind.is_dir() {
                tree.nodes.insert(
                    "/".to_owned(),
                    Node {
                        kind: FileKind::Dir,
                        mode,
                        link: None,
                    },
                );
            }
            continue;
        };
        if name == ".wh..wh..opq" {
            if let Some(dir) = existing_dir(root, parents).map_err(err)? {
                clear_lower(&dir, &absolute(parents), &added, tree)
                    .map_err(|e| err(EntryProblem::Io(e)))?;
            }
            continue;
        }
        if let Some(hidden) = name.strip_prefix(".wh.") {
            if matches!(hidden, "" | "." | "..") {
                return Err(err(EntryProblem::Climbs));
            }
            if let Some(dir) = existing_dir(root, parents).map_err(err)? {
                remove_any(&dir.join(hidden)).map_err(|e| err(EntryProblem::Io(e)))?;
            }
            tree.remove(&absolute(&[parents, &[hidden.to_owned()]].concat()));
            continue;
        }
        let dir = real_dir(root, parents, tree).map_err(err)?;
        let abs = absolute(&parts);
        let host = dir.join(name);

        let node = match kind {
            tar::EntryType::Directory => {
                let is_dir = std::fs::symlink_metadata(&host).is_ok_and(|m| m.is_dir());
                if !is_dir {
                    replace(&host, &abs, tree).map_err(err)?;
                    create_dir(&host).map_err(|e| err(EntryProblem::Io(e)))?;
                }
                Node {
                    kind: FileKind::Dir,
                    mode,
                    link: None,
                }
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                replace(&host, &abs, tree).map_err(err)?;
                // Set-id and sticky bits never reach the host file, and
                // neither does write access for anyone but the unpacking
                // user: while tests run, no other user may change the image.
                let host_mode = mode & 0o755;
                let mut file = File::options()
                    .write(true)
                    .create_new(true)
                    .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                    .mode(host_mode)
                    .open(&host)
                    .map_err(|e| err(EntryProblem::Io(e)))?;
                std::io::copy(&mut entry, &mut file).map_err(|e| err(EntryProblem::Io(e)))?;
                // The mode given at creation was narrowed by the umask.
                file.set_permissions(Permissions::from_mode(host_mode))
                    .map_err(|e| err(EntryProblem::Io(e)))?;
                Node {
                    kind: FileKind::File,
                    mode,
                    link: None,
                }
            }
            tar::EntryType::Symlink => {
                let target = link_bytes
                    .as_deref()
                    .map(|t| String::from_utf8_lossy(t).into_owned())
                    .unwrap_or_default();
                check_link_target(parents, &target).map_err(err)?;
                replace(&host, &abs, tree).map_err(err)?;
                std::os::unix::fs::symlink(&target, &host).map_err(|e| err(EntryProblem::Io(e)))?;
                Node {
                    kind: FileKind::Symlink,
                    mode,
                    link: Some(target),
                }
            }
            tar::EntryType::Link => {
                let target = link_bytes
                    .as_deref()
                    .map(|t| String::from_utf8_lossy(t).into_owned())
                    .unwrap_or_default();
                let target_parts = entry_path(&target).map_err(err)?;
                let target_abs = absolute(&target_parts);
                let source = match tree.get(&target_abs) {
                    Some(n) if n.kind == FileKind::File => n.clone(),
                    _ => return Err(err(EntryProblem::HardlinkTarget(target))),
                };
                let (target_name, target_parents) =
                    target_parts.split_last().expect("a file is never the root");
                let target_host = real_dir(root, target_parents, tree)
                    .map_err(err)?
                    .join(target_name);
                replace(&host, &abs, tree).map_err(err)?;
                // linkat without AT_SYMLINK_FOLLOW: a symlink is never followed.
                std::fs::hard_link(&target_host, &host).map_err(|e| err(EntryProblem::Io(e)))?;
                source
            }
            tar::EntryType::Block | tar::EntryType::Char | tar::EntryType::Fifo => {
                return Err(err(EntryProblem::Device));
            }
            other => return Err(err(EntryProblem::Unsupported(other))),
        };
        tree.nodes.insert(abs.clone(), node);
        added.insert(abs);
    }
    Ok(())
}

/// The components of a layer entry's path, refusing absolute paths and `..`.
/// `./` prefixes and empty or `.` components are dropped.
fn entry_path(raw: &str) -> Result<Vec<String>, EntryProblem> {
    if raw.starts_with('/') {
        return Err(EntryProblem::Absolute);
    }
    let mut parts = Vec::new();
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(EntryProblem::Climbs),
            p => parts.push(p.to_owned()),
        }
    }
    Ok(parts)
}

fn absolute(parts: &[String]) -> String {
    format!("/{}", parts.join("/"))
}

/// The host path of the directory `parents` names under `root`, creating
/// missing directories, and refusing any component that exists as anything
/// but a real directory: the unpacker never follows a symlink.
fn real_dir(root: &Path, parents: &[String], tree: &mut Tree) -> Result<PathBuf, EntryProblem> {
    let mut host = root.to_path_buf();
    for (i, part) in parents.iter().enumerate() {
        host.push(part);
        let abs = absolute(&parents[..=i]);
        match std::fs::symlink_metadata(&host) {
            Ok(m) if m.is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => return Err(EntryProblem::ThroughSymlink(abs)),
            Ok(_) => return Err(EntryProblem::ParentNotDir(abs)),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                create_dir(&host).map_err(EntryProblem::Io)?;
                // A directory a layer implies without listing gets the
                // conventional mode, as other unpackers give it.
                tree.nodes.insert(
                    abs,
                    Node {
                        kind: FileKind::Dir,
                        mode: HOST_DIR_MODE,
                        link: None,
                    },
                );
            }
            Err(e) => return Err(EntryProblem::Io(e)),
        }
    }
    Ok(host)
}

/// Like [`real_dir`], without creating anything: `None` when a component
/// is missing.
fn existing_dir(root: &Path, parents: &[String]) -> Result<Option<PathBuf>, EntryProblem> {
    let mut host = root.to_path_buf();
    for (i, part) in parents.iter().enumerate() {
        host.push(part);
        match std::fs::symlink_metadata(&host) {
            Ok(m) if m.is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => {
                return Err(EntryProblem::ThroughSymlink(absolute(&parents[..=i])));
            }
            Ok(_) => return Err(EntryProblem::ParentNotDir(absolute(&parents[..=i]))),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(EntryProblem::Io(e)),
        }
    }
    Ok(Some(host))
}

fn create_dir(path: &Path) -> std::io::Result<()> {
    std::fs::create_dir(path)?;
    std::fs::set_permissions(path, Permissions::from_mode(HOST_DIR_MODE))
}

/// Removes whatever is at `host` (a later layer's entry replaces it).
fn replace(host: &Path, abs: &str, tree: &mut Tree) -> Result<(), EntryProblem> {
    remove_any(host).map_err(EntryProblem::Io)?;
    tree.remove(abs);
    Ok(())
}

/// Removes a file, symlink (never its target) or whole directory.
fn remove_any(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// An opaque whiteout: removes everything under `dir` that lower layers put
/// there, keeping what this layer added.
fn clear_lower(
    dir: &Path,
    abs: &str,
    added: &HashSet<String>,
    tree: &mut Tree,
) -> std::io::Result<()> {
    for child in std::fs::read_dir(dir)? {
        let child = child?;
        let name = child.file_name();
        let child_abs = if abs == "/" {
            format!("/{}", name.to_string_lossy())
        } else {
            format!("{abs}/{}", name.to_string_lossy())
        };
        if !added.contains(&child_abs) {
            remove_any(&child.path())?;
            tree.remove(&child_abs);
        } else if child.file_type()?.is_dir() {
            clear_lower(&child.path(), &child_abs, added, tree)?;
        }
    }
    Ok(())
}

/// Refuses a symlink whose relative target climbs above the image root from
/// the directory `parents` it is in. An absolute target stays inside the
/// root once the sandbox has made it `/`, and the unpacker never follows
/// links on the host, so it is allowed.
fn check_link_target(parents: &[String], target: &str) -> Result<(), EntryProblem> {
    if target.is_empty() || target.contains('\0') {
        return Err(EntryProblem::SymlinkEscape(target.to_owned()));
    }
    if target.starts_with('/') {
        return Ok(());
    }
    let mut depth = parents.len();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| EntryProblem::SymlinkEscape(target.to_owned()))?;
            }
            _ => depth += 1,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
