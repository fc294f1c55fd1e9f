//! Consistent reads (no resourceVersion) confirm that the change stream has caught up with
//! the database. The confirmation must be delivered at once, not when PostgreSQL's WAL
//! writer next flushes: the walsender only sends flushed WAL.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::TestServer;
use crate::stream_faults::{cluster_db, dedicated_cluster};

/// Moves the resourceVersion counter past every row, as a burnt value does: the state can
/// no longer prove it is current by the counter alone, so each consistent read takes the
/// round trip through a logical message that these tests are about.
async fn force_read_point_messages(db: &tokio_postgres::Client) {
    db.batch_execute("UPDATE resource_version_counter SET value = value + 1")
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_reads_do_not_wait_for_the_wal_writer() {
    // A 10 s WAL writer cycle: a confirmation that waited for it would take seconds per read.
    let cluster = dedicated_cluster(Some("wal_writer_delay = '10s'")).await;
    let server = TestServer::start_on(cluster_db(&cluster)).await;
    let http = server.http();
    let base = format!(
        "{}/apis/ark.mckinsey.com/v1alpha1/namespaces/default/agents",
        server.base_url()
    );
    let r = http
        .post(&base)
        .json(
            &json!({"apiVersion": "ark.mckinsey.com/v1alpha1", "kind": "Agent",
            "metadata": {"name": "a"}, "spec": {"prompt": "hi"}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    force_read_point_messages(&server.db.client().await).await;

    let start = Instant::now();
    for _ in 0..5 {
        let r = http.get(format!("{base}/a")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let r = http.get(&base).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    let took = start.elapsed();
    // Ten consistent reads in a row: each one waiting for the WAL writer would take 10 s;
    // confirmed by a flushed commit they take milliseconds. The bound is far from both.
    assert!(
        took < Duration::from_secs(5),
        "10 consistent reads took {took:?}: the sync message is waiting for the WAL writer"
    );
    server.stop().await;
}

/// Sends SIGSTOP or SIGCONT to a PostgreSQL backend.
fn signal(pid: i32, sig: &str) {
    crate::replicas::kill(pid as u32, sig);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_stream_costs_each_consistent_read_its_own_timeout_not_the_ones_ahead_of_it() {
    let cluster = dedicated_cluster(None).await;
    let server = TestServer::start_on(cluster_db(&cluster)).await;
    let http = server.http();
    let base = format!(
        "{}/apis/ark.mckinsey.com/v1alpha1/namespaces/default/agents",
        server.base_url()
    );
    let admin = server.db.client().await;
    let pid: i32 = admin
        .query_one(
            "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1",
            &[&server.db.slot_name()],
        )
        .await
        .unwrap()
        .get(0);
    // The walsender stops sending: the database answers, the stream does not move. A
    // commit the stream has not delivered leaves the state behind.
    signal(pid, "-STOP");
    force_read_point_messages(&admin).await;
    let start = Instant::now();
    let reads: Vec<_> = (0..4)
        .map(|i| {
            let (http, base) = (http.clone(), base.clone());
            tokio::spawn(async move {
                // Staggered, so that each arrives while the one before it is waiting.
                tokio::time::sleep(Duration::from_millis(200 * i)).await;
                let r = http
                    .get(&base)
                    .timeout(Duration::from_secs(60))
                    .send()
                    .await
                    .unwrap();
                let code = r.status().as_u16();
                let retry = r.headers().get("retry-after").is_some();
                let body: serde_json::Value = r.json().await.unwrap();
                (code, retry, body, start.elapsed())
            })
        })
        .collect();
    let mut results = Vec::new();
    for r in reads {
        results.push(r.await.unwrap());
    }
    signal(pid, "-CONT");
    for (code, retry, body, took) in &results {
        // Each read gives up after its own 5 s timeout; queued behind the others' timeouts
        // the fourth would answer after about 20 s.
        assert!(
            *took < Duration::from_secs(10),
            "a consistent read answered after {took:?}: reads are waiting on each other"
        );
        match code {
            504 => {
                assert_eq!(body["reason"], "Timeout", "{body}");
                assert!(
                    body["message"]
                        .as_str()
                        .unwrap()
                        .starts_with("Too large resource version: "),
                    "{body}"
                );
                assert!(retry, "a 504 says when to retry");
            }
            // The stream may have noticed the stall and gone down meanwhile.
            503 => assert_eq!(body["reason"], "ServiceUnavailable", "{body}"),
            other => panic!("a read with a stalled stream answered {other}: {body}"),
        }
    }
    // Once the stream moves again, reads are served again.
    crate::stream_faults::eventually("a consistent read", Duration::from_secs(30), || {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let r = http.get(&base).send().await.map_err(|e| e.to_string())?;
            match r.status().as_u16() {
                200 => Ok(()),
                c => Err(format!("{c}")),
            }
        }
    })
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_consistent_reads_share_round_trips() {
    let cluster = dedicated_cluster(None).await;
    let server = TestServer::start_on(cluster_db(&cluster)).await;
    let http = server.http();
    let url = format!(
        "{}/apis/ark.mckinsey.com/v1alpha1/namespaces/default/agents",
        server.base_url()
    );
    let burst = |n: usize| {
        let handles: Vec<_> = (0..n)
            .map(|_| {
                let (http, url) = (http.clone(), url.clone());
                tokio::spawn(async move { http.get(&url).send().await.unwrap().status() })
            })
            .collect();
        async move {
            for h in handles {
                assert_eq!(h.await.unwrap(), 200);
            }
        }
    };
    // Connections first, so that the measured burst arrives together.
    burst(40).await;
    let admin = server.db.client().await;
    force_read_point_messages(&admin).await;
    admin
        .batch_execute("SELECT pg_create_logical_replication_slot('count_marks', 'test_decoding')")
        .await
        .unwrap();
    burst(40).await;
    let marks: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_logical_slot_get_changes('count_marks', NULL, NULL) \
             WHERE data LIKE 'message: transactional: 1 prefix: ark-apiserver/sync%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    admin
        .batch_execute("SELECT pg_drop_replication_slot('count_marks')")
        .await
        .unwrap();
    eprintln!("40 concurrent consistent reads wrote {marks} read points");
    assert!(
        (1..=20).contains(&marks),
        "40 concurrent consistent reads wrote {marks} read points; they should share them"
    );
    server.stop().await;
}

/// On the replica holding the slot, a consistent read whose state has applied up to the
/// counter writes nothing; and a write made in SQL just before a read is still seen,
/// whichever way the read point is found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_leader_proves_its_read_point_without_writing_and_still_sees_every_commit() {
    let cluster = dedicated_cluster(None).await;
    let server = TestServer::start_on(cluster_db(&cluster)).await;
    let http = server.http();
    let base = format!(
        "{}/apis/ark.mckinsey.com/v1alpha1/namespaces/default/agents",
        server.base_url()
    );
    let r = http
        .post(&base)
        .json(
            &json!({"apiVersion": "ark.mckinsey.com/v1alpha1", "kind": "Agent",
            "metadata": {"name": "a"}, "spec": {"prompt": "hi"}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let admin = server.db.client().await;
    // One read first, so that the state has surely applied the create.
    assert_eq!(
        http.get(format!("{base}/a")).send().await.unwrap().status(),
        200
    );
    admin
        .batch_execute(
            "SELECT pg_create_logical_replication_slot('count_idle_marks', 'test_decoding')",
        )
        .await
        .unwrap();
    for _ in 0..20 {
        assert_eq!(
            http.get(format!("{base}/a")).send().await.unwrap().status(),
            200
        );
        assert_eq!(http.get(&base).send().await.unwrap().status(), 200);
    }
    let marks: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_logical_slot_get_changes('count_idle_marks', NULL, NULL) \
             WHERE data LIKE 'message: transactional: 1 prefix: ark-apiserver/sync%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        marks, 0,
        "40 consistent reads of an idle leader wrote {marks} read points"
    );
    // The probe checked the walsender the session learned: the one holding the slot.
    let holder: i32 = admin
        .query_one(
            "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1",
            &[&server.db.slot_name()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        server.stream_status().walsender().map(|w| w.pid),
        Some(holder)
    );

    // Each SQL commit is visible to the very next consistent read.
    for i in 0..30 {
        admin
            .execute(
                "UPDATE resources SET annotations = jsonb_build_object('n', $1::text) \
                 WHERE kind = 'Agent' AND name = 'a' AND deleted_at IS NULL",
                &[&i.to_string()],
            )
            .await
            .unwrap();
        let v: serde_json::Value = http
            .get(format!("{base}/a"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            v["metadata"]["annotations"]["n"],
            i.to_string(),
            "a consistent read missed a commit made before it: {v}"
        );
    }
    let marks: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_logical_slot_get_changes('count_idle_marks', NULL, NULL) \
             WHERE data LIKE 'message: transactional: 1 prefix: ark-apiserver/sync%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    eprintln!("30 reads right after a commit wrote {marks} read points");
    admin
        .batch_execute("SELECT pg_drop_replication_slot('count_idle_marks')")
        .await
        .unwrap();
    server.stop().await;
}
