//! Discovery documents: the legacy `APIGroupList`/`APIGroup`/`APIResourceList` and the
//! aggregated `APIGroupDiscoveryList` (apidiscovery.k8s.io v2 and v2beta1).
//!
//! The aggregator fetches these with a short timeout every minute, so they are built once at
//! start and served from memory.

use serde_json::{json, Value};

use super::resource::{ResourceDef, Resources, GROUP};

/// Verbs served on every collection and item.
pub const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
/// Verbs served on the status subresource.
pub const STATUS_VERBS: &[&str] = &["get", "patch", "update"];

/// Pre-rendered discovery documents.
#[derive(Debug, Clone)]
pub struct Discovery {
    /// `/api`: core `v1` only.
    pub api_versions: Value,
    /// `/api/v1`: only what the server answers there, a GET of one namespace.
    pub core_v1: Value,
    pub group_list: Value,
    pub group: Value,
    /// version -> APIResourceList
    pub resource_lists: Vec<(String, Value)>,
    pub aggregated_v2: Value,
    pub aggregated_v2beta1: Value,
}

impl Discovery {
    pub fn build(resources: &Resources) -> Self {
        let versions = resources.versions();
        let gv = |v: &str| json!({"groupVersion": format!("{GROUP}/{v}"), "version": v});
        let group = json!({
            "kind": "APIGroup",
            "apiVersion": "v1",
            "name": GROUP,
            "versions": versions.iter().map(|v| gv(v)).collect::<Vec<_>>(),
            "preferredVersion": versions.first().map(|v| gv(v)).unwrap_or(Value::Null),
        });
        let mut group_in_list = group.clone();
        if let Some(m) = group_in_list.as_object_mut() {
            m.remove("kind");
            m.remove("apiVersion");
        }
        let group_list =
            json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [group_in_list]});
        let resource_lists = versions
            .iter()
            .map(|v| {
                let mut items = Vec::new();
                for d in resources.all().iter().filter(|d| &d.version == v) {
                    items.push(legacy_resource(d));
                    if d.has_status {
                        items.push(json!({
                            "name": format!("{}/status", d.plural),
                            "singularName": "",
                            "namespaced": d.namespaced,
                            "kind": d.kind,
                            "verbs": STATUS_VERBS,
                        }));
                    }
                }
                (
                    v.clone(),
                    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": format!("{GROUP}/{v}"), "resources": items}),
                )
            })
            .collect();
        let aggregated = |api_version: &str| {
            let versions: Vec<Value> = versions
                .iter()
                .map(|v| {
                    let res: Vec<Value> = resources
                        .all()
                        .iter()
                        .filter(|d| &d.version == v)
                        .map(|d| aggregated_resource(d))
                        .collect();
                    json!({"version": v, "resources": res, "freshness": "Current"})
                })
                .collect();
            json!({
                "kind": "APIGroupDiscoveryList",
                "apiVersion": api_version,
                "metadata": {},
                "items": [{"metadata": {"name": GROUP}, "versions": versions}],
            })
        };
        Discovery {
            api_versions: json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}),
            core_v1: json!({
                "kind": "APIResourceList",
                "groupVersion": "v1",
                "resources": [{
                    "name": "namespaces",
                    "singularName": "namespace",
                    "namespaced": false,
                    "kind": "Namespace",
                    "verbs": ["get"],
                }],
            }),
            group_list,
            group,
            resource_lists,
            aggregated_v2: aggregated("apidiscovery.k8s.io/v2"),
            aggregated_v2beta1: aggregated("apidiscovery.k8s.io/v2beta1"),
        }
    }

    pub fn resource_list(&self, version: &str) -> Option<&Value> {
        self.resource_lists
            .iter()
            .find(|(v, _)| v == version)
            .map(|(_, l)| l)
    }
}

fn legacy_resource(d: &ResourceDef) -> Value {
    let mut r = json!({
        "name": d.plural,
        "singularName": d.singular,
        "namespaced": d.namespaced,
        "kind": d.kind,
        "verbs": VERBS,
    });
    if !d.short_names.is_empty() {
        r["shortNames"] = json!(d.short_names);
    }
    if !d.categories.is_empty() {
        r["categories"] = json!(d.categories);
    }
    r
}

fn aggregated_resource(d: &ResourceDef) -> Value {
    let kind = json!({"group": d.group, "version": d.version, "kind": d.kind});
    let mut r = json!({
        "resource": d.plural,
        "responseKind": kind,
        "scope": if d.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": d.singular,
        "verbs": VERBS,
    });
    if !d.short_names.is_empty() {
        r["shortNames"] = json!(d.short_names);
    }
    if !d.categories.is_empty() {
        r["categories"] = json!(d.categories);
    }
    if d.has_status {
        r["subresources"] =
            json!([{"subresource": "status", "responseKind": kind, "verbs": STATUS_VERBS}]);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregated_discovery_lists_every_kind_with_status_subresource() {
        let r = Resources::builtin().unwrap();
        let d = Discovery::build(&r);
        let versions = d.aggregated_v2["items"][0]["versions"].as_array().unwrap();
        assert_eq!(versions[0]["version"], "v1alpha1");
        let n: usize = versions
            .iter()
            .map(|v| v["resources"].as_array().unwrap().len())
            .sum();
        assert_eq!(n, r.all().len());
        let agents = versions[0]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["resource"] == "agents")
            .unwrap();
        assert_eq!(agents["subresources"][0]["subresource"], "status");
        assert_eq!(agents["scope"], "Namespaced");
    }

    #[test]
    fn core_v1_lists_only_the_namespace_lookup_the_server_answers() {
        let d = Discovery::build(&Resources::builtin().unwrap());
        assert_eq!(d.api_versions["versions"], json!(["v1"]));
        let resources = d.core_v1["resources"].as_array().unwrap();
        assert_eq!(resources.len(), 1);
        assert_eq!(resources[0]["name"], "namespaces");
        assert_eq!(resources[0]["verbs"], json!(["get"]));
    }

    #[test]
    fn legacy_group_prefers_the_most_stable_version() {
        let d = Discovery::build(&Resources::builtin().unwrap());
        assert_eq!(d.group["preferredVersion"]["version"], "v1alpha1");
        let list = d.resource_list("v1alpha1").unwrap();
        assert!(list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "agents/status"));
        assert!(d.resource_list("v1prealpha1").is_some());
    }
}
