//! Validation of a custom resource against its schema, as kube-apiserver does it.
//!
//! Three passes, in the order `customResourceStrategy.Validate` runs them:
//! 1. kube-openapi's `SchemaValidator` (this file), reproduced validator by validator (type,
//!    allOf/anyOf/oneOf/not, string, format, number, slice, enum, object) with its paths
//!    (`spec.a`, `spec.list[0]`, `spec.map.key`), its messages, its error de-duplication and
//!    the "match count" it uses to pick which anyOf/oneOf branch's errors to report; its
//!    errors become field errors in `schema_errors.rs`.
//! 2. and 3. `objectmeta.Validate` for embedded resources and `listtype` uniqueness, in
//!    `schema_structural.rs`.
//!
//! CEL (`x-kubernetes-validations`) is not evaluated, and validation ratcheting on update
//! (unchanged invalid fields tolerated) is not done: every call validates as a create.

use std::collections::HashSet;

use serde_json::{json, Map, Number, Value};

use super::super::status::{go_quote, FieldError};
use super::errors::{canonical, composite, to_field_error, verr, Code, Res, VErr};
use super::{formats, structural};
use super::{Additional, Node};

pub(super) fn validate(root: &Node, obj: &Value) -> Vec<FieldError> {
    let res = node(root, obj, "");
    // kube-openapi's Result.AddErrors keeps one error per message.
    let mut seen = HashSet::new();
    let mut out: Vec<FieldError> = res
        .errors
        .into_iter()
        .filter(|e| seen.insert(e.message.clone()))
        .map(to_field_error)
        .collect();
    structural::validate(root, obj, &mut out);
    out
}

// ---------------------------------------------------------------------------------------
// kube-openapi SchemaValidator
// ---------------------------------------------------------------------------------------

fn node(s: &Node, data: &Value, path: &str) -> Res {
    let mut r = Res::default();
    if data.is_null() {
        // Only the type and enum validators look at a null, and nothing is counted.
        r.merge(if !s.types.is_empty() && !s.nullable {
            Res::err(invalid_type(path, &s.types.join(","), "null"))
        } else {
            Res::ok(1)
        });
        r.merge(enum_check(s, data, path));
        return r;
    }
    let mut applied = 0;
    if !s.types.is_empty() || !s.format.is_empty() {
        r.merge(type_check(s, data, path));
        applied += 1;
    }
    r.merge(junctors(s, data, path));
    applied += 1;
    if let Value::String(st) = data {
        r.merge(string_check(s, st, path));
        applied += 1;
        if formats::is_string_format(&s.format) {
            if !formats::check(&s.format, st) {
                let msg = format!(
                    "{path} in body must be of type {}: {}",
                    s.format,
                    go_quote(st)
                );
                r.merge(Res::err(verr(
                    Code::InvalidType,
                    path,
                    Some(data.clone()),
                    msg,
                )));
            }
            applied += 1;
        }
    }
    if let Value::Number(n) = data {
        r.merge(number_check(s, n, path));
        applied += 1;
    }
    if let Value::Array(a) = data {
        r.merge(slice_check(s, a, path));
        applied += 1;
    }
    r.merge(enum_check(s, data, path));
    applied += 1;
    if let Value::Object(m) = data {
        r.merge(object_check(s, m, path));
        applied += 1;
    }
    r.count += applied + 1;
    r
}

fn invalid_type(path: &str, type_name: &str, found: &str) -> VErr {
    let msg = format!(
        "{path} in body must be of type {type_name}: {}",
        go_quote(found)
    );
    verr(
        Code::InvalidType,
        path,
        Some(Value::String(found.to_string())),
        msg,
    )
}

/// kube-openapi's typeValidator, including how a declared format interacts with the type.
fn type_check(s: &Node, data: &Value, path: &str) -> Res {
    let (found, found_format) = match data {
        Value::Bool(_) => ("boolean", ""),
        Value::String(_) => ("string", ""),
        Value::Number(n) if n.as_i64().is_some() => ("integer", "int64"),
        Value::Number(_) => ("number", "float64"),
        Value::Array(_) => ("array", ""),
        _ => ("object", ""),
    };
    let has = |t: &str| s.types.contains(&t);
    let float = data.as_f64().unwrap_or(f64::NAN);
    let float_int = found == "number" && is_json_integer(float) && has("integer");
    let int_float = found == "integer" && has("number");
    let string_or_slice = data.is_string() || data.is_array();
    let fmt = s.format.as_str();
    // A declared format can stand in for the type, and is then what the message names.
    let format_matches = has(found) || found_format == fmt || float_int || int_float;
    if !(string_or_slice || fmt.is_empty() || format_matches) {
        return Res::err(invalid_type(path, fmt, found_format));
    }
    // A string or array with a non-numeric format passes without a type check.
    if string_or_slice && !(has("number") || has("integer") || fmt.is_empty()) {
        return Res::ok(1);
    }
    if !(has(found) || float_int || int_float) {
        return Res::err(invalid_type(path, &s.types.join(","), found));
    }
    Res::ok(1)
}

/// go-openapi's `swag.IsFloat64AJSONInteger`.
fn is_json_integer(f: f64) -> bool {
    const MAX: f64 = 9_007_199_254_740_991.0;
    if !f.is_finite() || !(-MAX..=MAX).contains(&f) {
        return false;
    }
    if f.fract() == 0.0 {
        return true;
    }
    // Go converts a negative float to uint64 far away from it, and 0.x to 0.
    let g = f.trunc();
    if f < 0.0 || g == 0.0 {
        return false;
    }
    (f - g).abs() / (f + g) < 1e-9
}

/// kube-openapi's schemaPropsValidator: anyOf, oneOf, allOf, not.
fn junctors(s: &Node, data: &Value, path: &str) -> Res {
    let mut main = Res::default();
    let quoted = go_quote(path);
    if !s.any_of.is_empty() {
        let (mut best, mut success): (Option<Res>, Option<Res>) = (None, None);
        for sub in &s.any_of {
            let r = node(sub, data, path);
            if r.is_valid() {
                best = None;
                success = Some(r);
                break;
            }
            if best.as_ref().is_none_or(|b| r.count > b.count) {
                best = Some(r);
            }
        }
        if success.is_none() {
            main.errors.push(composite(format!(
                "{quoted} must validate at least one schema (anyOf)"
            )));
        }
        if let Some(r) = best.or(success) {
            main.merge(r);
        }
    }
    if !s.one_of.is_empty() {
        let (mut best, mut first_success, mut validated): (Option<Res>, Option<Res>, usize) =
            (None, None, 0);
        for sub in &s.one_of {
            let r = node(sub, data, path);
            if r.is_valid() {
                validated += 1;
                best = None;
                first_success.get_or_insert(r);
                continue;
            }
            if validated == 0 && best.as_ref().is_none_or(|b| r.count > b.count) {
                best = Some(r);
            }
        }
        if validated != 1 {
            let why = if validated == 0 {
                "Found none valid".to_string()
            } else {
                format!("Found {validated} valid alternatives")
            };
            main.errors.push(composite(format!(
                "{quoted} must validate one and only one schema (oneOf). {why}"
            )));
            if let Some(r) = best {
                main.merge(r);
            }
        } else if let Some(r) = first_success {
            main.merge(r);
        }
    }
    if !s.all_of.is_empty() {
        let mut validated = 0;
        for sub in &s.all_of {
            let r = node(sub, data, path);
            validated += usize::from(r.is_valid());
            main.merge(r);
        }
        if validated != s.all_of.len() {
            let why = if validated == 0 {
                ". None validated"
            } else {
                ""
            };
            main.errors.push(composite(format!(
                "{quoted} must validate all the schemas (allOf){why}"
            )));
        }
    }
    if let Some(not) = &s.not {
        if node(not, data, path).is_valid() {
            main.errors.push(composite(format!(
                "{quoted} must not validate the schema (not)"
            )));
        }
    }
    main.count += 1;
    main
}

/// kube-openapi's stringValidator: the first failing of maxLength, minLength, pattern.
/// Lengths count characters (runes), not bytes.
fn string_check(s: &Node, st: &str, path: &str) -> Res {
    let value = || Some(Value::String(st.to_string()));
    let len = st.chars().count() as i64;
    if let Some(max) = s.max_length.filter(|m| len > *m) {
        let mut e = verr(
            Code::TooLong,
            path,
            value(),
            format!("{path} in body should be at most {max} chars long"),
        );
        e.valid = Some(max);
        return Res::err(e);
    }
    if let Some(min) = s.min_length.filter(|m| len < *m) {
        return Res::err(verr(
            Code::Other,
            path,
            value(),
            format!("{path} in body should be at least {min} chars long"),
        ));
    }
    if let Some(p) = s.pattern.as_ref().filter(|p| !p.re.is_match(st)) {
        return Res::err(verr(
            Code::Other,
            path,
            value(),
            format!("{path} in body should match '{}'", p.source),
        ));
    }
    Res::default()
}

/// kube-openapi's numberValidator. An integer value is compared with the bound truncated to
/// an integer (as Go's `int64(bound)`), and messages print that truncated bound.
fn number_check(s: &Node, n: &Number, path: &str) -> Res {
    let mut r = Res::ok(1);
    let value = || Some(Value::Number(n.clone()));
    let int = n.as_i64();
    let float = n.as_f64().unwrap_or(0.0);
    if let Some(factor) = s.multiple_of {
        let failure = match int {
            Some(i) if factor as i64 != 0 => {
                let f = factor as i64;
                if f < 0 {
                    Some(format!(
                        "factor MultipleOf declared for {path} must be positive: {f}"
                    ))
                } else {
                    (i % f != 0).then(|| format!("{path} in body should be a multiple of {f}"))
                }
            }
            _ if factor < 0.0 => Some(format!(
                "factor MultipleOf declared for {path} must be positive: {}",
                formats::go_float(factor)
            )),
            _ => {
                let mult = if factor < 1.0 {
                    1.0 / factor * float
                } else {
                    float / factor
                };
                (!is_json_integer(mult)).then(|| {
                    format!(
                        "{path} in body should be a multiple of {}",
                        formats::go_float(factor)
                    )
                })
            }
        };
        if let Some(msg) = failure {
            r.errors.push(verr(Code::Other, path, value(), msg));
        }
    }
    let bound = |b: f64| match int {
        Some(_) => (b as i64).to_string(),
        None => formats::go_float(b),
    };
    let cmp = |b: f64| match int {
        Some(i) => i.cmp(&(b as i64)),
        None => float.partial_cmp(&b).unwrap_or(std::cmp::Ordering::Equal),
    };
    if let Some(min) = s.minimum {
        let c = cmp(min);
        let below = c.is_lt() || (s.exclusive_minimum && c.is_eq());
        if below {
            let op = if s.exclusive_minimum {
                "greater than"
            } else {
                "greater than or equal to"
            };
            r.errors.push(verr(
                Code::Other,
                path,
                value(),
                format!("{path} in body should be {op} {}", bound(min)),
            ));
        }
    }
    if let Some(max) = s.maximum {
        let c = cmp(max);
        if c.is_gt() || (s.exclusive_maximum && c.is_eq()) {
            let op = if s.exclusive_maximum {
                "less than"
            } else {
                "less than or equal to"
            };
            r.errors.push(verr(
                Code::Other,
                path,
                value(),
                format!("{path} in body should be {op} {}", bound(max)),
            ));
        }
    }
    r
}

fn slice_check(s: &Node, a: &[Value], path: &str) -> Res {
    let mut r = Res::default();
    if let Some(items) = &s.items {
        for (i, v) in a.iter().enumerate() {
            r.merge(node(items, v, &format!("{path}[{i}]")));
        }
    }
    let len = a.len() as i64;
    if let Some(min) = s.min_items.filter(|m| len < *m) {
        let msg = format!("{path} in body should have at least {min} items");
        r.errors
            .push(verr(Code::Other, path, Some(json!(len)), msg));
    }
    if let Some(max) = s.max_items.filter(|m| len > *m) {
        let mut e = verr(
            Code::MaxItems,
            path,
            Some(json!(len)),
            format!("{path} in body should have at most {max} items"),
        );
        e.valid = Some(max);
        r.errors.push(e);
    }
    if s.unique_items {
        let mut seen = HashSet::new();
        if !a.iter().all(|v| seen.insert(canonical(v, false))) {
            r.errors.push(verr(
                Code::Other,
                path,
                None,
                format!("{path} in body shouldn't contain duplicates"),
            ));
        }
    }
    r.count += 1;
    r
}

/// kube-openapi's basicCommonValidator. A value matches an enum entry if it converts to the
/// entry's Go type and is then deeply equal, so `5.5` matches an integer `5`; null never
/// matches, not even a null entry.
fn enum_check(s: &Node, data: &Value, path: &str) -> Res {
    if s.enum_values.is_empty() || s.enum_values.iter().any(|e| enum_match(data, e)) {
        return Res::default();
    }
    let listed: Vec<String> = s.enum_values.iter().map(|v| canonical(v, true)).collect();
    let mut e = verr(
        Code::Enum,
        path,
        Some(data.clone()),
        format!("{path} in body should be one of [{}]", listed.join(" ")),
    );
    e.values = s.enum_values.clone();
    Res::err(e)
}

fn enum_match(data: &Value, entry: &Value) -> bool {
    match (data, entry) {
        (Value::Null, _) | (_, Value::Null) => false,
        (Value::Number(d), Value::Number(e)) => match (d.as_i64(), e.as_i64()) {
            (_, Some(ei)) => {
                d.as_i64()
                    .unwrap_or_else(|| d.as_f64().unwrap_or(0.0) as i64)
                    == ei
            }
            (Some(di), None) => Some(di as f64) == e.as_f64(),
            (None, None) => d.as_f64() == e.as_f64(),
        },
        // Go converts an integer to a string as a code point.
        (Value::Number(d), Value::String(e)) => d.as_i64().is_some_and(|i| {
            let c = u32::try_from(i)
                .ok()
                .and_then(char::from_u32)
                .unwrap_or('\u{FFFD}');
            e.chars().eq(std::iter::once(c))
        }),
        _ => data == entry,
    }
}

fn object_check(s: &Node, m: &Map<String, Value>, path: &str) -> Res {
    let n = m.len() as i64;
    // Property counts fail fast: nothing below is validated.
    if let Some(min) = s.min_properties.filter(|x| n < *x) {
        return Res::err(verr(
            Code::Other,
            path,
            Some(json!(n)),
            format!("{path} in body should have at least {min} properties"),
        ));
    }
    if let Some(max) = s.max_properties.filter(|x| n > *x) {
        let mut e = verr(
            Code::TooManyProperties,
            path,
            Some(json!(n)),
            format!("{path} in body should have at most {max} properties"),
        );
        e.valid = Some(max);
        return Res::err(e);
    }
    let mut r = Res::default();
    match &s.additional {
        Some(Additional::Bool(false)) => {
            for k in m.keys().filter(|k| s.property(k).is_none()) {
                let msg = format!("{path}.{k} in body is a forbidden property");
                r.errors
                    .push(verr(Code::Other, path, Some(Value::String(k.clone())), msg));
            }
        }
        Some(Additional::Schema(ap)) => {
            for (k, v) in m.iter().filter(|(k, _)| s.property(k).is_none()) {
                r.merge(node(ap, v, &format!("{path}.{k}")));
            }
        }
        _ => {}
    }
    for (name, p) in &s.properties {
        if let Some(v) = m.get(name) {
            let child = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}.{name}")
            };
            r.merge(node(p, v, &child));
        }
    }
    for k in s.required.iter().filter(|k| !m.contains_key(*k)) {
        let name = format!("{path}.{k}");
        r.errors.push(verr(
            Code::Required,
            &name,
            None,
            format!("{name} in body is required"),
        ));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{errors, spec};
    use super::super::Schema;
    use serde_json::json;

    #[test]
    fn wrong_type_is_type_invalid_with_the_found_type_as_value() {
        let e = Schema::compile(&spec(json!({"replicas": {"type": "integer"}})))
            .unwrap()
            .validate(&json!({"spec": {"replicas": "3"}}));
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].field, "spec.replicas");
        assert_eq!(e[0].kind.cause_reason(), "FieldValueTypeInvalid");
        assert_eq!(
            e[0].body(),
            r#"Invalid value: "string": spec.replicas in body must be of type integer: "string""#
        );
    }

    #[test]
    fn non_nullable_null_and_nullable_null() {
        let s = spec(json!({"a": {"type": "string"}, "b": {"type": "string", "nullable": true}}));
        assert_eq!(
            errors(s, json!({"spec": {"a": null, "b": null}})),
            [r#"spec.a: Invalid value: "null": spec.a in body must be of type string: "null""#]
        );
    }

    #[test]
    fn integers_accept_whole_floats_and_numbers_accept_integers() {
        let s = spec(json!({"i": {"type": "integer"}, "n": {"type": "number"}}));
        assert!(errors(s.clone(), json!({"spec": {"i": 3.0, "n": 3}})).is_empty());
        assert_eq!(
            errors(s, json!({"spec": {"i": 3.5}})),
            [
                r#"spec.i: Invalid value: "number": spec.i in body must be of type integer: "number""#
            ]
        );
    }

    #[test]
    fn required_reports_the_missing_field_path() {
        let s = json!({"type": "object", "required": ["spec"], "properties": {"spec": {"type": "object",
            "required": ["prompt"], "properties": {"prompt": {"type": "string"}}}}});
        assert_eq!(errors(s.clone(), json!({})), ["spec: Required value"]);
        assert_eq!(
            errors(s, json!({"spec": {}})),
            ["spec.prompt: Required value"]
        );
    }

    #[test]
    fn formats_kube_checks_are_type_invalid_and_unknown_formats_are_ignored() {
        let s = spec(
            json!({"t": {"type": "string", "format": "date-time"}, "u": {"type": "string", "format": "no-such"},
            "q": {"type": "string", "format": "quantity"}}),
        );
        assert_eq!(
            errors(
                s.clone(),
                json!({"spec": {"t": "yesterday", "u": "whatever"}})
            ),
            [
                r#"spec.t: Invalid value: "yesterday": spec.t in body must be of type date-time: "yesterday""#
            ]
        );
        assert!(errors(
            s.clone(),
            json!({"spec": {"t": "2024-02-29T10:00:00Z", "q": "500Mi"}})
        )
        .is_empty());
        assert_eq!(errors(s, json!({"spec": {"q": "5 apples"}})).len(), 1);
    }

    #[test]
    fn a_declared_format_makes_kube_report_the_format_as_the_type() {
        let s = spec(json!({"i": {"type": "integer", "format": "int32"}}));
        assert_eq!(
            errors(s, json!({"spec": {"i": true}})),
            [r#"spec.i: Invalid value: "": spec.i in body must be of type int32: """#]
        );
    }

    #[test]
    fn minimum_maximum_and_exclusive_bounds() {
        let s = spec(
            json!({"i": {"type": "integer", "minimum": 1, "maximum": 10},
            "x": {"type": "integer", "minimum": 1, "exclusiveMinimum": true, "maximum": 10, "exclusiveMaximum": true},
            "f": {"type": "number", "maximum": 1.5}, "t": {"type": "integer", "maximum": 2.5}}),
        );
        assert_eq!(
            errors(s.clone(), json!({"spec": {"i": 0, "x": 10}})),
            [
                "spec.i: Invalid value: 0: spec.i in body should be greater than or equal to 1",
                "spec.x: Invalid value: 10: spec.x in body should be less than 10",
            ]
        );
        assert_eq!(
            errors(s.clone(), json!({"spec": {"i": 11, "x": 1, "f": 2.25}})),
            [
                "spec.i: Invalid value: 11: spec.i in body should be less than or equal to 10",
                "spec.x: Invalid value: 1: spec.x in body should be greater than 1",
                "spec.f: Invalid value: 2.25: spec.f in body should be less than or equal to 1.5",
            ]
        );
        // An integer is compared with the bound truncated to an integer, as Go's int64(max).
        assert_eq!(
            errors(s, json!({"spec": {"t": 3}})),
            ["spec.t: Invalid value: 3: spec.t in body should be less than or equal to 2"]
        );
    }

    #[test]
    fn multiple_of_for_integers_and_floats() {
        let s = spec(
            json!({"i": {"type": "integer", "multipleOf": 3}, "f": {"type": "number", "multipleOf": 0.5}}),
        );
        assert_eq!(
            errors(s.clone(), json!({"spec": {"i": 7, "f": 0.75}})),
            [
                "spec.i: Invalid value: 7: spec.i in body should be a multiple of 3",
                "spec.f: Invalid value: 0.75: spec.f in body should be a multiple of 0.5",
            ]
        );
        assert!(errors(s, json!({"spec": {"i": 9, "f": 1.5}})).is_empty());
    }

    #[test]
    fn pattern_uses_go_semantics() {
        let s = spec(json!({"p": {"type": "string", "pattern": r"^\d+[smh]?$"}}));
        assert!(errors(s.clone(), json!({"spec": {"p": "10m"}})).is_empty());
        // Go's \d is ASCII only.
        assert_eq!(
            errors(s, json!({"spec": {"p": "١٢"}})),
            [r#"spec.p: Invalid value: "١٢": spec.p in body should match '^\d+[smh]?$'"#]
        );
    }

    #[test]
    fn item_errors_carry_index_paths() {
        let s = spec(
            json!({"tools": {"type": "array", "items": {"type": "object", "required": ["name"],
            "properties": {"name": {"type": "string"}}}}}),
        );
        assert_eq!(
            errors(
                s,
                json!({"spec": {"tools": [{"name": "a"}, {"name": 1}, {}]}})
            ),
            [
                r#"spec.tools[1].name: Invalid value: "integer": spec.tools[1].name in body must be of type string: "integer""#,
                "spec.tools[2].name: Required value",
            ]
        );
    }

    #[test]
    fn additional_properties_paths_are_dotted_and_false_forbids_keys() {
        let s = spec(
            json!({"labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "closed": {"type": "object", "additionalProperties": false, "properties": {"a": {}}}}),
        );
        assert_eq!(
            errors(
                s,
                json!({"spec": {"labels": {"x.y/z": 1}, "closed": {"a": 1, "b": 2}}})
            ),
            [
                r#"spec.labels.x.y/z: Invalid value: "integer": spec.labels.x.y/z in body must be of type string: "integer""#,
                r#"spec.closed: Invalid value: "b": spec.closed.b in body is a forbidden property"#,
            ]
        );
    }

    #[test]
    fn int_or_string_accepts_either() {
        let s = spec(
            json!({"p": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]}}),
        );
        assert!(errors(s.clone(), json!({"spec": {"p": 8080}})).is_empty());
        assert!(errors(s.clone(), json!({"spec": {"p": "http"}})).is_empty());
        assert_eq!(
            errors(s, json!({"spec": {"p": true}})),
            [
                r#"spec.p: Invalid value: "boolean": spec.p in body must be of type integer,string: "boolean""#,
                r#"<nil>: Invalid value: "": "spec.p" must validate at least one schema (anyOf)"#,
                r#"spec.p: Invalid value: "boolean": spec.p in body must be of type integer: "boolean""#,
            ]
        );
    }

    #[test]
    fn one_of_all_of_and_not_report_composite_messages_at_nil() {
        let s = spec(json!({
            "o": {"oneOf": [{"minimum": 0}, {"maximum": 10}]},
            "a": {"allOf": [{"minLength": 2}, {"minLength": 2}]},
            "n": {"not": {"type": "string"}}}));
        assert_eq!(
            errors(s, json!({"spec": {"o": 5, "a": "x", "n": "s"}})),
            [
                r#"<nil>: Invalid value: "": "spec.o" must validate one and only one schema (oneOf). Found 2 valid alternatives"#,
                // Both allOf branches fail the same way: kube reports the message once.
                r#"spec.a: Invalid value: "x": spec.a in body should be at least 2 chars long"#,
                r#"<nil>: Invalid value: "": "spec.a" must validate all the schemas (allOf). None validated"#,
                r#"<nil>: Invalid value: "": "spec.n" must not validate the schema (not)"#,
            ]
        );
    }

    #[test]
    fn one_of_with_no_match_reports_the_branch_that_got_furthest() {
        let s = spec(json!({"o": {"oneOf": [
            {"type": "object", "required": ["a"]},
            {"type": "object", "required": ["b"], "properties": {"c": {"type": "string"}}}]}}));
        assert_eq!(
            errors(s, json!({"spec": {"o": {"c": "x"}}})),
            [
                r#"<nil>: Invalid value: "": "spec.o" must validate one and only one schema (oneOf). Found none valid"#,
                "spec.o.b: Required value",
            ]
        );
    }
}
