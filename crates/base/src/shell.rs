//! Status output in cargo's style: a right-aligned, coloured verb and a
//! message, on stderr, so stdout stays free for results; and the tables of
//! results commands print on stdout ([`table`]).

pub mod table;

use std::io::{IsTerminal, Write};

/// Where status lines go.
#[derive(Debug, Clone, Copy)]
pub struct Shell {
    color: bool,
    quiet: bool,
}

impl Shell {
    /// A shell writing to stderr, coloured when stderr is a terminal (and
    /// `NO_COLOR` is unset), silent when `quiet`.
    pub fn new(quiet: bool) -> Shell {
        // `NO_COLOR` is read here, not taken from `toolchain::Env`: it only
        // changes how this process's own messages look, and an error is
        // rendered whether or not an environment was ever loaded.
        let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        Shell { color, quiet }
    }

    pub fn is_quiet(&self) -> bool {
        self.quiet
    }

    pub fn color(&self) -> bool {
        self.color
    }

    /// `   Verb message`, the verb in bold green.
    pub fn status(&self, verb: &str, message: impl std::fmt::Display) {
        self.line(verb, "1;32", message);
    }

    /// `warning: message`, in bold yellow.
    pub fn warn(&self, message: impl std::fmt::Display) {
        if self.quiet {
            return;
        }
        let label = self.paint("warning", "1;33");
        let _ = writeln!(std::io::stderr(), "{label}: {message}");
    }

    fn line(&self, verb: &str, style: &str, message: impl std::fmt::Display) {
        if self.quiet {
            return;
        }
        let verb = self.paint(&format!("{verb:>12}"), style);
        let _ = writeln!(std::io::stderr(), "{verb} {message}");
    }

    pub fn paint(&self, text: &str, style: &str) -> String {
        if self.color {
            format!("\x1b[{style}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
}
