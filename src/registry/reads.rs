//! GET and LIST from the in-memory state, with kube's resourceVersion rules.
//!
//! A read with no resourceVersion is consistent: it reflects every write acknowledged
//! before the request began. The state is fed by the replication stream, so the read first
//! makes sure the stream has passed the database's current WAL position: it writes a
//! non-transactional logical message (a few bytes of WAL) and waits until the stream has
//! delivered it. Every commit acknowledged before the request precedes that message in the
//! WAL, and logical decoding delivers in WAL order. Concurrent reads share one such
//! confirmation: a read waits for the next confirmation that started after it arrived.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::cdc::status::StreamStatus;
use crate::k8s::status::ApiError;
use crate::store::Store;
use crate::watch::State;

/// How long a consistent read waits for the stream before giving up with 504.
const SYNC_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Syncer {
    store: Arc<Store>,
    state: Arc<State>,
    status: Arc<StreamStatus>,
    started: AtomicU64,
    finished: AtomicU64,
    lock: tokio::sync::Mutex<()>,
}

impl Syncer {
    pub fn new(store: Arc<Store>, state: Arc<State>, status: Arc<StreamStatus>) -> Self {
        Syncer {
            store,
            state,
            status,
            started: AtomicU64::new(0),
            finished: AtomicU64::new(0),
            lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Returns once the state reflects every commit made before this call.
    pub async fn sync(&self) -> Result<(), ApiError> {
        if let Err(why) = self.status.check() {
            return Err(ApiError::service_unavailable(format!(
                "the change stream from PostgreSQL is not ready: {why}"
            )));
        }
        let arrived = self.started.load(Ordering::Acquire);
        let _guard = self.lock.lock().await;
        // A confirmation that started after this request arrived has finished meanwhile.
        if self.finished.load(Ordering::Acquire) > arrived {
            return Ok(());
        }
        let id = self.started.fetch_add(1, Ordering::AcqRel) + 1;
        let lsn = self
            .store
            .emit_sync_message()
            .await
            .map_err(|e| crate::registry::storage_unavailable(&e))?;
        if !self.state.wait_for_lsn(lsn, SYNC_TIMEOUT).await {
            return Err(ApiError::timeout(
                "the change stream did not catch up with the database in time; retry",
                1,
            ));
        }
        self.finished.store(id, Ordering::Release);
        metrics::counter!("ark_consistent_read_syncs_total").increment(1);
        Ok(())
    }
}
