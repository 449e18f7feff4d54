//! Unpacking an image's layers, read from its OCI layout through
//! [`crate::oci::LayoutDir`] (which treats the layout as hostile), into a
//! private root directory for the sandbox (image tests and `run`), applying
//! changesets and whiteouts as image-spec `layer.md` says, and refusing
//! every entry that could reach outside that root.
//!
//! The unpacker writes each file itself rather than letting the `tar` crate
//! do it: it checks every parent of every path is a real directory (never a
//! symlink), so no entry can write through a link planted by an earlier one.

mod error;
mod layer;
mod limits;
mod tree;

use std::fs::Permissions;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

pub use error::{EntryProblem, UnpackError};
use layer::apply_layer;
use limits::Budget;
pub use limits::UnpackLimits;
use tree::HOST_DIR_MODE;
pub use tree::{Node, Tree};

use crate::oci::error::MAX_BLOB_IN_MEMORY;
use crate::oci::{Config, Descriptor, Digest, LayerBlob, LayoutDir, PlatformSpec, ReadError};

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

#[cfg(test)]
mod tests;
