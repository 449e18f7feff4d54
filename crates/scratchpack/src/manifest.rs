//! `images.toml`: read as written ([`raw`], with spans, never stopping at the
//! first problem), then resolved once against the workspace ([`resolve`]) into
//! a validated [`Plan`] ([`plan`]). Every problem of a file is reported in one
//! run, each once, at its line and column.

mod os_files;
mod plan;
mod raw;
mod release;
mod resolve;
mod tags;

use std::path::{Path, PathBuf};

pub use plan::*;
pub use release::*;
pub use resolve::LATEST_EPOCH;
#[cfg(target_os = "linux")]
pub(crate) use resolve::parse_user;
// The sandbox's own bound is checked against this one in a test.
#[cfg(all(test, target_os = "linux"))]
pub(crate) use resolve::MAX_VOLUMES;
pub use tags::{
    FIELDS, GitField, GitValues, NoGit, Rendered, TagTemplate, TemplateError, sanitise,
};

use crate::diagnostic::{Diagnostic, SourceErrors};
use crate::toolchain::workspace::Workspace;

pub const FILE_NAME: &str = "images.toml";

/// What the tags of a run are made from: the checkout's values for the
/// templates of images.toml, or the tags the command line gives instead.
#[derive(Clone, Copy)]
pub struct TagInputs<'a> {
    pub git: &'a dyn GitValues,
    /// `--tag`: every image gets these instead of its own `tags`, whose
    /// templates are then checked but not filled in (nor is git asked).
    pub replace: Option<&'a [Tag]>,
}

impl TagInputs<'static> {
    /// No checkout: templates that name a git field are skipped.
    pub fn none() -> TagInputs<'static> {
        TagInputs {
            git: &NoGit,
            replace: None,
        }
    }
}

/// Reads and resolves `images.toml` at `path` against `workspace`, with no
/// checkout to fill in tag templates from (see [`load_with`]).
pub fn load(path: &Path, workspace: &Workspace) -> Result<Plan, LoadError> {
    load_with(path, workspace, TagInputs::none())
}

/// The largest images.toml read: far beyond any real one (a thousand images
/// with their tests take a few hundred KiB).
const MAX_MANIFEST_BYTES: u64 = 16 << 20;

/// Reads and resolves `images.toml` at `path` against `workspace`, its tags
/// made from `tags`.
pub fn load_with(
    path: &Path,
    workspace: &Workspace,
    tags: TagInputs<'_>,
) -> Result<Plan, LoadError> {
    // A regular file of bounded size: a link to /dev/zero or a FIFO in its
    // place is refused at once, not read until memory runs out or waited on.
    let bytes = crate::record::read_regular(path, MAX_MANIFEST_BYTES, true).map_err(|source| {
        LoadError::Read {
            path: path.to_owned(),
            source,
        }
    })?;
    match String::from_utf8(bytes) {
        Ok(text) => parse_with(path, &text, workspace, tags).map_err(LoadError::Invalid),
        Err(e) => {
            // The bytes before the first bad one are valid UTF-8, so the lossy
            // text has the same offsets up to there, and the bad byte becomes
            // one U+FFFD to underline.
            let at = e.utf8_error().valid_up_to();
            let bad = e.as_bytes()[at];
            let text = String::from_utf8_lossy(e.as_bytes()).into_owned();
            Err(LoadError::Invalid(SourceErrors {
                path: path.to_owned(),
                source_text: text,
                diagnostics: vec![
                    Diagnostic::new(
                        format!("{FILE_NAME} is not UTF-8: byte 0x{bad:02x} cannot start or continue a character"),
                        at..at + char::REPLACEMENT_CHARACTER.len_utf8(),
                    )
                    .label("not UTF-8")
                    .help("TOML files are UTF-8; save the file in that encoding"),
                ],
            }))
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(SourceErrors),
}

/// Parses and resolves manifest text; `path` is used for messages and to find
/// `src` files relative to the workspace root.
pub fn parse(path: &Path, text: &str, workspace: &Workspace) -> Result<Plan, SourceErrors> {
    parse_with(path, text, workspace, TagInputs::none())
}

/// [`parse`], its tags made from `tags`.
pub fn parse_with(
    path: &Path,
    text: &str,
    workspace: &Workspace,
    tags: TagInputs<'_>,
) -> Result<Plan, SourceErrors> {
    let mut diagnostics = Vec::new();
    let raw = raw::read(text, &mut diagnostics);
    // A file TOML cannot read may have lost tables to the parser's recovery;
    // resolving what is left would report keys as missing that are there.
    if !diagnostics
        .iter()
        .any(|d| d.message.starts_with(raw::SYNTAX))
    {
        let plan = resolve::resolve(raw, text.len(), workspace, tags, &mut diagnostics);
        if diagnostics.is_empty() {
            return Ok(plan);
        }
    }
    // A problem in `[defaults]` is found once per image that inherits it, but
    // is reported once; and problems read best in the order of the file.
    let mut seen = std::collections::BTreeSet::new();
    diagnostics.retain(|d| seen.insert((d.span.start, d.span.end, d.message.clone())));
    diagnostics.sort_by_key(|d| (d.span.start, d.span.end));
    Err(SourceErrors {
        path: path.to_owned(),
        source_text: text.to_owned(),
        diagnostics,
    })
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod corpus;
