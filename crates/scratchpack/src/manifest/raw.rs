//! `images.toml` as written: every key read from the spanned TOML tree by hand,
//! so that a wrong type or an unknown key is one more problem in the list, not
//! the end of reading (TOML 1.0 for the syntax, README's reference for keys).

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::diagnostic::Diagnostic;

mod service;

pub(crate) use service::{RawRequest, RawService, RawStop, RawTcp};

/// A value and where it was written.
pub(crate) type S<T> = Spanned<T>;

/// The whole file.
#[derive(Debug, Default)]
pub(crate) struct RawManifest {
    pub defaults: Option<RawImage>,
    pub images: Vec<(S<String>, RawImage)>,
    /// Whether `images` has any entry at all, readable or not, so a file whose
    /// only image is mistyped is not also told it declares none.
    pub declares_images: bool,
}

/// One image table, or the `[defaults]` table.
#[derive(Debug, Default)]
pub(crate) struct RawImage {
    pub package: Option<S<String>>,
    pub bin: Option<S<String>>,
    pub platforms: Option<S<Vec<S<String>>>>,
    pub targets: Option<Vec<(S<String>, S<String>)>>,
    pub rustflags: Option<S<Vec<S<String>>>>,
    pub profile: Option<S<String>>,
    pub features: Option<S<Vec<S<String>>>>,
    pub default_features: Option<S<bool>>,
    pub auditable: Option<S<bool>>,
    pub entrypoint: Option<S<Vec<S<String>>>>,
    pub binary_path: Option<S<String>>,
    pub cmd: Option<S<Vec<S<String>>>>,
    pub env: Option<Vec<(S<String>, S<String>)>>,
    pub user: Option<S<String>>,
    pub workdir: Option<S<String>>,
    pub labels: Option<Vec<(S<String>, S<String>)>>,
    pub annotations: Option<Vec<(S<String>, S<String>)>>,
    pub ports: Option<S<Vec<S<String>>>>,
    pub stop_signal: Option<S<String>>,
    pub compression: Option<S<String>>,
    pub files: Option<Vec<RawFile>>,
    pub dirs: Option<Vec<RawDir>>,
    pub volumes: Option<S<Vec<S<String>>>>,
    pub tags: Option<S<Vec<S<String>>>>,
    pub source_annotations: Option<S<bool>>,
    pub binaries: Option<Vec<RawBinary>>,
    pub registry: Option<S<String>>,
    pub repository: Option<S<String>>,
    pub insecure: Option<S<bool>>,
    pub ca_certificates: Option<S<bool>>,
    pub passwd: Option<S<bool>>,
    pub source_date_epoch: Option<S<RawEpoch>>,
    pub sbom: Option<S<Vec<S<String>>>>,
    pub provenance: Option<S<bool>>,
    pub signature_format: Option<S<String>>,
    pub builder_id: Option<S<String>>,
    pub unpack_limits: Option<S<RawUnpackLimits>>,
    pub require_all_platforms: Option<S<bool>>,
    /// `cache = "REGISTRY/REPOSITORY"`: the registry build cache.
    pub cache: Option<S<String>>,
    /// `cache-sign-key = "FILE"`: cosign's private key that signs entries.
    pub cache_sign_key: Option<S<String>>,
    /// `cache-verify-key = "FILE"`: the public key entries must be signed by.
    pub cache_verify_key: Option<S<String>>,
    pub registry_limits: Option<S<RawRegistryLimits>>,
    /// `c-compiler = "zig" | "none"`: who compiles C for image builds.
    pub c_compiler: Option<S<String>>,
    pub tests: Option<Vec<(S<String>, RawTest)>>,
    /// Where each key was written, for keys that are allowed only in one of
    /// `[defaults]` and an image.
    pub keys: Vec<(&'static str, Range<usize>)>,
}

/// `source-date-epoch`: a number of seconds, or `"git"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RawEpoch {
    Seconds(i64),
    Word(String),
}

/// `unpack-limits = { max-bytes = …, max-entries = …, max-depth = …,
/// max-name-bytes = … }`: each key as written.
#[derive(Debug, Default)]
pub(crate) struct RawUnpackLimits {
    pub max_bytes: Option<S<i64>>,
    pub max_entries: Option<S<i64>>,
    pub max_depth: Option<S<i64>>,
    pub max_name_bytes: Option<S<i64>>,
}

/// `registry-limits = { idle-timeout = …, timeout = …, max-documents = …,
/// max-bytes = … }`: each key as written.
#[derive(Debug, Default)]
pub(crate) struct RawRegistryLimits {
    pub idle_timeout: Option<S<i64>>,
    pub timeout: Option<S<i64>>,
    pub max_documents: Option<S<i64>>,
    pub max_bytes: Option<S<i64>>,
}

/// One named image test.
#[derive(Debug, Default)]
pub(crate) struct RawTest {
    pub args: Option<S<Vec<S<String>>>>,
    pub env: Option<Vec<(S<String>, S<String>)>>,
    pub stdin: Option<S<String>>,
    pub timeout: Option<S<f64>>,
    pub user: Option<S<String>>,
    pub workdir: Option<S<String>>,
    pub exit_code: Option<S<i64>>,
    pub stdout: Option<RawOutput>,
    pub stderr: Option<RawOutput>,
    pub files: Option<Vec<RawFileCheck>>,
    pub absent: Option<S<Vec<S<String>>>>,
    pub config: Option<RawConfigCheck>,
    pub seccomp: Option<S<bool>>,
    pub service: Option<RawService>,
    pub requests: Option<RawRequests>,
    pub stop: Option<RawStop>,
    /// The known keys the test sets, read or not: what kind of test it is
    /// does not depend on whether its values were well typed.
    pub keys: Vec<&'static str>,
}

/// `requests = [ … ]` of a service test, and where its key was written.
#[derive(Debug)]
pub(crate) struct RawRequests {
    pub key: Range<usize>,
    pub entries: Vec<RawRequest>,
}

#[derive(Debug, Default)]
pub(crate) struct RawOutput {
    pub equals: Option<S<String>>,
    pub contains: Option<S<Vec<S<String>>>>,
    pub contains_hex: Option<S<Vec<S<String>>>>,
    pub regex: Option<S<String>>,
}

#[derive(Debug)]
pub(crate) struct RawFileCheck {
    pub path: S<String>,
    pub mode: Option<S<RawMode>>,
    pub kind: Option<S<String>>,
}

#[derive(Debug, Default)]
pub(crate) struct RawConfigCheck {
    pub entrypoint: Option<S<Vec<S<String>>>>,
    pub cmd: Option<S<Vec<S<String>>>>,
    pub user: Option<S<String>>,
    pub workdir: Option<S<String>>,
    pub env: Option<Vec<(S<String>, S<String>)>>,
    pub ports: Option<S<Vec<S<String>>>>,
    pub volumes: Option<S<Vec<S<String>>>>,
}

#[derive(Debug)]
pub(crate) struct RawFile {
    pub src: S<String>,
    pub dst: S<String>,
    pub mode: Option<S<RawMode>>,
}

/// One entry of `binaries`: a binary beside the image's own.
#[derive(Debug)]
pub(crate) struct RawBinary {
    pub package: Option<S<String>>,
    pub bin: Option<S<String>>,
    pub path: Option<S<String>>,
    /// The whole entry, for problems of the entry as such.
    pub span: Range<usize>,
}

#[derive(Debug)]
pub(crate) struct RawDir {
    pub path: S<String>,
    pub mode: Option<S<RawMode>>,
}

/// A mode as TOML can write it: `0o644` or `"0644"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RawMode {
    Int(i64),
    Str(String),
}

/// Keys of an image table, in the order README documents them.
pub(crate) const IMAGE_KEYS: &[&str] = &[
    "package",
    "bin",
    "binaries",
    "platforms",
    "targets",
    "profile",
    "features",
    "default-features",
    "auditable",
    "rustflags",
    "binary-path",
    "entrypoint",
    "cmd",
    "env",
    "user",
    "workdir",
    "labels",
    "annotations",
    "ports",
    "stop-signal",
    "compression",
    "files",
    "dirs",
    "volumes",
    "ca-certificates",
    "passwd",
    "tags",
    "source-annotations",
    "registry",
    "repository",
    "insecure",
    "sbom",
    "provenance",
    "signature-format",
    "builder-id",
    "unpack-limits",
    "require-all-platforms",
    "tests",
];

/// Keys `[defaults]` accepts on top of the image keys it shares.
pub(crate) const DEFAULTS_ONLY_KEYS: &[&str] = &[
    "source-date-epoch",
    "cache",
    "cache-sign-key",
    "cache-verify-key",
    "registry-limits",
    "c-compiler",
];

/// Image keys that name one image's own things and so make no sense as a default.
pub(crate) const IMAGE_ONLY_KEYS: &[&str] = &[
    "package",
    "bin",
    "binaries",
    "binary-path",
    "entrypoint",
    "repository",
    "tests",
];

pub(crate) const TEST_KEYS: &[&str] = &[
    "args",
    "env",
    "stdin",
    "timeout",
    "user",
    "workdir",
    "exit-code",
    "stdout",
    "stderr",
    "files",
    "absent",
    "config",
    "seccomp",
    "service",
    "requests",
    "stop",
];
/// Test keys that make a test a structure test; the others make it a command test.
pub(crate) const STRUCTURE_KEYS: &[&str] = &["files", "absent", "config"];
const OUTPUT_KEYS: &[&str] = &["equals", "contains", "contains-hex", "regex"];
const FILE_CHECK_KEYS: &[&str] = &["path", "mode", "type"];
const CONFIG_CHECK_KEYS: &[&str] = &[
    "entrypoint",
    "cmd",
    "user",
    "workdir",
    "env",
    "ports",
    "volumes",
];
const FILE_KEYS: &[&str] = &["src", "dst", "mode"];
const DIR_KEYS: &[&str] = &["path", "mode"];
const BINARY_KEYS: &[&str] = &["package", "bin", "path"];
const UNPACK_LIMIT_KEYS: &[&str] = &["max-bytes", "max-entries", "max-depth", "max-name-bytes"];
const REGISTRY_LIMIT_KEYS: &[&str] = &["idle-timeout", "timeout", "max-documents", "max-bytes"];

type V<'i> = Spanned<DeValue<'i>>;

/// How a message about the TOML syntax itself starts.
pub(crate) const SYNTAX: &str = "invalid TOML";

/// Reads the TOML text into a [`RawManifest`], adding every problem found to
/// `diagnostics`. Syntax errors come first; the rest of the file is still read
/// as far as the parser could recover it.
pub(crate) fn read(text: &str, diagnostics: &mut Vec<Diagnostic>) -> RawManifest {
    let (doc, syntax) = DeTable::parse_recoverable(text);
    for e in syntax {
        let message = e.message().trim_end_matches('\n').to_owned();
        diagnostics.push(
            Diagnostic::new(format!("{SYNTAX}: {message}"), e.span().unwrap_or(0..0)).label("here"),
        );
    }
    let mut w = Walker { diagnostics };
    w.manifest(doc.get_ref())
}

struct Walker<'d> {
    diagnostics: &'d mut Vec<Diagnostic>,
}

fn article(kind: &str) -> &'static str {
    match kind {
        "string" => "a string",
        "integer" => "an integer",
        "float" => "a float",
        "boolean" => "a boolean",
        "datetime" => "a date-time",
        "array" => "an array",
        "table" => "a table",
        _ => "a value",
    }
}

fn found(v: &V<'_>) -> &'static str {
    article(v.get_ref().type_str())
}

/// The allowed key a mistyped one most likely meant: the same once case, `_`
/// and `-` are ignored, or at most two edits away.
fn nearest<'a>(key: &str, allowed: &[&'a str]) -> Option<&'a str> {
    let fold = |s: &str| s.to_ascii_lowercase().replace('_', "-");
    let key = fold(key);
    allowed
        .iter()
        .map(|a| (edit_distance(&key, &fold(a)), *a))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, a)| a)
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

fn quoted(keys: &[&str]) -> String {
    keys.iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Walker<'_> {
    fn wrong_type(&mut self, what: &str, expected: &str, v: &V<'_>) {
        self.diagnostics.push(
            Diagnostic::new(
                format!("{what}: expected {expected}, found {}", found(v)),
                v.span(),
            )
            .label(format!("expected {expected}")),
        );
    }

    fn unknown_key(&mut self, key: &S<std::borrow::Cow<'_, str>>, place: &str, allowed: &[&str]) {
        let mut d = Diagnostic::new(
            format!(
                "unknown key `{}` in {place}; expected one of {}",
                key.get_ref(),
                quoted(allowed)
            ),
            key.span(),
        )
        .label("unknown key");
        if let Some(near) = nearest(key.get_ref(), allowed) {
            d = d.help(format!("did you mean `{near}`?"));
        }
        self.diagnostics.push(d);
    }

    fn missing_key(&mut self, key: &str, place: &str, span: Range<usize>) {
        self.diagnostics.push(
            Diagnostic::new(format!("{place} has no `{key}`"), span)
                .label(format!("missing `{key}`")),
        );
    }

    fn table<'a, 'i>(&mut self, what: &str, v: &'a V<'i>) -> Option<&'a DeTable<'i>> {
        match v.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => {
                self.wrong_type(what, "a table", v);
                None
            }
        }
    }

    fn string(&mut self, what: &str, v: &V<'_>) -> Option<S<String>> {
        match v.get_ref() {
            DeValue::String(s) => Some(Spanned::new(v.span(), s.to_string())),
            _ => {
                self.wrong_type(what, "a string", v);
                None
            }
        }
    }

    fn boolean(&mut self, what: &str, v: &V<'_>) -> Option<S<bool>> {
        match v.get_ref() {
            DeValue::Boolean(b) => Some(Spanned::new(v.span(), *b)),
            _ => {
                self.wrong_type(what, "`true` or `false`", v);
                None
            }
        }
    }

    fn integer(&mut self, v: &V<'_>) -> Option<i64> {
        let DeValue::Integer(i) = v.get_ref() else {
            return None;
        };
        let parsed = i64::from_str_radix(i.as_str(), i.radix()).ok();
        if parsed.is_none() {
            self.diagnostics.push(
                Diagnostic::new("integer out of range", v.span()).label("does not fit in 64 bits"),
            );
        }
        parsed
    }

    /// An array of strings; every element of the wrong type is its own problem.
    fn strings(&mut self, what: &str, v: &V<'_>) -> Option<S<Vec<S<String>>>> {
        let DeValue::Array(items) = v.get_ref() else {
            self.wrong_type(what, "an array of strings", v);
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        for item in items.iter() {
            match item.get_ref() {
                DeValue::String(s) => out.push(Spanned::new(item.span(), s.to_string())),
                _ => {
                    ok = false;
                    self.wrong_type(&format!("an element of {what}"), "a string", item);
                }
            }
        }
        ok.then(|| Spanned::new(v.span(), out))
    }

    /// A table of string values.
    fn string_table(&mut self, what: &str, v: &V<'_>) -> Option<Vec<(S<String>, S<String>)>> {
        let t = self.table(what, v)?;
        let mut out = Vec::new();
        let mut ok = true;
        for (k, val) in t.iter() {
            let key = Spanned::new(k.span(), k.get_ref().to_string());
            match val.get_ref() {
                DeValue::String(s) => out.push((key, Spanned::new(val.span(), s.to_string()))),
                _ => {
                    ok = false;
                    self.wrong_type(&format!("`{}` in {what}", k.get_ref()), "a string", val);
                }
            }
        }
        ok.then_some(out)
    }

    /// A number of seconds, whole or with a fraction.
    fn seconds(&mut self, what: &str, v: &V<'_>) -> Option<S<f64>> {
        match v.get_ref() {
            DeValue::Integer(_) => self.integer(v).map(|i| Spanned::new(v.span(), i as f64)),
            DeValue::Float(f) => f
                .as_str()
                .replace('_', "")
                .parse::<f64>()
                .ok()
                .map(|f| Spanned::new(v.span(), f)),
            _ => {
                self.wrong_type(what, "a number of seconds", v);
                None
            }
        }
    }

    fn mode(&mut self, what: &str, v: &V<'_>) -> Option<S<RawMode>> {
        match v.get_ref() {
            DeValue::String(s) => Some(Spanned::new(v.span(), RawMode::Str(s.to_string()))),
            DeValue::Integer(_) => {
                let i = self.integer(v)?;
                Some(Spanned::new(v.span(), RawMode::Int(i)))
            }
            _ => {
                self.wrong_type(what, "an octal mode such as `0o644` or `\"0644\"`", v);
                None
            }
        }
    }

    fn manifest(&mut self, doc: &DeTable<'_>) -> RawManifest {
        let mut out = RawManifest::default();
        for (key, value) in doc.iter() {
            match key.get_ref().as_ref() {
                "defaults" => {
                    if let Some(t) = self.table("`defaults`", value) {
                        out.defaults = Some(self.image(t, "[defaults]", true));
                    }
                }
                "images" => {
                    let Some(t) = self.table("`images`", value) else {
                        continue;
                    };
                    out.declares_images |= !t.is_empty();
                    for (name, image) in t.iter() {
                        let place = format!("image `{}`", name.get_ref());
                        if let Some(t) = self.table(&place, image) {
                            let raw = self.image(t, &place, false);
                            out.images
                                .push((Spanned::new(name.span(), name.get_ref().to_string()), raw));
                        }
                    }
                }
                _ => self.unknown_key(key, "images.toml", &["defaults", "images"]),
            }
        }
        out
    }

    fn image(&mut self, t: &DeTable<'_>, place: &str, is_defaults: bool) -> RawImage {
        let mut r = RawImage::default();
        for (key, v) in t.iter() {
            let k = key.get_ref().as_ref();
            let what = format!("`{k}` in {place}");
            let what = what.as_str();
            if let Some(known) = IMAGE_KEYS
                .iter()
                .chain(DEFAULTS_ONLY_KEYS)
                .find(|known| **known == k)
            {
                r.keys.push((known, key.span()));
            }
            match k {
                "package" => r.package = self.string(what, v),
                "bin" => r.bin = self.string(what, v),
                "platforms" => r.platforms = self.strings(what, v),
                "targets" => r.targets = self.string_table(what, v),
                "rustflags" => r.rustflags = self.strings(what, v),
                "profile" => r.profile = self.string(what, v),
                "features" => r.features = self.strings(what, v),
                "default-features" => r.default_features = self.boolean(what, v),
                "auditable" => r.auditable = self.boolean(what, v),
                "entrypoint" => r.entrypoint = self.strings(what, v),
                "binary-path" => r.binary_path = self.string(what, v),
                "cmd" => r.cmd = self.strings(what, v),
                "env" => r.env = self.string_table(what, v),
                "user" => r.user = self.string(what, v),
                "workdir" => r.workdir = self.string(what, v),
                "labels" => r.labels = self.string_table(what, v),
                "annotations" => r.annotations = self.string_table(what, v),
                "ports" => r.ports = self.strings(what, v),
                "stop-signal" => r.stop_signal = self.string(what, v),
                "compression" => r.compression = self.string(what, v),
                "files" => r.files = self.files(what, v),
                "dirs" => r.dirs = self.dirs(what, v),
                "volumes" => r.volumes = self.strings(what, v),
                "tags" => r.tags = self.strings(what, v),
                "source-annotations" => r.source_annotations = self.boolean(what, v),
                "binaries" => r.binaries = self.binaries(what, v),
                "registry" => r.registry = self.string(what, v),
                "repository" => r.repository = self.string(what, v),
                "insecure" => r.insecure = self.boolean(what, v),
                "ca-certificates" => r.ca_certificates = self.boolean(what, v),
                "passwd" => r.passwd = self.boolean(what, v),
                "sbom" => r.sbom = self.strings(what, v),
                "provenance" => r.provenance = self.boolean(what, v),
                "signature-format" => r.signature_format = self.string(what, v),
                "builder-id" => r.builder_id = self.string(what, v),
                "unpack-limits" => r.unpack_limits = self.unpack_limits(what, v),
                "require-all-platforms" => r.require_all_platforms = self.boolean(what, v),
                "source-date-epoch" => {
                    r.source_date_epoch = match v.get_ref() {
                        DeValue::String(s) => {
                            Some(Spanned::new(v.span(), RawEpoch::Word(s.to_string())))
                        }
                        DeValue::Integer(_) => self
                            .integer(v)
                            .map(|i| Spanned::new(v.span(), RawEpoch::Seconds(i))),
                        _ => {
                            self.wrong_type(what, "`\"git\"` or a number of seconds", v);
                            None
                        }
                    }
                }
                "cache" => r.cache = self.string(what, v),
                "cache-sign-key" => r.cache_sign_key = self.string(what, v),
                "cache-verify-key" => r.cache_verify_key = self.string(what, v),
                "registry-limits" => r.registry_limits = self.registry_limits(what, v),
                "c-compiler" => r.c_compiler = self.string(what, v),
                "tests" => {
                    let Some(tests) = self.table(what, v) else {
                        continue;
                    };
                    let mut out = Vec::new();
                    for (name, test) in tests.iter() {
                        let tplace = format!("test `{}` of {place}", name.get_ref());
                        if let Some(tt) = self.table(&tplace, test) {
                            out.push((
                                Spanned::new(name.span(), name.get_ref().to_string()),
                                self.test(tt, &tplace),
                            ));
                        }
                    }
                    r.tests = Some(out);
                }
                _ => {
                    let allowed: Vec<&str> = if is_defaults {
                        IMAGE_KEYS
                            .iter()
                            .filter(|k| !IMAGE_ONLY_KEYS.contains(k))
                            .chain(DEFAULTS_ONLY_KEYS)
                            .copied()
                            .collect()
                    } else {
                        IMAGE_KEYS.to_vec()
                    };
                    self.unknown_key(key, place, &allowed);
                }
            }
        }
        r
    }

    fn entries<'a, 'i>(
        &mut self,
        what: &str,
        v: &'a V<'i>,
    ) -> Option<Vec<(String, Range<usize>, &'a DeTable<'i>)>> {
        let DeValue::Array(items) = v.get_ref() else {
            self.wrong_type(what, "an array of tables", v);
            return None;
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let place = format!("entry {} of {what}", i + 1);
            if let Some(t) = self.table(&place, item) {
                out.push((place, item.span(), t));
            }
        }
        Some(out)
    }

    fn files(&mut self, what: &str, v: &V<'_>) -> Option<Vec<RawFile>> {
        let mut out = Vec::new();
        for (place, span, t) in self.entries(what, v)? {
            let (mut src, mut dst, mut mode) = (None, None, None);
            for (key, v) in t.iter() {
                let what = format!("`{}` in {place}", key.get_ref());
                match key.get_ref().as_ref() {
                    "src" => src = self.string(&what, v),
                    "dst" => dst = self.string(&what, v),
                    "mode" => mode = self.mode(&what, v),
                    _ => self.unknown_key(key, &place, FILE_KEYS),
                }
            }
            let has_src = t.keys().any(|k| k.get_ref() == "src");
            let has_dst = t.keys().any(|k| k.get_ref() == "dst");
            if !has_src {
                self.missing_key("src", &place, span.clone());
            }
            if !has_dst {
                self.missing_key("dst", &place, span.clone());
            }
            if let (Some(src), Some(dst)) = (src, dst) {
                out.push(RawFile { src, dst, mode });
            }
        }
        Some(out)
    }

    fn binaries(&mut self, what: &str, v: &V<'_>) -> Option<Vec<RawBinary>> {
        let mut out = Vec::new();
        for (place, span, t) in self.entries(what, v)? {
            let mut b = RawBinary {
                package: None,
                bin: None,
                path: None,
                span,
            };
            for (key, v) in t.iter() {
                let what = format!("`{}` in {place}", key.get_ref());
                match key.get_ref().as_ref() {
                    "package" => b.package = self.string(&what, v),
                    "bin" => b.bin = self.string(&what, v),
                    "path" => b.path = self.string(&what, v),
                    _ => self.unknown_key(key, &place, BINARY_KEYS),
                }
            }
            out.push(b);
        }
        Some(out)
    }

    fn dirs(&mut self, what: &str, v: &V<'_>) -> Option<Vec<RawDir>> {
        let mut out = Vec::new();
        for (place, span, t) in self.entries(what, v)? {
            let (mut path, mut mode) = (None, None);
            for (key, v) in t.iter() {
                let what = format!("`{}` in {place}", key.get_ref());
                match key.get_ref().as_ref() {
                    "path" => path = self.string(&what, v),
                    "mode" => mode = self.mode(&what, v),
                    _ => self.unknown_key(key, &place, DIR_KEYS),
                }
            }
            if !t.keys().any(|k| k.get_ref() == "path") {
                self.missing_key("path", &place, span);
            }
            if let Some(path) = path {
                out.push(RawDir { path, mode });
            }
        }
        Some(out)
    }

    fn test(&mut self, t: &DeTable<'_>, place: &str) -> RawTest {
        let mut r = RawTest::default();
        for (key, v) in t.iter() {
            let k = key.get_ref().as_ref();
            let what = format!("`{k}` in {place}");
            let what = what.as_str();
            if let Some(known) = TEST_KEYS.iter().find(|known| **known == k) {
                r.keys.push(known);
            }
            match k {
                "args" => r.args = self.strings(what, v),
                "env" => r.env = self.string_table(what, v),
                "stdin" => r.stdin = self.string(what, v),
                "timeout" => r.timeout = self.seconds(what, v),
                "user" => r.user = self.string(what, v),
                "seccomp" => r.seccomp = self.boolean(what, v),
                "service" => r.service = self.service(what, v),
                "requests" => r.requests = self.requests(what, key.span(), v),
                "stop" => r.stop = self.stop(what, key.span(), v),
                "workdir" => r.workdir = self.string(what, v),
                "exit-code" => {
                    r.exit_code = match v.get_ref() {
                        DeValue::Integer(_) => self.integer(v).map(|i| Spanned::new(v.span(), i)),
                        _ => {
                            self.wrong_type(what, "an integer", v);
                            None
                        }
                    }
                }
                "stdout" | "stderr" => {
                    let out = self.output(what, v);
                    if k == "stdout" {
                        r.stdout = out;
                    } else {
                        r.stderr = out;
                    }
                }
                "files" => {
                    let mut out = Vec::new();
                    for (eplace, span, t) in self.entries(what, v).into_iter().flatten() {
                        let (mut path, mut mode, mut kind) = (None, None, None);
                        for (key, v) in t.iter() {
                            let what = format!("`{}` in {eplace}", key.get_ref());
                            match key.get_ref().as_ref() {
                                "path" => path = self.string(&what, v),
                                "mode" => mode = self.mode(&what, v),
                                "type" => kind = self.string(&what, v),
                                _ => self.unknown_key(key, &eplace, FILE_CHECK_KEYS),
                            }
                        }
                        if !t.keys().any(|k| k.get_ref() == "path") {
                            self.missing_key("path", &eplace, span);
                        }
                        if let Some(path) = path {
                            out.push(RawFileCheck { path, mode, kind });
                        }
                    }
                    r.files = Some(out);
                }
                "absent" => r.absent = self.strings(what, v),
                "config" => {
                    let Some(t) = self.table(what, v) else {
                        continue;
                    };
                    let cplace = format!("`config` of {place}");
                    let mut c = RawConfigCheck::default();
                    for (key, v) in t.iter() {
                        let what = format!("`{}` in {cplace}", key.get_ref());
                        let what = what.as_str();
                        match key.get_ref().as_ref() {
                            "entrypoint" => c.entrypoint = self.strings(what, v),
                            "cmd" => c.cmd = self.strings(what, v),
                            "user" => c.user = self.string(what, v),
                            "workdir" => c.workdir = self.string(what, v),
                            "env" => c.env = self.string_table(what, v),
                            "ports" => c.ports = self.strings(what, v),
                            "volumes" => c.volumes = self.strings(what, v),
                            _ => self.unknown_key(key, &cplace, CONFIG_CHECK_KEYS),
                        }
                    }
                    r.config = Some(c);
                }
                _ => self.unknown_key(key, place, TEST_KEYS),
            }
        }
        r
    }

    fn unpack_limits(&mut self, what: &str, v: &V<'_>) -> Option<S<RawUnpackLimits>> {
        let t = self.table(what, v)?;
        let mut limits = RawUnpackLimits::default();
        for (key, value) in t.iter() {
            let w = format!("`{}` in {what}", key.get_ref());
            let slot = match key.get_ref().as_ref() {
                "max-bytes" => &mut limits.max_bytes,
                "max-entries" => &mut limits.max_entries,
                "max-depth" => &mut limits.max_depth,
                "max-name-bytes" => &mut limits.max_name_bytes,
                _ => {
                    self.unknown_key(key, what, UNPACK_LIMIT_KEYS);
                    continue;
                }
            };
            *slot = match value.get_ref() {
                DeValue::Integer(_) => self.integer(value).map(|i| Spanned::new(value.span(), i)),
                _ => {
                    self.wrong_type(&w, "a positive integer", value);
                    None
                }
            };
        }
        Some(Spanned::new(v.span(), limits))
    }

    fn registry_limits(&mut self, what: &str, v: &V<'_>) -> Option<S<RawRegistryLimits>> {
        let t = self.table(what, v)?;
        let mut limits = RawRegistryLimits::default();
        for (key, value) in t.iter() {
            let w = format!("`{}` in {what}", key.get_ref());
            let slot = match key.get_ref().as_ref() {
                "idle-timeout" => &mut limits.idle_timeout,
                "timeout" => &mut limits.timeout,
                "max-documents" => &mut limits.max_documents,
                "max-bytes" => &mut limits.max_bytes,
                _ => {
                    self.unknown_key(key, what, REGISTRY_LIMIT_KEYS);
                    continue;
                }
            };
            *slot = match value.get_ref() {
                DeValue::Integer(_) => self.integer(value).map(|i| Spanned::new(value.span(), i)),
                _ => {
                    self.wrong_type(&w, "a positive integer", value);
                    None
                }
            };
        }
        Some(Spanned::new(v.span(), limits))
    }

    fn output(&mut self, what: &str, v: &V<'_>) -> Option<RawOutput> {
        let t = self.table(what, v)?;
        let mut o = RawOutput::default();
        for (key, v) in t.iter() {
            let w = format!("`{}` in {what}", key.get_ref());
            match key.get_ref().as_ref() {
                "equals" => o.equals = self.string(&w, v),
                "contains" => o.contains = self.strings(&w, v),
                "contains-hex" => o.contains_hex = self.strings(&w, v),
                "regex" => o.regex = self.string(&w, v),
                _ => self.unknown_key(key, what, OUTPUT_KEYS),
            }
        }
        Some(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_misses_are_suggested() {
        assert_eq!(nearest("entry-point", IMAGE_KEYS), Some("entrypoint"));
        assert_eq!(
            nearest("default_features", IMAGE_KEYS),
            Some("default-features")
        );
        assert_eq!(nearest("User", IMAGE_KEYS), Some("user"));
        assert_eq!(nearest("platform", IMAGE_KEYS), Some("platforms"));
        assert_eq!(nearest("colour", IMAGE_KEYS), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
