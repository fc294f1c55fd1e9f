use std::collections::BTreeMap;
use std::sync::mpsc as std_mpsc;
use std::sync::Mutex;

use chrono::{TimeZone, Utc};
use serde_json::Value;

use super::*;
use crate::audit::event::{EventUser, MicroTime};
use crate::audit::rotate::Rotation;
use crate::audit::{Level, Stage};

fn event(n: usize) -> Event {
    let t = MicroTime(Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 0).unwrap());
    Event {
        kind: "Event",
        api_version: "audit.k8s.io/v1",
        level: Level::Metadata,
        audit_id: format!("id-{n}"),
        stage: Stage::ResponseComplete,
        request_uri: "/apis".into(),
        verb: "get".into(),
        user: EventUser::default(),
        source_ips: vec![],
        user_agent: String::new(),
        object_ref: None,
        response_status: None,
        request_object: None,
        response_object: None,
        request_received_timestamp: t,
        stage_timestamp: t,
        annotations: BTreeMap::new(),
    }
}

/// A writer into shared memory.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Shared {
    fn ids(&self) -> Vec<String> {
        let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                v["auditID"].as_str().unwrap().to_string()
            })
            .collect()
    }
}

#[tokio::test]
async fn events_are_written_one_line_each_in_order_through_any_writer() {
    let out = Shared::default();
    let b = AuditBackend::with_writer(Box::new(out.clone()), 16);
    for n in 0..5 {
        b.process(&event(n));
    }
    b.close().await;
    assert_eq!(out.ids(), ["id-0", "id-1", "id-2", "id-3", "id-4"]);
    let s = b.stats();
    assert_eq!((s.events, s.written, s.dropped, s.failed), (5, 5, 0, 0));
    // After close, events are dropped and counted rather than lost silently.
    b.process(&event(9));
    assert_eq!(b.stats().dropped, 1);
}

/// Blocks in its first write until released, and says when it got there.
struct Stuck {
    entered: Option<std_mpsc::Sender<()>>,
    release: std_mpsc::Receiver<()>,
    out: Shared,
}

impl Write for Stuck {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(entered) = self.entered.take() {
            entered.send(()).unwrap();
            self.release.recv().unwrap();
        }
        self.out.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_instead_of_blocking_the_caller() {
    let (entered_tx, entered) = std_mpsc::channel();
    let (release, release_rx) = std_mpsc::channel();
    let out = Shared::default();
    let stuck = Stuck {
        entered: Some(entered_tx),
        release: release_rx,
        out: out.clone(),
    };
    let b = Arc::new(AuditBackend::with_writer(Box::new(stuck), 3));
    b.process(&event(0));
    entered.recv().unwrap(); // the writer holds event 0 and is stuck writing it

    // Three fit in the queue; the next five are dropped, and no call waits for the writer.
    let caller = b.clone();
    let (done_tx, done) = std_mpsc::channel();
    std::thread::spawn(move || {
        for n in 1..=8 {
            caller.process(&event(n));
        }
        done_tx.send(()).unwrap();
    });
    done.recv_timeout(Duration::from_secs(10))
        .expect("process() blocked on a full queue");
    let s = b.stats();
    assert_eq!((s.events, s.dropped), (9, 5));

    release.send(()).unwrap();
    b.close().await;
    assert_eq!(out.ids(), ["id-0", "id-1", "id-2", "id-3"]);
    assert_eq!(b.stats().written, 4);
}

/// Fails every write.
struct Broken;

impl Write for Broken {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::Error::other("disk full"))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_failed_write_is_counted_and_the_writer_goes_on() {
    let b = AuditBackend::with_writer(Box::new(Broken), 8);
    b.process(&event(0));
    b.process(&event(1));
    b.close().await;
    let s = b.stats();
    assert_eq!((s.written, s.failed, s.dropped), (0, 2, 0));
}

/// A clock a second further on at each reading: backups are named to the millisecond, so
/// rotations in one millisecond would overwrite each other.
fn ticking_clock() -> chrono::DateTime<Utc> {
    static TICKS: AtomicU64 = AtomicU64::new(0);
    let n = TICKS.fetch_add(1, Relaxed) as i64;
    Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 0).unwrap() + chrono::Duration::seconds(n)
}

#[tokio::test]
async fn a_rotating_file_backend_writes_whole_lines_into_each_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let line_len = event(10).to_json_line().len() as u64;
    let rotation = Rotation {
        max_bytes: line_len * 2 + 1,
        max_backups: 0,
        max_age_days: 0,
    };
    let file = RotatingFile::with_clock(&path, rotation, ticking_clock);
    let b = AuditBackend::with_writer(Box::new(file), 64);
    for n in 10..15 {
        b.process(&event(n));
    }
    b.close().await;
    let mut ids = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 3, "{files:?}");
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        assert!(text.len() as u64 <= rotation.max_bytes);
        for l in text.lines() {
            let v: Value = serde_json::from_str(l).unwrap();
            ids.push(v["auditID"].as_str().unwrap().to_string());
        }
    }
    ids.sort();
    assert_eq!(ids, ["id-10", "id-11", "id-12", "id-13", "id-14"]);
}

#[tokio::test]
async fn a_plain_file_is_appended_to() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    std::fs::write(&path, "").unwrap();
    for n in 0..2 {
        let b = AuditBackend::start(&Output::File(path.clone()), 8).unwrap();
        b.process(&event(n));
        b.close().await;
    }
    assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 2);
    let missing = AuditBackend::start(&Output::File(dir.path().join("no/such")), 8);
    assert!(matches!(missing, Err(AuditConfigError::LogFile { .. })));
}

#[tokio::test]
async fn any_buffer_size_starts_a_backend() {
    for size in [0, usize::MAX] {
        let out = Shared::default();
        let b = AuditBackend::with_writer(Box::new(out.clone()), size);
        b.process(&event(size % 7));
        b.close().await;
        assert_eq!(out.ids().len(), 1, "{size}");
    }
}

#[test]
fn repeated_failures_are_reported_first_then_once_per_interval_with_the_count() {
    let t = Throttle::new(Duration::from_secs(10));
    let start = t.start;
    assert_eq!(t.due_at(1, start), Some(1));
    assert_eq!(t.due_at(2, start + Duration::from_secs(1)), None);
    assert_eq!(t.due_at(7, start + Duration::from_secs(9)), None);
    assert_eq!(t.due_at(8, start + Duration::from_secs(10)), Some(7));
    assert_eq!(t.due_at(9, start + Duration::from_secs(11)), None);
}
