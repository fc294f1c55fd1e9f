//! The paths of the published documents: every verb the server serves for a kind, laid out
//! as the CRD builder's `buildRoute` lays them out (operation ids from apiserver's
//! `GetOperationIDAndTags`, descriptions from `descriptionFor`, `x-kubernetes-action` and
//! `x-kubernetes-group-version-kind` on each operation), in Swagger 2.0 or OpenAPI 3 form.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::{def_ref, definition_name, OpenApiResource, META};

/// One route, as the CRD builder's `buildRoute` describes it.
struct Route<'r> {
    method: &'static str,
    /// `x-kubernetes-action`.
    action: &'static str,
    /// The operation verb: `list`, `read`, `replace`, `patch`, `create`, `delete`, ...
    verb: &'static str,
    subresource: &'static str,
    response: &'r str,
    codes: &'static [u16],
    body: Option<(&'r str, bool)>,
    query: &'static [&'static str],
    operation: Option<String>,
}

const LIST_OPTIONS: &[&str] = &[
    "allowWatchBookmarks",
    "continue",
    "fieldSelector",
    "labelSelector",
    "limit",
    "resourceVersion",
    "resourceVersionMatch",
    "sendInitialEvents",
    "timeoutSeconds",
    "watch",
];
const WRITE_OPTIONS: &[&str] = &["dryRun", "fieldManager", "fieldValidation"];
const PATCH_OPTIONS: &[&str] = &["dryRun", "fieldManager", "fieldValidation", "force"];
const DELETE_OPTIONS: &[&str] = &[
    "dryRun",
    "gracePeriodSeconds",
    "ignoreStoreReadErrorWithClusterBreakingPotential",
    "orphanDependents",
    "propagationPolicy",
];

fn query_param(name: &str) -> (&'static str, &'static str) {
    match name {
        "allowWatchBookmarks" => ("boolean", "allowWatchBookmarks requests watch events with type \"BOOKMARK\"."),
        "continue" => ("string", "The continue option should be set when retrieving more results from the server, with the value the previous list returned."),
        "fieldSelector" => ("string", "A selector to restrict the list of returned objects by their fields. Defaults to everything."),
        "labelSelector" => ("string", "A selector to restrict the list of returned objects by their labels. Defaults to everything."),
        "limit" => ("integer", "limit is a maximum number of responses to return for a list call."),
        "resourceVersion" => ("string", "resourceVersion sets a constraint on what resource versions a request may be served from."),
        "resourceVersionMatch" => ("string", "resourceVersionMatch determines how resourceVersion is applied to list calls."),
        "sendInitialEvents" => ("boolean", "sendInitialEvents=true may be set together with watch=true to start the watch with synthetic events for the current state."),
        "timeoutSeconds" => ("integer", "Timeout for the list/watch call."),
        "watch" => ("boolean", "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications."),
        "dryRun" => ("string", "When present, indicates that modifications should not be persisted. Valid values are: - All: all dry run stages will be processed"),
        "fieldManager" => ("string", "fieldManager is a name associated with the actor or entity that is making these changes."),
        "fieldValidation" => ("string", "fieldValidation instructs the server on how to handle objects in the request containing unknown or duplicate fields: Ignore, Warn or Strict."),
        "force" => ("boolean", "Force is going to \"force\" Apply requests: re-acquire conflicting fields owned by other people."),
        "gracePeriodSeconds" => ("integer", "The duration in seconds before the object should be deleted."),
        "ignoreStoreReadErrorWithClusterBreakingPotential" => ("boolean", "if set to true, it will trigger an unsafe deletion of the resource in case the normal deletion flow fails with a corrupt object error."),
        "orphanDependents" => ("boolean", "Deprecated: please use the PropagationPolicy."),
        "propagationPolicy" => ("string", "Whether and how garbage collection will be performed: 'Orphan', 'Background' or 'Foreground'."),
        _ => ("string", ""),
    }
}

fn param(name: &str, location: &str, kind: &str, description: &str, v2: bool) -> Value {
    let mut p = if v2 {
        json!({"name": name, "in": location, "description": description, "type": kind, "uniqueItems": true})
    } else {
        json!({"name": name, "in": location, "description": description, "schema": {"type": kind, "uniqueItems": true}})
    };
    if location == "path" {
        p["required"] = json!(true);
    }
    p
}

/// apiserver's `ToValidOperationID`: drop what is not a letter (or a digit after the first
/// character), capitalizing the letter after each dropped run.
fn operation_id_part(s: &str, capitalize_first: bool) -> String {
    let mut out = String::new();
    let mut capitalize = capitalize_first;
    for (i, c) in s.char_indices() {
        if c.is_alphabetic() || c == '_' || (i != 0 && c.is_numeric()) {
            if capitalize {
                out.extend(c.to_uppercase());
                capitalize = false;
            } else {
                out.push(c);
            }
        } else {
            capitalize = true;
        }
    }
    out
}

/// apiserver's `GetOperationIDAndTags` for a `/apis/{group}/{version}/...` route.
fn operation_id_and_tag(operation: &str, group: &str, version: &str) -> (String, String) {
    // The shortest known verb prefix, so `deletecollection...` reads as `delete` + `collection...`.
    let verbs = [
        "get", "log", "read", "replace", "patch", "delete", "watch", "connect", "proxy", "list",
        "create",
    ];
    let prefix = verbs
        .iter()
        .find(|v| operation.starts_with(**v))
        .copied()
        .unwrap_or("");
    let group = group.strip_suffix(".k8s.io").unwrap_or(group);
    let id = format!(
        "{prefix}{}{}{}",
        operation_id_part(group, !prefix.is_empty()),
        operation_id_part(version, true),
        operation_id_part(&operation[prefix.len()..], true)
    );
    (
        id,
        format!(
            "{}_{}",
            operation_id_part(group, false),
            operation_id_part(version, false)
        ),
    )
}

/// The CRD builder's `descriptionFor`.
fn description(verb: &str, subresource: &str, kind: &str) -> String {
    let sub = if subresource.is_empty() {
        String::new()
    } else {
        format!(" {subresource} of")
    };
    let article = match verb {
        "list" => " objects of kind ".to_string(),
        "read" | "replace" | "patch" => " the specified ".to_string(),
        "create" | "delete" if kind.ends_with('s') && !kind.ends_with("ss") => " ".to_string(),
        "create" | "delete"
            if kind.starts_with(['A', 'E', 'I', 'O', 'U', 'a', 'e', 'i', 'o', 'u']) =>
        {
            " an ".to_string()
        }
        "create" | "delete" => " a ".to_string(),
        _ => String::new(),
    };
    match verb {
        "patch" => format!("partially update{sub}{article}{kind}"),
        "deletecollection" if !sub.is_empty() => format!("delete collection of{sub} a {kind}"),
        "deletecollection" => format!("delete collection of {kind}"),
        _ => format!("{verb}{sub}{article}{kind}"),
    }
}

fn operation(r: &OpenApiResource<'_>, route: &Route<'_>, v2: bool) -> Value {
    let title = route
        .subresource
        .chars()
        .next()
        .map(|c| c.to_uppercase().collect::<String>() + &route.subresource[1..]);
    let op = route.operation.clone().unwrap_or_else(|| {
        let namespaced = if r.namespaced { "Namespaced" } else { "" };
        format!(
            "{}{namespaced}{}{}",
            route.verb,
            r.kind,
            title.unwrap_or_default()
        )
    });
    let (id, tag) = operation_id_and_tag(&op, r.group, r.version);
    let mut params: Vec<Value> = route
        .query
        .iter()
        .map(|q| {
            let (kind, desc) = query_param(q);
            param(q, "query", kind, desc, v2)
        })
        .collect();
    let produces = ["application/json", "application/yaml"];
    let mut responses = Map::new();
    for code in route.codes {
        let text = match code {
            201 => "Created",
            202 => "Accepted",
            _ => "OK",
        };
        let schema = def_ref(route.response, v2);
        let response = if v2 {
            json!({"description": text, "schema": schema})
        } else {
            let content: Map<String, Value> = produces
                .iter()
                .map(|p| (p.to_string(), json!({"schema": schema})))
                .collect();
            json!({"description": text, "content": content})
        };
        responses.insert(code.to_string(), response);
    }
    responses.insert("401".into(), json!({"description": "Unauthorized"}));
    let mut o = json!({
        "description": description(route.verb, route.subresource, r.kind),
        "operationId": id,
        "tags": [tag],
    });
    if let Some((body, required)) = route.body {
        if v2 {
            let mut p = json!({"name": "body", "in": "body", "schema": def_ref(body, true)});
            if required {
                p["required"] = json!(true);
            }
            params.push(p);
        } else {
            o["requestBody"] = json!({"content": {"*/*": {"schema": def_ref(body, false)}}});
            if required {
                o["requestBody"]["required"] = json!(true);
            }
        }
    }
    if v2 {
        let consumes: &[&str] = if route.method == "patch" {
            &[
                "application/json-patch+json",
                "application/merge-patch+json",
                "application/apply-patch+yaml",
            ]
        } else {
            &["application/json", "application/yaml"]
        };
        o["consumes"] = json!(consumes);
        o["produces"] = json!(produces);
        o["schemes"] = json!(["https"]);
    }
    if !params.is_empty() {
        o["parameters"] = Value::Array(params);
    }
    o["responses"] = Value::Object(responses);
    o["x-kubernetes-action"] = json!(route.action);
    o["x-kubernetes-group-version-kind"] =
        json!({"group": r.group, "kind": r.kind, "version": r.version});
    o
}

fn path_item(r: &OpenApiResource<'_>, path: &str, routes: &[Route<'_>], v2: bool) -> Value {
    let mut item = Map::new();
    for route in routes {
        item.insert(route.method.to_string(), operation(r, route, v2));
    }
    let mut params = Vec::new();
    if path.contains("{name}") {
        params.push(param(
            "name",
            "path",
            "string",
            &format!("name of the {}", r.kind),
            v2,
        ));
    }
    if path.contains("{namespace}") {
        params.push(param(
            "namespace",
            "path",
            "string",
            "object name and auth scope, such as for teams and projects",
            v2,
        ));
    }
    params.push(param(
        "pretty",
        "query",
        "string",
        "If 'true', then the output is pretty printed.",
        v2,
    ));
    item.insert("parameters".into(), Value::Array(params));
    Value::Object(item)
}

/// The paths of every verb the server serves for one kind, as the CRD builder lays them out.
pub(super) fn add_paths(paths: &mut BTreeMap<String, Value>, r: &OpenApiResource<'_>, v2: bool) {
    let gv = format!("/apis/{}/{}", r.group, r.version);
    let kind = definition_name(r.group, r.version, r.kind);
    let list = definition_name(r.group, r.version, r.list_kind);
    let status = format!("{META}.Status");
    let delete_options = format!("{META}.DeleteOptions");
    let patch = format!("{META}.Patch");
    let route = |method, action, verb, subresource, response, codes, body, query| Route {
        method,
        action,
        verb,
        subresource,
        response,
        codes,
        body,
        query,
        operation: None,
    };
    let root = if r.namespaced {
        let mut all = route("get", "list", "list", "", &list, &[200], None, LIST_OPTIONS);
        all.operation = Some(format!("list{}ForAllNamespaces", r.kind));
        let p = format!("{gv}/{}", r.plural);
        paths.insert(p.clone(), path_item(r, &p, &[all], v2));
        format!("{gv}/namespaces/{{namespace}}/{}", r.plural)
    } else {
        format!("{gv}/{}", r.plural)
    };
    let collection = [
        route("get", "list", "list", "", &list, &[200], None, LIST_OPTIONS),
        route(
            "post",
            "post",
            "create",
            "",
            &kind,
            &[200, 201, 202],
            Some((&kind, true)),
            WRITE_OPTIONS,
        ),
        route(
            "delete",
            "deletecollection",
            "deletecollection",
            "",
            &status,
            &[200],
            None,
            LIST_OPTIONS,
        ),
    ];
    paths.insert(root.clone(), path_item(r, &root, &collection, v2));
    let item = format!("{root}/{{name}}");
    let item_routes = [
        route(
            "get",
            "get",
            "read",
            "",
            &kind,
            &[200],
            None,
            &["resourceVersion"],
        ),
        route(
            "put",
            "put",
            "replace",
            "",
            &kind,
            &[200, 201],
            Some((&kind, true)),
            WRITE_OPTIONS,
        ),
        route(
            "delete",
            "delete",
            "delete",
            "",
            &status,
            &[200, 202],
            Some((&delete_options, false)),
            DELETE_OPTIONS,
        ),
        route(
            "patch",
            "patch",
            "patch",
            "",
            &kind,
            &[200],
            Some((&patch, true)),
            PATCH_OPTIONS,
        ),
    ];
    paths.insert(item.clone(), path_item(r, &item, &item_routes, v2));
    if r.has_status {
        let sub = format!("{item}/status");
        let status_routes = [
            route(
                "get",
                "get",
                "read",
                "status",
                &kind,
                &[200],
                None,
                &["resourceVersion"],
            ),
            route(
                "put",
                "put",
                "replace",
                "status",
                &kind,
                &[200, 201],
                Some((&kind, true)),
                WRITE_OPTIONS,
            ),
            route(
                "patch",
                "patch",
                "patch",
                "status",
                &kind,
                &[200],
                Some((&patch, true)),
                PATCH_OPTIONS,
            ),
        ];
        paths.insert(sub.clone(), path_item(r, &sub, &status_routes, v2));
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{agent_schema, resources};
    use super::super::{openapi_v2, openapi_v3_group_version};
    use serde_json::json;

    #[test]
    fn paths_cover_every_served_verb_with_kube_operation_ids() {
        let s = agent_schema();
        let doc = openapi_v2(&resources(&s));
        let paths = &doc["paths"];
        let ns = "/apis/ark.mckinsey.com/v1alpha1/namespaces/{namespace}/agents";
        let action = |p: &str, m: &str| {
            paths[p][m]["x-kubernetes-action"]
                .as_str()
                .map(str::to_string)
        };
        let id = |p: &str, m: &str| {
            paths[p][m]["operationId"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        };
        assert_eq!(
            action("/apis/ark.mckinsey.com/v1alpha1/agents", "get").as_deref(),
            Some("list")
        );
        assert_eq!(
            id("/apis/ark.mckinsey.com/v1alpha1/agents", "get"),
            "listArkMckinseyComV1alpha1AgentForAllNamespaces"
        );
        assert_eq!(id(ns, "get"), "listArkMckinseyComV1alpha1NamespacedAgent");
        assert_eq!(action(ns, "post").as_deref(), Some("post"));
        assert_eq!(
            id(ns, "delete"),
            "deleteArkMckinseyComV1alpha1CollectionNamespacedAgent"
        );
        assert_eq!(action(ns, "delete").as_deref(), Some("deletecollection"));
        let item = format!("{ns}/{{name}}");
        for (m, a) in [
            ("get", "get"),
            ("put", "put"),
            ("patch", "patch"),
            ("delete", "delete"),
        ] {
            assert_eq!(action(&item, m).as_deref(), Some(a));
        }
        assert_eq!(
            paths[&item]["get"]["description"],
            "read the specified Agent"
        );
        assert_eq!(paths[ns]["post"]["description"], "create an Agent");
        assert_eq!(
            paths[&item]["patch"]["consumes"][1],
            "application/merge-patch+json"
        );
        let status = format!("{item}/status");
        assert_eq!(
            id(&status, "get"),
            "readArkMckinseyComV1alpha1NamespacedAgentStatus"
        );
        assert_eq!(
            paths[&status]["patch"]["description"],
            "partially update status of the specified Agent"
        );
        assert!(paths[&status].get("delete").is_none());
        // Cluster-scoped, without status.
        let cluster = "/apis/ark.mckinsey.com/v1prealpha1/executionengines";
        assert_eq!(
            id(cluster, "get"),
            "listArkMckinseyComV1prealpha1ExecutionEngine"
        );
        assert_eq!(
            paths[cluster]["post"]["description"],
            "create an ExecutionEngine"
        );
        assert!(paths.get(format!("{cluster}/{{name}}/status")).is_none());
        assert_eq!(paths[ns]["get"]["tags"], json!(["arkMckinseyCom_v1alpha1"]));
        assert_eq!(
            paths[ns]["get"]["responses"]["200"]["schema"]["$ref"],
            "#/definitions/com.mckinsey.ark.v1alpha1.AgentList"
        );
    }

    #[test]
    fn v3_operations_use_request_bodies_and_content() {
        let s = agent_schema();
        let doc = openapi_v3_group_version(&resources(&s), "ark.mckinsey.com", "v1alpha1").unwrap();
        let post =
            &doc["paths"]["/apis/ark.mckinsey.com/v1alpha1/namespaces/{namespace}/agents"]["post"];
        assert_eq!(
            post["requestBody"]["content"]["*/*"]["schema"]["$ref"],
            "#/components/schemas/com.mckinsey.ark.v1alpha1.Agent"
        );
        assert_eq!(post["requestBody"]["required"], true);
        assert!(
            post["responses"]["201"]["content"]["application/json"]["schema"]["$ref"].is_string()
        );
        assert_eq!(post["x-kubernetes-group-version-kind"]["kind"], "Agent");
        let p = &doc["paths"]["/apis/ark.mckinsey.com/v1alpha1/namespaces/{namespace}/agents"]
            ["parameters"];
        assert_eq!(p[0]["schema"]["type"], "string");
        assert_eq!(p[0]["required"], true);
    }
}
