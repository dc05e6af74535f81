//! The per-API hooks of the layers below the APIs: what the connection and the worker ask of "the stream's API"
//! without naming one. Each is a `match` over `Api` that hands the question to that API's module, so the event
//! loop and `conn` stay free of any API's special cases.
//!
//! - `refusal`: the answer to a request refused before any API saw it (bad head, timeout, busy);
//! - `heartbeat`: what a quiet SSE stream is sent, and when;
//! - `replay_reset`: the `reset` event of a resuming stream;
//! - `channel_deleted`: what a stream gets when one of its channels is deleted;
//! - `token_expired`: what a stream gets when the token that opened it expires;
//! - `stream_closed`: a stream ended; the API updates its own bookkeeping;
//! - `refresh_shared`: with the Redis broker, each API renews the expiry of the shared state this node owns.

use std::time::Duration;

use super::{flychat, keker, native, node_sse, pipely, ws_push, Ctx};
use crate::channels::{ResetNotice, SubscribedChannel};
use crate::config::{Api, Config};
use crate::http::response::DateCache;
use crate::http::HttpError;
use crate::message::Frame;

/// Why the connection layer refuses a request before any API sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    Http(HttpError),
    /// No complete head, or a stalled body, within `--request-timeout`.
    Timeout,
    /// `--max-connections` reached or out of file descriptors.
    Busy,
    /// The bodies being read fill `--max-pending-body-bytes`: this one is refused before it is read.
    BodyBudget,
    /// The client's address has `--max-connections-per-ip` connections open already.
    PeerLimit,
}

impl Refusal {
    /// The code spout's own API answers it with (the `error` field), which logs name it by too.
    pub fn as_str(&self) -> &'static str {
        match self {
            Refusal::Http(e) => e.as_str(),
            Refusal::Timeout => "request_timeout",
            Refusal::Busy => "busy",
            Refusal::BodyBudget => "body_budget_full",
            Refusal::PeerLimit => "too_many_connections",
        }
    }
}

/// The answer to a refusal, in the style of the listener's API. Always closes the connection.
pub fn refusal(api: Api, refusal: Refusal, date: &DateCache) -> Vec<u8> {
    match api {
        Api::Native => native::refusal(refusal, date),
        Api::Pipely => pipely::refusal(refusal, date),
        Api::NodeSse => node_sse::refusal(refusal, date),
        Api::Flychat => flychat::refusal(refusal, date),
        Api::Keker => keker::refusal(refusal, date),
        Api::WsPush => ws_push::refusal(refusal, date),
    }
}

/// What a quiet SSE stream of an API is sent, and when: `frame`, once the stream has had `every` of silence. Each
/// stream times its own (its connection's deadline, pushed back by every event queued on it), so a stream that just
/// got data gets no heartbeat, and streams that went quiet at different moments beat at different moments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Heartbeat {
    pub frame: &'static [u8],
    pub every: Duration,
}

/// What a quiet SSE stream of `api` is sent, and when.
pub fn heartbeat(api: Api, config: &Config) -> Heartbeat {
    match api {
        // Comment lines are a harmless extension on the compatible streams: every EventSource ignores them.
        Api::Native | Api::Pipely | Api::NodeSse | Api::WsPush | Api::Keker => Heartbeat {
            frame: SSE_COMMENT_HEARTBEAT,
            every: config.heartbeat,
        },
        // What Pushpin sends on flychat's streams after `Grip-Keep-Alive: ...; timeout=20` of silence, so never
        // sooner after an event or the opening.
        Api::Flychat => Heartbeat {
            frame: b"event: keep-alive\ndata:\n\n",
            every: config.flychat_keepalive,
        },
    }
}

/// An SSE comment line: keeps proxies from timing the stream out and finds dead peers.
pub const SSE_COMMENT_HEARTBEAT: &[u8] = b":\n\n";

/// The `reset` event of a stream of `api` that resumes past events history no longer covers. Only native streams
/// replay from the core history (the compatible APIs' events are ephemeral, and their streams start fresh), so
/// every API answers with the native event.
pub fn replay_reset(api: Api, websocket: bool, notice: &ResetNotice) -> Vec<u8> {
    match api {
        Api::Native | Api::Pipely | Api::NodeSse | Api::Flychat | Api::WsPush | Api::Keker => {
            native::reset_frame(websocket, notice)
        }
    }
}

/// What a stream gets when one of its channels is deleted.
pub enum ChannelLoss {
    /// Nothing: the stream loses the subscription and stays open, as the compatible APIs' originals do.
    Silent,
    /// A final event (the frame for its format); a stream left with no channel ends after it.
    Final { sse: Frame, ws: Frame },
}

/// What the streams of `api` get when `channel` is deleted; built once per deletion and API, shared by its
/// streams.
pub fn channel_deleted(api: Api, channel: &str) -> ChannelLoss {
    match api {
        Api::Native => native::channel_deleted(channel),
        Api::Pipely | Api::NodeSse | Api::Flychat | Api::WsPush | Api::Keker => ChannelLoss::Silent,
    }
}

/// A stream's last frames when the token that opened it expires: on SSE one event, on WebSocket a message and a
/// close frame.
pub struct TokenExpired {
    pub sse: &'static [u8],
    pub ws: &'static [&'static [u8]],
}

/// What a stream of `api` gets when its token expires. Only native streams are opened with a token (the compatible
/// APIs keep their own rules), so every API answers with the native frames.
pub fn token_expired(api: Api) -> TokenExpired {
    match api {
        Api::Native | Api::Pipely | Api::NodeSse | Api::Flychat | Api::WsPush | Api::Keker => {
            native::TOKEN_EXPIRED
        }
    }
}

/// A stream of `api` has ended (its connection closed) and the worker has taken it out of the channel table; the
/// API updates its own bookkeeping (presence, members, sessions).
pub fn stream_closed(api: Api, client_id: &str, channels: &[SubscribedChannel], ctx: &mut Ctx) {
    match api {
        Api::Pipely => pipely::stream_closed(client_id, channels, ctx),
        Api::NodeSse => node_sse::stream_closed(client_id, ctx),
        Api::Keker => keker::stream_closed(client_id, channels, ctx),
        Api::WsPush => ws_push::stream_closed(client_id, ctx),
        // Native presence is the channel table's; flychat keeps nothing per stream.
        Api::Native | Api::Flychat => {}
    }
}

/// Once a second, on one worker, with the Redis broker: each compatible API renews the expiry of the shared state
/// this node owns (`broker::shared`), so that what a dead node owned is gone within `--broker-node-ttl`.
pub fn refresh_shared(ctx: &mut Ctx) {
    let broker = ctx.broker;
    let Some(shared) = broker.shared() else {
        return;
    };
    pipely::refresh_shared(shared, ctx);
    node_sse::refresh_shared(shared, ctx);
    flychat::refresh_shared(shared, ctx);
    ws_push::refresh_shared(shared, ctx);
    keker::refresh_shared(shared, ctx);
}
