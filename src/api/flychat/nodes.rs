//! flychat on several nodes (`--broker redis://…`): each room's last id and its last 50 messages live in Redis,
//! so every node answers a room alike and a browser that reconnects to another node resumes as on one node.
//!
//! Keys, all under the room's core channel as tag (`PREFIX{flychat/ROOM}:…`), so one script reaches them and the
//! channel's stream together: `flychat-last` (the room's last id, counted by `INCR`) and `flychat-messages` (the
//! kept messages' JSON, oldest first, at most `KEPT`). A room is kept as the original's database kept it: no
//! expiry, since no node owns it; what a dead node leaves is only its streams, which end with it.
//!
//! **Ids rise within a room whichever node posts**: `POST` is one script that takes the next id, keeps the
//! message and sends its frame on the room's channel, so the channel's events are in id order. **No gap, no
//! duplicate**: a stream first holds the room's channel on its node, then one script reads the kept messages and
//! the channel's last event id together, and the stream subscribes after that id: every message is either in
//! the opening or sent after it, never both.
//!
//! Differences from one node: the rooms are bounded by Redis's memory (each keeps at most 50 messages of at most
//! `--max-body` bytes), not by `--max-channels` and `--history-max-bytes`, which bound one node's own rooms.

use super::{
    channel_of, is_after, is_reset, json_tail, message_frame, plain, Action, Ctx, Request, KEPT,
    UNAVAILABLE,
};
use crate::broker::shared::{Lua, Shared, Value};
use crate::broker::{BrokerError, Reply};
use crate::channels::TableError;

/// Saves a message and sends it: the room's next id, the message kept (the oldest beyond `KEPT` dropped), its
/// frame sent on the room's channel; answers the saved JSON.
/// KEYS: the channel's stream and shard, the room's last id, its messages. ARGV: the JSON after the id, `KEPT`.
static POST: Lua = Lua::new(
    r#"
local id = string.format('%d', redis.call('INCR', KEYS[3]))
local json = '{"id":' .. id .. ARGV[1]
redis.call('RPUSH', KEYS[4], json)
redis.call('LTRIM', KEYS[4], -tonumber(ARGV[2]), -1)
spout_send(KEYS[1], KEYS[2], 's', '', 'event: message\nid: ' .. id .. '\ndata: ' .. json .. '\n\n')
return json
"#,
);

/// Reads a room: the channel's last event id (the cursor a stream subscribes after), the room's last id, then
/// its kept messages, oldest first.
/// KEYS: the channel's stream, the room's last id, its messages.
static READ: Lua = Lua::new(
    r"
local out = {spout_last(KEYS[1]), redis.call('GET', KEYS[2]) or '0'}
for _, json in ipairs(redis.call('LRANGE', KEYS[3], 0, -1)) do
  out[#out + 1] = json
end
return out
",
);

/// A room as `READ` found it.
pub(super) struct Read {
    /// The cursor after which the room's channel has only messages not in `messages`.
    cursor: Value,
    pub(super) last_id: u64,
    /// The kept messages' JSON, oldest first.
    pub(super) messages: Vec<Vec<u8>>,
}

/// The keys `READ` and `POST` name after the channel's: the room's last id and its messages.
fn room_keys(shared: &dyn Shared, channel: &str) -> [String; 2] {
    [
        shared.key(channel, "flychat-last"),
        shared.key(channel, "flychat-messages"),
    ]
}

/// What a failed Redis operation is logged as; the client gets 503 `Service Unavailable⏎`.
fn unavailable(ctx: &mut Ctx, what: &str, e: BrokerError) {
    if e == BrokerError::Table(TableError::Overloaded) {
        ctx.counters.overloaded += 1;
    }
    log::debug!("flychat: {what} failed: Redis is unavailable or this node is overloaded");
}

/// Saves a message (`[provisional id, from, text, date]`) in its room: `Ok(Some(json))`, the saved message's
/// JSON; `Ok(None)` when the answer comes later (the request waits for it); `Err` for a 503.
pub(super) fn post(
    ctx: &mut Ctx,
    shared: &dyn Shared,
    room: &str,
    [provisional_id, from, text, date]: [&str; 4],
) -> Result<Option<Vec<u8>>, ()> {
    let channel = channel_of(room);
    let keys = shared.channel(&channel);
    let [last, messages] = room_keys(shared, &channel);
    let tail = json_tail(provisional_id, from, text, date);
    let args = vec![tail.into_bytes(), KEPT.to_string().into_bytes()];
    match shared.eval(
        &POST,
        vec![keys.stream, keys.shard, last, messages],
        args,
        ctx.ask(),
    ) {
        Ok(Reply::Later) => Ok(None),
        Ok(Reply::Now(Value::Data(json))) => Ok(Some(json)),
        Ok(Reply::Now(other)) => {
            log::error!("flychat: the post script answered {other:?}");
            Err(())
        }
        Err(e) => {
            unavailable(ctx, "a post", e);
            Err(())
        }
    }
}

/// Reads a room: `Ok(None)` when the answer comes later, `Err` for a 503.
pub(super) fn read(ctx: &mut Ctx, shared: &dyn Shared, room: &str) -> Result<Option<Read>, ()> {
    let channel = channel_of(room);
    let [last, messages] = room_keys(shared, &channel);
    let keys = vec![shared.channel(&channel).stream, last, messages];
    match shared.eval(&READ, keys, Vec::new(), ctx.ask()) {
        Ok(Reply::Later) => Ok(None),
        Ok(Reply::Now(value)) => parse_read(value).map(Some).ok_or_else(|| {
            log::error!("flychat: the read script answered something else than a room");
        }),
        Err(e) => {
            unavailable(ctx, "a read", e);
            Err(())
        }
    }
}

/// `READ`'s answer: `[cursor, last id, json…]`.
fn parse_read(value: Value) -> Option<Read> {
    let Value::List(items) = value else {
        return None;
    };
    let mut items = items.into_iter();
    let cursor = items.next()?;
    let last_id = u64::try_from(items.next()?.int()?).ok()?;
    let messages = items
        .map(|item| match item {
            Value::Data(json) => Some(json),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Read {
        cursor,
        last_id,
        messages,
    })
}

/// The id of a kept message: the number its JSON starts with (`{"id":N,…`, as `POST` writes it).
fn id_of(json: &[u8]) -> Option<u64> {
    let digits = json.strip_prefix(b"{\"id\":")?;
    let end = digits.iter().position(|b| !b.is_ascii_digit())?;
    std::str::from_utf8(digits.get(..end)?).ok()?.parse().ok()
}

/// A stream: this node holds the room's channel, `READ` gives the opening and the cursor, and the stream
/// subscribes after the cursor (see the module doc).
pub(super) fn stream(
    req: &Request,
    ctx: &mut Ctx,
    shared: &dyn Shared,
    room: &str,
    resume: Option<i64>,
) -> Action {
    let channel = channel_of(room);
    match shared.hold(&[&channel], ctx.peer, ctx.ask()) {
        Ok(Reply::Now(())) => {}
        Ok(Reply::Later) => return Action::Await,
        Err(e) => {
            unavailable(ctx, "holding a room's channel", e);
            return plain(req, ctx, 503, UNAVAILABLE);
        }
    }
    let read = match read(ctx, shared, room) {
        Ok(Some(read)) => read,
        Ok(None) => return Action::Await,
        Err(()) => return plain(req, ctx, 503, UNAVAILABLE),
    };
    let Some(cursor) = read.cursor.event_id() else {
        log::error!("flychat: the read script's cursor is not a stream id");
        return plain(req, ctx, 503, UNAVAILABLE);
    };
    let kept: Vec<(u64, &[u8])> = read
        .messages
        .iter()
        .filter_map(|json| Some((id_of(json)?, &json[..])))
        .collect();
    let reset = is_reset(resume, kept.first().map(|(id, _)| *id));
    let replay: Vec<Vec<u8>> = kept
        .iter()
        .filter(|(id, _)| is_after(*id, resume))
        .map(|(id, json)| message_frame(*id, json).0)
        .collect();
    let client_id = ctx.ids.next_client_id();
    let subscription = match shared.subscribe(ctx.worker, &[(&channel, Some(cursor))], &client_id) {
        Ok(subscription) => subscription,
        Err(e) => {
            unavailable(ctx, "a subscription", e);
            return plain(req, ctx, 503, UNAVAILABLE);
        }
    };
    super::room_stream(ctx, reset, &replay, subscription, client_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_read_from_the_saved_json() {
        let cases: [(&[u8], Option<u64>); 6] = [
            (br#"{"id":1,"provisionalId":"p"}"#, Some(1)),
            (br#"{"id":18446744073709551615,"x":1}"#, Some(u64::MAX)),
            (br#"{"id":18446744073709551616,"x":1}"#, None),
            (br#"{"id":,"x":1}"#, None),
            (br#"{"id":12"#, None),
            (br#"{"from":"a","id":1}"#, None),
        ];
        for (json, want) in cases {
            assert_eq!(id_of(json), want, "{}", String::from_utf8_lossy(json));
        }
    }

    #[test]
    fn a_read_is_a_cursor_a_last_id_and_messages() {
        let data = |s: &str| Value::Data(s.as_bytes().to_vec());
        let read = parse_read(Value::List(vec![
            data("5-0"),
            data("7"),
            data("{\"id\":6}"),
            data("{\"id\":7}"),
        ]))
        .expect("a room");
        assert_eq!(read.last_id, 7);
        assert_eq!(
            read.messages,
            [b"{\"id\":6}".to_vec(), b"{\"id\":7}".to_vec()]
        );
        let empty = parse_read(Value::List(vec![data("0-0"), Value::Int(0)])).expect("empty");
        assert_eq!((empty.last_id, empty.messages.len()), (0, 0));
        for bad in [
            Value::Nil,
            Value::List(vec![data("0-0")]),
            Value::List(vec![data("0-0"), data("x")]),
            Value::List(vec![data("0-0"), Value::Int(1), Value::Int(2)]),
        ] {
            assert!(parse_read(bad).is_none());
        }
    }
}
