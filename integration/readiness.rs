//! `/readyz` means that consistent reads are served: the state is seeded and the stream
//! has delivered a read point written after the seed, however much WAL the slot retained.
//! (A replica that said ready after seeding answered its first consistent read 504 after
//! 5 s while it replayed 200,000 retained changes.)

use std::time::{Duration, Instant};

use crate::harness::{TestDb, TestServer};

const OBJECTS: i64 = 200_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_says_ready_serves_consistent_reads_after_a_restart_with_much_to_replay() {
    let db: TestDb = TestServer::start().await.stop_keeping_db().await;
    let slot = db.slot_name();
    // Written while the server is down: the slot retains all of it, and the next server
    // seeds from the table and then replays (and skips) every one of these changes.
    let c = db.client().await;
    let t = Instant::now();
    // One statement, resourceVersions assigned here as the triggers would (which, one row
    // at a time on one counter row, make a 200,000-row statement quadratic).
    c.batch_execute(&format!(
        "BEGIN; SET LOCAL session_replication_role = replica; \
         INSERT INTO resources (uid, kind, api_version, namespace, name, resource_version, spec, created_at) \
         SELECT gen_random_uuid(), 'Agent', 'ark.mckinsey.com/v1alpha1', 'bulk', 'a-' || i, \
                (SELECT value FROM resource_version_counter) + i, \
                jsonb_build_object('prompt', repeat('p', 200) || i), now() \
         FROM generate_series(1, {OBJECTS}) AS i; \
         UPDATE resource_version_counter SET value = value + {OBJECTS}; COMMIT"
    ))
    .await
    .unwrap();
    // Twice more over every row, so the replay outlasts a consistent read's 5 s timeout.
    for _ in 0..2 {
        c.batch_execute(&format!(
            "BEGIN; SET LOCAL session_replication_role = replica; \
             UPDATE resources SET generation = generation + 1, \
                    resource_version = resource_version + {OBJECTS} WHERE namespace = 'bulk'; \
             UPDATE resource_version_counter SET value = value + {OBJECTS}; COMMIT"
        ))
        .await
        .unwrap();
    }
    let written: String = c
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    let written = ark_apiserver::store::parse_lsn(&written).unwrap();
    eprintln!("inserted {OBJECTS} rows in {:?}", t.elapsed());

    let mut opts = crate::harness::serve_config(db.config());
    opts.slot_name = slot;
    let started = Instant::now();
    let running = ark_apiserver::app::start(opts.complete().unwrap())
        .await
        .unwrap();
    let base = format!("https://{}", running.addr);
    let http = crate::startup_failures::http();
    // Poll readiness as a kubelet would, and read the moment it says ready.
    let ready_after = loop {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "not ready after 5 minutes"
        );
        let r = http.get(format!("{base}/readyz")).send().await;
        if r.is_ok_and(|r| r.status() == 200) {
            // Ready means the stream has passed everything committed before the start.
            let applied = running.stream_status.applied_lsn();
            assert!(
                applied >= written,
                "ready while the stream had applied {applied:X}, short of {written:X} written before the start"
            );
            break started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let item = format!("{base}/apis/ark.mckinsey.com/v1alpha1/namespaces/bulk/agents/a-{OBJECTS}");
    let read = Instant::now();
    let r = http.get(&item).send().await.unwrap();
    let (code, took) = (r.status().as_u16(), read.elapsed());
    let body = r.text().await.unwrap();
    eprintln!("ready after {ready_after:?}; first consistent read {code} in {took:?}");
    assert_eq!(
        code, 200,
        "the first consistent read from a replica that said ready failed: {body}"
    );
    let r = http
        .get(format!(
            "{base}/apis/ark.mckinsey.com/v1alpha1/namespaces/bulk/agents?limit=1"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let t = Instant::now();
    running.stop().await;
    eprintln!("stopped in {:?}", t.elapsed());
}
