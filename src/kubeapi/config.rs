//! The settings of the kube-apiserver client, with k8s.io/apiserver's flag names and
//! defaults (`DelegatingAuthenticationOptions`, `DelegatingAuthorizationOptions`).
//!
//! This is a plain value for `src/config/` to fill from flags; [`KubeApiConfig::validate`]
//! names the flag of every value it refuses.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// kube's flag names, for the CLI and for messages.
pub mod flags {
    pub const AUTHENTICATION_KUBECONFIG: &str = "--authentication-kubeconfig";
    pub const AUTHORIZATION_KUBECONFIG: &str = "--authorization-kubeconfig";
    pub const TOKEN_CACHE_TTL: &str = "--authentication-token-webhook-cache-ttl";
    pub const AUTHORIZED_TTL: &str = "--authorization-webhook-cache-authorized-ttl";
    pub const UNAUTHORIZED_TTL: &str = "--authorization-webhook-cache-unauthorized-ttl";
}

/// kube's defaults. An aggregated server built on k8s.io/apiserver gets the same values
/// (`NewDelegatingAuthenticationOptions`, `NewDelegatingAuthorizationOptions`). kube-apiserver's
/// own flags of the same names default higher (tokens 2 min, authorized 5 min, unauthorized
/// 30 s); those are for its webhooks, not for a server that delegates to it, which keeps
/// 10 s so that a revoked RoleBinding takes effect quickly.
pub mod defaults {
    use std::time::Duration;

    pub const TOKEN_CACHE_TTL: Duration = Duration::from_secs(10);
    pub const AUTHORIZED_TTL: Duration = Duration::from_secs(10);
    pub const UNAUTHORIZED_TTL: Duration = Duration::from_secs(10);
    /// `TokenRequestTimeout` and the authorization client's `ClientTimeout`.
    pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
    /// How often the authentication ConfigMap is re-read even without a watch event
    /// (`dynamiccertificates.FileRefreshDuration`).
    pub const CONFIG_MAP_RESYNC: Duration = Duration::from_secs(60);
}

/// kube's `DefaultAuthWebhookRetryBackoff`: 5 attempts, 500 ms apart and growing by 1.5,
/// each wait up to 20 % longer at random. Only transient failures are retried (see
/// [`super::connect`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryBackoff {
    pub initial: Duration,
    pub factor: f64,
    pub jitter: f64,
    /// Attempts, the first included.
    pub steps: u32,
}

impl Default for RetryBackoff {
    fn default() -> Self {
        RetryBackoff {
            initial: Duration::from_millis(500),
            factor: 1.5,
            jitter: 0.2,
            steps: 5,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct KubeApiConfig {
    /// `--authentication-kubeconfig`: TokenReviews and the authentication ConfigMap.
    /// `None`: the in-cluster service account.
    pub authentication_kubeconfig: Option<PathBuf>,
    /// `--authorization-kubeconfig`: SubjectAccessReviews. `None`: in-cluster.
    pub authorization_kubeconfig: Option<PathBuf>,
    /// `--authentication-token-webhook-cache-ttl`, for both outcomes; zero caches nothing.
    pub token_cache_ttl: Duration,
    /// `--authorization-webhook-cache-authorized-ttl`; zero caches nothing.
    pub authorized_ttl: Duration,
    /// `--authorization-webhook-cache-unauthorized-ttl`, for denials and no-opinions.
    pub unauthorized_ttl: Duration,
    /// The audiences a TokenReview asks for. kube's delegated authenticator sends none
    /// (an aggregated server has no API audiences of its own), so a token is checked for
    /// the kube-apiserver's audiences.
    pub audiences: Vec<String>,
    /// How long one call may take (no flag in kube).
    pub request_timeout: Duration,
    pub retry: RetryBackoff,
    /// How often the authentication ConfigMap is re-read besides its watch.
    pub config_map_resync: Duration,
}

impl Default for KubeApiConfig {
    fn default() -> Self {
        KubeApiConfig {
            authentication_kubeconfig: None,
            authorization_kubeconfig: None,
            token_cache_ttl: defaults::TOKEN_CACHE_TTL,
            authorized_ttl: defaults::AUTHORIZED_TTL,
            unauthorized_ttl: defaults::UNAUTHORIZED_TTL,
            audiences: Vec::new(),
            request_timeout: defaults::REQUEST_TIMEOUT,
            retry: RetryBackoff::default(),
            config_map_resync: defaults::CONFIG_MAP_RESYNC,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KubeApiConfigError {
    #[error("{flag}: cannot read the kubeconfig {path}: {error}")]
    Kubeconfig {
        flag: &'static str,
        path: String,
        error: String,
    },
    #[error("{what} must be longer than 0s")]
    ZeroDuration { what: &'static str },
    /// kube's own wording for the same check.
    #[error("number of webhook retry attempts must be greater than 1, but is: {0}")]
    RetrySteps(u32),
}

impl KubeApiConfig {
    /// Checks every value without connecting: each kubeconfig named must read as one.
    /// Zero TTLs are allowed (kube takes them to mean "do not cache").
    pub fn validate(&self) -> Result<(), KubeApiConfigError> {
        for (flag, path) in [
            (
                flags::AUTHENTICATION_KUBECONFIG,
                &self.authentication_kubeconfig,
            ),
            (
                flags::AUTHORIZATION_KUBECONFIG,
                &self.authorization_kubeconfig,
            ),
        ] {
            if let Some(path) = path {
                check_kubeconfig(flag, path)?;
            }
        }
        for (what, d) in [
            ("the kube-apiserver request timeout", self.request_timeout),
            (
                "the authentication ConfigMap resync interval",
                self.config_map_resync,
            ),
        ] {
            if d.is_zero() {
                return Err(KubeApiConfigError::ZeroDuration { what });
            }
        }
        if self.retry.steps == 0 {
            return Err(KubeApiConfigError::RetrySteps(self.retry.steps));
        }
        Ok(())
    }
}

fn check_kubeconfig(flag: &'static str, path: &Path) -> Result<(), KubeApiConfigError> {
    kube::config::Kubeconfig::read_from(path)
        .map(|_| ())
        .map_err(|e| KubeApiConfigError::Kubeconfig {
            flag,
            path: path.display().to_string(),
            error: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_kubes_for_an_aggregated_server() {
        let c = KubeApiConfig::default();
        assert_eq!(c.token_cache_ttl, Duration::from_secs(10));
        assert_eq!(c.authorized_ttl, Duration::from_secs(10));
        assert_eq!(c.unauthorized_ttl, Duration::from_secs(10));
        assert!(c.audiences.is_empty());
        assert_eq!(c.retry.steps, 5);
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn a_missing_kubeconfig_is_refused_by_its_flag() {
        let c = KubeApiConfig {
            authorization_kubeconfig: Some("/nonexistent/kubeconfig".into()),
            ..Default::default()
        };
        let e = c.validate().unwrap_err();
        assert!(
            e.to_string().starts_with(
                "--authorization-kubeconfig: cannot read the kubeconfig /nonexistent/kubeconfig"
            ),
            "{e}"
        );
    }

    #[test]
    fn a_file_that_is_not_a_kubeconfig_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kubeconfig");
        std::fs::write(&path, "clusters: [not, a, map").unwrap();
        let c = KubeApiConfig {
            authentication_kubeconfig: Some(path),
            ..Default::default()
        };
        assert!(matches!(
            c.validate(),
            Err(KubeApiConfigError::Kubeconfig {
                flag: "--authentication-kubeconfig",
                ..
            })
        ));
    }

    #[test]
    fn zero_ttls_are_allowed_and_zero_retries_are_not() {
        let c = KubeApiConfig {
            token_cache_ttl: Duration::ZERO,
            authorized_ttl: Duration::ZERO,
            ..Default::default()
        };
        assert_eq!(c.validate(), Ok(()));
        let mut c = KubeApiConfig::default();
        c.retry.steps = 0;
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "number of webhook retry attempts must be greater than 1, but is: 0"
        );
    }
}
