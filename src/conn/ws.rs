//! A WebSocket stream's protocol state and its answers to client frames (RFC 6455), for `conn`.
//!
//! Owns what only a WebSocket stream needs: when the peer was last heard and last pinged, the bytes of an
//! incomplete frame and a fragmented message in progress, and the API's session (`api::WsSession`), all in one
//! `Box` on the stream so that SSE streams do not pay for them. Decoding and validation are `ws::frame`'s
//! (sans-io); this file answers control frames (ping → pong, close → close, protocol error → close with its code)
//! by queueing on the connection's `OutQueue`, and hands each complete text message to the caller's `on_text`
//! (which asks the stream's API). The API's `WsRules` say which frames prove the peer alive, how a close is
//! answered and when to ping; `Conn::on_tick` does the pinging. This file must not touch the socket, the hub or
//! the clock: `now` comes in.

use std::time::Instant;

use super::outq::{Chunk, Inline, OutQueue};
use crate::api::{CloseReply, Heard, WsRules, WsSession};
use crate::http::Parsed;
use crate::message::Frame;
use crate::ws::frame::{self as ws_frame, Assembler, Opcode, WsError};

/// Queues one text frame made of this stream's `prefix` and an event's shared `tail`: only the few-byte header is
/// made here, held in the queue slot; both parts are queued as `Arc` clones and joined by the vectored write.
pub fn queue_with_prefix(out: &mut OutQueue, prefix: &Frame, tail: &Frame) {
    let (header, len) = ws_frame::frame_header(Opcode::Text, prefix.len() + tail.len());
    // A header is at most `ws_frame::MAX_HEADER` bytes, which `Inline` holds.
    if let Some(inline) = header.get(..len).and_then(Inline::new) {
        out.push(Chunk::Inline(inline));
        out.push(Chunk::Shared(Frame::clone(prefix)));
        out.push(Chunk::Shared(Frame::clone(tail)));
    }
}

/// A WebSocket stream's protocol state (boxed: only WebSocket streams pay for it).
pub struct WsState {
    /// When the peer last proved alive (which frames count is `WsRules::heard_on`), or the start of the current
    /// liveness schedule.
    pub(super) last_heard: Instant,
    /// When the server last pinged (or the schedule started).
    pub(super) last_ping: Instant,
    /// The bytes of an incomplete frame, only while there are any.
    partial: Vec<u8>,
    /// A data message in progress, only while there is one.
    assembler: Option<Box<Assembler>>,
    /// What the stream's API keeps per connection.
    pub session: WsSession,
    /// A text message the API parked until the broker answers (`WsAnswer::parked`); no input is decoded
    /// meanwhile (`partial` holds what came behind it).
    pub(super) parked: Option<Box<ParkedMessage>>,
}

/// A client's text message waiting for the broker's answer: handled again with it (`Conn::resume`).
#[derive(Debug)]
pub struct ParkedMessage {
    pub(super) text: String,
    /// The ticket the answer must carry (see `Waiter`); set by the connection once the API parked the message.
    pub(super) ticket: u64,
}

/// What the received bytes did to a WebSocket stream.
#[derive(Debug, PartialEq, Eq)]
pub enum WsInput {
    Open,
    /// A close frame was queued (the peer's close answered, or the API's): close after writing it.
    Closing,
    /// The peer broke the protocol: a close frame with the error's code was queued; close after writing it.
    Failed,
    /// The answers this input provoked (pongs, replies) passed the output cap (`OutQueue::footprint`): the peer
    /// sends faster than it reads. Nothing more was decoded; close it as slow.
    Overflow,
    /// The API parked a message until the broker answers (`WsState::parked`): nothing behind it was decoded.
    Parked,
}

impl WsState {
    pub fn new(now: Instant, session: WsSession) -> WsState {
        WsState {
            last_heard: now,
            last_ping: now,
            partial: Vec::new(),
            assembler: None,
            session,
            parked: None,
        }
    }

    /// Starts the liveness schedule over at `now` (the API changed its rules, e.g. keker after `HELLO`).
    pub(super) fn restart_schedule(&mut self, now: Instant) {
        self.last_heard = now;
        self.last_ping = now;
    }

    /// When `Conn::on_tick` must next look at this stream under `rules`: its next ping or its drop, whichever
    /// comes first.
    pub(super) fn next_check(&self, rules: &WsRules) -> Instant {
        let drop_at = self.last_heard + rules.drop_after;
        match rules.ping {
            Some(ping) => drop_at.min(self.ping_due(rules, ping.every)),
            None => drop_at,
        }
    }

    /// When the next ping is due: a fixed interval after the last one, or (`quiet_only`) after the peer last
    /// spoke, whichever was later.
    pub(super) fn ping_due(&self, rules: &WsRules, every: std::time::Duration) -> Instant {
        let from = if rules.ping_quiet_only {
            self.last_ping.max(self.last_heard)
        } else {
            self.last_ping
        };
        from + every
    }

    /// Decodes the frames in `data` (after any incomplete one held from before), answers control frames on `out`
    /// and hands each complete text message to `on_text` (binary messages are ignored by every API). Stops at
    /// the first frame that closes the stream, or once what is queued passes `max_queued` (`OutQueue::footprint`).
    #[allow(clippy::too_many_arguments)]
    pub fn on_input(
        &mut self,
        data: &[u8],
        now: Instant,
        limits: &ws_frame::Limits,
        max_queued: usize,
        rules: &WsRules,
        out: &mut OutQueue,
        mut on_text: impl FnMut(&mut WsSession, &str, &mut OutQueue) -> WsInput,
    ) -> WsInput {
        if rules.heard_on == Heard::AnyFrame {
            // Any bytes at all, even of a frame still incomplete, show the peer is there.
            self.last_heard = now;
        }
        let mut held = std::mem::take(&mut self.partial);
        let input: &[u8] = if held.is_empty() {
            data
        } else {
            held.extend_from_slice(data);
            &held
        };
        let mut at = 0;
        loop {
            let rest = input.get(at..).unwrap_or_default();
            let result = match ws_frame::decode(rest, limits) {
                Ok(Parsed::Partial) => {
                    if !rest.is_empty() {
                        self.partial = rest.to_vec();
                    }
                    return WsInput::Open;
                }
                Ok(Parsed::Complete(frame, used)) => {
                    at += used;
                    if rules.heard_on == Heard::Pong && frame.opcode == Opcode::Pong {
                        self.last_heard = now;
                    }
                    self.on_frame(&frame, limits, rules, out, &mut on_text)
                }
                Err(e) => Err(e),
            };
            match result {
                Ok(WsInput::Open) if out.footprint() > max_queued => return WsInput::Overflow,
                Ok(WsInput::Open) => {}
                Ok(WsInput::Parked) => {
                    let behind = input.get(at..).unwrap_or_default();
                    if !behind.is_empty() {
                        self.partial = behind.to_vec();
                    }
                    return WsInput::Parked;
                }
                Ok(closing) => return closing,
                Err(e) => {
                    log::debug!(reason = e.as_str(); "websocket protocol error: {e}");
                    let mut close = Vec::with_capacity(4);
                    ws_frame::encode_close(Some(e.close_code()), &mut close);
                    out.push(Chunk::Owned(close.into()));
                    return WsInput::Failed;
                }
            }
        }
    }

    fn on_frame(
        &mut self,
        frame: &ws_frame::Frame,
        limits: &ws_frame::Limits,
        rules: &WsRules,
        out: &mut OutQueue,
        on_text: &mut impl FnMut(&mut WsSession, &str, &mut OutQueue) -> WsInput,
    ) -> Result<WsInput, WsError> {
        match frame.opcode {
            Opcode::Ping => {
                // RFC 6455 §5.5.3: a pong carries the ping's application data.
                let mut payload = Vec::with_capacity(frame.payload.len());
                frame.unmask_into(&mut payload);
                let mut pong = Vec::with_capacity(payload.len() + 2);
                ws_frame::encode_frame(Opcode::Pong, &payload, &mut pong);
                // A short pong (an empty ping's, the common one) is held in the queue slot: no allocation.
                match Inline::new(&pong) {
                    Some(inline) => out.push(Chunk::Inline(inline)),
                    None => out.push(Chunk::Owned(pong.into())),
                }
            }
            Opcode::Pong => {}
            Opcode::Close => {
                let mut payload = Vec::with_capacity(frame.payload.len());
                frame.unmask_into(&mut payload);
                // §5.5.1: answer a close with a close; then the server closes the connection.
                let code = ws_frame::parse_close(&payload)?;
                match rules.close_reply {
                    CloseReply::Echo => {
                        let mut close = Vec::with_capacity(4);
                        ws_frame::encode_close(code, &mut close);
                        out.push(Chunk::Owned(close.into()));
                    }
                    CloseReply::Normal => out.push(Chunk::Static(ws_frame::CLOSE_NORMAL)),
                }
                return Ok(WsInput::Closing);
            }
            Opcode::Text | Opcode::Binary | Opcode::Continuation => {
                // Every message is checked (size, UTF-8, fragment order) before it is used; a well-formed message
                // an API does not know is no reason to close.
                let assembler = self.assembler.get_or_insert_with(Default::default);
                if let Some(message) = assembler.push(frame, limits)? {
                    self.assembler = None;
                    if message.opcode == Opcode::Text {
                        // `Assembler::push` validated the UTF-8 of a text message.
                        let text = std::str::from_utf8(&message.payload)
                            .map_err(|_| WsError::InvalidUtf8)?;
                        let input = on_text(&mut self.session, text, out);
                        if input == WsInput::Parked {
                            self.parked = Some(Box::new(ParkedMessage {
                                text: text.to_string(),
                                ticket: 0,
                            }));
                        }
                        return Ok(input);
                    }
                }
            }
        }
        Ok(WsInput::Open)
    }
}
