//! The public APIs and the router between them.
//!
//! A listener is bound to one API (`--listen ADDR=API`); a native listener also serves each compatible API under
//! its path prefix (`/pipely/subscribe` is Pipely's `/subscribe`), which the API sees as its `mount`. Each API maps
//! its wire format onto the same core operations (subscribe through the channel table, publish through the
//! broker, channel admin) and answers errors in its own style. APIs never reach into each other or into the event
//! loop: they get a `Ctx` and a complete `Request`, and return an `Action` that the connection carries out; when
//! one of their streams ends the worker tells them (`stream_closed`).
//!
//! Channel namespaces: a compatible API names its core channels `{api}/{name}` (`pipely/abcdefghijkl`). Native
//! channel names cannot contain `/`, so no API can reach another's channels, and `channel_api` tells from a core
//! name whose channel it is.
//!
//! Shared state of the compatible APIs (Pipely's passwords and members, flychat's rooms, keker's cache) lives in
//! `Apps`, one lock per API, held only for that API's bookkeeping and the core calls that must be atomic with it.
//! Lock order: an API's lock, then the channel table's; never the other way round.
//!
//! This lives above `http/` (a protocol layer every API uses) so that no import runs back up.

pub mod flychat;
pub mod json_text;
pub mod keker;
pub mod native;
pub mod node_sse;
pub mod pipely;
pub mod ws_push;

use std::time::{Duration, Instant, SystemTime};

use std::sync::Arc;

use crate::broker::Broker;
use crate::channels::{ChannelTable, SubscribedChannel, Subscription};
use crate::config::{Api, Config};
use crate::http::request::{Head, Method};
use crate::http::response::{write_answer, write_response, DateCache, Response};
use crate::http::HttpError;
use crate::message::Frame;
use crate::metrics::{Counters, Registry};
use crate::ws::frame as ws_frame;
use crate::ws::handshake::Upgrade;

/// What an API handler may use: the worker's view of the server for one request.
pub struct Ctx<'a> {
    pub now: Instant,
    pub wall: SystemTime,
    pub worker: usize,
    pub config: &'a Config,
    pub table: &'a ChannelTable,
    pub broker: &'a dyn Broker,
    pub registry: &'a Registry,
    pub apps: &'a Apps,
    pub date: &'a DateCache,
    pub draining: bool,
    pub counters: &'a mut Counters,
    /// Source of server-assigned client ids (per worker).
    pub ids: &'a mut IdSource,
}

/// A complete request: its parsed head, the bytes the head's spans point into, and the decoded body.
pub struct Request<'a> {
    pub head: &'a Head,
    pub buf: &'a [u8],
    pub body: &'a [u8],
    /// Where the handling API is mounted: empty at the root of a listener bound to it, its prefix (`/pipely`) on a
    /// native listener. Links and redirects an API sends start with it.
    pub mount: &'static str,
}

impl Request<'_> {
    /// The percent-encoded path below the mount point (`/` when the request named the mount point itself).
    pub fn path(&self) -> &[u8] {
        match self.head.path(self.buf).get(self.mount.len()..) {
            Some(b"") | None => b"/",
            Some(path) => path,
        }
    }

    pub fn query(&self) -> &[u8] {
        self.head.query(self.buf)
    }

    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.head.header(self.buf, name)
    }

    /// The parts of this request a WebSocket handshake checks (`ws::handshake::validate`).
    pub fn websocket_upgrade(&self) -> Upgrade<'_> {
        Upgrade {
            get: self.head.method == Method::Get,
            http11: self.head.minor_version >= 1,
            connection: self.head.header_lines(self.buf, "connection").collect(),
            version: self.header("sec-websocket-version"),
            key: self.header("sec-websocket-key"),
        }
    }

    pub fn is_head(&self) -> bool {
        self.head.method == Method::Head
    }
}

/// What the connection does with a request.
pub enum Action {
    /// Queue this response; close the connection after it when `close`.
    Respond { bytes: Vec<u8>, close: bool },
    /// Become an event stream: queue `opening` (response head and first bytes), then live and replayed events.
    Stream(Box<Stream>),
}

/// A subscription the API has registered in the channel table; the worker adds it to its hub.
pub struct Stream {
    /// The API whose stream this is: it is told when the stream ends, and picks its heartbeat.
    pub api: Api,
    pub opening: Vec<u8>,
    pub subscription: Subscription,
    pub client_id: Box<str>,
    /// A WebSocket stream (the opening is a 101 answer); else SSE.
    pub websocket: bool,
}

/// The bookkeeping of the compatible APIs, shared by all workers (see the module doc).
#[derive(Default)]
pub struct Apps {
    /// flychat's rooms: their last ids and kept messages.
    pub flychat: flychat::Rooms,
    pub keker: keker::Keker,
    pub ws_push: ws_push::WsPush,
    pub pipely: pipely::Pipely,
    pub node_sse: node_sse::NodeSse,
}

/// An answer in a compatible API's style: its fields exactly as given, then `Content-Length` (not on a 204) and the
/// connection field: `close` when the connection ends after it (the client asked, or the server drains),
/// `keep-alive` for an HTTP/1.0 client that keeps it (RFC 9112 §9.3). A `HEAD` request gets the head only.
pub fn answer(
    req: &Request,
    ctx: &Ctx,
    status: u16,
    fields: &[(&str, &str)],
    body: &[u8],
) -> Action {
    let close = closes(req, ctx);
    let connection = if close {
        Some("close")
    } else {
        keep_alive_field(req, close).map(|(_, value)| value)
    };
    let mut bytes = Vec::with_capacity(200 + body.len());
    write_answer(
        &mut bytes,
        ctx.date,
        status,
        fields,
        body,
        connection,
        req.is_head(),
    );
    Action::Respond { bytes, close }
}

/// Handles a complete request on a listener bound to `api`; a native listener hands requests under a compatible
/// API's prefix to that API.
pub fn handle(api: Api, req: &mut Request, ctx: &mut Ctx) -> Action {
    ctx.counters.requests += 1;
    let api = match api {
        Api::Native => mounted(req),
        other => other,
    };
    match api {
        Api::Native => native::handle(req, ctx),
        Api::Pipely => pipely::handle(req, ctx),
        Api::NodeSse => node_sse::handle(req, ctx),
        Api::Flychat => flychat::handle(req, ctx),
        Api::Keker => keker::handle(req, ctx),
        Api::WsPush => ws_push::handle(req, ctx),
    }
}

/// The prefix under which a native listener serves `api`.
pub fn prefix(api: Api) -> &'static str {
    match api {
        Api::Native => "",
        Api::Pipely => "/pipely",
        Api::NodeSse => "/node-sse",
        Api::Flychat => "/flychat",
        Api::WsPush => "/ws-push",
        Api::Keker => "/keker",
    }
}

/// The API a request on a native listener is for, from its path prefix; sets `req.mount` to that prefix.
fn mounted(req: &mut Request) -> Api {
    let path = req.head.path(req.buf);
    for api in Api::ALL.into_iter().filter(|&api| api != Api::Native) {
        if let Some(rest) = path.strip_prefix(prefix(api).as_bytes()) {
            if rest.is_empty() || rest.first() == Some(&b'/') {
                req.mount = prefix(api);
                return api;
            }
        }
    }
    Api::Native
}

/// The API a core channel belongs to: a compatible API names its channels after itself (`pipely/abcdefghijkl`,
/// keker's broadcast channel `keker/`, node-sse's presence channel `node-sse presence`); a native name holds
/// neither `/` nor a space.
pub fn channel_api(core: &str) -> Api {
    Api::ALL
        .into_iter()
        .filter(|&api| api != Api::Native)
        .find(|api| {
            core.strip_prefix(api.as_str())
                .is_some_and(|rest| rest.starts_with(['/', ' ']))
        })
        .unwrap_or(Api::Native)
}

/// A stream of `api` has ended (its connection closed) and the worker has taken it out of the channel table; the
/// API updates its own bookkeeping (presence, members, sessions).
pub fn stream_closed(api: Api, client_id: &str, channels: &[SubscribedChannel], ctx: &mut Ctx) {
    match api {
        Api::Pipely => pipely::stream_closed(client_id, channels, ctx),
        Api::NodeSse => node_sse::stream_closed(client_id, ctx),
        Api::Keker => keker::stream_closed(channels, ctx),
        Api::WsPush => ws_push::stream_closed(client_id, ctx),
        Api::Native | Api::Flychat => {
            let _ = (client_id, channels, ctx);
        }
    }
}

/// What a quiet SSE stream of an API is sent, and when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Heartbeat {
    pub frame: &'static [u8],
    pub every: Duration,
    /// Sent once the stream has had `every` of silence, timed per stream (the connection's deadline, pushed back
    /// by every event queued on it); else on the worker's fixed schedule, to every stream with nothing queued.
    pub after_silence: bool,
}

/// What a quiet SSE stream of `api` is sent, and when.
pub fn heartbeat(api: Api, config: &Config) -> Heartbeat {
    match api {
        // PROTOCOLS.md, rule 3: comment lines are a harmless extension on the compatible streams.
        Api::Native | Api::Pipely | Api::NodeSse | Api::WsPush | Api::Keker => Heartbeat {
            frame: SSE_COMMENT_HEARTBEAT,
            every: config.heartbeat,
            after_silence: false,
        },
        // What Pushpin sends on flychat's streams after `Grip-Keep-Alive: ...; timeout=20` of silence (PROTOCOLS.md
        // §3: "after 20 s of silence"), so never sooner after an event or the opening.
        Api::Flychat => Heartbeat {
            frame: b"event: keep-alive\ndata:\n\n",
            every: config.flychat_keepalive,
            after_silence: true,
        },
    }
}

/// An SSE comment line: keeps proxies from timing the stream out and finds dead peers.
pub const SSE_COMMENT_HEARTBEAT: &[u8] = b":\n\n";

// ---- WebSocket streams: what each API keeps per connection, and how it answers its clients ---------------------

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
        WsSession::Native => {
            let _ = (text, channels, ctx);
            WsAnswer::default()
        }
        WsSession::Keker(session) => keker::ws_message(text, client_id, session, ctx),
        WsSession::WsPush(session) => ws_push::ws_message(text, client_id, channels, session, ctx),
    }
}

/// A stream of a compatible API lost `channel` because the channel was deleted (it stays open): the API updates
/// the session (WS-PushServer's list of subscribed channels).
pub fn ws_channel_lost(session: &mut WsSession, channel: &str) {
    match session {
        // Native streams get a final `deleted` event from the worker; keker channels are never deleted.
        WsSession::Native | WsSession::Keker(_) => {
            let _ = channel;
        }
        WsSession::WsPush(session) => session.lose_channel(channel),
    }
}

/// Why the connection layer refuses a request before any API sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    Http(HttpError),
    /// No complete head, or a stalled body, within `--request-timeout`.
    Timeout,
    /// `--max-connections` reached or out of file descriptors.
    Busy,
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

/// Whether the connection ends after this answer: the client asked, or the server is draining.
pub fn closes(req: &Request, ctx: &Ctx) -> bool {
    !req.head.keep_alive || ctx.draining
}

/// `Connection: keep-alive` for an HTTP/1.0 request whose connection stays open: a 1.0 client keeps it only when
/// the response says so (RFC 9112 §9.3, RFC 7230 §A.1.2). HTTP/1.1 persists by default and needs nothing.
pub fn keep_alive_field(req: &Request, close: bool) -> Option<(&'static str, &'static str)> {
    (!close && req.head.minor_version == 0).then_some(("Connection", "keep-alive"))
}

/// A complete answer in spout's own head layout (`Date`, `Content-Type`, then `headers`; see `answer` for an
/// original's exact field order), plus what the connection needs: `Connection: close` when it ends after this
/// answer, `Connection: keep-alive` for an HTTP/1.0 client it stays open for; no body for HEAD.
pub fn respond(
    req: &Request,
    ctx: &Ctx,
    status: u16,
    content_type: Option<&str>,
    body: &[u8],
    headers: &[(&str, &str)],
) -> Action {
    let close = closes(req, ctx);
    let mut headers = headers.to_vec();
    headers.extend(keep_alive_field(req, close));
    let mut out = Vec::with_capacity(body.len() + 256);
    let resp = Response {
        status,
        content_type,
        headers: &headers,
        body,
        close,
        head_only: req.is_head(),
    };
    write_response(&mut out, ctx.date, &resp);
    Action::Respond { bytes: out, close }
}

/// Server-assigned client ids: 16 hex digits from a per-worker xorshift generator seeded from the OS.
pub struct IdSource {
    state: u64,
}

impl IdSource {
    pub fn new() -> IdSource {
        let mut seed = [0u8; 8];
        if getrandom::getrandom(&mut seed).is_err() {
            // Uniqueness, not secrecy, is what client ids need; the clock is an acceptable fallback seed.
            seed = (SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64))
            .to_le_bytes();
        }
        IdSource {
            state: u64::from_le_bytes(seed) | 1,
        }
    }

    /// xorshift64*: full period over non-zero states, so values from one worker never repeat within 2^64 draws.
    pub fn next_u64(&mut self) -> u64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn next_client_id(&mut self) -> Box<str> {
        format!("{:016x}", self.next_u64()).into()
    }
}

impl Default for IdSource {
    fn default() -> Self {
        IdSource::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_channel_names_tell_their_api() {
        let cases: [(&str, Api); 12] = [
            ("news", Api::Native),
            ("pipely", Api::Native),
            ("keker-x", Api::Native),
            ("a:b@c", Api::Native),
            ("pipely/6162636465666768696a6b6c", Api::Pipely),
            ("node-sse/room", Api::NodeSse),
            ("node-sse/", Api::NodeSse),
            ("node-sse presence", Api::NodeSse),
            ("flychat/lobby", Api::Flychat),
            ("ws-push/alerts", Api::WsPush),
            ("keker/token", Api::Keker),
            ("keker/", Api::Keker),
        ];
        for (name, api) in cases {
            assert_eq!(channel_api(name), api, "{name}");
        }
    }
}
