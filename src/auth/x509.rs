//! Client certificates: CA bundles, chain verification for client authentication, and the
//! subject a verified certificate names.
//!
//! The TLS layer only *requests* a client certificate and checks that the client holds its
//! key (see [`RequestClientCert`]); which CA a chain leads to is decided here, per request,
//! against the bundles in force at that moment. That is what lets a CA rotated in the
//! `extension-apiserver-authentication` ConfigMap take effect without a restart, and what
//! tells a front proxy's certificate (requestheader CA) from a user's (client CA).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use sha2::{Digest, Sha256};

/// Why a chain is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum X509Error {
    #[error("the CA bundle {source_name} has no certificate")]
    EmptyBundle { source_name: String },
    #[error("the CA bundle {source_name} cannot be read: {why}")]
    BadBundle { source_name: String, why: String },
    #[error("verifying certificate failed: {0}")]
    Verify(String),
    #[error("the client certificate cannot be parsed: {0}")]
    Parse(String),
}

/// A CA bundle in force: the certificates a chain may lead to.
#[derive(Clone)]
pub struct CaPool {
    /// The PEM it was read from, to tell a changed bundle from the same one.
    pem: String,
    verifier: Arc<dyn ClientCertVerifier>,
    /// Chains this bundle verified recently, by the SHA-256 of their DER: a connection
    /// sends its chain with every request, and verifying it (a signature check) cost
    /// more than the rest of a cached GET. A rotated bundle is a new pool with an empty
    /// cache, so a removed CA takes effect at once.
    verified: Arc<Mutex<Verified>>,
}

/// Verified chains by their hash: the subject, and until when it is trusted.
type Verified = HashMap<[u8; 32], (Subject, Instant)>;

/// How long a verified chain is trusted without verifying it again (never past the
/// leaf's notAfter).
const VERIFIED_TTL: Duration = Duration::from_secs(10);
/// Chains remembered at most; the cache starts over when full.
const VERIFIED_MAX: usize = 4096;

impl std::fmt::Debug for CaPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaPool")
            .field("pem_bytes", &self.pem.len())
            .finish()
    }
}

impl PartialEq for CaPool {
    fn eq(&self, other: &Self) -> bool {
        self.pem == other.pem
    }
}

impl CaPool {
    /// From a PEM bundle; `source_name` says where it came from, for messages.
    pub fn from_pem(pem: &str, source_name: &str) -> Result<CaPool, X509Error> {
        let bad = |why: String| X509Error::BadBundle {
            source_name: source_name.to_string(),
            why,
        };
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut pem.as_bytes()) {
            let cert = cert.map_err(|e| bad(e.to_string()))?;
            roots.add(cert).map_err(|e| bad(e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(X509Error::EmptyBundle {
                source_name: source_name.to_string(),
            });
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .map_err(|e| bad(e.to_string()))?;
        Ok(CaPool {
            pem: pem.to_string(),
            verifier,
            verified: Arc::default(),
        })
    }

    /// Verifies `chain` (leaf first) for client authentication: it must lead to this
    /// bundle, be valid now, and allow the ClientAuth extended key usage.
    pub fn verify(&self, chain: &[CertificateDer<'_>]) -> Result<Subject, X509Error> {
        let (leaf, intermediates) = chain
            .split_first()
            .ok_or_else(|| X509Error::Verify("no certificate".into()))?;
        let mut h = Sha256::new();
        for c in chain {
            h.update((c.as_ref().len() as u64).to_be_bytes());
            h.update(c.as_ref());
        }
        let key: [u8; 32] = h.finalize().into();
        let now = Instant::now();
        {
            let cache = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some((subject, until)) = cache.get(&key) {
                if now < *until {
                    return Ok(subject.clone());
                }
            }
        }
        self.verifier
            .verify_client_cert(leaf, intermediates, UnixTime::now())
            .map_err(|e| X509Error::Verify(e.to_string()))?;
        let (subject, not_after) = Subject::with_expiry(leaf)?;
        let left = not_after
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        let until = now + VERIFIED_TTL.min(left);
        let mut cache = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= VERIFIED_MAX {
            cache.clear();
        }
        cache.insert(key, (subject.clone(), until));
        Ok(subject)
    }
}

/// The subject of a verified certificate: its common name and organizations, which kube
/// takes as the user name and groups.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Subject {
    pub common_name: String,
    pub organizations: Vec<String>,
}

impl Subject {
    pub fn of(cert: &CertificateDer<'_>) -> Result<Subject, X509Error> {
        Self::with_expiry(cert).map(|(s, _)| s)
    }

    /// The subject and the certificate's notAfter.
    fn with_expiry(cert: &CertificateDer<'_>) -> Result<(Subject, SystemTime), X509Error> {
        let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
            .map_err(|e| X509Error::Parse(e.to_string()))?;
        let secs = parsed.validity().not_after.timestamp().max(0) as u64;
        let not_after = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
        let subject = parsed.subject();
        let common_name = subject
            .iter_common_name()
            .next()
            .and_then(|a| a.as_str().ok())
            .unwrap_or_default()
            .to_string();
        let organizations = subject
            .iter_organization()
            .filter_map(|a| a.as_str().ok().map(str::to_string))
            .collect();
        Ok((
            Subject {
                common_name,
                organizations,
            },
            not_after,
        ))
    }
}

/// The TLS side: asks every client for a certificate, accepts connections without one,
/// and accepts any chain whose key the client proves it holds (the handshake signature is
/// verified). Which CA the chain leads to is checked per request by [`CaPool::verify`].
#[derive(Debug)]
pub struct RequestClientCert {
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl RequestClientCert {
    pub fn new() -> Arc<Self> {
        Arc::new(RequestClientCert {
            provider: Arc::new(rustls::crypto::ring::default_provider()),
        })
    }
}

impl ClientCertVerifier for RequestClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    /// No CA hints: Go clients (kubectl, the aggregator) then offer their certificate
    /// whatever CA issued it, and the bundles can change without a new handshake config.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
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
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
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

#[cfg(test)]
pub(crate) mod testing {
    //! Certificates for tests: a CA and leaves it signs.
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
        IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    use rustls::pki_types::CertificateDer;

    pub struct Ca {
        pub pem: String,
        issuer: Issuer<'static, KeyPair>,
    }

    impl Ca {
        pub fn new(name: &str) -> Ca {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            params.distinguished_name = DistinguishedName::new();
            params.distinguished_name.push(DnType::CommonName, name);
            let cert = params.self_signed(&key).unwrap();
            Ca {
                pem: cert.pem(),
                issuer: Issuer::new(params, key),
            }
        }

        /// A client certificate (ClientAuth usage unless `usage` says otherwise).
        pub fn leaf(
            &self,
            cn: &str,
            orgs: &[&str],
            usage: ExtendedKeyUsagePurpose,
        ) -> CertificateDer<'static> {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.distinguished_name = DistinguishedName::new();
            params.distinguished_name.push(DnType::CommonName, cn);
            for o in orgs {
                params.distinguished_name.push(DnType::OrganizationName, *o);
            }
            params.extended_key_usages = vec![usage];
            params.signed_by(&key, &self.issuer).unwrap().der().clone()
        }

        pub fn client(&self, cn: &str, orgs: &[&str]) -> CertificateDer<'static> {
            self.leaf(cn, orgs, ExtendedKeyUsagePurpose::ClientAuth)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::Ca;
    use super::*;

    #[test]
    fn a_client_certificate_of_the_bundle_names_its_subject() {
        let ca = Ca::new("client-ca");
        let pool = CaPool::from_pem(&ca.pem, "client-ca-file").unwrap();
        // (rcgen keeps one value per attribute type, so one organization here.)
        let leaf = ca.client("alice", &["dev"]);
        let s = pool.verify(&[leaf]).unwrap();
        assert_eq!(s.common_name, "alice");
        assert_eq!(s.organizations, ["dev"]);
    }

    #[test]
    fn a_verified_chain_is_remembered_by_its_pool_only() {
        let ca = Ca::new("client-ca");
        let pool = CaPool::from_pem(&ca.pem, "client-ca-file").unwrap();
        let leaf = ca.client("alice", &["dev"]);
        let first = pool.verify(std::slice::from_ref(&leaf)).unwrap();
        let again = pool.verify(std::slice::from_ref(&leaf)).unwrap();
        assert_eq!(first, again);
        assert_eq!(pool.verified.lock().unwrap().len(), 1);
        // A clone (the same bundle in force) shares what was verified.
        assert_eq!(pool.clone().verified.lock().unwrap().len(), 1);
        // A rotated bundle without that CA is a new pool: nothing carries over.
        let rotated = CaPool::from_pem(&Ca::new("new-ca").pem, "client-ca-file").unwrap();
        assert!(rotated.verify(&[leaf]).is_err());
        // A refused chain is not remembered.
        assert!(rotated.verified.lock().unwrap().is_empty());
    }

    #[test]
    fn a_certificate_of_another_ca_or_without_client_auth_is_refused() {
        let ca = Ca::new("client-ca");
        let other = Ca::new("other");
        let pool = CaPool::from_pem(&ca.pem, "client-ca-file").unwrap();
        assert!(matches!(
            pool.verify(&[other.client("mallory", &[])]),
            Err(X509Error::Verify(_))
        ));
        let server_only = ca.leaf("server", &[], rcgen::ExtendedKeyUsagePurpose::ServerAuth);
        assert!(matches!(
            pool.verify(&[server_only]),
            Err(X509Error::Verify(_))
        ));
    }

    #[test]
    fn an_empty_or_broken_bundle_is_an_error_naming_its_source() {
        let e = CaPool::from_pem("", "requestheader-client-ca-file").unwrap_err();
        assert_eq!(
            e.to_string(),
            "the CA bundle requestheader-client-ca-file has no certificate"
        );
        assert!(CaPool::from_pem(
            "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
            "x"
        )
        .is_err());
    }
}
