//! The kube-apiserver client (`kubeapi`) against the stand-in: what it asks, what it makes
//! of the answers, what it caches, and what it does when the kube-apiserver is away.
//!
//! Each expected body below is what k8s.io/apiserver's webhook authorizer and token
//! authenticator send for the same request (Go omits empty fields, as these do).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

use ark_apiserver::auth::attributes::RequestAttributes;
use ark_apiserver::auth::forbidden::forbidden;
use ark_apiserver::auth::user::UserInfo;
use ark_apiserver::k8s::query::Query;
use ark_apiserver::kubeapi::config::RetryBackoff;
use ark_apiserver::kubeapi::{
    Decision, Endpoint, KubeApi, KubeApiConfig, KubeApiError, TokenOutcome,
};

use crate::kube_standin::{self, allow, deny, no_opinion, KubeStandin};

fn config(s: &KubeStandin) -> KubeApiConfig {
    KubeApiConfig {
        authentication_kubeconfig: Some(s.kubeconfig.clone()),
        authorization_kubeconfig: Some(s.kubeconfig.clone()),
        // kube's policy, with waits short enough for a test.
        retry: RetryBackoff {
            initial: Duration::from_millis(20),
            ..RetryBackoff::default()
        },
        ..KubeApiConfig::default()
    }
}

async fn connect(c: &KubeApiConfig) -> KubeApi {
    KubeApi::connect(c).await.expect("clients for the stand-in")
}

fn alice() -> UserInfo {
    UserInfo {
        name: "alice".into(),
        uid: "alice-uid".into(),
        groups: vec!["devs".into(), "system:authenticated".into()],
        extra: BTreeMap::from([(
            "authentication.kubernetes.io/credential-id".into(),
            vec!["JTI=1234".into()],
        )]),
    }
}

fn attrs(method: &str, path_and_query: &str) -> RequestAttributes {
    let (path, qs) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let q = Query::parse(qs).expect("a valid query");
    RequestAttributes::new(method, path, Some(&q))
}

/// The user part of every review for `alice`, as kube sends it.
fn alice_spec(mut attributes: Value) -> Value {
    let user = json!({
        "user": "alice", "uid": "alice-uid",
        "groups": ["devs", "system:authenticated"],
        "extra": {"authentication.kubernetes.io/credential-id": ["JTI=1234"]},
    });
    let (Value::Object(spec), Value::Object(user)) = (&mut attributes, user) else {
        unreachable!()
    };
    spec.extend(user);
    json!({
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "metadata": {}, "spec": attributes
    })
}

const NS: &str = "/apis/ark.mckinsey.com/v1alpha1/namespaces/team-a/agents";

// --- TokenReview ---

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_token_is_its_user_and_the_second_review_is_served_from_the_cache() {
    let s = KubeStandin::start().await;
    s.set_token("valid-token", &alice());
    let api = connect(&config(&s)).await;

    let first = api.tokens.review_token("valid-token").await.unwrap();
    assert_eq!(first, TokenOutcome::Authenticated(alice()));
    assert_eq!(
        s.token_reviews(),
        vec![json!({
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
            "metadata": {}, "spec": {"token": "valid-token"}
        })],
        "kube sends no audiences for a delegating server"
    );
    let second = api.tokens.review_token("valid-token").await.unwrap();
    assert_eq!(second, first);
    assert_eq!(
        s.token_reviews().len(),
        1,
        "the second review did not reach the kube-apiserver"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_token_is_unauthenticated_and_that_answer_is_cached_too() {
    let s = KubeStandin::start().await;
    let api = connect(&config(&s)).await;
    for _ in 0..2 {
        assert_eq!(
            api.tokens.review_token("not-a-token").await.unwrap(),
            TokenOutcome::Unauthenticated { error: None }
        );
    }
    assert_eq!(s.token_reviews().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_review_that_reports_an_error_is_not_cached_as_in_kube() {
    let s = KubeStandin::start().await;
    s.set_token_error(
        "expired-jwt",
        "[invalid bearer token, service account token has expired]",
    );
    let api = connect(&config(&s)).await;
    for _ in 0..2 {
        assert_eq!(
            api.tokens.review_token("expired-jwt").await.unwrap(),
            TokenOutcome::Unauthenticated {
                error: Some("[invalid bearer token, service account token has expired]".into())
            }
        );
    }
    assert_eq!(s.token_reviews().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_answers_expire_after_the_token_cache_ttl() {
    let s = KubeStandin::start().await;
    s.set_token("t", &alice());
    let api = connect(&KubeApiConfig {
        token_cache_ttl: Duration::from_millis(300),
        ..config(&s)
    })
    .await;
    api.tokens.review_token("t").await.unwrap();
    api.tokens.review_token("t").await.unwrap();
    assert_eq!(s.token_reviews().len(), 1);
    tokio::time::sleep(Duration::from_millis(400)).await;
    api.tokens.review_token("t").await.unwrap();
    assert_eq!(s.token_reviews().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_with_one_token_share_one_review() {
    let s = KubeStandin::start().await;
    s.set_token("t", &alice());
    let api = connect(&config(&s)).await;
    let reviews = (0..16).map(|_| api.tokens.review_token("t"));
    for outcome in futures_util::future::join_all(reviews).await {
        assert_eq!(outcome.unwrap(), TokenOutcome::Authenticated(alice()));
    }
    assert_eq!(s.token_reviews().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_audiences_are_sent() {
    let s = KubeStandin::start().await;
    s.set_token("t", &alice());
    let api = connect(&KubeApiConfig {
        audiences: vec!["https://kubernetes.default.svc".into()],
        ..config(&s)
    })
    .await;
    api.tokens.review_token("t").await.unwrap();
    assert_eq!(
        s.token_reviews()[0]["spec"],
        json!({"token": "t", "audiences": ["https://kubernetes.default.svc"]})
    );
}

// --- SubjectAccessReview bodies ---

/// Sends the review for `method path` and returns the body the stand-in received.
async fn review_body(method: &str, path: &str, user: &UserInfo) -> Value {
    let s = KubeStandin::start().await;
    let api = connect(&config(&s)).await;
    let d = api
        .access
        .authorize(&attrs(method, path), user)
        .await
        .unwrap();
    assert!(d.is_allowed());
    let mut bodies = s.access_reviews();
    assert_eq!(bodies.len(), 1);
    bodies.remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_with_selectors_is_reviewed_with_their_requirements() {
    let body = review_body(
        "GET",
        &format!("{NS}?labelSelector=app%3Dweb%2Ctier+in+(front%2Cback)%2C!legacy&fieldSelector=metadata.name!%3Dold&limit=500"),
        &alice(),
    )
    .await;
    assert_eq!(
        body,
        alice_spec(json!({"resourceAttributes": {
            "namespace": "team-a", "verb": "list", "group": "ark.mckinsey.com",
            "version": "v1alpha1", "resource": "agents",
            "fieldSelector": {"requirements": [
                {"key": "metadata.name", "operator": "NotIn", "values": ["old"]}
            ]},
            "labelSelector": {"requirements": [
                {"key": "app", "operator": "In", "values": ["web"]},
                {"key": "legacy", "operator": "DoesNotExist"},
                {"key": "tier", "operator": "In", "values": ["back", "front"]}
            ]}
        }}))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_get_is_reviewed_with_its_name() {
    let body = review_body("GET", &format!("{NS}/helper"), &alice()).await;
    assert_eq!(
        body,
        alice_spec(json!({"resourceAttributes": {
            "namespace": "team-a", "verb": "get", "group": "ark.mckinsey.com",
            "version": "v1alpha1", "resource": "agents", "name": "helper"
        }}))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_patch_is_reviewed_on_the_status_subresource() {
    let body = review_body("PATCH", &format!("{NS}/helper/status"), &alice()).await;
    assert_eq!(
        body,
        alice_spec(json!({"resourceAttributes": {
            "namespace": "team-a", "verb": "patch", "group": "ark.mckinsey.com",
            "version": "v1alpha1", "resource": "agents", "subresource": "status",
            "name": "helper"
        }}))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_is_reviewed_as_watch_with_its_selectors() {
    let body = review_body(
        "GET",
        &format!(
            "{NS}?watch=true&resourceVersion=10&allowWatchBookmarks=true&labelSelector=app%3Dweb"
        ),
        &alice(),
    )
    .await;
    assert_eq!(
        body,
        alice_spec(json!({"resourceAttributes": {
            "namespace": "team-a", "verb": "watch", "group": "ark.mckinsey.com",
            "version": "v1alpha1", "resource": "agents",
            "labelSelector": {"requirements": [
                {"key": "app", "operator": "In", "values": ["web"]}
            ]}
        }}))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_is_reviewed_as_a_non_resource_path() {
    let body = review_body("GET", "/apis/ark.mckinsey.com/v1alpha1", &alice()).await;
    assert_eq!(
        body,
        alice_spec(json!({"nonResourceAttributes": {
            "path": "/apis/ark.mckinsey.com/v1alpha1", "verb": "get"
        }}))
    );
}

// --- Decisions and their cache ---

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denials_and_no_opinions_carry_their_reason_into_the_forbidden_message() {
    let s = KubeStandin::start().await;
    s.set_decision(|spec| {
        match spec
            .resource_attributes
            .as_ref()
            .and_then(|r| r.verb.as_deref())
        {
            Some("delete") => deny("deletes are frozen"),
            _ => no_opinion("no RBAC policy matched"),
        }
    });
    let api = connect(&config(&s)).await;
    let get = attrs("GET", &format!("{NS}/x"));
    let d = api.access.authorize(&get, &alice()).await.unwrap();
    assert_eq!(
        d,
        Decision::NoOpinion {
            reason: "no RBAC policy matched".into()
        }
    );
    assert!(
        !d.is_allowed(),
        "no opinion is a deny for a delegating server"
    );
    assert_eq!(
        forbidden(&get, &alice(), d.reason()).message,
        "agents.ark.mckinsey.com \"x\" is forbidden: User \"alice\" cannot get resource \"agents\" in API group \"ark.mckinsey.com\" in the namespace \"team-a\": no RBAC policy matched"
    );
    let d = api
        .access
        .authorize(&attrs("DELETE", &format!("{NS}/x")), &alice())
        .await
        .unwrap();
    assert_eq!(
        d,
        Decision::Denied {
            reason: "deletes are frozen".into()
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_and_denied_answers_are_cached_for_their_own_ttls() {
    let s = KubeStandin::start().await;
    s.set_decision(|spec| {
        if spec.user.as_deref() == Some("alice") {
            allow("RBAC: allowed by RoleBinding \"devs\"")
        } else {
            no_opinion("")
        }
    });
    let api = connect(&KubeApiConfig {
        authorized_ttl: Duration::from_secs(30),
        unauthorized_ttl: Duration::from_millis(300),
        ..config(&s)
    })
    .await;
    let get = attrs("GET", &format!("{NS}/x"));
    let bob = UserInfo {
        name: "bob".into(),
        ..Default::default()
    };
    for _ in 0..2 {
        assert!(api
            .access
            .authorize(&get, &alice())
            .await
            .unwrap()
            .is_allowed());
        assert!(!api.access.authorize(&get, &bob).await.unwrap().is_allowed());
    }
    assert_eq!(
        s.access_reviews().len(),
        2,
        "one review per user, then the cache"
    );

    // Everything is now denied, but alice's allow is cached for 30 s; bob's denial
    // expires first and is asked again.
    s.set_decision(|_| deny("revoked"));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(api
        .access
        .authorize(&get, &alice())
        .await
        .unwrap()
        .is_allowed());
    assert_eq!(
        api.access.authorize(&get, &bob).await.unwrap(),
        Decision::Denied {
            reason: "revoked".into()
        }
    );
    assert_eq!(s.access_reviews().len(), 3);
    let users: Vec<String> = s
        .access_reviews()
        .iter()
        .map(|b| b["spec"]["user"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(users, vec!["alice", "bob", "bob"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_different_selector_is_a_different_review() {
    let s = KubeStandin::start().await;
    let api = connect(&config(&s)).await;
    for selector in ["app%3Da", "app%3Db", "app%3Da"] {
        api.access
            .authorize(
                &attrs("GET", &format!("{NS}?labelSelector={selector}")),
                &alice(),
            )
            .await
            .unwrap();
    }
    assert_eq!(s.access_reviews().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overloaded_kube_apiserver_is_retried_with_backoff() {
    let s = KubeStandin::start().await;
    s.fail_next_access_reviews(2);
    let api = connect(&config(&s)).await;
    let d = api
        .access
        .authorize(&attrs("GET", NS), &alice())
        .await
        .unwrap();
    assert!(d.is_allowed());
    assert_eq!(s.access_reviews().len(), 3);

    // Past the five attempts kube makes, the last error stands, and nothing is allowed.
    s.fail_next_access_reviews(10);
    let e = api
        .access
        .authorize(&attrs("GET", &format!("{NS}/y")), &alice())
        .await
        .unwrap_err();
    assert!(matches!(e, KubeApiError::Failed { code: 500, .. }), "{e}");
    assert_eq!(s.access_reviews().len(), 3 + 5);
}

// --- Failing closed ---

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_kube_apiserver_gives_typed_errors_never_an_allow() {
    let mut s = KubeStandin::start().await;
    s.set_token("t", &alice());
    let api = connect(&config(&s)).await;
    s.stop().await;

    let started = std::time::Instant::now();
    let e = api
        .access
        .authorize(&attrs("GET", &format!("{NS}/x")), &alice())
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            KubeApiError::Unreachable {
                endpoint: Endpoint::SubjectAccessReview,
                ..
            }
        ),
        "{e}"
    );
    let status = e.to_api_error();
    assert_eq!(
        (status.code, status.reason.as_str()),
        (500, "InternalError")
    );

    let e = api.tokens.review_token("t").await.unwrap_err();
    assert!(
        matches!(
            e,
            KubeApiError::Unreachable {
                endpoint: Endpoint::TokenReview,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(e.to_api_error().code, 401);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a refused connection is not retried"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_the_kube_apiserver_rejects_are_named_by_their_flag() {
    let s = KubeStandin::start().await;
    let text = std::fs::read_to_string(&s.kubeconfig).unwrap();
    assert!(text.contains(&format!("server: {}", s.url)));
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("kubeconfig");
    std::fs::write(&wrong, text.replace(kube_standin::SERVER_TOKEN, "wrong")).unwrap();
    let api = connect(&KubeApiConfig {
        authorization_kubeconfig: Some(wrong),
        ..config(&s)
    })
    .await;
    let e = api
        .access
        .authorize(&attrs("GET", NS), &alice())
        .await
        .unwrap_err();
    assert!(matches!(e, KubeApiError::Unauthorized { .. }), "{e}");
    assert!(e.to_string().contains("--authorization-kubeconfig"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_kubeconfig_outside_a_cluster_the_error_names_the_flag() {
    let e = match KubeApi::connect(&KubeApiConfig::default()).await {
        Err(e) => e,
        Ok(_) => panic!("connected without a kubeconfig or a cluster"),
    };
    assert!(
        matches!(
            e,
            KubeApiError::Config {
                flag: "--authentication-kubeconfig",
                ..
            }
        ),
        "{e}"
    );
}

// --- The authentication ConfigMap ---

/// A CA certificate in PEM, made for the test.
fn ca(cn: &str) -> String {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    params
        .self_signed(&rcgen::KeyPair::generate().unwrap())
        .unwrap()
        .pem()
}

fn set(s: &KubeStandin, client_ca: &str, front_proxy_ca: &str) {
    let data = kube_standin::authentication_data(client_ca, front_proxy_ca);
    let pairs: Vec<(&str, &str)> = data.iter().map(|(k, v)| (*k, v.as_str())).collect();
    s.set_config_map(&pairs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configmap_is_read_into_every_setting() {
    let s = KubeStandin::start().await;
    let (client_ca, front_ca) = (ca("client-ca"), ca("front-proxy-ca"));
    set(&s, &client_ca, &front_ca);
    let api = connect(&config(&s)).await;
    let watch = api.watch_authentication_config().await.unwrap();
    let c = watch.current();
    assert_eq!(
        c.client_ca.as_ref().map(|b| b.pem()),
        Some(client_ca.as_str())
    );
    let rh = &c.request_header;
    assert_eq!(
        rh.client_ca.as_ref().map(|b| b.pem()),
        Some(front_ca.as_str())
    );
    assert_eq!(rh.allowed_names, vec!["front-proxy-client"]);
    assert_eq!(rh.username_headers, vec!["X-Remote-User"]);
    assert_eq!(rh.uid_headers, vec!["X-Remote-Uid"]);
    assert_eq!(rh.group_headers, vec!["X-Remote-Group"]);
    assert_eq!(rh.extra_headers_prefix, vec!["X-Remote-Extra-"]);
    assert_eq!(
        s.config_map_requests().first().map(String::as_str),
        Some("GET /api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication?")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_ca_is_seen_without_a_restart() {
    let s = KubeStandin::start().await;
    set(&s, &ca("client-ca"), &ca("front-proxy-ca"));
    let api = connect(&config(&s)).await;
    let watch = api.watch_authentication_config().await.unwrap();
    let rotated = ca("front-proxy-ca-2");
    // Give the task time to list and open its watch, then rotate.
    wait_for_request(&s, "watch=true").await;
    set(&s, &ca("client-ca"), &rotated);
    let mut rx = watch.subscribe();
    let seen = tokio::time::timeout(
        Duration::from_secs(10),
        rx.wait_for(|c| {
            c.request_header.client_ca.as_ref().map(|b| b.pem()) == Some(rotated.as_str())
        }),
    )
    .await;
    assert!(seen.is_ok(), "the rotation was not seen within 10 s");
    // kube's informer: list and watch the one object by field selector.
    let requests = s.config_map_requests();
    let selector = "fieldSelector=metadata.name%3Dextension-apiserver-authentication";
    assert!(
        requests.iter().any(
            |r| r.starts_with("GET /api/v1/namespaces/kube-system/configmaps?")
                && r.contains(selector)
                && !r.contains("watch")
        ),
        "{requests:?}"
    );
    assert!(
        requests
            .iter()
            .any(|r| r.contains("watch=true") && r.contains(selector)),
        "{requests:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configmap_is_re_read_at_the_resync_interval() {
    let s = KubeStandin::start().await;
    set(&s, &ca("client-ca"), &ca("front-proxy-ca"));
    let api = connect(&KubeApiConfig {
        config_map_resync: Duration::from_secs(1),
        ..config(&s)
    })
    .await;
    let _watch = api.watch_authentication_config().await.unwrap();
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let lists = s
        .config_map_requests()
        .iter()
        .filter(|r| r.contains("/configmaps?") && !r.contains("watch=true"))
        .count();
    assert!(
        lists >= 2,
        "one list per watch timeout: {:?}",
        s.config_map_requests()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configmap_created_later_is_picked_up() {
    let s = KubeStandin::start().await;
    let api = connect(&config(&s)).await;
    let watch = api.watch_authentication_config().await.unwrap();
    assert!(watch.current().client_ca.is_none());
    wait_for_request(&s, "watch=true").await;
    let client_ca = ca("client-ca");
    set(&s, &client_ca, &ca("front-proxy-ca"));
    let mut rx = watch.subscribe();
    let seen = tokio::time::timeout(
        Duration::from_secs(10),
        rx.wait_for(|c| c.client_ca.as_ref().map(|b| b.pem()) == Some(client_ca.as_str())),
    )
    .await;
    assert!(seen.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_reader_role_binding_the_error_says_which_binding_is_missing() {
    let s = KubeStandin::start().await;
    set(&s, &ca("client-ca"), &ca("front-proxy-ca"));
    s.forbid_config_map(true);
    let api = connect(&config(&s)).await;
    let e = match api.watch_authentication_config().await {
        Err(e) => e,
        Ok(_) => panic!("read a ConfigMap it may not read"),
    };
    assert!(
        matches!(
            e,
            KubeApiError::Forbidden {
                endpoint: Endpoint::AuthenticationConfigMap,
                ..
            }
        ),
        "{e}"
    );
    let text = e.to_string();
    assert!(
        text.contains(&format!(
            "configmaps \"extension-apiserver-authentication\" is forbidden: User \"{}\" cannot get resource \"configmaps\" in API group \"\" in the namespace \"kube-system\"",
            kube_standin::SERVER_USER
        )),
        "kube's own message is kept: {text}"
    );
    assert!(
        text.contains("Role extension-apiserver-authentication-reader in kube-system, through a RoleBinding there"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_kube_apiserver_at_start_is_an_error() {
    let mut s = KubeStandin::start().await;
    let api = connect(&config(&s)).await;
    s.stop().await;
    assert!(matches!(
        api.watch_authentication_config().await,
        Err(KubeApiError::Unreachable {
            endpoint: Endpoint::AuthenticationConfigMap,
            ..
        })
    ));
}

async fn wait_for_request(s: &KubeStandin, needle: &str) {
    for _ in 0..200 {
        if s.config_map_requests().iter().any(|r| r.contains(needle)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no request with {needle}: {:?}", s.config_map_requests());
}
