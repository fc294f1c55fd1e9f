//! The command line and the configuration it becomes.
//!
//! Every flag also reads an environment variable. The flags, the environment and
//! `.arkrc.yaml` resolve into one [`ServeConfig`], and only [`ServeConfig::complete`], which
//! validates every value before anything connects, makes the [`CompletedConfig`] the server
//! starts from. Defaults live in [`defaults`], once. A new setting goes in three places: a
//! flag in the `*Args` struct it belongs to, a field of [`ServeConfig`], and its check in
//! `complete`.

mod auth;
pub mod defaults;
mod serve;

pub use auth::{in_cluster, AuditArgs, AuthArgs, AuthConfig, AuthMode, RequestHeaderFlags};
pub use serve::{CompletedConfig, LoadError, ServeConfig};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, Parser, Subcommand, ValueEnum};

use crate::store::connect::{DbConfig, SslMode, SslModeOrigin};

#[derive(Debug, Parser)]
#[command(
    name = "ark-apiserver",
    version,
    about = "The ark.mckinsey.com API served from PostgreSQL, as a Kubernetes aggregated API server"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the API (the production entry point).
    Serve(ServeArgs),
    /// Apply the schema migrations and exit.
    Migrate(MigrateArgs),
    /// Start a throwaway local PostgreSQL and serve on https://127.0.0.1:6443.
    Dev(DevArgs),
    /// Inspect or remove the replication slot.
    #[command(subcommand)]
    Slot(SlotCommand),
    /// Inspect the effective configuration (flags, environment and .arkrc.yaml files).
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print the Helm values (postgresql.*) for helm/ark-apiserver from the effective configuration.
    HelmValues(HelmValuesArgs),
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print every storage setting with its source, validate them without connecting, and
    /// exit non-zero if they are invalid. Passwords are never printed.
    Check(ConfigCheckArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ConfigCheckArgs {
    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HelmOutput {
    /// `--set`/`--set-string` arguments, one per line (for `helm install ... $(ark-apiserver helm-values)`).
    Set,
    /// A values file (YAML), for `helm install -f`.
    Values,
}

#[derive(Debug, Clone, Args)]
pub struct HelmValuesArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// The output format.
    #[arg(long, value_enum, default_value = "set")]
    pub output: HelmOutput,
}

/// Whether a setting was given as a flag or by its environment variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Given {
    Flag,
    Env,
}

#[derive(Debug, Subcommand)]
pub enum SlotCommand {
    /// Show the slot: plugin, holder, wal_status, confirmed position, retained WAL and lag.
    Status(SlotArgs),
    /// End the session holding the slot, then drop the slot and the publication (the cleanup after an uninstall).
    Drop(SlotArgs),
}

#[derive(Debug, Clone, Args)]
pub struct SlotArgs {
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub names: StreamNames,
}

/// The names of the replication slot and publication the watch reads.
#[derive(Debug, Clone, Args)]
pub struct StreamNames {
    /// The logical replication slot the watch reads (lower-case letters, digits and _, at
    /// most 63). Slot names are cluster-wide: each database needs its own.
    #[arg(long, env = "ARK_SLOT_NAME", default_value = defaults::SLOT_NAME)]
    pub slot_name: String,
    /// The publication of the resources table that the slot decodes.
    #[arg(long, env = "ARK_PUBLICATION_NAME", default_value = defaults::PUBLICATION_NAME)]
    pub publication_name: String,
}

#[derive(Debug, Clone, Args)]
pub struct DbArgs {
    /// Storage backend: postgresql or etcd. Overrides storage.backend in .arkrc.yaml;
    /// this server only serves postgresql.
    #[arg(long, env = "ARK_STORAGE_BACKEND")]
    pub backend: Option<String>,
    /// PostgreSQL connection URL (postgres://user:pass@host:port/db?sslmode=...). Overrides the ARK_POSTGRES_* settings.
    #[arg(long, env = "ARK_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    #[arg(long = "postgres-host", env = "ARK_POSTGRES_HOST")]
    pub host: Option<String>,
    /// [default: storage.postgresql.port in .arkrc.yaml, else 5432]
    #[arg(long = "postgres-port", env = "ARK_POSTGRES_PORT")]
    pub postgres_port: Option<u16>,
    /// [default: storage.postgresql.database in .arkrc.yaml, else ark]
    #[arg(long = "postgres-database", env = "ARK_POSTGRES_DATABASE")]
    pub database: Option<String>,
    #[arg(long = "postgres-user", env = "ARK_POSTGRES_USER")]
    pub user: Option<String>,
    #[arg(
        long = "postgres-password",
        env = "ARK_POSTGRES_PASSWORD",
        hide_env_values = true
    )]
    pub password: Option<String>,
    /// A file holding the password (e.g. a mounted Secret); trailing newlines are ignored.
    #[arg(long = "postgres-password-file", env = "ARK_POSTGRES_PASSWORD_FILE")]
    pub password_file: Option<PathBuf>,
    /// disable, prefer, require, verify-ca or verify-full. A sslmode in --database-url wins.
    /// Without one it is require (not libpq's prefer): a server without TLS is refused.
    /// [default: storage.postgresql.sslMode in .arkrc.yaml, else require]
    #[arg(long = "postgres-ssl-mode", env = "ARK_POSTGRES_SSL_MODE")]
    pub ssl_mode: Option<String>,
    /// CA certificate (PEM) for verify-ca and verify-full.
    #[arg(long = "postgres-ssl-root-cert", env = "ARK_POSTGRES_SSL_ROOT_CERT")]
    pub ssl_root_cert: Option<PathBuf>,
    /// Maximum database connections in the pool.
    #[arg(long, env = "ARK_POOL_SIZE", default_value_t = defaults::POOL_SIZE)]
    pub pool_size: usize,
    /// How each setting above was given (filled from the parsed matches by
    /// [`Cli::record_sources`]); only `config check` reads it.
    #[arg(skip)]
    pub given: HashMap<&'static str, Given>,
}

/// The ids (field names) of the [`DbArgs`] settings whose source `config check` reports.
pub const DB_ARG_IDS: [&str; 9] = [
    "backend",
    "database_url",
    "host",
    "postgres_port",
    "database",
    "user",
    "password",
    "password_file",
    "ssl_mode",
];

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub auth: AuthArgs,
    #[command(flatten)]
    pub audit: AuditArgs,
    /// Do not apply migrations at start; refuse to start unless the schema is current.
    #[arg(long, env = "ARK_SKIP_MIGRATIONS")]
    pub skip_migrations: bool,
    #[command(flatten)]
    pub names: StreamNames,
}

#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// Address to listen on.
    #[arg(long, env = "ARK_APISERVER_BIND", default_value = defaults::BIND)]
    pub bind: String,
    /// Overrides the port of --bind.
    #[arg(long, env = "ARK_APISERVER_PORT")]
    pub port: Option<u16>,
    /// PEM certificate to serve; without it a self-signed certificate is generated.
    #[arg(long, env = "ARK_TLS_CERT_FILE", requires = "tls_private_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of --tls-cert-file.
    #[arg(long, env = "ARK_TLS_PRIVATE_KEY_FILE", requires = "tls_cert_file")]
    pub tls_private_key_file: Option<PathBuf>,
    /// A directory of extra CustomResourceDefinition YAML files (group ark.mckinsey.com) to serve.
    #[arg(long, env = "ARK_CRD_DIR")]
    pub crd_dir: Option<PathBuf>,
    /// Largest request body accepted, in bytes (objects may exceed etcd's 1.5 MiB ceiling).
    #[arg(long, env = "ARK_MAX_BODY_BYTES", default_value_t = defaults::MAX_BODY_BYTES)]
    pub max_body_bytes: usize,
    /// Most API writes committed in one transaction. All writes go through one queue; the
    /// writer commits whatever is queued, up to this many, as one batch.
    #[arg(long, env = "ARK_WRITE_BATCH_SIZE", default_value_t = defaults::WRITE_BATCH_SIZE)]
    pub write_batch_size: usize,
    /// How long soft-deleted rows are kept before they are purged (e.g. 90s, 30m, 1h).
    #[arg(long, env = "ARK_DELETED_RETENTION", default_value_t = DurationArg(defaults::DELETED_RETENTION))]
    pub deleted_retention: DurationArg,
    /// How far back watches can resume (resourceVersions older than this get 410).
    #[arg(long, env = "ARK_WATCH_HISTORY", default_value_t = DurationArg(defaults::WATCH_HISTORY))]
    pub watch_history: DurationArg,
    /// Most events of one kind kept for resuming watches (events of the last 10 s are kept
    /// past it, so that one large transaction reaches every watcher whole).
    #[arg(long, env = "ARK_WATCH_HISTORY_EVENTS", default_value_t = defaults::WATCH_HISTORY_EVENTS)]
    pub watch_history_events: usize,
    /// Log filter, as RUST_LOG (e.g. info, ark_apiserver=debug).
    #[arg(long, env = "ARK_LOG_LEVEL", default_value = defaults::LOG_LEVEL)]
    pub log_level: String,
    /// host:port the other replicas reach this one at, for the internal stream (in the
    /// chart, the pod IP). [default: --bind when it names an address, else the host name
    /// and the port of --bind]
    #[arg(long, env = "ARK_ADVERTISE_ADDRESS")]
    pub advertise_address: Option<String>,
    /// This replica's name among the replicas of the slot (letters, digits, '.', '_' and
    /// '-', at most 45). [default: the host name and a random suffix]
    #[arg(long, env = "ARK_REPLICA_ID")]
    pub replica_id: Option<String>,
    /// The walsender timeout of the replication connection: how long a hung or cut-off
    /// leader keeps the slot before PostgreSQL frees it for another replica.
    #[arg(long, env = "ARK_REPLICATION_TIMEOUT", default_value_t = DurationArg(defaults::REPLICATION_TIMEOUT))]
    pub replication_timeout: DurationArg,
}

#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// The publication the watch reads; migrate recreates it when `slot drop` removed it,
    /// so a serving role without DDL rights can start again after a reinstall.
    #[arg(long, env = "ARK_PUBLICATION_NAME", default_value = defaults::PUBLICATION_NAME)]
    pub publication_name: String,
}

#[derive(Debug, Clone, Args)]
pub struct DevArgs {
    /// Keep the database here across runs (created if missing). Without it the data is thrown away on exit.
    #[arg(long, env = "ARK_DEV_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Where to write the kubeconfig (default: next to the data).
    #[arg(long, env = "ARK_DEV_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("no database configured: set --database-url (ARK_DATABASE_URL) or ARK_POSTGRES_HOST and ARK_POSTGRES_USER")]
    NoDatabase,
    #[error("ARK_POSTGRES_USER (--postgres-user) is required with ARK_POSTGRES_HOST")]
    NoUser,
    #[error("invalid database URL: {0}")]
    BadUrl(String),
    #[error("cannot read the password file {path}: {error}")]
    PasswordFile { path: String, error: String },
    #[error("ARK_POSTGRES_SSL_MODE: {0}")]
    SslMode(String),
    #[error("invalid --bind {0:?}: expected host:port, e.g. 0.0.0.0:6443")]
    Bind(String),
    #[error("--auth-mode {0:?} is not supported: use delegated (the default) or off")]
    AuthModeUnknown(String),
    #[error("{flag} {path}: {error}")]
    File {
        flag: &'static str,
        path: String,
        error: String,
    },
    #[error(transparent)]
    KubeApi(#[from] crate::kubeapi::KubeApiConfigError),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditConfigError),
    #[error("--authentication-skip-lookup with --anonymous-auth=false and no --client-ca-file, --requestheader-client-ca-file or --authentication-kubeconfig outside a cluster: no request could ever be authenticated")]
    NoAuthenticator,
    #[error("--pool-size must be at least 2 (one connection writes while others read)")]
    PoolSize,
    #[error("{0}")]
    SlotName(String),
    #[error(
        "invalid publication name {0:?}: a PostgreSQL identifier of 1 to 63 bytes without NUL"
    )]
    PublicationName(String),
    #[error("{flag} must be at least 1")]
    AtLeastOne { flag: &'static str },
    #[error("{flag} must be longer than 0s")]
    ZeroDuration { flag: &'static str },
    #[error("--tls-cert-file and --tls-private-key-file go together: give both or neither")]
    TlsPair,
    #[error("invalid --replica-id {0:?}: 1 to 45 letters, digits, '.', '_' or '-'")]
    ReplicaId(String),
    #[error("invalid --advertise-address {0:?}: expected host:port, e.g. 10.0.0.7:6443")]
    AdvertiseAddress(String),
}

impl DbArgs {
    pub fn resolve(&self) -> Result<DbConfig, ConfigError> {
        if self.pool_size < 2 {
            return Err(ConfigError::PoolSize);
        }
        let mut ssl_mode =
            SslMode::from_str(self.ssl_mode.as_deref().unwrap_or(defaults::SSL_MODE))
                .map_err(ConfigError::SslMode)?;
        let mut ssl_mode_origin = match self.given("ssl_mode") {
            _ if self.ssl_mode.is_none() => SslModeOrigin::Default {
                url: self.database_url.is_some(),
            },
            Some(Given::Env) => SslModeOrigin::Setting("environment ARK_POSTGRES_SSL_MODE".into()),
            _ => SslModeOrigin::Setting("flag --postgres-ssl-mode".into()),
        };
        let mut root_cert = self.ssl_root_cert.clone();
        let pg = if let Some(url) = &self.database_url {
            let (rest, url_mode, url_root) = split_ssl_params(url);
            if let Some(m) = url_mode {
                ssl_mode = SslMode::from_str(&m).map_err(ConfigError::SslMode)?;
                ssl_mode_origin = SslModeOrigin::Url;
            }
            if url_root.is_some() {
                root_cert = url_root.map(PathBuf::from);
            }
            tokio_postgres::Config::from_str(&rest)
                .map_err(|e| ConfigError::BadUrl(e.to_string()))?
        } else {
            let host = self.host.as_deref().ok_or(ConfigError::NoDatabase)?;
            let user = self.user.as_deref().ok_or(ConfigError::NoUser)?;
            let mut c = tokio_postgres::Config::new();
            c.host(host)
                .port(self.postgres_port.unwrap_or(defaults::POSTGRES_PORT))
                .dbname(
                    self.database
                        .as_deref()
                        .unwrap_or(defaults::POSTGRES_DATABASE),
                )
                .user(user);
            let password = match (&self.password, &self.password_file) {
                (Some(p), _) => Some(p.clone()),
                (None, Some(f)) => Some(
                    std::fs::read_to_string(f)
                        .map_err(|e| ConfigError::PasswordFile {
                            path: f.display().to_string(),
                            error: e.to_string(),
                        })?
                        .trim_end_matches(['\n', '\r'])
                        .to_string(),
                ),
                (None, None) => None,
            };
            if let Some(p) = password {
                c.password(p);
            }
            c
        };
        let mut pg = pg;
        pg.application_name("ark-apiserver");
        pg.connect_timeout(Duration::from_secs(10));
        Ok(DbConfig {
            pg,
            ssl_mode,
            ssl_mode_origin,
            root_cert,
            pool_size: self.pool_size,
        })
    }
}

/// Takes `sslmode` and `sslrootcert` out of a URL or key=value connection string, since
/// tokio-postgres knows only disable/prefer/require and TLS verification is done here.
pub fn split_ssl_params(conn: &str) -> (String, Option<String>, Option<String>) {
    let mut mode = None;
    let mut root = None;
    let mut keep = |kv: &&str| match kv.split_once('=') {
        Some(("sslmode", v)) => {
            mode = Some(v.to_string());
            false
        }
        Some(("sslrootcert", v)) => {
            root = Some(v.to_string());
            false
        }
        _ => true,
    };
    let rest = if conn.starts_with("postgres://") || conn.starts_with("postgresql://") {
        match conn.split_once('?') {
            None => conn.to_string(),
            Some((base, query)) => {
                let kept: Vec<&str> = query.split('&').filter(&mut keep).collect();
                if kept.is_empty() {
                    base.to_string()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
        }
    } else {
        conn.split_whitespace()
            .filter(&mut keep)
            .collect::<Vec<_>>()
            .join(" ")
    };
    (rest, mode, root)
}

impl DbArgs {
    /// How the setting with this field id was given, if it was.
    pub fn given(&self, id: &str) -> Option<Given> {
        self.given.get(id).copied()
    }
}

impl Cli {
    /// Parses the command line, remembering for the database settings whether each came
    /// from a flag or from the environment (clap knows; the derived structs do not).
    pub fn parse_recording_sources() -> Self {
        use clap::{CommandFactory, FromArgMatches};
        let matches = Self::command().get_matches();
        let mut cli = Self::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        cli.record_sources(&matches);
        cli
    }

    pub fn record_sources(&mut self, matches: &ArgMatches) {
        fn leaf(m: &ArgMatches) -> &ArgMatches {
            match m.subcommand() {
                Some((_, sub)) => leaf(sub),
                None => m,
            }
        }
        let m = leaf(matches);
        let Some(db) = self.command.db_mut() else {
            return;
        };
        for id in DB_ARG_IDS {
            match m.value_source(id) {
                Some(ValueSource::CommandLine) => {
                    db.given.insert(id, Given::Flag);
                }
                Some(ValueSource::EnvVariable) => {
                    db.given.insert(id, Given::Env);
                }
                _ => {}
            }
        }
    }
}

impl Command {
    /// The database settings of the commands that have them.
    pub fn db_mut(&mut self) -> Option<&mut DbArgs> {
        match self {
            Command::Serve(a) => Some(&mut a.db),
            Command::Migrate(a) => Some(&mut a.db),
            Command::Slot(SlotCommand::Status(a) | SlotCommand::Drop(a)) => Some(&mut a.db),
            Command::Config(ConfigCommand::Check(a)) => Some(&mut a.db),
            Command::HelmValues(a) => Some(&mut a.db),
            Command::Dev(_) => None,
        }
    }
}

impl ServerArgs {
    pub fn bind_addr(&self) -> Result<SocketAddr, ConfigError> {
        let mut addr: SocketAddr = self
            .bind
            .parse()
            .map_err(|_| ConfigError::Bind(self.bind.clone()))?;
        if let Some(p) = self.port {
            addr.set_port(p);
        }
        Ok(addr)
    }
}

/// A duration flag: `90s`, `30m`, `1h`, `2d`, or a bare number of seconds; shown in
/// `--help` in the largest unit that divides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationArg(pub Duration);

impl FromStr for DurationArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_duration(s).map(DurationArg)
    }
}

impl std::fmt::Display for DurationArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.0.as_secs();
        match s {
            0 => f.write_str("0s"),
            _ if s % 86400 == 0 => write!(f, "{}d", s / 86400),
            _ if s % 3600 == 0 => write!(f, "{}h", s / 3600),
            _ if s % 60 == 0 => write!(f, "{}m", s / 60),
            _ => write!(f, "{s}s"),
        }
    }
}

/// Durations like `90s`, `30m`, `1h`, `2d`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: expected e.g. 90s, 30m, 1h"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => return Err(format!("invalid duration {s:?}: unit must be s, m, h or d")),
    };
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssl_params_are_taken_out_of_urls_and_keyword_strings() {
        let (rest, mode, root) = split_ssl_params(
            "postgres://u:p@h:5/db?sslmode=verify-full&sslrootcert=/ca.pem&application_name=x",
        );
        assert_eq!(rest, "postgres://u:p@h:5/db?application_name=x");
        assert_eq!(mode.as_deref(), Some("verify-full"));
        assert_eq!(root.as_deref(), Some("/ca.pem"));
        let (rest, mode, _) = split_ssl_params("host=h user=u sslmode=disable");
        assert_eq!(rest, "host=h user=u");
        assert_eq!(mode.as_deref(), Some("disable"));
    }

    #[test]
    fn durations_accept_units() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("15").unwrap(), Duration::from_secs(15));
        assert!(parse_duration("1w").is_err());
    }

    #[test]
    fn durations_show_in_their_largest_whole_unit() {
        assert_eq!(DurationArg(Duration::from_secs(3600)).to_string(), "1h");
        assert_eq!(DurationArg(Duration::from_secs(300)).to_string(), "5m");
        assert_eq!(DurationArg(Duration::from_secs(90)).to_string(), "90s");
        for d in ["1h", "5m", "90s", "2d"] {
            assert_eq!(d.parse::<DurationArg>().unwrap().to_string(), d);
        }
    }

    #[test]
    fn the_port_variable_overrides_the_bind_port() {
        let cli = Cli::try_parse_from(["ark-apiserver", "serve", "--port", "7443"]).unwrap();
        let Command::Serve(s) = cli.command else {
            panic!("serve")
        };
        assert_eq!(s.server.bind_addr().unwrap().port(), 7443);
    }
}
