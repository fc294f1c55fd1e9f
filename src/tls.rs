//! The serving certificate: the operator's files, or a self-signed one made at start.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {error}")]
    Read { path: String, error: String },
    #[error("{path} holds no PEM {what}")]
    Empty { path: String, what: &'static str },
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(String),
    #[error("the certificate and key do not form a usable TLS configuration: {0}")]
    Config(String),
}

/// A self-signed certificate for `hosts` (DNS names or IP addresses), as PEM (cert, key).
pub fn self_signed(hosts: &[String]) -> Result<(String, String), TlsError> {
    let key = rcgen::KeyPair::generate().map_err(|e| TlsError::Generate(e.to_string()))?;
    let params = rcgen::CertificateParams::new(hosts.to_vec())
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    Ok((cert.pem(), key.serialize_pem()))
}

pub fn server_config_from_files(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, TlsError> {
    let read = |p: &Path| {
        std::fs::read(p).map_err(|e| TlsError::Read {
            path: p.display().to_string(),
            error: e.to_string(),
        })
    };
    server_config(
        &read(cert)?,
        &read(key)?,
        &cert.display().to_string(),
        &key.display().to_string(),
    )
}

pub fn server_config(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert_name: &str,
    key_name: &str,
) -> Result<rustls::ServerConfig, TlsError> {
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut &cert_pem[..])
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Read {
            path: cert_name.into(),
            error: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            path: cert_name.into(),
            what: "certificate",
        });
    }
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut &key_pem[..])
        .map_err(|e| TlsError::Read {
            path: key_name.into(),
            error: e.to_string(),
        })?
        .ok_or_else(|| TlsError::Empty {
            path: key_name.into(),
            what: "private key",
        })?;
    // An explicit provider: with two rustls crypto providers linked in, the implicit
    // default would panic.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    // HTTP/2 first, as kube-apiserver offers it: client-go multiplexes an informer's many
    // watches over one connection, so thousands of watches need not mean thousands of
    // sockets. HTTP/1.1 stays for clients that do not speak HTTP/2 (watches are then
    // chunked responses).
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}
