//! WS-PushServer on several nodes (`--broker redis://…`): the channels with their tokens and the uuids of open
//! clients live in Redis, so that every node gives the same answers. `mod.rs` keeps the one-node path and calls
//! in here when `ctx.broker.shared()` is `Some`.
//!
//! Keys: everything the original kept in its maps is in six hashes and a set under one tag (`{ws_push}`, so one
//! script sees all of it and checks and changes it in one step: a duplicate name or uuid at creation, a token at
//! deletion):
//! - `owners`: owner → until when (ms, Redis's clock) it is alive. An owner is one run of one node (its name and a
//!   random part drawn at start, so a node restarted under the same name does not revive its dead run's clients);
//!   the node renews it every third of `--broker-node-ttl` (`refresh`), and registers its clients again after
//!   Redis was out of its reach (`REJOIN`).
//! - `clients`: uuid → owner, and `counts`: owner → how many (`clientsAmount` without reading every uuid). A uuid is
//!   registered before the upgrade is answered (so every node knows it at once) and unregistered, detached, when
//!   the stream closes.
//! - `channels`: name → owner (the node it was created through), `tokens`: name → token, `gens`: name → the
//!   channel's generation (random, drawn at creation).
//! - `gone`: the core channels of channels forgotten with their dead owner (below).
//!
//! Every script first forgets the owners whose time has passed, with their clients and channels (`script!`), so
//! what a dead node owned is gone from every answer once its TTL passes. The core channels of the channels it
//! forgets go in `gone`, which the scripts of the HTTP routes hand out (`forget_gone`): the node that gets them
//! deletes them on every node, so their subscribers on the surviving nodes lose them as they would a deleted
//! channel. Every key also expires a TTL after the last change or refresh of any node, so when all nodes are gone
//! nothing is left.
//!
//! A channel's events go to the core channel `ws-push/<generation>/<name>`: a channel deleted (or whose node
//! died) and created again is another core channel, so a client still subscribed to the old one on some node
//! never gets the new one's pushes. A push is checked by one script on `{ws_push}` and sent by a second, detached
//! one on the core channel's tag (`SEND`, `spout_send` with kind `'t'`, the recipients in `to`): a script touches
//! one tag only. So a push is answered before it is sent, and two pushes are not ordered by Redis (each detached
//! script is a task of its own). A deletion also deletes the core channel on every node (`Broker::delete_channel`,
//! not waited for), so its subscribers lose it as on one node.
//!
//! A subscribe needs the generation before it can hold the core channel, so it runs its script (`JOIN`) before
//! `hold`: when the node does not hold the channel yet, the message is handled again after the hold and runs the
//! script once more (a hold's answer is not a script's), then holds at once and subscribes.

use std::sync::Arc;

use serde_json::Value;

use super::schema::{channel_limit, error, not_found, server_ack, Kind};
use super::{Joined, Plan, Session, WsPush, CORE_PREFIX};
use crate::api::{Ctx, WsAnswer};
use crate::broker::shared::{Lua, Shared, Value as Reply};
use crate::broker::{BrokerError, Reply as Answer};
use crate::channels::TableError;

/// The tag of WS-PushServer's shared state (see the module doc).
const TAG: &str = "ws_push";

/// The keys under `TAG`, in the order every script gets them as KEYS.
const HASHES: [&str; 7] = [
    "owners", "counts", "clients", "channels", "tokens", "gens", "gone",
];

/// Prepended to every script on `TAG` (ARGV[1] the owner, ARGV[2] the TTL in ms): forgets dead owners and what
/// they owned (the core channel names it builds are `core_name`'s), and defines `with_gone(reply)`, which appends
/// up to 64 of the `gone` core channels to a reply, and `own()`, which renews this owner and the expiry of every
/// key (called after a script's writes, so a key it creates gets one too).
macro_rules! script {
    ($body:literal) => {
        Lua::new(concat!(
            r"
local now = spout_now()
local owner, ttl = ARGV[1], tonumber(ARGV[2])
local dead, any = {}, false
local owners = redis.call('HGETALL', KEYS[1])
for i = 1, #owners, 2 do
  if tonumber(owners[i + 1]) <= now then
    dead[owners[i]], any = true, true
    redis.call('HDEL', KEYS[1], owners[i])
    redis.call('HDEL', KEYS[2], owners[i])
  end
end
if any then
  local clients = redis.call('HGETALL', KEYS[3])
  for i = 1, #clients, 2 do
    if dead[clients[i + 1]] then redis.call('HDEL', KEYS[3], clients[i]) end
  end
  local channels = redis.call('HGETALL', KEYS[4])
  for i = 1, #channels, 2 do
    if dead[channels[i + 1]] then
      local gen = redis.call('HGET', KEYS[6], channels[i])
      if gen then redis.call('SADD', KEYS[7], 'ws-push/' .. gen .. '/' .. channels[i]) end
      for k = 4, 6 do redis.call('HDEL', KEYS[k], channels[i]) end
    end
  end
end
local function with_gone(reply)
  reply[#reply + 1] = redis.call('SPOP', KEYS[7], 64)
  return reply
end
local function own()
  redis.call('HSET', KEYS[1], owner, now + ttl)
  for k = 1, 7 do
    if redis.call('PTTL', KEYS[k]) < ttl then redis.call('PEXPIRE', KEYS[k], ttl) end
  end
end
",
            $body
        ))
    };
}

/// Renews this owner (and, with it, everything it owns).
static REFRESH: Lua = script!(
    r"
own()
return 1
"
);

/// A new client (ARGV[3] its uuid): `{'ok', uuid}` with the uuid stored (the one drawn by the first run of the
/// upgrade), or `{'taken'}`.
static REGISTER: Lua = script!(
    r"
if redis.call('HSETNX', KEYS[3], ARGV[3], owner) == 0 then return {'taken'} end
redis.call('HINCRBY', KEYS[2], owner, 1)
own()
return {'ok', ARGV[3]}
"
);

/// This node's open clients (ARGV[3], ARGV[4], …), registered again after Redis was out of its reach: those it
/// lost meanwhile (forgotten with its run, if that was longer than its TTL) are back.
static REJOIN: Lua = script!(
    r"
for i = 3, #ARGV do
  if redis.call('HSETNX', KEYS[3], ARGV[i], owner) == 1 then
    redis.call('HINCRBY', KEYS[2], owner, 1)
  end
end
own()
return 1
"
);

/// A client closed (ARGV[3] its uuid).
static UNREGISTER: Lua = script!(
    r"
if redis.call('HGET', KEYS[3], ARGV[3]) == owner then
  redis.call('HDEL', KEYS[3], ARGV[3])
  redis.call('HINCRBY', KEYS[2], owner, -1)
end
return 1
"
);

/// `/channel/create` (ARGV[3] name, ARGV[4] token, ARGV[5] generation, ARGV[6] `--max-channels`): `{'created',
/// token}` with the token stored (the one drawn by the first run of the request), or `{'conflict'}`, `{'full'}`.
static CREATE: Lua = script!(
    r"
if redis.call('HEXISTS', KEYS[4], ARGV[3]) == 1 then return with_gone({'conflict'}) end
if redis.call('HLEN', KEYS[4]) >= tonumber(ARGV[6]) then return with_gone({'full'}) end
redis.call('HSET', KEYS[4], ARGV[3], owner)
redis.call('HSET', KEYS[5], ARGV[3], ARGV[4])
redis.call('HSET', KEYS[6], ARGV[3], ARGV[5])
own()
return with_gone({'created', ARGV[4], ARGV[5]})
"
);

/// `/channel/ping`, `/push`, `/channel/delete` (ARGV[3] name, ARGV[4] token, ARGV[5] `'1'` when a token was
/// given, ARGV[6] `'delete'` to delete): `{'missing'}`, `{'none'}` (no token), `{'forbidden'}`, or `{'ok',
/// generation}`, the channel deleted if asked. Lua interns its strings, so `==` compares two addresses and tells
/// nothing by its timing.
static CHECK: Lua = script!(
    r"
local stored = redis.call('HGET', KEYS[5], ARGV[3])
if not stored then return with_gone({'missing'}) end
if ARGV[5] ~= '1' then return with_gone({'none'}) end
if stored ~= ARGV[4] then return with_gone({'forbidden'}) end
local gen = redis.call('HGET', KEYS[6], ARGV[3])
if ARGV[6] == 'delete' then
  for k = 4, 6 do redis.call('HDEL', KEYS[k], ARGV[3]) end
end
return with_gone({'ok', gen})
"
);

/// A client's subscribe or unsubscribe (ARGV[3] name, ARGV[4] a uuid it named that is not its own, or `''`):
/// `{'missing'}`, `{'this'}` (another live client's uuid), `{'any'}` (no live client's), or `{'ok', generation}`.
static JOIN: Lua = script!(
    r"
if redis.call('HEXISTS', KEYS[4], ARGV[3]) == 0 then return {'missing'} end
if ARGV[4] ~= '' then
  if redis.call('HEXISTS', KEYS[3], ARGV[4]) == 1 then return {'this'} end
  return {'any'}
end
return {'ok', redis.call('HGET', KEYS[6], ARGV[3])}
"
);

/// `/sysadmin`: `{clients, name, name, …, gone}`.
static SYSADMIN: Lua = script!(
    r"
local clients = 0
for _, n in ipairs(redis.call('HVALS', KEYS[2])) do clients = clients + tonumber(n) end
local out = {clients}
for _, name in ipairs(redis.call('HKEYS', KEYS[4])) do out[#out + 1] = name end
return with_gone(out)
"
);

/// A push, on its core channel's tag (KEYS: its stream and shard; ARGV[1] the recipients, ARGV[2] the tail).
static SEND: Lua = Lua::new(
    r"
return spout_send(KEYS[1], KEYS[2], 't', ARGV[1], ARGV[2])
",
);

/// The keys every script on `TAG` gets.
fn keys(shared: &dyn Shared) -> Vec<String> {
    HASHES.iter().map(|name| shared.key(TAG, name)).collect()
}

/// ARGV[1] and ARGV[2] of every script on `TAG`, then `more`.
fn args(shared: &dyn Shared, ws_push: &WsPush, more: &[&[u8]]) -> Vec<Vec<u8>> {
    let ttl = shared.ttl().as_millis().max(1).to_string();
    let mut args = vec![ws_push.owner(shared).into_bytes(), ttl.into_bytes()];
    args.extend(more.iter().map(|arg| arg.to_vec()));
    args
}

/// The core channel of generation `generation` of channel `name`.
fn core_name(generation: &str, name: &str) -> String {
    format!("{CORE_PREFIX}{generation}/{name}")
}

/// The answer when Redis is away, this node too far behind or at its channel limit: the original's error envelope
/// with a 503.
fn unavailable(e: BrokerError, ctx: &mut Ctx) -> (u16, Vec<u8>) {
    match e {
        BrokerError::Table(TableError::TooManyChannels | TableError::ClientChannelLimit) => {
            return (503, channel_limit());
        }
        BrokerError::Table(TableError::Overloaded) => ctx.counters.overloaded += 1,
        BrokerError::Unavailable => {}
    }
    let details = "The shared state did not answer in time; retry shortly";
    (503, error(503, "Service Unavailable", Some(details)))
}

/// A script's answer: `None` while the request waits for it.
fn evaluate(
    shared: &dyn Shared,
    script: &'static Lua,
    args: Vec<Vec<u8>>,
    ctx: &mut Ctx,
) -> Option<Result<Reply, BrokerError>> {
    match shared.eval(script, keys(shared), args, ctx.ask()) {
        Ok(Answer::Now(value)) => Some(Ok(value)),
        Ok(Answer::Later) => None,
        Err(e) => Some(Err(e)),
    }
}

/// The first word of a script's answer, and its second item as text.
fn verdict(value: &Reply) -> (&str, &str) {
    let items = value.list();
    let word = items.first().and_then(Reply::text).unwrap_or_default();
    let second = items.get(1).and_then(Reply::text).unwrap_or_default();
    (word, second)
}

/// `/channel/create`, `/channel/ping`, `/push`, `/channel/delete` once the body is valid: `None` while the
/// request waits for Redis.
pub(super) fn action(
    shared: &dyn Shared,
    kind: Kind,
    channel: &str,
    token: Option<&str>,
    request: &Value,
    ctx: &mut Ctx,
) -> Option<(u16, Vec<u8>)> {
    let apps = ctx.apps;
    if kind == Kind::Create {
        // Drawn on every run of the request; the script stores the first run's and answers with what it stored.
        let (Some(token), Some(generation)) = (super::new_token(), new_generation()) else {
            return Some((500, error(500, "Internal Server Error", None)));
        };
        let max = ctx.config.max_channels.to_string();
        let args = args(
            shared,
            &apps.ws_push,
            &[
                channel.as_bytes(),
                token.as_bytes(),
                generation.as_bytes(),
                max.as_bytes(),
            ],
        );
        let reply = match evaluate(shared, &CREATE, args, ctx)? {
            Ok(reply) => reply,
            Err(e) => return Some(unavailable(e, ctx)),
        };
        forget_gone(&reply, ctx);
        return Some(match verdict(&reply) {
            ("created", token) => (200, server_ack("Created", channel, Some(token))),
            ("full", _) => (503, channel_limit()),
            _ => {
                let details = format!("A WebSocketChannel called \"{channel}\" already exists");
                (409, error(409, "Conflict", Some(&details)))
            }
        });
    }
    let given: &[u8] = if token.is_some() { b"1" } else { b"0" };
    let delete: &[u8] = if kind == Kind::Delete { b"delete" } else { b"" };
    let args = args(
        shared,
        &apps.ws_push,
        &[
            channel.as_bytes(),
            token.unwrap_or_default().as_bytes(),
            given,
            delete,
        ],
    );
    let reply = match evaluate(shared, &CHECK, args, ctx)? {
        Ok(reply) => reply,
        Err(e) => return Some(unavailable(e, ctx)),
    };
    forget_gone(&reply, ctx);
    let (word, generation) = verdict(&reply);
    let core = core_name(generation, channel);
    Some(match (kind, word) {
        (_, "missing") => (404, not_found(channel)),
        // Only a ping tells a missing token apart (the README's "null to know whether the channel exists").
        (Kind::Ping, "none") => (
            401,
            error(401, "Unauthorized", Some("No channel token provided")),
        ),
        (Kind::Ping, "ok") => (200, server_ack("OK", channel, None)),
        (Kind::Delete, "ok") => {
            // Every node drops the channel's subscribers, who are not told (as in the original). The answer is
            // not waited for (it finds no parked request and is dropped): the channel is gone from every answer
            // already, and its core channel is never used again.
            let _ = ctx.broker.delete_channel(&core, ctx.ask());
            (200, server_ack("Deleted", channel, None))
        }
        (_, "ok") => push(shared, request, &core, channel, ctx),
        _ => (
            403,
            error(403, "Forbidden", Some("Channel token is invalid")),
        ),
    })
}

/// Deletes on every node the core channels a script handed out from `gone` (the last item of its reply; see the
/// module doc). The answers are not waited for: they find no parked request and are dropped.
fn forget_gone(reply: &Reply, ctx: &mut Ctx) {
    let Some(gone) = reply.list().last() else {
        return;
    };
    for core in gone.list().iter().filter_map(Reply::text) {
        if core.starts_with(CORE_PREFIX) {
            let _ = ctx.broker.delete_channel(core, ctx.ask());
        }
    }
}

/// `/push` with a valid token: the event goes to the core channel's stream by a detached script (see the module
/// doc), for the listed uuids only when there are some.
fn push(
    shared: &dyn Shared,
    request: &Value,
    core: &str,
    channel: &str,
    ctx: &mut Ctx,
) -> (u16, Vec<u8>) {
    let keys = shared.channel(core);
    let to = super::recipients(request).join(",");
    let tail = super::push_tail(request, channel);
    shared.eval_detached(
        &SEND,
        vec![keys.stream, keys.shard],
        vec![to.into_bytes(), tail],
    );
    ctx.counters.published += 1;
    (200, server_ack("Sent", channel, None))
}

/// `/sysadmin`: every node's channels and clients; `None` while the request waits for Redis.
pub(super) fn sysadmin(shared: &dyn Shared, ctx: &mut Ctx) -> Option<(u16, Vec<u8>)> {
    let args = args(shared, &ctx.apps.ws_push, &[]);
    let reply = match evaluate(shared, &SYSADMIN, args, ctx)? {
        Ok(reply) => reply,
        Err(e) => return Some(unavailable(e, ctx)),
    };
    forget_gone(&reply, ctx);
    let items = reply.list();
    let clients = items.first().and_then(Reply::int).unwrap_or(0).max(0);
    let mut names: Vec<&str> = items.iter().skip(1).filter_map(Reply::text).collect();
    names.sort_unstable();
    Some((200, super::sysadmin_body(&names, clients as usize)))
}

/// A client's subscribe or unsubscribe, checked by `JOIN` (the channel exists, a uuid it names is its own); a
/// subscribe has the node hold the core channel before anything changes, then subscribes from the node's head
/// (pushes are not kept, so there is nothing before it to replay).
#[allow(clippy::too_many_arguments)]
pub(super) fn ws_message(
    shared: &dyn Shared,
    subscribe: bool,
    channel: &str,
    foreign: Option<&str>,
    client_id: &str,
    channels: &[crate::channels::SubscribedChannel],
    session: &mut Session,
    ctx: &mut Ctx,
) -> WsAnswer {
    let parked = WsAnswer {
        parked: true,
        ..WsAnswer::default()
    };
    let args = args(
        shared,
        &ctx.apps.ws_push,
        &[channel.as_bytes(), foreign.unwrap_or_default().as_bytes()],
    );
    let reply = match evaluate(shared, &JOIN, args, ctx) {
        None => return parked,
        Some(Ok(reply)) => reply,
        Some(Err(e)) => return super::reply(unavailable(e, ctx).1),
    };
    let generation = match verdict(&reply) {
        ("this", _) => {
            // The original went on to subscribe that other client; spout stops here.
            let details = "The given UUID does not belong to this WebSocket connection";
            return super::reply(error(403, "Forbidden", Some(details)));
        }
        ("any", _) => {
            let details = "The given UUID does not belong to any WebSocket connection";
            return super::reply(error(403, "Forbidden", Some(details)));
        }
        ("ok", generation) => generation.parse::<u64>().ok(),
        _ => None,
    };
    let Some(generation) = generation else {
        return super::reply(not_found(channel));
    };
    let core: Arc<str> = core_name(&generation.to_string(), channel).into();
    let plan = session.plan(subscribe, channel, generation, ctx.config.max_subscriptions);
    if matches!(plan, Plan::Change { join: true, .. }) {
        // Held before anything changes: a message that waits is handled again from its start.
        match shared.hold(&[&core], ctx.peer, ctx.ask()) {
            Ok(Answer::Now(())) => {}
            Ok(Answer::Later) => return parked,
            Err(e) => return super::reply(unavailable(e, ctx).1),
        }
    }
    let joined = Joined {
        name: channel.into(),
        generation,
        core: Arc::clone(&core),
    };
    super::apply(plan, joined, channels, client_id, session, ctx, |ctx| {
        shared
            .subscribe(ctx.worker, &[(&core, None)], client_id)
            .map_err(|e| unavailable(e, ctx).1)
    })
}

/// A new client's uuid, registered in Redis: `None` while the upgrade waits for it, else the uuid (`Ok(None)`:
/// none could be drawn, or it was taken, which 122 random bits make as good as impossible).
pub(super) fn open_client(
    shared: &dyn Shared,
    ctx: &mut Ctx,
) -> Option<Result<Option<String>, BrokerError>> {
    // Drawn on every run of the upgrade; the script stores the first run's and answers with it.
    let Some(candidate) = super::new_uuid() else {
        return Some(Ok(None));
    };
    let apps = ctx.apps;
    let args = args(shared, &apps.ws_push, &[candidate.as_bytes()]);
    let Some(answer) = evaluate(shared, &REGISTER, args, ctx) else {
        let mut state = apps.ws_push.lock();
        state.opening.insert(candidate.into(), ctx.now);
        return None;
    };
    let reply = match answer {
        Ok(reply) => reply,
        Err(e) => return Some(Err(e)),
    };
    let uuid = match verdict(&reply) {
        ("ok", uuid) if !uuid.is_empty() => uuid,
        _ => return Some(Ok(None)),
    };
    let mut state = apps.ws_push.lock();
    state.opening.remove(uuid);
    state.clients.insert(uuid.into());
    Some(Ok(Some(uuid.to_string())))
}

/// A client closed: its uuid leaves Redis.
pub(super) fn client_closed(shared: &dyn Shared, uuid: &str, ws_push: &WsPush) {
    let args = args(shared, ws_push, &[uuid.as_bytes()]);
    shared.eval_detached(&UNREGISTER, keys(shared), args);
}

/// Renews this node's run every third of its TTL, so that its clients and channels outlive it by one TTL at
/// most; the script also forgets dead owners. Takes out of Redis the uuids of upgrades whose answer found no
/// connection (it closed while it waited): after twice `--broker-timeout`, the answer came or never will. Once
/// Redis is within reach again after an error, registers this node's clients again (`REJOIN`): if the node was out
/// of reach for longer than its TTL, the other nodes forgot them (the channels created through it stay gone, as
/// after its death).
pub(super) fn refresh(shared: &dyn Shared, ws_push: &WsPush, ctx: &Ctx) {
    let mut state = ws_push.lock();
    let late = ctx.config.broker_timeout * 2;
    let abandoned: Vec<Box<str>> = state
        .opening
        .iter()
        .filter(|(_, since)| ctx.now.saturating_duration_since(**since) > late)
        .map(|(uuid, _)| uuid.clone())
        .collect();
    for uuid in abandoned {
        state.opening.remove(&uuid);
        client_closed(shared, &uuid, ws_push);
    }
    let figures = ctx.broker.figures();
    if let Some(figures) = &figures {
        state.rejoin |= !figures.reachable || figures.errors > state.broker_errors;
        state.broker_errors = figures.errors;
    }
    if state.next_refresh.is_some_and(|next| ctx.now < next) {
        return;
    }
    state.next_refresh = Some(ctx.now + shared.ttl() / 3);
    // At most once a refresh: the list is as long as the node has clients.
    if state.rejoin && figures.is_some_and(|f| f.reachable) {
        state.rejoin = false;
        let uuids: Vec<&[u8]> = state
            .clients
            .iter()
            .chain(state.opening.keys())
            .map(|uuid| uuid.as_bytes())
            .collect();
        let args = args(shared, ws_push, &uuids);
        shared.eval_detached(&REJOIN, keys(shared), args);
        return;
    }
    shared.eval_detached(&REFRESH, keys(shared), args(shared, ws_push, &[]));
}

/// A channel's generation: 64 random bits, in decimal.
fn new_generation() -> Option<String> {
    let mut bytes = [0u8; 8];
    getrandom::getrandom(&mut bytes).ok()?;
    Some(u64::from_le_bytes(bytes).to_string())
}

/// This run's random part of the owner name (see the module doc).
pub(super) fn new_run() -> String {
    let mut bytes = [0u8; 8];
    // Without randomness the run is told apart by the process id and clock, which is enough.
    if getrandom::getrandom(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        bytes = (u64::from(std::process::id()) << 32 | u64::from(nanos)).to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(text: &str) -> Reply {
        Reply::Data(text.as_bytes().to_vec())
    }

    #[test]
    fn a_reply_reads_as_its_word_and_second_item() {
        let gone = Reply::List(vec![data("ws-push/7/old")]);
        let cases = [
            (
                Reply::List(vec![data("ok"), data("42"), gone.clone()]),
                ("ok", "42"),
            ),
            (
                Reply::List(vec![data("missing"), gone.clone()]),
                ("missing", ""),
            ),
            (Reply::List(vec![data("any")]), ("any", "")),
            (Reply::List(vec![Reply::Int(3), data("news")]), ("", "news")),
            (Reply::Nil, ("", "")),
            (data("ok"), ("", "")),
        ];
        for (reply, expected) in cases {
            assert_eq!(verdict(&reply), expected, "{reply:?}");
        }
    }

    #[test]
    fn a_generation_is_part_of_the_core_channel() {
        assert_eq!(core_name("42", "news"), "ws-push/42/news");
        assert_eq!(core_name("42", "a/b"), "ws-push/42/a/b");
        assert_eq!(
            crate::api::channel_api(&core_name("1", "")),
            crate::config::Api::WsPush
        );
        let generation = new_generation().expect("randomness");
        assert!(generation.parse::<u64>().is_ok(), "{generation}");
        let run = new_run();
        assert_eq!(run.len(), 16);
        assert!(run.bytes().all(|b| b.is_ascii_hexdigit()), "{run}");
    }
}
