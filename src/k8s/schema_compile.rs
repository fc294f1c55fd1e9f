//! Compiling an `openAPIV3Schema` into [`Node`]s: each keyword read once, checked for the
//! JSON type kube's decoder would require, and converted as apiextensions converts it for
//! kube-openapi (int-or-string becomes `[integer, string]`, unsupported formats are dropped,
//! `default: null` means no default).

use serde_json::{Map, Value};

use super::{formats, Additional, Node, Pattern};

/// Deeper schemas than this are refused: recursion over them could exhaust the stack.
const MAX_SCHEMA_DEPTH: usize = 200;

pub(super) fn compile_node(v: &Value, at: &str, depth: usize) -> Result<Node, String> {
    if depth > MAX_SCHEMA_DEPTH {
        return Err(format!(
            "{at}: schema is nested more than {MAX_SCHEMA_DEPTH} levels deep"
        ));
    }
    let m = v
        .as_object()
        .ok_or_else(|| format!("{at}: must be an object"))?;
    let mut n = Node::default();
    let kw = |k: &str| format!("{at}.{k}");

    if let Some(t) = m.get("type") {
        let t = t
            .as_str()
            .ok_or_else(|| format!("{}: must be a string", kw("type")))?;
        let known = ["object", "array", "string", "integer", "number", "boolean"];
        let t = *known.iter().find(|k| **k == t).ok_or_else(|| {
            format!(
                "{}: unsupported type {t:?} (must be one of {})",
                kw("type"),
                known.join(", ")
            )
        })?;
        n.declared_type = t.to_string();
        n.types = vec![t];
    }
    n.nullable = get_bool(m, "nullable", at)?;
    n.preserve_unknown = get_bool(m, "x-kubernetes-preserve-unknown-fields", at)?;
    n.embedded = get_bool(m, "x-kubernetes-embedded-resource", at)?;
    n.int_or_string = get_bool(m, "x-kubernetes-int-or-string", at)?;
    if n.int_or_string {
        // kube's conversion replaces the type: the value may be either.
        n.types = vec!["integer", "string"];
    }
    if let Some(f) = m.get("format") {
        let f = f
            .as_str()
            .ok_or_else(|| format!("{}: must be a string", kw("format")))?;
        n.format = formats::validated_format(&n.types, f);
    }
    // `default: null` is kube's "no default".
    n.default = m.get("default").filter(|d| !d.is_null()).cloned();
    if let Some(e) = m.get("enum") {
        n.enum_values = e
            .as_array()
            .ok_or_else(|| format!("{}: must be an array", kw("enum")))?
            .clone();
    }
    n.maximum = get_number(m, "maximum", at)?;
    n.minimum = get_number(m, "minimum", at)?;
    n.multiple_of = get_number(m, "multipleOf", at)?;
    n.exclusive_maximum = get_bool(m, "exclusiveMaximum", at)?;
    n.exclusive_minimum = get_bool(m, "exclusiveMinimum", at)?;
    n.max_length = get_count(m, "maxLength", at)?;
    n.min_length = get_count(m, "minLength", at)?;
    n.max_items = get_count(m, "maxItems", at)?;
    n.min_items = get_count(m, "minItems", at)?;
    n.max_properties = get_count(m, "maxProperties", at)?;
    n.min_properties = get_count(m, "minProperties", at)?;
    n.unique_items = get_bool(m, "uniqueItems", at)?;
    if let Some(p) = m.get("pattern") {
        let source = p
            .as_str()
            .ok_or_else(|| format!("{}: must be a string", kw("pattern")))?;
        let re = formats::go_regex(source).map_err(|e| {
            format!(
                "{}: {source:?} is not a valid regular expression: {e}",
                kw("pattern")
            )
        })?;
        n.pattern = Some(Pattern {
            source: source.to_string(),
            re,
        });
    }
    n.required = get_strings(m, "required", at)?;
    n.list_map_keys = get_strings(m, "x-kubernetes-list-map-keys", at)?;
    if let Some(t) = m.get("x-kubernetes-list-type") {
        let t = t
            .as_str()
            .ok_or_else(|| format!("{}: must be a string", kw("x-kubernetes-list-type")))?;
        n.list_type = Some(t.to_string());
    }
    if let Some(props) = m.get("properties") {
        let props = props
            .as_object()
            .ok_or_else(|| format!("{}: must be an object", kw("properties")))?;
        for (name, p) in props {
            let child = compile_node(p, &format!("{at}.properties[{name}]"), depth + 1)?;
            n.property_index.insert(name.clone(), n.properties.len());
            n.properties.push((name.clone(), child));
        }
    }
    match m.get("additionalProperties") {
        None | Some(Value::Null) => {}
        Some(Value::Bool(b)) => n.additional = Some(Additional::Bool(*b)),
        Some(s) => {
            let child = compile_node(s, &kw("additionalProperties"), depth + 1)?;
            n.additional = Some(Additional::Schema(Box::new(child)));
        }
    }
    if let Some(items) = m.get("items").filter(|v| !v.is_null()) {
        if items.is_array() {
            return Err(format!(
                "{}: must be a schema object and not an array",
                kw("items")
            ));
        }
        n.items = Some(Box::new(compile_node(items, &kw("items"), depth + 1)?));
    }
    for (key, out) in [
        ("allOf", &mut n.all_of),
        ("anyOf", &mut n.any_of),
        ("oneOf", &mut n.one_of),
    ] {
        if let Some(list) = m.get(key).filter(|v| !v.is_null()) {
            let list = list
                .as_array()
                .ok_or_else(|| format!("{}: must be an array", kw(key)))?;
            for (i, s) in list.iter().enumerate() {
                out.push(compile_node(s, &format!("{at}.{key}[{i}]"), depth + 1)?);
            }
        }
    }
    if let Some(not) = m.get("not").filter(|v| !v.is_null()) {
        n.not = Some(Box::new(compile_node(not, &kw("not"), depth + 1)?));
    }
    Ok(n)
}

fn get_bool(m: &Map<String, Value>, key: &str, at: &str) -> Result<bool, String> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(format!("{at}.{key}: must be a boolean")),
    }
}

fn get_number(m: &Map<String, Value>, key: &str, at: &str) -> Result<Option<f64>, String> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(_) => Err(format!("{at}.{key}: must be a number")),
    }
}

/// Lengths and counts: non-negative integers (`2.0` is accepted, as Go's decoder does).
fn get_count(m: &Map<String, Value>, key: &str, at: &str) -> Result<Option<i64>, String> {
    let err = || format!("{at}.{key}: must be a non-negative integer");
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) if i >= 0 => Ok(Some(i)),
            (None, Some(f)) if f >= 0.0 && f.fract() == 0.0 && f < 9.2e18 => Ok(Some(f as i64)),
            _ => Err(err()),
        },
        Some(_) => Err(err()),
    }
}

fn get_strings(m: &Map<String, Value>, key: &str, at: &str) -> Result<Vec<String>, String> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|s| {
                s.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("{at}.{key}: must be a list of strings"))
            })
            .collect(),
        Some(_) => Err(format!("{at}.{key}: must be a list of strings")),
    }
}

#[cfg(test)]
mod tests {
    use super::super::Schema;
    use serde_json::json;

    #[test]
    fn compile_refuses_what_kube_would_not_accept() {
        assert!(Schema::compile(&json!("object")).is_err());
        let e = Schema::compile(&json!({"properties": {"a": {"type": "strin"}}})).unwrap_err();
        assert!(e.contains("properties[a].type"), "{e}");
        assert!(Schema::compile(&json!({"minLength": -1})).is_err());
        assert!(Schema::compile(&json!({"required": "a"})).is_err());
        assert!(Schema::compile(&json!({"items": [{"type": "string"}]})).is_err());
        assert!(Schema::compile(&json!({"pattern": "("})).is_err());
    }

    #[test]
    fn compile_ignores_unknown_keywords_and_cel_rules() {
        let s = Schema::compile(
            &json!({"type": "object", "x-unknown": 1, "description": "d",
            "x-kubernetes-validations": [{"rule": "self.a == 'never'"}],
            "properties": {"a": {"type": "string", "example": "x"}}}),
        )
        .unwrap();
        assert!(s.validate(&json!({"a": "anything"})).is_empty());
    }
}
