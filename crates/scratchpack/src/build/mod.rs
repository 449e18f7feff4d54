//! The build path from a plan to images on disk: compile every binary, prove
//! each static, assemble the images, and write the layout directory and the
//! archive of each, skipping images whose inputs have not changed.

#[cfg(feature = "push")]
pub mod action_key;
pub mod assemble;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::compile::{CompileError, Compiler, Request};
use crate::elf::{NotStatic, check_static};
use crate::manifest::{FileSource, ImagePlan};
use crate::oci::archive::archive;
use crate::oci::compress::Pool;
use crate::oci::layer::{EntryKind, LayerError, Streamed, read_hashed};
use crate::oci::layout::{LayoutMeta, layout_files};
use crate::oci::{Digest, LayoutDir};
use crate::output::{OutputError, OutputLock, write_synced, write_tree};
use crate::platform::Platform;
use crate::record;
use crate::shell::Shell;

/// Where and how images are written.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub out_dir: PathBuf,
    /// Seconds since the epoch for `created` and file mtimes
    /// (`SOURCE_DATE_EPOCH`, else 0).
    pub epoch: u64,
    /// Threads that prove and pack images, and that compress their layers'
    /// blocks; 0 for one per core. The bytes written never depend on it.
    pub jobs: usize,
    /// Where the proofs of binaries are kept between runs (beside the
    /// binaries, in the target directory: the output holds no host path);
    /// `None` proves every binary every run.
    pub proofs: Option<PathBuf>,
    /// Where the images come from, for their source annotations.
    pub source: assemble::Source,
    /// What compiles the C of image builds (zig and its version), which
    /// action keys record; `None` when nothing does.
    pub c_compiler: Option<String>,
}

/// What was built for one image, as printed and recorded. The record holds
/// no host path: `layout` and `archive` are recorded relative to the output
/// directory and `binary` empty, so two checkouts record the same bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuiltImage {
    pub name: String,
    /// The digest a reference to the image resolves to: the index's when
    /// there are several platforms, else the manifest's.
    pub digest: String,
    pub media_type: String,
    pub tags: Vec<String>,
    pub layout: PathBuf,
    pub archive: PathBuf,
    pub platforms: Vec<BuiltPlatform>,
    /// sha256 of the layout's `index.json`, to notice outputs changed by hand.
    pub index_json: String,
    pub archive_size: u64,
    /// True when nothing had to be packed.
    #[serde(skip)]
    pub fresh: bool,
    /// True when only the tags changed: the layout's `index.json` and the
    /// archive were written again, and nothing was packed.
    #[serde(skip)]
    pub retagged: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuiltPlatform {
    pub platform: String,
    pub manifest: String,
    pub config: String,
    pub layer: String,
    pub layer_size: u64,
    /// Bytes of the layer once unpacked (the tar).
    pub unpacked_size: u64,
    /// Host path of the binary that went in.
    pub binary: PathBuf,
    /// Host paths of the image's `binaries`, in plan order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_binaries: Vec<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Compile(#[from] CompileError),
    #[error("refusing image `{image}` for {platform}: {path} is not a static executable: {reason}")]
    NotStatic {
        image: String,
        platform: Platform,
        path: PathBuf,
        reason: NotStatic,
    },
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("assembling the layer of image `{image}`")]
    Layer {
        image: String,
        #[source]
        source: LayerError,
    },
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error("writing {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn read(path: &Path) -> Result<Vec<u8>, BuildError> {
    std::fs::read(path).map_err(|source| BuildError::Read {
        path: path.to_owned(),
        source,
    })
}

/// A binary that passed the static proof: where it is, and the size and
/// digest its bytes must still have when they are packed.
#[derive(Debug, Clone)]
struct Proven {
    platform: Platform,
    path: PathBuf,
    size: u64,
    digest: Digest,
    /// The file's stamp taken before it was read: a record pairs a digest
    /// only with a stamp no later than the bytes it was computed from.
    stamp: Option<String>,
}

/// Builds `images` (all or some of a plan's). Every binary is compiled and
/// checked before anything is written: one refused binary writes nothing.
///
/// Binaries are read twice: once to prove and hash them (one at a time per
/// thread, then dropped), and once streamed into their layer, which checks
/// the bytes are still those. So memory holds at most one binary per thread,
/// never all of them. Images (and the platforms of an image, on the threads
/// the images leave) are packed on at most `opts.jobs` threads, and the
/// blocks of every layer compressed on one pool of as many.
pub fn build(
    images: &[&ImagePlan],
    compiler: &dyn Compiler,
    opts: &BuildOptions,
    shell: Shell,
) -> Result<Vec<BuiltImage>, BuildError> {
    // A collision with the user's own files is reported before compiling;
    // it is checked again under the lock before anything is written.
    for image in images {
        crate::output::check_replaceable(&opts.out_dir, &image.name)?;
    }
    let requests: Vec<Request> = images.iter().flat_map(|image| requests(image)).collect();
    let executables = compiler.compile(&requests)?;

    // One pool compresses the blocks of every layer; its size is the -j
    // bound for the threads that prove, read and pack as well.
    let pool = Pool::new(opts.jobs);
    pack_all(images, executables, opts, &pool, shell)
}

/// What `image` asks the compiler for: per platform, its own binary, then
/// each of its `binaries`, in that order.
pub fn requests(image: &ImagePlan) -> Vec<Request> {
    image
        .targets
        .iter()
        .flat_map(|t| {
            let own = (&image.package, &image.bin, &image.build);
            let extras = image
                .binaries
                .iter()
                .map(|b| (&b.package, &b.bin, &b.build));
            std::iter::once(own)
                .chain(extras)
                .map(|(package, bin, settings)| Request {
                    package: package.clone(),
                    bin: bin.clone(),
                    triple: t.triple.clone(),
                    settings: settings.clone(),
                })
        })
        .collect()
}

/// Calls `f` on every item, on at most `threads` threads at once (each
/// compressing on `pool`), and gives the results in item order. A panic in
/// `f` is passed on once every thread has stopped; the others go on with the
/// remaining items, so none waits on a failed one.
fn in_parallel<T: Sync, R: Send>(
    pool: &Pool,
    threads: usize,
    items: &[T],
    f: impl Fn(usize, &T) -> R + Sync,
) -> Vec<R> {
    let threads = threads.min(items.len());
    if threads <= 1 {
        return pool.install(|| items.iter().enumerate().map(|(i, t)| f(i, t)).collect());
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|n| {
                let (tx, next, f) = (tx.clone(), &next, &f);
                std::thread::Builder::new()
                    .name(format!("scratchpack-pack-{n}"))
                    .spawn_scoped(s, move || {
                        pool.install(|| {
                            loop {
                                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                let Some(item) = items.get(i) else { break };
                                // The receiver lives until every thread is joined.
                                let _ = tx.send((i, f(i, item)));
                            }
                        });
                    })
                    .expect("threads can be started")
            })
            .collect();
        // Joined here rather than by the scope, so the first panic's own
        // message is the one passed on.
        let panics: Vec<_> = handles.into_iter().filter_map(|h| h.join().err()).collect();
        if let Some(panic) = panics.into_iter().next() {
            std::panic::resume_unwind(panic);
        }
    });
    drop(tx);
    let mut results: Vec<Option<R>> = items.iter().map(|_| None).collect();
    for (i, r) in rx {
        results[i] = Some(r);
    }
    results
        .into_iter()
        .map(|r| r.expect("every item has a result"))
        .collect()
}

fn pack_all(
    images: &[&ImagePlan],
    executables: Vec<PathBuf>,
    opts: &BuildOptions,
    pool: &Pool,
    shell: Shell,
) -> Result<Vec<BuiltImage>, BuildError> {
    // Prove every binary first, in parallel; the first refusal in plan order
    // is the one reported.
    let mut exes = executables.into_iter();
    let per_platform = |image: &ImagePlan| 1 + image.binaries.len();
    let jobs: Vec<(&ImagePlan, Platform, PathBuf)> = images
        .iter()
        .flat_map(|image| {
            image
                .targets
                .iter()
                .flat_map(|t| std::iter::repeat_n(t.platform, per_platform(image)))
                .map(|platform| {
                    let path = exes.next().expect("one executable per request");
                    (*image, platform, path)
                })
                .collect::<Vec<_>>()
        })
        .collect();
    // Collected whole, then the first error taken in plan order, whichever
    // came first in time. A binary proven by an earlier run and untouched
    // since (same stamp) is not read again.
    let known = ProofMemo::read(opts.proofs.as_deref());
    let proven: Vec<Proven> = in_parallel(
        pool,
        pool.threads(),
        &jobs,
        |_, (image, platform, path)| match known.get(*platform, path) {
            Some(p) => Ok(p),
            None => prove(image, *platform, path),
        },
    )
    .into_iter()
    .collect::<Result<_, _>>()?;
    let memo = ProofMemo::of(&proven);
    let files: Vec<Vec<Vec<u8>>> = in_parallel(pool, pool.threads(), images, |_, image| {
        image
            .files
            .iter()
            .map(|f| match &f.src {
                FileSource::Host(path) => read(path),
                FileSource::Generated(bytes) => Ok(bytes.clone()),
            })
            .collect::<Result<Vec<_>, _>>()
    })
    .into_iter()
    .collect::<Result<_, _>>()?;
    // Per image, per platform: its own binary, then its `binaries`.
    let mut proven = proven.into_iter();
    let binaries: Vec<Vec<Vec<Proven>>> = images
        .iter()
        .map(|image| {
            image
                .targets
                .iter()
                .map(|_| proven.by_ref().take(per_platform(image)).collect())
                .collect()
        })
        .collect();

    let lock = OutputLock::acquire(&opts.out_dir)?;
    // Nothing is written while any image would replace what the user owns.
    for image in images {
        lock.check_replaceable(&image.name)?;
    }
    // Status lines come in plan order, each as soon as its image and every
    // one before it are done, so parallel packing reads like a serial run.
    let progress = Progress::new(images.len(), shell);
    // The platforms of an image are packed in parallel too, with the
    // threads the images leave over, so no more than `-j` pack at once.
    let platform_threads = (pool.threads() / images.len().max(1)).max(1);
    let results = in_parallel(pool, pool.threads(), images, |i, image| {
        let result = write_image(
            &lock,
            image,
            &binaries[i],
            &files[i],
            opts,
            (pool, platform_threads),
        );
        progress.done(i, result.as_ref().ok());
        result
    });
    let built: Vec<BuiltImage> = results.into_iter().collect::<Result<_, _>>()?;
    memo.keep(&known, opts.proofs.as_deref());
    Ok(built)
}

/// Binaries proven static by the last run, each with its stamp
/// ([`crate::toolchain::answers::file_stamp`]), size and digest: a record read like every
/// record (no link followed, bounded) and replaced once a run has succeeded.
#[derive(Default, PartialEq, serde::Serialize, serde::Deserialize)]
struct ProofMemo {
    /// `platform path` -> (stamp, size, digest).
    proven: std::collections::BTreeMap<String, (String, u64, Digest)>,
}

impl ProofMemo {
    /// Proofs made by another build of this program are made again.
    fn key() -> String {
        format!(
            "{} {}",
            env!("CARGO_PKG_VERSION"),
            crate::toolchain::answers::program_stamp()
        )
    }

    fn entry(platform: Platform, path: &Path) -> String {
        format!("{platform} {}", path.display())
    }

    fn read(path: Option<&Path>) -> ProofMemo {
        path.and_then(|p| crate::record::lookup(p, &Self::key()))
            .unwrap_or_default()
    }

    /// The proof of `path` for `platform`, if it was proven and its stamp
    /// is the same now: cargo replaces a binary it relinks, which changes
    /// the stamp, and so does any other write.
    fn get(&self, platform: Platform, path: &Path) -> Option<Proven> {
        let (stamp, size, digest) = self.proven.get(&Self::entry(platform, path))?;
        (crate::toolchain::answers::file_stamp(path).as_ref() == Some(stamp)).then(|| Proven {
            platform,
            path: path.to_owned(),
            size: *size,
            digest: digest.clone(),
            stamp: Some(stamp.clone()),
        })
    }

    fn of(proven: &[Proven]) -> ProofMemo {
        ProofMemo {
            proven: proven
                .iter()
                .filter_map(|p| {
                    Some((
                        Self::entry(p.platform, &p.path),
                        (p.stamp.clone()?, p.size, p.digest.clone()),
                    ))
                })
                .collect(),
        }
    }

    /// Records this run's proofs when they differ from what was read. Only
    /// a cache: a failed write proves the binaries again next time.
    fn keep(&self, known: &ProofMemo, path: Option<&Path>) {
        if let Some(path) = path
            && self != known
        {
            let _ = crate::output::write_atomic(path, &crate::record::encode(&Self::key(), self));
        }
    }
}

/// Reads one binary, proves it static and hashes it; its bytes are dropped.
fn prove(image: &ImagePlan, platform: Platform, path: &Path) -> Result<Proven, BuildError> {
    let stamp = crate::toolchain::answers::file_stamp(path);
    let (bytes, digest) = read_hashed(path).map_err(|source| BuildError::Read {
        path: path.to_owned(),
        source,
    })?;
    check_static(&bytes, platform.elf_machine(), &platform.to_string()).map_err(|reason| {
        BuildError::NotStatic {
            image: image.name.clone(),
            platform,
            path: path.to_owned(),
            reason,
        }
    })?;
    Ok(Proven {
        platform,
        path: path.to_owned(),
        size: bytes.len() as u64,
        digest,
        stamp,
    })
}

/// Prints each image's status line once it and all images before it are
/// finished.
struct Progress {
    shell: Shell,
    /// The next image to print, and each image's line once it is finished
    /// (`Some(None)`: finished without a line).
    lines: std::sync::Mutex<(usize, Vec<Option<Option<StatusLine>>>)>,
}

/// A verb and its message.
type StatusLine = (&'static str, String);

impl Progress {
    fn new(count: usize, shell: Shell) -> Progress {
        Progress {
            shell,
            lines: std::sync::Mutex::new((0, vec![None; count])),
        }
    }

    /// Records image `i` as finished (`None` when it failed: its error is
    /// reported by the caller) and prints every line now in order.
    fn done(&self, i: usize, built: Option<&BuiltImage>) {
        let line = built.map(|b| {
            let verb = match (b.fresh, b.retagged) {
                (true, true) => "Tagged",
                (true, false) => "Fresh",
                (false, _) => "Packed",
            };
            let platforms = b
                .platforms
                .iter()
                .map(|p| p.platform.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            (
                verb,
                format!("{} ({platforms}) {}", b.name, short(&b.digest)),
            )
        });
        let mut state = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        state.1[i] = Some(line);
        while let Some(Some(line)) = state.1.get(state.0) {
            if let Some((verb, message)) = line {
                self.shell.status(verb, message);
            }
            state.0 += 1;
        }
    }
}

/// Everything that shapes an image's outputs, and nothing about where they
/// or the workspace are: a file's host path is left out (its bytes and its
/// place in the image are in), so checkouts at different paths share keys.
/// The tags are left out too: they only name the image, so a run that
/// changes them rewrites the layout's `index.json` and the archive, and
/// packs nothing.
#[derive(Serialize)]
struct KeyInputs {
    plan: serde_json::Value,
    repository: String,
    binaries: Vec<Digest>,
    files: Vec<Digest>,
    epoch: u64,
    annotations: std::collections::BTreeMap<String, String>,
}

fn key_plan(image: &ImagePlan) -> serde_json::Value {
    let mut plan = serde_json::to_value(image).expect("plans serialize");
    if let Some(files) = plan.get_mut("files").and_then(|f| f.as_array_mut()) {
        for f in files {
            if let Some(f) = f.as_object_mut() {
                f.remove("src");
            }
        }
    }
    plan
}

/// Writes one image, unless its record says the outputs are there: then
/// they are used as they are, or, when only the tags changed, renamed.
/// `binaries` are per platform: the image's own, then its `binaries`.
fn write_image(
    lock: &OutputLock,
    image: &ImagePlan,
    binaries: &[Vec<Proven>],
    files: &[Vec<u8>],
    opts: &BuildOptions,
    (pool, platform_threads): (&Pool, usize),
) -> Result<BuiltImage, BuildError> {
    let key = record::key(&KeyInputs {
        plan: key_plan(image),
        repository: assemble::repository(image),
        binaries: binaries
            .iter()
            .flatten()
            .map(|b| b.digest.clone())
            .collect(),
        files: files.iter().map(|f| Digest::of(f)).collect(),
        epoch: opts.epoch,
        annotations: assemble::annotations(image, &opts.source, opts.epoch),
    });
    let record = record::record_path(&opts.out_dir, "images", &image.name);
    if let Some(recorded) = record::lookup::<BuiltImage>(&record, &key)
        && let Some(mut done) = recorded.located(&opts.out_dir, binaries)
        && outputs_intact(&done)
    {
        done.fresh = true;
        let tags: Vec<String> = image.tags.iter().map(ToString::to_string).collect();
        if done.tags != tags {
            retag(lock, image, &mut done, tags, opts.epoch)?;
            lock.write_state(&record, &record::encode(&key, &done.recorded()))
                .map_err(write_err(&record))?;
        }
        return Ok(done);
    }

    let per_platform = in_parallel(pool, platform_threads, binaries, |_, bins| {
        let contents = assemble::Contents {
            binaries: bins
                .iter()
                .map(|b| {
                    EntryKind::Streamed(Streamed {
                        path: &b.path,
                        size: b.size,
                        digest: &b.digest,
                    })
                })
                .collect(),
            files,
        };
        assemble::image(image, bins[0].platform, &contents, &opts.source, opts.epoch).map_err(
            |source| BuildError::Layer {
                image: image.name.clone(),
                source,
            },
        )
    })
    .into_iter()
    .collect::<Result<Vec<_>, _>>()?;
    let set = assemble::image_set(image, per_platform, &opts.source, opts.epoch);

    let layout = opts.out_dir.join(&image.name);
    let archive_path = opts.out_dir.join(format!("{}.tar", image.name));
    let meta = LayoutMeta::new(&set);
    // Both temporaries are removed on every failure (a full disk included)
    // when their guards drop.
    let tmp = lock.temp(&image.name);
    write_tree(
        tmp.path(),
        layout_files(&set, &meta)
            .iter()
            .map(|f| (f.path.as_str(), f.bytes)),
    )
    .map_err(write_err(&layout))?;
    let tar = archive(&set, opts.epoch);
    let tmp_tar = lock.temp(&format!("{}.tar", image.name));
    write_synced(tmp_tar.path(), &tar).map_err(write_err(&archive_path))?;
    // Both outputs are complete on disk before either is replaced, so a
    // failure up to here leaves the previous pair untouched. The claim comes
    // first: a crash after it claims a name whose old output was ours anyway.
    lock.claim(&image.name).map_err(write_err(&layout))?;
    lock.publish_dir(tmp, &layout).map_err(write_err(&layout))?;
    lock.publish_file(tmp_tar, &archive_path)
        .map_err(write_err(&archive_path))?;

    let done = built_image(image, &set, binaries, (layout, archive_path), &meta, &tar);
    lock.write_state(&record, &record::encode(&key, &done.recorded()))
        .map_err(write_err(&record))?;
    Ok(done)
}

fn write_err(path: &Path) -> impl FnOnce(std::io::Error) -> BuildError + use<> {
    let path = path.to_owned();
    move |source| BuildError::Write { path, source }
}

/// What was written for `set`, as printed and (in its recorded form) kept.
fn built_image(
    image: &ImagePlan,
    set: &crate::oci::ImageSet,
    binaries: &[Vec<Proven>],
    (layout, archive): (PathBuf, PathBuf),
    meta: &LayoutMeta,
    tar: &[u8],
) -> BuiltImage {
    let top = set.top();
    BuiltImage {
        name: image.name.clone(),
        digest: top.digest.to_string(),
        media_type: top.media_type.clone(),
        tags: image.tags.iter().map(ToString::to_string).collect(),
        layout,
        archive,
        platforms: set
            .images
            .iter()
            .zip(binaries)
            .map(|(img, bins)| BuiltPlatform {
                platform: img.platform.to_string(),
                manifest: img.manifest.digest.to_string(),
                config: img.config.digest.to_string(),
                layer: img.layer.blob.digest.to_string(),
                layer_size: img.layer.blob.bytes.len() as u64,
                unpacked_size: img.layer.tar_size,
                binary: bins[0].path.clone(),
                extra_binaries: bins[1..].iter().map(|b| b.path.clone()).collect(),
            })
            .collect(),
        index_json: Digest::of(meta.index_json()).to_string(),
        archive_size: tar.len() as u64,
        fresh: false,
        retagged: false,
    }
}

/// Names the outputs of `done` by `tags`: the layout's `index.json` lists
/// them, and the archive is made again from the layout's blobs (read back
/// as any layout is, and checked), so no layer is packed again. Each file
/// is written aside and renamed over the old one.
fn retag(
    lock: &OutputLock,
    image: &ImagePlan,
    done: &mut BuiltImage,
    tags: Vec<String>,
    epoch: u64,
) -> Result<(), BuildError> {
    use crate::oci::archive::{ReadBack, archive_of};
    use crate::oci::source::{index, resolve, select};
    let unreadable = |e: crate::oci::ReadError| BuildError::Write {
        path: done.layout.clone(),
        source: std::io::Error::other(e),
    };
    let layout = LayoutDir::open(&done.layout).map_err(unreadable)?;
    let (_, old_index) = index(&layout).map_err(unreadable)?;
    let mut top = select(&old_index, None).map_err(unreadable)?.clone();
    top.annotations.clear();
    let resolved = resolve(&layout, &top).map_err(unreadable)?;
    let first = resolved.images[0].platform.clone();
    let loaded = ReadBack::read(&layout, &resolved, &first)
        .map_err(unreadable)?
        .ok_or_else(|| unreadable(crate::oci::ReadError::Empty))?;
    let repository = assemble::repository(image);
    let names: Vec<String> = tags.iter().map(|t| format!("{repository}:{t}")).collect();
    let tar = archive_of(&loaded.loaded(), &names, epoch);
    let index_json = crate::oci::layout::index_json(&top, tags.iter().map(String::as_str));

    let tmp_tar = lock.temp(&format!("{}.tar", image.name));
    write_synced(tmp_tar.path(), &tar).map_err(write_err(&done.archive))?;
    let index_path = done.layout.join("index.json");
    crate::output::write_atomic(&index_path, &index_json).map_err(write_err(&index_path))?;
    lock.publish_file(tmp_tar, &done.archive)
        .map_err(write_err(&done.archive))?;
    done.tags = tags;
    done.index_json = Digest::of(&index_json).to_string();
    done.archive_size = tar.len() as u64;
    done.retagged = true;
    Ok(())
}

impl BuiltImage {
    /// The record's form: paths relative to the output directory, no
    /// binary paths.
    fn recorded(&self) -> BuiltImage {
        let name = |p: &Path| PathBuf::from(p.file_name().unwrap_or_default());
        let mut r = self.clone();
        r.layout = name(&self.layout);
        r.archive = name(&self.archive);
        for p in &mut r.platforms {
            p.binary = PathBuf::new();
            p.extra_binaries = Vec::new();
        }
        r
    }

    /// A record read back, placed in `out_dir` with this run's binaries;
    /// `None` when the record does not fit them (a record is a cache, and
    /// is never trusted further than that).
    fn located(mut self, out_dir: &Path, binaries: &[Vec<Proven>]) -> Option<BuiltImage> {
        let plain = |p: &Path| {
            let mut c = p.components();
            matches!(c.next(), Some(std::path::Component::Normal(_))) && c.next().is_none()
        };
        if !plain(&self.layout) || !plain(&self.archive) || self.platforms.len() != binaries.len() {
            return None;
        }
        self.layout = out_dir.join(&self.layout);
        self.archive = out_dir.join(&self.archive);
        for (p, bins) in self.platforms.iter_mut().zip(binaries) {
            if p.platform != bins[0].platform.to_string() {
                return None;
            }
            p.binary = bins[0].path.clone();
            p.extra_binaries = bins[1..].iter().map(|b| b.path.clone()).collect();
        }
        Some(self)
    }
}

/// Whether the outputs a record describes are still on disk as written: the
/// layout's `index.json` unchanged, every manifest, config and layer blob
/// there with its size, and the archive with its size. The layout is read
/// through [`LayoutDir`] like any untrusted layout (no links followed, only
/// regular files); blobs are not hashed again, which keeps a no-op run cheap.
fn outputs_intact(done: &BuiltImage) -> bool {
    let Ok(layout) = LayoutDir::open(&done.layout) else {
        return false;
    };
    let index_ok = layout
        .read_small("index.json")
        .is_ok_and(|b| Digest::of(&b).as_str() == done.index_json);
    let size = |digest: &str| Digest::parse(digest).and_then(|d| layout.blob_size(&d).ok());
    let blobs_ok = done.platforms.iter().all(|p| {
        size(&p.manifest).is_some()
            && size(&p.config).is_some()
            && size(&p.layer) == Some(p.layer_size)
    }) && size(&done.digest).is_some();
    let archive_ok = std::fs::symlink_metadata(&done.archive)
        .is_ok_and(|m| m.is_file() && m.len() == done.archive_size);
    index_ok && blobs_ok && archive_ok
}

/// `sha256:0123456789ab`, for status lines.
pub fn short(digest: &str) -> &str {
    &digest[..digest.len().min("sha256:".len() + 12)]
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crate::elf::{EM_X86_64, ET_DYN};

    use super::*;
    use crate::manifest::parse;
    use crate::toolchain::workspace::Workspace;
    use scratchpack_base::testkit::elf::elf64;

    /// Hands out a prepared file for every request, and counts the calls: the
    /// test seam that lets assembly and writing run without cargo.
    struct Prebuilt(PathBuf, std::cell::Cell<usize>);

    impl Compiler for Prebuilt {
        fn compile(&self, requests: &[Request]) -> Result<Vec<PathBuf>, CompileError> {
            self.1.set(self.1.get() + 1);
            Ok(requests.iter().map(|_| self.0.clone()).collect())
        }
    }

    fn plan(root: &Path) -> ImagePlan {
        let mut packages = BTreeMap::new();
        packages.insert("app".to_owned(), vec!["app".to_owned()]);
        let ws = Workspace {
            root: root.to_owned(),
            target_dir: root.join("target"),
            packages,
            manifests: BTreeMap::new(),
            ..Workspace::default()
        };
        parse(
            &root.join("images.toml"),
            "[images.app]\npackage = \"app\"\n",
            &ws,
        )
        .unwrap()
        .images
        .remove(0)
    }

    fn options(root: &Path) -> BuildOptions {
        BuildOptions {
            out_dir: root.join("out"),
            epoch: 0,
            jobs: 2,
            proofs: None,
            source: assemble::Source::default(),
            c_compiler: None,
        }
    }

    #[test]
    fn in_parallel_keeps_order_and_its_bound() {
        let items: Vec<usize> = (0..40).collect();
        for threads in [1, 2, 8] {
            let pool = Pool::new(threads);
            let running = std::sync::atomic::AtomicUsize::new(0);
            let most = std::sync::atomic::AtomicUsize::new(0);
            let out = in_parallel(&pool, pool.threads(), &items, |i, &item| {
                use std::sync::atomic::Ordering::SeqCst;
                let now = running.fetch_add(1, SeqCst) + 1;
                most.fetch_max(now, SeqCst);
                std::thread::sleep(std::time::Duration::from_millis(2));
                running.fetch_sub(1, SeqCst);
                assert_eq!(i, item);
                item * 10
            });
            assert_eq!(out, (0..40).map(|i| i * 10).collect::<Vec<_>>());
            let most = most.into_inner();
            assert!(most <= threads, "{most} at once with {threads} threads");
        }
    }

    #[test]
    fn in_parallel_gives_every_result_when_some_fail() {
        let pool = Pool::new(2);
        let items: Vec<usize> = (0..20).collect();
        let out = in_parallel(&pool, pool.threads(), &items, |_, &i| {
            if i % 7 == 3 {
                Err(format!("item {i}"))
            } else {
                Ok(i)
            }
        });
        assert_eq!(out.len(), 20);
        let first: Result<Vec<usize>, String> = out.into_iter().collect();
        assert_eq!(first, Err("item 3".to_owned()));
    }

    #[test]
    fn in_parallel_passes_a_panic_on_after_the_other_items() {
        let pool = Pool::new(2);
        let items: Vec<usize> = (0..20).collect();
        let done = std::sync::atomic::AtomicUsize::new(0);
        let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            in_parallel(&pool, pool.threads(), &items, |_, &i| {
                assert!(i != 5, "item 5 failed");
                done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            })
        }))
        .expect_err("the panic is passed on");
        assert_eq!(panic.downcast_ref::<&str>(), Some(&"item 5 failed"));
        // The other thread went on to the end: nothing waits on the failed item.
        assert_eq!(done.into_inner(), 19);
        // And the pool still packs.
        let layer =
            pool.install(|| crate::oci::compress::compress(crate::oci::Compression::Gzip, b"x"));
        assert_eq!(layer.input_size, 1);
    }

    #[test]
    fn builds_then_finds_the_result_fresh() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("app");
        std::fs::write(&bin, elf64(ET_DYN, EM_X86_64.0, None, &[], true)).unwrap();
        let compiler = Prebuilt(bin, Default::default());
        let image = plan(dir.path());
        let first = build(&[&image], &compiler, &options(dir.path()), Shell::new(true)).unwrap();
        assert!(!first[0].fresh);
        assert!(first[0].layout.join("index.json").is_file());
        assert!(first[0].archive.is_file());
        let again = build(&[&image], &compiler, &options(dir.path()), Shell::new(true)).unwrap();
        assert!(again[0].fresh);
        assert_eq!(again[0].digest, first[0].digest);
        // A removed blob is noticed, and the image is written again.
        let layer = &first[0].platforms[0].layer;
        let hex = layer.strip_prefix("sha256:").unwrap();
        std::fs::remove_file(first[0].layout.join("blobs/sha256").join(hex)).unwrap();
        let third = build(&[&image], &compiler, &options(dir.path()), Shell::new(true)).unwrap();
        assert!(!third[0].fresh);
        assert_eq!(third[0].digest, first[0].digest);
        assert_eq!(compiler.1.get(), 3);
    }

    /// A run that changes only the tags names the outputs anew (the
    /// layout's `index.json`, the archive's names) and packs nothing: the
    /// layer blob on disk is the one the first run wrote.
    #[test]
    fn new_tags_rename_the_outputs_and_pack_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("app");
        std::fs::write(&bin, elf64(ET_DYN, EM_X86_64.0, None, &[], true)).unwrap();
        let compiler = Prebuilt(bin, Default::default());
        let mut image = plan(dir.path());
        let opts = options(dir.path());
        let first = build(&[&image], &compiler, &opts, Shell::new(true)).unwrap();
        let layer = first[0]
            .layout
            .join("blobs/sha256")
            .join(first[0].platforms[0].layer.strip_prefix("sha256:").unwrap());
        let inode = |p: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
        let layer_inode = inode(&layer);
        image.tags = vec![
            crate::manifest::Tag::parse("v2").unwrap(),
            crate::manifest::Tag::parse("sha-0123456").unwrap(),
        ];
        let again = build(&[&image], &compiler, &opts, Shell::new(true)).unwrap();
        assert!(again[0].fresh && again[0].retagged);
        assert_eq!(again[0].digest, first[0].digest);
        assert_eq!(
            inode(&layer),
            layer_inode,
            "the layer was not written again"
        );
        let index = std::fs::read_to_string(again[0].layout.join("index.json")).unwrap();
        assert!(
            index.contains("\"v2\"") && index.contains("sha-0123456"),
            "{index}"
        );
        assert!(!index.contains("latest"), "{index}");
        let archive = crate::oci::archive::ArchiveFile::open(&again[0].archive).unwrap();
        assert_eq!(
            archive.docker_manifest().unwrap()[0].repo_tags,
            ["app:v2", "app:sha-0123456"]
        );
        let third = build(&[&image], &compiler, &opts, Shell::new(true)).unwrap();
        assert!(
            third[0].fresh && !third[0].retagged,
            "the new names were recorded"
        );
    }

    /// `binaries` go into the layer beside the image's own, each proven.
    #[test]
    fn extra_binaries_are_proven_and_packed() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("app");
        std::fs::write(&bin, elf64(ET_DYN, EM_X86_64.0, None, &[], true)).unwrap();
        let mut packages = BTreeMap::new();
        packages.insert(
            "app".to_owned(),
            vec!["app".to_owned(), "migrate".to_owned()],
        );
        let ws = Workspace {
            root: dir.path().to_owned(),
            target_dir: dir.path().join("target"),
            packages,
            ..Workspace::default()
        };
        let text = "[images.app]\npackage = \"app\"\nbin = \"app\"\n\
                    binaries = [{ bin = \"migrate\", path = \"/usr/bin/migrate\" }]\n";
        let image = parse(&dir.path().join("images.toml"), text, &ws)
            .unwrap()
            .images
            .remove(0);
        assert_eq!(requests(&image).len(), 2);
        let compiler = Prebuilt(bin.clone(), Default::default());
        let built = build(&[&image], &compiler, &options(dir.path()), Shell::new(true)).unwrap();
        assert_eq!(
            built[0].platforms[0].extra_binaries,
            std::slice::from_ref(&bin)
        );
        let history = std::fs::read_to_string(
            built[0].layout.join("blobs/sha256").join(
                built[0].platforms[0]
                    .config
                    .strip_prefix("sha256:")
                    .unwrap(),
            ),
        )
        .unwrap();
        assert!(
            history.contains("app binary `app`, app binary `migrate`"),
            "{history}"
        );

        let dynamic = dir.path().join("dynamic");
        std::fs::write(
            &dynamic,
            elf64(ET_DYN, EM_X86_64.0, Some("/lib/ld.so"), &["libc.so"], true),
        )
        .unwrap();
        struct Second(PathBuf, PathBuf);
        impl Compiler for Second {
            fn compile(&self, requests: &[Request]) -> Result<Vec<PathBuf>, CompileError> {
                Ok(requests
                    .iter()
                    .map(|r| {
                        if r.bin == "migrate" {
                            self.1.clone()
                        } else {
                            self.0.clone()
                        }
                    })
                    .collect())
            }
        }
        let opts = BuildOptions {
            out_dir: dir.path().join("out2"),
            ..options(dir.path())
        };
        let err = build(&[&image], &Second(bin, dynamic), &opts, Shell::new(true)).unwrap_err();
        assert!(matches!(err, BuildError::NotStatic { .. }), "{err}");
        assert!(!opts.out_dir.exists(), "nothing is written");
    }

    #[test]
    fn the_outputs_do_not_depend_on_the_number_of_threads() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("app");
        // A few megabytes, so the layer has many blocks and batches.
        let mut bytes = elf64(ET_DYN, EM_X86_64.0, None, &[], true);
        let mut x: u32 = 7;
        bytes.extend((0..20_000_000u32).map(|i| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            if i % 7 == 0 {
                (x >> 24) as u8
            } else {
                (i % 251) as u8
            }
        }));
        std::fs::write(&bin, &bytes).unwrap();
        let compiler = Prebuilt(bin, Default::default());
        let image = plan(dir.path());
        let mut archives = Vec::new();
        for jobs in [1, 2, 8] {
            let opts = BuildOptions {
                out_dir: dir.path().join(format!("out-{jobs}")),
                jobs,
                ..options(dir.path())
            };
            let built = build(&[&image], &compiler, &opts, Shell::new(true)).unwrap();
            archives.push((
                built[0].digest.clone(),
                std::fs::read(&built[0].archive).unwrap(),
            ));
        }
        assert!(archives.windows(2).all(|w| w[0] == w[1]));
    }

    #[test]
    fn a_dynamic_binary_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("app");
        let dynamic = elf64(ET_DYN, EM_X86_64.0, Some("/lib/ld.so"), &["libc.so"], true);
        std::fs::write(&bin, dynamic).unwrap();
        let compiler = Prebuilt(bin, Default::default());
        let image = plan(dir.path());
        let err = build(&[&image], &compiler, &options(dir.path()), Shell::new(true)).unwrap_err();
        assert!(matches!(err, BuildError::NotStatic { .. }), "{err}");
        assert!(!dir.path().join("out").exists(), "nothing is written");
    }
}
