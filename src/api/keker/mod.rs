//! keker (zarplata/keker), docs/PROTOCOLS.md §5: WebSocket sessions that authenticate with `HELLO <token>`, and HTTP
//! publishing to a token (`PUT /v1/publish` with a `Token` header) or to everyone (`PUT /v1/broadcast`).
//!
//! Mapping onto the core: a session that says `HELLO tok` subscribes, over its open socket, to the channels
//! `keker/tok` (its token) and `keker/` (broadcasts; no token is empty, so the name is free). A publish is one
//! unretained event whose WebSocket text frame is made once and shared by every session of the token.
//!
//! Shared state (`Keker`, behind its own lock): live sessions per token and the cache of messages published to a
//! token with no session. Publishing and `HELLO` take the lock for their whole decision and the core call that
//! goes with it, so a message is either cached and then handed to the first session that says `HELLO`, or
//! published live after that session's subscription: never lost in between, never delivered twice. No socket I/O
//! and no waiting happen under the lock (the original's server-wide deadlock came from a blocking send under it).
//!
//! That is one node's state. With `--broker redis://…` the same state lives in Redis instead, shared by every
//! node (`cluster`); each handler picks the path by `ctx.broker.shared()`, and the one-node path is unchanged.
//!
//! The cache keeps each message for `--keker-cache-ttl` on its own (the original dropped a token's whole entry
//! when its last-but-one message expired), and at most `CACHE_MAX_MESSAGES` messages and `CACHE_MAX_BYTES` bytes
//! over all tokens, the oldest going first: anyone may publish to any token, so the cache must be bounded.
//!
//! Differences from the original, each deliberate: POST publishes like PUT (rule 3); `/v1/stats` and
//! `/v1/stats/sessions` count live sessions only (rule 2); a body that is not UTF-8 goes out as a valid text
//! frame, invalid bytes replaced as in the JSON answer; spout's own limits (`--max-body`, `--max-channels`, ...)
//! apply, answered as Go's `net/http` answers its own refusals.

mod cluster;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::json_text::{go_lossy, push_string, Style};
use super::{
    respond, Action, ChannelChange, CloseReply, Ctx, Heard, Ping, Refusal, Request, Stream,
    WsAnswer, WsRules,
};
use crate::channels::{NewEvent, Resume, Subscription, TableError};
use crate::config::{Api, Config};
use crate::http::request::Method;
use crate::http::response::{write_response, DateCache, Response};
use crate::message::{ws_text_frame, EventId, Frame, Wire};
use crate::ws::handshake;

/// Most messages the cache holds for tokens without a session, over all tokens.
pub const CACHE_MAX_MESSAGES: usize = 10_000;
/// Most bytes (encoded frames) the cache holds over all tokens: 16 MiB.
pub const CACHE_MAX_BYTES: usize = 16 * 1024 * 1024;

/// The core channel of a token's sessions.
const TOKEN_CHANNEL_PREFIX: &str = "keker/";
/// The core channel every authenticated session joins, for broadcasts (no token is empty).
const BROADCAST_CHANNEL: &str = "keker/";

/// keker's ping after `HELLO`: payload `ping` (RFC 6455 §5.5.2).
const PING_PING: &[u8] = &[0x89, 0x04, b'p', b'i', b'n', b'g'];
/// Closes a session whose `HELLO` the channel table refused (`--max-channels`): 1013 "try again later".
const CLOSE_TRY_AGAIN: &[u8] = &[0x88, 0x02, 0x03, 0xF5];

const NOT_FOUND: &[u8] = b"404 page not found";

/// A keker session: `None` until its `HELLO`.
#[derive(Debug, Default)]
pub struct Session {
    token: Option<Box<str>>,
}

/// keker's shared bookkeeping (see the module doc).
#[derive(Default)]
pub struct Keker {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Open sessions that said `HELLO`, per token; a token with none is absent.
    sessions: HashMap<Box<str>, usize>,
    cache: Cache,
    /// On several nodes (`cluster`), this node's sessions (client id → token), which it renews in Redis.
    owned: HashMap<Box<str>, Box<str>>,
    /// On several nodes, this node's sessions whose `HELLO` waits for Redis (client id → token): one that closes
    /// meanwhile is removed from Redis all the same, whenever its `HELLO` runs.
    waiting: HashMap<Box<str>, Box<str>>,
    /// On several nodes, when this node next renews its sessions.
    next_refresh: Option<Instant>,
}

/// Messages for tokens without a session, in publish order.
#[derive(Default)]
struct Cache {
    entries: VecDeque<Cached>,
    /// Cached messages per token, so that a `HELLO` with nothing waiting costs no scan.
    per_token: HashMap<Box<[u8]>, usize>,
    bytes: usize,
}

struct Cached {
    token: Box<[u8]>,
    frame: Frame,
    at: Instant,
}

impl Cache {
    /// Drops what is older than `ttl`: each message on its own.
    fn expire(&mut self, now: Instant, ttl: Duration) {
        while self.entries.front().is_some_and(|e| e.at + ttl <= now) {
            self.pop_oldest();
        }
    }

    fn pop_oldest(&mut self) {
        if let Some(oldest) = self.entries.pop_front() {
            self.forget(&oldest);
        }
    }

    fn forget(&mut self, entry: &Cached) {
        self.bytes -= entry.frame.len();
        if let Some(count) = self.per_token.get_mut(&entry.token) {
            *count -= 1;
            if *count == 0 {
                self.per_token.remove(&entry.token);
            }
        }
    }

    fn push(&mut self, token: &[u8], frame: Frame, now: Instant) {
        self.bytes += frame.len();
        *self.per_token.entry(token.into()).or_insert(0) += 1;
        self.entries.push_back(Cached {
            token: token.into(),
            frame,
            at: now,
        });
        while self.entries.len() > CACHE_MAX_MESSAGES || self.bytes > CACHE_MAX_BYTES {
            self.pop_oldest();
        }
    }

    /// Removes and returns the messages waiting for `token`, in publish order.
    fn take(&mut self, token: &[u8]) -> Vec<Frame> {
        if !self.per_token.contains_key(token) {
            return Vec::new();
        }
        let mut taken = Vec::new();
        self.entries.retain(|entry| {
            let mine = &*entry.token == token;
            if mine {
                taken.push(Frame::clone(&entry.frame));
            }
            !mine
        });
        self.per_token.remove(token);
        self.bytes -= taken.iter().map(|f| f.len()).sum::<usize>();
        taken
    }
}

impl Keker {
    fn lock(&self) -> MutexGuard<'_, State> {
        crate::sync::lock(&self.state)
    }
}

/// The routes, matched on the exact path and method (gin with `HandleMethodNotAllowed` off).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    Subscribe,
    Publish,
    Broadcast,
    Stats,
    StatsSessions,
    Health,
}

const ROUTES: &[(Method, &[u8], Route)] = &[
    (Method::Get, b"/v1/subscribe", Route::Subscribe),
    (Method::Put, b"/v1/publish", Route::Publish),
    // Rule 3: the README never names the method, so clients that POST only gain.
    (Method::Post, b"/v1/publish", Route::Publish),
    (Method::Put, b"/v1/broadcast", Route::Broadcast),
    (Method::Get, b"/v1/stats", Route::Stats),
    (Method::Get, b"/v1/stats/sessions", Route::StatsSessions),
    (Method::Get, b"/v1/health", Route::Health),
];

fn find_route(method: Method, path: &[u8]) -> Option<Route> {
    ROUTES
        .iter()
        .find(|(m, p, _)| *m == method && *p == path)
        .map(|(_, _, route)| *route)
}

pub fn handle(req: &Request, ctx: &mut Ctx) -> Action {
    let path = req.path();
    let Some(route) = find_route(req.head.method, path) else {
        // gin's trailing-slash redirect: 301 for GET, 307 (method kept) otherwise.
        let trimmed = path.strip_suffix(b"/").filter(|p| !p.is_empty());
        if let Some(trimmed) = trimmed.filter(|p| find_route(req.head.method, p).is_some()) {
            return redirect(req, ctx, trimmed);
        }
        return respond(req, ctx, 404, Some("text/plain"), NOT_FOUND, &[]);
    };
    match route {
        Route::Subscribe => subscribe(req, ctx),
        Route::Publish => publish(req, ctx),
        Route::Broadcast => broadcast(req, ctx),
        Route::Stats | Route::StatsSessions => stats(req, ctx, route),
        Route::Health => json(req, ctx, 200, "/v1/health", JsonData::Text("OK")),
    }
}

/// `GET /v1/stats` and `/v1/stats/sessions`: live sessions, this node's or (on several nodes) every node's.
fn stats(req: &Request, ctx: &mut Ctx, route: Route) -> Action {
    let broker = ctx.broker;
    let sorted = match broker.shared() {
        None if route == Route::Stats => {
            let count = ctx.apps.keker.lock().sessions.len();
            return stats_count(req, ctx, count);
        }
        None => {
            let sorted: BTreeMap<Box<str>, usize> = ctx
                .apps
                .keker
                .lock()
                .sessions
                .iter()
                .map(|(token, n)| (token.clone(), *n))
                .collect();
            sorted
        }
        Some(shared) => match cluster::sessions(ctx, shared) {
            Ok(Some(sorted)) => sorted,
            Ok(None) => return Action::Await,
            Err(e) => return cluster::broker_error(req, ctx, e),
        },
    };
    if route == Route::Stats {
        stats_count(req, ctx, sorted.len())
    } else {
        stats_sessions(req, ctx, &sorted)
    }
}

fn stats_count(req: &Request, ctx: &Ctx, count: usize) -> Action {
    let mut data = b"{\"subscribers_count\":".to_vec();
    data.extend_from_slice(count.to_string().as_bytes());
    data.push(b'}');
    json(req, ctx, 200, &request_uri(req), JsonData::Raw(&data))
}

fn stats_sessions(req: &Request, ctx: &Ctx, sorted: &BTreeMap<Box<str>, usize>) -> Action {
    let mut data = b"{\"subscribers_sessions\":{".to_vec();
    for (i, (token, n)) in sorted.iter().enumerate() {
        if i > 0 {
            data.push(b',');
        }
        push_string(&mut data, token, Style::Go);
        data.push(b':');
        data.extend_from_slice(n.to_string().as_bytes());
    }
    data.extend_from_slice(b"}}");
    json(req, ctx, 200, "/v1/stats/sessions", JsonData::Raw(&data))
}

/// The request target as received (path and query), as Go's `Request.RequestURI`.
fn request_uri(req: &Request) -> String {
    let mut uri = String::from_utf8_lossy(req.head.path(req.buf)).into_owned();
    if !req.query().is_empty() {
        uri.push('?');
        uri.push_str(&String::from_utf8_lossy(req.query()));
    }
    uri
}

// ---- WebSocket -------------------------------------------------------------------------------------------------

/// `GET /v1/subscribe`: gorilla/websocket's upgrade, any Origin, no subprotocol. A request that is not a valid
/// upgrade gets gorilla's 400. The session says nothing until the client's `HELLO`.
fn subscribe(req: &Request, ctx: &mut Ctx) -> Action {
    let valid = handshake::is_websocket_upgrade(req.header("upgrade"))
        .then(|| handshake::validate(&req.websocket_upgrade()).ok())
        .flatten();
    let Some(accept) = valid else {
        return respond(
            req,
            ctx,
            400,
            Some("text/plain; charset=utf-8"),
            b"Bad Request\n",
            &[
                ("Sec-Websocket-Version", handshake::VERSION),
                ("X-Content-Type-Options", "nosniff"),
            ],
        );
    };
    if ctx.draining {
        return go_error(req, ctx, 503);
    }
    let mut opening = Vec::with_capacity(160);
    handshake::write_switching_protocols(&mut opening, &accept, &[]);
    // No channel until `HELLO`: the stream joins its token's channels over the open socket.
    let subscription = Subscription {
        channels: Vec::new(),
        head: EventId::ZERO,
        replay: None,
    };
    Action::Stream(Box::new(Stream {
        api: Api::Keker,
        opening,
        subscription,
        client_id: ctx.ids.next_client_id(),
        websocket: true,
        expires: None,
    }))
}

/// The token of a `HELLO` message: the text starts with `HELLO` (case-sensitive) and splits on whitespace into
/// exactly two fields (so `HELLOfoo tok` names `tok`, as in the original).
fn hello_token(text: &str) -> Option<&str> {
    if !text.starts_with("HELLO") {
        return None;
    }
    let mut fields = text.split_whitespace();
    let (_, token) = (fields.next()?, fields.next()?);
    fields.next().is_none().then_some(token)
}

/// A text message from a session: the first valid `HELLO` authenticates it; everything else is ignored.
pub fn ws_message(text: &str, client_id: &str, session: &mut Session, ctx: &mut Ctx) -> WsAnswer {
    if session.token.is_some() {
        return WsAnswer::default();
    }
    let Some(token) = hello_token(text) else {
        return WsAnswer::default();
    };
    let broker = ctx.broker;
    if let Some(shared) = broker.shared() {
        return cluster::hello(token, client_id, session, shared, ctx);
    }
    let channel = format!("{TOKEN_CHANNEL_PREFIX}{token}");
    let mut state = ctx.apps.keker.lock();
    let subscribed = ctx.table.subscribe(
        ctx.worker,
        &[&channel, BROADCAST_CHANNEL],
        client_id,
        Resume::Fresh,
        ctx.peer,
    );
    let subscription = match subscribed {
        Ok(subscription) => subscription,
        Err(e) => {
            drop(state);
            log::debug!("keker: HELLO refused: {}", e.as_str());
            return WsAnswer {
                reply: CLOSE_TRY_AGAIN.to_vec(),
                close: true,
                ..WsAnswer::default()
            };
        }
    };
    *state.sessions.entry(token.into()).or_insert(0) += 1;
    state.cache.expire(ctx.now, ctx.config.keker_cache_ttl);
    let cached = state.cache.take(token.as_bytes());
    drop(state);
    session.token = Some(token.into());
    // The first ping goes out at once; cached messages follow in publish order, before any live one.
    let mut reply = PING_PING.to_vec();
    for frame in &cached {
        reply.extend_from_slice(frame);
    }
    hello_answer(reply, subscription)
}

/// A `HELLO`'s answer: `reply` (the first ping, then what was kept for the token), and the session joined to its
/// channels, with its liveness schedule started over.
fn hello_answer(reply: Vec<u8>, subscription: Subscription) -> WsAnswer {
    WsAnswer {
        reply,
        changes: subscription
            .channels
            .into_iter()
            .map(ChannelChange::Join)
            .collect(),
        close: false,
        restart_liveness: true,
        parked: false,
    }
}

/// A keker session's liveness: before `HELLO`, a fixed deadline of `--keker-timeout` that nothing extends; after
/// it, a ping with payload `ping` every half timeout while the last pong is younger than the timeout, and a drop
/// (bare TCP close) once it is 1.5 timeouts old. A client close is answered with 1000.
pub fn ws_rules(session: &Session, config: &Config) -> WsRules {
    let timeout = config.keker_timeout;
    match session.token {
        None => WsRules {
            ping: None,
            ping_quiet_only: false,
            ping_while_heard_within: timeout,
            drop_after: timeout,
            heard_on: Heard::Nothing,
            close_reply: CloseReply::Normal,
        },
        Some(_) => WsRules {
            ping: Some(Ping {
                frame: PING_PING,
                every: timeout / 2,
            }),
            ping_quiet_only: false,
            ping_while_heard_within: timeout,
            drop_after: timeout.saturating_add(timeout / 2),
            heard_on: Heard::Pong,
            close_reply: CloseReply::Normal,
        },
    }
}

/// A session closed (the worker already unsubscribed it from the table): one session fewer for its token.
pub fn stream_closed(
    client_id: &str,
    channels: &[crate::channels::SubscribedChannel],
    ctx: &mut Ctx,
) {
    let broker = ctx.broker;
    if let Some(shared) = broker.shared() {
        return cluster::stream_closed(client_id, shared, ctx);
    }
    let token = channels
        .iter()
        .filter_map(|c| c.name.strip_prefix(TOKEN_CHANNEL_PREFIX))
        .find(|t| !t.is_empty());
    let Some(token) = token else {
        return;
    };
    let mut state = ctx.apps.keker.lock();
    if let Some(count) = state.sessions.get_mut(token) {
        *count -= 1;
        if *count == 0 {
            state.sessions.remove(token);
        }
    }
}

// ---- publishing ------------------------------------------------------------------------------------------------

/// `PUT /v1/publish`: to the sessions of the `Token` header's token, or into the cache when it has none.
fn publish(req: &Request, ctx: &mut Ctx) -> Action {
    let token = req.header("token").unwrap_or_default().trim_ascii();
    let broker = ctx.broker;
    if let Some(shared) = broker.shared() {
        return cluster::publish(req, ctx, shared, token);
    }
    let body = go_lossy(req.body);
    let frame = Frame::from(ws_text_frame(body.as_bytes()));
    let mut state = ctx.apps.keker.lock();
    let live = std::str::from_utf8(token)
        .ok()
        .filter(|t| state.sessions.contains_key(*t));
    let Some(live) = live else {
        if !ctx.config.keker_cache_ttl.is_zero() {
            state.cache.expire(ctx.now, ctx.config.keker_cache_ttl);
            state.cache.push(token, frame, ctx.now);
        }
        drop(state);
        let message = format!("recipient {} not found", go_lossy(token));
        return json(req, ctx, 404, &message, JsonData::Text(&body));
    };
    let channel = format!("{TOKEN_CHANNEL_PREFIX}{live}");
    let published = ctx
        .local
        .publish_now(vec![event(&channel, frame)], ctx.wall, ctx.now);
    drop(state);
    match published {
        Ok(_) => {
            ctx.counters.published += 1;
            json(req, ctx, 200, "message published", JsonData::Text(&body))
        }
        Err(e) => table_error(req, ctx, e),
    }
}

/// `PUT /v1/broadcast`: to every session of every token; N counts tokens. Nothing is cached.
fn broadcast(req: &Request, ctx: &mut Ctx) -> Action {
    let broker = ctx.broker;
    if let Some(shared) = broker.shared() {
        return cluster::broadcast(req, ctx, shared);
    }
    let body = go_lossy(req.body);
    let frame = Frame::from(ws_text_frame(body.as_bytes()));
    let state = ctx.apps.keker.lock();
    let tokens = state.sessions.len();
    let published = if tokens > 0 {
        ctx.local
            .publish_now(vec![event(BROADCAST_CHANNEL, frame)], ctx.wall, ctx.now)
            .map(|_| ())
    } else {
        Ok(())
    };
    drop(state);
    match published {
        Ok(()) => {
            ctx.counters.published += 1;
            let message = format!("message sent to {tokens} recipients");
            json(req, ctx, 200, &message, JsonData::Text(&body))
        }
        Err(e) => table_error(req, ctx, e),
    }
}

/// An unretained event carrying keker's text frame (the native fields stay empty: no native stream can subscribe
/// to a `keker/` channel).
fn event(channel: &str, frame: Frame) -> NewEvent {
    NewEvent {
        channel: channel.into(),
        wire: Some(Wire::WebSocket(frame)),
        ephemeral: true,
        ..NewEvent::default()
    }
}

fn table_error(req: &Request, ctx: &mut Ctx, e: TableError) -> Action {
    if e == TableError::Overloaded {
        ctx.counters.overloaded += 1;
    }
    // The original's answer to a failure: status, the error text as `message`, `data` null.
    json(req, ctx, 503, e.as_str(), JsonData::Null)
}

// ---- answers ---------------------------------------------------------------------------------------------------

/// The `data` of a JSON answer.
enum JsonData<'a> {
    Text(&'a str),
    /// Already-encoded JSON.
    Raw(&'a [u8]),
    Null,
}

/// `{"message":..,"data":..}` and a newline, as Go's `json.Encoder` writes it.
fn json(req: &Request, ctx: &Ctx, status: u16, message: &str, data: JsonData) -> Action {
    let mut body = Vec::with_capacity(64 + message.len());
    body.extend_from_slice(b"{\"message\":");
    push_string(&mut body, message, Style::Go);
    body.extend_from_slice(b",\"data\":");
    match data {
        JsonData::Text(text) => push_string(&mut body, text, Style::Go),
        JsonData::Raw(raw) => body.extend_from_slice(raw),
        JsonData::Null => body.extend_from_slice(b"null"),
    }
    body.extend_from_slice(b"}\n");
    respond(
        req,
        ctx,
        status,
        Some("application/json; charset=utf-8"),
        &body,
        &[],
    )
}

/// gin's trailing-slash redirect, through Go's `http.Redirect`: 301 with a short HTML note for GET, 307 with no
/// body otherwise; `Location` keeps the query.
fn redirect(req: &Request, ctx: &Ctx, path: &[u8]) -> Action {
    let mut location = String::from(req.mount);
    location.push_str(&String::from_utf8_lossy(path));
    if !req.query().is_empty() {
        location.push('?');
        location.push_str(&String::from_utf8_lossy(req.query()));
    }
    if req.head.method == Method::Get {
        let note = format!(
            "<a href=\"{}\">Moved Permanently</a>.\n\n",
            html_escape(&location)
        );
        respond(
            req,
            ctx,
            301,
            Some("text/html; charset=utf-8"),
            note.as_bytes(),
            &[("Location", &location)],
        )
    } else {
        respond(req, ctx, 307, None, b"", &[("Location", &location)])
    }
}

/// Go's `htmlEscape` as `http.Redirect` uses it.
fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A plain-text error as Go's `net/http` writes its own (`400 Bad Request`).
fn go_error(req: &Request, ctx: &Ctx, status: u16) -> Action {
    let body = format!("{status} {}", crate::http::response::reason(status));
    respond(
        req,
        ctx,
        status,
        Some("text/plain; charset=utf-8"),
        body.as_bytes(),
        &[],
    )
}

/// The answer to a refusal of the connection layer, as Go's `net/http` answers what it refuses itself: a plain
/// status line as the body, and the connection closed.
pub fn refusal(refusal: Refusal, date: &DateCache) -> Vec<u8> {
    let status = match refusal {
        Refusal::Http(e) => e.status(),
        Refusal::Timeout => 408,
        Refusal::Busy | Refusal::BodyBudget | Refusal::PeerLimit => 503,
    };
    let body = format!("{status} {}", crate::http::response::reason(status));
    let retry: &[(&str, &str)] = if status == 503 {
        &[("Retry-After", "1")]
    } else {
        &[]
    };
    let mut out = Vec::with_capacity(body.len() + 160);
    write_response(
        &mut out,
        date,
        &Response {
            status,
            content_type: Some("text/plain; charset=utf-8"),
            headers: retry,
            body: body.as_bytes(),
            close: true,
            head_only: false,
        },
    );
    out
}

pub use cluster::refresh_shared;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_needs_the_prefix_and_exactly_two_fields() {
        for (text, token) in [
            ("HELLO user42", Some("user42")),
            ("HELLOfoo tok", Some("tok")),
            ("HELLO\ttab", Some("tab")),
            ("  HELLO x", None),
            ("HELLO a b", None),
            ("HELLO", None),
            ("HELLO ", None),
            ("hello x", None),
            ("PING x", None),
        ] {
            assert_eq!(hello_token(text), token, "{text:?}");
        }
    }

    fn cached(cache: &mut Cache, token: &[u8], text: &str, at: Instant) {
        cache.push(token, Frame::from(text.as_bytes()), at);
    }

    #[test]
    fn the_cache_expires_each_message_on_its_own() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(5);
        let mut cache = Cache::default();
        cached(&mut cache, b"tok", "old", t0);
        cached(&mut cache, b"tok", "new", t0 + Duration::from_secs(3));
        // The original dropped the token's whole entry here, the newer message with it.
        cache.expire(t0 + Duration::from_secs(6), ttl);
        assert_eq!(cache.take(b"tok"), vec![Frame::from(&b"new"[..])]);
        assert!(cache.take(b"tok").is_empty());
        assert_eq!((cache.entries.len(), cache.bytes), (0, 0));
    }

    #[test]
    fn the_cache_gives_messages_in_order_to_their_token_only_and_stays_bounded() {
        let t0 = Instant::now();
        let mut cache = Cache::default();
        cached(&mut cache, b"a", "a1", t0);
        cached(&mut cache, b"b", "b1", t0);
        cached(&mut cache, b"a", "a2", t0);
        let taken: Vec<&[u8]> = vec![b"a1", b"a2"];
        assert_eq!(
            cache.take(b"a"),
            taken.into_iter().map(Frame::from).collect::<Vec<_>>()
        );
        assert_eq!(cache.take(b"b").len(), 1);
        for i in 0..CACHE_MAX_MESSAGES + 10 {
            cached(&mut cache, b"c", &i.to_string(), t0);
        }
        assert_eq!(cache.entries.len(), CACHE_MAX_MESSAGES);
        assert_eq!(cache.per_token.get(&b"c"[..]), Some(&CACHE_MAX_MESSAGES));
        let big = "x".repeat(CACHE_MAX_BYTES / 2 + 1);
        cached(&mut cache, b"d", &big, t0);
        cached(&mut cache, b"d", &big, t0);
        assert!(cache.bytes <= CACHE_MAX_BYTES);
        assert_eq!(cache.take(b"d").len(), 1, "the older big one went first");
    }
}
