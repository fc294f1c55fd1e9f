//! Parsing, merging and the error messages of `.arkrc.yaml`.
use super::*;
use crate::config::Cli;
use clap::Parser;

fn db(args: &[&str]) -> DbArgs {
    let mut argv = vec!["ark-apiserver", "config", "check"];
    argv.extend_from_slice(args);
    let mut cli = Cli::try_parse_from(argv).unwrap();
    cli.command.db_mut().unwrap().clone()
}

fn file(text: &str, path: &str) -> FileState {
    FileState::Found(PathBuf::from(path), RcFile::parse(text).unwrap())
}

fn files(cwd: Option<&str>, home: Option<&str>) -> Files {
    Files {
        cwd: cwd.map_or(FileState::NotFound("/cwd/.arkrc.yaml".into()), |t| {
            file(t, "/cwd/.arkrc.yaml")
        }),
        home: home.map_or(FileState::NotFound("/home/.arkrc.yaml".into()), |t| {
            file(t, "/home/.arkrc.yaml")
        }),
    }
}

const HOME: &str = "storage:
  backend: postgresql
  postgresql:
    host: home-db
    port: 6000
    user: home-user
    passwordSecretName: home-secret
";

#[test]
fn the_current_directory_file_wins_field_by_field_over_the_home_file() {
    let cwd = "storage:\n  postgresql:\n    host: cwd-db\n    sslMode: disable\n";
    let e = Effective::merge(&db(&[]), files(Some(cwd), Some(HOME))).unwrap();
    assert_eq!(e.host.value.as_deref(), Some("cwd-db"));
    assert_eq!(e.host.source, Source::CwdFile("/cwd/.arkrc.yaml".into()));
    assert_eq!(e.user.value.as_deref(), Some("home-user"));
    assert_eq!(e.user.source, Source::HomeFile("/home/.arkrc.yaml".into()));
    assert_eq!(e.port.value, Some(6000));
    assert_eq!(e.ssl_mode.value.as_deref(), Some("disable"));
    assert_eq!(e.database.value.as_deref(), Some("ark"));
    assert_eq!(e.database.source, Source::Default);
    assert_eq!(e.password_secret_key.value.as_deref(), Some("password"));
    let cfg = e.validate(false).unwrap();
    assert_eq!(cfg.pg.get_ports(), &[6000]);
    assert_eq!(cfg.ssl_mode, SslMode::Disable);
}

#[test]
fn explicit_settings_win_over_the_files() {
    let e = Effective::merge(
        &db(&["--postgres-user", "flag-user", "--postgres-port", "7000"]),
        files(None, Some(HOME)),
    )
    .unwrap();
    assert_eq!(e.user.value.as_deref(), Some("flag-user"));
    assert_eq!(e.user.source, Source::Flag("--postgres-user"));
    assert_eq!(e.port.value, Some(7000));
    assert_eq!(e.host.value.as_deref(), Some("home-db"));
}

#[test]
fn an_explicit_host_turns_the_files_connection_settings_off() {
    let etcd_home =
        "storage:\n  backend: etcd\n  postgresql:\n    user: u\n    passwordSecretName: s\n";
    let e = Effective::merge(
        &db(&["--postgres-host", "h", "--postgres-user", "x"]),
        files(None, Some(etcd_home)),
    )
    .unwrap();
    assert_eq!(e.backend.value, Some(Backend::Postgresql));
    assert_eq!(e.user.value.as_deref(), Some("x"));
    assert_eq!(e.password_secret_name.value.as_deref(), Some("s"));
    e.validate(false).unwrap();
}

#[test]
fn a_database_url_is_reported_field_by_field_without_its_password() {
    let e = Effective::merge(
        &db(&[
            "--database-url",
            "postgres://u:hunter2@h:5433/d?sslmode=disable",
        ]),
        Files::none(),
    )
    .unwrap();
    assert_eq!(e.host.value.as_deref(), Some("h"));
    assert_eq!(e.port.value, Some(5433));
    assert_eq!(e.database.value.as_deref(), Some("d"));
    assert_eq!(e.ssl_mode.value.as_deref(), Some("disable"));
    assert!(!e.report().contains("hunter2"), "{}", e.report());
}

#[test]
fn the_required_fields_and_the_block_are_reported_by_name() {
    let e = Effective::merge(
        &db(&[]),
        files(Some("storage:\n  backend: postgresql\n"), None),
    )
    .unwrap();
    assert_eq!(
        e.validate(false).unwrap_err().to_string(),
        "missing 'storage.postgresql' block in .arkrc.yaml"
    );
    for (field, text) in [
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
        let e = Effective::merge(&db(&[]), files(Some(text), None)).unwrap();
        assert_eq!(
            e.validate(false).unwrap_err().to_string(),
            format!("missing required field storage.postgresql.{field} in .arkrc.yaml")
        );
    }
}

#[test]
fn backends_other_than_etcd_and_postgresql_are_refused() {
    let err = Effective::merge(&db(&["--backend", "mysql"]), Files::none()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Invalid backend value: mysql. Expected 'etcd' or 'postgresql'."
    );
    let err =
        Effective::merge(&db(&[]), files(Some("storage:\n  backend: Etcd\n"), None)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Invalid backend value: Etcd. Expected 'etcd' or 'postgresql'."
    );
}

#[test]
fn without_files_the_old_errors_and_defaults_stand() {
    let e = Effective::merge(&db(&[]), files(None, None)).unwrap();
    assert!(matches!(
        e.validate(false),
        Err(ArkrcError::Config(ConfigError::NoDatabase))
    ));
    let e = Effective::merge(&db(&[]), files(Some("other: 1\n"), Some(""))).unwrap();
    assert!(!e.files_used);
    assert!(matches!(
        e.validate(false),
        Err(ArkrcError::Config(ConfigError::NoDatabase))
    ));
}

#[test]
fn an_invalid_ssl_mode_in_a_file_names_the_file() {
    let err = Effective::merge(
        &db(&[]),
        files(
            None,
            Some("storage:\n  postgresql:\n    sslMode: sometimes\n"),
        ),
    )
    .unwrap_err();
    assert!(err.to_string().contains("/home/.arkrc.yaml"), "{err}");
}

#[test]
fn helm_values_quote_strings_and_escape_commas() {
    let cwd =
        "storage:\n  postgresql:\n    host: a,b\n    user: '123'\n    passwordSecretName: s\n";
    let e = Effective::merge(&db(&[]), files(Some(cwd), None)).unwrap();
    let set = e.helm_set_args();
    assert!(
        set.contains("--set-string postgresql.host=a\\,b\n"),
        "{set}"
    );
    assert!(set.contains("--set postgresql.port=5432\n"), "{set}");
    assert!(set.contains("--set-string postgresql.user=123\n"), "{set}");
    let values = e.helm_values_file();
    assert!(values.contains("  user: \"123\"\n"), "{values}");
    assert!(values.contains("  port: 5432\n"), "{values}");
}
