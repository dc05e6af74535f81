//! The channel table: the only cross-thread mutable state of the core (each compatible API keeps its own
//! bookkeeping behind its own lock, taken before this one; see `api`).
//!
//! It does three jobs behind one mutex: the publish **sequencer** (`last_id`), the **registry** of channels (per
//! channel, how many subscribers each worker holds and which client ids are present), and **retention**
//! (`history`: the rings of recent events, their eviction and the records that make gaps visible). They share the
//! lock so that **assigning an id, appending to history and handing the event to the workers happen as one step in
//! one global order**: every worker sees events in id order, and a subscriber that resumes from id N can never miss
//! an event below N that was still in flight.
//!
//! It is touched on subscribe, unsubscribe, replay and publish, never inside fan-out. The lock is held only to
//! read or update this table and to `try_send` into inboxes: never across a socket write or a wake-up.
//!
//! Bounds: at most `max_channels` entries exist; history has its own (`history`'s module doc). An entry with no
//! subscribers and no history is removed at once: on the last unsubscribe, or when retention reports that a trim
//! left its ring empty.
//!
//! Listing: `names` keeps every channel's name in order beside the map, so a page of the listing (`list_page`) is
//! a range walk of bounded length under the lock, whatever the number of channels: the lock is never held for the
//! whole table at once on behalf of an admin request.
//!
//! Channel *incarnations*: deleting a channel and re-creating it gives a new incarnation number, so that a
//! worker that has not yet processed the deletion does not confuse old and new subscribers.

mod fed;
mod history;
mod hold;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

pub use crate::broker::seam::{
    ChannelInfo, ChannelPage, ChannelSummary, NewEvent, Receipt, Resume, TableError,
};
use crate::bus::{Bus, WorkerMsg};
use crate::message::{EventId, Message};
use crate::sync::lock;
pub use fed::{FedEvent, FedSubscribe, Fill, Presence};
use history::History;
pub use history::{ReplayCursor, Retention};
pub use hold::{LockHold, BOUNDS_NS as LOCK_HOLD_BOUNDS_NS};

/// Limits of the table, from `Config`.
#[derive(Clone, Debug)]
pub struct TableLimits {
    pub history: usize,
    pub history_ttl: Duration,
    pub history_max_bytes: usize,
    pub max_channels: usize,
    /// Most existing channels one client address may have created (`--max-channels-per-ip`); `None`: no limit,
    /// and no creator is recorded.
    pub max_channels_per_client: Option<usize>,
    pub workers: usize,
}

/// Why a stream starts (or continues) with a `reset` event: some events it asked for may be lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetReason {
    /// Pushed out of history by `--history` or `--history-max-bytes`.
    Evicted,
    /// Older than `--history-ttl`.
    Expired,
    /// The channel was deleted (`DELETE /channels/{channel}`).
    Deleted,
    /// The id is from before this server started.
    Restart,
    /// The id is above every id this server has assigned.
    Future,
    /// The id does not parse.
    Invalid,
}

impl ResetReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            ResetReason::Evicted => "evicted",
            ResetReason::Expired => "expired",
            ResetReason::Deleted => "deleted",
            ResetReason::Restart => "restart",
            ResetReason::Future => "future",
            ResetReason::Invalid => "invalid",
        }
    }
}

/// One subscribed channel of a stream, as the worker keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscribedChannel {
    pub name: Arc<str>,
    /// The incarnation subscribed to; 0 marks a subscription that is gone (deleted or left).
    pub incarnation: u64,
    /// The last id assigned when this channel was subscribed: live events at or below it are not for this
    /// subscription (they were published before it, and may still sit in the worker's inbox). Channels a stream
    /// joins later (over its WebSocket) each have their own.
    pub since: EventId,
}

/// The result of `subscribe`.
#[derive(Debug)]
pub struct Subscription {
    pub channels: Vec<SubscribedChannel>,
    /// The last id assigned when the subscription was made: live events at or below it are not for this subscriber
    /// (they are history, replayed if asked for).
    pub head: EventId,
    /// `Some` when the subscriber resumes: replay from history first.
    pub replay: Option<ReplayCursor>,
}

/// Channels whose events after the cursor may be lost.
#[derive(Debug, PartialEq, Eq)]
pub struct ResetNotice {
    pub reason: ResetReason,
    pub channels: Vec<Arc<str>>,
}

/// One step of a replay.
#[derive(Debug)]
pub struct ReplayStep {
    pub reset: Option<ResetNotice>,
    /// Nothing is left to replay: the subscriber is live from `cursor.after` on (from each channel's `since`,
    /// for a per-channel cursor).
    pub done: bool,
    /// For a per-channel cursor, each channel's position after this step, in the stream's channel order.
    pub reached: Vec<EventId>,
}

/// Whole-table figures for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableStats {
    pub channels: usize,
    pub retained_events: usize,
    pub retained_bytes: usize,
    pub published: u64,
    pub evicted: u64,
    pub expired: u64,
    pub overloaded: u64,
    /// How long successful publishes and subscribes held the table's lock.
    pub publish_hold: LockHold,
    pub subscribe_hold: LockHold,
}

/// A channel in the registry.
struct Channel {
    per_worker: Box<[u32]>,
    subscribers: usize,
    clients: HashMap<Box<str>, u32, foldhash::fast::RandomState>,
    last_id: Option<EventId>,
    /// `last_id` of the table when this entry was made.
    born_after: EventId,
    incarnation: u64,
    /// The client address that created it, counted in `State::created` (only with a per-client limit).
    creator: Option<IpAddr>,
    /// For a channel the Redis broker feeds (ids from Redis, events from its shard channel): this node holds every
    /// event after this id (less what retention trimmed, which is recorded as for local events). `None`: a local
    /// channel.
    covered_after: Option<EventId>,
}

impl Channel {
    /// Counts a subscriber of `worker` with `client_id` and returns its subscription, live after `since`.
    fn register(
        &mut self,
        name: Arc<str>,
        worker: usize,
        client_id: &str,
        since: EventId,
    ) -> SubscribedChannel {
        if let Some(count) = self.per_worker.get_mut(worker) {
            *count += 1;
        }
        self.subscribers += 1;
        *self.clients.entry(client_id.into()).or_insert(0) += 1;
        SubscribedChannel {
            name,
            incarnation: self.incarnation,
            since,
        }
    }

    /// Client ids with their number of streams on this node.
    fn clients(&self) -> Vec<(Box<str>, u32)> {
        self.clients
            .iter()
            .map(|(client, count)| (client.clone(), *count))
            .collect()
    }

    /// A fed channel's last id: its last event, else where its coverage starts.
    fn fed_head(&self) -> EventId {
        self.last_id.or(self.covered_after).unwrap_or(EventId::ZERO)
    }
}

struct State {
    last_id: EventId,
    start_id: EventId,
    /// Keyed by client-chosen names: foldhash with a random seed (see Cargo.toml), as `clients`.
    channels: HashMap<Arc<str>, Channel, foldhash::fast::RandomState>,
    /// The keys of `channels`, in order: the listing walks it a page at a time.
    names: BTreeSet<Arc<str>>,
    /// Existing channels per creating client address (`Channel::creator`).
    created: HashMap<IpAddr, usize, foldhash::fast::RandomState>,
    history: History,
    next_incarnation: u64,
    published: u64,
    overloaded: u64,
    publish_hold: LockHold,
    subscribe_hold: LockHold,
    /// Fed channels whose subscribers changed since the broker last asked (`fed::take_presence_changes`).
    presence_changed: HashSet<Arc<str>, foldhash::fast::RandomState>,
}

/// The table; see the module doc.
pub struct ChannelTable {
    state: Mutex<State>,
    limits: TableLimits,
}

impl ChannelTable {
    pub fn new(limits: TableLimits, now: SystemTime) -> ChannelTable {
        let start_id = EventId::seed_at(now);
        let state = State {
            last_id: start_id,
            start_id,
            channels: HashMap::default(),
            names: BTreeSet::new(),
            created: HashMap::default(),
            history: History::default(),
            next_incarnation: 1,
            published: 0,
            overloaded: 0,
            publish_hold: LockHold::default(),
            subscribe_hold: LockHold::default(),
            presence_changed: HashSet::default(),
        };
        ChannelTable {
            state: Mutex::new(state),
            limits,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// The address a new channel is counted against: the creator's, when a per-client limit is set.
    fn counted_creator(&self, creator: Option<IpAddr>) -> Option<IpAddr> {
        creator
            .filter(|_| self.limits.max_channels_per_client.is_some())
            .map(|ip| ip.to_canonical())
    }

    /// Refuses `new` more channels for `creator` past `--max-channels-per-ip`.
    fn check_creator(
        &self,
        st: &State,
        creator: Option<IpAddr>,
        new: usize,
    ) -> Result<(), TableError> {
        let (Some(ip), Some(limit)) = (creator, self.limits.max_channels_per_client) else {
            return Ok(());
        };
        let created = st.created.get(&ip).copied().unwrap_or(0);
        if new > 0 && created + new > limit {
            return Err(TableError::ClientChannelLimit);
        }
        Ok(())
    }

    /// Registers a subscriber of `worker` on `names` and decides where it starts.
    pub fn subscribe(
        &self,
        worker: usize,
        names: &[&str],
        client_id: &str,
        resume: Resume,
        creator: Option<IpAddr>,
    ) -> Result<Subscription, TableError> {
        let creator = self.counted_creator(creator);
        let mut st = self.lock();
        let locked = Instant::now();
        let missing = names
            .iter()
            .filter(|n| !st.channels.contains_key(**n))
            .count();
        if st.channels.len() + missing > self.limits.max_channels {
            return Err(TableError::TooManyChannels);
        }
        self.check_creator(&st, creator, missing)?;
        let head = st.last_id;
        // Without history nothing is replayed: a resume after which any of the channels may have had an event
        // (its last event is later, or it did not exist then) has lost it, and must be told so.
        let unkept = |id: EventId| {
            self.limits.history == 0
                && names.iter().any(|name| {
                    st.channels.get(*name).is_none_or(|ch| {
                        ch.born_after > id || ch.last_id.is_some_and(|last| last > id)
                    })
                })
        };
        let lost_unkept = match resume {
            Resume::After(id) => unkept(id),
            _ => false,
        };
        let mut channels: Vec<SubscribedChannel> = Vec::with_capacity(names.len());
        for name in names {
            if channels.iter().any(|c| &*c.name == *name) {
                // Each channel once per stream: the hub keeps one position per subscription.
                continue;
            }
            let (key, channel) = st.entry(name, self.limits.workers, creator);
            channels.push(channel.register(key, worker, client_id, head));
        }
        let replay = match resume {
            Resume::Fresh => None,
            Resume::Unparseable => Some((EventId::ZERO, Some(ResetReason::Invalid))),
            Resume::After(id) if id > head => Some((EventId::ZERO, Some(ResetReason::Future))),
            Resume::After(id) if id < st.start_id => Some((id, Some(ResetReason::Restart))),
            Resume::After(id) if lost_unkept => Some((id, Some(ResetReason::Evicted))),
            Resume::After(id) => Some((id, None)),
        }
        .map(|(after, pending_reason)| ReplayCursor::new(after, pending_reason));
        st.subscribe_hold.record(locked.elapsed());
        Ok(Subscription {
            channels,
            head,
            replay,
        })
    }

    /// Undoes `subscribe` for the channels that still have the incarnation the subscriber joined.
    pub fn unsubscribe(&self, worker: usize, channels: &[SubscribedChannel], client_id: &str) {
        let mut guard = self.lock();
        let st = &mut *guard;
        for sub in channels {
            let Some(channel) = st.channels.get_mut(&sub.name) else {
                continue;
            };
            if channel.incarnation != sub.incarnation {
                continue;
            }
            if let Some(count) = channel.per_worker.get_mut(worker) {
                *count = count.saturating_sub(1);
            }
            channel.subscribers = channel.subscribers.saturating_sub(1);
            if let Some(count) = channel.clients.get_mut(client_id) {
                *count -= 1;
                if *count == 0 {
                    channel.clients.remove(client_id);
                }
            }
            if channel.covered_after.is_some() {
                st.presence_changed.insert(Arc::clone(&sub.name));
            }
            if channel.subscribers == 0 && st.history.is_empty(&sub.name) {
                st.remove_channel(&sub.name);
            }
        }
    }

    /// Copies the next events after `cursor` on `channels` (in id order, at most about `budget` bytes of data,
    /// only those addressed to `client_id`) into `out`, and advances the cursor. With `done`, the cursor stands at
    /// the head: every later event reaches the subscriber live. A per-channel cursor starts each channel after its
    /// `since` and leaves it there: the step's `reached` says where each channel got to (the stream moves its
    /// `since` as it queues the events, and to `reached` after them).
    pub fn replay(
        &self,
        channels: &[SubscribedChannel],
        client_id: &str,
        cursor: &mut ReplayCursor,
        budget: usize,
        out: &mut Vec<Arc<Message>>,
    ) -> ReplayStep {
        let st = self.lock();
        let (per_channel, after) = (cursor.per_channel, cursor.after);
        let start = |sub: &SubscribedChannel| if per_channel { sub.since } else { after };
        let mut positions: Vec<(&str, EventId)> = channels
            .iter()
            .map(|sub| (&*sub.name, start(sub)))
            .collect();
        let reset = st.history.gaps(channels, cursor, start, |sub| {
            st.channels.get(&sub.name).map(|ch| ch.born_after)
        });
        let mut live: Vec<(&str, EventId)> = positions
            .iter()
            .zip(channels)
            .filter(|(_, sub)| {
                st.channels
                    .get(&sub.name)
                    .is_some_and(|ch| ch.incarnation == sub.incarnation)
            })
            .map(|(position, _)| *position)
            .collect();
        let done = st.history.replay_step(&mut live, client_id, budget, out);
        for (name, reached) in live {
            if let Some(position) = positions.iter_mut().find(|(n, _)| *n == name) {
                position.1 = reached;
            }
        }
        if cursor.per_channel {
            return ReplayStep {
                reset,
                done,
                reached: positions.into_iter().map(|(_, at)| at).collect(),
            };
        }
        cursor.after = if done {
            st.last_id
        } else {
            positions
                .iter()
                .map(|(_, at)| *at)
                .max()
                .unwrap_or(cursor.after)
        };
        ReplayStep {
            reset,
            done,
            reached: Vec::new(),
        }
    }

    /// Assigns ids, appends to history and hands every event to the workers holding subscribers of its channel,
    /// all under the lock, all or nothing. Wakes the workers after releasing the lock.
    pub fn publish(
        &self,
        events: Vec<NewEvent>,
        bus: &Bus,
        now: SystemTime,
        at: Instant,
    ) -> Result<Vec<Receipt>, TableError> {
        let mut wake = vec![false; bus.workers()];
        let receipts = {
            let mut st = self.lock();
            let locked = Instant::now();
            if let Err(e) = self.check_publish(&st, &events, bus) {
                if e == TableError::Overloaded {
                    st.overloaded += 1;
                }
                return Err(e);
            }
            let mut receipts = Vec::with_capacity(events.len());
            for event in events {
                let id = st.last_id.next_at(now);
                st.last_id = id;
                st.published += 1;
                receipts.push(st.append(id, event, &self.limits, bus, &mut wake, at));
            }
            let emptied = st.history.enforce_byte_limit(self.limits.history_max_bytes);
            st.remove_if_unused(emptied);
            st.publish_hold.record(locked.elapsed());
            receipts
        };
        for (worker, _) in wake.iter().enumerate().filter(|(_, w)| **w) {
            bus.wake(worker);
        }
        Ok(receipts)
    }

    fn check_publish(&self, st: &State, events: &[NewEvent], bus: &Bus) -> Result<(), TableError> {
        let mut per_worker = vec![0usize; bus.workers()];
        let mut new_channels: Vec<&str> = Vec::new();
        // New channels per creating client (a batch comes from one client: one entry, in practice).
        let mut created: Vec<(IpAddr, usize)> = Vec::new();
        for event in events {
            match st.channels.get(&*event.channel) {
                Some(channel) => {
                    for (worker, count) in channel.per_worker.iter().enumerate() {
                        if *count > 0 {
                            if let Some(n) = per_worker.get_mut(worker) {
                                *n += 1;
                            }
                        }
                    }
                }
                // Only a retained event creates a channel nobody subscribes to (`State::append`).
                None if self.limits.history > 0
                    && !event.ephemeral
                    && !new_channels.contains(&&*event.channel) =>
                {
                    new_channels.push(&event.channel);
                    if let Some(ip) = self.counted_creator(event.creator) {
                        match created.iter_mut().find(|(c, _)| *c == ip) {
                            Some((_, n)) => *n += 1,
                            None => created.push((ip, 1)),
                        }
                    }
                }
                None => {}
            }
        }
        if st.channels.len() + new_channels.len() > self.limits.max_channels {
            return Err(TableError::TooManyChannels);
        }
        for (ip, n) in created {
            self.check_creator(st, Some(ip), n)?;
        }
        let full = per_worker
            .iter()
            .enumerate()
            .any(|(worker, n)| *n > 0 && !bus.has_room(worker, *n));
        if full {
            return Err(TableError::Overloaded);
        }
        Ok(())
    }

    /// Deletes a channel: drops its history, forgets its subscribers and tells the workers holding them.
    /// Returns false when the channel does not exist.
    pub fn delete(&self, name: &str, bus: &Bus) -> bool {
        let mut wake = Vec::new();
        {
            let mut st = self.lock();
            let Some((key, channel)) = st.channels.remove_entry(name) else {
                return false;
            };
            st.names.remove(name);
            st.uncount_creator(channel.creator);
            let upto = st.last_id;
            st.history.delete(name, upto);
            for (worker, count) in channel.per_worker.iter().enumerate() {
                if *count > 0 {
                    let msg = WorkerMsg::ChannelDeleted {
                        channel: Arc::clone(&key),
                        incarnation: channel.incarnation,
                    };
                    if bus.send(worker, msg).is_err() {
                        log::warn!(worker; "inbox of worker {worker} is full; its subscribers of deleted channel {key} stay open");
                    }
                    wake.push(worker);
                }
            }
        }
        for worker in wake {
            bus.wake(worker);
        }
        true
    }

    /// Drops events older than `history_ttl`. Called periodically by one worker.
    pub fn expire(&self, now: Instant) {
        let mut st = self.lock();
        let Some(cutoff) = now.checked_sub(self.limits.history_ttl) else {
            return;
        };
        let emptied = st.history.expire(cutoff);
        st.remove_if_unused(emptied);
    }

    /// One page of the listing: the caller decides by name which channels to show (the native API hides the
    /// compatible APIs' channels unless asked), so the table needs no notion of APIs. The channels after the name `after` (from the first without it), in name order,
    /// that `keep` accepts, at most `limit` of them, looking at no more than `scan` names, so the lock is held for
    /// a bounded walk however many channels exist or the filter skips. `next_after` says where the next page
    /// starts, when names remain.
    pub fn list_page(
        &self,
        after: Option<&str>,
        limit: usize,
        scan: usize,
        keep: impl Fn(&str) -> bool,
    ) -> ChannelPage {
        let st = self.lock();
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut names = st.names.range::<str, _>((start, Bound::Unbounded));
        let mut channels = Vec::with_capacity(limit.min(scan));
        let mut last = None;
        for name in names.by_ref().take(scan) {
            last = Some(name);
            if !keep(name) {
                continue;
            }
            if let Some(ch) = st.channels.get(name) {
                channels.push(ChannelSummary {
                    name: Arc::clone(name),
                    subscribers: ch.subscribers,
                    retained: st.history.retention(name).events,
                });
            }
            if channels.len() >= limit {
                break;
            }
        }
        let more = names.next().is_some();
        ChannelPage {
            channels,
            next_after: last.filter(|_| more).map(Arc::clone),
        }
    }

    pub fn info(&self, name: &str) -> Option<ChannelInfo> {
        let st = self.lock();
        let (key, ch) = st.channels.get_key_value(name)?;
        let mut client_ids: Vec<Box<str>> = ch.clients.keys().cloned().collect();
        client_ids.sort();
        let retention = st.history.retention(name);
        Some(ChannelInfo {
            name: Arc::clone(key),
            subscribers: ch.subscribers,
            client_ids,
            last_id: ch.last_id,
            retained: retention.events,
            retained_bytes: retention.bytes,
        })
    }

    pub fn stats(&self) -> TableStats {
        let st = self.lock();
        TableStats {
            channels: st.channels.len(),
            retained_events: st.history.retained_events(),
            retained_bytes: st.history.retained_bytes(),
            published: st.published,
            evicted: st.history.evicted,
            expired: st.history.expired,
            overloaded: st.overloaded,
            publish_hold: st.publish_hold,
            subscribe_hold: st.subscribe_hold,
        }
    }
}

impl State {
    /// The entry for `name`, created (with a new incarnation) if missing. Returns the interned name too.
    fn entry(
        &mut self,
        name: &str,
        workers: usize,
        creator: Option<IpAddr>,
    ) -> (Arc<str>, &mut Channel) {
        if !self.channels.contains_key(name) {
            if let Some(ip) = creator {
                *self.created.entry(ip).or_insert(0) += 1;
            }
            let incarnation = self.next_incarnation;
            self.next_incarnation += 1;
            let channel = Channel {
                per_worker: vec![0; workers].into(),
                subscribers: 0,
                clients: HashMap::default(),
                last_id: None,
                born_after: self.last_id,
                incarnation,
                creator,
                covered_after: None,
            };
            let name: Arc<str> = Arc::from(name);
            self.names.insert(Arc::clone(&name));
            self.channels.insert(name, channel);
        }
        let key = self
            .channels
            .get_key_value(name)
            .map(|(k, _)| Arc::clone(k))
            .expect("entry was just ensured");
        let channel = self.channels.get_mut(name).expect("entry was just ensured");
        (key, channel)
    }

    /// Hands an event with its id to the workers holding subscribers of its channel and retains it.
    fn append(
        &mut self,
        id: EventId,
        event: NewEvent,
        limits: &TableLimits,
        bus: &Bus,
        wake: &mut [bool],
        at: Instant,
    ) -> Receipt {
        let exists = self.channels.contains_key(&*event.channel);
        let retain = limits.history > 0 && !event.ephemeral;
        if !exists && !retain {
            // Nobody listens and nothing is kept: the event is sequenced and gone.
            return Receipt { id, subscribers: 0 };
        }
        let creator = event
            .creator
            .filter(|_| limits.max_channels_per_client.is_some())
            .map(|ip| ip.to_canonical());
        let (name, channel) = self.entry(&event.channel, limits.workers, creator);
        let api_wire = event.wire.is_some();
        let mut message = Message::new(id, Arc::clone(&name), event.event, event.data, event.to)
            .with_wire(event.wire);
        // A compatible API's frame carries no id (it made the whole frame): positions per channel do not apply.
        if channel.covered_after.is_some() && !api_wire {
            message = message.with_per_channel_id();
        }
        let message = Arc::new(message);
        let subscribers = match &message.to {
            None => channel.subscribers,
            Some(to) => to
                .iter()
                .map(|c| channel.clients.get(c).copied().unwrap_or(0) as usize)
                .sum(),
        };
        channel.last_id = Some(id);
        for (worker, count) in channel.per_worker.iter().enumerate() {
            if *count > 0 {
                // `check_publish` made sure there is room; a failure here means a worker has exited (shutdown).
                let _ = bus.send(worker, WorkerMsg::Publish(Arc::clone(&message)));
                if let Some(w) = wake.get_mut(worker) {
                    *w = true;
                }
            }
        }
        if retain {
            self.history.append(&name, message, at, limits.history);
        }
        Receipt { id, subscribers }
    }

    /// A removed channel no longer counts against its creator's `--max-channels-per-ip`.
    fn uncount_creator(&mut self, creator: Option<IpAddr>) {
        let Some(ip) = creator else { return };
        if let Some(n) = self.created.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.created.remove(&ip);
            }
        }
    }

    /// Removes the channels among `names` (rings a trim left empty) that have no subscriber either.
    fn remove_if_unused(&mut self, names: Vec<Arc<str>>) {
        for name in names {
            if self
                .channels
                .get(&name)
                .is_some_and(|ch| ch.subscribers == 0)
            {
                self.remove_channel(&name);
            }
        }
    }

    /// Removes a channel from the registry and its ring from history (a fed channel's ring leaves no watermark:
    /// Redis keeps its events).
    fn remove_channel(&mut self, name: &str) {
        self.names.remove(name);
        match self.channels.remove(name) {
            Some(channel) => {
                self.uncount_creator(channel.creator);
                if channel.covered_after.is_some() {
                    self.history.discard(name);
                } else {
                    self.history.remove(name);
                }
            }
            None => self.history.remove(name),
        }
    }
}

#[cfg(test)]
mod tests;
