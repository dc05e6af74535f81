//! node-sse-server's API on several nodes (`--broker redis://…`): the state the original kept in its process, each
//! channel's last value, the presence list and the automatic client id counter, lives in Redis, changed by the Lua
//! scripts below, so that every node answers alike. The single-node path (`--broker local`) is the parent
//! module's, unchanged.
//!
//! One shard for everything: node-sse's answers depend on all of its state at once (a subscribe reads the last
//! values of several channels, takes an id from the counter and changes the presence list; a batch publish checks
//! the bounds of all last values together before it changes any), so all of it shares one hash tag, `node-sse/`,
//! the channels' streams included: a channel `C` is the core channel `node-sse/}/C` and the presence channel is
//! `node-sse/} presence`, whose keys (`PREFIX{node-sse/}/C}`) hash by the tag `node-sse/` whatever `C` holds,
//! since a hash tag ends at its first `}`. Each subscribe, publish, leave and refresh is then one script: the
//! cursors a new stream subscribes after, the last values it is shown and the presence list it causes are read and
//! changed in one step, so its `lastEvent` frames and the live events after them never overlap or leave a gap, and
//! presence lists go out in the order of the changes they report, whichever node made them. The cost is that
//! node-sse's traffic is on one shard of the cluster (the original was one process).
//!
//! Keys (`PREFIX{node-sse/}:…`): `meta` (a hash: `counter`, the last automatic id; `seq`, the insertion count that
//! orders non-index ids; `bytes`, the size the bounds count), `presence` (a sorted set of the connected ids, scored
//! so that its order is JavaScript's key order: an array index by its value, any other id by 2^32 plus its
//! insertion number), `sockets` (a hash: open sockets per id, on all nodes), `last` (a hash: each channel's last
//! value as `JSON.stringify` writes it, for `GET /lastEvent`) and `text` (the same as `payload + ""`, for the
//! `lastEvent` frames), `nodes` (a sorted set: each node process holding sockets, scored by when it expires) and
//! `node:NAME` (a hash per node process: its open sockets per id). A node is named after `--node-name` and its
//! process, so that a node restarted under the same name does not take over the sockets of its previous life.
//!
//! Expiry: a node renews its `nodes` entry and its `node:` hash every third of `--broker-node-ttl`
//! (`refresh_shared`), and every script first sweeps the nodes whose entry expired: their sockets are taken off
//! the counts, and each id whose last socket that was leaves the presence list with an `online-presence` frame, as
//! when its last socket closes. Should a dead node's hash be gone already, the counts are rebuilt from the live
//! nodes' hashes. A node that was only cut off from Redis for longer than the TTL, and was swept, finds a mark left
//! by the sweep at its next refresh and counts its open streams again (kept per id in `State::open`); their ids
//! that had left come back with one `online-presence` frame. The other keys are renewed by every script and every
//! node's refresh, and expire ten TTLs after the last node stopped (as the original's state ended with its
//! process).

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::{express, js, push_frame, table_error, Checked, NodeSse, State};
use crate::api::{Action, Ctx, Request, Stream};
use crate::broker::shared::{Lua, Shared, Value as Answer};
use crate::broker::{BrokerError, Reply};
use crate::config::Api;
use crate::message::EventId;

/// The hash tag of all of node-sse's keys; a core channel name starting with `node-sse/}` has it too.
const TAG: &str = "node-sse/";
/// The core channel every node-sse stream subscribes to for `online-presence`, on the Redis path.
const PRESENCE_CHANNEL: &str = "node-sse/} presence";

/// The core channel of node-sse channel `channel` on the Redis path.
fn core_name(channel: &str) -> String {
    format!("node-sse/}}/{channel}")
}

/// The Lua every script starts with: the keys and arguments all of them take (KEYS 1-9, ARGV 1-2: the node
/// process's name and the TTL in ms), JSON string escaping as `JSON.stringify` does it, the presence frame, and the
/// sweep of dead nodes.
macro_rules! common_lua {
    () => {
        r#"local meta, presence, sockets, nodes, last, text, node_prefix, pstream, pshard =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local node, ttl = ARGV[1], tonumber(ARGV[2])
local mine = node_prefix .. node
local short = {['"'] = '\\"', ['\\'] = '\\\\', ['\b'] = '\\b', ['\f'] = '\\f', ['\n'] = '\\n', ['\r'] = '\\r',
  ['\t'] = '\\t'}
local function json_string(s)
  return '"' .. string.gsub(s, '[%z\1-\31"\\]', function(c)
    return short[c] or string.format('\\u%04x', string.byte(c))
  end) .. '"'
end
local function announce()
  local ids = redis.call('ZRANGE', presence, 0, -1)
  for i, id in ipairs(ids) do ids[i] = json_string(id) end
  local list = '[' .. table.concat(ids, ',') .. ']'
  spout_send(pstream, pshard, 's', '',
    'event: online-presence\ndata: {"type":"online-presence","payload":' .. json_string(list) .. '}\n\n')
end
local function drop(id, n)
  if redis.call('HINCRBY', sockets, id, -n) > 0 then return false end
  redis.call('HDEL', sockets, id)
  redis.call('ZREM', presence, id)
  return true
end
local function rebuild()
  local totals = {}
  for _, name in ipairs(redis.call('ZRANGE', nodes, 0, -1)) do
    local counts = redis.call('HGETALL', node_prefix .. name)
    for i = 1, #counts, 2 do
      totals[counts[i]] = (totals[counts[i]] or 0) + tonumber(counts[i + 1])
    end
  end
  redis.call('DEL', sockets)
  for id, count in pairs(totals) do redis.call('HSET', sockets, id, count) end
  for _, id in ipairs(redis.call('ZRANGE', presence, 0, -1)) do
    if totals[id] == nil then
      redis.call('ZREM', presence, id)
      announce()
    end
  end
end
local function sweep(now)
  local lost = false
  for _, name in ipairs(redis.call('ZRANGEBYSCORE', nodes, '-inf', now)) do
    if name ~= node then
      local hash = node_prefix .. name
      local counts = redis.call('HGETALL', hash)
      redis.call('DEL', hash)
      redis.call('SET', hash .. ' swept', 1, 'PX', 10 * ttl)
      redis.call('ZREM', nodes, name)
      lost = lost or #counts == 0
      for i = 1, #counts, 2 do
        if drop(counts[i], tonumber(counts[i + 1])) then announce() end
      end
    end
  end
  if lost then rebuild() end
end
local function touch(now)
  for _, key in ipairs({meta, presence, sockets, nodes, last, text}) do
    redis.call('PEXPIRE', key, 10 * ttl)
  end
  if redis.call('EXISTS', mine) == 1 then
    redis.call('ZADD', nodes, now + ttl, node)
    redis.call('PEXPIRE', mine, 2 * ttl)
  end
end
"#
    };
}

/// Subscribe (ARGV 3-6: `--max-channels`, `--history-max-bytes`, the given id or `''` for a counted one, the id's
/// array index or `''`; then the distinct channel names, whose streams are KEYS 10…): `{'full'}` when the channels
/// it would create do not fit, else `{'ok', id, counted, presence cursor, (cursor, last text) per channel}`.
static SUBSCRIBE: Lua = Lua::new(concat!(
    common_lua!(),
    r#"local now = spout_now()
sweep(now)
local max_channels, max_bytes, id, index = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5], ARGV[6]
local distinct = #KEYS - 9
local added, grown = 0, 0
for i = 1, distinct do
  local name = ARGV[6 + i]
  if redis.call('HEXISTS', last, name) == 0 then
    added = added + 1
    grown = grown + #name + 4
  end
end
local bytes = tonumber(redis.call('HGET', meta, 'bytes') or '0')
if redis.call('HLEN', last) + added > max_channels or bytes + grown > max_bytes then
  return {'full'}
end
local counted = 0
if id == '' then
  local n = redis.call('HINCRBY', meta, 'counter', 1)
  id, counted = tostring(n), 1
  if n < 4294967295 then index = id end
end
local out = {'ok', id, counted, spout_last(pstream)}
for i = 1, distinct do
  local name = ARGV[6 + i]
  if redis.call('HSETNX', last, name, '"{}"') == 1 then
    redis.call('HSET', text, name, '{}')
    redis.call('HINCRBY', meta, 'bytes', #name + 4)
  end
  out[#out + 1] = spout_last(KEYS[9 + i])
  out[#out + 1] = redis.call('HGET', text, name)
end
if redis.call('HINCRBY', sockets, id, 1) == 1 then
  if index == '' then index = 4294967296 + redis.call('HINCRBY', meta, 'seq', 1) end
  redis.call('ZADD', presence, 'NX', index, id)
end
redis.call('HINCRBY', mine, id, 1)
announce()
touch(now)
return out
"#
));

/// A socket of the id ARGV 3 on this node closed.
static LEAVE: Lua = Lua::new(concat!(
    common_lua!(),
    r#"local now = spout_now()
sweep(now)
local id = ARGV[3]
if tonumber(redis.call('HGET', mine, id) or '0') > 0 then
  if redis.call('HINCRBY', mine, id, -1) <= 0 then redis.call('HDEL', mine, id) end
  if redis.call('EXISTS', mine) == 0 then redis.call('ZREM', nodes, node) end
  if drop(id, 1) then announce() end
end
touch(now)
return 'ok'
"#
));

/// This node process is alive; the dead are swept. ARGV 3…: this node's open sockets, three per id (the id, its
/// sockets here, its array index or `''`): should another node have swept this one (it could not reach Redis for
/// a TTL), the sockets it still has are counted again and their ids that had left come back.
static REFRESH: Lua = Lua::new(concat!(
    common_lua!(),
    r#"local now = spout_now()
sweep(now)
if redis.call('DEL', mine .. ' swept') == 1 then
  local joined = false
  for at = 3, #ARGV - 2, 3 do
    local id, count, index = ARGV[at], tonumber(ARGV[at + 1]), ARGV[at + 2]
    local missing = count - tonumber(redis.call('HGET', mine, id) or '0')
    if missing > 0 then
      redis.call('HINCRBY', mine, id, missing)
      if redis.call('HINCRBY', sockets, id, missing) == missing then
        if index == '' then index = 4294967296 + redis.call('HINCRBY', meta, 'seq', 1) end
        redis.call('ZADD', presence, 'NX', index, id)
        joined = true
      end
    end
  end
  if joined then announce() end
end
touch(now)
return 'ok'
"#
));

/// The last value of channel ARGV 3 as `JSON.stringify` writes it; nil for an unknown channel.
static LAST: Lua = Lua::new(concat!(
    common_lua!(),
    r#"return redis.call('HGET', last, ARGV[3])
"#
));

/// A validated batch (ARGV 3-4: the bounds, then six per event: its channel's place among KEYS 10… (stream and
/// shard per distinct channel, from 1), its name, the raw payload as `JSON.stringify` and as `payload + ""` writes
/// it, the `{type, payload}` text a known channel keeps, and the frame it is delivered as): `'full'` when the bounds
/// would be passed (nothing changed), else `'ok'`.
static PUBLISH: Lua = Lua::new(concat!(
    common_lua!(),
    r#"local max_channels, max_bytes = tonumber(ARGV[3]), tonumber(ARGV[4])
local events = (#ARGV - 4) / 6
local stored, names = {}, {}
for e = 0, events - 1 do
  local at = 4 + e * 6
  local name = ARGV[at + 2]
  if stored[name] == nil and redis.call('HEXISTS', last, name) == 0 then
    stored[name] = ARGV[at + 3]
    names[#names + 1] = name
  else
    if stored[name] == nil then names[#names + 1] = name end
    stored[name] = json_string(ARGV[at + 5])
  end
end
local added, grown = 0, 0
for _, name in ipairs(names) do
  local old = redis.call('HGET', last, name)
  if old then
    grown = grown + #stored[name] - #old
  else
    added, grown = added + 1, grown + #name + #stored[name]
  end
end
local bytes = tonumber(redis.call('HGET', meta, 'bytes') or '0')
if redis.call('HLEN', last) + added > max_channels or bytes + grown > max_bytes then
  return 'full'
end
for e = 0, events - 1 do
  local at = 4 + e * 6
  local k, name = tonumber(ARGV[at + 1]), ARGV[at + 2]
  if redis.call('HEXISTS', last, name) == 1 then
    redis.call('HSET', last, name, json_string(ARGV[at + 5]))
    redis.call('HSET', text, name, ARGV[at + 5])
    spout_send(KEYS[8 + 2 * k], KEYS[9 + 2 * k], 's', '', ARGV[at + 6])
  else
    redis.call('HSET', last, name, ARGV[at + 3])
    redis.call('HSET', text, name, ARGV[at + 4])
  end
end
redis.call('HINCRBY', meta, 'bytes', grown)
touch(spout_now())
return 'ok'
"#
));

/// The name this node process owns its sockets under: `--node-name` and the process (see the module doc).
fn owner(node_sse: &NodeSse, shared: &dyn Shared) -> String {
    node_sse
        .owner
        .get_or_init(|| {
            let started = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            format!("{}/{}.{started:x}", shared.node(), std::process::id())
        })
        .clone()
}

/// The keys every script takes (KEYS 1-9), then the streams of `channels` (and their shard channels too, when
/// `shards`).
fn keys(shared: &dyn Shared, channels: &[&str], shards: bool) -> Vec<String> {
    let presence = shared.channel(PRESENCE_CHANNEL);
    let mut keys: Vec<String> = [
        "meta", "presence", "sockets", "nodes", "last", "text", "node:",
    ]
    .iter()
    .map(|name| shared.key(TAG, name))
    .collect();
    keys.extend([presence.stream, presence.shard]);
    for channel in channels {
        let channel_keys = shared.channel(&core_name(channel));
        keys.push(channel_keys.stream);
        if shards {
            keys.push(channel_keys.shard);
        }
    }
    keys
}

/// The arguments every script takes (ARGV 1-2), then `rest`.
fn args(node_sse: &NodeSse, shared: &dyn Shared, rest: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let ttl = u64::try_from(shared.ttl().as_millis()).unwrap_or(u64::MAX);
    let mut args = vec![
        owner(node_sse, shared).into_bytes(),
        ttl.to_string().into_bytes(),
    ];
    args.extend(rest);
    args
}

/// Redis did not answer (or the node's table refused): the original's 503 page.
fn unavailable(req: &Request, ctx: &mut Ctx, e: BrokerError) -> Action {
    match e {
        BrokerError::Table(e) => table_error(req, ctx, e),
        BrokerError::Unavailable => {
            log::debug!("node-sse 503: broker_unavailable");
            express::error_page(req, ctx, 503, true, None)
        }
    }
}

/// What the subscribe script answered, when it let the stream in.
struct Joined {
    id: String,
    counted: bool,
    presence: EventId,
    /// Per distinct channel: the cursor its stream subscribes after, and its last value as `payload + ""`.
    channels: Vec<(EventId, String)>,
}

impl Joined {
    /// `Err("full")` when the channels it would create do not fit, another `Err` for an answer that is not the
    /// script's.
    fn read(answer: &Answer) -> Result<Joined, &'static str> {
        let items = answer.list();
        match items.first().and_then(Answer::text) {
            Some("ok") => {}
            Some("full") => return Err("full"),
            _ => return Err("unexpected answer"),
        }
        let text = |at: usize| items.get(at).and_then(Answer::text);
        let id = text(1).ok_or("no id")?.to_string();
        let counted = items.get(2).and_then(Answer::int) == Some(1);
        let presence = items.get(3).and_then(Answer::event_id).ok_or("no cursor")?;
        let channels = items
            .get(4..)
            .unwrap_or_default()
            .chunks(2)
            .map(|pair| match pair {
                [cursor, last] => Some((cursor.event_id()?, last.text()?.to_string())),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()
            .ok_or("bad channel")?;
        Ok(Joined {
            id,
            counted,
            presence,
            channels,
        })
    }
}

/// `GET /subscribe` on several nodes, after the parent's checks: hold the channels, run the script, subscribe
/// after its cursors.
pub(super) fn subscribe(
    req: &Request,
    ctx: &mut Ctx,
    shared: &dyn Shared,
    names: &[&str],
    distinct: &[&str],
    given: Option<String>,
    head: Vec<u8>,
) -> Action {
    let mut core: Vec<String> = distinct.iter().map(|name| core_name(name)).collect();
    core.push(PRESENCE_CHANNEL.to_string());
    let core: Vec<&str> = core.iter().map(String::as_str).collect();
    match shared.hold(&core, ctx.peer, ctx.ask()) {
        Ok(Reply::Now(())) => {}
        Ok(Reply::Later) => return Action::Await,
        Err(e) => return unavailable(req, ctx, e),
    }
    let node_sse = &ctx.apps.node_sse;
    let index = given
        .as_deref()
        .and_then(js::array_index)
        .map_or_else(String::new, |i| i.to_string());
    let mut rest = vec![
        ctx.config.max_channels.to_string().into_bytes(),
        ctx.config.history_max_bytes.to_string().into_bytes(),
        given.unwrap_or_default().into_bytes(),
        index.into_bytes(),
    ];
    rest.extend(distinct.iter().map(|name| name.as_bytes().to_vec()));
    let keys = keys(shared, distinct, false);
    let args = args(node_sse, shared, rest);
    let answer = match shared.eval(&SUBSCRIBE, keys, args, ctx.ask()) {
        Ok(Reply::Now(answer)) => answer,
        Ok(Reply::Later) => return Action::Await,
        Err(e) => return unavailable(req, ctx, e),
    };
    let joined = match Joined::read(&answer) {
        Ok(joined) => joined,
        Err(why) => {
            if why != "full" {
                log::warn!("node-sse: the subscribe script answered {answer:?}: {why}");
            }
            return express::error_page(req, ctx, 503, true, None);
        }
    };
    let mut from: Vec<(&str, Option<EventId>)> = core
        .iter()
        .zip(&joined.channels)
        .map(|(name, (cursor, _))| (*name, Some(*cursor)))
        .collect();
    from.push((PRESENCE_CHANNEL, Some(joined.presence)));
    let subscription = match shared.subscribe(ctx.worker, &from, &joined.id) {
        Ok(subscription) => subscription,
        Err(e) => {
            // The script counted a socket nobody will close.
            leave(ctx, shared, &joined.id);
            return unavailable(req, ctx, e);
        }
    };
    *ctx.apps
        .node_sse
        .lock()
        .open
        .entry(joined.id.as_str().into())
        .or_insert(0) += 1;

    let id_json = match joined.id.parse::<u64>() {
        Ok(n) if joined.counted => json!(n),
        _ => Value::String(joined.id.clone()),
    };
    let mut opening = head;
    // The original's first write is a lone newline.
    opening.push(b'\n');
    let registered = json!({"clientId": id_json}).to_string();
    let data = json!({"type": "registered", "payload": registered});
    push_frame(&mut opening, "registered", &data.to_string());
    for name in names {
        let last = distinct
            .iter()
            .position(|d| d == name)
            .and_then(|at| joined.channels.get(at))
            .map_or("", |(_, last)| last.as_str());
        let data = json!({"channelName": name, "type": "lastEvent", "payload": last});
        push_frame(&mut opening, "lastEvent", &data.to_string());
    }
    Action::Stream(Box::new(Stream {
        api: Api::NodeSse,
        opening,
        subscription,
        client_id: joined.id.into(),
        websocket: false,
        expires: None,
    }))
}

/// A node-sse stream of this node ended: one socket of `client_id` less, and when it was the id's last on every
/// node, the new presence list to every stream.
pub(super) fn stream_closed(ctx: &Ctx, shared: &dyn Shared, client_id: &str) {
    ctx.apps.node_sse.lock().close(client_id);
    leave(ctx, shared, client_id);
}

/// One socket of `client_id` on this node less in Redis.
fn leave(ctx: &Ctx, shared: &dyn Shared, client_id: &str) {
    let node_sse = &ctx.apps.node_sse;
    let args = args(node_sse, shared, vec![client_id.as_bytes().to_vec()]);
    shared.eval_detached(&LEAVE, keys(shared, &[], false), args);
}

/// `POST /publish` on several nodes, for a validated batch that is not empty.
pub(super) fn publish(
    req: &Request,
    ctx: &mut Ctx,
    shared: &dyn Shared,
    checked: &[Checked<'_>],
) -> Action {
    let mut distinct: Vec<&str> = Vec::new();
    let mut rest = vec![
        ctx.config.max_channels.to_string().into_bytes(),
        ctx.config.history_max_bytes.to_string().into_bytes(),
    ];
    for event in checked {
        let at = match distinct.iter().position(|d| *d == event.key) {
            Some(at) => at,
            None => {
                distinct.push(&event.key);
                distinct.len() - 1
            }
        };
        let (last, data) = super::delivery(event);
        let mut frame = Vec::with_capacity(data.len() + 64);
        push_frame(&mut frame, &js::to_string(event.kind), &data);
        rest.extend([
            (at + 1).to_string().into_bytes(),
            event.key.as_bytes().to_vec(),
            js::stringify(event.payload).into_bytes(),
            js::to_string(event.payload).into_bytes(),
            last.into_bytes(),
            frame,
        ]);
    }
    let keys = keys(shared, &distinct, true);
    let args = args(&ctx.apps.node_sse, shared, rest);
    let answer = match shared.eval(&PUBLISH, keys, args, ctx.ask()) {
        Ok(Reply::Now(answer)) => answer,
        Ok(Reply::Later) => return Action::Await,
        Err(e) => return unavailable(req, ctx, e),
    };
    match answer.text() {
        Some("ok") => {
            ctx.counters.published += 1;
            express::reply(req, ctx, 200, true, &[], b"")
        }
        Some("full") => express::error_page(req, ctx, 503, true, None),
        _ => {
            log::warn!("node-sse: the publish script answered {answer:?}");
            express::error_page(req, ctx, 503, true, None)
        }
    }
}

/// `GET /lastEvent` on several nodes: the channel's value as `JSON.stringify` wrote it, `None` for an unknown
/// channel; `Err` is the answer to send instead (waiting, or 503).
pub(super) fn last_value(
    req: &Request,
    ctx: &mut Ctx,
    shared: &dyn Shared,
    channel: &str,
) -> Result<Option<String>, Action> {
    let args = args(
        &ctx.apps.node_sse,
        shared,
        vec![channel.as_bytes().to_vec()],
    );
    match shared.eval(&LAST, keys(shared, &[], false), args, ctx.ask()) {
        Ok(Reply::Now(answer)) => Ok(answer.text().map(str::to_string)),
        Ok(Reply::Later) => Err(Action::Await),
        Err(e) => Err(unavailable(req, ctx, e)),
    }
}

/// Renews this node process's sockets and the shared keys every third of the TTL, and sweeps dead nodes.
pub(super) fn refresh(shared: &dyn Shared, ctx: &Ctx, state: &mut State) {
    let every = shared.ttl() / 3;
    if state
        .refreshed
        .is_some_and(|at| ctx.now.saturating_duration_since(at) < every)
    {
        return;
    }
    state.refreshed = Some(ctx.now);
    let mut open = Vec::with_capacity(state.open.len() * 3);
    for (id, count) in &state.open {
        let index = js::array_index(id).map_or_else(String::new, |i| i.to_string());
        open.extend([
            id.as_bytes().to_vec(),
            count.to_string().into_bytes(),
            index.into_bytes(),
        ]);
    }
    let args = args(&ctx.apps.node_sse, shared, open);
    shared.eval_detached(&REFRESH, keys(shared, &[], false), args);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(text: &str) -> Answer {
        Answer::Data(text.as_bytes().to_vec())
    }

    #[test]
    fn the_subscribe_scripts_answer_is_read_whole_or_refused() {
        let ok = Answer::List(vec![
            data("ok"),
            data("7"),
            Answer::Int(1),
            data("0-0"),
            data("1700000000000-3"),
            data("{}"),
            data("0-0"),
            data("[object Object]"),
        ]);
        let joined = Joined::read(&ok).expect("ok");
        assert_eq!((joined.id.as_str(), joined.counted), ("7", true));
        assert_eq!(joined.presence, EventId::ZERO);
        let lasts: Vec<&str> = joined.channels.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(lasts, ["{}", "[object Object]"]);
        assert_eq!(
            joined.channels.first().map(|(c, _)| *c),
            EventId::from_stream_id("1700000000000-3")
        );

        let cases: [(Answer, &str); 6] = [
            (Answer::List(vec![data("full")]), "full"),
            (Answer::Nil, "unexpected answer"),
            (data("ok"), "unexpected answer"),
            (Answer::List(vec![data("ok")]), "no id"),
            (
                Answer::List(vec![data("ok"), data("a"), Answer::Int(0), data("x")]),
                "no cursor",
            ),
            (
                Answer::List(vec![
                    data("ok"),
                    data("a"),
                    Answer::Int(0),
                    data("0-0"),
                    data("0-0"),
                ]),
                "bad channel",
            ),
        ];
        for (answer, why) in cases {
            assert_eq!(Joined::read(&answer).err(), Some(why), "{answer:?}");
        }
    }
}
