//! `web`: the example server image, a small HTTP/1.1 server on the standard
//! library (a `TcpListener` and a thread per connection). It listens on
//! `0.0.0.0:$PORT` (8080 unless `PORT` says otherwise), answers one request
//! per connection, and exits 0 on SIGTERM or SIGINT.
//!
//! - `GET /`: an HTML page;
//! - `GET /healthz`: `200 ok`, for readiness checks;
//! - `POST /api`: `201` with a JSON object holding the JSON it was sent.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::time::Duration;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// A request's line and headers together, and its body, at most: the
/// server holds each request in memory.
const MAX_HEAD: u64 = 16 << 10;
const MAX_BODY: usize = 64 << 10;

/// How long a client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

const PAGE: &str = "<!doctype html>
<html lang=\"en\">
<head><meta charset=\"utf-8\"><title>scratchpack web</title></head>
<body>
<h1>Served from a scratch image</h1>
<p>One static binary, nothing else in the image.</p>
</body>
</html>
";

fn main() {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8080);
    // Stopping is exiting: every answer is written before its connection
    // closes, so nothing is left half done.
    let mut signals = Signals::new([SIGTERM, SIGINT]).unwrap_or_else(|e| {
        eprintln!("web: handling SIGTERM and SIGINT: {e}");
        std::process::exit(1);
    });
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            println!("web: stopping on signal {signal}");
            std::process::exit(0);
        }
    });
    let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).unwrap_or_else(|e| {
        eprintln!("web: listening on port {port}: {e}");
        std::process::exit(1);
    });
    println!("web: listening on port {port}");
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                std::thread::spawn(move || answer(stream));
            }
            Err(e) => eprintln!("web: accepting a connection: {e}"),
        }
    }
}

/// One request, as far as the routes need it.
#[derive(Debug, PartialEq, Eq)]
struct Request {
    method: String,
    path: String,
    body: Vec<u8>,
}

/// An answer: status, content type, body.
type Answer = (u16, &'static str, Vec<u8>);

fn answer(stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let (status, kind, body) = match read_request(&mut BufReader::new(stream)) {
        Ok(request) => route(&request),
        Err(status) => (status, "text/plain; charset=utf-8", Vec::new()),
    };
    let head = format!(
        "HTTP/1.1 {status} {}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        reason(status),
        body.len()
    );
    let _ = writer.write_all(head.as_bytes());
    let _ = writer.write_all(&body);
}

/// Reads one request; `Err` is the status that refuses it.
fn read_request(reader: &mut impl BufRead) -> Result<Request, u16> {
    let mut head = String::new();
    let mut limited = reader.take(MAX_HEAD);
    loop {
        let mut line = String::new();
        match limited.read_line(&mut line) {
            Ok(0) => return Err(400),
            Ok(_) if !line.ends_with('\n') => return Err(431),
            Ok(_) if line.trim_end().is_empty() => break,
            Ok(_) => head.push_str(&line),
            Err(_) => return Err(400),
        }
    }
    let mut lines = head.lines();
    let mut first = lines.next().unwrap_or("").split_whitespace();
    let (Some(method), Some(path)) = (first.next(), first.next()) else {
        return Err(400);
    };
    let mut length = 0usize;
    for line in lines {
        let (name, value) = line.split_once(':').ok_or(400u16)?;
        if name.trim().eq_ignore_ascii_case("content-length") {
            length = value.trim().parse().map_err(|_| 400u16)?;
        } else if name.trim().eq_ignore_ascii_case("transfer-encoding") {
            return Err(501);
        }
    }
    if length > MAX_BODY {
        return Err(413);
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).map_err(|_| 400u16)?;
    Ok(Request {
        method: method.to_owned(),
        path: path.to_owned(),
        body,
    })
}

fn route(request: &Request) -> Answer {
    let text = "text/plain; charset=utf-8";
    let json = "application/json";
    match (request.method.as_str(), request.path.as_str()) {
        ("GET", "/") => (200, "text/html; charset=utf-8", PAGE.into()),
        ("GET", "/healthz") => (200, text, b"ok\n".to_vec()),
        ("POST", "/api") => match std::str::from_utf8(&request.body).map(str::trim) {
            // A JSON object or array is echoed inside the answer; the
            // server checks its outline, not its grammar.
            Ok(sent)
                if (sent.starts_with('{') && sent.ends_with('}'))
                    || (sent.starts_with('[') && sent.ends_with(']')) =>
            {
                (201, json, format!("{{\"received\":{sent}}}\n").into_bytes())
            }
            _ => (
                400,
                json,
                b"{\"error\":\"expected a JSON object or array\"}\n".to_vec(),
            ),
        },
        (_, "/" | "/healthz" | "/api") => (405, text, b"method not allowed\n".to_vec()),
        _ => (404, text, b"not found\n".to_vec()),
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        _ => "Status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(text: &str) -> Result<Request, u16> {
        read_request(&mut BufReader::new(text.as_bytes()))
    }

    #[test]
    fn the_routes_answer() {
        let page = route(&request("GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap());
        assert_eq!(page.0, 200);
        assert!(String::from_utf8(page.2).unwrap().contains("<title>"));
        let health = route(&request("GET /healthz HTTP/1.1\r\n\r\n").unwrap());
        assert_eq!((health.0, health.2.as_slice()), (200, &b"ok\n"[..]));
        let api = route(
            &request("POST /api HTTP/1.1\r\nContent-Length: 11\r\n\r\n{\"a\": [1]}\n").unwrap(),
        );
        assert_eq!((api.0, api.1), (201, "application/json"));
        assert_eq!(api.2, b"{\"received\":{\"a\": [1]}}\n");
        let bad = route(&request("POST /api HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc").unwrap());
        assert_eq!(bad.0, 400);
        assert_eq!(route(&request("DELETE / HTTP/1.1\r\n\r\n").unwrap()).0, 405);
        assert_eq!(
            route(&request("GET /nope HTTP/1.1\r\n\r\n").unwrap()).0,
            404
        );
    }

    #[test]
    fn bad_requests_are_refused() {
        assert_eq!(request("GET\r\n\r\n"), Err(400));
        assert_eq!(request("GET / HTTP/1.1\r\nno colon\r\n\r\n"), Err(400));
        assert_eq!(
            request("POST /api HTTP/1.1\r\nContent-Length: 999999\r\n\r\n"),
            Err(413)
        );
        assert_eq!(
            request(&format!("GET /{} HTTP/1.1\r\n\r\n", "x".repeat(20_000))),
            Err(431)
        );
    }
}
