//! Watch latency: W watchers on one namespace, then creates at a fixed rate; every
//! (watcher, write) pair is one sample, timed from the write's acknowledgement and from the
//! start of its request. Every watcher must see every write: a missing event is an error,
//! which is what smoke mode checks.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use futures_util::StreamExt;

use crate::api::{self, Api};
use crate::stamps::{pair_from_writes, WriteStamps};
use crate::stats::{open_loop_n, LatencyPair};

pub struct WatchPlan {
    pub namespace: String,
    pub watchers: usize,
    /// HTTP/2 connections to spread the watchers over; `None` gives each watcher its own
    /// HTTP/1.1 connection, as separate processes would have.
    pub h2_connections: Option<usize>,
    pub rate: f64,
    pub writes: usize,
    /// Where the watchers connect, when not where the writes go (a follower replica).
    pub watch_base: Option<String>,
}

pub async fn watch_latency(
    base: &str,
    plan: &WatchPlan,
    on_open: impl FnOnce(),
) -> Result<LatencyPair, String> {
    let writer = Api::new(base, false)?;
    // The namespace's current resourceVersion: every watch starts there, so none misses a
    // write even if it connects late, and none replays older objects.
    let list = writer
        .list("queries", Some(&plan.namespace), "limit=1")
        .await?;
    let v: serde_json::Value = serde_json::from_slice(&list).map_err(|e| format!("list: {e}"))?;
    let rv = v["metadata"]["resourceVersion"]
        .as_str()
        .ok_or("list without metadata.resourceVersion")?
        .to_string();

    let watch_base = plan.watch_base.as_deref().unwrap_or(base);
    let clients: Vec<Api> = match plan.h2_connections {
        Some(c) => (0..c.max(1))
            .map(|_| Api::new(watch_base, true))
            .collect::<Result<_, _>>()?,
        None => vec![Api::new(watch_base, false)?],
    };
    let n = plan.writes;
    let opened = Arc::new(AtomicUsize::new(0));
    let open_errors = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(tokio::sync::Notify::new());
    let mut tasks = Vec::with_capacity(plan.watchers);
    let url = format!(
        "{}?watch=true&resourceVersion={rv}&timeoutSeconds=1800&allowWatchBookmarks=true",
        clients[0].collection("queries", &plan.namespace)
    );
    for w in 0..plan.watchers {
        let api = clients[w % clients.len()].clone();
        let url = url.clone();
        let opened = Arc::clone(&opened);
        let open_errors = Arc::clone(&open_errors);
        let done = Arc::clone(&done);
        tasks.push(tokio::spawn(async move {
            let resp = match api.http.get(&url).send().await {
                Ok(r) if r.status().is_success() => r,
                Ok(r) => {
                    open_errors.fetch_add(1, Ordering::Relaxed);
                    return Err(format!("watch answered {}", r.status()));
                }
                Err(e) => {
                    open_errors.fetch_add(1, Ordering::Relaxed);
                    return Err(format!("opening a watch: {e}"));
                }
            };
            opened.fetch_add(1, Ordering::Relaxed);
            let mut arrivals: Vec<Option<Instant>> = vec![None; n];
            let mut seen = 0;
            let mut buf = BytesMut::new();
            let mut body = resp.bytes_stream();
            let stop = done.notified();
            tokio::pin!(stop);
            while seen < n {
                let chunk = tokio::select! {
                    c = body.next() => c,
                    _ = &mut stop => break,
                };
                let chunk = match chunk {
                    Some(Ok(c)) => c,
                    Some(Err(e)) => return Err(format!("watch stream: {e}")),
                    None => return Err(format!("watch stream ended after {seen} of {n} events")),
                };
                let now = Instant::now();
                buf.extend_from_slice(&chunk);
                while let Some(nl) = buf.iter().position(|&b| b == b'\n') {
                    let line = buf.split_to(nl + 1);
                    if let Some(i) = api::event_name(&line, b"w-").and_then(parse_index) {
                        if i < n && arrivals[i].is_none() {
                            arrivals[i] = Some(now);
                            seen += 1;
                        }
                    }
                }
                if buf.remaining() > 8 << 20 {
                    return Err("a watch event line over 8 MiB".into());
                }
            }
            Ok(arrivals)
        }));
    }
    // Writes start once every watch is established, so connection setup is not latency.
    let deadline = Instant::now() + Duration::from_secs(120);
    while opened.load(Ordering::Relaxed) + open_errors.load(Ordering::Relaxed) < plan.watchers {
        if Instant::now() > deadline {
            return Err(format!(
                "only {} of {} watches opened within 120 s",
                opened.load(Ordering::Relaxed),
                plan.watchers
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    on_open();

    let stamps = Arc::new(WriteStamps::new(n));
    let ns = plan.namespace.clone();
    let (st, w2) = (Arc::clone(&stamps), writer.clone());
    let writes = open_loop_n(plan.rate, n, 1024, move |i| {
        let (stamps, api, ns) = (Arc::clone(&st), w2.clone(), ns.clone());
        async move {
            let name = format!("w-{i}");
            stamps.started(i);
            api.create("queries", &ns, api::query(&name, &ns, "bench-agent"))
                .await?;
            stamps.acked(i);
            Ok(())
        }
    })
    .await;
    // Watchers get a grace period after the last acknowledged write, then are stopped.
    let grace = tokio::spawn({
        let done = Arc::clone(&done);
        async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            done.notify_waiters();
        }
    });

    let mut pair = pair_from_writes(&writes);
    let mut missing = 0usize;
    for t in tasks {
        match t.await {
            Ok(Ok(arrivals)) => {
                missing += stamps.missing(&arrivals);
                stamps.add_latencies(&arrivals, &mut pair);
            }
            Ok(Err(e)) => {
                pair.from_ack.record_error(e.clone());
                pair.from_start.record_error(e);
            }
            Err(e) => {
                pair.from_ack.record_error(format!("watcher panicked: {e}"));
                pair.from_start
                    .record_error(format!("watcher panicked: {e}"));
            }
        }
    }
    grace.abort();
    if missing > 0 {
        let e = format!("{missing} (watcher, write) events never arrived");
        for half in [&mut pair.from_ack, &mut pair.from_start] {
            half.record_error(e.clone());
            half.errors += missing as u64 - 1;
        }
    }
    Ok(pair)
}

fn parse_index(name: &[u8]) -> Option<usize> {
    std::str::from_utf8(name.strip_prefix(b"w-")?)
        .ok()?
        .parse()
        .ok()
}
