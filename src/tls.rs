//! The serving certificate: the operator's files, reloaded when they change, or a
//! self-signed one made at start; and the rustls configuration that serves it.
//!
//! cert-manager renews a certificate by rewriting its Secret, and the kubelet updates a
//! mounted Secret by swapping the `..data` symlink of the volume, so the file names stay
//! and their content changes underneath. The reloader therefore reads the content through
//! the configured paths at every check and compares it with what it last acted on: no
//! inotify on a path that is itself a symlink, and no trust in mtimes that a symlink swap
//! leaves untouched. A new pair replaces the served one only when both files parse and the
//! key is the certificate's (a pair caught half-written keeps the old one); handshakes read
//! the current pair atomically, and open connections (with their watches) keep theirs.

mod client_certs;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};

pub use client_certs::{dev_client_ca, issue_client_cert, ClientCa, ClientCert, DEV_USER};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {error}")]
    Read { path: String, error: String },
    #[error("{path} holds no PEM {what}")]
    Empty { path: String, what: &'static str },
    #[error("the private key in {key} does not belong to the certificate in {cert}")]
    KeyMismatch { cert: String, key: String },
    #[error("cannot generate a certificate: {0}")]
    Generate(String),
    #[error("the certificate and key do not form a usable TLS configuration: {0}")]
    Config(String),
}

/// The one crypto provider every TLS object here is built with: with two rustls providers
/// linked in (ring and aws-lc-rs), the implicit process default would panic.
fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// A self-signed certificate for `hosts` (DNS names or IP addresses), as PEM (cert, key).
pub fn self_signed(hosts: &[String]) -> Result<(String, String), TlsError> {
    let key = rcgen::KeyPair::generate().map_err(|e| TlsError::Generate(e.to_string()))?;
    let params = rcgen::CertificateParams::new(hosts.to_vec())
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Parses a PEM certificate chain and its private key into what rustls serves, and checks
/// that the key is the one the (first) certificate certifies. `cert_name` and `key_name`
/// say where the PEM came from, for the error.
pub fn certified_key(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert_name: &str,
    key_name: &str,
) -> Result<CertifiedKey, TlsError> {
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut &cert_pem[..])
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Read {
            path: cert_name.into(),
            error: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            path: cert_name.into(),
            what: "certificate",
        });
    }
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut &key_pem[..])
        .map_err(|e| TlsError::Read {
            path: key_name.into(),
            error: e.to_string(),
        })?
        .ok_or_else(|| TlsError::Empty {
            path: key_name.into(),
            what: "private key",
        })?;
    CertifiedKey::from_der(certs, key, &provider()).map_err(|e| match e {
        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
            TlsError::KeyMismatch {
                cert: cert_name.into(),
                key: key_name.into(),
            }
        }
        other => TlsError::Config(format!("{cert_name}, {key_name}: {other}")),
    })
}

/// The rustls configuration of the HTTPS listener: the certificate `certs` resolves at each
/// handshake, and client certificates checked by `client_auth` when one is given (with none,
/// no client certificate is asked for). Whether a certificate is required or only requested
/// is the verifier's to say.
pub fn server_config(
    certs: Arc<dyn ResolvesServerCert>,
    client_auth: Option<Arc<dyn ClientCertVerifier>>,
) -> Result<rustls::ServerConfig, TlsError> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match client_auth {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder.with_cert_resolver(certs);
    // HTTP/2 first, as kube-apiserver offers it: client-go multiplexes an informer's many
    // watches over one connection, so thousands of watches need not mean thousands of
    // sockets. HTTP/1.1 stays for clients that do not speak HTTP/2 (watches are then
    // chunked responses).
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// The certificate the server presents. Each handshake takes the current pair; a reload
/// swaps in a new one atomically, so connections already open keep theirs.
#[derive(Debug)]
pub struct ServingCert {
    current: ArcSwap<CertifiedKey>,
    reloaded: AtomicU64,
    rejected: AtomicU64,
}

/// How many new pairs a [`ServingCert`] took from its files, and how many it refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReloadStats {
    pub reloaded: u64,
    pub rejected: u64,
}

impl ServingCert {
    pub fn new(key: CertifiedKey) -> Arc<ServingCert> {
        Arc::new(ServingCert {
            current: ArcSwap::from_pointee(key),
            reloaded: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
        })
    }

    /// The pair the next handshake gets.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.load_full()
    }

    pub fn stats(&self) -> ReloadStats {
        ReloadStats {
            reloaded: self.reloaded.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
        }
    }

    fn install(&self, key: CertifiedKey) {
        self.current.store(Arc::new(key));
        self.reloaded.fetch_add(1, Ordering::Relaxed);
    }

    fn refused(&self) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
    }
}

impl ResolvesServerCert for ServingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// `--tls-cert-file` and `--tls-private-key-file`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The bytes of both files, read at one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PemPair {
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
}

/// A pair read from the files at start, ready to serve and to watch.
#[derive(Debug)]
pub struct Loaded {
    /// The certificate file's text, for clients that want to trust it (the dev kubeconfig).
    pub cert_pem: String,
    pub serving: Arc<ServingCert>,
    /// Remembers what was loaded, so the first check does not load it again.
    pub reloader: Reloader,
}

impl CertFiles {
    fn names(&self) -> (String, String) {
        (
            self.cert.display().to_string(),
            self.key.display().to_string(),
        )
    }

    /// Reads both files (through any symlinks, as the kubelet lays out a Secret volume).
    pub fn read(&self) -> Result<PemPair, TlsError> {
        Ok(PemPair {
            cert: read_file(&self.cert)?,
            key: read_file(&self.key)?,
        })
    }

    async fn read_async(&self) -> Result<PemPair, TlsError> {
        let read = |p: PathBuf| async move {
            tokio::fs::read(&p).await.map_err(|e| TlsError::Read {
                path: p.display().to_string(),
                error: e.to_string(),
            })
        };
        Ok(PemPair {
            cert: read(self.cert.clone()).await?,
            key: read(self.key.clone()).await?,
        })
    }

    /// The first load, at start: unlike a reload, a failure here stops the server.
    pub fn load(&self) -> Result<Loaded, TlsError> {
        let pair = self.read()?;
        let (cert_name, key_name) = self.names();
        let key = certified_key(&pair.cert, &pair.key, &cert_name, &key_name)?;
        Ok(Loaded {
            cert_pem: String::from_utf8_lossy(&pair.cert).into_owned(),
            serving: ServingCert::new(key),
            reloader: Reloader::new(self, &pair),
        })
    }
}

fn read_file(p: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(p).map_err(|e| TlsError::Read {
        path: p.display().to_string(),
        error: e.to_string(),
    })
}

/// What one check of the files found.
#[derive(Debug)]
pub enum Check {
    /// The same bytes as at the last check: nothing to do. `recovered` when the files had
    /// been unreadable since.
    Unchanged { recovered: bool },
    /// New bytes that form a usable pair: serve it.
    Reloaded(CertifiedKey),
    /// New bytes that do not (half-written, mismatched, not PEM): keep serving the current
    /// pair. The same bytes are not tried again; the next change is.
    Rejected(TlsError),
    /// A file could not be read (moved away mid-swap, permissions). `first` for the first
    /// check that failed in a row, so the log says it once.
    Unreadable { error: TlsError, first: bool },
}

/// The reload decision, without I/O: bytes in, what to do out. It remembers a digest of the
/// content it last acted on, applied or refused, so a refused pair is reported once and
/// the pair is tried again as soon as either file changes.
#[derive(Debug)]
pub struct Reloader {
    cert_name: String,
    key_name: String,
    last: [u8; 32],
    unreadable: bool,
}

impl Reloader {
    /// A reloader that has seen `loaded`, the pair being served.
    pub fn new(files: &CertFiles, loaded: &PemPair) -> Reloader {
        let (cert_name, key_name) = files.names();
        Reloader {
            cert_name,
            key_name,
            last: digest(loaded),
            unreadable: false,
        }
    }

    pub fn check(&mut self, read: Result<PemPair, TlsError>) -> Check {
        let pair = match read {
            Ok(p) => p,
            Err(error) => {
                let first = !self.unreadable;
                self.unreadable = true;
                return Check::Unreadable { error, first };
            }
        };
        let recovered = std::mem::replace(&mut self.unreadable, false);
        let d = digest(&pair);
        if d == self.last {
            return Check::Unchanged { recovered };
        }
        self.last = d;
        match certified_key(&pair.cert, &pair.key, &self.cert_name, &self.key_name) {
            Ok(key) => Check::Reloaded(key),
            Err(e) => Check::Rejected(e),
        }
    }
}

/// Both files' bytes, length-prefixed so that moving bytes from one file to the other is a
/// change.
fn digest(pair: &PemPair) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update((pair.cert.len() as u64).to_be_bytes());
    h.update(&pair.cert);
    h.update(&pair.key);
    h.finalize().into()
}

/// The SHA-256 fingerprint of the leaf certificate, as `openssl x509 -fingerprint -sha256`
/// prints it without colons: what an operator compares the log with.
pub fn fingerprint(key: &CertifiedKey) -> String {
    let leaf = key.cert.first().map(|c| c.as_ref()).unwrap_or_default();
    Sha256::digest(leaf)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

/// The shortest interval between checks, so a zero interval (tests set it) cannot spin.
const MIN_RELOAD_INTERVAL: Duration = Duration::from_millis(10);

/// Checks `files` every `every` and serves a new pair as soon as one is complete. Runs until
/// aborted; it holds nothing that an abort could leave half done.
pub async fn watch_files(
    serving: Arc<ServingCert>,
    files: CertFiles,
    mut reloader: Reloader,
    every: Duration,
) {
    let every = every.max(MIN_RELOAD_INTERVAL);
    loop {
        tokio::time::sleep(every).await;
        let read = files.read_async().await;
        match reloader.check(read) {
            Check::Unchanged { recovered: false } => {}
            Check::Unchanged { recovered: true } => tracing::info!(
                cert = %files.cert.display(),
                "the serving certificate files are readable again, unchanged"
            ),
            Check::Reloaded(key) => {
                let sha256 = fingerprint(&key);
                serving.install(key);
                crate::metrics::record_serving_cert_reload(true);
                tracing::info!(
                    cert = %files.cert.display(),
                    key = %files.key.display(),
                    %sha256,
                    "loaded a new serving certificate; new connections get it, open ones keep theirs"
                );
            }
            Check::Rejected(error) => {
                serving.refused();
                crate::metrics::record_serving_cert_reload(false);
                tracing::warn!(
                    %error,
                    "the serving certificate files changed but do not form a usable pair (still being written?); \
                     keeping the current certificate until they change again"
                );
            }
            Check::Unreadable { error, first } => {
                if first {
                    tracing::warn!(%error, "cannot read the serving certificate files; keeping the current certificate");
                } else {
                    tracing::debug!(%error, "the serving certificate files are still unreadable");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A certificate for localhost and its key, as PEM.
    fn pair() -> PemPair {
        let (cert, key) = self_signed(&["localhost".into()]).unwrap();
        PemPair {
            cert: cert.into_bytes(),
            key: key.into_bytes(),
        }
    }

    fn files() -> CertFiles {
        CertFiles {
            cert: "/tls/tls.crt".into(),
            key: "/tls/tls.key".into(),
        }
    }

    fn leaf(pair: &PemPair) -> CertificateDer<'static> {
        rustls_pemfile::certs(&mut &pair.cert[..])
            .next()
            .unwrap()
            .unwrap()
    }

    #[test]
    fn a_key_of_another_certificate_is_a_mismatch_naming_both_files() {
        let (a, b) = (pair(), pair());
        let err = certified_key(&a.cert, &b.key, "tls.crt", "tls.key").unwrap_err();
        assert!(
            matches!(&err, TlsError::KeyMismatch { cert, key } if cert == "tls.crt" && key == "tls.key"),
            "{err:?}"
        );
    }

    #[test]
    fn files_without_pem_blocks_are_empty_not_a_panic() {
        let p = pair();
        for (cert, key, what) in [
            (&b""[..], &p.key[..], "certificate"),
            (&p.cert[..], &b"garbage"[..], "private key"),
        ] {
            match certified_key(cert, key, "c", "k") {
                Err(TlsError::Empty { what: w, .. }) => assert_eq!(w, what),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn a_certificate_cut_off_mid_write_is_refused() {
        let p = pair();
        let half = &p.cert[..p.cert.len() / 2];
        assert!(certified_key(half, &p.key, "c", "k").is_err());
    }

    #[test]
    fn the_same_bytes_are_unchanged_and_new_bytes_reload() {
        let (a, b) = (pair(), pair());
        let mut r = Reloader::new(&files(), &a);
        assert!(matches!(
            r.check(Ok(a.clone())),
            Check::Unchanged { recovered: false }
        ));
        match r.check(Ok(b.clone())) {
            Check::Reloaded(k) => assert_eq!(k.cert[0], leaf(&b)),
            other => panic!("{other:?}"),
        }
        assert!(matches!(r.check(Ok(b)), Check::Unchanged { .. }));
    }

    #[test]
    fn a_half_replaced_pair_is_rejected_once_then_loaded_when_the_key_follows() {
        let (old, new) = (pair(), pair());
        let mut r = Reloader::new(&files(), &old);
        // The certificate is replaced first; the key is still the old one.
        let half = PemPair {
            cert: new.cert.clone(),
            key: old.key.clone(),
        };
        assert!(matches!(
            r.check(Ok(half.clone())),
            Check::Rejected(TlsError::KeyMismatch { .. })
        ));
        // Refused once, not at every check.
        assert!(matches!(r.check(Ok(half)), Check::Unchanged { .. }));
        assert!(matches!(r.check(Ok(new)), Check::Reloaded(_)));
    }

    #[test]
    fn unreadable_files_are_reported_once_and_recovery_is_noticed() {
        let a = pair();
        let mut r = Reloader::new(&files(), &a);
        let gone = || {
            Err(TlsError::Read {
                path: "/tls/tls.crt".into(),
                error: "No such file or directory".into(),
            })
        };
        assert!(matches!(
            r.check(gone()),
            Check::Unreadable { first: true, .. }
        ));
        assert!(matches!(
            r.check(gone()),
            Check::Unreadable { first: false, .. }
        ));
        assert!(matches!(
            r.check(Ok(a)),
            Check::Unchanged { recovered: true }
        ));
    }

    #[test]
    fn moving_bytes_between_the_files_is_a_change() {
        let a = PemPair {
            cert: b"ab".to_vec(),
            key: b"c".to_vec(),
        };
        let b = PemPair {
            cert: b"a".to_vec(),
            key: b"bc".to_vec(),
        };
        assert_ne!(digest(&a), digest(&b));
    }

    #[test]
    fn the_serving_cert_resolves_whatever_was_installed_last() {
        let (a, b) = (pair(), pair());
        let key = |p: &PemPair| certified_key(&p.cert, &p.key, "c", "k").unwrap();
        let serving = ServingCert::new(key(&a));
        let before = serving.current();
        serving.install(key(&b));
        assert_eq!(
            before.cert[0],
            leaf(&a),
            "a handshake in progress keeps its pair"
        );
        assert_eq!(serving.current().cert[0], leaf(&b));
        assert_eq!(serving.stats().reloaded, 1);
    }

    #[test]
    fn the_server_config_offers_h2_before_http_1_1() {
        let p = pair();
        let serving = ServingCert::new(certified_key(&p.cert, &p.key, "c", "k").unwrap());
        let cfg = server_config(serving, None).unwrap();
        assert_eq!(
            cfg.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }

    #[test]
    fn the_fingerprint_is_the_leafs_sha256_in_hex() {
        let p = pair();
        let key = certified_key(&p.cert, &p.key, "c", "k").unwrap();
        let fp = fingerprint(&key);
        assert_eq!(fp.len(), 64);
        assert!(fp
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase()));
    }
}
