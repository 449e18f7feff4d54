//! HTTP/1.1 as far as the service needs it: one request read from a
//! connection (line, headers, a body of `Content-Length` bytes), and an
//! answer written back. Connections are kept alive unless the client says
//! `Connection: close` (as image tests do) or speaks HTTP/1.0.

use std::io::{self, BufRead, Read, Write};

/// A request's line and headers together, and its body, at most: the
/// server holds each request in memory.
const MAX_HEAD: u64 = 16 << 10;
const MAX_BODY: usize = 1 << 20;

/// One request, as far as the routes need it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Request {
    pub(crate) method: String,
    pub(crate) path: String,
    /// Header names in lower case, values trimmed.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
    /// Whether the connection ends after this answer.
    pub(crate) close: bool,
}

impl Request {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// An answer: status, headers beyond the length, body.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(&'static str, String)>,
    pub(crate) body: Vec<u8>,
}

impl Answer {
    pub(crate) fn new(status: u16, kind: &str, body: impl Into<Vec<u8>>) -> Answer {
        Answer {
            status,
            headers: vec![("content-type", kind.to_owned())],
            body: body.into(),
        }
    }

    pub(crate) fn text(status: u16, body: impl Into<Vec<u8>>) -> Answer {
        Answer::new(status, "text/plain; charset=utf-8", body)
    }

    pub(crate) fn json(status: u16, body: impl Into<Vec<u8>>) -> Answer {
        Answer::new(status, "application/json", body)
    }
}

/// Why no request was read: the client left, or sent something refused
/// with this status.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    Gone,
    Status(u16),
}

/// Reads one request.
pub(crate) fn read_request(reader: &mut impl BufRead) -> Result<Request, Refused> {
    let mut head = String::new();
    let mut limited = reader.take(MAX_HEAD);
    loop {
        let mut line = String::new();
        match limited.read_line(&mut line) {
            Ok(0) if head.is_empty() => return Err(Refused::Gone),
            Ok(0) => return Err(Refused::Status(400)),
            Ok(_) if !line.ends_with('\n') => return Err(Refused::Status(431)),
            Ok(_) if line.trim_end().is_empty() => break,
            Ok(_) => head.push_str(&line),
            Err(_) if head.is_empty() => return Err(Refused::Gone),
            Err(_) => return Err(Refused::Status(400)),
        }
    }
    let bad = Refused::Status(400);
    let mut lines = head.lines();
    let mut first = lines.next().unwrap_or("").split_whitespace();
    let (Some(method), Some(path), Some(version)) = (first.next(), first.next(), first.next())
    else {
        return Err(bad);
    };
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line.split_once(':').ok_or(Refused::Status(400))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let mut length = 0usize;
    let mut close = version != "HTTP/1.1";
    for (name, value) in &headers {
        match name.as_str() {
            "content-length" => length = value.parse().map_err(|_| Refused::Status(400))?,
            "transfer-encoding" => return Err(Refused::Status(501)),
            "connection" => close = value.eq_ignore_ascii_case("close"),
            _ => {}
        }
    }
    if length > MAX_BODY {
        return Err(Refused::Status(413));
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).map_err(|_| bad)?;
    Ok(Request {
        method: method.to_owned(),
        path: path.to_owned(),
        headers,
        body,
        close,
    })
}

/// Writes an answer, with its length and whether the connection stays.
pub(crate) fn write_answer(out: &mut impl Write, answer: &Answer, close: bool) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\ncontent-length: {}\r\n",
        answer.status,
        reason(answer.status),
        answer.body.len()
    );
    for (name, value) in &answer.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if close {
        head.push_str("connection: close\r\n");
    }
    head.push_str("\r\n");
    // One write for head and body: a kept-alive client would otherwise wait
    // for the body behind Nagle's algorithm and its own delayed ACK.
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(&answer.body);
    out.write_all(&bytes)?;
    out.flush()
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
        500 => "Internal Server Error",
        501 => "Not Implemented",
        _ => "Status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufReader;

    fn request(text: &str) -> Result<Request, Refused> {
        read_request(&mut BufReader::new(text.as_bytes()))
    }

    #[test]
    fn a_request_its_headers_and_whether_it_closes() {
        let r =
            request("POST /notes HTTP/1.1\r\nContent-Length: 2\r\nAccept-Encoding: zstd\r\n\r\nhi")
                .unwrap();
        assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/notes"));
        assert_eq!((r.body.as_slice(), r.close), (&b"hi"[..], false));
        assert_eq!(r.header("accept-encoding"), Some("zstd"));
        assert!(
            request("GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
                .unwrap()
                .close
        );
        assert!(request("GET / HTTP/1.0\r\n\r\n").unwrap().close);
    }

    #[test]
    fn bad_requests_are_refused_and_an_idle_end_is_not_one() {
        assert_eq!(request(""), Err(Refused::Gone));
        assert_eq!(request("GET /\r\n\r\n"), Err(Refused::Status(400)));
        assert_eq!(
            request("GET / HTTP/1.1\r\nno colon\r\n\r\n"),
            Err(Refused::Status(400))
        );
        assert_eq!(
            request("POST / HTTP/1.1\r\nContent-Length: 9999999\r\n\r\n"),
            Err(Refused::Status(413))
        );
        assert_eq!(
            request(&format!("GET /{} HTTP/1.1\r\n\r\n", "x".repeat(20_000))),
            Err(Refused::Status(431))
        );
    }

    #[test]
    fn an_answer_has_its_length_and_headers() {
        let mut out = Vec::new();
        write_answer(&mut out, &Answer::text(404, "no\n"), true).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 404 Not Found\r\ncontent-length: 3\r\ncontent-type: text/plain; \
             charset=utf-8\r\nconnection: close\r\n\r\nno\n"
        );
    }
}
