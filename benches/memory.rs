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

use ark_apiserver::watch::{Config, Obj, State};

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
    let base = LIVE.load(Ordering::Relaxed);

    // The objects alone, as the seed builds them one row at a time.
    let mut json_bytes = 0usize;
    let mut objects = Vec::with_capacity(n);
    for i in 0..n {
        let obj = Obj::new(query(i));
        json_bytes += obj.json().len();
        objects.push(Arc::new(obj));
    }
    let vec_bytes = n * std::mem::size_of::<Arc<Obj>>();
    let after_objects = LIVE.load(Ordering::Relaxed) - base - vec_bytes;

    PEAK.store(LIVE.load(Ordering::Relaxed), Ordering::Relaxed);
    let state = State::new(Config::default());
    state.reset(objects, n as u64 + 1);
    let seed_peak = PEAK.load(Ordering::Relaxed) - base;
    let total = LIVE.load(Ordering::Relaxed) - base;
    let maps = total - after_objects;

    let per = |b: usize| b as f64 / n as f64;
    let json_per = per(json_bytes);
    println!(
        "memory: {n} Query objects, {:.1} MiB of JSON ({json_per:.0} B each)",
        mib(json_bytes)
    );
    println!("  JSON text                 {:>8.0} B/object", json_per);
    println!(
        "  rest of each object       {:>8.0} B/object (allocated {:.0} B per object in all)",
        per(after_objects) - json_per,
        per(after_objects)
    );
    println!("  state maps (key, uid)     {:>8.0} B/object", per(maps));
    println!(
        "  total                     {:>8.0} B/object = {:.2}x the JSON ({:.1} MiB)",
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
