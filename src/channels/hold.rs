//! How long operations hold the channel table's lock: a histogram per operation, recorded under the lock itself
//! (plain counters: the lock already serializes them), read for `/metrics`.
//!
//! The table's lock is the one place every worker meets, so its hold time bounds what one box can do however many
//! cores it has: publishes/s ≤ 1 s ÷ the mean publish hold (docs/BENCHMARKS.md, "The table lock's ceiling").

use std::time::Duration;

/// Upper bounds of the buckets, in nanoseconds; a last bucket takes everything longer.
pub const BOUNDS_NS: [u64; 12] = [
    250, 500, 1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 64_000, 128_000, 256_000, 1_000_000,
];

/// A histogram of lock hold times.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LockHold {
    /// Per bucket of `BOUNDS_NS` (not cumulative), and the overflow bucket last.
    pub counts: [u64; BOUNDS_NS.len() + 1],
    pub sum_ns: u64,
}

impl LockHold {
    pub fn record(&mut self, held: Duration) {
        let ns = u64::try_from(held.as_nanos()).unwrap_or(u64::MAX);
        let bucket = BOUNDS_NS.partition_point(|&bound| bound < ns);
        if let Some(count) = self.counts.get_mut(bucket) {
            *count += 1;
        }
        self.sum_ns = self.sum_ns.saturating_add(ns);
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_hold_lands_in_the_first_bucket_that_bounds_it() {
        let mut hold = LockHold::default();
        for ns in [0, 250, 251, 999, 1_000, 1_000_001] {
            hold.record(Duration::from_nanos(ns));
        }
        assert_eq!(hold.counts[0], 2);
        assert_eq!(hold.counts[1], 1);
        assert_eq!(hold.counts[2], 2);
        assert_eq!(hold.counts[BOUNDS_NS.len()], 1);
        assert_eq!(hold.count(), 6);
        assert_eq!(hold.sum_ns, 250 + 251 + 999 + 1_000 + 1_000_001);
    }
}
