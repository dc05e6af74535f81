//! Server-Sent Events encoding (WHATWG HTML §9.2 "Server-sent events").
//!
//! What this file owns: the bytes of one event (`id:`, `event:`, `data:`
//! lines and the blank line that dispatches it), comments (heartbeats) and
//! `retry:`. A `Message` encodes each event once with these functions and
//! shares the bytes with every subscriber.
//!
//! What it must not do: allocate (it only appends to the caller's `Vec`),
//! validate input for the API layer (callers check fields with
//! [`is_valid_field`] and answer 400 themselves), or know about channels.
//!
//! Invariant: no input can inject a field or end an event early. The event
//! stream parser ends a line at CRLF, LF or CR (§9.2.5), so the payload is
//! split on all three into separate `data:` lines, which the browser joins
//! back with LF; `id` and `event` have CR, LF and NUL removed (a NUL makes a
//! browser ignore the whole `id` field). Output therefore never contains CR
//! and every line starts with `id: `, `event: `, `data: `, `: `, `retry: `
//! or is the empty dispatch line.
//!
//! Every field is written as `name: value`: the parser strips exactly one
//! space after the colon, so a value that itself starts with a space
//! survives.

/// Appends one event: optional "id: {id}\n", optional "event: {event}\n", then
/// one "data: {line}\n" per line of `data` (lines split on "\r\n", "\n" and
/// "\r"), then "\n".
///
/// Empty `data` gives one "data: \n" line, so the browser dispatches an event
/// whose data is the empty string (a lone id/event without data would be
/// dropped by the browser). A trailing newline gives a trailing empty line:
/// "a\n" → "data: a\ndata: \n", which the browser decodes back to "a\n".
///
/// `id` and `event` must not contain CR, LF (or NUL for id); callers validate
/// with [`is_valid_field`]; the encoder additionally strips CR/LF/NUL
/// defensively so injection is impossible whatever the caller passes.
pub fn encode_event(out: &mut Vec<u8>, id: Option<&str>, event: Option<&str>, data: &str) {
    if let Some(id) = id {
        out.extend_from_slice(b"id: ");
        push_stripped(out, id);
        out.push(b'\n');
    }
    if let Some(event) = event {
        out.extend_from_slice(b"event: ");
        push_stripped(out, event);
        out.push(b'\n');
    }
    push_lines(out, b"data: ", data);
    out.push(b'\n');
}

/// Appends a comment, ": text\n\n", one ": " line per line of `text`. The
/// parser ignores comments; they keep proxies and idle timers from closing
/// the stream (heartbeats).
pub fn encode_comment(out: &mut Vec<u8>, text: &str) {
    push_lines(out, b": ", text);
    out.push(b'\n');
}

/// Appends "retry: N\n\n": the reconnection delay in milliseconds.
pub fn encode_retry(out: &mut Vec<u8>, millis: u64) {
    use std::io::Write;
    // Writing into a Vec cannot fail.
    let _ = write!(out, "retry: {millis}\n\n");
}

/// True when `s` can be an `id` or `event` value as given: no CR, LF, NUL.
pub fn is_valid_field(s: &str) -> bool {
    !s.bytes().any(is_break)
}

fn is_break(b: u8) -> bool {
    matches!(b, b'\r' | b'\n' | 0)
}

fn push_stripped(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    if is_valid_field(s) {
        out.extend_from_slice(bytes);
    } else {
        out.extend(bytes.iter().copied().filter(|&b| !is_break(b)));
    }
}

/// One `prefix line\n` per line of `text`, lines ending at CRLF, LF or CR.
/// Splitting at ASCII bytes keeps every piece valid UTF-8.
fn push_lines(out: &mut Vec<u8>, prefix: &[u8], text: &str) {
    let mut rest = text.as_bytes();
    loop {
        let end = rest.iter().position(|&b| b == b'\n' || b == b'\r');
        let Some(end) = end else {
            out.extend_from_slice(prefix);
            out.extend_from_slice(rest);
            out.push(b'\n');
            return;
        };
        let (line, tail) = rest.split_at(end);
        out.extend_from_slice(prefix);
        out.extend_from_slice(line);
        out.push(b'\n');
        rest = match tail {
            [b'\r', b'\n', after @ ..] => after,
            [_, after @ ..] => after,
            [] => tail,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::XorShift;

    /// (name, id, event, data, expected bytes).
    type Case = (
        &'static str,
        Option<&'static str>,
        Option<&'static str>,
        &'static str,
        &'static str,
    );

    #[test]
    fn events_exact_bytes() {
        let cases: [Case; 17] = [
            ("single line", None, None, "hello", "data: hello\n\n"),
            ("empty data", None, None, "", "data: \n\n"),
            ("lf", None, None, "a\nb", "data: a\ndata: b\n\n"),
            ("crlf", None, None, "a\r\nb", "data: a\ndata: b\n\n"),
            ("cr", None, None, "a\rb", "data: a\ndata: b\n\n"),
            (
                "mixed",
                None,
                None,
                "a\r\nb\nc\rd",
                "data: a\ndata: b\ndata: c\ndata: d\n\n",
            ),
            (
                "lf cr is two breaks",
                None,
                None,
                "a\n\rb",
                "data: a\ndata: \ndata: b\n\n",
            ),
            ("trailing lf", None, None, "a\n", "data: a\ndata: \n\n"),
            ("trailing cr", None, None, "a\r", "data: a\ndata: \n\n"),
            ("only crlf", None, None, "\r\n", "data: \ndata: \n\n"),
            (
                "blank line inside",
                None,
                None,
                "a\n\nb",
                "data: a\ndata: \ndata: b\n\n",
            ),
            ("leading space kept", None, None, " x", "data:  x\n\n"),
            (
                "id and event",
                Some("42"),
                Some("update"),
                "{\"a\":1}",
                "id: 42\nevent: update\ndata: {\"a\":1}\n\n",
            ),
            ("empty id", Some(""), None, "x", "id: \ndata: x\n\n"),
            (
                "id injection",
                Some("1\n\ndata: evil\r"),
                None,
                "x",
                "id: 1data: evil\ndata: x\n\n",
            ),
            (
                "event injection",
                None,
                Some("a\r\nevent: b\0"),
                "x",
                "event: aevent: b\ndata: x\n\n",
            ),
            (
                "unicode",
                Some("é"),
                Some("✓"),
                "日本\n語",
                "id: é\nevent: ✓\ndata: 日本\ndata: 語\n\n",
            ),
        ];
        for (name, id, event, data, want) in cases {
            let mut out = b"keep".to_vec();
            encode_event(&mut out, id, event, data);
            assert_eq!(std::str::from_utf8(&out[4..]).unwrap(), want, "{name}");
        }
    }

    #[test]
    fn comments_and_retry() {
        let cases: [(&str, &str); 4] = [
            ("", ": \n\n"),
            ("ping", ": ping\n\n"),
            ("a\nb", ": a\n: b\n\n"),
            ("a\r\n", ": a\n: \n\n"),
        ];
        for (text, want) in cases {
            let mut out = Vec::new();
            encode_comment(&mut out, text);
            assert_eq!(std::str::from_utf8(&out).unwrap(), want, "{text:?}");
        }
        for (millis, want) in [
            (0u64, "retry: 0\n\n"),
            (3000, "retry: 3000\n\n"),
            (u64::MAX, "retry: 18446744073709551615\n\n"),
        ] {
            let mut out = Vec::new();
            encode_retry(&mut out, millis);
            assert_eq!(std::str::from_utf8(&out).unwrap(), want);
        }
    }

    #[test]
    fn field_validation() {
        let cases: [(&str, bool); 7] = [
            ("", true),
            ("abc-1", true),
            ("é ✓", true),
            ("a\nb", false),
            ("a\r", false),
            ("\0", false),
            ("a\u{2028}", true),
        ];
        for (s, want) in cases {
            assert_eq!(is_valid_field(s), want, "{s:?}");
        }
    }

    /// A minimal event stream interpreter (WHATWG HTML §9.2.6) for the
    /// round-trip property: (last event id, event type, data) per dispatch.
    fn interpret(stream: &str) -> Vec<(String, String, String)> {
        let mut events = Vec::new();
        let (mut id, mut event, mut data) = (String::new(), String::new(), String::new());
        for line in stream.split('\n') {
            if line.is_empty() {
                if !data.is_empty() {
                    data.pop();
                    events.push((
                        id.clone(),
                        std::mem::take(&mut event),
                        std::mem::take(&mut data),
                    ));
                }
                event.clear();
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line, ""),
            };
            match field {
                "id" if !value.contains('\0') => id = value.to_string(),
                "event" => event = value.to_string(),
                "data" => {
                    data.push_str(value);
                    data.push('\n');
                }
                _ => {}
            }
        }
        events
    }

    fn random_text(rng: &mut XorShift) -> String {
        const PIECES: [&str; 12] = [
            "a", " ", ":", "\n", "\r", "\r\n", "\0", "data: x", "id", "é", "✓", "\n\n",
        ];
        let len = (rng.next() % 12) as usize;
        (0..len)
            .map(|_| PIECES[(rng.next() % PIECES.len() as u64) as usize])
            .collect()
    }

    #[test]
    fn garbage_cannot_inject_and_round_trips() {
        let mut rng = XorShift(0xDEAD_BEEF_CAFE_F00D);
        for _ in 0..10_000 {
            let id = random_text(&mut rng);
            let event = random_text(&mut rng);
            let data = random_text(&mut rng);
            let with_id = rng.next().is_multiple_of(2);
            let with_event = rng.next().is_multiple_of(2);
            let mut out = Vec::new();
            encode_event(
                &mut out,
                with_id.then_some(id.as_str()),
                with_event.then_some(event.as_str()),
                &data,
            );
            encode_comment(&mut out, &data);
            let text = String::from_utf8(out).expect("splitting at ASCII keeps UTF-8");
            assert!(!text.contains('\r'), "{text:?}");
            assert!(text.ends_with("\n\n"));
            for line in text.split('\n') {
                assert!(
                    line.is_empty()
                        || line.starts_with("id: ")
                        || line.starts_with("event: ")
                        || line.starts_with("data: ")
                        || line.starts_with(": "),
                    "{line:?} in {text:?}"
                );
            }
            let events = interpret(&text);
            assert_eq!(events.len(), 1, "{text:?}");
            let (got_id, got_event, got_data) = &events[0];
            let strip = |s: &str| s.replace(['\r', '\n', '\0'], "");
            assert_eq!(*got_id, if with_id { strip(&id) } else { String::new() });
            assert_eq!(
                *got_event,
                if with_event {
                    strip(&event)
                } else {
                    String::new()
                }
            );
            assert_eq!(*got_data, data.replace("\r\n", "\n").replace('\r', "\n"));
        }
    }
}
