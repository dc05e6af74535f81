//! Channels fed by the Redis broker: the node's view of a channel whose events and ids come from Redis.
//!
//! With `--broker redis://…` a native channel's events are sequenced by Redis (one stream per channel) and reach
//! every node through the channel's shard channel; the broker thread hands them to this table, which fans them
//! out and retains them exactly as it does local events. The table is then a per-node cache of the channel: it
//! holds every event after `covered_after` (less what retention trimmed, recorded as usual), and it is the only
//! path to the workers, so the delivery, replay and reset rules of the local table hold unchanged.
//!
//! Exactness rests on one writer: only the broker thread calls `feed` and `fill`, in the order it receives live
//! events and history from Redis, and both skip ids at or below the channel's last id. A channel becomes fed
//! (`fill`) only after the node's shard subscription is confirmed, so every later event arrives live, and the fill
//! brings everything before it; overlap between the two is dropped by id. A subscriber is registered only on a fed
//! channel whose coverage reaches back to its cursor (`subscribe_fed`), otherwise the API asks the broker to warm
//! the channel first. Such a stream's position is one id per channel, each from that channel's stream in Redis
//! (several channels live on several shards, whose ids no one order relates): its `Last-Event-ID` lists them.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use super::{
    Channel, ChannelTable, NewEvent, ReplayCursor, ResetReason, Resume, Subscription, TableError,
};
use crate::bus::Bus;
use crate::message::{EventId, Message};

/// One event as Redis holds it: its id, and the instant it was published as this node reckons it.
pub struct FedEvent {
    pub id: EventId,
    pub event: NewEvent,
    pub at: Instant,
}

/// What `subscribe_fed` did.
#[derive(Debug)]
pub enum FedSubscribe {
    /// Every channel is held from its cursor on: the stream is registered.
    Subscribed(Subscription),
    /// Nothing was registered: the broker must first warm these channels, each read after its cursor.
    Warm(Vec<(Box<str>, Option<EventId>)>),
}

/// A node's subscribers of one channel: each client id with its number of streams.
pub struct Presence {
    pub channel: Arc<str>,
    pub clients: Vec<(Box<str>, u32)>,
}

/// What Redis holds of a channel, read after this node's shard subscription was confirmed.
pub struct Fill {
    /// The stream's last id (`None`: no stream).
    pub last: Option<EventId>,
    /// Events of the channel after the cursor asked for, oldest first.
    pub events: Vec<FedEvent>,
    /// Events after the cursor that Redis no longer has: the highest such id, and why.
    pub lost: Option<(EventId, ResetReason)>,
}

impl ChannelTable {
    /// Registers a subscriber of `worker` on the fed channels `wanted` (each with where it resumes), if the node
    /// holds every one of them from there on; otherwise registers nothing and names the channels the broker must
    /// warm first (`fill`), each with the cursor to read after. A cursor above what the node has seen is another
    /// node's recent event still on its way here, unless the broker has just read the channel (`just_read`): only
    /// then is it from the future.
    ///
    /// The subscription's position is one per channel (`ReplayCursor::per_channel`), each channel's `since`:
    /// Redis sequences each channel on its own shard, so no one id orders the events of several channels.
    pub fn subscribe_fed(
        &self,
        worker: usize,
        wanted: &[(&str, Resume)],
        client_id: &str,
        just_read: bool,
        creator: Option<IpAddr>,
    ) -> Result<FedSubscribe, TableError> {
        let mut st = self.lock();
        let locked = Instant::now();
        let mut cold: Vec<(Box<str>, Option<EventId>)> = Vec::new();
        for (name, resume) in wanted {
            let after = match resume {
                Resume::After(id) => Some(*id),
                Resume::Fresh | Resume::Unparseable => None,
            };
            let covered = st.channels.get(*name).and_then(|ch| {
                let covered_after = ch.covered_after?;
                let head = ch.fed_head();
                match after {
                    Some(id) if id < covered_after => None,
                    Some(id) if id > head && !just_read => None,
                    _ => Some(()),
                }
            });
            if covered.is_none() {
                cold.push(((*name).into(), after));
            }
        }
        if !cold.is_empty() {
            // Warming makes the channels this node does not have: they count against the table's limits now.
            let new = cold
                .iter()
                .filter(|(name, _)| !st.channels.contains_key(&**name))
                .count();
            if st.channels.len() + new > self.limits.max_channels {
                return Err(TableError::TooManyChannels);
            }
            self.check_creator(&st, self.counted_creator(creator), new)?;
            return Ok(FedSubscribe::Warm(cold));
        }
        let mut channels = Vec::with_capacity(wanted.len());
        let mut pending_reason = None;
        for (name, resume) in wanted {
            let Some((key, channel)) = st.channels.get_key_value(*name) else {
                continue;
            };
            let key = Arc::clone(key);
            let head = channel.fed_head();
            let since = match *resume {
                Resume::Fresh => head,
                Resume::Unparseable => {
                    pending_reason = Some(ResetReason::Invalid);
                    EventId::ZERO
                }
                Resume::After(id) if id > head => {
                    pending_reason.get_or_insert(ResetReason::Future);
                    EventId::ZERO
                }
                Resume::After(id) => id,
            };
            let Some(channel) = st.channels.get_mut(*name) else {
                continue;
            };
            channels.push(channel.register(Arc::clone(&key), worker, client_id, since));
            st.presence_changed.insert(key);
        }
        let resumes = wanted.iter().any(|(_, r)| *r != Resume::Fresh);
        st.subscribe_hold.record(locked.elapsed());
        Ok(FedSubscribe::Subscribed(Subscription {
            channels,
            head: EventId::ZERO,
            replay: resumes.then(|| ReplayCursor::per_channel(pending_reason)),
        }))
    }

    /// Whether this node holds every one of `names` (they are fed from Redis).
    pub fn holds_fed(&self, names: &[&str]) -> bool {
        let st = self.lock();
        names.iter().all(|name| {
            st.channels
                .get(*name)
                .is_some_and(|ch| ch.covered_after.is_some())
        })
    }

    /// Registers a subscriber of `worker` on fed channels this node holds, each from after the id a broker script
    /// gave (`None`: from the channel's head). Unlike a client's cursor, such an id may be ahead of what the node
    /// has seen: the events up to it are still on their way, and are skipped when they come. `None` when the node
    /// does not hold every channel.
    pub fn subscribe_held(
        &self,
        worker: usize,
        wanted: &[(&str, Option<EventId>)],
        client_id: &str,
    ) -> Option<Subscription> {
        let mut st = self.lock();
        let locked = Instant::now();
        let held = wanted.iter().all(|(name, _)| {
            st.channels
                .get(*name)
                .is_some_and(|ch| ch.covered_after.is_some())
        });
        if !held {
            return None;
        }
        let mut channels = Vec::with_capacity(wanted.len());
        for (name, after) in wanted {
            let Some((key, channel)) = st.channels.get_key_value(*name) else {
                continue;
            };
            let key = Arc::clone(key);
            let since = after.unwrap_or_else(|| channel.fed_head());
            let Some(channel) = st.channels.get_mut(*name) else {
                continue;
            };
            channels.push(channel.register(Arc::clone(&key), worker, client_id, since));
            st.presence_changed.insert(key);
        }
        let resumes = wanted.iter().any(|(_, after)| after.is_some());
        st.subscribe_hold.record(locked.elapsed());
        Some(Subscription {
            channels,
            head: EventId::ZERO,
            replay: resumes.then(|| ReplayCursor::per_channel(None)),
        })
    }

    /// Live events of fed channels, in the order their shard sent them: each is handed to the workers and
    /// retained, unless the node already has it (a fill brought it) or no longer holds the channel.
    pub fn feed(&self, channel: &str, events: Vec<FedEvent>, bus: &Bus) {
        let mut wake = vec![false; bus.workers()];
        {
            let mut st = self.lock();
            let Some(ch) = st.channels.get(channel) else {
                return;
            };
            if ch.covered_after.is_none() {
                return;
            }
            let mut last = ch.last_id;
            for fed in events {
                if last.is_some_and(|last| fed.id <= last) {
                    continue;
                }
                last = Some(fed.id);
                st.append_fed(fed, &self.limits, bus, &mut wake);
            }
            let emptied = st.history.enforce_byte_limit(self.limits.history_max_bytes);
            st.remove_if_unused(emptied);
        }
        for (worker, _) in wake.iter().enumerate().filter(|(_, w)| **w) {
            bus.wake(worker);
        }
    }

    /// Makes `name` a fed channel held from `after` on (`None`: from Redis's last id, for live subscribers only),
    /// with what Redis holds of it: events the node has not seen go to its subscribers as live events, older ones
    /// are put in front of its history. Called by the broker thread once its shard subscription is confirmed; a
    /// channel it makes counts against `creator` (`--max-channels-per-ip`), the client whose subscribe asked.
    pub fn fill(
        &self,
        name: &str,
        after: Option<EventId>,
        fill: Fill,
        bus: &Bus,
        creator: Option<IpAddr>,
    ) -> Result<(), TableError> {
        let creator = self.counted_creator(creator);
        let mut wake = vec![false; bus.workers()];
        {
            let mut st = self.lock();
            if !st.channels.contains_key(name) && st.channels.len() >= self.limits.max_channels {
                return Err(TableError::TooManyChannels);
            }
            let (key, channel) = st.entry(name, self.limits.workers, creator);
            let start = after.or(fill.last).unwrap_or(EventId::ZERO);
            let covered = channel.covered_after.map_or(start, |c| c.min(start));
            channel.covered_after = Some(covered);
            // A fed channel's ids come from Redis: the local "born after" watermark does not apply to them.
            channel.born_after = EventId::ZERO;
            let seen = channel.last_id;
            let (older, newer): (Vec<FedEvent>, Vec<FedEvent>) = fill
                .events
                .into_iter()
                .partition(|fed| seen.is_some_and(|seen| fed.id <= seen));
            if let Some((upto, reason)) = fill.lost {
                st.history.note_loss(&key, upto, reason);
            }
            if self.limits.history > 0 {
                let older = older
                    .into_iter()
                    .map(|fed| {
                        let message = Message::new(
                            fed.id,
                            Arc::clone(&key),
                            fed.event.event,
                            fed.event.data,
                            fed.event.to,
                        )
                        .with_per_channel_id();
                        (Arc::new(message), fed.at)
                    })
                    .collect();
                st.history.backfill(&key, older, self.limits.history);
            }
            for fed in newer {
                st.append_fed(fed, &self.limits, bus, &mut wake);
            }
            if let Some(channel) = st.channels.get_mut(name) {
                channel.last_id = channel.last_id.max(fill.last);
            }
            let emptied = st.history.enforce_byte_limit(self.limits.history_max_bytes);
            st.remove_if_unused(emptied);
        }
        for (worker, _) in wake.iter().enumerate().filter(|(_, w)| **w) {
            bus.wake(worker);
        }
        Ok(())
    }

    /// Drops a fed channel that no subscriber of this node holds any more (the broker then leaves its shard
    /// channel); true when the node no longer holds it.
    pub fn retire(&self, name: &str) -> bool {
        let mut st = self.lock();
        match st.channels.get(name) {
            None => true,
            Some(ch) if ch.covered_after.is_some() && ch.subscribers == 0 => {
                st.remove_channel(name);
                st.presence_changed.insert(name.into());
                true
            }
            Some(_) => false,
        }
    }

    /// The last id this node has of a fed channel (`None`: it does not hold it).
    pub fn fed_head(&self, name: &str) -> Option<EventId> {
        let st = self.lock();
        let channel = st.channels.get(name)?;
        channel.covered_after.map(|_| channel.fed_head())
    }

    /// The fed channels whose subscribers changed since the last call, each with this node's subscribers of it
    /// (client id and streams; empty when none is left).
    pub fn take_presence_changes(&self) -> Vec<Presence> {
        let mut st = self.lock();
        let changed = std::mem::take(&mut st.presence_changed);
        changed
            .into_iter()
            .map(|name| {
                let clients = st
                    .channels
                    .get(&name)
                    .map(Channel::clients)
                    .unwrap_or_default();
                Presence {
                    channel: name,
                    clients,
                }
            })
            .collect()
    }

    /// Every fed channel this node has subscribers of, with them: what the broker refreshes in Redis.
    pub fn fed_presence(&self) -> Vec<Presence> {
        let st = self.lock();
        st.channels
            .iter()
            .filter(|(_, ch)| ch.covered_after.is_some() && ch.subscribers > 0)
            .map(|(name, ch)| Presence {
                channel: Arc::clone(name),
                clients: ch.clients(),
            })
            .collect()
    }

    /// The fed channels and their last ids: where the broker resumes each after losing its connection to Redis.
    pub fn fed_channels(&self) -> Vec<(Arc<str>, EventId)> {
        let st = self.lock();
        st.channels
            .iter()
            .filter(|(_, ch)| ch.covered_after.is_some())
            .map(|(name, ch)| (Arc::clone(name), ch.fed_head()))
            .collect()
    }
}

impl super::State {
    /// Appends an event that came from Redis, with Redis's id.
    fn append_fed(
        &mut self,
        fed: FedEvent,
        limits: &super::TableLimits,
        bus: &Bus,
        wake: &mut [bool],
    ) {
        self.published += 1;
        self.append(fed.id, fed.event, limits, bus, wake, fed.at);
    }
}
