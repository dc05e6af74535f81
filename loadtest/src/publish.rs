//! The publishing side of the engine: keep-alive HTTP/1.1 publisher connections with one request in flight
//! each, closed-loop or paced, and the drain that waits for the last deliveries.
//!
//! What this file owns: `Engine::publish` and the publisher connections. Each publish body is rendered from the
//! template with the channel's next sequence number and the send time; a 2xx answer counts the event in
//! `published_per_channel` and its sequence number in `acked`, which is what the subscribers are compared with.
//!
//! What it must not do: account deliveries (that is `receive.rs`), or decide when a scenario's phases start.
//!
//! Invariant of ordered publishing (`PublishPlan::ordered`, used by `resume`): a channel never has two publishes
//! in flight, so the server sees a channel's events in the order of their sequence numbers, and a client may
//! call an event below the highest it holds out of order.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use mio::net::TcpStream;

use crate::engine::{channel_name, connected, unix_nanos, Conn, Counters, Engine};
use crate::receive::next_random;
use crate::stream::parse_response_head;

/// What to publish and when to stop.
#[derive(Clone, Debug)]
pub struct PublishPlan {
    pub channels: u32,
    /// `None`: closed loop (as fast as responses and the window allow).
    pub rate: Option<f64>,
    pub events: u64,
    pub duration: Duration,
    pub publishers: usize,
    /// Closed loop: events published but not yet delivered to all their subscribers, at most.
    pub window: u64,
    /// After the last publish, wait at most this long for deliveries to complete.
    pub drain: Duration,
    /// Stop when no delivery and no response for this long (a stuck server).
    pub stall: Duration,
    /// At most one publish per channel in flight (see the module doc).
    pub ordered: bool,
}

#[derive(Clone, Debug)]
pub struct PublishOutcome {
    pub sent: u64,
    pub publishing_time: Duration,
    pub elapsed: Duration,
    pub end_reason: &'static str,
}

enum PubPhase {
    Connecting,
    Idle,
    /// Request bytes written so far.
    Sending(usize),
    Awaiting,
    Closed,
}

pub(crate) struct Publisher {
    pub(crate) stream: TcpStream,
    phase: PubPhase,
    request: Vec<u8>,
    response: Vec<u8>,
    sent_at: Instant,
    channel: u32,
    seq: u64,
}

impl Engine {
    /// Opens publisher connections until there are `n` (not spread over source addresses). A scenario with
    /// several publishing phases reuses the connections of the earlier ones.
    fn open_publishers(&mut self, n: usize) -> io::Result<()> {
        let url = self
            .cfg
            .pub_url
            .clone()
            .ok_or_else(|| io::Error::other("no --pub-url"))?;
        let have = self
            .conns
            .iter()
            .filter(|(_, c)| matches!(c, Conn::Pub(_)))
            .count();
        for _ in have..n {
            let mut stream = self.open_socket(url.addr, false, 0)?;
            let key = self.conns.vacant_key();
            self.register(&mut stream, key)?;
            self.conns.insert(Conn::Pub(Publisher {
                stream,
                phase: PubPhase::Connecting,
                request: Vec::new(),
                response: Vec::new(),
                sent_at: Instant::now(),
                channel: 0,
                seq: 0,
            }));
        }
        Ok(())
    }

    fn pick_channel(&mut self, channels: u32) -> u32 {
        if channels <= 1 {
            return 0;
        }
        (next_random(&mut self.rng) % u64::from(channels)) as u32
    }

    /// A channel to publish on next; with `ordered`, one without a publish in flight (`None` when the few tried
    /// were all busy: try again after the next turn).
    fn next_channel(&mut self, plan: &PublishPlan) -> Option<u32> {
        for _ in 0..8 {
            let channel = self.pick_channel(plan.channels);
            let busy = self
                .in_flight
                .get(channel as usize)
                .copied()
                .unwrap_or(false);
            if !(plan.ordered && busy) {
                return Some(channel);
            }
        }
        None
    }

    /// Publishes by `plan`. `subs_per_channel[c]` is how many subscribers (in all processes) receive channel `c`;
    /// `external` returns distinct deliveries counted elsewhere (child processes). Returns when the plan is done
    /// and deliveries are complete, or drain/stall time is up.
    pub fn publish(
        &mut self,
        plan: &PublishPlan,
        subs_per_channel: &[u64],
        external: &dyn Fn() -> u64,
        mut progress: impl FnMut(&Counters, u64, u64),
    ) -> io::Result<PublishOutcome> {
        self.open_publishers(plan.publishers)?;
        let start = Instant::now();
        // Deliveries already counted before this phase (a scenario may publish more than once).
        let base = self.counters.distinct + external();
        let base_expected: u64 = self
            .published_per_channel
            .iter()
            .zip(subs_per_channel)
            .map(|(p, s)| p * s)
            .sum();
        let mut sent: u64 = 0;
        // Deliveries expected once the first k sent events are delivered everywhere (index k).
        let mut cumulative: VecDeque<u64> = VecDeque::new();
        cumulative.push_back(0);
        let mut cumulative_base: u64 = 0; // index of cumulative[0]
        let mut expected_total: u64 = 0;
        let mut publishing_ended: Option<Instant> = None;
        let mut last_activity = Instant::now();
        let mut last_seen = (0u64, 0u64);
        let mut last_progress = Instant::now();
        let mut end_reason = "complete";
        let answered_base = self.answered();
        loop {
            let now = Instant::now();
            let delivered = (self.counters.distinct + external()).saturating_sub(base);
            let answered = self.answered() - answered_base;
            if (delivered, answered) != last_seen {
                last_seen = (delivered, answered);
                last_activity = now;
            }
            let time_up = now - start >= plan.duration;
            if publishing_ended.is_none() && (sent >= plan.events || time_up) {
                publishing_ended = Some(now);
            }
            if publishing_ended.is_none() {
                let target = match plan.rate {
                    Some(rate) => ((now - start).as_secs_f64() * rate) as u64 + 1,
                    None => u64::MAX,
                };
                while sent < plan.events.min(target) {
                    if plan.rate.is_none() && sent >= plan.window {
                        // Event `sent - window` (0-based) must be delivered everywhere before event `sent` goes.
                        let idx = sent - plan.window + 1;
                        while cumulative_base < idx && cumulative.len() > 1 {
                            cumulative.pop_front();
                            cumulative_base += 1;
                        }
                        if delivered < cumulative.front().copied().unwrap_or(0) {
                            break;
                        }
                    }
                    let Some(channel) = self.next_channel(plan) else {
                        break;
                    };
                    if !self.send_publish(channel) {
                        break;
                    }
                    sent += 1;
                    expected_total += subs_per_channel.get(channel as usize).copied().unwrap_or(0);
                    cumulative.push_back(expected_total);
                }
            }
            if let Some(ended) = publishing_ended {
                let expected: u64 = self
                    .published_per_channel
                    .iter()
                    .zip(subs_per_channel)
                    .map(|(p, s)| p * s)
                    .sum::<u64>()
                    - base_expected;
                if answered >= sent && delivered >= expected {
                    break;
                }
                if now - ended >= plan.drain {
                    end_reason = "drain timeout";
                    break;
                }
            }
            if now - last_activity >= plan.stall {
                end_reason = "stalled";
                break;
            }
            if last_progress.elapsed() >= Duration::from_millis(500) {
                progress(&self.counters, sent, delivered);
                last_progress = Instant::now();
            }
            let timeout = match (publishing_ended, plan.rate) {
                (None, Some(rate)) => Duration::from_secs_f64((1.0 / rate).min(0.02)),
                (None, None) if external_is_remote(subs_per_channel, &self.counters) => {
                    Duration::from_millis(1)
                }
                _ => Duration::from_millis(10),
            };
            self.turn(Some(timeout));
        }
        let elapsed = start.elapsed();
        Ok(PublishOutcome {
            sent,
            publishing_time: publishing_ended.map_or(elapsed, |e| e - start),
            elapsed,
            end_reason,
        })
    }

    fn answered(&self) -> u64 {
        self.counters.published_ok + self.counters.published_failed + self.counters.publish_errors
    }

    /// Queues one publish on an idle publisher; false when none is idle.
    fn send_publish(&mut self, channel: u32) -> bool {
        let Some(url) = self.cfg.pub_url.as_ref() else {
            return false;
        };
        let Some(key) = self
            .conns
            .iter()
            .find(|(_, c)| matches!(c, Conn::Pub(p) if matches!(p.phase, PubPhase::Idle)))
            .map(|(k, _)| k)
        else {
            return false;
        };
        let name = channel_name(channel);
        let Some(next) = self.next_seq.get_mut(channel as usize) else {
            return false;
        };
        let seq = *next;
        *next += 1;
        self.body.clear();
        self.cfg
            .template
            .render(&mut self.body, seq, unix_nanos(), &name);
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
            url.path_for(&name),
            url.host_header,
            self.body.len()
        );
        let Some(Conn::Pub(p)) = self.conns.get_mut(key) else {
            return false;
        };
        p.request.clear();
        p.request.extend_from_slice(head.as_bytes());
        p.request.extend_from_slice(&self.body);
        p.phase = PubPhase::Sending(0);
        p.sent_at = Instant::now();
        p.channel = channel;
        p.seq = seq;
        if let Some(busy) = self.in_flight.get_mut(channel as usize) {
            *busy = true;
        }
        self.write_publisher(key);
        true
    }

    pub(crate) fn write_publisher(&mut self, key: usize) {
        let Some(Conn::Pub(p)) = self.conns.get_mut(key) else {
            return;
        };
        if matches!(p.phase, PubPhase::Connecting) {
            match connected(&p.stream) {
                Some(true) => p.phase = PubPhase::Idle,
                Some(false) => return,
                None => {
                    self.counters.publish_errors += 1;
                    p.phase = PubPhase::Closed;
                    return;
                }
            }
        }
        let PubPhase::Sending(mut done) = p.phase else {
            return;
        };
        while done < p.request.len() {
            match p.stream.write(&p.request[done..]) {
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.publisher_failed(key);
                    return;
                }
            }
        }
        p.phase = if done == p.request.len() {
            p.response.clear();
            PubPhase::Awaiting
        } else {
            PubPhase::Sending(done)
        };
    }

    pub(crate) fn read_publisher(&mut self, key: usize) {
        let mut buf = std::mem::take(&mut self.buf);
        while let Some(Conn::Pub(p)) = self.conns.get_mut(key) {
            if matches!(p.phase, PubPhase::Connecting | PubPhase::Closed) {
                break;
            }
            match p.stream.read(&mut buf) {
                Ok(0) => {
                    self.publisher_failed(key);
                    break;
                }
                Ok(n) => {
                    if !matches!(p.phase, PubPhase::Awaiting) {
                        continue;
                    }
                    p.response.extend_from_slice(&buf[..n]);
                    match parse_response_head(&p.response) {
                        Ok(None) => {}
                        Ok(Some(h)) => {
                            let body = p.response.len() - h.len;
                            let complete = match (h.chunked, h.content_length) {
                                (true, _) => p.response.ends_with(b"0\r\n\r\n"),
                                (false, Some(len)) => body >= len,
                                (false, None) => true,
                            };
                            if complete {
                                let rtt = p.sent_at.elapsed().as_nanos() as u64;
                                self.publish_rtt.saturating_record(rtt.max(1));
                                let channel = p.channel as usize;
                                if (200..300).contains(&h.status) {
                                    self.counters.published_ok += 1;
                                    if let Some(n) = self.published_per_channel.get_mut(channel) {
                                        *n += 1;
                                    }
                                    if let Some(acked) = self.acked.get_mut(channel) {
                                        acked.insert(p.seq);
                                    }
                                } else {
                                    self.counters.published_failed += 1;
                                }
                                if let Some(busy) = self.in_flight.get_mut(channel) {
                                    *busy = false;
                                }
                                p.phase = PubPhase::Idle;
                            }
                        }
                        Err(_) => {
                            self.publisher_failed(key);
                            break;
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.publisher_failed(key);
                    break;
                }
            }
        }
        self.buf = buf;
    }

    /// A publisher connection broke: count the request in flight as an error and open a replacement.
    fn publisher_failed(&mut self, key: usize) {
        if let Some(Conn::Pub(p)) = self.conns.get_mut(key) {
            if matches!(p.phase, PubPhase::Sending(_) | PubPhase::Awaiting) {
                self.counters.publish_errors += 1;
                if let Some(busy) = self.in_flight.get_mut(p.channel as usize) {
                    *busy = false;
                }
            }
            p.phase = PubPhase::Closed;
        }
        let wanted = self
            .conns
            .iter()
            .filter(|(_, c)| matches!(c, Conn::Pub(_)))
            .count();
        self.remove(key);
        if self.open_publishers(wanted).is_err() {
            self.counters.publish_errors += 1;
        }
    }
}

/// In multi-process runs the parent has no subscribers of its own, and child progress arrives every ~20 ms, so
/// the closed loop polls more often to notice it.
fn external_is_remote(subs_per_channel: &[u64], counters: &Counters) -> bool {
    counters.subscribed == 0 && subs_per_channel.iter().any(|&n| n > 0)
}
