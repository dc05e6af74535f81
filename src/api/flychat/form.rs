//! What flychat reads from a request, decoded the way its JavaScript runtime decoded it (sans-io, no panics on any
//! input): query strings and `application/x-www-form-urlencoded` bodies as `URLSearchParams` parses them,
//! `multipart/form-data` bodies as `Request.formData()` does, resume ids as `parseInt` reads them, and room names
//! as the runtime's URL parser left them in `url.pathname`.
//!
//! Decoding is lenient where the originals were: a `%` not followed by two hex digits stays as it is, and bytes
//! that are not UTF-8 become U+FFFD. Nothing here allocates more than the input it decodes.

use std::borrow::Cow;

use crate::http::percent_encode;

/// The value of the first `name` pair of an `application/x-www-form-urlencoded` string (`URLSearchParams.get`):
/// `+` is a space, `%XX` a byte, and the bytes are UTF-8 (invalid sequences become U+FFFD).
pub fn urlencoded_get(raw: &[u8], name: &str) -> Option<String> {
    raw.split(|b| *b == b'&')
        .filter(|pair| !pair.is_empty())
        .find_map(|pair| {
            let (key, value) = match pair.iter().position(|b| *b == b'=') {
                Some(at) => (pair.get(..at)?, pair.get(at + 1..)?),
                None => (pair, &b""[..]),
            };
            (form_decode(key) == name).then(|| form_decode(value))
        })
}

/// One `application/x-www-form-urlencoded` name or value, decoded.
fn form_decode(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut at = 0;
    while let Some(&b) = raw.get(at) {
        let escaped = (b == b'%')
            .then(|| Some((hex_digit(*raw.get(at + 1)?)?, hex_digit(*raw.get(at + 2)?)?)))
            .flatten();
        match (b, escaped) {
            (_, Some((hi, lo))) => {
                out.push(hi << 4 | lo);
                at += 3;
            }
            (b'+', None) => {
                out.push(b' ');
                at += 1;
            }
            (other, None) => {
                out.push(other);
                at += 1;
            }
        }
    }
    match String::from_utf8(out) {
        Ok(text) => text,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

fn hex_digit(b: u8) -> Option<u8> {
    (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

/// Why a body is not form data (`Request.formData()` would throw).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormError {
    /// Neither `application/x-www-form-urlencoded` nor `multipart/form-data` (JSON, text, none).
    NotForm,
    /// `multipart/form-data` without a usable boundary, or a body that does not follow it.
    BadMultipart,
}

/// The fields of a form body, by its `Content-Type`.
pub enum Form<'a> {
    UrlEncoded(&'a [u8]),
    Multipart(Vec<Part<'a>>),
}

/// One part of a `multipart/form-data` body: its field name and its content.
pub struct Part<'a> {
    name: Cow<'a, str>,
    content: &'a [u8],
}

impl<'a> Form<'a> {
    pub fn parse(content_type: Option<&[u8]>, body: &'a [u8]) -> Result<Form<'a>, FormError> {
        let content_type = content_type.ok_or(FormError::NotForm)?;
        let mut params = content_type.split(|b| *b == b';');
        let essence = params.next().map(trim).unwrap_or_default();
        if essence.eq_ignore_ascii_case(b"application/x-www-form-urlencoded") {
            return Ok(Form::UrlEncoded(body));
        }
        if !essence.eq_ignore_ascii_case(b"multipart/form-data") {
            return Err(FormError::NotForm);
        }
        let boundary = params
            .find_map(|param| parameter(param, b"boundary"))
            .filter(|b| !b.is_empty() && b.len() <= 70)
            .ok_or(FormError::BadMultipart)?;
        multipart(body, &boundary).map(Form::Multipart)
    }

    /// The first value of field `name` (`FormData.get`); a file part's content is taken as its text.
    pub fn get(&self, name: &str) -> Option<String> {
        match self {
            Form::UrlEncoded(raw) => urlencoded_get(raw, name),
            Form::Multipart(parts) => parts
                .iter()
                .find(|part| part.name == name)
                .map(|part| String::from_utf8_lossy(part.content).into_owned()),
        }
    }
}

fn trim(bytes: &[u8]) -> &[u8] {
    bytes.trim_ascii()
}

/// The value of `name=value` or `name="value"` in one `;`-separated header parameter.
fn parameter<'a>(param: &'a [u8], name: &[u8]) -> Option<Cow<'a, [u8]>> {
    let param = trim(param);
    let at = param.iter().position(|b| *b == b'=')?;
    let key = param.get(..at).map(trim)?;
    if !key.eq_ignore_ascii_case(name) {
        return None;
    }
    let value = param.get(at + 1..).map(trim)?;
    match value.strip_prefix(b"\"") {
        None => Some(Cow::Borrowed(value)),
        Some(quoted) => {
            // RFC 9110 §5.6.4: a backslash quotes the next byte.
            let mut out = Vec::with_capacity(quoted.len());
            let mut bytes = quoted.iter();
            while let Some(&b) = bytes.next() {
                match b {
                    b'"' => return Some(Cow::Owned(out)),
                    b'\\' => out.push(*bytes.next()?),
                    other => out.push(other),
                }
            }
            None
        }
    }
}

/// Splits a `multipart/form-data` body (RFC 7578) into its parts.
fn multipart<'a>(body: &'a [u8], boundary: &[u8]) -> Result<Vec<Part<'a>>, FormError> {
    let mut delimiter = Vec::with_capacity(boundary.len() + 4);
    delimiter.extend_from_slice(b"\r\n--");
    delimiter.extend_from_slice(boundary);
    // The first delimiter may open the body without a CRLF before it (RFC 2046 §5.1.1).
    let opening = delimiter.get(2..).unwrap_or_default();
    let mut rest = match find(body, opening) {
        Some(0) => body.get(opening.len()..),
        _ => find(body, &delimiter).and_then(|at| body.get(at + delimiter.len()..)),
    }
    .ok_or(FormError::BadMultipart)?;
    let mut parts = Vec::new();
    loop {
        if rest.starts_with(b"--") {
            return Ok(parts);
        }
        // Transport padding, then the CRLF that ends the delimiter line.
        let line_end = find(rest, b"\r\n").ok_or(FormError::BadMultipart)?;
        let part_start = rest.get(line_end + 2..).ok_or(FormError::BadMultipart)?;
        let part_end = find(part_start, &delimiter).ok_or(FormError::BadMultipart)?;
        let part = part_start.get(..part_end).ok_or(FormError::BadMultipart)?;
        parts.extend(form_part(part)?);
        rest = part_start
            .get(part_end + delimiter.len()..)
            .ok_or(FormError::BadMultipart)?;
    }
}

/// One part: headers, an empty line, the content. Parts without a `form-data` disposition and a name are skipped.
fn form_part(part: &[u8]) -> Result<Option<Part<'_>>, FormError> {
    let (headers, content) = if part.starts_with(b"\r\n") {
        (&b""[..], part.get(2..).unwrap_or_default())
    } else {
        let end = find(part, b"\r\n\r\n").ok_or(FormError::BadMultipart)?;
        (
            part.get(..end).unwrap_or_default(),
            part.get(end + 4..).unwrap_or_default(),
        )
    };
    let disposition = headers.split(|b| *b == b'\n').find_map(|line| {
        let line = trim(line);
        let colon = line.iter().position(|b| *b == b':')?;
        let name = line.get(..colon).map(trim)?;
        name.eq_ignore_ascii_case(b"content-disposition")
            .then(|| line.get(colon + 1..))
            .flatten()
    });
    let Some(disposition) = disposition else {
        return Ok(None);
    };
    let mut params = disposition.split(|b| *b == b';');
    if !params
        .next()
        .is_some_and(|kind| trim(kind).eq_ignore_ascii_case(b"form-data"))
    {
        return Ok(None);
    }
    let Some(name) = params.find_map(|param| parameter(param, b"name")) else {
        return Ok(None);
    };
    let name = match name {
        Cow::Borrowed(bytes) => String::from_utf8_lossy(bytes),
        Cow::Owned(bytes) => Cow::Owned(String::from_utf8_lossy(&bytes).into_owned()),
    };
    Ok(Some(Part { name, content }))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// JavaScript's `parseInt(text)` without a radix, for resume ids: leading white space, an optional sign, then
/// `0x` and hex digits or decimal digits, as many as there are (`"12abc"` is 12). `None` where it gives `NaN`
/// (no digit). Values past `i64` saturate: they still compare above every id.
pub fn parse_int(text: &str) -> Option<i64> {
    let text = text.trim_start_matches(|c: char| c.is_whitespace() || c == '\u{FEFF}');
    let (negative, text) = match text.as_bytes().first() {
        Some(b'-') => (true, text.get(1..)?),
        Some(b'+') => (false, text.get(1..)?),
        _ => (false, text),
    };
    let (radix, digits) = match text.get(..2) {
        Some("0x" | "0X") => (16, text.get(2..)?),
        _ => (10, text),
    };
    let mut value: i64 = 0;
    let mut any = false;
    for digit in digits.chars().map_while(|c| c.to_digit(radix)) {
        any = true;
        value = value
            .saturating_mul(i64::from(radix))
            .saturating_add(i64::from(digit));
    }
    any.then_some(if negative { -value } else { value })
}

/// A room as flychat's runtime saw it in `url.pathname`: the raw path segment, with the bytes its URL parser
/// percent-encodes in a path (`"`, `<`, `>`, `` ` ``, `{`, `}`, and every byte past `~`) written as `%XX`. So a
/// raw `é` and `%C3%A9` name one room, as they did there, and a room name is always ASCII.
pub fn canonical_room(raw: &[u8]) -> String {
    percent_encode(raw, |b| {
        b.is_ascii_graphic() && !matches!(b, b'"' | b'<' | b'>' | b'`' | b'{' | b'}')
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::XorShift;

    #[test]
    fn urlencoded_values_decode_like_url_search_params() {
        let raw = b"from=al+ice&text=hello%20%3Cworld%3E%20%26%20%22q%22&from=second&flag&bad=%zz%4&utf=caf%C3%A9&lossy=%FF";
        let cases = [
            ("from", Some("al ice")),
            ("text", Some("hello <world> & \"q\"")),
            ("flag", Some("")),
            ("bad", Some("%zz%4")),
            ("utf", Some("café")),
            ("lossy", Some("\u{FFFD}")),
            ("missing", None),
        ];
        for (name, want) in cases {
            assert_eq!(urlencoded_get(raw, name).as_deref(), want, "{name}");
        }
        assert_eq!(urlencoded_get(b"a%3Db=1", "a=b").as_deref(), Some("1"));
        assert_eq!(urlencoded_get(b"&&x=1&", "x").as_deref(), Some("1"));
    }

    #[test]
    fn forms_are_read_by_content_type() {
        let urlencoded = Form::parse(
            Some(b"application/x-www-form-urlencoded; charset=UTF-8"),
            b"from=a&text=b",
        );
        assert_eq!(
            urlencoded.ok().and_then(|f| f.get("text")).as_deref(),
            Some("b")
        );
        for bad in [
            None,
            Some(&b"application/json"[..]),
            Some(b"text/plain"),
            Some(b"application/x-www-form-urlencodedx"),
        ] {
            assert!(
                matches!(Form::parse(bad, b"from=a&text=b"), Err(FormError::NotForm)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn multipart_bodies_give_their_fields() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"from\"\r\n\r\nal\xc3\xa9\r\n\
            --XyZ\r\ncontent-disposition: form-data; name=text; filename=\"t.txt\"\r\nContent-Type: text/plain\r\n\r\n\
            line 1\r\nline 2 --XyZ not a delimiter\r\n\
            --XyZ\r\nContent-Disposition: form-data; name=\"from\"\r\n\r\nsecond\r\n--XyZ--\r\n";
        let form = Form::parse(Some(b"multipart/form-data; boundary=XyZ"), body).expect("valid");
        assert_eq!(form.get("from").as_deref(), Some("alé"));
        assert_eq!(
            form.get("text").as_deref(),
            Some("line 1\r\nline 2 --XyZ not a delimiter")
        );
        assert_eq!(form.get("other"), None);

        let quoted = b"preamble\r\n--a b\r\nContent-Disposition: form-data; name=\"t\\\"x\"\r\n\r\n\r\n--a b--";
        let form = Form::parse(
            Some(b"Multipart/Form-Data; charset=x; boundary=\"a b\""),
            quoted,
        )
        .expect("valid");
        assert_eq!(form.get("t\"x").as_deref(), Some(""));
    }

    #[test]
    fn broken_multipart_bodies_are_refused() {
        let ct = Some(&b"multipart/form-data; boundary=b"[..]);
        for body in [
            &b""[..],
            b"no delimiter",
            b"--b\r\nContent-Disposition: form-data; name=x\r\n\r\nunterminated",
            b"--b\r\nContent-Disposition: form-data; name=x\r\nno blank line\r\n--b--",
            b"--b",
        ] {
            assert!(
                Form::parse(ct, body).is_err(),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
        for content_type in [
            &b"multipart/form-data"[..],
            b"multipart/form-data; boundary=",
            b"multipart/form-data; boundary=\"open",
        ] {
            assert!(
                matches!(
                    Form::parse(Some(content_type), b"--b--"),
                    Err(FormError::BadMultipart)
                ),
                "{content_type:?}"
            );
        }
    }

    #[test]
    fn no_body_panics_the_form_parsers() {
        let mut rng = XorShift(0x5eed);
        let alphabet = b"-b\r\n:;=\"\\ form-datanameContent-Disposition%+&x";
        for _ in 0..5000 {
            let len = rng.below(80);
            let body: Vec<u8> = (0..len)
                .map(|_| alphabet[rng.below(alphabet.len())])
                .collect();
            if let Ok(form) = Form::parse(Some(b"multipart/form-data; boundary=b"), &body) {
                let _ = form.get("name");
            }
            let _ = urlencoded_get(&body, "x");
            let _ = parse_int(&String::from_utf8_lossy(&body));
        }
    }

    #[test]
    fn parse_int_reads_like_javascript() {
        let cases = [
            ("5", Some(5)),
            ("  \t42", Some(42)),
            ("12abc", Some(12)),
            ("-3", Some(-3)),
            ("+7", Some(7)),
            ("0x1A", Some(26)),
            ("0X1a", Some(26)),
            ("007", Some(7)),
            ("1e3", Some(1)),
            ("3.9", Some(3)),
            ("99999999999999999999999", Some(i64::MAX)),
            ("abc", None),
            ("", None),
            ("-", None),
            ("0x", None),
            ("--1", None),
            ("\u{FEFF}8", Some(8)),
        ];
        for (text, want) in cases {
            assert_eq!(parse_int(text), want, "{text:?}");
        }
    }

    #[test]
    fn rooms_are_named_as_the_url_parser_left_them() {
        assert_eq!(canonical_room(b"lobby"), "lobby");
        assert_eq!(canonical_room(b"a%20b"), "a%20b");
        assert_eq!(canonical_room(b""), "");
        assert_eq!(canonical_room("é".as_bytes()), "%C3%A9");
        assert_eq!(canonical_room(b"x\"<>`{}|^"), "x%22%3C%3E%60%7B%7D|^");
        assert_eq!(canonical_room(b"\xff\x7f"), "%FF%7F");
    }
}
