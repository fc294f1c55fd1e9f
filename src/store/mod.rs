//! The only module that writes SQL against `resources`.
//!
//! It owns the schema (`sql/`, applied by [`migrate`]), the mapping between objects and rows
//! ([`row`]), the group-commit writer ([`writer`]) and the classification of database errors
//! ([`error`]). Callers hand it whole objects and get whole objects back; they never see SQL.

pub mod connect;
pub mod error;
pub mod migrate;
pub mod row;
pub mod seed;
pub mod select;
pub mod writer;

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use serde_json::Value;
use tokio_postgres::types::ToSql;

pub use error::StoreError;
pub use row::Columns;
pub use writer::{WriteOp, Written};

use crate::k8s::selector::{FieldSelector, LabelSelector};

/// What a list asks for.
#[derive(Debug, Clone)]
pub struct ListQuery<'a> {
    pub kind: &'a str,
    /// `None` lists across all namespaces (and is the only form for cluster-scoped kinds).
    pub namespace: Option<&'a str>,
    pub labels: &'a LabelSelector,
    pub fields: &'a FieldSelector,
    /// At most this many items; `None` for all.
    pub limit: Option<usize>,
    /// Resume strictly after this (namespace, name).
    pub after: Option<(String, String)>,
}

#[derive(Debug)]
pub struct ListPage {
    pub items: Vec<Value>,
    /// The resourceVersion as of the snapshot the items were read in.
    pub resource_version: i64,
    /// The key of the last item, when more items follow.
    pub next: Option<(String, String)>,
    /// How many matching items follow this page, when that was cheap to know.
    pub remaining: Option<i64>,
}

pub struct Store {
    pool: Pool,
    writers: Arc<writer::Writers>,
}

impl Store {
    pub fn new(pool: Pool, max_batch: usize) -> Self {
        let writers = writer::Writers::new(pool.clone(), max_batch);
        Store { pool, writers }
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(StoreError::from_pool)
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let c = self.client().await?;
        c.simple_query("SELECT 1")
            .await
            .map_err(StoreError::from_pg)?;
        Ok(())
    }

    pub async fn get(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Value>, StoreError> {
        let c = self.client().await?;
        let sql = format!(
            "SELECT {} FROM resources WHERE kind = $1 AND namespace = $2 AND name = $3 AND deleted_at IS NULL",
            row::SELECT_COLUMNS
        );
        let stmt = c.prepare_cached(&sql).await.map_err(StoreError::from_pg)?;
        let row = c
            .query_opt(&stmt, &[&kind, &namespace, &name])
            .await
            .map_err(StoreError::from_pg)?;
        row.map(|r| row::object_from_row(&r).map_err(|e| StoreError::Internal(e.to_string())))
            .transpose()
    }

    /// Reads one page in a single snapshot, together with the resourceVersion of that snapshot.
    pub async fn list(&self, q: &ListQuery<'_>) -> Result<ListPage, StoreError> {
        let mut c = self.client().await?;
        let mut filter = select::Filter::new(q.kind);
        if let Some(ns) = q.namespace {
            filter.namespace(ns);
        }
        filter.labels(q.labels);
        filter.fields(q.fields);
        let count_sql = q.limit.is_some() && q.labels.is_empty() && q.fields.is_empty();
        if let Some((ns, name)) = &q.after {
            filter.after(ns, name);
        }
        let (where_sql, params) = filter.finish();
        let limit_sql = q
            .limit
            .map(|l| format!(" LIMIT {}", l + 1))
            .unwrap_or_default();
        let sql = format!(
            "SELECT {} FROM resources WHERE {where_sql} ORDER BY namespace, name{limit_sql}",
            row::SELECT_COLUMNS
        );
        let params: Vec<&(dyn ToSql + Sync)> = params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect();

        let tx = c
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(StoreError::from_pg)?;
        let rv_row = tx
            .query_opt("SELECT value FROM resource_version_counter", &[])
            .await
            .map_err(StoreError::from_pg)?;
        let stmt = tx.prepare_cached(&sql).await.map_err(StoreError::from_pg)?;
        let rows = tx
            .query(&stmt, &params)
            .await
            .map_err(StoreError::from_pg)?;
        let mut remaining = None;
        let more = q.limit.is_some_and(|l| rows.len() > l);
        if more && count_sql {
            let (count_where, count_params) = {
                let mut f = select::Filter::new(q.kind);
                if let Some(ns) = q.namespace {
                    f.namespace(ns);
                }
                if let Some((ns, name)) = &q.after {
                    f.after(ns, name);
                }
                f.finish()
            };
            let p: Vec<&(dyn ToSql + Sync)> = count_params
                .iter()
                .map(|p| p.as_ref() as &(dyn ToSql + Sync))
                .collect();
            let total: i64 = tx
                .query_one(
                    &format!("SELECT count(*) FROM resources WHERE {count_where}"),
                    &p,
                )
                .await
                .map_err(StoreError::from_pg)?
                .get(0);
            remaining = Some(total - q.limit.unwrap_or(0) as i64);
        }
        tx.commit().await.map_err(StoreError::from_pg)?;

        let take = q.limit.unwrap_or(usize::MAX).min(rows.len());
        let mut items = Vec::with_capacity(take);
        for r in &rows[..take] {
            items.push(row::object_from_row(r).map_err(|e| StoreError::Internal(e.to_string()))?);
        }
        let next = if more {
            items.last().map(|o| {
                (
                    crate::k8s::object::namespace(o).to_string(),
                    crate::k8s::object::name(o).to_string(),
                )
            })
        } else {
            None
        };
        Ok(ListPage {
            items,
            resource_version: rv_row.map(|r| r.get(0)).unwrap_or(0),
            next,
            remaining,
        })
    }

    /// Writes a logical message and returns its WAL position: once the change stream has
    /// delivered it, the stream has passed every commit made before this call.
    ///
    /// The message is transactional on purpose. A non-transactional one is written to WAL
    /// but not flushed, and the walsender only sends flushed WAL, so it would wait for the
    /// WAL writer (wal_writer_delay, 200 ms by default): every consistent read took 200 ms.
    /// A transactional message gets a transaction id, so its commit flushes WAL and wakes
    /// the walsender at once (PostgreSQL 17's `flush` argument is not in 15). The stream
    /// sees Begin, Message, Commit; applying the Commit passes the message's position.
    pub async fn emit_sync_message(&self) -> Result<u64, StoreError> {
        let c = self.client().await?;
        let stmt = c
            .prepare_cached("SELECT pg_logical_emit_message(true, 'ark-apiserver/sync', '')::text")
            .await
            .map_err(StoreError::from_pg)?;
        let lsn: String = c
            .query_one(&stmt, &[])
            .await
            .map_err(StoreError::from_pg)?
            .get(0);
        parse_lsn(&lsn).ok_or_else(|| StoreError::Internal(format!("unexpected LSN {lsn:?}")))
    }

    pub async fn write(&self, op: WriteOp) -> Result<Written, StoreError> {
        self.writers.submit(op).await
    }

    /// Removes soft-deleted rows older than `retention`, a bounded number per call so a
    /// large backlog never holds locks for long. Returns how many rows went.
    pub async fn purge(&self, retention: Duration, max_rows: i64) -> Result<u64, StoreError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(StoreError::from_pg)?;
        tx.batch_execute("SET LOCAL ark.purge = 'on'")
            .await
            .map_err(StoreError::from_pg)?;
        let secs = retention.as_secs_f64();
        let n = tx
            .execute(
                "DELETE FROM resources WHERE uid IN (SELECT uid FROM resources WHERE deleted_at IS NOT NULL \
                 AND deleted_at < now() - make_interval(secs => $1) LIMIT $2)",
                &[&secs, &max_rows],
            )
            .await
            .map_err(StoreError::from_pg)?;
        tx.commit().await.map_err(StoreError::from_pg)?;
        Ok(n)
    }
}

/// PostgreSQL's `X/Y` LSN text form.
pub fn parse_lsn(s: &str) -> Option<u64> {
    let (hi, lo) = s.split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}
