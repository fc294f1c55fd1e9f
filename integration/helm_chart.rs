//! The Helm chart in helm/ark-apiserver, rendered and linted by a real helm (no cluster
//! and no PostgreSQL needed). helm is `$ARK_TEST_HELM`, else the one beside the kubectl
//! the harness uses (scripts/test installs both into .tools/), else `helm` on PATH.

use std::path::{Path, PathBuf};
use std::process::Command;

use rustls::client::danger::ServerCertVerifier;
use serde_json::{json, Value};

use crate::harness::kubectl_path;

/// The documented required values, plus the other database settings a user sets.
const VALUES: &[&str] = &[
    "postgresql.host=db.example.com",
    "postgresql.port=5433",
    "postgresql.database=ark_prod",
    "postgresql.user=ark_runtime",
    "postgresql.passwordSecretName=ark-postgres",
    "postgresql.passwordSecretKey=pw",
    "postgresql.sslMode=verify-full",
];
const REQUIRED: &[&str] = &[
    "postgresql.host=db.example.com",
    "postgresql.user=ark_runtime",
    "postgresql.passwordSecretName=ark-postgres",
];

fn helm_path() -> PathBuf {
    if let Ok(p) = std::env::var("ARK_TEST_HELM") {
        return p.into();
    }
    let kubectl = PathBuf::from(kubectl_path());
    match kubectl.parent() {
        Some(dir) if !dir.as_os_str().is_empty() && dir.join("helm").exists() => dir.join("helm"),
        _ => "helm".into(),
    }
}

fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("helm/ark-apiserver")
}

struct Helm {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Runs `helm <args> <chart> --set <each of sets>`.
fn helm(args: &[&str], sets: &[&str]) -> Helm {
    let mut cmd = Command::new(helm_path());
    cmd.args(args).arg(chart_dir());
    for s in sets {
        cmd.args(["--set", s]);
    }
    let out = cmd.output().unwrap_or_else(|e| {
        panic!(
            "running {}: {e} (set ARK_TEST_HELM or run scripts/test, which installs helm)",
            helm_path().display()
        )
    });
    Helm {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `helm template ark --namespace ark-system` with VALUES and `extra`: the raw text and its documents.
fn render(extra: &[&str]) -> (String, Vec<Value>) {
    let sets: Vec<&str> = VALUES.iter().chain(extra).copied().collect();
    let out = helm(&["template", "ark", "--namespace", "ark-system"], &sets);
    assert!(out.ok, "helm template failed: {}", out.stderr);
    let docs: Vec<Value> = serde_saphyr::from_str_multiple(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", out.stdout));
    (
        out.stdout,
        docs.into_iter().filter(|d| !d.is_null()).collect(),
    )
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} among {:?}", kinds_and_names(docs)))
}

fn kinds_and_names(docs: &[Value]) -> Vec<String> {
    docs.iter()
        .map(|d| {
            format!(
                "{}/{}",
                d["kind"].as_str().unwrap_or("?"),
                d["metadata"]["name"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

fn container(doc: &Value) -> &Value {
    let cs = doc["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers");
    assert_eq!(cs.len(), 1, "one container: {doc}");
    &cs[0]
}

/// Whether any item of the array `list` matches.
fn any(list: &Value, f: impl Fn(&Value) -> bool) -> bool {
    list.as_array().is_some_and(|a| a.iter().any(f))
}

/// Whether the pod of a Deployment or Job has a volume of the Secret `name`.
fn mounts_secret(doc: &Value, name: &str) -> bool {
    let volumes = &doc["spec"]["template"]["spec"]["volumes"];
    any(volumes, |v| v["secret"]["secretName"] == name)
}

/// The container's env as an object: name -> value, or the valueFrom for a reference.
fn env(c: &Value) -> Value {
    let entries = c["env"].as_array().expect("env").iter();
    let by_name = entries.map(|e| {
        let v = e.get("value").unwrap_or(&e["valueFrom"]).clone();
        (e["name"].as_str().unwrap().to_string(), v)
    });
    Value::Object(by_name.collect())
}

/// The database settings every container gets, with the password only from the Secret.
fn assert_database_env(env: &Value, user: &str, secret: &str, key: &str) {
    for (name, want) in [
        ("ARK_POSTGRES_HOST", "db.example.com"),
        ("ARK_POSTGRES_PORT", "5433"),
        ("ARK_POSTGRES_DATABASE", "ark_prod"),
        ("ARK_POSTGRES_USER", user),
        ("ARK_POSTGRES_SSL_MODE", "verify-full"),
    ] {
        assert_eq!(env[name], want, "{name} in {env}");
    }
    let password = json!({"secretKeyRef": {"name": secret, "key": key}});
    assert_eq!(
        env["ARK_POSTGRES_PASSWORD"], password,
        "only from the Secret"
    );
}

/// The server's arguments: the auth mode, and the serving certificate from the mounted Secret.
fn serve_args(mode: &str) -> Value {
    json!([
        "serve",
        format!("--auth-mode={mode}"),
        "--tls-cert-file=/etc/ark/tls/tls.crt",
        "--tls-private-key-file=/etc/ark/tls/tls.key"
    ])
}

/// The names the kube-apiserver may reach the Service `ark-ark-apiserver` in `ark-system` by.
const SERVICE_NAMES: [&str; 4] = [
    "ark-ark-apiserver",
    "ark-ark-apiserver.ark-system",
    "ark-ark-apiserver.ark-system.svc",
    "ark-ark-apiserver.ark-system.svc.cluster.local",
];

#[test]
fn lint_passes_with_the_documented_required_values() {
    let out = helm(&["lint"], REQUIRED);
    assert!(out.ok, "helm lint failed:\n{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("0 chart(s) failed"), "{}", out.stdout);
}

#[test]
fn rendering_produces_the_documented_objects() {
    let (_, docs) = render(&[]);
    let mut got = kinds_and_names(&docs);
    got.sort();
    let mut want = vec![
        "ServiceAccount/ark-ark-apiserver",
        "Secret/ark-ark-apiserver-serving-cert",
        "Deployment/ark-ark-apiserver",
        "Service/ark-ark-apiserver",
        "APIService/v1alpha1.ark.mckinsey.com",
        "APIService/v1prealpha1.ark.mckinsey.com",
        "ClusterRoleBinding/ark-ark-apiserver:system:auth-delegator",
        "RoleBinding/ark-ark-apiserver-auth-reader",
        "Job/ark-ark-apiserver-migrate",
        "Job/ark-ark-apiserver-slot-drop",
    ];
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn the_deployment_serves_with_database_settings_from_values_and_the_password_from_its_secret() {
    let (_, docs) = render(&[]);
    let d = find(&docs, "Deployment", "ark-ark-apiserver");
    assert_eq!(d["metadata"]["namespace"], "ark-system");
    assert_eq!(d["spec"]["replicas"], 1);
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "ark-ark-apiserver");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let c = container(d);
    assert_eq!(c["command"], json!(["ark-apiserver"]));
    assert_eq!(c["args"], serve_args("delegated"));
    let env = env(c);
    assert_database_env(&env, "ark_runtime", "ark-postgres", "pw");
    // The mode and the certificate are flags; no environment variable overrides them.
    assert!(env["ARK_AUTH_MODE"].is_null(), "{env}");
    assert_eq!(env["ARK_POOL_SIZE"], "40");
    assert_eq!(env["ARK_SLOT_NAME"], "ark_cdc");
    assert_eq!(env["ARK_PUBLICATION_NAME"], "ark_cdc");
    // The migrate hook applies the schema, so the serving role needs no DDL.
    assert_eq!(env["ARK_SKIP_MIGRATIONS"], "true");
    assert!(env["ARK_POSTGRES_SSL_ROOT_CERT"].is_null() && env["ARK_TLS_CERT_FILE"].is_null());
    assert!(mounts_secret(d, "ark-ark-apiserver-serving-cert"), "{d}");
    let tls_mount = |m: &Value| m["name"] == "tls" && m["mountPath"] == "/etc/ark/tls";
    assert!(any(&c["volumeMounts"], tls_mount), "{c}");
    assert_eq!(
        c["ports"],
        json!([{"name": "https", "containerPort": 6443, "protocol": "TCP"}])
    );
    for (probe, path) in [("livenessProbe", "/livez"), ("readinessProbe", "/readyz")] {
        let get = &c[probe]["httpGet"];
        assert_eq!(
            (&get["path"], &get["scheme"], &get["port"]),
            (&json!(path), &json!("HTTPS"), &json!("https")),
            "{probe}"
        );
    }
    assert_eq!(c["securityContext"]["runAsNonRoot"], true);
}

#[test]
fn a_postgres_ca_secret_is_mounted_and_passed_as_the_root_cert() {
    let (_, docs) = render(&["postgresql.caSecretName=pg-ca"]);
    for (kind, name) in [
        ("Deployment", "ark-ark-apiserver"),
        ("Job", "ark-ark-apiserver-migrate"),
        ("Job", "ark-ark-apiserver-slot-drop"),
    ] {
        let d = find(&docs, kind, name);
        let c = container(d);
        let root_cert = &env(c)["ARK_POSTGRES_SSL_ROOT_CERT"];
        assert_eq!(root_cert, "/etc/ark/postgres-ca/ca.crt", "{name}");
        let mount =
            |m: &Value| m["name"] == "postgres-ca" && m["mountPath"] == "/etc/ark/postgres-ca";
        assert!(any(&c["volumeMounts"], mount), "{name}");
        assert!(mounts_secret(d, "pg-ca"), "{name}");
    }
}

#[test]
fn the_service_and_both_apiservices_point_at_port_6443() {
    let (_, docs) = render(&[]);
    let svc = find(&docs, "Service", "ark-ark-apiserver");
    assert_eq!(
        svc["spec"]["ports"],
        json!([{"name": "https", "port": 6443, "targetPort": "https", "protocol": "TCP"}])
    );
    assert_eq!(
        svc["spec"]["selector"],
        find(&docs, "Deployment", "ark-ark-apiserver")["spec"]["selector"]["matchLabels"]
    );
    for (version, priority) in [("v1alpha1", 15), ("v1prealpha1", 10)] {
        let a = find(&docs, "APIService", &format!("{version}.ark.mckinsey.com"));
        let spec = &a["spec"];
        assert_eq!(spec["group"], "ark.mckinsey.com");
        assert_eq!(spec["version"], version);
        assert_eq!(spec["groupPriorityMinimum"], 1000);
        assert_eq!(spec["versionPriority"], priority);
        assert_eq!(
            spec["service"],
            json!({"name": "ark-ark-apiserver", "namespace": "ark-system", "port": 6443})
        );
        assert!(
            spec["insecureSkipTLSVerify"].is_null(),
            "set by default: {a}"
        );
        assert!(a["metadata"]["annotations"].is_null(), "{a}");
    }
}

#[test]
fn insecure_skip_tls_verify_is_set_only_when_chosen() {
    let (_, docs) = render(&["apiService.insecureSkipTLSVerify=true"]);
    for version in ["v1alpha1", "v1prealpha1"] {
        let a = find(&docs, "APIService", &format!("{version}.ark.mckinsey.com"));
        assert_eq!(a["spec"]["insecureSkipTLSVerify"], true, "{a}");
        // The API refuses a caBundle beside it.
        assert!(a["spec"]["caBundle"].is_null(), "{a}");
    }
    // Without it, the default install is verifiable: a caBundle and no skip.
    let (_, docs) = render(&[]);
    for version in ["v1alpha1", "v1prealpha1"] {
        let a = find(&docs, "APIService", &format!("{version}.ark.mckinsey.com"));
        assert!(a["spec"]["insecureSkipTLSVerify"].is_null(), "{a}");
        assert!(a["spec"]["caBundle"].is_string(), "{a}");
    }
}

#[test]
fn an_existing_tls_secret_is_mounted_and_its_ca_given_as_the_ca_bundle() {
    let (_, docs) = render(&["tls.secretName=ark-serving", "apiService.caBundle=Q0E="]);
    for version in ["v1alpha1", "v1prealpha1"] {
        let a = find(&docs, "APIService", &format!("{version}.ark.mckinsey.com"));
        assert!(a["spec"]["insecureSkipTLSVerify"].is_null(), "{a}");
        assert_eq!(a["spec"]["caBundle"], "Q0E=");
    }
    let d = find(&docs, "Deployment", "ark-ark-apiserver");
    assert_eq!(container(d)["args"], serve_args("delegated"));
    assert!(mounts_secret(d, "ark-serving"), "{d}");
    assert!(
        docs.iter().all(|d| d["kind"] != "Secret"),
        "nothing generated: {:?}",
        kinds_and_names(&docs)
    );
}

#[test]
fn cert_manager_issues_the_serving_certificate_and_its_ca_is_injected_into_the_apiservices() {
    let (_, docs) = render(&["certManager.enabled=true"]);
    let cert = find(&docs, "Certificate", "ark-ark-apiserver");
    assert_eq!(cert["spec"]["secretName"], "ark-ark-apiserver-tls");
    assert_eq!(cert["spec"]["dnsNames"], json!(SERVICE_NAMES), "{cert}");
    let issuer = &cert["spec"]["issuerRef"]["name"];
    assert_eq!(issuer, "ark-ark-apiserver-selfsigned");
    find(&docs, "Issuer", "ark-ark-apiserver-selfsigned");
    for version in ["v1alpha1", "v1prealpha1"] {
        let a = find(&docs, "APIService", &format!("{version}.ark.mckinsey.com"));
        assert_eq!(
            a["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
            "ark-system/ark-ark-apiserver"
        );
        assert!(a["spec"]["insecureSkipTLSVerify"].is_null(), "{a}");
        assert!(
            a["spec"]["caBundle"].is_null(),
            "injected, not rendered: {a}"
        );
    }
    let d = find(&docs, "Deployment", "ark-ark-apiserver");
    assert_eq!(container(d)["args"], serve_args("delegated"));
    assert!(mounts_secret(d, "ark-ark-apiserver-tls"), "{d}");
    assert!(
        docs.iter().all(|d| d["kind"] != "Secret"),
        "cert-manager writes the Secret: {:?}",
        kinds_and_names(&docs)
    );
}

#[test]
fn rbac_binds_auth_delegation_and_the_authentication_reader_and_nothing_else() {
    let (_, docs) = render(&[]);
    let subject =
        json!([{"kind": "ServiceAccount", "name": "ark-ark-apiserver", "namespace": "ark-system"}]);
    let crb = find(
        &docs,
        "ClusterRoleBinding",
        "ark-ark-apiserver:system:auth-delegator",
    );
    assert_eq!(
        crb["roleRef"],
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:auth-delegator"})
    );
    assert_eq!(crb["subjects"], subject);
    let reader = find(&docs, "RoleBinding", "ark-ark-apiserver-auth-reader");
    assert_eq!(reader["metadata"]["namespace"], "kube-system");
    assert_eq!(
        reader["roleRef"],
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "extension-apiserver-authentication-reader"})
    );
    assert_eq!(reader["subjects"], subject);
    // Leader election lives in PostgreSQL: no Lease, and no other Role or binding.
    let rbac: Vec<String> = kinds_and_names(&docs)
        .into_iter()
        .filter(|k| k.starts_with("Role") || k.starts_with("ClusterRole"))
        .collect();
    assert_eq!(
        rbac,
        vec![
            "ClusterRoleBinding/ark-ark-apiserver:system:auth-delegator",
            "RoleBinding/ark-ark-apiserver-auth-reader"
        ]
    );
    assert!(!body_mentions_leases(&docs));
}

fn body_mentions_leases(docs: &[Value]) -> bool {
    docs.iter()
        .any(|d| d.to_string().contains("coordination.k8s.io"))
}

#[test]
fn three_replicas_get_a_disruption_budget_spread_over_nodes_and_advertise_their_pod_ip() {
    let (_, one) = render(&[]);
    assert!(!kinds_and_names(&one)
        .iter()
        .any(|k| k.starts_with("PodDisruptionBudget")));
    let single = find(&one, "Deployment", "ark-ark-apiserver");
    assert!(single["spec"]["template"]["spec"].get("affinity").is_none());

    let (_, docs) = render(&["replicaCount=3"]);
    let d = find(&docs, "Deployment", "ark-ark-apiserver");
    assert_eq!(d["spec"]["replicas"], 3);
    let pod = &d["spec"]["template"]["spec"];
    let term =
        &pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0];
    assert_eq!(
        term["podAffinityTerm"]["topologyKey"],
        "kubernetes.io/hostname"
    );
    assert_eq!(
        term["podAffinityTerm"]["labelSelector"]["matchLabels"],
        d["spec"]["selector"]["matchLabels"]
    );
    let env = pod["containers"][0]["env"].as_array().unwrap();
    let var = |name: &str| {
        env.iter()
            .find(|e| e["name"] == name)
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(
        var("POD_IP")["valueFrom"]["fieldRef"]["fieldPath"],
        "status.podIP"
    );
    assert_eq!(var("ARK_ADVERTISE_ADDRESS")["value"], "$(POD_IP):6443");
    // POD_IP is defined before the variable that refers to it, as Kubernetes requires.
    let pos = |name: &str| env.iter().position(|e| e["name"] == name).unwrap();
    assert!(pos("POD_IP") < pos("ARK_ADVERTISE_ADDRESS"));
    // Followers are ready too: the readiness probe is the same /readyz for every pod.
    assert_eq!(
        pod["containers"][0]["readinessProbe"]["httpGet"]["path"],
        "/readyz"
    );
    let pdb = find(&docs, "PodDisruptionBudget", "ark-ark-apiserver");
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        d["spec"]["selector"]["matchLabels"]
    );
    // An affinity given replaces the default.
    let (_, custom) = render(&[
        "replicaCount=3",
        "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].key=pool",
        "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].operator=Exists",
    ]);
    let aff =
        &find(&custom, "Deployment", "ark-ark-apiserver")["spec"]["template"]["spec"]["affinity"];
    assert!(aff.get("podAntiAffinity").is_none(), "{aff}");
    assert!(aff.get("nodeAffinity").is_some(), "{aff}");
}

#[test]
fn migrate_and_slot_drop_run_as_hooks_and_nothing_drops_a_table() {
    let (text, docs) = render(&[
        "migration.postgresql.user=ark_owner",
        "migration.postgresql.passwordSecretName=ark-owner",
    ]);
    let migrate = hook_job(
        &docs,
        "migrate",
        "pre-install,pre-upgrade",
        json!(["migrate"]),
    );
    // Its own role if given, with the runtime role's Secret key.
    let menv = env(migrate);
    assert_database_env(&menv, "ark_owner", "ark-owner", "pw");
    // A reinstall after an uninstall: migrate brings back the publication slot drop removed.
    assert_eq!(menv["ARK_PUBLICATION_NAME"], "ark_cdc");
    let c = hook_job(&docs, "slot-drop", "post-delete", json!(["slot", "drop"]));
    let env = env(c);
    assert_database_env(&env, "ark_runtime", "ark-postgres", "pw");
    assert_eq!(env["ARK_SLOT_NAME"], "ark_cdc");
    assert_eq!(env["ARK_PUBLICATION_NAME"], "ark_cdc");

    // Neither the rendering (in any mode) nor any file of the chart drops a table.
    let (with_tls, _) = render(&["certManager.enabled=true", "postgresql.caSecretName=ca"]);
    for t in [&text, &with_tls] {
        assert!(!t.to_uppercase().contains("DROP TABLE"), "{t}");
    }
    let templates = std::fs::read_dir(chart_dir().join("templates")).unwrap();
    let files = templates.map(|e| e.unwrap().path());
    for f in files.chain([chart_dir().join("values.yaml")]) {
        let t = std::fs::read_to_string(&f).unwrap();
        assert!(!t.to_uppercase().contains("DROP TABLE"), "{}", f.display());
    }
}

/// The hook Job `<fullname>-<suffix>`: its hook, delete policy and args, and its container.
fn hook_job<'a>(docs: &'a [Value], suffix: &str, hook: &str, args: Value) -> &'a Value {
    let job = find(docs, "Job", &format!("ark-ark-apiserver-{suffix}"));
    let annotations = &job["metadata"]["annotations"];
    assert_eq!(annotations["helm.sh/hook"], hook);
    let policy = &annotations["helm.sh/hook-delete-policy"];
    assert_eq!(policy, "before-hook-creation,hook-succeeded");
    let c = container(job);
    assert_eq!(
        (&c["command"], &c["args"]),
        (&json!(["ark-apiserver"]), &args)
    );
    c
}

/// `helm template` without `missing` fails, naming it.
fn assert_required(missing: &str) {
    let sets: Vec<&str> = REQUIRED
        .iter()
        .filter(|s| !s.starts_with(&format!("{missing}=")))
        .copied()
        .collect();
    assert_eq!(sets.len(), REQUIRED.len() - 1);
    let out = helm(&["template", "ark"], &sets);
    assert!(!out.ok, "rendering without {missing} succeeded");
    let want = format!("{missing} is required");
    assert!(
        out.stderr.contains(&want),
        "stderr lacks {want:?}: {}",
        out.stderr
    );
}

#[test]
fn rendering_without_postgresql_host_fails_with_its_name() {
    assert_required("postgresql.host");
}

#[test]
fn rendering_without_postgresql_user_fails_with_its_name() {
    assert_required("postgresql.user");
}

#[test]
fn rendering_without_postgresql_password_secret_name_fails_with_its_name() {
    assert_required("postgresql.passwordSecretName");
}

/// A base64 field of a Secret (or a caBundle), decoded.
fn b64(v: &Value) -> Vec<u8> {
    use base64::Engine;
    let text = v.as_str().unwrap_or_else(|| panic!("not a string: {v}"));
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn first_der(pem: &[u8]) -> rustls::pki_types::CertificateDer<'static> {
    rustls_pemfile::certs(&mut &pem[..])
        .next()
        .expect("a PEM certificate")
        .unwrap()
}

#[test]
fn the_default_install_generates_a_ca_and_a_certificate_for_the_service_names_and_trusts_that_ca() {
    let (_, docs) = render(&[]);
    let secret = find(&docs, "Secret", "ark-ark-apiserver-serving-cert");
    assert_eq!(secret["type"], "kubernetes.io/tls");
    assert_eq!(secret["metadata"]["namespace"], "ark-system");
    let data = &secret["data"];
    let (ca_pem, cert_pem, key_pem) = (
        b64(&data["ca.crt"]),
        b64(&data["tls.crt"]),
        b64(&data["tls.key"]),
    );

    let ca_der = first_der(&ca_pem);
    let (_, ca) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
    assert!(ca.is_ca(), "ca.crt is a CA");
    let cert_der = first_der(&cert_pem);
    let (_, cert) = x509_parser::parse_x509_certificate(&cert_der).unwrap();
    assert!(!cert.is_ca());
    let sans: Vec<String> = cert
        .subject_alternative_name()
        .unwrap()
        .expect("a subjectAltName")
        .value
        .general_names
        .iter()
        .map(|n| match n {
            x509_parser::extensions::GeneralName::DNSName(d) => d.to_string(),
            other => panic!("not a DNS name: {other:?}"),
        })
        .collect();
    assert_eq!(sans, SERVICE_NAMES);

    // What the aggregator does: verify the chain to the caBundle for <svc>.<ns>.svc.
    for version in ["v1alpha1", "v1prealpha1"] {
        let a = find(&docs, "APIService", &format!("{version}.ark.mckinsey.com"));
        assert_eq!(a["spec"]["caBundle"], data["ca.crt"], "{a}");
        assert!(a["spec"]["insecureSkipTLSVerify"].is_null(), "{a}");
    }
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca_der.clone()).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(roots.into(), provider)
            .build()
            .unwrap();
    let name = rustls::pki_types::ServerName::try_from("ark-ark-apiserver.ark-system.svc").unwrap();
    verifier
        .verify_server_cert(
            &cert_der,
            &[],
            &name,
            &[],
            rustls::pki_types::UnixTime::now(),
        )
        .expect("the serving certificate verifies against the caBundle");

    // And the server loads the pair (the chart's key is PKCS#1 RSA).
    ark_apiserver::tls::certified_key(&cert_pem, &key_pem, "tls.crt", "tls.key").unwrap();
}

#[test]
fn auth_mode_is_delegated_by_default_and_off_only_when_chosen() {
    let args =
        |docs: &[Value]| container(find(docs, "Deployment", "ark-ark-apiserver"))["args"].clone();
    assert_eq!(args(&render(&[]).1), serve_args("delegated"));
    assert_eq!(args(&render(&["auth.mode=off"]).1), serve_args("off"));
    // In a values file a bare off is YAML's false; it still means off.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("values.yaml");
    std::fs::write(&file, "auth:\n  mode: off\n").unwrap();
    let file = file.display().to_string();
    let sets: Vec<&str> = VALUES.to_vec();
    let out = helm(
        &["template", "ark", "--namespace", "ark-system", "-f", &file],
        &sets,
    );
    assert!(out.ok, "{}", out.stderr);
    let docs: Vec<Value> = serde_saphyr::from_str_multiple(&out.stdout).unwrap();
    let docs: Vec<Value> = docs.into_iter().filter(|d| !d.is_null()).collect();
    assert_eq!(args(&docs), serve_args("off"));
}

#[test]
fn an_unknown_auth_mode_and_the_old_auth_mode_value_are_refused_by_name() {
    let mut sets: Vec<&str> = REQUIRED.to_vec();
    sets.push("auth.mode=anonymous");
    let out = helm(&["template", "ark"], &sets);
    assert!(
        !out.ok && out.stderr.contains("auth.mode must be delegated or off"),
        "{}",
        out.stderr
    );
    // The value was authMode: an install still setting it must not silently change mode.
    let mut sets: Vec<&str> = REQUIRED.to_vec();
    sets.push("authMode=off");
    let out = helm(&["template", "ark"], &sets);
    assert!(
        !out.ok && out.stderr.contains("authMode was renamed to auth.mode"),
        "{}",
        out.stderr
    );
}

#[test]
fn lint_passes_in_every_certificate_and_auth_mode() {
    for extra in [
        &["certManager.enabled=true"][..],
        &["tls.secretName=ark-serving", "apiService.caBundle=Q0E="],
        &["apiService.insecureSkipTLSVerify=true", "auth.mode=off"],
    ] {
        let sets: Vec<&str> = REQUIRED.iter().chain(extra).copied().collect();
        let out = helm(&["lint"], &sets);
        assert!(
            out.ok,
            "helm lint {extra:?}:\n{}\n{}",
            out.stdout, out.stderr
        );
    }
}

/// The server's arguments with the audit flags after the default ones.
fn with_audit_args(audit: &[&str]) -> Value {
    let mut args = serve_args("delegated");
    if let Some(a) = args.as_array_mut() {
        a.extend(audit.iter().map(|x| json!(x)));
    }
    args
}

/// The audit policy the chart renders, read by the server's own parser.
fn audit_policy(docs: &[Value]) -> ark_apiserver::audit::Policy {
    let cm = find(docs, "ConfigMap", "ark-ark-apiserver-audit-policy");
    let text = cm["data"]["policy.yaml"].as_str().expect("policy.yaml");
    let parsed = ark_apiserver::audit::Policy::parse(text)
        .unwrap_or_else(|e| panic!("the chart's policy is refused: {e}\n{text}"));
    assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
    parsed.policy
}

fn level_of(
    policy: &ark_apiserver::audit::Policy,
    method: &str,
    path: &str,
) -> ark_apiserver::audit::Level {
    let attrs = ark_apiserver::auth::attributes::RequestAttributes::new(method, path, None);
    policy.evaluate(&attrs, None).level
}

#[test]
fn audit_is_off_unless_enabled() {
    let (_, docs) = render(&[]);
    assert!(!docs.iter().any(|d| d["kind"] == "ConfigMap"));
    let d = find(&docs, "Deployment", "ark-ark-apiserver");
    assert_eq!(container(d)["args"], serve_args("delegated"));
}

#[test]
fn audit_enabled_writes_metadata_events_to_standard_output_under_a_generated_policy() {
    use ark_apiserver::audit::Level;
    let (_, docs) = render(&["audit.enabled=true"]);
    let policy = audit_policy(&docs);
    let agents = "/apis/ark.mckinsey.com/v1alpha1/namespaces/ns/agents";
    assert_eq!(level_of(&policy, "GET", agents), Level::Metadata);
    assert_eq!(level_of(&policy, "GET", "/openapi/v2"), Level::Metadata);
    for probe in ["/healthz", "/livez/ping", "/readyz"] {
        assert_eq!(level_of(&policy, "GET", probe), Level::None, "{probe}");
    }
    let d = find(&docs, "Deployment", "ark-ark-apiserver");
    let c = container(d);
    assert_eq!(
        c["args"],
        with_audit_args(&[
            "--audit-policy-file=/etc/ark/audit/policy.yaml",
            "--audit-log-path=-"
        ])
    );
    let mount = |m: &Value| {
        m["name"] == "audit-policy" && m["mountPath"] == "/etc/ark/audit" && m["readOnly"] == true
    };
    assert!(any(&c["volumeMounts"], mount), "{}", c["volumeMounts"]);
    let volumes = &d["spec"]["template"]["spec"]["volumes"];
    let cm = |v: &Value| v["configMap"]["name"] == "ark-ark-apiserver-audit-policy";
    assert!(any(volumes, cm), "{volumes}");
    // A changed policy rolls the pods: the server reads it at start.
    let checksum = |extra: &[&str]| {
        let (_, docs) = render(extra);
        let d = find(&docs, "Deployment", "ark-ark-apiserver");
        d["spec"]["template"]["metadata"]["annotations"]["checksum/audit-policy"].clone()
    };
    let metadata = checksum(&["audit.enabled=true"]);
    assert!(metadata.is_string());
    assert_ne!(
        metadata,
        checksum(&["audit.enabled=true", "audit.level=Request"])
    );
}

#[test]
fn audit_level_and_omitted_stages_shape_the_generated_policy() {
    use ark_apiserver::audit::{Level, Stage};
    let (_, docs) = render(&[
        "audit.enabled=true",
        "audit.level=RequestResponse",
        "audit.omitStages[0]=RequestReceived",
    ]);
    let policy = audit_policy(&docs);
    let attrs = ark_apiserver::auth::attributes::RequestAttributes::new(
        "DELETE",
        "/apis/ark.mckinsey.com/v1alpha1/namespaces/ns/models/m",
        None,
    );
    let c = policy.evaluate(&attrs, None);
    assert_eq!(c.level, Level::RequestResponse);
    assert!(c.omit_stages.contains(Stage::RequestReceived));
    assert!(!c.omit_stages.contains(Stage::ResponseComplete));
}

#[test]
fn a_given_audit_policy_replaces_the_generated_one() {
    use ark_apiserver::audit::Level;
    let (_, docs) = render(&[
        "audit.enabled=true",
        "audit.policy.rules[0].level=RequestResponse",
        "audit.policy.rules[0].resources[0].group=ark.mckinsey.com",
        "audit.policy.rules[0].resources[0].resources[0]=models",
    ]);
    let policy = audit_policy(&docs);
    let base = "/apis/ark.mckinsey.com/v1alpha1/namespaces/ns";
    assert_eq!(
        level_of(&policy, "GET", &format!("{base}/models/m")),
        Level::RequestResponse
    );
    assert_eq!(
        level_of(&policy, "GET", &format!("{base}/agents/a")),
        Level::None
    );
    assert_eq!(level_of(&policy, "GET", "/healthz"), Level::None);
}

#[test]
fn an_audit_log_file_is_rotated_on_a_volume_mounted_at_its_directory() {
    let (_, docs) = render(&[
        "audit.enabled=true",
        "audit.logPath=/var/log/ark/audit.log",
        "audit.maxSize=50",
        "audit.maxBackup=5",
        "audit.maxAge=30",
    ]);
    let d = find(&docs, "Deployment", "ark-ark-apiserver");
    let c = container(d);
    assert_eq!(
        c["args"],
        with_audit_args(&[
            "--audit-policy-file=/etc/ark/audit/policy.yaml",
            "--audit-log-path=/var/log/ark/audit.log",
            "--audit-log-maxsize=50",
            "--audit-log-maxbackup=5",
            "--audit-log-maxage=30"
        ])
    );
    let log_mount = |m: &Value| m["name"] == "audit-log" && m["mountPath"] == "/var/log/ark";
    assert!(any(&c["volumeMounts"], log_mount), "{}", c["volumeMounts"]);
    let volumes = &d["spec"]["template"]["spec"]["volumes"];
    let empty_dir = |v: &Value| v["name"] == "audit-log" && v["emptyDir"] == json!({});
    assert!(any(volumes, empty_dir), "{volumes}");

    let (_, docs) = render(&[
        "audit.enabled=true",
        "audit.logPath=/var/log/ark/audit.log",
        "audit.volume.persistentVolumeClaim.claimName=ark-audit",
    ]);
    let d = find(&docs, "Deployment", "ark-ark-apiserver");
    let volumes = &d["spec"]["template"]["spec"]["volumes"];
    let pvc = |v: &Value| {
        v["name"] == "audit-log" && v["persistentVolumeClaim"]["claimName"] == "ark-audit"
    };
    assert!(any(volumes, pvc), "{volumes}");
}

#[test]
fn a_wrong_audit_level_or_a_relative_log_path_fails_rendering_with_its_name() {
    for (set, want) in [
        (
            "audit.level=Everything",
            "audit.level must be Metadata, Request or RequestResponse",
        ),
        (
            "audit.logPath=audit.log",
            "audit.logPath must be \"-\" or an absolute path",
        ),
    ] {
        let sets: Vec<&str> = REQUIRED
            .iter()
            .copied()
            .chain(["audit.enabled=true", set])
            .collect();
        let out = helm(&["template", "ark"], &sets);
        assert!(!out.ok, "rendering with {set} succeeded");
        assert!(
            out.stderr.contains(want),
            "stderr lacks {want:?}: {}",
            out.stderr
        );
    }
}

#[test]
fn lint_passes_with_audit_enabled() {
    let sets: Vec<&str> = REQUIRED
        .iter()
        .copied()
        .chain(["audit.enabled=true"])
        .collect();
    let out = helm(&["lint"], &sets);
    assert!(out.ok, "helm lint failed:\n{}\n{}", out.stdout, out.stderr);
}
