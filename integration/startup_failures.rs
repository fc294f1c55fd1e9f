//! Startup failures operators hit (issue section 4), each against a real PostgreSQL set up to
//! fail that way, through the real binary: the test asserts the message, which names the fix,
//! and the exit status. `wal_level = replica` is in `startup.rs`
//! (`wal_level_replica_stops_serve_with_the_managed_service_settings`, same shape: real
//! binary, exit status 1). PostgreSQL older than 15 cannot be run here (no older server is
//! installed), so its check is exercised in-process at the end.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ark_apiserver::embedded::free_port;
use tokio::io::AsyncReadExt;

use crate::harness::{connect, TestDb};
use crate::stream_faults::{dedicated_cluster, eventually, readyz};

const BIN: &str = env!("CARGO_BIN_EXE_ark-apiserver");

/// A running `ark-apiserver serve` whose stderr is collected as it is written. The child is
/// killed when this is dropped, so a failing test leaves nothing behind.
pub(crate) struct Serve {
    child: tokio::process::Child,
    stderr: Arc<Mutex<String>>,
    reader: tokio::task::JoinHandle<()>,
    pub(crate) base: String,
}

impl Serve {
    /// `serve --auth-mode off` on a free loopback port against `url`, plus `extra` flags. The
    /// inherited environment is cleared of ARK_* settings so only these flags count.
    pub(crate) fn start(url: &str, extra: &[&str]) -> Serve {
        let port = free_port().unwrap();
        let bind = format!("127.0.0.1:{port}");
        let mut cmd = tokio::process::Command::new(BIN);
        cmd.args([
            "serve",
            "--auth-mode",
            "off",
            "--bind",
            &bind,
            "--database-url",
            url,
        ])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .kill_on_drop(true);
        for (k, _) in std::env::vars() {
            if k.starts_with("ARK_") {
                cmd.env_remove(k);
            }
        }
        let mut child = cmd.spawn().expect("running ark-apiserver");
        let mut pipe = child.stderr.take().unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Serve {
            child,
            stderr,
            reader,
            base: format!("https://{bind}"),
        }
    }

    /// The process id, to signal it.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id().expect("the server is running")
    }

    pub(crate) fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits (at most `timeout`) for the process to exit; returns its exit code and stderr.
    pub(crate) async fn exit_within(mut self, timeout: Duration) -> (i32, String) {
        let status = match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(s) => s.unwrap(),
            Err(_) => {
                let _ = self.child.kill().await;
                panic!(
                    "ark-apiserver did not exit within {timeout:?}; stderr:\n{}",
                    self.stderr()
                );
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.reader).await;
        (status.code().unwrap_or(-1), self.stderr())
    }

    pub(crate) async fn kill(mut self) {
        let _ = self.child.kill().await;
    }
}

pub(crate) fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap()
}

const EXIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_refused_is_retried_with_backoff_and_the_server_stays_unready() {
    // A port nothing listens on: what a wrong host/port, a database that is down or a
    // NetworkPolicy dropping egress look like to the server.
    let dead = free_port().unwrap();
    let url = format!("postgres://ark@127.0.0.1:{dead}/ark?sslmode=disable");
    let mut s = Serve::start(&url, &[]);
    let client = http();
    // The HTTP side is up regardless (liveness answers), readiness is not.
    let base = s.base.clone();
    eventually("/livez 200", Duration::from_secs(20), || {
        let (client, base) = (client.clone(), base.clone());
        async move {
            let r = client
                .get(format!("{base}/livez"))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if r.status() == 200 {
                Ok(())
            } else {
                Err(r.status().to_string())
            }
        }
    })
    .await;
    // Retries with backoff (200 ms, 400 ms, ...): several attempts logged, each naming the fix.
    let started = Instant::now();
    loop {
        let e = s.stderr();
        if e.matches("cannot reach PostgreSQL").count() >= 3 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "no retries logged; stderr:\n{e}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let e = s.stderr();
    for needle in [
        "cannot reach PostgreSQL: check the host and port, that the database is up, and that no NetworkPolicy blocks egress; retrying",
        "retry_in=",
        "Connection refused",
    ] {
        assert!(e.contains(needle), "{needle:?} missing from:\n{e}");
    }
    let (code, body) = readyz(&client, &s.base).await.unwrap();
    assert_ne!(
        code, 200,
        "/readyz must fail while PostgreSQL is unreachable: {body}"
    );
    // It does not give up: the process is still running.
    assert!(
        s.child.try_wait().unwrap().is_none(),
        "serve exited although connection failures are retried:\n{e}"
    );
    s.kill().await;
}

/// The test cluster serves without TLS, as many in-cluster PostgreSQLs do.
fn url_without_sslmode(db: &TestDb) -> String {
    db.url.replace("?sslmode=disable", "")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_without_sslmode_against_a_server_without_tls_exits_1_saying_it_defaults_to_require()
{
    let db = TestDb::new().await;
    let (code, e) = Serve::start(&url_without_sslmode(&db), &[])
        .exit_within(EXIT)
        .await;
    assert_eq!(code, 1, "{e}");
    for needle in [
        "does not accept TLS connections",
        "the database URL has no sslmode, so it defaults to sslmode=require",
        "sslmode=prefer",
        "Fix: add sslmode=disable to the database URL",
        "enable TLS on the server",
    ] {
        assert!(e.contains(needle), "{needle:?} missing from:\n{e}");
    }
    // The host answered: nothing may send the operator looking for a network problem.
    assert!(!e.contains("cannot reach PostgreSQL"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmode_from_the_environment_is_named_when_the_server_refuses_tls() {
    let db = TestDb::new().await;
    let pg: tokio_postgres::Config = url_without_sslmode(&db).parse().unwrap();
    let tokio_postgres::config::Host::Tcp(host) = &pg.get_hosts()[0] else {
        panic!("a TCP host")
    };
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args([
        "serve",
        "--auth-mode",
        "off",
        "--port",
        &free_port().unwrap().to_string(),
    ])
    .env("ARK_POSTGRES_HOST", host)
    .env("ARK_POSTGRES_PORT", pg.get_ports()[0].to_string())
    .env("ARK_POSTGRES_USER", pg.get_user().unwrap())
    .env("ARK_POSTGRES_DATABASE", pg.get_dbname().unwrap())
    .env("ARK_POSTGRES_SSL_MODE", "verify-full")
    .env("HOME", std::env::temp_dir())
    .stdin(Stdio::null())
    .kill_on_drop(true);
    let out = tokio::time::timeout(EXIT, cmd.output())
        .await
        .expect("exits")
        .unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{e}");
    assert!(
        e.contains("TLS is required by environment ARK_POSTGRES_SSL_MODE"),
        "{e}"
    );
    assert!(e.contains("set ARK_POSTGRES_SSL_MODE=disable"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmode_prefer_falls_back_to_plain_text_on_a_server_without_tls() {
    let db = TestDb::new().await;
    let url = format!("{}?sslmode=prefer", url_without_sslmode(&db));
    let s = Serve::start(&url, &["--slot-name", &db.slot_name()]);
    crate::stream_faults::wait_ready(&http(), &s.base, Duration::from_secs(60)).await;
    s.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_and_a_pg_hba_reject_exit_1_naming_the_credentials() {
    let cluster = dedicated_cluster(None).await;
    let admin = connect(&cluster.url("postgres")).await;
    admin
        .batch_execute(
            "SET password_encryption = 'scram-sha-256'; \
             CREATE ROLE app LOGIN PASSWORD 'right-password'; CREATE ROLE blocked LOGIN",
        )
        .await
        .unwrap();
    // The harness's `ark` superuser keeps trust; everyone else needs a scram password, and
    // `blocked` has no pg_hba line that admits it.
    std::fs::write(
        cluster.data_dir().join("pg_hba.conf"),
        "local all all trust\n\
         host all ark 127.0.0.1/32 trust\n\
         host all blocked 127.0.0.1/32 reject\n\
         host all all 127.0.0.1/32 scram-sha-256\n",
    )
    .unwrap();
    admin
        .batch_execute("SELECT pg_reload_conf()")
        .await
        .unwrap();
    let port = cluster.port();
    let good = format!("postgres://app:right-password@127.0.0.1:{port}/postgres?sslmode=disable");
    let bad = format!("postgres://app:wrong-password@127.0.0.1:{port}/postgres?sslmode=disable");
    // The reload is applied asynchronously: wait until a wrong password is refused.
    eventually("pg_hba.conf in effect", Duration::from_secs(10), || {
        let bad = bad.clone();
        async move {
            match tokio_postgres::connect(&bad, tokio_postgres::NoTls).await {
                Err(_) => Ok(()),
                Ok(_) => Err("wrong password still accepted".to_string()),
            }
        }
    })
    .await;
    let _ = tokio_postgres::connect(&good, tokio_postgres::NoTls)
        .await
        .expect("the right password is accepted");

    let (code, e) = Serve::start(&bad, &[]).exit_within(EXIT).await;
    assert_eq!(code, 1, "{e}");
    for needle in [
        "PostgreSQL rejected the credentials",
        "password authentication failed for user \"app\" (28P01)",
        "ARK_POSTGRES_USER",
        "ARK_POSTGRES_PASSWORD_FILE",
        "pg_hba.conf",
    ] {
        assert!(e.contains(needle), "{needle:?} missing from:\n{e}");
    }

    let blocked = format!("postgres://blocked@127.0.0.1:{port}/postgres?sslmode=disable");
    let (code, e) = Serve::start(&blocked, &[]).exit_within(EXIT).await;
    assert_eq!(code, 1, "{e}");
    for needle in [
        "PostgreSQL rejected the credentials",
        "pg_hba.conf rejects connection",
        "(28000)",
    ] {
        assert!(e.contains(needle), "{needle:?} missing from:\n{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_without_replication_exits_1_naming_the_grant() {
    let db = TestDb::new().await;
    ark_apiserver::app::run_migrate(&db.config()).await.unwrap();
    // The documented split: a migrating owner, and a serving role with DML only (and here,
    // by mistake, no REPLICATION).
    let role = format!("norep_exit_{}", std::process::id());
    db.client()
        .await
        .batch_execute(&format!(
            "DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN; \
             GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}"
        ))
        .await
        .unwrap();
    let url = db
        .url
        .replacen("postgres://ark@", &format!("postgres://{role}@"), 1);
    assert_ne!(url, db.url, "the harness URL names the ark user");
    let (code, e) = Serve::start(&url, &["--skip-migrations", "--slot-name", &db.slot_name()])
        .exit_within(EXIT)
        .await;
    assert_eq!(code, 1, "{e}");
    for needle in [
        format!("role \"{role}\" lacks the REPLICATION attribute"),
        format!("ALTER ROLE {role} REPLICATION"),
        "rds_replication".to_string(),
    ] {
        assert!(e.contains(&needle), "{needle:?} missing from:\n{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_free_replication_slot_exits_1_and_starts_once_one_is_freed() {
    let cluster = dedicated_cluster(Some("max_replication_slots = 1")).await;
    let url = cluster.url("postgres");
    let admin = connect(&url).await;
    let max: String = admin
        .query_one("SHOW max_replication_slots", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(max, "1");
    // Another consumer holds the only slot.
    admin
        .execute(
            "SELECT pg_create_logical_replication_slot('someone_elses', 'pgoutput')",
            &[],
        )
        .await
        .unwrap();
    let (code, e) = Serve::start(&url, &[]).exit_within(EXIT).await;
    assert_eq!(code, 1, "{e}");
    for needle in [
        "all 1 replication slots are in use and none is named \"ark_cdc\"",
        "pg_drop_replication_slot",
        "raise max_replication_slots",
    ] {
        assert!(e.contains(needle), "{needle:?} missing from:\n{e}");
    }
    // The fix the message names works: free the slot and the server starts and is ready.
    admin
        .execute("SELECT pg_drop_replication_slot('someone_elses')", &[])
        .await
        .unwrap();
    let s = Serve::start(&url, &[]);
    let client = http();
    let base = s.base.clone();
    eventually(
        "/readyz 200 after freeing a slot",
        Duration::from_secs(30),
        || {
            let (client, base) = (client.clone(), base.clone());
            async move {
                match readyz(&client, &base).await? {
                    (200, _) => Ok(()),
                    (c, b) => Err(format!("{c}: {b}")),
                }
            }
        },
    )
    .await;
    s.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_migrations_on_an_empty_database_exits_1_saying_to_migrate() {
    let db = TestDb::new().await;
    let (code, e) = Serve::start(
        &db.url,
        &["--skip-migrations", "--slot-name", &db.slot_name()],
    )
    .exit_within(EXIT)
    .await;
    assert_eq!(code, 1, "{e}");
    for needle in [
        format!(
            "the database schema is not migrated (at version 0, need {})",
            ark_apiserver::store::migrate::latest_version()
        ),
        "Run `ark-apiserver migrate`".to_string(),
        "without --skip-migrations".to_string(),
    ] {
        assert!(e.contains(&needle), "{needle:?} missing from:\n{e}");
    }
    // Nothing was created behind the operator's back.
    let tables = db
        .client()
        .await
        .query_one("SELECT to_regclass('resources') IS NULL", &[])
        .await
        .unwrap()
        .get::<_, bool>(0);
    assert!(tables, "--skip-migrations must not create the schema");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_database_exits_1_naming_it() {
    let db = TestDb::new().await;
    let (base, _) = db.url.rsplit_once('/').unwrap();
    let url = format!("{base}/no_such_ark_database?sslmode=disable");
    let (code, e) = Serve::start(&url, &[]).exit_within(EXIT).await;
    assert_eq!(code, 1, "{e}");
    for needle in [
        "database \"no_such_ark_database\" does not exist (3D000)",
        "CREATE DATABASE",
        "ARK_POSTGRES_DATABASE",
    ] {
        assert!(e.contains(needle), "{needle:?} missing from:\n{e}");
    }
}

/// No PostgreSQL older than 15 is installed here, so the refusal is checked on the decision
/// function `preflight` uses (`server_version_num` from the server), as `serve` prints it.
#[test]
fn postgres_older_than_15_is_refused_naming_the_fix() {
    use ark_apiserver::app::StartError;
    use ark_apiserver::store::migrate::check_server;
    let e = check_server(140011, "14.11".into(), "logical".into()).unwrap_err();
    let printed = StartError::from(e).to_string();
    assert!(
        printed.starts_with("PostgreSQL 14.11 is too old")
            && printed.contains("PostgreSQL 15 or later")
            && printed.contains("--database-url"),
        "{printed}"
    );
    // The version check comes first: an old server with the wrong wal_level is told to upgrade.
    let e = check_server(130015, "13.15".into(), "replica".into()).unwrap_err();
    assert!(e.to_string().contains("13.15 is too old"), "{e}");
    check_server(150000, "15.0".into(), "logical".into()).unwrap();
}
