//! Layer compression: gzip (RFC 1952 around RFC 1951 deflate, cut into
//! blocks the way pigz does) and zstd (RFC 8878, one frame per block), both
//! compressed in parallel and both giving bytes that depend only on the
//! pinned implementation, the level and the block size: never on the number
//! of threads or on the machine.
//!
//! The input is taken as a stream and cut into blocks that a shared pool of
//! threads compresses while the next are written and the previous are
//! hashed and joined; a fixed number of block buffers bounds the memory,
//! whatever the size of the tar or the number of streams.

use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError, mpsc};

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

/// The `layer format` version: which bytes a given tar compresses to. It
/// changes whenever the implementation, level, block size or framing does.
pub const FORMAT_VERSION: u32 = 2;

/// A compressed stream, and the digests and size of what went in and out.
#[derive(Debug)]
pub struct Compressed {
    pub bytes: Vec<u8>,
    /// sha256 of `bytes` (a layer's digest).
    pub digest: Digest,
    /// sha256 of the uncompressed input (a layer's `diff_id`).
    pub input_digest: Digest,
    pub input_size: u64,
}

/// Compresses what is written to it; [`Encoder::finish`] gives the result.
///
/// Three stages run at once: the writer fills blocks (the caller's thread,
/// which also reads and tars the files), the [`Pool`]'s threads compress
/// them, and the pieces are joined in order as they come back, hashing the
/// input (`diff_id`) and the output (digest): the thread that finishes the
/// block next in line does that, for it and for any ready behind it, while
/// the others go on compressing. Each stage is sequential only where the
/// format is, and the writer waits only when the pool has its fill of
/// blocks in flight.
pub struct Encoder {
    kind: Compression,
    pool: Pool,
    /// The block being filled: the dictionary (gzip: the [`WINDOW`] bytes of
    /// input before it), then its input.
    block: Option<Buffer>,
    /// How much of `block` is dictionary.
    dict_len: usize,
    /// The end of the last block sent, kept as the next block's dictionary.
    tail: Vec<u8>,
    /// Blocks sent to the pool so far.
    sent: u64,
    size: u64,
    joined: Arc<Joined>,
}

/// One compressed block on its way to being joined.
struct Piece {
    seq: u64,
    input: Buffer,
    dict_len: usize,
    /// The compressed bytes and the crc32 of the input, or the panic of the
    /// thread that compressed it.
    result: std::thread::Result<(Vec<u8>, u32)>,
}

/// The pieces of one stream, joined in order.
struct Joined {
    state: Mutex<Joining>,
    /// Signalled whenever the joining stops, for `finish`.
    idle: Condvar,
}

struct Joining {
    /// Pieces that arrived before the one next in line.
    waiting: std::collections::BTreeMap<u64, Piece>,
    /// The piece next in line.
    next: u64,
    /// The result so far; taken by the thread joining, put back after.
    made: Option<Made>,
    /// The first panic of a block, which `finish` passes on.
    panic: Option<Box<dyn std::any::Any + Send>>,
    /// Set when the encoder is dropped unfinished: pieces are dropped (which
    /// returns their buffers) rather than joined.
    abandoned: bool,
}

/// What the pieces joined so far make.
struct Made {
    out: Vec<u8>,
    crc: u32,
    input: Sha256,
    output: Sha256,
}

impl Joined {
    fn lock(&self) -> std::sync::MutexGuard<'_, Joining> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a piece in; if it is next in line and no other thread is
    /// joining, joins it and every piece ready behind it. The hashing runs
    /// without the lock, so the other threads only ever wait to drop off a
    /// piece.
    fn deliver(&self, piece: Piece) {
        let mut state = self.lock();
        state.waiting.insert(piece.seq, piece);
        let Some(mut made) = state.made.take() else {
            // Another thread is joining, and will find this piece.
            return;
        };
        // Should the joining itself panic, `finish` is told rather than
        // left waiting.
        struct Guard<'a>(&'a Joined, bool);
        impl Drop for Guard<'_> {
            fn drop(&mut self) {
                if !self.1 {
                    let mut state = self.0.lock();
                    state
                        .panic
                        .get_or_insert_with(|| Box::new("joining the compressed blocks failed"));
                    state.next = u64::MAX;
                    self.0.idle.notify_all();
                }
            }
        }
        let mut guard = Guard(self, false);
        loop {
            let next = state.next;
            let Some(piece) = state.waiting.remove(&next) else {
                break;
            };
            state.next += 1;
            let join = state.panic.is_none() && !state.abandoned;
            drop(state);
            match piece.result {
                Ok((bytes, crc)) if join => {
                    let data = &piece.input.bytes[piece.dict_len..];
                    made.input.update(data);
                    made.output.update(&bytes);
                    made.out.extend_from_slice(&bytes);
                    made.crc = zlib_rs::crc32::crc32_combine(made.crc, crc, data.len() as u64);
                }
                Ok(_) => {}
                Err(panic) => {
                    self.lock().panic.get_or_insert(panic);
                }
            }
            // The piece's buffer goes back to the pool here.
            state = self.lock();
        }
        state.made = Some(made);
        guard.1 = true;
        drop(guard);
        self.idle.notify_all();
    }
}

impl Encoder {
    /// An encoder on the pool the current thread runs under (see
    /// [`Pool::install`]), else on the process's pool of one thread per core.
    pub fn new(kind: Compression) -> Encoder {
        Encoder::on(kind, Pool::current())
    }

    /// An encoder whose blocks `pool` compresses.
    pub fn on(kind: Compression, pool: Pool) -> Encoder {
        let mut made = Made {
            out: Vec::new(),
            crc: 0,
            input: Sha256::new(),
            output: Sha256::new(),
        };
        if kind == Compression::Gzip {
            // Every header byte pinned: no flags (so no name or comment),
            // mtime 0, XFL 0, OS 255 ("unknown", so the build host's OS does
            // not show).
            made.out
                .extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);
            made.output.update(&made.out);
        }
        Encoder {
            kind,
            pool,
            block: None,
            dict_len: 0,
            tail: Vec::new(),
            sent: 0,
            size: 0,
            joined: Arc::new(Joined {
                state: Mutex::new(Joining {
                    waiting: std::collections::BTreeMap::new(),
                    next: 0,
                    made: Some(made),
                    panic: None,
                    abandoned: false,
                }),
                idle: Condvar::new(),
            }),
        }
    }

    pub fn write(&mut self, mut data: &[u8]) {
        self.size += data.len() as u64;
        let block = self.kind.block();
        while !data.is_empty() {
            // A block is sent only once a byte beyond it has arrived, so the
            // stream's last block is always sent by `finish`.
            if self
                .block
                .as_ref()
                .is_some_and(|b| b.bytes.len() == self.dict_len + block)
            {
                self.send(false);
            }
            let buf = match &mut self.block {
                Some(buf) => buf,
                None => self.block.insert(self.pool.buffer()),
            };
            if buf.bytes.is_empty() {
                // Once, so a block never moves while it fills.
                buf.bytes.reserve_exact(self.tail.len() + block);
                buf.bytes.extend_from_slice(&self.tail);
                self.dict_len = self.tail.len();
            }
            let n = (self.dict_len + block - buf.bytes.len()).min(data.len());
            buf.bytes.extend_from_slice(&data[..n]);
            data = &data[n..];
        }
    }

    /// Hands the current block (possibly empty, when it ends an empty
    /// stream) to the pool; with `last`, it ends the stream.
    fn send(&mut self, last: bool) {
        let mut input = match self.block.take() {
            Some(b) => b,
            None => self.pool.buffer(),
        };
        let dict_len = if input.bytes.is_empty() {
            0
        } else {
            self.dict_len
        };
        if self.kind == Compression::Gzip {
            // The buffer travels with its block; the next block's dictionary
            // is copied out before it leaves.
            let keep = input.bytes.len().saturating_sub(WINDOW).max(dict_len);
            self.tail.clear();
            self.tail.extend_from_slice(&input.bytes[keep..]);
        }
        // Waits while the pool has its fill of blocks in flight.
        self.pool.admit(&mut input);
        let seq = self.sent;
        self.sent += 1;
        let kind = self.kind;
        let joined = Arc::clone(&self.joined);
        self.pool.spawn(Box::new(move || {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let (dict, data) = input.bytes.split_at(dict_len);
                #[cfg(test)]
                tests::maybe_panic(data);
                match kind {
                    Compression::Gzip => (
                        deflate_block(dict, data, last),
                        zlib_rs::crc32::crc32(0, data),
                    ),
                    Compression::Zstd => (zstd_block(data), 0),
                }
            }));
            joined.deliver(Piece {
                seq,
                input,
                dict_len,
                result,
            });
        }));
    }

    pub fn finish(mut self) -> Compressed {
        self.send(true);
        let mut state = self.joined.lock();
        // Every piece joined (or one panicked), and the last joiner gone.
        while !(state.next >= self.sent && (state.made.is_some() || state.panic.is_some())) {
            state = self
                .joined
                .idle
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        if let Some(panic) = state.panic.take() {
            drop(state);
            std::panic::resume_unwind(panic);
        }
        let mut c = state.made.take().expect("the joined pieces are there");
        drop(state);
        if self.kind == Compression::Gzip {
            let start = c.out.len();
            c.out.extend_from_slice(&c.crc.to_le_bytes());
            // ISIZE is the length modulo 2^32, as the format defines it.
            c.out.extend_from_slice(&(self.size as u32).to_le_bytes());
            c.output.update(&c.out[start..]);
        }
        Compressed {
            bytes: c.out,
            digest: Digest::from_hasher(c.output),
            input_digest: Digest::from_hasher(c.input),
            input_size: self.size,
        }
    }
}

impl Drop for Encoder {
    /// An encoder dropped unfinished (its layer failed): the blocks already
    /// sent are compressed and dropped, not joined.
    fn drop(&mut self) {
        self.joined.lock().abandoned = true;
    }
}

/// A job for the pool's threads.
type Job = Box<dyn FnOnce() + Send>;

/// The threads that compress blocks, shared by every stream compressed at
/// once, and the buffers that bound how much input is in flight.
///
/// The threads only ever compress: they never wait on another job, so any
/// number of streams may share them without deadlock, and a stream whose
/// block panics gets that panic back from [`Encoder::finish`] while the pool
/// goes on.
#[derive(Clone)]
pub struct Pool(Arc<Shared>);

struct Shared {
    threads: usize,
    jobs: Mutex<mpsc::Sender<Job>>,
    buffers: Mutex<Buffers>,
    returned: Condvar,
}

struct Buffers {
    /// Buffers kept for the next blocks, so their pages are not faulted
    /// in again for each one.
    free: Vec<Vec<u8>>,
    /// How many more blocks may be sent before one comes back.
    room: usize,
    /// The number of blocks in flight at most, and of buffers kept.
    slots: usize,
}

/// A block's input buffer, returned to its pool when dropped.
struct Buffer {
    bytes: Vec<u8>,
    pool: Arc<Shared>,
    /// Whether the buffer holds one of the pool's slots for blocks in flight.
    admitted: bool,
}

impl Drop for Buffer {
    fn drop(&mut self) {
        let mut bytes = std::mem::take(&mut self.bytes);
        bytes.clear();
        let mut b = self
            .pool
            .buffers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if b.free.len() < b.slots {
            b.free.push(bytes);
        }
        if self.admitted {
            b.room += 1;
            self.pool.returned.notify_one();
        }
    }
}

thread_local! {
    static CURRENT: std::cell::RefCell<Option<Pool>> = const { std::cell::RefCell::new(None) };
}

impl Pool {
    /// A pool of `threads` threads; 0 for one per core.
    pub fn new(threads: usize) -> Pool {
        let threads = match threads {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        };
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..threads {
            let queue = Arc::clone(&queue);
            std::thread::Builder::new()
                .name(format!("scratchpack-compress-{i}"))
                .spawn(move || {
                    // The threads end once the pool is dropped and its queue
                    // is empty.
                    loop {
                        let job = queue.lock().unwrap_or_else(PoisonError::into_inner).recv();
                        match job {
                            Ok(job) => {
                                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                            }
                            Err(_) => return,
                        }
                    }
                })
                .expect("threads can be started");
        }
        Pool(Arc::new(Shared {
            threads,
            jobs: Mutex::new(jobs),
            buffers: Mutex::new(Buffers {
                free: Vec::new(),
                // Enough for every thread to compress one block while the
                // next waits its turn and the collector hashes another.
                room: 2 * threads + 2,
                slots: 2 * threads + 2,
            }),
            returned: Condvar::new(),
        }))
    }

    pub fn threads(&self) -> usize {
        self.0.threads
    }

    /// Runs `f` with this pool as the one [`Encoder::new`] uses on this
    /// thread.
    pub fn install<T>(&self, f: impl FnOnce() -> T) -> T {
        struct Restore(Option<Pool>);
        impl Drop for Restore {
            fn drop(&mut self) {
                let previous = self.0.take();
                CURRENT.with(|c| *c.borrow_mut() = previous);
            }
        }
        let _restore = Restore(CURRENT.with(|c| c.borrow_mut().replace(self.clone())));
        f()
    }

    /// The installed pool, else the process's.
    fn current() -> Pool {
        static DEFAULT: OnceLock<Pool> = OnceLock::new();
        CURRENT
            .with(|c| c.borrow().clone())
            .unwrap_or_else(|| DEFAULT.get_or_init(|| Pool::new(0)).clone())
    }

    fn spawn(&self, job: Job) {
        self.0
            .jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .send(job)
            .expect("the compression threads outlive their pool");
    }

    /// A buffer for the next block: a writer fills its block before it
    /// waits for room, so every buffer that holds a slot is on its way back.
    fn buffer(&self) -> Buffer {
        let bytes = self
            .0
            .buffers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .free
            .pop()
            .unwrap_or_default();
        Buffer {
            bytes,
            pool: Arc::clone(&self.0),
            admitted: false,
        }
    }

    /// Takes a slot for `buffer`'s block, waiting while every slot is in
    /// flight.
    fn admit(&self, buffer: &mut Buffer) {
        let mut b = self
            .0
            .buffers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        while b.room == 0 {
            b = self
                .0
                .returned
                .wait(b)
                .unwrap_or_else(PoisonError::into_inner);
        }
        b.room -= 1;
        buffer.admitted = true;
    }
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
///
/// Every block gets a fresh deflate state: zlib-rs 0.6.8's reset leaves
/// state behind that changes the bytes of the next block.
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
///
/// Each thread keeps one context: every frame starts a new session with the
/// same parameters, so the bytes are those of a fresh context (a test holds
/// it to that), without allocating its tables for every block.
#[cfg(feature = "zstd")]
fn zstd_block(data: &[u8]) -> Vec<u8> {
    use zstd::zstd_safe::CParameter;
    thread_local! {
        static CONTEXT: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    CONTEXT.with(|context| {
        let mut context = context.borrow_mut();
        let c = match &mut *context {
            Some(c) => c,
            None => {
                let mut c =
                    zstd::bulk::Compressor::new(ZSTD_LEVEL).expect("zstd allocates a context");
                c.set_parameter(CParameter::ChecksumFlag(true))
                    .and_then(|()| c.set_parameter(CParameter::ContentSizeFlag(true)))
                    .expect("zstd takes the frame parameters");
                context.insert(c)
            }
        };
        c.compress(data).expect("zstd compresses any input")
    })
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
pub fn zstd_reader<'a>(compressed: impl std::io::Read + 'a) -> Box<dyn std::io::Read + 'a> {
    match zstd::stream::read::Decoder::new(compressed) {
        Ok(d) => Box::new(d),
        Err(e) => Box::new(FailedReader(Some(e))),
    }
}

/// Without the `zstd` feature a zstd layer cannot be read; the first read
/// says so.
#[cfg(not(feature = "zstd"))]
pub fn zstd_reader<'a>(_: impl std::io::Read + 'a) -> Box<dyn std::io::Read + 'a> {
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
pub(crate) mod tests {
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

    /// The compressions this build writes.
    pub(crate) fn kinds() -> &'static [Compression] {
        if cfg!(feature = "zstd") {
            &[Compression::Gzip, Compression::Zstd]
        } else {
            &[Compression::Gzip]
        }
    }

    fn in_pool<T>(threads: usize, f: impl FnOnce() -> T) -> T {
        Pool::new(threads).install(f)
    }

    /// Input that makes the thread compressing it panic, to test that a
    /// failing block is reported and harms nothing else.
    const PANICS: &[u8] = b"this block panics in compression";

    pub(super) fn maybe_panic(data: &[u8]) {
        assert!(!data.starts_with(PANICS), "a block panicked");
    }

    #[cfg(feature = "zstd")]
    #[test]
    fn a_reused_zstd_context_gives_the_bytes_of_a_fresh_one() {
        let a = sample(ZSTD_BLOCK);
        let b: Vec<u8> = sample(ZSTD_BLOCK + 999).into_iter().rev().collect();
        // On a new thread, so with a fresh context.
        let want = std::thread::scope(|s| s.spawn(|| zstd_block(&b)).join().unwrap());
        // On this thread, after other frames, which leave their state behind.
        zstd_block(&a);
        zstd_block(&b[..1000]);
        assert!(zstd_block(&b) == want);
    }

    #[test]
    fn a_panicking_block_panics_the_finish_and_the_pool_goes_on() {
        for &kind in kinds() {
            let pool = Pool::new(2);
            let mut data = sample(3 * kind.block());
            data.extend_from_slice(PANICS);
            data.extend_from_slice(&sample(5 * kind.block()));
            let at = 3 * kind.block();
            // The panicking block starts at a block boundary.
            assert!(data[at..].starts_with(PANICS));
            let failed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let mut e = Encoder::on(kind, pool.clone());
                e.write(&data);
                e.finish()
            }));
            let panic = failed.expect_err("the panic reaches finish");
            assert_eq!(panic.downcast_ref::<&str>(), Some(&"a block panicked"));
            // Every buffer came back and every thread is alive: the same
            // pool still compresses, many streams over.
            let good = sample(3 * kind.block());
            let want = compress(kind, &good).bytes;
            for _ in 0..10 {
                let mut e = Encoder::on(kind, pool.clone());
                e.write(&good);
                assert!(e.finish().bytes == want);
            }
        }
    }

    #[test]
    fn an_encoder_dropped_unfinished_returns_its_buffers() {
        // One thread and so four slots: a single one leaked would stall
        // the loop below.
        let pool = Pool::new(1);
        let data = sample(7 * GZIP_BLOCK);
        for _ in 0..20 {
            let mut e = Encoder::on(Compression::Gzip, pool.clone());
            e.write(&data);
            drop(e);
        }
        let want = compress(Compression::Gzip, &data);
        let mut e = Encoder::on(Compression::Gzip, pool);
        e.write(&data);
        let got = e.finish();
        assert!(got.bytes == want.bytes);
        assert_eq!(got.digest, Digest::of(&want.bytes));
    }

    #[test]
    fn gzip_reads_back_as_one_member() {
        for len in [
            0,
            1,
            GZIP_BLOCK,
            GZIP_BLOCK + 1,
            ZSTD_BLOCK,
            ZSTD_BLOCK + 1,
            4 * ZSTD_BLOCK + 7,
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
        for len in [0, 1, ZSTD_BLOCK, ZSTD_BLOCK + 1, 5 * ZSTD_BLOCK] {
            let data = sample(len);
            let c = compress(Compression::Zstd, &data);
            let mut back = Vec::new();
            zstd_reader(c.bytes.as_slice())
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, data, "length {len}");
        }
    }

    #[test]
    fn bytes_do_not_depend_on_threads_or_write_sizes() {
        let data = sample(6 * ZSTD_BLOCK + 12_345);
        for &kind in kinds() {
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
