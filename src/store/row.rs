//! The mapping between an object and a `resources` row.
//!
//! Metadata that has a column goes there (so that SQL can index and filter it); everything
//! else goes to `extra`, so an object always reads back with every field it was written with.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::k8s::object::{format_time, parse_time};

/// Every column of `resources` an object is read from: the one list both readers use, the
/// SQL one ([`SELECT_COLUMNS`], [`object_from_row`]) and the change stream's (`cdc::rows`
/// finds each by [`Column::name`] in the Relation message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    Uid,
    Kind,
    ApiVersion,
    Namespace,
    Name,
    ResourceVersion,
    Generation,
    Json(JsonColumn),
    CreatedAt,
    DeletionTimestamp,
}

/// The jsonb columns. Each has its own field in [`Columns`] ([`Columns::json`]), so a new
/// one cannot be read into another's place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonColumn {
    Spec,
    Status,
    Labels,
    Annotations,
    Finalizers,
    OwnerReferences,
    ManagedFields,
    Extra,
}

impl Column {
    /// In SELECT order.
    pub const ALL: [Column; 17] = [
        Column::Uid,
        Column::Kind,
        Column::ApiVersion,
        Column::Namespace,
        Column::Name,
        Column::ResourceVersion,
        Column::Generation,
        Column::Json(JsonColumn::Spec),
        Column::Json(JsonColumn::Status),
        Column::Json(JsonColumn::Labels),
        Column::Json(JsonColumn::Annotations),
        Column::Json(JsonColumn::Finalizers),
        Column::Json(JsonColumn::OwnerReferences),
        Column::Json(JsonColumn::ManagedFields),
        Column::Json(JsonColumn::Extra),
        Column::CreatedAt,
        Column::DeletionTimestamp,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Column::Uid => "uid",
            Column::Kind => "kind",
            Column::ApiVersion => "api_version",
            Column::Namespace => "namespace",
            Column::Name => "name",
            Column::ResourceVersion => "resource_version",
            Column::Generation => "generation",
            Column::Json(j) => j.name(),
            Column::CreatedAt => "created_at",
            Column::DeletionTimestamp => "deletion_timestamp",
        }
    }

    /// The position in [`ALL`](Self::ALL), and so in a row selected with [`SELECT_COLUMNS`].
    pub fn index(self) -> usize {
        Column::ALL
            .iter()
            .position(|c| *c == self)
            .unwrap_or_default()
    }
}

impl JsonColumn {
    pub const fn name(self) -> &'static str {
        match self {
            JsonColumn::Spec => "spec",
            JsonColumn::Status => "status",
            JsonColumn::Labels => "labels",
            JsonColumn::Annotations => "annotations",
            JsonColumn::Finalizers => "finalizers",
            JsonColumn::OwnerReferences => "owner_references",
            JsonColumn::ManagedFields => "managed_fields",
            JsonColumn::Extra => "extra",
        }
    }
}

/// The column list every read selects: [`Column::ALL`] joined (checked by a test, since a
/// const cannot be joined at compile time).
pub const SELECT_COLUMNS: &str =
    "uid, kind, api_version, namespace, name, resource_version, generation, \
     spec, status, labels, annotations, finalizers, owner_references, managed_fields, extra, \
     created_at, deletion_timestamp";

/// The soft-delete marker, read by the change stream only (live reads filter on it).
pub const DELETED_AT: &str = "deleted_at";

/// Metadata keys stored in their own columns (or derived from them).
const META_COLUMNS: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "labels",
    "annotations",
    "finalizers",
    "ownerReferences",
    "managedFields",
];

/// An object split into the values bound to a write statement.
#[derive(Debug, Clone)]
pub struct Columns {
    pub uid: Uuid,
    pub kind: String,
    pub api_version: String,
    pub namespace: String,
    pub name: String,
    pub generation: i64,
    pub spec: Option<Value>,
    pub status: Option<Value>,
    pub labels: Value,
    pub annotations: Value,
    pub finalizers: Value,
    pub owner_references: Value,
    pub managed_fields: Value,
    pub extra: Value,
    pub created_at: DateTime<Utc>,
    pub deletion_timestamp: Option<DateTime<Utc>>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RowError(pub String);

impl Columns {
    /// The value of a jsonb column (`None` for a NULL spec or status).
    pub fn json(&self, c: JsonColumn) -> Option<&Value> {
        match c {
            JsonColumn::Spec => self.spec.as_ref(),
            JsonColumn::Status => self.status.as_ref(),
            JsonColumn::Labels => Some(&self.labels),
            JsonColumn::Annotations => Some(&self.annotations),
            JsonColumn::Finalizers => Some(&self.finalizers),
            JsonColumn::OwnerReferences => Some(&self.owner_references),
            JsonColumn::ManagedFields => Some(&self.managed_fields),
            JsonColumn::Extra => Some(&self.extra),
        }
    }

    /// Splits a complete object (as prepared by the registry: uid and creationTimestamp set).
    pub fn from_object(obj: &Value) -> Result<Columns, RowError> {
        let top = obj
            .as_object()
            .ok_or_else(|| RowError("object is not a JSON object".into()))?;
        let empty = Map::new();
        let meta = top
            .get("metadata")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let s = |m: &Map<String, Value>, k: &str| {
            m.get(k).and_then(Value::as_str).unwrap_or("").to_string()
        };
        let uid =
            Uuid::parse_str(&s(meta, "uid")).map_err(|e| RowError(format!("metadata.uid: {e}")))?;
        let created_at = parse_time(&s(meta, "creationTimestamp"))
            .ok_or_else(|| RowError("metadata.creationTimestamp is missing or malformed".into()))?;
        let deletion_timestamp = meta
            .get("deletionTimestamp")
            .and_then(Value::as_str)
            .and_then(parse_time);
        let or = |k: &str, default: Value| {
            meta.get(k)
                .filter(|v| !v.is_null())
                .cloned()
                .unwrap_or(default)
        };

        let mut extra = Map::new();
        let extra_meta: Map<String, Value> = meta
            .iter()
            .filter(|(k, _)| !META_COLUMNS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !extra_meta.is_empty() {
            extra.insert("metadata".into(), Value::Object(extra_meta));
        }
        for (k, v) in top {
            if !matches!(
                k.as_str(),
                "apiVersion" | "kind" | "metadata" | "spec" | "status"
            ) {
                extra.insert(k.clone(), v.clone());
            }
        }
        Ok(Columns {
            uid,
            kind: top
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            api_version: top
                .get("apiVersion")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            namespace: s(meta, "namespace"),
            name: s(meta, "name"),
            generation: meta.get("generation").and_then(Value::as_i64).unwrap_or(1),
            spec: top.get("spec").cloned(),
            status: top.get("status").cloned(),
            labels: or("labels", Value::Object(Map::new())),
            annotations: or("annotations", Value::Object(Map::new())),
            finalizers: or("finalizers", Value::Array(vec![])),
            owner_references: or("ownerReferences", Value::Array(vec![])),
            managed_fields: or("managedFields", Value::Array(vec![])),
            extra: Value::Object(extra),
            created_at,
            deletion_timestamp,
        })
    }
}

/// Rebuilds the object from a row selected with [`SELECT_COLUMNS`].
pub fn object_from_row(row: &tokio_postgres::Row) -> Result<Value, tokio_postgres::Error> {
    use JsonColumn as J;
    let at = |c: Column| c.index();
    let json = |j: JsonColumn| at(Column::Json(j));
    let cols = Columns {
        uid: row.try_get(at(Column::Uid))?,
        kind: row.try_get(at(Column::Kind))?,
        api_version: row.try_get(at(Column::ApiVersion))?,
        namespace: row.try_get(at(Column::Namespace))?,
        name: row.try_get(at(Column::Name))?,
        generation: row.try_get(at(Column::Generation))?,
        spec: row.try_get(json(J::Spec))?,
        status: row.try_get(json(J::Status))?,
        labels: row.try_get(json(J::Labels))?,
        annotations: row.try_get(json(J::Annotations))?,
        finalizers: row.try_get(json(J::Finalizers))?,
        owner_references: row.try_get(json(J::OwnerReferences))?,
        managed_fields: row.try_get(json(J::ManagedFields))?,
        extra: row.try_get(json(J::Extra))?,
        created_at: row.try_get(at(Column::CreatedAt))?,
        deletion_timestamp: row.try_get(at(Column::DeletionTimestamp))?,
    };
    Ok(assemble(cols, row.try_get(at(Column::ResourceVersion))?))
}

/// Builds the API object, with metadata in the order kube writes it.
/// The change stream decodes rows into the same [`Columns`] and builds events with this too.
pub fn assemble(p: Columns, resource_version: i64) -> Value {
    let mut extra = match p.extra {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    let extra_meta = match extra.remove("metadata") {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    let mut meta = Map::new();
    meta.insert("name".into(), Value::String(p.name));
    if let Some(g) = extra_meta.get("generateName") {
        meta.insert("generateName".into(), g.clone());
    }
    if !p.namespace.is_empty() {
        meta.insert("namespace".into(), Value::String(p.namespace));
    }
    meta.insert("uid".into(), Value::String(p.uid.to_string()));
    meta.insert(
        "resourceVersion".into(),
        Value::String(resource_version.to_string()),
    );
    meta.insert("generation".into(), Value::from(p.generation));
    meta.insert(
        "creationTimestamp".into(),
        Value::String(format_time(p.created_at)),
    );
    if let Some(t) = p.deletion_timestamp {
        meta.insert("deletionTimestamp".into(), Value::String(format_time(t)));
    }
    if let Some(g) = extra_meta.get("deletionGracePeriodSeconds") {
        meta.insert("deletionGracePeriodSeconds".into(), g.clone());
    }
    let non_empty = |v: &Value| match v {
        Value::Object(m) => !m.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Null => false,
        _ => true,
    };
    for (key, v) in [
        ("labels", p.labels),
        ("annotations", p.annotations),
        ("ownerReferences", p.owner_references),
        ("finalizers", p.finalizers),
        ("managedFields", p.managed_fields),
    ] {
        if non_empty(&v) {
            meta.insert(key.into(), v);
        }
    }
    for (k, v) in extra_meta {
        if !meta.contains_key(&k) {
            meta.insert(k, v);
        }
    }
    let mut obj = Map::new();
    obj.insert("apiVersion".into(), Value::String(p.api_version));
    obj.insert("kind".into(), Value::String(p.kind));
    obj.insert("metadata".into(), Value::Object(meta));
    if let Some(s) = p.spec {
        obj.insert("spec".into(), s);
    }
    if let Some(s) = p.status {
        obj.insert("status".into(), s);
    }
    for (k, v) in extra {
        obj.insert(k, v);
    }
    Value::Object(obj)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_select_list_is_the_column_list() {
        let names: Vec<&str> = Column::ALL.iter().map(|c| c.name()).collect();
        let select: Vec<&str> = SELECT_COLUMNS.split(',').map(str::trim).collect();
        assert_eq!(select, names);
        for (i, c) in Column::ALL.iter().enumerate() {
            assert_eq!(c.index(), i);
        }
    }

    #[test]
    fn an_object_survives_the_split_into_columns_and_back() {
        let obj = json!({
            "apiVersion": "ark.mckinsey.com/v1alpha1",
            "kind": "Agent",
            "metadata": {
                "name": "a", "generateName": "a-", "namespace": "ns",
                "uid": "6c1b4a54-8b7e-4a4e-9a57-3f0f1bb0a001", "resourceVersion": "7", "generation": 2,
                "creationTimestamp": "2026-01-02T03:04:05Z",
                "labels": {"x": "y"}, "annotations": {"a": "b"},
                "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "c", "uid": "u"}],
                "finalizers": ["f/x"], "managedFields": [{"manager": "kubectl"}],
                "selfLink": "kept"
            },
            "spec": {"prompt": "hi"},
            "status": {"phase": "ready"},
            "data": {"extra": true}
        });
        let c = Columns::from_object(&obj).unwrap();
        let back = assemble(c, 7);
        assert_eq!(back, obj);
    }
}
