//! Request head parsing: httparse → [`Head`], stored as [`Span`] offsets into
//! the caller's read buffer, with the size limits and the framing rules.
//!
//! What this file owns:
//! - The head limits: bytes (`Limits::max_head`, checked on `Partial` too, so a
//!   client that never ends its head gets 431 instead of an ever-growing
//!   buffer) and header count (`Limits::max_headers`, capped at
//!   [`MAX_HEADERS`] because the httparse header array lives on the stack).
//! - Body framing (RFC 9112 §6). spout runs behind load balancers, so any
//!   framing two parsers could disagree on is refused rather than guessed
//!   (request smuggling, RFC 9112 §11.2): `Content-Length` together with
//!   `Transfer-Encoding`, a repeated or listed `Content-Length`, anything but
//!   plain decimal digits, and any `Transfer-Encoding` other than exactly one
//!   `chunked` coding. HTTP/1.0 has no chunked coding, so `Transfer-Encoding`
//!   there is refused too (RFC 9112 §6.1).
//! - Connection persistence (RFC 9112 §9.3) and `Expect: 100-continue`
//!   (RFC 9110 §10.1.1).
//! - The `Host` rule (RFC 9112 §3.2), in [`check_host`]: exactly one `Host`
//!   field in an HTTP/1.1 request, at most one in an HTTP/1.0 one, and a
//!   value that can be a host. It is a rule about the request, not about
//!   parsing, so `parse_head` leaves it to its caller, which applies it to
//!   every request before any API sees it.
//!
//! What it must not do: read sockets, allocate beyond the header `Vec`, or
//! judge the body size. A `Content-Length` above `Limits::max_body` still
//! yields a [`Head`]; the caller compares and answers 413 before reading (or
//! sending `100 Continue` for) the body, because only the caller knows whether
//! the route takes a body at all.
//!
//! Invariants: `parse_head` looks at the buffer from its first byte every
//! time (no state between calls); it never panics on any input; spans in a
//! returned [`Head`] lie inside the head it reports as consumed.

use super::{HttpError, Parsed, Span};

/// Size of the stack array handed to httparse. `Limits::max_headers` above
/// this is treated as this value: more fields than this in one request is
/// not something a push server needs to accept.
pub const MAX_HEADERS: usize = 128;

/// Client-controlled sizes a request may reach (see `config.rs` for values).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Bytes from the first byte of the request to the end of the empty line.
    pub max_head: usize,
    /// Header fields per request (at most [`MAX_HEADERS`]).
    pub max_headers: usize,
    /// Decoded body bytes; compared by the caller, see the module doc.
    pub max_body: usize,
}

/// Request method. Methods are case-sensitive (RFC 9110 §9.1): `get` is `Other`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Options,
    Other,
}

impl Method {
    fn from_token(token: &str) -> Method {
        match token {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            _ => Method::Other,
        }
    }
}

/// How the request body is delimited (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body (neither `Content-Length` nor `Transfer-Encoding`).
    None,
    /// Exactly this many bytes follow the head (may exceed `max_body`).
    Length(usize),
    /// `Transfer-Encoding: chunked`; decode with `chunked::ChunkedDecoder`.
    Chunked,
}

/// A parsed request head; every `Span` indexes the buffer given to [`parse_head`].
#[derive(Clone, Debug)]
pub struct Head {
    pub method: Method,
    pub method_span: Span,
    /// Path without the query, still percent-encoded. `*` for `OPTIONS *`.
    pub path: Span,
    /// After '?', empty when none.
    pub query: Span,
    /// 0 or 1.
    pub minor_version: u8,
    /// Name, value (value trimmed by httparse), in arrival order.
    pub headers: Vec<(Span, Span)>,
    pub framing: BodyFraming,
    /// HTTP/1.1: unless `Connection: close`; HTTP/1.0: only with `Connection: keep-alive`.
    pub keep_alive: bool,
    /// `Expect: 100-continue` on an HTTP/1.1 request (ignored in 1.0, RFC 9110 §10.1.1).
    pub expect_continue: bool,
}

impl Head {
    /// Value of the first header named `name` (ASCII case-insensitive).
    pub fn header<'a>(&self, buf: &'a [u8], name: &str) -> Option<&'a [u8]> {
        self.header_lines(buf, name).next()
    }

    /// Values of every header line named `name`, in order: a list-valued field may come as several lines, which
    /// read as one comma-separated list (RFC 9110 §5.3).
    pub fn header_lines<'h, 'b: 'h>(
        &'h self,
        buf: &'b [u8],
        name: &'h str,
    ) -> impl Iterator<Item = &'b [u8]> + 'h {
        self.headers
            .iter()
            .filter(move |(n, _)| n.get(buf).eq_ignore_ascii_case(name.as_bytes()))
            .map(move |(_, v)| v.get(buf))
    }

    /// The percent-encoded path (no query).
    pub fn path<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        self.path.get(buf)
    }

    /// The raw query after '?', empty when none.
    pub fn query<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        self.query.get(buf)
    }
}

/// Parses the request head at the start of `buf`.
///
/// `buf` may hold more than the head (body bytes, pipelined requests); the
/// consumed count in `Parsed::Complete` is where the body starts. Empty lines
/// before the request line are skipped (httparse does this, as RFC 9112 §2.2
/// allows) and count towards the consumed bytes and the head limit.
///
/// Request targets: origin-form (`/path?query`); `*` only with `OPTIONS`
/// (path `*`); absolute-form `http://host/path?query` (scheme
/// case-insensitive, also `https`) is accepted by taking its path and query,
/// the authority is ignored (RFC 9112 §3.2.2), but only when a path follows
/// the authority. Everything else, and any `#`, is `Malformed`.
pub fn parse_head(buf: &[u8], limits: &Limits) -> Result<Parsed<Head>, HttpError> {
    let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let allowed = limits.max_headers.min(MAX_HEADERS);
    let (header_slots, _) = storage.split_at_mut(allowed);
    let mut req = httparse::Request::new(header_slots);
    let consumed = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() >= limits.max_head {
                Err(HttpError::HeadTooLarge)
            } else {
                Ok(Parsed::Partial)
            };
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::TooManyHeaders),
        Err(httparse::Error::Version) => return Err(version_error(buf)),
        Err(_) => return Err(HttpError::Malformed),
    };
    if consumed > limits.max_head {
        return Err(HttpError::HeadTooLarge);
    }

    // httparse reports Complete only with method, path and version set.
    let (Some(method_token), Some(target), Some(minor_version)) =
        (req.method, req.path, req.version)
    else {
        return Err(HttpError::Malformed);
    };
    if minor_version > 1 {
        return Err(HttpError::UnsupportedVersion);
    }
    let method = Method::from_token(method_token);
    let method_span = span_of(buf, method_token.as_bytes())?;
    let (path, query) = split_target(buf, target.as_bytes(), method)?;

    let mut headers = Vec::with_capacity(req.headers.len());
    let mut fields = Fields::default();
    for h in req.headers.iter() {
        headers.push((span_of(buf, h.name.as_bytes())?, span_of(buf, h.value)?));
        fields.observe(h.name.as_bytes(), h.value);
    }
    let framing = fields.framing(minor_version)?;
    let keep_alive = if minor_version == 1 {
        !fields.conn_close
    } else {
        fields.conn_keep_alive && !fields.conn_close
    };

    Ok(Parsed::Complete(
        Head {
            method,
            method_span,
            path,
            query,
            minor_version,
            headers,
            framing,
            keep_alive,
            expect_continue: fields.expect_continue && minor_version == 1,
        },
        consumed,
    ))
}

/// httparse says `Version` for any request line whose third token is not
/// `HTTP/1.0` or `HTTP/1.1`. Only something shaped like an HTTP version
/// (`HTTP/` then a digit) earns 505; other junk there is a plain 400.
fn version_error(buf: &[u8]) -> HttpError {
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    let line = buf.get(start..).unwrap_or(&[]);
    let line_end = line
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(line.len());
    let line = line.get(..line_end).unwrap_or(&[]);
    let version = line.split(|&b| b == b' ').nth(2).unwrap_or(&[]);
    match version.strip_prefix(b"HTTP/") {
        Some([d, ..]) if d.is_ascii_digit() => HttpError::UnsupportedVersion,
        // A truncated `HTTP/` (httparse fails early on a byte it cannot use).
        Some([]) => HttpError::UnsupportedVersion,
        _ => HttpError::Malformed,
    }
}

/// The offsets of `part`, which httparse sliced out of `buf`.
fn span_of(buf: &[u8], part: &[u8]) -> Result<Span, HttpError> {
    let start = (part.as_ptr() as usize)
        .checked_sub(buf.as_ptr() as usize)
        .ok_or(HttpError::Malformed)?;
    let end = start.checked_add(part.len()).ok_or(HttpError::Malformed)?;
    if end > buf.len() {
        return Err(HttpError::Malformed);
    }
    let start = u32::try_from(start).map_err(|_| HttpError::HeadTooLarge)?;
    let end = u32::try_from(end).map_err(|_| HttpError::HeadTooLarge)?;
    Ok(Span { start, end })
}

/// Splits the request target into path and query spans (see [`parse_head`]).
fn split_target(buf: &[u8], target: &[u8], method: Method) -> Result<(Span, Span), HttpError> {
    if target.contains(&b'#') {
        return Err(HttpError::Malformed);
    }
    let whole = span_of(buf, target)?;
    let path_and_query = match target.first() {
        Some(b'/') => target,
        Some(b'*') if target.len() == 1 && method == Method::Options => {
            return Ok((
                whole,
                Span {
                    start: whole.end,
                    end: whole.end,
                },
            ));
        }
        _ => absolute_form_path(target).ok_or(HttpError::Malformed)?,
    };
    let pq = span_of(buf, path_and_query)?;
    match path_and_query.iter().position(|&b| b == b'?') {
        Some(q) => {
            let q = u32::try_from(q).map_err(|_| HttpError::Malformed)?;
            let mark = pq.start.checked_add(q).ok_or(HttpError::Malformed)?;
            Ok((
                Span {
                    start: pq.start,
                    end: mark,
                },
                Span {
                    start: mark.saturating_add(1),
                    end: pq.end,
                },
            ))
        }
        None => Ok((
            pq,
            Span {
                start: pq.end,
                end: pq.end,
            },
        )),
    }
}

/// The `Host` rule of RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status code to any HTTP/1.1
/// request message that lacks a Host header field and to any request message that contains more than one Host
/// header field line or a Host header field with an invalid field value." A valid value is `uri-host [ ":" port ]`
/// (RFC 9110 §7.2), possibly empty; this refuses the bytes no host or port may hold (whitespace, a list's comma,
/// the delimiters of a path, query, fragment or user info), and leaves the rest to whoever routes by it.
pub fn check_host(head: &Head, buf: &[u8]) -> Result<(), HttpError> {
    let mut values = head.header_lines(buf, "host");
    let first = values.next();
    if values.next().is_some() || (first.is_none() && head.minor_version >= 1) {
        return Err(HttpError::BadHost);
    }
    let invalid = |b: &u8| matches!(b, b' ' | b'\t' | b',' | b'/' | b'?' | b'#' | b'@' | b'\\');
    match first {
        Some(value) if value.iter().any(invalid) => Err(HttpError::BadHost),
        _ => Ok(()),
    }
}

/// `http://authority/path?query` → `/path?query`; `None` unless the scheme is
/// http(s) and a '/' ends a non-empty authority.
fn absolute_form_path(target: &[u8]) -> Option<&[u8]> {
    let rest = strip_prefix_ignore_case(target, b"http://")
        .or_else(|| strip_prefix_ignore_case(target, b"https://"))?;
    let slash = rest.iter().position(|&b| b == b'/')?;
    let authority = rest.get(..slash)?;
    if authority.is_empty() || authority.contains(&b'?') {
        return None;
    }
    rest.get(slash..)
}

fn strip_prefix_ignore_case<'a>(s: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    let head = s.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        s.get(prefix.len()..)
    } else {
        None
    }
}

/// What the framing and connection headers said, collected over all fields
/// before judging, so that the verdict does not depend on header order.
#[derive(Default)]
struct Fields<'b> {
    content_length_count: usize,
    content_length: &'b [u8],
    transfer_encoding_count: usize,
    transfer_encoding: &'b [u8],
    conn_close: bool,
    conn_keep_alive: bool,
    expect_continue: bool,
}

impl<'b> Fields<'b> {
    fn observe(&mut self, name: &[u8], value: &'b [u8]) {
        if name.eq_ignore_ascii_case(b"content-length") {
            self.content_length_count += 1;
            self.content_length = value;
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            self.transfer_encoding_count += 1;
            self.transfer_encoding = value;
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in value.split(|&b| b == b',').map(trim_ows) {
                if token.eq_ignore_ascii_case(b"close") {
                    self.conn_close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    self.conn_keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case(b"expect")
            && trim_ows(value).eq_ignore_ascii_case(b"100-continue")
        {
            self.expect_continue = true;
        }
    }

    /// The body framing, refusing every ambiguous shape (see the module doc).
    fn framing(&self, minor_version: u8) -> Result<BodyFraming, HttpError> {
        let has_cl = self.content_length_count > 0;
        let has_te = self.transfer_encoding_count > 0;
        if has_cl && has_te {
            return Err(HttpError::ConflictingFraming);
        }
        if has_te {
            // Two TE fields are one list (RFC 9110 §5.3), so it has two codings.
            if self.transfer_encoding_count > 1
                || minor_version == 0
                || !trim_ows(self.transfer_encoding).eq_ignore_ascii_case(b"chunked")
            {
                return Err(HttpError::BadTransferEncoding);
            }
            return Ok(BodyFraming::Chunked);
        }
        if has_cl {
            if self.content_length_count > 1 {
                return Err(HttpError::BadContentLength);
            }
            return parse_content_length(self.content_length).map(BodyFraming::Length);
        }
        Ok(BodyFraming::None)
    }
}

/// 1 to 19 ASCII digits (fits u64 without overflow) and nothing else: no
/// sign, no spaces, no list (RFC 9110 §8.6, strictly).
fn parse_content_length(value: &[u8]) -> Result<usize, HttpError> {
    if value.is_empty() || value.len() > 19 {
        return Err(HttpError::BadContentLength);
    }
    let mut n: u64 = 0;
    for &b in value {
        if !b.is_ascii_digit() {
            return Err(HttpError::BadContentLength);
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(b - b'0')))
            .ok_or(HttpError::BadContentLength)?;
    }
    usize::try_from(n).map_err(|_| HttpError::BadContentLength)
}

/// Trims optional whitespace (SP / HTAB, RFC 9110 §5.6.3) at both ends.
fn trim_ows(s: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = s.iter().position(|b| !is_ows(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|b| !is_ows(b)).map_or(start, |i| i + 1);
    s.get(start..end).unwrap_or(&[])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::XorShift;

    const LIMITS: Limits = Limits {
        max_head: 8192,
        max_headers: 32,
        max_body: 1 << 20,
    };

    /// What a test expects of a complete head (`None` = don't care).
    #[derive(Default)]
    struct Want {
        method: Option<Method>,
        path: Option<&'static [u8]>,
        query: Option<&'static [u8]>,
        minor: Option<u8>,
        framing: Option<BodyFraming>,
        keep_alive: Option<bool>,
        expect_continue: Option<bool>,
    }

    enum Expect {
        Ok(Want),
        Err(HttpError),
    }

    fn check(name: &str, input: &[u8], expect: &Expect) {
        let got = parse_head(input, &LIMITS);
        match (expect, got) {
            (Expect::Err(e), Err(g)) => assert_eq!(*e, g, "{name}"),
            (Expect::Ok(w), Ok(Parsed::Complete(head, n))) => {
                assert_eq!(n, input.len(), "{name}: consumed");
                if let Some(m) = w.method {
                    assert_eq!(head.method, m, "{name}: method");
                }
                if let Some(p) = w.path {
                    assert_eq!(head.path(input), p, "{name}: path");
                }
                if let Some(q) = w.query {
                    assert_eq!(head.query(input), q, "{name}: query");
                }
                if let Some(v) = w.minor {
                    assert_eq!(head.minor_version, v, "{name}: version");
                }
                if let Some(f) = w.framing {
                    assert_eq!(head.framing, f, "{name}: framing");
                }
                if let Some(k) = w.keep_alive {
                    assert_eq!(head.keep_alive, k, "{name}: keep_alive");
                }
                if let Some(e) = w.expect_continue {
                    assert_eq!(head.expect_continue, e, "{name}: expect_continue");
                }
            }
            (_, got) => panic!("{name}: unexpected {got:?}"),
        }
    }

    macro_rules! ok {
        ($($field:ident : $value:expr),* $(,)?) => {
            Expect::Ok(Want { $($field: Some($value),)* ..Want::default() })
        };
    }

    fn err(e: HttpError) -> Expect {
        Expect::Err(e)
    }

    use BodyFraming as F;
    use HttpError as E;

    fn cases() -> Vec<(&'static str, &'static [u8], Expect)> {
        vec![
            ("get", b"GET / HTTP/1.1\r\n\r\n", ok!(method: Method::Get, path: b"/", query: b"", minor: 1, framing: F::None, keep_alive: true)),
            ("head", b"HEAD /x HTTP/1.1\r\nHost: a\r\n\r\n", ok!(method: Method::Head, path: b"/x")),
            ("post", b"POST /p HTTP/1.1\r\n\r\n", ok!(method: Method::Post)),
            ("put", b"PUT /p HTTP/1.1\r\n\r\n", ok!(method: Method::Put)),
            ("delete", b"DELETE /p HTTP/1.1\r\n\r\n", ok!(method: Method::Delete)),
            ("options", b"OPTIONS /p HTTP/1.1\r\n\r\n", ok!(method: Method::Options)),
            ("options star", b"OPTIONS * HTTP/1.1\r\n\r\n", ok!(method: Method::Options, path: b"*", query: b"")),
            ("star needs options", b"GET * HTTP/1.1\r\n\r\n", err(E::Malformed)),
            ("method is case-sensitive", b"get / HTTP/1.1\r\n\r\n", ok!(method: Method::Other)),
            ("other method", b"PATCH / HTTP/1.1\r\n\r\n", ok!(method: Method::Other)),
            ("query", b"GET /a/b?c=d&e HTTP/1.1\r\n\r\n", ok!(path: b"/a/b", query: b"c=d&e")),
            ("empty query", b"GET /a? HTTP/1.1\r\n\r\n", ok!(path: b"/a", query: b"")),
            ("two question marks", b"GET /a?b?c HTTP/1.1\r\n\r\n", ok!(path: b"/a", query: b"b?c")),
            ("percent-encoded kept", b"GET /a%20b HTTP/1.1\r\n\r\n", ok!(path: b"/a%20b")),
            ("fragment", b"GET /a#b HTTP/1.1\r\n\r\n", err(E::Malformed)),
            ("absolute form", b"GET http://example.com:80/x?y HTTP/1.1\r\n\r\n", ok!(path: b"/x", query: b"y")),
            ("absolute form https upper", b"GET HTTPS://h/ HTTP/1.1\r\n\r\n", ok!(path: b"/", query: b"")),
            ("absolute form without path", b"GET http://h HTTP/1.1\r\n\r\n", err(E::Malformed)),
            ("absolute form query before path", b"GET http://h?x/y HTTP/1.1\r\n\r\n", err(E::Malformed)),
            ("absolute form empty authority", b"GET http:///x HTTP/1.1\r\n\r\n", err(E::Malformed)),
            ("other scheme", b"GET ftp://h/x HTTP/1.1\r\n\r\n", err(E::Malformed)),
            ("authority form", b"CONNECT h:443 HTTP/1.1\r\n\r\n", err(E::Malformed)),
            ("relative target", b"GET a/b HTTP/1.1\r\n\r\n", err(E::Malformed)),
            ("leading empty lines", b"\r\n\r\nGET / HTTP/1.1\r\n\r\n", ok!(path: b"/")),
            ("bare lf", b"GET / HTTP/1.1\nHost: a\n\n", ok!(path: b"/")),
            // Versions.
            ("http/1.0", b"GET / HTTP/1.0\r\n\r\n", ok!(minor: 0, keep_alive: false)),
            ("http/2.0", b"GET / HTTP/2.0\r\n\r\n", err(E::UnsupportedVersion)),
            ("http/1.2", b"GET / HTTP/1.2\r\n\r\n", err(E::UnsupportedVersion)),
            ("http/0.9", b"GET / HTTP/0.9\r\n\r\n", err(E::UnsupportedVersion)),
            ("junk version", b"GET / FOO/1.1\r\n\r\n", err(E::Malformed)),
            ("lowercase version", b"GET / http/1.1\r\n\r\n", err(E::Malformed)),
            ("no version", b"GET /\r\n\r\n", err(E::Malformed)),
            ("bad method token", b"G(T / HTTP/1.1\r\n\r\n", err(E::Malformed)),
            ("space in header name", b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", err(E::Malformed)),
            ("nul in header value", b"GET / HTTP/1.1\r\nA: x\0y\r\n\r\n", err(E::Malformed)),
            ("obs-fold", b"GET / HTTP/1.1\r\nA: x\r\n y\r\n\r\n", err(E::Malformed)),
            ("cr without lf", b"GET / HTTP/1.1\r\nA: x\rB: y\r\n\r\n", err(E::Malformed)),
            // Keep-alive (RFC 9112 §9.3).
            ("1.1 default keep-alive", b"GET / HTTP/1.1\r\n\r\n", ok!(keep_alive: true)),
            ("1.1 close", b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", ok!(keep_alive: false)),
            ("1.1 close mixed case in list", b"GET / HTTP/1.1\r\nConnection: Upgrade , CLOSE\r\n\r\n", ok!(keep_alive: false)),
            ("1.1 close in second field", b"GET / HTTP/1.1\r\nConnection: upgrade\r\nConnection: close\r\n\r\n", ok!(keep_alive: false)),
            ("1.1 closed is not close", b"GET / HTTP/1.1\r\nConnection: closed\r\n\r\n", ok!(keep_alive: true)),
            ("1.0 default close", b"GET / HTTP/1.0\r\n\r\n", ok!(keep_alive: false)),
            ("1.0 keep-alive", b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", ok!(keep_alive: true)),
            ("1.0 keep-alive in list", b"GET / HTTP/1.0\r\nConnection: foo,keep-alive\r\n\r\n", ok!(keep_alive: true)),
            ("1.0 keep-alive and close", b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", ok!(keep_alive: false)),
            // Expect.
            ("expect", b"POST / HTTP/1.1\r\nContent-Length: 3\r\nExpect: 100-Continue\r\n\r\n", ok!(expect_continue: true, framing: F::Length(3))),
            ("no expect", b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\n", ok!(expect_continue: false)),
            ("other expect", b"POST / HTTP/1.1\r\nExpect: 200-ok\r\n\r\n", ok!(expect_continue: false)),
            ("expect ignored in 1.0", b"POST / HTTP/1.0\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n", ok!(expect_continue: false)),
            // Framing.
            ("content-length", b"POST / HTTP/1.1\r\nContent-Length: 42\r\n\r\n", ok!(framing: F::Length(42))),
            ("content-length zero", b"POST / HTTP/1.1\r\ncontent-length: 0\r\n\r\n", ok!(framing: F::Length(0))),
            ("content-length leading zeros", b"POST / HTTP/1.1\r\nContent-Length: 007\r\n\r\n", ok!(framing: F::Length(7))),
            ("content-length over max_body still parses", b"POST / HTTP/1.1\r\nContent-Length: 999999999\r\n\r\n", ok!(framing: F::Length(999_999_999))),
            ("content-length 19 digits", b"POST / HTTP/1.1\r\nContent-Length: 9999999999999999999\r\n\r\n", ok!(framing: F::Length(9_999_999_999_999_999_999))),
            ("content-length leading space trimmed", b"POST / HTTP/1.1\r\nContent-Length:  5\r\n\r\n", ok!(framing: F::Length(5))),
            ("content-length trailing space trimmed", b"POST / HTTP/1.1\r\nContent-Length: 5 \r\n\r\n", ok!(framing: F::Length(5))),
            ("chunked", b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", ok!(framing: F::Chunked)),
            ("chunked upper", b"POST / HTTP/1.1\r\ntransfer-encoding:  CHUNKED \r\n\r\n", ok!(framing: F::Chunked)),
            ("cl + te", b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", err(E::ConflictingFraming)),
            ("te + cl", b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", err(E::ConflictingFraming)),
            ("te + cl in 1.0", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", err(E::ConflictingFraming)),
            ("double cl equal", b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", err(E::BadContentLength)),
            ("double cl different", b"POST / HTTP/1.1\r\nContent-Length: 5\r\ncontent-length: 6\r\n\r\n", err(E::BadContentLength)),
            ("cl list", b"POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n", err(E::BadContentLength)),
            ("cl plus", b"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n", err(E::BadContentLength)),
            ("cl minus", b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", err(E::BadContentLength)),
            ("cl hex", b"POST / HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n", err(E::BadContentLength)),
            ("cl inner space", b"POST / HTTP/1.1\r\nContent-Length: 1 0\r\n\r\n", err(E::BadContentLength)),
            ("cl empty", b"POST / HTTP/1.1\r\nContent-Length:\r\n\r\n", err(E::BadContentLength)),
            ("cl 20 digits", b"POST / HTTP/1.1\r\nContent-Length: 10000000000000000000\r\n\r\n", err(E::BadContentLength)),
            ("cl 20 digits with zeros", b"POST / HTTP/1.1\r\nContent-Length: 00000000000000000005\r\n\r\n", err(E::BadContentLength)),
            ("cl unicode digit", "POST / HTTP/1.1\r\nContent-Length: ５\r\n\r\n".as_bytes(), err(E::BadContentLength)),
            ("te gzip, chunked", b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", err(E::BadTransferEncoding)),
            ("te chunked, gzip", b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", err(E::BadTransferEncoding)),
            ("te identity", b"POST / HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n", err(E::BadTransferEncoding)),
            ("te chunked, chunked", b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", err(E::BadTransferEncoding)),
            ("te chunked;", b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked;q=1\r\n\r\n", err(E::BadTransferEncoding)),
            ("two te headers", b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", err(E::BadTransferEncoding)),
            ("two te headers gzip first", b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n", err(E::BadTransferEncoding)),
            ("te xchunked", b"POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n", err(E::BadTransferEncoding)),
            ("te empty", b"POST / HTTP/1.1\r\nTransfer-Encoding:\r\n\r\n", err(E::BadTransferEncoding)),
            ("te comma", b"POST / HTTP/1.1\r\nTransfer-Encoding: ,chunked\r\n\r\n", err(E::BadTransferEncoding)),
            ("te in 1.0", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", err(E::BadTransferEncoding)),
            ("te name with space before colon", b"POST / HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n", err(E::Malformed)),
        ]
    }

    #[test]
    fn host_rule() {
        let limits = limits(8192, 64);
        let cases: [(&str, &[u8], Result<(), HttpError>); 12] = [
            (
                "one",
                b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
                Ok(()),
            ),
            (
                "with port",
                b"GET / HTTP/1.1\r\nhost: example.com:8080\r\n\r\n",
                Ok(()),
            ),
            ("ipv6", b"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", Ok(())),
            ("empty value", b"GET / HTTP/1.1\r\nHost:\r\n\r\n", Ok(())),
            (
                "missing in 1.1",
                b"GET / HTTP/1.1\r\nA: b\r\n\r\n",
                Err(E::BadHost),
            ),
            ("missing in 1.0", b"GET / HTTP/1.0\r\n\r\n", Ok(())),
            (
                "two in 1.1",
                b"GET / HTTP/1.1\r\nHost: a\r\nHOST: a\r\n\r\n",
                Err(E::BadHost),
            ),
            (
                "two in 1.0",
                b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n",
                Err(E::BadHost),
            ),
            (
                "a list",
                b"GET / HTTP/1.1\r\nHost: a, b\r\n\r\n",
                Err(E::BadHost),
            ),
            (
                "a space",
                b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
                Err(E::BadHost),
            ),
            (
                "user info",
                b"GET / HTTP/1.1\r\nHost: u@a\r\n\r\n",
                Err(E::BadHost),
            ),
            (
                "a path",
                b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
                Err(E::BadHost),
            ),
        ];
        for (name, input, expect) in cases {
            let Ok(Parsed::Complete(head, _)) = parse_head(input, &limits) else {
                panic!("{name}: does not parse");
            };
            assert_eq!(check_host(&head, input), expect, "{name}");
        }
    }

    #[test]
    fn table() {
        for (name, input, expect) in cases() {
            check(name, input, &expect);
        }
    }

    #[test]
    fn headers_spans_and_lookup() {
        let buf = b"GET /s?q HTTP/1.1\r\nHost: example.com\r\nX-Thing:  a b \r\nx-thing: second\r\n\r\nBODY";
        let Ok(Parsed::Complete(head, n)) = parse_head(buf, &LIMITS) else {
            panic!("complete")
        };
        assert_eq!(buf.get(n..), Some(&b"BODY"[..]));
        assert_eq!(head.method_span.get(buf), b"GET");
        assert_eq!(head.headers.len(), 3);
        assert_eq!(head.header(buf, "host"), Some(&b"example.com"[..]));
        assert_eq!(head.header(buf, "X-THING"), Some(&b"a b"[..]));
        assert_eq!(head.header(buf, "missing"), None);
        let (name, value) = head.headers[2];
        assert_eq!(name.get(buf), b"x-thing");
        assert_eq!(value.get(buf), b"second");
    }

    #[test]
    fn pipelined_and_body_bytes_are_not_consumed() {
        let first = b"POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\n";
        let mut buf = first.to_vec();
        buf.extend_from_slice(b"abcGET /b HTTP/1.1\r\n\r\n");
        let Ok(Parsed::Complete(head, n)) = parse_head(&buf, &LIMITS) else {
            panic!("complete")
        };
        assert_eq!(n, first.len());
        assert_eq!(head.framing, BodyFraming::Length(3));
    }

    fn limits(max_head: usize, max_headers: usize) -> Limits {
        Limits {
            max_head,
            max_headers,
            max_body: 1024,
        }
    }

    #[test]
    fn head_limit_boundary() {
        let req = b"GET /abc HTTP/1.1\r\nHost: x\r\n\r\n";
        let len = req.len();
        // Exactly at the limit: accepted.
        assert!(matches!(parse_head(req, &limits(len, 8)), Ok(Parsed::Complete(_, n)) if n == len));
        // One byte over: refused although complete.
        assert_eq!(
            parse_head(req, &limits(len - 1, 8)).err(),
            Some(HttpError::HeadTooLarge)
        );
        // Partial below the limit waits; partial at the limit refuses.
        let partial = &req[..len - 1];
        assert!(matches!(
            parse_head(partial, &limits(len, 8)),
            Ok(Parsed::Partial)
        ));
        assert_eq!(
            parse_head(partial, &limits(len - 1, 8)).err(),
            Some(HttpError::HeadTooLarge)
        );
        // Endless empty lines are bounded by the same limit.
        let blank = [b'\n'; 100];
        assert!(matches!(
            parse_head(&blank, &limits(101, 8)),
            Ok(Parsed::Partial)
        ));
        assert_eq!(
            parse_head(&blank, &limits(100, 8)).err(),
            Some(HttpError::HeadTooLarge)
        );
    }

    #[test]
    fn header_count_limit() {
        let mut req = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..4 {
            req.extend_from_slice(format!("H{i}: v\r\n").as_bytes());
        }
        req.extend_from_slice(b"\r\n");
        assert!(matches!(
            parse_head(&req, &limits(4096, 4)),
            Ok(Parsed::Complete(..))
        ));
        assert_eq!(
            parse_head(&req, &limits(4096, 3)).err(),
            Some(HttpError::TooManyHeaders)
        );
        assert_eq!(
            parse_head(&req, &limits(4096, 0)).err(),
            Some(HttpError::TooManyHeaders)
        );

        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("H{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(
            parse_head(&many, &limits(1 << 20, usize::MAX)).err(),
            Some(HttpError::TooManyHeaders),
            "capped at MAX_HEADERS"
        );
    }

    const VALID: &[u8] = b"POST /pub/ch?x=1 HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\n";

    #[test]
    fn byte_at_a_time_is_partial_until_the_last_byte() {
        for (name, input, expect) in cases() {
            if !matches!(expect, Expect::Ok(_)) {
                continue;
            }
            let mut buf = Vec::new();
            for (i, &b) in input.iter().enumerate() {
                buf.push(b);
                let got = parse_head(&buf, &LIMITS);
                if i + 1 < input.len() {
                    assert!(
                        matches!(got, Ok(Parsed::Partial)),
                        "{name}: byte {i}: {got:?}"
                    );
                } else {
                    check(name, &buf, &expect);
                }
            }
        }
    }

    #[test]
    fn every_truncation_is_partial() {
        for (name, input, expect) in cases() {
            if !matches!(expect, Expect::Ok(_)) {
                continue;
            }
            for cut in 0..input.len() {
                let got = parse_head(&input[..cut], &LIMITS);
                assert!(
                    matches!(got, Ok(Parsed::Partial)),
                    "{name}: cut {cut}: {got:?}"
                );
            }
        }
    }

    #[test]
    fn truncated_error_never_becomes_complete() {
        // A refused request stays refused or partial at every prefix.
        for (name, input, expect) in cases() {
            let Expect::Err(_) = expect else { continue };
            for cut in 0..=input.len() {
                let got = parse_head(&input[..cut], &LIMITS);
                assert!(
                    !matches!(got, Ok(Parsed::Complete(..))) || cut == input.len(),
                    "{name}: {cut}"
                );
            }
        }
    }

    fn check_invariants(buf: &[u8], limits: &Limits) {
        if let Ok(Parsed::Complete(head, n)) = parse_head(buf, limits) {
            assert!(n <= buf.len() && n <= limits.max_head);
            assert!(head.minor_version <= 1);
            assert!(head.headers.len() <= limits.max_headers);
            for span in [head.method_span, head.path, head.query] {
                assert!(span.end as usize <= n && span.start <= span.end, "{span:?}");
            }
            for (name, value) in &head.headers {
                assert!(name.end as usize <= n && value.end as usize <= n);
            }
        }
    }

    #[test]
    fn garbage_never_panics() {
        const ALPHABET: &[u8] = b"GETPOST /?:\r\n\t ,;HTTP/1.01chunkedContent-LengthTransfer-Encoding0123456789\0\x7f\xff";
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let small = Limits {
            max_head: 256,
            max_headers: 8,
            max_body: 64,
        };
        for round in 0..20_000 {
            let len = rng.below(200);
            let buf: Vec<u8> = match round % 3 {
                0 => (0..len).map(|_| rng.next() as u8).collect(),
                1 => (0..len)
                    .map(|_| ALPHABET[rng.below(ALPHABET.len())])
                    .collect(),
                _ => {
                    let mut b = VALID.to_vec();
                    for _ in 0..1 + rng.below(4) {
                        let at = rng.below(b.len());
                        match rng.below(3) {
                            0 => b[at] = rng.next() as u8,
                            1 => b.insert(at, ALPHABET[rng.below(ALPHABET.len())]),
                            _ => {
                                b.remove(at);
                            }
                        }
                    }
                    b
                }
            };
            check_invariants(&buf, &LIMITS);
            check_invariants(&buf, &small);
        }
    }
}
