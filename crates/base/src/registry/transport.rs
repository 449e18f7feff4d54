//! Talking to one registry over HTTP: requests and their answers,
//! authentication on 401 (Basic, RFC 7617; Bearer tokens, RFC 6750, from the
//! token service a challenge names, as docker's token authentication
//! specification describes), bounded, backed-off retries of transient
//! failures, and progress reports. Credentials go only to the registry's own
//! origin and the token service its challenges name, and in clear text only
//! where nothing crosses a network or the registry itself is plain HTTP.
//! Every answer is bounded: no byte for the idle timeout fails a request,
//! each operation (a request and its retries) has a time budget, and every
//! body is read within a limit its caller sets, or streamed to the caller.
//! The endpoints themselves are the protocol's (`api`, `remote`).

use std::io::{Read, Write};
use std::marker::PhantomData;
use std::time::{Duration, Instant};

use ureq::RequestExt as _;
use ureq::http::{HeaderMap, Method, Request};

use super::auth::{AuthState, Challenge, parse_challenges, parse_token, push_scopes};
use super::credentials::Credential;
use super::error::{Failure, RegistryError};
use super::options::{ProgressEvent, PushOptions};
use super::reference::Repository;

/// What a request wants of its answer's body.
pub(crate) enum Want<'w> {
    /// Only the registry's words when it refuses: at most [`WORDS`] bytes of
    /// any answer are kept, the rest left unread.
    Words,
    /// A successful answer's body, at most this many bytes; more is a
    /// failure. Other answers are read as [`Want::Words`].
    Bytes(u64),
    /// A successful answer's body written to `to` as it arrives, at most
    /// `limit` bytes; more is a failure. Other answers are read as
    /// [`Want::Words`].
    Stream { to: &'w mut dyn Write, limit: u64 },
}

/// The most bytes kept of an answer whose body only explains a status: the
/// distribution spec's error JSON is a few hundred bytes.
const WORDS: u64 = 64 << 10;

/// The most bytes of a token service's answer: a JSON object with a token
/// (a JWT of a few KiB at most) and its lifetime.
const MAX_TOKEN_ANSWER: u64 = 1 << 20;

/// One answer from the registry: the status, the headers, and the body as
/// the request's [`Want`] asked for it (empty when it was streamed).
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

/// The push options a client works with, owned so that a client can move to
/// another thread.
#[derive(Debug, Clone)]
pub(super) struct ClientSettings {
    pub(super) chunk_size: usize,
    retries: u32,
    backoff: Duration,
    max_backoff: Duration,
    /// Each operation's time budget, retries included.
    budget: Duration,
    /// How long a request may go without a byte moving.
    idle: Duration,
    pub(super) mount_from: Option<String>,
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
    pub(super) settings: ClientSettings,
    /// When the operation under way must be done by.
    deadline: Option<Instant>,
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
            // No byte for the idle timeout, in any direction, fails the
            // request; connecting and the answer's headers get no longer,
            // so a registry cannot hold a request by answering slowly. The
            // whole request is bounded by the operation's budget, set per
            // request.
            .timeout_connect(Some(opts.limits.idle_timeout))
            .timeout_per_read(Some(opts.limits.idle_timeout))
            .timeout_per_write(Some(opts.limits.idle_timeout))
            .timeout_recv_response(Some(opts.limits.idle_timeout))
            .user_agent(concat!("scratchpack/", env!("CARGO_PKG_VERSION")))
            .build();
        Client {
            agent: config.into(),
            base: format!("{scheme}://{}", repo.api_host()),
            scopes: push_scopes(repo.name(), opts.mount_from.as_deref()),
            repo: repo.clone(),
            credential,
            auth: AuthState::default(),
            settings: ClientSettings {
                chunk_size: opts.chunk_size,
                retries: opts.retries,
                backoff: opts.backoff,
                max_backoff: opts.max_backoff,
                budget: opts.limits.timeout,
                idle: opts.limits.idle_timeout,
                mount_from: opts.mount_from.clone(),
            },
            deadline: None,
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
            deadline: None,
            sink,
            stats: Stats::default(),
            _opts: PhantomData,
        }
    }

    pub(super) fn progress(&self, event: ProgressEvent<'_>) {
        self.sink.event(&event);
    }

    /// Runs `op` until it succeeds, fails for good, has been retried
    /// `opts.retries` times, or has used its time budget, waiting longer
    /// after each transient failure. Every request `op` makes is cut off
    /// when the budget runs out, and no retry starts that would begin after
    /// it.
    pub(super) fn retrying<T>(
        &mut self,
        action: &str,
        mut op: impl FnMut(&mut Self) -> Result<T, Failure>,
    ) -> Result<T, RegistryError> {
        let outer = self.deadline;
        let started = Instant::now();
        let own = started + self.settings.budget;
        // An operation inside another keeps within the outer one's budget.
        self.deadline = Some(outer.map_or(own, |o| o.min(own)));
        let result = self.retry_loop(action, started, &mut op);
        self.deadline = outer;
        result
    }

    fn retry_loop<T>(
        &mut self,
        action: &str,
        started: Instant,
        op: &mut impl FnMut(&mut Self) -> Result<T, Failure>,
    ) -> Result<T, RegistryError> {
        let mut tries = 0u32;
        // What the last retried try failed with: when the budget then cuts
        // a try short, that says more than the cut.
        let mut earlier = None;
        loop {
            tries += 1;
            match op(self) {
                Ok(v) => return Ok(v),
                Err(Failure::BudgetSpent) => {
                    return Err(RegistryError::Request {
                        action: action.to_owned(),
                        failure: self.out_of_time(earlier.unwrap_or(Failure::BudgetSpent), started),
                        tries,
                    });
                }
                Err(failure) if failure.is_transient() && tries <= self.settings.retries => {
                    let exp = self
                        .settings
                        .backoff
                        .saturating_mul(1u32 << (tries - 1).min(16));
                    let delay = exp
                        .max(failure.retry_after().unwrap_or_default())
                        .min(self.settings.max_backoff);
                    if self.deadline.is_some_and(|d| Instant::now() + delay >= d) {
                        return Err(RegistryError::Request {
                            action: action.to_owned(),
                            failure: self.out_of_time(failure, started),
                            tries,
                        });
                    }
                    self.stats.retries += 1;
                    let reason = failure.to_string();
                    self.progress(ProgressEvent::Retrying {
                        action,
                        attempt: tries,
                        delay,
                        reason: &reason,
                    });
                    std::thread::sleep(delay);
                    earlier = Some(failure);
                }
                Err(failure) => {
                    let failure = if self.deadline.is_some_and(|d| Instant::now() >= d) {
                        self.out_of_time(failure, started)
                    } else {
                        failure
                    };
                    return Err(RegistryError::Request {
                        action: action.to_owned(),
                        failure,
                        tries,
                    });
                }
            }
        }
    }

    /// `failure`, saying that the operation's budget is spent.
    fn out_of_time(&self, failure: Failure, started: Instant) -> Failure {
        Failure::OutOfTime {
            last: Box::new(failure),
            spent: started.elapsed(),
            budget: self.settings.budget,
        }
    }

    /// Gives the operation under way its whole budget again: a chunked
    /// upload calls it for each chunk the registry accepts, so a large blob
    /// is bounded by its progress rather than by its size.
    pub(super) fn progressed(&mut self) {
        if self.deadline.is_some() {
            self.deadline = Some(Instant::now() + self.settings.budget);
        }
    }

    /// What is left of the operation's budget; a failure when nothing is.
    fn time_left(&self) -> Result<Option<Duration>, Failure> {
        let Some(deadline) = self.deadline else {
            return Ok(None);
        };
        match deadline.checked_duration_since(Instant::now()) {
            Some(left) if !left.is_zero() => Ok(Some(left)),
            _ => Err(Failure::BudgetSpent),
        }
    }

    /// Sends a request, answering one authentication challenge if the registry
    /// makes one. A second 401 means the credentials (or their absence) are refused.
    pub(super) fn request(
        &mut self,
        method: Method,
        url: &str,
        headers: &[(&str, String)],
        body: Option<&[u8]>,
        want: &mut Want<'_>,
    ) -> Result<Answer, Failure> {
        let mut challenged = false;
        // Credentials go to the registry only: an upload URL the registry
        // hands out may point at another host (storage, a CDN).
        let home = same_origin(url, &self.base);
        loop {
            let authorization = if home { self.authorization()? } else { None };
            let answer = self.send(
                method.clone(),
                url,
                headers,
                body,
                authorization.as_deref(),
                want,
            )?;
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
        let answer = self.send(
            Method::GET,
            &url,
            &[],
            None,
            basic.as_deref(),
            &mut Want::Bytes(MAX_TOKEN_ANSWER),
        )?;
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
        want: &mut Want<'_>,
    ) -> Result<Answer, Failure> {
        let mut builder = Request::builder().method(method.clone()).uri(url);
        for (name, value) in headers {
            builder = builder.header(*name, value.as_str());
        }
        if let Some(auth) = authorization {
            builder = builder.header("authorization", auth);
        }
        let left = self.time_left()?;
        self.stats.requests += 1;
        let agent = &self.agent;
        let result = match body {
            Some(bytes) => builder
                .body(bytes)
                .map(|r| r.with_agent(agent).configure().timeout_global(left).run()),
            None => builder
                .body(())
                .map(|r| r.with_agent(agent).configure().timeout_global(left).run()),
        };
        let idle = self.settings.idle;
        let failed = |e: ureq::Error| transport_failure(e, idle);
        let mut response = result
            .map_err(|e| Failure::Protocol(format!("building a request for {url}: {e}")))?
            .map_err(failed)?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let reader = response.body_mut().with_config().reader();
        let success = (200..300).contains(&status);
        // A connection cut while the answer's body is read is as transient as one
        // cut while sending.
        let read_failed = |e: std::io::Error| io_failure(e, idle);
        let too_large = |limit: u64| {
            Failure::Protocol(format!(
                "the answer to {method} {} is more than {limit} bytes",
                origin_and_path(url)
            ))
        };
        let body = match want {
            Want::Stream { to, limit } if success => {
                let copied = std::io::copy(&mut reader.take(limit.saturating_add(1)), to)
                    .map_err(read_failed)?;
                if copied > *limit {
                    return Err(too_large(*limit));
                }
                Vec::new()
            }
            Want::Bytes(limit) if success => {
                let mut body = Vec::new();
                reader
                    .take(limit.saturating_add(1))
                    .read_to_end(&mut body)
                    .map_err(read_failed)?;
                if body.len() as u64 > *limit {
                    return Err(too_large(*limit));
                }
                body
            }
            _ => {
                // The rest stays unread: the words that explain a status fit
                // well within this, and nothing else of the body is used.
                let mut body = Vec::new();
                reader
                    .take(WORDS)
                    .read_to_end(&mut body)
                    .map_err(read_failed)?;
                body
            }
        };
        Ok(Answer {
            status,
            headers,
            body,
        })
    }
}

/// Connection trouble may pass; a bad URL or a TLS problem will not. A
/// timeout says which bound it hit.
fn transport_failure(e: ureq::Error, idle: Duration) -> Failure {
    if let ureq::Error::Timeout(ureq::Timeout::Global) = e {
        return Failure::BudgetSpent;
    }
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
    let message = match &e {
        ureq::Error::Timeout(ureq::Timeout::RecvResponse) => format!(
            "the answer's headers did not arrive within the idle timeout ({} s)",
            idle.as_secs_f64()
        ),
        ureq::Error::Timeout(_) => format!(
            "no byte moved for the idle timeout ({} s)",
            idle.as_secs_f64()
        ),
        _ => e.to_string(),
    };
    Failure::Transport { message, transient }
}

/// A failure while an answer's body is read: ureq's own error when it is
/// one (a timeout), the connection's otherwise.
fn io_failure(e: std::io::Error, idle: Duration) -> Failure {
    if e.get_ref().is_some_and(|inner| inner.is::<ureq::Error>()) {
        let inner = e
            .into_inner()
            .and_then(|inner| inner.downcast::<ureq::Error>().ok())
            .expect("checked to be a ureq error");
        return transport_failure(*inner, idle);
    }
    transport_failure(ureq::Error::Io(e), idle)
}

/// A URL without its query, for messages: upload URLs carry session state
/// there.
fn origin_and_path(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
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
pub(super) fn encode(value: &str) -> String {
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
