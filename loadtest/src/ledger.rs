//! The exact record of one resuming client (the `resume` scenario): which sequence numbers it received, in which
//! order, how often, and the `Last-Event-ID` it sends when it reconnects.
//!
//! What this file owns: the per-client `Ledger`, the `SeqSet` of sequence numbers the publisher got a 2xx for, and
//! the comparison of the two (`Ledger::tally`). A client passes when it holds exactly the acknowledged events of
//! its channel: nothing missing, nothing twice, nothing out of order.
//!
//! What it must not do: read sockets or clocks. It follows the SSE rules for the id (WHATWG HTML §9.2.6): an `id`
//! field sets the "last event ID buffer" (ignored when it contains NUL), the buffer outlives the event, and it
//! becomes the id sent back only when an event is dispatched, so an event cut by a dropped connection does not
//! move the resume point.
//!
//! Order: the `resume` scenario never has two publishes of one channel in flight, so the server's order of a
//! channel's events is the order of their sequence numbers. An event that is new to the client but below the
//! highest sequence number it already holds therefore arrived out of order.

use serde::{Deserialize, Serialize};

/// Longest id kept for `Last-Event-ID`; a longer one is cut (spout's ids are 16 digits, nchan's a few dozen
/// bytes). A cut id resumes from the wrong place, which shows up as missing or duplicate events.
pub const MAX_ID: usize = 1024;

/// A set of sequence numbers, one bit each.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeqSet {
    words: Vec<u64>,
}

impl SeqSet {
    /// Adds `seq`; false when it was already there.
    pub fn insert(&mut self, seq: u64) -> bool {
        let (word, bit) = split(seq);
        if self.words.len() <= word {
            self.words.resize(word + 1, 0);
        }
        let had = self.words[word] & bit != 0;
        self.words[word] |= bit;
        !had
    }

    pub fn len(&self) -> u64 {
        self.words.iter().map(|w| u64::from(w.count_ones())).sum()
    }

    /// How many of `self` are not in `other`.
    pub fn count_not_in(&self, other: &SeqSet) -> u64 {
        self.words
            .iter()
            .enumerate()
            .map(|(i, w)| u64::from((w & !other.words.get(i).copied().unwrap_or(0)).count_ones()))
            .sum()
    }
}

fn split(seq: u64) -> (usize, u64) {
    // A client can only receive sequence numbers below `Ledger::limit`, which the scenario bounds by its event
    // count; the word index fits a usize on every platform the tool runs on.
    ((seq / 64) as usize, 1 << (seq % 64))
}

/// What one received event was to the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrival {
    /// First receipt, above everything held so far.
    InOrder,
    /// First receipt, but below the highest held: delivered out of order.
    OutOfOrder,
    /// Received before.
    Duplicate,
    /// A sequence number the publisher never used (at or above the scenario's event count).
    Foreign,
}

/// One client's record.
#[derive(Clone, Debug, Default)]
pub struct Ledger {
    received: SeqSet,
    /// Sequence numbers at or above this were never published.
    limit: u64,
    highest: Option<u64>,
    duplicates: u64,
    out_of_order: u64,
    foreign: u64,
    resets: u64,
    /// The SSE "last event ID buffer".
    id_buffer: Vec<u8>,
    /// The id of the last dispatched event: what a reconnect sends as `Last-Event-ID`.
    last_id: Vec<u8>,
}

/// How a client compares with what was published on its channel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    /// Events acknowledged to the publisher on the client's channel.
    pub expected: u64,
    /// Distinct events received.
    pub received: u64,
    /// Acknowledged events the client never got.
    pub missing: u64,
    /// Events received whose publish was not acknowledged (failed or unanswered at the tool) or never made.
    pub unexpected: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
    /// `reset` events: the server said missed events may be lost.
    pub resets: u64,
}

impl Tally {
    /// Holds exactly the published events, in order, once each.
    pub fn exact(&self) -> bool {
        self.missing == 0 && self.unexpected == 0 && self.duplicates == 0 && self.out_of_order == 0
    }
}

impl Ledger {
    /// A ledger for a client whose channel's sequence numbers are all below `limit`.
    pub fn new(limit: u64) -> Ledger {
        Ledger {
            limit,
            ..Ledger::default()
        }
    }

    /// An `id` field was parsed (SSE), or an event message carried an id (WebSocket).
    pub fn id_field(&mut self, value: &[u8]) {
        if value.contains(&0) {
            return;
        }
        self.id_buffer.clear();
        self.id_buffer
            .extend_from_slice(value.get(..MAX_ID).unwrap_or(value));
    }

    /// An event was dispatched: its id becomes the resume point. `reset` tells whether it was a `reset` event.
    pub fn dispatched(&mut self, reset: bool) {
        if self.last_id != self.id_buffer {
            self.last_id.clear();
            self.last_id.extend_from_slice(&self.id_buffer);
        }
        if reset {
            self.resets += 1;
        }
    }

    /// The id to send as `Last-Event-ID`, once an event with an id was dispatched.
    pub fn last_id(&self) -> Option<&[u8]> {
        (!self.last_id.is_empty()).then_some(self.last_id.as_slice())
    }

    /// Records the event with sequence number `seq`.
    pub fn record(&mut self, seq: u64) -> Arrival {
        if seq >= self.limit {
            self.foreign += 1;
            return Arrival::Foreign;
        }
        if !self.received.insert(seq) {
            self.duplicates += 1;
            return Arrival::Duplicate;
        }
        match self.highest {
            Some(h) if seq < h => {
                self.out_of_order += 1;
                Arrival::OutOfOrder
            }
            _ => {
                self.highest = Some(seq);
                Arrival::InOrder
            }
        }
    }

    /// Compares what the client holds with `acked`, the acknowledged publishes of its channel.
    pub fn tally(&self, acked: &SeqSet) -> Tally {
        Tally {
            expected: acked.len(),
            received: self.received.len(),
            missing: acked.count_not_in(&self.received),
            unexpected: self.received.count_not_in(acked) + self.foreign,
            duplicates: self.duplicates,
            out_of_order: self.out_of_order,
            resets: self.resets,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(seqs: &[u64]) -> SeqSet {
        let mut s = SeqSet::default();
        for &q in seqs {
            s.insert(q);
        }
        s
    }

    #[test]
    fn seq_sets() {
        let mut s = SeqSet::default();
        assert!(s.insert(0));
        assert!(s.insert(63));
        assert!(s.insert(64));
        assert!(s.insert(1000));
        assert!(!s.insert(64));
        assert_eq!(s.len(), 4);
        let t = set(&[0, 64, 5000]);
        assert_eq!(s.count_not_in(&t), 2); // 63, 1000
        assert_eq!(t.count_not_in(&s), 1); // 5000
        assert_eq!(SeqSet::default().count_not_in(&s), 0);
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<SeqSet>(&json).unwrap(), s);
    }

    #[test]
    fn arrivals_in_a_resume() {
        let mut l = Ledger::new(100);
        // Live 0..=4, a drop, a replay from 3 (3 and 4 again), then 5 and 6 but 6 before 5, then a foreign one.
        let arrivals: Vec<Arrival> = [0, 1, 2, 3, 4, 3, 4, 6, 5, 7, 100]
            .into_iter()
            .map(|q| l.record(q))
            .collect();
        use Arrival::*;
        assert_eq!(
            arrivals,
            [
                InOrder, InOrder, InOrder, InOrder, InOrder, Duplicate, Duplicate, InOrder,
                OutOfOrder, InOrder, Foreign
            ]
        );
        let acked = set(&[0, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(
            l.tally(&acked),
            Tally {
                expected: 9,
                received: 8,
                missing: 1, // 8
                unexpected: 1,
                duplicates: 2,
                out_of_order: 1,
                resets: 0,
            }
        );
        assert!(!l.tally(&acked).exact());
        // An event received whose publish was not acknowledged is unexpected, not missing.
        let mut l = Ledger::new(10);
        for q in 0..4 {
            l.record(q);
        }
        let t = l.tally(&set(&[0, 1, 3]));
        assert_eq!((t.missing, t.unexpected), (0, 1));
        let t = l.tally(&set(&[0, 1, 2, 3]));
        assert!(t.exact());
    }

    #[test]
    fn resume_point_moves_only_on_dispatch() {
        let mut l = Ledger::new(10);
        assert_eq!(l.last_id(), None);
        l.id_field(b"17");
        // The connection dropped before the blank line: the event was not dispatched.
        assert_eq!(l.last_id(), None);
        l.dispatched(false);
        assert_eq!(l.last_id(), Some(&b"17"[..]));
        // An event without an id (spout's reset) keeps the buffer's id, and counts as a reset.
        l.dispatched(true);
        assert_eq!(l.last_id(), Some(&b"17"[..]));
        // An id with NUL is ignored (§9.2.6); an empty id clears the resume point.
        l.id_field(b"1\x008");
        l.dispatched(false);
        assert_eq!(l.last_id(), Some(&b"17"[..]));
        l.id_field(b"");
        l.dispatched(false);
        assert_eq!(l.last_id(), None);
        // nchan's ids are opaque text; very long ids are cut.
        l.id_field(b"1700000000:[3],1700000000:[0]");
        l.dispatched(false);
        assert_eq!(l.last_id(), Some(&b"1700000000:[3],1700000000:[0]"[..]));
        l.id_field(&[b'9'; MAX_ID + 10]);
        l.dispatched(false);
        assert_eq!(l.last_id().map(<[u8]>::len), Some(MAX_ID));
        assert_eq!(l.tally(&SeqSet::default()).resets, 1);
    }
}
