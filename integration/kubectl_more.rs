//! More of kubectl end to end: explain, the upstream Ark samples, generateName, server
//! dry run and finalizers. Helpers live in kubectl.rs.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value;

use crate::harness::TestServer;
use crate::kubectl::{agent_yaml, fails, get_json, names, ok, ok_stdin, table, KINDS};

/// The whitespace-separated words of each line, for layout-independent matching.
fn word_lines(out: &str) -> Vec<Vec<&str>> {
    out.lines()
        .map(|l| l.split_whitespace().collect())
        .collect()
}

fn has_line(out: &str, words: &[&str]) -> bool {
    word_lines(out).iter().any(|l| l.as_slice() == words)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_describes_agent_and_its_spec_fields() {
    let server = TestServer::start().await;
    let out = server.kubectl(&["explain", "agent.spec"]).await;
    assert!(out.ok, "kubectl explain agent.spec: {}", out.stderr);
    for words in [
        &["GROUP:", "ark.mckinsey.com"][..],
        &["KIND:", "Agent"],
        &["VERSION:", "v1alpha1"],
        &["FIELD:", "spec", "<Object>"],
        &["prompt", "<string>"],
        &["modelRef", "<Object>"],
        &["tools", "<[]Object>"],
    ] {
        assert!(
            has_line(&out.stdout, words),
            "no line {words:?} in\n{}",
            out.stdout
        );
    }

    let out = ok(&server, &["explain", "agents"]).await;
    for words in [
        &["KIND:", "Agent"][..],
        &["VERSION:", "v1alpha1"],
        &["apiVersion", "<string>"],
        &["kind", "<string>"],
        &["metadata", "<ObjectMeta>"],
        &["spec", "<Object>"],
        &["status", "<Object>"],
    ] {
        assert!(has_line(&out, words), "no line {words:?} in\n{out}");
    }

    // The v1prealpha1 kinds and the cluster-scoped one are documented too.
    let out = ok(&server, &["explain", "a2aservers.spec.address"]).await;
    assert!(has_line(&out, &["VERSION:", "v1prealpha1"]), "{out}");
    assert!(has_line(&out, &["FIELD:", "address", "<Object>"]), "{out}");
    let out = ok(&server, &["explain", "arkconfig.spec"]).await;
    assert!(has_line(&out, &["KIND:", "ArkConfig"]), "{out}");
    server.stop().await;
}

/// The ark.mckinsey.com documents of one multi-document YAML file, as text.
fn ark_documents(text: &str) -> Vec<String> {
    let mut docs = vec![String::new()];
    for line in text.lines() {
        if line.trim_end() == "---" {
            docs.push(String::new());
        } else {
            let d = docs.last_mut().unwrap();
            d.push_str(line);
            d.push('\n');
        }
    }
    docs.into_iter()
        .filter(|d| {
            d.lines()
                .any(|l| l.starts_with("apiVersion: ark.mckinsey.com/"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_upstream_ark_sample_applies_and_lists() {
    let Some(dir) = crate::harness::reference_dir("samples") else {
        return;
    };
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    let mut docs = Vec::new();
    // (kind, name) -> the last document that defines it (later ones win, as with apply).
    let mut objects: BTreeMap<(String, String), Value> = BTreeMap::new();
    for f in &files {
        for d in ark_documents(&std::fs::read_to_string(f).unwrap()) {
            let v: Value =
                serde_saphyr::from_str(&d).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            let kind = v["kind"].as_str().unwrap().to_string();
            let name = v["metadata"]["name"].as_str().unwrap().to_string();
            objects.insert((kind, name), v);
            docs.push(d);
        }
    }
    assert!(
        objects.len() >= 40,
        "found {} objects in {}",
        objects.len(),
        dir.display()
    );

    let server = TestServer::start().await;
    // One upstream sample (teams_selector-strategy.yaml) sets `spec.targets`, which the
    // Query CRD does not declare: kube-apiserver refuses it under kubectl's default
    // `--validate=strict`, and so does this server. With warnings it applies, pruned.
    let out = server
        .kubectl_stdin(
            &["apply", "--validate=warn", "-f", "-"],
            Some(&docs.join("---\n")),
        )
        .await;
    assert!(
        out.ok,
        "kubectl apply of the upstream samples:\n{}\n{}",
        out.stdout, out.stderr
    );
    assert!(
        out.stderr
            .contains(r#"Warning: unknown field "spec.targets""#),
        "{}",
        out.stderr
    );
    assert_eq!(out.stdout.lines().count(), docs.len(), "{}", out.stdout);
    for (kind, name) in objects.keys() {
        let line = format!("{}.ark.mckinsey.com/{name} created", kind.to_lowercase());
        assert!(
            out.stdout.lines().any(|l| l == line),
            "no {line:?} in\n{}",
            out.stdout
        );
    }

    // Listing each kind shows exactly the objects the samples define.
    for (plural, kind, _, namespaced) in KINDS {
        let want: Vec<String> = objects
            .keys()
            .filter(|(k, _)| k == kind)
            .map(|(_, n)| n.clone())
            .collect();
        let args: Vec<&str> = if namespaced {
            vec!["get", plural, "-n", "default", "-o", "name"]
        } else {
            vec!["get", plural, "-o", "name"]
        };
        assert_eq!(names(&ok(&server, &args).await), want, "{plural}");
        if !want.is_empty() {
            let (_, rows) = table(&ok(&server, &["get", plural]).await);
            assert_eq!(rows.len(), want.len(), "{plural}");
        }
    }

    // Models that only name a provider in the deprecated spec.type get spec.provider,
    // as Ark's webhook does; every Model ends up with the provider the schema requires.
    let models = get_json(&server, &["models", "-n", "default"]).await;
    let items = models["items"].as_array().unwrap();
    let mut migrated = 0;
    for ((kind, name), v) in &objects {
        if kind != "Model" {
            continue;
        }
        let m = items
            .iter()
            .find(|m| m["metadata"]["name"] == name.as_str())
            .unwrap();
        let want = match (v["spec"]["provider"].as_str(), v["spec"]["type"].as_str()) {
            (Some(p), _) => p,
            (None, Some(t)) => {
                migrated += 1;
                t
            }
            (None, None) => panic!("sample model {name} has neither provider nor type"),
        };
        assert_eq!(m["spec"]["provider"], want, "model {name}: {}", m["spec"]);
    }
    assert!(
        migrated >= 3,
        "the samples exercise the type -> provider migration"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_with_generate_name_gets_a_fresh_suffixed_name() {
    let server = TestServer::start().await;
    let manifest =
        "apiVersion: ark.mckinsey.com/v1alpha1\nkind: Agent\nmetadata:\n  generateName: helper-\nspec:\n  prompt: Help.\n";
    let mut made = BTreeSet::new();
    for _ in 0..3 {
        let out = ok_stdin(&server, &["create", "-n", "gen", "-f", "-"], Some(manifest)).await;
        let name = out
            .trim()
            .strip_prefix("agent.ark.mckinsey.com/")
            .and_then(|s| s.strip_suffix(" created"))
            .unwrap_or_else(|| panic!("unexpected output {out:?}"))
            .to_string();
        // kube appends 5 characters from its no-vowel alphabet.
        let suffix = name
            .strip_prefix("helper-")
            .unwrap_or_else(|| panic!("{name}"));
        assert_eq!(suffix.len(), 5, "{name}");
        assert!(
            suffix
                .chars()
                .all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)),
            "{name}"
        );
        made.insert(name);
    }
    assert_eq!(made.len(), 3, "{made:?}");
    let listed = names(&ok(&server, &["get", "agents", "-n", "gen", "-o", "name"]).await);
    assert_eq!(listed, made.iter().cloned().collect::<Vec<_>>());
    let one = made.iter().next().unwrap();
    let a = get_json(&server, &["agent", one, "-n", "gen"]).await;
    assert_eq!(a["metadata"]["generateName"], "helper-");
    assert_eq!(a["spec"]["prompt"], "Help.");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_dry_run_reports_success_without_persisting() {
    let server = TestServer::start().await;
    let out = ok_stdin(
        &server,
        &["apply", "--dry-run=server", "-n", "dry", "-f", "-"],
        Some(&agent_yaml("ghost", &[], &[])),
    )
    .await;
    assert_eq!(
        out.trim(),
        "agent.ark.mckinsey.com/ghost created (server dry run)"
    );
    let out = server
        .kubectl(&["get", "agents", "-n", "dry", "-o", "name"])
        .await;
    assert!(
        out.ok && out.stdout.is_empty(),
        "dry run created nothing: {out:?}"
    );

    ok_stdin(
        &server,
        &["apply", "-n", "dry", "-f", "-"],
        Some(&agent_yaml("kept", &[], &[])),
    )
    .await;
    let before = get_json(&server, &["agent", "kept", "-n", "dry"]).await;
    let changed = agent_yaml("kept", &[("new", "label")], &[]).replace("You are kept.", "Changed.");
    let out = ok_stdin(
        &server,
        &["apply", "--dry-run=server", "-n", "dry", "-f", "-"],
        Some(&changed),
    )
    .await;
    assert_eq!(
        out.trim(),
        "agent.ark.mckinsey.com/kept configured (server dry run)"
    );
    let out = ok_stdin(
        &server,
        &["replace", "--dry-run=server", "-n", "dry", "-f", "-"],
        Some(&changed),
    )
    .await;
    assert_eq!(
        out.trim(),
        "agent.ark.mckinsey.com/kept replaced (server dry run)"
    );
    let out = ok(
        &server,
        &[
            "patch",
            "agent",
            "kept",
            "-n",
            "dry",
            "--dry-run=server",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"prompt":"Patched."}}"#,
        ],
    )
    .await;
    // kubectl 1.35 prints no dry-run suffix for patch; what matters is that it persists nothing.
    assert_eq!(out.trim(), "agent.ark.mckinsey.com/kept patched");
    let out = ok(
        &server,
        &["delete", "agent", "kept", "-n", "dry", "--dry-run=server"],
    )
    .await;
    assert_eq!(
        out.trim(),
        "agent.ark.mckinsey.com \"kept\" deleted from dry namespace (server dry run)"
    );
    // kubectl sends this dry run in the DeleteOptions body, not the query.
    let out = ok(&server, &["get", "agents", "-n", "dry", "-o", "name"]).await;
    assert_eq!(
        names(&out),
        ["kept"],
        "a server dry-run delete deletes nothing"
    );

    let after = get_json(&server, &["agent", "kept", "-n", "dry"]).await;
    assert_eq!(after, before, "server dry runs changed nothing");
    assert_eq!(after["spec"]["prompt"], "You are kept.");
    server.stop().await;
}

/// Creates Agent `held` with a finalizer in namespace `fin` and deletes it without waiting.
async fn create_and_delete_held(server: &TestServer) {
    let out = ok_stdin(
        server,
        &["create", "-n", "fin", "-f", "-"],
        Some(&agent_yaml("held", &[], &["example.com/hold"])),
    )
    .await;
    assert_eq!(out.trim(), "agent.ark.mckinsey.com/held created");
    let out = ok(
        server,
        &["delete", "agent", "held", "-n", "fin", "--wait=false"],
    )
    .await;
    assert_eq!(
        out.trim(),
        "agent.ark.mckinsey.com \"held\" deleted from fin namespace"
    );
}

const RELEASE: &str = r#"[{"op":"remove","path":"/metadata/finalizers"}]"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finalizer_holds_a_deleted_object_until_it_is_removed() {
    let server = TestServer::start().await;
    create_and_delete_held(&server).await;
    let a = get_json(&server, &["agent", "held", "-n", "fin"]).await;
    let ts = a["metadata"]["deletionTimestamp"]
        .as_str()
        .unwrap_or_else(|| panic!("no deletionTimestamp: {a}"));
    assert!(chrono::DateTime::parse_from_rfc3339(ts).is_ok(), "{ts}");
    assert_eq!(a["metadata"]["deletionGracePeriodSeconds"], 0, "{a}");
    assert_eq!(
        a["metadata"]["finalizers"],
        serde_json::json!(["example.com/hold"])
    );
    let listed = names(&ok(&server, &["get", "agents", "-n", "fin", "-o", "name"]).await);
    assert_eq!(listed, ["held"], "a terminating object is still listed");
    // Deleting again is accepted and changes nothing.
    ok(
        &server,
        &["delete", "agent", "held", "-n", "fin", "--wait=false"],
    )
    .await;
    let again = get_json(&server, &["agent", "held", "-n", "fin"]).await;
    assert_eq!(again["metadata"]["deletionTimestamp"], ts);

    let out = ok(
        &server,
        &[
            "patch", "agent", "held", "-n", "fin", "--type", "json", "-p", RELEASE,
        ],
    )
    .await;
    assert_eq!(out.trim(), "agent.ark.mckinsey.com/held patched");
    let out = server
        .kubectl(&["get", "agents", "-n", "fin", "-o", "name"])
        .await;
    assert!(
        out.ok && out.stdout.is_empty(),
        "gone once released: {out:?}"
    );
    let out = fails(
        &server,
        &[
            "get",
            "--raw",
            "/apis/ark.mckinsey.com/v1alpha1/namespaces/fin/agents/held",
        ],
        None,
    )
    .await;
    assert!(
        out.stderr
            .contains("agents.ark.mckinsey.com \"held\" not found"),
        "{out:?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_wait_for_delete_returns_when_the_finalizer_is_released() {
    let server = TestServer::start().await;
    create_and_delete_held(&server).await;
    // `kubectl wait --for=delete` lists with fieldSelector=metadata.name=held, then watches.
    let wait = server.kubectl(&[
        "wait",
        "--for=delete",
        "agent/held",
        "-n",
        "fin",
        "--timeout=30s",
    ]);
    let release = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        ok(
            &server,
            &[
                "patch", "agent", "held", "-n", "fin", "--type", "json", "-p", RELEASE,
            ],
        )
        .await
    };
    let (waited, patched) = tokio::join!(wait, release);
    assert_eq!(patched.trim(), "agent.ark.mckinsey.com/held patched");
    assert!(waited.ok, "kubectl wait --for=delete: {waited:?}");
    assert_eq!(
        waited.stdout.trim(),
        "agent.ark.mckinsey.com/held condition met"
    );
    server.stop().await;
}
