//! Published events: the id type and the immutable, shared `Message`.
//!
//! A `Message` is created once per publish and shared (`Arc`) by the history ring, every worker inbox and every
//! subscriber queue. Its wire encodings are made on first need, one per wire format, and shared too: nothing is
//! formatted or copied per subscriber (see STYLE.md, "Buffers, fan-out, backpressure").
//!
//! `EventId` is opaque outside this module: it is parsed and formatted here only, so that cluster mode can later
//! draw ids from Redis without touching the rest of the server.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::sse;

/// A pre-serialized, immutable frame shared by every subscriber that receives it.
pub type Frame = Arc<[u8]>;

/// A server-assigned event id: strictly increasing across channels and across restarts.
///
/// Ids follow the wall clock in microseconds (`max(previous + 1, now_us)`), so a restarted server starts above
/// every id its predecessor handed out unless that one published more than a million events per second on
/// average over its whole life. On the wire an id is a decimal string (JavaScript cannot hold 64-bit integers).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId(u64);

impl EventId {
    /// Below every id ever assigned: "nothing seen yet".
    pub const ZERO: EventId = EventId(0);

    /// Parses the wire form: 1 to 20 ASCII digits, no sign, no spaces, and not zero.
    pub fn parse(text: &str) -> Option<EventId> {
        if text.is_empty() || text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        text.parse::<u64>().ok().filter(|&n| n > 0).map(EventId)
    }

    /// The id that follows `self` at wall-clock time `now`.
    pub fn next_at(self, now: SystemTime) -> EventId {
        EventId(self.0.saturating_add(1).max(unix_micros(now)))
    }

    /// The last id "handed out" before the first event of a process started at `now`.
    pub fn seed_at(now: SystemTime) -> EventId {
        EventId(unix_micros(now))
    }
}

fn unix_micros(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// One published event. Immutable once built; shared by history, inboxes and subscriber queues.
#[derive(Debug)]
pub struct Message {
    pub id: EventId,
    pub channel: Arc<str>,
    /// SSE event name (`event:` line); `None` gives the default `message` event.
    pub event: Option<Box<str>>,
    /// The event data, passed through untouched.
    pub data: Box<str>,
    /// When set, only subscribers with one of these client ids receive it (live and on replay).
    pub to: Option<Box<[Box<str>]>>,
    sse: OnceLock<Frame>,
}

impl Message {
    pub fn new(
        id: EventId,
        channel: Arc<str>,
        event: Option<Box<str>>,
        data: Box<str>,
        to: Option<Box<[Box<str>]>>,
    ) -> Message {
        Message {
            id,
            channel,
            event,
            data,
            to,
            sse: OnceLock::new(),
        }
    }

    /// The native SSE encoding, built by the first subscriber that needs it and shared from then on.
    pub fn sse_frame(&self) -> &Frame {
        self.sse.get_or_init(|| {
            let mut out = Vec::with_capacity(self.data.len() + 48);
            let id = self.id.to_string();
            sse::encode_event(&mut out, Some(&id), self.event.as_deref(), &self.data);
            Frame::from(out)
        })
    }

    /// Whether a subscriber with `client_id` receives this event.
    pub fn is_for(&self, client_id: &str) -> bool {
        match &self.to {
            None => true,
            Some(recipients) => recipients.iter().any(|r| &**r == client_id),
        }
    }

    /// Bytes this message holds in memory, counted against `--history-max-bytes`: the data, the other fields and
    /// room for one wire encoding.
    pub fn retained_bytes(&self) -> usize {
        let to: usize = self
            .to
            .iter()
            .flat_map(|r| r.iter())
            .map(|r| r.len() + 16)
            .sum();
        let event = self.event.as_ref().map_or(0, |e| e.len());
        std::mem::size_of::<Message>() + 2 * self.data.len() + event + to + 64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn ids_parse_only_plain_positive_decimals() {
        assert_eq!(EventId::parse("42"), Some(EventId(42)));
        assert_eq!(
            EventId::parse("18446744073709551615"),
            Some(EventId(u64::MAX))
        );
        for bad in [
            "",
            "0",
            "-1",
            "+1",
            " 1",
            "1 ",
            "1e3",
            "0x10",
            "18446744073709551616",
            "abc",
        ] {
            assert_eq!(EventId::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn ids_increase_even_when_the_clock_stands_still_or_goes_back() {
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let a = EventId::seed_at(t);
        let b = a.next_at(t);
        let c = b.next_at(t - Duration::from_secs(5));
        assert!(a < b && b < c);
        let later = c.next_at(t + Duration::from_secs(1));
        assert_eq!(later, EventId::seed_at(t + Duration::from_secs(1)));
    }

    #[test]
    fn targeted_messages_match_only_their_recipients() {
        let m = Message::new(
            EventId(1),
            "c".into(),
            None,
            "d".into(),
            Some(vec!["a".into(), "b".into()].into()),
        );
        assert!(m.is_for("a") && m.is_for("b") && !m.is_for("c"));
        let open = Message::new(EventId(1), "c".into(), None, "d".into(), None);
        assert!(open.is_for("anyone"));
    }

    #[test]
    fn the_sse_frame_is_built_once_and_shared() {
        let m = Message::new(
            EventId(7),
            "c".into(),
            Some("greet".into()),
            "a\nb".into(),
            None,
        );
        let first = m.sse_frame().clone();
        assert!(Arc::ptr_eq(&first, m.sse_frame()));
        assert_eq!(&*first, b"id: 7\nevent: greet\ndata: a\ndata: b\n\n");
    }
}
