//! What express 4.17 and its middleware show a node-sse-server client, around the application's own handlers:
//! the `X-Powered-By` field, body-parser's JSON step (before CORS, so its errors carry no CORS field), the `cors`
//! middleware (`*`, and a `204` to any preflight), express's routing (case-insensitive, an optional trailing
//! slash, `HEAD` served by `GET` routes), its query parser (`qs`), and finalhandler's HTML error pages
//! (`Cannot GET /x`, `Bad Request`, ...).
//!
//! Differences, all on requests no client of the original sends: `qs`'s bracket syntax (`channels[]=a`) is not
//! read (such keys are other keys), and of body-parser's decodings only UTF-8 without a content coding is done
//! (`gzip`, `deflate` and the UTF-16/32 charsets get `415 Unsupported Media Type`).
//!
//! Sans-io: requests in, bytes and values out.

use super::super::{answer, Action, Ctx, Request};
use super::js::{self, JsValue};
use crate::http::request::Method;
use crate::http::response::{write_answer, DateCache};

/// body-parser's `limit` in the original (`100 * 1024`).
pub const JSON_LIMIT: usize = 100 * 1024;

/// The original's routes (`app.get('/')`, `/subscribe`, `/lastEvent`, `app.post('/publish/')`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Root,
    Subscribe,
    LastEvent,
    Publish,
}

impl Route {
    /// Express's match: the path (not decoded) equals the route's ignoring ASCII case, with or without one
    /// trailing slash; `GET` routes take `HEAD` too.
    pub fn parse(method: Method, path: &[u8]) -> Option<Route> {
        let trimmed = path.strip_suffix(b"/").unwrap_or(path);
        let route = match trimmed.to_ascii_lowercase().as_slice() {
            b"" => Route::Root,
            b"/subscribe" => Route::Subscribe,
            b"/lastevent" => Route::LastEvent,
            b"/publish" => Route::Publish,
            _ => return None,
        };
        let allowed = match route {
            Route::Publish => method == Method::Post,
            _ => matches!(method, Method::Get | Method::Head),
        };
        allowed.then_some(route)
    }
}

/// A query string as express's `qs` reads it, for the plain keys the routes use: pairs split on `&`, `+` is a
/// space, `decodeURIComponent` applied to keys and values (a value it refuses, a bad escape or invalid UTF-8,
/// stays as it was sent), and a repeated key's values joined with `,` (express gives an array, which the original
/// then fails on; spout reads `channels=a&channels=b` as `a,b`, docs/PROTOCOLS.md §2).
pub fn query_value(raw: &[u8], key: &str) -> Option<String> {
    let values: Vec<String> = raw
        .split(|b| *b == b'&')
        .filter(|pair| !pair.is_empty())
        .filter_map(|pair| {
            let (k, v) = match pair.windows(2).position(|w| w == b"]=") {
                Some(at) => pair.split_at(at + 1),
                None => match pair.iter().position(|b| *b == b'=') {
                    Some(at) => pair.split_at(at),
                    None => (pair, &b""[..]),
                },
            };
            let v = v.strip_prefix(b"=").unwrap_or(v);
            (uri_component(k) == key).then(|| uri_component(v))
        })
        .collect();
    (!values.is_empty()).then(|| values.join(","))
}

/// `qs`'s decoder: `+` → space, then `decodeURIComponent`, or the text as it was when that throws.
fn uri_component(raw: &[u8]) -> String {
    let spaced: Vec<u8> = raw
        .iter()
        .map(|&b| if b == b'+' { b' ' } else { b })
        .collect();
    let mut out = Vec::with_capacity(spaced.len());
    let mut at = 0;
    while let Some(&b) = spaced.get(at) {
        let escaped = (b == b'%')
            .then(|| spaced.get(at + 1..at + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (b, escaped) {
            (b'%', Some(byte)) => {
                out.push(byte);
                at += 3;
            }
            (b'%', None) => return String::from_utf8_lossy(&spaced).into_owned(),
            _ => {
                out.push(b);
                at += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| String::from_utf8_lossy(&spaced).into_owned())
}

/// Why body-parser refused a body: the status of finalhandler's page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyError {
    /// Not JSON, or not an object or array (strict mode): 400.
    Malformed,
    /// Over `JSON_LIMIT`: 413.
    TooLarge,
    /// A content coding or charset not decoded here: 415.
    Unsupported,
}

impl BodyError {
    pub fn status(self) -> u16 {
        match self {
            BodyError::Malformed => 400,
            BodyError::TooLarge => 413,
            BodyError::Unsupported => 415,
        }
    }
}

/// body-parser's `json()`: `None` when it leaves the body alone (no body, or not `application/json`), `{}` for an
/// empty body, else the object or array as `JSON.parse` reads it (a number past float64's range is `Infinity`).
pub fn json_body(req: &Request) -> Result<Option<JsValue>, BodyError> {
    let has_body =
        req.header("transfer-encoding").is_some() || req.header("content-length").is_some();
    let content_type = req
        .header("content-type")
        .map(|v| String::from_utf8_lossy(v).to_ascii_lowercase())
        .unwrap_or_default();
    let mut params = content_type.split(';');
    let media_type = params.next().unwrap_or_default().trim();
    if !has_body || media_type != "application/json" {
        return Ok(None);
    }
    let charset = params
        .filter_map(|p| p.trim().strip_prefix("charset="))
        .map(|c| c.trim_matches('"'))
        .next()
        .unwrap_or("utf-8");
    let identity = req
        .header("content-encoding")
        .is_none_or(|c| c.eq_ignore_ascii_case(b"identity"));
    if charset != "utf-8" || !identity {
        return Err(BodyError::Unsupported);
    }
    if req.body.len() > JSON_LIMIT {
        return Err(BodyError::TooLarge);
    }
    // iconv-lite's UTF-8 decoding: invalid bytes become U+FFFD, a leading byte order mark goes.
    let text = String::from_utf8_lossy(req.body);
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    match text
        .trim_start_matches([' ', '\t', '\n', '\r'])
        .chars()
        .next()
    {
        None if text.is_empty() => return Ok(Some(JsValue::Object(Vec::new()))),
        Some('{' | '[') => {}
        _ => return Err(BodyError::Malformed),
    }
    js::parse(text).map(Some).map_err(|_| BodyError::Malformed)
}

/// Node's status messages (the `statuses` package) for the pages spout sends.
fn status_message(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        404 => "Not Found",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    }
}

/// finalhandler's HTML document around `message` (escaped).
fn error_document(message: &str) -> String {
    let mut escaped = String::with_capacity(message.len());
    for c in message.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            _ => escaped.push(c),
        }
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>Error</title>\n</head>\n\
         <body>\n<pre>{escaped}</pre>\n</body>\n</html>\n"
    )
}

/// finalhandler's 404 text, `Cannot GET /path`, with the path as `encodeurl` leaves it.
pub fn not_found_message(req: &Request) -> String {
    let method = String::from_utf8_lossy(req.head.method_span.get(req.buf));
    format!("Cannot {method} {}", encode_url(req.path()))
}

/// `encodeurl`: bytes a URL may hold stay (a `%` only before two hex digits), the rest become `%XX`.
fn encode_url(raw: &[u8]) -> String {
    let mut out = String::with_capacity(raw.len());
    for (at, &b) in raw.iter().enumerate() {
        let escape_start = b == b'%'
            && raw
                .get(at + 1..at + 3)
                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit));
        let keep = escape_start
            || matches!(b, 0x21 | 0x23..=0x24 | 0x26..=0x3B | 0x3D | 0x3F..=0x5B | 0x5D | 0x5F | 0x61..=0x7A | 0x7E);
        if keep {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An answer as express writes it: `X-Powered-By`, then CORS when the `cors` middleware ran (`with_cors`), the
/// handler's fields, `Content-Length` and the connection field.
pub fn reply(
    req: &Request,
    ctx: &Ctx,
    status: u16,
    with_cors: bool,
    fields: &[(&str, &str)],
    body: &[u8],
) -> Action {
    let mut all: Vec<(&str, &str)> = vec![("X-Powered-By", "Express")];
    if with_cors {
        all.push(("Access-Control-Allow-Origin", "*"));
    }
    all.extend_from_slice(fields);
    answer(req, ctx, status, &all, body)
}

/// finalhandler's page for an error of `status`; `message` defaults to the status message (production mode).
pub fn error_page(
    req: &Request,
    ctx: &Ctx,
    status: u16,
    with_cors: bool,
    message: Option<&str>,
) -> Action {
    let document = error_document(message.unwrap_or(status_message(status)));
    reply(
        req,
        ctx,
        status,
        with_cors,
        &PAGE_FIELDS,
        document.as_bytes(),
    )
}

const PAGE_FIELDS: [(&str, &str); 3] = [
    ("Content-Security-Policy", "default-src 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("Content-Type", "text/html; charset=utf-8"),
];

/// The `cors` middleware's answer to a preflight on any path.
pub fn preflight(req: &Request, ctx: &Ctx) -> Action {
    let requested = req
        .header("access-control-request-headers")
        .map(|h| String::from_utf8_lossy(h).into_owned());
    let mut fields = vec![
        (
            "Access-Control-Allow-Methods",
            "GET,HEAD,PUT,PATCH,POST,DELETE",
        ),
        ("Vary", "Access-Control-Request-Headers"),
    ];
    if let Some(requested) = requested.as_deref().filter(|h| !h.is_empty()) {
        fields.push(("Access-Control-Allow-Headers", requested));
    }
    // The middleware sets it itself, on a 204 too.
    fields.push(("Content-Length", "0"));
    reply(req, ctx, 204, true, &fields, b"")
}

/// spout's refusal of a request no API has seen, as an express error page (no CORS: nothing ran yet).
pub fn refusal_page(status: u16, date: &DateCache, retry: bool) -> Vec<u8> {
    let document = error_document(status_message(status));
    let mut fields: Vec<(&str, &str)> = vec![("X-Powered-By", "Express")];
    fields.extend_from_slice(&PAGE_FIELDS);
    if retry {
        fields.push(("Retry-After", "1"));
    }
    let mut out = Vec::with_capacity(300 + document.len());
    write_answer(
        &mut out,
        date,
        status,
        &fields,
        document.as_bytes(),
        Some("close"),
        false,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_ignore_case_and_one_trailing_slash() {
        let cases: [(Method, &str, Option<Route>); 12] = [
            (Method::Get, "/", Some(Route::Root)),
            (Method::Head, "/", Some(Route::Root)),
            (Method::Get, "//", None),
            (Method::Get, "/subscribe", Some(Route::Subscribe)),
            (Method::Get, "/SubScribe/", Some(Route::Subscribe)),
            (Method::Get, "/subscribe//", None),
            (Method::Get, "/lastEvent", Some(Route::LastEvent)),
            (Method::Get, "/lastevent/", Some(Route::LastEvent)),
            (Method::Post, "/publish", Some(Route::Publish)),
            (Method::Post, "/PUBLISH/", Some(Route::Publish)),
            (Method::Get, "/publish", None),
            (Method::Post, "/subscribe", None),
        ];
        for (method, path, want) in cases {
            assert_eq!(
                Route::parse(method, path.as_bytes()),
                want,
                "{method:?} {path}"
            );
        }
    }

    #[test]
    fn queries_decode_as_qs_does() {
        let raw =
            b"channels=a%2Cb&clientId=x+y&channels=c&bad=%zz%41&utf=%C3%A9&latin=%E9&flag&k%65y=v";
        assert_eq!(query_value(raw, "channels").as_deref(), Some("a,b,c"));
        assert_eq!(query_value(raw, "clientId").as_deref(), Some("x y"));
        assert_eq!(query_value(raw, "bad").as_deref(), Some("%zz%41"));
        assert_eq!(query_value(raw, "utf").as_deref(), Some("\u{e9}"));
        assert_eq!(query_value(raw, "latin").as_deref(), Some("%E9"));
        assert_eq!(query_value(raw, "flag").as_deref(), Some(""));
        assert_eq!(query_value(raw, "key").as_deref(), Some("v"));
        assert_eq!(query_value(raw, "missing"), None);
        assert_eq!(
            query_value(b"a[]=1&a[]=2", "a"),
            None,
            "bracket syntax is not read"
        );
    }

    #[test]
    fn urls_in_pages_are_encoded_as_encodeurl_does() {
        assert_eq!(
            encode_url(b"/a b/%41%zz/\"<>\\^`{|}"),
            "/a%20b/%41%25zz/%22%3C%3E%5C%5E%60%7B%7C%7D"
        );
        assert_eq!(
            encode_url(b"/#$&'()*+,;=?@[]_~\xc3\xa9"),
            "/#$&'()*+,;=?@[]_~%C3%A9"
        );
    }

    #[test]
    fn error_documents_are_finalhandlers() {
        assert_eq!(
            error_document("Cannot GET /<x>&'\""),
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>Error</title>\n</head>\n\
             <body>\n<pre>Cannot GET /&lt;x&gt;&amp;&#39;&quot;</pre>\n</body>\n</html>\n"
        );
    }
}
