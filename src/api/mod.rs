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
//! This lives above `http/` (a protocol layer every API uses) so that no import runs back up. One concept per
//! file: this one routes a request to its API; `respond` builds answers; `hooks` holds the per-API answers the
//! connection and the worker ask for (refusals, heartbeats, reset and deleted events, a stream's end);
//! `ws_session` is the contract between a WebSocket stream and its API.

pub mod flychat;
pub mod json_text;
pub mod keker;
pub mod native;
pub mod node_sse;
pub mod pipely;
pub mod ws_push;

mod hooks;
mod respond;
mod ws_session;

use std::time::{Instant, SystemTime};

use crate::auth::verdict::HookVerdict;
use crate::auth::Auth;
use crate::broker::local::LocalBroker;
use crate::broker::{Ask, Broker, BrokerAnswer, Waiter};
use crate::channels::{ChannelTable, Subscription};
use crate::config::{Api, Config};
use crate::http::request::{Head, Method};
use crate::http::response::DateCache;
use crate::ids::IdSource;
use crate::metrics::{Counters, Registry};
use crate::reload::Live;
use crate::ws::handshake::Upgrade;

pub use hooks::{
    channel_deleted, heartbeat, refresh_shared, refusal, replay_reset, stream_closed,
    token_expired, ChannelLoss, Heartbeat, Refusal, TokenExpired, SSE_COMMENT_HEARTBEAT,
};
pub use respond::{answer, closes, keep_alive_field, respond};
pub use ws_session::{
    ws_channel_lost, ws_message, ws_rules, ChannelChange, CloseReply, Heard, Ping, WsAnswer,
    WsPeer, WsRules, WsSession,
};

/// What an API handler may use: the worker's view of the server for one request.
pub struct Ctx<'a> {
    pub now: Instant,
    pub wall: SystemTime,
    pub worker: usize,
    pub config: &'a Config,
    /// The reloadable values in force (the publish key).
    pub live: &'a Live,
    /// Who may subscribe and publish (`--auth`): token keys and public channels.
    pub auth: &'a Auth,
    pub table: &'a ChannelTable,
    /// The native API's channels: this node's, or every node's through Redis (`--broker`).
    pub broker: &'a dyn Broker,
    /// This node's channels, which the compatible APIs publish to and delete (their state is this node's).
    pub local: &'a LocalBroker,
    pub registry: &'a Registry,
    /// The status stream (`--status`): its viewers' subscription and opening.
    pub status: &'a crate::status::Status,
    pub apps: &'a Apps,
    /// The address of the client whose request or message is handled (its PROXY header's, behind a `+proxy`
    /// listener); `None` outside a connection's handlers. Channels it creates count against it
    /// (`--max-channels-per-ip`).
    pub peer: Option<std::net::IpAddr>,
    /// Open connections per client address (`--max-connections-per-ip`), shared by all workers.
    pub peers: &'a crate::peers::Peers,
    /// The budget of request bodies being read, shared by all workers.
    pub bodies: &'a std::sync::Arc<crate::conn::body_budget::BodyBudget>,
    pub date: &'a DateCache,
    pub draining: bool,
    pub counters: &'a mut Counters,
    /// Source of server-assigned client ids (per worker).
    pub ids: &'a mut IdSource,
    /// Where the broker's or the hook's answer to this request goes if the API parks it (`Action::Await`).
    pub waiter: Waiter,
    /// The broker's answer, when a parked request is handled again.
    pub answer: Option<BrokerAnswer>,
    /// The auth hook's verdict on this request, once it has one (`--auth hook`); kept while the request parks
    /// again for the broker (`conn::Parked`).
    pub verdict: Option<HookVerdict>,
}

impl Ctx<'_> {
    /// Where the broker's answer to this request goes, and the answer when the request is handled again with
    /// it: what every broker operation is given.
    pub fn ask(&mut self) -> Ask<'_> {
        Ask {
            waiter: self.waiter,
            answer: &mut self.answer,
        }
    }
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
    /// The API asked the broker or the auth hook for something (with `ctx.waiter`): park the request, and handle
    /// it again with the answer (`ctx.answer`, `ctx.verdict`).
    Await,
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
    /// When the token that opened the stream expires: the stream ends then, with its API's `token_expired`
    /// frames. `None`: it never expires.
    pub expires: Option<Instant>,
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
