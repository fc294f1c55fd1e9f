//! The migration idiom, with kubectl pointed straight at the server (dev mode, no
//! kube-apiserver in front):
//!
//! ```sh
//! kubectl get agents,models,queries,teams,tools -o yaml > x.yaml
//! kubectl apply -f x.yaml
//! ```
//!
//! The file is a `kind: List`. For it kubectl validates against `/openapi/v2` in its protobuf
//! form and maps `v1 List` through core `v1` discovery, which behind the aggregator
//! kube-apiserver would answer. Held to both kubectl releases the project meets: 1.32 on the
//! machine and 1.35 from `scripts/install-tools`.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::harness::TestServer;

const KINDS: &str = "agents,models,queries,teams,tools";
const NAMESPACE: &str = "migrate";
const SAMPLES: [&str; 5] = [
    "agent.yaml",
    "model.yaml",
    "query.yaml",
    "team.yaml",
    "tool.yaml",
];

const PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";
const PROTOBUF_DEPRECATED: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";

/// A kubectl release's binary, or `None` (said on stderr) when this machine lacks it.
fn kubectl_release(release: &str) -> Option<String> {
    let path = match release {
        "1.32" => "/usr/bin/kubectl".to_string(),
        _ => format!("{}/.tools/kubectl", env!("CARGO_MANIFEST_DIR")),
    };
    if std::path::Path::new(&path).exists() {
        Some(path)
    } else {
        eprintln!("kubectl {release} not found at {path}: skipping it (scripts/install-tools installs 1.35)");
        None
    }
}

/// One kubectl binary against one server.
struct Kubectl<'a> {
    server: &'a TestServer,
    binary: &'a str,
}

impl Kubectl<'_> {
    /// Runs it and insists it succeeded; returns stdout.
    async fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.server.kubectl_using(self.binary, args, stdin).await;
        assert!(
            out.ok,
            "{} {args:?} failed\nstdout: {}\nstderr: {}",
            self.binary, out.stdout, out.stderr
        );
        out.stdout
    }
}

/// (kind, name) -> (spec, labels) of every item of a List.
fn specs_and_labels(list: &Value) -> BTreeMap<(String, String), (Value, Value)> {
    list["items"]
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|o| {
            let key = (
                o["kind"].as_str().unwrap_or_default().to_string(),
                o["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            );
            (key, (o["spec"].clone(), o["metadata"]["labels"].clone()))
        })
        .collect()
}

/// Creates two objects of each kind from samples/ (the second a renamed copy with a label of
/// its own), exports them with `get -o yaml`, deletes them, applies the export with
/// validation on, and compares what came back with what went out.
async fn export_delete_and_apply_back(binary: &str) {
    let server = TestServer::start().await;
    let k = Kubectl {
        server: &server,
        binary,
    };
    for file in SAMPLES {
        let path = crate::kubectl::sample(file);
        k.ok(&["create", "-n", NAMESPACE, "-f", &path], None).await;
        let copy = std::fs::read_to_string(&path)
            .unwrap()
            .replace("metadata:\n  name: ", "metadata:\n  name: copy-of-")
            .replace(
                "\n  labels:\n",
                "\n  labels:\n    sample.ark/copy: \"yes\"\n",
            );
        k.ok(&["create", "-n", NAMESPACE, "-f", "-"], Some(&copy))
            .await;
    }
    let exported = k
        .ok(&["get", KINDS, "-o", "yaml", "-n", NAMESPACE], None)
        .await;
    let before: Value = serde_saphyr::from_str(&exported).unwrap();
    assert_eq!(before["kind"], "List");
    let before = specs_and_labels(&before);
    assert_eq!(before.len(), 12, "two of each sample: {before:?}");
    let copies = before
        .iter()
        .filter(|((_, name), (_, labels))| {
            name.starts_with("copy-of-") && labels["sample.ark/copy"] == "yes"
        })
        .count();
    assert_eq!(copies, 6);

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x.yaml");
    std::fs::write(&file, &exported).unwrap();
    let file = file.to_string_lossy().to_string();

    k.ok(&["delete", KINDS, "--all", "-n", NAMESPACE], None)
        .await;
    let left = k
        .ok(&["get", KINDS, "-o", "name", "-n", NAMESPACE], None)
        .await;
    assert_eq!(left.trim(), "", "everything was deleted");

    // No -n: every object names its namespace in the file. Validation is kubectl's default.
    let applied = k.ok(&["apply", "-f", &file], None).await;
    assert_eq!(
        applied.lines().filter(|l| l.ends_with(" created")).count(),
        12,
        "{applied}"
    );
    let after = k
        .ok(&["get", KINDS, "-o", "json", "-n", NAMESPACE], None)
        .await;
    let after = specs_and_labels(&serde_json::from_str(&after).unwrap());
    assert_eq!(after, before);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_1_32_applies_back_a_list_it_exported() {
    if let Some(kubectl) = kubectl_release("1.32") {
        export_delete_and_apply_back(&kubectl).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_1_35_applies_back_a_list_it_exported() {
    if let Some(kubectl) = kubectl_release("1.35") {
        export_delete_and_apply_back(&kubectl).await;
    }
}

/// What kubectl's client-side validation and `explain --output plaintext-openapiv2` read
/// from the protobuf `/openapi/v2`: the schemas themselves, not just bytes it accepts.
async fn validate_and_explain_from_the_protobuf_document(binary: &str) {
    let server = TestServer::start().await;
    let list = "apiVersion: v1
kind: List
items:
- apiVersion: ark.mckinsey.com/v1alpha1
  kind: Agent
  metadata:
    name: typo
  spec:
    prompt: hi
    promtp: hi
";
    let out = server
        .kubectl_using(binary, &["apply", "-f", "-"], Some(list))
        .await;
    assert!(!out.ok, "{}", out.stdout);
    let refusal = r#"unknown field "promtp" in com.mckinsey.ark.v1alpha1.Agent.spec"#;
    assert!(out.stderr.contains(refusal), "{}", out.stderr);
    let k = Kubectl {
        server: &server,
        binary,
    };
    let explain = [
        "explain",
        "agents.spec.prompt",
        "--output",
        "plaintext-openapiv2",
    ];
    let explained = k.ok(&explain, None).await;
    assert!(
        explained.contains("FIELD:    prompt <string>"),
        "{explained}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_1_32_validates_lists_and_explains_from_the_protobuf_openapi() {
    if let Some(kubectl) = kubectl_release("1.32") {
        validate_and_explain_from_the_protobuf_document(&kubectl).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_1_35_validates_lists_and_explains_from_the_protobuf_openapi() {
    if let Some(kubectl) = kubectl_release("1.35") {
        validate_and_explain_from_the_protobuf_document(&kubectl).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_v1_discovery_lists_only_the_namespace_lookup_the_server_answers() {
    let s = TestServer::start().await;
    let h = s.http();
    let get = |path: &'static str| h.get(format!("{}{path}", s.base_url())).send();
    let api: Value = get("/api").await.unwrap().json().await.unwrap();
    assert_eq!(api["kind"], "APIVersions");
    assert_eq!(api["versions"], serde_json::json!(["v1"]));
    let v1: Value = get("/api/v1").await.unwrap().json().await.unwrap();
    assert_eq!(
        v1,
        serde_json::json!({
            "kind": "APIResourceList",
            "groupVersion": "v1",
            "resources": [{
                "name": "namespaces",
                "singularName": "namespace",
                "namespaced": false,
                "kind": "Namespace",
                "verbs": ["get"],
            }],
        })
    );
    // Nothing else of core v1 is served.
    let pods = get("/api/v1/namespaces/default/pods").await.unwrap();
    assert_eq!(pods.status(), 404);
    let namespace: Value = get("/api/v1/namespaces/default")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(namespace["status"]["phase"], "Active");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_v2_is_served_as_protobuf_or_json_by_accept_and_406_otherwise() {
    let s = TestServer::start().await;
    let h = s.http();
    let url = format!("{}/openapi/v2", s.base_url());
    let get = |accept: &'static str| h.get(&url).header("accept", accept).send();

    let json = get("application/json").await.unwrap();
    assert_eq!(json.status(), 200);
    assert_eq!(json.headers()["content-type"], "application/json");
    assert_eq!(json.headers()["vary"], "Accept");
    let etag = json.headers()["etag"].to_str().unwrap().to_string();
    let doc: Value = json.json().await.unwrap();
    assert_eq!(doc["swagger"], "2.0");

    for accept in [PROTOBUF_DEPRECATED, PROTOBUF] {
        let proto = get(accept).await.unwrap();
        assert_eq!(proto.status(), 200, "{accept}");
        assert_eq!(proto.headers()["content-type"], PROTOBUF);
        assert_eq!(proto.headers()["vary"], "Accept");
        // One ETag for both forms, as kube-openapi does: Vary tells the forms apart.
        assert_eq!(proto.headers()["etag"], etag.as_str());
        let body = proto.bytes().await.unwrap();
        // Document.swagger (field 1, length-delimited) comes first.
        assert_eq!(&body[..5], b"\x0a\x032.0");
    }

    // The client's order decides; a wildcard is JSON.
    let both = get("application/com.github.proto-openapi.spec.v2.v1.0+protobuf, application/json")
        .await
        .unwrap();
    assert_eq!(both.headers()["content-type"], PROTOBUF);
    let any = get("*/*").await.unwrap();
    assert_eq!(any.headers()["content-type"], "application/json");

    let cached = h
        .get(&url)
        .header("accept", PROTOBUF)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(cached.status(), 304);

    let refused = get("text/html").await.unwrap();
    assert_eq!(refused.status(), 406);
    let status: Value = refused.json().await.unwrap();
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "NotAcceptable");
    assert_eq!(status["code"], 406);
    s.stop().await;
}
