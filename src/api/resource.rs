//! The handler for every `/apis/ark.mckinsey.com/...` resource URL.

use std::time::Instant;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde_json::{Map, Value};

use super::negotiate::{self, BodyType, Encoding, Output, Shape};
use super::{error_response, AppState};
use crate::auth::attributes::{RequestAttributes, Verb};
use crate::k8s::query::Query;
use crate::k8s::request_info::{self, RequestInfo};
use crate::k8s::resource::ResourceDef;
use crate::k8s::status::{ApiError, Details, StatusReason};
use crate::k8s::table::{self, IncludeObject};
use crate::registry::{self, DeleteOptions, ListOptions, PatchKind, Subresource, WriteOptions};

/// Entry point: routes by URL and method, records metrics, and turns every error into a Status.
pub async fn handle(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let started = Instant::now();
    let path = req
        .path()
        .trim_start_matches("/apis/")
        .trim_end_matches('/')
        .to_string();
    let segments: Vec<&str> = path.split('/').collect();
    let info = request_info::parse(&segments);
    let def = info
        .as_ref()
        .and_then(|i| state.resources.get(&i.version, &i.plural))
        .cloned();
    let (verb, response) = match (info, def) {
        (Some(info), Some(def)) => {
            // A malformed query is answered 400; the verb is still named for the metrics.
            let query = Query::parse(req.query_string());
            // Computed once, by the guard; the handler and the metrics read the same value.
            let verb = req
                .extensions()
                .get::<RequestAttributes>()
                .map(|a| a.verb.clone())
                .unwrap_or_else(|| {
                    RequestAttributes::new(req.method().as_str(), req.path(), query.as_ref().ok())
                        .verb
                });
            let resp = match query {
                Err(e) => {
                    error_response(&ApiError::bad_request(format!("invalid query string: {e}")))
                }
                Ok(query) => {
                    match dispatch(&req, payload, &state, &info, &def, &query, &verb).await {
                        Ok(r) => r,
                        Err(e) => {
                            super::audit::response_status(&req, &e.to_status());
                            error_response(&e)
                        }
                    }
                }
            };
            (verb, resp)
        }
        _ => (
            Verb::NonResource(String::new()),
            error_response(&not_found_page()),
        ),
    };
    let resource = segments
        .iter()
        .skip(2)
        .find(|s| state.resources.all().iter().any(|d| d.plural == **s))
        .copied()
        .unwrap_or("");
    crate::metrics::record_request(
        verb.label(),
        resource,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

pub fn not_found_page() -> ApiError {
    ApiError::new(
        404,
        StatusReason::NotFound,
        "the server could not find the requested resource",
    )
}

fn method_not_allowed(def: &ResourceDef) -> ApiError {
    let mut e = ApiError::method_not_allowed(
        "the server does not allow this method on the requested resource",
    );
    e.details = Some(Box::new(Details {
        group: Some(def.group.clone()),
        kind: Some(def.plural.clone()),
        ..Default::default()
    }));
    e
}

async fn dispatch(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
    info: &RequestInfo,
    def: &std::sync::Arc<ResourceDef>,
    query: &Query,
    verb: &Verb,
) -> Result<HttpResponse, ApiError> {
    // Scope: namespaced kinds are addressed inside a namespace, except for cross-namespace
    // lists; cluster-scoped kinds never are.
    match (def.namespaced, &info.namespace) {
        (false, Some(_)) => return Err(not_found_page()),
        (true, None) if info.name.is_some() => return Err(not_found_page()),
        (true, None) if !matches!(verb, Verb::List | Verb::Watch) => {
            return Err(method_not_allowed(def))
        }
        _ => {}
    }
    let sub = match info.subresource.as_deref() {
        None => Subresource::Main,
        Some("status") if def.has_status => Subresource::Status,
        Some(_) => return Err(not_found_page()),
    };
    if sub == Subresource::Status && !matches!(verb, Verb::Get | Verb::Update | Verb::Patch) {
        return Err(method_not_allowed(def));
    }
    let ns = info.namespace.as_deref().unwrap_or("");
    let name = info.name.as_deref().unwrap_or("");
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|h| h.to_str().ok());
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|h| h.to_str().ok());
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|h| h.to_str().ok());
    let reg = &state.registry;
    // kube names the verb by method; only some method and URL pairs are served.
    let named = info.name.is_some();
    match verb {
        Verb::Create if named => return Err(method_not_allowed(def)),
        Verb::Update | Verb::Patch if !named => return Err(method_not_allowed(def)),
        _ => {}
    }
    match verb {
        Verb::List => {
            let out = negotiate::negotiate(accept, true)?;
            let opts = ListOptions::parse(query, def.namespaced)?;
            opts.validate()?;
            let include =
                IncludeObject::parse(query.get("includeObject")).map_err(ApiError::bad_request)?;
            let result = reg.list(def, info.namespace.as_deref(), &opts).await?;
            super::audit::response_object(req, || {
                serde_json::from_slice(&registry::list_json(def, &result)).unwrap_or_default()
            });
            Ok(render_list(def, result, out, include))
        }
        Verb::Watch => {
            let mut out = negotiate::negotiate_watch(accept)?;
            out.encoding = Encoding::Json;
            let mut opts = ListOptions::parse(query, def.namespaced)?;
            opts.validate()?;
            if let Some(name) = &info.name {
                // Watching one object is watching the collection for that name, as in kube.
                opts.fields
                    .requirements
                    .push(crate::k8s::selector::FieldRequirement {
                        field: "metadata.name".into(),
                        op: crate::k8s::selector::FieldOp::Equals,
                        value: name.clone(),
                    });
            }
            match (opts.resource_version.as_deref(), opts.send_initial_events) {
                // Without a resourceVersion the initial state reflects every write made
                // before the request, as a consistent LIST does.
                (None, _) => reg.read_point(None).await?,
                // WatchList from N: the initial state must be at least as new as N.
                (Some(rv), Some(true)) if rv != "0" => reg.read_point(Some(rv)).await?,
                _ => {}
            }
            super::watch::serve(
                reg.state(),
                def.clone(),
                info.namespace.as_deref(),
                opts,
                out,
                state.shutdown.clone(),
            )
            .await
        }
        Verb::Get => {
            let out = negotiate::negotiate(accept, false)?;
            let include =
                IncludeObject::parse(query.get("includeObject")).map_err(ApiError::bad_request)?;
            let rv = query.non_empty("resourceVersion");
            let obj = reg.get(def, ns, name, rv).await?;
            super::audit::response_object(req, || obj.value());
            Ok(match out.shape {
                // The object's JSON was serialized once when it entered the state.
                Shape::Plain if out.encoding == Encoding::Json => HttpResponse::Ok()
                    .insert_header((header::CONTENT_TYPE, out.content_type()))
                    .body(obj.json()),
                _ => render_object(def, obj.value().clone(), out, include, StatusCode::OK),
            })
        }
        Verb::Create => {
            let out = negotiate::negotiate(accept, false)?;
            let mut opts = WriteOptions::parse(query, user_agent)?;
            opts.field_validation = registry::field_validation(query, "CreateOptions")?;
            let body = read_object(payload, content_type, state.max_body_bytes).await?;
            super::audit::request_object(req, &body);
            let obj = reg.create(def, ns, body, &opts).await?;
            super::audit::response_object(req, || obj.clone());
            Ok(with_warnings(
                render_object(def, obj, out, IncludeObject::Metadata, StatusCode::CREATED),
                &opts,
            ))
        }
        Verb::Update => {
            let out = negotiate::negotiate(accept, false)?;
            let mut opts = WriteOptions::parse(query, user_agent)?;
            opts.field_validation = registry::field_validation(query, "UpdateOptions")?;
            let body = read_object(payload, content_type, state.max_body_bytes).await?;
            super::audit::request_object(req, &body);
            let obj = reg.update(def, ns, name, body, sub, &opts).await?;
            super::audit::response_object(req, || obj.clone());
            Ok(with_warnings(
                render_object(def, obj, out, IncludeObject::Metadata, StatusCode::OK),
                &opts,
            ))
        }
        Verb::Patch => {
            let out = negotiate::negotiate(accept, false)?;
            let mut opts = WriteOptions::parse(query, user_agent)?;
            opts.field_validation = registry::field_validation(query, "PatchOptions")?;
            let kind = match negotiate::body_type(content_type) {
                BodyType::JsonPatch => PatchKind::Json,
                BodyType::MergePatch => PatchKind::Merge,
                BodyType::ApplyPatch
                    if content_type.is_some_and(|c| c.contains("apply-patch+yaml")) =>
                {
                    let force = registry::patch_force(query, true)?;
                    let body = read_body(payload, state.max_body_bytes).await?;
                    super::audit::request_patch(req, &body);
                    let patch = decode_apply_body(&body)?;
                    let done = reg.apply(def, ns, name, patch, sub, &opts, force).await?;
                    super::audit::response_object(req, || done.object.clone());
                    let code = if done.created {
                        StatusCode::CREATED
                    } else {
                        StatusCode::OK
                    };
                    return Ok(render_object(
                        def,
                        done.object,
                        out,
                        IncludeObject::Metadata,
                        code,
                    ));
                }
                _ => return Err(ApiError::unsupported_patch_type()),
            };
            registry::patch_force(query, false)?;
            let body = read_body(payload, state.max_body_bytes).await?;
            super::audit::request_patch(req, &body);
            let obj = reg.patch(def, ns, name, kind, &body, sub, &opts).await?;
            super::audit::response_object(req, || obj.clone());
            Ok(with_warnings(
                render_object(def, obj, out, IncludeObject::Metadata, StatusCode::OK),
                &opts,
            ))
        }
        Verb::Delete => {
            let out = negotiate::negotiate(accept, false)?;
            let mut opts = WriteOptions::parse(query, user_agent)?;
            let body = read_body(payload, state.max_body_bytes).await?;
            let del = DeleteOptions::parse(&body, query)?;
            if let Ok(options) = serde_json::from_slice::<Value>(&body) {
                super::audit::request_object(req, &options);
            }
            opts.dry_run |= del.dry_run;
            let obj = reg.delete(def, ns, name, &del, &opts).await?;
            super::audit::response_object(req, || obj.clone());
            Ok(render_object(
                def,
                obj,
                out,
                IncludeObject::Metadata,
                StatusCode::OK,
            ))
        }
        Verb::DeleteCollection => {
            let out = negotiate::negotiate(accept, true)?;
            let mut opts = WriteOptions::parse(query, user_agent)?;
            let list_opts = ListOptions::parse(query, def.namespaced)?;
            let body = read_body(payload, state.max_body_bytes).await?;
            let del = DeleteOptions::parse(&body, query)?;
            opts.dry_run |= del.dry_run;
            let items = reg
                .delete_collection(def, info.namespace.as_deref(), &list_opts, &del, &opts)
                .await?;
            let list = serde_json::json!({"apiVersion": def.api_version, "kind": def.list_kind, "metadata": {}, "items": items});
            super::audit::response_object(req, || list.clone());
            Ok(encode(&out, &list, StatusCode::OK))
        }
        _ => Err(method_not_allowed(def)),
    }
}

/// kube's `Warning` headers: one per warning, code 299, agent "-", the text quoted with
/// `"` and `\` escaped (what kubectl prints as "Warning: ...").
fn with_warnings(mut resp: HttpResponse, opts: &WriteOptions) -> HttpResponse {
    for w in opts.take_warnings() {
        let text = format!("299 - \"{}\"", w.replace('\\', "\\\\").replace('"', "\\\""));
        if let Ok(v) = header::HeaderValue::from_bytes(text.as_bytes()) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
    resp
}

/// An apply configuration: YAML (of which JSON is a subset), one object.
fn decode_apply_body(body: &[u8]) -> Result<Value, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::bad_request("error decoding YAML: the body is not valid UTF-8"))?;
    let v: Value = serde_saphyr::from_str(text)
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
    if !v.is_object() {
        return Err(ApiError::bad_request(
            "error decoding YAML: the apply configuration must be an object",
        ));
    }
    Ok(v)
}

/// Reads the body, refusing more than `limit` bytes with 413 before buffering them.
async fn read_body(mut payload: web::Payload, limit: usize) -> Result<web::BytesMut, ApiError> {
    let mut buf = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| match e {
            actix_web::error::PayloadError::Overflow => ApiError::too_large(limit),
            other => ApiError::bad_request(format!("error reading the request body: {other}")),
        })?;
        if buf.len() + chunk.len() > limit {
            return Err(ApiError::too_large(limit));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

async fn read_object(
    payload: web::Payload,
    content_type: Option<&str>,
    limit: usize,
) -> Result<Value, ApiError> {
    let body = read_body(payload, limit).await?;
    match negotiate::body_type(content_type) {
        BodyType::Json => serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}"))),
        BodyType::Yaml => {
            let text = std::str::from_utf8(&body).map_err(|_| ApiError::bad_request("the request body is not valid UTF-8"))?;
            serde_saphyr::from_str::<Value>(text).map_err(|e| ApiError::bad_request(format!("the request body is not valid YAML: {e}")))
        }
        _ => Err(ApiError::new(
            415,
            StatusReason::UnsupportedMediaType,
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml; got {}",
                content_type.unwrap_or("")
            ),
        )),
    }
}

/// The response body in the negotiated encoding. A value that cannot be encoded is the
/// server's failure: 500 with a Status (in JSON, which always encodes), and the cause logged.
fn encode<T: serde::Serialize>(out: &Output, v: &T, status: StatusCode) -> HttpResponse {
    let body = match out.encoding {
        Encoding::Json => serde_json::to_vec(v).map_err(|e| e.to_string()),
        Encoding::Yaml => serde_saphyr::to_string(v)
            .map(String::into_bytes)
            .map_err(|e| e.to_string()),
    };
    match body {
        Ok(body) => HttpResponse::build(status)
            .insert_header((header::CONTENT_TYPE, out.content_type()))
            .body(body),
        Err(e) => {
            tracing::error!(error = %e, content_type = %out.content_type(), "a response could not be encoded");
            error_response(&ApiError::internal(format!(
                "the response could not be encoded as {}: {e}",
                out.content_type()
            )))
        }
    }
}

fn render_object(
    def: &ResourceDef,
    obj: Value,
    out: Output,
    include: IncludeObject,
    status: StatusCode,
) -> HttpResponse {
    let now = chrono::Utc::now();
    let v = match out.shape {
        Shape::Plain => obj,
        Shape::PartialMetadata(v) => table::partial_object_metadata(&obj, v),
        Shape::Table(v) => {
            let mut meta = Map::new();
            if let Some(rv) = obj.pointer("/metadata/resourceVersion") {
                meta.insert("resourceVersion".into(), rv.clone());
            }
            table::render(
                &def.printer_columns,
                std::iter::once(&obj),
                meta,
                include,
                v,
                now,
            )
        }
    };
    encode(&out, &v, status)
}

fn render_list(
    def: &ResourceDef,
    r: registry::ListResult,
    out: Output,
    include: IncludeObject,
) -> HttpResponse {
    let v = match out.shape {
        Shape::Plain if out.encoding == Encoding::Json => {
            let size: usize = r.items.iter().map(|o| o.json_len() + 1).sum();
            let mut resp = HttpResponse::Ok();
            resp.insert_header((header::CONTENT_TYPE, out.content_type()));
            if size <= registry::LIST_CHUNK {
                return resp.body(registry::list_json(def, &r));
            }
            // Streamed (chunked): one LIST of a million objects would otherwise copy them
            // all into one buffer, doubling the server's memory while it is sent.
            let chunks = registry::list_json_chunks(def, r);
            return resp.streaming(futures_util::stream::iter(
                chunks.map(Ok::<_, std::convert::Infallible>),
            ));
        }
        Shape::Plain => {
            // Moved into place: `json!` would copy every item again.
            let mut list = Map::new();
            list.insert("apiVersion".into(), Value::String(def.api_version.clone()));
            list.insert("kind".into(), Value::String(def.list_kind.clone()));
            list.insert("metadata".into(), Value::Object(registry::list_meta(&r)));
            list.insert(
                "items".into(),
                Value::Array(r.items.iter().map(|o| o.value()).collect()),
            );
            Value::Object(list)
        }
        Shape::Table(version) => {
            let values: Vec<Value> = r.items.iter().map(|o| o.value()).collect();
            table::render(
                &def.printer_columns,
                &values,
                registry::list_meta(&r),
                include,
                version,
                chrono::Utc::now(),
            )
        }
        Shape::PartialMetadata(version) => {
            let items: Vec<Value> = r
                .items
                .iter()
                .map(|o| table::partial_object_metadata(&o.value(), version))
                .collect();
            serde_json::json!({
                "apiVersion": format!("meta.k8s.io/{version}"),
                "kind": "PartialObjectMetadataList",
                "metadata": registry::list_meta(&r),
                "items": items,
            })
        }
    };
    encode(&out, &v, StatusCode::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A value no encoder can write.
    struct Unencodable;

    impl serde::Serialize for Unencodable {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("this value has no wire form"))
        }
    }

    #[test]
    fn a_body_that_cannot_be_encoded_is_a_500_status_not_an_empty_200() {
        for encoding in [Encoding::Json, Encoding::Yaml] {
            let out = Output {
                encoding,
                shape: Shape::Plain,
            };
            let resp = encode(&out, &Unencodable, StatusCode::OK);
            assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
            let body = actix_web::body::to_bytes(resp.into_body());
            let body = futures_util::FutureExt::now_or_never(body)
                .expect("a buffered body")
                .unwrap_or_default();
            let status: Value = serde_json::from_slice(&body).expect("a JSON Status");
            assert_eq!(status["kind"], "Status");
            assert_eq!(status["reason"], "InternalError");
            assert_eq!(status["code"], 500);
            assert!(
                status["message"]
                    .as_str()
                    .unwrap()
                    .contains("this value has no wire form"),
                "{status}"
            );
        }
    }
}
