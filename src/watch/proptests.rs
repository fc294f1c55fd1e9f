//! Random commits against a model: a watcher sees exactly the committed changes after its
//! start, and its events folded over the LIST at that rv give the final LIST.

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;
use serde_json::json;

use super::tests::{drain, obj_with, open, request, seeded};
use super::*;
use crate::k8s::selector::{FieldSelector, LabelSelector};

const KINDS: [&str; 2] = ["Agent", "Model"];
const NAMESPACES: [&str; 2] = ["a", "b"];
const NAMES: [&str; 3] = ["x", "y", "z"];
const ENVS: [&str; 2] = ["prod", "dev"];

/// One row change: on (kind, namespace, name), a put with a label value or a delete.
#[derive(Debug, Clone)]
struct Op {
    kind: usize,
    ns: usize,
    name: usize,
    put: Option<usize>,
}

fn op() -> impl Strategy<Value = Op> {
    (
        0..2usize,
        0..2usize,
        0..3usize,
        prop::option::weighted(0.7, 0..2usize),
    )
        .prop_map(|(kind, ns, name, put)| Op {
            kind,
            ns,
            name,
            put,
        })
}

#[derive(Debug, Clone)]
struct Case {
    txns: Vec<Vec<Op>>,
    /// The watchers start after this many transactions.
    start: usize,
    /// Whether the live watcher reads after each transaction.
    reads: Vec<bool>,
    kind: usize,
    selector: Option<usize>,
}

fn case() -> impl Strategy<Value = Case> {
    prop::collection::vec(prop::collection::vec(op(), 1..5), 1..25).prop_flat_map(|txns| {
        let n = txns.len();
        (
            Just(txns),
            0..=n,
            prop::collection::vec(any::<bool>(), n),
            0..2usize,
            prop::option::of(0..2usize),
        )
            .prop_map(|(txns, start, reads, kind, selector)| Case {
                txns,
                start,
                reads,
                kind,
                selector,
            })
    })
}

/// What the model expects a watcher without selector to receive: (kind, type, key, rv).
type Expected = (String, EventType, (String, String), Rv);

/// Turns the ops into changes, numbering rvs from 1 and giving a recreated key a new uid.
fn changes(txns: &[Vec<Op>]) -> (Vec<Vec<Change>>, Vec<Expected>) {
    let mut live: BTreeMap<(usize, usize, usize), String> = BTreeMap::new();
    let (mut rv, mut uids) = (0, 0);
    let mut expected = Vec::new();
    let out = txns
        .iter()
        .map(|txn| {
            txn.iter()
                .map(|op| {
                    rv += 1;
                    let k = (op.kind, op.ns, op.name);
                    let (kind, ns, name) = (KINDS[op.kind], NAMESPACES[op.ns], NAMES[op.name]);
                    let key = (ns.to_string(), name.to_string());
                    let mut record = |ty| expected.push((kind.to_string(), ty, key.clone(), rv));
                    match op.put {
                        Some(env) => {
                            let uid = match live.get(&k) {
                                Some(uid) => {
                                    record(EventType::Modified);
                                    uid.clone()
                                }
                                None => {
                                    record(EventType::Added);
                                    uids += 1;
                                    format!("uid-{uids}")
                                }
                            };
                            live.insert(k, uid.clone());
                            let labels = json!({"labels": {"env": ENVS[env]}});
                            Change::Put(obj_with(kind, ns, name, &uid, rv, labels))
                        }
                        None => {
                            let uid = match live.remove(&k) {
                                Some(uid) => {
                                    record(EventType::Deleted);
                                    uid
                                }
                                None => "never-live".to_string(),
                            };
                            Change::Delete(obj_with(kind, ns, name, &uid, rv, json!({})))
                        }
                    }
                })
                .collect()
        })
        .collect();
    (out, expected)
}

type Listed = BTreeMap<(String, String), (String, Rv)>;

fn pair(o: &Obj) -> (String, String) {
    (o.namespace().to_string(), o.name().to_string())
}

fn listed(snap: &Arc<Snapshot>, kind: &str, labels: &LabelSelector) -> Listed {
    let (items, more, _) = snap.list(kind, None, labels, &FieldSelector::default(), None, None);
    assert!(!more);
    items
        .iter()
        .map(|o| (pair(o), (o.uid().to_string(), o.rv())))
        .collect()
}

/// Checks one watcher's items: increasing rvs, the model's events (without selector) and
/// the fold property.
fn check(
    items: &[WatchItem],
    case: &Case,
    expected: &[Expected],
    start_rv: Rv,
    at_start: &Arc<Snapshot>,
    end: &Arc<Snapshot>,
    labels: &LabelSelector,
) -> Result<(), TestCaseError> {
    let kind = KINDS[case.kind];
    let events: Vec<&WatchEvent> = items
        .iter()
        .map(|i| match i {
            WatchItem::Event(e) => Ok(e),
            other => Err(TestCaseError::fail(format!("unexpected {other:?}"))),
        })
        .collect::<Result<_, _>>()?;
    let rvs: Vec<Rv> = events.iter().map(|e| e.object().rv()).collect();
    prop_assert!(rvs.windows(2).all(|w| w[0] < w[1]), "rvs {:?}", rvs);
    prop_assert!(rvs.iter().all(|&r| r > start_rv));
    if case.selector.is_none() {
        let got: Vec<Expected> = events
            .iter()
            .map(|e| (kind.to_string(), e.ty(), pair(e.object()), e.object().rv()))
            .collect();
        let want: Vec<Expected> = expected
            .iter()
            .filter(|e| e.0 == kind && e.3 > start_rv)
            .cloned()
            .collect();
        prop_assert_eq!(got, want);
    }
    let mut state = listed(at_start, kind, labels);
    for e in events {
        let o = e.object();
        match e.ty() {
            EventType::Added => {
                prop_assert!(state.insert(pair(o), (o.uid().into(), o.rv())).is_none());
            }
            EventType::Modified => {
                prop_assert!(state.insert(pair(o), (o.uid().into(), o.rv())).is_some());
            }
            EventType::Deleted => {
                prop_assert!(state.remove(&pair(o)).is_some());
            }
        }
    }
    prop_assert_eq!(state, listed(end, kind, labels));
    Ok(())
}

fn run(case: Case) -> Result<(), TestCaseError> {
    let (txns, expected) = changes(&case.txns);
    let kind = KINDS[case.kind];
    let labels = match case.selector {
        Some(env) => LabelSelector::parse(&format!("env={}", ENVS[env])).unwrap(),
        None => LabelSelector::everything(),
    };
    let watch_request = |start| WatchRequest {
        labels: labels.clone(),
        ..request(kind, start)
    };
    let cache = seeded(Config::default());
    let mut at_start = cache.snapshot();
    let mut live = None;
    let mut live_items = Vec::new();
    for (i, txn) in txns.iter().enumerate() {
        if i == case.start {
            at_start = cache.snapshot();
            live = Some(open(&cache, watch_request(Start::Now)).unwrap());
        }
        cache.apply(txn.clone());
        if let (Some(w), true) = (live.as_mut(), case.reads[i]) {
            live_items.extend(drain(w));
        }
    }
    if case.start == txns.len() {
        at_start = cache.snapshot();
        live = Some(open(&cache, watch_request(Start::Now)).unwrap());
    }
    let mut live = live.expect("opened");
    live_items.extend(drain(&mut live));
    let start_rv = at_start.rv();
    let end = cache.snapshot();
    check(
        &live_items,
        &case,
        &expected,
        start_rv,
        &at_start,
        &end,
        &labels,
    )?;
    prop_assert_eq!(live.bookmark_rv(), Some(end.rv()));

    let mut replay = open(&cache, watch_request(Start::From(start_rv))).unwrap();
    let replay_items = drain(&mut replay);
    check(
        &replay_items,
        &case,
        &expected,
        start_rv,
        &at_start,
        &end,
        &labels,
    )?;

    // Applying everything again changes nothing.
    for txn in &txns {
        prop_assert_eq!(cache.apply(txn.clone()).events, 0);
    }
    prop_assert!(drain(&mut replay).is_empty());

    // A restart seeded at the start's snapshot, with the stream replaying every
    // transaction, reaches the same state and has the same events after the seed.
    let seed: Vec<Arc<Obj>> = KINDS
        .iter()
        .flat_map(|k| {
            let all = LabelSelector::everything();
            at_start
                .list(k, None, &all, &FieldSelector::default(), None, None)
                .0
        })
        .collect();
    let restarted = State::new(Config::default());
    restarted.reset(seed, start_rv);
    for txn in &txns {
        restarted.apply(txn.clone());
    }
    let restarted_end = restarted.snapshot();
    for k in KINDS {
        let all = LabelSelector::everything();
        prop_assert_eq!(listed(&restarted_end, k, &all), listed(&end, k, &all));
    }
    let mut again = open(&restarted, watch_request(Start::From(start_rv))).unwrap();
    check(
        &drain(&mut again),
        &case,
        &expected,
        start_rv,
        &at_start,
        &end,
        &labels,
    )?;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_watcher_sees_exactly_the_changes_after_its_start(case in case()) {
        run(case)?;
    }
}
