//! The write path starts a read-modify-write from the in-memory copy, as kube's
//! GuaranteedUpdate starts from its watch cache, and falls back to the table when that
//! copy is behind: no read from the table when the copy is current, no lost write when not.

use serde_json::{json, Value};

use crate::harness::TestServer;

/// The server's count of read-modify-write starts from `source` (memory or table).
async fn starts_from(http: &reqwest::Client, base: &str, source: &str) -> f64 {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series = format!("ark_registry_write_reads_total{{source=\"{source}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(series.as_str()))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// A server holding Agent `default/a`, a client, and the agents collection's URL.
async fn with_agent_a() -> (TestServer, reqwest::Client, String) {
    let server = TestServer::start().await;
    let http = server.http();
    let url = format!(
        "{}/apis/ark.mckinsey.com/v1alpha1/namespaces/default/agents",
        server.base_url()
    );
    let agent = json!({"apiVersion": "ark.mckinsey.com/v1alpha1", "kind": "Agent",
        "metadata": {"name": "a"}, "spec": {"prompt": "p"}});
    assert_eq!(
        http.post(&url).json(&agent).send().await.unwrap().status(),
        201
    );
    (server, http, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_of_an_object_the_state_holds_current_starts_from_the_in_memory_copy() {
    let (server, http, url) = with_agent_a().await;
    let base = server.base_url();
    let mem0 = starts_from(&http, &base, "memory").await;
    const PATCHES: u32 = 20;
    for i in 0..PATCHES {
        // A consistent read first: the state then holds the last write, as it would
        // within milliseconds anyway.
        assert_eq!(
            http.get(format!("{url}/a")).send().await.unwrap().status(),
            200
        );
        let r = http
            .patch(format!("{url}/a"))
            .header("content-type", "application/merge-patch+json")
            .body(json!({"spec": {"prompt": format!("p{i}")}}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["spec"]["prompt"], format!("p{i}"));
    }
    // Other tests' servers share this process's metrics, so only a lower bound holds.
    let memory = starts_from(&http, &base, "memory").await - mem0;
    assert!(
        memory >= f64::from(PATCHES),
        "{memory} of {PATCHES} patches started from the in-memory copy"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_right_after_a_sql_update_the_state_has_not_seen_keeps_both_changes() {
    let (server, http, url) = with_agent_a().await;
    let db = server.db.client().await;
    for i in 0..20 {
        // Straight after the SQL write the state is usually a change behind: the patch
        // starts from the stale copy, its conditional write fails, and it is redone on
        // the table's copy.
        db.execute(
            "UPDATE resources SET labels = labels || jsonb_build_object('sql', $1::text) \
             WHERE kind = 'Agent' AND name = 'a' AND deleted_at IS NULL",
            &[&i.to_string()],
        )
        .await
        .unwrap();
        let r = http
            .patch(format!("{url}/a"))
            .header("content-type", "application/merge-patch+json")
            .body(json!({"metadata": {"labels": {"api": i.to_string()}}}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        let v: Value = r.json().await.unwrap();
        assert_eq!(
            v["metadata"]["labels"]["sql"],
            i.to_string(),
            "the SQL write was lost"
        );
        assert_eq!(v["metadata"]["labels"]["api"], i.to_string());
        // A PUT naming the resourceVersion the SQL write produced succeeds, whatever the
        // state had seen.
        db.execute(
            "UPDATE resources SET annotations = jsonb_build_object('n', $1::text) \
             WHERE kind = 'Agent' AND name = 'a' AND deleted_at IS NULL",
            &[&i.to_string()],
        )
        .await
        .unwrap();
        let rv: i64 = db
            .query_one(
                "SELECT resource_version FROM resources WHERE kind = 'Agent' AND name = 'a' AND deleted_at IS NULL",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        let mut put = v.clone();
        put["metadata"]["resourceVersion"] = json!(rv.to_string());
        put["metadata"]["annotations"] = json!({"n": i.to_string()});
        put["spec"]["prompt"] = json!(format!("put {i}"));
        let r = http
            .put(format!("{url}/a"))
            .json(&put)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_start_from_the_in_memory_copy_and_a_precondition_on_a_newer_sql_write_still_holds()
{
    let (server, http, url) = with_agent_a().await;
    let base = server.base_url();
    let db = server.db.client().await;
    let agent = |name: &str| {
        json!({"apiVersion": "ark.mckinsey.com/v1alpha1", "kind": "Agent",
            "metadata": {"name": name}, "spec": {"prompt": "p"}})
    };
    // Plain deletes of objects the state holds current read nothing from the table.
    const DELETES: u32 = 10;
    for i in 0..DELETES {
        let name = format!("d{i}");
        assert_eq!(
            http.post(&url)
                .json(&agent(&name))
                .send()
                .await
                .unwrap()
                .status(),
            201
        );
        assert_eq!(
            http.get(format!("{url}/{name}"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    let mem0 = starts_from(&http, &base, "memory").await;
    for i in 0..DELETES {
        let r = http.delete(format!("{url}/d{i}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }
    let memory = starts_from(&http, &base, "memory").await - mem0;
    assert!(
        memory >= f64::from(DELETES),
        "{memory} of {DELETES} deletes started from the in-memory copy"
    );

    for i in 0..10 {
        // A SQL write the state has probably not seen yet, then a delete whose
        // precondition names the resourceVersion it made: the stale copy fails the
        // precondition, and the table's copy passes it.
        let name = format!("p{i}");
        assert_eq!(
            http.post(&url)
                .json(&agent(&name))
                .send()
                .await
                .unwrap()
                .status(),
            201
        );
        let rv: i64 = db
            .query_one(
                "UPDATE resources SET annotations = jsonb_build_object('sql', 'yes') \
                 WHERE kind = 'Agent' AND name = $1 AND deleted_at IS NULL RETURNING resource_version",
                &[&name],
            )
            .await
            .unwrap()
            .get(0);
        let r = http
            .delete(format!("{url}/{name}"))
            .json(&json!({"kind": "DeleteOptions", "apiVersion": "v1",
                "preconditions": {"resourceVersion": rv.to_string()}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        let v: Value = r.json().await.unwrap();
        assert_eq!(
            v["metadata"]["annotations"]["sql"], "yes",
            "deleted from a stale copy: {v}"
        );
        // A precondition naming an older version is a conflict, decided on the table.
        let name = format!("q{i}");
        let created: Value = http
            .post(&url)
            .json(&agent(&name))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        db.execute(
            "UPDATE resources SET annotations = jsonb_build_object('sql', 'yes') \
             WHERE kind = 'Agent' AND name = $1 AND deleted_at IS NULL",
            &[&name],
        )
        .await
        .unwrap();
        let r = http
            .delete(format!("{url}/{name}"))
            .json(&json!({"kind": "DeleteOptions", "apiVersion": "v1",
                "preconditions": {"resourceVersion": created["metadata"]["resourceVersion"]}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 409, "{}", r.text().await.unwrap());
    }
    server.stop().await;
}

/// The server's count of write statements carrying `rows` ("one" or "many") writes.
async fn statements(http: &reqwest::Client, base: &str, rows: &str) -> f64 {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series = format!("ark_store_write_statements_total{{rows=\"{rows}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(series.as_str()))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Concurrent writes share multi-row statements; each write still gets the outcome it
/// would get alone: one of two creates of a name wins, one of two updates or deletes
/// conditional on the same resourceVersion wins, and no resourceVersion is handed out twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_sharing_a_multi_row_statement_keep_their_own_outcomes() {
    use futures_util::future::join_all;
    use std::collections::{BTreeMap, BTreeSet};

    let server = TestServer::start().await;
    let http = server.http();
    let base = server.base_url();
    let url = format!("{base}/apis/ark.mckinsey.com/v1alpha1/namespaces/default/agents");
    let agent = |name: &str, prompt: &str| {
        json!({"apiVersion": "ark.mckinsey.com/v1alpha1", "kind": "Agent",
            "metadata": {"name": name}, "spec": {"prompt": prompt}})
    };
    const NAMES: usize = 32;
    let mut by_name: BTreeMap<String, Vec<(u16, Value)>> = BTreeMap::new();
    let mut multi_row_seen = false;
    // Batching depends on timing; a few rounds make a shared statement all but certain,
    // and the metric below proves one happened.
    for round in 0..5 {
        let many0 = statements(&http, &base, "many").await;
        // Each name twice, the two attempts far apart in the batch.
        let creates = (0..2 * NAMES).map(|i| {
            let name = format!("r{round}-{}", i % NAMES);
            let body = agent(&name, &format!("attempt {}", i / NAMES));
            let (http, url) = (http.clone(), url.clone());
            async move {
                let r = http.post(&url).json(&body).send().await.unwrap();
                let code = r.status().as_u16();
                (name, code, r.json::<Value>().await.unwrap())
            }
        });
        by_name.clear();
        for (name, code, v) in join_all(creates).await {
            by_name.entry(name).or_default().push((code, v));
        }
        let mut rvs = BTreeSet::new();
        for (name, outcomes) in &by_name {
            let mut codes: Vec<u16> = outcomes.iter().map(|(c, _)| *c).collect();
            codes.sort();
            assert_eq!(codes, vec![201, 409], "{name}: {outcomes:?}");
            let (_, lost) = outcomes.iter().find(|(c, _)| *c == 409).unwrap();
            assert_eq!(lost["reason"], "AlreadyExists", "{lost}");
            let (_, won) = outcomes.iter().find(|(c, _)| *c == 201).unwrap();
            let rv = won["metadata"]["resourceVersion"]
                .as_str()
                .unwrap()
                .to_string();
            assert!(
                rvs.insert(rv.clone()),
                "resourceVersion {rv} handed out twice"
            );
            // What was created is what a GET returns.
            let got: Value = http
                .get(format!("{url}/{name}"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(got["spec"], won["spec"], "{name}");
            assert_eq!(got["metadata"]["resourceVersion"], rv.as_str());
        }

        // Two merge patches per object, both conditional on the created resourceVersion.
        let patches = (0..2 * NAMES).map(|i| {
            let name = format!("r{round}-{}", i % NAMES);
            let rv = by_name[&name]
                .iter()
                .find(|(c, _)| *c == 201)
                .unwrap()
                .1["metadata"]["resourceVersion"]
                .clone();
            let body = json!({"metadata": {"resourceVersion": rv}, "spec": {"prompt": format!("patch {}", i / NAMES)}});
            let (http, url) = (http.clone(), url.clone());
            async move {
                let r = http
                    .patch(format!("{url}/{name}"))
                    .header("content-type", "application/merge-patch+json")
                    .body(body.to_string())
                    .send()
                    .await
                    .unwrap();
                let code = r.status().as_u16();
                (name, code, r.json::<Value>().await.unwrap())
            }
        });
        let mut patched: BTreeMap<String, Vec<(u16, Value)>> = BTreeMap::new();
        for (name, code, v) in join_all(patches).await {
            patched.entry(name).or_default().push((code, v));
        }
        for (name, outcomes) in &patched {
            let mut codes: Vec<u16> = outcomes.iter().map(|(c, _)| *c).collect();
            codes.sort();
            assert_eq!(codes, vec![200, 409], "{name}: {outcomes:?}");
            let (_, won) = outcomes.iter().find(|(c, _)| *c == 200).unwrap();
            let rv = won["metadata"]["resourceVersion"]
                .as_str()
                .unwrap()
                .to_string();
            assert!(
                rvs.insert(rv.clone()),
                "resourceVersion {rv} handed out twice"
            );
            let got: Value = http
                .get(format!("{url}/{name}"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(got["spec"], won["spec"], "{name}");
        }

        // Two deletes per object, both conditional on the patched resourceVersion.
        let deletes = (0..2 * NAMES).map(|i| {
            let name = format!("r{round}-{}", i % NAMES);
            let rv = patched[&name].iter().find(|(c, _)| *c == 200).unwrap().1["metadata"]
                ["resourceVersion"]
                .clone();
            let (http, url) = (http.clone(), url.clone());
            async move {
                let r = http
                    .delete(format!("{url}/{name}"))
                    .json(&json!({"kind": "DeleteOptions", "apiVersion": "v1",
                        "preconditions": {"resourceVersion": rv}}))
                    .send()
                    .await
                    .unwrap();
                (name, r.status().as_u16())
            }
        });
        let mut deleted: BTreeMap<String, Vec<u16>> = BTreeMap::new();
        for (name, code) in join_all(deletes).await {
            deleted.entry(name).or_default().push(code);
        }
        for (name, codes) in &mut deleted {
            codes.sort();
            // The loser finds the object changed (409) or already gone (404).
            assert_eq!(codes[0], 200, "{name}: {codes:?}");
            assert!(codes[1] == 409 || codes[1] == 404, "{name}: {codes:?}");
            let r = http.get(format!("{url}/{name}")).send().await.unwrap();
            assert_eq!(r.status(), 404, "{name} still there");
        }
        if statements(&http, &base, "many").await > many0 {
            multi_row_seen = true;
            break;
        }
    }
    assert!(
        multi_row_seen,
        "no multi-row statement in five rounds of 64 concurrent writes"
    );
    server.stop().await;
}

/// Every plan node that reads `resources` as `r` (the name check) in `plan` (EXPLAIN's
/// JSON), with its index condition ("" for none).
fn resource_scans(plan: &Value, out: &mut Vec<(String, String)>) {
    if plan["Relation Name"] == "resources" && plan["Alias"] == "r" {
        out.push((
            plan["Node Type"].as_str().unwrap_or("").to_string(),
            plan["Index Cond"].as_str().unwrap_or("").to_string(),
        ));
    }
    for child in plan["Plans"].as_array().into_iter().flatten() {
        resource_scans(child, out);
    }
}

/// A create checks that its name is free with one index probe by name, also before
/// PostgreSQL has statistics for the table (a new database, autovacuum not yet around): a
/// plan that scans the whole namespace per created row made creates into a namespace of
/// 20,000 Queries ten times slower.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_probes_its_name_by_index_even_in_a_namespace_of_thousands_never_analyzed() {
    let server = TestServer::start().await;
    let db = server.stop_keeping_db().await;
    let mut c = db.client().await;
    c.batch_execute(
        "INSERT INTO resources (uid, kind, api_version, namespace, name, spec) \
         SELECT gen_random_uuid(), 'Query', 'ark.mckinsey.com/v1alpha1', 'crowded', 'q-' || i, '{}' \
         FROM generate_series(1, 20000) i",
    )
    .await
    .unwrap();
    let analyzed: Option<std::time::SystemTime> = c
        .query_one(
            "SELECT last_analyze FROM pg_stat_user_tables WHERE relname = 'resources'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        analyzed.is_none(),
        "the test needs a table without statistics"
    );

    let tx = c.transaction().await.unwrap();
    // The server prepares the statement once per connection, and after five executions
    // PostgreSQL plans it once for any parameters: the plan that matters is the generic one.
    tx.batch_execute(&format!(
        "SET LOCAL plan_cache_mode = force_generic_plan; PREPARE ark_create AS {}",
        ark_apiserver::store::CREATE_STATEMENT
    ))
    .await
    .unwrap();
    let rows = tx
        .query(
            "EXPLAIN (FORMAT JSON) EXECUTE ark_create(ARRAY[gen_random_uuid()], ARRAY['Query'], \
             ARRAY['ark.mckinsey.com/v1alpha1'], ARRAY['crowded'], ARRAY['q-new'], ARRAY[1::int8], \
             ARRAY['{}'::jsonb], ARRAY[NULL::jsonb], ARRAY['{}'::jsonb], ARRAY['{}'::jsonb], \
             ARRAY['[]'::jsonb], ARRAY['[]'::jsonb], ARRAY['[]'::json], ARRAY['{}'::jsonb], \
             ARRAY[now()], ARRAY[NULL::timestamptz])",
            &[],
        )
        .await
        .unwrap();
    let plan: Value = rows[0].get(0);
    let mut scans = Vec::new();
    resource_scans(&plan[0]["Plan"], &mut scans);
    assert!(!scans.is_empty(), "{plan}");
    for (node, cond) in &scans {
        assert!(
            node.starts_with("Index") && cond.contains("(name = u.name)"),
            "the name check reads resources by {node} on [{cond}]: {plan:#}"
        );
    }
    tx.rollback().await.unwrap();
}
