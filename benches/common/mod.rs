//! What every micro-benchmark shares (a directory module, so cargo does not take it for a
//! bench target of its own).

use std::time::Duration;

use criterion::Criterion;

/// Short runs: these benches compare code paths in one sitting, and the whole set should
/// finish in a few minutes on two cores.
pub fn quick() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}
