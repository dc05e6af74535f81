//! The JavaScript semantics node-sse-server's output depends on: `JSON.parse` (body-parser's reading of a body),
//! truthiness (which fields count as missing), `ToString` (`payload + ""`, `event: ${type}`, the property key a
//! channel name becomes), `JSON.stringify` (the text kept as a channel's last event and the presence list) with its
//! number formatting and its property order, and that property order itself (the presence list is `Object.keys`
//! of an object keyed by client id).
//!
//! Values are `JsValue`: JSON's values, and a number past float64's range as `Infinity` (`1e400`, `-1e400` and
//! 400-digit integers: `JSON.parse` reads them so, `payload + ""` gives `"Infinity"`, `JSON.stringify` writes
//! `null`). `parse` lets serde_json do the parsing (its syntax checks, its recursion limit of 128, which bounds
//! the recursion here too) after one pass over the text has found those numbers, which serde_json refuses: each is
//! handed to serde_json as `0` and turned back into `Infinity` by its place among the text's numbers.
//!
//! A number that fits a 64-bit integer is kept exact where JavaScript would round it through float64
//! (`12345678901234567890` stays so, docs/PROTOCOLS.md rule 2); every other number is printed as JavaScript prints its
//! float64 (`1.0` → `1`, `1e21` → `1e+21`, `1.5e-7`).

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::Deserializer;
use serde_json::Number;

/// A value as the original's `JSON.parse` gives it.
#[derive(Clone, Debug, PartialEq)]
pub enum JsValue {
    Null,
    Bool(bool),
    Number(Number),
    /// A number past float64's range: `Infinity`, or `-Infinity` when `negative`.
    Infinite {
        negative: bool,
    },
    String(String),
    Array(Vec<JsValue>),
    /// Properties in creation order, each key once: a repeated key keeps its first place and takes the last
    /// value, as `JSON.parse` does.
    Object(Vec<(String, JsValue)>),
}

impl JsValue {
    /// Property `key` of an object; `None` (JavaScript's `undefined`) for a missing key or another type.
    pub fn get(&self, key: &str) -> Option<&JsValue> {
        match self {
            JsValue::Object(properties) => {
                properties.iter().find(|(k, _)| k == key).map(|(_, v)| v)
            }
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            JsValue::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, JsValue::Null)
    }
}

// ---- JSON.parse ------------------------------------------------------------------------------------------------

/// `JSON.parse(text)`; `Err` for what it would throw on (and for nesting past 128 levels or a lone surrogate
/// escape, which serde_json refuses and JavaScript accepts).
pub fn parse(text: &str) -> Result<JsValue, serde_json::Error> {
    let (text, infinite) = infinite_numbers(text);
    let numbers = Numbers {
        infinite: &infinite,
        seen: Cell::new(0),
        next_infinite: Cell::new(0),
    };
    let mut deserializer = serde_json::Deserializer::from_str(&text);
    let value = Seed(&numbers).deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
}

/// The numbers outside strings that a float64 cannot hold (its parse overflows), as (place among all numbers of
/// the text, negative), and the text with each of them written as `0`. Only a token of exact JSON number syntax is
/// rewritten, so a malformed text stays malformed. A number too small for a float64 is 0 for both JavaScript and
/// serde_json, and is left alone.
fn infinite_numbers(text: &str) -> (Cow<'_, str>, Vec<(usize, bool)>) {
    let bytes = text.as_bytes();
    let mut infinite = Vec::new();
    let mut rewritten: Option<String> = None;
    let mut copied_to = 0;
    let mut numbers = 0;
    let mut in_string = false;
    let mut escaped = false;
    let mut at = 0;
    while let Some(&b) = bytes.get(at) {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            at += 1;
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'-' | b'0'..=b'9' => {
                let len = bytes
                    .get(at..)
                    .unwrap_or_default()
                    .iter()
                    .take_while(|c| matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                    .count();
                let token = text.get(at..at + len).unwrap_or_default();
                if is_json_number(token.as_bytes()) {
                    if token.parse::<f64>().is_ok_and(f64::is_infinite) {
                        infinite.push((numbers, b == b'-'));
                        let out =
                            rewritten.get_or_insert_with(|| String::with_capacity(text.len()));
                        out.push_str(text.get(copied_to..at).unwrap_or_default());
                        out.push('0');
                        copied_to = at + len;
                    }
                    numbers += 1;
                }
                at += len;
                continue;
            }
            _ => {}
        }
        at += 1;
    }
    match rewritten {
        Some(mut out) => {
            out.push_str(text.get(copied_to..).unwrap_or_default());
            (Cow::Owned(out), infinite)
        }
        None => (Cow::Borrowed(text), infinite),
    }
}

/// RFC 8259 §6: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`, and nothing else.
fn is_json_number(token: &[u8]) -> bool {
    fn digits(s: &[u8]) -> (usize, &[u8]) {
        let n = s.iter().take_while(|b| b.is_ascii_digit()).count();
        (n, s.get(n..).unwrap_or_default())
    }
    let unsigned = token.strip_prefix(b"-").unwrap_or(token);
    let (n, mut rest) = digits(unsigned);
    if n == 0 || (n > 1 && unsigned.first() == Some(&b'0')) {
        return false;
    }
    if let Some(fraction) = rest.strip_prefix(b".") {
        let (n, after) = digits(fraction);
        if n == 0 {
            return false;
        }
        rest = after;
    }
    if let Some(exponent) = rest.strip_prefix(b"e").or_else(|| rest.strip_prefix(b"E")) {
        let exponent = exponent
            .strip_prefix(b"+")
            .or_else(|| exponent.strip_prefix(b"-"))
            .unwrap_or(exponent);
        let (n, after) = digits(exponent);
        if n == 0 {
            return false;
        }
        rest = after;
    }
    rest.is_empty()
}

/// Which of the numbers serde_json reads, in text order, are the infinite ones `infinite_numbers` found.
struct Numbers<'a> {
    infinite: &'a [(usize, bool)],
    seen: Cell<usize>,
    next_infinite: Cell<usize>,
}

impl Numbers<'_> {
    /// The value of the next number of the text, which serde_json read as `number`.
    fn next(&self, number: Option<Number>) -> JsValue {
        let place = self.seen.get();
        self.seen.set(place + 1);
        let next = self.next_infinite.get();
        match self.infinite.get(next) {
            Some(&(at, negative)) if at == place => {
                self.next_infinite.set(next + 1);
                JsValue::Infinite { negative }
            }
            // serde_json reads no NaN or infinity, so `number` is always there.
            _ => number.map_or(JsValue::Null, JsValue::Number),
        }
    }
}

/// Reads one value (and, recursively, the values inside it).
#[derive(Clone, Copy)]
struct Seed<'a>(&'a Numbers<'a>);

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = JsValue;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<JsValue, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_> {
    type Value = JsValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<JsValue, E> {
        Ok(JsValue::Null)
    }

    fn visit_bool<E>(self, b: bool) -> Result<JsValue, E> {
        Ok(JsValue::Bool(b))
    }

    fn visit_u64<E>(self, n: u64) -> Result<JsValue, E> {
        Ok(self.0.next(Some(n.into())))
    }

    fn visit_i64<E>(self, n: i64) -> Result<JsValue, E> {
        Ok(self.0.next(Some(n.into())))
    }

    fn visit_f64<E>(self, n: f64) -> Result<JsValue, E> {
        Ok(self.0.next(Number::from_f64(n)))
    }

    fn visit_str<E>(self, s: &str) -> Result<JsValue, E> {
        Ok(JsValue::String(s.to_string()))
    }

    fn visit_string<E>(self, s: String) -> Result<JsValue, E> {
        Ok(JsValue::String(s))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<JsValue, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(JsValue::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<JsValue, A::Error> {
        let mut properties: Vec<(String, JsValue)> = Vec::new();
        let mut places: HashMap<String, usize> = HashMap::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(self)?;
            match places.get(&key).and_then(|&at| properties.get_mut(at)) {
                Some((_, old)) => *old = value,
                None => {
                    places.insert(key.clone(), properties.len());
                    properties.push((key, value));
                }
            }
        }
        Ok(JsValue::Object(properties))
    }
}

// ---- truthiness, ToString, JSON.stringify ----------------------------------------------------------------------

/// Whether JavaScript treats the value as true: not `null`, `false`, `0` or `""`.
pub fn truthy(value: &JsValue) -> bool {
    match value {
        JsValue::Null => false,
        JsValue::Bool(b) => *b,
        JsValue::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        JsValue::String(s) => !s.is_empty(),
        JsValue::Infinite { .. } | JsValue::Array(_) | JsValue::Object(_) => true,
    }
}

/// JavaScript's `ToString` (what `value + ""` gives): strings as they are, numbers as JavaScript prints them,
/// arrays joined with `,` (`null` elements empty), objects `[object Object]`.
pub fn to_string(value: &JsValue) -> String {
    match value {
        JsValue::String(s) => s.clone(),
        JsValue::Array(items) => {
            let parts: Vec<String> = items
                .iter()
                .map(|item| match item {
                    JsValue::Null => String::new(),
                    other => to_string(other),
                })
                .collect();
            parts.join(",")
        }
        JsValue::Object(_) => "[object Object]".to_string(),
        JsValue::Number(n) => number(n),
        JsValue::Infinite { negative: false } => "Infinity".to_string(),
        JsValue::Infinite { negative: true } => "-Infinity".to_string(),
        JsValue::Bool(b) => b.to_string(),
        JsValue::Null => "null".to_string(),
    }
}

/// `JSON.stringify(value)`: compact, with JavaScript's numbers and property order; an infinity is `null`.
pub fn stringify(value: &JsValue) -> String {
    let mut out = String::new();
    write_json(&mut out, value);
    out
}

fn write_json(out: &mut String, value: &JsValue) {
    match value {
        JsValue::Object(properties) => {
            out.push('{');
            let ordered = in_property_order(properties.iter().map(|(k, v)| (k.as_str(), v)));
            for (i, (key, v)) in ordered.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_string(out, key);
                out.push(':');
                write_json(out, v);
            }
            out.push('}');
        }
        JsValue::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(out, item);
            }
            out.push(']');
        }
        JsValue::Number(n) => out.push_str(&number(n)),
        JsValue::String(s) => push_string(out, s),
        JsValue::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        JsValue::Null | JsValue::Infinite { .. } => out.push_str("null"),
    }
}

/// A JSON string literal; `JSON.stringify` escapes exactly as serde_json does (`"`, `\`, control characters, with
/// the short forms `\b \f \n \r \t`).
fn push_string(out: &mut String, text: &str) {
    out.push_str(&serde_json::to_string(text).unwrap_or_default());
}

/// JavaScript's `Number::toString` for the value (integers that fit 64 bits exactly, see the module doc).
fn number(n: &Number) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    if let Some(u) = n.as_u64() {
        return u.to_string();
    }
    n.as_f64().map_or_else(|| n.to_string(), float_to_string)
}

/// ECMA-262 `Number::toString(x)` for a finite float: the shortest digits that round-trip, positioned as
/// JavaScript does (plain up to 21 integer digits and down to `0.000001`, exponent form `1e+21` / `1.5e-7`
/// beyond).
fn float_to_string(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        // JSON has no NaN or infinities; -0 prints as 0.
        return "0".to_string();
    }
    let sign = if x < 0.0 { "-" } else { "" };
    // `{:e}` gives the shortest round-tripping digits: `d[.ddd]e<exp>`.
    let scientific = format!("{:e}", x.abs());
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let k = digits.len() as i64;
    // The value is 0.digits × 10^n.
    let n = exponent.parse::<i64>().unwrap_or(0) + 1;
    let body = if k <= n && n <= 21 {
        format!("{digits}{}", "0".repeat((n - k) as usize))
    } else if 0 < n && n <= 21 {
        let (int, frac) = digits.split_at(n as usize);
        format!("{int}.{frac}")
    } else if -6 < n && n <= 0 {
        format!("0.{}{digits}", "0".repeat((-n) as usize))
    } else {
        let e = n - 1;
        let sign = if e < 0 { '-' } else { '+' };
        let (first, rest) = digits.split_at(1);
        if rest.is_empty() {
            format!("{first}e{sign}{}", e.abs())
        } else {
            format!("{first}.{rest}e{sign}{}", e.abs())
        }
    };
    format!("{sign}{body}")
}

/// Whether a property key is an array index: the canonical decimal form of an integer below 2^32 − 1. Such keys
/// come first in an object's key order, in numeric order.
pub fn array_index(key: &str) -> Option<u32> {
    let value: u32 = key.parse().ok()?;
    (value != u32::MAX && value.to_string() == key).then_some(value)
}

/// Properties in JavaScript's property order: array indices ascending, then the others in the given (creation)
/// order.
fn in_property_order<'a, T>(properties: impl Iterator<Item = (&'a str, T)>) -> Vec<(&'a str, T)> {
    let (mut indices, others): (Vec<_>, Vec<_>) =
        properties.partition(|(k, _)| array_index(k).is_some());
    indices.sort_by_key(|(k, _)| array_index(k));
    indices.extend(others);
    indices
}

/// Sockets per client id, iterated as `Object.keys` of the original's `{clientId: [sockets]}` object: array
/// indices ascending, then the other ids in insertion order (a removed id that comes back goes last).
#[derive(Default)]
pub struct Presence {
    indices: BTreeMap<u32, usize>,
    names: Vec<(Box<str>, usize)>,
}

impl Presence {
    /// One more socket for `id`.
    pub fn add(&mut self, id: &str) {
        if let Some(index) = array_index(id) {
            *self.indices.entry(index).or_insert(0) += 1;
        } else if let Some((_, count)) = self.names.iter_mut().find(|(n, _)| **n == *id) {
            *count += 1;
        } else {
            self.names.push((id.into(), 1));
        }
    }

    /// One socket of `id` less; true when that was its last, and `id` is gone.
    pub fn remove(&mut self, id: &str) -> bool {
        if let Some(index) = array_index(id) {
            let Some(count) = self.indices.get_mut(&index) else {
                return false;
            };
            *count -= 1;
            let gone = *count == 0;
            if gone {
                self.indices.remove(&index);
            }
            return gone;
        }
        let Some(at) = self.names.iter().position(|(n, _)| **n == *id) else {
            return false;
        };
        let gone = self.names.get_mut(at).is_some_and(|(_, count)| {
            *count -= 1;
            *count == 0
        });
        if gone {
            self.names.remove(at);
        }
        gone
    }

    /// `JSON.stringify(Object.keys(clients))`.
    pub fn list_json(&self) -> String {
        let ids: Vec<String> = self
            .indices
            .keys()
            .map(u32::to_string)
            .chain(self.names.iter().map(|(n, _)| n.to_string()))
            .collect();
        serde_json::to_string(&ids).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn parsed(text: &str) -> JsValue {
        parse(text).expect("JSON")
    }

    /// A serde_json value as a `JsValue`: the same value, for comparisons.
    fn js(value: &Value) -> JsValue {
        match value {
            Value::Null => JsValue::Null,
            Value::Bool(b) => JsValue::Bool(*b),
            Value::Number(n) => JsValue::Number(n.clone()),
            Value::String(s) => JsValue::String(s.clone()),
            Value::Array(items) => JsValue::Array(items.iter().map(js).collect()),
            Value::Object(map) => {
                JsValue::Object(map.iter().map(|(k, v)| (k.clone(), js(v))).collect())
            }
        }
    }

    const INFINITY: JsValue = JsValue::Infinite { negative: false };
    const MINUS_INFINITY: JsValue = JsValue::Infinite { negative: true };

    #[test]
    fn numbers_past_float64_parse_as_infinity() {
        let huge = format!("-1{}", "0".repeat(400));
        let text = format!(
            r#"[1e400, "1e400 \" 2e400", -1E+400, {{"1e400": 1.5e400, "k": [0, {huge}]}}, 1e-400, 2]"#
        );
        let value = parsed(&text);
        let JsValue::Array(items) = &value else {
            panic!("{value:?}");
        };
        assert_eq!(items.first(), Some(&INFINITY));
        assert_eq!(
            items.get(1),
            Some(&JsValue::String("1e400 \" 2e400".into()))
        );
        assert_eq!(items.get(2), Some(&MINUS_INFINITY));
        let object = items.get(3).expect("object");
        assert_eq!(object.get("1e400"), Some(&INFINITY));
        assert_eq!(
            object.get("k"),
            Some(&JsValue::Array(vec![js(&json!(0)), MINUS_INFINITY]))
        );
        assert_eq!(items.get(4), Some(&js(&json!(0.0))));
        assert_eq!(items.get(5), Some(&js(&json!(2))));
        assert_eq!(
            to_string(&value),
            "Infinity,1e400 \" 2e400,-Infinity,[object Object],0,2"
        );
        assert_eq!(
            stringify(&value),
            r#"[null,"1e400 \" 2e400",null,{"1e400":null,"k":[0,null]},0,2]"#
        );
        assert!(truthy(&INFINITY) && truthy(&MINUS_INFINITY));
        // The largest float64 is no infinity; the first decimal past it is.
        assert_eq!(
            parsed("1.7976931348623157e308"),
            js(&json!(1.7976931348623157e308))
        );
        assert_eq!(parsed("1.7976931348623159e308"), INFINITY);
    }

    #[test]
    fn malformed_numbers_stay_malformed() {
        for text in [
            "1e400x",
            "01e400",
            "1e400e1",
            "1.e400",
            ".5e400",
            "+1e400",
            "1e+-400",
            "-",
            "[1e400",
            "[1e400,]",
            "{\"a\":1e400",
            "1e400 1",
        ] {
            assert!(parse(text).is_err(), "{text}");
        }
    }

    #[test]
    fn a_repeated_key_keeps_its_place_and_takes_the_last_value() {
        let value = parsed(r#"{"a":1,"b":2,"a":1e400}"#);
        assert_eq!(
            value,
            JsValue::Object(vec![("a".into(), INFINITY), ("b".into(), js(&json!(2)))])
        );
        assert_eq!(stringify(&value), r#"{"a":null,"b":2}"#);
    }

    #[test]
    fn parse_reads_what_serde_json_reads_and_never_panics() {
        // xorshift64, fixed seed: texts from JSON's own bytes, so that many are valid.
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet = b"{}[],:\" \\e-+.0123456789Eatrufnl ";
        let pieces = [
            "1e400", "-1e999", "\"a\"", "[1,2]", "{\"k\":", "null", "\\u0041",
        ];
        let (mut valid, mut overflowing) = (0, 0);
        for _ in 0..20_000 {
            let len = next() % 24;
            let mut text = String::new();
            for _ in 0..len {
                let r = next();
                if r % 5 == 0 {
                    text.push_str(pieces[(r / 5) as usize % pieces.len()]);
                } else {
                    text.push(char::from(alphabet[(r / 5) as usize % alphabet.len()]));
                }
            }
            let ours = parse(&text);
            match serde_json::from_str::<Value>(&text) {
                Ok(theirs) => {
                    valid += 1;
                    assert_eq!(ours.ok(), Some(js(&theirs)), "{text:?}");
                }
                // The numbers this parser reads and serde_json refuses.
                Err(e) if e.to_string().starts_with("number out of range") => overflowing += 1,
                Err(_) => assert!(ours.is_err(), "{text:?}"),
            }
        }
        assert!(valid > 100, "only {valid} valid texts");
        assert!(
            overflowing > 100,
            "only {overflowing} texts with overflowing numbers"
        );
    }

    #[test]
    fn truthiness() {
        for falsy in ["null", "false", "0", "0.0", "-0", "\"\""] {
            assert!(!truthy(&parsed(falsy)), "{falsy}");
        }
        for truthy_value in ["true", "1", "-1e-300", "\"0\"", "\" \"", "[]", "{}"] {
            assert!(truthy(&parsed(truthy_value)), "{truthy_value}");
        }
    }

    #[test]
    fn numbers_print_as_javascript_prints_them() {
        let cases: [(&str, &str); 16] = [
            ("1.0", "1"),
            ("2.5e3", "2500"),
            ("-0.0", "0"),
            ("0.1", "0.1"),
            ("123.456", "123.456"),
            ("1e21", "1e+21"),
            ("1.5e21", "1.5e+21"),
            ("123456789012345680000", "123456789012345680000"),
            ("0.000001", "0.000001"),
            ("0.0000001", "1e-7"),
            ("1.5e-7", "1.5e-7"),
            ("-2.5e-10", "-2.5e-10"),
            ("5e-324", "5e-324"),
            ("1.7976931348623157e308", "1.7976931348623157e+308"),
            // Integers that fit 64 bits stay exact (JavaScript would print 12345678901234567000).
            ("12345678901234567890", "12345678901234567890"),
            ("-42", "-42"),
        ];
        for (json, want) in cases {
            assert_eq!(to_string(&parsed(json)), want, "{json}");
        }
    }

    #[test]
    fn to_string_is_javascripts() {
        let cases: [(Value, &str); 8] = [
            (json!("as is"), "as is"),
            (json!({"a": 1}), "[object Object]"),
            (
                json!([1, "b", null, [2, [3]], {"x": 1}, true]),
                "1,b,,2,3,[object Object],true",
            ),
            (json!([]), ""),
            (json!([null]), ""),
            (json!(true), "true"),
            (json!(false), "false"),
            (json!(1.5), "1.5"),
        ];
        for (value, want) in cases {
            assert_eq!(to_string(&js(&value)), want, "{value}");
        }
    }

    #[test]
    fn stringify_orders_index_keys_first_and_formats_numbers() {
        let value = parsed(
            r#"{"b":1.0,"2":[1e21,"<&>\n"],"a":{"10":0,"9":0,"x":null},"01":true,"4294967295":0,"4294967294":0}"#,
        );
        assert_eq!(
            stringify(&value),
            r#"{"2":[1e+21,"<&>\n"],"4294967294":0,"b":1,"a":{"9":0,"10":0,"x":null},"01":true,"4294967295":0}"#
        );
    }

    #[test]
    fn array_indices() {
        for (key, index) in [
            ("0", Some(0)),
            ("7", Some(7)),
            ("4294967294", Some(4294967294)),
        ] {
            assert_eq!(array_index(key), index, "{key}");
        }
        for key in [
            "",
            "01",
            "-1",
            "+1",
            "1.0",
            " 1",
            "4294967295",
            "99999999999",
            "a",
        ] {
            assert_eq!(array_index(key), None, "{key}");
        }
    }

    #[test]
    fn presence_lists_in_object_key_order_and_counts_sockets() {
        let mut presence = Presence::default();
        for id in ["alice", "10", "bob", "2", "alice"] {
            presence.add(id);
        }
        assert_eq!(presence.list_json(), r#"["2","10","alice","bob"]"#);
        assert!(!presence.remove("alice"), "alice has a second socket");
        assert!(presence.remove("alice"));
        assert!(!presence.remove("alice"), "already gone");
        assert!(presence.remove("10"));
        presence.add("alice");
        assert_eq!(presence.list_json(), r#"["2","bob","alice"]"#);
    }
}
