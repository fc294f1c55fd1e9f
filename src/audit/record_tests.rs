use std::sync::Mutex;

use chrono::TimeZone;
use serde_json::json;

use super::*;
use crate::k8s::query::Query;

/// Collects what a record writes, as lines and as events.
#[derive(Default)]
struct Collect(Mutex<Vec<Event>>);

impl Sink for Collect {
    fn process(&self, event: &Event) {
        self.0.lock().unwrap().push(event.clone());
    }
}

impl Collect {
    fn events(&self) -> Vec<Event> {
        self.0.lock().unwrap().clone()
    }
    fn lines(&self) -> Vec<String> {
        self.events()
            .iter()
            .map(|e| String::from_utf8(e.to_json_line()).unwrap())
            .collect()
    }
    fn stages(&self) -> Vec<Stage> {
        self.events().iter().map(|e| e.stage).collect()
    }
}

fn attrs(method: &str, path_and_query: &str) -> RequestAttributes {
    let (path, qs) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    RequestAttributes::new(method, path, Some(&Query::parse(qs).unwrap()))
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn meta(id: &str, uri: &str, ip: &str, ua: &str, received: &str) -> RequestMeta {
    RequestMeta {
        audit_id: id.into(),
        request_uri: uri.into(),
        source_ips: vec![ip.into()],
        user_agent: ua.into(),
        received_at: at(received),
    }
}

fn policy(text: &str) -> Policy {
    Policy::parse(text).unwrap().policy
}

fn auditor(p: Policy, clock: fn() -> DateTime<Utc>) -> (Auditor, Arc<Collect>) {
    let sink = Arc::new(Collect::default());
    (Auditor::with_clock(p, sink.clone(), clock), sink)
}

fn later() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 1).unwrap()
}

fn admin() -> UserInfo {
    UserInfo {
        name: "kubernetes-admin".into(),
        groups: vec!["system:masters".into(), "system:authenticated".into()],
        ..Default::default()
    }
}

// kube-apiserver 1.35's two events for `kubectl create secret generic test-secret
// --from-literal k=v` at level Metadata, as its audit log holds them.
const KUBE_CREATE_RECEIVED: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"70607cf4-c644-4642-af31-0d9a173259fe","stage":"RequestReceived","requestURI":"/api/v1/namespaces/default/secrets?fieldManager=kubectl-create\u0026fieldValidation=Strict","verb":"create","user":{"username":"kubernetes-admin","groups":["kubeadm:cluster-admins","system:authenticated"],"extra":{"authentication.kubernetes.io/credential-id":["X509SHA256=ffe11c00851ee887ee4007c96b645c769d86f736994385e12ebd8713fec6d1fe"]}},"sourceIPs":["192.168.10.150"],"userAgent":"kubectl/v1.35.8 (linux/amd64) kubernetes/1c2e10a","objectRef":{"resource":"secrets","namespace":"default","apiVersion":"v1"},"requestReceivedTimestamp":"2026-09-15T14:26:53.946487Z","stageTimestamp":"2026-09-15T14:26:53.946487Z"}"#;
const KUBE_CREATE_COMPLETE: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"70607cf4-c644-4642-af31-0d9a173259fe","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/secrets?fieldManager=kubectl-create\u0026fieldValidation=Strict","verb":"create","user":{"username":"kubernetes-admin","groups":["kubeadm:cluster-admins","system:authenticated"],"extra":{"authentication.kubernetes.io/credential-id":["X509SHA256=ffe11c00851ee887ee4007c96b645c769d86f736994385e12ebd8713fec6d1fe"]}},"sourceIPs":["192.168.10.150"],"userAgent":"kubectl/v1.35.8 (linux/amd64) kubernetes/1c2e10a","objectRef":{"resource":"secrets","namespace":"default","name":"test-secret","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":201},"requestReceivedTimestamp":"2026-09-15T14:26:53.946487Z","stageTimestamp":"2026-09-15T14:26:53.948683Z","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":"RBAC: allowed by ClusterRoleBinding \"kubeadm:cluster-admins\" of ClusterRole \"cluster-admin\" to Group \"kubeadm:cluster-admins\""}}"#;

fn create_done() -> DateTime<Utc> {
    at("2026-09-15T14:26:53.948683Z")
}

#[test]
fn a_create_at_metadata_writes_the_two_events_kube_writes_byte_for_byte() {
    let (a, sink) = auditor(Policy::default_for_level(Level::Metadata), create_done);
    let mut user = UserInfo {
        name: "kubernetes-admin".into(),
        groups: vec![
            "kubeadm:cluster-admins".into(),
            "system:authenticated".into(),
        ],
        ..Default::default()
    };
    user.extra.insert(
        "authentication.kubernetes.io/credential-id".into(),
        vec!["X509SHA256=ffe11c00851ee887ee4007c96b645c769d86f736994385e12ebd8713fec6d1fe".into()],
    );
    let uri =
        "/api/v1/namespaces/default/secrets?fieldManager=kubectl-create&fieldValidation=Strict";
    let m = meta(
        "70607cf4-c644-4642-af31-0d9a173259fe",
        uri,
        "192.168.10.150",
        "kubectl/v1.35.8 (linux/amd64) kubernetes/1c2e10a",
        "2026-09-15T14:26:53.946487Z",
    );
    let mut r = a.begin(&attrs("POST", uri), &user, m).expect("audited");
    r.annotate_authorization(AuthorizationDecision::Allow {
        reason: r#"RBAC: allowed by ClusterRoleBinding "kubeadm:cluster-admins" of ClusterRole "cluster-admin" to Group "kubeadm:cluster-admins""#,
    });
    let secret = json!({"kind": "Secret", "apiVersion": "v1", "metadata": {"name": "test-secret", "creationTimestamp": null}, "data": {"k": "dg=="}, "type": "Opaque"});
    r.set_request_object(&secret);
    r.complete(201, None, Some(&secret));
    assert_eq!(
        sink.lines(),
        [
            format!("{KUBE_CREATE_RECEIVED}\n"),
            format!("{KUBE_CREATE_COMPLETE}\n")
        ]
    );
}

fn not_found_done() -> DateTime<Utc> {
    at("2023-10-15T20:40:35.705548Z")
}

#[test]
fn a_failure_records_kubes_subset_of_the_status() {
    // kube-apiserver 1.27's event for kubeadm's GET of a missing Secret, RequestReceived
    // omitted by its policy.
    let kube = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"721b05e1-6848-477c-88ad-fea03ee2d2c2","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/kube-system/secrets/bootstrap-token-abcdef?timeout=10s","verb":"get","user":{"username":"kubernetes-admin","groups":["system:masters","system:authenticated"]},"sourceIPs":["10.89.0.4"],"userAgent":"kubeadm/v1.27.3 (linux/amd64) kubernetes/25b4e43","objectRef":{"resource":"secrets","namespace":"kube-system","name":"bootstrap-token-abcdef","apiVersion":"v1"},"responseStatus":{"metadata":{},"status":"Failure","message":"secrets \"bootstrap-token-abcdef\" not found","reason":"NotFound","details":{"name":"bootstrap-token-abcdef","kind":"secrets"},"code":404},"requestReceivedTimestamp":"2023-10-15T20:40:35.701578Z","stageTimestamp":"2023-10-15T20:40:35.705548Z","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":""}}"#;
    let p = policy("apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n");
    let (a, sink) = auditor(p, not_found_done);
    let uri = "/api/v1/namespaces/kube-system/secrets/bootstrap-token-abcdef?timeout=10s";
    let m = meta(
        "721b05e1-6848-477c-88ad-fea03ee2d2c2",
        uri,
        "10.89.0.4",
        "kubeadm/v1.27.3 (linux/amd64) kubernetes/25b4e43",
        "2023-10-15T20:40:35.701578Z",
    );
    let mut r = a.begin(&attrs("GET", uri), &admin(), m).unwrap();
    r.annotate_authorization(AuthorizationDecision::Allow { reason: "" });
    let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "secrets \"bootstrap-token-abcdef\" not found", "reason": "NotFound",
        "details": {"name": "bootstrap-token-abcdef", "kind": "secrets"}, "code": 404});
    r.complete(404, Some(&status), Some(&status));
    assert_eq!(sink.lines(), [format!("{kube}\n")]);
}

fn unauthorized_done() -> DateTime<Utc> {
    at("2023-05-16T10:27:28.837875Z")
}

#[test]
fn a_failed_authentication_is_one_response_started_event_with_an_empty_user() {
    // kube-apiserver's event for a request with a rejected token.
    let kube = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"c771f01d-5995-40e4-9259-879773112159","stage":"ResponseStarted","requestURI":"/apis/authorization.k8s.io/v1/selfsubjectaccessreviews","verb":"create","user":{},"sourceIPs":["10.0.152.130"],"objectRef":{"resource":"selfsubjectaccessreviews","apiGroup":"authorization.k8s.io","apiVersion":"v1"},"responseStatus":{"metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401},"requestReceivedTimestamp":"2023-05-16T10:27:28.826058Z","stageTimestamp":"2023-05-16T10:27:28.837875Z"}"#;
    let (a, sink) = auditor(
        Policy::default_for_level(Level::Metadata),
        unauthorized_done,
    );
    let uri = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";
    let m = meta(
        "c771f01d-5995-40e4-9259-879773112159",
        uri,
        "10.0.152.130",
        "",
        "2023-05-16T10:27:28.826058Z",
    );
    let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "Unauthorized", "reason": "Unauthorized", "code": 401});
    a.failed_authentication(
        &attrs("POST", uri),
        m.clone(),
        &[AuthMethod::Bearer],
        Some(&status),
    );
    assert_eq!(sink.lines(), [format!("{kube}\n")]);

    // Without the Status body, the message says what was attempted, as kube's filter does.
    let (a, sink) = auditor(
        Policy::default_for_level(Level::Metadata),
        unauthorized_done,
    );
    a.failed_authentication(
        &attrs("GET", "/apis"),
        m.clone(),
        &[AuthMethod::Basic, AuthMethod::X509],
        None,
    );
    a.failed_authentication(&attrs("GET", "/apis"), m, &[], None);
    let messages: Vec<String> = sink
        .events()
        .into_iter()
        .map(|e| e.response_status.unwrap().message)
        .collect();
    assert_eq!(
        messages,
        [
            "Authentication failed, attempted: basic, x509",
            "Authentication failed, no credentials provided"
        ]
    );
    // Rules for users never match a request without one.
    let users_only = policy("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n  userGroups: [system:authenticated]\n");
    let (a, sink) = auditor(users_only, unauthorized_done);
    a.failed_authentication(
        &attrs("GET", "/apis"),
        meta("x", "/apis", "1.2.3.4", "", "2023-05-16T10:27:28Z"),
        &[],
        None,
    );
    assert!(sink.events().is_empty());
}

const AGENT: &str = "/apis/ark.mckinsey.com/v1alpha1/namespaces/ns/agents/a";

fn m(uri: &str) -> RequestMeta {
    meta(
        "id-1",
        uri,
        "10.0.0.1",
        "kubectl",
        "2026-12-01T10:00:00.123456Z",
    )
}

fn update_at(level: Level) -> Event {
    let (a, sink) = auditor(Policy::default_for_level(level), later);
    let mut r = a.begin(&attrs("PUT", AGENT), &admin(), m(AGENT)).unwrap();
    r.set_request_object(
        &json!({"metadata": {"name": "a", "uid": "u-1", "resourceVersion": "7"}, "spec": {"x": 1}}),
    );
    r.complete(
        200,
        None,
        Some(&json!({"metadata": {"name": "a", "resourceVersion": "8"}, "spec": {"x": 1}})),
    );
    let events = sink.events();
    assert_eq!(
        sink.stages(),
        [Stage::RequestReceived, Stage::ResponseComplete]
    );
    assert!(events[0].request_object.is_none() && events[0].response_status.is_none());
    events[1].clone()
}

#[test]
fn objects_are_recorded_by_level_request_from_request_and_response_at_request_response() {
    let meta_only = update_at(Level::Metadata);
    assert!(meta_only.request_object.is_none() && meta_only.response_object.is_none());
    let request = update_at(Level::Request);
    assert_eq!(request.request_object.unwrap()["spec"], json!({"x": 1}));
    assert!(request.response_object.is_none());
    let both = update_at(Level::RequestResponse);
    assert_eq!(
        both.request_object.unwrap()["metadata"]["resourceVersion"],
        "7"
    );
    assert_eq!(
        both.response_object.unwrap()["metadata"]["resourceVersion"],
        "8"
    );
    assert_eq!(both.level, Level::RequestResponse);
}

#[test]
fn the_request_object_fills_the_object_reference_at_every_level() {
    let e = update_at(Level::Metadata);
    let r = e.object_ref.clone().unwrap();
    assert_eq!(
        (r.name.as_str(), r.uid.as_str(), r.resource_version.as_str()),
        ("a", "u-1", "7")
    );
    let line = String::from_utf8(e.to_json_line()).unwrap();
    assert!(
        line.contains(r#""objectRef":{"resource":"agents","namespace":"ns","name":"a","uid":"u-1","apiGroup":"ark.mckinsey.com","apiVersion":"v1alpha1","resourceVersion":"7"}"#),
        "{line}"
    );
}

#[test]
fn a_patch_is_the_request_object_from_level_request_and_never_names_the_object() {
    let (a, sink) = auditor(Policy::default_for_level(Level::Request), later);
    let uri = format!("{AGENT}/status");
    let mut r = a.begin(&attrs("PATCH", &uri), &admin(), m(&uri)).unwrap();
    let patch = json!({"metadata": {"uid": "not-read"}, "status": {"ready": true}});
    r.set_request_patch(&patch);
    r.complete(200, None, None);
    let e = sink.events().pop().unwrap();
    assert_eq!(e.request_object, Some(patch));
    let r = e.object_ref.unwrap();
    assert_eq!((r.subresource.as_str(), r.uid.as_str()), ("status", ""));
}

#[test]
fn managed_fields_are_left_out_when_the_policy_says_so() {
    let p = policy("apiVersion: audit.k8s.io/v1\nkind: Policy\nomitManagedFields: true\nrules:\n- level: RequestResponse\n");
    let (a, sink) = auditor(p, later);
    let mut r = a.begin(&attrs("PUT", AGENT), &admin(), m(AGENT)).unwrap();
    let obj = json!({"metadata": {"name": "a", "managedFields": [{"manager": "kubectl"}]}});
    r.set_request_object(&obj);
    r.complete(200, None, Some(&obj));
    let e = sink.events().pop().unwrap();
    assert_eq!(
        e.request_object.unwrap(),
        json!({"metadata": {"name": "a"}})
    );
    assert_eq!(
        e.response_object.unwrap(),
        json!({"metadata": {"name": "a"}})
    );
}

#[test]
fn a_watch_writes_received_started_and_complete() {
    let (a, sink) = auditor(Policy::default_for_level(Level::Metadata), later);
    let uri = "/apis/ark.mckinsey.com/v1alpha1/namespaces/ns/agents?watch=true";
    let mut r = a.begin(&attrs("GET", uri), &admin(), m(uri)).unwrap();
    r.response_started(200);
    r.response_started(200);
    r.complete(200, None, None);
    assert_eq!(
        sink.stages(),
        [
            Stage::RequestReceived,
            Stage::ResponseStarted,
            Stage::ResponseComplete
        ]
    );
    let started = &sink.events()[1];
    assert_eq!(started.verb, "watch");
    assert_eq!(started.response_status, Some(ResponseStatus::code(200)));
    assert_eq!(started.stage_timestamp, MicroTime(later()));
    // A watch refused before it streamed still has its ResponseStarted, with the Status.
    let (a, sink) = auditor(Policy::default_for_level(Level::Metadata), later);
    let r = a.begin(&attrs("GET", uri), &admin(), m(uri)).unwrap();
    let forbidden =
        json!({"status": "Failure", "reason": "Forbidden", "message": "no", "code": 403});
    r.complete(403, Some(&forbidden), None);
    let events = sink.events();
    assert_eq!(
        sink.stages(),
        [
            Stage::RequestReceived,
            Stage::ResponseStarted,
            Stage::ResponseComplete
        ]
    );
    assert_eq!(
        events[1].response_status.as_ref().unwrap().reason,
        "Forbidden"
    );
}

#[test]
fn only_watches_write_response_started() {
    let (a, sink) = auditor(Policy::default_for_level(Level::Metadata), later);
    let uri = "/apis/ark.mckinsey.com/v1alpha1/namespaces/ns/agents";
    let mut r = a.begin(&attrs("GET", uri), &admin(), m(uri)).unwrap();
    r.response_started(200);
    r.complete(200, None, None);
    assert_eq!(
        sink.stages(),
        [Stage::RequestReceived, Stage::ResponseComplete]
    );
}

#[test]
fn omitted_stages_are_not_written() {
    let p = policy("apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n  omitStages: [ResponseStarted]\n");
    let (a, sink) = auditor(p, later);
    let uri = "/apis/ark.mckinsey.com/v1alpha1/agents?watch=1";
    let mut r = a.begin(&attrs("GET", uri), &admin(), m(uri)).unwrap();
    r.response_started(200);
    r.complete(200, None, None);
    assert_eq!(sink.stages(), [Stage::ResponseComplete]);
}

#[test]
fn level_none_begins_no_record_and_writes_nothing() {
    let p = policy("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: None\n  nonResourceURLs: [/healthz*]\n- level: Metadata\n");
    let (a, sink) = auditor(p, later);
    assert!(a
        .begin(&attrs("GET", "/healthz"), &admin(), m("/healthz"))
        .is_none());
    assert!(sink.events().is_empty());
    let r = a
        .begin(&attrs("GET", "/version"), &admin(), m("/version"))
        .unwrap();
    assert_eq!(r.level(), Level::Metadata);
    assert_eq!(r.audit_id(), "id-1");
}

#[test]
fn a_record_dropped_unfinished_completes_as_connection_closed_early() {
    let (a, sink) = auditor(Policy::default_for_level(Level::Metadata), later);
    let uri = "/apis/ark.mckinsey.com/v1alpha1/agents?watch=1";
    drop(a.begin(&attrs("GET", uri), &admin(), m(uri)).unwrap());
    assert_eq!(
        sink.stages(),
        [
            Stage::RequestReceived,
            Stage::ResponseStarted,
            Stage::ResponseComplete
        ]
    );
    let done = sink.events().pop().unwrap().response_status.unwrap();
    assert_eq!(
        (done.status.as_str(), done.message.as_str(), done.code),
        ("Success", "Connection closed early", 200)
    );
    // A watch that was streaming keeps the code it sent.
    let (a, sink) = auditor(Policy::default_for_level(Level::Metadata), later);
    let mut r = a.begin(&attrs("GET", uri), &admin(), m(uri)).unwrap();
    r.response_started(200);
    drop(r);
    assert_eq!(sink.stages().len(), 3);
    assert_eq!(
        sink.events()[2].response_status,
        Some(ResponseStatus::code(200))
    );
}

#[test]
fn a_panic_writes_the_panic_stage_with_kubes_status_and_nothing_after() {
    let (a, sink) = auditor(Policy::default_for_level(Level::Metadata), later);
    let r = a.begin(&attrs("GET", AGENT), &admin(), m(AGENT)).unwrap();
    r.panic("index out of range");
    assert_eq!(sink.stages(), [Stage::RequestReceived, Stage::Panic]);
    let line = sink.lines().pop().unwrap();
    assert!(
        line.contains(r#""responseStatus":{"metadata":{},"status":"Failure","message":"APIServer panic'd: index out of range","reason":"InternalError","code":500}"#),
        "{line}"
    );
}

#[test]
fn an_annotation_keeps_its_first_value_and_a_failed_authorizer_records_only_a_reason() {
    let (a, sink) = auditor(Policy::default_for_level(Level::Metadata), later);
    let mut r = a.begin(&attrs("GET", AGENT), &admin(), m(AGENT)).unwrap();
    r.annotate("x", "1");
    r.annotate("x", "2");
    r.annotate_authorization(AuthorizationDecision::Error);
    r.complete(503, None, None);
    let e = sink.events().pop().unwrap();
    assert_eq!(
        e.annotations,
        BTreeMap::from([
            (
                "authorization.k8s.io/reason".to_string(),
                "internal error".to_string()
            ),
            ("x".to_string(), "1".to_string())
        ])
    );
    let (a, sink) = auditor(Policy::default_for_level(Level::Metadata), later);
    let mut r = a.begin(&attrs("GET", AGENT), &admin(), m(AGENT)).unwrap();
    r.annotate_authorization(AuthorizationDecision::Forbid { reason: "" });
    r.complete(403, None, None);
    let e = sink.events().pop().unwrap();
    assert_eq!(e.annotations[DECISION_ANNOTATION], "forbid");
    assert_eq!(e.annotations[REASON_ANNOTATION], "");
}

#[test]
fn the_audit_id_header_is_used_as_sent_and_a_uuid_is_made_otherwise() {
    assert_eq!(audit_id(Some("from-the-aggregator")), "from-the-aggregator");
    let long = "x".repeat(300);
    assert_eq!(audit_id(Some(&long)), long, "not truncated");
    let made = audit_id(Some(""));
    let other = audit_id(None);
    assert!(uuid::Uuid::parse_str(&made).is_ok() && uuid::Uuid::parse_str(&other).is_ok());
    assert_ne!(made, other);
}

#[test]
fn source_ips_follow_kubes_order_and_deduplication() {
    let peer: IpAddr = "10.0.0.9".parse().unwrap();
    assert_eq!(
        source_ips(Some("1.1.1.1, bogus, 2.2.2.2"), Some("3.3.3.3"), Some(peer)),
        ["1.1.1.1", "2.2.2.2", "3.3.3.3", "10.0.0.9"]
    );
    assert_eq!(
        source_ips(Some("1.1.1.1,10.0.0.9"), Some("1.1.1.1"), Some(peer)),
        ["1.1.1.1", "10.0.0.9"]
    );
    let mapped: IpAddr = "::ffff:10.0.0.9".parse().unwrap();
    assert_eq!(source_ips(None, None, Some(mapped)), ["10.0.0.9"]);
    assert!(source_ips(None, Some("nope"), None).is_empty());
}

#[test]
fn a_long_user_agent_is_truncated_and_marked() {
    let (a, sink) = auditor(Policy::default_for_level(Level::Metadata), later);
    let mut long = m(AGENT);
    long.user_agent = format!("{}é", "a".repeat(1023));
    drop(a.begin(&attrs("GET", AGENT), &admin(), long).unwrap());
    let ua = sink.events()[0].user_agent.clone();
    assert_eq!(ua, format!("{}...TRUNCATED", "a".repeat(1023)));
}

#[test]
fn timestamps_have_microseconds_and_request_received_uses_the_receive_time() {
    let (a, sink) = auditor(Policy::default_for_level(Level::Metadata), later);
    let r = a.begin(&attrs("GET", AGENT), &admin(), m(AGENT)).unwrap();
    r.complete(200, None, None);
    let lines = sink.lines();
    assert!(lines[0].contains(r#""requestReceivedTimestamp":"2026-12-01T10:00:00.123456Z","stageTimestamp":"2026-12-01T10:00:00.123456Z""#), "{}", lines[0]);
    assert!(
        lines[1].contains(r#""stageTimestamp":"2026-12-01T10:00:01.000000Z""#),
        "{}",
        lines[1]
    );
}
