//! Structural schemas, applied as apiextensions-apiserver applies them to custom resources.
//!
//! A CRD version's `openAPIV3Schema` is compiled once into a tree of [`Node`]s and then used
//! for the four things kube-apiserver does with it: pruning unknown fields, dropping
//! non-nullable nulls, defaulting, and validation. Every step follows the Go code it mirrors
//! (`apiserver/schema/pruning`, `apiserver/schema/defaulting`, `apiserver/schema/objectmeta`,
//! kube-openapi's `validate` package), including its quirks, because clients and people
//! compare our answers with what a real cluster says.
//!
//! Validation lives in `schema_validate.rs`, the string formats kube checks and the Go
//! number/regex compatibility helpers in `schema_formats.rs`.
//!
//! `x-kubernetes-validations` (CEL rules) is out of scope: the keyword is accepted and
//! ignored, so objects that a cluster would reject through a CEL rule are accepted here.

use std::collections::HashMap;

use regex::Regex;
use serde_json::{Map, Value};

use super::status::FieldError;

#[path = "schema_compile.rs"]
mod compile;
#[path = "schema_errors.rs"]
mod errors;
#[path = "schema_formats.rs"]
mod formats;
#[path = "schema_structural.rs"]
mod structural;
#[path = "schema_unknown.rs"]
mod unknown;
#[path = "schema_validate.rs"]
mod validate;

/// A compiled `openAPIV3Schema`.
#[derive(Debug, Clone)]
pub struct Schema {
    root: Node,
}

/// `additionalProperties`: a bool or a schema.
#[derive(Debug, Clone)]
enum Additional {
    Bool(bool),
    Schema(Box<Node>),
}

/// A `pattern`, compiled with Go's RE2 semantics (see `formats::go_regex`).
#[derive(Debug, Clone)]
struct Pattern {
    source: String,
    re: Regex,
}

/// One schema node. Fields hold exactly what kube's converted `spec.Schema` holds.
#[derive(Debug, Clone, Default)]
struct Node {
    /// The declared `type`, empty when untyped.
    declared_type: String,
    /// The types the validator checks: `[type]`, or `[integer, string]` for int-or-string.
    types: Vec<&'static str>,
    /// The format the validator sees, after kube strips formats it does not support.
    format: String,
    nullable: bool,
    default: Option<Value>,
    enum_values: Vec<Value>,
    maximum: Option<f64>,
    exclusive_maximum: bool,
    minimum: Option<f64>,
    exclusive_minimum: bool,
    multiple_of: Option<f64>,
    max_length: Option<i64>,
    min_length: Option<i64>,
    pattern: Option<Pattern>,
    max_items: Option<i64>,
    min_items: Option<i64>,
    unique_items: bool,
    max_properties: Option<i64>,
    min_properties: Option<i64>,
    required: Vec<String>,
    properties: Vec<(String, Node)>,
    property_index: HashMap<String, usize>,
    additional: Option<Additional>,
    items: Option<Box<Node>>,
    all_of: Vec<Node>,
    any_of: Vec<Node>,
    one_of: Vec<Node>,
    not: Option<Box<Node>>,
    preserve_unknown: bool,
    embedded: bool,
    int_or_string: bool,
    list_type: Option<String>,
    list_map_keys: Vec<String>,
}

/// Fields apiserver never prunes at a resource root or inside an embedded resource.
const META_FIELDS: [&str; 3] = ["apiVersion", "kind", "metadata"];

use super::object::OBJECT_META_FIELDS;

impl Schema {
    /// Compiles a CRD version's `openAPIV3Schema`.
    ///
    /// Unknown keywords are ignored. A keyword whose value has the wrong JSON type, an
    /// unknown `type`, or a `pattern` that is not a regular expression is an error, since
    /// kube-apiserver would not have accepted the CRD either.
    pub fn compile(open_api_v3_schema: &Value) -> Result<Schema, String> {
        Ok(Schema {
            root: compile::compile_node(open_api_v3_schema, "openAPIV3Schema", 0)?,
        })
    }

    /// Drops fields the schema does not know, as kube's pruning does, then the nulls that
    /// kube drops before defaulting (non-nullable, no default).
    ///
    /// At the root `apiVersion`, `kind` and `metadata` are never touched: metadata is handled
    /// elsewhere. Inside `x-kubernetes-embedded-resource` objects they are kept too, and the
    /// embedded `metadata` is reduced to the fields of `ObjectMeta`, as kube's coercion does.
    pub fn prune(&self, obj: &mut Value) {
        prune_node(obj, Some(&self.root), true);
        prune_nulls(obj, &self.root, true);
    }

    /// Applies `default`s as kube does on read and on write: a missing property with a
    /// default gets it, and so does a null where the schema says the field is not nullable.
    pub fn apply_defaults(&self, obj: &mut Value) {
        apply_defaults(obj, &self.root);
    }

    /// Validates an object (after pruning and defaulting), returning kube-formatted field
    /// errors: those of kube-openapi's schema validator first, then those about embedded
    /// resources and `x-kubernetes-list-type` set/map uniqueness, in kube's order.
    pub fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate::validate(&self.root, obj)
    }

    /// The type of the schema node at a dotted path such as `spec` or `spec.model.name`
    /// (a leading `.` and `[...]` suffixes are accepted, so JSONPath-like printer-column paths
    /// work too); arrays are stepped through to their items, as `kubectl explain` does.
    ///
    /// Returns the declared `type`, `"int-or-string"` for `x-kubernetes-int-or-string`, or
    /// `""` for a node that declares no type; `None` if the path leads nowhere. Root
    /// `metadata` fields the schema does not spell out are typed as `ObjectMeta` types them.
    pub fn node_type(&self, path: &str) -> Option<String> {
        let segments: Vec<&str> = path
            .trim_start_matches('.')
            .split('.')
            .filter(|s| !s.is_empty())
            .collect();
        let mut node = &self.root;
        for (i, segment) in segments.iter().enumerate() {
            let (name, indexed) = match segment.find('[') {
                Some(i) => (&segment[..i], true),
                None => (*segment, false),
            };
            while node.declared_type == "array" {
                node = node.items.as_deref()?;
            }
            if !name.is_empty() {
                match node.child(name) {
                    Some(child) => node = child,
                    // Root metadata is ObjectMeta whatever the schema spells out.
                    None if i <= 1 && segments[0] == "metadata" => {
                        return match &segments[1..] {
                            [] => Some("object".to_string()),
                            rest => object_meta_type(rest),
                        };
                    }
                    None => return None,
                }
            }
            if indexed {
                node = node.items.as_deref()?;
            }
        }
        Some(if node.int_or_string && node.declared_type.is_empty() {
            "int-or-string".to_string()
        } else {
            node.declared_type.clone()
        })
    }
}

/// Types of `ObjectMeta` fields (and of label and annotation values), for `node_type`.
fn object_meta_type(path: &[&str]) -> Option<String> {
    let t = match path {
        [f] if ["generation", "deletionGracePeriodSeconds"].contains(f) => "integer",
        [f] if ["labels", "annotations"].contains(f) => "object",
        [f] if ["ownerReferences", "finalizers", "managedFields"].contains(f) => "array",
        [f] if OBJECT_META_FIELDS.contains(f) => "string",
        [m, _] if ["labels", "annotations"].contains(m) => "string",
        _ => return None,
    };
    Some(t.to_string())
}

impl Node {
    fn property(&self, name: &str) -> Option<&Node> {
        self.property_index
            .get(name)
            .map(|&i| &self.properties[i].1)
    }

    /// The schema for a field: its property, else `additionalProperties` when that is a schema.
    fn child(&self, name: &str) -> Option<&Node> {
        self.property(name).or(match &self.additional {
            Some(Additional::Schema(s)) => Some(s),
            _ => None,
        })
    }
}

// ---------------------------------------------------------------------------------------
// Pruning (pruning/algorithm.go, objectmeta/coerce.go, defaulting/prunenulls.go)
// ---------------------------------------------------------------------------------------

/// `is_root` gives the root the embedded-resource treatment, as kube's `Prune(.., true)` does.
fn prune_node(x: &mut Value, s: Option<&Node>, is_root: bool) {
    let Some(s) = s else {
        clear_unknown(x);
        return;
    };
    if s.preserve_unknown {
        skip_prune(x, Some(s), is_root);
        return;
    }
    match x {
        Value::Object(map) => {
            let keep_meta = is_root || s.embedded;
            map.retain(|k, v| {
                if keep_meta && META_FIELDS.contains(&k.as_str()) {
                    return true;
                }
                if let Some(p) = s.property(k) {
                    prune_node(v, Some(p), false);
                    true
                } else if let Some(add) = &s.additional {
                    prune_node(v, additional_schema(add), false);
                    true
                } else {
                    false
                }
            });
            if s.embedded && !is_root {
                coerce_embedded_metadata(map);
            }
        }
        Value::Array(items) => {
            for v in items {
                prune_node(v, s.items.as_deref(), false);
            }
        }
        _ => {}
    }
}

/// Below `x-kubernetes-preserve-unknown-fields`: unknown fields stay, known ones are pruned.
fn skip_prune(x: &mut Value, s: Option<&Node>, is_root: bool) {
    let Some(s) = s else { return };
    match x {
        Value::Object(map) => {
            let keep_meta = is_root || s.embedded;
            for (k, v) in map.iter_mut() {
                if keep_meta && META_FIELDS.contains(&k.as_str()) {
                    continue;
                }
                if let Some(p) = s.property(k) {
                    prune_node(v, Some(p), false);
                } else if let Some(add) = &s.additional {
                    prune_node(v, additional_schema(add), false);
                }
            }
            if s.embedded && !is_root {
                coerce_embedded_metadata(map);
            }
        }
        Value::Array(items) => {
            for v in items {
                // kube keeps the preserve semantics for the items (skipPrune, not prune).
                skip_prune(v, s.items.as_deref(), false);
            }
        }
        _ => {}
    }
}

fn additional_schema(a: &Additional) -> Option<&Node> {
    match a {
        Additional::Schema(s) => Some(s),
        // `additionalProperties: true|false` keeps the key but knows nothing below it.
        Additional::Bool(_) => None,
    }
}

/// Pruning with no schema: objects lose every field, arrays are walked. Iterative, because
/// this walks data no schema bounds.
fn clear_unknown(x: &mut Value) {
    let mut stack = vec![x];
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(m) => m.clear(),
            Value::Array(a) => stack.extend(a.iter_mut()),
            _ => {}
        }
    }
}

/// kube round-trips an embedded resource's metadata through `ObjectMeta`: unknown fields and
/// empty (omitempty) values disappear, and a zero `creationTimestamp` is removed. Values of
/// the wrong type are left for validation to report.
fn coerce_embedded_metadata(map: &mut Map<String, Value>) {
    if let Some(Value::Object(meta)) = map.get_mut("metadata") {
        meta.retain(|k, v| OBJECT_META_FIELDS.contains(&k.as_str()) && !is_zero(v));
    }
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Bool(_) => false,
    }
}

/// `PruneNonNullableNullsWithoutDefaults`: a null where the schema says neither nullable nor
/// defaulted is dropped, so that `{"replicas": null}` means "unset".
fn prune_nulls(x: &mut Value, s: &Node, is_root: bool) {
    match x {
        Value::Object(map) => map.retain(|k, v| {
            if is_root && META_FIELDS.contains(&k.as_str()) {
                return true;
            }
            let Some(child) = s.child(k) else { return true };
            if v.is_null() && !child.nullable && child.default.is_none() {
                return false;
            }
            prune_nulls(v, child, false);
            true
        }),
        Value::Array(items) => {
            if let Some(item) = s.items.as_deref() {
                for v in items {
                    prune_nulls(v, item, false);
                }
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------
// Defaulting (defaulting/algorithm.go)
// ---------------------------------------------------------------------------------------

fn apply_defaults(x: &mut Value, s: &Node) {
    let non_nullable_null = |v: &Value, s: &Node| v.is_null() && !s.nullable;
    match x {
        Value::Object(map) => {
            for (k, prop) in &s.properties {
                if let Some(d) = &prop.default {
                    match map.get_mut(k) {
                        None => {
                            map.insert(k.clone(), d.clone());
                        }
                        Some(v) if non_nullable_null(v, prop) => *v = d.clone(),
                        Some(_) => {}
                    }
                }
            }
            for (k, v) in map.iter_mut() {
                if let Some(p) = s.property(k) {
                    apply_defaults(v, p);
                } else if let Some(Additional::Schema(ap)) = &s.additional {
                    if let (true, Some(d)) = (non_nullable_null(v, ap), &ap.default) {
                        *v = d.clone();
                    }
                    apply_defaults(v, ap);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = s.items.as_deref() {
                for v in items {
                    if let (true, Some(d)) = (non_nullable_null(v, item), &item.default) {
                        *v = d.clone();
                    }
                    apply_defaults(v, item);
                }
            }
        }
        _ => {}
    }
}

/// Where the upstream Ark CRDs and samples live for tests: `shared/` beside the repository
/// (as CI lays it out), or the workplace's copy; `None` when neither exists.
#[cfg(test)]
pub(crate) fn reference_dir() -> Option<std::path::PathBuf> {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let candidates = [
        manifest.join("../shared/ark-reference"),
        manifest.join("../../shared/ark-reference"),
        "/work/shared/ark-reference".into(),
    ];
    candidates.into_iter().find(|d| d.join("crds").is_dir())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema(v: Value) -> Schema {
        Schema::compile(&v).expect("schema compiles")
    }

    fn pruned(s: &Schema, mut v: Value) -> Value {
        s.prune(&mut v);
        v
    }

    fn defaulted(s: &Schema, mut v: Value) -> Value {
        s.apply_defaults(&mut v);
        v
    }

    fn agent_like() -> Schema {
        schema(json!({
            "type": "object",
            "properties": {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "metadata": {"type": "object"},
                "spec": {
                    "type": "object",
                    "required": ["prompt"],
                    "properties": {
                        "prompt": {"type": "string"},
                        "replicas": {"type": "integer", "default": 1},
                        "tools": {"type": "array", "items": {
                            "type": "object",
                            "properties": {"name": {"type": "string"}, "type": {"type": "string", "default": "http"}}
                        }},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "config": {"type": "object", "x-kubernetes-preserve-unknown-fields": true,
                                   "properties": {"known": {"type": "object", "properties": {"a": {"type": "string"}}}}},
                        "template": {"type": "object", "x-kubernetes-embedded-resource": true,
                                     "x-kubernetes-preserve-unknown-fields": true},
                        "note": {"type": "string", "nullable": true}
                    }
                }
            }
        }))
    }

    #[test]
    fn prune_drops_unknown_fields_in_nested_objects_and_arrays() {
        let s = agent_like();
        let v = pruned(
            &s,
            json!({"spec": {"prompt": "p", "bogus": 1,
            "tools": [{"name": "a", "extra": true}, {"name": "b", "nested": {"x": 1}}]}, "status": {"x": 1}}),
        );
        assert_eq!(
            v,
            json!({"spec": {"prompt": "p", "tools": [{"name": "a"}, {"name": "b"}]}})
        );
    }

    #[test]
    fn prune_never_touches_root_type_meta_and_metadata() {
        let s = schema(
            json!({"type": "object", "properties": {"metadata": {"type": "object",
            "properties": {"name": {"type": "string"}}}}}),
        );
        let obj = json!({"apiVersion": 5, "kind": null, "metadata": {"name": "a", "labels": {"x": "y"},
            "whatever": null}});
        assert_eq!(pruned(&s, obj.clone()), obj);
    }

    #[test]
    fn prune_keeps_unknown_fields_under_preserve_unknown_but_prunes_known_children() {
        let s = agent_like();
        let v = pruned(
            &s,
            json!({"spec": {"prompt": "p", "config": {"free": {"deep": [1, {"x": 2}]},
            "known": {"a": "kept", "b": "dropped"}}}}),
        );
        assert_eq!(
            v["spec"]["config"],
            json!({"free": {"deep": [1, {"x": 2}]}, "known": {"a": "kept"}})
        );
    }

    #[test]
    fn prune_applies_additional_properties_schema_to_every_value() {
        let s = schema(
            json!({"type": "object", "properties": {"m": {"type": "object",
            "additionalProperties": {"type": "object", "properties": {"a": {"type": "string"}}}}}}),
        );
        let v = pruned(&s, json!({"m": {"k1": {"a": "x", "b": 1}, "k2": {"c": 2}}}));
        assert_eq!(v, json!({"m": {"k1": {"a": "x"}, "k2": {}}}));
    }

    #[test]
    fn prune_embedded_resource_keeps_type_meta_and_reduces_metadata_to_object_meta() {
        let s = schema(
            json!({"type": "object", "properties": {"t": {"type": "object",
            "x-kubernetes-embedded-resource": true,
            "properties": {"spec": {"type": "object", "properties": {"a": {"type": "string"}}}}}}}),
        );
        let v = pruned(
            &s,
            json!({"t": {"apiVersion": "v1", "kind": "Pod", "extra": 1,
            "metadata": {"name": "p", "labels": {"a": "b"}, "bogus": 1, "annotations": {}, "creationTimestamp": null},
            "spec": {"a": "x", "b": "y"}}}),
        );
        assert_eq!(
            v,
            json!({"t": {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "labels": {"a": "b"}}, "spec": {"a": "x"}}})
        );
    }

    #[test]
    fn prune_drops_non_nullable_nulls_unless_defaulted_or_nullable() {
        let s = agent_like();
        let v = pruned(
            &s,
            json!({"spec": {"prompt": null, "note": null, "replicas": null,
            "labels": {"a": null}, "tools": [null, {"name": null}]}}),
        );
        assert_eq!(
            v,
            json!({"spec": {"note": null, "replicas": null, "labels": {}, "tools": [null, {}]}})
        );
    }

    #[test]
    fn defaults_fill_missing_fields_and_non_nullable_nulls_at_every_depth() {
        let s = agent_like();
        let v = defaulted(
            &s,
            json!({"spec": {"prompt": "p", "tools": [{"name": "a"}, {"type": "mcp"}]}}),
        );
        assert_eq!(v["spec"]["replicas"], json!(1));
        assert_eq!(
            v["spec"]["tools"],
            json!([{"name": "a", "type": "http"}, {"type": "mcp"}])
        );
        let v = defaulted(&s, json!({"spec": {"replicas": null}}));
        assert_eq!(v["spec"]["replicas"], json!(1));
    }

    #[test]
    fn defaults_never_override_present_values_and_respect_nullable() {
        let s = schema(json!({"type": "object", "properties": {
            "a": {"type": "string", "default": "d"},
            "n": {"type": "string", "nullable": true, "default": "d"}}}));
        assert_eq!(
            defaulted(&s, json!({"a": "x", "n": null})),
            json!({"a": "x", "n": null})
        );
    }

    #[test]
    fn defaults_nest_an_object_default_then_default_inside_it() {
        let s = schema(
            json!({"type": "object", "properties": {"o": {"type": "object", "default": {},
            "properties": {"x": {"type": "integer", "default": 3}}}}}),
        );
        assert_eq!(defaulted(&s, json!({})), json!({"o": {"x": 3}}));
    }

    #[test]
    fn defaults_apply_to_additional_properties_and_array_item_nulls() {
        let s = schema(json!({"type": "object", "properties": {
            "m": {"type": "object", "additionalProperties": {"type": "string", "default": "dm"}},
            "l": {"type": "array", "items": {"type": "integer", "default": 7}}}}));
        let v = defaulted(&s, json!({"m": {"k": null, "j": "x"}, "l": [1, null]}));
        assert_eq!(v, json!({"m": {"k": "dm", "j": "x"}, "l": [1, 7]}));
    }

    #[test]
    fn node_type_walks_properties_arrays_and_maps() {
        let s = agent_like();
        assert_eq!(s.node_type("").as_deref(), Some("object"));
        assert_eq!(s.node_type("spec").as_deref(), Some("object"));
        assert_eq!(s.node_type("spec.replicas").as_deref(), Some("integer"));
        assert_eq!(s.node_type(".spec.tools").as_deref(), Some("array"));
        assert_eq!(s.node_type("spec.tools.name").as_deref(), Some("string"));
        assert_eq!(
            s.node_type(".spec.tools[0].type").as_deref(),
            Some("string")
        );
        assert_eq!(
            s.node_type("spec.labels.anything").as_deref(),
            Some("string")
        );
        assert_eq!(s.node_type("spec.nope"), None);
        assert_eq!(s.node_type("spec.prompt.deeper"), None);
        assert_eq!(
            s.node_type(".metadata.creationTimestamp").as_deref(),
            Some("string")
        );
        assert_eq!(
            s.node_type("metadata.labels.app").as_deref(),
            Some("string")
        );
        assert_eq!(
            s.node_type("metadata.generation").as_deref(),
            Some("integer")
        );
        assert_eq!(s.node_type("metadata.bogus"), None);
        let bare = schema(json!({"type": "object"}));
        assert_eq!(bare.node_type("metadata.name").as_deref(), Some("string"));
        let ios =
            schema(json!({"properties": {"p": {"x-kubernetes-int-or-string": true}, "u": {}}}));
        assert_eq!(ios.node_type("p").as_deref(), Some("int-or-string"));
        assert_eq!(ios.node_type("u").as_deref(), Some(""));
    }

    /// Every CRD the project serves compiles, and every upstream sample of those kinds is
    /// valid after pruning and defaulting, as it is on a real cluster.
    #[test]
    fn reference_crds_compile_and_accept_the_upstream_samples() {
        let Some(base) = reference_dir() else { return };
        let dir = std::fs::read_dir(base.join("crds")).unwrap();
        let mut schemas: HashMap<(String, String), Schema> = HashMap::new();
        for entry in dir.flatten() {
            let text = std::fs::read_to_string(entry.path()).unwrap();
            let crd: Value = serde_saphyr::from_str(&text).unwrap();
            let group = crd["spec"]["group"].as_str().unwrap().to_string();
            let kind = crd["spec"]["names"]["kind"].as_str().unwrap().to_string();
            for version in crd["spec"]["versions"].as_array().unwrap() {
                let s = Schema::compile(&version["schema"]["openAPIV3Schema"])
                    .unwrap_or_else(|e| panic!("{kind}: {e}"));
                let api_version = format!("{group}/{}", version["name"].as_str().unwrap());
                let mut bare =
                    json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": "x"}});
                s.prune(&mut bare);
                s.apply_defaults(&mut bare);
                for e in s.validate(&bare) {
                    assert_eq!(
                        e.kind,
                        crate::k8s::status::FieldErrorType::Required,
                        "{kind}: {e}"
                    );
                }
                let mut wrong =
                    json!({"apiVersion": api_version, "kind": kind, "spec": "nope", "status": 1});
                assert!(!s.validate(&wrong).is_empty(), "{kind}");
                s.prune(&mut wrong);
                schemas.insert((api_version, kind.clone()), s);
            }
        }
        assert!(schemas.len() >= 10, "found {} schemas", schemas.len());
        let mut checked = 0;
        for entry in std::fs::read_dir(base.join("samples"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let text = std::fs::read_to_string(entry.path()).unwrap();
            let docs: Vec<Value> = serde_saphyr::from_str_multiple(&text).unwrap();
            for mut doc in docs.into_iter().filter(|d| d.is_object()) {
                let key = (
                    doc["apiVersion"].as_str().unwrap_or("").to_string(),
                    doc["kind"].as_str().unwrap_or("").to_string(),
                );
                let Some(s) = schemas.get(&key) else { continue };
                s.prune(&mut doc);
                s.apply_defaults(&mut doc);
                let errors = s.validate(&doc);
                let messages: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
                // Upstream's older Model samples still use the deprecated `spec.type` and rely
                // on Ark's mutating webhook to fill in `provider`; without it a cluster says this.
                let expected: Vec<String> =
                    if key.1 == "Model" && doc["spec"].get("provider").is_none() {
                        vec!["spec.provider: Required value".to_string()]
                    } else {
                        Vec::new()
                    };
                assert_eq!(messages, expected, "{:?}", entry.path());
                checked += 1;
            }
        }
        assert!(checked >= 20, "validated only {checked} samples");
    }

    mod never_panics {
        use super::*;
        use proptest::prelude::*;

        fn json_value() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(|i| json!(i)),
                any::<f64>()
                    .prop_filter("finite", |f| f.is_finite())
                    .prop_map(|f| json!(f)),
                "[a-z0-9 .:/-]{0,12}".prop_map(Value::String),
                prop_oneof![
                    Just("spec"),
                    Just("tools"),
                    Just("name"),
                    Just("replicas"),
                    Just("metadata")
                ]
                .prop_map(|s| Value::String(s.to_string())),
            ];
            leaf.prop_recursive(5, 64, 6, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                    prop::collection::vec(
                        (
                            prop_oneof![
                                Just("spec".to_string()),
                                Just("tools".to_string()),
                                Just("name".to_string()),
                                Just("replicas".to_string()),
                                Just("labels".to_string()),
                                Just("config".to_string()),
                                Just("template".to_string()),
                                Just("metadata".to_string()),
                                "[a-z]{1,4}"
                            ],
                            inner
                        ),
                        0..6
                    )
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
                ]
            })
        }

        fn keyword_schema() -> impl Strategy<Value = Value> {
            let keywords = prop_oneof![
                Just(("type", json!("string"))),
                Just(("type", json!("integer"))),
                Just(("type", json!("object"))),
                Just(("type", json!("array"))),
                Just(("nullable", json!(true))),
                Just(("minimum", json!(1.5))),
                Just(("maximum", json!(3))),
                Just(("exclusiveMaximum", json!(true))),
                Just(("multipleOf", json!(0.5))),
                Just(("minLength", json!(2))),
                Just(("maxLength", json!(1))),
                Just(("pattern", json!("^a\\d+$"))),
                Just(("minItems", json!(1))),
                Just(("maxItems", json!(1))),
                Just(("uniqueItems", json!(true))),
                Just(("minProperties", json!(1))),
                Just(("maxProperties", json!(1))),
                Just(("format", json!("date-time"))),
                Just(("enum", json!(["a", 1, null, {"x": 1}]))),
                Just(("x-kubernetes-int-or-string", json!(true))),
                Just(("x-kubernetes-embedded-resource", json!(true))),
                Just(("x-kubernetes-list-type", json!("set"))),
                Just(("x-kubernetes-preserve-unknown-fields", json!(true))),
                Just(("required", json!(["name"]))),
                Just(("default", json!({"name": "d"}))),
                Just(("additionalProperties", json!(false))),
            ];
            let node = prop::collection::vec(keywords, 0..5).prop_map(|kw| {
                Value::Object(kw.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            });
            node.prop_recursive(4, 32, 4, |inner| {
                (inner.clone(), inner.clone(), inner.clone(), inner).prop_map(|(mut a, b, c, d)| {
                    a["properties"] = json!({"spec": b, "name": c, "tools": {"type": "array", "items": d.clone()}});
                    a["anyOf"] = json!([d]);
                    a
                })
            })
        }

        proptest! {
            #[test]
            fn validate_prune_and_default_never_panic_on_arbitrary_json(v in json_value()) {
                let s = agent_like();
                let _ = s.validate(&v);
                let mut p = v.clone();
                s.prune(&mut p);
                s.apply_defaults(&mut p);
                let _ = s.validate(&p);
                let _ = s.node_type("spec.tools.name");
            }

            #[test]
            fn arbitrary_schemas_compile_or_refuse_and_never_panic(sch in keyword_schema(), v in json_value()) {
                if let Ok(s) = Schema::compile(&sch) {
                    let _ = s.validate(&v);
                    let mut p = v.clone();
                    s.prune(&mut p);
                    s.apply_defaults(&mut p);
                    let _ = s.validate(&p);
                }
            }

            #[test]
            fn compile_never_panics_on_arbitrary_json(v in json_value()) {
                let _ = Schema::compile(&v);
            }
        }
    }
}

/// Helpers shared by the schema test modules.
#[cfg(test)]
pub(crate) mod test_support {
    use super::Schema;
    use serde_json::{json, Value};

    /// The messages kube would print, as `field: body` lines.
    pub fn errors(schema: Value, obj: Value) -> Vec<String> {
        Schema::compile(&schema)
            .expect("compiles")
            .validate(&obj)
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    /// A root schema whose `spec` has the given properties.
    pub fn spec(props: Value) -> Value {
        json!({"type": "object", "properties": {"spec": {"type": "object", "properties": props}}})
    }
}
