//! Bearer tokens, authenticated by a TokenReview (`authentication.k8s.io/v1`) to the
//! kube-apiserver, as k8s.io/apiserver's delegating authenticator does it
//! (`plugin/pkg/authenticator/token/webhook` behind `pkg/authentication/token/cache`).
//!
//! Answers are cached for `--authentication-token-webhook-cache-ttl` under a salted
//! SHA-256 of the token (and the audiences asked for), never the token itself. kube caches
//! the same outcomes: a user, or "not authenticated"; a review whose status carries an
//! `error` is an error in kube and is not cached, nor is a failed call. Concurrent reviews
//! of one token share one call, as kube's singleflight does, and that call runs to its
//! end even if the request that started it goes away.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures_util::future::{BoxFuture, FutureExt, Shared};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, TokenReviewStatus};
use kube::api::{Api, PostParams};
use rand::Rng;
use sha2::{Digest, Sha256};

use super::cache::{Key, TtlCache, CAPACITY};
use super::config::{KubeApiConfig, RetryBackoff};
use super::connect::with_retries;
use super::{Endpoint, KubeApiError};
use crate::auth::user::UserInfo;

/// What the kube-apiserver said about a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenOutcome {
    /// The token's user, as the review gave it: `system:authenticated` is not added here
    /// (kube adds it once, after every authenticator; see [`UserInfo::authenticated`]).
    Authenticated(UserInfo),
    /// Not a valid token (401 for the request, never anonymous). `error` is the review's
    /// `status.error`, for the log.
    Unauthenticated { error: Option<String> },
}

type Pending = Shared<BoxFuture<'static, Result<TokenOutcome, KubeApiError>>>;

/// Reviews tokens. Cheap to clone; clones share the cache.
#[derive(Clone)]
pub struct TokenReviewer {
    inner: Arc<Inner>,
}

struct Inner {
    client: kube::Client,
    audiences: Vec<String>,
    ttl: Duration,
    retry: RetryBackoff,
    timeout: Duration,
    /// Makes the cache keys useless outside this process.
    salt: [u8; 32],
    cache: Mutex<TtlCache<TokenOutcome>>,
    pending: Mutex<HashMap<Key, Pending>>,
}

impl TokenReviewer {
    /// Uses `config`'s token TTL, audiences, timeout and retry policy.
    pub fn new(client: kube::Client, config: &KubeApiConfig) -> Self {
        TokenReviewer {
            inner: Arc::new(Inner {
                client,
                audiences: config.audiences.clone(),
                ttl: config.token_cache_ttl,
                retry: config.retry,
                timeout: config.request_timeout,
                salt: rand::rng().random(),
                cache: Mutex::new(TtlCache::new(CAPACITY)),
                pending: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Authenticates `token` (the bearer token, without `Bearer `). `Err` means no answer
    /// could be had: the request must not be let through.
    pub async fn review_token(&self, token: &str) -> Result<TokenOutcome, KubeApiError> {
        let key = cache_key(&self.inner.salt, token, &self.inner.audiences);
        if let Some(hit) = lock(&self.inner.cache).get(&key, Instant::now()) {
            return Ok(hit);
        }
        let pending = {
            let mut pending = lock(&self.inner.pending);
            // Checked again under this lock: a review may have finished since.
            if let Some(hit) = lock(&self.inner.cache).get(&key, Instant::now()) {
                return Ok(hit);
            }
            match pending.get(&key) {
                Some(p) => p.clone(),
                None => {
                    let inner = self.inner.clone();
                    let token = token.to_owned();
                    // Spawned, so the review finishes (and is cached, and leaves `pending`)
                    // even when every request waiting for it is dropped.
                    let task = tokio::spawn(async move { inner.review(key, token).await });
                    let p = async move {
                        task.await.unwrap_or_else(|e| {
                            Err(KubeApiError::Unreachable {
                                endpoint: Endpoint::TokenReview,
                                detail: format!("the review task ended early: {e}"),
                            })
                        })
                    }
                    .boxed()
                    .shared();
                    pending.insert(key, p.clone());
                    p
                }
            }
        };
        pending.await
    }
}

impl Inner {
    async fn review(&self, key: Key, token: String) -> Result<TokenOutcome, KubeApiError> {
        let body = token_review(&token, &self.audiences);
        let api: Api<TokenReview> = Api::all(self.client.clone());
        let result = with_retries(Endpoint::TokenReview, &self.retry, self.timeout, || {
            let (api, body) = (api.clone(), body.clone());
            async move { api.create(&PostParams::default(), &body).await }
        })
        .await;
        let outcome = result.map(|review| token_outcome(review.status.as_ref(), &self.audiences));
        if let Ok(o) = &outcome {
            if cacheable(o) {
                lock(&self.cache).insert(key, o.clone(), self.ttl, Instant::now());
            }
        }
        lock(&self.pending).remove(&key);
        outcome
    }
}

/// The review kube sends: the token, and the audiences only when there are some.
pub fn token_review(token: &str, audiences: &[String]) -> TokenReview {
    TokenReview {
        metadata: Default::default(),
        spec: TokenReviewSpec {
            token: Some(token.to_owned()),
            audiences: (!audiences.is_empty()).then(|| audiences.to_vec()),
        },
        status: None,
    }
}

/// The outcome of a review's status, as kube's webhook authenticator reads it. With
/// audiences asked for, the token must be valid for one of them: those the status lists,
/// or, when it lists none, the audiences asked for themselves (kube's implicit audiences,
/// which are the same for a delegating server).
pub fn token_outcome(status: Option<&TokenReviewStatus>, audiences: &[String]) -> TokenOutcome {
    let Some(status) = status else {
        return TokenOutcome::Unauthenticated { error: None };
    };
    if !audiences.is_empty() {
        let granted = status
            .audiences
            .as_deref()
            .filter(|a| !a.is_empty())
            .unwrap_or(audiences);
        if !audiences.iter().any(|a| granted.contains(a)) {
            return TokenOutcome::Unauthenticated { error: None };
        }
    }
    if status.authenticated != Some(true) {
        return TokenOutcome::Unauthenticated {
            error: status.error.clone().filter(|e| !e.is_empty()),
        };
    }
    let user = status.user.clone().unwrap_or_default();
    TokenOutcome::Authenticated(UserInfo {
        name: user.username.unwrap_or_default(),
        uid: user.uid.unwrap_or_default(),
        groups: user.groups.unwrap_or_default(),
        extra: user.extra.unwrap_or_default(),
    })
}

/// kube does not cache a review that reported an error (it is an error there, and
/// errors are not cached).
fn cacheable(outcome: &TokenOutcome) -> bool {
    !matches!(outcome, TokenOutcome::Unauthenticated { error: Some(_) })
}

/// Lengths are written before each part so that no two (token, audiences) pairs hash the
/// same input, as kube's `keyFunc` does.
fn cache_key(salt: &[u8; 32], token: &str, audiences: &[String]) -> Key {
    let mut h = Sha256::new();
    h.update(salt);
    h.update((token.len() as u64).to_be_bytes());
    h.update(token.as_bytes());
    h.update((audiences.len() as u64).to_be_bytes());
    for a in audiences {
        h.update((a.len() as u64).to_be_bytes());
        h.update(a.as_bytes());
    }
    h.finalize().into()
}

/// A poisoned lock only means another request panicked while holding it; the maps stay
/// consistent (every change is one insert or remove), so keep serving.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::authentication::v1::UserInfo as ReviewUser;
    use std::collections::BTreeMap;

    fn status(authenticated: bool) -> TokenReviewStatus {
        TokenReviewStatus {
            authenticated: Some(authenticated),
            user: Some(ReviewUser {
                username: Some("alice".into()),
                uid: Some("u-1".into()),
                groups: Some(vec!["devs".into()]),
                extra: Some(BTreeMap::from([(
                    "scopes.example.com/Scope".into(),
                    vec!["a".into(), "b".into()],
                )])),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn an_authenticated_review_gives_its_user_with_extras_as_sent() {
        let TokenOutcome::Authenticated(u) = token_outcome(Some(&status(true)), &[]) else {
            panic!("authenticated");
        };
        assert_eq!(u.name, "alice");
        assert_eq!(u.uid, "u-1");
        assert_eq!(u.groups, vec!["devs"]);
        assert_eq!(u.extra["scopes.example.com/Scope"], vec!["a", "b"]);
    }

    #[test]
    fn an_unauthenticated_review_is_not_a_user_and_keeps_its_error() {
        let mut s = status(false);
        assert_eq!(
            token_outcome(Some(&s), &[]),
            TokenOutcome::Unauthenticated { error: None }
        );
        s.error = Some("token expired".into());
        let o = token_outcome(Some(&s), &[]);
        assert_eq!(
            o,
            TokenOutcome::Unauthenticated {
                error: Some("token expired".into())
            }
        );
        assert!(!cacheable(&o), "kube does not cache a review error");
        assert!(cacheable(&TokenOutcome::Unauthenticated { error: None }));
        assert_eq!(
            token_outcome(None, &[]),
            TokenOutcome::Unauthenticated { error: None }
        );
    }

    #[test]
    fn with_audiences_the_token_must_be_valid_for_one_of_them() {
        let want = vec!["ark".to_string()];
        let mut s = status(true);
        assert!(matches!(
            token_outcome(Some(&s), &want),
            TokenOutcome::Authenticated(_)
        ));
        s.audiences = Some(vec!["other".into()]);
        assert_eq!(
            token_outcome(Some(&s), &want),
            TokenOutcome::Unauthenticated { error: None }
        );
        s.audiences = Some(vec!["other".into(), "ark".into()]);
        assert!(matches!(
            token_outcome(Some(&s), &want),
            TokenOutcome::Authenticated(_)
        ));
    }

    #[test]
    fn the_review_carries_audiences_only_when_there_are_some() {
        let body = serde_json::to_value(token_review("t", &[])).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                "metadata": {}, "spec": {"token": "t"}
            })
        );
        let body = serde_json::to_value(token_review("t", &["a".into()])).unwrap();
        assert_eq!(body["spec"]["audiences"], serde_json::json!(["a"]));
    }

    #[test]
    fn cache_keys_depend_on_token_audiences_and_salt_and_hold_no_token() {
        let salt = [7; 32];
        let k = cache_key(&salt, "secret-token", &[]);
        assert_ne!(k, cache_key(&salt, "secret-token2", &[]));
        assert_ne!(k, cache_key(&salt, "secret-token", &["a".into()]));
        assert_ne!(k, cache_key(&[8; 32], "secret-token", &[]));
        // Length prefixes: ("ab", ["c"]) and ("a", ["bc"]) differ.
        assert_ne!(
            cache_key(&salt, "ab", &["c".into()]),
            cache_key(&salt, "a", &["bc".into()])
        );
        assert!(!k.windows(6).any(|w| w == b"secret"));
    }
}
