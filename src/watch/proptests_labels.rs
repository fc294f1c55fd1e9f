//! Random commits, then every page of a label-selected LIST read through the label index
//! equals the same pages read by scanning and filtering every object.

use std::sync::Arc;

use proptest::prelude::*;
use serde_json::{json, Value};

use super::tests::{obj_with, seeded};
use super::*;
use crate::k8s::selector::{FieldSelector, LabelSelector};

const NAMESPACES: [&str; 3] = ["a", "b", "c"];
const SELECTORS: [&str; 7] = [
    "env=prod",
    "env==dev",
    "env in (prod)",
    "env in (dev,prod,dev)",
    "env=prod,tier!=web",
    "env in (dev,qa),tier=web",
    "tier=web,env=prod",
];

/// One row change: a put of (namespace, name) with labels drawn from `labels`, or a delete;
/// `recreate` gives the key a new uid.
#[derive(Debug, Clone)]
struct Op {
    ns: usize,
    name: usize,
    labels: Option<(usize, usize, bool)>,
    recreate: bool,
}

fn op() -> impl Strategy<Value = Op> {
    (
        0..3usize,
        0..8usize,
        prop::option::weighted(0.75, (0..4usize, 0..3usize, any::<bool>())),
        prop::bool::weighted(0.1),
    )
        .prop_map(|(ns, name, labels, recreate)| Op {
            ns,
            name,
            labels,
            recreate,
        })
}

fn labels_of(env: usize, tier: usize, unique: bool, name: &str) -> Value {
    // env 3 is not a string: present, but equal to no value.
    let env = match env {
        0 => json!("prod"),
        1 => json!("dev"),
        2 => json!("qa"),
        _ => json!(7),
    };
    let mut labels = json!({"env": env});
    if tier < 2 {
        labels["tier"] = json!(["web", "db"][tier]);
    }
    if unique {
        labels["id"] = json!(name);
    }
    json!({ "labels": labels })
}

/// Every page of `limit` (0: one page) through `Snapshot::list`, following `after` keys.
fn pages(
    snap: &Arc<Snapshot>,
    ns: Option<&str>,
    sel: &LabelSelector,
    limit: usize,
) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut after: Option<(String, String)> = None;
    loop {
        let (items, more, _) = snap.list(
            "Agent",
            ns,
            sel,
            &FieldSelector::default(),
            after.as_ref().map(|(a, b)| (a.as_str(), b.as_str())),
            Some(limit),
        );
        out.push(
            items
                .iter()
                .map(|o| format!("{}/{}@{}", o.namespace(), o.name(), o.rv()))
                .collect(),
        );
        match (more, items.last()) {
            (true, Some(last)) => after = Some((last.namespace().into(), last.name().into())),
            _ => return out,
        }
    }
}

/// The same pages by scanning every object of the kind and filtering.
fn scanned(
    snap: &Arc<Snapshot>,
    ns: Option<&str>,
    sel: &LabelSelector,
    limit: usize,
) -> Vec<Vec<String>> {
    let all: Vec<String> = snap
        .scan("Agent", ns, None)
        .filter(|o| sel.matches_with(|k| o.label(k)))
        .map(|o| format!("{}/{}@{}", o.namespace(), o.name(), o.rv()))
        .collect();
    if limit == 0 || all.is_empty() {
        return vec![all];
    }
    all.chunks(limit).map(<[String]>::to_vec).collect()
}

fn run(txns: Vec<Vec<Op>>, ns: Option<usize>, limit: usize) -> Result<(), TestCaseError> {
    let cache = seeded(Config::default());
    let (mut rv, mut gen) = (0u64, 0u64);
    for txn in &txns {
        let changes = txn
            .iter()
            .map(|op| {
                rv += 1;
                if op.recreate {
                    gen += 1;
                }
                let (ns, name) = (NAMESPACES[op.ns], format!("n{}", op.name));
                let uid = format!("{ns}-{name}-{gen}");
                match op.labels {
                    Some((env, tier, unique)) => Change::Put(obj_with(
                        "Agent",
                        ns,
                        &name,
                        &uid,
                        rv,
                        labels_of(env, tier, unique, &name),
                    )),
                    None => Change::Delete(obj_with("Agent", ns, &name, &uid, rv, json!({}))),
                }
            })
            .collect();
        cache.apply(changes);
    }
    let snap = cache.snapshot();
    let ns = ns.map(|i| NAMESPACES[i]);
    for s in SELECTORS {
        let sel = LabelSelector::parse(s).unwrap();
        let mut want = scanned(&snap, ns, &sel, limit);
        // A last full page is followed by an empty one only when the list said "more":
        // the index and the scan answer "more" the same way, so compare the non-empty pages.
        want.retain(|p| !p.is_empty());
        let mut got = pages(&snap, ns, &sel, limit);
        got.retain(|p| !p.is_empty());
        prop_assert_eq!(got, want, "selector {} in {:?} by {}", s, ns, limit);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn label_selected_pages_read_from_the_index_equal_a_scan_of_every_object(
        txns in prop::collection::vec(prop::collection::vec(op(), 1..6), 1..20),
        ns in prop::option::of(0..3usize),
        limit in 0..4usize,
    ) {
        run(txns, ns, limit)?;
    }
}
