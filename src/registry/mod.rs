//! The verbs over storage, with kube-apiserver's semantics for custom resources.
//!
//! This is the counterpart of kube's generic registry plus the custom-resource strategy:
//! what a create, update, patch or delete does to an object before and after it reaches the
//! store (uid, timestamps, generation, status/spec separation, finalizers, preconditions,
//! no-op detection, conflict retries). It speaks neither HTTP nor SQL: requests arrive as
//! JSON values and options, errors leave as [`ApiError`].

mod apply;
mod errors;
mod managed;
mod options;
mod patch;
mod prepare;
mod reads;
pub use apply::ApplyOutcome;
pub use reads::StreamIdentity;
mod strategy;

use std::sync::Arc;

use serde_json::{json, Value};

pub use errors::{storage_unavailable, store_error, too_large};
pub use options::{field_validation, patch_force, DeleteOptions, ListOptions, WriteOptions};
pub use patch::PatchKind;
pub use reads::{list_json, list_json_chunks, list_meta, LIST_CHUNK};

use crate::k8s::object::{self, meta_mut};
use crate::k8s::resource::ResourceDef;
use crate::k8s::status::{ApiError, StatusReason};
use crate::store::{Columns, Store, StoreError, WriteOp};
use crate::watch::{Obj, State};

/// Which part of an object a write addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subresource {
    Main,
    Status,
}

/// A LIST result before it is rendered.
#[derive(Debug)]
pub struct ListResult {
    pub items: Vec<Arc<Obj>>,
    pub resource_version: String,
    pub continue_token: Option<String>,
    pub remaining: Option<i64>,
}

/// How many times a patch, apply or delete without a resourceVersion precondition is
/// re-applied after another write to the object landed first. kube's storage
/// (GuaranteedUpdate) retries these without bound, so two controllers patching one object
/// never see a 409 they did not ask for; at kube's old handler bound of 5, two appliers in
/// lockstep lost five rounds in a row every few dozen requests. Every retry here follows
/// somebody else's successful write, so the loop makes progress; the bound only turns a
/// pathological hot spot into a 409 instead of a spin.
const PATCH_RETRIES: usize = 32;
/// How many times a create is retried when the database aborts it in a race.
const CREATE_RETRIES: usize = 3;

/// Why one attempt at a conditional write did not land.
enum AttemptError {
    /// The object changed since it was read, or the database aborted the write in a race
    /// with a concurrent transaction: read it again and retry.
    Stale,
    /// Final: the client gets this Status.
    Api(ApiError),
}

impl From<ApiError> for AttemptError {
    fn from(e: ApiError) -> Self {
        AttemptError::Api(e)
    }
}

/// The store's answer to a conditional write, with the retryable outcomes typed apart.
fn attempt(def: &ResourceDef, name: &str, e: StoreError) -> AttemptError {
    match e {
        StoreError::Conflict | StoreError::RetryNow(_) => AttemptError::Stale,
        other => AttemptError::Api(store_error(def, name, other)),
    }
}
/// kube retries a generated name this many times before reporting AlreadyExists.
const GENERATE_NAME_RETRIES: usize = 7;

pub struct Registry {
    store: Arc<Store>,
    state: Arc<State>,
    syncer: reads::Syncer,
}

impl Registry {
    pub fn new(
        store: Arc<Store>,
        state: Arc<State>,
        status: Arc<crate::cdc::status::StreamStatus>,
    ) -> Self {
        let syncer = reads::Syncer::new(store.clone(), state.clone(), status);
        Registry {
            store,
            state,
            syncer,
        }
    }

    /// Consistent reads on the replica that holds the slot may then skip writing a
    /// read point (see `reads`).
    pub fn set_stream_identity(&self, identity: StreamIdentity) {
        self.syncer.set_identity(identity);
    }

    pub fn state(&self) -> &Arc<State> {
        &self.state
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The object to modify. Unless `fresh`, the in-memory state's copy when it has one,
    /// as kube's GuaranteedUpdate starts from the watch cache: the write is conditional on
    /// its resourceVersion, so a stale copy costs a retry, never a lost write. Returns the
    /// object and whether it came from the table (authoritative).
    async fn current_for_write(
        &self,
        def: &ResourceDef,
        ns: &str,
        name: &str,
        fresh: bool,
    ) -> Result<(Value, bool), ApiError> {
        if !fresh {
            if let Some(o) = self.state.get(&def.kind, ns, name) {
                let v = o.value();
                if v.is_object() {
                    metrics::counter!("ark_registry_write_reads_total", "source" => "memory")
                        .increment(1);
                    return Ok((v, false));
                }
            }
        }
        metrics::counter!("ark_registry_write_reads_total", "source" => "table").increment(1);
        Ok((self.current(def, ns, name).await?, true))
    }

    /// The object as stored, read from the table, which is authoritative; the conditional
    /// write catches anything newer.
    async fn current(&self, def: &ResourceDef, ns: &str, name: &str) -> Result<Value, ApiError> {
        match self.store.get(&def.kind, ns, name).await {
            Ok(Some(o)) => Ok(o),
            Ok(None) => Err(ApiError::not_found(def.resource_ref(), name)),
            Err(e) => Err(store_error(def, name, e)),
        }
    }

    pub async fn create(
        &self,
        def: &ResourceDef,
        ns: &str,
        body: Value,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let mut obj = prepare::decode_body(def, body)?;
        prepare::check_unknown_fields(def, &obj, opts, None)?;
        prepare::check_namespace(def, ns, &mut obj)?;
        if !object::resource_version(&obj).is_empty() {
            return Err(ApiError::internal(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        prepare::for_create(def, &mut obj);
        managed::record(def, &mut obj, None, Subresource::Main, opts);
        let generate = object::name(&obj).is_empty()
            && object::meta_str(&obj, "generateName").is_some_and(|g| !g.is_empty());
        for attempt in 0.. {
            if generate {
                let prefix = object::meta_str(&obj, "generateName")
                    .unwrap_or("")
                    .to_string();
                meta_mut(&mut obj).insert(
                    "name".into(),
                    Value::String(crate::k8s::validation::generate_name(&prefix)),
                );
            }
            prepare::validate_create(def, &obj)?;
            if opts.dry_run {
                return Ok(obj);
            }
            let cols = columns(def, &obj)?;
            match self.store.write(WriteOp::Create(cols)).await {
                Ok(w) => {
                    set_rv(&mut obj, w.resource_version);
                    def.schema.apply_defaults(&mut obj);
                    return Ok(obj);
                }
                Err(StoreError::AlreadyExists)
                    if generate && attempt + 1 < GENERATE_NAME_RETRIES =>
                {
                    continue
                }
                Err(StoreError::RetryNow(_)) if attempt + 1 < CREATE_RETRIES => continue,
                Err(e) => return Err(store_error(def, object::name(&obj), e)),
            }
        }
        unreachable!("the loop returns")
    }

    pub async fn update(
        &self,
        def: &ResourceDef,
        ns: &str,
        name: &str,
        body: Value,
        sub: Subresource,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let mut new = prepare::decode_body(def, body)?;
        prepare::check_unknown_fields(def, &new, opts, None)?;
        prepare::check_namespace(def, ns, &mut new)?;
        let body_name = object::name(&new);
        if body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let client_rv = object::resource_version(&new).to_string();
        if client_rv.is_empty() {
            return Err(errors::rv_required(def, name));
        }
        let mut fresh = false;
        loop {
            let (old, current) = self.current_for_write(def, ns, name, fresh).await?;
            // Anything but a write from the in-memory copy is decided again on the table's:
            // the copy may be behind (kube's cacher does the same with its cache).
            fresh = true;
            if object::resource_version(&old) != client_rv {
                if !current {
                    continue;
                }
                return Err(ApiError::modified_conflict(def.resource_ref(), name));
            }
            match self
                .finish_update(def, old, new.clone(), sub, opts, current, false)
                .await
            {
                Ok(v) => return Ok(v),
                Err(_) if !current => continue,
                // The client named the version it updates: a newer one is its conflict to resolve.
                Err(AttemptError::Stale) => {
                    return Err(ApiError::modified_conflict(def.resource_ref(), name))
                }
                Err(AttemptError::Api(e)) => return Err(e),
            }
        }
    }

    pub async fn patch(
        &self,
        def: &ResourceDef,
        ns: &str,
        name: &str,
        kind: PatchKind,
        patch: &[u8],
        sub: Subresource,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let patch = patch::Patch::parse(kind, patch)?;
        let mut fresh = false;
        let mut attempts = 0;
        while attempts < PATCH_RETRIES {
            let (old, current) = self.current_for_write(def, ns, name, fresh).await?;
            // A try from the in-memory copy is free; any outcome but a write is decided
            // again on the table's copy, within the usual retries.
            fresh = true;
            if current {
                attempts += 1;
            }
            let patched = match patch.apply(&old) {
                Ok(p) => p,
                Err(_) if !current => continue,
                Err(e) => return Err(e),
            };
            let mut new = match prepare::decode_body(def, patched) {
                Ok(n) => n,
                Err(_) if !current => continue,
                Err(e) => return Err(e),
            };
            match prepare::check_unknown_fields(def, &new, opts, Some(&old)) {
                Ok(()) => {}
                Err(_) if !current => continue,
                Err(e) => return Err(e),
            }
            prepare::check_namespace(def, ns, &mut new)?;
            let pinned = patch.pins_resource_version();
            if object::resource_version(&new).is_empty() {
                meta_mut(&mut new).insert(
                    "resourceVersion".into(),
                    json!(object::resource_version(&old)),
                );
            } else if object::resource_version(&new) != object::resource_version(&old) {
                if !current {
                    continue;
                }
                return Err(ApiError::modified_conflict(def.resource_ref(), name));
            }
            match self
                .finish_update(def, old, new, sub, opts, current, false)
                .await
            {
                Ok(v) => return Ok(v),
                Err(_) if !current => continue,
                // A concurrent writer got in between: re-read and re-apply, unless the client
                // asked for a specific resourceVersion.
                Err(AttemptError::Stale) if !pinned => continue,
                Err(AttemptError::Stale) => {
                    return Err(ApiError::modified_conflict(def.resource_ref(), name))
                }
                Err(AttemptError::Api(e)) => return Err(e),
            }
        }
        Err(ApiError::modified_conflict(def.resource_ref(), name))
    }

    /// Prepares, validates and writes an update of `old` to `new`. `applied`: the field
    /// manager already wrote `new`'s managedFields (an apply); otherwise this records the
    /// write as an Update operation.
    #[allow(clippy::too_many_arguments)]
    async fn finish_update(
        &self,
        def: &ResourceDef,
        old: Value,
        mut new: Value,
        sub: Subresource,
        opts: &WriteOptions,
        current: bool,
        applied: bool,
    ) -> Result<Value, AttemptError> {
        let old_defaulted = prepare::defaulted(def, &old);
        prepare::for_update(def, &old, &old_defaulted, &mut new, sub);
        prepare::validate_update(def, &old, &new)?;
        if prepare::same_object(&old_defaulted, &new) {
            if !current {
                // "Nothing to write" is only an answer against the current object.
                return Err(AttemptError::Stale);
            }
            // Nothing changed: kube neither writes nor bumps resourceVersion.
            return Ok(old_defaulted);
        }
        // Against the defaulted copy, as kube's live object is defaulted when read: a
        // default is nobody's change.
        if !applied {
            managed::record(def, &mut new, Some(&old_defaulted), sub, opts);
        }
        if opts.dry_run {
            if !current {
                // A dry run writes nothing to catch a stale copy: answer from the table's.
                return Err(AttemptError::Stale);
            }
            return Ok(new);
        }
        self.write_update(def, &old, new).await
    }

    /// Writes `new` over `old`, conditional on `old`'s resourceVersion (a delete when the
    /// last finalizer of a terminating object went).
    async fn write_update(
        &self,
        def: &ResourceDef,
        old: &Value,
        mut new: Value,
    ) -> Result<Value, AttemptError> {
        let name = object::name(old).to_string();
        let expected_rv = parse_rv(old)?;
        let delete_now = object::is_terminating(&new) && object::finalizers(&new).is_empty();
        let cols = columns(def, &new)?;
        let op = if delete_now {
            WriteOp::Delete { cols, expected_rv }
        } else {
            WriteOp::Update { cols, expected_rv }
        };
        match self.store.write(op).await {
            Ok(w) => {
                set_rv(&mut new, w.resource_version);
                def.schema.apply_defaults(&mut new);
                Ok(new)
            }
            Err(e) => Err(attempt(def, &name, e)),
        }
    }

    pub async fn delete(
        &self,
        def: &ResourceDef,
        ns: &str,
        name: &str,
        del: &DeleteOptions,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        // As update and patch: the first attempt starts from the in-memory copy, and
        // anything but a write from it (a failed precondition, a dry run, an object
        // already terminating, a stale copy) is decided again on the table's copy.
        let mut fresh = false;
        for _ in 0..PATCH_RETRIES {
            let (old, current) = self.current_for_write(def, ns, name, fresh).await?;
            fresh = true;
            match self.delete_one(def, old, del, opts).await {
                Ok((v, wrote)) if wrote || current => return Ok(v),
                Ok(_) => continue,
                Err(AttemptError::Stale) => continue,
                Err(AttemptError::Api(e)) if current => return Err(e),
                Err(AttemptError::Api(_)) => continue,
            }
        }
        Err(ApiError::modified_conflict(def.resource_ref(), name))
    }

    async fn delete_one(
        &self,
        def: &ResourceDef,
        old: Value,
        del: &DeleteOptions,
        opts: &WriteOptions,
    ) -> Result<(Value, bool), AttemptError> {
        let name = object::name(&old).to_string();
        del.check_preconditions(def, &old)?;
        let expected_rv = parse_rv(&old)?;
        let mut new = old.clone();
        let mut finalizers = object::finalizers(&old);
        if let Some(f) = del.gc_finalizer() {
            if !object::is_terminating(&old) && !finalizers.iter().any(|x| x == f) {
                finalizers.push(f.to_string());
                meta_mut(&mut new).insert("finalizers".into(), json!(finalizers));
            }
        }
        let result = if finalizers.is_empty() {
            if opts.dry_run {
                return Ok((old, false));
            }
            let cols = columns(def, &new)?;
            self.store
                .write(WriteOp::Delete { cols, expected_rv })
                .await
        } else {
            if object::is_terminating(&old) && new == old {
                // Already being deleted: nothing more to do until the finalizers are removed.
                return Ok((old, false));
            }
            let m = meta_mut(&mut new);
            if !m.contains_key("deletionTimestamp") {
                m.insert(
                    "deletionTimestamp".into(),
                    json!(object::format_time(object::now())),
                );
                m.insert("deletionGracePeriodSeconds".into(), json!(0));
                let g = m.get("generation").and_then(Value::as_i64).unwrap_or(0);
                if g > 0 {
                    m.insert("generation".into(), json!(g + 1));
                }
            }
            if opts.dry_run {
                return Ok((new, false));
            }
            let cols = columns(def, &new)?;
            self.store
                .write(WriteOp::Update { cols, expected_rv })
                .await
        };
        match result {
            Ok(w) => {
                set_rv(&mut new, w.resource_version);
                def.schema.apply_defaults(&mut new);
                Ok((new, true))
            }
            Err(e) => Err(attempt(def, &name, e)),
        }
    }

    /// Deletes every object a list would return, one by one with the same options, and
    /// returns what was deleted (or marked for deletion).
    pub async fn delete_collection(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        list: &ListOptions,
        del: &DeleteOptions,
        opts: &WriteOptions,
    ) -> Result<Vec<Value>, ApiError> {
        let mut unpaged = list.clone();
        unpaged.limit = None;
        unpaged.continue_token = None;
        let items = self.list(def, ns, &unpaged).await?.items;
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            match self
                .delete(def, item.namespace(), item.name(), del, opts)
                .await
            {
                Ok(o) => out.push(o),
                // Gone in the meantime: that is what was asked for.
                Err(e) if e.reason == StatusReason::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}

fn set_rv(obj: &mut Value, rv: i64) {
    meta_mut(obj).insert("resourceVersion".into(), Value::String(rv.to_string()));
}

fn parse_rv(obj: &Value) -> Result<i64, ApiError> {
    object::resource_version(obj).parse().map_err(|_| {
        ApiError::internal(format!(
            "stored object has a malformed resourceVersion {:?}",
            object::resource_version(obj)
        ))
    })
}

fn columns(def: &ResourceDef, obj: &Value) -> Result<Columns, ApiError> {
    Columns::from_object(obj).map_err(|e| {
        tracing::error!(kind = %def.kind, error = %e, "object could not be mapped to a row");
        ApiError::internal(e.to_string())
    })
}
