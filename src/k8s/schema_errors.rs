//! kube-openapi's validation errors and apiextensions' conversion of them into field errors
//! (`kubeOpenAPIResultToFieldErrors`): which become Required, NotSupported, TooLong, TooMany
//! or TypeInvalid, which keep kube-openapi's message as the detail, and which land on the
//! `<nil>` path.

use serde_json::{json, Value};

use super::super::status::{go_quote, FieldError, FieldErrorType};
use super::formats;

/// kube-openapi's error codes, for the ones apiextensions converts specially.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Code {
    InvalidType,
    Required,
    TooLong,
    Enum,
    MaxItems,
    TooManyProperties,
    /// Every other `*errors.Validation`; they all become `field.Invalid`.
    Other,
}

/// One kube-openapi error. `code: None` is an `errors.New` composite message (anyOf, oneOf,
/// allOf, not), which apiextensions reports at the `<nil>` path with an empty value.
#[derive(Debug)]
pub(super) struct VErr {
    pub(super) code: Option<Code>,
    pub(super) name: String,
    /// `None` is Go's nil.
    pub(super) value: Option<Value>,
    pub(super) valid: Option<i64>,
    pub(super) values: Vec<Value>,
    pub(super) message: String,
}

pub(super) fn verr(code: Code, name: &str, value: Option<Value>, message: String) -> VErr {
    VErr {
        code: Some(code),
        name: name.to_string(),
        value,
        valid: None,
        values: Vec::new(),
        message,
    }
}

pub(super) fn composite(message: String) -> VErr {
    VErr {
        code: None,
        name: String::new(),
        value: None,
        valid: None,
        values: Vec::new(),
        message,
    }
}

/// kube-openapi's `Result`: errors plus the match count used to rank anyOf/oneOf branches.
#[derive(Debug, Default)]
pub(super) struct Res {
    pub(super) errors: Vec<VErr>,
    pub(super) count: usize,
}

impl Res {
    pub(super) fn err(e: VErr) -> Res {
        Res {
            errors: vec![e],
            count: 0,
        }
    }
    pub(super) fn ok(count: usize) -> Res {
        Res {
            errors: Vec::new(),
            count,
        }
    }
    pub(super) fn merge(&mut self, other: Res) {
        self.errors.extend(other.errors);
        self.count += other.count;
    }
    pub(super) fn is_valid(&self) -> bool {
        self.errors.is_empty()
    }
}

/// apiextensions' `kubeOpenAPIResultToFieldErrors`.
pub(super) fn to_field_error(e: VErr) -> FieldError {
    let Some(code) = e.code else {
        return FieldError::invalid("<nil>", json!(""), e.message);
    };
    let field = match e.name.as_str() {
        "" | "." => "<nil>".to_string(),
        name => name.strip_prefix('.').unwrap_or(name).to_string(),
    };
    let value = e.value.clone().unwrap_or_else(|| json!(""));
    let count = |v: &Option<Value>| v.as_ref().and_then(Value::as_i64).unwrap_or(-1);
    let plural = |n: i64, one: &str, many: &str| {
        if n == 1 {
            one.to_string()
        } else {
            many.to_string()
        }
    };
    match code {
        Code::Required => FieldError::required(field, ""),
        Code::Enum => {
            let allowed: Vec<String> = e
                .values
                .iter()
                .map(|v| {
                    go_quote(
                        v.as_str()
                            .map_or_else(|| canonical(v, true), str::to_string)
                            .as_str(),
                    )
                })
                .collect();
            let detail = if allowed.is_empty() {
                String::new()
            } else {
                format!("supported values: {}", allowed.join(", "))
            };
            FieldError::new(
                FieldErrorType::NotSupported,
                field,
                Some(e.value.unwrap_or(Value::Null)),
                detail,
            )
        }
        Code::TooLong => {
            let max = e.valid.unwrap_or(-1);
            let detail = if max >= 0 {
                format!(
                    "may not be more than {max} {}",
                    plural(max, "byte", "bytes")
                )
            } else {
                "value is too long".to_string()
            };
            FieldError::new(FieldErrorType::TooLong, field, None, detail)
        }
        Code::MaxItems | Code::TooManyProperties => {
            let max = e.valid.unwrap_or(-1);
            let detail = if max >= 0 {
                format!("must have at most {max} {}", plural(max, "item", "items"))
            } else {
                "has too many items".to_string()
            };
            let actual = count(&e.value);
            FieldError::new(
                FieldErrorType::TooMany,
                field,
                (actual >= 0).then(|| json!(actual)),
                detail,
            )
        }
        Code::InvalidType => {
            FieldError::new(FieldErrorType::TypeInvalid, field, Some(value), e.message)
        }
        Code::Other => FieldError::invalid(field, value, e.message),
    }
}

/// JSON with sorted keys, as Go's `json.Marshal` writes maps. `go_numbers` prints floats as
/// Go does (`1` for 1.0); otherwise integers and floats stay distinct, as in `DeepEqual`.
pub(super) fn canonical(v: &Value, go_numbers: bool) -> String {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .iter()
                .map(|k| {
                    format!(
                        "{}:{}",
                        Value::String((*k).clone()),
                        canonical(&m[*k], go_numbers)
                    )
                })
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        Value::Array(a) => format!(
            "[{}]",
            a.iter()
                .map(|x| canonical(x, go_numbers))
                .collect::<Vec<_>>()
                .join(",")
        ),
        Value::Number(n) if go_numbers && !n.is_i64() && !n.is_u64() => {
            formats::go_json_float(n.as_f64().unwrap_or(0.0))
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{errors, spec};

    use serde_json::json;

    #[test]
    fn enum_is_unsupported_value_listing_json_for_non_strings() {
        let s = spec(
            json!({"e": {"type": "string", "enum": ["a", "b"]}, "n": {"enum": [1, 2.5, true, null]}}),
        );
        assert_eq!(
            errors(s.clone(), json!({"spec": {"e": "x"}})),
            [r#"spec.e: Unsupported value: "x": supported values: "a", "b""#]
        );
        assert_eq!(
            errors(s.clone(), json!({"spec": {"n": "x"}})),
            [r#"spec.n: Unsupported value: "x": supported values: "1", "2.5", "true", "null""#]
        );
        // Go converts the value to the entry's type before comparing: 1.9 becomes 1.
        assert!(errors(s.clone(), json!({"spec": {"n": 1.9}})).is_empty());
        // null matches nothing, not even a null entry.
        assert_eq!(errors(s, json!({"spec": {"n": null}})).len(), 1);
    }

    #[test]
    fn string_length_counts_characters_and_reports_like_kube() {
        let s = spec(
            json!({"s": {"type": "string", "minLength": 2, "maxLength": 3}, "o": {"type": "string", "maxLength": 1}}),
        );
        assert_eq!(
            errors(s.clone(), json!({"spec": {"s": "héé"}})),
            Vec::<String>::new()
        );
        assert_eq!(
            errors(s.clone(), json!({"spec": {"s": "abcd", "o": "ab"}})),
            [
                "spec.s: Too long: may not be more than 3 bytes",
                "spec.o: Too long: may not be more than 1 byte"
            ]
        );
        assert_eq!(
            errors(s, json!({"spec": {"s": "a"}})),
            [r#"spec.s: Invalid value: "a": spec.s in body should be at least 2 chars long"#]
        );
    }

    #[test]
    fn item_counts_and_uniqueness() {
        let s = spec(
            json!({"l": {"type": "array", "minItems": 2, "maxItems": 3, "items": {"type": "integer"}},
            "one": {"type": "array", "maxItems": 1}, "u": {"type": "array", "uniqueItems": true}}),
        );
        assert_eq!(
            errors(s.clone(), json!({"spec": {"l": [1]}})),
            ["spec.l: Invalid value: 1: spec.l in body should have at least 2 items"]
        );
        assert_eq!(
            errors(
                s.clone(),
                json!({"spec": {"l": [1, 2, 3, 4], "one": [1, 2]}})
            ),
            [
                "spec.l: Too many: 4: must have at most 3 items",
                "spec.one: Too many: 2: must have at most 1 item"
            ]
        );
        assert_eq!(
            errors(
                s.clone(),
                json!({"spec": {"u": [{"a": 1, "b": 2}, {"b": 2, "a": 1}]}})
            ),
            [r#"spec.u: Invalid value: "": spec.u in body shouldn't contain duplicates"#]
        );
        assert!(errors(s, json!({"spec": {"u": [1, 1.0]}})).is_empty());
    }

    #[test]
    fn property_counts_fail_fast() {
        let s = spec(
            json!({"m": {"type": "object", "maxProperties": 1, "required": ["x"]}, "n": {"type": "object", "minProperties": 1}}),
        );
        assert_eq!(
            errors(s, json!({"spec": {"m": {"a": 1, "b": 2}, "n": {}}})),
            [
                "spec.m: Too many: 2: must have at most 1 item",
                "spec.n: Invalid value: 0: spec.n in body should have at least 1 properties"
            ]
        );
    }

    #[test]
    fn root_type_errors_have_the_nil_path() {
        assert_eq!(
            errors(json!({"type": "object"}), json!([])),
            [r#"<nil>: Invalid value: "array":  in body must be of type object: "array""#]
        );
    }
}
