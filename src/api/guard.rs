//! The request path's security filters, in kube's order: request attributes, authentication
//! (and removal of the identity headers), audit, authorization. Each request's
//! [`RequestAttributes`] and [`UserInfo`] are computed here once and left in its extensions
//! for the handlers, audit and metrics.

use std::any::Any;
use std::sync::Arc;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Extensions, ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue, AUTHORIZATION};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpResponse};
use rustls::pki_types::CertificateDer;

use super::audit::{AuditSlot, AuditedBody};
use super::error_response;
use crate::audit;
use crate::auth::attributes::{RequestAttributes, Verb};
use crate::auth::authn::{Authenticated, Authenticator, Credentials};
use crate::auth::authz::{Authorizer, Verdict};
use crate::auth::user::UserInfo;
use crate::k8s::query::Query;
use crate::k8s::status::{ApiError, StatusReason};

/// The client's certificate chain from the TLS handshake, leaf first.
#[derive(Debug, Clone)]
pub struct PeerCertificates(pub Arc<Vec<CertificateDer<'static>>>);

/// For `HttpServer::on_connect`: keeps the chain a TLS client presented with its
/// connection, so every request on it can be authenticated by it.
pub fn capture_peer_certificates(conn: &dyn Any, ext: &mut Extensions) {
    type Tls = actix_tls::accept::rustls_0_23::TlsStream<actix_web::rt::net::TcpStream>;
    if let Some(tls) = conn.downcast_ref::<Tls>() {
        let (_, session) = tls.get_ref();
        if let Some(chain) = session.peer_certificates().filter(|c| !c.is_empty()) {
            let chain = chain.iter().map(|c| c.clone().into_owned()).collect();
            ext.insert(PeerCertificates(Arc::new(chain)));
        }
    }
}

/// Who may do what: shared by every worker.
pub struct Security {
    pub authn: Authenticator,
    pub authz: Authorizer,
}

/// kube's 401: a plain `Unauthorized`, whatever the reason (which goes to the log).
fn unauthorized() -> ApiError {
    ApiError::new(401, StatusReason::Unauthorized, "Unauthorized")
}

/// Authenticates, audits and authorizes every request; answers 401 and 403 itself. Every
/// response carries the request's `Audit-ID` (the aggregator's, or a new one).
pub async fn guard(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    // The internal stream between replicas is not part of the API: it authenticates its
    // caller itself (api::replication), whatever --auth-mode is, and is not audited.
    if req.path() == crate::replica::follow::STREAM_PATH {
        return Ok(next.call(req).await?.map_into_boxed_body());
    }
    let audit_id = audit::audit_id(
        req.headers()
            .get(audit::AUDIT_ID_HEADER)
            .and_then(|v| v.to_str().ok()),
    );
    let security = req.app_data::<web::Data<Security>>().cloned();
    let auditor = req.app_data::<web::Data<audit::Auditor>>().cloned();
    let query = Query::parse(req.query_string()).ok();
    let attrs = RequestAttributes::new(req.method().as_str(), req.path(), query.as_ref());
    let meta = request_meta(&req, &audit_id);
    let Some(security) = security else {
        // Authentication is off: everyone is anonymous, and everything is allowed.
        let record = auditor
            .as_ref()
            .and_then(|a| a.begin(&attrs, &UserInfo::anonymous(), meta));
        return finish(req, next, attrs, UserInfo::anonymous(), record, &audit_id).await;
    };
    let attempted = attempted_methods(&req);
    let authed = match authenticate(&security.authn, &mut req).await {
        Ok(a) => a,
        Err(why) => {
            tracing::debug!(path = %req.path(), %why, "authentication failed");
            let e = unauthorized();
            if let Some(a) = &auditor {
                a.failed_authentication(&attrs, meta, &attempted, Some(&e.to_status()));
            }
            return Ok(respond(req, &e, &audit_id));
        }
    };
    let mut record = auditor
        .as_ref()
        .and_then(|a| a.begin(&attrs, &authed.user, meta));
    let verdict = security.authz.authorize(&attrs, &authed.user).await;
    if let Some(r) = record.as_mut() {
        r.annotate_authorization(match &verdict {
            Verdict::Allowed { reason } => audit::AuthorizationDecision::Allow { reason },
            Verdict::Forbidden { reason } => audit::AuthorizationDecision::Forbid { reason },
            Verdict::Unavailable(_) => audit::AuthorizationDecision::Error,
        });
    }
    let refusal = match verdict {
        Verdict::Allowed { .. } => None,
        Verdict::Forbidden { reason } => Some(crate::auth::forbidden::forbidden(
            &attrs,
            &authed.user,
            &reason,
        )),
        Verdict::Unavailable(e) => {
            // kube answers an authorizer error with 500 and never lets the request through.
            tracing::warn!(error = %e, path = %req.path(), "authorization review failed; refusing the request");
            Some(ApiError::internal(e.to_string()))
        }
    };
    if let Some(e) = refusal {
        if let Some(r) = record {
            let status = e.to_status();
            r.complete(e.code, Some(&status), Some(&status));
        }
        return Ok(respond(req, &e, &audit_id));
    }
    finish(req, next, attrs, authed.user, record, &audit_id).await
}

/// Serves an admitted request, then completes its record: at once, or when a watch's
/// stream ends.
async fn finish(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
    attrs: RequestAttributes,
    user: UserInfo,
    record: Option<audit::AuditRecord>,
    audit_id: &str,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let watch = attrs.verb == Verb::Watch;
    let slot = record.map(AuditSlot::new);
    req.extensions_mut().insert(user);
    req.extensions_mut().insert(attrs);
    if let Some(s) = &slot {
        req.extensions_mut().insert(s.clone());
    }
    let mut resp = next.call(req).await?.map_into_boxed_body();
    let code = resp.status().as_u16();
    let name = HeaderName::from_static("audit-id");
    if !resp.headers().contains_key(&name) {
        if let Ok(v) = HeaderValue::from_str(audit_id) {
            resp.headers_mut().insert(name, v);
        }
    }
    match slot {
        Some(s) if watch && code == 200 => {
            s.response_started(code);
            Ok(resp.map_body(|_, body| BoxBody::new(AuditedBody::new(body, s, code))))
        }
        Some(s) => {
            s.complete(code);
            Ok(resp)
        }
        None => Ok(resp),
    }
}

fn request_meta(req: &ServiceRequest, audit_id: &str) -> audit::RequestMeta {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    audit::RequestMeta {
        audit_id: audit_id.to_string(),
        request_uri: req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| req.path().to_string()),
        source_ips: audit::source_ips(
            header("x-forwarded-for"),
            header("x-real-ip"),
            req.peer_addr().map(|a| a.ip()),
        ),
        user_agent: header("user-agent").unwrap_or_default().to_string(),
        received_at: chrono::Utc::now(),
    }
}

/// How a request tried to authenticate, for a failed authentication's audit event.
fn attempted_methods(req: &ServiceRequest) -> Vec<audit::AuthMethod> {
    let mut m = Vec::new();
    if req.conn_data::<PeerCertificates>().is_some() {
        m.push(audit::AuthMethod::X509);
    }
    let bearer = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer "));
    if bearer {
        m.push(audit::AuthMethod::Bearer);
    }
    m
}

fn respond(req: ServiceRequest, e: &ApiError, audit_id: &str) -> ServiceResponse<BoxBody> {
    let mut resp: HttpResponse = error_response(e);
    if let Ok(v) = HeaderValue::from_str(audit_id) {
        resp.headers_mut()
            .insert(HeaderName::from_static("audit-id"), v);
    }
    req.into_response(resp)
}

/// Runs the authentication chain, then removes the identity headers (all of them, from
/// every request, so nothing later can read a claim no certificate backed) and a bearer
/// token that was used.
async fn authenticate(
    authn: &Authenticator,
    req: &mut ServiceRequest,
) -> Result<Authenticated, crate::auth::authn::Unauthorized> {
    let peer = req.conn_data::<PeerCertificates>().cloned();
    let owned: Vec<(String, String)> = req
        .headers()
        .iter()
        .filter_map(|(k, v)| {
            v.to_str()
                .ok()
                .map(|v| (k.as_str().to_string(), v.to_string()))
        })
        .collect();
    let pairs: Vec<(&str, &str)> = owned
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let result = authn
        .authenticate(&Credentials {
            peer: peer.as_ref().map(|p| p.0.as_slice()),
            headers: &pairs,
        })
        .await;
    let identity: Vec<HeaderName> = req
        .headers()
        .keys()
        .filter(|k| authn.is_identity_header(k.as_str()))
        .cloned()
        .collect();
    for name in identity {
        req.headers_mut().remove(name);
    }
    if result.as_ref().is_ok_and(|a| a.used_token) {
        req.headers_mut().remove(AUTHORIZATION);
    }
    result
}

/// The user a request was authenticated as, for handlers (anonymous when off).
pub fn user_of(req: &actix_web::HttpRequest) -> UserInfo {
    req.extensions()
        .get::<UserInfo>()
        .cloned()
        .unwrap_or_else(UserInfo::anonymous)
}
