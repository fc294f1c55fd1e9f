//! What `serve` (and `dev`, and the tests) start a server from.
//!
//! [`ServeConfig`] is every setting, plain and editable, starting from [`defaults`]. The
//! server never takes one: it takes a [`CompletedConfig`], which only
//! [`ServeConfig::complete`] makes, after checking every value. A value that passed there
//! is never checked again, and a mistake is reported by its flag's name before anything
//! connects.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::{defaults, AuthConfig, ConfigError, DevArgs, ServeArgs, ServerArgs};
use crate::arkrc::{self, ArkrcError};
use crate::store::connect::DbConfig;

/// Every setting of a server, unvalidated.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub db: DbConfig,
    pub bind: SocketAddr,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// How often the certificate files are checked for new content.
    pub tls_reload_interval: Duration,
    pub crd_dir: Option<PathBuf>,
    pub max_body_bytes: usize,
    pub write_batch_size: usize,
    pub deleted_retention: Duration,
    pub skip_migrations: bool,
    pub slot_name: String,
    pub publication_name: String,
    pub watch: crate::watch::Config,
    pub auth: AuthConfig,
    pub audit: crate::audit::AuditConfig,
    /// How long shutdown waits for in-flight requests (writes) before closing them.
    pub shutdown_timeout: Duration,
    /// How this replica is named and reached by the others.
    pub replica: ReplicaSettings,
}

/// `--replica-id`, `--advertise-address` and `--replication-timeout`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaSettings {
    pub id: Option<String>,
    pub advertise: Option<String>,
    pub sender_timeout: Duration,
}

impl Default for ReplicaSettings {
    fn default() -> Self {
        ReplicaSettings {
            id: None,
            advertise: None,
            sender_timeout: defaults::REPLICATION_TIMEOUT,
        }
    }
}

impl ServeConfig {
    /// The address other replicas reach this one at: `--advertise-address`, else `--bind`
    /// when it names an address, else the host name with the bound port.
    pub fn advertise_address(&self, bound: SocketAddr) -> String {
        if let Some(a) = &self.replica.advertise {
            return a.clone();
        }
        if !bound.ip().is_unspecified() {
            return bound.to_string();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "localhost".into());
        format!("{host}:{}", bound.port())
    }
}

/// A configuration every value of which has been checked: the only input the server
/// starts from. Read it through `Deref`; it cannot be changed or built another way.
#[derive(Debug, Clone)]
pub struct CompletedConfig(ServeConfig, Option<crate::audit::ValidatedAudit>);

impl std::ops::Deref for CompletedConfig {
    type Target = ServeConfig;
    fn deref(&self) -> &ServeConfig {
        &self.0
    }
}

impl CompletedConfig {
    /// The audit policy and output, read and checked; `None` when no audit log is written.
    pub fn audit_log(&self) -> Option<&crate::audit::ValidatedAudit> {
        self.1.as_ref()
    }
}

/// Why `serve`'s settings could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Storage(#[from] ArkrcError),
    #[error(transparent)]
    Invalid(#[from] ConfigError),
}

impl ServeConfig {
    /// The documented defaults, for a database and an address.
    pub fn new(db: DbConfig, bind: SocketAddr) -> Self {
        ServeConfig {
            db,
            bind,
            tls_cert_file: None,
            tls_key_file: None,
            tls_reload_interval: defaults::TLS_RELOAD_INTERVAL,
            crd_dir: None,
            max_body_bytes: defaults::MAX_BODY_BYTES,
            write_batch_size: defaults::WRITE_BATCH_SIZE,
            deleted_retention: defaults::DELETED_RETENTION,
            skip_migrations: false,
            slot_name: defaults::SLOT_NAME.into(),
            publication_name: defaults::PUBLICATION_NAME.into(),
            watch: crate::watch::Config::default(),
            auth: AuthConfig::default(),
            audit: crate::audit::AuditConfig::default(),
            shutdown_timeout: defaults::SHUTDOWN_TIMEOUT,
            replica: ReplicaSettings::default(),
        }
    }

    /// `serve`: flags and environment, with the database from `.arkrc.yaml` when neither
    /// `--database-url` nor a host is given.
    pub fn from_serve_args(args: &ServeArgs) -> Result<Self, LoadError> {
        let auth = args.auth.resolve()?;
        let audit = args.audit.resolve();
        let db = arkrc::resolve(&args.db)?;
        let mut c = Self::from_server_args(db, &args.server)?;
        c.auth = auth;
        c.audit = audit;
        c.skip_migrations = args.skip_migrations;
        c.slot_name = args.names.slot_name.clone();
        c.publication_name = args.names.publication_name.clone();
        Ok(c)
    }

    /// `dev`: the embedded cluster's database; the server settings from the flags.
    pub fn from_dev_args(db: DbConfig, args: &DevArgs) -> Result<Self, LoadError> {
        Self::from_server_args(db, &args.server)
    }

    fn from_server_args(db: DbConfig, s: &ServerArgs) -> Result<Self, LoadError> {
        let mut c = ServeConfig::new(db, s.bind_addr()?);
        c.tls_cert_file = s.tls_cert_file.clone();
        c.tls_key_file = s.tls_private_key_file.clone();
        c.crd_dir = s.crd_dir.clone();
        c.max_body_bytes = s.max_body_bytes;
        c.write_batch_size = s.write_batch_size;
        c.deleted_retention = s.deleted_retention.0;
        c.watch.history.max_age = s.watch_history.0;
        c.watch.history.max_events_per_kind = s.watch_history_events;
        c.replica = ReplicaSettings {
            id: s.replica_id.clone(),
            advertise: s.advertise_address.clone(),
            sender_timeout: s.replication_timeout.0,
        };
        Ok(c)
    }

    /// Checks every value; the only way to a [`CompletedConfig`].
    pub fn complete(self) -> Result<CompletedConfig, ConfigError> {
        if self.db.pool_size < 2 {
            return Err(ConfigError::PoolSize);
        }
        crate::cdc::slot::validate_slot_name(&self.slot_name).map_err(ConfigError::SlotName)?;
        if self.publication_name.is_empty()
            || self.publication_name.len() > 63
            || self.publication_name.contains('\0')
        {
            return Err(ConfigError::PublicationName(self.publication_name));
        }
        for (flag, n) in [
            ("--write-batch-size", self.write_batch_size),
            (
                "--watch-history-events",
                self.watch.history.max_events_per_kind,
            ),
            ("--max-body-bytes", self.max_body_bytes),
        ] {
            if n == 0 {
                return Err(ConfigError::AtLeastOne { flag });
            }
        }
        if let Some(id) = &self.replica.id {
            let ok = !id.is_empty()
                && id.len() <= 45
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            if !ok {
                return Err(ConfigError::ReplicaId(id.clone()));
            }
        }
        if let Some(a) = &self.replica.advertise {
            let ok = a
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
            if !ok {
                return Err(ConfigError::AdvertiseAddress(a.clone()));
            }
        }
        for (flag, d) in [
            ("--watch-history", self.watch.history.max_age),
            ("--deleted-retention", self.deleted_retention),
            ("--replication-timeout", self.replica.sender_timeout),
        ] {
            if d.is_zero() {
                return Err(ConfigError::ZeroDuration { flag });
            }
        }
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            return Err(ConfigError::TlsPair);
        }
        self.auth.validate()?;
        let audit = self.audit.validate()?;
        if let Some(w) = self.audit.warning() {
            tracing::warn!("{w}");
        }
        Ok(CompletedConfig(self, audit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AuthMode, Cli};
    use clap::Parser;

    fn serve_args(extra: &[&str]) -> ServeArgs {
        let mut argv = vec![
            "ark-apiserver",
            "serve",
            "--database-url",
            "postgres://u@h/db?sslmode=disable",
        ];
        argv.extend_from_slice(extra);
        match Cli::try_parse_from(argv).unwrap().command {
            crate::config::Command::Serve(s) => s,
            _ => panic!("serve"),
        }
    }

    #[test]
    fn delegated_authentication_is_the_default_and_off_must_be_chosen() {
        let c = ServeConfig::from_serve_args(&serve_args(&[])).unwrap();
        assert_eq!(c.auth.mode, AuthMode::Delegated);
        assert!(c.auth.anonymous);
        let c = ServeConfig::from_serve_args(&serve_args(&["--auth-mode", "off"])).unwrap();
        assert_eq!(c.auth.mode, AuthMode::Off);
        assert!(matches!(
            ServeConfig::from_serve_args(&serve_args(&["--auth-mode", "none"])),
            Err(LoadError::Invalid(ConfigError::AuthModeUnknown(_)))
        ));
    }

    #[test]
    fn kube_flag_forms_parse() {
        let c = ServeConfig::from_serve_args(&serve_args(&[
            "--anonymous-auth=false",
            "--requestheader-allowed-names",
            "front-proxy-client,aggregator",
            "--authorization-always-allow-paths=/healthz,/debug/*",
            "--authorization-webhook-cache-authorized-ttl",
            "5m",
        ]))
        .unwrap();
        assert!(!c.auth.anonymous);
        assert_eq!(
            c.auth.requestheader.allowed_names.as_deref(),
            Some(&["front-proxy-client".to_string(), "aggregator".to_string()][..])
        );
        assert_eq!(c.auth.always_allow_paths, ["/healthz", "/debug/*"]);
        assert_eq!(c.auth.kube.authorized_ttl, Duration::from_secs(300));
        let mut want = AuthConfig {
            anonymous: false,
            always_allow_paths: c.auth.always_allow_paths.clone(),
            ..AuthConfig::default()
        };
        want.requestheader.allowed_names = c.auth.requestheader.allowed_names.clone();
        want.kube.authorized_ttl = c.auth.kube.authorized_ttl;
        assert_eq!(c.auth, want);
    }

    #[test]
    fn the_flags_defaults_are_the_configs_defaults() {
        let from_flags = ServeConfig::from_serve_args(&serve_args(&["--auth-mode", "off"]))
            .unwrap()
            .complete()
            .unwrap();
        let plain = ServeConfig::new(from_flags.db.clone(), from_flags.bind);
        assert_eq!(from_flags.bind.to_string(), defaults::BIND);
        assert_eq!(from_flags.max_body_bytes, plain.max_body_bytes);
        assert_eq!(from_flags.write_batch_size, plain.write_batch_size);
        assert_eq!(from_flags.deleted_retention, plain.deleted_retention);
        assert_eq!(from_flags.watch, plain.watch);
        assert_eq!(from_flags.slot_name, plain.slot_name);
        assert_eq!(from_flags.publication_name, plain.publication_name);
        assert_eq!(from_flags.db.pool_size, defaults::POOL_SIZE);
    }

    #[test]
    fn invalid_values_are_named_by_their_flag() {
        let base = || ServeConfig::from_serve_args(&serve_args(&["--auth-mode", "off"])).unwrap();
        let mut c = base();
        c.slot_name = "Ark-CDC".into();
        assert!(matches!(c.complete(), Err(ConfigError::SlotName(_))));
        let mut c = base();
        c.publication_name = "x".repeat(64);
        assert!(matches!(c.complete(), Err(ConfigError::PublicationName(_))));
        let mut c = base();
        c.write_batch_size = 0;
        let e = c.complete().unwrap_err();
        assert_eq!(e.to_string(), "--write-batch-size must be at least 1");
        let mut c = base();
        c.watch.history.max_age = Duration::ZERO;
        assert_eq!(
            c.complete().unwrap_err().to_string(),
            "--watch-history must be longer than 0s"
        );
        let mut c = base();
        c.tls_cert_file = Some("/cert.pem".into());
        assert!(matches!(c.complete(), Err(ConfigError::TlsPair)));
    }
}
