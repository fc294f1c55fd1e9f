use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::*;
use crate::k8s::selector::{FieldSelector, LabelSelector};

pub(super) fn obj_with(
    kind: &str,
    ns: &str,
    name: &str,
    uid: &str,
    rv: Rv,
    extra: Value,
) -> Arc<Obj> {
    let mut v = json!({
        "apiVersion": "ark.mckinsey.com/v1alpha1",
        "kind": kind,
        "metadata": {"name": name, "namespace": ns, "uid": uid, "resourceVersion": rv.to_string()},
    });
    if let (Some(meta), Some(extra)) = (v["metadata"].as_object_mut(), extra.as_object()) {
        for (k, x) in extra {
            meta.insert(k.clone(), x.clone());
        }
    }
    Arc::new(Obj::try_new(v).expect("valid object"))
}

pub(super) fn obj(kind: &str, ns: &str, name: &str, uid: &str, rv: Rv) -> Arc<Obj> {
    obj_with(kind, ns, name, uid, rv, json!({}))
}

pub(super) fn put(o: Arc<Obj>) -> Change {
    Change::Put(o)
}

pub(super) fn del(o: Arc<Obj>) -> Change {
    Change::Delete(o)
}

pub(super) fn seeded(config: Config) -> State {
    let cache = State::new(config);
    cache.reset(Vec::new(), 0);
    cache
}

pub(super) fn request(kind: &str, start: Start) -> WatchRequest {
    WatchRequest {
        kind: kind.into(),
        namespace: None,
        labels: LabelSelector::everything(),
        fields: FieldSelector::default(),
        start,
    }
}

pub(super) fn labelled(kind: &str, selector: &str, start: Start) -> WatchRequest {
    WatchRequest {
        labels: LabelSelector::parse(selector).unwrap(),
        ..request(kind, start)
    }
}

/// Opens a watch without waiting (none of these tests asks for a future rv).
pub(super) fn open(cache: &State, req: WatchRequest) -> Result<Watch, WatchError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(cache.watch(req, Duration::ZERO))
}

/// Everything ready now.
pub(super) fn drain(w: &mut Watch) -> Vec<WatchItem> {
    std::iter::from_fn(|| w.try_next()).collect()
}

/// Events as "TYPE name@rv" (rv of the object sent).
pub(super) fn summary(items: &[WatchItem]) -> Vec<String> {
    items
        .iter()
        .map(|i| match i {
            WatchItem::Event(e) => {
                format!(
                    "{} {}@{}",
                    e.ty().as_str(),
                    e.object().name(),
                    e.object().rv()
                )
            }
            WatchItem::Bookmark(rv) => format!("BOOKMARK {rv}"),
            WatchItem::InitialEventsEnd(rv) => format!("END {rv}"),
            WatchItem::Error(e) => format!("ERROR {e:?}"),
        })
        .collect()
}

fn applied(outcome: ApplyOutcome) -> (usize, usize, Rv) {
    (outcome.events, outcome.skipped, outcome.rv)
}

#[test]
fn the_state_decides_added_modified_and_deleted() {
    let cache = seeded(Config::default());
    let mut w = open(&cache, request("Agent", Start::Now)).unwrap();
    cache.apply(vec![put(obj("Agent", "ns", "a", "u1", 1))]);
    cache.apply(vec![put(obj("Agent", "ns", "a", "u1", 2))]);
    cache.apply(vec![del(obj("Agent", "ns", "a", "u1", 3))]);
    assert_eq!(
        summary(&drain(&mut w)),
        ["ADDED a@1", "MODIFIED a@2", "DELETED a@3"]
    );
    assert!(cache.get("Agent", "ns", "a").is_none());
    assert_eq!(cache.rv(), 3);
}

#[test]
fn a_modified_event_keeps_the_previous_state_only_when_its_labels_changed() {
    let cache = seeded(Config::default());
    let mut w = open(&cache, request("Agent", Start::Now)).unwrap();
    let env = |e: &str| json!({"labels": {"env": e}});
    cache.apply(vec![put(obj_with("Agent", "ns", "a", "u1", 1, env("dev")))]);
    cache.apply(vec![put(obj_with(
        "Agent",
        "ns",
        "a",
        "u1",
        2,
        env("prod"),
    ))]);
    cache.apply(vec![put(obj_with(
        "Agent",
        "ns",
        "a",
        "u1",
        3,
        env("prod"),
    ))]);
    let items = drain(&mut w);
    let prev = |i: usize| {
        let WatchItem::Event(e) = &items[i] else {
            panic!("{:?}", items[i])
        };
        e.event().unwrap().prev().map(|p| p.rv())
    };
    assert_eq!(
        prev(1),
        Some(1),
        "the labels changed: a selector may need it"
    );
    assert_eq!(
        prev(2),
        None,
        "same labels: the new state filters as it did"
    );
    // Still, a watcher whose selector both match is sent MODIFIED, and one whose selector
    // neither matches is sent nothing.
    let mut prod = open(&cache, labelled("Agent", "env=prod", Start::From(2))).unwrap();
    assert_eq!(summary(&drain(&mut prod)), ["MODIFIED a@3"]);
    let mut dev = open(&cache, labelled("Agent", "env=dev", Start::From(2))).unwrap();
    assert!(drain(&mut dev).is_empty());
}

#[test]
fn deleting_an_unknown_key_emits_nothing_but_advances_the_rv() {
    let cache = seeded(Config::default());
    let mut w = open(&cache, request("Agent", Start::Now)).unwrap();
    let out = cache.apply(vec![del(obj("Agent", "ns", "ghost", "u9", 5))]);
    assert_eq!(applied(out), (0, 0, 5));
    assert!(drain(&mut w).is_empty());
    assert_eq!(w.bookmark_rv(), Some(5));
}

#[test]
fn replaying_transactions_already_applied_changes_nothing_and_sends_nothing() {
    let txns = || {
        vec![
            vec![
                put(obj("Agent", "ns", "a", "u1", 1)),
                put(obj("Agent", "ns", "b", "u2", 2)),
            ],
            vec![put(obj("Agent", "ns", "a", "u1", 3))],
            vec![del(obj("Agent", "ns", "b", "u2", 4))],
        ]
    };
    let cache = seeded(Config::default());
    let mut w = open(&cache, request("Agent", Start::Now)).unwrap();
    for t in txns() {
        cache.apply(t);
    }
    let first = summary(&drain(&mut w));
    for t in txns() {
        let out = cache.apply(t);
        assert_eq!(out.events, 0);
        assert!(out.skipped > 0);
    }
    assert!(drain(&mut w).is_empty());
    assert_eq!(
        first,
        ["ADDED a@1", "ADDED b@2", "MODIFIED a@3", "DELETED b@4"]
    );
    assert_eq!(cache.snapshot().len("Agent"), 1);
    assert_eq!(cache.history_sizes(), [("Agent".to_string(), 4)]);

    // After a restart: seeded at rv 3 (a@3, b@2 live), the stream replays from rv 1.
    let restarted = State::new(Config::default());
    restarted.reset(
        vec![
            obj("Agent", "ns", "a", "u1", 3),
            obj("Agent", "ns", "b", "u2", 2),
        ],
        3,
    );
    let mut w = open(&restarted, request("Agent", Start::From(3))).unwrap();
    for t in txns() {
        restarted.apply(t);
    }
    assert_eq!(summary(&drain(&mut w)), ["DELETED b@4"]);
    assert_eq!(restarted.snapshot().len("Agent"), 1);
    assert_eq!(restarted.get("Agent", "ns", "a").unwrap().rv(), 3);
}

#[test]
fn a_put_with_another_uid_is_a_deletion_then_an_addition() {
    let cache = seeded(Config::default());
    cache.apply(vec![put(obj("Agent", "ns", "a", "old", 1))]);
    cache.apply(vec![put(obj("Agent", "ns", "other", "u2", 2))]);
    let mut w = open(&cache, request("Agent", Start::From(2))).unwrap();
    let out = cache.apply(vec![put(obj("Agent", "ns", "a", "new", 7))]);
    assert_eq!(out.events, 2);
    let items = drain(&mut w);
    // The DELETED object says 6 so that resuming from it replays the ADDED.
    assert_eq!(summary(&items), ["DELETED a@6", "ADDED a@7"]);
    let uids: Vec<_> = items
        .iter()
        .map(|i| match i {
            WatchItem::Event(e) => e.object().uid().to_string(),
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(uids, ["old", "new"]);
    assert!(cache.get_by_uid("old").is_none());
    assert_eq!(cache.get_by_uid("new").unwrap().rv(), 7);

    let mut resumed = open(&cache, request("Agent", Start::From(6))).unwrap();
    assert_eq!(summary(&drain(&mut resumed)), ["DELETED a@6", "ADDED a@7"]);
    let mut after = open(&cache, request("Agent", Start::From(7))).unwrap();
    assert!(drain(&mut after).is_empty());
}

#[test]
fn an_object_being_finalized_is_modified_until_its_delete_arrives() {
    let cache = seeded(Config::default());
    let mut w = open(&cache, request("Agent", Start::Now)).unwrap();
    let dying = json!({"deletionTimestamp": "2026-01-01T00:00:00Z", "finalizers": ["f/x"]});
    cache.apply(vec![put(obj("Agent", "ns", "a", "u1", 1))]);
    cache.apply(vec![put(obj_with(
        "Agent",
        "ns",
        "a",
        "u1",
        2,
        dying.clone(),
    ))]);
    cache.apply(vec![del(obj_with("Agent", "ns", "a", "u1", 3, dying))]);
    assert_eq!(
        summary(&drain(&mut w)),
        ["ADDED a@1", "MODIFIED a@2", "DELETED a@3"]
    );
}

#[test]
fn history_older_than_the_age_limit_is_dropped() {
    let config = Config {
        history: HistoryLimits {
            max_age: Duration::from_millis(30),
            ..HistoryLimits::default()
        },
        ..Config::default()
    };
    let cache = seeded(config);
    cache.apply(vec![put(obj("Agent", "ns", "a", "u", 1))]);
    std::thread::sleep(Duration::from_millis(60));
    cache.apply(vec![put(obj("Model", "ns", "m", "m", 2))]);
    let sizes: std::collections::BTreeMap<_, _> = cache.history_sizes().into_iter().collect();
    assert_eq!(sizes["Agent"], 0);
    assert_eq!(sizes["Model"], 1);
    assert!(open(&cache, request("Agent", Start::From(0))).is_err());
    assert!(open(&cache, request("Agent", Start::From(1))).is_ok());
}

#[test]
fn continue_pages_come_from_one_snapshot_while_writes_go_on() {
    let cache = seeded(Config::default());
    let names = ["a", "b", "c", "d", "e"];
    for (i, n) in names.iter().enumerate() {
        cache.apply(vec![put(obj("Agent", "ns", n, n, i as Rv + 1))]);
    }
    let all = LabelSelector::everything();
    let none = FieldSelector::default();
    let first = cache.snapshot();
    let (page, more, remaining) = first.list("Agent", None, &all, &none, None, Some(2));
    assert_eq!(
        page.iter().map(|o| o.name()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert!(more);
    assert_eq!(remaining, 3);
    let token = (
        first.rv(),
        (page[1].namespace().to_string(), page[1].name().to_string()),
    );
    drop(first);

    // Writes continue: c is deleted, f added, a modified.
    cache.apply(vec![del(obj("Agent", "ns", "c", "c", 6))]);
    cache.apply(vec![put(obj("Agent", "ns", "f", "f", 7))]);
    cache.apply(vec![put(obj("Agent", "ns", "a", "a", 8))]);

    let old = cache
        .snapshot_at(token.0)
        .expect("retained for the continue token");
    let after = (token.1 .0.as_str(), token.1 .1.as_str());
    let (page, more, remaining) = old.list("Agent", None, &all, &none, Some(after), Some(2));
    assert_eq!(
        page.iter().map(|o| o.name()).collect::<Vec<_>>(),
        ["c", "d"]
    );
    assert!(more);
    assert_eq!(remaining, 1);
    let (page, more, _) = old.list("Agent", None, &all, &none, Some(("ns", "d")), Some(2));
    assert_eq!(page.iter().map(|o| o.name()).collect::<Vec<_>>(), ["e"]);
    assert!(!more);
    assert_eq!(cache.retained_snapshots(), 1);

    // An rv that no page was served from, or any after a reset, is gone.
    assert!(cache.snapshot_at(6).is_none());
    assert!(
        cache.snapshot_at(8).is_some(),
        "the current state is always there"
    );
    cache.reset(Vec::new(), 8);
    assert!(cache.snapshot_at(5).is_none());
}

#[test]
fn list_follows_namespace_name_order_and_selectors() {
    let cache = seeded(Config::default());
    let prod = json!({"labels": {"env": "prod"}});
    cache.apply(vec![
        put(obj_with("Agent", "b", "z", "1", 1, prod.clone())),
        put(obj("Agent", "a", "y", "2", 2)),
        put(obj_with("Agent", "b", "a", "3", 3, prod.clone())),
        put(obj_with("Agent", "c", "a", "4", 4, prod)),
        put(obj("Agent", "bb", "a", "5", 5)),
    ]);
    let snap = cache.snapshot();
    let everything = LabelSelector::everything();
    let none = FieldSelector::default();
    let keys = |page: &[Arc<Obj>]| {
        page.iter()
            .map(|o| format!("{}/{}", o.namespace(), o.name()))
            .collect::<Vec<_>>()
    };
    let (all, more, _) = snap.list("Agent", None, &everything, &none, None, None);
    assert_eq!(keys(&all), ["a/y", "b/a", "b/z", "bb/a", "c/a"]);
    assert!(!more);
    let (ns_b, _, _) = snap.list("Agent", Some("b"), &everything, &none, None, None);
    assert_eq!(keys(&ns_b), ["b/a", "b/z"]);
    let (page, more, remaining) = snap.list(
        "Agent",
        Some("b"),
        &everything,
        &none,
        Some(("b", "a")),
        Some(1),
    );
    assert_eq!(
        (keys(&page), more, remaining),
        (vec!["b/z".to_string()], false, 0)
    );
    // A continue key from before the namespace starts it; one after it ends it.
    let (page, _, _) = snap.list(
        "Agent",
        Some("b"),
        &everything,
        &none,
        Some(("a", "y")),
        None,
    );
    assert_eq!(keys(&page), ["b/a", "b/z"]);
    let (page, _, _) = snap.list(
        "Agent",
        Some("b"),
        &everything,
        &none,
        Some(("c", "")),
        None,
    );
    assert!(page.is_empty());
    let prod = LabelSelector::parse("env=prod").unwrap();
    let (page, more, remaining) = snap.list("Agent", None, &prod, &none, None, Some(2));
    assert_eq!(
        (keys(&page), more, remaining),
        (vec!["b/a".into(), "b/z".into()], true, 0)
    );
    assert!(snap
        .list("Nothing", None, &everything, &none, None, None)
        .0
        .is_empty());
}

#[test]
fn readers_never_see_half_a_transaction() {
    let cache = seeded(Config::default());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (cache, stop) = (cache.clone(), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut seen = 0;
            while !stop.load(Ordering::Relaxed) {
                let snap = cache.snapshot();
                let a = snap
                    .get("Agent", "ns", "a")
                    .map(|o| o.value()["spec"].clone());
                let b = snap
                    .get("Agent", "ns", "b")
                    .map(|o| o.value()["spec"].clone());
                assert_eq!(a, b, "at rv {}", snap.rv());
                seen += 1;
            }
            seen
        })
    };
    for i in 0..2000u64 {
        let mk = |name: &str, rv: Rv| {
            let v = json!({"apiVersion": "v1", "kind": "Agent",
                "metadata": {"name": name, "namespace": "ns", "uid": name, "resourceVersion": rv.to_string()},
                "spec": {"n": i}});
            Arc::new(Obj::try_new(v).unwrap())
        };
        cache.apply(vec![put(mk("a", 2 * i + 1)), put(mk("b", 2 * i + 2))]);
    }
    stop.store(true, Ordering::Relaxed);
    assert!(reader.join().unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_lsn_waiters_are_released_by_one_advance() {
    let cache = seeded(Config::default());
    let waiters: Vec<_> = (0..50)
        .map(|i| {
            let cache = cache.clone();
            tokio::spawn(async move {
                cache
                    .wait_for_lsn(100 + i % 2, Duration::from_secs(5))
                    .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(20)).await;
    cache.set_applied_lsn(101);
    cache.set_applied_lsn(50); // never goes back
    for w in waiters {
        assert!(w.await.unwrap());
    }
    assert_eq!(cache.applied_lsn(), 101);
    assert!(!cache.wait_for_lsn(102, Duration::from_millis(20)).await);
    assert!(cache.wait_for_lsn(101, Duration::ZERO).await);
}

#[tokio::test]
async fn a_rewound_position_makes_reads_wait_for_the_new_stream_and_then_advances_from_there() {
    let cache = seeded(Config::default());
    cache.set_applied_lsn(5_000);
    // A re-seed on a promoted standby's timeline, whose positions are below the old ones.
    cache.rewind_applied_lsn(1_200);
    assert_eq!(cache.applied_lsn(), 1_200);
    assert!(!cache.wait_for_lsn(1_300, Duration::from_millis(20)).await);
    cache.set_applied_lsn(1_300);
    assert!(cache.wait_for_lsn(1_300, Duration::ZERO).await);
    cache.set_applied_lsn(1_250); // and, from there, never back again
    assert_eq!(cache.applied_lsn(), 1_300);
}

#[test]
fn objects_without_the_indexed_fields_are_refused() {
    let bad = |v: Value| Obj::try_new(v).unwrap_err();
    assert_eq!(bad(json!([])), ObjError::NotAnObject);
    assert_eq!(
        bad(json!({"kind": "Agent", "metadata": {"uid": "u", "resourceVersion": "1"}})),
        ObjError::Missing("metadata.name")
    );
    assert_eq!(
        bad(
            json!({"kind": "Agent", "metadata": {"name": "a", "uid": "u", "resourceVersion": "x"}})
        ),
        ObjError::ResourceVersion("x".into())
    );
}

#[test]
fn the_state_and_its_watches_can_move_between_threads() {
    fn shared<T: Send + Sync>() {}
    fn sent<T: Send>() {}
    shared::<State>();
    shared::<Snapshot>();
    shared::<Event>();
    sent::<Watch>();
    sent::<WatchItem>();
}

#[test]
fn remaining_item_count_from_the_offset_a_token_carries_equals_the_count_of_the_rest() {
    let cache = seeded(Config::default());
    let txn: Vec<Change> = (0..50u64)
        .map(|i| {
            put(obj(
                "Agent",
                &format!("ns{}", i % 3),
                &format!("a{i:02}"),
                &format!("u{i}"),
                i + 1,
            ))
        })
        .collect();
    cache.apply(txn);
    let snap = cache.snapshot();
    let (all, none) = (LabelSelector::default(), FieldSelector::default());
    let mut after: Option<(String, String)> = None;
    let mut before = 0u64;
    loop {
        let a = after.as_ref().map(|(n, m)| (n.as_str(), m.as_str()));
        let counted = snap.list_from("Agent", None, &all, &none, a, None, Some(7));
        let known = snap.list_from("Agent", None, &all, &none, a, Some(before), Some(7));
        assert_eq!(
            (counted.1, counted.2),
            (known.1, known.2),
            "after {before} objects"
        );
        assert_eq!(counted.2, 50 - before as usize - counted.0.len());
        let Some(last) = known.0.last() else { break };
        before += known.0.len() as u64;
        after = Some((last.namespace().to_string(), last.name().to_string()));
        if !known.1 {
            break;
        }
    }
    assert_eq!(before, 50);
}
