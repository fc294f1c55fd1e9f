//! The audit log end to end: a server with an audit policy, requests from real clients, and
//! the events as written to the log file.

use std::time::Duration;

use serde_json::{json, Value};

use ark_apiserver::auth::user::UserInfo;
use ark_apiserver::config::AuthMode;

use crate::harness::TestServer;
use crate::kube_standin::{allow, deny, KubeStandin};
use crate::stream_faults::eventually;

const AGENTS: &str = "/apis/ark.mckinsey.com/v1alpha1/namespaces/dev/agents";

const POLICY: &str = r#"
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: []
rules:
  - level: None
    nonResourceURLs: ["/healthz*", "/readyz*", "/livez*"]
  - level: RequestResponse
    resources:
      - group: ark.mckinsey.com
        resources: ["agents"]
  - level: Metadata
"#;

struct Setup {
    server: TestServer,
    _kube: KubeStandin,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

async fn start() -> Setup {
    let kube = KubeStandin::start().await;
    kube.set_token(
        "alice-token",
        &UserInfo {
            name: "alice".into(),
            ..Default::default()
        },
    );
    kube.set_decision(|spec| {
        if spec
            .resource_attributes
            .as_ref()
            .and_then(|r| r.name.as_deref())
            == Some("secret")
        {
            deny("not this one")
        } else {
            allow("RBAC: allowed")
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, POLICY).unwrap();
    let log = dir.path().join("audit").join("audit.log");
    let (kc, log_path) = (kube.kubeconfig.clone(), log.display().to_string());
    let server = TestServer::start_with(move |o| {
        o.auth.mode = AuthMode::Delegated;
        o.auth.skip_lookup = true;
        o.auth.kube.authentication_kubeconfig = Some(kc.clone());
        o.auth.kube.authorization_kubeconfig = Some(kc);
        o.audit.policy_file = Some(policy);
        o.audit.log_path = Some(log_path);
    })
    .await;
    Setup {
        server,
        _kube: kube,
        log,
        _dir: dir,
    }
}

/// The events of one audit ID, once its ResponseComplete (or a 401's ResponseStarted) is in.
async fn events_of(log: &std::path::Path, audit_id: &str, last_stage: &str) -> Vec<Value> {
    eventually("the audit events", Duration::from_secs(10), || async {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let events: Vec<Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|e| e["auditID"] == audit_id)
            .collect();
        if events.iter().any(|e| e["stage"] == last_stage) {
            Ok(events)
        } else {
            Err(format!("{} events so far", events.len()))
        }
    })
    .await
}

fn stages(events: &[Value]) -> Vec<&str> {
    events.iter().filter_map(|e| e["stage"].as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_is_audited_with_its_objects_the_decision_and_the_aggregators_audit_id() {
    let s = start().await;
    let agent = json!({"apiVersion": "ark.mckinsey.com/v1alpha1", "kind": "Agent",
                       "metadata": {"name": "a"}, "spec": {"prompt": "hi"}});
    let resp = s
        .server
        .http()
        .post(format!("{}{AGENTS}", s.server.base_url()))
        .header("Authorization", "Bearer alice-token")
        .header("Audit-ID", "from-the-aggregator-1")
        .header("User-Agent", "kubectl/v1.35.0")
        .json(&agent)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.headers()["audit-id"], "from-the-aggregator-1");
    let events = events_of(&s.log, "from-the-aggregator-1", "ResponseComplete").await;
    assert_eq!(stages(&events), ["RequestReceived", "ResponseComplete"]);
    let done = &events[1];
    assert_eq!(done["kind"], "Event");
    assert_eq!(done["apiVersion"], "audit.k8s.io/v1");
    assert_eq!(done["level"], "RequestResponse");
    assert_eq!(done["verb"], "create");
    assert_eq!(done["requestURI"], AGENTS);
    assert_eq!(done["user"]["username"], "alice");
    assert_eq!(done["userAgent"], "kubectl/v1.35.0");
    assert_eq!(
        done["objectRef"],
        json!({"resource": "agents", "namespace": "dev", "name": "a", "apiGroup": "ark.mckinsey.com", "apiVersion": "v1alpha1"})
    );
    assert_eq!(done["responseStatus"]["code"], 201);
    assert_eq!(done["requestObject"]["spec"]["prompt"], "hi");
    assert_eq!(done["responseObject"]["metadata"]["name"], "a");
    assert!(done["responseObject"]["metadata"]["uid"].is_string());
    assert_eq!(
        done["annotations"]["authorization.k8s.io/decision"],
        "allow"
    );
    assert_eq!(
        done["annotations"]["authorization.k8s.io/reason"],
        "RBAC: allowed"
    );
    let at = done["stageTimestamp"].as_str().unwrap();
    assert_eq!(
        at.len(),
        "2026-12-01T10:00:00.000000Z".len(),
        "microseconds: {at}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forbidden_get_an_unauthenticated_request_and_a_watch_have_their_stages() {
    let s = start().await;
    let http = s.server.http();
    let base = s.server.base_url();
    let get = |path: String, id: &'static str, token: &'static str| {
        http.get(format!("{base}{path}"))
            .header("Authorization", format!("Bearer {token}"))
            .header("Audit-ID", id)
            .send()
    };
    assert_eq!(
        get(format!("{AGENTS}/secret"), "forbidden-1", "alice-token")
            .await
            .unwrap()
            .status(),
        403
    );
    let events = events_of(&s.log, "forbidden-1", "ResponseComplete").await;
    let done = events.last().unwrap();
    assert_eq!(done["responseStatus"]["code"], 403);
    assert_eq!(done["responseStatus"]["reason"], "Forbidden");
    assert_eq!(
        done["annotations"]["authorization.k8s.io/decision"],
        "forbid"
    );
    assert_eq!(
        done["annotations"]["authorization.k8s.io/reason"],
        "not this one"
    );

    assert_eq!(
        get(AGENTS.to_string(), "unauthenticated-1", "bad-token")
            .await
            .unwrap()
            .status(),
        401
    );
    let events = events_of(&s.log, "unauthenticated-1", "ResponseStarted").await;
    assert_eq!(stages(&events), ["ResponseStarted"]);
    assert_eq!(events[0]["user"], json!({}));
    assert_eq!(events[0]["responseStatus"]["code"], 401);

    let watch = get(
        format!("{AGENTS}?watch=true&timeoutSeconds=1"),
        "watch-1",
        "alice-token",
    )
    .await
    .unwrap();
    assert_eq!(watch.status(), 200);
    let _ = watch.bytes().await;
    let events = events_of(&s.log, "watch-1", "ResponseComplete").await;
    assert_eq!(
        stages(&events),
        ["RequestReceived", "ResponseStarted", "ResponseComplete"]
    );
    assert_eq!(events[2]["verb"], "watch");

    // The probes are level None: no events; and without an Audit-ID a new one is made.
    let probe = http
        .get(format!("{base}/healthz"))
        .header("Audit-ID", "probe-1")
        .send()
        .await
        .unwrap();
    assert_eq!(probe.status(), 200);
    let r = http
        .get(format!("{base}/version"))
        .header("Authorization", "Bearer alice-token")
        .send()
        .await
        .unwrap();
    let made = r.headers()["audit-id"].to_str().unwrap().to_string();
    assert_eq!(made.len(), 36, "a UUID: {made}");
    let events = events_of(&s.log, &made, "ResponseComplete").await;
    assert_eq!(events[0]["level"], "Metadata");
    let text = std::fs::read_to_string(&s.log).unwrap();
    assert!(!text.contains("probe-1"), "probes are not audited");
}
