//! The consistency test with three replicas and two leader kills: 8 writers spread over
//! the replicas, 20 watchers spread over them with different selections and start points,
//! the leader killed with SIGKILL twice during the run and restarted each time. Every
//! watcher sees every committed change of its selection exactly once, in commit order,
//! resuming on another replica from its last resourceVersion whenever its stream ends, and
//! ends equal to the table; at no point do two processes consume the slot. The ground
//! truth is the WAL, read through a test-only test_decoding slot.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::harness::TestDb;
use crate::startup_failures::{http, Serve};
use crate::stream_faults::wait_ready;
use crate::watch::{agents, rv_of, GV};
use crate::watch_consistency::{
    check, fold_and_truth, key_of, marker_labels, parse_change, Change, Key, Observed, StartAt,
    MARKER, NAMESPACES, SELS,
};

const REPLICAS: usize = 3;
const WRITERS: u64 = 8;
const OPS: usize = 50;

/// The replicas by index; a killed one is restarted under the same id on a new port.
struct Fleet {
    db_url: String,
    slot: String,
    procs: tokio::sync::Mutex<Vec<Serve>>,
    bases: Mutex<Vec<String>>,
}

impl Fleet {
    fn args(&self, i: usize) -> Vec<String> {
        [
            "--slot-name",
            &self.slot,
            "--replica-id",
            &format!("r{i}"),
            "--replication-timeout",
            "3s",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    fn start(&self, i: usize) -> Serve {
        let args = self.args(i);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        Serve::start(&self.db_url, &refs)
    }

    fn base(&self, i: usize) -> String {
        self.bases.lock().unwrap()[i % REPLICAS].clone()
    }
}

async fn slot_consumers(c: &tokio_postgres::Client, slot: &str) -> Vec<String> {
    c.query(
        "SELECT w.application_name FROM pg_replication_slots s \
         JOIN pg_stat_replication w ON w.pid = s.active_pid WHERE s.slot_name = $1",
        &[&slot],
    )
    .await
    .map(|rows| rows.iter().map(|r| r.get(0)).collect())
    .unwrap_or_default()
}

/// One request; `None` when the replica could not be reached or answered 5xx (it is
/// being killed or has not caught up): the caller moves on to another replica.
async fn call(
    method: reqwest::Method,
    url: &str,
    content_type: &str,
    body: Option<&Value>,
) -> Option<(u16, Value)> {
    let mut r = http().request(method, url).timeout(Duration::from_secs(10));
    if let Some(b) = body {
        r = r.header("content-type", content_type).body(b.to_string());
    }
    let resp = r.send().await.ok()?;
    let code = resp.status().as_u16();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    (code < 500).then_some((code, v))
}

#[derive(Default)]
struct Progress {
    ops: AtomicUsize,
}

async fn writer(fleet: Arc<Fleet>, id: u64, progress: Arc<Progress>) -> BTreeMap<u16, usize> {
    let mut rng = StdRng::seed_from_u64(2000 + id);
    let mut codes = BTreeMap::new();
    let colors = ["red", "blue", "green"];
    for i in 0..OPS {
        let ns = NAMESPACES[rng.random_range(0..3)];
        let name = format!("n{}", rng.random_range(0..8));
        let color = colors[rng.random_range(0..3)];
        let gold = rng.random_bool(0.5);
        let op = rng.random_range(0..100);
        progress.ops.fetch_add(1, Ordering::SeqCst);
        // A replica that is down or not ready: the same write on the next one.
        let mut result = None;
        for attempt in 0..REPLICAS * 2 {
            let base = fleet.base(id as usize + i + attempt);
            let path = format!("{base}{}/{name}", agents(ns));
            result = if op < 35 {
                let mut labels = json!({"color": color, "writer": id.to_string()});
                if gold {
                    labels["tier"] = json!("gold");
                }
                let obj = json!({"apiVersion": "ark.mckinsey.com/v1alpha1", "kind": "Agent",
                    "metadata": {"name": name, "labels": labels}, "spec": {"prompt": format!("w{id} op{i}")}});
                call(
                    reqwest::Method::POST,
                    &format!("{base}{}", agents(ns)),
                    "application/json",
                    Some(&obj),
                )
                .await
            } else if op < 75 {
                let tier = if gold { json!("gold") } else { json!(null) };
                let patch = json!({"metadata": {"labels": {"color": color, "tier": tier}}, "spec": {"prompt": format!("w{id} op{i}")}});
                call(
                    reqwest::Method::PATCH,
                    &path,
                    "application/merge-patch+json",
                    Some(&patch),
                )
                .await
            } else {
                call(reqwest::Method::DELETE, &path, "", None).await
            };
            if result.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let code = result.map(|(c, _)| c).unwrap_or(0);
        assert!(
            matches!(code, 200 | 201 | 404 | 409),
            "writer {id} op {i}: {code} on every replica"
        );
        *codes.entry(code).or_default() += 1;
    }
    codes
}

/// Reads one watch response; partial lines at a broken end are dropped (the replica was
/// killed mid-write: the event is sent again after the resume).
struct Stream {
    resp: reqwest::Response,
    buf: Vec<u8>,
}

enum Got {
    Line(Value),
    Ended,
    Quiet,
}

impl Stream {
    async fn next(&mut self, within: Duration) -> Got {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return Got::Line(serde_json::from_slice(&line).unwrap());
            }
            match tokio::time::timeout_at(deadline, self.resp.chunk()).await {
                Err(_) => return Got::Quiet,
                Ok(Ok(Some(b))) => self.buf.extend_from_slice(&b),
                Ok(Ok(None)) | Ok(Err(_)) => return Got::Ended,
            }
        }
    }
}

/// A watcher of `SELS[sel]` that starts from a LIST on replica `first` once `after_ops`
/// writes were made, and resumes on the next replica from its last resourceVersion each
/// time its stream ends.
async fn watcher(
    fleet: Arc<Fleet>,
    sel_i: usize,
    first: usize,
    after_ops: usize,
    progress: Arc<Progress>,
    until: tokio::time::Instant,
) -> (Observed, usize) {
    while progress.ops.load(Ordering::SeqCst) < after_ops {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let sel = &SELS[sel_i];
    let sep = if sel.query.is_empty() { "" } else { "&" };
    let mut k = first;
    let (rv, items) = loop {
        let url = format!("{}{}?{}", fleet.base(k), sel.path(), sel.query);
        if let Some((200, l)) = call(reqwest::Method::GET, &url, "", None).await {
            let items: BTreeMap<Key, u64> = l["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| (key_of(o), rv_of(o)))
                .collect();
            break (rv_of(&l), items);
        }
        k += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let stop = (sel.stop_ns().to_string(), MARKER.to_string());
    let mut lines = Vec::new();
    let mut cur = rv;
    let mut resumes = 0;
    'outer: while tokio::time::Instant::now() < until {
        let url = format!(
            "{}{}?watch=true&allowWatchBookmarks=true&resourceVersion={cur}{sep}{}",
            fleet.base(k),
            sel.path(),
            sel.query
        );
        let resp = match http().get(&url).send().await {
            Ok(r) if r.status() == 200 => r,
            Ok(r) => {
                let code = r.status().as_u16();
                let body = r.text().await.unwrap_or_default();
                // 410 would be a failure: record it so the check reports it.
                if code == 410 {
                    lines.push(json!({"type": "ERROR", "object": {"code": 410, "message": body}}));
                    break;
                }
                k += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Err(_) => {
                k += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let mut s = Stream {
            resp,
            buf: Vec::new(),
        };
        loop {
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            match s.next(left).await {
                Got::Line(v) => {
                    if v["type"] == "ERROR" {
                        lines.push(v);
                        break 'outer;
                    }
                    cur = rv_of(&v["object"]);
                    if v["type"] == "BOOKMARK" {
                        continue;
                    }
                    let done = v["type"] == "ADDED" && key_of(&v["object"]) == stop;
                    lines.push(v);
                    if done {
                        break 'outer;
                    }
                }
                Got::Ended => {
                    resumes += 1;
                    k += 1;
                    continue 'outer;
                }
                Got::Quiet => break 'outer,
            }
        }
    }
    (
        Observed {
            sel: sel_i,
            start: StartAt::ListRv,
            path: format!("{}?{}", sel.path(), sel.query),
            list: Some((rv, items)),
            lines,
        },
        resumes,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_three_replicas_and_two_leader_kills_every_watcher_sees_every_change_once_in_order() {
    let db = TestDb::new().await;
    let fleet = Arc::new(Fleet {
        db_url: db.url.clone(),
        slot: db.slot_name(),
        procs: tokio::sync::Mutex::new(Vec::new()),
        bases: Mutex::new(Vec::new()),
    });
    for i in 0..REPLICAS {
        let s = fleet.start(i);
        wait_ready(&http(), &s.base, Duration::from_secs(60)).await;
        fleet.bases.lock().unwrap().push(s.base.clone());
        fleet.procs.lock().await.push(s);
    }
    let c = db.client().await;
    let truth = format!("{}_truth", db.slot_name());
    c.execute(
        "SELECT pg_create_logical_replication_slot($1, 'test_decoding')",
        &[&truth],
    )
    .await
    .unwrap();
    // At no point two consumers of the slot.
    let max_consumers = Arc::new(AtomicUsize::new(0));
    let monitor = {
        let (url, slot, max) = (db.url.clone(), db.slot_name(), max_consumers.clone());
        tokio::spawn(async move {
            let c = crate::harness::connect(&url).await;
            loop {
                let n = slot_consumers(&c, &slot).await.len();
                max.fetch_max(n, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    let progress = Arc::new(Progress::default());
    let total = WRITERS as usize * OPS;
    let until = tokio::time::Instant::now() + Duration::from_secs(120);
    let mut rng = StdRng::seed_from_u64(7);
    let mut watchers = Vec::new();
    for (i, _) in SELS.iter().enumerate() {
        for round in 0..2 {
            let after = if round == 0 {
                0
            } else {
                rng.random_range(1..total * 3 / 4)
            };
            watchers.push(tokio::spawn(watcher(
                fleet.clone(),
                i,
                i + round,
                after,
                progress.clone(),
                until,
            )));
        }
    }
    let writers: Vec<_> = (0..WRITERS)
        .map(|id| tokio::spawn(writer(fleet.clone(), id, progress.clone())))
        .collect();

    // Kill the leader twice during the run, restarting it each time.
    let mut failovers = Vec::new();
    for at in [total / 3, total * 2 / 3] {
        while progress.ops.load(Ordering::SeqCst) < at {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let holder = slot_consumers(&c, &db.slot_name()).await;
        let [name] = holder.as_slice() else {
            panic!("the slot's consumers: {holder:?}");
        };
        let i: usize = name
            .strip_prefix("ark-apiserver-cdc/r")
            .unwrap()
            .parse()
            .unwrap();
        let killed = std::time::Instant::now();
        {
            let procs = fleet.procs.lock().await;
            std::process::Command::new("kill")
                .args(["-KILL", &procs[i].pid().to_string()])
                .status()
                .unwrap();
        }
        loop {
            match slot_consumers(&c, &db.slot_name()).await.as_slice() {
                [one] if one != name => break,
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
            assert!(killed.elapsed() < Duration::from_secs(10), "no failover");
        }
        failovers.push(killed.elapsed());
        let s = fleet.start(i);
        wait_ready(&http(), &s.base, Duration::from_secs(60)).await;
        fleet.bases.lock().unwrap()[i] = s.base.clone();
        fleet.procs.lock().await[i] = s;
    }
    let mut codes: BTreeMap<u16, usize> = BTreeMap::new();
    for w in writers {
        for (code, n) in w.await.unwrap() {
            *codes.entry(code).or_default() += n;
        }
    }
    // Markers every selection matches, one per namespace, in order.
    let mut stop_rvs = BTreeMap::new();
    for (n, ns) in NAMESPACES.iter().enumerate() {
        let m = json!({"apiVersion": "ark.mckinsey.com/v1alpha1", "kind": "Agent",
            "metadata": {"name": MARKER, "labels": marker_labels()}, "spec": {"prompt": "marker"}});
        let url = format!("{}{}", fleet.base(n), agents(ns));
        let (code, made) = call(reqwest::Method::POST, &url, "application/json", Some(&m))
            .await
            .unwrap();
        assert_eq!(code, 201, "{made}");
        stop_rvs.insert(ns.to_string(), rv_of(&made));
    }
    let mut observed = Vec::new();
    let mut resumes = 0;
    for w in watchers {
        let (o, r) = w.await.unwrap();
        resumes += r;
        observed.push(o);
    }
    monitor.abort();

    let changes: Vec<Change> = c
        .query(
            "SELECT data FROM pg_logical_slot_get_changes($1, NULL, NULL)",
            &[&truth],
        )
        .await
        .unwrap()
        .iter()
        .filter_map(|r| parse_change(r.get(0)))
        .collect();
    c.execute("SELECT pg_drop_replication_slot($1)", &[&truth])
        .await
        .unwrap();
    assert!(changes.len() > 150, "only {} changes", changes.len());
    let mut failures = Vec::new();
    for o in &observed {
        let stop_rv = stop_rvs[SELS[o.sel].stop_ns()];
        if let Err(e) = check(o, &changes, stop_rv) {
            failures.push(format!("watcher {}: {e}", o.path));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} watchers differ from the WAL ({} changes, {resumes} resumes, codes {codes:?}):\n{}",
        failures.len(),
        observed.len(),
        changes.len(),
        failures.join("\n\n")
    );
    assert!(
        resumes > 0,
        "no watch was resumed: the kills broke nothing?"
    );
    assert_eq!(
        max_consumers.load(Ordering::SeqCst),
        1,
        "two consumers at once"
    );
    eprintln!("failovers: {failovers:?}; watch resumes: {resumes}; codes {codes:?}");
    for f in &failovers {
        assert!(*f < Duration::from_secs(5), "failover took {f:?}");
    }
    // Every watcher's fold equals its selection of the table, and every replica's LIST is
    // the table.
    let table: BTreeMap<Key, u64> = c
        .query("SELECT namespace, name, resource_version FROM resources WHERE kind = 'Agent' AND deleted_at IS NULL", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| ((r.get(0), r.get(1)), r.get::<_, i64>(2) as u64))
        .collect();
    for o in &observed {
        let (mine, want) = fold_and_truth(o, &changes, stop_rvs[SELS[o.sel].stop_ns()]);
        assert_eq!(mine, want, "watcher {}", o.path);
    }
    for i in 0..REPLICAS {
        let url = format!("{}{GV}/agents", fleet.base(i));
        let (code, list) = call(reqwest::Method::GET, &url, "", None).await.unwrap();
        assert_eq!(code, 200);
        let listed: BTreeMap<Key, u64> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| (key_of(o), rv_of(o)))
            .collect();
        assert_eq!(listed, table, "replica r{i}'s LIST is not the table");
    }
}
