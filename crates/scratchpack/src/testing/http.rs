//! The HTTP/1.1 client of service tests (RFC 9112): one request per
//! connection, sent with `Connection: close`, and its answer read within
//! bounds: the head at most [`MAX_HEAD_BYTES`], the body at most
//! [`MAX_BODY_BYTES`] whether its length is given by `Content-Length`,
//! by chunks or by the end of the connection, and everything before a
//! deadline. The program under test may answer anything.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// The status line and headers of an answer, together.
pub const MAX_HEAD_BYTES: usize = 64 << 10;
/// The body of an answer, or the bytes of a TCP exchange.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// An answer as it was received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    /// Names as they were sent, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The values of the headers named `name`, whatever its case.
    pub fn header<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Why an answer could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("no complete answer within {0:.1}s")]
    TimedOut(f64),
    #[error("{0}")]
    Io(#[source] io::Error),
    #[error("the connection closed before the answer was complete")]
    Truncated,
    #[error("the answer's status line and headers are over {MAX_HEAD_BYTES} bytes")]
    HeadTooLarge,
    #[error("the answer's body is over {MAX_BODY_BYTES} bytes")]
    BodyTooLarge,
    #[error("not an HTTP/1 status line: {0:?}")]
    StatusLine(String),
    #[error("not a header line: {0:?}")]
    Header(String),
    #[error("a bad chunk: {0}")]
    Chunk(String),
    #[error("a bad `Content-Length`: {0:?}")]
    Length(String),
}

/// The bytes of one request: the request line, `Host`, `Connection:
/// close`, the caller's headers, and `Content-Length` with the body when
/// there is one (or when the method is one that carries a body).
pub fn request_bytes(
    method: &str,
    path: &str,
    host: &str,
    headers: &[(String, String)],
    body: Option<&[u8]>,
) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: {host}\r\n"));
    }
    head.push_str("Connection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    let carries_body = matches!(method, "POST" | "PUT" | "PATCH");
    if body.is_some() || carries_body {
        head.push_str(&format!(
            "Content-Length: {}\r\n",
            body.map_or(0, <[u8]>::len)
        ));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body.unwrap_or_default());
    bytes
}

/// A connection read and written only until a deadline: each call waits
/// at most for the time that is left.
pub struct Timed {
    stream: TcpStream,
    deadline: Instant,
    limit: Duration,
}

impl Timed {
    pub fn new(stream: TcpStream, limit: Duration) -> Timed {
        Timed {
            stream,
            deadline: Instant::now() + limit,
            limit,
        }
    }

    /// The time left, or the error that says there is none.
    fn left(&self) -> io::Result<Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed"));
        }
        Ok(left)
    }

    /// The error an expired deadline gives the caller.
    pub fn timed_out(&self) -> HttpError {
        HttpError::TimedOut(self.limit.as_secs_f64())
    }

    /// Writes all of `bytes`.
    pub fn send(&mut self, bytes: &[u8]) -> Result<(), HttpError> {
        let mut rest = bytes;
        while !rest.is_empty() {
            self.stream
                .set_write_timeout(Some(self.left().map_err(|_| self.timed_out())?))
                .map_err(HttpError::Io)?;
            match self.stream.write(rest) {
                Ok(0) => return Err(HttpError::Io(io::ErrorKind::WriteZero.into())),
                Ok(n) => rest = &rest[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_timeout(&e) => return Err(self.timed_out()),
                Err(e) => return Err(HttpError::Io(e)),
            }
        }
        Ok(())
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

impl Read for Timed {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.set_read_timeout(Some(self.left()?))?;
        self.stream.read(buf)
    }
}

/// Sends `request` on `stream` and reads the answer, all within `limit`.
/// `head` says the request was a HEAD, whose answer has no body.
pub fn exchange(
    stream: TcpStream,
    request: &[u8],
    head: bool,
    limit: Duration,
) -> Result<Response, HttpError> {
    let mut timed = Timed::new(stream, limit);
    timed.send(request)?;
    let timed_out = timed.timed_out();
    let mut reader = BufReader::new(timed);
    read_response(&mut reader, head).map_err(|e| match e {
        HttpError::Io(io) if is_timeout(&io) => timed_out,
        e => e,
    })
}

/// One line of the head, without its line ending; `used` counts the head's
/// bytes so far against [`MAX_HEAD_BYTES`].
fn head_line(reader: &mut impl BufRead, used: &mut usize) -> Result<String, HttpError> {
    let mut line = Vec::new();
    let room = (MAX_HEAD_BYTES - *used) as u64 + 1;
    let n = reader
        .take(room)
        .read_until(b'\n', &mut line)
        .map_err(HttpError::Io)?;
    *used += n;
    if *used > MAX_HEAD_BYTES {
        return Err(HttpError::HeadTooLarge);
    }
    if !line.ends_with(b"\n") {
        return Err(HttpError::Truncated);
    }
    line.pop();
    if line.ends_with(b"\r") {
        line.pop();
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

/// Reads one final answer from `reader`: interim (1xx) answers before it
/// are passed over.
pub fn read_response(reader: &mut impl BufRead, head: bool) -> Result<Response, HttpError> {
    let mut used = 0;
    loop {
        let line = head_line(reader, &mut used)?;
        let (status, reason) = status_line(&line)?;
        let headers = header_lines(reader, &mut used)?;
        // 101 switches protocols: what follows is no longer HTTP.
        if (100..200).contains(&status) && status != 101 {
            continue;
        }
        let no_body = head || status < 200 || status == 204 || status == 304;
        let body = if no_body {
            Vec::new()
        } else {
            body(reader, &headers)?
        };
        return Ok(Response {
            status,
            reason,
            headers,
            body,
        });
    }
}

/// `HTTP/1.x NNN reason`, the reason possibly empty.
fn status_line(line: &str) -> Result<(u16, String), HttpError> {
    let bad = || HttpError::StatusLine(line.chars().take(200).collect());
    let rest = line.strip_prefix("HTTP/1.").ok_or_else(bad)?;
    let mut parts = rest.splitn(3, ' ');
    let minor = parts.next().ok_or_else(bad)?;
    let code = parts.next().ok_or_else(bad)?;
    if minor.len() != 1 || !minor.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let status = code.parse().map_err(|_| bad())?;
    Ok((status, parts.next().unwrap_or("").to_owned()))
}

fn header_lines(
    reader: &mut impl BufRead,
    used: &mut usize,
) -> Result<Vec<(String, String)>, HttpError> {
    let mut headers: Vec<(String, String)> = Vec::new();
    loop {
        let line = head_line(reader, used)?;
        if line.is_empty() {
            return Ok(headers);
        }
        // An obsolete folded line continues the previous value (RFC 9112,
        // 5.2), read as one space.
        if line.starts_with([' ', '\t']) {
            match headers.last_mut() {
                Some((_, value)) => {
                    value.push(' ');
                    value.push_str(line.trim());
                    continue;
                }
                None => return Err(HttpError::Header(line)),
            }
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(HttpError::Header(line.chars().take(200).collect()));
        };
        if name.is_empty() || name.ends_with([' ', '\t']) {
            return Err(HttpError::Header(line.chars().take(200).collect()));
        }
        headers.push((name.to_owned(), value.trim().to_owned()));
    }
}

/// The body after a head with `headers`: chunked, of a given length, or
/// everything until the connection closes.
fn body(reader: &mut impl BufRead, headers: &[(String, String)]) -> Result<Vec<u8>, HttpError> {
    let named = |name: &'static str| {
        headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let chunked = named("transfer-encoding")
        .flat_map(|v| v.split(','))
        .last()
        .is_some_and(|coding| coding.trim().eq_ignore_ascii_case("chunked"));
    if chunked {
        return chunks(reader);
    }
    let lengths: Vec<&str> = named("content-length").flat_map(|v| v.split(',')).collect();
    if let Some(first) = lengths.first() {
        let first = first.trim();
        if lengths.iter().any(|l| l.trim() != first) {
            return Err(HttpError::Length(lengths.join(",")));
        }
        let length: u64 = first
            .parse()
            .map_err(|_| HttpError::Length(first.to_owned()))?;
        if length > MAX_BODY_BYTES as u64 {
            return Err(HttpError::BodyTooLarge);
        }
        let mut body = Vec::new();
        reader
            .take(length)
            .read_to_end(&mut body)
            .map_err(HttpError::Io)?;
        if (body.len() as u64) < length {
            return Err(HttpError::Truncated);
        }
        return Ok(body);
    }
    let mut body = Vec::new();
    reader
        .take(MAX_BODY_BYTES as u64 + 1)
        .read_to_end(&mut body)
        .map_err(HttpError::Io)?;
    if body.len() > MAX_BODY_BYTES {
        return Err(HttpError::BodyTooLarge);
    }
    Ok(body)
}

/// A chunked body (RFC 9112, 7.1): sizes in hexadecimal, extensions and
/// trailers passed over.
fn chunks(reader: &mut impl BufRead) -> Result<Vec<u8>, HttpError> {
    let mut body = Vec::new();
    // The size lines and trailers count as head bytes.
    let mut used = 0;
    loop {
        let line = head_line(reader, &mut used)?;
        let size = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size, 16)
            .map_err(|_| HttpError::Chunk(format!("size line {:?}", line)))?;
        if size == 0 {
            while !head_line(reader, &mut used)?.is_empty() {}
            return Ok(body);
        }
        if body.len().saturating_add(size) > MAX_BODY_BYTES {
            return Err(HttpError::BodyTooLarge);
        }
        let start = body.len();
        reader
            .take(size as u64)
            .read_to_end(&mut body)
            .map_err(HttpError::Io)?;
        if body.len() - start < size {
            return Err(HttpError::Truncated);
        }
        if !head_line(reader, &mut used)?.is_empty() {
            return Err(HttpError::Chunk("no line end after the data".to_owned()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8]) -> Result<Response, HttpError> {
        read_response(&mut BufReader::new(bytes), false)
    }

    #[test]
    fn a_request_has_host_close_and_its_length() {
        let headers = [("Content-Type".to_owned(), "application/json".to_owned())];
        let bytes = request_bytes("POST", "/api", "127.0.0.1:8080", &headers, Some(b"{}"));
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            "POST /api HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
        );
        let bytes = request_bytes("GET", "/", "h", &[], None);
        assert_eq!(
            bytes,
            b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
        );
        // A Host of the test's own replaces the runner's.
        let host = [("host".to_owned(), "example.test".to_owned())];
        let text = String::from_utf8(request_bytes("GET", "/", "h", &host, None)).unwrap();
        assert!(!text.contains("Host: h") && text.contains("host: example.test"));
    }

    #[test]
    fn a_length_a_chunked_body_and_the_end_of_the_connection() {
        let r = read(b"HTTP/1.1 201 Created\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhelloEXTRA").unwrap();
        assert_eq!((r.status, r.reason.as_str()), (201, "Created"));
        assert_eq!(r.body, b"hello");
        assert_eq!(r.header("content-type").collect::<Vec<_>>(), ["text/plain"]);

        let r = read(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: t\r\n\r\n").unwrap();
        assert_eq!(r.body, b"hello world");

        let r = read(b"HTTP/1.0 404\nServer: old\n\nnot found\n").unwrap();
        assert_eq!((r.status, r.reason.as_str()), (404, ""));
        assert_eq!(r.body, b"not found\n");
    }

    #[test]
    fn interim_answers_and_bodiless_statuses() {
        let r = read(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.status, 204);
        assert!(r.body.is_empty());
        let r = read_response(
            &mut BufReader::new(&b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n"[..]),
            true,
        )
        .unwrap();
        assert!(r.body.is_empty());
    }

    #[test]
    fn malformed_and_oversized_answers_are_errors() {
        assert!(matches!(
            read(b"SSH-2.0-OpenSSH\r\n"),
            Err(HttpError::StatusLine(_))
        ));
        assert!(matches!(
            read(b"HTTP/1.1 2000 OK\r\n\r\n"),
            Err(HttpError::StatusLine(_))
        ));
        assert!(matches!(
            read(b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n"),
            Err(HttpError::Header(_))
        ));
        assert!(matches!(
            read(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"),
            Err(HttpError::Truncated)
        ));
        assert!(matches!(
            read(b"HTTP/1.1 200 OK\r\n"),
            Err(HttpError::Truncated)
        ));
        assert!(matches!(
            read(b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\nx"),
            Err(HttpError::Length(_))
        ));
        assert!(matches!(
            read(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
            Err(HttpError::Chunk(_))
        ));
        let huge = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY_BYTES + 1
        );
        assert!(matches!(
            read(huge.as_bytes()),
            Err(HttpError::BodyTooLarge)
        ));
        let chunk = format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
            MAX_BODY_BYTES + 1
        );
        assert!(matches!(
            read(chunk.as_bytes()),
            Err(HttpError::BodyTooLarge)
        ));
        let mut flood = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
        flood.resize(MAX_BODY_BYTES + 100, b'x');
        assert!(matches!(read(&flood), Err(HttpError::BodyTooLarge)));
        let mut head = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
        head.resize(MAX_HEAD_BYTES + 10, b'y');
        assert!(matches!(read(&head), Err(HttpError::HeadTooLarge)));
    }

    #[test]
    fn a_server_that_never_answers_runs_out_of_time() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_server, _) = listener.accept().unwrap();
        let started = Instant::now();
        let e = exchange(
            client,
            b"GET / HTTP/1.1\r\n\r\n",
            false,
            Duration::from_millis(300),
        )
        .unwrap_err();
        assert!(matches!(e, HttpError::TimedOut(_)), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(e.to_string(), "no complete answer within 0.3s");
    }
}
