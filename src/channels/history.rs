//! Retention: each channel's ring of recent events, the global publish order they are evicted in, and the records
//! that keep gaps from being silent.
//!
//! Lives inside the channel table's state, behind its lock: appending to a ring happens in the same step as the id
//! and the hand-off to the workers (the table's module doc). It knows channels only by name and never decides
//! whether a channel exists; when a trim leaves a ring empty it says so, and the table removes the channel if
//! nothing else holds it. So another retention (a shared store for several nodes) can take this one's place
//! without touching the registry of subscribers.
//!
//! Bounds: every ring keeps at most `history` events for at most `history_ttl`; all rings together keep at most
//! `history_max_bytes` (oldest evicted first, whatever its channel).
//!
//! Gaps are never silent. Each trim (count, bytes, age) records on its ring the highest id it dropped and a trim
//! sequence number; a removed or deleted channel leaves a global "forgotten" watermark. A replay reports a `reset`
//! for every channel whose dropped ids lie after the subscriber's cursor and which it has not yet been checked
//! against. A spurious reset is possible (the watermark is global), a silent gap is not.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use super::{ResetNotice, ResetReason, SubscribedChannel};
use crate::message::{EventId, Message};

/// The replay position of a resuming subscriber.
#[derive(Clone, Debug)]
pub struct ReplayCursor {
    /// Every event up to this id has been replayed (or deliberately skipped); unused when `per_channel`.
    pub after: EventId,
    /// The position is one per channel, each subscribed channel's `since` (channels fed by the Redis broker,
    /// whose ids are per channel): the stream advances them as it queues events.
    pub per_channel: bool,
    /// The trim sequence number the subscriber has been checked against.
    seen_trim_seq: u64,
    /// A reason found when the subscription was made, reported with the first replay batch.
    pending_reason: Option<ResetReason>,
}

impl ReplayCursor {
    pub(super) fn new(after: EventId, pending_reason: Option<ResetReason>) -> ReplayCursor {
        ReplayCursor {
            after,
            per_channel: false,
            seen_trim_seq: 0,
            pending_reason,
        }
    }

    /// The cursor of a stream whose position is one per channel (see `per_channel`).
    pub(super) fn per_channel(pending_reason: Option<ResetReason>) -> ReplayCursor {
        ReplayCursor {
            per_channel: true,
            ..ReplayCursor::new(EventId::ZERO, pending_reason)
        }
    }
}

/// A trim: the highest id dropped, why, and its trim sequence number.
type Trim = (EventId, ResetReason, u64);

struct Retained {
    message: Arc<Message>,
    bytes: usize,
}

/// One channel's retained events, oldest first.
#[derive(Default)]
struct Ring {
    events: VecDeque<Retained>,
    bytes: usize,
    /// The last trim of this ring.
    trimmed: Option<Trim>,
}

/// One retained event in global publish order, for byte- and age-based eviction across channels.
struct OrderEntry {
    id: EventId,
    channel: Arc<str>,
    at: Instant,
}

/// What a channel retains, for listings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    pub events: usize,
    pub bytes: usize,
}

#[derive(Default)]
pub struct History {
    rings: HashMap<Arc<str>, Ring, foldhash::fast::RandomState>,
    order: VecDeque<OrderEntry>,
    /// Entries of `order` whose event a per-channel trim already removed.
    stale_order: usize,
    retained_events: usize,
    retained_bytes: usize,
    trim_seq: u64,
    /// Highest id possibly lost with a removed or deleted channel, why, and the trim sequence number then.
    forgotten: Option<Trim>,
    pub evicted: u64,
    pub expired: u64,
}

impl History {
    pub fn retained_events(&self) -> usize {
        self.retained_events
    }

    pub fn retained_bytes(&self) -> usize {
        self.retained_bytes
    }

    /// What `channel` retains now.
    pub fn retention(&self, channel: &str) -> Retention {
        self.rings
            .get(channel)
            .map_or(Retention::default(), |ring| Retention {
                events: ring.events.len(),
                bytes: ring.bytes,
            })
    }

    pub fn is_empty(&self, channel: &str) -> bool {
        self.rings
            .get(channel)
            .is_none_or(|ring| ring.events.is_empty())
    }

    /// Appends a published event to its channel's ring and keeps the ring to `max_events` (the trim is
    /// recorded). The ring keeps at least this event, so it is never left empty.
    pub fn append(
        &mut self,
        channel: &Arc<str>,
        message: Arc<Message>,
        at: Instant,
        max_events: usize,
    ) {
        let id = message.id;
        let bytes = message.retained_bytes();
        let ring = self.rings.entry(Arc::clone(channel)).or_default();
        ring.events.push_back(Retained { message, bytes });
        ring.bytes += bytes;
        let over = ring.events.len() > max_events;
        self.retained_events += 1;
        self.retained_bytes += bytes;
        self.order.push_back(OrderEntry {
            id,
            channel: Arc::clone(channel),
            at,
        });
        if over {
            self.trim_front_of(channel, ResetReason::Evicted);
            self.stale_order += 1;
            self.compact_order();
        }
    }

    /// Evicts the oldest events across channels until all rings together hold at most `max_bytes`. Returns the
    /// channels whose ring this left empty.
    pub fn enforce_byte_limit(&mut self, max_bytes: usize) -> Vec<Arc<str>> {
        let mut emptied = Vec::new();
        while self.retained_bytes > max_bytes && !self.order.is_empty() {
            emptied.extend(self.evict_oldest(ResetReason::Evicted));
        }
        emptied
    }

    /// Drops events retained at or before `cutoff`. Returns the channels whose ring this left empty.
    pub fn expire(&mut self, cutoff: Instant) -> Vec<Arc<str>> {
        let mut emptied = Vec::new();
        while self.order.front().is_some_and(|e| e.at <= cutoff) {
            emptied.extend(self.evict_oldest(ResetReason::Expired));
        }
        emptied
    }

    /// A channel is removed (no subscriber, nothing retained): its ring goes, and a trim it recorded becomes the
    /// global watermark, so a later subscriber of a new channel of that name is still told.
    pub fn remove(&mut self, channel: &str) {
        if let Some(ring) = self.rings.remove(channel) {
            self.drop_ring(&ring);
            if let Some(trim) = ring.trimmed {
                self.forget(trim);
            }
        }
    }

    /// A channel fed from a shared store (the Redis broker) is dropped from this node: its ring goes and leaves no
    /// watermark, because the store still has its events and answers for any gap.
    pub fn discard(&mut self, channel: &str) {
        if let Some(ring) = self.rings.remove(channel) {
            self.drop_ring(&ring);
        }
    }

    /// Puts events older than every event of `channel`'s ring at its front (`older` oldest first, each with the
    /// instant it was published): a shared store's history that this node loads when a subscriber resumes from
    /// before what it holds. The ring is then kept to `max_events` as on append.
    pub fn backfill(
        &mut self,
        channel: &Arc<str>,
        older: Vec<(Arc<Message>, Instant)>,
        max_events: usize,
    ) {
        let ring = self.rings.entry(Arc::clone(channel)).or_default();
        let first = ring.events.front().map(|r| r.message.id);
        for (message, at) in older.into_iter().rev() {
            if first.is_some_and(|first| message.id >= first) {
                continue;
            }
            let bytes = message.retained_bytes();
            self.order.push_front(OrderEntry {
                id: message.id,
                channel: Arc::clone(channel),
                at,
            });
            ring.bytes += bytes;
            ring.events.push_front(Retained { message, bytes });
            self.retained_events += 1;
            self.retained_bytes += bytes;
        }
        while self
            .rings
            .get(channel)
            .is_some_and(|ring| ring.events.len() > max_events)
        {
            self.trim_front_of(channel, ResetReason::Evicted);
            self.stale_order += 1;
        }
        self.compact_order();
    }

    /// Records that events of `channel` up to `upto` were dropped elsewhere (by the shared store that feeds this
    /// node), so that a replay from before `upto` reports the loss as for a local trim.
    pub fn note_loss(&mut self, channel: &Arc<str>, upto: EventId, reason: ResetReason) {
        self.trim_seq += 1;
        let seq = self.trim_seq;
        let ring = self.rings.entry(Arc::clone(channel)).or_default();
        if ring.trimmed.is_none_or(|(old, _, _)| old < upto) {
            ring.trimmed = Some((upto, reason, seq));
        }
    }

    /// A channel is deleted: its events go, and everything up to `upto` (the last id assigned) may have been lost
    /// to a resuming subscriber of it.
    pub fn delete(&mut self, channel: &str, upto: EventId) {
        if let Some(ring) = self.rings.remove(channel) {
            self.drop_ring(&ring);
        }
        self.trim_seq += 1;
        self.forget((upto, ResetReason::Deleted, self.trim_seq));
    }

    /// Copies the next events of `channels` (in id order, each channel from after its own position, at most
    /// about `budget` bytes of data, only those addressed to `client_id`) into `out`, and advances each position
    /// past what it copied or skipped; true when nothing is left.
    pub fn replay_step(
        &self,
        channels: &mut [(&str, EventId)],
        client_id: &str,
        budget: usize,
        out: &mut Vec<Arc<Message>>,
    ) -> bool {
        let mut positions: Vec<(&VecDeque<Retained>, usize, &mut EventId)> = channels
            .iter_mut()
            .filter_map(|(name, after)| {
                let ring = self.rings.get(*name)?;
                let at = ring.events.partition_point(|r| r.message.id <= *after);
                Some((&ring.events, at, after))
            })
            .collect();
        let mut spent = 0;
        loop {
            let next = positions
                .iter_mut()
                .filter_map(|(events, at, after)| events.get(*at).map(|r| (r, at, after)))
                .min_by_key(|(r, _, _)| r.message.id);
            let Some((retained, at, after)) = next else {
                return true;
            };
            *at += 1;
            **after = retained.message.id;
            if retained.message.is_for(client_id) {
                spent += retained.message.data.len() + 64;
                out.push(Arc::clone(&retained.message));
            }
            if spent >= budget {
                return false;
            }
        }
    }

    /// The channels of a stream whose events after their position (`after`) may have been dropped since the
    /// cursor last looked, and why; marks the cursor as checked against every trim so far. `born_after` gives,
    /// for a channel that exists, the last id assigned when it was made (`None`: it does not exist).
    pub fn gaps(
        &self,
        channels: &[SubscribedChannel],
        cursor: &mut ReplayCursor,
        after: impl Fn(&SubscribedChannel) -> EventId,
        born_after: impl Fn(&SubscribedChannel) -> Option<EventId>,
    ) -> Option<ResetNotice> {
        let seen = cursor.seen_trim_seq;
        cursor.seen_trim_seq = self.trim_seq;
        let unseen_loss = |trim: Option<Trim>, after: EventId| {
            trim.filter(|(upto, _, seq)| *seq > seen && *upto > after)
        };
        let mut reason = cursor.pending_reason.take();
        let mut names = Vec::new();
        for sub in channels.iter().filter(|sub| sub.incarnation != 0) {
            let after = after(sub);
            let found = match born_after(sub) {
                Some(born) => {
                    let trimmed = self.rings.get(&sub.name).and_then(|ring| ring.trimmed);
                    unseen_loss(trimmed, after).or_else(|| {
                        if born > after {
                            unseen_loss(self.forgotten, after)
                        } else {
                            None
                        }
                    })
                }
                None => unseen_loss(self.forgotten, after),
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

    /// Removes the oldest retained event of one channel and records the trim; true when that left its ring empty.
    fn trim_front_of(&mut self, channel: &str, reason: ResetReason) -> bool {
        self.trim_seq += 1;
        let seq = self.trim_seq;
        let Some(ring) = self.rings.get_mut(channel) else {
            return false;
        };
        let Some(dropped) = ring.events.pop_front() else {
            return false;
        };
        ring.bytes -= dropped.bytes;
        ring.trimmed = Some((dropped.message.id, reason, seq));
        self.retained_events -= 1;
        self.retained_bytes -= dropped.bytes;
        match reason {
            ResetReason::Expired => self.expired += 1,
            _ => self.evicted += 1,
        }
        ring.events.is_empty()
    }

    /// Pops the globally oldest retained event (skipping entries already trimmed per channel); returns its channel
    /// when that left the channel's ring empty.
    fn evict_oldest(&mut self, reason: ResetReason) -> Option<Arc<str>> {
        let entry = self.order.pop_front()?;
        let is_front = self
            .rings
            .get(&entry.channel)
            .and_then(|ring| ring.events.front())
            .is_some_and(|r| r.message.id == entry.id);
        if !is_front {
            self.stale_order = self.stale_order.saturating_sub(1);
            return None;
        }
        self.trim_front_of(&entry.channel, reason)
            .then_some(entry.channel)
    }

    /// Keeps `order` from growing with entries that per-channel trims made stale (amortised O(1)).
    fn compact_order(&mut self) {
        if self.stale_order <= self.retained_events + 1024 {
            return;
        }
        let rings = &self.rings;
        self.order.retain(|e| {
            rings
                .get(&e.channel)
                .and_then(|ring| ring.events.front())
                .is_some_and(|front| front.message.id <= e.id)
        });
        self.stale_order = 0;
    }

    /// Accounts for a ring that is being removed whole.
    fn drop_ring(&mut self, ring: &Ring) {
        self.retained_events -= ring.events.len();
        self.retained_bytes -= ring.bytes;
        self.stale_order += ring.events.len();
    }

    fn forget(&mut self, (upto, reason, seq): Trim) {
        let (old_upto, old_reason, old_seq) = self.forgotten.unwrap_or((EventId::ZERO, reason, 0));
        let (upto, reason) = if upto >= old_upto {
            (upto, reason)
        } else {
            (old_upto, old_reason)
        };
        self.forgotten = Some((upto, reason, seq.max(old_seq)));
    }

    #[cfg(test)]
    pub(super) fn order_len(&self) -> usize {
        self.order.len()
    }
}
