//! Every class of bad input gets kube's Status: code, reason and a clear message; never a
//! panic, a hang, or SQL text.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::TestServer;

const AGENTS: &str = "/apis/ark.mckinsey.com/v1alpha1/namespaces/default/agents";

fn agent(name: &str) -> Value {
    json!({"apiVersion": "ark.mckinsey.com/v1alpha1", "kind": "Agent", "metadata": {"name": name}, "spec": {"prompt": "p"}})
}

/// Asserts a Status with `code` and `reason`, and that nothing SQL-ish leaked into it.
async fn expect_status(resp: reqwest::Response, code: u16, reason: &str) -> Value {
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|h| h.to_str().unwrap().to_string());
    let body: Value = resp.json().await.expect("a JSON Status body");
    assert_eq!(status, code, "{body}");
    assert_eq!(ct.as_deref(), Some("application/json"));
    assert_eq!(body["kind"], "Status", "{body}");
    assert_eq!(body["apiVersion"], "v1");
    assert_eq!(body["status"], "Failure");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["reason"], reason, "{body}");
    let msg = body["message"].as_str().unwrap().to_lowercase();
    for sql in [
        "select ",
        "insert ",
        "update resources",
        "sqlstate",
        "relation \"",
        "syntax error at",
    ] {
        assert!(!msg.contains(sql), "SQL leaked into a Status: {msg}");
    }
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_object_is_404_not_found_naming_the_resource() {
    let s = TestServer::start().await;
    let r = s
        .http()
        .get(format!("{}{AGENTS}/nope", s.base_url()))
        .send()
        .await
        .unwrap();
    let body = expect_status(r, 404, "NotFound").await;
    assert_eq!(
        body["message"],
        "agents.ark.mckinsey.com \"nope\" not found"
    );
    assert_eq!(
        body["details"],
        json!({"name": "nope", "group": "ark.mckinsey.com", "kind": "agents"})
    );
    // An unknown resource type is the server's generic 404.
    let r = s
        .http()
        .get(format!(
            "{}/apis/ark.mckinsey.com/v1alpha1/namespaces/default/widgets",
            s.base_url()
        ))
        .send()
        .await
        .unwrap();
    expect_status(r, 404, "NotFound").await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_a_taken_name_is_409_already_exists() {
    let s = TestServer::start().await;
    let url = format!("{}{AGENTS}", s.base_url());
    assert_eq!(
        s.http()
            .post(&url)
            .json(&agent("a"))
            .send()
            .await
            .unwrap()
            .status(),
        201
    );
    let body = expect_status(
        s.http().post(&url).json(&agent("a")).send().await.unwrap(),
        409,
        "AlreadyExists",
    )
    .await;
    assert_eq!(
        body["message"],
        "agents.ark.mckinsey.com \"a\" already exists"
    );
    // Once deleted, the name can be used again.
    assert_eq!(
        s.http()
            .delete(format!("{url}/a"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        s.http()
            .post(&url)
            .json(&agent("a"))
            .send()
            .await
            .unwrap()
            .status(),
        201
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updating_with_a_stale_resource_version_is_409_conflict() {
    let s = TestServer::start().await;
    let url = format!("{}{AGENTS}", s.base_url());
    let created: Value = s
        .http()
        .post(&url)
        .json(&agent("a"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut fresh = created.clone();
    fresh["spec"]["prompt"] = json!("second");
    assert_eq!(
        s.http()
            .put(format!("{url}/a"))
            .json(&fresh)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let mut stale = created;
    stale["spec"]["prompt"] = json!("third");
    let body = expect_status(
        s.http()
            .put(format!("{url}/a"))
            .json(&stale)
            .send()
            .await
            .unwrap(),
        409,
        "Conflict",
    )
    .await;
    assert_eq!(
        body["message"],
        "Operation cannot be fulfilled on agents.ark.mckinsey.com \"a\": the object has been modified; please apply your changes to the latest version and try again"
    );
    // An update without any resourceVersion is invalid for custom resources.
    let mut none = stale.clone();
    none["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    let body = expect_status(
        s.http()
            .put(format!("{url}/a"))
            .json(&none)
            .send()
            .await
            .unwrap(),
        422,
        "Invalid",
    )
    .await;
    assert!(
        body["message"].as_str().unwrap().contains(
            "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update"
        ),
        "{body}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_metadata_and_schema_violations_are_422_with_causes() {
    let s = TestServer::start().await;
    let url = format!("{}{AGENTS}", s.base_url());
    let body = expect_status(
        s.http()
            .post(&url)
            .json(&agent("Bad_Name"))
            .send()
            .await
            .unwrap(),
        422,
        "Invalid",
    )
    .await;
    assert!(body["message"].as_str().unwrap().starts_with("Agent.ark.mckinsey.com \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\""), "{body}");
    assert_eq!(body["details"]["causes"][0]["field"], "metadata.name");
    assert_eq!(body["details"]["causes"][0]["reason"], "FieldValueInvalid");

    let mut bad_label = agent("ok");
    bad_label["metadata"]["labels"] = json!({"bad key!": "v"});
    let body = expect_status(
        s.http().post(&url).json(&bad_label).send().await.unwrap(),
        422,
        "Invalid",
    )
    .await;
    assert!(
        body["details"]["causes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["field"] == "metadata.labels"),
        "{body}"
    );

    let mut wrong_type = agent("ok");
    wrong_type["spec"]["prompt"] = json!(42);
    let body = expect_status(
        s.http().post(&url).json(&wrong_type).send().await.unwrap(),
        422,
        "Invalid",
    )
    .await;
    assert_eq!(
        body["details"]["causes"][0]["field"], "spec.prompt",
        "{body}"
    );

    let mut wrong_kind = agent("ok");
    wrong_kind["kind"] = json!("Model");
    let body = expect_status(
        s.http().post(&url).json(&wrong_kind).send().await.unwrap(),
        422,
        "Invalid",
    )
    .await;
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("kind: Invalid value: \"Model\": must be Agent"),
        "{body}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_bad_selectors_and_bad_parameters_are_400() {
    let s = TestServer::start().await;
    let url = format!("{}{AGENTS}", s.base_url());
    let r = s
        .http()
        .post(&url)
        .header("content-type", "application/json")
        .body("{\"apiVersion\": ")
        .send()
        .await
        .unwrap();
    expect_status(r, 400, "BadRequest").await;
    let r = s
        .http()
        .get(format!("{url}?labelSelector=a%20in%20(b"))
        .send()
        .await
        .unwrap();
    expect_status(r, 400, "BadRequest").await;
    let r = s
        .http()
        .get(format!("{url}?fieldSelector=spec.prompt%3Dx"))
        .send()
        .await
        .unwrap();
    expect_status(r, 400, "BadRequest").await;
    let r = s
        .http()
        .get(format!("{url}?limit=lots"))
        .send()
        .await
        .unwrap();
    expect_status(r, 400, "BadRequest").await;
    let r = s
        .http()
        .get(format!("{url}?continue=not-a-token"))
        .send()
        .await
        .unwrap();
    let body = expect_status(r, 400, "BadRequest").await;
    assert!(body["message"]
        .as_str()
        .unwrap()
        .starts_with("invalid continue token: continue key is not valid"));
    let r = s
        .http()
        .post(format!("{url}?dryRun=Sometimes"))
        .json(&agent("x"))
        .send()
        .await
        .unwrap();
    expect_status(r, 400, "BadRequest").await;
    // The namespace of the URL and of the body must agree.
    let mut elsewhere = agent("x");
    elsewhere["metadata"]["namespace"] = json!("other");
    let body = expect_status(
        s.http().post(&url).json(&elsewhere).send().await.unwrap(),
        400,
        "BadRequest",
    )
    .await;
    assert_eq!(
        body["message"],
        "the namespace of the provided object does not match the namespace sent on the request"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_patch_types_are_415() {
    let s = TestServer::start().await;
    let url = format!("{}{AGENTS}", s.base_url());
    s.http().post(&url).json(&agent("a")).send().await.unwrap();
    for ct in ["application/strategic-merge-patch+json", "text/plain"] {
        let r = s
            .http()
            .patch(format!("{url}/a"))
            .header("content-type", ct)
            .body("{}")
            .send()
            .await
            .unwrap();
        let body = expect_status(r, 415, "UnsupportedMediaType").await;
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("application/merge-patch+json"),
            "{body}"
        );
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_is_413_and_large_objects_under_it_work() {
    let s = TestServer::start_with(|o| o.max_body_bytes = 4 * 1024 * 1024).await;
    let url = format!("{}{AGENTS}", s.base_url());
    // 2.5 MiB: beyond etcd's 1.5 MiB object ceiling, within this server's limit.
    let mut big = agent("big");
    big["spec"]["prompt"] = json!("x".repeat(5 * 512 * 1024));
    let r = s.http().post(&url).json(&big).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let got: Value = s
        .http()
        .get(format!("{url}/big"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        got["spec"]["prompt"].as_str().unwrap().len(),
        5 * 512 * 1024
    );
    let mut huge = agent("huge");
    huge["spec"]["prompt"] = json!("x".repeat(5 * 1024 * 1024));
    let body = expect_status(
        s.http().post(&url).json(&huge).send().await.unwrap(),
        413,
        "RequestEntityTooLarge",
    )
    .await;
    assert!(body["message"].as_str().unwrap().contains("4194304"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_verbs_are_405() {
    let s = TestServer::start().await;
    let base = s.base_url();
    // POST to an item, and create through the all-namespaces path of a namespaced kind.
    let r = s
        .http()
        .post(format!("{base}{AGENTS}/a"))
        .json(&agent("a"))
        .send()
        .await
        .unwrap();
    expect_status(r, 405, "MethodNotAllowed").await;
    let r = s
        .http()
        .post(format!("{base}/apis/ark.mckinsey.com/v1alpha1/agents"))
        .json(&agent("a"))
        .send()
        .await
        .unwrap();
    expect_status(r, 405, "MethodNotAllowed").await;
    let r = s
        .http()
        .delete(format!("{base}{AGENTS}/a/status"))
        .send()
        .await
        .unwrap();
    expect_status(r, 405, "MethodNotAllowed").await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_is_503_and_not_ready_and_recovers() {
    // This test stops PostgreSQL, so it gets a cluster of its own.
    let cluster =
        tokio::task::spawn_blocking(|| ark_apiserver::embedded::Cluster::start(None, true))
            .await
            .unwrap()
            .unwrap();
    let url = cluster.url("postgres");
    let db = crate::harness::TestDb::existing(url);
    let s = TestServer::start_on(db).await;
    let base = s.base_url();
    assert_eq!(
        s.http()
            .post(format!("{base}{AGENTS}"))
            .json(&agent("a"))
            .send()
            .await
            .unwrap()
            .status(),
        201
    );

    let data = cluster.data_dir().to_path_buf();
    let bin = cluster.bin_dir().to_path_buf();
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.pause().unwrap();
        cluster
    })
    .await
    .unwrap();
    let started = std::time::Instant::now();
    let r = s
        .http()
        .get(format!("{base}{AGENTS}/a"))
        .send()
        .await
        .unwrap();
    let body = expect_status(r, 503, "ServiceUnavailable").await;
    assert!(
        body["message"].as_str().unwrap().contains("PostgreSQL"),
        "{body}"
    );
    let r = s
        .http()
        .post(format!("{base}{AGENTS}"))
        .json(&agent("b"))
        .send()
        .await
        .unwrap();
    expect_status(r, 503, "ServiceUnavailable").await;
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "errors must come fast, not hang"
    );
    assert_eq!(
        s.http()
            .get(format!("{base}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        500
    );
    assert_eq!(
        s.http()
            .get(format!("{base}/livez"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let cluster = tokio::task::spawn_blocking(move || {
        cluster.resume().unwrap();
        cluster
    })
    .await
    .unwrap();
    let _ = (data, bin);
    let mut ok = false;
    for _ in 0..50 {
        if s.http()
            .get(format!("{base}{AGENTS}/a"))
            .send()
            .await
            .unwrap()
            .status()
            == 200
        {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(ok, "the server recovers once PostgreSQL is back");
    s.stop().await;
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_postgres_cannot_store_is_422_in_plain_words() {
    let s = TestServer::start().await;
    let url = format!("{}{AGENTS}", s.base_url());
    // jsonb cannot hold U+0000; the client hears why, not PostgreSQL's error text.
    let body = "{\"apiVersion\":\"ark.mckinsey.com/v1alpha1\",\"kind\":\"Agent\",\"metadata\":{\"name\":\"nul\"},\"spec\":{\"prompt\":\"a\\u0000b\"}}";
    let r = s
        .http()
        .post(&url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = expect_status(r, 422, "Invalid").await;
    assert!(
        status["message"].as_str().unwrap().contains("NUL"),
        "{status}"
    );
    // The writer is unharmed: the next write goes through.
    assert_eq!(
        s.http()
            .post(&url)
            .json(&agent("after"))
            .send()
            .await
            .unwrap()
            .status(),
        201
    );
    s.stop().await;
}
