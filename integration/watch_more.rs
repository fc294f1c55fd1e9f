//! The watch, continued: URL forms, namespaces and selectors, bookmarks, WatchList, and
//! what DELETED and terminating objects carry.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::TestServer;
use crate::watch::{agent, agents, available, briefs, pairs, rv_of, tn, Api, GV};

// ---- URL forms, scopes and selectors ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_query_and_watch_path_forms_serve_one_namespace_or_all() {
    let s = TestServer::start().await;
    let api = Api::new(&s);
    let start = rv_of(&api.list(&format!("{GV}/agents")).await);
    let q = |path: String| format!("{path}?watch=true&resourceVersion={start}");
    let p = |path: &str| format!("{GV}/watch/{path}?resourceVersion={start}");
    let mut ns_query = api.watch(&q(agents("ns-a"))).await;
    let mut ns_path = api.watch(&p("namespaces/ns-a/agents")).await;
    let mut all_query = api.watch(&q(format!("{GV}/agents"))).await;
    let mut all_path = api.watch(&p("agents")).await;
    assert!(ns_query.content_type().starts_with("application/json"));

    api.create("ns-a", &agent("x", json!({}))).await;
    api.create("ns-b", &agent("y", json!({}))).await;
    api.merge("ns-b", "y", json!({"spec": {"prompt": "p2"}}))
        .await;
    api.delete("ns-a", "x").await;

    let ns_want = pairs(&[("ADDED", "x"), ("DELETED", "x")]);
    let all_want = pairs(&[
        ("ADDED", "x"),
        ("ADDED", "y"),
        ("MODIFIED", "y"),
        ("DELETED", "x"),
    ]);
    for w in [&mut ns_query, &mut ns_path] {
        let evs = w.take(2).await;
        assert_eq!(
            evs.iter().map(tn).collect::<Vec<_>>(),
            ns_want,
            "{}",
            w.path
        );
        assert!(evs
            .iter()
            .all(|e| e["object"]["metadata"]["namespace"] == "ns-a"));
        w.assert_quiet(Duration::from_millis(300)).await;
    }
    for w in [&mut all_query, &mut all_path] {
        let evs = w.take(4).await;
        assert_eq!(
            evs.iter().map(tn).collect::<Vec<_>>(),
            all_want,
            "{}",
            w.path
        );
        let namespaces: Vec<&str> = evs
            .iter()
            .map(|e| e["object"]["metadata"]["namespace"].as_str().unwrap())
            .collect();
        assert_eq!(namespaces, ["ns-a", "ns-b", "ns-b", "ns-a"]);
        w.assert_quiet(Duration::from_millis(300)).await;
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_path_with_an_object_name_watches_that_one_object() {
    let s = TestServer::start().await;
    let api = Api::new(&s);
    api.create("one", &agent("x", json!({}))).await;
    api.create("one", &agent("y", json!({}))).await;
    // kube-apiserver's deprecated single-object form: a watch with metadata.name=x.
    let mut w = api
        .watch(&format!("{GV}/watch/namespaces/one/agents/x"))
        .await;
    let ev = w.next_event().await;
    assert_eq!(tn(&ev), ("ADDED".into(), "x".into()), "{ev}");
    api.merge("one", "y", json!({"spec": {"prompt": "p2"}}))
        .await;
    api.merge("one", "x", json!({"spec": {"prompt": "p2"}}))
        .await;
    let ev = w.next_event().await;
    assert_eq!(tn(&ev), ("MODIFIED".into(), "x".into()), "{ev}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_of_an_item_url_with_watch_true_is_a_plain_get_as_in_kube() {
    let s = TestServer::start().await;
    let api = Api::new(&s);
    let created = api.create("one", &agent("x", json!({}))).await;
    // kube-apiserver makes a GET a watch only on a collection URL; the item route is a GET
    // (GetOptions has no watch), so the object comes back, not a stream of events.
    let mut resp = api
        .http
        .get(format!("{}{}/x?watch=true", api.base, agents("one")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let content_type = format!("{:?}", resp.headers().get("content-type"));
    let mut body = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(chunk) = resp.chunk().await.unwrap() {
            body.extend_from_slice(&chunk);
        }
    })
    .await;
    let body = String::from_utf8_lossy(&body).to_string();
    assert!(
        read.is_ok(),
        "GET .../agents/x?watch=true was answered as a watch (content-type {content_type}) that did not end; received so far: {body}"
    );
    let got: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(got["kind"], "Agent", "{got}");
    assert_eq!(
        got["metadata"]["resourceVersion"],
        created["metadata"]["resourceVersion"]
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_option_spelled_as_kube_reads_booleans_watches_and_false_lists() {
    let s = TestServer::start().await;
    let api = Api::new(&s);
    api.create("bools", &agent("x", json!({}))).await;
    // kube's parameter codec: anything but 0 and false (in any case) is true.
    for v in ["True", "TRUE", "1", "t", "yes"] {
        let mut w = api.watch(&format!("{}?watch={v}", agents("bools"))).await;
        let ev = w.next_event().await;
        assert_eq!(
            tn(&ev),
            ("ADDED".into(), "x".into()),
            "watch={v} must be served as a watch: {ev}"
        );
    }
    for v in ["false", "False", "FALSE", "0"] {
        let list = api.list(&format!("{}?watch={v}", agents("bools"))).await;
        assert_eq!(list["kind"], "AgentList", "watch={v} is a list: {list}");
    }
    // The metrics name the verb the same way.
    let metrics = api.get("/metrics").await.1;
    let text = metrics.as_str().unwrap_or("");
    assert!(
        text.lines()
            .any(|l| l.starts_with("apiserver_request_total")
                && l.contains("verb=\"watch\"")
                && l.contains("resource=\"agents\"")),
        "{text}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_and_field_selectors_filter_events_and_leaving_the_selection_is_deleted() {
    let s = TestServer::start().await;
    let api = Api::new(&s);
    let start = rv_of(&api.list(&format!("{GV}/agents")).await);
    let w = |sel: &str| format!("{}?watch=true&resourceVersion={start}&{sel}", agents("sel"));
    let mut by_label = api.watch(&w("labelSelector=team%3Da")).await;
    let mut by_set = api
        .watch(&w("labelSelector=team+in+%28a%2Cc%29%2C%21frozen"))
        .await;
    let mut by_name = api.watch(&w("fieldSelector=metadata.name%3Dp")).await;
    let mut by_ns = api
        .watch(&format!(
            "{GV}/agents?watch=true&resourceVersion={start}&fieldSelector=metadata.namespace%3Dsel"
        ))
        .await;

    api.create("sel", &agent("p", json!({"team": "a"}))).await; // all
    api.create("sel", &agent("q", json!({"team": "b"}))).await; // by_ns
    api.create("other", &agent("p", json!({"team": "a"}))).await; // none (other namespace)
    let labels_before = json!({"team": "a"});
    let moved = api
        .merge("sel", "p", json!({"metadata": {"labels": {"team": "b"}}}))
        .await; // leaves label selections
    api.merge("sel", "q", json!({"metadata": {"labels": {"team": "c"}}}))
        .await; // joins by_set
    api.merge(
        "sel",
        "q",
        json!({"metadata": {"labels": {"frozen": "yes"}}}),
    )
    .await; // leaves by_set
    api.merge("sel", "p", json!({"metadata": {"labels": {"team": "a"}}}))
        .await; // back in by_label
    api.delete("sel", "p").await;

    let got = by_label.take(4).await;
    assert_eq!(
        got.iter().map(tn).collect::<Vec<_>>(),
        pairs(&[
            ("ADDED", "p"),
            ("DELETED", "p"),
            ("ADDED", "p"),
            ("DELETED", "p")
        ]),
        "{:?}",
        briefs(&got)
    );
    // Leaving the selection: DELETED with the last state that matched, at the change's rv.
    assert_eq!(
        got[1]["object"]["metadata"]["labels"], labels_before,
        "{}",
        got[1]
    );
    assert_eq!(rv_of(&got[1]["object"]), rv_of(&moved));
    by_label.assert_quiet(Duration::from_millis(300)).await;

    let got = by_set.take(4).await;
    assert_eq!(
        got.iter().map(tn).collect::<Vec<_>>(),
        pairs(&[
            ("ADDED", "p"),
            ("DELETED", "p"),
            ("ADDED", "q"),
            ("DELETED", "q")
        ]),
        "{:?}",
        briefs(&got)
    );
    let got = by_set.take(2).await;
    assert_eq!(
        got.iter().map(tn).collect::<Vec<_>>(),
        pairs(&[("ADDED", "p"), ("DELETED", "p")])
    );
    by_set.assert_quiet(Duration::from_millis(300)).await;

    let got = by_name.take(4).await;
    assert_eq!(
        got.iter().map(tn).collect::<Vec<_>>(),
        pairs(&[
            ("ADDED", "p"),
            ("MODIFIED", "p"),
            ("MODIFIED", "p"),
            ("DELETED", "p")
        ]),
        "{:?}",
        briefs(&got)
    );
    by_name.assert_quiet(Duration::from_millis(300)).await;

    let got = by_ns.take(7).await;
    assert_eq!(
        got.iter().map(tn).collect::<Vec<_>>(),
        pairs(&[
            ("ADDED", "p"),
            ("ADDED", "q"),
            ("MODIFIED", "p"),
            ("MODIFIED", "q"),
            ("MODIFIED", "q"),
            ("MODIFIED", "p"),
            ("DELETED", "p"),
        ]),
        "{:?}",
        briefs(&got)
    );
    assert!(got
        .iter()
        .all(|e| e["object"]["metadata"]["namespace"] == "sel"));
    by_ns.assert_quiet(Duration::from_millis(300)).await;
    s.stop().await;
}

// ---- bookmarks ----

fn assert_bookmark_shape(ev: &Value) -> u64 {
    assert_eq!(ev["type"], "BOOKMARK", "{ev}");
    let obj = ev["object"].as_object().unwrap();
    let keys: BTreeSet<&str> = obj.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        BTreeSet::from(["apiVersion", "kind", "metadata"]),
        "{ev}"
    );
    assert_eq!(obj["apiVersion"], "ark.mckinsey.com/v1alpha1", "{ev}");
    assert_eq!(obj["kind"], "Agent", "{ev}");
    let meta = obj["metadata"].as_object().unwrap();
    assert_eq!(meta.keys().collect::<Vec<_>>(), ["resourceVersion"], "{ev}");
    rv_of(&ev["object"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bookmark_arrives_before_the_timeout_with_only_a_resource_version() {
    let s = TestServer::start().await;
    let api = Api::new(&s);
    let start = rv_of(&api.list(&format!("{GV}/agents")).await);
    let opts = "allowWatchBookmarks=true&timeoutSeconds=2";

    // No event at all: the bookmark names the start point (nothing happened since).
    let mut idle = api
        .watch(&format!(
            "{}?watch=true&resourceVersion={start}&{opts}",
            agents("bm")
        ))
        .await;
    let began = Instant::now();
    let lines = idle.until_end(Duration::from_secs(10)).await;
    let took = began.elapsed();
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(6),
        "{took:?}"
    );
    assert!(!lines.is_empty(), "no bookmark before the stream ended");
    for ev in &lines {
        assert_eq!(assert_bookmark_shape(ev), start);
    }

    // Events of its own selection only: the bookmark is the last event's resourceVersion.
    let mut w = api
        .watch(&format!(
            "{}?watch=true&resourceVersion={start}&{opts}&labelSelector=team%3Da",
            agents("bm")
        ))
        .await;
    let a = api.create("bm", &agent("a", json!({"team": "a"}))).await;
    let a2 = api
        .merge("bm", "a", json!({"spec": {"prompt": "p2"}}))
        .await;
    let lines = w.until_end(Duration::from_secs(10)).await;
    let events: Vec<&Value> = lines.iter().filter(|e| e["type"] != "BOOKMARK").collect();
    assert_eq!(
        events.iter().map(|e| tn(e)).collect::<Vec<_>>(),
        pairs(&[("ADDED", "a"), ("MODIFIED", "a")])
    );
    assert_eq!(rv_of(&events[0]["object"]), rv_of(&a));
    let bookmarks: Vec<u64> = lines
        .iter()
        .filter(|e| e["type"] == "BOOKMARK")
        .map(assert_bookmark_shape)
        .collect();
    assert!(!bookmarks.is_empty(), "no bookmark in {:?}", briefs(&lines));
    assert_eq!(
        lines.last().unwrap()["type"],
        "BOOKMARK",
        "{:?}",
        briefs(&lines)
    );
    let mut sent = start;
    for ev in &lines {
        if ev["type"] == "BOOKMARK" {
            assert!(
                rv_of(&ev["object"]) <= sent.max(rv_of(&a2)),
                "{:?}",
                briefs(&lines)
            );
            assert!(
                rv_of(&ev["object"]) >= sent,
                "bookmark went back: {:?}",
                briefs(&lines)
            );
        }
        sent = sent.max(rv_of(&ev["object"]));
    }
    assert_eq!(*bookmarks.last().unwrap(), rv_of(&a2));

    // A change outside the selection: the bookmark may pass it (nothing of this watcher's
    // lies between), never the newest change, and resuming from it loses nothing.
    let mut w = api
        .watch(&format!(
            "{}?watch=true&resourceVersion={}&{opts}&labelSelector=team%3Da",
            agents("bm"),
            rv_of(&a2)
        ))
        .await;
    let b = api.create("bm", &agent("b", json!({"team": "b"}))).await;
    let lines = w.until_end(Duration::from_secs(10)).await;
    let bm = lines.last().map(assert_bookmark_shape).expect("a bookmark");
    assert!(
        lines.iter().all(|e| e["type"] == "BOOKMARK"),
        "{:?}",
        briefs(&lines)
    );
    assert!(
        bm >= rv_of(&a2) && bm <= rv_of(&b),
        "bookmark {bm}, b at {}",
        rv_of(&b)
    );
    let c = api.create("bm", &agent("c", json!({"team": "a"}))).await;
    let mut resumed = api
        .watch(&format!(
            "{}?watch=true&resourceVersion={bm}&labelSelector=team%3Da",
            agents("bm")
        ))
        .await;
    let ev = resumed.next_event().await;
    assert_eq!(tn(&ev), ("ADDED".into(), "c".into()));
    assert_eq!(rv_of(&ev["object"]), rv_of(&c));
    resumed.assert_quiet(Duration::from_millis(300)).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_without_allow_bookmarks_sends_no_bookmark_and_ends_at_timeout() {
    let s = TestServer::start().await;
    let api = Api::new(&s);
    api.create("nb", &agent("a", json!({}))).await;
    let mut w = api
        .watch(&format!("{}?watch=true&timeoutSeconds=1", agents("nb")))
        .await;
    let lines = w.until_end(Duration::from_secs(8)).await;
    assert_eq!(
        lines.iter().map(tn).collect::<Vec<_>>(),
        pairs(&[("ADDED", "a")])
    );
    s.stop().await;
}

// ---- WatchList ----

const WATCHLIST: &str =
    "watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_list_sends_the_state_then_an_initial_events_end_bookmark_then_changes() {
    let s = TestServer::start().await;
    let api = Api::new(&s);
    let mut names = BTreeSet::new();
    let mut newest = 0;
    for i in 0..5 {
        let o = api.create("wl", &agent(&format!("w{i}"), json!({}))).await;
        newest = rv_of(&o);
        names.insert(format!("w{i}"));
    }
    api.create("elsewhere", &agent("z", json!({}))).await;
    api.delete("wl", "w4").await;
    names.remove("w4");

    for query in [
        WATCHLIST.to_string(),
        format!("{WATCHLIST}&resourceVersion={newest}"),
    ] {
        let mut w = api.watch(&format!("{}?{query}", agents("wl"))).await;
        let mut got = BTreeSet::new();
        let end = loop {
            let ev = w.next().await;
            match ev["type"].as_str() {
                Some("ADDED") => assert!(got.insert(
                    ev["object"]["metadata"]["name"]
                        .as_str()
                        .unwrap()
                        .to_string()
                )),
                Some("BOOKMARK") => break ev,
                _ => panic!("{query}: unexpected {ev}"),
            }
        };
        assert_eq!(got, names, "{query}");
        assert_eq!(
            end["object"]["apiVersion"], "ark.mckinsey.com/v1alpha1",
            "{end}"
        );
        assert_eq!(end["object"]["kind"], "Agent", "{end}");
        assert_eq!(
            end["object"]["metadata"]["annotations"],
            json!({"k8s.io/initial-events-end": "true"}),
            "{end}"
        );
        let bm = rv_of(&end["object"]);
        assert!(bm >= newest, "{end}");
        let live = api.create("wl", &agent("live", json!({}))).await;
        let ev = w.next_event().await;
        assert_eq!(tn(&ev), ("ADDED".into(), "live".into()));
        assert!(rv_of(&live) > bm);
        api.delete("wl", "live").await;
        let ev = w.next_event().await;
        assert_eq!(tn(&ev), ("DELETED".into(), "live".into()));
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_list_from_a_just_written_resource_version_includes_that_write() {
    let s = TestServer::start().await;
    let api = Api::new(&s);
    for i in 0..20 {
        let name = format!("r{i}");
        let o = api.create("nlt", &agent(&name, json!({}))).await;
        let rv = rv_of(&o);
        let mut w = api
            .watch(&format!(
                "{}?{WATCHLIST}&resourceVersion={rv}",
                agents("nlt")
            ))
            .await;
        let mut seen = BTreeSet::new();
        let end = loop {
            let ev = w.next().await;
            if ev["type"] == "BOOKMARK" {
                break ev;
            }
            seen.insert(
                ev["object"]["metadata"]["name"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            );
        };
        assert!(
            seen.contains(&name) && rv_of(&end["object"]) >= rv,
            "NotOlderThan {rv}: initial events {seen:?}, end bookmark {end}"
        );
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_with_send_initial_events_false_starts_from_now_without_the_state() {
    let s = TestServer::start().await;
    let api = Api::new(&s);
    api.create("sie", &agent("old", json!({}))).await;
    let mut w = api
        .watch(&format!(
            "{}?watch=true&sendInitialEvents=false&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true",
            agents("sie")
        ))
        .await;
    // Give the watch time to open before the change it must see.
    tokio::time::sleep(Duration::from_millis(300)).await;
    api.create("sie", &agent("new", json!({}))).await;
    let ev = w.next_event().await;
    assert_eq!(
        tn(&ev),
        ("ADDED".into(), "new".into()),
        "sendInitialEvents=false sends no state: {ev}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_list_invalid_combinations_are_422_invalid() {
    let s = TestServer::start().await;
    let api = Api::new(&s);
    let cases = [
        (
            "watch=true&sendInitialEvents=true&allowWatchBookmarks=true",
            "resourceVersionMatch",
            "resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
        ),
        (
            "watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan",
            "allowWatchBookmarks",
            "allowWatchBookmarks: Forbidden: sendInitialEvents requires setting allowWatchBookmarks to true",
        ),
        (
            "sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true",
            "sendInitialEvents",
            "sendInitialEvents: Forbidden: sendInitialEvents is forbidden for list",
        ),
        (
            "watch=true&resourceVersionMatch=NotOlderThan&resourceVersion=1",
            "resourceVersionMatch",
            "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
        ),
    ];
    for (query, field, msg) in cases {
        let (code, body) = api.get(&format!("{}?{query}", agents("inv"))).await;
        assert_eq!(code, 422, "{query}: {body}");
        assert_eq!(body["kind"], "Status", "{body}");
        assert_eq!(body["reason"], "Invalid", "{body}");
        assert_eq!(body["code"], 422, "{body}");
        assert_eq!(
            body["message"],
            format!("ListOptions.meta.k8s.io \"\" is invalid: {msg}"),
            "{query}"
        );
        assert_eq!(body["details"]["kind"], "ListOptions", "{body}");
        assert_eq!(body["details"]["group"], "meta.k8s.io", "{body}");
        assert_eq!(body["details"]["causes"][0]["field"], field, "{body}");
        assert_eq!(
            body["details"]["causes"][0]["reason"], "FieldValueForbidden",
            "{body}"
        );
    }
    s.stop().await;
}

// ---- event contents ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_event_carries_the_last_state_of_the_object() {
    let s = TestServer::start().await;
    let api = Api::new(&s);
    let start = rv_of(&api.list(&agents("del")).await);
    let mut w = api
        .watch(&format!(
            "{}?watch=true&resourceVersion={start}",
            agents("del")
        ))
        .await;
    let created = api.create("del", &agent("d", json!({"team": "a"}))).await;
    let last = api
        .merge("del", "d", json!({"metadata": {"labels": {"team": "z", "extra": "e"}}, "spec": {"prompt": "final words"}}))
        .await;
    api.merge_status("del", "d", available("False")).await;
    api.delete("del", "d").await;
    let evs = w.take(4).await;
    assert_eq!(
        evs.iter().map(tn).collect::<Vec<_>>(),
        pairs(&[
            ("ADDED", "d"),
            ("MODIFIED", "d"),
            ("MODIFIED", "d"),
            ("DELETED", "d")
        ])
    );
    let gone = &evs[3]["object"];
    assert_eq!(gone["metadata"]["uid"], created["metadata"]["uid"]);
    assert_eq!(
        gone["metadata"]["labels"],
        json!({"team": "z", "extra": "e"}),
        "{gone}"
    );
    assert_eq!(gone["spec"]["prompt"], "final words", "{gone}");
    assert_eq!(gone["spec"]["modelRef"]["name"], "m1", "{gone}");
    assert_eq!(gone["status"]["conditions"][0]["status"], "False", "{gone}");
    assert_eq!(
        gone["metadata"]["generation"],
        last["metadata"]["generation"]
    );
    assert!(rv_of(gone) > rv_of(&evs[2]["object"]), "{gone}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_with_a_finalizer_stays_modified_until_the_finalizer_is_removed() {
    let s = TestServer::start().await;
    let api = Api::new(&s);
    let mut obj = agent("held", json!({}));
    obj["metadata"]["finalizers"] = json!(["example.com/hold"]);
    api.create("fin", &obj).await;
    let start = rv_of(&api.list(&agents("fin")).await);
    let mut w = api
        .watch(&format!(
            "{}?watch=true&resourceVersion={start}",
            agents("fin")
        ))
        .await;
    api.delete("fin", "held").await;
    let ev = w.next_event().await;
    assert_eq!(tn(&ev), ("MODIFIED".into(), "held".into()), "{ev}");
    let ts = ev["object"]["metadata"]["deletionTimestamp"].clone();
    assert!(ts.is_string(), "{ev}");
    assert_eq!(
        ev["object"]["metadata"]["finalizers"],
        json!(["example.com/hold"])
    );
    w.assert_quiet(Duration::from_millis(500)).await;
    // An unrelated edit while terminating is still MODIFIED.
    api.merge("fin", "held", json!({"metadata": {"labels": {"x": "y"}}}))
        .await;
    let ev = w.next_event().await;
    assert_eq!(tn(&ev), ("MODIFIED".into(), "held".into()), "{ev}");
    assert_eq!(ev["object"]["metadata"]["deletionTimestamp"], ts);

    api.json_patch(
        "fin",
        "held",
        json!([{"op": "remove", "path": "/metadata/finalizers"}]),
    )
    .await;
    let ev = w.next_event().await;
    assert_eq!(tn(&ev), ("DELETED".into(), "held".into()), "{ev}");
    assert_eq!(ev["object"]["metadata"]["deletionTimestamp"], ts, "{ev}");
    assert_eq!(ev["object"]["metadata"]["labels"]["x"], "y", "{ev}");
    assert!(
        ev["object"]["metadata"]["finalizers"]
            .as_array()
            .is_none_or(|f| f.is_empty()),
        "{ev}"
    );
    w.assert_quiet(Duration::from_millis(300)).await;
    let (code, _) = api.get(&format!("{}/held", agents("fin"))).await;
    assert_eq!(code, 404);
    s.stop().await;
}
