//! `ark-apiserver dev`: the README's run command, driven as a user drives it.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

const BIN: &str = env!("CARGO_BIN_EXE_ark-apiserver");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_serves_with_a_client_certificate_kubeconfig_kubectl_trusts_and_cleans_up_on_ctrl_c() {
    let port = ark_apiserver::embedded::free_port().unwrap().to_string();
    let mut child = tokio::process::Command::new(BIN)
        .args(["dev", "--port", &port])
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut kubeconfig = None;
    let mut seen = String::new();
    let found = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            seen.push_str(&line);
            seen.push('\n');
            if let Some(path) = line.trim().strip_prefix("export KUBECONFIG=") {
                kubeconfig = Some(path.to_string());
                break;
            }
        }
    })
    .await;
    assert!(
        found.is_ok() && kubeconfig.is_some(),
        "dev never printed the export line:\n{seen}"
    );
    let kubeconfig = kubeconfig.unwrap();
    assert_kubeconfig_has_a_masters_client_certificate(std::path::Path::new(&kubeconfig));
    // Keep draining stderr so the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    // kubectl with the written kubeconfig verifies the server's certificate (no insecure flag).
    let kubectl = |args: Vec<String>| {
        let kubeconfig = kubeconfig.clone();
        async move {
            let out = tokio::process::Command::new(crate::harness::kubectl_path())
                .args(&args)
                .env("KUBECONFIG", &kubeconfig)
                .env("HOME", std::env::temp_dir())
                .output()
                .await
                .unwrap();
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
    };
    let samples = concat!(env!("CARGO_MANIFEST_DIR"), "/samples/all.yaml").to_string();
    let (ok, out, err) = kubectl(vec!["apply".into(), "-f".into(), samples]).await;
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("agent.ark.mckinsey.com/trip-planner created"),
        "{out}"
    );
    let (ok, out, err) = kubectl(vec!["get".into(), "agents".into()]).await;
    assert!(
        ok && out.contains("trip-planner") && out.contains("MODEL"),
        "{out}{err}"
    );

    let data_dir = std::path::Path::new(&kubeconfig)
        .parent()
        .unwrap()
        .to_path_buf();
    assert!(data_dir.join("pgdata").exists());
    // Ctrl-C: both stop, and the throwaway data goes.
    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("dev exits after Ctrl-C")
        .unwrap();
    assert!(status.success(), "{status}");
    assert!(
        !data_dir.exists(),
        "the temporary data directory {} is removed",
        data_dir.display()
    );
}

/// The kubeconfig authenticates with a client certificate (CN dev, O system:masters), not a
/// token, and only its owner can read the key in it.
fn assert_kubeconfig_has_a_masters_client_certificate(path: &std::path::Path) {
    use base64::Engine;
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", path.display());
    let text = std::fs::read_to_string(path).unwrap();
    let cfg: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    let user = &cfg["users"][0]["user"];
    assert!(user.get("token").is_none(), "{text}");
    let decode = |field: &str| {
        let b64 = user[field]
            .as_str()
            .unwrap_or_else(|| panic!("no {field}: {text}"));
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap()
    };
    assert!(String::from_utf8(decode("client-key-data"))
        .unwrap()
        .contains("PRIVATE KEY"));
    let pem = decode("client-certificate-data");
    let der = rustls_pemfile::certs(&mut &pem[..])
        .next()
        .unwrap()
        .unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let names = |it: Vec<&x509_parser::x509::AttributeTypeAndValue>| {
        it.into_iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(cert.subject().iter_common_name().collect()), ["dev"]);
    assert_eq!(
        names(cert.subject().iter_organization().collect()),
        ["system:masters"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_without_postgres_binaries_says_how_to_install_them_or_use_a_url() {
    let empty = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(BIN)
        .args(["dev", "--port", "0"])
        .env("ARK_POSTGRES_BIN_DIR", empty.path())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for needle in [
        "no PostgreSQL 15+ server binaries found",
        "apt-get install postgresql",
        "--database-url",
    ] {
        assert!(stderr.contains(needle), "{needle} missing from: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_refuses_to_listen_beyond_loopback() {
    let out = tokio::process::Command::new(BIN)
        .args(["dev", "--bind", "0.0.0.0:7443"])
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "dev serves this machine only: --bind 0.0.0.0:7443 is not a loopback address"
        ),
        "{stderr}"
    );
}
