//! Test harness: a real PostgreSQL cluster per test process (started with initdb/pg_ctl,
//! or the server named by ARK_TEST_DATABASE_URL), a fresh database per test, and the
//! server started in-process on a free port. Nothing here mocks PostgreSQL.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use ark_apiserver::app::{self, Running};
use ark_apiserver::config::ServeConfig;
use ark_apiserver::embedded::Cluster;
use ark_apiserver::store::connect::{DbConfig, SslMode};

/// The admin URL of the server tests create their databases on.
fn admin_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("ARK_TEST_DATABASE_URL") {
            return url;
        }
        static CLUSTER: Mutex<Option<Cluster>> = Mutex::new(None);
        let cluster = Cluster::start(None, true).expect("starting the test PostgreSQL cluster");
        cluster
            .stop_when_process_exits()
            .expect("arming the cluster watcher");
        let url = cluster.url("postgres");
        *CLUSTER.lock().unwrap() = Some(cluster);
        url
    })
    .clone()
}

/// Connects with tokio-postgres to `url`, driving the connection in the background.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connecting to the test database");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// A database of its own for one test. Dropping it ends every session on it, drops the
/// replication slots made on it (slots are cluster-wide and would pin WAL for the rest of
/// the run) and drops the database.
pub struct TestDb {
    pub url: String,
    /// The database's name on the shared cluster, when this value made it (and so drops it).
    owned: Option<String>,
}

impl TestDb {
    pub async fn new() -> TestDb {
        static N: AtomicUsize = AtomicUsize::new(0);
        let admin = admin_url();
        let name = format!(
            "ark_test_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let c = connect(&admin).await;
        c.batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("creating the test database");
        let url = replace_db(&admin, &name);
        TestDb {
            url,
            owned: Some(name),
        }
    }

    /// A database the test made elsewhere (its own cluster); it is left alone on drop.
    pub fn existing(url: String) -> TestDb {
        TestDb { url, owned: None }
    }

    /// The name of the database this value made on the shared cluster.
    pub fn owned_name(&self) -> Option<&str> {
        self.owned.as_deref()
    }

    /// A slot name of this database's own (slots are shared by the whole cluster).
    pub fn slot_name(&self) -> String {
        let db = self
            .url
            .rsplit('/')
            .next()
            .unwrap_or("")
            .split('?')
            .next()
            .unwrap_or("");
        format!("{db}_cdc")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect()
    }

    pub fn config(&self) -> DbConfig {
        let mut pg: tokio_postgres::Config = self
            .url
            .replace("?sslmode=disable", "")
            .parse()
            .expect("test database URL");
        pg.application_name("ark-apiserver-test");
        let mut db = DbConfig::new(pg, SslMode::Disable);
        db.pool_size = 16;
        db
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        connect(&self.url).await
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Drop runs inside a test's runtime, which may have a single thread: clean up on a
        // thread of its own with its own runtime, and wait for it.
        let Some(name) = self.owned.take() else {
            return;
        };
        let admin = admin_url();
        let shown = name.clone();
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for dropping the test database");
            rt.block_on(drop_database(&admin, &name))
        })
        .join();
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("could not drop test database {shown}: {e}"),
            Err(_) => eprintln!("dropping test database {shown} panicked"),
        }
    }
}

/// Ends the sessions on `name` (walsenders included), drops its slots, drops it.
async fn drop_database(admin: &str, name: &str) -> Result<(), tokio_postgres::Error> {
    let c = connect(admin).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        c.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[&name],
        )
        .await?;
        // A terminated walsender releases its slot a moment later; an active slot cannot be
        // dropped, so try again until none is left.
        let left = c
            .query(
                "SELECT slot_name::text, active FROM pg_replication_slots WHERE database = $1",
                &[&name],
            )
            .await?;
        if left.is_empty() {
            break;
        }
        for row in &left {
            let (slot, active): (String, bool) = (row.get(0), row.get(1));
            if !active {
                // Gone meanwhile, or taken again by a reconnecting stream: both are retried.
                let _ = c
                    .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
                    .await;
            }
        }
        if std::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await
}

fn replace_db(url: &str, db: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map(|(b, q)| (b, Some(q)))
        .unwrap_or((url, None));
    let prefix = base.rsplit_once('/').map(|(p, _)| p).unwrap_or(base);
    match query {
        Some(q) => format!("{prefix}/{db}?{q}"),
        None => format!("{prefix}/{db}"),
    }
}

/// A server configuration for tests of everything but authentication: on a free loopback
/// port, with `--auth-mode off` (the auth tests turn delegated mode on themselves).
pub fn serve_config(db: DbConfig) -> ServeConfig {
    let mut c = ServeConfig::new(db, "127.0.0.1:0".parse().unwrap());
    c.auth.mode = ark_apiserver::config::AuthMode::Off;
    c
}

/// A running server on its own database.
pub struct TestServer {
    pub db: TestDb,
    pub addr: SocketAddr,
    running: Option<Running>,
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut ServeConfig)) -> TestServer {
        let db = TestDb::new().await;
        Self::start_on_with(db, tweak).await
    }

    /// A server on a database the test made itself.
    pub async fn start_on(db: TestDb) -> TestServer {
        Self::start_on_with(db, |_| {}).await
    }

    pub async fn start_on_with(db: TestDb, tweak: impl FnOnce(&mut ServeConfig)) -> TestServer {
        init_logging();
        let mut opts = serve_config(db.config());
        // Replication slots are cluster-wide: one per test database.
        opts.slot_name = db.slot_name();
        tweak(&mut opts);
        let config = opts.complete().expect("a valid test configuration");
        let mut running = app::start(config).await.expect("starting the server");
        tokio::time::timeout(Duration::from_secs(60), &mut running.init)
            .await
            .expect("database init timed out")
            .expect("init task")
            .expect("database init");
        running
            .wait_stream_ready(Duration::from_secs(60))
            .await
            .expect("the change stream starts");
        TestServer {
            addr: running.addr,
            db,
            running: Some(running),
        }
    }

    /// The certificate the server serves now.
    pub fn serving_cert(&self) -> std::sync::Arc<ark_apiserver::tls::ServingCert> {
        self.running
            .as_ref()
            .expect("a running server")
            .serving_cert
            .clone()
    }

    pub fn stream_status(&self) -> std::sync::Arc<ark_apiserver::cdc::status::StreamStatus> {
        self.running
            .as_ref()
            .expect("a running server")
            .stream_status
            .clone()
    }

    pub fn base_url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// An HTTP client that trusts the server's self-signed certificate.
    pub fn http(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .build()
            .unwrap()
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await;
        }
    }

    /// Stops the server and hands back its database, which then outlives it.
    pub async fn stop_keeping_db(mut self) -> TestDb {
        if let Some(r) = self.running.take() {
            r.stop().await;
        }
        std::mem::replace(&mut self.db, TestDb::existing(String::new()))
    }
}

/// The kubectl the tests drive: ARK_TEST_KUBECTL, else `kubectl` on PATH.
pub fn kubectl_path() -> String {
    std::env::var("ARK_TEST_KUBECTL").unwrap_or_else(|_| "kubectl".to_string())
}

/// Output of one kubectl run.
#[derive(Debug)]
pub struct Kubectl {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl TestServer {
    /// Runs kubectl against this server, as a user would with the dev kubeconfig.
    pub async fn kubectl(&self, args: &[&str]) -> Kubectl {
        self.kubectl_stdin(args, None).await
    }

    pub async fn kubectl_stdin(&self, args: &[&str], stdin: Option<&str>) -> Kubectl {
        self.kubectl_using(&kubectl_path(), args, stdin).await
    }

    /// Runs a given kubectl binary, for tests that hold several kubectl releases to the
    /// same behaviour.
    pub async fn kubectl_using(
        &self,
        kubectl: &str,
        args: &[&str],
        stdin: Option<&str>,
    ) -> Kubectl {
        self.run_kubectl(kubectl, &["--token", "test"], args, stdin)
            .await
    }

    /// Runs kubectl with these credential flags (`--token t`, `--client-certificate ...`).
    pub async fn kubectl_as(&self, credentials: &[&str], args: &[&str]) -> Kubectl {
        self.run_kubectl(&kubectl_path(), credentials, args, None)
            .await
    }

    async fn run_kubectl(
        &self,
        kubectl: &str,
        credentials: &[&str],
        args: &[&str],
        stdin: Option<&str>,
    ) -> Kubectl {
        use tokio::io::AsyncWriteExt;
        let home = std::env::temp_dir().join(format!(
            "ark-kubectl-home-{}-{}",
            std::process::id(),
            self.addr.port()
        ));
        let mut cmd = tokio::process::Command::new(kubectl);
        cmd.args([
            "--server",
            &self.base_url(),
            "--insecure-skip-tls-verify",
            "--request-timeout",
            "30s",
        ])
        .args(credentials)
        .args(args)
        // A private cache dir per server: discovery is cached per host:port.
        .env("HOME", &home)
        .env("KUBECONFIG", home.join("none"))
        .stdin(if stdin.is_some() {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        })
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "running {kubectl}: {e} (set ARK_TEST_KUBECTL or install kubectl; scripts/test does)"
            )
        });
        if let Some(input) = stdin {
            let mut s = child.stdin.take().unwrap();
            s.write_all(input.as_bytes()).await.unwrap();
            drop(s);
        }
        let out = tokio::time::timeout(Duration::from_secs(90), child.wait_with_output())
            .await
            .expect("kubectl timed out")
            .unwrap();
        Kubectl {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into(),
            stderr: String::from_utf8_lossy(&out.stderr).into(),
        }
    }
}

impl TestServer {
    /// Runs kubectl with a kubeconfig of the test's own (its user, its credentials).
    pub async fn kubectl_with_kubeconfig(
        &self,
        kubeconfig: &std::path::Path,
        args: &[&str],
    ) -> Kubectl {
        let home = kubeconfig.parent().unwrap_or(std::path::Path::new("/tmp"));
        let out = tokio::time::timeout(
            Duration::from_secs(90),
            tokio::process::Command::new(kubectl_path())
                .args(["--request-timeout", "30s"])
                .args(args)
                .env("HOME", home)
                .env("KUBECONFIG", kubeconfig)
                .stdin(std::process::Stdio::null())
                .output(),
        )
        .await
        .expect("kubectl timed out")
        .unwrap();
        Kubectl {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into(),
            stderr: String::from_utf8_lossy(&out.stderr).into(),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        // A test that panics never reaches stop(): end the server's tasks before the
        // database goes, so nothing reconnects to a database being dropped.
        if let Some(r) = self.running.take() {
            r.abort();
        }
    }
}

/// Server logs go to the test's captured output (shown when a test fails).
pub fn init_logging() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_env("ARK_TEST_LOG")
            .unwrap_or_else(|_| "warn".into());
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}

/// The reference project's data (`crds/`, `samples/`): ARK_REFERENCE_DIR, else
/// `../shared/ark-reference` beside the checkout, as CI lays it out. Tests that need it run
/// when it is there, as the issue asks, and say so when it is not.
pub fn reference_dir(sub: &str) -> Option<std::path::PathBuf> {
    let base = std::env::var_os("ARK_REFERENCE_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/ark-reference")
        });
    let dir = base.join(sub);
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "reference data not found at {}: set ARK_REFERENCE_DIR to run this test",
            dir.display()
        );
        None
    }
}
