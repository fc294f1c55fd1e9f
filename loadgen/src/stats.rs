//! Latency samples, their summary, and the two ways of driving load: closed loop (a fixed
//! number of workers, each issuing the next operation when the last one returns) and open
//! loop (operations started on a schedule, whatever the latency).

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What one scenario measured: a latency per successful operation, the wall-clock time the
/// whole run took, and the failures (kept as messages: smoke mode prints the first few).
#[derive(Debug, Default, Clone)]
pub struct Samples {
    pub latencies: Vec<Duration>,
    pub elapsed: Duration,
    pub errors: u64,
    pub first_errors: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Summary {
    pub count: usize,
    pub errors: u64,
    pub p50: Duration,
    pub p95: Duration,
    pub p99: Duration,
    pub max: Duration,
    /// Successful operations per second of wall-clock time.
    pub ops_per_sec: f64,
}

impl Samples {
    pub fn record_error(&mut self, e: String) {
        self.errors += 1;
        if self.first_errors.len() < 5 {
            self.first_errors.push(e);
        }
    }

    pub fn merge(&mut self, other: Samples) {
        self.latencies.extend(other.latencies);
        self.errors += other.errors;
        for e in other.first_errors {
            if self.first_errors.len() < 5 {
                self.first_errors.push(e);
            }
        }
        self.elapsed = self.elapsed.max(other.elapsed);
    }

    pub fn summary(&self) -> Summary {
        let mut v = self.latencies.clone();
        v.sort_unstable();
        let pick = |q: f64| -> Duration {
            if v.is_empty() {
                return Duration::ZERO;
            }
            // Nearest rank: the smallest sample with at least q of the samples at or below it.
            let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
            v[rank - 1]
        };
        let secs = self.elapsed.as_secs_f64();
        Summary {
            count: v.len(),
            errors: self.errors,
            p50: pick(0.50),
            p95: pick(0.95),
            p99: pick(0.99),
            max: v.last().copied().unwrap_or_default(),
            ops_per_sec: if secs > 0.0 {
                v.len() as f64 / secs
            } else {
                0.0
            },
        }
    }
}

/// Runs `n` operations on `concurrency` workers; `op(i)` is the i-th operation. Each
/// operation's latency is its own call, so queueing inside the system under test shows up,
/// but queueing in the generator does not (there is none: a worker waits for its reply).
pub async fn closed_loop<F, Fut>(concurrency: usize, n: usize, op: F) -> Samples
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency.max(1) {
        let op = Arc::clone(&op);
        let next = Arc::clone(&next);
        workers.push(tokio::spawn(async move {
            let mut s = Samples::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let t = Instant::now();
                match op(i).await {
                    Ok(()) => s.latencies.push(t.elapsed()),
                    Err(e) => s.record_error(e),
                }
            }
            s
        }));
    }
    let mut all = Samples::default();
    for w in workers {
        match w.await {
            Ok(s) => all.merge(s),
            Err(e) => all.record_error(format!("worker panicked: {e}")),
        }
    }
    all.elapsed = start.elapsed();
    all
}

/// Runs operations for `duration`, starting one every `1/rate` seconds whatever the latency
/// (an open loop), with at most `max_in_flight` outstanding. Latency is measured from the
/// operation's scheduled start, so a backlog in the system under test is not hidden
/// (coordinated omission). Operations that could not start because the in-flight bound was
/// reached are counted as errors: the rate was not sustained.
pub async fn open_loop<F, Fut>(
    rate: f64,
    duration: Duration,
    max_in_flight: usize,
    op: F,
) -> Samples
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let op = Arc::new(op);
    let results = Arc::new(Mutex::new(Samples::default()));
    let in_flight = Arc::new(AtomicU64::new(0));
    let interval = Duration::from_secs_f64(1.0 / rate.max(0.001));
    let start = Instant::now();
    let total = (duration.as_secs_f64() * rate).round() as usize;
    let mut tasks = Vec::with_capacity(total);
    let mut skipped = 0u64;
    for i in 0..total {
        let scheduled = start + interval.mul_f64(i as f64);
        tokio::time::sleep_until(scheduled.into()).await;
        if in_flight.load(Ordering::Relaxed) as usize >= max_in_flight {
            skipped += 1;
            continue;
        }
        in_flight.fetch_add(1, Ordering::Relaxed);
        let op = Arc::clone(&op);
        let results = Arc::clone(&results);
        let in_flight = Arc::clone(&in_flight);
        tasks.push(tokio::spawn(async move {
            let r = op(i).await;
            let lat = scheduled.elapsed();
            in_flight.fetch_sub(1, Ordering::Relaxed);
            let mut s = results.lock().unwrap();
            match r {
                Ok(()) => s.latencies.push(lat),
                Err(e) => s.record_error(e),
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let mut s = std::mem::take(&mut *results.lock().unwrap());
    if skipped > 0 {
        s.record_error(format!(
            "{skipped} operations not started: more than {max_in_flight} in flight"
        ));
        s.errors += skipped - 1;
    }
    s.elapsed = start.elapsed();
    s
}

/// Exactly `n` operations started at `rate` per second (an open loop). `open_loop` runs
/// round(duration × rate) of them; a quarter interval more than n/rate makes that n or
/// n + 1 whatever the float rounding, and the extra index is skipped.
pub async fn open_loop_n<F, Fut>(rate: f64, n: usize, max_in_flight: usize, op: F) -> Samples
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let op = Arc::new(op);
    let duration = Duration::from_secs_f64((n as f64 + 0.25) / rate.max(0.001));
    open_loop(rate, duration, max_in_flight, move |i| {
        let op = Arc::clone(&op);
        async move {
            if i >= n {
                return Ok(());
            }
            op(i).await
        }
    })
    .await
}

/// Formats a duration for the report: µs below 1 ms, ms with two decimals below 10 s.
pub fn fmt_dur(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1000.0 {
        format!("{us:.0} µs")
    } else if us < 10_000_000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{:.1} s", us / 1e6)
    }
}

/// Watch latency measured two ways: from the write's acknowledgement to the event's arrival
/// (what the stream adds), and from the start of the write request (what the published
/// harness measured, which includes the write itself).
#[derive(Debug, Default, Clone)]
pub struct LatencyPair {
    pub from_ack: Samples,
    pub from_start: Samples,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let s = Samples {
            latencies: (1..=100).map(Duration::from_millis).collect(),
            elapsed: Duration::from_secs(1),
            ..Default::default()
        };
        let m = s.summary();
        assert_eq!(m.p50, Duration::from_millis(50));
        assert_eq!(m.p95, Duration::from_millis(95));
        assert_eq!(m.p99, Duration::from_millis(99));
        assert_eq!(m.max, Duration::from_millis(100));
        assert_eq!(m.ops_per_sec, 100.0);
    }

    #[test]
    fn empty_samples_summarize_to_zero() {
        let m = Samples::default().summary();
        assert_eq!(m.count, 0);
        assert_eq!(m.p99, Duration::ZERO);
    }
}
