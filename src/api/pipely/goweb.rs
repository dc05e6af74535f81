//! The parts of Go's standard library and gorilla/mux v1.6.2 whose behaviour a Pipely client can observe in
//! requests: path decoding and cleaning (mux answers an unclean path with a 301 to the cleaned one), query
//! parsing (`net/url.ParseQuery`), `strings.EqualFold` (Unicode case-insensitive client ids) and Go's way of
//! turning bytes into text (each byte that is not part of valid UTF-8 becomes one U+FFFD).
//!
//! Sans-io and allocation only into the values returned; nothing here panics on client input.

use crate::http::percent_encode;

/// `net/url` path unescaping: `%XX` becomes that byte (any byte: Go strings hold bytes); a `%` without two hex
/// digits makes the whole request target invalid (`None`; Go's server answers `400 Bad Request`). `+` is literal.
pub fn decode_path(raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.iter();
    while let Some(&b) = bytes.next() {
        if b == b'%' {
            let hi = char::from(*bytes.next()?).to_digit(16)?;
            let lo = char::from(*bytes.next()?).to_digit(16)?;
            out.push(u8::try_from(hi << 4 | lo).ok()?);
        } else {
            out.push(b);
        }
    }
    Some(out)
}

/// mux's `cleanPath`: Go's `path.Clean` (one slash between elements, `.` dropped, `..` removes the element before
/// it and stops at the root), with a trailing slash kept when the path had one.
pub fn clean_path(path: &[u8]) -> Vec<u8> {
    let mut elements: Vec<&[u8]> = Vec::new();
    for element in path.split(|b| *b == b'/') {
        match element {
            b"" | b"." => {}
            b".." => {
                elements.pop();
            }
            _ => elements.push(element),
        }
    }
    let mut out = Vec::with_capacity(path.len() + 1);
    for element in &elements {
        out.push(b'/');
        out.extend_from_slice(element);
    }
    if out.is_empty() || (path.last() == Some(&b'/')) {
        out.push(b'/');
    }
    out
}

/// `net/url`'s escaping of a path (`escape(s, encodePath)`), as in the `Location` of mux's redirect: letters,
/// digits and `-_.~$&+,/:;=@` stay, every other byte becomes `%XX` with upper-case hex.
pub fn escape_path(path: &[u8]) -> String {
    percent_encode(path, |b| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'_'
                    | b'.'
                    | b'~'
                    | b'$'
                    | b'&'
                    | b'+'
                    | b','
                    | b'/'
                    | b':'
                    | b';'
                    | b'='
                    | b'@'
            )
    })
}

/// A query string as Go's `net/url.ParseQuery` reads it (Go 1.17 and later): pairs split on `&`; a pair that
/// contains `;`, or whose key or value is not validly escaped, is dropped; `+` is a space and `%XX` any byte.
/// `get` returns the first value of a key, as `Values.Get` does.
pub struct Query {
    pairs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Query {
    pub fn parse(raw: &[u8]) -> Query {
        let pairs = raw
            .split(|b| *b == b'&')
            .filter(|pair| !pair.is_empty() && !pair.contains(&b';'))
            .filter_map(|pair| {
                let (key, value) = match pair.iter().position(|b| *b == b'=') {
                    Some(at) => (pair.get(..at)?, pair.get(at + 1..)?),
                    None => (pair, &b""[..]),
                };
                Some((query_unescape(key)?, query_unescape(value)?))
            })
            .collect();
        Query { pairs }
    }

    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key.as_bytes())
            .map(|(_, v)| v.as_slice())
    }
}

fn query_unescape(raw: &[u8]) -> Option<Vec<u8>> {
    let spaced: Vec<u8> = raw
        .iter()
        .map(|&b| if b == b'+' { b' ' } else { b })
        .collect();
    decode_path(&spaced)
}

/// Go's text from bytes: valid UTF-8 as it is, and one U+FFFD for every byte that is not part of a valid
/// sequence (what `utf8.DecodeRune` yields, so what `encoding/json` writes and `strings.EqualFold` compares).
pub fn lossy(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for _ in chunk.invalid() {
            out.push(char::REPLACEMENT_CHARACTER);
        }
    }
    out
}

/// `strings.EqualFold`: equal under Unicode simple case folding, character by character.
///
/// Go compares characters by their case-folding orbit (`unicode.SimpleFold`). Here a character folds to its
/// lower case when that is one character (`char::to_lowercase`), and then through `FOLDS_FURTHER`, the lower-case
/// letters that simple folding maps on (`ſ` → `s`, `ς` → `σ`, ...). Characters whose lower case is several
/// characters (`İ`) fold to themselves, as in Go. The two can only disagree where Rust's and Go's Unicode versions
/// differ.
pub fn equal_fold(a: &str, b: &str) -> bool {
    let mut left = a.chars();
    let mut right = b.chars();
    loop {
        match (left.next(), right.next()) {
            (None, None) => return true,
            (Some(x), Some(y)) if x == y || fold(x) == fold(y) => {}
            _ => return false,
        }
    }
}

/// A text that two client ids share exactly when `equal_fold` holds for them: each character folded. What the
/// shared state (several nodes) compares ids by, where the check runs in Redis and cannot call `equal_fold`.
pub fn fold_key(id: &str) -> String {
    id.chars().map(fold).collect()
}

fn fold(c: char) -> char {
    let mut lower = c.to_lowercase();
    let single = match (lower.next(), lower.next()) {
        (Some(l), None) => l,
        _ => c,
    };
    FOLDS_FURTHER
        .binary_search_by_key(&single, |&(from, _)| from)
        .ok()
        .and_then(|at| FOLDS_FURTHER.get(at))
        .map_or(single, |&(_, to)| to)
}

/// Lower-case characters (their own `to_lowercase`) that Unicode simple case folding (CaseFolding.txt, status C
/// and S) maps to another character, sorted by the first.
const FOLDS_FURTHER: &[(char, char)] = &[
    ('\u{00B5}', '\u{03BC}'),
    ('\u{017F}', 's'),
    ('\u{0345}', '\u{03B9}'),
    ('\u{03C2}', '\u{03C3}'),
    ('\u{03D0}', '\u{03B2}'),
    ('\u{03D1}', '\u{03B8}'),
    ('\u{03D5}', '\u{03C6}'),
    ('\u{03D6}', '\u{03C0}'),
    ('\u{03F0}', '\u{03BA}'),
    ('\u{03F1}', '\u{03C1}'),
    ('\u{03F5}', '\u{03B5}'),
    ('\u{1C80}', '\u{0432}'),
    ('\u{1C81}', '\u{0434}'),
    ('\u{1C82}', '\u{043E}'),
    ('\u{1C83}', '\u{0441}'),
    ('\u{1C84}', '\u{0442}'),
    ('\u{1C85}', '\u{0442}'),
    ('\u{1C86}', '\u{044A}'),
    ('\u{1C87}', '\u{0463}'),
    ('\u{1C88}', '\u{A64B}'),
    ('\u{1E9B}', '\u{1E61}'),
    ('\u{1FBE}', '\u{03B9}'),
    ('\u{1FD3}', '\u{0390}'),
    ('\u{1FE3}', '\u{03B0}'),
    ('\u{FB05}', '\u{FB06}'),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_decode_any_byte_and_refuse_bad_escapes() {
        assert_eq!(
            decode_path(b"/a%2Fb%c3%A9+").as_deref(),
            Some(&b"/a/b\xc3\xa9+"[..])
        );
        assert_eq!(decode_path(b"/%ff").as_deref(), Some(&b"/\xff"[..]));
        for bad in [&b"/%"[..], b"/%4", b"/%zz", b"/%g0"] {
            assert_eq!(decode_path(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn clean_path_is_muxs() {
        let cases: [(&str, &str); 12] = [
            ("/publish", "/publish"),
            ("//publish", "/publish"),
            ("/a/../publish", "/publish"),
            ("/./publish", "/publish"),
            ("/../../publish", "/publish"),
            ("/publish/", "/publish/"),
            ("/publish//", "/publish/"),
            ("/", "/"),
            ("//", "/"),
            ("/a/..", "/"),
            ("/a/../", "/"),
            ("/channel/x/./y/", "/channel/x/y/"),
        ];
        for (path, want) in cases {
            assert_eq!(clean_path(path.as_bytes()), want.as_bytes(), "{path}");
        }
    }

    #[test]
    fn escape_path_is_gos() {
        assert_eq!(escape_path(b"/publish"), "/publish");
        assert_eq!(
            escape_path(b"/a b?c#d%e\xc3\xa9!'()*"),
            "/a%20b%3Fc%23d%25e%C3%A9%21%27%28%29%2A"
        );
        assert_eq!(escape_path(b"/$&+,:;=@-_.~"), "/$&+,:;=@-_.~");
    }

    #[test]
    fn queries_are_read_as_go_reads_them() {
        let q = Query::parse(
            b"channelId=abc%20d+e&clientId=%ff&x;y=1&bad=%zz&channelId=second&flag&=v",
        );
        assert_eq!(q.get("channelId"), Some(&b"abc d e"[..]));
        assert_eq!(q.get("clientId"), Some(&b"\xff"[..]));
        assert_eq!(q.get("flag"), Some(&b""[..]));
        assert_eq!(q.get("x"), None, "a pair with ';' is dropped");
        assert_eq!(q.get("bad"), None, "a badly escaped pair is dropped");
        assert_eq!(q.get(""), Some(&b"v"[..]));
    }

    #[test]
    fn lossy_replaces_every_invalid_byte() {
        assert_eq!(lossy(b"ab\xc3\xa9"), "ab\u{e9}");
        assert_eq!(lossy(b"a\xff\xfeb"), "a\u{fffd}\u{fffd}b");
        assert_eq!(lossy(b"\xf0\x9f\x98a"), "\u{fffd}\u{fffd}\u{fffd}a");
    }

    #[test]
    fn equal_fold_follows_simple_case_folding() {
        let equal = [
            ("alice", "ALICE"),
            ("Alice", "aLiCe"),
            ("\u{212A}elvin", "kelvin"),
            ("\u{017F}am", "SAM"),
            ("\u{03C2}", "\u{03A3}"),
            ("\u{00B5}", "\u{039C}"),
            ("stra\u{1E9E}e", "STRA\u{DF}E"),
            ("\u{fffd}x", "\u{fffd}X"),
            ("\u{13A0}", "\u{AB70}"),
        ];
        for (a, b) in equal {
            assert!(equal_fold(a, b), "{a} = {b}");
            assert!(equal_fold(b, a), "{b} = {a}");
            assert_eq!(fold_key(a), fold_key(b), "{a} = {b}");
        }
        let different = [
            ("alice", "alicex"),
            ("\u{0130}", "i"),
            ("\u{0131}", "i"),
            ("\u{0131}", "I"),
            ("ss", "\u{DF}"),
            ("a", "b"),
        ];
        for (a, b) in different {
            assert!(!equal_fold(a, b), "{a} != {b}");
            assert_ne!(fold_key(a), fold_key(b), "{a} != {b}");
        }
        assert!(FOLDS_FURTHER.windows(2).all(|w| w[0].0 < w[1].0));
    }
}
