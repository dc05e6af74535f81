//! The HTTP/1.x protocol layer: request heads, chunked request bodies and
//! response heads, all sans-io.
//!
//! This module owns the types every HTTP piece shares: [`Span`] (offsets into
//! a buffer the caller owns, so a parsed head survives further reads into the
//! same buffer), [`Parsed`] (the complete/partial shape of every parse step)
//! and [`HttpError`] (why a request was refused, plus its status code).
//!
//! It must not know about routes, APIs, sockets or clocks: `api/` sits above
//! it and the connection code feeds it bytes. Nothing here panics on client
//! input; every error is a small `Copy` value that maps to exactly one status
//! in [`HttpError::status`], which `response.rs` writes.

pub mod chunked;
pub mod request;
pub mod response;

use std::fmt;

/// Percent-encodes `raw` (RFC 3986 §2.1, upper-case hex): a byte for which `keep` says so stays as it is, every
/// other byte becomes `%XX`. Which bytes stay is each caller's rule (an original's URL parser or escaper).
pub fn percent_encode(raw: &[u8], keep: impl Fn(u8) -> bool) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(raw.len());
    for &b in raw {
        if keep(b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xF)]));
        }
    }
    out
}

/// A byte range into a buffer the caller owns (offsets, not borrows, so a parsed head can be kept across reads).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    /// The bytes this span covers in `buf`, or an empty slice when the span
    /// does not fit `buf` (a stale span never panics).
    pub fn get<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        let (Ok(start), Ok(end)) = (usize::try_from(self.start), usize::try_from(self.end)) else {
            return &[];
        };
        buf.get(start..end).unwrap_or(&[])
    }

    /// Length in bytes; zero for an inverted span.
    pub fn len(&self) -> usize {
        self.end.saturating_sub(self.start) as usize
    }

    /// True when the span covers no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Result of a sans-io parse step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed<T> {
    /// The value and how many bytes of the input it used.
    Complete(T, usize),
    /// More bytes are needed; nothing was consumed.
    Partial,
}

/// Why a request could not be accepted. Each maps to one status code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpError {
    /// Syntax error in the request line, a header or the request target.
    Malformed,
    /// The head did not end within `Limits::max_head` bytes.
    HeadTooLarge,
    /// More header fields than `Limits::max_headers`.
    TooManyHeaders,
    /// The body exceeds `Limits::max_body`, which is `limit` bytes (named in the native API's answer).
    BodyTooLarge { limit: usize },
    /// Both `Content-Length` and `Transfer-Encoding` were sent.
    ConflictingFraming,
    /// `Content-Length` repeated, listed or not a plain decimal number.
    BadContentLength,
    /// `Transfer-Encoding` other than exactly one `chunked` (or any in HTTP/1.0).
    BadTransferEncoding,
    /// Chunked body framing error.
    BadChunk,
    /// HTTP version other than 1.0 or 1.1.
    UnsupportedVersion,
    /// No `Host` field in an HTTP/1.1 request, more than one in any request, or one that is not a host
    /// (RFC 9112 §3.2).
    BadHost,
}

impl HttpError {
    /// Stable snake_case code, used in JSON error bodies, logs and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            HttpError::Malformed => "malformed_request",
            HttpError::HeadTooLarge => "head_too_large",
            HttpError::TooManyHeaders => "too_many_headers",
            HttpError::BodyTooLarge { .. } => "body_too_large",
            HttpError::ConflictingFraming => "conflicting_framing",
            HttpError::BadContentLength => "bad_content_length",
            HttpError::BadTransferEncoding => "bad_transfer_encoding",
            HttpError::BadChunk => "bad_chunk",
            HttpError::UnsupportedVersion => "unsupported_version",
            HttpError::BadHost => "bad_host",
        }
    }

    /// The status code to answer with (RFC 9110 §15, RFC 6585 §5 for 431).
    pub fn status(&self) -> u16 {
        match self {
            HttpError::Malformed => 400,
            HttpError::HeadTooLarge => 431,
            HttpError::TooManyHeaders => 431,
            HttpError::BodyTooLarge { .. } => 413,
            HttpError::ConflictingFraming => 400,
            HttpError::BadContentLength => 400,
            HttpError::BadTransferEncoding => 400,
            HttpError::BadChunk => 400,
            HttpError::UnsupportedVersion => 505,
            HttpError::BadHost => 400,
        }
    }

    /// One human sentence for the JSON error body.
    pub fn message(&self) -> &'static str {
        match self {
            HttpError::Malformed => "The request could not be parsed.",
            HttpError::HeadTooLarge => "The request head is larger than the server accepts.",
            HttpError::TooManyHeaders => {
                "The request has more header fields than the server accepts."
            }
            HttpError::BodyTooLarge { .. } => "The request body is larger than the server accepts.",
            HttpError::ConflictingFraming => {
                "The request has both Content-Length and Transfer-Encoding."
            }
            HttpError::BadContentLength => "The Content-Length header is invalid.",
            HttpError::BadTransferEncoding => {
                "Only a single Transfer-Encoding of chunked is accepted, and only in HTTP/1.1."
            }
            HttpError::BadChunk => "The chunked request body is malformed.",
            HttpError::UnsupportedVersion => "Only HTTP/1.0 and HTTP/1.1 are supported.",
            HttpError::BadHost => {
                "An HTTP/1.1 request needs exactly one Host header field, naming a host (RFC 9112 section 3.2)."
            }
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for HttpError {}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [HttpError; 10] = [
        HttpError::Malformed,
        HttpError::HeadTooLarge,
        HttpError::TooManyHeaders,
        HttpError::BodyTooLarge { limit: 1 },
        HttpError::ConflictingFraming,
        HttpError::BadContentLength,
        HttpError::BadTransferEncoding,
        HttpError::BadChunk,
        HttpError::UnsupportedVersion,
        HttpError::BadHost,
    ];

    #[test]
    fn error_codes_and_statuses() {
        let expected: [(&str, u16); 10] = [
            ("malformed_request", 400),
            ("head_too_large", 431),
            ("too_many_headers", 431),
            ("body_too_large", 413),
            ("conflicting_framing", 400),
            ("bad_content_length", 400),
            ("bad_transfer_encoding", 400),
            ("bad_chunk", 400),
            ("unsupported_version", 505),
            ("bad_host", 400),
        ];
        for (err, (code, status)) in ALL.iter().zip(expected) {
            assert_eq!(err.as_str(), code);
            assert_eq!(err.status(), status, "{code}");
            assert_eq!(err.to_string(), code);
            assert!(err.message().ends_with('.'), "{code}");
            assert!(
                !err.message().contains('"'),
                "{code}: message goes into JSON"
            );
        }
    }

    #[test]
    fn span_get_never_panics() {
        let buf = b"hello world";
        let cases: [(Span, &[u8]); 5] = [
            (Span { start: 0, end: 5 }, b"hello"),
            (Span { start: 6, end: 11 }, b"world"),
            (Span { start: 6, end: 12 }, b""),
            (Span { start: 5, end: 2 }, b""),
            (Span::default(), b""),
        ];
        for (span, want) in cases {
            assert_eq!(span.get(buf), want, "{span:?}");
        }
        assert_eq!(Span { start: 5, end: 2 }.len(), 0);
        assert!(Span { start: 5, end: 2 }.is_empty());
        assert_eq!(Span { start: 2, end: 5 }.len(), 3);
    }
}
