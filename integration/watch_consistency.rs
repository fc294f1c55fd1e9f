//! Consistency of the watch under concurrent writers: every watcher, whatever its selector
//! and start point, sees every committed change of its selection exactly once, in commit
//! order. The ground truth is the WAL itself, read through a test-only test_decoding slot.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::{json, Value};

use crate::harness::TestServer;
use crate::watch::{agents, briefs, rv_of, Api, Next, GV};

pub(crate) type Key = (String, String);
pub(crate) type Labels = BTreeMap<String, String>;

/// One committed row change of an Agent, in commit order.
#[derive(Debug, Clone)]
pub(crate) struct Change {
    pub(crate) key: Key,
    pub(crate) rv: u64,
    deleted: bool,
    labels: Labels,
}

/// test_decoding's `name[type]:value` columns, with quoted values unescaped.
fn columns(mut rest: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    loop {
        rest = rest.trim_start();
        let Some(open) = rest.find('[') else {
            return out;
        };
        let name = rest[..open].to_string();
        let Some(close) = rest[open..].find("]:") else {
            return out;
        };
        rest = &rest[open + close + 2..];
        let value;
        if let Some(q) = rest.strip_prefix('\'') {
            let mut v = String::new();
            let mut chars = q.char_indices().peekable();
            let mut end = q.len();
            while let Some((i, c)) = chars.next() {
                if c == '\'' {
                    if let Some((_, '\'')) = chars.peek() {
                        chars.next();
                        v.push('\'');
                        continue;
                    }
                    end = i + 1;
                    break;
                }
                v.push(c);
            }
            value = v;
            rest = &q[end..];
        } else {
            let end = rest.find(' ').unwrap_or(rest.len());
            value = rest[..end].to_string();
            rest = &rest[end..];
        }
        out.push((name, value));
    }
}

pub(crate) fn parse_change(line: &str) -> Option<Change> {
    let rest = line.strip_prefix("table public.resources: ")?;
    let rest = rest
        .strip_prefix("INSERT: ")
        .or_else(|| rest.strip_prefix("UPDATE: "))?;
    let cols: BTreeMap<String, String> = columns(rest).into_iter().collect();
    if cols.get("kind").map(String::as_str) != Some("Agent") {
        return None;
    }
    let labels: Labels =
        serde_json::from_str(&cols["labels"]).unwrap_or_else(|e| panic!("labels of {line}: {e}"));
    Some(Change {
        key: (cols["namespace"].clone(), cols["name"].clone()),
        rv: cols["resource_version"].parse().unwrap(),
        deleted: cols.get("deleted_at").is_some_and(|v| v != "null"),
        labels,
    })
}

/// A watcher's selection: the query it sends and the same rule in Rust.
pub(crate) struct Sel {
    ns: Option<&'static str>,
    pub(crate) query: &'static str,
    pred: fn(&Key, &Labels) -> bool,
}

fn label<'a>(l: &'a Labels, k: &str) -> Option<&'a str> {
    l.get(k).map(String::as_str)
}

pub(crate) const SELS: [Sel; 10] = [
    Sel {
        ns: None,
        query: "",
        pred: |_, _| true,
    },
    Sel {
        ns: Some("ns0"),
        query: "",
        pred: |_, _| true,
    },
    Sel {
        ns: Some("ns1"),
        query: "labelSelector=color%3Dred",
        pred: |_, l| label(l, "color") == Some("red"),
    },
    Sel {
        ns: None,
        query: "labelSelector=tier%3Dgold",
        pred: |_, l| label(l, "tier") == Some("gold"),
    },
    Sel {
        ns: Some("ns2"),
        query: "labelSelector=color+in+%28red%2Cgreen%29",
        pred: |_, l| matches!(label(l, "color"), Some("red" | "green")),
    },
    Sel {
        ns: None,
        query: "labelSelector=color%21%3Dblue",
        pred: |_, l| label(l, "color") != Some("blue"),
    },
    Sel {
        ns: Some("ns0"),
        query: "labelSelector=tier&fieldSelector=metadata.name%21%3Dn3",
        pred: |k, l| l.contains_key("tier") && k.1 != "n3",
    },
    Sel {
        ns: None,
        query: "fieldSelector=metadata.namespace%3Dns1",
        pred: |k, _| k.0 == "ns1",
    },
    Sel {
        ns: None,
        query: "labelSelector=color%3Dred%2Ctier%3Dgold",
        pred: |_, l| label(l, "color") == Some("red") && label(l, "tier") == Some("gold"),
    },
    Sel {
        ns: Some("ns1"),
        query: "labelSelector=%21sql",
        pred: |_, l| !l.contains_key("sql"),
    },
];

pub(crate) const NAMESPACES: [&str; 3] = ["ns0", "ns1", "ns2"];
pub(crate) const MARKER: &str = "zz-marker";

impl Sel {
    fn matches(&self, k: &Key, l: &Labels) -> bool {
        self.ns.is_none_or(|ns| k.0 == ns) && (self.pred)(k, l)
    }

    pub(crate) fn path(&self) -> String {
        match self.ns {
            Some(ns) => agents(ns),
            None => format!("{GV}/agents"),
        }
    }

    /// The namespace of the last marker this selection sees (markers are made in order).
    pub(crate) fn stop_ns(&self) -> &'static str {
        let labels = marker_labels();
        NAMESPACES
            .iter()
            .rev()
            .find(|ns| self.matches(&(ns.to_string(), MARKER.to_string()), &labels))
            .expect("every selection sees a marker")
    }
}

pub(crate) fn marker_labels() -> Labels {
    [("color", "red"), ("tier", "gold")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum StartAt {
    Unset,
    Zero,
    WatchList,
    /// The resourceVersion of a LIST of the same selection made mid-run.
    ListRv,
}

/// What one watcher saw.
pub(crate) struct Observed {
    pub(crate) sel: usize,
    pub(crate) start: StartAt,
    pub(crate) path: String,
    pub(crate) list: Option<(u64, BTreeMap<Key, u64>)>,
    pub(crate) lines: Vec<Value>,
}

pub(crate) fn key_of(v: &Value) -> Key {
    (
        v["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string(),
        v["metadata"]["name"].as_str().unwrap_or("").to_string(),
    )
}

fn labels_of(v: &Value) -> Labels {
    serde_json::from_value(v["metadata"]["labels"].clone()).unwrap_or_default()
}

/// Progress shared by the writers and the watchers.
#[derive(Default)]
struct Progress {
    /// Writes attempted so far.
    ops: AtomicUsize,
    /// Watchers whose watch is open.
    opened: AtomicUsize,
}

async fn run_watcher(
    api: Api,
    sel_i: usize,
    start: StartAt,
    after_ops: usize,
    progress: Arc<Progress>,
    until: tokio::time::Instant,
) -> Observed {
    while progress.ops.load(Ordering::SeqCst) < after_ops {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let sel = &SELS[sel_i];
    let sep = if sel.query.is_empty() { "" } else { "&" };
    let mut list = None;
    let q = match start {
        StartAt::Unset => "watch=true".to_string(),
        StartAt::Zero => "watch=true&resourceVersion=0".to_string(),
        StartAt::WatchList => "watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true".to_string(),
        StartAt::ListRv => {
            let l = api.list(&format!("{}?{}", sel.path(), sel.query)).await;
            let rv = rv_of(&l);
            let items = l["items"].as_array().unwrap().iter().map(|o| (key_of(o), rv_of(o))).collect();
            list = Some((rv, items));
            format!("watch=true&resourceVersion={rv}")
        }
    };
    let path = format!("{}?{q}{sep}{}", sel.path(), sel.query);
    let mut w = api.watch(&path).await;
    progress.opened.fetch_add(1, Ordering::SeqCst);
    let mut initial_done = start != StartAt::WatchList;
    let stop = (sel.stop_ns().to_string(), MARKER.to_string());
    let mut lines = Vec::new();
    loop {
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        match w.next_within(left).await {
            Next::Event(v) => {
                initial_done |= v["type"] == "BOOKMARK";
                let done = v["type"] == "ERROR"
                    || (initial_done && v["type"] == "ADDED" && key_of(&v["object"]) == stop);
                lines.push(v);
                if done {
                    break;
                }
            }
            Next::End | Next::Quiet => break,
        }
    }
    Observed {
        sel: sel_i,
        start,
        path,
        list,
        lines,
    }
}

/// The state of a selection after the changes up to `rv`: key -> (rv, labels).
pub(crate) fn state_at(changes: &[Change], sel: &Sel, rv: u64) -> BTreeMap<Key, (u64, Labels)> {
    let mut state = BTreeMap::new();
    for c in changes.iter().take_while(|c| c.rv <= rv) {
        if !c.deleted && sel.matches(&c.key, &c.labels) {
            state.insert(c.key.clone(), (c.rv, c.labels.clone()));
        } else {
            state.remove(&c.key);
        }
    }
    state
}

/// The events kube's cacher sends a watcher of `sel` for the changes after `after`:
/// (type, key, rv, labels of the object sent).
fn projected(changes: &[Change], sel: &Sel, after: u64) -> Vec<(String, Key, u64, Labels)> {
    let mut prev: BTreeMap<Key, Labels> = BTreeMap::new();
    let mut out = Vec::new();
    for c in changes {
        let before = prev.get(&c.key).filter(|l| sel.matches(&c.key, l)).cloned();
        let now = !c.deleted && sel.matches(&c.key, &c.labels);
        let ev = match (now, before) {
            (true, None) => Some(("ADDED", c.labels.clone())),
            (true, Some(_)) => Some(("MODIFIED", c.labels.clone())),
            (false, Some(old)) => Some(("DELETED", old)),
            (false, None) => None,
        };
        if c.deleted {
            prev.remove(&c.key);
        } else {
            prev.insert(c.key.clone(), c.labels.clone());
        }
        if let Some((t, l)) = ev {
            if c.rv > after {
                out.push((t.to_string(), c.key.clone(), c.rv, l));
            }
        }
    }
    out
}

type Ev = (String, Key, u64, Labels);

fn as_ev(v: &Value) -> Ev {
    (
        v["type"].as_str().unwrap_or("?").to_string(),
        key_of(&v["object"]),
        v["object"]["metadata"]["resourceVersion"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        labels_of(&v["object"]),
    )
}

/// A watcher's fold of what it saw (its LIST, then its events) and its selection of the
/// committed state at `stop_rv`: key -> resourceVersion.
pub(crate) fn fold_and_truth(
    o: &Observed,
    changes: &[Change],
    stop_rv: u64,
) -> (BTreeMap<Key, u64>, BTreeMap<Key, u64>) {
    let mut mine: BTreeMap<Key, u64> = o.list.clone().map(|(_, items)| items).unwrap_or_default();
    for v in o.lines.iter().filter(|v| v["type"] != "BOOKMARK") {
        if v["type"] == "DELETED" {
            mine.remove(&key_of(&v["object"]));
        } else {
            mine.insert(key_of(&v["object"]), rv_of(&v["object"]));
        }
    }
    let want = state_at(changes, &SELS[o.sel], stop_rv)
        .into_iter()
        .map(|(k, (r, _))| (k, r))
        .collect();
    (mine, want)
}

/// Checks one watcher against the ground truth; `Err` describes the first difference.
pub(crate) fn check(o: &Observed, changes: &[Change], stop_rv: u64) -> Result<(), String> {
    let sel = &SELS[o.sel];
    let evs: Vec<Ev> = o
        .lines
        .iter()
        .filter(|v| v["type"] != "BOOKMARK")
        .map(as_ev)
        .collect();
    let last = evs.last().ok_or("no event at all")?;
    if last.1 != (sel.stop_ns().to_string(), MARKER.to_string()) {
        return Err(format!("did not reach its marker; last event {last:?}"));
    }
    let want_live = |s: u64| -> Vec<Ev> {
        projected(changes, sel, s)
            .into_iter()
            .filter(|e| e.2 <= stop_rv)
            .collect()
    };
    let compare_live = |s: u64, live: &[Ev]| -> Result<(), String> {
        for w in live.windows(2) {
            if w[1].2 <= w[0].2 {
                return Err(format!(
                    "resourceVersion did not increase: {:?} then {:?}",
                    w[0], w[1]
                ));
            }
        }
        let want = want_live(s);
        if live != want.as_slice() {
            let n = live.iter().zip(&want).take_while(|(a, b)| a == b).count();
            return Err(format!(
                "after {s}: {} events, want {}; first difference at {n}:\n got {:?}\nwant {:?}",
                live.len(),
                want.len(),
                live.get(n),
                want.get(n)
            ));
        }
        Ok(())
    };
    // `initial_end`: how many leading events are the state at `s` (None: the watch was
    // started from a LIST's resourceVersion and sends no state).
    let compare = |s: u64, initial_end: Option<usize>| -> Result<(), String> {
        let Some(initial_end) = initial_end else {
            return compare_live(s, &evs);
        };
        let init = state_at(changes, sel, s);
        let got_init: BTreeMap<Key, (u64, Labels)> = evs[..initial_end]
            .iter()
            .map(|e| (e.1.clone(), (e.2, e.3.clone())))
            .collect();
        if evs[..initial_end].iter().any(|e| e.0 != "ADDED") || got_init.len() != initial_end {
            return Err(format!(
                "initial events at {s} are not one ADDED per object: {:?}",
                &evs[..initial_end]
            ));
        }
        if got_init != init {
            return Err(format!(
                "initial state differs from the state at {s}:\n got {got_init:?}\nwant {init:?}"
            ));
        }
        compare_live(s, &evs[initial_end..])
    };
    match o.start {
        StartAt::ListRv => {
            let (rv, items) = o.list.as_ref().unwrap();
            let want: BTreeMap<Key, u64> = state_at(changes, sel, *rv)
                .into_iter()
                .map(|(k, (r, _))| (k, r))
                .collect();
            if items != &want {
                return Err(format!(
                    "LIST at {rv} is not the committed state:\n got {items:?}\nwant {want:?}"
                ));
            }
            compare(*rv, None)
        }
        StartAt::WatchList => {
            let end = o
                .lines
                .iter()
                .position(|v| v["type"] == "BOOKMARK")
                .ok_or("no initial-events-end bookmark")?;
            let bm = &o.lines[end]["object"];
            if bm["metadata"]["annotations"]["k8s.io/initial-events-end"] != "true" {
                return Err(format!(
                    "first bookmark is not the initial-events end: {bm}"
                ));
            }
            compare(rv_of(bm), Some(end))
        }
        StartAt::Unset | StartAt::Zero => {
            // The state was sent as of some resourceVersion S the client is not told: find it.
            let mut candidates: Vec<u64> = vec![0];
            candidates.extend(changes.iter().map(|c| c.rv));
            let mut closest: Option<String> = None;
            for s in candidates {
                let n = state_at(changes, sel, s).len();
                if n > evs.len() {
                    continue;
                }
                match compare(s, Some(n)) {
                    Ok(()) => return Ok(()),
                    // Prefer a candidate whose initial state matched.
                    Err(e) if e.starts_with("after") => closest = Some(e),
                    Err(e) => {
                        closest.get_or_insert(e);
                    }
                }
            }
            let first_err = closest;
            Err(format!(
                "no resourceVersion explains the events; closest: {}",
                first_err.unwrap_or_default()
            ))
        }
    }
}

async fn writer(api: Api, id: u64, ops: usize, progress: Arc<Progress>) -> BTreeMap<u16, usize> {
    let mut rng = StdRng::seed_from_u64(1000 + id);
    let mut codes = BTreeMap::new();
    let colors = ["red", "blue", "green"];
    for i in 0..ops {
        let ns = NAMESPACES[rng.random_range(0..3)];
        let name = format!("n{}", rng.random_range(0..8));
        let path = format!("{}/{name}", agents(ns));
        let color = colors[rng.random_range(0..3)];
        let tier = if rng.random_bool(0.5) {
            json!("gold")
        } else {
            json!(null)
        };
        let op = rng.random_range(0..100);
        progress.ops.fetch_add(1, Ordering::SeqCst);
        let (code, body) = if op < 30 {
            let mut labels = json!({"color": color, "writer": id.to_string()});
            if tier.is_string() {
                labels["tier"] = tier.clone();
            }
            let obj = json!({"apiVersion": "ark.mckinsey.com/v1alpha1", "kind": "Agent",
                "metadata": {"name": name, "labels": labels}, "spec": {"prompt": format!("w{id} op{i}")}});
            api.call(Method::POST, &agents(ns), None, Some(&obj)).await
        } else if op < 60 {
            let patch = json!({"metadata": {"labels": {"color": color, "tier": tier}}, "spec": {"prompt": format!("w{id} op{i}")}});
            api.call(
                Method::PATCH,
                &path,
                Some("application/merge-patch+json"),
                Some(&patch),
            )
            .await
        } else if op < 75 {
            let (code, mut cur) = api.get(&path).await;
            if code != 200 {
                (code, cur)
            } else {
                cur["metadata"]["labels"]["color"] = json!(color);
                cur["spec"]["prompt"] = json!(format!("w{id} op{i} put"));
                api.call(Method::PUT, &path, None, Some(&cur)).await
            }
        } else {
            api.call(Method::DELETE, &path, None, None).await
        };
        assert!(
            matches!(code, 200 | 201 | 404 | 409),
            "writer {id} op {i}: {code} {body}"
        );
        *codes.entry(code).or_default() += 1;
    }
    codes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_watcher_sees_every_committed_change_of_its_selection_once_in_commit_order() {
    let s = TestServer::start().await;
    let api = Api::new(&s);
    let db = s.db.client().await;
    let slot = format!("{}_truth", s.db.slot_name());
    db.execute(
        "SELECT pg_create_logical_replication_slot($1, 'test_decoding')",
        &[&slot],
    )
    .await
    .unwrap();

    const WRITERS: u64 = 8;
    const OPS: usize = 60;
    let progress = Arc::new(Progress::default());
    let until = tokio::time::Instant::now() + Duration::from_secs(90);
    let mut watchers = Vec::new();
    let mut rng = StdRng::seed_from_u64(42);
    for (i, _) in SELS.iter().enumerate() {
        for start in [
            StartAt::Unset,
            StartAt::Zero,
            StartAt::WatchList,
            StartAt::ListRv,
        ] {
            // Some unset ones start before any write; the rest join mid-run.
            let after_ops = if start == StartAt::Unset && i % 3 == 0 {
                0
            } else {
                rng.random_range(1..WRITERS as usize * OPS * 3 / 4)
            };
            watchers.push(tokio::spawn(run_watcher(
                api.clone(),
                i,
                start,
                after_ops,
                progress.clone(),
                until,
            )));
        }
    }
    let n_watchers = watchers.len();
    let early = SELS.len().div_ceil(3);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while progress.opened.load(Ordering::SeqCst) < early {
        assert!(
            tokio::time::Instant::now() < deadline,
            "watchers did not open"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let writers: Vec<_> = (0..WRITERS)
        .map(|id| tokio::spawn(writer(api.clone(), id, OPS, progress.clone())))
        .collect();
    // Someone in psql, changing several rows per transaction.
    let sql = {
        let url = s.db.url.clone();
        tokio::spawn(async move {
            let c = crate::harness::connect(&url).await;
            for i in 0..20 {
                let ns = NAMESPACES[i % 3];
                let q = if i % 4 == 3 {
                    "UPDATE resources SET labels = labels - 'sql' WHERE kind = 'Agent' AND namespace = $1 AND deleted_at IS NULL AND name = ANY($2)"
                } else {
                    "UPDATE resources SET labels = labels || jsonb_build_object('sql', 'yes') WHERE kind = 'Agent' AND namespace = $1 AND deleted_at IS NULL AND name = ANY($2)"
                };
                let names: Vec<String> = (0..3).map(|k| format!("n{}", (i + k * 3) % 8)).collect();
                c.execute(q, &[&ns, &names]).await.unwrap();
                tokio::time::sleep(Duration::from_millis(60)).await;
            }
        })
    };
    let mut codes: BTreeMap<u16, usize> = BTreeMap::new();
    for w in writers {
        for (c, n) in w.await.unwrap() {
            *codes.entry(c).or_default() += n;
        }
    }
    sql.await.unwrap();
    assert!(
        codes.get(&409).copied().unwrap_or(0) > 0,
        "the writers never collided: {codes:?}"
    );

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while progress.opened.load(Ordering::SeqCst) < n_watchers {
        assert!(
            tokio::time::Instant::now() < deadline,
            "watchers did not open"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Markers every selection matches, one per namespace, in order: a watcher that has seen
    // its last marker has seen every earlier commit.
    let mut stop_rvs = BTreeMap::new();
    for ns in NAMESPACES {
        let m = api
            .create(ns, &json!({"apiVersion": "ark.mckinsey.com/v1alpha1", "kind": "Agent",
                "metadata": {"name": MARKER, "labels": marker_labels()}, "spec": {"prompt": "marker"}}))
            .await;
        stop_rvs.insert(ns.to_string(), rv_of(&m));
    }
    let mut observed = Vec::new();
    for w in watchers {
        observed.push(w.await.unwrap());
    }

    let changes: Vec<Change> = db
        .query(
            "SELECT data FROM pg_logical_slot_get_changes($1, NULL, NULL)",
            &[&slot],
        )
        .await
        .unwrap()
        .iter()
        .filter_map(|r| parse_change(r.get(0)))
        .collect();
    db.execute("SELECT pg_drop_replication_slot($1)", &[&slot])
        .await
        .unwrap();
    assert!(changes.len() > 200, "only {} changes", changes.len());
    assert!(
        changes.windows(2).all(|w| w[1].rv > w[0].rv),
        "the WAL is not in resourceVersion order"
    );

    let mut failures = Vec::new();
    for o in &observed {
        let stop_rv = stop_rvs[SELS[o.sel].stop_ns()];
        if let Err(e) = check(o, &changes, stop_rv) {
            failures.push(format!(
                "watcher {:?} {}: {e}\n  lines: {:?}",
                o.start,
                o.path,
                briefs(&o.lines)
                    .iter()
                    .rev()
                    .take(5)
                    .rev()
                    .collect::<Vec<_>>()
            ));
        }
    }
    assert!(observed.len() >= 20);
    assert!(
        failures.is_empty(),
        "{} of {} watchers differ from the WAL ({} changes, writers' codes {codes:?}):\n{}",
        failures.len(),
        observed.len(),
        changes.len(),
        failures.join("\n\n")
    );

    // The check itself notices a lost, a repeated and a reordered event.
    let o = observed
        .iter()
        .filter(|o| o.start == StartAt::ListRv)
        .max_by_key(|o| o.lines.len())
        .unwrap();
    assert!(o.lines.len() >= 4, "too few events to mutate: {}", o.path);
    let stop_rv = stop_rvs[SELS[o.sel].stop_ns()];
    let mutate = |f: &dyn Fn(&mut Vec<Value>)| {
        let mut lines = o.lines.clone();
        f(&mut lines);
        let m = Observed {
            sel: o.sel,
            start: o.start,
            path: o.path.clone(),
            list: o.list.clone(),
            lines,
        };
        check(&m, &changes, stop_rv)
    };
    assert!(mutate(&|l| {
        l.remove(1);
    })
    .is_err());
    assert!(mutate(&|l| {
        let e = l[1].clone();
        l.insert(1, e);
    })
    .is_err());
    assert!(mutate(&|l| l.swap(0, 1)).is_err());

    // The folded stream equals the table, and a LIST.
    let everything = &SELS[0];
    let folded: BTreeMap<Key, u64> = state_at(&changes, everything, u64::MAX)
        .into_iter()
        .map(|(k, (r, _))| (k, r))
        .collect();
    let table: BTreeMap<Key, u64> = db
        .query("SELECT namespace, name, resource_version FROM resources WHERE kind = 'Agent' AND deleted_at IS NULL", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| ((r.get(0), r.get(1)), r.get::<_, i64>(2) as u64))
        .collect();
    assert_eq!(folded, table, "the stream folded is not the table");
    let list = api.list(&format!("{GV}/agents")).await;
    let listed: BTreeMap<Key, u64> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (key_of(o), rv_of(o)))
        .collect();
    assert_eq!(listed, table, "a LIST is not the table");
    // Each watcher's own fold equals its selection of the table (markers are the last writes).
    for o in &observed {
        let (mine, want) = fold_and_truth(o, &changes, stop_rvs[SELS[o.sel].stop_ns()]);
        assert_eq!(mine, want, "watcher {:?} {}", o.start, o.path);
    }
    s.stop().await;
}
