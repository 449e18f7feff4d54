//! `binaries`: the binaries an image holds beside its own (a server's
//! migration or health-check tool), each a workspace binary at a path of
//! its own.

use super::*;
use crate::manifest::raw::RawBinary;

impl Resolver<'_> {
    /// Each entry of `binaries`, checked: a member package (the image's
    /// own unless it names another), one of its binaries, and a path no
    /// other binary of the image takes. `chosen` is the image's own package
    /// and binary, `main_path` where that binary goes.
    pub(super) fn binaries(
        &mut self,
        name: &str,
        raw: &RawImage,
        chosen: Option<&(S<String>, String)>,
        main_path: Option<&ImagePath>,
        build: &BuildSettings,
    ) -> Vec<ExtraBinary> {
        let mut out: Vec<ExtraBinary> = Vec::new();
        for entry in raw.binaries.iter().flatten() {
            let Some((package, bin)) = self.extra_binary(entry, chosen) else {
                continue;
            };
            let span = entry.path.as_ref().map_or(entry.span.clone(), span_of);
            let path = match &entry.path {
                Some(p) => match self.image_path(p, "path") {
                    Some(path) => path,
                    None => continue,
                },
                None => {
                    ImagePath::parse(&format!("/{bin}")).expect("a binary name is one component")
                }
            };
            if path.is_root() {
                self.error(Diagnostic::new("`path` cannot be `/`", span).label("not a file path"));
                continue;
            }
            let same_binary = chosen.is_some_and(|(p, b)| *p.get_ref() == package && *b == bin)
                || out.iter().any(|b| b.package == package && b.bin == bin);
            if same_binary {
                self.error(
                    Diagnostic::new(
                        format!("binary `{bin}` of `{package}` is already in image `{name}`"),
                        entry.span.clone(),
                    )
                    .label("listed twice")
                    .help("each binary goes into an image once"),
                );
                continue;
            }
            let taken_by = if main_path == Some(&path) {
                Some("the image's own binary".to_owned())
            } else {
                out.iter()
                    .find(|b| b.path == path)
                    .map(|b| format!("the binary `{}`", b.bin))
            };
            if let Some(other) = taken_by {
                self.error(
                    Diagnostic::new(
                        format!("`{path}` collides with {other} in image `{name}`"),
                        span,
                    )
                    .label("already in the image")
                    .help("give each binary its own `path`"),
                );
                continue;
            }
            // A binary of another package is built with that package's
            // default features: the image's `features` name its own.
            let own = chosen.is_some_and(|(p, _)| *p.get_ref() == package);
            let build = if own {
                build.clone()
            } else {
                BuildSettings {
                    features: Vec::new(),
                    default_features: true,
                    ..build.clone()
                }
            };
            out.push(ExtraBinary {
                package,
                bin,
                path,
                build,
            });
        }
        out
    }

    /// The package and binary one entry names, when both are known.
    fn extra_binary(
        &mut self,
        entry: &RawBinary,
        chosen: Option<&(S<String>, String)>,
    ) -> Option<(String, String)> {
        let package = match &entry.package {
            Some(p) if self.workspace.packages.contains_key(p.get_ref()) => p.get_ref().clone(),
            Some(p) => {
                self.error(
                    Diagnostic::new(
                        format!("package `{}` is not a member of the workspace", p.get_ref()),
                        span_of(p),
                    )
                    .label("no such package")
                    .help(format!(
                        "workspace packages with binaries: {}",
                        self.packages_with_bins()
                    )),
                );
                return None;
            }
            // The image's own package, when it is known; an unknown one was
            // reported with the image.
            None => chosen?.0.get_ref().clone(),
        };
        let bins = self.workspace.packages.get(&package)?;
        match (&entry.bin, bins.as_slice()) {
            (Some(b), _) if bins.contains(b.get_ref()) => Some((package, b.get_ref().clone())),
            (Some(b), _) => {
                self.error(
                    Diagnostic::new(
                        format!("package `{package}` has no binary `{}`", b.get_ref()),
                        span_of(b),
                    )
                    .label("no such binary")
                    .help(format!("binaries of `{package}`: {}", quoted_list(bins))),
                );
                None
            }
            (None, [only]) => Some((package, only.clone())),
            (None, _) => {
                self.error(
                    Diagnostic::new(
                        format!("package `{package}` has several binaries (or none); name one with `bin`"),
                        entry.span.clone(),
                    )
                    .label("which binary?")
                    .help(format!("binaries of `{package}`: {}", quoted_list(bins))),
                );
                None
            }
        }
    }
}
