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
//! channel names cannot contain `/`, so no API can reach another's channels.
//!
//! Shared state of the compatible APIs (Pipely's passwords and members, flychat's rooms, keker's cache) lives in
//! `Apps`, one lock per API, held only for that API's bookkeeping and the core calls that must be atomic with it.
//! Lock order: an API's lock, then the channel table's; never the other way round.
//!
//! This lives above `http/` (a protocol layer every API uses) so that no import runs back up.

pub mod native;
pub mod node_sse;
pub mod pipely;

use std::time::{Duration, Instant, SystemTime};

use crate::broker::Broker;
use crate::channels::{ChannelTable, SubscribedChannel, Subscription};
use crate::config::{Api, Config, AVAILABLE_APIS};
use crate::http::request::{Head, Method};
use crate::http::response::{write_answer, DateCache};
use crate::http::HttpError;
use crate::metrics::{Counters, Registry};

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
    let close = !req.head.keep_alive || ctx.draining;
    let connection = if close {
        Some("close")
    } else {
        (req.head.minor_version == 0).then_some("keep-alive")
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
        // Not in AVAILABLE_APIS yet: `mounted` and `--listen` never choose them.
        Api::Flychat | Api::WsPush | Api::Keker => native::handle(req, ctx),
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
    for &api in AVAILABLE_APIS.iter().filter(|&&api| api != Api::Native) {
        if let Some(rest) = path.strip_prefix(prefix(api).as_bytes()) {
            if rest.is_empty() || rest.first() == Some(&b'/') {
                req.mount = prefix(api);
                return api;
            }
        }
    }
    Api::Native
}

/// A stream of `api` has ended (its connection closed) and the worker has taken it out of the channel table; the
/// API updates its own bookkeeping (presence, members, sessions).
pub fn stream_closed(api: Api, client_id: &str, channels: &[SubscribedChannel], ctx: &mut Ctx) {
    match api {
        Api::Pipely => pipely::stream_closed(client_id, channels, ctx),
        Api::NodeSse => node_sse::stream_closed(client_id, ctx),
        Api::Native | Api::Flychat | Api::WsPush | Api::Keker => {
            let _ = (client_id, channels, ctx);
        }
    }
}

/// What a quiet SSE stream of `api` is sent, and how often.
pub fn heartbeat(api: Api, config: &Config) -> (&'static [u8], Duration) {
    match api {
        // PROTOCOLS.md, rule 3: comment lines are a harmless extension on the compatible streams.
        Api::Native | Api::Pipely | Api::NodeSse | Api::WsPush | Api::Keker => {
            (SSE_COMMENT_HEARTBEAT, config.heartbeat)
        }
        // What Pushpin sends on flychat's streams after `Grip-Keep-Alive: ...; timeout=20` of silence.
        Api::Flychat => (b"event: keep-alive\ndata:\n\n", config.flychat_keepalive),
    }
}

/// An SSE comment line: keeps proxies from timing the stream out and finds dead peers.
pub const SSE_COMMENT_HEARTBEAT: &[u8] = b":\n\n";

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
        // Not in AVAILABLE_APIS yet: no listener is bound to them.
        Api::Flychat | Api::WsPush | Api::Keker => native::refusal(refusal, date),
    }
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
