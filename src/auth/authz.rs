//! Authorization, as k8s.io/apiserver's delegating authorizer: a few paths are always
//! allowed, members of `system:masters` are allowed, and everything else is asked of the
//! kube-apiserver (a SubjectAccessReview). A review that cannot be made refuses the
//! request: the server fails closed.

use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::attributes::RequestAttributes;
use super::user::{UserInfo, MASTERS};

/// What a review decided. Only [`Allowed`](Self::Allowed) lets a request through: in
/// kube's delegated chain a webhook's no-opinion leaves nobody allowing the request, and
/// the authorization filter then forbids it, with the review's reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// `reason` is for the audit annotation `authorization.k8s.io/reason`.
    Allowed { reason: String },
    /// `status.denied`: an authorizer said no.
    Denied { reason: String },
    /// Neither allowed nor denied.
    NoOpinion { reason: String },
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allowed { .. })
    }

    /// The reason to append to the Forbidden message ([`super::forbidden`]).
    pub fn reason(&self) -> &str {
        match self {
            Decision::Allowed { reason }
            | Decision::Denied { reason }
            | Decision::NoOpinion { reason } => reason,
        }
    }
}

/// Why a review gave no decision (the kube-apiserver could not be reached, or answered
/// with an error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ReviewError(pub String);

/// Asks the kube-apiserver whether a user may do what a request asks.
pub trait AccessReviewer: Send + Sync {
    fn review<'a>(
        &'a self,
        attrs: &'a RequestAttributes,
        user: &'a UserInfo,
    ) -> BoxFuture<'a, Result<Decision, ReviewError>>;
}

/// The outcome for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allowed {
        reason: String,
    },
    /// 403, with the review's reason when it gave one.
    Forbidden {
        reason: String,
    },
    /// 403 as well (fail closed), and logged: the review could not be made.
    Unavailable(ReviewError),
}

impl Verdict {
    /// kube's audit annotation `authorization.k8s.io/decision`.
    pub fn decision(&self) -> &'static str {
        match self {
            Verdict::Allowed { .. } => "allow",
            Verdict::Forbidden { .. } | Verdict::Unavailable(_) => "forbid",
        }
    }

    /// kube's audit annotation `authorization.k8s.io/reason`.
    pub fn reason(&self) -> String {
        match self {
            Verdict::Allowed { reason } | Verdict::Forbidden { reason } => reason.clone(),
            Verdict::Unavailable(e) => e.0.clone(),
        }
    }
}

pub struct Authorizer {
    always_allow: Vec<String>,
    reviewer: Option<Arc<dyn AccessReviewer>>,
}

impl Authorizer {
    /// `always_allow`: paths allowed to everyone (`--authorization-always-allow-paths`; a
    /// trailing `*` matches a prefix). Without a reviewer, everything else is refused.
    pub fn new(always_allow: Vec<String>, reviewer: Option<Arc<dyn AccessReviewer>>) -> Self {
        Authorizer {
            always_allow,
            reviewer,
        }
    }

    /// Whether `path` is always allowed (no user needed at all).
    pub fn always_allowed(&self, path: &str) -> bool {
        self.always_allow.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => path.starts_with(prefix),
            None => path == p,
        })
    }

    pub async fn authorize(&self, attrs: &RequestAttributes, user: &UserInfo) -> Verdict {
        if !attrs.is_resource() && self.always_allowed(&attrs.path) {
            return Verdict::Allowed {
                reason: String::new(),
            };
        }
        if user.in_group(MASTERS) {
            return Verdict::Allowed {
                reason: String::new(),
            };
        }
        let Some(reviewer) = &self.reviewer else {
            return Verdict::Unavailable(ReviewError(
                "no authorizer is configured for this request".into(),
            ));
        };
        match reviewer.review(attrs, user).await {
            Ok(Decision::Allowed { reason }) => Verdict::Allowed { reason },
            Ok(Decision::Denied { reason } | Decision::NoOpinion { reason }) => {
                Verdict::Forbidden { reason }
            }
            Err(e) => Verdict::Unavailable(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Fixed(Result<Decision, ReviewError>, AtomicUsize);

    impl AccessReviewer for Fixed {
        fn review<'a>(
            &'a self,
            _: &'a RequestAttributes,
            _: &'a UserInfo,
        ) -> BoxFuture<'a, Result<Decision, ReviewError>> {
            self.1.fetch_add(1, Ordering::Relaxed);
            let r = self.0.clone();
            Box::pin(async move { r })
        }
    }

    fn get(path: &str) -> RequestAttributes {
        RequestAttributes::new("GET", path, None)
    }

    fn user(groups: &[&str]) -> UserInfo {
        UserInfo {
            name: "alice".into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..Default::default()
        }
    }

    fn verdict(a: &Authorizer, attrs: &RequestAttributes, u: &UserInfo) -> Verdict {
        futures_util::FutureExt::now_or_never(a.authorize(attrs, u)).unwrap()
    }

    #[test]
    fn health_paths_and_masters_need_no_review() {
        let r = Arc::new(Fixed(
            Ok(Decision::Denied {
                reason: "no".into(),
            }),
            AtomicUsize::new(0),
        ));
        let a = Authorizer::new(
            vec![
                "/healthz".into(),
                "/readyz".into(),
                "/livez".into(),
                "/debug/*".into(),
            ],
            Some(r.clone()),
        );
        for p in ["/healthz", "/readyz", "/livez", "/debug/pprof"] {
            assert!(
                matches!(verdict(&a, &get(p), &user(&[])), Verdict::Allowed { .. }),
                "{p}"
            );
        }
        let agents = get("/apis/ark.mckinsey.com/v1alpha1/namespaces/ns/agents");
        assert!(matches!(
            verdict(&a, &agents, &user(&["system:masters"])),
            Verdict::Allowed { .. }
        ));
        assert_eq!(r.1.load(Ordering::Relaxed), 0);
        assert_eq!(
            verdict(&a, &agents, &user(&[])),
            Verdict::Forbidden {
                reason: "no".into()
            }
        );
    }

    #[test]
    fn no_opinion_and_an_unreachable_reviewer_refuse() {
        let agents = get("/apis/ark.mckinsey.com/v1alpha1/namespaces/ns/agents");
        let no = Authorizer::new(
            vec![],
            Some(Arc::new(Fixed(
                Ok(Decision::NoOpinion {
                    reason: String::new(),
                }),
                AtomicUsize::new(0),
            ))),
        );
        assert!(matches!(
            verdict(&no, &agents, &user(&[])),
            Verdict::Forbidden { .. }
        ));
        let down = Authorizer::new(
            vec![],
            Some(Arc::new(Fixed(
                Err(ReviewError("connection refused".into())),
                AtomicUsize::new(0),
            ))),
        );
        let v = verdict(&down, &agents, &user(&[]));
        assert!(matches!(v, Verdict::Unavailable(_)));
        assert_eq!(v.decision(), "forbid");
    }
}
