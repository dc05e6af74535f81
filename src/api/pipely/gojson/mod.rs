//! Go's `encoding/json` as Pipely's `/publish` uses it: `json.NewDecoder(body).Decode(&event)` into
//! `Event{channel_id, type, origin_id string; payload interface{}}`.
//!
//! A client sees this decoder in what is accepted and in the error texts, which are the 400 body. So this is a port
//! of the parts that show:
//! - Go's scanner (`scanner`, a port of `encoding/json/scanner.go`), to find the first JSON value and to word syntax
//!   errors exactly as Go does: `invalid character 'b' looking for beginning of object key string`, `EOF` for an
//!   empty body, `unexpected EOF` for a cut-off one, `exceeded max depth` past 10000 levels. Only the first value is
//!   read; what follows it is never looked at (`{...} garbage` is accepted).
//! - The decoding into the struct: keys match field names exactly or case-insensitively (`strings.EqualFold`),
//!   unknown keys are ignored, a later duplicate overwrites, `null` leaves a string field as it was, and a value of
//!   the wrong type gives `json: cannot unmarshal number into Go struct field Event.channel_id of type string`
//!   (the first such error is reported, after the whole value was read). A top-level value that is not an object
//!   gives `json: cannot unmarshal array into Go value of type server.Event`; a top-level `null` decodes to the
//!   empty event.
//! - Strings as Go decodes them: escapes, UTF-16 surrogate pairs, and U+FFFD for a lone surrogate or for each byte
//!   that is not valid UTF-8.
//! - A number in the payload that does not fit a float64 (`1e400`: `strconv.ParseFloat` gives `ErrRange`) is a
//!   type error, `json: cannot unmarshal number 1e400 into Go struct field Event.payload of type float64`, so the
//!   event is refused, not passed on as a number most JSON parsers refuse.
//!
//! The payload is not decoded into values and encoded again as Go does (which sorts object keys, rounds numbers
//! through float64 and escapes `<>&`): it is kept as compact JSON text, with its strings re-encoded as valid
//! UTF-8. That is the same JSON value (docs/PROTOCOLS.md, rules 1 and 2: numbers stay exact); only where an object
//! repeats a key does Go keep the last one and this text both (a JSON parser reading it keeps the last too).
//!
//! Sans-io, iterative (no recursion, so no stack depth a client can drive), and no panics on any input.

mod scanner;

use std::fmt;

use super::goweb::equal_fold;
use scanner::{first_value, is_space, quote_char};

/// The decoded event. Missing strings are empty, as Go's zero values; `payload` is compact JSON, `None` for a
/// missing or `null` payload (which Go encodes as `null`).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Event {
    pub channel_id: String,
    pub kind: String,
    pub origin_id: String,
    pub payload: Option<String>,
}

/// Why Go's decoder refuses a body; `Display` gives Go's error text. Not `Copy`: an out-of-range number's text is
/// part of the error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Nothing but white space: `EOF`.
    Eof,
    /// The first value is cut off: `unexpected EOF`.
    UnexpectedEof,
    /// `invalid character <byte> <context>`.
    Syntax { byte: u8, context: &'static str },
    /// A struct field got a value of another type.
    FieldType {
        kind: &'static str,
        field: &'static str,
    },
    /// The top-level value is not an object (nor `null`).
    ValueType { kind: &'static str },
    /// A number in the payload overflows a float64; its text as sent.
    PayloadNumber(Box<str>),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Eof => f.write_str("EOF"),
            DecodeError::UnexpectedEof => f.write_str("unexpected EOF"),
            DecodeError::Syntax { byte, context } => {
                write!(f, "invalid character {} {context}", quote_char(*byte))
            }
            DecodeError::FieldType { kind, field } => write!(
                f,
                "json: cannot unmarshal {kind} into Go struct field Event.{field} of type string"
            ),
            DecodeError::ValueType { kind } => write!(
                f,
                "json: cannot unmarshal {kind} into Go value of type server.Event"
            ),
            DecodeError::PayloadNumber(number) => write!(
                f,
                "json: cannot unmarshal number {number} into Go struct field Event.payload of type float64"
            ),
        }
    }
}

/// Decodes the first JSON value of `body` into the event, as Go's decoder does.
pub fn decode_event(body: &[u8]) -> Result<Event, DecodeError> {
    let (start, end) = first_value(body)?;
    let value = body.get(start..end).unwrap_or_default();
    match value.first() {
        Some(b'{') => decode_object(value),
        Some(b'n') => Ok(Event::default()),
        first => Err(DecodeError::ValueType {
            kind: kind_of(first.copied()),
        }),
    }
}

/// The Go name of the JSON type a value starting with `first` has, as in type errors.
fn kind_of(first: Option<u8>) -> &'static str {
    match first {
        Some(b'"') => "string",
        Some(b't' | b'f') => "bool",
        Some(b'{') => "object",
        Some(b'[') => "array",
        _ => "number",
    }
}

// ---- decoding a scanned value ----------------------------------------------------------------------------------

/// Reads `bytes` (a syntactically valid value, checked by the scanner) from a position.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(is_space) {
            self.at += 1;
        }
    }

    /// Moves past the value that starts here and returns its span.
    fn value(&mut self) -> (usize, usize) {
        let start = self.at;
        match self.peek() {
            Some(b'"') => {
                self.at += 1;
                self.skip_string_body();
            }
            Some(b'{' | b'[') => {
                let mut depth = 0usize;
                while let Some(c) = self.peek() {
                    self.at += 1;
                    match c {
                        b'"' => self.skip_string_body(),
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth = depth.saturating_sub(1);
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {
                while self
                    .peek()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
                {
                    self.at += 1;
                }
            }
        }
        (start, self.at)
    }

    /// After an opening quote: moves past the closing one.
    fn skip_string_body(&mut self) {
        while let Some(c) = self.peek() {
            self.at += 1;
            match c {
                b'"' => return,
                b'\\' => self.at += 1,
                _ => {}
            }
        }
    }
}

/// The event's fields by their JSON names.
const FIELDS: [&str; 4] = ["channel_id", "type", "origin_id", "payload"];

fn decode_object(object: &[u8]) -> Result<Event, DecodeError> {
    let mut event = Event::default();
    let mut first_error = None;
    let mut reader = Reader {
        bytes: object,
        at: 1,
    };
    loop {
        reader.skip_space();
        if reader.peek() != Some(b'"') {
            // `}`: the end of the object.
            break;
        }
        let (key_start, key_end) = reader.value();
        let key = unquote(object.get(key_start..key_end).unwrap_or_default());
        reader.skip_space();
        reader.at += 1; // ':'
        reader.skip_space();
        let (start, end) = reader.value();
        let value = object.get(start..end).unwrap_or_default();
        let field = FIELDS
            .into_iter()
            .find(|name| key == *name)
            .or_else(|| FIELDS.into_iter().find(|name| equal_fold(&key, name)));
        match field {
            Some("payload") => match compact(value) {
                Ok(text) => event.payload = (value.first() != Some(&b'n')).then_some(text),
                Err(number) => {
                    first_error.get_or_insert(DecodeError::PayloadNumber(number));
                }
            },
            Some(name) => match value.first() {
                Some(b'"') => {
                    let text = unquote(value);
                    match name {
                        "channel_id" => event.channel_id = text,
                        "type" => event.kind = text,
                        _ => event.origin_id = text,
                    }
                }
                // `null` leaves a string as it is.
                Some(b'n') => {}
                first => {
                    first_error.get_or_insert(DecodeError::FieldType {
                        kind: kind_of(first.copied()),
                        field: name,
                    });
                }
            },
            None => {}
        }
        reader.skip_space();
        if reader.peek() == Some(b',') {
            reader.at += 1;
        } else {
            break;
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(event),
    }
}

/// A JSON string literal (quotes included, syntax checked) as Go's `unquote` decodes it.
fn unquote(literal: &[u8]) -> String {
    let inner = literal
        .get(1..literal.len().saturating_sub(1))
        .unwrap_or_default();
    let mut out = String::with_capacity(inner.len());
    let mut at = 0;
    while let Some(&c) = inner.get(at) {
        if c != b'\\' {
            // Copy the run up to the next escape, each invalid byte as U+FFFD.
            let end = inner
                .get(at..)
                .and_then(|rest| rest.iter().position(|b| *b == b'\\'))
                .map_or(inner.len(), |n| at + n);
            out.push_str(&super::goweb::lossy(inner.get(at..end).unwrap_or_default()));
            at = end;
            continue;
        }
        let escape = inner.get(at + 1).copied().unwrap_or(b'\\');
        at += 2;
        let simple = match escape {
            b'b' => Some('\u{8}'),
            b'f' => Some('\u{c}'),
            b'n' => Some('\n'),
            b'r' => Some('\r'),
            b't' => Some('\t'),
            b'u' => None,
            other => Some(char::from(other)),
        };
        if let Some(c) = simple {
            out.push(c);
            continue;
        }
        let unit = hex4(inner.get(at..at + 4));
        at += 4;
        let c = if (0xD800..0xDC00).contains(&unit)
            && inner.get(at..at + 2) == Some(b"\\u")
            && (0xDC00..0xE000).contains(&hex4(inner.get(at + 2..at + 6)))
        {
            let low = hex4(inner.get(at + 2..at + 6));
            at += 6;
            char::from_u32(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00))
        } else {
            char::from_u32(unit)
        };
        out.push(c.unwrap_or(char::REPLACEMENT_CHARACTER));
    }
    out
}

fn hex4(digits: Option<&[u8]>) -> u32 {
    digits.map_or(0, |d| {
        d.iter()
            .fold(0, |n, c| n << 4 | char::from(*c).to_digit(16).unwrap_or(0))
    })
}

/// A scanned value as compact JSON: white space between tokens dropped, strings re-encoded (valid UTF-8, JSON
/// escapes), numbers and literals as sent. `Err` holds the first number (outside strings) that a float64 cannot
/// hold: `ParseFloat`'s `ErrRange`, which is only overflow (a number too small becomes 0, as in Rust).
fn compact(value: &[u8]) -> Result<String, Box<str>> {
    let mut out = Vec::with_capacity(value.len());
    let mut reader = Reader {
        bytes: value,
        at: 0,
    };
    while let Some(c) = reader.peek() {
        match c {
            b'"' => {
                let (start, end) = reader.value();
                let text = unquote(value.get(start..end).unwrap_or_default());
                // Writing a `str` into a `Vec` cannot fail.
                let _ = serde_json::to_writer(&mut out, &text);
            }
            b'-' | b'0'..=b'9' => {
                let (start, end) = reader.value();
                let number = value.get(start..end).unwrap_or_default();
                // The scanner checked the syntax: the number is ASCII.
                let text = std::str::from_utf8(number).unwrap_or_default();
                if text.parse::<f64>().is_ok_and(f64::is_infinite) {
                    return Err(text.into());
                }
                out.extend_from_slice(number);
            }
            _ if is_space(c) => reader.at += 1,
            _ => {
                out.push(c);
                reader.at += 1;
            }
        }
    }
    // Only ASCII was copied byte by byte, and serde_json wrote the strings: valid UTF-8.
    Ok(String::from_utf8(out).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::scanner::MAX_DEPTH;
    use super::*;
    use crate::testing::XorShift;

    fn error_text(body: &str) -> String {
        decode_event(body.as_bytes()).expect_err(body).to_string()
    }

    #[test]
    fn go_error_texts() {
        let cases: [(&str, &str); 24] = [
            ("", "EOF"),
            (" \n\t ", "EOF"),
            ("{", "unexpected EOF"),
            ("{\"channel_id\":", "unexpected EOF"),
            ("  -", "unexpected EOF"),
            (
                "{b}",
                "invalid character 'b' looking for beginning of object key string",
            ),
            (
                "{\"a\":1,}",
                "invalid character '}' looking for beginning of object key string",
            ),
            ("x", "invalid character 'x' looking for beginning of value"),
            ("]", "invalid character ']' looking for beginning of value"),
            ("{\"a\" 1}", "invalid character '1' after object key"),
            (
                "{\"a\":1 \"b\"}",
                "invalid character '\"' after object key:value pair",
            ),
            ("[1 2]", "invalid character '2' after array element"),
            (
                "[1,]",
                "invalid character ']' looking for beginning of value",
            ),
            (
                "{\"a\":tru}",
                "invalid character '}' in literal true (expecting 'e')",
            ),
            (
                "{\"a\":nul}",
                "invalid character '}' in literal null (expecting 'l')",
            ),
            (
                "{\"a\":fx}",
                "invalid character 'x' in literal false (expecting 'a')",
            ),
            ("{\"a\":-x}", "invalid character 'x' in numeric literal"),
            (
                "{\"a\":1.}",
                "invalid character '}' after decimal point in numeric literal",
            ),
            (
                "{\"a\":1e}",
                "invalid character '}' in exponent of numeric literal",
            ),
            (
                "{\"a\":01}",
                "invalid character '1' after object key:value pair",
            ),
            (
                "{\"a\":\"\\x\"}",
                "invalid character 'x' in string escape code",
            ),
            (
                "{\"a\":\"\\u12g4\"}",
                "invalid character 'g' in \\u hexadecimal character escape",
            ),
            (
                "{\"a\":\"\t\"}",
                "invalid character '\\t' in string literal",
            ),
            (
                "{'a':1}",
                "invalid character '\\'' looking for beginning of object key string",
            ),
        ];
        for (body, want) in cases {
            assert_eq!(error_text(body), want, "{body:?}");
        }
    }

    #[test]
    fn type_errors_name_the_field_and_come_after_the_whole_value() {
        let cases: [(&str, &str); 13] = [
            ("{\"channel_id\":1}", "json: cannot unmarshal number into Go struct field Event.channel_id of type string"),
            ("{\"TYPE\":true}", "json: cannot unmarshal bool into Go struct field Event.type of type string"),
            ("{\"origin_id\":{}}", "json: cannot unmarshal object into Go struct field Event.origin_id of type string"),
            ("{\"origin_id\":[],\"type\":1}", "json: cannot unmarshal array into Go struct field Event.origin_id of type string"),
            ("[]", "json: cannot unmarshal array into Go value of type server.Event"),
            ("\"x\"", "json: cannot unmarshal string into Go value of type server.Event"),
            ("12 garbage", "json: cannot unmarshal number into Go value of type server.Event"),
            ("true", "json: cannot unmarshal bool into Go value of type server.Event"),
            // A syntax error anywhere in the value comes first.
            ("{\"channel_id\":1,x}", "invalid character 'x' looking for beginning of object key string"),
            // A payload number past float64's range, wherever it is in the payload, named as sent; the first error wins.
            ("{\"payload\":1e400}", "json: cannot unmarshal number 1e400 into Go struct field Event.payload of type float64"),
            ("{\"Payload\":{\"a\":[\"1e400\",-2E+308]}}", "json: cannot unmarshal number -2E+308 into Go struct field Event.payload of type float64"),
            ("{\"payload\":[1e400],\"type\":1}", "json: cannot unmarshal number 1e400 into Go struct field Event.payload of type float64"),
            ("{\"type\":1,\"payload\":1e400}", "json: cannot unmarshal number into Go struct field Event.type of type string"),
        ];
        for (body, want) in cases {
            assert_eq!(error_text(body), want, "{body:?}");
        }
    }

    #[test]
    fn quote_char_is_gos() {
        let cases: [(u8, &str); 9] = [
            (b'b', "'b'"),
            (b'\'', "'\\''"),
            (b'"', "'\"'"),
            (b'\\', "'\\\\'"),
            (0x01, "'\\x01'"),
            (0x7F, "'\\x7f'"),
            (0x85, "'\\u0085'"),
            (0xC3, "'\u{c3}'"),
            (0xAD, "'\\u00ad'"),
        ];
        for (byte, want) in cases {
            assert_eq!(quote_char(byte), want, "{byte:#x}");
        }
        assert_eq!(
            decode_event(b"\xff").expect_err("invalid").to_string(),
            "invalid character '\u{ff}' looking for beginning of value"
        );
    }

    #[test]
    fn fields_match_case_insensitively_and_the_rest_is_ignored() {
        let body = br#" {"CHANNEL_ID":"abcdefghijkl","Type":"chat","origin_ID":"server","extra":{"x":[1,{"y":"}"}]},
            "payload" : { "z" : 1 , "a" : [ 1.0 , 2.5e3 , 12345678901234567890 ] , "html" : "<b>&" } } trailing garbage"#;
        let event = decode_event(body).expect("valid");
        assert_eq!(
            event,
            Event {
                channel_id: "abcdefghijkl".into(),
                kind: "chat".into(),
                origin_id: "server".into(),
                payload: Some(
                    r#"{"z":1,"a":[1.0,2.5e3,12345678901234567890],"html":"<b>&"}"#.into()
                ),
            }
        );
        let later_wins =
            decode_event(br#"{"type":"a","TYPE":"b","type":null,"payload":null}"#).expect("valid");
        assert_eq!(later_wins.kind, "b");
        assert_eq!(later_wins.payload, None);
        assert_eq!(decode_event(b"null").expect("valid"), Event::default());
        assert_eq!(decode_event(b"{}").expect("valid"), Event::default());
    }

    #[test]
    fn strings_decode_as_go_decodes_them() {
        let event = decode_event(
            b"{\"type\":\"a\\u00e9\\ud83d\\ude00\\ud800x\\n\\/\\\"\xff\xc3\xa9\",\"payload\":[\"\\udc00\xfe\",\"\\u003c\"]}",
        )
        .expect("valid");
        assert_eq!(event.kind, "a\u{e9}\u{1F600}\u{fffd}x\n/\"\u{fffd}\u{e9}");
        assert_eq!(
            event.payload.as_deref(),
            Some("[\"\u{fffd}\u{fffd}\",\"<\"]")
        );
    }

    #[test]
    fn depth_is_bounded_like_gos() {
        let deep = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert_eq!(
            error_text(&deep),
            "json: cannot unmarshal array into Go value of type server.Event"
        );
        let too_deep = format!("{{\"payload\":{}", "[".repeat(MAX_DEPTH));
        assert_eq!(
            error_text(&too_deep),
            "invalid character '[' exceeded max depth"
        );
    }

    #[test]
    fn garbage_never_panics_and_valid_payloads_stay_valid_json() {
        const PIECES: [&[u8]; 16] = [
            b"{",
            b"}",
            b"[",
            b"]",
            b"\"",
            b":",
            b",",
            b"\\",
            b"u",
            b"1",
            b"-",
            b"e",
            b"null",
            b" ",
            b"\xff",
            b"\"payload\":",
        ];
        let mut rng = XorShift(0x005E_EDF0_9011);
        for _ in 0..20_000 {
            let len = (rng.next() % 24) as usize;
            let mut body = Vec::new();
            for _ in 0..len {
                body.extend_from_slice(PIECES[(rng.next() % PIECES.len() as u64) as usize]);
            }
            if let Ok(event) = decode_event(&body) {
                if let Some(payload) = event.payload {
                    assert!(
                        serde_json::from_str::<serde_json::Value>(&payload).is_ok(),
                        "{payload:?} from {:?}",
                        String::from_utf8_lossy(&body)
                    );
                }
            }
        }
    }
}
