//! The `.arkrc.yaml` storage settings as an operator meets them: the real binary run in a
//! temporary current directory with a temporary HOME and an otherwise empty environment.
//! Nothing here connects to PostgreSQL.

use std::path::Path;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_ark-apiserver");

struct Dirs {
    _root: tempfile::TempDir,
    cwd: std::path::PathBuf,
    home: std::path::PathBuf,
}

impl Dirs {
    fn new(cwd_rc: Option<&str>, home_rc: Option<&str>) -> Self {
        let root = tempfile::tempdir().unwrap();
        let cwd = root.path().join("project");
        let home = root.path().join("home");
        std::fs::create_dir_all(&cwd).unwrap();
        std::fs::create_dir_all(&home).unwrap();
        let write = |dir: &Path, text: Option<&str>| {
            if let Some(t) = text {
                std::fs::write(dir.join(".arkrc.yaml"), t).unwrap();
            }
        };
        write(&cwd, cwd_rc);
        write(&home, home_rc);
        Self {
            _root: root,
            cwd,
            home,
        }
    }

    /// Runs the binary with only HOME (and `env`) in its environment.
    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
        let out = Command::new(BIN)
            .args(args)
            .current_dir(&self.cwd)
            .env_clear()
            .env("HOME", &self.home)
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into(),
            String::from_utf8_lossy(&out.stderr).into(),
        )
    }

    fn check(&self, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
        let mut a = vec!["config", "check"];
        a.extend_from_slice(args);
        self.run(&a, env)
    }
}

/// The line of `config check` for a key, e.g. `storage.postgresql.host`.
fn line<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find(|l| l.split_whitespace().next() == Some(key))
        .unwrap_or_else(|| panic!("no line for {key} in:\n{out}"))
}

const HOME_RC: &str = "storage:
  backend: postgresql
  postgresql:
    host: home-db.example.com
    port: 6543
    user: home-user
    passwordSecretName: home-secret
";

#[test]
fn the_current_directory_file_wins_over_the_home_file_field_by_field() {
    let d = Dirs::new(
        Some("storage:\n  postgresql:\n    host: cwd-db.example.com\n    sslMode: verify-full\n"),
        Some(HOME_RC),
    );
    let (code, out, err) = d.check(&[], &[]);
    assert_eq!(code, 0, "{out}{err}");
    let host = line(&out, "storage.postgresql.host");
    assert!(
        host.contains("cwd-db.example.com") && host.contains("./.arkrc.yaml"),
        "{out}"
    );
    let ssl = line(&out, "storage.postgresql.sslMode");
    assert!(
        ssl.contains("verify-full") && ssl.contains("./.arkrc.yaml"),
        "{out}"
    );
    // Absent from ./.arkrc.yaml: taken from ~/.arkrc.yaml.
    let user = line(&out, "storage.postgresql.user");
    assert!(
        user.contains("home-user") && user.contains("~/.arkrc.yaml"),
        "{out}"
    );
    let port = line(&out, "storage.postgresql.port");
    assert!(
        port.contains("6543") && port.contains("~/.arkrc.yaml"),
        "{out}"
    );
    assert!(out.contains("the configuration is valid"), "{out}");
}

#[test]
fn the_home_file_is_used_when_the_current_directory_has_none() {
    let d = Dirs::new(None, Some(HOME_RC));
    let (code, out, err) = d.check(&[], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("(not found)"), "{out}");
    for (key, value) in [
        ("storage.backend", "postgresql"),
        ("storage.postgresql.host", "home-db.example.com"),
        ("storage.postgresql.user", "home-user"),
        ("storage.postgresql.passwordSecretName", "home-secret"),
    ] {
        let l = line(&out, key);
        assert!(l.contains(value) && l.contains("~/.arkrc.yaml"), "{out}");
    }
}

#[test]
fn defaults_fill_the_fields_neither_file_sets() {
    let d = Dirs::new(
        Some("storage:\n  postgresql:\n    host: h\n    user: u\n    passwordSecretName: s\n"),
        None,
    );
    let (code, out, err) = d.check(&[], &[]);
    assert_eq!(code, 0, "{out}{err}");
    for (key, value) in [
        ("storage.backend", "postgresql"),
        ("storage.postgresql.port", "5432"),
        ("storage.postgresql.database", "ark"),
        ("storage.postgresql.passwordSecretKey", "password"),
        ("storage.postgresql.sslMode", "require"),
    ] {
        let l = line(&out, key);
        assert!(l.contains(value) && l.ends_with("default"), "{out}");
    }
}

#[test]
fn flags_and_environment_win_over_the_files() {
    let d = Dirs::new(None, Some(HOME_RC));
    let (code, out, err) = d.check(
        &["--postgres-port", "7000"],
        &[("ARK_POSTGRES_USER", "env-user")],
    );
    assert_eq!(code, 0, "{out}{err}");
    let port = line(&out, "storage.postgresql.port");
    assert!(
        port.contains("7000") && port.contains("flag --postgres-port"),
        "{out}"
    );
    let user = line(&out, "storage.postgresql.user");
    assert!(
        user.contains("env-user") && user.contains("environment ARK_POSTGRES_USER"),
        "{out}"
    );
}

#[test]
fn the_backend_flag_and_variable_override_the_files_backend() {
    let etcd = HOME_RC.replace("backend: postgresql", "backend: etcd");
    let d = Dirs::new(None, Some(&etcd));
    let (code, _, err) = d.check(&[], &[]);
    assert_ne!(code, 0);
    assert!(err.contains("the storage backend is etcd"), "{err}");

    let (code, out, err) = d.check(&["--backend", "postgresql"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        line(&out, "storage.backend").contains("flag --backend"),
        "{out}"
    );

    let (code, out, err) = d.check(&[], &[("ARK_STORAGE_BACKEND", "postgresql")]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        line(&out, "storage.backend").contains("environment ARK_STORAGE_BACKEND"),
        "{out}"
    );

    let d = Dirs::new(None, Some(HOME_RC));
    let (code, _, err) = d.check(&[], &[("ARK_STORAGE_BACKEND", "etcd")]);
    assert_ne!(code, 0);
    assert!(err.contains("environment ARK_STORAGE_BACKEND"), "{err}");
}

#[test]
fn serve_with_the_etcd_backend_explains_that_it_serves_only_postgresql() {
    let d = Dirs::new(Some("storage:\n  backend: etcd\n"), None);
    let (code, _, err) = d.run(&["serve", "--auth-mode", "off"], &[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("ark-apiserver only serves the postgresql backend")
            && err.contains("CustomResourceDefinitions in the cluster's own etcd"),
        "{err}"
    );
}

#[test]
fn an_unknown_backend_is_refused_word_for_word() {
    let d = Dirs::new(Some("storage:\n  backend: mongodb\n"), None);
    for args in [vec!["config", "check"], vec!["serve", "--auth-mode", "off"]] {
        let (code, _, err) = d.run(&args, &[]);
        assert_ne!(code, 0);
        assert!(
            err.contains("Invalid backend value: mongodb. Expected 'etcd' or 'postgresql'."),
            "{err}"
        );
    }
    let d = Dirs::new(None, None);
    let (code, _, err) = d.check(&["--backend", "sqlite"], &[]);
    assert_ne!(code, 0);
    assert!(
        err.contains("Invalid backend value: sqlite. Expected 'etcd' or 'postgresql'."),
        "{err}"
    );
}

#[test]
fn a_missing_postgresql_block_is_refused_word_for_word() {
    let d = Dirs::new(Some("storage:\n  backend: postgresql\n"), None);
    for args in [vec!["config", "check"], vec!["serve", "--auth-mode", "off"]] {
        let (code, _, err) = d.run(&args, &[]);
        assert_ne!(code, 0);
        assert!(
            err.contains("missing 'storage.postgresql' block in .arkrc.yaml"),
            "{err}"
        );
    }
}

#[test]
fn each_missing_required_field_is_refused_word_for_word() {
    for (field, rc) in [
        (
            "host",
            "storage:\n  postgresql:\n    user: u\n    passwordSecretName: s\n",
        ),
        (
            "user",
            "storage:\n  postgresql:\n    host: h\n    passwordSecretName: s\n",
        ),
        (
            "passwordSecretName",
            "storage:\n  postgresql:\n    host: h\n    user: u\n",
        ),
    ] {
        let d = Dirs::new(Some(rc), None);
        let want = format!("missing required field storage.postgresql.{field} in .arkrc.yaml");
        for args in [vec!["config", "check"], vec!["serve", "--auth-mode", "off"]] {
            let (code, _, err) = d.run(&args, &[]);
            assert_ne!(code, 0, "{args:?}");
            assert!(err.contains(&want), "{args:?}: {err}");
        }
    }
}

#[test]
fn config_check_never_prints_a_password() {
    let d = Dirs::new(Some(HOME_RC), None);
    let (code, out, err) = d.check(&[], &[("ARK_POSTGRES_PASSWORD", "hunter2-secret")]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        line(&out, "password").contains("environment ARK_POSTGRES_PASSWORD"),
        "{out}"
    );
    let (code, out, err) = d.check(
        &["--database-url", "postgres://u:hunter2-secret@db:5433/ark"],
        &[],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(line(&out, "storage.postgresql.host").contains("flag --database-url"));
    for text in [&out, &err] {
        assert!(!text.contains("hunter2"), "{text}");
    }
}

#[test]
fn explicit_database_settings_keep_the_old_behaviour_and_ignore_the_files() {
    // A host from the environment without a user: the old error, not the file's user.
    let d = Dirs::new(None, Some(HOME_RC));
    let (code, _, err) = d.run(
        &["serve", "--auth-mode", "off"],
        &[("ARK_POSTGRES_HOST", "127.0.0.1")],
    );
    assert_eq!(code, 1);
    assert!(err.contains("ARK_POSTGRES_USER"), "{err}");
    // No files and nothing set: the old "no database configured".
    let d = Dirs::new(None, None);
    let (code, _, err) = d.check(&[], &[]);
    assert_ne!(code, 0);
    assert!(err.contains("no database configured"), "{err}");
}

#[test]
fn helm_values_renders_the_charts_postgresql_values() {
    let d = Dirs::new(
        Some("storage:\n  postgresql:\n    sslMode: verify-full\n"),
        Some(HOME_RC),
    );
    let (code, out, err) = d.run(&["helm-values"], &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "--set-string postgresql.host=home-db.example.com
--set postgresql.port=6543
--set-string postgresql.database=ark
--set-string postgresql.user=home-user
--set-string postgresql.passwordSecretName=home-secret
--set-string postgresql.passwordSecretKey=password
--set-string postgresql.sslMode=verify-full
"
    );
    let (code, out, err) = d.run(&["helm-values", "--output", "values"], &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "postgresql:
  host: \"home-db.example.com\"
  port: 6543
  database: \"ark\"
  user: \"home-user\"
  passwordSecretName: \"home-secret\"
  passwordSecretKey: \"password\"
  sslMode: \"verify-full\"
"
    );
    // The chart requires the Secret's name: without it nothing is rendered.
    let d = Dirs::new(None, None);
    let (code, out, err) = d.run(
        &["helm-values"],
        &[("ARK_POSTGRES_HOST", "h"), ("ARK_POSTGRES_USER", "u")],
    );
    assert_ne!(code, 0);
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains("missing required field storage.postgresql.passwordSecretName in .arkrc.yaml"),
        "{err}"
    );
}
