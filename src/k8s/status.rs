//! `metav1.Status` and field errors, shaped exactly as kube-apiserver shapes them.
//!
//! Clients (kubectl, client-go, kube-rs) branch on `reason` and `code`, and people read
//! `message`; both are part of the API. The wording here follows apimachinery's
//! `field.Error` and `apierrors` so that a user sees the same text whether the object
//! lives in etcd or in PostgreSQL.

use serde_json::{json, Value};

/// The kind of a field error, as apimachinery's `field.ErrorType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldErrorType {
    NotFound,
    Required,
    Duplicate,
    Invalid,
    NotSupported,
    Forbidden,
    TooLong,
    TooMany,
    Internal,
    TypeInvalid,
    /// Not a field problem: a message passed through as kube does for patch failures.
    UnexpectedServerResponse,
    /// A watch or read asked for a resourceVersion the server has not reached.
    ResourceVersionTooLarge,
    /// A field another manager owns that an apply would change (`detail` names the manager).
    FieldManagerConflict,
}

impl FieldErrorType {
    /// The `reason` of the `StatusCause` this error becomes.
    pub fn cause_reason(self) -> &'static str {
        match self {
            Self::NotFound => "FieldValueNotFound",
            Self::Required => "FieldValueRequired",
            Self::Duplicate => "FieldValueDuplicate",
            Self::Invalid => "FieldValueInvalid",
            Self::NotSupported => "FieldValueNotSupported",
            Self::Forbidden => "FieldValueForbidden",
            Self::TooLong => "FieldValueTooLong",
            Self::TooMany => "FieldValueTooMany",
            Self::Internal => "InternalError",
            Self::TypeInvalid => "FieldValueTypeInvalid",
            Self::UnexpectedServerResponse => "UnexpectedServerResponse",
            Self::ResourceVersionTooLarge => "ResourceVersionTooLarge",
            Self::FieldManagerConflict => "FieldManagerConflict",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::NotFound => "Not found",
            Self::Required => "Required value",
            Self::Duplicate => "Duplicate value",
            Self::Invalid | Self::TypeInvalid => "Invalid value",
            Self::NotSupported => "Unsupported value",
            Self::Forbidden => "Forbidden",
            Self::TooLong => "Too long",
            Self::TooMany => "Too many",
            Self::Internal => "Internal error",
            Self::UnexpectedServerResponse
            | Self::ResourceVersionTooLarge
            | Self::FieldManagerConflict => "",
        }
    }
}

/// One validation failure at a field path, e.g. `metadata.labels`.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub kind: FieldErrorType,
    pub field: String,
    /// The offending value; `None` for errors that print no value (Required, Forbidden, ...).
    pub value: Option<Value>,
    pub detail: String,
}

impl FieldError {
    pub fn new(
        kind: FieldErrorType,
        field: impl Into<String>,
        value: Option<Value>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            field: field.into(),
            value,
            detail: detail.into(),
        }
    }
    pub fn invalid(field: impl Into<String>, value: Value, detail: impl Into<String>) -> Self {
        Self::new(FieldErrorType::Invalid, field, Some(value), detail)
    }
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(FieldErrorType::Required, field, None, detail)
    }
    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(FieldErrorType::Forbidden, field, None, detail)
    }
    pub fn not_supported(field: impl Into<String>, value: Value, allowed: &[&str]) -> Self {
        let quoted: Vec<String> = allowed.iter().map(|a| format!("{a:?}")).collect();
        let detail = if quoted.is_empty() {
            String::new()
        } else {
            format!("supported values: {}", quoted.join(", "))
        };
        Self::new(FieldErrorType::NotSupported, field, Some(value), detail)
    }
    pub fn too_long(field: impl Into<String>, max: usize) -> Self {
        Self::new(
            FieldErrorType::TooLong,
            field,
            None,
            format!("must have at most {max} bytes"),
        )
    }

    /// The message without the field prefix, as kube puts it in a `StatusCause`.
    pub fn body(&self) -> String {
        if matches!(
            self.kind,
            FieldErrorType::UnexpectedServerResponse
                | FieldErrorType::ResourceVersionTooLarge
                | FieldErrorType::FieldManagerConflict
        ) {
            return self.detail.clone();
        }
        let mut s = match self.kind {
            FieldErrorType::Required
            | FieldErrorType::Forbidden
            | FieldErrorType::TooLong
            | FieldErrorType::Internal => self.kind.label().to_string(),
            _ => format!(
                "{}: {}",
                self.kind.label(),
                render_bad_value(self.value.as_ref())
            ),
        };
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.body())
        } else {
            write!(f, "{}: {}", self.field, self.body())
        }
    }
}

/// Go prints a bad value with `%q` for strings, `%v` for numbers and booleans.
fn render_bad_value(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "null".to_string(),
        Some(Value::String(s)) => go_quote(s),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(other) => other.to_string(),
    }
}

/// Go's `strconv.Quote` for the printable strings that reach error messages.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `metav1.StatusReason`: what a client branches on. The strings are kube's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusReason {
    Unauthorized,
    Forbidden,
    NotFound,
    AlreadyExists,
    Conflict,
    Gone,
    Invalid,
    ServerTimeout,
    Timeout,
    TooManyRequests,
    BadRequest,
    MethodNotAllowed,
    NotAcceptable,
    RequestEntityTooLarge,
    UnsupportedMediaType,
    InternalError,
    Expired,
    ServiceUnavailable,
}

impl StatusReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unauthorized => "Unauthorized",
            Self::Forbidden => "Forbidden",
            Self::NotFound => "NotFound",
            Self::AlreadyExists => "AlreadyExists",
            Self::Conflict => "Conflict",
            Self::Gone => "Gone",
            Self::Invalid => "Invalid",
            Self::ServerTimeout => "ServerTimeout",
            Self::Timeout => "Timeout",
            Self::TooManyRequests => "TooManyRequests",
            Self::BadRequest => "BadRequest",
            Self::MethodNotAllowed => "MethodNotAllowed",
            Self::NotAcceptable => "NotAcceptable",
            Self::RequestEntityTooLarge => "RequestEntityTooLarge",
            Self::UnsupportedMediaType => "UnsupportedMediaType",
            Self::InternalError => "InternalError",
            Self::Expired => "Expired",
            Self::ServiceUnavailable => "ServiceUnavailable",
        }
    }
}

impl std::fmt::Display for StatusReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a Status points: `details` of a `metav1.Status`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Details {
    pub name: Option<String>,
    pub group: Option<String>,
    /// For resource errors this is the plural resource name, as kube does it.
    pub kind: Option<String>,
    pub causes: Vec<FieldError>,
    pub retry_after_seconds: Option<u32>,
}

/// An API error: everything needed to write a `metav1.Status` and its HTTP status.
///
/// The `api` module turns `code` into the HTTP status line; nothing below it speaks HTTP.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub reason: StatusReason,
    pub message: String,
    /// Boxed: most errors carry none, and every `Result<_, ApiError>` pays for its size.
    pub details: Option<Box<Details>>,
    /// `metadata.continue` of the Status: kube's inconsistent-continue token on a 410.
    pub continue_token: Option<String>,
}

/// Identifies a resource in messages: `agents.ark.mckinsey.com`.
#[derive(Debug, Clone, Copy)]
pub struct ResourceRef<'a> {
    pub group: &'a str,
    pub plural: &'a str,
    pub kind: &'a str,
}

impl ResourceRef<'_> {
    fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
    fn details(&self, name: &str) -> Details {
        Details {
            name: Some(name.to_string()),
            group: Some(self.group.to_string()),
            kind: Some(self.plural.to_string()),
            ..Default::default()
        }
    }
}

impl ApiError {
    pub fn new(code: u16, reason: StatusReason, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
            continue_token: None,
        }
    }

    pub fn not_found(r: ResourceRef<'_>, name: &str) -> Self {
        Self {
            code: 404,
            reason: StatusReason::NotFound,
            message: format!("{} {} not found", r.qualified(), go_quote(name)),
            details: Some(Box::new(r.details(name))),
            continue_token: None,
        }
    }

    pub fn already_exists(r: ResourceRef<'_>, name: &str) -> Self {
        Self {
            code: 409,
            reason: StatusReason::AlreadyExists,
            message: format!("{} {} already exists", r.qualified(), go_quote(name)),
            details: Some(Box::new(r.details(name))),
            continue_token: None,
        }
    }

    /// An optimistic-concurrency failure, worded as kube's storage layer words it.
    pub fn conflict(r: ResourceRef<'_>, name: &str, why: &str) -> Self {
        Self {
            code: 409,
            reason: StatusReason::Conflict,
            message: format!(
                "Operation cannot be fulfilled on {} {}: {}",
                r.qualified(),
                go_quote(name),
                why
            ),
            details: Some(Box::new(r.details(name))),
            continue_token: None,
        }
    }

    pub fn modified_conflict(r: ResourceRef<'_>, name: &str) -> Self {
        Self::conflict(
            r,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 422 Invalid with causes. `r.kind` is the Kind, as kube's `NewInvalid` uses the GroupKind.
    pub fn invalid(r: ResourceRef<'_>, name: &str, errors: Vec<FieldError>) -> Self {
        let gk = if r.group.is_empty() {
            r.kind.to_string()
        } else {
            format!("{}.{}", r.kind, r.group)
        };
        let list = match errors.len() {
            0 => String::new(),
            1 => errors[0].to_string(),
            _ => format!(
                "[{}]",
                errors
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        Self {
            code: 422,
            reason: StatusReason::Invalid,
            message: format!("{gk} {} is invalid: {list}", go_quote(name)),
            details: Some(Box::new(Details {
                name: Some(name.to_string()),
                group: Some(r.group.to_string()),
                kind: Some(r.kind.to_string()),
                causes: errors,
                retry_after_seconds: None,
            })),
            continue_token: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, StatusReason::BadRequest, message)
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, StatusReason::MethodNotAllowed, message)
    }

    /// kube's wording for a patch type a custom resource does not take.
    pub fn unsupported_patch_type() -> Self {
        Self::new(
            415,
            StatusReason::UnsupportedMediaType,
            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
        )
    }

    /// 409 for an apply that would change fields other managers own (kube's
    /// `NewApplyConflict`: the causes only, no name or kind in the details).
    pub fn apply_conflict(causes: Vec<FieldError>, message: impl Into<String>) -> Self {
        let mut e = Self::new(409, StatusReason::Conflict, message);
        e.details = Some(Box::new(Details {
            causes,
            ..Default::default()
        }));
        e
    }

    pub fn not_acceptable(message: impl Into<String>) -> Self {
        Self::new(406, StatusReason::NotAcceptable, message)
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(
            413,
            StatusReason::RequestEntityTooLarge,
            format!("Request entity too large: limit is {limit}"),
        )
    }

    pub fn service_unavailable(message: impl Into<String>) -> Self {
        let mut e = Self::new(503, StatusReason::ServiceUnavailable, message);
        e.details = Some(Box::new(Details {
            retry_after_seconds: Some(1),
            ..Default::default()
        }));
        e
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            500,
            StatusReason::InternalError,
            format!("Internal error occurred: {}", message.into()),
        )
    }

    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, StatusReason::Expired, message)
    }

    pub fn timeout(message: impl Into<String>, retry_after: u32) -> Self {
        let mut e = Self::new(504, StatusReason::Timeout, message);
        e.details = Some(Box::new(Details {
            retry_after_seconds: Some(retry_after),
            ..Default::default()
        }));
        e
    }

    /// The `metav1.Status` object.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason.as_str(),
        });
        if let Some(c) = &self.continue_token {
            status["metadata"] = json!({"continue": c});
        }
        if let Some(d) = &self.details {
            status["details"] = d.to_json();
        }
        status["code"] = json!(self.code);
        status
    }
}

impl Details {
    fn to_json(&self) -> Value {
        let mut m = serde_json::Map::new();
        if let Some(n) = &self.name {
            m.insert("name".into(), json!(n));
        }
        if let Some(g) = &self.group {
            m.insert("group".into(), json!(g));
        }
        if let Some(k) = &self.kind {
            m.insert("kind".into(), json!(k));
        }
        if !self.causes.is_empty() {
            let causes: Vec<Value> = self
                .causes
                .iter()
                .map(|c| {
                    // kube omits an empty field.
                    let mut m = json!({"reason": c.kind.cause_reason(), "message": c.body()});
                    if !c.field.is_empty() {
                        m["field"] = json!(c.field);
                    }
                    m
                })
                .collect();
            m.insert("causes".into(), Value::Array(causes));
        }
        if let Some(r) = self.retry_after_seconds {
            m.insert("retryAfterSeconds".into(), json!(r));
        }
        Value::Object(m)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    const AGENTS: ResourceRef<'static> = ResourceRef {
        group: "ark.mckinsey.com",
        plural: "agents",
        kind: "Agent",
    };

    #[test]
    fn not_found_reads_like_kube() {
        let s = ApiError::not_found(AGENTS, "a").to_status();
        assert_eq!(s["message"], "agents.ark.mckinsey.com \"a\" not found");
        assert_eq!(s["reason"], "NotFound");
        assert_eq!(s["code"], 404);
        assert_eq!(s["details"]["kind"], "agents");
    }

    #[test]
    fn invalid_lists_every_cause_with_field_prefix_in_message_only() {
        let e = ApiError::invalid(
            AGENTS,
            "Bad",
            vec![
                FieldError::invalid("metadata.name", json!("Bad"), "must be lowercase"),
                FieldError::required("spec.prompt", ""),
            ],
        );
        assert_eq!(
            e.message,
            "Agent.ark.mckinsey.com \"Bad\" is invalid: [metadata.name: Invalid value: \"Bad\": must be lowercase, spec.prompt: Required value]"
        );
        let s = e.to_status();
        assert_eq!(
            s["details"]["causes"][0]["message"],
            "Invalid value: \"Bad\": must be lowercase"
        );
        assert_eq!(s["details"]["causes"][0]["field"], "metadata.name");
        assert_eq!(s["details"]["causes"][1]["reason"], "FieldValueRequired");
    }

    #[test]
    fn numbers_print_bare_and_strings_quoted() {
        assert_eq!(
            FieldError::invalid("f", json!(3), "x").body(),
            "Invalid value: 3: x"
        );
        assert_eq!(
            FieldError::invalid("f", json!("a\"b"), "").body(),
            "Invalid value: \"a\\\"b\""
        );
    }
}
