//! The watch, continued: Table and metadata-only events, changes made straight in SQL, and
//! TOASTed values left out of the WAL.

use serde_json::{json, Value};

use crate::harness::TestServer;
use crate::watch::{agent, agents, available, brief, pairs, rv_of, tn, Api};

// ---- Table and metadata-only watches ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_watch_sends_tables_with_printer_column_rows() {
    let s = TestServer::start().await;
    let api = Api::new(&s);
    api.create("tbl", &agent("t1", json!({}))).await;
    let accept = "application/json;as=Table;v=v1;g=meta.k8s.io";
    let mut w = api
        .watch_accept(&format!("{}?watch=true", agents("tbl")), Some(accept))
        .await;
    assert!(
        w.content_type()
            .starts_with("application/json;as=Table;v=v1;g=meta.k8s.io"),
        "{}",
        w.content_type()
    );
    let ev = w.next_event().await;
    assert_eq!(ev["type"], "ADDED", "{ev}");
    let t = &ev["object"];
    assert_eq!(t["kind"], "Table", "{ev}");
    assert_eq!(t["apiVersion"], "meta.k8s.io/v1", "{ev}");
    let cols: Vec<&str> = t["columnDefinitions"]
        .as_array()
        .unwrap_or_else(|| panic!("no columnDefinitions in the first event: {ev}"))
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(cols, ["Name", "Model", "Available", "Age"], "{ev}");
    let rows = t["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{ev}");
    assert_eq!(rows[0]["cells"][0], "t1");
    assert_eq!(rows[0]["cells"][1], "m1");
    assert_eq!(rows[0]["object"]["metadata"]["name"], "t1", "{ev}");
    assert_eq!(rows[0]["object"]["kind"], "PartialObjectMetadata", "{ev}");
    let first_rv = rv_of(&rows[0]["object"]);

    api.merge("tbl", "t1", json!({"spec": {"modelRef": {"name": "m9"}}}))
        .await;
    api.merge_status("tbl", "t1", available("True")).await;
    api.delete("tbl", "t1").await;
    let evs = w.take(3).await;
    let types: Vec<&str> = evs.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["MODIFIED", "MODIFIED", "DELETED"]);
    for ev in &evs {
        assert_eq!(ev["object"]["kind"], "Table", "{ev}");
        assert_eq!(ev["object"]["rows"].as_array().unwrap().len(), 1, "{ev}");
    }
    let cells = |i: usize| evs[i]["object"]["rows"][0]["cells"].clone();
    assert_eq!(cells(0)[1], "m9");
    assert_eq!(cells(1)[2], "True");
    assert_eq!(cells(2)[0], "t1");
    // kube's table convertor gives a single object's Table the object's resourceVersion.
    let table_rv = |ev: &Value| ev["object"]["metadata"]["resourceVersion"].clone();
    assert_eq!(table_rv(&ev), json!(first_rv.to_string()), "{ev}");
    for e in &evs {
        assert_eq!(
            table_rv(e),
            e["object"]["rows"][0]["object"]["metadata"]["resourceVersion"],
            "{e}"
        );
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_object_metadata_watch_sends_metadata_only() {
    let s = TestServer::start().await;
    let api = Api::new(&s);
    api.create("pom", &agent("m", json!({"k": "v"}))).await;
    // What client-go's metadata client (metadata-only informers) sends for a watch.
    let accept = "application/vnd.kubernetes.protobuf;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json";
    let mut w = api
        .watch_accept(&format!("{}?watch=true", agents("pom")), Some(accept))
        .await;
    api.merge("pom", "m", json!({"spec": {"prompt": "p2"}}))
        .await;
    let evs = w.take(2).await;
    assert_eq!(
        evs.iter().map(tn).collect::<Vec<_>>(),
        pairs(&[("ADDED", "m"), ("MODIFIED", "m")])
    );
    assert!(
        w.content_type().starts_with("application/json"),
        "{}",
        w.content_type()
    );
    for ev in &evs {
        let o = ev["object"].as_object().unwrap();
        assert_eq!(o["kind"], "PartialObjectMetadata", "{ev}");
        assert_eq!(o["apiVersion"], "meta.k8s.io/v1", "{ev}");
        assert_eq!(o["metadata"]["labels"], json!({"k": "v"}), "{ev}");
        assert_eq!(o["metadata"]["namespace"], "pom", "{ev}");
        assert!(o.get("spec").is_none() && o.get("status").is_none(), "{ev}");
    }
    assert!(rv_of(&evs[1]["object"]) > rv_of(&evs[0]["object"]));
    assert_eq!(evs[1]["object"]["metadata"]["generation"], 2);
    s.stop().await;
}

// ---- direct SQL ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_made_in_sql_reaches_watchers_as_modified_with_a_newer_resource_version() {
    let s = TestServer::start().await;
    let api = Api::new(&s);
    let a = api.create("sql", &agent("a", json!({"team": "a"}))).await;
    let b = api.create("sql", &agent("b", json!({"team": "a"}))).await;
    let mut w = api
        .watch(&format!(
            "{}?watch=true&resourceVersion={}",
            agents("sql"),
            rv_of(&b)
        ))
        .await;
    let mut by_label = api
        .watch(&format!(
            "{}?watch=true&resourceVersion={}&labelSelector=edited%3Dpsql",
            agents("sql"),
            rv_of(&b)
        ))
        .await;
    let db = s.db.client().await;
    db.execute(
        "UPDATE resources SET labels = '{\"edited\": \"psql\"}' WHERE kind = 'Agent' AND namespace = 'sql' AND name = 'a'",
        &[],
    )
    .await
    .unwrap();
    let ev = w.next_event().await;
    assert_eq!(tn(&ev), ("MODIFIED".into(), "a".into()), "{ev}");
    assert_eq!(
        ev["object"]["metadata"]["labels"],
        json!({"edited": "psql"})
    );
    assert_eq!(ev["object"]["spec"]["prompt"], "You are a.");
    let rv1 = rv_of(&ev["object"]);
    assert!(rv1 > rv_of(&b) && rv_of(&b) > rv_of(&a));
    let row: i64 = db
        .query_one(
            "SELECT resource_version FROM resources WHERE kind = 'Agent' AND name = 'a' AND deleted_at IS NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(row as u64, rv1, "the event and the row agree");
    let ev = by_label.next_event().await;
    assert_eq!(
        tn(&ev),
        ("ADDED".into(), "a".into()),
        "entering a selection in SQL: {ev}"
    );

    // One transaction touching two rows: two events in commit order.
    db.batch_execute(
        "BEGIN; UPDATE resources SET annotations = '{\"n\": \"1\"}' WHERE kind = 'Agent' AND name = 'b';
         UPDATE resources SET annotations = '{\"n\": \"2\"}' WHERE kind = 'Agent' AND name = 'a'; COMMIT;",
    )
    .await
    .unwrap();
    let evs = w.take(2).await;
    assert_eq!(
        evs.iter().map(tn).collect::<Vec<_>>(),
        pairs(&[("MODIFIED", "b"), ("MODIFIED", "a")])
    );
    assert_eq!(evs[0]["object"]["metadata"]["annotations"]["n"], "1");
    assert!(rv_of(&evs[1]["object"]) > rv_of(&evs[0]["object"]));
    assert!(rv_of(&evs[0]["object"]) > rv1);

    // A DELETE in SQL is a soft delete: DELETED.
    db.execute(
        "DELETE FROM resources WHERE kind = 'Agent' AND name = 'b'",
        &[],
    )
    .await
    .unwrap();
    let ev = w.next_event().await;
    assert_eq!(tn(&ev), ("DELETED".into(), "b".into()), "{ev}");
    assert!(rv_of(&ev["object"]) > rv_of(&evs[1]["object"]));
    s.stop().await;
}

// ---- TOAST ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_updates_of_an_object_with_a_toasted_spec_carry_the_full_spec() {
    use rand::{Rng, SeedableRng};
    let s = TestServer::start().await;
    let api = Api::new(&s);
    let prompt: String = rand::rngs::StdRng::seed_from_u64(7)
        .sample_iter(rand::distr::Alphanumeric)
        .take(12_000)
        .map(char::from)
        .collect();
    let mut obj = agent("big", json!({}));
    obj["spec"]["prompt"] = json!(prompt);
    let created = api.create("toast", &obj).await;
    let db = s.db.client().await;
    let stored: i32 = db
        .query_one(
            "SELECT pg_column_size(spec) FROM resources WHERE name = 'big'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(stored > 8000, "the spec compressed to {stored} bytes");
    // The test's own slot shows what pgoutput is sent for each update.
    let slot = format!("{}_toast", s.db.slot_name());
    db.execute(
        "SELECT pg_create_logical_replication_slot($1, 'test_decoding')",
        &[&slot],
    )
    .await
    .unwrap();
    let mut w = api
        .watch(&format!(
            "{}?watch=true&resourceVersion={}",
            agents("toast"),
            rv_of(&created)
        ))
        .await;
    let full_prompt = |ev: &Value| {
        let got = ev["object"]["spec"]["prompt"].as_str().unwrap_or("");
        assert!(
            got == prompt,
            "{} lost the TOASTed spec: {} bytes of prompt, want {}",
            brief(ev),
            got.len(),
            prompt.len()
        );
        assert_eq!(ev["object"]["spec"]["modelRef"]["name"], "m1");
    };

    // Through the API's /status.
    let updated = api.merge_status("toast", "big", available("True")).await;
    let ev = w.next_event().await;
    assert_eq!(tn(&ev), ("MODIFIED".into(), "big".into()));
    assert_eq!(rv_of(&ev["object"]), rv_of(&updated));
    assert_eq!(ev["object"]["status"]["conditions"][0]["status"], "True");
    full_prompt(&ev);

    // Straight in SQL, touching only status: the WAL carries the spec as unchanged TOAST.
    db.execute(
        "UPDATE resources SET status = jsonb_set(status, '{conditions,0,status}', '\"False\"') WHERE kind = 'Agent' AND name = 'big'",
        &[],
    )
    .await
    .unwrap();
    let ev = w.next_event().await;
    assert_eq!(tn(&ev), ("MODIFIED".into(), "big".into()));
    assert_eq!(
        ev["object"]["status"]["conditions"][0]["status"],
        "False",
        "{}",
        brief(&ev)
    );
    full_prompt(&ev);

    // Twice in one transaction: the second update's unchanged spec is filled from the
    // first's image within the transaction, not from the state (which has neither yet).
    db.batch_execute(
        "BEGIN; \
         UPDATE resources SET status = jsonb_set(status, '{conditions,0,status}', '\"A\"') WHERE kind = 'Agent' AND name = 'big'; \
         UPDATE resources SET status = jsonb_set(status, '{conditions,0,status}', '\"B\"') WHERE kind = 'Agent' AND name = 'big'; \
         COMMIT",
    )
    .await
    .unwrap();
    for want in ["A", "B"] {
        let ev = w.next_event().await;
        assert_eq!(tn(&ev), ("MODIFIED".into(), "big".into()));
        assert_eq!(
            ev["object"]["status"]["conditions"][0]["status"],
            want,
            "{}",
            brief(&ev)
        );
        full_prompt(&ev);
    }
    let (_, got) = api.get(&format!("{}/big", agents("toast"))).await;
    assert_eq!(
        got["spec"]["prompt"].as_str(),
        Some(prompt.as_str()),
        "GET after the update"
    );

    let changes: Vec<String> = db
        .query(
            "SELECT data FROM pg_logical_slot_get_changes($1, NULL, NULL)",
            &[&slot],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    db.execute("SELECT pg_drop_replication_slot($1)", &[&slot])
        .await
        .unwrap();
    let updates: Vec<&String> = changes
        .iter()
        .filter(|l| l.starts_with("table public.resources: UPDATE"))
        .collect();
    assert_eq!(updates.len(), 4, "{changes:?}");
    for u in &updates[1..] {
        assert!(
            u.contains("spec[jsonb]:unchanged-toast-datum"),
            "the SQL update did not leave the spec out of the WAL, so this test proves nothing: {}",
            &u[..u.len().min(400)]
        );
    }
    s.stop().await;
}
