//! The release keys of images.toml (`sbom`, `provenance`, `signature-format`,
//! `builder-id`), per image with `[defaults]` applied: what `sign` attaches
//! and what `verify` requires. Read from the TOML itself, beside the build
//! plan, since nothing about them shapes the image.

use std::collections::BTreeMap;
use std::path::Path;

use toml::Value;

use super::provenance::DEFAULT_BUILDER_ID;

/// Which cosign wire formats signatures and attestations are stored in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureFormat {
    /// Both below: what every cosign version can read.
    Both,
    /// cosign's legacy tags, `sha256-<hex>.sig` and `sha256-<hex>.att`.
    Sig,
    /// Sigstore bundles attached as OCI 1.1 referrers (cosign v3's default).
    Bundle,
}

impl SignatureFormat {
    pub fn tags(self) -> bool {
        self != SignatureFormat::Bundle
    }

    pub fn bundles(self) -> bool {
        self != SignatureFormat::Sig
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SbomFormat {
    Spdx,
    CycloneDx,
}

impl SbomFormat {
    pub fn name(self) -> &'static str {
        match self {
            SbomFormat::Spdx => "spdx",
            SbomFormat::CycloneDx => "cyclonedx",
        }
    }

    pub fn predicate_type(self) -> &'static str {
        match self {
            SbomFormat::Spdx => super::sbom::PREDICATE_SPDX,
            SbomFormat::CycloneDx => super::sbom::PREDICATE_CYCLONEDX,
        }
    }
}

/// One image's release settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub sbom: Vec<SbomFormat>,
    pub provenance: bool,
    pub signature_format: SignatureFormat,
    pub builder_id: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            sbom: vec![SbomFormat::Spdx],
            provenance: true,
            signature_format: SignatureFormat::Both,
            builder_id: DEFAULT_BUILDER_ID.to_owned(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("reading {}: {source}", path.display())]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Invalid {
        message: String,
        path: std::path::PathBuf,
    },
}

/// The settings of every image in the manifest at `path`, by name.
pub fn load(path: &Path) -> Result<BTreeMap<String, Settings>, SettingsError> {
    let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text).map_err(|message| SettingsError::Invalid {
        message,
        path: path.to_owned(),
    })
}

/// [`load`] on the manifest's text.
pub fn parse(text: &str) -> Result<BTreeMap<String, Settings>, String> {
    let doc: toml::Table = toml::from_str(text).map_err(|e| e.message().to_owned())?;
    let table = |v: Option<&Value>, what: &str| -> Result<toml::Table, String> {
        match v {
            None => Ok(toml::Table::new()),
            Some(Value::Table(t)) => Ok(t.clone()),
            Some(_) => Err(format!("`{what}` is not a table")),
        }
    };
    let defaults = table(doc.get("defaults"), "defaults")?;
    let base = apply(Settings::default(), &defaults, "[defaults]")?;
    let mut out = BTreeMap::new();
    for (name, image) in table(doc.get("images"), "images")? {
        let image = table(Some(&image), &format!("images.{name}"))?;
        let settings = apply(base.clone(), &image, &format!("[images.{name}]"))?;
        out.insert(name, settings);
    }
    Ok(out)
}

fn apply(mut settings: Settings, table: &toml::Table, place: &str) -> Result<Settings, String> {
    if let Some(v) = table.get("sbom") {
        let list = v.as_array().ok_or_else(|| {
            format!("{place} `sbom` must be a list, like [\"spdx\", \"cyclonedx\"]")
        })?;
        let mut formats = Vec::new();
        for item in list {
            let format = match item.as_str() {
                Some("spdx") => SbomFormat::Spdx,
                Some("cyclonedx") => SbomFormat::CycloneDx,
                _ => {
                    return Err(format!(
                        "{place} `sbom` lists {item}; the formats are \"spdx\" and \"cyclonedx\""
                    ));
                }
            };
            if !formats.contains(&format) {
                formats.push(format);
            }
        }
        formats.sort();
        settings.sbom = formats;
    }
    if let Some(v) = table.get("provenance") {
        settings.provenance = v
            .as_bool()
            .ok_or_else(|| format!("{place} `provenance` must be true or false, not {v}"))?;
    }
    if let Some(v) = table.get("signature-format") {
        settings.signature_format = match v.as_str() {
            Some("both") => SignatureFormat::Both,
            Some("sig") => SignatureFormat::Sig,
            Some("bundle") => SignatureFormat::Bundle,
            _ => {
                return Err(format!(
                    "{place} `signature-format` is {v}; it is \"both\", \"sig\" or \"bundle\""
                ));
            }
        };
    }
    if let Some(v) = table.get("builder-id") {
        settings.builder_id = v
            .as_str()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| format!("{place} `builder-id` must be a non-empty string, not {v}"))?
            .to_owned();
    }
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_and_images_override() {
        let s = parse(
            "[defaults]\nsbom = [\"cyclonedx\", \"spdx\"]\nsignature-format = \"bundle\"\n\
             [images.a]\npackage = \"a\"\n\
             [images.b]\npackage = \"b\"\nsbom = []\nprovenance = false\nsignature-format = \"sig\"\n",
        )
        .unwrap();
        assert_eq!(s["a"].sbom, vec![SbomFormat::Spdx, SbomFormat::CycloneDx]);
        assert_eq!(s["a"].signature_format, SignatureFormat::Bundle);
        assert!(s["a"].provenance);
        assert!(s["b"].sbom.is_empty());
        assert!(!s["b"].provenance);
        assert!(s["b"].signature_format.tags() && !s["b"].signature_format.bundles());
    }

    #[test]
    fn nothing_said_means_spdx_provenance_and_both_formats() {
        let s = parse("[images.a]\npackage = \"a\"\n").unwrap();
        assert_eq!(s["a"], Settings::default());
        assert_eq!(s["a"].sbom, vec![SbomFormat::Spdx]);
    }

    #[test]
    fn bad_values_name_the_table_and_key() {
        let e = parse("[images.a]\nsbom = [\"swid\"]\n").unwrap_err();
        assert!(e.contains("[images.a] `sbom`") && e.contains("swid"), "{e}");
        let e = parse("[defaults]\nsignature-format = \"both-ways\"\n").unwrap_err();
        assert!(e.contains("[defaults] `signature-format`"), "{e}");
        let e = parse("[images.a]\nprovenance = \"yes\"\n").unwrap_err();
        assert!(e.contains("`provenance`"), "{e}");
    }
}
