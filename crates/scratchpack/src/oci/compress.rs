//! Layer compression: gzip (RFC 1952 around RFC 1951 deflate, cut into
//! blocks the way pigz does) and zstd (RFC 8878, one frame per block), both
//! compressed in parallel and both giving bytes that depend only on the
//! pinned implementation, the level and the block size: never on the number
//! of threads or on the machine.
//!
//! The input is taken as a stream and compressed one batch of blocks at a
//! time, so memory stays bounded by the batch, whatever the size of the tar.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::{Digest, MEDIA_TYPE_LAYER_GZIP, MEDIA_TYPE_LAYER_ZSTD};

/// How a layer is compressed (the `compression` key of images.toml).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Read by every OCI and docker tool.
    #[default]
    Gzip,
    /// Smaller and faster; needs a reader that knows image-spec 1.1's
    /// `tar+zstd` media type.
    Zstd,
}

impl Compression {
    pub const NAMES: [&str; 2] = ["gzip", "zstd"];

    pub fn parse(name: &str) -> Option<Compression> {
        match name {
            "gzip" => Some(Compression::Gzip),
            "zstd" => Some(Compression::Zstd),
            _ => None,
        }
    }

    pub fn media_type(self) -> &'static str {
        match self {
            Compression::Gzip => MEDIA_TYPE_LAYER_GZIP,
            Compression::Zstd => MEDIA_TYPE_LAYER_ZSTD,
        }
    }

    fn block(self) -> usize {
        match self {
            Compression::Gzip => GZIP_BLOCK,
            Compression::Zstd => ZSTD_BLOCK,
        }
    }
}

/// gzip's block: pigz's default, small enough that a few megabytes keep every
/// core busy. The flush marker at each boundary is 5 bytes, and the priming
/// keeps matches reaching back across it, so the cut costs almost nothing.
pub const GZIP_BLOCK: usize = 128 * 1024;
/// zlib's default level, pigz's and gzip's too: zlib-rs at level 9 is three
/// times slower for four percent less.
pub const GZIP_LEVEL: i32 = 6;
/// Each zstd block is an independent frame: at level 3's 2 MiB window, the
/// cuts cost 0.1 % against one frame on a 48 MB binary.
pub const ZSTD_BLOCK: usize = 2 * 1024 * 1024;
/// zstd's own default level.
pub const ZSTD_LEVEL: i32 = 3;
/// deflate's window: each gzip block is primed with this much of the input
/// before it, as dictionary.
const WINDOW: usize = 32 * 1024;
/// Bytes taken before a batch is compressed: enough blocks to keep many
/// cores busy, a bound on what one layer holds in memory.
const BATCH: usize = 8 * 1024 * 1024;

/// The `layer format` version: which bytes a given tar compresses to. It
/// changes whenever the implementation, level, block size or framing does.
pub const FORMAT_VERSION: u32 = 2;

/// A compressed stream, and the digest and size of what went in.
#[derive(Debug)]
pub struct Compressed {
    pub bytes: Vec<u8>,
    /// sha256 of the uncompressed input (a layer's `diff_id`).
    pub input_digest: Digest,
    pub input_size: u64,
}

/// Compresses what is written to it; [`Encoder::finish`] gives the result.
pub struct Encoder {
    kind: Compression,
    /// The last [`WINDOW`] bytes of the batches already compressed (gzip's
    /// dictionary for the next block), then the input not yet compressed.
    buf: Vec<u8>,
    /// Where the uncompressed input starts in `buf`.
    start: usize,
    out: Vec<u8>,
    crc: u32,
    hasher: Sha256,
    size: u64,
}

impl Encoder {
    pub fn new(kind: Compression) -> Encoder {
        let mut out = Vec::new();
        if kind == Compression::Gzip {
            // Every header byte pinned: no flags (so no name or comment),
            // mtime 0, XFL 0, OS 255 ("unknown", so the build host's OS does
            // not show).
            out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);
        }
        Encoder {
            kind,
            buf: Vec::with_capacity(WINDOW + BATCH + 1),
            start: 0,
            out,
            crc: 0,
            hasher: Sha256::new(),
            size: 0,
        }
    }

    pub fn write(&mut self, mut data: &[u8]) {
        self.size += data.len() as u64;
        while !data.is_empty() {
            let room = self.start + BATCH + 1 - self.buf.len();
            let n = room.min(data.len());
            self.buf.extend_from_slice(&data[..n]);
            data = &data[n..];
            // A batch is compressed only once a byte beyond it has arrived,
            // so the stream's last block is always compressed by `finish`.
            if self.buf.len() == self.start + BATCH + 1 {
                self.compress(self.start + BATCH, false);
                let keep = self.buf.len() - WINDOW - 1;
                self.buf.drain(..keep);
                self.start = WINDOW;
            }
        }
    }

    /// Compresses `buf[start..end]` in blocks; with `last`, the final block
    /// ends the stream.
    fn compress(&mut self, end: usize, last: bool) {
        let starts: Vec<usize> = (self.start..end).step_by(self.kind.block()).collect();
        let buf = &self.buf;
        let kind = self.kind;
        let hasher = &mut self.hasher;
        // The digest of the input is one sequential pass: it runs beside the
        // blocks rather than before them.
        let ((), pieces) = rayon::join(
            || hasher.update(&buf[self.start..end]),
            || compress_blocks(kind, buf, &starts, end, last),
        );
        for (piece, crc, len) in pieces {
            self.out.extend_from_slice(&piece);
            self.crc = zlib_rs::crc32::crc32_combine(self.crc, crc, len as u64);
        }
    }

    pub fn finish(mut self) -> Compressed {
        let end = self.buf.len();
        if end > self.start || self.size == 0 {
            if end == self.start {
                // An empty stream is still one (empty) final block.
                if self.kind == Compression::Gzip {
                    self.out.extend_from_slice(&deflate_block(&[], &[], true));
                } else {
                    self.out.extend_from_slice(&zstd_block(&[]));
                }
            } else {
                self.compress(end, true);
            }
        }
        if self.kind == Compression::Gzip {
            self.out.extend_from_slice(&self.crc.to_le_bytes());
            // ISIZE is the length modulo 2^32, as the format defines it.
            self.out
                .extend_from_slice(&(self.size as u32).to_le_bytes());
        }
        Compressed {
            bytes: self.out,
            input_digest: Digest::from_hasher(self.hasher),
            input_size: self.size,
        }
    }
}

/// Compresses the blocks of `buf` starting at `starts` (the last one ending
/// at `end`) in parallel: each piece with the crc32 and length of its input.
fn compress_blocks(
    kind: Compression,
    buf: &[u8],
    starts: &[usize],
    end: usize,
    last: bool,
) -> Vec<(Vec<u8>, u32, usize)> {
    let block = kind.block();
    starts
        .par_iter()
        .enumerate()
        .map(|(i, &s)| {
            let e = (s + block).min(end);
            let final_block = last && i == starts.len() - 1;
            let piece = match kind {
                Compression::Gzip => {
                    deflate_block(&buf[s.saturating_sub(WINDOW)..s], &buf[s..e], final_block)
                }
                Compression::Zstd => zstd_block(&buf[s..e]),
            };
            let crc = if kind == Compression::Gzip {
                zlib_rs::crc32::crc32(0, &buf[s..e])
            } else {
                0
            };
            (piece, crc, e - s)
        })
        .collect()
}

/// Compresses `data` in one call.
pub fn compress(kind: Compression, data: &[u8]) -> Compressed {
    let mut e = Encoder::new(kind);
    e.write(data);
    e.finish()
}

/// One block as raw deflate, primed with `dict`. A block that is not the last
/// ends with a full flush: byte-aligned, after an empty stored block, and
/// with no reference reaching into the next block, so the pieces joined are
/// one valid deflate stream.
fn deflate_block(dict: &[u8], data: &[u8], last: bool) -> Vec<u8> {
    use zlib_rs::{Deflate, DeflateFlush, Status};
    // No zlib header: raw deflate, inside the gzip member written around it.
    let mut d = Deflate::new(GZIP_LEVEL, false, 15);
    if !dict.is_empty() {
        d.set_dictionary(dict)
            .expect("a raw deflate stream takes a dictionary before any input");
    }
    let flush = if last {
        DeflateFlush::Finish
    } else {
        DeflateFlush::FullFlush
    };
    // deflate never grows data by more than its stored-block overhead.
    let mut out = vec![0u8; zlib_rs::compress_bound(data.len()) + 16];
    let status = d
        .compress(data, &mut out, flush)
        .expect("deflate accepts any input");
    debug_assert!(last || matches!(status, Status::Ok));
    debug_assert_eq!(d.total_in(), data.len() as u64);
    out.truncate(d.total_out() as usize);
    out
}

/// One block as an independent zstd frame with its content size and
/// checksum, so any decoder reads the frames one after another.
#[cfg(feature = "zstd")]
fn zstd_block(data: &[u8]) -> Vec<u8> {
    use zstd::zstd_safe::CParameter;
    let mut c = zstd::bulk::Compressor::new(ZSTD_LEVEL).expect("zstd allocates a context");
    c.set_parameter(CParameter::ChecksumFlag(true))
        .and_then(|()| c.set_parameter(CParameter::ContentSizeFlag(true)))
        .expect("zstd takes the frame parameters");
    c.compress(data).expect("zstd compresses any input")
}

/// Without the `zstd` feature the manifest refuses `compression = "zstd"`,
/// so no zstd layer is ever written.
#[cfg(not(feature = "zstd"))]
fn zstd_block(_: &[u8]) -> Vec<u8> {
    unreachable!("zstd layers are refused when scratchpack is built without its `zstd` feature")
}

/// A reader of a zstd stream (any number of frames), for reading layers
/// back; a decoder that cannot start reports it on the first read.
#[cfg(feature = "zstd")]
pub fn zstd_reader<'a>(compressed: &'a [u8]) -> Box<dyn std::io::Read + 'a> {
    match zstd::stream::read::Decoder::with_buffer(compressed) {
        Ok(d) => Box::new(d),
        Err(e) => Box::new(FailedReader(Some(e))),
    }
}

/// Without the `zstd` feature a zstd layer cannot be read; the first read
/// says so.
#[cfg(not(feature = "zstd"))]
pub fn zstd_reader<'a>(_: &'a [u8]) -> Box<dyn std::io::Read + 'a> {
    Box::new(FailedReader(Some(std::io::Error::other(
        "reading a zstd layer needs scratchpack's `zstd` feature, which this program was built without",
    ))))
}

struct FailedReader(Option<std::io::Error>);

impl std::io::Read for FailedReader {
    fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        Err(self
            .0
            .take()
            .unwrap_or_else(|| std::io::Error::other("starting the zstd decoder")))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    /// Input with structure (so blocks reference their dictionary) and noise
    /// (so blocks differ), crossing several batch boundaries.
    fn sample(len: usize) -> Vec<u8> {
        let mut x: u32 = 12345;
        (0..len)
            .map(|i| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                if (i / 1000) % 3 == 0 {
                    (x >> 24) as u8
                } else {
                    b"static executable layer "[i % 24]
                }
            })
            .collect()
    }

    fn in_pool<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(f)
    }

    #[test]
    fn gzip_reads_back_as_one_member() {
        for len in [
            0,
            1,
            GZIP_BLOCK,
            GZIP_BLOCK + 1,
            BATCH,
            BATCH + 1,
            2 * BATCH + 7,
        ] {
            let data = sample(len);
            let c = compress(Compression::Gzip, &data);
            let mut back = Vec::new();
            // The blocks are one deflate stream in one member, whose trailer
            // checks the whole input.
            crate::gunzip::GzDecoder::new(c.bytes.as_slice())
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, data, "length {len}");
            assert_eq!(c.input_digest, Digest::of(&data));
            assert_eq!(c.input_size, len as u64);
        }
    }

    #[cfg(feature = "zstd")]
    #[test]
    fn zstd_reads_back() {
        for len in [0, 1, ZSTD_BLOCK + 1, BATCH + 1, 3 * BATCH] {
            let data = sample(len);
            let c = compress(Compression::Zstd, &data);
            let mut back = Vec::new();
            zstd_reader(&c.bytes).read_to_end(&mut back).unwrap();
            assert_eq!(back, data, "length {len}");
        }
    }

    #[test]
    fn bytes_do_not_depend_on_threads_or_write_sizes() {
        let data = sample(3 * BATCH + 12_345);
        for kind in [Compression::Gzip, Compression::Zstd] {
            let one = in_pool(1, || compress(kind, &data).bytes);
            for threads in [2, 8] {
                let many = in_pool(threads, || {
                    let mut e = Encoder::new(kind);
                    for chunk in data.chunks(100_003) {
                        e.write(chunk);
                    }
                    e.finish().bytes
                });
                assert!(one == many, "{kind:?} with {threads} threads");
            }
        }
    }

    #[test]
    fn gzip_blocks_use_the_previous_block_as_dictionary() {
        // The second block repeats the end of the first: it is almost free
        // only when it may refer back into the first (zlib reaches a little
        // less than the whole window back, hence half of it).
        let half = sample(GZIP_BLOCK)
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ (i as u8).wrapping_mul(31))
            .collect::<Vec<_>>();
        let tail = &half[half.len() - WINDOW / 2..];
        let mut data = half.clone();
        data.extend_from_slice(tail);
        let both = compress(Compression::Gzip, &data).bytes.len();
        let first = compress(Compression::Gzip, &half).bytes.len();
        assert!(both < first + 1024, "{both} vs {first}");
    }
}
