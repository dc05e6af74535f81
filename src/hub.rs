//! The hub: one worker's index from channel name to its local subscribers.
//!
//! Owned by one worker, never shared. Each member records the connection's slab key and which of that
//! connection's subscriptions it is (`slot`); the connection keeps, per subscription, its position in the
//! channel's member list (the reverse index), so unsubscribing is O(1) with `swap_remove`: the member that moves
//! into the hole is returned so the worker can update that connection's position.

use std::collections::HashMap;
use std::sync::Arc;

/// A subscriber of one channel on this worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member {
    pub key: usize,
    pub slot: u32,
}

/// A member that `remove` moved to a new position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Moved {
    pub member: Member,
    pub pos: u32,
}

#[derive(Default)]
pub struct Hub {
    channels: HashMap<Arc<str>, Vec<Member>>,
    subscriptions: usize,
}

impl Hub {
    /// Adds a member; returns its position in the channel's list.
    pub fn add(&mut self, channel: &Arc<str>, member: Member) -> u32 {
        let members = self.channels.entry(Arc::clone(channel)).or_default();
        members.push(member);
        self.subscriptions += 1;
        u32::try_from(members.len() - 1)
            .expect("fewer than 2^32 subscribers per channel and worker")
    }

    /// Removes `member` from `channel`, found at `pos` (its recorded position). Returns the member that took its
    /// place, if any. A position that does not hold `member` is a bookkeeping bug elsewhere: removing what is
    /// there would silently unsubscribe another connection, so the member is looked for instead (and the bug
    /// asserted in debug builds).
    pub fn remove(&mut self, channel: &str, member: Member, pos: u32) -> Option<Moved> {
        let members = self.channels.get_mut(channel)?;
        let pos_usize = if members.get(pos as usize) == Some(&member) {
            pos as usize
        } else {
            debug_assert!(
                false,
                "hub position {pos} of {channel} does not hold {member:?}"
            );
            members.iter().position(|m| *m == member)?
        };
        let pos = u32::try_from(pos_usize).expect("positions come from add");
        members.swap_remove(pos_usize);
        self.subscriptions -= 1;
        let moved = members.get(pos_usize).map(|member| Moved {
            member: *member,
            pos,
        });
        if members.is_empty() {
            self.channels.remove(channel);
        }
        moved
    }

    /// This worker's subscribers of `channel` (empty when none).
    pub fn members(&self, channel: &str) -> &[Member] {
        self.channels.get(channel).map_or(&[], |m| m.as_slice())
    }

    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    pub fn subscriptions(&self) -> usize {
        self.subscriptions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remove_moves_the_last_member_into_the_hole() {
        let mut hub = Hub::default();
        let ch: Arc<str> = "c".into();
        let positions: Vec<u32> = (0..3)
            .map(|key| hub.add(&ch, Member { key, slot: 0 }))
            .collect();
        assert_eq!(positions, [0, 1, 2]);
        let moved = hub.remove("c", Member { key: 0, slot: 0 }, 0);
        assert_eq!(
            moved,
            Some(Moved {
                member: Member { key: 2, slot: 0 },
                pos: 0
            })
        );
        assert_eq!(
            hub.members("c"),
            [Member { key: 2, slot: 0 }, Member { key: 1, slot: 0 }]
        );
        assert_eq!(hub.remove("c", Member { key: 1, slot: 0 }, 1), None);
        assert_eq!(hub.remove("c", Member { key: 2, slot: 0 }, 0), None);
        assert_eq!((hub.channel_count(), hub.subscriptions()), (0, 0));
        assert!(hub.members("c").is_empty());
    }
}
