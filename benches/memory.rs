//! Where the bytes of the in-memory state go, per object, counted by the allocator.
//!
//! Builds N Query-shaped objects (about 930 bytes of JSON each, as the API returns them:
//! input, a target, a status with one response, two labels) the way a seed does (one
//! `serde_json::Value` per row, turned into an `Obj`), installs them with `State::reset`,
//! and reports the bytes still allocated against the JSON they hold, split into the JSON
//! buffers, the rest of each object, and the state's maps. It also reports the peak while
//! seeding, which is what a restart costs on top.
//!
//! `cargo bench --bench memory` (N = 200,000; `ARK_MEMORY_OBJECTS` to change it). This
//! counts allocated bytes, not RSS: the load generator's scale scenario measures the
//! server's RSS beside it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};

use ark_apiserver::watch::{Config, Dict, Obj, State};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size >= layout.size() {
            let now = LIVE.fetch_add(new_size - layout.size(), Ordering::Relaxed)
                + (new_size - layout.size());
            PEAK.fetch_max(now, Ordering::Relaxed);
        } else {
            LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// The i-th Query, shaped as `store::row::assemble` returns a row.
fn query(i: usize) -> Value {
    json!({
        "apiVersion": "ark.mckinsey.com/v1alpha1",
        "kind": "Query",
        "metadata": {
            "name": format!("query-{i}"),
            "namespace": format!("ns-{}", i % 10),
            "uid": format!("{:08x}-7d3e-4c2a-9b1f-{:012x}", i, i * 7919),
            "resourceVersion": (i + 2).to_string(),
            "generation": 1,
            "creationTimestamp": "2026-12-01T10:00:00Z",
            "labels": {"ark.mckinsey.com/agent": format!("agent-{}", i % 100), "team": format!("team-{}", i % 7)}
        },
        "spec": {
            "input": format!("Summarise the quarterly revenue report for region {} and list the three largest changes against the previous quarter, with figures.", i % 97),
            "targets": [{"type": "agent", "name": format!("agent-{}", i % 100)}],
            "timeout": "5m", "ttl": "720h", "serviceAccount": "default"
        },
        "status": {
            "phase": "done",
            "responses": [{
                "target": {"type": "agent", "name": format!("agent-{}", i % 100)},
                "content": "Revenue rose 4.2% quarter on quarter. The largest changes: cloud services +12.1% (EUR 3.4m), hardware -6.3% (EUR 1.1m), consulting +3.9% (EUR 0.8m). Margins held at 31%.",
                "phase": "done"
            }],
            "tokenUsage": {"promptTokens": 412 + i % 50, "completionTokens": 96 + i % 40, "totalTokens": 508 + i % 90},
            "duration": "2.314s"
        }
    })
}

fn mib(b: usize) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn main() {
    // `cargo bench` passes --bench; this target takes no options of its own.
    let n: usize = std::env::var("ARK_MEMORY_OBJECTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let per = |b: usize| b as f64 / n as f64;
    let vec_bytes = n * std::mem::size_of::<Arc<Obj>>();

    // Where the bytes go: the objects as the seed builds them one row at a time, the same
    // objects cold (compressed with a dictionary trained on a sample, as the seed does),
    // then the state's maps over them.
    let base = LIVE.load(Ordering::Relaxed);
    let mut json_bytes = 0usize;
    let mut objects = Vec::with_capacity(n);
    for i in 0..n {
        let obj = Obj::new(query(i));
        json_bytes += obj.json_len();
        objects.push(Arc::new(obj));
    }
    let plain_objects = LIVE.load(Ordering::Relaxed) - base - vec_bytes;
    let step = (n / 1_000).max(1);
    let sample: Vec<_> = objects.iter().step_by(step).map(|o| o.json()).collect();
    let dict =
        Arc::new(Dict::train(sample.iter().map(|b| &b[..])).expect("enough objects to train on"));
    drop(sample);
    let before_cooling = LIVE.load(Ordering::Relaxed);
    for o in &mut objects {
        if let Some(cold) = o.cooled(&dict) {
            *o = Arc::new(cold);
        }
    }
    let cold_objects = plain_objects - (before_cooling - LIVE.load(Ordering::Relaxed));
    let state = State::new(Config::default());
    let before_maps = LIVE.load(Ordering::Relaxed);
    state.reset(objects, n as u64 + 1);
    let maps = (LIVE.load(Ordering::Relaxed) + vec_bytes).saturating_sub(before_maps);
    drop(state);
    drop(dict);

    // The seed's own path: plain objects handed to the state, which cools them.
    let base = LIVE.load(Ordering::Relaxed);
    let objects: Vec<Arc<Obj>> = (0..n).map(|i| Arc::new(Obj::new(query(i)))).collect();
    PEAK.store(LIVE.load(Ordering::Relaxed), Ordering::Relaxed);
    let state = State::new(Config::default());
    state.reset(objects, n as u64 + 1);
    let seed_peak = PEAK.load(Ordering::Relaxed) - base;
    let total = LIVE.load(Ordering::Relaxed) - base;

    let json_per = per(json_bytes);
    println!(
        "memory: {n} Query objects, {:.1} MiB of JSON ({json_per:.0} B each)",
        mib(json_bytes)
    );
    println!("  JSON text (plain)         {:>8.0} B/object", json_per);
    println!(
        "  rest of a plain object    {:>8.0} B/object (allocated {:.0} B per object in all)",
        per(plain_objects) - json_per,
        per(plain_objects)
    );
    println!(
        "  a cold object, in all     {:>8.0} B/object (compressed JSON and the rest)",
        per(cold_objects)
    );
    println!(
        "  state maps (key, uid, labels) {:>4.0} B/object",
        per(maps)
    );
    println!(
        "  total, as seeded          {:>8.0} B/object = {:.2}x the JSON ({:.1} MiB)",
        per(total),
        total as f64 / json_bytes as f64,
        mib(total)
    );
    println!(
        "  peak while installing     {:.1} MiB = {:.2}x the JSON",
        mib(seed_peak),
        seed_peak as f64 / json_bytes as f64
    );
    drop(state);
}
