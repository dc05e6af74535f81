//! The channel table's behaviour, through its public operations: sequencing, subscribe and replay, retention
//! and its resets, limits.

use super::*;
use std::time::UNIX_EPOCH;

fn table(history: usize, max_bytes: usize) -> (ChannelTable, Bus, Vec<crate::bus::Inbox>) {
    let limits = TableLimits {
        history,
        history_ttl: Duration::from_secs(3600),
        history_max_bytes: max_bytes,
        max_channels: 100,
        max_channels_per_client: None,
        workers: 2,
    };
    let t0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let (bus, inboxes) = Bus::for_tests(2, 16);
    (ChannelTable::new(limits, t0), bus, inboxes)
}

fn event(channel: &str, data: &str) -> NewEvent {
    NewEvent {
        channel: channel.into(),
        event: None,
        data: data.into(),
        to: None,
        ..Default::default()
    }
}

fn publish(t: &ChannelTable, bus: &Bus, channel: &str, data: &str) -> EventId {
    t.publish(
        vec![event(channel, data)],
        bus,
        SystemTime::now(),
        Instant::now(),
    )
    .expect("publish")[0]
        .id
}

fn replay_all(
    t: &ChannelTable,
    sub: &mut Subscription,
    client: &str,
    budget: usize,
) -> (Vec<String>, Vec<ResetNotice>) {
    let mut cursor = sub.replay.take().expect("resuming");
    let (mut data, mut resets) = (Vec::new(), Vec::new());
    loop {
        let mut out = Vec::new();
        let step = t.replay(&sub.channels, client, &mut cursor, budget, &mut out);
        data.extend(out.iter().map(|m| m.data.to_string()));
        // What a stream does with a per-channel cursor once it has queued the step's events.
        for (channel, reached) in sub.channels.iter_mut().zip(step.reached) {
            channel.since = reached;
        }
        resets.extend(step.reset);
        if step.done {
            return (data, resets);
        }
    }
}

#[test]
fn publish_reaches_only_workers_with_subscribers_in_id_order() {
    let (t, bus, inboxes) = table(10, 1 << 20);
    t.subscribe(1, &["a"], "c1", Resume::Fresh, None)
        .expect("subscribe");
    let first = publish(&t, &bus, "a", "1");
    let second = publish(&t, &bus, "a", "2");
    assert!(first < second);
    assert!(inboxes[0].is_empty());
    let ids: Vec<EventId> = inboxes[1]
        .try_iter()
        .map(|m| match m {
            WorkerMsg::Publish(m) => m.id,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(ids, vec![first, second]);
}

#[test]
fn resume_replays_exactly_the_missed_events_across_channels_in_order() {
    let (t, bus, _inboxes) = table(10, 1 << 20);
    let first = publish(&t, &bus, "a", "a1");
    publish(&t, &bus, "b", "b1");
    publish(&t, &bus, "a", "a2");
    publish(&t, &bus, "c", "c1");
    publish(&t, &bus, "b", "b2");
    let mut sub = t
        .subscribe(0, &["a", "b"], "c1", Resume::After(first), None)
        .expect("subscribe");
    for budget in [0, 1, 1000] {
        let mut again = Subscription {
            channels: sub.channels.clone(),
            head: sub.head,
            replay: sub.replay.clone(),
        };
        let (data, resets) = replay_all(&t, &mut again, "c1", budget);
        assert_eq!(data, ["b1", "a2", "b2"], "budget {budget}");
        assert!(resets.is_empty());
    }
    let (_, _) = replay_all(&t, &mut sub, "c1", 10);
}

#[test]
fn without_history_a_resume_past_a_missed_event_is_reset_not_silent() {
    let (t, bus, _inboxes) = table(0, 1 << 20);
    let watcher = t
        .subscribe(0, &["a"], "w", Resume::Fresh, None)
        .expect("subscribe");
    let seen = publish(&t, &bus, "a", "seen");
    let mut quiet = t
        .subscribe(0, &["a"], "c", Resume::After(seen), None)
        .expect("subscribe");
    let (data, resets) = replay_all(&t, &mut quiet, "c", 10);
    assert!(
        data.is_empty() && resets.is_empty(),
        "nothing was missed: {resets:?}"
    );
    publish(&t, &bus, "a", "missed");
    let mut behind = t
        .subscribe(0, &["a"], "c", Resume::After(seen), None)
        .expect("subscribe");
    let (data, resets) = replay_all(&t, &mut behind, "c", 10);
    assert!(data.is_empty());
    assert_eq!(resets.len(), 1);
    assert_eq!(resets[0].reason, ResetReason::Evicted);
    assert_eq!(&*resets[0].channels[0], "a");
    drop(watcher);
}

#[test]
fn a_channel_named_twice_is_subscribed_once() {
    let (t, _bus, _inboxes) = table(10, 1 << 20);
    let sub = t
        .subscribe(0, &["a", "b", "a"], "c", Resume::Fresh, None)
        .expect("subscribe");
    let names: Vec<&str> = sub.channels.iter().map(|c| &*c.name).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(t.info("a").map(|i| i.subscribers), Some(1));
}

#[test]
fn targeted_events_replay_only_to_their_addressees() {
    let (t, bus, _inboxes) = table(10, 1 << 20);
    let before = publish(&t, &bus, "a", "open");
    let to = Some(vec![Box::from("alice")].into_boxed_slice());
    t.publish(
        vec![NewEvent {
            channel: "a".into(),
            event: None,
            data: "secret".into(),
            to,
            ..Default::default()
        }],
        &bus,
        SystemTime::now(),
        Instant::now(),
    )
    .expect("publish");
    for (client, expected) in [("alice", vec!["secret"]), ("bob", vec![])] {
        let mut sub = t
            .subscribe(0, &["a"], client, Resume::After(before), None)
            .expect("subscribe");
        assert_eq!(replay_all(&t, &mut sub, client, 100).0, expected);
    }
}

#[test]
fn eviction_by_count_is_reported_once_then_the_rest_replays() {
    let (t, bus, _inboxes) = table(2, 1 << 20);
    let first = publish(&t, &bus, "a", "1");
    for d in ["2", "3", "4"] {
        publish(&t, &bus, "a", d);
    }
    let mut sub = t
        .subscribe(0, &["a", "b"], "c", Resume::After(first), None)
        .expect("subscribe");
    let (data, resets) = replay_all(&t, &mut sub, "c", 0);
    assert_eq!(data, ["3", "4"]);
    assert_eq!(
        resets,
        vec![ResetNotice {
            reason: ResetReason::Evicted,
            channels: vec!["a".into()]
        }]
    );
}

#[test]
fn byte_limit_evicts_oldest_across_channels() {
    let (t, bus, _inboxes) = table(100, 1);
    let first = publish(&t, &bus, "a", "1");
    publish(&t, &bus, "b", "2");
    assert_eq!(t.stats().retained_events, 0);
    let mut sub = t
        .subscribe(0, &["b"], "c", Resume::After(first), None)
        .expect("subscribe");
    let (data, resets) = replay_all(&t, &mut sub, "c", 100);
    assert!(data.is_empty());
    assert_eq!(resets[0].reason, ResetReason::Evicted);
}

#[test]
fn expiry_and_deletion_and_bad_ids_reset() {
    let (t, bus, _inboxes) = table(100, 1 << 20);
    let first = publish(&t, &bus, "a", "1");
    publish(&t, &bus, "a", "2");
    t.expire(Instant::now() + Duration::from_secs(7200));
    let mut sub = t
        .subscribe(0, &["a"], "c", Resume::After(first), None)
        .expect("subscribe");
    assert_eq!(
        replay_all(&t, &mut sub, "c", 100).1[0].reason,
        ResetReason::Expired
    );

    let before_delete = publish(&t, &bus, "d", "x");
    publish(&t, &bus, "d", "y");
    assert!(t.delete("d", &bus));
    assert!(!t.delete("d", &bus));
    let mut sub = t
        .subscribe(0, &["d"], "c", Resume::After(before_delete), None)
        .expect("subscribe");
    assert_eq!(
        replay_all(&t, &mut sub, "c", 100).1[0].reason,
        ResetReason::Deleted
    );

    let head = publish(&t, &bus, "e", "z");
    for (resume, reason) in [
        (Resume::Unparseable, ResetReason::Invalid),
        (
            Resume::After(EventId::parse("18446744073709551615").unwrap_or(head)),
            ResetReason::Future,
        ),
        (
            Resume::After(EventId::parse("5").expect("id")),
            ResetReason::Restart,
        ),
    ] {
        let mut sub = t
            .subscribe(0, &["e"], "c", resume, None)
            .expect("subscribe");
        let (data, resets) = replay_all(&t, &mut sub, "c", 100);
        assert_eq!(resets[0].reason, reason);
        assert_eq!(data, ["z"], "{reason:?} replays what is left");
    }
}

#[test]
fn no_reset_when_nothing_was_lost() {
    let (t, bus, _inboxes) = table(100, 1 << 20);
    let first = publish(&t, &bus, "a", "1");
    let mut sub = t
        .subscribe(0, &["a", "new"], "c", Resume::After(first), None)
        .expect("subscribe");
    let (data, resets) = replay_all(&t, &mut sub, "c", 100);
    assert!(data.is_empty() && resets.is_empty());
}

#[test]
fn unsubscribing_the_last_subscriber_of_an_empty_channel_removes_it() {
    let (t, _bus, _inboxes) = table(100, 1 << 20);
    let sub = t
        .subscribe(1, &["a", "b"], "c", Resume::Fresh, None)
        .expect("subscribe");
    assert_eq!(t.stats().channels, 2);
    assert_eq!(
        t.info("a").map(|i| i.client_ids),
        Some(vec![Box::from("c")])
    );
    t.unsubscribe(1, &sub.channels, "c");
    assert_eq!(t.stats().channels, 0);
}

#[test]
fn channel_limit_is_enforced_for_subscribe_and_publish() {
    let (t, bus, _inboxes) = table(100, 1 << 20);
    let names: Vec<String> = (0..100).map(|i| format!("c{i}")).collect();
    let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    t.subscribe(0, &refs, "c", Resume::Fresh, None)
        .expect("subscribe");
    assert_eq!(
        t.subscribe(0, &["one-more"], "c", Resume::Fresh, None)
            .err(),
        Some(TableError::TooManyChannels)
    );
    let err = t
        .publish(
            vec![event("one-more", "x")],
            &bus,
            SystemTime::now(),
            Instant::now(),
        )
        .err();
    assert_eq!(err, Some(TableError::TooManyChannels));
    let ephemeral = NewEvent {
        ephemeral: true,
        ..event("one-more", "x")
    };
    t.publish(vec![ephemeral], &bus, SystemTime::now(), Instant::now())
        .expect(
            "an unretained event to a missing channel creates nothing, so the limit does not apply",
        );
    assert_eq!(t.stats().channels, 100);
}

#[test]
fn an_unretained_event_to_a_missing_channel_needs_no_room_in_a_full_table() {
    let (t, bus, _inboxes) = table(100, 1 << 20);
    let names: Vec<String> = (0..100).map(|i| format!("c{i}")).collect();
    let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    t.subscribe(0, &refs, "c", Resume::Fresh, None)
        .expect("subscribe");
    let ephemeral = NewEvent {
        ephemeral: true,
        ..event("nobody-listens", "x")
    };
    t.publish(vec![ephemeral], &bus, SystemTime::now(), Instant::now())
        .expect("nothing is created, so nothing is refused");
    assert_eq!(t.stats().channels, 100);
}

#[test]
fn a_full_inbox_refuses_the_whole_batch() {
    let (t, bus, _inboxes) = table(100, 1 << 20);
    t.subscribe(0, &["a"], "c", Resume::Fresh, None)
        .expect("subscribe");
    let batch = (0..17).map(|_| event("a", "x")).collect();
    assert_eq!(
        t.publish(batch, &bus, SystemTime::now(), Instant::now())
            .err(),
        Some(TableError::Overloaded)
    );
    assert_eq!(t.stats().published, 0);
    assert_eq!(t.stats().overloaded, 1);
}

#[test]
fn order_queue_stays_bounded_under_per_channel_trimming() {
    let (t, bus, _inboxes) = table(1, usize::MAX);
    for i in 0..10_000 {
        publish(&t, &bus, "a", &i.to_string());
    }
    let st = t.lock();
    assert!(
        st.history.order_len() <= 1 + 1024 + 1,
        "order grew to {}",
        st.history.order_len()
    );
}

#[test]
fn listing_pages_walk_names_in_order_within_their_bounds() {
    let (t, bus, _inboxes) = table(10, 1 << 20);
    for name in ["d", "a", "x/1", "c", "b", "x/2", "e"] {
        publish(&t, &bus, name, "1");
    }
    let names = |page: &ChannelPage| -> Vec<String> {
        page.channels.iter().map(|c| c.name.to_string()).collect()
    };
    let native = |name: &str| !name.contains('/');
    let first = t.list_page(None, 2, 100, native);
    assert_eq!(names(&first), ["a", "b"]);
    assert_eq!(first.next_after.as_deref(), Some("b"));
    let second = t.list_page(Some("b"), 2, 100, native);
    assert_eq!(names(&second), ["c", "d"]);
    let third = t.list_page(Some("d"), 2, 100, native);
    assert_eq!(names(&third), ["e"]);
    // The filtered names after "e" were looked at: nothing remains.
    assert_eq!(third.next_after, None);
    // The scan bound ends a page early, empty even, and says where to go on.
    let bounded = t.list_page(Some("e"), 2, 1, native);
    assert!(bounded.channels.is_empty());
    assert_eq!(bounded.next_after.as_deref(), Some("x/1"));
    let rest = t.list_page(Some("x/1"), 2, 1, native);
    assert!(rest.channels.is_empty());
    assert_eq!(rest.next_after, None);
    // A cursor need not name a channel that exists (any more).
    assert_eq!(
        names(&t.list_page(Some("bb"), 10, 100, native)),
        ["c", "d", "e"]
    );
    // Removed channels leave the listing.
    assert!(t.delete("c", &bus));
    assert_eq!(
        names(&t.list_page(None, 10, 100, native)),
        ["a", "b", "d", "e"]
    );
    assert_eq!(t.list_page(None, 10, 100, |_| true).channels.len(), 6);
}

#[test]
fn channels_a_client_creates_count_against_it_until_removed() {
    let limits = TableLimits {
        history: 10,
        history_ttl: Duration::from_secs(3600),
        history_max_bytes: 1 << 20,
        max_channels: 100,
        max_channels_per_client: Some(2),
        workers: 2,
    };
    let (bus, _inboxes) = Bus::for_tests(2, 16);
    let t = ChannelTable::new(limits, UNIX_EPOCH + Duration::from_secs(1_700_000_000));
    let a: std::net::IpAddr = "192.0.2.1".parse().unwrap();
    let b: std::net::IpAddr = "::ffff:192.0.2.2".parse().unwrap();
    let sub = t
        .subscribe(0, &["a1", "a2"], "c", Resume::Fresh, Some(a))
        .expect("two channels");
    assert_eq!(
        t.subscribe(0, &["a3"], "c", Resume::Fresh, Some(a)).err(),
        Some(TableError::ClientChannelLimit)
    );
    // Subscribing to channels that exist creates nothing; another client has its own count.
    t.subscribe(0, &["a1"], "d", Resume::Fresh, Some(a))
        .expect("existing channel");
    t.subscribe(0, &["a3", "b2"], "e", Resume::Fresh, Some(b))
        .expect("another client");
    // A publish that would create a channel counts too (all or nothing); one without a creator does not.
    let mut event = event("a4", "x");
    event.creator = Some(a);
    assert_eq!(
        t.publish(vec![event], &bus, UNIX_EPOCH, Instant::now())
            .err(),
        Some(TableError::ClientChannelLimit)
    );
    publish(&t, &bus, "free", "x");
    // A removed channel stops counting: a1 and a2 go when their last subscriber leaves (no history in them).
    t.unsubscribe(0, &sub.channels, "c");
    t.subscribe(0, &["a5"], "c", Resume::Fresh, Some(a))
        .expect("a2 was removed, a1 is still subscribed by d");
    assert!(t.delete("a1", &bus));
    t.subscribe(0, &["a6"], "c", Resume::Fresh, Some(a))
        .expect("a1 was deleted");
}

// ---- channels fed by the Redis broker (`fed`) ----------------------------------------------------------------

fn fed(id: u64, data: &str) -> FedEvent {
    FedEvent {
        id: EventId::from_stream_id(&format!("{id}-0")).expect("id"),
        event: event("news", data),
        at: Instant::now(),
    }
}

fn sid(id: u64) -> EventId {
    EventId::from_stream_id(&format!("{id}-0")).expect("id")
}

/// Subscribes on fed channels; `None` when the broker must warm some first.
fn subscribe_fed(
    t: &ChannelTable,
    worker: usize,
    wanted: &[(&str, Resume)],
    client: &str,
    just_read: bool,
) -> Option<Subscription> {
    match t
        .subscribe_fed(worker, wanted, client, just_read, None)
        .expect("subscribe")
    {
        FedSubscribe::Subscribed(sub) => Some(sub),
        FedSubscribe::Warm(_) => None,
    }
}

fn fill_with(events: Vec<FedEvent>, last: u64, lost: Option<(EventId, ResetReason)>) -> Fill {
    Fill {
        last: Some(sid(last)),
        events,
        lost,
    }
}

#[test]
fn a_fed_channel_takes_subscribers_only_from_where_it_is_held() {
    let (t, bus, _inboxes) = table(10, 1 << 20);
    assert!(subscribe_fed(&t, 0, &[("news", Resume::Fresh)], "a", false).is_none());
    t.fill(
        "news",
        Some(sid(5)),
        fill_with(vec![fed(6, "six")], 6, None),
        &bus,
        None,
    )
    .expect("fill");
    // Held from 5 on: a cursor before it needs another read, one after the head may still be on its way.
    for cursor in [4, 7] {
        assert!(
            subscribe_fed(&t, 0, &[("news", Resume::After(sid(cursor)))], "a", false).is_none()
        );
    }
    let mut future =
        subscribe_fed(&t, 0, &[("news", Resume::After(sid(7)))], "a", true).expect("held");
    let (_, resets) = replay_all(&t, &mut future, "a", 1 << 20);
    assert_eq!(resets.first().map(|r| r.reason), Some(ResetReason::Future));
    let mut sub =
        subscribe_fed(&t, 0, &[("news", Resume::After(sid(5)))], "b", false).expect("held");
    assert_eq!(sub.channels[0].since, sid(5));
    let (data, resets) = replay_all(&t, &mut sub, "b", 1 << 20);
    assert_eq!(data, ["six"]);
    assert!(resets.is_empty());
}

#[test]
fn live_events_already_read_are_dropped_and_older_reads_go_in_front() {
    let (t, bus, inboxes) = table(10, 1 << 20);
    t.fill(
        "news",
        Some(sid(3)),
        fill_with(vec![fed(4, "4"), fed(5, "5")], 5, None),
        &bus,
        None,
    )
    .expect("fill");
    let _sub = subscribe_fed(&t, 1, &[("news", Resume::Fresh)], "a", false).expect("held");
    // 5 came in the read and again live; 6 is new.
    t.feed("news", vec![fed(5, "5"), fed(6, "6")], &bus);
    let live: Vec<String> = inboxes[1]
        .try_iter()
        .filter_map(|m| match m {
            WorkerMsg::Publish(m) => Some(m.data.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(live, ["6"]);
    // A subscriber from 1 makes the broker read from 1: 2 and 3 go in front, nothing is sent live twice.
    t.fill(
        "news",
        Some(sid(1)),
        fill_with(vec![fed(2, "2"), fed(3, "3"), fed(4, "4")], 6, None),
        &bus,
        None,
    )
    .expect("fill");
    assert_eq!(inboxes[1].try_iter().count(), 0);
    let mut sub =
        subscribe_fed(&t, 0, &[("news", Resume::After(sid(1)))], "b", false).expect("held");
    let (data, _) = replay_all(&t, &mut sub, "b", 1 << 20);
    assert_eq!(data, ["2", "3", "4", "5", "6"]);
}

#[test]
fn what_redis_trimmed_after_a_cursor_is_reported_and_an_idle_fed_channel_retires() {
    let (t, bus, _inboxes) = table(10, 1 << 20);
    let lost = Some((sid(4), ResetReason::Evicted));
    t.fill(
        "news",
        Some(sid(2)),
        fill_with(vec![fed(5, "5")], 5, lost),
        &bus,
        None,
    )
    .expect("fill");
    let mut sub =
        subscribe_fed(&t, 0, &[("news", Resume::After(sid(2)))], "a", false).expect("held");
    let (data, resets) = replay_all(&t, &mut sub, "a", 1 << 20);
    assert_eq!(data, ["5"]);
    assert_eq!(resets.first().map(|r| r.reason), Some(ResetReason::Evicted));
    assert!(!t.retire("news"), "a subscriber holds it");
    t.unsubscribe(0, &sub.channels, "a");
    assert!(t.retire("news"));
    assert_eq!(t.fed_head("news"), None);
}

#[test]
fn a_stream_over_fed_channels_resumes_each_channel_from_its_own_position() {
    let (t, bus, _inboxes) = table(10, 1 << 20);
    let on = |channel: &str, id: u64, data: &str| FedEvent {
        id: sid(id),
        event: event(channel, data),
        at: Instant::now(),
    };
    // Two shards, two clocks: sport's ids run behind news's.
    t.fill(
        "news",
        Some(sid(10)),
        fill_with(vec![on("news", 11, "n11"), on("news", 12, "n12")], 12, None),
        &bus,
        None,
    )
    .expect("fill");
    let wanted = [
        ("news", Resume::After(sid(10))),
        ("sport", Resume::After(sid(3))),
    ];
    match t
        .subscribe_fed(0, &wanted, "a", false, None)
        .expect("subscribe")
    {
        FedSubscribe::Warm(cold) => assert_eq!(cold, vec![("sport".into(), Some(sid(3)))]),
        FedSubscribe::Subscribed(_) => panic!("sport is not held yet"),
    }
    assert_eq!(t.fed_head("sport"), None, "nothing was registered");
    t.fill(
        "sport",
        Some(sid(3)),
        fill_with(vec![on("sport", 4, "s4"), on("sport", 5, "s5")], 5, None),
        &bus,
        None,
    )
    .expect("fill");
    // A cursor of 10 on sport would replay nothing of it: each channel has its own.
    let mut sub = subscribe_fed(&t, 0, &wanted, "a", true).expect("held");
    assert_eq!(sub.head, EventId::ZERO);
    let (data, resets) = replay_all(&t, &mut sub, "a", 1);
    assert_eq!(data, ["s4", "s5", "n11", "n12"]);
    assert!(resets.is_empty());
    let positions: Vec<EventId> = sub.channels.iter().map(|c| c.since).collect();
    assert_eq!(positions, [sid(12), sid(5)]);
}

#[test]
fn fed_channels_a_subscribe_makes_count_against_its_client() {
    let limits = TableLimits {
        history: 10,
        history_ttl: Duration::from_secs(3600),
        history_max_bytes: 1 << 20,
        max_channels: 100,
        max_channels_per_client: Some(1),
        workers: 2,
    };
    let t = ChannelTable::new(limits, UNIX_EPOCH);
    let (bus, _inboxes) = Bus::for_tests(2, 16);
    let ip: IpAddr = "192.0.2.7".parse().expect("ip");
    let two = [("x", Resume::Fresh), ("y", Resume::Fresh)];
    assert_eq!(
        t.subscribe_fed(0, &two, "c", false, Some(ip)).err(),
        Some(TableError::ClientChannelLimit),
        "two new channels for a client allowed one"
    );
    assert!(matches!(
        t.subscribe_fed(0, &two[..1], "c", false, Some(ip)),
        Ok(FedSubscribe::Warm(_))
    ));
    t.fill("x", None, fill_with(Vec::new(), 1, None), &bus, Some(ip))
        .expect("fill");
    assert_eq!(
        t.subscribe_fed(0, &two[1..], "c", false, Some(ip)).err(),
        Some(TableError::ClientChannelLimit),
        "the warmed channel counts"
    );
    // Another client may; a channel the node holds already creates nothing.
    assert!(subscribe_fed(&t, 0, &two[..1], "d", false).is_some());
    assert!(matches!(
        t.subscribe_fed(0, &two[1..], "d", false, "192.0.2.8".parse().ok()),
        Ok(FedSubscribe::Warm(_))
    ));
}
