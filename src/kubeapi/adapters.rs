//! The kube-apiserver clients behind the request path's traits (`auth::authn`,
//! `auth::authz`), and the authentication ConfigMap as `auth::sources` settings. The
//! request path stays free of kube-rs; this module is the seam.

use futures_util::future::BoxFuture;

use super::authconfig::{AuthenticationConfig, CaBundle};
use super::token::{TokenOutcome, TokenReviewer};
use super::AccessReviewer;
use crate::auth::attributes::RequestAttributes;
use crate::auth::authn::{self, TokenReviewError};
use crate::auth::authz::{self, Decision, ReviewError};
use crate::auth::sources::SourceSettings;
use crate::auth::user::UserInfo;

impl authn::TokenReviewer for TokenReviewer {
    fn review<'a>(
        &'a self,
        token: &'a str,
    ) -> BoxFuture<'a, Result<Option<UserInfo>, TokenReviewError>> {
        Box::pin(async move {
            match self.review_token(token).await {
                Ok(TokenOutcome::Authenticated(user)) => Ok(Some(user)),
                Ok(TokenOutcome::Unauthenticated { error }) => {
                    if let Some(e) = error {
                        tracing::debug!(error = %e, "token review: not authenticated");
                    }
                    Ok(None)
                }
                Err(e) => Err(TokenReviewError(e.to_string())),
            }
        })
    }
}

impl authz::AccessReviewer for AccessReviewer {
    fn review<'a>(
        &'a self,
        attrs: &'a RequestAttributes,
        user: &'a UserInfo,
    ) -> BoxFuture<'a, Result<Decision, ReviewError>> {
        Box::pin(async move {
            self.authorize(attrs, user)
                .await
                .map_err(|e| ReviewError(e.to_string()))
        })
    }
}

/// What the ConfigMap sets; an empty list is not set (kube's flags then apply defaults).
pub fn settings_of(cfg: &AuthenticationConfig) -> SourceSettings {
    const KEY: &str = "configmap kube-system/extension-apiserver-authentication";
    let bundle = |b: &Option<CaBundle>, key: &str| {
        b.as_ref()
            .map(|b| (b.pem().to_string(), format!("{KEY}, key {key}")))
    };
    let list = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
    let rh = &cfg.request_header;
    SourceSettings {
        client_ca: bundle(&cfg.client_ca, "client-ca-file"),
        requestheader_ca: bundle(&rh.client_ca, "requestheader-client-ca-file"),
        allowed_names: list(&rh.allowed_names),
        username_headers: list(&rh.username_headers),
        uid_headers: list(&rh.uid_headers),
        group_headers: list(&rh.group_headers),
        extra_headers_prefix: list(&rh.extra_headers_prefix),
    }
}
