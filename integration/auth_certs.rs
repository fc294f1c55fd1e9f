//! Delegated authentication without a kube-apiserver to ask: client certificates and the
//! front proxy, with the CAs given as flags (--authentication-skip-lookup). Members of
//! system:masters need no review; everyone else would need one, and with no kube-apiserver
//! configured the server refuses (it fails closed).

use serde_json::Value;

use ark_apiserver::config::AuthMode;

use crate::harness::TestServer;
use crate::pki::{Ca, Client};

const AGENTS: &str = "/apis/ark.mckinsey.com/v1alpha1/namespaces/default/agents";

struct Setup {
    server: TestServer,
    users: Ca,
    proxy: Ca,
    _dir: tempfile::TempDir,
}

async fn start() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let users = Ca::new("users");
    let proxy = Ca::new("front-proxy");
    let client_ca = users.write(dir.path(), "client-ca.pem");
    let proxy_ca = proxy.write(dir.path(), "requestheader-ca.pem");
    let server = TestServer::start_with(|o| {
        o.auth.mode = AuthMode::Delegated;
        o.auth.skip_lookup = true;
        o.auth.client_ca_file = Some(client_ca);
        o.auth.requestheader.client_ca_file = Some(proxy_ca);
        o.auth.requestheader.allowed_names = Some(vec!["front-proxy-client".into()]);
    })
    .await;
    Setup {
        server,
        users,
        proxy,
        _dir: dir,
    }
}

async fn get(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let mut r = http.get(format!("{base}{path}"));
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let resp = r.send().await.unwrap();
    let code = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        code,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn masters(ca: &Ca, name: &str) -> Client {
    ca.client(name, Some("system:masters"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_in_system_masters_is_served_without_a_review() {
    let s = start().await;
    let base = s.server.base_url();
    let (code, body) = get(&masters(&s.users, "admin").http(), &base, AGENTS, &[]).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["kind"], "AgentList");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_credentials_health_is_served_and_everything_else_refused() {
    let s = start().await;
    let base = s.server.base_url();
    let anonymous = s.server.http();
    for p in ["/healthz", "/readyz", "/livez"] {
        assert_eq!(get(&anonymous, &base, p, &[]).await.0, 200, "{p}");
    }
    // Anonymous needs a review, and there is no kube-apiserver to ask: refused, not served.
    let (code, body) = get(&anonymous, &base, AGENTS, &[]).await;
    assert_eq!(code, 500, "{body}");
    assert_eq!(body["reason"], "InternalError");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_front_proxy_names_the_user_and_spoofed_headers_name_nobody() {
    let s = start().await;
    let base = s.server.base_url();
    let claims = [
        ("X-Remote-User", "bob"),
        ("X-Remote-Group", "system:masters"),
    ];
    // The aggregator's certificate: the headers name the user.
    let proxy = s.proxy.client("front-proxy-client", None).http();
    let (code, body) = get(&proxy, &base, AGENTS, &claims).await;
    assert_eq!(code, 200, "{body}");
    // The same headers without its certificate are not believed.
    let (code, _) = get(&s.server.http(), &base, AGENTS, &claims).await;
    assert_ne!(code, 200);
    // Nor from a user's own certificate: that user is who it is.
    let carol = s.users.client("carol", None).http();
    assert_ne!(get(&carol, &base, AGENTS, &claims).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_front_proxy_cn_not_allowed_or_a_certificate_of_another_ca_is_401() {
    let s = start().await;
    let base = s.server.base_url();
    let claims = [
        ("X-Remote-User", "bob"),
        ("X-Remote-Group", "system:masters"),
    ];
    let wrong_cn = s.proxy.client("aggregator", None).http();
    let (code, body) = get(&wrong_cn, &base, AGENTS, &claims).await;
    assert_eq!(code, 401, "{body}");
    assert_eq!(body["reason"], "Unauthorized");
    assert_eq!(body["message"], "Unauthorized");
    let stranger = masters(&Ca::new("elsewhere"), "admin").http();
    assert_eq!(get(&stranger, &base, AGENTS, &[]).await.0, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_with_a_client_certificate_works() {
    let s = start().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        masters(&s.users, "admin").kubeconfig(&s.server.base_url()),
    )
    .unwrap();
    let out = s
        .server
        .kubectl_with_kubeconfig(&kubeconfig, &["get", "agents", "-o", "name"])
        .await;
    assert!(out.ok, "{}", out.stderr);
}
