//! The Lua scripts the broker runs on a channel's shard, the names of a channel's keys, and the reading of what
//! Redis answers. Each script touches only keys of one channel, which share a hash tag and so live on one shard:
//! a script is atomic there, and a cluster routes it by its first key.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::{Script, Value};

use crate::channels::{ChannelInfo, FedEvent, Fill, NewEvent, ResetReason};
use crate::message::{EventId, Frame, Wire};
use crate::ws::frame::{self as ws_frame, Opcode};

/// Appends events to a channel's stream and publishes each to its shard channel, atomically; then trims the
/// stream to `--history` events and `--history-ttl`, recording the highest id trimmed and why (Redis does not
/// record trims itself), so that a resume from before it is told.
/// KEYS: stream, shard channel, trim record. ARGV: max length, ttl in ms, then (event name, recipients, data) per
/// event. Returns, per event, its id; then the number of nodes subscribed.
pub(super) const PUBLISH: &str = r"
local ids = {}
local nodes = 0
for i = 3, #ARGV, 3 do
  local id = redis.call('XADD', KEYS[1], '*', 'e', ARGV[i], 't', ARGV[i + 1], 'd', ARGV[i + 2])
  nodes = redis.call('SPUBLISH', KEYS[2], 'E\n' .. id .. '\n' .. ARGV[i] .. '\n' .. ARGV[i + 1] .. '\n' .. ARGV[i + 2])
  ids[#ids + 1] = id
end
local ttl = tonumber(ARGV[2])
local now = redis.call('TIME')
local cutoff = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - ttl
local over = redis.call('XLEN', KEYS[1]) - tonumber(ARGV[1])
local dropped, why = nil, 'evicted'
if over > 0 then
  local old = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', over)
  dropped = old[#old][1]
end
local aged = redis.call('XREVRANGE', KEYS[1], '(' .. cutoff .. '-0', '-', 'COUNT', 1)
if #aged > 0 then
  local ms, seq = string.match(aged[1][1], '(%d+)-(%d+)')
  local dms, dseq = 0, 0
  if dropped then dms, dseq = string.match(dropped, '(%d+)-(%d+)') end
  if tonumber(ms) > tonumber(dms) or (ms == dms and tonumber(seq) > tonumber(dseq)) then
    dropped, why = aged[1][1], 'expired'
  end
end
if dropped then
  local ms, seq = string.match(dropped, '(%d+)-(%d+)')
  redis.call('XTRIM', KEYS[1], 'MINID', ms .. '-' .. (tonumber(seq) + 1))
  redis.call('SET', KEYS[3], dropped .. ' ' .. why, 'PX', ttl)
end
redis.call('PEXPIRE', KEYS[1], ttl)
ids[#ids + 1] = nodes
return ids
";

/// What a node needs to hold a channel from a cursor on: the stream's last id, its trim record, its deletion
/// record, and the entries after the cursor. KEYS: stream, deletion record, trim record. ARGV: cursor or ''.
pub(super) const FILL: &str = r"
local deleted = redis.call('GET', KEYS[2]) or ''
local trimmed = redis.call('GET', KEYS[3]) or ''
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, '', trimmed, deleted, {}} end
local info = redis.call('XINFO', 'STREAM', KEYS[1])
local last = ''
for i = 1, #info, 2 do
  if info[i] == 'last-generated-id' then last = info[i + 1] end
end
local entries = {}
if ARGV[1] ~= '' then entries = redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+') end
return {1, last, trimmed, deleted, entries}
";

/// Deletes a channel's stream and trim record, leaves a deletion record (its last id, for `--history-ttl`) and
/// tells every node. KEYS: stream, deletion record, shard channel, trim record. ARGV: ttl in ms. Returns whether
/// the channel had a stream.
pub(super) const DELETE: &str = r"
local existed = redis.call('EXISTS', KEYS[1])
if existed == 1 then
  local info = redis.call('XINFO', 'STREAM', KEYS[1])
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then redis.call('SET', KEYS[2], info[i + 1], 'PX', ARGV[1]) end
  end
  redis.call('DEL', KEYS[1], KEYS[4])
end
redis.call('SPUBLISH', KEYS[3], 'D')
return existed
";

/// Replaces one node's subscribers of a channel (client id and number of streams) with what it has now, listed
/// for `--broker-node-ttl`. KEYS: the node's presence hash, the channel's set of nodes. ARGV: node name, ttl in ms,
/// then (client id, count) pairs; none removes the node.
pub(super) const PRESENCE: &str = r"
redis.call('DEL', KEYS[1])
if #ARGV <= 2 then
  redis.call('SREM', KEYS[2], ARGV[1])
  return 0
end
for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1
";

/// A channel as every node sees it: whether it has a stream, its length, last id and memory, and every live
/// node's (client id, count) pairs; nodes whose presence expired are dropped from the set on the way.
/// KEYS: the channel's set of nodes, its stream. ARGV: the prefix of its nodes' presence hashes.
pub(super) const INFO: &str = r"
local clients = {}
for _, node in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local held = redis.call('HGETALL', ARGV[1] .. node)
  if #held == 0 then redis.call('SREM', KEYS[1], node) end
  for i = 1, #held do clients[#clients + 1] = held[i] end
end
local exists = redis.call('EXISTS', KEYS[2])
local length, last, bytes = 0, '', 0
if exists == 1 then
  length = redis.call('XLEN', KEYS[2])
  local info = redis.call('XINFO', 'STREAM', KEYS[2])
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then last = info[i + 1] end
  end
  bytes = redis.call('MEMORY', 'USAGE', KEYS[2]) or 0
end
return {exists, length, last, bytes, clients}
";

/// Adds channels to the registry `GET /channels` reads, or gives them more time there. KEYS: the registry's names
/// (a sorted set, every score 0, so that it sorts by name), their times (a hash). ARGV: (channel, for how many ms)
/// pairs. An entry's time only ever grows. Times are on the registry's shard's clock (`TIME`), as `LIST` reads
/// them: no node's clock takes part.
const REGISTER: &str = r"
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
for i = 1, #ARGV, 2 do
  redis.call('ZADD', KEYS[1], 0, ARGV[i])
  local known = tonumber(redis.call('HGET', KEYS[2], ARGV[i]) or '0')
  local expiry = ms + tonumber(ARGV[i + 1])
  if expiry > known then redis.call('HSET', KEYS[2], ARGV[i], expiry) end
end
return 1
";

/// One page of the registry: up to ARGV[2] names after ARGV[1] ('' from the first), in name order; names whose
/// time has passed (on this shard's clock) are dropped from it on the way. KEYS: as `REGISTER`. Returns the last
/// name looked at when the page was full (more may follow; '' otherwise), then the names still in time.
const LIST: &str = r"
local from = '-'
if ARGV[1] ~= '' then from = '(' .. ARGV[1] end
local count = tonumber(ARGV[2])
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local names = redis.call('ZRANGEBYLEX', KEYS[1], from, '+', 'LIMIT', 0, count)
local live = {}
for _, name in ipairs(names) do
  local expiry = tonumber(redis.call('HGET', KEYS[2], name) or '0')
  if expiry < ms then
    redis.call('ZREM', KEYS[1], name)
    redis.call('HDEL', KEYS[2], name)
  else
    live[#live + 1] = name
  end
end
local last = ''
if #names == count then last = names[#names] end
return {last, live}
";

/// The scripts, loaded once per broker thread.
#[derive(Clone)]
pub(super) struct Scripts {
    pub(super) publish: Script,
    pub(super) fill: Script,
    pub(super) delete: Script,
    pub(super) presence: Script,
    pub(super) info: Script,
    pub(super) register: Script,
    pub(super) list: Script,
}

impl Scripts {
    /// The scripts for a deployment whose events travel by `publish` (`SPUBLISH` on a cluster, `PUBLISH` on a
    /// single Redis).
    pub(super) fn new(publish: &str) -> Scripts {
        let sending =
            |script: &str| Script::new(&script.replace("'SPUBLISH'", &format!("'{publish}'")));
        Scripts {
            publish: sending(PUBLISH),
            fill: Script::new(FILL),
            delete: sending(DELETE),
            presence: Script::new(PRESENCE),
            info: Script::new(INFO),
            register: Script::new(REGISTER),
            list: Script::new(LIST),
        }
    }
}

/// A channel's names in Redis, under one hash tag so that they live on one shard. Each name is made when an
/// operation needs it (a publish uses three of them).
pub(super) struct Keys {
    /// The shard channel its events travel on (`PREFIX{channel}`); the other names extend it.
    pub(super) shard: String,
}

impl Keys {
    /// Its stream: history and ids.
    pub(super) fn stream(&self) -> String {
        format!("{}:h", self.shard)
    }

    /// Its deletion record: the last id it had when it was deleted.
    pub(super) fn deleted(&self) -> String {
        format!("{}:d", self.shard)
    }

    /// Its trim record: the highest id trimmed from its stream, and why (`evicted` or `expired`).
    pub(super) fn trimmed(&self) -> String {
        format!("{}:t", self.shard)
    }

    /// The set of nodes holding subscribers of it.
    pub(super) fn nodes(&self) -> String {
        format!("{}:nodes", self.shard)
    }

    /// The start of each node's presence hash (the node's name follows).
    pub(super) fn presence_prefix(&self) -> String {
        format!("{}:n:", self.shard)
    }
}

pub(super) fn keys(prefix: &str, channel: &str) -> Keys {
    Keys {
        shard: format!("{prefix}{{{channel}}}"),
    }
}

/// The registry of channels that `GET /channels` lists, on one shard: its hash tag holds `#`, which no channel
/// name may, so it is never a channel's.
pub(super) struct RegistryKeys {
    /// Every registered name, in a sorted set whose scores are all 0 (so it sorts by name).
    pub(super) names: String,
    /// Until when (ms) each may have history or subscribers, in a hash.
    pub(super) until: String,
}

pub(super) fn registry_keys(prefix: &str) -> RegistryKeys {
    RegistryKeys {
        names: format!("{prefix}{{#channels}}"),
        until: format!("{prefix}{{#channels}}:until"),
    }
}

/// The list script's reply: the last name looked at when more may follow, and the names still in time.
pub(super) fn parse_list(reply: Value) -> Option<(Option<String>, Vec<String>)> {
    let Value::Array(items) = reply else {
        return None;
    };
    let mut items = items.into_iter();
    let last = text(items.next()?)?;
    let live = match items.next()? {
        Value::Array(names) => names.into_iter().map(text).collect::<Option<Vec<_>>>()?,
        _ => return None,
    };
    Some(((!last.is_empty()).then_some(last), live))
}

/// The channel a shard channel name carries (`PREFIX{channel}`).
pub(super) fn channel_of<'a>(prefix: &str, shard: &'a str) -> Option<&'a str> {
    shard
        .strip_prefix(prefix)?
        .strip_prefix('{')?
        .strip_suffix('}')
}

pub(super) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

pub(super) fn text(value: Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes).ok(),
        Value::SimpleString(text) => Some(text),
        Value::VerbatimString { text, .. } => Some(text),
        _ => None,
    }
}

pub(super) fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Int(n) => Some(*n),
        _ => None,
    }
}

/// Optional text: empty means none.
pub(super) fn optional(text: &str) -> Option<Box<str>> {
    (!text.is_empty()).then(|| text.into())
}

pub(super) fn recipients(list: &str) -> Option<Box<[Box<str>]>> {
    (!list.is_empty()).then(|| list.split(',').map(Into::into).collect())
}

/// The info script's reply: `{has a stream, length, last id, bytes, [client id, count]…}`.
pub(super) fn parse_info(channel: &str, reply: Value) -> Option<Option<ChannelInfo>> {
    let Value::Array(items) = reply else {
        return None;
    };
    let mut items = items.into_iter();
    let exists = integer(&items.next()?)? == 1;
    let retained = usize::try_from(integer(&items.next()?)?).unwrap_or(0);
    let last_id = text(items.next()?).and_then(|id| EventId::from_stream_id(&id));
    let retained_bytes = items.next().as_ref().and_then(integer).unwrap_or(0);
    let Value::Array(held) = items.next()? else {
        return None;
    };
    let held: Vec<String> = held.into_iter().filter_map(text).collect();
    let mut subscribers = 0;
    let mut client_ids: Vec<Box<str>> = Vec::new();
    for pair in held.chunks(2) {
        let (Some(client), Some(count)) = (pair.first(), pair.get(1)) else {
            continue;
        };
        subscribers += count.parse::<usize>().unwrap_or(0);
        client_ids.push(client.as_str().into());
    }
    client_ids.sort();
    client_ids.dedup();
    if !exists && subscribers == 0 {
        return Some(None);
    }
    Some(Some(ChannelInfo {
        name: channel.into(),
        subscribers,
        client_ids,
        last_id,
        retained,
        retained_bytes: usize::try_from(retained_bytes).unwrap_or(0),
    }))
}

/// An event as a script sends it, one field per line (only the last may hold newlines): `E`, id, event name,
/// recipients, data for a native event (the publish script); `W`, id, kind, recipients, bytes for a compatible
/// API's frame (`spout_send`, see `broker::shared`).
pub(super) fn parse_event(channel: &str, payload: &str) -> Option<FedEvent> {
    let mut parts = payload.splitn(5, '\n');
    let native = match parts.next()? {
        "E" => true,
        "W" => false,
        _ => return None,
    };
    let id = EventId::from_stream_id(parts.next()?)?;
    let second = parts.next()?;
    let to = recipients(parts.next()?);
    let last = parts.next()?;
    let event = if native {
        NewEvent {
            channel: channel.into(),
            event: optional(second),
            data: last.into(),
            to,
            ..Default::default()
        }
    } else {
        compat_event(channel, second, to, last)?
    };
    Some(FedEvent {
        id,
        event,
        at: Instant::now(),
    })
}

/// A compatible API's event: the frame it made, by kind (`'s'` a whole SSE frame, `'w'` a WebSocket text message's
/// payload, framed here once for every subscriber of this node, `'t'` the shared end of a WebSocket payload).
fn compat_event(
    channel: &str,
    kind: &str,
    to: Option<Box<[Box<str>]>>,
    bytes: &str,
) -> Option<NewEvent> {
    let wire = match kind {
        "s" => Wire::Sse(Frame::from(bytes.as_bytes().to_vec())),
        "w" => {
            let mut frame = Vec::with_capacity(bytes.len() + 10);
            ws_frame::encode_frame(Opcode::Text, bytes.as_bytes(), &mut frame);
            Wire::WebSocket(Frame::from(frame))
        }
        "t" => Wire::WebSocketTail(Frame::from(bytes.as_bytes().to_vec())),
        _ => return None,
    };
    Some(NewEvent {
        channel: channel.into(),
        to,
        wire: Some(wire),
        ..Default::default()
    })
}

/// The fill script's reply: `{exists, last id, highest trimmed id, deletion record, entries}`.
pub(super) fn parse_fill(channel: &str, reply: Value, after: Option<EventId>) -> Option<Fill> {
    let Value::Array(items) = reply else {
        return None;
    };
    let mut items = items.into_iter();
    let exists = integer(&items.next()?)? == 1;
    let last = text(items.next()?).and_then(|id| EventId::from_stream_id(&id));
    let trimmed = text(items.next()?).and_then(|record| {
        let (id, why) = record.split_once(' ')?;
        let why = match why {
            "expired" => ResetReason::Expired,
            _ => ResetReason::Evicted,
        };
        Some((EventId::from_stream_id(id)?, why))
    });
    let deleted = text(items.next()?).and_then(|id| EventId::from_stream_id(&id));
    let Value::Array(entries) = items.next()? else {
        return None;
    };
    let now = Instant::now();
    let wall_ms = millis(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default(),
    );
    let mut events = Vec::with_capacity(entries.len());
    for entry in entries {
        let Value::Array(pair) = entry else {
            return None;
        };
        let mut pair = pair.into_iter();
        let id = EventId::from_stream_id(&text(pair.next()?)?)?;
        let Value::Array(fields) = pair.next()? else {
            return None;
        };
        let fields: Vec<String> = fields.into_iter().filter_map(text).collect();
        let field = |name: &str| {
            fields
                .chunks(2)
                .find(|kv| kv.first().is_some_and(|k| k == name))
                .and_then(|kv| kv.get(1))
                .map(String::as_str)
                .unwrap_or("")
        };
        let published_ms = id.stream_millis();
        let age = Duration::from_millis(wall_ms.saturating_sub(published_ms));
        let event = match field("w") {
            "" => NewEvent {
                channel: channel.into(),
                event: optional(field("e")),
                data: field("d").into(),
                to: recipients(field("t")),
                ..Default::default()
            },
            kind => compat_event(channel, kind, recipients(field("t")), field("d"))?,
        };
        events.push(FedEvent {
            id,
            event,
            at: now.checked_sub(age).unwrap_or(now),
        });
    }
    let lost = after.and_then(|cursor| {
        if deleted.is_some_and(|deleted| deleted > cursor) {
            return Some((deleted?, ResetReason::Deleted));
        }
        if !exists {
            // Nothing left of a channel the cursor came from: it expired with `--history-ttl`. A position of 0
            // (a stream over several channels that has had nothing of this one, which had no stream then) came
            // from no event: a channel that still has none lost none. (Had it had events since that all
            // expired, and their trim record with them, the client was away longer than `--history-ttl`.)
            return (cursor > EventId::ZERO).then(|| (cursor.successor(), ResetReason::Expired));
        }
        trimmed.filter(|(trimmed, _)| *trimmed > cursor)
    });
    Some(Fill { last, events, lost })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_channel_and_its_keys_share_one_hash_tag() {
        let keys = keys("spout:", "news");
        assert_eq!(keys.shard, "spout:{news}");
        assert_eq!(keys.stream(), "spout:{news}:h");
        assert_eq!(keys.deleted(), "spout:{news}:d");
        assert_eq!(keys.trimmed(), "spout:{news}:t");
        assert_eq!(channel_of("spout:", &keys.shard), Some("news"));
        assert_eq!(channel_of("other:", &keys.shard), None);
    }

    #[test]
    fn an_event_payload_reads_back_whole() {
        let fed =
            parse_event("c", "E\n1796297698226-3\nprice\nann,bob\nline 1\nline 2").expect("event");
        assert_eq!(
            fed.id,
            EventId::from_stream_id("1796297698226-3").expect("id")
        );
        assert_eq!(fed.event.event.as_deref(), Some("price"));
        assert_eq!(fed.event.data.as_ref(), "line 1\nline 2");
        let to: Vec<&str> = fed.event.to.iter().flatten().map(|c| &**c).collect();
        assert_eq!(to, ["ann", "bob"]);
        let plain = parse_event("c", "E\n1-1\n\n\n").expect("event");
        assert_eq!((plain.event.event, plain.event.to), (None, None));
        assert!(parse_event("c", "D").is_none());
        assert!(parse_event("c", "E\nnot-an-id\n\n\nx").is_none());
    }

    #[test]
    fn a_compatible_api_frame_reads_back_as_its_wire() {
        let sse = parse_event("pipely/61", "W\n5-1\ns\n\ndata: {\"a\":1}\n\n").expect("event");
        match sse.event.wire {
            Some(Wire::Sse(frame)) => assert_eq!(&frame[..], b"data: {\"a\":1}\n\n"),
            other => panic!("{other:?}"),
        }
        assert!(
            !sse.event.ephemeral,
            "kept, so that a stream can subscribe after an earlier id"
        );
        let ws = parse_event("keker/t", "W\n5-2\nw\nann\nhello").expect("event");
        match ws.event.wire {
            Some(Wire::WebSocket(frame)) => assert_eq!(&frame[..], b"\x81\x05hello"),
            other => panic!("{other:?}"),
        }
        assert_eq!(ws.event.to.as_deref().map(|to| to.len()), Some(1));
        let tail = parse_event("ws_push/c", "W\n5-3\nt\n\n}}").expect("event");
        assert!(matches!(tail.event.wire, Some(Wire::WebSocketTail(_))));
        assert!(parse_event("c", "W\n5-4\nx\n\nbytes").is_none());
    }
}
