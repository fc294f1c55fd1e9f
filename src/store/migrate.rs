//! Versioned schema migrations from `sql/`, and the checks that refuse a database the
//! server cannot work with.

use tokio_postgres::Client;

use super::error::db_message;

/// Migrations in order. The number is the schema version after applying the file.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "resources", include_str!("../../sql/0001_resources.sql")),
    (
        2,
        "resource_version_starts_at_one",
        include_str!("../../sql/0002_resource_version_starts_at_one.sql"),
    ),
    (3, "replicas", include_str!("../../sql/0003_replicas.sql")),
    (
        4,
        "resource_version_per_statement",
        include_str!("../../sql/0004_resource_version_per_statement.sql"),
    ),
    (
        5,
        "managed_fields_keep_their_order",
        include_str!("../../sql/0005_managed_fields_keep_their_order.sql"),
    ),
    (
        6,
        "one_index_for_names",
        include_str!("../../sql/0006_one_index_for_names.sql"),
    ),
];

/// The schema version this binary writes and understands.
pub fn latest_version() -> i32 {
    MIGRATIONS.last().map(|m| m.0).unwrap_or(0)
}

/// Reasons the server refuses a database, each naming the fix.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error(
        "PostgreSQL {found} is too old: ark-apiserver needs PostgreSQL 15 or later (for pgoutput protocol and \
         publication features it relies on). Upgrade the server or point --database-url at a PostgreSQL 15+ instance."
    )]
    TooOld { found: String },
    #[error(
        "wal_level is '{found}', but ark-apiserver needs wal_level=logical for its change stream. Fix: \
         ALTER SYSTEM SET wal_level = logical and restart PostgreSQL; on Amazon RDS/Aurora set \
         rds.logical_replication=1 in the parameter group, on Cloud SQL set the flag cloudsql.logical_decoding=on, \
         on Azure Database for PostgreSQL set wal_level=logical in the server parameters (then restart)."
    )]
    WalLevel { found: String },
    #[error(
        "the database schema is at version {found}, newer than this ark-apiserver understands ({known}). \
         A newer ark-apiserver migrated it; run that version (or newer) instead of downgrading."
    )]
    TooNew { found: i32, known: i32 },
    #[error(
        "the database schema is not migrated (at version {found}, need {need}). Run `ark-apiserver migrate` \
         (the Helm chart's pre-install job does this) or start `serve` without --skip-migrations."
    )]
    NotMigrated { found: i32, need: i32 },
    #[error("migration {version} ({name}) failed: {error}")]
    Failed {
        version: i32,
        name: String,
        error: String,
    },
    #[error("{0}")]
    Db(String),
}

impl SchemaError {
    fn db(e: tokio_postgres::Error) -> Self {
        SchemaError::Db(db_message(&e))
    }
}

/// PostgreSQL version and `wal_level`, checked before anything else.
pub async fn preflight(client: &Client) -> Result<(), SchemaError> {
    let row = client
        .query_one(
            "SELECT current_setting('server_version_num')::int, current_setting('server_version'), current_setting('wal_level')",
            &[],
        )
        .await
        .map_err(SchemaError::db)?;
    check_server(row.get(0), row.get(1), row.get(2))
}

/// The decision of [`preflight`], separate so it can be tested against versions this
/// machine does not have.
pub fn check_server(
    version_num: i32,
    version: String,
    wal_level: String,
) -> Result<(), SchemaError> {
    if version_num < 150000 {
        return Err(SchemaError::TooOld { found: version });
    }
    if wal_level != "logical" {
        return Err(SchemaError::WalLevel { found: wal_level });
    }
    Ok(())
}

const VERSION_TABLE: &str = "CREATE TABLE IF NOT EXISTS ark_schema_migrations (
    version    int         PRIMARY KEY,
    name       text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)";

/// The schema version the database is at (0 when never migrated).
pub async fn current_version(client: &Client) -> Result<i32, SchemaError> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('ark_schema_migrations') IS NOT NULL",
            &[],
        )
        .await
        .map_err(SchemaError::db)?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let v: Option<i32> = client
        .query_one("SELECT max(version) FROM ark_schema_migrations", &[])
        .await
        .map_err(SchemaError::db)?
        .get(0);
    Ok(v.unwrap_or(0))
}

/// Applies every missing migration, each in its own transaction, under an advisory lock so
/// that replicas starting together do not race.
pub async fn migrate(client: &mut Client) -> Result<Vec<i32>, SchemaError> {
    // An arbitrary but fixed key: "ark" in ASCII.
    const LOCK: i64 = 0x61726b;
    client
        .batch_execute(VERSION_TABLE)
        .await
        .map_err(SchemaError::db)?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK])
        .await
        .map_err(SchemaError::db)?;
    let result = apply_missing(client).await;
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK])
        .await;
    result
}

async fn apply_missing(client: &mut Client) -> Result<Vec<i32>, SchemaError> {
    let found = current_version(client).await?;
    if found > latest_version() {
        return Err(SchemaError::TooNew {
            found,
            known: latest_version(),
        });
    }
    let mut applied = Vec::new();
    for (version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > found) {
        let failed = |e: tokio_postgres::Error| SchemaError::Failed {
            version: *version,
            name: name.to_string(),
            error: db_message(&e),
        };
        let tx = client.transaction().await.map_err(SchemaError::db)?;
        tx.batch_execute(sql).await.map_err(failed)?;
        tx.execute(
            "INSERT INTO ark_schema_migrations (version, name) VALUES ($1, $2)",
            &[version, name],
        )
        .await
        .map_err(failed)?;
        tx.commit().await.map_err(failed)?;
        applied.push(*version);
    }
    Ok(applied)
}

/// For `serve --skip-migrations`: the schema must already be exactly what this binary knows.
pub async fn check_migrated(client: &Client) -> Result<(), SchemaError> {
    let found = current_version(client).await?;
    if found > latest_version() {
        return Err(SchemaError::TooNew {
            found,
            known: latest_version(),
        });
    }
    if found < latest_version() {
        return Err(SchemaError::NotMigrated {
            found,
            need: latest_version(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_older_than_15_is_refused_with_the_fix() {
        let e = check_server(140011, "14.11".into(), "logical".into())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("PostgreSQL 14.11 is too old") && e.contains("PostgreSQL 15 or later"),
            "{e}"
        );
        assert!(check_server(150018, "15.18".into(), "logical".into()).is_ok());
        assert!(check_server(170002, "17.2".into(), "logical".into()).is_ok());
    }

    #[test]
    fn wal_level_message_names_the_managed_service_settings() {
        let e = check_server(150018, "15.18".into(), "replica".into())
            .unwrap_err()
            .to_string();
        for needle in [
            "wal_level=logical",
            "rds.logical_replication=1",
            "cloudsql.logical_decoding=on",
            "Azure",
        ] {
            assert!(e.contains(needle), "{needle} missing from: {e}");
        }
    }

    #[test]
    fn migrations_are_numbered_in_order_from_one() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.0, i as i32 + 1);
        }
    }
}
