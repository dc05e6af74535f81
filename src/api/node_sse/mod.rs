//! node-sse-server's API (TheSalarKhan/node-sse-server; docs/PROTOCOLS.md §2): multi-channel SSE subscriptions with a
//! `registered` frame, each channel's last event and an `online-presence` list of connected client ids, a batch
//! `/publish`, and `/lastEvent`. Served at the root of `--listen ADDR=node-sse` and under `/node-sse` on native
//! listeners. Express's side of things (routing, CORS, body-parser, error pages) is in `express`, JavaScript's
//! (truthiness, `ToString`, `JSON.stringify`, property order) in `js`.
//!
//! The core does the delivery. A node-sse channel `C` (any string, the empty one included) is the core channel
//! `node-sse/C`; every stream also subscribes to `node-sse presence`, a name no native or node-sse channel can have
//! (native names have no space, node-sse's start with `node-sse/`), which carries the `online-presence` frames to
//! every node-sse stream. Events are encoded once, by the publisher, as the whole SSE frame (`Wire::Sse`), and
//! published `ephemeral`: the original has no history, only each channel's last value, which lives here. Bodies
//! are read as the original's `JSON.parse` reads them (`js::parse`), so a number past float64's range (`1e400`)
//! is `Infinity`: `"Infinity"` through `payload + ""`, `null` through `JSON.stringify`.
//!
//! `NodeSse` holds, under one lock: the process-wide client counter (from 1; an automatic id is a JSON number in
//! `registered`), the presence list (sockets per client id, in JavaScript's key order: array-index ids ascending,
//! then the others in insertion order), and each channel's last value. Subscribing, publishing and leaving take the
//! lock and publish into the core under it (lock order: this lock, then the channel table's), so a subscriber's
//! `lastEvent` frames and the live events it gets after them never overlap or leave a gap, and presence lists go
//! out in the order of the changes they report. `online-presence` is sent to every stream on each connect, and on
//! a disconnect when it was the last socket of that client id (`stream_closed`).
//!
//! Fixes (docs/PROTOCOLS.md rule 2): a publish batch is validated whole before anything is applied: a reserved type
//! gives its 400, a falsy `channelName`, `type` or `payload`, or a `type` whose text holds a CR or LF (it names
//! the event on its own `event:` line, so it would inject SSE lines) gives the missing-field 400, and either way
//! nothing is published or stored (the original answered 400 and went on publishing). A `channelName` may hold
//! line breaks, as in the original: it only appears inside the JSON of the `data:` line, escaped. A channel
//! listed twice (`?channels=d,d`) is subscribed once, so each event arrives once, and leaving cannot crash anything (the original's second close handler
//! dereferenced a deleted entry and killed the process); it still gets the original's two `lastEvent` frames. A
//! repeated query key (`?channels=a&channels=b`) reads as `a,b` (the original answered 500). Numbers that fit 64
//! bits stay exact in `payload + ""` and in stored last values.
//!
//! Other deliberate differences: `HEAD /subscribe` answers the stream's head and registers nothing (the original
//! registered a client that could never read); quiet streams get `:` comment heartbeats (`--heartbeat`); the stream
//! is delimited by the connection's end instead of chunked encoding (the same body bytes); `/lastEvent` sends no
//! `ETag`. spout's limits are refused with express's HTML error page: the head or body too large (431, 413), too
//! slow (408) or the connection limit (503) before any middleware ran, so without CORS; more channels in one
//! subscribe than `--max-subscriptions` allows (one is the presence channel) as `400 Bad Request`; a new channel
//! past `--max-channels`, the core's inboxes full, or draining as `503 Service Unavailable`.
//!
//! Bounds: the last values are never deleted, as in the original, so they are bounded: at most `--max-channels`
//! channels, and at most `--history-max-bytes` bytes of names and serialized values together; a subscribe or
//! publish that would pass either is refused (503) whole. The presence list is bounded by the open streams, client
//! ids and channel names by `--max-head`, a published value by the original's 100 KB body limit.

mod express;
mod js;

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use serde_json::{json, Value};

use super::{Action, Ctx, Refusal, Request, Stream};
use crate::channels::{NewEvent, Resume, TableError};
use crate::config::Api;
use crate::http::request::Method;
use crate::http::response::{write_stream_head, DateCache};
use crate::message::{Frame, Wire};
use express::{reply, Route};
use js::JsValue;

/// Core channel names of node-sse channels start with this.
const CORE_PREFIX: &str = "node-sse/";
/// The core channel every node-sse stream subscribes to for `online-presence`.
const PRESENCE_CHANNEL: &str = "node-sse presence";
/// Event types a publisher may not use.
const RESERVED: [&str; 3] = ["registered", "lastEvent", "online-presence"];
const MISSING_FIELD: &str =
    "Bad Request: 'channelName', 'type', and 'payload' are three required json fields in an event.";

/// node-sse's bookkeeping, shared by all workers (see the module doc).
#[derive(Default)]
pub struct NodeSse {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The last automatic client id handed out.
    clients_numbered: u64,
    presence: js::Presence,
    /// Per channel, its last value and the bytes counted for it (name and serialized value).
    last: HashMap<Box<str>, (JsValue, usize)>,
    last_bytes: usize,
}

impl NodeSse {
    fn lock(&self) -> MutexGuard<'_, State> {
        crate::sync::lock(&self.state)
    }
}

impl State {
    /// Whether `added` new channels and `grown` more bytes of last values stay within the bounds.
    fn has_room(&self, ctx: &Ctx, added: usize, grown: isize) -> bool {
        let bytes = self.last_bytes.saturating_add_signed(grown);
        self.last.len().saturating_add(added) <= ctx.config.max_channels
            && bytes <= ctx.config.history_max_bytes
    }

    fn set_last(&mut self, name: &str, value: JsValue) {
        let size = entry_size(name, &value);
        let old = self.last.insert(name.into(), (value, size));
        self.last_bytes = self.last_bytes + size - old.map_or(0, |(_, s)| s);
    }
}

/// Bytes a last value is counted for: its name and its JSON text.
fn entry_size(name: &str, value: &JsValue) -> usize {
    name.len() + js::stringify(value).len()
}

fn initial_last_value() -> JsValue {
    JsValue::String("{}".into())
}

pub fn handle(req: &Request, ctx: &mut Ctx) -> Action {
    // body-parser runs first, for every request, and its errors carry no CORS field.
    let body = match express::json_body(req) {
        Ok(body) => body,
        Err(e) => return express::error_page(req, ctx, e.status(), false, None),
    };
    if req.head.method == Method::Options {
        return express::preflight(req, ctx);
    }
    match Route::parse(req.head.method, req.path()) {
        Some(Route::Root) => reply(req, ctx, 200, true, &[], b"ROOT"),
        Some(Route::Subscribe) => subscribe(req, ctx),
        Some(Route::LastEvent) => last_event(req, ctx),
        Some(Route::Publish) => publish(req, ctx, body),
        None => {
            let message = express::not_found_message(req);
            express::error_page(req, ctx, 404, true, Some(&message))
        }
    }
}

/// `res.status(400).end("...")`: a plain answer without a content type.
fn bad_request(req: &Request, ctx: &Ctx, text: &str) -> Action {
    log::debug!("node-sse 400: {text}");
    reply(req, ctx, 400, true, &[], text.as_bytes())
}

fn table_error(req: &Request, ctx: &mut Ctx, e: TableError) -> Action {
    if e == TableError::Overloaded {
        ctx.counters.overloaded += 1;
    }
    log::debug!("node-sse 503: {}", e.as_str());
    express::error_page(req, ctx, 503, true, None)
}

// ---- subscribe -------------------------------------------------------------------------------------------------

fn subscribe(req: &Request, ctx: &mut Ctx) -> Action {
    let query = req.query();
    let Some(list) = express::query_value(query, "channels").filter(|c| !c.is_empty()) else {
        return bad_request(req, ctx, "Bad Request");
    };
    let names: Vec<&str> = list.split(',').collect();
    let mut distinct: Vec<&str> = Vec::with_capacity(names.len());
    for name in &names {
        if !distinct.contains(name) {
            distinct.push(name);
        }
    }
    if distinct.len() + 1 > ctx.config.max_subscriptions {
        return express::error_page(req, ctx, 400, true, None);
    }
    // A truthy `clientId`, or else the next number of the process-wide counter.
    let given = express::query_value(query, "clientId").filter(|id| !id.is_empty());
    let head = stream_head(ctx.date);
    if req.is_head() {
        return Action::Respond {
            bytes: head,
            close: !req.head.keep_alive || ctx.draining,
        };
    }
    if ctx.draining {
        return express::error_page(req, ctx, 503, true, None);
    }

    let node_sse = &ctx.apps.node_sse;
    let mut state = node_sse.lock();
    let missing: Vec<&str> = distinct
        .iter()
        .copied()
        .filter(|name| !state.last.contains_key(*name))
        .collect();
    let grown: usize = missing
        .iter()
        .map(|name| entry_size(name, &initial_last_value()))
        .sum();
    if !state.has_room(
        ctx,
        missing.len(),
        isize::try_from(grown).unwrap_or(isize::MAX),
    ) {
        return express::error_page(req, ctx, 503, true, None);
    }
    let (id, id_json): (String, Value) = match given {
        Some(id) => (id.clone(), Value::String(id)),
        None => {
            let n = state.clients_numbered + 1;
            (n.to_string(), json!(n))
        }
    };
    let mut core: Vec<String> = distinct.iter().map(|name| core_name(name)).collect();
    core.push(PRESENCE_CHANNEL.to_string());
    let core: Vec<&str> = core.iter().map(String::as_str).collect();
    let subscription = match ctx
        .table
        .subscribe(ctx.worker, &core, &id, Resume::Fresh, ctx.peer)
    {
        Ok(subscription) => subscription,
        Err(e) => return table_error(req, ctx, e),
    };
    state.presence.add(&id);
    if let Err(e) = publish_presence(&state, ctx) {
        // Undo the join: nobody has seen it yet.
        state.presence.remove(&id);
        ctx.table
            .unsubscribe(ctx.worker, &subscription.channels, &id);
        return table_error(req, ctx, e);
    }
    if id_json.is_number() {
        state.clients_numbered += 1;
    }
    for name in missing {
        state.set_last(name, initial_last_value());
    }

    let mut opening = head;
    // The original's first write is a lone newline.
    opening.push(b'\n');
    let registered = json!({"clientId": id_json}).to_string();
    let data = json!({"type": "registered", "payload": registered});
    push_frame(&mut opening, "registered", &data.to_string());
    for name in &names {
        // `payload + ""` as for every event: a channel a publish created holds the raw payload, which goes out as
        // JavaScript's string of it (`[object Object]`, an array joined), not as JSON.
        let last = state
            .last
            .get(*name)
            .map_or_else(String::new, |(v, _)| js::to_string(v));
        let data = json!({"channelName": name, "type": "lastEvent", "payload": last});
        push_frame(&mut opening, "lastEvent", &data.to_string());
    }
    drop(state);
    Action::Stream(Box::new(Stream {
        api: Api::NodeSse,
        opening,
        subscription,
        client_id: id.into(),
        websocket: false,
        expires: None,
    }))
}

/// The stream's head, as the original's `writeHead` after express's and the `cors` middleware's fields.
fn stream_head(date: &DateCache) -> Vec<u8> {
    let fields = [
        ("X-Powered-By", "Express"),
        ("Access-Control-Allow-Origin", "*"),
        ("Content-Type", "text/event-stream"),
        ("Cache-Control", "no-cache"),
        ("Connection", "keep-alive"),
        ("X-Accel-Buffering", "no"),
    ];
    let mut head = Vec::with_capacity(256);
    write_stream_head(&mut head, date, &fields);
    head
}

/// A node-sse stream ended (the worker has unsubscribed it): when it was its client id's last socket, every
/// stream gets the new presence list. Its channels need no bookkeeping: last values stay.
pub fn stream_closed(client_id: &str, ctx: &mut Ctx) {
    let mut state = ctx.apps.node_sse.lock();
    if state.presence.remove(client_id) {
        if let Err(e) = publish_presence(&state, ctx) {
            log::warn!(
                "node-sse: presence after {client_id} left not delivered: {}",
                e.as_str()
            );
        }
    }
}

/// Sends the presence list to every node-sse stream.
fn publish_presence(state: &State, ctx: &Ctx) -> Result<(), TableError> {
    let data = json!({"type": "online-presence", "payload": state.presence.list_json()});
    let event = new_event(PRESENCE_CHANNEL, "online-presence", data.to_string());
    ctx.local
        .publish_now(vec![event], ctx.wall, ctx.now)
        .map(|_| ())
}

// ---- publish ---------------------------------------------------------------------------------------------------

/// One event of a validated batch: the channel's key (its name as a property key) and the original's values.
struct Checked<'a> {
    key: String,
    channel: &'a JsValue,
    kind: &'a JsValue,
    payload: &'a JsValue,
}

fn publish(req: &Request, ctx: &mut Ctx, body: Option<JsValue>) -> Action {
    let events = body.as_ref().and_then(|b| b.get("events"));
    let checked = match check_batch(events) {
        Ok(checked) => checked,
        Err(Refused::Reserved(kind)) => {
            return bad_request(
                req,
                ctx,
                &format!("Event type \"{kind}\" is reserved, can't fire!"),
            );
        }
        Err(Refused::MissingField) => return bad_request(req, ctx, MISSING_FIELD),
        Err(Refused::Crash) => return express::error_page(req, ctx, 500, true, None),
    };
    if checked.is_empty() {
        return reply(req, ctx, 200, true, &[], b"");
    }

    let node_sse = &ctx.apps.node_sse;
    let mut state = node_sse.lock();
    // What the batch does, in order: the first event to an unknown channel creates it with the raw payload and
    // reaches nobody; an event to a known channel is delivered and stored as `{type, payload}`.
    let mut stored: Vec<(&str, JsValue)> = Vec::with_capacity(checked.len());
    let mut events = Vec::new();
    for event in &checked {
        let known = state.last.contains_key(event.key.as_str())
            || stored.iter().any(|(k, _)| *k == event.key);
        if !known {
            stored.push((&event.key, event.payload.clone()));
            continue;
        }
        // `JSON.stringify({type, payload})` and `JSON.stringify({channelName, type, payload: payload + ""})`.
        let last = format!(
            "{{\"type\":{},\"payload\":{}}}",
            js::stringify(event.kind),
            js::stringify(event.payload)
        );
        stored.push((&event.key, JsValue::String(last)));
        let data = format!(
            "{{\"channelName\":{},\"type\":{},\"payload\":{}}}",
            js::stringify(event.channel),
            js::stringify(event.kind),
            js::stringify(&JsValue::String(js::to_string(event.payload)))
        );
        events.push(new_event(
            &core_name(&event.key),
            &js::to_string(event.kind),
            data,
        ));
    }
    let mut sizes: HashMap<&str, isize> = HashMap::new();
    for (key, value) in &stored {
        sizes.insert(
            key,
            isize::try_from(entry_size(key, value)).unwrap_or(isize::MAX),
        );
    }
    let added = sizes
        .keys()
        .filter(|k| !state.last.contains_key(**k))
        .count();
    let grown: isize = sizes
        .iter()
        .map(|(key, size)| size - state.last.get(*key).map_or(0, |(_, old)| *old as isize))
        .sum();
    if !state.has_room(ctx, added, grown) {
        return express::error_page(req, ctx, 503, true, None);
    }
    if !events.is_empty() {
        if let Err(e) = ctx.local.publish_now(events, ctx.wall, ctx.now) {
            return table_error(req, ctx, e);
        }
    }
    for (key, value) in stored {
        state.set_last(key, value);
    }
    drop(state);
    ctx.counters.published += 1;
    reply(req, ctx, 200, true, &[], b"")
}

/// Why a batch is refused.
enum Refused {
    /// A reserved type: its own 400.
    Reserved(String),
    /// A falsy field, or a line break in `type`: the missing-field 400.
    MissingField,
    /// What made the original's handler throw (`events` not iterable, a `null` event): express's 500.
    Crash,
}

/// Validates a whole batch (`events` as the original reads it) before anything is applied.
fn check_batch(events: Option<&JsValue>) -> Result<Vec<Checked<'_>>, Refused> {
    let items: Vec<&JsValue> = match events {
        None => Vec::new(),
        Some(v) if !js::truthy(v) => Vec::new(),
        Some(JsValue::Array(items)) => items.iter().collect(),
        // `for...of` over a string walks its characters, none of which has the fields.
        Some(JsValue::String(_)) => return Err(Refused::MissingField),
        Some(_) => return Err(Refused::Crash),
    };
    // First pass, as the original: destructuring `null` throws, a reserved type refuses the batch.
    for item in &items {
        if item.is_null() {
            return Err(Refused::Crash);
        }
        if let Some(kind) = item.get("type").and_then(JsValue::as_str) {
            if RESERVED.contains(&kind) {
                return Err(Refused::Reserved(kind.to_string()));
            }
        }
    }
    // An absent field, which JavaScript reads as `undefined` (falsy, like `null`).
    static MISSING: JsValue = JsValue::Null;
    items
        .into_iter()
        .map(|item| {
            let field = |name: &str| item.get(name).unwrap_or(&MISSING);
            let (channel, kind, payload) = (field("channelName"), field("type"), field("payload"));
            let key = js::to_string(channel);
            // Only `type` is written outside the JSON, as the `event:` line.
            if !js::truthy(channel)
                || !js::truthy(kind)
                || !js::truthy(payload)
                || js::to_string(kind).contains(['\r', '\n'])
            {
                return Err(Refused::MissingField);
            }
            Ok(Checked {
                key,
                channel,
                kind,
                payload,
            })
        })
        .collect()
}

// ---- lastEvent -------------------------------------------------------------------------------------------------

fn last_event(req: &Request, ctx: &mut Ctx) -> Action {
    let Some(channel) = express::query_value(req.query(), "channel").filter(|c| !c.is_empty())
    else {
        return bad_request(req, ctx, "Bad Request");
    };
    let state = ctx.apps.node_sse.lock();
    let body = match state.last.get(channel.as_str()) {
        Some((value, _)) => format!("{{\"response\":{}}}", js::stringify(value)),
        // `res.json({response: undefined})`.
        None => "{}".to_string(),
    };
    drop(state);
    let fields = [("Content-Type", "application/json; charset=utf-8")];
    reply(req, ctx, 200, true, &fields, body.as_bytes())
}

// ---- events ----------------------------------------------------------------------------------------------------

fn core_name(channel: &str) -> String {
    format!("{CORE_PREFIX}{channel}")
}

/// `event: <name>\ndata: <json>\n\n`. The name has no line breaks (checked, or fixed), and compact JSON has none.
fn push_frame(out: &mut Vec<u8>, name: &str, json: &str) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(json.as_bytes());
    out.extend_from_slice(b"\n\n");
}

/// An event for the streams of a core channel, encoded once here; live only.
fn new_event(core: &str, name: &str, json: String) -> NewEvent {
    let mut frame = Vec::with_capacity(json.len() + name.len() + 20);
    push_frame(&mut frame, name, &json);
    NewEvent {
        channel: core.into(),
        event: Some(name.into()),
        data: json.into(),
        wire: Some(Wire::Sse(Frame::from(frame))),
        ephemeral: true,
        ..Default::default()
    }
}

/// spout's refusals before a request reaches the API: express's error page, without CORS.
pub fn refusal(refusal: Refusal, date: &DateCache) -> Vec<u8> {
    match refusal {
        Refusal::Http(e) => express::refusal_page(e.status(), date, false),
        Refusal::Timeout => express::refusal_page(408, date, false),
        Refusal::Busy | Refusal::BodyBudget | Refusal::PeerLimit => {
            express::refusal_page(503, date, true)
        }
    }
}

/// Renews the expiry of the shared state this node owns (see `api::hooks::refresh_shared`).
pub fn refresh_shared(_shared: &dyn crate::broker::shared::Shared, _ctx: &mut Ctx) {}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(json: Value) -> Result<Vec<String>, String> {
        let body = js::parse(&json.to_string()).expect("JSON");
        check_batch(body.get("events"))
            .map(|events| events.into_iter().map(|e| e.key).collect())
            .map_err(|e| match e {
                Refused::Reserved(kind) => format!("reserved {kind}"),
                Refused::MissingField => "missing".into(),
                Refused::Crash => "crash".into(),
            })
    }

    #[test]
    fn batches_are_checked_whole_in_the_originals_order() {
        let ok = |c: &str| json!({"channelName": c, "type": "t", "payload": "p"});
        let cases: [(Value, Result<Vec<String>, String>); 15] = [
            (json!({}), Ok(vec![])),
            (json!({"events": null}), Ok(vec![])),
            (json!({"events": 0}), Ok(vec![])),
            (json!({"events": ""}), Ok(vec![])),
            (
                json!({"events": [ok("a"), ok("b")]}),
                Ok(vec!["a".into(), "b".into()]),
            ),
            (
                json!({"events": [{"channelName": 7, "type": ["x"], "payload": 0.5}]}),
                Ok(vec!["7".into()]),
            ),
            (json!({"events": {}}), Err("crash".into())),
            (json!({"events": 5}), Err("crash".into())),
            (json!({"events": [ok("a"), null]}), Err("crash".into())),
            (
                json!({"events": [ok("a"), {"type": "lastEvent"}, null]}),
                Err("reserved lastEvent".into()),
            ),
            (
                json!({"events": [{"channelName": "a", "type": "t", "payload": 0}, {"type": "registered"}]}),
                Err("reserved registered".into()),
            ),
            (json!({"events": "ab"}), Err("missing".into())),
            (
                json!({"events": [ok("a"), {"channelName": "a", "type": "t\nevent: x", "payload": "p"}]}),
                Err("missing".into()),
            ),
            (
                json!({"events": [ok("a\rb"), ok("c\nd")]}),
                Ok(vec!["a\rb".into(), "c\nd".into()]),
            ),
            (
                json!({"events": [{"channelName": "a", "type": "t\r", "payload": "p"}]}),
                Err("missing".into()),
            ),
        ];
        for (body, want) in cases {
            assert_eq!(batch(body.clone()), want, "{body}");
        }
        for falsy in [json!(0), json!(""), json!(false), json!(null)] {
            let body = json!({"events": [{"channelName": "a", "type": "t", "payload": falsy}]});
            assert_eq!(batch(body), Err("missing".into()));
        }
    }

    #[test]
    fn frames_are_event_and_one_data_line() {
        let mut out = Vec::new();
        let data = json!({"channelName": "news", "type": "message", "payload": "a\nb"});
        push_frame(&mut out, "message", &data.to_string());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "event: message\ndata: {\"channelName\":\"news\",\"type\":\"message\",\"payload\":\"a\\nb\"}\n\n"
        );
    }
}
