//! The channel table: the only cross-thread mutable state of the server.
//!
//! Per channel it holds the history ring, how many subscribers each worker holds, and which client ids are
//! present. With the publish sequencer (`last_id`) it lives behind one mutex, so that **assigning an id, appending
//! to history and handing the event to the workers happen as one step in one global order** (STYLE.md,
//! "Ordering"): every worker sees events in id order, and a subscriber that resumes from id N can never miss an
//! event below N that was still in flight.
//!
//! It is touched on subscribe, unsubscribe, replay and publish, never inside fan-out. The lock is held only to
//! read or update this table and to `try_send` into inboxes: never across a socket write or a wake-up.
//!
//! Bounds: every channel keeps at most `history` events for at most `history_ttl`; all channels together keep at
//! most `history_max_bytes` (oldest evicted first, whatever its channel); at most `max_channels` entries exist.
//! An entry with no subscribers and no history is removed at once.
//!
//! Gaps are never silent. Each trim (count, bytes, age) records on its channel the highest id it dropped and a
//! trim sequence number; a removed or deleted channel leaves a global "forgotten" watermark. A replay reports a
//! `reset` for every channel whose dropped ids lie after the subscriber's cursor and which it has not yet been
//! checked against. A spurious reset is possible (the watermark is global), a silent gap is not.
//!
//! Channel *incarnations*: deleting a channel and re-creating it gives a new incarnation number, so that a
//! worker that has not yet processed the deletion does not confuse old and new subscribers.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use crate::bus::{Bus, WorkerMsg};
use crate::message::{EventId, Message, Wire};

/// Limits of the table, from `Config`.
#[derive(Clone, Debug)]
pub struct TableLimits {
    pub history: usize,
    pub history_ttl: Duration,
    pub history_max_bytes: usize,
    pub max_channels: usize,
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

/// Where a new subscriber starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resume {
    /// Live events only.
    Fresh,
    /// Everything after this id, then live events.
    After(EventId),
    /// The client sent a `Last-Event-ID` that does not parse.
    Unparseable,
}

/// Errors the table answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableError {
    /// Creating the channel(s) would exceed `--max-channels`.
    TooManyChannels,
    /// A worker's inbox is full (it is too far behind); nothing was published.
    Overloaded,
}

impl TableError {
    pub fn as_str(&self) -> &'static str {
        match self {
            TableError::TooManyChannels => "too_many_channels",
            TableError::Overloaded => "overloaded",
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

/// The replay position of a resuming subscriber.
#[derive(Clone, Debug)]
pub struct ReplayCursor {
    /// Every event up to this id has been replayed (or deliberately skipped).
    pub after: EventId,
    /// The trim sequence number the subscriber has been checked against.
    seen_trim_seq: u64,
    /// A reason found when the subscription was made, reported with the first replay batch.
    pending_reason: Option<ResetReason>,
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
    /// Nothing is left to replay: the subscriber is live from `cursor.after` on.
    pub done: bool,
}

/// An event to publish, validated by the API layer.
#[derive(Debug, Default)]
pub struct NewEvent {
    pub channel: Box<str>,
    pub event: Option<Box<str>>,
    pub data: Box<str>,
    pub to: Option<Box<[Box<str>]>>,
    /// The encoding, made by a compatible API whose channels have a single wire format; `None` for native events,
    /// which are encoded on first need.
    pub wire: Option<Wire>,
    /// Delivered live but not kept in history: for compatible APIs that have no replay (or keep their own).
    pub ephemeral: bool,
}

/// What a publish did with one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Receipt {
    pub id: EventId,
    /// Subscribers the event was queued for (addressees present, for a targeted event).
    pub subscribers: usize,
}

/// A channel as listed by `GET /channels`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelSummary {
    pub name: Arc<str>,
    pub subscribers: usize,
    pub retained: usize,
}

/// A channel as shown by `GET /channels/{channel}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelInfo {
    pub name: Arc<str>,
    pub subscribers: usize,
    pub client_ids: Vec<Box<str>>,
    pub last_id: Option<EventId>,
    pub retained: usize,
    pub retained_bytes: usize,
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
}

struct Retained {
    message: Arc<Message>,
    bytes: usize,
}

struct Channel {
    history: VecDeque<Retained>,
    per_worker: Box<[u32]>,
    subscribers: usize,
    clients: HashMap<Box<str>, u32>,
    last_id: Option<EventId>,
    retained_bytes: usize,
    /// The last trim: highest id dropped, why, and its trim sequence number.
    trimmed: Option<(EventId, ResetReason, u64)>,
    /// `last_id` of the table when this entry was made.
    born_after: EventId,
    incarnation: u64,
}

impl Channel {
    fn is_unused(&self) -> bool {
        self.subscribers == 0 && self.history.is_empty()
    }
}

/// One retained event in global publish order, for byte- and age-based eviction across channels.
struct OrderEntry {
    id: EventId,
    channel: Arc<str>,
    at: Instant,
}

struct State {
    last_id: EventId,
    start_id: EventId,
    channels: HashMap<Arc<str>, Channel>,
    order: VecDeque<OrderEntry>,
    /// Entries of `order` whose event a per-channel trim already removed.
    stale_order: usize,
    retained_events: usize,
    retained_bytes: usize,
    trim_seq: u64,
    /// Highest id possibly lost with a removed or deleted channel, why, and the trim sequence number then.
    forgotten: Option<(EventId, ResetReason, u64)>,
    next_incarnation: u64,
    stats: TableStats,
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
            channels: HashMap::new(),
            order: VecDeque::new(),
            stale_order: 0,
            retained_events: 0,
            retained_bytes: 0,
            trim_seq: 0,
            forgotten: None,
            next_incarnation: 1,
            stats: TableStats::default(),
        };
        ChannelTable {
            state: Mutex::new(state),
            limits,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock aborts the process (panic = "abort"), so poisoning cannot be observed in
        // release builds; in tests, carry on with the data as it is.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a subscriber of `worker` on `names` and decides where it starts.
    pub fn subscribe(
        &self,
        worker: usize,
        names: &[&str],
        client_id: &str,
        resume: Resume,
    ) -> Result<Subscription, TableError> {
        let mut st = self.lock();
        let missing = names
            .iter()
            .filter(|n| !st.channels.contains_key(**n))
            .count();
        if st.channels.len() + missing > self.limits.max_channels {
            return Err(TableError::TooManyChannels);
        }
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
            let (key, channel) = st.entry(name, self.limits.workers);
            if let Some(count) = channel.per_worker.get_mut(worker) {
                *count += 1;
            }
            channel.subscribers += 1;
            *channel.clients.entry(client_id.into()).or_insert(0) += 1;
            channels.push(SubscribedChannel {
                name: key,
                incarnation: channel.incarnation,
                since: head,
            });
        }
        let replay = match resume {
            Resume::Fresh => None,
            Resume::Unparseable => Some((EventId::ZERO, Some(ResetReason::Invalid))),
            Resume::After(id) if id > head => Some((EventId::ZERO, Some(ResetReason::Future))),
            Resume::After(id) if id < st.start_id => Some((id, Some(ResetReason::Restart))),
            Resume::After(id) if lost_unkept => Some((id, Some(ResetReason::Evicted))),
            Resume::After(id) => Some((id, None)),
        }
        .map(|(after, pending_reason)| ReplayCursor {
            after,
            seen_trim_seq: 0,
            pending_reason,
        });
        Ok(Subscription {
            channels,
            head,
            replay,
        })
    }

    /// Undoes `subscribe` for the channels that still have the incarnation the subscriber joined.
    pub fn unsubscribe(&self, worker: usize, channels: &[SubscribedChannel], client_id: &str) {
        let mut st = self.lock();
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
            if channel.is_unused() {
                st.remove_channel(&sub.name);
            }
        }
    }

    /// Copies the next events after `cursor` on `channels` (in id order, at most about `budget` bytes of data,
    /// only those addressed to `client_id`) into `out`, and advances the cursor. With `done`, the cursor stands at
    /// the head: every later event reaches the subscriber live.
    pub fn replay(
        &self,
        channels: &[SubscribedChannel],
        client_id: &str,
        cursor: &mut ReplayCursor,
        budget: usize,
        out: &mut Vec<Arc<Message>>,
    ) -> ReplayStep {
        let st = self.lock();
        let reset = st.gaps(channels, cursor);
        cursor.seen_trim_seq = st.trim_seq;

        let mut positions: Vec<(&VecDeque<Retained>, usize)> = channels
            .iter()
            .filter_map(|sub| {
                st.channels
                    .get(&sub.name)
                    .filter(|ch| ch.incarnation == sub.incarnation)
            })
            .map(|ch| {
                (
                    &ch.history,
                    ch.history.partition_point(|r| r.message.id <= cursor.after),
                )
            })
            .collect();
        let mut spent = 0;
        loop {
            let next = positions
                .iter_mut()
                .filter_map(|(history, at)| history.get(*at).map(|r| (r, at)))
                .min_by_key(|(r, _)| r.message.id);
            let Some((retained, at)) = next else {
                cursor.after = st.last_id;
                return ReplayStep { reset, done: true };
            };
            *at += 1;
            cursor.after = retained.message.id;
            if retained.message.is_for(client_id) {
                spent += retained.message.data.len() + 64;
                out.push(Arc::clone(&retained.message));
            }
            if spent >= budget {
                return ReplayStep { reset, done: false };
            }
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
            if let Err(e) = self.check_publish(&st, &events, bus) {
                if e == TableError::Overloaded {
                    st.stats.overloaded += 1;
                }
                return Err(e);
            }
            let mut receipts = Vec::with_capacity(events.len());
            for event in events {
                receipts.push(st.append(event, &self.limits, bus, &mut wake, now, at));
            }
            st.enforce_byte_limit(self.limits.history_max_bytes);
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
                }
                None => {}
            }
        }
        if st.channels.len() + new_channels.len() > self.limits.max_channels {
            return Err(TableError::TooManyChannels);
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
            st.drop_retained_of(&channel);
            st.trim_seq += 1;
            let upto = st.last_id;
            let seq = st.trim_seq;
            st.forget(upto, ResetReason::Deleted, seq);
            for (worker, count) in channel.per_worker.iter().enumerate() {
                if *count > 0 {
                    let msg = WorkerMsg::ChannelDeleted {
                        channel: Arc::clone(&key),
                        incarnation: channel.incarnation,
                    };
                    if bus.send(worker, msg).is_err() {
                        log::warn!("inbox of worker {worker} is full; its subscribers of deleted channel {key} stay open");
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
        while st.order.front().is_some_and(|e| e.at <= cutoff) {
            st.evict_oldest(ResetReason::Expired);
        }
    }

    /// The channels whose name `keep` accepts, sorted by name. The caller decides by name which to show (the
    /// native API hides the compatible APIs' channels unless asked), so the table needs no notion of APIs.
    pub fn list(&self, keep: impl Fn(&str) -> bool) -> Vec<ChannelSummary> {
        let st = self.lock();
        let mut list: Vec<ChannelSummary> = st
            .channels
            .iter()
            .filter(|(name, _)| keep(name))
            .map(|(name, ch)| ChannelSummary {
                name: Arc::clone(name),
                subscribers: ch.subscribers,
                retained: ch.history.len(),
            })
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }

    pub fn info(&self, name: &str) -> Option<ChannelInfo> {
        let st = self.lock();
        let (key, ch) = st.channels.get_key_value(name)?;
        let mut client_ids: Vec<Box<str>> = ch.clients.keys().cloned().collect();
        client_ids.sort();
        Some(ChannelInfo {
            name: Arc::clone(key),
            subscribers: ch.subscribers,
            client_ids,
            last_id: ch.last_id,
            retained: ch.history.len(),
            retained_bytes: ch.retained_bytes,
        })
    }

    pub fn stats(&self) -> TableStats {
        let st = self.lock();
        TableStats {
            channels: st.channels.len(),
            retained_events: st.retained_events,
            retained_bytes: st.retained_bytes,
            ..st.stats
        }
    }
}

impl State {
    /// The entry for `name`, created (with a new incarnation) if missing. Returns the interned name too.
    fn entry(&mut self, name: &str, workers: usize) -> (Arc<str>, &mut Channel) {
        if !self.channels.contains_key(name) {
            let incarnation = self.next_incarnation;
            self.next_incarnation += 1;
            let channel = Channel {
                history: VecDeque::new(),
                per_worker: vec![0; workers].into(),
                subscribers: 0,
                clients: HashMap::new(),
                last_id: None,
                retained_bytes: 0,
                trimmed: None,
                born_after: self.last_id,
                incarnation,
            };
            self.channels.insert(Arc::from(name), channel);
        }
        let key = self
            .channels
            .get_key_value(name)
            .map(|(k, _)| Arc::clone(k))
            .expect("entry was just ensured");
        let channel = self.channels.get_mut(name).expect("entry was just ensured");
        (key, channel)
    }

    fn append(
        &mut self,
        event: NewEvent,
        limits: &TableLimits,
        bus: &Bus,
        wake: &mut [bool],
        now: SystemTime,
        at: Instant,
    ) -> Receipt {
        let id = self.last_id.next_at(now);
        self.last_id = id;
        self.stats.published += 1;
        let exists = self.channels.contains_key(&*event.channel);
        let retain = limits.history > 0 && !event.ephemeral;
        if !exists && !retain {
            // Nobody listens and nothing is kept: the event is sequenced and gone.
            return Receipt { id, subscribers: 0 };
        }
        let (name, channel) = self.entry(&event.channel, limits.workers);
        let message = Arc::new(
            Message::new(id, Arc::clone(&name), event.event, event.data, event.to)
                .with_wire(event.wire),
        );
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
            let bytes = message.retained_bytes();
            channel.history.push_back(Retained { message, bytes });
            channel.retained_bytes += bytes;
            let over = channel.history.len() > limits.history;
            self.retained_events += 1;
            self.retained_bytes += bytes;
            self.order.push_back(OrderEntry {
                id,
                channel: name,
                at,
            });
            if over {
                self.trim_front_of(&event.channel, ResetReason::Evicted);
                self.stale_order += 1;
                self.compact_order();
            }
        }
        Receipt { id, subscribers }
    }

    /// Removes the oldest retained event of one channel and records the trim.
    fn trim_front_of(&mut self, name: &str, reason: ResetReason) {
        self.trim_seq += 1;
        let seq = self.trim_seq;
        let Some(channel) = self.channels.get_mut(name) else {
            return;
        };
        let Some(dropped) = channel.history.pop_front() else {
            return;
        };
        channel.retained_bytes -= dropped.bytes;
        channel.trimmed = Some((dropped.message.id, reason, seq));
        self.retained_events -= 1;
        self.retained_bytes -= dropped.bytes;
        match reason {
            ResetReason::Expired => self.stats.expired += 1,
            _ => self.stats.evicted += 1,
        }
        if channel.is_unused() {
            self.remove_channel(name);
        }
    }

    /// Pops the globally oldest retained event (skipping entries already trimmed per channel).
    fn evict_oldest(&mut self, reason: ResetReason) {
        let Some(entry) = self.order.pop_front() else {
            return;
        };
        let is_front = self
            .channels
            .get(&entry.channel)
            .and_then(|ch| ch.history.front())
            .is_some_and(|r| r.message.id == entry.id);
        if is_front {
            self.trim_front_of(&entry.channel, reason);
        } else {
            self.stale_order = self.stale_order.saturating_sub(1);
        }
    }

    fn enforce_byte_limit(&mut self, max_bytes: usize) {
        while self.retained_bytes > max_bytes && !self.order.is_empty() {
            self.evict_oldest(ResetReason::Evicted);
        }
    }

    /// Keeps `order` from growing with entries that per-channel trims made stale (amortised O(1)).
    fn compact_order(&mut self) {
        if self.stale_order <= self.retained_events + 1024 {
            return;
        }
        let channels = &self.channels;
        self.order.retain(|e| {
            channels
                .get(&e.channel)
                .and_then(|ch| ch.history.front())
                .is_some_and(|front| front.message.id <= e.id)
        });
        self.stale_order = 0;
    }

    /// Accounts for the history of a channel that is being removed whole.
    fn drop_retained_of(&mut self, channel: &Channel) {
        self.retained_events -= channel.history.len();
        self.retained_bytes -= channel.retained_bytes;
        self.stale_order += channel.history.len();
    }

    fn remove_channel(&mut self, name: &str) {
        if let Some(channel) = self.channels.remove(name) {
            self.drop_retained_of(&channel);
            if let Some((upto, reason, seq)) = channel.trimmed {
                self.forget(upto, reason, seq);
            }
        }
    }

    fn forget(&mut self, upto: EventId, reason: ResetReason, seq: u64) {
        let (old_upto, old_reason, old_seq) = self.forgotten.unwrap_or((EventId::ZERO, reason, 0));
        let (upto, reason) = if upto >= old_upto {
            (upto, reason)
        } else {
            (old_upto, old_reason)
        };
        self.forgotten = Some((upto, reason, seq.max(old_seq)));
    }

    /// The channels of a stream whose events after `cursor.after` may have been dropped since it last looked.
    fn gaps(
        &self,
        channels: &[SubscribedChannel],
        cursor: &mut ReplayCursor,
    ) -> Option<ResetNotice> {
        let after = cursor.after;
        let seen = cursor.seen_trim_seq;
        let unseen_loss = |trim: Option<(EventId, ResetReason, u64)>| {
            trim.filter(|(upto, _, seq)| *seq > seen && *upto > after)
        };
        let mut reason = cursor.pending_reason.take();
        let mut names = Vec::new();
        for sub in channels.iter().filter(|sub| sub.incarnation != 0) {
            let found = match self.channels.get(&sub.name) {
                Some(ch) => unseen_loss(ch.trimmed).or_else(|| {
                    if ch.born_after > after {
                        unseen_loss(self.forgotten)
                    } else {
                        None
                    }
                }),
                None => unseen_loss(self.forgotten),
            };
            if let Some((_, why, _)) = found {
                reason.get_or_insert(why);
                names.push(Arc::clone(&sub.name));
            }
        }
        match reason {
            Some(reason) if names.is_empty() => Some(ResetNotice {
                reason,
                channels: channels.iter().map(|c| Arc::clone(&c.name)).collect(),
            }),
            Some(reason) => Some(ResetNotice {
                reason,
                channels: names,
            }),
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn table(
        history: usize,
        max_bytes: usize,
    ) -> (
        ChannelTable,
        Bus,
        Vec<crossbeam_channel::Receiver<WorkerMsg>>,
    ) {
        let limits = TableLimits {
            history,
            history_ttl: Duration::from_secs(3600),
            history_max_bytes: max_bytes,
            max_channels: 100,
            workers: 2,
        };
        let t0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let (bus, inboxes) = Bus::for_tests(2, 16);
        (ChannelTable::new(limits, t0), bus, inboxes)
    }

    fn event(channel: &str, data: &str) -> NewEvent {
        NewEvent {
            channel: channel.into(),
            event: None,
            data: data.into(),
            to: None,
            ..Default::default()
        }
    }

    fn publish(t: &ChannelTable, bus: &Bus, channel: &str, data: &str) -> EventId {
        t.publish(
            vec![event(channel, data)],
            bus,
            SystemTime::now(),
            Instant::now(),
        )
        .expect("publish")[0]
            .id
    }

    fn replay_all(
        t: &ChannelTable,
        sub: &mut Subscription,
        client: &str,
        budget: usize,
    ) -> (Vec<String>, Vec<ResetNotice>) {
        let mut cursor = sub.replay.take().expect("resuming");
        let (mut data, mut resets) = (Vec::new(), Vec::new());
        loop {
            let mut out = Vec::new();
            let step = t.replay(&sub.channels, client, &mut cursor, budget, &mut out);
            data.extend(out.iter().map(|m| m.data.to_string()));
            resets.extend(step.reset);
            if step.done {
                return (data, resets);
            }
        }
    }

    #[test]
    fn publish_reaches_only_workers_with_subscribers_in_id_order() {
        let (t, bus, inboxes) = table(10, 1 << 20);
        t.subscribe(1, &["a"], "c1", Resume::Fresh)
            .expect("subscribe");
        let first = publish(&t, &bus, "a", "1");
        let second = publish(&t, &bus, "a", "2");
        assert!(first < second);
        assert!(inboxes[0].is_empty());
        let ids: Vec<EventId> = inboxes[1]
            .try_iter()
            .map(|m| match m {
                WorkerMsg::Publish(m) => m.id,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(ids, vec![first, second]);
    }

    #[test]
    fn resume_replays_exactly_the_missed_events_across_channels_in_order() {
        let (t, bus, _inboxes) = table(10, 1 << 20);
        let first = publish(&t, &bus, "a", "a1");
        publish(&t, &bus, "b", "b1");
        publish(&t, &bus, "a", "a2");
        publish(&t, &bus, "c", "c1");
        publish(&t, &bus, "b", "b2");
        let mut sub = t
            .subscribe(0, &["a", "b"], "c1", Resume::After(first))
            .expect("subscribe");
        for budget in [0, 1, 1000] {
            let mut again = Subscription {
                channels: sub.channels.clone(),
                head: sub.head,
                replay: sub.replay.clone(),
            };
            let (data, resets) = replay_all(&t, &mut again, "c1", budget);
            assert_eq!(data, ["b1", "a2", "b2"], "budget {budget}");
            assert!(resets.is_empty());
        }
        let (_, _) = replay_all(&t, &mut sub, "c1", 10);
    }

    #[test]
    fn without_history_a_resume_past_a_missed_event_is_reset_not_silent() {
        let (t, bus, _inboxes) = table(0, 1 << 20);
        let watcher = t
            .subscribe(0, &["a"], "w", Resume::Fresh)
            .expect("subscribe");
        let seen = publish(&t, &bus, "a", "seen");
        let mut quiet = t
            .subscribe(0, &["a"], "c", Resume::After(seen))
            .expect("subscribe");
        let (data, resets) = replay_all(&t, &mut quiet, "c", 10);
        assert!(
            data.is_empty() && resets.is_empty(),
            "nothing was missed: {resets:?}"
        );
        publish(&t, &bus, "a", "missed");
        let mut behind = t
            .subscribe(0, &["a"], "c", Resume::After(seen))
            .expect("subscribe");
        let (data, resets) = replay_all(&t, &mut behind, "c", 10);
        assert!(data.is_empty());
        assert_eq!(resets.len(), 1);
        assert_eq!(resets[0].reason, ResetReason::Evicted);
        assert_eq!(&*resets[0].channels[0], "a");
        drop(watcher);
    }

    #[test]
    fn a_channel_named_twice_is_subscribed_once() {
        let (t, _bus, _inboxes) = table(10, 1 << 20);
        let sub = t
            .subscribe(0, &["a", "b", "a"], "c", Resume::Fresh)
            .expect("subscribe");
        let names: Vec<&str> = sub.channels.iter().map(|c| &*c.name).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(t.info("a").map(|i| i.subscribers), Some(1));
    }

    #[test]
    fn targeted_events_replay_only_to_their_addressees() {
        let (t, bus, _inboxes) = table(10, 1 << 20);
        let before = publish(&t, &bus, "a", "open");
        let to = Some(vec![Box::from("alice")].into_boxed_slice());
        t.publish(
            vec![NewEvent {
                channel: "a".into(),
                event: None,
                data: "secret".into(),
                to,
                ..Default::default()
            }],
            &bus,
            SystemTime::now(),
            Instant::now(),
        )
        .expect("publish");
        for (client, expected) in [("alice", vec!["secret"]), ("bob", vec![])] {
            let mut sub = t
                .subscribe(0, &["a"], client, Resume::After(before))
                .expect("subscribe");
            assert_eq!(replay_all(&t, &mut sub, client, 100).0, expected);
        }
    }

    #[test]
    fn eviction_by_count_is_reported_once_then_the_rest_replays() {
        let (t, bus, _inboxes) = table(2, 1 << 20);
        let first = publish(&t, &bus, "a", "1");
        for d in ["2", "3", "4"] {
            publish(&t, &bus, "a", d);
        }
        let mut sub = t
            .subscribe(0, &["a", "b"], "c", Resume::After(first))
            .expect("subscribe");
        let (data, resets) = replay_all(&t, &mut sub, "c", 0);
        assert_eq!(data, ["3", "4"]);
        assert_eq!(
            resets,
            vec![ResetNotice {
                reason: ResetReason::Evicted,
                channels: vec!["a".into()]
            }]
        );
    }

    #[test]
    fn byte_limit_evicts_oldest_across_channels() {
        let (t, bus, _inboxes) = table(100, 1);
        let first = publish(&t, &bus, "a", "1");
        publish(&t, &bus, "b", "2");
        assert_eq!(t.stats().retained_events, 0);
        let mut sub = t
            .subscribe(0, &["b"], "c", Resume::After(first))
            .expect("subscribe");
        let (data, resets) = replay_all(&t, &mut sub, "c", 100);
        assert!(data.is_empty());
        assert_eq!(resets[0].reason, ResetReason::Evicted);
    }

    #[test]
    fn expiry_and_deletion_and_bad_ids_reset() {
        let (t, bus, _inboxes) = table(100, 1 << 20);
        let first = publish(&t, &bus, "a", "1");
        publish(&t, &bus, "a", "2");
        t.expire(Instant::now() + Duration::from_secs(7200));
        let mut sub = t
            .subscribe(0, &["a"], "c", Resume::After(first))
            .expect("subscribe");
        assert_eq!(
            replay_all(&t, &mut sub, "c", 100).1[0].reason,
            ResetReason::Expired
        );

        let before_delete = publish(&t, &bus, "d", "x");
        publish(&t, &bus, "d", "y");
        assert!(t.delete("d", &bus));
        assert!(!t.delete("d", &bus));
        let mut sub = t
            .subscribe(0, &["d"], "c", Resume::After(before_delete))
            .expect("subscribe");
        assert_eq!(
            replay_all(&t, &mut sub, "c", 100).1[0].reason,
            ResetReason::Deleted
        );

        let head = publish(&t, &bus, "e", "z");
        for (resume, reason) in [
            (Resume::Unparseable, ResetReason::Invalid),
            (
                Resume::After(EventId::parse("18446744073709551615").unwrap_or(head)),
                ResetReason::Future,
            ),
            (
                Resume::After(EventId::parse("5").expect("id")),
                ResetReason::Restart,
            ),
        ] {
            let mut sub = t.subscribe(0, &["e"], "c", resume).expect("subscribe");
            let (data, resets) = replay_all(&t, &mut sub, "c", 100);
            assert_eq!(resets[0].reason, reason);
            assert_eq!(data, ["z"], "{reason:?} replays what is left");
        }
    }

    #[test]
    fn no_reset_when_nothing_was_lost() {
        let (t, bus, _inboxes) = table(100, 1 << 20);
        let first = publish(&t, &bus, "a", "1");
        let mut sub = t
            .subscribe(0, &["a", "new"], "c", Resume::After(first))
            .expect("subscribe");
        let (data, resets) = replay_all(&t, &mut sub, "c", 100);
        assert!(data.is_empty() && resets.is_empty());
    }

    #[test]
    fn unsubscribing_the_last_subscriber_of_an_empty_channel_removes_it() {
        let (t, _bus, _inboxes) = table(100, 1 << 20);
        let sub = t
            .subscribe(1, &["a", "b"], "c", Resume::Fresh)
            .expect("subscribe");
        assert_eq!(t.stats().channels, 2);
        assert_eq!(
            t.info("a").map(|i| i.client_ids),
            Some(vec![Box::from("c")])
        );
        t.unsubscribe(1, &sub.channels, "c");
        assert_eq!(t.stats().channels, 0);
    }

    #[test]
    fn channel_limit_is_enforced_for_subscribe_and_publish() {
        let (t, bus, _inboxes) = table(100, 1 << 20);
        let names: Vec<String> = (0..100).map(|i| format!("c{i}")).collect();
        let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
        t.subscribe(0, &refs, "c", Resume::Fresh)
            .expect("subscribe");
        assert_eq!(
            t.subscribe(0, &["one-more"], "c", Resume::Fresh).err(),
            Some(TableError::TooManyChannels)
        );
        let err = t
            .publish(
                vec![event("one-more", "x")],
                &bus,
                SystemTime::now(),
                Instant::now(),
            )
            .err();
        assert_eq!(err, Some(TableError::TooManyChannels));
        let ephemeral = NewEvent {
            ephemeral: true,
            ..event("one-more", "x")
        };
        t.publish(vec![ephemeral], &bus, SystemTime::now(), Instant::now())
            .expect("an unretained event to a missing channel creates nothing, so the limit does not apply");
        assert_eq!(t.stats().channels, 100);
    }

    #[test]
    fn an_unretained_event_to_a_missing_channel_needs_no_room_in_a_full_table() {
        let (t, bus, _inboxes) = table(100, 1 << 20);
        let names: Vec<String> = (0..100).map(|i| format!("c{i}")).collect();
        let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
        t.subscribe(0, &refs, "c", Resume::Fresh)
            .expect("subscribe");
        let ephemeral = NewEvent {
            ephemeral: true,
            ..event("nobody-listens", "x")
        };
        t.publish(vec![ephemeral], &bus, SystemTime::now(), Instant::now())
            .expect("nothing is created, so nothing is refused");
        assert_eq!(t.stats().channels, 100);
    }

    #[test]
    fn a_full_inbox_refuses_the_whole_batch() {
        let (t, bus, _inboxes) = table(100, 1 << 20);
        t.subscribe(0, &["a"], "c", Resume::Fresh)
            .expect("subscribe");
        let batch = (0..17).map(|_| event("a", "x")).collect();
        assert_eq!(
            t.publish(batch, &bus, SystemTime::now(), Instant::now())
                .err(),
            Some(TableError::Overloaded)
        );
        assert_eq!(t.stats().published, 0);
        assert_eq!(t.stats().overloaded, 1);
    }

    #[test]
    fn order_queue_stays_bounded_under_per_channel_trimming() {
        let (t, bus, _inboxes) = table(1, usize::MAX);
        for i in 0..10_000 {
            publish(&t, &bus, "a", &i.to_string());
        }
        let st = t.lock();
        assert!(
            st.order.len() <= 1 + 1024 + 1,
            "order grew to {}",
            st.order.len()
        );
    }
}
