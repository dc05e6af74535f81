//! Several spout nodes on one Redis Cluster (`--broker redis://…`), as they are deployed: a 3-master cluster and
//! 3 nodes on loopback ports, started by each test, and HAProxy in front where a test goes through a balancer.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::cluster::{balancer, start_node, RedisCluster};
use common::hook::HookServer;
use common::{
    get, publish, publish_batch, publish_id, request, require_program, signal, sse_subscribe,
    wait_for, Server,
};
use serde_json::json;

/// Whether redis-server, redis-cli (and HAProxy, when `haproxy`) are installed; under CI=true they must be.
fn have_tools(haproxy: bool) -> bool {
    require_program("redis-server")
        && require_program("redis-cli")
        && (!haproxy || common::haproxy::installed())
}

fn three_nodes(cluster: &RedisCluster, args: &[&str]) -> Vec<Server> {
    (0..3).map(|_| start_node(cluster, args)).collect()
}

/// Publishes `data` until it is answered 200 (every other answer must be a 503 from Redis being away) and
/// returns its id; fails after 30 s.
fn publish_once_back(addr: SocketAddr, channel: &str, data: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let resp = publish(addr, channel, data);
        if resp.status == 200 {
            return resp.json()["id"].as_str().expect("id").to_string();
        }
        assert_eq!(resp.status, 503, "{}", resp.text());
        assert_eq!(resp.json()["error"], "broker_unavailable");
        assert!(Instant::now() < deadline, "publishing did not come back");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Channel names whose keys live on `count` different masters.
fn channels_on_distinct_shards(cluster: &RedisCluster, count: usize) -> Vec<String> {
    let mut found: Vec<(u16, String)> = Vec::new();
    for i in 0..1000 {
        let name = format!("ch{i}");
        let master = cluster.master_of(&format!("spout:{{{name}}}"));
        if !found.iter().any(|(m, _)| *m == master) {
            found.push((master, name));
        }
        if found.len() == count {
            break;
        }
    }
    assert_eq!(found.len(), count, "not enough shards");
    found.into_iter().map(|(_, name)| name).collect()
}

#[test]
fn through_haproxy_every_subscriber_gets_every_event_byte_for_byte_whichever_node_it_is_on() {
    if !have_tools(true) {
        return;
    }
    let cluster = RedisCluster::start(3, 0);
    let nodes = three_nodes(&cluster, &[]);
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.addr).collect();
    let (_haproxy, balanced) = balancer(&addrs);
    // Round robin spreads six subscribers over the three nodes.
    let mut subs: Vec<_> = (0..6)
        .map(|_| sse_subscribe(balanced, "/sub/news", ""))
        .collect();
    for addr in &addrs {
        wait_for("two local subscribers on each node", || {
            get(*addr, "/channels/news").json()["subscribers"] == 2
        });
    }
    let mut sent = Vec::new();
    for i in 0..5 {
        let data = format!("event {i}: äöü \"quoted\"");
        let id = publish_id(balanced, "news", &data);
        sent.push(format!("id: {id}\ndata: {data}\n\n"));
    }
    let expected = sent.concat();
    for sub in &mut subs {
        let got = sub.read_until(sent.last().expect("sent").as_bytes());
        assert!(
            String::from_utf8_lossy(&got).ends_with(&expected),
            "got {:?}",
            String::from_utf8_lossy(&got)
        );
    }
    let ids: Vec<&str> = sent
        .iter()
        .map(|s| &s[4..s.find('\n').expect("line")])
        .collect();
    let mut sorted = ids.clone();
    sorted.sort_by_key(|id| id.parse::<u64>().expect("numeric id"));
    assert_eq!(ids, sorted, "ids rise in publish order");
}

#[test]
fn a_batch_over_channels_on_different_shards_reaches_subscribers_on_other_nodes() {
    if !have_tools(false) {
        return;
    }
    let cluster = RedisCluster::start(3, 0);
    let nodes = three_nodes(&cluster, &[]);
    let names = channels_on_distinct_shards(&cluster, 3);
    let mut subs: Vec<_> = names
        .iter()
        .zip(&nodes)
        .map(|(name, node)| sse_subscribe(node.addr, &format!("/sub/{name}"), ""))
        .collect();
    let events: Vec<_> = names
        .iter()
        .flat_map(|name| {
            (0..2).map(move |i| json!({"channel": name, "data": format!("{name}-{i}")}))
        })
        .collect();
    let ids = publish_batch(nodes[2].addr, &json!(events));
    assert_eq!(ids.len(), 6);
    for (i, (name, sub)) in names.iter().zip(&mut subs).enumerate() {
        let got = sub.events(2);
        assert_eq!(got[0].data, format!("{name}-0"));
        assert_eq!(got[1].data, format!("{name}-1"));
        assert_eq!(got[0].id.as_deref(), Some(ids[2 * i].as_str()));
        assert_eq!(got[1].id.as_deref(), Some(ids[2 * i + 1].as_str()));
    }
}

#[test]
fn a_subscriber_whose_node_is_killed_resumes_exactly_on_another_node() {
    if !have_tools(false) {
        return;
    }
    let cluster = RedisCluster::start(3, 0);
    let mut nodes = three_nodes(&cluster, &[]);
    let mut sub = sse_subscribe(nodes[0].addr, "/sub/orders", "");
    for i in 0..3 {
        publish_id(nodes[1].addr, "orders", &format!("o{i}"));
    }
    let seen = sub.events(3);
    let last = seen[2].id.clone().expect("id");
    signal(nodes[0].child.id(), "KILL");
    let _ = nodes[0].child.wait();
    let missed: Vec<String> = (3..7)
        .map(|i| publish_id(nodes[1].addr, "orders", &format!("o{i}")))
        .collect();
    let mut resumed = sse_subscribe(
        nodes[2].addr,
        "/sub/orders",
        &format!("Last-Event-ID: {last}\r\n"),
    );
    let got = resumed.events(4);
    let got_ids: Vec<String> = got.iter().map(|e| e.id.clone().expect("id")).collect();
    assert_eq!(got_ids, missed, "exactly the missed events, in order");
    assert!(got.iter().zip(3..).all(|(e, i)| e.data == format!("o{i}")));
    let live = publish_id(nodes[1].addr, "orders", "o7");
    assert_eq!(resumed.next_event().expect("live event").id, Some(live));
}

#[test]
fn a_stream_over_channels_on_different_shards_resumes_each_exactly_on_another_node() {
    if !have_tools(false) {
        return;
    }
    let cluster = RedisCluster::start(3, 0);
    let mut nodes = three_nodes(&cluster, &[]);
    let names = channels_on_distinct_shards(&cluster, 2);
    let path = format!("/sub/{},{}", names[0], names[1]);
    let mut sub = sse_subscribe(nodes[0].addr, &path, "");
    wait_for("the stream on node A", || {
        get(nodes[0].addr, &format!("/channels/{}", names[1])).json()["subscribers"] == 1
    });
    let first = publish_id(nodes[1].addr, &names[0], "a0");
    let second = publish_id(nodes[2].addr, &names[1], "b0");
    let seen = sub.events(2);
    // One position per channel, in the order of the path: each id says where the stream is on both.
    assert_eq!(seen[0].data, "a0");
    let (before, _) = seen[0]
        .id
        .as_deref()
        .expect("id")
        .split_once(',')
        .expect("two positions");
    assert_eq!(before, first);
    assert_eq!(
        seen[1].id.as_deref(),
        Some(format!("{first},{second}").as_str())
    );
    let last = seen[1].id.clone().expect("id");
    signal(nodes[0].child.id(), "KILL");
    let _ = nodes[0].child.wait();
    let mut missed = Vec::new();
    for i in 1..4 {
        for (name, tag) in names.iter().zip(["a", "b"]) {
            let data = format!("{tag}{i}");
            publish_id(nodes[1].addr, name, &data);
            missed.push((tag, data));
        }
    }
    let mut resumed = sse_subscribe(nodes[2].addr, &path, &format!("Last-Event-ID: {last}\r\n"));
    let got = resumed.events(missed.len());
    for tag in ["a", "b"] {
        let want: Vec<&str> = missed
            .iter()
            .filter(|(t, _)| *t == tag)
            .map(|(_, d)| d.as_str())
            .collect();
        let have: Vec<&str> = got
            .iter()
            .map(|e| e.data.as_str())
            .filter(|d| d.starts_with(tag))
            .collect();
        assert_eq!(
            have, want,
            "exactly the missed events of {tag}, in order, once"
        );
    }
    assert_eq!(got.len(), missed.len(), "nothing else: {got:?}");
    // The last replayed id resumes both channels where the replay left them: on a third node, nothing is missing
    // or repeated either.
    let resume_at = got.last().and_then(|e| e.id.clone()).expect("id");
    drop(resumed);
    let live = publish_id(nodes[2].addr, &names[1], "b4");
    let mut again = sse_subscribe(
        nodes[1].addr,
        &path,
        &format!("Last-Event-ID: {resume_at}\r\n"),
    );
    let next = again.next_event().expect("the one event since");
    assert_eq!(next.data, "b4");
    let next_id = next.id.clone().expect("id");
    assert!(next_id.ends_with(&format!(",{live}")), "{next_id}");
    // A WebSocket stream carries the same cursor in its messages' `id` (and resumes from it as a query value).
    let query = format!("{path}?last_event_id={resume_at}");
    let (mut ws, _) = common::ws_connect(nodes[2].addr, &query, "");
    let replayed = ws.next_json();
    assert_eq!(replayed["data"], "b4");
    assert_eq!(replayed["channel"], names[1].as_str());
    assert_eq!(replayed["id"].as_str(), Some(next_id.as_str()));
}

#[test]
fn subscribers_dropping_and_resuming_on_other_nodes_get_every_event_once_in_order() {
    if !have_tools(false) {
        return;
    }
    let cluster = RedisCluster::start(3, 0);
    resume_storm(&cluster, &["storm".to_string()]);
}

#[test]
fn streams_over_channels_on_several_shards_survive_the_resume_storm_exactly() {
    if !have_tools(false) {
        return;
    }
    let cluster = RedisCluster::start(3, 0);
    resume_storm(&cluster, &channels_on_distinct_shards(&cluster, 3));
}

/// Three publishers, one per node, publish round robin over `names`; four subscribers of all of `names` read a
/// few events, drop the connection and resume on another node, until each has every event. Each must get every
/// channel's events once, in the order of that channel, the same for every subscriber, and each publisher's in
/// the order it sent them.
fn resume_storm(cluster: &RedisCluster, names: &[String]) {
    let nodes = three_nodes(cluster, &[]);
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.addr).collect();
    const PER_PUBLISHER: usize = 60;
    let path = format!("/sub/{}", names.join(","));
    let subscribers: Vec<_> = (0..4)
        .map(|s| {
            let addrs = addrs.clone();
            let path = path.clone();
            std::thread::spawn(move || {
                let mut got: Vec<(String, String)> = Vec::new();
                let mut last: Option<String> = None;
                let deadline = Instant::now() + Duration::from_secs(60);
                let mut hop = s;
                while got.len() < 3 * PER_PUBLISHER {
                    assert!(Instant::now() < deadline, "resume storm took too long");
                    let header = last
                        .as_ref()
                        .map(|id| format!("Last-Event-ID: {id}\r\n"))
                        .unwrap_or_default();
                    let mut sub = sse_subscribe(addrs[hop % 3], &path, &header);
                    hop += 1;
                    // Read a few events, then drop the connection and resume elsewhere.
                    let take = (3 + hop % 7).min(3 * PER_PUBLISHER - got.len());
                    for event in sub.events(take) {
                        let id = event
                            .id
                            .clone()
                            .unwrap_or_else(|| panic!("an event without id: {event:?}"));
                        last = Some(id.clone());
                        got.push((id, event.data));
                    }
                }
                got
            })
        })
        .collect();
    // Let every subscriber open its first stream before the first event, so each must see all of them.
    for addr in &addrs {
        wait_for("the first subscribers", || {
            get(*addr, &format!("/channels/{}", names[0])).status == 200
        });
    }
    std::thread::sleep(Duration::from_millis(300));
    let publishers: Vec<_> = addrs
        .iter()
        .enumerate()
        .map(|(p, addr)| {
            let addr = *addr;
            let names = names.to_vec();
            std::thread::spawn(move || {
                for n in 0..PER_PUBLISHER {
                    let channel = &names[n % names.len()];
                    publish_id(addr, channel, &format!("{channel}:p{p}-{n}"));
                }
            })
        })
        .collect();
    for publisher in publishers {
        publisher.join().expect("publisher");
    }
    let runs: Vec<Vec<(String, String)>> = subscribers
        .into_iter()
        .map(|s| s.join().expect("subscriber"))
        .collect();
    for (at, channel) in names.iter().enumerate() {
        // A channel's events, with the stream's position on that channel after each (the whole id for one
        // channel, its `at`-th position for several).
        let of_channel = |run: &[(String, String)]| -> Vec<(u64, String)> {
            run.iter()
                .filter(|(_, data)| data.starts_with(&format!("{channel}:")))
                .map(|(id, data)| {
                    let position = id.split(',').nth(at).expect("a position per channel");
                    (position.parse().expect("numeric position"), data.clone())
                })
                .collect()
        };
        let first = of_channel(&runs[0]);
        for run in &runs {
            let events = of_channel(run);
            assert_eq!(
                events, first,
                "every subscriber sees {channel}'s events in one order"
            );
            assert!(
                events.windows(2).all(|w| w[0].0 < w[1].0),
                "no duplicate, {channel}'s positions rise"
            );
            for p in 0..3 {
                let from_p: Vec<&str> = events
                    .iter()
                    .map(|(_, data)| data.as_str())
                    .filter(|d| d.starts_with(&format!("{channel}:p{p}-")))
                    .collect();
                let expected: Vec<String> = (0..PER_PUBLISHER)
                    .filter(|n| names[n % names.len()] == *channel)
                    .map(|n| format!("{channel}:p{p}-{n}"))
                    .collect();
                assert_eq!(
                    from_p, expected,
                    "publisher {p}'s events on {channel}, each once, in its order"
                );
            }
        }
    }
}

#[test]
fn targeted_events_and_deletions_reach_every_node() {
    if !have_tools(false) {
        return;
    }
    let cluster = RedisCluster::start(3, 0);
    let nodes = three_nodes(&cluster, &[]);
    let mut ann = sse_subscribe(nodes[0].addr, "/sub/room?client_id=ann", "");
    let mut bob = sse_subscribe(nodes[1].addr, "/sub/room?client_id=bob", "");
    publish_id(nodes[2].addr, "room?to=ann", "for ann");
    publish_id(nodes[2].addr, "room", "for all");
    assert_eq!(
        ann.events(2)
            .iter()
            .map(|e| e.data.as_str())
            .collect::<Vec<_>>(),
        ["for ann", "for all"]
    );
    assert_eq!(bob.next_event().expect("event").data, "for all");

    let deleted = common::request(nodes[2].addr, "DELETE", "/channels/room", "", b"");
    assert_eq!(deleted.status, 200, "{}", deleted.text());
    for sub in [&mut ann, &mut bob] {
        let last = sub.next_event().expect("deleted event");
        assert_eq!(last.event.as_deref(), Some("deleted"));
        assert!(
            sub.next_event().is_none(),
            "the stream ends after its last channel is deleted"
        );
    }
    let again = common::request(nodes[0].addr, "DELETE", "/channels/room", "", b"");
    assert_eq!(again.status, 404, "{}", again.text());
}

#[test]
fn history_kept_in_redis_answers_resumes_with_the_documented_resets() {
    if !have_tools(false) {
        return;
    }
    let cluster = RedisCluster::start(3, 0);
    let nodes = three_nodes(&cluster, &["--history", "3"]);
    let ids: Vec<String> = (0..6)
        .map(|i| publish_id(nodes[0].addr, "ticker", &format!("t{i}")))
        .collect();
    // Only the last 3 are kept: a cursor before them gets `evicted`, then what is left.
    let mut old = sse_subscribe(
        nodes[1].addr,
        "/sub/ticker",
        &format!("Last-Event-ID: {}\r\n", ids[0]),
    );
    let got = old.events(4);
    assert_eq!(got[0].event.as_deref(), Some("reset"));
    assert!(got[0].data.contains("\"evicted\""), "{}", got[0].data);
    let data: Vec<&str> = got[1..].iter().map(|e| e.data.as_str()).collect();
    assert_eq!(data, ["t3", "t4", "t5"]);
    // An id above the last one is from the future.
    let future = format!("{}", ids[5].parse::<u64>().expect("id") + (1 << 30));
    let mut ahead = sse_subscribe(
        nodes[2].addr,
        "/sub/ticker",
        &format!("Last-Event-ID: {future}\r\n"),
    );
    let reset = ahead.next_event().expect("reset");
    assert!(reset.data.contains("\"future\""), "{}", reset.data);
}

#[test]
fn while_redis_is_down_publishes_get_503_and_health_fails_then_both_recover() {
    if !have_tools(false) {
        return;
    }
    let mut cluster = RedisCluster::start(3, 0);
    let nodes = three_nodes(&cluster, &["--broker-timeout", "1s"]);
    let mut sub = sse_subscribe(nodes[0].addr, "/sub/alerts", "");
    let before = publish_id(nodes[1].addr, "alerts", "before");
    assert_eq!(sub.next_event().expect("event").id, Some(before));

    for i in 0..3 {
        cluster.kill(i);
    }
    let refused = publish(nodes[1].addr, "alerts", "during");
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert_eq!(refused.json()["error"], "broker_unavailable");
    assert_eq!(refused.header("retry-after"), Some("1"));
    for node in &nodes {
        wait_for("health to fail", || {
            get(node.addr, "/healthz").status == 503
        });
    }

    for i in 0..3 {
        cluster.restart(i);
    }
    cluster.wait_ok();
    for node in &nodes {
        wait_for("health to recover", || {
            get(node.addr, "/healthz").status == 200
        });
    }
    // The subscriber stayed connected; its node subscribes the channel again and it gets what is published next.
    let after = publish_once_back(nodes[2].addr, "alerts", "after");
    let next = sub.next_event().expect("event after the outage");
    assert_eq!((next.id, next.data.as_str()), (Some(after), "after"));
}

#[test]
fn subscribes_waiting_on_a_dead_shard_hold_up_neither_subscribes_nor_publishes_on_the_others() {
    if !have_tools(false) {
        return;
    }
    let mut cluster = RedisCluster::start(3, 0);
    let node = start_node(&cluster, &["--broker-timeout", "3s"]);
    let names = channels_on_distinct_shards(&cluster, 2);
    let (dead, alive) = (names[0].as_str(), names[1].as_str());
    let dead_port = cluster.master_of(&format!("spout:{{{dead}}}"));
    let index = cluster
        .ports
        .iter()
        .position(|p| *p == dead_port)
        .expect("a master");
    cluster.kill(index);

    // Each of these parks while the node tries to follow and read a channel on the dead shard.
    let waiting: Vec<std::net::TcpStream> = (0..3)
        .map(|_| {
            let mut stream = common::connect(node.addr);
            let head = format!("GET /sub/{dead} HTTP/1.1\r\nHost: t\r\n\r\n");
            std::io::Write::write_all(&mut stream, head.as_bytes()).expect("send");
            stream
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));

    let started = Instant::now();
    let mut sub = sse_subscribe(node.addr, &format!("/sub/{alive}"), "");
    let subscribed_in = started.elapsed();
    let id = publish_id(node.addr, alive, "through");
    let event = sub.next_event().expect("event");
    let delivered_in = started.elapsed();
    assert_eq!((event.id, event.data.as_str()), (Some(id), "through"));
    assert!(
        subscribed_in < Duration::from_secs(1) && delivered_in < Duration::from_secs(2),
        "subscribed in {subscribed_in:?}, delivered in {delivered_in:?}, behind the dead shard's subscribes"
    );

    for stream in waiting {
        let response = common::read_response(&mut std::io::BufReader::new(stream), false);
        assert_eq!(response.status, 503, "{}", response.text());
        assert_eq!(response.json()["error"], "broker_unavailable");
    }
}

#[test]
fn when_a_master_dies_its_replica_takes_over_and_publishing_and_delivery_resume() {
    if !have_tools(false) {
        return;
    }
    let mut cluster = RedisCluster::start(3, 1);
    let nodes = three_nodes(&cluster, &["--broker-timeout", "1s"]);
    let mut sub = sse_subscribe(nodes[0].addr, "/sub/failover", "");
    let first = publish_id(nodes[1].addr, "failover", "before");
    assert_eq!(sub.next_event().expect("event").id, Some(first));

    let master = cluster.master_of("spout:{failover}");
    let index = cluster
        .ports
        .iter()
        .position(|p| *p == master)
        .expect("master");
    cluster.kill(index);
    let killed = Instant::now();
    // Publishing answers 503 until the replica is promoted, then 200 again by itself.
    let after = publish_once_back(nodes[1].addr, "failover", "after");
    eprintln!(
        "publishing resumed {:?} after the master was killed",
        killed.elapsed()
    );
    let next = sub.next_event().expect("event after the failover");
    assert_eq!((next.id, next.data.as_str()), (Some(after), "after"));
}

#[test]
fn every_node_shows_the_subscribers_of_all_nodes_and_a_killed_nodes_leave_after_their_ttl() {
    if !have_tools(false) {
        return;
    }
    let cluster = RedisCluster::start(3, 0);
    let mut nodes = three_nodes(&cluster, &["--broker-node-ttl", "2s"]);
    let _ann = sse_subscribe(nodes[0].addr, "/sub/lobby?client_id=ann", "");
    let bob = sse_subscribe(nodes[1].addr, "/sub/lobby?client_id=bob", "");
    let _carol: Vec<_> = (0..2)
        .map(|_| sse_subscribe(nodes[2].addr, "/sub/lobby?client_id=carol", ""))
        .collect();
    let seen = |addr: SocketAddr| {
        let info = get(addr, "/channels/lobby").json();
        (info["subscribers"].as_u64(), info["client_ids"].clone())
    };
    for node in &nodes {
        wait_for("every node's subscribers on every node", || {
            seen(node.addr) == (Some(4), json!(["ann", "bob", "carol"]))
        });
    }
    drop(bob);
    wait_for("bob to leave", || {
        seen(nodes[0].addr) == (Some(3), json!(["ann", "carol"]))
    });
    let id = publish_id(nodes[1].addr, "lobby", "hello");
    let info = get(nodes[1].addr, "/channels/lobby").json();
    assert_eq!(info["last_id"], json!(id));
    assert_eq!(info["retained"], 1);

    signal(nodes[0].child.id(), "KILL");
    let _ = nodes[0].child.wait();
    wait_for("the killed node's subscriber to expire", || {
        seen(nodes[2].addr) == (Some(2), json!(["carol"]))
    });
    assert_eq!(get(nodes[2].addr, "/channels/nowhere").status, 404);
}

#[test]
fn with_wait_replicas_a_publish_is_answered_once_a_replica_has_it_and_refused_without_one() {
    if !have_tools(false) {
        return;
    }
    let cluster = RedisCluster::start(3, 1);
    let node = start_node(&cluster, &["--broker-wait-replicas", "1"]);
    publish_id(node.addr, "durable", "kept");
    let master = cluster.master_of("spout:{durable}");
    let replica = *cluster.replicas_of(master).first().expect("a replica");
    // Read on the replica itself (READONLY), right after the answer: it already has the event.
    let mut cli = std::process::Command::new("redis-cli")
        .args(["-p", &replica.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("redis-cli");
    use std::io::Write as _;
    cli.stdin
        .take()
        .expect("stdin")
        .write_all(b"READONLY\nXLEN spout:{durable}:h\n")
        .expect("write");
    let out = cli.wait_with_output().expect("redis-cli output");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "OK\n1");

    let lonely = RedisCluster::start(3, 0);
    let node = start_node(
        &lonely,
        &["--broker-wait-replicas", "1", "--broker-timeout", "500ms"],
    );
    let refused = publish(node.addr, "durable", "not kept twice");
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert_eq!(refused.json()["error"], "broker_unavailable");
}

#[test]
fn nodes_sharing_one_redis_not_in_cluster_mode_share_channels_resume_and_survive_its_restart() {
    if !have_tools(false) {
        return;
    }
    let mut redis = RedisCluster::standalone();
    let mut nodes: Vec<Server> = (0..2)
        .map(|_| start_node(&redis, &["--broker-timeout", "1s"]))
        .collect();
    let mut sub = sse_subscribe(nodes[0].addr, "/sub/news,sport", "");
    wait_for("the stream on node A", || {
        get(nodes[1].addr, "/channels/sport").json()["subscribers"] == 1
    });
    let news = publish_id(nodes[1].addr, "news", "n0");
    let sport = publish_id(nodes[1].addr, "sport", "s0");
    let seen = sub.events(2);
    assert_eq!(seen[1].id, Some(format!("{news},{sport}")));

    // Redis restarts (from its append-only file): publishing comes back, and the open stream gets what follows.
    redis.kill(0);
    wait_for("health to fail", || {
        get(nodes[0].addr, "/healthz").status == 503
    });
    redis.restart(0);
    for node in &nodes {
        wait_for("health to recover", || {
            get(node.addr, "/healthz").status == 200
        });
    }
    let after = publish_once_back(nodes[1].addr, "news", "n1");
    let next = sub.next_event().expect("event after the restart");
    assert_eq!(
        (next.id, next.data.as_str()),
        (Some(format!("{after},{sport}")), "n1")
    );

    // Node A dies; its client resumes on node B exactly.
    signal(nodes[0].child.id(), "KILL");
    let _ = nodes[0].child.wait();
    let missed = publish_id(nodes[1].addr, "sport", "s1");
    let last = format!("{after},{sport}");
    let mut resumed = sse_subscribe(
        nodes[1].addr,
        "/sub/news,sport",
        &format!("Last-Event-ID: {last}\r\n"),
    );
    let got = resumed.next_event().expect("the missed event");
    assert_eq!(
        (got.id, got.data.as_str()),
        (Some(format!("{after},{missed}")), "s1")
    );
    assert_eq!(
        request(nodes[1].addr, "DELETE", "/channels/news", "", b"").status,
        200
    );
    let deleted = resumed.next_event().expect("deleted");
    assert_eq!(deleted.event.as_deref(), Some("deleted"));
}

#[test]
fn every_node_lists_the_channels_with_history_or_subscribers_on_any_node() {
    if !have_tools(false) {
        return;
    }
    let cluster = RedisCluster::start(3, 0);
    let nodes = three_nodes(&cluster, &[]);
    // History only, published on node A; a subscriber only, on node B; both on node C.
    publish_id(nodes[0].addr, "kept", "k0");
    let _live = sse_subscribe(nodes[1].addr, "/sub/watched", "");
    let _both = sse_subscribe(nodes[2].addr, "/sub/kept", "");
    let listing = |addr: SocketAddr, query: &str| -> serde_json::Value {
        let resp = get(addr, &format!("/channels{query}"));
        assert_eq!(resp.status, 200, "{}", resp.text());
        resp.json()
    };
    let expected = json!([
        {"channel": "kept", "subscribers": 1, "retained": 1},
        {"channel": "watched", "subscribers": 1, "retained": 0},
    ]);
    for node in &nodes {
        wait_for("every node to list both channels", || {
            listing(node.addr, "")["channels"] == expected
        });
    }
    // A page at a time, from another node than the one that gave the cursor.
    let first = listing(nodes[0].addr, "?limit=1");
    assert_eq!(first["channels"], json!([expected[0]]));
    let next = first["next"].as_str().expect("a next page");
    let second = listing(nodes[1].addr, &format!("?limit=1&cursor={next}"));
    assert_eq!(second["channels"], json!([expected[1]]));
    // A deleted channel with no subscriber left is listed nowhere.
    drop(_both);
    assert_eq!(
        request(nodes[1].addr, "DELETE", "/channels/kept", "", b"").status,
        200
    );
    for node in &nodes {
        wait_for("the deleted channel to leave every listing", || {
            listing(node.addr, "")["channels"] == json!([expected[1]])
        });
    }
}

#[test]
fn concurrent_publishes_on_one_node_each_get_their_own_receipts_and_every_event_arrives_once() {
    if !have_tools(false) {
        return;
    }
    let cluster = RedisCluster::start(3, 0);
    let nodes = three_nodes(&cluster, &[]);
    let mut sub = sse_subscribe(nodes[0].addr, "/sub/busy", "");
    wait_for("the subscriber", || {
        get(nodes[1].addr, "/channels/busy").json()["subscribers"] == 1
    });
    // Eight keep-alive publishers at once on node B: their requests queue up together at its broker thread.
    let publishers: Vec<_> = (0..8)
        .map(|p| {
            let addr = nodes[1].addr;
            std::thread::spawn(move || {
                let mut conn = common::KeepAlive::new(addr);
                (0..25)
                    .map(|n| {
                        let data = format!("p{p}-{n}");
                        (conn.publish_id("busy", &data), data)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut sent: Vec<(u64, String)> = publishers
        .into_iter()
        .flat_map(|p| p.join().expect("publisher"))
        .map(|(id, data)| (id.parse().expect("numeric id"), data))
        .collect();
    sent.sort();
    sent.dedup_by_key(|(id, _)| *id);
    assert_eq!(sent.len(), 200, "every publish has an id of its own");
    let got: Vec<(u64, String)> = sub
        .events(200)
        .into_iter()
        .map(|e| (e.id.expect("id").parse().expect("numeric id"), e.data))
        .collect();
    assert_eq!(
        got, sent,
        "each event once, in id order, with the data its receipt names"
    );
}

/// With `--auth hook` and Redis, a subscribe to a channel not yet fed on the node parks twice, for the hook and
/// then for Redis: the hook's verdict stays with the request, so the hook is asked once, and the stream opens with
/// the client id the hook set.
#[test]
fn a_subscribe_checked_by_the_auth_hook_then_warmed_from_redis_asks_the_hook_once() {
    if !have_tools(false) {
        return;
    }
    let hook = HookServer::start(|_| {
        let allowed = json!({"client_id": "hooked-1"}).to_string();
        (200, allowed, Duration::ZERO)
    });
    let cluster = RedisCluster::start(3, 0);
    let url = hook.url();
    let node = start_node(&cluster, &["--auth", "hook", "--auth-hook", &url]);
    let other = start_node(&cluster, &[]);
    let mut sub = sse_subscribe(node.addr, "/sub/cold-channel", "");
    assert_eq!(sub.response.header("spout-client-id"), Some("hooked-1"));
    assert_eq!(hook.requests().len(), 1, "{:?}", hook.requests());
    let id = publish_id(other.addr, "cold-channel", "across nodes");
    let got = sub.events(1);
    assert_eq!(got[0].data, "across nodes");
    assert_eq!(got[0].id.as_deref(), Some(id.as_str()));
}
