//! SIGTERM, as a rolling update sends it: open watches end at once and cleanly, in-flight
//! writes finish, the slot is confirmed at what was applied and is free as soon as the
//! process is gone, and the process exits 0 promptly and quietly. The real binary.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::TestDb;
use crate::startup_failures::{http, Serve};
use crate::stream_faults::wait_ready;

const AGENTS: &str = "/apis/ark.mckinsey.com/v1alpha1/namespaces/stop/agents";

fn agent(name: &str) -> Value {
    json!({"apiVersion": "ark.mckinsey.com/v1alpha1", "kind": "Agent",
           "metadata": {"name": name}, "spec": {"prompt": "hi"}})
}

fn sigterm(pid: u32) {
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

/// A started server on its own database, ready.
async fn serve(db: &TestDb) -> Serve {
    let s = Serve::start(&db.url, &["--slot-name", &db.slot_name()]);
    wait_ready(&http(), &s.base, Duration::from_secs(60)).await;
    s
}

/// Reads a watch response to its end; panics if it breaks instead of ending.
async fn read_to_end(mut resp: reqwest::Response) -> Vec<Value> {
    let mut buf = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(b)) => buf.extend_from_slice(&b),
            Ok(None) => break,
            Err(e) => panic!("the watch broke instead of ending: {e}"),
        }
    }
    buf.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_watches_confirms_the_slot_and_exits_0_at_once() {
    let db = TestDb::new().await;
    let s = serve(&db).await;
    let client = http();
    let created = client
        .post(format!("{}{AGENTS}", s.base))
        .json(&agent("a"))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let rv: u64 = created.json::<Value>().await.unwrap()["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    // Five open watches, each past its initial event.
    let mut watches = Vec::new();
    for _ in 0..5 {
        let mut w = client
            .get(format!(
                "{}{AGENTS}?watch=true&resourceVersion={}&allowWatchBookmarks=true",
                s.base,
                rv - 1
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(w.status(), 200);
        let first = w.chunk().await.unwrap().unwrap();
        assert!(first.starts_with(b"{\"type\":\"ADDED\""));
        watches.push(tokio::spawn(read_to_end(w)));
    }
    // A point in the WAL the server has provably applied: a consistent read waits for a
    // read point written after it.
    let admin = db.client().await;
    let applied: String = admin
        .query_one(
            "SELECT pg_logical_emit_message(true, 'test/applied', '')::text",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let applied = ark_apiserver::store::parse_lsn(&applied).unwrap();
    let list = client
        .get(format!("{}{AGENTS}", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), 200);

    let pid = s.pid();
    let signalled = Instant::now();
    sigterm(pid);
    let (code, stderr) = s.exit_within(Duration::from_secs(30)).await;
    let took = signalled.elapsed();
    let slot: (bool, String) = {
        let r = admin
            .query_one(
                "SELECT active, confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
                &[&db.slot_name()],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    eprintln!(
        "exited {code} {took:?} after SIGTERM; slot active right after: {}",
        slot.0
    );
    assert_eq!(code, 0, "{stderr}");
    // With five open watches the server used to wait its whole 5 s shutdown timeout.
    assert!(
        took < Duration::from_secs(3),
        "exit took {took:?}:\n{stderr}"
    );
    assert!(!slot.0, "the slot is still held after the process exited");
    let confirmed = ark_apiserver::store::parse_lsn(&slot.1).unwrap();
    assert!(
        confirmed >= applied,
        "the slot was confirmed at {} but {} was applied: a successor would replay it",
        slot.1,
        ark_apiserver::pgoutput::Lsn(applied)
    );
    // Every watch ended cleanly, the last line a bookmark at least as new as what it saw.
    for w in watches {
        let lines = w.await.unwrap();
        let last = lines.last().expect("a closing bookmark");
        assert_eq!(last["type"], "BOOKMARK", "{lines:?}");
        let bookmarked: u64 = last["object"]["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(bookmarked >= rv);
    }
    for noise in [
        "panicked",
        "cancelled",
        "ERROR",
        "Connection error",
        "did not",
    ] {
        assert!(!stderr.contains(noise), "{noise:?} in the log:\n{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_in_flight_at_sigterm_finishes_before_the_process_exits() {
    let db = TestDb::new().await;
    let s = serve(&db).await;
    // Hold the resourceVersion counter, so the next write waits inside the database.
    let mut holder = db.client().await;
    let tx = holder.transaction().await.unwrap();
    tx.batch_execute("SELECT 1 FROM resource_version_counter FOR UPDATE")
        .await
        .unwrap();
    let (client, base) = (http(), s.base.clone());
    let write = tokio::spawn(async move {
        client
            .post(format!("{base}{AGENTS}"))
            .json(&agent("in-flight"))
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    sigterm(s.pid());
    tokio::time::sleep(Duration::from_millis(300)).await;
    tx.rollback().await.unwrap();
    let status = write.await.unwrap().unwrap();
    let (code, stderr) = s.exit_within(Duration::from_secs(30)).await;
    assert_eq!(status, 201, "the write in flight finished:\n{stderr}");
    assert_eq!(code, 0, "{stderr}");
    let n: i64 = db
        .client()
        .await
        .query_one(
            "SELECT count(*) FROM resources WHERE name = 'in-flight' AND deleted_at IS NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
}
