//! Pairing writes with the events they cause: when each write started and was
//! acknowledged, matched after the run with when each receiver saw it. Shared by the
//! server's watch scenarios and the raw-decoding and etcd baselines, so all three measure
//! latency the same way.

use std::sync::OnceLock;
use std::time::Instant;

use crate::stats::{LatencyPair, Samples};

/// When each write started and was acknowledged, by index: filled by the writers, read
/// after the run, when arrivals (recorded by the receivers) are paired with them.
pub struct WriteStamps {
    start: Vec<OnceLock<Instant>>,
    ack: Vec<OnceLock<Instant>>,
}

impl WriteStamps {
    pub fn new(n: usize) -> WriteStamps {
        WriteStamps {
            start: (0..n).map(|_| OnceLock::new()).collect(),
            ack: (0..n).map(|_| OnceLock::new()).collect(),
        }
    }

    pub fn started(&self, i: usize) {
        if let Some(s) = self.start.get(i) {
            let _ = s.set(Instant::now());
        }
    }

    pub fn acked(&self, i: usize) {
        if let Some(s) = self.ack.get(i) {
            let _ = s.set(Instant::now());
        }
    }

    /// Writes acknowledged but missing from `arrivals`: events that were lost or late.
    pub fn missing(&self, arrivals: &[Option<Instant>]) -> usize {
        self.ack
            .iter()
            .zip(arrivals)
            .filter(|(ack, arrived)| ack.get().is_some() && arrived.is_none())
            .count()
    }

    /// Adds one receiver's latencies to `pair`, one sample per acknowledged write it saw.
    /// The event and the write's acknowledgement race (the stream can deliver the change
    /// before the writer's task has read its reply), so arrival − ack can be slightly
    /// negative: it is clamped to zero, which is what it is to a watcher.
    pub fn add_latencies(&self, arrivals: &[Option<Instant>], pair: &mut LatencyPair) {
        for ((start, ack), arrived) in self.start.iter().zip(&self.ack).zip(arrivals) {
            if let (Some(start), Some(ack), Some(arrived)) = (start.get(), ack.get(), arrived) {
                pair.from_ack
                    .latencies
                    .push(arrived.saturating_duration_since(*ack));
                pair.from_start
                    .latencies
                    .push(arrived.saturating_duration_since(*start));
            }
        }
    }
}

/// A [`LatencyPair`] with the write phase's wall time and failures (in both halves: a
/// failed write is a missing sample in each).
pub fn pair_from_writes(writes: &Samples) -> LatencyPair {
    let base = Samples {
        latencies: Vec::new(),
        elapsed: writes.elapsed,
        errors: writes.errors,
        first_errors: writes.first_errors.clone(),
    };
    LatencyPair {
        from_ack: base.clone(),
        from_start: base,
    }
}
