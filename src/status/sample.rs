//! One status sample: the figures of one moment as the JSON the status page reads (sans-io: the time and the
//! figures come in). Totals are as `/metrics` has them; rates compare with the previous sample.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use crate::config::Api;
use crate::metrics::{Counters, Figures};

/// A per-worker figure of `Counters`.
type Figure = fn(&Counters) -> u64;

/// Errors and refusals, each under the code a client is answered with (`busy` is the 503 at the connection
/// limit, `auth_refused` the 401 and 403 of `--auth jwt`, `bad_request` every 400, 413, 431 and 505 the
/// connection layer refuses), as the counters `/metrics` exposes.
const ERRORS: [(&str, Figure); 9] = [
    ("bad_request", |c| c.bad_requests),
    ("request_timeout", |c| c.timeouts),
    ("busy", |c| c.refused),
    ("too_many_connections", |c| c.peer_refused),
    ("body_budget_full", |c| c.body_budget_refused),
    ("overloaded", |c| c.overloaded),
    ("auth_refused", |c| c.auth_refused),
    ("ws_protocol_error", |c| c.ws_protocol_errors),
    ("ws_timeout", |c| c.ws_timeouts),
];

/// The sample at wall-clock `now` of `figures`; `previous` is the last sample's figures and how long ago it was
/// taken, for the rates.
pub fn sample(
    now: SystemTime,
    figures: &Figures,
    previous: Option<(&Figures, Duration)>,
) -> String {
    let time = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let table = &figures.table;
    // Per second since the previous sample; counters only grow, but a gauge-like reading is never negative.
    let rate = |now: u64, then: Option<u64>| -> Value {
        match (then, previous) {
            (Some(then), Some((_, elapsed))) if !elapsed.is_zero() => {
                let per_second = now.saturating_sub(then) as f64 / elapsed.as_secs_f64();
                json!((per_second * 10.0).round() / 10.0)
            }
            _ => Value::Null,
        }
    };
    let before = previous.map(|(f, _)| f);
    let workers: Vec<Value> = figures
        .workers
        .iter()
        .map(|c| {
            json!({
                "connections": c.connections,
                "subscribers": c.subscribers,
                "queued_bytes": c.queued_bytes,
            })
        })
        .collect();
    let apis: Map<String, Value> = Api::ALL
        .iter()
        .map(|api| {
            let i = *api as usize;
            let streams = figures.total(|c| c.streams_by_api.get(i).copied().unwrap_or(0));
            (api.as_str().to_string(), json!(streams))
        })
        .collect();
    let connections_by_api: Map<String, Value> = Api::ALL
        .iter()
        .map(|api| {
            let i = *api as usize;
            let open = figures.total(|c| c.connections_by_api.get(i).copied().unwrap_or(0));
            (api.as_str().to_string(), json!(open))
        })
        .collect();
    let errors: Map<String, Value> = ERRORS
        .iter()
        .map(|(code, counter)| (code.to_string(), json!(figures.total(counter))))
        .collect();
    let broker = match figures.broker {
        None => json!({"kind": "local", "reachable": true}),
        Some(b) => json!({"kind": "redis", "reachable": b.reachable, "errors": b.errors}),
    };
    let published = table.published;
    let requests = figures.total(|c| c.published);
    let delivered = figures.total(|c| c.delivered);
    let bytes_out = figures.total(|c| c.bytes_out);
    json!({
        "time": time,
        "connections": figures.total(|c| c.connections),
        "subscribers": figures.total(|c| c.subscribers),
        "subscriptions": figures.total(|c| c.subscriptions),
        "workers": workers,
        "apis": apis,
        "connections_by_api": connections_by_api,
        "published": published,
        "delivered": delivered,
        "rates": {
            "published": rate(published, before.map(|f| f.table.published)),
            "publish_requests": rate(requests, before.map(|f| f.total(|c| c.published))),
            "delivered": rate(delivered, before.map(|f| f.total(|c| c.delivered))),
            "bytes_out": rate(bytes_out, before.map(|f| f.total(|c| c.bytes_out))),
        },
        "queued_bytes": figures.total(|c| c.queued_bytes),
        "slow_closes": figures.total(|c| c.dropped_slow),
        "errors": errors,
        "channels": table.channels,
        "history": {"events": table.retained_events, "bytes": table.retained_bytes},
        "broker": broker,
        "draining": figures.draining,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::TableStats;
    use crate::metrics::BrokerFigures;

    fn figures(delivered: [u64; 2], published: u64) -> Figures {
        let worker = |delivered| {
            let mut c = Counters {
                connections: 3,
                subscribers: 2,
                delivered,
                queued_bytes: 100,
                refused: 1,
                ..Counters::default()
            };
            c.streams_by_api[Api::Native as usize] = 2;
            c
        };
        Figures {
            workers: delivered.into_iter().map(worker).collect(),
            table: TableStats {
                published,
                channels: 4,
                ..TableStats::default()
            },
            draining: false,
            broker: None,
        }
    }

    #[test]
    fn a_sample_holds_totals_per_worker_figures_and_rates() {
        let at = UNIX_EPOCH + Duration::from_millis(1_795_450_801_123);
        let first: Value = serde_json::from_str(&sample(at, &figures([10, 20], 5), None)).unwrap();
        assert_eq!(first["time"], 1_795_450_801_123u64);
        assert_eq!(first["connections"], 6);
        assert_eq!(first["workers"][1]["queued_bytes"], 100);
        assert_eq!(first["apis"]["native"], 4);
        assert_eq!(first["apis"]["keker"], 0);
        assert_eq!(first["errors"]["busy"], 2);
        assert_eq!(first["queued_bytes"], 200);
        assert_eq!(first["rates"]["delivered"], Value::Null);
        assert_eq!(first["broker"]["kind"], "local");

        let before = figures([10, 20], 5);
        let mut now = figures([40, 50], 25);
        now.broker = Some(BrokerFigures {
            reachable: false,
            ..BrokerFigures::default()
        });
        let second: Value =
            serde_json::from_str(&sample(at, &now, Some((&before, Duration::from_secs(2)))))
                .unwrap();
        assert_eq!(second["rates"]["delivered"], 30.0);
        assert_eq!(second["rates"]["published"], 10.0);
        assert_eq!(second["delivered"], 90);
        assert_eq!(second["broker"]["reachable"], false);
    }
}
