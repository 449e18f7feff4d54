//! The distribution API calls a push makes (OCI distribution spec "Push": checking
//! blobs, monolithic and chunked uploads, cross-repository mounts, manifests), with
//! authentication on 401 and bounded, backed-off retries of transient failures.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::marker::PhantomData;
use std::time::Duration;

use ureq::http::{HeaderMap, Method, Request};

use super::auth::{AuthState, Challenge, parse_challenges, parse_token, push_scopes};
use super::credentials::Credential;
use super::error::{Failure, RegistryError};
use super::layout::{BlobFile, ManifestBlob};
use super::reference::Repository;
use super::{ProgressEvent, PushOptions};

const OCTET_STREAM: &str = "application/octet-stream";

/// One answer from the registry, read in full (answers are small; blobs only go up).
pub(crate) struct Answer {
    pub status: u16,
    pub(super) headers: HeaderMap,
    pub(super) body: Vec<u8>,
}

impl Answer {
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub(super) fn failure(&self) -> Failure {
        // `Retry-After` in seconds; the HTTP-date form is rare from registries and
        // falls back to the client's own backoff.
        let retry_after = self
            .header("retry-after")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        Failure::from_status(self.status, &self.body, retry_after)
    }
}

/// What asking to upload a blob started.
pub(crate) enum Started {
    /// The registry linked the blob from the mount source: nothing to send.
    Mounted,
    Session(Upload),
}

/// An upload session the registry knows, and how many of the blob's bytes
/// it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Upload {
    pub location: String,
    pub offset: u64,
}

/// The push options a client works with, owned so that a client can move to
/// another thread.
#[derive(Debug, Clone)]
struct Settings {
    chunk_size: usize,
    retries: u32,
    backoff: Duration,
    max_backoff: Duration,
    mount_from: Option<String>,
}

/// Where a client's progress events go.
pub(crate) trait Sink {
    fn event(&self, event: &ProgressEvent<'_>);
}

/// The caller's callback, called on the caller's thread.
pub(crate) type Direct<'p> = Option<&'p dyn Fn(&ProgressEvent<'_>)>;

impl Sink for Direct<'_> {
    fn event(&self, event: &ProgressEvent<'_>) {
        if let Some(report) = self {
            report(event);
        }
    }
}

/// Counters the push report is made from.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub requests: u32,
    pub retries: u32,
    pub bytes_uploaded: u64,
}

/// A session with one repository on one registry.
pub(crate) struct Client<'o, 'p, S: Sink = Direct<'p>> {
    agent: ureq::Agent,
    /// `scheme://host[:port]`, the prefix of every API URL.
    pub(super) base: String,
    pub(super) repo: Repository,
    credential: Option<Credential>,
    auth: AuthState,
    /// The scopes tokens are asked for: the push scope, the mount source's pull
    /// scope, and any scope a challenge named.
    scopes: Vec<String>,
    settings: Settings,
    pub sink: S,
    pub stats: Stats,
    // The lifetimes the callers name; a client holds no borrow of the options.
    _opts: PhantomData<fn() -> (&'o (), &'p ())>,
}

impl<'o, 'p> Client<'o, 'p> {
    pub(super) fn new(
        repo: &Repository,
        credential: Option<Credential>,
        opts: &'o PushOptions<'p>,
    ) -> Self {
        let scheme = if opts.insecure { "http" } else { "https" };
        let config = ureq::Agent::config_builder()
            // Statuses are the protocol here: 202, 404 and 401 are all expected answers.
            .http_status_as_error(false)
            // Plain HTTP only when the caller asked for it.
            .https_only(!opts.insecure)
            // Push endpoints do not redirect; a redirect is reported, not followed
            // (following one would re-send the body and the credentials elsewhere).
            .max_redirects(0)
            .max_redirects_will_error(false)
            .timeout_connect(Some(opts.timeout))
            .timeout_per_call(Some(opts.timeout))
            .user_agent(concat!("scratchpack/", env!("CARGO_PKG_VERSION")))
            .build();
        Client {
            agent: config.into(),
            base: format!("{scheme}://{}", repo.api_host()),
            scopes: push_scopes(repo.name(), opts.mount_from.as_deref()),
            repo: repo.clone(),
            credential,
            auth: AuthState::default(),
            settings: Settings {
                chunk_size: opts.chunk_size,
                retries: opts.retries,
                backoff: opts.backoff,
                max_backoff: opts.max_backoff,
                mount_from: opts.mount_from.clone(),
            },
            sink: opts.progress,
            stats: Stats::default(),
            _opts: PhantomData,
        }
    }
}

impl<'o, 'p, S: Sink> Client<'o, 'p, S> {
    /// Another client on the same connections with what this one has learnt
    /// (how to authenticate, its tokens), reporting to `sink`, with counters
    /// of its own.
    pub(super) fn with_sink<T: Sink>(&self, sink: T) -> Client<'o, 'p, T> {
        Client {
            agent: self.agent.clone(),
            base: self.base.clone(),
            repo: self.repo.clone(),
            credential: self.credential.clone(),
            auth: self.auth.clone(),
            scopes: self.scopes.clone(),
            settings: self.settings.clone(),
            sink,
            stats: Stats::default(),
            _opts: PhantomData,
        }
    }

    fn progress(&self, event: ProgressEvent<'_>) {
        self.sink.event(&event);
    }

    /// Runs `op` until it succeeds, fails for good, or has been retried
    /// `opts.retries` times, waiting longer after each transient failure.
    pub(super) fn retrying<T>(
        &mut self,
        action: &str,
        mut op: impl FnMut(&mut Self) -> Result<T, Failure>,
    ) -> Result<T, RegistryError> {
        let mut tries = 0u32;
        loop {
            tries += 1;
            match op(self) {
                Ok(v) => return Ok(v),
                Err(failure) if failure.is_transient() && tries <= self.settings.retries => {
                    let exp = self
                        .settings
                        .backoff
                        .saturating_mul(1u32 << (tries - 1).min(16));
                    let delay = exp
                        .max(failure.retry_after().unwrap_or_default())
                        .min(self.settings.max_backoff);
                    self.stats.retries += 1;
                    let reason = failure.to_string();
                    self.progress(ProgressEvent::Retrying {
                        action,
                        attempt: tries,
                        delay,
                        reason: &reason,
                    });
                    std::thread::sleep(delay);
                }
                Err(failure) => {
                    return Err(RegistryError::Request {
                        action: action.to_owned(),
                        failure,
                        tries,
                    });
                }
            }
        }
    }

    /// `GET /v2/`: checks the endpoint speaks the distribution API and learns how it
    /// wants to be authenticated, before any blob is touched.
    pub(super) fn ping(&mut self) -> Result<(), Failure> {
        let url = format!("{}/v2/", self.base);
        let answer = self.request(Method::GET, &url, &[], None)?;
        match answer.status {
            200 => Ok(()),
            _ => Err(answer.failure()),
        }
    }

    pub(super) fn blob_exists(&mut self, digest: &str) -> Result<bool, Failure> {
        let url = format!("{}/v2/{}/blobs/{digest}", self.base, self.repo.name());
        let answer = self.request(Method::HEAD, &url, &[], None)?;
        match answer.status {
            200 => Ok(true),
            // Registries that keep blobs in object storage redirect to it, which
            // they only do for a blob they have.
            301 | 302 | 303 | 307 | 308 => Ok(true),
            404 => Ok(false),
            _ => Err(answer.failure()),
        }
    }

    pub(super) fn manifest_exists(&mut self, manifest: &ManifestBlob) -> Result<bool, Failure> {
        let url = format!(
            "{}/v2/{}/manifests/{}",
            self.base,
            self.repo.name(),
            manifest.digest
        );
        let accept = [("accept", manifest.media_type.clone())];
        let answer = self.request(Method::HEAD, &url, &accept, None)?;
        match answer.status {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(answer.failure()),
        }
    }

    /// `PUT /v2/<name>/manifests/<reference>` with the exact local bytes.
    pub(super) fn put_manifest(
        &mut self,
        reference: &str,
        manifest: &ManifestBlob,
    ) -> Result<(), Failure> {
        let url = format!(
            "{}/v2/{}/manifests/{reference}",
            self.base,
            self.repo.name()
        );
        let headers = [("content-type", manifest.media_type.clone())];
        let answer = self.request(Method::PUT, &url, &headers, Some(&manifest.bytes))?;
        if answer.status != 201 {
            return Err(answer.failure());
        }
        check_digest(&answer, &manifest.digest, "manifest")
    }

    /// Asks to upload one blob: a mount when a source repository is set, else
    /// a new upload session.
    pub(super) fn start_upload(&mut self, blob: &BlobFile) -> Result<Started, Failure> {
        let uploads = format!("{}/v2/{}/blobs/uploads/", self.base, self.repo.name());
        let mount_from = self.settings.mount_from.clone();
        let url = match mount_from.as_deref().filter(|f| *f != self.repo.name()) {
            Some(from) => format!(
                "{uploads}?mount={}&from={}",
                encode(&blob.digest),
                encode(from)
            ),
            None => uploads,
        };
        let answer = self.request(Method::POST, &url, &[], Some(&[]))?;
        match answer.status {
            // The registry already had the blob in the source repository.
            201 if mount_from.is_some() => {
                check_digest(&answer, &blob.digest, "blob")?;
                Ok(Started::Mounted)
            }
            // An upload session: also the answer to a mount the registry declined.
            202 => {
                let location = self.location(&answer)?;
                self.progress(ProgressEvent::BlobStarted {
                    digest: &blob.digest,
                    size: blob.size,
                });
                Ok(Started::Session(Upload {
                    location,
                    offset: 0,
                }))
            }
            _ => Err(answer.failure()),
        }
    }

    /// `GET` on an upload session (distribution spec "Resuming an upload"):
    /// where it goes on and how many bytes the registry holds, from its
    /// `Range: 0-<last>`. `None` when the registry no longer knows the
    /// session (it finished, or expired) or gives no usable offset, so the
    /// blob is asked about and, if need be, sent again from its start.
    pub(super) fn upload_status(&mut self, upload: &Upload) -> Result<Option<Upload>, Failure> {
        let answer = self.request(Method::GET, &upload.location, &[], None)?;
        match answer.status {
            200 | 204 => {}
            _ => {
                let failure = answer.failure();
                return if failure.is_transient() {
                    Err(failure)
                } else {
                    Ok(None)
                };
            }
        }
        let Some(last) = answer
            .header("range")
            .and_then(|r| r.trim().strip_prefix("0-"))
            .and_then(|end| end.parse::<u64>().ok())
        else {
            return Ok(None);
        };
        // `0-0` is what distribution answers both for no bytes and for one:
        // starting again costs at most that byte.
        if last == 0 {
            return Ok(None);
        }
        let location = if answer.header("location").is_some() {
            self.location(&answer)?
        } else {
            upload.location.clone()
        };
        Ok(Some(Upload {
            location,
            offset: last + 1,
        }))
    }

    /// Sends the blob's bytes from the session's offset on: monolithic up to
    /// the chunk size (the rest in the closing PUT), chunked above it (a PATCH
    /// per chunk, then an empty closing PUT). `upload` follows every answer, so
    /// after a failure it says where the session stood.
    pub(super) fn finish_upload(
        &mut self,
        blob: &BlobFile,
        upload: &mut Upload,
    ) -> Result<(), Failure> {
        let fail_read = |e: std::io::Error| Failure::Protocol(format!("reading local blob: {e}"));
        let mut file = File::open(&blob.path).map_err(fail_read)?;
        if upload.offset > blob.size {
            return Err(Failure::Protocol(format!(
                "registry holds {} bytes of blob {}, which has {}",
                upload.offset, blob.digest, blob.size
            )));
        }
        file.seek(SeekFrom::Start(upload.offset))
            .map_err(fail_read)?;
        let chunk_size = self.settings.chunk_size.max(1) as u64;
        let final_body: Vec<u8> = if blob.size <= chunk_size {
            let mut body = Vec::with_capacity((blob.size - upload.offset) as usize);
            (&mut file)
                .take(blob.size - upload.offset)
                .read_to_end(&mut body)
                .map_err(fail_read)?;
            body
        } else {
            let mut buf = vec![0u8; chunk_size as usize];
            while upload.offset < blob.size {
                let offset = upload.offset;
                let n = (blob.size - offset).min(chunk_size) as usize;
                file.read_exact(&mut buf[..n]).map_err(fail_read)?;
                let headers = [
                    ("content-type", OCTET_STREAM.to_owned()),
                    // Inclusive byte range, as the spec's chunked upload asks.
                    (
                        "content-range",
                        format!("{offset}-{}", offset + n as u64 - 1),
                    ),
                ];
                let result =
                    self.request(Method::PATCH, &upload.location, &headers, Some(&buf[..n]));
                self.stats.bytes_uploaded += n as u64;
                let answer = result?;
                if answer.status != 202 {
                    return Err(answer.failure());
                }
                upload.location = self.location(&answer)?;
                upload.offset = offset + n as u64;
                self.progress(ProgressEvent::BlobProgress {
                    digest: &blob.digest,
                    sent: upload.offset,
                    size: blob.size,
                });
            }
            Vec::new()
        };
        let url = with_query(&upload.location, "digest", &blob.digest);
        let headers = [("content-type", OCTET_STREAM.to_owned())];
        let result = self.request(Method::PUT, &url, &headers, Some(&final_body));
        self.stats.bytes_uploaded += final_body.len() as u64;
        let answer = result?;
        if answer.status != 201 {
            return Err(answer.failure());
        }
        check_digest(&answer, &blob.digest, "blob")?;
        self.progress(ProgressEvent::BlobProgress {
            digest: &blob.digest,
            sent: blob.size,
            size: blob.size,
        });
        Ok(())
    }

    /// The upload session URL from `Location`, which may be relative to the registry.
    pub(super) fn location(&self, answer: &Answer) -> Result<String, Failure> {
        let loc = answer.header("location").ok_or_else(|| {
            Failure::Protocol("registry started an upload without a Location header".into())
        })?;
        Ok(
            if loc.starts_with("http://") || loc.starts_with("https://") {
                loc.to_owned()
            } else if loc.starts_with('/') {
                format!("{}{loc}", self.base)
            } else {
                format!("{}/{loc}", self.base)
            },
        )
    }

    /// Sends a request, answering one authentication challenge if the registry
    /// makes one. A second 401 means the credentials (or their absence) are refused.
    pub(super) fn request(
        &mut self,
        method: Method,
        url: &str,
        headers: &[(&str, String)],
        body: Option<&[u8]>,
    ) -> Result<Answer, Failure> {
        let mut challenged = false;
        // Credentials go to the registry only: an upload URL the registry
        // hands out may point at another host (storage, a CDN).
        let home = same_origin(url, &self.base);
        loop {
            let authorization = if home { self.authorization()? } else { None };
            let answer = self.send(method.clone(), url, headers, body, authorization.as_deref())?;
            if answer.status != 401 {
                return Ok(answer);
            }
            // Only the registry's own answers say how to authenticate: a
            // challenge from another host would choose where the
            // credentials go next.
            if !home {
                return Err(answer.failure().with_note(format!(
                    "{} asked for credentials; they are sent only to {} and the token \
                     service it names",
                    origin(url),
                    self.repo.registry()
                )));
            }
            if challenged {
                return Err(self.refused(&answer));
            }
            challenged = true;
            self.learn(&answer)?;
        }
    }

    fn refused(&self, answer: &Answer) -> Failure {
        let registry = self.repo.registry();
        let note = match &self.credential {
            Some(c) => format!(
                "credentials of {:?} for {registry} were refused",
                c.username
            ),
            None => format!("no credentials found for {registry}"),
        };
        answer.failure().with_note(note)
    }

    /// Updates the auth state from a 401's `WWW-Authenticate` challenges.
    fn learn(&mut self, answer: &Answer) -> Result<(), Failure> {
        let challenges = answer
            .header("www-authenticate")
            .map(parse_challenges)
            .unwrap_or_default();
        let bearer = challenges.iter().find_map(|c| match c {
            Challenge::Bearer {
                realm,
                service,
                scope,
            } => Some((realm, service, scope)),
            Challenge::Basic => None,
        });
        if let Some((realm, service, scope)) = bearer {
            // A challenge may name a scope the client did not think of.
            for s in scope
                .iter()
                .flat_map(|s| s.split(' '))
                .filter(|s| !s.is_empty())
            {
                if !self.scopes.iter().any(|have| have == s) {
                    self.scopes.push(s.to_owned());
                }
            }
            match &mut self.auth {
                // Same realm: the cached token has expired or lacks a scope.
                AuthState::Bearer {
                    realm: r, tokens, ..
                } if r == realm => {
                    tokens.remove(&self.scopes);
                }
                _ => {
                    self.auth = AuthState::Bearer {
                        realm: realm.clone(),
                        service: service.clone(),
                        tokens: Default::default(),
                    };
                }
            }
            return Ok(());
        }
        if challenges.contains(&Challenge::Basic) {
            if self.credential.is_none() {
                return Err(self.refused(answer));
            }
            self.auth = AuthState::Basic;
            return Ok(());
        }
        Err(answer
            .failure()
            .with_note("the registry sent no challenge this client can answer".into()))
    }

    /// The `Authorization` header for the next request, fetching a token if needed.
    fn authorization(&mut self) -> Result<Option<String>, Failure> {
        let (realm, service) = match &self.auth {
            AuthState::Anonymous => return Ok(None),
            AuthState::Basic => return Ok(self.credential.as_ref().map(Credential::basic_header)),
            AuthState::Bearer { tokens, .. } if tokens.contains_key(&self.scopes) => {
                return Ok(Some(format!("Bearer {}", tokens[&self.scopes])));
            }
            AuthState::Bearer { realm, service, .. } => (realm.clone(), service.clone()),
        };
        let token = self.fetch_token(&realm, service.as_deref())?;
        if let AuthState::Bearer { tokens, .. } = &mut self.auth {
            tokens.insert(self.scopes.clone(), token.clone());
        }
        Ok(Some(format!("Bearer {token}")))
    }

    /// `GET <realm>?service=…&scope=…`, with Basic credentials when there are some.
    fn fetch_token(&mut self, realm: &str, service: Option<&str>) -> Result<String, Failure> {
        let mut url = realm.to_owned();
        if let Some(service) = service {
            url = with_query(&url, "service", service);
        }
        for scope in &self.scopes {
            url = with_query(&url, "scope", scope);
        }
        let basic = match &self.credential {
            Some(c) if !self.may_send_in_clear(realm) => {
                return Err(Failure::Protocol(format!(
                    "{} names the token service {realm}, which is plain HTTP on another \
                     host: the credentials of {:?} are not sent there",
                    self.repo.registry(),
                    c.username
                )));
            }
            Some(c) => Some(c.basic_header()),
            None => None,
        };
        let answer = self.send(Method::GET, &url, &[], None, basic.as_deref())?;
        if answer.status != 200 {
            let note = match (&self.credential, answer.status) {
                (Some(c), 401 | 403) => format!(
                    "token service {realm} refused the credentials of {:?}",
                    c.username
                ),
                _ => format!("while getting a token from {realm}"),
            };
            return Err(answer.failure().with_note(note));
        }
        parse_token(&answer.body)
            .map_err(|e| Failure::Protocol(format!("getting a token from {realm}: {e}")))
    }

    /// Whether credentials may go to `url`: anything over HTTPS; plain HTTP
    /// only to the registry's own host, when it is plain HTTP itself (the
    /// user marked it insecure, or it is on this machine), or to this
    /// machine, where nothing travels over a network.
    fn may_send_in_clear(&self, url: &str) -> bool {
        let Some(rest) = url.strip_prefix("http://") else {
            return url.starts_with("https://");
        };
        let host = host_of(rest);
        let registry_in_clear = self
            .base
            .strip_prefix("http://")
            .is_some_and(|base| host_of(base).eq_ignore_ascii_case(host));
        registry_in_clear || is_loopback_host(host)
    }

    fn send(
        &mut self,
        method: Method,
        url: &str,
        headers: &[(&str, String)],
        body: Option<&[u8]>,
        authorization: Option<&str>,
    ) -> Result<Answer, Failure> {
        let mut builder = Request::builder().method(method).uri(url);
        for (name, value) in headers {
            builder = builder.header(*name, value.as_str());
        }
        if let Some(auth) = authorization {
            builder = builder.header("authorization", auth);
        }
        self.stats.requests += 1;
        let result = match body {
            Some(bytes) => builder.body(bytes).map(|r| self.agent.run(r)),
            None => builder.body(()).map(|r| self.agent.run(r)),
        };
        let mut response = result
            .map_err(|e| Failure::Protocol(format!("building a request for {url}: {e}")))?
            .map_err(transport_failure)?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        // A connection cut while the answer's body is read is as transient as one
        // cut while sending.
        let body = response
            .body_mut()
            .read_to_vec()
            .map_err(transport_failure)?;
        Ok(Answer {
            status,
            headers,
            body,
        })
    }
}

pub(super) fn check_digest(answer: &Answer, expected: &str, what: &str) -> Result<(), Failure> {
    match answer.header("docker-content-digest") {
        Some(got) if got != expected => Err(Failure::Protocol(format!(
            "registry stored the {what} as {got}, but its digest is {expected}"
        ))),
        _ => Ok(()),
    }
}

/// Connection trouble may pass; a bad URL or a TLS problem will not.
fn transport_failure(e: ureq::Error) -> Failure {
    let transient = match &e {
        // rustls reports a failed handshake (a plain-HTTP server answering,
        // a certificate it rejects) as invalid data: trying again cannot help.
        ureq::Error::Io(io) => io.kind() != std::io::ErrorKind::InvalidData,
        ureq::Error::Timeout(_)
        | ureq::Error::ConnectionFailed
        | ureq::Error::HostNotFound
        | ureq::Error::Protocol(_) => true,
        _ => false,
    };
    Failure::Transport {
        message: e.to_string(),
        transient,
    }
}

/// Whether `url` is on the registry at `base` (scheme, host and port).
fn same_origin(url: &str, base: &str) -> bool {
    url.strip_prefix(base)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['/', '?']))
}

/// `scheme://authority` of a URL, for messages.
fn origin(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let end = url[after_scheme..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| after_scheme + i);
    &url[..end]
}

/// The host of `authority[/path]` (user info and port left out; IPv6
/// brackets kept off).
fn host_of(rest: &str) -> &str {
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit('@').next().unwrap_or_default();
    match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    }
}

/// `localhost`, `127.0.0.0/8` or `::1`.
pub(crate) fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host == "::1"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

pub(super) fn with_query(url: &str, key: &str, value: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{key}={}", encode(value))
}

/// Percent-encodes a query value (RFC 3986 unreserved characters pass through).
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_stay_with_the_registry() {
        let base = "http://127.0.0.1:5000";
        assert!(same_origin(
            "http://127.0.0.1:5000/v2/x/blobs/uploads/1",
            base
        ));
        assert!(same_origin("http://127.0.0.1:5000", base));
        assert!(!same_origin("http://127.0.0.1:50001/v2/", base));
        assert!(!same_origin("https://storage.example/upload?x=1", base));
        assert!(!same_origin("http://127.0.0.1:5000.evil.example/v2/", base));
    }

    #[test]
    fn hosts_and_origins() {
        assert_eq!(host_of("u:p@Reg.example:5000/v2/"), "Reg.example");
        assert_eq!(host_of("[::1]:5000/token"), "::1");
        assert_eq!(host_of("auth.example?x=1"), "auth.example");
        assert_eq!(origin("https://a.example:1/x?y"), "https://a.example:1");
        assert_eq!(origin("http://a.example"), "http://a.example");
        assert!(is_loopback_host("127.0.0.2") && is_loopback_host("LOCALHOST"));
        assert!(!is_loopback_host("127.0.0.1.evil.example") && !is_loopback_host("10.0.0.1"));
    }

    #[test]
    fn credentials_travel_in_clear_only_to_the_insecure_registry_or_this_machine() {
        let opts = PushOptions {
            insecure: true,
            ..PushOptions::default()
        };
        let repo = Repository::parse("registry.example:5000/team/app").unwrap();
        let client = Client::new(&repo, None, &opts);
        assert!(client.may_send_in_clear("https://auth.elsewhere.example/token"));
        assert!(client.may_send_in_clear("http://registry.example:5001/token"));
        assert!(client.may_send_in_clear("http://127.0.0.1:9000/token"));
        assert!(!client.may_send_in_clear("http://auth.elsewhere.example/token"));
        assert!(!client.may_send_in_clear("http://registry.example.evil/token"));
        assert!(!client.may_send_in_clear("ftp://registry.example/token"));
        // A registry over HTTPS marked nothing insecure: its own host over
        // plain HTTP is as foreign as any.
        let secure = PushOptions::default();
        let client = Client::new(&repo, None, &secure);
        assert!(!client.may_send_in_clear("http://registry.example:5000/token"));
    }

    #[test]
    fn query_building() {
        assert_eq!(
            with_query("http://r/v2/x/blobs/uploads/u", "digest", "sha256:ab"),
            "http://r/v2/x/blobs/uploads/u?digest=sha256%3Aab"
        );
        assert_eq!(
            with_query("http://r/u?_state=a", "scope", "repository:a/b:pull,push"),
            "http://r/u?_state=a&scope=repository%3Aa%2Fb%3Apull%2Cpush"
        );
    }
}
