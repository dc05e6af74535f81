//! keker on several nodes (`--broker redis://…`): its sessions and its cache for absent tokens live in Redis, so
//! that a `HELLO` on one node accepts a publish sent to another, a message cached on one node is handed to a
//! session that says `HELLO` on another, and the stats count every node's sessions.
//!
//! Everything lives under one tag, the broadcast channel's `keker/`, and every token's message goes out on that
//! one channel addressed to the client ids of the token's sessions (`spout_send`'s `to`). That is what lets each
//! operation be one script on one shard, in one step with the check it depends on: a publish sees the token's
//! sessions and either sends to them or caches, a `HELLO` registers its session and takes the cache, so a message
//! is never lost between the two nor delivered twice, whichever nodes they land on. The price is that every node
//! holding a keker session receives every keker message and delivers only its own sessions' (no sharding of
//! keker's traffic).
//!
//! Keys (`PREFIX{keker/}:…`):
//! - `sessions`: sorted set of `<client id> <token>` (a token has no whitespace), scored by the expiry in ms
//!   (Redis clock) that the owning node renews (`refresh_shared`); a member past it is swept away by the next
//!   script, so a dead node's sessions stop counting and receiving within `--broker-node-ttl`;
//! - `t:<token>`: set of the client ids of the token's sessions; `counts`: hash token → sessions;
//! - `left`: sorted set of the client ids of sessions that ended, scored by when they may be forgotten (a node
//!   TTL later): a `HELLO` or a refresh that reaches Redis after its session's end does not bring it back;
//! - `cache`: a Redis stream of the cached messages (`t` token, `b` body) in publish order, its entry ids giving
//!   when each was cached; `c:<token>`: list of the token's entry ids in that order; `cbytes`: the bodies' bytes.
//!
//! Every key carries an expiry (the node TTL for sessions, the cache TTL for the cache), extended by each write.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::{json, table_error, JsonData, Session, BROADCAST_CHANNEL, CLOSE_TRY_AGAIN, PING_PING};
use crate::api::{Action, Ctx, Request, WsAnswer};
use crate::broker::shared::{Lua, Shared, Value};
use crate::broker::{BrokerError, Reply};
use crate::channels::Subscription;
use crate::message::{ws_text_frame, Message};

use super::{CACHE_MAX_BYTES, CACHE_MAX_MESSAGES};

/// Most sessions one refresh script renews: a node with many sessions renews them in several short scripts
/// rather than one that holds the shard for long.
const REFRESH_BATCH: usize = 500;
/// Bytes of data per step when a new session catches up with the node's history (`caught_up`).
const CATCH_UP_BATCH: usize = 64 * 1024;

/// The Lua every script starts with: KEYS are the channel's stream and shard (`spout_send`) and the fixed keys
/// (`sessions`, `counts`, `cache`, `cbytes`, `left`); ARGV[1] is the key prefix the per-token keys are made from.
macro_rules! common_lua {
    () => {
        r"
local base = ARGV[1]
local sessions, counts, cache, cbytes, left = KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]

-- Gives `key` at least `ttl` ms to live (never shortens it: every node extends the same keys).
local function keep(key, ttl)
  if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
end

local function join(cid, token, expiry, ttl)
  local tokens = base .. 't:' .. token
  if redis.call('ZADD', sessions, expiry, cid .. ' ' .. token) == 1 then
    redis.call('SADD', tokens, cid)
    redis.call('HINCRBY', counts, token, 1)
  end
  keep(sessions, ttl); keep(counts, ttl); keep(tokens, ttl)
end

local function leave(cid, token)
  if redis.call('ZREM', sessions, cid .. ' ' .. token) == 1 then
    redis.call('SREM', base .. 't:' .. token, cid)
    if redis.call('HINCRBY', counts, token, -1) <= 0 then redis.call('HDEL', counts, token) end
  end
end

-- Removes the sessions whose node stopped renewing them, and the ends old enough to forget.
local function sweep(now)
  redis.call('ZREMRANGEBYSCORE', left, '-inf', now)
  for _, member in ipairs(redis.call('ZRANGEBYSCORE', sessions, '-inf', now)) do
    local cid, token = string.match(member, '^(%S+) (.*)$')
    if cid then leave(cid, token) else redis.call('ZREM', sessions, member) end
  end
end

local function drop(entry)
  redis.call('XDEL', cache, entry[1])
  redis.call('LREM', base .. 'c:' .. entry[2][2], 1, entry[1])
  redis.call('DECRBY', cbytes, #entry[2][4])
end

-- Drops what was cached `ttl` ms ago or earlier: each message on its own, oldest first.
local function expire(now, ttl)
  while true do
    local oldest = redis.call('XRANGE', cache, '-', '+', 'COUNT', 1)[1]
    if not oldest or tonumber(string.match(oldest[1], '^(%d+)')) + ttl > now then return end
    drop(oldest)
  end
end
"
    };
}

/// `HELLO`: ARGV client id, token, node TTL (ms), cache TTL (ms). Registers the session, and returns the cursor
/// the stream subscribes after, then the token's cached bodies in publish order (taken: no other session gets
/// them); returns nothing for a session that has already ended.
static HELLO: Lua = Lua::new(concat!(
    common_lua!(),
    r"
local cid, token, ttl, cache_ttl = ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local now = spout_now()
sweep(now)
if redis.call('ZSCORE', left, cid) then return {} end
join(cid, token, now + ttl, ttl)
local out = {spout_last(KEYS[1])}
if cache_ttl > 0 then expire(now, cache_ttl) end
local list = base .. 'c:' .. token
local ids = redis.call('LRANGE', list, 0, -1)
redis.call('DEL', list)
for _, id in ipairs(ids) do
  local entry = redis.call('XRANGE', cache, id, id)[1]
  if entry then
    out[#out + 1] = entry[2][4]
    redis.call('XDEL', cache, id)
    redis.call('DECRBY', cbytes, #entry[2][4])
  end
end
return out
"
));

/// `PUT /v1/publish`: ARGV token, body, cache TTL (ms), most cached messages, most cached bytes. Sends to the
/// token's sessions (1), or caches the body (0).
static PUBLISH: Lua = Lua::new(concat!(
    common_lua!(),
    r"
local token, body, cache_ttl = ARGV[2], ARGV[3], tonumber(ARGV[4])
local max_messages, max_bytes = tonumber(ARGV[5]), tonumber(ARGV[6])
local now = spout_now()
sweep(now)
local cids = redis.call('SMEMBERS', base .. 't:' .. token)
if #cids > 0 then
  spout_send(KEYS[1], KEYS[2], 'w', table.concat(cids, ','), body)
  return 1
end
if cache_ttl > 0 then
  expire(now, cache_ttl)
  local list = base .. 'c:' .. token
  local id = redis.call('XADD', cache, '*', 't', token, 'b', body)
  redis.call('RPUSH', list, id)
  redis.call('INCRBY', cbytes, #body)
  while redis.call('XLEN', cache) > max_messages or tonumber(redis.call('GET', cbytes) or '0') > max_bytes do
    local oldest = redis.call('XRANGE', cache, '-', '+', 'COUNT', 1)[1]
    if not oldest then break end
    drop(oldest)
  end
  keep(cache, cache_ttl); keep(list, cache_ttl); keep(cbytes, cache_ttl)
end
return 0
"
));

/// `PUT /v1/broadcast`: ARGV body. Sends to every session when there is one; returns the number of tokens.
static BROADCAST: Lua = Lua::new(concat!(
    common_lua!(),
    r"
sweep(spout_now())
local tokens = redis.call('HLEN', counts)
if tokens > 0 then spout_send(KEYS[1], KEYS[2], 'w', '', ARGV[2]) end
return tokens
"
));

/// The stats: token, sessions, token, sessions, … (live sessions only).
static STATS: Lua = Lua::new(concat!(
    common_lua!(),
    r"
sweep(spout_now())
return redis.call('HGETALL', counts)
"
));

/// A session ended: ARGV client id, token, node TTL (ms).
static LEAVE: Lua = Lua::new(concat!(
    common_lua!(),
    r"
local ttl = tonumber(ARGV[4])
redis.call('ZADD', left, spout_now() + ttl, ARGV[2])
keep(left, ttl)
leave(ARGV[2], ARGV[3])
return 0
"
));

/// A node renews its sessions: ARGV node TTL (ms), then client id and token of each. A session missing in Redis
/// (Redis restarted, or the node was too slow to renew it) is added back: it is live on its node, unless it has
/// ended meanwhile (the refresh was on its way when the session's end was sent).
static REFRESH: Lua = Lua::new(concat!(
    common_lua!(),
    r"
local ttl = tonumber(ARGV[2])
local now = spout_now()
sweep(now)
for i = 3, #ARGV - 1, 2 do
  if not redis.call('ZSCORE', left, ARGV[i]) then join(ARGV[i], ARGV[i + 1], now + ttl, ttl) end
end
return 0
"
));

/// The keys every script gets, and ARGV[1] (the prefix of the per-token keys).
fn keys(shared: &dyn Shared) -> (Vec<String>, Vec<u8>) {
    let channel = shared.channel(BROADCAST_CHANNEL);
    let keys = vec![
        channel.stream,
        channel.shard,
        shared.key(BROADCAST_CHANNEL, "sessions"),
        shared.key(BROADCAST_CHANNEL, "counts"),
        shared.key(BROADCAST_CHANNEL, "cache"),
        shared.key(BROADCAST_CHANNEL, "cbytes"),
        shared.key(BROADCAST_CHANNEL, "left"),
    ];
    (keys, shared.key(BROADCAST_CHANNEL, "").into_bytes())
}

fn millis(d: Duration) -> Vec<u8> {
    d.as_millis().to_string().into_bytes()
}

fn args(base: Vec<u8>, rest: &[&[u8]]) -> Vec<Vec<u8>> {
    let mut args = Vec::with_capacity(1 + rest.len());
    args.push(base);
    args.extend(rest.iter().map(|a| a.to_vec()));
    args
}

/// A token no `HELLO` can name (empty, containing whitespace, or not UTF-8) never has a session: a publish to it
/// is answered 404 without asking Redis, and caching it would only fill the cache.
pub(super) fn nameable(token: &[u8]) -> Option<&str> {
    std::str::from_utf8(token)
        .ok()
        .filter(|t| !t.is_empty() && !t.contains(char::is_whitespace))
}

// ---- WebSocket -------------------------------------------------------------------------------------------------

/// `HELLO token` on several nodes: the node follows `keker/`, the script registers the session and takes the
/// cache, and the stream subscribes after the script's cursor, so that every message sent after the script
/// reaches it live and every one before was cached and is in the reply.
pub(super) fn hello(
    token: &str,
    client_id: &str,
    session: &mut Session,
    shared: &dyn Shared,
    ctx: &mut Ctx,
) -> WsAnswer {
    match shared.hold(&[BROADCAST_CHANNEL], ctx.peer, ctx.ask()) {
        Ok(Reply::Now(())) => {}
        Ok(Reply::Later) => return parked(),
        Err(e) => return refused(e),
    }
    let (keys, base) = keys(shared);
    let args = args(
        base,
        &[
            client_id.as_bytes(),
            token.as_bytes(),
            &millis(shared.ttl()),
            &millis(ctx.config.keker_cache_ttl),
        ],
    );
    // Recorded before the script runs (again, harmlessly, on each run), so that a session that closes while it
    // waits is still removed from Redis.
    ctx.apps
        .keker
        .lock()
        .waiting
        .insert(client_id.into(), token.into());
    let answer = match shared.eval(&HELLO, keys, args, ctx.ask()) {
        Ok(Reply::Later) => return parked(),
        Ok(Reply::Now(value)) => Ok(value),
        Err(e) => Err(e),
    };
    let subscribed = answer.and_then(|value| {
        let items = value.list();
        let Some(cursor) = items.first().and_then(Value::event_id) else {
            log::warn!("keker: the HELLO script answered {value:?}");
            return Err(BrokerError::Unavailable);
        };
        let subscription =
            shared.subscribe(ctx.worker, &[(BROADCAST_CHANNEL, Some(cursor))], client_id)?;
        Ok((value, subscription))
    });
    let mut state = ctx.apps.keker.lock();
    state.waiting.remove(client_id);
    let (value, mut subscription) = match subscribed {
        Ok(subscribed) => subscribed,
        Err(e) => {
            // The script may have run (an answer that came too late): the session must not stay.
            leave_detached(shared, client_id, token);
            return refused(e);
        }
    };
    state.owned.insert(client_id.into(), token.into());
    drop(state);
    session.token = Some(token.into());
    let items = value.list();
    // The first ping goes out at once; cached messages follow in publish order, then those sent after the script
    // that reached this node before the subscription, then live ones.
    let mut reply = PING_PING.to_vec();
    for body in items.iter().skip(1) {
        if let Value::Data(body) = body {
            reply.extend_from_slice(&ws_text_frame(body));
        }
    }
    for message in caught_up(&mut subscription, client_id, ctx) {
        reply.extend_from_slice(message.ws_frame());
    }
    super::hello_answer(reply, subscription)
}

/// The events after the script's cursor that this node received before the stream subscribed, with the
/// subscription moved past them. A subscription made over an open WebSocket joins its channels live only
/// (`ChannelChange::Join` carries no replay), so they are taken from the node's history here: without this, the
/// first messages published right after a `HELLO` could be lost to it.
fn caught_up(subscription: &mut Subscription, client_id: &str, ctx: &Ctx) -> Vec<Arc<Message>> {
    let mut missed = Vec::new();
    let Some(mut cursor) = subscription.replay.take() else {
        return missed;
    };
    loop {
        let before: Vec<_> = subscription.channels.iter().map(|c| c.since).collect();
        let step = ctx.table.replay(
            &subscription.channels,
            client_id,
            &mut cursor,
            CATCH_UP_BATCH,
            &mut missed,
        );
        for (channel, reached) in subscription.channels.iter_mut().zip(step.reached) {
            channel.since = reached;
        }
        // A step that moved no channel would be repeated forever.
        let moved = subscription
            .channels
            .iter()
            .zip(&before)
            .any(|(c, since)| c.since != *since);
        if step.done || !moved {
            return missed;
        }
    }
}

fn parked() -> WsAnswer {
    WsAnswer {
        parked: true,
        ..WsAnswer::default()
    }
}

/// A `HELLO` that could not be registered closes the session with 1013 "try again later", as one the channel
/// table refuses on one node.
fn refused(e: BrokerError) -> WsAnswer {
    log::debug!("keker: HELLO refused: {e:?}");
    WsAnswer {
        reply: CLOSE_TRY_AGAIN.to_vec(),
        close: true,
        ..WsAnswer::default()
    }
}

fn leave_detached(shared: &dyn Shared, client_id: &str, token: &str) {
    let (keys, base) = keys(shared);
    let args = args(
        base,
        &[
            client_id.as_bytes(),
            token.as_bytes(),
            &millis(shared.ttl()),
        ],
    );
    shared.eval_detached(&LEAVE, keys, args);
}

/// A session of this node closed: it leaves Redis at once (its node no longer renews it either way).
pub(super) fn stream_closed(client_id: &str, shared: &dyn Shared, ctx: &mut Ctx) {
    let mut state = ctx.apps.keker.lock();
    // The script records the end (`left`), so that a HELLO or a refresh still on its way cannot bring it back.
    let token = state
        .owned
        .remove(client_id)
        .or_else(|| state.waiting.remove(client_id));
    if let Some(token) = token {
        leave_detached(shared, client_id, &token);
    }
}

/// Renews this node's sessions every quarter of `--broker-node-ttl` (this runs once a second: a quarter leaves
/// room for a late second and a slow round trip before a session expires).
pub fn refresh_shared(shared: &dyn Shared, ctx: &mut Ctx) {
    let mut state = ctx.apps.keker.lock();
    if state.next_refresh.is_some_and(|at| ctx.now < at) {
        return;
    }
    state.next_refresh = Some(ctx.now + shared.ttl() / 4);
    let ttl = millis(shared.ttl());
    let owned: Vec<(&str, &str)> = state.owned.iter().map(|(c, t)| (&**c, &**t)).collect();
    // With no session, the script still sweeps what dead nodes left.
    let mut batches = owned.chunks(REFRESH_BATCH).peekable();
    if batches.peek().is_none() {
        let (keys, base) = keys(shared);
        shared.eval_detached(&REFRESH, keys, args(base, &[&ttl]));
    }
    for batch in batches {
        let (keys, base) = keys(shared);
        let mut args = args(base, &[&ttl]);
        for (client_id, token) in batch {
            args.push(client_id.as_bytes().to_vec());
            args.push(token.as_bytes().to_vec());
        }
        shared.eval_detached(&REFRESH, keys, args);
    }
}

// ---- HTTP ------------------------------------------------------------------------------------------------------

/// `PUT /v1/publish` on several nodes: one script sends to the token's sessions or caches the body.
pub(super) fn publish(req: &Request, ctx: &mut Ctx, shared: &dyn Shared, token: &[u8]) -> Action {
    let body = super::go_lossy(req.body);
    let Some(token) = nameable(token) else {
        return not_found(req, ctx, token, &body);
    };
    let (keys, base) = keys(shared);
    let args = args(
        base,
        &[
            token.as_bytes(),
            body.as_bytes(),
            &millis(ctx.config.keker_cache_ttl),
            CACHE_MAX_MESSAGES.to_string().as_bytes(),
            CACHE_MAX_BYTES.to_string().as_bytes(),
        ],
    );
    match shared.eval(&PUBLISH, keys, args, ctx.ask()) {
        Ok(Reply::Later) => Action::Await,
        Ok(Reply::Now(value)) if value.int() == Some(1) => {
            ctx.counters.published += 1;
            json(req, ctx, 200, "message published", JsonData::Text(&body))
        }
        Ok(Reply::Now(_)) => not_found(req, ctx, token.as_bytes(), &body),
        Err(e) => broker_error(req, ctx, e),
    }
}

fn not_found(req: &Request, ctx: &mut Ctx, token: &[u8], body: &str) -> Action {
    let message = format!("recipient {} not found", super::go_lossy(token));
    json(req, ctx, 404, &message, JsonData::Text(body))
}

/// `PUT /v1/broadcast` on several nodes: N counts the tokens with a live session on any node.
pub(super) fn broadcast(req: &Request, ctx: &mut Ctx, shared: &dyn Shared) -> Action {
    let body = super::go_lossy(req.body);
    let (keys, base) = keys(shared);
    let args = args(base, &[body.as_bytes()]);
    match shared.eval(&BROADCAST, keys, args, ctx.ask()) {
        Ok(Reply::Later) => Action::Await,
        Ok(Reply::Now(value)) => {
            let tokens = value.int().unwrap_or(0);
            ctx.counters.published += 1;
            let message = format!("message sent to {tokens} recipients");
            json(req, ctx, 200, &message, JsonData::Text(&body))
        }
        Err(e) => broker_error(req, ctx, e),
    }
}

/// Live sessions per token over every node, or why Redis could not say.
pub(super) fn sessions(
    ctx: &mut Ctx,
    shared: &dyn Shared,
) -> Result<Option<BTreeMap<Box<str>, usize>>, BrokerError> {
    let (keys, base) = keys(shared);
    let value = match shared.eval(&STATS, keys, args(base, &[]), ctx.ask())? {
        Reply::Later => return Ok(None),
        Reply::Now(value) => value,
    };
    let mut sorted = BTreeMap::new();
    for pair in value.list().chunks(2) {
        let (Some(token), Some(n)) = (
            pair.first().and_then(Value::text),
            pair.get(1).and_then(Value::int),
        ) else {
            continue;
        };
        if let Ok(n @ 1..) = usize::try_from(n) {
            sorted.insert(token.into(), n);
        }
    }
    Ok(Some(sorted))
}

/// Redis away or a worker too far behind: 503 with the reason as `message`, as keker answers a failure.
pub(super) fn broker_error(req: &Request, ctx: &mut Ctx, e: BrokerError) -> Action {
    match e {
        BrokerError::Table(e) => table_error(req, ctx, e),
        BrokerError::Unavailable => json(req, ctx, 503, "broker_unavailable", JsonData::Null),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_token_a_hello_can_name_goes_to_redis() {
        for (token, nameable_as) in [
            (&b"user42"[..], Some("user42")),
            (b"t\xc3\xa9", Some("t\u{e9}")),
            (b"", None),
            (b"a b", None),
            (b"a\xc2\xa0b", None),
            (b"\xff", None),
        ] {
            assert_eq!(nameable(token), nameable_as, "{token:?}");
        }
    }
}
