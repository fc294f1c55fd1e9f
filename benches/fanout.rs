//! Fan-out of one write to a fleet of watchers: the cost, for the whole fleet, of one
//! committed transaction with one change, from `State::apply` until every watcher has
//! taken the event (and encoded its frame) or filtered it out and gone back to waiting.
//!
//! The watchers are a mix, as a cluster's informers and `kubectl get -w` would be: two in
//! five are sent the event (all namespaces; its namespace with a matching label selector),
//! three in five drop it (another namespace; all namespaces with a selector its labels
//! fail; its namespace with a selector its labels fail). All watch the same kind, so every
//! one is woken.
//!
//! Two ways of reading, each with N = 1, 200 and 10,000 watchers:
//! - `tasks`: each watcher is a tokio task awaiting `Watch::next`, as the HTTP layer's watch
//!   streams are, on a multi-thread runtime with one worker per core but the writer's. The
//!   time includes waking N tasks through the kind's channel and scheduling them, and one
//!   wake-up of the bench thread when the last is done. A watcher counts as done when a
//!   poll of `next` goes back to Pending having seen the new state (see [`watcher`]), so
//!   matching and filtering watchers are measured alike.
//! - `drain`: the same fleet read on one thread with `Watch::try_next`, right after the
//!   apply: the CPU work of the fan-out itself (apply, history reads, selector checks,
//!   encoding), without wake-ups and scheduling.
//!
//! A matching watcher writes its JSON frame itself, as the API does (the object's stored
//! JSON between the event type and the closing brace: one copy per watcher, no frame kept
//! on the event).
//! Opening the watchers and building each change's object (`Obj::new` serializes it) are
//! outside the timed part.

mod common;

use std::future::Future;
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use serde_json::json;
use tokio::runtime::Runtime;
use tokio::sync::Notify;

use ark_apiserver::k8s::selector::{FieldSelector, LabelSelector};
use ark_apiserver::watch::{
    Change, Config, EventType, Frame, Obj, Rv, Start, State, Watch, WatchItem, WatchRequest,
};

const SIZES: [usize; 3] = [1, 200, 10_000];
const KIND: &str = "Agent";
/// Objects in the state besides the one that changes, so its maps are not trivially small.
const SEEDED: usize = 1_000;

/// The i-th watcher of the mix; the changing object is in `team-a` with labels
/// `app=chat, tier=backend`.
fn request(i: usize) -> WatchRequest {
    let (namespace, selector) = match i % 5 {
        0 => (None, ""),
        1 => (Some("team-a"), "app=chat"),
        2 => (Some("team-b"), ""),
        3 => (None, "tier in (frontend,edge)"),
        _ => (Some("team-a"), "app=chat,tier!=backend"),
    };
    WatchRequest {
        kind: KIND.into(),
        namespace: namespace.map(str::to_string),
        labels: LabelSelector::parse(selector).expect("a valid selector"),
        fields: FieldSelector::default(),
        start: Start::Now,
    }
}

/// How many of the first `n` watchers are sent the event.
fn matching(n: usize) -> usize {
    (0..n).filter(|i| i % 5 < 2).count()
}

fn agent(namespace: &str, name: &str, uid: usize, rv: Rv, labels: serde_json::Value) -> Arc<Obj> {
    Arc::new(Obj::new(json!({
        "apiVersion": "ark.mckinsey.com/v1alpha1",
        "kind": KIND,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": format!("6c1b4a54-8b7e-4a4e-9a57-{uid:012x}"),
            "resourceVersion": rv.to_string(),
            "generation": 1,
            "creationTimestamp": "2026-01-02T03:04:05Z",
            "labels": labels,
        },
        "spec": {"prompt": "You answer questions about orders.", "modelRef": {"name": "default"}},
        "status": {"phase": "Ready", "observedRevision": rv,
                   "conditions": [{"type": "Available", "status": "True"}]}
    })))
}

/// A state seeded with `SEEDED` agents across ten namespaces, `chat` in `team-a` among them.
fn seeded_state() -> State {
    let state = State::new(Config::default());
    let mut objects: Vec<Arc<Obj>> = (1..SEEDED)
        .map(|i| {
            let ns = format!("team-{}", (b'a' + (i % 10) as u8) as char);
            agent(
                &ns,
                &format!("agent-{i}"),
                i,
                i as Rv,
                json!({"app": "other", "tier": "frontend"}),
            )
        })
        .collect();
    objects.push(changed(SEEDED as Rv));
    state.reset(objects, SEEDED as Rv);
    state
}

/// The object every measured transaction changes, at `rv`.
fn changed(rv: Rv) -> Arc<Obj> {
    agent(
        "team-a",
        "chat",
        0,
        rv,
        json!({"app": "chat", "tier": "backend"}),
    )
}

/// A JSON watch frame, as `api/watch.rs` writes one from the object's stored JSON.
fn frame(ty: EventType, obj: &Obj) -> Frame {
    let mut b = Vec::with_capacity(obj.json_len() + 32);
    b.extend_from_slice(b"{\"type\":\"");
    b.extend_from_slice(ty.as_str().as_bytes());
    b.extend_from_slice(b"\",\"object\":");
    obj.with_json(|j| b.extend_from_slice(j));
    b.extend_from_slice(b"}\n");
    Ok(Bytes::from(b))
}

/// What the tasks report to the bench.
struct Progress {
    /// Watchers done with the latest transaction.
    done: AtomicUsize,
    /// Events received (for the setup's check of the mix).
    received: AtomicUsize,
    watchers: usize,
    all_done: Notify,
}

/// One watcher as a task: await the next item, encode events, repeat.
///
/// A poll of `next` that returns Pending has read (or skipped) everything in the state it
/// saw. The state's rv is read before and after the poll: when both agree, the poll saw
/// that rv and the watcher is done with it. When a transaction landed during the poll, the
/// poll may or may not have seen it (and if it did, no wake-up will follow), so the task
/// wakes itself to look again. Tasks can also be polled when nothing changed, so a poll
/// counts only for an rv newer than the one the watcher last reported.
async fn watcher(mut w: Watch, state: State, mut reported: Rv, progress: Arc<Progress>) {
    loop {
        let mut next = std::pin::pin!(w.next());
        let item = std::future::poll_fn(|cx| {
            let before = state.rv();
            let poll = next.as_mut().poll(cx);
            if poll.is_pending() {
                let after = state.rv();
                if after != before {
                    cx.waker().wake_by_ref();
                } else if after > reported {
                    reported = after;
                    if progress.done.fetch_add(1, Ordering::AcqRel) + 1 == progress.watchers {
                        progress.all_done.notify_one();
                    }
                }
            }
            poll
        })
        .await;
        match item {
            Some(WatchItem::Event(ev)) => {
                progress.received.fetch_add(1, Ordering::Relaxed);
                let _ = black_box(frame(ev.ty(), ev.object()));
            }
            Some(_) => {}
            None => return,
        }
    }
}

/// N watcher tasks on a runtime, and the writer's side of the state.
struct Tasks {
    // Dropped first: shutting the runtime down ends the tasks and their watches.
    rt: Runtime,
    state: State,
    progress: Arc<Progress>,
    rv: Rv,
}

impl Tasks {
    fn new(n: usize) -> Tasks {
        // The writer (this thread) keeps a core of its own, as the stream task does: with
        // more runnable threads than cores, the writer is preempted midway through waking
        // the fleet and the figures swing by 3x from run to run. The watchers need no I/O
        // or timer driver.
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get() - 1);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers.max(1))
            .build()
            .expect("a tokio runtime");
        let state = seeded_state();
        let progress = Arc::new(Progress {
            done: AtomicUsize::new(0),
            received: AtomicUsize::new(0),
            watchers: n,
            all_done: Notify::new(),
        });
        let start = state.rv();
        for i in 0..n {
            let w = rt
                .block_on(state.watch(request(i), Duration::ZERO))
                .expect("a watch from now");
            rt.spawn(watcher(w, state.clone(), start, Arc::clone(&progress)));
        }
        let mut t = Tasks {
            rt,
            state,
            progress,
            rv: start,
        };
        // One untimed round, so that every task has started and is waiting; it also checks
        // that the mix is what the docs say.
        let obj = t.next_change();
        t.write(obj);
        assert_eq!(t.progress.received.load(Ordering::Relaxed), matching(n));
        t
    }

    fn next_change(&mut self) -> Arc<Obj> {
        self.rv += 1;
        changed(self.rv)
    }

    /// Applies one transaction and waits until every watcher is done with it.
    fn write(&self, obj: Arc<Obj>) {
        self.progress.done.store(0, Ordering::Release);
        let outcome = self.state.apply(vec![Change::Put(obj)]);
        debug_assert_eq!(outcome.events, 1);
        self.rt.block_on(self.progress.all_done.notified());
    }
}

/// N watchers read on the bench thread.
struct Drained {
    state: State,
    watches: Vec<Watch>,
    rv: Rv,
}

impl Drained {
    fn new(n: usize) -> Drained {
        // Opening a watch from now does not wait, but `State::watch` is async.
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a tokio runtime");
        let state = seeded_state();
        let watches = (0..n)
            .map(|i| {
                rt.block_on(state.watch(request(i), Duration::ZERO))
                    .expect("a watch from now")
            })
            .collect();
        let rv = state.rv();
        let mut d = Drained { state, watches, rv };
        let obj = d.next_change();
        assert_eq!(d.write(obj), matching(n));
        d
    }

    fn next_change(&mut self) -> Arc<Obj> {
        self.rv += 1;
        changed(self.rv)
    }

    /// Applies one transaction and reads every watcher dry; returns the events received.
    fn write(&mut self, obj: Arc<Obj>) -> usize {
        self.state.apply(vec![Change::Put(obj)]);
        let mut received = 0;
        for w in &mut self.watches {
            while let Some(item) = w.try_next() {
                if let WatchItem::Event(ev) = item {
                    received += 1;
                    let _ = black_box(frame(ev.ty(), ev.object()));
                }
            }
        }
        received
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("fanout");
    for n in SIZES {
        g.throughput(Throughput::Elements(n as u64));

        let mut tasks = Tasks::new(n);
        g.bench_function(BenchmarkId::new("tasks", n), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let obj = tasks.next_change();
                    let started = Instant::now();
                    tasks.write(obj);
                    total += started.elapsed();
                }
                total
            })
        });
        drop(tasks);

        let mut drained = Drained::new(n);
        g.bench_function(BenchmarkId::new("drain", n), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let obj = drained.next_change();
                    let started = Instant::now();
                    black_box(drained.write(obj));
                    total += started.elapsed();
                }
                total
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::quick();
    targets = bench
}
criterion_main!(benches);
