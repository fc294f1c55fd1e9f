//! Connections to PostgreSQL: libpq-style `sslmode` over rustls, and the pool.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio_postgres::error::SqlState;

use super::error::{DbFailure, StoreError};

/// libpq's `sslmode`, as far as a server that must not leak credentials cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    /// TLS when the server offers it, plain text otherwise (libpq's `prefer`; `allow` is
    /// taken as this too). Chosen only explicitly: a downgrade is possible.
    Prefer,
    /// Encrypt, but accept any certificate (libpq's `require` without a root cert).
    Require,
    /// Verify the chain against the root certificate, not the host name.
    VerifyCa,
    /// Verify the chain and the host name.
    VerifyFull,
}

impl SslMode {
    /// Whether a server without TLS is refused.
    pub fn requires_tls(self) -> bool {
        !matches!(self, SslMode::Disable | SslMode::Prefer)
    }
}

impl std::str::FromStr for SslMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "disable" => Ok(Self::Disable),
            "prefer" | "allow" => Ok(Self::Prefer),
            "require" => Ok(Self::Require),
            "verify-ca" => Ok(Self::VerifyCa),
            "verify-full" => Ok(Self::VerifyFull),
            other => Err(format!(
                "invalid sslmode {other:?}: expected disable, prefer, require, verify-ca or verify-full"
            )),
        }
    }
}

/// Where the sslmode in force came from, so that an error can say what to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SslModeOrigin {
    /// Nothing set it: the default (`require`), with or without a database URL.
    Default { url: bool },
    /// `sslmode=` in the database URL.
    Url,
    /// A setting, named as the operator gave it (`environment ARK_POSTGRES_SSL_MODE`, ...).
    Setting(String),
}

/// Everything needed to reach the database.
#[derive(Debug, Clone)]
pub struct DbConfig {
    pub pg: tokio_postgres::Config,
    pub ssl_mode: SslMode,
    pub ssl_mode_origin: SslModeOrigin,
    pub root_cert: Option<std::path::PathBuf>,
    pub pool_size: usize,
}

impl DbConfig {
    /// A configuration with an explicitly chosen sslmode and the default pool size.
    pub fn new(pg: tokio_postgres::Config, ssl_mode: SslMode) -> Self {
        DbConfig {
            pg,
            ssl_mode,
            ssl_mode_origin: SslModeOrigin::Setting("the caller".into()),
            root_cert: None,
            pool_size: crate::config::defaults::POOL_SIZE,
        }
    }

    /// The first TCP host and its port, for messages and the TLS probe.
    pub fn tcp_target(&self) -> Option<(String, u16)> {
        let port = self.pg.get_ports().first().copied().unwrap_or(5432);
        match self.pg.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => Some((h.clone(), port)),
            _ => None,
        }
    }
}

/// Why the first connection at start failed, by what the operator does about it. Only
/// [`Unreachable`](Self::Unreachable) is worth retrying; every other case needs a change.
#[derive(Debug, thiserror::Error)]
pub enum ConnectFailure {
    /// Wrong user or password, or pg_hba.conf rejected the connection.
    #[error("{0}")]
    Auth(DbFailure),
    /// The database named in the settings does not exist.
    #[error("{0}")]
    NoDatabase(DbFailure),
    /// The server answered and does not offer TLS, which the sslmode requires.
    #[error("{}", tls_refused_message(.host, *.port, .origin))]
    TlsRefused {
        host: String,
        port: u16,
        origin: SslModeOrigin,
    },
    /// Not reachable now (refused, timed out, shutting down): retry.
    #[error("{0}")]
    Unreachable(StoreError),
    /// Any other refusal by the server.
    #[error("{0}")]
    Refused(StoreError),
}

fn tls_refused_message(host: &str, port: u16, origin: &SslModeOrigin) -> String {
    let why = match origin {
        SslModeOrigin::Default { url: true } => {
            "the database URL has no sslmode, so it defaults to sslmode=require".to_string()
        }
        SslModeOrigin::Default { url: false } => {
            "ARK_POSTGRES_SSL_MODE (--postgres-ssl-mode) is not set, so it defaults to require"
                .to_string()
        }
        SslModeOrigin::Url => "the database URL sets sslmode to require TLS".to_string(),
        SslModeOrigin::Setting(s) => format!("TLS is required by {s}"),
    };
    let fix = match origin {
        SslModeOrigin::Default { url: true } | SslModeOrigin::Url => {
            "add sslmode=disable to the database URL if the network path to PostgreSQL is trusted"
        }
        _ => "set ARK_POSTGRES_SSL_MODE=disable (--postgres-ssl-mode disable) if the network path to PostgreSQL is trusted",
    };
    format!(
        "PostgreSQL at {host}:{port} does not accept TLS connections, and {why} \
         (ark-apiserver never falls back to an unencrypted connection, unlike libpq's default sslmode=prefer). \
         Fix: {fix}, or enable TLS on the server (ssl = on in postgresql.conf)."
    )
}

/// Takes a first connection from the pool and says, if it fails, whether waiting can help.
/// A client-side failure (no SQLSTATE) under an sslmode that requires TLS is checked with a
/// TLS probe: a server that answers but refuses TLS is a configuration error, not an outage.
pub async fn first_connection(
    pool: &deadpool_postgres::Pool,
    cfg: &DbConfig,
) -> Result<deadpool_postgres::Object, ConnectFailure> {
    let e = match pool.get().await {
        Ok(c) => return Ok(c),
        Err(e) => StoreError::from_pool(e),
    };
    let code = e.code().cloned();
    match (&e, code) {
        (StoreError::Database(f), Some(c))
            if c == SqlState::INVALID_PASSWORD
                || c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION =>
        {
            Err(ConnectFailure::Auth(f.clone()))
        }
        (StoreError::Database(f), Some(c)) if c == SqlState::INVALID_CATALOG_NAME => {
            Err(ConnectFailure::NoDatabase(f.clone()))
        }
        (StoreError::Unavailable(_), None) if cfg.ssl_mode.requires_tls() => {
            if let Some((host, port)) = cfg.tcp_target() {
                if probe_tls(&host, port).await == Some(false) {
                    return Err(ConnectFailure::TlsRefused {
                        host,
                        port,
                        origin: cfg.ssl_mode_origin.clone(),
                    });
                }
            }
            Err(ConnectFailure::Unreachable(e))
        }
        (StoreError::Unavailable(_), _) => Err(ConnectFailure::Unreachable(e)),
        _ => Err(ConnectFailure::Refused(e)),
    }
}

/// Asks the server whether it offers TLS, as a client's SSLRequest does: `Some(true)` for
/// 'S', `Some(false)` for 'N', `None` when it cannot be reached or answers otherwise.
pub async fn probe_tls(host: &str, port: u16) -> Option<bool> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Length 8, then the SSLRequest code 80877103 (1234 << 16 | 5679).
    const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
    let probe = async {
        let mut s = tokio::net::TcpStream::connect((host, port)).await.ok()?;
        s.write_all(&SSL_REQUEST).await.ok()?;
        let mut answer = [0u8; 1];
        s.read_exact(&mut answer).await.ok()?;
        match answer[0] {
            b'S' => Some(true),
            b'N' => Some(false),
            _ => None,
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(5), probe)
        .await
        .ok()
        .flatten()
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot read the PostgreSQL root certificate {path}: {error}")]
    RootCert { path: String, error: String },
    #[error("cannot build the connection pool: {0}")]
    Pool(String),
}

/// A rustls client config for `mode`, or `None` for plain TCP.
pub fn tls_config(
    mode: SslMode,
    root_cert: Option<&std::path::Path>,
) -> Result<Option<rustls::ClientConfig>, ConnectError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ConnectError::Pool(e.to_string()))?;
    let roots = || -> Result<rustls::RootCertStore, ConnectError> {
        let mut store = rustls::RootCertStore::empty();
        match root_cert {
            Some(p) => {
                let err = |e: String| ConnectError::RootCert {
                    path: p.display().to_string(),
                    error: e,
                };
                let pem = std::fs::read(p).map_err(|e| err(e.to_string()))?;
                for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                    store
                        .add(cert.map_err(|e| err(e.to_string()))?)
                        .map_err(|e| err(e.to_string()))?;
                }
                if store.is_empty() {
                    return Err(err("no certificate found in the file".into()));
                }
            }
            None => store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        Ok(store)
    };
    let config = match mode {
        SslMode::Disable => return Ok(None),
        SslMode::Prefer | SslMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
            .with_no_client_auth(),
        SslMode::VerifyFull => builder
            .with_root_certificates(roots()?)
            .with_no_client_auth(),
        SslMode::VerifyCa => {
            let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots()?),
                provider,
            )
            .build()
            .map_err(|e| ConnectError::Pool(e.to_string()))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ChainOnly(inner)))
                .with_no_client_auth()
        }
    };
    Ok(Some(config))
}

/// The pool. Its connections are driven by tasks on the runtime that builds the pool (the
/// server's main runtime), whoever asks for a connection: deadpool would otherwise spawn a
/// connection's task on the runtime of the caller that happened to create it, and an HTTP
/// worker's runtime ends when the worker stops, taking the connection with it under
/// whichever request (or the writer task) holds it then.
pub fn pool(cfg: &DbConfig) -> Result<deadpool_postgres::Pool, ConnectError> {
    let mgr_cfg = deadpool_postgres::ManagerConfig {
        recycling_method: deadpool_postgres::RecyclingMethod::Fast,
    };
    let handle = tokio::runtime::Handle::try_current()
        .map_err(|_| ConnectError::Pool("no async runtime to drive connections on".into()))?;
    let mut pg = cfg.pg.clone();
    let mgr = match tls_config(cfg.ssl_mode, cfg.root_cert.as_deref())? {
        None => {
            pg.ssl_mode(tokio_postgres::config::SslMode::Disable);
            let connect = OnRuntime {
                tls: tokio_postgres::NoTls,
                handle,
            };
            deadpool_postgres::Manager::from_connect(pg, connect, mgr_cfg)
        }
        Some(tls) => {
            pg.ssl_mode(if cfg.ssl_mode == SslMode::Prefer {
                tokio_postgres::config::SslMode::Prefer
            } else {
                tokio_postgres::config::SslMode::Require
            });
            let connect = OnRuntime {
                tls: tokio_postgres_rustls::MakeRustlsConnect::new(tls),
                handle,
            };
            deadpool_postgres::Manager::from_connect(pg, connect, mgr_cfg)
        }
    };
    deadpool_postgres::Pool::builder(mgr)
        .max_size(cfg.pool_size)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .wait_timeout(Some(std::time::Duration::from_secs(10)))
        .create_timeout(Some(std::time::Duration::from_secs(10)))
        .recycle_timeout(Some(std::time::Duration::from_secs(5)))
        .build()
        .map_err(|e| ConnectError::Pool(e.to_string()))
}

/// Connects, and drives each connection, on one runtime (see [`pool`]).
struct OnRuntime<T> {
    tls: T,
    handle: tokio::runtime::Handle,
}

impl<T> deadpool_postgres::Connect for OnRuntime<T>
where
    T: tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket> + Clone + Sync + Send + 'static,
    T::Stream: Sync + Send,
    T::TlsConnect: Sync + Send,
    <T::TlsConnect as tokio_postgres::tls::TlsConnect<tokio_postgres::Socket>>::Future: Send,
{
    fn connect(
        &self,
        pg: &tokio_postgres::Config,
    ) -> futures_util::future::BoxFuture<
        '_,
        Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), tokio_postgres::Error>,
    > {
        let (tls, pg, handle) = (self.tls.clone(), pg.clone(), self.handle.clone());
        Box::pin(async move {
            // The socket is made on the runtime whose reactor will drive it.
            let connected = match handle.spawn(async move { pg.connect(tls).await }).await {
                Ok(r) => r?,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                // Cancelled: the runtime is shutting down, and this caller with it.
                Err(_) => std::future::pending().await,
            };
            let (client, connection) = connected;
            let driver = handle.spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "database connection ended");
                }
            });
            Ok((client, driver))
        })
    }
}

/// `sslmode=require` (and `prefer`): encryption without authentication of the server, as
/// libpq does it.
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `sslmode=verify-ca`: the chain must lead to the given root; the host name is not checked.
#[derive(Debug)]
struct ChainOnly(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(m, c, d)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
