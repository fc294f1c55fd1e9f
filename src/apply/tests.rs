//! Ownership and encoding cases, many after structured-merge-diff's `merge/*_test.go`
//! fixtures and what kube-apiserver writes for custom resources.

use serde_json::{json, Value};

use super::managed::{self, Endpoint};
use super::{reset_fields, ApplyError, Schema, Set};

fn crd_schema() -> Schema {
    Schema::from_crd(&json!({
        "type": "object",
        "properties": {
            "spec": {"type": "object", "properties": {
                "prompt": {"type": "string"},
                "model": {"type": "string"},
                "replicas": {"type": "integer"},
                "tools": {"type": "array", "x-kubernetes-list-type": "map",
                          "x-kubernetes-list-map-keys": ["name"],
                          "items": {"type": "object", "properties": {
                              "name": {"type": "string"}, "type": {"type": "string"}}}},
                "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
                "args": {"type": "array", "items": {"type": "string"}},
                "env": {"type": "object", "additionalProperties": {"type": "string"}},
                "selector": {"type": "object", "x-kubernetes-map-type": "atomic",
                             "properties": {"a": {"type": "string"}, "b": {"type": "string"}}},
                "config": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
            }},
            "status": {"type": "object", "properties": {"phase": {"type": "string"}}}
        }
    }))
}

struct Fixture {
    schema: Schema,
    ignored: Option<Set>,
    now: String,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            schema: crd_schema(),
            ignored: reset_fields(false, true),
            now: "2026-12-03T10:00:00Z".into(),
        }
    }

    fn ep(&self) -> Endpoint<'_> {
        Endpoint {
            schema: &self.schema,
            api_version: "ark.mckinsey.com/v1alpha1",
            kind: "Agent",
            subresource: None,
            ignored: self.ignored.as_ref(),
            now: &self.now,
        }
    }

    fn apply(
        &self,
        live: Option<&Value>,
        manager: &str,
        spec: Value,
        force: bool,
    ) -> Result<(Value, bool), ApplyError> {
        let patch = json!({"apiVersion": "ark.mckinsey.com/v1alpha1", "kind": "Agent",
                           "metadata": {"name": "a"}, "spec": spec});
        let mut live = live.cloned();
        if let Some(l) = live.as_mut() {
            l["metadata"]["uid"] = json!("u1");
        }
        managed::apply(&self.ep(), live.as_ref(), &patch, manager, force)
            .map(|a| (a.object, a.changed))
    }

    fn update(&self, live: Option<&Value>, new: Value, manager: &str) -> Value {
        let mut new = new;
        managed::record_update(&self.ep(), live, &mut new, manager);
        new
    }
}

fn obj(spec: Value) -> Value {
    json!({"apiVersion": "ark.mckinsey.com/v1alpha1", "kind": "Agent",
           "metadata": {"name": "a", "uid": "u1"}, "spec": spec})
}

fn entries(o: &Value) -> Vec<Value> {
    o["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn fields_of(o: &Value, manager: &str) -> String {
    let e = entries(o)
        .into_iter()
        .find(|e| e["manager"] == manager)
        .unwrap_or_else(|| panic!("no entry for {manager}"));
    serde_json::to_string(&e["fieldsV1"]).unwrap()
}

#[test]
fn a_create_records_changed_fields_with_dots_for_new_maps() {
    let fx = Fixture::new();
    let mut new = obj(json!({"prompt": "p"}));
    new["metadata"]["labels"] = json!({"app": "x"});
    let out = fx.update(None, new, "kubectl-create");
    assert_eq!(
        fields_of(&out, "kubectl-create"),
        r#"{"f:metadata":{"f:labels":{".":{},"f:app":{}}},"f:spec":{".":{},"f:prompt":{}}}"#
    );
    let e = &entries(&out)[0];
    assert_eq!(
        serde_json::to_string(e).unwrap(),
        r#"{"manager":"kubectl-create","operation":"Update","apiVersion":"ark.mckinsey.com/v1alpha1","time":"2026-12-03T10:00:00Z","fieldsType":"FieldsV1","fieldsV1":{"f:metadata":{"f:labels":{".":{},"f:app":{}}},"f:spec":{".":{},"f:prompt":{}}}}"#
    );
}

#[test]
fn an_apply_owns_exactly_what_it_sets_encoded_as_kube_writes_it() {
    let fx = Fixture::new();
    let (out, changed) = fx
        .apply(
            None,
            "kubectl",
            json!({"prompt": "p", "tools": [{"name": "t", "type": "http"}], "tags": ["b", "a"],
                   "env": {"K": "v"}, "selector": {"a": "1"}, "config": {"x": {"y": 1}, "l": [1]}}),
            false,
        )
        .unwrap();
    assert!(changed);
    assert_eq!(
        fields_of(&out, "kubectl"),
        concat!(
            r#"{"f:spec":{"f:config":{"f:l":{},"f:x":{".":{},"f:y":{}}},"f:env":{"f:K":{}},"#,
            r#""f:prompt":{},"f:selector":{},"f:tags":{"v:\"a\"":{},"v:\"b\"":{}},"#,
            r#""f:tools":{"k:{\"name\":\"t\"}":{".":{},"f:name":{},"f:type":{}}}}}"#
        )
    );
    assert_eq!(entries(&out)[0]["operation"], "Apply");
    assert!(entries(&out)[0].get("subresource").is_none());
}

#[test]
fn applying_a_field_another_manager_owns_conflicts_unless_forced() {
    let fx = Fixture::new();
    let (live, _) = fx
        .apply(None, "kubectl", json!({"prompt": "p", "model": "m"}), false)
        .unwrap();
    let err = fx
        .apply(Some(&live), "flux", json!({"prompt": "q"}), false)
        .unwrap_err();
    let ApplyError::Conflict(c) = err else {
        panic!("{err:?}")
    };
    assert_eq!(
        managed::conflict_message(&c),
        r#"Apply failed with 1 conflict: conflict with "kubectl": .spec.prompt"#
    );
    let (forced, _) = fx
        .apply(Some(&live), "flux", json!({"prompt": "q"}), true)
        .unwrap();
    assert_eq!(forced["spec"]["prompt"], "q");
    assert_eq!(fields_of(&forced, "flux"), r#"{"f:spec":{"f:prompt":{}}}"#);
    assert_eq!(
        fields_of(&forced, "kubectl"),
        r#"{"f:spec":{"f:model":{}}}"#
    );
}

#[test]
fn two_appliers_of_the_same_value_share_the_field_and_it_stays_while_one_owns_it() {
    let fx = Fixture::new();
    let (live, _) = fx
        .apply(None, "a", json!({"prompt": "p", "model": "m"}), false)
        .unwrap();
    let (shared, _) = fx
        .apply(Some(&live), "b", json!({"prompt": "p"}), false)
        .unwrap();
    assert_eq!(
        fields_of(&shared, "a"),
        r#"{"f:spec":{"f:model":{},"f:prompt":{}}}"#
    );
    assert_eq!(fields_of(&shared, "b"), r#"{"f:spec":{"f:prompt":{}}}"#);
    // a stops applying prompt: b still owns it, so it stays; model goes with a.
    let (after, _) = fx
        .apply(Some(&shared), "a", json!({"replicas": 2}), false)
        .unwrap();
    assert_eq!(after["spec"], json!({"prompt": "p", "replicas": 2}));
}

#[test]
fn an_update_conflicting_with_an_apply_takes_the_field_and_is_named_with_its_version() {
    let fx = Fixture::new();
    let (live, _) = fx
        .apply(None, "kubectl", json!({"prompt": "p"}), false)
        .unwrap();
    let mut edited = live.clone();
    edited["spec"]["prompt"] = json!("edited");
    let edited = fx.update(Some(&live), edited, "editor");
    assert!(entries(&edited).iter().all(|e| e["manager"] != "kubectl"));
    let err = fx
        .apply(Some(&edited), "kubectl", json!({"prompt": "p2"}), false)
        .unwrap_err();
    let ApplyError::Conflict(c) = err else {
        panic!()
    };
    assert_eq!(
        managed::conflict_message(&c),
        r#"Apply failed with 1 conflict: conflict with "editor" using ark.mckinsey.com/v1alpha1: .spec.prompt"#
    );
}

#[test]
fn several_conflicts_use_kubes_multi_line_form() {
    let fx = Fixture::new();
    let (live, _) = fx
        .apply(None, "a", json!({"prompt": "p", "model": "m"}), false)
        .unwrap();
    let (live, _) = fx
        .apply(Some(&live), "b", json!({"replicas": 1}), false)
        .unwrap();
    let err = fx
        .apply(
            Some(&live),
            "c",
            json!({"prompt": "x", "model": "y", "replicas": 3}),
            false,
        )
        .unwrap_err();
    let ApplyError::Conflict(c) = err else {
        panic!()
    };
    assert_eq!(
        managed::conflict_message(&c),
        "Apply failed with 3 conflicts: conflicts with \"a\":\n- .spec.model\n- .spec.prompt\nconflicts with \"b\":\n- .spec.replicas"
    );
}

#[test]
fn list_items_only_in_the_live_object_keep_their_place() {
    let fx = Fixture::new();
    let tools = |names: &[&str]| Value::Array(names.iter().map(|n| json!({"name": n})).collect());
    let (live, _) = fx
        .apply(None, "a", json!({"tools": tools(&["a", "b"])}), false)
        .unwrap();
    let (out, _) = fx
        .apply(
            Some(&live),
            "b",
            json!({"tools": tools(&["c", "a"])}),
            false,
        )
        .unwrap();
    assert_eq!(out["spec"]["tools"], tools(&["c", "a", "b"]));
    // a drops b: b's item goes, the shared one stays.
    let (out, _) = fx
        .apply(Some(&out), "a", json!({"tools": tools(&["a"])}), false)
        .unwrap();
    assert_eq!(out["spec"]["tools"], tools(&["c", "a"]));
}

#[test]
fn an_apply_that_changes_nothing_writes_nothing_and_keeps_the_timestamps() {
    let mut fx = Fixture::new();
    let (live, _) = fx
        .apply(None, "kubectl", json!({"prompt": "p"}), false)
        .unwrap();
    fx.now = "2026-12-03T11:00:00Z".into();
    let (again, changed) = fx
        .apply(Some(&live), "kubectl", json!({"prompt": "p"}), false)
        .unwrap();
    assert!(!changed);
    assert_eq!(entries(&again), entries(&live));
}

#[test]
fn fields_set_before_tracking_belong_to_before_first_apply() {
    let fx = Fixture::new();
    let live = obj(json!({"prompt": "p", "model": "m"}));
    // An existing object without managedFields stays untracked on update...
    let updated = fx.update(
        Some(&live),
        obj(json!({"prompt": "p2", "model": "m"})),
        "editor",
    );
    assert!(updated["metadata"].get("managedFields").is_none());
    // ...and its fields go to before-first-apply on the first apply.
    let (out, _) = fx
        .apply(Some(&live), "kubectl", json!({"prompt": "p"}), false)
        .unwrap();
    assert_eq!(
        fields_of(&out, "before-first-apply"),
        r#"{"f:spec":{".":{},"f:model":{},"f:prompt":{}}}"#
    );
    assert_eq!(out["spec"]["model"], "m");
}

#[test]
fn more_than_ten_update_managers_fold_the_oldest_into_ancient_changes() {
    let mut fx = Fixture::new();
    let mut live = fx.update(None, obj(json!({"env": {}})), "creator");
    for i in 0..12 {
        fx.now = format!("2026-12-03T10:{:02}:00Z", i + 1);
        let mut new = live.clone();
        new["spec"]["env"][format!("K{i}")] = json!("v");
        live = fx.update(Some(&live), new, &format!("m{i:02}"));
    }
    let names: Vec<String> = entries(&live)
        .iter()
        .map(|e| e["manager"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names.len(), 10);
    assert_eq!(names[0], "ancient-changes");
    assert!(names.contains(&"m11".to_string()));
}

#[test]
fn managed_fields_set_to_an_empty_list_reset_tracking() {
    let fx = Fixture::new();
    let live = fx.update(None, obj(json!({"prompt": "p"})), "creator");
    let mut new = live.clone();
    new["metadata"]["managedFields"] = json!([]);
    let out = fx.update(Some(&live), new, "editor");
    assert!(out["metadata"].get("managedFields").is_none());
    // One empty entry is kube's other way of saying it.
    let mut new = live.clone();
    new["metadata"]["managedFields"] = json!([{}]);
    new["spec"]["prompt"] = json!("changed too");
    let out = fx.update(Some(&live), new, "editor");
    assert!(out["metadata"].get("managedFields").is_none(), "{out}");
}

#[test]
fn a_status_update_owns_status_only_and_ignores_sent_managed_fields() {
    let mut fx = Fixture::new();
    let live = fx.update(None, obj(json!({"prompt": "p"})), "creator");
    fx.ignored = reset_fields(true, true);
    let mut ep = fx.ep();
    ep.subresource = Some("status");
    let mut new = live.clone();
    new["status"] = json!({"phase": "Ready"});
    new["metadata"]["managedFields"] = json!([{"manager": "forged", "operation": "Update",
        "apiVersion": "v", "fieldsType": "FieldsV1", "fieldsV1": {}}]);
    managed::record_update(&ep, Some(&live), &mut new, "controller");
    let e: Vec<Value> = entries(&new);
    assert!(e.iter().all(|e| e["manager"] != "forged"));
    let c = e.iter().find(|e| e["manager"] == "controller").unwrap();
    assert_eq!(c["subresource"], "status");
    assert_eq!(
        serde_json::to_string(&c["fieldsV1"]).unwrap(),
        r#"{"f:status":{".":{},"f:phase":{}}}"#
    );
}

#[test]
fn bad_configurations_are_refused_with_kubes_reasons() {
    let fx = Fixture::new();
    let err = fx.apply(None, "m", json!({"nope": 1}), false).unwrap_err();
    assert!(
        matches!(&err, ApplyError::BadRequest(m) if m.ends_with(".spec.nope: field not declared in schema")),
        "{err:?}"
    );
    let err = fx
        .apply(
            None,
            "m",
            json!({"tools": [{"name": "a"}, {"name": "a"}]}),
            false,
        )
        .unwrap_err();
    assert!(
        matches!(&err, ApplyError::Duplicate(m) if m.contains(r#"duplicate entries for key [name="a"]"#)),
        "{err:?}"
    );
    let patch =
        json!({"apiVersion": "ark.mckinsey.com/v1", "kind": "Agent", "metadata": {"name": "a"}});
    let err = managed::apply(&fx.ep(), None, &patch, "m", false).unwrap_err();
    assert!(
        matches!(&err, ApplyError::BadRequest(m) if m == "invalid object type: ark.mckinsey.com/v1, Kind=Agent"),
        "{err:?}"
    );
    let patch = json!({"apiVersion": "ark.mckinsey.com/v1alpha1", "kind": "Agent",
                       "metadata": {"name": "a", "managedFields": []}});
    let err = managed::apply(&fx.ep(), None, &patch, "m", false).unwrap_err();
    assert!(matches!(&err, ApplyError::BadRequest(m) if m == "metadata.managedFields must be nil"));
}

#[test]
fn owner_references_are_keyed_by_uid_and_atomic_and_finalizers_are_a_set() {
    let fx = Fixture::new();
    let patch = json!({"apiVersion": "ark.mckinsey.com/v1alpha1", "kind": "Agent",
        "metadata": {"name": "a", "finalizers": ["f1"],
                     "ownerReferences": [{"apiVersion": "v1", "kind": "X", "name": "o", "uid": "1"}]}});
    let out = managed::apply(&fx.ep(), None, &patch, "m", false)
        .unwrap()
        .object;
    assert_eq!(
        fields_of(&out, "m"),
        r#"{"f:metadata":{"f:finalizers":{"v:\"f1\"":{}},"f:ownerReferences":{"k:{\"uid\":\"1\"}":{}}}}"#
    );
}

#[test]
fn kubectl_moving_from_client_side_apply_takes_over_what_its_annotation_set() {
    let fx = Fixture::new();
    let last = r#"{"apiVersion":"ark.mckinsey.com/v1alpha1","kind":"Agent","metadata":{"name":"a"},"spec":{"prompt":"p"}}"#;
    let mut created = obj(json!({"prompt": "p"}));
    created["metadata"]["annotations"] = json!({managed::LAST_APPLIED: last});
    let live = fx.update(None, created, "kubectl-client-side-apply");
    // Another Update manager's field is still a conflict...
    let err = fx
        .apply(Some(&live), "other", json!({"prompt": "p2"}), false)
        .unwrap_err();
    assert!(matches!(err, ApplyError::Conflict(_)));
    // ...but kubectl may take what its last-applied annotation set, and keeps the
    // annotation current.
    let mut cfg = json!({"prompt": "p2"});
    cfg["model"] = json!("m");
    let (out, _) = fx.apply(Some(&live), "kubectl", cfg, false).unwrap();
    assert_eq!(out["spec"]["prompt"], "p2");
    let ann = out["metadata"]["annotations"][managed::LAST_APPLIED]
        .as_str()
        .unwrap();
    assert!(
        ann.contains(r#""prompt":"p2""#) && ann.ends_with('\n'),
        "{ann}"
    );
}
