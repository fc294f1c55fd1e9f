//! The ConfigMap `kube-system/extension-apiserver-authentication`, which the
//! kube-apiserver writes for aggregated servers: the CA of client certificates, and the CA,
//! allowed names and headers of its front proxy (requestheader).
//!
//! [`AuthenticationConfig::update`] reads its data into a typed value (pure).
//! [`AuthenticationConfigWatch`] keeps that value current the way kube's
//! `ConfigMapCAController` and `RequestHeaderAuthRequestController` do: one GET at start
//! (whose failure the caller sees, with the RBAC fix named), then a watch of that one
//! object and a re-read whenever the watch ends (its timeout is the resync interval, a
//! minute by default), so a CA rotation takes effect without a restart.
//!
//! Like kube, a part that does not parse keeps its last good value, and so does a CA that
//! disappears or a ConfigMap that is deleted: a broken write to the ConfigMap must not take
//! authentication away from a running server.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, WatchEvent, WatchParams};
use rustls::pki_types::CertificateDer;
use tokio::sync::watch;

use super::connect::classify_error;
use super::{Endpoint, KubeApiError};

pub const NAMESPACE: &str = "kube-system";
pub const NAME: &str = "extension-apiserver-authentication";

/// The ConfigMap's keys, as the kube-apiserver writes them.
pub mod keys {
    pub const CLIENT_CA: &str = "client-ca-file";
    pub const REQUESTHEADER_CLIENT_CA: &str = "requestheader-client-ca-file";
    pub const REQUESTHEADER_ALLOWED_NAMES: &str = "requestheader-allowed-names";
    pub const REQUESTHEADER_USERNAME_HEADERS: &str = "requestheader-username-headers";
    pub const REQUESTHEADER_UID_HEADERS: &str = "requestheader-uid-headers";
    pub const REQUESTHEADER_GROUP_HEADERS: &str = "requestheader-group-headers";
    pub const REQUESTHEADER_EXTRA_HEADERS_PREFIX: &str = "requestheader-extra-headers-prefix";
}

/// What the ConfigMap says about authenticating requests.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthenticationConfig {
    /// `client-ca-file`: verifies client certificates (CN the user, O the groups).
    pub client_ca: Option<CaBundle>,
    pub request_header: RequestHeaderConfig,
}

/// The front proxy's settings. A request's user headers are trusted only from a client
/// certificate that [`client_ca`](Self::client_ca) verifies and, when
/// [`allowed_names`](Self::allowed_names) is not empty, whose CN it lists.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequestHeaderConfig {
    /// `requestheader-client-ca-file`.
    pub client_ca: Option<CaBundle>,
    pub allowed_names: Vec<String>,
    pub username_headers: Vec<String>,
    pub uid_headers: Vec<String>,
    pub group_headers: Vec<String>,
    pub extra_headers_prefix: Vec<String>,
}

/// A PEM bundle of CA certificates, each checked to parse as a trust anchor.
#[derive(Clone)]
pub struct CaBundle {
    pem: String,
    certificates: Vec<CertificateDer<'static>>,
}

impl CaBundle {
    /// Every certificate in `pem`; at least one, and each usable as a root.
    pub fn parse(pem: &str) -> Result<CaBundle, String> {
        let certificates: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("not a PEM certificate bundle: {e}"))?;
        if certificates.is_empty() {
            return Err("no certificate in the PEM bundle".into());
        }
        let mut roots = rustls::RootCertStore::empty();
        for (i, c) in certificates.iter().enumerate() {
            roots
                .add(c.clone())
                .map_err(|e| format!("certificate {} of the bundle: {e}", i + 1))?;
        }
        Ok(CaBundle {
            pem: pem.to_string(),
            certificates,
        })
    }

    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// DER, in the bundle's order.
    pub fn certificates(&self) -> &[CertificateDer<'static>] {
        &self.certificates
    }

    /// The roots for a rustls client-certificate verifier.
    pub fn root_store(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        // Each was added once already in `parse`.
        let (_added, _ignored) = roots.add_parsable_certificates(self.certificates.iter().cloned());
        roots
    }
}

impl PartialEq for CaBundle {
    fn eq(&self, other: &Self) -> bool {
        self.pem == other.pem
    }
}

impl Eq for CaBundle {}

impl fmt::Debug for CaBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CaBundle({} certificates)", self.certificates.len())
    }
}

impl AuthenticationConfig {
    /// This value updated from the ConfigMap's `data`, and what in it did not parse.
    ///
    /// Three parts update independently, as kube's three controllers do: the client CA,
    /// the requestheader CA (each kept when its key is empty or does not parse) and the
    /// requestheader lists (all kept when one does not parse; a missing key is an empty
    /// list).
    pub fn update(
        &self,
        data: &BTreeMap<String, String>,
    ) -> (AuthenticationConfig, Vec<KubeApiError>) {
        let mut errors = Vec::new();
        let mut ca = |key: &'static str, previous: &Option<CaBundle>| -> Option<CaBundle> {
            match data.get(key).filter(|v| !v.is_empty()) {
                None => previous.clone(),
                Some(pem) => match CaBundle::parse(pem) {
                    Ok(bundle) => Some(bundle),
                    Err(detail) => {
                        errors.push(KubeApiError::InvalidConfigMap { key, detail });
                        previous.clone()
                    }
                },
            }
        };
        let client_ca = ca(keys::CLIENT_CA, &self.client_ca);
        let requestheader_ca = ca(
            keys::REQUESTHEADER_CLIENT_CA,
            &self.request_header.client_ca,
        );
        let mut request_header = match request_header_lists(data) {
            Ok(lists) => lists,
            Err(e) => {
                errors.push(e);
                self.request_header.clone()
            }
        };
        request_header.client_ca = requestheader_ca;
        (
            AuthenticationConfig {
                client_ca,
                request_header,
            },
            errors,
        )
    }
}

fn request_header_lists(
    data: &BTreeMap<String, String>,
) -> Result<RequestHeaderConfig, KubeApiError> {
    let list = |key: &'static str| -> Result<Vec<String>, KubeApiError> {
        match data.get(key).filter(|v| !v.is_empty()) {
            None => Ok(Vec::new()),
            Some(json) => serde_json::from_str(json).map_err(|e| KubeApiError::InvalidConfigMap {
                key,
                detail: format!("expected a JSON array of strings: {e}"),
            }),
        }
    };
    Ok(RequestHeaderConfig {
        client_ca: None,
        allowed_names: list(keys::REQUESTHEADER_ALLOWED_NAMES)?,
        username_headers: list(keys::REQUESTHEADER_USERNAME_HEADERS)?,
        uid_headers: list(keys::REQUESTHEADER_UID_HEADERS)?,
        group_headers: list(keys::REQUESTHEADER_GROUP_HEADERS)?,
        extra_headers_prefix: list(keys::REQUESTHEADER_EXTRA_HEADERS_PREFIX)?,
    })
}

/// The current [`AuthenticationConfig`], kept up to date by a background task that ends
/// when this is dropped.
pub struct AuthenticationConfigWatch {
    current: watch::Receiver<Arc<AuthenticationConfig>>,
    task: tokio::task::JoinHandle<()>,
}

/// How long to wait after a failed read or watch, doubling up to the cap.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_CAP: Duration = Duration::from_secs(30);
/// kube-rs and the kube-apiserver both accept watch timeouts below 5 minutes.
const MAX_WATCH_SECONDS: u64 = 290;

impl AuthenticationConfigWatch {
    /// Reads the ConfigMap once and starts keeping it current. The first read's failure is
    /// returned (a missing RoleBinding reads as [`KubeApiError::Forbidden`], whose message
    /// names it); a ConfigMap that does not exist gives an empty configuration, as in kube.
    /// `timeout` bounds each read; the ConfigMap is re-read at least every `resync`.
    pub async fn start(
        client: kube::Client,
        timeout: Duration,
        resync: Duration,
    ) -> Result<AuthenticationConfigWatch, KubeApiError> {
        let api: Api<ConfigMap> = Api::namespaced(client, NAMESPACE);
        let first = get(&api, timeout).await?;
        let (tx, rx) = watch::channel(Arc::new(AuthenticationConfig::default()));
        if first.is_none() {
            tracing::warn!(
                "configmap {NAMESPACE}/{NAME} does not exist: no client or front-proxy CA is trusted until it does"
            );
        }
        apply(&tx, first.as_ref());
        let task = tokio::spawn(keep_current(api, tx, timeout, resync));
        Ok(AuthenticationConfigWatch { current: rx, task })
    }

    /// The configuration now.
    pub fn current(&self) -> Arc<AuthenticationConfig> {
        self.current.borrow().clone()
    }

    /// A receiver that sees every change (`changed().await`).
    pub fn subscribe(&self) -> watch::Receiver<Arc<AuthenticationConfig>> {
        self.current.clone()
    }
}

impl Drop for AuthenticationConfigWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn get(api: &Api<ConfigMap>, timeout: Duration) -> Result<Option<ConfigMap>, KubeApiError> {
    match tokio::time::timeout(timeout, api.get_opt(NAME)).await {
        Ok(result) => result.map_err(|e| classify_error(Endpoint::AuthenticationConfigMap, e)),
        Err(_) => Err(unanswered(timeout)),
    }
}

fn unanswered(timeout: Duration) -> KubeApiError {
    KubeApiError::Unreachable {
        endpoint: Endpoint::AuthenticationConfigMap,
        detail: format!("no answer within {}s", timeout.as_secs_f64()),
    }
}

fn field_selector() -> String {
    format!("metadata.name={NAME}")
}

/// Publishes what `cm` says, keeping the last value of whatever it lacks or gets wrong.
fn apply(tx: &watch::Sender<Arc<AuthenticationConfig>>, cm: Option<&ConfigMap>) {
    let Some(cm) = cm else {
        return;
    };
    let empty = BTreeMap::new();
    let data = cm.data.as_ref().unwrap_or(&empty);
    let (next, errors) = tx.borrow().update(data);
    for error in errors {
        tracing::error!(%error, "keeping the last good value");
    }
    tx.send_if_modified(|current| {
        if **current == next {
            return false;
        }
        tracing::info!(
            "loaded a new authentication configuration from configmap {NAMESPACE}/{NAME}"
        );
        *current = Arc::new(next);
        true
    });
}

/// A list of the one ConfigMap, as kube's informer lists it, and the list's
/// resourceVersion to watch from (there is one even when the ConfigMap does not exist).
async fn list(
    api: &Api<ConfigMap>,
    timeout: Duration,
) -> Result<(Option<ConfigMap>, String), KubeApiError> {
    let params = ListParams::default().fields(&field_selector());
    let list = match tokio::time::timeout(timeout, api.list(&params)).await {
        Ok(result) => result.map_err(|e| classify_error(Endpoint::AuthenticationConfigMap, e))?,
        Err(_) => return Err(unanswered(timeout)),
    };
    let rv = list.metadata.resource_version.clone().unwrap_or_default();
    let cm = list
        .items
        .into_iter()
        .find(|c| c.metadata.name.as_deref() == Some(NAME));
    Ok((cm, rv))
}

async fn keep_current(
    api: Api<ConfigMap>,
    tx: watch::Sender<Arc<AuthenticationConfig>>,
    timeout: Duration,
    resync: Duration,
) {
    let mut retry = RETRY_FIRST;
    loop {
        let rv = match list(&api, timeout).await {
            Ok((cm, rv)) => {
                if cm.is_none() {
                    tracing::warn!(
                        "configmap {NAMESPACE}/{NAME} does not exist; keeping the last one read"
                    );
                }
                apply(&tx, cm.as_ref());
                rv
            }
            Err(error) => {
                tracing::error!(%error, "cannot re-read the authentication configuration; keeping the last one read");
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(RETRY_CAP);
                continue;
            }
        };
        match watch_until_resync(&api, &tx, &rv, resync).await {
            Ok(()) => retry = RETRY_FIRST,
            Err(error) => {
                tracing::warn!(%error, "the watch of the authentication configuration failed");
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(RETRY_CAP);
            }
        }
    }
}

/// Applies every change the watch sends until it ends, which the kube-apiserver does at
/// the watch's timeout, `resync`. A watch that must restart from a list (410 Gone) ends
/// early; the caller lists again either way.
async fn watch_until_resync(
    api: &Api<ConfigMap>,
    tx: &watch::Sender<Arc<AuthenticationConfig>>,
    rv: &str,
    resync: Duration,
) -> Result<(), KubeApiError> {
    let seconds = resync.as_secs().clamp(1, MAX_WATCH_SECONDS);
    let params = WatchParams::default()
        .fields(&field_selector())
        .timeout(seconds as u32);
    // A connection that dies without a word would otherwise hold the watch forever.
    let deadline = Duration::from_secs(seconds) + Duration::from_secs(30);
    let watched = async {
        let stream = api
            .watch(&params, rv)
            .await
            .map_err(|e| classify_error(Endpoint::AuthenticationConfigMap, e))?;
        futures_util::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            match event.map_err(|e| classify_error(Endpoint::AuthenticationConfigMap, e))? {
                WatchEvent::Added(cm) | WatchEvent::Modified(cm) => apply(tx, Some(&cm)),
                WatchEvent::Deleted(_) => {
                    tracing::warn!(
                        "configmap {NAMESPACE}/{NAME} was deleted; keeping the last one read"
                    )
                }
                WatchEvent::Bookmark(_) => {}
                WatchEvent::Error(status) if status.code == 410 => return Ok(()),
                WatchEvent::Error(status) => {
                    return Err(classify_error(
                        Endpoint::AuthenticationConfigMap,
                        kube::Error::Api(status),
                    ))
                }
            }
        }
        Ok(())
    };
    match tokio::time::timeout(deadline, watched).await {
        Ok(result) => result,
        // Ending quietly: the caller re-reads, which is what a resync is.
        Err(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed CA made here, so the tests need no files.
    fn ca_pem(cn: &str) -> String {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().pem()
    }

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn every_key_is_read_lists_as_json_arrays() {
        let (client, front) = (ca_pem("client-ca"), ca_pem("front-proxy-ca"));
        let (c, errors) = AuthenticationConfig::default().update(&data(&[
            (keys::CLIENT_CA, &client),
            (keys::REQUESTHEADER_CLIENT_CA, &front),
            (
                keys::REQUESTHEADER_ALLOWED_NAMES,
                r#"["front-proxy-client"]"#,
            ),
            (keys::REQUESTHEADER_USERNAME_HEADERS, r#"["X-Remote-User"]"#),
            (keys::REQUESTHEADER_UID_HEADERS, r#"["X-Remote-Uid"]"#),
            (keys::REQUESTHEADER_GROUP_HEADERS, r#"["X-Remote-Group"]"#),
            (
                keys::REQUESTHEADER_EXTRA_HEADERS_PREFIX,
                r#"["X-Remote-Extra-"]"#,
            ),
        ]));
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            c.client_ca.as_ref().map(CaBundle::pem),
            Some(client.as_str())
        );
        let rh = &c.request_header;
        assert_eq!(
            rh.client_ca.as_ref().map(CaBundle::pem),
            Some(front.as_str())
        );
        assert_eq!(rh.allowed_names, vec!["front-proxy-client"]);
        assert_eq!(rh.username_headers, vec!["X-Remote-User"]);
        assert_eq!(rh.uid_headers, vec!["X-Remote-Uid"]);
        assert_eq!(rh.group_headers, vec!["X-Remote-Group"]);
        assert_eq!(rh.extra_headers_prefix, vec!["X-Remote-Extra-"]);
        assert_eq!(
            rh.client_ca.as_ref().map(|b| b.certificates().len()),
            Some(1)
        );
        assert_eq!(rh.client_ca.as_ref().map(|b| b.root_store().len()), Some(1));
    }

    #[test]
    fn missing_keys_are_empty_lists_and_no_ca() {
        let (c, errors) = AuthenticationConfig::default().update(&BTreeMap::new());
        assert!(errors.is_empty());
        assert_eq!(c, AuthenticationConfig::default());
    }

    #[test]
    fn a_list_that_is_not_json_keeps_the_previous_lists_and_names_its_key() {
        let (before, _) = AuthenticationConfig::default().update(&data(&[(
            keys::REQUESTHEADER_USERNAME_HEADERS,
            r#"["X-Remote-User"]"#,
        )]));
        let (after, errors) = before.update(&data(&[
            (keys::REQUESTHEADER_USERNAME_HEADERS, r#"["X-Other"]"#),
            (keys::REQUESTHEADER_GROUP_HEADERS, "X-Remote-Group"),
        ]));
        assert_eq!(after.request_header.username_headers, vec!["X-Remote-User"]);
        assert!(matches!(
            errors.as_slice(),
            [KubeApiError::InvalidConfigMap {
                key: keys::REQUESTHEADER_GROUP_HEADERS,
                ..
            }]
        ));
    }

    #[test]
    fn a_ca_that_does_not_parse_or_disappears_keeps_the_last_good_one() {
        let pem = ca_pem("client-ca");
        let (before, _) = AuthenticationConfig::default().update(&data(&[(keys::CLIENT_CA, &pem)]));
        let (after, errors) = before.update(&data(&[(keys::CLIENT_CA, "garbage")]));
        assert_eq!(after.client_ca, before.client_ca);
        assert!(matches!(
            errors.as_slice(),
            [KubeApiError::InvalidConfigMap {
                key: keys::CLIENT_CA,
                ..
            }]
        ));
        let (after, errors) = before.update(&BTreeMap::new());
        assert!(errors.is_empty());
        assert_eq!(
            after.client_ca.as_ref().map(CaBundle::pem),
            Some(pem.as_str())
        );
    }

    #[test]
    fn a_rotated_ca_replaces_the_old_one_and_parts_update_independently() {
        let (old, new) = (ca_pem("old"), ca_pem("new"));
        let (before, _) = AuthenticationConfig::default().update(&data(&[
            (keys::REQUESTHEADER_CLIENT_CA, &old),
            (keys::CLIENT_CA, &old),
        ]));
        let (after, errors) = before.update(&data(&[
            (keys::REQUESTHEADER_CLIENT_CA, &new),
            (keys::CLIENT_CA, "garbage"),
        ]));
        assert_eq!(errors.len(), 1);
        assert_eq!(
            after.request_header.client_ca.as_ref().map(CaBundle::pem),
            Some(new.as_str())
        );
        assert_eq!(
            after.client_ca.as_ref().map(CaBundle::pem),
            Some(old.as_str())
        );
    }

    #[test]
    fn a_bundle_without_certificates_is_refused() {
        assert!(CaBundle::parse("").is_err());
        assert!(
            CaBundle::parse("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
                .is_err()
        );
        let two = format!("{}{}", ca_pem("a"), ca_pem("b"));
        assert_eq!(CaBundle::parse(&two).map(|b| b.certificates().len()), Ok(2));
    }
}
