//! Packs one file as an image layer exactly as `cargo xtask images` packs a
//! binary (streamed tar, compression, diff_id and digest), so that packing
//! can be timed on its own against other tools (scripts/bench-pack.sh).
//!
//!     pack_layer FILE [gzip|zstd] [JOBS] [OUT]
//!
//! Prints the layer's digest, diff_id and size; writes the layer to OUT when
//! given.

use std::path::PathBuf;

use scratchpack::oci::Compression;
use scratchpack::oci::compress::Pool;
use scratchpack::oci::layer::{Entry, EntryKind, Layer, Streamed, read_hashed};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: pack_layer FILE [gzip|zstd] [JOBS] [OUT]";
    let path = PathBuf::from(args.next().ok_or_else(|| anyhow::anyhow!(usage))?);
    let kind = match args.next() {
        Some(name) => Compression::parse(&name).ok_or_else(|| anyhow::anyhow!(usage))?,
        None => Compression::Gzip,
    };
    let jobs: usize = args.next().map_or(Ok(0), |j| j.parse())?;
    let out = args.next().map(PathBuf::from);

    // The build proves and hashes a binary before packing it; so does this.
    let (bytes, digest) = read_hashed(&path)?;
    let size = bytes.len() as u64;
    drop(bytes);
    let layer = Pool::new(jobs).install(|| {
        Layer::build(
            vec![Entry {
                path: "app".to_owned(),
                mode: 0o755,
                kind: EntryKind::Streamed(Streamed {
                    path: &path,
                    size,
                    digest: &digest,
                }),
            }],
            0,
            kind,
        )
    })?;
    println!(
        "{} {} {}",
        layer.blob.digest,
        layer.diff_id,
        layer.blob.bytes.len()
    );
    if let Some(out) = out {
        std::fs::write(out, &layer.blob.bytes)?;
    }
    Ok(())
}
