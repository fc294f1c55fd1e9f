//! The one consumer of committed transactions: whatever the source of the assembler's
//! output, this is where it reaches the in-memory state, the readiness status and the
//! metrics, and where the position that may be acknowledged is decided. The wire layer
//! acknowledges exactly what this returns, so nothing is confirmed to the slot before it
//! is applied.

use std::sync::Arc;

use super::assemble::Output;
use super::status::StreamStatus;
use super::stream::SessionError;
use crate::store::Store;
use crate::watch::{Obj, State};

pub struct Consumer {
    store: Arc<Store>,
    state: Arc<State>,
    status: Arc<StreamStatus>,
}

impl Consumer {
    pub fn new(store: Arc<Store>, state: Arc<State>, status: Arc<StreamStatus>) -> Consumer {
        Consumer {
            store,
            state,
            status,
        }
    }

    pub fn state(&self) -> &Arc<State> {
        &self.state
    }

    /// Applies one output of the assembler; returns the WAL position the state now
    /// reflects, which may be acknowledged.
    pub async fn take(&self, out: Output) -> Result<u64, SessionError> {
        let lsn = match out {
            Output::Gap { why, end_lsn } => {
                // The transaction committed; a snapshot taken now contains it and everything
                // before it, and later changes are skipped or applied by resourceVersion as
                // after any seed. Watches get 410 and relist.
                tracing::warn!(%why, "the change stream cannot be applied as changes; re-seeding (watches get 410)");
                metrics::counter!("ark_cdc_reseeds_total").increment(1);
                self.seed(None).await?;
                end_lsn
            }
            Output::Commit { changes, end_lsn } => {
                if !changes.is_empty() {
                    for c in &changes {
                        metrics::counter!("ark_cdc_events_total", "kind" => c.kind().to_string())
                            .increment(1);
                    }
                    self.state.apply(changes);
                }
                end_lsn
            }
            // Nothing in flight: everything up to here is applied, so the slot may advance
            // even while `resources` is idle and other tables write (keepalives), and
            // bursts on other tables retain little WAL (read points and heartbeats).
            Output::Progress { lsn } => lsn,
        };
        self.state.set_applied_lsn(lsn);
        self.status.applied(lsn);
        Ok(lsn)
    }

    /// Seeds the state from the table: in the snapshot a new slot exported, or in a new
    /// one (see the `stream` module docs for why neither leaves a gap).
    pub async fn seed(&self, snapshot: Option<&str>) -> Result<(), SessionError> {
        let (objects, rv) = self
            .store
            .load_seed(snapshot)
            .await
            .map_err(|e| SessionError::Transient(e.to_string()))?;
        let objs = objects.into_iter().map(|v| Arc::new(Obj::new(v))).collect();
        self.state.reset(objs, rv.max(0) as u64);
        Ok(())
    }
}
