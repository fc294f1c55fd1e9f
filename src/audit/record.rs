//! What the HTTP layer drives: an [`Auditor`] begins an [`AuditRecord`] per request, the
//! handler tells it what happened, and the record hands each stage's [`Event`] to a
//! [`Sink`]. This follows k8s.io/apiserver's `WithAuditInit`, `WithAudit`,
//! `WithFailedAuthenticationAudit` and `audit.Log*` functions:
//!
//! - `RequestReceived` is written as the record begins (after authentication, before
//!   authorization), unless the policy omits it;
//! - `ResponseStarted` only for long-running requests (watches), when the response
//!   headers go out;
//! - `ResponseComplete` when the response is finished, or when the record is dropped
//!   unfinished (the client went away), as kube's deferred completion does;
//! - `Panic` instead of `ResponseComplete` when the handler panicked.
//!
//! Pure but for the sink and the clock, both given.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::event::ResponseStatus;
use super::event::{without_managed_fields, Event, EventUser, MicroTime, ObjectReference};
use super::policy::{Policy, RequestAuditConfig};
use super::{Level, Stage};
use crate::auth::attributes::{RequestAttributes, Verb};
use crate::auth::user::UserInfo;

/// The request and response header carrying the audit ID. The aggregator sends the one it
/// logged, so both servers' events share it.
pub const AUDIT_ID_HEADER: &str = "Audit-ID";

/// The annotations the authorization filter adds, with kube's keys and values.
pub const DECISION_ANNOTATION: &str = "authorization.k8s.io/decision";
pub const REASON_ANNOTATION: &str = "authorization.k8s.io/reason";

/// Kube truncates longer user agents and marks them.
const MAX_USER_AGENT: usize = 1024;
const USER_AGENT_TRUNCATED: &str = "...TRUNCATED";

/// Where the events go. The backend queues them; tests collect them.
pub trait Sink: Send + Sync {
    /// Takes one event. Must not block: a sink that cannot keep up drops and counts.
    fn process(&self, event: &Event);
}

/// The request's audit ID: the `Audit-ID` header's value as sent (kube neither checks nor
/// truncates it), or a new UUID when it is absent or empty. The caller echoes it on the
/// response unless the response already carries one.
pub fn audit_id(header: Option<&str>) -> String {
    match header {
        Some(id) if !id.is_empty() => id.to_string(),
        _ => uuid::Uuid::new_v4().to_string(),
    }
}

/// The client addresses as kube's `utilnet.SourceIPs` lists them: every valid address of
/// `X-Forwarded-For`, then `X-Real-Ip` unless already listed, then the peer's address
/// unless it is the last one listed. Invalid entries are skipped.
pub fn source_ips(
    forwarded_for: Option<&str>,
    real_ip: Option<&str>,
    peer: Option<IpAddr>,
) -> Vec<String> {
    let parse = |s: &str| s.trim().parse::<IpAddr>().ok().map(|ip| ip.to_canonical());
    let mut ips: Vec<IpAddr> = forwarded_for
        .into_iter()
        .flat_map(|h| h.split(','))
        .filter_map(parse)
        .collect();
    if let Some(ip) = real_ip.and_then(parse) {
        if !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    if let Some(ip) = peer.map(|p| p.to_canonical()) {
        if ips.last() != Some(&ip) {
            ips.push(ip);
        }
    }
    ips.iter().map(IpAddr::to_string).collect()
}

/// What the HTTP layer knows about a request before it is handled.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestMeta {
    /// From [`audit_id`].
    pub audit_id: String,
    /// The path and query as received (`/apis/...?watch=true&...`).
    pub request_uri: String,
    /// From [`source_ips`].
    pub source_ips: Vec<String>,
    pub user_agent: String,
    /// When the server received the request.
    pub received_at: DateTime<Utc>,
}

/// How a request whose authentication failed tried to authenticate, for the message of its
/// event (kube's `getAuthMethods`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    Basic,
    Bearer,
    AccessToken,
    X509,
}

impl AuthMethod {
    fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Basic => "basic",
            AuthMethod::Bearer => "bearer",
            AuthMethod::AccessToken => "access_token",
            AuthMethod::X509 => "x509",
        }
    }
}

/// The authorizer's answer, recorded as kube's authorization filter records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorizationDecision<'a> {
    Allow {
        reason: &'a str,
    },
    Forbid {
        reason: &'a str,
    },
    /// The authorizer failed (e.g. the kube-apiserver is unreachable): only a reason.
    Error,
}

/// Begins records. Cheap to clone; share one per server.
#[derive(Clone)]
pub struct Auditor {
    inner: Arc<Inner>,
}

struct Inner {
    policy: Policy,
    sink: Arc<dyn Sink>,
    clock: fn() -> DateTime<Utc>,
}

impl Auditor {
    pub fn new(policy: Policy, sink: Arc<dyn Sink>) -> Auditor {
        Auditor::with_clock(policy, sink, Utc::now)
    }

    /// With another clock for the stage timestamps, for tests.
    pub fn with_clock(
        policy: Policy,
        sink: Arc<dyn Sink>,
        clock: fn() -> DateTime<Utc>,
    ) -> Auditor {
        Auditor {
            inner: Arc::new(Inner {
                policy,
                sink,
                clock,
            }),
        }
    }

    /// Evaluates the policy for an authenticated request and, unless its level is None,
    /// writes `RequestReceived` and returns the record to drive.
    pub fn begin(
        &self,
        attrs: &RequestAttributes,
        user: &UserInfo,
        meta: RequestMeta,
    ) -> Option<AuditRecord> {
        let config = self.inner.policy.evaluate(attrs, Some(user));
        crate::metrics::record_audit_level(config.level.as_str());
        if config.level == Level::None {
            return None;
        }
        let mut record = AuditRecord::new(self.inner.clone(), config, attrs, Some(user), meta);
        record.emit(Stage::RequestReceived);
        Some(record)
    }

    /// A request whose authentication failed: one `ResponseStarted` event with an empty
    /// user, as kube's `WithFailedAuthenticationAudit` writes it. `status` is the 401
    /// Status sent, whose fields replace the attempted-methods message as they do in kube
    /// (its response writer records the Status body last).
    pub fn failed_authentication(
        &self,
        attrs: &RequestAttributes,
        meta: RequestMeta,
        attempted: &[AuthMethod],
        status: Option<&Value>,
    ) {
        let config = self.inner.policy.evaluate(attrs, None);
        crate::metrics::record_audit_level(config.level.as_str());
        if config.level == Level::None {
            return;
        }
        let mut record = AuditRecord::new(self.inner.clone(), config, attrs, None, meta);
        record.event.response_status = Some(match status {
            Some(s) => ResponseStatus::from_status(s, 401),
            None => ResponseStatus {
                message: failed_authentication_message(attempted),
                code: 401,
                ..Default::default()
            },
        });
        record.emit(Stage::ResponseStarted);
        record.finished = true;
    }
}

fn failed_authentication_message(attempted: &[AuthMethod]) -> String {
    if attempted.is_empty() {
        return "Authentication failed, no credentials provided".into();
    }
    let names: Vec<&str> = attempted.iter().map(|m| m.as_str()).collect();
    format!("Authentication failed, attempted: {}", names.join(", "))
}

/// One request's audit trail. Drive it with what happens; it writes the events.
pub struct AuditRecord {
    inner: Arc<Inner>,
    config: RequestAuditConfig,
    event: Event,
    long_running: bool,
    started: bool,
    finished: bool,
}

impl AuditRecord {
    fn new(
        inner: Arc<Inner>,
        config: RequestAuditConfig,
        attrs: &RequestAttributes,
        user: Option<&UserInfo>,
        meta: RequestMeta,
    ) -> AuditRecord {
        let object_ref = attrs.resource.as_ref().map(|r| ObjectReference {
            resource: r.resource.clone(),
            namespace: r.namespace.clone(),
            name: r.name.clone(),
            api_group: r.group.clone(),
            api_version: r.version.clone(),
            subresource: r.subresource.clone(),
            ..Default::default()
        });
        let received = MicroTime(meta.received_at);
        AuditRecord {
            inner,
            config,
            event: Event {
                kind: "Event",
                api_version: "audit.k8s.io/v1",
                level: config.level,
                audit_id: meta.audit_id,
                stage: Stage::RequestReceived,
                request_uri: meta.request_uri,
                verb: attrs.verb.as_str().to_string(),
                user: user.map(EventUser::from).unwrap_or_default(),
                source_ips: meta.source_ips,
                user_agent: truncate_user_agent(meta.user_agent),
                object_ref,
                response_status: None,
                request_object: None,
                response_object: None,
                request_received_timestamp: received,
                stage_timestamp: received,
                annotations: BTreeMap::new(),
            },
            // Kube's long-running check for this server's requests: watches.
            long_running: attrs.verb == Verb::Watch,
            started: false,
            finished: false,
        }
    }

    pub fn level(&self) -> Level {
        self.config.level
    }

    pub fn audit_id(&self) -> &str {
        &self.event.audit_id
    }

    /// Adds an annotation to the events still to come. As in kube, a key keeps its first
    /// value: a different later value is ignored (and logged).
    pub fn annotate(&mut self, key: &str, value: &str) {
        match self.event.annotations.get(key) {
            Some(v) if v != value => tracing::warn!(
                audit_id = %self.event.audit_id, key, value, existing = %v,
                "audit annotation already set; keeping the first value"
            ),
            Some(_) => {}
            None => {
                self.event
                    .annotations
                    .insert(key.to_string(), value.to_string());
            }
        }
    }

    /// The authorization filter's annotations: decision and reason, or only the reason
    /// `internal error` when the authorizer failed.
    pub fn annotate_authorization(&mut self, decision: AuthorizationDecision<'_>) {
        match decision {
            AuthorizationDecision::Allow { reason } => {
                self.annotate(DECISION_ANNOTATION, "allow");
                self.annotate(REASON_ANNOTATION, reason);
            }
            AuthorizationDecision::Forbid { reason } => {
                self.annotate(DECISION_ANNOTATION, "forbid");
                self.annotate(REASON_ANNOTATION, reason);
            }
            AuthorizationDecision::Error => self.annotate(REASON_ANNOTATION, "internal error"),
        }
    }

    /// The decoded request body (create, update; DeleteOptions). At every level it fills
    /// the object reference's namespace, name, uid and resourceVersion from the object's
    /// metadata where the URL left them empty (a create names its object in the body); the
    /// object itself is kept from level Request up.
    pub fn set_request_object(&mut self, obj: &Value) {
        let meta = obj.get("metadata");
        let text = |k: &str| {
            meta.and_then(|m| m.get(k))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let r = self.event.object_ref.get_or_insert_with(Default::default);
        for (field, key) in [
            (&mut r.namespace, "namespace"),
            (&mut r.name, "name"),
            (&mut r.uid, "uid"),
            (&mut r.resource_version, "resourceVersion"),
        ] {
            if field.is_empty() {
                *field = text(key);
            }
        }
        if self.config.level >= Level::Request {
            self.event.request_object = Some(self.trimmed(obj));
        }
    }

    /// A patch body (JSON, merge or apply patch, as JSON): kept as the request object from
    /// level Request up, and never read for the object reference, as in kube.
    pub fn set_request_patch(&mut self, patch: &Value) {
        if self.config.level >= Level::Request {
            self.event.request_object = Some(patch.clone());
        }
    }

    /// The response headers are going out with `code`. For a long-running request this
    /// writes `ResponseStarted` (once); for others it only notes the code.
    pub fn response_started(&mut self, code: u16) {
        match &mut self.event.response_status {
            Some(rs) => rs.code = code,
            None => self.event.response_status = Some(ResponseStatus::code(code)),
        }
        if self.long_running && !self.started {
            self.started = true;
            self.emit(Stage::ResponseStarted);
        }
    }

    /// The response is finished: `code` is the HTTP status sent, `status` the body when it
    /// was a `metav1.Status` (errors, and deletes that answer with one), and
    /// `response_object` the body (kept at RequestResponse only; pass the Status here too
    /// for errors, as kube records it as both). A watch that never started writes its
    /// `ResponseStarted` first.
    pub fn complete(mut self, code: u16, status: Option<&Value>, response_object: Option<&Value>) {
        self.event.response_status = Some(match status {
            Some(s) => ResponseStatus::from_status(s, code),
            None => ResponseStatus::code(code),
        });
        if self.long_running && !self.started {
            self.started = true;
            self.emit(Stage::ResponseStarted);
        }
        if self.config.level >= Level::RequestResponse {
            self.event.response_object = response_object.map(|o| self.trimmed(o));
        }
        self.finished = true;
        self.emit(Stage::ResponseComplete);
    }

    /// The handler panicked with `message`: a `Panic` event with kube's 500 Status, and no
    /// `ResponseComplete`.
    pub fn panic(mut self, message: &str) {
        self.event.response_status = Some(ResponseStatus {
            status: "Failure".into(),
            message: format!("APIServer panic'd: {message}"),
            reason: "InternalError".into(),
            code: 500,
            ..Default::default()
        });
        self.finished = true;
        self.emit(Stage::Panic);
    }

    fn trimmed(&self, obj: &Value) -> Value {
        if self.config.omit_managed_fields {
            without_managed_fields(obj)
        } else {
            obj.clone()
        }
    }

    fn emit(&mut self, stage: Stage) {
        if self.config.omit_stages.contains(stage) {
            return;
        }
        self.event.stage = stage;
        self.event.stage_timestamp = if stage == Stage::RequestReceived {
            self.event.request_received_timestamp
        } else {
            MicroTime((self.inner.clock)())
        };
        self.inner.sink.process(&self.event);
    }
}

/// A record dropped unfinished belongs to a request whose handler never finished: the
/// client disconnected and the server dropped the handler. Kube's deferred completion
/// writes `ResponseComplete` then, with a faked success if nothing was sent.
impl Drop for AuditRecord {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if self.event.response_status.is_none() {
            self.event.response_status = Some(ResponseStatus {
                status: "Success".into(),
                message: "Connection closed early".into(),
                code: 200,
                ..Default::default()
            });
            if self.long_running && !self.started {
                self.emit(Stage::ResponseStarted);
            }
        }
        self.emit(Stage::ResponseComplete);
    }
}

/// Cut at a character boundary at most 1024 bytes in, as kube cuts at 1024 bytes.
fn truncate_user_agent(mut ua: String) -> String {
    if ua.len() <= MAX_USER_AGENT {
        return ua;
    }
    let mut cut = MAX_USER_AGENT;
    while !ua.is_char_boundary(cut) {
        cut -= 1;
    }
    ua.truncate(cut);
    ua.push_str(USER_AGENT_TRUNCATED);
    ua
}

#[cfg(test)]
#[path = "record_tests.rs"]
mod tests;
