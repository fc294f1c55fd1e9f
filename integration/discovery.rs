//! Discovery, OpenAPI, extra definitions, health and metrics, as the aggregator and
//! kubectl fetch them.

use serde_json::Value;

use crate::harness::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregated_discovery_is_chosen_by_accept_with_its_content_type() {
    let s = TestServer::start().await;
    let h = s.http();
    let accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
    let r = h
        .get(format!("{}/apis", s.base_url()))
        .header("accept", accept)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["content-type"],
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    );
    let d: Value = r.json().await.unwrap();
    assert_eq!(d["kind"], "APIGroupDiscoveryList");
    assert_eq!(d["items"][0]["metadata"]["name"], "ark.mckinsey.com");
    let versions: Vec<&str> = d["items"][0]["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, vec!["v1alpha1", "v1prealpha1"]);

    let legacy: Value = h
        .get(format!("{}/apis", s.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(legacy["kind"], "APIGroupList");
    assert_eq!(
        legacy["groups"][0]["preferredVersion"]["version"],
        "v1alpha1"
    );
    let group: Value = h
        .get(format!("{}/apis/ark.mckinsey.com", s.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(group["kind"], "APIGroup");
    for (v, expect) in [("v1alpha1", "agents"), ("v1prealpha1", "a2aservers")] {
        let l: Value = h
            .get(format!("{}/apis/ark.mckinsey.com/{v}", s.base_url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(l["kind"], "APIResourceList");
        assert!(
            l["resources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["name"] == expect),
            "{l}"
        );
        assert!(l["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == format!("{expect}/status")));
    }
    let api: Value = h
        .get(format!("{}/api", s.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(api["kind"], "APIVersions");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_v3_index_points_at_documents_that_describe_every_kind() {
    let s = TestServer::start().await;
    let h = s.http();
    let index: Value = h
        .get(format!("{}/openapi/v3", s.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = index["paths"]["apis/ark.mckinsey.com/v1alpha1"]["serverRelativeURL"]
        .as_str()
        .expect("v1alpha1 listed")
        .to_string();
    let doc: Value = h
        .get(format!("{}{url}", s.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for kind in [
        "Agent",
        "Model",
        "Query",
        "Team",
        "Tool",
        "MCPServer",
        "Memory",
        "A2ATask",
        "ArkConfig",
    ] {
        assert!(
            schemas.keys().any(|k| k.ends_with(&format!(".{kind}"))),
            "{kind} missing from OpenAPI v3"
        );
    }
    let v2: Value = h
        .get(format!("{}/openapi/v2", s.base_url()))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v2["swagger"], "2.0");
    assert!(v2["definitions"]
        .as_object()
        .unwrap()
        .keys()
        .any(|k| k.ends_with(".A2AServer")));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_crds_can_be_served_from_crd_dir() {
    let Some(dir) = crate::harness::reference_dir("crds") else {
        return;
    };
    let s = TestServer::start_with(|o| o.crd_dir = Some(dir.clone())).await;
    let h = s.http();
    let l: Value = h
        .get(format!("{}/apis/ark.mckinsey.com/v1alpha1", s.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        l["resources"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| !r["name"].as_str().unwrap().contains('/'))
            .count(),
        9
    );
    let agent = serde_json::json!({"apiVersion": "ark.mckinsey.com/v1alpha1", "kind": "Agent", "metadata": {"name": "ref"}, "spec": {"prompt": "hello"}});
    let r = h
        .post(format!(
            "{}/apis/ark.mckinsey.com/v1alpha1/namespaces/default/agents",
            s.base_url()
        ))
        .json(&agent)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_endpoints_and_metrics_report_requests_and_the_pool() {
    let s = TestServer::start().await;
    let h = s.http();
    for p in ["/livez", "/readyz", "/healthz"] {
        let r = h.get(format!("{}{p}", s.base_url())).send().await.unwrap();
        assert_eq!(r.status(), 200, "{p}");
        assert_eq!(r.text().await.unwrap(), "ok");
    }
    let verbose = h
        .get(format!("{}/readyz?verbose", s.base_url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        verbose.contains("[+]database ok") && verbose.contains("[+]schema ok"),
        "{verbose}"
    );
    h.get(format!(
        "{}/apis/ark.mckinsey.com/v1alpha1/namespaces/default/agents/none",
        s.base_url()
    ))
    .send()
    .await
    .unwrap();
    let m = h
        .get(format!("{}/metrics", s.base_url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = m.lines().find(|l| {
        l.starts_with("apiserver_request_total")
            && l.contains("verb=\"get\"")
            && l.contains("resource=\"agents\"")
            && l.contains("code=\"404\"")
    });
    assert!(
        line.is_some(),
        "no request counter for the 404 GET in:\n{m}"
    );
    assert!(
        m.contains("apiserver_request_duration_seconds_bucket"),
        "latency is a histogram"
    );
    assert!(m.contains("ark_db_pool_max_size") && m.contains("ark_db_pool_in_use"));
    s.stop().await;
}
