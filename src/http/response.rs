//! Response heads written into a byte buffer, the cached `Date` value, and
//! JSON error bodies.
//!
//! What this file owns: the exact bytes of every response head spout sends
//! (status line, `Date`, `Content-Type`, `Content-Length`, `Connection`,
//! extra fields, in that order), the status → reason phrase table, and the
//! `Date` cache. The HTTP error → status mapping itself lives on
//! [`HttpError::status`](super::HttpError::status); callers pass its
//! `status()`, `as_str()` and `message()` here.
//!
//! What it must not do: read a clock (time comes in through
//! [`DateCache::update`]), allocate beyond appending to `out`, or panic.
//!
//! Invariants:
//! - Every header line written ends in exactly one CRLF: CR, LF and NUL are
//!   dropped from content types, header names and values, so a caller that
//!   echoes client data into a header cannot split the response.
//! - 1xx, 204 and 304 responses carry neither `Content-Length` nor a body
//!   (RFC 9110 §8.6, §15.3.5, §15.4.5); a `HEAD` response carries the
//!   `Content-Length` of the body it omits (RFC 9110 §9.3.2).

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::date::civil_from_days;

/// Reason phrase for `status`; empty for codes not in the table (the status
/// line then ends `"599 \r\n"`, which RFC 9112 §4 allows).
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        422 => "Unprocessable Content",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// A complete (non-streaming) response.
#[derive(Clone, Copy, Debug)]
pub struct Response<'a> {
    pub status: u16,
    pub content_type: Option<&'a str>,
    /// Extra headers, written in order.
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
    /// Adds `Connection: close`.
    pub close: bool,
    /// HEAD request: write Content-Length of body but not the body.
    pub head_only: bool,
}

/// Appends "HTTP/1.1 {status} {reason}\r\nDate: ..\r\nContent-Type..\r\nContent-Length: n\r\n[Connection: close\r\n]extra..\r\n\r\n[body]"
/// 204 and 1xx/304 have no Content-Length and no body.
pub fn write_response(out: &mut Vec<u8>, date: &DateCache, resp: &Response) {
    let bodiless = matches!(resp.status, 100..=199 | 204 | 304);
    write_status_and_date(out, date, resp.status);
    if let Some(ct) = resp.content_type {
        write_field(out, "Content-Type", ct);
    }
    if !bodiless {
        out.extend_from_slice(b"Content-Length: ");
        push_decimal(out, resp.body.len() as u64);
        out.extend_from_slice(b"\r\n");
    }
    if resp.close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    for (name, value) in resp.headers {
        write_field(out, name, value);
    }
    out.extend_from_slice(b"\r\n");
    if !bodiless && !resp.head_only {
        out.extend_from_slice(resp.body);
    }
}

/// Head of an unbounded streaming response (SSE): status 200, Date, the given headers, no Content-Length, then "\r\n".
///
/// Without `Content-Length` or `Transfer-Encoding` the body runs until the
/// connection closes (RFC 9112 §6.3 rule 8), which is what an event stream
/// wants: no chunk framing per event.
pub fn write_stream_head(out: &mut Vec<u8>, date: &DateCache, headers: &[(&str, &str)]) {
    write_head(out, date, 200, headers);
}

/// A response head with the fields exactly as given, in their order, after the status line and `Date`: for the
/// compatible APIs, whose originals send their own set and order of fields.
pub fn write_head(out: &mut Vec<u8>, date: &DateCache, status: u16, headers: &[(&str, &str)]) {
    write_status_and_date(out, date, status);
    for (name, value) in headers {
        write_field(out, name, value);
    }
    out.extend_from_slice(b"\r\n");
}

/// A complete response with the caller's fields in their order, then `Content-Length` (not for 1xx, 204 and 304,
/// which have no body) and a `Connection` field when given; the body unless `head_only`.
pub fn write_answer(
    out: &mut Vec<u8>,
    date: &DateCache,
    status: u16,
    fields: &[(&str, &str)],
    body: &[u8],
    connection: Option<&str>,
    head_only: bool,
) {
    let bodiless = matches!(status, 100..=199 | 204 | 304);
    write_status_and_date(out, date, status);
    for (name, value) in fields {
        write_field(out, name, value);
    }
    if !bodiless {
        out.extend_from_slice(b"Content-Length: ");
        push_decimal(out, body.len() as u64);
        out.extend_from_slice(b"\r\n");
    }
    if let Some(connection) = connection {
        write_field(out, "Connection", connection);
    }
    out.extend_from_slice(b"\r\n");
    if !bodiless && !head_only {
        out.extend_from_slice(body);
    }
}

/// JSON error body `{"error":"<code>","message":"<message>"}` (properly JSON-escaped by hand, no serde), appended to `out`.
pub fn json_error_body(out: &mut Vec<u8>, code: &str, message: &str) {
    out.extend_from_slice(b"{\"error\":");
    push_json_string(out, code);
    out.extend_from_slice(b",\"message\":");
    push_json_string(out, message);
    out.push(b'}');
}

fn write_status_and_date(out: &mut Vec<u8>, date: &DateCache, status: u16) {
    debug_assert!(
        (100..=999).contains(&status),
        "status {status} is not three digits"
    );
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason(status).as_bytes());
    out.extend_from_slice(b"\r\nDate: ");
    out.extend_from_slice(date.get());
    out.extend_from_slice(b"\r\n");
}

/// `name: value\r\n`, dropping CR, LF and NUL so one call writes one line.
fn write_field(out: &mut Vec<u8>, name: &str, value: &str) {
    push_without_breaks(out, name);
    out.extend_from_slice(b": ");
    push_without_breaks(out, value);
    out.extend_from_slice(b"\r\n");
}

fn push_without_breaks(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    if !bytes.iter().any(|&b| matches!(b, b'\r' | b'\n' | 0)) {
        out.extend_from_slice(bytes);
        return;
    }
    out.extend(bytes.iter().filter(|&&b| !matches!(b, b'\r' | b'\n' | 0)));
}

/// Decimal digits of `n`, without `format!`.
fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// A JSON string literal (RFC 8259 §7): quote, backslash and control
/// characters escaped; everything else, including non-ASCII, as UTF-8.
fn push_json_string(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for &b in s.as_bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            0x00..=0x1f => {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

/// Length of an IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`.
const DATE_LEN: usize = 29;
/// 9999-12-31T23:59:59Z: IMF-fixdate has a four-digit year.
const MAX_UNIX_SECS: u64 = 253_402_300_799;

/// IMF-fixdate for the Date header, recomputed at most once per second (pingora's http/date.rs idea: cache per thread/worker).
///
/// Each worker owns one and calls [`DateCache::update`] once per loop turn
/// with the time it already read; the formatting runs only when the second
/// changed. Times before 1970 are written as the epoch.
#[derive(Clone, Debug)]
pub struct DateCache {
    secs: u64,
    text: [u8; DATE_LEN],
}

impl DateCache {
    pub fn new(now: SystemTime) -> Self {
        let secs = unix_secs(now);
        DateCache {
            secs,
            text: format_imf_fixdate(secs),
        }
    }

    pub fn update(&mut self, now: SystemTime) {
        let secs = unix_secs(now);
        if secs != self.secs {
            self.secs = secs;
            self.text = format_imf_fixdate(secs);
        }
    }

    pub fn get(&self) -> &[u8] {
        &self.text
    }
}

fn unix_secs(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        .min(MAX_UNIX_SECS)
}

/// RFC 9110 §5.6.7 IMF-fixdate for `secs` after the epoch (at most year 9999).
fn format_imf_fixdate(secs: u64) -> [u8; DATE_LEN] {
    const DAYS: [&[u8; 3]; 7] = [b"Sun", b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let secs = secs.min(MAX_UNIX_SECS);
    let days = secs / 86_400;
    let of_day = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    // 1970-01-01 was a Thursday.
    let weekday = DAYS[((days + 4) % 7) as usize];
    let month_name = MONTHS[(month - 1) as usize];

    let mut text = [0u8; DATE_LEN];
    let mut w: &mut [u8] = &mut text;
    // Writing 29 bytes into a 29-byte array cannot fail.
    let _ = write!(
        w,
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
        std::str::from_utf8(weekday).unwrap_or("Thu"),
        day,
        std::str::from_utf8(month_name).unwrap_or("Jan"),
        year,
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60,
    );
    let _ = w.flush();
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    const DATE: &str = "Sun, 06 Nov 1994 08:49:37 GMT";

    fn date() -> DateCache {
        DateCache::new(at(784_111_777))
    }

    #[test]
    fn known_dates() {
        let cases: [(u64, &str); 9] = [
            (0, "Thu, 01 Jan 1970 00:00:00 GMT"),
            (784_111_777, DATE),
            (951_782_400, "Tue, 29 Feb 2000 00:00:00 GMT"),
            (1_000_000_000, "Sun, 09 Sep 2001 01:46:40 GMT"),
            (1_234_567_890, "Fri, 13 Feb 2009 23:31:30 GMT"),
            (1_709_251_199, "Thu, 29 Feb 2024 23:59:59 GMT"),
            (4_107_542_400, "Mon, 01 Mar 2100 00:00:00 GMT"),
            (MAX_UNIX_SECS, "Fri, 31 Dec 9999 23:59:59 GMT"),
            (u64::MAX, "Fri, 31 Dec 9999 23:59:59 GMT"),
        ];
        for (secs, want) in cases {
            assert_eq!(
                std::str::from_utf8(&format_imf_fixdate(secs)).unwrap(),
                want,
                "{secs}"
            );
        }
        // Before the epoch: clamped.
        let before = UNIX_EPOCH - Duration::from_secs(10);
        assert_eq!(
            DateCache::new(before).get(),
            b"Thu, 01 Jan 1970 00:00:00 GMT"
        );
    }

    #[test]
    fn date_cache_updates_per_second() {
        let mut d = date();
        assert_eq!(d.get(), DATE.as_bytes());
        d.update(at(784_111_777) + Duration::from_millis(999));
        assert_eq!(d.get(), DATE.as_bytes());
        d.update(at(784_111_778));
        assert_eq!(d.get(), b"Sun, 06 Nov 1994 08:49:38 GMT");
    }

    fn response(
        status: u16,
        content_type: Option<&'static str>,
        body: &'static [u8],
    ) -> Response<'static> {
        Response {
            status,
            content_type,
            headers: &[],
            body,
            close: false,
            head_only: false,
        }
    }

    #[test]
    fn exact_bytes() {
        let json = b"{\"ok\":true}";
        let cases: Vec<(&str, Response, String)> = vec![
            (
                "200 json",
                response(200, Some("application/json"), json),
                format!("HTTP/1.1 200 OK\r\nDate: {DATE}\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{{\"ok\":true}}"),
            ),
            (
                "200 json close with extra headers",
                Response {
                    close: true,
                    headers: &[("Cache-Control", "no-store"), ("X-Id", "7")],
                    ..response(200, Some("application/json"), json)
                },
                format!("HTTP/1.1 200 OK\r\nDate: {DATE}\r\nContent-Type: application/json\r\nContent-Length: 11\r\nConnection: close\r\nCache-Control: no-store\r\nX-Id: 7\r\n\r\n{{\"ok\":true}}"),
            ),
            (
                "204",
                response(204, None, b"ignored"),
                format!("HTTP/1.1 204 No Content\r\nDate: {DATE}\r\n\r\n"),
            ),
            (
                "304",
                response(304, None, b""),
                format!("HTTP/1.1 304 Not Modified\r\nDate: {DATE}\r\n\r\n"),
            ),
            (
                "100",
                response(100, None, b""),
                format!("HTTP/1.1 100 Continue\r\nDate: {DATE}\r\n\r\n"),
            ),
            (
                "head",
                Response { head_only: true, ..response(200, Some("text/plain"), b"hello") },
                format!("HTTP/1.1 200 OK\r\nDate: {DATE}\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n"),
            ),
            (
                "404 empty body",
                response(404, None, b""),
                format!("HTTP/1.1 404 Not Found\r\nDate: {DATE}\r\nContent-Length: 0\r\n\r\n"),
            ),
            (
                "unknown status",
                response(599, None, b""),
                format!("HTTP/1.1 599 \r\nDate: {DATE}\r\nContent-Length: 0\r\n\r\n"),
            ),
            (
                "header injection stripped",
                Response {
                    headers: &[("X-A\r\n", "v\r\nSet-Cookie: x=1\0")],
                    ..response(200, Some("text/plain\r\nX: y"), b"")
                },
                format!("HTTP/1.1 200 OK\r\nDate: {DATE}\r\nContent-Type: text/plainX: y\r\nContent-Length: 0\r\nX-A: vSet-Cookie: x=1\r\n\r\n"),
            ),
        ];
        let d = date();
        for (name, resp, want) in cases {
            let mut out = b"prefix".to_vec();
            write_response(&mut out, &d, &resp);
            assert_eq!(String::from_utf8_lossy(&out[6..]), want, "{name}");
        }
    }

    #[test]
    fn stream_head() {
        let mut out = Vec::new();
        write_stream_head(
            &mut out,
            &date(),
            &[
                ("Content-Type", "text/event-stream"),
                ("Cache-Control", "no-cache"),
            ],
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("HTTP/1.1 200 OK\r\nDate: {DATE}\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\r\n")
        );
    }

    #[test]
    fn answers_with_the_callers_fields_in_order() {
        let d = date();
        let cases: [(u16, Option<&str>, bool, String); 4] = [
            (200, None, false, format!("HTTP/1.1 200 OK\r\nDate: {DATE}\r\nX-A: 1\r\nContent-Length: 2\r\n\r\nhi")),
            (404, Some("close"), true, format!("HTTP/1.1 404 Not Found\r\nDate: {DATE}\r\nX-A: 1\r\nContent-Length: 2\r\nConnection: close\r\n\r\n")),
            (204, Some("keep-alive"), false, format!("HTTP/1.1 204 No Content\r\nDate: {DATE}\r\nX-A: 1\r\nConnection: keep-alive\r\n\r\n")),
            (304, None, false, format!("HTTP/1.1 304 Not Modified\r\nDate: {DATE}\r\nX-A: 1\r\n\r\n")),
        ];
        for (status, connection, head_only, want) in cases {
            let mut out = Vec::new();
            write_answer(
                &mut out,
                &d,
                status,
                &[("X-A", "1")],
                b"hi",
                connection,
                head_only,
            );
            assert_eq!(String::from_utf8(out).unwrap(), want, "{status}");
        }
    }

    #[test]
    fn head_with_the_callers_fields_in_order() {
        let mut out = Vec::new();
        write_head(
            &mut out,
            &date(),
            204,
            &[("X-Powered-By", "Express"), ("Content-Length", "0")],
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("HTTP/1.1 204 No Content\r\nDate: {DATE}\r\nX-Powered-By: Express\r\nContent-Length: 0\r\n\r\n")
        );
    }

    #[test]
    fn json_errors() {
        let cases: [(&str, &str, &str); 4] = [
            (
                "bad_chunk",
                "The chunked request body is malformed.",
                r#"{"error":"bad_chunk","message":"The chunked request body is malformed."}"#,
            ),
            (
                "q",
                "say \"hi\" \\ now",
                r#"{"error":"q","message":"say \"hi\" \\ now"}"#,
            ),
            (
                "ctl",
                "a\nb\r\tc\u{0}\u{1f}\u{8}\u{c}",
                r#"{"error":"ctl","message":"a\nb\r\tc\u0000\u001f\b\f"}"#,
            ),
            (
                "utf8",
                "héllo ✓ \u{2028}",
                "{\"error\":\"utf8\",\"message\":\"héllo ✓ \u{2028}\"}",
            ),
        ];
        for (code, message, want) in cases {
            let mut out = Vec::new();
            json_error_body(&mut out, code, message);
            assert_eq!(String::from_utf8(out).unwrap(), want);
        }
        // Every HttpError body is well-formed with its own code.
        let err = super::super::HttpError::BodyTooLarge { limit: 1 };
        let mut out = Vec::new();
        json_error_body(&mut out, err.as_str(), err.message());
        assert!(out.starts_with(br#"{"error":"body_too_large","message":""#));
    }

    #[test]
    fn reasons() {
        for status in [
            100, 101, 200, 201, 204, 301, 304, 400, 401, 403, 404, 405, 408, 409, 410, 411, 413,
            414, 415, 422, 429, 431, 500, 501, 503, 505,
        ] {
            assert!(!reason(status).is_empty(), "{status}");
        }
        assert_eq!(reason(431), "Request Header Fields Too Large");
        assert_eq!(reason(999), "");
    }

    #[test]
    fn decimal() {
        for n in [0u64, 7, 10, 99, 100, 12345, u64::MAX] {
            let mut out = Vec::new();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }
}
