//! Everything this server asks the kube-apiserver, and nothing else does: TokenReviews
//! (`authentication.k8s.io/v1`), SubjectAccessReviews (`authorization.k8s.io/v1`) and the
//! ConfigMap `kube-system/extension-apiserver-authentication`, as k8s.io/apiserver's
//! delegated authentication and authorization ask them for an aggregated API server.
//!
//! - [`config`]: the settings, kube's flag names and defaults, validated by flag.
//! - [`connect`]: clients from `--authentication-kubeconfig` / `--authorization-kubeconfig`
//!   or the in-cluster service account, and kube's webhook retry policy.
//! - [`token`]: TokenReview with its cache (under a salted SHA-256 of the token).
//! - [`access`]: the SubjectAccessReview body (pure, as kube's webhook authorizer builds
//!   it) and the decision cache with its two TTLs.
//! - [`authconfig`]: the authentication ConfigMap parsed into a typed value (pure), and
//!   a task that keeps it current through a watch and a periodic re-read.
//!
//! The request path decides nothing here on message text: every failure is a
//! [`KubeApiError`] variant, and a review that could not be made is never an allow.

pub mod access;
mod adapters;
pub use adapters::settings_of;
pub mod authconfig;
mod cache;
pub mod config;
pub mod connect;
pub mod token;

use std::fmt;

use crate::k8s::status::{ApiError, StatusReason};

pub use crate::auth::authz::Decision;
pub use access::AccessReviewer;
pub use authconfig::{
    AuthenticationConfig, AuthenticationConfigWatch, CaBundle, RequestHeaderConfig,
};
pub use config::{KubeApiConfig, KubeApiConfigError};
pub use token::{TokenOutcome, TokenReviewer};

/// The reviewers and the authentication client, made once from a [`KubeApiConfig`] at
/// start-up and shared by every request.
pub struct KubeApi {
    pub tokens: TokenReviewer,
    pub access: AccessReviewer,
    authentication: kube::Client,
    timeout: std::time::Duration,
    resync: std::time::Duration,
}

impl KubeApi {
    /// Makes the clients (without calling the kube-apiserver yet): the authentication
    /// kubeconfig serves TokenReviews and the ConfigMap, the authorization one
    /// SubjectAccessReviews; either absent means the in-cluster service account.
    pub async fn connect(config: &KubeApiConfig) -> Result<KubeApi, KubeApiError> {
        let authentication = connect::client(
            config.authentication_kubeconfig.as_deref(),
            config::flags::AUTHENTICATION_KUBECONFIG,
        )
        .await?;
        let authorization = connect::client(
            config.authorization_kubeconfig.as_deref(),
            config::flags::AUTHORIZATION_KUBECONFIG,
        )
        .await?;
        Ok(KubeApi {
            tokens: TokenReviewer::new(authentication.clone(), config),
            access: AccessReviewer::new(authorization, config),
            authentication,
            timeout: config.request_timeout,
            resync: config.config_map_resync,
        })
    }

    /// Reads the authentication ConfigMap and keeps it current (see
    /// [`AuthenticationConfigWatch::start`]).
    pub async fn watch_authentication_config(
        &self,
    ) -> Result<AuthenticationConfigWatch, KubeApiError> {
        AuthenticationConfigWatch::start(self.authentication.clone(), self.timeout, self.resync)
            .await
    }
}

/// What this server was asking when a call failed. It names the operation in messages and
/// the RBAC binding that grants it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    TokenReview,
    SubjectAccessReview,
    AuthenticationConfigMap,
}

impl Endpoint {
    /// The flag whose kubeconfig this call uses.
    pub fn flag(self) -> &'static str {
        match self {
            Endpoint::TokenReview | Endpoint::AuthenticationConfigMap => {
                config::flags::AUTHENTICATION_KUBECONFIG
            }
            Endpoint::SubjectAccessReview => config::flags::AUTHORIZATION_KUBECONFIG,
        }
    }

    /// What an operator runs when the kube-apiserver answers 403 to this call. The chart
    /// creates both bindings; a hand-made install may lack one.
    pub fn rbac_fix(self) -> &'static str {
        match self {
            Endpoint::TokenReview | Endpoint::SubjectAccessReview => {
                "the server's service account needs the ClusterRole system:auth-delegator \
                 (kubectl create clusterrolebinding BINDING_NAME --clusterrole=system:auth-delegator \
                 --serviceaccount=YOUR_NS:YOUR_SA)"
            }
            Endpoint::AuthenticationConfigMap => {
                "the server's service account needs the Role extension-apiserver-authentication-reader \
                 in kube-system, through a RoleBinding there (kubectl create rolebinding -n kube-system \
                 ROLEBINDING_NAME --role=extension-apiserver-authentication-reader \
                 --serviceaccount=YOUR_NS:YOUR_SA)"
            }
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Endpoint::TokenReview => "creating a tokenreviews.authentication.k8s.io",
            Endpoint::SubjectAccessReview => "creating a subjectaccessreviews.authorization.k8s.io",
            Endpoint::AuthenticationConfigMap => {
                "reading configmap kube-system/extension-apiserver-authentication"
            }
        })
    }
}

/// A call to the kube-apiserver that gave no usable answer, by what the caller does next:
/// on the request path every variant means "refuse" (fail closed); at start-up
/// [`Config`](Self::Config), [`Unauthorized`](Self::Unauthorized) and
/// [`Forbidden`](Self::Forbidden) need an operator, the others may pass with a retry
/// ([`is_transient`](Self::is_transient)).
///
/// Clone, because one TokenReview answers every request that waited for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KubeApiError {
    /// No connection, a reset, or no answer within the timeout.
    #[error("{endpoint}: the kube-apiserver could not be reached: {detail}")]
    Unreachable { endpoint: Endpoint, detail: String },
    /// The kube-apiserver refused this server's own credentials (401).
    #[error("{endpoint}: the kube-apiserver rejected this server's credentials ({message}); check the token or client certificate of {}", endpoint.flag())]
    Unauthorized { endpoint: Endpoint, message: String },
    /// This server's identity is not allowed the call (403): an RBAC binding is missing.
    #[error("{endpoint}: {message}; {}", endpoint.rbac_fix())]
    Forbidden { endpoint: Endpoint, message: String },
    /// Any other error Status.
    #[error("{endpoint}: the kube-apiserver answered {code} {reason}: {message}")]
    Failed {
        endpoint: Endpoint,
        code: u16,
        reason: String,
        message: String,
    },
    /// An answer that is not a usable review (a body that does not decode, a review both
    /// allowed and denied).
    #[error("{endpoint}: unusable answer from the kube-apiserver: {detail}")]
    InvalidResponse { endpoint: Endpoint, detail: String },
    /// No client could be made: the kubeconfig, or the in-cluster service account.
    #[error("{flag}: {detail}")]
    Config { flag: &'static str, detail: String },
    /// A value in the authentication ConfigMap that does not parse; the previous value of
    /// that part stays in force, as kube keeps it.
    #[error("configmap kube-system/extension-apiserver-authentication, key {key}: {detail}")]
    InvalidConfigMap { key: &'static str, detail: String },
}

impl KubeApiError {
    /// A later attempt may succeed without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        match self {
            KubeApiError::Unreachable { .. } => true,
            KubeApiError::Failed { code, .. } => *code >= 500 || *code == 429,
            _ => false,
        }
    }

    /// The Status a client gets when its request could not be decided because of this,
    /// as kube answers: a TokenReview that failed leaves the request unauthenticated (401
    /// Unauthorized, the authentication filter's answer), anything else is a 500 (the
    /// authorization filter's). The details stay in the server's log.
    pub fn to_api_error(&self) -> ApiError {
        match self {
            KubeApiError::Unreachable {
                endpoint: Endpoint::TokenReview,
                ..
            }
            | KubeApiError::Unauthorized {
                endpoint: Endpoint::TokenReview,
                ..
            }
            | KubeApiError::Forbidden {
                endpoint: Endpoint::TokenReview,
                ..
            }
            | KubeApiError::Failed {
                endpoint: Endpoint::TokenReview,
                ..
            }
            | KubeApiError::InvalidResponse {
                endpoint: Endpoint::TokenReview,
                ..
            } => ApiError::new(401, StatusReason::Unauthorized, "Unauthorized"),
            _ => ApiError::internal("the request could not be authorized"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forbidden_configmap_read_names_the_missing_role_binding() {
        let e = KubeApiError::Forbidden {
            endpoint: Endpoint::AuthenticationConfigMap,
            message: "configmaps \"extension-apiserver-authentication\" is forbidden".into(),
        };
        let text = e.to_string();
        assert!(
            text.contains("extension-apiserver-authentication-reader"),
            "{text}"
        );
        assert!(text.contains("RoleBinding"), "{text}");
        assert!(text.contains("kube-system"), "{text}");
    }

    #[test]
    fn a_forbidden_review_names_auth_delegator() {
        for endpoint in [Endpoint::TokenReview, Endpoint::SubjectAccessReview] {
            let e = KubeApiError::Forbidden {
                endpoint,
                message: "forbidden".into(),
            };
            assert!(e.to_string().contains("system:auth-delegator"));
        }
    }

    #[test]
    fn a_failed_token_review_is_401_and_a_failed_access_review_500() {
        let unreachable = |endpoint| KubeApiError::Unreachable {
            endpoint,
            detail: "connection refused".into(),
        };
        let e = unreachable(Endpoint::TokenReview).to_api_error();
        assert_eq!(
            (e.code, e.reason, e.message.as_str()),
            (401, StatusReason::Unauthorized, "Unauthorized")
        );
        let e = unreachable(Endpoint::SubjectAccessReview).to_api_error();
        assert_eq!((e.code, e.reason), (500, StatusReason::InternalError));
        assert!(
            !e.message.contains("refused"),
            "no internals in a client's Status"
        );
    }

    #[test]
    fn only_outages_and_server_errors_are_transient() {
        let failed = |code| KubeApiError::Failed {
            endpoint: Endpoint::SubjectAccessReview,
            code,
            reason: String::new(),
            message: String::new(),
        };
        assert!(failed(503).is_transient());
        assert!(failed(429).is_transient());
        assert!(!failed(404).is_transient());
        assert!(!KubeApiError::Forbidden {
            endpoint: Endpoint::TokenReview,
            message: String::new()
        }
        .is_transient());
    }
}
