//! The fields pruning would drop, named as kube names them for `fieldValidation`: the
//! same walk as `prune_node` and `skip_prune`, reading instead of removing, so that Strict
//! can refuse a request and Warn can say what was dropped before anything is changed.
//!
//! Paths are kube's: fields joined by `.`, list items as `[i]`, no leading dot
//! (`spec.tools[0].nmae`); unknown keys of an object's `metadata` are `metadata.<key>`.

use serde_json::{Map, Value};

use super::{additional_schema, Node, Schema, META_FIELDS, OBJECT_META_FIELDS};

impl Schema {
    /// Every field of `obj` the schema does not know, sorted.
    pub fn unknown_fields(&self, obj: &Value) -> Vec<String> {
        let mut out = Vec::new();
        let mut path = String::new();
        if let Some(Value::Object(meta)) = obj.get("metadata") {
            unknown_meta(meta, "metadata", &mut out);
        }
        walk(obj, Some(&self.root), true, &mut path, &mut out);
        out.sort();
        out
    }
}

fn unknown_meta(meta: &Map<String, Value>, at: &str, out: &mut Vec<String>) {
    for k in meta.keys() {
        if !OBJECT_META_FIELDS.contains(&k.as_str()) {
            out.push(format!("{at}.{k}"));
        }
    }
}

fn push_field(path: &mut String, k: &str) -> usize {
    let len = path.len();
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(k);
    len
}

/// `prune_node`'s walk: under a node that does not know a key, the key is unknown.
fn walk(x: &Value, s: Option<&Node>, is_root: bool, path: &mut String, out: &mut Vec<String>) {
    match s {
        // No schema below: every key of every object here is pruned.
        None => everything(x, path, out),
        Some(s) => visit(x, s, is_root, s.preserve_unknown, path, out),
    }
}

/// One node. `preserving`: below `x-kubernetes-preserve-unknown-fields` (`skip_prune`'s
/// walk), where unknown keys stay and only known ones are looked into, items included.
fn visit(
    x: &Value,
    s: &Node,
    is_root: bool,
    preserving: bool,
    path: &mut String,
    out: &mut Vec<String>,
) {
    match x {
        Value::Object(map) => {
            let keep_meta = is_root || s.embedded;
            for (k, v) in map {
                if keep_meta && META_FIELDS.contains(&k.as_str()) {
                    continue;
                }
                let len = push_field(path, k);
                if let Some(p) = s.property(k) {
                    walk(v, Some(p), false, path, out);
                } else if let Some(add) = &s.additional {
                    walk(v, additional_schema(add), false, path, out);
                } else if !preserving {
                    out.push(path.clone());
                }
                path.truncate(len);
            }
            embedded_meta(map, s, is_root, path, out);
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                match (preserving, s.items.as_deref()) {
                    (false, item) => walk(v, item, false, path, out),
                    (true, Some(item)) => visit(v, item, false, true, path, out),
                    (true, None) => {}
                }
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// An embedded resource's metadata is coerced to ObjectMeta: its other keys are dropped.
fn embedded_meta(
    map: &Map<String, Value>,
    s: &Node,
    is_root: bool,
    path: &mut String,
    out: &mut Vec<String>,
) {
    if s.embedded && !is_root {
        if let Some(Value::Object(meta)) = map.get("metadata") {
            let len = push_field(path, "metadata");
            unknown_meta(meta, path, out);
            path.truncate(len);
        }
    }
}

fn everything(x: &Value, path: &mut String, out: &mut Vec<String>) {
    match x {
        Value::Object(map) => {
            for k in map.keys() {
                let len = push_field(path, k);
                out.push(path.clone());
                path.truncate(len);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                everything(v, path, out);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::Schema;

    fn schema() -> Schema {
        Schema::compile(&json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "properties": {
                        "prompt": {"type": "string"},
                        "tools": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}}}},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true,
                                 "properties": {"known": {"type": "object", "properties": {"a": {"type": "string"}}}}},
                        "template": {"type": "object", "x-kubernetes-embedded-resource": true,
                                     "properties": {"spec": {"type": "object"}}}
                    }
                }
            }
        }))
        .unwrap()
    }

    #[test]
    fn unknown_fields_are_named_by_kube_paths_and_sorted() {
        let obj = json!({
            "apiVersion": "ark.mckinsey.com/v1alpha1", "kind": "Agent",
            "metadata": {"name": "a", "colour": "red"},
            "spec": {
                "prompt": "p", "promt": "typo",
                "tools": [{"name": "t"}, {"name": "u", "nmae": "x"}],
                "labels": {"any": "thing"},
                "free": {"whatever": {"deep": 1}, "known": {"a": "x", "b": "y"}},
                "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "bogus": 1}, "extra": 2}
            },
            "stray": true
        });
        assert_eq!(
            schema().unknown_fields(&obj),
            vec![
                "metadata.colour",
                "spec.free.known.b",
                "spec.promt",
                "spec.template.extra",
                "spec.template.metadata.bogus",
                "spec.tools[1].nmae",
                "stray",
            ]
        );
    }

    #[test]
    fn an_object_the_schema_knows_has_no_unknown_fields() {
        let obj = json!({"apiVersion": "x/v1", "kind": "Agent", "metadata": {"name": "a", "labels": {"k": "v"}},
                         "spec": {"prompt": "p", "tools": [], "free": {"anything": [1, {"x": 2}]}}});
        assert!(schema().unknown_fields(&obj).is_empty());
    }
}
