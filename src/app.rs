//! Wiring: builds the store, registry and HTTP server from validated configuration, brings
//! the database up to date, and runs the background housekeeping.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, App, HttpServer};
use tokio::task::JoinHandle;

use crate::api::{self, AppState, Readiness};
use crate::cdc::status::StreamStatus;
use crate::cdc::stream::StreamConfig;
use crate::k8s::resource::{DefinitionError, Resources};
use crate::registry::Registry;
use crate::store::connect::{self, ConnectError, DbConfig};
use crate::store::error::{classify, db_message, Class};
use crate::store::migrate::{self, SchemaError};
use crate::store::Store;
use crate::tls::{self, TlsError};

/// Everything `serve` (and `dev`, and the tests) need to start a server.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub db: DbConfig,
    pub bind: SocketAddr,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    pub crd_dir: Option<PathBuf>,
    pub max_body_bytes: usize,
    pub write_batch_size: usize,
    pub deleted_retention: Duration,
    pub skip_migrations: bool,
    pub slot_name: String,
    pub publication_name: String,
    pub watch: crate::watch::Config,
}

impl ServeOptions {
    /// Options with the documented defaults, for a database config and an address.
    pub fn new(db: DbConfig, bind: SocketAddr) -> Self {
        ServeOptions {
            db,
            bind,
            tls_cert_file: None,
            tls_key_file: None,
            crd_dir: None,
            max_body_bytes: 16 * 1024 * 1024,
            write_batch_size: 256,
            deleted_retention: Duration::from_secs(3600),
            skip_migrations: false,
            slot_name: "ark_cdc".into(),
            publication_name: "ark_cdc".into(),
            watch: crate::watch::Config::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("resource definitions: {0}")]
    Definitions(#[from] DefinitionError),
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    #[error("database connection settings: {0}")]
    Connect(#[from] ConnectError),
    #[error("cannot listen on {addr}: {error}")]
    Bind {
        addr: SocketAddr,
        error: std::io::Error,
    },
    #[error("{0}")]
    Schema(#[from] SchemaError),
    #[error(
        "PostgreSQL rejected the credentials: {0}. Check ARK_POSTGRES_USER and the password \
         (ARK_POSTGRES_PASSWORD / ARK_POSTGRES_PASSWORD_FILE, or the Secret it comes from) and pg_hba.conf."
    )]
    Auth(String),
    #[error("{0}")]
    Database(String),
}

/// A started server. `init` finishes when the database is ready (or fails for good).
pub struct Running {
    pub addr: SocketAddr,
    /// The serving certificate, PEM, for clients that want to verify it.
    pub cert_pem: String,
    pub init: JoinHandle<Result<(), StartError>>,
    /// The change stream; it ends only when the database cannot feed a watch at all.
    pub stream: JoinHandle<crate::cdc::slot::PreflightError>,
    pub stream_status: Arc<StreamStatus>,
    pub readiness: Arc<Readiness>,
    server: actix_web::dev::ServerHandle,
    server_task: JoinHandle<std::io::Result<()>>,
    housekeeping: Vec<JoinHandle<()>>,
}

impl Running {
    /// Stops accepting requests, finishes in-flight ones (up to the shutdown timeout) and
    /// stops background tasks.
    pub async fn stop(self) {
        self.init.abort();
        self.stream.abort();
        for h in &self.housekeeping {
            h.abort();
        }
        self.server.stop(true).await;
        let _ = self.server_task.await;
    }

    /// Ends every task at once, without the steps of [`stop`](Self::stop): for a server that
    /// is being thrown away (a test that failed before stopping it).
    pub fn abort(self) {
        self.init.abort();
        self.stream.abort();
        for h in &self.housekeeping {
            h.abort();
        }
        self.server_task.abort();
    }

    /// Waits until the change stream is up (the server is ready), or says why not.
    pub async fn wait_stream_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.stream_status.check().is_ok() {
                return Ok(());
            }
            if self.stream.is_finished() {
                return Err(match (&mut self.stream).await {
                    Ok(e) => e.to_string(),
                    Err(e) => e.to_string(),
                });
            }
            if tokio::time::Instant::now() > deadline {
                return Err(self.stream_status.check().err().unwrap_or_default());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the HTTP server stops on its own.
    pub async fn wait(self) -> std::io::Result<()> {
        self.server_task
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
    }
}

/// Starts the HTTP server at once (so liveness answers) and brings the database up in the
/// background; readiness turns true when that is done.
pub async fn start(opts: ServeOptions) -> Result<Running, StartError> {
    let mut resources = Resources::builtin()?;
    if let Some(dir) = &opts.crd_dir {
        let n = resources.add_dir(dir)?;
        tracing::info!(dir = %dir.display(), definitions = n, "loaded extra resource definitions");
    }
    let resources = Arc::new(resources);
    let (cert_pem, tls_config) = match (&opts.tls_cert_file, &opts.tls_key_file) {
        (Some(c), Some(k)) => (
            std::fs::read_to_string(c).unwrap_or_default(),
            tls::server_config_from_files(c, k)?,
        ),
        _ => {
            let hosts = vec![
                "localhost".to_string(),
                "127.0.0.1".to_string(),
                "::1".to_string(),
            ];
            let (cert, key) = tls::self_signed(&hosts)?;
            let cfg = tls::server_config(
                cert.as_bytes(),
                key.as_bytes(),
                "generated certificate",
                "generated key",
            )?;
            tracing::info!("serving with a generated self-signed certificate (pass --tls-cert-file and --tls-private-key-file to use your own)");
            (cert, cfg)
        }
    };
    let pool = connect::pool(&opts.db)?;
    let store = Arc::new(Store::new(pool, opts.write_batch_size));
    let readiness = Arc::new(Readiness::default());
    let watch_state = Arc::new(crate::watch::State::new(opts.watch.clone()));
    let stream_status = Arc::new(StreamStatus::new());
    let state = web::Data::new(AppState::new(
        resources,
        Registry::new(store.clone(), watch_state.clone(), stream_status.clone()),
        opts.max_body_bytes,
        readiness.clone(),
        stream_status.clone(),
        opts.slot_name.clone(),
        crate::metrics::handle(),
    ));
    let server =
        HttpServer::new(move || App::new().app_data(state.clone()).configure(api::configure))
            .disable_signals()
            .shutdown_timeout(5)
            // Watch events are small writes. With Nagle's algorithm on, each one after the
            // first waits for the client's delayed ACK (40 ms on Linux).
            .tcp_nodelay(true)
            .bind_rustls_0_23(opts.bind, tls_config)
            .map_err(|error| StartError::Bind {
                addr: opts.bind,
                error,
            })?;
    let addr = server.addrs().first().copied().unwrap_or(opts.bind);
    let server = server.run();
    let handle = server.handle();
    let server_task = tokio::spawn(server);
    tracing::info!(%addr, "listening");

    let init_store = store.clone();
    let init_ready = readiness.clone();
    let skip = opts.skip_migrations;
    let init = tokio::spawn(async move { init_database(&init_store, skip, &init_ready).await });
    let stream_cfg = StreamConfig {
        db: opts.db.clone(),
        slot: opts.slot_name.clone(),
        publication: opts.publication_name.clone(),
    };
    let stream = tokio::spawn(run_stream(
        stream_cfg,
        store.pool().clone(),
        watch_state,
        stream_status.clone(),
        readiness.clone(),
    ));
    let retention = opts.deleted_retention;
    let purge = tokio::spawn(purge_loop(store, readiness.clone(), retention));
    Ok(Running {
        addr,
        cert_pem,
        init,
        stream,
        stream_status,
        readiness,
        server: handle,
        server_task,
        housekeeping: vec![purge],
    })
}

/// Connects (retrying while PostgreSQL is unreachable), checks the server, and migrates.
async fn init_database(
    store: &Store,
    skip_migrations: bool,
    readiness: &Readiness,
) -> Result<(), StartError> {
    let mut delay = Duration::from_millis(200);
    let mut client = loop {
        match store.pool().get().await {
            Ok(c) => break c,
            Err(deadpool_postgres::PoolError::Backend(e)) => {
                if let Some(code) = e.code() {
                    let c = code.code();
                    if c == "28P01" || c == "28000" {
                        return Err(StartError::Auth(db_message(&e)));
                    }
                    if c == "3D000" {
                        return Err(StartError::Database(format!(
                            "{}. Create the database (CREATE DATABASE ...) or fix ARK_POSTGRES_DATABASE / the database in --database-url.",
                            db_message(&e)
                        )));
                    }
                }
                if classify(&e) != Class::Transient {
                    return Err(StartError::Database(db_message(&e)));
                }
                tracing::warn!(
                    error = %db_message(&e),
                    retry_in = ?delay,
                    "cannot reach PostgreSQL: check the host and port, that the database is up, and that no NetworkPolicy blocks egress; retrying"
                );
            }
            Err(e) => {
                // A pool timeout: connecting took longer than 10 s (a firewall or NetworkPolicy
                // dropping packets looks like this), or the pool is exhausted.
                tracing::warn!(
                    error = %crate::store::error::with_causes(&e),
                    retry_in = ?delay,
                    "cannot reach PostgreSQL: check the host and port, that the database is up, and that no NetworkPolicy blocks egress; retrying"
                )
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(30));
    };
    migrate::preflight(&client).await?;
    if skip_migrations {
        migrate::check_migrated(&client).await?;
    } else {
        let applied = migrate::migrate(&mut client).await?;
        if !applied.is_empty() {
            tracing::info!(?applied, "applied schema migrations");
        }
    }
    readiness.schema_ready.store(true, Ordering::Release);
    tracing::info!("database ready");
    Ok(())
}

/// The change stream starts once the schema (and with it the publication) is in place.
async fn run_stream(
    cfg: StreamConfig,
    pool: deadpool_postgres::Pool,
    state: Arc<crate::watch::State>,
    status: Arc<StreamStatus>,
    readiness: Arc<Readiness>,
) -> crate::cdc::slot::PreflightError {
    while !readiness.schema_ready.load(Ordering::Acquire) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    crate::cdc::stream::run(cfg, pool, state, status).await
}

async fn purge_loop(store: Arc<Store>, readiness: Arc<Readiness>, retention: Duration) {
    let every = (retention / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
    loop {
        tokio::time::sleep(every).await;
        if !readiness.schema_ready.load(Ordering::Acquire) {
            continue;
        }
        match store.purge(retention, 1000).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(rows = n, "purged soft-deleted rows"),
            Err(e) => tracing::warn!(error = %e, "purging soft-deleted rows failed; will retry"),
        }
    }
}

/// Runs `migrate`: connect once, check, apply, report.
pub async fn run_migrate(db: &DbConfig) -> Result<Vec<i32>, StartError> {
    run_migrate_for(db, "ark_cdc").await
}

/// Applies the migrations, then creates `publication` if it is missing: `slot drop` (the
/// chart's uninstall cleanup) removes it, and the first migration that created it does
/// not run again, while the serving role may lack the rights to create it.
pub async fn run_migrate_for(db: &DbConfig, publication: &str) -> Result<Vec<i32>, StartError> {
    let pool = connect::pool(db)?;
    let mut client = pool.get().await.map_err(|e| match e {
        deadpool_postgres::PoolError::Backend(e)
            if e.code()
                .is_some_and(|c| c.code() == "28P01" || c.code() == "28000") =>
        {
            StartError::Auth(db_message(&e))
        }
        deadpool_postgres::PoolError::Backend(e) => StartError::Database(db_message(&e)),
        other => StartError::Database(other.to_string()),
    })?;
    migrate::preflight(&client).await?;
    let applied = migrate::migrate(&mut client).await?;
    crate::cdc::slot::ensure_publication(&client, publication)
        .await
        .map_err(StartError::Database)?;
    Ok(applied)
}

/// Writes a kubeconfig that points kubectl at `addr` and trusts `cert_pem`.
pub fn write_kubeconfig(
    path: &std::path::Path,
    addr: SocketAddr,
    cert_pem: &str,
) -> std::io::Result<()> {
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.encode(cert_pem);
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: ark-dev\n  cluster:\n    server: https://{addr}\n    certificate-authority-data: {ca}\n\
         users:\n- name: ark-dev\n  user:\n    token: ark-dev-no-auth\ncontexts:\n- name: ark-dev\n  context:\n    cluster: ark-dev\n    user: ark-dev\n    namespace: default\n\
         current-context: ark-dev\n"
    );
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, text)
}
