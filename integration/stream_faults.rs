//! Fault injection for the change stream (issue 3, "Faults" and the kube-rs reflector
//! acceptance point): PostgreSQL restarts and outages, server restarts over an existing slot,
//! and a slot held by another session. Tests that stop or reconfigure PostgreSQL run on a
//! cluster of their own; slot invalidation, WAL hygiene, metrics and `slot drop` are in
//! `stream_faults_slot.rs`. The helpers here (a kube-rs reflector, a raw list+watch client,
//! polling) are shared by both files.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ark_apiserver::embedded::Cluster;
use futures_util::StreamExt;
use kube::api::Api;
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::reflector::{self, Store};
use kube::runtime::utils::Backoff;
use kube::runtime::{watcher, WatchStreamExt};
use serde_json::{json, Value};

use crate::harness::{TestDb, TestServer};

pub(crate) const NS: &str = "team-a";

pub(crate) fn agents_path(ns: &str) -> String {
    format!("/apis/ark.mckinsey.com/v1alpha1/namespaces/{ns}/agents")
}

pub(crate) fn agent(name: &str, prompt: &str) -> Value {
    json!({"apiVersion": "ark.mckinsey.com/v1alpha1", "kind": "Agent",
        "metadata": {"name": name, "labels": {"app": "faults"}}, "spec": {"prompt": prompt}})
}

// ---------------------------------------------------------------------------------------
// Clusters

/// A PostgreSQL cluster of the test's own (it may be stopped or reconfigured), with
/// `extra` settings applied by a restart when given.
pub(crate) async fn dedicated_cluster(extra: Option<&'static str>) -> Arc<Cluster> {
    let c = tokio::task::spawn_blocking(move || {
        let c = Cluster::start(None, true)?;
        c.stop_when_process_exits()?;
        if let Some(conf) = extra {
            c.configure(conf)?;
            c.restart()?;
        }
        Ok::<_, ark_apiserver::embedded::EmbeddedError>(c)
    })
    .await
    .unwrap()
    .expect("starting a dedicated PostgreSQL cluster");
    Arc::new(c)
}

/// Runs a blocking cluster operation (pg_ctl) off the async runtime.
pub(crate) async fn on_cluster(
    c: &Arc<Cluster>,
    f: impl FnOnce(&Cluster) -> Result<(), ark_apiserver::embedded::EmbeddedError> + Send + 'static,
) {
    let c = c.clone();
    tokio::task::spawn_blocking(move || f(&c))
        .await
        .unwrap()
        .expect("pg_ctl");
}

pub(crate) fn cluster_db(c: &Cluster) -> TestDb {
    TestDb::existing(c.url("postgres"))
}

// ---------------------------------------------------------------------------------------
// Polling

/// Polls `f` every 100 ms until it returns `Ok`, for at most `timeout`; panics with the last
/// reason otherwise.
pub(crate) async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let start = Instant::now();
    loop {
        match f().await {
            Ok(v) => return v,
            Err(why) if start.elapsed() > timeout => {
                panic!("{what}: not reached within {timeout:?}: {why}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// `/readyz?verbose`: status and body.
pub(crate) async fn readyz(http: &reqwest::Client, base: &str) -> Result<(u16, String), String> {
    let r = http
        .get(format!("{base}/readyz?verbose"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let code = r.status().as_u16();
    Ok((code, r.text().await.unwrap_or_default()))
}

pub(crate) async fn wait_ready(http: &reqwest::Client, base: &str, timeout: Duration) {
    eventually("/readyz 200", timeout, || async {
        match readyz(http, base).await? {
            (200, _) => Ok(()),
            (c, b) => Err(format!("{c}: {b}")),
        }
    })
    .await
}

// ---------------------------------------------------------------------------------------
// Writes through the API and in SQL; the table as truth

pub(crate) async fn create(http: &reqwest::Client, base: &str, name: &str) -> String {
    let r = http
        .post(format!("{base}{}", agents_path(NS)))
        .json(&agent(name, "v1"))
        .send()
        .await
        .unwrap();
    let code = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(code, 201, "create {name}: {body}");
    body["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string()
}

pub(crate) async fn patch_prompt(
    http: &reqwest::Client,
    base: &str,
    name: &str,
    prompt: &str,
) -> String {
    let r = http
        .patch(format!("{base}{}/{name}", agents_path(NS)))
        .header("content-type", "application/merge-patch+json")
        .body(json!({"spec": {"prompt": prompt}}).to_string())
        .send()
        .await
        .unwrap();
    let code = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(code, 200, "patch {name}: {body}");
    body["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string()
}

pub(crate) async fn delete(http: &reqwest::Client, base: &str, name: &str) {
    let r = http
        .delete(format!("{base}{}/{name}", agents_path(NS)))
        .send()
        .await
        .unwrap();
    let code = r.status();
    assert_eq!(code, 200, "delete {name}: {}", r.text().await.unwrap());
}

/// An UPDATE in SQL, as an operator in psql would; returns the new resourceVersion.
pub(crate) async fn sql_update(db: &tokio_postgres::Client, name: &str, prompt: &str) -> String {
    let row = db
        .query_one(
            "UPDATE resources SET spec = jsonb_set(spec, '{prompt}', to_jsonb($3::text)) \
             WHERE kind = 'Agent' AND namespace = $1 AND name = $2 AND deleted_at IS NULL \
             RETURNING resource_version",
            &[&NS, &name, &prompt],
        )
        .await
        .unwrap();
    row.get::<_, i64>(0).to_string()
}

/// A DELETE in SQL (the trigger makes it a soft delete with its own resourceVersion).
pub(crate) async fn sql_delete(db: &tokio_postgres::Client, name: &str) {
    let n = db
        .execute(
            "DELETE FROM resources WHERE kind = 'Agent' AND namespace = $1 AND name = $2",
            &[&NS, &name],
        )
        .await
        .unwrap();
    assert_eq!(
        n, 0,
        "the soft-delete trigger turns the DELETE into an UPDATE"
    );
}

/// An INSERT in SQL of a minimal Agent row.
pub(crate) async fn sql_insert(db: &tokio_postgres::Client, name: &str) -> String {
    let row = db
        .query_one(
            "INSERT INTO resources (uid, kind, api_version, namespace, name, spec) \
             VALUES (gen_random_uuid(), 'Agent', 'ark.mckinsey.com/v1alpha1', $1, $2, \
                     jsonb_build_object('prompt', 'from sql')) RETURNING resource_version",
            &[&NS, &name],
        )
        .await
        .unwrap();
    row.get::<_, i64>(0).to_string()
}

/// Live Agents of [`NS`] in the table: name -> resourceVersion.
pub(crate) async fn table_state(db: &tokio_postgres::Client) -> BTreeMap<String, String> {
    db.query(
        "SELECT name, resource_version FROM resources \
         WHERE kind = 'Agent' AND namespace = $1 AND deleted_at IS NULL",
        &[&NS],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1).to_string()))
    .collect()
}

/// A LIST through the API: name -> resourceVersion, and the list's resourceVersion.
pub(crate) async fn api_list(
    http: &reqwest::Client,
    base: &str,
) -> Result<(BTreeMap<String, String>, String), String> {
    let r = http
        .get(format!("{base}{}", agents_path(NS)))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let code = r.status().as_u16();
    let body: Value = r.json().await.map_err(|e| e.to_string())?;
    if code != 200 {
        return Err(format!("LIST {code}: {body}"));
    }
    let items = body["items"]
        .as_array()
        .ok_or("no items")?
        .iter()
        .map(|o| {
            (
                o["metadata"]["name"].as_str().unwrap_or("").to_string(),
                o["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect();
    let rv = body["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("")
        .to_string();
    Ok((items, rv))
}

// ---------------------------------------------------------------------------------------
// A kube-rs watcher + reflector, as controllers run them

/// Retries a failed list or watch after a short constant delay (the default backoff grows to
/// 30 s, longer than these tests want to wait).
struct Quick;

impl Iterator for Quick {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        Some(Duration::from_millis(250))
    }
}

impl Backoff for Quick {
    fn reset(&mut self) {}
}

pub(crate) struct Reflector {
    pub store: Store<DynamicObject>,
    /// `Init` events: 1 for the first list, one more for every relist (after a 410).
    pub inits: Arc<AtomicUsize>,
    pub errors: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

pub(crate) fn kube_client(base: &str) -> kube::Client {
    // kube links a second rustls crypto provider; choose one for the process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut config = kube::Config::new(base.parse().unwrap());
    config.accept_invalid_certs = true;
    kube::Client::try_from(config).unwrap()
}

impl Reflector {
    /// A reflector on the Agents of [`NS`] at `base`.
    pub(crate) fn start(base: &str) -> Reflector {
        let ar = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("ark.mckinsey.com", "v1alpha1", "Agent"),
            "agents",
        );
        let api: Api<DynamicObject> = Api::namespaced_with(kube_client(base), NS, &ar);
        let writer = reflector::store::Writer::new(ar);
        let store = writer.as_reader();
        let inits = Arc::new(AtomicUsize::new(0));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let (i, e) = (inits.clone(), errors.clone());
        let stream =
            reflector::reflector(writer, watcher(api, watcher::Config::default())).backoff(Quick);
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(ev) = stream.next().await {
                match ev {
                    Ok(watcher::Event::Init) => {
                        i.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(_) => {}
                    Err(err) => e.lock().unwrap().push(err.to_string()),
                }
            }
        });
        Reflector {
            store,
            inits,
            errors,
            task,
        }
    }

    /// The store: name -> resourceVersion.
    pub(crate) fn state(&self) -> BTreeMap<String, String> {
        self.store
            .state()
            .iter()
            .map(|o| {
                (
                    o.metadata.name.clone().unwrap_or_default(),
                    o.metadata.resource_version.clone().unwrap_or_default(),
                )
            })
            .collect()
    }

    /// Waits until the store equals `want` (names and resourceVersions).
    pub(crate) async fn converge(&self, want: &BTreeMap<String, String>, timeout: Duration) {
        eventually("the kube-rs reflector converges", timeout, || async {
            let have = self.state();
            if &have == want {
                Ok(())
            } else {
                Err(format!(
                    "store {have:?}\nwant {want:?}\ninits {}, errors {:?}",
                    self.inits.load(Ordering::SeqCst),
                    self.errors.lock().unwrap()
                ))
            }
        })
        .await
    }
}

impl Drop for Reflector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------------------
// A raw HTTP list+watch client (what client-go's reflector does, without a library)

#[derive(Debug, Default)]
pub(crate) struct InformerState {
    pub objects: BTreeMap<String, String>,
    pub rv: String,
    pub lists: usize,
    /// 410 ERROR events received.
    pub gone: usize,
    /// Watch connections opened.
    pub watches: usize,
    /// Other ERROR events and failed requests.
    pub errors: Vec<String>,
    /// Events whose resourceVersion did not increase within one watch response.
    pub order_violations: Vec<String>,
    /// (type, name, resourceVersion) of every event received.
    pub events: Vec<(String, String, String)>,
}

pub(crate) struct RawInformer {
    pub state: Arc<Mutex<InformerState>>,
    task: tokio::task::JoinHandle<()>,
}

impl RawInformer {
    pub(crate) fn start(http: reqwest::Client, base: String) -> RawInformer {
        let state = Arc::new(Mutex::new(InformerState::default()));
        let st = state.clone();
        let task = tokio::spawn(async move { informer_loop(http, base, st).await });
        RawInformer { state, task }
    }

    pub(crate) async fn converge(&self, want: &BTreeMap<String, String>, timeout: Duration) {
        eventually("the raw HTTP list+watch converges", timeout, || async {
            let s = self.state.lock().unwrap();
            if &s.objects == want {
                Ok(())
            } else {
                Err(format!(
                    "have {:?}\nwant {want:?}\nlists {}, 410s {}, watches {}, errors {:?}",
                    s.objects, s.lists, s.gone, s.watches, s.errors
                ))
            }
        })
        .await
    }
}

impl Drop for RawInformer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn informer_loop(http: reqwest::Client, base: String, st: Arc<Mutex<InformerState>>) {
    let mut need_list = true;
    loop {
        if need_list {
            match api_list(&http, &base).await {
                Ok((objects, rv)) => {
                    let mut s = st.lock().unwrap();
                    s.objects = objects;
                    s.rv = rv;
                    s.lists += 1;
                    need_list = false;
                }
                Err(e) => {
                    st.lock().unwrap().errors.push(format!("list: {e}"));
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            }
        }
        let rv = st.lock().unwrap().rv.clone();
        let url = format!(
            "{base}{}?watch=true&resourceVersion={rv}&allowWatchBookmarks=true&timeoutSeconds=300",
            agents_path(NS)
        );
        let mut resp = match http.get(&url).send().await {
            Ok(r) if r.status() == 200 => r,
            Ok(r) => {
                let code = r.status().as_u16();
                let body = r.text().await.unwrap_or_default();
                st.lock()
                    .unwrap()
                    .errors
                    .push(format!("watch {code}: {body}"));
                need_list = code == 410;
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            Err(e) => {
                st.lock().unwrap().errors.push(format!("watch: {e}"));
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        st.lock().unwrap().watches += 1;
        let mut last: u64 = rv.parse().unwrap_or(0);
        let mut buf: Vec<u8> = Vec::new();
        'conn: loop {
            match resp.chunk().await {
                Ok(Some(b)) => {
                    buf.extend_from_slice(&b);
                    while let Some(i) = buf.iter().position(|&c| c == b'\n') {
                        let line: Vec<u8> = buf.drain(..=i).collect();
                        let ev: Value = match serde_json::from_slice(&line) {
                            Ok(v) => v,
                            Err(e) => {
                                st.lock().unwrap().errors.push(format!("bad line: {e}"));
                                continue;
                            }
                        };
                        let ty = ev["type"].as_str().unwrap_or("").to_string();
                        let obj = &ev["object"];
                        let mut s = st.lock().unwrap();
                        match ty.as_str() {
                            "ERROR" => {
                                if obj["code"] == 410 {
                                    s.gone += 1;
                                    need_list = true;
                                } else {
                                    s.errors.push(format!("ERROR event: {obj}"));
                                }
                                break 'conn;
                            }
                            "BOOKMARK" => {
                                if let Some(rv) = obj["metadata"]["resourceVersion"].as_str() {
                                    s.rv = rv.to_string();
                                }
                            }
                            _ => {
                                let name =
                                    obj["metadata"]["name"].as_str().unwrap_or("").to_string();
                                let rv = obj["metadata"]["resourceVersion"]
                                    .as_str()
                                    .unwrap_or("")
                                    .to_string();
                                let n: u64 = rv.parse().unwrap_or(0);
                                if n <= last {
                                    s.order_violations
                                        .push(format!("{ty} {name} rv {n} after rv {last}"));
                                }
                                last = last.max(n);
                                if ty == "DELETED" {
                                    s.objects.remove(&name);
                                } else {
                                    s.objects.insert(name.clone(), rv.clone());
                                }
                                s.rv = rv.clone();
                                s.events.push((ty, name, rv));
                            }
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    st.lock().unwrap().errors.push(format!("watch body: {e}"));
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One watch response, its events collected as they arrive.
pub(crate) struct RawWatch {
    pub events: Arc<Mutex<Vec<Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl RawWatch {
    pub(crate) async fn open(http: &reqwest::Client, url: &str) -> RawWatch {
        let mut resp = http.get(url).send().await.unwrap();
        assert_eq!(resp.status(), 200, "watch {url}");
        let events = Arc::new(Mutex::new(Vec::new()));
        let ev = events.clone();
        let task = tokio::spawn(async move {
            let mut buf: Vec<u8> = Vec::new();
            while let Ok(Some(b)) = resp.chunk().await {
                buf.extend_from_slice(&b);
                while let Some(i) = buf.iter().position(|&c| c == b'\n') {
                    let line: Vec<u8> = buf.drain(..=i).collect();
                    if let Ok(v) = serde_json::from_slice::<Value>(&line) {
                        ev.lock().unwrap().push(v);
                    }
                }
            }
        });
        RawWatch { events, task }
    }

    /// Waits until `pred` holds for the events received so far; returns them.
    pub(crate) async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        eventually(what, timeout, || async {
            let evs = self.events.lock().unwrap().clone();
            if pred(&evs) {
                Ok(evs)
            } else {
                Err(format!("events so far: {evs:?}"))
            }
        })
        .await
    }
}

impl Drop for RawWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// (type, name) of each event.
pub(crate) fn summary(evs: &[Value]) -> Vec<(String, String)> {
    evs.iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap_or("").to_string(),
                e["object"]["metadata"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Tests

/// Issue 3, Faults: "Lost connection or PostgreSQL restart: reconnect with backoff. Open
/// watches continue without gaps, or get 410 when a gap cannot be ruled out. /readyz is false
/// meanwhile." and Acceptance: "A kube-rs watcher with a reflector converges to the
/// database's state through restarts ... of PostgreSQL. A 410 leads to a relist."
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watches_and_a_reflector_survive_a_postgres_restart_and_outage() {
    let t0 = Instant::now();
    let cluster = dedicated_cluster(None).await;
    let s = TestServer::start_on(cluster_db(&cluster)).await;
    let (http, base) = (s.http(), s.base_url());
    let db = s.db.client().await;
    for i in 0..5 {
        create(&http, &base, &format!("a{i}")).await;
    }
    let refl = Reflector::start(&base);
    let inf = RawInformer::start(http.clone(), base.clone());
    let want = table_state(&db).await;
    refl.converge(&want, Duration::from_secs(15)).await;
    inf.converge(&want, Duration::from_secs(15)).await;

    // 1. A restart in place (fast shutdown; the replication connection is cut).
    drop(db);
    on_cluster(&cluster, |c| c.restart()).await;
    wait_ready(&http, &base, Duration::from_secs(30)).await;
    let db = s.db.client().await;
    for i in 5..8 {
        create(&http, &base, &format!("a{i}")).await;
    }
    patch_prompt(&http, &base, "a0", "after restart").await;
    delete(&http, &base, "a1").await;
    sql_update(&db, "a2", "sql after restart").await;
    let want = table_state(&db).await;
    refl.converge(&want, Duration::from_secs(20)).await;
    inf.converge(&want, Duration::from_secs(20)).await;
    eprintln!("restart recovered after {:?}", t0.elapsed());

    // 2. A longer outage: /readyz says not ready while PostgreSQL is down.
    drop(db);
    on_cluster(&cluster, |c| c.pause()).await;
    let (code, body) = eventually(
        "/readyz 500 while PostgreSQL is down",
        Duration::from_secs(10),
        || async {
            match readyz(&http, &base).await? {
                (200, b) => Err(format!("still ready: {b}")),
                other => Ok(other),
            }
        },
    )
    .await;
    assert_eq!(code, 500, "{body}");
    assert!(body.contains("[-]"), "{body}");
    let r = http
        .post(format!("{base}{}", agents_path(NS)))
        .json(&agent("during-outage", "x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503, "a write while PostgreSQL is down");
    // Still not ready a moment later (not a one-off blip).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(readyz(&http, &base).await.unwrap().0, 500);
    on_cluster(&cluster, |c| c.resume()).await;
    wait_ready(&http, &base, Duration::from_secs(30)).await;
    let db = s.db.client().await;
    for i in 8..10 {
        create(&http, &base, &format!("a{i}")).await;
    }
    patch_prompt(&http, &base, "a5", "after outage").await;
    delete(&http, &base, "a3").await;
    sql_update(&db, "a4", "sql after outage").await;
    sql_delete(&db, "a6").await;
    sql_insert(&db, "sql-new").await;
    let want = table_state(&db).await;
    assert!(!want.contains_key("during-outage"));
    assert_eq!(want.len(), 8, "{want:?}");
    refl.converge(&want, Duration::from_secs(20)).await;
    inf.converge(&want, Duration::from_secs(20)).await;
    // And a LIST agrees.
    assert_eq!(api_list(&http, &base).await.unwrap().0, want);

    let st = inf.state.lock().unwrap();
    assert!(
        st.order_violations.is_empty(),
        "resourceVersions within a watch must increase: {:?}",
        st.order_violations
    );
    eprintln!(
        "raw watch: {} lists, {} 410s, {} watch connections; reflector: {} inits; took {:?}",
        st.lists,
        st.gone,
        st.watches,
        refl.inits.load(Ordering::SeqCst),
        t0.elapsed()
    );
    drop(st);
    drop(refl);
    drop(inf);
    s.stop().await;
}

/// Issue 3, Seeding at start: "On restart, use an equivalent you can argue for", Replayed
/// events: "events replayed after a restart (everything after confirmed_flush_lsn) are applied
/// idempotently", the resourceVersion table ("N: exactly the events after N, with nothing
/// replayed"), Direct SQL, and Acceptance: the reflector converges through restarts of the
/// server. The slot must be resumed, not recreated: PostgreSQL logs every replication
/// command (log_replication_commands), and CREATE_REPLICATION_SLOT appears only once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_server_resumes_its_slot_without_replaying_or_losing_changes() {
    let t0 = Instant::now();
    let cluster = dedicated_cluster(Some("log_replication_commands = on")).await;
    let s1 = TestServer::start_on(cluster_db(&cluster)).await;
    let slot = s1.db.slot_name();
    let (http, base, addr) = (s1.http(), s1.base_url(), s1.addr);
    let db = s1.db.client().await;
    for i in 0..5 {
        create(&http, &base, &format!("a{i}")).await;
    }
    let refl = Reflector::start(&base);
    refl.converge(&table_state(&db).await, Duration::from_secs(15))
        .await;

    // The slot never disappears, checked often while the server restarts.
    let watching = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let counts = Arc::new(Mutex::new(Vec::<i64>::new()));
    let monitor = {
        let (watching, counts, slot) = (watching.clone(), counts.clone(), slot.clone());
        let mon = s1.db.client().await;
        tokio::spawn(async move {
            while watching.load(Ordering::SeqCst) {
                let n: i64 = mon
                    .query_one(
                        "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1",
                        &[&slot],
                    )
                    .await
                    .unwrap()
                    .get(0);
                counts.lock().unwrap().push(n);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };

    s1.stop().await;
    // Written while no server runs.
    sql_update(&db, "a1", "while down").await;
    sql_delete(&db, "a2").await;
    sql_insert(&db, "sql-new").await;
    let row = db
        .query_one(
            "SELECT active, pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint \
             FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .unwrap();
    assert!(
        !row.get::<_, bool>(0),
        "the stopped server released its slot"
    );
    assert!(
        row.get::<_, i64>(1) > 0,
        "the writes made while down are after the slot's confirmed position"
    );
    let want = table_state(&db).await;

    let s2 = TestServer::start_on_with(cluster_db(&cluster), |o| o.bind = addr).await;
    let (list, list_rv) = api_list(&http, &base).await.unwrap();
    assert_eq!(
        list, want,
        "a LIST shows the writes made while the server was down"
    );

    // A watch from the LIST's resourceVersion gets only what happens next.
    let w = RawWatch::open(
        &http,
        &format!(
            "{base}{}?watch=true&resourceVersion={list_rv}",
            agents_path(NS)
        ),
    )
    .await;
    patch_prompt(&http, &base, "a0", "after restart").await;
    sql_update(&db, "a3", "sql after restart").await;
    create(&http, &base, "a5").await;
    let evs = w
        .wait_for("events after the LIST", Duration::from_secs(10), |e| {
            e.iter().any(|v| v["object"]["metadata"]["name"] == "a5")
        })
        .await;
    assert_eq!(
        summary(&evs),
        vec![
            ("MODIFIED".to_string(), "a0".to_string()),
            ("MODIFIED".to_string(), "a3".to_string()),
            ("ADDED".to_string(), "a5".to_string()),
        ],
        "nothing replayed, nothing missing: {evs:?}"
    );
    let want = table_state(&db).await;
    refl.converge(&want, Duration::from_secs(20)).await;

    watching.store(false, Ordering::SeqCst);
    monitor.await.unwrap();
    let counts = counts.lock().unwrap().clone();
    assert!(counts.len() > 10, "the monitor ran: {counts:?}");
    assert!(
        counts.iter().all(|&n| n == 1),
        "the slot existed throughout (never dropped and recreated): {counts:?}"
    );
    let log = std::fs::read_to_string(cluster.base_dir().join("postgres.log")).unwrap();
    let commands: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("received replication command:"))
        .collect();
    let creates = commands
        .iter()
        .filter(|l| l.contains("CREATE_REPLICATION_SLOT"))
        .count();
    let starts = commands
        .iter()
        .filter(|l| l.contains("START_REPLICATION"))
        .count();
    assert!(starts >= 2, "both servers streamed: {commands:#?}");
    assert_eq!(
        creates, 1,
        "the slot was created once, by the first server, and resumed by the second: {commands:#?}"
    );
    eprintln!(
        "reflector inits {}; took {:?}",
        refl.inits.load(Ordering::SeqCst),
        t0.elapsed()
    );
    drop(refl);
    s2.stop().await;
}

/// Issue 3, Slot lifecycle: "Slot active in another session: never steal it. Retry with
/// backoff, and have /readyz say why the server is not ready."
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slot_held_by_another_session_is_not_stolen_and_readyz_says_why() {
    let t0 = Instant::now();
    let db = TestDb::new().await;
    ark_apiserver::app::run_migrate(&db.config()).await.unwrap();
    let slot = db.slot_name();
    let c = db.client().await;
    c.execute(
        "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
        &[&slot],
    )
    .await
    .unwrap();
    let bin = ark_apiserver::embedded::find_binaries().unwrap();
    let mut holder = tokio::process::Command::new(bin.join("pg_recvlogical"))
        .args([
            "-d",
            &db.url,
            "--slot",
            &slot,
            "--start",
            "--no-loop",
            "-f",
            "/dev/null",
            "-o",
            "proto_version=1",
            "-o",
            "publication_names=ark_cdc",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("starting pg_recvlogical");
    let holder_pid: i32 = eventually(
        "pg_recvlogical holds the slot",
        Duration::from_secs(10),
        || async {
            let row = c
                .query_one(
                    "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1",
                    &[&slot],
                )
                .await
                .map_err(|e| e.to_string())?;
            row.get::<_, Option<i32>>(0)
                .ok_or_else(|| "not active yet".to_string())
        },
    )
    .await;

    crate::harness::init_logging();
    let mut opts = crate::harness::serve_config(db.config());
    opts.slot_name = slot.clone();
    let mut running = ark_apiserver::app::start(opts.complete().unwrap())
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(30), &mut running.init)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let base = format!("https://{}", running.addr);
    let http = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let body = eventually(
        "/readyz names the busy slot",
        Duration::from_secs(10),
        || async {
            match readyz(&http, &base).await? {
                (500, b) if b.contains("in use by another session") => Ok(b),
                (c, b) => Err(format!("{c}: {b}")),
            }
        },
    )
    .await;
    assert!(body.contains("[-]change-stream"), "{body}");
    assert!(body.contains(&slot), "{body}");
    // A few retries later the slot still belongs to the other session.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let row = c
        .query_one(
            "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, Option<i32>>(0),
        Some(holder_pid),
        "never stolen"
    );
    assert!(
        holder.try_wait().unwrap().is_none(),
        "pg_recvlogical still runs"
    );
    assert_eq!(readyz(&http, &base).await.unwrap().0, 500);

    // Once the other session goes, the server takes the slot and serves watches.
    holder.kill().await.unwrap();
    running
        .wait_stream_ready(Duration::from_secs(30))
        .await
        .expect("the change stream starts once the slot is free");
    wait_ready(&http, &base, Duration::from_secs(5)).await;
    let w = RawWatch::open(&http, &format!("{base}{}?watch=true", agents_path(NS))).await;
    create(&http, &base, "after-release").await;
    w.wait_for(
        "the watch sees the new agent",
        Duration::from_secs(10),
        |e| summary(e).contains(&("ADDED".into(), "after-release".into())),
    )
    .await;
    let row = c
        .query_one(
            "SELECT active, active_pid FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0));
    assert_ne!(row.get::<_, Option<i32>>(1), Some(holder_pid));
    eprintln!("took {:?}", t0.elapsed());
    drop(w);
    running.stop().await;
}
