//! The hub: one worker's index from channel name to its local subscribers.
//!
//! Owned by one worker, never shared. Each member records the connection's slab key and which of that
//! connection's subscriptions it is (`slot`). The hub also keeps every member's position in its channel's list
//! (the reverse index), so leaving is O(1) with `swap_remove`, and it fixes up the position of the member that moves
//! into the hole itself: nothing outside this file records or corrects a position, so a connection and the hub
//! cannot disagree about one.
//!
//! Invariant: `positions` has an entry for exactly the members in `channels`, at their index there.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

/// A subscriber of one channel on this worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Member {
    pub key: usize,
    pub slot: u32,
}

#[derive(Default)]
pub struct Hub {
    /// Keyed by client-chosen names: foldhash with a random seed (see Cargo.toml).
    channels: HashMap<Arc<str>, Vec<Member>, foldhash::fast::RandomState>,
    positions: HashMap<Member, u32, BuildHasherDefault<MemberHasher>>,
}

impl Hub {
    /// Adds `member` to `channel`. A member already there is left as it is (each subscription once).
    pub fn join(&mut self, channel: &Arc<str>, member: Member) {
        // One hash of the member: its entry both checks that it is new and takes its position.
        let Entry::Vacant(position) = self.positions.entry(member) else {
            debug_assert!(false, "{member:?} joined {channel} twice");
            return;
        };
        let members = self.channels.entry(Arc::clone(channel)).or_default();
        let pos = u32::try_from(members.len())
            .expect("fewer than 2^32 subscribers per channel and worker");
        members.push(member);
        position.insert(pos);
    }

    /// Removes `member` from `channel`; the member moved into its place gets its new position. A member that
    /// never reached the hub (a stream closed before it joined) is not there, and nothing changes.
    pub fn leave(&mut self, channel: &str, member: Member) {
        let Some(pos) = self.positions.remove(&member) else {
            return;
        };
        let Some(members) = self.channels.get_mut(channel) else {
            debug_assert!(
                false,
                "{member:?} has a position but {channel} has no members"
            );
            return;
        };
        let pos = pos as usize;
        if members.get(pos) != Some(&member) {
            // A position that does not hold `member` would be a bug in this file: removing what is there would
            // silently unsubscribe another connection, so nothing is removed.
            debug_assert!(
                false,
                "hub position {pos} of {channel} does not hold {member:?}"
            );
            return;
        }
        members.swap_remove(pos);
        if let Some(moved) = members.get(pos) {
            self.positions.insert(*moved, pos as u32);
        }
        if members.is_empty() {
            self.channels.remove(channel);
        }
    }

    /// This worker's subscribers of `channel` (empty when none).
    pub fn members(&self, channel: &str) -> &[Member] {
        self.channels.get(channel).map_or(&[], |m| m.as_slice())
    }

    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    pub fn subscriptions(&self) -> usize {
        self.positions.len()
    }
}

/// Hashes a `Member` (a slab key and a slot, both chosen by the server, never by a client, so no keyed hash is
/// needed against chosen-key flooding) with one multiply per word.
#[derive(Default)]
pub struct MemberHasher(u64);

impl Hasher for MemberHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.write_u64(u64::from(*byte));
        }
    }

    fn write_u64(&mut self, n: u64) {
        // FxHash's step: rotate, mix in, multiply by a large odd constant.
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(key: usize) -> Member {
        Member { key, slot: 0 }
    }

    #[test]
    fn leave_moves_the_last_member_into_the_hole_and_keeps_its_position() {
        let mut hub = Hub::default();
        let ch: Arc<str> = "c".into();
        for key in 0..3 {
            hub.join(&ch, member(key));
        }
        hub.leave("c", member(0));
        assert_eq!(hub.members("c"), [member(2), member(1)]);
        // The moved member's position was fixed here: leaving it takes the right one.
        hub.leave("c", member(2));
        assert_eq!(hub.members("c"), [member(1)]);
        hub.leave("c", member(1));
        assert_eq!((hub.channel_count(), hub.subscriptions()), (0, 0));
        assert!(hub.members("c").is_empty());
    }

    #[test]
    fn leaving_what_never_joined_changes_nothing() {
        let mut hub = Hub::default();
        let ch: Arc<str> = "c".into();
        hub.join(&ch, member(1));
        hub.leave("c", member(7));
        hub.leave("elsewhere", Member { key: 1, slot: 3 });
        assert_eq!(hub.members("c"), [member(1)]);
        assert_eq!(hub.subscriptions(), 1);
    }

    #[test]
    fn churn_in_any_order_keeps_every_position_exact() {
        let mut hub = Hub::default();
        let names: Vec<Arc<str>> = ["a", "b", "c"].iter().map(|n| Arc::from(*n)).collect();
        let mut joined = Vec::new();
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for step in 0..5_000usize {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            if joined.is_empty() || !state.is_multiple_of(3) {
                let channel = &names[step % names.len()];
                let m = Member {
                    key: step,
                    slot: (step % 4) as u32,
                };
                hub.join(channel, m);
                joined.push((Arc::clone(channel), m));
            } else {
                let (channel, m) = joined.swap_remove((state as usize) % joined.len());
                hub.leave(&channel, m);
            }
            for (channel, m) in &joined {
                let pos = hub.positions[m] as usize;
                assert_eq!(hub.members(channel).get(pos), Some(m));
            }
        }
        assert_eq!(hub.subscriptions(), joined.len());
    }
}
