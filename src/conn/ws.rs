//! A WebSocket stream's protocol state and its answers to client frames (RFC 6455), for `conn`.
//!
//! Owns what only a WebSocket stream needs: when the peer was last heard, the bytes of an incomplete frame and a
//! fragmented message in progress, all in one `Box` on the stream so that SSE streams do not pay for them.
//! Decoding and validation are `ws::frame`'s (sans-io); this file answers frames (ping → pong, close → echoed
//! close, protocol error → close with its code) by queueing on the connection's `OutQueue`. It must not touch the
//! socket, the hub or the clock: `now` comes in, `Conn::on_tick` does the pinging.

use std::time::Instant;

use super::outq::{Chunk, OutQueue};
use crate::http::Parsed;
use crate::metrics::Counters;
use crate::ws::frame::{self as ws_frame, Assembler, Opcode, WsError};

/// A WebSocket stream's protocol state (boxed: only WebSocket streams pay for it).
pub struct WsState {
    /// When the last frame arrived (or the upgrade): the peer is alive while this is within `--ws-timeout`.
    pub(super) last_heard: Instant,
    /// The bytes of an incomplete frame, only while there are any.
    partial: Vec<u8>,
    /// A data message in progress, only while there is one.
    assembler: Option<Box<Assembler>>,
}

/// What the received bytes did to a WebSocket stream.
#[derive(Debug, PartialEq, Eq)]
pub enum WsInput {
    Open,
    /// A close frame was queued (the peer's close echoed, or ours for a protocol error): close after writing it.
    Closing,
}

impl WsState {
    pub fn new(now: Instant) -> WsState {
        WsState {
            last_heard: now,
            partial: Vec::new(),
            assembler: None,
        }
    }

    /// Decodes the frames in `data` (after any incomplete one held from before) and answers them on `out`.
    pub fn on_input(
        &mut self,
        data: &[u8],
        now: Instant,
        limits: &ws_frame::Limits,
        out: &mut OutQueue,
        counters: &mut Counters,
    ) -> WsInput {
        self.last_heard = now;
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
                    self.on_frame(&frame, limits, out)
                }
                Err(e) => Err(e),
            };
            match result {
                Ok(WsInput::Open) => {}
                Ok(WsInput::Closing) => return WsInput::Closing,
                Err(e) => {
                    log::debug!("websocket protocol error: {e}");
                    counters.ws_protocol_errors += 1;
                    let mut close = Vec::with_capacity(4);
                    ws_frame::encode_close(Some(e.close_code()), &mut close);
                    out.push(Chunk::Owned(close.into()));
                    return WsInput::Closing;
                }
            }
        }
    }

    fn on_frame(
        &mut self,
        frame: &ws_frame::Frame,
        limits: &ws_frame::Limits,
        out: &mut OutQueue,
    ) -> Result<WsInput, WsError> {
        match frame.opcode {
            Opcode::Ping => {
                // RFC 6455 §5.5.3: a pong carries the ping's application data.
                let mut payload = Vec::with_capacity(frame.payload.len());
                frame.unmask_into(&mut payload);
                let mut pong = Vec::with_capacity(payload.len() + 2);
                ws_frame::encode_frame(Opcode::Pong, &payload, &mut pong);
                out.push(Chunk::Owned(pong.into()));
            }
            Opcode::Pong => {}
            Opcode::Close => {
                let mut payload = Vec::with_capacity(frame.payload.len());
                frame.unmask_into(&mut payload);
                // §5.5.1: answer a close with a close, echoing the code; then the server closes the connection.
                let code = ws_frame::parse_close(&payload)?;
                let mut close = Vec::with_capacity(4);
                ws_frame::encode_close(code, &mut close);
                out.push(Chunk::Owned(close.into()));
                return Ok(WsInput::Closing);
            }
            Opcode::Text | Opcode::Binary | Opcode::Continuation => {
                // Messages from a subscriber are checked (size, UTF-8, fragment order) and then ignored: the native
                // API defines none yet, and a well-formed message it does not know is no reason to close.
                let assembler = self.assembler.get_or_insert_with(Default::default);
                if assembler.push(frame, limits)?.is_some() {
                    self.assembler = None;
                }
            }
        }
        Ok(WsInput::Open)
    }
}
