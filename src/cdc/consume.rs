//! The one consumer of committed transactions: whatever the source (this replica's own
//! slot, or the leader's relay on a follower), this is where the assembler's output reaches
//! the in-memory state, the relay log, the readiness status and the metrics, and where the
//! position that may be acknowledged is decided. The wire layer acknowledges exactly what
//! [`Consumer::ackable`] returns, so nothing is confirmed to the slot before this replica
//! and its connected followers have applied it.

use std::sync::Arc;
use std::time::Instant;

use super::assemble::Output;
use super::status::StreamStatus;
use super::stream::SessionError;
use crate::replica::{Entry, Replica};
use crate::store::Store;
use crate::watch::{Obj, State};

/// How a re-seed's resourceVersion is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reseed {
    /// The table's counter as it is (a first seed, or a follower after its leader).
    AsLoaded,
    /// Above every resourceVersion of the state it replaces (a gap on the leader).
    PastState,
}

pub struct Consumer {
    store: Arc<Store>,
    state: Arc<State>,
    status: Arc<StreamStatus>,
    replica: Arc<Replica>,
}

impl Consumer {
    pub fn new(
        store: Arc<Store>,
        state: Arc<State>,
        status: Arc<StreamStatus>,
        replica: Arc<Replica>,
    ) -> Consumer {
        Consumer {
            store,
            state,
            status,
            replica,
        }
    }

    pub fn state(&self) -> &Arc<State> {
        &self.state
    }

    pub fn status(&self) -> &Arc<StreamStatus> {
        &self.status
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn replica(&self) -> &Arc<Replica> {
        &self.replica
    }

    /// Applies one output of the assembler; returns the WAL position the state now
    /// reflects.
    pub async fn take(&self, out: Output) -> Result<u64, SessionError> {
        let now = Instant::now();
        let lsn = match out {
            Output::Gap { why, end_lsn } => {
                // The transaction committed; a snapshot taken now contains it and everything
                // before it, and later changes are skipped or applied by resourceVersion as
                // after any seed. Watches get 410 and relist.
                tracing::warn!(%why, "the change stream cannot be applied as changes; re-seeding (watches get 410)");
                metrics::counter!("ark_cdc_reseeds_total").increment(1);
                self.seed_at(None, end_lsn, Reseed::PastState).await?;
                end_lsn
            }
            Output::Commit { changes, end_lsn } => {
                let before = self.state.rv();
                if changes.is_empty() {
                    self.replica.log.append(
                        Entry::Progress {
                            rv: before,
                            lsn: end_lsn,
                        },
                        now,
                    );
                } else {
                    for c in &changes {
                        metrics::counter!("ark_cdc_events_total", "kind" => c.kind().to_string())
                            .increment(1);
                    }
                    let logged = Arc::new(changes.clone());
                    let outcome = self.state.apply(changes);
                    self.store.note_rv(outcome.rv);
                    let entry = if outcome.rv > before {
                        Entry::Commit {
                            rv: outcome.rv,
                            lsn: end_lsn,
                            changes: logged,
                        }
                    } else {
                        Entry::Progress {
                            rv: outcome.rv,
                            lsn: end_lsn,
                        }
                    };
                    self.replica.log.append(entry, now);
                }
                end_lsn
            }
            // Nothing in flight: everything up to here is applied, so the slot may advance
            // even while `resources` is idle and other tables write (keepalives), and
            // bursts on other tables retain little WAL (read points and heartbeats).
            Output::Progress { lsn } => {
                self.replica.log.append(
                    Entry::Progress {
                        rv: self.state.rv(),
                        lsn,
                    },
                    now,
                );
                lsn
            }
        };
        self.state.set_applied_lsn(lsn);
        self.status.applied(lsn);
        Ok(lsn)
    }

    /// The position this replica may confirm to the slot: what it applied, held back to
    /// what its connected followers applied.
    pub fn ackable(&self, applied: u64) -> u64 {
        self.replica.confirmable(applied)
    }

    /// Seeds the state from the table: in the snapshot a new slot exported, or in a new
    /// one (see the `stream` module docs for why neither leaves a gap). `lsn` is where
    /// the stream that follows starts (the new slot's consistent point, the existing
    /// one's confirmed position; 0 on a follower, which learns it from the relay): the
    /// state's applied position becomes exactly that, so that a consistent read waits
    /// for the stream and never passes on a position of a timeline the seed replaced.
    pub async fn seed(&self, snapshot: Option<&str>, lsn: u64) -> Result<(), SessionError> {
        self.seed_at(snapshot, lsn, Reseed::AsLoaded).await
    }

    /// A follower's re-seed after the leader's (its Reseed entry, or a 410 from its
    /// relay): from the table as it is, so that its resourceVersion is the leader's.
    /// `lsn` is the leader's position at its re-seed (0 when unknown: the relay's next
    /// entry moves it).
    pub async fn reseed_after_leader(&self, lsn: u64) -> Result<(), SessionError> {
        metrics::counter!("ark_cdc_reseeds_total").increment(1);
        self.seed_at(None, lsn, Reseed::AsLoaded).await
    }

    async fn seed_at(
        &self,
        snapshot: Option<&str>,
        lsn: u64,
        how: Reseed,
    ) -> Result<(), SessionError> {
        let transient = |e: crate::store::StoreError| SessionError::Transient(e.to_string());
        if how == Reseed::PastState {
            // A gap the leader found (TRUNCATE, a hard delete): the re-seeded state gets a
            // resourceVersion of its own, above every earlier one, so that it is never
            // mistaken for the state before the gap (a follower that reconnects at that
            // rv is told to re-seed too).
            let past = self.store.highest_rv().max(self.state.rv()) + 1;
            self.store.raise_counter(past).await.map_err(transient)?;
        }
        // An object the current state holds at the row's resourceVersion is that row: it
        // is shared, not built again, so a re-seed does not hold two copies of the state.
        let current = self.state.snapshot();
        let keep = |uid: &str, rv: i64| {
            current
                .get_by_uid(uid)
                .filter(|o| i64::try_from(o.rv()).is_ok_and(|have| have == rv))
        };
        let make = |v| Arc::new(Obj::new(v));
        let (mut objects, mut rv) = self
            .store
            .load_seed(snapshot, keep, make)
            .await
            .map_err(transient)?;
        let seen = self.store.highest_rv().max(self.state.rv());
        if (rv.max(0) as u64) < seen {
            // The database is behind resourceVersions this replica has served: PostgreSQL
            // failed over to a standby that lost the last commits (or was restored from an
            // older backup). Move the counter past them before anything is served from
            // this state, so that no resourceVersion ever names two different states; the
            // re-seed below is then a gap like any other (watches get 410).
            tracing::warn!(
                database = rv,
                seen,
                "the database's resourceVersion counter is behind what this replica has served (a failover that lost commits?); moving it past"
            );
            metrics::counter!("ark_cdc_counter_raised_total").increment(1);
            // Past, not to: `seen` named a state with commits the database no longer has.
            self.store
                .raise_counter(seen + 1)
                .await
                .map_err(transient)?;
            // Nothing is shared: a database that went back may have given one of the
            // resourceVersions this state holds to another version of the same object.
            (objects, rv) = self
                .store
                .load_seed(None, |_, _| None, make)
                .await
                .map_err(transient)?;
        }
        drop(current);
        let rv = rv.max(0) as u64;
        self.store.note_rv(rv);
        // The position first: between the two a read waits (old state, low position)
        // rather than passing on the old position with the new state.
        self.state.rewind_applied_lsn(lsn);
        self.status.rewind(lsn);
        self.state.reset(objects, rv);
        self.replica.log.seeded(rv, lsn, Instant::now());
        Ok(())
    }
}
