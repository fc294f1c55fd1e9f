//! The replication session: slot lifecycle at every (re)connect, seeding, decoding, and
//! acknowledgement.
//!
//! Errors split by what happens next, as in Materialize's source: a *definite* error
//! (the database cannot feed a watch: wal_level, privileges) stops the server with a message
//! naming the fix; a *transient* one (connection lost, slot held by another session,
//! malformed bytes) ends the session, and the loop reconnects with backoff while `/readyz`
//! says why.
//!
//! Why seeding leaves no gap:
//! - A new slot exports the snapshot it was created at; the table is read in exactly that
//!   snapshot, and the stream starts at the slot's consistent point.
//! - An existing slot resumes after `confirmed_flush_lsn`, which this server advances only
//!   after applying. The table is read in a snapshot taken after connecting, so every commit
//!   is in the snapshot, in the stream, or in both. resourceVersions are global and in
//!   commit order, so a streamed change is already in the state exactly when its
//!   resourceVersion is at most the state's: replay is skipped by one comparison.
//! - A slot that was invalidated, recreated by someone else, or has moved past what this
//!   server applied, is a gap: the state is re-seeded and every watch gets 410.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use pgwire_replication::{ReplicationClient, ReplicationConfig, ReplicationEvent};
use tokio::sync::watch;
use uuid::Uuid;

use super::rows::{Layout, Row, RowError};
use super::slot::{self, PreflightError};
use super::status::StreamStatus;
use crate::pgoutput::{Decoder, Message, ProtocolVersion};
use crate::store::connect::{DbConfig, SslMode};
use crate::store::row::Columns;
use crate::store::Store;
use crate::watch::{Change, Obj, State};

/// What the stream needs to know.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    pub db: DbConfig,
    pub slot: String,
    pub publication: String,
}

/// How a session ended.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The database cannot feed a watch until an operator changes it.
    #[error("{0}")]
    Definite(#[from] PreflightError),
    /// Another session holds the slot; it is never taken over.
    #[error("replication slot {slot:?} is in use by another session (pid {pid}); waiting for it to be released")]
    SlotBusy { slot: String, pid: i32 },
    /// Worth retrying: connection problems, malformed stream bytes, unexpected rows.
    #[error("{0}")]
    Transient(String),
    /// The server is stopping; the session ended cleanly.
    #[error("the server is stopping")]
    Stopped,
}

/// Why the stream task ended.
#[derive(Debug)]
pub enum Ended {
    /// The database cannot feed a watch until an operator changes it.
    Definite(PreflightError),
    /// Shut down on request, after confirming what it applied.
    Stopped,
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ended::Definite(e) => e.fmt(f),
            Ended::Stopped => f.write_str("the change stream was stopped"),
        }
    }
}

fn transient(e: impl std::fmt::Display) -> SessionError {
    SessionError::Transient(e.to_string())
}

/// How often the heartbeat writes a logical message for the stream to acknowledge.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// Writes a tiny non-transactional logical message every second while the stream is up,
/// so the slot can be advanced even while `resources` is idle and other tables write a lot.
async fn heartbeat(store: Arc<Store>, status: Arc<StreamStatus>) {
    loop {
        tokio::time::sleep(HEARTBEAT).await;
        if status.check().is_err() {
            continue;
        }
        if let Err(e) = store.emit_heartbeat().await {
            tracing::debug!(error = %e, "heartbeat message not written");
        }
    }
}

/// Runs sessions, reconnecting with backoff, until a definite error or until `stop` turns
/// true: then the running session confirms what it applied and closes its connection, so
/// the slot is free at once for whoever takes over.
pub async fn run(
    cfg: StreamConfig,
    store: Arc<Store>,
    state: Arc<State>,
    status: Arc<StreamStatus>,
    stop: watch::Receiver<bool>,
) -> Ended {
    let beat = tokio::spawn(heartbeat(store.clone(), status.clone()));
    let e = run_sessions(cfg, store, state, status, stop).await;
    beat.abort();
    e
}

async fn run_sessions(
    cfg: StreamConfig,
    store: Arc<Store>,
    state: Arc<State>,
    status: Arc<StreamStatus>,
    mut stop: watch::Receiver<bool>,
) -> Ended {
    let mut backoff = Duration::from_millis(100);
    loop {
        let started = Instant::now();
        let err = session(&cfg, &store, &state, &status, &stop).await;
        status.set_down(&err.to_string());
        match err {
            SessionError::Definite(e) => return Ended::Definite(e),
            SessionError::Stopped => return Ended::Stopped,
            SessionError::SlotBusy { .. } => tracing::warn!(error = %err, "change stream waiting"),
            SessionError::Transient(_) => {
                metrics::counter!("ark_cdc_session_errors_total").increment(1);
                tracing::warn!(error = %err, retry_in = ?backoff, "change stream interrupted; reconnecting");
            }
        }
        if started.elapsed() > Duration::from_secs(30) {
            backoff = Duration::from_millis(100);
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.wait_for(|s| *s) => return Ended::Stopped,
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

fn wire_config(cfg: &StreamConfig) -> Result<ReplicationConfig, SessionError> {
    let pg = &cfg.db.pg;
    let host = match pg.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_string(),
    };
    let mut rc = ReplicationConfig::new(
        host,
        pg.get_user().unwrap_or("postgres"),
        String::from_utf8_lossy(pg.get_password().unwrap_or_default()).into_owned(),
        pg.get_dbname().unwrap_or("postgres"),
        cfg.slot.clone(),
        cfg.publication.clone(),
    );
    rc.port = pg.get_ports().first().copied().unwrap_or(5432);
    rc.binary = true;
    rc.application_name = Some("ark-apiserver-cdc".into());
    rc.status_interval = Duration::from_secs(1);
    rc.idle_wakeup_interval = Duration::from_secs(5);
    rc.tls = match cfg.db.ssl_mode {
        SslMode::Disable => pgwire_replication::TlsConfig::disabled(),
        SslMode::Prefer => pgwire_replication::TlsConfig {
            mode: pgwire_replication::SslMode::Prefer,
            ..Default::default()
        },
        SslMode::Require => pgwire_replication::TlsConfig::require(),
        SslMode::VerifyCa => pgwire_replication::TlsConfig::verify_ca(cfg.db.root_cert.clone()),
        SslMode::VerifyFull => pgwire_replication::TlsConfig::verify_full(cfg.db.root_cert.clone()),
    };
    Ok(rc)
}

async fn session(
    cfg: &StreamConfig,
    store: &Store,
    state: &Arc<State>,
    status: &StreamStatus,
    stop: &watch::Receiver<bool>,
) -> SessionError {
    match session_inner(cfg, store, state, status, stop.clone()).await {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

async fn session_inner(
    cfg: &StreamConfig,
    store: &Store,
    state: &Arc<State>,
    status: &StreamStatus,
    stop: watch::Receiver<bool>,
) -> Result<std::convert::Infallible, SessionError> {
    if *stop.borrow() {
        return Err(SessionError::Stopped);
    }
    let pool = store.pool();
    let mut sql = pool.get().await.map_err(transient)?;
    slot::preflight(&sql, &cfg.slot).await?;
    slot::ensure_publication(&sql, &cfg.publication)
        .await
        .map_err(transient)?;
    let mut info = slot::inspect(&sql, &cfg.slot).await.map_err(transient)?;
    if let Some(i) = &info {
        if let (true, Some(pid)) = (i.active, i.active_pid) {
            return Err(SessionError::SlotBusy {
                slot: cfg.slot.clone(),
                pid,
            });
        }
        // Never drop another database's slot: its server would lose its stream.
        if let Some(theirs) = i.database.as_deref() {
            let ours: String = sql
                .query_one("SELECT current_database()::text", &[])
                .await
                .map_err(transient)?
                .get(0);
            if theirs != ours {
                return Err(SessionError::Definite(
                    slot::PreflightError::SlotOfAnotherDatabase {
                        slot: cfg.slot.clone(),
                        database: theirs.to_string(),
                        ours,
                    },
                ));
            }
        }
        let moved_past_us =
            state.is_seeded() && lsn_of(i.confirmed_flush_lsn.as_deref()) > state.applied_lsn();
        let ahead_of_wal = i.is_ahead_of_wal();
        if i.is_invalidated() || !i.is_usable_logical_pgoutput() || moved_past_us || ahead_of_wal {
            tracing::warn!(
                slot = %cfg.slot,
                wal_status = ?i.wal_status,
                plugin = ?i.plugin,
                moved_past_us,
                ahead_of_wal,
                "replication slot cannot continue this server's stream; recreating it (a gap: watches get 410 and relist)"
            );
            metrics::counter!("ark_cdc_slot_recreated_total").increment(1);
            slot::drop_slot(&sql, &cfg.slot, false)
                .await
                .map_err(transient)?;
            info = None;
        }
    }

    let mut repl = ReplicationClient::connect_gated(wire_config(cfg)?)
        .await
        .map_err(transient)?;
    match info {
        None => {
            let rows = repl
                .simple_query(&format!(
                    "CREATE_REPLICATION_SLOT {} LOGICAL pgoutput EXPORT_SNAPSHOT",
                    slot::quote_ident(&cfg.slot)
                ))
                .await
                .map_err(transient)?;
            let snapshot = rows
                .first()
                .and_then(|r| r.get(2).cloned().flatten())
                .map(|b| String::from_utf8_lossy(b.as_ref()).into_owned())
                .ok_or_else(|| transient("CREATE_REPLICATION_SLOT returned no snapshot"))?;
            tracing::info!(slot = %cfg.slot, "created replication slot; seeding from its snapshot");
            seed(&mut sql, state, Some(&snapshot)).await?;
        }
        Some(_) if !state.is_seeded() => seed(&mut sql, state, None).await?,
        Some(_) => {}
    }
    drop(sql);
    repl.start().await.map_err(transient)?;
    // Ready only once the stream has delivered a read point written now, after the seed:
    // until then a consistent read would wait for the replay of whatever the slot retained.
    let mark = store.emit_sync_message().await.map_err(transient)?;
    status.set_catching_up(mark.lsn);
    let end = stream_loop(&mut repl, pool, state, status, stop).await;
    if let Err(SessionError::Stopped) = &end {
        finish(&mut repl, pool, &cfg.slot, state).await;
    }
    end
}

/// The clean end of a session: report the last applied position, end the stream (CopyDone)
/// and close the connection, so the slot is free at once and a successor resumes exactly
/// after what this server applied.
async fn finish(
    repl: &mut ReplicationClient,
    pool: &deadpool_postgres::Pool,
    slot: &str,
    state: &State,
) {
    let applied = crate::pgoutput::Lsn(state.applied_lsn());
    repl.update_applied_lsn(pgwire_replication::Lsn(applied.0));
    repl.stop();
    // The worker closes its channel once it has sent CopyDone and dropped the connection.
    let drained = tokio::time::timeout(Duration::from_secs(1), async {
        while let Ok(Some(_)) = repl.recv().await {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("the replication connection did not close within 1s");
        repl.abort();
    }
    // The client does not send a last status update before ending the stream: move the
    // slot to the applied position over SQL, once the walsender has let go of it.
    let moved = match pool.get().await {
        Ok(c) => slot::advance(&c, slot, applied).await,
        Err(e) => Err(e.to_string()),
    };
    match moved {
        Ok(_) => {
            tracing::info!(%slot, confirmed = %applied, "change stream stopped; slot released")
        }
        Err(e) => {
            tracing::warn!(%slot, error = %e, "could not confirm the last applied position; a successor replays from the previous one")
        }
    }
}

async fn seed(
    sql: &mut deadpool_postgres::Object,
    state: &State,
    snapshot: Option<&str>,
) -> Result<(), SessionError> {
    let client: &mut tokio_postgres::Client = &mut *sql;
    let (objects, rv) = crate::store::seed::load(client, snapshot)
        .await
        .map_err(transient)?;
    let objs = objects.into_iter().map(|v| Arc::new(Obj::new(v))).collect();
    state.reset(objs, rv.max(0) as u64);
    Ok(())
}

fn lsn_of(s: Option<&str>) -> u64 {
    s.and_then(|s| s.parse::<crate::pgoutput::Lsn>().ok())
        .map(|l| l.0)
        .unwrap_or(0)
}

/// The open transaction being assembled.
#[derive(Default)]
struct Txn {
    changes: Vec<Change>,
    /// Rows changed earlier in this transaction, the previous image for TOAST fills.
    images: std::collections::HashMap<Uuid, Columns>,
    /// The transaction cannot be applied as a change list (TRUNCATE, a hard delete of a live
    /// row): re-seed after it commits.
    gap: Option<String>,
}

async fn stream_loop(
    repl: &mut ReplicationClient,
    pool: &deadpool_postgres::Pool,
    state: &Arc<State>,
    status: &StreamStatus,
    mut stop: watch::Receiver<bool>,
) -> Result<std::convert::Infallible, SessionError> {
    let mut decoder = Decoder::new(ProtocolVersion::V1);
    let mut layout: Option<(Layout, Option<usize>)> = None;
    let mut txn: Option<Txn> = None;
    loop {
        // recv is cancel-safe (a channel receive): a stop loses no event.
        let received = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => return Err(SessionError::Stopped),
            r = repl.recv() => r,
        };
        let Some(ev) = received.map_err(transient)? else {
            return Err(transient("the replication stream ended"));
        };
        match ev {
            ReplicationEvent::Begin { .. } => txn = Some(Txn::default()),
            ReplicationEvent::XLogData { data, .. } => {
                let t = txn.get_or_insert_with(Txn::default);
                handle_data(&mut decoder, &mut layout, t, state, data).map_err(|e| {
                    metrics::counter!("ark_cdc_decode_errors_total").increment(1);
                    transient(format!("cannot decode the replication stream: {e}"))
                })?;
            }
            ReplicationEvent::Commit { end_lsn, .. } => {
                let t = txn.take().unwrap_or_default();
                if let Some(why) = t.gap {
                    // The transaction committed; a snapshot taken now contains it and
                    // everything before it, and later changes are skipped or applied by
                    // resourceVersion as after any seed. Watches get 410 and relist.
                    tracing::warn!(%why, "the change stream cannot be applied as changes; re-seeding (watches get 410)");
                    metrics::counter!("ark_cdc_reseeds_total").increment(1);
                    let mut sql = pool.get().await.map_err(transient)?;
                    seed(&mut sql, state, None).await?;
                    state.set_applied_lsn(end_lsn.0);
                    repl.update_applied_lsn(end_lsn);
                    status.applied(end_lsn.0);
                    continue;
                }
                if !t.changes.is_empty() {
                    for c in &t.changes {
                        metrics::counter!("ark_cdc_events_total", "kind" => c.kind().to_string())
                            .increment(1);
                    }
                    state.apply(t.changes);
                }
                state.set_applied_lsn(end_lsn.0);
                repl.update_applied_lsn(end_lsn);
                status.applied(end_lsn.0);
            }
            ReplicationEvent::KeepAlive { wal_end, .. } => {
                // Nothing in flight: everything up to the server's WAL end is applied, so the
                // slot may advance even while `resources` is idle and other tables write.
                if txn.is_none() {
                    state.set_applied_lsn(wal_end.0);
                    repl.update_applied_lsn(wal_end);
                    status.applied(wal_end.0);
                }
            }
            ReplicationEvent::Message {
                lsn,
                transactional: false,
                ..
            } => {
                // Emitted by consistent reads and by the heartbeat. With nothing in flight,
                // every commit before it has been applied, so the slot may advance to it:
                // this bounds retained WAL during bursts on other tables, when keepalives
                // come only every wal_sender_timeout / 2.
                if txn.is_none() {
                    state.set_applied_lsn(lsn.0);
                    repl.update_applied_lsn(lsn);
                    status.applied(lsn.0);
                }
            }
            ReplicationEvent::Message { .. } => {}
            ReplicationEvent::StoppedAt { .. } => {
                return Err(transient("the replication stream stopped"))
            }
        }
    }
}

fn handle_data(
    decoder: &mut Decoder,
    layout: &mut Option<(Layout, Option<usize>)>,
    txn: &mut Txn,
    state: &State,
    data: Bytes,
) -> Result<(), String> {
    let applied_rv = state.rv();
    match decoder.decode(data).map_err(|e| e.to_string())? {
        Message::Relation(rel) if rel.name == "resources" => {
            *layout = Some(Layout::new(&rel).map_err(|e| e.to_string())?);
        }
        Message::Insert(ins) => {
            let (l, del) = current(layout, ins.relation_id)?;
            // Replayed after a restart or reconnect: commits apply whole, so every row of a
            // replayed transaction is at or below the state's rv (see the module docs), and
            // none needs decoding, not even as a TOAST image for a later row.
            if l.resource_version(&ins.new)
                .map_err(|e| e.to_string())?
                .max(0) as u64
                <= applied_rv
            {
                return Ok(());
            }
            let prev = None;
            push(
                txn,
                l.row(&ins.new, *del, prev).map_err(|e| e.to_string())?,
                applied_rv,
            );
        }
        Message::Update(up) => {
            let (l, del) = current(layout, up.relation_id)?;
            if l.resource_version(&up.new)
                .map_err(|e| e.to_string())?
                .max(0) as u64
                <= applied_rv
            {
                return Ok(());
            }
            let uid = l.key_uid(&up.new).map_err(|e| e.to_string())?;
            // The previous image is needed only to fill unchanged TOASTed columns; building
            // it from the state means parsing the stored object, so only then.
            let prev = txn.images.get(&uid).cloned().or_else(|| {
                up.new
                    .has_unchanged_toast()
                    .then(|| state.get_by_uid(&uid.to_string()))
                    .flatten()
                    .and_then(|o| Columns::from_object(&o.value()).ok())
            });
            match l.row(&up.new, *del, prev.as_ref()) {
                Ok(row) => push(txn, row, applied_rv),
                // A row this server never saw live (e.g. an edit of an already-deleted row):
                // nothing a watcher could be told about.
                Err(RowError::UnknownToast(_)) if prev.is_none() => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        Message::Delete(d) => {
            let (l, _) = current(layout, d.relation_id)?;
            let uid = l.key_uid(d.old.tuple()).map_err(|e| e.to_string())?;
            // The purge removes rows already soft-deleted. A live row deleted without the
            // soft-delete trigger has no resourceVersion for its DELETED event: a gap.
            if state.get_by_uid(&uid.to_string()).is_some() && !txn.images.contains_key(&uid) {
                txn.gap = Some(format!("row {uid} was hard-deleted while live"));
            }
        }
        Message::Truncate(t)
            if layout
                .as_ref()
                .is_some_and(|(l, _)| t.relation_ids.contains(&l.relation_id)) =>
        {
            txn.gap = Some("resources was truncated".into());
        }
        _ => {}
    }
    Ok(())
}

fn current(
    layout: &Option<(Layout, Option<usize>)>,
    relation_id: u32,
) -> Result<&(Layout, Option<usize>), String> {
    match layout {
        Some(l) if l.0.relation_id == relation_id => Ok(l),
        Some(_) => Err(format!(
            "change for relation {relation_id}, which is not resources"
        )),
        None => Err(format!(
            "change for relation {relation_id} before its Relation message"
        )),
    }
}

fn push(txn: &mut Txn, row: Row, applied_rv: u64) {
    txn.images.insert(row.cols.uid, row.cols.clone());
    // Already in the state (replayed after a restart or reconnect): see the module docs.
    if row.resource_version.max(0) as u64 <= applied_rv {
        return;
    }
    let obj = Arc::new(Obj::new(crate::store::row::assemble(
        row.cols,
        row.resource_version,
    )));
    txn.changes.push(if row.deleted {
        Change::Delete(obj)
    } else {
        Change::Put(obj)
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watch::Config;
    use proptest::prelude::*;

    fn feed(data: Bytes) -> (Result<(), String>, Txn) {
        let state = State::new(Config::default());
        let mut decoder = Decoder::new(ProtocolVersion::V1);
        let mut layout = None;
        let mut txn = Txn::default();
        let r = handle_data(&mut decoder, &mut layout, &mut txn, &state, data);
        (r, txn)
    }

    #[test]
    fn malformed_stream_bytes_are_an_error_not_a_panic() {
        for bad in [
            &b""[..],
            b"\xff\x00\x01",
            // An Insert cut short after its relation id.
            b"I\x00\x00\x40\x00",
            // A well-formed Insert of a relation never described by a Relation message.
            b"I\x00\x00\x40\x00N\x00\x01t\x00\x00\x00\x01x",
        ] {
            let (r, txn) = feed(Bytes::from_static(bad));
            assert!(r.is_err(), "{bad:?} was accepted");
            assert!(txn.changes.is_empty());
        }
    }

    proptest! {
        #[test]
        fn any_bytes_are_decoded_or_refused_without_panicking(data in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = feed(Bytes::from(data));
        }
    }
}
