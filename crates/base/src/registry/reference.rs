//! Image references (`registry/repository:tag@digest`), parsed and validated per the
//! grammar of the OCI distribution spec ("Pulling manifests": `<name>` and
//! `<reference>`) with Docker's conventions for the default registry.

use std::fmt;
use std::str::FromStr;

/// The registry assumed when a reference names none, as Docker does.
pub const DOCKER_HUB: &str = "docker.io";

/// Docker Hub answers the distribution API on this host, not on `docker.io`.
const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// The distribution spec caps a repository name at 255 characters (host excluded).
const MAX_NAME_LEN: usize = 255;

/// Tags are `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
const MAX_TAG_LEN: usize = 128;

/// Why a reference string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference {input:?}: {reason}")]
pub struct ReferenceError {
    input: String,
    reason: String,
}

impl ReferenceError {
    fn new(input: &str, reason: impl Into<String>) -> Self {
        ReferenceError {
            input: input.to_owned(),
            reason: reason.into(),
        }
    }
}

/// A repository on a registry: where blobs and manifests are pushed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Repository {
    registry: String,
    name: String,
}

impl Repository {
    /// Parses `registry/name` (no tag, no digest). A first component that holds a
    /// `.` or a `:`, or is `localhost`, is a registry host; otherwise the registry
    /// is Docker Hub and one-component names get Docker's `library/` prefix.
    pub fn parse(input: &str) -> Result<Self, ReferenceError> {
        let (registry, name) = split_registry(input);
        if registry.is_empty() {
            return Err(ReferenceError::new(input, "empty registry host"));
        }
        validate_host(input, registry)?;
        let name = if registry == DOCKER_HUB && !name.contains('/') {
            format!("library/{name}")
        } else {
            name.to_owned()
        };
        validate_name(input, &name)?;
        Ok(Repository {
            registry: registry.to_owned(),
            name,
        })
    }

    /// Builds a repository from an already separated registry host and name.
    pub fn new(registry: &str, name: &str) -> Result<Self, ReferenceError> {
        let input = format!("{registry}/{name}");
        validate_host(&input, registry)?;
        validate_name(&input, name)?;
        Ok(Repository {
            registry: registry.to_owned(),
            name: name.to_owned(),
        })
    }

    /// The registry as the user named it, e.g. `localhost:5000` or `docker.io`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path inside the registry, e.g. `team/hello`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The host (and port) that serves the distribution API for this registry.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }
}

impl fmt::Display for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.name)
    }
}

impl FromStr for Repository {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Repository::parse(s)
    }
}

/// A full image reference: a repository plus an optional tag and digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    repository: Repository,
    tag: Option<String>,
    digest: Option<String>,
}

impl Reference {
    /// Parses `[registry/]name[:tag][@digest]`.
    pub fn parse(input: &str) -> Result<Self, ReferenceError> {
        let (rest, digest) = match input.split_once('@') {
            Some((rest, digest)) => {
                validate_digest(input, digest)?;
                (rest, Some(digest.to_owned()))
            }
            None => (input, None),
        };
        // A `:` after the last `/` starts a tag; one before it is a registry port.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].find(':') {
            Some(i) => {
                let at = last_slash + i;
                let tag = &rest[at + 1..];
                validate_tag(input, tag)?;
                (&rest[..at], Some(tag.to_owned()))
            }
            None => (rest, None),
        };
        let repository =
            Repository::parse(name).map_err(|e| ReferenceError::new(input, e.reason))?;
        Ok(Reference {
            repository,
            tag,
            digest,
        })
    }

    pub fn repository(&self) -> &Repository {
        &self.repository
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

/// Checks a tag against `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
pub fn validate_tag(input: &str, tag: &str) -> Result<(), ReferenceError> {
    let mut chars = tag.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !first_ok || !rest_ok || tag.len() > MAX_TAG_LEN {
        return Err(ReferenceError::new(
            input,
            format!("tag {tag:?} must match [a-zA-Z0-9_][a-zA-Z0-9._-]{{0,127}}"),
        ));
    }
    Ok(())
}

/// Checks a digest: `sha256:` and 64 lowercase hex digits (the only algorithm pushed).
pub fn validate_digest(input: &str, digest: &str) -> Result<(), ReferenceError> {
    let ok = digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    });
    if ok {
        Ok(())
    } else {
        Err(ReferenceError::new(
            input,
            format!("digest {digest:?} is not sha256:<64 hex digits>"),
        ))
    }
}

fn split_registry(input: &str) -> (&str, &str) {
    match input.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => (first, rest),
        _ => (DOCKER_HUB, input),
    }
}

fn validate_host(input: &str, host: &str) -> Result<(), ReferenceError> {
    let (name, port) = match host.rsplit_once(':') {
        // A bracketed IPv6 literal keeps its colons inside the brackets.
        Some((name, port)) if !port.contains(']') => (name, Some(port)),
        _ => (host, None),
    };
    let name_ok = if let Some(inner) = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        !inner.is_empty()
            && inner
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
    } else {
        !name.is_empty()
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            })
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.parse::<u16>().is_ok());
    if name_ok && port_ok {
        Ok(())
    } else {
        Err(ReferenceError::new(
            input,
            format!("registry host {host:?} is not a valid host[:port]"),
        ))
    }
}

/// Checks `path-component ("/" path-component)*` with
/// `path-component = [a-z0-9]+ ((\.|_|__|-+) [a-z0-9]+)*`.
fn validate_name(input: &str, name: &str) -> Result<(), ReferenceError> {
    if name.is_empty() {
        return Err(ReferenceError::new(input, "empty repository name"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(ReferenceError::new(
            input,
            format!("repository name is longer than {MAX_NAME_LEN} characters"),
        ));
    }
    for component in name.split('/') {
        if !valid_component(component) {
            return Err(ReferenceError::new(
                input,
                format!(
                    "repository path component {component:?} must be lowercase letters and digits, \
                     separated by '.', '_', '__' or dashes"
                ),
            ));
        }
    }
    Ok(())
}

fn valid_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        // A run of separators: exactly ".", "_" or "__", or any number of dashes.
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &component[start..i];
        let ok = matches!(sep, "." | "_" | "__") || sep.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_local_registry_with_port_and_tag() {
        let r = Reference::parse("localhost:5000/team/hello:1.0").unwrap();
        assert_eq!(r.repository().registry(), "localhost:5000");
        assert_eq!(r.repository().name(), "team/hello");
        assert_eq!(r.tag(), Some("1.0"));
        assert_eq!(r.digest(), None);
        assert_eq!(r.to_string(), "localhost:5000/team/hello:1.0");
    }

    #[test]
    fn docker_hub_defaults() {
        let r = Reference::parse("hello").unwrap();
        assert_eq!(r.repository().registry(), "docker.io");
        assert_eq!(r.repository().name(), "library/hello");
        assert_eq!(r.repository().api_host(), "registry-1.docker.io");
        let r = Reference::parse("team/hello:v2").unwrap();
        assert_eq!(r.repository().name(), "team/hello");
        assert_eq!(r.tag(), Some("v2"));
    }

    #[test]
    fn port_is_not_a_tag() {
        let r = Repository::parse("127.0.0.1:5000/x").unwrap();
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.name(), "x");
        let r = Reference::parse("127.0.0.1:5000/x").unwrap();
        assert_eq!(r.tag(), None);
    }

    #[test]
    fn digest_references() {
        let d = format!("sha256:{}", "a".repeat(64));
        let r = Reference::parse(&format!("example.com/a/b:t@{d}")).unwrap();
        assert_eq!(r.digest(), Some(d.as_str()));
        assert_eq!(r.tag(), Some("t"));
        assert!(Reference::parse("example.com/a@sha256:abc").is_err());
        assert!(Reference::parse(&format!("example.com/a@sha256:{}", "A".repeat(64))).is_err());
    }

    #[test]
    fn rejects_bad_names_and_tags() {
        for bad in [
            "Hello",
            "localhost:5000/Team/x",
            "a//b",
            "a/-b",
            "a/b-",
            "a/b..c",
            "a/b___c",
            "localhost:99999/a",
            "localhost:5000/a:",
            "localhost:5000/a:-x",
            "/a",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad} should be refused");
        }
        let long_tag = format!("a:{}", "t".repeat(129));
        assert!(Reference::parse(&long_tag).is_err());
        let long_name = format!("localhost/{}", "a".repeat(256));
        assert!(Repository::parse(&long_name).is_err());
    }

    #[test]
    fn accepts_separators() {
        for good in [
            "a/b.c",
            "a/b_c",
            "a/b__c",
            "a/b---c",
            "my-reg.example.com/x/y-z/w",
        ] {
            assert!(Repository::parse(good).is_ok(), "{good} should be accepted");
        }
    }

    #[test]
    fn error_message_names_the_input() {
        let e = Reference::parse("localhost:5000/Bad").unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with("invalid image reference \"localhost:5000/Bad\""),
            "{msg}"
        );
        assert!(msg.contains("\"Bad\""), "{msg}");
    }
}
