//! Backup and restore as README.md documents it: `pg_dump` of the database, `pg_restore`
//! into a fresh one, and a server started on the restored copy serves every object as it
//! was. The publication is part of the dump; the replication slot is not (slots live outside
//! any database), and the server on the restored database creates its own and seeds from it.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{TestDb, TestServer};

const NS: &str = "backup";
const GROUP: &str = "/apis/ark.mckinsey.com/v1alpha1";

fn path(plural: &str, namespaced: bool) -> String {
    if namespaced {
        format!("{GROUP}/namespaces/{NS}/{plural}")
    } else {
        format!("{GROUP}/{plural}")
    }
}

/// (plural, namespaced, object): several kinds, most with labels, one cluster-scoped, and
/// an Agent whose spec is larger than 8 KB (more than a PostgreSQL page).
fn objects() -> Vec<(&'static str, bool, Value)> {
    let labels = json!({"app.kubernetes.io/part-of": "backup-test", "tier": "gold"});
    let big_prompt: String = (0..400)
        .map(|i| format!("Step {i}: check the itinerary. "))
        .collect();
    assert!(big_prompt.len() > 8 * 1024);
    vec![
        (
            "agents",
            true,
            json!({"apiVersion": "ark.mckinsey.com/v1alpha1", "kind": "Agent",
            "metadata": {"name": "planner", "labels": labels, "annotations": {"note": "kept"}},
            "spec": {"description": "Drafts trips.", "modelRef": {"name": "planner-model"},
                     "prompt": "You plan short trips.",
                     "tools": [{"type": "http", "name": "currency-rates"}]}}),
        ),
        (
            "agents",
            true,
            json!({"apiVersion": "ark.mckinsey.com/v1alpha1", "kind": "Agent",
            "metadata": {"name": "big-prompt", "labels": {"size": "large"}},
            "spec": {"prompt": big_prompt}}),
        ),
        (
            "agents",
            true,
            json!({"apiVersion": "ark.mckinsey.com/v1alpha1", "kind": "Agent",
            "metadata": {"name": "unlabelled"}, "spec": {"prompt": "plain"}}),
        ),
        (
            "models",
            true,
            json!({"apiVersion": "ark.mckinsey.com/v1alpha1", "kind": "Model",
            "metadata": {"name": "planner-model", "labels": labels},
            "spec": {"provider": "openai", "type": "completions", "model": {"value": "gpt-4o-mini"},
                     "config": {"openai": {"baseUrl": {"value": "https://llm.example.internal/v1"},
                        "apiKey": {"valueFrom": {"secretKeyRef": {"name": "key", "key": "token"}}}}}}}),
        ),
        (
            "teams",
            true,
            json!({"apiVersion": "ark.mckinsey.com/v1alpha1", "kind": "Team",
            "metadata": {"name": "travel-desk", "labels": {"tier": "silver"}},
            "spec": {"strategy": "sequential", "maxTurns": 4,
                     "members": [{"name": "planner", "type": "agent"}]}}),
        ),
        (
            "memories",
            true,
            json!({"apiVersion": "ark.mckinsey.com/v1alpha1", "kind": "Memory",
            "metadata": {"name": "trip-notes"},
            "spec": {"address": {"value": "http://history-store:8080"}}}),
        ),
        (
            "arkconfigs",
            false,
            json!({"apiVersion": "ark.mckinsey.com/v1alpha1", "kind": "ArkConfig",
            "metadata": {"name": "default", "labels": labels}, "spec": {"queryTTL": "48h"}}),
        ),
    ]
}

async fn get(http: &reqwest::Client, url: &str) -> (u16, Value) {
    let r = http.get(url).send().await.unwrap();
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or(Value::Null))
}

/// Runs a PostgreSQL client tool from the cluster's bin dir (clients run fine as root).
async fn pg_tool(tool: &str, args: &[&str]) {
    let bin = ark_apiserver::embedded::find_binaries().expect("PostgreSQL binaries");
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(bin.join(tool))
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("{tool} timed out"))
    .unwrap_or_else(|e| panic!("running {tool}: {e}"));
    assert!(
        out.status.success(),
        "{tool} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What must survive a restore, per object.
fn essence(o: &Value) -> Value {
    let m = &o["metadata"];
    json!({"kind": o["kind"], "name": m["name"], "namespace": m["namespace"], "uid": m["uid"],
        "resourceVersion": m["resourceVersion"], "creationTimestamp": m["creationTimestamp"],
        "generation": m["generation"], "labels": m["labels"], "annotations": m["annotations"],
        "spec": o["spec"]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_dump_and_pg_restore_bring_back_every_object() {
    // The original: objects of several kinds written through the API, one then deleted.
    let src = TestServer::start().await;
    let http = src.http();
    let mut originals: BTreeMap<String, Value> = BTreeMap::new();
    for (plural, namespaced, obj) in objects() {
        let r = http
            .post(format!("{}{}", src.base_url(), path(plural, namespaced)))
            .json(&obj)
            .send()
            .await
            .unwrap();
        let code = r.status();
        let body: Value = r.json().await.unwrap();
        assert_eq!(code, 201, "create {plural}: {body}");
        let name = body["metadata"]["name"].as_str().unwrap().to_string();
        originals.insert(format!("{plural}/{name}"), body);
    }
    let r = http
        .delete(format!(
            "{}{}/unlabelled",
            src.base_url(),
            path("agents", true)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    originals.remove("agents/unlabelled");
    // Read back what the server serves (the create responses may predate defaulting).
    for (key, v) in originals.iter_mut() {
        let (plural, name) = key.split_once('/').unwrap();
        let url = format!(
            "{}{}/{name}",
            src.base_url(),
            path(plural, plural != "arkconfigs")
        );
        let (code, body) = get(&http, &url).await;
        assert_eq!(code, 200, "{key}: {body}");
        *v = body;
    }
    let big_row: i32 = src
        .db
        .client()
        .await
        .query_one(
            "SELECT octet_length(spec::text) FROM resources WHERE name = 'big-prompt'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        big_row > 8 * 1024,
        "the large object is over 8 KB: {big_row}"
    );

    // Back up: a custom-format dump of the whole database, taken while the server runs.
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("ark.dump");
    let dump = dump.to_str().unwrap();
    pg_tool(
        "pg_dump",
        &["--format=custom", "--file", dump, "--dbname", &src.db.url],
    )
    .await;
    src.stop().await;

    // Restore into a fresh database, as onto a new PostgreSQL.
    let dst_db = TestDb::new().await;
    pg_tool(
        "pg_restore",
        &[
            "--exit-on-error",
            "--no-owner",
            "--dbname",
            &dst_db.url,
            dump,
        ],
    )
    .await;
    {
        let c = dst_db.client().await;
        let pubs = c
            .query(
                "SELECT 1 FROM pg_publication_tables WHERE pubname = 'ark_cdc' AND tablename = 'resources'",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(pubs.len(), 1, "the publication is part of the dump");
        let slot = c
            .query(
                "SELECT 1 FROM pg_replication_slots WHERE database = current_database()",
                &[],
            )
            .await
            .unwrap();
        assert!(slot.is_empty(), "no slot comes back with a restore");
    }

    // A server on the restored database serves every object as it was.
    let dst = TestServer::start_on(dst_db).await;
    let http = dst.http();
    for (key, before) in &originals {
        let (plural, name) = key.split_once('/').unwrap();
        let url = format!(
            "{}{}/{name}",
            dst.base_url(),
            path(plural, plural != "arkconfigs")
        );
        let (code, after) = get(&http, &url).await;
        assert_eq!(code, 200, "{key} after restore: {after}");
        assert_eq!(
            essence(&after),
            essence(before),
            "{key} changed by the restore"
        );
    }
    let (code, gone) = get(
        &http,
        &format!("{}{}/unlabelled", dst.base_url(), path("agents", true)),
    )
    .await;
    assert_eq!(code, 404, "a deleted object stays deleted: {gone}");

    // Lists (from the watch cache the new slot seeded) and label selectors work.
    let (code, list) = get(
        &http,
        &format!("{}{}", dst.base_url(), path("agents", true)),
    )
    .await;
    assert_eq!(code, 200, "{list}");
    let mut names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["big-prompt", "planner"]);
    let (code, gold) = get(
        &http,
        &format!(
            "{}{}?labelSelector=tier%3Dgold",
            dst.base_url(),
            path("models", true)
        ),
    )
    .await;
    assert_eq!(code, 200, "{gold}");
    assert_eq!(gold["items"].as_array().unwrap().len(), 1, "{gold}");
    let list_rv: u64 = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let max_before: u64 = originals
        .values()
        .map(|o| {
            o["metadata"]["resourceVersion"]
                .as_str()
                .unwrap()
                .parse::<u64>()
                .unwrap()
        })
        .max()
        .unwrap();
    assert!(list_rv >= max_before, "list RV {list_rv} < {max_before}");

    // A watch from the list's resourceVersion sees a new write, whose resourceVersion
    // continues after the restored ones (the counter row is in the dump).
    let mut watch = http
        .get(format!(
            "{}{}?watch=true&resourceVersion={list_rv}",
            dst.base_url(),
            path("agents", true)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(watch.status(), 200);
    let r = http
        .post(format!("{}{}", dst.base_url(), path("agents", true)))
        .json(
            &json!({"apiVersion": "ark.mckinsey.com/v1alpha1", "kind": "Agent",
            "metadata": {"name": "after-restore"}, "spec": {"prompt": "new"}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.unwrap();
    let new_rv: u64 = created["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        new_rv > max_before,
        "new RV {new_rv} <= restored {max_before}"
    );
    let mut seen = String::new();
    let event = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            let chunk = watch.chunk().await.unwrap().expect("watch ended early");
            seen.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(i) = seen.find('\n') {
                let line: String = seen.drain(..=i).collect();
                let ev: Value = serde_json::from_str(line.trim()).unwrap();
                if ev["object"]["metadata"]["name"] == "after-restore" {
                    return ev;
                }
            }
        }
    })
    .await
    .expect("the watch delivers the write made after the restore");
    assert_eq!(event["type"], "ADDED", "{event}");
    drop(watch);
    dst.stop().await;
}
