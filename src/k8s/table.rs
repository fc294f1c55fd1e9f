//! The `meta.k8s.io` Table rendering that `kubectl get` asks for.
//!
//! Columns are the kind's `additionalPrinterColumns` after a leading Name column, and each
//! cell is typed as apiextensions-apiserver types it, so kubectl prints the same thing it
//! prints for a CRD in etcd.

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};
use serde_json_path::JsonPath;

#[derive(Debug, Clone)]
pub struct PrinterColumn {
    pub name: String,
    pub type_: String,
    pub format: String,
    pub description: String,
    pub priority: i64,
    pub json_path: String,
    path: JsonPath,
}

impl PrinterColumn {
    /// Reads `additionalPrinterColumns`. With none, kube shows Name and Age; so do we.
    pub fn from_crd(columns: &[Value]) -> Result<Vec<PrinterColumn>, String> {
        if columns.is_empty() {
            return Ok(vec![Self::new(
                "Age",
                "date",
                "",
                "",
                0,
                ".metadata.creationTimestamp",
            )?]);
        }
        columns
            .iter()
            .map(|c| {
                let s = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                let name = s("name");
                if name.is_empty() {
                    return Err("additionalPrinterColumns entry without a name".to_string());
                }
                Self::new(
                    &name,
                    &s("type"),
                    &s("format"),
                    &s("description"),
                    c.get("priority").and_then(Value::as_i64).unwrap_or(0),
                    &s("jsonPath"),
                )
            })
            .collect()
    }

    fn new(
        name: &str,
        type_: &str,
        format: &str,
        description: &str,
        priority: i64,
        json_path: &str,
    ) -> Result<Self, String> {
        Ok(PrinterColumn {
            name: name.into(),
            type_: type_.into(),
            format: format.into(),
            description: description.into(),
            priority,
            json_path: json_path.into(),
            path: compile_path(json_path)
                .map_err(|e| format!("column {name:?}: bad jsonPath {json_path:?}: {e}"))?,
        })
    }

    /// The cell for this column, typed as kube types CRD printer columns.
    pub fn cell(&self, obj: &Value, now: DateTime<Utc>) -> Value {
        let Some(found) = self.path.query(obj).all().into_iter().next() else {
            return Value::Null;
        };
        match self.type_.as_str() {
            // kube prints any value through its JSONPath printer for string columns.
            "string" => match found {
                Value::String(s) => Value::String(s.clone()),
                Value::Null => Value::Null,
                other => Value::String(other.to_string()),
            },
            "integer" => match found {
                Value::Number(n) => n
                    .as_i64()
                    .or_else(|| n.as_f64().map(|f| f as i64))
                    .map(Value::from)
                    .unwrap_or(Value::Null),
                _ => Value::Null,
            },
            "number" => match found {
                Value::Number(n) => n.as_f64().map(Value::from).unwrap_or(Value::Null),
                _ => Value::Null,
            },
            "boolean" => match found {
                Value::Bool(b) => Value::Bool(*b),
                _ => Value::Null,
            },
            "date" => match found {
                Value::String(s) => match DateTime::parse_from_rfc3339(s) {
                    Ok(t) => Value::String(human_duration(
                        now.signed_duration_since(t.with_timezone(&Utc)),
                    )),
                    Err(_) => Value::String("<invalid>".into()),
                },
                _ => Value::Null,
            },
            _ => Value::Null,
        }
    }
}

/// kube's printer-column paths are JSONPath without the leading `$`, and may be wrapped in `{}`.
fn compile_path(p: &str) -> Result<JsonPath, String> {
    let p = p.trim();
    let p = p
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .unwrap_or(p);
    let full = if p.starts_with('$') {
        p.to_string()
    } else {
        format!("${p}")
    };
    JsonPath::parse(&full).map_err(|e| e.to_string())
}

/// What a client asked to see in each row's `object`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    Metadata,
    Object,
}

impl IncludeObject {
    pub fn parse(s: Option<&str>) -> Result<Self, String> {
        match s {
            None | Some("") | Some("Metadata") => Ok(Self::Metadata),
            Some("None") => Ok(Self::None),
            Some("Object") => Ok(Self::Object),
            Some(other) => Err(format!("includeObject: unsupported value {other:?}: supported values: \"None\", \"Metadata\", \"Object\"")),
        }
    }
}

/// Renders a Table. `list_meta` becomes the Table's metadata (resourceVersion, continue...).
/// `table_version` is `v1` or `v1beta1`, whichever the client accepted.
pub fn render<'a>(
    columns: &[PrinterColumn],
    objects: impl IntoIterator<Item = &'a Value>,
    list_meta: Map<String, Value>,
    include: IncludeObject,
    table_version: &str,
    now: DateTime<Utc>,
) -> Value {
    let mut defs = vec![json!({
        "name": "Name",
        "type": "string",
        "format": "name",
        "description": "The object's name, unique within its namespace.",
        "priority": 0
    })];
    for c in columns {
        defs.push(json!({
            "name": c.name,
            "type": c.type_,
            "format": c.format,
            "description": c.description,
            "priority": c.priority
        }));
    }
    let rows: Vec<Value> = objects
        .into_iter()
        .map(|o| row(columns, o, include, table_version, now))
        .collect();
    // Built by moving the parts in: `json!` would deep-copy every row (it serializes its
    // arguments into a new Value), which was a third of a 10,000-row Table's cost.
    let mut t = Map::new();
    t.insert("kind".into(), Value::String("Table".into()));
    t.insert(
        "apiVersion".into(),
        Value::String(format!("meta.k8s.io/{table_version}")),
    );
    t.insert("metadata".into(), Value::Object(list_meta));
    t.insert("columnDefinitions".into(), Value::Array(defs));
    t.insert("rows".into(), Value::Array(rows));
    Value::Object(t)
}

/// One row, used for lists, gets and (later) watch events.
pub fn row(
    columns: &[PrinterColumn],
    obj: &Value,
    include: IncludeObject,
    table_version: &str,
    now: DateTime<Utc>,
) -> Value {
    let mut cells = Vec::with_capacity(columns.len() + 1);
    cells.push(
        obj.pointer("/metadata/name")
            .cloned()
            .unwrap_or(Value::String(String::new())),
    );
    for c in columns {
        cells.push(c.cell(obj, now));
    }
    let mut r = Map::new();
    r.insert("cells".into(), Value::Array(cells));
    match include {
        IncludeObject::None => {}
        IncludeObject::Metadata => {
            r.insert("object".into(), partial_object_metadata(obj, table_version));
        }
        IncludeObject::Object => {
            r.insert("object".into(), obj.clone());
        }
    }
    Value::Object(r)
}

/// `PartialObjectMetadata` for an object: its type and metadata only.
pub fn partial_object_metadata(obj: &Value, meta_version: &str) -> Value {
    // One copy of the metadata, not two (`json!` would copy the clone again).
    let mut m = Map::new();
    m.insert("kind".into(), Value::String("PartialObjectMetadata".into()));
    m.insert(
        "apiVersion".into(),
        Value::String(format!("meta.k8s.io/{meta_version}")),
    );
    m.insert(
        "metadata".into(),
        obj.get("metadata")
            .cloned()
            .unwrap_or_else(|| Value::Object(Map::new())),
    );
    Value::Object(m)
}

/// apimachinery's `duration.HumanDuration`, which kubectl users read in every Age column.
pub fn human_duration(d: chrono::Duration) -> String {
    let seconds = d.num_seconds();
    if seconds < -1 {
        return "<invalid>".into();
    } else if seconds < 0 {
        return "0s".into();
    } else if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    } else if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    } else if hours < 48 {
        return format!("{hours}h");
    } else if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    } else if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    } else if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn col(type_: &str, path: &str) -> PrinterColumn {
        PrinterColumn::from_crd(&[json!({"name": "C", "type": type_, "jsonPath": path})])
            .unwrap()
            .remove(0)
    }

    #[test]
    fn condition_filter_columns_find_the_matching_condition() {
        let obj = json!({"status": {"conditions": [{"type": "Other", "status": "False"}, {"type": "Ready", "status": "True"}]}});
        let now = Utc::now();
        assert_eq!(
            col("string", ".status.conditions[?(@.type==\"Ready\")].status").cell(&obj, now),
            json!("True")
        );
        assert_eq!(
            col("string", ".status.conditions[?(@.type=='Ready')].status").cell(&obj, now),
            json!("True")
        );
        assert_eq!(
            col("string", ".status.missing").cell(&obj, now),
            Value::Null
        );
    }

    #[test]
    fn cells_are_typed_as_kube_types_them() {
        let obj = json!({"spec": {"n": 3, "f": 1.5, "b": true, "s": {"x": 1}}});
        let now = Utc::now();
        assert_eq!(col("integer", ".spec.n").cell(&obj, now), json!(3));
        assert_eq!(col("integer", ".spec.b").cell(&obj, now), Value::Null);
        assert_eq!(col("number", ".spec.f").cell(&obj, now), json!(1.5));
        assert_eq!(col("boolean", ".spec.b").cell(&obj, now), json!(true));
        assert_eq!(col("string", ".spec.s").cell(&obj, now), json!("{\"x\":1}"));
    }

    #[test]
    fn date_columns_print_as_age() {
        let now = Utc::now();
        let t = (now - Duration::seconds(300)).to_rfc3339();
        assert_eq!(
            col("date", ".metadata.creationTimestamp")
                .cell(&json!({"metadata": {"creationTimestamp": t}}), now),
            json!("5m")
        );
    }

    #[test]
    fn human_duration_matches_apimachinery() {
        let cases = [
            (5, "5s"),
            (119, "119s"),
            (120, "2m"),
            (150, "2m30s"),
            (600, "10m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 120, "3h2m"),
            (10 * 3600, "10h"),
            (50 * 3600, "2d2h"),
            (10 * 86400, "10d"),
            (800 * 86400, "2y70d"),
        ];
        for (s, want) in cases {
            assert_eq!(human_duration(Duration::seconds(s)), want, "{s}s");
        }
        assert_eq!(human_duration(Duration::seconds(-5)), "<invalid>");
    }

    #[test]
    fn kind_without_printer_columns_gets_age() {
        let cols = PrinterColumn::from_crd(&[]).unwrap();
        assert_eq!(cols.len(), 1);
        assert_eq!(cols[0].name, "Age");
    }
}
