//! Sans-io parsers for what a subscriber receives: the HTTP response head, `Transfer-Encoding: chunked` framing
//! (nchan and Pushpin may use it) and the `text/event-stream` format (WHATWG HTML §9.2.5). WebSocket framing is
//! in `ws.rs`.
//!
//! What this file owns: turning bytes, split anywhere across reads, into "an event with this data was
//! dispatched". It keeps only a partial line (and a partial chunk-size line) between reads; complete lines are
//! read in place.
//!
//! What it must not do: allocate per event or read sockets. It is lenient where servers differ (bare LF in chunk
//! framing, any line ending in the event stream) because it is a measuring client, not a gatekeeper; it never
//! panics on any input.

/// A parsed response head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    pub chunked: bool,
    pub content_length: Option<usize>,
    /// The `Sec-WebSocket-Accept` value of a `101` answer to a WebSocket handshake (28 base64 characters).
    pub ws_accept: Option<[u8; 28]>,
    /// Bytes of the head, including the final empty line.
    pub len: usize,
}

/// Longest response head accepted.
pub const MAX_HEAD: usize = 16 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadError {
    Malformed,
    TooLarge,
}

/// Parses a response head at the start of `buf`: `Ok(None)` until the empty line has arrived.
pub fn parse_response_head(buf: &[u8]) -> Result<Option<ResponseHead>, HeadError> {
    let Some(end) = find(buf, b"\r\n\r\n") else {
        return if buf.len() > MAX_HEAD {
            Err(HeadError::TooLarge)
        } else {
            Ok(None)
        };
    };
    let head = &buf[..end];
    let mut lines = head.split(|&b| b == b'\n').map(trim_cr);
    let status_line = lines.next().ok_or(HeadError::Malformed)?;
    let mut parts = status_line.splitn(3, |&b| b == b' ');
    let version = parts.next().ok_or(HeadError::Malformed)?;
    if !version.starts_with(b"HTTP/1.") {
        return Err(HeadError::Malformed);
    }
    let code = parts.next().ok_or(HeadError::Malformed)?;
    let status = std::str::from_utf8(code)
        .ok()
        .filter(|c| c.len() == 3)
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or(HeadError::Malformed)?;
    let mut chunked = false;
    let mut content_length = None;
    let mut ws_accept = None;
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Err(HeadError::Malformed);
        };
        let (name, value) = (&line[..colon], trim(&line[colon + 1..]));
        if name.eq_ignore_ascii_case(b"transfer-encoding") {
            chunked = value
                .split(|&b| b == b',')
                .any(|c| trim(c).eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case(b"content-length") {
            content_length = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.parse::<usize>().ok());
        } else if name.eq_ignore_ascii_case(b"sec-websocket-accept") {
            ws_accept = <[u8; 28]>::try_from(value).ok();
        }
    }
    Ok(Some(ResponseHead {
        status,
        chunked,
        content_length: if chunked { None } else { content_length },
        ws_accept,
        len: end + 4,
    }))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkError {
    BadSize,
    BadFraming,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChunkState {
    /// Hex digits of a size; `digits` so far.
    Size {
        value: u64,
        digits: u8,
    },
    /// After the digits: extensions or whitespace until LF.
    SizeRest {
        value: u64,
    },
    Data {
        remaining: u64,
    },
    /// CR or LF after the data.
    DataEnd {
        seen_cr: bool,
    },
    /// After the last chunk: trailer lines until an empty one. `empty` = nothing yet on this line.
    Trailer {
        empty: bool,
    },
    Done,
}

/// Decodes chunked framing, handing each run of data to the caller without copying it.
#[derive(Clone, Debug)]
pub struct ChunkDecoder {
    state: ChunkState,
}

impl Default for ChunkDecoder {
    fn default() -> Self {
        ChunkDecoder {
            state: ChunkState::Size {
                value: 0,
                digits: 0,
            },
        }
    }
}

impl ChunkDecoder {
    /// Feeds `input`; `data` gets every decoded piece in order. Returns whether the final chunk was read.
    pub fn feed(&mut self, input: &[u8], mut data: impl FnMut(&[u8])) -> Result<bool, ChunkError> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                ChunkState::Size { value, digits } => match hex(b) {
                    Some(d) if digits < 16 => {
                        self.state = ChunkState::Size {
                            value: value << 4 | u64::from(d),
                            digits: digits + 1,
                        };
                    }
                    Some(_) => return Err(ChunkError::BadSize),
                    None if digits == 0 => return Err(ChunkError::BadSize),
                    None => {
                        self.state = ChunkState::SizeRest { value };
                        continue;
                    }
                },
                ChunkState::SizeRest { value } => {
                    if b == b'\n' {
                        self.state = if value == 0 {
                            ChunkState::Trailer { empty: true }
                        } else {
                            ChunkState::Data { remaining: value }
                        };
                    }
                }
                ChunkState::Data { remaining } => {
                    let take = usize::try_from(remaining)
                        .unwrap_or(usize::MAX)
                        .min(input.len() - i);
                    data(&input[i..i + take]);
                    i += take;
                    let left = remaining - take as u64;
                    self.state = if left == 0 {
                        ChunkState::DataEnd { seen_cr: false }
                    } else {
                        ChunkState::Data { remaining: left }
                    };
                    continue;
                }
                ChunkState::DataEnd { seen_cr } => match b {
                    b'\r' if !seen_cr => self.state = ChunkState::DataEnd { seen_cr: true },
                    b'\n' => {
                        self.state = ChunkState::Size {
                            value: 0,
                            digits: 0,
                        }
                    }
                    _ => return Err(ChunkError::BadFraming),
                },
                ChunkState::Trailer { empty } => match b {
                    b'\n' if empty => self.state = ChunkState::Done,
                    b'\n' => self.state = ChunkState::Trailer { empty: true },
                    b'\r' => {}
                    _ => self.state = ChunkState::Trailer { empty: false },
                },
                ChunkState::Done => return Ok(true),
            }
            i += 1;
        }
        Ok(self.state == ChunkState::Done)
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// What the SSE parser reports for each dispatched event. The WebSocket path (`receive.rs`) makes the same calls
/// for each event message, so both transports share one accounting.
pub trait EventSink {
    /// Whether the sink wants the `id` and `event` fields. A constant, so that a sink that does not (the fanout
    /// accounting) pays nothing for them in its parsing loop.
    const FIELDS: bool = false;
    /// One `data:` line's value (without the field name and the one optional space).
    fn data_line(&mut self, value: &[u8]);
    /// An `id` field's value (only when `FIELDS`).
    fn id(&mut self, _value: &[u8]) {}
    /// An `event` field's value (only when `FIELDS`).
    fn event(&mut self, _value: &[u8]) {}
    /// The empty line: the event with the data lines given since the last dispatch is complete.
    /// `had_data` is false for an event without data (which a browser would not dispatch).
    fn dispatch(&mut self, had_data: bool);
}

/// Longest line kept across reads. A longer line is cut (its head kept): the tool only needs the markers,
/// which the templates put near the start.
pub const MAX_LINE: usize = 64 * 1024;

/// Incremental `text/event-stream` parser.
#[derive(Clone, Debug, Default)]
pub struct SseParser {
    /// A line whose end has not arrived yet.
    partial: Vec<u8>,
    /// The previous input ended in CR: a LF first in the next input belongs to that line end.
    after_cr: bool,
    had_data: bool,
    /// The stream's first line may start with a UTF-8 BOM, which is skipped (§9.2.5).
    started: bool,
    bom_matched: u8,
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

impl SseParser {
    pub fn feed(&mut self, mut input: &[u8], sink: &mut impl EventSink) {
        if input.is_empty() {
            return;
        }
        if self.after_cr {
            self.after_cr = false;
            if let [b'\n', rest @ ..] = input {
                input = rest;
            }
        }
        // Skip a UTF-8 BOM at the very start of the stream, possibly split across reads.
        while !self.started {
            let Some((&b, rest)) = input.split_first() else {
                return;
            };
            let matched = usize::from(self.bom_matched);
            if BOM.get(matched) == Some(&b) {
                self.bom_matched += 1;
                input = rest;
                self.started = usize::from(self.bom_matched) == BOM.len();
            } else {
                // What looked like a BOM was data after all.
                self.partial.extend_from_slice(&BOM[..matched]);
                self.started = true;
            }
        }
        while !input.is_empty() {
            let Some(end) = input.iter().position(|&b| b == b'\n' || b == b'\r') else {
                let room = MAX_LINE.saturating_sub(self.partial.len());
                self.partial
                    .extend_from_slice(&input[..input.len().min(room)]);
                return;
            };
            let (line, rest) = input.split_at(end);
            let cr = rest[0] == b'\r';
            input = &rest[1..];
            if cr {
                match input.first() {
                    Some(b'\n') => input = &input[1..],
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
            if self.partial.is_empty() {
                self.line(line, sink);
            } else {
                let room = MAX_LINE.saturating_sub(self.partial.len());
                self.partial
                    .extend_from_slice(&line[..line.len().min(room)]);
                let whole = std::mem::take(&mut self.partial);
                self.line(&whole, sink);
                // Keep the allocation only if it is small; a long line should not pin memory on every connection.
                if whole.capacity() <= 256 {
                    self.partial = whole;
                    self.partial.clear();
                }
            }
        }
    }

    fn line<S: EventSink>(&mut self, line: &[u8], sink: &mut S) {
        if line.is_empty() {
            sink.dispatch(self.had_data);
            self.had_data = false;
            return;
        }
        if line[0] == b':' {
            return;
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        if name == b"data" {
            self.had_data = true;
            sink.data_line(value);
        } else if S::FIELDS {
            match name {
                b"id" => sink.id(value),
                b"event" => sink.event(value),
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records events as the joined data lines.
    #[derive(Default, Debug, PartialEq)]
    struct Events {
        current: Vec<u8>,
        lines: usize,
        done: Vec<String>,
        empty_dispatches: usize,
    }

    impl EventSink for Events {
        fn data_line(&mut self, value: &[u8]) {
            if self.lines > 0 {
                self.current.push(b'\n');
            }
            self.current.extend_from_slice(value);
            self.lines += 1;
        }
        fn dispatch(&mut self, had_data: bool) {
            if had_data {
                self.done
                    .push(String::from_utf8_lossy(&self.current).into_owned());
            } else {
                self.empty_dispatches += 1;
            }
            self.current.clear();
            self.lines = 0;
        }
    }

    fn sse_whole(input: &[u8]) -> Events {
        let mut p = SseParser::default();
        let mut e = Events::default();
        p.feed(input, &mut e);
        e
    }

    /// Every split into two reads, every split into three reads at (i, j) for small inputs, and byte-at-a-time
    /// all give the same events as one read.
    fn assert_split_invariant(input: &[u8]) -> Events {
        let whole = sse_whole(input);
        for i in 0..=input.len() {
            let mut p = SseParser::default();
            let mut e = Events::default();
            p.feed(&input[..i], &mut e);
            p.feed(&input[i..], &mut e);
            assert_eq!(
                e.done,
                whole.done,
                "split at {i} of {:?}",
                String::from_utf8_lossy(input)
            );
        }
        if input.len() <= 80 {
            for i in 0..=input.len() {
                for j in i..=input.len() {
                    let mut p = SseParser::default();
                    let mut e = Events::default();
                    for part in [&input[..i], &input[i..j], &input[j..]] {
                        p.feed(part, &mut e);
                    }
                    assert_eq!(e.done, whole.done, "split at {i},{j}");
                }
            }
        }
        let mut p = SseParser::default();
        let mut e = Events::default();
        for b in input {
            p.feed(std::slice::from_ref(b), &mut e);
        }
        assert_eq!(e.done, whole.done, "byte at a time");
        whole
    }

    #[test]
    fn sse_table() {
        let cases: &[(&str, &[u8], &[&str])] = &[
            (
                "spout frame",
                b"id: 17\ndata: seq=1 ts=2\n\n",
                &["seq=1 ts=2"],
            ),
            (
                "two frames",
                b"id: 1\ndata: a\n\nid: 2\ndata: b\n\n",
                &["a", "b"],
            ),
            ("crlf", b"data: a\r\n\r\ndata: b\r\n\r\n", &["a", "b"]),
            ("bare cr", b"data: a\r\rdata: b\r\r", &["a", "b"]),
            (
                "mixed endings",
                b"data: a\r\ndata: b\rdata: c\n\n",
                &["a\nb\nc"],
            ),
            ("no space", b"data:x\n\n", &["x"]),
            ("two spaces keep one", b"data:  x\n\n", &[" x"]),
            ("empty data", b"data\n\n", &[""]),
            (
                "comment and retry",
                b": hi\nretry: 10\n\ndata: z\n\n",
                &["z"],
            ),
            ("event name", b"event: e\ndata: y\n\n", &["y"]),
            ("incomplete last event", b"data: a\n\ndata: b\n", &["a"]),
            ("bom", b"\xEF\xBB\xBFdata: a\n\n", &["a"]),
            ("other fields", b"id: 5\nfoo: bar\ndata: q\n\n", &["q"]),
        ];
        for (name, input, expected) in cases {
            let got = assert_split_invariant(input);
            assert_eq!(got.done, *expected, "{name}");
        }
        assert_eq!(sse_whole(b": ping\n\n").empty_dispatches, 1);
    }

    /// Records every field a `FIELDS` sink gets, in order.
    #[derive(Default, Debug, PartialEq)]
    struct Fields(Vec<String>);

    impl EventSink for Fields {
        const FIELDS: bool = true;
        fn data_line(&mut self, value: &[u8]) {
            self.0
                .push(format!("data={}", String::from_utf8_lossy(value)));
        }
        fn id(&mut self, value: &[u8]) {
            self.0
                .push(format!("id={}", String::from_utf8_lossy(value)));
        }
        fn event(&mut self, value: &[u8]) {
            self.0
                .push(format!("event={}", String::from_utf8_lossy(value)));
        }
        fn dispatch(&mut self, had_data: bool) {
            self.0.push(format!("dispatch {had_data}"));
        }
    }

    #[test]
    fn sse_fields_for_sinks_that_want_them() {
        let input: &[u8] =
            b"id: 7\r\nevent: reset\ndata: {\"a\":1}\n\nid:1700000000:3\r\ndata: x\r\n\r\nid\n: c\nfoo: 1\n\n";
        let expected = [
            "id=7",
            "event=reset",
            "data={\"a\":1}",
            "dispatch true",
            "id=1700000000:3",
            "data=x",
            "dispatch true",
            "id=",
            "dispatch false",
        ];
        let whole = {
            let mut p = SseParser::default();
            let mut f = Fields::default();
            p.feed(input, &mut f);
            f
        };
        assert_eq!(whole.0, expected);
        for i in 0..=input.len() {
            let mut p = SseParser::default();
            let mut f = Fields::default();
            p.feed(&input[..i], &mut f);
            p.feed(&input[i..], &mut f);
            assert_eq!(f, whole, "split at {i}");
        }
        // A sink without FIELDS gets only data and dispatches from the same bytes.
        let e = sse_whole(input);
        assert_eq!(e.done, ["{\"a\":1}", "x"]);
    }

    #[test]
    fn sse_long_line_is_cut_not_grown() {
        let mut p = SseParser::default();
        let mut e = Events::default();
        p.feed(b"data: ", &mut e);
        for _ in 0..100 {
            p.feed(&[b'x'; 4096], &mut e);
        }
        assert!(p.partial.len() <= MAX_LINE);
        p.feed(b"\n\n", &mut e);
        assert_eq!(e.done.len(), 1);
        assert_eq!(e.done[0].len(), MAX_LINE - 6);
    }

    fn chunked(pieces: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in pieces {
            out.extend_from_slice(format!("{:X}\r\n", p.len()).as_bytes());
            out.extend_from_slice(p);
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    /// Chunk framing then SSE, split at every byte (two reads) and byte at a time.
    #[test]
    fn chunked_then_sse_split_everywhere() {
        let stream: &[u8] = b"id: 1\ndata: seq=0 ts=5\n\nid: 2\r\ndata: seq=1 ts=6\r\n\r\n: hb\n\n";
        // Chunk boundaries that cut lines, the CRLF pair and the blank line.
        let mut wire = chunked(&[
            &stream[..3],
            &stream[3..20],
            &stream[20..23],
            &stream[23..44],
            &stream[44..],
        ]);
        wire.extend_from_slice(b"0\r\n\r\n");
        let expected = ["seq=0 ts=5", "seq=1 ts=6"];
        let run = |parts: &[&[u8]]| {
            let mut d = ChunkDecoder::default();
            let mut p = SseParser::default();
            let mut e = Events::default();
            let mut done = false;
            for part in parts {
                done = d.feed(part, |data| p.feed(data, &mut e)).unwrap();
            }
            (e.done, done)
        };
        for i in 0..=wire.len() {
            let (events, done) = run(&[&wire[..i], &wire[i..]]);
            assert_eq!(events, expected, "split at {i}");
            assert!(done);
        }
        let bytes: Vec<&[u8]> = wire.chunks(1).collect();
        assert_eq!(run(&bytes), (expected.map(String::from).to_vec(), true));
    }

    #[test]
    fn chunked_table() {
        // (name, wire, decoded, done)
        let ok: &[(&str, &[u8], &[u8], bool)] = &[
            ("simple", b"3\r\nabc\r\n0\r\n\r\n", b"abc", true),
            (
                "hex upper/lower",
                b"a\r\n0123456789\r\nA\r\n0123456789\r\n",
                b"01234567890123456789",
                false,
            ),
            ("extension", b"3;x=y\r\nabc\r\n", b"abc", false),
            ("bare lf", b"3\nabc\n0\n\n", b"abc", true),
            ("trailers", b"1\r\nz\r\n0\r\nX-T: 1\r\n\r\n", b"z", true),
            ("size ws", b"3 \r\nabc\r\n", b"abc", false),
        ];
        for (name, wire, decoded, done) in ok {
            for i in 0..=wire.len() {
                let mut d = ChunkDecoder::default();
                let mut out = Vec::new();
                let a = d.feed(&wire[..i], |x| out.extend_from_slice(x)).unwrap();
                let b = d.feed(&wire[i..], |x| out.extend_from_slice(x)).unwrap();
                assert_eq!(out, *decoded, "{name} split {i}");
                assert_eq!(a || b, *done, "{name} split {i}");
            }
        }
        let bad: &[(&str, &[u8], ChunkError)] = &[
            ("no digits", b"\r\n", ChunkError::BadSize),
            ("not hex", b"g\r\n", ChunkError::BadSize),
            (
                "too many digits",
                b"11111111111111111\r\n",
                ChunkError::BadSize,
            ),
            ("data overrun", b"1\r\nab\r\n", ChunkError::BadFraming),
        ];
        for (name, wire, err) in bad {
            let mut d = ChunkDecoder::default();
            assert_eq!(d.feed(wire, |_| {}), Err(*err), "{name}");
        }
    }

    #[test]
    fn garbage_never_panics() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..3000 {
            let len = (x % 64) as usize;
            let mut buf = Vec::with_capacity(len);
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let alphabet = b"0123456789abcdefABCDEF:\r\n ;datxyz\xEF\xBB\xBF";
                buf.push(alphabet[(x % alphabet.len() as u64) as usize]);
            }
            let mut d = ChunkDecoder::default();
            let mut p = SseParser::default();
            let mut e = Events::default();
            let _ = d.feed(&buf, |data| p.feed(data, &mut e));
            p.feed(&buf, &mut e);
            let _ = parse_response_head(&buf);
        }
    }

    type HeadCase = (
        &'static [u8],
        Result<Option<(u16, bool, Option<usize>, usize)>, HeadError>,
    );

    #[test]
    fn response_heads() {
        let cases: &[HeadCase] = &[
            (
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\nid: 1",
                Ok(Some((200, false, None, 52))),
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                Ok(Some((200, true, None, 47))),
            ),
            (
                b"HTTP/1.1 201 Created\r\ncontent-length: 12\r\n\r\n",
                Ok(Some((201, false, Some(12), 44))),
            ),
            (
                b"HTTP/1.0 503 Busy\r\n\r\n",
                Ok(Some((503, false, None, 21))),
            ),
            (
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
                Ok(Some((101, false, None, 77))),
            ),
            (b"HTTP/1.1 200 OK\r\nX: y\r\n", Ok(None)),
            (b"HTTP/2 200\r\n\r\n", Err(HeadError::Malformed)),
            (b"HTTP/1.1 20 OK\r\n\r\n", Err(HeadError::Malformed)),
            (
                b"HTTP/1.1 200 OK\r\nbad line\r\n\r\n",
                Err(HeadError::Malformed),
            ),
        ];
        for (input, expected) in cases {
            let got = parse_response_head(input)
                .map(|h| h.map(|h| (h.status, h.chunked, h.content_length, h.len)));
            assert_eq!(got, *expected, "{:?}", String::from_utf8_lossy(input));
        }
        assert_eq!(
            parse_response_head(&vec![b'a'; MAX_HEAD + 1]),
            Err(HeadError::TooLarge)
        );
        let accept = |head: &[u8]| parse_response_head(head).unwrap().unwrap().ws_accept;
        assert_eq!(
            accept(
                b"HTTP/1.1 101 OK\r\nsec-websocket-accept:  s3pPLMBiTxaQ9kYGzzhZRbK+xOo= \r\n\r\n"
            ),
            Some(*b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        );
        assert_eq!(
            accept(b"HTTP/1.1 101 OK\r\nSec-WebSocket-Accept: short\r\n\r\n"),
            None
        );
        assert_eq!(accept(b"HTTP/1.1 200 OK\r\n\r\n"), None);
    }
}
