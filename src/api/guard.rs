//! The request path's security filters, in kube's order: request attributes, authentication
//! (and removal of the identity headers), authorization. Each request's
//! [`RequestAttributes`] and [`UserInfo`] are computed here once and left in its extensions
//! for the handlers, audit and metrics.

use std::any::Any;
use std::sync::Arc;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Extensions, ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, AUTHORIZATION};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpResponse};
use rustls::pki_types::CertificateDer;

use super::error_response;
use crate::auth::attributes::RequestAttributes;
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

/// Authenticates and authorizes every request; answers 401 and 403 itself.
pub async fn guard(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(security) = req.app_data::<actix_web::web::Data<Security>>().cloned() else {
        // Authentication is off: every request is served as before.
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    };
    let query = Query::parse(req.query_string()).ok();
    let attrs = RequestAttributes::new(req.method().as_str(), req.path(), query.as_ref());
    let authed = authenticate(&security.authn, &mut req).await;
    let authed = match authed {
        Ok(a) => a,
        Err(why) => {
            tracing::debug!(path = %req.path(), %why, "authentication failed");
            return Ok(respond(req, &unauthorized()));
        }
    };
    match security.authz.authorize(&attrs, &authed.user).await {
        Verdict::Allowed { .. } => {}
        Verdict::Forbidden { reason } => {
            let e = crate::auth::forbidden::forbidden(&attrs, &authed.user, &reason);
            return Ok(respond(req, &e));
        }
        Verdict::Unavailable(e) => {
            // kube answers an authorizer error with 500 and never lets the request through.
            tracing::warn!(error = %e, path = %req.path(), "authorization review failed; refusing the request");
            return Ok(respond(req, &ApiError::internal(e.to_string())));
        }
    }
    req.extensions_mut().insert(authed.user);
    req.extensions_mut().insert(attrs);
    next.call(req)
        .await
        .map(ServiceResponse::map_into_boxed_body)
}

fn respond(req: ServiceRequest, e: &ApiError) -> ServiceResponse<BoxBody> {
    let resp: HttpResponse = error_response(e);
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
