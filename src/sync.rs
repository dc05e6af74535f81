//! The one way a shared lock is taken.

use std::sync::{Mutex, MutexGuard};

/// Locks `mutex`, carrying on through poisoning. A panic while holding a lock aborts the process in release builds
/// (`panic = "abort"`), so poisoning is never observed there; in tests (which unwind), the data is used as it is.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
