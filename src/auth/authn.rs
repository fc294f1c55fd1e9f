//! Authentication, in kube's order: the front proxy (requestheader), client certificates,
//! bearer tokens (TokenReview), then anonymous.
//!
//! As k8s.io/apiserver's delegating authenticator: the first three form a union, tried in
//! order until one names a user. Their errors (a front-proxy certificate whose CN is not
//! allowed, a certificate of no known CA, a token the kube-apiserver rejects) are kept; if
//! nobody named a user and there was an error, the request is 401, never anonymous ("don't
//! consider a bad bearer token anonymous"). Only a request that presented nothing is
//! anonymous, and only when anonymous requests are enabled. Every user named by the union
//! also gets `system:authenticated`.

use std::sync::Arc;

use arc_swap::ArcSwap;
use futures_util::future::BoxFuture;
use rustls::pki_types::CertificateDer;

use super::requestheader::{Headers, RequestHeaderConfig};
use super::user::{UserInfo, AUTHENTICATED, UNAUTHENTICATED};
use super::x509::CaPool;

/// The CAs and header names in force. Replaced as a whole when the
/// `extension-apiserver-authentication` ConfigMap (or a flag's file) changes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuthnSources {
    /// Verifies users' client certificates (`client-ca-file`).
    pub client_ca: Option<CaPool>,
    /// Verifies the front proxy's certificate, and how it names users.
    pub requestheader: Option<(CaPool, RequestHeaderConfig)>,
}

/// Why a token review gave no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TokenReviewError(pub String);

/// Asks whether a bearer token names a user (a TokenReview to the kube-apiserver).
pub trait TokenReviewer: Send + Sync {
    /// `Ok(None)`: the token is not valid.
    fn review<'a>(
        &'a self,
        token: &'a str,
    ) -> BoxFuture<'a, Result<Option<UserInfo>, TokenReviewError>>;
}

/// How the user was established (for audit and logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    FrontProxy,
    ClientCertificate,
    Token,
    Anonymous,
}

/// An authenticated request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    pub user: UserInfo,
    pub method: Method,
    /// The bearer token was used (and is removed from the request, as kube does).
    pub used_token: bool,
}

/// A 401: nobody could be named, and why (for the log; the client sees kube's plain
/// `Unauthorized`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", if .0.is_empty() { "no credentials".to_string() } else { .0.join("; ") })]
pub struct Unauthorized(pub Vec<String>);

/// What a request presents.
pub struct Credentials<'a> {
    /// The verified-possession client chain from the TLS handshake, leaf first.
    pub peer: Option<&'a [CertificateDer<'static>]>,
    pub headers: &'a Headers<'a>,
}

pub struct Authenticator {
    sources: ArcSwap<AuthnSources>,
    tokens: Option<Arc<dyn TokenReviewer>>,
    anonymous: bool,
}

impl Authenticator {
    pub fn new(
        sources: AuthnSources,
        tokens: Option<Arc<dyn TokenReviewer>>,
        anonymous: bool,
    ) -> Authenticator {
        Authenticator {
            sources: ArcSwap::from_pointee(sources),
            tokens,
            anonymous,
        }
    }

    /// Replaces the CAs and header names; requests from now on use the new ones.
    pub fn set_sources(&self, sources: AuthnSources) {
        self.sources.store(Arc::new(sources));
    }

    pub fn sources(&self) -> Arc<AuthnSources> {
        self.sources.load_full()
    }

    /// Whether `name` carries identity from a front proxy: such headers are removed from
    /// every request, trusted or not.
    pub fn is_identity_header(&self, name: &str) -> bool {
        let sources = self.sources.load();
        match &sources.requestheader {
            Some((_, cfg)) => cfg.is_identity_header(name),
            None => RequestHeaderConfig::default().is_identity_header(name),
        }
    }

    pub async fn authenticate(&self, c: &Credentials<'_>) -> Result<Authenticated, Unauthorized> {
        let sources = self.sources.load_full();
        let mut errors = Vec::new();
        if let Some(chain) = c.peer.filter(|c| !c.is_empty()) {
            // 1. The front proxy: a certificate of the requestheader CA, a CN it allows.
            if let Some((ca, cfg)) = &sources.requestheader {
                match ca.verify(chain) {
                    Ok(subject) if !cfg.allows(&subject.common_name) => errors.push(format!(
                        "x509: subject with cn={} is not in the allowed list",
                        subject.common_name
                    )),
                    Ok(_) => {
                        if let Some(user) = cfg.user(c.headers) {
                            return Ok(done(user, Method::FrontProxy, false));
                        }
                    }
                    // Not a front proxy: perhaps a user's certificate.
                    Err(_) => {}
                }
            }
            // 2. A user's certificate: CN is the user, O the groups.
            if let Some(ca) = &sources.client_ca {
                match ca.verify(chain) {
                    Ok(s) if !s.common_name.is_empty() => {
                        let user = UserInfo {
                            name: s.common_name,
                            groups: s.organizations,
                            ..Default::default()
                        };
                        return Ok(done(user, Method::ClientCertificate, false));
                    }
                    Ok(_) => errors.push("x509: the certificate has no common name".into()),
                    Err(e) => errors.push(e.to_string()),
                }
            }
        }
        // 3. A bearer token, reviewed by the kube-apiserver.
        if let Some(token) = bearer(c.headers) {
            match &self.tokens {
                Some(t) => match t.review(token).await {
                    Ok(Some(user)) => return Ok(done(user, Method::Token, true)),
                    Ok(None) => errors.push("invalid bearer token".into()),
                    Err(e) => errors.push(format!("the token review failed: {e}")),
                },
                None => errors.push("invalid bearer token: no token authenticator".into()),
            }
        }
        if !errors.is_empty() {
            return Err(Unauthorized(errors));
        }
        // 4. Nothing presented, or a certificate no authenticator had an opinion about.
        if self.anonymous {
            return Ok(Authenticated {
                user: UserInfo::anonymous(),
                method: Method::Anonymous,
                used_token: false,
            });
        }
        Err(Unauthorized(Vec::new()))
    }
}

fn done(user: UserInfo, method: Method, used_token: bool) -> Authenticated {
    let already = user
        .groups
        .iter()
        .any(|g| g == AUTHENTICATED || g == UNAUTHENTICATED);
    Authenticated {
        user: if already { user } else { user.authenticated() },
        method,
        used_token,
    }
}

/// The token of `Authorization: Bearer <token>` (scheme in any case), as kube reads it.
fn bearer<'a>(headers: &'a Headers<'a>) -> Option<&'a str> {
    let value = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        .map(|(_, v)| v.trim())?;
    let mut parts = value.splitn(3, ' ');
    let scheme = parts.next()?;
    let token = parts.next()?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::super::x509::testing::Ca;
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Tokens(AtomicUsize);

    impl TokenReviewer for Tokens {
        fn review<'a>(
            &'a self,
            token: &'a str,
        ) -> BoxFuture<'a, Result<Option<UserInfo>, TokenReviewError>> {
            self.0.fetch_add(1, Ordering::Relaxed);
            Box::pin(async move {
                match token {
                    "good" => Ok(Some(UserInfo {
                        name: "tina".into(),
                        groups: vec!["dev".into()],
                        ..Default::default()
                    })),
                    "broken" => Err(TokenReviewError("connection refused".into())),
                    _ => Ok(None),
                }
            })
        }
    }

    struct Setup {
        client: Ca,
        proxy: Ca,
        auth: Authenticator,
    }

    fn setup(anonymous: bool) -> Setup {
        let client = Ca::new("client-ca");
        let proxy = Ca::new("front-proxy-ca");
        let sources = AuthnSources {
            client_ca: Some(CaPool::from_pem(&client.pem, "client-ca-file").unwrap()),
            requestheader: Some((
                CaPool::from_pem(&proxy.pem, "requestheader-client-ca-file").unwrap(),
                RequestHeaderConfig {
                    allowed_names: vec!["front-proxy-client".into()],
                    ..Default::default()
                },
            )),
        };
        let auth = Authenticator::new(
            sources,
            Some(Arc::new(Tokens(AtomicUsize::new(0)))),
            anonymous,
        );
        Setup {
            client,
            proxy,
            auth,
        }
    }

    fn run(
        a: &Authenticator,
        peer: Option<Vec<CertificateDer<'static>>>,
        headers: &[(&str, &str)],
    ) -> Result<Authenticated, Unauthorized> {
        let c = Credentials {
            peer: peer.as_deref(),
            headers,
        };
        futures_util::FutureExt::now_or_never(a.authenticate(&c)).unwrap()
    }

    const AS_BOB: [(&str, &str); 2] = [("X-Remote-User", "bob"), ("X-Remote-Group", "ops")];

    #[test]
    fn the_front_proxy_names_the_user_in_headers() {
        let s = setup(true);
        let cert = s.proxy.client("front-proxy-client", &[]);
        let a = run(&s.auth, Some(vec![cert]), &AS_BOB).unwrap();
        assert_eq!(a.method, Method::FrontProxy);
        assert_eq!(a.user.name, "bob");
        assert_eq!(a.user.groups, ["ops", AUTHENTICATED]);
    }

    #[test]
    fn headers_without_a_front_proxy_certificate_are_never_believed() {
        let s = setup(true);
        // No certificate: anonymous, whatever the headers say.
        let a = run(&s.auth, None, &AS_BOB).unwrap();
        assert_eq!(a.user, UserInfo::anonymous());
        // A user's certificate: that user, not the one the headers name.
        let a = run(
            &s.auth,
            Some(vec![s.client.client("carol", &["qa"])]),
            &AS_BOB,
        )
        .unwrap();
        assert_eq!(a.method, Method::ClientCertificate);
        assert_eq!(a.user.name, "carol");
        // A certificate of another CA: 401.
        let other = Ca::new("other");
        assert!(run(
            &s.auth,
            Some(vec![other.client("front-proxy-client", &[])]),
            &AS_BOB
        )
        .is_err());
    }

    #[test]
    fn a_front_proxy_whose_cn_is_not_allowed_is_401() {
        let s = setup(true);
        let e = run(
            &s.auth,
            Some(vec![s.proxy.client("aggregator", &[])]),
            &AS_BOB,
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("cn=aggregator is not in the allowed list"),
            "{e}"
        );
    }

    #[test]
    fn a_client_certificate_names_user_and_groups() {
        let s = setup(false);
        let a = run(
            &s.auth,
            Some(vec![s.client.client("dana", &["system:masters"])]),
            &[],
        )
        .unwrap();
        assert_eq!(a.user.name, "dana");
        assert_eq!(a.user.groups, ["system:masters", AUTHENTICATED]);
    }

    #[test]
    fn tokens_are_reviewed_and_an_invalid_one_is_401_not_anonymous() {
        let s = setup(true);
        let a = run(&s.auth, None, &[("Authorization", "Bearer good")]).unwrap();
        assert_eq!(
            (a.method, a.user.name.as_str(), a.used_token),
            (Method::Token, "tina", true)
        );
        assert!(run(&s.auth, None, &[("authorization", "bearer bad")]).is_err());
        let e = run(&s.auth, None, &[("Authorization", "Bearer broken")]).unwrap_err();
        assert!(e.to_string().contains("connection refused"));
        // Not a bearer token at all: nothing presented.
        let a = run(&s.auth, None, &[("Authorization", "Basic abc")]).unwrap();
        assert_eq!(a.method, Method::Anonymous);
    }

    #[test]
    fn without_anonymous_a_request_presenting_nothing_is_401() {
        let s = setup(false);
        assert_eq!(run(&s.auth, None, &[]), Err(Unauthorized(Vec::new())));
    }

    #[test]
    fn new_sources_apply_to_the_next_request() {
        let s = setup(false);
        let rotated = Ca::new("rotated-client-ca");
        let cert = rotated.client("erin", &[]);
        assert!(run(&s.auth, Some(vec![cert.clone()]), &[]).is_err());
        let mut sources = (*s.auth.sources()).clone();
        sources.client_ca = Some(CaPool::from_pem(&rotated.pem, "client-ca-file").unwrap());
        s.auth.set_sources(sources);
        assert_eq!(
            run(&s.auth, Some(vec![cert]), &[]).unwrap().user.name,
            "erin"
        );
    }
}
