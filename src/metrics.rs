//! Metric names, per-worker counters and the Prometheus text exposition.
//!
//! Workers count in plain `u64` fields (`Counters`) on the hot path and copy them into their slot of relaxed
//! atomics once per tick (`Registry::publish`); `/metrics` reads the slots. No atomic is touched inside fan-out.
//! Every metric is defined once, in the `counters!` table below: field, exposed name, type and help text; the
//! per-API gauges (`streams_by_api`, `connections_by_api`) follow them in a worker's slot.
//!
//! `Figures::read` is the one reader of the slots, the channel table's figures and the broker's: `/metrics`
//! renders what it read as Prometheus text, and the status stream (`status`) samples it once per second.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::channels::{ChannelTable, TableStats, LOCK_HOLD_BOUNDS_NS};
use crate::config::Api;

/// A figure per API, indexed by `Api as usize`.
pub type PerApi = [u64; Api::ALL.len()];

/// A per-API gauge as rendered: its name, its help text, and where a worker's values are.
type PerApiGauge = (&'static str, &'static str, fn(&Counters) -> PerApi);

macro_rules! counters {
    ($($field:ident: $name:literal, $kind:literal, $help:literal;)*) => {
        /// One worker's figures, plain integers owned by the worker.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct Counters {
            $(pub $field: u64,)*
            /// Open event streams per API, indexed by `Api as usize` (`spout_subscribers_by_api`).
            pub streams_by_api: PerApi,
            /// Open connections per API, indexed by `Api as usize`, as the last sweep of the connections found them
            /// (`spout_connections_by_api`): a connection counts for its listener's API until a request under a
            /// native listener's prefix makes it a compatible API's.
            pub connections_by_api: PerApi,
        }

        /// (name, type, help) of every per-worker metric, in `Counters::values` order.
        pub const WORKER_METRICS: &[(&str, &str, &str)] = &[$(($name, $kind, $help),)*];

        impl Counters {
            /// The values of a slot: `WORKER_METRICS` in order, then `streams_by_api`, then `connections_by_api`.
            fn values(&self) -> impl Iterator<Item = u64> + '_ {
                [$(self.$field,)*]
                    .into_iter()
                    .chain(self.streams_by_api.iter().copied())
                    .chain(self.connections_by_api.iter().copied())
            }

            /// The inverse of `values`.
            fn from_values(mut values: impl Iterator<Item = u64>) -> Counters {
                let mut counters = Counters::default();
                $(counters.$field = values.next().unwrap_or(0);)*
                for cell in counters.streams_by_api.iter_mut().chain(&mut counters.connections_by_api) {
                    *cell = values.next().unwrap_or(0);
                }
                counters
            }
        }
    };
}

counters! {
    connections: "spout_connections", "gauge", "Open client connections.";
    subscribers: "spout_subscribers", "gauge", "Open event streams (a stream may span several channels).";
    subscriptions: "spout_subscriptions", "gauge", "Channel subscriptions of open streams.";
    accepted: "spout_connections_accepted_total", "counter", "Connections accepted.";
    refused: "spout_connections_refused_total", "counter", "Connections refused with 503 (connection limit or out of file descriptors).";
    peer_refused: "spout_connections_per_ip_refused_total", "counter", "Connections refused with 503 because their client address had --max-connections-per-ip open.";
    requests: "spout_requests_total", "counter", "HTTP requests handled.";
    bad_requests: "spout_bad_requests_total", "counter", "Requests refused as malformed, oversized or smuggling-shaped.";
    body_budget_refused: "spout_body_budget_refusals_total", "counter", "Requests refused with 503 because the bodies being read filled --max-pending-body-bytes.";
    timeouts: "spout_request_timeouts_total", "counter", "Connections closed with 408 for an incomplete request.";
    published: "spout_publish_requests_total", "counter", "Publish requests accepted on this worker.";
    overloaded: "spout_publish_overloaded_total", "counter", "Publishes refused with 503 because a worker inbox was full.";
    delivered: "spout_delivered_total", "counter", "Events queued to subscribers (live and replayed).";
    replayed: "spout_replayed_total", "counter", "Events replayed from history.";
    resets: "spout_resets_total", "counter", "Reset events sent to resuming subscribers.";
    dropped_slow: "spout_dropped_slow_subscribers_total", "counter", "Subscribers closed for exceeding --max-queued-bytes.";
    queued_bytes: "spout_queued_bytes", "gauge", "Output queued for clients, not yet written (summed by each sweep of the connections, every 250 ms).";
    ws_protocol_errors: "spout_ws_protocol_errors_total", "counter", "WebSocket subscribers closed for a protocol error (close code 1002, 1007 or 1009).";
    ws_timeouts: "spout_ws_ping_timeouts_total", "counter", "WebSocket subscribers dropped by their liveness timer (--ws-timeout, --ws-push-timeout, or keker's HELLO deadline and pings).";
    auth_refused: "spout_auth_refused_total", "counter", "Native requests refused by --auth jwt or --auth hook: a token missing, invalid or expired, or credentials the hook refused (401), or a channel or client id not allowed (403).";
    auth_hook_failed: "spout_auth_hook_failed_total", "counter", "Subscribes answered 503 because the auth hook gave no decision (timeout, unreachable, an unexpected status or answer, too many pending).";
    tokens_expired: "spout_token_expired_streams_total", "counter", "Streams ended because the token that opened them expired.";
    bytes_out: "spout_bytes_out_total", "counter", "Bytes written to client sockets.";
    writes: "spout_vectored_writes_total", "counter", "Vectored write calls; frames_written / this = frames per write.";
    frames_written: "spout_frames_written_total", "counter", "Queued chunks fully written.";
    inbox_events: "spout_inbox_messages_total", "counter", "Messages taken from this worker's inbox.";
    loop_turns: "spout_loop_turns_total", "counter", "Event loop turns.";
    busy_ns: "spout_loop_busy_nanoseconds_total", "counter", "Time spent outside poll, in nanoseconds.";
}

/// The Redis broker's figures, read with the others (`Figures::read`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BrokerFigures {
    pub reachable: bool,
    pub round_trips: u64,
    pub errors: u64,
    pub received: u64,
}

/// Every worker's latest snapshot, one slot of relaxed atomics each.
pub struct Registry {
    slots: Box<[Box<[AtomicU64]>]>,
}

/// Everything `/metrics` and the status stream show, read at one moment.
#[derive(Clone, Debug, Default)]
pub struct Figures {
    /// Each worker's last snapshot, in worker order.
    pub workers: Vec<Counters>,
    pub table: TableStats,
    pub draining: bool,
    /// With `--broker redis://…`.
    pub broker: Option<BrokerFigures>,
}

impl Figures {
    pub fn read(
        registry: &Registry,
        table: &ChannelTable,
        draining: bool,
        broker: Option<BrokerFigures>,
    ) -> Figures {
        Figures {
            workers: registry.snapshot(),
            table: table.stats(),
            draining,
            broker,
        }
    }

    /// A per-worker figure summed over the workers.
    pub fn total(&self, figure: impl Fn(&Counters) -> u64) -> u64 {
        self.workers.iter().map(figure).sum()
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        let (table, draining) = (&self.table, self.draining);
        let mut out = String::with_capacity(8192);
        let mut gauge = |name: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        };
        gauge(
            "spout_channels",
            "Channels in the channel table.",
            table.channels as u64,
        );
        gauge(
            "spout_history_events",
            "Events retained in history.",
            table.retained_events as u64,
        );
        gauge(
            "spout_history_bytes",
            "Bytes retained in history.",
            table.retained_bytes as u64,
        );
        gauge(
            "spout_draining",
            "1 while shutting down.",
            u64::from(draining),
        );
        for (name, help, value) in [
            (
                "spout_events_published_total",
                "Events published (ids assigned).",
                table.published,
            ),
            (
                "spout_history_evicted_total",
                "Events evicted from history by count or bytes.",
                table.evicted,
            ),
            (
                "spout_history_expired_total",
                "Events expired from history by age.",
                table.expired,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        }
        if let Some(broker) = self.broker {
            let _ = writeln!(
                out,
                "# HELP spout_broker_reachable 1 while this node reaches Redis.\n# TYPE spout_broker_reachable gauge\nspout_broker_reachable {}",
                u64::from(broker.reachable)
            );
            for (name, help, value) in [
                (
                    "spout_broker_round_trips_total",
                    "Scripts and subscriptions sent to Redis.",
                    broker.round_trips,
                ),
                (
                    "spout_broker_errors_total",
                    "Redis operations that failed or timed out, and commands refused with a full queue.",
                    broker.errors,
                ),
                (
                    "spout_broker_events_received_total",
                    "Events and deletions received from Redis shard channels.",
                    broker.received,
                ),
            ] {
                let _ = writeln!(
                    out,
                    "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
                );
            }
        }
        let name = "spout_table_lock_hold_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} How long publishes and subscribes held the channel table's lock.\n# TYPE {name} histogram"
        );
        for (op, hold) in [
            ("publish", &table.publish_hold),
            ("subscribe", &table.subscribe_hold),
        ] {
            let mut cumulative = 0;
            for (bound, count) in LOCK_HOLD_BOUNDS_NS.iter().zip(&hold.counts) {
                cumulative += count;
                let le = *bound as f64 / 1e9;
                let _ = writeln!(out, "{name}_bucket{{op=\"{op}\",le=\"{le}\"}} {cumulative}");
            }
            let (sum, count) = (hold.sum_ns as f64 / 1e9, hold.count());
            let _ = writeln!(out, "{name}_bucket{{op=\"{op}\",le=\"+Inf\"}} {count}");
            let _ = writeln!(out, "{name}_sum{{op=\"{op}\"}} {sum}");
            let _ = writeln!(out, "{name}_count{{op=\"{op}\"}} {count}");
        }
        for (index, (name, kind, help)) in WORKER_METRICS.iter().enumerate() {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (worker, counters) in self.workers.iter().enumerate() {
                let value = counters.values().nth(index).unwrap_or(0);
                let _ = writeln!(out, "{name}{{worker=\"{worker}\"}} {value}");
            }
        }
        let by_api: [PerApiGauge; 2] = [
            (
                "spout_subscribers_by_api",
                "Open event streams per API (the API a stream was opened with, under a native listener's prefix too).",
                |c| c.streams_by_api,
            ),
            (
                "spout_connections_by_api",
                "Open connections per API (the listener's, or the compatible API a request under a native listener's prefix reached), as the last sweep of the connections found them.",
                |c| c.connections_by_api,
            ),
        ];
        for (name, help, values) in by_api {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            for (worker, counters) in self.workers.iter().enumerate() {
                for (api, value) in Api::ALL.iter().zip(values(counters)) {
                    let api = api.as_str();
                    let _ = writeln!(out, "{name}{{worker=\"{worker}\",api=\"{api}\"}} {value}");
                }
            }
        }
        out
    }
}

impl Registry {
    pub fn new(workers: usize) -> Registry {
        let slots = (0..workers)
            .map(|_| {
                (0..WORKER_METRICS.len() + 2 * Api::ALL.len())
                    .map(|_| AtomicU64::new(0))
                    .collect()
            })
            .collect();
        Registry { slots }
    }

    /// Copies a worker's counters into its slot (once per tick).
    pub fn publish(&self, worker: usize, counters: &Counters) {
        let Some(slot) = self.slots.get(worker) else {
            return;
        };
        for (cell, value) in slot.iter().zip(counters.values()) {
            cell.store(value, Ordering::Relaxed);
        }
    }

    /// Every worker's last snapshot, in worker order.
    fn snapshot(&self) -> Vec<Counters> {
        self.slots
            .iter()
            .map(|slot| Counters::from_values(slot.iter().map(|c| c.load(Ordering::Relaxed))))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_are_summed_and_rendered_per_worker() {
        let registry = Registry::new(2);
        registry.publish(
            0,
            &Counters {
                delivered: 5,
                ..Counters::default()
            },
        );
        let mut by_api = Counters {
            delivered: 7,
            ..Counters::default()
        };
        by_api.streams_by_api[Api::Keker as usize] = 2;
        registry.publish(1, &by_api);
        let figures = Figures {
            workers: registry.snapshot(),
            table: TableStats {
                channels: 3,
                ..TableStats::default()
            },
            draining: false,
            broker: None,
        };
        assert_eq!(figures.total(|c| c.delivered), 12);
        let text = figures.render();
        assert!(text.contains("spout_delivered_total{worker=\"1\"} 7\n"));
        assert!(text.contains("spout_subscribers_by_api{worker=\"1\",api=\"keker\"} 2\n"));
        assert!(text.contains("spout_subscribers_by_api{worker=\"0\",api=\"keker\"} 0\n"));
        assert!(text.contains("# TYPE spout_channels gauge\nspout_channels 3\n"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, value) = line.rsplit_once(' ').expect("name value");
            value.parse::<u64>().expect("integer sample");
        }
    }
}
