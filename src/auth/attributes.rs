//! What a request asks to do, computed once from its method, path and query, as kube's
//! `RequestInfoFactory` computes it. Authorization, audit, metrics and the handlers all read
//! this one value, so they can never disagree about a request's verb or target.
//!
//! Pure: strings in, a value out.

use crate::k8s::query::Query;
use crate::k8s::request_info::{self, RequestInfo};

/// A request's verb as authorization sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
    DeleteCollection,
    /// A non-resource request: the lower-cased HTTP method (`get`, `post`, ...).
    NonResource(String),
}

impl Verb {
    pub fn as_str(&self) -> &str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::DeleteCollection => "deletecollection",
            Verb::NonResource(m) => m,
        }
    }
}

impl Verb {
    /// For metric labels, which must stay few: a non-resource method on a resource URL is
    /// `unsupported`.
    pub fn label(&self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::DeleteCollection => "deletecollection",
            Verb::NonResource(_) => "unsupported",
        }
    }
}

impl std::fmt::Display for Verb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The target of a resource request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Resource {
    /// `""` for the core group.
    pub group: String,
    pub version: String,
    /// The plural resource name from the URL (`agents`).
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    /// The object's name: from the URL, or from a `metadata.name=` field selector of a list
    /// or watch (as kube sets it, so RBAC `resourceNames` can allow watching one object).
    pub name: String,
    /// The raw selectors of a list, watch or deletecollection.
    pub label_selector: String,
    pub field_selector: String,
}

/// What a request asks to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestAttributes {
    pub verb: Verb,
    /// The URL path, without the query.
    pub path: String,
    /// `Some` for a resource request, `None` for discovery, OpenAPI, health, metrics, ...
    pub resource: Option<Resource>,
    /// The URL used the legacy `/watch/` prefix.
    pub watch_path: bool,
}

impl RequestAttributes {
    /// From the method, the path and the decoded query (`None` when the query is malformed:
    /// the request is then a list or get, as in kube, and is answered 400 later).
    pub fn new(method: &str, path: &str, query: Option<&Query>) -> RequestAttributes {
        match resource_info(path) {
            Some(info) => resource_request(method, path, info, query),
            None => RequestAttributes {
                verb: Verb::NonResource(method.to_ascii_lowercase()),
                path: path.to_string(),
                resource: None,
                watch_path: false,
            },
        }
    }

    /// The parsed resource URL of an `ark.mckinsey.com` request, for the handlers.
    pub fn info(&self) -> Option<RequestInfo> {
        self.resource.as_ref()?;
        let segments: Vec<&str> = self
            .path
            .trim_start_matches("/apis/")
            .trim_end_matches('/')
            .split('/')
            .collect();
        request_info::parse(&segments)
    }

    pub fn is_resource(&self) -> bool {
        self.resource.is_some()
    }
}

/// The group, version and the rest of a resource path; `None` for non-resource paths.
/// Kube's rule: `/apis/{group}/{version}/{resource...}` and `/api/{version}/{resource...}`
/// are resource requests, anything shorter (discovery) is not.
fn resource_info(path: &str) -> Option<RequestInfo> {
    let trimmed = path.trim_end_matches('/');
    if let Some(rest) = trimmed.strip_prefix("/apis/") {
        let segments: Vec<&str> = rest.split('/').collect();
        if segments.len() < 3 {
            return None;
        }
        return request_info::parse_any_group(&segments);
    }
    if let Some(rest) = trimmed.strip_prefix("/api/") {
        let mut segments: Vec<&str> = vec![""];
        segments.extend(rest.split('/'));
        if segments.len() < 3 {
            return None;
        }
        return request_info::parse_any_group(&segments);
    }
    None
}

fn resource_request(
    method: &str,
    path: &str,
    info: RequestInfo,
    query: Option<&Query>,
) -> RequestAttributes {
    let named = info.name.is_some();
    let mut verb = match method {
        "POST" => Verb::Create,
        "GET" | "HEAD" => Verb::Get,
        "PUT" => Verb::Update,
        "PATCH" => Verb::Patch,
        "DELETE" => Verb::Delete,
        other => Verb::NonResource(other.to_ascii_lowercase()),
    };
    if info.watch_path && verb == Verb::Get {
        verb = Verb::Watch;
    }
    let mut name = info.name.clone().unwrap_or_default();
    let (mut label_selector, mut field_selector) = (String::new(), String::new());
    match verb {
        Verb::Delete if !named => verb = Verb::DeleteCollection,
        Verb::Get if !named => {
            verb = if query.and_then(|q| q.bool("watch")).unwrap_or(false) {
                Verb::Watch
            } else {
                Verb::List
            };
        }
        _ => {}
    }
    if matches!(verb, Verb::List | Verb::Watch | Verb::DeleteCollection) {
        if let Some(q) = query {
            label_selector = q.get("labelSelector").unwrap_or("").to_string();
            field_selector = q.get("fieldSelector").unwrap_or("").to_string();
        }
        if name.is_empty() && verb != Verb::DeleteCollection {
            if let Some(n) = exact_name(&field_selector) {
                name = n;
            }
        }
    }
    RequestAttributes {
        verb,
        path: path.to_string(),
        watch_path: info.watch_path,
        resource: Some(Resource {
            group: info.group,
            version: info.version,
            resource: info.plural,
            subresource: info.subresource.unwrap_or_default(),
            namespace: info.namespace.unwrap_or_default(),
            name,
            label_selector,
            field_selector,
        }),
    }
}

/// The name a field selector requires exactly (`metadata.name=x` or `==x`), if it is a valid
/// path segment, as kube's `RequiresExactMatch` and `IsValidPathSegmentName`.
fn exact_name(selector: &str) -> Option<String> {
    let mut found = None;
    for term in selector.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let (key, value) = if let Some((k, v)) = term.split_once("==") {
            (k, v)
        } else if let Some((k, v)) = term.split_once("!=") {
            if k.trim() == "metadata.name" {
                return None;
            }
            let _ = v;
            continue;
        } else if let Some((k, v)) = term.split_once('=') {
            (k, v)
        } else {
            continue;
        };
        if key.trim() == "metadata.name" {
            found = Some(value.trim().to_string());
        }
    }
    found.filter(|n| !n.is_empty() && n != "." && n != ".." && !n.contains(['/', '%']))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(method: &str, path_and_query: &str) -> RequestAttributes {
        let (path, qs) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        let q = Query::parse(qs).unwrap();
        RequestAttributes::new(method, path, Some(&q))
    }

    const NS: &str = "/apis/ark.mckinsey.com/v1alpha1/namespaces/ns/agents";

    #[test]
    fn verbs_follow_kube_request_info() {
        let cases = [
            ("GET", format!("{NS}/a"), Verb::Get),
            ("GET", NS.to_string(), Verb::List),
            ("GET", format!("{NS}?watch=true"), Verb::Watch),
            ("GET", format!("{NS}?watch=True"), Verb::Watch),
            ("GET", format!("{NS}?watch=false"), Verb::List),
            (
                "GET",
                "/apis/ark.mckinsey.com/v1alpha1/watch/namespaces/ns/agents".into(),
                Verb::Watch,
            ),
            (
                "GET",
                "/apis/ark.mckinsey.com/v1alpha1/watch/namespaces/ns/agents/a".into(),
                Verb::Watch,
            ),
            ("GET", format!("{NS}/a?watch=true"), Verb::Get),
            ("POST", NS.to_string(), Verb::Create),
            ("PUT", format!("{NS}/a"), Verb::Update),
            ("PATCH", format!("{NS}/a/status"), Verb::Patch),
            ("DELETE", format!("{NS}/a"), Verb::Delete),
            ("DELETE", NS.to_string(), Verb::DeleteCollection),
        ];
        for (m, p, want) in cases {
            assert_eq!(attrs(m, &p).verb, want, "{m} {p}");
        }
    }

    #[test]
    fn a_resource_request_names_its_target() {
        let a = attrs("PATCH", &format!("{NS}/a/status"));
        let r = a.resource.unwrap();
        assert_eq!(
            (
                r.group.as_str(),
                r.version.as_str(),
                r.resource.as_str(),
                r.subresource.as_str(),
                r.namespace.as_str(),
                r.name.as_str()
            ),
            (
                "ark.mckinsey.com",
                "v1alpha1",
                "agents",
                "status",
                "ns",
                "a"
            )
        );
        let c = attrs("GET", "/apis/ark.mckinsey.com/v1alpha1/arkconfigs/x");
        assert_eq!(c.resource.unwrap().namespace, "");
    }

    #[test]
    fn lists_carry_their_selectors_and_a_metadata_name_selector_names_the_object() {
        let a = attrs(
            "GET",
            &format!("{NS}?watch=1&labelSelector=team%3Da&fieldSelector=metadata.name%3Dx"),
        );
        assert_eq!(a.verb, Verb::Watch);
        let r = a.resource.unwrap();
        assert_eq!(r.label_selector, "team=a");
        assert_eq!(r.field_selector, "metadata.name=x");
        assert_eq!(r.name, "x");
        let b = attrs("GET", &format!("{NS}?fieldSelector=metadata.name!%3Dx"));
        assert_eq!(b.resource.unwrap().name, "");
    }

    #[test]
    fn discovery_openapi_and_health_are_non_resource_requests() {
        for p in [
            "/apis",
            "/apis/ark.mckinsey.com",
            "/apis/ark.mckinsey.com/v1alpha1",
            "/api",
            "/api/v1",
            "/openapi/v2",
            "/version",
            "/metrics",
            "/healthz",
        ] {
            let a = attrs("GET", p);
            assert!(a.resource.is_none(), "{p}");
            assert_eq!(a.verb, Verb::NonResource("get".into()));
        }
    }

    #[test]
    fn core_paths_are_resource_requests_of_the_core_group() {
        let a = attrs("GET", "/api/v1/namespaces/default");
        let r = a.resource.unwrap();
        assert_eq!(
            (r.group.as_str(), r.resource.as_str(), r.name.as_str()),
            ("", "namespaces", "default")
        );
        assert_eq!(a.verb, Verb::Get);
    }
}
