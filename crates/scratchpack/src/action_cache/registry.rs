//! The cache's registry side: looking entries up, pulling and checking
//! them, and pushing what was built.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::build::action_key::{ImageKey, KeyContext};
use crate::build::assemble::{self, Contents};
use crate::build::{self, BuildError, BuildOptions, BuiltImage};
use crate::compile::{CompileError, Compiler, Request};
use crate::elf::check_static;
use crate::manifest::{FileSource, ImagePlan};
use crate::oci::error::MAX_BLOB_IN_MEMORY;
use crate::oci::source::{Source, resolve};
use crate::oci::{
    Descriptor, Digest, LayerBlob, MEDIA_TYPE_LAYER_GZIP, MEDIA_TYPE_LAYER_ZSTD, ReadError,
};
use crate::record;
use crate::registry::{CredentialSource, PushOptions, Session, default_credentials, push_layout};
use crate::shell::Shell;
use crate::toolchain::Env;
use crate::toolchain::workspace::Workspace;

use super::CacheSettings;

/// Plain HTTP only for a registry on this machine, where nothing travels
/// over a network: `localhost`, `127.0.0.0/8` or `[::1]`, with any port.
pub fn is_loopback(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => registry.split(':').next().unwrap_or_default(),
    };
    host == "localhost" || host == "::1" || host.starts_with("127.")
}

fn options() -> PushOptions<'static> {
    PushOptions {
        // A cache that does not answer at once is not worth waiting for: the
        // build goes on without it.
        retries: 1,
        backoff: Duration::from_millis(200),
        max_backoff: Duration::from_secs(1),
        timeout: Duration::from_secs(60),
        ..PushOptions::default()
    }
}

/// A verified hit: the binary of each of the image's platforms, in plan
/// order.
#[derive(Debug, Clone)]
pub struct Hit {
    pub binaries: Vec<Vec<u8>>,
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
        if let Some(hit) = self.held(&key) {
            return Some(hit);
        }
        let repo = self.settings.from.as_ref()?;
        if self.from_down.get() {
            return None;
        }
        let opts = PushOptions {
            insecure: is_loopback(repo.registry()),
            ..options()
        };
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
        match pull(&mut session, image, &tag, self.epoch) {
            Ok(Some(hit)) => {
                self.shell
                    .status("Pulled", format!("{} from {repo}:{tag}", image.name));
                Some(hit)
            }
            Ok(None) => {
                self.shell.status(
                    "Missed",
                    format!("{} in {repo} ({tag}), building it", image.name),
                );
                None
            }
            Err(reason) => {
                self.shell.warn(format!(
                    "cache entry {repo}:{tag} for image `{}` is unusable ({reason}); building it",
                    image.name
                ));
                None
            }
        }
    }

    fn held_path(&self, key: &ImageKey) -> PathBuf {
        self.held_dir.join(format!("{}.json", key.image))
    }

    /// The binaries this machine already made or pulled for `key`, when each
    /// is still where it was, with the same digest: a run with nothing new
    /// asks neither the registry nor cargo.
    fn held(&self, key: &ImageKey) -> Option<Hit> {
        let held: Vec<(PathBuf, Digest)> = record::lookup(&self.held_path(key), &key.image)?;
        let binaries = held
            .iter()
            .map(|(path, digest)| {
                let bytes = std::fs::read(path).ok()?;
                (Digest::of(&bytes) == *digest).then_some(bytes)
            })
            .collect::<Option<Vec<_>>>()?;
        (binaries.len() == key.platforms.len()).then_some(Hit { binaries })
    }

    /// Notes which binaries `built` was made from, for [`Self::held`].
    pub fn remember(&self, image: &ImagePlan, built: &BuiltImage) {
        let Some(key) = self.key(image) else { return };
        let held: Option<Vec<(PathBuf, Digest)>> = built
            .platforms
            .iter()
            .map(|p| {
                Some((
                    p.binary.clone(),
                    Digest::of(&std::fs::read(&p.binary).ok()?),
                ))
            })
            .collect();
        let Some(held) = held else { return };
        let path = self.held_path(&key);
        // Only a note: when it cannot be written, the next run asks again.
        let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
        let _ = std::fs::create_dir_all(&self.held_dir)
            .and_then(|()| std::fs::write(&tmp, record::encode(&key.image, &held)))
            .and_then(|()| std::fs::rename(&tmp, &path));
    }

    /// Pushes what was built to the cache under its key. A failure is one
    /// line: the build it follows has succeeded.
    pub fn store(&self, image: &ImagePlan, built: &BuiltImage) {
        let Some(repo) = self.settings.to.as_ref() else {
            return;
        };
        if self.to_down.get() {
            return;
        }
        let Some(key) = self.key(image) else { return };
        let opts = PushOptions {
            insecure: is_loopback(repo.registry()),
            ..options()
        };
        let tag = key.tag();
        match push_layout(
            &built.layout,
            None,
            repo,
            std::slice::from_ref(&tag),
            self.creds,
            &opts,
        ) {
            Ok(_) => self
                .shell
                .status("Cached", format!("{} as {repo}:{tag}", image.name)),
            Err(e) => {
                self.to_down.set(true);
                self.shell.warn(format!(
                    "caching image `{}` in {repo} failed ({}); not caching this run",
                    image.name,
                    chain(&e)
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

/// The registry as a [`Source`]: manifests through the manifests endpoint,
/// everything else as blobs; each checked against its descriptor.
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

/// Reads and checks the entry under `tag`: `Ok(None)` when there is none,
/// `Err` with the reason when it is not exactly what this run would build.
fn pull(
    session: &mut Session<'_, 'static>,
    image: &ImagePlan,
    tag: &str,
    epoch: u64,
) -> Result<Option<Hit>, String> {
    let top = match session.get_manifest(tag) {
        Ok(Some(m)) => m,
        Ok(None) => return Ok(None),
        Err(e) => return Err(chain(&e)),
    };
    let descriptor = Descriptor::new(
        // The walk reads the type from the descriptor; a manifest's own
        // field was preferred when it was read.
        top.media_type.clone(),
        top.digest.clone(),
        top.bytes.len() as u64,
    );
    let src = Remote {
        session: RefCell::new(session),
    };
    let resolved = resolve(&src, &descriptor).map_err(|e| chain(&e))?;
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
    let mut binaries = Vec::new();
    let mut assembled = Vec::new();
    for (pulled, target) in resolved.images.iter().zip(&image.targets) {
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
        let blob = LayerBlob::read(&src, layer, MAX_BLOB_IN_MEMORY).map_err(|e| chain(&e))?;
        let (tar, diff_id) = decompress(&blob)?;
        if pulled.config.rootfs.diff_ids.first() != Some(&diff_id) {
            return Err(format!(
                "its layer's diff_id is {diff_id}, not what its config says"
            ));
        }
        let path = image.binary_path.relative();
        let binary = entry(&tar, path)?.ok_or_else(|| format!("its layer has no /{path}"))?;
        check_static(&binary, target.platform.elf_machine(), &platform)
            .map_err(|e| format!("/{path} for {platform} is not a static executable: {e}"))?;
        let contents = Contents {
            binary: crate::oci::layer::EntryKind::File(&binary),
            files: &files,
        };
        let img = assemble::image(image, target.platform, &contents, epoch)
            .map_err(|e| format!("assembling the image from its binary: {e}"))?;
        assembled.push(img);
        binaries.push(binary);
    }
    let set = assemble::image_set(image, assembled);
    let rebuilt = set.top().digest;
    if rebuilt != top.digest {
        return Err(format!(
            "its binaries make {rebuilt} here, not the {} it holds",
            top.digest
        ));
    }
    Ok(Some(Hit { binaries }))
}

/// The layer's tar, held whole so the binary can be taken out of it, and
/// its diff_id.
fn decompress(blob: &LayerBlob) -> Result<(Vec<u8>, Digest), String> {
    let failed = |e: std::io::Error| format!("decompressing its layer: {e}");
    let mut tar = blob.tar(MAX_BLOB_IN_MEMORY, |limit| {
        format!("more than {limit} bytes uncompressed")
    });
    let mut out = Vec::new();
    tar.read_to_end(&mut out).map_err(failed)?;
    let (diff_id, _) = tar.finish().map_err(failed)?;
    Ok((out, diff_id))
}

/// The bytes of the regular file at `path` in `tar`.
fn entry(tar: &[u8], path: &str) -> Result<Option<Vec<u8>>, String> {
    let mut archive = tar::Archive::new(tar);
    let entries = archive
        .entries()
        .map_err(|e| format!("reading its layer: {e}"))?;
    for e in entries {
        let mut e = e.map_err(|e| format!("reading its layer: {e}"))?;
        let name = e.path().map_err(|e| format!("reading its layer: {e}"))?;
        if name.as_os_str() == path && e.header().entry_type().is_file() {
            let mut bytes = Vec::new();
            e.read_to_end(&mut bytes)
                .map_err(|e| format!("reading /{path} from its layer: {e}"))?;
            return Ok(Some(bytes));
        }
    }
    Ok(None)
}

/// A [`Compiler`] that answers from pulled binaries where it can and asks
/// `inner` for the rest; cargo is not run at all when everything was pulled.
pub struct Pulled<'a> {
    pub inner: &'a dyn Compiler,
    /// Where pulled binaries are written (the target directory's own place).
    pub dir: PathBuf,
    binaries: BTreeMap<Request, Vec<u8>>,
}

impl<'a> Pulled<'a> {
    pub fn new(inner: &'a dyn Compiler, dir: PathBuf) -> Self {
        Pulled {
            inner,
            dir,
            binaries: BTreeMap::new(),
        }
    }

    /// Adds the binaries of `image` from `hit`.
    pub fn add(&mut self, image: &ImagePlan, hit: Hit) {
        for (t, bytes) in image.targets.iter().zip(hit.binaries) {
            self.binaries.insert(request(image, &t.triple), bytes);
        }
    }

    fn write(&self, r: &Request, bytes: &[u8]) -> Result<PathBuf, CompileError> {
        let digest = Digest::of(bytes);
        let dir = self.dir.join(&r.triple).join(digest.hex());
        let path = dir.join(&r.bin);
        let err = |source| CompileError::Spawn {
            command: format!("writing the pulled binary {}", path.display()),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(err)?;
        // Written whole under another name and renamed, so a reader never
        // sees half a binary.
        let tmp = dir.join(format!(".{}.{}", r.bin, std::process::id()));
        std::fs::write(&tmp, bytes).map_err(err)?;
        std::fs::rename(&tmp, &path).map_err(err)?;
        Ok(path)
    }
}

/// The request the build makes for `image`'s binary for `triple`.
pub fn request(image: &ImagePlan, triple: &str) -> Request {
    Request {
        package: image.package.clone(),
        bin: image.bin.clone(),
        triple: triple.to_owned(),
        settings: image.build.clone(),
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
        requests
            .iter()
            .map(|r| match self.binaries.get(r) {
                Some(bytes) => self.write(r, bytes),
                None => Ok(compiled.next().expect("one executable per request")),
            })
            .collect()
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
    let mut pulled = Pulled::new(compiler, pulled_dir(&workspace.target_dir));
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
        let mut pulled = Pulled::new(&inner, dir.path().join("pulled"));
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
        pulled.binaries.insert(req("a"), b"binary a".to_vec());
        let got = pulled.compile(&[req("a")]).unwrap();
        assert_eq!(
            inner.0.get(),
            0,
            "cargo is not run when everything was pulled"
        );
        assert_eq!(std::fs::read(&got[0]).unwrap(), b"binary a");
        let got = pulled.compile(&[req("b"), req("a")]).unwrap();
        assert_eq!(inner.0.get(), 1);
        assert_eq!(got[0], dir.path().join("built"));
        assert_eq!(std::fs::read(&got[1]).unwrap(), b"binary a");
    }
}
