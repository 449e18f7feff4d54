//! The keys of a service test as written: `service`, `requests` and `stop`
//! (README's "Service tests"), read from the spanned tree like every other
//! key, each value keeping where it was written.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::{RawOutput, RawRequests, S, V, Walker};

/// `service = { port, ready-timeout, ready = { http } }`.
#[derive(Debug)]
pub(crate) struct RawService {
    pub port: Option<S<i64>>,
    pub ready_timeout: Option<S<f64>>,
    pub ready_http: Option<S<String>>,
}

/// One entry of `requests`: an HTTP request and what its answer must be,
/// or a `tcp` exchange.
#[derive(Debug, Default)]
pub(crate) struct RawRequest {
    pub method: Option<S<String>>,
    pub path: Option<S<String>>,
    pub headers: Option<Vec<(S<String>, S<String>)>>,
    pub body_text: Option<S<String>>,
    pub status: Option<S<i64>>,
    pub response_headers: Option<Vec<(S<String>, S<String>)>>,
    pub body: Option<RawOutput>,
    pub tcp: Option<RawTcp>,
    /// The HTTP keys the entry sets, with where each was written: they do
    /// not go with `tcp`.
    pub http_keys: Vec<(&'static str, Range<usize>)>,
}

/// `tcp = { send, expect }`.
#[derive(Debug, Default)]
pub(crate) struct RawTcp {
    pub span: Range<usize>,
    pub send: Option<S<String>>,
    pub send_hex: Option<S<String>>,
    pub expect: Option<RawOutput>,
}

/// `stop = { exit-code, timeout }`.
#[derive(Debug)]
pub(crate) struct RawStop {
    /// Where the `stop` key was written.
    pub key: Range<usize>,
    pub exit_code: Option<S<i64>>,
    pub timeout: Option<S<f64>>,
}

const SERVICE_KEYS: &[&str] = &["port", "ready-timeout", "ready"];
const READY_KEYS: &[&str] = &["http"];
const REQUEST_KEYS: &[&str] = &[
    "method",
    "path",
    "headers",
    "body-text",
    "status",
    "response-headers",
    "body",
    "tcp",
];
const TCP_KEYS: &[&str] = &["send", "send-hex", "expect"];
const STOP_KEYS: &[&str] = &["exit-code", "timeout"];

impl Walker<'_> {
    /// An integer, or a problem saying what was expected instead.
    fn whole(&mut self, what: &str, expected: &str, v: &V<'_>) -> Option<S<i64>> {
        match v.get_ref() {
            DeValue::Integer(_) => self.integer(v).map(|i| Spanned::new(v.span(), i)),
            _ => {
                self.wrong_type(what, expected, v);
                None
            }
        }
    }

    pub(super) fn service(&mut self, what: &str, v: &V<'_>) -> Option<RawService> {
        let t = self.table(what, v)?;
        let mut s = RawService {
            port: None,
            ready_timeout: None,
            ready_http: None,
        };
        for (key, value) in t.iter() {
            let w = format!("`{}` in {what}", key.get_ref());
            match key.get_ref().as_ref() {
                "port" => s.port = self.whole(&w, "a port number", value),
                "ready-timeout" => s.ready_timeout = self.seconds(&w, value),
                "ready" => {
                    let Some(ready) = self.table(&w, value) else {
                        continue;
                    };
                    for (key, value) in ready.iter() {
                        match key.get_ref().as_ref() {
                            "http" => {
                                let w = format!("`http` in {w}");
                                s.ready_http = self.string(&w, value);
                            }
                            _ => self.unknown_key(key, &w, READY_KEYS),
                        }
                    }
                }
                _ => self.unknown_key(key, what, SERVICE_KEYS),
            }
        }
        if !t.keys().any(|k| k.get_ref() == "port") {
            self.missing_key("port", what, v.span());
        }
        Some(s)
    }

    pub(super) fn requests(
        &mut self,
        what: &str,
        key: Range<usize>,
        v: &V<'_>,
    ) -> Option<RawRequests> {
        let mut entries = Vec::new();
        for (place, span, t) in self.entries(what, v)? {
            entries.push(self.request(&place, span, t));
        }
        Some(RawRequests { key, entries })
    }

    fn request(&mut self, place: &str, span: Range<usize>, t: &DeTable<'_>) -> RawRequest {
        let mut r = RawRequest::default();
        for (key, v) in t.iter() {
            let k = key.get_ref().as_ref();
            let what = format!("`{k}` in {place}");
            let what = what.as_str();
            let http_key = REQUEST_KEYS.iter().filter(|known| **known != "tcp");
            if let Some(known) = http_key.clone().find(|known| **known == k) {
                r.http_keys.push((known, key.span()));
            }
            match k {
                "method" => r.method = self.string(what, v),
                "path" => r.path = self.string(what, v),
                "headers" => r.headers = self.string_table(what, v),
                "body-text" => r.body_text = self.string(what, v),
                "status" => r.status = self.whole(what, "an HTTP status such as 200", v),
                "response-headers" => r.response_headers = self.string_table(what, v),
                "body" => r.body = self.output(what, v),
                "tcp" => r.tcp = self.tcp(what, v),
                _ => self.unknown_key(key, place, REQUEST_KEYS),
            }
        }
        let has = |name: &str| t.keys().any(|k| k.get_ref() == name);
        if !has("tcp") && !has("path") {
            self.missing_key("path", place, span);
        }
        r
    }

    fn tcp(&mut self, what: &str, v: &V<'_>) -> Option<RawTcp> {
        let t = self.table(what, v)?;
        let mut tcp = RawTcp {
            span: v.span(),
            ..RawTcp::default()
        };
        for (key, value) in t.iter() {
            let w = format!("`{}` in {what}", key.get_ref());
            match key.get_ref().as_ref() {
                "send" => tcp.send = self.string(&w, value),
                "send-hex" => tcp.send_hex = self.string(&w, value),
                "expect" => tcp.expect = self.output(&w, value),
                _ => self.unknown_key(key, what, TCP_KEYS),
            }
        }
        Some(tcp)
    }

    pub(super) fn stop(&mut self, what: &str, key: Range<usize>, v: &V<'_>) -> Option<RawStop> {
        let t = self.table(what, v)?;
        let mut stop = RawStop {
            key,
            exit_code: None,
            timeout: None,
        };
        for (key, value) in t.iter() {
            let w = format!("`{}` in {what}", key.get_ref());
            match key.get_ref().as_ref() {
                "exit-code" => stop.exit_code = self.whole(&w, "an integer", value),
                "timeout" => stop.timeout = self.seconds(&w, value),
                _ => self.unknown_key(key, what, STOP_KEYS),
            }
        }
        Some(stop)
    }
}
