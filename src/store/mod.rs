//! The only module that writes SQL against `resources`.
//!
//! It owns the schema (`sql/`, applied by [`migrate`]), the mapping between objects and rows
//! ([`row`]), the group-commit writer ([`writer`]) and the classification of database errors
//! ([`error`]). Callers hand it whole objects and get whole objects back; they never see SQL.

mod batch;
/// The statement a run of creates goes out as; integration tests check its plan.
pub use batch::INSERT_MANY as CREATE_STATEMENT;
pub mod connect;
pub mod error;
pub mod migrate;
pub mod replicas;
pub mod row;
pub mod seed;
pub mod writer;

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use serde_json::Value;

pub use error::StoreError;
pub use row::Columns;
pub use writer::{WriteOp, Written};

/// A point in the WAL a consistent read waits for the stream to pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncMark {
    pub lsn: u64,
    /// The newest resourceVersion committed before the mark.
    pub resource_version: u64,
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

    /// Closes the pool: idle connections end with a Terminate message, so PostgreSQL logs
    /// no unexpected EOF. Writes already queued have been answered before this is called.
    pub async fn close(&self) {
        self.pool.close();
        // Dropped connections send Terminate from their connection tasks: let them run.
        tokio::task::yield_now().await;
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(StoreError::from_pool)
    }

    /// Every live object and the resourceVersion counter, in one snapshot (see
    /// [`seed::load`]).
    pub async fn load_seed<T>(
        &self,
        snapshot: Option<&str>,
        keep: impl Fn(&str, i64) -> Option<T>,
        make: impl FnMut(serde_json::Value) -> T,
    ) -> Result<(Vec<T>, i64), StoreError> {
        let mut c = self.client().await?;
        seed::load(&mut c, snapshot, keep, make).await
    }

    /// Records a resourceVersion this replica has seen: no write it makes later gets one at
    /// or below it, even from a database that went back in time (see [`writer::Writers`]).
    pub fn note_rv(&self, rv: u64) {
        self.writers.note_rv(rv);
    }

    /// The highest resourceVersion this replica has seen.
    pub fn highest_rv(&self) -> u64 {
        self.writers.highest_rv()
    }

    /// Raises the resourceVersion counter to at least `floor`; true when it was behind.
    pub async fn raise_counter(&self, floor: u64) -> Result<bool, StoreError> {
        let c = self.client().await?;
        let n = c
            .execute(writer::RAISE_COUNTER, &[&(floor as i64)])
            .await
            .map_err(StoreError::from_pg)?;
        Ok(n > 0)
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

    /// Writes a logical message and returns its WAL position with the resourceVersion
    /// counter as the same statement saw it: once the change stream has delivered the
    /// message, the stream has passed every commit made before this call, and so the state
    /// has reached that resourceVersion.
    ///
    /// The message is transactional on purpose. A non-transactional one is written to WAL
    /// but not flushed, and the walsender only sends flushed WAL, so it would wait for the
    /// WAL writer (wal_writer_delay, 200 ms by default): every consistent read took 200 ms.
    /// A transactional message gets a transaction id, so its commit flushes WAL and wakes
    /// the walsender at once (PostgreSQL 17's `flush` argument is not in 15). The stream
    /// sees Begin, Message, Commit; applying the Commit passes the message's position.
    pub async fn emit_sync_message(&self) -> Result<SyncMark, StoreError> {
        let c = self.client().await?;
        let stmt = c
            .prepare_cached(
                "SELECT pg_logical_emit_message(true, 'ark-apiserver/sync', '')::text, \
                 (SELECT value FROM resource_version_counter)",
            )
            .await
            .map_err(StoreError::from_pg)?;
        let row = c.query_one(&stmt, &[]).await.map_err(StoreError::from_pg)?;
        let lsn: String = row.get(0);
        let resource_version: i64 = row.get(1);
        let lsn = parse_lsn(&lsn)
            .ok_or_else(|| StoreError::Internal(format!("unexpected LSN {lsn:?}")))?;
        Ok(SyncMark {
            lsn,
            resource_version: resource_version.max(0) as u64,
        })
    }

    /// The resourceVersion counter as a fresh snapshot sees it, and whether `slot` on this
    /// server is held right now by the walsender named `application_name` (this replica's
    /// replication connection). Writes nothing.
    ///
    /// When both hold and the state has applied up to the counter, the state reflects
    /// every commit made before this call: each commit raises the counter, commits are in
    /// counter order, and the state applies them in that order from this very server. The
    /// slot check is what makes "this very server" true: after a PostgreSQL failover the
    /// pool may reach a promoted standby whose counter is behind what the state holds
    /// (commits lost with the old primary), while the stream is still attached elsewhere.
    pub async fn probe_read_point(
        &self,
        slot: &str,
        application_name: &str,
    ) -> Result<(u64, bool), StoreError> {
        let c = self.client().await?;
        let stmt = c
            .prepare_cached(
                "SELECT (SELECT value FROM resource_version_counter),                  EXISTS (SELECT 1 FROM pg_replication_slots s                          JOIN pg_stat_replication w ON w.pid = s.active_pid                          WHERE s.slot_name = $1 AND s.active AND w.application_name = $2)",
            )
            .await
            .map_err(StoreError::from_pg)?;
        let row = c
            .query_one(&stmt, &[&slot, &application_name])
            .await
            .map_err(StoreError::from_pg)?;
        let counter: i64 = row.get(0);
        Ok((counter.max(0) as u64, row.get(1)))
    }

    /// The counter, and whether walsender `pid` still runs on the server whose postmaster
    /// started at `server_started_us` (see `cdc::status::WalSender`: then the slot there is
    /// still this replica's).
    pub async fn probe_read_point_by_walsender(
        &self,
        pid: i32,
        server_started_us: i64,
    ) -> Result<(u64, bool), StoreError> {
        let c = self.client().await?;
        let stmt = c
            .prepare_cached(
                "SELECT (SELECT value FROM resource_version_counter), \
                 EXISTS (SELECT 1 FROM pg_stat_get_wal_senders() w WHERE w.pid = $1) \
                 AND (extract(epoch FROM pg_postmaster_start_time()) * 1000000)::int8 = $2",
            )
            .await
            .map_err(StoreError::from_pg)?;
        let row = c
            .query_one(&stmt, &[&pid, &server_started_us])
            .await
            .map_err(StoreError::from_pg)?;
        let counter: i64 = row.get(0);
        Ok((counter.max(0) as u64, row.get(1)))
    }

    /// A tiny non-transactional logical message, for the change stream to acknowledge while
    /// `resources` is idle (see `cdc::stream`).
    pub async fn emit_heartbeat(&self) -> Result<(), StoreError> {
        let c = self.client().await?;
        c.simple_query("SELECT pg_logical_emit_message(false, 'ark-apiserver/heartbeat', '')")
            .await
            .map_err(StoreError::from_pg)?;
        Ok(())
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
