//! Object semantics as kube-apiserver gives them to custom resources.

use serde_json::{json, Value};

use crate::harness::TestServer;

const AGENTS: &str = "/apis/ark.mckinsey.com/v1alpha1/namespaces/default/agents";

fn agent(name: &str) -> Value {
    json!({"apiVersion": "ark.mckinsey.com/v1alpha1", "kind": "Agent", "metadata": {"name": name}, "spec": {"prompt": "p"}})
}

struct Api {
    s: TestServer,
    http: reqwest::Client,
}

impl Api {
    async fn new() -> Api {
        let s = TestServer::start().await;
        let http = s.http();
        Api { s, http }
    }
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.s.base_url())
    }
    async fn send(&self, r: reqwest::RequestBuilder, want: u16) -> Value {
        let r = r.send().await.unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap();
        assert_eq!(status, want, "{body}");
        body
    }
    async fn create(&self, obj: &Value) -> Value {
        self.send(self.http.post(self.url(AGENTS)).json(obj), 201)
            .await
    }
    async fn get(&self, name: &str) -> Value {
        self.send(self.http.get(self.url(&format!("{AGENTS}/{name}"))), 200)
            .await
    }
    async fn merge(&self, path: &str, patch: Value, want: u16) -> Value {
        let r = self
            .http
            .patch(self.url(path))
            .header("content-type", "application/merge-patch+json")
            .body(patch.to_string());
        self.send(r, want).await
    }
}

fn rv(o: &Value) -> i64 {
    o["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_sets_uid_timestamps_and_generation_and_ignores_client_values() {
    let a = Api::new().await;
    let mut o = agent("a");
    o["metadata"]["uid"] = json!("client-chosen");
    o["metadata"]["creationTimestamp"] = json!("2001-01-01T00:00:00Z");
    o["metadata"]["generation"] = json!(7);
    let c = a.create(&o).await;
    assert_ne!(c["metadata"]["uid"], "client-chosen");
    assert_eq!(c["metadata"]["uid"].as_str().unwrap().len(), 36);
    assert_ne!(c["metadata"]["creationTimestamp"], "2001-01-01T00:00:00Z");
    assert_eq!(c["metadata"]["generation"], 1);
    let g = a.get("a").await;
    assert_eq!(g["metadata"]["uid"], c["metadata"]["uid"]);
    assert_eq!(
        g["metadata"]["creationTimestamp"],
        c["metadata"]["creationTimestamp"]
    );
    assert_eq!(
        g["metadata"]["resourceVersion"],
        c["metadata"]["resourceVersion"]
    );
    a.s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generation_moves_with_spec_only_and_status_is_its_own_subresource() {
    let a = Api::new().await;
    let mut o = agent("a");
    o["status"] = json!({"conditions": [{"type": "Available", "status": "Unknown", "lastTransitionTime": "2026-01-01T00:00:00Z", "reason": "Checked", "message": "m"}]});
    let c = a.create(&o).await;
    assert!(
        c.get("status").is_none(),
        "create drops status when /status exists: {c}"
    );

    // Labels are metadata: no generation bump.
    let l = a
        .merge(
            &format!("{AGENTS}/a"),
            json!({"metadata": {"labels": {"x": "y"}}}),
            200,
        )
        .await;
    assert_eq!(l["metadata"]["generation"], 1);
    // A spec change bumps it; a status change through the main resource is ignored.
    let s = a
        .merge(
            &format!("{AGENTS}/a"),
            json!({"spec": {"prompt": "q"}, "status": {"conditions": [{"type": "Available", "status": "False", "lastTransitionTime": "2026-01-01T00:00:00Z", "reason": "Checked", "message": "m"}]}}),
            200,
        )
        .await;
    assert_eq!(s["metadata"]["generation"], 2);
    assert!(s.get("status").is_none(), "{s}");
    // /status writes status and ignores spec; generation stays.
    let st = a
        .merge(
            &format!("{AGENTS}/a/status"),
            json!({"spec": {"prompt": "ignored"}, "status": {"conditions": [{"type": "Available", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z", "reason": "Checked", "message": "m"}]}}),
            200,
        )
        .await;
    assert_eq!(st["status"]["conditions"][0]["status"], "True");
    assert_eq!(st["spec"]["prompt"], "q");
    assert_eq!(st["metadata"]["generation"], 2);
    // PUT /status, the way controllers write it.
    let mut put = a.get("a").await;
    put["status"] = json!({"conditions": [{"type": "Available", "status": "False", "lastTransitionTime": "2026-01-01T00:00:00Z", "reason": "Checked", "message": "m"}]});
    put["spec"]["prompt"] = json!("also-ignored");
    let p = a
        .send(
            a.http.put(a.url(&format!("{AGENTS}/a/status"))).json(&put),
            200,
        )
        .await;
    assert_eq!(p["status"]["conditions"][0]["status"], "False");
    assert_eq!(p["spec"]["prompt"], "q");
    let got = a
        .send(a.http.get(a.url(&format!("{AGENTS}/a/status"))), 200)
        .await;
    assert_eq!(got["status"]["conditions"][0]["status"], "False");
    a.s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_that_changes_nothing_writes_nothing() {
    let a = Api::new().await;
    let c = a.create(&agent("a")).await;
    let same = a
        .send(a.http.put(a.url(&format!("{AGENTS}/a"))).json(&c), 200)
        .await;
    assert_eq!(rv(&same), rv(&c));
    let same = a
        .merge(
            &format!("{AGENTS}/a"),
            json!({"spec": {"prompt": "p"}}),
            200,
        )
        .await;
    assert_eq!(rv(&same), rv(&c));
    a.s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalizers_hold_deletion_until_the_last_one_is_removed() {
    let a = Api::new().await;
    let mut o = agent("a");
    o["metadata"]["finalizers"] = json!(["example.com/cleanup", "example.com/other"]);
    o["metadata"]["ownerReferences"] = json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": "0e5c1a52-5b2a-4f0f-8f0e-1f6c3f7b8a11"}]);
    a.create(&o).await;
    let d = a
        .send(a.http.delete(a.url(&format!("{AGENTS}/a"))), 200)
        .await;
    assert!(d["metadata"]["deletionTimestamp"].is_string(), "{d}");
    assert_eq!(d["metadata"]["deletionGracePeriodSeconds"], 0);
    let g = a.get("a").await;
    assert!(g["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(g["metadata"]["ownerReferences"][0]["name"], "owner");
    // Deleting again changes nothing while finalizers remain.
    let again = a
        .send(a.http.delete(a.url(&format!("{AGENTS}/a"))), 200)
        .await;
    assert_eq!(rv(&again), rv(&g));
    // New finalizers cannot be added to an object being deleted; removing them can happen.
    let one = a
        .merge(
            &format!("{AGENTS}/a"),
            json!({"metadata": {"finalizers": ["example.com/other"]}}),
            200,
        )
        .await;
    assert_eq!(one["metadata"]["finalizers"], json!(["example.com/other"]));
    a.merge(
        &format!("{AGENTS}/a"),
        json!({"metadata": {"finalizers": null}}),
        200,
    )
    .await;
    a.send(a.http.get(a.url(&format!("{AGENTS}/a"))), 404).await;
    a.s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_preconditions_on_uid_and_resource_version_are_honoured() {
    let a = Api::new().await;
    let c = a.create(&agent("a")).await;
    let url = a.url(&format!("{AGENTS}/a"));
    let body = a.send(a.http.delete(&url).json(&json!({"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": "someone-else"}})), 409).await;
    assert_eq!(body["reason"], "Conflict");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("Precondition failed: UID in precondition: someone-else"),
        "{body}"
    );
    let body = a
        .send(
            a.http
                .delete(&url)
                .json(&json!({"preconditions": {"resourceVersion": "999"}})),
            409,
        )
        .await;
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("Precondition failed: ResourceVersion in precondition: 999"),
        "{body}"
    );
    let ok = json!({"preconditions": {"uid": c["metadata"]["uid"], "resourceVersion": c["metadata"]["resourceVersion"]}});
    let d = a.send(a.http.delete(&url).json(&ok), 200).await;
    assert_eq!(d["metadata"]["name"], "a");
    a.send(a.http.get(&url), 404).await;
    a.s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_validates_and_answers_without_persisting() {
    let a = Api::new().await;
    let d = a
        .send(
            a.http
                .post(a.url(&format!("{AGENTS}?dryRun=All")))
                .json(&agent("a")),
            201,
        )
        .await;
    assert_eq!(d["metadata"]["name"], "a");
    a.send(a.http.get(a.url(&format!("{AGENTS}/a"))), 404).await;
    a.create(&agent("a")).await;
    a.merge(
        &format!("{AGENTS}/a?dryRun=All"),
        json!({"spec": {"prompt": "dry"}}),
        200,
    )
    .await;
    assert_eq!(a.get("a").await["spec"]["prompt"], "p");
    a.send(a.http.delete(a.url(&format!("{AGENTS}/a?dryRun=All"))), 200)
        .await;
    a.get("a").await;
    a.s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_name_makes_a_unique_name_with_the_prefix() {
    let a = Api::new().await;
    let o = json!({"apiVersion": "ark.mckinsey.com/v1alpha1", "kind": "Agent", "metadata": {"generateName": "gen-"}, "spec": {"prompt": "p"}});
    let one = a.create(&o).await;
    let two = a.create(&o).await;
    let (n1, n2) = (
        one["metadata"]["name"].as_str().unwrap(),
        two["metadata"]["name"].as_str().unwrap(),
    );
    assert!(n1.starts_with("gen-") && n1.len() == 9, "{n1}");
    assert_ne!(n1, n2);
    a.s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_page_with_limit_and_continue_and_count_what_remains() {
    let a = Api::new().await;
    for i in 0..7 {
        a.create(&agent(&format!("a{i}"))).await;
    }
    let mut names = Vec::new();
    let mut token: Option<String> = None;
    let mut first_rv = None;
    loop {
        let q = match &token {
            Some(t) => format!("{AGENTS}?limit=3&continue={t}"),
            None => format!("{AGENTS}?limit=3"),
        };
        let page = a.send(a.http.get(a.url(&q)), 200).await;
        assert_eq!(page["kind"], "AgentList");
        let rv = page["metadata"]["resourceVersion"].clone();
        assert_eq!(
            *first_rv.get_or_insert(rv.clone()),
            rv,
            "every page reports the listing's resourceVersion"
        );
        names.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o["metadata"]["name"].as_str().unwrap().to_string()),
        );
        match page["metadata"]["continue"].as_str() {
            Some(t) => {
                assert!(page["metadata"]["remainingItemCount"].as_i64().unwrap() > 0);
                token = Some(t.to_string());
            }
            None => break,
        }
    }
    assert_eq!(names, (0..7).map(|i| format!("a{i}")).collect::<Vec<_>>());
    a.s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selectors_filter_lists_and_deletecollection() {
    let a = Api::new().await;
    for (name, labels) in [
        ("a", json!({"app": "web", "tier": "front"})),
        ("b", json!({"app": "web"})),
        ("c", json!({"app": "db"})),
    ] {
        let mut o = agent(name);
        o["metadata"]["labels"] = labels;
        a.create(&o).await;
    }
    let names = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    for (sel, want) in [
        ("app%3Dweb", vec!["a", "b"]),
        ("app%3D%3Dweb", vec!["a", "b"]),
        ("app!%3Dweb", vec!["c"]),
        ("app%20in%20(db,x)", vec!["c"]),
        ("app%20notin%20(web)", vec!["c"]),
        ("tier", vec!["a"]),
        ("!tier", vec!["b", "c"]),
        ("app%3Dweb,!tier", vec!["b"]),
    ] {
        let v = a
            .send(
                a.http.get(a.url(&format!("{AGENTS}?labelSelector={sel}"))),
                200,
            )
            .await;
        assert_eq!(names(&v), want, "labelSelector={sel}");
    }
    let v = a
        .send(
            a.http
                .get(a.url(&format!("{AGENTS}?fieldSelector=metadata.name%3Db"))),
            200,
        )
        .await;
    assert_eq!(names(&v), vec!["b"]);
    let v = a
        .send(
            a.http.get(a.url(&format!(
                "{AGENTS}?fieldSelector=metadata.name!%3Db,metadata.namespace%3Ddefault"
            ))),
            200,
        )
        .await;
    assert_eq!(names(&v), vec!["a", "c"]);
    let v = a
        .send(
            a.http.get(a.url(
                "/apis/ark.mckinsey.com/v1alpha1/agents?fieldSelector=metadata.namespace%3Dother",
            )),
            200,
        )
        .await;
    assert!(names(&v).is_empty());
    let deleted = a
        .send(
            a.http
                .delete(a.url(&format!("{AGENTS}?labelSelector=app%3Dweb"))),
            200,
        )
        .await;
    assert_eq!(names(&deleted), vec!["a", "b"]);
    let left = a.send(a.http.get(a.url(AGENTS)), 200).await;
    assert_eq!(names(&left), vec!["c"]);
    a.s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_and_partial_object_metadata_are_served_on_request() {
    let a = Api::new().await;
    let mut o = agent("a");
    o["spec"]["modelRef"] = json!({"name": "gpt"});
    a.create(&o).await;
    let table_accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
    let r = a
        .http
        .get(a.url(AGENTS))
        .header("accept", table_accept)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["content-type"],
        "application/json;as=Table;v=v1;g=meta.k8s.io"
    );
    let t: Value = r.json().await.unwrap();
    assert_eq!(t["kind"], "Table");
    assert_eq!(t["columnDefinitions"][0]["name"], "Name");
    let cols: Vec<&str> = t["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    let model_col = cols
        .iter()
        .position(|c| *c == "Model")
        .expect("Agent has a Model column");
    assert_eq!(t["rows"][0]["cells"][0], "a");
    assert_eq!(t["rows"][0]["cells"][model_col], "gpt");
    assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    // A single object as a Table.
    let t: Value = a
        .http
        .get(a.url(&format!("{AGENTS}/a")))
        .header("accept", table_accept)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(t["rows"].as_array().unwrap().len(), 1);
    // Metadata-only informers.
    let r = a
        .http
        .get(a.url(AGENTS))
        .header(
            "accept",
            "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io,application/json",
        )
        .send()
        .await
        .unwrap();
    let l: Value = r.json().await.unwrap();
    assert_eq!(l["kind"], "PartialObjectMetadataList");
    assert_eq!(l["items"][0]["metadata"]["name"], "a");
    assert!(l["items"][0].get("spec").is_none());
    let p: Value = a
        .http
        .get(a.url(&format!("{AGENTS}/a")))
        .header(
            "accept",
            "application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io",
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(p["kind"], "PartialObjectMetadata");
    a.s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_fields_are_recorded_per_manager_and_kept() {
    let a = Api::new().await;
    let c = a
        .send(
            a.http
                .post(a.url(&format!("{AGENTS}?fieldManager=creator")))
                .json(&agent("a")),
            201,
        )
        .await;
    assert_eq!(c["metadata"]["managedFields"][0]["manager"], "creator");
    assert_eq!(
        c["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"]["f:prompt"],
        json!({})
    );
    let p = a
        .merge(
            &format!("{AGENTS}/a?fieldManager=labeler"),
            json!({"metadata": {"labels": {"x": "y"}}}),
            200,
        )
        .await;
    let mf = p["metadata"]["managedFields"].as_array().unwrap();
    assert_eq!(mf.len(), 2, "{p}");
    assert!(mf.iter().any(|e| e["manager"] == "labeler"
        && e["fieldsV1"]["f:metadata"]["f:labels"]["f:x"] == json!({})));
    let g = a.get("a").await;
    assert_eq!(
        g["metadata"]["managedFields"],
        p["metadata"]["managedFields"]
    );
    a.s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_scoped_arkconfig_lives_outside_namespaces() {
    let a = Api::new().await;
    let url = a.url("/apis/ark.mckinsey.com/v1alpha1/arkconfigs");
    let o = json!({"apiVersion": "ark.mckinsey.com/v1alpha1", "kind": "ArkConfig", "metadata": {"name": "default"}, "spec": {"queryTTL": "1h"}});
    let c = a.send(a.http.post(&url).json(&o), 201).await;
    assert!(c["metadata"].get("namespace").is_none());
    a.send(a.http.get(format!("{url}/default")), 200).await;
    a.send(
        a.http
            .get(a.url("/apis/ark.mckinsey.com/v1alpha1/namespaces/default/arkconfigs/default")),
        404,
    )
    .await;
    a.s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soft_deleted_rows_are_purged_after_the_retention() {
    let s =
        TestServer::start_with(|o| o.deleted_retention = std::time::Duration::from_secs(1)).await;
    let a = Api { http: s.http(), s };
    a.create(&agent("gone")).await;
    a.send(a.http.delete(a.url(&format!("{AGENTS}/gone"))), 200)
        .await;
    let db = a.s.db.client().await;
    assert_eq!(
        count(&db).await,
        1,
        "the soft-deleted row is kept for the retention period"
    );
    let mut purged = false;
    for _ in 0..40 {
        if count(&db).await == 0 {
            purged = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert!(purged, "the row is purged once the retention has passed");
    a.s.stop().await;
}

async fn count(db: &tokio_postgres::Client) -> i64 {
    db.query_one("SELECT count(*) FROM resources WHERE name = 'gone'", &[])
        .await
        .unwrap()
        .get(0)
}
