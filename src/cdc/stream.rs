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
use std::time::Duration;

use pgwire_replication::{ReplicationClient, ReplicationConfig, ReplicationEvent};
use tokio::sync::watch;

use super::assemble::{Assembler, Input};
use super::consume::Consumer;
use super::slot::{self, PreflightError};
use super::status::StreamStatus;
use super::timeline;
use crate::store::connect::{DbConfig, SslMode};
use crate::store::Store;

/// What the stream needs to know.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    pub db: DbConfig,
    pub slot: String,
    pub publication: String,
    /// The replication connection's application name: ties the slot's walsender to this
    /// replica's row (`store::replicas`).
    pub application_name: String,
    /// The walsender's `wal_sender_timeout` for this connection: how long a hung or cut-off
    /// leader keeps the slot before PostgreSQL frees it for a follower.
    pub sender_timeout: Duration,
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
pub async fn heartbeat(store: Arc<Store>, status: Arc<StreamStatus>) {
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

/// The host (and port) to open the replication connection to. With several hosts in the
/// connection string (`host=a,b` and `target_session_attrs=read-write`, for managed
/// PostgreSQL with a standby), the pool has already found the primary: `server` is that
/// connection's `inet_server_addr()` and `inet_server_port()`, matched against the hosts
/// given. A single host is used as given.
pub(crate) fn replication_target(
    pg: &tokio_postgres::Config,
    server: Option<(Option<String>, u16)>,
) -> (String, u16) {
    let hosts: Vec<String> = pg
        .get_hosts()
        .iter()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .collect();
    let ports = pg.get_ports();
    let port_of = |i: usize| match ports.len() {
        0 => 5432,
        1 => ports[0],
        _ => ports.get(i).copied().unwrap_or(5432),
    };
    let pairs: Vec<(String, u16)> = if hosts.is_empty() {
        vec![("localhost".to_string(), port_of(0))]
    } else {
        hosts
            .into_iter()
            .enumerate()
            .map(|(i, h)| (h, port_of(i)))
            .collect()
    };
    if pairs.len() > 1 {
        if let Some((addr, port)) = server {
            let same_port: Vec<&(String, u16)> = pairs.iter().filter(|(_, p)| *p == port).collect();
            let by_addr = addr.as_deref().and_then(|a| {
                let a = a.split('/').next().unwrap_or(a);
                same_port.iter().find(|(h, _)| h == a)
            });
            match (by_addr, same_port.as_slice()) {
                (Some(p), _) => return (*p).clone(),
                (None, [only]) => return (*only).clone(),
                _ => {}
            }
        }
    }
    pairs
        .into_iter()
        .next()
        .unwrap_or(("localhost".into(), 5432))
}

fn wire_config(
    cfg: &StreamConfig,
    target: (String, u16),
) -> Result<ReplicationConfig, SessionError> {
    let pg = &cfg.db.pg;
    let (host, port) = target;
    let mut rc = ReplicationConfig::new(
        host,
        pg.get_user().unwrap_or("postgres"),
        String::from_utf8_lossy(pg.get_password().unwrap_or_default()).into_owned(),
        pg.get_dbname().unwrap_or("postgres"),
        cfg.slot.clone(),
        cfg.publication.clone(),
    );
    rc.port = port;
    rc.binary = true;
    rc.application_name = Some(cfg.application_name.clone());
    rc.options = Some(format!(
        "-c wal_sender_timeout={}ms",
        cfg.sender_timeout.as_millis()
    ));
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

/// One attempt to lead: take the slot and stream from it until something ends the
/// session; `SlotBusy` when another replica holds it.
pub async fn session(
    cfg: &StreamConfig,
    consumer: &Consumer,
    stop: &watch::Receiver<bool>,
) -> SessionError {
    let (store, status) = (consumer.store().clone(), consumer.status().clone());
    let end = match session_inner(cfg, &store, consumer, &status, stop.clone()).await {
        Ok(never) => match never {},
        Err(e) => e,
    };
    status.set_walsender(None);
    end
}

async fn session_inner(
    cfg: &StreamConfig,
    store: &Store,
    consumer: &Consumer,
    status: &StreamStatus,
    stop: watch::Receiver<bool>,
) -> Result<std::convert::Infallible, SessionError> {
    if *stop.borrow() {
        return Err(SessionError::Stopped);
    }
    let state = consumer.state();
    let pool = store.pool();
    let sql = pool.get().await.map_err(transient)?;
    // A failed query (the connection dropped: PostgreSQL restarting or failing over) is
    // worth retrying; only what the answer says about the settings is definite.
    slot::preflight(&sql, &cfg.slot)
        .await
        .map_err(|e| match e {
            PreflightError::Db(why) => SessionError::Transient(why),
            definite => SessionError::Definite(definite),
        })?;
    slot::ensure_publication(&sql, &cfg.publication)
        .await
        .map_err(transient)?;
    let server = slot::server_address(&sql).await.map_err(transient)?;
    let target = replication_target(&cfg.db.pg, server);
    let mut repl = ReplicationClient::connect_gated(wire_config(cfg, target)?)
        .await
        .map_err(transient)?;
    let identity = repl.identify_system().await.map_err(transient)?;
    let now = timeline::Origin {
        system_id: identity.system_id,
        timeline: identity.timeline,
    };
    let origin = consumer.replica().origin();
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
        let diverged = match (&origin, state.is_seeded()) {
            (Some(ours), true) => {
                off_our_history(&mut repl, ours, state.applied_lsn(), &now).await?
            }
            _ => None,
        };
        let moved_past_us = diverged.is_none()
            && state.is_seeded()
            && lsn_of(i.confirmed_flush_lsn.as_deref()) > state.applied_lsn();
        let ahead_of_wal = i.is_ahead_of_wal();
        if i.is_invalidated()
            || !i.is_usable_logical_pgoutput()
            || moved_past_us
            || ahead_of_wal
            || diverged.is_some()
        {
            tracing::warn!(
                slot = %cfg.slot,
                wal_status = ?i.wal_status,
                plugin = ?i.plugin,
                moved_past_us,
                ahead_of_wal,
                diverged = diverged.as_deref().unwrap_or("no"),
                "replication slot cannot continue this server's stream; recreating it (a gap: watches get 410 and relist)"
            );
            metrics::counter!("ark_cdc_slot_recreated_total").increment(1);
            slot::drop_slot(&sql, &cfg.slot, false)
                .await
                .map_err(transient)?;
            info = None;
        }
    } else if let (Some(ours), true) = (&origin, state.is_seeded()) {
        if ours != &now {
            tracing::info!(from = %ours.to_header(), now = %now.to_header(), "the database's timeline changed and the slot is gone; re-seeding from a new slot");
        }
    }

    match info {
        None => {
            let rows = repl
                .simple_query(&format!(
                    "CREATE_REPLICATION_SLOT {} LOGICAL pgoutput EXPORT_SNAPSHOT",
                    slot::quote_ident(&cfg.slot)
                ))
                .await
                .map_err(transient)?;
            let column = |i: usize| {
                rows.first()
                    .and_then(|r| r.get(i).cloned().flatten())
                    .map(|b| String::from_utf8_lossy(b.as_ref()).into_owned())
            };
            let snapshot = column(2)
                .ok_or_else(|| transient("CREATE_REPLICATION_SLOT returned no snapshot"))?;
            let consistent_point = lsn_of(column(1).as_deref());
            tracing::info!(slot = %cfg.slot, consistent_point = %crate::pgoutput::Lsn(consistent_point), "created replication slot; seeding from its snapshot");
            consumer.seed(Some(&snapshot), consistent_point).await?;
        }
        Some(i) if !state.is_seeded() => {
            consumer
                .seed(None, lsn_of(i.confirmed_flush_lsn.as_deref()))
                .await?
        }
        Some(_) => {}
    }
    consumer.replica().set_origin(Some(now));
    drop(sql);
    repl.start().await.map_err(transient)?;
    consumer.replica().set_role(crate::replica::Role::Leader);
    // For consistent reads' probe (registry::reads): checking one walsender pid is about
    // a third of the cost of matching the slot to this replica's walsender by name. Not
    // knowing it only makes the probe take the longer way.
    let walsender = match pool.get().await {
        Ok(c) => slot::our_walsender(&c, &cfg.slot, &cfg.application_name)
            .await
            .unwrap_or(None),
        Err(_) => None,
    };
    status.set_walsender(walsender);
    // Ready only once the stream has delivered a read point written now, after the seed:
    // until then a consistent read would wait for the replay of whatever the slot retained.
    let mark = store.emit_sync_message().await.map_err(transient)?;
    status.set_catching_up(mark.lsn);
    let end = stream_loop(&mut repl, consumer, stop).await;
    if let Err(SessionError::Stopped) = &end {
        finish(&mut repl, pool, &cfg.slot, consumer).await;
    }
    end
}

/// Why the state (streamed from `ours`, applied up to `applied`) cannot continue on the
/// server's timeline `now`, or `None` when it can. Positions compare only along one
/// history, so another timeline continues the state only if it branched off at or after
/// `applied` (see `timeline`); its history is asked for only then.
async fn off_our_history(
    repl: &mut ReplicationClient,
    ours: &timeline::Origin,
    applied: u64,
    now: &timeline::Origin,
) -> Result<Option<String>, SessionError> {
    let history = if now.timeline > 1 && ours.timeline != now.timeline {
        let h = repl
            .timeline_history(now.timeline)
            .await
            .map_err(transient)?;
        Some(String::from_utf8_lossy(&h.content).into_owned())
    } else {
        None
    };
    Ok(
        match timeline::continuity(ours, applied, now, history.as_deref()) {
            timeline::Continuity::Diverged(why) => Some(why),
            _ => None,
        },
    )
}

/// The clean end of a session: report the last applied position, end the stream (CopyDone)
/// and close the connection, so the slot is free at once and a successor resumes exactly
/// after what this server applied.
async fn finish(
    repl: &mut ReplicationClient,
    pool: &deadpool_postgres::Pool,
    slot: &str,
    consumer: &Consumer,
) {
    let applied = crate::pgoutput::Lsn(consumer.ackable(consumer.state().applied_lsn()));
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

fn lsn_of(s: Option<&str>) -> u64 {
    s.and_then(|s| s.parse::<crate::pgoutput::Lsn>().ok())
        .map(|l| l.0)
        .unwrap_or(0)
}

/// The wire layer: replication events to the assembler, its output to the consumer, and
/// the consumer's applied position acknowledged, in that order and only here.
async fn stream_loop(
    repl: &mut ReplicationClient,
    consumer: &Consumer,
    mut stop: watch::Receiver<bool>,
) -> Result<std::convert::Infallible, SessionError> {
    let mut assembler = Assembler::new();
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
        let input = match ev {
            ReplicationEvent::Begin { .. } => Input::Begin,
            ReplicationEvent::XLogData { data, .. } => Input::Data(data),
            ReplicationEvent::Commit { end_lsn, .. } => Input::Commit { end_lsn: end_lsn.0 },
            ReplicationEvent::KeepAlive { wal_end, .. } => Input::KeepAlive { wal_end: wal_end.0 },
            // Emitted by the heartbeat (consistent reads' read points are transactional
            // and arrive inside Begin/Commit).
            ReplicationEvent::Message {
                lsn,
                transactional: false,
                ..
            } => Input::Marker { lsn: lsn.0 },
            ReplicationEvent::Message { .. } => continue,
            ReplicationEvent::StoppedAt { .. } => {
                return Err(transient("the replication stream stopped"))
            }
        };
        let out = assembler
            .push(input, consumer.state().as_ref())
            .map_err(|e| {
                metrics::counter!("ark_cdc_decode_errors_total").increment(1);
                transient(e)
            })?;
        if let Some(out) = out {
            let applied = consumer.take(out).await?;
            repl.update_applied_lsn(pgwire_replication::Lsn(consumer.ackable(applied)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::replication_target;

    fn pg(url: &str) -> tokio_postgres::Config {
        url.parse().unwrap()
    }

    #[test]
    fn the_replication_connection_goes_to_the_host_the_pool_found_to_be_the_primary() {
        let multi = pg("host=10.0.0.1,10.0.0.2 port=5432 user=ark target_session_attrs=read-write");
        assert_eq!(
            replication_target(&multi, Some((Some("10.0.0.2/32".into()), 5432))),
            ("10.0.0.2".to_string(), 5432)
        );
        let ports = pg("host=127.0.0.1,127.0.0.1 port=5001,5002 user=ark");
        assert_eq!(
            replication_target(&ports, Some((Some("127.0.0.1/32".into()), 5002))),
            ("127.0.0.1".to_string(), 5002)
        );
        // Unknown (a Unix socket, or names that do not match): the first host.
        assert_eq!(
            replication_target(&multi, None),
            ("10.0.0.1".to_string(), 5432)
        );
        let single = pg("host=db.example port=6432 user=ark");
        assert_eq!(
            replication_target(&single, Some((Some("10.9.9.9/32".into()), 5432))),
            ("db.example".to_string(), 6432)
        );
    }
}
