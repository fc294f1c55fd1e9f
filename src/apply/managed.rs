//! `metadata.managedFields` as kube-apiserver keeps it for custom resources: the
//! managedfields pipeline of k8s.io/apimachinery (decode, before-first-apply, manager
//! identity, timestamps, the meta fields nobody owns, the cap on Update entries, the
//! last-applied annotation of `kubectl`) around [`Updater`], and the exact encoding of
//! the entries.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::path::{go_json, go_string, path_string, PathElement};
use super::schema::Schema;
use super::set::Set;
use super::typed;
use super::updater::{Conflict, ManagedFields, Updater, VersionedSet};
use super::ApplyError;

/// What kube's field manager knows about the endpoint a write came through.
pub struct Endpoint<'a> {
    pub schema: &'a Schema,
    /// `group/version` of the resource.
    pub api_version: &'a str,
    pub kind: &'a str,
    /// `Some("status")` on the status subresource.
    pub subresource: Option<&'a str>,
    /// Fields this endpoint resets (kube's `GetResetFields`).
    pub ignored: Option<&'a Set>,
    /// The time written into entries this write touches (RFC 3339, seconds).
    pub now: &'a str,
}

/// Decoded managedFields: each manager's fields and the time of its entry.
#[derive(Debug, Clone, Default)]
pub struct Managed {
    pub fields: ManagedFields,
    pub times: BTreeMap<String, Option<String>>,
}

impl Managed {
    fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}

const MAX_UPDATE_MANAGERS: usize = 10;
const CURRENT_OPERATION: &str = "current-operation";
const BEFORE_FIRST_APPLY: &str = "before-first-apply";
const ANCIENT_CHANGES: &str = "ancient-changes";
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// kube's limit on all annotations together.
const TOTAL_ANNOTATION_SIZE: usize = 256 * 1024;

/// A manager's identity: its entry without time and fields, as Go's encoding/json writes
/// it (Apply entries leave out the apiVersion, so one Apply entry serves every version).
pub fn identifier(manager: &str, operation: &str, api_version: &str, subresource: &str) -> String {
    let mut s = String::from("{");
    let mut first = true;
    let mut field = |s: &mut String, k: &str, v: &str| {
        if v.is_empty() {
            return;
        }
        if !first {
            s.push(',');
        }
        first = false;
        go_string(k, s);
        s.push(':');
        go_string(v, s);
    };
    field(&mut s, "manager", manager);
    field(&mut s, "operation", operation);
    if operation != "Apply" {
        field(&mut s, "apiVersion", api_version);
    }
    field(&mut s, "subresource", subresource);
    s.push('}');
    s
}

/// The parts of an identifier.
struct Identity {
    manager: String,
    operation: String,
    api_version: String,
    subresource: String,
}

fn parse_identifier(id: &str) -> Identity {
    let v: Value = serde_json::from_str(id).unwrap_or_default();
    let get = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    Identity {
        manager: get("manager"),
        operation: get("operation"),
        api_version: get("apiVersion"),
        subresource: get("subresource"),
    }
}

/// kube's way of naming a manager in a conflict: `"kubectl"`, or for an Update entry
/// `"editor" using ark.mckinsey.com/v1alpha1`.
pub fn print_manager(id: &str) -> String {
    let i = parse_identifier(id);
    let mut s = String::new();
    go_string(&i.manager, &mut s);
    if !i.subresource.is_empty() {
        s.push_str(" with subresource ");
        go_string(&i.subresource, &mut s);
    }
    if i.operation == "Update" {
        s.push_str(" using ");
        s.push_str(&i.api_version);
    }
    s
}

/// kube's message for apply conflicts.
pub fn conflict_message(conflicts: &[Conflict]) -> String {
    if conflicts.len() == 1 {
        return format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            print_manager(&conflicts[0].manager),
            path_string(&conflicts[0].path)
        );
    }
    let mut by_manager: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for c in conflicts {
        by_manager
            .entry(c.manager.as_str())
            .or_default()
            .push(path_string(&c.path));
    }
    let mut lines = Vec::new();
    for (m, paths) in by_manager {
        lines.push(format!("conflicts with {}:", print_manager(m)));
        lines.extend(paths.into_iter().map(|p| format!("- {p}")));
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

fn entries(obj: &Value) -> Option<&Value> {
    obj.get("metadata")?.get("managedFields")
}

/// Decodes managedFields; an entry kube would not accept makes the whole list unusable.
pub fn decode(list: Option<&Value>) -> Result<Managed, String> {
    let mut m = Managed::default();
    let Some(list) = list.filter(|l| !l.is_null()) else {
        return Ok(m);
    };
    let Some(items) = list.as_array() else {
        return Err("managedFields must be a list".to_string());
    };
    for (i, e) in items.iter().enumerate() {
        let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("");
        let operation = s("operation");
        if operation != "Apply" && operation != "Update" {
            return Err("operation must be `Apply` or `Update`".to_string());
        }
        if s("apiVersion").is_empty() {
            return Err("apiVersion must not be empty".to_string());
        }
        match s("fieldsType") {
            "FieldsV1" => {}
            "" => return Err(format!("missing fieldsType in managed fields entry {i}")),
            other => {
                return Err(format!(
                    "invalid fieldsType {other:?} in managed fields entry {i}"
                ))
            }
        }
        let id = identifier(s("manager"), operation, s("apiVersion"), s("subresource"));
        let set = match e.get("fieldsV1") {
            Some(f) if !f.is_null() => {
                Set::from_fields_v1(f).map_err(|err| format!("error decoding set: {err}"))?
            }
            _ => Set::new(),
        };
        m.fields.insert(
            id.clone(),
            VersionedSet {
                set,
                api_version: s("apiVersion").to_string(),
                applied: operation == "Apply",
            },
        );
        m.times.insert(
            id,
            e.get("time").and_then(Value::as_str).map(str::to_string),
        );
    }
    Ok(m)
}

/// Seconds since the epoch of an entry's time (0 without one), for kube's orderings.
fn seconds(t: &Option<String>) -> i64 {
    t.as_deref()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|d| d.timestamp())
        .unwrap_or(0)
}

/// The entries, in kube's order: Apply before Update, then by time, manager, apiVersion
/// and subresource. `None` when no manager is left (the field is then omitted).
pub fn encode(m: &Managed) -> Option<Value> {
    if m.fields.is_empty() {
        return None;
    }
    let mut out: Vec<(String, i64, Identity, Value)> = Vec::new();
    for (id, vs) in &m.fields {
        let mut ident = parse_identifier(id);
        ident.api_version = vs.api_version.clone();
        if vs.applied {
            ident.operation = "Apply".to_string();
        }
        let time = m.times.get(id).cloned().flatten();
        let mut e = Map::new();
        if !ident.manager.is_empty() {
            e.insert("manager".into(), json!(ident.manager));
        }
        if !ident.operation.is_empty() {
            e.insert("operation".into(), json!(ident.operation));
        }
        if !ident.api_version.is_empty() {
            e.insert("apiVersion".into(), json!(ident.api_version));
        }
        if let Some(t) = &time {
            e.insert("time".into(), json!(t));
        }
        e.insert("fieldsType".into(), json!("FieldsV1"));
        e.insert("fieldsV1".into(), vs.set.to_fields_v1());
        if !ident.subresource.is_empty() {
            e.insert("subresource".into(), json!(ident.subresource));
        }
        out.push((
            ident.operation.clone(),
            seconds(&time),
            ident,
            Value::Object(e),
        ));
    }
    out.sort_by(|a, b| {
        a.0.cmp(&b.0)
            .then(a.1.cmp(&b.1))
            .then_with(|| a.2.manager.cmp(&b.2.manager))
            .then_with(|| a.2.api_version.cmp(&b.2.api_version))
            .then_with(|| a.2.subresource.cmp(&b.2.subresource))
    });
    Some(Value::Array(out.into_iter().map(|e| e.3).collect()))
}

fn set_entries(obj: &mut Value, m: &Managed) {
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    match encode(m) {
        Some(v) => {
            meta.insert("managedFields".into(), v);
        }
        None => {
            meta.remove("managedFields");
        }
    }
}

/// `[]` or `[{}]`: an Update that asks to forget all tracking.
fn is_reset(list: Option<&Value>) -> bool {
    match list.and_then(Value::as_array) {
        Some(items) if items.is_empty() => true,
        Some(items) if items.len() == 1 => items[0].as_object().is_some_and(Map::is_empty),
        _ => false,
    }
}

/// Fields of the object no manager owns (kube's strip-meta manager).
fn strip_meta(set: &Set) -> Set {
    let f = PathElement::field;
    let mut strip = Set::new();
    strip.insert(&[f("apiVersion")]);
    strip.insert(&[f("kind")]);
    strip.insert(&[f("metadata")]);
    for m in [
        "name",
        "namespace",
        "creationTimestamp",
        "selfLink",
        "uid",
        "clusterName",
        "generation",
        "managedFields",
        "resourceVersion",
    ] {
        strip.insert(&[f("metadata"), f(m)]);
    }
    set.difference(&strip)
}

fn has_uid(obj: &Value) -> bool {
    obj.pointer("/metadata/uid")
        .and_then(Value::as_str)
        .is_some_and(|u| !u.is_empty())
}

fn empty_object(ep: &Endpoint) -> Value {
    json!({"apiVersion": ep.api_version, "kind": ep.kind})
}

/// Records an Update (create, PUT, merge or JSON patch) by `manager` in `new`'s
/// managedFields. `live` is `None` on create.
pub fn record_update(ep: &Endpoint, live: Option<&Value>, new: &mut Value, manager: &str) {
    let live_managed = || decode(live.and_then(entries)).unwrap_or_default();
    let mut managed = if ep.subresource.is_some() {
        live_managed()
    } else if is_reset(entries(new)) {
        Managed::default()
    } else {
        match decode(entries(new)) {
            Ok(m) if !m.is_empty() => m,
            _ => live_managed(),
        }
    };
    // Objects that existed before any tracking stay untracked until an apply.
    if managed.is_empty() && live.is_some_and(has_uid) {
        set_entries(new, &managed);
        return;
    }
    // The live object's entries need no stripping: managedFields is an atomic list, so
    // comparing it with its absence from `new` is one leaf, and nobody owns it.
    let empty = empty_object(ep);
    if let Some(meta) = new.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    update_inner(ep, live.unwrap_or(&empty), new, &mut managed, manager);
    set_entries(new, &managed);
}

/// The Update part of kube's pipeline below its skip-non-applied step.
fn update_inner(ep: &Endpoint, live: &Value, new: &Value, managed: &mut Managed, manager: &str) {
    let id = identifier(
        if manager.is_empty() {
            "unknown"
        } else {
            manager
        },
        "Update",
        ep.api_version,
        ep.subresource.unwrap_or(""),
    );
    let updater = Updater {
        schema: ep.schema,
        ignored: ep.ignored,
    };
    updater.update_op(
        live,
        new,
        ep.api_version,
        &mut managed.fields,
        CURRENT_OPERATION,
    );
    if let Some(mut vs) = managed.fields.remove(CURRENT_OPERATION) {
        vs.set = strip_meta(&vs.set);
        if !vs.set.is_empty() {
            if let Some(previous) = managed.fields.get(&id) {
                vs.set = vs.set.union(&previous.set);
            }
            managed.fields.insert(id.clone(), vs);
            managed.times.insert(id, Some(ep.now.to_string()));
        }
    }
    cap_update_managers(managed);
}

/// More than ten Update entries: the oldest merge into `ancient-changes` (one per version).
fn cap_update_managers(m: &mut Managed) {
    let mut updaters: Vec<String> = m
        .fields
        .iter()
        .filter(|(_, vs)| !vs.applied)
        .map(|(id, _)| id.clone())
        .collect();
    if updaters.len() <= MAX_UPDATE_MANAGERS {
        return;
    }
    updaters.sort_by(|a, b| {
        let (ta, tb) = (
            seconds(m.times.get(a).unwrap_or(&None)),
            seconds(m.times.get(b).unwrap_or(&None)),
        );
        ta.cmp(&tb).then_with(|| a.cmp(b))
    });
    let mut length = updaters.len();
    let mut first_of_version: BTreeMap<String, String> = BTreeMap::new();
    for manager in updaters {
        if length <= MAX_UPDATE_MANAGERS {
            break;
        }
        let Some(vs) = m.fields.get(&manager).cloned() else {
            continue;
        };
        let time = m.times.get(&manager).cloned().flatten();
        let bucket = identifier(ANCIENT_CHANGES, "Update", &vs.api_version, "");
        match first_of_version.get(&vs.api_version) {
            Some(first) => {
                if !m.fields.contains_key(&bucket) {
                    if let Some(s) = m.fields.remove(first) {
                        m.fields.insert(bucket.clone(), s);
                    }
                }
                let merged = vs.set.union(&m.fields[&bucket].set);
                m.fields.insert(
                    bucket.clone(),
                    VersionedSet {
                        set: merged,
                        api_version: vs.api_version.clone(),
                        applied: vs.applied,
                    },
                );
                m.fields.remove(&manager);
                length -= 1;
                m.times.insert(bucket, time);
            }
            None => {
                first_of_version.insert(vs.api_version.clone(), manager);
            }
        }
    }
    let fields = &m.fields;
    m.times.retain(|id, _| fields.contains_key(id));
}

/// The result of an apply.
#[derive(Debug)]
pub struct Applied {
    /// The object to store, with its managedFields.
    pub object: Value,
    /// Whether anything but managedFields differs from the live object.
    pub changed: bool,
}

/// An Apply of `patch` by `manager` onto `live` (`None`: the object does not exist yet).
pub fn apply(
    ep: &Endpoint,
    live: Option<&Value>,
    patch: &Value,
    manager: &str,
    force: bool,
) -> Result<Applied, ApplyError> {
    let empty = empty_object(ep);
    let live = live.unwrap_or(&empty);
    let managed = decode(entries(live))
        .map_err(|e| ApplyError::Internal(format!("failed to decode managed fields: {e}")))?;
    let av = patch
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let kind = patch.get("kind").and_then(Value::as_str).unwrap_or("");
    if av != ep.api_version || kind != ep.kind {
        let (group, version) = av.rsplit_once('/').unwrap_or(("", av));
        return Err(ApplyError::BadRequest(format!(
            "invalid object type: {group}/{version}, Kind={kind}"
        )));
    }
    if entries(patch).is_some_and(|m| !m.is_null()) {
        return Err(ApplyError::BadRequest(
            "metadata.managedFields must be nil".to_string(),
        ));
    }
    let errs = typed::validate(ep.schema, ep.schema.root(), patch, false);
    if !errs.is_empty() {
        let what = format!(
            "failed to create typed patch object ({}/{}; {}, Kind={}): {}",
            patch
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or(""),
            patch
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or(""),
            ep.api_version,
            ep.kind,
            typed::errors_string(&errs)
        );
        return Err(if errs.iter().any(|e| e.duplicate) {
            ApplyError::Duplicate(what)
        } else {
            ApplyError::BadRequest(what)
        });
    }
    let first = apply_inner(ep, live, patch, managed.clone(), manager, force);
    let (object, managed) = match first {
        Err(ApplyError::Conflict(conflicts)) if manager == "kubectl" => {
            // kubectl moving from client-side apply: fields its last-applied annotation
            // set, unchanged since, are its own.
            match allowed_by_last_applied(ep, live) {
                Some(allowed) => {
                    let rest: Vec<Conflict> = conflicts
                        .into_iter()
                        .filter(|c| !allowed.has(&c.path))
                        .collect();
                    if rest.is_empty() {
                        apply_inner(ep, live, patch, managed, manager, true)?
                    } else {
                        return Err(ApplyError::Conflict(rest));
                    }
                }
                None => return Err(ApplyError::Conflict(conflicts)),
            }
        }
        other => other?,
    };
    let changed = object.is_some();
    let mut object = object.unwrap_or_else(|| live.clone());
    if manager == "kubectl" && has_last_applied(&object) {
        set_last_applied(&mut object, patch);
    }
    set_entries(&mut object, &managed);
    Ok(Applied { object, changed })
}

fn apply_inner(
    ep: &Endpoint,
    live: &Value,
    patch: &Value,
    mut managed: Managed,
    manager: &str,
    force: bool,
) -> Result<(Option<Value>, Managed), ApplyError> {
    if managed.is_empty() {
        // Whatever the object holds from before tracking belongs to before-first-apply.
        update_inner(
            ep,
            &empty_object(ep),
            live,
            &mut managed,
            BEFORE_FIRST_APPLY,
        );
    }
    let id = identifier(
        if manager.is_empty() {
            "unknown"
        } else {
            manager
        },
        "Apply",
        ep.api_version,
        ep.subresource.unwrap_or(""),
    );
    let updater = Updater {
        schema: ep.schema,
        ignored: ep.ignored,
    };
    let new = updater
        .apply_op(live, patch, ep.api_version, &mut managed.fields, &id, force)
        .map_err(ApplyError::Conflict)?;
    if let Some(vs) = managed.fields.get_mut(&id) {
        vs.set = strip_meta(&vs.set);
        if vs.set.is_empty() {
            managed.fields.remove(&id);
        }
    }
    if new.is_some() {
        managed.times.insert(id, Some(ep.now.to_string()));
    }
    let fields = &managed.fields;
    managed.times.retain(|id, _| fields.contains_key(id));
    Ok((new, managed))
}

fn has_last_applied(obj: &Value) -> bool {
    obj.pointer("/metadata/annotations")
        .and_then(|a| a.get(LAST_APPLIED))
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty())
}

/// kubectl's annotation, kept current by server-side applies once it exists (so that a
/// later client-side apply computes the right patch).
fn set_last_applied(obj: &mut Value, patch: &Value) {
    let mut p = patch.clone();
    if let Some(a) = p
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        a.remove(LAST_APPLIED);
    }
    let mut text = String::new();
    go_json(&p, &mut text);
    text.push('\n');
    let Some(ann) = obj
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    ann.insert(LAST_APPLIED.into(), Value::String(text));
    let total: usize = ann
        .iter()
        .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
        .sum();
    if total > TOTAL_ANNOTATION_SIZE {
        ann.remove(LAST_APPLIED);
    }
}

/// Fields the last-applied annotation sets and the live object still holds unchanged.
fn allowed_by_last_applied(ep: &Endpoint, live: &Value) -> Option<Set> {
    let text = live
        .pointer("/metadata/annotations")?
        .get(LAST_APPLIED)?
        .as_str()?;
    let last: Value = serde_json::from_str(text).ok()?;
    if last.get("apiVersion").and_then(Value::as_str) != Some(ep.api_version) {
        return None;
    }
    let root = ep.schema.root();
    if !typed::validate(ep.schema, root, &last, false).is_empty() {
        return None;
    }
    let set = typed::to_field_set(ep.schema, root, &last);
    let cmp = typed::compare(ep.schema, root, &last, live);
    Some(
        set.difference(&cmp.modified)
            .difference(&cmp.added)
            .difference(&cmp.removed),
    )
}
