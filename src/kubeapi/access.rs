//! Authorization by SubjectAccessReview (`authorization.k8s.io/v1`), as k8s.io/apiserver's
//! webhook authorizer asks it for a delegating server
//! (`plugin/pkg/authorizer/webhook/webhook.go` behind
//! `pkg/authorization/authorizerfactory/delegating.go`).
//!
//! The review's spec is built purely from the request's attributes and its user, field for
//! field as kube builds it; kube-apiserver's RBAC reads exactly these fields, so an omission
//! here would authorize a different request than the one served. Answers are cached under
//! the SHA-256 of the whole spec, allowed ones for `--authorization-webhook-cache-authorized-ttl`,
//! the others for `--authorization-webhook-cache-unauthorized-ttl`.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use k8s_openapi::api::authorization::v1::{
    FieldSelectorAttributes, LabelSelectorAttributes, NonResourceAttributes, ResourceAttributes,
    SubjectAccessReview, SubjectAccessReviewSpec, SubjectAccessReviewStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    FieldSelectorRequirement, LabelSelectorRequirement,
};
use kube::api::{Api, PostParams};
use sha2::{Digest, Sha256};

use super::cache::{Key, TtlCache, CAPACITY};
use super::config::{KubeApiConfig, RetryBackoff};
use super::connect::with_retries;
use super::{Endpoint, KubeApiError};
use crate::auth::attributes::{RequestAttributes, Resource, Verb};
use crate::auth::user::UserInfo;
use crate::k8s::selector::{FieldOp, FieldSelector, LabelSelector, Op};

pub use crate::auth::authz::Decision;

/// kube does not cache a review whose requester-controlled attributes are this long or
/// longer: a client could otherwise fill the cache with huge keys.
const MAX_CACHED_ATTRIBUTES: usize = 10_000;

/// Sends SubjectAccessReviews. Cheap to clone; clones share the cache.
#[derive(Clone)]
pub struct AccessReviewer {
    inner: Arc<Inner>,
}

struct Inner {
    client: kube::Client,
    authorized_ttl: Duration,
    unauthorized_ttl: Duration,
    retry: RetryBackoff,
    timeout: Duration,
    cache: Mutex<TtlCache<SubjectAccessReviewStatus>>,
}

impl AccessReviewer {
    pub fn new(client: kube::Client, config: &KubeApiConfig) -> Self {
        AccessReviewer {
            inner: Arc::new(Inner {
                client,
                authorized_ttl: config.authorized_ttl,
                unauthorized_ttl: config.unauthorized_ttl,
                retry: config.retry,
                timeout: config.request_timeout,
                cache: Mutex::new(TtlCache::new(CAPACITY)),
            }),
        }
    }

    /// Asks whether `user` may do what `attrs` describes. `Err` means the kube-apiserver
    /// gave no usable answer: the request must be refused (fail closed), never allowed.
    pub async fn authorize(
        &self,
        attrs: &RequestAttributes,
        user: &UserInfo,
    ) -> Result<Decision, KubeApiError> {
        let spec = access_review_spec(attrs, user);
        // serde_json cannot fail on these types (string keys only); if it ever did, the
        // review is still made, just not cached.
        let key = serde_json::to_vec(&spec)
            .ok()
            .filter(|_| should_cache(attrs))
            .map(|json| -> Key { Sha256::digest(json).into() });
        if let Some(key) = &key {
            if let Some(status) = lock(&self.inner.cache).get(key, Instant::now()) {
                return decision(&status);
            }
        }
        let body = SubjectAccessReview {
            metadata: Default::default(),
            spec,
            status: None,
        };
        let api: Api<SubjectAccessReview> = Api::all(self.inner.client.clone());
        let review = with_retries(
            Endpoint::SubjectAccessReview,
            &self.inner.retry,
            self.inner.timeout,
            || {
                let (api, body) = (api.clone(), body.clone());
                async move { api.create(&PostParams::default(), &body).await }
            },
        )
        .await?;
        let status = review.status.unwrap_or_default();
        if let Some(key) = key {
            let ttl = if status.allowed {
                self.inner.authorized_ttl
            } else {
                self.inner.unauthorized_ttl
            };
            lock(&self.inner.cache).insert(key, status.clone(), ttl, Instant::now());
        }
        decision(&status)
    }
}

/// The spec kube's webhook authorizer sends for a request. Empty strings and lists are
/// left out, as Go's `omitempty` leaves them out, so the JSON is the same.
pub fn access_review_spec(attrs: &RequestAttributes, user: &UserInfo) -> SubjectAccessReviewSpec {
    let mut spec = SubjectAccessReviewSpec {
        user: non_empty(&user.name),
        uid: non_empty(&user.uid),
        groups: (!user.groups.is_empty()).then(|| user.groups.clone()),
        extra: (!user.extra.is_empty()).then(|| user.extra.clone()),
        ..Default::default()
    };
    match &attrs.resource {
        Some(r) => spec.resource_attributes = Some(resource_attributes(attrs, r)),
        None => {
            spec.non_resource_attributes = Some(NonResourceAttributes {
                path: non_empty(&attrs.path),
                verb: non_empty(attrs.verb.as_str()),
            })
        }
    }
    spec
}

fn resource_attributes(attrs: &RequestAttributes, r: &Resource) -> ResourceAttributes {
    let mut out = ResourceAttributes {
        namespace: non_empty(&r.namespace),
        verb: non_empty(attrs.verb.as_str()),
        group: non_empty(&r.group),
        version: non_empty(&r.version),
        resource: non_empty(&r.resource),
        subresource: non_empty(&r.subresource),
        name: non_empty(&r.name),
        ..Default::default()
    };
    // kube reads selectors only for these verbs, and not for the deprecated `/watch/`
    // paths, whose single-object form takes none.
    let with_selectors = matches!(
        attrs.verb,
        Verb::List | Verb::Watch | Verb::DeleteCollection
    ) && !attrs.watch_path;
    if with_selectors {
        let fields = field_requirements(&r.field_selector);
        if !fields.is_empty() {
            out.field_selector = Some(FieldSelectorAttributes {
                raw_selector: None,
                requirements: Some(fields),
            });
        }
        let labels = label_requirements(&r.label_selector);
        if !labels.is_empty() {
            out.label_selector = Some(LabelSelectorAttributes {
                raw_selector: None,
                requirements: Some(labels),
            });
        }
    }
    out
}

/// kube sends parsed requirements only, never `rawSelector`. A selector that does not
/// parse sends nothing, so the review asks about the unrestricted list: selectors only
/// narrow, and the broader question is the safe one.
fn field_requirements(selector: &str) -> Vec<FieldSelectorRequirement> {
    if selector.is_empty() {
        return Vec::new();
    }
    let Ok(parsed) = FieldSelector::parse_any_field(selector) else {
        return Vec::new();
    };
    parsed
        .requirements
        .into_iter()
        .map(|r| FieldSelectorRequirement {
            key: r.field,
            operator: match r.op {
                FieldOp::Equals => "In",
                FieldOp::NotEquals => "NotIn",
            }
            .into(),
            values: Some(vec![r.value]),
        })
        .collect()
}

/// As [`field_requirements`]; values sorted as kube's parser leaves them, and left out for
/// `Exists` and `DoesNotExist`.
///
/// kube also parses `x>1` and `x<1` and leaves those terms out of the review; this crate's
/// parser refuses them (the server cannot serve them), so a selector with one sends no
/// label requirements at all: a broader question than kube's, never a narrower one.
fn label_requirements(selector: &str) -> Vec<LabelSelectorRequirement> {
    if selector.is_empty() {
        return Vec::new();
    }
    let Ok(parsed) = LabelSelector::parse(selector) else {
        return Vec::new();
    };
    parsed
        .requirements
        .into_iter()
        .map(|r| LabelSelectorRequirement {
            key: r.key,
            operator: match r.op {
                Op::Equals | Op::DoubleEquals | Op::In => "In",
                Op::NotEquals | Op::NotIn => "NotIn",
                Op::Exists => "Exists",
                Op::DoesNotExist => "DoesNotExist",
            }
            .into(),
            values: (!r.values.is_empty()).then_some(r.values),
        })
        .collect()
}

/// kube's `shouldCache`.
fn should_cache(attrs: &RequestAttributes) -> bool {
    let resource = attrs.resource.as_ref().map_or(0, |r| {
        r.namespace.len()
            + r.group.len()
            + r.version.len()
            + r.resource.len()
            + r.subresource.len()
            + r.name.len()
    });
    resource + attrs.verb.as_str().len() + attrs.path.len() < MAX_CACHED_ATTRIBUTES
}

/// The decision in a review's status. Both allowed and denied is an error in kube (the
/// request gets a 500), so it is one here.
pub fn decision(status: &SubjectAccessReviewStatus) -> Result<Decision, KubeApiError> {
    let reason = status.reason.clone().unwrap_or_default();
    match (status.allowed, status.denied.unwrap_or(false)) {
        (true, true) => Err(KubeApiError::InvalidResponse {
            endpoint: Endpoint::SubjectAccessReview,
            detail: "webhook subject access review returned both allow and deny response".into(),
        }),
        (_, true) => Ok(Decision::Denied { reason }),
        (true, false) => Ok(Decision::Allowed { reason }),
        (false, false) => Ok(Decision::NoOpinion { reason }),
    }
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k8s::query::Query;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn attrs(method: &str, path_and_query: &str) -> RequestAttributes {
        let (path, qs) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        let q = Query::parse(qs).expect("test query");
        RequestAttributes::new(method, path, Some(&q))
    }

    fn alice() -> UserInfo {
        UserInfo {
            name: "alice".into(),
            uid: "u-1".into(),
            groups: vec!["devs".into(), "system:authenticated".into()],
            extra: BTreeMap::from([("scopes".into(), vec!["a".into()])]),
        }
    }

    fn spec_json(method: &str, path: &str, user: &UserInfo) -> serde_json::Value {
        serde_json::to_value(access_review_spec(&attrs(method, path), user)).unwrap()
    }

    const NS: &str = "/apis/ark.mckinsey.com/v1alpha1/namespaces/ns/agents";

    #[test]
    fn a_named_get_sends_the_user_and_every_resource_attribute() {
        assert_eq!(
            spec_json("GET", &format!("{NS}/x"), &alice()),
            json!({
                "user": "alice", "uid": "u-1",
                "groups": ["devs", "system:authenticated"],
                "extra": {"scopes": ["a"]},
                "resourceAttributes": {
                    "namespace": "ns", "verb": "get", "group": "ark.mckinsey.com",
                    "version": "v1alpha1", "resource": "agents", "name": "x"
                }
            })
        );
    }

    #[test]
    fn a_status_patch_names_the_subresource() {
        let s = spec_json("PATCH", &format!("{NS}/x/status"), &alice());
        assert_eq!(
            s["resourceAttributes"],
            json!({
                "namespace": "ns", "verb": "patch", "group": "ark.mckinsey.com",
                "version": "v1alpha1", "resource": "agents", "subresource": "status", "name": "x"
            })
        );
    }

    #[test]
    fn a_list_sends_its_selectors_as_requirements_without_the_raw_text() {
        let s = spec_json(
            "GET",
            &format!("{NS}?labelSelector=team%3Da%2Ctier+notin+(z%2Cy)%2C!gone%2Chas&fieldSelector=spec.x%3D%3D1%2Cmetadata.namespace!%3Dns"),
            &alice(),
        );
        assert_eq!(
            s["resourceAttributes"],
            json!({
                "namespace": "ns", "verb": "list", "group": "ark.mckinsey.com",
                "version": "v1alpha1", "resource": "agents",
                "fieldSelector": {"requirements": [
                    {"key": "metadata.namespace", "operator": "NotIn", "values": ["ns"]},
                    {"key": "spec.x", "operator": "In", "values": ["1"]}
                ]},
                "labelSelector": {"requirements": [
                    {"key": "gone", "operator": "DoesNotExist"},
                    {"key": "has", "operator": "Exists"},
                    {"key": "team", "operator": "In", "values": ["a"]},
                    {"key": "tier", "operator": "NotIn", "values": ["y", "z"]}
                ]}
            })
        );
    }

    #[test]
    fn a_watch_by_name_sends_the_name_and_the_field_requirement() {
        let s = spec_json(
            "GET",
            &format!("{NS}?watch=true&fieldSelector=metadata.name%3Dx"),
            &alice(),
        );
        let r = &s["resourceAttributes"];
        assert_eq!(r["verb"], "watch");
        assert_eq!(r["name"], "x");
        assert_eq!(
            r["fieldSelector"],
            json!({"requirements": [{"key": "metadata.name", "operator": "In", "values": ["x"]}]})
        );
    }

    #[test]
    fn a_selector_that_does_not_parse_is_left_out() {
        let s = spec_json(
            "GET",
            &format!("{NS}?labelSelector=a%3D%3D%3Db&fieldSelector=nonsense"),
            &alice(),
        );
        let r = s["resourceAttributes"].as_object().unwrap();
        assert!(
            !r.contains_key("labelSelector") && !r.contains_key("fieldSelector"),
            "{r:?}"
        );
    }

    #[test]
    fn selectors_are_not_sent_for_gets_creates_or_legacy_watch_paths() {
        let s = spec_json(
            "GET",
            "/apis/ark.mckinsey.com/v1alpha1/watch/namespaces/ns/agents?labelSelector=a%3Db",
            &alice(),
        );
        assert_eq!(s["resourceAttributes"]["verb"], "watch");
        assert!(s["resourceAttributes"].get("labelSelector").is_none());
        let s = spec_json("GET", &format!("{NS}/x?labelSelector=a%3Db"), &alice());
        assert!(s["resourceAttributes"].get("labelSelector").is_none());
    }

    #[test]
    fn a_deletecollection_sends_its_selectors() {
        let s = spec_json("DELETE", &format!("{NS}?labelSelector=a%3Db"), &alice());
        assert_eq!(s["resourceAttributes"]["verb"], "deletecollection");
        assert_eq!(
            s["resourceAttributes"]["labelSelector"]["requirements"][0]["key"],
            "a"
        );
    }

    #[test]
    fn a_cluster_scoped_list_has_no_namespace_and_the_core_group_no_group() {
        let s = spec_json("GET", "/apis/ark.mckinsey.com/v1alpha1/agents", &alice());
        assert!(s["resourceAttributes"].get("namespace").is_none());
        let s = spec_json("GET", "/api/v1/namespaces/default", &alice());
        assert_eq!(
            s["resourceAttributes"],
            json!({"verb": "get", "version": "v1", "resource": "namespaces", "name": "default"})
        );
    }

    #[test]
    fn discovery_sends_non_resource_attributes() {
        let anonymous = UserInfo::anonymous();
        assert_eq!(
            spec_json("GET", "/apis/ark.mckinsey.com/v1alpha1", &anonymous),
            json!({
                "user": "system:anonymous", "groups": ["system:unauthenticated"],
                "nonResourceAttributes": {"path": "/apis/ark.mckinsey.com/v1alpha1", "verb": "get"}
            })
        );
    }

    #[test]
    fn decisions_follow_allowed_and_denied() {
        let status = |allowed, denied: Option<bool>, reason: &str| SubjectAccessReviewStatus {
            allowed,
            denied,
            reason: non_empty(reason),
            ..Default::default()
        };
        assert_eq!(
            decision(&status(true, None, "RBAC: allowed")),
            Ok(Decision::Allowed {
                reason: "RBAC: allowed".into()
            })
        );
        assert_eq!(
            decision(&status(false, Some(true), "no")),
            Ok(Decision::Denied {
                reason: "no".into()
            })
        );
        let d = decision(&status(false, None, "")).unwrap();
        assert_eq!(
            d,
            Decision::NoOpinion {
                reason: String::new()
            }
        );
        assert!(!d.is_allowed());
        assert!(matches!(
            decision(&status(true, Some(true), "")),
            Err(KubeApiError::InvalidResponse { .. })
        ));
    }

    #[test]
    fn very_long_attributes_are_not_cached() {
        assert!(should_cache(&attrs("GET", &format!("{NS}/x"))));
        let long = "a".repeat(MAX_CACHED_ATTRIBUTES);
        assert!(!should_cache(&attrs("GET", &format!("/{long}"))));
    }
}
