//! The image archive: one tar that is both an OCI image layout
//! (image-spec `image-layout.md`, for `oci-archive:`) and a docker archive
//! (docker's "save" format: `manifest.json` with `RepoTags`, whose paths point
//! into `blobs/sha256/`), and the reader of such a tar as a [`Source`].
//!
//! docker's and podman's stores hold one platform per name, and the tools
//! that load an archive disagree on which platform of an index to take
//! (podman's `oci-archive:` takes the host's, `manifest.json` names one). So
//! the archive holds exactly one platform, the first images.toml lists,
//! and its `index.json` and `manifest.json` both point at it: every loader
//! loads the same image on every host, and the archive is as reproducible as
//! the layout. Every platform stays available through the layout directory
//! and `push`.
//!
//! Names are full references (`[registry/]repository:tag`), once per tag, in
//! both files: podman names an archive loaded through `index.json` by its
//! `org.opencontainers.image.ref.name`, and one loaded through
//! `manifest.json` by its `RepoTags` (it takes that path when `index.json`
//! lists more than one entry), so either way each image keeps its own name.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufReader;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::{
    MAX_BLOB_IN_MEMORY, MAX_JSON, ReadError, blob_path, check_size, read_bounded, verify,
};
use super::image::{Image, ImageSet};
use super::layout::{index_json, oci_layout};
use super::source::{Resolved, Source};
use super::{Blob, Descriptor, Digest, PlatformSpec, canonical_json, tar};

/// docker's `manifest.json` entry (docker image spec, "save" format).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DockerEntry {
    pub config: String,
    #[serde(default)]
    pub repo_tags: Vec<String>,
    pub layers: Vec<String>,
}

/// The one platform image an archive holds: its manifest's descriptor
/// (with its platform), and the bytes of the manifest, the config and each
/// layer with their digests.
pub struct Loaded<'a> {
    pub descriptor: Descriptor,
    pub manifest: (&'a Digest, &'a [u8]),
    pub config: (&'a Digest, &'a [u8]),
    pub layers: Vec<(&'a Digest, &'a [u8])>,
}

impl<'a> Loaded<'a> {
    /// One image of a set just built.
    pub fn of(image: &'a Image) -> Loaded<'a> {
        let blob = |b: &'a Blob| (&b.digest, b.bytes.as_slice());
        Loaded {
            descriptor: image.descriptor(),
            manifest: blob(&image.manifest),
            config: blob(&image.config),
            layers: vec![blob(&image.layer.blob)],
        }
    }
}

/// One platform's image read back from a [`Source`], every blob verified,
/// to make an archive of another platform than the one written.
pub struct ReadBack {
    pub descriptor: Descriptor,
    manifest: (Digest, Vec<u8>),
    config: (Digest, Vec<u8>),
    layers: Vec<(Digest, Vec<u8>)>,
}

impl ReadBack {
    /// The image of `resolved` for `platform`, or `None` when it has none.
    pub fn read(
        src: &dyn Source,
        resolved: &Resolved,
        platform: &PlatformSpec,
    ) -> Result<Option<ReadBack>, ReadError> {
        let Some(image) = resolved.images.iter().find(|i| &i.platform == platform) else {
            return Ok(None);
        };
        let doc = std::iter::once(&resolved.top)
            .chain(&resolved.children)
            .find(|d| d.descriptor.digest == image.manifest_digest)
            .ok_or_else(|| ReadError::Missing(blob_path(&image.manifest_digest)))?;
        let read = |d: &Descriptor, limit| -> Result<(Digest, Vec<u8>), ReadError> {
            Ok((d.digest.clone(), src.blob(d, limit)?))
        };
        let layers = image
            .layers()
            .iter()
            .map(|l| read(l, MAX_BLOB_IN_MEMORY))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(ReadBack {
            descriptor: Descriptor {
                platform: Some(image.platform.clone()),
                annotations: Default::default(),
                ..doc.descriptor.clone()
            },
            manifest: (image.manifest_digest.clone(), doc.bytes.clone()),
            config: read(&image.manifest.config, MAX_JSON)?,
            layers,
        }))
    }

    pub fn loaded(&self) -> Loaded<'_> {
        fn part((d, b): &(Digest, Vec<u8>)) -> (&Digest, &[u8]) {
            (d, b)
        }
        Loaded {
            descriptor: self.descriptor.clone(),
            manifest: part(&self.manifest),
            config: part(&self.config),
            layers: self.layers.iter().map(part).collect(),
        }
    }
}

/// The archive of a set: its first platform, named by every tag.
pub fn archive(set: &ImageSet, mtime: u64) -> Vec<u8> {
    archive_of(&Loaded::of(&set.images[0]), &set.references(), mtime)
}

/// The archive's bytes: a deterministic tar whose entries all carry
/// `mtime`, holding `image` under each of `names` (full references).
pub fn archive_of(image: &Loaded<'_>, names: &[String], mtime: u64) -> Vec<u8> {
    let index = index_json(&image.descriptor, names.iter().map(String::as_str));
    let docker = [DockerEntry {
        config: blob_path(image.config.0),
        repo_tags: names.to_vec(),
        layers: image.layers.iter().map(|(d, _)| blob_path(d)).collect(),
    }];
    let manifest_json = canonical_json(&docker);
    let oci_layout = oci_layout();

    let mut entries: Vec<(String, &[u8])> = vec![
        ("oci-layout".to_owned(), oci_layout.as_slice()),
        ("index.json".to_owned(), index.as_slice()),
        ("manifest.json".to_owned(), manifest_json.as_slice()),
    ];
    let mut seen = std::collections::BTreeSet::new();
    for (digest, bytes) in image.layers.iter().chain([&image.config, &image.manifest]) {
        if seen.insert(*digest) {
            entries.push((blob_path(digest), bytes));
        }
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));

    let mut out = Vec::new();
    let mut dirs_written = std::collections::BTreeSet::new();
    for (path, bytes) in &entries {
        for (i, _) in path.match_indices('/') {
            let dir = &path[..i];
            if dirs_written.insert(dir.to_owned()) {
                let header = tar::Header {
                    path: dir,
                    mode: 0o755,
                    size: 0,
                    mtime,
                    is_dir: true,
                };
                tar::append(&mut out, &header, &[]);
            }
        }
        let header = tar::Header {
            path,
            mode: 0o644,
            size: bytes.len() as u64,
            mtime,
            is_dir: false,
        };
        tar::append(&mut out, &header, bytes);
    }
    tar::finish(&mut out);
    out
}

/// The most entries an archive may have: ours have a handful.
const MAX_ENTRIES: usize = 10_000;

/// An archive on disk, read as a [`Source`]: its regular files are indexed
/// once (links, devices and anything else are ignored, never followed), then
/// each is read at its offset, bounded and verified like a layout's.
pub struct ArchiveFile {
    file: File,
    files: BTreeMap<String, (u64, u64)>,
}

impl ArchiveFile {
    pub fn open(path: &Path) -> Result<ArchiveFile, ReadError> {
        let shown = path.display().to_string();
        let file = File::options()
            .read(true)
            .custom_flags(
                (rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32,
            )
            .open(path)
            .map_err(|e| match e.raw_os_error() {
                Some(code) if code == rustix::io::Errno::LOOP.raw_os_error() => {
                    ReadError::Symlink(shown.clone())
                }
                _ => ReadError::Io {
                    path: shown.clone(),
                    source: e,
                },
            })?;
        let meta = file.metadata().map_err(|source| ReadError::Io {
            path: shown.clone(),
            source,
        })?;
        if !meta.is_file() {
            return Err(ReadError::NotRegular {
                path: shown,
                kind: "not a regular file",
            });
        }
        let mut files = BTreeMap::new();
        let mut tar = ::tar::Archive::new(BufReader::new(&file));
        let io = |source| ReadError::Io {
            path: shown.clone(),
            source,
        };
        for (n, entry) in tar.entries().map_err(io)?.enumerate() {
            if n >= MAX_ENTRIES {
                return Err(ReadError::TooManyEntries(MAX_ENTRIES));
            }
            let entry = entry.map_err(io)?;
            if entry.header().entry_type() != ::tar::EntryType::Regular {
                continue;
            }
            let name = entry.path().map_err(io)?.to_string_lossy().into_owned();
            let name = name.strip_prefix("./").unwrap_or(&name).to_owned();
            files.insert(name, (entry.raw_file_position(), entry.size()));
        }
        Ok(ArchiveFile { file, files })
    }

    fn read(&self, rel: &str, limit: u64) -> Result<(Vec<u8>, u64), ReadError> {
        let &(offset, size) = self
            .files
            .get(rel)
            .ok_or_else(|| ReadError::Missing(rel.to_owned()))?;
        if size > limit {
            return Err(ReadError::TooLarge {
                path: rel.to_owned(),
                size,
                limit,
            });
        }
        let reader = Reader {
            file: &self.file,
            offset,
            end: offset + size,
        };
        Ok((read_bounded(reader, size, limit, rel)?, size))
    }

    /// The docker `manifest.json`.
    pub fn docker_manifest(&self) -> Result<Vec<DockerEntry>, ReadError> {
        let (bytes, _) = self.read("manifest.json", MAX_JSON)?;
        serde_json::from_slice(&bytes).map_err(|source| ReadError::Json {
            what: "docker manifest",
            path: "manifest.json".to_owned(),
            source,
        })
    }
}

/// Reads one entry's bytes at their offset in the archive.
struct Reader<'a> {
    file: &'a File,
    offset: u64,
    end: u64,
}

impl std::io::Read for Reader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = usize::try_from(self.end - self.offset).unwrap_or(usize::MAX);
        let want = buf.len().min(left);
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.offset)?;
        self.offset += n as u64;
        Ok(n)
    }
}

impl Source for ArchiveFile {
    fn index_bytes(&self) -> Result<Vec<u8>, ReadError> {
        Ok(self.read("index.json", MAX_JSON)?.0)
    }

    fn blob(&self, d: &Descriptor, limit: u64) -> Result<Vec<u8>, ReadError> {
        let rel = blob_path(&d.digest);
        let &(_, size) = self
            .files
            .get(&rel)
            .ok_or_else(|| ReadError::Missing(rel.clone()))?;
        check_size(d, size)?;
        let (bytes, _) = self.read(&rel, limit)?;
        verify(d, bytes.len() as u64, Digest::of(&bytes))?;
        Ok(bytes)
    }
}
