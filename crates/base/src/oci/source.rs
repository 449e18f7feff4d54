//! Images wherever they are: one small trait over the places an image set's
//! blobs live (in memory as just built, a layout directory, the archive, and
//! later a registry), and the one walk from `index.json` down through image
//! indexes to each platform's manifest and config (image-spec
//! `image-layout.md`, `image-index.md`, `manifest.md`), verifying every
//! document it reads. Build freshness, test unpacking and push all read
//! images through here, as go-containerregistry's `v1.ImageIndex` and
//! `v1.Image` are read the same way from any backing store.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use super::error::{MAX_JSON, ReadError, blob_path};
use super::spec::{Config, Index, Manifest, PlatformSpec};
use super::{
    DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, Descriptor, Digest, MEDIA_TYPE_INDEX,
    MEDIA_TYPE_MANIFEST,
};

/// Image indexes nest; this bounds a broken or hostile chain.
pub const MAX_DEPTH: usize = 8;

/// Where an image set's files live.
pub trait Source {
    /// The bytes of the top-level index (a layout's `index.json`).
    fn index_bytes(&self) -> Result<Vec<u8>, ReadError>;
    /// The bytes of the blob `d` names, at most `limit` of them, checked
    /// against the descriptor's size and digest.
    fn blob(&self, d: &Descriptor, limit: u64) -> Result<Vec<u8>, ReadError>;
}

/// A manifest or index as stored: its descriptor, its type and the exact
/// bytes that hash to its digest.
#[derive(Debug, Clone)]
pub struct StoredDocument {
    pub descriptor: Descriptor,
    pub media_type: String,
    pub bytes: Vec<u8>,
}

/// One platform's image, read and verified down to its config.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    /// The index's platform, else the config's.
    pub platform: PlatformSpec,
    pub manifest_digest: Digest,
    pub manifest: Manifest,
    pub config: Config,
}

impl ResolvedImage {
    pub fn layers(&self) -> &[Descriptor] {
        &self.manifest.layers
    }
}

/// Everything under one top-level descriptor.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The manifest or index a reference resolves to.
    pub top: StoredDocument,
    /// Manifests under the top index, children before parents, each once.
    pub children: Vec<StoredDocument>,
    /// Each platform image, in index order, each once.
    pub images: Vec<ResolvedImage>,
}

impl Resolved {
    /// Every config and layer descriptor, each once, in digest order.
    pub fn blobs(&self) -> Vec<&Descriptor> {
        let mut seen = BTreeSet::new();
        let mut all: Vec<&Descriptor> = self
            .images
            .iter()
            .flat_map(|i| std::iter::once(&i.manifest.config).chain(&i.manifest.layers))
            .filter(|d| seen.insert(d.digest.clone()))
            .collect();
        all.sort_by(|a, b| a.digest.cmp(&b.digest));
        all
    }
}

/// The parsed top-level index, and its exact bytes.
pub fn index(src: &dyn Source) -> Result<(Vec<u8>, Index), ReadError> {
    let bytes = src.index_bytes()?;
    let index = parse("index", "index.json", &bytes)?;
    Ok((bytes, index))
}

/// The entry of `index` named `ref_name`, or, without a name, the one image
/// every entry names (one entry per tag all pointing at one digest).
pub fn select<'a>(index: &'a Index, ref_name: Option<&str>) -> Result<&'a Descriptor, ReadError> {
    match ref_name {
        Some(name) => index
            .manifests
            .iter()
            .find(|d| d.ref_name() == Some(name))
            .ok_or_else(|| ReadError::NoSuchRef {
                name: name.to_owned(),
                names: index
                    .manifests
                    .iter()
                    .filter_map(|d| d.ref_name().map(str::to_owned))
                    .collect(),
            }),
        None => {
            let first = index.manifests.first().ok_or(ReadError::Empty)?;
            let distinct: BTreeSet<&Digest> = index.manifests.iter().map(|d| &d.digest).collect();
            match distinct.len() {
                1 => Ok(first),
                n => Err(ReadError::Ambiguous(n)),
            }
        }
    }
}

/// How much one walk may read. A registry (or a layout) is hostile input: an
/// index may list thousands of documents, or one large document many times.
/// Each distinct digest is read once however often it is listed, and every
/// document (index, manifest, config) counts against both bounds before it
/// is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalkLimits {
    /// The most documents one walk reads.
    pub documents: usize,
    /// The most bytes the documents of one walk may add up to (each is at
    /// most [`MAX_JSON`] besides).
    pub bytes: u64,
}

impl Default for WalkLimits {
    fn default() -> Self {
        WalkLimits {
            // A multi-platform image is an index, a manifest and a config
            // per platform: a few dozen documents. Far more than any image
            // needs, far fewer than a hostile index can list.
            documents: 1000,
            // Real documents are a few KiB each; this bounds what a walk
            // holds in memory.
            bytes: 64 << 20,
        }
    }
}

/// Reads everything under `top`, verifying each document, within the
/// default [`WalkLimits`].
pub fn resolve(src: &dyn Source, top: &Descriptor) -> Result<Resolved, ReadError> {
    resolve_within(src, top, WalkLimits::default())
}

/// Reads everything under `top`, verifying each document, reading each
/// distinct digest once and no more than `limits` allow.
pub fn resolve_within(
    src: &dyn Source,
    top: &Descriptor,
    limits: WalkLimits,
) -> Result<Resolved, ReadError> {
    let mut walk = Walk::new(src, limits);
    walk.charge(std::slice::from_ref(top))?;
    let top = walk.document(top, 0)?;
    Ok(Resolved {
        top,
        children: walk.children,
        images: walk.images,
    })
}

/// Every platform image that any entry of the top-level index reaches, each
/// once (entries for several tags of one image share it), within the
/// default [`WalkLimits`] for the whole layout.
pub fn resolve_all(src: &dyn Source) -> Result<Vec<ResolvedImage>, ReadError> {
    let (_, index) = index(src)?;
    let mut walk = Walk::new(src, WalkLimits::default());
    let entries = walk.unseen(&index.manifests);
    walk.charge(&entries)?;
    for d in &entries {
        walk.document(d, 0)?;
    }
    if walk.images.is_empty() {
        return Err(ReadError::Empty);
    }
    Ok(walk.images)
}

struct Walk<'a> {
    src: &'a dyn Source,
    limits: WalkLimits,
    /// Every digest read, or listed and about to be.
    seen: BTreeSet<Digest>,
    /// Configs read so far: images that share one read it once.
    configs: BTreeMap<Digest, Config>,
    documents: usize,
    bytes: u64,
    children: Vec<StoredDocument>,
    images: Vec<ResolvedImage>,
}

impl<'a> Walk<'a> {
    fn new(src: &'a dyn Source, limits: WalkLimits) -> Self {
        Walk {
            src,
            limits,
            seen: BTreeSet::new(),
            configs: BTreeMap::new(),
            documents: 0,
            bytes: 0,
            children: Vec::new(),
            images: Vec::new(),
        }
    }

    /// The descriptors of `listed` whose digests the walk has not met yet,
    /// each once, in the order listed; they are marked as met.
    fn unseen(&mut self, listed: &[Descriptor]) -> Vec<Descriptor> {
        listed
            .iter()
            .filter(|d| self.seen.insert(d.digest.clone()))
            .cloned()
            .collect()
    }

    /// Counts `documents` against the limits before any of them is read.
    fn charge(&mut self, documents: &[Descriptor]) -> Result<(), ReadError> {
        self.documents = self.documents.saturating_add(documents.len());
        if self.documents > self.limits.documents {
            return Err(ReadError::TooManyDocuments(self.limits.documents));
        }
        for d in documents {
            self.bytes = self.bytes.saturating_add(d.size);
        }
        if self.bytes > self.limits.bytes {
            return Err(ReadError::TooManyBytes(self.limits.bytes));
        }
        Ok(())
    }

    fn document(&mut self, d: &Descriptor, depth: usize) -> Result<StoredDocument, ReadError> {
        if depth > MAX_DEPTH {
            return Err(ReadError::TooDeep(MAX_DEPTH));
        }
        self.seen.insert(d.digest.clone());
        let bytes = self.src.blob(d, MAX_JSON)?;
        let path = blob_path(&d.digest);
        // The descriptor names the type; a document's own field backs it up.
        let media_type = if d.media_type.is_empty() {
            #[derive(Deserialize)]
            struct Typed {
                #[serde(rename = "mediaType", default)]
                media_type: String,
            }
            parse::<Typed>("document", &path, &bytes)?.media_type
        } else {
            d.media_type.clone()
        };
        match media_type.as_str() {
            MEDIA_TYPE_INDEX | DOCKER_MANIFEST_LIST => {
                let index: Index = parse("image index", &path, &bytes)?;
                // Deduplicated and counted before the first child is read.
                let listed = self.unseen(&index.manifests);
                self.charge(&listed)?;
                for child in &listed {
                    let doc = self.document(child, depth + 1)?;
                    self.children.push(doc);
                }
            }
            MEDIA_TYPE_MANIFEST | DOCKER_MANIFEST => {
                let manifest: Manifest = parse("image manifest", &path, &bytes)?;
                let config = self.config(&manifest.config)?;
                let platform = match &d.platform {
                    Some(p) => p.clone(),
                    None => config.platform(),
                };
                self.images.push(ResolvedImage {
                    platform,
                    manifest_digest: d.digest.clone(),
                    manifest,
                    config,
                });
            }
            other => {
                return Err(ReadError::MediaType {
                    digest: d.digest.clone(),
                    media_type: other.to_owned(),
                });
            }
        }
        Ok(StoredDocument {
            descriptor: d.clone(),
            media_type,
            bytes,
        })
    }

    /// The config `d` names, read once per walk.
    fn config(&mut self, d: &Descriptor) -> Result<Config, ReadError> {
        if let Some(config) = self.configs.get(&d.digest) {
            return Ok(config.clone());
        }
        self.charge(std::slice::from_ref(d))?;
        let bytes = self.src.blob(d, MAX_JSON)?;
        let config: Config = parse("image config", &blob_path(&d.digest), &bytes)?;
        self.configs.insert(d.digest.clone(), config.clone());
        Ok(config)
    }
}

fn parse<'a, T: Deserialize<'a>>(
    what: &'static str,
    path: &str,
    bytes: &'a [u8],
) -> Result<T, ReadError> {
    serde_json::from_slice(bytes).map_err(|source| ReadError::Json {
        what,
        path: path.to_owned(),
        source,
    })
}
