//! The cache's registry side: looking entries up, pulling and checking
//! them (each layer streamed to disk, never held whole), and pushing and
//! signing what was built.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use super::CacheSettings;
use crate::build::action_key::{ImageKey, KeyContext};
use crate::build::assemble::{self, Contents};
use crate::build::{self, BuildError, BuildOptions, BuiltImage};
use crate::compile::{CompileError, Compiler, Request};
use crate::elf::{HEADER_BYTES, check_header, check_static};
use crate::manifest::{FileSource, ImagePlan};
use crate::oci::layer::{EntryKind, Streamed};
use crate::oci::source::{Source, resolve_within};
use crate::oci::{
    Descriptor, Digest, LayerBlob, MEDIA_TYPE_LAYER_GZIP, MEDIA_TYPE_LAYER_ZSTD, ReadError,
};
use crate::platform::Platform;
use crate::record;
use crate::registry::{
    CredentialSource, PushOptions, RemoteManifest, Session, default_credentials, push_layout,
};
use crate::shell::Shell;
use crate::toolchain::Env;
use crate::toolchain::workspace::Workspace;

/// Plain HTTP only for a registry on this machine, where nothing travels
/// over a network: `localhost`, `127.0.0.0/8` or `[::1]`, with any port.
pub fn is_loopback(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => registry.split(':').next().unwrap_or_default(),
    };
    host == "localhost" || host == "::1" || host.starts_with("127.")
}

/// The most bytes a cache entry's layer may have, compressed and again
/// uncompressed: a binary of up to about this size comes from the cache.
/// The layer goes to disk and is decompressed as a stream, so this bounds
/// the disk and the time a hostile entry can take, not memory.
pub const MAX_LAYER: u64 = 4 << 30;

/// The most bytes of a PAX header read from an entry's layer: the writer
/// puts one `path` record in one, for a name ustar cannot hold.
const MAX_PAX: u64 = 64 << 10;

fn options(settings: &CacheSettings, repo: &crate::registry::Repository) -> PushOptions<'static> {
    PushOptions {
        insecure: is_loopback(repo.registry()),
        // A cache that does not answer at once is not worth waiting for: the
        // build goes on without it.
        retries: 1,
        backoff: Duration::from_millis(200),
        max_backoff: Duration::from_secs(1),
        limits: settings.limits,
        ..PushOptions::default()
    }
}

/// A verified hit: the binaries of each of the image's platforms, in the
/// order the build asks for them ([`build::requests`]), each a file in the
/// target directory's place for pulled binaries.
#[derive(Debug, Clone)]
pub struct Hit {
    pub binaries: Vec<PathBuf>,
}

/// The cache, for one run.
pub struct RemoteCache<'c> {
    settings: CacheSettings,
    keys: KeyContext,
    creds: &'c dyn CredentialSource,
    shell: Shell,
    epoch: u64,
    /// Set once a registry failed to answer, so a dead cache costs one try.
    from_down: Cell<bool>,
    to_down: Cell<bool>,
    keyed: RefCell<BTreeMap<String, Option<ImageKey>>>,
    /// Where notes of the binaries made for each key are kept.
    held_dir: PathBuf,
    /// Where pulled binaries go.
    pulled_dir: PathBuf,
}

impl<'c> RemoteCache<'c> {
    pub fn new(
        settings: CacheSettings,
        keys: KeyContext,
        creds: &'c dyn CredentialSource,
        epoch: u64,
        shell: Shell,
        target_dir: &Path,
    ) -> Self {
        RemoteCache {
            held_dir: pulled_dir(target_dir).join("keys"),
            pulled_dir: pulled_dir(target_dir),
            settings,
            keys,
            creds,
            shell,
            epoch,
            from_down: Cell::new(false),
            to_down: Cell::new(false),
            keyed: RefCell::default(),
        }
    }

    /// The image's key, computed once (and a failure reported once).
    fn key(&self, image: &ImagePlan) -> Option<ImageKey> {
        if let Some(k) = self.keyed.borrow().get(&image.name) {
            return k.clone();
        }
        let key = match self.keys.image_key(image) {
            Ok(k) => Some(k),
            Err(e) => {
                self.shell.warn(format!(
                    "cache: no action key for image `{}` ({}), building it",
                    image.name,
                    chain(&e)
                ));
                None
            }
        };
        self.keyed
            .borrow_mut()
            .insert(image.name.clone(), key.clone());
        key
    }

    /// The image from the cache, verified; `None` (with one line saying
    /// why) when it has to be built.
    pub fn fetch(&self, image: &ImagePlan) -> Option<Hit> {
        if self.settings.from.is_none() && self.settings.to.is_none() {
            return None;
        }
        let key = self.key(image)?;
        if let Some(hit) = self.held(&key, build::requests(image).len()) {
            return Some(hit);
        }
        let repo = self.settings.from.as_ref()?;
        if self.from_down.get() {
            return None;
        }
        let opts = options(&self.settings, repo);
        let mut session = match Session::open(repo, self.creds, &opts) {
            Ok(s) => s,
            Err(e) => {
                self.from_down.set(true);
                self.shell.warn(format!(
                    "cache {repo} does not answer ({}); building without it",
                    chain(&e)
                ));
                return None;
            }
        };
        let tag = key.tag();
        let top = match session.get_manifest(&tag) {
            Ok(Some(top)) => top,
            Ok(None) => {
                self.shell.status(
                    "Missed",
                    format!("{} in {repo} ({tag}), building it", image.name),
                );
                return None;
            }
            Err(e) => {
                self.unusable(repo, &tag, image, &chain(&e));
                return None;
            }
        };
        // Who made the entry is asked before anything else of it is read.
        if let Some(keys) = self.settings.keys.as_deref().filter(|k| k.verifies())
            && let Err(reason) = keys.check(&mut session, &top.digest, &tag)
        {
            self.shell.warn(format!(
                "cache entry {repo}:{tag} for image `{}` is not signed by the cache's key \
                 ({reason}); ignoring it and building the image",
                image.name
            ));
            return None;
        }
        let pull = Pull {
            image,
            epoch: self.epoch,
            dir: &self.pulled_dir,
            walk: self.settings.limits.walk,
        };
        match pull.run(&mut session, &top) {
            Ok(hit) => {
                self.shell
                    .status("Pulled", format!("{} from {repo}:{tag}", image.name));
                Some(hit)
            }
            Err(reason) => {
                self.unusable(repo, &tag, image, &reason);
                None
            }
        }
    }

    fn unusable(
        &self,
        repo: &crate::registry::Repository,
        tag: &str,
        image: &ImagePlan,
        reason: &str,
    ) {
        self.shell.warn(format!(
            "cache entry {repo}:{tag} for image `{}` is unusable ({reason}); building it",
            image.name
        ));
    }

    fn held_path(&self, key: &ImageKey) -> PathBuf {
        self.held_dir.join(format!("{}.json", key.image))
    }

    /// The binaries this machine already made or pulled for `key` (`count`
    /// of them), when each is still where it was, with the same digest: a
    /// run with nothing new asks neither the registry nor cargo.
    fn held(&self, key: &ImageKey, count: usize) -> Option<Hit> {
        let held: Vec<(PathBuf, Digest)> = record::lookup(&self.held_path(key), &key.image)?;
        let binaries = held
            .into_iter()
            .map(|(path, digest)| (file_digest(&path).ok()? == digest).then_some(path))
            .collect::<Option<Vec<_>>>()?;
        (binaries.len() == count).then_some(Hit { binaries })
    }

    /// Notes which binaries `built` was made from, for [`Self::held`].
    pub fn remember(&self, image: &ImagePlan, built: &BuiltImage) {
        let Some(key) = self.key(image) else { return };
        let held: Option<Vec<(PathBuf, Digest)>> = built
            .platforms
            .iter()
            .flat_map(|p| std::iter::once(&p.binary).chain(&p.extra_binaries))
            .map(|path| Some((path.clone(), file_digest(path).ok()?)))
            .collect();
        let Some(held) = held else { return };
        let path = self.held_path(&key);
        // Only a note: when it cannot be written, the next run asks again.
        let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
        let _ = std::fs::create_dir_all(&self.held_dir)
            .and_then(|()| std::fs::write(&tmp, record::encode(&key.image, &held)))
            .and_then(|()| std::fs::rename(&tmp, &path));
    }

    /// Pushes what was built to the cache under its key, and signs it when
    /// the run has the cache's signing key. A failure is one line: the build
    /// it follows has succeeded.
    pub fn store(&self, image: &ImagePlan, built: &BuiltImage) {
        let Some(repo) = self.settings.to.as_ref() else {
            return;
        };
        if self.to_down.get() {
            return;
        }
        let Some(key) = self.key(image) else { return };
        let opts = options(&self.settings, repo);
        let tag = key.tag();
        let pushed = push_layout(
            &built.layout,
            None,
            repo,
            std::slice::from_ref(&tag),
            self.creds,
            &opts,
        )
        .map_err(|e| chain(&e))
        .and_then(|report| {
            let Some(keys) = self.settings.keys.as_deref().filter(|k| k.signs()) else {
                return Ok(());
            };
            let digest = Digest::parse(&report.digest)
                .ok_or_else(|| format!("the push reported `{}`", report.digest))?;
            let mut session = Session::open(repo, self.creds, &opts).map_err(|e| chain(&e))?;
            keys.sign(&mut session, &digest, &tag)
                .map_err(|e| format!("signing the entry: {e}"))
        });
        match pushed {
            Ok(()) => self
                .shell
                .status("Cached", format!("{} as {repo}:{tag}", image.name)),
            Err(e) => {
                self.to_down.set(true);
                self.shell.warn(format!(
                    "caching image `{}` in {repo} failed ({e}); not caching this run",
                    image.name,
                ));
            }
        }
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

/// The sha256 of a file, read as a stream.
fn file_digest(path: &Path) -> std::io::Result<Digest> {
    let mut hasher = Sha256::new();
    std::io::copy(&mut File::open(path)?, &mut hasher)?;
    Ok(Digest::from_hasher(hasher))
}

/// The registry as a [`Source`] of the entry's documents: manifests through
/// the manifests endpoint, configs as blobs; each checked against its
/// descriptor. Layers are not read through it: they are streamed to disk.
struct Remote<'s, 'o> {
    session: RefCell<&'s mut Session<'o, 'static>>,
}

impl Source for Remote<'_, '_> {
    fn index_bytes(&self) -> Result<Vec<u8>, ReadError> {
        // The walk starts at the tagged manifest, not at an index file.
        Err(ReadError::Missing("index.json".to_owned()))
    }

    fn blob(&self, d: &Descriptor, limit: u64) -> Result<Vec<u8>, ReadError> {
        let path = crate::oci::error::blob_path(&d.digest);
        if d.size > limit {
            return Err(ReadError::TooLarge {
                path,
                size: d.size,
                limit,
            });
        }
        let mut session = self.session.borrow_mut();
        let io = |e: &dyn std::error::Error| ReadError::Io {
            path: path.clone(),
            source: std::io::Error::other(chain(e)),
        };
        let bytes = if is_manifest(&d.media_type) {
            match session.get_manifest(d.digest.as_str()) {
                Ok(Some(m)) => m.bytes,
                Ok(None) => return Err(ReadError::Missing(path)),
                Err(e) => return Err(io(&e)),
            }
        } else {
            session
                .get_blob(&d.digest, limit as usize)
                .map_err(|e| io(&e))?
        };
        crate::oci::error::verify(d, bytes.len() as u64, Digest::of(&bytes))?;
        Ok(bytes)
    }
}

fn is_manifest(media_type: &str) -> bool {
    matches!(
        media_type,
        crate::oci::MEDIA_TYPE_MANIFEST
            | crate::oci::MEDIA_TYPE_INDEX
            | crate::oci::DOCKER_MANIFEST
            | crate::oci::DOCKER_MANIFEST_LIST
    )
}

/// Pulling one entry for one image.
struct Pull<'a> {
    image: &'a ImagePlan,
    epoch: u64,
    /// Where pulled binaries go: the layers and binaries being checked are
    /// temporary files under it, removed whatever happens.
    dir: &'a Path,
    walk: crate::oci::WalkLimits,
}

/// One platform's binary taken out of a layer: a temporary file until the
/// whole entry has been checked.
struct Extracted {
    file: tempfile::NamedTempFile,
    size: u64,
    digest: Digest,
}

impl Pull<'_> {
    /// Reads and checks the entry whose top manifest or index is `top`: it
    /// must be exactly what this run would build. Then its binaries are put
    /// in place.
    ///
    /// What an entry vouches for is its binaries, built from the inputs of
    /// its key: the image is reassembled from them under this run's plan,
    /// with the entry's own source annotations (the commit and origin it was
    /// built at, which no key covers), and must give exactly its digest.
    fn run(&self, session: &mut Session<'_, 'static>, top: &RemoteManifest) -> Result<Hit, String> {
        let image = self.image;
        let descriptor = Descriptor::new(
            // The walk reads the type from the descriptor; a manifest's own
            // field was preferred when it was read.
            top.media_type.clone(),
            top.digest.clone(),
            top.bytes.len() as u64,
        );
        let source = entry_source(&top.bytes)?;
        let src = Remote {
            session: RefCell::new(session),
        };
        let resolved = resolve_within(&src, &descriptor, self.walk).map_err(|e| chain(&e))?;
        if resolved.images.len() != image.targets.len() {
            return Err(format!(
                "it has {} platforms, the image has {}",
                resolved.images.len(),
                image.targets.len()
            ));
        }
        let files = image
            .files
            .iter()
            .map(|f| match &f.src {
                FileSource::Host(p) => {
                    std::fs::read(p).map_err(|e| format!("reading {}: {e}", p.display()))
                }
                FileSource::Generated(b) => Ok(b.clone()),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let tmp = self.dir.join("tmp");
        std::fs::create_dir_all(&tmp).map_err(|e| format!("making {}: {e}", tmp.display()))?;
        let mut binaries = Vec::new();
        let mut assembled = Vec::new();
        for (pulled, target) in resolved.images.iter().zip(&image.targets) {
            let extracted = self.platform_binaries(&src, pulled, target, &tmp)?;
            let contents = Contents {
                binaries: extracted
                    .iter()
                    .map(|b| {
                        EntryKind::Streamed(Streamed {
                            path: b.file.path(),
                            size: b.size,
                            digest: &b.digest,
                        })
                    })
                    .collect(),
                files: &files,
            };
            let img = assemble::image(image, target.platform, &contents, &source, self.epoch)
                .map_err(|e| format!("assembling the image from its binaries: {e}"))?;
            assembled.push(img);
            let bins = std::iter::once(&image.bin).chain(image.binaries.iter().map(|b| &b.bin));
            binaries.extend(
                extracted
                    .into_iter()
                    .zip(bins)
                    .map(|(b, bin)| (b, &target.triple, bin)),
            );
        }
        let set = assemble::image_set(image, assembled, &source, self.epoch);
        let rebuilt = set.top().digest;
        if rebuilt != top.digest {
            return Err(format!(
                "its binaries make {rebuilt} here, not the {} it holds",
                top.digest
            ));
        }
        let placed = binaries
            .into_iter()
            .map(|(b, triple, bin)| self.place(b, triple, bin))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Hit { binaries: placed })
    }

    /// The binaries of one platform of an entry, each at its path in the
    /// layer and proven static: the image's own, then its `binaries`.
    fn platform_binaries(
        &self,
        src: &Remote<'_, '_>,
        pulled: &crate::oci::ResolvedImage,
        target: &crate::manifest::PlatformTarget,
        tmp: &Path,
    ) -> Result<Vec<Extracted>, String> {
        let platform = target.platform.to_string();
        if pulled.platform != assemble::oci_platform(target.platform) {
            return Err(format!("it holds {}, not {platform}", pulled.platform));
        }
        let [layer] = pulled.layers() else {
            return Err(format!(
                "its {platform} image has {} layers, not one",
                pulled.layers().len()
            ));
        };
        // An entry holds what the build writes, and it writes no other layer.
        if !matches!(
            layer.media_type.as_str(),
            MEDIA_TYPE_LAYER_GZIP | MEDIA_TYPE_LAYER_ZSTD
        ) {
            return Err(format!("its layer is `{}`", layer.media_type));
        }
        if layer.size > MAX_LAYER {
            return Err(format!(
                "its layer is {} bytes, more than the {MAX_LAYER} a cached layer may be",
                layer.size
            ));
        }
        let mut file = tempfile::tempfile_in(tmp)
            .map_err(|e| format!("making a file in {}: {e}", tmp.display()))?;
        src.session
            .borrow_mut()
            .get_blob_to(&layer.digest, layer.size, &mut file)
            .map_err(|e| chain(&e))?;
        let blob = LayerBlob::from_file(layer.clone(), file).map_err(|e| chain(&e))?;
        let (extracted, diff_id) = self.extract(&blob, target.platform, tmp)?;
        if pulled.config.rootfs.diff_ids.first() != Some(&diff_id) {
            return Err(format!(
                "its layer's diff_id is {diff_id}, not what its config says"
            ));
        }
        let paths = self.paths();
        paths
            .iter()
            .zip(extracted)
            .map(|(path, extracted)| {
                let extracted = extracted.ok_or_else(|| format!("its layer has no /{path}"))?;
                // Proven as the build proves its own binaries: read whole,
                // once the header has shown it is an executable for the
                // platform.
                let bytes = std::fs::read(extracted.file.path())
                    .map_err(|e| format!("reading /{path} back: {e}"))?;
                check_static(&bytes, target.platform.elf_machine(), &platform).map_err(|e| {
                    format!("/{path} for {platform} is not a static executable: {e}")
                })?;
                Ok(extracted)
            })
            .collect()
    }

    /// The paths in the layer of the image's binary, then of its `binaries`.
    fn paths(&self) -> Vec<&str> {
        std::iter::once(&self.image.binary_path)
            .chain(self.image.binaries.iter().map(|b| &b.path))
            .map(|p| p.relative())
            .collect()
    }

    /// Streams the layer's tar once: its diff_id, and each binary's entry
    /// (in [`Self::paths`] order) written to a temporary file, after its ELF
    /// header has shown it is an executable for `platform`. The tar is read
    /// in raw mode, every metadata entry bounded, so no entry is ever held
    /// whole.
    fn extract(
        &self,
        blob: &LayerBlob,
        platform: Platform,
        tmp: &Path,
    ) -> Result<(Vec<Option<Extracted>>, Digest), String> {
        let failed = |e: std::io::Error| format!("decompressing its layer: {e}");
        let tar = blob.tar(MAX_LAYER, |limit| {
            format!("more than {limit} bytes uncompressed")
        });
        let wanted = self.paths();
        let mut archive = tar::Archive::new(tar);
        let mut found: Vec<Option<Extracted>> = wanted.iter().map(|_| None).collect();
        let mut pax_path: Option<Vec<u8>> = None;
        for entry in archive.entries().map_err(failed)?.raw(true) {
            let mut entry = entry.map_err(failed)?;
            let kind = entry.header().entry_type();
            if kind == tar::EntryType::XHeader {
                pax_path = Some(pax_path_record(&mut entry)?);
                continue;
            }
            let name = pax_path
                .take()
                .unwrap_or_else(|| entry.path_bytes().into_owned());
            if !kind.is_file() {
                continue;
            }
            if let Some(i) = wanted.iter().position(|w| name == w.as_bytes())
                && found[i].is_none()
            {
                found[i] = Some(binary_entry(&mut entry, platform, wanted[i], tmp)?);
            }
        }
        let (diff_id, _) = archive.into_inner().finish().map_err(failed)?;
        Ok((found, diff_id))
    }

    /// Moves a checked binary to where pulled binaries are kept for its
    /// triple and digest, under its cargo name `bin`.
    fn place(&self, binary: Extracted, triple: &str, bin: &str) -> Result<PathBuf, String> {
        let dir = self.dir.join(triple).join(binary.digest.hex());
        let path = dir.join(bin);
        let failed =
            |e: std::io::Error| format!("putting the pulled binary at {}: {e}", path.display());
        std::fs::create_dir_all(&dir).map_err(failed)?;
        // Renamed whole into place, so a reader never sees half a binary.
        binary.file.persist(&path).map_err(|e| failed(e.error))?;
        Ok(path)
    }
}

/// The source annotations of an entry's top manifest or index.
fn entry_source(bytes: &[u8]) -> Result<assemble::Source, String> {
    #[derive(serde::Deserialize)]
    struct Annotated {
        #[serde(default)]
        annotations: BTreeMap<String, String>,
    }
    let top: Annotated =
        serde_json::from_slice(bytes).map_err(|e| format!("its manifest is not JSON: {e}"))?;
    Ok(assemble::Source::of_annotations(&top.annotations))
}

/// The `path` a PAX header gives the entry after it (the only record the
/// image writer puts in one), read within [`MAX_PAX`] bytes.
fn pax_path_record<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<Vec<u8>, String> {
    let size = entry
        .header()
        .entry_size()
        .map_err(|e| format!("reading its layer: {e}"))?;
    if size > MAX_PAX {
        return Err(format!(
            "its layer has a PAX header of {size} bytes; the image writer's are far smaller"
        ));
    }
    let mut data = Vec::new();
    entry
        .read_to_end(&mut data)
        .map_err(|e| format!("reading its layer: {e}"))?;
    let record = data
        .split(|b| *b == b'\n')
        .find_map(|r| {
            let (_, kv) = r.split_at(r.iter().position(|b| *b == b' ')? + 1);
            kv.strip_prefix(b"path=")
        })
        .ok_or("its layer has a PAX header without a path")?;
    Ok(record.to_vec())
}

/// Writes the binary's entry to a temporary file in `tmp`, hashing it, once
/// its first bytes are an ELF header for `platform`: a hostile entry that
/// is no executable is refused before the rest of it is written.
fn binary_entry<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    platform: Platform,
    path: &str,
    tmp: &Path,
) -> Result<Extracted, String> {
    let failed = |e: std::io::Error| format!("reading /{path} from its layer: {e}");
    let mut head = Vec::with_capacity(HEADER_BYTES);
    (&mut *entry)
        .take(HEADER_BYTES as u64)
        .read_to_end(&mut head)
        .map_err(failed)?;
    check_header(&head, platform.elf_machine(), &platform.to_string())
        .map_err(|e| format!("/{path} for {platform} is not a static executable: {e}"))?;
    let mut file = tempfile::NamedTempFile::new_in(tmp)
        .map_err(|e| format!("making a file in {}: {e}", tmp.display()))?;
    let mut hasher = Sha256::new();
    hasher.update(&head);
    file.write_all(&head).map_err(failed)?;
    let mut hashing = HashTo {
        file: file.as_file_mut(),
        hasher: &mut hasher,
    };
    let rest = std::io::copy(entry, &mut hashing).map_err(failed)?;
    Ok(Extracted {
        file,
        size: head.len() as u64 + rest,
        digest: Digest::from_hasher(hasher),
    })
}

/// Writes to a file and hashes what it wrote.
struct HashTo<'a> {
    file: &'a mut File,
    hasher: &'a mut Sha256,
}

impl Write for HashTo<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// A [`Compiler`] that answers from pulled binaries where it can and asks
/// `inner` for the rest; cargo is not run at all when everything was pulled.
pub struct Pulled<'a> {
    pub inner: &'a dyn Compiler,
    binaries: BTreeMap<Request, PathBuf>,
}

impl<'a> Pulled<'a> {
    pub fn new(inner: &'a dyn Compiler) -> Self {
        Pulled {
            inner,
            binaries: BTreeMap::new(),
        }
    }

    /// Adds the binaries of `image` from `hit`.
    pub fn add(&mut self, image: &ImagePlan, hit: Hit) {
        for (request, path) in build::requests(image).into_iter().zip(hit.binaries) {
            self.binaries.insert(request, path);
        }
    }
}

impl Compiler for Pulled<'_> {
    fn compile(&self, requests: &[Request]) -> Result<Vec<PathBuf>, CompileError> {
        let rest: Vec<Request> = requests
            .iter()
            .filter(|r| !self.binaries.contains_key(*r))
            .cloned()
            .collect();
        let mut compiled = if rest.is_empty() {
            Vec::new()
        } else {
            self.inner.compile(&rest)?
        }
        .into_iter();
        Ok(requests
            .iter()
            .map(|r| match self.binaries.get(r) {
                Some(path) => path.clone(),
                None => compiled.next().expect("one executable per request"),
            })
            .collect())
    }
}

/// [`build::build`] with the cache: each image is looked up first, the
/// compiler is asked only for what was not pulled, and what was built here
/// is pushed to the cache afterwards.
pub(super) fn build_cached(
    settings: &CacheSettings,
    env: &Env,
    workspace: &Workspace,
    images: &[&ImagePlan],
    compiler: &dyn Compiler,
    opts: &BuildOptions,
    shell: Shell,
) -> Result<Vec<BuiltImage>, BuildError> {
    let keys = match KeyContext::new(workspace, env, opts.epoch) {
        Ok(k) => k.compiling_c_with(opts.c_compiler.clone()),
        Err(e) => {
            shell.warn(format!(
                "cache: no action keys ({}); building without the cache",
                chain(&e)
            ));
            return build::build(images, compiler, opts, shell);
        }
    };
    // The environment's credentials are for the registries the images push
    // to (or `SCRATCHPACK_REGISTRY`): a cache elsewhere gets none of them.
    let targets: Vec<&str> = images
        .iter()
        .filter_map(|i| i.push.as_ref().map(|p| p.reference.registry()))
        .collect();
    let creds = default_credentials(&targets);
    let cache = RemoteCache::new(
        settings.clone(),
        keys,
        &creds,
        opts.epoch,
        shell,
        &workspace.target_dir,
    );
    let mut pulled = Pulled::new(compiler);
    let mut hits = BTreeSet::new();
    for image in images {
        if let Some(hit) = cache.fetch(image) {
            pulled.add(image, hit);
            hits.insert(image.name.clone());
        }
    }
    let built = build::build(images, &pulled, opts, shell)?;
    for (image, done) in images.iter().zip(&built) {
        if !hits.contains(&image.name) {
            cache.store(image, done);
        }
        cache.remember(image, done);
    }
    Ok(built)
}

/// Where a run's pulled binaries go.
pub fn pulled_dir(target_dir: &Path) -> PathBuf {
    target_dir.join("scratchpack").join("pulled")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_registries_are_plain_http() {
        for r in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.1.2.3",
            "[::1]:5000",
        ] {
            assert!(is_loopback(r), "{r}");
        }
        for r in [
            "ghcr.io",
            "registry.local:5000",
            "10.0.0.1:5000",
            "[2001:db8::1]:5000",
            "localhost.example.com",
        ] {
            assert!(!is_loopback(r), "{r}");
        }
    }

    struct Counting(std::cell::Cell<usize>, PathBuf);

    impl Compiler for Counting {
        fn compile(&self, requests: &[Request]) -> Result<Vec<PathBuf>, CompileError> {
            self.0.set(self.0.get() + requests.len());
            Ok(requests.iter().map(|_| self.1.clone()).collect())
        }
    }

    #[test]
    fn pulled_binaries_skip_the_compiler() {
        let dir = tempfile::tempdir().unwrap();
        let inner = Counting(Default::default(), dir.path().join("built"));
        let mut pulled = Pulled::new(&inner);
        let settings = crate::manifest::BuildSettings {
            profile: "release".into(),
            rustflags: vec![],
            features: vec![],
            default_features: true,
            auditable: true,
        };
        let req = |bin: &str| Request {
            package: "p".into(),
            bin: bin.into(),
            triple: "x86_64-unknown-linux-musl".into(),
            settings: settings.clone(),
        };
        let a = dir.path().join("pulled-a");
        pulled.binaries.insert(req("a"), a.clone());
        let got = pulled.compile(&[req("a")]).unwrap();
        assert_eq!(
            inner.0.get(),
            0,
            "cargo is not run when everything was pulled"
        );
        assert_eq!(got, vec![a.clone()]);
        let got = pulled.compile(&[req("b"), req("a")]).unwrap();
        assert_eq!(inner.0.get(), 1);
        assert_eq!(got, vec![dir.path().join("built"), a]);
    }
}
