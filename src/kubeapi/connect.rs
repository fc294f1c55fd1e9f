//! Clients for the kube-apiserver, and how a call's failure is classified and retried.
//!
//! A client comes from a kubeconfig file (`--authentication-kubeconfig`,
//! `--authorization-kubeconfig`) or, without one, from the in-cluster service account, as
//! k8s.io/apiserver's delegating options make it. Retries follow kube's webhook policy
//! (`webhook.WithExponentialBackoff` with `DefaultShouldRetry`), not kube-rs's own, so the
//! same failures are retried as in a Go aggregated server: connection resets, 500, 504,
//! 429 and answers that ask for a delay. A refused connection is not retried: the
//! kube-apiserver is down, and the caller fails closed at once.

use std::future::Future;
use std::path::Path;
use std::sync::Once;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use rand::Rng;

use super::config::RetryBackoff;
use super::{Endpoint, KubeApiError};

static CRYPTO_PROVIDER: Once = Once::new();

/// kube-rs builds its TLS config with rustls's process-wide default provider, and this
/// crate links two (ring through pgwire-replication, aws-lc-rs through
/// tokio-postgres-rustls), so rustls would panic without a choice. Installs ring, the one
/// the rest of the server uses explicitly; if the process already chose one (a `main` that
/// installs aws-lc-rs), that choice stands and kube uses it.
pub fn ensure_crypto_provider() {
    CRYPTO_PROVIDER.call_once(|| {
        let _already_chosen = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A client for the kube-apiserver that `kubeconfig` points at, or for the in-cluster one
/// when it is `None`. `flag` names the setting in errors. Must run inside a tokio runtime
/// (the client spawns its connection worker).
pub async fn client(
    kubeconfig: Option<&Path>,
    flag: &'static str,
) -> Result<kube::Client, KubeApiError> {
    ensure_crypto_provider();
    let config_error = |detail: String| KubeApiError::Config { flag, detail };
    let mut config = match kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path).map_err(|e| {
                config_error(format!(
                    "cannot read the kubeconfig {}: {e}",
                    path.display()
                ))
            })?;
            kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .map_err(|e| config_error(format!("unusable kubeconfig {}: {e}", path.display())))?
        }
        None => kube::Config::incluster().map_err(|e| {
            config_error(format!(
                "not given, and the in-cluster service account cannot be used ({e}); \
                 outside a cluster, name a kubeconfig"
            ))
        })?,
    };
    // Retries are ours, with kube's webhook policy (see `with_retries`).
    config.default_retry = false;
    kube::Client::try_from(config).map_err(|e| config_error(format!("cannot build a client: {e}")))
}

/// One attempt's failure: try again, or give up with this error.
enum Attempt {
    Retry(KubeApiError),
    Fail(KubeApiError),
}

/// Runs `call` up to `backoff.steps` times while it fails transiently, each attempt
/// bounded by `timeout`. The last error is returned.
pub(crate) async fn with_retries<T, F, Fut>(
    endpoint: Endpoint,
    backoff: &RetryBackoff,
    timeout: Duration,
    mut call: F,
) -> Result<T, KubeApiError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    let mut delay = backoff.initial;
    let mut attempt = 1;
    loop {
        let outcome = match tokio::time::timeout(timeout, call()).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(error)) => classify(endpoint, error),
            // kube does not retry a timeout of its own client either.
            Err(_) => Attempt::Fail(KubeApiError::Unreachable {
                endpoint,
                detail: format!("no answer within {}s", timeout.as_secs_f64()),
            }),
        };
        match outcome {
            Attempt::Retry(error) if attempt < backoff.steps => {
                tracing::debug!(%error, attempt, "retrying the kube-apiserver");
                tokio::time::sleep(jittered(delay, backoff.jitter)).await;
                delay = delay.mul_f64(backoff.factor);
                attempt += 1;
            }
            Attempt::Retry(error) | Attempt::Fail(error) => return Err(error),
        }
    }
}

/// apimachinery's `wait.Jitter`: up to `jitter` times longer, at random.
fn jittered(d: Duration, jitter: f64) -> Duration {
    if jitter <= 0.0 {
        return d;
    }
    d + d.mul_f64(jitter * rand::rng().random::<f64>())
}

/// Sorts a kube-rs error into kube's classes, by its typed parts only: the Status code and
/// reason the kube-apiserver sent, or the I/O error kind underneath a transport failure.
pub(crate) fn classify_error(endpoint: Endpoint, error: kube::Error) -> KubeApiError {
    match classify(endpoint, error) {
        Attempt::Retry(e) | Attempt::Fail(e) => e,
    }
}

fn classify(endpoint: Endpoint, error: kube::Error) -> Attempt {
    match error {
        kube::Error::Api(status) => {
            let message = status.message.clone();
            let retry_after = status
                .details
                .as_ref()
                .is_some_and(|d| d.retry_after_seconds > 0);
            match status.code {
                401 => Attempt::Fail(KubeApiError::Unauthorized { endpoint, message }),
                403 => Attempt::Fail(KubeApiError::Forbidden { endpoint, message }),
                code => {
                    let error = KubeApiError::Failed {
                        endpoint,
                        code,
                        reason: status.reason.clone(),
                        message,
                    };
                    // DefaultShouldRetry: IsInternalError, IsTimeout, IsTooManyRequests, or
                    // a Status that suggests a delay.
                    let transient = matches!(code, 500 | 504 | 429)
                        || matches!(
                            status.reason.as_str(),
                            "InternalError" | "Timeout" | "TooManyRequests"
                        )
                        || retry_after;
                    if transient {
                        Attempt::Retry(error)
                    } else {
                        Attempt::Fail(error)
                    }
                }
            }
        }
        kube::Error::SerdeError(e) => Attempt::Fail(KubeApiError::InvalidResponse {
            endpoint,
            detail: e.to_string(),
        }),
        other => {
            let reset = io_error_kind(&other).is_some_and(|kind| {
                use std::io::ErrorKind::*;
                matches!(kind, ConnectionReset | ConnectionAborted | BrokenPipe)
            });
            let error = KubeApiError::Unreachable {
                endpoint,
                detail: error_chain(&other),
            };
            if reset {
                Attempt::Retry(error)
            } else {
                Attempt::Fail(error)
            }
        }
    }
}

/// The kind of the first I/O error in the source chain.
fn io_error_kind(error: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        current = e.source();
    }
    None
}

/// Every message of the chain, for the log: kube-rs's outermost one alone ("ServiceError:
/// client error (Connect)") says little.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![error.to_string()];
    let mut current = error.source();
    while let Some(e) = current {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    fn api(code: u16, reason: &str) -> kube::Error {
        kube::Error::Api(Status::failure("m", reason).with_code(code).boxed())
    }

    fn retried(e: kube::Error) -> bool {
        matches!(
            classify(Endpoint::SubjectAccessReview, e),
            Attempt::Retry(_)
        )
    }

    #[test]
    fn server_errors_timeouts_and_throttling_are_retried_as_kube_retries_them() {
        assert!(retried(api(500, "InternalError")));
        assert!(retried(api(504, "Timeout")));
        assert!(retried(api(429, "TooManyRequests")));
        assert!(!retried(api(404, "NotFound")));
        assert!(!retried(api(400, "BadRequest")));
    }

    #[test]
    fn a_delay_asked_for_is_retried() {
        let s = Status::failure("busy", "ServiceUnavailable")
            .with_code(503)
            .with_details(kube::core::response::StatusDetails {
                name: String::new(),
                group: String::new(),
                kind: String::new(),
                uid: String::new(),
                causes: Vec::new(),
                retry_after_seconds: 1,
            });
        assert!(retried(kube::Error::Api(s.boxed())));
    }

    #[test]
    fn credentials_and_rbac_failures_are_typed() {
        assert!(matches!(
            classify_error(Endpoint::TokenReview, api(401, "Unauthorized")),
            KubeApiError::Unauthorized { .. }
        ));
        assert!(matches!(
            classify_error(Endpoint::AuthenticationConfigMap, api(403, "Forbidden")),
            KubeApiError::Forbidden {
                endpoint: Endpoint::AuthenticationConfigMap,
                ..
            }
        ));
    }

    #[test]
    fn jitter_only_lengthens_and_by_at_most_its_share() {
        let d = Duration::from_millis(500);
        for _ in 0..100 {
            let j = jittered(d, 0.2);
            assert!(j >= d && j <= Duration::from_millis(600), "{j:?}");
        }
        assert_eq!(jittered(d, 0.0), d);
    }
}
