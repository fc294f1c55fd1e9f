//! The follower's side of the internal stream: reads the leader's relay from this
//! replica's resourceVersion and feeds each entry to the same consumer the slot feeds on
//! the leader. The one HTTP client in the server (see ARCHITECTURE.md for why it lives
//! here and not in `api/`).

use std::time::Duration;

use tokio::sync::watch;

use super::frame::{self, Lines};
use super::peer_tls::PinnedCert;
use super::{Entry, Role, SILENCE};
use crate::cdc::assemble::Output;
use crate::cdc::consume::Consumer;
use crate::cdc::timeline::Origin;
use crate::store::replicas::ReplicaRecord;

/// The path of the leader's relay.
pub const STREAM_PATH: &str = "/internal/replication/v1/stream";
/// The header that names the follower to the leader.
pub const REPLICA_HEADER: &str = "x-ark-replica";
/// The header in which the leader names the cluster and timeline its state was streamed
/// from (`<system id>/<timeline>`, see [`crate::cdc::timeline::Origin`]).
pub const ORIGIN_HEADER: &str = "x-ark-origin";

/// How a follow ended.
#[derive(Debug)]
pub enum FollowEnd {
    Stopped,
    /// The stream from the leader ended or could not start; try the slot, then follow
    /// again. The text says why, for the log and `/readyz`.
    Retry(String),
}

/// Follows `leader` until its stream ends or `stop`.
pub async fn follow(
    leader: &ReplicaRecord,
    consumer: &Consumer,
    stop: &mut watch::Receiver<bool>,
) -> FollowEnd {
    tokio::select! {
        biased;
        _ = stop.wait_for(|s| *s) => FollowEnd::Stopped,
        end = follow_inner(leader, consumer) => end,
    }
}

async fn follow_inner(leader: &ReplicaRecord, consumer: &Consumer) -> FollowEnd {
    let replica = consumer.replica();
    let state = consumer.state();
    if !state.is_seeded() {
        if let Err(e) = consumer.seed(None, 0).await {
            return FollowEnd::Retry(format!("seeding from the table: {e}"));
        }
    }
    let tls = match PinnedCert::new(&leader.cert_sha256).client_config() {
        Ok(t) => t,
        Err(e) => return FollowEnd::Retry(format!("the internal stream's TLS: {e}")),
    };
    let http = match reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .build()
    {
        Ok(c) => c,
        Err(e) => return FollowEnd::Retry(format!("the internal stream's client: {e}")),
    };
    let from = state.rv();
    let url = format!(
        "https://{}{STREAM_PATH}?resourceVersion={from}",
        leader.address
    );
    let request = http
        .get(&url)
        .bearer_auth(&leader.token)
        .header(REPLICA_HEADER, &replica.identity.id)
        .send();
    let mut resp = match tokio::time::timeout(SILENCE, request).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            metrics::counter!("ark_replication_stream_reconnects_total").increment(1);
            return FollowEnd::Retry(format!(
                "cannot reach the leader {} at {}: {e}",
                leader.replica_id, leader.address
            ));
        }
        Err(_) => {
            metrics::counter!("ark_replication_stream_reconnects_total").increment(1);
            return FollowEnd::Retry(format!(
                "the leader {} at {} did not answer within {SILENCE:?}",
                leader.replica_id, leader.address
            ));
        }
    };
    match resp.status().as_u16() {
        200 => {
            let theirs = resp
                .headers()
                .get(ORIGIN_HEADER)
                .and_then(|v| v.to_str().ok())
                .and_then(Origin::from_header);
            if let (Some(ours), Some(t)) = (replica.origin(), &theirs) {
                if &ours != t {
                    // resourceVersions are the database's counter: on another timeline
                    // the same rv may name another state, so this replica's rv says
                    // nothing about where to continue on the leader's. Re-seed.
                    tracing::warn!(ours = %ours.to_header(), theirs = %t.to_header(), leader = %leader.replica_id, "the leader streams from another database timeline; re-seeding (watches get 410)");
                    replica.set_origin(theirs);
                    if let Err(e) = consumer.reseed_after_leader(0).await {
                        return FollowEnd::Retry(format!("re-seeding from the table: {e}"));
                    }
                    return FollowEnd::Retry(
                        "re-seeded for the leader's timeline; following again".into(),
                    );
                }
            }
            replica.set_origin(theirs);
        }
        410 => {
            // The leader no longer holds what comes after our rv: re-seed, like a watch
            // that got 410 relists, and follow from the new rv.
            tracing::warn!(from, leader = %leader.replica_id, "the leader's relay no longer covers this replica's position; re-seeding (watches get 410)");
            // The position is the relay's to give (the leader may be on a timeline
            // whose positions are below this replica's): its next entry sets it.
            if let Err(e) = consumer.reseed_after_leader(0).await {
                return FollowEnd::Retry(format!("re-seeding from the table: {e}"));
            }
            return FollowEnd::Retry("re-seeded; following again".into());
        }
        code => {
            let body = resp.text().await.unwrap_or_default();
            return FollowEnd::Retry(format!(
                "the leader {} answered {code}: {}",
                leader.replica_id,
                body.chars().take(300).collect::<String>()
            ));
        }
    }
    replica.set_role(Role::Follower {
        leader_id: leader.replica_id.clone(),
        leader: leader.address.clone(),
    });
    // Ready once the relay has delivered a read point written now, as on the leader.
    match consumer.store().emit_sync_message().await {
        Ok(mark) => consumer.status().set_catching_up(mark.lsn),
        Err(e) => return FollowEnd::Retry(format!("writing a read point: {e}")),
    }
    let mut lines = Lines::default();
    loop {
        let chunk = match tokio::time::timeout(SILENCE, resp.chunk()).await {
            Ok(Ok(Some(c))) => c,
            Ok(Ok(None)) => return reconnect("the leader ended the internal stream"),
            Ok(Err(e)) => return reconnect(&format!("the internal stream broke: {e}")),
            Err(_) => {
                return reconnect(&format!(
                    "nothing from the leader for {SILENCE:?}; it may be hung or cut off"
                ))
            }
        };
        let got = match lines.push(&chunk) {
            Ok(l) => l,
            Err(e) => return reconnect(&e.to_string()),
        };
        for line in got {
            let received = match frame::decode(&line) {
                Ok(r) => r,
                Err(e) => return reconnect(&e.to_string()),
            };
            replica.followed(received.at_micros, received.entry.rv());
            // The leader has served up to here: so has this replica, for its writes' floor.
            consumer.store().note_rv(received.entry.rv());
            let out = match received.entry {
                Entry::Commit { lsn, changes, .. } => Output::Commit {
                    changes: changes.as_ref().clone(),
                    end_lsn: lsn,
                },
                Entry::Progress { lsn, .. } => Output::Progress { lsn },
                Entry::Reseed { lsn, .. } => {
                    tracing::warn!(leader = %leader.replica_id, "the leader re-seeded; re-seeding (watches get 410)");
                    if let Err(e) = consumer.reseed_after_leader(lsn).await {
                        return reconnect(&e.to_string());
                    }
                    // Our snapshot may be ahead of the leader's: follow again from it.
                    return FollowEnd::Retry("re-seeded after the leader did".into());
                }
            };
            if let Err(e) = consumer.take(out).await {
                return reconnect(&e.to_string());
            }
        }
    }
}

fn reconnect(why: &str) -> FollowEnd {
    metrics::counter!("ark_replication_stream_reconnects_total").increment(1);
    FollowEnd::Retry(why.to_string())
}
