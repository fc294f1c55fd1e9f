//! Path elements: one step into an object (a field, a keyed list item, a set item, an
//! index), with structured-merge-diff's total order and its `fieldsV1` spelling.
//!
//! The order decides where entries go in `fieldsV1` and which conflict is reported first,
//! so it follows sigs.k8s.io/structured-merge-diff exactly: fields before keys before
//! values before indexes; numbers before strings before booleans before lists before maps
//! before null, with an integer and a float compared as numbers.

use std::cmp::Ordering;
use std::fmt;

use serde_json::{Map, Value};

use crate::k8s::status::go_quote;

/// One step into a value.
#[derive(Debug, Clone)]
pub enum PathElement {
    /// A map field: `f:<name>`.
    Field(String),
    /// An item of a list with `x-kubernetes-list-map-keys`: its key fields, sorted by name.
    Key(Vec<(String, Value)>),
    /// An item of a `set` list: the item itself.
    Value(Value),
    /// An item of a list addressed by position (never produced for custom resources, but
    /// part of the format).
    Index(usize),
}

pub type Path = Vec<PathElement>;

impl PathElement {
    pub fn field(name: &str) -> PathElement {
        PathElement::Field(name.to_string())
    }

    fn rank(&self) -> u8 {
        match self {
            PathElement::Field(_) => 0,
            PathElement::Key(_) => 1,
            PathElement::Value(_) => 2,
            PathElement::Index(_) => 3,
        }
    }

    /// The `fieldsV1` key for this element: `f:name`, `k:{...}`, `v:...`, `i:N`. Values are
    /// written as Go's encoding/json writes them (HTML characters escaped, map keys
    /// sorted), since clients compare these strings.
    pub fn to_key(&self) -> String {
        let mut s = String::new();
        match self {
            PathElement::Field(name) => {
                s.push_str("f:");
                s.push_str(name);
            }
            PathElement::Key(fields) => {
                s.push_str("k:{");
                for (i, (name, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        s.push(',');
                    }
                    go_string(name, &mut s);
                    s.push(':');
                    go_json(v, &mut s);
                }
                s.push('}');
            }
            PathElement::Value(v) => {
                s.push_str("v:");
                go_json(v, &mut s);
            }
            PathElement::Index(i) => {
                s.push_str("i:");
                s.push_str(&i.to_string());
            }
        }
        s
    }

    /// Parses a `fieldsV1` key. `Ok(None)` for an unknown element type, which kube skips.
    pub fn from_key(key: &str) -> Result<Option<PathElement>, String> {
        let b = key.as_bytes();
        if b.len() < 2 {
            return Err("key must be 2 characters long".to_string());
        }
        if b[1] != b':' {
            return Err(format!("missing colon: {key}"));
        }
        let rest = &key[2..];
        Ok(Some(match b[0] {
            b'f' => PathElement::Field(rest.to_string()),
            b'v' => PathElement::Value(serde_json::from_str(rest).map_err(|e| e.to_string())?),
            b'k' => {
                let m: Map<String, Value> =
                    serde_json::from_str(rest).map_err(|e| e.to_string())?;
                let mut fields: Vec<(String, Value)> = m.into_iter().collect();
                fields.sort_by(|a, b| a.0.cmp(&b.0));
                PathElement::Key(fields)
            }
            b'i' => PathElement::Index(rest.parse().map_err(|e| format!("{e}"))?),
            _ => return Ok(None),
        }))
    }
}

impl PartialEq for PathElement {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for PathElement {}

impl PartialOrd for PathElement {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for PathElement {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (PathElement::Field(a), PathElement::Field(b)) => a.as_bytes().cmp(b.as_bytes()),
            (PathElement::Key(a), PathElement::Key(b)) => compare_fields(a, b),
            (PathElement::Value(a), PathElement::Value(b)) => compare_values(a, b),
            (PathElement::Index(a), PathElement::Index(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

fn compare_fields(a: &[(String, Value)], b: &[(String, Value)]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let c =
            x.0.as_bytes()
                .cmp(y.0.as_bytes())
                .then_with(|| compare_values(&x.1, &y.1));
        if c != Ordering::Equal {
            return c;
        }
    }
    a.len().cmp(&b.len())
}

/// A JSON number as structured-merge-diff sees it: an integer when it fits an int64.
enum Num {
    Int(i64),
    Float(f64),
}

fn num(v: &Value) -> Option<Num> {
    let n = v.as_number()?;
    Some(match n.as_i64() {
        Some(i) => Num::Int(i),
        None => Num::Float(n.as_f64().unwrap_or(f64::NAN)),
    })
}

fn float_cmp(a: f64, b: f64) -> Ordering {
    if a > b {
        Ordering::Greater
    } else if a < b {
        Ordering::Less
    } else {
        Ordering::Equal
    }
}

/// structured-merge-diff's `value.Compare`.
pub fn compare_values(a: &Value, b: &Value) -> Ordering {
    fn class(v: &Value) -> u8 {
        match v {
            Value::Number(_) => match num(v) {
                Some(Num::Float(_)) => 0,
                _ => 1,
            },
            Value::String(_) => 2,
            Value::Bool(_) => 3,
            Value::Array(_) => 4,
            Value::Object(_) => 5,
            Value::Null => 6,
        }
    }
    match (num(a), num(b)) {
        (Some(Num::Int(x)), Some(Num::Int(y))) => return x.cmp(&y),
        (Some(Num::Float(x)), Some(Num::Float(y))) => return float_cmp(x, y),
        (Some(Num::Float(x)), Some(Num::Int(y))) => return float_cmp(x, y as f64),
        (Some(Num::Int(x)), Some(Num::Float(y))) => return float_cmp(x as f64, y),
        _ => {}
    }
    let (ca, cb) = (class(a), class(b));
    if ca != cb {
        return ca.cmp(&cb);
    }
    match (a, b) {
        (Value::String(x), Value::String(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => {
            for (p, q) in x.iter().zip(y) {
                let c = compare_values(p, q);
                if c != Ordering::Equal {
                    return c;
                }
            }
            x.len().cmp(&y.len())
        }
        (Value::Object(x), Value::Object(y)) => {
            let mut xs: Vec<_> = x.iter().collect();
            let mut ys: Vec<_> = y.iter().collect();
            xs.sort_by(|p, q| p.0.cmp(q.0));
            ys.sort_by(|p, q| p.0.cmp(q.0));
            for (p, q) in xs.iter().zip(&ys) {
                let c =
                    p.0.as_bytes()
                        .cmp(q.0.as_bytes())
                        .then_with(|| compare_values(p.1, q.1));
                if c != Ordering::Equal {
                    return c;
                }
            }
            xs.len().cmp(&ys.len())
        }
        _ => Ordering::Equal,
    }
}

/// Equality as structured-merge-diff decides it: numbers by value, whatever their form.
pub fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(_), Value::Number(_)) => compare_values(a, b) == Ordering::Equal,
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| values_equal(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| values_equal(v, w)))
        }
        _ => a == b,
    }
}

/// structured-merge-diff's `value.ToString`, used in paths printed for people.
fn value_to_string(v: &Value) -> String {
    match v {
        Value::Null => "null".to_string(),
        Value::String(s) => go_quote(s),
        Value::Number(_) => match num(v) {
            Some(Num::Int(i)) => i.to_string(),
            Some(Num::Float(f)) => format!("{f}"),
            None => v.to_string(),
        },
        Value::Bool(b) => b.to_string(),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(value_to_string).collect();
            format!("[{}]", parts.join(","))
        }
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| format!("{k}={}", value_to_string(v)))
            .collect(),
    }
}

impl fmt::Display for PathElement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathElement::Field(name) => write!(f, ".{name}"),
            PathElement::Key(fields) => {
                let parts: Vec<String> = fields
                    .iter()
                    .map(|(k, v)| format!("{k}={}", value_to_string(v)))
                    .collect();
                write!(f, "[{}]", parts.join(","))
            }
            PathElement::Value(v) => write!(f, "[={}]", value_to_string(v)),
            PathElement::Index(i) => write!(f, "[{i}]"),
        }
    }
}

/// A path as kube prints it in conflicts: `.spec.tools[name="a"].type`.
pub fn path_string(p: &[PathElement]) -> String {
    p.iter().map(|e| e.to_string()).collect()
}

/// Go's encoding/json form of a string: `<`, `>`, `&`, U+2028 and U+2029 escaped.
pub fn go_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Go's encoding/json form of a value (maps with sorted keys).
pub fn go_json(v: &Value, out: &mut String) {
    match v {
        Value::String(s) => go_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                go_json(item, out);
            }
            out.push(']');
        }
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                go_string(k, out);
                out.push(':');
                go_json(&m[k], out);
            }
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn elements_order_fields_then_keys_then_values_then_indexes() {
        let mut v = [
            PathElement::Index(0),
            PathElement::Value(json!("a")),
            PathElement::Key(vec![("name".into(), json!("a"))]),
            PathElement::field("b"),
            PathElement::field("a"),
        ];
        v.sort();
        let keys: Vec<String> = v.iter().map(PathElement::to_key).collect();
        assert_eq!(keys, ["f:a", "f:b", "k:{\"name\":\"a\"}", "v:\"a\"", "i:0"]);
    }

    #[test]
    fn values_order_numbers_strings_bools_lists_maps_null() {
        let mut v = vec![
            json!(null),
            json!({"a": 1}),
            json!([1]),
            json!(true),
            json!("x"),
            json!(2),
            json!(1.5),
        ];
        v.sort_by(compare_values);
        assert_eq!(
            v,
            vec![
                json!(1.5),
                json!(2),
                json!("x"),
                json!(true),
                json!([1]),
                json!({"a": 1}),
                json!(null)
            ]
        );
        assert!(values_equal(&json!(1), &json!(1.0)));
    }

    #[test]
    fn keys_are_written_as_go_writes_json_and_read_back_sorted() {
        let pe = PathElement::from_key(r#"k:{"port":80,"name":"a<b"}"#)
            .unwrap()
            .unwrap();
        assert_eq!(pe.to_key(), r#"k:{"name":"a\u003cb","port":80}"#);
        assert_eq!(pe.to_string(), r#"[name="a<b",port=80]"#);
        assert_eq!(PathElement::from_key("x:1").unwrap(), None);
        assert!(PathElement::from_key("f").is_err());
        assert_eq!(
            path_string(&[PathElement::field("spec"), PathElement::Value(json!("x"))]),
            r#".spec[="x"]"#
        );
    }
}
