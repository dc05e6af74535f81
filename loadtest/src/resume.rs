//! The `resume` scenario (resume storm): many clients drop their connections and reconnect with
//! `Last-Event-ID` while publishing goes on; every client must end with exactly the events published on its
//! channel after it first connected.
//!
//! N clients on C channels (client i on channel i mod C) connect before publishing starts, so every event
//! acknowledged to the publisher is one each client of its channel must hold. Publishing is paced (`--rate`)
//! and ordered (never two publishes of one channel in flight), so a channel's sequence numbers are the server's
//! order. Each client drops its connection `--drops` times at moments drawn uniformly over `--duration` (a drop
//! waits until the client has an id to resume from) and reconnects after `--reconnect-delay` (so that it misses
//! events the server must replay) with the id of the last event it received; a connection the server closes is
//! resumed the same way. Ids are opaque: whatever the server put in
//! `id:` (SSE) or `"id"` (spout's WebSocket messages) goes back as `Last-Event-ID`, so nchan's ids work as well
//! as spout's. Pushpin keeps no history to resume from: the comparison skips it.
//!
//! The report: clients that hold exactly the published events, and per client (the JSON lists the ones with a
//! problem) missing, duplicate, out-of-order and unexpected events and `reset`s received; reconnect time
//! percentiles (from the end of `--reconnect-delay` to the next response head, failed attempts included); drops,
//! losses, failed reconnects and clients that gave up.
//!
//! What it must not do: let the exact record grow without bound. It takes one bit per event per client; the
//! run is refused when that would pass `MAX_LEDGER_BYTES`.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::engine::{unix_nanos, ClientResult, DropPlan, Role};
use crate::ledger::Tally;
use crate::report;
use crate::run::{fmt_us, latency_line, publish_report, server_cpu_report, subscribe_line, Run};
use crate::side::Stop;
use crate::{procfs, Common, Scenario};

/// Memory for all clients' ledgers together, at most (one bit per event per client).
const MAX_LEDGER_BYTES: f64 = 1024.0 * 1024.0 * 1024.0;
/// Clients with a problem listed one by one in the JSON record, at most.
const LISTED_CLIENTS: usize = 100;

/// The ledgers' memory in bytes, estimated: each client holds a bit for each event of its channel.
pub fn ledger_bytes(
    subscribers: usize,
    channels: u32,
    events: u64,
    rate: f64,
    duration: Duration,
) -> f64 {
    let paced = (rate * duration.as_secs_f64()).ceil() + 1.0;
    let events = (events as f64).min(paced);
    subscribers as f64 * (events / f64::from(channels.max(1))).ceil() / 8.0
}

/// Totals over the clients.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Totals {
    pub clients: u64,
    pub exact: u64,
    pub missing: u64,
    pub clients_missing: u64,
    pub duplicates: u64,
    pub clients_with_duplicates: u64,
    pub out_of_order: u64,
    pub clients_out_of_order: u64,
    pub unexpected: u64,
    pub clients_unexpected: u64,
    pub resets: u64,
    pub clients_reset: u64,
    pub gave_up: u64,
    /// Between a drop and its reconnect when the run ended (a late drop of a client that already held everything).
    pub not_connected_at_end: u64,
}

pub fn totals(clients: &[ClientResult]) -> Totals {
    let mut t = Totals::default();
    for c in clients {
        let Tally {
            missing,
            duplicates,
            out_of_order,
            unexpected,
            resets,
            ..
        } = c.tally;
        t.clients += 1;
        t.exact += u64::from(c.tally.exact() && !c.gave_up);
        t.missing += missing;
        t.clients_missing += u64::from(missing > 0);
        t.duplicates += duplicates;
        t.clients_with_duplicates += u64::from(duplicates > 0);
        t.out_of_order += out_of_order;
        t.clients_out_of_order += u64::from(out_of_order > 0);
        t.unexpected += unexpected;
        t.clients_unexpected += u64::from(unexpected > 0);
        t.resets += resets;
        t.clients_reset += u64::from(resets > 0);
        t.gave_up += u64::from(c.gave_up);
        t.not_connected_at_end += u64::from(!c.connected_at_end);
    }
    t
}

pub fn run(c: &Common, scenario: &Scenario) -> Result<(), String> {
    let Scenario::Resume {
        subscribers,
        channels,
        drops,
        max_reconnects,
        reconnect_delay,
        publish,
    } = scenario
    else {
        return Err("not the resume scenario".into());
    };
    let rate = publish.required_rate("resume")?;
    let channels = (*channels).max(1);
    let bytes = ledger_bytes(
        *subscribers,
        channels,
        publish.events,
        rate,
        publish.duration,
    );
    if bytes > MAX_LEDGER_BYTES {
        return Err(format!(
            "the clients' exact records would take {:.0} MiB (one bit per event per client): lower --events, \
             --rate × --duration or --subscribers, or add --channels",
            bytes / 1048576.0
        ));
    }
    let params = json!({
        "subscribers": subscribers,
        "channels": channels,
        "drops": drops,
        "max_reconnects": max_reconnects,
        "reconnect_delay_s": reconnect_delay.as_secs_f64(),
        "publish": publish,
    });
    let mut run = Run::prepare(c, "resume", *subscribers, channels, |_| {})?;
    let plan: Vec<u32> = (0..*subscribers).map(|i| (i as u32) % channels).collect();

    let connect_cpu0 = procfs::cpu_seconds("self").unwrap_or(0.0);
    let t0 = Instant::now();
    let role = Role::Resume {
        limit: publish.events,
        max_reconnects: *max_reconnects,
    };
    let connected = run.connect(&plan, role)?;
    run.require_subscribers(&connected, "client")?;
    let connect_elapsed = t0.elapsed();
    let connect_cpu = procfs::cpu_seconds("self").unwrap_or(0.0) - connect_cpu0;
    run.begin_measure();
    let before = run.snapshot();
    run.start_drops(DropPlan {
        drops: *drops,
        within: publish.duration,
        reconnect_delay: *reconnect_delay,
        seed: unix_nanos() ^ u64::from(std::process::id()),
    })?;
    let outcome = run.publish(&publish.plan(channels, true), &connected.receivers, "")?;
    let after = run.snapshot();
    let acked = run.engine.acked.clone();
    let merged = run.finish(Stop { probe: None, acked })?;

    let t = totals(&merged.clients);
    let listed: Vec<(usize, &ClientResult)> = merged
        .clients
        .iter()
        .enumerate()
        .filter(|(_, c)| !c.tally.exact() || c.gave_up)
        .take(LISTED_CLIENTS)
        .collect();
    let rc = merged.resume;
    let ok = run.engine.counters.published_ok;
    let (publish_json, publish_line) = publish_report(&run.engine, &outcome, ok);
    let (server_json, server_line) = server_cpu_report(&before, &after, merged.delivered);
    let mut results = json!({
        "subscribers": subscribers,
        "subscribed": merged.subscribed,
        "connect_failures": merged.failures,
        "not_connected": merged.not_connected.total(),
        "not_connected_detail": merged.not_connected,
        "connect_time_us": report::percentiles_us(&merged.connect_time),
        "publish": publish_json,
        "published_per_channel": run.engine.published_per_channel,
        "delivered": merged.delivered,
        "latency_us": report::percentiles_us(&merged.latency),
        "clients": t,
        "clients_with_problems": listed.iter().map(|(i, c)| json!({"client": i, "result": c})).collect::<Vec<_>>(),
        "connections": rc,
        "reconnect_time_us": report::percentiles_us(&merged.reconnect_time),
        "foreign_events": merged.foreign_events,
        "server": server_json,
    });
    let processes = run.processes();
    run.summary = vec![
        format!(
            "resume against {} ({:?}) — {subscribers} clients on {channels} channel(s), {drops} drops each, \
             {rate}/s for {:.0}s, {processes} process(es)",
            c.target_name,
            run.cfg.transport,
            publish.duration.as_secs_f64()
        ),
        subscribe_line(&merged, *subscribers, connect_elapsed),
        format!("  {publish_line}"),
        format!(
            "  clients holding exactly the published events: {} of {}{}",
            t.exact,
            t.clients,
            if t.exact == t.clients && t.clients > 0 { " ✓" } else { "" }
        ),
        format!(
            "  missing {} ({} clients), duplicates {} ({} clients), out of order {} ({} clients), unexpected {} \
             ({} clients), resets received {} ({} clients), gave up {}",
            t.missing,
            t.clients_missing,
            t.duplicates,
            t.clients_with_duplicates,
            t.out_of_order,
            t.clients_out_of_order,
            t.unexpected,
            t.clients_unexpected,
            t.resets,
            t.clients_reset,
            t.gave_up
        ),
        format!(
            "  connections: {} dropped by the tool, {} lost, {} reconnected, {} failed reconnects; {} clients \
             not connected at the end",
            rc.drops, rc.lost, rc.reconnected, rc.failed_reconnects, t.not_connected_at_end
        ),
        format!(
            "  reconnect time (after the {:.0} ms delay → response head) µs: p50 {} p99 {} max {}",
            reconnect_delay.as_secs_f64() * 1000.0,
            fmt_us(&merged.reconnect_time, 0.5),
            fmt_us(&merged.reconnect_time, 0.99),
            fmt_us(&merged.reconnect_time, 1.0)
        ),
        format!(
            "  delivered {} (replays included); latency µs: {}",
            merged.delivered,
            latency_line(&merged.latency)
        ),
    ];
    for (i, client) in listed.iter().take(5) {
        run.summary.push(format!(
            "    client {i} (channel c{}): {:?}, drops {}, reconnects {}{}",
            client.channel,
            client.tally,
            client.drops,
            client.reconnects,
            if client.gave_up { ", gave up" } else { "" }
        ));
    }
    if let Some(line) = server_line {
        run.summary.push(format!("  {line}"));
    }
    run.tool_cpu(&merged, &mut results, connect_cpu);
    run.emit(params, results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ledger_estimate_follows_the_paced_count() {
        // 1,000 clients, 4 channels, 100/s for 10 s: 1,001 events, 251 per channel, 1 bit each.
        let b = ledger_bytes(1000, 4, 1_000_000, 100.0, Duration::from_secs(10));
        assert_eq!(b, 1000.0 * 251.0 / 8.0);
        // --events caps it.
        let b = ledger_bytes(1000, 1, 80, 100.0, Duration::from_secs(10));
        assert_eq!(b, 1000.0 * 80.0 / 8.0);
    }

    #[test]
    fn totals_count_clients_per_problem() {
        let client = |missing, duplicates, out_of_order, gave_up: bool| ClientResult {
            channel: 0,
            tally: Tally {
                expected: 10,
                received: 10 - missing,
                missing,
                unexpected: 0,
                duplicates,
                out_of_order,
                resets: u64::from(missing > 0),
            },
            drops: 3,
            reconnects: 3,
            gave_up,
            connected_at_end: !gave_up,
        };
        let t = totals(&[
            client(0, 0, 0, false),
            client(2, 0, 0, false),
            client(0, 3, 1, false),
            client(0, 0, 0, true),
        ]);
        assert_eq!(
            t,
            Totals {
                clients: 4,
                exact: 1,
                missing: 2,
                clients_missing: 1,
                duplicates: 3,
                clients_with_duplicates: 1,
                out_of_order: 1,
                clients_out_of_order: 1,
                unexpected: 0,
                clients_unexpected: 0,
                resets: 1,
                clients_reset: 1,
                gave_up: 1,
                not_connected_at_end: 1,
            }
        );
    }
}
