//! Errors that point into a source file: the file, line and column, the
//! offending text underlined, and what would have been valid, rendered the way
//! cargo reports a bad `Cargo.toml`.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;

use annotate_snippets::{AnnotationKind, Group, Level, Renderer, Snippet};

/// One problem at one place in a source file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// What is wrong, as a sentence fragment: lowercase, no trailing period.
    pub message: String,
    /// The byte range of the offending text in the source.
    pub span: Range<usize>,
    /// A short label under the underline.
    pub label: String,
    /// What would have been valid, when there is something useful to say.
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn new(message: impl Into<String>, span: Range<usize>) -> Self {
        Diagnostic {
            message: message.into(),
            span,
            label: String::new(),
            help: None,
        }
    }

    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

/// Every problem found in one source file, with the text they point into.
#[derive(Debug, Clone, thiserror::Error)]
pub struct SourceErrors {
    pub path: PathBuf,
    pub source_text: String,
    pub diagnostics: Vec<Diagnostic>,
}

impl SourceErrors {
    /// Line and column (both 1-based, column in characters) of a byte offset.
    pub fn line_column(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.source_text.len());
        let before = &self.source_text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        (line, column)
    }

    /// Renders every diagnostic, with colour when `styled`.
    pub fn render(&self, styled: bool) -> String {
        let renderer = if styled {
            Renderer::styled()
        } else {
            Renderer::plain()
        };
        let path = self.path.display().to_string();
        let mut out = String::new();
        for d in &self.diagnostics {
            // A span at the very end of the file has nothing to underline;
            // widen it to the last character so the renderer still shows it.
            let mut span = d.span.clone();
            if span.start >= self.source_text.len() && !self.source_text.is_empty() {
                span = self.source_text.len() - 1..self.source_text.len();
            }
            let mut report = vec![
                Level::ERROR.primary_title(d.message.as_str()).element(
                    Snippet::source(self.source_text.as_str())
                        .path(path.as_str())
                        .fold(true)
                        .annotation(AnnotationKind::Primary.span(span).label(d.label.as_str())),
                ),
            ];
            if let Some(help) = &d.help {
                report.push(Group::with_title(
                    Level::HELP.secondary_title(help.as_str()),
                ));
            }
            out.push_str(&renderer.render(&report));
            out.push('\n');
        }
        out
    }
}

impl fmt::Display for SourceErrors {
    /// The one-line form, `path:line:column: message` per problem, for logs and
    /// for errors carried through `anyhow`; the CLI prints [`SourceErrors::render`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            let (line, column) = self.line_column(d.span.start);
            write!(f, "{}:{line}:{column}: {}", self.path.display(), d.message)?;
        }
        Ok(())
    }
}
