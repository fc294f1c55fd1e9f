//! `fieldValidation`: what a write does with fields the schema does not know. kubectl
//! sends Strict by default (and, since the server's OpenAPI lists the parameter, skips its
//! own schema check), so a typo must fail on the server as it does on kube-apiserver
//! instead of being pruned in silence.

use serde_json::Value;

use crate::harness::TestServer;
use crate::kubectl::{fails, ok_stdin};

const AGENTS: &str = "/apis/ark.mckinsey.com/v1alpha1/namespaces/default/agents";

fn typo_agent(name: &str) -> String {
    format!(
        "apiVersion: ark.mckinsey.com/v1alpha1\nkind: Agent\nmetadata:\n  name: {name}\nspec:\n  prompt: p\n  promt: typo\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_refuses_a_typo_by_default_warns_when_asked_and_ignores_it_without_validation() {
    let s = TestServer::start().await;
    let out = fails(&s, &["apply", "-f", "-"], Some(&typo_agent("strict"))).await;
    assert!(
        out.stderr.contains(
            r#"Agent in version "v1alpha1" cannot be handled as a Agent: strict decoding error: unknown field "spec.promt""#
        ),
        "{}",
        out.stderr
    );

    let warn = s
        .kubectl_stdin(
            &["apply", "--validate=warn", "-f", "-"],
            Some(&typo_agent("warned")),
        )
        .await;
    assert!(warn.ok, "{}", warn.stderr);
    assert!(
        warn.stderr
            .contains(r#"Warning: unknown field "spec.promt""#),
        "{}",
        warn.stderr
    );

    let quiet = s
        .kubectl_stdin(
            &["apply", "--validate=false", "-f", "-"],
            Some(&typo_agent("quiet")),
        )
        .await;
    assert!(quiet.ok, "{}", quiet.stderr);
    assert!(!quiet.stderr.contains("Warning"), "{}", quiet.stderr);
    ok_stdin(&s, &["get", "agent", "quiet"], None).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_without_the_parameter_warn_and_strict_patches_name_only_what_the_patch_brought() {
    let s = TestServer::start().await;
    let h = s.http();
    let url = format!("{}{AGENTS}", s.base_url());
    let body = serde_json::json!({"apiVersion": "ark.mckinsey.com/v1alpha1", "kind": "Agent",
        "metadata": {"name": "a", "colour": "red"}, "spec": {"prompt": "p", "promt": "x"}});
    let r = h.post(&url).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let warnings: Vec<String> = r
        .headers()
        .get_all("warning")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert_eq!(
        warnings,
        vec![
            r#"299 - "unknown field \"metadata.colour\"""#,
            r#"299 - "unknown field \"spec.promt\"""#
        ]
    );
    let created: Value = r.json().await.unwrap();
    assert!(created["spec"].get("promt").is_none(), "pruned: {created}");

    let patch = |q: &'static str, body: &'static str| {
        let (h, url) = (h.clone(), format!("{url}/a?{q}"));
        async move {
            let r = h
                .patch(url)
                .header("content-type", "application/merge-patch+json")
                .body(body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (code, st) = patch(
        "fieldValidation=Strict",
        r#"{"spec":{"description":"d","nope":{"deep":1}}}"#,
    )
    .await;
    assert_eq!(
        (code, st["reason"].as_str()),
        (400, Some("BadRequest")),
        "{st}"
    );
    assert_eq!(
        st["message"],
        r#"strict decoding error: unknown field "spec.nope""#
    );
    let (code, _) = patch("fieldValidation=Strict", r#"{"spec":{"description":"d"}}"#).await;
    assert_eq!(code, 200);
    let (code, st) = patch("fieldValidation=Sometimes", "{}").await;
    assert_eq!(
        (code, st["reason"].as_str()),
        (422, Some("Invalid")),
        "{st}"
    );
    assert_eq!(
        st["message"],
        r#"PatchOptions.meta.k8s.io "" is invalid: fieldValidation: Unsupported value: "Sometimes": supported values: "", "Ignore", "Strict", "Warn""#
    );
    let r = h
        .post(format!("{url}?fieldValidation=strict"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        422,
        "the directive is case-sensitive, as kube's"
    );
    s.stop().await;
}
