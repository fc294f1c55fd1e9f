//! Delegated authentication and authorization end to end: the server asks a stand-in
//! kube-apiserver (the only stand-in; PostgreSQL and the clients are real) for the
//! authentication ConfigMap, TokenReviews and SubjectAccessReviews, and the tests assert
//! what the server answered and what it asked.

use std::time::Duration;

use k8s_openapi::api::authorization::v1::SubjectAccessReviewSpec;
use serde_json::{json, Value};

use ark_apiserver::auth::user::UserInfo;
use ark_apiserver::config::AuthMode;

use crate::harness::TestServer;
use crate::kube_standin::{allow, authentication_data, deny, KubeStandin};
use crate::pki::Ca;
use crate::stream_faults::eventually;

const GV: &str = "/apis/ark.mckinsey.com/v1alpha1";

struct Setup {
    server: TestServer,
    kube: KubeStandin,
    users: Ca,
    proxy: Ca,
}

/// A server whose CAs come from the ConfigMap only, reviews allowed for `alice` only.
async fn start() -> Setup {
    let kube = KubeStandin::start().await;
    let users = Ca::new("users");
    let proxy = Ca::new("front-proxy");
    let data = authentication_data(&users.pem, &proxy.pem);
    let data: Vec<(&str, &str)> = data.iter().map(|(k, v)| (*k, v.as_str())).collect();
    kube.set_config_map(&data);
    kube.set_token(
        "alice-token",
        &UserInfo {
            name: "alice".into(),
            uid: "u-alice".into(),
            groups: vec!["dev".into()],
            ..Default::default()
        },
    );
    kube.set_decision(|spec: &SubjectAccessReviewSpec| {
        if spec.user.as_deref() == Some("alice") {
            allow("RBAC: allowed by RoleBinding dev")
        } else {
            deny("")
        }
    });
    let kubeconfig = kube.kubeconfig.clone();
    let server = TestServer::start_with(move |o| {
        o.auth.mode = AuthMode::Delegated;
        o.auth.kube.authentication_kubeconfig = Some(kubeconfig.clone());
        o.auth.kube.authorization_kubeconfig = Some(kubeconfig);
        o.auth.file_reload = Duration::from_millis(200);
        o.auth.kube.config_map_resync = Duration::from_millis(500);
    })
    .await;
    // Ready includes the ConfigMap's CAs being in force.
    crate::stream_faults::wait_ready(&server.http(), &server.base_url(), Duration::from_secs(30))
        .await;
    Setup {
        server,
        kube,
        users,
        proxy,
    }
}

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut r = http.request(method, url);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    if let Some(b) = body {
        r = r
            .header("content-type", "application/merge-patch+json")
            .body(b.to_string());
    }
    let resp = r.send().await.unwrap();
    let code = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    (
        code,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
        headers,
    )
}

const TOKEN: [(&str, &str); 1] = [("Authorization", "Bearer alice-token")];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_reviewed_once_and_its_user_authorized_by_a_subject_access_review() {
    let s = start().await;
    let http = s.server.http();
    let url = format!(
        "{}{GV}/namespaces/dev/agents?labelSelector=team%3Da",
        s.server.base_url()
    );
    for _ in 0..3 {
        let (code, body, _) = call(&http, reqwest::Method::GET, &url, &TOKEN, None).await;
        assert_eq!(code, 200, "{body}");
    }
    // Both answers are cached: one TokenReview, one SubjectAccessReview.
    assert_eq!(s.kube.token_reviews().len(), 1);
    let reviews = s.kube.access_reviews();
    assert_eq!(reviews.len(), 1, "{reviews:?}");
    let spec = &reviews[0]["spec"];
    assert_eq!(spec["user"], "alice");
    assert_eq!(spec["uid"], "u-alice");
    assert_eq!(spec["groups"], json!(["dev", "system:authenticated"]));
    assert_eq!(
        spec["resourceAttributes"],
        json!({"namespace": "dev", "verb": "list", "group": "ark.mckinsey.com",
               "version": "v1alpha1", "resource": "agents",
               "labelSelector": {"requirements": [{"key": "team", "operator": "In", "values": ["a"]}]}})
    );
    // An invalid token is 401, not anonymous.
    let (code, body, _) = call(
        &http,
        reqwest::Method::GET,
        &url,
        &[("Authorization", "Bearer nope")],
        None,
    )
    .await;
    assert_eq!(
        (code, body["reason"].as_str()),
        (401, Some("Unauthorized")),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reviews_carry_kube_attributes_for_a_get_a_status_patch_a_watch_and_discovery() {
    let s = start().await;
    let http = s.server.http();
    let base = s.server.base_url();
    let agent = json!({"apiVersion": "ark.mckinsey.com/v1alpha1", "kind": "Agent",
                       "metadata": {"name": "a"}, "spec": {"prompt": "hi"}});
    let created = http
        .post(format!("{base}{GV}/namespaces/dev/agents"))
        .header("Authorization", "Bearer alice-token")
        .json(&agent)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let (code, _, _) = call(
        &http,
        reqwest::Method::GET,
        &format!("{base}{GV}/namespaces/dev/agents/a"),
        &TOKEN,
        None,
    )
    .await;
    assert_eq!(code, 200);
    let (code, body, _) = call(
        &http,
        reqwest::Method::PATCH,
        &format!("{base}{GV}/namespaces/dev/agents/a/status"),
        &TOKEN,
        Some(json!({"status": {"phase": "ready"}})),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let watch = http
        .get(format!("{base}{GV}/namespaces/dev/agents?watch=true&timeoutSeconds=1&fieldSelector=metadata.name%3Da"))
        .header("Authorization", "Bearer alice-token")
        .send()
        .await
        .unwrap();
    assert_eq!(watch.status(), 200);
    drop(watch);
    let (code, _, _) = call(
        &http,
        reqwest::Method::GET,
        &format!("{base}/apis/ark.mckinsey.com/v1alpha1"),
        &TOKEN,
        None,
    )
    .await;
    assert_eq!(code, 200);
    let attrs: Vec<Value> = s
        .kube
        .access_reviews()
        .iter()
        .map(|r| {
            r["spec"]
                .get("resourceAttributes")
                .or_else(|| r["spec"].get("nonResourceAttributes"))
                .cloned()
                .unwrap_or_default()
        })
        .collect();
    let want = [
        json!({"namespace": "dev", "verb": "create", "group": "ark.mckinsey.com", "version": "v1alpha1", "resource": "agents"}),
        json!({"namespace": "dev", "verb": "get", "group": "ark.mckinsey.com", "version": "v1alpha1", "resource": "agents", "name": "a"}),
        json!({"namespace": "dev", "verb": "patch", "group": "ark.mckinsey.com", "version": "v1alpha1", "resource": "agents", "subresource": "status", "name": "a"}),
        json!({"namespace": "dev", "verb": "watch", "group": "ark.mckinsey.com", "version": "v1alpha1", "resource": "agents", "name": "a",
               "fieldSelector": {"requirements": [{"key": "metadata.name", "operator": "In", "values": ["a"]}]}}),
        json!({"path": "/apis/ark.mckinsey.com/v1alpha1", "verb": "get"}),
    ];
    for w in &want {
        assert!(attrs.contains(w), "no review asked {w}; asked: {attrs:#?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_request_is_kubes_403_with_the_reviews_reason() {
    let s = start().await;
    s.kube.set_decision(|_| deny("no RoleBinding grants it"));
    let http = s.server.http();
    let base = s.server.base_url();
    let (code, body, headers) = call(
        &http,
        reqwest::Method::GET,
        &format!("{base}{GV}/namespaces/ns/agents/x"),
        &TOKEN,
        None,
    )
    .await;
    assert_eq!(code, 403);
    assert_eq!(body["reason"], "Forbidden");
    assert_eq!(
        body["message"],
        "agents.ark.mckinsey.com \"x\" is forbidden: User \"alice\" cannot get resource \"agents\" in API group \"ark.mckinsey.com\" in the namespace \"ns\": no RoleBinding grants it"
    );
    assert!(headers.contains_key("audit-id"));
    let (code, body, _) = call(
        &http,
        reqwest::Method::GET,
        &format!("{base}{GV}/arkconfigs"),
        &TOKEN,
        None,
    )
    .await;
    assert_eq!(code, 403);
    assert_eq!(
        body["message"],
        "arkconfigs.ark.mckinsey.com is forbidden: User \"alice\" cannot list resource \"arkconfigs\" in API group \"ark.mckinsey.com\" at the cluster scope: no RoleBinding grants it"
    );
    let (code, body, _) = call(
        &http,
        reqwest::Method::GET,
        &format!("{base}/openapi/v2"),
        &TOKEN,
        None,
    )
    .await;
    assert_eq!(code, 403);
    assert_eq!(
        body["message"],
        "forbidden: User \"alice\" cannot get path \"/openapi/v2\": no RoleBinding grants it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_kube_apiserver_gone_requests_are_refused_and_health_still_answers() {
    let mut s = start().await;
    let http = s.server.http();
    let base = s.server.base_url();
    // Through a client certificate (no TokenReview needed), so only the review is missing.
    let bob = s.users.client("bob", None).http();
    s.kube.stop().await;
    let (code, body, _) = call(
        &bob,
        reqwest::Method::GET,
        &format!("{base}{GV}/namespaces/ns/agents"),
        &[],
        None,
    )
    .await;
    assert_eq!(
        code, 500,
        "never allowed when the review cannot be made: {body}"
    );
    assert_eq!(body["reason"], "InternalError");
    for p in ["/healthz", "/livez"] {
        assert_eq!(
            call(
                &http,
                reqwest::Method::GET,
                &format!("{base}{p}"),
                &[],
                None
            )
            .await
            .0,
            200,
            "{p}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configmaps_cas_are_in_force_and_a_rotation_needs_no_restart() {
    let s = start().await;
    let base = s.server.base_url();
    let url = format!("{base}{GV}/namespaces/dev/agents");
    // A client certificate of the ConfigMap's client CA names its user (denied here: bob).
    let bob = s.users.client("bob", None).http();
    assert_eq!(
        call(&bob, reqwest::Method::GET, &url, &[], None).await.0,
        403
    );
    // The front proxy of the ConfigMap's requestheader CA names alice in headers.
    let proxy = s.proxy.client("front-proxy-client", None).http();
    let as_alice = [("X-Remote-User", "alice"), ("X-Remote-Group", "dev")];
    let (code, body, _) = call(&proxy, reqwest::Method::GET, &url, &as_alice, None).await;
    assert_eq!(code, 200, "{body} {:#?}", s.kube.access_reviews());
    // Rotate the client CA in the ConfigMap: the new CA's certificates work, the old ones
    // stop, without a restart.
    let rotated = Ca::new("users-2");
    let data = authentication_data(&rotated.pem, &s.proxy.pem);
    let data: Vec<(&str, &str)> = data.iter().map(|(k, v)| (*k, v.as_str())).collect();
    s.kube.set_config_map(&data);
    let carol = rotated.client("alice", None).http();
    eventually("the rotated CA in force", Duration::from_secs(15), || {
        let (carol, url) = (carol.clone(), url.clone());
        async move {
            match call(&carol, reqwest::Method::GET, &url, &[], None).await.0 {
                200 => Ok(()),
                c => Err(format!("{c}")),
            }
        }
    })
    .await;
    assert_eq!(
        call(&bob, reqwest::Method::GET, &url, &[], None).await.0,
        401
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_with_a_token_is_authenticated_and_authorized() {
    let s = start().await;
    let out = s
        .server
        .kubectl_as(
            &["--token", "alice-token"],
            &["get", "agents", "-n", "dev", "-o", "name"],
        )
        .await;
    assert!(out.ok, "{}", out.stderr);
    let out = s
        .server
        .kubectl_as(&["--token", "wrong"], &["get", "agents", "-n", "dev"])
        .await;
    assert!(!out.ok);
    assert!(out.stderr.contains("Unauthorized"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kube_rs_client_with_a_token_lists_and_creates() {
    use kube::api::{Api, ListParams, PostParams};
    use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
    let s = start().await;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut config = kube::Config::new(s.server.base_url().parse().unwrap());
    config.accept_invalid_certs = true;
    config.auth_info.token = Some("alice-token".to_string().into());
    let client = kube::Client::try_from(config).unwrap();
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("ark.mckinsey.com", "v1alpha1", "Agent"),
        "agents",
    );
    let api: Api<DynamicObject> = Api::namespaced_with(client, "dev", &ar);
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "ark.mckinsey.com/v1alpha1", "kind": "Agent",
        "metadata": {"name": "k"}, "spec": {"prompt": "from kube-rs"}
    }))
    .unwrap();
    api.create(&PostParams::default(), &obj).await.unwrap();
    assert_eq!(
        api.list(&ListParams::default()).await.unwrap().items.len(),
        1
    );
    let spec = &s.kube.access_reviews()[0]["spec"];
    assert_eq!(spec["user"], "alice");
}
