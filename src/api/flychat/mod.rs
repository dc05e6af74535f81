//! flychat (docs/PROTOCOLS.md §3): the chat API of fanout/flychat and its web pages, as a client saw them through
//! Pushpin in front of the original app.
//!
//! Routes (below the mount; paths are raw, not percent-decoded, and split on `/`):
//! - `/` → 301 to `{mount}/default`, query kept;
//! - `/{room}` → the join page, or with `?user=U` the chat page with the room's messages rendered (`pages`);
//! - `/js/url-polyfill.min.js`, `/js/eventsource.min.js`, `/js/reconnecting-eventsource.js` → spout's scripts;
//! - `/rooms/{room}/messages/` → the API: POST saves a message, any other method reads the room, as an event
//!   stream when `Accept` is exactly `text/event-stream`, else as JSON;
//! - anything else → 404 `Not Found⏎`. No CORS headers anywhere, as the original.
//!
//! A room is its raw path segment as the original's URL parser left it (`form::canonical_room`); its core channel
//! is `flychat/{room}`.
//!
//! **Where the messages live.** Each room's last id and its last 50 messages (`KEPT`, the original's
//! `MAX_MESSAGES`) are kept here, in `Rooms`, not in the core's history: room ids count 1, 2, 3 … per room and
//! must survive whatever the core's history does (`--history`, `--history-ttl`, `--history-max-bytes` evict by
//! their own rules). Messages are published to the room's channel `ephemeral` (live delivery only), with their
//! SSE frame made once here (`Wire::Sse`) and shared by every subscriber. A room is never forgotten, so its ids
//! never start over: a client resuming from id N never misses a later message silently.
//!
//! **No gap, no duplicate.** Posting (id, save, publish) and opening a stream (snapshot of the kept messages after
//! the resume id, then `table.subscribe`) each run under the `Rooms` lock. A message is therefore either in a
//! stream's opening or published after its subscription, so it reaches it live: never both, never neither. The
//! lock is taken before the channel table's lock (inside `subscribe` and `publish`), never after it.
//!
//! **On several nodes** (`--broker redis://…`) each room lives in Redis instead, and every handler that reads or
//! changes a room asks Redis (`nodes`); `Rooms` then stays empty.
//!
//! **Bounds.** At most `--max-channels` rooms (counted here, apart from the core's channels) and at most
//! `--history-max-bytes` of kept messages over all rooms; a post past either is refused with 503
//! `Service Unavailable⏎`, the message neither saved nor sent. A message is at most `--max-body` bytes of form.
//!
//! Differences a client can notice, all deliberate (docs/PROTOCOLS.md rules 2 and 3):
//! - the provisional copy of a message (`event: message` without `id:`) is not sent: the final copy carries the
//!   same `provisionalId`, and a client sees each message once;
//! - a body that is not form data (JSON, text, none) gets 400 `Bad Request⏎` instead of an unhandled error;
//! - the stream is close-delimited rather than chunked, and has no `Grip-*` headers (only Pushpin saw them);
//! - the pages and scripts are spout's own.

mod form;
mod nodes;
mod pages;

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use super::{closes, keep_alive_field, respond, Action, Ctx, Refusal, Request, Stream};
use crate::channels::{NewEvent, Resume, TableError};
use crate::config::Api;
use crate::http::request::Method;
use crate::http::response::{reason, write_response, write_stream_head, DateCache, Response};
use crate::ids::IdSource;
use crate::message::{Frame, Wire};
use form::Form;

/// Messages a room keeps: the original's `MAX_MESSAGES`.
const KEPT: usize = 50;

/// Bytes a kept message costs besides its frame: its entry and the allocation's bookkeeping.
const SAVED_OVERHEAD: usize = std::mem::size_of::<Saved>() + 16;

const BAD_REQUEST: &str = "Bad Request\n";
const NOT_FOUND: &str = "Not Found\n";
const UNAVAILABLE: &str = "Service Unavailable\n";

/// flychat's shared state: every room's last id and kept messages (see the module doc).
#[derive(Default)]
pub struct Rooms {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    rooms: HashMap<Box<str>, Room>,
    /// What all kept messages cost together (`Saved::bytes`), bounded by `--history-max-bytes`.
    bytes: usize,
}

#[derive(Default)]
struct Room {
    last_id: u64,
    /// The last `KEPT` messages, oldest first; never empty once the room exists.
    kept: VecDeque<Saved>,
}

/// A saved message as it goes on the wire: `event: message⏎id: N⏎data: {json}⏎⏎`, made once at post time and
/// shared by the publish, every stream's opening and the JSON answers.
struct Saved {
    id: u64,
    frame: Frame,
    /// Where the JSON starts in `frame`.
    json_at: usize,
}

impl Saved {
    fn new(id: u64, provisional_id: &str, from: &str, text: &str, date: &str) -> Saved {
        let json = format!(
            "{{\"id\":{id}{}",
            json_tail(provisional_id, from, text, date)
        );
        let (frame, json_at) = message_frame(id, json.as_bytes());
        Saved {
            id,
            frame: frame.into(),
            json_at,
        }
    }

    fn json(&self) -> &[u8] {
        let end = self.frame.len().saturating_sub(2);
        self.frame.get(self.json_at..end).unwrap_or_default()
    }

    fn bytes(&self) -> usize {
        self.frame.len() + SAVED_OVERHEAD
    }

    /// Another handle on the same frame.
    fn share(&self) -> Saved {
        Saved {
            id: self.id,
            frame: Frame::clone(&self.frame),
            json_at: self.json_at,
        }
    }
}

/// A saved message's JSON after its id: `,"provisionalId":…,"from":…,"text":…,"date":…}`, keys in the original's
/// order. The JSON has no raw line break, so it makes one `data:` line.
fn json_tail(provisional_id: &str, from: &str, text: &str, date: &str) -> String {
    let text_of = |s: &str| serde_json::Value::from(s).to_string();
    format!(
        ",\"provisionalId\":{},\"from\":{},\"text\":{},\"date\":{}}}",
        text_of(provisional_id),
        text_of(from),
        text_of(text),
        text_of(date)
    )
}

/// A saved message's frame, `event: message⏎id: N⏎data: {json}⏎⏎`, and where its JSON starts in it.
fn message_frame(id: u64, json: &[u8]) -> (Vec<u8>, usize) {
    let mut frame = Vec::with_capacity(json.len() + 48);
    frame.extend_from_slice(b"event: message\nid: ");
    frame.extend_from_slice(id.to_string().as_bytes());
    frame.extend_from_slice(b"\ndata: ");
    let json_at = frame.len();
    frame.extend_from_slice(json);
    frame.extend_from_slice(b"\n\n");
    (frame, json_at)
}

impl Rooms {
    fn lock(&self) -> MutexGuard<'_, State> {
        crate::sync::lock(&self.state)
    }

    /// The id of the last message of `room` and a copy of its kept messages (`Arc` clones), oldest first.
    fn snapshot(&self, room: &str) -> (u64, Vec<Saved>) {
        let st = self.lock();
        st.rooms.get(room).map_or((0, Vec::new()), |r| {
            (r.last_id, r.kept.iter().map(Saved::share).collect())
        })
    }
}

/// flychat's routes (see the module doc).
enum Route<'a> {
    Home,
    Room(&'a [u8]),
    Script(&'static str),
    Messages(&'a [u8]),
    NotFound,
}

impl Route<'_> {
    fn parse(path: &[u8]) -> Route<'_> {
        let Some(rest) = path.strip_prefix(b"/") else {
            return Route::NotFound;
        };
        if let Some(name) = rest.strip_prefix(b"js/") {
            return pages::script(name).map_or(Route::NotFound, Route::Script);
        }
        if let Some(rooms) = rest.strip_prefix(b"rooms/") {
            let slash = rooms.iter().position(|b| *b == b'/');
            return match slash.and_then(|at| Some((rooms.get(..at)?, rooms.get(at + 1..)?))) {
                Some((room, b"messages/")) => Route::Messages(room),
                _ => Route::NotFound,
            };
        }
        match rest {
            b"" => Route::Home,
            room if !room.contains(&b'/') => Route::Room(room),
            _ => Route::NotFound,
        }
    }
}

pub fn handle(req: &Request, ctx: &mut Ctx) -> Action {
    match Route::parse(req.path()) {
        Route::Home => home(req, ctx),
        Route::Room(room) => room_page(req, ctx, &form::canonical_room(room)),
        Route::Script(body) => respond(
            req,
            ctx,
            200,
            Some("application/javascript"),
            body.as_bytes(),
            &[],
        ),
        Route::Messages(room) => {
            let room = form::canonical_room(room);
            if req.head.method == Method::Post {
                post(req, ctx, &room)
            } else if req.header("accept") == Some(b"text/event-stream") {
                stream(req, ctx, &room)
            } else {
                read_json(req, ctx, &room)
            }
        }
        Route::NotFound => plain(req, ctx, 404, NOT_FOUND),
    }
}

/// The answer to a refusal of the connection layer: its status with the reason as a plain-text body, as
/// flychat's own errors (`Bad Request⏎`); always closes.
pub fn refusal(refusal: Refusal, date: &DateCache) -> Vec<u8> {
    let status = match refusal {
        Refusal::Http(e) => e.status(),
        Refusal::Timeout => 408,
        Refusal::Busy | Refusal::BodyBudget | Refusal::PeerLimit => 503,
    };
    let body = format!("{}\n", reason(status));
    let mut out = Vec::with_capacity(body.len() + 160);
    let resp = Response {
        status,
        content_type: Some("text/plain"),
        // At the connection limit: a moment later there may be room.
        headers: if status == 503 {
            &[("Retry-After", "1")]
        } else {
            &[]
        },
        body: body.as_bytes(),
        close: true,
        head_only: false,
    };
    write_response(&mut out, date, &resp);
    out
}

/// The core channel of a room.
fn channel_of(room: &str) -> String {
    format!("flychat/{room}")
}

// ---- pages -----------------------------------------------------------------------------------------------------

fn home(req: &Request, ctx: &Ctx) -> Action {
    let query = req.query();
    let mut location = format!("{}/default", req.mount);
    if !query.is_empty() {
        location.push('?');
        location.push_str(&String::from_utf8_lossy(query));
    }
    respond(req, ctx, 301, None, b"", &[("Location", &location)])
}

fn room_page(req: &Request, ctx: &mut Ctx, room: &str) -> Action {
    let user = form::urlencoded_get(req.query(), "user").filter(|u| !u.is_empty());
    let Some(user) = user else {
        return respond(
            req,
            ctx,
            200,
            Some("text/html"),
            pages::join_page().as_bytes(),
            &[],
        );
    };
    let page = match ctx.broker.shared() {
        None => {
            let (last_event_id, kept) = ctx.apps.flychat.snapshot(room);
            let chat = pages::Chat {
                mount: req.mount,
                room,
                user: &user,
                last_event_id,
            };
            chat.render(kept.iter().map(Saved::json))
        }
        Some(shared) => match nodes::read(ctx, shared, room) {
            Ok(Some(read)) => {
                let chat = pages::Chat {
                    mount: req.mount,
                    room,
                    user: &user,
                    last_event_id: read.last_id,
                };
                chat.render(read.messages.iter().map(|m| &m[..]))
            }
            Ok(None) => return Action::Await,
            Err(()) => return plain(req, ctx, 503, UNAVAILABLE),
        },
    };
    respond(
        req,
        ctx,
        200,
        Some("text/html"),
        page.as_bytes(),
        &[("Cache-Control", "no-cache")],
    )
}

// ---- the API -----------------------------------------------------------------------------------------------------

/// POST: saves `from` and `text` as the room's next message and sends it to the room's streams.
fn post(req: &Request, ctx: &mut Ctx, room: &str) -> Action {
    let Ok(form) = Form::parse(req.header("content-type"), req.body) else {
        return plain(req, ctx, 400, BAD_REQUEST);
    };
    let field = |name| form.get(name).filter(|value| !value.is_empty());
    let (Some(from), Some(text)) = (field("from"), field("text")) else {
        return plain(req, ctx, 400, BAD_REQUEST);
    };
    let provisional_id = uuid_v4(ctx.ids);
    let date = crate::date::iso_timestamp(ctx.wall);
    if let Some(shared) = ctx.broker.shared() {
        return match nodes::post(ctx, shared, room, [&provisional_id, &from, &text, &date]) {
            Ok(Some(json)) => {
                ctx.counters.published += 1;
                let mut body = json;
                body.push(b'\n');
                respond(req, ctx, 200, Some("application/json"), &body, &[])
            }
            Ok(None) => Action::Await,
            Err(()) => plain(req, ctx, 503, UNAVAILABLE),
        };
    }

    let mut st = ctx.apps.flychat.lock();
    let State { rooms, bytes } = &mut *st;
    let (last_id, evicted) = match rooms.get(room) {
        Some(r) => {
            let full = r.kept.len() >= KEPT;
            (
                r.last_id,
                r.kept.front().filter(|_| full).map_or(0, Saved::bytes),
            )
        }
        None if rooms.len() >= ctx.config.max_channels => {
            log::debug!("flychat: refused a new room: --max-channels rooms exist");
            return plain(req, ctx, 503, UNAVAILABLE);
        }
        None => (0, 0),
    };
    let id = last_id.saturating_add(1);
    let saved = Saved::new(id, &provisional_id, &from, &text, &date);
    let total = (*bytes + saved.bytes()).saturating_sub(evicted);
    if total > ctx.config.history_max_bytes {
        log::debug!("flychat: refused a message: rooms hold --history-max-bytes");
        return plain(req, ctx, 503, UNAVAILABLE);
    }
    let event = NewEvent {
        channel: channel_of(room).into(),
        data: String::from_utf8_lossy(saved.json()).into(),
        wire: Some(Wire::Sse(Frame::clone(&saved.frame))),
        ephemeral: true,
        ..Default::default()
    };
    if let Err(e) = ctx.local.publish_now(vec![event], ctx.wall, ctx.now) {
        drop(st);
        if e == TableError::Overloaded {
            ctx.counters.overloaded += 1;
        }
        log::debug!("flychat: publish refused: {}", e.as_str());
        return plain(req, ctx, 503, UNAVAILABLE);
    }
    let mut body = Vec::with_capacity(saved.json().len() + 1);
    body.extend_from_slice(saved.json());
    body.push(b'\n');
    let room_state = rooms.entry(room.into()).or_default();
    room_state.last_id = id;
    room_state.kept.push_back(saved);
    if room_state.kept.len() > KEPT {
        room_state.kept.pop_front();
    }
    *bytes = total;
    drop(st);
    ctx.counters.published += 1;
    respond(req, ctx, 200, Some("application/json"), &body, &[])
}

/// The resume point: the `Last-Event-ID` header unless empty, else the `lastEventId` query parameter, read by
/// `parseInt`; `None` (send every kept message) when absent or not a number.
fn resume_point(req: &Request) -> Option<i64> {
    match req.header("last-event-id").filter(|v| !v.is_empty()) {
        Some(header) => form::parse_int(&String::from_utf8_lossy(header)),
        None => form::parse_int(&form::urlencoded_get(req.query(), "lastEventId")?),
    }
}

/// Whether message `id` comes after the resume point.
fn is_after(id: u64, resume: Option<i64>) -> bool {
    resume.is_none_or(|from| i128::from(id) > i128::from(from))
}

/// GET as an event stream: `stream-open`, `stream-reset` if messages after the resume point are gone, the kept
/// messages after it, then live messages.
fn stream(req: &Request, ctx: &mut Ctx, room: &str) -> Action {
    if ctx.draining {
        return plain(req, ctx, 503, UNAVAILABLE);
    }
    if req.is_head() {
        // The head the stream would have; a HEAD answer has no body and opens no stream.
        let close = closes(req, ctx);
        let mut head: Vec<(&str, &str)> = STREAM_HEAD.to_vec();
        if close {
            head.push(("Connection", "close"));
        }
        head.extend(keep_alive_field(req, close));
        let mut bytes = Vec::with_capacity(256);
        write_stream_head(&mut bytes, ctx.date, &head);
        return Action::Respond { bytes, close };
    }
    let resume = resume_point(req);
    match ctx.broker.shared() {
        None => local_stream(req, ctx, room, resume),
        Some(shared) => nodes::stream(req, ctx, shared, room, resume),
    }
}

/// The head of a stream's answer.
const STREAM_HEAD: [(&str, &str); 2] = [
    ("Content-Type", "text/event-stream"),
    ("Cache-Control", "no-cache"),
];

/// A stream on this node alone: its opening from `Rooms`, its subscription in the channel table.
fn local_stream(req: &Request, ctx: &mut Ctx, room: &str, resume: Option<i64>) -> Action {
    let client_id = ctx.ids.next_client_id();
    let channel = channel_of(room);
    let (reset, replay, subscription) = {
        let st = ctx.apps.flychat.lock();
        let kept = st.rooms.get(room).map(|r| &r.kept);
        let reset = is_reset(resume, kept.and_then(|k| k.front()).map(|m| m.id));
        let replay: Vec<Frame> = kept
            .into_iter()
            .flatten()
            .filter(|m| is_after(m.id, resume))
            .map(|m| Frame::clone(&m.frame))
            .collect();
        let subscribed =
            ctx.table
                .subscribe(ctx.worker, &[&channel], &client_id, Resume::Fresh, ctx.peer);
        (reset, replay, subscribed)
    };
    let Ok(subscription) = subscription else {
        log::debug!("flychat: stream refused: --max-channels channels exist");
        return plain(req, ctx, 503, UNAVAILABLE);
    };
    room_stream(ctx, reset, &replay, subscription, client_id)
}

/// A room's stream: its opening (the head, a `stream-reset` if due, the kept messages after the cursor), then
/// live messages.
fn room_stream<F: AsRef<[u8]>>(
    ctx: &Ctx,
    reset: bool,
    replay: &[F],
    subscription: crate::channels::Subscription,
    client_id: Box<str>,
) -> Action {
    let opening = opening(ctx, reset, replay.iter().map(AsRef::as_ref));
    Action::Stream(Box::new(Stream {
        api: Api::Flychat,
        opening,
        subscription,
        client_id,
        websocket: false,
        expires: None,
    }))
}

/// The original's rule for `stream-reset`: messages exist and the resume id is below the oldest kept one minus
/// one (messages between them are gone).
fn is_reset(resume: Option<i64>, oldest: Option<u64>) -> bool {
    resume
        .zip(oldest)
        .is_some_and(|(from, oldest)| i128::from(from) < i128::from(oldest) - 1)
}

/// A stream's opening: its head, `stream-open`, `stream-reset` when `reset`, then the `replay` frames.
fn opening<'f>(ctx: &Ctx, reset: bool, replay: impl Iterator<Item = &'f [u8]>) -> Vec<u8> {
    let mut opening = Vec::with_capacity(512);
    write_stream_head(&mut opening, ctx.date, &STREAM_HEAD);
    opening.extend_from_slice(b"event: stream-open\n\n");
    if reset {
        opening.extend_from_slice(b"event: stream-reset\n\n");
    }
    for frame in replay {
        opening.extend_from_slice(frame);
    }
    opening
}

/// GET as JSON: `{"messages":[..],"lastEventId":N}⏎`, the kept messages and the last id (0 for an empty room).
fn read_json(req: &Request, ctx: &mut Ctx, room: &str) -> Action {
    let Some(shared) = ctx.broker.shared() else {
        let (last_id, kept) = ctx.apps.flychat.snapshot(room);
        let body = json_answer(last_id, kept.iter().map(Saved::json));
        return respond(req, ctx, 200, Some("application/json"), &body, &[]);
    };
    match nodes::read(ctx, shared, room) {
        Ok(Some(read)) => {
            let body = json_answer(read.last_id, read.messages.iter().map(|m| &m[..]));
            respond(req, ctx, 200, Some("application/json"), &body, &[])
        }
        Ok(None) => Action::Await,
        Err(()) => plain(req, ctx, 503, UNAVAILABLE),
    }
}

/// The JSON answer of a room: `{"messages":[..],"lastEventId":N}⏎`.
fn json_answer<'m>(last_id: u64, messages: impl Iterator<Item = &'m [u8]> + Clone) -> Vec<u8> {
    let mut body = Vec::with_capacity(64 + messages.clone().map(|m| m.len() + 1).sum::<usize>());
    body.extend_from_slice(b"{\"messages\":[");
    for (i, message) in messages.enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(message);
    }
    body.extend_from_slice(b"],\"lastEventId\":");
    body.extend_from_slice(last_id.to_string().as_bytes());
    body.extend_from_slice(b"}\n");
    body
}

// ---- values ------------------------------------------------------------------------------------------------------

/// A random (version 4) UUID, lower-case and hyphenated, as the original's `uuid/v4`.
fn uuid_v4(ids: &mut IdSource) -> String {
    let mut bytes = [0u8; 16];
    if getrandom::getrandom(&mut bytes).is_err() {
        // A provisional id needs to be unique, not secret: the worker's id generator will do.
        let (high, low) = bytes.split_at_mut(8);
        high.copy_from_slice(&ids.next_u64().to_le_bytes());
        low.copy_from_slice(&ids.next_u64().to_le_bytes());
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(36);
    for (i, byte) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    out
}

// ---- responses ---------------------------------------------------------------------------------------------------

/// A plain-text answer, as the original's errors (`Bad Request⏎`, `Not Found⏎`).
fn plain(req: &Request, ctx: &Ctx, status: u16, body: &str) -> Action {
    respond(req, ctx, status, Some("text/plain"), body.as_bytes(), &[])
}

/// Renews the expiry of the shared state this node owns (see `api::hooks::refresh_shared`): none. A room is kept
/// in Redis as the original's database kept it, owned by no node, and a stream holds nothing in Redis of its own
/// (`nodes`), so a node that dies leaves nothing that would answer for it.
pub fn refresh_shared(_shared: &dyn crate::broker::shared::Shared, _ctx: &mut Ctx) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_split_the_path_as_the_original() {
        let cases: [(&[u8], &str); 16] = [
            (b"/", "home"),
            (b"/lobby", "room lobby"),
            (b"/rooms", "room rooms"),
            (b"/js", "room js"),
            (b"/lobby/", "404"),
            (b"/a/b", "404"),
            (b"/js/eventsource.min.js", "script"),
            (b"/js/url-polyfill.min.js", "script"),
            (b"/js/reconnecting-eventsource.js", "script"),
            (b"/js/other.js", "404"),
            (b"/rooms/lobby/messages/", "messages lobby"),
            (b"/rooms//messages/", "messages "),
            (b"/rooms/lobby/messages", "404"),
            (b"/rooms/lobby/messages/x", "404"),
            (b"/rooms/lobby", "404"),
            (b"/rooms/", "404"),
        ];
        for (path, want) in cases {
            let got = match Route::parse(path) {
                Route::Home => "home".to_string(),
                Route::Room(room) => format!("room {}", String::from_utf8_lossy(room)),
                Route::Script(_) => "script".to_string(),
                Route::Messages(room) => format!("messages {}", String::from_utf8_lossy(room)),
                Route::NotFound => "404".to_string(),
            };
            assert_eq!(got, want, "{}", String::from_utf8_lossy(path));
        }
    }

    #[test]
    fn saved_messages_are_one_frame_with_their_json_inside() {
        let saved = Saved::new(3, "p", "a\nb", "x\"y", "d");
        let json = br#"{"id":3,"provisionalId":"p","from":"a\nb","text":"x\"y","date":"d"}"#;
        assert_eq!(saved.json(), &json[..]);
        let mut frame = b"event: message\nid: 3\ndata: ".to_vec();
        frame.extend_from_slice(json);
        frame.extend_from_slice(b"\n\n");
        assert_eq!(&*saved.frame, &frame[..]);
    }

    #[test]
    fn uuids_are_version_4() {
        let mut ids = IdSource::new();
        let a = uuid_v4(&mut ids);
        let b = uuid_v4(&mut ids);
        assert_ne!(a, b);
        for id in [a, b] {
            let groups: Vec<&str> = id.split('-').collect();
            let lengths: Vec<usize> = groups.iter().map(|g| g.len()).collect();
            assert_eq!(lengths, [8, 4, 4, 4, 12], "{id}");
            assert!(id
                .bytes()
                .all(|b| b == b'-' || b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
            assert!(groups[2].starts_with('4'), "{id}");
            assert!(
                matches!(groups[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'),
                "{id}"
            );
        }
    }

    #[test]
    fn resume_comparisons_span_every_parse_result() {
        assert!(is_after(1, None));
        assert!(is_after(1, Some(0)));
        assert!(!is_after(1, Some(1)));
        assert!(is_after(1, Some(i64::MIN)));
        assert!(!is_after(5, Some(i64::MAX)));
        assert!(is_after(u64::MAX, Some(i64::MAX)));
    }
}
