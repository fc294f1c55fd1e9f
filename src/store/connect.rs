//! Connections to PostgreSQL: libpq-style `sslmode` over rustls, and the pool.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// libpq's `sslmode`, as far as a server that must not leak credentials cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    /// Encrypt, but accept any certificate (libpq's `require` without a root cert).
    Require,
    /// Verify the chain against the root certificate, not the host name.
    VerifyCa,
    /// Verify the chain and the host name.
    VerifyFull,
}

impl std::str::FromStr for SslMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "disable" => Ok(Self::Disable),
            // prefer/allow cannot be expressed safely with a fixed connector; treat as require.
            "require" | "prefer" | "allow" => Ok(Self::Require),
            "verify-ca" => Ok(Self::VerifyCa),
            "verify-full" => Ok(Self::VerifyFull),
            other => Err(format!(
                "invalid sslmode {other:?}: expected disable, require, verify-ca or verify-full"
            )),
        }
    }
}

/// Everything needed to reach the database.
#[derive(Debug, Clone)]
pub struct DbConfig {
    pub pg: tokio_postgres::Config,
    pub ssl_mode: SslMode,
    pub root_cert: Option<std::path::PathBuf>,
    pub pool_size: usize,
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
        SslMode::Require => builder
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

pub fn pool(cfg: &DbConfig) -> Result<deadpool_postgres::Pool, ConnectError> {
    let mgr_cfg = deadpool_postgres::ManagerConfig {
        recycling_method: deadpool_postgres::RecyclingMethod::Fast,
    };
    let mut pg = cfg.pg.clone();
    let mgr = match tls_config(cfg.ssl_mode, cfg.root_cert.as_deref())? {
        None => {
            pg.ssl_mode(tokio_postgres::config::SslMode::Disable);
            deadpool_postgres::Manager::from_config(pg, tokio_postgres::NoTls, mgr_cfg)
        }
        Some(tls) => {
            pg.ssl_mode(tokio_postgres::config::SslMode::Require);
            deadpool_postgres::Manager::from_config(
                pg,
                tokio_postgres_rustls::MakeRustlsConnect::new(tls),
                mgr_cfg,
            )
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

/// `sslmode=require`: encryption without authentication of the server, as libpq does it.
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
