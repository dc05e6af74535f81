//! The channel table's lock as spout reports it: `spout_table_lock_hold_seconds` read from the server's
//! `/metrics` before and after the measured part of a run, and the difference reported (operations, mean, and the
//! bucket bounds under which half and 99% of them fall).
//!
//! What it must not do: fail a run. A target that is not spout (no such metric, no `/metrics`) gives nothing, and
//! the report leaves the figure out. The request is a blocking one on its own connection, made between phases,
//! never inside the event loop.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::{json, Value};

const METRIC: &str = "spout_table_lock_hold_seconds";

/// One operation's histogram: (upper bound in seconds, cumulative count) per bucket, `+Inf` last as `f64::INFINITY`,
/// and the sum of the hold times in seconds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Hold {
    pub buckets: Vec<(f64, u64)>,
    pub sum: f64,
}

/// The histograms of `publish` and `subscribe`, or `None` when the server does not report them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Holds {
    pub publish: Hold,
    pub subscribe: Hold,
}

/// Reads `/metrics` from the server at `addr`.
pub fn scrape(addr: SocketAddr, host: &str) -> Option<Holds> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    parse(&text)
}

/// The histograms in a Prometheus text exposition.
pub fn parse(text: &str) -> Option<Holds> {
    let mut holds = Holds::default();
    let mut found = false;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(METRIC) else {
            continue;
        };
        let Some((series, value)) = rest.rsplit_once(' ') else {
            continue;
        };
        let hold = if series.contains("op=\"publish\"") {
            &mut holds.publish
        } else if series.contains("op=\"subscribe\"") {
            &mut holds.subscribe
        } else {
            continue;
        };
        if series.starts_with("_bucket") {
            let le = series.split("le=\"").nth(1)?.split('"').next()?;
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            hold.buckets.push((bound, value.parse().ok()?));
            found = true;
        } else if series.starts_with("_sum") {
            hold.sum = value.parse().ok()?;
        }
    }
    found.then_some(holds)
}

impl Hold {
    fn count(&self) -> u64 {
        self.buckets.last().map_or(0, |(_, n)| *n)
    }

    /// What happened between `self` and `later`.
    fn until(&self, later: &Hold) -> Hold {
        Hold {
            buckets: later
                .buckets
                .iter()
                .zip(&self.buckets)
                .map(|((bound, after), (_, before))| (*bound, after.saturating_sub(*before)))
                .collect(),
            sum: later.sum - self.sum,
        }
    }

    /// The smallest bucket bound under which at least `q` of the operations fall.
    fn quantile_bound(&self, q: f64) -> Option<f64> {
        let count = self.count();
        let wanted = (count as f64 * q).ceil() as u64;
        self.buckets
            .iter()
            .find(|(_, n)| *n >= wanted.max(1))
            .map(|(bound, _)| *bound)
    }

    fn report(&self) -> Value {
        let count = self.count();
        let us = |s: f64| {
            if s.is_finite() {
                json!((s * 1e7).round() / 10.0)
            } else {
                json!("+Inf")
            }
        };
        json!({
            "count": count,
            "mean_us": (count > 0).then(|| (self.sum / count as f64 * 1e7).round() / 10.0),
            "p50_at_most_us": self.quantile_bound(0.5).map(us),
            "p99_at_most_us": self.quantile_bound(0.99).map(us),
        })
    }
}

/// The JSON record and the summary line for the holds between two scrapes.
pub fn report(before: &Holds, after: &Holds) -> (Value, String) {
    let publish = before.publish.until(&after.publish);
    let subscribe = before.subscribe.until(&after.subscribe);
    let line = match publish.count() {
        0 => "table lock: no publish in the measured part".to_string(),
        n => {
            let mean = publish.sum / n as f64 * 1e6;
            format!(
                "table lock: {n} publishes held it {mean:.2} µs on average (ceiling of one box: {:.0} publishes/s); \
                 99% at most {} µs",
                1e6 / mean.max(1e-9),
                publish
                    .quantile_bound(0.99)
                    .map_or("?".to_string(), |b| format!("{:.1}", b * 1e6))
            )
        }
    };
    (
        json!({"publish": publish.report(), "subscribe": subscribe.report()}),
        line,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# TYPE spout_table_lock_hold_seconds histogram
spout_table_lock_hold_seconds_bucket{op=\"publish\",le=\"0.00000025\"} 1
spout_table_lock_hold_seconds_bucket{op=\"publish\",le=\"0.000001\"} 90
spout_table_lock_hold_seconds_bucket{op=\"publish\",le=\"+Inf\"} 100
spout_table_lock_hold_seconds_sum{op=\"publish\"} 0.0001
spout_table_lock_hold_seconds_count{op=\"publish\"} 100
spout_table_lock_hold_seconds_bucket{op=\"subscribe\",le=\"0.00000025\"} 0
spout_table_lock_hold_seconds_bucket{op=\"subscribe\",le=\"0.000001\"} 0
spout_table_lock_hold_seconds_bucket{op=\"subscribe\",le=\"+Inf\"} 0
spout_table_lock_hold_seconds_sum{op=\"subscribe\"} 0
";

    #[test]
    fn a_scrape_parses_and_differences_report_bounds() {
        let after = parse(TEXT).expect("histograms");
        assert_eq!(after.publish.buckets.len(), 3);
        assert_eq!(after.publish.count(), 100);
        let before = Holds {
            publish: Hold {
                buckets: vec![(0.000_000_25, 1), (0.000_001, 10), (f64::INFINITY, 10)],
                sum: 0.000_01,
            },
            subscribe: after.subscribe.clone(),
        };
        let (json, line) = report(&before, &after);
        assert_eq!(json["publish"]["count"], 90);
        assert_eq!(json["publish"]["p50_at_most_us"], 1.0);
        assert_eq!(json["publish"]["p99_at_most_us"], "+Inf");
        assert!(line.contains("90 publishes"), "{line}");
        assert_eq!(parse("spout_other 1\n"), None);
    }
}
