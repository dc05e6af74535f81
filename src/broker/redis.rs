//! The Redis broker: several spout nodes behind a load balancer share the native API's channels through a Redis
//! Cluster (`--broker redis://HOST:PORT[,HOST:PORT…]`).
//!
//! The path of an event: a publish on any node runs one script on the channel's shard that appends the event to
//! the channel's stream (its history, and the source of its id) and publishes it to the channel's shard channel,
//! as one atomic step: an event is never live without being in history, nor in history without having been sent.
//! Every node holding subscribers of the channel has subscribed that shard channel (`SSUBSCRIBE`); its broker
//! thread receives the event once and hands it to the channel table (`channels::fed`), which builds each wire
//! frame once per node and fans out exactly as for a local event. The channel's stream, its shard channel and its
//! deletion record share one hash tag (`PREFIX{channel}`), so they live on one shard, and channels spread over the
//! shards by name.
//!
//! Ids come from Redis (the stream entry id, `MS-SEQ`, see `EventId::from_stream_id`), never from a node's clock,
//! so they rise within a channel whatever the nodes' clocks say, and a subscriber can resume on any node.
//!
//! Resuming is exact: a node subscribes a channel's shard channel before it reads the channel's stream after the
//! cursor, so an event is either in what it read or arrives live afterwards; events in both are dropped by id
//! (`ChannelTable::feed`). Where the stream no longer covers the cursor, the stream says so (its last trimmed id,
//! or a deletion record) and the subscriber gets a `reset` with the reason.
//!
//! Everything Redis runs on this module's thread, on a single-threaded tokio runtime: the workers keep their mio
//! loops and never wait on Redis. They queue commands here (`publish`, `warm`, `delete`), each answered through
//! the worker's inbox within `--broker-timeout` (a `503 broker_unavailable` after it). Publishes run concurrently
//! and share the client's pipelined connections; a batch makes one round trip per channel.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{PushInfo, PushKind, Script, Value};
use tokio::sync::mpsc;

use super::{BrokerAnswer, BrokerError, Waiter};
use crate::bus::{Bus, WorkerMsg};
use crate::channels::{
    ChannelInfo, ChannelTable, FedEvent, Fill, NewEvent, Receipt, ResetReason, TableError,
};
use crate::message::EventId;
use crate::metrics::BrokerFigures;

/// Commands waiting for the broker thread; past this, requests are answered 503 at once.
const QUEUE: usize = 65_536;
/// Messages from Redis taken at once before they go to the table.
const FEED_BATCH: usize = 256;
/// How often the thread checks Redis's health, retires idle channels and catches up after a disconnection.
const TICK: Duration = Duration::from_secs(1);
/// A fed channel with no subscriber is kept this long before the node leaves its shard channel: reconnecting
/// clients find it warm.
const IDLE_GRACE: Duration = Duration::from_secs(5);

/// Appends events to a channel's stream and publishes each to its shard channel, atomically; then trims the
/// stream to `--history` events and `--history-ttl`, recording the highest id trimmed and why (Redis does not
/// record trims itself), so that a resume from before it is told.
/// KEYS: stream, shard channel, trim record. ARGV: max length, ttl in ms, then (event name, recipients, data) per
/// event. Returns, per event, its id; then the number of nodes subscribed.
const PUBLISH: &str = r"
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
const FILL: &str = r"
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
const DELETE: &str = r"
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
const PRESENCE: &str = r"
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
const INFO: &str = r"
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

/// What the broker needs from the configuration.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Seed nodes, `host:port` each.
    pub seeds: Vec<String>,
    pub prefix: String,
    pub timeout: Duration,
    /// `--broker-node-ttl`: presence is refreshed every third of it.
    pub node_ttl: Duration,
    /// `--broker-wait-replicas`: replicas a publish waits for (`WAIT`).
    pub wait_replicas: usize,
    pub history: usize,
    pub history_ttl: Duration,
    pub node_name: String,
}

/// Whether Redis answers, and the counters of what was asked of it (`/metrics`): shared by the workers' handle,
/// the broker thread and its tasks.
#[derive(Debug, Default)]
struct Health {
    reachable: AtomicBool,
    /// Scripts and subscriptions sent to Redis.
    round_trips: AtomicU64,
    /// Operations that failed or timed out.
    errors: AtomicU64,
    /// Events received from shard channels.
    received: AtomicU64,
}

impl Health {
    /// Runs one Redis operation within `timeout`. A failure or a timeout counts as an error, marks Redis
    /// unreachable (logged once, when it was reachable) and is `BrokerError::Unavailable`.
    async fn within<T>(
        &self,
        timeout: Duration,
        what: impl FnOnce() -> String,
        operation: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, BrokerError> {
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        let why = match tokio::time::timeout(timeout, operation).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "no answer within --broker-timeout".to_string(),
        };
        self.errors.fetch_add(1, Ordering::Relaxed);
        if self.reachable.swap(false, Ordering::Relaxed) {
            log::warn!("broker: {}: {why}", what());
        } else {
            log::debug!("broker: {}: {why}", what());
        }
        Err(BrokerError::Unavailable)
    }
}

enum Command {
    Publish(Vec<NewEvent>, Waiter),
    Warm {
        channel: Box<str>,
        after: Option<EventId>,
        waiter: Waiter,
    },
    Delete(Box<str>, Waiter),
    Info(Box<str>, Waiter),
}

/// The workers' handle on the broker thread.
pub struct RedisBroker {
    commands: mpsc::Sender<Command>,
    health: Arc<Health>,
}

impl RedisBroker {
    /// Starts the broker thread; it connects (and reconnects) by itself, answering 503 while Redis is away.
    pub fn start(
        settings: Settings,
        table: Arc<ChannelTable>,
        bus: Arc<Bus>,
    ) -> std::io::Result<RedisBroker> {
        let (commands, inbox) = mpsc::channel(QUEUE);
        let health = Arc::new(Health::default());
        let node = Node {
            scripts: Scripts {
                publish: Script::new(PUBLISH),
                fill: Script::new(FILL),
                delete: Script::new(DELETE),
                presence: Script::new(PRESENCE),
                info: Script::new(INFO),
            },
            settings,
            table,
            bus,
            health: Arc::clone(&health),
            con: None,
            subscribed: HashMap::new(),
            catch_up: false,
            presence_refreshed: Instant::now(),
            connect_failures: 0,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name("spout-broker".into())
            .spawn(move || runtime.block_on(node.run(inbox)))?;
        Ok(RedisBroker { commands, health })
    }

    /// Queues a batch; the answer reaches `waiter`'s worker. Err when the queue is full.
    pub fn publish(&self, events: Vec<NewEvent>, waiter: Waiter) -> Result<(), BrokerError> {
        self.queue(Command::Publish(events, waiter))
    }

    /// Asks for `channel` to be fed on this node from `after` on (`None`: live only).
    pub fn warm(
        &self,
        channel: &str,
        after: Option<EventId>,
        waiter: Waiter,
    ) -> Result<(), BrokerError> {
        self.queue(Command::Warm {
            channel: channel.into(),
            after,
            waiter,
        })
    }

    /// Deletes `channel` on every node.
    pub fn delete(&self, channel: &str, waiter: Waiter) -> Result<(), BrokerError> {
        self.queue(Command::Delete(channel.into(), waiter))
    }

    /// Reads `channel` as every node sees it.
    pub fn info(&self, channel: &str, waiter: Waiter) -> Result<(), BrokerError> {
        self.queue(Command::Info(channel.into(), waiter))
    }

    /// Whether the last health check (or operation) reached Redis.
    pub fn reachable(&self) -> bool {
        self.health.reachable.load(Ordering::Relaxed)
    }

    /// What `/metrics` shows of the broker.
    pub fn figures(&self) -> BrokerFigures {
        BrokerFigures {
            reachable: self.reachable(),
            round_trips: self.health.round_trips.load(Ordering::Relaxed),
            errors: self.health.errors.load(Ordering::Relaxed),
            received: self.health.received.load(Ordering::Relaxed),
        }
    }

    fn queue(&self, command: Command) -> Result<(), BrokerError> {
        self.commands.try_send(command).map_err(|_| {
            self.health.errors.fetch_add(1, Ordering::Relaxed);
            BrokerError::Table(TableError::Overloaded)
        })
    }
}

#[derive(Clone)]
struct Scripts {
    publish: Script,
    fill: Script,
    delete: Script,
    presence: Script,
    info: Script,
}

/// The broker thread's state.
struct Node {
    settings: Settings,
    scripts: Scripts,
    table: Arc<ChannelTable>,
    bus: Arc<Bus>,
    health: Arc<Health>,
    con: Option<ClusterConnection>,
    /// Channels whose shard channel this node subscribes, and when each was last needed.
    subscribed: HashMap<Box<str>, Instant>,
    /// The connection to a shard dropped: the fed channels must be read again from their last ids.
    catch_up: bool,
    /// When this node's whole presence was last written.
    presence_refreshed: Instant,
    /// Failed attempts to connect since the last success.
    connect_failures: u64,
}

impl Node {
    async fn run(mut self, mut inbox: mpsc::Receiver<Command>) {
        let (push_tx, mut pushes) = mpsc::unbounded_channel::<PushInfo>();
        let client = self.client(push_tx);
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                command = inbox.recv() => match command {
                    Some(command) => self.handle(command).await,
                    None => return,
                },
                Some(push) = pushes.recv() => {
                    let mut batch = vec![push];
                    while batch.len() < FEED_BATCH {
                        match pushes.try_recv() {
                            Ok(push) => batch.push(push),
                            Err(_) => break,
                        }
                    }
                    self.on_pushes(batch);
                }
                _ = tick.tick() => {
                    if self.con.is_none() {
                        if let Some(client) = &client {
                            self.connect(client).await;
                        }
                    }
                    self.check().await;
                }
            }
        }
    }

    fn client(
        &self,
        pushes: mpsc::UnboundedSender<PushInfo>,
    ) -> Option<redis::cluster::ClusterClient> {
        let seeds: Vec<String> = self
            .settings
            .seeds
            .iter()
            .map(|seed| format!("redis://{seed}/?protocol=resp3"))
            .collect();
        ClusterClientBuilder::new(seeds)
            .use_protocol(redis::ProtocolVersion::RESP3)
            .push_sender(pushes)
            .connection_timeout(self.settings.timeout)
            .response_timeout(self.settings.timeout)
            .build()
            .map_err(|e| log::error!("broker: bad Redis address: {e}"))
            .ok()
    }

    /// Tries to connect (once per tick until it succeeds); the first failure is logged as a warning, the
    /// following ones at debug level.
    async fn connect(&mut self, client: &redis::cluster::ClusterClient) {
        let why = match tokio::time::timeout(self.settings.timeout, client.get_async_connection())
            .await
        {
            Ok(Ok(con)) => {
                log::info!(
                    "broker: node {} connected to Redis ({})",
                    self.settings.node_name,
                    self.settings.seeds.join(",")
                );
                self.con = Some(con);
                self.connect_failures = 0;
                self.health.reachable.store(true, Ordering::Relaxed);
                return;
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => "no answer within --broker-timeout".to_string(),
        };
        self.health.errors.fetch_add(1, Ordering::Relaxed);
        if self.connect_failures == 0 {
            log::warn!(
                "broker: cannot connect to Redis ({}): {why}; retrying every second",
                self.settings.seeds.join(",")
            );
        } else {
            log::debug!("broker: cannot connect to Redis: {why}");
        }
        self.connect_failures += 1;
    }

    async fn handle(&mut self, command: Command) {
        match command {
            Command::Publish(events, waiter) => {
                let Some(con) = self.con.clone() else {
                    self.answer(
                        waiter,
                        BrokerAnswer::Published(Err(BrokerError::Unavailable)),
                    );
                    return;
                };
                let job = PublishJob {
                    con,
                    script: self.scripts.publish.clone(),
                    settings: self.settings.clone(),
                    health: Arc::clone(&self.health),
                };
                let bus = Arc::clone(&self.bus);
                tokio::spawn(async move {
                    let result = job.run(events).await;
                    send_answer(&bus, waiter, BrokerAnswer::Published(result));
                });
            }
            Command::Warm {
                channel,
                after,
                waiter,
            } => {
                let result = self.warm(&channel, after).await;
                self.answer(waiter, BrokerAnswer::Warmed(result));
            }
            Command::Delete(channel, waiter) => {
                let result = self.delete(&channel).await;
                self.answer(waiter, BrokerAnswer::Deleted(result));
            }
            Command::Info(channel, waiter) => {
                let Some(mut con) = self.con.clone() else {
                    self.answer(waiter, BrokerAnswer::Info(Err(BrokerError::Unavailable)));
                    return;
                };
                let keys = keys(&self.settings.prefix, &channel);
                let script = self.scripts.info.clone();
                let timeout = self.settings.timeout;
                let bus = Arc::clone(&self.bus);
                let health = Arc::clone(&self.health);
                tokio::spawn(async move {
                    let mut invocation = script.key(keys.nodes());
                    invocation.key(keys.stream()).arg(keys.presence_prefix());
                    let read = || format!("cannot read {channel}");
                    let reply = health
                        .within(timeout, read, invocation.invoke_async::<Value>(&mut con))
                        .await;
                    let result = reply.and_then(|reply| {
                        parse_info(&channel, reply).ok_or(BrokerError::Unavailable)
                    });
                    send_answer(&bus, waiter, BrokerAnswer::Info(result));
                });
            }
        }
    }

    fn answer(&self, waiter: Waiter, answer: BrokerAnswer) {
        send_answer(&self.bus, waiter, answer);
    }

    /// Subscribes the channel's shard channel (once) and reads its stream from `after`, so that the table holds
    /// it from there on.
    async fn warm(&mut self, channel: &str, after: Option<EventId>) -> Result<(), BrokerError> {
        if !self.subscribed.contains_key(channel) {
            let shard = keys(&self.settings.prefix, channel).shard;
            let con = self.con.as_mut().ok_or(BrokerError::Unavailable)?;
            let what = || format!("cannot subscribe {shard}");
            self.health
                .within(self.settings.timeout, what, con.ssubscribe(&shard))
                .await?;
        }
        self.subscribed.insert(channel.into(), Instant::now());
        self.load(channel, after).await
    }

    /// Reads what Redis holds of `channel` after `after` and hands it to the table. A channel the node already
    /// holds is read from no later than its last id: events between that and the cursor may still be on their
    /// way here live, and the table drops live events at or below what it was handed.
    async fn load(&mut self, channel: &str, after: Option<EventId>) -> Result<(), BrokerError> {
        let after = match (self.table.fed_head(channel), after) {
            (Some(head), Some(after)) => Some(head.min(after)),
            (Some(head), None) => Some(head),
            (None, after) => after,
        };
        let keys = keys(&self.settings.prefix, channel);
        let con = self.con.as_mut().ok_or(BrokerError::Unavailable)?;
        let cursor = after.map(EventId::stream_id).unwrap_or_default();
        let mut invocation = self.scripts.fill.key(keys.stream());
        invocation
            .key(keys.deleted())
            .key(keys.trimmed())
            .arg(cursor);
        let what = || format!("cannot read the history of {channel}");
        let reply: Value = self
            .health
            .within(self.settings.timeout, what, invocation.invoke_async(con))
            .await?;
        let fill = parse_fill(channel, reply, after).ok_or_else(|| {
            log::error!("broker: unexpected history reply for {channel}");
            BrokerError::Unavailable
        })?;
        self.table
            .fill(channel, after, fill, &self.bus)
            .map_err(BrokerError::Table)
    }

    async fn delete(&mut self, channel: &str) -> Result<bool, BrokerError> {
        let keys = keys(&self.settings.prefix, channel);
        let con = self.con.as_mut().ok_or(BrokerError::Unavailable)?;
        let ttl = millis(self.settings.history_ttl);
        let mut invocation = self.scripts.delete.key(keys.stream());
        invocation
            .key(keys.deleted())
            .key(&keys.shard)
            .key(keys.trimmed())
            .arg(ttl);
        let what = || format!("cannot delete {channel}");
        let existed: i64 = self
            .health
            .within(self.settings.timeout, what, invocation.invoke_async(con))
            .await?;
        Ok(existed == 1)
    }

    /// Messages from Redis, as many as were waiting: events and deletions on shard channels, news of the
    /// connection. Consecutive events of a channel go to the table in one call (one lock, one wake per worker); a
    /// deletion first hands over the events before it.
    fn on_pushes(&mut self, pushes: Vec<PushInfo>) {
        let mut events: Vec<(String, Vec<FedEvent>)> = Vec::new();
        for push in pushes {
            match push.kind {
                PushKind::SMessage => {
                    let mut data = push.data.into_iter();
                    let (Some(shard), Some(payload)) = (data.next(), data.next()) else {
                        continue;
                    };
                    let (Some(shard), Some(payload)) = (text(shard), text(payload)) else {
                        continue;
                    };
                    let Some(channel) = channel_of(&self.settings.prefix, &shard) else {
                        continue;
                    };
                    self.health.received.fetch_add(1, Ordering::Relaxed);
                    if payload == "D" {
                        self.feed(std::mem::take(&mut events));
                        self.table.delete(channel, &self.bus);
                        continue;
                    }
                    let Some(fed) = parse_event(channel, &payload) else {
                        log::warn!("broker: unreadable event on {shard}");
                        continue;
                    };
                    match events.iter_mut().find(|(name, _)| name == channel) {
                        Some((_, list)) => list.push(fed),
                        None => events.push((channel.to_string(), vec![fed])),
                    }
                }
                PushKind::Disconnection => {
                    log::warn!("broker: lost a connection to Redis; catching up once it is back");
                    self.catch_up = true;
                }
                _ => {}
            }
        }
        self.feed(events);
    }

    fn feed(&self, events: Vec<(String, Vec<FedEvent>)>) {
        for (channel, list) in events {
            self.table.feed(&channel, list, &self.bus);
        }
    }

    /// Once per tick: is Redis there; catch up after a disconnection; leave shard channels no one holds.
    async fn check(&mut self) {
        let Some(con) = self.con.as_mut() else {
            return;
        };
        let ping = redis::cmd("PING");
        let what = || "health check".to_string();
        if self
            .health
            .within(self.settings.timeout, what, ping.query_async::<String>(con))
            .await
            .is_err()
        {
            return;
        }
        if !self.health.reachable.swap(true, Ordering::Relaxed) {
            log::info!("broker: Redis is reachable again");
        }
        self.write_presence();
        if std::mem::take(&mut self.catch_up) {
            for (channel, last) in self.table.fed_channels() {
                if self.load(&channel, Some(last)).await.is_err() {
                    self.catch_up = true;
                }
            }
        }
        let now = Instant::now();
        let idle: Vec<Box<str>> = self
            .subscribed
            .iter()
            .filter(|(_, since)| now.duration_since(**since) >= IDLE_GRACE)
            .map(|(channel, _)| channel.clone())
            .collect();
        for channel in idle {
            if !self.table.retire(&channel) {
                self.subscribed.insert(channel, now);
                continue;
            }
            self.subscribed.remove(&channel);
            let shard = keys(&self.settings.prefix, &channel).shard;
            if let Some(con) = self.con.as_mut() {
                if let Err(e) = con.sunsubscribe(&shard).await {
                    log::warn!("broker: cannot leave {shard}: {e}");
                }
            }
        }
    }
}

impl Node {
    /// Writes this node's subscribers of the channels whose subscribers changed, and every third of
    /// `--broker-node-ttl` those of all its channels (the refresh that keeps them listed), each as a task of its own.
    fn write_presence(&mut self) {
        let Some(con) = self.con.clone() else {
            return;
        };
        let refresh = self.presence_refreshed.elapsed() >= self.settings.node_ttl / 3;
        let mut changes = self.table.take_presence_changes();
        if refresh {
            self.presence_refreshed = Instant::now();
            changes.extend(self.table.fed_presence());
        }
        for presence in changes {
            let keys = keys(&self.settings.prefix, &presence.channel);
            let mut args: Vec<String> = Vec::with_capacity(2 + 2 * presence.clients.len());
            args.push(self.settings.node_name.clone());
            args.push(millis(self.settings.node_ttl).to_string());
            for (client, count) in presence.clients {
                args.push(client.into());
                args.push(count.to_string());
            }
            let node_key = format!("{}{}", keys.presence_prefix(), self.settings.node_name);
            let script = self.scripts.presence.clone();
            let mut con = con.clone();
            let timeout = self.settings.timeout;
            let health = Arc::clone(&self.health);
            tokio::spawn(async move {
                let mut invocation = script.key(node_key);
                invocation.key(keys.nodes()).arg(args);
                let what = || format!("cannot write the presence of {}", presence.channel);
                let _ = health
                    .within(timeout, what, invocation.invoke_async::<i64>(&mut con))
                    .await;
            });
        }
    }
}

/// A batch's events of one channel, each with its index in the batch.
type ChannelGroup = (Box<str>, Vec<(usize, NewEvent)>);

/// A batch publish, run as a task of its own so that publishes share round trips.
struct PublishJob {
    con: ClusterConnection,
    script: Script,
    settings: Settings,
    health: Arc<Health>,
}

impl PublishJob {
    /// One script per channel (its events in batch order), all channels at once; receipts in batch order.
    async fn run(self, events: Vec<NewEvent>) -> Result<Vec<Receipt>, BrokerError> {
        let count = events.len();
        let mut groups: Vec<ChannelGroup> = Vec::new();
        for (index, event) in events.into_iter().enumerate() {
            match groups.iter_mut().find(|(name, _)| *name == event.channel) {
                Some((_, group)) => group.push((index, event)),
                None => groups.push((event.channel.clone(), vec![(index, event)])),
            }
        }
        let mut tasks = Vec::with_capacity(groups.len());
        for (channel, group) in groups {
            let keys = keys(&self.settings.prefix, &channel);
            let indexes: Vec<usize> = group.iter().map(|(index, _)| *index).collect();
            let mut args: Vec<String> = Vec::with_capacity(2 + 3 * group.len());
            args.push(self.settings.history.to_string());
            args.push(millis(self.settings.history_ttl).to_string());
            for (_, event) in group {
                args.push(event.event.as_deref().unwrap_or("").to_string());
                args.push(event.to.as_ref().map(|to| to.join(",")).unwrap_or_default());
                args.push(event.data.into());
            }
            let mut con = self.con.clone();
            let script = self.script.clone();
            let timeout = self.settings.timeout;
            let replicas = self.settings.wait_replicas;
            let health = Arc::clone(&self.health);
            tasks.push(tokio::spawn(async move {
                let mut invocation = script.key(keys.stream());
                invocation.key(&keys.shard).key(keys.trimmed()).arg(args);
                let what = || format!("publish to {channel} failed");
                let published = async {
                    let reply = invocation.invoke_async::<Vec<Value>>(&mut con).await?;
                    if replicas > 0 {
                        wait_for_replicas(&mut con, &keys.stream(), replicas, timeout).await?;
                    }
                    Ok(reply)
                };
                let reply = health.within(timeout, what, published).await;
                (indexes, reply)
            }));
        }
        let mut receipts = vec![None; count];
        let mut failed = false;
        for task in tasks {
            let Ok((indexes, Ok(reply))) = task.await else {
                failed = true;
                continue;
            };
            let nodes = reply.last().and_then(integer).unwrap_or(0);
            for (index, id) in indexes.iter().zip(&reply) {
                let id = text(id.clone()).and_then(|id| EventId::from_stream_id(&id));
                if let (Some(slot), Some(id)) = (receipts.get_mut(*index), id) {
                    *slot = Some(Receipt {
                        id,
                        subscribers: usize::try_from(nodes).unwrap_or(0),
                    });
                }
            }
        }
        if failed {
            return Err(BrokerError::Unavailable);
        }
        receipts
            .into_iter()
            .collect::<Option<Vec<Receipt>>>()
            .ok_or(BrokerError::Unavailable)
    }
}

/// Waits until `replicas` replicas of `key`'s shard have every write made so far on the connection to its master
/// (Redis `WAIT`, sent there); fewer within `timeout` is an error.
async fn wait_for_replicas(
    con: &mut ClusterConnection,
    key: &str,
    replicas: usize,
    timeout: Duration,
) -> redis::RedisResult<()> {
    let mut wait = redis::cmd("WAIT");
    wait.arg(replicas).arg(millis(timeout));
    let master = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::with_key(
        key,
        SlotAddr::Master,
    )));
    let acknowledged = con.route_command(wait, master).await?;
    match integer(&acknowledged) {
        Some(n) if usize::try_from(n).is_ok_and(|n| n >= replicas) => Ok(()),
        _ => Err(redis::RedisError::from((
            redis::ErrorKind::Io,
            "fewer replicas than --broker-wait-replicas acknowledged the publish",
        ))),
    }
}

fn send_answer(bus: &Bus, waiter: Waiter, answer: BrokerAnswer) {
    if bus
        .send(waiter.worker, WorkerMsg::Broker(Box::new((waiter, answer))))
        .is_err()
    {
        log::warn!(
            "broker: inbox of worker {} is full; a request waits for its timeout",
            waiter.worker
        );
    }
    bus.wake(waiter.worker);
}

/// A channel's names in Redis, under one hash tag so that they live on one shard. Each name is made when an
/// operation needs it (a publish uses three of them).
struct Keys {
    /// The shard channel its events travel on (`PREFIX{channel}`); the other names extend it.
    shard: String,
}

impl Keys {
    /// Its stream: history and ids.
    fn stream(&self) -> String {
        format!("{}:h", self.shard)
    }

    /// Its deletion record: the last id it had when it was deleted.
    fn deleted(&self) -> String {
        format!("{}:d", self.shard)
    }

    /// Its trim record: the highest id trimmed from its stream, and why (`evicted` or `expired`).
    fn trimmed(&self) -> String {
        format!("{}:t", self.shard)
    }

    /// The set of nodes holding subscribers of it.
    fn nodes(&self) -> String {
        format!("{}:nodes", self.shard)
    }

    /// The start of each node's presence hash (the node's name follows).
    fn presence_prefix(&self) -> String {
        format!("{}:n:", self.shard)
    }
}

fn keys(prefix: &str, channel: &str) -> Keys {
    Keys {
        shard: format!("{prefix}{{{channel}}}"),
    }
}

/// The channel a shard channel name carries (`PREFIX{channel}`).
fn channel_of<'a>(prefix: &str, shard: &'a str) -> Option<&'a str> {
    shard
        .strip_prefix(prefix)?
        .strip_prefix('{')?
        .strip_suffix('}')
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn text(value: Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes).ok(),
        Value::SimpleString(text) => Some(text),
        Value::VerbatimString { text, .. } => Some(text),
        _ => None,
    }
}

fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Int(n) => Some(*n),
        _ => None,
    }
}

/// Optional text: empty means none.
fn optional(text: &str) -> Option<Box<str>> {
    (!text.is_empty()).then(|| text.into())
}

fn recipients(list: &str) -> Option<Box<[Box<str>]>> {
    (!list.is_empty()).then(|| list.split(',').map(Into::into).collect())
}

/// The info script's reply: `{has a stream, length, last id, bytes, [client id, count]…}`.
fn parse_info(channel: &str, reply: Value) -> Option<Option<ChannelInfo>> {
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

/// An event as the publish script sends it: `E`, id, event name, recipients, data, one per line (only the data
/// may hold newlines, and it comes last).
fn parse_event(channel: &str, payload: &str) -> Option<FedEvent> {
    let mut parts = payload.splitn(5, '\n');
    if parts.next()? != "E" {
        return None;
    }
    let id = EventId::from_stream_id(parts.next()?)?;
    let event = optional(parts.next()?);
    let to = recipients(parts.next()?);
    let data = parts.next()?.into();
    Some(FedEvent {
        id,
        event: NewEvent {
            channel: channel.into(),
            event,
            data,
            to,
            ..Default::default()
        },
        at: Instant::now(),
    })
}

/// The fill script's reply: `{exists, last id, highest trimmed id, deletion record, entries}`.
fn parse_fill(channel: &str, reply: Value, after: Option<EventId>) -> Option<Fill> {
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
        events.push(FedEvent {
            id,
            event: NewEvent {
                channel: channel.into(),
                event: optional(field("e")),
                data: field("d").into(),
                to: recipients(field("t")),
                ..Default::default()
            },
            at: now.checked_sub(age).unwrap_or(now),
        });
    }
    let lost = after.and_then(|cursor| {
        if deleted.is_some_and(|deleted| deleted > cursor) {
            return Some((deleted?, ResetReason::Deleted));
        }
        if !exists {
            // Nothing left of a channel the cursor came from: it expired with `--history-ttl`.
            return Some((cursor.successor(), ResetReason::Expired));
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
}
