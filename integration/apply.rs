//! Server-side apply end to end: kubectl 1.35's `apply --server-side`, and the raw
//! requests Flux, Argo CD and controller-runtime send, checked against what
//! kube-apiserver answers for a custom resource.

use serde_json::{json, Value};

use crate::harness::TestServer;
use crate::kubectl::{fails, ok, ok_stdin};

const AGENTS: &str = "/apis/ark.mckinsey.com/v1alpha1/namespaces/default/agents";

fn agent_yaml(prompt: &str, description: Option<&str>) -> String {
    let mut y = format!(
        "apiVersion: ark.mckinsey.com/v1alpha1\nkind: Agent\nmetadata:\n  name: planner\n  labels:\n    team: travel\nspec:\n  prompt: {prompt}\n"
    );
    if let Some(d) = description {
        y.push_str(&format!("  description: {d}\n"));
    }
    y
}

async fn get(s: &TestServer, name: &str) -> Value {
    s.http()
        .get(format!("{}{AGENTS}/{name}", s.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn apply_raw(s: &TestServer, name: &str, query: &str, body: &str) -> (u16, Value) {
    apply_at(s, &format!("{AGENTS}/{name}"), query, body).await
}

/// An `application/apply-patch+yaml` PATCH of the object at `path`: the code and the body.
pub async fn apply_at(s: &TestServer, path: &str, query: &str, body: &str) -> (u16, Value) {
    let r = s
        .http()
        .patch(format!("{}{path}?{query}", s.base_url()))
        .header("content-type", "application/apply-patch+yaml")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let code = r.status().as_u16();
    (code, r.json().await.unwrap())
}

fn entries(o: &Value) -> Vec<Value> {
    o["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_server_side_apply_creates_owns_and_changes_nothing_when_applied_again() {
    let s = TestServer::start().await;
    let out = ok_stdin(
        &s,
        &["apply", "--server-side", "-f", "-"],
        Some(&agent_yaml("p1", None)),
    )
    .await;
    assert_eq!(
        out.trim(),
        "agent.ark.mckinsey.com/planner serverside-applied"
    );
    let live = get(&s, "planner").await;
    let e = entries(&live);
    assert_eq!(e.len(), 1, "{live}");
    assert_eq!(e[0]["manager"], "kubectl");
    assert_eq!(e[0]["operation"], "Apply");
    assert_eq!(e[0]["apiVersion"], "ark.mckinsey.com/v1alpha1");
    assert_eq!(
        serde_json::to_string(&e[0]["fieldsV1"]).unwrap(),
        r#"{"f:metadata":{"f:labels":{"f:team":{}}},"f:spec":{"f:prompt":{}}}"#
    );
    let rv = live["metadata"]["resourceVersion"].clone();

    // The same configuration again: no write, no new resourceVersion, same timestamps.
    ok_stdin(
        &s,
        &["apply", "--server-side", "-f", "-"],
        Some(&agent_yaml("p1", None)),
    )
    .await;
    let again = get(&s, "planner").await;
    assert_eq!(again["metadata"]["resourceVersion"], rv);
    assert_eq!(entries(&again), e);

    // A changed field is written; a dropped field is removed.
    ok_stdin(
        &s,
        &["apply", "--server-side", "-f", "-"],
        Some(&agent_yaml("p2", Some("d"))),
    )
    .await;
    let changed = get(&s, "planner").await;
    assert_eq!(changed["spec"]["prompt"], "p2");
    assert_eq!(changed["spec"]["description"], "d");
    ok_stdin(
        &s,
        &["apply", "--server-side", "-f", "-"],
        Some(&agent_yaml("p2", None)),
    )
    .await;
    let dropped = get(&s, "planner").await;
    assert!(dropped["spec"].get("description").is_none(), "{dropped}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_managers_change_conflicts_until_forced_with_kubes_messages() {
    let s = TestServer::start().await;
    ok_stdin(
        &s,
        &["apply", "--server-side", "-f", "-"],
        Some(&agent_yaml("p1", None)),
    )
    .await;
    let out = fails(
        &s,
        &["apply", "--server-side", "--field-manager=flux", "-f", "-"],
        Some(&agent_yaml("p2", None)),
    )
    .await;
    assert!(
        out.stderr
            .contains(r#"conflict with "kubectl": .spec.prompt"#),
        "{}",
        out.stderr
    );
    let (code, status) =
        apply_raw(&s, "planner", "fieldManager=flux", &agent_yaml("p2", None)).await;
    assert_eq!(code, 409, "{status}");
    assert_eq!(status["reason"], "Conflict");
    assert_eq!(
        status["message"],
        r#"Apply failed with 1 conflict: conflict with "kubectl": .spec.prompt"#
    );
    assert_eq!(
        status["details"]["causes"],
        json!([{"reason": "FieldManagerConflict", "message": "conflict with \"kubectl\"", "field": ".spec.prompt"}])
    );

    ok_stdin(
        &s,
        &[
            "apply",
            "--server-side",
            "--field-manager=flux",
            "--force-conflicts",
            "-f",
            "-",
        ],
        Some(&agent_yaml("p2", None)),
    )
    .await;
    let live = get(&s, "planner").await;
    assert_eq!(live["spec"]["prompt"], "p2");
    let flux = entries(&live)
        .into_iter()
        .find(|e| e["manager"] == "flux")
        .unwrap();
    assert_eq!(
        serde_json::to_string(&flux["fieldsV1"]).unwrap(),
        r#"{"f:metadata":{"f:labels":{"f:team":{}}},"f:spec":{"f:prompt":{}}}"#
    );

    // An Update manager is named with its version.
    ok(
        &s,
        &[
            "patch",
            "agent",
            "planner",
            "--type=merge",
            "-p",
            r#"{"spec":{"description":"by hand"}}"#,
            "--field-manager=editor",
        ],
    )
    .await;
    let (code, status) = apply_raw(
        &s,
        "planner",
        "fieldManager=kubectl",
        &agent_yaml("p2", Some("mine")),
    )
    .await;
    assert_eq!(code, 409);
    assert_eq!(
        status["message"],
        r#"Apply failed with 1 conflict: conflict with "editor" using ark.mckinsey.com/v1alpha1: .spec.description"#
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_requests_are_checked_as_kube_checks_them() {
    let s = TestServer::start().await;
    let yaml = agent_yaml("p", None);
    let (code, st) = apply_raw(&s, "planner", "", &yaml).await;
    assert_eq!(code, 422, "{st}");
    assert_eq!(
        st["message"],
        r#"PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch"#
    );
    let r = s
        .http()
        .patch(format!("{}{AGENTS}/planner?force=true", s.base_url()))
        .header("content-type", "application/merge-patch+json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 422);

    let wrong_kind = yaml.replace("kind: Agent", "kind: Team");
    let (code, st) = apply_raw(&s, "planner", "fieldManager=m", &wrong_kind).await;
    assert_eq!(
        (code, st["reason"].as_str()),
        (400, Some("BadRequest")),
        "{st}"
    );
    let with_mf = yaml.replace(
        "  name: planner\n",
        "  name: planner\n  managedFields: []\n",
    );
    let (code, st) = apply_raw(&s, "planner", "fieldManager=m", &with_mf).await;
    assert_eq!(
        (code, st["message"].as_str()),
        (400, Some("metadata.managedFields must be nil"))
    );
    let with_uid = yaml.replace("  name: planner\n", "  name: planner\n  uid: abc-1234\n");
    let (code, st) = apply_raw(&s, "planner", "fieldManager=m", &with_uid).await;
    assert_eq!(code, 409, "{st}");
    assert!(
        st["message"].as_str().unwrap().contains("uid mismatch"),
        "{st}"
    );
    let unknown = yaml.replace("  prompt: p\n", "  prompt: p\n  nope: 1\n");
    let (code, st) = apply_raw(&s, "planner", "fieldManager=m", &unknown).await;
    assert_eq!(code, 400, "{st}");
    assert!(
        st["message"]
            .as_str()
            .unwrap()
            .ends_with(".spec.nope: field not declared in schema"),
        "{st}"
    );

    // dryRun creates nothing; a real apply creates with 201, then answers 200.
    let (code, _) = apply_raw(&s, "planner", "fieldManager=m&dryRun=All", &yaml).await;
    assert_eq!(code, 201);
    let r = s
        .http()
        .get(format!("{}{AGENTS}/planner", s.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let (code, created) = apply_raw(&s, "planner", "fieldManager=m", &yaml).await;
    assert_eq!(code, 201, "{created}");
    let (code, _) = apply_raw(&s, "planner", "fieldManager=m", &yaml).await;
    assert_eq!(code, 200);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_is_applied_through_its_subresource_and_owned_there() {
    let s = TestServer::start().await;
    ok_stdin(
        &s,
        &["apply", "--server-side", "-f", "-"],
        Some(&agent_yaml("p", None)),
    )
    .await;
    let status = "apiVersion: ark.mckinsey.com/v1alpha1\nkind: Agent\nmetadata:\n  name: planner\nstatus:\n  conditions:\n  - type: Available\n    status: \"True\"\n    lastTransitionTime: \"2026-12-03T10:00:00Z\"\n    reason: Ready\n    message: ok\n";
    let r = s
        .http()
        .patch(format!(
            "{}{AGENTS}/planner/status?fieldManager=controller",
            s.base_url()
        ))
        .header("content-type", "application/apply-patch+yaml")
        .body(status)
        .send()
        .await
        .unwrap();
    let code = r.status().as_u16();
    let body: Value = r.json().await.unwrap();
    assert_eq!(code, 200, "{body}");
    let live = get(&s, "planner").await;
    let c = entries(&live)
        .into_iter()
        .find(|e| e["manager"] == "controller")
        .expect("controller entry");
    assert_eq!(c["subresource"], "status");
    assert_eq!(c["operation"], "Apply");
    assert_eq!(
        serde_json::to_string(&c["fieldsV1"]).unwrap(),
        r#"{"f:status":{"f:conditions":{}}}"#
    );
    // The main resource's applier neither owns nor removes status.
    ok_stdin(
        &s,
        &["apply", "--server-side", "-f", "-"],
        Some(&agent_yaml("p3", None)),
    )
    .await;
    let live = get(&s, "planner").await;
    assert!(live.get("status").is_some(), "{live}");
    s.stop().await;
}
