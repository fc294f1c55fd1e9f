//! Wiring: builds the store, registry and HTTP server from validated configuration, brings
//! the database up to date, and runs the background housekeeping.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, App, HttpServer};
use tokio::task::JoinHandle;

use crate::api::{self, AppState, Readiness};
use crate::cdc::consume::Consumer;
use crate::cdc::status::StreamStatus;
use crate::cdc::stream::StreamConfig;
use crate::config::CompletedConfig;
use crate::k8s::resource::{DefinitionError, Resources};
use crate::registry::Registry;
use crate::replica::{Identity, LogLimits, Replica};
use crate::store::connect::{self, ConnectError, ConnectFailure, DbConfig};
use crate::store::error::DbFailure;
use crate::store::migrate::{self, SchemaError};
use crate::store::Store;
use crate::tls::{self, TlsError};

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
    #[error("{0}")]
    Database(String),
    #[error("delegated authentication: {0}")]
    Security(#[from] crate::security::SecurityError),
    #[error("{0}")]
    Audit(#[from] crate::audit::AuditConfigError),
    #[error(
        "PostgreSQL rejected the credentials: {0}. Check ARK_POSTGRES_USER and the password \
         (ARK_POSTGRES_PASSWORD / ARK_POSTGRES_PASSWORD_FILE, or the Secret it comes from) and pg_hba.conf."
    )]
    Auth(DbFailure),
    #[error(
        "{0}. Create the database (CREATE DATABASE ...) or fix ARK_POSTGRES_DATABASE / the database in --database-url."
    )]
    NoDatabase(DbFailure),
    /// TLS refused, or another definite refusal, worded by [`ConnectFailure`].
    #[error("{0}")]
    Refused(ConnectFailure),
}

impl From<ConnectFailure> for StartError {
    fn from(f: ConnectFailure) -> Self {
        match f {
            ConnectFailure::Auth(e) => StartError::Auth(e),
            ConnectFailure::NoDatabase(e) => StartError::NoDatabase(e),
            other => StartError::Refused(other),
        }
    }
}

/// A started server. `init` finishes when the database is ready (or fails for good).
pub struct Running {
    pub addr: SocketAddr,
    /// The serving certificate at start, PEM, for clients that want to verify it.
    pub cert_pem: String,
    /// The certificate served now (reloaded from the files when they change).
    pub serving_cert: Arc<tls::ServingCert>,
    pub init: JoinHandle<Result<(), StartError>>,
    /// The change stream; it ends only when the database cannot feed a watch at all, or
    /// when [`stop`](Self::stop) ends it.
    pub stream: JoinHandle<crate::cdc::stream::Ended>,
    pub stream_status: Arc<StreamStatus>,
    pub readiness: Arc<Readiness>,
    server: actix_web::dev::ServerHandle,
    server_task: JoinHandle<std::io::Result<()>>,
    housekeeping: Vec<JoinHandle<()>>,
    store: Arc<Store>,
    /// Ends every open watch.
    stop_watches: tokio::sync::watch::Sender<bool>,
    /// Ends the change stream, after it confirms what it applied.
    stop_stream: tokio::sync::watch::Sender<bool>,
    /// Keeps the authentication CAs current (delegated mode); it ends only when they cannot
    /// be read at all (missing RBAC), which stops the server.
    pub auth: Option<JoinHandle<crate::security::SecurityError>>,
    /// The audit log's writer, flushed and closed at stop.
    audit_backend: Option<Arc<crate::audit::AuditBackend>>,
}

/// How long the stream gets to confirm its position and close its connection.
const STREAM_STOP_TIMEOUT: Duration = Duration::from_secs(3);

impl Running {
    /// Stops in the order that loses nothing and waits on nobody: end every open watch (its
    /// client resumes from the last resourceVersion it got), stop accepting and let
    /// in-flight requests (writes) finish, then let the change stream confirm the position
    /// it applied and close the replication connection (the slot is free at once), and
    /// close the database connections.
    pub async fn stop(mut self) {
        self.stop_watches.send_replace(true);
        self.init.abort();
        self.server.stop(true).await;
        let _ = (&mut self.server_task).await;
        // Every request has finished, so every audit event has been queued.
        if let Some(b) = &self.audit_backend {
            b.close().await;
        }
        for h in &self.housekeeping {
            h.abort();
        }
        if let Some(a) = &self.auth {
            a.abort();
        }
        self.stop_stream.send_replace(true);
        // A stream that ended on its own (a definite error) has been awaited by whoever
        // reported it; a JoinHandle is awaited at most once.
        if !self.stream.is_finished()
            && tokio::time::timeout(STREAM_STOP_TIMEOUT, &mut self.stream)
                .await
                .is_err()
        {
            tracing::warn!("the change stream did not stop in time");
            self.stream.abort();
        }
        self.store.close().await;
    }

    /// Ends every task at once, without the steps of [`stop`](Self::stop): for a server that
    /// is being thrown away (a test that failed before stopping it).
    pub fn abort(self) {
        if let Some(a) = &self.auth {
            a.abort();
        }
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
}

/// Starts the HTTP server at once (so liveness answers) and brings the database up in the
/// background; readiness turns true when that is done.
pub async fn start(opts: CompletedConfig) -> Result<Running, StartError> {
    let mut resources = Resources::builtin()?;
    if let Some(dir) = &opts.crd_dir {
        let n = resources.add_dir(dir)?;
        tracing::info!(dir = %dir.display(), definitions = n, "loaded extra resource definitions");
    }
    let resources = Arc::new(resources);
    let serving = serving_certificate(&opts)?;
    let secured = crate::security::build(&opts.auth).await?;
    // With delegated authentication every client is asked for a certificate (not required
    // to have one); which CA it leads to is checked per request (auth::x509).
    let client_auth = secured.as_ref().map(|_| {
        crate::auth::x509::RequestClientCert::new()
            as Arc<dyn rustls::server::danger::ClientCertVerifier>
    });
    let tls_config = tls::server_config(serving.cert.clone(), client_auth)?;
    // Bound before anything else is built: the replica advertises the port it got.
    let listener = std::net::TcpListener::bind(opts.bind).map_err(|error| StartError::Bind {
        addr: opts.bind,
        error,
    })?;
    let addr = listener.local_addr().unwrap_or(opts.bind);
    let replica = Replica::new(
        Identity::new(opts.replica.id.clone(), opts.advertise_address(addr)),
        opts.slot_name.clone(),
        LogLimits {
            max_entries: opts.watch.history.max_events_per_kind,
            max_age: opts.watch.history.max_age,
        },
    );
    tracing::info!(replica = %replica.identity.id, advertise = %replica.identity.advertise, "replica identity");
    let pool = connect::pool(&opts.db)?;
    let store = Arc::new(Store::new(pool, opts.write_batch_size));
    let readiness = Arc::new(Readiness::default());
    let watch_state = Arc::new(crate::watch::State::new(opts.watch.clone()));
    let stream_status = Arc::new(StreamStatus::new());
    let (stop_watches, watches_stopping) = tokio::sync::watch::channel(false);
    let (stop_stream, stream_stopping) = tokio::sync::watch::channel(false);
    let application_name =
        crate::store::replicas::replication_application_name(&replica.identity.id);
    let registry = Registry::new(store.clone(), watch_state.clone(), stream_status.clone());
    registry.set_stream_identity(crate::registry::StreamIdentity {
        slot: opts.slot_name.clone(),
        application_name: application_name.clone(),
    });
    let mut app_state = AppState::new(
        resources,
        registry,
        opts.max_body_bytes,
        readiness.clone(),
        stream_status.clone(),
        opts.slot_name.clone(),
        crate::metrics::handle(),
    );
    app_state.shutdown = watches_stopping;
    app_state.replica = Some(replica.clone());
    app_state.auth_ready = secured.as_ref().map(|s| s.ready.clone());
    let state = web::Data::new(app_state);
    let security = secured
        .as_ref()
        .map(|s| web::Data::from(s.security.clone()));
    let auditing = opts
        .audit_log()
        .map(|a| crate::audit::start(a.clone()))
        .transpose()?;
    let auditor = auditing.as_ref().map(|(a, _)| web::Data::new(a.clone()));
    let audit_backend = auditing.map(|(_, b)| b);
    let server = HttpServer::new(move || {
        let mut app = App::new().app_data(state.clone());
        if let Some(sec) = &security {
            app = app.app_data(sec.clone());
        }
        if let Some(a) = &auditor {
            app = app.app_data(a.clone());
        }
        app.wrap(actix_web::middleware::from_fn(api::guard::guard))
            .configure(api::configure)
    })
    .on_connect(api::guard::capture_peer_certificates)
    .disable_signals()
    .shutdown_timeout(opts.shutdown_timeout.as_secs().max(1))
    // Watch events are small writes. With Nagle's algorithm on, each one after the
    // first waits for the client's delayed ACK (40 ms on Linux).
    .tcp_nodelay(true)
    .listen_rustls_0_23(listener, tls_config)
    .map_err(|error| StartError::Bind {
        addr: opts.bind,
        error,
    })?;
    let server = server.run();
    let handle = server.handle();
    let server_task = tokio::spawn(server);
    tracing::info!(%addr, "listening");

    let init_store = store.clone();
    let init_ready = readiness.clone();
    let skip = opts.skip_migrations;
    let init_db = opts.db.clone();
    let init =
        tokio::spawn(async move { init_database(&init_store, &init_db, skip, &init_ready).await });
    let stream_cfg = StreamConfig {
        db: opts.db.clone(),
        slot: opts.slot_name.clone(),
        publication: opts.publication_name.clone(),
        application_name,
        sender_timeout: opts.replica.sender_timeout,
    };
    let consumer = Consumer::new(
        store.clone(),
        watch_state,
        stream_status.clone(),
        replica.clone(),
    );
    let stream = tokio::spawn(run_stream(
        stream_cfg,
        consumer,
        serving.cert.clone(),
        readiness.clone(),
        stream_stopping,
    ));
    let retention = opts.deleted_retention;
    let purge = tokio::spawn(purge_loop(
        store.clone(),
        readiness.clone(),
        replica.clone(),
        retention,
    ));
    let mut housekeeping = vec![purge];
    let auth = secured.map(|secured| {
        let cfg = opts.auth.clone();
        tokio::spawn(async move {
            match secured.keep_current(cfg.clone(), cfg.file_reload).await {
                Ok(()) => unreachable_ok(),
                Err(e) => e,
            }
        })
    });
    if let Some((files, reloader)) = serving.watch {
        housekeeping.push(tokio::spawn(tls::watch_files(
            serving.cert.clone(),
            files,
            reloader,
            opts.tls_reload_interval,
        )));
    }
    Ok(Running {
        addr,
        cert_pem: serving.cert_pem,
        serving_cert: serving.cert,
        init,
        stream,
        stream_status,
        readiness,
        server: handle,
        server_task,
        housekeeping,
        store,
        stop_watches,
        stop_stream,
        auth,
        audit_backend,
    })
}

/// `Secured::keep_current` only ever returns with an error; an `Ok` would be a bug.
fn unreachable_ok() -> crate::security::SecurityError {
    crate::security::SecurityError::Stopped
}

/// The serving certificate and, for the operator's files, what keeps it current.
struct Serving {
    cert_pem: String,
    cert: Arc<tls::ServingCert>,
    watch: Option<(tls::CertFiles, tls::Reloader)>,
}

/// The operator's files (a failure stops the start; later changes are reloaded), or a
/// self-signed certificate for loopback made now.
fn serving_certificate(opts: &CompletedConfig) -> Result<Serving, StartError> {
    if let (Some(cert), Some(key)) = (&opts.tls_cert_file, &opts.tls_key_file) {
        let files = tls::CertFiles {
            cert: cert.clone(),
            key: key.clone(),
        };
        let loaded = files.load()?;
        return Ok(Serving {
            cert_pem: loaded.cert_pem,
            cert: loaded.serving,
            watch: Some((files, loaded.reloader)),
        });
    }
    let hosts = ["localhost", "127.0.0.1", "::1"].map(String::from);
    let (cert, key) = tls::self_signed(&hosts)?;
    let certified = tls::certified_key(
        cert.as_bytes(),
        key.as_bytes(),
        "generated certificate",
        "generated key",
    )?;
    tracing::info!("serving with a generated self-signed certificate (pass --tls-cert-file and --tls-private-key-file to use your own)");
    Ok(Serving {
        cert_pem: cert,
        cert: tls::ServingCert::new(certified),
        watch: None,
    })
}

/// Connects (retrying while PostgreSQL is unreachable), checks the server, and migrates.
async fn init_database(
    store: &Store,
    db: &DbConfig,
    skip_migrations: bool,
    readiness: &Readiness,
) -> Result<(), StartError> {
    let mut delay = Duration::from_millis(200);
    let mut client = loop {
        match connect::first_connection(store.pool(), db).await {
            Ok(c) => break c,
            Err(ConnectFailure::Unreachable(e)) => tracing::warn!(
                error = %e,
                retry_in = ?delay,
                "cannot reach PostgreSQL: check the host and port, that the database is up, and that no NetworkPolicy blocks egress; retrying"
            ),
            Err(definite) => return Err(definite.into()),
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
    consumer: Consumer,
    serving: Arc<tls::ServingCert>,
    readiness: Arc<Readiness>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> crate::cdc::stream::Ended {
    while !readiness.schema_ready.load(Ordering::Acquire) {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            _ = stop.wait_for(|s| *s) => return crate::cdc::stream::Ended::Stopped,
        }
    }
    crate::replica::run(cfg, consumer, serving, stop).await
}

/// Runs on the leader only: one replica purging is enough, and the others would only
/// contend with it for the same rows.
async fn purge_loop(
    store: Arc<Store>,
    readiness: Arc<Readiness>,
    replica: Arc<Replica>,
    retention: Duration,
) {
    let every = (retention / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
    loop {
        tokio::time::sleep(every).await;
        if !readiness.schema_ready.load(Ordering::Acquire) || !replica.is_leader() {
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
    let mut client = connect::first_connection(&pool, db).await?;
    migrate::preflight(&client).await?;
    let applied = migrate::migrate(&mut client).await?;
    crate::cdc::slot::ensure_publication(&client, publication)
        .await
        .map_err(StartError::Database)?;
    Ok(applied)
}

/// Writes a kubeconfig that points kubectl at `addr`, trusts `server_ca_pem` and
/// authenticates with the client certificate `client`. The file holds a private key, so
/// only its owner may read it (mode 0600, as kubectl writes its own).
pub fn write_kubeconfig(
    path: &std::path::Path,
    addr: SocketAddr,
    server_ca_pem: &str,
    client: &tls::ClientCert,
) -> std::io::Result<()> {
    use base64::Engine;
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let (ca, cert, key) = (
        b64(server_ca_pem),
        b64(&client.cert_pem),
        b64(&client.key_pem),
    );
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: ark-dev\n  cluster:\n    server: https://{addr}\n    certificate-authority-data: {ca}\n\
         users:\n- name: ark-dev\n  user:\n    client-certificate-data: {cert}\n    client-key-data: {key}\n\
         contexts:\n- name: ark-dev\n  context:\n    cluster: ark-dev\n    user: ark-dev\n    namespace: default\n\
         current-context: ark-dev\n"
    );
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // `mode` applies only when the file is created; one left by an earlier run may be wider.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(text.as_bytes())
}
