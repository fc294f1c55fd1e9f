//! Rendering cost of list responses: plain JSON and the Table kubectl asks for.
//! (The full benchmark suite and load generator arrive with the benchmark issue.)

use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::{json, Value};

use ark_apiserver::k8s::resource::Resources;
use ark_apiserver::k8s::table::{self, IncludeObject};

fn agents(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            json!({
                "apiVersion": "ark.mckinsey.com/v1alpha1", "kind": "Agent",
                "metadata": {"name": format!("agent-{i}"), "namespace": "default", "uid": "6c1b4a54-8b7e-4a4e-9a57-3f0f1bb0a001",
                    "resourceVersion": i.to_string(), "generation": 1, "creationTimestamp": "2026-01-01T00:00:00Z", "labels": {"app": "bench"}},
                "spec": {"prompt": "x".repeat(200), "modelRef": {"name": "default"}},
                "status": {"conditions": [{"type": "Available", "status": "True"}]}
            })
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let resources = Resources::builtin().expect("builtin definitions");
    let def = resources.get("v1alpha1", "agents").expect("agents").clone();
    let items = agents(10_000);
    c.bench_function("list_json_10k_agents", |b| {
        b.iter(|| serde_json::to_vec(&json!({"items": &items})).unwrap().len())
    });
    c.bench_function("list_table_10k_agents", |b| {
        b.iter(|| {
            let t = table::render(
                &def.printer_columns,
                &items,
                Default::default(),
                IncludeObject::Metadata,
                "v1",
                chrono::Utc::now(),
            );
            serde_json::to_vec(&t).unwrap().len()
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = bench
}
criterion_main!(benches);
