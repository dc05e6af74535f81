//! The client side of a WebSocket subscriber (RFC 6455), sans-io: the opening handshake's key and its expected
//! `Sec-WebSocket-Accept`, reading the server's frames, building the masked frames a client sends (pong,
//! close), and finding the fields of spout's event messages (`{"id","channel","event"?,"data"}`).
//!
//! What this file owns: turning bytes, split anywhere across reads, into "a text message", "a ping", "a close";
//! and turning one message into the same `EventSink` calls as an SSE event, so the latency, missing and duplicate
//! accounting is shared with the SSE path.
//!
//! What it must not do: read sockets or clocks, or allocate per frame on the common path. Complete frames are
//! handed over in place from the caller's read buffer; only a frame cut by the end of a read is copied (and a
//! fragmented message reassembled), both bounded by `MAX_MESSAGE`. It never panics on any input: every length
//! is checked (`usize::try_from`, `checked_add`) before it is used.
//!
//! Rules checked on the server's frames: they are not masked (§5.1), reserved bits are zero and opcodes known
//! (no extension is negotiated, §5.2), control frames are final and at most 125 bytes (§5.5), continuations
//! follow a started message and a new message waits for the last one to end (§5.4). A broken rule ends the
//! connection (the tool counts it as a disconnect); it is a measuring client, so it does not answer with 1002.
//!
//! It shares no code with spout's own `src/ws` on purpose: the server checks client frames (masked) and the tool
//! checks server frames (unmasked), and a measuring client that parsed with the server's code would share its bugs.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

/// Appended to the key before hashing (RFC 6455 §1.3).
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// Largest message (or single frame) the tool buffers; spout's events are far smaller.
pub const MAX_MESSAGE: usize = 16 * 1024 * 1024;
/// Largest control frame payload (§5.5).
const MAX_CONTROL: usize = 125;
/// The longest frame header: 2 bytes, a 64-bit length, a mask key (§5.2).
const MAX_HEADER: usize = 14;

/// The `Sec-WebSocket-Key` of one handshake: the base64 form of 16 random bytes (§4.1, item 7).
pub type Key = [u8; 24];

pub fn key_from(random: [u8; 16]) -> Key {
    let mut key = [0u8; 24];
    // 16 bytes are always 24 base64 characters.
    let written = BASE64
        .encode_slice(random, &mut key)
        .expect("16 bytes encode to 24");
    debug_assert_eq!(written, 24);
    key
}

/// The `Sec-WebSocket-Accept` value a server must answer to `key` (§4.2.2, item 5.4).
pub fn expected_accept(key: &Key) -> [u8; 28] {
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key);
    sha.update(GUID.as_bytes());
    let mut accept = [0u8; 28];
    BASE64
        .encode_slice(sha.digest().bytes(), &mut accept)
        .expect("20 bytes encode to 28");
    accept
}

/// Frame opcodes (§5.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Opcode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl Opcode {
    fn from_bits(bits: u8) -> Option<Opcode> {
        Some(match bits {
            0x0 => Opcode::Continuation,
            0x1 => Opcode::Text,
            0x2 => Opcode::Binary,
            0x8 => Opcode::Close,
            0x9 => Opcode::Ping,
            0xA => Opcode::Pong,
            _ => return None,
        })
    }

    fn is_control(self) -> bool {
        matches!(self, Opcode::Close | Opcode::Ping | Opcode::Pong)
    }
}

/// Why the server's frames cannot be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WsError {
    /// A server frame with the mask bit set (§5.1).
    Masked,
    /// Reserved bits set, or a reserved opcode (§5.2).
    Reserved,
    /// A control frame that is fragmented or longer than 125 bytes (§5.5).
    BadControl,
    /// A continuation without a started message, or a new message before the last one ended (§5.4).
    BadFragment,
    /// A 64-bit length with its top bit set (§5.2).
    BadLength,
    /// A frame or message over `MAX_MESSAGE`.
    TooLarge,
}

impl WsError {
    pub fn as_str(&self) -> &'static str {
        match self {
            WsError::Masked => "the server masked a frame",
            WsError::Reserved => "reserved bits or opcode",
            WsError::BadControl => "a fragmented or oversized control frame",
            WsError::BadFragment => "continuation frames out of order",
            WsError::BadLength => "a 64-bit length with the top bit set",
            WsError::TooLarge => "a message over the tool's limit",
        }
    }
}

impl std::fmt::Display for WsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A frame header at the start of a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Header {
    fin: bool,
    opcode: Opcode,
    /// Header bytes (2, 4 or 10: server frames carry no mask key).
    len: usize,
    payload: usize,
}

impl Header {
    fn total(&self) -> usize {
        // Both are bounded by the checks in `parse_header`: no overflow.
        self.len + self.payload
    }
}

/// Parses the header at the start of `buf`: `Ok(None)` until it is complete.
fn parse_header(buf: &[u8]) -> Result<Option<Header>, WsError> {
    let (Some(&b0), Some(&b1)) = (buf.first(), buf.get(1)) else {
        return Ok(None);
    };
    if b0 & 0x70 != 0 {
        return Err(WsError::Reserved);
    }
    let opcode = Opcode::from_bits(b0 & 0x0F).ok_or(WsError::Reserved)?;
    let fin = b0 & 0x80 != 0;
    if b1 & 0x80 != 0 {
        return Err(WsError::Masked);
    }
    let (len, payload) = match b1 & 0x7F {
        126 => match buf.get(2..4) {
            Some(b) => (4, u64::from(u16::from_be_bytes([b[0], b[1]]))),
            None => return Ok(None),
        },
        127 => match buf.get(2..10).and_then(|b| <[u8; 8]>::try_from(b).ok()) {
            Some(b) => {
                let n = u64::from_be_bytes(b);
                if n >> 63 != 0 {
                    return Err(WsError::BadLength);
                }
                (10, n)
            }
            None => return Ok(None),
        },
        n => (2, u64::from(n)),
    };
    let payload = usize::try_from(payload)
        .ok()
        .filter(|&p| p <= MAX_MESSAGE)
        .ok_or(WsError::TooLarge)?;
    if opcode.is_control() && (!fin || payload > MAX_CONTROL) {
        return Err(WsError::BadControl);
    }
    Ok(Some(Header {
        fin,
        opcode,
        len,
        payload,
    }))
}

/// What the frame reader hands over.
pub trait FrameSink {
    /// A complete text or binary message (reassembled when it came in fragments).
    fn message(&mut self, payload: &[u8]);
    /// A ping; the reply is a pong with the same payload (§5.5.3).
    fn ping(&mut self, payload: &[u8]);
    /// A close frame with its status code, if it has one (§5.5.1).
    fn close(&mut self, code: Option<u16>);
}

/// Incremental reader of the server's frames.
#[derive(Clone, Debug, Default)]
pub struct FrameReader {
    /// The start of a frame whose end has not arrived yet: exactly the bytes of that one frame so far.
    partial: Vec<u8>,
    /// A fragmented message being reassembled.
    message: Option<Vec<u8>>,
}

impl FrameReader {
    /// Feeds `input`; frames complete in it are handed over in place.
    pub fn feed(&mut self, mut input: &[u8], sink: &mut impl FrameSink) -> Result<(), WsError> {
        // First finish a frame cut by the previous read. `partial` never holds bytes of the next frame: one byte
        // at a time while its header is incomplete (at most 13), then exactly what the header says is missing.
        while !self.partial.is_empty() {
            let need = match parse_header(&self.partial)? {
                None => 1,
                Some(h) => h.total().saturating_sub(self.partial.len()),
            };
            if need == 0 {
                let frame = std::mem::take(&mut self.partial);
                self.on_frame(&frame, sink)?;
                // Keep a small allocation for the next cut frame; a large one should not stay pinned.
                if frame.capacity() <= 4096 {
                    self.partial = frame;
                    self.partial.clear();
                }
                break;
            }
            let Some((head, rest)) = input.split_at_checked(need.min(input.len())) else {
                return Ok(());
            };
            if head.is_empty() {
                return Ok(());
            }
            self.partial.extend_from_slice(head);
            input = rest;
        }
        while !input.is_empty() {
            match parse_header(input)? {
                Some(h) if h.total() <= input.len() => {
                    let (frame, rest) = input.split_at(h.total());
                    self.on_frame(frame, sink)?;
                    input = rest;
                }
                _ => {
                    debug_assert!(input.len() < MAX_MESSAGE + MAX_HEADER);
                    self.partial.extend_from_slice(input);
                    break;
                }
            }
        }
        Ok(())
    }

    /// One complete frame (header and payload).
    fn on_frame(&mut self, frame: &[u8], sink: &mut impl FrameSink) -> Result<(), WsError> {
        let Some(h) = parse_header(frame)? else {
            return Ok(());
        };
        let payload = frame.get(h.len..h.total()).unwrap_or_default();
        match (h.opcode, h.fin, self.message.as_mut()) {
            (Opcode::Ping, ..) => sink.ping(payload),
            (Opcode::Pong, ..) => {}
            (Opcode::Close, ..) => {
                let code = payload.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]]));
                sink.close(code);
            }
            (Opcode::Text | Opcode::Binary, _, Some(_)) => return Err(WsError::BadFragment),
            (Opcode::Text | Opcode::Binary, true, None) => sink.message(payload),
            (Opcode::Text | Opcode::Binary, false, None) => self.message = Some(payload.to_vec()),
            (Opcode::Continuation, _, None) => return Err(WsError::BadFragment),
            (Opcode::Continuation, fin, Some(message)) => {
                if message.len().saturating_add(payload.len()) > MAX_MESSAGE {
                    return Err(WsError::TooLarge);
                }
                message.extend_from_slice(payload);
                if fin {
                    if let Some(whole) = self.message.take() {
                        sink.message(&whole);
                    }
                }
            }
        }
        Ok(())
    }
}

/// Appends a masked client frame (FIN set) with a control `opcode` and `payload` of at most 125 bytes (§5.3).
fn push_masked(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: [u8; 4]) {
    let payload = payload.get(..MAX_CONTROL).unwrap_or(payload);
    out.push(0x80 | opcode);
    // At most 125: fits the 7-bit length.
    out.push(0x80 | payload.len() as u8);
    out.extend_from_slice(&mask);
    out.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
}

/// A pong answering a ping with `payload`.
pub fn push_pong(out: &mut Vec<u8>, payload: &[u8], mask: [u8; 4]) {
    push_masked(out, 0xA, payload, mask);
}

/// A close frame with `code` (1000 when the tool leaves; the server's code when it answers the server's close).
pub fn push_close(out: &mut Vec<u8>, code: u16, mask: [u8; 4]) {
    push_masked(out, 0x8, &code.to_be_bytes(), mask);
}

/// The fields of one event message, as found by `message_fields`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fields<'a> {
    /// The `id` string (raw: spout's ids are digits and need no unescaping).
    pub id: Option<&'a [u8]>,
    /// The `event` string, raw.
    pub event: Option<&'a [u8]>,
    /// The `data` string, still escaped: see `unescape`.
    pub data: Option<&'a [u8]>,
    /// `data` contains a backslash: it must be unescaped before use.
    pub data_escaped: bool,
}

/// Finds the top-level string members `id`, `event` and `data` of a JSON object without building a value; other
/// members (numbers, arrays, objects) are skipped. `None` when the text is not a JSON object.
pub fn message_fields(text: &[u8]) -> Option<Fields<'_>> {
    let mut fields = Fields::default();
    let mut at = skip_ws(text, 0);
    if text.get(at) != Some(&b'{') {
        return None;
    }
    at = skip_ws(text, at + 1);
    if text.get(at) == Some(&b'}') {
        return Some(fields);
    }
    loop {
        let (key, _, after_key) = string_at(text, at)?;
        at = skip_ws(text, after_key);
        if text.get(at) != Some(&b':') {
            return None;
        }
        at = skip_ws(text, at + 1);
        if text.get(at) == Some(&b'"') {
            let (value, escaped, after) = string_at(text, at)?;
            match key {
                b"id" => fields.id = Some(value),
                b"event" => fields.event = Some(value),
                b"data" => {
                    fields.data = Some(value);
                    fields.data_escaped = escaped;
                }
                _ => {}
            }
            at = after;
        } else {
            at = skip_value(text, at)?;
        }
        at = skip_ws(text, at);
        match text.get(at) {
            Some(b',') => at = skip_ws(text, at + 1),
            Some(b'}') => return Some(fields),
            _ => return None,
        }
    }
}

fn skip_ws(text: &[u8], mut at: usize) -> usize {
    while matches!(text.get(at), Some(b' ' | b'\t' | b'\r' | b'\n')) {
        at += 1;
    }
    at
}

/// The string starting with the quote at `at`: its raw contents, whether it has escapes, and the index after it.
fn string_at(text: &[u8], at: usize) -> Option<(&[u8], bool, usize)> {
    if text.get(at) != Some(&b'"') {
        return None;
    }
    let start = at + 1;
    let mut i = start;
    let mut escaped = false;
    loop {
        match text.get(i)? {
            b'"' => return Some((text.get(start..i)?, escaped, i + 1)),
            b'\\' => {
                escaped = true;
                i += 2;
            }
            _ => i += 1,
        }
    }
}

/// Skips a non-string value (number, literal, array, object) starting at `at`; strings inside are skipped whole.
fn skip_value(text: &[u8], mut at: usize) -> Option<usize> {
    let mut depth = 0usize;
    loop {
        match *text.get(at)? {
            b'"' => at = string_at(text, at)?.2,
            b'[' | b'{' => {
                depth += 1;
                at += 1;
            }
            b']' | b'}' if depth > 0 => {
                depth -= 1;
                at += 1;
                if depth == 0 {
                    return Some(at);
                }
            }
            b',' | b'}' | b']' if depth == 0 => return Some(at),
            _ => at += 1,
        }
    }
}

/// Appends the unescaped contents of a JSON string (`raw` as `message_fields` found it) to `out`. Invalid
/// escapes are kept as they are: the tool only looks for its markers in the text.
pub fn unescape(raw: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        i += 1;
        if b != b'\\' {
            out.push(b);
            continue;
        }
        let Some(&e) = raw.get(i) else {
            out.push(b'\\');
            break;
        };
        i += 1;
        match e {
            b'"' | b'\\' | b'/' => out.push(e),
            b'b' => out.push(0x08),
            b'f' => out.push(0x0C),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'u' => {
                let unit = |at: usize| {
                    raw.get(at..at + 4)
                        .and_then(|h| std::str::from_utf8(h).ok())
                        .and_then(|h| u32::from_str_radix(h, 16).ok())
                };
                let Some(first) = unit(i) else {
                    out.extend_from_slice(b"\\u");
                    continue;
                };
                i += 4;
                let code = if (0xD800..0xDC00).contains(&first) && raw.get(i..i + 2) == Some(b"\\u")
                {
                    match unit(i + 2) {
                        Some(low @ 0xDC00..=0xDFFF) => {
                            i += 6;
                            0x10000 + ((first - 0xD800) << 10) + (low - 0xDC00)
                        }
                        _ => first,
                    }
                } else {
                    first
                };
                let c = char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER);
                let mut utf8 = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
            }
            other => {
                out.push(b'\\');
                out.push(other);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, PartialEq)]
    struct Seen {
        messages: Vec<Vec<u8>>,
        pings: Vec<Vec<u8>>,
        closes: Vec<Option<u16>>,
    }

    impl FrameSink for Seen {
        fn message(&mut self, payload: &[u8]) {
            self.messages.push(payload.to_vec());
        }
        fn ping(&mut self, payload: &[u8]) {
            self.pings.push(payload.to_vec());
        }
        fn close(&mut self, code: Option<u16>) {
            self.closes.push(code);
        }
    }

    /// An unmasked server frame.
    fn frame(b0: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![b0];
        match payload.len() {
            n @ 0..=125 => out.push(n as u8),
            n @ 126..=65535 => {
                out.push(126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(payload);
        out
    }

    fn read_whole(wire: &[u8]) -> Result<Seen, WsError> {
        let mut r = FrameReader::default();
        let mut seen = Seen::default();
        r.feed(wire, &mut seen)?;
        Ok(seen)
    }

    /// Every split into two reads, every split into three reads for short input, and a byte at a time give what
    /// one read gives.
    fn assert_split_invariant(wire: &[u8]) -> Seen {
        let whole = read_whole(wire).unwrap();
        let run = |parts: &[&[u8]]| {
            let mut r = FrameReader::default();
            let mut seen = Seen::default();
            for p in parts {
                r.feed(p, &mut seen).unwrap();
            }
            seen
        };
        for i in 0..=wire.len() {
            assert_eq!(run(&[&wire[..i], &wire[i..]]), whole, "split at {i}");
        }
        if wire.len() <= 60 {
            for i in 0..=wire.len() {
                for j in i..=wire.len() {
                    assert_eq!(
                        run(&[&wire[..i], &wire[i..j], &wire[j..]]),
                        whole,
                        "split at {i},{j}"
                    );
                }
            }
        }
        let bytes: Vec<&[u8]> = wire.chunks(1).collect();
        assert_eq!(run(&bytes), whole, "byte at a time");
        whole
    }

    #[test]
    fn rfc_6455_key_answer() {
        // RFC 6455 §1.3.
        let key: Key = *b"dGhlIHNhbXBsZSBub25jZQ==";
        assert_eq!(&expected_accept(&key), b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(&key_from(*b"the sample nonce"), b"dGhlIHNhbXBsZSBub25jZQ==");
    }

    #[test]
    fn rfc_6455_frame_examples() {
        // §5.7: a single-frame unmasked text message, and the same text in two fragments.
        let single = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        assert_eq!(
            assert_split_invariant(&single).messages,
            vec![b"Hello".to_vec()]
        );
        let fragmented = [0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f];
        assert_eq!(
            assert_split_invariant(&fragmented).messages,
            vec![b"Hello".to_vec()]
        );
        // An unmasked ping with "Hello", and a 256-byte and a 64 KiB binary message (16- and 64-bit lengths).
        let ping = [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        assert_eq!(read_whole(&ping).unwrap().pings, vec![b"Hello".to_vec()]);
        let mut wire = frame(0x82, &[7u8; 256]);
        assert_eq!(&wire[..4], &[0x82, 0x7E, 0x01, 0x00]);
        wire.extend(frame(0x82, &[9u8; 65536]));
        let seen = assert_split_invariant(&wire);
        assert_eq!(seen.messages, vec![vec![7u8; 256], vec![9u8; 65536]]);
    }

    #[test]
    fn frames_mixed_and_split_everywhere() {
        let mut wire = Vec::new();
        wire.extend(frame(0x81, br#"{"event":"open","client_id":"x"}"#));
        wire.extend(frame(0x89, b"p"));
        wire.extend(frame(0x01, b"ab"));
        wire.extend(frame(0x8A, b""));
        wire.extend(frame(0x00, b"cd"));
        wire.extend(frame(0x80, b"e"));
        wire.extend(frame(0x81, b""));
        wire.extend(frame(0x88, &[0x03, 0xE9]));
        let seen = assert_split_invariant(&wire);
        assert_eq!(
            seen,
            Seen {
                messages: vec![
                    br#"{"event":"open","client_id":"x"}"#.to_vec(),
                    b"abcde".to_vec(),
                    Vec::new(),
                ],
                pings: vec![b"p".to_vec()],
                closes: vec![Some(1001)],
            }
        );
        assert_eq!(read_whole(&frame(0x88, b"")).unwrap().closes, vec![None]);
    }

    #[test]
    fn protocol_errors() {
        let cases: &[(&str, Vec<u8>, WsError)] = &[
            ("masked", vec![0x81, 0x81, 1, 2, 3, 4, 5], WsError::Masked),
            ("rsv1", vec![0xC1, 0x00], WsError::Reserved),
            ("opcode 3", vec![0x83, 0x00], WsError::Reserved),
            ("fragmented ping", vec![0x09, 0x00], WsError::BadControl),
            ("long close", frame(0x88, &[0u8; 126]), WsError::BadControl),
            ("lone continuation", frame(0x80, b"x"), WsError::BadFragment),
            (
                "text inside fragments",
                {
                    let mut w = frame(0x01, b"a");
                    w.extend(frame(0x81, b"b"));
                    w
                },
                WsError::BadFragment,
            ),
            (
                "top bit of 64-bit length",
                vec![0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0],
                WsError::BadLength,
            ),
            (
                "over the limit",
                {
                    let mut w = vec![0x82, 0x7F];
                    w.extend_from_slice(&((MAX_MESSAGE as u64) + 1).to_be_bytes());
                    w
                },
                WsError::TooLarge,
            ),
        ];
        for (name, wire, err) in cases {
            assert_eq!(read_whole(wire).unwrap_err(), *err, "{name}");
            // The same error when the bytes come one at a time.
            let mut r = FrameReader::default();
            let mut seen = Seen::default();
            let got = wire.iter().try_for_each(|b| r.feed(&[*b], &mut seen));
            assert_eq!(got, Err(*err), "{name}, byte at a time");
        }
    }

    #[test]
    fn client_frames_are_masked() {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut out = Vec::new();
        push_pong(&mut out, b"Hello", mask);
        // RFC 6455 §5.7's masked "Hello", as a pong.
        assert_eq!(
            out,
            [0x8A, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
        );
        out.clear();
        push_close(&mut out, 1000, [0, 0, 0, 0]);
        assert_eq!(out, [0x88, 0x82, 0, 0, 0, 0, 0x03, 0xE8]);
        out.clear();
        push_pong(&mut out, &[1u8; 200], mask);
        assert_eq!(out.len(), 2 + 4 + 125, "a control payload is cut at 125");
    }

    #[test]
    fn event_message_fields() {
        let cases: &[(&str, &str, Option<Fields>)] = &[
            (
                "spout event",
                r#"{"id":"17","channel":"c0","data":"seq=1 ts=2 xx"}"#,
                Some(Fields {
                    id: Some(b"17"),
                    event: None,
                    data: Some(b"seq=1 ts=2 xx"),
                    data_escaped: false,
                }),
            ),
            (
                "named, escaped",
                r#"{"id":"18","channel":"c0","event":"greet","data":"a\"b\nc"}"#,
                Some(Fields {
                    id: Some(b"18"),
                    event: Some(b"greet"),
                    data: Some(br#"a\"b\nc"#),
                    data_escaped: true,
                }),
            ),
            (
                "server's reset, nested values skipped",
                r#"{"event":"reset","reason":"evicted","channels":["c0","a,}"],"n":{"x":[1,{"y":"}"}]},"k":-1.5e3}"#,
                Some(Fields {
                    event: Some(b"reset"),
                    ..Fields::default()
                }),
            ),
            (
                "whitespace",
                " { \"data\" : \"x\" , \"id\" : \"1\" } ",
                Some(Fields {
                    id: Some(b"1"),
                    data: Some(b"x"),
                    ..Fields::default()
                }),
            ),
            ("empty object", "{}", Some(Fields::default())),
            ("not an object", "[1]", None),
            ("unterminated string", r#"{"id":"1"#, None),
            ("missing colon", r#"{"id" "1"}"#, None),
            ("trailing garbage", r#"{"id":"1" x}"#, None),
            ("empty", "", None),
        ];
        for (name, text, expected) in cases {
            assert_eq!(message_fields(text.as_bytes()), *expected, "{name}");
        }
    }

    #[test]
    fn unescaping() {
        let cases: &[(&str, &[u8])] = &[
            (r#"plain"#, b"plain"),
            (r#"a\"b\\c\/d"#, b"a\"b\\c/d"),
            (r#"\b\f\n\r\t"#, b"\x08\x0C\n\r\t"),
            (r#"\u0041\u00e9"#, "Aé".as_bytes()),
            (r#"\ud83d\ude00"#, "😀".as_bytes()),
            (r#"\ud83d"#, "\u{FFFD}".as_bytes()),
            (r#"\u12"#, b"\\u12"),
            (r#"\x"#, b"\\x"),
            (r#"end\"#, b"end\\"),
        ];
        for (raw, expected) in cases {
            let mut out = Vec::new();
            unescape(raw.as_bytes(), &mut out);
            assert_eq!(out, *expected, "{raw}");
        }
    }

    #[test]
    fn garbage_never_panics() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..5000 {
            let len = (next() % 48) as usize;
            let alphabet = b"\x81\x01\x80\x88\x89\x7E\x7F\x00\x05{}[]\":,\\u idata";
            let buf: Vec<u8> = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            let mut r = FrameReader::default();
            let mut seen = Seen::default();
            for part in buf.chunks(1 + (next() % 7) as usize) {
                if r.feed(part, &mut seen).is_err() {
                    break;
                }
            }
            let _ = message_fields(&buf);
            unescape(&buf, &mut Vec::new());
        }
    }
}
