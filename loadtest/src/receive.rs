//! What a streaming subscriber does with the bytes it reads: undo the wire's framing (SSE, optionally chunked, or
//! WebSocket frames), find each event's sequence number and timestamp, record the latency, and account the event
//! in the subscriber's book: an `Account` (fanout, many-channels: counts in a 64-event window) or a `Ledger`
//! (resume: the exact set, and the id to resume from).
//!
//! What this file owns: the `Wire` state of one connection, the `Book` trait and its `Account`, and `Receipt`,
//! the one `EventSink` both transports feed. A WebSocket event message (`{"id","channel","event"?,"data"}`) is
//! turned into the same `id`/`event`/`data_line`/`dispatch` calls as an SSE event, so the two transports share
//! the accounting.
//!
//! What it must not do: touch sockets or the clock (the engine passes `now_ns`, read once per socket read), or
//! allocate per event: a WebSocket event's data is used in place unless it has JSON escapes.
//!
//! Invariants: an `Account` counts a sequence number below the highest seen as a duplicate unless it is one of
//! the 64 below the highest and not yet seen: then it is a late arrival, not a duplicate. With several publisher
//! connections the server may order concurrent publishes differently from the order in which the tool numbered
//! them; that is not loss and must not be reported as duplicates.

use hdrhistogram::Histogram;

use crate::ledger::{Arrival, Ledger};
use crate::stream::{ChunkDecoder, EventSink, SseParser};
use crate::target::BodyTemplate;
use crate::ws::{self, FrameReader, FrameSink, WsError};

/// The receiving state of one streaming connection; a reconnect starts a fresh one.
pub enum Wire {
    Sse {
        chunked: Option<ChunkDecoder>,
        parser: SseParser,
        pending: Pending,
    },
    /// Boxed: WebSocket state is bigger, and idle SSE subscribers should not pay for it.
    Ws(Box<WsWire>),
}

pub struct WsWire {
    reader: FrameReader,
    /// Frames to send (pongs, the close answer) that did not fit the socket yet.
    pub outbox: Vec<u8>,
    /// The server sent a close frame (with this code, if any); the answer is in `outbox`.
    pub closed: Option<Option<u16>>,
}

impl Wire {
    pub fn sse(chunked: bool) -> Wire {
        Wire::Sse {
            chunked: chunked.then(ChunkDecoder::default),
            parser: SseParser::default(),
            pending: Pending::default(),
        }
    }

    pub fn ws() -> Wire {
        Wire::Ws(Box::new(WsWire {
            reader: FrameReader::default(),
            outbox: Vec::new(),
            closed: None,
        }))
    }

    /// Feeds bytes read from the socket. `Err` when the stream cannot be read any further (bad chunk framing,
    /// a WebSocket protocol error).
    pub fn feed<B: Book>(
        &mut self,
        bytes: &[u8],
        receipt: &mut Receipt<'_, B>,
        scratch: &mut Vec<u8>,
        rng: &mut u64,
    ) -> Result<(), ()> {
        match self {
            Wire::Sse {
                chunked,
                parser,
                pending,
            } => {
                receipt.pending = std::mem::take(pending);
                let ok = match chunked {
                    Some(decoder) => decoder
                        .feed(bytes, |data| parser.feed(data, receipt))
                        .is_ok(),
                    None => {
                        parser.feed(bytes, receipt);
                        true
                    }
                };
                *pending = std::mem::take(&mut receipt.pending);
                ok.then_some(()).ok_or(())
            }
            Wire::Ws(w) => {
                let mut events = WsEvents {
                    receipt,
                    outbox: &mut w.outbox,
                    scratch,
                    rng,
                    closed: &mut w.closed,
                };
                w.reader.feed(bytes, &mut events).map_err(|_: WsError| ())
            }
        }
    }
}

/// The fields of the event being parsed; kept across reads, since an event may be cut anywhere.
#[derive(Clone, Copy, Debug, Default)]
pub struct Pending {
    seq: Option<u64>,
    ts: Option<u64>,
    /// The event is named `reset` (spout: missed events may be lost).
    reset: bool,
}

/// Per-subscriber bookkeeping of received sequence numbers.
pub trait Book {
    /// Whether the book wants ids and event names (the SSE parser skips them otherwise).
    const FIELDS: bool;
    /// An id field or an event message's id.
    fn id(&mut self, _value: &[u8]) {}
    /// An event was dispatched (with or without data); `reset` when it was named `reset`.
    fn dispatched(&mut self, _reset: bool) {}
    /// Records `seq`; true when the subscriber had not received it before.
    fn record(&mut self, seq: u64) -> bool;
}

/// Receipt counts of one fanout or many-channels subscriber.
#[derive(Clone, Copy, Debug, Default)]
pub struct Account {
    /// One above the highest sequence number received.
    next: u64,
    /// Distinct events received (in order).
    pub unique: u64,
    pub duplicates: u64,
    /// Sequence numbers skipped over (a later one arrived first); `missing` at the end is computed from `unique`.
    pub gaps: u64,
    /// Bit i set: sequence number `next - 1 - i` was received (late arrivals within 64 are not duplicates).
    recent: u64,
}

impl Book for Account {
    const FIELDS: bool = false;

    fn record(&mut self, seq: u64) -> bool {
        if seq < self.next {
            let behind = self.next - 1 - seq;
            if behind < 64 && self.recent & (1 << behind) == 0 {
                // Reordered by concurrent publishers: it fills a gap counted when a later one came first.
                self.recent |= 1 << behind;
                self.gaps = self.gaps.saturating_sub(1);
                self.unique += 1;
                true
            } else {
                self.duplicates += 1;
                false
            }
        } else {
            let shift = seq + 1 - self.next;
            self.recent = if shift >= 64 { 0 } else { self.recent << shift };
            self.recent |= 1;
            self.gaps += seq - self.next;
            self.next = seq + 1;
            self.unique += 1;
            true
        }
    }
}

impl Book for Ledger {
    const FIELDS: bool = true;

    fn id(&mut self, value: &[u8]) {
        self.id_field(value);
    }

    fn dispatched(&mut self, reset: bool) {
        Ledger::dispatched(self, reset);
    }

    fn record(&mut self, seq: u64) -> bool {
        matches!(
            Ledger::record(self, seq),
            Arrival::InOrder | Arrival::OutOfOrder
        )
    }
}

/// The sink of one subscriber's read: accounting in its book, and latency.
pub struct Receipt<'a, B: Book> {
    pub template: &'a BodyTemplate,
    pub book: &'a mut B,
    pub latency: &'a mut Histogram<u64>,
    pub now_ns: u64,
    pending: Pending,
    /// Events with a sequence number (duplicates included).
    pub delivered: u64,
    /// Events received for the first time.
    pub distinct: u64,
    /// Events with data but no sequence number (not ours, or an unexpected format).
    pub foreign: u64,
}

impl<'a, B: Book> Receipt<'a, B> {
    pub fn new(
        template: &'a BodyTemplate,
        book: &'a mut B,
        latency: &'a mut Histogram<u64>,
        now_ns: u64,
    ) -> Self {
        Receipt {
            template,
            book,
            latency,
            now_ns,
            pending: Pending::default(),
            delivered: 0,
            distinct: 0,
            foreign: 0,
        }
    }
}

impl<B: Book> EventSink for Receipt<'_, B> {
    const FIELDS: bool = B::FIELDS;

    fn data_line(&mut self, value: &[u8]) {
        let (seq, ts) = self.template.extract(value);
        if seq.is_some() {
            self.pending.seq = seq;
        }
        if ts.is_some() {
            self.pending.ts = ts;
        }
    }

    fn id(&mut self, value: &[u8]) {
        self.book.id(value);
    }

    fn event(&mut self, value: &[u8]) {
        self.pending.reset = value == b"reset";
    }

    fn dispatch(&mut self, had_data: bool) {
        let pending = std::mem::take(&mut self.pending);
        if B::FIELDS {
            self.book.dispatched(pending.reset);
        }
        if !had_data || pending.reset {
            return;
        }
        let Some(seq) = pending.seq else {
            self.foreign += 1;
            return;
        };
        self.delivered += 1;
        if self.book.record(seq) {
            self.distinct += 1;
        }
        if let Some(ts) = pending.ts {
            self.latency
                .saturating_record(self.now_ns.saturating_sub(ts).max(1));
        }
    }
}

/// Adapts WebSocket frames to a `Receipt`: each text message is one event.
struct WsEvents<'r, 'a, B: Book> {
    receipt: &'r mut Receipt<'a, B>,
    outbox: &'r mut Vec<u8>,
    scratch: &'r mut Vec<u8>,
    rng: &'r mut u64,
    closed: &'r mut Option<Option<u16>>,
}

impl<B: Book> WsEvents<'_, '_, B> {
    fn mask(&mut self) -> [u8; 4] {
        let [a, b, c, d, ..] = next_random(self.rng).to_le_bytes();
        [a, b, c, d]
    }
}

impl<B: Book> FrameSink for WsEvents<'_, '_, B> {
    fn message(&mut self, payload: &[u8]) {
        let sink = &mut *self.receipt;
        let Some(fields) = ws::message_fields(payload) else {
            // Not spout's JSON: look for the markers in the whole text.
            sink.data_line(payload);
            sink.dispatch(true);
            return;
        };
        if B::FIELDS {
            if let Some(id) = fields.id {
                sink.id(id);
            }
        }
        if let Some(event) = fields.event {
            sink.event(event);
        }
        // A message without `data` is the server's own (open, reset, deleted), not an event.
        let Some(data) = fields.data else {
            sink.dispatch(false);
            return;
        };
        if fields.data_escaped {
            self.scratch.clear();
            ws::unescape(data, self.scratch);
            sink.data_line(self.scratch);
        } else {
            sink.data_line(data);
        }
        sink.dispatch(true);
    }

    fn ping(&mut self, payload: &[u8]) {
        let mask = self.mask();
        ws::push_pong(self.outbox, payload, mask);
    }

    fn close(&mut self, code: Option<u16>) {
        if self.closed.is_none() {
            let mask = self.mask();
            // Echo the server's code (§5.5.1); a close without one is answered with 1000.
            ws::push_close(self.outbox, code.unwrap_or(1000), mask);
            *self.closed = Some(code);
        }
    }
}

/// xorshift64: WebSocket masks and keys, drop moments, publish channels. Not for secrets: the tool only needs
/// values a server cannot predict from earlier ones well enough to matter for a load test.
pub fn next_random(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::new_histogram;
    use crate::ledger::SeqSet;

    fn template() -> BodyTemplate {
        BodyTemplate::parse(BodyTemplate::DEFAULT, 100, None, None).unwrap()
    }

    #[test]
    fn accounting_counts_gaps_and_duplicates() {
        let t = template();
        let mut account = Account::default();
        let mut latency = new_histogram();
        let mut sink = Receipt::new(&t, &mut account, &mut latency, 1_000_000);
        let mut parser = SseParser::default();
        let mut stream = Vec::new();
        for seq in [0u64, 1, 1, 3, 2, 4, 2, 100, 5] {
            stream
                .extend_from_slice(format!("id: {seq}\ndata: seq={seq} ts=999000\n\n").as_bytes());
        }
        stream.extend_from_slice(b"data: not ours\n\n: heartbeat\n\n");
        parser.feed(&stream, &mut sink);
        assert_eq!((sink.delivered, sink.distinct, sink.foreign), (9, 6, 1));
        assert_eq!(account.unique, 6); // 0 1 3 2 4 100: 2 arrived late (reordered publishers), not a duplicate
        assert_eq!(account.duplicates, 3); // the second 1, the second 2, and 5 (more than 64 below 100)
        assert_eq!(account.gaps, 95); // 5..=99 skipped when 100 arrived
        assert_eq!(latency.len(), 9);
        assert_eq!(latency.max(), latency.highest_equivalent(1000));
    }

    /// An unmasked server text frame.
    fn text_frame(text: &str) -> Vec<u8> {
        let mut out = vec![0x81];
        match text.len() {
            n @ 0..=125 => out.push(n as u8),
            n => {
                out.push(126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        out.extend_from_slice(text.as_bytes());
        out
    }

    /// The same events over SSE and over WebSocket give the same accounting and the same resume point; a cut
    /// anywhere in the bytes changes nothing.
    #[test]
    fn both_transports_account_alike() {
        let t = template();
        let mut sse = Vec::new();
        let mut ws = Vec::new();
        ws.extend(text_frame(r#"{"event":"open","client_id":"k"}"#));
        for (id, seq) in [(101u64, 0u64), (102, 1), (103, 1), (104, 3), (105, 2)] {
            sse.extend_from_slice(format!("id: {id}\ndata: seq={seq} ts=999000 xx\n\n").as_bytes());
            ws.extend(text_frame(&format!(
                r#"{{"id":"{id}","channel":"c0","data":"seq={seq} ts=999000 xx"}}"#
            )));
        }
        sse.extend_from_slice(
            b"event: reset\ndata: {\"reason\":\"evicted\",\"channels\":[\"c0\"]}\n\n",
        );
        ws.extend(text_frame(
            r#"{"event":"reset","reason":"evicted","channels":["c0"]}"#,
        ));
        // Escaped data is unescaped before the markers are searched.
        sse.extend_from_slice(b"id: 106\nevent: x\ndata: \"q\"\ndata: seq=4 ts=999000\n\n");
        ws.extend(text_frame(
            r#"{"id":"106","channel":"c0","event":"x","data":"\"q\"\nseq=4 ts=999000"}"#,
        ));
        let run = |wire_bytes: &[u8], mut wire: Wire, cut: usize| {
            let mut ledger = Ledger::new(10);
            let mut latency = new_histogram();
            let (mut scratch, mut rng) = (Vec::new(), 7u64);
            let mut counts = (0, 0, 0);
            for part in [&wire_bytes[..cut], &wire_bytes[cut..]] {
                let mut r = Receipt::new(&t, &mut ledger, &mut latency, 1_000_000);
                wire.feed(part, &mut r, &mut scratch, &mut rng).unwrap();
                counts.0 += r.delivered;
                counts.1 += r.distinct;
                counts.2 += r.foreign;
            }
            let acked: SeqSet = serde_json::from_str(r#"{"words":[31]}"#).unwrap();
            (
                counts,
                ledger.tally(&acked),
                ledger.last_id().map(<[u8]>::to_vec),
            )
        };
        let expected = run(&sse, Wire::sse(false), sse.len());
        assert_eq!(expected.0, (6, 5, 0));
        assert_eq!(expected.1.duplicates, 1);
        assert_eq!(expected.1.out_of_order, 1);
        assert_eq!(expected.1.resets, 1);
        assert_eq!(expected.1.missing, 0);
        assert_eq!(expected.2, Some(b"106".to_vec()));
        for cut in 0..=sse.len() {
            assert_eq!(run(&sse, Wire::sse(false), cut), expected, "sse cut {cut}");
        }
        for cut in 0..=ws.len() {
            assert_eq!(run(&ws, Wire::ws(), cut), expected, "ws cut {cut}");
        }
    }

    #[test]
    fn websocket_control_frames_are_answered_masked() {
        let t = template();
        let mut wire = Wire::ws();
        let mut account = Account::default();
        let mut latency = new_histogram();
        let (mut scratch, mut rng) = (Vec::new(), 0x1234_5678u64);
        let mut r = Receipt::new(&t, &mut account, &mut latency, 0);
        let bytes = [0x89, 0x02, b'h', b'i', 0x88, 0x02, 0x03, 0xE9];
        wire.feed(&bytes, &mut r, &mut scratch, &mut rng).unwrap();
        let Wire::Ws(w) = &wire else { unreachable!() };
        assert_eq!(w.closed, Some(Some(1001)));
        // A pong with "hi" and a close echoing 1001, both masked (mask bit and a 4-byte key).
        let (pong, close) = w.outbox.split_at(8);
        assert_eq!(&pong[..2], &[0x8A, 0x82]);
        let key = &pong[2..6];
        assert_eq!([pong[6] ^ key[0], pong[7] ^ key[1]], *b"hi");
        assert_eq!(&close[..2], &[0x88, 0x82]);
        let key = &close[2..6];
        assert_eq!([close[6] ^ key[0], close[7] ^ key[1]], [0x03, 0xE9]);
        // A protocol error is an error.
        let mut r = Receipt::new(&t, &mut account, &mut latency, 0);
        assert!(Wire::ws()
            .feed(&[0x81, 0x81, 0, 0, 0, 0, 0], &mut r, &mut scratch, &mut rng)
            .is_err());
    }
}
