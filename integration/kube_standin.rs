//! A stand-in for the kube-apiserver, for tests: the one part of the system that cannot
//! run here. It is a small HTTPS server in the test process that speaks exactly the
//! kube-apiserver's API for what this server asks it:
//!
//! - `GET`, list and watch of the ConfigMap `kube-system/extension-apiserver-authentication`
//!   (403 with kube's wording when the test takes the RBAC away, 404 when it is absent);
//! - `POST /apis/authentication.k8s.io/v1/tokenreviews`, answered from the tokens the test
//!   sets;
//! - `POST /apis/authorization.k8s.io/v1/subjectaccessreviews`, answered by the decision
//!   function the test sets.
//!
//! Every review body is recorded as received, so tests can assert what was asked. Callers
//! must send the bearer token of the kubeconfig it writes, as a service account would; it
//! can be stopped to test an unreachable kube-apiserver.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use bytes::Bytes;
use futures_util::stream;
use k8s_openapi::api::authentication::v1::{
    TokenReview, TokenReviewStatus, UserInfo as ReviewUser,
};
use k8s_openapi::api::authorization::v1::{
    SubjectAccessReview, SubjectAccessReviewSpec, SubjectAccessReviewStatus,
};
use k8s_openapi::api::core::v1::ConfigMap;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use serde_json::{json, Value};
use tokio::sync::broadcast;

use ark_apiserver::auth::user::UserInfo;
use ark_apiserver::k8s::query::Query;

/// The token the kubeconfig carries: the server's service account.
pub const SERVER_TOKEN: &str = "stand-in-service-account-token";
/// The user that token is, in kube's RBAC messages.
pub const SERVER_USER: &str = "system:serviceaccount:ark-system:ark-apiserver";

const CM_NAMESPACE: &str = "kube-system";
const CM_NAME: &str = "extension-apiserver-authentication";

type Decide = dyn Fn(&SubjectAccessReviewSpec) -> SubjectAccessReviewStatus + Send + Sync;

/// One request the stand-in received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub query: String,
    pub body: Option<Value>,
}

struct State {
    tokens: Mutex<HashMap<String, TokenReviewStatus>>,
    decide: Mutex<Arc<Decide>>,
    config_map: Mutex<Option<ConfigMap>>,
    resource_version: AtomicU64,
    config_map_forbidden: AtomicBool,
    access_review_failures: AtomicU32,
    received: Mutex<Vec<Received>>,
    changes: broadcast::Sender<(&'static str, ConfigMap)>,
}

pub struct KubeStandin {
    /// `https://127.0.0.1:port`.
    pub url: String,
    /// A kubeconfig for this stand-in: its URL, its CA and [`SERVER_TOKEN`].
    pub kubeconfig: PathBuf,
    state: Arc<State>,
    handle: Option<ServerHandle>,
    _dir: tempfile::TempDir,
}

impl KubeStandin {
    /// Starts it with no tokens, every review allowed and no ConfigMap.
    pub async fn start() -> KubeStandin {
        // No process-wide rustls provider is installed here: the client under test must
        // choose one itself (kubeapi::connect::ensure_crypto_provider).
        let (ca_pem, tls) = server_tls();
        let (changes, _) = broadcast::channel(64);
        let state = Arc::new(State {
            tokens: Mutex::new(HashMap::new()),
            decide: Mutex::new(Arc::new(|_: &SubjectAccessReviewSpec| allow(""))),
            config_map: Mutex::new(None),
            resource_version: AtomicU64::new(100),
            config_map_forbidden: AtomicBool::new(false),
            access_review_failures: AtomicU32::new(0),
            received: Mutex::new(Vec::new()),
            changes,
        });
        let data = web::Data::from(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(1 << 20))
                .default_service(web::to(handle))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(0)
        .bind_rustls_0_23("127.0.0.1:0", tls)
        .expect("bind the stand-in");
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        let dir = tempfile::tempdir().unwrap();
        let url = format!("https://{addr}");
        let ca_path = dir.path().join("ca.crt");
        std::fs::write(&ca_path, ca_pem).unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: standin\n  cluster:\n    server: {url}\n    certificate-authority: {}\nusers:\n- name: ark-apiserver\n  user:\n    token: {SERVER_TOKEN}\ncontexts:\n- name: standin\n  context:\n    cluster: standin\n    user: ark-apiserver\ncurrent-context: standin\n",
                ca_path.display()
            ),
        )
        .unwrap();
        KubeStandin {
            url,
            kubeconfig,
            state,
            handle: Some(handle),
            _dir: dir,
        }
    }

    /// `token` authenticates as `user`.
    pub fn set_token(&self, token: &str, user: &UserInfo) {
        let status = TokenReviewStatus {
            authenticated: Some(true),
            user: Some(ReviewUser {
                username: Some(user.name.clone()),
                uid: (!user.uid.is_empty()).then(|| user.uid.clone()),
                groups: (!user.groups.is_empty()).then(|| user.groups.clone()),
                extra: (!user.extra.is_empty()).then(|| user.extra.clone()),
            }),
            ..Default::default()
        };
        lock(&self.state.tokens).insert(token.into(), status);
    }

    /// `token` fails with `error`, as a forged or expired service-account JWT does.
    pub fn set_token_error(&self, token: &str, error: &str) {
        let status = TokenReviewStatus {
            user: Some(ReviewUser::default()),
            error: Some(error.into()),
            ..Default::default()
        };
        lock(&self.state.tokens).insert(token.into(), status);
    }

    /// Every SubjectAccessReview is answered by `decide`.
    pub fn set_decision(
        &self,
        decide: impl Fn(&SubjectAccessReviewSpec) -> SubjectAccessReviewStatus + Send + Sync + 'static,
    ) {
        *lock(&self.state.decide) = Arc::new(decide);
    }

    /// The next `n` SubjectAccessReviews get a 500, as an overloaded kube-apiserver answers.
    pub fn fail_next_access_reviews(&self, n: u32) {
        self.state.access_review_failures.store(n, Ordering::SeqCst);
    }

    /// Creates or replaces the ConfigMap's data; open watches see the change.
    pub fn set_config_map(&self, data: &[(&str, &str)]) {
        let rv = self.state.resource_version.fetch_add(1, Ordering::SeqCst) + 1;
        let cm: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": CM_NAME, "namespace": CM_NAMESPACE, "uid": "cm-uid",
                         "resourceVersion": rv.to_string()},
            "data": data.iter().map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
                .collect::<serde_json::Map<_, _>>(),
        }))
        .unwrap();
        let mut slot = lock(&self.state.config_map);
        let kind = if slot.is_some() { "MODIFIED" } else { "ADDED" };
        *slot = Some(cm.clone());
        let _ = self.state.changes.send((kind, cm));
    }

    /// Whether the server's service account may read the ConfigMap (its RoleBinding).
    pub fn forbid_config_map(&self, forbidden: bool) {
        self.state
            .config_map_forbidden
            .store(forbidden, Ordering::SeqCst);
    }

    /// Every request received, in order.
    pub fn received(&self) -> Vec<Received> {
        lock(&self.state.received).clone()
    }

    /// The bodies of the TokenReviews received, as sent.
    pub fn token_reviews(&self) -> Vec<Value> {
        self.bodies("/apis/authentication.k8s.io/v1/tokenreviews")
    }

    /// The bodies of the SubjectAccessReviews received, as sent.
    pub fn access_reviews(&self) -> Vec<Value> {
        self.bodies("/apis/authorization.k8s.io/v1/subjectaccessreviews")
    }

    /// Requests for the ConfigMap (get, list, watch), as `METHOD path?query`.
    pub fn config_map_requests(&self) -> Vec<String> {
        self.received()
            .into_iter()
            .filter(|r| r.path.contains("/configmaps"))
            .map(|r| format!("{} {}?{}", r.method, r.path, r.query))
            .collect()
    }

    fn bodies(&self, path: &str) -> Vec<Value> {
        self.received()
            .into_iter()
            .filter(|r| r.path == path)
            .filter_map(|r| r.body)
            .collect()
    }

    /// Stops serving: connections are refused from now on.
    pub async fn stop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.stop(false).await;
        }
    }
}

impl Drop for KubeStandin {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            drop(h.stop(false));
        }
    }
}

pub fn allow(reason: &str) -> SubjectAccessReviewStatus {
    SubjectAccessReviewStatus {
        allowed: true,
        reason: (!reason.is_empty()).then(|| reason.to_string()),
        ..Default::default()
    }
}

pub fn deny(reason: &str) -> SubjectAccessReviewStatus {
    SubjectAccessReviewStatus {
        allowed: false,
        denied: Some(true),
        reason: (!reason.is_empty()).then(|| reason.to_string()),
        ..Default::default()
    }
}

pub fn no_opinion(reason: &str) -> SubjectAccessReviewStatus {
    SubjectAccessReviewStatus {
        allowed: false,
        reason: (!reason.is_empty()).then(|| reason.to_string()),
        ..Default::default()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A CA and a certificate for 127.0.0.1 and localhost signed by it.
fn server_tls() -> (String, rustls::ServerConfig) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "stand-in kube-apiserver CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], der)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    (ca.pem(), config)
}

fn status(code: u16, reason: &str, message: &str, details: Value) -> HttpResponse {
    let mut body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason,
    });
    if !details.is_null() {
        body["details"] = details;
    }
    body["code"] = json!(code);
    HttpResponse::build(actix_web::http::StatusCode::from_u16(code).unwrap())
        .content_type("application/json")
        .body(body.to_string())
}

async fn handle(req: HttpRequest, body: Bytes, state: web::Data<State>) -> HttpResponse {
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    lock(&state.received).push(Received {
        method: req.method().to_string(),
        path: req.path().to_string(),
        query: req.query_string().to_string(),
        body: parsed.clone(),
    });
    let bearer = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if bearer != Some(SERVER_TOKEN) {
        return status(401, "Unauthorized", "Unauthorized", Value::Null);
    }
    let path = req.path();
    let cm_collection = format!("/api/v1/namespaces/{CM_NAMESPACE}/configmaps");
    match (req.method().as_str(), path) {
        ("POST", "/apis/authentication.k8s.io/v1/tokenreviews") => token_review(parsed, &state),
        ("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews") => {
            access_review(parsed, &state)
        }
        ("GET", p) if p == format!("{cm_collection}/{CM_NAME}") => get_config_map(&state),
        ("GET", p) if p == cm_collection => {
            let query = Query::parse(req.query_string()).unwrap_or_default();
            if query.bool("watch").unwrap_or(false) {
                watch_config_map(&state, &query)
            } else {
                list_config_map(&state)
            }
        }
        _ => status(
            404,
            "NotFound",
            "the server could not find the requested resource",
            Value::Null,
        ),
    }
}

fn token_review(body: Option<Value>, state: &State) -> HttpResponse {
    let Some(mut review) = body.and_then(|b| serde_json::from_value::<TokenReview>(b).ok()) else {
        return status(
            400,
            "BadRequest",
            "the body is not a TokenReview",
            Value::Null,
        );
    };
    let token = review.spec.token.clone().unwrap_or_default();
    // An opaque token no authenticator claims: not authenticated, and no error (kube's
    // union authenticator reports none for a token that is not even a JWT).
    let answer = lock(&state.tokens)
        .get(&token)
        .cloned()
        .unwrap_or(TokenReviewStatus {
            user: Some(ReviewUser::default()),
            ..Default::default()
        });
    review.status = Some(answer);
    HttpResponse::Created()
        .content_type("application/json")
        .body(serde_json::to_string(&review).unwrap())
}

fn access_review(body: Option<Value>, state: &State) -> HttpResponse {
    let Some(mut review) = body.and_then(|b| serde_json::from_value::<SubjectAccessReview>(b).ok())
    else {
        return status(
            400,
            "BadRequest",
            "the body is not a SubjectAccessReview",
            Value::Null,
        );
    };
    let failing =
        state
            .access_review_failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    if failing.is_ok() {
        return status(
            500,
            "InternalError",
            "Internal error occurred: etcdserver: request timed out",
            Value::Null,
        );
    }
    let decide = lock(&state.decide).clone();
    review.status = Some(decide(&review.spec));
    HttpResponse::Created()
        .content_type("application/json")
        .body(serde_json::to_string(&review).unwrap())
}

/// kube-apiserver's 403 for the server's service account without the Role binding.
fn config_map_forbidden(verb: &str) -> HttpResponse {
    status(
        403,
        "Forbidden",
        &format!(
            "configmaps \"{CM_NAME}\" is forbidden: User \"{SERVER_USER}\" cannot {verb} resource \"configmaps\" in API group \"\" in the namespace \"{CM_NAMESPACE}\""
        ),
        json!({"name": CM_NAME, "kind": "configmaps"}),
    )
}

fn get_config_map(state: &State) -> HttpResponse {
    if state.config_map_forbidden.load(Ordering::SeqCst) {
        return config_map_forbidden("get");
    }
    match lock(&state.config_map).clone() {
        Some(cm) => HttpResponse::Ok()
            .content_type("application/json")
            .body(object_json(&cm).to_string()),
        None => status(
            404,
            "NotFound",
            &format!("configmaps \"{CM_NAME}\" not found"),
            json!({"name": CM_NAME, "kind": "configmaps"}),
        ),
    }
}

fn list_config_map(state: &State) -> HttpResponse {
    if state.config_map_forbidden.load(Ordering::SeqCst) {
        return config_map_forbidden("list");
    }
    let items: Vec<Value> = lock(&state.config_map).iter().map(object_json).collect();
    let rv = state.resource_version.load(Ordering::SeqCst);
    HttpResponse::Ok().content_type("application/json").body(
        json!({"kind": "ConfigMapList", "apiVersion": "v1",
               "metadata": {"resourceVersion": rv.to_string()}, "items": items})
        .to_string(),
    )
}

/// Newline-delimited watch events until `timeoutSeconds`. A watch from a resourceVersion
/// older than the ConfigMap's starts with the ConfigMap as it is now (the stand-in keeps no
/// history; kube would replay each change, the last of which is the same object).
fn watch_config_map(state: &State, query: &Query) -> HttpResponse {
    if state.config_map_forbidden.load(Ordering::SeqCst) {
        return config_map_forbidden("watch");
    }
    let from: u64 = query
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let timeout = Duration::from_secs(
        query
            .get("timeoutSeconds")
            .and_then(|v| v.parse().ok())
            .unwrap_or(60),
    );
    let receiver = state.changes.subscribe();
    let mut first = Vec::new();
    if let Some(cm) = lock(&state.config_map).clone() {
        let rv: u64 = cm
            .metadata
            .resource_version
            .as_deref()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if rv > from {
            first.push(event("MODIFIED", &cm));
        }
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let events = stream::unfold(
        (first, receiver),
        move |(mut queued, mut receiver)| async move {
            if let Some(line) = queued.pop() {
                return Some((Ok::<_, actix_web::Error>(line), (queued, receiver)));
            }
            loop {
                match tokio::time::timeout_at(deadline, receiver.recv()).await {
                    Ok(Ok((kind, cm))) => return Some((Ok(event(kind, &cm)), (queued, receiver))),
                    Ok(Err(broadcast::error::RecvError::Lagged(_))) => continue,
                    Ok(Err(broadcast::error::RecvError::Closed)) | Err(_) => return None,
                }
            }
        },
    );
    HttpResponse::Ok()
        .content_type("application/json")
        .streaming(events)
}

fn event(kind: &str, cm: &ConfigMap) -> Bytes {
    let mut line = json!({"type": kind, "object": object_json(cm)}).to_string();
    line.push('\n');
    Bytes::from(line)
}

/// A ConfigMap as the kube-apiserver writes it: with apiVersion and kind.
fn object_json(cm: &ConfigMap) -> Value {
    serde_json::to_value(cm).unwrap()
}

/// The ConfigMap data a kube-apiserver writes, with the given CAs.
pub fn authentication_data(
    client_ca: &str,
    requestheader_ca: &str,
) -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        ("client-ca-file", client_ca.to_string()),
        ("requestheader-client-ca-file", requestheader_ca.to_string()),
        (
            "requestheader-allowed-names",
            r#"["front-proxy-client"]"#.to_string(),
        ),
        (
            "requestheader-username-headers",
            r#"["X-Remote-User"]"#.to_string(),
        ),
        (
            "requestheader-uid-headers",
            r#"["X-Remote-Uid"]"#.to_string(),
        ),
        (
            "requestheader-group-headers",
            r#"["X-Remote-Group"]"#.to_string(),
        ),
        (
            "requestheader-extra-headers-prefix",
            r#"["X-Remote-Extra-"]"#.to_string(),
        ),
    ])
}
