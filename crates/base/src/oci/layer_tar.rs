//! Layers read back (image-spec `layer.md`, "Distributable Format"): a
//! layer blob from any [`Source`], verified there, and its uncompressed tar
//! as a stream, through the decompressor its media type names (gzip through
//! [`crate::gunzip`], zstd through [`super::compress::zstd_reader`], a plain
//! tar as it is). The stream stops with an error past the caller's limit,
//! since a few megabytes of gzip can expand to gigabytes, and hashes what
//! passes, so the caller can check the config's `diff_id`.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt as _;

use sha2::{Digest as _, Sha256};

use super::error::ReadError;
use super::source::Source;
use super::{
    DOCKER_LAYER_GZIP, Descriptor, Digest, MEDIA_TYPE_LAYER_GZIP, MEDIA_TYPE_LAYER_TAR,
    MEDIA_TYPE_LAYER_ZSTD,
};

/// How a layer's tar is stored, as its media type says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stored {
    Tar,
    Gzip,
    Zstd,
}

impl Stored {
    fn of(d: &Descriptor) -> Result<Stored, ReadError> {
        match d.media_type.as_str() {
            MEDIA_TYPE_LAYER_TAR => Ok(Stored::Tar),
            MEDIA_TYPE_LAYER_GZIP | DOCKER_LAYER_GZIP => Ok(Stored::Gzip),
            MEDIA_TYPE_LAYER_ZSTD => Ok(Stored::Zstd),
            other => Err(ReadError::LayerMediaType {
                digest: d.digest.clone(),
                media_type: other.to_owned(),
            }),
        }
    }
}

/// A layer blob's bytes, checked against its descriptor, of a media type
/// this program can read: in memory, or in a file for a blob too large to
/// hold.
#[derive(Debug)]
pub struct LayerBlob {
    pub descriptor: Descriptor,
    held: Held,
    stored: Stored,
}

#[derive(Debug)]
enum Held {
    Memory(Vec<u8>),
    File(File),
}

impl LayerBlob {
    /// Reads the layer `d` names from `src`, at most `limit` bytes of it,
    /// verified by the source; a media type no decompressor here reads is
    /// refused before anything is read.
    pub fn read(src: &dyn Source, d: &Descriptor, limit: u64) -> Result<LayerBlob, ReadError> {
        Stored::of(d)?;
        LayerBlob::new(d.clone(), src.blob(d, limit)?)
    }

    /// A layer whose bytes the caller has already checked against `d`.
    pub fn new(d: Descriptor, bytes: Vec<u8>) -> Result<LayerBlob, ReadError> {
        Ok(LayerBlob {
            stored: Stored::of(&d)?,
            descriptor: d,
            held: Held::Memory(bytes),
        })
    }

    /// A layer in `file`, whose bytes the caller has already checked
    /// against `d`; it is read from its start, whatever the file's offset.
    pub fn from_file(d: Descriptor, file: File) -> Result<LayerBlob, ReadError> {
        Ok(LayerBlob {
            stored: Stored::of(&d)?,
            descriptor: d,
            held: Held::File(file),
        })
    }

    /// The layer's tar, as a stream that fails once more than `limit` bytes
    /// have come out, with the message `exceeded(limit)`.
    pub fn tar(&self, limit: u64, exceeded: fn(u64) -> String) -> LayerTar<'_> {
        let raw: Box<dyn Read + '_> = match &self.held {
            Held::Memory(bytes) => Box::new(bytes.as_slice()),
            Held::File(file) => Box::new(std::io::BufReader::with_capacity(
                1 << 16,
                FromStart { file, at: 0 },
            )),
        };
        let inner: Box<dyn Read + '_> = match self.stored {
            Stored::Tar => raw,
            Stored::Gzip => Box::new(crate::gunzip::GzDecoder::new(raw)),
            Stored::Zstd => super::compress::zstd_reader(raw),
        };
        LayerTar {
            inner,
            hasher: Sha256::new(),
            read: 0,
            limit,
            exceeded,
        }
    }
}

/// A file read from its start by position, so a shared reference reads it
/// whole whatever its offset.
struct FromStart<'a> {
    file: &'a File,
    at: u64,
}

impl Read for FromStart<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read_at(buf, self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}

/// A layer's uncompressed tar, hashed as it is read.
pub struct LayerTar<'a> {
    inner: Box<dyn Read + 'a>,
    hasher: Sha256,
    read: u64,
    limit: u64,
    exceeded: fn(u64) -> String,
}

impl Read for LayerTar<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.limit {
            return Err(std::io::Error::other((self.exceeded)(self.limit)));
        }
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

impl LayerTar<'_> {
    /// Reads whatever the caller left (a tar's end-of-archive blocks and any
    /// padding after them belong to the layer too), then gives the digest of
    /// every uncompressed byte, the layer's diff_id, and their number.
    pub fn finish(mut self) -> std::io::Result<(Digest, u64)> {
        std::io::copy(&mut self, &mut std::io::sink())?;
        Ok((Digest::from_hasher(self.hasher), self.read))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::compress::{Compression, compress};

    fn blob(media_type: &str, bytes: &[u8]) -> LayerBlob {
        let d = Descriptor::new(media_type, Digest::of(bytes), bytes.len() as u64);
        LayerBlob::new(d, bytes.to_vec()).unwrap()
    }

    fn too_many(limit: u64) -> String {
        format!("more than {limit}")
    }

    #[test]
    fn every_readable_media_type_gives_the_tar_and_its_diff_id() {
        let tar = b"not really a tar, but bytes all the same".repeat(100);
        let gzip = compress(Compression::Gzip, &tar).bytes;
        let mut layers = vec![
            blob(MEDIA_TYPE_LAYER_TAR, &tar),
            blob(MEDIA_TYPE_LAYER_GZIP, &gzip),
            blob(DOCKER_LAYER_GZIP, &gzip),
        ];
        if cfg!(feature = "zstd") {
            let zstd = compress(Compression::Zstd, &tar).bytes;
            layers.push(blob(MEDIA_TYPE_LAYER_ZSTD, &zstd));
        }
        for layer in layers {
            let mut stream = layer.tar(u64::MAX, too_many);
            let mut head = [0u8; 10];
            stream.read_exact(&mut head).unwrap();
            assert_eq!(head, tar[..10]);
            // The rest is read by `finish`, and hashed all the same.
            let (diff_id, size) = stream.finish().unwrap();
            assert_eq!(diff_id, Digest::of(&tar), "{}", layer.descriptor.media_type);
            assert_eq!(size, tar.len() as u64);
        }
    }

    #[test]
    fn output_stops_at_the_limit() {
        let zeros = vec![0u8; 1 << 20];
        let layer = blob(
            MEDIA_TYPE_LAYER_GZIP,
            &compress(Compression::Gzip, &zeros).bytes,
        );
        let e = layer.tar(1000, too_many).finish().unwrap_err();
        assert_eq!(e.to_string(), "more than 1000");
        let mut exact = layer.tar(zeros.len() as u64, too_many);
        assert_eq!(
            std::io::copy(&mut exact, &mut std::io::sink()).unwrap(),
            zeros.len() as u64
        );
    }

    #[test]
    fn other_media_types_are_refused_before_reading() {
        struct Unread;
        impl Source for Unread {
            fn index_bytes(&self) -> Result<Vec<u8>, ReadError> {
                unreachable!("no index is read")
            }
            fn blob(&self, _: &Descriptor, _: u64) -> Result<Vec<u8>, ReadError> {
                panic!("the blob was read")
            }
        }
        let d = Descriptor::new(
            "application/vnd.oci.image.layer.v1.tar+bzip2",
            Digest::of(b"x"),
            1,
        );
        let e = LayerBlob::read(&Unread, &d, u64::MAX).unwrap_err();
        assert!(matches!(e, ReadError::LayerMediaType { .. }), "{e}");
        assert!(e.to_string().contains("tar+bzip2"), "{e}");
    }
}
