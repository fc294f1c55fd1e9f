//! The harness itself: each test's database and slots are gone once the test is done,
//! so a long run does not pile up databases or slots that pin WAL in the shared cluster.

use crate::harness::{connect, TestDb, TestServer};

async fn leftovers(admin: &tokio_postgres::Client, db: &str) -> (i64, i64) {
    let dbs: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname = $1",
            &[&db],
        )
        .await
        .unwrap()
        .get(0);
    let slots: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_replication_slots WHERE database = $1",
            &[&db],
        )
        .await
        .unwrap()
        .get(0);
    (dbs, slots)
}

#[tokio::test]
async fn a_finished_test_leaves_no_database_and_no_slot_behind() {
    let db = TestDb::new().await;
    let name = db
        .owned_name()
        .expect("made on the shared cluster")
        .to_string();
    let admin = connect(&db.url.replace(&name, "postgres")).await;
    // A running server holds sessions on the database and its slot is active.
    let server = TestServer::start_on(db).await;
    let extra = server.db.client().await;
    extra
        .batch_execute(&format!(
            "SELECT pg_create_logical_replication_slot('{name}_extra', 'pgoutput')"
        ))
        .await
        .unwrap();
    assert_eq!(leftovers(&admin, &name).await, (1, 2));
    // Dropped without stop(), as a failing test drops it.
    drop(server);
    assert_eq!(
        leftovers(&admin, &name).await,
        (0, 0),
        "the database and both slots are dropped"
    );
}
