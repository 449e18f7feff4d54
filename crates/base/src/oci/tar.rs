//! A minimal, deterministic tar writer (POSIX.1-1988 ustar, with a pax
//! extended header only for a name that ustar cannot hold), following the
//! reproducible-builds.org archive rules: every header field is either given
//! by the caller or a fixed constant.

const BLOCK: usize = 512;

/// Where a tar is written: a buffer, or a compressor taking it as a stream.
pub(crate) trait Out {
    fn put(&mut self, bytes: &[u8]);
}

impl Out for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

impl Out for super::compress::Encoder {
    fn put(&mut self, bytes: &[u8]) {
        self.write(bytes);
    }
}

/// One entry's header fields; everything not here is pinned.
pub(crate) struct Header<'a> {
    /// Relative path; directories without a trailing slash (one is added).
    pub path: &'a str,
    pub mode: u32,
    pub size: u64,
    pub mtime: u64,
    pub is_dir: bool,
}

/// Appends one entry (header, pax header when needed, data, padding).
pub(crate) fn append(out: &mut impl Out, h: &Header<'_>, data: &[u8]) {
    debug_assert_eq!(h.size, data.len() as u64);
    append_header(out, h);
    write_data(out, data);
}

/// The entry's header, preceded by a pax header when the name needs one.
fn append_header(out: &mut impl Out, h: &Header<'_>) {
    let name = if h.is_dir {
        format!("{}/", h.path)
    } else {
        h.path.to_owned()
    };
    let (prefix, short) = split_ustar_name(&name).unwrap_or_else(|| {
        // The name does not fit ustar's fields: a pax header carries it, and
        // the ustar name is a truncated stand-in that readers ignore.
        let record = pax_record("path", &name);
        let pax_name = "././@PaxHeader";
        write_header(
            out,
            &Header {
                path: pax_name,
                mode: 0o644,
                size: record.len() as u64,
                mtime: h.mtime,
                is_dir: false,
            },
            "",
            pax_name,
            b'x',
        );
        write_data(out, &record);
        ("", truncate_bytes(&name, 100))
    });
    write_header(out, h, prefix, short, if h.is_dir { b'5' } else { b'0' });
}

/// Appends one entry whose `h.size` bytes of data `data` writes to `out`
/// itself (the caller guarantees the count, or fails).
pub(crate) fn append_streamed<O: Out, E>(
    out: &mut O,
    h: &Header<'_>,
    data: impl FnOnce(&mut O) -> Result<(), E>,
) -> Result<(), E> {
    append_header(out, h);
    data(out)?;
    let pad = (BLOCK as u64 - h.size % BLOCK as u64) % BLOCK as u64;
    out.put(&[0u8; BLOCK][..pad as usize]);
    Ok(())
}

/// The end-of-archive marker: two zero blocks.
pub(crate) fn finish(out: &mut impl Out) {
    out.put(&[0u8; 2 * BLOCK]);
}

fn write_data(out: &mut impl Out, data: &[u8]) {
    out.put(data);
    let pad = (BLOCK - data.len() % BLOCK) % BLOCK;
    out.put(&[0u8; BLOCK][..pad]);
}

fn write_header(out: &mut impl Out, h: &Header<'_>, prefix: &str, name: &str, kind: u8) {
    let mut b = [0u8; BLOCK];
    put(&mut b[0..100], name.as_bytes());
    octal(&mut b[100..108], u64::from(h.mode));
    octal(&mut b[108..116], 0); // uid: always root
    octal(&mut b[116..124], 0); // gid: always root
    octal(&mut b[124..136], if kind == b'5' { 0 } else { h.size });
    octal(&mut b[136..148], h.mtime);
    b[156] = kind;
    put(&mut b[257..263], b"ustar\0");
    put(&mut b[263..265], b"00");
    // uname and gname stay empty: names would vary with the build host.
    octal(&mut b[329..337], 0);
    octal(&mut b[337..345], 0);
    put(&mut b[345..500], prefix.as_bytes());
    // The checksum is computed with its own field read as spaces.
    b[148..156].fill(b' ');
    let sum: u32 = b.iter().map(|&x| u32::from(x)).sum();
    let field = format!("{sum:06o}\0 ");
    b[148..156].copy_from_slice(field.as_bytes());
    out.put(&b);
}

fn put(field: &mut [u8], value: &[u8]) {
    field[..value.len()].copy_from_slice(value);
}

/// A zero-padded octal number filling the field, NUL-terminated.
fn octal(field: &mut [u8], value: u64) {
    let width = field.len() - 1;
    let s = format!("{value:0width$o}");
    assert!(
        s.len() <= width,
        "value {value} does not fit a tar header field"
    );
    field[..width].copy_from_slice(s.as_bytes());
    field[width] = 0;
}

/// Splits a name into ustar's `prefix` (155 bytes) and `name` (100 bytes) at a
/// slash, when it fits.
fn split_ustar_name(name: &str) -> Option<(&str, &str)> {
    if name.len() <= 100 {
        return Some(("", name));
    }
    // A directory's trailing slash belongs to the name part.
    let search_end = name.len() - 1;
    name[..search_end]
        .match_indices('/')
        .map(|(i, _)| (&name[..i], &name[i + 1..]))
        .find(|(prefix, rest)| prefix.len() <= 155 && rest.len() <= 100 && !rest.is_empty())
}

fn truncate_bytes(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A pax record, `"<len> <key>=<value>\n"`, where `<len>` counts itself.
fn pax_record(key: &str, value: &str) -> Vec<u8> {
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while len.to_string().len() + body.len() != len {
        len += 1;
    }
    format!("{len}{body}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_length_counts_itself() {
        let r = pax_record("path", "a");
        assert_eq!(r, b"9 path=a\n");
        let long = "x".repeat(200);
        let r = String::from_utf8(pax_record("path", &long)).unwrap();
        let (len, _) = r.split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), r.len());
    }

    #[test]
    fn long_names_split_at_a_slash() {
        let name = format!("{}/{}", "d".repeat(120), "f".repeat(50));
        let (prefix, short) = split_ustar_name(&name).unwrap();
        assert_eq!(prefix.len(), 120);
        assert_eq!(short.len(), 50);
        assert!(split_ustar_name(&"y".repeat(101)).is_none());
    }

    #[test]
    fn headers_read_back_with_the_tar_crate() {
        let mut out = Vec::new();
        let long = format!("{}/{}", "a".repeat(150), "b".repeat(150));
        for (path, is_dir, data) in [
            ("etc", true, &b""[..]),
            ("etc/greeting.txt", false, &b"hi\n"[..]),
            (long.as_str(), false, &b"long"[..]),
        ] {
            let h = Header {
                path,
                mode: if is_dir { 0o755 } else { 0o644 },
                size: data.len() as u64,
                mtime: 1_700_000_000,
                is_dir,
            };
            append(&mut out, &h, data);
        }
        finish(&mut out);
        let mut archive = ::tar::Archive::new(out.as_slice());
        let entries: Vec<_> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let mut data = Vec::new();
                std::io::Read::read_to_end(&mut e, &mut data).unwrap();
                let h = e.header();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    h.mode().unwrap(),
                    h.uid().unwrap(),
                    h.mtime().unwrap(),
                    data,
                )
            })
            .collect();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0].0, "etc/");
        assert_eq!(entries[0].1, 0o755);
        assert_eq!(entries[1].0, "etc/greeting.txt");
        assert_eq!(entries[1].4, b"hi\n");
        assert_eq!(entries[2].0, long);
        assert_eq!(entries[2].4, b"long");
        assert!(entries.iter().all(|e| e.2 == 0 && e.3 == 1_700_000_000));
    }
}
