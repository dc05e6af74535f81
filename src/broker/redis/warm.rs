//! Warming: making the node hold a channel from a cursor on, for a subscribe or a resume. It takes two round
//! trips, one after the other: follow the channel's shard channel, and once Redis confirms, read its stream
//! after the cursor into the table (`ChannelTable::fill`). That order is what makes a resume exact (see the
//! module above).
//!
//! Each warm runs as tasks of its own, one per channel (`Loader` carries what they need), so warms run side by
//! side with each other and with the broker loop: a subscribe to a new channel does not hold up publishes, live
//! events or other subscribes for its two round trips, and a subscribe whose shard is down gets its 503 after its
//! own timeout, not after those of the warms queued before it.
//!
//! Running beside the loop, a warm needs the loop to keep two promises, which its books (`Warming`) serve:
//! - A channel a warm has in hand is not retired (and its shard channel left) under it.
//! - No live message of a channel is lost for arriving before the read that makes the node hold it. The table
//!   drops events of channels it does not hold, and an event published just after the read can reach the loop
//!   before the warm hands the read to the table. So while a warm has a channel the table does not hold yet,
//!   the loop holds back that channel's messages (events and deletion), in order, and hands them over once the
//!   table holds the channel (the table then drops those the read already had, by id) or once no warm has it
//!   any more. That is the order the messages had when warms ran inside the loop: after the read.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use redis::{Script, Value};
use tokio::sync::mpsc;

use super::connection::Connection;
use super::scripts::{keys, parse_fill};
use super::{send_answer, BrokerAnswer, BrokerError, Health, Waiter};
use crate::bus::Bus;
use crate::channels::{ChannelTable, FedEvent};
use crate::message::EventId;

/// What reading channels into the table takes: a handle on the shared connection and the rest, cloned into
/// each task.
#[derive(Clone)]
pub(super) struct Loader {
    pub(super) con: Connection,
    pub(super) fill: Script,
    pub(super) prefix: String,
    pub(super) timeout: Duration,
    pub(super) table: Arc<ChannelTable>,
    pub(super) bus: Arc<Bus>,
    pub(super) health: Arc<Health>,
}

/// A warm's channels: each with its cursor, and whether the node must follow its shard channel first.
pub(super) struct Warm {
    pub(super) channels: Vec<(Box<str>, Option<EventId>, bool)>,
    pub(super) creator: Option<IpAddr>,
    pub(super) waiter: Waiter,
}

/// What a finished warm tells the loop.
pub(super) struct Warmed {
    /// Every channel it had in hand.
    pub(super) channels: Vec<Box<str>>,
    /// Those whose shard channel it followed.
    pub(super) followed: Vec<Box<str>>,
}

/// A message on a channel's shard channel.
pub(super) enum ShardMessage {
    Event(FedEvent),
    Deleted,
}

/// The loop's books of the warms under way.
#[derive(Default)]
pub(super) struct Warming {
    /// Channels in hand, with how many warms have each.
    in_hand: HashMap<Box<str>, usize>,
    /// Messages of channels in hand that the table did not hold when they came, in arrival order.
    held_back: HashMap<Box<str>, Vec<ShardMessage>>,
}

impl Warming {
    pub(super) fn take(&mut self, channel: &str) {
        match self.in_hand.get_mut(channel) {
            Some(count) => *count += 1,
            None => {
                self.in_hand.insert(channel.into(), 1);
            }
        }
    }

    /// One warm less has `channel`; true when none has it any more.
    pub(super) fn release(&mut self, channel: &str) -> bool {
        let Some(count) = self.in_hand.get_mut(channel) else {
            return true;
        };
        *count -= 1;
        if *count > 0 {
            return false;
        }
        self.in_hand.remove(channel);
        true
    }

    pub(super) fn has(&self, channel: &str) -> bool {
        self.in_hand.contains_key(channel)
    }

    pub(super) fn hold_back(&mut self, channel: &str, message: ShardMessage) {
        match self.held_back.get_mut(channel) {
            Some(held) => held.push(message),
            None => {
                self.held_back.insert(channel.into(), vec![message]);
            }
        }
    }

    /// The messages held back for `channel`, in order; none are held afterwards.
    pub(super) fn take_held_back(&mut self, channel: &str) -> Vec<ShardMessage> {
        self.held_back.remove(channel).unwrap_or_default()
    }
}

impl Loader {
    /// Runs `warm` as a task, each of its channels in a task of its own (a stream over channels on several
    /// shards waits for the slowest channel's two round trips, not for the sum of all). The loop hears first,
    /// then the waiter gets the answer: the first failure, if any.
    pub(super) fn spawn(self, warm: Warm, done: mpsc::UnboundedSender<Warmed>) {
        let Warm {
            channels,
            creator,
            waiter,
        } = warm;
        let bus = Arc::clone(&self.bus);
        let each: Vec<_> = channels
            .into_iter()
            .map(|(channel, after, follow)| {
                let mut loader = self.clone();
                tokio::spawn(async move {
                    let mut result = Ok(());
                    if follow {
                        result = loader.follow(&channel).await;
                    }
                    let followed = follow && result.is_ok();
                    if result.is_ok() {
                        result = loader.load(&channel, after, creator).await;
                    }
                    (channel, followed, result)
                })
            })
            .collect();
        tokio::spawn(async move {
            let mut warmed = Warmed {
                channels: Vec::with_capacity(each.len()),
                followed: Vec::new(),
            };
            let mut result = Ok(());
            for task in each {
                let (channel, followed, outcome) = match task.await {
                    Ok(finished) => finished,
                    // A task that did not finish: the runtime is shutting down.
                    Err(_) => return,
                };
                if followed {
                    warmed.followed.push(channel.clone());
                }
                warmed.channels.push(channel);
                if result.is_ok() {
                    result = outcome;
                }
            }
            // The loop outlives its tasks; a send fails only while the runtime shuts down.
            let _ = done.send(warmed);
            send_answer(&bus, waiter, BrokerAnswer::Warmed(result));
        });
    }

    /// Subscribes the channel's shard channel; returns once Redis has confirmed.
    async fn follow(&mut self, channel: &str) -> Result<(), BrokerError> {
        let shard = keys(&self.prefix, channel).shard;
        let what = || format!("cannot subscribe {shard}");
        self.health
            .within(self.timeout, what, self.con.follow(&shard))
            .await
    }

    /// Reads what Redis holds of `channel` after `after` and hands it to the table. A channel the node already
    /// holds is read from no later than its last id: events between that and the cursor may still be on their
    /// way here live, and the table drops live events at or below what it was handed.
    pub(super) async fn load(
        &mut self,
        channel: &str,
        after: Option<EventId>,
        creator: Option<IpAddr>,
    ) -> Result<(), BrokerError> {
        let after = match (self.table.fed_head(channel), after) {
            (Some(head), Some(after)) => Some(head.min(after)),
            (Some(head), None) => Some(head),
            (None, after) => after,
        };
        let keys = keys(&self.prefix, channel);
        let cursor = after.map(EventId::stream_id).unwrap_or_default();
        let mut invocation = self.fill.key(keys.stream());
        invocation
            .key(keys.deleted())
            .key(keys.trimmed())
            .arg(cursor);
        let what = || format!("cannot read the history of {channel}");
        let reply: Value = self
            .health
            .within(self.timeout, what, invocation.invoke_async(&mut self.con))
            .await?;
        let fill = parse_fill(channel, reply, after).ok_or_else(|| {
            log::error!("broker: unexpected history reply for {channel}");
            BrokerError::Unavailable
        })?;
        self.table
            .fill(channel, after, fill, &self.bus, creator)
            .map_err(BrokerError::Table)
    }
}
