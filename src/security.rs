//! Wiring for delegated authentication and authorization: builds the request path's
//! [`Security`] from the configuration, connects to the kube-apiserver when there is one,
//! and keeps the CAs and header names current (the authentication ConfigMap's watch and
//! the flags' files, re-read), so a rotation needs no restart.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::api::guard::Security;
use crate::auth::authn::{Authenticator, TokenReviewer};
use crate::auth::authz::{AccessReviewer, Authorizer};
use crate::auth::sources::SourceSettings;
use crate::config::{in_cluster, AuthConfig, AuthMode};
use crate::kubeapi::{self, KubeApi, KubeApiError};

/// Why delegated authentication cannot start; each names the fix.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error("{flag} {path}: {error}")]
    File {
        flag: &'static str,
        path: String,
        error: String,
    },
    #[error("{0}")]
    Bundle(#[from] crate::auth::x509::X509Error),
    #[error("{0}")]
    KubeApi(#[from] KubeApiError),
    #[error("the authentication sources task stopped")]
    Stopped,
}

/// What `app::start` keeps: the shared [`Security`] and what keeps it current.
pub struct Secured {
    pub security: Arc<Security>,
    /// Turns true once the CAs from the ConfigMap are in force (or when none are looked up).
    pub ready: Arc<AtomicBool>,
    kube: Option<Arc<KubeApi>>,
}

/// The flags' settings, with their files read now.
fn flag_settings(cfg: &AuthConfig) -> Result<SourceSettings, SecurityError> {
    let read = |flag: &'static str, p: &std::path::PathBuf| {
        std::fs::read_to_string(p)
            .map(|pem| (pem, format!("{flag} {}", p.display())))
            .map_err(|e| SecurityError::File {
                flag,
                path: p.display().to_string(),
                error: e.to_string(),
            })
    };
    let rh = &cfg.requestheader;
    Ok(SourceSettings {
        client_ca: cfg
            .client_ca_file
            .as_ref()
            .map(|p| read("--client-ca-file", p))
            .transpose()?,
        requestheader_ca: rh
            .client_ca_file
            .as_ref()
            .map(|p| read("--requestheader-client-ca-file", p))
            .transpose()?,
        allowed_names: rh.allowed_names.clone(),
        username_headers: rh.username_headers.clone(),
        uid_headers: rh.uid_headers.clone(),
        group_headers: rh.group_headers.clone(),
        extra_headers_prefix: rh.extra_headers_prefix.clone(),
    })
}

/// Builds the request path's security for delegated mode (`None` when it is off). Reads
/// the flags' files; connects (without calling yet) to the kube-apiserver when a
/// kubeconfig is given or the process runs in a cluster.
pub async fn build(cfg: &AuthConfig) -> Result<Option<Secured>, SecurityError> {
    if cfg.mode == AuthMode::Off {
        return Ok(None);
    }
    let flags = flag_settings(cfg)?;
    let reachable = cfg.kube.authentication_kubeconfig.is_some()
        || cfg.kube.authorization_kubeconfig.is_some()
        || in_cluster();
    let kube = if reachable {
        Some(Arc::new(KubeApi::connect(&cfg.kube).await?))
    } else {
        tracing::warn!(
            "no kube-apiserver to ask (no --authentication-kubeconfig or --authorization-kubeconfig, not in a cluster): \
             tokens are refused, and only system:masters may do anything beyond the always-allowed paths"
        );
        None
    };
    let tokens = kube
        .as_ref()
        .map(|k| Arc::new(k.tokens.clone()) as Arc<dyn TokenReviewer>);
    let access = kube
        .as_ref()
        .map(|k| Arc::new(k.access.clone()) as Arc<dyn AccessReviewer>);
    let authn = Authenticator::new(flags.build()?, tokens, cfg.anonymous);
    let authz = Authorizer::new(cfg.always_allow_paths.clone(), access);
    let lookup = !cfg.skip_lookup && kube.is_some();
    Ok(Some(Secured {
        security: Arc::new(Security { authn, authz }),
        ready: Arc::new(AtomicBool::new(!lookup)),
        kube: kube.filter(|_| lookup),
    }))
}

impl Secured {
    /// Keeps the sources current: reads the authentication ConfigMap (retrying while the
    /// kube-apiserver is unreachable; a definite refusal, such as missing RBAC, ends it
    /// with the error), then re-applies flags over it on every ConfigMap change and every
    /// `reload` interval (the flags' files are re-read).
    pub async fn keep_current(
        &self,
        cfg: AuthConfig,
        reload: Duration,
    ) -> Result<(), SecurityError> {
        // The watch's task lives as long as the value: keep it for the whole loop.
        let watch = match &self.kube {
            None => None,
            Some(kube) => Some(start_watch(kube).await?),
        };
        let mut configmap = watch.as_ref().map(|w| w.subscribe());
        loop {
            let cm = configmap
                .as_ref()
                .map(|rx| kubeapi::settings_of(&rx.borrow()))
                .unwrap_or_default();
            match flag_settings(&cfg).and_then(|f| Ok(f.over(cm).build()?)) {
                Ok(sources) => {
                    if *self.security.authn.sources() != sources {
                        tracing::info!("authentication CAs and header names in force updated");
                        self.security.authn.set_sources(sources);
                    }
                    self.ready.store(true, Ordering::Release);
                }
                // A bundle caught half-written, or broken: keep the one in force.
                Err(e) => tracing::warn!(error = %e, "authentication sources not updated"),
            }
            match configmap.as_mut() {
                Some(rx) => {
                    tokio::select! {
                        r = rx.changed() => if r.is_err() {
                            // Only a dropped watch closes the channel; keep what is in force.
                            return Err(SecurityError::Stopped);
                        },
                        _ = tokio::time::sleep(reload) => {}
                    }
                }
                None => tokio::time::sleep(reload).await,
            }
        }
    }
}

/// The ConfigMap's watch, retried with backoff while the kube-apiserver is unreachable.
async fn start_watch(kube: &KubeApi) -> Result<kubeapi::AuthenticationConfigWatch, SecurityError> {
    let mut delay = Duration::from_millis(200);
    loop {
        match kube.watch_authentication_config().await {
            Ok(w) => return Ok(w),
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, retry_in = ?delay, "cannot read the authentication ConfigMap yet; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
            Err(e) => return Err(e.into()),
        }
    }
}
