//! The `--audit-*` settings, with k8s.io/apiserver's defaults and checks, every error named
//! by its flag. The integrator declares the flags in `src/config/` and calls
//! [`AuditConfig::validate`] from `ServeConfig::complete`; `app` then starts the backend
//! from the [`ValidatedAudit`].

use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::policy::{ParsedPolicy, Policy, PolicyError};
use super::rotate::Rotation;

/// kube's `--audit-log-maxsize` default, in megabytes.
pub const DEFAULT_MAX_SIZE_MB: i64 = 100;
/// kube's `--audit-log-maxbackup` default.
pub const DEFAULT_MAX_BACKUPS: i64 = 100;
/// kube's `--audit-log-maxage` default, in days.
pub const DEFAULT_MAX_AGE_DAYS: i64 = 366;
/// kube's `--audit-log-batch-buffer-size` default: events queued before new ones are dropped.
pub const DEFAULT_BUFFER_SIZE: i64 = 10_000;

const MEGABYTE: u64 = 1024 * 1024;

/// The settings as given. The counts are signed so that a negative value gets kube's
/// message rather than a parse error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConfig {
    /// `--audit-log-path`: a file, or `-` for standard output. Unset: no audit log.
    pub log_path: Option<String>,
    /// `--audit-policy-file`: the `audit.k8s.io/v1` Policy.
    pub policy_file: Option<PathBuf>,
    /// `--audit-log-maxsize`, MB; 0 never rotates.
    pub max_size_mb: i64,
    /// `--audit-log-maxbackup`; 0 keeps every backup.
    pub max_backups: i64,
    /// `--audit-log-maxage`, days; 0 keeps backups of any age.
    pub max_age_days: i64,
    /// `--audit-log-batch-buffer-size`: events waiting for the writer.
    pub buffer_size: i64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            log_path: None,
            policy_file: None,
            max_size_mb: DEFAULT_MAX_SIZE_MB,
            max_backups: DEFAULT_MAX_BACKUPS,
            max_age_days: DEFAULT_MAX_AGE_DAYS,
            buffer_size: DEFAULT_BUFFER_SIZE,
        }
    }
}

/// Where events are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Stdout,
    /// Appended to, never rotated (`--audit-log-maxsize 0`).
    File(PathBuf),
    Rotating(PathBuf, Rotation),
}

/// A configuration that passed every check: auditing is on.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedAudit {
    pub policy: Policy,
    /// Tolerated problems of the policy file (unknown fields), to log at start.
    pub warnings: Vec<String>,
    pub output: Output,
    pub buffer_size: usize,
}

/// A setting that cannot be used; every one stops the server with its message.
#[derive(Debug, thiserror::Error)]
pub enum AuditConfigError {
    #[error("--audit-policy-file: failed to read file path {path:?}: {error}")]
    PolicyUnreadable { path: PathBuf, error: io::Error },
    #[error("--audit-policy-file: loading audit policy file: {error}: from file {}", path.display())]
    Policy { path: PathBuf, error: PolicyError },
    #[error("--audit-log-path: must name a file, or - for standard output")]
    EmptyLogPath,
    #[error("--audit-log-path: cannot create the audit log {path:?}: {error}")]
    LogFile { path: PathBuf, error: io::Error },
    #[error("{flag}: {value} can't be a negative number")]
    Negative { flag: &'static str, value: i64 },
    #[error("--audit-log-batch-buffer-size: invalid audit batch log buffer size {0}, must be a positive number")]
    BufferSize(i64),
}

impl AuditConfig {
    /// Checks every setting, reads the policy and makes sure the log file can be written
    /// (creating its directory 0700 and the file 0600, as kube does). `Ok(None)` means no
    /// audit log: `--audit-log-path` is unset, or set without a policy file, which kube
    /// accepts and records nothing for ([`AuditConfig::warning`] says so). A policy file
    /// is read and checked even then, so a broken one is never silently ignored.
    pub fn validate(&self) -> Result<Option<ValidatedAudit>, AuditConfigError> {
        let parsed = match &self.policy_file {
            Some(path) => Some(load_policy(path)?),
            None => None,
        };
        let Some(log_path) = &self.log_path else {
            return Ok(None);
        };
        if log_path.is_empty() {
            return Err(AuditConfigError::EmptyLogPath);
        }
        let max_size = non_negative("--audit-log-maxsize", self.max_size_mb)?;
        let max_backups = non_negative("--audit-log-maxbackup", self.max_backups)?;
        let max_age = non_negative("--audit-log-maxage", self.max_age_days)?;
        let buffer_size = usize::try_from(self.buffer_size)
            .ok()
            .filter(|n| *n > 0)
            .ok_or(AuditConfigError::BufferSize(self.buffer_size))?;
        let Some(ParsedPolicy { policy, warnings }) = parsed else {
            return Ok(None);
        };
        let output = if log_path == "-" {
            Output::Stdout
        } else {
            let path = PathBuf::from(log_path);
            ensure_log_file(&path).map_err(|error| AuditConfigError::LogFile {
                path: path.clone(),
                error,
            })?;
            if max_size == 0 {
                Output::File(path)
            } else {
                let rotation = Rotation {
                    max_bytes: max_size.saturating_mul(MEGABYTE),
                    max_backups: usize::try_from(max_backups).unwrap_or(usize::MAX),
                    max_age_days: max_age,
                };
                Output::Rotating(path, rotation)
            }
        };
        Ok(Some(ValidatedAudit {
            policy,
            warnings,
            output,
            buffer_size,
        }))
    }

    /// Why a configuration that validated to `None` still deserves a word at start.
    pub fn warning(&self) -> Option<&'static str> {
        match (&self.log_path, &self.policy_file) {
            (Some(_), None) => Some(
                "--audit-log-path is set without --audit-policy-file: no audit events will be recorded",
            ),
            (None, Some(_)) => Some(
                "--audit-policy-file is set without --audit-log-path: no audit events will be recorded",
            ),
            _ => None,
        }
    }
}

fn non_negative(flag: &'static str, value: i64) -> Result<u64, AuditConfigError> {
    u64::try_from(value).map_err(|_| AuditConfigError::Negative { flag, value })
}

fn load_policy(path: &Path) -> Result<ParsedPolicy, AuditConfigError> {
    let text = fs::read_to_string(path).map_err(|error| AuditConfigError::PolicyUnreadable {
        path: path.to_path_buf(),
        error,
    })?;
    Policy::parse(&text).map_err(|error| AuditConfigError::Policy {
        path: path.to_path_buf(),
        error,
    })
}

/// kube's `ensureLogFile`: the directory (0700) and the file (0600), opened for append.
fn ensure_log_file(path: &Path) -> io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Level;

    const POLICY: &str = "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n";

    fn with_policy(dir: &Path, text: &str) -> AuditConfig {
        let policy = dir.join("policy.yaml");
        fs::write(&policy, text).unwrap();
        AuditConfig {
            log_path: Some(dir.join("logs/audit.log").to_string_lossy().into_owned()),
            policy_file: Some(policy),
            ..Default::default()
        }
    }

    #[test]
    fn the_defaults_are_kubes() {
        let c = AuditConfig::default();
        assert_eq!(
            (c.max_size_mb, c.max_backups, c.max_age_days, c.buffer_size),
            (100, 100, 366, 10_000)
        );
        assert!(
            c.validate().unwrap().is_none(),
            "off unless a path is given"
        );
    }

    #[test]
    fn a_valid_configuration_rotates_in_megabytes_and_creates_the_log_file() {
        let dir = tempfile::tempdir().unwrap();
        let c = with_policy(dir.path(), POLICY);
        let v = c.validate().unwrap().unwrap();
        let log = dir.path().join("logs/audit.log");
        assert_eq!(
            v.output,
            Output::Rotating(
                log.clone(),
                Rotation {
                    max_bytes: 100 * 1024 * 1024,
                    max_backups: 100,
                    max_age_days: 366
                }
            )
        );
        assert_eq!(v.buffer_size, 10_000);
        assert_eq!(v.policy, Policy::default_for_level(Level::Metadata));
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode(&log), mode(log.parent().unwrap())), (0o600, 0o700));

        let plain = AuditConfig {
            max_size_mb: 0,
            ..c.clone()
        };
        assert_eq!(plain.validate().unwrap().unwrap().output, Output::File(log));
        let stdout = AuditConfig {
            log_path: Some("-".into()),
            ..c
        };
        assert_eq!(stdout.validate().unwrap().unwrap().output, Output::Stdout);
    }

    #[test]
    fn errors_are_named_by_their_flag() {
        let dir = tempfile::tempdir().unwrap();
        let c = with_policy(dir.path(), POLICY);
        let err = |c: AuditConfig| c.validate().unwrap_err().to_string();
        assert_eq!(
            err(AuditConfig {
                max_age_days: -1,
                ..c.clone()
            }),
            "--audit-log-maxage: -1 can't be a negative number"
        );
        assert_eq!(
            err(AuditConfig {
                max_backups: -2,
                ..c.clone()
            }),
            "--audit-log-maxbackup: -2 can't be a negative number"
        );
        assert_eq!(
            err(AuditConfig {
                max_size_mb: -3,
                ..c.clone()
            }),
            "--audit-log-maxsize: -3 can't be a negative number"
        );
        assert_eq!(
            err(AuditConfig {
                buffer_size: 0,
                ..c.clone()
            }),
            "--audit-log-batch-buffer-size: invalid audit batch log buffer size 0, must be a positive number"
        );
        assert!(matches!(
            AuditConfig {
                log_path: Some(String::new()),
                ..c.clone()
            }
            .validate(),
            Err(AuditConfigError::EmptyLogPath)
        ));
        let missing = AuditConfig {
            policy_file: Some(dir.path().join("nope.yaml")),
            ..c.clone()
        };
        assert!(err(missing).starts_with("--audit-policy-file: failed to read file path "));
        let blocked = dir.path().join("file");
        fs::write(&blocked, "").unwrap();
        let e = err(AuditConfig {
            log_path: Some(blocked.join("audit.log").to_string_lossy().into_owned()),
            ..c
        });
        assert!(
            e.starts_with("--audit-log-path: cannot create the audit log "),
            "{e}"
        );
    }

    #[test]
    fn an_invalid_policy_names_the_flag_the_file_and_the_rule() {
        let dir = tempfile::tempdir().unwrap();
        let c = with_policy(
            dir.path(),
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n- level: All\n",
        );
        let e = c.validate().unwrap_err().to_string();
        let path = dir.path().join("policy.yaml");
        assert_eq!(
            e,
            format!(
                r#"--audit-policy-file: loading audit policy file: rules[1].level: Unsupported value: "All": supported values: "None", "Metadata", "Request", "RequestResponse": from file {}"#,
                path.display()
            )
        );
        // Checked even when no log path turns auditing on.
        let c = AuditConfig {
            log_path: None,
            ..c
        };
        assert!(c.validate().is_err());
    }

    #[test]
    fn a_log_path_without_a_policy_records_nothing_and_says_so() {
        let c = AuditConfig {
            log_path: Some("-".into()),
            ..Default::default()
        };
        assert!(c.validate().unwrap().is_none());
        assert!(c.warning().unwrap().contains("without --audit-policy-file"));
        let dir = tempfile::tempdir().unwrap();
        let c = with_policy(dir.path(), POLICY);
        assert!(c.warning().is_none());
        let warned = with_policy(
            dir.path(),
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n  verb: [get]\n",
        );
        assert_eq!(warned.validate().unwrap().unwrap().warnings.len(), 1);
    }
}
