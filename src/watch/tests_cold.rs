//! Cold objects: whatever form the state holds an object in, every read gives the same
//! bytes, and the indexes keep finding it.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::tests::{drain, labelled, obj_with, open, put, request, seeded};
use super::*;
use crate::k8s::selector::{FieldSelector, LabelSelector};

/// The i-th Query of a kind with enough objects to train a dictionary.
fn query(i: usize, rv: Rv) -> Arc<Obj> {
    obj_with(
        "Query",
        &format!("ns-{}", i % 3),
        &format!("query-{i}"),
        &format!("uid-{i}"),
        rv,
        json!({
            "labels": {"agent": format!("agent-{}", i % 10)},
            "annotations": {"note": format!("Summarise report {i} and list the three largest changes, with figures.")},
        }),
    )
}

const N: usize = 600;

/// Everything a reader can get of the state, as bytes: each object's JSON and value,
/// by key and by uid, a full LIST, a labelled page, and a watch's initial events.
fn reads(state: &State) -> Vec<Vec<u8>> {
    let snap = state.snapshot();
    let mut out = Vec::new();
    for i in (0..N).step_by(37) {
        let o = state
            .get("Query", &format!("ns-{}", i % 3), &format!("query-{i}"))
            .unwrap();
        out.push(o.json().to_vec());
        out.push(serde_json::to_vec(&o.value()).unwrap());
        out.push(o.with_json(<[u8]>::to_vec));
        assert_eq!(o.json_len(), o.json().len());
        let by_uid = state.get_by_uid(&format!("uid-{i}")).unwrap();
        out.push(by_uid.json().to_vec());
    }
    let all = LabelSelector::everything();
    let fields = FieldSelector::default();
    let (items, _, _) = snap.list("Query", None, &all, &fields, None, None);
    assert_eq!(items.len(), N);
    out.push(items.iter().flat_map(|o| o.json().to_vec()).collect());
    let agent = LabelSelector::parse("agent=agent-3").unwrap();
    let (page, _, _) = snap.list("Query", Some("ns-1"), &agent, &fields, None, Some(7));
    assert!(!page.is_empty());
    out.push(page.iter().flat_map(|o| o.json().to_vec()).collect());
    let mut w = open(
        state,
        labelled("Query", "agent=agent-5", Start::InitialState),
    )
    .unwrap();
    let initial: Vec<u8> = drain(&mut w)
        .iter()
        .filter_map(|i| match i {
            WatchItem::Event(e) => Some(e.object().json().to_vec()),
            _ => None,
        })
        .flatten()
        .collect();
    assert!(!initial.is_empty());
    out.push(initial);
    out
}

fn cold(state: &State) -> usize {
    state.cold_counts().into_iter().map(|(_, n)| n).sum()
}

#[test]
fn a_seed_holds_a_large_kind_cold_and_every_read_form_is_unchanged() {
    let plain = seeded(Config::default());
    plain.apply((0..N).map(|i| put(query(i, i as Rv + 1))).collect());
    assert_eq!(cold(&plain), 0, "objects in the history stay plain");
    let before = reads(&plain);

    let seeded_state = State::new(Config::default());
    seeded_state.reset((0..N).map(|i| query(i, i as Rv + 1)).collect(), N as Rv);
    assert_eq!(cold(&seeded_state), N);
    let o = seeded_state.get("Query", "ns-0", "query-0").unwrap();
    assert!(o.is_cold());
    assert_eq!(reads(&seeded_state), before);
}

#[test]
fn an_object_goes_cold_when_its_event_leaves_the_history_and_reads_the_same() {
    let config = Config {
        history: HistoryLimits {
            max_age: Duration::from_millis(40),
            ..HistoryLimits::default()
        },
        ..Config::default()
    };
    let state = seeded(config);
    state.apply((0..N).map(|i| put(query(i, i as Rv + 1))).collect());
    let before = reads(&state);
    assert_eq!(cold(&state), 0);
    std::thread::sleep(Duration::from_millis(80));
    // Any commit trims what is too old; here one of another kind.
    state.apply(vec![put(obj_with(
        "Agent",
        "ns",
        "a",
        "a",
        N as Rv + 1,
        json!({}),
    ))]);
    assert_eq!(
        state
            .history_sizes()
            .into_iter()
            .find(|(k, _)| k == "Query")
            .unwrap()
            .1,
        0
    );
    assert_eq!(cold(&state), N);
    assert_eq!(reads(&state), before);

    // A cold object's next version is plain again, and its uid and labels still find it.
    let next = obj_with(
        "Query",
        "ns-0",
        "query-0",
        "uid-0",
        N as Rv + 2,
        json!({"labels": {"agent": "agent-99"}}),
    );
    let mut w = open(
        &state,
        labelled("Query", "agent=agent-0", Start::From(N as Rv + 1)),
    )
    .unwrap();
    state.apply(vec![put(Arc::clone(&next))]);
    assert_eq!(cold(&state), N - 1);
    let got = state.get("Query", "ns-0", "query-0").unwrap();
    assert!(!got.is_cold());
    assert_eq!(got.json(), next.json());
    assert_eq!(state.get_by_uid("uid-0").unwrap().json(), next.json());
    // It stopped matching: the watcher gets the cold previous state as DELETED, whole.
    let items = drain(&mut w);
    let WatchItem::Event(e) = &items[0] else {
        panic!("{items:?}")
    };
    assert_eq!(e.ty(), EventType::Deleted);
    let sent = e.object().value();
    assert_eq!(sent["metadata"]["labels"]["agent"], "agent-0");
    assert_eq!(sent["metadata"]["resourceVersion"], (N + 2).to_string());
}

#[test]
fn a_kind_too_small_to_train_a_dictionary_stays_plain() {
    let state = State::new(Config::default());
    state.reset((0..100).map(|i| query(i, i as Rv + 1)).collect(), 100);
    assert_eq!(cold(&state), 0);
    let mut w = open(&state, request("Query", Start::InitialState)).unwrap();
    assert_eq!(drain(&mut w).len(), 101);
}

#[test]
fn a_reseed_keeps_the_dictionary_and_shares_the_cold_objects_it_holds() {
    let state = State::new(Config::default());
    state.reset((0..N).map(|i| query(i, i as Rv + 1)).collect(), N as Rv);
    let held = state.get("Query", "ns-0", "query-0").unwrap();
    assert!(held.is_cold());
    let again: Vec<Arc<Obj>> = (0..N)
        .map(|i| {
            state
                .get("Query", &format!("ns-{}", i % 3), &format!("query-{i}"))
                .unwrap()
        })
        .collect();
    state.reset(again, N as Rv);
    let now = state.get("Query", "ns-0", "query-0").unwrap();
    assert!(Arc::ptr_eq(&held, &now));
    assert_eq!(cold(&state), N);
}
