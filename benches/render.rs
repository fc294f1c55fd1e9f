//! Rendering a LIST of 10,000 objects, the way the server answers one:
//! - `json_preserialized`: the server's JSON path (`registry::list_json`), which joins the
//!   bytes each object was serialized to once when it entered the watch state (`Obj::json`);
//! - `json_value`: the same list built as a `serde_json::Value` and serialized, as
//!   `api/resource.rs` builds lists for the encodings that cannot take the joined bytes
//!   (YAML, before its own encoder; PartialObjectMetadataList likewise): each object parsed
//!   back from its JSON (`Obj::value`), then `json!`, which copies the items once more
//!   (`serde_json::to_value`), then the serializer;
//! - `json_serde_only`: the same document serialized from values parsed beforehand and
//!   borrowed, with no copy: what the serializer alone costs, to tell it from the rest;
//! - `table`: what `kubectl get` asks for (`as=Table;v=v1`, objects as metadata): objects
//!   parsed, rendered with the kind's printer columns and serialized, as `api/resource.rs`
//!   does.
//!
//! The objects are Agents as the state holds them: built from row columns by
//! `store::row::assemble` (the key order the server writes) and wrapped in `Obj`. Building
//! them is setup; only the rendering is timed.

mod common;

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde::Serialize;
use serde_json::{json, Map, Value};

use ark_apiserver::k8s::resource::Resources;
use ark_apiserver::k8s::table::{self, IncludeObject};
use ark_apiserver::registry::{self, ListResult};
use ark_apiserver::store::row::{assemble, Columns};
use ark_apiserver::watch::Obj;

const ITEMS: usize = 10_000;

/// A list written from borrowed objects, in the key order the server writes.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BorrowedList<'a> {
    api_version: &'a str,
    kind: &'a str,
    metadata: Map<String, Value>,
    items: Vec<&'a Value>,
}

/// An Agent as a client would create it and the state would hold it at `rv`.
fn agent(i: usize) -> Arc<Obj> {
    let obj = json!({
        "apiVersion": "ark.mckinsey.com/v1alpha1",
        "kind": "Agent",
        "metadata": {
            "name": format!("agent-{i}"),
            "namespace": format!("team-{}", i % 20),
            "uid": format!("6c1b4a54-8b7e-4a4e-9a57-{i:012x}"),
            "resourceVersion": (i + 1).to_string(),
            "generation": 1,
            "creationTimestamp": "2026-01-02T03:04:05Z",
            "labels": {"app.kubernetes.io/name": "support", "tier": "backend"},
            "annotations": {"ark.mckinsey.com/owner": "platform-team"},
            "managedFields": [{
                "manager": "kubectl-client-side-apply", "operation": "Update",
                "apiVersion": "ark.mckinsey.com/v1alpha1", "time": "2026-01-02T03:04:05Z",
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:spec": {".": {}, "f:modelRef": {}, "f:prompt": {}}}
            }]
        },
        "spec": {
            "description": format!("support agent {i}"),
            "prompt": "You answer questions about the customer's order history politely. ".repeat(3),
            "modelRef": {"name": "default"},
            "tools": [{"type": "mcp", "name": "web-search"}]
        },
        "status": {"conditions": [{"type": "Available", "status": "True", "reason": "ModelReady",
                                   "lastTransitionTime": "2026-01-02T03:04:09Z"}]}
    });
    let cols = Columns::from_object(&obj).expect("a complete object");
    Arc::new(Obj::new(assemble(cols, (i + 1) as i64)))
}

fn bench(c: &mut Criterion) {
    let resources = Resources::builtin().expect("builtin definitions");
    let def = resources.get("v1alpha1", "agents").expect("agents").clone();
    let list = ListResult {
        items: (0..ITEMS).map(agent).collect(),
        resource_version: ITEMS.to_string(),
        continue_token: None,
        remaining: None,
    };

    // All JSON paths must write the same document.
    let value_list = |r: &ListResult| {
        let items: Vec<Value> = r.items.iter().map(|o| o.value()).collect();
        let v = json!({"apiVersion": def.api_version, "kind": def.list_kind,
                       "metadata": registry::list_meta(r), "items": items});
        serde_json::to_vec(&v).expect("a Value serializes")
    };
    let parsed: Vec<Value> = list.items.iter().map(|o| o.value()).collect();
    let borrowed_list = |r: &ListResult, values: &[Value]| {
        let list = BorrowedList {
            api_version: &def.api_version,
            kind: &def.list_kind,
            metadata: registry::list_meta(r),
            items: values.iter().collect(),
        };
        serde_json::to_vec(&list).expect("a list serializes")
    };
    let joined = registry::list_json(&def, &list);
    assert_eq!(joined, value_list(&list));
    assert_eq!(joined, borrowed_list(&list, &parsed));
    let table_json = |r: &ListResult| {
        let values: Vec<Value> = r.items.iter().map(|o| o.value()).collect();
        let t = table::render(
            &def.printer_columns,
            &values,
            registry::list_meta(r),
            IncludeObject::Metadata,
            "v1",
            chrono::Utc::now(),
        );
        serde_json::to_vec(&t).expect("a Value serializes")
    };
    let table_bytes = table_json(&list);
    eprintln!(
        "render: {ITEMS} items, JSON list {} bytes ({} per item), Table {} bytes",
        joined.len(),
        joined.len() / ITEMS,
        table_bytes.len()
    );

    let mut g = c.benchmark_group("render_list_10k");
    g.throughput(Throughput::Elements(ITEMS as u64));
    g.bench_function("json_preserialized", |b| {
        b.iter(|| registry::list_json(&def, black_box(&list)).len())
    });
    g.bench_function("json_value", |b| {
        b.iter(|| value_list(black_box(&list)).len())
    });
    g.bench_function("json_serde_only", |b| {
        b.iter(|| borrowed_list(black_box(&list), black_box(&parsed)).len())
    });
    g.bench_function("table", |b| b.iter(|| table_json(black_box(&list)).len()));
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::quick();
    targets = bench
}
criterion_main!(benches);
