//! The follower's side of the internal stream's TLS: the leader is trusted by the SHA-256
//! of its serving certificate as published in its `ark_replicas` row, not by a CA and a
//! name. The serving certificate names the Service (the aggregator's view), not the pod
//! IPs replicas reach each other at, and whoever can write that row can read the database
//! anyway. Signatures are still verified, so only the holder of the key can answer.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, Error, SignatureScheme};

#[derive(Debug)]
pub struct PinnedCert {
    sha256: String,
    provider: Arc<CryptoProvider>,
}

impl PinnedCert {
    pub fn new(sha256: &str) -> Arc<PinnedCert> {
        Arc::new(PinnedCert {
            sha256: sha256.to_ascii_lowercase(),
            provider: Arc::new(rustls::crypto::ring::default_provider()),
        })
    }

    /// A client configuration that trusts only the pinned certificate.
    pub fn client_config(self: &Arc<Self>) -> Result<rustls::ClientConfig, Error> {
        let mut c = rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(self.clone())
            .with_no_client_auth();
        c.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(c)
    }
}

impl ServerCertVerifier for PinnedCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        if super::cert_sha256(end_entity.as_ref()) == self.sha256 {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(Error::General(
                "the peer's certificate is not the one its ark_replicas row names".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
