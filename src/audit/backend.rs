//! The log backend: events are encoded on the request's thread, queued in a bounded
//! channel and written by one thread of their own. A full queue drops the event (counted
//! in `apiserver_audit_error_total{plugin="buffered"}` and logged at most every few
//! seconds) rather than making the request wait; this is kube's `batch` mode for the log
//! backend, whose default `blocking` mode would hold requests behind the disk.
//!
//! The writer is a thread rather than a task because file writes block: on a runtime
//! worker they would stall every request scheduled there.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::config::{AuditConfigError, Output};
use super::event::Event;
use super::record::Sink;
use super::rotate::RotatingFile;

/// tokio's largest channel capacity (`Semaphore::MAX_PERMITS`).
const MAX_BUFFER: usize = usize::MAX >> 3;

/// How often a stream of lost events is logged.
const REPORT_EVERY: Duration = Duration::from_secs(10);

enum Msg {
    Line(Vec<u8>),
    /// Write everything queued, flush, answer, and stop.
    Close(oneshot::Sender<()>),
}

/// The queue to the writer thread. Share it (`Arc`) between the [`super::Auditor`] and
/// whoever closes it at shutdown.
pub struct AuditBackend {
    tx: mpsc::Sender<Msg>,
    counts: Arc<Counts>,
    dropped_report: Throttle,
}

#[derive(Default)]
struct Counts {
    events: AtomicU64,
    dropped: AtomicU64,
    written: AtomicU64,
    failed: AtomicU64,
}

/// What the backend has done so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendStats {
    /// Events handed to the backend.
    pub events: u64,
    /// Events dropped because the queue was full (or the backend closed).
    pub dropped: u64,
    /// Events written.
    pub written: u64,
    /// Events whose write failed.
    pub failed: u64,
}

impl AuditBackend {
    /// Opens `output` and starts the writer thread.
    pub fn start(output: &Output, buffer_size: usize) -> Result<AuditBackend, AuditConfigError> {
        let out: Box<dyn Write + Send> = match output {
            Output::Stdout => Box::new(io::stdout()),
            Output::File(path) => {
                let file = std::fs::OpenOptions::new()
                    .append(true)
                    .open(path)
                    .map_err(|error| AuditConfigError::LogFile {
                        path: path.clone(),
                        error,
                    })?;
                Box::new(file)
            }
            Output::Rotating(path, rotation) => Box::new(RotatingFile::new(path, *rotation)),
        };
        Ok(AuditBackend::with_writer(out, buffer_size))
    }

    /// Writes to any writer: standard output, or a buffer in tests. Each event is one
    /// `write_all` of one line.
    pub fn with_writer(out: Box<dyn Write + Send>, buffer_size: usize) -> AuditBackend {
        // tokio refuses (panics on) a capacity of 0 or beyond its semaphore's limit.
        let (tx, rx) = mpsc::channel(buffer_size.clamp(1, MAX_BUFFER));
        let counts = Arc::new(Counts::default());
        let writer_counts = counts.clone();
        let spawned = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || write_loop(out, rx, &writer_counts));
        if let Err(e) = spawned {
            // The receiver is gone with the closure: every event will count as dropped.
            tracing::error!(error = %e, "cannot start the audit log writer thread");
        }
        AuditBackend {
            tx,
            counts,
            dropped_report: Throttle::new(REPORT_EVERY),
        }
    }

    pub fn stats(&self) -> BackendStats {
        BackendStats {
            events: self.counts.events.load(Relaxed),
            dropped: self.counts.dropped.load(Relaxed),
            written: self.counts.written.load(Relaxed),
            failed: self.counts.failed.load(Relaxed),
        }
    }

    /// Writes what is queued, flushes and stops the writer; events after this are dropped.
    /// For shutdown, once the HTTP server has finished its requests.
    pub async fn close(&self) {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Msg::Close(ack)).await.is_ok() {
            let _ = done.await;
        }
    }

    fn dropped(&self) {
        let total = self.counts.dropped.fetch_add(1, Relaxed) + 1;
        crate::metrics::record_audit_error("buffered");
        if let Some(since) = self.dropped_report.due(total) {
            tracing::error!(
                plugin = "buffered",
                dropped_total = total,
                "Error in audit plugin 'buffered' affecting {since} audit events: audit buffer queue blocked"
            );
        }
    }
}

impl Sink for AuditBackend {
    fn process(&self, event: &Event) {
        self.counts.events.fetch_add(1, Relaxed);
        crate::metrics::record_audit_event();
        if self.tx.try_send(Msg::Line(event.to_json_line())).is_err() {
            self.dropped();
        }
    }
}

fn write_loop(mut out: Box<dyn Write + Send>, mut rx: mpsc::Receiver<Msg>, counts: &Counts) {
    let failures = Throttle::new(REPORT_EVERY);
    while let Some(msg) = rx.blocking_recv() {
        match msg {
            Msg::Line(line) => {
                write_line(&mut out, &line, counts, &failures);
                // Flush when idle, so lines reach the file promptly without a flush per
                // line under load.
                if rx.is_empty() {
                    let _ = out.flush();
                }
            }
            Msg::Close(ack) => {
                rx.close();
                while let Ok(msg) = rx.try_recv() {
                    if let Msg::Line(line) = msg {
                        write_line(&mut out, &line, counts, &failures);
                    }
                }
                let _ = out.flush();
                let _ = ack.send(());
                return;
            }
        }
    }
    let _ = out.flush();
}

/// A failed write loses that event only: it is counted and logged, and the next is tried.
fn write_line(out: &mut Box<dyn Write + Send>, line: &[u8], counts: &Counts, failures: &Throttle) {
    match out.write_all(line) {
        Ok(()) => {
            counts.written.fetch_add(1, Relaxed);
        }
        Err(e) => {
            let total = counts.failed.fetch_add(1, Relaxed) + 1;
            crate::metrics::record_audit_error("log");
            if let Some(since) = failures.due(total) {
                tracing::error!(
                    plugin = "log", error = %e, failed_total = total,
                    "Error in audit plugin 'log' affecting {since} audit events"
                );
            }
        }
    }
}

/// Says when a repeated failure is due to be logged again: the first time, then at most
/// once per interval, with how many happened since the last report. Lock-free, as it runs
/// on the request path when the queue is full.
struct Throttle {
    start: Instant,
    interval_ms: u64,
    next_ms: AtomicU64,
    reported: AtomicU64,
}

impl Throttle {
    fn new(interval: Duration) -> Throttle {
        Throttle {
            start: Instant::now(),
            interval_ms: interval.as_millis().try_into().unwrap_or(u64::MAX),
            next_ms: AtomicU64::new(0),
            reported: AtomicU64::new(0),
        }
    }

    fn due(&self, total: u64) -> Option<u64> {
        self.due_at(total, Instant::now())
    }

    fn due_at(&self, total: u64, now: Instant) -> Option<u64> {
        let now_ms = u64::try_from(now.saturating_duration_since(self.start).as_millis())
            .unwrap_or(u64::MAX);
        let next = self.next_ms.load(Relaxed);
        if now_ms < next {
            return None;
        }
        let after = now_ms.saturating_add(self.interval_ms);
        self.next_ms
            .compare_exchange(next, after, Relaxed, Relaxed)
            .ok()?;
        Some(total.saturating_sub(self.reported.swap(total, Relaxed)))
    }
}

#[cfg(test)]
#[path = "backend_tests.rs"]
mod tests;
