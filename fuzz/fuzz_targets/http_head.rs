//! `parse_head` on arbitrary bytes, with small limits and with the defaults; a complete head's chunked body (the
//! bytes after it) goes to a `ChunkedDecoder`, as the connection does.
//!
//! Checked beyond "no panic": a complete head used at most the buffer and at most `max_head` bytes, every span lies
//! within the head, the head parses the same from exactly its own bytes, a head complete under the small limits is
//! complete and the same under the defaults, and the chunked decoder used at most the bytes it was given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spout::config::{DEFAULT_MAX_BODY, DEFAULT_MAX_HEAD, DEFAULT_MAX_HEADERS};
use spout::http::chunked::ChunkedDecoder;
use spout::http::request::{parse_head, BodyFraming, Head, Limits};
use spout::http::{Parsed, Span};

const SMALL: Limits = Limits {
    max_head: 64,
    max_headers: 3,
    max_body: 16,
};

const DEFAULT: Limits = Limits {
    max_head: DEFAULT_MAX_HEAD,
    max_headers: DEFAULT_MAX_HEADERS,
    max_body: DEFAULT_MAX_BODY,
};

fuzz_target!(|data: &[u8]| {
    let small = check(data, &SMALL);
    let default = check(data, &DEFAULT);
    if let Some((head, consumed)) = small {
        let (other, other_consumed) =
            default.expect("complete under small limits, not under the defaults");
        assert_eq!(consumed, other_consumed);
        assert_same(&head, &other);
    }
});

/// Parses `data` with `limits`, checks what a complete head says, and returns it.
fn check(data: &[u8], limits: &Limits) -> Option<(Head, usize)> {
    let Ok(Parsed::Complete(head, consumed)) = parse_head(data, limits) else {
        return None;
    };
    assert!(
        consumed <= data.len(),
        "consumed {consumed} of {}",
        data.len()
    );
    assert!(
        consumed <= limits.max_head,
        "consumed {consumed} over max_head"
    );
    assert!(head.headers.len() <= limits.max_headers);
    assert!(head.minor_version <= 1);
    let within = |span: Span| {
        assert!(
            span.start <= span.end && span.end as usize <= consumed,
            "{span:?} outside the head (0..{consumed})"
        );
    };
    within(head.method_span);
    within(head.path);
    within(head.query);
    for &(name, value) in &head.headers {
        within(name);
        within(value);
        assert!(!name.is_empty(), "empty header name");
    }
    assert!(!head.method_span.is_empty(), "empty method");
    assert!(!head.path.is_empty(), "empty path");

    // The head does not depend on what follows it.
    match parse_head(&data[..consumed], limits) {
        Ok(Parsed::Complete(again, n)) => {
            assert_eq!(n, consumed);
            assert_same(&head, &again);
        }
        other => panic!("head complete with what follows, but {other:?} on its own"),
    }

    if head.framing == BodyFraming::Chunked {
        let rest = &data[consumed..];
        let mut decoder = ChunkedDecoder::new(limits.max_body);
        let mut body = Vec::new();
        if let Ok(progress) = decoder.feed(rest, &mut body) {
            assert!(progress.consumed <= rest.len());
            assert!(
                progress.done || progress.consumed == rest.len(),
                "stopped early without finishing"
            );
        }
        assert!(
            body.len() <= limits.max_body,
            "body {} over max_body",
            body.len()
        );
    }
    Some((head, consumed))
}

fn assert_same(a: &Head, b: &Head) {
    assert_eq!(a.method, b.method);
    assert_eq!(a.method_span, b.method_span);
    assert_eq!(a.path, b.path);
    assert_eq!(a.query, b.query);
    assert_eq!(a.minor_version, b.minor_version);
    assert_eq!(a.headers, b.headers);
    assert_eq!(a.framing, b.framing);
    assert_eq!(a.keep_alive, b.keep_alive);
    assert_eq!(a.expect_continue, b.expect_continue);
}
