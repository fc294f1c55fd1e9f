use super::*;
use crate::k8s::query::Query;

fn attrs(method: &str, path_and_query: &str) -> RequestAttributes {
    let (path, qs) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let q = Query::parse(qs).unwrap();
    RequestAttributes::new(method, path, Some(&q))
}

fn user(name: &str, groups: &[&str]) -> UserInfo {
    UserInfo {
        name: name.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        ..Default::default()
    }
}

fn policy(rules_yaml: &str) -> Policy {
    let text = format!("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n{rules_yaml}");
    Policy::parse(&text)
        .unwrap_or_else(|e| panic!("{e}: {text}"))
        .policy
}

fn level(p: &Policy, a: &RequestAttributes, u: Option<&UserInfo>) -> Level {
    p.evaluate(a, u).level
}

const AGENTS: &str = "/apis/ark.mckinsey.com/v1alpha1/namespaces/ns/agents";
const ARKCONFIG: &str = "/apis/ark.mckinsey.com/v1alpha1/arkconfigs/default";

#[test]
fn the_first_matching_rule_wins_and_no_match_is_none() {
    let p = policy(
        "- level: RequestResponse\n  users: [alice]\n- level: Metadata\n  verbs: [get]\n- level: Request\n",
    );
    let alice = user("alice", &[]);
    let bob = user("bob", &[]);
    let get = attrs("GET", &format!("{AGENTS}/a"));
    assert_eq!(level(&p, &get, Some(&alice)), Level::RequestResponse);
    assert_eq!(level(&p, &get, Some(&bob)), Level::Metadata);
    assert_eq!(
        level(&p, &attrs("POST", AGENTS), Some(&bob)),
        Level::Request
    );

    let narrow = policy("- level: Metadata\n  verbs: [delete]\n");
    assert_eq!(level(&narrow, &get, Some(&bob)), Level::None);
}

#[test]
fn users_and_groups_match_by_name_and_membership_and_never_an_unauthenticated_request() {
    let p = policy(
        "- level: Metadata\n  users: [alice]\n- level: Request\n  userGroups: [team-a, team-b]\n",
    );
    let get = attrs("GET", AGENTS);
    assert_eq!(level(&p, &get, Some(&user("alice", &[]))), Level::Metadata);
    assert_eq!(
        level(&p, &get, Some(&user("carol", &["x", "team-b"]))),
        Level::Request
    );
    assert_eq!(level(&p, &get, Some(&user("carol", &["x"]))), Level::None);
    // A failed authentication has no user: rules naming users or groups do not apply.
    assert_eq!(level(&p, &get, None), Level::None);
}

#[test]
fn verbs_match_as_kube_derives_them() {
    let p = policy("- level: Metadata\n  verbs: [watch, deletecollection]\n");
    assert_eq!(
        level(&p, &attrs("GET", &format!("{AGENTS}?watch=true")), None),
        Level::Metadata
    );
    assert_eq!(level(&p, &attrs("DELETE", AGENTS), None), Level::Metadata);
    assert_eq!(level(&p, &attrs("GET", AGENTS), None), Level::None);
    // Non-resource requests have the lower-cased method as their verb.
    let p = policy("- level: Metadata\n  verbs: [get]\n  nonResourceURLs: [/version]\n");
    assert_eq!(level(&p, &attrs("GET", "/version"), None), Level::Metadata);
    assert_eq!(level(&p, &attrs("POST", "/version"), None), Level::None);
}

#[test]
fn resources_match_by_group_resource_and_subresource_with_wildcards() {
    let p = policy(
        r#"- level: RequestResponse
  resources:
  - group: ark.mckinsey.com
    resources: [models]
- level: Request
  resources:
  - group: ark.mckinsey.com
    resources: ["*/status"]
- level: Metadata
  resources:
  - group: ark.mckinsey.com
    resources: ["queries/*"]
- level: None
  resources:
  - group: "*"
    resources: ["*"]
"#,
    );
    let base = "/apis/ark.mckinsey.com/v1alpha1/namespaces/ns";
    let cases = [
        ("GET", format!("{base}/models/m"), Level::RequestResponse),
        // `models` names the resource, not its subresources.
        ("PUT", format!("{base}/models/m/status"), Level::Request),
        ("PUT", format!("{base}/agents/a/status"), Level::Request),
        // `queries/*` is every subresource of queries and, as kube's matcher has it (its
        // documentation says only subresources), queries themselves.
        ("GET", format!("{base}/queries/q/log"), Level::Metadata),
        ("GET", format!("{base}/queries/q"), Level::Metadata),
        ("GET", format!("{base}/teams/t"), Level::None),
    ];
    for (m, path, want) in cases {
        assert_eq!(level(&p, &attrs(m, &path), None), want, "{m} {path}");
    }

    let star =
        policy("- level: Metadata\n  resources:\n  - group: \"*\"\n    resources: [\"*\"]\n");
    assert_eq!(
        level(
            &star,
            &attrs("PATCH", &format!("{base}/agents/a/status")),
            None
        ),
        Level::Metadata,
        "* covers subresources"
    );
    // The core group is "", not any group.
    let core = policy("- level: Metadata\n  resources:\n  - group: \"\"\n");
    assert_eq!(
        level(&core, &attrs("GET", "/api/v1/namespaces/default"), None),
        Level::Metadata
    );
    assert_eq!(level(&core, &attrs("GET", AGENTS), None), Level::None);
    // A group with no resources listed is every resource of the group.
    let group = policy("- level: Metadata\n  resources:\n  - group: ark.mckinsey.com\n");
    assert_eq!(
        level(
            &group,
            &attrs("GET", &format!("{base}/teams/t/status")),
            None
        ),
        Level::Metadata
    );
}

#[test]
fn resource_names_narrow_a_resource_rule_to_named_objects() {
    let p = policy(
        "- level: Metadata\n  resources:\n  - group: ark.mckinsey.com\n    resources: [agents]\n    resourceNames: [a]\n",
    );
    assert_eq!(
        level(&p, &attrs("GET", &format!("{AGENTS}/a")), None),
        Level::Metadata
    );
    assert_eq!(
        level(&p, &attrs("GET", &format!("{AGENTS}/b")), None),
        Level::None
    );
    // A watch of one object by field selector has that object's name, as in kube.
    let one = attrs(
        "GET",
        &format!("{AGENTS}?watch=1&fieldSelector=metadata.name%3Da"),
    );
    assert_eq!(level(&p, &one, None), Level::Metadata);
    assert_eq!(level(&p, &attrs("GET", AGENTS), None), Level::None);
}

#[test]
fn namespaces_match_and_the_empty_namespace_is_cluster_scope() {
    let p =
        policy("- level: Request\n  namespaces: [\"\"]\n- level: Metadata\n  namespaces: [ns]\n");
    assert_eq!(level(&p, &attrs("GET", ARKCONFIG), None), Level::Request);
    assert_eq!(level(&p, &attrs("GET", AGENTS), None), Level::Metadata);
    assert_eq!(
        level(
            &p,
            &attrs(
                "GET",
                "/apis/ark.mckinsey.com/v1alpha1/namespaces/other/agents"
            ),
            None
        ),
        Level::None
    );
    // A list across namespaces is not in namespace "ns".
    assert_eq!(
        level(
            &p,
            &attrs("GET", "/apis/ark.mckinsey.com/v1alpha1/agents"),
            None
        ),
        Level::Request
    );
}

#[test]
fn a_resource_rule_never_matches_a_non_resource_request_and_the_reverse() {
    let p = policy(
        "- level: Metadata\n  namespaces: [ns]\n- level: Request\n  nonResourceURLs: [\"*\"]\n",
    );
    assert_eq!(level(&p, &attrs("GET", "/apis"), None), Level::Request);
    let other_ns = attrs("GET", "/apis/ark.mckinsey.com/v1alpha1/namespaces/x/agents");
    assert_eq!(level(&p, &other_ns, None), Level::None);
}

#[test]
fn non_resource_urls_match_exactly_or_by_a_trailing_star() {
    let p = policy("- level: None\n  nonResourceURLs: [/healthz*, /version]\n- level: Metadata\n");
    for (path, want) in [
        ("/healthz", Level::None),
        ("/healthz/ping", Level::None),
        ("/version", Level::None),
        ("/version/", Level::Metadata),
        ("/openapi/v2", Level::Metadata),
        ("/readyz", Level::Metadata),
    ] {
        assert_eq!(level(&p, &attrs("GET", path), None), want, "{path}");
    }
}

#[test]
fn omitted_stages_join_the_policys_and_the_rules_and_managed_fields_default_from_the_policy() {
    let text = r#"apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
omitManagedFields: true
rules:
- level: Metadata
  verbs: [watch]
  omitStages: [ResponseStarted]
  omitManagedFields: false
- level: Request
"#;
    let p = Policy::parse(text).unwrap().policy;
    let watch = p.evaluate(&attrs("GET", &format!("{AGENTS}?watch=true")), None);
    assert!(watch.omit_stages.contains(Stage::RequestReceived));
    assert!(watch.omit_stages.contains(Stage::ResponseStarted));
    assert!(!watch.omit_stages.contains(Stage::ResponseComplete));
    assert!(!watch.omit_managed_fields);
    let get = p.evaluate(&attrs("GET", AGENTS), None);
    assert!(get.omit_stages.contains(Stage::RequestReceived));
    assert!(!get.omit_stages.contains(Stage::ResponseStarted));
    assert!(get.omit_managed_fields);
}

#[test]
fn default_for_level_records_every_request_at_that_level() {
    let p = Policy::default_for_level(Level::Request);
    for (m, path) in [("GET", AGENTS), ("GET", "/healthz"), ("DELETE", ARKCONFIG)] {
        let c = p.evaluate(&attrs(m, path), None);
        assert_eq!(c.level, Level::Request);
        assert_eq!(c.omit_stages, StageSet::default());
    }
}

#[test]
fn a_json_policy_reads_like_a_yaml_one() {
    let json = r#"{"apiVersion":"audit.k8s.io/v1","kind":"Policy","rules":[{"level":"Metadata","nonResourceURLs":["/metrics"]}]}"#;
    let yaml = "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n  nonResourceURLs: [/metrics]\n";
    assert_eq!(Policy::parse(json).unwrap(), Policy::parse(yaml).unwrap());
}

fn invalid(rules_yaml: &str) -> String {
    let text = format!("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n{rules_yaml}");
    match Policy::parse(&text) {
        Err(e @ PolicyError::Invalid(_)) => e.to_string(),
        other => panic!("expected invalid, got {other:?}"),
    }
}

#[test]
fn validation_errors_name_the_rule_and_field_in_kubes_words() {
    assert_eq!(
        invalid("- level: Metadata\n- verbs: [get]\n"),
        "rules[1].level: Required value"
    );
    assert_eq!(
        invalid("- level: Everything\n"),
        r#"rules[0].level: Unsupported value: "Everything": supported values: "None", "Metadata", "Request", "RequestResponse""#
    );
    assert_eq!(
        invalid("- level: Metadata\n  omitStages: [Done]\n"),
        r#"rules[0].omitStages[0]: Invalid value: "Done": allowed stages are RequestReceived,ResponseStarted,ResponseComplete,Panic"#
    );
    assert_eq!(
        invalid("- level: Metadata\n  nonResourceURLs: [metrics]\n"),
        r#"rules[0].nonResourceURLs[0]: Invalid value: "metrics": non-resource URL rules must begin with a '/' character"#
    );
    assert_eq!(
        invalid("- level: Metadata\n  nonResourceURLs: [\"/a*/b\"]\n"),
        r#"rules[0].nonResourceURLs[0]: Invalid value: "/a*/b": non-resource URL wildcards '*' must be the final character of the rule"#
    );
    assert_eq!(
        invalid("- level: Metadata\n  nonResourceURLs: [/metrics]\n  namespaces: [ns]\n"),
        r#"rules[0].nonResourceURLs: Invalid value: ["/metrics"]: rules cannot apply to both regular resources and non-resource URLs"#
    );
    assert_eq!(
        invalid("- level: Metadata\n  resources:\n  - group: ark.mckinsey.com/v1alpha1\n"),
        r#"rules[0].resources.group: Invalid value: "ark.mckinsey.com/v1alpha1": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"#
    );
    assert_eq!(
        invalid("- level: Metadata\n  resources:\n  - group: \"\"\n    resourceNames: [x]\n"),
        r#"rules[0].resources.resourceNames: Invalid value: ["x"]: using resourceNames requires at least one resource"#
    );
    // Several errors are listed together, in order.
    assert_eq!(
        invalid("- level: Metadata\n- level: \"\"\n  omitStages: [x]\n"),
        r#"[rules[1].level: Required value, rules[1].omitStages[0]: Invalid value: "x": allowed stages are RequestReceived,ResponseStarted,ResponseComplete,Panic]"#
    );
    let top = Policy::parse(
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [Nope]\nrules:\n- level: None\n",
    )
    .unwrap_err();
    assert!(
        top.to_string().starts_with("omitStages[0]: Invalid value"),
        "{top}"
    );
}

#[test]
fn a_multi_byte_url_is_validated_without_panicking() {
    let e = invalid("- level: Metadata\n  nonResourceURLs: [\"é\"]\n");
    assert!(e.contains("must begin with a '/'"), "{e}");
}

#[test]
fn the_document_must_be_an_audit_v1_policy_with_rules() {
    let no_rules = Policy::parse("apiVersion: audit.k8s.io/v1\nkind: Policy\n").unwrap_err();
    assert_eq!(no_rules, PolicyError::NoRules);
    assert_eq!(no_rules.to_string(), "loaded illegal policy with 0 rules");
    let old = Policy::parse("apiVersion: audit.k8s.io/v1beta1\nkind: Policy\nrules: []\n");
    assert_eq!(
        old,
        Err(PolicyError::ApiVersion("audit.k8s.io/v1beta1".into()))
    );
    let kind = Policy::parse("apiVersion: audit.k8s.io/v1\nkind: Event\nrules: []\n");
    assert_eq!(kind, Err(PolicyError::Kind("Event".into())));
    let missing = Policy::parse("kind: Policy\nrules: []\n");
    assert_eq!(missing, Err(PolicyError::ApiVersion(String::new())));
    assert!(matches!(
        Policy::parse("rules: [\n"),
        Err(PolicyError::Syntax(_))
    ));
    assert!(matches!(
        Policy::parse("- a\n"),
        Err(PolicyError::Syntax(_))
    ));
}

#[test]
fn a_field_of_the_wrong_type_is_a_decoding_error_naming_its_rule() {
    let e = Policy::parse(
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: None\n- level: Metadata\n  users: alice\n",
    )
    .unwrap_err();
    match &e {
        PolicyError::Decode { field, .. } => assert_eq!(field, "rules[1]"),
        other => panic!("{other:?}"),
    }
    assert!(
        e.to_string().starts_with("failed decoding: rules[1]: "),
        "{e}"
    );
}

#[test]
fn null_lists_read_as_empty_ones() {
    let p = policy("- level: Metadata\n  users: null\n  resources: ~\n");
    assert_eq!(level(&p, &attrs("GET", AGENTS), None), Level::Metadata);
}

#[test]
fn unknown_fields_are_warnings_and_the_policy_is_still_used() {
    let parsed = Policy::parse(
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nmetadata: {name: p}\nextra: 1\nrules:\n- level: Metadata\n  verb: [get]\n  resources:\n  - group: \"\"\n    resource: [pods]\n",
    )
    .unwrap();
    assert_eq!(
        parsed.warnings,
        vec![
            r#"Audit policy contains errors, falling back to lenient decoding: strict decoding error: unknown field "extra""#,
            r#"Audit policy contains errors, falling back to lenient decoding: strict decoding error: unknown field "rules[0].verb""#,
            r#"Audit policy contains errors, falling back to lenient decoding: strict decoding error: unknown field "rules[0].resources[0].resource""#,
        ]
    );
    // The misspelled `verb` is ignored, so the rule matches every verb of the core group.
    let get = attrs("DELETE", "/api/v1/namespaces/default");
    assert_eq!(level(&parsed.policy, &get, None), Level::Metadata);
}
