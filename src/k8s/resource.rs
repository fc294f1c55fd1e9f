//! Resource definitions: what the server knows about each kind it serves.
//!
//! A definition is read from a CustomResourceDefinition document, so the kinds the project
//! ships (`definitions/*.yaml`, compiled in) and the ones an operator adds with
//! `--crd-dir` go through one path and behave the same.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use super::schema::Schema;
use super::table::PrinterColumn;

/// The API group this server is registered for with the aggregator.
pub const GROUP: &str = "ark.mckinsey.com";

/// The project's own definitions, compiled into the binary.
const BUILTIN: &[(&str, &str)] = &[
    ("agents.yaml", include_str!("definitions/agents.yaml")),
    ("models.yaml", include_str!("definitions/models.yaml")),
    ("queries.yaml", include_str!("definitions/queries.yaml")),
    ("teams.yaml", include_str!("definitions/teams.yaml")),
    ("tools.yaml", include_str!("definitions/tools.yaml")),
    (
        "mcpservers.yaml",
        include_str!("definitions/mcpservers.yaml"),
    ),
    ("memories.yaml", include_str!("definitions/memories.yaml")),
    ("a2atasks.yaml", include_str!("definitions/a2atasks.yaml")),
    (
        "arkconfigs.yaml",
        include_str!("definitions/arkconfigs.yaml"),
    ),
    (
        "a2aservers.yaml",
        include_str!("definitions/a2aservers.yaml"),
    ),
    (
        "executionengines.yaml",
        include_str!("definitions/executionengines.yaml"),
    ),
];

/// One served kind at one version.
#[derive(Debug)]
pub struct ResourceDef {
    pub group: String,
    pub version: String,
    /// `group/version`, the `apiVersion` of objects of this kind.
    pub api_version: String,
    pub kind: String,
    pub list_kind: String,
    pub plural: String,
    pub singular: String,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub namespaced: bool,
    pub has_status: bool,
    pub printer_columns: Vec<PrinterColumn>,
    /// The version's `openAPIV3Schema`, as written.
    pub schema_json: Value,
    pub schema: Schema,
    /// The type server-side apply and managedFields merge by, built from the same schema.
    pub merge_type: crate::apply::Schema,
}

impl ResourceDef {
    pub fn resource_ref(&self) -> super::status::ResourceRef<'_> {
        super::status::ResourceRef {
            group: &self.group,
            plural: &self.plural,
            kind: &self.kind,
        }
    }
}

/// Every kind the server serves, looked up by URL segments.
#[derive(Debug, Default)]
pub struct Resources {
    /// (version, plural) -> definition
    by_path: BTreeMap<(String, String), Arc<ResourceDef>>,
    /// Definitions in a stable order (version, then plural) for discovery and OpenAPI.
    all: Vec<Arc<ResourceDef>>,
}

#[derive(Debug, thiserror::Error)]
pub enum DefinitionError {
    #[error("{source_name}: {message}")]
    Invalid {
        source_name: String,
        message: String,
    },
    #[error("cannot read {path}: {error}")]
    Io { path: String, error: std::io::Error },
}

impl Resources {
    /// The project's own definitions.
    pub fn builtin() -> Result<Self, DefinitionError> {
        let mut r = Resources::default();
        for (name, text) in BUILTIN {
            r.add_yaml(name, text)?;
        }
        Ok(r)
    }

    /// Adds every CustomResourceDefinition found in `*.yaml`/`*.yml`/`*.json` files of `dir`.
    /// A definition for a kind that is already served replaces it, so an operator can ship a
    /// newer schema without a new binary.
    pub fn add_dir(&mut self, dir: &std::path::Path) -> Result<usize, DefinitionError> {
        let io = |e| DefinitionError::Io {
            path: dir.display().to_string(),
            error: e,
        };
        let mut paths: Vec<_> = std::fs::read_dir(dir)
            .map_err(io)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("yaml" | "yml" | "json")
                )
            })
            .collect();
        paths.sort();
        let mut added = 0;
        for p in paths {
            let text = std::fs::read_to_string(&p).map_err(|e| DefinitionError::Io {
                path: p.display().to_string(),
                error: e,
            })?;
            added += self.add_yaml(&p.display().to_string(), &text)?;
        }
        Ok(added)
    }

    /// Parses one or more YAML documents and adds the CRDs among them. Returns how many
    /// versions were added; documents of other kinds are ignored.
    pub fn add_yaml(&mut self, source_name: &str, text: &str) -> Result<usize, DefinitionError> {
        let invalid = |m: String| DefinitionError::Invalid {
            source_name: source_name.to_string(),
            message: m,
        };
        let docs: Vec<Value> = serde_saphyr::from_str_multiple(text)
            .map_err(|e| invalid(format!("not valid YAML: {e}")))?;
        let mut added = 0;
        for doc in docs {
            if doc.get("kind").and_then(Value::as_str) != Some("CustomResourceDefinition") {
                continue;
            }
            for def in parse_crd(&doc).map_err(invalid)? {
                self.insert(def);
                added += 1;
            }
        }
        Ok(added)
    }

    fn insert(&mut self, def: ResourceDef) {
        let key = (def.version.clone(), def.plural.clone());
        // One kind is served at one version here; a replacement drops the old entry everywhere.
        self.all.retain(|d| d.kind != def.kind);
        self.by_path.retain(|_, d| d.kind != def.kind);
        let def = Arc::new(def);
        self.by_path.insert(key, def.clone());
        self.all.push(def);
        self.all
            .sort_by(|a, b| (&a.version, &a.plural).cmp(&(&b.version, &b.plural)));
    }

    pub fn get(&self, version: &str, plural: &str) -> Option<&Arc<ResourceDef>> {
        self.by_path.get(&(version.to_string(), plural.to_string()))
    }

    pub fn all(&self) -> &[Arc<ResourceDef>] {
        &self.all
    }

    /// Served versions, highest priority first, as kube orders them (v1 > v1beta1 > v1alpha1 > v1prealpha1).
    pub fn versions(&self) -> Vec<String> {
        let mut v: Vec<String> = self.all.iter().map(|d| d.version.clone()).collect();
        v.sort_by(|a, b| version_priority(b).cmp(&version_priority(a)).then(a.cmp(b)));
        v.dedup();
        v
    }
}

/// A sort key for Kubernetes version strings: GA > beta > alpha > anything else, then by number.
pub fn version_priority(v: &str) -> (u8, u64, u64) {
    let Some(rest) = v.strip_prefix('v') else {
        return (0, 0, 0);
    };
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    let Ok(major) = digits.parse::<u64>() else {
        return (0, 0, 0);
    };
    let tail = &rest[digits.len()..];
    let (stage, tail) = if tail.is_empty() {
        return (4, major, 0);
    } else if let Some(t) = tail.strip_prefix("beta") {
        (3, t)
    } else if let Some(t) = tail.strip_prefix("alpha") {
        (2, t)
    } else if let Some(t) = tail.strip_prefix("prealpha") {
        (1, t)
    } else {
        return (0, 0, 0);
    };
    match tail.parse::<u64>() {
        Ok(minor) => (stage, major, minor),
        Err(_) => (0, 0, 0),
    }
}

fn parse_crd(doc: &Value) -> Result<Vec<ResourceDef>, String> {
    let spec = doc
        .get("spec")
        .ok_or("CustomResourceDefinition has no spec")?;
    let str_at = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_string);
    let list_at = |v: &Value, key: &str| -> Vec<String> {
        v.get(key)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let group = str_at(spec, "group").ok_or("spec.group is required")?;
    if group != GROUP {
        return Err(format!(
            "group {group:?} is not served: this server serves only {GROUP:?}"
        ));
    }
    let names = spec.get("names").ok_or("spec.names is required")?;
    let kind = str_at(names, "kind").ok_or("spec.names.kind is required")?;
    let plural = str_at(names, "plural").ok_or("spec.names.plural is required")?;
    let singular = str_at(names, "singular").unwrap_or_else(|| kind.to_lowercase());
    let list_kind = str_at(names, "listKind").unwrap_or_else(|| format!("{kind}List"));
    let namespaced = match str_at(spec, "scope").as_deref() {
        Some("Namespaced") => true,
        Some("Cluster") => false,
        other => {
            return Err(format!(
                "spec.scope must be Namespaced or Cluster, got {other:?}"
            ))
        }
    };
    let versions = spec
        .get("versions")
        .and_then(Value::as_array)
        .ok_or("spec.versions is required")?;
    // The storage version is the one served; the server does no conversion, so serving
    // several versions of one kind would hand out objects under the wrong schema.
    let chosen = versions
        .iter()
        .find(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .or_else(|| {
            versions
                .iter()
                .find(|v| v.get("served").and_then(Value::as_bool) != Some(false))
        })
        .ok_or("no served version")?;
    let version = str_at(chosen, "name").ok_or("version name is required")?;
    let schema_json = chosen
        .pointer("/schema/openAPIV3Schema")
        .or_else(|| spec.pointer("/validation/openAPIV3Schema"))
        .cloned()
        .unwrap_or_else(
            || serde_json::json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
        );
    let schema = Schema::compile(&schema_json)
        .map_err(|e| format!("{kind} {version}: invalid schema: {e}"))?;
    let has_status = chosen.pointer("/subresources/status").is_some();
    let columns = chosen
        .get("additionalPrinterColumns")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let printer_columns = PrinterColumn::from_crd(&columns).map_err(|e| format!("{kind}: {e}"))?;
    Ok(vec![ResourceDef {
        api_version: format!("{group}/{version}"),
        group,
        version,
        kind,
        list_kind,
        plural,
        singular,
        short_names: list_at(names, "shortNames"),
        categories: list_at(names, "categories"),
        namespaced,
        has_status,
        printer_columns,
        merge_type: crate::apply::Schema::from_crd(&schema_json),
        schema_json,
        schema,
    }])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_serves_every_ark_kind_at_its_version() {
        let r = Resources::builtin().unwrap();
        let expect = [
            ("v1alpha1", "agents", "Agent", true),
            ("v1alpha1", "models", "Model", true),
            ("v1alpha1", "queries", "Query", true),
            ("v1alpha1", "teams", "Team", true),
            ("v1alpha1", "tools", "Tool", true),
            ("v1alpha1", "mcpservers", "MCPServer", true),
            ("v1alpha1", "memories", "Memory", true),
            ("v1alpha1", "a2atasks", "A2ATask", true),
            ("v1alpha1", "arkconfigs", "ArkConfig", false),
            ("v1prealpha1", "a2aservers", "A2AServer", true),
            ("v1prealpha1", "executionengines", "ExecutionEngine", true),
        ];
        for (v, p, k, ns) in expect {
            let d = r.get(v, p).unwrap_or_else(|| panic!("{v}/{p} missing"));
            assert_eq!(d.kind, k);
            assert_eq!(d.namespaced, ns, "{k} scope");
            assert!(d.has_status, "{k} has a status subresource");
        }
        assert_eq!(r.all().len(), expect.len());
        assert_eq!(
            r.versions(),
            vec!["v1alpha1".to_string(), "v1prealpha1".to_string()]
        );
    }

    #[test]
    fn crd_of_another_group_is_refused_with_its_name() {
        let mut r = Resources::default();
        let y = "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nspec:\n  group: example.com\n  names: {kind: Foo, plural: foos}\n  scope: Namespaced\n  versions: [{name: v1, served: true, storage: true}]\n";
        let e = r.add_yaml("foo.yaml", y).unwrap_err().to_string();
        assert!(e.contains("foo.yaml") && e.contains("example.com"), "{e}");
    }

    #[test]
    fn version_priority_orders_like_kube() {
        let mut v = vec!["v1alpha1", "v1prealpha1", "v2", "v1beta2", "v1"];
        v.sort_by_key(|s| std::cmp::Reverse(version_priority(s)));
        assert_eq!(v, vec!["v2", "v1", "v1beta2", "v1alpha1", "v1prealpha1"]);
    }
}
