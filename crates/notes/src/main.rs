//! `notes`: the example service that links C the way real services do:
//! rustls on its default provider aws-lc-rs (aws-lc), bundled SQLite
//! (rusqlite), zstd (zstd-sys) and, on musl, mimalloc as the global
//! allocator. A small HTTP/1.1 server on std, a thread per connection,
//! listening on `0.0.0.0:$PORT` (8080 unless `PORT` says otherwise), keeping
//! notes in the SQLite database at `$NOTES_DB` (`:memory:` unless set). It
//! exits 0 on SIGTERM or SIGINT.
//!
//! - `GET /healthz`: `200 ok`;
//! - `GET /about`: the allocator, the TLS provider, and the SQLite and zstd
//!   versions the C libraries report;
//! - `POST /notes`: stores the body, zstd-compressed, as a row; `201` with
//!   its id and sizes;
//! - `GET /notes/{id}`: the note's text, or with `Accept-Encoding: zstd` the
//!   stored zstd frame as is (`Content-Encoding: zstd`);
//! - `GET /tls`: a TLS 1.3 handshake in process, and what it negotiated.

mod http;
mod store;
mod tls;

use std::io::{BufReader, BufWriter};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use http::{Answer, Refused, Request};
use store::Store;

// musl's malloc takes one lock for every allocation of every thread;
// mimalloc keeps a heap per thread. scripts/bench-alloc.sh measures the
// difference under load (README, "Performance").
#[cfg(all(feature = "mimalloc", target_env = "musl"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The allocator Rust's allocations go to, as `/about` reports it.
const ALLOCATOR: &str = if cfg!(all(feature = "mimalloc", target_env = "musl")) {
    "mimalloc"
} else {
    "libc"
};

/// How long a client may take to send a request, or keep a connection idle.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

fn main() {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8080);
    let db = std::env::var("NOTES_DB").unwrap_or_else(|_| ":memory:".to_owned());
    let mut signals = Signals::new([SIGTERM, SIGINT]).unwrap_or_else(|e| {
        eprintln!("notes: handling SIGTERM and SIGINT: {e}");
        std::process::exit(1);
    });
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            println!("notes: stopping on signal {signal}");
            std::process::exit(0);
        }
    });
    let store = Arc::new(Store::open(&db).unwrap_or_else(|e| {
        eprintln!("notes: opening {db}: {e}");
        std::process::exit(1);
    }));
    let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).unwrap_or_else(|e| {
        eprintln!("notes: listening on port {port}: {e}");
        std::process::exit(1);
    });
    println!("notes: listening on port {port}, notes in {db}");
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                let store = Arc::clone(&store);
                std::thread::spawn(move || serve(stream, &store));
            }
            Err(e) => eprintln!("notes: accepting a connection: {e}"),
        }
    }
}

/// Answers the requests of one connection until it closes.
fn serve(stream: TcpStream, store: &Store) {
    let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
    let _ = stream.set_nodelay(true);
    let Ok(writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut writer = BufWriter::new(writer);
    loop {
        let (answer, close) = match http::read_request(&mut reader) {
            Ok(request) => (route(&request, store), request.close),
            Err(Refused::Gone) => return,
            Err(Refused::Status(status)) => (Answer::text(status, ""), true),
        };
        if http::write_answer(&mut writer, &answer, close).is_err() || close {
            return;
        }
    }
}

fn route(request: &Request, store: &Store) -> Answer {
    let method = request.method.as_str();
    let path = request.path.as_str();
    match (method, path) {
        ("GET", "/healthz") => Answer::text(200, "ok\n"),
        ("GET", "/about") => about(),
        ("POST", "/notes") => match store.add(&request.body) {
            Ok((id, stored)) => Answer::json(
                201,
                format!(
                    "{{\"id\":{id},\"size\":{},\"stored\":{}}}\n",
                    stored.size,
                    stored.compressed.len()
                ),
            ),
            Err(e) => failed(&e),
        },
        ("GET", "/tls") => match tls::handshake("sent over TLS") {
            Ok(r) => Answer::json(
                200,
                format!(
                    "{{\"provider\":\"{}\",\"version\":\"{}\",\"suite\":\"{}\",\"group\":\"{}\",\"echo\":\"{}\"}}\n",
                    tls::PROVIDER,
                    r.version,
                    r.suite,
                    r.group,
                    r.echo
                ),
            ),
            Err(e) => failed(&e),
        },
        ("GET", _) if path.starts_with("/notes/") => {
            let Ok(id) = path["/notes/".len()..].parse::<i64>() else {
                return Answer::text(404, "not found\n");
            };
            let zstd = request
                .header("accept-encoding")
                .is_some_and(|v| v.split(',').any(|c| c.trim() == "zstd"));
            note(store, id, zstd)
        }
        (_, "/healthz" | "/about" | "/notes" | "/tls") => Answer::text(405, "method not allowed\n"),
        _ => Answer::text(404, "not found\n"),
    }
}

fn note(store: &Store, id: i64, zstd: bool) -> Answer {
    if zstd {
        return match store.stored(id) {
            Ok(Some(stored)) => {
                let mut a = Answer::text(200, stored.compressed);
                a.headers.push(("content-encoding", "zstd".to_owned()));
                a
            }
            Ok(None) => Answer::text(404, "no such note\n"),
            Err(e) => failed(&e),
        };
    }
    match store.text(id) {
        Ok(Some(text)) => Answer::text(200, text),
        Ok(None) => Answer::text(404, "no such note\n"),
        Err(e) => failed(&e),
    }
}

fn about() -> Answer {
    Answer::json(
        200,
        format!(
            "{{\"allocator\":\"{ALLOCATOR}\",\"tls\":\"{}\",\"sqlite\":\"{}\",\"zstd\":\"{}\"}}\n",
            tls::PROVIDER,
            rusqlite::version(),
            zstd::zstd_safe::version_string(),
        ),
    )
}

fn failed(e: &dyn std::fmt::Display) -> Answer {
    eprintln!("notes: {e}");
    Answer::text(500, format!("{e}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(store: &Store, path: &str, headers: &[(&str, &str)]) -> Answer {
        route(
            &Request {
                method: "GET".into(),
                path: path.into(),
                headers: headers
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect(),
                body: Vec::new(),
                close: true,
            },
            store,
        )
    }

    #[test]
    fn notes_are_stored_and_read_plain_or_compressed() {
        let store = Store::open(":memory:").unwrap();
        let post = Request {
            method: "POST".into(),
            path: "/notes".into(),
            headers: Vec::new(),
            body: b"one note, one note, one note".to_vec(),
            close: true,
        };
        let created = route(&post, &store);
        assert_eq!(created.status, 201);
        let text = String::from_utf8(created.body).unwrap();
        assert!(
            text.starts_with("{\"id\":1,\"size\":28,\"stored\":"),
            "{text}"
        );
        let plain = get(&store, "/notes/1", &[]);
        assert_eq!(plain.body, b"one note, one note, one note");
        let packed = get(&store, "/notes/1", &[("accept-encoding", "gzip, zstd")]);
        assert!(
            packed
                .headers
                .contains(&("content-encoding", "zstd".into()))
        );
        assert_eq!(
            zstd::bulk::decompress(&packed.body, 1024).unwrap(),
            plain.body
        );
        assert_eq!(get(&store, "/notes/2", &[]).status, 404);
        assert_eq!(get(&store, "/notes/x", &[]).status, 404);
        assert_eq!(get(&store, "/nope", &[]).status, 404);
    }

    #[test]
    fn about_names_the_c_libraries() {
        let store = Store::open(":memory:").unwrap();
        let about = String::from_utf8(get(&store, "/about", &[]).body).unwrap();
        assert!(about.contains("\"tls\":\"aws-lc-rs\""), "{about}");
        assert!(about.contains("\"sqlite\":\"3."), "{about}");
        assert!(about.contains("\"zstd\":\"1."), "{about}");
        let tls = String::from_utf8(get(&store, "/tls", &[]).body).unwrap();
        assert!(tls.contains("\"echo\":\"sent over TLS\""), "{tls}");
    }
}
