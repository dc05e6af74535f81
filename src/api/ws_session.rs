//! The contract between a WebSocket stream and its API: what the API keeps per connection (`WsSession`), the
//! rules that keep the stream alive and close it (`WsRules`), and how the API answers a client's message
//! (`ws_message` → `WsAnswer`, with the subscription changes it made).
//!
//! `conn` holds the session in the stream's boxed WebSocket state and applies the rules and answers; the APIs never
//! touch the connection, the socket or the hub.

use std::sync::Arc;
use std::time::Duration;

use super::{keker, ws_push, Ctx};
use crate::channels::SubscribedChannel;
use crate::config::{Api, Config};
use crate::message::Frame;
use crate::ws::frame as ws_frame;

/// What an API keeps per WebSocket connection (inside the stream's boxed WebSocket state, so an idle SSE stream
/// pays nothing for it).
pub enum WsSession {
    /// The native API: clients send nothing it reads.
    Native,
    Keker(keker::Session),
    /// Boxed: its uuid, channel list and prefix would triple the size of every native WebSocket's state.
    WsPush(Box<ws_push::Session>),
}

impl WsSession {
    /// The session a new WebSocket stream of `api` starts with; `client_id` is the stream's id in the table.
    pub fn new(api: Api, client_id: &str) -> WsSession {
        match api {
            Api::Keker => WsSession::Keker(keker::Session::default()),
            // The client id of a WS-PushServer stream is its uuid.
            Api::WsPush => WsSession::WsPush(Box::new(ws_push::Session::new(client_id))),
            Api::Native | Api::Pipely | Api::NodeSse | Api::Flychat => WsSession::Native,
        }
    }

    /// The per-recipient beginning of this stream's messages, for channels whose events carry only the shared end
    /// (`message::Wire::WebSocketTail`); `None` when the whole frame is shared.
    pub fn push_prefix(&self) -> Option<&Frame> {
        match self {
            WsSession::Native | WsSession::Keker(_) => None,
            WsSession::WsPush(session) => Some(session.prefix()),
        }
    }
}

/// How a WebSocket stream is kept alive and closed: per-API data that `Conn::on_tick` and `conn::ws` read, so the
/// connection layer holds no API's special cases.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WsRules {
    /// The server's ping, if it pings.
    pub ping: Option<Ping>,
    /// Ping only a peer that has been silent for the interval (else on a fixed schedule from the last ping).
    pub ping_quiet_only: bool,
    /// Pings stop once the peer has not been heard for this long (it is left to `drop_after`).
    pub ping_while_heard_within: Duration,
    /// The peer is dropped with a bare TCP close (no close frame) once it has not been heard for this long.
    pub drop_after: Duration,
    /// Which frames prove the peer alive.
    pub heard_on: Heard,
    pub close_reply: CloseReply,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ping {
    /// The whole ping frame.
    pub frame: &'static [u8],
    pub every: Duration,
}

/// Which client frames count as a sign of life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Heard {
    /// Anything the peer sends, even part of a frame.
    AnyFrame,
    /// Only a pong (the originals that count pongs alone).
    Pong,
    /// None: the deadline is fixed (keker before `HELLO`).
    Nothing,
}

/// How a client's close frame is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReply {
    /// With the client's own code (RFC 6455 §5.5.1).
    Echo,
    /// With 1000, whatever the client sent.
    Normal,
}

/// The rules of a WebSocket stream with this session.
pub fn ws_rules(session: &WsSession, config: &Config) -> WsRules {
    match session {
        // RFC 6455 §5.5.2: ping a peer that has been silent for `--ws-ping`; drop it once it has been silent for
        // `--ws-timeout`. Any frame counts as an answer, and a busy peer is never pinged.
        WsSession::Native => WsRules {
            ping: Some(Ping {
                frame: ws_frame::PING,
                every: config.ws_ping,
            }),
            ping_quiet_only: true,
            ping_while_heard_within: config.ws_timeout,
            drop_after: config.ws_timeout,
            heard_on: Heard::AnyFrame,
            close_reply: CloseReply::Echo,
        },
        WsSession::Keker(session) => keker::ws_rules(session, config),
        WsSession::WsPush(_) => ws_push::ws_rules(config),
    }
}

/// The stream as its API sees it when the client sends a message.
pub struct WsPeer<'a> {
    pub client_id: &'a str,
    /// The stream's subscriptions (left and deleted ones have incarnation 0).
    pub channels: &'a [SubscribedChannel],
    pub session: &'a mut WsSession,
}

/// What an API answers to a client's text message. APIs do not touch the event loop: the connection queues the
/// reply and applies the channel changes (the worker updates its hub).
#[derive(Debug, Default)]
pub struct WsAnswer {
    /// Whole frames to send back, in order.
    pub reply: Vec<u8>,
    /// Subscriptions the API made or undid in the channel table for this stream.
    pub changes: Vec<ChannelChange>,
    /// `reply` ends with a close frame: close the stream after it.
    pub close: bool,
    /// The session's `WsRules` changed: their schedule starts now.
    pub restart_liveness: bool,
    /// The message waits for the broker: the API asked it something with `ctx.waiter` (and sent nothing, changed
    /// nothing). The stream reads no further input until the answer comes; then the same message is handled
    /// again, with the answer in `ctx.answer`.
    pub parked: bool,
}

/// A subscription a stream gained or lost while open. The API has already updated the channel table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChannelChange {
    /// Subscribed (its `since` is the table's head at the subscription).
    Join(SubscribedChannel),
    /// Unsubscribed from this channel (core name).
    Leave(Arc<str>),
}

/// A complete text message from a WebSocket client of the stream's API.
pub fn ws_message(text: &str, peer: WsPeer, ctx: &mut Ctx) -> WsAnswer {
    let WsPeer {
        client_id,
        channels,
        session,
    } = peer;
    match session {
        // Native clients have nothing to say yet: their messages are checked and ignored.
        WsSession::Native => WsAnswer::default(),
        WsSession::Keker(session) => keker::ws_message(text, client_id, session, ctx),
        WsSession::WsPush(session) => ws_push::ws_message(text, client_id, channels, session, ctx),
    }
}

/// A stream of a compatible API lost `channel` because the channel was deleted (it stays open): the API updates
/// the session (WS-PushServer's list of subscribed channels).
pub fn ws_channel_lost(session: &mut WsSession, channel: &str) {
    match session {
        // Native streams get a final `deleted` event from the worker; keker channels are never deleted.
        WsSession::Native | WsSession::Keker(_) => {}
        WsSession::WsPush(session) => session.lose_channel(channel),
    }
}
