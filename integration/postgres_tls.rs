//! TLS to PostgreSQL goes through rustls with libpq's sslmode semantics.

use std::time::Duration;

use ark_apiserver::app;
use ark_apiserver::embedded::Cluster;
use ark_apiserver::store::connect::{DbConfig, SslMode};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

/// The name in the server certificate; it resolves nowhere, the IP comes from hostaddr.
const DB_NAME: &str = "db.ark-test.internal";

struct Pki {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

/// A CA and a server certificate for one DNS name only (no IP address).
fn make_pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "ark test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec![DB_NAME.to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    Pki {
        ca_pem: ca.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

/// Starts the server against `cluster` with the given mode and root certificate and
/// reports how database init ended.
async fn init_with(
    cluster: &Cluster,
    host: &str,
    mode: SslMode,
    root: Option<std::path::PathBuf>,
) -> Result<(), String> {
    let mut pg = tokio_postgres::Config::new();
    pg.host(host)
        .hostaddr("127.0.0.1".parse().unwrap())
        .port(cluster.port())
        .user("ark")
        .dbname("postgres")
        .connect_timeout(Duration::from_secs(5));
    let mut db = DbConfig::new(pg, mode);
    db.root_cert = root;
    db.pool_size = 4;
    let mut running = app::start(crate::harness::serve_config(db).complete().unwrap())
        .await
        .map_err(|e| e.to_string())?;
    // A TLS failure is a connection failure, which the server keeps retrying: give it a moment.
    let r = tokio::time::timeout(Duration::from_secs(5), &mut running.init).await;
    running.stop().await;
    match r {
        Ok(Ok(r)) => r.map_err(|e| e.to_string()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("still retrying".into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmodes_require_verify_ca_and_verify_full_behave_as_in_libpq() {
    crate::harness::init_logging();
    let pki = make_pki();
    let cluster = tokio::task::spawn_blocking(|| Cluster::start(None, true).unwrap())
        .await
        .unwrap();
    let data = cluster.data_dir().to_path_buf();
    std::fs::write(data.join("server.crt"), &pki.cert_pem).unwrap();
    std::fs::write(data.join("server.key"), &pki.key_pem).unwrap();
    for f in ["server.crt", "server.key"] {
        // PostgreSQL insists on a private key only its owner can read.
        std::process::Command::new("chmod")
            .args(["600", &data.join(f).display().to_string()])
            .status()
            .unwrap();
        std::process::Command::new("sh")
            .args(["-c", &format!("id -u postgres >/dev/null 2>&1 && [ \"$(id -u)\" = 0 ] && chown postgres:postgres '{}' || true", data.join(f).display())])
            .status()
            .unwrap();
    }
    let cluster = tokio::task::spawn_blocking(move || {
        cluster
            .configure("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'")
            .unwrap();
        cluster.restart().unwrap();
        cluster
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, &pki.ca_pem).unwrap();
    let other_ca = dir.path().join("other.pem");
    std::fs::write(&other_ca, make_pki().ca_pem).unwrap();

    // Encrypted, server not authenticated: any name, any certificate.
    init_with(&cluster, "127.0.0.1", SslMode::Require, None)
        .await
        .unwrap();
    // Verified chain and host name.
    init_with(
        &cluster,
        DB_NAME,
        SslMode::VerifyFull,
        Some(ca_path.clone()),
    )
    .await
    .unwrap();
    let e = init_with(
        &cluster,
        "127.0.0.1",
        SslMode::VerifyFull,
        Some(ca_path.clone()),
    )
    .await
    .unwrap_err();
    assert_eq!(
        e, "still retrying",
        "a name mismatch is a connection failure under verify-full"
    );
    // verify-ca checks the chain but not the name the client used.
    init_with(
        &cluster,
        "127.0.0.1",
        SslMode::VerifyCa,
        Some(ca_path.clone()),
    )
    .await
    .unwrap();
    // A certificate from another CA is refused under verify-full and verify-ca.
    assert!(init_with(
        &cluster,
        DB_NAME,
        SslMode::VerifyFull,
        Some(other_ca.clone())
    )
    .await
    .is_err());
    assert!(
        init_with(&cluster, "127.0.0.1", SslMode::VerifyCa, Some(other_ca))
            .await
            .is_err()
    );
    // The server's hba allows plain connections too, so disable works against it.
    init_with(&cluster, "127.0.0.1", SslMode::Disable, None)
        .await
        .unwrap();
    drop(cluster);
}
