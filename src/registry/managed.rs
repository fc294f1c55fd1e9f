//! The registry's side of field ownership: which endpoint a write came through, handed to
//! the pure core in `crate::apply`, and its errors turned into kube's Statuses.

use serde_json::Value;

use super::{options::WriteOptions, Subresource};
use crate::apply::{self, ApplyError, Endpoint};
use crate::k8s::object::{format_time, now};
use crate::k8s::resource::ResourceDef;
use crate::k8s::status::{ApiError, FieldError, FieldErrorType};

fn subresource(sub: Subresource) -> Option<&'static str> {
    match sub {
        Subresource::Main => None,
        Subresource::Status => Some("status"),
    }
}

/// Runs `f` with the endpoint of a write to `def` through `sub`.
fn with_endpoint<T>(def: &ResourceDef, sub: Subresource, f: impl FnOnce(&Endpoint) -> T) -> T {
    let ignored = apply::reset_fields(sub == Subresource::Status, def.has_status);
    let now = format_time(now());
    let ep = Endpoint {
        schema: &def.merge_type,
        api_version: &def.api_version,
        kind: &def.kind,
        subresource: subresource(sub),
        ignored: ignored.as_ref(),
        now: &now,
    };
    f(&ep)
}

/// Records an Update operation (create, PUT, merge or JSON patch) in `new`'s managedFields.
pub fn record(
    def: &ResourceDef,
    new: &mut Value,
    old: Option<&Value>,
    sub: Subresource,
    opts: &WriteOptions,
) {
    with_endpoint(def, sub, |ep| {
        apply::managed::record_update(ep, old, new, &opts.field_manager)
    });
}

/// Applies `patch` onto `live` (`None`: create) for `manager`.
pub fn apply(
    def: &ResourceDef,
    live: Option<&Value>,
    patch: &Value,
    sub: Subresource,
    manager: &str,
    force: bool,
) -> Result<apply::Applied, ApiError> {
    with_endpoint(def, sub, |ep| {
        apply::managed::apply(ep, live, patch, manager, force)
    })
    .map_err(|e| apply_error(def, patch, e))
}

fn apply_error(def: &ResourceDef, patch: &Value, e: ApplyError) -> ApiError {
    match e {
        ApplyError::Conflict(conflicts) => {
            let message = apply::managed::conflict_message(&conflicts);
            let causes = conflicts
                .iter()
                .map(|c| {
                    FieldError::new(
                        FieldErrorType::FieldManagerConflict,
                        apply::path::path_string(&c.path),
                        None,
                        format!(
                            "conflict with {}",
                            apply::managed::print_manager(&c.manager)
                        ),
                    )
                })
                .collect();
            ApiError::apply_conflict(causes, message)
        }
        ApplyError::BadRequest(m) => ApiError::bad_request(m),
        ApplyError::Duplicate(m) => {
            // kube reports a repeated key as its validation does: Duplicate value at the item.
            let dups: Vec<FieldError> = def
                .schema
                .validate(patch)
                .into_iter()
                .filter(|e| e.kind == FieldErrorType::Duplicate)
                .collect();
            if dups.is_empty() {
                ApiError::new(422, crate::k8s::status::StatusReason::Invalid, m)
            } else {
                ApiError::invalid(def.resource_ref(), crate::k8s::object::name(patch), dups)
            }
        }
        ApplyError::Internal(m) => ApiError::internal(m),
    }
}
