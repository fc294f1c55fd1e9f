//! Consistent reads (no resourceVersion) confirm that the change stream has caught up with
//! the database. The confirmation must be delivered at once, not when PostgreSQL's WAL
//! writer next flushes: the walsender only sends flushed WAL.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::TestServer;
use crate::stream_faults::{cluster_db, dedicated_cluster};

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
