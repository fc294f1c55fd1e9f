//! The role loop: try the slot; while another replica holds it, follow that replica;
//! when the stream from it ends, try the slot again. And the reporter, which keeps this
//! replica's row current and, on the leader, the floor of what its followers applied.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::follow::{follow, FollowEnd};
use super::{Replica, Role, FRESH, REPORT_EVERY, SILENCE, TRY_SLOT_EVERY};
use crate::cdc::consume::Consumer;
use crate::cdc::stream::{self, Ended, SessionError, StreamConfig};
use crate::store::Store;
use crate::tls::ServingCert;
use crate::watch::State;

/// Rows nobody refreshed for this long are deleted by the leader.
const FORGET_AFTER: Duration = Duration::from_secs(3600);

/// Runs until a definite error or `stop`: leads when the slot is free, follows its holder
/// otherwise. On `stop` a leader confirms what it (and its followers) applied and frees
/// the slot, and the replica's row is removed.
pub async fn run(
    cfg: StreamConfig,
    consumer: Consumer,
    serving: Arc<ServingCert>,
    mut stop: watch::Receiver<bool>,
) -> Ended {
    let replica = consumer.replica().clone();
    let store = consumer.store().clone();
    let beat = tokio::spawn(stream::heartbeat(store.clone(), consumer.status().clone()));
    let report = tokio::spawn(report_loop(
        store.clone(),
        replica.clone(),
        consumer.state().clone(),
        serving,
    ));
    let end = roles(&cfg, &consumer, &mut stop).await;
    beat.abort();
    report.abort();
    replica.set_role(Role::Candidate);
    if matches!(end, Ended::Stopped) {
        if let Err(e) = store
            .forget_replicas(Some(&replica.identity.id), FORGET_AFTER)
            .await
        {
            tracing::debug!(error = %e, "could not remove this replica's row");
        }
    }
    end
}

async fn roles(cfg: &StreamConfig, consumer: &Consumer, stop: &mut watch::Receiver<bool>) -> Ended {
    let replica = consumer.replica();
    let status = consumer.status();
    let mut backoff = Duration::from_millis(100);
    // When this replica last had a stream (its own or the leader's): a hand-over shorter
    // than this does not make it unready.
    let mut last_streaming: Option<Instant> = None;
    loop {
        let started = Instant::now();
        let err = stream::session(cfg, consumer, stop).await;
        let was_leader = replica.is_leader();
        if was_leader {
            last_streaming = Some(Instant::now());
        }
        replica.set_role(Role::Candidate);
        let recently = last_streaming.is_some_and(|t| t.elapsed() < SILENCE * 2);
        let wait = match err {
            SessionError::Definite(e) => {
                status.set_down(&e.to_string());
                return Ended::Definite(e);
            }
            SessionError::Stopped => return Ended::Stopped,
            SessionError::SlotBusy { .. } => {
                backoff = Duration::from_millis(100);
                match consumer.store().leader_of(&cfg.slot).await {
                    Ok(Some(leader)) if leader.replica_id != replica.identity.id => {
                        match follow(&leader, consumer, stop).await {
                            FollowEnd::Stopped => return Ended::Stopped,
                            FollowEnd::Retry(why) => {
                                if matches!(replica.role(), Role::Follower { .. }) {
                                    last_streaming = Some(Instant::now());
                                }
                                if recently || matches!(replica.role(), Role::Follower { .. }) {
                                    // A stream that was up ends (the leader died, hung or
                                    // stepped down): stay ready through the slot attempt
                                    // that follows at once; the state is whole, and a
                                    // consistent read waits for the next stream.
                                    tracing::info!(%why, leader = %leader.replica_id, "stopped following; trying the slot");
                                } else {
                                    status.set_down(&format!(
                                        "cannot follow the leader {}: {why}",
                                        leader.replica_id
                                    ));
                                }
                                replica.set_role(Role::Candidate);
                                Duration::ZERO
                            }
                        }
                    }
                    // Held by a session that is not a replica of this server (or by
                    // this replica's previous connection, which PostgreSQL has not
                    // noticed is gone yet): wait for it.
                    Ok(_) => {
                        if !recently {
                            status.set_down(&err.to_string());
                        }
                        tracing::debug!(error = %err, "change stream waiting");
                        TRY_SLOT_EVERY
                    }
                    Err(e) => {
                        status.set_down(&format!("{err}; finding its holder: {e}"));
                        TRY_SLOT_EVERY
                    }
                }
            }
            SessionError::Transient(_) => {
                status.set_down(&err.to_string());
                metrics::counter!("ark_cdc_session_errors_total").increment(1);
                if was_leader {
                    tracing::warn!(error = %err, "lost the change stream; stepping down until the slot is ours again");
                } else {
                    tracing::warn!(error = %err, retry_in = ?backoff, "change stream interrupted; reconnecting");
                }
                if started.elapsed() > Duration::from_secs(30) {
                    backoff = Duration::from_millis(100);
                }
                let w = backoff;
                backoff = (backoff * 2).min(Duration::from_secs(10));
                w
            }
        };
        if !wait.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.wait_for(|s| *s) => return Ended::Stopped,
            }
        }
    }
}

/// Every second: refresh this replica's row (address, secret, certificate, applied
/// position); on the leader, recompute the floor of its connected followers and forget
/// rows nobody refreshed for an hour; everywhere, the lag gauges.
async fn report_loop(
    store: Arc<Store>,
    replica: Arc<Replica>,
    state: Arc<State>,
    serving: Arc<ServingCert>,
) {
    let mut tick = tokio::time::interval(REPORT_EVERY);
    let mut last_forget = Instant::now();
    loop {
        tick.tick().await;
        let current = serving.current();
        let Some(der) = current.cert.first() else {
            continue;
        };
        let record = replica.record(der.as_ref());
        if let Err(e) = store
            .register_replica(&record, state.applied_lsn(), state.rv())
            .await
        {
            tracing::debug!(error = %e, "could not refresh this replica's row");
            continue;
        }
        if replica.is_leader() {
            let readers = replica.readers();
            match store
                .followers_applied(&replica.slot, &replica.identity.id, FRESH)
                .await
            {
                Ok(rows) => replica.set_floor(
                    rows.iter()
                        .filter(|(id, _)| readers.contains(id))
                        .map(|(_, lsn)| *lsn)
                        .min(),
                ),
                Err(e) => tracing::debug!(error = %e, "could not read the followers' positions"),
            }
            metrics::gauge!("ark_replication_followers").set(readers.len() as f64);
            if last_forget.elapsed() > Duration::from_secs(60) {
                last_forget = Instant::now();
                let _ = store.forget_replicas(None, FORGET_AFTER).await;
            }
        }
        let (events, secs) = replica.lag(state.rv());
        metrics::gauge!("ark_replication_follower_lag_events").set(events as f64);
        metrics::gauge!("ark_replication_follower_lag_seconds").set(secs);
    }
}
