//! The auth hook (`--auth hook`): the application decides each subscribe. For a subscribe on the native API, spout
//! POSTs `{"channels":[..],"client_id":..,"headers":{..}}` to `--auth-hook` and opens the stream, refuses it or
//! answers 503 by what comes back (`HookVerdict`).
//!
//! Owns a small pool of threads (`THREADS`), each with a blocking HTTP client, and the answer cache. A worker
//! never waits here: `Hook::ask` only queues the check (or refuses it past `--auth-hook-max-pending`), the
//! request waits parked on its connection (`conn::Phase::Awaiting`), and the verdict comes back through the
//! worker's inbox as a broker's answer does (`bus::Answer`), with the ticket that tells a late answer for a
//! closed or reused connection from a live one.
//!
//! Invariants: every check queued is answered exactly once, and `pending` counts the checks queued and not yet
//! answered; a check is never waited on past its timeout counted from when it was asked (one that waited that
//! long in the queue is answered `Timeout` without a call). The cache holds only decisions (allowed, 401, 403),
//! never a failure, for `--auth-hook-cache`, keyed by the whole request sent (credentials, channels, client id),
//! and at most `CACHE_ENTRIES` of them. Must not log a request's credentials.

use std::collections::HashMap;
use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use serde::Deserialize;

use super::verdict::{HookFailure, HookVerdict};
use crate::broker::Waiter;
use crate::bus::{Answer, Bus};
use crate::config::Config;

/// Checks made at once. Each thread waits on one HTTP round trip; 16 keeps a hook that answers in 10 ms at 1,600
/// checks a second, while a hook that hangs costs 16 sleeping threads, not a worker.
const THREADS: usize = 16;
/// Cached decisions at most: a cache keyed by client-chosen values must not grow with them.
const CACHE_ENTRIES: usize = 65_536;
/// The largest answer body read: the answer names channels of one subscribe and a client id.
const MAX_ANSWER: u64 = 64 * 1024;

/// The hook's queue and its bound, shared by the workers through `Auth`.
pub struct Hook {
    checks: Sender<Check>,
    pending: Arc<AtomicUsize>,
    max_pending: usize,
}

/// One subscribe to decide.
struct Check {
    waiter: Waiter,
    body: Vec<u8>,
    /// The request carries credentials (`Authorization` or `Cookie`): its decision may be cached.
    cacheable: bool,
    asked: Instant,
}

/// What every hook thread shares.
struct Pool {
    agent: ureq::Agent,
    url: String,
    timeout: Duration,
    cache: Option<Cache>,
    pending: Arc<AtomicUsize>,
    bus: Arc<Bus>,
}

struct Cache {
    ttl: Duration,
    entries: Mutex<HashMap<Box<[u8]>, Cached>>,
}

/// A cached decision and until when it holds.
type Cached = (Instant, HookVerdict);

/// A 2xx answer's body.
#[derive(Deserialize)]
struct Allowed {
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    channels: Option<Vec<String>>,
}

impl Hook {
    /// Starts the hook's threads; they answer through `bus`, and end when the `Hook` is dropped.
    pub fn start(config: &Config, url: &str, bus: Arc<Bus>) -> std::io::Result<Hook> {
        let (checks, queue) = crossbeam_channel::bounded(config.auth_hook_max_pending);
        let pending = Arc::new(AtomicUsize::new(0));
        let pool = Arc::new(Pool {
            // No redirects: a hook that moved is a misconfiguration to see (its 3xx is a failure), and a POST
            // followed as a GET would lose the request.
            agent: ureq::AgentBuilder::new().redirects(0).build(),
            url: url.to_string(),
            timeout: config.auth_hook_timeout,
            cache: Some(config.auth_hook_cache)
                .filter(|ttl| !ttl.is_zero())
                .map(|ttl| Cache {
                    ttl,
                    entries: Mutex::new(HashMap::new()),
                }),
            pending: Arc::clone(&pending),
            bus,
        });
        for i in 0..THREADS {
            let pool = Arc::clone(&pool);
            let queue: Receiver<Check> = queue.clone();
            std::thread::Builder::new()
                .name(format!("spout-hook-{i}"))
                .spawn(move || pool.serve(&queue))?;
        }
        Ok(Hook {
            checks,
            pending,
            max_pending: config.auth_hook_max_pending,
        })
    }

    /// Queues the check of a subscribe whose request is `body`; its verdict goes to `waiter`. Refused (`Busy`)
    /// when `--auth-hook-max-pending` checks wait already.
    pub fn ask(
        &self,
        waiter: Waiter,
        body: Vec<u8>,
        cacheable: bool,
        now: Instant,
    ) -> Result<(), HookFailure> {
        if self.pending.fetch_add(1, Ordering::AcqRel) >= self.max_pending {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            return Err(HookFailure::Busy);
        }
        let check = Check {
            waiter,
            body,
            cacheable,
            asked: now,
        };
        self.checks.try_send(check).map_err(|_| {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            HookFailure::Busy
        })
    }
}

impl Pool {
    fn serve(&self, queue: &Receiver<Check>) {
        for check in queue.iter() {
            let verdict = self.decide(&check);
            self.pending.fetch_sub(1, Ordering::AcqRel);
            self.bus.answer(check.waiter, Answer::Hook(verdict));
        }
    }

    fn decide(&self, check: &Check) -> HookVerdict {
        let left = (check.asked + self.timeout).saturating_duration_since(Instant::now());
        if left.is_zero() {
            return HookVerdict::Failed(HookFailure::Timeout);
        }
        let cache = self.cache.as_ref().filter(|_| check.cacheable);
        if let Some(verdict) = cache.and_then(|c| c.get(&check.body)) {
            return verdict;
        }
        let verdict = self.call(&check.body, left);
        if let Some(cache) = cache {
            cache.put(&check.body, &verdict);
        }
        verdict
    }

    /// One POST to the hook, within `left`.
    fn call(&self, body: &[u8], left: Duration) -> HookVerdict {
        let sent = self
            .agent
            .post(&self.url)
            .timeout(left)
            .set("Content-Type", "application/json")
            .send_bytes(body);
        match sent {
            Ok(answer) if (200..300).contains(&answer.status()) => allowed(answer),
            Ok(answer) => HookVerdict::Failed(HookFailure::Status(answer.status())),
            Err(ureq::Error::Status(401, _)) => HookVerdict::Unauthorized,
            Err(ureq::Error::Status(403, _)) => HookVerdict::Forbidden,
            Err(ureq::Error::Status(status, _)) => HookVerdict::Failed(HookFailure::Status(status)),
            Err(ureq::Error::Transport(e)) if timed_out(&e) => {
                HookVerdict::Failed(HookFailure::Timeout)
            }
            Err(ureq::Error::Transport(e)) => {
                log::debug!("auth hook: {}", e.kind());
                HookVerdict::Failed(HookFailure::Unreachable)
            }
        }
    }
}

/// A 2xx answer: its body read (to a bound) and checked.
fn allowed(answer: ureq::Response) -> HookVerdict {
    let mut body = Vec::new();
    if answer
        .into_reader()
        .take(MAX_ANSWER)
        .read_to_end(&mut body)
        .is_err()
    {
        return HookVerdict::Failed(HookFailure::Unreachable);
    }
    match serde_json::from_slice::<Allowed>(&body) {
        Ok(allowed) => HookVerdict::Allowed {
            client_id: allowed.client_id.map(Into::into),
            channels: allowed
                .channels
                .map(|list| list.into_iter().map(Into::into).collect()),
        },
        Err(_) => HookVerdict::Failed(HookFailure::BadAnswer),
    }
}

/// Whether a transport error is the timeout running out (ureq reports it as an I/O error of kind `TimedOut` or
/// `WouldBlock`, from connect or from a read).
fn timed_out(e: &ureq::Transport) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
            );
        }
        source = cause.source();
    }
    false
}

impl Cache {
    fn get(&self, key: &[u8]) -> Option<HookVerdict> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let (until, verdict) = entries.get(key)?;
        (Instant::now() < *until).then(|| verdict.clone())
    }

    /// Keeps a decision; a failure is not one. When full, expired entries go first; if none has, the new one is
    /// not kept (the cache only saves round trips, so a miss is always correct).
    fn put(&self, key: &[u8], verdict: &HookVerdict) {
        if matches!(verdict, HookVerdict::Failed(_)) {
            return;
        }
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= CACHE_ENTRIES {
            entries.retain(|_, (until, _)| now < *until);
            if entries.len() >= CACHE_ENTRIES {
                return;
            }
        }
        entries.insert(key.into(), (now + self.ttl, verdict.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_keeps_decisions_for_their_time_and_never_failures() {
        let cache = Cache {
            ttl: Duration::from_secs(60),
            entries: Mutex::new(HashMap::new()),
        };
        cache.put(b"a", &HookVerdict::Unauthorized);
        cache.put(b"b", &HookVerdict::Failed(HookFailure::Timeout));
        assert_eq!(cache.get(b"a"), Some(HookVerdict::Unauthorized));
        assert_eq!(cache.get(b"b"), None);
        let expired = Cache {
            ttl: Duration::ZERO,
            entries: Mutex::new(HashMap::new()),
        };
        expired.put(b"a", &HookVerdict::Forbidden);
        assert_eq!(expired.get(b"a"), None);
    }
}
