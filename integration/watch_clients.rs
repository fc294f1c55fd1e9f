//! What clients build on the watch: a kube-rs watcher and reflector converging to the
//! database's state (and relisting after a 410), reads that see the reader's own writes, and
//! LIST pages that come from one snapshot.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use kube::api::{Api as KubeApi, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use serde_json::{json, Value};

use crate::harness::TestServer;
use crate::watch::{agent, agents, available, list_keys, rv_of, Api};

type Key = (String, String);

fn client(s: &TestServer) -> kube::Client {
    // kube links a second rustls crypto provider; choose one for the process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut config = kube::Config::new(s.base_url().parse().unwrap());
    config.accept_invalid_certs = true;
    kube::Client::try_from(config).unwrap()
}

fn agent_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("ark.mckinsey.com", "v1alpha1", "Agent"),
        "agents",
    )
}

fn dynamic(v: Value) -> DynamicObject {
    serde_json::from_value(v).unwrap()
}

/// A reflector running in the background, with what its watcher reported.
struct Reflector {
    name: &'static str,
    store: Store<DynamicObject>,
    /// Completed initial lists (one per list or relist).
    inits: Arc<AtomicUsize>,
    errors: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Reflector {
    fn start(name: &'static str, api: KubeApi<DynamicObject>, cfg: watcher::Config) -> Reflector {
        let writer = reflector::store::Writer::new(agent_resource());
        let store = writer.as_reader();
        let inits = Arc::new(AtomicUsize::new(0));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let (i, e) = (inits.clone(), errors.clone());
        let stream = reflector::reflector(writer, watcher(api, cfg).default_backoff());
        let task = tokio::spawn(async move {
            stream
                .for_each(|ev| {
                    match ev {
                        Ok(watcher::Event::InitDone) => {
                            i.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(err) => e.lock().unwrap().push(err.to_string()),
                        Ok(_) => {}
                    }
                    std::future::ready(())
                })
                .await
        });
        Reflector {
            name,
            store,
            inits,
            errors,
            task,
        }
    }

    fn state(&self) -> BTreeMap<Key, (u64, Value)> {
        self.store
            .state()
            .iter()
            .map(|o| {
                (
                    (
                        o.metadata.namespace.clone().unwrap_or_default(),
                        o.metadata.name.clone().unwrap_or_default(),
                    ),
                    (
                        o.metadata
                            .resource_version
                            .as_deref()
                            .unwrap_or("0")
                            .parse()
                            .unwrap(),
                        json!(o.metadata.labels),
                    ),
                )
            })
            .collect()
    }

    /// Waits until the store equals a LIST with `lp` (by key, resourceVersion and labels).
    async fn converges_to(&self, api: &KubeApi<DynamicObject>, lp: &ListParams) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let listed: BTreeMap<Key, (u64, Value)> = api
                .list(lp)
                .await
                .unwrap()
                .items
                .iter()
                .map(|o| {
                    (
                        (
                            o.metadata.namespace.clone().unwrap_or_default(),
                            o.metadata.name.clone().unwrap_or_default(),
                        ),
                        (
                            o.metadata
                                .resource_version
                                .as_deref()
                                .unwrap()
                                .parse()
                                .unwrap(),
                            json!(o.metadata.labels),
                        ),
                    )
                })
                .collect();
            let mine = self.state();
            if mine == listed {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "reflector {} did not converge to the LIST:\n store {mine:?}\n  list {listed:?}\nwatcher errors: {:?}",
                    self.name,
                    self.errors.lock().unwrap()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Reflector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_reflectors_converge_to_the_database_after_mixed_writes() {
    let s = TestServer::start().await;
    let c = client(&s);
    let ar = agent_resource();
    let all: KubeApi<DynamicObject> = KubeApi::all_with(c.clone(), &ar);
    let ka: KubeApi<DynamicObject> = KubeApi::namespaced_with(c.clone(), "ka", &ar);
    let kb: KubeApi<DynamicObject> = KubeApi::namespaced_with(c.clone(), "kb", &ar);
    let pp = PostParams::default();
    for i in 0..4 {
        ka.create(
            &pp,
            &dynamic(agent(&format!("pre{i}"), json!({"team": "a"}))),
        )
        .await
        .unwrap();
    }

    let team_a = ListParams::default().labels("team=a");
    let r_all = Reflector::start("list-watch", all.clone(), watcher::Config::default());
    let r_stream = Reflector::start(
        "streaming-list",
        all.clone(),
        watcher::Config::default().streaming_lists(),
    );
    let r_paged = Reflector::start(
        "paged-selector",
        ka.clone(),
        watcher::Config::default().labels("team=a").page_size(2),
    );
    for r in [&r_all, &r_stream, &r_paged] {
        tokio::time::timeout(Duration::from_secs(20), r.store.wait_until_ready())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{} never became ready: {:?}",
                    r.name,
                    r.errors.lock().unwrap()
                )
            })
            .unwrap();
    }
    assert_eq!(r_paged.state().len(), 4);

    let mp = PatchParams::default();
    for i in 0..8 {
        let (api, team) = if i % 2 == 0 { (&ka, "a") } else { (&kb, "b") };
        api.create(
            &pp,
            &dynamic(agent(&format!("x{i}"), json!({"team": team}))),
        )
        .await
        .unwrap();
    }
    ka.patch(
        "x0",
        &mp,
        &Patch::Merge(json!({"metadata": {"labels": {"team": "b"}}})),
    )
    .await
    .unwrap();
    kb.patch(
        "x1",
        &mp,
        &Patch::Merge(json!({"metadata": {"labels": {"team": "a", "n": "1"}}})),
    )
    .await
    .unwrap();
    ka.patch_status("pre0", &mp, &Patch::Merge(available("True")))
        .await
        .unwrap();
    let mut held = dynamic(agent("held", json!({"team": "a"})));
    held.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    ka.create(&pp, &held).await.unwrap();
    ka.delete("held", &DeleteParams::default()).await.unwrap();
    ka.delete("pre1", &DeleteParams::default()).await.unwrap();
    kb.delete("x3", &DeleteParams::default()).await.unwrap();
    let mut x2 = ka.get("x2").await.unwrap();
    x2.data["spec"]["prompt"] = json!("replaced");
    ka.replace("x2", &pp, &x2).await.unwrap();
    // And someone in psql.
    let db = s.db.client().await;
    db.execute(
        "UPDATE resources SET labels = labels || '{\"sql\": \"yes\"}' WHERE kind = 'Agent' AND namespace = 'kb'",
        &[],
    )
    .await
    .unwrap();
    // A reflector started now, after all of that.
    let r_late = Reflector::start(
        "late",
        all.clone(),
        watcher::Config::default().any_semantic(),
    );

    r_all.converges_to(&all, &ListParams::default()).await;
    r_stream.converges_to(&all, &ListParams::default()).await;
    r_paged.converges_to(&ka, &team_a).await;
    r_late.converges_to(&all, &ListParams::default()).await;
    // The terminating object is there until its finalizer goes.
    assert!(r_all.state().contains_key(&("ka".into(), "held".into())));
    ka.patch(
        "held",
        &mp,
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    for r in [&r_all, &r_stream, &r_late] {
        r.converges_to(&all, &ListParams::default()).await;
        assert!(
            !r.state().contains_key(&("ka".into(), "held".into())),
            "{}",
            r.name
        );
    }
    r_paged.converges_to(&ka, &team_a).await;

    // The LIST itself is the table.
    let table: BTreeSet<Key> = db
        .query(
            "SELECT namespace, name FROM resources WHERE kind = 'Agent' AND deleted_at IS NULL",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        r_all.state().keys().cloned().collect::<BTreeSet<_>>(),
        table
    );
    assert_eq!(
        r_all.inits.load(Ordering::SeqCst),
        1,
        "relisted: {:?}",
        r_all.errors.lock().unwrap()
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_watcher_relists_after_410_and_converges() {
    let s = TestServer::start_with(|o| {
        o.watch.history.max_events_per_kind = 3;
        // Trimmed at once, not after the newest events' grace period.
        o.watch.history.keep_recent = std::time::Duration::ZERO;
    })
    .await;
    let c = client(&s);
    let ar = agent_resource();
    let api: KubeApi<DynamicObject> = KubeApi::namespaced_with(c, "gone", &ar);
    let pp = PostParams::default();
    api.create(&pp, &dynamic(agent("a1", json!({"team": "a"}))))
        .await
        .unwrap();
    // No bookmarks and one-second watches: a reconnect resumes from the LIST's
    // resourceVersion, which the writes below push out of the three-event history.
    let cfg = watcher::Config::default()
        .labels("team=a")
        .disable_bookmarks()
        .timeout(1);
    let r = Reflector::start("relisting", api.clone(), cfg);
    tokio::time::timeout(Duration::from_secs(20), r.store.wait_until_ready())
        .await
        .unwrap()
        .unwrap();
    for i in 0..10 {
        api.create(&pp, &dynamic(agent(&format!("b{i}"), json!({"team": "b"}))))
            .await
            .unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while r.inits.load(Ordering::SeqCst) < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no relist; watcher errors: {:?}",
            r.errors.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let errors = r.errors.lock().unwrap().clone();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("410") || e.contains("too old resource version")),
        "the relist was not caused by a 410: {errors:?}"
    );
    api.create(&pp, &dynamic(agent("a2", json!({"team": "a"}))))
        .await
        .unwrap();
    api.delete("a1", &DeleteParams::default()).await.unwrap();
    r.converges_to(&api, &ListParams::default().labels("team=a"))
        .await;
    assert_eq!(
        r.state().keys().map(|k| k.1.as_str()).collect::<Vec<_>>(),
        ["a2"]
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_without_resource_version_see_the_readers_own_writes() {
    let s = TestServer::start().await;
    let api = Api::new(&s);
    let kube = KubeApi::<DynamicObject>::namespaced_with(client(&s), "ryw", &agent_resource());
    for i in 0..25 {
        let name = format!("r{i}");
        let created = api.create("ryw", &agent(&name, json!({}))).await;
        let list = api
            .list(&format!(
                "{}?fieldSelector=metadata.name%3D{name}",
                agents("ryw")
            ))
            .await;
        assert_eq!(
            list_keys(&list).get(&("ryw".to_string(), name.clone())),
            Some(&rv_of(&created)),
            "LIST right after creating {name}: {list}"
        );
        assert!(rv_of(&list) >= rv_of(&created), "{list}");
        let (code, got) = api.get(&format!("{}/{name}", agents("ryw"))).await;
        assert_eq!((code, rv_of(&got)), (200, rv_of(&created)));

        let patched = api
            .merge("ryw", &name, json!({"metadata": {"labels": {"v": "2"}}}))
            .await;
        let list = api
            .list(&format!("{}?labelSelector=v%3D2", agents("ryw")))
            .await;
        assert_eq!(
            list_keys(&list).get(&("ryw".to_string(), name.clone())),
            Some(&rv_of(&patched)),
            "LIST right after patching {name}"
        );
        if i % 2 == 0 {
            api.delete("ryw", &name).await;
            let (code, _) = api.get(&format!("{}/{name}", agents("ryw"))).await;
            assert_eq!(code, 404, "GET right after deleting {name}");
        }
        let via_kube = kube.list(&ListParams::default()).await.unwrap();
        let names: BTreeSet<String> = via_kube
            .items
            .iter()
            .filter_map(|o| o.metadata.name.clone())
            .collect();
        assert_eq!(
            names.contains(&name),
            i % 2 == 1,
            "kube-rs LIST after {name}: {names:?}"
        );
    }
    // Straight in SQL, then a LIST: the committed change is visible.
    let db = s.db.client().await;
    db.execute(
        "UPDATE resources SET labels = '{\"sql\": \"1\"}' WHERE kind = 'Agent' AND name = 'r1'",
        &[],
    )
    .await
    .unwrap();
    let list = api
        .list(&format!("{}?labelSelector=sql%3D1", agents("ryw")))
        .await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1), "{list}");
    s.stop().await;
}

/// Every page of a paged LIST: (resourceVersion, keys with rvs, continue, remainingItemCount).
async fn pages(
    api: &Api,
    first: &str,
) -> Vec<(u64, BTreeMap<Key, u64>, Option<String>, Option<i64>)> {
    let mut out = Vec::new();
    let mut path = first.to_string();
    loop {
        let page = api.list(&path).await;
        let cont = page["metadata"]["continue"]
            .as_str()
            .filter(|c| !c.is_empty())
            .map(str::to_string);
        out.push((
            rv_of(&page),
            list_keys(&page),
            cont.clone(),
            page["metadata"]["remainingItemCount"].as_i64(),
        ));
        match cont {
            Some(c) => path = format!("{}?limit=4&continue={c}", agents("pg")),
            None => return out,
        }
        assert!(out.len() < 20, "endless paging");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_pages_come_from_one_snapshot_while_objects_change_between_pages() {
    let s = TestServer::start().await;
    let api = Api::new(&s);
    let mut at_start = BTreeMap::new();
    for i in 0..10 {
        let o = api
            .create("pg", &agent(&format!("p{i:02}"), json!({"v": "1"})))
            .await;
        at_start.insert(("pg".to_string(), format!("p{i:02}")), rv_of(&o));
    }
    let first = api.list(&format!("{}?limit=4", agents("pg"))).await;
    let rv = rv_of(&first);
    let names: Vec<&str> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["p00", "p01", "p02", "p03"]);
    assert_eq!(
        first["metadata"]["remainingItemCount"], 6,
        "{}",
        first["metadata"]
    );
    let token = first["metadata"]["continue"]
        .as_str()
        .expect("a continue token")
        .to_string();

    // Changes between pages: none of them may show.
    api.create("pg", &agent("p05a", json!({"v": "1"}))).await;
    api.create("pg", &agent("p99", json!({"v": "1"}))).await;
    api.delete("pg", "p07").await;
    api.merge("pg", "p08", json!({"metadata": {"labels": {"v": "2"}}}))
        .await;
    api.delete("pg", "p01").await;

    let rest = pages(&api, &format!("{}?limit=4&continue={token}", agents("pg"))).await;
    let mut union = list_keys(&first);
    for (i, (page_rv, items, cont, remaining)) in rest.iter().enumerate() {
        assert_eq!(
            *page_rv,
            rv,
            "page {} reports another resourceVersion",
            i + 2
        );
        let last = i + 1 == rest.len();
        assert_eq!(cont.is_none(), last, "page {}", i + 2);
        if !last {
            assert_eq!(*remaining, Some(2), "page {}", i + 2);
        }
        union.extend(items.clone());
    }
    assert_eq!(union, at_start, "the pages are not the state at {rv}");

    // The same snapshot, asked for exactly.
    let exact = api
        .list(&format!(
            "{}?resourceVersion={rv}&resourceVersionMatch=Exact",
            agents("pg")
        ))
        .await;
    assert_eq!(rv_of(&exact), rv);
    assert_eq!(list_keys(&exact), at_start);

    // Paging with a selector keeps to the snapshot too (and reports no count).
    let sel = api
        .list(&format!("{}?limit=3&labelSelector=v%3D1", agents("pg")))
        .await;
    assert!(
        sel["metadata"].get("remainingItemCount").is_none(),
        "{}",
        sel["metadata"]
    );
    assert_eq!(list_keys(&sel).len(), 3);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_continue_token_is_400_bad_request_in_kubes_words() {
    let s = TestServer::start().await;
    let api = Api::new(&s);
    api.create("pg", &agent("p00", json!({}))).await;
    let (code, body) = api
        .get(&format!("{}?limit=3&continue=garbage!", agents("pg")))
        .await;
    assert_eq!(code, 400, "{body}");
    assert_eq!(body["reason"], "BadRequest", "{body}");
    let (code, other) = api
        .get(&format!(
            "{}?limit=3&continue=x&resourceVersion=5",
            agents("pg")
        ))
        .await;
    assert_eq!(code, 400, "{other}");
    assert_eq!(
        other["message"],
        "specifying resource version is not allowed when using continue"
    );
    // kube-apiserver: "invalid continue token: continue key is not valid: <why>".
    let msg = body["message"].as_str().unwrap_or("");
    assert!(
        msg.starts_with("invalid continue token: continue key is not valid"),
        "{body}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_continue_token_is_410_expired_with_a_token_to_continue_inconsistently() {
    let s = TestServer::start_with(|o| o.watch.max_paged_snapshots = 1).await;
    let api = Api::new(&s);
    for i in 0..10 {
        api.create("pg", &agent(&format!("p{i:02}"), json!({})))
            .await;
    }

    let first = api.list(&format!("{}?limit=3", agents("pg"))).await;
    let token = first["metadata"]["continue"].as_str().unwrap().to_string();
    // Another paged list at a newer resourceVersion takes the only retained snapshot.
    api.create("pg", &agent("p50", json!({}))).await;
    api.delete("pg", "p04").await;
    let other = api.list(&format!("{}?limit=3", agents("pg"))).await;
    assert!(rv_of(&other) > rv_of(&first));

    let (code, body) = api
        .get(&format!("{}?limit=3&continue={token}", agents("pg")))
        .await;
    assert_eq!(code, 410, "{body}");
    assert_eq!(body["kind"], "Status");
    assert_eq!(body["reason"], "Expired", "{body}");
    assert_eq!(body["code"], 410);
    assert!(
        body["message"].as_str().unwrap_or("").starts_with(
            "The provided continue parameter is too old to display a consistent list result."
        ),
        "{body}"
    );
    let fresh = body["metadata"]["continue"]
        .as_str()
        .expect("an inconsistent-continue token")
        .to_string();
    assert!(!fresh.is_empty());
    // The fresh token continues after the last item returned, from the current state.
    let mut names = Vec::new();
    let mut path = format!("{}?limit=3&continue={fresh}", agents("pg"));
    loop {
        let page = api.list(&path).await;
        names.extend(list_keys(&page).into_keys().map(|k| k.1));
        match page["metadata"]["continue"].as_str() {
            Some(c) if !c.is_empty() => path = format!("{}?limit=3&continue={c}", agents("pg")),
            _ => break,
        }
        assert!(names.len() < 50);
    }
    assert_eq!(names, ["p03", "p05", "p06", "p07", "p08", "p09", "p50"]);
    // The newer listing's own token is still good.
    let token = other["metadata"]["continue"].as_str().unwrap();
    let next = api
        .list(&format!("{}?limit=3&continue={token}", agents("pg")))
        .await;
    assert_eq!(rv_of(&next), rv_of(&other));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_from_a_resource_version_not_yet_reached_is_504_too_large_resource_version() {
    let s = TestServer::start().await;
    let api = Api::new(&s);
    api.create("big", &agent("a", json!({}))).await;
    let current = rv_of(&api.list(&agents("big")).await);
    let requested = current + 500;
    let started = std::time::Instant::now();
    let (code, body) = api
        .get(&format!(
            "{}?resourceVersion={requested}&resourceVersionMatch=NotOlderThan",
            agents("big")
        ))
        .await;
    assert_eq!(code, 504, "{body}");
    assert!(
        started.elapsed() >= Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(body["reason"], "Timeout", "{body}");
    assert_eq!(
        body["message"],
        format!("Too large resource version: {requested}, current: {current}")
    );
    assert_eq!(
        body["details"]["causes"],
        json!([{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}]),
        "{body}"
    );
    s.stop().await;
}
