//! The `storage` block of the Ark CLI's `.arkrc.yaml`, read by `serve`, `migrate`, `slot`,
//! `config check` and `helm-values`:
//!
//! ```yaml
//! storage:
//!   backend: postgresql          # or etcd
//!   postgresql:
//!     host: db.example.com       # required
//!     port: 5432                 # default 5432
//!     database: ark              # default ark
//!     user: ark                  # required
//!     passwordSecretName: ark-pg # required: the Kubernetes Secret holding the password
//!     passwordSecretKey: password  # default password
//!     sslMode: require           # default require
//! ```
//!
//! Precedence is **per field**, highest first:
//!
//! 1. a flag (`--postgres-host`, `--backend`, ...),
//! 2. its environment variable (`ARK_POSTGRES_HOST`, `ARK_STORAGE_BACKEND`, ...),
//! 3. `./.arkrc.yaml` (the current directory),
//! 4. `~/.arkrc.yaml` (`$HOME`),
//! 5. the default.
//!
//! So a field absent from `./.arkrc.yaml` falls back to `~/.arkrc.yaml`, and explicit
//! settings always beat the files. An explicit database — `--database-url`
//! (`ARK_DATABASE_URL`) or a host (`--postgres-host`, `ARK_POSTGRES_HOST`) — turns the files'
//! connection settings and backend off entirely, so the server in a pod (configured by the
//! chart through the environment) behaves exactly as before; only `passwordSecretName` and
//! `passwordSecretKey`, which nothing else sets, are still read by `config check` and
//! `helm-values`.
//!
//! The password is never in `.arkrc.yaml`: the file names a Kubernetes Secret. The server
//! reads the password from `ARK_POSTGRES_PASSWORD` or `ARK_POSTGRES_PASSWORD_FILE` (the chart
//! maps the Secret to the former), and nothing here ever prints it.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config::{ConfigError, DbArgs, Given};
use crate::store::connect::{DbConfig, SslMode, SslModeOrigin};

pub const FILE_NAME: &str = ".arkrc.yaml";

#[derive(Debug, Clone, Default, Deserialize)]
pub struct RcFile {
    #[serde(default)]
    pub storage: Option<Storage>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Storage {
    #[serde(default)]
    pub backend: Option<String>,
    #[serde(default)]
    pub postgresql: Option<PgBlock>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PgBlock {
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub database: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub password_secret_name: Option<String>,
    #[serde(default)]
    pub password_secret_key: Option<String>,
    #[serde(default)]
    pub ssl_mode: Option<String>,
}

impl RcFile {
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        serde_saphyr::from_str::<Option<RcFile>>(text)
            .map(Option::unwrap_or_default)
            .map_err(|e| e.to_string())
    }

    fn pg(&self) -> Option<&PgBlock> {
        self.storage.as_ref()?.postgresql.as_ref()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Etcd,
    Postgresql,
}

impl Backend {
    pub fn parse(s: &str) -> Result<Self, ArkrcError> {
        match s {
            "etcd" => Ok(Self::Etcd),
            "postgresql" => Ok(Self::Postgresql),
            other => Err(ArkrcError::InvalidBackend(other.to_string())),
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Etcd => "etcd",
            Self::Postgresql => "postgresql",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ArkrcError {
    #[error("missing 'storage.postgresql' block in .arkrc.yaml")]
    MissingBlock,
    #[error("missing required field storage.postgresql.{0} in .arkrc.yaml")]
    MissingField(&'static str),
    #[error("Invalid backend value: {0}. Expected 'etcd' or 'postgresql'.")]
    InvalidBackend(String),
    #[error("the storage backend is etcd (from {0}), but ark-apiserver only serves the postgresql backend. In etcd mode Ark's resources are the stock CustomResourceDefinitions in the cluster's own etcd and no API server is needed; to serve them from PostgreSQL set storage.backend: postgresql in .arkrc.yaml (or --backend postgresql, ARK_STORAGE_BACKEND=postgresql)")]
    Etcd(Source),
    #[error("cannot read {path}: {error}")]
    Read { path: String, error: String },
    #[error("cannot parse {path}: {error}")]
    Parse { path: String, error: String },
    #[error("invalid storage.postgresql.sslMode in {path}: {error}")]
    SslMode { path: String, error: String },
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    /// `./.arkrc.yaml` (the path is absolute).
    CwdFile(PathBuf),
    /// `~/.arkrc.yaml` (the path is absolute).
    HomeFile(PathBuf),
    Env(&'static str),
    Flag(&'static str),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::CwdFile(_) => write!(f, "./{FILE_NAME}"),
            Source::HomeFile(p) => write!(f, "~/{FILE_NAME} ({})", p.display()),
            Source::Env(v) => write!(f, "environment {v}"),
            Source::Flag(v) => write!(f, "flag {v}"),
        }
    }
}

/// One effective value and its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting<T> {
    pub value: Option<T>,
    pub source: Source,
}

impl<T> Setting<T> {
    fn unset() -> Self {
        Self {
            value: None,
            source: Source::Default,
        }
    }
    fn default(v: T) -> Self {
        Self {
            value: Some(v),
            source: Source::Default,
        }
    }
}

/// What was found at one of the two file locations.
#[derive(Debug, Clone)]
pub enum FileState {
    /// Not looked at (no `$HOME`, or the same file as `./.arkrc.yaml`).
    Absent,
    NotFound(PathBuf),
    Found(PathBuf, RcFile),
}

impl FileState {
    pub fn read(path: PathBuf) -> Result<Self, ArkrcError> {
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let file = RcFile::parse(&text).map_err(|error| ArkrcError::Parse {
                    path: path.display().to_string(),
                    error,
                })?;
                Ok(Self::Found(path, file))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::NotFound(path)),
            Err(e) => Err(ArkrcError::Read {
                path: path.display().to_string(),
                error: e.to_string(),
            }),
        }
    }

    fn file(&self) -> Option<&RcFile> {
        match self {
            FileState::Found(_, f) => Some(f),
            _ => None,
        }
    }

    fn describe(&self) -> String {
        match self {
            FileState::Absent => "-".into(),
            FileState::NotFound(p) => format!("{} (not found)", p.display()),
            FileState::Found(p, _) => format!("{} (read)", p.display()),
        }
    }
}

/// The two files, current directory first.
#[derive(Debug, Clone)]
pub struct Files {
    pub cwd: FileState,
    pub home: FileState,
}

impl Files {
    pub fn none() -> Self {
        Self {
            cwd: FileState::Absent,
            home: FileState::Absent,
        }
    }

    /// Reads `<cwd>/.arkrc.yaml` and `<home>/.arkrc.yaml` (once, if they are the same file).
    pub fn read(cwd: &Path, home: Option<&Path>) -> Result<Self, ArkrcError> {
        let cwd_state = FileState::read(cwd.join(FILE_NAME))?;
        let same = |h: &Path| match (cwd.canonicalize(), h.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => cwd == h,
        };
        let home_state = match home {
            Some(h) if !h.as_os_str().is_empty() && !same(h) => FileState::read(h.join(FILE_NAME))?,
            _ => FileState::Absent,
        };
        Ok(Self {
            cwd: cwd_state,
            home: home_state,
        })
    }

    /// Reads the files of the process: the current directory and `$HOME`.
    pub fn read_from_process() -> Result<Self, ArkrcError> {
        let cwd = std::env::current_dir().map_err(|e| ArkrcError::Read {
            path: "the current directory".into(),
            error: e.to_string(),
        })?;
        let home = std::env::var_os("HOME").map(PathBuf::from);
        Self::read(&cwd, home.as_deref())
    }

    /// The files that were found, highest precedence first, with the source to report.
    fn layers(&self) -> Vec<(Source, &RcFile)> {
        let mut out = Vec::new();
        if let FileState::Found(p, f) = &self.cwd {
            out.push((Source::CwdFile(p.clone()), f));
        }
        if let FileState::Found(p, f) = &self.home {
            out.push((Source::HomeFile(p.clone()), f));
        }
        out
    }

    fn has_storage(&self) -> bool {
        [&self.cwd, &self.home]
            .iter()
            .any(|s| s.file().is_some_and(|f| f.storage.is_some()))
    }

    fn has_pg_block(&self) -> bool {
        [&self.cwd, &self.home]
            .iter()
            .any(|s| s.file().is_some_and(|f| f.pg().is_some()))
    }
}

/// The configuration after merging flags, environment, files and defaults.
#[derive(Debug, Clone)]
pub struct Effective {
    pub backend: Setting<Backend>,
    pub host: Setting<String>,
    pub port: Setting<u16>,
    pub database: Setting<String>,
    pub user: Setting<String>,
    pub password_secret_name: Setting<String>,
    pub password_secret_key: Setting<String>,
    pub ssl_mode: Setting<String>,
    /// Where the password comes from (never the password).
    pub password: Option<String>,
    /// Whether the files' connection settings and backend were used (no explicit database).
    pub files_used: bool,
    pub files: Files,
    db: DbArgs,
}

fn non_empty(s: &Option<String>) -> Option<String> {
    s.as_ref().filter(|v| !v.trim().is_empty()).cloned()
}

/// The source of an explicit [`DbArgs`] setting.
fn explicit(db: &DbArgs, id: &str, flag: &'static str, env: &'static str) -> Source {
    match db.given(id) {
        Some(Given::Env) => Source::Env(env),
        _ => Source::Flag(flag),
    }
}

/// Highest-precedence file value of a field.
fn from_files<T>(
    layers: &[(Source, &RcFile)],
    get: impl Fn(&PgBlock) -> Option<T>,
) -> Option<Setting<T>> {
    layers.iter().find_map(|(src, f)| {
        f.pg().and_then(&get).map(|v| Setting {
            value: Some(v),
            source: src.clone(),
        })
    })
}

impl Effective {
    /// Reads the files of the process as `db` requires: always when `secrets_too` (the
    /// Secret's name and key exist only in the files), else only without an explicit database.
    pub fn load(db: &DbArgs, secrets_too: bool) -> Result<Self, ArkrcError> {
        let explicit_db = db.database_url.is_some() || db.host.is_some();
        let files = if !explicit_db || secrets_too {
            Files::read_from_process()?
        } else {
            Files::none()
        };
        Self::merge(db, files)
    }

    /// Merges per field: flag, environment, ./.arkrc.yaml, ~/.arkrc.yaml, default.
    pub fn merge(db: &DbArgs, files: Files) -> Result<Self, ArkrcError> {
        let explicit_db = db.database_url.is_some() || db.host.is_some();
        let all_layers = files.layers();
        let conn_layers: &[(Source, &RcFile)] = if explicit_db { &[] } else { &all_layers };

        // The backend.
        let backend = if let Some(b) = &db.backend {
            Setting {
                value: Some(Backend::parse(b)?),
                source: explicit(db, "backend", "--backend", "ARK_STORAGE_BACKEND"),
            }
        } else if let Some((src, b)) = conn_layers.iter().find_map(|(src, f)| {
            f.storage
                .as_ref()
                .and_then(|s| non_empty(&s.backend))
                .map(|b| (src.clone(), b))
        }) {
            Setting {
                value: Some(Backend::parse(&b)?),
                source: src,
            }
        } else {
            Setting::default(Backend::Postgresql)
        };

        let string = |id: &'static str,
                      flag: &'static str,
                      env: &'static str,
                      value: &Option<String>,
                      get: fn(&PgBlock) -> &Option<String>,
                      default: Option<&str>| {
            if let Some(v) = non_empty(value) {
                return Setting {
                    value: Some(v),
                    source: explicit(db, id, flag, env),
                };
            }
            from_files(conn_layers, |p| non_empty(get(p))).unwrap_or(match default {
                Some(d) => Setting::default(d.to_string()),
                None => Setting::unset(),
            })
        };

        let mut host = string(
            "host",
            "--postgres-host",
            "ARK_POSTGRES_HOST",
            &db.host,
            |p| &p.host,
            None,
        );
        let mut port = match db.postgres_port {
            Some(p) => Setting {
                value: Some(p),
                source: explicit(db, "postgres_port", "--postgres-port", "ARK_POSTGRES_PORT"),
            },
            None => from_files(conn_layers, |p| p.port)
                .unwrap_or(Setting::default(crate::config::defaults::POSTGRES_PORT)),
        };
        let mut database = string(
            "database",
            "--postgres-database",
            "ARK_POSTGRES_DATABASE",
            &db.database,
            |p| &p.database,
            Some(crate::config::defaults::POSTGRES_DATABASE),
        );
        let mut user = string(
            "user",
            "--postgres-user",
            "ARK_POSTGRES_USER",
            &db.user,
            |p| &p.user,
            None,
        );
        let mut ssl_mode = string(
            "ssl_mode",
            "--postgres-ssl-mode",
            "ARK_POSTGRES_SSL_MODE",
            &db.ssl_mode,
            |p| &p.ssl_mode,
            Some(crate::config::defaults::SSL_MODE),
        );
        if let (Source::CwdFile(p) | Source::HomeFile(p), Some(m)) =
            (&ssl_mode.source, &ssl_mode.value)
        {
            m.parse::<SslMode>().map_err(|error| ArkrcError::SslMode {
                path: p.display().to_string(),
                error,
            })?;
        }
        // The Secret's name and key: only the files set them.
        let password_secret_name = from_files(&all_layers, |p| non_empty(&p.password_secret_name))
            .unwrap_or(Setting::unset());
        let password_secret_key = from_files(&all_layers, |p| non_empty(&p.password_secret_key))
            .unwrap_or(Setting::default("password".into()));

        let mut password = if db.password.is_some() {
            Some(format!(
                "set by {}",
                explicit(
                    db,
                    "password",
                    "--postgres-password",
                    "ARK_POSTGRES_PASSWORD"
                )
            ))
        } else {
            db.password_file.as_ref().map(|f| {
                format!(
                    "read from {} (set by {})",
                    f.display(),
                    explicit(
                        db,
                        "password_file",
                        "--postgres-password-file",
                        "ARK_POSTGRES_PASSWORD_FILE"
                    )
                )
            })
        };

        // A URL replaces the connection fields (and its sslmode wins, as in DbArgs::resolve).
        if let Some(url) = &db.database_url {
            let src = explicit(db, "database_url", "--database-url", "ARK_DATABASE_URL");
            let (rest, url_mode, _) = crate::config::split_ssl_params(url);
            let pg: tokio_postgres::Config = rest
                .parse()
                .map_err(|e: tokio_postgres::Error| ConfigError::BadUrl(e.to_string()))?;
            let from_url = |v: Option<String>| Setting {
                value: v,
                source: src.clone(),
            };
            host = from_url(pg.get_hosts().first().map(|h| match h {
                tokio_postgres::config::Host::Tcp(h) => h.clone(),
                tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
            }));
            port = match pg.get_ports().first() {
                Some(p) => Setting {
                    value: Some(*p),
                    source: src.clone(),
                },
                None => Setting::default(crate::config::defaults::POSTGRES_PORT),
            };
            database = from_url(pg.get_dbname().map(str::to_string));
            user = from_url(pg.get_user().map(str::to_string));
            if let Some(m) = url_mode {
                ssl_mode = from_url(Some(m));
            }
            if pg.get_password().is_some() {
                password = Some(format!("set in {src}"));
            }
        }

        Ok(Self {
            backend,
            host,
            port,
            database,
            user,
            password_secret_name,
            password_secret_key,
            ssl_mode,
            password,
            files_used: !explicit_db && files.has_storage(),
            files,
            db: db.clone(),
        })
    }

    /// The database settings with the files' values filled in, for [`DbArgs::resolve`].
    pub fn db_args(&self) -> DbArgs {
        let mut db = self.db.clone();
        if db.database_url.is_none() {
            db.host = self.host.value.clone();
            db.postgres_port = self.port.value;
            db.database = self.database.value.clone();
            db.user = self.user.value.clone();
            db.ssl_mode = self.ssl_mode.value.clone();
        }
        db
    }

    /// Checks everything `serve` would check before connecting. With `for_helm`, also
    /// that the chart's required values (host, user, passwordSecretName) are known.
    pub fn validate(&self, for_helm: bool) -> Result<DbConfig, ArkrcError> {
        if self.backend.value == Some(Backend::Etcd) {
            return Err(ArkrcError::Etcd(self.backend.source.clone()));
        }
        if self.files_used && !self.files.has_pg_block() {
            return Err(ArkrcError::MissingBlock);
        }
        if self.files_used || for_helm {
            for (name, s) in [
                ("host", &self.host),
                ("user", &self.user),
                ("passwordSecretName", &self.password_secret_name),
            ] {
                if s.value.is_none() {
                    return Err(ArkrcError::MissingField(name));
                }
            }
        }
        let mut cfg = self.db_args().resolve()?;
        // The merged value reaches `resolve` as if given: say where it really came from.
        if cfg.ssl_mode_origin != SslModeOrigin::Url {
            cfg.ssl_mode_origin = match &self.ssl_mode.source {
                Source::Default => SslModeOrigin::Default {
                    url: self.db.database_url.is_some(),
                },
                s @ (Source::CwdFile(_) | Source::HomeFile(_)) => {
                    SslModeOrigin::Setting(format!("storage.postgresql.sslMode in {s}"))
                }
                s => SslModeOrigin::Setting(s.to_string()),
            };
        }
        Ok(cfg)
    }

    /// The effective configuration, one line per value with its source. Never a password.
    pub fn report(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!("./{FILE_NAME}: {}\n", self.files.cwd.describe()));
        out.push_str(&format!("~/{FILE_NAME}: {}\n", self.files.home.describe()));
        if !self.files_used && (self.db.database_url.is_some() || self.db.host.is_some()) {
            out.push_str("(the database is given explicitly: the files' connection settings and backend are not used)\n");
        }
        out.push('\n');
        let mut line = |key: &str, value: Option<String>, source: &Source| {
            let v = value.unwrap_or_else(|| "-".into());
            out.push_str(&format!("{key:<38} {v:<24} {source}\n"));
        };
        line(
            "storage.backend",
            self.backend.value.map(|b| b.to_string()),
            &self.backend.source,
        );
        let pg = "storage.postgresql.";
        line(
            &format!("{pg}host"),
            self.host.value.clone(),
            &self.host.source,
        );
        line(
            &format!("{pg}port"),
            self.port.value.map(|p| p.to_string()),
            &self.port.source,
        );
        line(
            &format!("{pg}database"),
            self.database.value.clone(),
            &self.database.source,
        );
        line(
            &format!("{pg}user"),
            self.user.value.clone(),
            &self.user.source,
        );
        line(
            &format!("{pg}passwordSecretName"),
            self.password_secret_name.value.clone(),
            &self.password_secret_name.source,
        );
        line(
            &format!("{pg}passwordSecretKey"),
            self.password_secret_key.value.clone(),
            &self.password_secret_key.source,
        );
        line(
            &format!("{pg}sslMode"),
            self.ssl_mode.value.clone(),
            &self.ssl_mode.source,
        );
        out.push_str(&format!(
            "{:<38} {}\n",
            "password",
            match &self.password {
                Some(how) => format!("{how} (not shown)"),
                None =>
                    "not set (in a pod: ARK_POSTGRES_PASSWORD from the Secret passwordSecretName)"
                        .into(),
            }
        ));
        out
    }

    /// The chart's `postgresql.*` values, in chart order (key, value, is a number).
    fn helm_pairs(&self) -> Vec<(&'static str, String, bool)> {
        let mut v = Vec::new();
        let mut push = |k: &'static str, s: &Option<String>| {
            if let Some(s) = s {
                v.push((k, s.clone(), k == "postgresql.port"));
            }
        };
        push("postgresql.host", &self.host.value);
        let port = self.port.value.map(|p| p.to_string());
        push("postgresql.port", &port);
        push("postgresql.database", &self.database.value);
        push("postgresql.user", &self.user.value);
        push(
            "postgresql.passwordSecretName",
            &self.password_secret_name.value,
        );
        push(
            "postgresql.passwordSecretKey",
            &self.password_secret_key.value,
        );
        push("postgresql.sslMode", &self.ssl_mode.value);
        v
    }

    /// `--set` arguments for `helm install`, one per line: numbers with `--set`, strings
    /// with `--set-string` (so a user named `123` or `true` stays a string).
    pub fn helm_set_args(&self) -> String {
        self.helm_pairs()
            .into_iter()
            .map(|(k, v, number)| {
                let v = v.replace('\\', "\\\\").replace(',', "\\,");
                let flag = if number { "--set" } else { "--set-string" };
                format!("{flag} {k}={v}\n")
            })
            .collect()
    }

    /// A values file (YAML) for `helm install -f`.
    pub fn helm_values_file(&self) -> String {
        let mut out = String::from("postgresql:\n");
        for (k, v, number) in self.helm_pairs() {
            let key = k.trim_start_matches("postgresql.");
            let v = if number {
                v
            } else {
                serde_json::to_string(&v).expect("a string serializes")
            };
            out.push_str(&format!("  {key}: {v}\n"));
        }
        out
    }
}

/// The database of `serve`, `migrate` and `slot`: flags and environment, falling back to
/// the `.arkrc.yaml` files when neither `--database-url` nor a host is given.
pub fn resolve(db: &DbArgs) -> Result<DbConfig, ArkrcError> {
    Effective::load(db, false)?.validate(false)
}

#[cfg(test)]
mod tests;
