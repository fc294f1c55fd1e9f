//! Test harness: a real PostgreSQL cluster per test process (started with initdb/pg_ctl,
//! or the server named by ARK_TEST_DATABASE_URL), a fresh database per test, and the
//! server started in-process on a free port. Nothing here mocks PostgreSQL.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use ark_apiserver::app::{self, Running, ServeOptions};
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

/// A database of its own for one test.
pub struct TestDb {
    pub url: String,
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
        TestDb { url }
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
        DbConfig {
            pg,
            ssl_mode: SslMode::Disable,
            root_cert: None,
            pool_size: 16,
        }
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        connect(&self.url).await
    }
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

    pub async fn start_with(tweak: impl FnOnce(&mut ServeOptions)) -> TestServer {
        let db = TestDb::new().await;
        Self::start_on_with(db, tweak).await
    }

    /// A server on a database the test made itself.
    pub async fn start_on(db: TestDb) -> TestServer {
        Self::start_on_with(db, |_| {}).await
    }

    pub async fn start_on_with(db: TestDb, tweak: impl FnOnce(&mut ServeOptions)) -> TestServer {
        init_logging();
        let mut opts = ServeOptions::new(db.config(), "127.0.0.1:0".parse().unwrap());
        // Replication slots are cluster-wide: one per test database.
        opts.slot_name = db.slot_name();
        tweak(&mut opts);
        let mut running = app::start(opts).await.expect("starting the server");
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
            "--token",
            "test",
            "--request-timeout",
            "30s",
        ])
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

impl Drop for TestServer {
    fn drop(&mut self) {
        // Best effort: a test that panics never reaches stop(); the runtime going away
        // ends the server's tasks.
        self.running.take();
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
