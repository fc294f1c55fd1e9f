//! The cost of authentication and authorization on the request path.
//!
//! The same GETs and LISTs run against servers started here on the same database, one after
//! another, each with its own flags:
//!
//! - `--auth-mode off`: the baseline, no identity and no review;
//! - delegated, with the client CA given as a flag (`--authentication-skip-lookup`), and
//!   a client certificate in `system:masters` (allowed without a review) and an ordinary
//!   one whose SubjectAccessReview decision is cached (the default 10 s);
//! - delegated with `--authorization-webhook-cache-authorized-ttl 0s`: every request waits
//!   for its own SubjectAccessReview.
//!
//! The reviews go to [`SarEndpoint`], a minimal HTTPS endpoint in this process that allows
//! everything; its own round trip is measured beside them, so the report shows how much of
//! the uncached figure is the review and how much the server's work around it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use bytes::Bytes;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use serde_json::{json, Value};

use ark_apiserver::tls::{dev_client_ca, issue_client_cert, ClientCert, TlsError};

use crate::api::{self, Api};
use crate::env::{Env, ServerProcess};
use crate::report::{Metric, Report};
use crate::scenarios;
use crate::stats::{closed_loop, Samples, Summary};

const SECTION: &str = "Authentication and authorization (GET and LIST, decision cached and not)";
/// The slot the servers of this scenario share (one at a time): slot names are
/// cluster-wide, and the main server holds the default one.
const SLOT: &str = "ark_loadgen_auth";
const NAMESPACE: &str = "bench-auth";
const SAR_PATH: &str = "/apis/authorization.k8s.io/v1/subjectaccessreviews";

pub struct AuthPlan {
    /// Queries in the namespace every GET and LIST reads.
    pub objects: usize,
    /// GETs per measured run.
    pub gets: usize,
    /// LISTs per measured run.
    pub lists: usize,
}

/// A SubjectAccessReview endpoint that allows every request and counts the reviews.
pub struct SarEndpoint {
    pub url: String,
    pub kubeconfig: PathBuf,
    ca_pem: String,
    reviews: Arc<AtomicU64>,
    handle: ServerHandle,
}

impl SarEndpoint {
    pub async fn start(dir: &Path) -> Result<SarEndpoint, String> {
        let (ca_pem, tls) = endpoint_tls()?;
        let reviews = Arc::new(AtomicU64::new(0));
        let counter = web::Data::from(Arc::clone(&reviews));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(counter.clone())
                .default_service(web::to(review))
        })
        // Two workers, so that the endpoint is not what bounds the uncached figure at
        // concurrency 16 on a two-core machine any more than the machine itself does.
        .workers(2)
        .disable_signals()
        .shutdown_timeout(0)
        .bind_rustls_0_23("127.0.0.1:0", tls)
        .map_err(|e| format!("binding the SubjectAccessReview endpoint: {e}"))?;
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        let url = format!("https://{addr}");
        let ca_path = dir.join("kube-ca.crt");
        std::fs::write(&ca_path, &ca_pem).map_err(|e| format!("writing {ca_path:?}: {e}"))?;
        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: bench\n  cluster:\n    server: {url}\n    certificate-authority: {}\nusers:\n- name: ark-apiserver\n  user:\n    token: loadgen\ncontexts:\n- name: bench\n  context:\n    cluster: bench\n    user: ark-apiserver\ncurrent-context: bench\n",
                ca_path.display()
            ),
        )
        .map_err(|e| format!("writing {kubeconfig:?}: {e}"))?;
        Ok(SarEndpoint {
            url,
            kubeconfig,
            ca_pem,
            reviews,
            handle,
        })
    }

    pub fn reviews(&self) -> u64 {
        self.reviews.load(Ordering::Relaxed)
    }

    /// A client that trusts this endpoint's certificate, as the server's kube client does.
    fn client(&self) -> Result<reqwest::Client, String> {
        let ca = reqwest::Certificate::from_pem(self.ca_pem.as_bytes())
            .map_err(|e| format!("reading the endpoint's CA: {e}"))?;
        reqwest::Client::builder()
            .add_root_certificate(ca)
            .http1_only()
            .tcp_nodelay(true)
            .build()
            .map_err(|e| format!("building the review client: {e}"))
    }

    pub async fn stop(self) {
        self.handle.stop(false).await;
    }
}

async fn review(req: HttpRequest, body: Bytes, reviews: web::Data<AtomicU64>) -> HttpResponse {
    if req.method() != actix_web::http::Method::POST || req.path() != SAR_PATH {
        return HttpResponse::NotFound()
            .content_type("application/json")
            .body(
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                       "reason": "NotFound", "code": 404,
                       "message": "the server could not find the requested resource"})
                .to_string(),
            );
    }
    let Ok(mut sar) = serde_json::from_slice::<Value>(&body) else {
        return HttpResponse::BadRequest().finish();
    };
    reviews.fetch_add(1, Ordering::Relaxed);
    sar["status"] = json!({"allowed": true, "reason": "the load generator allows every request"});
    HttpResponse::Created()
        .content_type("application/json")
        .body(sar.to_string())
}

/// A CA named `ca_name` and a certificate for 127.0.0.1 signed by it (rustls does not
/// accept a self-signed leaf as its own trust anchor): the CA's PEM, the certificate and
/// its key. Shared by the review endpoint here and the etcd baseline's TLS.
pub fn loopback_certificate(
    ca_name: &str,
) -> Result<(String, rcgen::Certificate, KeyPair), String> {
    let e = |e: rcgen::Error| format!("generating a certificate for {ca_name}: {e}");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(e)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, ca_name);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().map_err(e)?).map_err(e)?;
    let key = KeyPair::generate().map_err(e)?;
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .map_err(e)?
        .signed_by(&key, &ca)
        .map_err(e)?;
    Ok((ca.pem(), cert, key))
}

/// The review endpoint's TLS: its CA's PEM and a server configuration for 127.0.0.1.
fn endpoint_tls() -> Result<(String, rustls::ServerConfig), String> {
    let (ca_pem, cert, key) = loopback_certificate("ark-loadgen review endpoint CA")?;
    let der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], der)
        .map_err(|e| e.to_string())?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((ca_pem, config))
}

/// One server configuration and the clients measured against it.
struct Variant {
    label: &'static str,
    args: Vec<String>,
    clients: Vec<(&'static str, Option<String>)>,
}

/// The four GET/LIST figures of one client against one server.
struct Figures {
    get_c1: Summary,
    get_c16: Summary,
    list_c1: Summary,
    list_c16: Summary,
}

pub async fn run(env: &Env, main_api: &Api, r: &mut Report, plan: &AuthPlan) -> Result<(), String> {
    let Some(bin) = env.bin.clone() else {
        r.note(
            "authentication and authorization",
            "not measured: the scenario starts servers of its own, and --server names one running elsewhere".into(),
        );
        return Ok(());
    };
    drop_slot(&env.db_url, SLOT).await?;
    let names: Vec<String> = (0..plan.objects).map(|i| format!("qa-{i:06}")).collect();
    let bodies = Arc::new(
        names
            .iter()
            .map(|n| api::query(n, NAMESPACE, "bench-agent"))
            .collect::<Vec<_>>(),
    );
    let seeded = scenarios::create(main_api, "queries", NAMESPACE, bodies, 16).await;
    if seeded.errors > 0 {
        return Err(format!("seeding {NAMESPACE}: {:?}", seeded.first_errors));
    }
    let names = Arc::new(names);

    let dir = std::env::temp_dir().join(format!("ark-loadgen-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {dir:?}: {e}"))?;
    let res = measure(&bin, env, r, plan, &names, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    drop_slot(&env.db_url, SLOT).await?;
    res
}

async fn measure(
    bin: &Path,
    env: &Env,
    r: &mut Report,
    plan: &AuthPlan,
    names: &Arc<Vec<String>>,
    dir: &Path,
) -> Result<(), String> {
    let gen = |e: TlsError| format!("generating client certificates: {e}");
    let ca = dev_client_ca().map_err(gen)?;
    let ca_path = dir.join("client-ca.crt");
    std::fs::write(&ca_path, ca.cert_pem()).map_err(|e| format!("writing {ca_path:?}: {e}"))?;
    let pem = |c: ClientCert| format!("{}{}", c.cert_pem, c.key_pem);
    let masters = pem(issue_client_cert(&ca, "bench-admin", Some("system:masters")).map_err(gen)?);
    let user = pem(issue_client_cert(&ca, "bench-user", None).map_err(gen)?);
    let sar = SarEndpoint::start(dir).await?;

    let common = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = ["--slot-name", SLOT, "--pool-size", "8"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let delegated = |extra: &[&str]| -> Vec<String> {
        let kc = sar.kubeconfig.display().to_string();
        let ca = ca_path.display().to_string();
        let mut a = common(&[
            "--auth-mode",
            "delegated",
            "--authentication-skip-lookup",
            "--client-ca-file",
            &ca,
            "--authentication-kubeconfig",
            &kc,
            "--authorization-kubeconfig",
            &kc,
        ]);
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let variants = [
        Variant {
            label: "auth off",
            args: common(&["--auth-mode", "off"]),
            clients: vec![("no credentials", None)],
        },
        Variant {
            label: "delegated",
            args: delegated(&[]),
            clients: vec![
                ("system:masters certificate (no review)", Some(masters)),
                ("certificate, decision cached", Some(user.clone())),
            ],
        },
        Variant {
            label: "delegated, authorized TTL 0",
            args: delegated(&["--authorization-webhook-cache-authorized-ttl", "0s"]),
            clients: vec![("certificate, a review per request", Some(user))],
        },
    ];

    let mut baseline: Option<Figures> = None;
    let res: Result<(), String> = async {
        for v in &variants {
            crate::run::progress(&format!("authentication and authorization: {}", v.label));
            let server = ServerProcess::spawn(bin, &env.db_url, &v.args)?;
            if let Err(e) = server.wait_ready(Duration::from_secs(60)).await {
                server.stop().await;
                return Err(e);
            }
            for (who, identity) in &v.clients {
                let api = match identity {
                    None => Api::new(&server.base_url, false),
                    Some(pem) => Api::with_identity(&server.base_url, pem),
                };
                let api = match api {
                    Ok(a) => a,
                    Err(e) => {
                        server.stop().await;
                        return Err(e);
                    }
                };
                let before = sar.reviews();
                let f = figures(
                    r,
                    &api,
                    plan,
                    names,
                    &format!("{}: {who}", v.label),
                    &baseline,
                )
                .await;
                let reviews = sar.reviews() - before;
                r.note(
                    &format!("SubjectAccessReviews sent, {}: {who}", v.label),
                    format!("{reviews} (warm-up included)"),
                );
                if baseline.is_none() {
                    baseline = Some(f);
                }
            }
            server.stop().await;
        }
        Ok(())
    }
    .await;
    if res.is_ok() {
        review_round_trip(r, &sar, plan).await?;
    }
    sar.stop().await;
    res
}

/// Warms up (connections, and the decision cache where there is one), then measures GET
/// and LIST at concurrency 1 and 16; each row is compared with the same row of the
/// `--auth-mode off` server, when that is already measured.
async fn figures(
    r: &mut Report,
    api: &Api,
    plan: &AuthPlan,
    names: &Arc<Vec<String>>,
    label: &str,
    baseline: &Option<Figures>,
) -> Figures {
    let n = names.len();
    let mut out = Vec::new();
    for (op, conc) in [("get", 1usize), ("get", 16), ("LIST", 1), ("LIST", 16)] {
        // The warm-up touches every name (a cached decision is per name) on as many
        // connections as the measured run uses, and is not recorded; it runs right before
        // its measurement, so no decision expires in between.
        let s: Samples = if op == "get" {
            warm(
                scenarios::get_each(api, "queries", NAMESPACE, Arc::clone(names), conc).await,
                r,
                label,
            );
            scenarios::get(
                api,
                "queries",
                NAMESPACE,
                Arc::clone(names),
                plan.gets,
                conc,
            )
            .await
        } else {
            warm(
                scenarios::list(api, "queries", NAMESPACE, conc, conc, n).await,
                r,
                label,
            );
            scenarios::list(api, "queries", NAMESPACE, plan.lists, conc, n).await
        };
        let what = if op == "get" {
            format!("{label}: get, concurrency {conc}")
        } else {
            format!("{label}: LIST {n} Queries, concurrency {conc}")
        };
        let metric = if conc == 1 {
            Metric::Latency
        } else {
            Metric::Throughput
        };
        let i = out.len();
        let row = r.add(SECTION, &what, &s);
        if let Some(b) = baseline {
            let base = [b.get_c1, b.get_c16, b.list_c1, b.list_c16][i];
            row.baseline = Some(("auth off".into(), base, metric));
        }
        out.push(s.summary());
    }
    Figures {
        get_c1: out[0],
        get_c16: out[1],
        list_c1: out[2],
        list_c16: out[3],
    }
}

/// A failed warm-up is a failed run: its errors are reported in a row of their own.
fn warm(s: Samples, r: &mut Report, label: &str) {
    if s.errors > 0 {
        let mut failed = s.clone();
        failed.latencies.clear();
        r.add(SECTION, &format!("{label}: warm-up"), &failed);
    }
}

/// The review endpoint's own round trip, from this process: what an uncached request pays
/// at the least.
async fn review_round_trip(
    r: &mut Report,
    sar: &SarEndpoint,
    plan: &AuthPlan,
) -> Result<(), String> {
    let http = sar.client()?;
    let url = format!("{}{SAR_PATH}", sar.url);
    let body = Bytes::from(
        json!({
            "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": {"user": "bench-user", "groups": ["system:authenticated"],
                     "resourceAttributes": {"verb": "get", "group": "ark.mckinsey.com",
                        "version": "v1alpha1", "resource": "queries",
                        "namespace": NAMESPACE, "name": "qa-000000"}}
        })
        .to_string(),
    );
    for conc in [1usize, 16] {
        let op = {
            let (http, url, body) = (http.clone(), url.clone(), body.clone());
            move |_| {
                let (http, url, body) = (http.clone(), url.clone(), body.clone());
                async move {
                    let resp = http
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await
                        .map_err(|e| format!("review: {e}"))?;
                    let code = resp.status().as_u16();
                    resp.bytes().await.map_err(|e| format!("review: {e}"))?;
                    if code != 201 {
                        return Err(format!("review: HTTP {code}"));
                    }
                    Ok(())
                }
            }
        };
        let warmup = closed_loop(conc, conc, op.clone()).await;
        warm(warmup, r, "SubjectAccessReview round trip");
        let s = closed_loop(conc, plan.gets, op).await;
        r.add(
            SECTION,
            &format!("  the SubjectAccessReview endpoint's own round trip, concurrency {conc}"),
            &s,
        );
    }
    Ok(())
}

/// Drops this scenario's slot once no server holds it (a stopped server's walsender may
/// take a moment to exit): it would otherwise keep WAL on a database that outlives the run.
pub async fn drop_slot(db_url: &str, slot: &str) -> Result<(), String> {
    let (c, conn) = tokio_postgres::connect(db_url, tokio_postgres::NoTls)
        .await
        .map_err(|e| format!("connecting to drop the slot {slot}: {e}"))?;
    tokio::spawn(conn);
    for _ in 0..100 {
        let rows = c
            .query(
                "SELECT active FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await
            .map_err(|e| format!("reading pg_replication_slots: {e}"))?;
        match rows.first().map(|r| r.get::<_, bool>(0)) {
            None => return Ok(()),
            Some(false) => {
                c.execute("SELECT pg_drop_replication_slot($1)", &[&slot])
                    .await
                    .map_err(|e| format!("dropping the slot {slot}: {e}"))?;
                return Ok(());
            }
            Some(true) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    Err(format!(
        "the slot {slot} stayed active for 10 s after its server stopped"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_review_endpoint_allows_and_counts_reviews() {
        let dir =
            std::env::temp_dir().join(format!("ark-loadgen-auth-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sar = SarEndpoint::start(&dir).await.unwrap();
        let http = sar.client().unwrap();
        let answer: Value = http
            .post(format!("{}{SAR_PATH}", sar.url))
            .body(r#"{"kind":"SubjectAccessReview","spec":{"user":"u"}}"#)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(answer["status"]["allowed"], json!(true));
        assert_eq!(answer["spec"]["user"], json!("u"));
        let other = http.get(format!("{}/api", sar.url)).send().await.unwrap();
        assert_eq!(other.status().as_u16(), 404);
        assert_eq!(sar.reviews(), 1);
        assert!(std::fs::read_to_string(&sar.kubeconfig)
            .unwrap()
            .contains(&sar.url));
        sar.stop().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
