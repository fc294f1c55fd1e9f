//! `metadata.managedFields` for Update operations, as kube's field manager records them.
//!
//! Each create, update or patch records which fields its manager (the `fieldManager`
//! parameter, or the user agent's first word) set: fields that changed move to that
//! manager's entry and out of every other entry. Lists are atomic, as they are for custom
//! resources without list-type markers. Server-side apply is not served, so there are no
//! Apply entries to maintain; entries a client supplies are kept as given.

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

use super::{options::WriteOptions, Subresource};
use crate::k8s::object::{self, format_time, meta_mut, now};
use crate::k8s::resource::ResourceDef;

type Path = Vec<String>;

/// Metadata fields that are the server's, never a manager's.
const SYSTEM_META: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

/// Updates `new`'s managedFields for a write by `opts.field_manager` on top of `old`.
pub fn record(
    def: &ResourceDef,
    new: &mut Value,
    old: Option<&Value>,
    sub: Subresource,
    opts: &WriteOptions,
) {
    let empty = json!({});
    let (changed, removed) = diff(
        &scope(def, old.unwrap_or(&empty), sub),
        &scope(def, new, sub),
    );
    if changed.is_empty() && removed.is_empty() {
        return;
    }
    let subresource = match sub {
        Subresource::Main => None,
        Subresource::Status => Some("status"),
    };
    let mut entries: Vec<Value> = object::meta(new)
        .and_then(|m| m.get("managedFields"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let is_mine = |e: &Value| {
        e.get("manager").and_then(Value::as_str) == Some(opts.field_manager.as_str())
            && e.get("operation").and_then(Value::as_str) == Some("Update")
            && e.get("apiVersion").and_then(Value::as_str) == Some(def.api_version.as_str())
            && e.get("subresource").and_then(Value::as_str) == subresource
    };
    let mut mine: BTreeSet<Path> = BTreeSet::new();
    let mut others = Vec::new();
    for e in entries.drain(..) {
        let set = e.get("fieldsV1").map(tree_to_paths).unwrap_or_default();
        if is_mine(&e) {
            mine.extend(set);
        } else {
            let kept: BTreeSet<Path> = set
                .into_iter()
                .filter(|p| !touched(p, &changed, &removed))
                .collect();
            if !kept.is_empty() {
                let mut e = e;
                e["fieldsV1"] = paths_to_tree(&kept);
                others.push(e);
            }
        }
    }
    mine.retain(|p| !removed.iter().any(|r| p.starts_with(r)));
    mine.extend(changed);
    let mut out = others;
    if !mine.is_empty() {
        let mut e = Map::new();
        e.insert("manager".into(), json!(opts.field_manager));
        e.insert("operation".into(), json!("Update"));
        e.insert("apiVersion".into(), json!(def.api_version));
        e.insert("time".into(), json!(format_time(now())));
        e.insert("fieldsType".into(), json!("FieldsV1"));
        e.insert("fieldsV1".into(), paths_to_tree(&mine));
        if let Some(s) = subresource {
            e.insert("subresource".into(), json!(s));
        }
        out.push(Value::Object(e));
    }
    meta_mut(new).insert("managedFields".into(), Value::Array(out));
}

/// The part of an object a write through `sub` may own.
fn scope(def: &ResourceDef, obj: &Value, sub: Subresource) -> Value {
    let mut m = Map::new();
    let Some(top) = obj.as_object() else {
        return Value::Object(m);
    };
    for (k, v) in top {
        match (k.as_str(), sub) {
            ("apiVersion" | "kind", _) => {}
            ("metadata", Subresource::Main) => {
                if let Some(meta) = v.as_object() {
                    let kept: Map<String, Value> = meta
                        .iter()
                        .filter(|(k, _)| !SYSTEM_META.contains(&k.as_str()))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    if !kept.is_empty() {
                        m.insert(k.clone(), Value::Object(kept));
                    }
                }
            }
            ("status", Subresource::Status) => {
                m.insert(k.clone(), v.clone());
            }
            ("status", Subresource::Main) if def.has_status => {}
            (_, Subresource::Main) if k != "metadata" => {
                m.insert(k.clone(), v.clone());
            }
            _ => {}
        }
    }
    Value::Object(m)
}

/// Paths set or changed in `new` (with `.` for object nodes that are new), and paths removed.
fn diff(old: &Value, new: &Value) -> (BTreeSet<Path>, BTreeSet<Path>) {
    let mut changed = BTreeSet::new();
    let mut removed = BTreeSet::new();
    walk_diff(old, new, &mut Vec::new(), &mut changed, &mut removed);
    (changed, removed)
}

fn walk_diff(
    old: &Value,
    new: &Value,
    at: &mut Path,
    changed: &mut BTreeSet<Path>,
    removed: &mut BTreeSet<Path>,
) {
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            for (k, nv) in n {
                at.push(format!("f:{k}"));
                match o.get(k) {
                    Some(ov) if ov == nv => {}
                    Some(ov) => walk_diff(ov, nv, at, changed, removed),
                    None => collect(nv, at, changed),
                }
                at.pop();
            }
            for k in o.keys().filter(|k| !n.contains_key(*k)) {
                at.push(format!("f:{k}"));
                removed.insert(at.clone());
                at.pop();
            }
        }
        _ => collect(new, at, changed),
    }
}

fn collect(v: &Value, at: &mut Path, out: &mut BTreeSet<Path>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            // The root and `metadata` are not fields anyone owns as a whole.
            if !(at.is_empty() || (at.len() == 1 && at[0] == "f:metadata")) {
                let mut dot = at.clone();
                dot.push(".".into());
                out.insert(dot);
            }
            for (k, child) in m {
                at.push(format!("f:{k}"));
                collect(child, at, out);
                at.pop();
            }
        }
        _ => {
            if !at.is_empty() {
                out.insert(at.clone());
            }
        }
    }
}

/// Whether another manager loses `p` because this write changed or removed it (or an ancestor).
fn touched(p: &Path, changed: &BTreeSet<Path>, removed: &BTreeSet<Path>) -> bool {
    if changed.contains(p) {
        return true;
    }
    let is_ancestor_leaf = |c: &Path| {
        c.last().map(String::as_str) != Some(".") && p.len() > c.len() && p.starts_with(c)
    };
    changed.iter().any(is_ancestor_leaf) || removed.iter().any(|r| p.starts_with(r))
}

fn tree_to_paths(tree: &Value) -> BTreeSet<Path> {
    fn walk(v: &Value, at: &mut Path, out: &mut BTreeSet<Path>) {
        match v.as_object() {
            Some(m) if !m.is_empty() => {
                for (k, child) in m {
                    at.push(k.clone());
                    walk(child, at, out);
                    at.pop();
                }
            }
            _ => {
                if !at.is_empty() {
                    out.insert(at.clone());
                }
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(tree, &mut Vec::new(), &mut out);
    out
}

fn paths_to_tree(paths: &BTreeSet<Path>) -> Value {
    let mut root = Map::new();
    for p in paths {
        let mut node = &mut root;
        for seg in p {
            let child = node
                .entry(seg.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            if !child.is_object() {
                *child = Value::Object(Map::new());
            }
            node = child.as_object_mut().expect("made an object above");
        }
    }
    // kube writes `.` first in each node; a BTreeSet puts "." before "f:..." already.
    Value::Object(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_round_trip_through_fields_v1() {
        let tree = json!({"f:metadata": {"f:labels": {".": {}, "f:app": {}}}, "f:spec": {".": {}, "f:prompt": {}}});
        assert_eq!(paths_to_tree(&tree_to_paths(&tree)), tree);
    }

    #[test]
    fn a_changed_leaf_moves_to_the_writer_and_a_new_subtree_is_owned_whole() {
        let old = json!({"spec": {"a": 1, "b": 2}});
        let new = json!({"spec": {"a": 1, "b": 3, "c": {"d": 4}}});
        let (changed, removed) = diff(&old, &new);
        let tree = paths_to_tree(&changed);
        assert_eq!(
            tree,
            json!({"f:spec": {"f:b": {}, "f:c": {".": {}, "f:d": {}}}})
        );
        assert!(removed.is_empty());
        assert!(touched(
            &vec!["f:spec".into(), "f:b".into()],
            &changed,
            &removed
        ));
        assert!(!touched(
            &vec!["f:spec".into(), "f:a".into()],
            &changed,
            &removed
        ));
    }
}
