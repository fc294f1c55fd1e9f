//! The server refuses databases it cannot work with, naming the fix, and the binary's
//! commands behave as documented.

use std::process::Stdio;
use std::time::Duration;

use ark_apiserver::app::{self, StartError};
use ark_apiserver::config::ServeConfig;
use ark_apiserver::embedded::Cluster;

use crate::harness::{connect, TestDb};

const BIN: &str = env!("CARGO_BIN_EXE_ark-apiserver");

/// Starts the server and returns how database init ended.
async fn init_result(opts: ServeConfig) -> Result<(), StartError> {
    crate::harness::init_logging();
    let mut running = app::start(opts.complete().expect("a valid configuration"))
        .await
        .expect("the HTTP side starts regardless of the database");
    let r = tokio::time::timeout(Duration::from_secs(60), &mut running.init)
        .await
        .expect("init finishes")
        .expect("init task");
    running.stop().await;
    r
}

fn options(db: &TestDb) -> ServeConfig {
    crate::harness::serve_config(db.config())
}

/// Runs the real binary with `args` and environment, returning (exit code, stderr).
async fn run_bin(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("NO_COLOR", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("the binary exits")
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_newer_than_the_binary_is_refused() {
    let db = TestDb::new().await;
    app::run_migrate(&db.config()).await.unwrap();
    db.client()
        .await
        .execute(
            "INSERT INTO ark_schema_migrations (version, name) VALUES (999, 'from-the-future')",
            &[],
        )
        .await
        .unwrap();
    let e = init_result(options(&db)).await.unwrap_err().to_string();
    assert!(
        e.contains("schema is at version 999, newer than this ark-apiserver understands"),
        "{e}"
    );
    let (code, stderr) = run_bin(&["migrate", "--database-url", &db.url], &[]).await;
    assert_eq!(code, 1);
    assert!(
        stderr.contains("newer than this ark-apiserver understands"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_migrations_on_an_unmigrated_database_says_to_migrate() {
    let db = TestDb::new().await;
    let mut o = options(&db);
    o.skip_migrations = true;
    let e = init_result(o).await.unwrap_err().to_string();
    assert!(
        e.contains("not migrated") && e.contains("ark-apiserver migrate"),
        "{e}"
    );
    // `migrate` then brings it up to date, and the documented check works.
    let (code, stderr) = run_bin(&["migrate", "--database-url", &db.url], &[]).await;
    assert_eq!(code, 0, "{stderr}");
    let c = db.client().await;
    c.query(
        "SELECT kind, namespace, name, uid FROM resources WHERE kind = 'Agent'",
        &[],
    )
    .await
    .unwrap();
    let pubs = c
        .query(
            "SELECT 1 FROM pg_publication WHERE pubname = 'ark_cdc'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        pubs.len(),
        1,
        "the migration creates the ark_cdc publication"
    );
    let mut o = options(&db);
    o.skip_migrations = true;
    init_result(o).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_level_replica_stops_serve_with_the_managed_service_settings() {
    let cluster = tokio::task::spawn_blocking(|| {
        let c = Cluster::start(None, true).unwrap();
        c.configure("wal_level = replica").unwrap();
        c.restart().unwrap();
        c
    })
    .await
    .unwrap();
    let url = cluster.url("postgres");
    let c = connect(&url).await;
    let level: String = c.query_one("SHOW wal_level", &[]).await.unwrap().get(0);
    assert_eq!(level, "replica");
    let (code, stderr) = run_bin(
        &[
            "serve",
            "--auth-mode",
            "off",
            "--port",
            "0",
            "--bind",
            "127.0.0.1:0",
        ],
        &[("ARK_DATABASE_URL", &url)],
    )
    .await;
    assert_eq!(code, 1, "{stderr}");
    for needle in [
        "wal_level is 'replica'",
        "wal_level=logical",
        "rds.logical_replication=1",
        "cloudsql.logical_decoding=on",
    ] {
        assert!(stderr.contains(needle), "{needle} missing from: {stderr}");
    }
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_authenticates_by_default_and_refuses_an_unknown_auth_mode() {
    // Without --auth-mode the server is in delegated mode: a setup that could authenticate
    // nobody is refused before anything connects.
    let (code, stderr) = run_bin(
        &[
            "serve",
            "--authentication-skip-lookup",
            "--anonymous-auth=false",
        ],
        &[("ARK_DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")],
    )
    .await;
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("no request could ever be authenticated"),
        "{stderr}"
    );
    assert!(!stderr.contains("authentication is off"), "{stderr}");
    let (code, stderr) = run_bin(
        &["serve", "--auth-mode", "webhook"],
        &[("ARK_DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")],
    )
    .await;
    assert_eq!(code, 1);
    assert!(
        stderr.contains(
            "--auth-mode \"webhook\" is not supported: use delegated (the default) or off"
        ),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_reads_every_setting_from_the_environment() {
    // A bad ssl mode from the environment is reported by its variable name before any connection.
    let (code, stderr) = run_bin(
        &["serve", "--auth-mode", "off"],
        &[
            ("ARK_POSTGRES_HOST", "127.0.0.1"),
            ("ARK_POSTGRES_USER", "ark"),
            ("ARK_POSTGRES_SSL_MODE", "sometimes"),
        ],
    )
    .await;
    assert_eq!(code, 1);
    assert!(
        stderr.contains("ARK_POSTGRES_SSL_MODE") && stderr.contains("verify-full"),
        "{stderr}"
    );
    let (code, stderr) = run_bin(
        &["serve", "--auth-mode", "off"],
        &[("ARK_POSTGRES_HOST", "127.0.0.1")],
    )
    .await;
    assert_eq!(code, 1);
    assert!(stderr.contains("ARK_POSTGRES_USER"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schema_has_the_documented_indexes_and_soft_delete_shape() {
    let db = TestDb::new().await;
    app::run_migrate(&db.config()).await.unwrap();
    let c = db.client().await;
    let rows = c
        .query(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'resources'",
            &[],
        )
        .await
        .unwrap();
    let defs: Vec<String> = rows.iter().map(|r| r.get::<_, String>(1)).collect();
    let has = |needle: &str| defs.iter().any(|d| d.contains(needle));
    // (kind, namespace) alone is gone since schema 6: its generic plans scanned a whole
    // namespace per create; (kind, namespace, name) serves the same prefixes.
    assert!(!has("(kind, namespace)"), "{defs:?}");
    assert!(has("(kind, namespace, name)"), "{defs:?}");
    assert!(
        has("UNIQUE INDEX resources_live_name") && has("WHERE (deleted_at IS NULL)"),
        "{defs:?}"
    );
    assert!(has("USING gin (labels"), "{defs:?}");
    let cols: Vec<String> = c
        .query("SELECT column_name::text FROM information_schema.columns WHERE table_name = 'resources'", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for col in [
        "kind",
        "namespace",
        "name",
        "uid",
        "resource_version",
        "generation",
        "spec",
        "status",
        "labels",
        "annotations",
        "finalizers",
        "owner_references",
        "managed_fields",
        "created_at",
        "updated_at",
        "deleted_at",
    ] {
        assert!(
            cols.iter().any(|c| c == col),
            "column {col} missing: {cols:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operators_certificate_is_served_when_given() {
    use rcgen::{CertificateParams, KeyPair};
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["ark-apiserver.ark-system.svc".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let s = crate::harness::TestServer::start_with(|o| {
        o.tls_cert_file = Some(cert_path.clone());
        o.tls_key_file = Some(key_path.clone());
    })
    .await;
    // A client that trusts only this certificate, and reaches the server by the name in it.
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(cert.pem().as_bytes()).unwrap())
        .resolve("ark-apiserver.ark-system.svc", s.addr)
        .build()
        .unwrap();
    let r = client
        .get(format!(
            "https://ark-apiserver.ark-system.svc:{}/livez",
            s.addr.port()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    s.stop().await;
}
