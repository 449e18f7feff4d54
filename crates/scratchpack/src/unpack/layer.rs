//! One layer applied over the root (image-spec `layer.md`, "Applying
//! Changesets"): each entry's names checked against the limits and the
//! root, whiteouts applied, and the entry written by the unpacker itself,
//! never through a symlink.

use std::collections::HashSet;
use std::fs::{File, Permissions};
use std::io::{ErrorKind, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::error::{EntryProblem, UnpackError};
use super::limits::{Budget, UnpackLimits};
use super::tree::{HOST_DIR_MODE, Node, Tree};
use crate::manifest::FileKind;
use crate::oci::{Digest, LayerBlob, LayerTar};

/// Unpacks `blob` over `root` within what is left of the budget's bytes,
/// and gives its diff_id.
pub(super) fn apply_layer(
    blob: &LayerBlob,
    root: &Path,
    tree: &mut Tree,
    budget: &mut Budget,
) -> Result<Digest, UnpackError> {
    let layer = blob.descriptor.digest.as_str();
    let mut tar = blob.tar(budget.bytes_left(), |limit| {
        format!(
            "the image's layers unpack to more than {limit} bytes, the unpack limit `max-bytes`"
        )
    });
    let mut applying = Applying {
        root,
        tree,
        added: HashSet::new(),
    };
    applying.entries(&mut tar, layer, budget)?;
    // The diff_id covers the whole tar, padding after the last entry included.
    let (diff_id, size) = tar.finish().map_err(|source| UnpackError::Layer {
        layer: layer.to_owned(),
        source,
    })?;
    budget.bytes += size;
    Ok(diff_id)
}

/// One layer being applied over the root.
struct Applying<'a> {
    root: &'a Path,
    tree: &'a mut Tree,
    /// Paths this layer added: an opaque whiteout hides lower layers only.
    added: HashSet<String>,
}

impl Applying<'_> {
    /// Unpacks every entry of the layer's tar, counting them against the
    /// budget. `layer` names the layer in errors. Metadata entries (PAX
    /// headers, GNU long names) are read here, each bounded, rather than by
    /// the `tar` crate, which would read them whole whatever their size.
    fn entries(
        &mut self,
        tar: &mut LayerTar<'_>,
        layer: &str,
        budget: &mut Budget,
    ) -> Result<(), UnpackError> {
        let layer_err = |source| UnpackError::Layer {
            layer: layer.to_owned(),
            source,
        };
        let entry_err = |name: &[u8], problem| UnpackError::Entry {
            layer: layer.to_owned(),
            path: shown(name),
            problem,
        };
        let limits = budget.limits;
        let mut archive = tar::Archive::new(tar);
        let mut names = LongNames::default();
        for entry in archive.entries().map_err(layer_err)?.raw(true) {
            let mut entry = entry.map_err(layer_err)?;
            budget.entries += 1;
            let header_name = entry.path_bytes().into_owned();
            if budget.entries > limits.max_entries {
                return Err(entry_err(
                    &header_name,
                    EntryProblem::Limit(format!(
                        "the image has more than {} entries, the unpack limit `max-entries`",
                        limits.max_entries
                    )),
                ));
            }
            match names.read(&mut entry, &limits) {
                Ok(true) => continue,
                Ok(false) => {}
                Err(problem) => return Err(entry_err(&header_name, problem)),
            }
            let (path, link) = names.take(&entry, header_name);
            self.entry(&mut entry, &path, link, &limits)
                .map_err(|problem| entry_err(&path, problem))?;
        }
        Ok(())
    }

    /// Applies one entry that is not a metadata entry, named `path` (and
    /// `link`, for links) by its header or the metadata before it.
    fn entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        path: &[u8],
        link: Option<Vec<u8>>,
        limits: &UnpackLimits,
    ) -> Result<(), EntryProblem> {
        let parts = checked_path(path, link.as_deref(), limits)?;
        let kind = entry.header().entry_type();
        let mode = entry.header().mode().map_err(EntryProblem::Io)? & 0o7777;
        let Some((name, parents)) = parts.split_last() else {
            // `./` itself: the root's mode.
            if kind.is_dir() {
                self.tree.nodes.insert(
                    "/".to_owned(),
                    Node {
                        kind: FileKind::Dir,
                        mode,
                        link: None,
                    },
                );
            }
            return Ok(());
        };
        if self.whiteout(parents, name)? {
            return Ok(());
        }
        let dir = real_dir(self.root, parents, self.tree)?;
        let abs = absolute(&parts);
        let host = dir.join(name);
        let target = || {
            link.as_deref()
                .map(|t| String::from_utf8_lossy(t).into_owned())
                .unwrap_or_default()
        };
        let node = match kind {
            tar::EntryType::Directory => self.directory(&host, &abs, mode)?,
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                self.file(entry, &host, &abs, mode)?
            }
            tar::EntryType::Symlink => self.symlink(parents, &host, &abs, mode, target())?,
            tar::EntryType::Link => self.hardlink(&host, &abs, target())?,
            tar::EntryType::Block | tar::EntryType::Char | tar::EntryType::Fifo => {
                return Err(EntryProblem::Device);
            }
            other => return Err(EntryProblem::Unsupported(other)),
        };
        self.tree.nodes.insert(abs.clone(), node);
        self.added.insert(abs);
        Ok(())
    }

    /// Applies `name` in `parents` when it is a whiteout (image-spec
    /// "Whiteouts"): an opaque one clears what lower layers put in the
    /// directory, any other removes the path it names. `false` for any other
    /// name.
    fn whiteout(&mut self, parents: &[String], name: &str) -> Result<bool, EntryProblem> {
        if name == ".wh..wh..opq" {
            if let Some(dir) = existing_dir(self.root, parents)? {
                clear_lower(&dir, &absolute(parents), &self.added, self.tree)
                    .map_err(EntryProblem::Io)?;
            }
            return Ok(true);
        }
        let Some(hidden) = name.strip_prefix(".wh.") else {
            return Ok(false);
        };
        if matches!(hidden, "" | "." | "..") {
            return Err(EntryProblem::Climbs);
        }
        if let Some(dir) = existing_dir(self.root, parents)? {
            remove_any(&dir.join(hidden)).map_err(EntryProblem::Io)?;
        }
        self.tree
            .remove(&absolute(&[parents, &[hidden.to_owned()]].concat()));
        Ok(true)
    }

    fn directory(&mut self, host: &Path, abs: &str, mode: u32) -> Result<Node, EntryProblem> {
        let is_dir = std::fs::symlink_metadata(host).is_ok_and(|m| m.is_dir());
        if !is_dir {
            replace(host, abs, self.tree)?;
            create_dir(host).map_err(EntryProblem::Io)?;
        }
        Ok(Node {
            kind: FileKind::Dir,
            mode,
            link: None,
        })
    }

    fn file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        host: &Path,
        abs: &str,
        mode: u32,
    ) -> Result<Node, EntryProblem> {
        replace(host, abs, self.tree)?;
        // Set-id and sticky bits never reach the host file, and neither does
        // write access for anyone but the unpacking user: while tests run, no
        // other user may change the image.
        let host_mode = mode & 0o755;
        let mut file = File::options()
            .write(true)
            .create_new(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .mode(host_mode)
            .open(host)
            .map_err(EntryProblem::Io)?;
        std::io::copy(entry, &mut file).map_err(EntryProblem::Io)?;
        // The mode given at creation was narrowed by the umask.
        file.set_permissions(Permissions::from_mode(host_mode))
            .map_err(EntryProblem::Io)?;
        Ok(Node {
            kind: FileKind::File,
            mode,
            link: None,
        })
    }

    fn symlink(
        &mut self,
        parents: &[String],
        host: &Path,
        abs: &str,
        mode: u32,
        target: String,
    ) -> Result<Node, EntryProblem> {
        check_link_target(parents, &target)?;
        replace(host, abs, self.tree)?;
        std::os::unix::fs::symlink(&target, host).map_err(EntryProblem::Io)?;
        Ok(Node {
            kind: FileKind::Symlink,
            mode,
            link: Some(target),
        })
    }

    /// A hard link to a regular file this image unpacked before; the new
    /// path is what its target is.
    fn hardlink(&mut self, host: &Path, abs: &str, target: String) -> Result<Node, EntryProblem> {
        let target_parts = entry_path(&target)?;
        let target_abs = absolute(&target_parts);
        let source = match self.tree.get(&target_abs) {
            Some(n) if n.kind == FileKind::File => n.clone(),
            _ => return Err(EntryProblem::HardlinkTarget(target)),
        };
        let (target_name, target_parents) =
            target_parts.split_last().expect("a file is never the root");
        let target_host = real_dir(self.root, target_parents, self.tree)?.join(target_name);
        replace(host, abs, self.tree)?;
        // linkat without AT_SYMLINK_FOLLOW: a symlink is never followed.
        std::fs::hard_link(&target_host, host).map_err(EntryProblem::Io)?;
        Ok(source)
    }
}

/// Names a PAX header or GNU long-name entry gives the entry after it.
#[derive(Default)]
struct LongNames {
    path: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
}

impl LongNames {
    /// Reads `entry` when it is a metadata entry, keeping the names it gives
    /// for the entry after it; `false` for any other entry.
    fn read<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        limits: &UnpackLimits,
    ) -> Result<bool, EntryProblem> {
        let name_limit = limits.max_name_bytes as u64 + 1;
        match entry.header().entry_type() {
            tar::EntryType::XHeader => {
                let data = read_meta(entry, limits.max_pax_bytes, "a PAX header")?;
                let (path, link) = pax_records(&data)?;
                self.path = path.or(self.path.take());
                self.link = link.or(self.link.take());
            }
            tar::EntryType::XGlobalHeader => {
                read_meta(entry, limits.max_pax_bytes, "a PAX global header")?;
            }
            tar::EntryType::GNULongName => {
                self.path = Some(trim_nul(read_meta(entry, name_limit, "a long name")?));
            }
            tar::EntryType::GNULongLink => {
                self.link = Some(trim_nul(read_meta(entry, name_limit, "a long link name")?));
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The path and link target of `entry`: those the metadata before it
    /// gave, else its header's own.
    fn take<R: Read>(
        &mut self,
        entry: &tar::Entry<'_, R>,
        header_name: Vec<u8>,
    ) -> (Vec<u8>, Option<Vec<u8>>) {
        let path = self.path.take().unwrap_or(header_name);
        let link = match self.link.take() {
            Some(link) => Some(link),
            None => entry.link_name_bytes().map(|l| l.into_owned()),
        };
        (path, link)
    }
}

/// The components of an entry's path, once its names are within
/// `max-name-bytes`, its path is UTF-8, stays inside the root and is within
/// `max-depth`.
fn checked_path(
    path: &[u8],
    link: Option<&[u8]>,
    limits: &UnpackLimits,
) -> Result<Vec<String>, EntryProblem> {
    for name in std::iter::once(path).chain(link) {
        if name.len() > limits.max_name_bytes {
            return Err(EntryProblem::Limit(format!(
                "a name of {} bytes is over the unpack limit `max-name-bytes` of {}",
                name.len(),
                limits.max_name_bytes
            )));
        }
    }
    let raw = std::str::from_utf8(path).map_err(|_| EntryProblem::NotUtf8)?;
    let parts = entry_path(raw)?;
    if parts.len() > limits.max_depth {
        return Err(EntryProblem::Limit(format!(
            "{} levels deep, over the unpack limit `max-depth` of {}",
            parts.len(),
            limits.max_depth
        )));
    }
    Ok(parts)
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
