//! What the change stream reports to `/readyz` and `/metrics`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

/// Shared between the stream task (writer) and the HTTP side (readers).
#[derive(Debug, Default)]
pub struct StreamStatus {
    up: AtomicBool,
    applied_lsn: AtomicU64,
    reason: Mutex<String>,
}

impl StreamStatus {
    pub fn new() -> Self {
        let s = Self::default();
        *s.reason.lock().unwrap_or_else(|p| p.into_inner()) =
            "the change stream has not started yet".into();
        s
    }

    pub fn set_up(&self) {
        self.reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.up.store(true, Ordering::Release);
        metrics::gauge!("ark_cdc_connected").set(1.0);
    }

    pub fn set_down(&self, why: &str) {
        *self.reason.lock().unwrap_or_else(|p| p.into_inner()) = why.to_string();
        self.up.store(false, Ordering::Release);
        metrics::gauge!("ark_cdc_connected").set(0.0);
    }

    pub fn applied(&self, lsn: u64) {
        self.applied_lsn.fetch_max(lsn, Ordering::AcqRel);
    }

    /// `Ok` when streaming, or why not.
    pub fn check(&self) -> Result<(), String> {
        if self.up.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(self
                .reason
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone())
        }
    }

    pub fn applied_lsn(&self) -> u64 {
        self.applied_lsn.load(Ordering::Acquire)
    }
}
