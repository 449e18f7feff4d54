//! Errors that point into a source file: the file, line and column, the
//! offending text underlined, and what would have been valid, rendered the way
//! cargo reports a bad `Cargo.toml`.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;

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

    /// Renders every diagnostic, with colour when `styled`: the message, the
    /// place, the source line(s) with the span underlined and labelled, and
    /// the help, laid out the way rustc and cargo lay out theirs.
    pub fn render(&self, styled: bool) -> String {
        let path = self.path.display().to_string();
        let mut out = String::new();
        for d in &self.diagnostics {
            render_one(&mut out, &self.source_text, &path, d, styled);
            out.push('\n');
        }
        out
    }
}

/// ANSI styles, as cargo uses them: bold red for errors and underlines,
/// bold blue for the gutter, bold cyan for help.
const ERROR: &str = "\x1b[1m\x1b[91m";
const BOLD: &str = "\x1b[1m";
const GUTTER: &str = "\x1b[1m\x1b[94m";
const HELP: &str = "\x1b[1m\x1b[96m";
const RESET: &str = "\x1b[0m";

/// More lines than this under one span are shown as their first and last
/// two, with `...` between.
const FOLD_OVER: usize = 6;

fn render_one(out: &mut String, text: &str, path: &str, d: &Diagnostic, styled: bool) {
    let paint = |style: &str, s: &str| {
        if styled && !s.is_empty() {
            format!("{style}{s}{RESET}")
        } else {
            s.to_owned()
        }
    };
    let (start, end) = clamp_span(text, &d.span);
    let first = line_of(text, start);
    // The last character the span covers: an empty span covers none, and
    // is shown as one caret at its start.
    let last = if end > start {
        floor_char(text, end - 1)
    } else {
        start
    };
    let last_line = line_of(text, last);
    let width = (last_line + 1).to_string().len();
    let pad = " ".repeat(width);
    let gutter = paint(GUTTER, "|");
    let number = |n: usize| paint(GUTTER, &format!("{:>width$}", n + 1));
    let label = if d.label.is_empty() {
        String::new()
    } else {
        format!(" {}", paint(ERROR, &d.label))
    };

    out.push_str(&paint(ERROR, "error"));
    out.push_str(&paint(BOLD, &format!(": {}", d.message)));
    let column = text[line_start(text, start)..start].chars().count() + 1;
    out.push_str(&format!(
        "\n{pad}{}{path}:{}:{column}\n{pad} {gutter}\n",
        paint(GUTTER, "--> "),
        first + 1
    ));
    let lines: Vec<&str> = text.split('\n').collect();
    let shown = |n: usize| display(lines.get(n).copied().unwrap_or(""));
    let shown_whole = |n: usize| window(&shown(n), 0).0;
    // Columns before the span on its first line.
    let before = display_width(&text[line_start(text, start)..start]);
    if last_line == first {
        let carets = display_width(&text[start..end.max(start)]).max(1);
        // A very long line is shown as a window that starts a little before
        // the span, so the underline stays on screen.
        let whole = shown(first);
        let from = if display_width(&whole) > MAX_WIDTH {
            before.saturating_sub(CONTEXT)
        } else {
            0
        };
        let (line, shift) = window(&whole, from);
        let carets = carets.min(MAX_WIDTH - (before - from));
        out.push_str(&trim_end(format!("{} {gutter} {line}", number(first))));
        out.push_str(&format!(
            "\n{pad} {gutter} {}{}{label}",
            " ".repeat(before - from + shift),
            paint(ERROR, &"^".repeat(carets))
        ));
    } else {
        // Long lines are cut at the window's right edge, and so are the
        // underscores leading to the span's ends.
        let start_col = before.min(MAX_WIDTH);
        let end_col = display_width(&text[line_start(text, last)..last]).min(MAX_WIDTH);
        let bar = paint(ERROR, "|");
        out.push_str(&trim_end(format!(
            "{} {gutter}   {}",
            number(first),
            shown_whole(first)
        )));
        out.push_str(&format!(
            "\n{pad} {gutter} {}",
            paint(ERROR, &format!(" {}^", "_".repeat(start_col + 1)))
        ));
        let inner: Vec<usize> = (first + 1..=last_line).collect();
        for (i, &n) in inner.iter().enumerate() {
            if inner.len() > FOLD_OVER && i == 2 {
                out.push_str(&format!("\n{}", paint(GUTTER, "...")));
            }
            if inner.len() > FOLD_OVER && i >= 2 && i + 2 < inner.len() {
                continue;
            }
            out.push('\n');
            out.push_str(&trim_end(format!(
                "{} {gutter} {bar} {}",
                number(n),
                shown_whole(n)
            )));
        }
        out.push_str(&format!(
            "\n{pad} {gutter} {}{label}",
            paint(ERROR, &format!("|{}^", "_".repeat(end_col + 1)))
        ));
    }
    if let Some(help) = &d.help {
        out.push_str(&format!(
            "\n{pad} {gutter}\n{}: {help}",
            paint(HELP, "help")
        ));
    }
}

/// Columns of a source line shown at most; longer lines are cut to a window.
const MAX_WIDTH: usize = 160;
/// Columns shown before the span when a long line is cut on the left.
const CONTEXT: usize = 24;

/// At most [`MAX_WIDTH`] columns of a displayed line from column `from`,
/// with `...` where it is cut, and how far the cut moved the text right.
fn window(line: &str, from: usize) -> (String, usize) {
    if display_width(line) <= MAX_WIDTH {
        return (line.to_owned(), 0);
    }
    let mut out = String::new();
    let mut shift = 0;
    if from > 0 {
        out.push_str("...");
        shift = 3;
    }
    let mut col = 0;
    let mut cut = false;
    for c in line.chars() {
        let w = char_width(c);
        if col >= from && col + w <= from + MAX_WIDTH {
            out.push(c);
        } else if col >= from {
            cut = true;
            break;
        } else if col + w > from {
            // A wide character straddling the cut: the columns of it past
            // `from` become spaces, so the caret still lines up.
            out.push_str(&" ".repeat(col + w - from));
        }
        col += w;
    }
    if cut {
        out.push_str("...");
    }
    (out, shift)
}

/// The span within the text and on character boundaries. A span at the
/// very end of the file has nothing to underline, so it covers the last
/// character instead.
fn clamp_span(text: &str, span: &Range<usize>) -> (usize, usize) {
    let mut start = floor_char(text, span.start.min(text.len()));
    let mut end = ceil_char(text, span.end.clamp(start, text.len()));
    if start == text.len()
        && let Some(c) = text.chars().next_back()
    {
        start = text.len() - c.len_utf8();
        end = text.len();
    }
    (start, end)
}

fn floor_char(text: &str, mut i: usize) -> usize {
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_char(text: &str, mut i: usize) -> usize {
    while !text.is_char_boundary(i) {
        i += 1;
    }
    i
}

fn line_start(text: &str, offset: usize) -> usize {
    text[..offset].rfind('\n').map_or(0, |i| i + 1)
}

/// The 0-based line of `offset`.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
}

/// A source line as shown: a carriage return before the newline dropped,
/// tabs as four spaces, and control characters (which could move the
/// cursor or recolour the terminal) as U+FFFD.
fn display(line: &str) -> String {
    let line = line.strip_suffix('\r').unwrap_or(line);
    line.chars()
        .map(|c| match c {
            '\t' => "    ".to_owned(),
            c if is_control(c) => "\u{fffd}".to_owned(),
            c => c.to_string(),
        })
        .collect()
}

fn trim_end(s: String) -> String {
    s.trim_end_matches(' ').to_owned()
}

fn is_control(c: char) -> bool {
    (c.is_control() && c != '\t' && c != '\n')
        || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Columns `s` takes on a terminal, as [`display`] shows it: a tab four, a
/// newline one (the caret under a line's end), East Asian wide and
/// fullwidth characters two, combining marks and zero-width characters none.
fn display_width(s: &str) -> usize {
    s.chars().map(char_width).sum()
}

fn char_width(c: char) -> usize {
    match c {
        '\t' => 4,
        '\u{0300}'..='\u{036f}'
        | '\u{0483}'..='\u{0489}'
        | '\u{0591}'..='\u{05bd}'
        | '\u{0610}'..='\u{061a}'
        | '\u{064b}'..='\u{065f}'
        | '\u{1ab0}'..='\u{1aff}'
        | '\u{1dc0}'..='\u{1dff}'
        | '\u{200b}'..='\u{200f}'
        | '\u{20d0}'..='\u{20ff}'
        | '\u{fe00}'..='\u{fe0f}'
        | '\u{fe20}'..='\u{fe2f}'
        | '\u{feff}'
        | '\u{e0100}'..='\u{e01ef}' => 0,
        '\u{1100}'..='\u{115f}'
        | '\u{231a}'..='\u{231b}'
        | '\u{2329}'..='\u{232a}'
        | '\u{2e80}'..='\u{303e}'
        | '\u{3041}'..='\u{33ff}'
        | '\u{3400}'..='\u{4dbf}'
        | '\u{4e00}'..='\u{9fff}'
        | '\u{a000}'..='\u{a4cf}'
        | '\u{a960}'..='\u{a97f}'
        | '\u{ac00}'..='\u{d7a3}'
        | '\u{f900}'..='\u{faff}'
        | '\u{fe10}'..='\u{fe19}'
        | '\u{fe30}'..='\u{fe6f}'
        | '\u{ff00}'..='\u{ff60}'
        | '\u{ffe0}'..='\u{ffe6}'
        | '\u{1f300}'..='\u{1f64f}'
        | '\u{1f900}'..='\u{1f9ff}'
        | '\u{20000}'..='\u{2fffd}'
        | '\u{30000}'..='\u{3fffd}' => 2,
        _ => 1,
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

#[cfg(test)]
mod tests;
