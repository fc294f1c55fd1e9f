//! The serving certificate from `--tls-cert-file` and `--tls-private-key-file`, checked by
//! what a verifying client is served, and rotated the way the kubelet updates a mounted
//! Secret (new files in a new directory, then the `..data` symlink swapped) while a watch
//! stays open.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ark_apiserver::tls::ReloadStats;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::json;

use crate::harness::TestServer;
use crate::watch::{agent, agents, Api, Next};

const RELOAD_EVERY: Duration = Duration::from_millis(50);
/// Long enough for many checks; a change is picked up within a few.
const PATIENCE: Duration = Duration::from_secs(15);

/// A CA of the test's own, and serving certificates it signs for the server's address.
struct Pki {
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A serving certificate: its PEM, its key's PEM and its DER, to compare with what is served.
struct Served {
    cert: String,
    key: String,
    der: CertificateDer<'static>,
}

impl Pki {
    fn new() -> Pki {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "serving-cert-test-ca");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).unwrap();
        Pki {
            ca_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    fn issue(&self) -> Served {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Served {
            cert: cert.pem(),
            key: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    fn http(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).unwrap())
            .build()
            .unwrap()
    }
}

/// A directory laid out as the kubelet lays out a Secret volume: `tls.crt` and `tls.key`
/// are symlinks into `..data`, itself a symlink to the current timestamped directory.
struct SecretVolume {
    dir: tempfile::TempDir,
    generation: usize,
}

impl SecretVolume {
    fn new(first: &Served) -> SecretVolume {
        let mut v = SecretVolume {
            dir: tempfile::tempdir().unwrap(),
            generation: 0,
        };
        v.publish(first);
        for name in ["tls.crt", "tls.key"] {
            std::os::unix::fs::symlink(Path::new("..data").join(name), v.path(name)).unwrap();
        }
        v
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// What the kubelet does on a Secret update: write the new files into a new directory,
    /// point a temporary symlink at it, rename that over `..data` (one atomic step), and
    /// remove the old directory.
    fn publish(&mut self, s: &Served) {
        self.publish_raw(s.cert.as_bytes(), s.key.as_bytes());
    }

    fn publish_raw(&mut self, cert: &[u8], key: &[u8]) {
        self.generation += 1;
        let old = format!("..gen_{}", self.generation - 1);
        let new = format!("..gen_{}", self.generation);
        std::fs::create_dir(self.path(&new)).unwrap();
        std::fs::write(self.path(&new).join("tls.crt"), cert).unwrap();
        std::fs::write(self.path(&new).join("tls.key"), key).unwrap();
        std::os::unix::fs::symlink(&new, self.path("..data_tmp")).unwrap();
        std::fs::rename(self.path("..data_tmp"), self.path("..data")).unwrap();
        let _ = std::fs::remove_dir_all(self.path(&old));
    }
}

/// The leaf certificate a new TLS connection to `addr` is served, verified against `ca_pem`
/// for the name 127.0.0.1 (so a certificate that does not chain to the CA fails here).
async fn served_cert(addr: SocketAddr, ca_pem: &str) -> CertificateDer<'static> {
    let ca_pem = ca_pem.to_string();
    tokio::task::spawn_blocking(move || {
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let mut conn = rustls::ClientConnection::new(Arc::new(cfg), name).unwrap();
        let mut sock = std::net::TcpStream::connect(addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        while conn.is_handshaking() {
            conn.complete_io(&mut sock)
                .unwrap_or_else(|e| panic!("TLS handshake with {addr}: {e}"));
        }
        conn.peer_certificates().expect("a server certificate")[0].clone()
    })
    .await
    .unwrap()
}

/// Waits until new connections are served `want`.
async fn wait_served(s: &TestServer, ca_pem: &str, want: &CertificateDer<'static>) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while &served_cert(s.addr, ca_pem).await != want {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new certificate was not served within {PATIENCE:?}; reloads: {:?}",
            s.serving_cert().stats()
        );
        tokio::time::sleep(RELOAD_EVERY).await;
    }
}

/// Waits until the reloader has refused one more pair than `before`.
async fn wait_rejected(s: &TestServer, before: ReloadStats) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while s.serving_cert().stats().rejected <= before.rejected {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the broken pair was never looked at: {:?}",
            s.serving_cert().stats()
        );
        tokio::time::sleep(RELOAD_EVERY).await;
    }
}

async fn start(volume: &SecretVolume) -> TestServer {
    let (cert, key) = (volume.path("tls.crt"), volume.path("tls.key"));
    TestServer::start_with(move |c| {
        c.tls_cert_file = Some(cert);
        c.tls_key_file = Some(key);
        c.tls_reload_interval = RELOAD_EVERY;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_certificate_is_served_to_new_connections_while_an_open_watch_keeps_streaming() {
    let pki = Pki::new();
    let (first, second) = (pki.issue(), pki.issue());
    let mut volume = SecretVolume::new(&first);
    let s = start(&volume).await;
    assert_eq!(served_cert(s.addr, &pki.ca_pem).await, first.der);

    // A watch over a connection made with the first certificate.
    let api = Api {
        http: pki.http(),
        base: s.base_url(),
    };
    let mut watch = api
        .watch(&format!("{}?watch=true", agents("default")))
        .await;

    volume.publish(&second);
    wait_served(&s, &pki.ca_pem, &second.der).await;
    // (A check that read the certificate before the swap and the key after it refuses that
    // mix and takes the pair at the next check, so rejections are not counted here.)
    assert_eq!(s.serving_cert().stats().reloaded, 1);

    // The open watch was not dropped: it delivers a change made after the rotation (over a
    // new connection, which the second certificate serves).
    let fresh = Api {
        http: pki.http(),
        base: s.base_url(),
    };
    fresh
        .create("default", &agent("after-rotation", json!({})))
        .await;
    let ev = loop {
        match watch.next_within(PATIENCE).await {
            Next::Event(v) if v["type"] == "BOOKMARK" => continue,
            Next::Event(v) => break v,
            other => panic!("the watch opened before the rotation ended: {other:?}"),
        }
    };
    assert_eq!(ev["type"], "ADDED", "{ev}");
    assert_eq!(ev["object"]["metadata"]["name"], "after-rotation", "{ev}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_pair_is_ignored_and_the_current_certificate_kept_until_a_good_one_arrives() {
    let pki = Pki::new();
    let (first, second, third) = (pki.issue(), pki.issue(), pki.issue());
    let mut volume = SecretVolume::new(&first);
    let s = start(&volume).await;

    // A pair caught half-replaced: the new certificate beside the old key.
    let before = s.serving_cert().stats();
    volume.publish_raw(second.cert.as_bytes(), first.key.as_bytes());
    wait_rejected(&s, before).await;
    assert_eq!(served_cert(s.addr, &pki.ca_pem).await, first.der);

    // A certificate file cut off mid-write.
    let before = s.serving_cert().stats();
    let half = &second.cert.as_bytes()[..second.cert.len() / 2];
    volume.publish_raw(half, second.key.as_bytes());
    wait_rejected(&s, before).await;
    assert_eq!(served_cert(s.addr, &pki.ca_pem).await, first.der);

    // Files that are not PEM at all.
    let before = s.serving_cert().stats();
    volume.publish_raw(b"", b"not a key");
    wait_rejected(&s, before).await;
    assert_eq!(served_cert(s.addr, &pki.ca_pem).await, first.der);

    // A complete pair again: served, and the server kept answering throughout.
    volume.publish(&third);
    wait_served(&s, &pki.ca_pem, &third.der).await;
    let stats = s.serving_cert().stats();
    assert!(stats.reloaded == 1 && stats.rejected >= 3, "{stats:?}");
    let (code, _) = Api {
        http: pki.http(),
        base: s.base_url(),
    }
    .get("/livez")
    .await;
    assert_eq!(code, 200);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mismatched_pair_at_start_stops_the_server_naming_both_files() {
    let pki = Pki::new();
    let (first, second) = (pki.issue(), pki.issue());
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert, &first.cert).unwrap();
    std::fs::write(&key, &second.key).unwrap();
    let db = crate::harness::TestDb::new().await;
    let mut opts = crate::harness::serve_config(db.config());
    opts.slot_name = db.slot_name();
    opts.tls_cert_file = Some(cert.clone());
    opts.tls_key_file = Some(key.clone());
    let err = match ark_apiserver::app::start(opts.complete().unwrap()).await {
        Ok(running) => {
            running.abort();
            panic!("started with a key of another certificate");
        }
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains(&cert.display().to_string()) && err.contains(&key.display().to_string()),
        "{err}"
    );
    assert!(err.contains("does not belong to the certificate"), "{err}");
}
