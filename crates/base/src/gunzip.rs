//! Reading gzip streams (RFC 1952): the member header, the raw deflate body
//! (RFC 1951, inflated by the pinned zlib-rs), and the trailer's CRC-32 and
//! ISIZE, member after member. Layers and cached blobs are read back with it.
//!
//! The reader is strict where a lenient one could hide damage: a wrong
//! checksum or length, a stream that stops early, reserved header flags, and
//! bytes after the last member that are neither another member nor zero
//! padding are all errors. How much output to accept is the caller's
//! business (wrap the reader in [`Read::take`] or count what comes out).

use std::io::{self, Read};

use zlib_rs::{Inflate, InflateFlush, Status};

const ID1: u8 = 0x1f;
const ID2: u8 = 0x8b;
/// CM 8, deflate: the only compression method RFC 1952 defines.
const CM_DEFLATE: u8 = 8;
const FHCRC: u8 = 0x02;
const FEXTRA: u8 = 0x04;
const FNAME: u8 = 0x08;
const FCOMMENT: u8 = 0x10;
/// FLG bits 5 to 7 are reserved and must be zero.
const FRESERVED: u8 = 0xe0;
/// Deflate's largest window: a raw inflater with it reads every stream.
const WINDOW_BITS: u8 = 15;
const INPUT_BUFFER: usize = 32 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the first member's header.
    Start,
    /// Inside a member's deflate data.
    Body,
    /// After a member's trailer: another member, zero padding or the end.
    Between,
    /// Every member read and checked.
    Done,
}

/// Decompresses a gzip stream of one or more members read from `R`.
pub struct GzDecoder<R> {
    inner: R,
    buf: Box<[u8]>,
    pos: usize,
    len: usize,
    /// Bytes of compressed input consumed so far, for error messages.
    offset: u64,
    inflate: Inflate,
    state: State,
    /// CRC-32 and length (modulo 2^32) of the current member's output.
    crc: u32,
    size: u32,
}

impl<R: Read> GzDecoder<R> {
    pub fn new(inner: R) -> GzDecoder<R> {
        GzDecoder {
            inner,
            buf: vec![0; INPUT_BUFFER].into_boxed_slice(),
            pos: 0,
            len: 0,
            offset: 0,
            inflate: Inflate::new(false, WINDOW_BITS),
            state: State::Start,
            crc: 0,
            size: 0,
        }
    }

    /// Refills the input buffer once it is empty; false at the end of input.
    fn fill(&mut self) -> io::Result<bool> {
        if self.pos < self.len {
            return Ok(true);
        }
        loop {
            match self.inner.read(&mut self.buf) {
                Ok(n) => {
                    self.pos = 0;
                    self.len = n;
                    return Ok(n > 0);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn byte(&mut self, what: &str) -> io::Result<u8> {
        if !self.fill()? {
            return Err(truncated(format!(
                "the stream ends at byte {} inside {what}",
                self.offset
            )));
        }
        let b = self.buf[self.pos];
        self.pos += 1;
        self.offset += 1;
        Ok(b)
    }

    fn bytes<const N: usize>(&mut self, what: &str) -> io::Result<[u8; N]> {
        let mut out = [0; N];
        for b in &mut out {
            *b = self.byte(what)?;
        }
        Ok(out)
    }

    /// Reads one member header; the magic bytes are already consumed, and
    /// their CRC is in `crc` (for FHCRC, which covers the whole header).
    fn header(&mut self) -> io::Result<()> {
        let start = self.offset - 2;
        let mut crc = zlib_rs::crc32::crc32(0, &[ID1, ID2]);
        let mut next = |d: &mut Self, what: &str| -> io::Result<u8> {
            let b = d.byte(what)?;
            crc = zlib_rs::crc32::crc32(crc, &[b]);
            Ok(b)
        };
        let [cm, flags] = [next(self, "a gzip header")?, next(self, "a gzip header")?];
        if cm != CM_DEFLATE {
            return Err(invalid(format!(
                "the gzip member at byte {start} uses compression method {cm}, not deflate (8)"
            )));
        }
        if flags & FRESERVED != 0 {
            return Err(invalid(format!(
                "the gzip member at byte {start} sets reserved header flags ({flags:#04x})"
            )));
        }
        // MTIME (4), XFL and OS: read and not used.
        for _ in 0..6 {
            next(self, "a gzip header")?;
        }
        if flags & FEXTRA != 0 {
            let lo = next(self, "a gzip extra field")?;
            let hi = next(self, "a gzip extra field")?;
            for _ in 0..u16::from_le_bytes([lo, hi]) {
                next(self, "a gzip extra field")?;
            }
        }
        for (flag, what) in [(FNAME, "a gzip file name"), (FCOMMENT, "a gzip comment")] {
            if flags & flag != 0 {
                while next(self, what)? != 0 {}
            }
        }
        if flags & FHCRC != 0 {
            let want = u16::from_le_bytes(self.bytes::<2>("a gzip header checksum")?);
            // The header CRC is the low 16 bits of the CRC-32 of every
            // header byte before it.
            if want != crc as u16 {
                return Err(invalid(format!(
                    "the gzip member at byte {start} has a header checksum of {want:#06x}, \
                     but its header sums to {:#06x}",
                    crc as u16
                )));
            }
        }
        self.inflate.reset(false);
        self.crc = 0;
        self.size = 0;
        self.state = State::Body;
        Ok(())
    }

    fn trailer(&mut self) -> io::Result<()> {
        let crc = u32::from_le_bytes(self.bytes::<4>("a gzip trailer")?);
        let size = u32::from_le_bytes(self.bytes::<4>("a gzip trailer")?);
        if crc != self.crc {
            return Err(invalid(format!(
                "the gzip member ending at byte {} has a CRC-32 of {crc:#010x}, \
                 but its data sums to {:#010x}",
                self.offset, self.crc
            )));
        }
        if size != self.size {
            return Err(invalid(format!(
                "the gzip member ending at byte {} records {size} bytes (modulo 2^32), \
                 but {} came out",
                self.offset, self.size
            )));
        }
        self.state = State::Between;
        Ok(())
    }

    /// After a member: the next one's header, or the end. Zero bytes after
    /// the last member are padding (tape blocks, fixed-size files) and are
    /// skipped, as gzip(1) does; anything else is an error.
    fn between(&mut self) -> io::Result<()> {
        let first_member = self.state == State::Start;
        if !self.fill()? {
            if first_member {
                return Err(truncated("the stream is empty, not gzip".to_owned()));
            }
            self.state = State::Done;
            return Ok(());
        }
        let at = self.offset;
        let first = self.byte("a gzip header")?;
        if first == 0 && !first_member {
            while self.fill()? {
                if let Some(i) = self.buf[self.pos..self.len].iter().position(|&b| b != 0) {
                    return Err(invalid(format!(
                        "byte {} after the zero padding that follows the last gzip member \
                         is not zero",
                        self.offset + i as u64
                    )));
                }
                self.offset += (self.len - self.pos) as u64;
                self.pos = self.len;
            }
            self.state = State::Done;
            return Ok(());
        }
        let second = self.byte("a gzip header")?;
        if [first, second] != [ID1, ID2] {
            return Err(invalid(if first_member {
                "it is not gzip: it does not start with the magic bytes 1f 8b".to_owned()
            } else {
                format!("the bytes at {at}, after a gzip member, are not another member")
            }));
        }
        self.header()
    }

    /// Inflates into `out` until something comes out or the member ends.
    fn body(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.pos == self.len && !self.fill()? {
                return Err(truncated(format!(
                    "the stream ends at byte {} inside a gzip member's data",
                    self.offset
                )));
            }
            let (in0, out0) = (self.inflate.total_in(), self.inflate.total_out());
            let status = self
                .inflate
                .decompress(&self.buf[self.pos..self.len], out, InflateFlush::NoFlush)
                .map_err(|e| {
                    invalid(format!(
                        "the deflate data near byte {} is corrupt ({})",
                        self.offset,
                        self.inflate.error_message().unwrap_or(e.as_str())
                    ))
                })?;
            let used = (self.inflate.total_in() - in0) as usize;
            let made = (self.inflate.total_out() - out0) as usize;
            self.pos += used;
            self.offset += used as u64;
            self.crc = zlib_rs::crc32::crc32(self.crc, &out[..made]);
            self.size = self.size.wrapping_add(made as u32);
            if status == Status::StreamEnd {
                self.trailer()?;
                return Ok(made);
            }
            if made > 0 {
                return Ok(made);
            }
            if used == 0 && self.pos < self.len {
                return Err(invalid(format!(
                    "the deflate data near byte {} makes no progress",
                    self.offset
                )));
            }
            // No output and no end: inflate needs more input than the
            // buffer holds; the loop refills it, or reports truncation.
        }
    }
}

impl<R: Read> Read for GzDecoder<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            match self.state {
                State::Start | State::Between => self.between()?,
                State::Body => {
                    let n = self.body(out)?;
                    if n > 0 {
                        return Ok(n);
                    }
                }
                State::Done => return Ok(0),
            }
        }
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

fn truncated(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, message)
}

#[cfg(test)]
mod tests;
