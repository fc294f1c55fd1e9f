//! actix-web handlers: the only module that knows HTTP status codes, headers and content
//! types. Everything below it works on JSON values and [`ApiError`]s.

pub mod audit;
pub mod guard;
pub mod negotiate;
pub mod replication;
pub mod resource;
pub mod watch;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::Value;

use crate::k8s::discovery::Discovery;
use crate::k8s::openapi::{self, OpenApiResource};
use crate::k8s::openapi_proto;
use crate::k8s::resource::{Resources, GROUP};
use crate::k8s::status::ApiError;
use crate::registry::Registry;

/// Readiness inputs that are not a live check.
#[derive(Debug, Default)]
pub struct Readiness {
    /// Set once migrations are known to be in place.
    pub schema_ready: AtomicBool,
}

pub struct AppState {
    pub resources: Arc<Resources>,
    pub registry: Registry,
    pub discovery: Discovery,
    pub openapi_v2: OpenApiV2,
    pub openapi_v3_index: Value,
    /// (group/version path, document)
    pub openapi_v3: Vec<(String, Value)>,
    pub max_body_bytes: usize,
    pub readiness: Arc<Readiness>,
    pub stream: Arc<crate::cdc::status::StreamStatus>,
    pub slot_name: String,
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// Turns true when the server stops: open watches end.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// Delegated mode: whether the authentication ConfigMap's CAs are in force.
    pub auth_ready: Option<Arc<AtomicBool>>,
    /// This replica: its role, and the relay log the internal stream serves.
    pub replica: Option<Arc<crate::replica::Replica>>,
}

impl AppState {
    pub fn new(
        resources: Arc<Resources>,
        registry: Registry,
        max_body_bytes: usize,
        readiness: Arc<Readiness>,
        stream: Arc<crate::cdc::status::StreamStatus>,
        slot_name: String,
        metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    ) -> Self {
        let discovery = Discovery::build(&resources);
        let oa: Vec<OpenApiResource<'_>> = resources
            .all()
            .iter()
            .map(|d| OpenApiResource::from(d.as_ref()))
            .collect();
        let openapi_v2 = OpenApiV2::new(&openapi::openapi_v2(&oa));
        let openapi_v3_index = openapi::openapi_v3_index(&oa);
        let openapi_v3 = resources
            .versions()
            .into_iter()
            .filter_map(|v| {
                openapi::openapi_v3_group_version(&oa, GROUP, &v)
                    .map(|d| (format!("apis/{GROUP}/{v}"), d))
            })
            .collect();
        AppState {
            resources,
            registry,
            discovery,
            openapi_v2,
            openapi_v3_index,
            openapi_v3,
            max_body_bytes,
            readiness,
            stream,
            slot_name,
            metrics,
            shutdown: tokio::sync::watch::channel(false).1,
            auth_ready: None,
            replica: None,
        }
    }
}

/// `/openapi/v2` in both of its forms, encoded once: the document only changes with the
/// definitions, which are fixed at start.
pub struct OpenApiV2 {
    pub json: bytes::Bytes,
    pub protobuf: bytes::Bytes,
    /// kube-openapi's ETag: the SHA-512 of the JSON form, shared by the protobuf form (the
    /// response varies by Accept).
    pub etag: String,
}

impl OpenApiV2 {
    pub fn new(doc: &Value) -> Self {
        let encoded = openapi_proto::encode_document(doc);
        if !encoded.skipped.is_empty() {
            tracing::warn!(
                keys = ?encoded.skipped,
                "the protobuf form of /openapi/v2 leaves out keys its messages have no field for"
            );
        }
        OpenApiV2 {
            json: doc.to_string().into(),
            protobuf: encoded.bytes.into(),
            etag: format!("\"{}\"", openapi::content_hash(doc)),
        }
    }
}

/// A Status response for an error.
pub fn error_response(e: &ApiError) -> HttpResponse {
    let status = StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut b = HttpResponse::build(status);
    b.insert_header((header::CONTENT_TYPE, "application/json"));
    if let Some(r) = e.details.as_ref().and_then(|d| d.retry_after_seconds) {
        b.insert_header((header::RETRY_AFTER, r.to_string()));
    }
    b.body(e.to_status().to_string())
}

fn json(v: &Value) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "application/json"))
        .body(v.to_string())
}

/// Every route. The caller adds middleware and the body limit.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route(
        crate::replica::follow::STREAM_PATH,
        web::get().to(replication::stream),
    )
    .route("/healthz", web::get().to(readyz))
    .route("/livez", web::get().to(livez))
    .route("/readyz", web::get().to(readyz))
    .route("/metrics", web::get().to(metrics))
    .route("/version", web::get().to(version))
    .route("/version/", web::get().to(version))
    .route("/api/v1/namespaces/{name}", web::get().to(namespace))
    .route("/api/v1", web::get().to(core_v1))
    .route("/api/v1/", web::get().to(core_v1))
    .route("/api", web::get().to(api_versions))
    .route("/api/", web::get().to(api_versions))
    .route("/apis", web::get().to(apis))
    .route("/apis/", web::get().to(apis))
    .route("/openapi/v2", web::get().to(openapi_v2))
    .route("/openapi/v3", web::get().to(openapi_v3_index))
    .route("/openapi/v3/{path:.*}", web::get().to(openapi_v3))
    .route(&format!("/apis/{GROUP}"), web::get().to(group))
    .route(&format!("/apis/{GROUP}/"), web::get().to(group))
    .route(
        &format!("/apis/{GROUP}/{{version}}"),
        web::get().to(group_version),
    )
    .route(
        &format!("/apis/{GROUP}/{{version}}/"),
        web::get().to(group_version),
    )
    .route("/apis/{tail:.*}", web::to(resource::handle))
    .default_service(web::to(|| async {
        error_response(&resource::not_found_page())
    }));
}

async fn livez() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body("ok")
}

/// Ready when the schema is in place and the database answers within a second.
async fn readyz(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    // `?verbose` (kube's healthz takes the bare key); `verbose=false` turns it off.
    let verbose = crate::k8s::query::Query::parse(req.query_string())
        .ok()
        .and_then(|q| q.bool("verbose"))
        .unwrap_or(false);
    let mut checks: Vec<(&str, Result<(), String>)> = Vec::new();
    checks.push((
        "schema",
        if state.readiness.schema_ready.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err("migrations are not applied yet".into())
        },
    ));
    checks.push(("change-stream", state.stream.check()));
    if let Some(ready) = &state.auth_ready {
        checks.push((
            "authentication",
            if ready.load(Ordering::Acquire) {
                Ok(())
            } else {
                Err("the CAs of configmap kube-system/extension-apiserver-authentication are not loaded yet".into())
            },
        ));
    }
    let ping = tokio::time::timeout(Duration::from_secs(1), state.registry.store().ping()).await;
    checks.push((
        "database",
        match ping {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("{e}")),
            Err(_) => Err("PostgreSQL did not answer within 1s".into()),
        },
    ));
    let ok = checks.iter().all(|(_, r)| r.is_ok());
    let mut body = String::new();
    if verbose || !ok {
        for (name, r) in &checks {
            match r {
                Ok(()) => body.push_str(&format!("[+]{name} ok\n")),
                Err(e) => body.push_str(&format!("[-]{name} failed: {e}\n")),
            }
        }
        // Not a check (a follower is as ready as the leader): which role this replica
        // has and whom it follows, for the operator reading this.
        if let Some(r) = &state.replica {
            let id = &r.identity.id;
            body.push_str(&match r.role() {
                crate::replica::Role::Leader => {
                    format!("replica {id}: leader (consumes slot {})\n", r.slot)
                }
                crate::replica::Role::Follower { leader_id, leader } => {
                    format!("replica {id}: follower of {leader_id} at {leader}\n")
                }
                crate::replica::Role::Candidate => {
                    format!("replica {id}: candidate (neither leading nor following yet)\n")
                }
            });
        }
        body.push_str(if ok {
            "readyz check passed\n"
        } else {
            "readyz check failed\n"
        });
    } else {
        body.push_str("ok");
    }
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    HttpResponse::build(status)
        .content_type("text/plain; charset=utf-8")
        .body(body)
}

async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    crate::metrics::record_pool(state.registry.store().pool());
    crate::metrics::record_watch(state.registry.state());
    // The slot's lag as PostgreSQL reports it; a scrape never waits long for it.
    let slot = async {
        let c = state.registry.store().pool().get().await.ok()?;
        crate::cdc::slot::inspect(&c, &state.slot_name).await.ok()
    };
    if let Ok(Some(info)) = tokio::time::timeout(Duration::from_secs(1), slot).await {
        crate::metrics::record_slot(info.as_ref());
    }
    match &state.metrics {
        Some(h) => HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4")
            .body(h.render()),
        None => HttpResponse::NotFound().finish(),
    }
}

/// Version information, as every Kubernetes API server serves it.
async fn version() -> HttpResponse {
    json(&serde_json::json!({
        "major": "1",
        "minor": "35",
        "gitVersion": format!("v1.35.0+ark-apiserver-{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "",
        "buildDate": "",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
    }))
}

/// Behind the aggregator, kube-apiserver answers core paths. A kubectl pointed straight at
/// this server (dev mode, tests) looks up a namespace after a NotFound to word its error;
/// every namespace is Active here, since objects may live in any.
async fn namespace(path: web::Path<String>) -> HttpResponse {
    json(&serde_json::json!({
        "kind": "Namespace",
        "apiVersion": "v1",
        "metadata": {"name": path.into_inner()},
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    }))
}

async fn api_versions(state: web::Data<AppState>) -> HttpResponse {
    json(&state.discovery.api_versions)
}

/// Core `v1` discovery for a kubectl pointed straight at this server: kubectl maps `v1 List`
/// (the kind of every `get -o yaml` of several objects) only once discovery lists core `v1`.
/// Behind the aggregator kube-apiserver owns `/api`, so this is never seen there.
async fn core_v1(state: web::Data<AppState>) -> HttpResponse {
    json(&state.discovery.core_v1)
}

async fn apis(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|h| h.to_str().ok());
    match negotiate::aggregated_discovery(accept) {
        Some(v) => {
            let doc = if v == "v2" {
                &state.discovery.aggregated_v2
            } else {
                &state.discovery.aggregated_v2beta1
            };
            HttpResponse::Ok()
                .insert_header((
                    header::CONTENT_TYPE,
                    format!(
                        "application/json;g=apidiscovery.k8s.io;v={v};as=APIGroupDiscoveryList"
                    ),
                ))
                .insert_header((header::VARY, "Accept"))
                .body(doc.to_string())
        }
        None => HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, "application/json"))
            .insert_header((header::VARY, "Accept"))
            .body(state.discovery.group_list.to_string()),
    }
}

async fn group(state: web::Data<AppState>) -> HttpResponse {
    json(&state.discovery.group)
}

async fn group_version(path: web::Path<String>, state: web::Data<AppState>) -> HttpResponse {
    match state.discovery.resource_list(&path) {
        Some(doc) => json(doc),
        None => error_response(&resource::not_found_page()),
    }
}

/// JSON or gnostic's protobuf, by Accept, as kube-openapi serves it: kubectl's client-side
/// validation asks for the protobuf form only. Both forms carry one ETag and `Vary: Accept`,
/// and a matching If-None-Match is answered with 304.
async fn openapi_v2(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let get = |name| req.headers().get(name).and_then(|h| h.to_str().ok());
    let doc = &state.openapi_v2;
    let Some(form) = negotiate::openapi_v2_form(get(header::ACCEPT)) else {
        let mut response = error_response(&ApiError::not_acceptable(format!(
            "only application/json and {} are served for /openapi/v2",
            negotiate::OPENAPI_V2_PROTOBUF
        )));
        response
            .headers_mut()
            .insert(header::VARY, header::HeaderValue::from_static("Accept"));
        return response;
    };
    let (content_type, body) = match form {
        negotiate::OpenApiV2Form::Json => ("application/json", &doc.json),
        negotiate::OpenApiV2Form::Protobuf => (negotiate::OPENAPI_V2_PROTOBUF, &doc.protobuf),
    };
    let cached = get(header::IF_NONE_MATCH).is_some_and(|tags| {
        tags.split(',')
            .map(|t| t.trim().trim_start_matches("W/"))
            .any(|t| t == "*" || t == doc.etag)
    });
    let mut response = if cached {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header((header::ETAG, doc.etag.as_str()))
        .insert_header((header::VARY, "Accept"));
    if cached {
        return response.finish();
    }
    response
        .insert_header((header::CONTENT_TYPE, content_type))
        .body(body.clone())
}

async fn openapi_v3_index(state: web::Data<AppState>) -> HttpResponse {
    json(&state.openapi_v3_index)
}

async fn openapi_v3(path: web::Path<String>, state: web::Data<AppState>) -> HttpResponse {
    let p = path.trim_end_matches('/');
    match state.openapi_v3.iter().find(|(k, _)| k == p) {
        Some((_, doc)) => HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, "application/json"))
            // The index names each document by its hash, so a fetched document never changes.
            .insert_header((header::CACHE_CONTROL, "public, immutable"))
            .body(doc.to_string()),
        None => error_response(&resource::not_found_page()),
    }
}
