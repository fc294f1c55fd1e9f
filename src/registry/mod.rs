//! The verbs over storage, with kube-apiserver's semantics for custom resources.
//!
//! This is the counterpart of kube's generic registry plus the custom-resource strategy:
//! what a create, update, patch or delete does to an object before and after it reaches the
//! store (uid, timestamps, generation, status/spec separation, finalizers, preconditions,
//! no-op detection, conflict retries). It speaks neither HTTP nor SQL: requests arrive as
//! JSON values and options, errors leave as [`ApiError`].

mod managed;
mod options;
mod patch;
mod prepare;
mod reads;
mod strategy;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};

pub use options::{DeleteOptions, ListOptions, WriteOptions};
pub use patch::PatchKind;

use crate::k8s::object::{self, meta_mut};
use crate::k8s::resource::ResourceDef;
use crate::k8s::status::{ApiError, FieldError};
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

/// How many times a patch is re-applied when the object changes underneath it.
const PATCH_RETRIES: usize = 5;
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

    pub fn state(&self) -> &Arc<State> {
        &self.state
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// GET from memory: consistent without a resourceVersion, from any state with "0",
    /// and not older than N otherwise.
    pub async fn get(
        &self,
        def: &ResourceDef,
        ns: &str,
        name: &str,
        rv: Option<&str>,
    ) -> Result<Arc<Obj>, ApiError> {
        self.read_point(rv).await?;
        self.state
            .get(&def.kind, ns, name)
            .ok_or_else(|| ApiError::not_found(def.resource_ref(), name))
    }

    /// Makes the state at least as new as the read asks for.
    pub async fn read_point(&self, rv: Option<&str>) -> Result<(), ApiError> {
        match rv {
            None => self.syncer.sync().await,
            Some("0") => Ok(()),
            Some(n) => {
                let n: u64 = n.parse().map_err(|_| {
                    ApiError::bad_request(format!("invalid resource version {n:?}"))
                })?;
                if self.state.wait_for_rv(n, Duration::from_secs(3)).await {
                    Ok(())
                } else {
                    Err(too_large(n, self.state.rv()))
                }
            }
        }
    }

    /// The object as stored, for read-modify-write: read from the table, which is
    /// authoritative; the conditional write catches anything newer.
    async fn current(&self, def: &ResourceDef, ns: &str, name: &str) -> Result<Value, ApiError> {
        match self.store.get(&def.kind, ns, name).await {
            Ok(Some(o)) => Ok(o),
            Ok(None) => Err(ApiError::not_found(def.resource_ref(), name)),
            Err(e) => Err(store_error(def, name, e)),
        }
    }

    /// LIST from memory, paging through one snapshot with continue tokens.
    pub async fn list(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        opts: &ListOptions,
    ) -> Result<ListResult, ApiError> {
        let token = opts
            .continue_token
            .as_deref()
            .map(options::ContinueToken::decode)
            .transpose()?;
        let snap = match &token {
            Some(t) if t.resource_version <= 0 => self.state.snapshot(),
            Some(t) => match self.state.snapshot_at(t.resource_version as u64) {
                Some(s) => s,
                None => return Err(expired_continue(t)),
            },
            None => match (
                opts.resource_version.as_deref(),
                opts.resource_version_match.as_deref(),
            ) {
                (Some(n), Some("Exact")) => {
                    let n: u64 = n.parse().map_err(|_| {
                        ApiError::bad_request(format!("invalid resource version {n:?}"))
                    })?;
                    let current = self.state.snapshot();
                    if current.rv() == n {
                        current
                    } else {
                        self.state.snapshot_at(n).ok_or_else(|| {
                            ApiError::gone(format!(
                                "too old resource version: {n} ({})",
                                current.rv()
                            ))
                        })?
                    }
                }
                (rv, _) => {
                    self.read_point(rv).await?;
                    self.state.snapshot()
                }
            },
        };
        let after = token
            .as_ref()
            .map(|t| (t.namespace.as_str(), t.name.as_str()));
        let (items, more, remaining) =
            snap.list(&def.kind, ns, &opts.labels, &opts.fields, after, opts.limit);
        let rv = snap.rv();
        let continue_token = if more {
            items.last().map(|o| {
                options::ContinueToken {
                    resource_version: rv as i64,
                    namespace: o.namespace().to_string(),
                    name: o.name().to_string(),
                }
                .encode()
            })
        } else {
            None
        };
        Ok(ListResult {
            items,
            resource_version: rv.to_string(),
            continue_token,
            remaining: (more && opts.labels.is_empty() && opts.fields.is_empty())
                .then_some(remaining as i64),
        })
    }

    pub async fn create(
        &self,
        def: &ResourceDef,
        ns: &str,
        body: Value,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let mut obj = prepare::decode_body(def, body)?;
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
        prepare::check_namespace(def, ns, &mut new)?;
        let body_name = object::name(&new);
        if body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let client_rv = object::resource_version(&new).to_string();
        if client_rv.is_empty() {
            return Err(rv_required(def, name));
        }
        let old = self.current(def, ns, name).await?;
        if object::resource_version(&old) != client_rv {
            return Err(ApiError::modified_conflict(def.resource_ref(), name));
        }
        self.finish_update(def, old, new, sub, opts).await
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
        let mut last_err = None;
        for _ in 0..PATCH_RETRIES {
            let old = self.current(def, ns, name).await?;
            let patched = patch.apply(&old)?;
            let mut new = prepare::decode_body(def, patched)?;
            prepare::check_namespace(def, ns, &mut new)?;
            let pinned = patch.pins_resource_version();
            if object::resource_version(&new).is_empty() {
                meta_mut(&mut new).insert(
                    "resourceVersion".into(),
                    json!(object::resource_version(&old)),
                );
            } else if object::resource_version(&new) != object::resource_version(&old) {
                return Err(ApiError::modified_conflict(def.resource_ref(), name));
            }
            match self.finish_update(def, old, new, sub, opts).await {
                // A concurrent writer got in between: re-read and re-apply, unless the client
                // asked for a specific resourceVersion.
                Err(e) if e.reason == "Conflict" && !pinned && is_modified_conflict(&e) => {
                    last_err = Some(e)
                }
                other => return other,
            }
        }
        Err(last_err.unwrap_or_else(|| ApiError::modified_conflict(def.resource_ref(), name)))
    }

    async fn finish_update(
        &self,
        def: &ResourceDef,
        old: Value,
        mut new: Value,
        sub: Subresource,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let name = object::name(&old).to_string();
        prepare::for_update(def, &old, &mut new, sub);
        prepare::validate_update(def, &old, &new)?;
        if prepare::same_object(def, &old, &new) {
            // Nothing changed: kube neither writes nor bumps resourceVersion.
            let mut old = old;
            def.schema.apply_defaults(&mut old);
            return Ok(old);
        }
        managed::record(def, &mut new, Some(&old), sub, opts);
        if opts.dry_run {
            return Ok(new);
        }
        let expected_rv = parse_rv(&old)?;
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
            Err(e) => Err(store_error(def, &name, e)),
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
        let mut last_err = None;
        for _ in 0..PATCH_RETRIES {
            let old = self.current(def, ns, name).await?;
            match self.delete_one(def, old, del, opts).await {
                Err(e) if e.reason == "Conflict" && is_modified_conflict(&e) => last_err = Some(e),
                other => return other,
            }
        }
        Err(last_err.unwrap_or_else(|| ApiError::modified_conflict(def.resource_ref(), name)))
    }

    async fn delete_one(
        &self,
        def: &ResourceDef,
        old: Value,
        del: &DeleteOptions,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
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
                return Ok(old);
            }
            let cols = columns(def, &new)?;
            self.store
                .write(WriteOp::Delete { cols, expected_rv })
                .await
        } else {
            if object::is_terminating(&old) && new == old {
                // Already being deleted: nothing more to do until the finalizers are removed.
                return Ok(old);
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
                return Ok(new);
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
                Ok(new)
            }
            Err(e) => Err(store_error(def, &name, e)),
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
                Err(e) if e.code == 404 => {}
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

fn is_modified_conflict(e: &ApiError) -> bool {
    e.message.ends_with("the object has been modified; please apply your changes to the latest version and try again")
}

/// kube's message when an update carries no resourceVersion. It names the resource, not the
/// kind, and prints the missing version as Go prints a zero uint64.
fn rv_required(def: &ResourceDef, name: &str) -> ApiError {
    let mut e = ApiError::invalid(
        crate::k8s::status::ResourceRef {
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
    e.message = e
        .message
        .replace("Invalid value: 0:", "Invalid value: 0x0:");
    e
}

/// Maps a storage failure to the Status a client should see. No SQL text leaves here.
pub fn store_error(def: &ResourceDef, name: &str, e: StoreError) -> ApiError {
    let r = def.resource_ref();
    match e {
        StoreError::AlreadyExists => ApiError::already_exists(r, name),
        StoreError::Conflict => ApiError::modified_conflict(r, name),
        StoreError::NotFound => ApiError::not_found(r, name),
        StoreError::Unavailable(detail) => {
            tracing::warn!(%detail, "database unavailable");
            ApiError::service_unavailable(
                "the storage backend (PostgreSQL) is unavailable; retry later",
            )
        }
        StoreError::OutcomeUnknown(detail) => {
            tracing::warn!(%detail, "connection lost during commit");
            ApiError::service_unavailable(
                "the connection to PostgreSQL was lost while committing; the write may or may not have been applied",
            )
        }
        StoreError::Rejected(detail) => {
            tracing::info!(%detail, kind = %def.kind, %name, "database refused object data");
            let why = if detail.contains("22P05") || detail.contains("\\u0000") {
                "strings must not contain the NUL character (\\u0000)"
            } else if detail.contains("54000") {
                "the object is too large to store"
            } else {
                "the database refused the object's data"
            };
            ApiError::invalid(
                r,
                name,
                vec![FieldError::invalid("", Value::String(name.into()), why)],
            )
        }
        StoreError::Internal(detail) => {
            tracing::error!(%detail, kind = %def.kind, %name, "storage error");
            ApiError::internal("storage error; see the server log")
        }
    }
}

/// The list metadata kube writes: resourceVersion, continue, remainingItemCount.
pub fn list_meta(r: &ListResult) -> Map<String, Value> {
    let mut meta = Map::new();
    meta.insert("resourceVersion".into(), json!(r.resource_version));
    if let Some(c) = &r.continue_token {
        meta.insert("continue".into(), json!(c));
    }
    if let Some(n) = r.remaining {
        meta.insert("remainingItemCount".into(), json!(n));
    }
    meta
}

/// A list of `def`'s list kind, written from each object's JSON serialized once when it
/// entered the state: no per-request serialization of the items.
pub fn list_json(def: &ResourceDef, r: &ListResult) -> Vec<u8> {
    let head =
        json!({"apiVersion": def.api_version, "kind": def.list_kind, "metadata": list_meta(r)})
            .to_string();
    let size: usize = r.items.iter().map(|o| o.json().len() + 1).sum();
    let mut out = Vec::with_capacity(head.len() + size + 16);
    out.extend_from_slice(&head.as_bytes()[..head.len() - 1]);
    out.extend_from_slice(b",\"items\":[");
    for (i, o) in r.items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(o.json());
    }
    out.extend_from_slice(b"]}");
    out
}

/// kube's answer when a LIST asks for a resourceVersion the state has not reached.
pub fn too_large(requested: u64, current: u64) -> ApiError {
    let mut e = ApiError::timeout(
        format!("Too large resource version: {requested}, current: {current}"),
        1,
    );
    if let Some(d) = e.details.as_mut() {
        d.causes.push(crate::k8s::status::FieldError::new(
            crate::k8s::status::FieldErrorType::ResourceVersionTooLarge,
            "",
            None,
            "Too large resource version",
        ));
    }
    e
}

/// kube's 410 for a continue token whose snapshot is gone, carrying a token that continues
/// from the current state instead.
fn expired_continue(t: &options::ContinueToken) -> ApiError {
    let mut e = ApiError::gone(
        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
    );
    e.continue_token = Some(
        options::ContinueToken {
            resource_version: 0,
            namespace: t.namespace.clone(),
            name: t.name.clone(),
        }
        .encode(),
    );
    e
}

/// A storage failure outside any one object, for reads that are not about a name.
pub fn storage_unavailable(e: &StoreError) -> ApiError {
    tracing::warn!(error = %e, "storage error during a consistent read");
    ApiError::service_unavailable("the storage backend (PostgreSQL) is unavailable; retry later")
}
