//! `ChunkedDecoder` fed in pieces must do exactly what it does when fed everything at once: same error, or same
//! consumed count, end and body. The first input byte picks the split point (scaled to the rest) and a piece size;
//! the rest is the wire bytes. Runs with a small body limit and with the default one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spout::config::DEFAULT_MAX_BODY;
use spout::http::chunked::ChunkedDecoder;
use spout::http::HttpError;

fuzz_target!(|data: &[u8]| {
    let Some((&control, wire)) = data.split_first() else {
        return;
    };
    let split = usize::from(control) * wire.len() / 255;
    let piece = usize::from(control % 7) + 1;
    for max_body in [16, DEFAULT_MAX_BODY] {
        let whole = decode(wire, max_body, &[wire.len()]);
        if let Ok((consumed, done, body)) = &whole {
            assert!(*consumed <= wire.len());
            assert!(
                *done || *consumed == wire.len(),
                "stopped early without finishing"
            );
            assert!(body.len() <= max_body);
        }
        assert_eq!(
            decode(wire, max_body, &[split, wire.len()]),
            whole,
            "split at {split}"
        );
        let pieces: Vec<usize> = (1..=wire.len())
            .filter(|n| n % piece == 0 || *n == wire.len())
            .collect();
        assert_eq!(
            decode(wire, max_body, &pieces),
            whole,
            "in pieces of {piece}"
        );
    }
});

/// Feeds `wire` in pieces ending at each of `ends` (increasing) until the body ends; returns (consumed, done, body)
/// or the error. Once the body ends, the rest is not the decoder's and is not fed.
fn decode(
    wire: &[u8],
    max_body: usize,
    ends: &[usize],
) -> Result<(usize, bool, Vec<u8>), (HttpError, Vec<u8>)> {
    let mut decoder = ChunkedDecoder::new(max_body);
    let mut body = Vec::new();
    let mut at = 0;
    for &end in ends {
        let piece = &wire[at..end];
        match decoder.feed(piece, &mut body) {
            Ok(progress) => {
                assert!(progress.consumed <= piece.len());
                at += progress.consumed;
                if progress.done {
                    // Done is final: nothing more is consumed.
                    let again = decoder
                        .feed(&wire[at..], &mut body)
                        .map_err(|e| (e, body.clone()))?;
                    assert_eq!((again.consumed, again.done), (0, true));
                    return Ok((at, true, body));
                }
                assert_eq!(
                    at, end,
                    "an unfinished body consumes every byte it is given"
                );
            }
            Err(e) => {
                // Errors are sticky.
                assert_eq!(decoder.feed(&wire[at..], &mut Vec::new()), Err(e));
                return Err((e, body));
            }
        }
    }
    Ok((at, false, body))
}
