//! Parses a resource URL into what it addresses, as kube's RequestInfoFactory does. Pure.

use crate::k8s::resource::GROUP;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestInfo {
    /// `""` for the core group (`/api/v1/...`).
    pub group: String,
    pub version: String,
    /// Namespace from the URL, if the URL has a `namespaces/{ns}` part.
    pub namespace: Option<String>,
    pub plural: String,
    pub name: Option<String>,
    pub subresource: Option<String>,
    /// The URL used the legacy `/watch/` prefix.
    pub watch_path: bool,
}

/// `segments` are the path segments after `/apis/`; `None` unless the group is ours.
pub fn parse(segments: &[&str]) -> Option<RequestInfo> {
    match segments.first() {
        Some(&g) if g == GROUP => parse_any_group(segments),
        _ => None,
    }
}

/// Like [`parse`] for any group; the core group's segments start with `""`.
pub fn parse_any_group(segments: &[&str]) -> Option<RequestInfo> {
    let [group, version, rest @ ..] = segments else {
        return None;
    };
    if version.is_empty() {
        return None;
    }
    let (watch_path, rest) = match rest {
        ["watch", tail @ ..] => (true, tail),
        _ => (false, rest),
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, tail @ ..] if !tail.is_empty() => (Some(ns.to_string()), tail),
        _ => (None, rest),
    };
    let (plural, name, subresource) = match rest {
        [plural] => (plural, None, None),
        [plural, name] => (plural, Some(name.to_string()), None),
        [plural, name, sub] => (plural, Some(name.to_string()), Some(sub.to_string())),
        _ => return None,
    };
    if plural.is_empty() || name.as_deref() == Some("") {
        return None;
    }
    Some(RequestInfo {
        group: group.to_string(),
        version: version.to_string(),
        namespace,
        plural: plural.to_string(),
        name,
        subresource,
        watch_path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaced_item_with_status() {
        let i = parse(&[
            "ark.mckinsey.com",
            "v1alpha1",
            "namespaces",
            "ns",
            "agents",
            "a",
            "status",
        ])
        .unwrap();
        assert_eq!(i.namespace.as_deref(), Some("ns"));
        assert_eq!(i.plural, "agents");
        assert_eq!(i.name.as_deref(), Some("a"));
        assert_eq!(i.subresource.as_deref(), Some("status"));
    }

    #[test]
    fn cluster_list_and_watch_prefix() {
        let i = parse(&["ark.mckinsey.com", "v1alpha1", "agents"]).unwrap();
        assert_eq!(i.namespace, None);
        assert!(i.name.is_none());
        let w = parse(&[
            "ark.mckinsey.com",
            "v1alpha1",
            "watch",
            "namespaces",
            "ns",
            "agents",
        ])
        .unwrap();
        assert!(w.watch_path);
        assert_eq!(w.namespace.as_deref(), Some("ns"));
    }

    #[test]
    fn other_groups_and_deep_paths_are_not_ours() {
        assert!(parse(&["apps", "v1", "deployments"]).is_none());
        assert!(parse(&["ark.mckinsey.com", "v1alpha1", "agents", "a", "status", "x"]).is_none());
    }
}
