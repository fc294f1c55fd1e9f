//! Validation kube-apiserver runs after the schema validator, in its order:
//! `objectmeta.Validate` (apiVersion, kind and metadata of `x-kubernetes-embedded-resource`
//! objects below the root) and `listtype.ValidateListSetsAndMaps` (uniqueness in `set` and
//! `map` lists). Paths are printed as apimachinery's `field.Path` prints them: `a.b`, `a[k]`,
//! `a[0]`.

use std::collections::HashMap;

use serde_json::{json, Map, Value};

use super::super::status::{FieldError, FieldErrorType};
use super::errors::canonical;
use super::{Additional, Node};

pub(super) fn validate(root: &Node, obj: &Value, out: &mut Vec<FieldError>) {
    embedded(None, obj, root, out);
    if let Value::Object(m) = obj {
        list_maps(None, root, m, out);
    }
}

// ---------------------------------------------------------------------------------------
// Field paths as apimachinery's field.Path prints them
// ---------------------------------------------------------------------------------------

fn child(p: Option<&str>, name: &str) -> String {
    match p {
        None => name.to_string(),
        Some(p) => format!("{p}.{name}"),
    }
}

fn key(p: Option<&str>, k: &str) -> String {
    format!("{}[{k}]", p.unwrap_or(""))
}

fn index(p: Option<&str>, i: usize) -> String {
    format!("{}[{i}]", p.unwrap_or(""))
}

// ---------------------------------------------------------------------------------------
// objectmeta.Validate: embedded resources below the root
// ---------------------------------------------------------------------------------------

fn embedded(path: Option<&str>, x: &Value, s: &Node, out: &mut Vec<FieldError>) {
    match x {
        Value::Object(m) => {
            if s.embedded {
                embedded_resource(path, m, out);
            }
            for (k, v) in m {
                if let Some(p) = s.property(k) {
                    embedded(Some(&child(path, k)), v, p, out);
                } else if let Some(Additional::Schema(ap)) = &s.additional {
                    embedded(Some(&key(path, k)), v, ap, out);
                }
            }
        }
        Value::Array(a) => {
            if let Some(items) = &s.items {
                for (i, v) in a.iter().enumerate() {
                    embedded(Some(&index(path, i)), v, items, out);
                }
            }
        }
        _ => {}
    }
}

fn embedded_resource(path: Option<&str>, m: &Map<String, Value>, out: &mut Vec<FieldError>) {
    for required in ["apiVersion", "kind"] {
        if !m.contains_key(required) {
            out.push(FieldError::required(child(path, required), ""));
        }
    }
    for (k, v) in m {
        let at = child(path, k);
        match (k.as_str(), v) {
            ("apiVersion" | "kind", Value::String(s)) if s.is_empty() => {
                out.push(FieldError::required(at, ""))
            }
            ("apiVersion" | "kind", v) if !v.is_string() => {
                out.push(FieldError::invalid(at, v.clone(), "must be a string"))
            }
            ("apiVersion", Value::String(s)) if s != "/" && s.matches('/').count() > 1 => {
                let detail = format!("unexpected GroupVersion string: {s}");
                out.push(FieldError::invalid(at, v.clone(), detail));
            }
            ("kind", Value::String(s)) => {
                let errs = dns1035_label(&s.to_lowercase());
                if !errs.is_empty() {
                    let detail = format!(
                        "may have mixed case, but should otherwise match: {}",
                        errs.join(",")
                    );
                    out.push(FieldError::invalid(at, v.clone(), detail));
                }
            }
            ("metadata", meta) => embedded_metadata(&at, meta, out),
            _ => {}
        }
    }
}

fn dns1035_label(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > 63 {
        errs.push("must be no more than 63 characters".to_string());
    }
    let b = v.as_bytes();
    let ok = b.first().is_some_and(u8::is_ascii_lowercase)
        && b.last()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-');
    if !ok {
        errs.push("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')".to_string());
    }
    errs
}

fn dns1123_label(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > 63 {
        errs.push("must be no more than 63 characters".to_string());
    }
    let b = v.as_bytes();
    let edge = |c: Option<&u8>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !(edge(b.first())
        && edge(b.last())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-'))
    {
        errs.push("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')".to_string());
    }
    errs
}

/// Decoding into `ObjectMeta` (type errors stop it, as a failed unmarshal does), then the
/// part of `ValidateObjectMeta` that applies to any name: path-segment name, generateName,
/// namespace, generation. Label and annotation syntax is not checked here.
fn embedded_metadata(at: &str, meta: &Value, out: &mut Vec<FieldError>) {
    let m = match meta {
        Value::Object(m) => m,
        Value::Null => return,
        other => {
            let msg = format!(
                "json: cannot unmarshal {} into Go value of type v1.ObjectMeta",
                json_kind(other)
            );
            out.push(FieldError::invalid(at, meta.clone(), msg));
            return;
        }
    };
    for (field, v) in m {
        let expected = match field.as_str() {
            "name" | "generateName" | "namespace" | "selfLink" | "uid" | "resourceVersion"
            | "creationTimestamp" | "deletionTimestamp" => v.is_string(),
            "generation" | "deletionGracePeriodSeconds" => v.is_i64(),
            "labels" | "annotations" => v
                .as_object()
                .is_some_and(|o| o.values().all(|x| x.is_string() || x.is_null())),
            "finalizers" => v
                .as_array()
                .is_some_and(|a| a.iter().all(|x| x.is_string() || x.is_null())),
            "ownerReferences" | "managedFields" => v.is_array(),
            _ => true,
        };
        if !expected && !v.is_null() {
            let msg = format!(
                "json: cannot unmarshal {} into Go struct field ObjectMeta.{field}",
                json_kind(v)
            );
            out.push(FieldError::invalid(at, meta.clone(), msg));
            return;
        }
    }
    let text = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or("");
    let generate_name = text("generateName");
    for msg in path_segment_errors(generate_name, true) {
        out.push(FieldError::invalid(
            format!("{at}.generateName"),
            json!(generate_name),
            msg,
        ));
    }
    // kube validates embedded metadata with a placeholder name when none is given.
    let name = if text("name").is_empty() {
        "fakename"
    } else {
        text("name")
    };
    for msg in path_segment_errors(name, false) {
        out.push(FieldError::invalid(format!("{at}.name"), json!(name), msg));
    }
    let namespace = text("namespace");
    if !namespace.is_empty() {
        for msg in dns1123_label(namespace) {
            out.push(FieldError::invalid(
                format!("{at}.namespace"),
                json!(namespace),
                msg,
            ));
        }
    }
    if let Some(g) = m
        .get("generation")
        .and_then(Value::as_i64)
        .filter(|g| *g < 0)
    {
        out.push(FieldError::invalid(
            format!("{at}.generation"),
            json!(g),
            "must be greater than or equal to 0",
        ));
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn path_segment_errors(name: &str, prefix: bool) -> Vec<String> {
    if !prefix {
        if let Some(bad) = [".", ".."].into_iter().find(|b| name == *b) {
            return vec![format!("may not be '{bad}'")];
        }
    }
    ["/", "%"]
        .into_iter()
        .filter(|c| name.contains(c))
        .map(|c| format!("may not contain '{c}'"))
        .collect()
}

// ---------------------------------------------------------------------------------------
// listtype.ValidateListSetsAndMaps
// ---------------------------------------------------------------------------------------

fn list_maps(path: Option<&str>, s: &Node, m: &Map<String, Value>, out: &mut Vec<FieldError>) {
    if let Some(Additional::Schema(ap)) = &s.additional {
        for (k, v) in m {
            list_value(&key(path, k), ap, v, out);
        }
    }
    for (k, v) in m {
        if let Some(p) = s.property(k) {
            list_value(&child(path, k), p, v, out);
        }
    }
}

fn list_value(path: &str, s: &Node, v: &Value, out: &mut Vec<FieldError>) {
    match v {
        Value::Array(a) => list_array(path, s, a, out),
        Value::Object(m) => list_maps(Some(path), s, m, out),
        _ => {}
    }
}

fn list_array(path: &str, s: &Node, a: &[Value], out: &mut Vec<FieldError>) {
    let at = |i: usize| format!("{path}[{i}]");
    match s.list_type.as_deref() {
        Some("set") => {
            for i in first_repeats(a.iter().map(|v| set_key(Some(v)))) {
                out.push(FieldError::new(
                    FieldErrorType::Duplicate,
                    at(i),
                    Some(a[i].clone()),
                    "",
                ));
            }
        }
        Some("map") => list_map(s, a, &at, out),
        _ => {}
    }
    if let Some(items) = &s.items {
        for (i, v) in a.iter().enumerate() {
            list_value(&at(i), items, v, out);
        }
    }
}

fn list_map(s: &Node, a: &[Value], at: &dyn Fn(usize) -> String, out: &mut Vec<FieldError>) {
    if let Some(i) = a.iter().position(|x| !x.is_null() && !x.is_object()) {
        out.push(FieldError::invalid(
            at(i),
            a[i].clone(),
            "must be an object for an array of list-type map",
        ));
        return;
    }
    if a.len() <= 1 {
        return;
    }
    if let [key_field] = s.list_map_keys.as_slice() {
        let keys: Vec<Option<&Value>> = a.iter().map(|x| x.get(key_field)).collect();
        for i in first_repeats(keys.iter().map(|k| set_key(*k))) {
            let value = match keys[i] {
                None => json!({}),
                Some(k) => json!({ key_field.as_str(): k }),
            };
            out.push(FieldError::new(
                FieldErrorType::Duplicate,
                at(i),
                Some(value),
                "",
            ));
        }
        return;
    }
    // Several key fields: compare the sub-objects of key fields, sorted as Go prints maps.
    let mut sorted_keys = s.list_map_keys.clone();
    sorted_keys.sort();
    let keys: Vec<Value> = a
        .iter()
        .map(|x| {
            let mut k = Map::new();
            for f in &sorted_keys {
                if let Some(v) = x.get(f) {
                    k.insert(f.clone(), v.clone());
                }
            }
            Value::Object(k)
        })
        .collect();
    for i in first_repeats(keys.iter().map(|k| set_key(Some(k)))) {
        out.push(FieldError::new(
            FieldErrorType::Duplicate,
            at(i),
            Some(keys[i].clone()),
            "",
        ));
    }
}

/// How `validateListSet` tells values apart: scalars by Go value (so 1 and 1.0 differ),
/// compounds by their JSON, a missing key as its own value.
fn set_key(v: Option<&Value>) -> String {
    match v {
        None => "missing".to_string(),
        Some(v @ (Value::Object(_) | Value::Array(_))) => format!("c{}", canonical(v, true)),
        Some(v) => format!("s{v}"),
    }
}

/// Indices of each value's second occurrence, in order (kube reports a duplicate once).
fn first_repeats(keys: impl Iterator<Item = String>) -> Vec<usize> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::new();
    for (i, k) in keys.enumerate() {
        let times = seen.entry(k).or_insert(0);
        if *times == 1 {
            out.push(i);
        }
        *times += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{errors, spec};

    use serde_json::json;

    #[test]
    fn embedded_resources_need_api_version_and_kind() {
        let s = spec(
            json!({"t": {"type": "object", "x-kubernetes-embedded-resource": true,
            "x-kubernetes-preserve-unknown-fields": true}}),
        );
        assert_eq!(
            errors(s.clone(), json!({"spec": {"t": {}}})),
            [
                "spec.t.apiVersion: Required value",
                "spec.t.kind: Required value"
            ]
        );
        assert_eq!(
            errors(
                s.clone(),
                json!({"spec": {"t": {"apiVersion": "a/b/c", "kind": "Bad_Kind", "metadata": {"name": "x/y"}}}})
            ),
            [
                r#"spec.t.apiVersion: Invalid value: "a/b/c": unexpected GroupVersion string: a/b/c"#,
                r#"spec.t.kind: Invalid value: "Bad_Kind": may have mixed case, but should otherwise match: a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"#,
                r#"spec.t.metadata.name: Invalid value: "x/y": may not contain '/'"#,
            ]
        );
        assert!(errors(s, json!({"spec": {"t": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}}})).is_empty());
    }

    #[test]
    fn list_type_set_and_map_report_duplicates() {
        let s = spec(json!({
            "s": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
            "m": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                  "items": {"type": "object", "properties": {"name": {"type": "string"}, "v": {"type": "integer"}}}}}));
        assert_eq!(
            errors(
                s,
                json!({"spec": {"s": ["a", "b", "a", "a"], "m": [{"name": "x", "v": 1}, {"name": "x", "v": 2}]}})
            ),
            [
                r#"spec.s[2]: Duplicate value: "a""#,
                r#"spec.m[1]: Duplicate value: {"name":"x"}"#
            ]
        );
    }
}
