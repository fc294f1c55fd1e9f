//! End-to-end with a real kubectl (1.35): what a user types, checked against what
//! kube-apiserver prints for custom resources. Every manifest goes through stdin or a
//! file in samples/, and kubectl runs with its default validation.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::harness::{Kubectl, TestServer};

/// Every kind: (plural, kind, apiVersion, namespaced).
pub const KINDS: [(&str, &str, &str, bool); 11] = [
    (
        "a2aservers",
        "A2AServer",
        "ark.mckinsey.com/v1prealpha1",
        true,
    ),
    ("a2atasks", "A2ATask", "ark.mckinsey.com/v1alpha1", true),
    ("agents", "Agent", "ark.mckinsey.com/v1alpha1", true),
    (
        "arkconfigs",
        "ArkConfig",
        "ark.mckinsey.com/v1alpha1",
        false,
    ),
    (
        "executionengines",
        "ExecutionEngine",
        "ark.mckinsey.com/v1prealpha1",
        true,
    ),
    ("mcpservers", "MCPServer", "ark.mckinsey.com/v1alpha1", true),
    ("memories", "Memory", "ark.mckinsey.com/v1alpha1", true),
    ("models", "Model", "ark.mckinsey.com/v1alpha1", true),
    ("queries", "Query", "ark.mckinsey.com/v1alpha1", true),
    ("teams", "Team", "ark.mckinsey.com/v1alpha1", true),
    ("tools", "Tool", "ark.mckinsey.com/v1alpha1", true),
];

/// The objects in samples/all.yaml: (singular, name).
const ALL_SAMPLES: [(&str, &str); 12] = [
    ("arkconfig", "default"),
    ("model", "planner-model"),
    ("memory", "trip-notes"),
    ("mcpserver", "docs-search"),
    ("tool", "currency-rates"),
    ("executionengine", "python-runner"),
    ("agent", "trip-planner"),
    ("agent", "budget-reviewer"),
    ("team", "travel-desk"),
    ("a2aserver", "booking-partner"),
    ("query", "plan-lisbon-weekend"),
    ("a2atask", "book-lisbon-hotel"),
];

pub fn sample(file: &str) -> String {
    format!("{}/samples/{file}", env!("CARGO_MANIFEST_DIR"))
}

/// Runs kubectl and insists it succeeded; returns stdout.
pub async fn ok(server: &TestServer, args: &[&str]) -> String {
    ok_stdin(server, args, None).await
}

pub async fn ok_stdin(server: &TestServer, args: &[&str], stdin: Option<&str>) -> String {
    let out = server.kubectl_stdin(args, stdin).await;
    assert!(
        out.ok,
        "kubectl {args:?} failed\nstdout: {}\nstderr: {}",
        out.stdout, out.stderr
    );
    out.stdout
}

/// Runs kubectl and insists it failed.
pub async fn fails(server: &TestServer, args: &[&str], stdin: Option<&str>) -> Kubectl {
    let out = server.kubectl_stdin(args, stdin).await;
    assert!(
        !out.ok,
        "kubectl {args:?} should have failed\nstdout: {}\nstderr: {}",
        out.stdout, out.stderr
    );
    out
}

/// `kubectl get -o json` of one object.
pub async fn get_json(server: &TestServer, args: &[&str]) -> Value {
    let mut a = vec!["get"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["-o", "json"]);
    let out = ok(server, &a).await;
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// The names `kubectl get ... -o name` printed, without the `kind.group/` prefix, sorted.
pub fn names(stdout: &str) -> Vec<String> {
    let mut v: Vec<String> = stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.rsplit_once('/').map(|(_, n)| n).unwrap_or(l).to_string())
        .collect();
    v.sort();
    v
}

/// An Agent manifest with the given labels (and finalizers).
pub fn agent_yaml(name: &str, labels: &[(&str, &str)], finalizers: &[&str]) -> String {
    let mut s =
        format!("apiVersion: ark.mckinsey.com/v1alpha1\nkind: Agent\nmetadata:\n  name: {name}\n");
    if !labels.is_empty() {
        s.push_str("  labels:\n");
        for (k, v) in labels {
            s.push_str(&format!("    {k}: \"{v}\"\n"));
        }
    }
    if !finalizers.is_empty() {
        s.push_str("  finalizers:\n");
        for f in finalizers {
            s.push_str(&format!("  - {f}\n"));
        }
    }
    s.push_str(&format!("spec:\n  prompt: You are {name}.\n"));
    s
}

/// A table kubectl printed, as one map per row from column header to cell. Cells are cut
/// at the header's column offsets (kubectl aligns them), so empty cells stay empty.
pub fn table(stdout: &str) -> (Vec<String>, Vec<BTreeMap<String, String>>) {
    let mut lines = stdout.lines().filter(|l| !l.trim().is_empty());
    let header = lines
        .next()
        .unwrap_or_else(|| panic!("no table in {stdout:?}"));
    let mut cols: Vec<(usize, String)> = Vec::new();
    let mut prev_space = true;
    let mut start = 0;
    for (i, c) in header.char_indices() {
        let space = c == ' ';
        if prev_space && !space {
            start = i;
        }
        if !prev_space && space {
            cols.push((start, header[start..i].to_string()));
        }
        prev_space = space;
    }
    if !prev_space {
        cols.push((start, header[start..].to_string()));
    }
    let headers: Vec<String> = cols.iter().map(|(_, h)| h.clone()).collect();
    let rows = lines
        .map(|l| {
            let mut row = BTreeMap::new();
            for (n, (at, h)) in cols.iter().enumerate() {
                let end = cols
                    .get(n + 1)
                    .map(|(e, _)| *e)
                    .unwrap_or(l.len())
                    .min(l.len());
                let cell = if *at < l.len() {
                    l[*at..end].trim()
                } else {
                    ""
                };
                row.insert(h.clone(), cell.to_string());
            }
            row
        })
        .collect();
    (headers, rows)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_resources_lists_all_eleven_kinds_with_scope_and_version() {
    let server = TestServer::start().await;
    let out = ok(&server, &["api-resources", "--api-group=ark.mckinsey.com"]).await;
    let (headers, rows) = table(&out);
    assert_eq!(
        headers,
        ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"],
        "{out}"
    );
    let got: BTreeSet<(String, String, String, String)> = rows
        .iter()
        .map(|r| {
            (
                r["NAME"].clone(),
                r["APIVERSION"].clone(),
                r["NAMESPACED"].clone(),
                r["KIND"].clone(),
            )
        })
        .collect();
    let want: BTreeSet<(String, String, String, String)> = KINDS
        .iter()
        .map(|(p, k, v, ns)| (p.to_string(), v.to_string(), ns.to_string(), k.to_string()))
        .collect();
    assert_eq!(got, want, "{out}");
    assert_eq!(rows.len(), 11, "{out}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_all_samples_creates_each_kind_prints_printer_columns_and_reapply_is_unchanged() {
    let server = TestServer::start().await;
    let all = sample("all.yaml");
    let out = ok(&server, &["apply", "-n", "demo", "-f", &all]).await;
    let lines: BTreeSet<&str> = out.lines().collect();
    let want: BTreeSet<String> = ALL_SAMPLES
        .iter()
        .map(|(k, n)| format!("{k}.ark.mckinsey.com/{n} created"))
        .collect();
    assert_eq!(lines, want.iter().map(|s| s.as_str()).collect(), "{out}");

    // Each kind's additionalPrinterColumns (src/k8s/definitions), upper-cased, after NAME.
    let columns: [(&str, &[&str]); 11] = [
        ("agents", &["NAME", "MODEL", "AVAILABLE", "AGE"]),
        (
            "models",
            &["NAME", "TYPE", "PROVIDER", "MODEL", "AVAILABLE", "AGE"],
        ),
        ("queries", &["NAME", "TYPE", "PHASE", "DURATION", "AGE"]),
        ("teams", &["NAME", "STRATEGY", "AVAILABLE", "AGE"]),
        ("tools", &["NAME", "AGE"]),
        (
            "mcpservers",
            &["NAME", "AVAILABLE", "DISCOVERING", "TOOLS", "AUTH", "AGE"],
        ),
        ("memories", &["NAME", "PHASE", "ADDRESS", "AGE"]),
        ("a2atasks", &["NAME", "QUERY", "AGENT", "PHASE", "AGE"]),
        ("arkconfigs", &["NAME", "QUERYTTL", "AGE"]),
        (
            "a2aservers",
            &["NAME", "READY", "DISCOVERING", "ADDRESS", "AGE"],
        ),
        ("executionengines", &["NAME", "PHASE", "ADDRESS", "AGE"]),
    ];
    let mut tables = BTreeMap::new();
    for (plural, want) in columns {
        let out = ok(&server, &["get", plural, "-n", "demo"]).await;
        let (headers, rows) = table(&out);
        assert_eq!(headers, want, "kubectl get {plural}:\n{out}");
        assert!(!rows.is_empty(), "kubectl get {plural}:\n{out}");
        for r in &rows {
            let age = &r["AGE"];
            assert!(
                age.ends_with('s') && age[..age.len() - 1].parse::<u32>().is_ok(),
                "AGE of a fresh object is seconds, got {age:?} in\n{out}"
            );
        }
        tables.insert(plural, rows);
    }
    let row = |plural: &str, name: &str| -> BTreeMap<String, String> {
        tables[plural]
            .iter()
            .find(|r| r["NAME"] == name)
            .unwrap_or_else(|| panic!("no {name} in {plural}: {:?}", tables[plural]))
            .clone()
    };
    let m = row("models", "planner-model");
    assert_eq!(
        (
            m["TYPE"].as_str(),
            m["PROVIDER"].as_str(),
            m["MODEL"].as_str(),
            m["AVAILABLE"].as_str()
        ),
        ("completions", "openai", "gpt-4o-mini", "")
    );
    assert_eq!(row("teams", "travel-desk")["STRATEGY"], "sequential");
    assert_eq!(row("agents", "budget-reviewer")["MODEL"], "planner-model");
    assert_eq!(row("arkconfigs", "default")["QUERYTTL"], "48h");
    assert_eq!(row("queries", "plan-lisbon-weekend")["TYPE"], "user");
    let t = row("a2atasks", "book-lisbon-hotel");
    assert_eq!(
        (t["QUERY"].as_str(), t["AGENT"].as_str()),
        ("plan-lisbon-weekend", "booking-partner-hotels")
    );
    assert_eq!(tables["agents"].len(), 2);

    let again = ok(&server, &["apply", "-n", "demo", "-f", &all]).await;
    let want: BTreeSet<String> = ALL_SAMPLES
        .iter()
        .map(|(k, n)| format!("{k}.ark.mckinsey.com/{n} unchanged"))
        .collect();
    assert_eq!(
        again.lines().map(String::from).collect::<BTreeSet<_>>(),
        want,
        "{again}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yaml_round_trip_through_replace_keeps_metadata_and_bumps_generation() {
    let server = TestServer::start().await;
    ok(&server, &["apply", "-n", "rt", "-f", &sample("agent.yaml")]).await;
    let text = ok(
        &server,
        &["get", "agent", "trip-planner", "-n", "rt", "-o", "yaml"],
    )
    .await;
    let before: Value = serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(before["apiVersion"], "ark.mckinsey.com/v1alpha1");
    assert_eq!(before["kind"], "Agent");
    assert_eq!(
        before["spec"]["prompt"],
        "You plan short trips. Keep every plan under {{.maxDays}} days and\nquote prices in {{.currency}}.\n"
    );
    assert_eq!(before["spec"]["tools"][1]["approval"]["timeout"], "2m");
    assert_eq!(before["metadata"]["labels"]["sample.ark/role"], "planner");
    assert_eq!(before["metadata"]["namespace"], "rt");
    assert_eq!(before["metadata"]["generation"], 1, "{text}");
    let uid = before["metadata"]["uid"].as_str().expect("uid").to_string();
    assert!(uuid::Uuid::parse_str(&uid).is_ok(), "uid {uid:?}");
    let rv = before["metadata"]["resourceVersion"]
        .as_str()
        .expect("resourceVersion")
        .to_string();
    assert!(rv.parse::<u64>().is_ok(), "resourceVersion {rv:?}");
    let created = before["metadata"]["creationTimestamp"]
        .as_str()
        .expect("creationTimestamp")
        .to_string();
    assert!(
        chrono::DateTime::parse_from_rfc3339(&created).is_ok() && created.ends_with('Z'),
        "{created}"
    );
    assert!(
        before["metadata"].get("managedFields").is_none(),
        "-o yaml hides managedFields:\n{text}"
    );

    // Edit the spec in the YAML text (the annotation holds JSON, so only the spec line matches).
    let edited = text.replacen(
        "description: Drafts short travel itineraries.",
        "description: Drafts long travel itineraries.",
        1,
    );
    assert_ne!(edited, text, "the edit found its line:\n{text}");
    let out = ok_stdin(&server, &["replace", "-f", "-"], Some(&edited)).await;
    assert_eq!(out.trim(), "agent.ark.mckinsey.com/trip-planner replaced");

    let after = get_json(&server, &["agent", "trip-planner", "-n", "rt"]).await;
    assert_eq!(
        after["spec"]["description"],
        "Drafts long travel itineraries."
    );
    assert_eq!(after["spec"]["prompt"], before["spec"]["prompt"]);
    assert_eq!(after["metadata"]["generation"], 2, "{after}");
    assert_eq!(after["metadata"]["uid"], uid.as_str());
    assert_eq!(after["metadata"]["creationTimestamp"], created.as_str());
    let rv2 = after["metadata"]["resourceVersion"].as_str().unwrap();
    assert!(
        rv2.parse::<u64>().unwrap() > rv.parse::<u64>().unwrap(),
        "{rv} -> {rv2}"
    );
    assert!(
        after["metadata"].get("managedFields").is_none(),
        "-o json hides managedFields: {after}"
    );

    let full = get_json(
        &server,
        &["agent", "trip-planner", "-n", "rt", "--show-managed-fields"],
    )
    .await;
    let mf = full["metadata"]["managedFields"]
        .as_array()
        .expect("managedFields with --show-managed-fields");
    let managers: BTreeSet<&str> = mf.iter().filter_map(|m| m["manager"].as_str()).collect();
    assert!(
        managers.contains("kubectl-client-side-apply") && managers.contains("kubectl-replace"),
        "{managers:?}"
    );
    for m in mf {
        assert_eq!(m["operation"], "Update", "{m}");
        assert_eq!(m["fieldsType"], "FieldsV1", "{m}");
        assert_eq!(m["apiVersion"], "ark.mckinsey.com/v1alpha1", "{m}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_and_field_selectors_filter_like_kube() {
    let server = TestServer::start().await;
    let docs = [
        agent_yaml("a", &[("env", "prod"), ("tier", "web")], &[]),
        agent_yaml("b", &[("env", "dev"), ("tier", "web")], &[]),
        agent_yaml("c", &[("env", "staging")], &[]),
        agent_yaml("d", &[], &[]),
    ]
    .join("---\n");
    ok_stdin(&server, &["create", "-n", "sel", "-f", "-"], Some(&docs)).await;

    let cases: [(&str, &str, &[&str]); 9] = [
        ("-l", "env=prod", &["a"]),
        ("-l", "env!=prod", &["b", "c", "d"]),
        ("-l", "env in (prod,dev)", &["a", "b"]),
        ("-l", "env notin (prod,dev)", &["c", "d"]),
        ("-l", "tier", &["a", "b"]),
        ("-l", "!tier", &["c", "d"]),
        ("-l", "tier=web,env!=dev", &["a"]),
        ("--field-selector", "metadata.name=c", &["c"]),
        ("--field-selector", "metadata.name!=c", &["a", "b", "d"]),
    ];
    for (flag, sel, want) in cases {
        let out = ok(
            &server,
            &["get", "agents", "-n", "sel", flag, sel, "-o", "name"],
        )
        .await;
        assert_eq!(names(&out), want, "{flag} {sel:?}");
    }
    let out = ok(
        &server,
        &[
            "get",
            "agents",
            "-A",
            "--field-selector",
            "metadata.namespace=sel",
            "-o",
            "name",
        ],
    )
    .await;
    assert_eq!(names(&out), ["a", "b", "c", "d"]);
    let out = ok(
        &server,
        &[
            "get",
            "agents",
            "-A",
            "--field-selector",
            "metadata.namespace=other",
            "-o",
            "name",
        ],
    )
    .await;
    assert_eq!(names(&out), Vec::<String>::new());

    // Custom resources support only metadata.name and metadata.namespace (plus
    // selectableFields, none here); kube's crConverter says "field label not supported".
    let out = fails(
        &server,
        &["get", "agents", "-n", "sel", "--field-selector", "spec.x=y"],
        None,
    )
    .await;
    assert_eq!(
        out.stderr.trim(),
        "Error from server (BadRequest): Unable to find \"ark.mckinsey.com/v1alpha1, Resource=agents\" that match label selector \"\", field selector \"spec.x=y\": field label not supported: spec.x"
    );
    // A malformed label selector is kube's 400 from the label parser.
    let out = fails(
        &server,
        &["get", "agents", "-n", "sel", "-l", "env in prod"],
        None,
    )
    .await;
    assert!(
        out.stderr.trim().starts_with(
            "Error from server (BadRequest): Unable to find \"ark.mckinsey.com/v1alpha1, Resource=agents\" that match label selector \"env in prod\", field selector \"\": unable to parse requirement: "
        ),
        "{}",
        out.stderr
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_get_pages_through_all_objects_with_continue_tokens() {
    let server = TestServer::start().await;
    let docs: Vec<String> = (1..=7)
        .map(|i| agent_yaml(&format!("page-{i}"), &[], &[]))
        .collect();
    ok_stdin(
        &server,
        &["create", "-n", "pages", "-f", "-"],
        Some(&docs.join("---\n")),
    )
    .await;

    let out = server
        .kubectl(&["get", "agents", "-n", "pages", "--chunk-size=2", "-v=6"])
        .await;
    assert!(out.ok, "{}", out.stderr);
    let (headers, rows) = table(&out.stdout);
    assert_eq!(headers, ["NAME", "MODEL", "AVAILABLE", "AGE"]);
    let got: Vec<&str> = rows.iter().map(|r| r["NAME"].as_str()).collect();
    assert_eq!(
        got,
        ["page-1", "page-2", "page-3", "page-4", "page-5", "page-6", "page-7"],
        "{}",
        out.stdout
    );
    assert_eq!(
        out.stdout.matches("NAME").count(),
        1,
        "one header over all pages:\n{}",
        out.stdout
    );

    let requests: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("\"Response\"") && l.contains("/namespaces/pages/agents?"))
        .collect();
    assert_eq!(
        requests.len(),
        4,
        "7 objects in pages of 2:\n{}",
        out.stderr
    );
    assert!(
        requests[0].contains("limit=2") && !requests[0].contains("continue="),
        "{}",
        requests[0]
    );
    for r in &requests[1..] {
        assert!(r.contains("continue=") && r.contains("limit=2"), "{r}");
        assert!(r.contains("status=\"200 OK\""), "{r}");
    }

    // -o name pages the same way.
    let out = ok(
        &server,
        &[
            "get",
            "agents",
            "-n",
            "pages",
            "--chunk-size=3",
            "-o",
            "name",
        ],
    )
    .await;
    assert_eq!(names(&out).len(), 7, "{out}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_and_json_patches_apply_and_strategic_patch_gets_kubes_415() {
    let server = TestServer::start().await;
    ok(&server, &["apply", "-n", "p", "-f", &sample("agent.yaml")]).await;

    let out = ok(
        &server,
        &["patch", "agent", "trip-planner", "-n", "p", "--type", "merge", "-p",
          r#"{"metadata":{"labels":{"patched":"merge"}},"spec":{"description":"merged","modelRef":null}}"#],
    )
    .await;
    assert_eq!(out.trim(), "agent.ark.mckinsey.com/trip-planner patched");
    let a = get_json(&server, &["agent", "trip-planner", "-n", "p"]).await;
    assert_eq!(a["spec"]["description"], "merged");
    assert!(
        a["spec"].get("modelRef").is_none(),
        "null removes the field: {a}"
    );
    assert_eq!(a["metadata"]["labels"]["patched"], "merge");
    assert_eq!(
        a["metadata"]["labels"]["sample.ark/role"], "planner",
        "other labels kept"
    );
    assert_eq!(a["metadata"]["generation"], 2);

    let out = ok(
        &server,
        &["patch", "agent", "trip-planner", "-n", "p", "--type", "json", "-p",
          r#"[{"op":"test","path":"/spec/description","value":"merged"},{"op":"replace","path":"/spec/prompt","value":"json patched"},{"op":"remove","path":"/spec/tools/0"}]"#],
    )
    .await;
    assert_eq!(out.trim(), "agent.ark.mckinsey.com/trip-planner patched");
    let b = get_json(&server, &["agent", "trip-planner", "-n", "p"]).await;
    assert_eq!(b["spec"]["prompt"], "json patched");
    assert_eq!(b["spec"]["tools"].as_array().unwrap().len(), 1);
    assert_eq!(b["spec"]["tools"][0]["name"], "docs-search-find-page");
    assert_eq!(b["metadata"]["generation"], 3);

    // A failing test op changes nothing: kube answers 422 Invalid, which kubectl prints
    // as "The request is invalid: ...".
    let out = fails(
        &server,
        &[
            "patch",
            "agent",
            "trip-planner",
            "-n",
            "p",
            "--type",
            "json",
            "-p",
            r#"[{"op":"test","path":"/spec/prompt","value":"other"}]"#,
        ],
        None,
    )
    .await;
    assert!(
        out.stderr.starts_with("The request is invalid"),
        "{}",
        out.stderr
    );
    let unchanged = get_json(&server, &["agent", "trip-planner", "-n", "p"]).await;
    assert_eq!(unchanged, b);

    // kubectl patch defaults to a strategic merge patch, which custom resources refuse.
    let out = fails(
        &server,
        &[
            "patch",
            "agent",
            "trip-planner",
            "-n",
            "p",
            "-p",
            r#"{"spec":{"prompt":"strategic"}}"#,
        ],
        None,
    )
    .await;
    assert_eq!(
        out.stderr.trim(),
        "error: application/strategic-merge-patch+json is not supported by ark.mckinsey.com/v1alpha1, Kind=Agent: the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
    );
    let c = get_json(&server, &["agent", "trip-planner", "-n", "p"]).await;
    assert_eq!(c["spec"]["prompt"], "json patched");
    assert_eq!(
        c["metadata"]["resourceVersion"],
        b["metadata"]["resourceVersion"]
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_a_stale_copy_is_a_conflict() {
    let server = TestServer::start().await;
    ok(&server, &["apply", "-n", "c", "-f", &sample("agent.yaml")]).await;
    let stale = ok(
        &server,
        &["get", "agent", "budget-reviewer", "-n", "c", "-o", "yaml"],
    )
    .await;
    ok(
        &server,
        &[
            "patch",
            "agent",
            "budget-reviewer",
            "-n",
            "c",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"description":"someone else"}}"#,
        ],
    )
    .await;
    let edited = stale.replacen(
        "description: Checks a plan against the budget.",
        "description: mine",
        1,
    );
    assert_ne!(edited, stale);
    let out = fails(&server, &["replace", "-f", "-"], Some(&edited)).await;
    assert_eq!(
        out.stderr.trim(),
        "Error from server (Conflict): error when replacing \"STDIN\": Operation cannot be fulfilled on agents.ark.mckinsey.com \"budget-reviewer\": the object has been modified; please apply your changes to the latest version and try again"
    );
    let now = get_json(&server, &["agent", "budget-reviewer", "-n", "c"]).await;
    assert_eq!(now["spec"]["description"], "someone else");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_by_name_makes_get_and_delete_say_not_found() {
    let server = TestServer::start().await;
    ok(
        &server,
        &["apply", "-n", "gone", "-f", &sample("agent.yaml")],
    )
    .await;

    let out = ok(&server, &["delete", "agent", "trip-planner", "-n", "gone"]).await;
    assert_eq!(
        out.trim(),
        "agent.ark.mckinsey.com \"trip-planner\" deleted from gone namespace"
    );
    let listed = names(&ok(&server, &["get", "agents", "-n", "gone", "-o", "name"]).await);
    assert_eq!(listed, ["budget-reviewer"]);
    // kubectl, on a NotFound in a namespace other than default, asks GET
    // /api/v1/namespaces/<ns> whether the namespace exists and reports that instead
    // when it is missing too; in kube the namespace exists, so the object's NotFound
    // stands.
    let out = fails(
        &server,
        &["get", "agent", "trip-planner", "-n", "gone"],
        None,
    )
    .await;
    assert_eq!(
        out.stderr.trim(),
        "Error from server (NotFound): agents.ark.mckinsey.com \"trip-planner\" not found"
    );
    let out = fails(
        &server,
        &["delete", "agent", "trip-planner", "-n", "gone"],
        None,
    )
    .await;
    assert_eq!(
        out.stderr.trim(),
        "Error from server (NotFound): agents.ark.mckinsey.com \"trip-planner\" not found"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_samples_file_removes_every_object() {
    let server = TestServer::start().await;
    let all = sample("all.yaml");
    ok(&server, &["apply", "-n", "gone", "-f", &all]).await;

    let out = ok(&server, &["delete", "-n", "gone", "-f", &all]).await;
    let deleted: BTreeSet<&str> = out.lines().collect();
    let mut want: BTreeSet<String> = ALL_SAMPLES
        .iter()
        .filter(|(k, _)| *k != "arkconfig")
        .map(|(k, n)| format!("{k}.ark.mckinsey.com \"{n}\" deleted from gone namespace"))
        .collect();
    want.insert("arkconfig.ark.mckinsey.com \"default\" deleted".into());
    assert_eq!(deleted, want.iter().map(|s| s.as_str()).collect(), "{out}");
    for (plural, _, _, namespaced) in KINDS {
        let args: Vec<&str> = if namespaced {
            vec!["get", plural, "-n", "gone"]
        } else {
            vec!["get", plural]
        };
        let out = server.kubectl(&args).await;
        assert!(out.ok && out.stdout.is_empty(), "{plural}: {out:?}");
        let want = if namespaced {
            "No resources found in gone namespace."
        } else {
            "No resources found"
        };
        assert_eq!(out.stderr.trim(), want, "{plural}");
    }
    // Cluster-scoped: kubectl has no namespace to check.
    let out = fails(&server, &["get", "arkconfig", "default"], None).await;
    assert_eq!(
        out.stderr.trim(),
        "Error from server (NotFound): arkconfigs.ark.mckinsey.com \"default\" not found"
    );
    // A second delete of the file finds nothing.
    let out = fails(&server, &["delete", "-n", "gone", "-f", &all], None).await;
    assert!(
        out.stderr
            .contains("Error from server (NotFound): error when deleting \"")
            && out
                .stderr
                .contains("agents.ark.mckinsey.com \"trip-planner\" not found"),
        "{}",
        out.stderr
    );
    server.stop().await;
}
