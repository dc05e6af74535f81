//! JSON string literals written the way the originals' encoders write them, for the compatible APIs whose answers
//! spout builds by hand: Go's `encoding/json` (keker) and Gson with HTML escaping (WS-PushServer).
//!
//! Both escape the HTML-significant characters as `\u00XX` (so a value can be dropped into a page), and U+2028
//! and U+2029 (which end lines in older JavaScript). Clients compare JSON values, not bytes (docs/PROTOCOLS.md,
//! rule 1), but matching the originals' bytes costs nothing and keeps transcripts comparable. Also here: Go's
//! conversion of arbitrary bytes to valid UTF-8, one U+FFFD per invalid byte, as its JSON encoder does.

use std::borrow::Cow;

/// Which encoder's escaping to follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// Go's `encoding/json` (`SetEscapeHTML(true)`, the default): `< > &`, and control characters other than
    /// `\n \r \t` as `\u00XX`.
    Go,
    /// Gson's `JsonWriter` with HTML-safe escaping (the default of `new Gson()`): `< > & = '`, and `\b \f` in
    /// their short forms.
    Gson,
}

/// Appends `text` as a JSON string literal in `style`.
pub fn push_string(out: &mut Vec<u8>, text: &str, style: Style) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let mut plain_from = 0;
    for (at, c) in text.char_indices() {
        let short: Option<&[u8]> = match c {
            '"' => Some(b"\\\""),
            '\\' => Some(b"\\\\"),
            '\n' => Some(b"\\n"),
            '\r' => Some(b"\\r"),
            '\t' => Some(b"\\t"),
            '\u{8}' if style == Style::Gson => Some(b"\\b"),
            '\u{c}' if style == Style::Gson => Some(b"\\f"),
            _ => None,
        };
        let unicode = short.is_none()
            && (u32::from(c) < 0x20
                || matches!(c, '<' | '>' | '&' | '\u{2028}' | '\u{2029}')
                || (style == Style::Gson && matches!(c, '=' | '\'')));
        if short.is_none() && !unicode {
            continue;
        }
        out.extend_from_slice(text.as_bytes().get(plain_from..at).unwrap_or_default());
        plain_from = at + c.len_utf8();
        match short {
            Some(escape) => out.extend_from_slice(escape),
            None => {
                let code = u32::from(c);
                out.extend_from_slice(b"\\u");
                for shift in [12, 8, 4, 0] {
                    out.push(HEX[((code >> shift) & 0xF) as usize]);
                }
            }
        }
    }
    out.extend_from_slice(text.as_bytes().get(plain_from..).unwrap_or_default());
    out.push(b'"');
}

/// `bytes` as text the way Go's JSON encoder reads them: valid UTF-8 unchanged, each byte of an invalid sequence
/// replaced by one U+FFFD (`utf8.DecodeRune` returns width 1 for it). Borrowed when nothing needs replacing.
pub fn go_lossy(bytes: &[u8]) -> Cow<'_, str> {
    let Err(_) = std::str::from_utf8(bytes) else {
        return Cow::Borrowed(std::str::from_utf8(bytes).unwrap_or_default());
    };
    let mut text = String::with_capacity(bytes.len() + 8);
    let mut rest = bytes;
    loop {
        match std::str::from_utf8(rest) {
            Ok(valid) => {
                text.push_str(valid);
                return Cow::Owned(text);
            }
            Err(e) => {
                let (valid, bad) = rest.split_at(e.valid_up_to());
                text.push_str(std::str::from_utf8(valid).unwrap_or_default());
                text.push('\u{FFFD}');
                rest = bad.get(1..).unwrap_or_default();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(text: &str, style: Style) -> String {
        let mut out = Vec::new();
        push_string(&mut out, text, style);
        String::from_utf8(out).expect("UTF-8")
    }

    #[test]
    fn escapes_as_each_encoder_does() {
        let text = "hello <b>&'=\"\\\n\t\u{8}\u{1}é\u{2028}";
        assert_eq!(
            string(text, Style::Go),
            r#""hello \u003cb\u003e\u0026'=\"\\\n\t\u0008\u0001é\u2028""#
        );
        assert_eq!(
            string(text, Style::Gson),
            r#""hello \u003cb\u003e\u0026\u0027\u003d\"\\\n\t\b\u0001é\u2028""#
        );
        for style in [Style::Go, Style::Gson] {
            let back: String = serde_json::from_str(&string(text, style)).expect("valid JSON");
            assert_eq!(back, text);
            assert_eq!(string("", style), "\"\"");
        }
    }

    #[test]
    fn invalid_bytes_become_one_replacement_each() {
        assert!(matches!(go_lossy(b"plain"), Cow::Borrowed("plain")));
        assert_eq!(go_lossy(b"a\xffb"), "a\u{FFFD}b");
        // A truncated sequence and a surrogate: one U+FFFD per byte, as Go's `utf8.DecodeRune` reads them.
        assert_eq!(go_lossy(b"\xe2\x82a"), "\u{FFFD}\u{FFFD}a");
        assert_eq!(go_lossy(b"\xed\xa0\x80"), "\u{FFFD}\u{FFFD}\u{FFFD}");
        assert_eq!(go_lossy(b"ok\xe2\x82"), "ok\u{FFFD}\u{FFFD}");
    }
}
