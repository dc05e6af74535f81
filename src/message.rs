//! Published events: the id type and the immutable, shared `Message`.
//!
//! A `Message` is created once per publish and shared (`Arc`) by the history ring, every worker inbox and every
//! subscriber queue. Its wire encodings are made on first need, one per wire format, and shared too: nothing is
//! formatted or copied per subscriber.
//!
//! `EventId` is opaque outside this module: it is parsed and formatted here only, so that cluster mode can later
//! draw ids from Redis without touching the rest of the server.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::sse;
use crate::ws::frame::{encode_header, Opcode};

/// A pre-serialized, immutable frame shared by every subscriber that receives it.
pub type Frame = Arc<[u8]>;

/// A server-assigned event id: strictly increasing across channels and across restarts.
///
/// Ids follow the wall clock in microseconds (`max(previous + 1, now_us)`), so a restarted server starts above
/// every id its predecessor handed out unless that one published more than a million events per second on
/// average over its whole life. On the wire an id is a decimal string (JavaScript cannot hold 64-bit integers).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId(u64);

/// Low bits of an id drawn from a Redis stream entry that hold the entry's sequence within its millisecond.
const STREAM_SEQ_BITS: u32 = 20;

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

    /// The id of a Redis stream entry `MS-SEQ` (the Redis broker's ids): the milliseconds in the high bits, the
    /// sequence in the low `STREAM_SEQ_BITS`, so ids of one stream keep their order. `None` for a sequence
    /// that does not fit (over a million entries in one millisecond of one stream) or text that is not an id.
    pub fn from_stream_id(text: &str) -> Option<EventId> {
        let (ms, seq) = text.split_once('-')?;
        let (ms, seq) = (ms.parse::<u64>().ok()?, seq.parse::<u64>().ok()?);
        if seq >> STREAM_SEQ_BITS != 0 || ms >> (64 - STREAM_SEQ_BITS) != 0 {
            return None;
        }
        Some(EventId((ms << STREAM_SEQ_BITS) | seq)).filter(|id| id.0 > 0)
    }

    /// The milliseconds part of the Redis stream entry id this id stands for: when Redis took the entry.
    pub fn stream_millis(self) -> u64 {
        self.0 >> STREAM_SEQ_BITS
    }

    /// The Redis stream entry id `MS-SEQ` this id stands for (see `from_stream_id`).
    pub fn stream_id(self) -> String {
        let seq = self.0 & ((1 << STREAM_SEQ_BITS) - 1);
        format!("{}-{seq}", self.0 >> STREAM_SEQ_BITS)
    }

    /// The id just above `self`: a loss recorded at it covers everything after `self`.
    pub fn successor(self) -> EventId {
        EventId(self.0.saturating_add(1))
    }

    /// Parses a stream's cursor of positions, one per channel in the stream's order (`per_channel_text`): `n`
    /// ids joined by commas, `0` for a channel of which nothing was seen. `None` for anything else.
    pub fn parse_per_channel(text: &str, n: usize) -> Option<Vec<EventId>> {
        let positions: Vec<EventId> = text
            .split(',')
            .map(|part| match part {
                "0" => Some(EventId::ZERO),
                _ => EventId::parse(part),
            })
            .collect::<Option<_>>()?;
        (positions.len() == n).then_some(positions)
    }

    /// Appends the wire form of a cursor of positions, one per channel (see `parse_per_channel`).
    pub fn write_per_channel(out: &mut Vec<u8>, positions: impl Iterator<Item = EventId>) {
        use std::io::Write;
        for (at, position) in positions.enumerate() {
            let comma = if at == 0 { "" } else { "," };
            // Writing to a `Vec` cannot fail.
            let _ = write!(out, "{comma}{}", position.0);
        }
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

/// An encoding made by the publishing API (a compatible API whose channels have one wire format), set in place of
/// the native encoding of that transport.
#[derive(Debug)]
pub enum Wire {
    /// Served by `sse_frame`.
    Sse(Frame),
    /// Served by `ws_frame`: a whole WebSocket frame.
    WebSocket(Frame),
    /// Served by `ws_frame`: the shared end of a WebSocket text payload whose beginning names the recipient
    /// (WS-PushServer's CLIENT_PUSH). Each recipient's stream keeps its own beginning and queues header, beginning
    /// and this tail as one frame (`Conn::deliver`); only streams with such a prefix subscribe to these channels.
    WebSocketTail(Frame),
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
    /// The native WebSocket encoding: a whole text frame, header and JSON payload.
    ws: OnceLock<Frame>,
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
            ws: OnceLock::new(),
        }
    }

    /// Sets the encoding the publishing API made (see `Wire`).
    pub fn with_wire(self, wire: Option<Wire>) -> Message {
        match wire {
            None => {}
            Some(Wire::Sse(frame)) => {
                let _ = self.sse.set(frame);
            }
            Some(Wire::WebSocket(frame) | Wire::WebSocketTail(frame)) => {
                let _ = self.ws.set(frame);
            }
        }
        self
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

    /// The native WebSocket encoding, built by the first WebSocket subscriber that needs it and shared from then
    /// on: one unmasked text frame (RFC 6455 §5.6) carrying `{"id":"..","channel":"..","event":"..","data":".."}`,
    /// `event` left out when the event is unnamed. Server frames are never masked, so every subscriber gets the
    /// same bytes.
    pub fn ws_frame(&self) -> &Frame {
        self.ws.get_or_init(|| {
            let mut json = Vec::with_capacity(self.data.len() + self.channel.len() + 64);
            json.extend_from_slice(b"{\"id\":\"");
            json.extend_from_slice(self.id.to_string().as_bytes());
            json.extend_from_slice(b"\",\"channel\":");
            push_json_string(&mut json, &self.channel);
            if let Some(event) = &self.event {
                json.extend_from_slice(b",\"event\":");
                push_json_string(&mut json, event);
            }
            json.extend_from_slice(b",\"data\":");
            push_json_string(&mut json, &self.data);
            json.push(b'}');
            Frame::from(ws_text_frame(&json))
        })
    }

    /// The native SSE encoding without its `id:` line, as a frame and the offset its remainder starts at: for a
    /// stream whose id is a cursor over its channels, which writes its own `id:` line in front of the shared rest
    /// (SSE fields may come in any order before the blank line that ends an event).
    pub fn sse_after_id(&self) -> (&Frame, usize) {
        let frame = self.sse_frame();
        let line = b"id: ".len() + decimal_digits(self.id.0) + 1;
        let at = if frame.get(line - 1) == Some(&b'\n') && frame.starts_with(b"id: ") {
            line
        } else {
            0
        };
        (frame, at)
    }

    /// The native WebSocket encoding after its `{"id":"N"` (the header and the id), as a frame and the offset its
    /// remainder (`,"channel":..}`) starts at: for a stream whose id is a cursor over its channels, which frames
    /// its own header and id in front of the shared rest.
    pub fn ws_after_id(&self) -> (&Frame, usize) {
        let frame = self.ws_frame();
        let id = b"{\"id\":\"".len() + decimal_digits(self.id.0) + 1;
        let header = match frame.get(1).map(|b| b & 0x7f) {
            Some(126) => 4,
            Some(127) => 10,
            _ => 2,
        };
        (frame, (header + id).min(frame.len()))
    }

    /// Whether a subscriber with `client_id` receives this event.
    pub fn is_for(&self, client_id: &str) -> bool {
        match &self.to {
            None => true,
            Some(recipients) => recipients.iter().any(|r| &**r == client_id),
        }
    }

    /// Bytes this message holds in memory, counted against `--history-max-bytes`: the data, the other fields and
    /// room for one wire encoding. A message that reaches both SSE and WebSocket subscribers holds a second
    /// encoding, which is not counted: the count is fixed at append time, before anyone knows which formats will
    /// be built, and counting two always would shrink every single-transport deployment's history by a third.
    /// The README states the resulting bound.
    pub fn retained_bytes(&self) -> usize {
        let to: usize = self
            .to
            .iter()
            .flat_map(|r| r.iter())
            .map(|r| r.len() + 16)
            .sum();
        let event = self.event.as_ref().map_or(0, |e| e.len());
        let made: usize = [self.sse.get(), self.ws.get()]
            .into_iter()
            .flatten()
            .map(|frame| frame.len())
            .sum();
        // Room for one encoding still to be made, unless the publisher made it.
        let to_make = if made == 0 { self.data.len() } else { made };
        std::mem::size_of::<Message>() + self.data.len() + to_make + event + to + 64
    }
}

/// How many decimal digits `n` is written with.
fn decimal_digits(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |log| log as usize + 1)
}

/// Appends `text` as a JSON string literal.
fn push_json_string(out: &mut Vec<u8>, text: &str) {
    // Serializing a `str` into a `Vec` cannot fail: there is no I/O and no non-string key.
    let _ = serde_json::to_writer(&mut *out, text);
}

/// A whole unmasked WebSocket text frame carrying `json` (for the server's own messages: reset, deleted, open).
pub fn ws_text_frame(json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(json.len() + 10);
    encode_header(Opcode::Text, json.len(), &mut out);
    out.extend_from_slice(json);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn stream_ids_keep_their_order_and_round_trip() {
        let a = EventId::from_stream_id("1796297698226-0").expect("id");
        let b = EventId::from_stream_id("1796297698226-1").expect("id");
        let c = EventId::from_stream_id("1796297698227-0").expect("id");
        assert!(a < b && b < c);
        assert_eq!(b.stream_id(), "1796297698226-1");
        assert_eq!(b.stream_millis(), 1_796_297_698_226);
        assert_eq!(EventId::parse(&c.to_string()), Some(c));
        for bad in ["", "1", "a-1", "1-1048576", "0-0", "-1-0"] {
            assert_eq!(EventId::from_stream_id(bad), None, "{bad:?}");
        }
    }

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

    #[test]
    fn the_ws_frame_is_built_once_and_is_one_json_text_frame() {
        let m = Message::new(
            EventId(7),
            "c".into(),
            Some("greet".into()),
            "a\n\"b\"".into(),
            None,
        );
        let first = m.ws_frame().clone();
        assert!(Arc::ptr_eq(&first, m.ws_frame()));
        let json = br#"{"id":"7","channel":"c","event":"greet","data":"a\n\"b\""}"#;
        assert_eq!(first.first(), Some(&0x81));
        assert_eq!(first.get(1), Some(&(json.len() as u8)));
        assert_eq!(first.get(2..), Some(&json[..]));
        let unnamed = Message::new(EventId(8), "c".into(), None, "x".repeat(200).into(), None);
        let frame = unnamed.ws_frame();
        assert_eq!(frame.get(..2), Some(&[0x81, 126][..]));
        let body: serde_json::Value = serde_json::from_slice(frame.get(4..).unwrap()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"id": "8", "channel": "c", "data": "x".repeat(200)})
        );
    }

    #[test]
    fn per_channel_cursors_round_trip_and_refuse_any_other_shape() {
        let positions = [EventId(12), EventId::ZERO, EventId(u64::MAX)];
        let mut text = Vec::new();
        EventId::write_per_channel(&mut text, positions.iter().copied());
        assert_eq!(text, b"12,0,18446744073709551615");
        let text = std::str::from_utf8(&text).expect("ascii");
        assert_eq!(
            EventId::parse_per_channel(text, 3),
            Some(positions.to_vec())
        );
        assert_eq!(EventId::parse_per_channel("7", 1), Some(vec![EventId(7)]));
        for (bad, n) in [
            ("12,0", 3),
            ("12,0,5,6", 3),
            ("1,,2", 3),
            ("1,x,2", 3),
            ("1, 2,3", 3),
            ("", 1),
        ] {
            assert_eq!(EventId::parse_per_channel(bad, n), None, "{bad:?}");
        }
    }

    #[test]
    fn the_rest_after_the_id_is_what_a_per_channel_cursor_goes_in_front_of() {
        for data in ["x".to_string(), "y".repeat(200), "z".repeat(70_000)] {
            let m = Message::new(
                EventId(1234),
                "c".into(),
                Some("e".into()),
                data.into(),
                None,
            );
            let (frame, at) = m.sse_after_id();
            assert_eq!(frame.get(..at), Some(&b"id: 1234\n"[..]));
            let (frame, at) = m.ws_after_id();
            let rest = frame.get(at..).expect("rest");
            assert!(
                rest.starts_with(br#","channel":"c","event":"e","data":""#),
                "{at}"
            );
            assert!(frame.get(..at).expect("head").ends_with(br#"{"id":"1234""#));
        }
    }
}
