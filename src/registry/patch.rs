//! JSON Patch (RFC 6902) and JSON Merge Patch (RFC 7386), as kube applies them to custom
//! resources. Strategic merge patch does not exist for custom resources; the API layer
//! answers it with 415.

use serde_json::{json, Value};

use crate::k8s::status::{ApiError, StatusReason};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    Json,
    Merge,
}

pub enum Patch {
    Json(json_patch::Patch),
    Merge(Value),
}

impl Patch {
    pub fn parse(kind: PatchKind, body: &[u8]) -> Result<Patch, ApiError> {
        match kind {
            PatchKind::Json => serde_json::from_slice::<json_patch::Patch>(body)
                .map(Patch::Json)
                .map_err(|e| ApiError::bad_request(format!("invalid JSON Patch: {e}"))),
            PatchKind::Merge => {
                let v: Value = serde_json::from_slice(body)
                    .map_err(|e| ApiError::bad_request(format!("invalid JSON merge patch: {e}")))?;
                if !v.is_object() {
                    return Err(ApiError::bad_request(
                        "invalid JSON merge patch: the patch must be a JSON object",
                    ));
                }
                Ok(Patch::Merge(v))
            }
        }
    }

    /// Applies the patch to a copy of `current`.
    pub fn apply(&self, current: &Value) -> Result<Value, ApiError> {
        let mut doc = current.clone();
        match self {
            Patch::Json(p) => json_patch::patch(&mut doc, p).map_err(|e| {
                // kube answers a patch that does not apply with 422 and the reason as a cause.
                let mut err = ApiError::new(
                    422,
                    StatusReason::Invalid,
                    "the server rejected our request due to an error in our request",
                );
                err.details = Some(Box::new(crate::k8s::status::Details {
                    causes: vec![crate::k8s::status::FieldError::new(
                        crate::k8s::status::FieldErrorType::UnexpectedServerResponse,
                        "",
                        None,
                        e.to_string(),
                    )],
                    ..Default::default()
                }));
                err
            })?,
            Patch::Merge(p) => json_patch::merge(&mut doc, p),
        }
        if !doc.is_object() {
            return Err(ApiError::bad_request(format!(
                "the patch produced a non-object: {}",
                json!(doc.to_string())
            )));
        }
        Ok(doc)
    }

    /// Whether the patch itself sets `metadata.resourceVersion`: then it must match, and a
    /// conflict is the client's to resolve, not ours to retry.
    pub fn pins_resource_version(&self) -> bool {
        match self {
            Patch::Merge(v) => v
                .pointer("/metadata/resourceVersion")
                .is_some_and(|r| !r.is_null()),
            Patch::Json(p) => p.0.iter().any(|op| {
                let path = match op {
                    json_patch::PatchOperation::Add(o) => o.path.to_string(),
                    json_patch::PatchOperation::Replace(o) => o.path.to_string(),
                    json_patch::PatchOperation::Test(o) => o.path.to_string(),
                    _ => return false,
                };
                path == "/metadata/resourceVersion"
            }),
        }
    }
}
