//! The timed half of a worker's turn: the 250 ms tick, and the sweep that checks deadlines.
//!
//! There is no timer per connection: each connection holds one deadline (`conn::Deadline`: a request's, an idle
//! keep-alive's, a close's linger, a WebSocket's liveness check, an SSE stream's next heartbeat), and each tick
//! starts a sweep of the slab that handles the deadlines that have passed. The sweep visits `SWEEP_SLICE` slab keys
//! per turn (as redis's `clientsCron` spreads its client checks), so a million connections never make one long
//! turn; a tick that comes while a sweep is under way lets it go on.

use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

use super::{Worker, EXPIRE_EVERY, SHARED_REFRESH_EVERY, TICK};
use crate::config::Api;
use crate::conn::{Deadline, Next};

/// Connections a sweep visits per loop turn: a turn spends at most about this many deadline checks (tens of
/// microseconds), and a sweep of a million connections spreads over some 250 turns instead of one long one.
const SWEEP_SLICE: usize = 4096;

/// A pass over the slab, a slice per turn: deadlines due at `now`. On its way it sums the output queued on the
/// connections it visits (`spout_queued_bytes`, set when the pass ends): the sweep touches every connection anyway,
/// so the gauge costs no walk of its own and no bookkeeping on the write path.
pub(super) struct Sweep {
    now: Instant,
    next_key: usize,
    queued: u64,
    /// Connections per API seen so far in this pass (`spout_connections_by_api`, set when the pass ends).
    by_api: [u64; Api::ALL.len()],
}

impl Worker {
    pub(super) fn tick(&mut self, now: Instant) {
        self.next_tick = now + TICK;
        self.date.update(SystemTime::now());
        let (next_key, queued, by_api) = self
            .sweep
            .take()
            .map_or((0, 0, [0; Api::ALL.len()]), |sweep| {
                (sweep.next_key, sweep.queued, sweep.by_api)
            });
        self.sweep = Some(Sweep {
            now,
            next_key,
            queued,
            by_api,
        });
        if self.drain.is_some() {
            self.drain_streams(now);
        }
        let closed = self.linger.check(now, &mut self.read_buf);
        self.shared
            .open_connections
            .fetch_sub(closed, Ordering::Relaxed);
        if self.id == 0 && now >= self.next_expire {
            self.next_expire = now + EXPIRE_EVERY;
            self.shared.table.expire(now);
        }
        if self.id == 0 && now >= self.next_shared_refresh {
            self.next_shared_refresh = now + SHARED_REFRESH_EVERY;
            let mut ctx = ctx!(self, now);
            crate::api::refresh_shared(&mut ctx);
        }
        self.counters.connections = self.conns.len() as u64;
        self.counters.subscribers = self.streams;
        self.counters.subscriptions = self.hub.subscriptions() as u64;
        self.shared.registry.publish(self.id, &self.counters);
    }

    /// Visits the next `SWEEP_SLICE` slab keys of the sweep under way: a connection whose deadline has passed is
    /// handled (`Conn::on_deadline`).
    pub(super) fn sweep(&mut self) {
        let Some(sweep) = self.sweep.take() else {
            return;
        };
        let (now, mut queued, mut by_api) = (sweep.now, sweep.queued, sweep.by_api);
        let end = sweep
            .next_key
            .saturating_add(SWEEP_SLICE)
            .min(self.conns.capacity());
        let mut ctx = ctx!(self, now);
        for key in sweep.next_key..end {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            queued += conn.out.bytes() as u64;
            if let Some(count) = by_api.get_mut(conn.api as usize) {
                *count += 1;
            }
            if !conn.deadline.is_due(now) {
                continue;
            }
            let heartbeat = matches!(conn.deadline, Deadline::Heartbeat(_));
            match conn.on_deadline(now, &mut ctx) {
                Next::Close(reason, _) => self.to_reap.push((key, reason)),
                _ if heartbeat && !conn.dirty && conn.wants_flush() => {
                    self.dirty.mark_heartbeat(key)
                }
                _ if conn.wants_flush() => self.dirty.mark(key, conn),
                _ => {}
            }
        }
        if end < self.conns.capacity() {
            self.sweep = Some(Sweep {
                now,
                next_key: end,
                queued,
                by_api,
            });
        } else {
            self.counters.queued_bytes = queued;
            self.counters.connections_by_api = by_api;
        }
    }
}
