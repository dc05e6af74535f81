//! Pipely on several nodes (`--broker redis://…`): each channel's password and members live in Redis, so every
//! node answers a join, a publish and a leave as one process would, whichever node the client reached.
//!
//! A channel's state shares its core channel's tag (`pipely/<hex>`), so each script below runs on one shard and
//! sends the channel's events (`spout_send`) in the same atomic step as the change they announce: the check of a
//! join (password, duplicate id under `strings.EqualFold`), the join itself, the joiner's `CLIENT_LIST` and its
//! `CONNECT` are one step, as are a leave and its `DISCONNECT`. Keys (`Shared::key(core, …)`):
//! - `meta`: hash, `pw` the password fixed by the first joiner (empty: open), `cj` the channel id as JSON, `seq`
//!   the join counter, `born` when the channel was created (Redis clock, ms);
//! - `order`: sorted set, each member's folded id (`goweb::fold_key`) scored by its join number: join order;
//! - `ids`: hash, folded id → the client id as JSON (what lists and frames show);
//! - `exp`: sorted set, folded id scored by when it expires (ms): the member's node renews it;
//! - `owner`: hash, folded id → the join's token (`node/born/seq`), so that only the stream that joined removes
//!   or renews the member (a late leave of a member already swept cannot remove a newcomer of the same id).
//!
//! A channel exists while `order` has members; the last one to go takes every key (and the password) with it.
//! Every script first sweeps members past their expiry, sending each one's `DISCONNECT` to the others (once: the
//! sweep removes it in the same step), so a node that dies leaves no member in any list after
//! `--broker-node-ttl`. Each node renews the members its streams are (`Owned`) four times per TTL; the
//! keys themselves expire a TTL after the last renewal, so nothing outlives every node.
//!
//! This node's record of what it owns is kept under its own lock, apart from the single-node state in `Pipely`.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{answer, cors, goweb, Action, Ctx, Request};
use super::{authorized_password, core_name, event_frame, go_error, json_string, table_error};
use crate::broker::shared::{Lua, Shared};
use crate::broker::{BrokerError, Reply};
use crate::channels::SubscribedChannel;

/// The functions every Pipely script starts with (KEYS: meta, order, ids, exp, owner, then the channel's
/// stream and shard for `spout_send`).
macro_rules! prelude {
    () => {
        r#"
local meta, order, ids, exp, owner, stream, shard = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]

local function frame(kind, idjson)
  return 'data: {"channel_id":' .. redis.call('HGET', meta, 'cj') .. ',"type":"' .. kind
    .. '","origin_id":' .. idjson .. ',"payload":null}\n\n'
end

-- Takes a member out; the last one takes the channel, its password included. Others get its DISCONNECT.
local function depart(fold)
  local idjson = redis.call('HGET', ids, fold)
  redis.call('ZREM', order, fold)
  redis.call('ZREM', exp, fold)
  redis.call('HDEL', ids, fold)
  redis.call('HDEL', owner, fold)
  if redis.call('ZCARD', order) == 0 then
    redis.call('DEL', meta, order, ids, exp, owner)
  elseif idjson then
    spout_send(stream, shard, 's', '', frame('DISCONNECT', idjson))
  end
end

-- Members whose node stopped renewing them are gone.
local function sweep(now)
  for _, fold in ipairs(redis.call('ZRANGEBYSCORE', exp, '-inf', now)) do
    depart(fold)
  end
end

-- The channel's keys live a TTL past the last renewal of any member.
local function keep(ttl)
  for _, key in ipairs({meta, order, ids, exp, owner}) do
    if redis.call('PTTL', key) < ttl then
      redis.call('PEXPIRE', key, ttl)
    end
  end
end
"#
    };
}

/// A join. ARGV: folded id, id as JSON, password, this node, TTL (ms), channel id as JSON, the `CONNECT` frame.
/// Returns `{401}`, `{400}` (id used), or `{200, cursor, members as a JSON list, token}`.
static JOIN: Lua = Lua::new(concat!(
    prelude!(),
    r#"
local fold, ttl = ARGV[1], tonumber(ARGV[5])
local now = spout_now()
sweep(now)
if redis.call('ZCARD', order) > 0 then
  local pw = redis.call('HGET', meta, 'pw') or ''
  if pw ~= '' and pw ~= ARGV[3] then return {401} end
  if redis.call('HEXISTS', ids, fold) == 1 then return {400} end
else
  redis.call('DEL', meta, order, ids, exp, owner)
  redis.call('HSET', meta, 'pw', ARGV[3], 'cj', ARGV[6], 'born', now)
end
local seq = redis.call('HINCRBY', meta, 'seq', 1)
local token = ARGV[4] .. '/' .. redis.call('HGET', meta, 'born') .. '/' .. seq
redis.call('ZADD', order, seq, fold)
redis.call('HSET', ids, fold, ARGV[2])
redis.call('ZADD', exp, now + ttl, fold)
redis.call('HSET', owner, fold, token)
local list = {}
for i, member in ipairs(redis.call('ZRANGE', order, 0, -1)) do
  list[i] = redis.call('HGET', ids, member)
end
local cursor = spout_last(stream)
spout_send(stream, shard, 's', '', ARGV[7])
keep(ttl)
return {200, cursor, '[' .. table.concat(list, ',') .. ']', token}
"#
));

/// A stream ended. ARGV: folded id, the join's token.
static LEAVE: Lua = Lua::new(concat!(
    prelude!(),
    r#"
if redis.call('HGET', owner, ARGV[1]) == ARGV[2] then
  depart(ARGV[1])
end
sweep(spout_now())
return 0
"#
));

/// Renews this node's members of a channel and sweeps the expired. ARGV: TTL (ms), then folded id and token
/// of each member.
static REFRESH: Lua = Lua::new(concat!(
    prelude!(),
    r#"
local ttl = tonumber(ARGV[1])
local now = spout_now()
for i = 2, #ARGV - 1, 2 do
  if redis.call('HGET', owner, ARGV[i]) == ARGV[i + 1] then
    redis.call('ZADD', exp, 'XX', now + ttl, ARGV[i])
  end
end
sweep(now)
if redis.call('ZCARD', order) > 0 then keep(ttl) end
return 0
"#
));

/// A publish. ARGV: `1` and the password `Authorization` gives (`0` and nothing when it gives none), the frame.
/// Returns 404 (no such channel), 401 or 200 (sent).
static PUBLISH: Lua = Lua::new(concat!(
    prelude!(),
    r#"
sweep(spout_now())
if redis.call('ZCARD', order) == 0 then return 404 end
local pw = redis.call('HGET', meta, 'pw') or ''
if pw ~= '' and (ARGV[1] ~= '1' or ARGV[2] ~= pw) then return 401 end
spout_send(stream, shard, 's', '', ARGV[3])
return 200
"#
));

/// See `refresh`.
const RENEW_SLACK: Duration = Duration::from_millis(500);

/// The members this node's streams are, per core channel: what it renews and what its streams' ends remove.
#[derive(Default)]
pub struct Owned {
    state: Mutex<OwnedState>,
}

#[derive(Default)]
struct OwnedState {
    channels: HashMap<Box<str>, Vec<Member>>,
    renewed: Option<Instant>,
}

struct Member {
    client: Box<str>,
    fold: Box<str>,
    token: Box<str>,
}

impl Owned {
    fn lock(&self) -> MutexGuard<'_, OwnedState> {
        crate::sync::lock(&self.state)
    }
}

/// The keys of a channel's scripts, in the order the prelude names them.
fn keys(shared: &dyn Shared, core: &str) -> Vec<String> {
    let channel = shared.channel(core);
    let mut keys: Vec<String> = ["meta", "order", "ids", "exp", "owner"]
        .iter()
        .map(|name| shared.key(core, name))
        .collect();
    keys.push(channel.stream);
    keys.push(channel.shard);
    keys
}

fn ttl_ms(shared: &dyn Shared) -> Vec<u8> {
    shared.ttl().as_millis().to_string().into_bytes()
}

/// `503` in `http.Error` style when Redis cannot be reached, or a table limit of this node.
fn broker_error(req: &Request, ctx: &mut Ctx, e: BrokerError) -> Action {
    match e {
        BrokerError::Table(e) => table_error(req, ctx, e),
        BrokerError::Unavailable => {
            let text = "the shared state (Redis) is unavailable; retry shortly";
            go_error(req, ctx, 503, text, true)
        }
    }
}

/// The join of `client` to the channel `channel_id` (validated), as every node sees it: the node holds the channel,
/// the script checks and joins, then the stream subscribes after the cursor the script took before the joiner's
/// `CONNECT`, so it gets that `CONNECT` and everything after.
pub fn join(
    shared: &dyn Shared,
    req: &Request,
    ctx: &mut Ctx,
    channel_id: &[u8],
    client: Box<str>,
    password: &[u8],
) -> Action {
    let core = core_name(channel_id);
    match shared.hold(&[&core], ctx.peer, ctx.ask()) {
        Ok(Reply::Now(())) => {}
        Ok(Reply::Later) => return Action::Await,
        Err(e) => return broker_error(req, ctx, e),
    }
    let fold = goweb::fold_key(&client);
    let channel_json = json_string(&goweb::lossy(channel_id));
    let (_, connect) = event_frame(&channel_json, "CONNECT", &client, "null");
    let args = vec![
        fold.clone().into_bytes(),
        json_string(&client).into_bytes(),
        password.to_vec(),
        shared.node().as_bytes().to_vec(),
        ttl_ms(shared),
        channel_json.clone().into_bytes(),
        connect,
    ];
    let value = match shared.eval(&JOIN, keys(shared, &core), args, ctx.ask()) {
        Ok(Reply::Now(value)) => value,
        Ok(Reply::Later) => return Action::Await,
        Err(e) => return broker_error(req, ctx, e),
    };
    let answer = value.list();
    match answer.first().and_then(|code| code.int()) {
        Some(401) => return go_error(req, ctx, 401, super::INVALID_PASSWORD, true),
        Some(400) => return go_error(req, ctx, 400, super::CLIENT_ID_USED, true),
        _ => {}
    }
    let (Some(cursor), Some(list), Some(token)) = (
        answer.get(1).and_then(|v| v.event_id()),
        answer.get(2).and_then(|v| v.text()),
        answer.get(3).and_then(|v| v.text()),
    ) else {
        log::warn!("pipely: unexpected answer to a join: {value:?}");
        return broker_error(req, ctx, BrokerError::Unavailable);
    };
    let subscription = match shared.subscribe(ctx.worker, &[(&core, Some(cursor))], &client) {
        Ok(subscription) => subscription,
        Err(e) => {
            // Undo the join; the others have seen its CONNECT, so they get its DISCONNECT.
            let args = vec![fold.into_bytes(), token.as_bytes().to_vec()];
            shared.eval_detached(&LEAVE, keys(shared, &core), args);
            return broker_error(req, ctx, e);
        }
    };
    ctx.apps
        .pipely
        .owned
        .lock()
        .channels
        .entry(core.into())
        .or_default()
        .push(Member {
            client: client.clone(),
            fold: fold.into(),
            token: token.into(),
        });
    let (_, client_list) = event_frame(&channel_json, "CLIENT_LIST", "server", list);
    super::member_stream(ctx, &client_list, subscription, client)
}

/// A member's stream ended: it leaves the channel everywhere (nobody waits on this).
pub fn stream_closed(
    shared: &dyn Shared,
    client_id: &str,
    channels: &[SubscribedChannel],
    ctx: &Ctx,
) {
    let mut owned = ctx.apps.pipely.owned.lock();
    for sub in channels {
        let Some(members) = owned.channels.get_mut(&*sub.name) else {
            continue;
        };
        let Some(at) = members.iter().position(|m| *m.client == *client_id) else {
            continue;
        };
        let member = members.swap_remove(at);
        if members.is_empty() {
            owned.channels.remove(&*sub.name);
        }
        let args = vec![
            member.fold.as_bytes().to_vec(),
            member.token.as_bytes().to_vec(),
        ];
        shared.eval_detached(&LEAVE, keys(shared, &sub.name), args);
    }
}

/// A publish (validated) to the channel as every node sees it.
pub fn publish(
    shared: &dyn Shared,
    req: &Request,
    ctx: &mut Ctx,
    channel_id: &str,
    frame: Vec<u8>,
) -> Action {
    let core = core_name(channel_id.as_bytes());
    let (given, password) = match authorized_password(req) {
        Some(password) => (b"1".to_vec(), password.to_vec()),
        None => (b"0".to_vec(), Vec::new()),
    };
    let args = vec![given, password, frame];
    let code = match shared.eval(&PUBLISH, keys(shared, &core), args, ctx.ask()) {
        Ok(Reply::Now(value)) => value.int(),
        Ok(Reply::Later) => return Action::Await,
        Err(e) => return broker_error(req, ctx, e),
    };
    match code {
        Some(200) => {
            ctx.counters.published += 1;
            answer(req, ctx, 200, &cors(req), b"")
        }
        Some(404) => go_error(req, ctx, 404, super::NO_SUCH_CHANNEL, true),
        Some(401) => go_error(req, ctx, 401, super::INVALID_PASSWORD, true),
        _ => {
            log::warn!("pipely: unexpected answer to a publish: {code:?}");
            broker_error(req, ctx, BrokerError::Unavailable)
        }
    }
}

/// Renews this node's members about four times per TTL, so that one late or lost renewal does not expire them,
/// and sweeps those of their channels whose node stopped renewing them (the sweep announces their `DISCONNECT`).
/// This runs once a second: half a second of slack makes a quarter TTL of 3.25s..3.75s a renewal every 4s, not 5s.
pub fn refresh(shared: &dyn Shared, ctx: &Ctx) {
    let now = ctx.now;
    let mut owned = ctx.apps.pipely.owned.lock();
    let due = |at: Instant| now.saturating_duration_since(at) + RENEW_SLACK >= shared.ttl() / 4;
    if owned.renewed.is_some_and(|at| !due(at)) {
        return;
    }
    owned.renewed = Some(now);
    for (core, members) in &owned.channels {
        let mut args = Vec::with_capacity(1 + 2 * members.len());
        args.push(ttl_ms(shared));
        for member in members {
            args.push(member.fold.as_bytes().to_vec());
            args.push(member.token.as_bytes().to_vec());
        }
        shared.eval_detached(&REFRESH, keys(shared, core), args);
    }
}
