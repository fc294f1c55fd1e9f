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

/// A test_decoding slot of the test's own, to read back every change in commit order.
async fn test_decoding_slot(db: &tokio_postgres::Client, slot: &str) {
    db.execute(
        "SELECT pg_create_logical_replication_slot($1, 'test_decoding')",
        &[&slot],
    )
    .await
    .unwrap();
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
    test_decoding_slot(&db, "rv_order_test").await;
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

/// A Query-shaped row per `i` in `$1..=$2`, in namespace `$3`: what a backfill in psql writes.
const BULK_INSERT: &str = "INSERT INTO resources (uid, kind, api_version, namespace, name, spec, labels) \
     SELECT gen_random_uuid(), 'Query', 'ark.mckinsey.com/v1alpha1', $3, 'bulk-' || i, \
            jsonb_build_object('input', 'question ' || i), jsonb_build_object('batch', ($1::int / 100)::text) \
       FROM generate_series($1::int, $2::int) AS i";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn multi_row_sql_statements_from_several_sessions_keep_resource_versions_in_commit_order() {
    let server = TestServer::start().await;
    let db = server.db.client().await;
    test_decoding_slot(&db, "bulk_rv_order").await;
    let mut tasks = Vec::new();
    // Four sessions, each in its own namespace: multi-row inserts, an UPDATE and a DELETE
    // of many rows, a transaction of several statements, and a savepoint rolled back.
    for s in 0..4 {
        let url = server.db.url.clone();
        tasks.push(tokio::spawn(async move {
            let c = crate::harness::connect(&url).await;
            let ns = format!("bulk{s}");
            for round in 0..6i32 {
                let (lo, hi) = (round * 300, round * 300 + 299);
                c.execute(BULK_INSERT, &[&lo, &hi, &ns]).await.unwrap();
                c.execute(
                    "UPDATE resources SET annotations = jsonb_build_object('round', $1::text) \
                     WHERE namespace = $2 AND deleted_at IS NULL",
                    &[&round.to_string(), &ns],
                )
                .await
                .unwrap();
                c.batch_execute(&format!(
                    "BEGIN; \
                     DELETE FROM resources WHERE namespace = '{ns}' AND deleted_at IS NULL AND name LIKE 'bulk-{round}%'; \
                     SAVEPOINT s; \
                     UPDATE resources SET labels = '{{\"undone\": \"yes\"}}' WHERE namespace = '{ns}'; \
                     ROLLBACK TO SAVEPOINT s; \
                     UPDATE resources SET labels = labels || '{{\"kept\": \"yes\"}}' WHERE namespace = '{ns}' AND deleted_at IS NULL; \
                     COMMIT"
                ))
                .await
                .unwrap();
            }
        }));
    }
    // API writers at the same time, through the server's batched transactions.
    let base = Arc::new(server.base_url());
    let http = server.http();
    for w in 0..4 {
        let (base, http) = (base.clone(), http.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                let url = format!("{base}/apis/ark.mckinsey.com/v1alpha1/namespaces/api/agents");
                let r = http
                    .post(&url)
                    .json(&agent(&format!("w{w}-{i}")))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }

    let changes = drain_changes(&db, "bulk_rv_order").await;
    assert!(
        changes.len() > 4 * 6 * 300 * 3,
        "expected every row change in the stream, got {}",
        changes.len()
    );
    // One counter for every kind: in commit (WAL) order every change has a larger
    // resourceVersion than every change before it, so none is ever given twice.
    let mut prev = 0;
    for c in &changes {
        assert!(
            c.rv > prev,
            "{} {} committed with resourceVersion {} after {}",
            c.kind,
            c.name,
            c.rv,
            prev
        );
        prev = c.rv;
    }
    let counter: i64 = db
        .query_one("SELECT value FROM resource_version_counter", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        counter, prev,
        "the counter holds the last resourceVersion handed out"
    );
    let rolled_back: i64 = db
        .query_one(
            "SELECT count(*) FROM resources WHERE labels ? 'undone'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(rolled_back, 0);
    // The row and the stream agree on each object's resourceVersion, and the server's own
    // state agrees with the table (nothing the stream carried was lost or reordered).
    let rows = db
        .query(
            "SELECT kind, namespace, name, resource_version FROM resources WHERE deleted_at IS NULL",
            &[],
        )
        .await
        .unwrap();
    let last: HashMap<(String, String), i64> = changes
        .iter()
        .map(|c| ((c.kind.clone(), c.name.clone()), c.rv))
        .collect();
    for row in &rows {
        let (kind, name, rv): (String, String, i64) = (row.get(0), row.get(2), row.get(3));
        if kind == "Query" {
            continue; // names repeat across namespaces; checked through the API below
        }
        assert_eq!(last[&(kind.clone(), name.clone())], rv, "{kind} {name}");
    }
    // The stream may still be applying the last statements: a consistent read answers
    // 504 when it does not catch up within its timeout, and is retried.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let listed: Value = loop {
        let r = http
            .get(format!("{base}/apis/ark.mckinsey.com/v1alpha1/queries"))
            .send()
            .await
            .unwrap();
        let code = r.status().as_u16();
        let v: Value = r.json().await.unwrap();
        match code {
            200 => break v,
            503 | 504 if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            _ => panic!("LIST answered {code}: {v}"),
        }
    };
    let mut from_api: Vec<(String, String, i64)> = listed["items"]
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {listed}"))
        .iter()
        .map(|o| {
            let m = &o["metadata"];
            (
                m["namespace"].as_str().unwrap().to_string(),
                m["name"].as_str().unwrap().to_string(),
                m["resourceVersion"].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect();
    let mut from_table: Vec<(String, String, i64)> = rows
        .iter()
        .filter(|r| r.get::<_, String>(0) == "Query")
        .map(|r| (r.get(1), r.get(2), r.get(3)))
        .collect();
    from_api.sort();
    from_table.sort();
    assert_eq!(from_api.len(), from_table.len());
    assert!(
        from_api == from_table,
        "the served Queries differ from the table"
    );
    db.execute("SELECT pg_drop_replication_slot('bulk_rv_order')", &[])
        .await
        .unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_writes_the_counter_once_however_many_rows_it_touches() {
    let server = TestServer::start().await;
    let c = server.db.client().await;
    // Row versions of the counter made by this transaction, counted by PostgreSQL itself:
    // one per write of the counter row, which is what made big statements quadratic.
    let counter_writes =
        "SELECT n_tup_upd FROM pg_stat_xact_user_tables WHERE relname = 'resource_version_counter'";
    c.batch_execute("BEGIN").await.unwrap();
    let ns = "once".to_string();
    let inserted = c
        .execute(BULK_INSERT, &[&1i32, &5000i32, &ns])
        .await
        .unwrap();
    assert_eq!(inserted, 5000);
    let writes: i64 = c.query_one(counter_writes, &[]).await.unwrap().get(0);
    assert_eq!(
        writes, 1,
        "a 5,000-row INSERT wrote the counter {writes} times"
    );
    c.execute(
        "UPDATE resources SET annotations = '{\"a\": \"b\"}' WHERE namespace = 'once'",
        &[],
    )
    .await
    .unwrap();
    c.execute(
        "DELETE FROM resources WHERE namespace = 'once' AND name LIKE 'bulk-1%'",
        &[],
    )
    .await
    .unwrap();
    let writes: i64 = c.query_one(counter_writes, &[]).await.unwrap().get(0);
    assert_eq!(
        writes, 3,
        "INSERT, UPDATE and DELETE of thousands of rows: one write each"
    );
    c.batch_execute("COMMIT").await.unwrap();
    let (max, counter): (i64, i64) = {
        let r = c
            .query_one(
                "SELECT max(resource_version), (SELECT value FROM resource_version_counter) FROM resources",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(max, counter);
    // 5,000 inserts, 5,000 updates and 1,111 soft deletes, each with its own value.
    let distinct: i64 = c
        .query_one(
            "SELECT count(DISTINCT resource_version) FROM resources WHERE namespace = 'once'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(distinct, 5000);
    server.stop().await;
}
