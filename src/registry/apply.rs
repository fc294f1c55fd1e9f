//! Server-side apply (`PATCH` with `application/apply-patch+yaml`) as a verb: the object
//! is read, the configuration merged by the field manager (`managed.rs`), and the result
//! goes through the same update (or, for a missing object, create) path as any write.

use serde_json::{json, Value};

use super::{
    columns, errors, managed, prepare, set_rv, AttemptError, Registry, Subresource, WriteOptions,
    CREATE_RETRIES, PATCH_RETRIES,
};
use crate::k8s::object::{self, meta_mut};
use crate::k8s::resource::ResourceDef;
use crate::k8s::status::ApiError;
use crate::store::{StoreError, WriteOp};

/// What an apply produced, and whether it created the object (201).
pub struct ApplyOutcome {
    pub object: Value,
    pub created: bool,
}

impl Registry {
    #[allow(clippy::too_many_arguments)]
    pub async fn apply(
        &self,
        def: &ResourceDef,
        ns: &str,
        name: &str,
        patch: Value,
        sub: Subresource,
        opts: &WriteOptions,
        force: bool,
    ) -> Result<ApplyOutcome, ApiError> {
        let mut patch = patch;
        check_patch(def, ns, name, &mut patch)?;
        let pinned_rv = object::resource_version(&patch).to_string();
        let mut fresh = false;
        let mut attempts = 0;
        while attempts < PATCH_RETRIES {
            let found = match self.current_for_write(def, ns, name, fresh).await {
                Ok(found) => Some(found),
                Err(e) if e.code == 404 => None,
                Err(e) => return Err(e),
            };
            fresh = true;
            let Some((old, current)) = found else {
                attempts += 1;
                match self.apply_create(def, ns, &patch, sub, opts, force).await {
                    Ok(object) => {
                        return Ok(ApplyOutcome {
                            object,
                            created: true,
                        })
                    }
                    // Someone created it meanwhile: apply to theirs.
                    Err(AttemptError::Stale) => continue,
                    Err(AttemptError::Api(e)) => return Err(e),
                }
            };
            if current {
                attempts += 1;
            }
            if !pinned_rv.is_empty() && pinned_rv != object::resource_version(&old) {
                if !current {
                    continue;
                }
                return Err(ApiError::modified_conflict(def.resource_ref(), name));
            }
            // The live object as kube sees it: defaulted when read.
            let live = prepare::defaulted(def, &old);
            let applied =
                match managed::apply(def, Some(&live), &patch, sub, &opts.field_manager, force) {
                    Ok(a) => a,
                    Err(_) if !current => continue,
                    Err(e) => return Err(e),
                };
            let mut new = applied.object;
            meta_mut(&mut new).insert(
                "resourceVersion".into(),
                json!(object::resource_version(&old)),
            );
            match self
                .finish_update(def, old, new, sub, opts, current, true)
                .await
            {
                Ok(object) => {
                    return Ok(ApplyOutcome {
                        object,
                        created: false,
                    })
                }
                Err(_) if !current => continue,
                Err(AttemptError::Stale) if pinned_rv.is_empty() => continue,
                Err(AttemptError::Stale) => {
                    return Err(ApiError::modified_conflict(def.resource_ref(), name))
                }
                Err(AttemptError::Api(e)) => return Err(e),
            }
        }
        Err(ApiError::modified_conflict(def.resource_ref(), name))
    }

    /// An apply to an object that does not exist creates it, as kube's patcher does.
    async fn apply_create(
        &self,
        def: &ResourceDef,
        ns: &str,
        patch: &Value,
        sub: Subresource,
        opts: &WriteOptions,
        force: bool,
    ) -> Result<Value, AttemptError> {
        let name = object::name(patch).to_string();
        if sub == Subresource::Status {
            return Err(ApiError::not_found(def.resource_ref(), &name).into());
        }
        if let Some(uid) = object::meta_str(patch, "uid").filter(|u| !u.is_empty()) {
            return Err(ApiError::conflict(
                def.resource_ref(),
                &name,
                &format!("uid mismatch: the provided object specified uid {uid}, and no existing object was found"),
            )
            .into());
        }
        let mut obj = managed::apply(def, None, patch, sub, &opts.field_manager, force)?.object;
        prepare::check_namespace(def, ns, &mut obj)?;
        if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
        }
        prepare::for_create(def, &mut obj);
        prepare::validate_create(def, &obj)?;
        if opts.dry_run {
            return Ok(obj);
        }
        let cols = columns(def, &obj)?;
        for attempt in 0.. {
            match self.store.write(WriteOp::Create(cols.clone())).await {
                Ok(w) => {
                    set_rv(&mut obj, w.resource_version);
                    def.schema.apply_defaults(&mut obj);
                    return Ok(obj);
                }
                Err(StoreError::AlreadyExists) => return Err(AttemptError::Stale),
                Err(StoreError::RetryNow(_)) if attempt + 1 < CREATE_RETRIES => continue,
                Err(e) => return Err(errors::store_error(def, &name, e).into()),
            }
        }
        unreachable!("the loop returns")
    }
}

/// What kube checks of an apply configuration before merging it.
fn check_patch(def: &ResourceDef, ns: &str, name: &str, patch: &mut Value) -> Result<(), ApiError> {
    if !patch.is_object() {
        return Err(ApiError::bad_request(
            "error decoding YAML: the apply configuration must be an object",
        ));
    }
    if patch
        .get("metadata")
        .is_some_and(|m| !m.is_object() && !m.is_null())
    {
        return Err(ApiError::bad_request("metadata must be a JSON object"));
    }
    let body_name = object::name(patch).to_string();
    if body_name.is_empty() {
        meta_mut(patch).insert("name".into(), json!(name));
    } else if body_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    if def.namespaced {
        let body_ns = object::meta_str(patch, "namespace").unwrap_or("");
        if !body_ns.is_empty() && body_ns != ns {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
    }
    Ok(())
}
