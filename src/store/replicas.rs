//! The replicas that share the database (`ark_replicas`, see `sql/0003_replicas.sql`): who
//! they are, where they are reached, and how far each has applied. The leader is whoever
//! holds the replication slot; its row is found through the walsender that holds it, so a
//! row left by a replica that lost the slot never names the leader.

use std::time::Duration;

use super::error::StoreError;
use super::{parse_lsn, Store};

/// The application name a replica's replication connection carries: how the walsender
/// holding the slot is tied to a replica's row.
pub fn replication_application_name(replica_id: &str) -> String {
    format!("{APPLICATION_PREFIX}{replica_id}")
}

const APPLICATION_PREFIX: &str = "ark-apiserver-cdc/";

/// What a replica publishes about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaRecord {
    pub replica_id: String,
    pub slot: String,
    /// `host:port` other replicas reach it at.
    pub address: String,
    /// The secret a follower presents to read this replica's relay.
    pub token: String,
    /// SHA-256 of its serving certificate (DER), lower-case hex.
    pub cert_sha256: String,
}

/// One replica as `slot status` reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaState {
    pub replica_id: String,
    pub address: String,
    pub applied_lsn: u64,
    pub applied_rv: u64,
    /// Seconds since it last reported.
    pub reported_ago: f64,
    /// It holds the slot.
    pub leader: bool,
}

impl Store {
    /// Publishes (or refreshes) this replica's row with how far it has applied.
    pub async fn register_replica(
        &self,
        r: &ReplicaRecord,
        applied_lsn: u64,
        applied_rv: u64,
    ) -> Result<(), StoreError> {
        let c = self.client().await?;
        let stmt = c
            .prepare_cached(
                "INSERT INTO ark_replicas (replica_id, slot_name, address, token, cert_sha256, \
                   applied_lsn, applied_rv) VALUES ($1, $2, $3, $4, $5, $6::text::pg_lsn, $7) \
                 ON CONFLICT (replica_id) DO UPDATE SET slot_name = EXCLUDED.slot_name, \
                   address = EXCLUDED.address, token = EXCLUDED.token, \
                   cert_sha256 = EXCLUDED.cert_sha256, applied_lsn = EXCLUDED.applied_lsn, \
                   applied_rv = EXCLUDED.applied_rv, updated_at = now()",
            )
            .await
            .map_err(StoreError::from_pg)?;
        let lsn = crate::pgoutput::Lsn(applied_lsn).to_string();
        c.execute(
            &stmt,
            &[
                &r.replica_id,
                &r.slot,
                &r.address,
                &r.token,
                &r.cert_sha256,
                &lsn,
                &(applied_rv as i64),
            ],
        )
        .await
        .map_err(StoreError::from_pg)?;
        Ok(())
    }

    /// The replica whose replication connection holds `slot` now, if it has a row.
    pub async fn leader_of(&self, slot: &str) -> Result<Option<ReplicaRecord>, StoreError> {
        let c = self.client().await?;
        let stmt = c
            .prepare_cached(
                "SELECT r.replica_id, r.slot_name, r.address, r.token, r.cert_sha256 \
                 FROM pg_replication_slots s \
                 JOIN pg_stat_replication w ON w.pid = s.active_pid \
                 JOIN ark_replicas r ON w.application_name = $2 || r.replica_id \
                 WHERE s.slot_name = $1 AND s.active",
            )
            .await
            .map_err(StoreError::from_pg)?;
        let row = c
            .query_opt(&stmt, &[&slot, &APPLICATION_PREFIX])
            .await
            .map_err(StoreError::from_pg)?;
        Ok(row.map(|r| ReplicaRecord {
            replica_id: r.get(0),
            slot: r.get(1),
            address: r.get(2),
            token: r.get(3),
            cert_sha256: r.get(4),
        }))
    }

    /// How far each other replica of `slot` that reported within `fresh` has applied.
    pub async fn followers_applied(
        &self,
        slot: &str,
        me: &str,
        fresh: Duration,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let c = self.client().await?;
        let stmt = c
            .prepare_cached(
                "SELECT replica_id, applied_lsn::text FROM ark_replicas \
                 WHERE slot_name = $1 AND replica_id <> $2 \
                   AND updated_at > now() - make_interval(secs => $3)",
            )
            .await
            .map_err(StoreError::from_pg)?;
        let rows = c
            .query(&stmt, &[&slot, &me, &fresh.as_secs_f64()])
            .await
            .map_err(StoreError::from_pg)?;
        Ok(rows
            .iter()
            .filter_map(|r| Some((r.get(0), parse_lsn(r.get::<_, String>(1).as_str())?)))
            .collect())
    }

    /// Every replica of `slot` that reported within `fresh`, the slot's holder first.
    pub async fn replicas_of(
        &self,
        slot: &str,
        fresh: Duration,
    ) -> Result<Vec<ReplicaState>, StoreError> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT r.replica_id, r.address, r.applied_lsn::text, r.applied_rv, \
                   extract(epoch FROM now() - r.updated_at)::float8, \
                   coalesce(w.application_name = $3 || r.replica_id, false) \
                 FROM ark_replicas r \
                 LEFT JOIN pg_replication_slots s ON s.slot_name = r.slot_name AND s.active \
                 LEFT JOIN pg_stat_replication w ON w.pid = s.active_pid \
                 WHERE r.slot_name = $1 AND r.updated_at > now() - make_interval(secs => $2) \
                 ORDER BY 6 DESC, r.replica_id",
                &[&slot, &fresh.as_secs_f64(), &APPLICATION_PREFIX],
            )
            .await
            .map_err(StoreError::from_pg)?;
        Ok(rows
            .iter()
            .map(|r| ReplicaState {
                replica_id: r.get(0),
                address: r.get(1),
                applied_lsn: parse_lsn(r.get::<_, String>(2).as_str()).unwrap_or(0),
                applied_rv: r.get::<_, i64>(3).max(0) as u64,
                reported_ago: r.get(4),
                leader: r.get(5),
            })
            .collect())
    }

    /// Removes this replica's row (a clean stop), and rows nobody refreshed for `stale`.
    pub async fn forget_replicas(
        &self,
        me: Option<&str>,
        stale: Duration,
    ) -> Result<u64, StoreError> {
        let c = self.client().await?;
        let n = c
            .execute(
                "DELETE FROM ark_replicas WHERE replica_id = $1 \
                 OR updated_at < now() - make_interval(secs => $2)",
                &[&me.unwrap_or(""), &stale.as_secs_f64()],
            )
            .await
            .map_err(StoreError::from_pg)?;
        Ok(n)
    }
}
