//! The WebSocket receiving side exactly as a connection runs it: `conn::ws::WsState::on_input` (frame decoding,
//! held partial frames, unmasking, pong and close answers, message reassembly, protocol errors → close codes),
//! under the native API's rules, with each complete text message recorded as the API would receive it.
//!
//! The first input byte picks a split point (scaled to the rest) and a read size; the rest is the client's bytes,
//! delivered whole, in two reads at the split point, and in reads of that size. All three must end the same way,
//! queue exactly the same answer bytes and hand over the same text messages. Nothing may panic.
#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use spout::api::{ws_rules, WsSession};
use spout::config::Config;
use spout::conn::outq::OutQueue;
use spout::conn::ws::{WsInput, WsState};
use spout::ws::frame::Limits;

fuzz_target!(|data: &[u8]| {
    let Some((&control, wire)) = data.split_first() else {
        return;
    };
    let split = usize::from(control) * wire.len() / 255;
    let read = usize::from(control % 13) + 1;
    // 125 is the smallest `--ws-max-message` allows; 1024 lets a few frames make up one message.
    for max_message in [125, 1024] {
        let limits = Limits { max_message };
        let whole = run(wire, &limits, &[wire.len()]);
        assert_eq!(
            run(wire, &limits, &[split, wire.len()]),
            whole,
            "split at {split}"
        );
        let reads: Vec<usize> = (1..=wire.len())
            .filter(|n| n % read == 0 || *n == wire.len())
            .collect();
        assert_eq!(run(wire, &limits, &reads), whole, "reads of {read}");
    }
});

/// Delivers `wire` in reads ending at each of `ends` (increasing) until the stream closes; returns how it ended,
/// every byte it queued for the client and the text messages it handed over.
fn run(wire: &[u8], limits: &Limits, ends: &[usize]) -> (Option<WsInput>, Vec<u8>, Vec<String>) {
    let now = Instant::now();
    let mut state = WsState::new(now, WsSession::Native);
    let rules = ws_rules(&state.session, &Config::default());
    let mut out = OutQueue::default();
    let mut texts = Vec::new();
    let mut at = 0;
    let mut closed = None;
    for &end in ends {
        let input = state.on_input(
            &wire[at..end],
            now,
            limits,
            // No output cap here: where a stream crosses one depends on how its input was split into reads.
            usize::MAX,
            &rules,
            &mut out,
            |_, text, _| {
                texts.push(text.to_string());
                WsInput::Open
            },
        );
        if input != WsInput::Open {
            closed = Some(input);
            break;
        }
        at = end;
    }
    let mut sent = Vec::new();
    while !out.is_empty() {
        out.write_to(&mut sent)
            .expect("writing into a Vec cannot fail");
    }
    (closed, sent, texts)
}
