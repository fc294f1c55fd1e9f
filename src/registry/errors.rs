//! The Statuses the registry answers with when storage, the stream or a resourceVersion
//! stands in the way, worded as kube words them. No SQL text leaves here.

use serde_json::{json, Value};

use super::options;
use crate::k8s::resource::ResourceDef;
use crate::k8s::status::{ApiError, FieldError, FieldErrorType, ResourceRef};
use crate::store::error::Refusal;
use crate::store::StoreError;

/// Maps a storage failure to the Status a client should see.
pub fn store_error(def: &ResourceDef, name: &str, e: StoreError) -> ApiError {
    let r = def.resource_ref();
    match e {
        StoreError::AlreadyExists => ApiError::already_exists(r, name),
        StoreError::Conflict => ApiError::modified_conflict(r, name),
        StoreError::NotFound => ApiError::not_found(r, name),
        StoreError::Unavailable(source) => {
            tracing::warn!(error = %source, "database unavailable");
            unavailable()
        }
        StoreError::RetryNow(source) => {
            tracing::info!(error = %source, kind = %def.kind, %name, "write lost a race with a concurrent transaction");
            ApiError::conflict(
                r,
                name,
                "the write lost a race with a concurrent transaction; please try again",
            )
        }
        StoreError::OutcomeUnknown(source) => {
            tracing::warn!(error = %source, "connection lost during commit");
            ApiError::service_unavailable(
                "the connection to PostgreSQL was lost while committing; the write may or may not have been applied",
            )
        }
        StoreError::Refused { reason, source } => {
            tracing::info!(error = %source, kind = %def.kind, %name, "database refused object data");
            let why = match reason {
                Refusal::UnstorableCharacter => {
                    "strings must not contain the NUL character (\\u0000)"
                }
                Refusal::TooLarge => "the object is too large to store",
                Refusal::InvalidData => "the database refused the object's data",
            };
            ApiError::invalid(
                r,
                name,
                vec![FieldError::invalid("", Value::String(name.into()), why)],
            )
        }
        StoreError::Database(source) => {
            tracing::error!(error = %source, kind = %def.kind, %name, "storage error");
            ApiError::internal("storage error; see the server log")
        }
        StoreError::Internal(detail) => {
            tracing::error!(%detail, kind = %def.kind, %name, "storage error");
            ApiError::internal("storage error; see the server log")
        }
    }
}

fn unavailable() -> ApiError {
    ApiError::service_unavailable("the storage backend (PostgreSQL) is unavailable; retry later")
}

/// A storage failure outside any one object, for reads that are not about a name.
pub fn storage_unavailable(e: &StoreError) -> ApiError {
    tracing::warn!(error = %e, "storage error during a consistent read");
    unavailable()
}

/// kube's message when an update carries no resourceVersion. It names the resource, not the
/// kind, and prints the missing version as Go prints a zero uint64.
pub fn rv_required(def: &ResourceDef, name: &str) -> ApiError {
    let mut e = ApiError::invalid(
        ResourceRef {
            group: &def.group,
            plural: &def.plural,
            kind: &def.plural,
        },
        name,
        vec![FieldError::invalid(
            "metadata.resourceVersion",
            json!(0),
            "must be specified for an update",
        )],
    );
    // Go prints the zero uint64 of the message as 0x0 (the cause keeps 0, as kube's does).
    e.message = e
        .message
        .replace("Invalid value: 0:", "Invalid value: 0x0:");
    e
}

/// kube's answer when a read asks for a resourceVersion the state has not reached.
pub fn too_large(requested: u64, current: u64) -> ApiError {
    let mut e = ApiError::timeout(
        format!("Too large resource version: {requested}, current: {current}"),
        1,
    );
    if let Some(d) = e.details.as_mut() {
        d.causes.push(FieldError::new(
            FieldErrorType::ResourceVersionTooLarge,
            "",
            None,
            "Too large resource version",
        ));
    }
    e
}

/// kube's 410 for a continue token whose snapshot is gone, carrying a token that continues
/// from the current state instead.
pub fn expired_continue(t: &options::ContinueToken) -> ApiError {
    let mut e = ApiError::gone(
        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
    );
    e.continue_token = Some(
        options::ContinueToken {
            resource_version: 0,
            namespace: t.namespace.clone(),
            name: t.name.clone(),
            // The next page comes from another snapshot: the rest is counted there.
            offset: None,
        }
        .encode(),
    );
    e
}
