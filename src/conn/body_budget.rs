//! The budget of request bodies being read: one count of bytes shared by every connection of every worker
//! (`--max-pending-body-bytes`), so that clients sending bodies slowly cannot make the server hold memory without
//! bound, however many connections they open.
//!
//! A body that arrives whole in the read that brought its head needs nothing from the budget (it is taken in place
//! from the worker's read buffer). A body still coming reserves room before it is buffered: a `Content-Length`
//! body its whole announced length at once (so a body that cannot fit is refused before any of it is read), a
//! chunked body step by step as its bytes arrive. A `Reservation` gives its bytes back when it is dropped, with the
//! body it covers, however the request ends (complete, refused, timed out, connection closed).
//!
//! Invariant: `used` is the sum of the live reservations and never exceeds `limit`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Chunked bodies reserve in steps of this many bytes (at most up to `--max-body`), so a body arriving in small
/// pieces does not touch the shared count for each.
const CHUNKED_STEP: usize = 64 * 1024;

/// The shared count; see the module doc.
#[derive(Debug)]
pub struct BodyBudget {
    used: AtomicUsize,
    limit: usize,
}

impl BodyBudget {
    pub fn new(limit: usize) -> BodyBudget {
        BodyBudget {
            used: AtomicUsize::new(0),
            limit,
        }
    }

    /// Bytes reserved now, over all workers.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Takes `bytes` from the budget if they fit; false leaves it unchanged.
    fn take(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&total| total <= self.limit)
            })
            .is_ok()
    }
}

/// Bytes a body holds in the budget; given back on drop.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<BodyBudget>,
    bytes: usize,
}

impl Reservation {
    /// Reserves `bytes` now, or `None` when they do not fit.
    pub fn take(budget: &Arc<BodyBudget>, bytes: usize) -> Option<Reservation> {
        budget.take(bytes).then(|| Reservation {
            budget: Arc::clone(budget),
            bytes,
        })
    }

    /// Makes the reservation cover `needed` bytes (at most `ceiling`, the body limit), growing it by whole steps of
    /// `CHUNKED_STEP` but never past `ceiling`; false when the budget has no room for the growth (the reservation
    /// is unchanged then).
    pub fn cover(&mut self, needed: usize, ceiling: usize) -> bool {
        let needed = needed.min(ceiling);
        if needed <= self.bytes {
            return true;
        }
        let target = needed
            .div_ceil(CHUNKED_STEP)
            .saturating_mul(CHUNKED_STEP)
            .min(ceiling);
        let more = target - self.bytes;
        if !self.budget.take(more) {
            return false;
        }
        self.bytes = target;
        true
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_fit_the_limit_and_are_given_back_on_drop() {
        let budget = Arc::new(BodyBudget::new(100));
        let a = Reservation::take(&budget, 60).expect("fits");
        assert!(Reservation::take(&budget, 41).is_none());
        assert_eq!(budget.used(), 60);
        let b = Reservation::take(&budget, 40).expect("fits exactly");
        assert_eq!(budget.used(), 100);
        drop(a);
        assert_eq!(budget.used(), 40);
        drop(b);
        assert_eq!(budget.used(), 0);
        assert!(Reservation::take(&budget, usize::MAX).is_none());
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn cover_grows_by_steps_up_to_the_ceiling() {
        let budget = Arc::new(BodyBudget::new(3 * CHUNKED_STEP));
        let mut r = Reservation::take(&budget, 0).expect("empty");
        assert!(r.cover(1, 10 * CHUNKED_STEP));
        assert_eq!(budget.used(), CHUNKED_STEP);
        assert!(r.cover(CHUNKED_STEP, 10 * CHUNKED_STEP));
        assert_eq!(budget.used(), CHUNKED_STEP);
        // The ceiling (the body limit) caps a step.
        assert!(r.cover(CHUNKED_STEP + 1, CHUNKED_STEP + 10));
        assert_eq!(budget.used(), CHUNKED_STEP + 10);
        // Never past the ceiling, however much is asked.
        assert!(r.cover(usize::MAX, CHUNKED_STEP + 10));
        assert_eq!(budget.used(), CHUNKED_STEP + 10);
        // Past the budget: unchanged.
        assert!(!r.cover(4 * CHUNKED_STEP, 10 * CHUNKED_STEP));
        assert_eq!(budget.used(), CHUNKED_STEP + 10);
        drop(r);
        assert_eq!(budget.used(), 0);
    }
}
