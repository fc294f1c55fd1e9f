//! What the change stream reports to `/readyz`, to consistent reads and to `/metrics`.
//!
//! The stream is *serving* only once its state is seeded and it has delivered a read point
//! written after the seed: before that, a consistent read would wait for the stream to
//! work through whatever WAL the slot retained (after a restart with many changes, for
//! seconds) and time out, so the server says it is not ready instead.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Down(String),
    /// Streaming, but not yet past the read point at `target`, written after the seed.
    CatchingUp {
        target: u64,
    },
    Serving,
}

/// Shared between the stream task (writer) and the HTTP side (readers).
#[derive(Debug)]
pub struct StreamStatus {
    serving: AtomicBool,
    phase: Mutex<Phase>,
    applied_lsn: std::sync::atomic::AtomicU64,
    /// This replica's walsender while its session holds the slot.
    walsender: Mutex<Option<WalSender>>,
}

/// A walsender process, named so that it cannot be mistaken for another server's: a pid is
/// unique only per server, and after a PostgreSQL failover the pool may reach a promoted
/// standby where the same pid is some other process. The postmaster's start time tells the
/// servers apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalSender {
    pub pid: i32,
    /// `pg_postmaster_start_time()` of the server it runs on, in microseconds since the epoch.
    pub server_started_us: i64,
}

impl Default for StreamStatus {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamStatus {
    pub fn new() -> Self {
        StreamStatus {
            serving: AtomicBool::new(false),
            phase: Mutex::new(Phase::Down("the change stream has not started yet".into())),
            applied_lsn: Default::default(),
            walsender: Mutex::new(None),
        }
    }

    /// The walsender serving this replica's session, learned once the session holds the
    /// slot; `None` when it ends. A walsender keeps the slot it started streaming from
    /// until it exits, so while that process is a walsender the slot is ours.
    pub fn set_walsender(&self, w: Option<WalSender>) {
        *self
            .walsender
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = w;
    }

    pub fn walsender(&self) -> Option<WalSender> {
        *self
            .walsender
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn set(&self, phase: Phase) {
        let serving = phase == Phase::Serving;
        *self.phase.lock().unwrap_or_else(PoisonError::into_inner) = phase;
        self.serving.store(serving, Ordering::Release);
        metrics::gauge!("ark_cdc_connected").set(if serving { 1.0 } else { 0.0 });
    }

    /// Streaming from a seeded state; serving once the stream passes `target`, a read point
    /// written after the seed.
    pub fn set_catching_up(&self, target: u64) {
        if self.applied_lsn() >= target {
            self.set(Phase::Serving);
        } else {
            self.set(Phase::CatchingUp { target });
        }
    }

    pub fn set_down(&self, why: &str) {
        self.set(Phase::Down(why.to_string()));
    }

    /// The stream has applied everything up to `lsn`.
    pub fn applied(&self, lsn: u64) {
        self.applied_lsn.fetch_max(lsn, Ordering::AcqRel);
        if self.serving.load(Ordering::Acquire) {
            return;
        }
        let mut phase = self.phase.lock().unwrap_or_else(PoisonError::into_inner);
        if let Phase::CatchingUp { target } = *phase {
            if lsn >= target {
                *phase = Phase::Serving;
                self.serving.store(true, Ordering::Release);
                metrics::gauge!("ark_cdc_connected").set(1.0);
                tracing::info!("the change stream caught up with the database; serving");
            }
        }
    }

    /// The state was re-seeded at `lsn` (see [`crate::watch::State::rewind_applied_lsn`]).
    pub fn rewind(&self, lsn: u64) {
        self.applied_lsn.store(lsn, Ordering::Release);
    }

    /// `Ok` when serving, or why not.
    pub fn check(&self) -> Result<(), String> {
        if self.serving.load(Ordering::Acquire) {
            return Ok(());
        }
        match &*self.phase.lock().unwrap_or_else(PoisonError::into_inner) {
            Phase::Serving => Ok(()),
            Phase::Down(why) => Err(why.clone()),
            Phase::CatchingUp { target } => Err(format!(
                "catching up with the database: applied {} of {}",
                crate::pgoutput::Lsn(self.applied_lsn()),
                crate::pgoutput::Lsn(*target)
            )),
        }
    }

    pub fn applied_lsn(&self) -> u64 {
        self.applied_lsn.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serving_only_after_the_read_point_written_after_the_seed() {
        let s = StreamStatus::new();
        assert!(s.check().is_err());
        s.applied(100);
        s.set_catching_up(500);
        let why = s.check().unwrap_err();
        assert!(why.starts_with("catching up with the database"), "{why}");
        s.applied(499);
        assert!(s.check().is_err());
        s.applied(500);
        assert_eq!(s.check(), Ok(()));
        s.set_down("connection lost");
        assert_eq!(s.check(), Err("connection lost".to_string()));
    }

    #[test]
    fn a_read_point_already_passed_serves_at_once() {
        let s = StreamStatus::new();
        s.applied(900);
        s.set_catching_up(800);
        assert_eq!(s.check(), Ok(()));
    }

    #[test]
    fn after_a_re_seed_at_a_lower_position_the_read_point_waits_for_the_new_stream() {
        let s = StreamStatus::new();
        s.applied(9_000);
        s.set_down("the database failed over");
        s.rewind(1_000);
        s.set_catching_up(1_100);
        assert!(s.check().is_err(), "passed on the old timeline's position");
        s.applied(1_100);
        assert_eq!(s.check(), Ok(()));
    }
}
