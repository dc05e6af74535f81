//! Pipely's API (bene/pipely-server; docs/PROTOCOLS.md §1): channels of twelve-byte ids that clients create by
//! joining, with an optional password fixed by the first joiner, members listed by client id, and events that
//! anyone holding the password publishes. Served at the root of `--listen ADDR=pipely` and under `/pipely` on native listeners.
//!
//! What the original's Go stack shows a client is reproduced here and in the two helpers: gorilla/mux v1.6.2
//! routing (`301` to the cleaned path for `//publish` or `/a/../publish` with the query kept, `404 page not found`,
//! `405` with an empty body for a method mismatch, a trailing slash is another path, `HEAD` is not `GET`),
//! `http.Error` answers (`text/plain; charset=utf-8`, `nosniff`, the text and a newline), `net/url` query
//! parsing and `strings.EqualFold` (`goweb`), and `encoding/json`'s decoding of `/publish` bodies with its error
//! texts (`gojson`).
//!
//! The core does the delivery: a Pipely channel is the core channel `pipely/<hex of the id>` (ids are any twelve
//! bytes after percent-decoding, `é` counting two; the core names channels with UTF-8 text). Every Pipely event is
//! encoded once, by the publisher, as the stream's whole frame `data: <json>\n\n` (`Wire::Sse`), and published
//! `ephemeral`: Pipely has no history. What the core does not know lives in `Pipely`: each channel's password and
//! its members in join order.
//!
//! Ordering: joining, leaving and publishing each take the Pipely lock, and publish into the core under it (lock
//! order: Pipely's, then the channel table's), so Pipely events go out in the order of the member list's changes.
//! A joiner is subscribed and gets its `CLIENT_LIST` (the members, itself last) in its opening bytes; then its
//! `CONNECT` is published, which every member, the joiner included, receives after that `CLIENT_LIST`. A leaving
//! member's stream is unsubscribed by the worker, then `stream_closed` removes it and publishes `DISCONNECT` to the
//! others, or forgets the channel when it was the last (its password goes with it; anyone may create it again).
//! Nothing blocks: the original's broker goroutine could deadlock on its own one-slot queue and then hang every
//! request; here a publish only `try_send`s into worker inboxes (a full inbox answers 503).
//!
//! Deliberate differences (rules 2 and 3 of docs/PROTOCOLS.md): payloads are passed on as compact JSON with their keys
//! in the sent order and numbers exactly as sent (Go sorts keys, rounds numbers through float64 and escapes
//! `<>&`, which gives the same JSON values); `Access-Control-Allow-Origin: *` on every handler's answer to a request
//! with an `Origin` (the original's middleware is unknown; its observed answers to requests without one carry
//! none), and a CORS preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) on a route is answered
//! `204` where mux answered `405`; the stream is delimited by the connection's end instead of chunked encoding
//! (the same body bytes); quiet streams get `:` comment heartbeats (`--heartbeat`). spout's own refusals (a head
//! too large, a body over `--max-body`, the connection limit, a request too slow) are answered as Go's server
//! answers what it refuses itself: `<status> <reason>` as `text/plain; charset=utf-8`, then close. A join that
//! would pass `--max-channels`, or any request while the core is overloaded or draining, gets `503` in
//! `http.Error` style.
//!
//! On several nodes (`--broker redis://…`) the passwords and members are Redis's instead, changed by scripts that
//! also send the presence frames (`shared`); each handler picks its path by `Broker::shared`, and the single-node
//! path above is unchanged.
//!
//! Bounds: a Pipely channel exists only while it has members, and every member is an open stream, so channels and
//! members are bounded by `--max-connections` (and the core channels by `--max-channels`); ids and passwords by
//! `--max-head`.

mod gojson;
mod goweb;
mod shared;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Mutex, MutexGuard};

use super::{answer, Action, Ctx, Refusal, Request, Stream};
use crate::channels::{NewEvent, Resume, SubscribedChannel, TableError};
use crate::config::Api;
use crate::http::request::Method;
use crate::http::response::{reason, write_answer, write_stream_head, DateCache};
use crate::message::{Frame, Wire};

/// Core channel names of Pipely channels start with this.
const CORE_PREFIX: &str = "pipely/";

// The original's error texts (server/errors.go), each followed by a newline on the wire.
const INVALID_CHANNEL_ID: &str = "channel id must be twelve characters long";
const INVALID_CLIENT_ID: &str = "client id must not be shorter than three characters";
const INVALID_PASSWORD: &str = "invalid channel password";
const CLIENT_ID_USED: &str = "client id already used in channel";
const INVALID_EVENT_TYPE: &str = "invalid event type, must not be shorter than one character";
const INVALID_ORIGIN_ID: &str = "origin id must not be shorter than three characters";
const NO_SUCH_CHANNEL: &str = "channel with given id does not exist";
const NOT_FOUND: &str = "404 page not found";

/// The fields of a stream's answer, in Go's order.
const STREAM_FIELDS: [(&str, &str); 4] = [
    ("Access-Control-Allow-Origin", "*"),
    ("Cache-Control", "no-cache"),
    ("Connection", "keep-alive"),
    ("Content-Type", "text/event-stream"),
];

/// Pipely's bookkeeping, shared by all workers (see the module doc).
#[derive(Default)]
pub struct Pipely {
    channels: Mutex<HashMap<Box<[u8]>, Channel>>,
    /// With the Redis broker, the state is Redis's (`shared`): this holds only the members this node's streams are.
    owned: shared::Owned,
}

struct Channel {
    /// Empty for an open channel.
    password: Box<[u8]>,
    /// Client ids in join order, as Go shows them (`goweb::lossy`); unique under `equal_fold`.
    members: Vec<Box<str>>,
}

impl Pipely {
    fn lock(&self) -> MutexGuard<'_, HashMap<Box<[u8]>, Channel>> {
        crate::sync::lock(&self.channels)
    }
}

/// The routes, matched on the percent-decoded, cleaned path as mux does.
#[derive(Clone, Copy)]
enum Route {
    Subscribe,
    Publish,
    Channels,
    Channel,
}

impl Route {
    fn parse(path: &[u8]) -> Option<Route> {
        match path {
            b"/subscribe" => Some(Route::Subscribe),
            b"/publish" => Some(Route::Publish),
            b"/channels" => Some(Route::Channels),
            // `/channel/{channelId}`: one non-empty segment.
            _ => path
                .strip_prefix(b"/channel/")
                .filter(|id| !id.is_empty() && !id.contains(&b'/'))
                .map(|_| Route::Channel),
        }
    }

    fn method(self) -> Method {
        match self {
            Route::Publish => Method::Post,
            Route::Subscribe | Route::Channels | Route::Channel => Method::Get,
        }
    }
}

pub fn handle(req: &Request, ctx: &mut Ctx) -> Action {
    let raw = req.path();
    if raw == b"*" && req.head.method == Method::Options {
        // Go's server answers `OPTIONS *` itself.
        return answer(req, ctx, 200, &[], b"");
    }
    let Some(path) = goweb::decode_path(raw) else {
        // Go's server refuses a request target it cannot parse before any handler runs.
        let bytes = go_server_refusal(400, ctx.date, &[]);
        return Action::Respond { bytes, close: true };
    };
    let clean = goweb::clean_path(&path);
    if clean != path {
        return redirect(req, ctx, &clean);
    }
    let Some(route) = Route::parse(&clean) else {
        return go_error(req, ctx, 404, NOT_FOUND, false);
    };
    if req.head.method != route.method() {
        if req.head.method == Method::Options
            && req.header("origin").is_some()
            && req.header("access-control-request-method").is_some()
        {
            return preflight(req, ctx, route);
        }
        // mux answers a method mismatch itself: no middleware, no body.
        return answer(req, ctx, 405, &[], b"");
    }
    match route {
        Route::Subscribe => subscribe(req, ctx),
        Route::Publish => publish(req, ctx),
        // Empty stubs in the original.
        Route::Channels | Route::Channel => answer(req, ctx, 200, &cors(req), b""),
    }
}

/// mux's redirect of an unclean path: `301`, `Location` the cleaned path (escaped as `net/url` does) with the query
/// as sent, no body.
fn redirect(req: &Request, ctx: &Ctx, clean: &[u8]) -> Action {
    let mut location = String::with_capacity(req.mount.len() + clean.len() + req.query().len() + 1);
    location.push_str(req.mount);
    location.push_str(&goweb::escape_path(clean));
    // `url.String()` keeps a `?` even before an empty query (`ForceQuery`).
    if req.head.query.start > req.head.path.end {
        location.push('?');
        location.push_str(&String::from_utf8_lossy(req.query()));
    }
    answer(req, ctx, 301, &[("Location", &location)], b"")
}

/// The CORS preflight answer spout adds (docs/PROTOCOLS.md rule 3).
fn preflight(req: &Request, ctx: &Ctx, route: Route) -> Action {
    let methods = match route.method() {
        Method::Post => "POST, OPTIONS",
        _ => "GET, OPTIONS",
    };
    let fields = [
        (
            "Access-Control-Allow-Headers",
            "Authorization, Content-Type",
        ),
        ("Access-Control-Allow-Methods", methods),
        ("Access-Control-Allow-Origin", "*"),
        ("Access-Control-Max-Age", "86400"),
    ];
    answer(req, ctx, 204, &fields, b"")
}

// ---- subscribe -------------------------------------------------------------------------------------------------

fn subscribe(req: &Request, ctx: &mut Ctx) -> Action {
    if ctx.draining {
        let text = "the server is shutting down; reconnect to another node";
        return go_error(req, ctx, 503, text, true);
    }
    let query = goweb::Query::parse(req.query());
    let Some(channel_id) = query.get("channelId").filter(|id| id.len() == 12) else {
        return go_error(req, ctx, 400, INVALID_CHANNEL_ID, true);
    };
    let Some(client) = query.get("clientId").filter(|id| id.len() >= 3) else {
        return go_error(req, ctx, 400, INVALID_CLIENT_ID, true);
    };
    let client: Box<str> = goweb::lossy(client).into();
    let password = query.get("password").unwrap_or_default();
    let broker = ctx.broker;
    if let Some(shared) = broker.shared() {
        return shared::join(shared, req, ctx, channel_id, client, password);
    }
    let core = core_name(channel_id);

    let pipely = &ctx.apps.pipely;
    let mut channels = pipely.lock();
    if let Some(channel) = channels.get(channel_id) {
        if !channel.password.is_empty() && *channel.password != *password {
            return go_error(req, ctx, 401, INVALID_PASSWORD, true);
        }
        if channel
            .members
            .iter()
            .any(|m| goweb::equal_fold(m, &client))
        {
            return go_error(req, ctx, 400, CLIENT_ID_USED, true);
        }
    }
    let subscription =
        match ctx
            .table
            .subscribe(ctx.worker, &[&core], &client, Resume::Fresh, ctx.peer)
        {
            Ok(subscription) => subscription,
            Err(e) => return table_error(req, ctx, e),
        };
    let channel = channels
        .entry(channel_id.into())
        .or_insert_with(|| Channel {
            password: password.into(),
            members: Vec::new(),
        });
    channel.members.push(client.clone());
    let channel_json = json_string(&goweb::lossy(channel_id));
    let members: Vec<&str> = channel.members.iter().map(|m| &**m).collect();
    let list = serde_json::to_string(&members).unwrap_or_default();
    let (_, client_list) = event_frame(&channel_json, "CLIENT_LIST", "server", &list);
    let connect = new_event(&core, &channel_json, "CONNECT", &client, "null");
    if let Err(e) = ctx.local.publish_now(vec![connect], ctx.wall, ctx.now) {
        // Undo the join: nobody has seen it yet.
        leave(&mut channels, channel_id, &client);
        ctx.table
            .unsubscribe(ctx.worker, &subscription.channels, &client);
        return table_error(req, ctx, e);
    }
    drop(channels);

    member_stream(ctx, &client_list, subscription, client)
}

/// A joiner's stream: the head, then its `CLIENT_LIST`; its `CONNECT` and what follows come live.
fn member_stream(
    ctx: &Ctx,
    client_list: &[u8],
    subscription: crate::channels::Subscription,
    client: Box<str>,
) -> Action {
    let mut opening = Vec::with_capacity(256 + client_list.len());
    write_stream_head(&mut opening, ctx.date, &STREAM_FIELDS);
    opening.extend_from_slice(client_list);
    Action::Stream(Box::new(Stream {
        api: Api::Pipely,
        opening,
        subscription,
        client_id: client,
        websocket: false,
        expires: None,
    }))
}

/// Takes `client` out of a channel's members; forgets the channel when nobody is left. Returns whether members
/// remain to be told.
fn leave(channels: &mut HashMap<Box<[u8]>, Channel>, id: &[u8], client: &str) -> bool {
    let Some(channel) = channels.get_mut(id) else {
        return false;
    };
    let Some(at) = channel.members.iter().position(|m| **m == *client) else {
        return false;
    };
    channel.members.remove(at);
    if channel.members.is_empty() {
        channels.remove(id);
        return false;
    }
    true
}

/// A Pipely stream ended (the worker has unsubscribed it): the other members get `DISCONNECT`, or the channel is
/// forgotten when it was the last member.
pub fn stream_closed(client_id: &str, channels: &[SubscribedChannel], ctx: &mut Ctx) {
    let broker = ctx.broker;
    if let Some(shared) = broker.shared() {
        return shared::stream_closed(shared, client_id, channels, ctx);
    }
    for sub in channels {
        let Some(id) = channel_id_of(&sub.name) else {
            continue;
        };
        let mut state = ctx.apps.pipely.lock();
        if !leave(&mut state, &id, client_id) {
            continue;
        }
        let channel_json = json_string(&goweb::lossy(&id));
        let disconnect = new_event(&sub.name, &channel_json, "DISCONNECT", client_id, "null");
        if let Err(e) = ctx.local.publish_now(vec![disconnect], ctx.wall, ctx.now) {
            log::warn!(
                "pipely: DISCONNECT of {client_id} on {} not delivered: {}",
                sub.name,
                e.as_str()
            );
        }
    }
}

// ---- publish ---------------------------------------------------------------------------------------------------

fn publish(req: &Request, ctx: &mut Ctx) -> Action {
    let event = match gojson::decode_event(req.body) {
        Ok(event) => event,
        Err(e) => return go_error(req, ctx, 400, &e.to_string(), true),
    };
    if event.channel_id.len() != 12 {
        return go_error(req, ctx, 400, INVALID_CHANNEL_ID, true);
    }
    if event.kind.is_empty() {
        return go_error(req, ctx, 400, INVALID_EVENT_TYPE, true);
    }
    if event.origin_id.len() < 3 {
        return go_error(req, ctx, 400, INVALID_ORIGIN_ID, true);
    }
    let broker = ctx.broker;
    if let Some(shared) = broker.shared() {
        let channel_json = json_string(&event.channel_id);
        let payload = event.payload.as_deref().unwrap_or("null");
        let (_, frame) = event_frame(&channel_json, &event.kind, &event.origin_id, payload);
        return shared::publish(shared, req, ctx, &event.channel_id, frame);
    }
    let channels = ctx.apps.pipely.lock();
    let Some(channel) = channels.get(event.channel_id.as_bytes()) else {
        return go_error(req, ctx, 404, NO_SUCH_CHANNEL, true);
    };
    if !channel.password.is_empty() && !authorized(req, &channel.password) {
        return go_error(req, ctx, 401, INVALID_PASSWORD, true);
    }
    let core = core_name(event.channel_id.as_bytes());
    let channel_json = json_string(&event.channel_id);
    let payload = event.payload.as_deref().unwrap_or("null");
    let new = new_event(&core, &channel_json, &event.kind, &event.origin_id, payload);
    let published = ctx.local.publish_now(vec![new], ctx.wall, ctx.now);
    drop(channels);
    match published {
        Ok(_) => {
            ctx.counters.published += 1;
            answer(req, ctx, 200, &cors(req), b"")
        }
        Err(e) => table_error(req, ctx, e),
    }
}

/// `Authorization` split on single spaces must be exactly `Password` and the channel's password.
fn authorized(req: &Request, password: &[u8]) -> bool {
    authorized_password(req) == Some(password)
}

/// The password `Authorization` gives: the second of exactly two parts split on single spaces, the first
/// `Password`.
fn authorized_password<'q>(req: &'q Request<'_>) -> Option<&'q [u8]> {
    let value = req.header("authorization").unwrap_or_default();
    let mut parts = value.split(|b| *b == b' ');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(b"Password"), Some(given), None) => Some(given),
        _ => None,
    }
}

// ---- events ----------------------------------------------------------------------------------------------------

/// The core name of a Pipely channel: its id bytes in hex, so that any bytes make a valid name.
fn core_name(id: &[u8]) -> String {
    let mut name = String::with_capacity(CORE_PREFIX.len() + 2 * id.len());
    name.push_str(CORE_PREFIX);
    for b in id {
        let _ = write!(name, "{b:02x}");
    }
    name
}

/// The id of the Pipely channel a core channel stands for.
fn channel_id_of(core: &str) -> Option<Vec<u8>> {
    let hex = core.strip_prefix(CORE_PREFIX)?.as_bytes();
    hex.chunks(2)
        .map(|pair| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|p| u8::from_str_radix(p, 16).ok())
        })
        .collect()
}

fn json_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_default()
}

/// The event object `{"channel_id","type","origin_id","payload"}` (the original's key order) as JSON, and its
/// frame `data: <json>\n\n`. `channel_json` and `payload` are JSON already; compact JSON has no line breaks.
fn event_frame(
    channel_json: &str,
    kind: &str,
    origin_id: &str,
    payload: &str,
) -> (String, Vec<u8>) {
    let kind = json_string(kind);
    let origin = json_string(origin_id);
    let mut json =
        String::with_capacity(64 + channel_json.len() + kind.len() + origin.len() + payload.len());
    for part in [
        "{\"channel_id\":",
        channel_json,
        ",\"type\":",
        &kind,
        ",\"origin_id\":",
        &origin,
        ",\"payload\":",
        payload,
        "}",
    ] {
        json.push_str(part);
    }
    let mut frame = Vec::with_capacity(json.len() + 8);
    frame.extend_from_slice(b"data: ");
    frame.extend_from_slice(json.as_bytes());
    frame.extend_from_slice(b"\n\n");
    (json, frame)
}

/// An event for every member of a channel, encoded once here; live only (Pipely has no history).
fn new_event(
    core: &str,
    channel_json: &str,
    kind: &str,
    origin_id: &str,
    payload: &str,
) -> NewEvent {
    let (json, frame) = event_frame(channel_json, kind, origin_id, payload);
    NewEvent {
        channel: core.into(),
        data: json.into(),
        wire: Some(Wire::Sse(Frame::from(frame))),
        ephemeral: true,
        ..Default::default()
    }
}

// ---- answers ---------------------------------------------------------------------------------------------------

// Go writes a handler's fields sorted by name, then `Content-Length` and the connection field: every `answer`
// here passes its fields in that order.

/// The CORS field of a handler's answer (see the module doc).
fn cors(req: &Request) -> Vec<(&'static str, &'static str)> {
    match req.header("origin") {
        Some(_) => vec![("Access-Control-Allow-Origin", "*")],
        None => Vec::new(),
    }
}

/// `http.Error(w, text, status)`: the text and a newline as `text/plain; charset=utf-8`, with `nosniff`.
fn go_error(req: &Request, ctx: &Ctx, status: u16, text: &str, with_cors: bool) -> Action {
    log::debug!("pipely {status}: {text}");
    let mut body = String::with_capacity(text.len() + 1);
    body.push_str(text);
    body.push('\n');
    let mut fields = if with_cors { cors(req) } else { Vec::new() };
    fields.push(("Content-Type", "text/plain; charset=utf-8"));
    if status == 503 {
        fields.push(("Retry-After", "1"));
    }
    fields.push(("X-Content-Type-Options", "nosniff"));
    answer(req, ctx, status, &fields, body.as_bytes())
}

fn table_error(req: &Request, ctx: &mut Ctx, e: TableError) -> Action {
    let text = match e {
        TableError::TooManyChannels => "the channel limit (--max-channels) is reached",
        TableError::ClientChannelLimit => {
            "this address has created as many channels as --max-channels-per-ip allows"
        }
        TableError::Overloaded => {
            ctx.counters.overloaded += 1;
            "the server is too far behind to take more events; retry shortly"
        }
    };
    go_error(req, ctx, 503, text, true)
}

/// What Go's server itself sends for a request it refuses: `<status> <reason>` as text, then it closes.
fn go_server_refusal(status: u16, date: &DateCache, extra: &[(&str, &str)]) -> Vec<u8> {
    let body = format!("{status} {}", go_reason(status));
    let mut fields: Vec<(&str, &str)> = vec![("Content-Type", "text/plain; charset=utf-8")];
    fields.extend_from_slice(extra);
    let mut out = Vec::with_capacity(160);
    write_answer(
        &mut out,
        date,
        status,
        &fields,
        body.as_bytes(),
        Some("close"),
        false,
    );
    out
}

/// Go's `http.StatusText`, where it differs from the reason phrases spout writes.
fn go_reason(status: u16) -> &'static str {
    match status {
        413 => "Request Entity Too Large",
        other => reason(other),
    }
}

/// spout's refusals before a request reaches the API, in the style of Go's own refusals.
pub fn refusal(refusal: Refusal, date: &DateCache) -> Vec<u8> {
    match refusal {
        Refusal::Http(e) => go_server_refusal(e.status(), date, &[]),
        Refusal::Timeout => go_server_refusal(408, date, &[]),
        Refusal::Busy | Refusal::BodyBudget | Refusal::PeerLimit => {
            go_server_refusal(503, date, &[("Retry-After", "1")])
        }
    }
}

/// Renews the expiry of the shared state this node owns (see `api::hooks::refresh_shared`).
pub fn refresh_shared(shared: &dyn crate::broker::shared::Shared, ctx: &mut Ctx) {
    shared::refresh(shared, ctx);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_names_round_trip_any_bytes() {
        for id in [&b"abcdefghijkl"[..], b"\xff\x00/ \xc3\xa9abcdefgh"] {
            let name = core_name(id);
            assert!(name.starts_with("pipely/") && name.is_ascii());
            assert_eq!(channel_id_of(&name).as_deref(), Some(id));
        }
        assert_eq!(channel_id_of("native"), None);
        assert_eq!(channel_id_of("pipely/zz"), None);
    }

    #[test]
    fn routes_are_exact() {
        for (path, found) in [
            ("/subscribe", true),
            ("/publish", true),
            ("/channels", true),
            ("/channel/x", true),
            ("/channel/", false),
            ("/channel/a/b", false),
            ("/publish/", false),
            ("/", false),
        ] {
            assert_eq!(Route::parse(path.as_bytes()).is_some(), found, "{path}");
        }
    }

    #[test]
    fn frames_are_one_data_line() {
        let (json, frame) = event_frame("\"abcdefghijkl\"", "a\nb", "server", "{\"x\":\"\\n\"}");
        assert_eq!(
            json,
            r#"{"channel_id":"abcdefghijkl","type":"a\nb","origin_id":"server","payload":{"x":"\n"}}"#
        );
        assert_eq!(frame, format!("data: {json}\n\n").into_bytes());
    }

    #[test]
    fn refusals_look_like_gos() {
        let date = DateCache::new(std::time::UNIX_EPOCH);
        let text = String::from_utf8(refusal(
            Refusal::Http(crate::http::HttpError::HeadTooLarge),
            &date,
        ))
        .unwrap();
        assert!(text.starts_with("HTTP/1.1 431 "), "{text}");
        assert!(text.ends_with(
            "Content-Type: text/plain; charset=utf-8\r\nContent-Length: 35\r\nConnection: close\r\n\r\n431 Request Header Fields Too Large"
        ), "{text}");
    }
}
