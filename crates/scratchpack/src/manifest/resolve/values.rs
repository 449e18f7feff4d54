//! The small values of images.toml, each parsed into its type: users, ports,
//! signals, modes, paths in the image, environment variables, names and
//! target triples.

use super::*;

impl Resolver<'_> {
    /// Whether an environment variable can be passed to a process.
    pub(super) fn env_var(&mut self, key: &S<String>, value: &S<String>) -> bool {
        let k = key.get_ref();
        if k.is_empty() || k.contains(['=', '\0']) {
            self.error(
                Diagnostic::new(
                    format!("invalid environment variable `{}`", k.escape_debug()),
                    span_of(key),
                )
                .help("names are non-empty, without `=` or NUL"),
            );
            return false;
        }
        if value.get_ref().contains('\0') {
            self.error(
                Diagnostic::new(
                    format!("invalid environment variable `{k}`: its value contains a NUL byte"),
                    span_of(value),
                )
                .label("not representable in a process's environment"),
            );
            return false;
        }
        true
    }

    /// Strings handed to `execve` cannot hold a NUL byte.
    pub(super) fn no_nul(&mut self, what: &str, strings: &[S<String>]) {
        for s in strings {
            if s.get_ref().contains('\0') {
                self.error(
                    Diagnostic::new(format!("{what} contains a NUL byte"), span_of(s))
                        .label("not representable in an image"),
                );
            }
        }
    }

    pub(super) fn user(&mut self, u: &S<String>) -> Option<User> {
        match parse_user(u.get_ref()) {
            Ok(user) => Some(user),
            Err(problem) => {
                self.error(
                    Diagnostic::new(format!("invalid user `{}`: {problem}", u.get_ref()), span_of(u))
                        .label("expected `uid:gid`")
                        .help("give numeric ids, e.g. `65532:65532`; names are never looked up, not even with `passwd = true`"),
                );
                None
            }
        }
    }

    pub(super) fn port(&mut self, port: &S<String>) -> Option<String> {
        match parse_port(port.get_ref()) {
            Ok(p) => Some(p),
            Err(problem) => {
                self.error(
                    Diagnostic::new(
                        format!("invalid port `{}`: {problem}", port.get_ref()),
                        span_of(port),
                    )
                    .label("expected `port` or `port/tcp|udp|sctp`")
                    .help("for example `8080`, `8080/tcp` or `53/udp`"),
                );
                None
            }
        }
    }

    pub(super) fn image_path(&mut self, raw: &S<String>, key: &str) -> Option<ImagePath> {
        match ImagePath::parse(raw.get_ref()) {
            Ok(p) => Some(p),
            Err(problem) => {
                self.error(
                    Diagnostic::new(
                        format!("`{key}` `{}` {problem}", raw.get_ref().escape_debug()),
                        span_of(raw),
                    )
                    .label("invalid path in the image")
                    .help("write an absolute path such as `/etc/app/config.toml`"),
                );
                None
            }
        }
    }

    pub(super) fn mode(&mut self, raw: Option<&S<RawMode>>, default: u32) -> u32 {
        let Some(raw) = raw else { return default };
        let parsed = match raw.get_ref() {
            RawMode::Int(i) => u32::try_from(*i).ok(),
            RawMode::Str(s) => {
                let digits = s.strip_prefix("0o").unwrap_or(s);
                if digits.is_empty() || digits.len() > 4 {
                    None
                } else {
                    u32::from_str_radix(digits, 8).ok()
                }
            }
        };
        match parsed {
            Some(m) if m <= 0o7777 => m,
            _ => {
                self.error(
                    Diagnostic::new("invalid mode", span_of(raw))
                        .label("expected an octal mode up to 7777")
                        .help("write it as `0o644` or `\"0644\"`"),
                );
                default
            }
        }
    }
}

pub(super) fn invalid_image_name(name: &str) -> Option<&'static str> {
    if name.is_empty() || name.len() > 128 {
        return Some("names are 1 to 128 characters long");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
    {
        return Some("it has a character other than a-z, 0-9, `.`, `_` or `-`");
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Some("names start with a letter or digit");
    }
    if name.ends_with(".tar") {
        // `<out>/<name>.tar` is the archive of the image called `<name>`.
        return Some("names cannot end in `.tar`, the archives' suffix");
    }
    None
}

pub(super) fn invalid_triple(t: &str) -> bool {
    t.split('-').count() < 2
        || !t
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The architecture a target triple names and the ELF machine its binaries
/// carry, for the architectures whose machine is known here.
pub(super) fn triple_machine(triple: &str) -> Option<(&str, crate::elf::Machine)> {
    use crate::elf;
    let arch = triple.split('-').next()?;
    let machine = match arch {
        "x86_64" => elf::EM_X86_64,
        "aarch64" => elf::EM_AARCH64,
        "i386" | "i586" | "i686" => elf::EM_386,
        "riscv64gc" | "riscv64" | "riscv64imac" => elf::EM_RISCV,
        "powerpc64le" | "powerpc64" => elf::EM_PPC64,
        "s390x" => elf::EM_S390,
        a if a.starts_with("arm") || a.starts_with("thumb") => elf::EM_ARM,
        _ => return None,
    };
    Some((arch, machine))
}

/// `uid:gid` or `uid`, numeric only: names are never looked up, since most
/// scratch images have no /etc/passwd to look them up in.
pub(crate) fn parse_user(s: &str) -> Result<User, &'static str> {
    let (uid, gid) = s.split_once(':').unwrap_or((s, s));
    let id = |v: &str| {
        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
            return Err("ids are numbers");
        }
        v.parse::<u32>().map_err(|_| "id is out of range")
    };
    Ok(User {
        uid: id(uid)?,
        gid: id(gid)?,
    })
}

/// Bytes written as hex digits, in pairs, with any ASCII whitespace between
/// them (`"00 21 12 34"`). An error says what is wrong and at which
/// character (counted from 1).
pub(super) fn parse_hex(s: &str) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    let mut high = None;
    for (at, c) in s.chars().enumerate() {
        if c.is_ascii_whitespace() {
            continue;
        }
        let Some(digit) = c.to_digit(16) else {
            return Err(format!("`{c}` at character {} is not a hex digit", at + 1));
        };
        match high.take() {
            None => high = Some(digit as u8),
            Some(h) => bytes.push(h << 4 | digit as u8),
        }
    }
    if high.is_some() {
        return Err("an odd number of hex digits: each byte is two".to_owned());
    }
    if bytes.is_empty() {
        return Err("no bytes: give at least one pair of hex digits".to_owned());
    }
    Ok(bytes)
}

pub(super) fn parse_port(s: &str) -> Result<String, &'static str> {
    let (port, proto) = s.split_once('/').unwrap_or((s, "tcp"));
    if !matches!(proto, "tcp" | "udp" | "sctp") {
        return Err("the protocol is tcp, udp or sctp");
    }
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err("the port is a number");
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(format!("{p}/{proto}")),
        _ => Err("the port is between 1 and 65535"),
    }
}

/// Signal names a runtime accepts in `StopSignal`.
pub(super) const SIGNALS: &[&str] = &[
    "SIGHUP", "SIGINT", "SIGQUIT", "SIGKILL", "SIGUSR1", "SIGUSR2", "SIGTERM", "SIGPWR", "SIGWINCH",
];
