//! The release keys of images.toml (`sbom`, `provenance`, `signature-format`,
//! `builder-id`), resolved with `[defaults]` into [`ReleaseSettings`]: what `sign`
//! attaches and `verify` requires (README's "Release pipeline").

use super::*;
use crate::manifest::{DEFAULT_BUILDER_ID, ReleaseSettings, SbomFormat, SignatureFormat};

const SBOM_FORMATS: &[(&str, SbomFormat)] = &[
    ("spdx", SbomFormat::Spdx),
    ("cyclonedx", SbomFormat::CycloneDx),
];

const SIGNATURE_FORMATS: &[(&str, SignatureFormat)] = &[
    ("both", SignatureFormat::Both),
    ("sig", SignatureFormat::Sig),
    ("bundle", SignatureFormat::Bundle),
];

fn names<T>(table: &[(&str, T)]) -> String {
    table
        .iter()
        .map(|(n, _)| format!("`\"{n}\"`"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Resolver<'_> {
    /// The image's release settings; a key the image sets replaces the
    /// `[defaults]` one whole, as for every other key.
    pub(super) fn release(&mut self, raw: &RawImage, defaults: &RawImage) -> ReleaseSettings {
        let mut settings = ReleaseSettings::default();
        if let Some(list) = raw.sbom.as_ref().or(defaults.sbom.as_ref()) {
            settings.sbom = self.sbom(list);
        }
        if let Some(p) = raw.provenance.as_ref().or(defaults.provenance.as_ref()) {
            settings.provenance = *p.get_ref();
        }
        let format = raw
            .signature_format
            .as_ref()
            .or(defaults.signature_format.as_ref());
        if let Some(f) = format {
            match SIGNATURE_FORMATS.iter().find(|(n, _)| n == f.get_ref()) {
                Some((_, format)) => settings.signature_format = *format,
                None => self.error(
                    Diagnostic::new(
                        format!("unknown signature format `{}`", f.get_ref()),
                        span_of(f),
                    )
                    .label("not a signature format")
                    .help(format!(
                        "`signature-format` is one of {}: cosign's `.sig` tags, \
                         Sigstore bundle referrers, or both",
                        names(SIGNATURE_FORMATS)
                    )),
                ),
            }
        }
        if let Some(id) = raw.builder_id.as_ref().or(defaults.builder_id.as_ref())
            && let Some(id) = self.builder_id(id)
        {
            settings.builder_id = id;
        }
        settings
    }

    fn sbom(&mut self, list: &S<Vec<S<String>>>) -> Vec<SbomFormat> {
        let mut formats = Vec::new();
        for item in list.get_ref() {
            match SBOM_FORMATS.iter().find(|(n, _)| n == item.get_ref()) {
                Some((name, _)) if formats.iter().any(|f: &SbomFormat| f.name() == *name) => {
                    self.error(
                        Diagnostic::new(
                            format!("SBOM format `{name}` is listed twice"),
                            span_of(item),
                        )
                        .label("duplicate"),
                    );
                }
                Some((_, format)) => formats.push(*format),
                None => self.error(
                    Diagnostic::new(
                        format!("unknown SBOM format `{}`", item.get_ref()),
                        span_of(item),
                    )
                    .label("not an SBOM format")
                    .help(format!(
                        "`sbom` lists formats among {}; `[]` attaches none",
                        names(SBOM_FORMATS)
                    )),
                ),
            }
        }
        // The order written does not matter: attestations are made in one
        // order so that two manifests saying the same thing sign the same.
        formats.sort();
        formats
    }

    /// SLSA's `builder.id` is a URI naming the build platform.
    fn builder_id(&mut self, id: &S<String>) -> Option<String> {
        let s = id.get_ref();
        let problem = if s.trim().is_empty() {
            Some("`builder-id` is empty")
        } else if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            Some("`builder-id` contains whitespace or a control character")
        } else if !has_uri_scheme(s) {
            Some("`builder-id` is not a URI")
        } else {
            None
        };
        match problem {
            Some(message) => {
                self.error(
                    Diagnostic::new(message, span_of(id))
                        .label("expected a URI naming the builder")
                        .help(format!(
                            "SLSA provenance names its builder by URI, e.g. \
                             `https://github.com/<org>/<repo>/.github/workflows/release.yml` \
                             (the default is `{}`)",
                            DEFAULT_BUILDER_ID
                        )),
                );
                None
            }
            None => Some(s.clone()),
        }
    }
}

/// RFC 3986: a scheme is a letter, then letters, digits, `+`, `-` or `.`,
/// then `:` and something after it.
fn has_uri_scheme(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once(':') else {
        return false;
    };
    !rest.is_empty()
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}
