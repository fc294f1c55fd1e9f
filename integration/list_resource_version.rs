//! A list's resourceVersion is always a positive integer, and a watch from it delivers
//! exactly the changes after it: on an empty store, and right after a restart.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::TestServer;
use crate::watch::{agent, agents, briefs, pairs, tn, Api};

/// The list's resourceVersion, which must be a positive decimal integer.
async fn list_rv(api: &Api, path: &str) -> String {
    let list = api.list(path).await;
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_else(|| panic!("no resourceVersion: {list}"))
        .to_string();
    let n: u64 = rv
        .parse()
        .unwrap_or_else(|_| panic!("not an integer: {rv:?}"));
    assert!(
        n >= 1,
        "a list's resourceVersion must be positive, got {rv:?}"
    );
    rv
}

/// Creates a and b and deletes a, then watches from `rv`: exactly those three events.
async fn changes_after(api: &Api, ns: &str, rv: &str) {
    api.create(ns, &agent("a", json!({}))).await;
    api.create(ns, &agent("b", json!({}))).await;
    api.delete(ns, "a").await;
    let mut w = api
        .watch(&format!(
            "{}?watch=true&resourceVersion={rv}&allowWatchBookmarks=true",
            agents(ns)
        ))
        .await;
    let got: Vec<Value> = w.take(3).await;
    assert_eq!(
        got.iter().map(tn).collect::<Vec<_>>(),
        pairs(&[("ADDED", "a"), ("ADDED", "b"), ("DELETED", "a")]),
        "a watch from the list's resourceVersion {rv} replays the changes after it, not the current state: {:?}",
        briefs(&got)
    );
    w.assert_quiet(Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_store_lists_at_a_positive_resource_version_and_a_watch_from_it_sees_every_later_change(
) {
    let s = TestServer::start().await;
    let api = Api::new(&s);
    let rv = list_rv(&api, &agents("empty")).await;
    // Across namespaces and for a cluster-scoped kind too.
    list_rv(&api, "/apis/ark.mckinsey.com/v1alpha1/agents").await;
    list_rv(&api, "/apis/ark.mckinsey.com/v1alpha1/arkconfigs").await;
    changes_after(&api, "empty", &rv).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn right_after_a_restart_a_list_resource_version_resumes_watches_exactly() {
    let s = TestServer::start().await;
    let db = s.stop_keeping_db().await;
    // Still empty, now on a server that resumed the slot instead of creating it.
    let s = TestServer::start_on(db).await;
    let api = Api::new(&s);
    let rv = list_rv(&api, &agents("restarted")).await;
    changes_after(&api, "restarted", &rv).await;
    // And once more, with objects in the store.
    let db = s.stop_keeping_db().await;
    let s = TestServer::start_on(db).await;
    let api = Api::new(&s);
    let rv = list_rv(&api, &agents("restarted")).await;
    api.merge(
        "restarted",
        "b",
        json!({"spec": {"prompt": "after restart"}}),
    )
    .await;
    let mut w = api
        .watch(&format!(
            "{}?watch=true&resourceVersion={rv}",
            agents("restarted")
        ))
        .await;
    let got = w.take(1).await;
    assert_eq!(
        tn(&got[0]),
        ("MODIFIED".into(), "b".into()),
        "{:?}",
        briefs(&got)
    );
    s.stop().await;
}
