//! Reading an OCI image layout directory (image-spec `image-layout.md`) as
//! hostile input: whoever can write the directory chooses its contents, so
//! no path in it is followed through a symlink (`O_NOFOLLOW` on every
//! component below the layout), only regular files are read (a FIFO or a
//! device is refused before any read can block or run forever), every size
//! is bounded before reading, and a blob's bytes must have its descriptor's
//! size and digest.

use std::fs::File;
use std::io::{Read, Seek};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;
use sha2::{Digest as _, Sha256};

use super::error::{MAX_BLOB, MAX_JSON, ReadError, blob_path, check_size, read_bounded, verify};
use super::source::Source;
use super::{Descriptor, Digest};

/// An opened layout directory. The directory itself is named by the caller
/// and must not be a symlink; everything below it is reached from its file
/// descriptor, never by a path the kernel would resolve through a link.
pub struct LayoutDir {
    dir: OwnedFd,
    path: PathBuf,
}

impl LayoutDir {
    pub fn open(path: &Path) -> Result<LayoutDir, ReadError> {
        let shown = path.display().to_string();
        let dir = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| open_error(rustix::fs::CWD, path, &shown, e))?;
        Ok(LayoutDir {
            dir,
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the regular file at `rel` (components separated by `/`) without
    /// following any link, checks it is no larger than `limit`, and returns
    /// it with its size.
    fn open_file(&self, rel: &str, limit: u64) -> Result<(File, u64), ReadError> {
        let parts: Vec<&str> = rel.split('/').collect();
        let (last, parents) = parts.split_last().expect("split yields one part");
        let mut here: Option<OwnedFd> = None;
        for (i, part) in parents.iter().enumerate() {
            let base = here.as_ref().unwrap_or(&self.dir);
            let fd = rustix::fs::openat(
                base,
                *part,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| open_error(base, *part, &parts[..=i].join("/"), e))?;
            here = Some(fd);
        }
        let base = here.as_ref().unwrap_or(&self.dir);
        // O_NONBLOCK: opening a FIFO must not wait for a writer; the type
        // check below refuses it right after.
        let fd = rustix::fs::openat(
            base,
            *last,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| open_error(base, *last, rel, e))?;
        let stat = rustix::fs::fstat(&fd).map_err(|e| ReadError::Io {
            path: rel.to_owned(),
            source: e.into(),
        })?;
        let kind = FileType::from_raw_mode(stat.st_mode);
        if kind != FileType::RegularFile {
            return Err(ReadError::NotRegular {
                path: rel.to_owned(),
                kind: kind_name(kind),
            });
        }
        let size = u64::try_from(stat.st_size).unwrap_or(0);
        if size > limit {
            return Err(ReadError::TooLarge {
                path: rel.to_owned(),
                size,
                limit,
            });
        }
        Ok((File::from(fd), size))
    }

    /// The whole of a small file (`oci-layout`, `index.json`).
    pub fn read_small(&self, rel: &str) -> Result<Vec<u8>, ReadError> {
        let (file, size) = self.open_file(rel, MAX_JSON)?;
        read_bounded(file, size, MAX_JSON, rel)
    }

    /// Whether `oci-layout` exists, is a regular file, and names a version.
    pub fn check_marker(&self) -> Result<(), ReadError> {
        let bytes = self.read_small("oci-layout")?;
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Marker {
            #[allow(dead_code)]
            image_layout_version: String,
        }
        serde_json::from_slice::<Marker>(&bytes).map_err(|source| ReadError::Json {
            what: "layout marker",
            path: "oci-layout".to_owned(),
            source,
        })?;
        Ok(())
    }

    /// The size of the blob `digest` as the file system says, without reading
    /// it: enough to notice a blob deleted or truncated by hand.
    pub fn blob_size(&self, digest: &Digest) -> Result<u64, ReadError> {
        self.open_file(&blob_path(digest), MAX_BLOB)
            .map(|(_, size)| size)
    }

    /// The blob `d` names, opened and verified in one streaming pass, so a
    /// large layer is never held in memory; returned rewound, with its path.
    pub fn blob_file(&self, d: &Descriptor) -> Result<(File, PathBuf), ReadError> {
        let rel = blob_path(&d.digest);
        let (mut file, size) = self.open_file(&rel, MAX_BLOB)?;
        check_size(d, size)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut read = 0u64;
        loop {
            let n = file.read(&mut buf).map_err(ReadError::io(&rel))?;
            if n == 0 {
                break;
            }
            read += n as u64;
            if read > d.size {
                break;
            }
            hasher.update(&buf[..n]);
        }
        verify(d, read, Digest::from_hasher(hasher))?;
        file.rewind().map_err(ReadError::io(&rel))?;
        Ok((file, self.path.join(rel)))
    }
}

impl Source for LayoutDir {
    fn index_bytes(&self) -> Result<Vec<u8>, ReadError> {
        self.read_small("index.json")
    }

    fn blob(&self, d: &Descriptor, limit: u64) -> Result<Vec<u8>, ReadError> {
        let rel = blob_path(&d.digest);
        if d.size > limit {
            return Err(ReadError::TooLarge {
                path: rel,
                size: d.size,
                limit,
            });
        }
        let (file, size) = self.open_file(&rel, limit)?;
        check_size(d, size)?;
        let bytes = read_bounded(file, size, limit, &rel)?;
        verify(d, bytes.len() as u64, Digest::of(&bytes))?;
        Ok(bytes)
    }
}

/// Names the reason an open failed; a directory opened with `O_NOFOLLOW`
/// that is a link fails with `ENOTDIR`, so that case looks again.
fn open_error<Fd: std::os::fd::AsFd, P: rustix::path::Arg>(
    base: Fd,
    name: P,
    path: &str,
    e: Errno,
) -> ReadError {
    let is_link = || {
        rustix::fs::statat(base, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Symlink)
    };
    if e == Errno::LOOP || (e == Errno::NOTDIR && is_link()) {
        return ReadError::Symlink(path.to_owned());
    }
    if e == Errno::NOTDIR {
        return ReadError::NotRegular {
            path: path.to_owned(),
            kind: "not a directory",
        };
    }
    ReadError::Io {
        path: path.to_owned(),
        source: e.into(),
    }
}

fn kind_name(kind: FileType) -> &'static str {
    match kind {
        FileType::Directory => "a directory",
        FileType::Symlink => "a symlink",
        FileType::Fifo => "a FIFO",
        FileType::Socket => "a socket",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        _ => "not a regular file",
    }
}
