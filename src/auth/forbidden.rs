//! The 403 a request gets when authorization does not allow it, worded as kube-apiserver
//! words it (`responsewriters.ForbiddenStatusError` and `forbiddenMessage` in
//! k8s.io/apiserver, `apierrors.NewForbidden` in apimachinery).
//!
//! kubectl prints the message as it is and people search for it, so every form is kube's:
//! the qualified resource and name in front, the user, the verb, the resource with its
//! subresource, the API group, the namespace or the cluster scope, and the authorizer's
//! reason after a colon. Pure: attributes in, an `ApiError` out.

use crate::k8s::status::{go_quote, ApiError, Details, StatusReason};

use super::attributes::RequestAttributes;
use super::user::UserInfo;

/// The Forbidden Status for `attrs` asked by `user`. `reason` is the authorizer's (a
/// SubjectAccessReview's `status.reason`); an empty one adds nothing.
pub fn forbidden(attrs: &RequestAttributes, user: &UserInfo, reason: &str) -> ApiError {
    // kube escapes what could read as HTML in its own words, but not in the reason.
    let mut message = sanitize(&forbidden_message(attrs, user));
    if !reason.is_empty() {
        message.push_str(": ");
        message.push_str(reason);
    }
    let (group, resource, name) = match &attrs.resource {
        Some(r) => (r.group.as_str(), r.resource.as_str(), r.name.as_str()),
        None => ("", "", ""),
    };
    // apimachinery's NewForbidden: the qualified resource and the name lead when known.
    let message = match (resource.is_empty() && group.is_empty(), name.is_empty()) {
        (true, _) => format!("forbidden: {message}"),
        (false, true) => format!("{} is forbidden: {message}", qualified(group, resource)),
        (false, false) => format!(
            "{} {} is forbidden: {message}",
            qualified(group, resource),
            go_quote(name)
        ),
    };
    let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let mut error = ApiError::new(403, StatusReason::Forbidden, message);
    // kube always sets details; its empty fields are omitted, so a non-resource request
    // shows `"details":{}`.
    error.details = Some(Box::new(Details {
        name: non_empty(name),
        group: non_empty(group),
        kind: non_empty(resource),
        ..Default::default()
    }));
    error
}

fn forbidden_message(attrs: &RequestAttributes, user: &UserInfo) -> String {
    let who = go_quote(&user.name);
    let verb = attrs.verb.as_str();
    let Some(r) = &attrs.resource else {
        return format!("User {who} cannot {verb} path {}", go_quote(&attrs.path));
    };
    let resource = if r.subresource.is_empty() {
        r.resource.clone()
    } else {
        format!("{}/{}", r.resource, r.subresource)
    };
    let (resource, group) = (go_quote(&resource), go_quote(&r.group));
    if r.namespace.is_empty() {
        format!("User {who} cannot {verb} resource {resource} in API group {group} at the cluster scope")
    } else {
        let ns = go_quote(&r.namespace);
        format!(
            "User {who} cannot {verb} resource {resource} in API group {group} in the namespace {ns}"
        )
    }
}

/// `schema.GroupResource.String()`: `agents.ark.mckinsey.com`, or `pods` for the core group.
fn qualified(group: &str, resource: &str) -> String {
    if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    }
}

/// kube's `sanitizer`: `&`, `<` and `>` as HTML entities, so an error page can never be
/// read as markup.
fn sanitize(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::attributes::{Resource, Verb};
    use crate::k8s::query::Query;
    use serde_json::json;

    fn user(name: &str) -> UserInfo {
        UserInfo {
            name: name.into(),
            ..Default::default()
        }
    }

    fn request(method: &str, path_and_query: &str) -> RequestAttributes {
        let (path, qs) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        let q = Query::parse(qs).expect("test query");
        RequestAttributes::new(method, path, Some(&q))
    }

    /// The attributes of kube's own test cases, built by hand as its tests build them.
    fn attrs(verb: Verb, path: &str, resource: Option<Resource>) -> RequestAttributes {
        RequestAttributes {
            verb,
            path: path.into(),
            resource,
            watch_path: false,
        }
    }

    fn resource(group: &str, plural: &str, sub: &str, ns: &str, name: &str) -> Option<Resource> {
        Some(Resource {
            group: group.into(),
            resource: plural.into(),
            subresource: sub.into(),
            namespace: ns.into(),
            name: name.into(),
            ..Default::default()
        })
    }

    // The five cases of kube's TestForbidden (responsewriters/errors_test.go), with the
    // whole Status each expects.
    #[test]
    fn kube_forbidden_test_cases_give_kubes_statuses() {
        let cases = [
            (
                attrs(Verb::NonResource("GET".into()), "/whatever", None),
                json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"forbidden: User \"NAME\" cannot GET path \"/whatever\"","reason":"Forbidden","details":{},"code":403}),
            ),
            (
                attrs(Verb::NonResource("GET".into()), "/<script>", None),
                json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"forbidden: User \"NAME\" cannot GET path \"/&lt;script&gt;\"","reason":"Forbidden","details":{},"code":403}),
            ),
            (
                attrs(Verb::Get, "", resource("", "pod", "", "", "")),
                json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"pod is forbidden: User \"NAME\" cannot get resource \"pod\" in API group \"\" at the cluster scope","reason":"Forbidden","details":{"kind":"pod"},"code":403}),
            ),
            (
                attrs(Verb::Get, "", resource("", "pod", "", "", "mypod")),
                json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"pod \"mypod\" is forbidden: User \"NAME\" cannot get resource \"pod\" in API group \"\" at the cluster scope","reason":"Forbidden","details":{"name":"mypod","kind":"pod"},"code":403}),
            ),
            (
                attrs(Verb::Get, "", resource("v2", "pod", "quota", "test", "")),
                json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"pod.v2 is forbidden: User \"NAME\" cannot get resource \"pod/quota\" in API group \"v2\" in the namespace \"test\"","reason":"Forbidden","details":{"group":"v2","kind":"pod"},"code":403}),
            ),
        ];
        for (a, want) in cases {
            assert_eq!(forbidden(&a, &user("NAME"), "").to_status(), want);
        }
    }

    const NS: &str = "/apis/ark.mckinsey.com/v1alpha1/namespaces/ns/agents";

    #[test]
    fn a_named_get_in_a_namespace_names_the_object_user_and_namespace() {
        let e = forbidden(&request("GET", &format!("{NS}/x")), &user("alice"), "");
        assert_eq!(
            e.message,
            "agents.ark.mckinsey.com \"x\" is forbidden: User \"alice\" cannot get resource \"agents\" in API group \"ark.mckinsey.com\" in the namespace \"ns\""
        );
        assert_eq!((e.code, e.reason), (403, StatusReason::Forbidden));
        assert_eq!(
            e.to_status()["details"],
            json!({"name": "x", "group": "ark.mckinsey.com", "kind": "agents"})
        );
    }

    #[test]
    fn the_reviews_reason_follows_a_colon() {
        let e = forbidden(
            &request("GET", &format!("{NS}/x")),
            &user("alice"),
            "no RBAC policy matched",
        );
        assert_eq!(
            e.message,
            "agents.ark.mckinsey.com \"x\" is forbidden: User \"alice\" cannot get resource \"agents\" in API group \"ark.mckinsey.com\" in the namespace \"ns\": no RBAC policy matched"
        );
    }

    #[test]
    fn a_cluster_scoped_request_says_at_the_cluster_scope() {
        let e = forbidden(
            &request("GET", "/apis/ark.mckinsey.com/v1alpha1/agents"),
            &user("alice"),
            "",
        );
        assert_eq!(
            e.message,
            "agents.ark.mckinsey.com is forbidden: User \"alice\" cannot list resource \"agents\" in API group \"ark.mckinsey.com\" at the cluster scope"
        );
        assert_eq!(
            e.to_status()["details"],
            json!({"group": "ark.mckinsey.com", "kind": "agents"})
        );
    }

    #[test]
    fn a_subresource_is_named_after_a_slash_and_the_kind_stays_the_resource() {
        let e = forbidden(
            &request("PATCH", &format!("{NS}/x/status")),
            &user("alice"),
            "",
        );
        assert_eq!(
            e.message,
            "agents.ark.mckinsey.com \"x\" is forbidden: User \"alice\" cannot patch resource \"agents/status\" in API group \"ark.mckinsey.com\" in the namespace \"ns\""
        );
        assert_eq!(e.to_status()["details"]["kind"], "agents");
    }

    #[test]
    fn a_list_in_a_namespace_has_no_name() {
        let e = forbidden(&request("GET", NS), &user("alice"), "");
        assert_eq!(
            e.message,
            "agents.ark.mckinsey.com is forbidden: User \"alice\" cannot list resource \"agents\" in API group \"ark.mckinsey.com\" in the namespace \"ns\""
        );
    }

    #[test]
    fn a_watch_of_one_object_by_field_selector_names_it() {
        let e = forbidden(
            &request(
                "GET",
                &format!("{NS}?watch=1&fieldSelector=metadata.name%3Dx"),
            ),
            &user("alice"),
            "",
        );
        assert_eq!(
            e.message,
            "agents.ark.mckinsey.com \"x\" is forbidden: User \"alice\" cannot watch resource \"agents\" in API group \"ark.mckinsey.com\" in the namespace \"ns\""
        );
    }

    #[test]
    fn a_non_resource_request_names_the_path_and_has_empty_details() {
        let e = forbidden(&request("GET", "/p"), &user("alice"), "");
        assert_eq!(
            e.message,
            "forbidden: User \"alice\" cannot get path \"/p\""
        );
        assert_eq!(e.to_status()["details"], json!({}));
    }

    #[test]
    fn quotes_in_names_are_escaped_as_go_quotes_them() {
        let e = forbidden(&request("GET", "/p"), &user("a\"b"), "");
        assert_eq!(
            e.message,
            "forbidden: User \"a\\\"b\" cannot get path \"/p\""
        );
    }

    #[test]
    fn markup_in_the_message_is_escaped_but_not_in_the_reason() {
        let e = forbidden(&request("GET", "/a&b"), &user("<x>"), "<why>");
        assert_eq!(
            e.message,
            "forbidden: User \"&lt;x&gt;\" cannot get path \"/a&amp;b\": <why>"
        );
    }
}
