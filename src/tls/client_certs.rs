//! Client certificates for `ark-apiserver dev`: a CA made at every start and the
//! certificate it issues for the kubeconfig, so the developer loop authenticates with
//! kube's client-certificate rules (CN the user, O the group) and needs no kube-apiserver:
//! members of `system:masters` are allowed without a review.
//!
//! The CA lives only in memory; nothing outlives the process but the kubeconfig it wrote,
//! which a new start replaces.

use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

use super::TlsError;

/// The user the dev kubeconfig authenticates as.
pub const DEV_USER: &str = "dev";

/// How long a dev certificate is valid: longer than any dev session, short enough that a
/// kubeconfig copied elsewhere stops working.
const VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// Tolerated clock skew: the certificate is valid from a little before it was made.
const BACKDATE: Duration = Duration::from_secs(5 * 60);

/// A CA that signs client certificates. Its certificate (`cert_pem`) is what the server
/// trusts for client authentication; its key never leaves the process.
pub struct ClientCa {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl ClientCa {
    /// The CA certificate, PEM: the server's client CA.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }
}

impl std::fmt::Debug for ClientCa {
    // The signing key stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCa")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

/// A client certificate and its private key, PEM, as a kubeconfig's
/// `client-certificate-data` and `client-key-data` carry them.
#[derive(Clone)]
pub struct ClientCert {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for ClientCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCert")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

fn gen(e: rcgen::Error) -> TlsError {
    TlsError::Generate(e.to_string())
}

/// Validity from a little before now for [`VALIDITY`].
fn validity(params: &mut CertificateParams) {
    let now = SystemTime::now();
    params.not_before = now.checked_sub(BACKDATE).unwrap_or(now).into();
    params.not_after = (now + VALIDITY).into();
}

/// A new CA for the dev server's client certificates.
pub fn dev_client_ca() -> Result<ClientCa, TlsError> {
    let key = KeyPair::generate().map_err(gen)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    // A name of this run's own, as kube names the CAs it generates (`<name>-ca@<unix time>`):
    // a certificate from an earlier run then fails as signed by an unknown CA, rather than
    // matching this CA by name and failing on its signature.
    let since_epoch = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    dn.push(
        DnType::CommonName,
        format!("ark-apiserver-dev-client-ca@{}", since_epoch.as_secs()),
    );
    params.distinguished_name = dn;
    // It signs leaf certificates only.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params);
    let cert = params.self_signed(&key).map_err(gen)?;
    Ok(ClientCa {
        cert_pem: cert.pem(),
        issuer: Issuer::new(params, key),
    })
}

/// A client certificate for `user` (the subject's CN), in `group` (its O) if given, signed
/// by `ca`, for client authentication only.
///
/// One group at most: rcgen writes one value per attribute type in a subject, and kube reads
/// the groups from the O values. The dev loop needs only `system:masters`.
pub fn issue_client_cert(
    ca: &ClientCa,
    user: &str,
    group: Option<&str>,
) -> Result<ClientCert, TlsError> {
    let key = KeyPair::generate().map_err(gen)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, user);
    if let Some(g) = group {
        dn.push(DnType::OrganizationName, g);
    }
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    // kube's client-certificate authenticator requires the ClientAuth usage.
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params);
    let cert = params.signed_by(&key, &ca.issuer).map_err(gen)?;
    Ok(ClientCert {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::user::MASTERS;
    use rustls::pki_types::{CertificateDer, UnixTime};
    use rustls::server::WebPkiClientVerifier;
    use std::sync::Arc;

    fn der(pem: &str) -> CertificateDer<'static> {
        rustls_pemfile::certs(&mut pem.as_bytes())
            .next()
            .unwrap()
            .unwrap()
    }

    /// What a server trusting `ca` for client authentication says of `cert`, with webpki's
    /// chain, validity and ClientAuth usage checks, as the listener would run them.
    fn verify(ca: &str, cert: &str) -> Result<(), rustls::Error> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der(ca)).unwrap();
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), super::super::provider())
                .allow_unauthenticated()
                .build()
                .unwrap();
        verifier
            .verify_client_cert(&der(cert), &[], UnixTime::now())
            .map(|_| ())
    }

    fn subject(pem: &str) -> (Vec<String>, Vec<String>) {
        let d = der(pem);
        let (_, x) = x509_parser::parse_x509_certificate(&d).unwrap();
        let s = x.subject();
        let strs = |it: Vec<&x509_parser::x509::AttributeTypeAndValue>| {
            it.into_iter()
                .map(|a| a.as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        };
        (
            strs(s.iter_common_name().collect()),
            strs(s.iter_organization().collect()),
        )
    }

    #[test]
    fn the_dev_client_certificate_verifies_against_its_ca_for_client_auth() {
        let ca = dev_client_ca().unwrap();
        let client = issue_client_cert(&ca, DEV_USER, Some(MASTERS)).unwrap();
        verify(ca.cert_pem(), &client.cert_pem).unwrap();
        assert_eq!(
            subject(&client.cert_pem),
            (vec!["dev".to_string()], vec!["system:masters".to_string()])
        );
    }

    #[test]
    fn a_certificate_from_another_ca_is_not_trusted() {
        let (ca, other) = (dev_client_ca().unwrap(), dev_client_ca().unwrap());
        let client = issue_client_cert(&other, DEV_USER, Some(MASTERS)).unwrap();
        // Unknown issuer, or a bad signature when both CAs were made in the same second and
        // so share a name: refused either way.
        let err = verify(ca.cert_pem(), &client.cert_pem).unwrap_err();
        assert!(
            matches!(
                err,
                rustls::Error::InvalidCertificate(
                    rustls::CertificateError::UnknownIssuer
                        | rustls::CertificateError::BadSignature
                )
            ),
            "{err:?}"
        );
    }

    #[test]
    fn a_server_certificate_is_refused_for_client_auth() {
        // Signed by the right CA but for serving: webpki checks the ClientAuth usage.
        let ca = dev_client_ca().unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &ca.issuer).unwrap();
        assert!(verify(ca.cert_pem(), &cert.pem()).is_err());
    }

    #[test]
    fn the_ca_is_a_ca_and_the_client_certificate_is_not() {
        let ca = dev_client_ca().unwrap();
        let client = issue_client_cert(&ca, "alice", None).unwrap();
        let ca_der = der(ca.cert_pem());
        let (_, ca_x) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
        assert!(ca_x.is_ca());
        let client_der = der(&client.cert_pem);
        let (_, c) = x509_parser::parse_x509_certificate(&client_der).unwrap();
        assert!(!c.is_ca());
        assert_eq!(c.issuer(), ca_x.subject());
        assert_eq!(subject(&client.cert_pem), (vec!["alice".into()], vec![]));
    }

    #[test]
    fn the_client_key_is_the_certificates_key() {
        let ca = dev_client_ca().unwrap();
        let client = issue_client_cert(&ca, DEV_USER, Some(MASTERS)).unwrap();
        super::super::certified_key(
            client.cert_pem.as_bytes(),
            client.key_pem.as_bytes(),
            "client.crt",
            "client.key",
        )
        .unwrap();
    }

    #[test]
    fn debug_output_never_shows_a_private_key() {
        let ca = dev_client_ca().unwrap();
        let client = issue_client_cert(&ca, DEV_USER, None).unwrap();
        for shown in [format!("{ca:?}"), format!("{client:?}")] {
            assert!(!shown.contains("PRIVATE KEY"), "{shown}");
        }
    }
}
