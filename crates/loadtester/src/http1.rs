//! A small HTTP/1.1 exchange for the built-in hey's plain `http://` path: a request
//! serialized once, written as it is for every send, and a response read into one
//! reused buffer, parsed with httparse (hyper's parser) and counted, never kept.
//!
//! hyper's client costs three to four times wrk's user CPU per request (a dispatcher
//! with channels to the caller, a `Response` with its own `HeaderMap`, a body channel);
//! on a loaded machine the generator's CPU is the bound, so that cost is the rate.
//! This does what hey needs and no more, with hyper's rules where they matter:
//! headers are written in hyper's order and form, interim 1xx answers are skipped,
//! a body is framed as RFC 9112 says (HEAD, 204 and 304 have none, then
//! `Transfer-Encoding: chunked`, then `Content-Length`, else up to the close), and a
//! connection is kept only when both sides allow it.

use std::fmt;
use std::io;
use std::mem::MaybeUninit;

use reqwest::Method;
use reqwest::header::{self, HeaderMap};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// hyper's limits: a response head up to this many bytes and headers.
const MAX_HEAD: usize = 8192 + 4096 * 100;
const MAX_HEADERS: usize = 100;
/// A chunk-size or trailer line longer than this is refused.
const MAX_LINE: usize = 64 * 1024;
/// The read buffer starts as hyper's does, and grows while reads fill it (a large
/// body is then read in larger pieces), up to the largest head plus one read.
const READ_BUF: usize = 8 * 1024;
const MAX_BUF: usize = MAX_HEAD + READ_BUF;

/// A request as it goes on the wire, for any number of sends.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    bytes: Vec<u8>,
    /// HEAD: the answer has no body whatever its headers say.
    head: bool,
    /// `Connection: close` was asked for: the connection ends with the answer.
    close: bool,
    /// May be sent again when a kept-alive connection turns out closed (Go's rule:
    /// GET, HEAD, OPTIONS, TRACE, or an idempotency key).
    pub(crate) replayable: bool,
}

impl Request {
    /// `method target HTTP/1.1`, the headers in their map's order as hyper writes
    /// them, `content-length` for a body unless given, then the body.
    pub(crate) fn new(method: &Method, target: &str, headers: &HeaderMap, body: &[u8]) -> Request {
        let mut bytes = Vec::with_capacity(64 + target.len() + 32 * headers.len() + body.len());
        bytes.extend_from_slice(method.as_str().as_bytes());
        bytes.push(b' ');
        bytes.extend_from_slice(target.as_bytes());
        bytes.extend_from_slice(b" HTTP/1.1\r\n");
        for (name, value) in headers {
            bytes.extend_from_slice(name.as_str().as_bytes());
            bytes.extend_from_slice(b": ");
            bytes.extend_from_slice(value.as_bytes());
            bytes.extend_from_slice(b"\r\n");
        }
        if !body.is_empty() && !headers.contains_key(header::CONTENT_LENGTH) {
            bytes.extend_from_slice(b"content-length: ");
            bytes.extend_from_slice(body.len().to_string().as_bytes());
            bytes.extend_from_slice(b"\r\n");
        }
        bytes.extend_from_slice(b"\r\n");
        bytes.extend_from_slice(body);
        let close = headers
            .get_all(header::CONNECTION)
            .iter()
            .any(|v| has_token(v.as_bytes(), b"close"));
        let replayable = matches!(
            *method,
            Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
        ) || headers.contains_key("idempotency-key")
            || headers.contains_key("x-idempotency-key");
        Request {
            bytes,
            head: *method == Method::HEAD,
            close,
            replayable,
        }
    }
}

/// What hey keeps of an answer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) body_len: u64,
    /// Its `Location`, for a redirect status only.
    pub(crate) location: Option<Vec<u8>>,
    /// The connection can carry the next request.
    pub(crate) keep_alive: bool,
}

/// Why an exchange failed, and how far it got.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) cause: Cause,
    /// The whole request was written.
    pub(crate) written: bool,
    /// Some of the answer was read.
    pub(crate) answered: bool,
    /// It failed while reading the body.
    pub(crate) in_body: bool,
}

#[derive(Debug)]
pub(crate) enum Cause {
    /// The peer closed the connection before the answer was complete.
    Closed,
    Io(io::Error),
    Invalid(String),
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // hyper's words, which reqwest reported before.
            Cause::Closed => f.write_str("connection closed before message completed"),
            Cause::Io(e) => e.fmt(f),
            Cause::Invalid(why) => f.write_str(why),
        }
    }
}

enum Framing {
    Length(u64),
    Chunked,
    UntilClose,
}

struct Head {
    status: u16,
    http11: bool,
    content_length: Option<u64>,
    transfer_encoding: bool,
    chunked: bool,
    close: bool,
    keep_alive: bool,
    location: Option<Vec<u8>>,
}

/// One connection and its read buffer.
pub(crate) struct Connection<S> {
    stream: S,
    buf: Vec<u8>,
    /// Unread bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    /// Answers completed on this connection.
    pub(crate) served: u64,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    pub(crate) fn new(stream: S) -> Self {
        Connection {
            stream,
            buf: vec![0; READ_BUF],
            start: 0,
            end: 0,
            served: 0,
        }
    }

    /// Sends the request and reads its whole answer. After an error or an answer
    /// without `keep_alive` the connection must not be used again.
    pub(crate) async fn exchange(&mut self, request: &Request) -> Result<Response, Failure> {
        let mut written = false;
        let mut answered = false;
        let fail = |cause, written, answered, in_body| Failure {
            cause,
            written,
            answered,
            in_body,
        };
        self.start = 0;
        self.end = 0;
        if let Err(e) = self.stream.write_all(&request.bytes).await {
            return Err(fail(Cause::Io(e), written, answered, false));
        }
        written = true;
        let head = loop {
            let head = self
                .read_head(&mut answered)
                .await
                .map_err(|c| fail(c, written, answered, false))?;
            // Interim answers (100 Continue, 103 Early Hints) precede the real one.
            if (100..200).contains(&head.status) && head.status != 101 {
                continue;
            }
            break head;
        };
        let framing = if request.head
            || matches!(head.status, 101 | 204 | 304)
            || (100..200).contains(&head.status)
        {
            Framing::Length(0)
        } else if head.transfer_encoding {
            if head.chunked {
                Framing::Chunked
            } else {
                Framing::UntilClose
            }
        } else if let Some(n) = head.content_length {
            Framing::Length(n)
        } else {
            Framing::UntilClose
        };
        let until_close = matches!(framing, Framing::UntilClose);
        let body_len = match framing {
            Framing::Length(n) => self.skip(n).await,
            Framing::Chunked => self.skip_chunked().await,
            Framing::UntilClose => self.skip_to_close().await,
        }
        .map_err(|c| fail(c, written, answered, true))?;
        self.served += 1;
        let keep_alive = !request.close
            && !head.close
            && (head.http11 || head.keep_alive)
            && !until_close
            && head.status != 101
            // Bytes after a complete answer to the only request sent: not to be trusted.
            && self.start == self.end;
        Ok(Response {
            status: head.status,
            body_len,
            location: head.location,
            keep_alive,
        })
    }

    /// Reads more into the buffer, compacting or growing it when full; `Ok(0)` is
    /// the end of the stream.
    async fn fill(&mut self) -> io::Result<usize> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() && self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            // The callers' limits (MAX_HEAD, MAX_LINE) stop before this.
            if self.buf.len() >= MAX_BUF {
                return Err(io::Error::other("read buffer full"));
            }
            self.buf.resize((self.buf.len() * 2).min(MAX_BUF), 0);
        }
        let room = self.buf.len() - self.end;
        let n = self.stream.read(&mut self.buf[self.end..]).await?;
        self.end += n;
        if n == room && self.buf.len() < MAX_BUF {
            self.buf.resize((self.buf.len() * 2).min(MAX_BUF), 0);
        }
        Ok(n)
    }

    async fn read_head(&mut self, answered: &mut bool) -> Result<Head, Cause> {
        loop {
            if self.end > self.start {
                *answered = true;
                // Uninitialized, as hyper does: no 3 KiB of headers to clear per answer.
                let mut headers =
                    [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
                let mut response = httparse::Response::new(&mut []);
                match httparse::ParserConfig::default().parse_response_with_uninit_headers(
                    &mut response,
                    &self.buf[self.start..self.end],
                    &mut headers,
                ) {
                    Ok(httparse::Status::Complete(len)) => {
                        let head = head_of(&response)?;
                        self.start += len;
                        return Ok(head);
                    }
                    Ok(httparse::Status::Partial) if self.end - self.start >= MAX_HEAD => {
                        return Err(Cause::Invalid("message head is too large".into()));
                    }
                    Ok(httparse::Status::Partial) => {}
                    Err(e) => return Err(Cause::Invalid(format!("invalid HTTP response: {e}"))),
                }
            }
            if self.fill().await.map_err(Cause::Io)? == 0 {
                return Err(Cause::Closed);
            }
        }
    }

    /// Consumes `n` body bytes.
    async fn skip(&mut self, n: u64) -> Result<u64, Cause> {
        let mut left = n;
        loop {
            let here = ((self.end - self.start) as u64).min(left);
            self.start += here as usize;
            left -= here;
            if left == 0 {
                return Ok(n);
            }
            if self.fill().await.map_err(Cause::Io)? == 0 {
                return Err(Cause::Closed);
            }
        }
    }

    async fn skip_to_close(&mut self) -> Result<u64, Cause> {
        let mut n = (self.end - self.start) as u64;
        self.start = self.end;
        loop {
            let got = self.fill().await.map_err(Cause::Io)?;
            if got == 0 {
                return Ok(n);
            }
            n += got as u64;
            self.start = self.end;
        }
    }

    /// One line without its CRLF (or LF).
    async fn line(&mut self) -> Result<(usize, usize), Cause> {
        loop {
            if let Some(i) = self.buf[self.start..self.end]
                .iter()
                .position(|&b| b == b'\n')
            {
                let line = (self.start, self.start + i);
                self.start += i + 1;
                let end = if line.1 > line.0 && self.buf[line.1 - 1] == b'\r' {
                    line.1 - 1
                } else {
                    line.1
                };
                return Ok((line.0, end));
            }
            if self.end - self.start > MAX_LINE {
                return Err(Cause::Invalid("chunk line is too long".into()));
            }
            if self.fill().await.map_err(Cause::Io)? == 0 {
                return Err(Cause::Closed);
            }
        }
    }

    async fn skip_chunked(&mut self) -> Result<u64, Cause> {
        let mut total = 0u64;
        loop {
            let (a, b) = self.line().await?;
            let size = chunk_size(&self.buf[a..b])?;
            if size == 0 {
                // Trailers, up to an empty line.
                loop {
                    let (a, b) = self.line().await?;
                    if a == b {
                        return Ok(total);
                    }
                }
            }
            total = total.saturating_add(self.skip(size).await?);
            let (a, b) = self.line().await?;
            if a != b {
                return Err(Cause::Invalid(
                    "invalid chunk: no CRLF after its data".into(),
                ));
            }
        }
    }
}

fn chunk_size(line: &[u8]) -> Result<u64, Cause> {
    let invalid = || Cause::Invalid("invalid chunk size line".into());
    // Chunk extensions (`;name=value`) are ignored, as hyper does.
    let digits = line.split(|&b| b == b';').next().unwrap_or_default();
    let digits = digits.trim_ascii();
    if digits.is_empty() || digits.len() > 16 {
        return Err(invalid());
    }
    let text = std::str::from_utf8(digits).map_err(|_| invalid())?;
    u64::from_str_radix(text, 16).map_err(|_| invalid())
}

fn head_of(response: &httparse::Response<'_, '_>) -> Result<Head, Cause> {
    let status = response.code.unwrap_or_default();
    let mut head = Head {
        status,
        http11: response.version == Some(1),
        content_length: None,
        transfer_encoding: false,
        chunked: false,
        close: false,
        keep_alive: false,
        location: None,
    };
    for h in response.headers.iter() {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            // Repeated or listed values must agree (RFC 9110 8.6).
            for part in h.value.split(|&b| b == b',') {
                let n = std::str::from_utf8(part.trim_ascii())
                    .ok()
                    .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|s| s.parse::<u64>().ok())
                    .ok_or_else(|| Cause::Invalid("invalid content-length parsed".into()))?;
                if head.content_length.is_some_and(|m| m != n) {
                    return Err(Cause::Invalid("invalid content-length parsed".into()));
                }
                head.content_length = Some(n);
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            head.transfer_encoding = true;
            // Chunked must be the last coding applied.
            head.chunked = h
                .value
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case(b"connection") {
            head.close |= has_token(h.value, b"close");
            head.keep_alive |= has_token(h.value, b"keep-alive");
        } else if name.eq_ignore_ascii_case(b"location")
            && matches!(status, 301 | 302 | 303 | 307 | 308)
        {
            head.location = Some(h.value.to_vec());
        }
    }
    Ok(head)
}

fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    fn get() -> Request {
        let mut h = HeaderMap::new();
        h.insert("user-agent", HeaderValue::from_static("hey/0.0.1"));
        h.insert("host", HeaderValue::from_static("x"));
        Request::new(&Method::GET, "/p?q=1", &h, b"")
    }

    /// A peer that reads each request head and answers with the next script entry,
    /// written in the pieces given (so answers split across reads are covered).
    fn peer(
        script: Vec<Vec<&'static [u8]>>,
    ) -> (
        Connection<DuplexStream>,
        tokio::task::JoinHandle<Vec<Vec<u8>>>,
    ) {
        let (ours, mut theirs) = tokio::io::duplex(1 << 20);
        let task = tokio::spawn(async move {
            let mut seen = Vec::new();
            for answer in script {
                let mut req = Vec::new();
                let mut byte = [0u8; 1];
                while !req.ends_with(b"\r\n\r\n") {
                    if theirs.read(&mut byte).await.unwrap() == 0 {
                        return seen;
                    }
                    req.push(byte[0]);
                }
                seen.push(req);
                for piece in answer {
                    theirs.write_all(piece).await.unwrap();
                    theirs.flush().await.unwrap();
                    tokio::task::yield_now().await;
                }
            }
            seen
        });
        (Connection::new(ours), task)
    }

    #[test]
    fn requests_are_written_as_hyper_writes_them() {
        let mut h = HeaderMap::new();
        h.insert("content-type", HeaderValue::from_static("application/json"));
        h.append("x-a", HeaderValue::from_static("1"));
        h.append("x-a", HeaderValue::from_static("2"));
        let r = Request::new(&Method::PUT, "/p", &h, b"{}");
        assert_eq!(
            String::from_utf8(r.bytes).unwrap(),
            "PUT /p HTTP/1.1\r\ncontent-type: application/json\r\nx-a: 1\r\nx-a: 2\r\n\
             content-length: 2\r\n\r\n{}"
        );
        assert!(!r.replayable && !r.close && !r.head);
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("close"));
        let r = Request::new(&Method::HEAD, "/", &h, b"");
        assert_eq!(
            String::from_utf8(r.bytes.clone()).unwrap(),
            "HEAD / HTTP/1.1\r\nconnection: close\r\n\r\n"
        );
        assert!(r.replayable && r.close && r.head);
    }

    #[tokio::test]
    async fn content_length_bodies_split_across_reads_keep_the_connection() {
        let (mut c, task) = peer(vec![
            vec![
                b"HTTP/1.1 200 OK\r\nContent-Le",
                b"ngth: 5\r\n\r\nhe",
                b"llo",
            ],
            vec![b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n"],
        ]);
        let r = c.exchange(&get()).await.unwrap();
        assert_eq!((r.status, r.body_len, r.keep_alive), (200, 5, true));
        let r = c.exchange(&get()).await.unwrap();
        assert_eq!((r.status, r.body_len, r.keep_alive), (503, 0, true));
        assert_eq!(c.served, 2);
        let seen = task.await.unwrap();
        assert_eq!(
            String::from_utf8(seen[0].clone()).unwrap(),
            "GET /p?q=1 HTTP/1.1\r\nuser-agent: hey/0.0.1\r\nhost: x\r\n\r\n"
        );
    }

    #[tokio::test]
    async fn large_bodies_and_heads_are_read_within_bounds() {
        static BODY: [u8; 1 << 20] = [b'x'; 1 << 20];
        let (mut c, _task) = peer(vec![
            vec![
                b"HTTP/1.1 200 OK\r\ncontent-length: 1048576\r\n\r\n",
                &BODY[..],
            ],
            vec![b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nx"],
        ]);
        let r = c.exchange(&get()).await.unwrap();
        assert_eq!((r.status, r.body_len, r.keep_alive), (200, 1 << 20, true));
        assert!(c.buf.len() > READ_BUF && c.buf.len() <= MAX_BUF);
        let r = c.exchange(&get()).await.unwrap();
        assert_eq!((r.status, r.body_len), (200, 1));

        // A head past hyper's limit is refused, not buffered without end.
        let (mut c, _task) = peer(vec![vec![b"HTTP/1.1 200 OK\r\nx-big: ", &BODY[..]]]);
        let f = c.exchange(&get()).await.unwrap_err();
        assert_eq!(f.cause.to_string(), "message head is too large");
    }

    #[tokio::test]
    async fn chunked_bodies_with_extensions_and_trailers_are_counted() {
        let (mut c, _task) = peer(vec![vec![
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            b"4;ext=1\r\nwiki\r\n",
            b"5\r\npedia\r\nA\r\n0123",
            b"456789\r\n0\r\nX-Trailer: t\r\n\r\n",
        ]]);
        let r = c.exchange(&get()).await.unwrap();
        assert_eq!((r.status, r.body_len, r.keep_alive), (200, 19, true));
    }

    #[tokio::test]
    async fn interim_answers_are_skipped_and_bodiless_statuses_have_no_body() {
        let (mut c, _task) = peer(vec![
            vec![
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n",
                b"HTTP/1.1 204 No Content\r\ncontent-length: 9\r\n\r\n",
            ],
            vec![b"HTTP/1.1 304 Not Modified\r\ncontent-length: 9\r\n\r\n"],
        ]);
        let r = c.exchange(&get()).await.unwrap();
        assert_eq!((r.status, r.body_len, r.keep_alive), (204, 0, true));
        let r = c.exchange(&get()).await.unwrap();
        assert_eq!((r.status, r.body_len, r.keep_alive), (304, 0, true));

        let (mut c, _task) = peer(vec![vec![b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n"]]);
        let mut head = get();
        head.head = true;
        let r = c.exchange(&head).await.unwrap();
        assert_eq!((r.status, r.body_len, r.keep_alive), (200, 0, true));
    }

    #[tokio::test]
    async fn close_delimited_and_closing_answers_end_the_connection() {
        // The peer ends after its script, closing its side.
        let (mut c, _task) = peer(vec![vec![b"HTTP/1.0 200 OK\r\n\r\nuntil the end"]]);
        let r = c.exchange(&get()).await.unwrap();
        assert_eq!((r.status, r.body_len, r.keep_alive), (200, 13, false));

        let (mut c, _task) = peer(vec![vec![
            b"HTTP/1.1 200 OK\r\nConnection: Close\r\ncontent-length: 1\r\n\r\nx",
        ]]);
        assert!(!c.exchange(&get()).await.unwrap().keep_alive);
        let (mut c, _task) = peer(vec![vec![
            b"HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 1\r\n\r\nx",
        ]]);
        assert!(c.exchange(&get()).await.unwrap().keep_alive);
        // Data after the answer: the connection is not trusted again.
        let (mut c, _task) = peer(vec![vec![
            b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nxjunk",
        ]]);
        assert!(!c.exchange(&get()).await.unwrap().keep_alive);
    }

    #[tokio::test]
    async fn redirects_carry_their_location() {
        let (mut c, _task) = peer(vec![vec![
            b"HTTP/1.1 302 Found\r\nLocation: /next\r\ncontent-length: 0\r\n\r\n",
        ]]);
        let r = c.exchange(&get()).await.unwrap();
        assert_eq!(r.location.as_deref(), Some(&b"/next"[..]));
    }

    #[tokio::test]
    async fn broken_answers_are_failures_that_say_how_far_they_got() {
        // The peer reads the request and closes without an answer.
        let (mut c, _task) = peer(vec![vec![]]);
        let f = c.exchange(&get()).await.unwrap_err();
        assert!(
            matches!(f.cause, Cause::Closed) && f.written && !f.answered,
            "{f:?}"
        );
        assert_eq!(
            f.cause.to_string(),
            "connection closed before message completed"
        );

        let (mut c, _task) = peer(vec![vec![
            b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort",
        ]]);
        let f = c.exchange(&get()).await.unwrap_err();
        assert!(
            matches!(f.cause, Cause::Closed) && f.answered && f.in_body,
            "{f:?}"
        );

        for bad in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 1, 2\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\nab\r\n",
            b"HTTP/9 200 OK\r\n\r\n",
        ] {
            let (mut c, _task) = peer(vec![vec![bad]]);
            let f = c.exchange(&get()).await.unwrap_err();
            assert!(matches!(f.cause, Cause::Invalid(_)), "{f:?}");
        }
    }
}
