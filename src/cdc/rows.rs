//! Decoded `resources` tuples to rows: which column is where (from the Relation message,
//! so ALTER TABLE is followed), binary values to Rust values, and unchanged TOASTed values
//! filled from the previous image of the row.
//!
//! The stream runs with pgoutput's `binary` option, so values do not depend on the
//! walsender's DateStyle or TimeZone.

use chrono::{DateTime, Utc};
use postgres_protocol::types as pgt;
use serde_json::Value;
use uuid::Uuid;

use crate::pgoutput::{Relation, TupleData, TupleValue};
use crate::store::row::{Column, Columns, JsonColumn, DELETED_AT};

/// A change that cannot be turned into a row: the stream or the schema is not what this
/// binary expects. Reported and counted, never a panic.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RowError {
    #[error("the resources relation has no column {0:?}; is the schema newer than this binary?")]
    MissingColumn(&'static str),
    #[error("column {column}: {why}")]
    BadValue { column: &'static str, why: String },
    #[error("column {0} is an unchanged TOASTed value and no previous image of the row is known")]
    UnknownToast(&'static str),
    #[error("tuple has {found} columns, the relation has {expected}")]
    Width { expected: usize, found: usize },
}

/// Positions of the columns this server reads, computed once per Relation message.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    pub relation_id: u32,
    width: usize,
    /// The tuple position of each of [`Column::ALL`], in that order.
    idx: [usize; Column::ALL.len()],
    /// Which of [`Column::ALL`] are `json` rather than `jsonb` (managedFields since schema
    /// version 5): their binary form is the text itself. Told by the Relation message, so a
    /// stream that still holds changes from before the migration decodes them too.
    plain_json: [bool; Column::ALL.len()],
}

/// `json`'s type OID.
const JSON_OID: u32 = 114;

impl Layout {
    pub fn new(rel: &Relation) -> Result<(Layout, Option<usize>), RowError> {
        let mut idx = [0usize; Column::ALL.len()];
        let mut plain_json = [false; Column::ALL.len()];
        for ((slot, plain), col) in idx.iter_mut().zip(plain_json.iter_mut()).zip(Column::ALL) {
            *slot = rel
                .columns
                .iter()
                .position(|c| c.name == col.name())
                .ok_or(RowError::MissingColumn(col.name()))?;
            *plain = rel.columns[*slot].type_oid == JSON_OID;
        }
        let deleted_at = rel.columns.iter().position(|c| c.name == DELETED_AT);
        Ok((
            Layout {
                relation_id: rel.id,
                width: rel.columns.len(),
                idx,
                plain_json,
            },
            deleted_at,
        ))
    }

    fn at<'a>(&self, t: &'a TupleData, c: Column) -> &'a TupleValue {
        value(t, self.idx.get(c.index()).copied().unwrap_or(usize::MAX))
    }
}

/// One decoded row of `resources`.
#[derive(Debug, Clone)]
pub struct Row {
    pub cols: Columns,
    pub resource_version: i64,
    /// The row is soft-deleted (gone from the API).
    pub deleted: bool,
}

fn value(t: &TupleData, i: usize) -> &TupleValue {
    t.columns.get(i).unwrap_or(&TupleValue::Null)
}

fn bytes<'a>(v: &'a TupleValue, column: &'static str) -> Result<Option<&'a [u8]>, RowError> {
    match v {
        TupleValue::Null => Ok(None),
        TupleValue::Binary(b) => Ok(Some(b)),
        TupleValue::Text(_) => Err(RowError::BadValue {
            column,
            why: "text value where the binary format was requested".into(),
        }),
        TupleValue::UnchangedToast => Err(RowError::UnknownToast(column)),
    }
}

fn bad(column: &'static str, why: impl ToString) -> RowError {
    RowError::BadValue {
        column,
        why: why.to_string(),
    }
}

fn req<'a>(v: Option<&'a [u8]>, column: &'static str) -> Result<&'a [u8], RowError> {
    v.ok_or_else(|| bad(column, "unexpected NULL"))
}

fn text(v: &TupleValue, column: &'static str) -> Result<String, RowError> {
    Ok(pgt::text_from_sql(req(bytes(v, column)?, column)?)
        .map_err(|e| bad(column, e))?
        .to_string())
}

fn int8(v: &TupleValue, column: &'static str) -> Result<i64, RowError> {
    let b = req(bytes(v, column)?, column)?;
    if b.len() != 8 {
        return Err(bad(column, format!("int8 of {} bytes", b.len())));
    }
    pgt::int8_from_sql(b).map_err(|e| bad(column, e))
}

/// jsonb's binary form is a version byte (1) followed by the JSON text.
fn jsonb(v: &TupleValue, column: &'static str) -> Result<Option<Value>, RowError> {
    let Some(b) = bytes(v, column)? else {
        return Ok(None);
    };
    match b.split_first() {
        Some((1, json)) => serde_json::from_slice(json)
            .map(Some)
            .map_err(|e| bad(column, e)),
        Some((v, _)) => Err(bad(column, format!("unknown jsonb version {v}"))),
        None => Err(bad(column, "empty jsonb")),
    }
}

fn timestamptz(v: &TupleValue, column: &'static str) -> Result<Option<DateTime<Utc>>, RowError> {
    let Some(b) = bytes(v, column)? else {
        return Ok(None);
    };
    if b.len() != 8 {
        return Err(bad(column, format!("timestamptz of {} bytes", b.len())));
    }
    let micros = pgt::timestamp_from_sql(b).map_err(|e| bad(column, e))?;
    // PostgreSQL counts from 2000-01-01; infinity is i64::MAX/MIN.
    const PG_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;
    micros
        .checked_add(PG_EPOCH_UNIX_MICROS)
        .and_then(DateTime::from_timestamp_micros)
        .map(Some)
        .ok_or_else(|| bad(column, "timestamp out of range"))
}

impl Layout {
    /// Turns a tuple into a row. Unchanged TOASTed values (pgoutput's `u`: the column was not
    /// written and is stored out of line, so PostgreSQL does not send it) are taken from
    /// `previous`, the last image of the same row; only jsonb columns get that large.
    pub fn row(
        &self,
        t: &TupleData,
        deleted_at: Option<usize>,
        previous: Option<&Columns>,
    ) -> Result<Row, RowError> {
        if t.columns.len() != self.width {
            return Err(RowError::Width {
                expected: self.width,
                found: t.columns.len(),
            });
        }
        let c = |col: Column| self.at(t, col);
        let uid_bytes = req(bytes(c(Column::Uid), "uid")?, "uid")?;
        let uid = Uuid::from_slice(uid_bytes).map_err(|e| bad("uid", e))?;
        let json = |j: JsonColumn| -> Result<Option<Value>, RowError> {
            match c(Column::Json(j)) {
                TupleValue::UnchangedToast => {
                    let p = previous.ok_or(RowError::UnknownToast(j.name()))?;
                    Ok(p.json(j).cloned())
                }
                v if self.plain_json[Column::Json(j).index()] => match bytes(v, j.name())? {
                    None => Ok(None),
                    Some(b) => serde_json::from_slice(b)
                        .map(Some)
                        .map_err(|e| bad(j.name(), e)),
                },
                v => jsonb(v, j.name()),
            }
        };
        let obj = |j: JsonColumn, default: Value| -> Result<Value, RowError> {
            Ok(json(j)?.unwrap_or(default))
        };
        let empty_map = || Value::Object(Default::default());
        let empty_list = || Value::Array(vec![]);
        let cols = Columns {
            uid,
            kind: text(c(Column::Kind), "kind")?,
            api_version: text(c(Column::ApiVersion), "api_version")?,
            namespace: text(c(Column::Namespace), "namespace")?,
            name: text(c(Column::Name), "name")?,
            generation: int8(c(Column::Generation), "generation")?,
            spec: json(JsonColumn::Spec)?,
            status: json(JsonColumn::Status)?,
            labels: obj(JsonColumn::Labels, empty_map())?,
            annotations: obj(JsonColumn::Annotations, empty_map())?,
            finalizers: obj(JsonColumn::Finalizers, empty_list())?,
            owner_references: obj(JsonColumn::OwnerReferences, empty_list())?,
            managed_fields: obj(JsonColumn::ManagedFields, empty_list())?,
            extra: obj(JsonColumn::Extra, empty_map())?,
            created_at: timestamptz(c(Column::CreatedAt), "created_at")?
                .ok_or_else(|| bad("created_at", "unexpected NULL"))?,
            deletion_timestamp: timestamptz(c(Column::DeletionTimestamp), "deletion_timestamp")?,
        };
        let deleted = match deleted_at {
            Some(i) => !matches!(value(t, i), TupleValue::Null),
            None => false,
        };
        Ok(Row {
            cols,
            resource_version: int8(c(Column::ResourceVersion), "resource_version")?,
            deleted,
        })
    }

    /// The row's resourceVersion alone, read without decoding the rest: a replayed change
    /// (at or below the state's resourceVersion) is skipped on this.
    pub fn resource_version(&self, t: &TupleData) -> Result<i64, RowError> {
        int8(self.at(t, Column::ResourceVersion), "resource_version")
    }

    /// The uid of a Delete's key tuple (the primary key is the only column sent).
    pub fn key_uid(&self, t: &TupleData) -> Result<Uuid, RowError> {
        let b = req(bytes(self.at(t, Column::Uid), "uid")?, "uid")?;
        Uuid::from_slice(b).map_err(|e| bad("uid", e))
    }
}
