//! The JavaScript semantics node-sse-server's output depends on: truthiness (which fields count as missing),
//! `ToString` (`payload + ""`, `event: ${type}`, the property key a channel name becomes), `JSON.stringify` (the
//! text kept as a channel's last event and the presence list) with its number formatting and its property order,
//! and that property order itself (the presence list is `Object.keys` of an object keyed by client id).
//!
//! Values come from serde_json. A number that fits a 64-bit integer is kept exact where JavaScript would round
//! it through float64 (`12345678901234567890` stays so, docs/PROTOCOLS.md rule 2); every other number is printed as
//! JavaScript prints its float64 (`1.0` → `1`, `1e21` → `1e+21`, `1.5e-7`). Nesting is bounded by serde_json's
//! recursion limit when the body is parsed, so the recursion here is bounded too.

use std::collections::BTreeMap;

use serde_json::{Number, Value};

/// Whether JavaScript treats the value as true: not `null`, `false`, `0` or `""`.
pub fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// JavaScript's `ToString` (what `value + ""` gives): strings as they are, numbers as JavaScript prints them,
/// arrays joined with `,` (`null` elements empty), objects `[object Object]`.
pub fn to_string(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(items) => {
            let parts: Vec<String> = items
                .iter()
                .map(|item| match item {
                    Value::Null => String::new(),
                    other => to_string(other),
                })
                .collect();
            parts.join(",")
        }
        Value::Object(_) => "[object Object]".to_string(),
        Value::Number(n) => number(n),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".to_string(),
    }
}

/// `JSON.stringify(value)`: compact, with JavaScript's numbers and property order.
pub fn stringify(value: &Value) -> String {
    let mut out = String::new();
    write_json(&mut out, value);
    out
}

fn write_json(out: &mut String, value: &Value) {
    match value {
        Value::Object(map) => {
            out.push('{');
            let keys = in_property_order(map.keys().map(String::as_str));
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_string(out, key);
                out.push(':');
                if let Some(v) = map.get(key) {
                    write_json(out, v);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(out, item);
            }
            out.push(']');
        }
        Value::Number(n) => out.push_str(&number(n)),
        Value::String(s) => push_string(out, s),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Null => out.push_str("null"),
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

/// Keys in JavaScript's property order: array indices ascending, then the others in the given (insertion) order.
fn in_property_order<'a>(keys: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let (mut indices, others): (Vec<&str>, Vec<&str>) =
        keys.partition(|k| array_index(k).is_some());
    indices.sort_by_key(|k| array_index(k));
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
    use serde_json::json;

    fn parsed(text: &str) -> Value {
        serde_json::from_str(text).expect("JSON")
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
            assert_eq!(to_string(&value), want, "{value}");
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
