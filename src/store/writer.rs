//! Group commit: one writer task batches concurrent API writes into one transaction.
//!
//! The schema's triggers hold the resourceVersion counter's row lock from a transaction's
//! first write until it commits, which is what makes resourceVersions commit ordered. It
//! also means the table commits one writing transaction at a time. Sending every API write
//! through a single task that packs whatever is queued into one pipelined transaction turns
//! that serialization into batching: the lock and the commit's fsync are paid once per
//! batch, not once per write, so throughput grows with concurrency instead of collapsing.
//!
//! Each statement is written so that the expected failures (name taken, stale
//! resourceVersion, object gone) are not SQL errors: they return no row. One caller's
//! conflict therefore never aborts the transaction its neighbours share. A real SQL error
//! does abort it; then every job of the batch is retried alone, so only the guilty one fails.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use deadpool_postgres::{Object, Pool};
use futures_util::future::join_all;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::types::ToSql;

use std::collections::HashMap;

use uuid::Uuid;

use super::batch::{self, RunKind};
use super::error::StoreError;
use super::row::Columns;

/// One write, as the registry decided it.
#[derive(Debug, Clone)]
pub enum WriteOp {
    Create(Columns),
    /// Replace the live object whose resourceVersion is `expected_rv`.
    Update {
        cols: Columns,
        expected_rv: i64,
    },
    /// Soft-delete the live object at `expected_rv`, recording `cols` as its final state.
    Delete {
        cols: Columns,
        expected_rv: i64,
    },
}

/// What a successful write assigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub resource_version: i64,
}

struct Job {
    op: WriteOp,
    reply: oneshot::Sender<Result<Written, StoreError>>,
}

/// A create that finds the name taken inserts nothing, and the row trigger never fires, so
/// it takes no resourceVersion: every committed value belongs to a row change the change
/// stream carries. `ON CONFLICT` only covers the race where another writer committed the
/// name after this statement's snapshot was taken.
const INSERT: &str = "INSERT INTO resources (uid, kind, api_version, namespace, name, generation, spec, status, \
     labels, annotations, finalizers, owner_references, managed_fields, extra, created_at, deletion_timestamp) \
     SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16 \
     WHERE NOT EXISTS (SELECT 1 FROM resources WHERE kind = $2 AND namespace = $4 AND name = $5 AND deleted_at IS NULL) \
     ON CONFLICT (kind, namespace, name) WHERE deleted_at IS NULL DO NOTHING \
     RETURNING resource_version";

const UPDATE: &str =
    "UPDATE resources SET api_version = $2, generation = $3, spec = $4, status = $5, labels = $6, \
     annotations = $7, finalizers = $8, owner_references = $9, managed_fields = $10, extra = $11, \
     deletion_timestamp = $12 \
     WHERE uid = $1 AND resource_version = $13 AND deleted_at IS NULL \
     RETURNING resource_version";

const DELETE: &str =
    "UPDATE resources SET api_version = $2, generation = $3, spec = $4, status = $5, labels = $6, \
     annotations = $7, finalizers = $8, owner_references = $9, managed_fields = $10, extra = $11, \
     deletion_timestamp = coalesce($12, now()), deleted_at = now() \
     WHERE uid = $1 AND resource_version = $13 AND deleted_at IS NULL \
     RETURNING resource_version";

const IS_LIVE: &str = "SELECT 1 FROM resources WHERE uid = $1 AND deleted_at IS NULL";

/// The handle to the writer task. The task is spawned on the runtime that creates the
/// store (the server's main runtime, not an HTTP worker's) and ends when the handle is dropped.
pub struct Writers {
    sender: mpsc::Sender<Job>,
    /// The highest resourceVersion this replica has seen (applied, or relayed by the
    /// leader). Every batch first raises the counter to it: after PostgreSQL fails over to
    /// a standby that lost the last commits, its counter is behind resourceVersions
    /// clients already hold, and a new write must never reuse one of them.
    floor: Arc<AtomicU64>,
}

impl Writers {
    pub fn new(pool: Pool, max_batch: usize) -> Arc<Self> {
        // Bounded, so that a stalled database pushes back on callers instead of queueing
        // without limit; the bound is generous since each job is small.
        let (sender, rx) = mpsc::channel(4096);
        let floor = Arc::new(AtomicU64::new(0));
        tokio::spawn(run(pool, rx, max_batch.max(1), floor.clone()));
        Arc::new(Writers { sender, floor })
    }

    /// Records a resourceVersion this replica has seen.
    pub fn note_rv(&self, rv: u64) {
        self.floor.fetch_max(rv, Ordering::Relaxed);
    }

    pub fn highest_rv(&self) -> u64 {
        self.floor.load(Ordering::Relaxed)
    }

    /// Queues a write and waits for its outcome.
    pub async fn submit(&self, op: WriteOp) -> Result<Written, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.sender
            .send(Job { op, reply })
            .await
            .map_err(|_| StoreError::Internal("the writer task has stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Internal("the writer task dropped a write".into()))?
    }
}

/// Raises the resourceVersion counter to at least $1 (see [`Writers`]).
pub(crate) const RAISE_COUNTER: &str =
    "UPDATE resource_version_counter SET value = $1 WHERE value < $1";

async fn run(pool: Pool, mut rx: mpsc::Receiver<Job>, max_batch: usize, floor: Arc<AtomicU64>) {
    let mut batch = Vec::with_capacity(max_batch);
    while rx.recv_many(&mut batch, max_batch).await > 0 {
        let jobs = std::mem::take(&mut batch);
        metrics::histogram!("ark_store_write_batch_size").record(jobs.len() as f64);
        write_batch(&pool, jobs, floor.load(Ordering::Relaxed)).await;
    }
}

/// Outcome of one statement inside the shared transaction.
enum StmtResult {
    Wrote(i64),
    /// No row returned: name taken (create) or stale/gone (update, delete).
    NoRow,
    /// The statement failed (as did every write of its run).
    Failed(StoreError),
}

async fn write_batch(pool: &Pool, jobs: Vec<Job>, floor: u64) {
    let client = match pool.get().await {
        Ok(c) => c,
        Err(e) => {
            let err = StoreError::from_pool(e);
            for j in jobs {
                let _ = j.reply.send(Err(err.clone()));
            }
            return;
        }
    };
    let ops: Vec<&WriteOp> = jobs.iter().map(|j| &j.op).collect();
    match run_transaction(&client, &ops, floor).await {
        Ok(results) => {
            if results.iter().any(|r| matches!(r, StmtResult::Failed(_))) {
                // The shared transaction rolled back; run each job alone to find the bad one.
                if jobs.len() == 1 {
                    reply_all(&client, jobs, results).await;
                } else {
                    for job in jobs {
                        let res = run_transaction(&client, &[&job.op], floor).await;
                        match res {
                            Ok(r) => reply_all(&client, vec![job], r).await,
                            Err(e) => {
                                let _ = job.reply.send(Err(e));
                            }
                        }
                    }
                }
            } else {
                reply_all(&client, jobs, results).await;
            }
        }
        Err(e) => {
            for j in jobs {
                let _ = j.reply.send(Err(e.clone()));
            }
        }
    }
}

/// Runs BEGIN, the statements and COMMIT in one pipelined round trip.
/// `Ok` means the statements' own results are final: committed if none failed, rolled back otherwise.
async fn run_transaction(
    client: &Object,
    ops: &[&WriteOp],
    floor: u64,
) -> Result<Vec<StmtResult>, StoreError> {
    let prep = |sql: &str| {
        let sql = sql.to_string();
        async move {
            client
                .prepare_cached(&sql)
                .await
                .map_err(StoreError::from_pg)
        }
    };
    let begin = prep("BEGIN").await?;
    let commit = prep("COMMIT").await?;
    let runs = batch::plan(ops);
    let mut stmts = Vec::with_capacity(runs.len());
    for run in &runs {
        let sql: std::borrow::Cow<'static, str> = match (run.kind, run.jobs.len()) {
            (RunKind::Create, 1) => INSERT.into(),
            (RunKind::Update, 1) => UPDATE.into(),
            (RunKind::Delete, 1) => DELETE.into(),
            (RunKind::Create, _) => batch::INSERT_MANY.into(),
            (RunKind::Update, _) => batch::update_many().into(),
            (RunKind::Delete, _) => batch::delete_many().into(),
        };
        stmts.push(prep(&sql).await?);
        let rows = if run.jobs.len() == 1 { "one" } else { "many" };
        metrics::counter!("ark_store_write_statements_total", "rows" => rows).increment(1);
    }
    // A run of one binds its write's columns; a longer run binds arrays of them.
    let arrays: Vec<Option<batch::Arrays<'_>>> = runs
        .iter()
        .map(|r| (r.jobs.len() > 1).then(|| batch::Arrays::of(ops, r)))
        .collect();
    let params: Vec<Vec<&(dyn ToSql + Sync)>> = runs
        .iter()
        .zip(&arrays)
        .map(|(r, a)| match a {
            Some(a) => a.params(r.kind),
            None => bind(ops[r.jobs[0]]),
        })
        .collect();
    let raise = prep(RAISE_COUNTER).await?;
    let floor = floor as i64;
    let raise_params: [&(dyn ToSql + Sync); 1] = [&floor];
    let begin_f = client.query(&begin, &[]);
    // Matches no row (and so locks none) unless the counter is behind the floor.
    let raise_f = client.query(&raise, &raise_params);
    let stmt_fs: Vec<_> = stmts
        .iter()
        .zip(params.iter())
        .map(|(stmt, p)| client.query(stmt, p))
        .collect();
    let commit_f = client.query(&commit, &[]);
    // join_all polls in order, so the requests go out in order in one pipeline.
    let (begin_r, raise_r, stmt_rs, commit_r) =
        tokio::join!(begin_f, raise_f, join_all(stmt_fs), commit_f);
    begin_r.map_err(StoreError::from_pg)?;
    raise_r.map_err(StoreError::from_pg)?;
    let mut results: Vec<Option<StmtResult>> = ops.iter().map(|_| None).collect();
    let mut failed = false;
    for (run, r) in runs.iter().zip(stmt_rs) {
        match r {
            Ok(rows) if run.jobs.len() == 1 => {
                results[run.jobs[0]] = Some(match rows.first() {
                    Some(row) => StmtResult::Wrote(row.get(0)),
                    None => StmtResult::NoRow,
                });
            }
            Ok(rows) => {
                let written: HashMap<Uuid, i64> =
                    rows.iter().map(|row| (row.get(0), row.get(1))).collect();
                for &i in &run.jobs {
                    let uid = columns_of(ops[i]).uid;
                    results[i] = Some(match written.get(&uid) {
                        Some(rv) => StmtResult::Wrote(*rv),
                        None => StmtResult::NoRow,
                    });
                }
            }
            Err(e) => {
                failed = true;
                // Every write of a failed statement failed with it; the caller retries
                // them one by one to find the bad one.
                let e = StoreError::from_pg(e);
                for &i in &run.jobs {
                    results[i] = Some(StmtResult::Failed(e.clone()));
                }
            }
        }
    }
    let results: Vec<StmtResult> = results
        .into_iter()
        .map(|r| r.unwrap_or(StmtResult::NoRow))
        .collect();
    if let Err(e) = commit_r {
        return Err(if failed {
            StoreError::from_pg(e)
        } else {
            StoreError::from_commit(e)
        });
    }
    Ok(results)
}

fn columns_of(op: &WriteOp) -> &Columns {
    match op {
        WriteOp::Create(c) | WriteOp::Update { cols: c, .. } | WriteOp::Delete { cols: c, .. } => c,
    }
}

fn bind(op: &WriteOp) -> Vec<&(dyn ToSql + Sync)> {
    match op {
        WriteOp::Create(c) => vec![
            &c.uid,
            &c.kind,
            &c.api_version,
            &c.namespace,
            &c.name,
            &c.generation,
            &c.spec,
            &c.status,
            &c.labels,
            &c.annotations,
            &c.finalizers,
            &c.owner_references,
            &c.managed_fields,
            &c.extra,
            &c.created_at,
            &c.deletion_timestamp,
        ],
        WriteOp::Update {
            cols: c,
            expected_rv,
        }
        | WriteOp::Delete {
            cols: c,
            expected_rv,
        } => vec![
            &c.uid,
            &c.api_version,
            &c.generation,
            &c.spec,
            &c.status,
            &c.labels,
            &c.annotations,
            &c.finalizers,
            &c.owner_references,
            &c.managed_fields,
            &c.extra,
            &c.deletion_timestamp,
            expected_rv,
        ],
    }
}

async fn reply_all(client: &Object, jobs: Vec<Job>, results: Vec<StmtResult>) {
    for (job, result) in jobs.into_iter().zip(results) {
        let outcome = match result {
            StmtResult::Wrote(rv) => Ok(Written {
                resource_version: rv,
            }),
            StmtResult::Failed(e) => Err(e),
            StmtResult::NoRow => match &job.op {
                WriteOp::Create(_) => Err(StoreError::AlreadyExists),
                // Stale or gone: tell which, so the caller can answer Conflict or NotFound.
                WriteOp::Update { cols, .. } | WriteOp::Delete { cols, .. } => {
                    match client.query_opt(IS_LIVE, &[&cols.uid]).await {
                        Ok(Some(_)) => Err(StoreError::Conflict),
                        Ok(None) => Err(StoreError::NotFound),
                        Err(e) => Err(StoreError::from_pg(e)),
                    }
                }
            },
        };
        let _ = job.reply.send(outcome);
    }
}
