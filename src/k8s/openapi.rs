//! `/openapi/v2` and `/openapi/v3` documents for the served kinds, shaped as
//! apiextensions-apiserver's `controller/openapi/builder` shapes them for CRDs, so that
//! `kubectl explain` (OpenAPI v3 first, v2 as fallback), client-side validation and code
//! generators see the same thing they would see for a CRD on kube-apiserver.
//!
//! Per kind: the published schema (the structural part of the CRD schema, int-or-string
//! unfolded into `anyOf`), with `metadata` pointing at `ObjectMeta`, `apiVersion`/`kind` as
//! TypeMeta documents them, embedded resources given the same three properties, and
//! `x-kubernetes-group-version-kind`; a `<Kind>List` schema; and the paths of every verb the
//! server serves, with `x-kubernetes-action`. Definitions are named like kube names CRD types
//! (`com.mckinsey.ark.v1alpha1.Agent`). Non-structural schemas are published as they come
//! (kube would publish only `type: object` for them); the project's CRDs are structural.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

#[path = "openapi_meta.rs"]
mod meta;
#[path = "openapi_paths.rs"]
mod paths;

use meta::META;

/// One served kind at one version.
pub struct OpenApiResource<'a> {
    pub group: &'a str,
    pub version: &'a str,
    pub kind: &'a str,
    pub list_kind: &'a str,
    pub plural: &'a str,
    pub namespaced: bool,
    pub has_status: bool,
    /// The version's `openAPIV3Schema`.
    pub schema: &'a Value,
}

impl<'a> From<&'a crate::k8s::resource::ResourceDef> for OpenApiResource<'a> {
    fn from(d: &'a crate::k8s::resource::ResourceDef) -> Self {
        OpenApiResource {
            group: &d.group,
            version: &d.version,
            kind: &d.kind,
            list_kind: &d.list_kind,
            plural: &d.plural,
            namespaced: d.namespaced,
            has_status: d.has_status,
            schema: &d.schema_json,
        }
    }
}

const OBJECT_META_DESCRIPTION: &str = "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";
const LIST_META_DESCRIPTION: &str = "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";

/// Swagger 2.0 document for `GET /openapi/v2`.
pub fn openapi_v2(resources: &[OpenApiResource<'_>]) -> Value {
    let mut definitions: BTreeMap<String, Value> = meta::definitions().into_iter().collect();
    let mut paths = BTreeMap::new();
    for r in resources {
        definitions.insert(
            definition_name(r.group, r.version, r.kind),
            kind_schema(r, true),
        );
        definitions.insert(
            definition_name(r.group, r.version, r.list_kind),
            list_schema(r, true),
        );
        paths::add_paths(&mut paths, r, true);
    }
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes CRD Swagger", "version": "v0.1.0"},
        "paths": to_map(paths),
        "definitions": to_map(definitions),
    })
}

/// `GET /openapi/v3`: one entry per served group-version, pointing at its document with the
/// document's hash, as kube-openapi's v3 handler lists them. Like kube-apiserver for CRDs,
/// no group-only (`apis/<group>`) document is listed.
pub fn openapi_v3_index(resources: &[OpenApiResource<'_>]) -> Value {
    let mut paths = BTreeMap::new();
    for r in resources {
        let key = format!("apis/{}/{}", r.group, r.version);
        if paths.contains_key(&key) {
            continue;
        }
        if let Some(doc) = openapi_v3_group_version(resources, r.group, r.version) {
            let url = format!("/openapi/v3/{key}?hash={}", content_hash(&doc));
            paths.insert(key, json!({ "serverRelativeURL": url }));
        }
    }
    json!({ "paths": to_map(paths) })
}

/// OpenAPI 3.0 document for `GET /openapi/v3/apis/{group}/{version}`; `None` if nothing is
/// served at that group-version.
pub fn openapi_v3_group_version(
    resources: &[OpenApiResource<'_>],
    group: &str,
    version: &str,
) -> Option<Value> {
    let selected: Vec<&OpenApiResource<'_>> = resources
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if selected.is_empty() {
        return None;
    }
    let mut schemas: BTreeMap<String, Value> = meta::definitions()
        .into_iter()
        .map(|(name, def)| (name, schema_to_v3(&def)))
        .collect();
    let mut paths = BTreeMap::new();
    for r in selected {
        schemas.insert(
            definition_name(r.group, r.version, r.kind),
            schema_to_v3(&kind_schema(r, false)),
        );
        schemas.insert(
            definition_name(r.group, r.version, r.list_kind),
            schema_to_v3(&list_schema(r, false)),
        );
        paths::add_paths(&mut paths, r, false);
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes CRD Swagger", "version": "v0.1.0"},
        "paths": to_map(paths),
        "components": {"schemas": to_map(schemas)},
    }))
}

/// The hash kube-openapi puts in `serverRelativeURL` and the ETag: SHA-512 of the document
/// as served (compact JSON, which is how the server must write it), in uppercase hex.
pub fn content_hash(doc: &Value) -> String {
    let bytes = serde_json::to_vec(doc).unwrap_or_default();
    use sha2::Digest;
    sha2::Sha512::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

/// kube's `ToRESTFriendlyName` of `group/version.Kind`: the group's DNS labels reversed.
pub fn definition_name(group: &str, version: &str, kind: &str) -> String {
    let group: Vec<&str> = group.split('.').rev().collect();
    format!("{}.{version}.{kind}", group.join("."))
}

fn to_map(m: BTreeMap<String, Value>) -> Value {
    Value::Object(m.into_iter().collect())
}

fn def_ref(name: &str, v2: bool) -> Value {
    let prefix = if v2 {
        "#/definitions/"
    } else {
        "#/components/schemas/"
    };
    json!({ "$ref": format!("{prefix}{name}") })
}

/// A reference to a definition with a description, in v2 form (`schema_to_v3` wraps it).
fn described_ref(name: &str, description: &str) -> Value {
    json!({ "$ref": format!("#/definitions/{name}"), "description": description })
}

fn set_property(s: &mut Value, name: &str, value: Value) {
    if !s["properties"].is_object() {
        s["properties"] = json!({});
    }
    s["properties"][name] = value;
}

// ---------------------------------------------------------------------------------------
// Schemas
// ---------------------------------------------------------------------------------------

/// `buildKubeNative`.
fn kind_schema(r: &OpenApiResource<'_>, v2: bool) -> Value {
    let root_preserves =
        r.schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    // In v2 a schema that preserves unknown fields at the root is published as a bare
    // object: kubectl would otherwise reject every field the schema does not list.
    let mut s = if !r.schema.is_object() || (v2 && root_preserves) {
        json!({ "type": "object" })
    } else {
        let mut s = published(r.schema, v2);
        set_property(
            &mut s,
            "metadata",
            described_ref(&format!("{META}.ObjectMeta"), OBJECT_META_DESCRIPTION),
        );
        let (api_version, kind) = meta::type_meta();
        set_property(&mut s, "apiVersion", api_version);
        set_property(&mut s, "kind", kind);
        add_embedded_properties(&mut s, v2);
        s
    };
    s["x-kubernetes-group-version-kind"] =
        json!([{ "group": r.group, "kind": r.kind, "version": r.version }]);
    s
}

/// `buildListSchema`.
fn list_schema(r: &OpenApiResource<'_>, v2: bool) -> Value {
    let (api_version, kind) = meta::type_meta();
    json!({
        "description": format!("{} is a list of {}", r.list_kind, r.kind),
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": api_version,
            "items": {
                "type": "array",
                "description": format!("List of {}. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md", r.plural),
                "items": def_ref(&definition_name(r.group, r.version, r.kind), v2),
            },
            "kind": kind,
            "metadata": described_ref(&format!("{META}.ListMeta"), LIST_META_DESCRIPTION),
        },
        "x-kubernetes-group-version-kind": [{ "group": r.group, "kind": r.list_kind, "version": r.version }],
    })
}

/// Keywords a structural schema publishes as they are.
const KEPT: &[&str] = &[
    "description",
    "type",
    "format",
    "title",
    "default",
    "maximum",
    "minimum",
    "maxLength",
    "minLength",
    "pattern",
    "maxItems",
    "minItems",
    "multipleOf",
    "enum",
    "maxProperties",
    "minProperties",
    "required",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-list-type",
    "x-kubernetes-map-type",
    "x-kubernetes-validations",
];

/// Boolean keywords kube publishes only when true.
const FLAGS: &[&str] = &[
    "nullable",
    "uniqueItems",
    "exclusiveMaximum",
    "exclusiveMinimum",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-embedded-resource",
    "x-kubernetes-int-or-string",
];

/// The structural schema as `Structural.ToKubeOpenAPI` writes it after `Unfold`, converted
/// by `ToStructuralOpenAPIV2` for v2. Anything else (`example`, `externalDocs`, `$schema`,
/// ...) is not part of a structural schema and is not published.
fn published(raw: &Value, v2: bool) -> Value {
    let Some(m) = raw.as_object() else {
        return json!({});
    };
    let mut out = Map::new();
    for (k, v) in m {
        let value = match k.as_str() {
            "properties" => match v.as_object() {
                Some(props) => Value::Object(
                    props
                        .iter()
                        .map(|(n, p)| (n.clone(), published(p, v2)))
                        .collect(),
                ),
                None => continue,
            },
            "items" | "not" if v.is_object() => published(v, v2),
            "additionalProperties" if v.is_boolean() => v.clone(),
            "additionalProperties" if v.is_object() => published(v, v2),
            "allOf" | "anyOf" | "oneOf" => match v.as_array() {
                Some(list) => Value::Array(list.iter().map(|s| published(s, v2)).collect()),
                None => continue,
            },
            key if FLAGS.contains(&key) && v == &Value::Bool(true) => v.clone(),
            key if KEPT.contains(&key) => v.clone(),
            _ => continue,
        };
        out.insert(k.clone(), value);
    }
    unfold_int_or_string(&mut out);
    if v2 {
        to_v2(&mut out, m);
    }
    Value::Object(out)
}

/// `Structural.Unfold`: int-or-string gains `anyOf: [integer, string]` unless the schema
/// already says so, in which case nothing changes.
fn unfold_int_or_string(s: &mut Map<String, Value>) {
    if s.get("x-kubernetes-int-or-string") != Some(&Value::Bool(true)) {
        return;
    }
    let pattern = json!([{ "type": "integer" }, { "type": "string" }]);
    let in_all_of = s
        .get("allOf")
        .and_then(|a| a.get(0))
        .and_then(|f| f.get("anyOf"))
        == Some(&pattern);
    match s.get("anyOf") {
        Some(any) if *any == pattern => {}
        _ if in_all_of => {}
        None => {
            s.insert("anyOf".into(), pattern);
        }
        Some(_) => {
            let mut all = vec![json!({ "anyOf": pattern })];
            all.extend(
                s.get("allOf")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
            );
            s.insert("allOf".into(), Value::Array(all));
        }
    }
}

/// `ToStructuralOpenAPIV2`: drop what Swagger 2.0 (and kubectl's v2 reader) cannot take.
fn to_v2(s: &mut Map<String, Value>, raw: &Map<String, Value>) {
    for k in ["allOf", "oneOf", "anyOf", "not"] {
        s.remove(k);
    }
    let is_true = |m: &Map<String, Value>, k: &str| m.get(k) == Some(&Value::Bool(true));
    if is_true(s, "nullable") {
        // v2 has no nullable; an untyped schema accepts null, and kubectl breaks on untyped
        // schemas with items or properties.
        for k in ["type", "nullable", "items", "properties"] {
            s.remove(k);
        }
    }
    if is_true(s, "x-kubernetes-preserve-unknown-fields") {
        s.remove("items");
        s.remove("properties");
    }
    if !s.contains_key("items") && s.get("type") == Some(&json!("array")) {
        s.remove("type");
    }
    // A nullable property must not be required, since v2 cannot say that null is allowed.
    if let Some(props) = s.get("properties").and_then(Value::as_object) {
        let raw_props = raw.get("properties").and_then(Value::as_object);
        let nullable: Vec<&String> = props
            .keys()
            .filter(|name| {
                raw_props
                    .and_then(|p| p.get(name.as_str()))
                    .is_some_and(is_nullable)
            })
            .collect();
        if let Some(Value::Array(required)) = s.get("required") {
            let kept: Vec<Value> = required
                .iter()
                .filter(|r| !nullable.iter().any(|n| r.as_str() == Some(n.as_str())))
                .cloned()
                .collect();
            if kept.is_empty() {
                s.remove("required");
            } else {
                s.insert("required".into(), Value::Array(kept));
            }
        }
    }
    if raw.get("additionalProperties").is_some_and(is_nullable) {
        s.remove("required");
    }
}

fn is_nullable(v: &Value) -> bool {
    v.get("nullable") == Some(&Value::Bool(true))
}

/// `addEmbeddedProperties`: embedded resources get apiVersion, kind and metadata, and
/// require apiVersion and kind.
fn add_embedded_properties(s: &mut Value, v2: bool) {
    if let Some(props) = s.get_mut("properties").and_then(Value::as_object_mut) {
        for p in props.values_mut() {
            add_embedded_properties(p, v2);
        }
    }
    for k in ["items", "additionalProperties"] {
        if let Some(child) = s.get_mut(k).filter(|c| c.is_object()) {
            add_embedded_properties(child, v2);
        }
    }
    let flag = |k: &str| s.get(k) == Some(&Value::Bool(true));
    if (v2 && flag("x-kubernetes-preserve-unknown-fields"))
        || !flag("x-kubernetes-embedded-resource")
    {
        return;
    }
    set_property(
        s,
        "apiVersion",
        json!({"type": "string", "description": "apiVersion defines the versioned schema of this representation of an object. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources"}),
    );
    set_property(
        s,
        "kind",
        json!({"type": "string", "description": "kind is a string value representing the type of this object. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds"}),
    );
    set_property(
        s,
        "metadata",
        described_ref(&format!("{META}.ObjectMeta"), OBJECT_META_DESCRIPTION),
    );
    let mut required: Vec<Value> = s
        .get("required")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for k in ["kind", "apiVersion"] {
        if !required.iter().any(|r| r == k) {
            required.push(json!(k));
        }
    }
    s["required"] = Value::Array(required);
}

/// v2 schema to v3: references move to `#/components/schemas/`, and a reference with
/// sibling keywords becomes `allOf: [{$ref}]` plus the siblings, as kube publishes v3.
/// Walks schema positions only, so data (defaults, enums) is left alone.
fn schema_to_v3(s: &Value) -> Value {
    let Some(m) = s.as_object() else {
        return s.clone();
    };
    let mut out = Map::new();
    let mut reference = None;
    for (k, v) in m {
        let value = match k.as_str() {
            "$ref" if v.is_string() => {
                let r = v.as_str().unwrap_or_default().replacen(
                    "#/definitions/",
                    "#/components/schemas/",
                    1,
                );
                reference = Some(r);
                continue;
            }
            "properties" => match v.as_object() {
                Some(props) => Value::Object(
                    props
                        .iter()
                        .map(|(n, p)| (n.clone(), schema_to_v3(p)))
                        .collect(),
                ),
                None => v.clone(),
            },
            "items" | "additionalProperties" | "not" => schema_to_v3(v),
            "allOf" | "anyOf" | "oneOf" => match v.as_array() {
                Some(list) => Value::Array(list.iter().map(schema_to_v3).collect()),
                None => v.clone(),
            },
            _ => v.clone(),
        };
        out.insert(k.clone(), value);
    }
    match reference {
        Some(r) if out.is_empty() => json!({ "$ref": r }),
        Some(r) => {
            let mut wrapped = Map::new();
            wrapped.insert("allOf".into(), json!([{ "$ref": r }]));
            wrapped.extend(out);
            Value::Object(wrapped)
        }
        None => Value::Object(out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn agent_schema() -> Value {
        json!({
            "description": "Agent is the Schema for the agents API",
            "type": "object",
            "properties": {
                "apiVersion": {"type": "string", "description": "ignored"},
                "kind": {"type": "string"},
                "metadata": {"type": "object"},
                "spec": {
                    "type": "object",
                    "required": ["prompt", "note"],
                    "example": {"prompt": "hi"},
                    "properties": {
                        "prompt": {"type": "string", "description": "The prompt."},
                        "note": {"type": "string", "nullable": true},
                        "port": {"x-kubernetes-int-or-string": true},
                        "choice": {"type": "string", "oneOf": [{"enum": ["a"]}, {"enum": ["b"]}]},
                        "tags": {"type": "array", "nullable": true, "items": {"type": "string"}},
                        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true,
                                 "properties": {"a": {"type": "string"}}},
                        "template": {"type": "object", "x-kubernetes-embedded-resource": true,
                                     "properties": {"spec": {"type": "object"}}}
                    }
                },
                "status": {"type": "object", "properties": {"phase": {"type": "string"}}}
            }
        })
    }

    pub(super) fn resources(schema: &Value) -> Vec<OpenApiResource<'_>> {
        vec![
            OpenApiResource {
                group: "ark.mckinsey.com",
                version: "v1alpha1",
                kind: "Agent",
                list_kind: "AgentList",
                plural: "agents",
                namespaced: true,
                has_status: true,
                schema,
            },
            OpenApiResource {
                group: "ark.mckinsey.com",
                version: "v1prealpha1",
                kind: "ExecutionEngine",
                list_kind: "ExecutionEngineList",
                plural: "executionengines",
                namespaced: false,
                has_status: false,
                schema,
            },
        ]
    }

    /// Every `$ref` in the document, with where it points.
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r.clone());
                }
                m.values().for_each(|x| refs(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }

    fn assert_refs_resolve(doc: &Value, prefix: &str, defs: &Value) {
        let mut all = Vec::new();
        refs(doc, &mut all);
        assert!(!all.is_empty());
        for r in all {
            let name = r
                .strip_prefix(prefix)
                .unwrap_or_else(|| panic!("{r} does not start with {prefix}"));
            assert!(defs.get(name).is_some(), "{r} is not defined");
        }
    }

    #[test]
    fn definitions_are_named_like_kube_names_crd_types() {
        assert_eq!(
            definition_name("ark.mckinsey.com", "v1alpha1", "Agent"),
            "com.mckinsey.ark.v1alpha1.Agent"
        );
        assert_eq!(definition_name("example", "v1", "Foo"), "example.v1.Foo");
    }

    #[test]
    fn v2_is_swagger_2_whose_refs_all_resolve() {
        let s = agent_schema();
        let doc = openapi_v2(&resources(&s));
        assert_eq!(doc["swagger"], "2.0");
        assert_refs_resolve(&doc, "#/definitions/", &doc["definitions"]);
        let agent = &doc["definitions"]["com.mckinsey.ark.v1alpha1.Agent"];
        assert_eq!(
            agent["x-kubernetes-group-version-kind"],
            json!([{"group": "ark.mckinsey.com", "kind": "Agent", "version": "v1alpha1"}])
        );
        assert_eq!(
            agent["properties"]["metadata"]["$ref"],
            "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
        );
        assert!(agent["properties"]["apiVersion"]["description"]
            .as_str()
            .unwrap()
            .starts_with("APIVersion defines"));
        let list = &doc["definitions"]["com.mckinsey.ark.v1alpha1.AgentList"];
        assert_eq!(
            list["properties"]["items"]["items"]["$ref"],
            "#/definitions/com.mckinsey.ark.v1alpha1.Agent"
        );
        assert_eq!(
            list["x-kubernetes-group-version-kind"][0]["kind"],
            "AgentList"
        );
    }

    #[test]
    fn v2_drops_what_swagger_2_cannot_express() {
        let s = agent_schema();
        let doc = openapi_v2(&resources(&s));
        let spec = &doc["definitions"]["com.mckinsey.ark.v1alpha1.Agent"]["properties"]["spec"];
        // nullable: no type, no nullable, and not required.
        assert_eq!(spec["properties"]["note"], json!({}));
        assert_eq!(spec["required"], json!(["prompt"]));
        assert_eq!(spec["properties"]["tags"], json!({}));
        // int-or-string: no type and no anyOf, just the extension.
        assert_eq!(
            spec["properties"]["port"],
            json!({"x-kubernetes-int-or-string": true})
        );
        // junctors go, and so do the properties of preserve-unknown-fields objects.
        assert_eq!(spec["properties"]["choice"], json!({"type": "string"}));
        assert_eq!(
            spec["properties"]["free"],
            json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true})
        );
        // Not part of a structural schema.
        assert!(spec.get("example").is_none());
    }

    #[test]
    fn v2_publishes_a_bare_object_when_the_root_preserves_unknown_fields() {
        let s = json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": {"spec": {"type": "object"}}});
        let doc = openapi_v2(&resources(&s)[..1]);
        let agent = &doc["definitions"]["com.mckinsey.ark.v1alpha1.Agent"];
        assert_eq!(agent["type"], "object");
        assert!(agent.get("properties").is_none());
        let v3 = openapi_v3_group_version(&resources(&s), "ark.mckinsey.com", "v1alpha1").unwrap();
        assert!(
            v3["components"]["schemas"]["com.mckinsey.ark.v1alpha1.Agent"]["properties"]["spec"]
                .is_object()
        );
    }

    #[test]
    fn v3_keeps_nullable_and_junctors_and_unfolds_int_or_string() {
        let s = agent_schema();
        let doc = openapi_v3_group_version(&resources(&s), "ark.mckinsey.com", "v1alpha1").unwrap();
        assert_eq!(doc["openapi"], "3.0.0");
        let schemas = &doc["components"]["schemas"];
        assert_refs_resolve(&doc, "#/components/schemas/", schemas);
        let agent = &schemas["com.mckinsey.ark.v1alpha1.Agent"];
        let spec = &agent["properties"]["spec"];
        assert_eq!(spec["properties"]["note"]["nullable"], true);
        assert_eq!(spec["required"], json!(["prompt", "note"]));
        assert_eq!(
            spec["properties"]["port"]["anyOf"],
            json!([{"type": "integer"}, {"type": "string"}])
        );
        assert_eq!(
            spec["properties"]["choice"]["oneOf"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            agent["properties"]["metadata"],
            json!({"allOf": [{"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}], "description": OBJECT_META_DESCRIPTION})
        );
        // Only the requested group-version.
        assert!(schemas
            .get("com.mckinsey.ark.v1prealpha1.ExecutionEngine")
            .is_none());
        assert!(openapi_v3_group_version(&resources(&s), "ark.mckinsey.com", "v9").is_none());
    }

    #[test]
    fn embedded_resources_get_type_and_object_meta() {
        let s = agent_schema();
        for (doc, prefix) in [
            (openapi_v2(&resources(&s)), "#/definitions/"),
            (
                openapi_v3_group_version(&resources(&s), "ark.mckinsey.com", "v1alpha1").unwrap(),
                "#/components/schemas/",
            ),
        ] {
            let defs = if doc.get("definitions").is_some() {
                &doc["definitions"]
            } else {
                &doc["components"]["schemas"]
            };
            let t = &defs["com.mckinsey.ark.v1alpha1.Agent"]["properties"]["spec"]["properties"]
                ["template"];
            assert_eq!(t["required"], json!(["kind", "apiVersion"]));
            assert_eq!(t["properties"]["kind"]["type"], "string");
            let meta = serde_json::to_string(&t["properties"]["metadata"]).unwrap();
            assert!(
                meta.contains(&format!(
                    "{prefix}io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
                )),
                "{meta}"
            );
            assert!(t["properties"]["spec"].is_object());
        }
    }

    #[test]
    fn v3_index_lists_each_group_version_with_the_hash_of_its_document() {
        let s = agent_schema();
        let rs = resources(&s);
        let index = openapi_v3_index(&rs);
        let paths = index["paths"].as_object().unwrap();
        assert_eq!(
            paths.keys().collect::<Vec<_>>(),
            [
                "apis/ark.mckinsey.com/v1alpha1",
                "apis/ark.mckinsey.com/v1prealpha1"
            ]
        );
        for (key, entry) in paths {
            let (group, version) = key.trim_start_matches("apis/").split_once('/').unwrap();
            let doc = openapi_v3_group_version(&rs, group, version).unwrap();
            let hash = content_hash(&doc);
            assert_eq!(hash.len(), 128);
            assert!(hash
                .chars()
                .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()));
            assert_eq!(
                entry["serverRelativeURL"],
                format!("/openapi/v3/{key}?hash={hash}")
            );
        }
        // Stable: the same input gives the same hash.
        assert_eq!(openapi_v3_index(&rs), index);
    }

    #[test]
    fn content_hash_is_sha512_of_compact_json_in_uppercase_hex() {
        assert_eq!(
            content_hash(&json!({})),
            "27C74670ADB75075FAD058D5CEAF7B20C4E7786C83BAE8A32F626F9782AF34C9A33C2046EF60FD2A7878D378E29FEC851806BBD9A67878F3A9F1CDA4830763FD"
        );
    }

    #[test]
    fn reference_crds_publish_resolvable_documents() {
        let Some(base) = crate::k8s::schema::reference_dir() else {
            return;
        };
        let dir = std::fs::read_dir(base.join("crds")).unwrap();
        let crds: Vec<Value> = dir
            .flatten()
            .map(|e| serde_saphyr::from_str(&std::fs::read_to_string(e.path()).unwrap()).unwrap())
            .collect();
        let mut rs = Vec::new();
        for crd in &crds {
            let spec = &crd["spec"];
            for v in spec["versions"].as_array().unwrap() {
                rs.push(OpenApiResource {
                    group: spec["group"].as_str().unwrap(),
                    version: v["name"].as_str().unwrap(),
                    kind: spec["names"]["kind"].as_str().unwrap(),
                    list_kind: spec["names"]["listKind"].as_str().unwrap(),
                    plural: spec["names"]["plural"].as_str().unwrap(),
                    namespaced: spec["scope"] == "Namespaced",
                    has_status: v["subresources"]["status"].is_object(),
                    schema: &v["schema"]["openAPIV3Schema"],
                });
            }
        }
        let v2 = openapi_v2(&rs);
        assert_refs_resolve(&v2, "#/definitions/", &v2["definitions"]);
        let index = openapi_v3_index(&rs);
        assert!(index["paths"]["apis/ark.mckinsey.com/v1alpha1"].is_object());
        let doc = openapi_v3_group_version(&rs, "ark.mckinsey.com", "v1alpha1").unwrap();
        assert_refs_resolve(&doc, "#/components/schemas/", &doc["components"]["schemas"]);
        // What `kubectl explain agent.spec.prompt` walks to.
        let agent = &doc["components"]["schemas"]["com.mckinsey.ark.v1alpha1.Agent"];
        assert_eq!(
            agent["properties"]["spec"]["properties"]["prompt"]["type"],
            "string"
        );
    }
}
