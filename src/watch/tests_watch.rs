//! Watch behaviour: starting points, selectors, bookmarks, slow watchers, resets.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::k8s::selector::LabelValue;

use bytes::Bytes;
use serde_json::json;

use super::tests::*;
use super::*;
use crate::k8s::selector::FieldSelector;

#[test]
fn a_bookmark_between_the_halves_of_a_uid_change_stays_before_them() {
    let cache = seeded(Config::default());
    cache.apply(vec![put(obj("Agent", "ns", "a", "old", 1))]);
    let mut w = open(&cache, request("Agent", Start::From(1))).unwrap();
    cache.apply(vec![put(obj("Agent", "ns", "a", "new", 5))]);
    let first = w.try_next().unwrap();
    assert_eq!(summary(&[first]), ["DELETED a@4"]);
    assert_eq!(w.bookmark_rv(), Some(4));
    w.try_next().unwrap();
    assert_eq!(w.bookmark_rv(), Some(5));
}

#[test]
fn from_rv_sends_exactly_the_events_after_it_for_its_kind() {
    let cache = seeded(Config::default());
    let mut rv = 0;
    let mut next = || {
        rv += 1;
        rv
    };
    for i in 0..4 {
        let (a, b, c) = (next(), next(), next());
        cache.apply(vec![
            put(obj("Agent", "ns", &format!("a{i}"), &format!("ua{i}"), a)),
            put(obj("Model", "ns", &format!("m{i}"), &format!("um{i}"), b)),
        ]);
        cache.apply(vec![put(obj("Agent", "ns", "a0", "ua0", c))]);
    }
    // Agent events are at 1,3,4,6,7,9,10,12; Model at 2,5,8,11.
    for from in 0..=12 {
        let mut w = open(&cache, request("Agent", Start::From(from))).unwrap();
        let got: Vec<Rv> = drain(&mut w)
            .iter()
            .map(|i| match i {
                WatchItem::Event(e) => e.object().rv(),
                other => panic!("{other:?}"),
            })
            .collect();
        let want: Vec<Rv> = [1, 3, 4, 6, 7, 9, 10, 12]
            .into_iter()
            .filter(|&r| r > from)
            .collect();
        assert_eq!(got, want, "from {from}");
    }
}

#[test]
fn too_old_names_the_requested_and_the_oldest_rv() {
    let config = Config {
        history: HistoryLimits {
            max_events_per_kind: 3,
            keep_recent: Duration::ZERO,
            ..HistoryLimits::default()
        },
        ..Config::default()
    };
    let cache = State::new(config);
    cache.reset(Vec::new(), 10);
    assert_eq!(
        open(&cache, request("Agent", Start::From(9))).unwrap_err(),
        WatchError::TooOld {
            requested: 9,
            oldest: 10
        }
    );
    for rv in 11..=16 {
        cache.apply(vec![put(obj("Agent", "ns", "a", "u", rv))]);
    }
    // 14, 15, 16 are kept; the last dropped is 13, so 13 is the oldest start.
    assert_eq!(cache.history_sizes(), [("Agent".to_string(), 3)]);
    let err = open(&cache, request("Agent", Start::From(12))).unwrap_err();
    assert_eq!(
        err,
        WatchError::TooOld {
            requested: 12,
            oldest: 13
        }
    );
    assert_eq!(err.to_string(), "too old resource version: 12 (13)");
    assert_eq!(cache.oldest_rv("Agent"), 13);
    assert_eq!(cache.oldest_rv("Model"), 10);
    let mut w = open(&cache, request("Agent", Start::From(13))).unwrap();
    assert_eq!(drain(&mut w).len(), 3);
    // Another kind's history is its own: it has had no event since the seed.
    assert!(open(&cache, request("Model", Start::From(10))).is_ok());
    assert_eq!(cache.gone_sent(), 2);
}

#[tokio::test]
async fn too_new_fails_after_the_wait() {
    let cache = seeded(Config::default());
    cache.apply(vec![put(obj("Agent", "ns", "a", "u", 4))]);
    let started = std::time::Instant::now();
    let err = cache
        .watch(request("Agent", Start::From(9)), Duration::from_millis(50))
        .await
        .unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(50));
    assert_eq!(
        err,
        WatchError::TooNew {
            requested: 9,
            current: 4
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_new_succeeds_when_the_state_catches_up_in_time() {
    let cache = seeded(Config::default());
    let writer = cache.clone();
    tokio::spawn(async move {
        for rv in 1..=9 {
            tokio::time::sleep(Duration::from_millis(5)).await;
            writer.apply(vec![put(obj("Agent", "ns", "a", "u", rv))]);
        }
    });
    let mut w = cache
        .watch(request("Agent", Start::From(7)), Duration::from_secs(3))
        .await
        .unwrap();
    let mut got = Vec::new();
    while got.len() < 2 {
        got.extend(summary(&[w.next().await.unwrap()]));
    }
    assert_eq!(got, ["MODIFIED a@8", "MODIFIED a@9"]);
}

#[test]
fn selector_transitions_are_sent_as_added_and_deleted() {
    let cache = seeded(Config::default());
    let mut w = open(&cache, labelled("Agent", "env=prod", Start::Now)).unwrap();
    let with =
        |env: &str, rv| obj_with("Agent", "ns", "a", "u", rv, json!({"labels": {"env": env}}));
    cache.apply(vec![put(with("dev", 1))]); // not matching: nothing
    cache.apply(vec![put(with("prod", 2))]); // starts matching: ADDED
    cache.apply(vec![put(with("prod", 3))]); // MODIFIED
    cache.apply(vec![put(with("dev", 4))]); // stops matching: DELETED
    cache.apply(vec![put(with("dev", 5))]); // nothing
    cache.apply(vec![del(with("dev", 6))]); // deleted while not matching: nothing
    let items = drain(&mut w);
    assert_eq!(
        summary(&items),
        ["ADDED a@2", "MODIFIED a@3", "DELETED a@4"]
    );
    // As kube's cacher: the DELETED carries the last matching state at the event's rv.
    let WatchItem::Event(gone) = &items[2] else {
        panic!()
    };
    assert_eq!(gone.object().label("env"), Some(LabelValue::Str("prod")));
    assert_eq!(gone.object().value()["metadata"]["resourceVersion"], "4");
    assert_eq!(w.bookmark_rv(), Some(6));
}

#[test]
fn namespace_and_field_selectors_filter_events() {
    let cache = seeded(Config::default());
    let mut in_ns = open(
        &cache,
        WatchRequest {
            namespace: Some("b".into()),
            ..request("Agent", Start::Now)
        },
    )
    .unwrap();
    let mut by_name = open(
        &cache,
        WatchRequest {
            fields: FieldSelector::parse(
                "metadata.name=x",
                &["metadata.name", "metadata.namespace"],
            )
            .unwrap(),
            ..request("Agent", Start::Now)
        },
    )
    .unwrap();
    cache.apply(vec![
        put(obj("Agent", "a", "x", "1", 1)),
        put(obj("Agent", "b", "x", "2", 2)),
        put(obj("Agent", "b", "y", "3", 3)),
    ]);
    assert_eq!(summary(&drain(&mut in_ns)), ["ADDED x@2", "ADDED y@3"]);
    assert_eq!(summary(&drain(&mut by_name)), ["ADDED x@1", "ADDED x@2"]);
}

#[test]
fn initial_state_sends_added_events_then_its_end_then_changes() {
    let cache = State::new(Config::default());
    let prod = json!({"labels": {"env": "prod"}});
    cache.reset(
        vec![
            obj_with("Agent", "ns", "b", "ub", 3, prod.clone()),
            obj_with("Agent", "ns", "a", "ua", 2, prod.clone()),
            obj("Agent", "ns", "c", "uc", 4),
            obj("Model", "ns", "m", "um", 5),
        ],
        5,
    );
    let mut w = open(&cache, labelled("Agent", "env=prod", Start::InitialState)).unwrap();
    assert_eq!(w.bookmark_rv(), None);
    cache.apply(vec![put(obj_with("Agent", "ns", "d", "ud", 6, prod))]);
    w.request_bookmark();
    assert_eq!(
        summary(&drain(&mut w)),
        ["ADDED a@2", "ADDED b@3", "END 5", "BOOKMARK 5", "ADDED d@6"]
    );
    assert_eq!(w.bookmark_rv(), Some(6));
}

#[test]
fn initial_state_of_a_kind_with_no_objects_is_just_its_end() {
    let cache = seeded(Config::default());
    cache.apply(vec![put(obj("Model", "ns", "m", "um", 3))]);
    let mut w = open(&cache, request("Agent", Start::InitialState)).unwrap();
    assert_eq!(summary(&drain(&mut w)), ["END 3"]);
}

#[test]
fn bookmarks_never_run_ahead_of_what_was_sent() {
    let cache = seeded(Config::default());
    let mut w = open(&cache, request("Agent", Start::Now)).unwrap();
    assert_eq!(w.bookmark_rv(), Some(0));
    for rv in 1..=3 {
        cache.apply(vec![put(obj(
            "Agent",
            "ns",
            &format!("a{rv}"),
            &format!("u{rv}"),
            rv,
        ))]);
    }
    // Nothing read yet: the watcher has processed nothing beyond its start.
    assert_eq!(w.bookmark_rv(), Some(0));
    w.try_next().unwrap();
    assert_eq!(w.bookmark_rv(), Some(1));
    w.request_bookmark();
    assert_eq!(summary(&[w.try_next().unwrap()]), ["BOOKMARK 1"]);
    drain(&mut w);
    assert_eq!(w.bookmark_rv(), Some(3));
    // Changes of another kind move a caught-up watcher's bookmark along.
    cache.apply(vec![put(obj("Model", "ns", "m", "um", 4))]);
    assert_eq!(w.bookmark_rv(), Some(4));
    // Events filtered out still count as processed.
    let mut picky = open(&cache, labelled("Agent", "env=none", Start::From(0))).unwrap();
    assert!(drain(&mut picky).is_empty());
    assert_eq!(picky.bookmark_rv(), Some(4));
}

#[test]
fn a_watcher_that_never_reads_ends_too_slow_and_stalls_no_one() {
    let config = Config {
        max_backlog: 8,
        slow_after: Duration::ZERO,
        ..Config::default()
    };
    let cache = seeded(config);
    let mut idle = open(&cache, request("Agent", Start::Now)).unwrap();
    let mut busy = open(&cache, request("Agent", Start::Now)).unwrap();
    let mut received = 0;
    for rv in 1..=100 {
        cache.apply(vec![put(obj("Agent", "ns", "a", "u", rv))]);
        received += drain(&mut busy).len();
    }
    assert_eq!(received, 100);
    assert_eq!(summary(&drain(&mut idle)), ["ERROR TooSlow"]);
    assert!(idle.is_ended());
    assert_eq!(idle.try_next().map(|_| ()), None);
    assert_eq!(cache.slow_watchers_closed(), 1);
    assert_eq!(cache.open_watchers(), 2);
    drop(idle);
    assert_eq!(cache.open_watchers_by_kind(), [("Agent".to_string(), 1)]);
}

#[test]
fn a_watcher_whose_position_was_trimmed_ends_too_slow() {
    let config = Config {
        history: HistoryLimits {
            max_events_per_kind: 4,
            keep_recent: Duration::ZERO,
            ..HistoryLimits::default()
        },
        ..Config::default()
    };
    let cache = seeded(config);
    let mut w = open(&cache, request("Agent", Start::Now)).unwrap();
    for rv in 1..=10 {
        cache.apply(vec![put(obj("Agent", "ns", "a", "u", rv))]);
    }
    assert_eq!(summary(&drain(&mut w)), ["ERROR TooSlow"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_watcher_is_woken_by_a_commit_and_ended_by_a_reset() {
    let cache = seeded(Config::default());
    let mut w = cache
        .watch(request("Agent", Start::Now), Duration::ZERO)
        .await
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        while let Some(item) = w.next().await {
            tx.send(summary(&[item])).unwrap();
        }
    });
    // The reader is parked in next() by now, or sees the commit when it gets there.
    tokio::time::sleep(Duration::from_millis(20)).await;
    cache.apply(vec![put(obj("Agent", "ns", "a", "u", 1))]);
    let first = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
    assert_eq!(first.unwrap().unwrap(), ["ADDED a@1"]);
    cache.reset(vec![obj("Agent", "ns", "a", "u", 1)], 1);
    let second = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
    assert_eq!(
        second.unwrap().unwrap(),
        ["ERROR Expired { requested: 1, oldest: 1 }"]
    );
    tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cache.open_watchers(), 0);
}

#[test]
fn reset_ends_every_watch_and_forgets_history() {
    let cache = seeded(Config::default());
    let mut agents = open(&cache, request("Agent", Start::Now)).unwrap();
    let mut models = open(&cache, request("Model", Start::InitialState)).unwrap();
    for rv in 1..=3 {
        cache.apply(vec![put(obj("Agent", "ns", "a", "u", rv))]);
    }
    cache.reset(vec![obj("Agent", "ns", "b", "ub", 20)], 20);
    assert_eq!(
        summary(&drain(&mut agents)),
        ["ERROR Expired { requested: 0, oldest: 20 }"]
    );
    assert_eq!(
        summary(&drain(&mut models)),
        ["END 0", "ERROR Expired { requested: 0, oldest: 20 }"]
    );
    assert!(matches!(
        open(&cache, request("Agent", Start::From(3))),
        Err(WatchError::TooOld {
            requested: 3,
            oldest: 20
        })
    ));
    assert!(cache.get("Agent", "ns", "a").is_none());
    assert_eq!(cache.get("Agent", "ns", "b").unwrap().rv(), 20);
}

#[test]
fn event_frames_are_made_once_and_shared_while_initial_state_frames_are_made_per_watcher() {
    let cache = seeded(Config::default());
    cache.apply(vec![put(obj("Agent", "ns", "a", "u", 1))]);
    let mut w1 = open(&cache, request("Agent", Start::InitialState)).unwrap();
    let mut w2 = open(&cache, request("Agent", Start::InitialState)).unwrap();
    cache.apply(vec![put(obj("Agent", "ns", "a", "u", 2))]);
    let made = AtomicUsize::new(0);
    let encode = |item: &WatchItem| match item {
        WatchItem::Event(e) => Some(e.encoded(1, |ty, obj| {
            made.fetch_add(1, Ordering::Relaxed);
            let mut frame = format!("{{\"type\":\"{}\",\"object\":", ty.as_str()).into_bytes();
            obj.with_json(|j| frame.extend_from_slice(j));
            frame.push(b'}');
            Ok(Bytes::from(frame))
        })),
        _ => None,
    };
    let f1: Vec<_> = drain(&mut w1).iter().filter_map(encode).collect();
    let f2: Vec<_> = drain(&mut w2).iter().filter_map(encode).collect();
    assert_eq!(f1, f2);
    assert_eq!(
        made.load(Ordering::Relaxed),
        3,
        "an initial ADDED for each watcher (none is kept on the object), one MODIFIED for both"
    );
    assert!(f1[1]
        .as_ref()
        .unwrap()
        .starts_with(b"{\"type\":\"MODIFIED\""));
}

#[test]
fn one_transaction_larger_than_the_history_and_the_backlog_limits_reaches_a_watcher_whole() {
    let config = Config {
        history: HistoryLimits {
            max_events_per_kind: 100,
            ..HistoryLimits::default()
        },
        max_backlog: 50,
        ..Config::default()
    };
    let cache = seeded(config);
    let mut w = open(&cache, request("Agent", Start::Now)).unwrap();
    let txn: Vec<Change> = (0..1_000u64)
        .map(|i| {
            put(obj(
                "Agent",
                "ns",
                &format!("a{i:04}"),
                &format!("u{i}"),
                i + 1,
            ))
        })
        .collect();
    cache.apply(txn);
    let items = drain(&mut w);
    let events: Vec<Rv> = items
        .iter()
        .filter_map(|i| match i {
            WatchItem::Event(e) => Some(e.object().rv()),
            _ => None,
        })
        .collect();
    assert_eq!(
        events,
        (1..=1_000).collect::<Vec<_>>(),
        "every event, in order, and no end"
    );
    assert!(
        !items.iter().any(|i| matches!(i, WatchItem::Error(_))),
        "{:?}",
        items.last()
    );
    // A watch started from before the transaction is served from the history too.
    let mut late = open(&cache, request("Agent", Start::From(0))).unwrap();
    assert_eq!(drain(&mut late).len(), 1_000);
}
