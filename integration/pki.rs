//! Certificates for the authentication tests: CAs and client certificates, made with rcgen
//! in the test, and what clients need to present them.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

pub struct Ca {
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A client certificate and its key, PEM.
pub struct Client {
    pub cert_pem: String,
    pub key_pem: String,
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

    /// A ClientAuth certificate with this common name and (at most one) organization.
    pub fn client(&self, cn: &str, org: Option<&str>) -> Client {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        if let Some(o) = org {
            params.distinguished_name.push(DnType::OrganizationName, o);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Client {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// Writes the bundle to `dir/name` and returns the path.
    pub fn write(&self, dir: &std::path::Path, name: &str) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, &self.pem).unwrap();
        p
    }
}

impl Client {
    /// An HTTPS client presenting this certificate (the server's own is not checked).
    pub fn http(&self) -> reqwest::Client {
        let identity =
            reqwest::Identity::from_pem(format!("{}{}", self.cert_pem, self.key_pem).as_bytes())
                .unwrap();
        reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .identity(identity)
            .build()
            .unwrap()
    }

    /// A kubeconfig for kubectl that presents this certificate to `server`.
    pub fn kubeconfig(&self, server: &str) -> String {
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: t\n  cluster:\n    server: {server}\n    insecure-skip-tls-verify: true\n\
             users:\n- name: t\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n\
             contexts:\n- name: t\n  context:\n    cluster: t\n    user: t\n    namespace: default\ncurrent-context: t\n",
            b64(&self.cert_pem),
            b64(&self.key_pem)
        )
    }
}
