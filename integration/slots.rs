//! The replication slot's lifecycle as operators see it: preflight messages and the
//! `slot status` / `slot drop` commands. Slots are cluster-wide, so each test names its own.

use std::process::Stdio;
use std::time::Duration;

use ark_apiserver::cdc::slot;

use crate::harness::TestDb;

const BIN: &str = env!("CARGO_BIN_EXE_ark-apiserver");

async fn publication_exists(c: &tokio_postgres::Client, name: &str) -> bool {
    c.query_opt("SELECT 1 FROM pg_publication WHERE pubname = $1", &[&name])
        .await
        .unwrap()
        .is_some()
}

async fn run_bin(args: &[&str]) -> (i32, String, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(BIN)
            .args(args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .unwrap()
    .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slot_status_reports_the_slot_and_slot_drop_removes_slot_and_publication() {
    let db = TestDb::new().await;
    ark_apiserver::app::run_migrate(&db.config()).await.unwrap();
    let c = db.client().await;
    let name = format!("ops_{}", std::process::id());
    c.execute(
        "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
        &[&name],
    )
    .await
    .unwrap();
    c.batch_execute("CREATE PUBLICATION ops_pub FOR TABLE resources")
        .await
        .unwrap();

    let (code, out, err) = run_bin(&[
        "slot",
        "status",
        "--database-url",
        &db.url,
        "--slot-name",
        &name,
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    for needle in [
        "plugin:              pgoutput",
        "active:              false",
        "wal_status:          reserved",
        "confirmed_flush_lsn: ",
        "retained WAL:        ",
        "lag:                 ",
    ] {
        assert!(out.contains(needle), "{needle:?} missing from:\n{out}");
    }
    let (code, out, err) = run_bin(&[
        "slot",
        "drop",
        "--database-url",
        &db.url,
        "--slot-name",
        &name,
        "--publication-name",
        "ops_pub",
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("dropped"), "{out}");
    assert!(slot::inspect(&c, &name).await.unwrap().is_none());
    assert!(!publication_exists(&c, "ops_pub").await);
    let (code, out, _) = run_bin(&[
        "slot",
        "status",
        "--database-url",
        &db.url,
        "--slot-name",
        &name,
    ])
    .await;
    assert_eq!(code, 0);
    assert!(out.contains("does not exist"), "{out}");
    // A reinstall runs migrate before the server starts: it brings the publication back.
    let (code, _, err) = run_bin(&[
        "migrate",
        "--database-url",
        &db.url,
        "--publication-name",
        "ops_pub",
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(publication_exists(&c, "ops_pub").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_without_replication_is_told_how_to_grant_it() {
    let db = TestDb::new().await;
    let c = db.client().await;
    let role = format!("norep_{}", std::process::id());
    c.batch_execute(&format!(
        "DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN"
    ))
    .await
    .unwrap();
    let url = db
        .url
        .replacen("postgres://ark@", &format!("postgres://{role}@"), 1);
    let as_role = crate::harness::connect(&url).await;
    let e = slot::preflight(&as_role, "ark_cdc")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("lacks the REPLICATION attribute")
            && e.contains(&format!("ALTER ROLE {role} REPLICATION")),
        "{e}"
    );
    // The superuser passes.
    slot::preflight(&c, "ark_cdc").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_of_another_database_is_never_taken_and_the_error_names_slot_name() {
    let a = TestDb::new().await;
    let shared = a.slot_name();
    let admin = a.client().await;
    // The first server creates the slot for its database, then stops; the slot stays.
    let first = crate::harness::TestServer::start_on(a).await;
    let _a = first.stop_keeping_db().await;
    assert!(slot::inspect(&admin, &shared).await.unwrap().is_some());

    // A server on another database of the same cluster, told to use the same slot name.
    let b = TestDb::new().await;
    let mut opts = crate::harness::serve_config(b.config());
    opts.slot_name = shared.clone();
    let mut running = ark_apiserver::app::start(opts.complete().unwrap())
        .await
        .expect("starting the server");
    (&mut running.init).await.unwrap().expect("database init");
    let err = running
        .wait_stream_ready(Duration::from_secs(30))
        .await
        .expect_err("the stream must refuse another database's slot");
    assert!(err.contains("belongs to database"), "{err}");
    assert!(err.contains("--slot-name"), "{err}");
    running.stop().await;
    // Refused, not dropped: the first database's server can still resume from it.
    let info = slot::inspect(&admin, &shared)
        .await
        .unwrap()
        .expect("the slot is still there");
    assert!(info.database.is_some());
}
