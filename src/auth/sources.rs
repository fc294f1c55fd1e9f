//! Where the CAs and front-proxy header names come from: flags over the
//! `extension-apiserver-authentication` ConfigMap, key by key, as k8s.io/apiserver merges
//! them. Pure: PEM text and lists in, [`AuthnSources`] out.

use super::authn::AuthnSources;
use super::requestheader::RequestHeaderConfig;
use super::x509::{CaPool, X509Error};

/// One place's settings (the ConfigMap's, or the flags'); `None` means "not set here".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceSettings {
    /// (PEM, where it came from: a file name or `configmap/<key>`)
    pub client_ca: Option<(String, String)>,
    pub requestheader_ca: Option<(String, String)>,
    pub allowed_names: Option<Vec<String>>,
    pub username_headers: Option<Vec<String>>,
    pub uid_headers: Option<Vec<String>>,
    pub group_headers: Option<Vec<String>>,
    pub extra_headers_prefix: Option<Vec<String>>,
}

impl SourceSettings {
    /// `self` over `below`, setting by setting.
    pub fn over(self, below: SourceSettings) -> SourceSettings {
        SourceSettings {
            client_ca: self.client_ca.or(below.client_ca),
            requestheader_ca: self.requestheader_ca.or(below.requestheader_ca),
            allowed_names: self.allowed_names.or(below.allowed_names),
            username_headers: self.username_headers.or(below.username_headers),
            uid_headers: self.uid_headers.or(below.uid_headers),
            group_headers: self.group_headers.or(below.group_headers),
            extra_headers_prefix: self.extra_headers_prefix.or(below.extra_headers_prefix),
        }
    }

    /// The sources in force. Front-proxy authentication exists only with its CA; without
    /// header names it uses kube's defaults (X-Remote-User, ...).
    pub fn build(&self) -> Result<AuthnSources, X509Error> {
        let pool = |s: &Option<(String, String)>| {
            s.as_ref()
                .filter(|(pem, _)| !pem.trim().is_empty())
                .map(|(pem, name)| CaPool::from_pem(pem, name))
                .transpose()
        };
        let defaults = RequestHeaderConfig::default();
        let requestheader = pool(&self.requestheader_ca)?.map(|ca| {
            let or = |v: &Option<Vec<String>>, d: &Vec<String>| {
                v.clone()
                    .filter(|v| !v.is_empty())
                    .unwrap_or_else(|| d.clone())
            };
            let cfg = RequestHeaderConfig {
                allowed_names: self.allowed_names.clone().unwrap_or_default(),
                username_headers: or(&self.username_headers, &defaults.username_headers),
                uid_headers: or(&self.uid_headers, &defaults.uid_headers),
                group_headers: or(&self.group_headers, &defaults.group_headers),
                extra_prefixes: or(&self.extra_headers_prefix, &defaults.extra_prefixes),
            };
            (ca, cfg)
        });
        Ok(AuthnSources {
            client_ca: pool(&self.client_ca)?,
            requestheader,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::x509::testing::Ca;
    use super::*;

    #[test]
    fn flags_win_over_the_configmap_key_by_key() {
        let cm_ca = Ca::new("cm-client-ca");
        let flag_ca = Ca::new("flag-client-ca");
        let proxy = Ca::new("proxy");
        let configmap = SourceSettings {
            client_ca: Some((cm_ca.pem.clone(), "configmap/client-ca-file".into())),
            requestheader_ca: Some((
                proxy.pem.clone(),
                "configmap/requestheader-client-ca-file".into(),
            )),
            allowed_names: Some(vec!["front-proxy-client".into()]),
            username_headers: Some(vec!["X-Remote-User".into()]),
            ..Default::default()
        };
        let flags = SourceSettings {
            client_ca: Some((flag_ca.pem.clone(), "--client-ca-file".into())),
            username_headers: Some(vec!["X-Proxy-User".into()]),
            ..Default::default()
        };
        let s = flags.over(configmap).build().unwrap();
        let client = s.client_ca.unwrap();
        assert!(client.verify(&[flag_ca.client("a", &[])]).is_ok());
        assert!(client.verify(&[cm_ca.client("a", &[])]).is_err());
        let (_, rh) = s.requestheader.unwrap();
        assert_eq!(rh.username_headers, ["X-Proxy-User"]);
        assert_eq!(rh.allowed_names, ["front-proxy-client"]);
        assert_eq!(rh.group_headers, ["X-Remote-Group"], "kube's default");
    }

    #[test]
    fn no_requestheader_ca_means_no_front_proxy() {
        let s = SourceSettings {
            username_headers: Some(vec!["X-Remote-User".into()]),
            ..Default::default()
        }
        .build()
        .unwrap();
        assert!(s.requestheader.is_none() && s.client_ca.is_none());
    }
}
