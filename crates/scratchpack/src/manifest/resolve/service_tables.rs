//! Resolution of a test's `service`, `requests` and `stop` keys into a
//! [`ServiceTest`] (README's "Service tests"): ports, paths, methods,
//! headers, statuses and timeouts checked where they were written.

use std::collections::BTreeMap;

use super::*;
use crate::manifest::raw::{RawRequest, RawService, RawStop, RawTcp};

/// Headers the runner writes itself: the body's length, and a connection
/// closed after each answer so that the answer's end is the connection's.
const RUNNER_HEADERS: &[&str] = &["content-length", "transfer-encoding", "connection"];

/// The most seconds a `ready-timeout` or `stop.timeout` may be, as a test's
/// `timeout`.
const MAX_SECONDS: f64 = 3600.0;

/// Whether `name` is an HTTP token (RFC 9110, 5.6.2), as a header name must be.
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

impl Resolver<'_> {
    /// The service of test `name`, if it declares one; with it, `command`
    /// (how the program runs) gets the exit code expected after the stop,
    /// and a timeout that covers the whole test unless `timeout` sets one.
    pub(super) fn service_keys(
        &mut self,
        name: &S<String>,
        t: &RawTest,
        command: Option<&mut CommandTest>,
    ) -> Option<ServiceTest> {
        let Some(service) = &t.service else {
            let keys = [
                ("requests", t.requests.as_ref().map(|r| r.key.clone())),
                ("stop", t.stop.as_ref().map(|s| s.key.clone())),
            ];
            for (key, span) in keys {
                if let Some(span) = span {
                    self.error(
                        Diagnostic::new(
                            format!("`{key}` in test `{}` needs `service`", name.get_ref()),
                            span,
                        )
                        .label("only a service test has this")
                        .help("add `service = { port = … }`: the port the program listens on"),
                    );
                }
            }
            return None;
        };
        if let Some(code) = &t.exit_code {
            self.error(
                Diagnostic::new(
                    "`exit-code` does not apply to a service test",
                    span_of(code),
                )
                .label("the exit code after the stop")
                .help("set it as `stop = { exit-code = … }`"),
            );
        }
        let (port, ready_timeout_ms, ready_http) = self.service_table(service);
        let requests: Vec<ServiceRequest> = t
            .requests
            .iter()
            .flat_map(|r| &r.entries)
            .filter_map(|r| self.request(r))
            .collect();
        let (exit_code, stop_timeout_ms) = self.stop_table(t.stop.as_ref());
        if let Some(command) = command {
            command.exit_code = exit_code;
            if t.timeout.is_none() {
                let requests = u64::try_from(requests.len()).unwrap_or(u64::MAX);
                command.timeout_ms = ready_timeout_ms
                    .saturating_add(stop_timeout_ms)
                    .saturating_add(REQUEST_TIMEOUT_MS.saturating_mul(requests.saturating_add(1)));
            }
        }
        Some(ServiceTest {
            port: port?,
            ready_timeout_ms,
            ready_http,
            requests,
            stop_timeout_ms,
        })
    }

    /// `port`, `ready-timeout` and `ready = { http }`.
    fn service_table(&mut self, service: &RawService) -> (Option<u16>, u64, Option<String>) {
        let port = service
            .port
            .as_ref()
            .and_then(|p| match u16::try_from(*p.get_ref()) {
                Ok(port) if port > 0 => Some(port),
                _ => {
                    self.error(
                        Diagnostic::new(
                            format!("port {} is out of range", p.get_ref()),
                            span_of(p),
                        )
                        .label("ports are 1 to 65535"),
                    );
                    None
                }
            });
        let ready_timeout_ms = self.milliseconds(service.ready_timeout.as_ref());
        let ready_http = service
            .ready_http
            .as_ref()
            .and_then(|p| self.request_path(p));
        (port, ready_timeout_ms, ready_http)
    }

    /// `stop = { exit-code, timeout }`: the exit code expected and how long
    /// the program has to end.
    fn stop_table(&mut self, stop: Option<&RawStop>) -> (i32, u64) {
        let Some(stop) = stop else {
            return (0, DEFAULT_SERVICE_TIMEOUT_MS);
        };
        let exit_code = self.exit_code(stop.exit_code.as_ref());
        (exit_code, self.milliseconds(stop.timeout.as_ref()))
    }

    /// A number of seconds as milliseconds, the default when not given.
    fn milliseconds(&mut self, seconds: Option<&S<f64>>) -> u64 {
        match seconds {
            Some(s) if *s.get_ref() > 0.0 && *s.get_ref() <= MAX_SECONDS => {
                (*s.get_ref() * 1000.0).ceil() as u64
            }
            Some(s) => {
                self.error(
                    Diagnostic::new("invalid timeout", span_of(s))
                        .label("seconds, more than 0 and at most 3600"),
                );
                DEFAULT_SERVICE_TIMEOUT_MS
            }
            None => DEFAULT_SERVICE_TIMEOUT_MS,
        }
    }

    /// A request target: absolute, and only visible ASCII (no space or
    /// control character could be sent on a request line).
    fn request_path(&mut self, path: &S<String>) -> Option<String> {
        let text = path.get_ref();
        let problem = if !text.starts_with('/') {
            Some("does not start with `/`")
        } else if !text.bytes().all(|b| b.is_ascii_graphic()) {
            Some("has a space, a control or a non-ASCII character")
        } else {
            None
        };
        match problem {
            None => Some(text.clone()),
            Some(problem) => {
                self.error(
                    Diagnostic::new(format!("request path `{text}` {problem}"), span_of(path))
                        .label("not a request path")
                        .help("paths start with `/`, e.g. `/healthz`; percent-encode other characters"),
                );
                None
            }
        }
    }

    fn request(&mut self, r: &RawRequest) -> Option<ServiceRequest> {
        if let Some(tcp) = &r.tcp {
            for (key, span) in &r.http_keys {
                self.error(
                    Diagnostic::new(format!("`{key}` does not go with `tcp`"), span.clone())
                        .label("an HTTP key")
                        .help("a `tcp` exchange has only `send` and `expect`"),
                );
            }
            return self.tcp(tcp).map(ServiceRequest::Tcp);
        }
        let errors_before = self.diagnostics.len();
        let method = match &r.method {
            None => "GET".to_owned(),
            Some(m) => {
                let valid = !m.get_ref().is_empty()
                    && m.get_ref().len() <= 32
                    && m.get_ref().bytes().all(|b| b.is_ascii_uppercase());
                if !valid {
                    self.error(
                        Diagnostic::new(
                            format!("invalid HTTP method `{}`", m.get_ref()),
                            span_of(m),
                        )
                        .label("not a method")
                        .help("methods are uppercase, such as `GET`, `POST`, `PUT` or `DELETE`"),
                    );
                }
                m.get_ref().clone()
            }
        };
        let path = r.path.as_ref().and_then(|p| self.request_path(p));
        let headers = self.request_headers(r.headers.as_deref().unwrap_or_default());
        let status = r
            .status
            .as_ref()
            .and_then(|s| match u16::try_from(*s.get_ref()) {
                Ok(status) if (100..=599).contains(&status) => Some(status),
                _ => {
                    self.error(
                        Diagnostic::new(
                            format!("HTTP status {} is out of range", s.get_ref()),
                            span_of(s),
                        )
                        .label("statuses are 100 to 599"),
                    );
                    None
                }
            });
        let mut response_headers = BTreeMap::new();
        for (k, v) in r.response_headers.iter().flatten() {
            if self.header_name(k) {
                response_headers.insert(k.get_ref().to_ascii_lowercase(), v.get_ref().clone());
            }
        }
        let body_expect = self.output(r.body.as_ref());
        if self.diagnostics.len() > errors_before {
            return None;
        }
        Some(ServiceRequest::Http(HttpRequest {
            method,
            path: path?,
            headers,
            body: r.body_text.as_ref().map(|b| b.get_ref().clone()),
            status,
            response_headers,
            body_expect,
        }))
    }

    /// The headers a request sends, as written: names that are tokens and
    /// not the runner's own, values that fit on one line.
    fn request_headers(&mut self, headers: &[StringPair]) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (k, v) in headers {
            if !self.header_name(k) {
                continue;
            }
            if RUNNER_HEADERS.contains(&k.get_ref().to_ascii_lowercase().as_str()) {
                self.error(
                    Diagnostic::new(format!("the runner sets `{}` itself", k.get_ref()), span_of(k))
                        .label("set by the runner")
                        .help("each request has a `Content-Length` for its `body-text` and `Connection: close`"),
                );
                continue;
            }
            if v.get_ref().contains(['\r', '\n', '\0']) {
                self.error(
                    Diagnostic::new(
                        format!("the value of header `{}` breaks the line", k.get_ref()),
                        span_of(v),
                    )
                    .label("a carriage return, line feed or NUL"),
                );
                continue;
            }
            out.push((k.get_ref().clone(), v.get_ref().clone()));
        }
        out
    }

    fn header_name(&mut self, name: &S<String>) -> bool {
        if is_token(name.get_ref()) {
            return true;
        }
        self.error(
            Diagnostic::new(
                format!("invalid header name `{}`", name.get_ref()),
                span_of(name),
            )
            .label("not a header name")
            .help("header names are letters, digits and `!#$%&'*+-.^_`|~`"),
        );
        false
    }

    fn tcp(&mut self, tcp: &RawTcp) -> Option<TcpExchange> {
        if let (Some(_), Some(hex)) = (&tcp.send, &tcp.send_hex) {
            self.error(
                Diagnostic::new("`send` and `send-hex` both given", span_of(hex))
                    .label("a second thing to send")
                    .help("an exchange sends text (`send`) or bytes (`send-hex`), not both"),
            );
            return None;
        }
        if tcp.send.is_none() && tcp.send_hex.is_none() && tcp.expect.is_none() {
            self.error(
                Diagnostic::new(
                    "the `tcp` exchange sends and expects nothing",
                    tcp.span.clone(),
                )
                .label("empty")
                .help("give it `send = \"…\"`, `expect = { contains = [\"…\"] }` or both"),
            );
            return None;
        }
        let send = match (&tcp.send, &tcp.send_hex) {
            (Some(text), _) => text.get_ref().as_bytes().to_vec(),
            (None, Some(hex)) => self.hex(hex)?,
            (None, None) => Vec::new(),
        };
        Some(TcpExchange {
            send,
            expect: self.output(tcp.expect.as_ref()),
        })
    }
}
