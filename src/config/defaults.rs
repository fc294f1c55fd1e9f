//! Every default of every setting, defined once. clap shows them in `--help`,
//! `.arkrc.yaml` merging falls back to them, and [`ServeConfig::new`](super::ServeConfig::new)
//! starts from them, so the three can never disagree.

use std::time::Duration;

pub const BIND: &str = "0.0.0.0:6443";
/// `dev` serves this machine only.
pub const DEV_BIND: &str = "127.0.0.1:6443";
/// Objects may exceed etcd's 1.5 MiB ceiling; that is a reason to store them here.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
pub const WRITE_BATCH_SIZE: usize = 256;
pub const DELETED_RETENTION: Duration = Duration::from_secs(3600);
pub const WATCH_HISTORY: Duration = Duration::from_secs(5 * 60);
pub const WATCH_HISTORY_EVENTS: usize = 10_000;
pub const SLOT_NAME: &str = "ark_cdc";
pub const PUBLICATION_NAME: &str = "ark_cdc";
pub const POOL_SIZE: usize = 40;
pub const POSTGRES_PORT: u16 = 5432;
pub const POSTGRES_DATABASE: &str = "ark";
/// Not libpq's `prefer`: a server that refuses TLS is an error, never a silent fallback to
/// plain text (README, "Configuration").
pub const SSL_MODE: &str = "require";
pub const LOG_LEVEL: &str = "info";
/// How long a graceful shutdown waits for in-flight requests before closing them.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the serving certificate files are checked for new content (no flag: cert-manager
/// and the kubelet take far longer than this to rotate them).
pub const TLS_RELOAD_INTERVAL: Duration = Duration::from_secs(5);
/// `delegated`: an aggregated API server authenticates and authorizes through the
/// kube-apiserver. `off` must be chosen explicitly.
pub const AUTH_MODE: &str = "delegated";
// The webhook cache TTLs and the kube-apiserver timeouts are kubeapi::config::defaults.
/// How often CA files named by flags are re-read.
pub const AUTH_FILE_RELOAD: Duration = Duration::from_secs(10);
/// Served without authorization, so probes never depend on the kube-apiserver.
pub const ALWAYS_ALLOW_PATHS: &str = "/healthz,/readyz,/livez";

/// The walsender timeout of the replication connection (`--replication-timeout`):
/// PostgreSQL's default is 60 s, which would keep a hung leader's slot from the followers
/// for a minute.
pub const REPLICATION_TIMEOUT: Duration = Duration::from_secs(10);
