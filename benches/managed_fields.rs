//! The field manager's cost per write, on a Query of the shape the load generator and
//! issue 12's scale scenario use (input, target, labels):
//! - `create`: the Update entry of a create (everything the object sets is new);
//! - `update`: a merge patch changing one field of an object that has that entry;
//! - `apply_noop` / `apply_change`: a server-side apply of the same configuration again,
//!   and of one with a changed field.
//!
//! Every write through the API pays one of these on top of the rest of its path, so the
//! figures read beside the write path's CPU per request in BENCHMARKS.md.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::{json, Value};

use ark_apiserver::apply::{self, managed, Endpoint};
use ark_apiserver::k8s::resource::Resources;

fn query(prompt: &str) -> Value {
    json!({
        "apiVersion": "ark.mckinsey.com/v1alpha1", "kind": "Query",
        "metadata": {"name": "q-1", "namespace": "team-a", "uid": "6c1b4a54-8b7e-4a4e-9a57-000000000001",
                     "labels": {"app": "support", "tier": "backend"}},
        "spec": {"input": prompt, "target": {"type": "agent", "name": "planner"},
                 "timeout": "5m", "ttl": "720h"}
    })
}

fn bench(c: &mut Criterion) {
    let resources = Resources::builtin().expect("builtin definitions");
    let def = resources
        .get("v1alpha1", "queries")
        .expect("queries")
        .clone();
    let ignored = apply::reset_fields(false, def.has_status);
    let ep = Endpoint {
        schema: &def.merge_type,
        api_version: &def.api_version,
        kind: &def.kind,
        subresource: None,
        ignored: ignored.as_ref(),
        now: "2026-12-03T10:00:00Z",
    };
    let mut g = c.benchmark_group("managed_fields");
    g.bench_function("create", |b| {
        b.iter(|| {
            let mut new = query("What is the weather in Lisbon this weekend?");
            managed::record_update(&ep, None, &mut new, "kubectl");
            black_box(new)
        })
    });
    let mut live = query("What is the weather in Lisbon this weekend?");
    managed::record_update(&ep, None, &mut live, "kubectl");
    g.bench_function("update", |b| {
        b.iter(|| {
            let mut new = live.clone();
            new["spec"]["input"] = json!("And the weekend after?");
            managed::record_update(&ep, Some(&live), &mut new, "editor");
            black_box(new)
        })
    });
    let config = query("What is the weather in Lisbon this weekend?");
    let applied = managed::apply(&ep, None, &config, "flux", false)
        .unwrap()
        .object;
    g.bench_function("apply_noop", |b| {
        b.iter(|| black_box(managed::apply(&ep, Some(&applied), &config, "flux", false).unwrap()))
    });
    let changed = query("And the weekend after?");
    g.bench_function("apply_change", |b| {
        b.iter(|| black_box(managed::apply(&ep, Some(&applied), &changed, "flux", false).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
