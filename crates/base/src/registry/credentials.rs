//! Where registry credentials come from: environment variables for CI, and the
//! Docker CLI's `config.json` (`auths`, `credsStore`, `credHelpers`), following the
//! docker-credential-helpers protocol (`docker-credential-<name> get`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

/// The environment variables CI jobs set to push without a Docker config.
pub const USERNAME_VAR: &str = "SCRATCHPACK_REGISTRY_USERNAME";
pub const PASSWORD_VAR: &str = "SCRATCHPACK_REGISTRY_PASSWORD";
/// The one registry host the environment's credentials are for. Unset, they
/// are for the registries the run pushes to, and for no other.
pub const REGISTRY_VAR: &str = "SCRATCHPACK_REGISTRY";

/// The key Docker stores Docker Hub credentials under, for historical reasons.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// A username and secret for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub username: String,
    pub password: String,
}

impl Credential {
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Credential {
            username: username.into(),
            password: password.into(),
        }
    }

    /// The value of an `Authorization: Basic` header for this credential.
    pub fn basic_header(&self) -> String {
        format!(
            "Basic {}",
            STANDARD.encode(format!("{}:{}", self.username, self.password))
        )
    }
}

// The secret never appears in debug output or logs.
impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Why credentials could not be looked up.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("reading docker config {path}: {source}")]
    ReadConfig {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing docker config {path}: {source}")]
    ParseConfig {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("decoding the auth entry for {server} in {path}: {reason}")]
    BadAuth {
        server: String,
        path: PathBuf,
        reason: String,
    },
    #[error("running credential helper {program}: {reason}")]
    Helper { program: String, reason: String },
}

/// Looks up the credential for a registry host. A test seam: the push takes any
/// source, so tests hand in fixed credentials without touching the environment.
pub trait CredentialSource {
    /// The credential for `registry` (as the user named it, e.g. `localhost:5000`
    /// or `docker.io`), or `None` to push anonymously.
    fn credential(&self, registry: &str) -> Result<Option<Credential>, CredentialError>;
}

/// No credentials: every request is anonymous.
#[derive(Debug, Clone, Copy, Default)]
pub struct Anonymous;

impl CredentialSource for Anonymous {
    fn credential(&self, _registry: &str) -> Result<Option<Credential>, CredentialError> {
        Ok(None)
    }
}

/// The same credential for every registry.
#[derive(Debug, Clone)]
pub struct StaticCredential(pub Credential);

impl CredentialSource for StaticCredential {
    fn credential(&self, _registry: &str) -> Result<Option<Credential>, CredentialError> {
        Ok(Some(self.0.clone()))
    }
}

/// `SCRATCHPACK_REGISTRY_USERNAME` and `SCRATCHPACK_REGISTRY_PASSWORD`, read
/// once, for one registry host (`SCRATCHPACK_REGISTRY`) or, when that is
/// unset, for the hosts the run pushes to. Like docker's `config.json`, a
/// secret is keyed by host: a cache or a `--registry` elsewhere never sees it.
#[derive(Debug, Clone, Default)]
pub struct EnvCredentials {
    credential: Option<Credential>,
    /// The hosts the credential is for, as `normalize_server` writes them.
    hosts: Vec<String>,
}

impl EnvCredentials {
    /// Reads the variables; both the user name and the password must be set
    /// for a credential to exist. `push_targets` are the registries the run
    /// pushes to, which the credential is for when `SCRATCHPACK_REGISTRY` is
    /// unset.
    pub fn from_env(push_targets: &[&str]) -> Self {
        Self::from_lookup(|name| std::env::var(name).ok(), push_targets)
    }

    /// Reads the variables through `lookup`, so tests need not mutate the process
    /// environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>, push_targets: &[&str]) -> Self {
        let credential = match (lookup(USERNAME_VAR), lookup(PASSWORD_VAR)) {
            (Some(u), Some(p)) if !u.is_empty() => Some(Credential::new(u, p)),
            _ => None,
        };
        let hosts = match lookup(REGISTRY_VAR).filter(|r| !r.trim().is_empty()) {
            Some(named) => vec![normalize_server(&named)],
            None => push_targets.iter().map(|r| normalize_server(r)).collect(),
        };
        EnvCredentials { credential, hosts }
    }
}

impl CredentialSource for EnvCredentials {
    fn credential(&self, registry: &str) -> Result<Option<Credential>, CredentialError> {
        let wanted = normalize_server(registry);
        Ok(self
            .credential
            .clone()
            .filter(|_| self.hosts.contains(&wanted)))
    }
}

/// Tries each source in order; the first that has a credential wins.
#[derive(Default)]
pub struct Chain(pub Vec<Box<dyn CredentialSource>>);

impl CredentialSource for Chain {
    fn credential(&self, registry: &str) -> Result<Option<Credential>, CredentialError> {
        for source in &self.0 {
            if let Some(c) = source.credential(registry)? {
                return Ok(Some(c));
            }
        }
        Ok(None)
    }
}

/// What CLI pushes use: the CI variables first (for `SCRATCHPACK_REGISTRY`,
/// else for `push_targets`), then the Docker config.
pub fn default_credentials(push_targets: &[&str]) -> Chain {
    let mut sources: Vec<Box<dyn CredentialSource>> =
        vec![Box::new(EnvCredentials::from_env(push_targets))];
    if let Some(config) = DockerConfig::default_path() {
        sources.push(Box::new(DockerConfig::new(config)));
    }
    Chain(sources)
}

/// The Docker CLI's `config.json`, read when a credential is asked for.
#[derive(Debug, Clone)]
pub struct DockerConfig {
    path: PathBuf,
    /// Where `docker-credential-*` programs are looked up; `None` means `$PATH`.
    helper_dir: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
struct ConfigFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
}

#[derive(Deserialize, Default)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

#[derive(Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username")]
    username: String,
    #[serde(rename = "Secret")]
    secret: String,
}

impl DockerConfig {
    /// A config at an explicit path (a missing file means "no credentials").
    pub fn new(path: impl Into<PathBuf>) -> Self {
        DockerConfig {
            path: path.into(),
            helper_dir: None,
        }
    }

    /// Looks helper programs up in `dir` instead of `$PATH`.
    pub fn with_helper_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.helper_dir = Some(dir.into());
        self
    }

    /// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
    pub fn default_path() -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
            return Some(PathBuf::from(dir).join("config.json"));
        }
        std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".docker").join("config.json"))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn load(&self) -> Result<Option<ConfigFile>, CredentialError> {
        let text = match std::fs::read(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(CredentialError::ReadConfig {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        serde_json::from_slice(&text)
            .map(Some)
            .map_err(|source| CredentialError::ParseConfig {
                path: self.path.clone(),
                source,
            })
    }

    fn run_helper(
        &self,
        helper: &str,
        server: &str,
    ) -> Result<Option<Credential>, CredentialError> {
        let name = format!("docker-credential-{helper}");
        let program = match &self.helper_dir {
            Some(dir) => dir.join(&name),
            None => PathBuf::from(&name),
        };
        let fail = |reason: String| CredentialError::Helper {
            program: name.clone(),
            reason,
        };
        let spawn = || {
            Command::new(&program)
                .arg("get")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
        };
        // ETXTBSY: a helper installed a moment ago can still be open for writing in
        // a child another thread forked; that passes within milliseconds.
        const TEXT_FILE_BUSY: i32 = 26;
        let mut spawned = spawn();
        for _ in 0..10 {
            match &spawned {
                Err(e) if e.raw_os_error() == Some(TEXT_FILE_BUSY) => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    spawned = spawn();
                }
                _ => break,
            }
        }
        let mut child = spawned.map_err(|e| fail(e.to_string()))?;
        // The protocol sends the server URL alone on stdin, then closes it.
        // A helper that answers without reading stdin closes the pipe early; its
        // exit status and output decide, not the write.
        if let Some(mut stdin) = child.stdin.take() {
            match stdin.write_all(server.as_bytes()) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    return Err(fail(e.to_string()));
                }
                _ => {}
            }
        }
        let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
        if !out.status.success() {
            let said = String::from_utf8_lossy(&out.stdout).trim().to_owned()
                + String::from_utf8_lossy(&out.stderr).trim();
            // Helpers report a missing entry this way; it is not an error.
            if said.contains("credentials not found") {
                return Ok(None);
            }
            return Err(fail(format!("exited with {}: {said}", out.status)));
        }
        let answer: HelperAnswer = serde_json::from_slice(&out.stdout)
            .map_err(|e| fail(format!("unreadable answer: {e}")))?;
        Ok(Some(Credential::new(answer.username, answer.secret)))
    }
}

impl CredentialSource for DockerConfig {
    fn credential(&self, registry: &str) -> Result<Option<Credential>, CredentialError> {
        let Some(config) = self.load()? else {
            return Ok(None);
        };
        let wanted = normalize_server(registry);
        // A per-registry helper wins over everything, then the global store.
        if let Some((_, helper)) = config
            .cred_helpers
            .iter()
            .find(|(k, _)| normalize_server(k) == wanted)
        {
            return self.run_helper(helper, &helper_server(registry));
        }
        if let Some(store) = &config.creds_store {
            return self.run_helper(store, &helper_server(registry));
        }
        let Some((server, entry)) = config
            .auths
            .iter()
            .find(|(k, _)| normalize_server(k) == wanted)
        else {
            return Ok(None);
        };
        let bad = |reason: &str| CredentialError::BadAuth {
            server: server.clone(),
            path: self.path.clone(),
            reason: reason.to_owned(),
        };
        if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
            let decoded = STANDARD
                .decode(auth.trim())
                .map_err(|e| bad(&e.to_string()))?;
            let decoded = String::from_utf8(decoded).map_err(|_| bad("not UTF-8"))?;
            let (user, pass) = decoded
                .split_once(':')
                .ok_or_else(|| bad("no ':' between user and password"))?;
            return Ok(Some(Credential::new(user, pass)));
        }
        match (&entry.username, &entry.password) {
            (Some(u), Some(p)) => Ok(Some(Credential::new(u.as_str(), p.as_str()))),
            _ => Ok(None),
        }
    }
}

/// Reduces a config key or registry name to a bare host, so that
/// `https://host/v1/`, `http://host` and `host` all match, and Docker Hub's
/// aliases meet in one name.
fn normalize_server(server: &str) -> String {
    let s = server.trim();
    let s = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s);
    let host = s.split('/').next().unwrap_or(s).to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_owned()
        }
        _ => host,
    }
}

/// The server string helpers are asked about: Docker Hub's historical key, or the host.
fn helper_server(registry: &str) -> String {
    if normalize_server(registry) == "docker.io" {
        DOCKER_HUB_KEY.to_owned()
    } else {
        registry.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path, json: &str) -> DockerConfig {
        let path = dir.join("config.json");
        std::fs::write(&path, json).unwrap();
        DockerConfig::new(path)
    }

    #[test]
    fn reads_base64_auth_and_plain_fields() {
        let dir = tempfile::tempdir().unwrap();
        let auth = STANDARD.encode("alice:s3cr:et");
        let c = config(
            dir.path(),
            &format!(
                r#"{{"auths":{{"https://localhost:5000/v1/":{{"auth":"{auth}"}},
                   "other.example":{{"username":"bob","password":"pw"}}}}}}"#
            ),
        );
        assert_eq!(
            c.credential("localhost:5000").unwrap(),
            Some(Credential::new("alice", "s3cr:et"))
        );
        assert_eq!(
            c.credential("other.example").unwrap(),
            Some(Credential::new("bob", "pw"))
        );
        assert_eq!(c.credential("nowhere.example").unwrap(), None);
    }

    #[test]
    fn docker_hub_aliases_meet() {
        let dir = tempfile::tempdir().unwrap();
        let auth = STANDARD.encode("u:p");
        let c = config(
            dir.path(),
            &format!(r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{auth}"}}}}}}"#),
        );
        assert_eq!(
            c.credential("docker.io").unwrap(),
            Some(Credential::new("u", "p"))
        );
    }

    #[test]
    fn missing_file_is_anonymous_and_bad_json_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            DockerConfig::new(dir.path().join("none.json"))
                .credential("x.io")
                .unwrap(),
            None
        );
        let c = config(dir.path(), "{not json");
        let e = c.credential("x.io").unwrap_err().to_string();
        assert!(e.starts_with("parsing docker config"), "{e}");
    }

    #[cfg(unix)]
    fn helper(dir: &Path, name: &str, script: &str) {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(format!("docker-credential-{name}"));
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn credential_helpers_are_run_with_the_server_on_stdin() {
        let dir = tempfile::tempdir().unwrap();
        // The helper echoes back the server it was asked about as the username.
        helper(
            dir.path(),
            "fake",
            "#!/bin/sh\n[ \"$1\" = get ] || exit 3\nread -r s\nprintf '{\"ServerURL\":\"%s\",\"Username\":\"%s\",\"Secret\":\"tok\"}' \"$s\" \"$s\"\n",
        );
        helper(
            dir.path(),
            "empty",
            "#!/bin/sh\necho 'credentials not found in native keychain'\nexit 1\n",
        );
        let c = config(
            dir.path(),
            r#"{"credsStore":"empty","credHelpers":{"reg.example:5000":"fake","docker.io":"fake"}}"#,
        )
        .with_helper_dir(dir.path());
        assert_eq!(
            c.credential("reg.example:5000").unwrap(),
            Some(Credential::new("reg.example:5000", "tok"))
        );
        assert_eq!(
            c.credential("docker.io").unwrap(),
            Some(Credential::new(DOCKER_HUB_KEY, "tok"))
        );
        assert_eq!(c.credential("elsewhere.example").unwrap(), None);
    }

    #[cfg(unix)]
    #[test]
    fn failing_helper_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        helper(
            dir.path(),
            "broken",
            "#!/bin/sh\necho 'keychain locked' >&2\nexit 2\n",
        );
        let c = config(dir.path(), r#"{"credsStore":"broken"}"#).with_helper_dir(dir.path());
        let e = c.credential("x.example").unwrap_err().to_string();
        assert!(
            e.contains("docker-credential-broken") && e.contains("keychain locked"),
            "{e}"
        );
        let c = config(dir.path(), r#"{"credsStore":"absent"}"#).with_helper_dir(dir.path());
        assert!(c.credential("x.example").is_err());
    }

    #[test]
    fn env_needs_both_variables_and_chain_takes_the_first() {
        let none =
            EnvCredentials::from_lookup(|n| (n == USERNAME_VAR).then(|| "u".to_owned()), &["r"]);
        assert_eq!(none.credential("r").unwrap(), None);
        let env = EnvCredentials::from_lookup(
            |n| match n {
                USERNAME_VAR => Some("u".to_owned()),
                PASSWORD_VAR => Some("p".to_owned()),
                _ => None,
            },
            &["r"],
        );
        let chain = Chain(vec![
            Box::new(Anonymous),
            Box::new(env),
            Box::new(StaticCredential(Credential::new("late", "x"))),
        ]);
        assert_eq!(
            chain.credential("r").unwrap(),
            Some(Credential::new("u", "p"))
        );
    }

    fn env(registry: Option<&str>) -> impl Fn(&str) -> Option<String> {
        let registry = registry.map(str::to_owned);
        move |n| match n {
            USERNAME_VAR => Some("ci".to_owned()),
            PASSWORD_VAR => Some("pw".to_owned()),
            REGISTRY_VAR => registry.clone(),
            _ => None,
        }
    }

    #[test]
    fn env_credentials_go_only_to_the_push_targets() {
        let creds = EnvCredentials::from_lookup(env(None), &["registry.example:5000", "ghcr.io"]);
        let ci = Some(Credential::new("ci", "pw"));
        assert_eq!(creds.credential("registry.example:5000").unwrap(), ci);
        assert_eq!(creds.credential("GHCR.io").unwrap(), ci);
        // A cache, or any registry the run does not push to, gets nothing.
        assert_eq!(creds.credential("cache.example").unwrap(), None);
        assert_eq!(creds.credential("registry.example:5001").unwrap(), None);
        assert_eq!(creds.credential("registry.example").unwrap(), None);
        // With nothing to push, they go nowhere.
        let idle = EnvCredentials::from_lookup(env(None), &[]);
        assert_eq!(idle.credential("registry.example:5000").unwrap(), None);
    }

    #[test]
    fn env_credentials_named_registry_wins_over_push_targets() {
        let creds = EnvCredentials::from_lookup(env(Some("cache.example")), &["ghcr.io"]);
        assert_eq!(
            creds.credential("cache.example").unwrap(),
            Some(Credential::new("ci", "pw"))
        );
        assert_eq!(creds.credential("ghcr.io").unwrap(), None);
        let hub = EnvCredentials::from_lookup(env(Some("https://index.docker.io/v1/")), &[]);
        assert!(hub.credential("docker.io").unwrap().is_some());
    }

    #[test]
    fn debug_hides_the_secret() {
        let s = format!("{:?}", Credential::new("me", "hunter2"));
        assert!(s.contains("me") && !s.contains("hunter2"), "{s}");
    }
}
