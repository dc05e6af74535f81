//! WS-PushServer (JensOstertag/WS-PushServer), docs/PROTOCOLS.md §4: channels created over HTTP with a secret token,
//! WebSocket clients that subscribe and unsubscribe over their socket, and pushes to all subscribers of a channel
//! or to listed client uuids. One listener serves both of the original's ports: a request that asks for a
//! WebSocket upgrade is one on any path; every other request goes to the HTTP routes.
//!
//! Mapping onto the core: a WS-PushServer channel `c` is the core channel `ws-push/c` (any UTF-8 name, the empty
//! one included; native names cannot contain `/`). A client's uuid is its stream's client id, so a push with
//! recipients is a targeted event. A push is one unretained event whose shared part is the end of the
//! CLIENT_PUSH JSON (`"pushMessage":{..}}}`), made once; each client's stream keeps the beginning, which names
//! its uuid and channels (`Session::prefix`, rebuilt when they change), and the connection joins header,
//! beginning and end in its vectored write.
//!
//! Shared state (`WsPush`, behind its own lock): the channels with their tokens, and the uuids of open clients.
//! Channel admin, pushes and subscriptions take it for their checks and the core call that goes with them, so a
//! push never reaches a channel deleted before it, and a subscription never lands in a deleted channel.
//!
//! The original's bugs, fixed: a foreign uuid subscribes nobody (the 403 ends the handling); a repeated
//! subscribe neither duplicates the channel nor the deliveries; names and bodies are UTF-8 and `Content-length`
//! counts bytes, so non-ASCII names are neither mangled nor truncated; tokens come from the OS's secure random
//! source; `/sysadmin` names channels, never tokens; a closed client is forgotten. Bounds: channels count against
//! `--max-channels`, a connection's subscriptions against `--max-subscriptions`. A subscribe or unsubscribe
//! without `uuid` acts for the sender itself (the README's own examples and the bundled client omit it; rule 3).
//!
//! On several nodes (`--broker redis://…`) the channels, tokens and uuids live in Redis instead, so that every
//! node answers alike (`cluster`); this node's state then only records its own clients.
//!
//! Files: this one holds the HTTP routes, the one-node state and the WebSocket side; `cluster` the same routes'
//! Redis path; `schema` recognises the original's JSON messages and builds its envelopes; `client.js` is the
//! original's client script, served as is.

mod cluster;
mod schema;

use schema::{channel_limit, data_str, envelope, error, not_found, server_ack, Kind};

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use serde_json::Value;

use super::json_text::{push_string, Style};
use super::{
    Action, ChannelChange, CloseReply, Ctx, Heard, Ping, Refusal, Request, Stream, WsAnswer,
    WsRules,
};
use crate::channels::{NewEvent, Resume, SubscribedChannel, Subscription, TableError};
use crate::config::{Api, Config};
use crate::http::response::{reason, DateCache};
use crate::message::{ws_text_frame, EventId, Frame, Wire};
use crate::secret::constant_time_eq;
use crate::ws::frame as ws_frame;
use crate::ws::handshake;

/// The core channel of a WS-PushServer channel is this prefix and its name.
const CORE_PREFIX: &str = "ws-push/";

/// Length of a channel token, and the alphabet the original draws it from.
const TOKEN_LEN: usize = 128;
const TOKEN_ALPHABET: &[u8] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.+-*#@:";

/// The client bundled at `/js/pushserver.js` (spout's own; see the file).
const CLIENT_JS: &[u8] = include_bytes!("client.js");

/// A WS-PushServer client's session: its uuid, its channels in subscription order, and the beginning of its
/// CLIENT_PUSH messages.
#[derive(Debug)]
pub struct Session {
    uuid: Box<str>,
    /// Subscribed channels, in the order subscribed.
    channels: Vec<Joined>,
    /// `{"messageType":"CLIENT_PUSH",...,"data":{"uuid":..,"subscribedChannels":[..],` (see the module doc).
    prefix: Frame,
}

impl Session {
    pub fn new(uuid: &str) -> Session {
        let mut session = Session {
            uuid: uuid.into(),
            channels: Vec::new(),
            prefix: Frame::from(&b""[..]),
        };
        session.rebuild_prefix();
        session
    }

    pub fn prefix(&self) -> &Frame {
        &self.prefix
    }

    fn rebuild_prefix(&mut self) {
        let mut out = Vec::with_capacity(96 + self.uuid.len());
        out.extend_from_slice(
            b"{\"messageType\":\"CLIENT_PUSH\",\"code\":200,\"message\":\"Push Message\",\"data\":",
        );
        self.push_client_data(&mut out);
        out.push(b',');
        self.prefix = Frame::from(out);
    }

    /// `{"uuid":..,"subscribedChannels":[..]` without the closing brace: the data of a CLIENT_ACK or the start
    /// of a CLIENT_PUSH's.
    fn push_client_data(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"uuid\":");
        push_string(out, &self.uuid, Style::Gson);
        out.extend_from_slice(b",\"subscribedChannels\":[");
        for (i, joined) in self.channels.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            push_string(out, &joined.name, Style::Gson);
        }
        out.push(b']');
    }

    /// `{"messageType":"CLIENT_ACK","code":200,"message":<message>,"data":{"uuid":..,"subscribedChannels":[..]}}`.
    fn ack(&self, message: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(b"{\"messageType\":\"CLIENT_ACK\",\"code\":200,\"message\":");
        push_string(&mut out, message, Style::Gson);
        out.extend_from_slice(b",\"data\":");
        self.push_client_data(&mut out);
        out.extend_from_slice(b"}}");
        out
    }

    /// A deleted channel silently leaves the session (the client is not told, as in the original).
    pub fn lose_channel(&mut self, core_name: &str) {
        let before = self.channels.len();
        self.channels.retain(|joined| &*joined.core != core_name);
        if self.channels.len() != before {
            self.rebuild_prefix();
        }
    }

    /// What a subscribe or unsubscribe of `name` (the channel's current `generation`) will do, decided before
    /// anything changes.
    fn plan(&self, subscribe: bool, name: &str, generation: u64, max: usize) -> Plan {
        let held = self.channels.iter().position(|j| &*j.name == name);
        let current = held
            .and_then(|at| self.channels.get(at))
            .is_some_and(|j| j.generation == generation);
        if subscribe && current {
            // Subscribing twice changes nothing (the original listed the channel twice and delivered twice).
            return Plan::Ack;
        }
        // Unsubscribing, or the session still lists an older channel of this name (deleted, the worker not yet
        // told): it leaves that one.
        let kept = self.channels.len() - usize::from(held.is_some());
        Plan::Change {
            leave: held,
            join: subscribe && kept < max,
            refused: subscribe && kept >= max,
        }
    }
}

/// A channel a session is subscribed to.
#[derive(Debug)]
struct Joined {
    name: Arc<str>,
    /// The generation of the channel it joined, so a client still listed in a deleted channel is not taken for a
    /// subscriber of its re-creation.
    generation: u64,
    /// Its core channel.
    core: Arc<str>,
}

/// What a subscribe or unsubscribe does to a session (`Session::plan`).
enum Plan {
    /// Already subscribed: only the ack.
    Ack,
    Change {
        /// The session's entry of that name, which it leaves.
        leave: Option<usize>,
        /// It joins the channel.
        join: bool,
        /// It would join, but holds `--max-subscriptions` channels.
        refused: bool,
    },
}

/// WS-PushServer's shared bookkeeping (see the module doc).
#[derive(Default)]
pub struct WsPush {
    state: Mutex<State>,
    /// On several nodes: this run of this node, which owns its clients and the channels created through it in
    /// Redis (`cluster`).
    owner: OnceLock<String>,
}

#[derive(Default)]
struct State {
    channels: HashMap<Arc<str>, ChannelEntry>,
    /// Uuids of open clients (on several nodes, of this node's).
    clients: HashSet<Box<str>>,
    /// Gives each created channel a generation, so a client still listed in a deleted channel is not taken
    /// for a subscriber of its re-creation.
    generations: u64,
    /// On several nodes: when this node next renews what it owns in Redis.
    next_refresh: Option<Instant>,
    /// On several nodes: uuids registered by upgrades that wait for Redis's answer, since when. One whose
    /// connection closed before the answer came is never taken: `cluster::refresh` takes it out of Redis.
    opening: HashMap<Box<str>, Instant>,
    /// On several nodes: the broker's error count at the last refresh, and whether this node's clients are to be
    /// registered again once Redis is within reach (`cluster::refresh`).
    broker_errors: u64,
    rejoin: bool,
}

struct ChannelEntry {
    token: Box<str>,
    generation: u64,
}

impl WsPush {
    fn lock(&self) -> MutexGuard<'_, State> {
        crate::sync::lock(&self.state)
    }

    /// This run's owner name in Redis: the node's name and a random part.
    fn owner(&self, shared: &dyn crate::broker::shared::Shared) -> String {
        let run = self.owner.get_or_init(cluster::new_run);
        format!("{}/{run}", shared.node())
    }
}

// ---- HTTP ------------------------------------------------------------------------------------------------------

/// The contexts of the original's JDK server; a request goes to the longest one its path starts with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    Create,
    Ping,
    Push,
    Delete,
    Sysadmin,
    Script,
}

const CONTEXTS: &[(&[u8], Route)] = &[
    (b"/channel/create", Route::Create),
    (b"/channel/ping", Route::Ping),
    (b"/push", Route::Push),
    (b"/channel/delete", Route::Delete),
    (b"/sysadmin", Route::Sysadmin),
    (b"/js/pushserver.js", Route::Script),
];

/// The context of `path`: prefix match, the longest wins, the method is never looked at (as the JDK server).
fn find_route(path: &[u8]) -> Option<Route> {
    CONTEXTS
        .iter()
        .filter(|(context, _)| path.starts_with(context))
        .max_by_key(|(context, _)| context.len())
        .map(|(_, route)| *route)
}

pub fn handle(req: &Request, ctx: &mut Ctx) -> Action {
    if handshake::is_websocket_upgrade(req.header("upgrade")) {
        return upgrade(req, ctx);
    }
    let close = !req.head.keep_alive || ctx.draining;
    let Some(route) = find_route(req.path()) else {
        return Action::Respond {
            bytes: jdk_reply(404, "No context found for request", &[]),
            close: true,
        };
    };
    let answered = match route {
        Route::Script => Some((200, CLIENT_JS.to_vec())),
        Route::Sysadmin => sysadmin(ctx),
        Route::Create | Route::Ping | Route::Push | Route::Delete => action(route, req, ctx),
    };
    let Some((status, body)) = answered else {
        return Action::Await;
    };
    Action::Respond {
        bytes: answer(status, &body, close, req.is_head()),
        close,
    }
}

/// An answer of the original's handlers: no Content-Type, and the JDK's lower-case `Content-length`, in bytes.
/// A HEAD request gets the head alone (RFC 9110 §9.3.2), so the connection's framing stays intact.
fn answer(status: u16, body: &[u8], close: bool, head_only: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 64);
    out.extend_from_slice(format!("HTTP/1.1 {status} {}\r\n", reason(status)).as_bytes());
    out.extend_from_slice(format!("Content-length: {}\r\n", body.len()).as_bytes());
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(body);
    }
    out
}

/// What the JDK server itself answers when no handler runs (`ServerImpl.sendReply`): an HTML line, and the
/// connection closed.
fn jdk_reply(status: u16, message: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let body = format!("<h1>{status} {}</h1>{message}", reason(status));
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Length: {}\r\nContent-Type: text/html\r\nConnection: close\r\n",
        reason(status),
        body.len()
    );
    for (name, value) in extra {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(&body);
    out.into_bytes()
}

/// The answer to a refusal of the connection layer, as the JDK server answers what it refuses itself.
pub fn refusal(refusal: Refusal, _date: &DateCache) -> Vec<u8> {
    match refusal {
        Refusal::Http(e) => jdk_reply(e.status(), e.message(), &[]),
        Refusal::Timeout => jdk_reply(408, "The request did not arrive in time.", &[]),
        Refusal::Busy => jdk_reply(
            503,
            "The server is at its connection limit.",
            &[("Retry-After", "1")],
        ),
        Refusal::PeerLimit => jdk_reply(
            503,
            "Too many connections from this address.",
            &[("Retry-After", "1")],
        ),
        Refusal::BodyBudget => jdk_reply(
            503,
            "The server is reading as many request bodies as it takes at once.",
            &[("Retry-After", "1")],
        ),
    }
}

/// `/channel/create`, `/channel/ping`, `/push`, `/channel/delete`: the body is checked against the endpoint's
/// schema, then the channel is looked up (404) before its token is checked. `None` while the request waits for
/// Redis.
fn action(route: Route, req: &Request, ctx: &mut Ctx) -> Option<(u16, Vec<u8>)> {
    let parsed: Result<Value, _> = if req.body.trim_ascii().is_empty() {
        // The original's JSON reader takes an empty body for "no value", which no schema matches.
        Ok(Value::Null)
    } else {
        serde_json::from_slice(req.body)
    };
    let Ok(value) = parsed else {
        let raw = String::from_utf8_lossy(req.body);
        return Some((400, error(400, "Bad Request", Some(&raw))));
    };
    let kind = match route {
        Route::Create => Kind::Create,
        Route::Ping => Kind::Ping,
        Route::Push => Kind::Push,
        _ => Kind::Delete,
    };
    let channel = data_str(&value, "channel").filter(|_| kind.matches(&value));
    let Some(channel) = channel else {
        return Some((400, error(400, "Bad Request", Some("Invalid message"))));
    };
    let token = value
        .get("data")
        .and_then(|d| d.get("channelToken"))
        .and_then(Value::as_str);
    let broker = ctx.broker;
    match broker.shared() {
        None => Some(action_here(kind, channel, token, &value, ctx)),
        Some(shared) => cluster::action(shared, kind, channel, token, &value, ctx),
    }
}

/// `action` on one node.
fn action_here(
    kind: Kind,
    channel: &str,
    token: Option<&str>,
    value: &Value,
    ctx: &mut Ctx,
) -> (u16, Vec<u8>) {
    let apps = ctx.apps;
    let mut state = apps.ws_push.lock();
    if kind == Kind::Create {
        return create(&mut state, channel, ctx);
    }
    let Some(entry) = state.channels.get(channel) else {
        return (404, not_found(channel));
    };
    let authorized = token.is_some_and(|t| constant_time_eq(t.as_bytes(), entry.token.as_bytes()));
    match (kind, token, authorized) {
        // Only a ping tells a missing token apart (the README's "null to know whether the channel exists").
        (Kind::Ping, None, _) => (
            401,
            error(401, "Unauthorized", Some("No channel token provided")),
        ),
        (_, _, false) => (
            403,
            error(403, "Forbidden", Some("Channel token is invalid")),
        ),
        (Kind::Ping, _, true) => (200, server_ack("OK", channel, None)),
        (Kind::Delete, _, true) => {
            state.channels.remove(channel);
            ctx.local.delete_now(&core_name(channel));
            (200, server_ack("Deleted", channel, None))
        }
        (_, _, true) => push(value, channel, ctx),
    }
}

fn create(state: &mut State, channel: &str, ctx: &Ctx) -> (u16, Vec<u8>) {
    if state.channels.contains_key(channel) {
        let details = format!("A WebSocketChannel called \"{channel}\" already exists");
        return (409, error(409, "Conflict", Some(&details)));
    }
    if state.channels.len() >= ctx.config.max_channels {
        return (503, channel_limit());
    }
    let Some(token) = new_token() else {
        return (500, error(500, "Internal Server Error", None));
    };
    state.generations += 1;
    let answer = server_ack("Created", channel, Some(&token));
    state.channels.insert(
        channel.into(),
        ChannelEntry {
            token: token.into(),
            generation: state.generations,
        },
    );
    (200, answer)
}

/// `/push` with a valid token: one event for the channel's subscribers, or for the listed ones among them.
fn push(value: &Value, channel: &str, ctx: &mut Ctx) -> (u16, Vec<u8>) {
    let recipients = recipients(value);
    let event = NewEvent {
        channel: core_name(channel).into(),
        to: (!recipients.is_empty()).then(|| recipients.into_boxed_slice()),
        wire: Some(Wire::WebSocketTail(Frame::from(push_tail(value, channel)))),
        ephemeral: true,
        ..NewEvent::default()
    };
    match ctx.local.publish_now(vec![event], ctx.wall, ctx.now) {
        Ok(_) => {
            ctx.counters.published += 1;
            (200, server_ack("Sent", channel, None))
        }
        Err(e) => {
            if e == TableError::Overloaded {
                ctx.counters.overloaded += 1;
            }
            let details = "The server is too far behind to take more messages; retry shortly";
            (503, error(503, "Service Unavailable", Some(details)))
        }
    }
}

/// A push's listed recipients, each once, in lower case (`UUID.fromString` compares them case-insensitively;
/// spout's are lower case); none: every subscriber.
fn recipients(value: &Value) -> Vec<Box<str>> {
    let mut recipients: Vec<Box<str>> = Vec::new();
    let listed = value
        .get("data")
        .and_then(|d| d.get("recipients"))
        .and_then(Value::as_array);
    for uuid in listed.into_iter().flatten().filter_map(Value::as_str) {
        let uuid: Box<str> = uuid.to_ascii_lowercase().into();
        if !recipients.contains(&uuid) {
            recipients.push(uuid);
        }
    }
    recipients
}

/// The shared end of a push's CLIENT_PUSH messages (see the module doc).
fn push_tail(value: &Value, channel: &str) -> Vec<u8> {
    let message = data_str(value, "message").unwrap_or_default();
    let mut tail = Vec::with_capacity(40 + channel.len() + message.len());
    tail.extend_from_slice(b"\"pushMessage\":{\"channel\":");
    push_string(&mut tail, channel, Style::Gson);
    tail.extend_from_slice(b",\"message\":");
    push_string(&mut tail, message, Style::Gson);
    tail.extend_from_slice(b"}}}");
    tail
}

/// `/sysadmin`: channel names and counts, never tokens. `None` while the request waits for Redis.
fn sysadmin(ctx: &mut Ctx) -> Option<(u16, Vec<u8>)> {
    let broker = ctx.broker;
    if let Some(shared) = broker.shared() {
        return cluster::sysadmin(shared, ctx);
    }
    let state = ctx.apps.ws_push.lock();
    let mut names: Vec<&str> = state.channels.keys().map(|n| &**n).collect();
    names.sort_unstable();
    Some((200, sysadmin_body(&names, state.clients.len())))
}

/// The SERVER_SYSADMIN envelope of `names` (sorted) and a count of clients.
fn sysadmin_body(names: &[&str], clients: usize) -> Vec<u8> {
    envelope("SERVER_SYSADMIN", 200, "OK", |out| {
        out.extend_from_slice(b"{\"channels\":[");
        for (i, name) in names.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            push_string(out, name, Style::Gson);
        }
        out.extend_from_slice(b"],\"channelsAmount\":");
        out.extend_from_slice(names.len().to_string().as_bytes());
        out.extend_from_slice(b",\"clientsAmount\":");
        out.extend_from_slice(clients.to_string().as_bytes());
        out.extend_from_slice(b"}");
    })
}

fn core_name(channel: &str) -> String {
    format!("{CORE_PREFIX}{channel}")
}

/// A channel token: `TOKEN_LEN` characters of the original's alphabet, from the OS's secure random source
/// (rejection sampling, so every character is equally likely). `None` if the OS has no randomness to give.
fn new_token() -> Option<String> {
    // Bytes below the largest multiple of the alphabet's size map evenly onto it.
    let limit = (256 / TOKEN_ALPHABET.len() * TOKEN_ALPHABET.len()) as u8;
    let mut token = String::with_capacity(TOKEN_LEN);
    let mut random = [0u8; 64];
    while token.len() < TOKEN_LEN {
        getrandom::getrandom(&mut random).ok()?;
        for byte in random.iter().filter(|b| **b < limit) {
            if token.len() == TOKEN_LEN {
                break;
            }
            let index = usize::from(*byte) % TOKEN_ALPHABET.len();
            token.push(char::from(*TOKEN_ALPHABET.get(index)?));
        }
    }
    Some(token)
}

/// A version 4 uuid from the OS's secure random source (RFC 9562 §5.4), lower case.
fn new_uuid() -> Option<String> {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes).ok()?;
    bytes[6] = (bytes[6] & 0x0F) | 0x40;
    bytes[8] = (bytes[8] & 0x3F) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Some(format!(
        "{}-{}-{}-{}-{}",
        hex.get(0..8)?,
        hex.get(8..12)?,
        hex.get(12..16)?,
        hex.get(16..20)?,
        hex.get(20..32)?
    ))
}

// ---- WebSocket -------------------------------------------------------------------------------------------------

/// A WebSocket upgrade on any path, answered as Java-WebSocket does, then the CLIENT_ACK "Connected" with the
/// client's new uuid.
fn upgrade(req: &Request, ctx: &mut Ctx) -> Action {
    let accept = match handshake::validate(&req.websocket_upgrade()) {
        Ok(accept) => accept,
        Err(e) => {
            log::debug!("ws-push: bad upgrade: {e}");
            return Action::Respond {
                bytes: upgrade_failure(),
                close: true,
            };
        }
    };
    if ctx.draining {
        return Action::Respond {
            bytes: jdk_reply(503, "The server is shutting down.", &[("Retry-After", "1")]),
            close: true,
        };
    }
    let broker = ctx.broker;
    let uuid = match broker.shared() {
        None => {
            let mut state = ctx.apps.ws_push.lock();
            let mut uuid = None;
            // A collision of 122 random bits will not happen, but a uuid must name one client.
            for _ in 0..4 {
                if let Some(candidate) = new_uuid().filter(|u| !state.clients.contains(u.as_str()))
                {
                    state.clients.insert(candidate.as_str().into());
                    uuid = Some(candidate);
                    break;
                }
            }
            uuid
        }
        Some(shared) => match cluster::open_client(shared, ctx) {
            None => return Action::Await,
            Some(Ok(uuid)) => uuid,
            Some(Err(_)) => {
                return Action::Respond {
                    bytes: jdk_reply(
                        503,
                        "The shared state did not answer in time.",
                        &[("Retry-After", "1")],
                    ),
                    close: true,
                }
            }
        },
    };
    let Some(uuid) = uuid else {
        return Action::Respond {
            bytes: jdk_reply(500, "No uuid could be drawn.", &[]),
            close: true,
        };
    };
    let mut opening = Vec::with_capacity(320);
    // Java-WebSocket's head: its own status text and `Server`, fields in its (sorted) order.
    for part in [
        "HTTP/1.1 101 Web Socket Protocol Handshake\r\nConnection: Upgrade\r\nDate: ",
        std::str::from_utf8(ctx.date.get()).unwrap_or_default(),
        "\r\nSec-WebSocket-Accept: ",
        &accept,
        "\r\nServer: TooTallNate Java-WebSocket\r\nUpgrade: websocket\r\n\r\n",
    ] {
        opening.extend_from_slice(part.as_bytes());
    }
    opening.extend_from_slice(&ws_text_frame(&Session::new(&uuid).ack("Connected")));
    Action::Stream(Box::new(Stream {
        api: Api::WsPush,
        opening,
        // No channel until the client subscribes over the socket.
        subscription: Subscription {
            channels: Vec::new(),
            head: EventId::ZERO,
            replay: None,
        },
        client_id: uuid.into(),
        websocket: true,
        expires: None,
    }))
}

/// Java-WebSocket's answer to a handshake it does not accept (and `Sec-WebSocket-Version: 13`, which tells a
/// client with another version what to retry with).
fn upgrade_failure() -> Vec<u8> {
    let status = "404 WebSocket Upgrade Failure";
    let body = format!("<html><head></head><body><h1>{status}</h1></body></html>");
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html\r\nServer: TooTallNate Java-WebSocket\r\n\
         Sec-WebSocket-Version: {}\r\nContent-Length: {}\r\n\r\n{body}",
        handshake::VERSION,
        body.len()
    )
    .into_bytes()
}

/// A text message from a client: subscribe and unsubscribe are answered; server-side and outgoing messages are
/// ignored; anything else is an ERROR to the sender.
pub fn ws_message(
    text: &str,
    client_id: &str,
    channels: &[SubscribedChannel],
    session: &mut Session,
    ctx: &mut Ctx,
) -> WsAnswer {
    let Ok(value) = serde_json::from_str::<Value>(text) else {
        return reply(error(400, "Bad JSON", Some(text)));
    };
    let subscribe = match Kind::of(&value) {
        None => return reply(error(400, "Invalid message", Some(text))),
        Some(Kind::Subscribe) => true,
        Some(Kind::Unsubscribe) => false,
        Some(_) => return WsAnswer::default(),
    };
    let channel = data_str(&value, "channel").unwrap_or_default();
    let uuid = value
        .get("uuid")
        .and_then(Value::as_str)
        .map(str::to_ascii_lowercase);
    let foreign = uuid.filter(|u| **u != *session.uuid);
    let broker = ctx.broker;
    if let Some(shared) = broker.shared() {
        let foreign = foreign.as_deref();
        return cluster::ws_message(
            shared, subscribe, channel, foreign, client_id, channels, session, ctx,
        );
    }
    let apps = ctx.apps;
    let state = apps.ws_push.lock();
    let Some(entry) = state.channels.get(channel) else {
        return reply(not_found(channel));
    };
    if let Some(uuid) = foreign {
        let details = if state.clients.contains(uuid.as_str()) {
            // The original went on to subscribe that other client; spout stops here.
            "The given UUID does not belong to this WebSocket connection"
        } else {
            "The given UUID does not belong to any WebSocket connection"
        };
        return reply(error(403, "Forbidden", Some(details)));
    }
    let core: Arc<str> = core_name(channel).into();
    let plan = session.plan(
        subscribe,
        channel,
        entry.generation,
        ctx.config.max_subscriptions,
    );
    let joined = Joined {
        name: channel.into(),
        generation: entry.generation,
        core: Arc::clone(&core),
    };
    // The lock is held through the table's change, so a subscription never lands in a deleted channel.
    let answer = apply(plan, joined, channels, client_id, session, ctx, |ctx| {
        ctx.table
            .subscribe(ctx.worker, &[&core], client_id, Resume::Fresh, ctx.peer)
            .map_err(|_| channel_limit())
    });
    drop(state);
    answer
}

/// A message's answer: one text frame.
fn reply(json: Vec<u8>) -> WsAnswer {
    WsAnswer {
        reply: ws_text_frame(&json),
        ..WsAnswer::default()
    }
}

/// Carries out `plan` for the channel `joined`: leaves the session's entry of its name in the table, then joins
/// with `join` (which answers the error to send when it cannot), and acks with the session's channels.
fn apply(
    plan: Plan,
    joined: Joined,
    channels: &[SubscribedChannel],
    client_id: &str,
    session: &mut Session,
    ctx: &mut Ctx,
    join: impl FnOnce(&mut Ctx) -> Result<Subscription, Vec<u8>>,
) -> WsAnswer {
    let (leave, joins, refused) = match plan {
        Plan::Ack => return reply(session.ack("Subscribed")),
        Plan::Change {
            leave,
            join,
            refused,
        } => (leave, join, refused),
    };
    let mut answer = WsAnswer::default();
    if let Some(at) = leave.filter(|at| *at < session.channels.len()) {
        let left = session.channels.remove(at);
        let subscribed = channels
            .iter()
            .filter(|c| c.incarnation != 0 && *c.name == *left.core)
            .cloned()
            .collect::<Vec<_>>();
        ctx.table.unsubscribe(ctx.worker, &subscribed, client_id);
        answer.changes.push(ChannelChange::Leave(left.core));
    }
    session.rebuild_prefix();
    if refused {
        let details = format!(
            "A connection may subscribe to at most {} channels (--max-subscriptions)",
            ctx.config.max_subscriptions
        );
        answer.reply = ws_text_frame(&error(400, "Bad Request", Some(&details)));
        return answer;
    }
    if joins {
        match join(ctx) {
            Ok(subscription) => {
                answer
                    .changes
                    .extend(subscription.channels.into_iter().map(ChannelChange::Join));
                session.channels.push(joined);
                session.rebuild_prefix();
            }
            Err(json) => {
                answer.reply = ws_text_frame(&json);
                return answer;
            }
        }
    }
    answer.reply = ws_text_frame(&session.ack(if joins { "Subscribed" } else { "Unsubscribed" }));
    answer
}

/// A client's liveness, as Java-WebSocket's lost-connection timer: an empty ping every `--ws-push-ping`, and a
/// drop without a close frame once the last pong is older than `--ws-push-timeout`.
pub fn ws_rules(config: &Config) -> WsRules {
    WsRules {
        ping: Some(Ping {
            frame: ws_frame::PING,
            every: config.ws_push_ping,
        }),
        ping_quiet_only: false,
        ping_while_heard_within: config.ws_push_timeout,
        drop_after: config.ws_push_timeout,
        heard_on: Heard::Pong,
        close_reply: CloseReply::Echo,
    }
}

/// A client closed (the worker already took its subscriptions out of the table): its uuid is free.
pub fn stream_closed(client_id: &str, ctx: &mut Ctx) {
    ctx.apps.ws_push.lock().clients.remove(client_id);
    if let Some(shared) = ctx.broker.shared() {
        cluster::client_closed(shared, client_id, &ctx.apps.ws_push);
    }
}

/// Renews the expiry of the shared state this node owns (see `api::hooks::refresh_shared`): its run, which its
/// clients and the channels created through it live as long as (`cluster`).
pub fn refresh_shared(shared: &dyn crate::broker::shared::Shared, ctx: &mut Ctx) {
    cluster::refresh(shared, &ctx.apps.ws_push, ctx);
}

#[cfg(test)]
mod tests {
    use super::schema::is_uuid;
    use super::*;
    use serde_json::json;

    #[test]
    fn each_message_is_named_by_the_first_schema_it_matches() {
        let uuid = "f897e837-0b5c-4f3a-9d2e-1a2b3c4d5e6f";
        let cases = [
            (
                json!({"messageType":"CLIENT_ACTION","uuid":uuid,"action":"SUBSCRIBE","data":{"channel":"c"}}),
                Some(Kind::Subscribe),
            ),
            (
                json!({"messageType":"CLIENT_ACTION","action":"SUBSCRIBE","data":{"channel":"c"}}),
                Some(Kind::Subscribe),
            ),
            (
                json!({"messageType":"CLIENT_ACTION","uuid":"nope","action":"SUBSCRIBE","data":{"channel":"c"}}),
                None,
            ),
            (
                json!({"messageType":"CLIENT_ACTION","action":"UNSUBSCRIBE","data":{"channel":""}}),
                Some(Kind::Unsubscribe),
            ),
            (
                json!({"messageType":"CLIENT_ACTION","action":"SUBSCRIBE","data":{"channel":1}}),
                None,
            ),
            (
                json!({"messageType":"ERROR","code":400,"message":"m","data":{"errorDetails":null}}),
                Some(Kind::Error),
            ),
            (
                json!({"messageType":"ERROR","code":"400","message":"m","data":{"errorDetails":null}}),
                None,
            ),
            (
                json!({"messageType":"CLIENT_ACK","code":200,"message":"m","data":{"uuid":uuid,"subscribedChannels":[]}}),
                Some(Kind::ClientAck),
            ),
            (
                json!({"messageType":"CLIENT_PUSH","code":200,"message":"m","data":{"uuid":uuid,"subscribedChannels":["a"],"pushMessage":{"channel":"a","message":"x"}}}),
                Some(Kind::ClientPush),
            ),
            (
                json!({"messageType":"SERVER_ACTION","action":"CREATE_CHANNEL","data":{"channel":"c"}}),
                Some(Kind::Create),
            ),
            (
                json!({"messageType":"SERVER_ACTION","action":"CREATE_CHANNEL","data":{"channel":"c","channelToken":3}}),
                None,
            ),
            (
                json!({"messageType":"SERVER_ACTION","action":"PING_CHANNEL","data":{"channel":"c","channelToken":null}}),
                Some(Kind::Ping),
            ),
            (
                json!({"messageType":"SERVER_ACTION","action":"PING_CHANNEL","data":{"channel":"c"}}),
                None,
            ),
            (
                json!({"messageType":"SERVER_ACTION","action":"DELETE_CHANNEL","data":{"channel":"c","channelToken":"t"}}),
                Some(Kind::Delete),
            ),
            (
                json!({"messageType":"SERVER_ACTION","action":"PUSH_MESSAGE","data":{"channel":"c","channelToken":"t","recipients":[uuid],"message":"m"}}),
                Some(Kind::Push),
            ),
            (
                json!({"messageType":"SERVER_ACTION","action":"PUSH_MESSAGE","data":{"channel":"c","channelToken":null,"recipients":[],"message":"m"}}),
                None,
            ),
            (
                json!({"messageType":"SERVER_ACTION","action":"PUSH_MESSAGE","data":{"channel":"c","channelToken":"t","recipients":["x"],"message":"m"}}),
                None,
            ),
            (
                json!({"messageType":"SERVER_ACTION","action":"PUSH_MESSAGE","data":{"channel":"c","channelToken":"t","recipients":[],"message":5}}),
                None,
            ),
            (
                json!({"messageType":"SERVER_ACK","code":200,"message":"OK","data":{"channel":"c","channelToken":null}}),
                Some(Kind::ServerAck),
            ),
            (
                json!({"messageType":"SERVER_SYSADMIN","code":200,"message":"OK","data":{"channels":[],"channelsAmount":0,"clientsAmount":1}}),
                Some(Kind::Sysadmin),
            ),
            (json!([1, 2]), None),
            (json!("text"), None),
            (Value::Null, None),
        ];
        for (value, kind) in cases {
            assert_eq!(Kind::of(&value), kind, "{value}");
        }
    }

    #[test]
    fn contexts_match_by_prefix_and_the_longest_wins() {
        assert_eq!(find_route(b"/push"), Some(Route::Push));
        assert_eq!(find_route(b"/pushx"), Some(Route::Push));
        assert_eq!(find_route(b"/push/anything"), Some(Route::Push));
        assert_eq!(find_route(b"/channel/create/x"), Some(Route::Create));
        assert_eq!(find_route(b"/channel"), None);
        assert_eq!(find_route(b"/"), None);
        assert_eq!(find_route(b"/js/pushserver.jsx"), Some(Route::Script));
    }

    #[test]
    fn tokens_and_uuids_have_their_shape() {
        let token = new_token().expect("randomness");
        assert_eq!(token.len(), TOKEN_LEN);
        assert!(token.bytes().all(|b| TOKEN_ALPHABET.contains(&b)));
        assert_ne!(new_token(), Some(token));
        let uuid = new_uuid().expect("randomness");
        assert!(is_uuid(&uuid), "{uuid}");
        assert_eq!(uuid.as_bytes()[14], b'4', "version 4: {uuid}");
        assert!(
            matches!(uuid.as_bytes()[19], b'8' | b'9' | b'a' | b'b'),
            "{uuid}"
        );
        assert!(!is_uuid("f897e837-0b5c-4f3a-9d2e-1a2b3c4d5e6"));
        assert!(!is_uuid("f897e837x0b5c-4f3a-9d2e-1a2b3c4d5e6f"));
        assert!(is_uuid("F897E837-0B5C-4F3A-9D2E-1A2B3C4D5E6F"));
    }

    #[test]
    fn the_prefix_and_a_tail_make_the_push_message() {
        let mut session = Session::new("f897e837-0b5c-4f3a-9d2e-1a2b3c4d5e6f");
        for (name, generation) in [("news", 1), ("caf\u{e9}", 2)] {
            session.channels.push(Joined {
                name: name.into(),
                generation,
                core: core_name(name).into(),
            });
        }
        session.rebuild_prefix();
        let mut whole = session.prefix().to_vec();
        whole.extend_from_slice(br#""pushMessage":{"channel":"news","message":"hi"}}}"#);
        let value: Value = serde_json::from_slice(&whole).expect("JSON");
        assert_eq!(
            value,
            json!({"messageType":"CLIENT_PUSH","code":200,"message":"Push Message","data":{
                "uuid":"f897e837-0b5c-4f3a-9d2e-1a2b3c4d5e6f","subscribedChannels":["news","caf\u{e9}"],
                "pushMessage":{"channel":"news","message":"hi"}}})
        );
        session.lose_channel("ws-push/news");
        let ack: Value = serde_json::from_slice(&session.ack("Subscribed")).expect("JSON");
        assert_eq!(ack["data"]["subscribedChannels"], json!(["caf\u{e9}"]));
    }
}
