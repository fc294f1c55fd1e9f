//! Authentication and authorization settings, with k8s.io/apiserver's flag names
//! (`DelegatingAuthenticationOptions`, `DelegatingAuthorizationOptions`), so an operator's
//! sample-apiserver or metrics-server flags carry over.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::{defaults, ConfigError, DurationArg};
use crate::kubeapi::KubeApiConfig;

/// The flags. Each also reads an `ARK_*` environment variable.
#[derive(Debug, Clone, Args)]
pub struct AuthArgs {
    /// `delegated`: authenticate and authorize every request through the kube-apiserver, as
    /// an aggregated API server does. `off`: serve every request (development only; logs a
    /// warning).
    #[arg(long, env = "ARK_AUTH_MODE", default_value = defaults::AUTH_MODE)]
    pub auth_mode: String,
    /// Serve requests that present no credentials as system:anonymous (authorization still
    /// applies). An invalid credential is always 401, never anonymous.
    #[arg(long, env = "ARK_ANONYMOUS_AUTH", default_value_t = true, num_args = 0..=1,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub anonymous_auth: bool,
    /// Do not read the CAs and header names from the ConfigMap
    /// kube-system/extension-apiserver-authentication; only the flags below count.
    #[arg(long, env = "ARK_AUTHENTICATION_SKIP_LOOKUP")]
    pub authentication_skip_lookup: bool,
    /// kubeconfig for TokenReviews and the authentication ConfigMap (default: the
    /// in-cluster service account).
    #[arg(long, env = "ARK_AUTHENTICATION_KUBECONFIG")]
    pub authentication_kubeconfig: Option<PathBuf>,
    /// kubeconfig for SubjectAccessReviews (default: the in-cluster service account).
    #[arg(long, env = "ARK_AUTHORIZATION_KUBECONFIG")]
    pub authorization_kubeconfig: Option<PathBuf>,
    /// CA bundle for users' client certificates; overrides the ConfigMap's client-ca-file.
    #[arg(long, env = "ARK_CLIENT_CA_FILE")]
    pub client_ca_file: Option<PathBuf>,
    /// CA bundle for the front proxy's client certificate; overrides the ConfigMap's.
    #[arg(long, env = "ARK_REQUESTHEADER_CLIENT_CA_FILE")]
    pub requestheader_client_ca_file: Option<PathBuf>,
    /// Common names the front proxy's certificate may have (comma-separated); empty allows
    /// any the requestheader CA signed.
    #[arg(long, env = "ARK_REQUESTHEADER_ALLOWED_NAMES", value_delimiter = ',')]
    pub requestheader_allowed_names: Option<Vec<String>>,
    /// Request headers to take the user name from, first non-empty wins [default: X-Remote-User].
    #[arg(
        long,
        env = "ARK_REQUESTHEADER_USERNAME_HEADERS",
        value_delimiter = ','
    )]
    pub requestheader_username_headers: Option<Vec<String>>,
    /// Request headers to take the user's UID from [default: X-Remote-Uid].
    #[arg(long, env = "ARK_REQUESTHEADER_UID_HEADERS", value_delimiter = ',')]
    pub requestheader_uid_headers: Option<Vec<String>>,
    /// Request headers to take groups from [default: X-Remote-Group].
    #[arg(long, env = "ARK_REQUESTHEADER_GROUP_HEADERS", value_delimiter = ',')]
    pub requestheader_group_headers: Option<Vec<String>>,
    /// Prefixes of request headers carrying extra attributes [default: X-Remote-Extra-].
    #[arg(
        long,
        env = "ARK_REQUESTHEADER_EXTRA_HEADERS_PREFIX",
        value_delimiter = ','
    )]
    pub requestheader_extra_headers_prefix: Option<Vec<String>>,
    /// How long TokenReview answers (valid and invalid) are cached.
    #[arg(long, env = "ARK_AUTHENTICATION_TOKEN_WEBHOOK_CACHE_TTL",
          default_value_t = DurationArg(crate::kubeapi::config::defaults::TOKEN_CACHE_TTL))]
    pub authentication_token_webhook_cache_ttl: DurationArg,
    /// Paths served without authorization (non-resource requests only; a trailing * is a
    /// prefix).
    #[arg(long, env = "ARK_AUTHORIZATION_ALWAYS_ALLOW_PATHS", value_delimiter = ',',
          default_value = defaults::ALWAYS_ALLOW_PATHS)]
    pub authorization_always_allow_paths: Vec<String>,
    /// How long an allowed SubjectAccessReview is cached.
    #[arg(long, env = "ARK_AUTHORIZATION_WEBHOOK_CACHE_AUTHORIZED_TTL",
          default_value_t = DurationArg(crate::kubeapi::config::defaults::AUTHORIZED_TTL))]
    pub authorization_webhook_cache_authorized_ttl: DurationArg,
    /// How long a denied SubjectAccessReview is cached.
    #[arg(long, env = "ARK_AUTHORIZATION_WEBHOOK_CACHE_UNAUTHORIZED_TTL",
          default_value_t = DurationArg(crate::kubeapi::config::defaults::UNAUTHORIZED_TTL))]
    pub authorization_webhook_cache_unauthorized_ttl: DurationArg,
}

/// How requests are authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Through the kube-apiserver, as an aggregated API server.
    Delegated,
    /// Every request is served as if authorized. Only when chosen explicitly.
    Off,
}

/// Front-proxy settings given as flags; each one given overrides the ConfigMap's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestHeaderFlags {
    pub client_ca_file: Option<PathBuf>,
    pub allowed_names: Option<Vec<String>>,
    pub username_headers: Option<Vec<String>>,
    pub uid_headers: Option<Vec<String>>,
    pub group_headers: Option<Vec<String>>,
    pub extra_headers_prefix: Option<Vec<String>>,
}

/// The resolved settings.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthConfig {
    pub mode: AuthMode,
    pub anonymous: bool,
    pub skip_lookup: bool,
    pub client_ca_file: Option<PathBuf>,
    pub requestheader: RequestHeaderFlags,
    pub always_allow_paths: Vec<String>,
    /// How this server reaches the kube-apiserver: kubeconfigs, caches, timeouts.
    pub kube: KubeApiConfig,
    /// How often the CA files named by flags are re-read (a rotation needs no restart).
    pub file_reload: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            mode: AuthMode::Delegated,
            anonymous: true,
            skip_lookup: false,
            client_ca_file: None,
            requestheader: RequestHeaderFlags::default(),
            always_allow_paths: defaults::ALWAYS_ALLOW_PATHS
                .split(',')
                .map(str::to_string)
                .collect(),
            kube: KubeApiConfig::default(),
            file_reload: defaults::AUTH_FILE_RELOAD,
        }
    }
}

impl AuthArgs {
    pub fn resolve(&self) -> Result<AuthConfig, ConfigError> {
        let mode = match self.auth_mode.as_str() {
            "delegated" => AuthMode::Delegated,
            "off" => AuthMode::Off,
            other => return Err(ConfigError::AuthModeUnknown(other.to_string())),
        };
        let kube = KubeApiConfig {
            authentication_kubeconfig: self.authentication_kubeconfig.clone(),
            authorization_kubeconfig: self.authorization_kubeconfig.clone(),
            token_cache_ttl: self.authentication_token_webhook_cache_ttl.0,
            authorized_ttl: self.authorization_webhook_cache_authorized_ttl.0,
            unauthorized_ttl: self.authorization_webhook_cache_unauthorized_ttl.0,
            ..KubeApiConfig::default()
        };
        Ok(AuthConfig {
            mode,
            anonymous: self.anonymous_auth,
            skip_lookup: self.authentication_skip_lookup,
            client_ca_file: self.client_ca_file.clone(),
            requestheader: RequestHeaderFlags {
                client_ca_file: self.requestheader_client_ca_file.clone(),
                allowed_names: self.requestheader_allowed_names.clone(),
                username_headers: self.requestheader_username_headers.clone(),
                uid_headers: self.requestheader_uid_headers.clone(),
                group_headers: self.requestheader_group_headers.clone(),
                extra_headers_prefix: self.requestheader_extra_headers_prefix.clone(),
            },
            always_allow_paths: self.authorization_always_allow_paths.clone(),
            kube,
            file_reload: defaults::AUTH_FILE_RELOAD,
        })
    }
}

impl AuthConfig {
    /// The checks `ServeConfig::complete` makes: files named by flags must exist.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (flag, file) in [
            ("--client-ca-file", &self.client_ca_file),
            (
                "--requestheader-client-ca-file",
                &self.requestheader.client_ca_file,
            ),
        ] {
            if let Some(path) = file {
                if let Err(e) = std::fs::metadata(path) {
                    return Err(ConfigError::File {
                        flag,
                        path: path.display().to_string(),
                        error: e.to_string(),
                    });
                }
            }
        }
        self.kube.validate()?;
        if self.mode == AuthMode::Delegated && self.skip_lookup {
            let nothing = self.client_ca_file.is_none()
                && self.requestheader.client_ca_file.is_none()
                && self.kube.authentication_kubeconfig.is_none()
                && !in_cluster();
            if nothing && !self.anonymous {
                return Err(ConfigError::NoAuthenticator);
            }
        }
        Ok(())
    }
}

/// Whether the process runs in a pod with a service account (the in-cluster default).
pub fn in_cluster() -> bool {
    std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
}

/// The audit log (k8s.io/apiserver's `--audit-*` flags).
#[derive(Debug, Clone, Args)]
pub struct AuditArgs {
    /// Where audit events go: a file, or - for standard output. Without it, no audit log.
    #[arg(long, env = "ARK_AUDIT_LOG_PATH")]
    pub audit_log_path: Option<String>,
    /// The audit.k8s.io/v1 Policy deciding each request's level.
    #[arg(long, env = "ARK_AUDIT_POLICY_FILE")]
    pub audit_policy_file: Option<PathBuf>,
    /// Size in MB at which the audit log file is rotated (0: never).
    #[arg(long, env = "ARK_AUDIT_LOG_MAXSIZE",
          default_value_t = crate::audit::config::DEFAULT_MAX_SIZE_MB, allow_hyphen_values = true)]
    pub audit_log_maxsize: i64,
    /// Rotated files kept (0: all).
    #[arg(long, env = "ARK_AUDIT_LOG_MAXBACKUP",
          default_value_t = crate::audit::config::DEFAULT_MAX_BACKUPS, allow_hyphen_values = true)]
    pub audit_log_maxbackup: i64,
    /// Days rotated files are kept (0: any age).
    #[arg(long, env = "ARK_AUDIT_LOG_MAXAGE",
          default_value_t = crate::audit::config::DEFAULT_MAX_AGE_DAYS, allow_hyphen_values = true)]
    pub audit_log_maxage: i64,
    /// Events queued for the writer before new ones are dropped (and counted).
    #[arg(long, env = "ARK_AUDIT_LOG_BATCH_BUFFER_SIZE",
          default_value_t = crate::audit::config::DEFAULT_BUFFER_SIZE, allow_hyphen_values = true)]
    pub audit_log_batch_buffer_size: i64,
}

impl AuditArgs {
    pub fn resolve(&self) -> crate::audit::AuditConfig {
        crate::audit::AuditConfig {
            log_path: self.audit_log_path.clone(),
            policy_file: self.audit_policy_file.clone(),
            max_size_mb: self.audit_log_maxsize,
            max_backups: self.audit_log_maxbackup,
            max_age_days: self.audit_log_maxage,
            buffer_size: self.audit_log_batch_buffer_size,
        }
    }
}
