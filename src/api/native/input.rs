//! What a native request may carry: channel names, client ids, event names, recipients, and the query keys each
//! route reads (an unknown or repeated key is an error naming it). Pure functions over the request's bytes.

use super::ApiError;
use crate::sse;

const MAX_CHANNEL_NAME: usize = 128;
const MAX_CLIENT_ID: usize = 64;
const MAX_EVENT_NAME: usize = 64;
/// Recipients of one targeted event (`?to=` or `"to"`).
const MAX_RECIPIENTS: usize = 1024;

pub(super) fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b':' | b'@')
}

pub(super) fn channel_name(raw: &[u8]) -> Result<&str, ApiError> {
    if raw.is_empty() || raw.len() > MAX_CHANNEL_NAME || !raw.iter().all(|b| is_name_byte(*b)) {
        return Err(ApiError::bad(
            "invalid_channel",
            format!("a channel name is 1 to {MAX_CHANNEL_NAME} ASCII letters, digits or -_.~:@"),
        ));
    }
    std::str::from_utf8(raw)
        .map_err(|_| ApiError::bad("invalid_channel", "channel names are ASCII"))
}

pub(super) fn client_id(raw: &[u8]) -> Result<&str, ApiError> {
    if raw.is_empty() || raw.len() > MAX_CLIENT_ID || !raw.iter().all(|b| is_name_byte(*b)) {
        return Err(ApiError::bad(
            "invalid_client_id",
            format!("a client id is 1 to {MAX_CLIENT_ID} ASCII letters, digits or -_.~:@"),
        ));
    }
    std::str::from_utf8(raw).map_err(|_| ApiError::bad("invalid_client_id", "client ids are ASCII"))
}

pub(super) fn event_name(name: &str) -> Result<&str, ApiError> {
    if name.is_empty() || name.len() > MAX_EVENT_NAME || !sse::is_valid_field(name) {
        return Err(ApiError::bad(
            "invalid_event",
            format!("an event name is 1 to {MAX_EVENT_NAME} bytes without CR, LF or NUL"),
        ));
    }
    Ok(name)
}

pub(super) fn recipients<'a>(
    list: impl Iterator<Item = &'a str>,
) -> Result<Box<[Box<str>]>, ApiError> {
    let mut out: Vec<Box<str>> = Vec::new();
    for id in list {
        let id = client_id(id.as_bytes())?;
        if !out.iter().any(|o| &**o == id) {
            out.push(id.into());
        }
        if out.len() > MAX_RECIPIENTS {
            return Err(ApiError::bad(
                "invalid_recipients",
                format!("at most {MAX_RECIPIENTS} recipients"),
            ));
        }
    }
    if out.is_empty() {
        return Err(ApiError::bad(
            "invalid_recipients",
            "`to` names no client id",
        ));
    }
    Ok(out.into())
}

/// The query keys one route reads; a key it does not read, or one given twice, is refused rather than ignored,
/// so that a typo (`?evnt=greet`, `?clientid=x`) does not pass as a request without that key.
pub(super) struct QueryRule {
    /// The route as a client writes it, e.g. `POST /pub/{channel}`.
    pub(super) route: &'static str,
    pub(super) keys: &'static [&'static str],
}

impl QueryRule {
    pub(super) fn check(&self, raw: &[u8]) -> Result<(), ApiError> {
        let query = Query::parse(raw)?;
        for (i, (key, _)) in query.pairs.iter().enumerate() {
            if !self.keys.contains(&key.as_str()) {
                return Err(ApiError::bad(
                    "invalid_query",
                    format!("unknown query key '{key}': {}", self.known()),
                ));
            }
            if query
                .pairs
                .iter()
                .take(i)
                .any(|(earlier, _)| earlier == key)
            {
                return Err(ApiError::bad(
                    "invalid_query",
                    format!(
                        "query key '{key}' is given more than once; give it once ({})",
                        self.known()
                    ),
                ));
            }
        }
        Ok(())
    }

    pub(super) fn known(&self) -> String {
        if self.keys.is_empty() {
            format!("{} takes no query keys", self.route)
        } else {
            format!("{} takes {}", self.route, self.keys.join(", "))
        }
    }
}

/// A decoded query string (`application/x-www-form-urlencoded`). `handle` has already refused unknown and
/// repeated keys (`QueryRule`).
pub(super) struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    pub(super) fn parse(raw: &[u8]) -> Result<Query, ApiError> {
        let mut pairs = Vec::new();
        for part in raw.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
            let (key, value) = match part.iter().position(|b| *b == b'=') {
                Some(i) => (&part[..i], &part[i + 1..]),
                None => (part, &b""[..]),
            };
            let decoded = percent_decode(key).zip(percent_decode(value));
            let (key, value) = decoded.ok_or_else(|| {
                ApiError::bad(
                    "invalid_query",
                    "the query string is not valid percent-encoded UTF-8",
                )
            })?;
            pairs.push((key, value));
        }
        Ok(Query { pairs })
    }

    pub(super) fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

pub(super) fn percent_decode(raw: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.iter();
    while let Some(&b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = (*bytes.next()? as char).to_digit(16)?;
                let lo = (*bytes.next()? as char).to_digit(16)?;
                out.push(u8::try_from(hi * 16 + lo).ok()?);
            }
            _ => out.push(b),
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_documented_rule() {
        for good in ["a", "news", "A-z_0.9~:@x", &"c".repeat(128)] {
            assert!(channel_name(good.as_bytes()).is_ok(), "{good}");
        }
        for bad in [
            "",
            "a b",
            "a/b",
            "a,b",
            "caf\u{e9}",
            "%41",
            &"c".repeat(129),
        ] {
            assert!(channel_name(bad.as_bytes()).is_err(), "{bad}");
        }
        assert!(client_id(&[b'x'; 65]).is_err());
    }

    #[test]
    fn queries_decode_and_reject_bad_escapes() {
        let q = Query::parse(b"event=a%20b&to=x,y&event=second&flag&plus=a+b").expect("valid");
        assert_eq!(q.get("event"), Some("a b"));
        assert_eq!(q.get("to"), Some("x,y"));
        assert_eq!(q.get("flag"), Some(""));
        assert_eq!(q.get("plus"), Some("a b"));
        for bad in [&b"a=%"[..], b"a=%4", b"a=%zz", b"a=%ff"] {
            assert!(Query::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn query_rules_refuse_unknown_and_repeated_keys() {
        let rule = QueryRule {
            route: "POST /pub/{channel}",
            keys: &["event", "to"],
        };
        for good in [
            &b""[..],
            b"event=a",
            b"event=a&to=x",
            b"to=x&event=",
            b"&&event=a&",
        ] {
            assert!(rule.check(good).is_ok(), "{good:?}");
        }
        let cases: [(&[u8], &str); 5] = [
            (
                b"evnt=a",
                "unknown query key 'evnt': POST /pub/{channel} takes event, to",
            ),
            (b"event=a&Event=b", "unknown query key 'Event'"),
            (
                b"event=a&event=b",
                "query key 'event' is given more than once",
            ),
            (
                b"ev%65nt=a&event=b",
                "query key 'event' is given more than once",
            ),
            (b"=a", "unknown query key ''"),
        ];
        for (raw, want) in cases {
            let err = rule.check(raw).expect_err(want);
            assert_eq!(err.code, "invalid_query");
            assert!(err.message.starts_with(want), "{}", err.message);
        }
        let none = QueryRule {
            route: "POST /pub",
            keys: &[],
        };
        let err = none.check(b"x=1").expect_err("no keys");
        assert_eq!(
            err.message,
            "unknown query key 'x': POST /pub takes no query keys"
        );
    }

    #[test]
    fn recipients_are_deduplicated_and_bounded() {
        let ids = recipients(["a", "b", "a"].into_iter()).expect("valid");
        assert_eq!(ids.len(), 2);
        assert!(recipients(std::iter::empty()).is_err());
        assert!(recipients(["a b"].into_iter()).is_err());
    }
}
