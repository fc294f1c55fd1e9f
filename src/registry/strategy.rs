//! Per-kind policy on top of the generic verbs, as sample-apiserver's strategies put it.
//!
//! The generic create/update logic is the same for every kind; the few things a kind
//! needs beyond its schema live here, keyed by kind, so they stay visible in one place.

use serde_json::{json, Value};

use crate::k8s::resource::ResourceDef;

/// Mutations applied to every create and update of the main resource, before defaults
/// and validation (where a mutating admission webhook would run in front of kube).
pub fn mutate(def: &ResourceDef, obj: &mut Value) {
    if def.group == crate::k8s::resource::GROUP && def.kind == "Model" {
        migrate_model_type(obj);
    }
}

/// Ark's Model once named its provider in `spec.type`; the provider moved to
/// `spec.provider` and `spec.type` now means the API style. Ark's webhook rewrites the old
/// form so that existing manifests keep applying; this does the same.
fn migrate_model_type(obj: &mut Value) {
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let old = spec.get("type").and_then(Value::as_str).map(str::to_string);
    let has_provider = spec
        .get("provider")
        .and_then(Value::as_str)
        .is_some_and(|p| !p.is_empty());
    if let Some(t) = old {
        if matches!(t.as_str(), "openai" | "azure" | "bedrock" | "anthropic") {
            if !has_provider {
                spec.insert("provider".into(), json!(t));
            }
            spec.insert("type".into(), json!("completions"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_provider_named_in_type_moves_to_provider() {
        let mut m = json!({"spec": {"type": "azure", "model": {"value": "x"}}});
        migrate_model_type(&mut m);
        assert_eq!(m["spec"]["provider"], "azure");
        assert_eq!(m["spec"]["type"], "completions");
    }

    #[test]
    fn an_explicit_provider_wins_and_api_styles_stay() {
        let mut m = json!({"spec": {"type": "openai", "provider": "azure"}});
        migrate_model_type(&mut m);
        assert_eq!(m["spec"]["provider"], "azure");
        let mut e = json!({"spec": {"type": "embeddings", "provider": "openai"}});
        migrate_model_type(&mut e);
        assert_eq!(e["spec"]["type"], "embeddings");
    }
}
