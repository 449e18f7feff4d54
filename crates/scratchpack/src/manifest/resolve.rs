//! Resolution of the raw manifest against the workspace into a [`Plan`]:
//! defaults applied, every value parsed into its type, every problem collected
//! with the place it was written (README's images.toml reference).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Component, Path, PathBuf};

use super::TagInputs;
use super::os_files;
use super::plan::*;
use super::raw::{
    DEFAULTS_ONLY_KEYS, IMAGE_ONLY_KEYS, RawConfigCheck, RawEpoch, RawImage, RawManifest, RawMode,
    RawOutput, RawTest, RawUnpackLimits, S, STRUCTURE_KEYS,
};
use super::tags::{Rendered, TagTemplate};
use crate::diagnostic::Diagnostic;
use crate::oci::Compression;
use crate::platform::Platform;
use crate::toolchain::workspace::Workspace;

mod binaries;
mod registry;
mod release;
mod service_tables;
mod test_tables;
mod values;

#[cfg(target_os = "linux")]
pub(crate) use values::parse_user;
use values::{SIGNALS, invalid_image_name, invalid_triple, triple_machine};

/// Profiles every cargo has, whatever Cargo.toml says.
const BUILTIN_PROFILES: &[&str] = &["dev", "release", "test", "bench"];

/// The latest time a ustar header's 11 octal digits hold (in 2242).
pub const LATEST_EPOCH: u64 = 0o77_777_777_777;

pub(crate) fn resolve(
    raw: RawManifest,
    text_len: usize,
    workspace: &Workspace,
    tags: TagInputs<'_>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Plan {
    let mut r = Resolver {
        workspace,
        canonical_root: workspace.root.canonicalize().ok(),
        tag_inputs: tags,
        skipped: BTreeMap::new(),
        diagnostics,
    };
    r.resolve(raw, text_len)
}

struct Resolver<'w> {
    workspace: &'w Workspace,
    /// The workspace root with its own symlinks resolved, which every `src`
    /// must stay under once its symlinks are resolved too.
    canonical_root: Option<PathBuf>,
    tag_inputs: TagInputs<'w>,
    /// Tag templates skipped for want of a value, with why, and the images
    /// they were skipped for.
    skipped: BTreeMap<(String, String), Vec<String>>,
    diagnostics: &'w mut Vec<Diagnostic>,
}

/// A key and its string value in a TOML table, as written.
type StringPair = (S<String>, S<String>);

/// What an image holds besides its binary, and the labels the files
/// scratchpack writes add.
struct Contents {
    files: Vec<FileEntry>,
    dirs: Vec<DirEntry>,
    volumes: BTreeSet<ImagePath>,
    labels: BTreeMap<String, String>,
}

/// Why `path` cannot be a volume, if it cannot.
fn volume_refusal(path: &ImagePath) -> Option<&'static str> {
    let top = path.relative().split('/').next().unwrap_or_default();
    if path.is_root() {
        Some("the root cannot be a volume")
    } else if top == "proc" || top == "dev" {
        Some("runtimes mount their own `/proc` and `/dev`")
    } else if top == "tmp" && path.as_str() != "/tmp" {
        Some("the test sandbox and `run` mount a tmpfs on `/tmp`, which hides it")
    } else {
        None
    }
}

/// The most volumes an image may have: the test sandbox mounts a tmpfs on
/// each and refuses more (`sandbox::setup::MAX_VOLUMES`).
pub(crate) const MAX_VOLUMES: usize = 64;

/// The paths an image's entries take, each with what took it (for the
/// message of a collision), and where the user's entries were written.
#[derive(Default)]
struct Taken {
    paths: BTreeMap<ImagePath, String>,
    spans: Vec<(ImagePath, Range<usize>)>,
}

fn span_of<T>(s: &S<T>) -> Range<usize> {
    s.span()
}

fn quoted_list<'a>(items: impl IntoIterator<Item = &'a String>) -> String {
    let list: Vec<String> = items.into_iter().map(|s| format!("`{s}`")).collect();
    if list.is_empty() {
        "none".to_owned()
    } else {
        list.join(", ")
    }
}

fn strings(v: &S<Vec<S<String>>>) -> Vec<String> {
    v.get_ref().iter().map(|s| s.get_ref().clone()).collect()
}

impl Resolver<'_> {
    fn error(&mut self, d: Diagnostic) {
        self.diagnostics.push(d);
    }

    fn resolve(&mut self, raw: RawManifest, text_len: usize) -> Plan {
        let defaults = raw.defaults.unwrap_or_default();
        for (key, span) in &defaults.keys {
            if IMAGE_ONLY_KEYS.contains(key) {
                self.error(
                    Diagnostic::new(format!("`{key}` cannot be set in [defaults]"), span.clone())
                        .label("set it per image")
                        .help(format!("move `{key}` into each [images.<name>] table")),
                );
            }
        }
        let source_date_epoch = defaults
            .source_date_epoch
            .as_ref()
            .and_then(|e| self.epoch(e));
        let cache = defaults.cache.as_ref().and_then(|c| self.cache(c));
        let cache_keys = self.cache_keys(&defaults);
        let registry_limits = self.registry_limits(defaults.registry_limits.as_ref());
        let c_compiler = defaults
            .c_compiler
            .as_ref()
            .map_or(CCompiler::ZigWhenNeeded, |c| self.c_compiler(c));
        if !raw.declares_images {
            self.error(
                Diagnostic::new("no images are declared", 0..text_len.min(1))
                    .help("declare one with an `[images.<name>]` table naming a `package`"),
            );
        }
        let mut images = Vec::new();
        for (name, image) in &raw.images {
            for (key, span) in &image.keys {
                if DEFAULTS_ONLY_KEYS.contains(key) {
                    self.error(
                        Diagnostic::new(
                            format!("`{key}` can only be set in [defaults]"),
                            span.clone(),
                        )
                        .label("one setting for every image")
                        .help(format!("move `{key}` into [defaults]")),
                    );
                }
            }
            if let Some(problem) = invalid_image_name(name.get_ref()) {
                self.error(
                    Diagnostic::new(
                        format!("invalid image name `{}`: {problem}", name.get_ref()),
                        span_of(name),
                    )
                    .help("image names use lowercase letters, digits, `.`, `_` and `-`"),
                );
                continue;
            }
            if let Some(plan) = self.image(name.get_ref(), span_of(name), image, &defaults) {
                images.push(plan);
            }
        }
        let notices = std::mem::take(&mut self.skipped)
            .into_iter()
            .map(|((template, why), images)| {
                format!(
                    "tag `{template}` of {} ({why})",
                    images
                        .iter()
                        .map(|i| format!("`{i}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
            .collect();
        Plan {
            workspace_root: self.workspace.root.clone(),
            target_dir: self.workspace.target_dir.clone(),
            images,
            source_date_epoch,
            cache,
            cache_keys,
            registry_limits,
            notices,
            c_compiler,
        }
    }

    fn c_compiler(&mut self, c: &S<String>) -> CCompiler {
        match c.get_ref().as_str() {
            "zig" => CCompiler::Zig,
            "none" => CCompiler::None,
            other => {
                self.error(
                    Diagnostic::new(
                        format!("`c-compiler` is `{other}`, neither `\"zig\"` nor `\"none\"`"),
                        span_of(c),
                    )
                    .label("expected `\"zig\"` or `\"none\"`")
                    .help(
                        "leave the key out to compile C with zig when a crate needs it; \
                         `\"none\"` leaves C to the compilers CC_<triple> names",
                    ),
                );
                CCompiler::ZigWhenNeeded
            }
        }
    }

    fn cache(&mut self, c: &S<String>) -> Option<crate::registry::Repository> {
        match crate::registry::Repository::parse(c.get_ref()) {
            Ok(repo) => Some(repo),
            Err(e) => {
                self.error(
                    Diagnostic::new(format!("invalid `cache`: {e}"), span_of(c))
                        .label("not a registry repository")
                        .help("name a repository with its registry, e.g. `ghcr.io/team/cache`"),
                );
                None
            }
        }
    }

    fn epoch(&mut self, e: &S<RawEpoch>) -> Option<ManifestEpoch> {
        match e.get_ref() {
            RawEpoch::Word(w) if w == "git" => Some(ManifestEpoch::Git),
            RawEpoch::Seconds(s) if (0..=LATEST_EPOCH as i64).contains(s) => {
                Some(ManifestEpoch::Seconds(*s as u64))
            }
            RawEpoch::Seconds(_) => {
                self.error(
                    Diagnostic::new("`source-date-epoch` is out of range", span_of(e))
                        .label(format!("seconds from 0 to {LATEST_EPOCH}"))
                        .help("a layer's tar headers record times up to the year 2242"),
                );
                None
            }
            RawEpoch::Word(w) => {
                self.error(
                    Diagnostic::new(
                        format!("`source-date-epoch` is `{w}`, neither `\"git\"` nor a number"),
                        span_of(e),
                    )
                    .label("expected `\"git\"` or a number of seconds")
                    .help("`\"git\"` takes the time of the workspace's last commit"),
                );
                None
            }
        }
    }

    /// The package and binary an image ships, when both are known.
    fn package_and_bin(
        &mut self,
        name: &str,
        name_span: Range<usize>,
        raw: &RawImage,
    ) -> Option<(S<String>, String)> {
        let Some(package) = &raw.package else {
            self.error(
                Diagnostic::new(format!("image `{name}` names no `package`"), name_span)
                    .label("missing `package`")
                    .help(format!(
                        "workspace packages with binaries: {}",
                        self.packages_with_bins()
                    )),
            );
            return None;
        };
        let Some(bins) = self.workspace.packages.get(package.get_ref()) else {
            self.error(
                Diagnostic::new(
                    format!(
                        "package `{}` is not a member of the workspace",
                        package.get_ref()
                    ),
                    span_of(package),
                )
                .label("no such package")
                .help(format!(
                    "workspace packages with binaries: {}",
                    self.packages_with_bins()
                )),
            );
            return None;
        };
        let bin = match &raw.bin {
            Some(bin) if bins.contains(bin.get_ref()) => bin.get_ref().clone(),
            Some(bin) => {
                self.error(
                    Diagnostic::new(
                        format!(
                            "package `{}` has no binary `{}`",
                            package.get_ref(),
                            bin.get_ref()
                        ),
                        span_of(bin),
                    )
                    .label("no such binary")
                    .help(format!(
                        "binaries of `{}`: {}",
                        package.get_ref(),
                        quoted_list(bins)
                    )),
                );
                return None;
            }
            None => match bins.as_slice() {
                [only] => only.clone(),
                [] => {
                    self.error(
                        Diagnostic::new(
                            format!("package `{}` has no binary target", package.get_ref()),
                            span_of(package),
                        )
                        .label("nothing to put in an image")
                        .help(format!(
                            "workspace packages with binaries: {}",
                            self.packages_with_bins()
                        )),
                    );
                    return None;
                }
                _ => {
                    self.error(
                        Diagnostic::new(
                            format!(
                                "package `{}` has several binaries; name one with `bin`",
                                package.get_ref()
                            ),
                            span_of(package),
                        )
                        .label("which binary?")
                        .help(format!(
                            "binaries of `{}`: {}",
                            package.get_ref(),
                            quoted_list(bins)
                        )),
                    );
                    return None;
                }
            },
        };
        Some((package.clone(), bin))
    }

    fn image(
        &mut self,
        name: &str,
        name_span: Range<usize>,
        raw: &RawImage,
        defaults: &RawImage,
    ) -> Option<ImagePlan> {
        let errors_before = self.diagnostics.len();

        // Package and binary. Without them the rest is still checked, so
        // that every problem of the image is reported in this run.
        let chosen = self.package_and_bin(name, name_span.clone(), raw);

        let targets = self.targets(raw, defaults);
        let member = raw
            .package
            .as_ref()
            .filter(|p| self.workspace.packages.contains_key(p.get_ref()));
        let build = self.build_settings(member, raw, defaults);
        let bin = chosen.as_ref().map(|(_, bin)| bin.as_str());
        let binary_path = self.binary_path(raw, &name_span, bin);
        let binaries = self.binaries(name, raw, chosen.as_ref(), binary_path.as_ref(), &build);

        // The user is the run configuration's, and `passwd` names it too.
        let user = raw
            .user
            .as_ref()
            .or(defaults.user.as_ref())
            .and_then(|u| self.user(u))
            .unwrap_or(DEFAULT_USER);
        let binary_paths: Vec<(&ImagePath, String)> = binary_path
            .iter()
            .map(|p| (p, "the binary".to_owned()))
            .chain(
                binaries
                    .iter()
                    .map(|b| (&b.path, format!("the binary `{}` from `binaries`", b.bin))),
            )
            .collect();
        let contents = self.contents(name, &name_span, raw, defaults, &binary_paths, user);
        let mut config =
            self.run_config(raw, defaults, binary_path.as_ref(), user, contents.labels);
        config.volumes = contents.volumes;
        self.workdir_outside_volumes(&config, raw, defaults);
        let compression = self.compression(raw, defaults);
        let annotations = self.string_table(
            "annotation",
            defaults.annotations.as_ref(),
            raw.annotations.as_ref(),
        );
        let version = member
            .and_then(|p| self.workspace.versions.get(p.get_ref()))
            .cloned()
            .unwrap_or_default();
        let tags = self.tags(name, raw.tags.as_ref().or(defaults.tags.as_ref()), &version);
        let push = self.push(name, raw, defaults);
        let release = self.release(raw, defaults);

        let mut tests = Vec::new();
        for (test_name, test) in raw.tests.iter().flatten() {
            if let Some(t) = self.test(test_name, test, binary_path.as_ref()) {
                tests.push(t);
            }
        }

        if self.diagnostics.len() > errors_before {
            return None;
        }
        let ((package, bin), binary_path) = chosen.zip(binary_path)?;
        Some(ImagePlan {
            name: name.to_owned(),
            package: package.get_ref().clone(),
            bin,
            version,
            binaries,
            targets,
            build,
            binary_path,
            files: contents.files,
            dirs: contents.dirs,
            config,
            annotations,
            compression,
            source_annotations: raw
                .source_annotations
                .as_ref()
                .or(defaults.source_annotations.as_ref())
                .is_none_or(|s| *s.get_ref()),
            tags,
            push,
            release,
            tests,
            test_settings: TestSettings {
                unpack_limits: self
                    .unpack_limits(raw.unpack_limits.as_ref(), defaults.unpack_limits.as_ref()),
                require_all_platforms: raw
                    .require_all_platforms
                    .as_ref()
                    .or(defaults.require_all_platforms.as_ref())
                    .is_some_and(|b| *b.get_ref()),
            },
        })
    }

    /// Where the binary goes: `binary-path`, else `/<bin>` once the binary
    /// is known.
    fn binary_path(
        &mut self,
        raw: &RawImage,
        name_span: &Range<usize>,
        bin: Option<&str>,
    ) -> Option<ImagePath> {
        let binary_path = match &raw.binary_path {
            Some(p) => self.image_path(p, "binary-path"),
            None => bin.map(|bin| {
                ImagePath::parse(&format!("/{bin}")).expect("a binary name is one component")
            }),
        };
        if binary_path.as_ref().is_some_and(ImagePath::is_root) {
            let p = raw.binary_path.as_ref().map_or(name_span.clone(), span_of);
            self.error(Diagnostic::new("`binary-path` cannot be `/`", p).label("not a file path"));
        }
        binary_path
    }

    /// Everything in the image besides its binary: the files scratchpack
    /// writes, then `files` and `dirs`, every path taken once, and no entry
    /// inside a file.
    fn contents(
        &mut self,
        name: &str,
        name_span: &Range<usize>,
        raw: &RawImage,
        defaults: &RawImage,
        binary_paths: &[(&ImagePath, String)],
        user: User,
    ) -> Contents {
        let mut taken = Taken::default();
        for (path, what) in binary_paths {
            taken.paths.insert((*path).clone(), what.clone());
        }
        // Files scratchpack writes itself come first, so a `files` entry
        // with the same destination is named as the one that collides.
        let (mut files, labels) = self.generated_files(name, raw, defaults, user, &mut taken);
        files.extend(self.listed_files(name, raw, defaults, &mut taken));
        let mut dirs = self.listed_dirs(name, raw, defaults, &mut taken);
        let volumes = self.volumes(name, raw, defaults, &mut taken, &mut dirs);
        let binary_paths: Vec<&ImagePath> = binary_paths.iter().map(|(p, _)| *p).collect();
        self.inside_files(name, name_span, &binary_paths, &files, &taken);
        Contents {
            files,
            dirs,
            volumes,
            labels,
        }
    }

    /// The files `ca-certificates = true` and `passwd = true` write, and the
    /// label that says which roots the bundle holds.
    fn generated_files(
        &mut self,
        name: &str,
        raw: &RawImage,
        defaults: &RawImage,
        user: User,
        taken: &mut Taken,
    ) -> (Vec<FileEntry>, BTreeMap<String, String>) {
        let mut files = Vec::new();
        let mut labels = BTreeMap::new();
        let ca = raw
            .ca_certificates
            .as_ref()
            .or(defaults.ca_certificates.as_ref());
        if let Some(ca) = ca.filter(|c| *c.get_ref()) {
            let dst = ImagePath::parse(os_files::CA_BUNDLE_PATH).expect("a valid constant path");
            self.generated_collides(name, &taken.paths, &dst, "ca-certificates", span_of(ca));
            taken.paths.insert(
                dst.clone(),
                "the bundle `ca-certificates = true` writes".to_owned(),
            );
            files.push(FileEntry {
                src: FileSource::Generated(os_files::ca_bundle()),
                dst,
                mode: 0o444,
            });
            labels.insert(
                os_files::CA_VERSION_LABEL.to_owned(),
                os_files::CA_VERSION.to_owned(),
            );
        }
        let passwd = raw.passwd.as_ref().or(defaults.passwd.as_ref());
        if let Some(span) = passwd.filter(|p| *p.get_ref()).map(span_of) {
            let (passwd, group) = os_files::passwd(user);
            for (path, bytes) in [
                (os_files::PASSWD_PATH, passwd),
                (os_files::GROUP_PATH, group),
            ] {
                let dst = ImagePath::parse(path).expect("a valid constant path");
                self.generated_collides(name, &taken.paths, &dst, "passwd", span.clone());
                taken.paths.insert(
                    dst.clone(),
                    format!("the `{path}` that `passwd = true` writes"),
                );
                files.push(FileEntry {
                    src: FileSource::Generated(bytes),
                    dst,
                    mode: 0o444,
                });
            }
        }
        (files, labels)
    }

    /// The `files` of `[defaults]` and of the image, copied from the host.
    fn listed_files(
        &mut self,
        name: &str,
        raw: &RawImage,
        defaults: &RawImage,
        taken: &mut Taken,
    ) -> Vec<FileEntry> {
        let mut files = Vec::new();
        for f in [defaults.files.as_ref(), raw.files.as_ref()]
            .into_iter()
            .flatten()
            .flatten()
        {
            let Some(dst) = self.image_path(&f.dst, "dst") else {
                continue;
            };
            if dst.is_root() {
                self.error(Diagnostic::new("`dst` cannot be `/`", span_of(&f.dst)));
                continue;
            }
            if let Some(what) = taken.paths.get(&dst) {
                self.error(
                    Diagnostic::new(
                        format!("`{dst}` collides with {what} in image `{name}`"),
                        span_of(&f.dst),
                    )
                    .label("already in the image")
                    .help("give every file its own path in the image"),
                );
                continue;
            }
            let Some(src) = self.source_file(&f.src) else {
                continue;
            };
            let mode = self.mode(f.mode.as_ref(), 0o644);
            taken
                .paths
                .insert(dst.clone(), "a file from `files`".to_owned());
            taken.spans.push((dst.clone(), span_of(&f.dst)));
            files.push(FileEntry {
                src: FileSource::Host(src),
                dst,
                mode,
            });
        }
        files
    }

    /// The `dirs` of `[defaults]` and of the image.
    fn listed_dirs(
        &mut self,
        name: &str,
        raw: &RawImage,
        defaults: &RawImage,
        taken: &mut Taken,
    ) -> Vec<DirEntry> {
        let mut dirs = Vec::new();
        for d in [defaults.dirs.as_ref(), raw.dirs.as_ref()]
            .into_iter()
            .flatten()
            .flatten()
        {
            let Some(path) = self.image_path(&d.path, "path") else {
                continue;
            };
            if path.is_root() {
                self.error(
                    Diagnostic::new("`path` cannot be `/`", span_of(&d.path))
                        .label("the root is always there"),
                );
                continue;
            }
            if let Some(what) = taken.paths.get(&path) {
                self.error(
                    Diagnostic::new(
                        format!("`{path}` collides with {what} in image `{name}`"),
                        span_of(&d.path),
                    )
                    .label("already in the image"),
                );
                continue;
            }
            let mode = self.mode(d.mode.as_ref(), 0o755);
            taken
                .paths
                .insert(path.clone(), "a directory from `dirs`".to_owned());
            taken.spans.push((path.clone(), span_of(&d.path)));
            dirs.push(DirEntry { path, mode });
        }
        dirs
    }

    /// The `volumes` of `[defaults]` and of the image: directories where the
    /// program writes, each a directory of the image of mode 1777 (a `dirs`
    /// entry may list it, with no other mode), holding nothing of the
    /// image, since a runtime mounts a volume over it.
    fn volumes(
        &mut self,
        name: &str,
        raw: &RawImage,
        defaults: &RawImage,
        taken: &mut Taken,
        dirs: &mut Vec<DirEntry>,
    ) -> BTreeSet<ImagePath> {
        let mut volumes: BTreeMap<ImagePath, Range<usize>> = BTreeMap::new();
        for v in [defaults.volumes.as_ref(), raw.volumes.as_ref()]
            .into_iter()
            .flatten()
            .flat_map(|v| v.get_ref())
        {
            let Some(path) = self.image_path(v, "volumes") else {
                continue;
            };
            let span = span_of(v);
            if let Some(why) = volume_refusal(&path) {
                self.error(
                    Diagnostic::new(format!("`{path}` cannot be a volume"), span)
                        .label(why)
                        .help("name a directory of the image, such as `/data`"),
                );
                continue;
            }
            if let Some(outer) = volumes.keys().find(|o| {
                path.ancestors().any(|a| a == o.relative())
                    || o.ancestors().any(|a| a == path.relative())
            }) {
                self.error(
                    Diagnostic::new(format!("volumes `{outer}` and `{path}` are nested"), span)
                        .label("a volume inside another"),
                );
                continue;
            }
            if volumes.contains_key(&path) {
                continue;
            }
            match taken.paths.get(&path) {
                Some(what) if what.starts_with("a directory") => {
                    // What a runtime copies into a new volume is the mode
                    // the test sandbox's tmpfs has: they must agree.
                    let mode = dirs.iter().find(|d| d.path == path).map(|d| d.mode);
                    if let Some(mode) = mode.filter(|m| *m != 0o1777) {
                        self.error(
                            Diagnostic::new(
                                format!("volume `{path}` has mode {mode:04o} in `dirs`"),
                                span,
                            )
                            .label("a volume's directory is mode 1777")
                            .help(
                                "tests mount an empty tmpfs of mode 1777 there, and a runtime \
                                 gives a new volume its directory's mode: leave the mode out \
                                 of `dirs`, or give it \"1777\"",
                            ),
                        );
                        continue;
                    }
                }
                Some(what) => {
                    self.error(
                        Diagnostic::new(
                            format!("volume `{path}` collides with {what} in image `{name}`"),
                            span,
                        )
                        .label("a volume is a directory"),
                    );
                    continue;
                }
                None => {
                    taken
                        .paths
                        .insert(path.clone(), "a directory of `volumes`".to_owned());
                    taken.spans.push((path.clone(), span.clone()));
                    dirs.push(DirEntry {
                        path: path.clone(),
                        mode: 0o1777,
                    });
                }
            }
            volumes.insert(path, span);
        }
        if volumes.len() > MAX_VOLUMES {
            let list = raw.volumes.as_ref().or(defaults.volumes.as_ref());
            if let Some(list) = list {
                self.error(
                    Diagnostic::new(
                        format!("{} volumes, more than {MAX_VOLUMES}", volumes.len()),
                        span_of(list),
                    )
                    .label("each is a tmpfs of its own in the test sandbox"),
                );
            }
        }
        self.inside_volumes(name, &volumes, taken);
        volumes.into_keys().collect()
    }

    /// A runtime mounts an empty volume over the directory: anything the
    /// image puts inside would be hidden.
    fn inside_volumes(
        &mut self,
        name: &str,
        volumes: &BTreeMap<ImagePath, Range<usize>>,
        taken: &Taken,
    ) {
        for (path, what) in &taken.paths {
            if let Some((volume, span)) = volumes
                .iter()
                .find(|(v, _)| path.ancestors().any(|a| a == v.relative()))
            {
                self.error(
                    Diagnostic::new(
                        format!(
                            "`{path}` ({what}) is inside the volume `{volume}` of image `{name}`"
                        ),
                        span.clone(),
                    )
                    .label("an empty volume is mounted here")
                    .help("put the entry outside the volume, or write it when the program starts"),
                );
            }
        }
    }

    /// A working directory inside a volume does not exist when the program
    /// starts: the volume mounted there is empty.
    fn workdir_outside_volumes(&mut self, config: &RunConfig, raw: &RawImage, defaults: &RawImage) {
        let workdir = &config.workdir;
        let Some(volume) = config
            .volumes
            .iter()
            .find(|v| workdir.ancestors().any(|a| a == v.relative()))
        else {
            return;
        };
        if let Some(w) = raw.workdir.as_ref().or(defaults.workdir.as_ref()) {
            self.error(
                Diagnostic::new(
                    format!("`workdir` `{workdir}` is inside the volume `{volume}`"),
                    span_of(w),
                )
                .label("an empty volume is mounted there")
                .help("use the volume itself, or a directory outside it"),
            );
        }
    }

    /// A file cannot also be the parent of another entry.
    fn inside_files(
        &mut self,
        name: &str,
        name_span: &Range<usize>,
        binary_paths: &[&ImagePath],
        files: &[FileEntry],
        taken: &Taken,
    ) {
        let file_paths: BTreeSet<&str> = binary_paths
            .iter()
            .map(|p| p.relative())
            .chain(files.iter().map(|f| f.dst.relative()))
            .collect();
        for path in taken.paths.keys() {
            if let Some(parent) = path.ancestors().find(|a| file_paths.contains(a)) {
                let span = taken
                    .spans
                    .iter()
                    .find(|(p, _)| p == path)
                    .map_or(name_span.clone(), |(_, s)| s.clone());
                self.error(
                    Diagnostic::new(
                        format!("`{path}` would be inside `/{parent}`, which is a file in image `{name}`"),
                        span,
                    )
                    .label("parent is a file"),
                );
            }
        }
    }

    /// How the image runs: entrypoint, cmd, env, user, workdir, ports, stop
    /// signal and labels (the user's, under those scratchpack sets, which
    /// win so that what they say about the image stays true).
    fn run_config(
        &mut self,
        raw: &RawImage,
        defaults: &RawImage,
        binary_path: Option<&ImagePath>,
        user: User,
        generated_labels: BTreeMap<String, String>,
    ) -> RunConfig {
        let entrypoint = match &raw.entrypoint {
            Some(e) if e.get_ref().is_empty() => {
                self.error(
                    Diagnostic::new("`entrypoint` is empty", span_of(e))
                        .help("leave it out to run the binary"),
                );
                Vec::new()
            }
            Some(e) => {
                self.no_nul("`entrypoint`", e.get_ref());
                strings(e)
            }
            None => binary_path.iter().map(|b| b.as_str().to_owned()).collect(),
        };
        let cmd = raw.cmd.as_ref().or(defaults.cmd.as_ref());
        if let Some(c) = cmd {
            self.no_nul("`cmd`", c.get_ref());
        }
        let cmd = cmd.map(strings).unwrap_or_default();
        let mut env = BTreeMap::new();
        for (key, value) in [defaults.env.as_ref(), raw.env.as_ref()]
            .into_iter()
            .flatten()
            .flatten()
        {
            if self.env_var(key, value) {
                env.insert(key.get_ref().clone(), value.get_ref().clone());
            }
        }
        let workdir = match raw.workdir.as_ref().or(defaults.workdir.as_ref()) {
            Some(w) => self.image_path(w, "workdir").unwrap_or(ImagePath::root()),
            None => ImagePath::root(),
        };
        let mut exposed_ports = BTreeSet::new();
        for port in [defaults.ports.as_ref(), raw.ports.as_ref()]
            .into_iter()
            .flatten()
            .flat_map(|p| p.get_ref())
        {
            if let Some(p) = self.port(port) {
                exposed_ports.insert(p);
            }
        }
        let stop_signal = match raw.stop_signal.as_ref().or(defaults.stop_signal.as_ref()) {
            Some(s) if SIGNALS.contains(&s.get_ref().as_str()) => Some(s.get_ref().clone()),
            Some(s) => {
                self.error(
                    Diagnostic::new(format!("unknown signal `{}`", s.get_ref()), span_of(s))
                        .help(format!("signals: {}", SIGNALS.join(", "))),
                );
                None
            }
            None => None,
        };
        let mut labels = self.string_table("label", defaults.labels.as_ref(), raw.labels.as_ref());
        labels.extend(generated_labels);
        RunConfig {
            entrypoint,
            cmd,
            env,
            user,
            workdir,
            labels,
            exposed_ports,
            stop_signal,
            volumes: BTreeSet::new(),
        }
    }

    fn compression(&mut self, raw: &RawImage, defaults: &RawImage) -> Compression {
        let Some(c) = raw.compression.as_ref().or(defaults.compression.as_ref()) else {
            return Compression::default();
        };
        match Compression::parse(c.get_ref()) {
            #[cfg(not(feature = "zstd"))]
            Some(Compression::Zstd) => {
                self.error(
                    Diagnostic::new("zstd layers are not built into this xtask", span_of(c)).help(
                        "add `features = [\"zstd\"]` to the scratchpack dependency in \
                         the xtask's Cargo.toml, or use `gzip`",
                    ),
                );
                Compression::default()
            }
            Some(known) => known,
            None => {
                self.error(
                    Diagnostic::new(format!("unknown compression `{}`", c.get_ref()), span_of(c))
                        .help(format!("compressions: {}", Compression::NAMES.join(", "))),
                );
                Compression::default()
            }
        }
    }

    /// Labels or annotations (`what`): those of `[defaults]`, then the
    /// image's over them, none holding a NUL byte.
    fn string_table(
        &mut self,
        what: &str,
        shared: Option<&Vec<StringPair>>,
        own: Option<&Vec<StringPair>>,
    ) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (k, v) in [shared, own].into_iter().flatten().flatten() {
            let mut ok = true;
            for s in [k, v] {
                if s.get_ref().contains('\0') {
                    ok = false;
                    self.error(
                        Diagnostic::new(
                            format!(
                                "{what} `{}` contains a NUL byte",
                                k.get_ref().escape_debug()
                            ),
                            span_of(s),
                        )
                        .label("not representable in an image"),
                    );
                }
            }
            if ok {
                out.insert(k.get_ref().clone(), v.get_ref().clone());
            }
        }
        out
    }

    /// The `unpack-limits` of an image over those of `[defaults]`, key by key.
    fn unpack_limits(
        &mut self,
        own: Option<&S<RawUnpackLimits>>,
        shared: Option<&S<RawUnpackLimits>>,
    ) -> UnpackLimitKeys {
        let own = own.map(|l| l.get_ref());
        let shared = shared.map(|l| l.get_ref());
        let mut pick = |get: fn(&RawUnpackLimits) -> Option<&S<i64>>| {
            let v = own.and_then(get).or_else(|| shared.and_then(get))?;
            match u64::try_from(*v.get_ref()) {
                Ok(n) if n > 0 => Some(n),
                _ => {
                    self.error(
                        Diagnostic::new("invalid unpack limit", span_of(v))
                            .label("a limit is at least 1"),
                    );
                    None
                }
            }
        };
        UnpackLimitKeys {
            max_bytes: pick(|l| l.max_bytes.as_ref()),
            max_entries: pick(|l| l.max_entries.as_ref()),
            max_depth: pick(|l| l.max_depth.as_ref()),
            max_name_bytes: pick(|l| l.max_name_bytes.as_ref()),
        }
    }

    /// A file scratchpack writes cannot take the place of the binary.
    fn generated_collides(
        &mut self,
        name: &str,
        taken: &BTreeMap<ImagePath, String>,
        dst: &ImagePath,
        key: &str,
        span: Range<usize>,
    ) {
        if let Some(what) = taken.get(dst) {
            self.error(
                Diagnostic::new(
                    format!("`{key} = true` writes `{dst}`, which collides with {what} in image `{name}`"),
                    span,
                )
                .label("already in the image")
                .help("give the binary another `binary-path`"),
            );
        }
    }

    fn targets(&mut self, raw: &RawImage, defaults: &RawImage) -> Vec<PlatformTarget> {
        let platforms = raw.platforms.as_ref().or(defaults.platforms.as_ref());
        let mut chosen = Vec::new();
        match platforms {
            None => chosen.push(Platform::LinuxAmd64),
            Some(list) => {
                if list.get_ref().is_empty() {
                    self.error(Diagnostic::new("`platforms` is empty", span_of(list)).help(
                        format!("supported platforms: {}", Platform::supported_list()),
                    ));
                }
                for p in list.get_ref() {
                    match Platform::parse(p.get_ref()) {
                        Some(platform) if chosen.contains(&platform) => self.error(
                            Diagnostic::new(
                                format!("platform `{platform}` is listed twice"),
                                span_of(p),
                            )
                            .label("duplicate"),
                        ),
                        Some(platform) => chosen.push(platform),
                        None => self.error(
                            Diagnostic::new(
                                format!("unsupported platform `{}`", p.get_ref()),
                                span_of(p),
                            )
                            .label("not supported")
                            .help(format!(
                                "supported platforms: {}",
                                Platform::supported_list()
                            )),
                        ),
                    }
                }
            }
        }
        let mut overrides: BTreeMap<Platform, String> = BTreeMap::new();
        for (platform, triple) in [defaults.targets.as_ref(), raw.targets.as_ref()]
            .into_iter()
            .flatten()
            .flatten()
        {
            let Some(p) = Platform::parse(platform.get_ref()) else {
                self.error(
                    Diagnostic::new(
                        format!("unsupported platform `{}` in `targets`", platform.get_ref()),
                        span_of(platform),
                    )
                    .help(format!(
                        "supported platforms: {}",
                        Platform::supported_list()
                    )),
                );
                continue;
            };
            if self.triple(p, triple) {
                overrides.insert(p, triple.get_ref().clone());
            }
        }
        chosen
            .into_iter()
            .map(|platform| PlatformTarget {
                platform,
                triple: overrides
                    .get(&platform)
                    .cloned()
                    .unwrap_or_else(|| platform.default_triple().to_owned()),
            })
            .collect()
    }

    /// Whether `triple` is a target rustc knows that builds for `platform`.
    fn triple(&mut self, platform: Platform, triple: &S<String>) -> bool {
        let t = triple.get_ref();
        if invalid_triple(t) {
            self.error(
                Diagnostic::new(format!("`{t}` is not a target triple"), span_of(triple))
                    .help(format!("for example `{}`", platform.default_triple())),
            );
            return false;
        }
        if let Some(known) = self.workspace.target_list()
            && !known.contains(t)
        {
            self.error(
                Diagnostic::new(format!("rustc knows no target `{t}`"), span_of(triple))
                    .label("unknown target")
                    .help(format!(
                        "`rustc --print target-list` lists the targets; for {platform}, `{}`",
                        platform.default_triple()
                    )),
            );
            return false;
        }
        if let Some((arch, machine)) = triple_machine(t)
            && machine != platform.elf_machine().machine
        {
            self.error(
                Diagnostic::new(
                    format!("target `{t}` builds for {arch}, not for {platform}"),
                    span_of(triple),
                )
                .label("wrong architecture")
                .help(format!(
                    "for {platform}, use e.g. `{}`",
                    platform.default_triple()
                )),
            );
            return false;
        }
        true
    }

    fn build_settings(
        &mut self,
        package: Option<&S<String>>,
        raw: &RawImage,
        defaults: &RawImage,
    ) -> BuildSettings {
        let profile = raw.profile.as_ref().or(defaults.profile.as_ref());
        if let Some(p) = profile {
            let name = p.get_ref();
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                self.error(
                    Diagnostic::new(format!("invalid profile name `{name}`"), span_of(p))
                        .help("use a cargo profile such as `release` or one from [profile.*]"),
                );
            } else if self.workspace.profiles.get(name) == Some(&false)
                && !BUILTIN_PROFILES.contains(&name.as_str())
            {
                self.error(
                    Diagnostic::new(
                        format!("profile `{name}` has no `inherits` in the workspace's Cargo.toml"),
                        span_of(p),
                    )
                    .label("cargo cannot build with it")
                    .help(format!(
                        "add `inherits = \"release\"` (or another profile) to [profile.{name}]"
                    )),
                );
            } else if !BUILTIN_PROFILES.contains(&name.as_str())
                && !self.workspace.profiles.contains_key(name)
            {
                let mut known: Vec<String> =
                    BUILTIN_PROFILES.iter().map(|s| (*s).to_owned()).collect();
                known.extend(
                    self.workspace
                        .profiles
                        .keys()
                        .filter(|p| !BUILTIN_PROFILES.contains(&p.as_str()))
                        .cloned(),
                );
                self.error(
                    Diagnostic::new(format!("profile `{name}` does not exist"), span_of(p))
                        .label("no such profile")
                        .help(format!(
                            "profiles: {}; add others as [profile.{name}] with `inherits` in the workspace's Cargo.toml",
                            quoted_list(&known)
                        )),
                );
            }
        }
        let features = raw.features.as_ref().or(defaults.features.as_ref());
        if let Some(package) = package {
            for f in features.iter().flat_map(|f| f.get_ref()) {
                self.feature(package.get_ref(), f);
            }
        }
        BuildSettings {
            profile: profile.map_or_else(|| "release".to_owned(), |p| p.get_ref().clone()),
            rustflags: raw
                .rustflags
                .as_ref()
                .or(defaults.rustflags.as_ref())
                .map(strings)
                .unwrap_or_default(),
            features: features.map(strings).unwrap_or_default(),
            default_features: raw
                .default_features
                .as_ref()
                .or(defaults.default_features.as_ref())
                .is_none_or(|d| *d.get_ref()),
            auditable: raw
                .auditable
                .as_ref()
                .or(defaults.auditable.as_ref())
                .is_none_or(|a| *a.get_ref()),
        }
    }

    /// Checks one `features` entry as cargo's `--features` would read it.
    fn feature(&mut self, package: &str, raw: &S<String>) {
        let Some(known) = self.workspace.features.get(package) else {
            return;
        };
        let deps = self.workspace.dependencies.get(package);
        for f in raw.get_ref().split([',', ' ']).filter(|f| !f.is_empty()) {
            let problem = if f.starts_with("dep:") {
                Some((
                    format!(
                        "feature `{f}` uses `dep:`, which cargo accepts only inside Cargo.toml"
                    ),
                    format!("name the feature of `{package}` that enables the dependency"),
                ))
            } else if let Some((dep, _)) = f.split_once('/') {
                let dep = dep.trim_end_matches('?');
                let is_dep = dep == package || deps.is_some_and(|d| d.contains(dep));
                (!is_dep).then(|| {
                    (
                        format!(
                            "feature `{f}` names `{dep}`, which is not a dependency of `{package}`"
                        ),
                        format!(
                            "dependencies of `{package}`: {}",
                            quoted_list(deps.into_iter().flatten())
                        ),
                    )
                })
            } else {
                (!known.contains(f)).then(|| {
                    (
                        format!("package `{package}` has no feature `{f}`"),
                        format!("features of `{package}`: {}", quoted_list(known)),
                    )
                })
            };
            if let Some((message, help)) = problem {
                self.error(
                    Diagnostic::new(message, span_of(raw))
                        .label("no such feature")
                        .help(help),
                );
            }
        }
    }

    /// The image's tags: `--tag`'s when the command line gives some, else
    /// its `tags` (each a template, filled in for its package's `version`
    /// and the checkout; one with no value here is skipped and noted).
    fn tags(&mut self, name: &str, raw: Option<&S<Vec<S<String>>>>, version: &str) -> Vec<Tag> {
        let Some(raw) = raw else {
            return match self.tag_inputs.replace {
                Some(given) => given.to_vec(),
                None => vec![Tag::parse("latest").expect("a valid tag")],
            };
        };
        if raw.get_ref().is_empty() {
            self.error(
                Diagnostic::new("`tags` is empty", span_of(raw))
                    .label("an image needs at least one tag")
                    .help("leave `tags` out for `latest`, or list the tags to give the image"),
            );
        }
        let mut tags: Vec<Tag> = Vec::new();
        let mut seen = BTreeSet::new();
        let mut skipped = 0;
        for tag in raw.get_ref() {
            let template = match TagTemplate::parse(tag.get_ref()) {
                Ok(t) => t,
                Err(e) => {
                    self.error(
                        Diagnostic::new(format!("invalid tag `{}`: {e}", tag.get_ref()), span_of(tag))
                            .help(format!(
                                "tags match [A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}} and may name the fields {}",
                                super::tags::FIELDS
                            )),
                    );
                    continue;
                }
            };
            if !seen.insert(tag.get_ref().clone()) {
                self.error(
                    Diagnostic::new(
                        format!("tag `{}` is listed twice", tag.get_ref()),
                        span_of(tag),
                    )
                    .label("duplicate"),
                );
                continue;
            }
            if self.tag_inputs.replace.is_some() {
                continue;
            }
            match template.render(version, self.tag_inputs.git) {
                // Two templates may give one tag (`{version}` and `{git.tag}`
                // on a release): it names the image once.
                Rendered::Tag(t) if tags.contains(&t) => {}
                Rendered::Tag(t) => tags.push(t),
                Rendered::Skipped(why) => {
                    skipped += 1;
                    self.skipped
                        .entry((template.to_string(), why))
                        .or_default()
                        .push(name.to_owned());
                }
                Rendered::Invalid(made) => {
                    let message = if made == template.as_str() {
                        format!("invalid tag `{made}`: longer than 128 characters")
                    } else {
                        format!("invalid tag `{made}`, made from `{template}` for image `{name}`")
                    };
                    self.error(
                        Diagnostic::new(message, span_of(tag))
                            .label("not a valid tag")
                            .help("tags match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"),
                    );
                }
            }
        }
        if let Some(given) = self.tag_inputs.replace {
            return given.to_vec();
        }
        if skipped > 0 && skipped == raw.get_ref().len() {
            self.error(
                Diagnostic::new(
                    format!("image `{name}` has no tag in this checkout"),
                    span_of(raw),
                )
                .label("every tag here was skipped")
                .help("add a tag every checkout has, such as `sha-{git.short}` or `latest`"),
            );
        }
        tags
    }

    fn push(&mut self, name: &str, raw: &RawImage, defaults: &RawImage) -> Option<PushTarget> {
        let Some(registry) = raw.registry.as_ref().or(defaults.registry.as_ref()) else {
            if let Some(r) = &raw.repository {
                self.error(
                    Diagnostic::new("`repository` is set but no `registry` is", span_of(r))
                        .help("add `registry = \"host/namespace\"` here or in [defaults]"),
                );
            }
            return None;
        };
        let repository = raw
            .repository
            .as_ref()
            .map_or_else(|| name.to_owned(), |r| r.get_ref().clone());
        let reference = format!("{}/{repository}", registry.get_ref());
        match crate::registry::Repository::parse(&reference) {
            Ok(reference) => Some(PushTarget {
                registry: registry.get_ref().clone(),
                repository,
                reference,
                insecure: raw
                    .insecure
                    .as_ref()
                    .or(defaults.insecure.as_ref())
                    .is_some_and(|i| *i.get_ref()),
            }),
            Err(e) => {
                let span = raw
                    .repository
                    .as_ref()
                    .map_or_else(|| span_of(registry), span_of);
                self.error(
                    Diagnostic::new(format!("invalid image reference `{reference}`: {e}"), span)
                        .help("write `registry = \"host[:port][/namespace]\"` and `repository = \"name\"`, e.g. `ghcr.io/acme` and `api`"),
                );
                None
            }
        }
    }

    fn packages_with_bins(&self) -> String {
        quoted_list(
            self.workspace
                .packages
                .iter()
                .filter(|(_, bins)| !bins.is_empty())
                .map(|(name, _)| name),
        )
    }

    /// The host file a `src` names, with every symlink resolved; it must be a
    /// regular file inside the workspace.
    fn source_file(&mut self, raw: &S<String>) -> Option<PathBuf> {
        let text = raw.get_ref();
        let rel = Path::new(text);
        let escapes = rel.is_absolute()
            || rel
                .components()
                .any(|c| matches!(c, Component::ParentDir | Component::Prefix(_)));
        if escapes || text.is_empty() || text.contains('\0') {
            self.error(
                Diagnostic::new(
                    format!(
                        "`src` `{}` is not inside the workspace",
                        text.escape_debug()
                    ),
                    span_of(raw),
                )
                .label("must be relative to the workspace root, without `..`"),
            );
            return None;
        }
        let path = self.workspace.root.join(rel);
        let real = match path.canonicalize() {
            Ok(real) => real,
            Err(e) => {
                self.error(
                    Diagnostic::new(format!("`src` `{text}` cannot be read: {e}"), span_of(raw))
                        .label("missing file")
                        .help(format!(
                            "paths are relative to the workspace root, {}",
                            self.workspace.root.display()
                        )),
                );
                return None;
            }
        };
        if let Some(root) = &self.canonical_root
            && !real.starts_with(root)
        {
            let (link, target) = self.escaping_link(rel, root);
            self.error(
                Diagnostic::new(
                    format!(
                        "`src` `{text}` leaves the workspace: `{link}` is a symlink to `{target}`"
                    ),
                    span_of(raw),
                )
                .label(format!("resolves to {}", real.display()))
                .help("only files inside the workspace go into images; copy the file into the workspace instead"),
            );
            return None;
        }
        match std::fs::metadata(&real) {
            Ok(m) if m.is_file() => Some(real),
            Ok(_) => {
                self.error(
                    Diagnostic::new(
                        format!("`src` `{text}` is not a regular file"),
                        span_of(raw),
                    )
                    .label("not a file")
                    .help("list each file of a directory as its own entry"),
                );
                None
            }
            Err(e) => {
                self.error(
                    Diagnostic::new(format!("`src` `{text}` cannot be read: {e}"), span_of(raw))
                        .label("unreadable file"),
                );
                None
            }
        }
    }

    /// The first symlink along `rel` that leads out of `root`, and what it
    /// points to as written in the link.
    fn escaping_link(&self, rel: &Path, root: &Path) -> (String, String) {
        let mut walked = PathBuf::new();
        for part in rel.components() {
            walked.push(part);
            let path = self.workspace.root.join(&walked);
            let Ok(target) = std::fs::read_link(&path) else {
                continue;
            };
            if path.canonicalize().is_ok_and(|r| !r.starts_with(root)) {
                return (walked.display().to_string(), target.display().to_string());
            }
        }
        (
            rel.display().to_string(),
            "outside the workspace".to_owned(),
        )
    }
}
