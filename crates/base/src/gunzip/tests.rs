use super::*;
use crate::oci::compress::{Compression, compress};

/// What the fixtures hold: `gzip -9` of it (with the file name "lines"), and
/// `pigz -p2 -b 32 -6 -n --comment 'made by pigz'` of it (three blocks).
fn lines() -> Vec<u8> {
    (0..8000)
        .flat_map(|i| format!("line {i}\n").into_bytes())
        .collect()
}

const GZIP: &[u8] = include_bytes!("fixtures/lines.gz");
const PIGZ: &[u8] = include_bytes!("fixtures/lines.pigz.gz");

fn gunzip(bytes: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    GzDecoder::new(bytes).read_to_end(&mut out)?;
    Ok(out)
}

fn err(bytes: &[u8]) -> io::Error {
    gunzip(bytes).expect_err("decoding must fail")
}

/// A reader that hands out one byte per call, so every state boundary of
/// the decoder falls between two reads somewhere.
struct Trickle<'a>(&'a [u8]);

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some((&b, rest)) = self.0.split_first() else {
            return Ok(0);
        };
        match buf.first_mut() {
            Some(slot) => {
                *slot = b;
                self.0 = rest;
                Ok(1)
            }
            None => Ok(0),
        }
    }
}

#[test]
fn gzip_and_pigz_output_reads_back() {
    assert_eq!(&GZIP[3], &FNAME, "the gzip fixture names its file");
    assert_eq!(&PIGZ[3], &FCOMMENT, "the pigz fixture carries a comment");
    assert_eq!(gunzip(GZIP).unwrap(), lines());
    assert_eq!(gunzip(PIGZ).unwrap(), lines());
}

#[test]
fn the_parallel_gzip_reads_back() {
    for len in [0, 1, 100, 300_000, 2_500_000] {
        let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let c = compress(Compression::Gzip, &data);
        assert_eq!(gunzip(&c.bytes).unwrap(), data, "length {len}");
    }
}

#[test]
fn one_byte_reads_and_one_byte_output_give_the_same_bytes() {
    let mut out = Vec::new();
    GzDecoder::new(Trickle(PIGZ)).read_to_end(&mut out).unwrap();
    assert_eq!(out, lines());
    let mut d = GzDecoder::new(GZIP);
    let mut out = Vec::new();
    let mut one = [0u8; 1];
    while d.read(&mut one).unwrap() == 1 {
        out.push(one[0]);
    }
    assert_eq!(out, lines());
}

#[test]
fn concatenated_members_read_as_one_stream() {
    let mut both = GZIP.to_vec();
    both.extend_from_slice(PIGZ);
    both.extend_from_slice(&compress(Compression::Gzip, b"").bytes);
    both.extend_from_slice(&compress(Compression::Gzip, b"tail").bytes);
    let mut want = lines();
    want.extend_from_slice(&lines());
    want.extend_from_slice(b"tail");
    assert_eq!(gunzip(&both).unwrap(), want);
    let mut out = Vec::new();
    GzDecoder::new(Trickle(&both))
        .read_to_end(&mut out)
        .unwrap();
    assert_eq!(out, want);
}

#[test]
fn zero_padding_after_the_last_member_is_skipped_and_other_bytes_are_not() {
    let mut padded = PIGZ.to_vec();
    padded.extend_from_slice(&[0; 700]);
    assert_eq!(gunzip(&padded).unwrap(), lines());
    padded.push(1);
    let e = err(&padded);
    assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    assert!(e.to_string().contains("padding"), "{e}");
    let mut junk = GZIP.to_vec();
    junk.extend_from_slice(b"PK\x03\x04");
    assert!(err(&junk).to_string().contains("not another member"));
}

#[test]
fn every_optional_header_field_is_read_and_the_header_crc_checked() {
    let body = compress(Compression::Gzip, b"hello, fields");
    // FTEXT, FHCRC, FEXTRA, FNAME and FCOMMENT, with a two-entry extra field.
    let mut header = vec![ID1, ID2, 8, 0x1f, 1, 2, 3, 4, 0, 3];
    header.extend_from_slice(&9u16.to_le_bytes());
    header.extend_from_slice(b"AB\x01\x00xCD\x00\x00");
    header.extend_from_slice(b"name.tar\0a comment\0");
    let crc = zlib_rs::crc32::crc32(0, &header) as u16;
    let mut good = header.clone();
    good.extend_from_slice(&crc.to_le_bytes());
    good.extend_from_slice(&body.bytes[10..]);
    assert_eq!(gunzip(&good).unwrap(), b"hello, fields");

    let mut bad = header;
    bad.extend_from_slice(&(crc ^ 1).to_le_bytes());
    bad.extend_from_slice(&body.bytes[10..]);
    let e = err(&bad);
    assert!(e.to_string().contains("header checksum"), "{e}");
}

#[test]
fn a_wrong_crc_or_length_is_an_error() {
    let good = compress(Compression::Gzip, &lines()).bytes;
    let n = good.len();
    let mut crc = good.clone();
    crc[n - 8] ^= 0x40;
    let e = err(&crc);
    assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    assert!(e.to_string().contains("CRC-32"), "{e}");
    let mut size = good.clone();
    size[n - 1] ^= 0x01;
    assert!(err(&size).to_string().contains("came out"));
    // A flipped bit in the data: inflate rejects it or the CRC catches it.
    let mut data = good;
    data[n / 2] ^= 0x10;
    assert_eq!(err(&data).kind(), io::ErrorKind::InvalidData);
}

#[test]
fn every_truncation_is_an_error() {
    for source in [GZIP, PIGZ] {
        for cut in (0..source.len())
            .step_by(97)
            .chain(source.len() - 9..source.len())
        {
            let e = err(&source[..cut]);
            assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "cut at {cut}: {e}");
        }
    }
    let with_name = [ID1, ID2, 8, FNAME, 0, 0, 0, 0, 0, 3, b'a', b'b'];
    assert!(err(&with_name).to_string().contains("file name"));
}

#[test]
fn headers_that_are_not_gzip_are_refused() {
    assert!(err(b"").to_string().contains("empty"));
    assert!(err(b"\0\0\0\0").to_string().contains("magic"));
    assert!(err(b"PK\x03\x04rest").to_string().contains("magic"));
    let mut method = GZIP.to_vec();
    method[2] = 7;
    assert!(err(&method).to_string().contains("compression method 7"));
    let mut reserved = GZIP.to_vec();
    reserved[3] |= 0x80;
    assert!(err(&reserved).to_string().contains("reserved"));
}

#[test]
fn garbage_after_a_valid_header_is_an_error_not_a_panic() {
    // Deterministic noise after a plain header: every seed must end in an
    // error (or, rarely, a stream inflate accepts), never in a panic.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..200 {
        let mut bytes = vec![ID1, ID2, 8, 0, 0, 0, 0, 0, 0, 255];
        for _ in 0..300 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            bytes.push(state as u8);
        }
        let _ = gunzip(&bytes);
    }
}

#[test]
fn output_is_bounded_by_the_caller() {
    // 8 MiB of zeros compress to a few KiB; `take` stops the decoder early.
    let bomb = compress(Compression::Gzip, &vec![0; 8 << 20]).bytes;
    let mut out = Vec::new();
    GzDecoder::new(&bomb[..])
        .take(1 << 20)
        .read_to_end(&mut out)
        .unwrap();
    assert_eq!(out.len(), 1 << 20);
}
