//! Per-verb preparation and validation of objects: kube's custom-resource strategy.

use serde_json::{json, Map, Value};

use super::options::{FieldValidation, WriteOptions};
use super::Subresource;
use crate::k8s::object::{self, format_time, meta_mut, now, OBJECT_META_FIELDS};
use crate::k8s::resource::ResourceDef;
use crate::k8s::status::{go_quote, ApiError, FieldError};
use crate::k8s::validation;

/// Checks the body is an object of this kind's group and a served version.
pub fn decode_body(def: &ResourceDef, body: Value) -> Result<Value, ApiError> {
    let Value::Object(mut top) = body else {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    };
    let api_version = top
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let kind = top
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if kind.is_empty() {
        return Err(ApiError::bad_request(format!(
            "Object 'Kind' is missing in '{}'",
            short_json(&Value::Object(top))
        )));
    }
    if api_version.is_empty() {
        return Err(ApiError::bad_request(format!(
            "Object 'apiVersion' is missing in '{}'",
            short_json(&Value::Object(top))
        )));
    }
    let group = api_version.split_once('/').map(|(g, _)| g).unwrap_or("");
    if group != def.group {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({})",
            def.api_version
        )));
    }
    if !top.get("metadata").is_some_and(Value::is_object) {
        if top.get("metadata").is_some_and(|m| !m.is_null()) {
            return Err(ApiError::bad_request("metadata must be a JSON object"));
        }
        top.insert("metadata".into(), json!({}));
    }
    Ok(Value::Object(top))
}

/// kube's `fieldValidation` for a decoded object, before pruning drops anything: Strict
/// refuses fields the schema does not know, Warn names each in a warning, Ignore says
/// nothing. A create or update is refused with the message of kube's decoder (which names
/// the kind). A patch passes `patched_from`, the object it was applied to: only what the
/// patch brought counts (a row written in SQL may hold fields no client sent), and it is
/// refused with the bare strict decoding error, as kube's patch handler does.
pub fn check_unknown_fields(
    def: &ResourceDef,
    obj: &Value,
    opts: &WriteOptions,
    patched_from: Option<&Value>,
) -> Result<(), ApiError> {
    if opts.field_validation == FieldValidation::Ignore {
        return Ok(());
    }
    let mut unknown = def.schema.unknown_fields(obj);
    if unknown.is_empty() {
        return Ok(());
    }
    if let Some(old) = patched_from {
        let before = def.schema.unknown_fields(old);
        unknown.retain(|p| before.binary_search(p).is_err());
        if unknown.is_empty() {
            return Ok(());
        }
    }
    let patch = patched_from.is_some();
    let errs: Vec<String> = unknown
        .iter()
        .map(|p| format!("unknown field {}", go_quote(p)))
        .collect();
    match opts.field_validation {
        FieldValidation::Strict => {
            let strict = format!("strict decoding error: {}", errs.join(", "));
            Err(ApiError::bad_request(if patch {
                strict
            } else {
                format!(
                    "{} in version {} cannot be handled as a {}: {strict}",
                    def.kind,
                    go_quote(&def.version),
                    def.kind
                )
            }))
        }
        _ => {
            for e in errs {
                opts.warn(e);
            }
            Ok(())
        }
    }
}

fn short_json(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 512 {
        let mut end = 512;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &s[..end])
    } else {
        s
    }
}

/// The namespace in the URL and in the body must agree; an empty body namespace takes the URL's.
pub fn check_namespace(def: &ResourceDef, url_ns: &str, obj: &mut Value) -> Result<(), ApiError> {
    let m = meta_mut(obj);
    let body_ns = m
        .get("namespace")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if !def.namespaced {
        m.remove("namespace");
        return Ok(());
    }
    if body_ns.is_empty() {
        m.insert("namespace".into(), json!(url_ns));
    } else if body_ns != url_ns {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    Ok(())
}

fn prune_metadata(m: &mut Map<String, Value>) {
    m.retain(|k, _| OBJECT_META_FIELDS.contains(&k.as_str()));
    m.remove("selfLink");
}

/// Server-set fields on create: uid, creationTimestamp, generation; status dropped when the
/// kind has a status subresource; unknown fields pruned and defaults applied.
pub fn for_create(def: &ResourceDef, obj: &mut Value) {
    if def.has_status {
        if let Some(top) = obj.as_object_mut() {
            top.remove("status");
        }
    }
    let m = meta_mut(obj);
    prune_metadata(m);
    m.remove("deletionTimestamp");
    m.remove("deletionGracePeriodSeconds");
    m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    m.insert("creationTimestamp".into(), json!(format_time(now())));
    m.insert("generation".into(), json!(1));
    def.schema.prune(obj);
    super::strategy::mutate(def, obj);
    def.schema.apply_defaults(obj);
}

/// kube's `ValidateTypeMeta` for custom resources.
fn validate_type_meta(def: &ResourceDef, obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    if kind != def.kind {
        errs.push(FieldError::invalid(
            "kind",
            json!(kind),
            format!("must be {}", def.kind),
        ));
    }
    let av = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    if av != def.api_version {
        errs.push(FieldError::invalid(
            "apiVersion",
            json!(av),
            format!("must be {}", def.api_version),
        ));
    }
    errs
}

fn invalid(def: &ResourceDef, obj: &Value, errs: Vec<FieldError>) -> Result<(), ApiError> {
    if errs.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(
            def.resource_ref(),
            object::name(obj),
            errs,
        ))
    }
}

pub fn validate_create(def: &ResourceDef, obj: &Value) -> Result<(), ApiError> {
    let errs = validate_type_meta(def, obj);
    invalid(def, obj, errs)?;
    let mut errs = def.schema.validate(obj);
    if let Some(m) = object::meta(obj) {
        errs.extend(validation::validate_object_meta(m, def.namespaced));
    }
    invalid(def, obj, errs)
}

/// `old` with the schema's defaults applied: what `new` is compared with after
/// [`for_update`] (and what a no-op update answers). Made once per attempt.
pub fn defaulted(def: &ResourceDef, old: &Value) -> Value {
    let mut o = old.clone();
    def.schema.apply_defaults(&mut o);
    o
}

/// Whether two objects differ outside `metadata`, compared in place.
fn differs_outside_metadata(a: &Value, b: &Value) -> bool {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return a != b;
    };
    let count = |m: &Map<String, Value>| m.keys().filter(|k| k.as_str() != "metadata").count();
    count(a) != count(b)
        || a.iter()
            .filter(|(k, _)| k.as_str() != "metadata")
            .any(|(k, v)| b.get(k) != Some(v))
}

/// Carries over what an update may not change, separates spec from status, and sets
/// `generation`, as kube's strategies do for the main resource and for `/status`.
/// `old_defaulted` is [`defaulted`]`(def, old)`.
pub fn for_update(
    def: &ResourceDef,
    old: &Value,
    old_defaulted: &Value,
    new: &mut Value,
    sub: Subresource,
) {
    // managedFields omitted means "unchanged"; an explicit empty list resets them.
    let new_managed = object::meta(new)
        .and_then(|m| m.get("managedFields"))
        .cloned();
    match sub {
        Subresource::Status => {
            let status = new.get("status").cloned();
            let mut replaced = old.clone();
            if let Some(top) = replaced.as_object_mut() {
                match status {
                    Some(s) => {
                        top.insert("status".into(), s);
                    }
                    None => {
                        top.remove("status");
                    }
                }
            }
            *new = replaced;
        }
        Subresource::Main => {
            if def.has_status {
                if let Some(top) = new.as_object_mut() {
                    match old.get("status") {
                        Some(s) => {
                            top.insert("status".into(), s.clone());
                        }
                        None => {
                            top.remove("status");
                        }
                    }
                }
            }
            prune_metadata(meta_mut(new));
            def.schema.prune(new);
            super::strategy::mutate(def, new);
            def.schema.apply_defaults(new);
        }
    }
    if sub == Subresource::Status {
        def.schema.prune(new);
        def.schema.apply_defaults(new);
    }
    let spec_changed = differs_outside_metadata(old_defaulted, new);
    let no_meta = Map::new();
    let old_meta = object::meta(old).unwrap_or(&no_meta);
    let m = meta_mut(new);
    match new_managed {
        Some(v) => {
            m.insert("managedFields".into(), v);
        }
        None => match old_meta.get("managedFields") {
            Some(v) => {
                m.insert("managedFields".into(), v.clone());
            }
            None => {
                m.remove("managedFields");
            }
        },
    }
    if m.get("uid")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        if let Some(u) = old_meta.get("uid") {
            m.insert("uid".into(), u.clone());
        }
    }
    for key in ["creationTimestamp", "deletionTimestamp"] {
        match old_meta.get(key) {
            Some(v) => {
                m.insert(key.into(), v.clone());
            }
            None => {
                m.remove(key);
            }
        }
    }
    if let Some(g) = old_meta.get("deletionGracePeriodSeconds") {
        m.insert("deletionGracePeriodSeconds".into(), g.clone());
    } else {
        m.remove("deletionGracePeriodSeconds");
    }
    let old_gen = old_meta
        .get("generation")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let gen = if sub == Subresource::Main && spec_changed {
        old_gen + 1
    } else {
        old_gen
    };
    m.insert("generation".into(), json!(gen));
}

pub fn validate_update(def: &ResourceDef, old: &Value, new: &Value) -> Result<(), ApiError> {
    let errs = validate_type_meta(def, new);
    invalid(def, new, errs)?;
    let mut errs = def.schema.validate(new);
    if let (Some(nm), Some(om)) = (object::meta(new), object::meta(old)) {
        errs.extend(validation::validate_object_meta(nm, def.namespaced));
        errs.extend(validation::validate_object_meta_update(nm, om));
    }
    invalid(def, new, errs)
}

/// Whether an update would store exactly what is stored (after defaults), in which case
/// kube skips the write. `old_defaulted` is [`defaulted`]`(def, old)`.
pub fn same_object(old_defaulted: &Value, new: &Value) -> bool {
    old_defaulted == new
}
