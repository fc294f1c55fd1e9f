//! Server-side apply over a CRD whose schema uses every list and map type (the Ark CRDs
//! have only atomic lists): what each type makes an apply own, merge and remove, the
//! requests Flux and Argo CD send to correct drift, and two managers applying at once.

use serde_json::{json, Value};

use crate::apply::apply_at;
use crate::harness::TestServer;
use crate::kubectl::{ok, ok_stdin};

const WIDGETS: &str = "/apis/ark.mckinsey.com/v1alpha1/namespaces/default/widgets";

const WIDGET_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.ark.mckinsey.com
spec:
  group: ark.mckinsey.com
  names: {kind: Widget, listKind: WidgetList, plural: widgets, singular: widget}
  scope: Namespaced
  versions:
  - name: v1alpha1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              atomicList: {type: array, items: {type: string}}
              tags:
                type: array
                x-kubernetes-list-type: set
                items: {type: string}
              containers:
                type: array
                x-kubernetes-list-type: map
                x-kubernetes-list-map-keys: [name]
                items:
                  type: object
                  required: [name]
                  properties:
                    name: {type: string}
                    image: {type: string}
              ports:
                type: array
                x-kubernetes-list-type: map
                x-kubernetes-list-map-keys: [port, protocol]
                items:
                  type: object
                  required: [port]
                  properties:
                    port: {type: integer}
                    protocol: {type: string, default: TCP}
                    name: {type: string}
              selector:
                type: object
                x-kubernetes-map-type: atomic
                additionalProperties: {type: string}
              replicas: {type: integer, default: 1}
          status:
            type: object
            properties:
              ready: {type: boolean}
"#;

async fn start() -> TestServer {
    let dir = std::env::temp_dir().join(format!(
        "ark-widget-crd-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("widgets.yaml"), WIDGET_CRD).unwrap();
    TestServer::start_with(|o| o.crd_dir = Some(dir.clone())).await
}

fn rand_suffix() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn widget(spec: Value) -> String {
    json!({"apiVersion": "ark.mckinsey.com/v1alpha1", "kind": "Widget",
           "metadata": {"name": "w"}, "spec": spec})
    .to_string()
}

async fn apply(s: &TestServer, query: &str, body: &str) -> (u16, Value) {
    apply_at(s, &format!("{WIDGETS}/w"), query, body).await
}

async fn applied(s: &TestServer, manager: &str, spec: Value) -> Value {
    let (code, body) = apply(s, &format!("fieldManager={manager}"), &widget(spec)).await;
    assert!(code == 200 || code == 201, "{manager}: {code} {body}");
    body
}

/// A merge patch of widget `w` by `manager` (an Update operation); its status code.
async fn merge_patch(s: &TestServer, manager: &str, body: &'static str) -> u16 {
    s.http()
        .patch(format!(
            "{}{WIDGETS}/w?fieldManager={manager}",
            s.base_url()
        ))
        .header("content-type", "application/merge-patch+json")
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn live(s: &TestServer) -> Value {
    s.http()
        .get(format!("{}{WIDGETS}/w", s.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The `fieldsV1` of `manager`'s entry, as the bytes kube would write.
fn fields(o: &Value, manager: &str) -> String {
    let e = o["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["manager"] == manager)
        .unwrap_or_else(|| panic!("no entry for {manager}: {o}"));
    serde_json::to_string(&e["fieldsV1"]).unwrap()
}

fn managers(o: &Value) -> Vec<String> {
    o["metadata"]["managedFields"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| e["manager"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_list_and_map_type_decides_what_an_apply_owns_merges_and_removes() {
    let s = start().await;
    let a = applied(
        &s,
        "a",
        json!({
            "atomicList": ["x", "y"],
            "tags": ["t1", "shared"],
            "containers": [{"name": "web", "image": "web:1"}],
            "ports": [{"port": 80}],
            "selector": {"app": "w", "tier": "front"},
        }),
    )
    .await;
    // Sets own values, maps own keyed items (a missing key takes its schema default),
    // atomic lists and atomic maps are owned whole.
    assert_eq!(
        fields(&a, "a"),
        r#"{"f:spec":{"f:atomicList":{},"f:containers":{"k:{\"name\":\"web\"}":{".":{},"f:image":{},"f:name":{}}},"f:ports":{"k:{\"port\":80,\"protocol\":\"TCP\"}":{".":{},"f:port":{}}},"f:selector":{},"f:tags":{"v:\"shared\"":{},"v:\"t1\"":{}}}}"#
    );
    assert_eq!(a["spec"]["ports"], json!([{"port": 80, "protocol": "TCP"}]));
    assert_eq!(a["spec"]["replicas"], 1, "schema defaults still apply");

    // A second manager adds items to the granular lists; its items follow a's.
    let b = applied(
        &s,
        "b",
        json!({
            "tags": ["shared", "t2"],
            "containers": [{"name": "sidecar", "image": "side:1"}],
            "ports": [{"port": 80, "protocol": "UDP"}],
        }),
    )
    .await;
    assert_eq!(b["spec"]["tags"], json!(["t1", "shared", "t2"]));
    assert_eq!(
        b["spec"]["containers"],
        json!([{"name": "web", "image": "web:1"}, {"name": "sidecar", "image": "side:1"}])
    );
    assert_eq!(
        b["spec"]["ports"],
        json!([{"port": 80, "protocol": "TCP"}, {"port": 80, "protocol": "UDP"}])
    );

    // Atomic list and map: any change conflicts with the owner of the whole; so does a
    // field of a keyed item another manager owns.
    for (spec, path) in [
        (json!({"atomicList": ["x"]}), ".spec.atomicList"),
        (json!({"selector": {"app": "w"}}), ".spec.selector"),
        (
            json!({"containers": [{"name": "web", "image": "web:2"}]}),
            r#".spec.containers[name="web"].image"#,
        ),
    ] {
        let (code, st) = apply(&s, "fieldManager=b", &widget(spec)).await;
        assert_eq!(code, 409, "{st}");
        assert_eq!(
            st["message"],
            format!(r#"Apply failed with 1 conflict: conflict with "a": {path}"#)
        );
    }

    // a stops applying its tags: t1 (it alone owns it) goes, "shared" (b owns it too)
    // stays. Its container and its atomic list, which only it owned, go too.
    let after = applied(
        &s,
        "a",
        json!({"ports": [{"port": 80}], "selector": {"app": "w", "tier": "front"}}),
    )
    .await;
    assert_eq!(after["spec"]["tags"], json!(["shared", "t2"]), "{after}");
    assert_eq!(
        after["spec"]["containers"],
        json!([{"name": "sidecar", "image": "side:1"}])
    );
    assert!(after["spec"].get("atomicList").is_none(), "{after}");
    assert_eq!(
        fields(&after, "a"),
        r#"{"f:spec":{"f:ports":{"k:{\"port\":80,\"protocol\":\"TCP\"}":{".":{},"f:port":{}}},"f:selector":{}}}"#
    );

    // b applies nothing of spec: it is left owning nothing and leaves managedFields, and
    // what only it owned goes.
    let (code, gone) = apply(
        &s,
        "fieldManager=b",
        &json!({"apiVersion": "ark.mckinsey.com/v1alpha1", "kind": "Widget",
                "metadata": {"name": "w"}})
        .to_string(),
    )
    .await;
    assert_eq!(code, 200, "{gone}");
    assert_eq!(managers(&gone), vec!["a"]);
    assert!(
        gone["spec"].get("tags").is_none_or(|t| t == &json!([])),
        "{gone}"
    );
    assert_eq!(
        gone["spec"]["ports"],
        json!([{"port": 80, "protocol": "TCP"}])
    );

    // Duplicate keys in an associative list of the configuration are 422.
    let (code, st) = apply(
        &s,
        "fieldManager=a",
        &widget(json!({"containers": [{"name": "web"}, {"name": "web"}]})),
    )
    .await;
    assert_eq!(
        (code, st["reason"].as_str()),
        (422, Some("Invalid")),
        "{st}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_takes_the_fields_it_changes_and_flux_and_argo_take_them_back_by_force() {
    let s = start().await;
    let spec = json!({"containers": [{"name": "web", "image": "web:1"}], "replicas": 2});
    let (code, _) = apply(
        &s,
        "fieldManager=kustomize-controller&force=true",
        &widget(spec.clone()),
    )
    .await;
    assert_eq!(code, 201);

    // Drift: someone scales and re-images by hand (an Update with its own manager).
    assert_eq!(
        merge_patch(&s, "kubectl-edit", r#"{"spec":{"replicas":5}}"#).await,
        200
    );
    let drifted = live(&s).await;
    assert_eq!(
        fields(&drifted, "kubectl-edit"),
        r#"{"f:spec":{"f:replicas":{}}}"#
    );
    assert_eq!(
        fields(&drifted, "kustomize-controller"),
        r#"{"f:spec":{"f:containers":{"k:{\"name\":\"web\"}":{".":{},"f:image":{},"f:name":{}}}}}"#,
        "the Update took replicas away from the applier"
    );
    let rv = drifted["metadata"]["resourceVersion"].clone();

    // Flux: a forced dry run first (the diff it reports), then the forced apply.
    let (code, dry) = apply(
        &s,
        "fieldManager=kustomize-controller&force=true&dryRun=All",
        &widget(spec.clone()),
    )
    .await;
    assert_eq!(code, 200, "{dry}");
    assert_eq!(dry["spec"]["replicas"], 2);
    assert_eq!(
        live(&s).await["metadata"]["resourceVersion"],
        rv,
        "dry run wrote"
    );
    let (code, fixed) = apply(
        &s,
        "fieldManager=kustomize-controller&force=true",
        &widget(spec.clone()),
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(fixed["spec"]["replicas"], 2);
    assert_eq!(managers(&fixed), vec!["kustomize-controller"]);

    // Argo CD with ServerSideApply=true: its own manager, forced, takes the object over
    // field by field and shares what it applies with the same value.
    assert_eq!(
        merge_patch(
            &s,
            "kubectl-edit",
            r#"{"spec":{"containers":[{"name":"web","image":"web:hotfix"}]}}"#
        )
        .await,
        200
    );
    let (code, argo) = apply(
        &s,
        "fieldManager=argocd-controller&force=true",
        &widget(spec.clone()),
    )
    .await;
    assert_eq!(code, 200, "{argo}");
    assert_eq!(
        argo["spec"]["containers"],
        json!([{"name": "web", "image": "web:1"}])
    );
    let m = managers(&argo);
    assert!(m.contains(&"argocd-controller".to_string()), "{m:?}");
    assert!(!m.contains(&"kubectl-edit".to_string()), "{m:?}");

    // The same configuration again by either applier writes nothing.
    let rv = argo["metadata"]["resourceVersion"].clone();
    let (_, again) = apply(
        &s,
        "fieldManager=argocd-controller&force=true",
        &widget(spec),
    )
    .await;
    assert_eq!(again["metadata"]["resourceVersion"], rv);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_managers_applying_at_once_never_lose_each_others_fields() {
    let s = start().await;
    applied(&s, "seed", json!({"replicas": 1})).await;
    let rounds = 25;
    let mut tasks = Vec::new();
    for m in ["alpha", "beta"] {
        let (http, url) = (
            s.http(),
            format!("{}{WIDGETS}/w?fieldManager={m}", s.base_url()),
        );
        tasks.push(tokio::spawn(async move {
            for i in 0..rounds {
                let body = widget(json!({
                    "containers": [{"name": m, "image": format!("{m}:{i}")}],
                    "tags": [format!("{m}-{i}")],
                }));
                let r = http
                    .patch(&url)
                    .header("content-type", "application/apply-patch+yaml")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let o = live(&s).await;
    let last = rounds - 1;
    let mut containers: Vec<Value> = o["spec"]["containers"].as_array().unwrap().clone();
    containers.sort_by_key(|c| c["name"].as_str().unwrap().to_string());
    assert_eq!(
        containers,
        vec![
            json!({"name": "alpha", "image": format!("alpha:{last}")}),
            json!({"name": "beta", "image": format!("beta:{last}")}),
        ],
        "{o}"
    );
    let mut tags: Vec<String> = o["spec"]["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    tags.sort();
    assert_eq!(tags, vec![format!("alpha-{last}"), format!("beta-{last}")]);
    assert_eq!(
        fields(&o, "alpha"),
        format!(
            r#"{{"f:spec":{{"f:containers":{{"k:{{\"name\":\"alpha\"}}":{{".":{{}},"f:image":{{}},"f:name":{{}}}}}},"f:tags":{{"v:\"alpha-{last}\"":{{}}}}}}}}"#
        )
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_diff_server_side_shows_what_an_apply_would_change() {
    let s = start().await;
    let y = |image: &str| {
        format!(
            "apiVersion: ark.mckinsey.com/v1alpha1\nkind: Widget\nmetadata:\n  name: w\n  namespace: default\nspec:\n  containers:\n  - name: web\n    image: {image}\n"
        )
    };
    ok_stdin(
        &s,
        &["apply", "--server-side", "-f", "-"],
        Some(&y("web:1")),
    )
    .await;
    let same = s
        .kubectl_stdin(&["diff", "--server-side", "-f", "-"], Some(&y("web:1")))
        .await;
    assert!(
        same.ok,
        "no difference exits 0: {} {}",
        same.stdout, same.stderr
    );
    assert!(same.stdout.is_empty(), "{}", same.stdout);
    let changed = s
        .kubectl_stdin(&["diff", "--server-side", "-f", "-"], Some(&y("web:2")))
        .await;
    assert!(!changed.ok, "a difference exits 1");
    let line = |sign: char, text: &str| {
        changed
            .stdout
            .lines()
            .any(|l| l.starts_with(sign) && l.contains(text))
    };
    assert!(line('-', "image: web:1"), "{}", changed.stdout);
    assert!(line('+', "image: web:2"), "{}", changed.stdout);
    // The diff wrote nothing.
    let o: Value =
        serde_json::from_str(&ok(&s, &["get", "widget", "w", "-o", "json"]).await).unwrap();
    assert_eq!(o["spec"]["containers"][0]["image"], "web:1");
    s.stop().await;
}
