//! A tiny HTTP/1.1 front on 127.0.0.1 that, per request, forwards to the real
//! registry, answers by itself, drops the connection, never answers, or
//! answers a byte at a time. Used as a fault injector, as a Bearer-token gate
//! in front of the registry, (forwarding nowhere) as a token server, and as a
//! hostile registry of its own serving documents by digest from a
//! [`Documents`] store.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// The parts of a request a policy decides on.
#[derive(Debug, Clone)]
pub(crate) struct Req {
    /// 0 for the first request the front saw, counting every connection.
    pub index: usize,
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
}

impl Req {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub(crate) enum Action {
    Forward,
    Respond {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Close the connection without reading the body or answering: the client
    /// sees a reset or an early end of stream.
    Drop,
    /// Forward to the registry, then close without passing its answer on: the
    /// registry did the work, the client never hears of it.
    ForwardThenDrop,
    /// Read the request, then send nothing and keep the connection open
    /// until the front stops: a registry that accepts and never answers.
    Stall,
    /// Answer as `Respond` would, one byte every `pause`: headers that
    /// trickle in.
    Trickle {
        status: u16,
        body: Vec<u8>,
        pause: Duration,
    },
}

type Policy = dyn Fn(&Req) -> Action + Send + Sync;

pub(crate) struct Front {
    /// The address the front listens on.
    pub ip: std::net::IpAddr,
    pub port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// Every request seen, with what was done: the status sent, or 0 for a drop.
    pub log: Arc<Mutex<Vec<(Req, u16)>>>,
}

impl Front {
    /// Starts the front; `upstream` is the registry's port, for `Action::Forward`.
    pub(crate) fn start(
        upstream: Option<u16>,
        policy: impl Fn(&Req) -> Action + Send + Sync + 'static,
    ) -> Front {
        Self::start_on([127, 0, 0, 1].into(), upstream, policy)
    }

    /// Starts the front on `ip`, e.g. an address of this machine's that is
    /// not loopback, so that a client sees another host.
    pub(crate) fn start_on(
        ip: std::net::IpAddr,
        upstream: Option<u16>,
        policy: impl Fn(&Req) -> Action + Send + Sync + 'static,
    ) -> Front {
        let listener = TcpListener::bind((ip, 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let policy: Arc<Policy> = Arc::new(policy);
        let counter = Arc::new(AtomicUsize::new(0));
        let thread = {
            let (stop, log) = (stop.clone(), log.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let (policy, log, counter, stop) =
                                (policy.clone(), log.clone(), counter.clone(), stop.clone());
                            std::thread::spawn(move || {
                                let _ = serve(stream, upstream, &*policy, &log, &counter, &stop);
                            });
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(2)),
                    }
                }
            })
        };
        Front {
            ip,
            port,
            stop,
            thread: Some(thread),
            log,
        }
    }

    pub(crate) fn host(&self) -> String {
        std::net::SocketAddr::new(self.ip, self.port).to_string()
    }

    /// The value of the named header in every request seen so far that had it.
    pub(crate) fn header_values(&self, name: &str) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter_map(|(r, _)| r.header(name).map(str::to_owned))
            .collect()
    }

    /// How many requests the front has seen.
    pub(crate) fn count(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    /// (method, path without query, status) of every request seen so far.
    pub(crate) fn requests(&self) -> Vec<(String, String, u16)> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .map(|(r, s)| {
                (
                    r.method.clone(),
                    r.target.split('?').next().unwrap().to_owned(),
                    *s,
                )
            })
            .collect()
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Serves one or more requests on a client connection.
fn serve(
    stream: TcpStream,
    upstream: Option<u16>,
    policy: &Policy,
    log: &Mutex<Vec<(Req, u16)>>,
    counter: &AtomicUsize,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut client = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let (method, target) = (
            parts.next().unwrap_or("").to_owned(),
            parts.next().unwrap_or("").to_owned(),
        );
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            reader.read_line(&mut h)?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_owned(), v.trim().to_owned()));
            }
        }
        let req = Req {
            index: counter.fetch_add(1, Ordering::SeqCst),
            method,
            target,
            headers,
        };
        let length: usize = req
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        match policy(&req) {
            Action::Drop => {
                log.lock().unwrap().push((req, 0));
                // Closing with unread bytes makes the kernel send a reset.
                let _ = client.shutdown(Shutdown::Both);
                return Ok(());
            }
            Action::Respond {
                status,
                headers,
                body,
            } => {
                let mut body_in = vec![0u8; length];
                reader.read_exact(&mut body_in)?;
                let mut head = format!(
                    "HTTP/1.1 {status} Status\r\nContent-Length: {}\r\n",
                    body.len()
                );
                for (k, v) in headers {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
                head.push_str("\r\n");
                log.lock().unwrap().push((req.clone(), status));
                client.write_all(head.as_bytes())?;
                if req.method != "HEAD" {
                    client.write_all(&body)?;
                }
                client.flush()?;
            }
            Action::Stall => {
                let mut body_in = vec![0u8; length];
                reader.read_exact(&mut body_in)?;
                log.lock().unwrap().push((req, 0));
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                return Ok(());
            }
            Action::Trickle {
                status,
                body,
                pause,
            } => {
                let mut body_in = vec![0u8; length];
                reader.read_exact(&mut body_in)?;
                log.lock().unwrap().push((req, status));
                let mut answer = format!(
                    "HTTP/1.1 {status} Status\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                )
                .into_bytes();
                answer.extend_from_slice(&body);
                for byte in answer {
                    if stop.load(Ordering::Relaxed) {
                        return Ok(());
                    }
                    client.write_all(&[byte])?;
                    client.flush()?;
                    std::thread::sleep(pause);
                }
            }
            action @ (Action::Forward | Action::ForwardThenDrop) => {
                let mut body_in = vec![0u8; length];
                reader.read_exact(&mut body_in)?;
                let port = upstream.expect("a front without upstream cannot forward");
                let mut up = TcpStream::connect(("127.0.0.1", port))?;
                let mut head = format!("{} {} HTTP/1.1\r\n", req.method, req.target);
                for (k, v) in &req.headers {
                    if !k.eq_ignore_ascii_case("connection") {
                        head.push_str(&format!("{k}: {v}\r\n"));
                    }
                }
                // One request per upstream connection: the answer ends at EOF.
                head.push_str("Connection: close\r\n\r\n");
                up.write_all(head.as_bytes())?;
                up.write_all(&body_in)?;
                let mut answer = Vec::new();
                up.read_to_end(&mut answer)?;
                let status = std::str::from_utf8(&answer[..answer.len().min(12)])
                    .ok()
                    .and_then(|s| s.get(9..12))
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                // Logged before answering, so a client that has its answer sees the entry.
                log.lock().unwrap().push((req, status));
                if matches!(action, Action::ForwardThenDrop) {
                    let _ = client.shutdown(Shutdown::Both);
                    return Ok(());
                }
                client.write_all(&answer)?;
                client.flush()?;
                // The registry's answer said `Connection: close`; so does this front.
                let _ = client.shutdown(Shutdown::Both);
                return Ok(());
            }
        }
    }
}

/// A distribution-style error answer.
pub(crate) fn error_answer(status: u16, code: &str, message: &str) -> Action {
    Action::Respond {
        status,
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: format!(r#"{{"errors":[{{"code":"{code}","message":"{message}"}}]}}"#).into(),
    }
}

/// Documents and blobs a hostile registry serves, by digest: exact bytes
/// whose digests are right, so a client checks them and reads on.
#[derive(Default)]
pub(crate) struct Documents {
    by_digest: std::collections::HashMap<String, (String, Arc<Vec<u8>>)>,
}

impl Documents {
    /// Stores `bytes` and gives their descriptor as JSON.
    pub(crate) fn put(&mut self, media_type: &str, bytes: Vec<u8>) -> serde_json::Value {
        let digest = crate::registry::image::sha256(&bytes);
        let descriptor = serde_json::json!({
            "mediaType": media_type,
            "digest": digest,
            "size": bytes.len(),
        });
        self.by_digest
            .insert(digest, (media_type.to_owned(), Arc::new(bytes)));
        descriptor
    }

    /// Stores a JSON document (its bytes as serde_json writes them).
    pub(crate) fn put_json(
        &mut self,
        media_type: &str,
        value: &serde_json::Value,
    ) -> serde_json::Value {
        self.put(media_type, serde_json::to_vec(value).unwrap())
    }

    /// The answer to a `GET` or `HEAD` of `/v2/<repo>/{manifests,blobs}/<digest>`,
    /// if this store has it; `tags` maps other references to a digest.
    pub(crate) fn answer(
        &self,
        req: &Req,
        tags: &dyn Fn(&str) -> Option<String>,
    ) -> Option<Action> {
        if req.method != "GET" && req.method != "HEAD" {
            return None;
        }
        let path = req.target.split('?').next().unwrap_or_default();
        let (_, reference) = path
            .rsplit_once("/manifests/")
            .or_else(|| path.rsplit_once("/blobs/"))?;
        let digest = if reference.starts_with("sha256:") {
            reference.to_owned()
        } else {
            tags(reference)?
        };
        let (media_type, bytes) = self.by_digest.get(&digest)?;
        Some(Action::Respond {
            status: 200,
            headers: vec![
                ("Content-Type".into(), media_type.clone()),
                ("Docker-Content-Digest".into(), digest),
            ],
            body: bytes.to_vec(),
        })
    }
}
