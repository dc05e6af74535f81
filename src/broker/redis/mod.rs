//! The Redis broker: several spout nodes behind a load balancer share the native API's channels through a Redis
//! Cluster (`--broker redis://HOST:PORT[,HOST:PORT…]`), or through one Redis they all use (`connection`: the
//! same, with plain pub/sub in place of sharded pub/sub).
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
//! the worker's inbox within `--broker-timeout` (a `503 broker_unavailable` after it). Each runs as a task of its
//! own, so none waits for another's round trips (warms: `warm`). Publishes run concurrently
//! and share the client's pipelined connections; a batch makes one round trip per channel, and publishes queued
//! behind one another go together (one script call per channel for all of them).

mod connection;
mod native;
mod scripts;
mod shared;
mod warm;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::{PushInfo, PushKind, Script, Value};
use tokio::sync::mpsc;

use connection::Connection;
use scripts::{
    channel_of, integer, keys, millis, parse_event, parse_info, parse_list, registry_keys, text,
    Scripts,
};
use warm::{Loader, ShardMessage, Warm, Warmed, Warming};

use super::{BrokerAnswer, BrokerError, Waiter};
use crate::bus::{Answer, Bus};
use crate::channels::{
    ChannelPage, ChannelSummary, ChannelTable, FedEvent, NewEvent, Receipt, TableError,
};
use crate::message::EventId;
use crate::metrics::BrokerFigures;

/// Commands waiting for the broker thread; past this, requests are answered 503 at once.
const QUEUE: usize = 65_536;
/// Publish requests taken at once from the queue into one job (`PublishJob::run`), and the events past which it
/// takes no more: a script call holds its shard for as long as it runs.
const PUBLISH_GATHER: usize = 64;
const PUBLISH_GATHER_EVENTS: usize = 512;
/// Messages from Redis taken at once before they go to the table.
const FEED_BATCH: usize = 256;
/// How often the thread checks Redis's health, retires idle channels and catches up after a disconnection.
const TICK: Duration = Duration::from_secs(1);
/// A fed channel with no subscriber is kept this long before the node leaves its shard channel: reconnecting
/// clients find it warm.
const IDLE_GRACE: Duration = Duration::from_secs(5);

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
    /// Scripts queued that nobody waits for and that have not finished (`Shared::eval_detached`).
    detached: AtomicU64,
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
        channels: Vec<(Box<str>, Option<EventId>)>,
        creator: Option<IpAddr>,
        waiter: Waiter,
    },
    Delete(Box<str>, Waiter),
    Info(Box<str>, Waiter),
    List {
        after: Option<Box<str>>,
        limit: usize,
        waiter: Waiter,
    },
    /// A compatible API's script (`broker::shared`).
    Eval(shared::Evaluation),
}

/// The workers' handle on the broker thread.
pub struct RedisBroker {
    commands: mpsc::Sender<Command>,
    health: Arc<Health>,
    /// The node's channel table, which the broker thread feeds: subscribing registers there once a channel is.
    table: Arc<ChannelTable>,
    /// What the compatible APIs' shared state needs (`broker::shared`): the key prefix, the node's name, and how
    /// long what it owns outlives its last refresh.
    prefix: String,
    node_name: String,
    node_ttl: Duration,
}

impl RedisBroker {
    /// Starts the broker thread; it connects (and reconnects) by itself, answering 503 while Redis is away.
    pub fn start(
        settings: Settings,
        table: Arc<ChannelTable>,
        bus: Arc<Bus>,
    ) -> std::io::Result<RedisBroker> {
        let (commands, inbox) = mpsc::channel(QUEUE);
        let (warm_done, warmed) = mpsc::unbounded_channel();
        let health = Arc::new(Health::default());
        let (prefix, node_name, node_ttl) = (
            settings.prefix.clone(),
            settings.node_name.clone(),
            settings.node_ttl,
        );
        let node = Node {
            scripts: Scripts::new("SPUBLISH"),
            settings,
            table: Arc::clone(&table),
            bus,
            health: Arc::clone(&health),
            con: None,
            subscribed: HashMap::new(),
            warming: Warming::default(),
            warm_done,
            catch_up: false,
            presence_refreshed: Instant::now(),
            connect_failures: 0,
            published: HashSet::new(),
            compat_scripts: shared::LoadedScripts::default(),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name("spout-broker".into())
            .spawn(move || runtime.block_on(node.run(inbox, warmed)))?;
        Ok(RedisBroker {
            commands,
            health,
            table,
            prefix,
            node_name,
            node_ttl,
        })
    }

    /// Queues a batch; the answer reaches `waiter`'s worker. Err when the queue is full.
    fn ask_publish(&self, events: Vec<NewEvent>, waiter: Waiter) -> Result<(), BrokerError> {
        self.queue(Command::Publish(events, waiter))
    }

    /// Asks for `channels` to be fed on this node, each from its cursor on (`None`: live only); one answer
    /// once all are. Channels this makes count against `creator` (`--max-channels-per-ip`).
    fn ask_warm(
        &self,
        channels: Vec<(Box<str>, Option<EventId>)>,
        creator: Option<IpAddr>,
        waiter: Waiter,
    ) -> Result<(), BrokerError> {
        self.queue(Command::Warm {
            channels,
            creator,
            waiter,
        })
    }

    /// Deletes `channel` on every node.
    fn ask_delete(&self, channel: &str, waiter: Waiter) -> Result<(), BrokerError> {
        self.queue(Command::Delete(channel.into(), waiter))
    }

    /// Reads `channel` as every node sees it.
    fn ask_info(&self, channel: &str, waiter: Waiter) -> Result<(), BrokerError> {
        self.queue(Command::Info(channel.into(), waiter))
    }

    /// Lists up to `limit` channels after `after` (in name order) that have history or subscribers on some node.
    fn ask_list(
        &self,
        after: Option<&str>,
        limit: usize,
        waiter: Waiter,
    ) -> Result<(), BrokerError> {
        self.queue(Command::List {
            after: after.map(Into::into),
            limit,
            waiter,
        })
    }

    /// What `/metrics` shows of the broker; `reachable`: whether the last health check (or operation) reached
    /// Redis.
    fn current_figures(&self) -> BrokerFigures {
        BrokerFigures {
            reachable: self.health.reachable.load(Ordering::Relaxed),
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

/// The broker thread's state.
struct Node {
    settings: Settings,
    scripts: Scripts,
    table: Arc<ChannelTable>,
    bus: Arc<Bus>,
    health: Arc<Health>,
    con: Option<Connection>,
    /// Channels whose shard channel this node subscribes, and when each was last needed.
    subscribed: HashMap<Box<str>, Instant>,
    /// The warms under way (`warm`), and where each reports when done.
    warming: Warming,
    warm_done: mpsc::UnboundedSender<Warmed>,
    /// The connection to a shard dropped: the fed channels must be read again from their last ids.
    catch_up: bool,
    /// When this node's whole presence was last written.
    presence_refreshed: Instant,
    /// Failed attempts to connect since the last success.
    connect_failures: u64,
    /// Channels published to since the registry was last told (`register`).
    published: HashSet<Box<str>>,
    /// The compatible APIs' scripts, as loaded for this connection.
    compat_scripts: shared::LoadedScripts,
}

impl Node {
    async fn run(
        mut self,
        mut inbox: mpsc::Receiver<Command>,
        mut warmed: mpsc::UnboundedReceiver<Warmed>,
    ) {
        let (push_tx, mut pushes) = mpsc::unbounded_channel::<PushInfo>();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                command = inbox.recv() => match command {
                    Some(Command::Publish(events, waiter)) => {
                        // Publishes queued behind this one go with it (see `PublishJob::run`).
                        let mut gathered = events.len();
                        let mut publishes = vec![(events, waiter)];
                        let mut next = None;
                        while publishes.len() < PUBLISH_GATHER && gathered < PUBLISH_GATHER_EVENTS {
                            match inbox.try_recv() {
                                Ok(Command::Publish(events, waiter)) => {
                                    gathered += events.len();
                                    publishes.push((events, waiter));
                                }
                                Ok(other) => {
                                    next = Some(other);
                                    break;
                                }
                                Err(_) => break,
                            }
                        }
                        self.publish(publishes);
                        if let Some(command) = next {
                            self.handle(command).await;
                        }
                    }
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
                    let bus = Arc::clone(&self.bus);
                    bus.holding_wakes(|| self.on_pushes(batch));
                }
                Some(done) = warmed.recv() => self.on_warmed(done),
                _ = tick.tick() => {
                    if self.con.is_none() {
                        self.connect(push_tx.clone()).await;
                    }
                    self.check().await;
                }
            }
        }
    }

    /// Tries to connect (once per tick until it succeeds); the first failure is logged as a warning, the
    /// following ones at debug level.
    async fn connect(&mut self, pushes: mpsc::UnboundedSender<PushInfo>) {
        let seeds = &self.settings.seeds;
        let opening = Connection::open(seeds, self.settings.timeout, pushes);
        let why = match tokio::time::timeout(2 * self.settings.timeout, opening).await {
            Ok(Ok(con)) => {
                log::info!(
                    "broker: node {} connected to {} ({})",
                    self.settings.node_name,
                    con.describe(),
                    seeds.join(",")
                );
                self.scripts = Scripts::new(con.publish_command());
                self.compat_scripts.clear();
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
                seeds.join(",")
            );
        } else {
            log::debug!("broker: cannot connect to Redis: {why}");
        }
        self.connect_failures += 1;
    }

    async fn handle(&mut self, command: Command) {
        match command {
            Command::Publish(events, waiter) => self.publish(vec![(events, waiter)]),
            Command::Eval(evaluation) => self.evaluate(evaluation),
            Command::Warm {
                channels,
                creator,
                waiter,
            } => self.warm(channels, creator, waiter),
            Command::Delete(channel, waiter) => self.delete(channel, waiter),
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
            Command::List {
                after,
                limit,
                waiter,
            } => {
                let Some(con) = self.con.clone() else {
                    self.answer(waiter, BrokerAnswer::Listed(Err(BrokerError::Unavailable)));
                    return;
                };
                let listing = Listing {
                    con,
                    scripts: self.scripts.clone(),
                    settings: self.settings.clone(),
                    health: Arc::clone(&self.health),
                };
                let bus = Arc::clone(&self.bus);
                tokio::spawn(async move {
                    let result = listing.page(after.as_deref(), limit).await;
                    send_answer(&bus, waiter, BrokerAnswer::Listed(result));
                });
            }
        }
    }

    /// Sends the batches of several publish requests to Redis together, as a task of its own; each request is
    /// answered with its receipts.
    fn publish(&mut self, publishes: Vec<(Vec<NewEvent>, Waiter)>) {
        for (events, _) in &publishes {
            for event in events {
                if !self.published.contains(&event.channel) {
                    self.published.insert(event.channel.clone());
                }
            }
        }
        let Some(con) = self.con.clone() else {
            for (_, waiter) in publishes {
                self.answer(
                    waiter,
                    BrokerAnswer::Published(Err(BrokerError::Unavailable)),
                );
            }
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
            let (batches, waiters): (Vec<Vec<NewEvent>>, Vec<Waiter>) =
                publishes.into_iter().unzip();
            let results = job.run(batches).await;
            bus.holding_wakes(|| {
                for (waiter, result) in waiters.into_iter().zip(results) {
                    send_answer(&bus, waiter, BrokerAnswer::Published(result));
                }
            });
        });
    }

    fn answer(&self, waiter: Waiter, answer: BrokerAnswer) {
        send_answer(&self.bus, waiter, answer);
    }

    /// Starts a warm of `channels` (`warm`): those whose shard channel the node does not subscribe yet are
    /// followed first. The channels stay in hand until it reports (`on_warmed`).
    fn warm(
        &mut self,
        channels: Vec<(Box<str>, Option<EventId>)>,
        creator: Option<IpAddr>,
        waiter: Waiter,
    ) {
        let Some(loader) = self.loader() else {
            self.answer(waiter, BrokerAnswer::Warmed(Err(BrokerError::Unavailable)));
            return;
        };
        let channels = channels
            .into_iter()
            .map(|(channel, after)| {
                self.warming.take(&channel);
                let follow = !self.subscribed.contains_key(&channel);
                (channel, after, follow)
            })
            .collect();
        let warm = Warm {
            channels,
            creator,
            waiter,
        };
        loader.spawn(warm, self.warm_done.clone());
    }

    /// A warm is done: the channels it followed are subscribed from now on, all of its channels were needed
    /// now, and what was held back for them goes to the table.
    fn on_warmed(&mut self, done: Warmed) {
        let now = Instant::now();
        for channel in done.followed {
            self.subscribed.insert(channel, now);
        }
        for channel in &done.channels {
            if let Some(since) = self.subscribed.get_mut(channel) {
                *since = now;
            }
            let last = self.warming.release(channel);
            self.hand_over_held_back(channel, last);
        }
    }

    /// Hands the messages held back for `channel` to the table, in order, once it holds the channel, or
    /// (`regardless`) when no warm has it any more: the table then drops the events it does not need.
    fn hand_over_held_back(&mut self, channel: &str, regardless: bool) {
        if !regardless && self.table.fed_head(channel).is_none() {
            return;
        }
        let mut events = Vec::new();
        for message in self.warming.take_held_back(channel) {
            match message {
                ShardMessage::Event(fed) => events.push(fed),
                ShardMessage::Deleted => {
                    self.table
                        .feed(channel, std::mem::take(&mut events), &self.bus);
                    self.table.delete(channel, &self.bus);
                }
            }
        }
        if !events.is_empty() {
            self.table.feed(channel, events, &self.bus);
        }
    }

    /// What a warm or a catch-up needs, while connected.
    fn loader(&self) -> Option<Loader> {
        Some(Loader {
            con: self.con.clone()?,
            fill: self.scripts.fill.clone(),
            prefix: self.settings.prefix.clone(),
            timeout: self.settings.timeout,
            table: Arc::clone(&self.table),
            bus: Arc::clone(&self.bus),
            health: Arc::clone(&self.health),
        })
    }

    /// Deletes `channel` everywhere, as a task of its own.
    fn delete(&self, channel: Box<str>, waiter: Waiter) {
        let Some(mut con) = self.con.clone() else {
            self.answer(waiter, BrokerAnswer::Deleted(Err(BrokerError::Unavailable)));
            return;
        };
        let keys = keys(&self.settings.prefix, &channel);
        let script = self.scripts.delete.clone();
        let ttl = millis(self.settings.history_ttl);
        let timeout = self.settings.timeout;
        let health = Arc::clone(&self.health);
        let bus = Arc::clone(&self.bus);
        tokio::spawn(async move {
            let mut invocation = script.key(keys.stream());
            invocation
                .key(keys.deleted())
                .key(&keys.shard)
                .key(keys.trimmed())
                .arg(ttl);
            let what = || format!("cannot delete {channel}");
            let existed = health
                .within(timeout, what, invocation.invoke_async::<i64>(&mut con))
                .await;
            send_answer(&bus, waiter, BrokerAnswer::Deleted(existed.map(|n| n == 1)));
        });
    }

    /// Messages from Redis, as many as were waiting: events and deletions on shard channels, news of the
    /// connection. Consecutive events of a channel go to the table in one call (one lock, one wake per worker); a
    /// deletion first hands over the events before it. Messages of a channel a warm has in hand may be held back
    /// (see `warm`).
    fn on_pushes(&mut self, pushes: Vec<PushInfo>) {
        let mut events: Vec<(String, Vec<FedEvent>)> = Vec::new();
        for push in pushes {
            match push.kind {
                PushKind::SMessage | PushKind::Message => {
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
                    let message = if payload == "D" {
                        ShardMessage::Deleted
                    } else {
                        let Some(fed) = parse_event(channel, &payload) else {
                            log::warn!("broker: unreadable event on {shard}");
                            continue;
                        };
                        ShardMessage::Event(fed)
                    };
                    if self.warming.has(channel) {
                        self.feed(std::mem::take(&mut events));
                        self.warming.hold_back(channel, message);
                        self.hand_over_held_back(channel, false);
                        continue;
                    }
                    let fed = match message {
                        ShardMessage::Event(fed) => fed,
                        ShardMessage::Deleted => {
                            self.feed(std::mem::take(&mut events));
                            self.table.delete(channel, &self.bus);
                            continue;
                        }
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
        self.compat_scripts.prune();
        if std::mem::take(&mut self.catch_up) {
            if let Some(mut loader) = self.loader() {
                for (channel, last) in self.table.fed_channels() {
                    if loader.load(&channel, Some(last), None).await.is_err() {
                        self.catch_up = true;
                    }
                }
            }
        }
        let now = Instant::now();
        let idle: Vec<Box<str>> = self
            .subscribed
            .iter()
            .filter(|(channel, since)| {
                now.duration_since(**since) >= IDLE_GRACE && !self.warming.has(channel)
            })
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
                if let Err(e) = con.leave(&shard).await {
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
        let history_ms = millis(self.settings.history_ttl);
        let mut registered: Vec<(Box<str>, u64)> = self
            .published
            .drain()
            .map(|channel| (channel, history_ms))
            .collect();
        let presence_ms = millis(self.settings.node_ttl);
        // The registry lists the native API's channels; a compatible API's (`api/name`) are its own to list.
        registered.extend(
            changes
                .iter()
                .filter(|presence| !presence.clients.is_empty() && !presence.channel.contains('/'))
                .map(|presence| (Box::from(&*presence.channel), presence_ms)),
        );
        self.register(&con, registered);
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

impl Node {
    /// Lists channels in the registry that `GET /channels` reads, each for as long as it may have history or
    /// subscribers (a channel published to: its stream's lifetime; one with subscribers here: this node's
    /// presence TTL), counted on the registry shard's clock. An entry only ever gains time; a listing drops the
    /// ones whose time is up.
    fn register(&self, con: &Connection, channels: Vec<(Box<str>, u64)>) {
        if channels.is_empty() {
            return;
        }
        let registry = registry_keys(&self.settings.prefix);
        let script = self.scripts.register.clone();
        let mut con = con.clone();
        let timeout = self.settings.timeout;
        let health = Arc::clone(&self.health);
        tokio::spawn(async move {
            let mut invocation = script.key(&registry.names);
            invocation.key(&registry.until);
            for (channel, for_ms) in &channels {
                invocation.arg(&**channel).arg(*for_ms);
            }
            let what = || "cannot update the channel registry".to_string();
            let _ = health
                .within(timeout, what, invocation.invoke_async::<i64>(&mut con))
                .await;
        });
    }
}

/// A page of `GET /channels`, read as a task of its own: the registry's names after the cursor, then each one's
/// subscribers and history from its own shard, all at once.
struct Listing {
    con: Connection,
    scripts: Scripts,
    settings: Settings,
    health: Arc<Health>,
}

impl Listing {
    async fn page(self, after: Option<&str>, limit: usize) -> Result<ChannelPage, BrokerError> {
        let registry = registry_keys(&self.settings.prefix);
        let mut invocation = self.scripts.list.key(&registry.names);
        invocation
            .key(&registry.until)
            .arg(after.unwrap_or(""))
            .arg(limit);
        let mut con = self.con.clone();
        let what = || "cannot read the channel registry".to_string();
        let timeout = self.settings.timeout;
        let reply: Value = self
            .health
            .within(timeout, what, invocation.invoke_async(&mut con))
            .await?;
        let (last, live) = parse_list(reply).ok_or(BrokerError::Unavailable)?;
        let mut reads = Vec::with_capacity(live.len());
        for channel in live {
            let keys = keys(&self.settings.prefix, &channel);
            let script = self.scripts.info.clone();
            let mut con = self.con.clone();
            let health = Arc::clone(&self.health);
            reads.push(tokio::spawn(async move {
                let mut invocation = script.key(keys.nodes());
                invocation.key(keys.stream()).arg(keys.presence_prefix());
                let what = || format!("cannot read {channel}");
                let reply = health
                    .within(timeout, what, invocation.invoke_async::<Value>(&mut con))
                    .await?;
                parse_info(&channel, reply).ok_or(BrokerError::Unavailable)
            }));
        }
        let mut channels = Vec::with_capacity(reads.len());
        for read in reads {
            let info = read.await.map_err(|_| BrokerError::Unavailable)??;
            // Registered, but with neither history nor subscribers now (deleted, or every node left it).
            let Some(info) = info else { continue };
            channels.push(ChannelSummary {
                name: info.name,
                subscribers: info.subscribers,
                retained: info.retained,
            });
        }
        Ok(ChannelPage {
            channels,
            next_after: last.map(Arc::from),
        })
    }
}

/// The events of one channel in a publish job, each with its place: its batch, and its index there.
type ChannelGroup = (Box<str>, Vec<((usize, usize), NewEvent)>);

/// A batch publish, run as a task of its own so that publishes share round trips.
struct PublishJob {
    con: Connection,
    script: Script,
    settings: Settings,
    health: Arc<Health>,
}

impl PublishJob {
    /// Publishes the batches of several requests together: one script per channel (its events in request and
    /// batch order), all channels at once, so that concurrent publishes to a channel share one round trip and
    /// one script run. Returns each batch's receipts in its order, or its error: a batch fails when any of its
    /// channels does.
    async fn run(self, batches: Vec<Vec<NewEvent>>) -> Vec<Result<Vec<Receipt>, BrokerError>> {
        let mut receipts: Vec<Vec<Option<Receipt>>> = batches
            .iter()
            .map(|events| vec![None; events.len()])
            .collect();
        let mut groups: Vec<ChannelGroup> = Vec::new();
        for (batch, events) in batches.into_iter().enumerate() {
            for (index, event) in events.into_iter().enumerate() {
                let at = (batch, index);
                match groups.iter_mut().find(|(name, _)| *name == event.channel) {
                    Some((_, group)) => group.push((at, event)),
                    None => groups.push((event.channel.clone(), vec![(at, event)])),
                }
            }
        }
        let mut tasks = Vec::with_capacity(groups.len());
        for (channel, group) in groups {
            let keys = keys(&self.settings.prefix, &channel);
            let places: Vec<(usize, usize)> = group.iter().map(|(at, _)| *at).collect();
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
                        con.wait_for_replicas(&keys.stream(), replicas, timeout)
                            .await?;
                    }
                    Ok(reply)
                };
                (places, health.within(timeout, what, published).await)
            }));
        }
        let mut failed = vec![false; receipts.len()];
        for task in tasks {
            let (places, reply) = match task.await {
                Ok(done) => done,
                // A task that did not finish (the runtime is shutting down): nothing is confirmed.
                Err(_) => {
                    return receipts
                        .iter()
                        .map(|_| Err(BrokerError::Unavailable))
                        .collect()
                }
            };
            let Ok(reply) = reply else {
                for (batch, _) in places {
                    failed[batch] = true;
                }
                continue;
            };
            let nodes = reply.last().and_then(integer).unwrap_or(0);
            for ((batch, index), id) in places.into_iter().zip(&reply) {
                let id = text(id.clone()).and_then(|id| EventId::from_stream_id(&id));
                let slot = receipts.get_mut(batch).and_then(|b| b.get_mut(index));
                if let (Some(slot), Some(id)) = (slot, id) {
                    *slot = Some(Receipt {
                        id,
                        subscribers: usize::try_from(nodes).unwrap_or(0),
                    });
                }
            }
        }
        receipts
            .into_iter()
            .zip(failed)
            .map(|(batch, failed)| {
                if failed {
                    return Err(BrokerError::Unavailable);
                }
                batch
                    .into_iter()
                    .collect::<Option<Vec<Receipt>>>()
                    .ok_or(BrokerError::Unavailable)
            })
            .collect()
    }
}

fn send_answer(bus: &Bus, waiter: Waiter, answer: BrokerAnswer) {
    bus.answer(waiter, Answer::Broker(answer));
}
