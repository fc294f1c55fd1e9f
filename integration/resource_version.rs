//! resourceVersion is commit-ordered for every writer, API and plain SQL alike, and every
//! list's resourceVersion is a consistent point in that order.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::TestServer;

/// One row change read back from the WAL in commit order.
#[derive(Debug, Clone)]
struct Change {
    kind: String,
    name: String,
    rv: i64,
    deleted: bool,
}

/// Parses test_decoding's text for `resources` rows.
fn parse_change(line: &str) -> Option<Change> {
    let rest = line.strip_prefix("table public.resources: ")?;
    if !(rest.starts_with("INSERT:") || rest.starts_with("UPDATE:")) {
        return None;
    }
    let field = |name: &str| -> Option<String> {
        let key = format!(" {name}[");
        let start = rest.find(&key)? + key.len();
        let after_type = rest[start..].find("]:")? + start + 2;
        let tail = &rest[after_type..];
        if let Some(q) = tail.strip_prefix('\'') {
            Some(q[..q.find('\'')?].to_string())
        } else {
            Some(tail.split_whitespace().next()?.to_string())
        }
    };
    Some(Change {
        kind: field("kind")?,
        name: field("name")?,
        rv: field("resource_version")?.parse().ok()?,
        deleted: field("deleted_at").is_some_and(|v| v != "null"),
    })
}

async fn drain_changes(db: &tokio_postgres::Client, slot: &str) -> Vec<Change> {
    let rows = db
        .query(
            "SELECT data FROM pg_logical_slot_get_changes($1, NULL, NULL)",
            &[&slot],
        )
        .await
        .expect("reading the test slot");
    let mut out = Vec::new();
    for r in &rows {
        let line: String = r.get(0);
        match parse_change(&line) {
            Some(c) => out.push(c),
            None => assert!(
                !line.starts_with("table public.resources: INSERT")
                    && !line.starts_with("table public.resources: UPDATE"),
                "unparsed change: {line}"
            ),
        }
    }
    out
}

fn agent(name: &str) -> Value {
    json!({"apiVersion": "ark.mckinsey.com/v1alpha1", "kind": "Agent", "metadata": {"name": name, "labels": {"w": "x"}}, "spec": {"prompt": "p"}})
}

fn model(name: &str) -> Value {
    json!({"apiVersion": "ark.mckinsey.com/v1alpha1", "kind": "Model", "metadata": {"name": name},
        "spec": {"model": {"value": "m"}, "provider": "openai", "config": {"openai": {"baseUrl": {"value": "http://x"}, "apiKey": {"value": "k"}}}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn resource_versions_follow_commit_order_under_16_concurrent_writers() {
    let server = TestServer::start().await;
    let db = server.db.client().await;
    db.execute(
        "SELECT pg_create_logical_replication_slot('rv_order_test', 'test_decoding')",
        &[],
    )
    .await
    .unwrap();
    let base = Arc::new(server.base_url());
    let http = server.http();

    // 16 API writers over two kinds: create, patch twice, delete every third.
    let mut tasks = Vec::new();
    for w in 0..16 {
        let (base, http) = (base.clone(), http.clone());
        tasks.push(tokio::spawn(async move {
            let (plural, make): (&str, fn(&str) -> Value) = if w % 2 == 0 {
                ("agents", agent)
            } else {
                ("models", model)
            };
            for i in 0..12 {
                let name = format!("w{w}-{i}");
                let url = format!(
                    "{base}/apis/ark.mckinsey.com/v1alpha1/namespaces/ns{}/{plural}",
                    w % 3
                );
                let r = http.post(&url).json(&make(&name)).send().await.unwrap();
                assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
                for n in 0..2 {
                    let r = http
                        .patch(format!("{url}/{name}"))
                        .header("content-type", "application/merge-patch+json")
                        .body(json!({"metadata": {"labels": {"n": n.to_string()}}}).to_string())
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
                }
                if i % 3 == 0 {
                    let r = http.delete(format!("{url}/{name}")).send().await.unwrap();
                    assert_eq!(r.status(), 200);
                }
            }
        }));
    }
    // Two people in psql, holding their transactions open for a while, on objects of their
    // own (the API writers' patches would otherwise lose kube's five conflict retries).
    for i in 0..6 {
        let r = http
            .post(format!(
                "{base}/apis/ark.mckinsey.com/v1alpha1/namespaces/psql/agents"
            ))
            .json(&agent(&format!("psql-{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    for p in 0..2 {
        let url = server.db.url.clone();
        tasks.push(tokio::spawn(async move {
            let c = crate::harness::connect(&url).await;
            for i in 0..10 {
                c.batch_execute("BEGIN").await.unwrap();
                c.execute(
                    "UPDATE resources SET annotations = annotations || jsonb_build_object('psql', $1::text) \
                     WHERE uid IN (SELECT uid FROM resources WHERE kind = 'Agent' AND namespace = 'psql' AND deleted_at IS NULL ORDER BY random() LIMIT 2)",
                    &[&format!("{p}-{i}")],
                )
                .await
                .unwrap();
                tokio::time::sleep(Duration::from_millis(15)).await;
                c.batch_execute("COMMIT").await.unwrap();
            }
        }));
    }
    // Lists taken while all of that runs, each to be checked against the commit order.
    let lister = {
        let (base, http) = (base.clone(), http.clone());
        tokio::spawn(async move {
            let mut lists = Vec::new();
            for _ in 0..15 {
                let v: Value = http
                    .get(format!("{base}/apis/ark.mckinsey.com/v1alpha1/agents"))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                let rv: i64 = v["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or_else(|| panic!("list failed: {v}"))
                    .parse()
                    .unwrap();
                let items: BTreeMap<String, i64> = v["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|o| {
                        (
                            o["metadata"]["name"].as_str().unwrap().to_string(),
                            o["metadata"]["resourceVersion"]
                                .as_str()
                                .unwrap()
                                .parse()
                                .unwrap(),
                        )
                    })
                    .collect();
                lists.push((rv, items));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            lists
        })
    };
    for t in tasks {
        t.await.unwrap();
    }
    let lists = lister.await.unwrap();

    let changes = drain_changes(&db, "rv_order_test").await;
    assert!(
        changes.len() > 16 * 12 * 3,
        "expected every write in the stream, got {}",
        changes.len()
    );
    let mut last: HashMap<String, i64> = HashMap::new();
    for c in &changes {
        let prev = last.insert(c.kind.clone(), c.rv).unwrap_or(0);
        assert!(
            c.rv > prev,
            "{} {} committed with resourceVersion {} after {}",
            c.kind,
            c.name,
            c.rv,
            prev
        );
    }

    // Each list equals the state rebuilt from the stream up to its resourceVersion.
    let agents: Vec<&Change> = changes.iter().filter(|c| c.kind == "Agent").collect();
    for (rv, items) in &lists {
        let mut state: BTreeMap<String, i64> = BTreeMap::new();
        for c in agents.iter().take_while(|c| c.rv <= *rv) {
            if c.deleted {
                state.remove(&c.name);
            } else {
                state.insert(c.name.clone(), c.rv);
            }
        }
        assert_eq!(
            &state, items,
            "list at resourceVersion {rv} is not the committed state at that point"
        );
    }

    // The row and the stream agree on each object's resourceVersion.
    for row in db
        .query(
            "SELECT kind, name, resource_version FROM resources WHERE deleted_at IS NULL",
            &[],
        )
        .await
        .unwrap()
    {
        let (kind, name, rv): (String, String, i64) = (row.get(0), row.get(1), row.get(2));
        let streamed = changes
            .iter()
            .rev()
            .find(|c| c.kind == kind && c.name == name)
            .unwrap();
        assert_eq!(streamed.rv, rv, "{kind} {name}");
    }
    db.execute("SELECT pg_drop_replication_slot('rv_order_test')", &[])
        .await
        .unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_sql_update_gets_the_next_resource_version_of_its_kind() {
    let server = TestServer::start().await;
    let http = server.http();
    let url = format!(
        "{}/apis/ark.mckinsey.com/v1alpha1/namespaces/default/agents",
        server.base_url()
    );
    let created: Value = http
        .post(&url)
        .json(&agent("a"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rv1: i64 = created["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let db = server.db.client().await;
    db.execute("UPDATE resources SET labels = '{\"edited\": \"psql\"}' WHERE kind = 'Agent' AND name = 'a'", &[]).await.unwrap();
    let got: Value = http
        .get(format!("{url}/a"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rv2: i64 = got["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(rv2 > rv1);
    assert_eq!(got["metadata"]["labels"]["edited"], "psql");
    // A DELETE in psql is a soft delete with its own resourceVersion, so it can be streamed.
    db.execute(
        "DELETE FROM resources WHERE kind = 'Agent' AND name = 'a'",
        &[],
    )
    .await
    .unwrap();
    let row = db
        .query_one(
            "SELECT resource_version, deleted_at IS NOT NULL FROM resources WHERE name = 'a'",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, i64>(0) > rv2);
    assert!(row.get::<_, bool>(1));
    assert_eq!(
        http.get(format!("{url}/a")).send().await.unwrap().status(),
        404
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_create_takes_no_resource_version() {
    let server = TestServer::start().await;
    let http = server.http();
    let url = format!(
        "{}/apis/ark.mckinsey.com/v1alpha1/namespaces/default/agents",
        server.base_url()
    );
    assert_eq!(
        http.post(&url)
            .json(&agent("a"))
            .send()
            .await
            .unwrap()
            .status(),
        201
    );
    let db = server.db.client().await;
    let before: i64 = db
        .query_one("SELECT value FROM resource_version_counter", &[])
        .await
        .unwrap()
        .get(0);
    for _ in 0..3 {
        assert_eq!(
            http.post(&url)
                .json(&agent("a"))
                .send()
                .await
                .unwrap()
                .status(),
            409
        );
    }
    let after: i64 = db
        .query_one("SELECT value FROM resource_version_counter", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        before, after,
        "every committed resourceVersion belongs to a row change"
    );
    server.stop().await;
}
