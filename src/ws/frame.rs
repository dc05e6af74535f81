//! WebSocket framing (RFC 6455 §5): decoding client frames, reassembling fragmented messages, validating close
//! frames, and building the headers of server frames.
//!
//! Sans-io: `decode` looks at bytes the caller holds and returns `Complete(frame, consumed)` or `Partial`, or
//! an error as soon as the bytes seen break a rule. A frame's payload stays masked in the caller's buffer until
//! the caller unmasks it into storage it owns (`Frame::unmask_into`), so decoding allocates nothing. Every
//! length is checked (`usize::try_from`, `checked_add`) and compared with `Limits::max_message` before anything
//! is allocated or buffered for it.
//!
//! Rules enforced here: client frames are masked (§5.1, §5.3); reserved bits are zero and opcodes known, since no
//! extension is negotiated (§5.2); control frames carry at most 125 bytes and are not fragmented (§5.5);
//! lengths use the minimal encoding and a 64-bit length has its top bit clear (§5.2); continuation frames follow
//! a started message and a new message waits for the end of the last one (§5.4); text is UTF-8, checked across
//! fragments as they arrive (§5.6, §8.1); close codes are ones an endpoint may send (§7.4). `WsError::close_code`
//! is the only place that maps these errors to close codes.

use std::fmt;

use crate::http::Parsed;

/// Largest payload of a control frame (§5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// A server ping with an empty payload (§5.5.2).
pub const PING: &[u8] = &[0x89, 0x00];
/// The close frame that ends a stream left with no channel (its last channel was deleted): 1000 "normal" (§7.4.1).
pub const CLOSE_NORMAL: &[u8] = &[0x88, 0x02, 0x03, 0xE8];
/// The close frame sent when the server shuts down: 1001 "going away" (§7.4.1).
pub const CLOSE_GOING_AWAY: &[u8] = &[0x88, 0x02, 0x03, 0xE9];

/// Frame opcodes (§5.2); the reserved ones are refused by `decode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opcode {
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

    fn bits(self) -> u8 {
        match self {
            Opcode::Continuation => 0x0,
            Opcode::Text => 0x1,
            Opcode::Binary => 0x2,
            Opcode::Close => 0x8,
            Opcode::Ping => 0x9,
            Opcode::Pong => 0xA,
        }
    }

    pub fn is_control(self) -> bool {
        matches!(self, Opcode::Close | Opcode::Ping | Opcode::Pong)
    }
}

/// Size limits for received frames and messages.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest message (all its fragments together), and so the largest frame (`--ws-max-message`).
    pub max_message: usize,
}

/// One decoded client frame, borrowing its (still masked) payload from the caller's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    pub fin: bool,
    pub opcode: Opcode,
    pub mask: [u8; 4],
    /// The payload as received: masked.
    pub payload: &'a [u8],
}

impl Frame<'_> {
    /// Appends the unmasked payload to `out` (§5.3).
    pub fn unmask_into(&self, out: &mut Vec<u8>) {
        out.extend(
            self.payload
                .iter()
                .zip(self.mask.iter().cycle())
                .map(|(b, m)| b ^ m),
        );
    }
}

/// Why the client's frames break the protocol; each maps to one close code in `close_code`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WsError {
    Unmasked,
    ReservedBits,
    ReservedOpcode,
    ControlTooLong,
    ControlFragmented,
    /// A length in a longer form than needed, or a 64-bit length with its top bit set.
    BadLength,
    UnexpectedContinuation,
    ExpectedContinuation,
    BadClosePayload,
    BadCloseCode,
    InvalidUtf8,
    TooBig,
}

impl WsError {
    pub fn as_str(&self) -> &'static str {
        match self {
            WsError::Unmasked => "client frames must be masked",
            WsError::ReservedBits => "reserved bits set without an extension",
            WsError::ReservedOpcode => "reserved opcode",
            WsError::ControlTooLong => "control frame payload over 125 bytes",
            WsError::ControlFragmented => "fragmented control frame",
            WsError::BadLength => "payload length not in its minimal form",
            WsError::UnexpectedContinuation => "continuation frame without a started message",
            WsError::ExpectedContinuation => "new message before the last one ended",
            WsError::BadClosePayload => "close frame with a one-byte payload",
            WsError::BadCloseCode => "close code an endpoint may not send",
            WsError::InvalidUtf8 => "text is not UTF-8",
            WsError::TooBig => "message over --ws-max-message",
        }
    }

    /// The close code answering this error (RFC 6455 §7.4.1): the one mapping of errors to the wire.
    pub fn close_code(&self) -> u16 {
        match self {
            WsError::InvalidUtf8 => 1007,
            WsError::TooBig => 1009,
            WsError::Unmasked
            | WsError::ReservedBits
            | WsError::ReservedOpcode
            | WsError::ControlTooLong
            | WsError::ControlFragmented
            | WsError::BadLength
            | WsError::UnexpectedContinuation
            | WsError::ExpectedContinuation
            | WsError::BadClosePayload
            | WsError::BadCloseCode => 1002,
        }
    }
}

impl fmt::Display for WsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Decodes one client frame from the start of `buf`. Errors are reported as soon as the bytes that show them
/// have arrived; a frame longer than `limits.max_message` is refused from its header, before its payload.
pub fn decode<'a>(buf: &'a [u8], limits: &Limits) -> Result<Parsed<Frame<'a>>, WsError> {
    let Some(&b0) = buf.first() else {
        return Ok(Parsed::Partial);
    };
    if b0 & 0x70 != 0 {
        return Err(WsError::ReservedBits);
    }
    let fin = b0 & 0x80 != 0;
    let opcode = Opcode::from_bits(b0 & 0x0F).ok_or(WsError::ReservedOpcode)?;
    if opcode.is_control() && !fin {
        return Err(WsError::ControlFragmented);
    }
    let Some(&b1) = buf.get(1) else {
        return Ok(Parsed::Partial);
    };
    if b1 & 0x80 == 0 {
        return Err(WsError::Unmasked);
    }
    let len7 = b1 & 0x7F;
    if opcode.is_control() && usize::from(len7) > MAX_CONTROL_PAYLOAD {
        return Err(WsError::ControlTooLong);
    }
    let (len, at): (u64, usize) = match len7 {
        126 => {
            let Some(bytes) = buf.get(2..4) else {
                return Ok(Parsed::Partial);
            };
            let len = u16::from_be_bytes(bytes.try_into().map_err(|_| WsError::BadLength)?);
            if len < 126 {
                return Err(WsError::BadLength);
            }
            (u64::from(len), 4)
        }
        127 => {
            let Some(bytes) = buf.get(2..10) else {
                return Ok(Parsed::Partial);
            };
            let len = u64::from_be_bytes(bytes.try_into().map_err(|_| WsError::BadLength)?);
            if len >> 63 != 0 || len <= u64::from(u16::MAX) {
                return Err(WsError::BadLength);
            }
            (len, 10)
        }
        n => (u64::from(n), 2),
    };
    let len = usize::try_from(len).map_err(|_| WsError::TooBig)?;
    if len > limits.max_message {
        return Err(WsError::TooBig);
    }
    let Some(mask_bytes) = buf.get(at..at + 4) else {
        return Ok(Parsed::Partial);
    };
    let mask: [u8; 4] = mask_bytes.try_into().map_err(|_| WsError::BadLength)?;
    let start = at + 4;
    let end = start.checked_add(len).ok_or(WsError::TooBig)?;
    let Some(payload) = buf.get(start..end) else {
        return Ok(Parsed::Partial);
    };
    Ok(Parsed::Complete(
        Frame {
            fin,
            opcode,
            mask,
            payload,
        },
        end,
    ))
}

/// A complete data message from the client.
#[derive(Debug, PartialEq, Eq)]
pub struct DataMessage {
    /// `Text` (valid UTF-8) or `Binary`.
    pub opcode: Opcode,
    pub payload: Vec<u8>,
}

/// Reassembles data messages from their frames (§5.4), with the size limit and UTF-8 checked as fragments
/// arrive, so a bad or oversized message is refused at its first bad fragment.
#[derive(Debug, Default)]
pub struct Assembler {
    /// The opcode of the message in progress.
    opcode: Option<Opcode>,
    payload: Vec<u8>,
    /// Bytes of `payload` known to be valid UTF-8 (text only); the rest is an incomplete sequence.
    valid_upto: usize,
}

impl Assembler {
    /// Whether a fragmented message has started and not ended.
    pub fn in_progress(&self) -> bool {
        self.opcode.is_some()
    }

    /// Takes one data frame (`Text`, `Binary` or `Continuation`); returns the message it completes, if any.
    pub fn push(&mut self, frame: &Frame, limits: &Limits) -> Result<Option<DataMessage>, WsError> {
        let opcode = match (frame.opcode, self.opcode) {
            (Opcode::Continuation, Some(started)) => started,
            (Opcode::Continuation, None) => return Err(WsError::UnexpectedContinuation),
            (Opcode::Text | Opcode::Binary, Some(_)) => return Err(WsError::ExpectedContinuation),
            (op @ (Opcode::Text | Opcode::Binary), None) => op,
            // Control frames are the caller's; passing one here is a caller bug, refused like a bad frame.
            (_, _) => return Err(WsError::ReservedOpcode),
        };
        let total = self
            .payload
            .len()
            .checked_add(frame.payload.len())
            .ok_or(WsError::TooBig)?;
        if total > limits.max_message {
            return Err(WsError::TooBig);
        }
        self.opcode = Some(opcode);
        frame.unmask_into(&mut self.payload);
        if opcode == Opcode::Text {
            let rest = self.payload.get(self.valid_upto..).unwrap_or_default();
            match std::str::from_utf8(rest) {
                Ok(_) => self.valid_upto = self.payload.len(),
                Err(e) if e.error_len().is_some() => return Err(WsError::InvalidUtf8),
                Err(e) => self.valid_upto += e.valid_up_to(),
            }
            if frame.fin && self.valid_upto != self.payload.len() {
                return Err(WsError::InvalidUtf8);
            }
        }
        if !frame.fin {
            return Ok(None);
        }
        self.opcode = None;
        self.valid_upto = 0;
        Ok(Some(DataMessage {
            opcode,
            payload: std::mem::take(&mut self.payload),
        }))
    }
}

/// Checks an unmasked close payload (§5.5.1, §7.4): empty, or a code an endpoint may send followed by a UTF-8
/// reason. Returns the code, if any.
pub fn parse_close(payload: &[u8]) -> Result<Option<u16>, WsError> {
    let (code, reason) = match payload {
        [] => return Ok(None),
        [_] => return Err(WsError::BadClosePayload),
        [hi, lo, reason @ ..] => (u16::from_be_bytes([*hi, *lo]), reason),
    };
    // 1004-1006 and 1015 are reserved for reporting, never sent (§7.4.1); 1012-1014 were registered later
    // (IANA); 3000-4999 belong to libraries and applications (§7.4.2).
    let sendable = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
    if !sendable {
        return Err(WsError::BadCloseCode);
    }
    std::str::from_utf8(reason).map_err(|_| WsError::InvalidUtf8)?;
    Ok(Some(code))
}

/// The longest frame header a server sends: 2 bytes and a 64-bit length (§5.2; server frames are not masked).
pub const MAX_HEADER: usize = 10;

/// The header of an unmasked, final server frame carrying `len` payload bytes (§5.2), by value (no allocation):
/// the bytes and how many of them are used.
pub fn frame_header(opcode: Opcode, len: usize) -> ([u8; MAX_HEADER], usize) {
    let mut header = [0u8; MAX_HEADER];
    header[0] = 0x80 | opcode.bits();
    let used = match len {
        0..=125 => {
            header[1] = len as u8;
            2
        }
        126..=0xFFFF => {
            header[1] = 126;
            header[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            4
        }
        _ => {
            header[1] = 127;
            header[2..10].copy_from_slice(&(len as u64).to_be_bytes());
            10
        }
    };
    (header, used)
}

/// Appends the header of an unmasked, final server frame carrying `len` payload bytes (§5.2).
pub fn encode_header(opcode: Opcode, len: usize, out: &mut Vec<u8>) {
    let (header, used) = frame_header(opcode, len);
    out.extend_from_slice(&header[..used]);
}

/// Appends a whole unmasked server frame.
pub fn encode_frame(opcode: Opcode, payload: &[u8], out: &mut Vec<u8>) {
    encode_header(opcode, payload.len(), out);
    out.extend_from_slice(payload);
}

/// Appends a close frame with `code` (or an empty one for `None`).
pub fn encode_close(code: Option<u16>, out: &mut Vec<u8>) {
    match code {
        Some(code) => encode_frame(Opcode::Close, &code.to_be_bytes(), out),
        None => encode_frame(Opcode::Close, &[], out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::XorShift;

    const LIMITS: Limits = Limits { max_message: 1024 };

    /// A client frame: masked with `key`.
    fn client(b0: u8, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
        let mut out = vec![b0];
        match payload.len() {
            n @ 0..=125 => out.push(0x80 | n as u8),
            n @ 126..=0xFFFF => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&key);
        out.extend(payload.iter().zip(key.iter().cycle()).map(|(b, m)| b ^ m));
        out
    }

    fn unmasked(frame: &Frame) -> Vec<u8> {
        let mut out = Vec::new();
        frame.unmask_into(&mut out);
        out
    }

    fn complete(buf: &[u8]) -> (Frame<'_>, usize) {
        match decode(buf, &LIMITS) {
            Ok(Parsed::Complete(frame, used)) => (frame, used),
            other => panic!("expected a complete frame, got {other:?}"),
        }
    }

    #[test]
    fn rfc6455_section_5_7_examples() {
        // A single-frame masked text message "Hello".
        let masked = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let (frame, used) = complete(&masked);
        assert_eq!(used, masked.len());
        assert!(frame.fin);
        assert_eq!(frame.opcode, Opcode::Text);
        assert_eq!(unmasked(&frame), b"Hello");
        // A masked pong "Hello".
        let pong = [
            0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let (frame, _) = complete(&pong);
        assert_eq!(frame.opcode, Opcode::Pong);
        assert_eq!(unmasked(&frame), b"Hello");
        // The unmasked examples are server frames: the encoder makes them, the decoder refuses them.
        let mut out = Vec::new();
        encode_frame(Opcode::Text, b"Hello", &mut out);
        assert_eq!(out, [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        assert_eq!(decode(&out, &LIMITS), Err(WsError::Unmasked));
        out.clear();
        encode_frame(Opcode::Ping, b"Hello", &mut out);
        assert_eq!(out, [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        out.clear();
        encode_header(Opcode::Binary, 256, &mut out);
        assert_eq!(out, [0x82, 0x7E, 0x01, 0x00]);
        out.clear();
        encode_header(Opcode::Binary, 65536, &mut out);
        assert_eq!(out, [0x82, 0x7F, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00]);
        // A fragmented text message "Hel" + "lo", here masked as a client sends it.
        let mut assembler = Assembler::default();
        let first = client(0x01, b"Hel", [1, 2, 3, 4]);
        let second = client(0x80, b"lo", [5, 6, 7, 8]);
        let (frame, _) = complete(&first);
        assert_eq!(assembler.push(&frame, &LIMITS), Ok(None));
        assert!(assembler.in_progress());
        let (frame, _) = complete(&second);
        assert_eq!(
            assembler.push(&frame, &LIMITS),
            Ok(Some(DataMessage {
                opcode: Opcode::Text,
                payload: b"Hello".to_vec()
            }))
        );
        assert!(!assembler.in_progress());
    }

    #[test]
    fn lengths_in_all_three_forms() {
        let limits = Limits {
            max_message: 100_000,
        };
        for len in [0, 1, 125, 126, 127, 65535, 65536, 70_000] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let buf = client(0x82, &payload, [9, 8, 7, 6]);
            match decode(&buf, &limits) {
                Ok(Parsed::Complete(frame, used)) => {
                    assert_eq!(used, buf.len(), "{len}");
                    assert_eq!(unmasked(&frame), payload, "{len}");
                }
                other => panic!("{len}: {other:?}"),
            }
        }
    }

    #[test]
    fn every_truncation_is_partial_and_bytes_after_a_frame_are_left() {
        for payload in [&b""[..], b"Hello", &[b'x'; 300]] {
            let mut buf = client(0x81, payload, [0xA, 0xB, 0xC, 0xD]);
            let len = buf.len();
            for cut in 0..len {
                assert_eq!(
                    decode(&buf[..cut], &LIMITS),
                    Ok(Parsed::Partial),
                    "cut {cut}"
                );
            }
            buf.extend_from_slice(&client(0x89, b"", [1, 1, 1, 1]));
            let (frame, used) = complete(&buf);
            assert_eq!(used, len);
            assert_eq!(unmasked(&frame), payload);
        }
    }

    #[test]
    fn byte_at_a_time_feeding_finds_each_frame_at_its_last_byte() {
        let mut stream = Vec::new();
        stream.extend(client(0x01, "héllo ".as_bytes(), [1, 2, 3, 4]));
        stream.extend(client(0x89, b"p", [5, 6, 7, 8]));
        stream.extend(client(0x80, "wörld".as_bytes(), [9, 9, 9, 9]));
        let mut held = Vec::new();
        let mut assembler = Assembler::default();
        let mut pings = 0;
        let mut messages = Vec::new();
        for &byte in &stream {
            held.push(byte);
            match decode(&held, &LIMITS) {
                Ok(Parsed::Partial) => {}
                Ok(Parsed::Complete(frame, used)) => {
                    assert_eq!(used, held.len());
                    if frame.opcode == Opcode::Ping {
                        pings += 1;
                    } else if let Some(m) = assembler.push(&frame, &LIMITS).expect("valid") {
                        messages.push(m.payload);
                    }
                    held.clear();
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(pings, 1);
        assert_eq!(messages, vec!["héllo wörld".as_bytes().to_vec()]);
    }

    #[test]
    fn malformed_frames_and_their_close_codes() {
        let k = [1, 2, 3, 4];
        let cases: Vec<(&str, Vec<u8>, WsError, u16)> = vec![
            ("unmasked", vec![0x81, 0x00], WsError::Unmasked, 1002),
            ("rsv1", client(0xC1, b"", k), WsError::ReservedBits, 1002),
            ("rsv3", client(0x91, b"", k), WsError::ReservedBits, 1002),
            (
                "opcode 3",
                client(0x83, b"", k),
                WsError::ReservedOpcode,
                1002,
            ),
            (
                "opcode 0xB",
                client(0x8B, b"", k),
                WsError::ReservedOpcode,
                1002,
            ),
            (
                "fragmented ping",
                client(0x09, b"", k),
                WsError::ControlFragmented,
                1002,
            ),
            (
                "long ping",
                client(0x89, &[0; 126], k),
                WsError::ControlTooLong,
                1002,
            ),
            (
                "16-bit length under 126",
                vec![0x82, 0xFE, 0x00, 0x05],
                WsError::BadLength,
                1002,
            ),
            (
                "64-bit length under 65536",
                vec![0x82, 0xFF, 0, 0, 0, 0, 0, 0, 0x01, 0x00],
                WsError::BadLength,
                1002,
            ),
            (
                "64-bit length top bit",
                vec![0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0],
                WsError::BadLength,
                1002,
            ),
            (
                "over the limit",
                vec![0x82, 0xFE, 0x04, 0x01],
                WsError::TooBig,
                1009,
            ),
            (
                "huge",
                vec![0x82, 0xFF, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
                WsError::TooBig,
                1009,
            ),
        ];
        for (name, buf, want, code) in cases {
            assert_eq!(decode(&buf, &LIMITS), Err(want), "{name}");
            assert_eq!(want.close_code(), code, "{name}");
        }
        assert_eq!(WsError::InvalidUtf8.close_code(), 1007);
    }

    #[test]
    fn the_limit_is_inclusive() {
        let at = client(0x82, &[7; 1024], [1, 2, 3, 4]);
        assert!(matches!(decode(&at, &LIMITS), Ok(Parsed::Complete(..))));
        let over = client(0x82, &[7; 1025], [1, 2, 3, 4]);
        assert_eq!(decode(&over, &LIMITS), Err(WsError::TooBig));
    }

    #[test]
    fn reassembly_rules() {
        let k = [3, 1, 4, 1];
        let feed = |frames: &[Vec<u8>]| -> Result<Vec<Vec<u8>>, WsError> {
            let mut assembler = Assembler::default();
            let mut out = Vec::new();
            for buf in frames {
                let (frame, _) = complete(buf);
                if let Some(m) = assembler.push(&frame, &LIMITS)? {
                    out.push(m.payload);
                }
            }
            Ok(out)
        };
        assert_eq!(
            feed(&[client(0x80, b"x", k)]),
            Err(WsError::UnexpectedContinuation)
        );
        assert_eq!(
            feed(&[client(0x01, b"a", k), client(0x81, b"b", k)]),
            Err(WsError::ExpectedContinuation)
        );
        // Over the limit across fragments, each fragment under it.
        assert_eq!(
            feed(&[client(0x02, &[0; 600], k), client(0x80, &[0; 600], k)]),
            Err(WsError::TooBig)
        );
        // "é" split between fragments is fine; a bad byte fails at its fragment, before the message ends.
        let e = "é".as_bytes();
        assert_eq!(
            feed(&[client(0x01, &e[..1], k), client(0x80, &e[1..], k)]),
            Ok(vec![e.to_vec()])
        );
        assert_eq!(
            feed(&[client(0x01, b"ok\xFF", k)]),
            Err(WsError::InvalidUtf8)
        );
        // A message may not end inside a sequence.
        assert_eq!(feed(&[client(0x81, &e[..1], k)]), Err(WsError::InvalidUtf8));
        // Binary is not checked.
        assert_eq!(feed(&[client(0x82, b"\xFF", k)]), Ok(vec![vec![0xFF]]));
    }

    #[test]
    fn close_payloads() {
        assert_eq!(parse_close(b""), Ok(None));
        assert_eq!(parse_close(&[0x03]), Err(WsError::BadClosePayload));
        assert_eq!(parse_close(&[0x03, 0xE8]), Ok(Some(1000)));
        assert_eq!(parse_close(b"\x03\xE8bye"), Ok(Some(1000)));
        assert_eq!(parse_close(b"\x0F\xA0"), Ok(Some(4000)));
        for bad in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
            assert_eq!(
                parse_close(&bad.to_be_bytes()),
                Err(WsError::BadCloseCode),
                "{bad}"
            );
        }
        assert_eq!(parse_close(b"\x03\xE8\xFF"), Err(WsError::InvalidUtf8));
        let mut out = Vec::new();
        encode_close(Some(1001), &mut out);
        assert_eq!(out, CLOSE_GOING_AWAY);
    }

    #[test]
    fn garbage_never_panics() {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let mut buf = Vec::new();
        for _ in 0..20_000 {
            buf.clear();
            let len = rng.below(40);
            buf.extend((0..len).map(|_| rng.next() as u8));
            if rng.below(2) == 0 {
                // Often a plausible first two bytes, so the deeper checks run too.
                if let Some(b) = buf.get_mut(1) {
                    *b |= 0x80;
                }
            }
            let mut assembler = Assembler::default();
            let mut at = 0;
            while let Ok(Parsed::Complete(frame, used)) = decode(&buf[at..], &LIMITS) {
                if frame.opcode.is_control() {
                    let mut payload = Vec::new();
                    frame.unmask_into(&mut payload);
                    let _ = parse_close(&payload);
                } else if assembler.push(&frame, &LIMITS).is_err() {
                    break;
                }
                at += used;
                if used == 0 {
                    break;
                }
            }
        }
    }
}
