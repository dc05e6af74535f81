//! Results: what each process's subscriber side measured (`SideResult`, also the JSON a child process sends its
//! parent), merging them, and the figures printed and appended as a JSON line.
//!
//! Histograms travel between processes in HdrHistogram's V2 format, base64-encoded, and are merged with `add`,
//! so percentiles of a multi-process run are exact, not averages of percentiles.

use std::io::Write;

use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::engine::{
    new_histogram, ClientResult, ConnectFailures, NotConnected, ResumeCounts, SlowCounts, SubResult,
};

pub fn encode_histogram(h: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    V2Serializer::new()
        .serialize(h, &mut bytes)
        .expect("serializing into a Vec cannot fail");
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn decode_histogram(text: &str) -> Result<Histogram<u64>, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| format!("histogram is not base64: {e}"))?;
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| format!("histogram does not decode: {e:?}"))
}

/// The subscriber side of one process.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SideResult {
    pub subscribed: u64,
    pub failures: ConnectFailures,
    pub not_connected: NotConnected,
    pub disconnects: u64,
    pub delivered: u64,
    pub distinct: u64,
    pub foreign_events: u64,
    pub subs: Vec<SubResult>,
    pub latency: String,
    pub connect_time: String,
    pub reconnect_time: String,
    pub slow: SlowCounts,
    pub resume: ResumeCounts,
    /// Resuming clients, each compared with what was published on its channel.
    pub clients: Vec<ClientResult>,
    /// This process's CPU seconds during the measured phase, and that phase's wall seconds.
    pub cpu_seconds: f64,
    pub wall_seconds: f64,
    /// Unix nanoseconds of the last delivery, 0 when none.
    pub last_delivery_ns: u64,
}

/// Several sides merged.
pub struct Merged {
    pub subscribed: u64,
    pub failures: ConnectFailures,
    pub not_connected: NotConnected,
    pub disconnects: u64,
    pub delivered: u64,
    pub foreign_events: u64,
    pub subs: Vec<SubResult>,
    pub latency: Histogram<u64>,
    pub connect_time: Histogram<u64>,
    pub reconnect_time: Histogram<u64>,
    pub slow: SlowCounts,
    pub resume: ResumeCounts,
    pub clients: Vec<ClientResult>,
    /// Highest CPU share of one core among the tool's processes during the measured phase.
    pub max_tool_cpu_share: f64,
    pub tool_cpu_seconds: f64,
    pub last_delivery_ns: u64,
}

pub fn merge(sides: &[SideResult]) -> Result<Merged, String> {
    let mut m = Merged {
        subscribed: 0,
        failures: ConnectFailures::default(),
        not_connected: NotConnected::default(),
        disconnects: 0,
        delivered: 0,
        foreign_events: 0,
        subs: Vec::new(),
        latency: new_histogram(),
        connect_time: new_histogram(),
        reconnect_time: new_histogram(),
        slow: SlowCounts::default(),
        resume: ResumeCounts::default(),
        clients: Vec::new(),
        max_tool_cpu_share: 0.0,
        tool_cpu_seconds: 0.0,
        last_delivery_ns: 0,
    };
    for s in sides {
        m.subscribed += s.subscribed;
        m.failures.add(&s.failures);
        m.not_connected.add(&s.not_connected);
        m.disconnects += s.disconnects;
        m.delivered += s.delivered;
        m.foreign_events += s.foreign_events;
        m.subs.extend_from_slice(&s.subs);
        for (into, from) in [
            (&mut m.latency, &s.latency),
            (&mut m.connect_time, &s.connect_time),
            (&mut m.reconnect_time, &s.reconnect_time),
        ] {
            into.add(decode_histogram(from)?)
                .map_err(|e| format!("{e:?}"))?;
        }
        m.slow.add(&s.slow);
        m.resume.add(&s.resume);
        m.clients.extend_from_slice(&s.clients);
        if s.wall_seconds > 0.0 {
            m.max_tool_cpu_share = m.max_tool_cpu_share.max(s.cpu_seconds / s.wall_seconds);
        }
        m.tool_cpu_seconds += s.cpu_seconds;
        m.last_delivery_ns = m.last_delivery_ns.max(s.last_delivery_ns);
    }
    Ok(m)
}

/// Missing and duplicate events over all subscribers, given what was published (2xx) per channel.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Loss {
    pub missing: u64,
    pub duplicates: u64,
    pub subscribers_missing: u64,
    pub subscribers_with_duplicates: u64,
    pub max_missing_one_subscriber: u64,
}

pub fn loss(subs: &[SubResult], published_per_channel: &[u64]) -> Loss {
    let mut l = Loss::default();
    for s in subs {
        let expected = published_per_channel
            .get(s.channel as usize)
            .copied()
            .unwrap_or(0);
        let missing = expected.saturating_sub(s.unique);
        l.missing += missing;
        l.duplicates += s.duplicates;
        l.subscribers_missing += u64::from(missing > 0);
        l.subscribers_with_duplicates += u64::from(s.duplicates > 0);
        l.max_missing_one_subscriber = l.max_missing_one_subscriber.max(missing);
    }
    l
}

/// Percentiles of a nanosecond histogram, in microseconds.
pub fn percentiles_us(h: &Histogram<u64>) -> Value {
    let us = |v: u64| (v as f64 / 1000.0 * 10.0).round() / 10.0;
    if h.is_empty() {
        return json!(null);
    }
    json!({
        "count": h.len(),
        "mean": (h.mean() / 100.0).round() / 10.0,
        "p50": us(h.value_at_quantile(0.5)),
        "p90": us(h.value_at_quantile(0.9)),
        "p99": us(h.value_at_quantile(0.99)),
        "p99_9": us(h.value_at_quantile(0.999)),
        "max": us(h.max()),
    })
}

/// Appends one JSON line to `path`.
pub fn append_json(path: &str, record: &Value) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    writeln!(f, "{record}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_round_trip_and_merge() {
        let mut a = new_histogram();
        let mut b = new_histogram();
        for v in 1..=1000u64 {
            a.record(v * 1000).unwrap();
        }
        for v in 1001..=2000u64 {
            b.record(v * 1000).unwrap();
        }
        let side = |h: &Histogram<u64>, subs: Vec<SubResult>| SideResult {
            latency: encode_histogram(h),
            connect_time: encode_histogram(&new_histogram()),
            reconnect_time: encode_histogram(&new_histogram()),
            subs,
            cpu_seconds: 0.5,
            wall_seconds: 1.0,
            not_connected: NotConnected {
                never_started: 4,
                still_connecting: 1,
            },
            ..SideResult::default()
        };
        let sub = |channel, unique, duplicates| SubResult {
            channel,
            unique,
            duplicates,
            gaps: 0,
            connected: true,
        };
        let sides = [
            side(&a, vec![sub(0, 10, 0), sub(1, 7, 2)]),
            side(&b, vec![sub(0, 10, 1)]),
        ];
        // Through JSON, as a child sends it.
        let sides: Vec<SideResult> = sides
            .iter()
            .map(|s| serde_json::from_str(&serde_json::to_string(s).unwrap()).unwrap())
            .collect();
        let m = merge(&sides).unwrap();
        assert_eq!(m.latency.len(), 2000);
        assert_eq!(
            m.latency.value_at_quantile(0.5),
            m.latency.highest_equivalent(1_000_000)
        );
        assert!((m.max_tool_cpu_share - 0.5).abs() < 1e-9);
        assert_eq!(
            m.not_connected,
            NotConnected {
                never_started: 8,
                still_connecting: 2
            }
        );
        assert_eq!(
            loss(&m.subs, &[10, 9]),
            Loss {
                missing: 2,
                duplicates: 3,
                subscribers_missing: 1,
                subscribers_with_duplicates: 2,
                max_missing_one_subscriber: 2,
            }
        );
        assert!(decode_histogram("not base64!").is_err());
    }
}
